/*
 * HTTP connections on libuv with llhttp.
 *
 * Parsing: every on_message_complete pauses the parser, so the read callback
 * sees one complete request at a time, dispatches it, and resumes parsing
 * the rest of the buffer only once the response is queued. When a handler
 * keeps the request for later, the unparsed bytes are kept in conn->pending
 * and reading stops until http_respond* is called.
 *
 * Timeouts use one uv_timer per connection, re-armed for the phase the
 * connection is in: idle (waiting for a request), headers (a fixed deadline
 * from the request's first byte), body (longest pause between reads). While
 * a handler works, the timer is off.
 *
 * The route callback runs at the end of the headers, so an unknown route or
 * an oversized Content-Length is answered before the body is read.
 */
#include "http.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define WRITE_QUEUE_PAUSE (1024 * 1024) /* stop reading while this much output is unsent */

enum conn_phase { PHASE_IDLE, PHASE_HEADERS, PHASE_BODY, PHASE_HANDLING, PHASE_CLOSING };

struct http_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    struct http_limits limits;
    char *upload_dir;
    http_route_fn route;
    void *router;
    int port;
    int stopping;
    unsigned connections;
    uint64_t request_counter;
    char id_prefix[9];
    struct http_conn *conns; /* doubly linked list of open connections */
    uv_timer_t grace_timer;
    void (*stop_done)(void *arg);
    void *stop_arg;
    int listener_closed;
    char trusted_proxy[64];
};

struct http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct http_server *server;
    struct http_conn *prev, *next;
    llhttp_t parser;
    enum conn_phase phase;
    uint64_t headers_deadline_ms;
    int closing;
    int handles_open;
    int keep_alive;
    int dispatching;          /* inside dispatch(): a response now is synchronous */
    int finished_in_dispatch; /* the handler responded before returning */
    int error_status; /* status to respond with when a callback aborts the parse */
    size_t header_bytes;
    struct buf url;
    struct buf field;
    struct buf value;
    int last_was_value;
    struct http_request *req;
    struct buf pending; /* unparsed bytes kept while a handler works */
    int upload_fd;
    size_t body_limit;
    http_handler_fn handler;
    void *handler_ctx;
    char remote_addr[64];
    struct buf *sink; /* http_server_feed: output goes here, there is no socket */
    uv_shutdown_t shutdown_req;
    int lingering;
};

#define LINGER_MS 2000 /* how long a closing connection drains what the client still sends */

struct write_req {
    uv_write_t req;
    struct http_conn *conn;
    char *data;
    int close_after;
};

static llhttp_settings_t parser_settings;

static void conn_close(struct http_conn *conn);
static void conn_arm_timer(struct http_conn *conn);
static void conn_process(struct http_conn *conn, const char *data, size_t len);
static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *b);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b);

void http_limits_default(struct http_limits *limits)
{
    limits->max_header_bytes = 16 * 1024;
    limits->max_headers = HTTP_MAX_HEADERS;
    limits->max_body = 1024 * 1024;
    limits->max_upload = 64 * 1024 * 1024;
    limits->header_timeout_ms = 10000;
    limits->body_timeout_ms = 30000;
    limits->idle_timeout_ms = 60000;
    limits->max_connections = 1024;
}

const char *http_status_text(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}

static uint64_t now_ns(void)
{
    return uv_hrtime();
}

/* ---- requests ---------------------------------------------------------- */

static void request_free(struct http_request *req)
{
    if (!req)
        return;
    if (req->user && req->user_free)
        req->user_free(req->user);
    free(req->target);
    free(req->path);
    free(req->query);
    for (size_t i = 0; i < req->header_count; i++) {
        free(req->headers[i].name);
        free(req->headers[i].value);
    }
    for (size_t i = 0; i < req->param_count; i++)
        free(req->param_values[i]);
    buf_free(&req->body);
    buf_free(&req->response_headers);
    if (req->upload_path) {
        unlink(req->upload_path);
        free(req->upload_path);
    }
    free(req);
}

static struct http_request *request_new(struct http_conn *conn)
{
    struct http_server *server = conn->server;
    struct http_request *req = calloc(1, sizeof(*req));

