/*
 * Import routes of the JSON API: upload (streamed to disk), preview and
 * confirm, status with progress, report, rejected rows, undo, history.
 *
 * A run executes in libuv's thread pool with its own SQLite connection and
 * its own Lua state built from the script version current at upload time,
 * so the loop keeps serving requests while a large file is imported. One run at a
 * time: another upload meanwhile is answered 409.
 */
#include "api.h"
#include "app.h"
#include "auth.h"
#include "import.h"
#include "log.h"
#include "script.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct import_manager {
    struct app *app;
    struct import_work *current;
    int undoing;
    struct {
        api_import_finished_fn cb;
        void *arg;
    } listeners[API_IMPORT_MAX_LISTENERS];
    int listener_count;
};

struct import_work {
    uv_work_t work;
    struct import_manager *manager;
    struct script_version *version;
    struct import_options options;
    struct import_progress progress;
    struct import_counts counts;
    int64_t run_id;
    char path[1200];
    char db_path[1024];
    int keep_file; /* a preview keeps its file for the confirmation */
    int64_t confirms; /* the preview whose file this real run consumes */
    int failed;
    atomic_int finished; /* the worker is done; only work_done is still to run */
};

static struct import_manager manager;

/* Returns 1 while an import or an undo is in progress. A run whose worker
 * has finished no longer counts, even before its completion callback ran:
 * staff polling the run see it done and may start the next one at once. */
static int manager_busy(void)
{
    return manager.undoing || (manager.current && !atomic_load(&manager.current->finished));
}

/* ---- worker ---------------------------------------------------------------- */

static void work_run(uv_work_t *req)
{
    struct import_work *w = req->data;
    char *err = NULL;
    struct db *db = db_open(w->db_path, &err);
    struct script_state *state = NULL;
    int file_rejected = 0;

    if (db) {
        /* A larger page cache for the bulk writes (SQLite's default is 2 MB). */
        db_exec(db, "PRAGMA cache_size = -16000");
        state = script_state_new(w->version, &err);
    }
    if (!db || !state) {
        log_error("import", "run %lld: worker set-up failed: %s", (long long)w->run_id,
                  err ? err : "?");
        if (db) {
            sqlite3_stmt *stmt = db_stmt(db, "UPDATE import_run SET state = 'failed', error = ?2"
                                             " WHERE id = ?1");
            if (stmt) {
                sqlite3_bind_int64(stmt, 1, w->run_id);
                sqlite3_bind_text(stmt, 2, err ? err : "Erreur interne.", -1, SQLITE_STATIC);
                sqlite3_step(stmt);
                sqlite3_reset(stmt);
            }
        }
        w->failed = 1;
        free(err);
        db_close(db);
        atomic_store(&w->finished, 1);
        return;
    }
    if (import_run_execute(db, state, w->run_id, w->path, &w->options, &w->progress, NULL, NULL,
                           &w->counts, &file_rejected, &err) < 0) {
        w->failed = 1;
        free(err);
    }
    script_state_free(state);
    db_close(db);
    atomic_store(&w->finished, 1);
}

static void work_done(uv_work_t *req, int status)
{
    struct import_work *w = req->data;
    struct app *app = w->manager->app;

    if (status == UV_ECANCELED)
        log_warn("import", "run %lld cancelled before it started", (long long)w->run_id);
    if (!w->keep_file || w->failed) {
        if (unlink(w->path) < 0 && errno != ENOENT)
            log_warn("import", "cannot remove %s: %s", w->path, strerror(errno));
        if (w->keep_file || w->confirms) {
            sqlite3_stmt *stmt = db_stmt(app->db, "UPDATE import_run SET file_path = NULL"
                                                  " WHERE id = ?1 OR id = ?2");
            if (stmt) {
                sqlite3_bind_int64(stmt, 1, w->run_id);
                sqlite3_bind_int64(stmt, 2, w->confirms);
                sqlite3_step(stmt);
                sqlite3_reset(stmt);
            }
        }
    }
    script_version_release(w->version);
    if (w->manager->current == w)
        w->manager->current = NULL;
    api_data_changed();
    for (int i = 0; i < manager.listener_count; i++)
        manager.listeners[i].cb(app, w->run_id, w->options.dry_run, w->failed,
                                manager.listeners[i].arg);
    free(w);
}

