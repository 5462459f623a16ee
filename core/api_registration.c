/*
 * Online registration routes: the public form (description, submission,
 * confirmation of the address through the mailed link) and the staff list
 * where registrations are validated or refused (permission
 * "registrations.manage").
 *
 * A submission never creates a person by itself. It is stored in the
 * registration table, and a mail with a single-use link goes to the
 * applicant's address. When the applicant seems to be someone already on
 * file (same licence number, or same name and birth date) who has an
 * address, the mail goes to that address instead, so following the link
 * proves ownership and links the registration to that person. A duplicate
 * without an address on file waits for staff, marked as a possible
 * duplicate. The role given on
 * confirmation and on validation, and the required fields, come from
 * scripts/registration.lua (core/registration.c).
 *
 * Field values are validated and normalised exactly as staff edits are, by
 * api_rider_create run inside a transaction that is rolled back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "api.h"
#include "auth.h"
#include "consent.h"
#include "log.h"
#include "normalize.h"
#include "outbox.h"
#include "person.h"
#include "recovery.h"
#include "registration.h"
#include "script.h"
#include "util.h"

#define FORM_HONEYPOT "site_web"   /* hidden input a person never fills */
#define FORM_MAX_USER_AGENT 512    /* bytes kept as consent proof */
#define FORM_MAX_GUARDIAN_TEXT 200 /* bytes per guardian field */
#define LIST_MAX 500
#define PAGE_PATH "/inscription.html"

/* Core fields the public form offers, with the statement that reads each
 * one back (db_stmt caches statements by their text's address, so each
 * needs a literal). Public plugin fields come in addition. */
#define FORM_SELECT(column) "SELECT " column " FROM person WHERE id = ?1"
static const struct {
    const char *key;
    const char *select_sql;
} form_core[] = {
    {"last_name", FORM_SELECT("last_name")},
    {"first_name", FORM_SELECT("first_name")},
    {"sex", FORM_SELECT("sex")},
    {"birth_date", FORM_SELECT("birth_date")},
    {"email", FORM_SELECT("email")},
    {"phone", FORM_SELECT("phone")},
    {"mobile", FORM_SELECT("mobile")},
    {"address", FORM_SELECT("address")},
    {"address2", FORM_SELECT("address2")},
    {"postcode", FORM_SELECT("postcode")},
    {"city", FORM_SELECT("city")},
    {"country", FORM_SELECT("country")},
    {"licence_number", FORM_SELECT("licence_number")},
};
#define FORM_CORE_COUNT (sizeof(form_core) / sizeof(form_core[0]))

static const char *const submitted_message =
    "Merci ! Un e-mail de confirmation vient d'être envoyé. Ouvrez le lien qu'il contient "
    "pour confirmer votre adresse. Si le club vous connaît déjà, l'e-mail part à l'adresse "
    "enregistrée dans votre fiche.";

static const char *const statuses[] = {"email_pending", "to_validate", "validated", "refused"};
#define STATUS_COUNT (sizeof(statuses) / sizeof(statuses[0]))

static int form_has_key(const struct fields_catalogue *fields, const char *key)
{
    const struct field_def *f;

    for (size_t i = 0; i < FORM_CORE_COUNT; i++) {
        if (strcmp(key, form_core[i].key) == 0)
            return 1;
    }
    f = fields_find(fields, key);
    return f != NULL && f->plugin != NULL && f->is_public;
}

static void today_text(char *out, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(out, size, "%Y-%m-%d", &tm);
}

static void time_text(time_t t, char *out, size_t size)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A user with every role, used to run the staff validation code on behalf
 * of the public form. Its person_id 0 writes audit rows without an actor. */
static const struct auth_user *form_user(void)
{
    static struct auth_user user = {
        .roles = AUTH_ROLE_GERANT | AUTH_ROLE_EMPLOYE | AUTH_ROLE_CLIENT | AUTH_ROLE_VISITEUR |
                 AUTH_ROLE_COMPTABLE | AUTH_ROLE_PROPRIETAIRE,
    };
    return &user;
}

static json_t *documents_json(struct app *app)
{
    json_t *docs = consent_current_documents(app->db);

    return docs != NULL ? docs : json_array();
}

/* ---- rules ------------------------------------------------------------------ */

/* The applicant as registration.lua receives it: the fields plus age and
 * mineur. */
static json_t *applicant_json(json_t *fields, int age, int minor)
{
    json_t *applicant = json_deep_copy(fields);

    if (applicant == NULL)
        applicant = json_object();
    json_object_set_new(applicant, "age", age >= 0 ? json_integer(age) : json_null());
    json_object_set_new(applicant, "mineur", json_boolean(minor));
    return applicant;
}

static json_t *required_json(const struct registration_rules *rules)
{
    json_t *list = json_array();

    for (size_t i = 0; i < rules->required_count; i++)
        json_array_append_new(list, json_string(rules->required[i]));
    return list;
}

/* ---- GET /api/v1/inscription/formulaire ------------------------------------- */

static void handle_form(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    struct api_scripts scripts;
    struct registration_settings settings;
    struct registration_rules adult, minor;
    json_t *all, *fields, *item, *probe, *body;
    char *err = NULL;
    size_t i;

    api_scripts_acquire(app, &scripts);
    registration_settings_get(scripts.state, &settings);
    probe = applicant_json(NULL, settings.majority_age + 12, 0);
    if (registration_rules_get(scripts.state, scripts.fields, probe, &adult, &err) < 0)
        log_warn("registration", "%s: form description: %s", req->id, err);
    free(err);
    err = NULL;
    json_decref(probe);
    probe = applicant_json(NULL, settings.majority_age > 8 ? 8 : 0, 1);
    if (registration_rules_get(scripts.state, scripts.fields, probe, &minor, &err) < 0)
        log_warn("registration", "%s: form description: %s", req->id, err);
    free(err);
    json_decref(probe);

    all = fields_to_json(scripts.fields);
    fields = json_array();
    json_array_foreach(all, i, item) {
        const char *key = json_string_value(json_object_get(item, "key"));

        if (key != NULL && form_has_key(scripts.fields, key))
            json_array_append(fields, item);
    }
    json_decref(all);
    api_scripts_release(&scripts);

    body = json_pack("{s:o,s:o,s:o,s:o,s:i,s:s}", "fields", fields, "required_adult",
                     required_json(&adult), "required_minor", required_json(&minor), "documents",
                     documents_json(app), "majority_age", settings.majority_age, "honeypot",
                     FORM_HONEYPOT);
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200, body);
}

/* ---- submission: validation --------------------------------------------------- */

/* Values captured by the dry run of api_rider_create from the person row it
 * wrote and then rolled back. */
struct dry_run {
    struct app *app;
    json_t *keys;   /* the submitted keys (array) */
    json_t *stored; /* key -> stored (normalised) value */
    char match_key[PERSON_KEY_SIZE];
    int captured;
};

