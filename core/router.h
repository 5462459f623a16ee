/*
 * Request routing by method and path pattern. A pattern is a path whose
 * segments may be parameters: "/api/v1/riders/:id/family". A parameter
 * matches one non-empty segment; a final "*rest" matches the rest of the
 * path, slashes included. Routes are tried in the order they were added.
 */
#ifndef LICOL_ROUTER_H
#define LICOL_ROUTER_H

#include "http.h"

#define ROUTE_UPLOAD 1 /* the body is spooled to a file, with the upload size limit */

struct router;

struct router *router_new(void);
void router_free(struct router *router);

/* Adds a route. method is "GET", "POST", ... ; pattern is copied. */
void router_add(struct router *router, const char *method, const char *pattern,
                http_handler_fn handler, void *ctx, int flags);

/* Checks a request when its headers are known, before its body is read:
 * returns 0 to go on, or an HTTP status (401, 403) to answer at once
 * without reading or storing the body. */
typedef int (*router_precheck_fn)(struct http_request *req, void *ctx);

/* Adds an upload route (ROUTE_UPLOAD) whose precheck runs before the body
 * is spooled to disk, so that nobody can fill the disk without the right
 * to upload. */
void router_add_upload(struct router *router, const char *method, const char *pattern,
                       http_handler_fn handler, void *ctx, router_precheck_fn precheck);

/* The http_route_fn given to http_server_new. Fills req's path parameters.
 * Returns 0, 404 (no route) or 405 (the path exists for other methods). A
 * HEAD request uses the GET route. */
int router_route(struct http_request *req, void *router, http_handler_fn *handler, void **ctx,
                 int *upload);

#endif
