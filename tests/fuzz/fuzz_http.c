/*
 * libFuzzer target for the request path: parsing, routing and responding.
 * Each input is fed to a fresh connection in two reads (split where the
 * first byte says), through routes that answer at once, answer later from
 * the loop, echo the body, take path parameters and spool uploads, and the
 * server's output is checked to be a sequence of well-formed responses.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "log.h"
#include "router.h"

static uv_loop_t *loop;
static struct http_server *server;
static struct router *router;
static struct http_request *held;
static uv_idle_t idle;

static void handle_json(struct http_request *req, void *ctx)
{
    char value[64];

    (void)ctx;
    http_query_param(req, "q", value, sizeof(value));
    http_cookie(req, "licol_session", value, sizeof(value));
    http_respond_json(req, 200, json_pack("{s:s,s:s}", "path", req->path, "id",
                                          http_param(req, "id") ? http_param(req, "id") : ""));
}

static void handle_echo(struct http_request *req, void *ctx)
{
    (void)ctx;
    http_set_header(req, "X-Echo", http_header(req, "x-echo") ? http_header(req, "x-echo") : "");
    http_respond(req, 200, "application/octet-stream", req->body.data, req->body.len);
}

static void respond_later(uv_idle_t *handle)
{
    struct http_request *req = held;

    uv_idle_stop(handle);
    held = NULL;
    if (req)
        http_respond_error(req, 202, "later", "Réponse différée.");
}

static void handle_later(struct http_request *req, void *ctx)
{
    (void)ctx;
    if (held) {
        http_respond_error(req, 503, "busy", "Occupé.");
        return;
    }
    held = req;
    uv_idle_start(&idle, respond_later);
}

static void handle_upload(struct http_request *req, void *ctx)
{
    (void)ctx;
    http_respond_json(req, 200, json_pack("{s:I}", "size", (json_int_t)req->body_size));
}

static void set_up(void)
{
    struct http_limits limits;
    char *err = NULL;
    char dir[] = "/tmp/licol-fuzz-http-XXXXXX";

    log_set_level("off");
    loop = uv_default_loop();
    uv_idle_init(loop, &idle);
    router = router_new();
    router_add(router, "GET", "/healthz", handle_json, NULL, 0);
    router_add(router, "GET", "/items/:id", handle_json, NULL, 0);
    router_add(router, "POST", "/echo", handle_echo, NULL, 0);
    router_add(router, "GET", "/later", handle_later, NULL, 0);
    router_add(router, "POST", "/upload", handle_upload, NULL, ROUTE_UPLOAD);
    router_add(router, "GET", "/files/*path", handle_json, NULL, 0);
    http_limits_default(&limits);
    limits.max_body = 4096;
    limits.max_upload = 65536;
    if (!mkdtemp(dir))
        abort();
    server = http_server_new(loop, "127.0.0.1", 0, &limits, dir, router_route, router, &err);
    if (!server)
        abort();
}

static int starts_response(const struct buf *out, size_t pos)
{
    return pos == out->len || (out->len - pos >= 9 && memcmp(out->data + pos, "HTTP/1.1 ", 9) == 0);
}

/* Checks that out is a sequence of complete responses: a status line, a
 * Content-Length and a request id in every head, and a body of that length
 * (none after a HEAD request, which is told apart by what follows). */
static void check_output(const struct buf *out)
{
    size_t pos = 0;

    while (pos < out->len) {
        const char *start = out->data + pos;
        const char *end = memmem(start, out->len - pos, "\r\n\r\n", 4);
        const char *length;
        size_t head, body;

        if (!starts_response(out, pos) || !end)
            abort();
        head = (size_t)(end - start) + 4;
        length = memmem(start, head, "Content-Length: ", 16);
        if (!length || !memmem(start, head, "X-Request-Id: ", 14))
            abort();
        body = strtoul(length + 16, NULL, 10);
        pos += head;
        if (pos + body <= out->len && starts_response(out, pos + body))
            pos += body;
        else if (!starts_response(out, pos))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct buf out;

    if (!server)
        set_up();
    buf_init(&out, 0);
    http_server_feed(server, (const char *)data, size, size ? data[0] % (size + 1) : 0, &out);
    for (int i = 0; i < 4; i++)
        uv_run(loop, UV_RUN_NOWAIT);
    check_output(&out);
    buf_free(&out);
    return 0;
}
