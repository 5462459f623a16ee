/*
 * Glue between libcurl's multi-socket API and libuv. libcurl reports which
 * sockets to watch (CURLMOPT_SOCKETFUNCTION) and when it next needs a call
 * (CURLMOPT_TIMERFUNCTION). libuv reports when a socket is ready or the
 * timer fired, and both events go to curl_multi_socket_action. Completed
 * transfers are collected with curl_multi_info_read after every such call.
 *
 * libcurl forbids calling it from inside its own callbacks, so the socket and
 * timer callbacks only start, change or stop uv handles.
 */
#include "curl_uv.h"
#include "log.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* One uv_poll_t per socket libcurl watches, attached to the socket with
 * curl_multi_assign and freed in its close callback. */
struct socket_watch {
    uv_poll_t poll;
    struct curl_uv *cu;
    curl_socket_t fd;
    struct socket_watch *prev, *next;
};

/* One per transfer in progress, reached from the easy handle through
 * CURLOPT_PRIVATE. */
struct transfer {
    CURL *easy;
    curl_uv_done_cb done;
    void *data;
    char error[CURL_ERROR_SIZE];
    struct transfer *prev, *next;
};

struct curl_uv {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    struct socket_watch *sockets;
    struct transfer *transfers;
    int running;
    int open_handles; /* uv handles not yet through their close callback */
    bool closing;
    curl_uv_closed_cb closed;
    void *closed_data;
};

static void maybe_free(struct curl_uv *cu)
{
    curl_uv_closed_cb closed;
    void *data;

    if (!cu->closing || cu->open_handles > 0)
        return;
    closed = cu->closed;
    data = cu->closed_data;
    free(cu);
    if (closed)
        closed(data);
}

static void socket_closed_cb(uv_handle_t *handle)
{
    struct socket_watch *watch = handle->data;
    struct curl_uv *cu = watch->cu;

    free(watch);
    cu->open_handles--;
    maybe_free(cu);
}

static void timer_closed_cb(uv_handle_t *handle)
{
    struct curl_uv *cu = handle->data;

    cu->open_handles--;
    maybe_free(cu);
}

static void unlink_socket(struct curl_uv *cu, struct socket_watch *watch)
{
    if (watch->prev)
        watch->prev->next = watch->next;
    else
        cu->sockets = watch->next;
    if (watch->next)
        watch->next->prev = watch->prev;
    watch->prev = watch->next = NULL;
}

/* Stops watching a socket and releases its record. uv_close stops polling at
 * once, so libcurl may close the descriptor right after this returns. */
static void release_socket(struct curl_uv *cu, struct socket_watch *watch)
{
    unlink_socket(cu, watch);
    uv_close((uv_handle_t *)&watch->poll, socket_closed_cb);
}

static void unlink_transfer(struct curl_uv *cu, struct transfer *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        cu->transfers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    cu->running--;
}

/* Collects finished transfers and calls their done callbacks. A callback may
 * add handles again, which curl_multi_info_read tolerates. */
static void collect_done(struct curl_uv *cu)
{
    CURLMsg *msg;
    int pending;

    while ((msg = curl_multi_info_read(cu->multi, &pending))) {
        struct transfer *t = NULL;
        CURL *easy = msg->easy_handle;
        CURLcode result = msg->data.result;
        const char *error;

        if (msg->msg != CURLMSG_DONE)
            continue;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
        curl_multi_remove_handle(cu->multi, easy);
        curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
        if (!t)
            continue;
        unlink_transfer(cu, t);
        if (result == CURLE_OK)
            error = "";
        else if (t->error[0])
            error = t->error;
        else
            error = curl_easy_strerror(result);
        t->done(easy, result, error, t->data);
        free(t);
    }
}

static void socket_action(struct curl_uv *cu, curl_socket_t fd, int events)
{
    int running = 0;
    CURLMcode rc = curl_multi_socket_action(cu->multi, fd, events, &running);

    if (rc != CURLM_OK)
        log_error("curl_uv", "curl_multi_socket_action failed: %s", curl_multi_strerror(rc));
    collect_done(cu);
}

static void poll_cb(uv_poll_t *handle, int status, int events)
{
    struct socket_watch *watch = handle->data;
    int flags = 0;

    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    socket_action(watch->cu, watch->fd, flags);
}

static void timer_cb(uv_timer_t *handle)
{
    socket_action(handle->data, CURL_SOCKET_TIMEOUT, 0);
}