/* Starts a run on the file at path, which the run then owns (a real run
 * deletes it when done; a preview keeps it for the confirmation). Returns
 * 0 with *run_id set, or -1 with *err (French) and the file removed. */
int api_import_start(struct app *app, const char *path, const struct import_options *options,
                     int64_t confirms, int64_t *run_id, char **err)
{
    struct import_work *w;

    *err = NULL;
    if (manager_busy()) {
        *err = manager.undoing ? strdup("Une annulation d'import est en cours.")
                               : str_printf("Un import est déjà en cours (n° %lld).",
                                            (long long)manager.current->run_id);
        return -1;
    }
    w = calloc(1, sizeof(*w));
    if (!w) {
        unlink(path);
        *err = strdup("Mémoire insuffisante.");
        return -1;
    }
    w->manager = &manager;
    w->options = *options;
    w->confirms = confirms;
    w->keep_file = options->dry_run;
    snprintf(w->path, sizeof(w->path), "%s", path);
    snprintf(w->db_path, sizeof(w->db_path), "%s", app->config.db_path);
    atomic_init(&w->progress.lines_done, 0);
    atomic_init(&w->progress.lines_total, 0);
    atomic_init(&w->progress.rows, 0);
    atomic_init(&w->progress.cancel, 0);
    atomic_init(&w->finished, 0);

    w->run_id = import_run_create(app->db, path, options, err);
    if (w->run_id < 0) {
        unlink(path);
        free(w);
        return -1;
    }
    {
        sqlite3_stmt *stmt = db_stmt(app->db, "SELECT file_lines FROM import_run WHERE id = ?1");
        if (stmt) {
            sqlite3_bind_int64(stmt, 1, w->run_id);
            if (sqlite3_step(stmt) == SQLITE_ROW)
                atomic_store(&w->progress.lines_total, sqlite3_column_int64(stmt, 0));
            sqlite3_reset(stmt);
        }
    }
    w->version = script_engine_acquire(app->scripts);
    w->work.data = w;
    manager.current = w;
    if (uv_queue_work(app->loop, &w->work, work_run, work_done) < 0) {
        manager.current = NULL;
        script_version_release(w->version);
        unlink(path);
        free(w);
        *err = strdup("Impossible de lancer l'import.");
        return -1;
    }
    *run_id = w->run_id;
    return 0;
}

/* Starts a run and responds 202 with it, or with the error. */
static void start_run(struct app *app, struct http_request *req, const char *path,
                      const struct import_options *options, int64_t confirms)
{
    int64_t run_id;
    char *err = NULL;
    json_t *run;

    if (api_import_start(app, path, options, confirms, &run_id, &err) < 0) {
        api_respond_errorf(req, manager_busy() ? 409 : 422, "import_failed", "%s", err);
        free(err);
        return;
    }
    run = import_run_to_json(app->db, run_id);
    http_respond_json(req, 202, json_pack("{s:o}", "run", run ? run : json_null()));
}

/* ---- routes -------------------------------------------------------------------- */

static int reject_if_busy(struct http_request *req)
{
    if (manager.undoing) {
        http_respond_error(req, 409, "import_running",
                           "Une annulation d'import est en cours. Attendez qu'elle se termine.");
        return 1;
    }
    if (manager_busy()) {
        api_respond_errorf(req, 409, "import_running",
                           "Un import est déjà en cours (n° %lld). Attendez qu'il se termine "
                           "avant d'en lancer un autre.",
                           (long long)manager.current->run_id);
        return 1;
    }
    return 0;
}

