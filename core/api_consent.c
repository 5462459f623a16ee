/*
 * The consent workflow in the server: mails with a personal link, the
 * public page behind it, the rider's own page, the staff routes ("Gestion
 * du consentement") and the reminders. scripts/consent.lua decides whether
 * to ask right after an import and when to remind; consent.c stores.
 */
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "auth.h"
#include "consent.h"
#include "log.h"
#include "mail.h"
#include "normalize.h"
#include "recovery.h"
#include "script.h"
#include "token.h"
#include "util.h"

#define CONSENT_PAGE "/conditions.html"
#define REMINDER_TIMER_MS (10 * 60 * 1000)
#define REMINDER_FIRST_MS (30 * 1000)
#define REMINDERS_MAX 10 /* entries of consent.lua's schedule used */
#define LIST_MAX 500

/* Clients the staff list selects: ?1 a status or NULL, ?2 a LIKE pattern
 * or NULL, ?5 the same pattern folded (for search_text). The page and its
 * total use the same filter. */
#define LIST_WHERE                                                                   \
    " WHERE s.status IS NOT NULL"                                                    \
    " AND EXISTS (SELECT 1 FROM person_role r WHERE r.person_id = p.id"              \
    "  AND r.role = 'client')"                                                       \
    " AND (?1 IS NULL OR s.status = ?1)"                                             \
    " AND (?2 IS NULL OR p.search_text LIKE ?5 ESCAPE '\\'"                          \
    "  OR p.last_name LIKE ?2 ESCAPE '\\' OR p.email LIKE ?2 ESCAPE '\\')"
#define QUERY_MAX 200

static uv_timer_t reminder_timer;
static int timer_running;
static int listener_added;

/* ---- consent.lua ------------------------------------------------------------ */

/* Asks consent.lua's apres_import whether to send the mails now. Returns 1
 * for "automatique", 0 otherwise (also without the module). */
static int script_after_import(struct app *app, int64_t run_id)
{
    struct api_scripts scripts;
    struct lua_State *L;
    int automatic = 0;

    api_scripts_acquire(app, &scripts);
    if (scripts.state == NULL || script_module_count(scripts.state, SCRIPT_MOD_CONSENT) == 0 ||
        script_push_function(scripts.state, SCRIPT_MOD_CONSENT, 0,
                             SCRIPT_CONSENT_AFTER_IMPORT) != 0)
        goto done;
    L = script_state_lua(scripts.state);
    lua_newtable(L);
    lua_pushinteger(L, run_id);
    lua_setfield(L, -2, "id");
    if (script_call(scripts.state, 1, 1, "consent.lua apres_import") == 0) {
        automatic = lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "automatique") == 0;
        lua_pop(L, 1);
    }
done:
    api_scripts_release(&scripts);
    return automatic;
}

/* Reads consent.lua's relances(): days after the first mail, increasing.
 * Returns how many were written to days (0 without the module). */
static int script_reminders(struct app *app, int days[REMINDERS_MAX])
{
    struct api_scripts scripts;
    struct lua_State *L;
    int count = 0;

    api_scripts_acquire(app, &scripts);
    if (scripts.state == NULL || script_module_count(scripts.state, SCRIPT_MOD_CONSENT) == 0 ||
        script_push_function(scripts.state, SCRIPT_MOD_CONSENT, 0, SCRIPT_CONSENT_REMINDERS) != 0)
        goto done;
    L = script_state_lua(scripts.state);
    if (script_call(scripts.state, 0, 1, "consent.lua relances") == 0) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            for (int i = 1; i <= REMINDERS_MAX; i++) {
                lua_rawgeti(L, -1, i);
                if (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0 &&
                    lua_tointeger(L, -1) < 3650 && (count == 0 || lua_tointeger(L, -1) > days[count - 1]))
                    days[count++] = (int)lua_tointeger(L, -1);
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
    }
done:
    api_scripts_release(&scripts);
    return count;
}

/* ---- mails ------------------------------------------------------------------- */

static int pending_at_address(struct db *db, const char *email)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT count(*) FROM person p JOIN consent_person_status s"
                                     " ON s.person_id = p.id WHERE p.email = ?1"
                                     " AND s.status IN ('en_attente', 'a_renouveler')");
    int count = 0;

    if (stmt == NULL)
        return 0;
    sqlite3_bind_text(stmt, 1, email, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        count = sqlite3_column_int(stmt, 0);
    sqlite3_reset(stmt);
    return count;
}

/* Queues the consent mail of one address to its account holder and opens
 * (or refreshes) the holder's request. reminder: 1 when it is a reminder.
 * Returns 0, or -1 with *err. */