    if (!req)
        return NULL;
    req->conn = conn;
    req->server = server;
    req->started_ns = now_ns();
    buf_init(&req->body, server->limits.max_body);
    buf_init(&req->response_headers, 64 * 1024);
    snprintf(req->id, sizeof(req->id), "%s-%06llu", server->id_prefix,
             (unsigned long long)++server->request_counter);
    snprintf(req->remote_addr, sizeof(req->remote_addr), "%s", conn->remote_addr);
    return req;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes len bytes of in into a new string. With plus_is_space,
 * '+' becomes ' ' (form and query encoding). Returns NULL on a malformed
 * escape or an encoded NUL. */
static char *percent_decode(const char *in, size_t len, int plus_is_space)
{
    char *out = malloc(len + 1);
    size_t j = 0;

    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '%') {
            int hi, lo;
            if (i + 2 >= len) {
                free(out);
                return NULL;
            }
            hi = hex_value(in[i + 1]);
            lo = hex_value(in[i + 2]);
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(out);
                return NULL;
            }
            out[j++] = (char)(hi * 16 + lo);
            i += 2;
        } else if (plus_is_space && in[i] == '+') {
            out[j++] = ' ';
        } else {
            out[j++] = in[i];
        }
    }
    out[j] = '\0';
    return out;
}

/* Splits the target into a decoded path and a raw query. Returns 0, or -1
 * when the target is not an origin-form path or cannot be decoded. */
static int request_split_target(struct http_request *req)
{
    const char *target = req->target;
    const char *q = strchr(target, '?');
    size_t path_len = q ? (size_t)(q - target) : strlen(target);

    if (target[0] != '/')
        return -1;
    req->path = percent_decode(target, path_len, 0);
    req->query = strdup(q ? q + 1 : "");
    if (!req->path || !req->query)
        return -1;
    return 0;
}

const char *http_header(const struct http_request *req, const char *name_lower)
{
    for (size_t i = 0; i < req->header_count; i++) {
        if (strcmp(req->headers[i].name, name_lower) == 0)
            return req->headers[i].value;
    }
    return NULL;
}

const char *http_param(const struct http_request *req, const char *name)
{
    for (size_t i = 0; i < req->param_count; i++) {
        if (strcmp(req->param_names[i], name) == 0)
            return req->param_values[i];
    }
    return NULL;
}

int http_query_param(const struct http_request *req, const char *name, char *out, size_t size)
{
    const char *p = req->query;
    size_t name_len = strlen(name);

    while (p && *p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > name_len && strncmp(p, name, name_len) == 0 && p[name_len] == '=') {
            char *value = percent_decode(p + name_len + 1, len - name_len - 1, 1);
            if (!value)
                return 0;
            snprintf(out, size, "%s", value);
            free(value);
            return 1;
        }
        if (len == name_len && strncmp(p, name, name_len) == 0) {
            if (size)
                out[0] = '\0';
            return 1;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

int http_cookie(const struct http_request *req, const char *name, char *out, size_t size)
{
    const char *cookies = http_header(req, "cookie");
    size_t name_len = strlen(name);

    while (cookies && *cookies) {
        while (*cookies == ' ' || *cookies == ';')
            cookies++;
        const char *end = strchr(cookies, ';');
        size_t len = end ? (size_t)(end - cookies) : strlen(cookies);
        if (len > name_len && strncmp(cookies, name, name_len) == 0 && cookies[name_len] == '=') {
            size_t value_len = len - name_len - 1;
            if (value_len >= size)
                return 0;
            memcpy(out, cookies + name_len + 1, value_len);
            out[value_len] = '\0';
            return 1;
        }
        cookies = end;
    }
    return 0;
}

void http_set_header(struct http_request *req, const char *name, const char *value)
{
    /* A CR or LF in a value would split the response: drop such a header. */
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) {
        log_error("http", "%s: header %s rejected: line break in value", req->id, name);
        return;
    }
    buf_printf(&req->response_headers, "%s: %s\r\n", name, value);
}

/* ---- responses ----------------------------------------------------------- */

static void on_linger_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    (void)b;
    if (nread < 0)
        conn_close(stream->data);
}

static void on_linger_timeout(uv_timer_t *timer)
{
    conn_close(timer->data);
}

static void on_shutdown_done(uv_shutdown_t *req, int status)
{
    (void)req;
    (void)status;
}

/* Closes after the last response without losing it: a close() with unread
 * client data makes the kernel send a reset, which can discard the response
 * before the client reads it (a 413 or 503 while the request is still
 * arriving). So shut down the sending side, discard what the client still
 * sends until it closes or LINGER_MS pass, then close. */
static void conn_linger(struct http_conn *conn)
{
    if (conn->closing || conn->lingering)
        return;
    conn->lingering = 1;
    conn->phase = PHASE_CLOSING;
    if (uv_shutdown(&conn->shutdown_req, (uv_stream_t *)&conn->tcp, on_shutdown_done) < 0) {
        conn_close(conn);
        return;
    }
    uv_read_start((uv_stream_t *)&conn->tcp, alloc_cb, on_linger_read);
    uv_timer_start(&conn->timer, on_linger_timeout, LINGER_MS, 0);
}