/* Reads back the normalised values of the person just written. Runs
 * inside api_rider_create's transaction and always returns 1, so that the
 * transaction is rolled back. */
static int dry_run_capture(void *arg, int64_t id)
{
    struct dry_run *run = arg;
    sqlite3_stmt *stmt;
    size_t i;
    json_t *key;

    run->stored = json_object();
    stmt = db_stmt(run->app->db, "SELECT match_key FROM person WHERE id = ?1");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, id);
        if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0) != NULL)
            snprintf(run->match_key, sizeof(run->match_key), "%s",
                     (const char *)sqlite3_column_text(stmt, 0));
        sqlite3_reset(stmt);
    }
    json_array_foreach(run->keys, i, key) {
        const char *k = json_string_value(key);
        const char *sql = "SELECT value FROM person_field WHERE person_id = ?1 AND key = ?2";
        int core = 0;

        for (size_t c = 0; c < FORM_CORE_COUNT && !core; c++) {
            if (strcmp(k, form_core[c].key) == 0) {
                sql = form_core[c].select_sql;
                core = 1;
            }
        }
        stmt = db_stmt(run->app->db, sql);
        if (stmt == NULL)
            continue;
        sqlite3_bind_int64(stmt, 1, id);
        if (!core)
            sqlite3_bind_text(stmt, 2, k, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0) != NULL)
            json_object_set_new(run->stored, k,
                                json_string((const char *)sqlite3_column_text(stmt, 0)));
        sqlite3_reset(stmt);
    }
    run->captured = 1;
    return 1;
}

/* Checks the guardian of a minor: name, first name, e-mail and phone are
 * required. Fills *out with the stored forms. Messages go to errors under
 * "guardian.<key>". */
static void check_guardian(json_t *guardian, json_t *errors, json_t **out)
{
    static const struct {
        const char *key;
        const char *label;
    } keys[] = {{"last_name", "le nom"},
                {"first_name", "le prénom"},
                {"email", "l'adresse e-mail"},
                {"phone", "le téléphone"}};
    char stored[256], second[256], name[128];

    *out = json_object();
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *value = json_string_value(json_object_get(guardian, keys[i].key));
        enum norm_status st;

        snprintf(name, sizeof(name), "guardian.%s", keys[i].key);
        if (value == NULL || value[0] == '\0') {
            char *message =
                str_printf("Pour un mineur, indiquez %s du responsable légal.", keys[i].label);
            json_object_set_new(errors, name, json_string(message ? message : ""));
            free(message);
            continue;
        }
        if (strlen(value) > FORM_MAX_GUARDIAN_TEXT) {
            json_object_set_new(errors, name,
                                json_string("Texte trop long (200 caractères au plus)."));
            continue;
        }
        if (strcmp(keys[i].key, "email") == 0)
            st = norm_email(value, stored, sizeof(stored), second, sizeof(second));
        else if (strcmp(keys[i].key, "phone") == 0)
            st = norm_phone(value, stored, sizeof(stored));
        else
            st = norm_text(value, stored, sizeof(stored));
        if (st != NORM_OK) {
            json_object_set_new(
                errors, name,
                json_string(strcmp(keys[i].key, "email") == 0   ? "Adresse e-mail invalide."
                            : strcmp(keys[i].key, "phone") == 0 ? "Numéro de téléphone invalide."
                                                                : "Valeur invalide."));
            continue;
        }
        json_object_set_new(*out, keys[i].key, json_string(stored));
    }
}

/* Checks the consents against the current documents: every required one
 * must be accepted, each optional one is a separate yes or no, and the
 * version shown (shown: key -> version id, may be NULL) must still be the
 * current one. Returns the decisions as [{document, title, version_id, hash,
 * accepted}]. */
static json_t *check_consents(struct app *app, json_t *answers, json_t *shown, json_t *errors)
{
    json_t *docs = documents_json(app), *decisions = json_array(), *doc;
    size_t i;

    json_array_foreach(docs, i, doc) {
        const char *key = json_string_value(json_object_get(doc, "key"));
        int accepted = json_is_true(json_object_get(answers, key)), required;
        char name[128];

        if (key == NULL)
            continue;
        snprintf(name, sizeof(name), "consents.%s", key);
        if (json_is_integer(json_object_get(shown, key)) &&
            json_integer_value(json_object_get(shown, key)) !=
                json_integer_value(json_object_get(doc, "version_id"))) {
            /* A version published while the form was open: the applicant
             * has not seen the text they would accept. */
            json_object_set_new(errors, name,
                                json_string("Ce texte a changé depuis l'ouverture du formulaire : "
                                            "rechargez la page pour lire la nouvelle version."));
            continue;
        }
        required = json_is_true(json_object_get(doc, "required")) ||
                   json_integer_value(json_object_get(doc, "required")) != 0;
        if (required && !accepted) {
            char *message = str_printf("Vous devez accepter « %s » pour vous inscrire.",
                                       json_string_value(json_object_get(doc, "title")));
            json_object_set_new(errors, name, json_string(message ? message : ""));
            free(message);
            continue;
        }
        json_array_append_new(decisions,
                              json_pack("{s:s,s:O,s:O,s:O,s:b}", "document", key, "title",
                                        json_object_get(doc, "title"), "version_id",
                                        json_object_get(doc, "version_id"), "hash",
                                        json_object_get(doc, "hash"), "accepted", accepted));
    }
    json_decref(docs);
    return decisions;
}

/* ---- submission: storing and mailing ------------------------------------------ */

/* Queues the verification mail for registration id. to is the recipient;
 * on_file: the address is the one already on file for an existing person. */
static int queue_verification(struct app *app, int64_t id, int64_t person_id, const char *to,
                              const char *to_name, const char *token, int on_file, int link_hours,
                              char **err)
{
    struct outbox_config cfg;
    struct outbox_mail mail = {
        .kind = "verification", .to_name = to_name, .to_address = to, .person_id = person_id};
    char *link = str_printf("%s%s#confirmer=%s", app->config.public_url, PAGE_PATH, token);
    char hours[16];
    int rc;

    snprintf(hours, sizeof(hours), "%d", link_hours);
    const struct mail_var vars[] = {
        {"nom", to_name},
        {"club", app->config.club_name},
        {"lien", link},
        {"heures", hours},
        {"situation", on_file
                          ? "Une demande d'inscription en ligne a été faite à un nom que le club "
                            "connaît déjà, et c'est à l'adresse enregistrée dans cette fiche que "
                            "nous écrivons. Si la demande vient de vous, confirmez-la : "
                            "l'inscription sera rattachée à votre fiche. Sinon, ignorez ce "
                            "message."
                          : "Vous venez de vous inscrire en ligne. Confirmez votre adresse "
                            "e-mail pour que l'équipe du club puisse valider votre inscription."},
    };

    mail_service_config(app, &cfg);
    rc = link == NULL ? -1
                      : outbox_queue_template(app->db, &cfg, &mail, "verification", vars,
                                              sizeof(vars) / sizeof(vars[0]), NULL, err);
    if (rc == 0)
        log_info("registration", "registration %lld: verification mail queued (%s)", (long long)id,
                 on_file ? "address on file" : "applicant's address");
    free(link);
    return rc;
}

