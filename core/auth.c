/*
 * Accounts and request authentication: login with e-mail and password,
 * browser sessions (cookie + CSRF token), API tokens for integrators, the
 * login rate limit, password change, and the permission check that calls
 * scripts/roles.lua. The rider routes that use these checks live in
 * core/api_*.c.
 *
 * Secrets: the session cookie and API tokens are 256 random bits; only
 * their BLAKE2b-256 digest (hex) is stored. Password hashes are Argon2id
 * (core/password.c) and are verified on the libuv thread pool so that a
 * login does not stall the loop.
 */
#include "auth.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "log.h"
#include "normalize.h"
#include "password.h"
#include "script.h"
#include "token.h"
#include "util.h"

#define SESSION_COOKIE "licol_session"
#define SESSION_IDLE_SECONDS (12L * 3600)
#define SESSION_MAX_SECONDS (7L * 24 * 3600)
#define SESSION_TOUCH_SECONDS 60 /* last_seen_at is written at most once a minute */
#define LOGIN_WINDOW_SECONDS (15 * 60)
#define LOGIN_MAX_FAILURES_EMAIL 5
#define LOGIN_MAX_FAILURES_IP 20 /* a club's office may share one address */
#define SECRET_BYTES 32
#define SECRET_TEXT_SIZE 48   /* base64url of 32 bytes is 43 characters */
#define DIGEST_HEX_SIZE 65
#define API_TOKEN_PREFIX "lct_"
#define TOKEN_NAME_MAX 100

static const char *const role_names[] = {"gerant",    "employe",      "client",
                                         "visiteur",  "comptable",    "proprietaire"};
#define ROLE_COUNT (sizeof(role_names) / sizeof(role_names[0]))

/* The action vocabulary of roles.lua, reported in the session's
 * permission map. */
static const char *const actions[] = {
    "riders.list",  "rider.read",     "rider.create",  "rider.update",        "rider.delete",
    "rider.roles.update", "family.update", "import.run", "import.read",    "import.undo",
    "settings.read", "settings.update", "scripts.status", "finance.read", "finance.update",
    "mail.send",    "outbox.read",    "consent.manage", "registrations.manage", "horses.read",
    "tokens.manage",
};
#define ACTION_COUNT (sizeof(actions) / sizeof(actions[0]))

/* Actions that concern one person, also reported for the user's own
 * record (permissions_self) so a rider's own page can show its buttons. */
static const char *const self_actions[] = {"rider.read", "rider.update", "family.update",
                                           "consent.manage"};

/* ---- shared API helpers (declared in api.h) ------------------------------ */

const char *api_role_name(unsigned bit)
{
    for (size_t i = 0; i < ROLE_COUNT; i++) {
        if (bit == (1u << i))
            return role_names[i];
    }
    return NULL;
}

json_t *api_roles_json(unsigned roles)
{
    json_t *out = json_array();

    for (size_t i = 0; i < ROLE_COUNT; i++) {
        if (roles & (1u << i))
            json_array_append_new(out, json_string(role_names[i]));
    }
    return out;
}

unsigned api_roles_parse(const char *list)
{
    unsigned roles = 0;

    while (list != NULL && *list) {
        const char *end = strchr(list, ',');
        size_t len = end ? (size_t)(end - list) : strlen(list);

        for (size_t i = 0; i < ROLE_COUNT; i++) {
            if (strlen(role_names[i]) == len && strncmp(list, role_names[i], len) == 0)
                roles |= 1u << i;
        }
        list = end ? end + 1 : NULL;
    }
    return roles;
}

json_t *api_column_json(void *stmt_ptr, int column)
{
    sqlite3_stmt *stmt = stmt_ptr;

    if (sqlite3_column_type(stmt, column) == SQLITE_NULL)
        return json_null();
    return json_string((const char *)sqlite3_column_text(stmt, column));
}

json_t *api_read_object(struct http_request *req)
{
    json_error_t error;
    json_t *body;

    if (req->body.len == 0)
        return json_object();
    body = json_loadb(req->body.data, req->body.len, JSON_REJECT_DUPLICATES, &error);
    if (body == NULL || !json_is_object(body)) {
        json_decref(body);
        http_respond_error(req, 400, "bad_request",
                           "Le corps de la requête doit être un objet JSON valide.");
        return NULL;
    }
    return body;
}

void api_respond_validation(struct http_request *req, json_t *fields)
{
    http_respond_json(req, 422,
                      json_pack("{s:{s:s,s:s,s:o}}", "error", "code", "validation", "message",
                                "Certaines valeurs sont invalides : corrigez les champs signalés.",
                                "fields", fields));
}

void api_respond_errorf(struct http_request *req, int status, const char *code, const char *fmt,
                        ...)
{
    va_list ap;
    char *message;

    va_start(ap, fmt);
    message = str_vprintf(fmt, ap);
    va_end(ap);
    http_respond_error(req, status, code, message ? message : "Erreur.");
    free(message);
}

int api_db_busy(struct app *app)
{
    int code = sqlite3_errcode(db_handle(app->db)) & 0xff;

    return code == SQLITE_BUSY || code == SQLITE_LOCKED;
}

void api_respond_db_error(struct http_request *req, struct app *app, const char *what)
{
    int code = sqlite3_errcode(db_handle(app->db)) & 0xff;

    if (code == SQLITE_BUSY || code == SQLITE_LOCKED) {
        log_warn("api", "%s: %s: database busy%s", req->id, what,
                 db_long_write_in_progress() ? " (an import is writing)" : "");
        http_respond_error(req, 503, "busy",
                           db_long_write_in_progress()
                               ? "Un import de fichier (ou son annulation) est en cours "
                                 "d'écriture : rien n'a été enregistré. Réessayez dans quelques "
                                 "minutes."
                               : "La base de données est occupée par un autre traitement : rien "
                                 "n'a été enregistré. Réessayez dans un instant.");
        return;
    }
    log_error("api", "%s: %s: %s", req->id, what, sqlite3_errmsg(db_handle(app->db)));
    http_respond_error(req, 500, "internal",
                       "Erreur interne de la base de données ; réessayez plus tard.");
}

int api_query_int(struct http_request *req, const char *name, int fallback, int min, int max)
{
    char text[16];
    char *end;
    long value;

    if (!http_query_param(req, name, text, sizeof(text)) || text[0] == '\0')
        return fallback;
    value = strtol(text, &end, 10);
    if (*end != '\0' || value < min)
        return -1;
    return value > max ? max : (int)value;
}