static int queue_consent_mail(struct app *app, const struct outbox_config *cfg, const char *email,
                              int64_t run_id, int reminder, char **err)
{
    int64_t holder = auth_family_account_holder(app->db, email);
    char token[TOKEN_TEXT_SIZE], expiry[64], first[256] = "", last[256] = "", now[32];
    char *link = NULL, *family = NULL, *family_text = NULL, *name = NULL;
    struct mail_var vars[6];
    struct outbox_mail mail = {0};
    sqlite3_stmt *stmt;
    int rc = -1;

    if (holder <= 0) {
        *err = strdup("Erreur de la base de données.");
        return -1;
    }
    stmt = db_stmt(app->db, "SELECT first_name, last_name FROM person WHERE id = ?1");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, holder);
        if (sqlite3_step(stmt) == SQLITE_ROW) {
            snprintf(first, sizeof(first), "%s", (const char *)sqlite3_column_text(stmt, 0));
            snprintf(last, sizeof(last), "%s", (const char *)sqlite3_column_text(stmt, 1));
        }
        sqlite3_reset(stmt);
    }
    if (token_create(app->db, holder, "consent", TOKEN_TTL_CONSENT, token) != 0) {
        *err = strdup("Impossible de créer le lien personnel.");
        return -1;
    }
    recovery_expiry_text(TOKEN_TTL_CONSENT, expiry, sizeof(expiry));
    link = str_printf("%s%s#jeton=%s", app->config.public_url, CONSENT_PAGE, token);
    family = recovery_family_names(app->db, email, holder);
    name = str_printf("%s%s%s", first, first[0] ? " " : "", last);
    if (link == NULL || family == NULL || name == NULL)
        goto oom;
    family_text = family[0] ? str_printf("Ce lien vous permet aussi de répondre pour : %s.", family)
                            : strdup("");
    if (family_text == NULL)
        goto oom;
    vars[0] = (struct mail_var){"prenom", first};
    vars[1] = (struct mail_var){"nom", last};
    vars[2] = (struct mail_var){"club", app->config.club_name};
    vars[3] = (struct mail_var){"lien", link};
    vars[4] = (struct mail_var){"expiration", expiry};
    vars[5] = (struct mail_var){"famille", family_text};
    mail.kind = "consentement";
    mail.to_name = name;
    mail.to_address = email;
    mail.person_id = holder;
    mail.import_run_id = run_id;
    if (outbox_queue_template(app->db, cfg, &mail, "consentement", vars, 6, NULL, err) != 0)
        goto done;

    db_now(now, sizeof(now));
    if (reminder)
        stmt = db_stmt(app->db, "UPDATE consent_request SET last_sent_at = ?2,"
                                " reminders = reminders + 1 WHERE person_id = ?1"
                                " AND closed_at IS NULL");
    else
        stmt = db_stmt(app->db,
                       "INSERT INTO consent_request (person_id, email, import_run_id,"
                       " first_sent_at, last_sent_at) VALUES (?1, ?3, ?4, ?2, ?2)"
                       " ON CONFLICT (person_id) WHERE closed_at IS NULL"
                       " DO UPDATE SET last_sent_at = excluded.last_sent_at, email = excluded.email");
    if (stmt == NULL) {
        *err = strdup("Erreur de la base de données.");
        goto done;
    }
    sqlite3_bind_int64(stmt, 1, holder);
    sqlite3_bind_text(stmt, 2, now, -1, SQLITE_TRANSIENT);
    if (!reminder) {
        sqlite3_bind_text(stmt, 3, email, -1, SQLITE_TRANSIENT);
        if (run_id > 0)
            sqlite3_bind_int64(stmt, 4, run_id);
    }
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        *err = str_printf("Erreur de la base de données : %s", sqlite3_errmsg(db_handle(app->db)));
        sqlite3_reset(stmt);
        goto done;
    }
    sqlite3_reset(stmt);
    rc = 0;
    goto done;

oom:
    *err = strdup("Mémoire insuffisante.");
done:
    free(link);
    free(family);
    free(family_text);
    free(name);
    return rc;
}

/* Sends the consent mail to the people among ids who have not accepted the
 * current terms: one per address. Returns 0 with *result {queued,
 * addresses, up_to_date, without_email: [{id, name, reason}]}. */
