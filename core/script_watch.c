/*
 * Hot reload: watches the script and plugin directories with uv_fs_event.
 * It watches directories rather than files, because editors save by
 * writing a temporary file and renaming it over the old one. Events are
 * debounced with a timer, and a reload happens only when the fingerprint
 * of the files (names, sizes, mtimes, inodes) changed. A slow poll timer covers file systems
 * where events are not delivered. Everything runs on the loop thread.
 */
#include "script_internal.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "util.h"

#define MAX_WATCHED_DIRS 128
#define MAX_WATCH_DEPTH 4

struct script_watch {
    struct script_engine *engine;
    uv_loop_t *loop;
    uv_timer_t debounce;
    uv_timer_t poll;
    uv_fs_event_t *events[MAX_WATCHED_DIRS];
    char *paths[MAX_WATCHED_DIRS];
    size_t count;
    int open_handles; /* handles whose close callback has not run yet */
    int stopping;
};

static void handle_closed(uv_handle_t *handle)
{
    struct script_watch *w = handle->data;

    if (handle->type == UV_FS_EVENT)
        free(handle);
    w->open_handles--;
}

static void check_and_reload(struct script_watch *w);

static void debounce_fired(uv_timer_t *timer)
{
    check_and_reload(timer->data);
}

static void poll_fired(uv_timer_t *timer)
{
    check_and_reload(timer->data);
}

static void fs_event(uv_fs_event_t *handle, const char *filename, int events, int status)
{
    struct script_watch *w = handle->data;

    if (status < 0)
        log_warn("script", "watch error on %s: %s", handle->path ? handle->path : "?",
                 uv_strerror(status));
    if (!w->stopping)
        uv_timer_start(&w->debounce, debounce_fired, w->engine->debounce_ms, 0);
}

static int is_watched(struct script_watch *w, const char *path)
{
    for (size_t i = 0; i < w->count; i++) {
        if (strcmp(w->paths[i], path) == 0)
            return 1;
    }
    return 0;
}

static void watch_dir(struct script_watch *w, const char *path)
{
    uv_fs_event_t *handle;
    int rc;

    if (is_watched(w, path))
        return;
    if (w->count == MAX_WATCHED_DIRS) {
        log_warn("script", "not watching %s: more than %d directories (the poll still covers it)",
                 path, MAX_WATCHED_DIRS);
        return;
    }
    handle = calloc(1, sizeof(*handle));
    if (handle == NULL)
        return;
    uv_fs_event_init(w->loop, handle);
    handle->data = w;
    w->open_handles++;
    rc = uv_fs_event_start(handle, fs_event, path, 0);
    if (rc < 0) {
        log_warn("script", "cannot watch %s: %s (the poll still covers it)", path,
                 uv_strerror(rc));
        uv_close((uv_handle_t *)handle, handle_closed);
        return;
    }
    w->paths[w->count] = strdup(path);
    w->events[w->count++] = handle;
}

/* Watches dir and its subdirectories (hidden ones excluded). */
static void watch_tree(struct script_watch *w, const char *dir, int depth)
{
    DIR *d;
    struct dirent *entry;
    struct stat st;

    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return;
    watch_dir(w, dir);
    if (depth >= MAX_WATCH_DEPTH || (d = opendir(dir)) == NULL)
        return;
    while ((entry = readdir(d)) != NULL) {
        char *sub;

        if (entry->d_name[0] == '.')
            continue;
        sub = str_printf("%s/%s", dir, entry->d_name);
        if (sub != NULL && stat(sub, &st) == 0 && S_ISDIR(st.st_mode))
            watch_tree(w, sub, depth + 1);
        free(sub);
    }
    closedir(d);
}

static void watch_all(struct script_watch *w)
{
    watch_tree(w, w->engine->scripts_dir, 0);
    if (w->engine->plugins_dir != NULL)
        watch_tree(w, w->engine->plugins_dir, 0);
}

static void check_and_reload(struct script_watch *w)
{
    if (w->stopping)
        return;
    script_engine_reload_if_changed(w->engine);
    /* New subdirectories (a new plugin, scripts/formats/ created) get
     * watched from now on. */
    watch_all(w);
}

int script_engine_watch(struct script_engine *engine, uv_loop_t *loop)
{
    struct script_watch *w;

    if (engine->watch != NULL)
        return -1;
    w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -1;
    w->engine = engine;
    w->loop = loop;
    uv_timer_init(loop, &w->debounce);
    uv_timer_init(loop, &w->poll);
    w->debounce.data = w->poll.data = w;
    w->open_handles = 2;
    watch_all(w);
    uv_timer_start(&w->poll, poll_fired, engine->poll_ms, engine->poll_ms);
    engine->watch = w;
    log_info("script", "watching %zu directories (debounce %u ms, poll every %u ms)", w->count,
             engine->debounce_ms, engine->poll_ms);
    return 0;
}

void script_engine_stop(struct script_engine *engine)
{
    struct script_watch *w = engine->watch;

    if (w == NULL || w->stopping)
        return;
    w->stopping = 1;
    uv_close((uv_handle_t *)&w->debounce, handle_closed);
    uv_close((uv_handle_t *)&w->poll, handle_closed);
    for (size_t i = 0; i < w->count; i++)
        uv_close((uv_handle_t *)w->events[i], handle_closed);
    log_info("script", "stopped watching the script directories");
}

void script_watch_free(struct script_watch *w)
{
    if (w == NULL)
        return;
    if (w->open_handles > 0) {
        /* The loop has not run the close callbacks: freeing now would leave
         * libuv with dangling handles, so leak the watch instead. */
        log_error("script", "engine freed with %d watch handles still open; call "
                            "script_engine_stop() and run the loop first",
                  w->open_handles);
        return;
    }
    for (size_t i = 0; i < w->count; i++)
        free(w->paths[i]);
    free(w);
}
