/*
 * libcurl's multi interface driven by the libuv loop. One struct curl_uv
 * owns one curl multi handle, one uv_timer_t for libcurl's timeouts and one
 * uv_poll_t per socket that libcurl needs watched. Transfers never block the
 * loop: libcurl only runs from curl_multi_socket_action, called from poll
 * and timer callbacks.
 *
 * The caller owns its easy handles: it configures them, adds them here, gets
 * one completion callback per transfer, and may then add the same handle
 * again (libcurl keeps connections in the multi handle's cache, so reusing
 * handles on one multi reuses SMTP and HTTP connections) or clean it up.
 * Everything runs on the loop's thread.
 */
#ifndef LICOL_CURL_UV_H
#define LICOL_CURL_UV_H

#include <curl/curl.h>
#include <uv.h>

struct curl_uv;

/* Called once when a transfer added with curl_uv_add ends, after the easy
 * handle was removed from the multi handle. error is a short English
 * description for logs, taken from libcurl's error buffer or else from
 * curl_easy_strerror(result). It is "" on success and valid only during the
 * call. The callback may add easy (or any handle) again, or clean it up. */
typedef void (*curl_uv_done_cb)(CURL *easy, CURLcode result, const char *error, void *data);

/* Called once from curl_uv_close when the last uv handle is closed and the
 * struct curl_uv has been freed. */
typedef void (*curl_uv_closed_cb)(void *data);

/* Creates the multi handle and its timer on loop. Returns NULL on failure
 * (out of memory, or libcurl could not create a multi handle) and logs the
 * reason. The first call also runs curl_global_init(CURL_GLOBAL_DEFAULT),
 * which is not thread-safe: make it before starting other threads. */
struct curl_uv *curl_uv_new(uv_loop_t *loop);

/* Returns the multi handle, for options such as CURLMOPT_MAXCONNECTS. */
CURLM *curl_uv_multi(struct curl_uv *cu);

/* Starts the transfer configured on easy. done fires exactly once unless
 * curl_uv_remove or curl_uv_close comes first. This sets CURLOPT_PRIVATE
 * and CURLOPT_ERRORBUFFER on easy, so the caller must not use those two.
 * Returns 0, or -1 (logged) when libcurl rejects the handle, in which case
 * done never fires. */
int curl_uv_add(struct curl_uv *cu, CURL *easy, curl_uv_done_cb done, void *data);

/* Cancels a transfer started with curl_uv_add without calling its done
 * callback. Returns 0, or -1 when easy is not in progress here. */
int curl_uv_remove(struct curl_uv *cu, CURL *easy);

/* Returns the number of transfers in progress. */
int curl_uv_running(const struct curl_uv *cu);

/* Cancels every transfer in progress (their done callbacks do not fire),
 * cleans up the multi handle, which closes cached connections, and closes
 * every uv handle. The struct is freed in the last close callback, after
 * which closed (may be NULL) fires. The loop must run for that to happen.
 * The caller still owns and cleans up its easy handles, after this call. */
void curl_uv_close(struct curl_uv *cu, curl_uv_closed_cb closed, void *data);

#endif