static int consent_send(struct app *app, const int64_t *ids, size_t count, int64_t run_id,
                        json_t **result, char **err)
{
    struct outbox_config cfg;
    json_t *without = json_array(), *seen = json_object();
    long queued = 0, up_to_date = 0;
    int rc = -1;

    *result = NULL;
    *err = NULL;
    mail_service_config(app, &cfg);
    if (db_begin(app->db) != SQLITE_OK) {
        *err = strdup("Erreur de la base de données.");
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        sqlite3_stmt *stmt = db_stmt(app->db,
                                     "SELECT trim(p.first_name || ' ' || p.last_name), p.email,"
                                     " p.email_invalid, s.status FROM person p"
                                     " JOIN consent_person_status s ON s.person_id = p.id"
                                     " WHERE p.id = ?1");
        char name[512] = "", email[MAIL_ADDRESS_MAX + 1] = "", invalid[300] = "", status[32] = "";
        int found = 0;

        if (stmt == NULL) {
            *err = strdup("Erreur de la base de données.");
            goto rollback;
        }
        sqlite3_bind_int64(stmt, 1, ids[i]);
        if (sqlite3_step(stmt) == SQLITE_ROW) {
            found = 1;
            snprintf(name, sizeof(name), "%s", (const char *)sqlite3_column_text(stmt, 0));
            if (sqlite3_column_type(stmt, 1) != SQLITE_NULL)
                snprintf(email, sizeof(email), "%s", (const char *)sqlite3_column_text(stmt, 1));
            if (sqlite3_column_type(stmt, 2) != SQLITE_NULL)
                snprintf(invalid, sizeof(invalid), "%s", (const char *)sqlite3_column_text(stmt, 2));
            if (sqlite3_column_type(stmt, 3) != SQLITE_NULL)
                snprintf(status, sizeof(status), "%s", (const char *)sqlite3_column_text(stmt, 3));
        }
        sqlite3_reset(stmt);
        if (!found)
            continue;
        if (status[0] == '\0') {
            *err = strdup("Le club n'a encore publié aucune condition à accepter.");
            goto rollback;
        }
        if (strcmp(status, "en_attente") != 0 && strcmp(status, "a_renouveler") != 0) {
            up_to_date++;
            continue;
        }
        if (email[0] == '\0' || mail_address_check(email) != 0) {
            char *reason = invalid[0] ? str_printf("Adresse e-mail invalide : %s", invalid)
                                      : strdup("Pas d'adresse e-mail.");

            json_array_append_new(without, json_pack("{s:I,s:s,s:s}", "id", (json_int_t)ids[i],
                                                     "name", name, "reason",
                                                     reason ? reason : ""));
            free(reason);
            continue;
        }
        if (json_object_get(seen, email) != NULL)
            continue;
        json_object_set_new(seen, email, json_true());
        if (queue_consent_mail(app, &cfg, email, run_id, 0, err) != 0)
            goto rollback;
        queued++;
    }
    if (db_commit(app->db) != SQLITE_OK) {
        *err = strdup("Erreur de la base de données.");
        goto rollback;
    }
    api_data_changed();
    if (queued > 0)
        mail_service_wake();
    *result = json_pack("{s:I,s:I,s:I,s:O}", "queued", (json_int_t)queued, "addresses",
                        (json_int_t)json_object_size(seen), "up_to_date", (json_int_t)up_to_date,
                        "without_email", without);
    log_info("consent", "queued %ld consent mail(s), %ld already up to date", queued, up_to_date);
    rc = 0;
    goto done;

rollback:
    db_rollback(app->db);
done:
    json_decref(without);
    json_decref(seen);
    return rc;
}

/* Sends the reminders that are due and closes the requests whose people
 * all decided. Returns the number of reminders queued, or -1. */
static long consent_reminders_run(struct app *app)
{
    struct outbox_config cfg;
    int days[REMINDERS_MAX];
    int count = script_reminders(app, days);
    sqlite3_stmt *stmt;
    struct {
        int64_t holder;
        char email[MAIL_ADDRESS_MAX + 1];
        int reminders;
        char first_sent_at[32];
    } *due = NULL;
    size_t ndue = 0, cap = 0;
    long sent = 0;
    char now[32], *err = NULL;
    time_t t = time(NULL);

    db_now(now, sizeof(now));
    stmt = db_stmt(app->db, "SELECT person_id, email, reminders, first_sent_at FROM consent_request"
                            " WHERE closed_at IS NULL ORDER BY id");
    if (stmt == NULL)
        return -1;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        if (ndue == cap) {
            void *grown = realloc(due, (cap = cap ? cap * 2 : 32) * sizeof(*due));
            if (grown == NULL)
                break;
            due = grown;
        }
        due[ndue].holder = sqlite3_column_int64(stmt, 0);
        snprintf(due[ndue].email, sizeof(due[ndue].email), "%s",
                 (const char *)sqlite3_column_text(stmt, 1));
        due[ndue].reminders = sqlite3_column_int(stmt, 2);
        snprintf(due[ndue].first_sent_at, sizeof(due[ndue].first_sent_at), "%s",
                 (const char *)sqlite3_column_text(stmt, 3));
        ndue++;
    }
    sqlite3_reset(stmt);

    mail_service_config(app, &cfg);
    if (db_begin(app->db) != SQLITE_OK) {
        free(due);
        return -1;
    }
    for (size_t i = 0; i < ndue; i++) {
        struct tm tm = {0};
        time_t first;

        if (pending_at_address(app->db, due[i].email) == 0) {
            stmt = db_stmt(app->db, "UPDATE consent_request SET closed_at = ?2"
                                    " WHERE person_id = ?1 AND closed_at IS NULL");
            if (stmt != NULL) {
                sqlite3_bind_int64(stmt, 1, due[i].holder);
                sqlite3_bind_text(stmt, 2, now, -1, SQLITE_TRANSIENT);
                sqlite3_step(stmt);
                sqlite3_reset(stmt);
            }
            continue;
        }
        if (due[i].reminders >= count ||
            strptime(due[i].first_sent_at, "%Y-%m-%dT%H:%M:%SZ", &tm) == NULL)
            continue;
        first = timegm(&tm);
        if (t < first + (time_t)days[due[i].reminders] * 24 * 3600)
            continue;
        if (queue_consent_mail(app, &cfg, due[i].email, 0, 1, &err) != 0) {
            log_warn("consent", "reminder to person %lld not queued: %s",
                     (long long)due[i].holder, err ? err : "?");
            free(err);
            err = NULL;
            continue;
        }
        sent++;
    }
    if (db_commit(app->db) != SQLITE_OK) {
        db_rollback(app->db);
        sent = -1;
    }
    free(due);
    if (sent > 0) {
        api_data_changed();
        mail_service_wake();
        log_info("consent", "queued %ld consent reminder(s)", sent);
    }
    return sent;
}

static void on_reminder_timer(uv_timer_t *timer)
{
    consent_reminders_run(timer->data);
}