static void on_write_done(uv_write_t *w, int status)
{
    struct write_req *wr = (struct write_req *)w;
    struct http_conn *conn = wr->conn;

    free(wr->data);
    if (status < 0 && status != UV_ECANCELED)
        log_debug("http", "write to %s failed: %s", conn->remote_addr, uv_strerror(status));
    if (status < 0)
        conn_close(conn);
    else if (wr->close_after)
        conn_linger(conn);
    else if (!conn->closing && conn->phase != PHASE_HANDLING &&
             uv_stream_get_write_queue_size((uv_stream_t *)&conn->tcp) < WRITE_QUEUE_PAUSE &&
             conn->pending.len == 0)
        uv_read_start((uv_stream_t *)&conn->tcp, alloc_cb, on_read);
    free(wr);
}

static void conn_write(struct http_conn *conn, char *data, size_t len, int close_after)
{
    struct write_req *wr;
    uv_buf_t b = uv_buf_init(data, (unsigned)len);
    int rc;

    if (conn->sink) {
        buf_append(conn->sink, data, len);
        free(data);
        if (close_after)
            conn_close(conn);
        return;
    }
    wr = calloc(1, sizeof(*wr));
    if (!wr) {
        free(data);
        conn_close(conn);
        return;
    }
    wr->conn = conn;
    wr->data = data;
    wr->close_after = close_after;
    rc = uv_write(&wr->req, (uv_stream_t *)&conn->tcp, &b, 1, on_write_done);
    if (rc < 0) {
        free(data);
        free(wr);
        conn_close(conn);
    }
}

static void access_log(struct http_request *req)
{
    double ms = (double)(now_ns() - req->started_ns) / 1e6;

    /* The query string is left out: it may carry a token. */
    log_info("access", "%s %s %s %s %d %llu %.2fms", req->id, req->remote_addr, req->method,
             req->path ? req->path : "-", req->status, (unsigned long long)req->response_bytes,
             ms);
}

static void request_finish(struct http_request *req);

