/*
 * Password routes: staff send recovery mails (after an import, to a
 * selection, to one person); anyone requests a link ("mot de passe
 * oublié"); the link's page checks its token and sets the password.
 */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "auth.h"
#include "log.h"
#include "normalize.h"
#include "password.h"
#include "recovery.h"
#include "token.h"
#include "util.h"

#define FORGOT_WINDOW_SECONDS 3600
#define FORGOT_MAX_PER_EMAIL 3
#define FORGOT_MAX_PER_IP 10
#define FORGOT_MESSAGE                                                                             \
    "Si cette adresse est connue du club, un mail vient de lui être envoyé avec un lien pour "    \
    "choisir un nouveau mot de passe. Pensez à regarder dans les indésirables."

/* ---- staff: POST /api/v1/recovery-mails ------------------------------------ */

long api_read_person_selection(struct app *app, struct http_request *req, json_t *body,
                               int64_t **ids, int64_t *run_id)
{
    json_t *list = json_object_get(body, "person_ids");
    json_t *one = json_object_get(body, "person_id");
    json_t *value;
    char *err = NULL;
    long count = 0;
    size_t i;

    *ids = NULL;
    *run_id = 0;
    if (json_is_integer(json_object_get(body, "import_run_id"))) {
        *run_id = json_integer_value(json_object_get(body, "import_run_id"));
        count = recovery_import_people(app->db, *run_id, ids, &err);
        if (count < 0) {
            http_respond_error(req, 404, "not_found", err ? err : "Import introuvable.");
            free(err);
            return -1;
        }
        return count;
    }
    if (json_is_array(list) && json_array_size(list) > 0) {
        if (json_array_size(list) > RECOVERY_MAX_PEOPLE) {
            api_respond_validation(req, json_pack("{s:s}", "person_ids",
                                                  "Trop de personnes à la fois."));
            return -1;
        }
        *ids = calloc(json_array_size(list), sizeof(**ids));
        if (*ids == NULL) {
            http_respond_error(req, 500, "internal", "Mémoire insuffisante.");
            return -1;
        }
        json_array_foreach(list, i, value) {
            if (!json_is_integer(value) || json_integer_value(value) <= 0) {
                api_respond_validation(req, json_pack("{s:s}", "person_ids",
                                                      "Chaque personne doit être un numéro."));
                free(*ids);
                *ids = NULL;
                return -1;
            }
            (*ids)[count++] = json_integer_value(value);
        }
        return count;
    }
    if (json_is_integer(one) && json_integer_value(one) > 0) {
        *ids = malloc(sizeof(**ids));
        if (*ids == NULL) {
            http_respond_error(req, 500, "internal", "Mémoire insuffisante.");
            return -1;
        }
        (*ids)[0] = json_integer_value(one);
        return 1;
    }
    return 0;
}

static void handle_recovery_mails(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_require(app, req, "mail.send", 0);
    json_t *body = NULL, *result = NULL;
    struct recovery_request request = {0};
    int64_t *ids = NULL, run_id = 0;
    long count = 0;
    char *err = NULL;

    if (user == NULL)
        return;
    body = api_read_object(req);
    if (body == NULL)
        return;
    count = api_read_person_selection(app, req, body, &ids, &run_id);
    if (count < 0)
        goto done;
    if (count == 0 && run_id == 0) {
        api_respond_validation(req, json_pack("{s:s}", "person_ids",
                                              "Indiquez un import (import_run_id), une liste de "
                                              "personnes (person_ids) ou une personne "
                                              "(person_id)."));
        goto done;
    }
    request.skip_already_sent = run_id != 0;

    request.person_ids = ids;
    request.count = (size_t)count;
    request.import_run_id = run_id;
    request.token_kind = "invitation";
    if (recovery_send(app, &request, &result, &err) != 0) {
        if (api_db_busy(app))
            api_respond_db_error(req, app, "recovery mails");
        else
            http_respond_error(req, 500, "mail", err ? err : "Erreur inconnue.");
        goto done;
    }
    api_audit(app, user, count == 1 ? ids[0] : 0, "mail.recovery", NULL, NULL,
              json_string_value(json_object_get(body, "note")));
    http_respond_json(req, 200, result);

done:
    free(ids);
    free(err);
    json_decref(body);
}

/* ---- public: POST /api/v1/password/forgot ---------------------------------- */