static void on_import_finished(struct app *app, int64_t run_id, int dry_run, int failed, void *arg)
{
    int64_t *ids = NULL;
    long count;
    json_t *result = NULL;
    char *err = NULL;

    (void)arg;
    if (dry_run || failed || !script_after_import(app, run_id))
        return;
    count = recovery_import_people(app->db, run_id, &ids, &err);
    if (count > 0 && consent_send(app, ids, (size_t)count, run_id, &result, &err) == 0)
        log_info("consent", "import %lld: consent mails queued automatically", (long long)run_id);
    else if (err != NULL)
        log_warn("consent", "import %lld: consent mails not sent: %s", (long long)run_id, err);
    json_decref(result);
    free(ids);
    free(err);
}

int consent_service_start(struct app *app, char **err)
{
    *err = NULL;
    if (!listener_added && api_import_add_listener(on_import_finished, NULL) == 0)
        listener_added = 1;
    uv_timer_init(app->loop, &reminder_timer);
    reminder_timer.data = app;
    uv_timer_start(&reminder_timer, on_reminder_timer, REMINDER_FIRST_MS, REMINDER_TIMER_MS);
    uv_unref((uv_handle_t *)&reminder_timer);
    timer_running = 1;
    return 0;
}

void consent_service_stop(struct app *app)
{
    (void)app;
    if (!timer_running)
        return;
    uv_timer_stop(&reminder_timer);
    uv_close((uv_handle_t *)&reminder_timer, NULL);
    timer_running = 0;
}

/* ---- the page behind the mail link --------------------------------------------- */

static const char INVALID_LINK[] = "Ce lien n'est plus valable : il a expiré ou il est "
                                   "incomplet. Demandez un nouveau lien au club.";

/* The people a holder responds for: the holder and everyone sharing the
 * address. */
static json_t *covered_people(struct db *db, int64_t holder)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT p.id, p.first_name, p.last_name FROM person p"
                                     " WHERE p.id = ?1 OR (p.email IS NOT NULL AND p.email ="
                                     " (SELECT email FROM person WHERE id = ?1))"
                                     " ORDER BY p.id <> ?1, p.birth_date, p.id");
    json_t *out = json_array();

    if (stmt == NULL)
        return out;
    sqlite3_bind_int64(stmt, 1, holder);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(stmt, 0);
        json_t *record = consent_person_json(db, id);

        if (record == NULL)
            continue;
        json_object_set_new(record, "id", json_integer(id));
        json_object_set_new(record, "first_name", api_column_json(stmt, 1));
        json_object_set_new(record, "last_name", api_column_json(stmt, 2));
        json_object_del(record, "proofs");
        json_array_append_new(out, record);
    }
    sqlite3_reset(stmt);
    return out;
}

static json_t *public_documents(struct db *db)
{
    return consent_current_documents(db);
}

static void handle_link_get(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    int64_t holder = 0;
    int rc = token_peek(app->db, http_param(req, "token"), "consent", &holder);

    http_set_header(req, "Cache-Control", "no-store");
    http_set_header(req, "Referrer-Policy", "no-referrer");
    if (rc == TOKEN_ERROR) {
        api_respond_db_error(req, app, "token");
        return;
    }
    if (rc != 0) {
        http_respond_error(req, 404, "invalid_link", INVALID_LINK);
        return;
    }
    http_respond_json(req, 200,
                      json_pack("{s:s,s:o,s:o}", "club", app->config.club_name, "people",
                                covered_people(app->db, holder), "documents",
                                public_documents(app->db)));
}

/* Runs the plugins' consent_recorded hook once per person, with
 * {person_id, decisions: {key: decision}, channel}. Their return values
 * are only logged on failure: the decision is already committed. */
static void notify_plugins(struct app *app, json_t *body, const int64_t *people, size_t npeople,
                           enum consent_channel channel)
{
    struct api_scripts scripts;

    api_scripts_acquire(app, &scripts);
    if (scripts.state != NULL && script_has_hook(scripts.state, SCRIPT_HOOK_CONSENT_RECORDED)) {
        for (size_t i = 0; i < npeople; i++) {
            json_t *payload = json_pack("{s:I,s:O,s:s}", "person_id", (json_int_t)people[i],
                                        "decisions", json_object_get(body, "decisions"), "channel",
                                        consent_channel_name(channel));
            json_t *result = NULL;

            if (script_run_hook(scripts.state, SCRIPT_HOOK_CONSENT_RECORDED, payload, &result) != 0)
                log_warn("consent", "a consent_recorded hook failed for person %lld",
                         (long long)people[i]);
            json_decref(result);
            json_decref(payload);
        }
    }
    api_scripts_release(&scripts);
}

/* Records decisions {document key: "accepted"|"refused"|"withdrawn"} with
 * the version ids shown {key: version_id} for each person of people (ids
 * checked by the caller). Responds. */