void http_respond(struct http_request *req, int status, const char *content_type,
                  const void *body, size_t len)
{
    struct http_conn *conn = req->conn;
    struct buf out;
    int keep_alive;
    int head = req->method_id == HTTP_HEAD;

    if (req->responded) {
        log_error("http", "%s: second response ignored", req->id);
        return;
    }
    req->responded = 1;
    req->status = status;
    keep_alive = conn && conn->keep_alive && !conn->closing && !conn->server->stopping &&
                 status != 408 && status != 413 && status != 431 && status != 400;

    buf_init(&out, 0);
    buf_printf(&out, "HTTP/1.1 %d %s\r\n", status, http_status_text(status));
    buf_printf(&out, "Content-Length: %zu\r\n", len);
    if (content_type)
        buf_printf(&out, "Content-Type: %s\r\n", content_type);
    buf_printf(&out, "X-Request-Id: %s\r\n", req->id);
    buf_appendz(&out, "X-Content-Type-Options: nosniff\r\n");
    /* No page of Licol is meant to be framed by another site (clickjacking),
     * and links in mails carry tokens that no referrer should repeat. */
    buf_appendz(&out, "X-Frame-Options: DENY\r\n");
    buf_appendz(&out, "Referrer-Policy: no-referrer\r\n");
    buf_appendz(&out, keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
    if (req->response_headers.len)
        buf_append(&out, req->response_headers.data, req->response_headers.len);
    buf_appendz(&out, "\r\n");
    if (!head && len)
        buf_append(&out, body, len);
    req->response_bytes = head ? 0 : len;

    if (!conn) {
        /* The connection went away while a handler worked. */
        buf_free(&out);
        access_log(req);
        request_free(req);
        return;
    }
    if (!keep_alive)
        conn->keep_alive = 0;
    conn_write(conn, out.data, out.len, !keep_alive);
    access_log(req);
    request_finish(req);
}

/* Returns 1 when a handler already set the response header name. */
static int has_response_header(const struct http_request *req, const char *name)
{
    size_t len = strlen(name);
    const char *p = req->response_headers.data;

    while (p && *p) {
        if (strncasecmp(p, name, len) == 0 && p[len] == ':')
            return 1;
        p = strstr(p, "\r\n");
        p = p ? p + 2 : NULL;
    }
    return 0;
}

void http_respond_json(struct http_request *req, int status, json_t *json)
{
    char *text = json ? json_dumps(json, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;

    json_decref(json);
    if (!text) {
        http_respond_error(req, 500, "internal", "Erreur interne du serveur.");
        return;
    }
    if (!has_response_header(req, "Cache-Control"))
        http_set_header(req, "Cache-Control", "no-store");
    http_respond(req, status, "application/json; charset=utf-8", text, strlen(text));
    free(text);
}

void http_respond_error(struct http_request *req, int status, const char *code,
                        const char *message_fr)
{
    json_t *body = json_pack("{s:{s:s,s:s}}", "error", "code", code, "message", message_fr);
    char *text = json_dumps(body, JSON_COMPACT | JSON_ENSURE_ASCII);

    json_decref(body);
    if (!has_response_header(req, "Cache-Control"))
        http_set_header(req, "Cache-Control", "no-store");
    http_respond(req, status, "application/json; charset=utf-8", text ? text : "{}",
                 text ? strlen(text) : 2);
    free(text);
}

void http_respond_file(struct http_request *req, const char *path, const char *content_type)
{
    FILE *f = fopen(path, "rb");
    struct buf content;
    char chunk[16384];
    size_t n;

    if (!f) {
        http_respond_error(req, 404, "not_found", "Ressource introuvable.");
        return;
    }
    buf_init(&content, 16 * 1024 * 1024);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (buf_append(&content, chunk, n) < 0)
            break;
    }
    fclose(f);
    http_respond(req, 200, content_type, content.data, content.len);
    buf_free(&content);
}

/* Sends a bare error on a connection that has no usable request and closes
 * it after the write. */
static void conn_fail(struct http_conn *conn, int status)
{
    struct http_request *req = conn->req;

    if (!req) {
        req = request_new(conn);
        if (!req) {
            conn_close(conn);
            return;
        }
        req->method = "-";
        conn->req = req;
    }
    if (!req->method)
        req->method = "-";
    conn->keep_alive = 0;
    conn->phase = PHASE_CLOSING;
    uv_read_stop((uv_stream_t *)&conn->tcp);
    {
        const char *msg = "Requête invalide.";
        const char *code = "bad_request";
        switch (status) {
        case 408: msg = "Délai dépassé : la requête est arrivée trop lentement."; code = "timeout"; break;
        case 413: msg = "Le contenu envoyé dépasse la taille autorisée."; code = "too_large"; break;
        case 414: msg = "L'adresse demandée est trop longue."; code = "uri_too_long"; break;
        case 431: msg = "Les en-têtes de la requête sont trop volumineux."; code = "headers_too_large"; break;
        case 503: msg = "Serveur saturé, réessayez dans un instant."; code = "unavailable"; break;
        case 401: msg = "Vous n'êtes pas connecté, ou votre session a expiré."; code = "unauthenticated"; break;
        case 403: msg = "Vous n'avez pas le droit d'envoyer ce fichier."; code = "forbidden"; break;
        default: break;
        }
        http_respond_error(req, status, code, msg);
    }
}

/* ---- parser callbacks ---------------------------------------------------- */

static int count_header_bytes(struct http_conn *conn, size_t len)
{
    conn->header_bytes += len;
    if (conn->header_bytes > conn->server->limits.max_header_bytes) {
        conn->error_status = conn->url.len > 8192 && conn->req && conn->req->header_count == 0 &&
                                     conn->field.len == 0
                                 ? 414
                                 : 431;
        return -1;
    }
    return 0;
}

static int on_message_begin(llhttp_t *p)
{
    struct http_conn *conn = p->data;

    conn->phase = PHASE_HEADERS;
    conn->headers_deadline_ms = uv_now(conn->server->loop) + conn->server->limits.header_timeout_ms;
    conn->header_bytes = 0;
    conn->error_status = 0;
    conn->last_was_value = 0;
    buf_reset(&conn->url);
    buf_reset(&conn->field);
    buf_reset(&conn->value);
    conn->req = request_new(conn);
    if (!conn->req)
        return -1;
    conn_arm_timer(conn);
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *conn = p->data;

    if (count_header_bytes(conn, len) < 0)
        return -1;
    return buf_append(&conn->url, at, len);
}

static int store_header(struct http_conn *conn)
{
    struct http_request *req = conn->req;
    struct http_header *h;

    if (req->header_count >= conn->server->limits.max_headers ||
        req->header_count >= HTTP_MAX_HEADERS) {
        conn->error_status = 431;
        return -1;
    }
    h = &req->headers[req->header_count];
    h->name = strndup(conn->field.data ? conn->field.data : "", conn->field.len);
    h->value = strndup(conn->value.data ? conn->value.data : "", conn->value.len);
    if (!h->name || !h->value) {
        free(h->name);
        free(h->value);
        return -1;
    }
    for (char *c = h->name; *c; c++) {
        if (*c >= 'A' && *c <= 'Z')
            *c = (char)(*c - 'A' + 'a');
    }
    req->header_count++;
    buf_reset(&conn->field);
    buf_reset(&conn->value);
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *conn = p->data;

    if (count_header_bytes(conn, len) < 0)
        return -1;
    if (conn->last_was_value) {
        if (store_header(conn) < 0)
            return -1;
        conn->last_was_value = 0;
    }
    return buf_append(&conn->field, at, len);
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *conn = p->data;

    if (count_header_bytes(conn, len) < 0)
        return -1;
    conn->last_was_value = 1;
    return buf_append(&conn->value, at, len);
}

static int open_upload_file(struct http_conn *conn)
{
    struct http_request *req = conn->req;
    char path[4096];
    int fd;

    snprintf(path, sizeof(path), "%s/upload-%s-XXXXXX", conn->server->upload_dir, req->id);
    fd = mkstemp(path);
    if (fd < 0) {
        log_error("http", "%s: cannot create upload file in %s: %s", req->id,
                  conn->server->upload_dir, strerror(errno));
        return -1;
    }
    req->upload_path = strdup(path);
    conn->upload_fd = fd;
    return 0;
}

/* Takes the client's address from X-Forwarded-For when the connection comes
 * from the trusted proxy: the last entry is the one that proxy added. */
static void apply_forwarded_for(struct http_conn *conn, struct http_request *req)
{
    const char *forwarded, *last;
    size_t len;

    if (!conn->server->trusted_proxy[0] || strcmp(conn->remote_addr, conn->server->trusted_proxy))
        return;
    forwarded = http_header(req, "x-forwarded-for");
    if (!forwarded)
        return;
    last = strrchr(forwarded, ',');
    last = last ? last + 1 : forwarded;
    while (*last == ' ')
        last++;
    len = strcspn(last, " ");
    if (len == 0 || len >= sizeof(req->remote_addr) || strspn(last, "0123456789abcdefABCDEF.:") < len)
        return;
    memcpy(req->remote_addr, last, len);
    req->remote_addr[len] = '\0';
}

static int on_headers_complete(llhttp_t *p)
{
    struct http_conn *conn = p->data;
    struct http_request *req = conn->req;
    struct http_server *server = conn->server;
    int upload = 0;
    int status;

    if (conn->last_was_value && store_header(conn) < 0)
        return -1;
    conn->last_was_value = 0;

    req->method_id = p->method;
    req->method = llhttp_method_name((llhttp_method_t)p->method);
    req->target = strndup(conn->url.data ? conn->url.data : "", conn->url.len);
    if (!req->target || request_split_target(req) < 0) {
        conn->error_status = 400;
        return -1;
    }
    conn->keep_alive = llhttp_should_keep_alive(p);
    apply_forwarded_for(conn, req);

    conn->handler = NULL;
    conn->handler_ctx = NULL;
    status = server->route(req, server->router, &conn->handler, &conn->handler_ctx, &upload);
    conn->body_limit = upload ? server->limits.max_upload : server->limits.max_body;
    if (status == 401 || status == 403) {
        conn->error_status = status; /* refused before reading the body */
        return -1;
    }
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > conn->body_limit) {
        conn->error_status = 413;
        return -1;
    }
    if (status != 0) {
        /* Respond after the body is read (and discarded) to keep the
         * connection usable; the body limit still applies. */
        conn->handler = NULL;
        req->status = status;
    } else if (upload && open_upload_file(conn) < 0) {
        conn->error_status = 500;
        return -1;
    }
    req->body.max = server->limits.max_body;
    conn->phase = PHASE_BODY;
    conn_arm_timer(conn);
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    struct http_conn *conn = p->data;
    struct http_request *req = conn->req;

    req->body_size += len;
    if (req->body_size > conn->body_limit) {
        conn->error_status = 413;
        return -1;
    }
    if (!conn->handler)
        return 0; /* the response is an error: drop the body */
    if (conn->upload_fd >= 0) {
        /* NOTE: a blocking write on the loop thread; the page cache absorbs
         * it, but a very slow disk would stall other connections. */
        while (len > 0) {
            ssize_t n = write(conn->upload_fd, at, len);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                log_error("http", "%s: writing upload failed: %s", req->id, strerror(errno));
                conn->error_status = 500;
                return -1;
            }
            at += n;
            len -= (size_t)n;
        }
        return 0;
    }
    if (buf_append(&req->body, at, len) < 0) {
        conn->error_status = 413;
        return -1;
    }
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct http_conn *conn = p->data;

    if (conn->upload_fd >= 0) {
        close(conn->upload_fd);
        conn->upload_fd = -1;
    }
    buf_terminate(&conn->req->body);
    conn->phase = PHASE_HANDLING;
    return HPE_PAUSED; /* hand the request over before parsing further */
}