static void handle_upload(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_require(app, req, "import.run", 0);
    struct import_options options;
    char value[300], dir[1100], path[1200];

    if (!user)
        return;
    if (reject_if_busy(req))
        return;
    if (!req->upload_path || req->body_size == 0) {
        http_respond_error(req, 400, "empty_file",
                           "Aucun fichier reçu : choisissez le fichier à importer.");
        return;
    }
    memset(&options, 0, sizeof(options));
    options.dry_run = http_query_param(req, "dry_run", value, sizeof(value)) &&
                      strcmp(value, "0") != 0 && strcmp(value, "false") != 0;
    options.replace = http_query_param(req, "replace", value, sizeof(value)) &&
                      strcmp(value, "0") != 0 && strcmp(value, "false") != 0;
    snprintf(options.format, sizeof(options.format), "auto");
    if (http_query_param(req, "format", value, sizeof(value)) && value[0]) {
        size_t len = strlen(value);
        if (len >= sizeof(options.format) || strpbrk(value, "/.\\")) {
            http_respond_error(req, 400, "bad_format", "Format inconnu.");
            return;
        }
        memcpy(options.format, value, len + 1);
    }
    if (!http_query_param(req, "filename", options.filename, sizeof(options.filename)) ||
        !options.filename[0])
        snprintf(options.filename, sizeof(options.filename), "fichier.csv");
    snprintf(options.source, sizeof(options.source), "web");
    options.actor_id = user->person_id;

    /* Keep the upload out of the request's hands: it lives as long as the
     * run needs it. */
    snprintf(dir, sizeof(dir), "%s/imports", app->config.var_dir);
    mkdir(dir, 0700);
    snprintf(path, sizeof(path), "%s/%s.csv", dir, req->id);
    if (rename(req->upload_path, path) < 0) {
        log_error("import", "cannot move upload to %s: %s", path, strerror(errno));
        http_respond_error(req, 500, "internal", "Impossible d'enregistrer le fichier reçu.");
        return;
    }
    free(req->upload_path);
    req->upload_path = NULL;
    start_run(app, req, path, &options, 0);
}

static void add_live_progress(json_t *run, int64_t run_id)
{
    struct import_work *w = manager.current;
    long long total, done;

    if (!w || w->run_id != run_id)
        return;
    total = atomic_load(&w->progress.lines_total);
    done = atomic_load(&w->progress.lines_done);
    json_object_set_new(run, "progress",
                        json_pack("{s:I,s:I,s:I,s:i}", "lines_total", (json_int_t)total,
                                  "lines_done", (json_int_t)done, "rows",
                                  (json_int_t)atomic_load(&w->progress.rows), "percent",
                                  total > 0 ? (int)(done * 100 / total) : 0));
}

static void handle_get(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    int64_t id;
    json_t *run;

    if (!auth_require(app, req, "import.read", 0))
        return;
    id = api_param_id(req, "id");
    if (!id)
        return;
    run = import_run_to_json(app->db, id);
    if (!run) {
        http_respond_error(req, 404, "not_found", "Import introuvable.");
        return;
    }
    add_live_progress(run, id);
    http_respond_json(req, 200, run);
}

static void handle_list(struct http_request *req, void *ctx)
{
    struct app *app = ctx;

    if (!auth_require(app, req, "import.read", 0))
        return;
    http_respond_json(req, 200, json_pack("{s:o,s:b}", "items", import_run_list(app->db, 100),
                                          "running", manager_busy()));
}