static void record_decisions(struct http_request *req, struct app *app, json_t *body,
                             const int64_t *people, size_t npeople, enum consent_channel channel,
                             int64_t acted_by, int64_t recorded_by)
{
    json_t *decisions = json_object_get(body, "decisions");
    json_t *versions = json_object_get(body, "version_ids");
    const char *key;
    json_t *value;
    long recorded = 0;
    char *err = NULL;

    if (!json_is_object(decisions) || json_object_size(decisions) == 0) {
        api_respond_validation(req, json_pack("{s:s}", "decisions",
                                              "Indiquez au moins une décision."));
        return;
    }
    json_object_foreach(decisions, key, value) {
        int decision = consent_decision_parse(json_string_value(value));
        json_t *shown = json_object_get(versions, key);
        sqlite3_stmt *stmt;
        int64_t current = 0;

        if (decision < 0) {
            api_respond_validation(req, json_pack("{s:s}", "decisions",
                                                  "Décision inconnue : accepted, refused ou "
                                                  "withdrawn."));
            return;
        }
        stmt = db_stmt(app->db, "SELECT current_version_id FROM consent_document WHERE key = ?1");
        if (stmt != NULL) {
            sqlite3_bind_text(stmt, 1, key, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(stmt) == SQLITE_ROW)
                current = sqlite3_column_int64(stmt, 0);
            sqlite3_reset(stmt);
        }
        if (current == 0) {
            api_respond_validation(req, json_pack("{s:s}", "decisions", "Document inconnu."));
            return;
        }
        if (json_is_integer(shown) && json_integer_value(shown) != current) {
            http_respond_error(req, 409, "version_changed",
                               "Le texte de ce document vient de changer : rechargez la page pour "
                               "lire la nouvelle version.");
            return;
        }
    }
    if (db_begin(app->db) != SQLITE_OK) {
        api_respond_db_error(req, app, "begin");
        return;
    }
    for (size_t i = 0; i < npeople; i++) {
        json_object_foreach(decisions, key, value) {
            struct consent_proof proof = {0};

            proof.person_id = people[i];
            proof.document = key;
            proof.decision = (enum consent_decision)consent_decision_parse(json_string_value(value));
            proof.channel = channel;
            proof.ip = channel == CONSENT_CHANNEL_PAPER ? NULL : req->remote_addr;
            proof.user_agent =
                channel == CONSENT_CHANNEL_PAPER ? NULL : http_header(req, "user-agent");
            proof.recorded_by = recorded_by;
            if (consent_record_as(app->db, &proof, acted_by, &err) < 0) {
                db_rollback(app->db);
                http_respond_error(req, 500, "internal", err ? err : "Erreur.");
                free(err);
                return;
            }
            recorded++;
        }
    }
    if (db_commit(app->db) != SQLITE_OK) {
        db_rollback(app->db);
        api_respond_db_error(req, app, "commit");
        return;
    }
    api_data_changed();
    notify_plugins(app, body, people, npeople, channel);
    {
        json_t *statuses = json_object();

        for (size_t i = 0; i < npeople; i++) {
            const char *status = consent_status(app->db, people[i]);
            char id[24];

            snprintf(id, sizeof(id), "%lld", (long long)people[i]);
            json_object_set_new(statuses, id, status ? json_string(status) : json_null());
        }
        http_set_header(req, "Cache-Control", "no-store");
        http_respond_json(req, 200, json_pack("{s:I,s:o}", "recorded", (json_int_t)recorded,
                                              "statuses", statuses));
    }
}

/* Collects the ids asked for in body "person_ids" among allowed (an array
 * of the people of the link). Returns the count, or -1 after responding. */
static long pick_people(struct http_request *req, json_t *body, json_t *allowed, int64_t *out,
                        size_t cap)
{
    json_t *asked = json_object_get(body, "person_ids"), *item, *person;
    size_t i, j;
    long count = 0;

    json_array_foreach(allowed, i, person) {
        int64_t id = json_integer_value(json_object_get(person, "id"));
        int wanted = !json_is_array(asked);

        json_array_foreach(asked, j, item) {
            if (json_integer_value(item) == id)
                wanted = 1;
        }
        if (wanted && (size_t)count < cap)
            out[count++] = id;
    }
    if (count == 0) {
        api_respond_validation(req, json_pack("{s:s}", "person_ids",
                                              "Choisissez au moins une personne."));
        return -1;
    }
    return count;
}

static void handle_link_post(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    json_t *body = api_read_object(req), *people = NULL;
    int64_t holder = 0, ids[64];
    long count;
    int rc;

    if (body == NULL)
        return;
    rc = token_peek(app->db, json_string_value(json_object_get(body, "token")), "consent",
                    &holder);
    if (rc != 0) {
        if (rc == TOKEN_ERROR)
            api_respond_db_error(req, app, "token");
        else
            http_respond_error(req, 404, "invalid_link", INVALID_LINK);
        goto done;
    }
    people = covered_people(app->db, holder);
    count = pick_people(req, body, people, ids, sizeof(ids) / sizeof(ids[0]));
    if (count < 0)
        goto done;
    record_decisions(req, app, body, ids, (size_t)count, CONSENT_CHANNEL_MAIL_LINK, holder, 0);

done:
    json_decref(people);
    json_decref(body);
}

/* ---- the rider's own consents (logged in) ------------------------------------ */

static int may_answer_for(struct app *app, const struct auth_user *user, int64_t person_id)
{
    return user->person_id == person_id || auth_allowed(app, user, "rider.update", person_id);
}