/* ---- connection life cycle ----------------------------------------------- */

static void on_handle_closed(uv_handle_t *handle)
{
    struct http_conn *conn = handle->data;
    struct http_server *server = conn->server;

    if (--conn->handles_open > 0)
        return;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        server->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    server->connections--;
    if (conn->req) {
        if (conn->req->responded || conn->phase != PHASE_HANDLING) {
            request_free(conn->req);
        } else {
            /* A handler still owns the request; it will be freed when the
             * handler responds (http_respond sees conn == NULL). */
            conn->req->conn = NULL;
        }
    }
    if (conn->upload_fd >= 0)
        close(conn->upload_fd);
    buf_free(&conn->url);
    buf_free(&conn->field);
    buf_free(&conn->value);
    buf_free(&conn->pending);
    free(conn);

    if (server->stopping && server->connections == 0 && server->stop_done &&
        server->listener_closed) {
        void (*done)(void *) = server->stop_done;
        server->stop_done = NULL;
        uv_timer_stop(&server->grace_timer);
        done(server->stop_arg);
    }
}

static void conn_close(struct http_conn *conn)
{
    if (conn->closing)
        return;
    conn->closing = 1;
    conn->phase = PHASE_CLOSING;
    uv_timer_stop(&conn->timer);
    uv_close((uv_handle_t *)&conn->timer, on_handle_closed);
    uv_close((uv_handle_t *)&conn->tcp, on_handle_closed);
}