int64_t api_param_id(struct http_request *req, const char *name)
{
    const char *text = http_param(req, name);
    char *end = NULL;
    long long id = text ? strtoll(text, &end, 10) : 0;

    if (text == NULL || end == text || *end != '\0' || id <= 0) {
        http_respond_error(req, 404, "not_found", "Ressource introuvable.");
        return 0;
    }
    return id;
}

static struct fields_catalogue *core_catalogue;

void api_scripts_acquire(struct app *app, struct api_scripts *out)
{
    memset(out, 0, sizeof(*out));
    if (app->scripts != NULL) {
        out->version = script_engine_acquire(app->scripts);
        out->fields = script_version_fields(out->version);
        out->state = script_version_state(out->version);
        return;
    }
    if (core_catalogue == NULL)
        core_catalogue = fields_catalogue_new();
    out->fields = core_catalogue;
}

void api_scripts_release(struct api_scripts *scripts)
{
    if (scripts->version != NULL)
        script_version_release(scripts->version);
    memset(scripts, 0, sizeof(*scripts));
}

static uint64_t local_generation;

void api_data_changed(void)
{
    local_generation++;
}

uint64_t api_data_generation(struct app *app)
{
    static uint64_t external, external_tick = UINT64_MAX;
    uint64_t tick = uv_now(app->loop);

    /* Reading data_version opens a read transaction, which costs file
     * lock system calls. It is read once per loop time tick (1 ms), so an
     * external commit shows at the latest one tick later. */
    if (tick != external_tick) {
        sqlite3_stmt *stmt = db_stmt(app->db, "PRAGMA data_version");

        if (stmt != NULL && sqlite3_step(stmt) == SQLITE_ROW)
            external = (uint64_t)sqlite3_column_int64(stmt, 0);
        if (stmt != NULL)
            sqlite3_reset(stmt);
        external_tick = tick;
    }
    /* data_version grows when another connection commits, and
     * total_changes when this connection (any module on the loop thread)
     * writes a row. All three terms only grow, so their sum changes
     * whenever one of them does. */
    return external + (uint64_t)sqlite3_total_changes64(db_handle(app->db)) + local_generation;
}

/* ---- secrets and time ----------------------------------------------------- */

static void secret_new(char out[SECRET_TEXT_SIZE])
{
    unsigned char bytes[SECRET_BYTES];

    randombytes_buf(bytes, sizeof(bytes));
    sodium_bin2base64(out, SECRET_TEXT_SIZE, bytes, sizeof(bytes),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(bytes, sizeof(bytes));
}

static void secret_digest(const char *secret, char out[DIGEST_HEX_SIZE])
{
    unsigned char digest[32];

    crypto_generichash(digest, sizeof(digest), (const unsigned char *)secret, strlen(secret),
                       NULL, 0);
    sodium_bin2hex(out, DIGEST_HEX_SIZE, digest, sizeof(digest));
}

static void iso_time(time_t t, char *out, size_t size)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static time_t parse_iso(const char *text)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (text == NULL || strptime(text, "%Y-%m-%dT%H:%M:%SZ", &tm) == NULL)
        return 0;
    return timegm(&tm);
}

/* ---- permissions ---------------------------------------------------------- */

/* Returns 1 when subject may reach target as family: the subject is the
 * related person of a family link of the target (target = child, subject
 * = parent, guardian or other relative listed on the child's sheet).
 * The link is directional on purpose: a child's account never reaches its
 * parent's record, so a person who declares someone as a minor's guardian
 * (online registration) gains no access to that someone's record. */
static int is_family(struct app *app, int64_t subject, int64_t target)
{
    sqlite3_stmt *stmt;
    int found = 0;

    if (subject == 0 || target == 0 || subject == target)
        return 0;
    stmt = db_stmt(app->db, "SELECT 1 FROM family_link WHERE person_id = ?2 AND related_id = ?1"
                            " LIMIT 1");
    if (stmt == NULL)
        return 0;
    sqlite3_bind_int64(stmt, 1, subject);
    sqlite3_bind_int64(stmt, 2, target);
    found = sqlite3_step(stmt) == SQLITE_ROW;
    sqlite3_reset(stmt);
    return found;
}

/* Returns 1 when person_id has the manager (gérant) role. */
static int is_manager(struct app *app, int64_t person_id)
{
    sqlite3_stmt *stmt;
    int found;

    if (person_id == 0)
        return 0;
    stmt = db_stmt(app->db, "SELECT 1 FROM person_role WHERE person_id = ?1 AND role = 'gerant'");
    if (stmt == NULL)
        return 1; /* unknown: treat the target as protected */
    sqlite3_bind_int64(stmt, 1, person_id);
    found = sqlite3_step(stmt) == SQLITE_ROW;
    sqlite3_reset(stmt);
    return found;
}

/* Actions that change a person's record, its roles, its family or its
 * login: on a manager's record, only a manager may perform them. */
static int changes_record(const char *action)
{
    return !strcmp(action, "rider.update") || !strcmp(action, "rider.delete") ||
           !strcmp(action, "rider.roles.update") || !strcmp(action, "family.update") ||
           !strcmp(action, "mail.send");
}

int auth_allowed_role(struct app *app, const struct auth_user *user, const char *action,
                      int64_t target_person_id, const char *role)
{
    struct script_subject subject = {user->person_id, user->roles};
    struct script_target target = {0};
    struct script_version *version;
    int allowed;

    target.person_id = target_person_id;
    target.is_self = user->person_id != 0 && target_person_id == user->person_id;
    target.is_family = is_family(app, user->person_id, target_person_id);
    target.role = role;

    /* Enforced in C whatever roles.lua returns: otherwise an employee could
     * change a manager's e-mail address, ask for a password reset and log
     * in as the manager. */
    if (target_person_id != 0 && !target.is_self && changes_record(action) &&
        !(user->roles & AUTH_ROLE_GERANT) && is_manager(app, target_person_id))
        return 0;

    if (app->scripts == NULL) {
        /* `licol serve` never runs without scripts (app_subsystems_start
         * fails); without an engine nothing is allowed. */
        return 0;
    }
    version = script_engine_acquire(app->scripts);
    allowed = script_can(script_version_state(version), &subject, action,
                         target_person_id != 0 || role != NULL ? &target : NULL, NULL);
    script_version_release(version);
    return allowed;
}

