/*
 * The list of subsystems and route groups of the server. A new capability
 * adds its start, reload, stop and free calls here, and its routes in
 * app_register_routes, so that server.c stays about the process life cycle.
 */
#include "app.h"
#include "api.h"
#include "auth.h"
#include "consent.h"
#include "fetch.h"
#include "log.h"
#include "migrate.h"
#include "recovery.h"
#include "registration.h"
#include "script.h"

#include <malloc.h>
#include <stdlib.h>

/* Heap memory glibc keeps instead of returning it to the kernel. Each
 * response allocates and frees buffers of tens of kilobytes. With the
 * default threshold (128 KiB, adjusted dynamically), the top of the heap
 * was trimmed and faulted back in over and over: about a third of the
 * rider list's time in bench/riders/run.sh, measured with perf. */
#define APP_MALLOC_TRIM_THRESHOLD (64 * 1024 * 1024)

/* Loads the scripts and plugins, applies the plugins' migrations and
 * watches both directories so that an edit applies without a restart. */
static int scripts_start(struct app *app, char **err)
{
    struct script_config config = {0};
    struct script_version *version;
    const struct script_migration *migrations;
    size_t count = 0;
    int rc = 0;

    config.scripts_dir = app->config.scripts_dir;
    config.plugins_dir = app->config.plugins_dir[0] ? app->config.plugins_dir : NULL;
    app->scripts = script_engine_new(&config, err);
    if (app->scripts == NULL)
        return -1;

    version = script_engine_acquire(app->scripts);
    migrations = script_version_migrations(version, &count);
    for (size_t i = 0; i < count && rc == 0; i++) {
        if (migrate_apply_scoped(app->db, migrations[i].scope, migrations[i].number,
                                 migrations[i].name, migrations[i].sql, err) < 0)
            rc = -1;
    }
    script_version_release(version);
    if (rc == 0 && script_engine_watch(app->scripts, app->loop) != 0)
        log_warn("app", "cannot watch the script directories; edits apply on SIGHUP only");
    return rc;
}

int app_subsystems_start(struct app *app, char **err)
{
    *err = NULL;
    mallopt(M_TRIM_THRESHOLD, APP_MALLOC_TRIM_THRESHOLD);
    if (scripts_start(app, err) < 0)
        return -1;
    if (mail_service_start(app, err) < 0)
        return -1;
    if (consent_service_start(app, err) < 0)
        return -1;
    app->fetch = fetch_start(app, err);
    if (app->fetch == NULL)
        return -1;
    return 0;
}

void app_subsystems_reload(struct app *app)
{
    if (app->scripts != NULL)
        script_engine_reload(app->scripts);
    mail_service_reload(app);
    fetch_reload(app->fetch);
}

void app_subsystems_stop(struct app *app)
{
    if (app->scripts != NULL)
        script_engine_stop(app->scripts);
    mail_service_stop(app);
    consent_service_stop(app);
    fetch_stop(app->fetch);
}

void app_subsystems_free(struct app *app)
{
    fetch_free(app->fetch);
    app->fetch = NULL;
    script_engine_free(app->scripts);
    app->scripts = NULL;
}

void app_register_routes(struct app *app)
{
    app_register_core_routes(app);
    auth_register_routes(app);
    api_riders_register_routes(app);
    api_family_register_routes(app);
    api_misc_register_routes(app);
    api_import_register_routes(app);
    api_mail_register_routes(app);
    api_registration_register_routes(app);
    api_recovery_register_routes(app);
    api_consent_register_routes(app);
    api_fetch_register_routes(app);
}