/* Returns the e-mail address on file for person id (caller frees), or NULL. */
static char *person_email(struct app *app, int64_t id)
{
    sqlite3_stmt *stmt = db_stmt(app->db, "SELECT email FROM person WHERE id = ?1");
    char *email = NULL;

    if (stmt == NULL)
        return NULL;
    sqlite3_bind_int64(stmt, 1, id);
    if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0) != NULL)
        email = strdup((const char *)sqlite3_column_text(stmt, 0));
    sqlite3_reset(stmt);
    return email;
}

struct submission {
    json_t *stored;   /* normalised fields */
    json_t *guardian; /* normalised guardian, or NULL */
    json_t *consents; /* decisions */
    int minor;
    int64_t candidate;
    enum registration_duplicate reason;
    const char *ip;
    const char *user_agent;
};

/* Inserts the registration and queues its mail in one transaction. Returns
 * the registration id, or 0 after logging (*err set when the mail failed). */
static int64_t store_submission(struct app *app, const struct submission *sub,
                                const struct registration_settings *settings, char **err)
{
    char token[TOKEN_TEXT_SIZE], now[32], expires[32];
    unsigned char digest[REGISTRATION_DIGEST_SIZE];
    char *data = json_dumps(sub->stored, JSON_COMPACT), *guardian = NULL, *consents = NULL;
    char *on_file = sub->candidate > 0 ? person_email(app, sub->candidate) : NULL;
    const char *to = on_file ? on_file : json_string_value(json_object_get(sub->stored, "email"));
    char *to_name = NULL;
    sqlite3_stmt *stmt;
    int64_t id = 0;

    if (sub->guardian != NULL)
        guardian = json_dumps(sub->guardian, JSON_COMPACT);
    consents = json_dumps(sub->consents, JSON_COMPACT);
    to_name = str_printf("%s %s", json_string_value(json_object_get(sub->stored, "first_name")),
                         json_string_value(json_object_get(sub->stored, "last_name")));
    registration_token_new(token, digest);
    db_now(now, sizeof(now));
    time_text(time(NULL) + (time_t)settings->link_hours * 3600, expires, sizeof(expires));
    if (data == NULL || consents == NULL || to_name == NULL || to == NULL ||
        db_begin(app->db) != SQLITE_OK)
        goto done;

    stmt = db_stmt(app->db,
                   "INSERT INTO registration (last_name, first_name, birth_date, email,"
                   " licence_number, is_minor, data, guardian, consents, candidate_id,"
                   " duplicate_reason, verify_to, token_hash, token_expires_at, ip, user_agent,"
                   " created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,"
                   " ?13, ?14, ?15, ?16, ?17)");
    if (stmt == NULL)
        goto rollback;
    sqlite3_bind_text(stmt, 1, json_string_value(json_object_get(sub->stored, "last_name")), -1,
                      SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, json_string_value(json_object_get(sub->stored, "first_name")), -1,
                      SQLITE_STATIC);
    db_bind_text_or_null(stmt, 3, json_string_value(json_object_get(sub->stored, "birth_date")));
    sqlite3_bind_text(stmt, 4, json_string_value(json_object_get(sub->stored, "email")), -1,
                      SQLITE_STATIC);
    db_bind_text_or_null(stmt, 5,
                         json_string_value(json_object_get(sub->stored, "licence_number")));
    sqlite3_bind_int(stmt, 6, sub->minor);
    sqlite3_bind_text(stmt, 7, data, -1, SQLITE_STATIC);
    db_bind_text_or_null(stmt, 8, guardian);
    sqlite3_bind_text(stmt, 9, consents, -1, SQLITE_STATIC);
    if (sub->candidate > 0) {
        sqlite3_bind_int64(stmt, 10, sub->candidate);
        sqlite3_bind_text(stmt, 11,
                          sub->reason == REGISTRATION_DUPLICATE_LICENCE ? "licence" : "identity",
                          -1, SQLITE_STATIC);
    }
    sqlite3_bind_text(stmt, 12, on_file ? "on_file" : "applicant", -1, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 13, digest, sizeof(digest), SQLITE_STATIC);
    sqlite3_bind_text(stmt, 14, expires, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 15, sub->ip, -1, SQLITE_STATIC);
    db_bind_text_or_null(stmt, 16, sub->user_agent);
    sqlite3_bind_text(stmt, 17, now, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        sqlite3_reset(stmt);
        goto rollback;
    }
    sqlite3_reset(stmt);
    id = sqlite3_last_insert_rowid(db_handle(app->db));

    if (queue_verification(app, id, sub->candidate, to, to_name, token, on_file != NULL,
                           settings->link_hours, err) != 0 ||
        db_commit(app->db) != SQLITE_OK)
        goto rollback;
    mail_service_wake();
    goto done;

rollback:
    log_error("registration", "cannot store a registration: %s",
              *err ? *err : sqlite3_errmsg(db_handle(app->db)));
    db_rollback(app->db);
    id = 0;
done:
    sodium_memzero(token, sizeof(token));
    free(data);
    free(guardian);
    free(consents);
    free(on_file);
    free(to_name);
    return id;
}

/* ---- POST /api/v1/inscription ---------------------------------------------------- */

/* Copies the form's fields into *out after the catalogue checks; messages
 * go to errors. Empty values are left out. */
static void collect_fields(const struct fields_catalogue *fields, struct script_state *state,
                           json_t *in, json_t *errors, json_t *out)
{
    const char *key;
    json_t *value;

    json_object_foreach(in, key, value) {
        char *err = NULL;
        const char *text;

        if (!form_has_key(fields, key)) {
            json_object_set_new(errors, key, json_string("Champ inconnu."));
            continue;
        }
        if (json_is_null(value) || (json_is_string(value) && json_string_length(value) == 0))
            continue;
        if (!json_is_string(value) || json_string_length(value) > FIELDS_MAX_VALUE ||
            strlen(json_string_value(value)) != json_string_length(value)) {
            json_object_set_new(errors, key,
                                json_string("Valeur invalide : texte de 4096 octets au plus "
                                            "attendu."));
            continue;
        }
        text = json_string_value(value);
        if (fields_validate(fields, key, text, state, &err) != 0) {
            json_object_set_new(errors, key, json_string(err ? err : "Valeur invalide."));
            free(err);
            continue;
        }
        json_object_set(out, key, value);
    }
}