int auth_allowed(struct app *app, const struct auth_user *user, const char *action,
                 int64_t target_person_id)
{
    return auth_allowed_role(app, user, action, target_person_id, NULL);
}

/* ---- request authentication ---------------------------------------------- */

static int state_changing(const struct http_request *req)
{
    return strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0 &&
           strcmp(req->method, "OPTIONS") != 0;
}

/* Sessions recently read from the database, so that a busy page does not
 * query the session table on every request. An entry is used only while
 * the data generation it was read at is current: every write through the
 * API (logout, password change, role change) and every commit by another
 * connection starts a new generation. */
#define SESSION_CACHE_SLOTS 256

struct session_cache_entry {
    char digest[DIGEST_HEX_SIZE];
    struct auth_user user;
    time_t last_seen;
    time_t expires;
    uint64_t generation;
};

static struct session_cache_entry session_cache[SESSION_CACHE_SLOTS];

/* The slot of a digest: its first two hex digits (256 slots). */
static struct session_cache_entry *session_slot(const char *digest)
{
    char prefix[3] = {digest[0], digest[1], '\0'};

    return &session_cache[strtoul(prefix, NULL, 16) % SESSION_CACHE_SLOTS];
}

static void delete_session(struct app *app, int64_t session_id)
{
    sqlite3_stmt *stmt = db_stmt(app->db, "DELETE FROM session WHERE id = ?1");

    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, session_id);
        sqlite3_step(stmt);
        sqlite3_reset(stmt);
    }
    api_data_changed();
}

/* Loads the user of a session cookie, or NULL. Expired sessions are
 * deleted. */
static struct auth_user *user_from_session(struct app *app, const char *cookie)
{
    char digest[DIGEST_HEX_SIZE], now_text[32];
    sqlite3_stmt *stmt;
    struct auth_user *user = NULL;
    struct session_cache_entry *slot;
    time_t now = time(NULL), last_seen, expires;
    uint64_t generation = api_data_generation(app);
    int64_t session_id = 0;

    secret_digest(cookie, digest);
    slot = session_slot(digest);
    if (slot->generation == generation && strcmp(slot->digest, digest) == 0 &&
        now - slot->last_seen < SESSION_TOUCH_SECONDS && now < slot->expires) {
        user = malloc(sizeof(*user));
        if (user != NULL)
            *user = slot->user;
        return user;
    }

    stmt = db_stmt(app->db,
                   "SELECT s.id, s.person_id, s.csrf_token, s.last_seen_at, s.expires_at,"
                   " p.email, p.must_change_password,"
                   " (SELECT group_concat(role) FROM person_role r WHERE r.person_id = p.id)"
                   " FROM session s JOIN person p ON p.id = s.person_id WHERE s.token_hash = ?1");
    if (stmt == NULL)
        return NULL;
    sqlite3_bind_text(stmt, 1, digest, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_ROW) {
        sqlite3_reset(stmt);
        return NULL;
    }
    session_id = sqlite3_column_int64(stmt, 0);
    last_seen = parse_iso((const char *)sqlite3_column_text(stmt, 3));
    expires = parse_iso((const char *)sqlite3_column_text(stmt, 4));
    if (now - last_seen > SESSION_IDLE_SECONDS || now >= expires) {
        sqlite3_reset(stmt);
        delete_session(app, session_id);
        return NULL;
    }

    user = calloc(1, sizeof(*user));
    if (user != NULL) {
        user->session_id = session_id;
        user->person_id = sqlite3_column_int64(stmt, 1);
        snprintf(user->csrf_token, sizeof(user->csrf_token), "%s",
                 (const char *)sqlite3_column_text(stmt, 2));
        if (sqlite3_column_type(stmt, 5) != SQLITE_NULL)
            snprintf(user->email, sizeof(user->email), "%s",
                     (const char *)sqlite3_column_text(stmt, 5));
        user->must_change_password = sqlite3_column_int(stmt, 6);
        user->roles = api_roles_parse((const char *)sqlite3_column_text(stmt, 7));
    }
    sqlite3_reset(stmt);

    if (user != NULL && now - last_seen >= SESSION_TOUCH_SECONDS) {
        iso_time(now, now_text, sizeof(now_text));
        stmt = db_stmt(app->db, "UPDATE session SET last_seen_at = ?2 WHERE id = ?1");
        if (stmt != NULL) {
            /* Best effort: while an import has the write lock, the touch is
             * skipped so that the request does not wait out the busy
             * timeout. The next request a minute later tries again. */
            db_set_no_wait(app->db, 1);
            sqlite3_bind_int64(stmt, 1, session_id);
            sqlite3_bind_text(stmt, 2, now_text, -1, SQLITE_STATIC);
            if (sqlite3_step(stmt) != SQLITE_DONE)
                log_debug("auth", "session %lld: last_seen_at not updated (database busy)",
                          (long long)session_id);
            sqlite3_reset(stmt);
            db_set_no_wait(app->db, 0);
        }
        last_seen = now;
    }
    if (user != NULL) {
        memcpy(slot->digest, digest, sizeof(digest));
        slot->user = *user;
        slot->last_seen = last_seen;
        slot->expires = expires;
        slot->generation = generation;
    }
    return user;
}

static struct auth_user *user_from_token(struct app *app, const char *token)
{
    char digest[DIGEST_HEX_SIZE], now_text[32];
    sqlite3_stmt *stmt;
    struct auth_user *user = NULL;
    time_t now = time(NULL), last_used = 0;

    if (strncmp(token, API_TOKEN_PREFIX, strlen(API_TOKEN_PREFIX)) != 0 || strlen(token) > 100)
        return NULL;
    secret_digest(token, digest);
    stmt = db_stmt(app->db, "SELECT id, role, last_used_at FROM api_token"
                            " WHERE token_hash = ?1 AND revoked_at IS NULL");
    if (stmt == NULL)
        return NULL;
    sqlite3_bind_text(stmt, 1, digest, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) == SQLITE_ROW && (user = calloc(1, sizeof(*user))) != NULL) {
        user->token_id = sqlite3_column_int64(stmt, 0);
        user->roles = script_role_from_name((const char *)sqlite3_column_text(stmt, 1));
        last_used = parse_iso((const char *)sqlite3_column_text(stmt, 2));
    }
    sqlite3_reset(stmt);

    if (user != NULL && now - last_used >= SESSION_TOUCH_SECONDS) {
        iso_time(now, now_text, sizeof(now_text));
        stmt = db_stmt(app->db, "UPDATE api_token SET last_used_at = ?2 WHERE id = ?1");
        if (stmt != NULL) {
            sqlite3_bind_int64(stmt, 1, user->token_id);
            sqlite3_bind_text(stmt, 2, now_text, -1, SQLITE_STATIC);
            sqlite3_step(stmt);
            sqlite3_reset(stmt);
        }
    }
    return user;
}