static void handle_confirm(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_require(app, req, "import.run", 0);
    struct import_options options;
    sqlite3_stmt *stmt;
    int64_t id;
    int found = 0, usable = 0;

    if (!user)
        return;
    id = api_param_id(req, "id");
    if (!id || reject_if_busy(req))
        return;
    memset(&options, 0, sizeof(options));
    stmt = db_stmt(app->db, "SELECT dry_run, state, file_path, replace_data, format_requested,"
                            " filename FROM import_run WHERE id = ?1");
    if (!stmt) {
        api_respond_db_error(req, app, "confirm import");
        return;
    }
    sqlite3_bind_int64(stmt, 1, id);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(stmt, 1);
        const char *path = (const char *)sqlite3_column_text(stmt, 2);
        found = 1;
        usable = sqlite3_column_int(stmt, 0) == 1 && state && !strcmp(state, "done") && path;
        if (usable) {
            options.replace = sqlite3_column_int(stmt, 3);
            snprintf(options.format, sizeof(options.format), "%s",
                     (const char *)sqlite3_column_text(stmt, 4));
            snprintf(options.filename, sizeof(options.filename), "%s",
                     (const char *)sqlite3_column_text(stmt, 5));
        }
        if (usable) {
            char path_copy[1200];
            snprintf(path_copy, sizeof(path_copy), "%s", path);
            sqlite3_reset(stmt);
            snprintf(options.source, sizeof(options.source), "web");
            options.actor_id = user->person_id;
            options.preview_of = id;
            start_run(app, req, path_copy, &options, id);
            return;
        }
    }
    sqlite3_reset(stmt);
    if (!found)
        http_respond_error(req, 404, "not_found", "Import introuvable.");
    else
        http_respond_error(req, 409, "not_confirmable",
                           "Cet import ne peut pas être confirmé : seul un aperçu terminé, dont "
                           "le fichier est encore disponible, peut l'être. Envoyez de nouveau "
                           "le fichier.");
}

static void handle_rejected(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    struct buf out;
    char disposition[128];
    int64_t id;

    if (!auth_require(app, req, "import.read", 0))
        return;
    id = api_param_id(req, "id");
    if (!id)
        return;
    buf_init(&out, 256 * 1024 * 1024);
    if (import_rejected_csv(app->db, id, &out) < 0) {
        buf_free(&out);
        http_respond_error(req, 404, "not_found", "Import introuvable.");
        return;
    }
    snprintf(disposition, sizeof(disposition), "attachment; filename=\"rejets-import-%lld.csv\"",
             (long long)id);
    http_set_header(req, "Content-Disposition", disposition);
    http_set_header(req, "Cache-Control", "no-store");
    http_respond(req, 200, "text/csv; charset=utf-8", out.data, out.len);
    buf_free(&out);
}

/* An undo runs in the thread pool with its own connection: undoing a large
 * import rewrites many rows, and the loop must keep serving requests meanwhile. */
struct undo_work {
    uv_work_t work;
    struct app *app;
    struct http_request *req;
    char db_path[1024];
    int64_t run_id;
    int64_t actor_id;
    int rc;
    char *err;
    json_t *conflicts;
};

static void undo_run(uv_work_t *work)
{
    struct undo_work *u = work->data;
    struct db *db = db_open(u->db_path, &u->err);

    if (!db) {
        u->rc = -1;
        return;
    }
    u->rc = import_undo(db, u->run_id, u->actor_id, &u->err, &u->conflicts);
    db_close(db);
}

static void undo_done(uv_work_t *work, int status)
{
    struct undo_work *u = work->data;

    manager.undoing = 0;
    api_data_changed();
    if (status < 0 || u->rc < 0) {
        json_t *body = json_pack("{s:{s:s,s:s}}", "error", "code",
                                 u->conflicts ? "conflict" : "not_undoable", "message",
                                 u->err ? u->err : "Annulation impossible.");
        if (u->conflicts)
            json_object_set_new(json_object_get(body, "error"), "conflicts", u->conflicts);
        http_respond_json(u->req, 409, body);
    } else {
        http_respond_json(u->req, 200,
                          json_pack("{s:o}", "run", import_run_to_json(u->app->db, u->run_id)));
    }
    free(u->err);
    free(u);
}