/* Adds "required" messages for the rules' fields missing from fields. */
static void check_required(const struct fields_catalogue *catalogue,
                           const struct registration_rules *rules, json_t *fields, json_t *errors)
{
    for (size_t i = 0; i < rules->required_count; i++) {
        const char *key = rules->required[i];
        const struct field_def *f = fields_find(catalogue, key);
        char *message;

        if (json_object_get(fields, key) != NULL || json_object_get(errors, key) != NULL)
            continue;
        message = str_printf("Le champ « %s » est obligatoire.", f ? f->label : key);
        json_object_set_new(errors, key, json_string(message ? message : ""));
        free(message);
    }
}

static void handle_submit(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    struct api_scripts scripts;
    struct registration_settings settings;
    struct registration_rules rules;
    struct submission sub = {0};
    struct dry_run run = {.app = app};
    json_t *body = NULL, *errors = json_object(), *fields = json_object(), *applicant = NULL;
    json_t *dry = NULL;
    const char *honeypot, *licence_in, *birth, *ua;
    char today[16], licence[32] = "", user_agent[FORM_MAX_USER_AGENT + 1] = "";
    char *err = NULL;
    int count, age = -1;
    int64_t id;

    api_scripts_acquire(app, &scripts);
    if ((body = api_read_object(req)) == NULL)
        goto done;
    registration_settings_get(scripts.state, &settings);

    count = registration_attempts_count(app->db, req->remote_addr, settings.window_minutes * 60L);
    if (count < 0) {
        api_respond_db_error(req, app, "registration rate limit");
        goto done;
    }
    if (count >= settings.max_per_ip) {
        char retry[16];

        log_warn("registration", "%s: rate limit reached from %s (%d in %d min)", req->id,
                 req->remote_addr, count, settings.window_minutes);
        snprintf(retry, sizeof(retry), "%d", settings.window_minutes * 60);
        http_set_header(req, "Retry-After", retry);
        api_respond_errorf(req, 429, "rate_limited",
                           "Trop d'inscriptions envoyées depuis cette connexion. Réessayez dans "
                           "%d minutes ou contactez le club.",
                           settings.window_minutes);
        goto done;
    }

    /* A bot that fills the hidden field gets the usual response, and
     * nothing is stored or mailed. The attempt counts toward the rate
     * limit. */
    honeypot = json_string_value(json_object_get(body, FORM_HONEYPOT));
    if (honeypot != NULL && honeypot[0] != '\0') {
        registration_attempt_record(app->db, req->remote_addr);
        log_warn("registration", "%s: hidden field filled from %s, submission ignored", req->id,
                 req->remote_addr);
        http_respond_json(req, 202, json_pack("{s:s}", "message", submitted_message));
        goto done;
    }

    if (!json_is_object(json_object_get(body, "fields"))) {
        api_respond_validation(req, json_pack("{s:s}", "fields", "Formulaire vide."));
        goto done;
    }
    collect_fields(scripts.fields, scripts.state, json_object_get(body, "fields"), errors, fields);

    licence_in = json_string_value(json_object_get(fields, "licence_number"));
    if (licence_in != NULL && norm_licence(licence_in, licence, sizeof(licence)) != NORM_OK) {
        json_object_set_new(errors, "licence_number",
                            json_string("Le numéro de licence doit comporter sept chiffres "
                                        "suivis d'une lettre (par exemple 1234567A). Laissez "
                                        "le champ vide si vous n'avez pas de licence."));
        licence[0] = '\0';
    }

    today_text(today, sizeof(today));
    birth = json_string_value(json_object_get(fields, "birth_date"));
    if (birth != NULL && json_object_get(errors, "birth_date") == NULL) {
        age = registration_age(birth, today);
        if (age < 0)
            json_object_set_new(errors, "birth_date",
                                json_string("La date de naissance ne peut pas être dans le "
                                            "futur."));
        else if (age > 120)
            json_object_set_new(errors, "birth_date",
                                json_string("Vérifiez l'année de naissance."));
    }
    sub.minor = age >= 0 && age < settings.majority_age;

    applicant = applicant_json(fields, age, sub.minor);
    if (registration_rules_get(scripts.state, scripts.fields, applicant, &rules, &err) < 0) {
        /* The defaults apply; staff see the error on the scripts status page. */
        log_error("registration", "%s: %s", req->id, err);
        free(err);
    }
    check_required(scripts.fields, &rules, fields, errors);
    if (sub.minor)
        check_guardian(json_object_get(body, "guardian"), errors, &sub.guardian);
    sub.consents = check_consents(app, json_object_get(body, "consents"),
                                  json_object_get(body, "version_ids"), errors);
    if (json_object_size(errors) > 0) {
        api_respond_validation(req, errors);
        errors = NULL;
        goto done;
    }

    /* Normalise through the staff creation path, then roll it back. The
     * licence number is left out there, because a number already on file
     * is a duplicate to handle here, not a conflict. */
    dry = json_deep_copy(fields);
    json_object_del(dry, "licence_number");
    run.keys = json_array();
    {
        const char *key;
        json_t *value;

        json_object_foreach(dry, key, value) {
            json_array_append_new(run.keys, json_string(key));
        }
    }
    api_scripts_release(&scripts);
    api_rider_create(app, req, form_user(), dry, 0, dry_run_capture, &run);
    if (!run.captured)
        goto done; /* api_rider_create responded (422, 409 or 500) */
    if (licence[0] != '\0')
        json_object_set_new(run.stored, "licence_number", json_string(licence));

    sub.candidate = registration_find_duplicate(app->db, licence, run.match_key, 0, &sub.reason);
    if (sub.candidate < 0) {
        api_respond_db_error(req, app, "registration duplicate lookup");
        goto done;
    }
    sub.stored = run.stored;
    sub.ip = req->remote_addr;
    if ((ua = http_header(req, "user-agent")) != NULL)
        snprintf(user_agent, sizeof(user_agent), "%s", ua);
    sub.user_agent = user_agent[0] ? user_agent : NULL;

    registration_attempt_record(app->db, req->remote_addr);
    id = store_submission(app, &sub, &settings, &err);
    if (id == 0) {
        free(err);
        http_respond_error(req, 500, "internal",
                           "L'inscription n'a pas pu être enregistrée. Réessayez plus tard ou "
                           "contactez le club.");
        goto done;
    }
    if (sub.candidate > 0)
        log_info("registration",
                 "%s: registration %lld stored, possible duplicate of person %lld"
                 " (%s)",
                 req->id, (long long)id, (long long)sub.candidate,
                 sub.reason == REGISTRATION_DUPLICATE_LICENCE ? "licence" : "name and birth date");
    else
        log_info("registration", "%s: registration %lld stored", req->id, (long long)id);
    http_respond_json(req, 202, json_pack("{s:s}", "message", submitted_message));

done:
    api_scripts_release(&scripts);
    json_decref(body);
    json_decref(errors);
    json_decref(fields);
    json_decref(applicant);
    json_decref(dry);
    json_decref(run.keys);
    json_decref(run.stored);
    json_decref(sub.guardian);
    json_decref(sub.consents);
}

/* ---- registration rows ------------------------------------------------------------ */