const struct auth_user *auth_identify(struct app *app, struct http_request *req, int *status,
                                      const char **code, const char **message)
{
    char cookie[128];
    const char *authorization;
    struct auth_user *user = NULL;

    *status = 0;
    if (req->user != NULL && req->user_free == free)
        return req->user;

    authorization = http_header(req, "authorization");
    if (authorization != NULL && strncasecmp(authorization, "Bearer ", 7) == 0) {
        user = user_from_token(app, authorization + 7);
        if (user == NULL) {
            *status = 401;
            *code = "unauthenticated";
            *message = "Jeton d'API invalide ou révoqué.";
            return NULL;
        }
    } else if (http_cookie(req, SESSION_COOKIE, cookie, sizeof(cookie)) && cookie[0]) {
        user = user_from_session(app, cookie);
    }
    if (user == NULL) {
        *status = 401;
        *code = "unauthenticated";
        *message = "Vous n'êtes pas connecté, ou votre session a expiré.";
        return NULL;
    }

    if (user->session_id != 0 && state_changing(req)) {
        const char *sent = http_header(req, "x-csrf-token");
        size_t expected_len = strlen(user->csrf_token);

        if (sent == NULL || strlen(sent) != expected_len ||
            sodium_memcmp(sent, user->csrf_token, expected_len) != 0) {
            free(user);
            *status = 403;
            *code = "csrf";
            *message = "Jeton de sécurité (CSRF) absent ou invalide : rechargez la page.";
            return NULL;
        }
    }
    req->user = user;
    req->user_free = free;
    return user;
}

const struct auth_user *auth_authenticate(struct app *app, struct http_request *req)
{
    const char *code = NULL, *message = NULL;
    int status;
    const struct auth_user *user = auth_identify(app, req, &status, &code, &message);

    if (user == NULL)
        http_respond_error(req, status, code, message);
    return user;
}

const struct auth_user *auth_require_role(struct app *app, struct http_request *req,
                                          const char *action, int64_t target_person_id,
                                          const char *role)
{
    const struct auth_user *user = auth_authenticate(app, req);

    if (user == NULL)
        return NULL;
    if (user->must_change_password) {
        http_respond_error(req, 403, "password_change_required",
                           "Vous devez d'abord choisir un nouveau mot de passe.");
        return NULL;
    }
    if (!auth_allowed_role(app, user, action, target_person_id, role)) {
        http_respond_error(req, 403, "forbidden",
                           "Vous n'avez pas le droit d'effectuer cette action.");
        return NULL;
    }
    return user;
}

const struct auth_user *auth_require(struct app *app, struct http_request *req,
                                     const char *action, int64_t target_person_id)
{
    return auth_require_role(app, req, action, target_person_id, NULL);
}

/* ---- family account holder ------------------------------------------------ */

