/*
 * Process life cycle of `licol serve`: start-up order, signals, graceful
 * shutdown, and the routes that belong to no subsystem (health check,
 * static files of the staff interface).
 */
#include "api.h"
#include "app.h"
#include "log.h"
#include "migrate.h"
#include "password.h"
#include "util.h"

#include <errno.h>
#include <sodium.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- health and static files --------------------------------------------- */

static void handle_healthz(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    sqlite3_stmt *stmt = db_stmt(app->db, "SELECT 1");
    int db_ok = stmt && sqlite3_step(stmt) == SQLITE_ROW;
    int schema = 0;

    if (stmt)
        sqlite3_reset(stmt);
    /* Read-only on purpose: the health check must respond while an import
     * holds the database's write lock. */
    stmt = db_stmt(app->db, "SELECT COALESCE(MAX(number), 0) FROM schema_migration"
                            " WHERE scope = 'core'");
    if (stmt && sqlite3_step(stmt) == SQLITE_ROW)
        schema = sqlite3_column_int(stmt, 0);
    if (stmt)
        sqlite3_reset(stmt);
    http_respond_json(req, db_ok ? 200 : 503,
                      json_pack("{s:s,s:s,s:s,s:i,s:b}", "status", db_ok ? "ok" : "degraded",
                                "version", LICOL_VERSION, "started_at", app->started_at,
                                "schema", schema, "import_running", api_import_busy()));
}

static const char *content_type_for(const char *path)
{
    static const struct {
        const char *ext;
        const char *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".json", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".woff2", "font/woff2"},
        {".txt", "text/plain; charset=utf-8"},
    };
    const char *dot = strrchr(path, '.');

    for (size_t i = 0; dot && i < sizeof(types) / sizeof(types[0]); i++) {
        if (strcmp(dot, types[i].ext) == 0)
            return types[i].type;
    }
    return "application/octet-stream";
}

/* Serves files under web_dir. The decoded path must not contain a ".."
 * segment or a backslash, and the resolved file must stay inside web_dir
 * (this also rejects symbolic links leading out). */
static void handle_static(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const char *rel = http_param(req, "path");
    char root[PATH_MAX], wanted[PATH_MAX + 32], resolved[PATH_MAX];
    struct stat st;
    size_t root_len;

    if (!rel || !*rel)
        rel = "index.html";
    if (strstr(rel, "..") || strchr(rel, '\\') || rel[0] == '/') {
        http_respond_error(req, 404, "not_found", "Ressource introuvable.");
        return;
    }
    if (!realpath(app->config.web_dir, root)) {
        http_respond_error(req, 404, "not_found", "Ressource introuvable.");
        return;
    }
    if ((size_t)snprintf(wanted, sizeof(wanted), "%s/%s", root, rel) >= sizeof(wanted)) {
        http_respond_error(req, 404, "not_found", "Ressource introuvable.");
        return;
    }
    root_len = strlen(root);
    if (!realpath(wanted, resolved) || strncmp(resolved, root, root_len) != 0 ||
        resolved[root_len] != '/' || stat(resolved, &st) < 0 || !S_ISREG(st.st_mode)) {
        /* Unknown paths without an extension are pages of the single-page
         * interface: serve its shell so that reloading a page works. */
        if (!strchr(rel, '.') && strncmp(rel, "api/", 4) != 0 && strcmp(rel, "api") != 0) {
            snprintf(wanted, sizeof(wanted), "%s/index.html", root);
            http_set_header(req, "Cache-Control", "no-cache");
            http_respond_file(req, wanted, "text/html; charset=utf-8");
            return;
        }
        http_respond_error(req, 404, "not_found", "Ressource introuvable.");
        return;
    }
    http_set_header(req, "Cache-Control", "no-cache");
    http_respond_file(req, resolved, content_type_for(resolved));
}

void app_register_core_routes(struct app *app)
{
    router_add(app->router, "GET", "/healthz", handle_healthz, app, 0);
}

/* ---- first manager account ----------------------------------------------- */