#define ROW_SQL                                                                                    \
    "SELECT r.id, r.status, r.last_name, r.first_name, r.birth_date, r.email, r.licence_number,"   \
    " r.is_minor, r.created_at, r.verified_at, r.candidate_id, r.duplicate_reason, r.verify_to,"   \
    " r.person_id, r.decided_at, r.refusal_reason, c.last_name, c.first_name, c.birth_date,"       \
    " c.licence_number, c.email IS NOT NULL, r.data, r.guardian, r.consents, r.ip,"                \
    " r.user_agent, r.token_expires_at"                                                            \
    " FROM registration r LEFT JOIN person c ON c.id = r.candidate_id"

static json_t *parsed_column(sqlite3_stmt *stmt, int column)
{
    const char *text = (const char *)sqlite3_column_text(stmt, column);
    json_t *value = text ? json_loads(text, 0, NULL) : NULL;

    return value ? value : json_null();
}

/* One registration as the staff list shows it; full adds the submitted
 * data, the guardian, the consents and the proof of origin. */
static json_t *row_json(sqlite3_stmt *stmt, int full)
{
    json_t *item = json_object(), *duplicate = json_null();

    json_object_set_new(item, "id", json_integer(sqlite3_column_int64(stmt, 0)));
    json_object_set_new(item, "status", api_column_json(stmt, 1));
    json_object_set_new(item, "last_name", api_column_json(stmt, 2));
    json_object_set_new(item, "first_name", api_column_json(stmt, 3));
    json_object_set_new(item, "birth_date", api_column_json(stmt, 4));
    json_object_set_new(item, "email", api_column_json(stmt, 5));
    json_object_set_new(item, "licence_number", api_column_json(stmt, 6));
    json_object_set_new(item, "is_minor", json_boolean(sqlite3_column_int(stmt, 7)));
    json_object_set_new(item, "created_at", api_column_json(stmt, 8));
    json_object_set_new(item, "verified_at", api_column_json(stmt, 9));
    if (sqlite3_column_type(stmt, 10) != SQLITE_NULL) {
        /* mailed_to_file: the verification link went to the address on
         * file, so following it proves the registration is that person's. */
        duplicate = json_pack(
            "{s:I,s:o,s:b,s:b,s:{s:o,s:o,s:o,s:o}}", "person_id",
            (json_int_t)sqlite3_column_int64(stmt, 10), "reason", api_column_json(stmt, 11),
            "mailed_to_file", strcmp((const char *)sqlite3_column_text(stmt, 12), "on_file") == 0,
            "has_email", sqlite3_column_int(stmt, 20), "person", "last_name",
            api_column_json(stmt, 16), "first_name", api_column_json(stmt, 17), "birth_date",
            api_column_json(stmt, 18), "licence_number", api_column_json(stmt, 19));
    }
    json_object_set_new(item, "duplicate", duplicate ? duplicate : json_null());
    json_object_set_new(item, "person_id",
                        sqlite3_column_type(stmt, 13) == SQLITE_NULL
                            ? json_null()
                            : json_integer(sqlite3_column_int64(stmt, 13)));
    json_object_set_new(item, "decided_at", api_column_json(stmt, 14));
    json_object_set_new(item, "refusal_reason", api_column_json(stmt, 15));
    if (full) {
        json_object_set_new(item, "data", parsed_column(stmt, 21));
        json_object_set_new(item, "guardian", parsed_column(stmt, 22));
        json_object_set_new(item, "consents", parsed_column(stmt, 23));
        json_object_set_new(item, "ip", api_column_json(stmt, 24));
        json_object_set_new(item, "user_agent", api_column_json(stmt, 25));
        json_object_set_new(item, "link_expires_at", api_column_json(stmt, 26));
    }
    return item;
}

/* Loads registration id with its full details, or NULL when absent. */
static json_t *registration_load(struct app *app, int64_t id)
{
    sqlite3_stmt *stmt = db_stmt(app->db, ROW_SQL " WHERE r.id = ?1");
    json_t *row = NULL;

    if (stmt == NULL)
        return NULL;
    sqlite3_bind_int64(stmt, 1, id);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        row = row_json(stmt, 1);
    sqlite3_reset(stmt);
    return row;
}

static int64_t row_int(json_t *row, const char *key)
{
    return json_integer_value(json_object_get(row, key));
}

static const char *row_text(json_t *row, const char *key)
{
    return json_string_value(json_object_get(row, key));
}

/* ---- linking a person ------------------------------------------------------------- */

/* Outcome of a confirmation or a staff decision, written together with the
 * person the registration is linked to. */
struct outcome {
    struct app *app;
    struct http_request *req; /* for outcome_write_responding */
    const struct auth_user *actor;
    json_t *row;
    const char *status;  /* new registration status */
    int attach;          /* record consents and the guardian for the person */
    unsigned give_role;  /* role to give (0: none) */
    unsigned drop_role;  /* role to remove (0: none) */
    int only_if_no_role; /* give_role only to a person who has no role yet */
};

/* Writes the outcome for person_id (0: no person yet) inside the caller's
 * transaction. Returns 0 or -1. Usable as api_rider_create's in_tx. */
static int outcome_write(void *arg, int64_t person_id)
{
    struct outcome *o = arg;
    int64_t id = row_int(o->row, "id");
    sqlite3_stmt *stmt;
    char now[32];
    int deciding = strcmp(o->status, "validated") == 0 || strcmp(o->status, "refused") == 0;

    db_now(now, sizeof(now));
    if (person_id > 0) {
        if (o->attach &&
            (registration_record_consents(o->app->db, o->row, person_id) != 0 ||
             registration_attach_guardian(o->app, o->actor, json_object_get(o->row, "guardian"),
                                          person_id) != 0))
            return -1;
        if (o->give_role != 0 &&
            !(o->only_if_no_role && registration_has_roles(o->app->db, person_id)) &&
            registration_set_role(o->app, o->actor, person_id, o->give_role, 1) != 0)
            return -1;
        if (o->drop_role != 0 && o->drop_role != o->give_role &&
            registration_set_role(o->app, o->actor, person_id, o->drop_role, 0) != 0)
            return -1;
    }
    stmt =
        db_stmt(o->app->db,
                "UPDATE registration SET status = ?2, token_hash = NULL,"
                " person_id = coalesce(?3, person_id),"
                " verified_at = CASE WHEN ?5 THEN verified_at ELSE coalesce(verified_at, ?4) END,"
                " decided_at = CASE WHEN ?5 THEN ?4 END,"
                " decided_by = CASE WHEN ?5 THEN ?6 END WHERE id = ?1");
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_text(stmt, 2, o->status, -1, SQLITE_STATIC);
    if (person_id > 0)
        sqlite3_bind_int64(stmt, 3, person_id);
    sqlite3_bind_text(stmt, 4, now, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 5, deciding);
    if (o->actor != NULL && o->actor->person_id != 0)
        sqlite3_bind_int64(stmt, 6, o->actor->person_id);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        sqlite3_reset(stmt);
        return -1;
    }
    sqlite3_reset(stmt);
    api_data_changed();
    return 0;
}