/* CURLMOPT_SOCKETFUNCTION: what = CURL_POLL_IN, _OUT, _INOUT or _REMOVE. */
static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct curl_uv *cu = userp;
    struct socket_watch *watch = socketp;
    int events = 0;

    if (what == CURL_POLL_REMOVE) {
        if (watch) {
            curl_multi_assign(cu->multi, fd, NULL);
            release_socket(cu, watch);
        }
        return 0;
    }

    if (!watch) {
        watch = calloc(1, sizeof(*watch));
        if (!watch) {
            log_error("curl_uv", "out of memory watching socket %d", (int)fd);
            return -1;
        }
        if (uv_poll_init_socket(cu->loop, &watch->poll, fd) != 0) {
            log_error("curl_uv", "uv_poll_init_socket failed on socket %d", (int)fd);
            free(watch);
            return -1;
        }
        watch->poll.data = watch;
        watch->cu = cu;
        watch->fd = fd;
        watch->next = cu->sockets;
        if (cu->sockets)
            cu->sockets->prev = watch;
        cu->sockets = watch;
        cu->open_handles++;
        curl_multi_assign(cu->multi, fd, watch);
    }

    if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
        events |= UV_READABLE;
    if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
        events |= UV_WRITABLE;
    if (uv_poll_start(&watch->poll, events, poll_cb) != 0) {
        log_error("curl_uv", "uv_poll_start failed on socket %d", (int)fd);
        return -1;
    }
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: -1 deletes the timer, any other value (0 included)
 * replaces it. libcurl is called from timer_cb, never from here. */
static int timer_set_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct curl_uv *cu = userp;

    if (timeout_ms < 0)
        uv_timer_stop(&cu->timer);
    else
        uv_timer_start(&cu->timer, timer_cb, (uint64_t)timeout_ms, 0);
    return 0;
}

struct curl_uv *curl_uv_new(uv_loop_t *loop)
{
    static bool global_done;
    struct curl_uv *cu = NULL;

    if (!global_done) {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
            log_error("curl_uv", "curl_global_init failed");
            return NULL;
        }
        global_done = true;
    }

    cu = calloc(1, sizeof(*cu));
    if (!cu) {
        log_error("curl_uv", "out of memory");
        return NULL;
    }
    cu->loop = loop;
    cu->multi = curl_multi_init();
    if (!cu->multi) {
        log_error("curl_uv", "curl_multi_init failed");
        free(cu);
        return NULL;
    }
    uv_timer_init(loop, &cu->timer);
    cu->timer.data = cu;
    cu->open_handles = 1;

    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
    curl_multi_setopt(cu->multi, CURLMOPT_SOCKETDATA, cu);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERFUNCTION, timer_set_cb);
    curl_multi_setopt(cu->multi, CURLMOPT_TIMERDATA, cu);
    return cu;
}

CURLM *curl_uv_multi(struct curl_uv *cu)
{
    return cu->multi;
}

int curl_uv_running(const struct curl_uv *cu)
{
    return cu->running;
}

int curl_uv_add(struct curl_uv *cu, CURL *easy, curl_uv_done_cb done, void *data)
{
    struct transfer *t = calloc(1, sizeof(*t));
    CURLMcode rc;

    if (!t) {
        log_error("curl_uv", "out of memory adding a transfer");
        return -1;
    }
    t->easy = easy;
    t->done = done;
    t->data = data;
    curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->error);

    /* Adding arms the timer through timer_set_cb with a 0 ms timeout, and
     * the transfer starts from timer_cb on the next loop iteration. */
    rc = curl_multi_add_handle(cu->multi, easy);
    if (rc != CURLM_OK) {
        log_error("curl_uv", "curl_multi_add_handle failed: %s", curl_multi_strerror(rc));
        curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
        curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
        free(t);
        return -1;
    }
    t->next = cu->transfers;
    if (cu->transfers)
        cu->transfers->prev = t;
    cu->transfers = t;
    cu->running++;
    return 0;
}

int curl_uv_remove(struct curl_uv *cu, CURL *easy)
{
    struct transfer *t;

    for (t = cu->transfers; t; t = t->next) {
        if (t->easy == easy)
            break;
    }
    if (!t)
        return -1;
    unlink_transfer(cu, t);
    curl_multi_remove_handle(cu->multi, easy);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, NULL);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, NULL);
    free(t);
    return 0;
}

void curl_uv_close(struct curl_uv *cu, curl_uv_closed_cb closed, void *data)
{
    cu->closed = closed;
    cu->closed_data = data;

    while (cu->transfers)
        curl_uv_remove(cu, cu->transfers->easy);

    /* Cleaning up the multi handle closes cached connections, which may still
     * call socket_cb with CURL_POLL_REMOVE, so cu stays whole until then. */
    curl_multi_cleanup(cu->multi);
    cu->multi = NULL;
    cu->closing = true;

    while (cu->sockets)
        release_socket(cu, cu->sockets);
    uv_close((uv_handle_t *)&cu->timer, timer_closed_cb);
}