int64_t auth_family_account_holder(struct db *db, const char *email)
{
    sqlite3_stmt *stmt;
    int64_t holder = 0;
    char adult_before[16];
    time_t now = time(NULL);
    struct tm tm;

    if (email == NULL || email[0] == '\0')
        return 0;
    stmt = db_stmt(db, "SELECT id FROM person WHERE email = ?1 AND password_hash IS NOT NULL"
                       " ORDER BY id LIMIT 1");
    if (stmt == NULL)
        return -1;
    sqlite3_bind_text(stmt, 1, email, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        holder = sqlite3_column_int64(stmt, 0);
    sqlite3_reset(stmt);
    if (holder != 0)
        return holder;

    /* Born on or before this day 18 years ago: an adult. */
    gmtime_r(&now, &tm);
    tm.tm_year -= 18;
    strftime(adult_before, sizeof(adult_before), "%Y-%m-%d", &tm);

    /* Groups in order: an adult legal guardian or payer, any adult, a
     * guardian or payer of unknown age, anyone. Within a group the oldest
     * comes first, then people without a birth date, then the lowest id. */
    stmt = db_stmt(db, "SELECT p.id FROM person p WHERE p.email = ?1 ORDER BY"
                       " CASE WHEN p.birth_date IS NOT NULL AND p.birth_date <= ?2 AND EXISTS"
                       "  (SELECT 1 FROM family_link f WHERE f.related_id = p.id"
                       "   AND (f.is_legal_guardian = 1 OR f.is_payer = 1)) THEN 0"
                       " WHEN p.birth_date IS NOT NULL AND p.birth_date <= ?2 THEN 1"
                       " WHEN EXISTS (SELECT 1 FROM family_link f WHERE f.related_id = p.id"
                       "   AND (f.is_legal_guardian = 1 OR f.is_payer = 1)) THEN 2"
                       " ELSE 3 END,"
                       " p.birth_date IS NULL, p.birth_date, p.id LIMIT 1");
    if (stmt == NULL)
        return -1;
    sqlite3_bind_text(stmt, 1, email, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 2, adult_before, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        holder = sqlite3_column_int64(stmt, 0);
    sqlite3_reset(stmt);
    return holder;
}

int auth_set_password(struct db *db, int64_t person_id, const char *hash, char **err_fr)
{
    sqlite3_stmt *stmt;
    char now[32];
    int other = 0;

    *err_fr = NULL;
    stmt = db_stmt(db, "SELECT 1 FROM person o JOIN person p ON p.id = ?1"
                       " WHERE o.email = p.email AND o.id <> p.id AND o.password_hash IS NOT NULL"
                       " LIMIT 1");
    if (stmt == NULL)
        goto db_error;
    sqlite3_bind_int64(stmt, 1, person_id);
    other = sqlite3_step(stmt) == SQLITE_ROW;
    sqlite3_reset(stmt);
    if (other) {
        *err_fr = strdup("Une autre personne a déjà un compte avec cette adresse e-mail : "
                         "une adresse partagée par une famille ne donne qu'un seul compte.");
        return -1;
    }

    db_now(now, sizeof(now));
    stmt = db_stmt(db, "UPDATE person SET password_hash = ?2, password_changed_at = ?3,"
                       " must_change_password = 0 WHERE id = ?1");
    if (stmt == NULL)
        goto db_error;
    sqlite3_bind_int64(stmt, 1, person_id);
    sqlite3_bind_text(stmt, 2, hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 3, now, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        sqlite3_reset(stmt);
        goto db_error;
    }
    sqlite3_reset(stmt);
    stmt = db_stmt(db, "INSERT INTO audit_log (at, actor_id, person_id, action, field)"
                       " VALUES (?1, ?2, ?2, 'password.change', 'password')");
    if (stmt != NULL) {
        sqlite3_bind_text(stmt, 1, now, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(stmt, 2, person_id);
        sqlite3_step(stmt);
        sqlite3_reset(stmt);
    }
    if (token_void_person(db, person_id) == TOKEN_ERROR)
        log_warn("auth", "could not void the mail links of person %lld", (long long)person_id);
    return 0;

db_error:
    *err_fr = str_printf("Erreur de la base de données : %s", sqlite3_errmsg(db_handle(db)));
    return -1;
}

/* ---- session body ---------------------------------------------------------- */

/* The session's family list: the people linked to person_id, in the shape
 * of the contract ({id, last_name, first_name, relationship, direction}). */
static json_t *family_json(struct app *app, int64_t person_id)
{
    json_t *links = api_family_links_json(app, person_id), *out = json_array(), *link;
    size_t i;

    json_array_foreach(links, i, link) {
        json_t *person = json_object_get(link, "person");
        json_array_append_new(out, json_pack("{s:O,s:O,s:O,s:O,s:O}", "id",
                                             json_object_get(person, "id"), "last_name",
                                             json_object_get(person, "last_name"), "first_name",
                                             json_object_get(person, "first_name"), "relationship",
                                             json_object_get(link, "relationship"), "direction",
                                             json_object_get(link, "direction")));
    }
    json_decref(links);
    return out;
}

static json_t *session_json(struct app *app, const struct auth_user *user)
{
    json_t *permissions = json_object(), *self = json_object(), *body, *juser;
    sqlite3_stmt *stmt;

    for (size_t i = 0; i < ACTION_COUNT; i++) {
        int allowed = !user->must_change_password && auth_allowed(app, user, actions[i], 0);

        /* Role-scoped actions are allowed when at least one role is. */
        for (size_t r = 0; !allowed && !user->must_change_password && r < ROLE_COUNT; r++) {
            if (strcmp(actions[i], "rider.roles.update") == 0 ||
                strcmp(actions[i], "tokens.manage") == 0)
                allowed = auth_allowed_role(app, user, actions[i], 0, role_names[r]);
        }
        json_object_set_new(permissions, actions[i], json_boolean(allowed));
    }
    for (size_t i = 0; i < sizeof(self_actions) / sizeof(self_actions[0]); i++) {
        int allowed = !user->must_change_password && user->person_id != 0 &&
                      auth_allowed(app, user, self_actions[i], user->person_id);
        json_object_set_new(self, self_actions[i], json_boolean(allowed));
    }

    if (user->person_id != 0) {
        juser = json_pack("{s:I,s:s,s:o,s:b}", "id", (json_int_t)user->person_id, "email",
                          user->email, "roles", api_roles_json(user->roles),
                          "must_change_password", user->must_change_password);
        stmt = db_stmt(app->db, "SELECT last_name, first_name FROM person WHERE id = ?1");
        if (stmt != NULL) {
            sqlite3_bind_int64(stmt, 1, user->person_id);
            if (sqlite3_step(stmt) == SQLITE_ROW) {
                json_object_set_new(juser, "last_name",
                                    json_string((const char *)sqlite3_column_text(stmt, 0)));
                json_object_set_new(juser, "first_name",
                                    json_string((const char *)sqlite3_column_text(stmt, 1)));
            }
            sqlite3_reset(stmt);
        }
        json_object_set_new(juser, "family", family_json(app, user->person_id));
    } else {
        juser = json_pack("{s:n,s:I,s:o,s:b,s:[]}", "id", "token_id", (json_int_t)user->token_id,
                          "roles", api_roles_json(user->roles), "must_change_password", 0,
                          "family");
    }
    body = json_pack("{s:o,s:o,s:o}", "user", juser, "permissions", permissions,
                     "permissions_self", self);
    if (user->session_id != 0)
        json_object_set_new(body, "csrf_token", json_string(user->csrf_token));
    return body;
}

static void handle_session_get(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_authenticate(app, req);

    if (user == NULL)
        return;
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200, session_json(app, user));
}

static void set_session_cookie(struct app *app, struct http_request *req, const char *value,
                               long max_age)
{
    char header[256];

    snprintf(header, sizeof(header), "%s=%s; Path=/; HttpOnly; SameSite=Strict; Max-Age=%ld%s",
             SESSION_COOKIE, value, max_age, app->config.cookie_secure ? "; Secure" : "");
    http_set_header(req, "Set-Cookie", header);
}

static void handle_session_delete(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_authenticate(app, req);

    if (user == NULL)
        return;
    if (user->session_id != 0) {
        delete_session(app, user->session_id);
        log_info("auth", "%s: logout of person %lld", req->id, (long long)user->person_id);
    }
    set_session_cookie(app, req, "", 0);
    http_respond(req, 204, NULL, NULL, 0);
}

/* ---- login ----------------------------------------------------------------- */

/* A hash of a random password, verified when the e-mail is unknown so that
 * an unknown address costs the same time as a wrong password. */
static char dummy_hash[PASSWORD_HASH_SIZE];
static uv_once_t dummy_once = UV_ONCE_INIT;

static void dummy_hash_init(void)
{
    char password[32];

    password_generate(password, sizeof(password));
    if (password_hash(password, dummy_hash) < 0)
        dummy_hash[0] = '\0';
}

struct password_work {
    uv_work_t work;
    struct app *app;
    struct http_request *req;
    int64_t person_id;
    char email[256];
    char hash[PASSWORD_HASH_SIZE];
    char *password;     /* verified against hash */
    char *new_password; /* password change: hashed into new_hash */
    char new_hash[PASSWORD_HASH_SIZE];
    int64_t attempt_id;
    int64_t session_id;
    int ok;
};

static void password_work_free(struct password_work *w)
{
    password_free(w->password);
    password_free(w->new_password);
    sodium_memzero(w, sizeof(*w));
    free(w);
}

static void verify_work(uv_work_t *work)
{
    struct password_work *w = work->data;

    uv_once(&dummy_once, dummy_hash_init);
    if (w->hash[0] != '\0') {
        w->ok = password_verify(w->password, w->hash);
    } else {
        password_verify(w->password, dummy_hash);
        w->ok = 0;
    }
    if (w->ok && w->new_password != NULL && password_hash(w->new_password, w->new_hash) < 0)
        w->ok = -1;
}

static int create_session(struct app *app, struct http_request *req, int64_t person_id,
                          char token[SECRET_TEXT_SIZE], int64_t *session_id)
{
    char digest[DIGEST_HEX_SIZE], csrf[SECRET_TEXT_SIZE], now[32], expires[32], idle_limit[32];
    const char *agent = http_header(req, "user-agent");
    time_t t = time(NULL);
    sqlite3_stmt *stmt;
    int rc = -1;

    secret_new(token);
    secret_new(csrf);
    secret_digest(token, digest);
    iso_time(t, now, sizeof(now));
    iso_time(t + SESSION_MAX_SECONDS, expires, sizeof(expires));
    iso_time(t - SESSION_IDLE_SECONDS, idle_limit, sizeof(idle_limit));

    /* Expired sessions are purged at each login. */
    stmt = db_stmt(app->db, "DELETE FROM session WHERE expires_at <= ?1 OR last_seen_at < ?2");
    if (stmt != NULL) {
        sqlite3_bind_text(stmt, 1, now, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, idle_limit, -1, SQLITE_STATIC);
        sqlite3_step(stmt);
        sqlite3_reset(stmt);
    }
    api_data_changed();
    stmt = db_stmt(app->db, "INSERT INTO session (token_hash, person_id, csrf_token, created_at,"
                            " last_seen_at, expires_at, ip, user_agent)"
                            " VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, substr(?7, 1, 200))");
    if (stmt == NULL)
        return -1;
    sqlite3_bind_text(stmt, 1, digest, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, person_id);
    sqlite3_bind_text(stmt, 3, csrf, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, expires, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 6, req->remote_addr, -1, SQLITE_STATIC);
    db_bind_text_or_null(stmt, 7, agent);
    if (sqlite3_step(stmt) == SQLITE_DONE) {
        *session_id = sqlite3_last_insert_rowid(db_handle(app->db));
        rc = 0;
    }
    sqlite3_reset(stmt);
    return rc;
}

static void login_done(uv_work_t *work, int status)
{
    struct password_work *w = work->data;
    struct app *app = w->app;
    struct http_request *req = w->req;
    char token[SECRET_TEXT_SIZE];
    sqlite3_stmt *stmt;
    struct auth_user *user;

    if (status != 0 || w->ok != 1 || w->person_id == 0) {
        log_info("auth", "%s: failed login from %s", req->id, req->remote_addr);
        http_respond_error(req, 401, "invalid_credentials",
                           "Adresse e-mail ou mot de passe incorrect.");
        goto done;
    }

    /* A successful login clears the failures counted for the address. */
    stmt = db_stmt(app->db, "DELETE FROM login_attempt WHERE email = ?1");
    if (stmt != NULL) {
        sqlite3_bind_text(stmt, 1, w->email, -1, SQLITE_STATIC);
        sqlite3_step(stmt);
        sqlite3_reset(stmt);
    }
    if (create_session(app, req, w->person_id, token, &w->session_id) != 0) {
        api_respond_db_error(req, app, "session insert");
        goto done;
    }
    set_session_cookie(app, req, token, SESSION_MAX_SECONDS);
    sodium_memzero(token, sizeof(token));

    user = calloc(1, sizeof(*user));
    if (user == NULL) {
        http_respond_error(req, 500, "internal", "Mémoire insuffisante.");
        goto done;
    }
    user->person_id = w->person_id;
    user->session_id = w->session_id;
    stmt = db_stmt(app->db, "SELECT s.csrf_token, p.email, p.must_change_password,"
                            " (SELECT group_concat(role) FROM person_role r WHERE r.person_id = p.id)"
                            " FROM session s JOIN person p ON p.id = s.person_id WHERE s.id = ?1");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, w->session_id);
        if (sqlite3_step(stmt) == SQLITE_ROW) {
            snprintf(user->csrf_token, sizeof(user->csrf_token), "%s",
                     (const char *)sqlite3_column_text(stmt, 0));
            snprintf(user->email, sizeof(user->email), "%s",
                     (const char *)sqlite3_column_text(stmt, 1));
            user->must_change_password = sqlite3_column_int(stmt, 2);
            user->roles = api_roles_parse((const char *)sqlite3_column_text(stmt, 3));
        }
        sqlite3_reset(stmt);
    }
    log_info("auth", "%s: login of person %lld from %s", req->id, (long long)w->person_id,
             req->remote_addr);
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200, session_json(app, user));
    free(user);