/* outcome_write as api_rider_create's in_tx, which must respond itself
 * when it fails. */
static int outcome_write_responding(void *arg, int64_t person_id)
{
    struct outcome *o = arg;

    if (outcome_write(o, person_id) == 0)
        return 0;
    api_respond_db_error(o->req, o->app, "registration update");
    return -1;
}

/* Looks again for a person the applicant of row seems to be, since people
 * may have been imported after the submission, and records the candidate
 * found. Returns its id, 0 when none, or -1 on a database error. */
static int64_t recheck_duplicate(struct app *app, json_t *row)
{
    json_t *data = json_object_get(row, "data");
    char key[PERSON_KEY_SIZE];
    enum registration_duplicate reason;
    sqlite3_stmt *stmt;
    int64_t candidate;
    int rc;

    person_match_key(row_text(data, "last_name"), row_text(data, "first_name"),
                     row_text(data, "birth_date"), key, sizeof(key));
    candidate =
        registration_find_duplicate(app->db, row_text(data, "licence_number"), key, 0, &reason);
    if (candidate <= 0)
        return candidate;
    stmt = db_stmt(app->db, "UPDATE registration SET candidate_id = ?2, duplicate_reason = ?3"
                            " WHERE id = ?1");
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, row_int(row, "id"));
    sqlite3_bind_int64(stmt, 2, candidate);
    sqlite3_bind_text(stmt, 3, reason == REGISTRATION_DUPLICATE_LICENCE ? "licence" : "identity",
                      -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return -1;
    return candidate;
}

/* Contact details that a registration attached to a record already on
 * file copies into that record's empty fields: the confirmed address and
 * what is needed to reach the person. The postal address is one group, so
 * that a record never mixes two addresses. Names, birth date and licence
 * number are those the record was matched on, so they stay as stored. */
static const char *const email_group[] = {"email", NULL};
static const char *const phone_group[] = {"phone", NULL};
static const char *const mobile_group[] = {"mobile", NULL};
static const char *const postal_group[] = {"address", "address2", "postcode", "city", NULL};
static const char *const *const contact_groups[] = {
    email_group, phone_group, mobile_group, postal_group, NULL,
};

/* Runs outcome_write for person_id, a record on file, in the transaction
 * that also fills its empty contact details from the registration.
 * Returns 0, or -1 after responding. */
static int outcome_commit_filling(struct http_request *req, struct outcome *o, int64_t person_id)
{
    size_t filled;

    o->req = req;
    if (api_rider_fill_empty(o->app, req, o->actor, person_id, json_object_get(o->row, "data"),
                             contact_groups, outcome_write_responding, o, &filled) != 0)
        return -1;
    log_info("registration", "%s: registration %lld: %zu empty fields of person %lld filled",
             req->id, (long long)row_int(o->row, "id"), filled, (long long)person_id);
    return 0;
}

/* Runs outcome_write for person_id in its own transaction. Returns 0, or
 * -1 after responding 500. */
static int outcome_commit(struct http_request *req, struct outcome *o, int64_t person_id)
{
    if (db_begin(o->app->db) != SQLITE_OK) {
        api_respond_db_error(req, o->app, "begin");
        return -1;
    }
    if (outcome_write(o, person_id) != 0 || db_commit(o->app->db) != SQLITE_OK) {
        api_respond_db_error(req, o->app, "registration update");
        db_rollback(o->app->db);
        return -1;
    }
    return 0;
}

/* Rules for the stored applicant of row. */
static void row_rules(struct app *app, json_t *row, struct registration_rules *rules)
{
    struct api_scripts scripts;
    struct registration_settings settings;
    json_t *applicant;
    char today[16], *err = NULL;
    int age;

    api_scripts_acquire(app, &scripts);
    registration_settings_get(scripts.state, &settings);
    today_text(today, sizeof(today));
    age = registration_age(row_text(row, "birth_date"), today);
    applicant = applicant_json(json_object_get(row, "data"), age,
                               json_is_true(json_object_get(row, "is_minor")));
    if (registration_rules_get(scripts.state, scripts.fields, applicant, rules, &err) < 0) {
        log_error("registration", "registration %lld: %s", (long long)row_int(row, "id"), err);
        free(err);
    }
    json_decref(applicant);
    api_scripts_release(&scripts);
}

/* Sends an invitation mail (choose a password) for person_id unless
 * someone with the same address can already log in, so that the account
 * opened by a registration can be used. Returns 1 when a mail was queued,
 * else 0. A failure is logged and does not undo the registration. */
static int offer_login(struct app *app, struct http_request *req, int64_t person_id)
{
    sqlite3_stmt *stmt = db_stmt(app->db, "SELECT p.email IS NOT NULL AND NOT EXISTS"
                                          " (SELECT 1 FROM person o WHERE o.email = p.email"
                                          " AND o.password_hash IS NOT NULL)"
                                          " FROM person p WHERE p.id = ?1");
    struct recovery_request request = {
        .person_ids = &person_id, .count = 1, .token_kind = "invitation"};
    json_t *result = NULL;
    char *err = NULL;
    int wanted = 0, queued = 0;

    if (stmt == NULL)
        return 0;
    sqlite3_bind_int64(stmt, 1, person_id);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        wanted = sqlite3_column_int(stmt, 0);
    sqlite3_reset(stmt);
    if (!wanted)
        return 0;
    if (recovery_send(app, &request, &result, &err) != 0) {
        log_error("registration", "%s: invitation mail for person %lld not queued: %s", req->id,
                  (long long)person_id, err ? err : "");
        free(err);
        return 0;
    }
    queued = json_integer_value(json_object_get(result, "queued")) > 0;
    json_decref(result);
    return queued;
}

/* ---- POST /api/v1/inscription/confirmation ----------------------------------------- */

