/*
 * A linear route table. Licol has a few dozen routes, so matching segment by
 * segment in order is cheaper than building a tree, and keeps the rule
 * "first added wins" obvious.
 */
#include "router.h"

#include <stdlib.h>
#include <string.h>

#define ROUTER_MAX_SEGMENTS 16

struct route {
    char method[8];
    char *pattern;
    char *segments[ROUTER_MAX_SEGMENTS];
    size_t segment_count;
    http_handler_fn handler;
    void *ctx;
    int flags;
    router_precheck_fn precheck;
};

struct router {
    struct route *routes;
    size_t count;
    size_t cap;
};

struct router *router_new(void)
{
    return calloc(1, sizeof(struct router));
}

void router_free(struct router *router)
{
    if (!router)
        return;
    for (size_t i = 0; i < router->count; i++)
        free(router->routes[i].pattern);
    free(router->routes);
    free(router);
}

void router_add(struct router *router, const char *method, const char *pattern,
                http_handler_fn handler, void *ctx, int flags)
{
    struct route *route;
    char *p;

    if (router->count == router->cap) {
        size_t cap = router->cap ? router->cap * 2 : 32;
        struct route *routes = realloc(router->routes, cap * sizeof(*routes));
        if (!routes)
            abort(); /* start-up only: no way to run without routes */
        router->routes = routes;
        router->cap = cap;
    }
    route = &router->routes[router->count++];
    memset(route, 0, sizeof(*route));
    strncpy(route->method, method, sizeof(route->method) - 1);
    route->pattern = strdup(pattern);
    route->handler = handler;
    route->ctx = ctx;
    route->flags = flags;
    /* Split the copy in place: "/a/:b" -> "a", ":b". */
    p = route->pattern;
    while (*p == '/')
        p++;
    while (*p && route->segment_count < ROUTER_MAX_SEGMENTS) {
        char *slash = strchr(p, '/');
        route->segments[route->segment_count++] = p;
        if (!slash)
            break;
        *slash = '\0';
        p = slash + 1;
    }
}

void router_add_upload(struct router *router, const char *method, const char *pattern,
                       http_handler_fn handler, void *ctx, router_precheck_fn precheck)
{
    router_add(router, method, pattern, handler, ctx, ROUTE_UPLOAD);
    router->routes[router->count - 1].precheck = precheck;
}

/* Matches path against route; on success stores parameters in req. */
static int route_match(const struct route *route, struct http_request *req, const char *path)
{
    const char *p = path;
    size_t params = 0;
    const char *names[HTTP_MAX_PARAMS];
    const char *starts[HTTP_MAX_PARAMS];
    size_t lens[HTTP_MAX_PARAMS];

    while (*p == '/')
        p++;
    for (size_t i = 0; i < route->segment_count; i++) {
        const char *segment = route->segments[i];
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);

        if (segment[0] == '*') {
            if (params == HTTP_MAX_PARAMS)
                return 0;
            names[params] = segment + 1;
            starts[params] = p;
            lens[params++] = strlen(p);
            p += strlen(p);
            break;
        }
        if (len == 0)
            return 0;
        if (segment[0] == ':') {
            if (params == HTTP_MAX_PARAMS)
                return 0;
            names[params] = segment + 1;
            starts[params] = p;
            lens[params++] = len;
        } else if (strlen(segment) != len || memcmp(segment, p, len) != 0) {
            return 0;
        }
        p += len;
        if (*p == '/')
            p++;
    }
    if (*p != '\0')
        return 0;
    if (!req)
        return 1;
    for (size_t i = 0; i < req->param_count; i++)
        free(req->param_values[i]);
    req->param_count = 0;
    for (size_t i = 0; i < params; i++) {
        req->param_names[i] = names[i];
        req->param_values[i] = strndup(starts[i], lens[i]);
    }
    req->param_count = params;
    return 1;
}

int router_route(struct http_request *req, void *opaque, http_handler_fn *handler, void **ctx,
                 int *upload)
{
    struct router *router = opaque;
    const char *method = strcmp(req->method, "HEAD") == 0 ? "GET" : req->method;
    int path_exists = 0;

    for (size_t i = 0; i < router->count; i++) {
        const struct route *route = &router->routes[i];
        if (strcmp(route->method, method) != 0) {
            if (!path_exists && route_match(route, NULL, req->path))
                path_exists = 1;
            continue;
        }
        if (route_match(route, req, req->path)) {
            *handler = route->handler;
            *ctx = route->ctx;
            *upload = (route->flags & ROUTE_UPLOAD) != 0;
            return route->precheck ? route->precheck(req, route->ctx) : 0;
        }
    }
    return path_exists ? 405 : 404;
}
