/*
 * HTTP/1.1 server on the libuv loop: one llhttp parser per connection,
 * keep-alive and pipelining, bounded headers and bodies, timeouts for slow
 * clients, a connection limit, request ids and an access log.
 *
 * Requests are handled one at a time per connection, in order. A handler
 * either responds before returning or keeps the request and responds later
 * from the loop thread (for work done in a thread pool); reading from that
 * connection is paused meanwhile, so pipelined requests wait their turn.
 *
 * What the server does not do: TLS (put Licol behind a reverse proxy for
 * that), HTTP/2, chunked responses, Expect: 100-continue.
 */
#ifndef LICOL_HTTP_H
#define LICOL_HTTP_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "util.h"

#define HTTP_MAX_HEADERS 64
#define HTTP_MAX_PARAMS 8

struct http_server;
struct http_conn;
struct http_request;

/* A request handler. It must eventually call one of the http_respond*
 * functions exactly once, on the loop thread. */
typedef void (*http_handler_fn)(struct http_request *req, void *ctx);

/* Called when the headers are known, before the body is read, to pick the
 * handler. Sets *handler and *ctx, and *upload to 1 when the body must be
 * spooled to a file under the upload directory instead of memory. Returns 0,
 * or an HTTP status: the response to 404 or 405 is sent after the body is read and
 * discarded (the connection stays usable); 401 or 403 is sent at once
 * and the connection closed, without reading the body. */
typedef int (*http_route_fn)(struct http_request *req, void *router, http_handler_fn *handler,
                             void **ctx, int *upload);

struct http_limits {
    size_t max_header_bytes;    /* request line and headers together; over it: 431 */
    size_t max_headers;         /* header count; over it: 431 */
    size_t max_body;            /* bodies kept in memory; over it: 413 */
    size_t max_upload;          /* bodies spooled to disk; over it: 413 */
    unsigned header_timeout_ms; /* first byte to end of headers; then 408 and close */
    unsigned body_timeout_ms;   /* maximum pause between two body reads */
    unsigned idle_timeout_ms;   /* keep-alive connection with no request */
    unsigned max_connections;   /* further connections get 503 and are closed */
};

void http_limits_default(struct http_limits *limits);

struct http_header {
    char *name; /* lower-cased */
    char *value;
};

struct http_request {
    struct http_conn *conn;
    struct http_server *server;
    const char *method; /* "GET", "POST", ... (static string) */
    int method_id;      /* llhttp_method_t */
    char *target;       /* the request target as sent */
    char *path;         /* percent-decoded path, without the query; never contains NUL */
    char *query;        /* raw query string without '?', "" when none */
    struct http_header headers[HTTP_MAX_HEADERS];
    size_t header_count;
    struct buf body;    /* in-memory body, NUL-terminated */
    char *upload_path;  /* spooled body file when the route asked for it, else NULL */
    uint64_t body_size; /* bytes of body received */
    const char *param_names[HTTP_MAX_PARAMS];
    char *param_values[HTTP_MAX_PARAMS];
    size_t param_count;
    char id[24];        /* request id, also sent as X-Request-Id */
    char remote_addr[64];
    uint64_t started_ns;
    void *user;         /* free for the application (e.g. the authenticated session) */
    void (*user_free)(void *user);

    /* response */
    int status;
    struct buf response_headers;
    int responded;
    uint64_t response_bytes;
};

/* Creates a server bound to host:port on loop. upload_dir receives spooled
 * bodies (created if missing). Returns NULL with *err (French) on failure. */
struct http_server *http_server_new(uv_loop_t *loop, const char *host, int port,
                                    const struct http_limits *limits, const char *upload_dir,
                                    http_route_fn route, void *router, char **err);

/* Sets the address of the reverse proxy in front of the server (copied;
 * "" for none). For connections from that address, a request's
 * remote_addr is the last address of its X-Forwarded-For header, the
 * client the proxy saw. Other connections' X-Forwarded-For is ignored, so
 * clients cannot choose their own address. */
void http_server_set_trusted_proxy(struct http_server *server, const char *address);

/* Port actually bound (useful with port 0). */
int http_server_port(struct http_server *server);

/* Stops accepting, lets requests in flight finish, closes idle connections,
 * then calls done (may be NULL) once every connection is closed. Connections
 * still busy after grace_ms are closed anyway. */
void http_server_stop(struct http_server *server, unsigned grace_ms,
                      void (*done)(void *arg), void *arg);
void http_server_free(struct http_server *server);

/* Runs data through a new connection that has no socket, as if a client had
 * sent it (in two reads, split at split), and appends everything the server
 * writes back to out. The connection is closed afterwards; run the loop
 * until idle to finish handlers that respond later. For the fuzzer and
 * tests only. */
void http_server_feed(struct http_server *server, const char *data, size_t len, size_t split,
                      struct buf *out);

/* Number of connections open and of requests being handled. */
unsigned http_server_connections(struct http_server *server);

const char *http_header(const struct http_request *req, const char *name_lower);
const char *http_param(const struct http_request *req, const char *name);
/* Decoded value of a query parameter into out; returns 1 when present. */
int http_query_param(const struct http_request *req, const char *name, char *out, size_t size);
/* Cookie value by name into out; returns 1 when present. */
int http_cookie(const struct http_request *req, const char *name, char *out, size_t size);

void http_set_header(struct http_request *req, const char *name, const char *value);

/* Responses. Each completes the request; the body is copied. */
void http_respond(struct http_request *req, int status, const char *content_type,
                  const void *body, size_t len);
/* Takes ownership of json (decref'd). */
void http_respond_json(struct http_request *req, int status, json_t *json);
/* Error as JSON: {"error": {"code": code, "message": message_fr}}. */
void http_respond_error(struct http_request *req, int status, const char *code,
                        const char *message_fr);
/* Sends the file at path (read whole; for small static assets). */
void http_respond_file(struct http_request *req, const char *path, const char *content_type);

const char *http_status_text(int status);

#endif