static void handle_undo(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_require(app, req, "import.undo", 0);
    struct undo_work *u;
    int64_t id;

    if (!user)
        return;
    id = api_param_id(req, "id");
    if (!id || reject_if_busy(req))
        return;
    u = calloc(1, sizeof(*u));
    if (!u) {
        http_respond_error(req, 500, "internal", "Mémoire insuffisante.");
        return;
    }
    u->app = app;
    u->req = req;
    u->run_id = id;
    u->actor_id = user->person_id;
    snprintf(u->db_path, sizeof(u->db_path), "%s", app->config.db_path);
    u->work.data = u;
    manager.undoing = 1;
    if (uv_queue_work(app->loop, &u->work, undo_run, undo_done) < 0) {
        manager.undoing = 0;
        free(u);
        http_respond_error(req, 500, "internal", "Impossible de lancer l'annulation.");
    }
    /* The response is sent by undo_done. */
}

/* Removes files under var/imports that no run needs any more: uploads of
 * runs killed before they finished, and previews never confirmed within
 * a week (their file_path is cleared so they are no longer confirmable). */
static void clean_import_files(struct app *app)
{
    char dir_path[1100], path[1400];
    sqlite3_stmt *stmt;
    DIR *dir;
    struct dirent *entry;
    int removed = 0;

    stmt = db_stmt(app->db, "UPDATE import_run SET file_path = NULL WHERE file_path IS NOT NULL"
                            " AND created_at < strftime('%Y-%m-%dT%H:%M:%SZ', 'now', '-7 days')");
    if (stmt) {
        sqlite3_step(stmt);
        sqlite3_reset(stmt);
    }
    snprintf(dir_path, sizeof(dir_path), "%s/imports", app->config.var_dir);
    dir = opendir(dir_path);
    if (!dir)
        return;
    while ((entry = readdir(dir)) != NULL) {
        int referenced = 0;
        if (entry->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir_path, entry->d_name);
        stmt = db_stmt(app->db, "SELECT 1 FROM import_run WHERE file_path = ?1");
        if (!stmt)
            break;
        sqlite3_bind_text(stmt, 1, path, -1, SQLITE_STATIC);
        referenced = sqlite3_step(stmt) == SQLITE_ROW;
        sqlite3_reset(stmt);
        if (!referenced && unlink(path) == 0)
            removed++;
    }
    closedir(dir);
    if (removed)
        log_info("import", "removed %d import files no run needs", removed);
}

/* Refuses an upload before its body is stored: without a session (or
 * token) allowed to import, nothing reaches the disk. */
static int precheck_upload(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const char *code, *message;
    int status;
    const struct auth_user *user = auth_identify(app, req, &status, &code, &message);

    if (!user)
        return status;
    return auth_allowed(app, user, "import.run", 0) ? 0 : 403;
}

void api_import_register_routes(struct app *app)
{
    manager.app = app;
    import_recover_interrupted(app->db);
    clean_import_files(app);
    router_add_upload(app->router, "POST", "/api/v1/imports", handle_upload, app, precheck_upload);
    router_add(app->router, "GET", "/api/v1/imports", handle_list, app, 0);
    router_add(app->router, "GET", "/api/v1/imports/:id", handle_get, app, 0);
    router_add(app->router, "POST", "/api/v1/imports/:id/confirm", handle_confirm, app, 0);
    router_add(app->router, "GET", "/api/v1/imports/:id/rejected.csv", handle_rejected, app, 0);
    router_add(app->router, "POST", "/api/v1/imports/:id/undo", handle_undo, app, 0);
}

int api_import_busy(void)
{
    return manager_busy();
}

void api_import_cancel(void)
{
    if (manager.current && !atomic_load(&manager.current->finished)) {
        log_info("import", "run %lld: cancelling for shutdown", (long long)manager.current->run_id);
        atomic_store(&manager.current->progress.cancel, 1);
    }
}

int api_import_add_listener(api_import_finished_fn cb, void *arg)
{
    if (manager.listener_count == API_IMPORT_MAX_LISTENERS)
        return -1;
    manager.listeners[manager.listener_count].cb = cb;
    manager.listeners[manager.listener_count].arg = arg;
    manager.listener_count++;
    return 0;
}