static void on_timeout(uv_timer_t *timer)
{
    struct http_conn *conn = timer->data;

    switch (conn->phase) {
    case PHASE_IDLE:
        log_debug("http", "closing idle connection from %s", conn->remote_addr);
        conn_close(conn);
        break;
    case PHASE_HEADERS:
    case PHASE_BODY:
        log_info("http", "dropping slow client %s", conn->remote_addr);
        conn_fail(conn, 408);
        break;
    case PHASE_CLOSING:
        conn_close(conn);
        break;
    default:
        break;
    }
}

static void conn_arm_timer(struct http_conn *conn)
{
    const struct http_limits *limits = &conn->server->limits;
    uint64_t now = uv_now(conn->server->loop);
    uint64_t timeout;

    switch (conn->phase) {
    case PHASE_IDLE:
        timeout = limits->idle_timeout_ms;
        break;
    case PHASE_HEADERS:
        timeout = conn->headers_deadline_ms > now ? conn->headers_deadline_ms - now : 1;
        break;
    case PHASE_BODY:
        timeout = limits->body_timeout_ms;
        break;
    default:
        uv_timer_stop(&conn->timer);
        return;
    }
    uv_timer_start(&conn->timer, on_timeout, timeout, 0);
}

static void alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *b)
{
    static char slab[65536]; /* the loop is single-threaded and reads are synchronous */

    (void)handle;
    (void)suggested;
    *b = uv_buf_init(slab, sizeof(slab));
}

/* Called when a request's response is queued: frees the request and makes
 * the connection ready for the next one. Inside dispatch() (a handler that
 * responded at once) conn_process() goes on with the bytes it holds;
 * otherwise the bytes kept in conn->pending are parsed now. */
static void request_finish(struct http_request *req)
{
    struct http_conn *conn = req->conn;
    struct buf rest;

    if (conn->req == req)
        conn->req = NULL;
    request_free(req);
    if (conn->closing || conn->phase == PHASE_CLOSING || !conn->keep_alive)
        return;
    conn->phase = PHASE_IDLE;
    if (conn->server->stopping) {
        conn_close(conn);
        return;
    }
    llhttp_resume(&conn->parser);
    conn_arm_timer(conn);
    if (conn->dispatching) {
        conn->finished_in_dispatch = 1;
        return;
    }
    rest = conn->pending;
    buf_init(&conn->pending, 0);
    conn_process(conn, rest.data, rest.len);
    buf_free(&rest);
}

static void dispatch(struct http_conn *conn)
{
    struct http_request *req = conn->req;

    uv_timer_stop(&conn->timer);
    if (!conn->handler) {
        int status = req->status ? req->status : 404;
        if (status == 405)
            http_respond_error(req, 405, "method_not_allowed",
                               "Cette méthode n'est pas autorisée pour cette adresse.");
        else
            http_respond_error(req, status, "not_found", "Ressource introuvable.");
        return;
    }
    conn->handler(req, conn->handler_ctx);
}

/* Parses data; dispatches each complete request in turn. Bytes that follow
 * a request whose handler has not responded yet are kept for later. */