static void handle_forgot(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    json_t *body = api_read_object(req), *result = NULL;
    const char *email_in;
    char email[256], second[256];
    long now = (long)time(NULL), since = now - FORGOT_WINDOW_SECONDS;
    sqlite3_stmt *stmt;
    int64_t holder;
    char *err = NULL;

    if (body == NULL)
        return;
    email_in = json_string_value(json_object_get(body, "email"));
    if (email_in == NULL || email_in[0] == '\0' || strlen(email_in) > 254) {
        api_respond_validation(req, json_pack("{s:s}", "email",
                                              "Saisissez votre adresse e-mail."));
        goto done;
    }
    if (norm_email(email_in, email, sizeof(email), second, sizeof(second)) != NORM_OK) {
        api_respond_validation(req, json_pack("{s:s}", "email",
                                              "Cette adresse e-mail n'est pas valide."));
        goto done;
    }
    if (db_count(app->db, "SELECT count(*) FROM mail_request WHERE email = ?1 AND at > ?2",
                       email, since) >= FORGOT_MAX_PER_EMAIL ||
        db_count(app->db, "SELECT count(*) FROM mail_request WHERE ip = ?1 AND at > ?2",
                       req->remote_addr, since) >= FORGOT_MAX_PER_IP) {
        log_warn("recovery", "%s: forgot-password rate limit reached from %s", req->id,
                 req->remote_addr);
        http_set_header(req, "Retry-After", "3600");
        http_respond_error(req, 429, "rate_limited",
                           "Trop de demandes pour cette adresse. Réessayez dans une heure.");
        goto done;
    }
    stmt = db_stmt(app->db, "DELETE FROM mail_request WHERE at <= ?1");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, now - 24 * 3600);
        sqlite3_step(stmt);
        sqlite3_reset(stmt);
    }
    /* Every request is recorded, known address or not, so a failure here
     * (an import writing) reveals nothing about the address. */
    stmt = db_stmt(app->db, "INSERT INTO mail_request (at, ip, email) VALUES (?1, ?2, ?3)");
    if (stmt == NULL) {
        api_respond_db_error(req, app, "mail request");
        goto done;
    }
    sqlite3_bind_int64(stmt, 1, now);
    sqlite3_bind_text(stmt, 2, req->remote_addr, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, email, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        sqlite3_reset(stmt);
        api_respond_db_error(req, app, "mail request");
        goto done;
    }
    sqlite3_reset(stmt);

    /* NOTE: a known address also renders and queues a mail before the
     * response, so it takes a few milliseconds longer than an unknown one;
     * the body and status are the same. */
    holder = auth_family_account_holder(app->db, email);
    if (holder > 0) {
        struct recovery_request request = {0};

        request.person_ids = &holder;
        request.count = 1;
        request.token_kind = "reset";
        if (recovery_send(app, &request, &result, &err) != 0)
            log_error("recovery", "%s: queueing a reset mail failed: %s", req->id,
                      err ? err : "?");
        else
            log_info("recovery", "%s: reset mail queued for person %lld", req->id,
                     (long long)holder);
    } else {
        log_info("recovery", "%s: forgot-password request for an unknown address", req->id);
    }
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 202, json_pack("{s:s}", "message", FORGOT_MESSAGE));

done:
    json_decref(result);
    free(err);
    json_decref(body);
}

/* ---- public: the page behind the link --------------------------------------- */

static const char INVALID_LINK[] = "Ce lien n'est plus valable : il a déjà servi, il a expiré ou "
                                   "il est incomplet. Demandez un nouveau lien depuis la page "
                                   "« Mot de passe oublié ».";

/* Finds the person of a reset or invitation token without using it.
 * Returns 0, TOKEN_INVALID or TOKEN_ERROR. */
static int peek_any(struct db *db, const char *token, int64_t *person_id, const char **kind)
{
    int rc = token_peek(db, token, "reset", person_id);

    *kind = "reset";
    if (rc == TOKEN_INVALID) {
        rc = token_peek(db, token, "invitation", person_id);
        *kind = "invitation";
    }
    return rc;
}

static void handle_reset_check(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const char *token = http_param(req, "token"), *kind;
    int64_t person_id = 0;
    sqlite3_stmt *stmt;
    json_t *out;
    char *family = NULL;
    int rc = peek_any(app->db, token, &person_id, &kind);

    http_set_header(req, "Cache-Control", "no-store");
    http_set_header(req, "Referrer-Policy", "no-referrer");
    if (rc == TOKEN_ERROR) {
        api_respond_db_error(req, app, "token peek");
        return;
    }
    if (rc != 0) {
        http_respond_error(req, 404, "invalid_link", INVALID_LINK);
        return;
    }
    stmt = db_stmt(app->db, "SELECT first_name, email FROM person WHERE id = ?1");
    if (stmt == NULL) {
        api_respond_db_error(req, app, "person");
        return;
    }
    sqlite3_bind_int64(stmt, 1, person_id);
    out = json_pack("{s:b,s:s}", "valid", 1, "kind", kind);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        json_object_set_new(out, "first_name", api_column_json(stmt, 0));
        json_object_set_new(out, "email", api_column_json(stmt, 1));
        if (sqlite3_column_type(stmt, 1) != SQLITE_NULL)
            family = recovery_family_names(app->db, (const char *)sqlite3_column_text(stmt, 1),
                                           person_id);
    }
    sqlite3_reset(stmt);
    json_object_set_new(out, "family", json_string(family ? family : ""));
    free(family);
    http_respond_json(req, 200, out);
}