static void handle_me_get(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_authenticate(app, req);
    json_t *people, *family, *member;
    size_t i;

    if (user == NULL)
        return;
    if (user->person_id == 0) {
        http_respond_error(req, 403, "forbidden", "Un jeton d'API ne représente personne.");
        return;
    }
    people = json_array();
    family = api_family_links_json(app, user->person_id);
    {
        json_t *me = consent_person_json(app->db, user->person_id);
        if (me != NULL) {
            json_object_set_new(me, "id", json_integer(user->person_id));
            json_array_append_new(people, me);
        }
    }
    json_array_foreach(family, i, member) {
        int64_t id = json_integer_value(json_object_get(json_object_get(member, "person"), "id"));
        json_t *record;

        if (id <= 0 || !may_answer_for(app, user, id))
            continue;
        record = consent_person_json(app->db, id);
        if (record == NULL)
            continue;
        json_object_set_new(record, "id", json_integer(id));
        json_object_set(record, "person", json_object_get(member, "person"));
        json_array_append_new(people, record);
    }
    json_decref(family);
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200, json_pack("{s:o,s:o}", "people", people, "documents",
                                          public_documents(app->db)));
}

static void handle_me_post(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_authenticate(app, req);
    json_t *body;
    int64_t person_id;

    if (user == NULL)
        return;
    if (user->person_id == 0) {
        http_respond_error(req, 403, "forbidden", "Un jeton d'API ne représente personne.");
        return;
    }
    body = api_read_object(req);
    if (body == NULL)
        return;
    person_id = json_is_integer(json_object_get(body, "person_id"))
                    ? json_integer_value(json_object_get(body, "person_id"))
                    : user->person_id;
    if (!may_answer_for(app, user, person_id)) {
        http_respond_error(req, 403, "forbidden",
                           "Vous ne pouvez répondre que pour vous-même et votre famille.");
    } else {
        record_decisions(req, app, body, &person_id, 1, CONSENT_CHANNEL_LOGIN, user->person_id,
                         0);
    }
    json_decref(body);
}

/* ---- staff ---------------------------------------------------------------------- */

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

/* GET /api/v1/consents?status=&q=&limit=&offset= */
/* Returns "%text%" with the LIKE wildcards of text escaped (free it), or
 * NULL when out of memory. */
static char *like_pattern(const char *text)
{
    struct buf b;

    buf_init(&b, 2 * strlen(text) + 3);
    buf_appendz(&b, "%");
    for (const char *c = text; *c; c++) {
        if (*c == '%' || *c == '_' || *c == '\\')
            buf_append(&b, "\\", 1);
        buf_append(&b, c, 1);
    }
    buf_appendz(&b, "%");
    buf_terminate(&b);
    return b.data;
}