done:
    password_work_free(w);
}

static void handle_session_post(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    json_t *body = api_read_object(req);
    const char *email_in, *password;
    char email[256], second[256];
    struct password_work *w = NULL;
    json_t *fields;
    sqlite3_stmt *stmt;
    long since = (long)time(NULL) - LOGIN_WINDOW_SECONDS;

    if (body == NULL)
        return;
    email_in = json_string_value(json_object_get(body, "email"));
    password = json_string_value(json_object_get(body, "password"));
    if (email_in == NULL || email_in[0] == '\0' || password == NULL || password[0] == '\0') {
        fields = json_object();
        if (email_in == NULL || email_in[0] == '\0')
            json_object_set_new(fields, "email", json_string("Saisissez votre adresse e-mail."));
        if (password == NULL || password[0] == '\0')
            json_object_set_new(fields, "password", json_string("Saisissez votre mot de passe."));
        api_respond_validation(req, fields);
        goto done;
    }
    if (strlen(email_in) > 254 || strlen(password) > PASSWORD_MAX_LENGTH) {
        http_respond_error(req, 401, "invalid_credentials",
                           "Adresse e-mail ou mot de passe incorrect.");
        goto done;
    }
    if (norm_email(email_in, email, sizeof(email), second, sizeof(second)) != NORM_OK)
        snprintf(email, sizeof(email), "%s", email_in);

    if (db_count(app->db, "SELECT count(*) FROM login_attempt WHERE email = ?1 AND at > ?2",
                       email, since) >= LOGIN_MAX_FAILURES_EMAIL ||
        db_count(app->db, "SELECT count(*) FROM login_attempt WHERE ip = ?1 AND at > ?2",
                       req->remote_addr, since) >= LOGIN_MAX_FAILURES_IP) {
        log_warn("auth", "%s: login rate limit reached from %s", req->id, req->remote_addr);
        http_set_header(req, "Retry-After", "900");
        http_respond_error(req, 429, "rate_limited",
                           "Trop de tentatives de connexion. Réessayez dans 15 minutes.");
        goto done;
    }

    w = calloc(1, sizeof(*w));
    if (w == NULL || (w->password = strdup(password)) == NULL) {
        http_respond_error(req, 500, "internal", "Mémoire insuffisante.");
        goto done;
    }
    w->app = app;
    w->req = req;
    snprintf(w->email, sizeof(w->email), "%s", email);

    /* Attempts older than the window no longer count. */
    stmt = db_stmt(app->db, "DELETE FROM login_attempt WHERE at <= ?1");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, since);
        sqlite3_step(stmt);
        sqlite3_reset(stmt);
    }

    /* The attempt is counted before the check, so that parallel guesses
     * cannot all pass the limit; a success deletes it again. A guess that
     * cannot be counted is not checked, or the limit could be bypassed. */
    stmt = db_stmt(app->db, "INSERT INTO login_attempt (at, ip, email) VALUES (?1, ?2, ?3)");
    if (stmt == NULL) {
        api_respond_db_error(req, app, "login attempt");
        password_work_free(w);
        goto done;
    }
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)time(NULL));
    sqlite3_bind_text(stmt, 2, req->remote_addr, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, email, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        sqlite3_reset(stmt);
        api_respond_db_error(req, app, "login attempt");
        password_work_free(w);
        goto done;
    }
    sqlite3_reset(stmt);
    stmt = db_stmt(app->db, "SELECT id, password_hash FROM person"
                            " WHERE email = ?1 AND password_hash IS NOT NULL ORDER BY id LIMIT 1");
    if (stmt != NULL) {
        sqlite3_bind_text(stmt, 1, email, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) == SQLITE_ROW) {
            w->person_id = sqlite3_column_int64(stmt, 0);
            snprintf(w->hash, sizeof(w->hash), "%s", (const char *)sqlite3_column_text(stmt, 1));
        }
        sqlite3_reset(stmt);
    }
    w->work.data = w;
    if (uv_queue_work(app->loop, &w->work, verify_work, login_done) != 0) {
        http_respond_error(req, 500, "internal", "Impossible de vérifier le mot de passe.");
        password_work_free(w);
    }