static void conn_process(struct http_conn *conn, const char *data, size_t len)
{
    while (len > 0 && !conn->closing) {
        enum llhttp_errno err = llhttp_execute(&conn->parser, data, len);
        const char *stop;
        size_t used;

        if (err == HPE_OK) {
            len = 0;
            break;
        }
        if (err != HPE_PAUSED) {
            conn_fail(conn, conn->error_status ? conn->error_status : 400);
            return;
        }
        stop = llhttp_get_error_pos(&conn->parser);
        used = stop ? (size_t)(stop - data) : len;
        data += used;
        len -= used;

        conn->dispatching = 1;
        conn->finished_in_dispatch = 0;
        dispatch(conn);
        conn->dispatching = 0;
        if (!conn->finished_in_dispatch) {
            /* The handler kept the request, or the connection is closing. */
            uv_read_stop((uv_stream_t *)&conn->tcp);
            if (len > 0 && !conn->closing && conn->phase == PHASE_HANDLING)
                buf_append(&conn->pending, data, len);
            return;
        }
    }
    if (!conn->closing && conn->phase != PHASE_HANDLING && conn->phase != PHASE_CLOSING) {
        if (uv_stream_get_write_queue_size((uv_stream_t *)&conn->tcp) < WRITE_QUEUE_PAUSE)
            uv_read_start((uv_stream_t *)&conn->tcp, alloc_cb, on_read);
        else
            uv_read_stop((uv_stream_t *)&conn->tcp);
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
    struct http_conn *conn = stream->data;

    if (nread < 0) {
        if (nread != UV_EOF)
            log_debug("http", "read from %s failed: %s", conn->remote_addr,
                      uv_strerror((int)nread));
        if (conn->phase == PHASE_HANDLING) {
            /* Let the handler finish; its response will go nowhere. */
            uv_read_stop(stream);
            conn->keep_alive = 0;
            return;
        }
        conn_close(conn);
        return;
    }
    if (nread == 0)
        return;
    if (conn->phase == PHASE_IDLE)
        conn_arm_timer(conn);
    else if (conn->phase == PHASE_BODY)
        conn_arm_timer(conn);
    conn_process(conn, b->base, (size_t)nread);
}

static struct http_conn *conn_new(struct http_server *server)
{
    struct http_conn *conn = calloc(1, sizeof(*conn));

    if (!conn)
        return NULL;
    conn->server = server;
    conn->upload_fd = -1;
    conn->phase = PHASE_IDLE;
    buf_init(&conn->url, 0);
    buf_init(&conn->field, 0);
    buf_init(&conn->value, 0);
    buf_init(&conn->pending, 0);
    uv_tcp_init(server->loop, &conn->tcp);
    uv_timer_init(server->loop, &conn->timer);
    conn->tcp.data = conn;
    conn->timer.data = conn;
    conn->handles_open = 2;
    conn->next = server->conns;
    if (server->conns)
        server->conns->prev = conn;
    server->conns = conn;
    server->connections++;
    llhttp_init(&conn->parser, HTTP_REQUEST, &parser_settings);
    conn->parser.data = conn;
    return conn;
}

void http_server_feed(struct http_server *server, const char *data, size_t len, size_t split,
                      struct buf *out)
{
    struct http_conn *conn = conn_new(server);

    if (!conn)
        return;
    conn->sink = out;
    snprintf(conn->remote_addr, sizeof(conn->remote_addr), "fuzz");
    if (split > len)
        split = len;
    conn_process(conn, data, split);
    if (!conn->closing && conn->pending.len == 0 && conn->phase != PHASE_HANDLING)
        conn_process(conn, data + split, len - split);
    else if (!conn->closing)
        buf_append(&conn->pending, data + split, len - split);
    if (conn->phase != PHASE_HANDLING)
        conn_close(conn);
    else
        conn->keep_alive = 0; /* close once the handler responds */
}

static void on_connection(uv_stream_t *listener, int status)
{
    struct http_server *server = listener->data;
    struct http_conn *conn;
    struct sockaddr_storage addr;
    int addr_len = sizeof(addr);

    if (status < 0) {
        log_error("http", "accept failed: %s", uv_strerror(status));
        return;
    }
    conn = conn_new(server);
    if (!conn)
        return;

    if (uv_accept(listener, (uv_stream_t *)&conn->tcp) < 0) {
        conn_close(conn);
        return;
    }
    if (uv_tcp_getpeername(&conn->tcp, (struct sockaddr *)&addr, &addr_len) == 0) {
        if (addr.ss_family == AF_INET)
            uv_ip4_name((struct sockaddr_in *)&addr, conn->remote_addr, sizeof(conn->remote_addr));
        else
            uv_ip6_name((struct sockaddr_in6 *)&addr, conn->remote_addr, sizeof(conn->remote_addr));
    }
    uv_tcp_nodelay(&conn->tcp, 1);

    if (server->connections > server->limits.max_connections || server->stopping) {
        log_warn("http", "connection limit %u reached, rejecting %s",
                 server->limits.max_connections, conn->remote_addr);
        conn_fail(conn, 503);
        return;
    }
    conn_arm_timer(conn);
    uv_read_start((uv_stream_t *)&conn->tcp, alloc_cb, on_read);
}

/* ---- server -------------------------------------------------------------- */

struct http_server *http_server_new(uv_loop_t *loop, const char *host, int port,
                                    const struct http_limits *limits, const char *upload_dir,
                                    http_route_fn route, void *router, char **err)
{
    struct http_server *server = calloc(1, sizeof(*server));
    struct sockaddr_storage addr;
    unsigned char random_id[4];
    int rc;

    *err = NULL;
    if (!server) {
        *err = strdup("mémoire insuffisante");
        return NULL;
    }
    llhttp_settings_init(&parser_settings);
    parser_settings.on_message_begin = on_message_begin;
    parser_settings.on_url = on_url;
    parser_settings.on_header_field = on_header_field;
    parser_settings.on_header_value = on_header_value;
    parser_settings.on_headers_complete = on_headers_complete;
    parser_settings.on_body = on_body;
    parser_settings.on_message_complete = on_message_complete;

    server->loop = loop;
    server->limits = *limits;
    server->route = route;
    server->router = router;
    server->upload_dir = strdup(upload_dir);
    randombytes_buf(random_id, sizeof(random_id));
    snprintf(server->id_prefix, sizeof(server->id_prefix), "%02x%02x%02x%02x", random_id[0],
             random_id[1], random_id[2], random_id[3]);
    mkdir(upload_dir, 0700);

    if (strchr(host, ':'))
        rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    else
        rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc < 0) {
        *err = str_printf("Adresse d'écoute invalide « %s » : indiquez une adresse IP, par "
                          "exemple 127.0.0.1.",
                          host);
        free(server->upload_dir);
        free(server);
        return NULL;
    }
    uv_tcp_init(loop, &server->listener);
    server->listener.data = server;
    rc = uv_tcp_bind(&server->listener, (struct sockaddr *)&addr, 0);
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&server->listener, 511, on_connection);
    if (rc < 0) {
        *err = str_printf("Impossible d'écouter sur %s:%d : %s. Le port est-il déjà utilisé ?",
                          host, port, uv_strerror(rc));
        uv_close((uv_handle_t *)&server->listener, NULL);
        uv_run(loop, UV_RUN_NOWAIT);
        free(server->upload_dir);
        free(server);
        return NULL;
    }
    {
        struct sockaddr_storage bound;
        int len = sizeof(bound);
        uv_tcp_getsockname(&server->listener, (struct sockaddr *)&bound, &len);
        server->port = ntohs(bound.ss_family == AF_INET
                                 ? ((struct sockaddr_in *)&bound)->sin_port
                                 : ((struct sockaddr_in6 *)&bound)->sin6_port);
    }
    uv_timer_init(loop, &server->grace_timer);
    server->grace_timer.data = server;
    return server;
}