static void handle_list(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    char status[32] = "", q[QUERY_MAX + 1] = "", limit_text[16] = "", offset_text[16] = "";
    char *pattern = NULL, *folded_pattern = NULL;
    const char *search_pattern; /* for the folded search_text */
    sqlite3_stmt *stmt;
    json_t *counts, *items;
    int limit, offset;
    json_int_t total = 0, matching = 0;

    if (auth_require(app, req, "consent.manage", 0) == NULL)
        return;
    http_query_param(req, "status", status, sizeof(status));
    http_query_param(req, "q", q, sizeof(q));
    http_query_param(req, "limit", limit_text, sizeof(limit_text));
    http_query_param(req, "offset", offset_text, sizeof(offset_text));
    limit = parse_int(limit_text, 100, 1, LIST_MAX);
    offset = parse_int(offset_text, 0, 0, 1 << 30);
    if (status[0] && strcmp(status, "accepte") != 0 && strcmp(status, "en_attente") != 0 &&
        strcmp(status, "refuse") != 0 && strcmp(status, "a_renouveler") != 0) {
        api_respond_validation(req, json_pack("{s:s}", "status",
                                              "Statut inconnu : accepte, en_attente, refuse ou "
                                              "a_renouveler."));
        return;
    }
    if (q[0]) {
        /* The whole text is one LIKE pattern (not split into words), with
         * its wildcards escaped. search_text is folded (no accents, lower
         * case), so it is searched with the folded text. */
        char folded[2 * QUERY_MAX + 3];

        pattern = like_pattern(q);
        if (norm_fold(q, folded, sizeof(folded), 0) == NORM_OK)
            folded_pattern = like_pattern(folded);
    }
    if (q[0] && !pattern) {
        free(folded_pattern);
        http_respond_error(req, 500, "internal", "Mémoire insuffisante.");
        return;
    }
    search_pattern = folded_pattern ? folded_pattern : pattern;

    counts = json_pack("{s:i,s:i,s:i,s:i}", "accepte", 0, "en_attente", 0, "refuse", 0,
                       "a_renouveler", 0);
    stmt = db_stmt(app->db, "SELECT s.status, count(*) FROM person p"
                            " JOIN consent_person_status s ON s.person_id = p.id"
                            " WHERE s.status IS NOT NULL"
                            " AND EXISTS (SELECT 1 FROM person_role r WHERE r.person_id = p.id"
                            "  AND r.role = 'client')"
                            " GROUP BY s.status");
    if (stmt != NULL) {
        while (sqlite3_step(stmt) == SQLITE_ROW) {
            json_object_set_new(counts, (const char *)sqlite3_column_text(stmt, 0),
                                json_integer(sqlite3_column_int64(stmt, 1)));
            total += sqlite3_column_int64(stmt, 1);
        }
        sqlite3_reset(stmt);
    }
    json_object_set_new(counts, "tous", json_integer(total));

    /* The number of people the filters select, for the pages of the list. */
    stmt = db_stmt(app->db, "SELECT count(*) FROM person p"
                            " JOIN consent_person_status s ON s.person_id = p.id"
                            LIST_WHERE);
    if (stmt != NULL) {
        db_bind_text_or_null(stmt, 1, status);
        db_bind_text_or_null(stmt, 2, pattern);
        db_bind_text_or_null(stmt, 5, search_pattern);
        matching = sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
        sqlite3_reset(stmt);
    }

    items = json_array();
    stmt = db_stmt(app->db,
                   "SELECT p.id, p.last_name, p.first_name, p.email, s.status,"
                   " (SELECT max(at) FROM consent_last l WHERE l.person_id = p.id),"
                   " (SELECT max(r.last_sent_at) FROM consent_request r JOIN person h"
                   "  ON h.id = r.person_id WHERE h.email = p.email),"
                   " (SELECT max(r.reminders) FROM consent_request r JOIN person h"
                   "  ON h.id = r.person_id WHERE h.email = p.email AND r.closed_at IS NULL)"
                   " FROM person p JOIN consent_person_status s ON s.person_id = p.id"
                   LIST_WHERE
                   " ORDER BY p.last_name COLLATE NOCASE, p.first_name COLLATE NOCASE, p.id"
                   " LIMIT ?3 OFFSET ?4");
    if (stmt == NULL) {
        free(pattern);
        free(folded_pattern);
        json_decref(counts);
        json_decref(items);
        api_respond_db_error(req, app, "consent list");
        return;
    }
    db_bind_text_or_null(stmt, 1, status);
    db_bind_text_or_null(stmt, 2, pattern);
    db_bind_text_or_null(stmt, 5, search_pattern);
    sqlite3_bind_int(stmt, 3, limit);
    sqlite3_bind_int(stmt, 4, offset);
    while (sqlite3_step(stmt) == SQLITE_ROW)
        json_array_append_new(
            items, json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:i}", "id",
                             (json_int_t)sqlite3_column_int64(stmt, 0), "last_name",
                             api_column_json(stmt, 1), "first_name", api_column_json(stmt, 2),
                             "email", api_column_json(stmt, 3), "status",
                             api_column_json(stmt, 4), "last_decision_at",
                             api_column_json(stmt, 5), "last_mail_at", api_column_json(stmt, 6),
                             "reminders", sqlite3_column_int(stmt, 7)));
    sqlite3_reset(stmt);
    free(pattern);
    free(folded_pattern);
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200, json_pack("{s:o,s:o,s:I,s:i,s:i}", "counts", counts, "items",
                                          items, "total", matching, "limit", limit, "offset",
                                          offset));
}

static void handle_person(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    int64_t id = api_param_id(req, "id");
    json_t *record;

    if (id == 0 || auth_require(app, req, "consent.manage", id) == NULL)
        return;
    record = consent_person_json(app->db, id);
    if (record == NULL) {
        http_respond_error(req, 404, "not_found", "Cette personne n'existe pas.");
        return;
    }
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200, record);
}

static void handle_documents(struct http_request *req, void *ctx)
{
    struct app *app = ctx;

    if (auth_require(app, req, "consent.manage", 0) == NULL)
        return;
    http_respond_json(req, 200, json_pack("{s:o}", "documents", consent_documents_json(app->db)));
}

static void handle_publish(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_require(app, req, "consent.manage", 0);
    const char *key;
    json_t *body;
    int64_t version_id;
    char *err = NULL;

    if (user == NULL)
        return; /* req is freed once the response is sent: read nothing more from it */
    key = http_param(req, "key");
    body = api_read_object(req);
    if (body == NULL)
        return;
    version_id = consent_publish(app->db, key, json_string_value(json_object_get(body, "title")),
                                 json_string_value(json_object_get(body, "text")),
                                 user->person_id, &err);
    if (version_id < 0) {
        if (err != NULL && strncmp(err, "Document inconnu", 16) == 0)
            http_respond_error(req, 404, "not_found", err);
        else
            api_respond_validation(req, json_pack("{s:s}", "text", err ? err : "Erreur."));
    } else {
        char id_text[24];

        snprintf(id_text, sizeof(id_text), "%lld", (long long)version_id);
        api_audit(app, user, 0, "consent.publish", key, NULL, id_text);
        api_data_changed();
        http_respond_json(req, 201, json_pack("{s:o}", "documents",
                                              consent_documents_json(app->db)));
    }
    free(err);
    json_decref(body);
}

/* POST /api/v1/consents/requests {import_run_id | person_ids | person_id |
 * status: "en_attente"|"a_renouveler"|"tous"} */