done:
    json_decref(body);
}

/* ---- password change ------------------------------------------------------- */

static void password_change_done(uv_work_t *work, int status)
{
    struct password_work *w = work->data;
    struct app *app = w->app;
    struct http_request *req = w->req;
    sqlite3_stmt *stmt;
    char *err = NULL;

    if (status != 0 || w->ok == -1) {
        http_respond_error(req, 500, "internal", "Impossible de chiffrer le mot de passe.");
        goto done;
    }
    if (w->ok != 1) {
        api_respond_validation(
            req, json_pack("{s:s}", "current_password", "Le mot de passe actuel est incorrect."));
        goto done;
    }
    if (db_begin(app->db) != SQLITE_OK) {
        api_respond_db_error(req, app, "begin");
        goto done;
    }
    if (auth_set_password(app->db, w->person_id, w->new_hash, &err) != 0) {
        db_rollback(app->db);
        http_respond_error(req, 409, "conflict", err);
        goto done;
    }
    /* Other sessions of the person end with the old password. */
    stmt = db_stmt(app->db, "DELETE FROM session WHERE person_id = ?1 AND id <> ?2");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, w->person_id);
        sqlite3_bind_int64(stmt, 2, w->session_id);
        sqlite3_step(stmt);
        sqlite3_reset(stmt);
    }
    if (db_commit(app->db) != SQLITE_OK) {
        db_rollback(app->db);
        api_respond_db_error(req, app, "commit");
        goto done;
    }
    api_data_changed();
    log_info("auth", "%s: person %lld changed the password", req->id, (long long)w->person_id);
    http_respond(req, 204, NULL, NULL, 0);

done:
    free(err);
    password_work_free(w);
}

static void handle_password_change(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_authenticate(app, req);
    json_t *body = NULL, *fields;
    const char *current, *fresh, *weak;
    struct password_work *w = NULL;
    sqlite3_stmt *stmt;

    if (user == NULL)
        return;
    if (user->person_id == 0) {
        http_respond_error(req, 403, "forbidden", "Un jeton d'API n'a pas de mot de passe.");
        return;
    }
    body = api_read_object(req);
    if (body == NULL)
        return;
    current = json_string_value(json_object_get(body, "current_password"));
    fresh = json_string_value(json_object_get(body, "new_password"));
    fields = json_object();
    if (current == NULL || current[0] == '\0')
        json_object_set_new(fields, "current_password",
                            json_string("Saisissez votre mot de passe actuel."));
    if (fresh == NULL || fresh[0] == '\0')
        json_object_set_new(fields, "new_password",
                            json_string("Saisissez un nouveau mot de passe."));
    else if ((weak = password_check_strength(fresh)) != NULL)
        json_object_set_new(fields, "new_password", json_string(weak));
    else if (current != NULL && strcmp(current, fresh) == 0)
        json_object_set_new(fields, "new_password",
                            json_string("Le nouveau mot de passe doit être différent de l'actuel."));
    if (json_object_size(fields) > 0 || strlen(current) > PASSWORD_MAX_LENGTH) {
        if (json_object_size(fields) == 0)
            json_object_set_new(fields, "current_password",
                                json_string("Le mot de passe actuel est incorrect."));
        api_respond_validation(req, fields);
        goto done;
    }
    json_decref(fields);

    w = calloc(1, sizeof(*w));
    if (w == NULL || (w->password = strdup(current)) == NULL ||
        (w->new_password = strdup(fresh)) == NULL) {
        http_respond_error(req, 500, "internal", "Mémoire insuffisante.");
        if (w != NULL)
            password_work_free(w);
        goto done;
    }
    w->app = app;
    w->req = req;
    w->person_id = user->person_id;
    w->session_id = user->session_id;
    stmt = db_stmt(app->db, "SELECT password_hash FROM person WHERE id = ?1");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, user->person_id);
        if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL)
            snprintf(w->hash, sizeof(w->hash), "%s", (const char *)sqlite3_column_text(stmt, 0));
        sqlite3_reset(stmt);
    }
    w->work.data = w;
    if (uv_queue_work(app->loop, &w->work, verify_work, password_change_done) != 0) {
        http_respond_error(req, 500, "internal", "Impossible de vérifier le mot de passe.");
        password_work_free(w);
    }

