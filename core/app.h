/*
 * The running server: configuration, event loop, database connection of the
 * loop thread, router and the subsystems attached to them. One struct app
 * exists per process; handlers reach it through their route context.
 */
#ifndef LICOL_APP_H
#define LICOL_APP_H

#include <uv.h>

#include "config.h"
#include "db.h"
#include "http.h"
#include "router.h"

struct script_engine;
struct outbox;
struct import_manager;
struct fetch;

struct app {
    struct config config;
    uv_loop_t *loop;
    struct db *db;
    struct router *router;
    struct http_server *http;
    struct script_engine *scripts;
    struct outbox *outbox;
    struct import_manager *imports;
    struct fetch *fetch; /* automatic update from the federation file (core/fetch.h) */
    uv_signal_t sigterm, sigint, sighup;
    int stopping;
    char started_at[32];
};

/* Opens the database, applies migrations, creates the first manager account
 * when there is none, registers the routes, starts listening, and runs the
 * loop until SIGTERM or SIGINT. Returns the process exit code. */
int app_serve(struct config *cfg);

/* Registers the routes of every subsystem. Each subsystem adds its routes
 * in its own file through a function named <module>_register_routes. */
void app_register_routes(struct app *app);

/* Subsystems attached to the app (scripts, mail outbox, imports, automatic
 * fetch), started after the database and before listening, reloaded on
 * SIGHUP, stopped when the HTTP server has closed its connections, freed
 * last. Defined in core/app_modules.c, the one place that lists them. */
int app_subsystems_start(struct app *app, char **err);
void app_subsystems_reload(struct app *app);
void app_subsystems_stop(struct app *app);
void app_subsystems_free(struct app *app);

/* Routes of the server itself (health check). */
void app_register_core_routes(struct app *app);

/* Creates a manager (gérant) account with a one-time password when the
 * database has no manager yet, and prints the credentials on stdout.
 * Returns 0, or -1 with *err. */
int app_ensure_manager(struct db *db, const char *email, char **err);

#endif