struct reset_work {
    uv_work_t work;
    struct app *app;
    struct http_request *req;
    char token[TOKEN_TEXT_SIZE];
    char *password;
    char hash[PASSWORD_HASH_SIZE];
    int ok;
};

static void reset_work_free(struct reset_work *w)
{
    password_free(w->password);
    sodium_memzero(w, sizeof(*w));
    free(w);
}

static void reset_hash(uv_work_t *work)
{
    struct reset_work *w = work->data;

    w->ok = password_hash(w->password, w->hash) == 0;
}

static void reset_done(uv_work_t *work, int status)
{
    struct reset_work *w = work->data;
    struct app *app = w->app;
    struct http_request *req = w->req;
    int64_t person_id = 0;
    sqlite3_stmt *stmt;
    char *err = NULL;
    json_t *out = NULL;
    int rc;

    if (status != 0 || !w->ok) {
        http_respond_error(req, 500, "internal", "Impossible de chiffrer le mot de passe.");
        goto done;
    }
    if (db_begin(app->db) != SQLITE_OK) {
        api_respond_db_error(req, app, "begin");
        goto done;
    }
    rc = token_consume(app->db, w->token, "reset", &person_id);
    if (rc == TOKEN_INVALID)
        rc = token_consume(app->db, w->token, "invitation", &person_id);
    if (rc != 0) {
        db_rollback(app->db);
        if (rc == TOKEN_ERROR)
            api_respond_db_error(req, app, "token consume");
        else
            http_respond_error(req, 404, "invalid_link", INVALID_LINK);
        goto done;
    }
    if (auth_set_password(app->db, person_id, w->hash, &err) != 0) {
        db_rollback(app->db);
        http_respond_error(req, 409, "conflict", err ? err : "Erreur de la base de données.");
        goto done;
    }
    /* Sessions opened with the old password end. */
    stmt = db_stmt(app->db, "DELETE FROM session WHERE person_id = ?1");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, person_id);
        sqlite3_step(stmt);
        sqlite3_reset(stmt);
    }
    stmt = db_stmt(app->db, "SELECT email FROM person WHERE id = ?1");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, person_id);
        if (sqlite3_step(stmt) == SQLITE_ROW)
            out = json_pack("{s:o,s:s}", "email", api_column_json(stmt, 0), "message",
                            "Votre mot de passe est enregistré. Vous pouvez vous connecter.");
        sqlite3_reset(stmt);
    }
    if (db_commit(app->db) != SQLITE_OK) {
        db_rollback(app->db);
        json_decref(out);
        api_respond_db_error(req, app, "commit");
        goto done;
    }
    api_data_changed();
    log_info("recovery", "%s: person %lld chose a password from a mail link", req->id,
             (long long)person_id);
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200, out ? out : json_object());

done:
    free(err);
    reset_work_free(w);
}

static void handle_reset(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    json_t *body = api_read_object(req);
    const char *token, *password, *weak;
    struct reset_work *w = NULL;
    int64_t person_id;
    const char *kind;

    if (body == NULL)
        return;
    token = json_string_value(json_object_get(body, "token"));
    password = json_string_value(json_object_get(body, "password"));
    if (token == NULL || strlen(token) != TOKEN_TEXT_SIZE - 1 ||
        peek_any(app->db, token, &person_id, &kind) != 0) {
        http_respond_error(req, 404, "invalid_link", INVALID_LINK);
        goto done;
    }
    if (password == NULL || password[0] == '\0') {
        api_respond_validation(req, json_pack("{s:s}", "password",
                                              "Choisissez un mot de passe."));
        goto done;
    }
    if (strlen(password) > PASSWORD_MAX_LENGTH) {
        api_respond_validation(req, json_pack("{s:s}", "password",
                                              "Ce mot de passe est trop long."));
        goto done;
    }
    if ((weak = password_check_strength(password)) != NULL) {
        api_respond_validation(req, json_pack("{s:s}", "password", weak));
        goto done;
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL || (w->password = strdup(password)) == NULL) {
        http_respond_error(req, 500, "internal", "Mémoire insuffisante.");
        if (w != NULL)
            reset_work_free(w);
        goto done;
    }
    w->app = app;
    w->req = req;
    snprintf(w->token, sizeof(w->token), "%s", token);
    w->work.data = w;
    if (uv_queue_work(app->loop, &w->work, reset_hash, reset_done) != 0) {
        http_respond_error(req, 500, "internal", "Impossible de chiffrer le mot de passe.");
        reset_work_free(w);
    }

done:
    json_decref(body);
}

void api_recovery_register_routes(struct app *app)
{
    router_add(app->router, "POST", "/api/v1/recovery-mails", handle_recovery_mails, app, 0);
    router_add(app->router, "POST", "/api/v1/password/forgot", handle_forgot, app, 0);
    router_add(app->router, "GET", "/api/v1/password/reset/:token", handle_reset_check, app, 0);
    router_add(app->router, "POST", "/api/v1/password/reset", handle_reset, app, 0);
}