void http_server_set_trusted_proxy(struct http_server *server, const char *address)
{
    snprintf(server->trusted_proxy, sizeof(server->trusted_proxy), "%s", address ? address : "");
}

int http_server_port(struct http_server *server)
{
    return server->port;
}

unsigned http_server_connections(struct http_server *server)
{
    return server->connections;
}

static void check_stopped(struct http_server *server)
{
    if (server->stopping && server->connections == 0 && server->listener_closed &&
        server->stop_done) {
        void (*done)(void *) = server->stop_done;
        server->stop_done = NULL;
        uv_timer_stop(&server->grace_timer);
        done(server->stop_arg);
    }
}

static void on_listener_closed(uv_handle_t *handle)
{
    struct http_server *server = handle->data;

    server->listener_closed = 1;
    check_stopped(server);
}

static void on_grace_expired(uv_timer_t *timer)
{
    struct http_server *server = timer->data;

    log_warn("http", "shutdown grace period over, closing %u busy connections",
             server->connections);
    for (struct http_conn *c = server->conns; c; c = c->next)
        conn_close(c);
}

void http_server_stop(struct http_server *server, unsigned grace_ms,
                      void (*done)(void *arg), void *arg)
{
    struct http_conn *next;

    if (server->stopping)
        return;
    server->stopping = 1;
    server->stop_done = done;
    server->stop_arg = arg;
    uv_close((uv_handle_t *)&server->listener, on_listener_closed);
    for (struct http_conn *c = server->conns; c; c = next) {
        next = c->next;
        if (c->phase == PHASE_IDLE)
            conn_close(c);
        else
            c->keep_alive = 0;
    }
    uv_timer_start(&server->grace_timer, on_grace_expired, grace_ms, 0);
}

static void on_grace_timer_closed(uv_handle_t *handle)
{
    struct http_server *server = handle->data;

    free(server->upload_dir);
    free(server);
}

void http_server_free(struct http_server *server)
{
    if (!server)
        return;
    /* The listener is closed by http_server_stop; the struct is freed once
     * the last handle embedded in it is closed. */
    uv_close((uv_handle_t *)&server->grace_timer, on_grace_timer_closed);
}