done:
    json_decref(body);
}

/* ---- API tokens ------------------------------------------------------------- */

static void handle_tokens_list(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    json_t *items;
    sqlite3_stmt *stmt;

    if (auth_require(app, req, "tokens.manage", 0) == NULL)
        return;
    stmt = db_stmt(app->db, "SELECT t.id, t.name, t.role, t.created_at, t.last_used_at,"
                            " t.revoked_at, p.id, trim(p.first_name || ' ' || p.last_name)"
                            " FROM api_token t LEFT JOIN person p ON p.id = t.created_by"
                            " ORDER BY t.id DESC");
    if (stmt == NULL) {
        api_respond_db_error(req, app, "token list");
        return;
    }
    items = json_array();
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        json_t *by = sqlite3_column_type(stmt, 6) == SQLITE_NULL
                         ? json_null()
                         : json_pack("{s:I,s:s}", "id", (json_int_t)sqlite3_column_int64(stmt, 6),
                                     "name", (const char *)sqlite3_column_text(stmt, 7));
        json_array_append_new(
            items, json_pack("{s:I,s:s,s:s,s:s,s:o,s:o,s:o}", "id",
                             (json_int_t)sqlite3_column_int64(stmt, 0), "name",
                             (const char *)sqlite3_column_text(stmt, 1), "role",
                             (const char *)sqlite3_column_text(stmt, 2), "created_at",
                             (const char *)sqlite3_column_text(stmt, 3), "last_used_at",
                             api_column_json(stmt, 4), "revoked_at", api_column_json(stmt, 5),
                             "created_by", by));
    }
    sqlite3_reset(stmt);
    http_respond_json(req, 200, json_pack("{s:o}", "items", items));
}

static void handle_tokens_create(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_authenticate(app, req);
    json_t *body = NULL, *fields;
    const char *name, *role;
    char token[SECRET_TEXT_SIZE + 8], secret[SECRET_TEXT_SIZE], digest[DIGEST_HEX_SIZE], now[32];
    sqlite3_stmt *stmt;
    int64_t id;

    if (user == NULL || (body = api_read_object(req)) == NULL)
        return;
    name = json_string_value(json_object_get(body, "name"));
    role = json_string_value(json_object_get(body, "role"));
    fields = json_object();
    if (name == NULL || name[0] == '\0')
        json_object_set_new(fields, "name", json_string("Donnez un nom au jeton."));
    else if (strlen(name) > TOKEN_NAME_MAX)
        json_object_set_new(fields, "name",
                            json_string("Le nom du jeton ne doit pas dépasser 100 caractères."));
    if (role == NULL || script_role_from_name(role) == 0)
        json_object_set_new(fields, "role",
                            json_string("Choisissez un rôle : gerant, employe, client, visiteur, "
                                        "comptable ou proprietaire."));
    if (auth_require_role(app, req, "tokens.manage", 0,
                          role != NULL && script_role_from_name(role) ? role : NULL) == NULL) {
        json_decref(fields);
        goto done;
    }
    if (json_object_size(fields) > 0) {
        api_respond_validation(req, fields);
        goto done;
    }
    json_decref(fields);

    secret_new(secret);
    snprintf(token, sizeof(token), "%s%s", API_TOKEN_PREFIX, secret);
    secret_digest(token, digest);
    db_now(now, sizeof(now));
    stmt = db_stmt(app->db, "INSERT INTO api_token (token_hash, name, role, created_by, created_at)"
                            " VALUES (?1, ?2, ?3, ?4, ?5)");
    if (stmt == NULL) {
        api_respond_db_error(req, app, "token insert");
        goto done;
    }
    sqlite3_bind_text(stmt, 1, digest, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, role, -1, SQLITE_STATIC);
    if (user->person_id != 0)
        sqlite3_bind_int64(stmt, 4, user->person_id);
    sqlite3_bind_text(stmt, 5, now, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        sqlite3_reset(stmt);
        api_respond_db_error(req, app, "token insert");
        goto done;
    }
    sqlite3_reset(stmt);
    id = sqlite3_last_insert_rowid(db_handle(app->db));
    log_info("auth", "%s: API token %lld (role %s) created by person %lld", req->id,
             (long long)id, role, (long long)user->person_id);
    http_respond_json(req, 201,
                      json_pack("{s:I,s:s,s:s,s:s,s:s}", "id", (json_int_t)id, "name", name, "role",
                                role, "created_at", now, "token", token));
    sodium_memzero(token, sizeof(token));
    sodium_memzero(secret, sizeof(secret));

done:
    json_decref(body);
}

static void handle_tokens_delete(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    int64_t id = api_param_id(req, "id");
    sqlite3_stmt *stmt;
    char now[32];
    int changed;

    if (id == 0 || auth_require(app, req, "tokens.manage", 0) == NULL)
        return;
    db_now(now, sizeof(now));
    stmt = db_stmt(app->db, "UPDATE api_token SET revoked_at = coalesce(revoked_at, ?2)"
                            " WHERE id = ?1");
    if (stmt == NULL) {
        api_respond_db_error(req, app, "token revoke");
        return;
    }
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_text(stmt, 2, now, -1, SQLITE_STATIC);
    sqlite3_step(stmt);
    changed = sqlite3_changes(db_handle(app->db));
    sqlite3_reset(stmt);
    if (changed == 0) {
        http_respond_error(req, 404, "not_found", "Jeton introuvable.");
        return;
    }
    log_info("auth", "%s: API token %lld revoked", req->id, (long long)id);
    http_respond(req, 204, NULL, NULL, 0);
}

void auth_register_routes(struct app *app)
{
    router_add(app->router, "POST", "/api/v1/session", handle_session_post, app, 0);
    router_add(app->router, "GET", "/api/v1/session", handle_session_get, app, 0);
    router_add(app->router, "DELETE", "/api/v1/session", handle_session_delete, app, 0);
    router_add(app->router, "POST", "/api/v1/account/password", handle_password_change, app, 0);
    router_add(app->router, "GET", "/api/v1/tokens", handle_tokens_list, app, 0);
    router_add(app->router, "POST", "/api/v1/tokens", handle_tokens_create, app, 0);
    router_add(app->router, "DELETE", "/api/v1/tokens/:id", handle_tokens_delete, app, 0);
}