int app_ensure_manager(struct db *db, const char *email, char **err)
{
    sqlite3_stmt *stmt;
    char password[32], hash[PASSWORD_HASH_SIZE], now[32];
    sqlite3_int64 person_id;
    int has_manager;

    *err = NULL;
    stmt = db_stmt(db, "SELECT 1 FROM person_role WHERE role = 'gerant' LIMIT 1");
    if (!stmt)
        goto db_error;
    has_manager = sqlite3_step(stmt) == SQLITE_ROW;
    sqlite3_reset(stmt);
    if (has_manager)
        return 0;

    password_generate(password, sizeof(password));
    if (password_hash(password, hash) < 0) {
        *err = strdup("Impossible de chiffrer le mot de passe (mémoire insuffisante).");
        return -1;
    }
    db_now(now, sizeof(now));
    if (db_begin(db) != SQLITE_OK)
        goto db_error;
    stmt = db_stmt(db, "INSERT INTO person (last_name, first_name, email, password_hash,"
                       " must_change_password, search_text, created_at, updated_at)"
                       " VALUES ('Gérant', '', ?1, ?2, 1, ?1, ?3, ?3)");
    if (!stmt)
        goto rollback;
    sqlite3_bind_text(stmt, 1, email, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, now, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        goto rollback;
    person_id = sqlite3_last_insert_rowid(db_handle(db));
    stmt = db_stmt(db, "INSERT INTO person_role (person_id, role) VALUES (?1, 'gerant')");
    if (!stmt)
        goto rollback;
    sqlite3_bind_int64(stmt, 1, person_id);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        goto rollback;
    stmt = db_stmt(db, "INSERT INTO audit_log (at, person_id, action, field, new_value)"
                       " VALUES (?1, ?2, 'create', 'role', 'gerant')");
    if (!stmt)
        goto rollback;
    sqlite3_bind_text(stmt, 1, now, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, person_id);
    if (sqlite3_step(stmt) != SQLITE_DONE || db_commit(db) != SQLITE_OK)
        goto rollback;

    printf("\nCompte gérant créé.\n"
           "  Identifiant : %s\n"
           "  Mot de passe à usage unique : %s\n"
           "Il vous sera demandé d'en choisir un nouveau à la première connexion.\n\n",
           email, password);
    fflush(stdout);
    log_info("server", "created the first manager account (person %lld)", (long long)person_id);
    sodium_memzero(password, sizeof(password));
    return 0;

rollback:
    db_rollback(db);
db_error:
    *err = str_printf("Impossible de créer le compte gérant : %s", sqlite3_errmsg(db_handle(db)));
    return -1;
}

/* ---- signals and life cycle ---------------------------------------------- */

static void on_http_stopped(void *arg)
{
    struct app *app = arg;

    log_info("server", "all connections closed");
    uv_close((uv_handle_t *)&app->sigterm, NULL);
    uv_close((uv_handle_t *)&app->sigint, NULL);
    uv_close((uv_handle_t *)&app->sighup, NULL);
    app_subsystems_stop(app);
    http_server_free(app->http);
    app->http = NULL;
}

static void on_stop_signal(uv_signal_t *handle, int signum)
{
    struct app *app = handle->data;

    if (app->stopping) {
        log_warn("server", "second signal %d: exiting now", signum);
        exit(1);
    }
    app->stopping = 1;
    log_info("server", "signal %d: stopping, finishing %u open connections", signum,
             http_server_connections(app->http));
    api_import_cancel();
    http_server_stop(app->http, app->config.shutdown_grace_ms, on_http_stopped, app);
}

static void on_sighup(uv_signal_t *handle, int signum)
{
    struct app *app = handle->data;
    struct config fresh = app->config;
    char *err = NULL;

    (void)signum;
    log_info("server", "SIGHUP: reloading configuration and scripts");
    if (app->config.config_path[0] &&
        (config_load_file(&fresh, app->config.config_path, 1, &err) < 0 ||
         config_load_env(&fresh, &err) < 0)) {
        log_error("server", "configuration reload failed, keeping the old one: %s", err);
        free(err);
    } else {
        /* Listening address, database and directories need a restart; the
         * rest applies now. */
        memcpy(fresh.listen_host, app->config.listen_host, sizeof(fresh.listen_host));
        fresh.listen_port = app->config.listen_port;
        memcpy(fresh.db_path, app->config.db_path, sizeof(fresh.db_path));
        app->config = fresh;
        log_set_level(app->config.log_level);
    }
    app_subsystems_reload(app);
}

int app_serve(struct config *cfg)
{
    struct app app;
    struct http_limits limits;
    char *err = NULL;
    char upload_dir[1200];
    int rc = 1;

    memset(&app, 0, sizeof(app));
    app.config = *cfg;
    app.loop = uv_default_loop();
    db_now(app.started_at, sizeof(app.started_at));
    mkdir(app.config.var_dir, 0750);

    app.db = db_open(app.config.db_path, &err);
    if (!app.db)
        goto fail;
    if (migrate_apply(app.db, &err) < 0)
        goto fail;
    db_set_interactive(app.db);
    if (app_ensure_manager(app.db, app.config.admin_email, &err) < 0)
        goto fail;
    if (app_subsystems_start(&app, &err) < 0)
        goto fail;

    app.router = router_new();
    app_register_routes(&app);
    router_add(app.router, "GET", "/", handle_static, &app, 0);
    router_add(app.router, "GET", "/*path", handle_static, &app, 0);

    http_limits_default(&limits);
    limits.max_body = app.config.max_body;
    limits.max_upload = app.config.max_upload;
    limits.max_connections = app.config.max_connections;
    limits.header_timeout_ms = app.config.header_timeout_ms;
    limits.body_timeout_ms = app.config.body_timeout_ms;
    limits.idle_timeout_ms = app.config.idle_timeout_ms;
    snprintf(upload_dir, sizeof(upload_dir), "%s/uploads", app.config.var_dir);
    app.http = http_server_new(app.loop, app.config.listen_host, app.config.listen_port, &limits,
                               upload_dir, router_route, app.router, &err);
    if (!app.http)
        goto fail;
    http_server_set_trusted_proxy(app.http, app.config.trusted_proxy);

    uv_signal_init(app.loop, &app.sigterm);
    uv_signal_init(app.loop, &app.sigint);
    uv_signal_init(app.loop, &app.sighup);
    app.sigterm.data = app.sigint.data = app.sighup.data = &app;
    uv_signal_start(&app.sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&app.sigint, on_stop_signal, SIGINT);
    uv_signal_start(&app.sighup, on_sighup, SIGHUP);

    log_info("server", "Licol %s listening on http://%s:%d (database %s)", LICOL_VERSION,
             app.config.listen_host, http_server_port(app.http), app.config.db_path);
    printf("Licol est démarré : http://%s:%d/\n", app.config.listen_host,
           http_server_port(app.http));
    fflush(stdout);

    uv_run(app.loop, UV_RUN_DEFAULT);
    rc = 0;
    log_info("server", "stopped");
    goto done;

fail:
    fprintf(stderr, "Erreur : %s\n", err ? err : "échec du démarrage");
    log_error("server", "start-up failed");
    free(err);
done:
    app_subsystems_free(&app);
    router_free(app.router);
    db_close(app.db);
    uv_loop_close(app.loop);
    return rc;
}
