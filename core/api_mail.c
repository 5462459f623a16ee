/*
 * The server's mail service and the staff outbox routes. The sender runs
 * on its own thread (outbox_worker_start): libcurl 7.88 blocks while it
 * waits for the reply to the end of each message, which must not stall
 * the HTTP loop. Mails are queued on the loop thread's connection and the
 * worker is woken; it also polls for mails queued by other processes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth.h"
#include "log.h"
#include "recovery.h"

#define OUTBOX_DEFAULT_LIMIT 100

static struct outbox_worker *mail_worker;
static char mail_template_dir[1200];

void mail_service_config(struct app *app, struct outbox_config *cfg)
{
    outbox_config_default(cfg);
    snprintf(mail_template_dir, sizeof(mail_template_dir), "%s/mail", app->config.scripts_dir);
    cfg->template_dir = mail_template_dir;
    cfg->smtp_url = app->config.smtp_url;
    cfg->username = app->config.smtp_user[0] ? app->config.smtp_user : NULL;
    cfg->password = app->config.smtp_password[0] ? app->config.smtp_password : NULL;
    cfg->from_address = app->config.mail_from;
    cfg->from_name = app->config.mail_from_name[0] ? app->config.mail_from_name : NULL;
    cfg->rate_per_second = app->config.mail_rate_per_second;
    cfg->max_attempts = app->config.mail_max_attempts;
}

int mail_service_start(struct app *app, char **err)
{
    struct outbox_config cfg;
    char *why = NULL;

    *err = NULL;
    if (app->config.smtp_url[0] == '\0') {
        log_warn("mail", "no smtp_url: mails are queued but not sent");
        return 0;
    }
    mail_service_config(app, &cfg);
    mail_worker = outbox_worker_start(app->config.db_path, &cfg, &why);
    if (mail_worker == NULL) {
        log_error("mail", "the mail sender did not start, mails stay queued: %s",
                  why ? why : "unknown error");
        free(why);
        return 0;
    }
    log_info("mail", "mail sender started for %s", app->config.smtp_url);
    return 0;
}

void mail_service_stop(struct app *app)
{
    struct outbox_stats stats;

    (void)app;
    if (mail_worker == NULL)
        return;
    outbox_worker_stop(mail_worker, &stats);
    mail_worker = NULL;
    log_info("mail", "mail sender stopped (%ld sent, %ld retried, %ld failed)", stats.sent,
             stats.retried, stats.failed);
}

void mail_service_reload(struct app *app)
{
    char *err = NULL;

    mail_service_stop(app);
    mail_service_start(app, &err);
    free(err);
}

void mail_service_wake(void)
{
    if (mail_worker != NULL)
        outbox_worker_wake(mail_worker);
}

/* ---- routes ---------------------------------------------------------------- */

static int parse_int(const char *text, int fallback, int min, int max)
{
    char *end;
    long value;

    if (text == NULL || text[0] == '\0')
        return fallback;
    value = strtol(text, &end, 10);
    if (*end != '\0' || value < min)
        return fallback;
    return value > max ? max : (int)value;
}

/* GET /api/v1/outbox?state=queued|sending|sent|failed&limit=&offset= */
static void handle_outbox_list(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    struct outbox_counts counts;
    char state[16] = "", limit_text[16] = "", offset_text[16] = "";
    int limit, offset;
    char *err = NULL;
    json_t *items;

    if (auth_require(app, req, "outbox.read", 0) == NULL)
        return;
    http_query_param(req, "state", state, sizeof(state));
    http_query_param(req, "limit", limit_text, sizeof(limit_text));
    http_query_param(req, "offset", offset_text, sizeof(offset_text));
    if (state[0] != '\0' && strcmp(state, "queued") != 0 && strcmp(state, "sending") != 0 &&
        strcmp(state, "sent") != 0 && strcmp(state, "failed") != 0) {
        api_respond_validation(req, json_pack("{s:s}", "state",
                                              "État inconnu : choisissez queued, sending, sent "
                                              "ou failed."));
        return;
    }
    limit = parse_int(limit_text, OUTBOX_DEFAULT_LIMIT, 1, 500);
    offset = parse_int(offset_text, 0, 0, 1 << 30);
    if (outbox_counts(app->db, &counts) != 0) {
        api_respond_db_error(req, app, "outbox counts");
        return;
    }
    items = outbox_list(app->db, state[0] ? state : NULL, limit, offset, &err);
    if (items == NULL) {
        http_respond_error(req, 500, "internal", err ? err : "Erreur de la base de données.");
        free(err);
        return;
    }
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200,
                      json_pack("{s:{s:I,s:I,s:I,s:I},s:o,s:i,s:i,s:b}", "counts", "queued",
                                (json_int_t)counts.queued, "sending", (json_int_t)counts.sending,
                                "sent", (json_int_t)counts.sent, "failed",
                                (json_int_t)counts.failed, "items", items, "limit", limit,
                                "offset", offset, "sender_running", mail_worker != NULL));
}

/* POST /api/v1/outbox/:id/retry */
static void handle_outbox_retry(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_require(app, req, "mail.send", 0);
    char id_text[24];
    int64_t id;

    if (user == NULL)
        return;
    id = api_param_id(req, "id");
    if (id == 0)
        return;
    if (outbox_retry(app->db, id) != 0) {
        sqlite3_stmt *stmt = db_stmt(app->db, "SELECT 1 FROM outbox WHERE id = ?1");
        int exists = 0;
        if (stmt != NULL) {
            sqlite3_bind_int64(stmt, 1, id);
            exists = sqlite3_step(stmt) == SQLITE_ROW;
            sqlite3_reset(stmt);
        }
        if (!exists)
            http_respond_error(req, 404, "not_found", "Ce mail n'existe pas.");
        else
            http_respond_error(req, 409, "not_failed",
                               "Ce mail n'est pas en échec : seul un mail en échec peut être "
                               "renvoyé.");
        return;
    }
    snprintf(id_text, sizeof(id_text), "%lld", (long long)id);
    api_audit(app, user, 0, "outbox.retry", "outbox", NULL, id_text);
    api_data_changed();
    mail_service_wake();
    log_info("mail", "%s: outbox mail %lld put back in the queue", req->id, (long long)id);
    http_respond_json(req, 200, json_pack("{s:I,s:s}", "id", (json_int_t)id, "state", "queued"));
}

void api_mail_register_routes(struct app *app)
{
    router_add(app->router, "GET", "/api/v1/outbox", handle_outbox_list, app, 0);
    router_add(app->router, "POST", "/api/v1/outbox/:id/retry", handle_outbox_retry, app, 0);
}
