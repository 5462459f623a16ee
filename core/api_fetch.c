/*
 * Routes of the automatic update: its status and history
 * (GET /api/v1/fetch, permission import.read) and "Mettre à jour
 * maintenant" (POST /api/v1/fetch/run, permission import.run). The work is
 * in fetch.c.
 */
#include "api.h"
#include "app.h"
#include "auth.h"
#include "fetch.h"

#include <stdlib.h>

static int reject_if_absent(struct app *app, struct http_request *req)
{
    if (app->fetch)
        return 0;
    http_respond_error(req, 503, "fetch_unavailable",
                       "La mise à jour automatique n'est pas disponible sur ce serveur.");
    return 1;
}

static void handle_status(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    json_t *status;

    if (!auth_require(app, req, "import.read", 0) || reject_if_absent(app, req))
        return;
    status = fetch_status_json(app->fetch);
    if (!status) {
        api_respond_db_error(req, app, "read the fetch history");
        return;
    }
    http_respond_json(req, 200, status);
}

static void handle_run(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_require(app, req, "import.run", 0);
    enum fetch_refusal refusal;
    int64_t run_id, failed_run_id;
    char *err = NULL;
    json_t *run;

    if (!user || reject_if_absent(app, req))
        return;
    run_id = fetch_run_now(app->fetch, FETCH_TRIGGER_MANUAL, user->person_id, &refusal,
                           &failed_run_id, &err);
    if (run_id == 0) {
        switch (refusal) {
        case FETCH_REFUSED_BUSY:
            api_respond_errorf(req, 409, "fetch_busy", "%s", err);
            break;
        case FETCH_REFUSED_NOT_CONFIGURED:
            api_respond_errorf(req, 409, "fetch_not_configured", "%s", err);
            break;
        case FETCH_REFUSED_SOURCE: {
            json_t *body = json_pack("{s:{s:s,s:s,s:o}}", "error", "code", "fetch_source_invalid",
                                     "message", err ? err : "federation.lua est invalide.",
                                     "fetch", fetch_run_json(app->fetch, failed_run_id));
            http_respond_json(req, 422, body);
            break;
        }
        default:
            api_respond_errorf(req, 500, "internal", "%s", err ? err : "Erreur interne.");
            break;
        }
        free(err);
        return;
    }
    run = fetch_run_json(app->fetch, run_id);
    http_respond_json(req, 202, json_pack("{s:o}", "fetch", run ? run : json_null()));
}

void api_fetch_register_routes(struct app *app)
{
    router_add(app->router, "GET", "/api/v1/fetch", handle_status, app, 0);
    router_add(app->router, "POST", "/api/v1/fetch/run", handle_run, app, 0);
}