static void handle_confirm(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    json_t *body = api_read_object(req), *row = NULL;
    unsigned char digest[REGISTRATION_DIGEST_SIZE];
    struct registration_rules rules;
    struct outcome o = {.app = app, .actor = form_user(), .status = "to_validate"};
    sqlite3_stmt *stmt;
    int64_t id = 0, candidate;
    const char *message;
    char now[32];

    if (body == NULL)
        return;
    db_now(now, sizeof(now));
    if (registration_token_digest(json_string_value(json_object_get(body, "token")), digest) == 0 &&
        (stmt = db_stmt(app->db, "SELECT id FROM registration WHERE token_hash = ?1"
                                 " AND status = 'email_pending' AND token_expires_at > ?2")) !=
            NULL) {
        sqlite3_bind_blob(stmt, 1, digest, sizeof(digest), SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, now, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) == SQLITE_ROW)
            id = sqlite3_column_int64(stmt, 0);
        sqlite3_reset(stmt);
    }
    if (id == 0 || (row = registration_load(app, id)) == NULL) {
        http_respond_error(req, 404, "invalid_link",
                           "Ce lien de confirmation n'est plus valable : il a déjà servi ou il a "
                           "expiré. Si votre inscription n'est pas confirmée, remplissez de "
                           "nouveau le formulaire.");
        goto done;
    }
    o.row = row;
    row_rules(app, row, &rules);
    candidate = json_is_object(json_object_get(row, "duplicate"))
                    ? row_int(json_object_get(row, "duplicate"), "person_id")
                    : 0;

    if (candidate == 0 && (candidate = recheck_duplicate(app, row)) < 0) {
        api_respond_db_error(req, app, "registration duplicate lookup");
        goto done;
    }
    if (candidate > 0 &&
        json_is_true(json_object_get(json_object_get(row, "duplicate"), "mailed_to_file"))) {
        /* The link went to the address on file: the applicant owns the
         * record. The person keeps their roles; one without any gets the
         * sign-up role. */
        o.attach = 1;
        o.give_role = rules.role;
        o.only_if_no_role = 1;
        if (outcome_commit(req, &o, candidate) != 0)
            goto done;
        log_info("registration",
                 "%s: registration %lld confirmed from the address on file of "
                 "person %lld",
                 req->id, (long long)id, (long long)candidate);
        message = offer_login(app, req, candidate)
                      ? "Merci, c'est confirmé : votre demande est rattachée à votre fiche au "
                        "club. Un second e-mail vous permet de choisir votre mot de passe. "
                        "L'équipe du club va examiner votre demande."
                      : "Merci, c'est confirmé : votre demande est rattachée à votre fiche au "
                        "club. L'équipe du club va l'examiner.";
    } else if (candidate > 0 || rules.role == 0) {
        /* A possible duplicate without an address on file, or a club that
         * creates people only on validation: staff decide. */
        if (outcome_commit(req, &o, 0) != 0)
            goto done;
        log_info("registration", "%s: registration %lld confirmed, waiting for staff%s", req->id,
                 (long long)id, candidate > 0 ? " (possible duplicate)" : "");
        message = "Merci, votre adresse e-mail est confirmée. L'équipe du club va examiner votre "
                  "inscription.";
    } else {
        int64_t person;

        o.attach = 1;
        o.req = req;
        person = api_rider_create(app, req, form_user(), json_object_get(row, "data"), rules.role,
                                  outcome_write_responding, &o);
        if (person == 0)
            goto done; /* responded */
        log_info("registration", "%s: registration %lld confirmed, person %lld created", req->id,
                 (long long)id, (long long)person);
        message = offer_login(app, req, person)
                      ? "Merci, votre adresse e-mail est confirmée et votre compte est ouvert. "
                        "Un second e-mail vous permet de choisir votre mot de passe. L'équipe "
                        "du club va examiner votre inscription."
                      : "Merci, votre adresse e-mail est confirmée et votre compte est ouvert. "
                        "L'équipe du club va examiner votre inscription.";
    }
    http_respond_json(req, 200,
                      json_pack("{s:s,s:s}", "status", "to_validate", "message", message));

done:
    json_decref(row);
    json_decref(body);
}

/* ---- staff: GET /api/v1/inscriptions --------------------------------------------- */

static int status_known(const char *status)
{
    for (size_t i = 0; i < STATUS_COUNT; i++) {
        if (strcmp(status, statuses[i]) == 0)
            return 1;
    }
    return 0;
}

static void handle_list(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_require(app, req, "registrations.manage", 0);
    char status[32] = "";
    sqlite3_stmt *stmt;
    json_t *items, *counts;

    if (user == NULL)
        return;
    http_query_param(req, "status", status, sizeof(status));
    if (status[0] != '\0' && strcmp(status, "all") != 0 && !status_known(status)) {
        api_respond_validation(req, json_pack("{s:s}", "status",
                                              "Statut inconnu : email_pending, to_validate, "
                                              "validated, refused ou all."));
        return;
    }
    stmt = db_stmt(app->db, ROW_SQL " WHERE (?1 IS NULL OR r.status = ?1) ORDER BY r.id DESC"
                                    " LIMIT ?2");
    if (stmt == NULL) {
        api_respond_db_error(req, app, "registration list");
        return;
    }
    db_bind_text_or_null(stmt, 1, status[0] != '\0' && strcmp(status, "all") != 0 ? status : NULL);
    sqlite3_bind_int(stmt, 2, LIST_MAX);
    items = json_array();
    while (sqlite3_step(stmt) == SQLITE_ROW)
        json_array_append_new(items, row_json(stmt, 0));
    sqlite3_reset(stmt);

    counts = json_object();
    for (size_t i = 0; i < STATUS_COUNT; i++)
        json_object_set_new(counts, statuses[i], json_integer(0));
    stmt = db_stmt(app->db, "SELECT status, count(*) FROM registration GROUP BY status");
    if (stmt != NULL) {
        while (sqlite3_step(stmt) == SQLITE_ROW)
            json_object_set_new(counts, (const char *)sqlite3_column_text(stmt, 0),
                                json_integer(sqlite3_column_int64(stmt, 1)));
        sqlite3_reset(stmt);
    }
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200, json_pack("{s:o,s:o}", "counts", counts, "items", items));
}

static void handle_get(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    int64_t id = api_param_id(req, "id");
    json_t *row;

    if (id == 0 || auth_require(app, req, "registrations.manage", 0) == NULL)
        return;
    row = registration_load(app, id);
    if (row == NULL) {
        http_respond_error(req, 404, "not_found", "Inscription introuvable.");
        return;
    }
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200, row);
}

/* Loads registration id for a decision. Returns it, or NULL after
 * responding 404, or 409 when it is not waiting for staff. */
static json_t *load_for_decision(struct app *app, struct http_request *req, int64_t id,
                                 int allow_pending)
{
    json_t *row = registration_load(app, id);
    const char *status;

    if (row == NULL) {
        http_respond_error(req, 404, "not_found", "Inscription introuvable.");
        return NULL;
    }
    status = row_text(row, "status");
    if (strcmp(status, "to_validate") == 0 ||
        (allow_pending && strcmp(status, "email_pending") == 0))
        return row;
    http_respond_error(req, 409, "conflict",
                       strcmp(status, "email_pending") == 0
                           ? "L'adresse e-mail de cette inscription n'est pas encore confirmée : "
                             "elle ne peut pas encore être validée."
                           : "Cette inscription a déjà été traitée.");
    json_decref(row);
    return NULL;
}

/* ---- staff: POST /api/v1/inscriptions/:id/validation ---------------------------- */