static void handle_requests(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_require(app, req, "consent.manage", 0);
    json_t *body, *result = NULL;
    int64_t *ids = NULL;
    long count = 0;
    int64_t run_id = 0;
    char *err = NULL;

    if (user == NULL)
        return;
    body = api_read_object(req);
    if (body == NULL)
        return;
    count = api_read_person_selection(app, req, body, &ids, &run_id);
    if (count < 0)
        goto done;
    if (count == 0 && run_id == 0 && json_is_string(json_object_get(body, "status"))) {
        /* Everyone whose consent is pending or to renew. */
        sqlite3_stmt *stmt = db_stmt(app->db,
                                     "SELECT s.person_id FROM consent_person_status s"
                                     " WHERE s.status IN ('en_attente', 'a_renouveler')"
                                     " AND (?1 = 'tous' OR s.status = ?1) AND EXISTS (SELECT 1"
                                     " FROM person_role r WHERE r.person_id = s.person_id"
                                     " AND r.role = 'client') LIMIT 20000");
        size_t cap = 0;

        if (stmt == NULL) {
            api_respond_db_error(req, app, "consent pending");
            goto done;
        }
        sqlite3_bind_text(stmt, 1, json_string_value(json_object_get(body, "status")), -1,
                          SQLITE_TRANSIENT);
        while (sqlite3_step(stmt) == SQLITE_ROW) {
            if ((size_t)count == cap) {
                int64_t *grown = realloc(ids, (cap = cap ? cap * 2 : 256) * sizeof(*ids));
                if (grown == NULL)
                    break;
                ids = grown;
            }
            ids[count++] = sqlite3_column_int64(stmt, 0);
        }
        sqlite3_reset(stmt);
    } else if (count == 0 && run_id == 0) {
        api_respond_validation(req, json_pack("{s:s}", "person_ids",
                                              "Indiquez un import, des personnes ou un statut."));
        goto done;
    }
    if (consent_send(app, ids, (size_t)count, run_id, &result, &err) != 0) {
        if (api_db_busy(app))
            api_respond_db_error(req, app, "consent requests");
        else
            http_respond_error(req, 409, "consent", err ? err : "Erreur.");
        goto done;
    }
    api_audit(app, user, count == 1 ? ids[0] : 0, "consent.request", NULL, NULL, NULL);
    http_respond_json(req, 200, result);

done:
    free(ids);
    free(err);
    json_decref(body);
}

/* POST /api/v1/consents/paper {person_id, decisions, version_ids} */
static void handle_paper(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_require(app, req, "consent.manage", 0);
    json_t *body;
    int64_t person_id;
    sqlite3_stmt *stmt;
    int exists = 0;

    if (user == NULL)
        return;
    body = api_read_object(req);
    if (body == NULL)
        return;
    person_id = json_integer_value(json_object_get(body, "person_id"));
    stmt = db_stmt(app->db, "SELECT 1 FROM person WHERE id = ?1");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, person_id);
        exists = sqlite3_step(stmt) == SQLITE_ROW;
        sqlite3_reset(stmt);
    }
    if (!exists)
        api_respond_validation(req, json_pack("{s:s}", "person_id", "Cette personne n'existe pas."));
    else
        record_decisions(req, app, body, &person_id, 1, CONSENT_CHANNEL_PAPER, 0,
                         user->person_id ? user->person_id : -1);
    json_decref(body);
}

static void handle_export(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    char key[64] = "", *csv, *err = NULL;
    size_t len = 0;

    if (auth_require(app, req, "consent.manage", 0) == NULL)
        return;
    http_query_param(req, "document", key, sizeof(key));
    csv = consent_export_csv(app->db, key[0] ? key : NULL, &len, &err);
    if (csv == NULL) {
        http_respond_error(req, 500, "internal", err ? err : "Erreur.");
        free(err);
        return;
    }
    http_set_header(req, "Content-Disposition", "attachment; filename=\"preuves-consentement.csv\"");
    http_set_header(req, "Cache-Control", "no-store");
    http_respond(req, 200, "text/csv; charset=utf-8", csv, len);
    free(csv);
}

static void handle_reminders(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    long sent;

    if (auth_require(app, req, "consent.manage", 0) == NULL)
        return;
    sent = consent_reminders_run(app);
    if (sent < 0) {
        api_respond_db_error(req, app, "reminders");
        return;
    }
    http_respond_json(req, 200, json_pack("{s:I}", "queued", (json_int_t)sent));
}

void api_consent_register_routes(struct app *app)
{
    router_add(app->router, "GET", "/api/v1/consents", handle_list, app, 0);
    router_add(app->router, "GET", "/api/v1/consents/documents", handle_documents, app, 0);
    router_add(app->router, "POST", "/api/v1/consents/documents/:key/versions", handle_publish,
               app, 0);
    router_add(app->router, "GET", "/api/v1/consents/persons/:id", handle_person, app, 0);
    router_add(app->router, "POST", "/api/v1/consents/requests", handle_requests, app, 0);
    router_add(app->router, "POST", "/api/v1/consents/paper", handle_paper, app, 0);
    router_add(app->router, "GET", "/api/v1/consents/export.csv", handle_export, app, 0);
    router_add(app->router, "POST", "/api/v1/consents/reminders/run", handle_reminders, app, 0);
    router_add(app->router, "GET", "/api/v1/consents/me", handle_me_get, app, 0);
    router_add(app->router, "POST", "/api/v1/consents/me", handle_me_post, app, 0);
    router_add(app->router, "GET", "/api/v1/consents/link/:token", handle_link_get, app, 0);
    router_add(app->router, "POST", "/api/v1/consents/link", handle_link_post, app, 0);
}