static void handle_validate(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    int64_t id = api_param_id(req, "id"), person, candidate = 0;
    const struct auth_user *user;
    json_t *body = NULL, *row = NULL;
    struct registration_rules rules;
    struct outcome o = {.app = app, .status = "validated", .req = req};
    const char *action;
    int attached_now;

    if (id == 0 || (user = auth_require(app, req, "registrations.manage", 0)) == NULL)
        return;
    if ((body = api_read_object(req)) == NULL)
        return;
    if ((row = load_for_decision(app, req, id, 0)) == NULL)
        goto done;
    o.actor = user;
    o.row = row;
    row_rules(app, row, &rules);
    if (!auth_allowed_role(app, user, "rider.roles.update", 0,
                           api_role_name(rules.validated_role))) {
        api_respond_errorf(req, 403, "forbidden",
                           "Vous n'avez pas le droit d'attribuer le rôle « %s ».",
                           api_role_name(rules.validated_role));
        goto done;
    }
    if (json_is_object(json_object_get(row, "duplicate")))
        candidate = row_int(json_object_get(row, "duplicate"), "person_id");
    person = row_int(row, "person_id");
    action = json_string_value(json_object_get(body, "action"));
    if (action == NULL)
        action = person > 0 || candidate > 0 ? "link" : "create";
    if (strcmp(action, "link") != 0 && strcmp(action, "create") != 0) {
        api_respond_validation(req, json_pack("{s:s}", "action",
                                              "Action inconnue : « link » (rattacher à la fiche "
                                              "existante) ou « create » (créer une fiche)."));
        goto done;
    }
    o.give_role = rules.validated_role;
    o.drop_role = rules.role;

    attached_now = person == 0;
    if (person > 0) {
        /* Already linked on confirmation: the role changes. A person who
         * was on file before keeps every role they had, and gets the
         * form's contact details in their empty fields now that staff
         * accept the registration. */
        if (person == candidate) {
            o.drop_role = 0;
            if (outcome_commit_filling(req, &o, person) != 0)
                goto done;
        } else if (outcome_commit(req, &o, person) != 0) {
            goto done;
        }
    } else if (strcmp(action, "link") == 0) {
        if (candidate == 0) {
            api_respond_validation(req, json_pack("{s:s}", "action",
                                                  "Aucune fiche existante à rattacher : créez "
                                                  "une fiche."));
            goto done;
        }
        o.attach = 1;
        o.drop_role = 0; /* the existing person keeps the roles they had */
        if (outcome_commit_filling(req, &o, candidate) != 0)
            goto done;
        person = candidate;
    } else {
        o.attach = 1;
        o.drop_role = 0;
        person = api_rider_create(app, req, user, json_object_get(row, "data"),
                                  rules.validated_role, outcome_write_responding, &o);
        if (person == 0)
            goto done; /* responded */
    }
    if (attached_now)
        offer_login(app, req, person);
    log_info("registration", "%s: registration %lld validated by %lld: person %lld (%s)", req->id,
             (long long)id, (long long)user->person_id, (long long)person, action);
    json_decref(row);
    row = registration_load(app, id);
    http_respond_json(req, 200, row ? json_incref(row) : json_pack("{s:I}", "id", (json_int_t)id));

done:
    json_decref(row);
    json_decref(body);
}

/* ---- staff: POST /api/v1/inscriptions/:id/refus -------------------------------------- */

#define REFUSAL_MAX 1000 /* bytes of the reason */

static void handle_refuse(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    int64_t id = api_param_id(req, "id"), person, candidate = 0;
    const struct auth_user *user;
    json_t *body = NULL, *row = NULL;
    const char *reason;
    sqlite3_stmt *stmt;
    char now[32];

    if (id == 0 || (user = auth_require(app, req, "registrations.manage", 0)) == NULL)
        return;
    if ((body = api_read_object(req)) == NULL)
        return;
    reason = json_string_value(json_object_get(body, "reason"));
    if (reason != NULL && strlen(reason) > REFUSAL_MAX) {
        api_respond_validation(
            req, json_pack("{s:s}", "reason", "Motif trop long (1000 caractères au plus)."));
        goto done;
    }
    if ((row = load_for_decision(app, req, id, 1)) == NULL)
        goto done;
    person = row_int(row, "person_id");
    if (json_is_object(json_object_get(row, "duplicate")))
        candidate = row_int(json_object_get(row, "duplicate"), "person_id");

    db_now(now, sizeof(now));
    if (db_begin(app->db) != SQLITE_OK) {
        api_respond_db_error(req, app, "begin");
        goto done;
    }
    /* A person created on confirmation is deleted with the refusal. A
     * person who was already on file is left unchanged. */
    if (person > 0 && person != candidate) {
        stmt = db_stmt(app->db, "DELETE FROM person WHERE id = ?1");
        if (stmt == NULL ||
            api_audit(app, user, person, "delete", NULL, "inscription refusée", NULL) != 0)
            goto rollback;
        sqlite3_bind_int64(stmt, 1, person);
        if (sqlite3_step(stmt) != SQLITE_DONE) {
            sqlite3_reset(stmt);
            goto rollback;
        }
        sqlite3_reset(stmt);
    }
    stmt = db_stmt(app->db, "UPDATE registration SET status = 'refused', token_hash = NULL,"
                            " decided_at = ?2, decided_by = ?3, refusal_reason = ?4,"
                            " person_id = CASE WHEN person_id = candidate_id THEN person_id END"
                            " WHERE id = ?1");
    if (stmt == NULL)
        goto rollback;
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_text(stmt, 2, now, -1, SQLITE_STATIC);
    if (user->person_id != 0)
        sqlite3_bind_int64(stmt, 3, user->person_id);
    db_bind_text_or_null(stmt, 4, reason != NULL && reason[0] != '\0' ? reason : NULL);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        sqlite3_reset(stmt);
        goto rollback;
    }
    sqlite3_reset(stmt);
    if (db_commit(app->db) != SQLITE_OK)
        goto rollback;
    api_data_changed();
    log_info("registration", "%s: registration %lld refused by %lld", req->id, (long long)id,
             (long long)user->person_id);
    json_decref(row);
    row = registration_load(app, id);
    http_respond_json(req, 200, row ? json_incref(row) : json_pack("{s:I}", "id", (json_int_t)id));
    goto done;

rollback:
    api_respond_db_error(req, app, "registration refusal");
    db_rollback(app->db);
done:
    json_decref(row);
    json_decref(body);
}

void api_registration_register_routes(struct app *app)
{
    router_add(app->router, "GET", "/api/v1/inscription/formulaire", handle_form, app, 0);
    router_add(app->router, "POST", "/api/v1/inscription", handle_submit, app, 0);
    router_add(app->router, "POST", "/api/v1/inscription/confirmation", handle_confirm, app, 0);
    router_add(app->router, "GET", "/api/v1/inscriptions", handle_list, app, 0);
    router_add(app->router, "GET", "/api/v1/inscriptions/:id", handle_get, app, 0);
    router_add(app->router, "POST", "/api/v1/inscriptions/:id/validation", handle_validate, app, 0);
    router_add(app->router, "POST", "/api/v1/inscriptions/:id/refus", handle_refuse, app, 0);
}
