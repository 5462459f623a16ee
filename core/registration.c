/*
 * Online registration rules, tokens, duplicate lookup, rate limit, and the
 * writes that link a registration to a person (see registration.h).
 * Everything here runs on the loop thread with the main script state, and
 * nothing here responds to HTTP.
 */
#include "registration.h"

#include <lauxlib.h>
#include <lua.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "consent.h"
#include "log.h"
#include "person.h"
#include "script.h"
#include "util.h"

#define TOKEN_RANDOM_BYTES 32

static const char *const default_required[] = {"last_name", "first_name", "birth_date", "email"};

/* Reads t[key] (t at index) as an integer within [min, max], else fallback.
 * Stack: [-0, +0]. */
static int table_int(lua_State *L, int index, const char *key, int min, int max, int fallback)
{
    int value = fallback;

    lua_getfield(L, index, key);
    if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= min && lua_tointeger(L, -1) <= max)
        value = (int)lua_tointeger(L, -1);
    else if (!lua_isnil(L, -1))
        log_warn("registration", "registration.lua reglages(): %s out of range, using %d", key,
                 fallback);
    lua_pop(L, 1);
    return value;
}

void registration_settings_get(struct script_state *state, struct registration_settings *out)
{
    lua_State *L;
    int top;

    out->max_per_ip = REGISTRATION_DEFAULT_MAX_PER_IP;
    out->window_minutes = REGISTRATION_DEFAULT_WINDOW_MINUTES;
    out->majority_age = REGISTRATION_DEFAULT_MAJORITY_AGE;
    out->link_hours = REGISTRATION_DEFAULT_LINK_HOURS;
    if (state == NULL || script_module_count(state, SCRIPT_MOD_REGISTRATION) == 0)
        return;

    L = script_state_lua(state);
    top = lua_gettop(L);
    if (script_push_function(state, SCRIPT_MOD_REGISTRATION, 0, SCRIPT_REGISTRATION_SETTINGS) < 0)
        return;
    if (script_call(state, 0, 1, "registration.lua reglages()") < 0)
        return; /* logged by the engine; the defaults stay */
    if (lua_istable(L, -1)) {
        out->max_per_ip = table_int(L, -1, "max_par_ip", 1, 1000000, out->max_per_ip);
        out->window_minutes =
            table_int(L, -1, "fenetre_minutes", 1, 7 * 24 * 60, out->window_minutes);
        out->majority_age = table_int(L, -1, "age_majorite", 1, 30, out->majority_age);
        out->link_hours = table_int(L, -1, "validite_heures", 1, 24 * 30, out->link_hours);
    } else {
        log_warn("registration", "registration.lua reglages() did not return a table");
    }
    lua_settop(L, top);
}

static void rules_default(struct registration_rules *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < sizeof(default_required) / sizeof(default_required[0]); i++)
        snprintf(out->required[out->required_count++], sizeof(out->required[0]), "%s",
                 default_required[i]);
    out->role = SCRIPT_ROLE_VISITEUR;
    out->validated_role = SCRIPT_ROLE_CLIENT;
}

/* Reads t[key] (t at index) as a role name into *bit; nil gives 0 when
 * allow_nil. Returns 0, or -1 with *err. Stack: [-0, +0]. */
static int table_role(lua_State *L, int index, const char *key, int allow_nil, unsigned *bit,
                      char **err)
{
    int rc = 0;

    lua_getfield(L, index, key);
    if (lua_isnil(L, -1) && allow_nil) {
        *bit = 0;
    } else if (lua_type(L, -1) != LUA_TSTRING ||
               (*bit = script_role_from_name(lua_tostring(L, -1))) == 0) {
        *err = str_printf("registration.lua : regles() doit rendre dans « %s » un rôle connu "
                          "(client, visiteur…)%s.",
                          key, allow_nil ? " ou nil" : "");
        rc = -1;
    }
    lua_pop(L, 1);
    return rc;
}

int registration_rules_get(struct script_state *state, const struct fields_catalogue *fields,
                           json_t *applicant, struct registration_rules *out, char **err)
{
    lua_State *L;
    int top, rc = -1;

    *err = NULL;
    rules_default(out);
    if (state == NULL || script_module_count(state, SCRIPT_MOD_REGISTRATION) == 0)
        return 0;

    L = script_state_lua(state);
    top = lua_gettop(L);
    if (script_push_function(state, SCRIPT_MOD_REGISTRATION, 0, SCRIPT_REGISTRATION_RULES) < 0)
        return 0;
    script_push_json(state, applicant);
    if (script_call(state, 1, 1, "registration.lua regles()") < 0) {
        *err = str_printf("Le script registration.lua a échoué : %s",
                          script_state_last_error(state) ? script_state_last_error(state) : "");
        goto done;
    }
    if (!lua_istable(L, -1)) {
        *err = strdup("registration.lua : regles() doit rendre une table.");
        goto done;
    }
    if (table_role(L, -1, "role", 1, &out->role, err) < 0 ||
        table_role(L, -1, "role_valide", 0, &out->validated_role, err) < 0)
        goto done;

    lua_getfield(L, -1, "obligatoires");
    if (lua_istable(L, -1)) {
        out->required_count = 0;
        for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
            const char *key = lua_tostring(L, -1);

            if (key == NULL || fields_find(fields, key) == NULL ||
                out->required_count == REGISTRATION_MAX_REQUIRED) {
                *err = str_printf("registration.lua : « %s » dans obligatoires n'est pas un champ "
                                  "connu (ou la liste dépasse %d champs).",
                                  key ? key : "?", REGISTRATION_MAX_REQUIRED);
                goto done;
            }
            snprintf(out->required[out->required_count++], sizeof(out->required[0]), "%s", key);
            lua_pop(L, 1);
        }
    }
    rc = 0;

done:
    lua_settop(L, top);
    if (rc != 0)
        rules_default(out);
    return rc;
}

int registration_age(const char *birth_date, const char *today)
{
    int by, bm, bd, ty, tm, td, age;

    if (birth_date == NULL || today == NULL ||
        sscanf(birth_date, "%4d-%2d-%2d", &by, &bm, &bd) != 3 ||
        sscanf(today, "%4d-%2d-%2d", &ty, &tm, &td) != 3)
        return -1;
    age = ty - by;
    if (tm < bm || (tm == bm && td < bd))
        age--;
    return age < 0 ? -1 : age;
}

void registration_token_new(char text[TOKEN_TEXT_SIZE],
                            unsigned char digest[REGISTRATION_DIGEST_SIZE])
{
    unsigned char raw[TOKEN_RANDOM_BYTES];

    randombytes_buf(raw, sizeof(raw));
    sodium_bin2base64(text, TOKEN_TEXT_SIZE, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    crypto_generichash(digest, REGISTRATION_DIGEST_SIZE, raw, sizeof(raw), NULL, 0);
    sodium_memzero(raw, sizeof(raw));
}

int registration_token_digest(const char *text, unsigned char digest[REGISTRATION_DIGEST_SIZE])
{
    unsigned char raw[TOKEN_RANDOM_BYTES];
    size_t raw_len = 0;

    if (text == NULL || strlen(text) != TOKEN_TEXT_SIZE - 1 ||
        sodium_base642bin(raw, sizeof(raw), text, TOKEN_TEXT_SIZE - 1, NULL, &raw_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        raw_len != sizeof(raw))
        return -1;
    crypto_generichash(digest, REGISTRATION_DIGEST_SIZE, raw, sizeof(raw), NULL, 0);
    sodium_memzero(raw, sizeof(raw));
    return 0;
}

int64_t registration_find_duplicate(struct db *db, const char *licence_number,
                                    const char *match_key, int64_t exclude_id,
                                    enum registration_duplicate *reason)
{
    sqlite3_stmt *stmt;
    int64_t id = 0;
    int rc;

    *reason = REGISTRATION_DUPLICATE_NONE;
    if (licence_number != NULL && licence_number[0] != '\0') {
        stmt = db_stmt(db, "SELECT id FROM person WHERE licence_number = ?1 AND id <> ?2");
        if (stmt == NULL)
            return -1;
        sqlite3_bind_text(stmt, 1, licence_number, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 2, exclude_id);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
            id = sqlite3_column_int64(stmt, 0);
            *reason = REGISTRATION_DUPLICATE_LICENCE;
        }
        sqlite3_reset(stmt);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return -1;
        if (id != 0)
            return id;
    }
    if (match_key == NULL || match_key[0] == '\0')
        return 0;

    /* NOTE: when several people share the key (namesakes born the same
     * day), the oldest record is proposed. Staff can still create a new
     * person when they validate. */
    stmt =
        db_stmt(db, "SELECT id FROM person WHERE match_key = ?1 AND id <> ?2 ORDER BY id LIMIT 1");
    if (stmt == NULL)
        return -1;
    sqlite3_bind_text(stmt, 1, match_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, exclude_id);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        id = sqlite3_column_int64(stmt, 0);
        *reason = REGISTRATION_DUPLICATE_IDENTITY;
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? id : -1;
}

int registration_attempts_count(struct db *db, const char *ip, long window_seconds)
{
    long since = (long)time(NULL) - window_seconds;
    sqlite3_stmt *stmt = db_stmt(db, "DELETE FROM registration_attempt WHERE at <= ?1");
    int count = -1;

    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, since);
    sqlite3_step(stmt);
    sqlite3_reset(stmt);

    stmt = db_stmt(db, "SELECT count(*) FROM registration_attempt WHERE ip = ?1 AND at > ?2");
    if (stmt == NULL)
        return -1;
    sqlite3_bind_text(stmt, 1, ip, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, since);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        count = sqlite3_column_int(stmt, 0);
    sqlite3_reset(stmt);
    return count;
}

int registration_attempt_record(struct db *db, const char *ip)
{
    sqlite3_stmt *stmt = db_stmt(db, "INSERT INTO registration_attempt (at, ip) VALUES (?1, ?2)");
    int rc;

    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, (sqlite3_int64)time(NULL));
    sqlite3_bind_text(stmt, 2, ip, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt) == SQLITE_DONE ? 0 : -1;
    sqlite3_reset(stmt);
    return rc;
}

/* ---- linking a person ------------------------------------------------------------ */

int registration_set_role(struct app *app, const struct auth_user *actor, int64_t person_id,
                          unsigned bit, int give)
{
    const char *name = api_role_name(bit);
    sqlite3_stmt *stmt;
    int changed;

    if (name == NULL)
        return 0;
    stmt = db_stmt(app->db, give ? "INSERT OR IGNORE INTO person_role (person_id, role)"
                                   " VALUES (?1, ?2)"
                                 : "DELETE FROM person_role WHERE person_id = ?1 AND role = ?2");
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, person_id);
    sqlite3_bind_text(stmt, 2, name, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        sqlite3_reset(stmt);
        return -1;
    }
    sqlite3_reset(stmt);
    changed = sqlite3_changes(db_handle(app->db));
    if (changed == 0)
        return 0;
    return api_audit(app, actor, person_id, give ? "role.add" : "role.remove", "role",
                     give ? NULL : name, give ? name : NULL);
}

int registration_has_roles(struct db *db, int64_t person_id)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT 1 FROM person_role WHERE person_id = ?1");
    int found = 0;

    if (stmt == NULL)
        return 1;
    sqlite3_bind_int64(stmt, 1, person_id);
    found = sqlite3_step(stmt) == SQLITE_ROW;
    sqlite3_reset(stmt);
    return found;
}

int registration_record_consents(struct db *db, json_t *registration, int64_t person_id)
{
    json_t *decision;
    size_t i;

    json_array_foreach(json_object_get(registration, "consents"), i, decision) {
        struct consent_proof proof = {
            .person_id = person_id,
            .document = json_string_value(json_object_get(decision, "document")),
            .version_id = json_integer_value(json_object_get(decision, "version_id")),
            .decision = json_is_true(json_object_get(decision, "accepted")) ? CONSENT_ACCEPTED
                                                                            : CONSENT_REFUSED,
            .channel = CONSENT_CHANNEL_REGISTRATION,
            .ip = json_string_value(json_object_get(registration, "ip")),
            .user_agent = json_string_value(json_object_get(registration, "user_agent")),
        };
        char *err = NULL;

        if (proof.document == NULL)
            continue;
        if (consent_record(db, &proof, &err) < 0) {
            log_error("registration",
                      "registration %" JSON_INTEGER_FORMAT ": consent %s not recorded: %s",
                      json_integer_value(json_object_get(registration, "id")), proof.document,
                      err ? err : "");
            free(err);
            return -1;
        }
    }
    return 0;
}

int registration_attach_guardian(struct app *app, const struct auth_user *actor, json_t *guardian,
                                 int64_t child_id)
{
    const char *last = json_string_value(json_object_get(guardian, "last_name"));
    const char *first = json_string_value(json_object_get(guardian, "first_name"));
    const char *email = json_string_value(json_object_get(guardian, "email"));
    const char *phone = json_string_value(json_object_get(guardian, "phone"));
    sqlite3_stmt *stmt;
    int64_t guardian_id = 0;
    char now[32];

    if (!json_is_object(guardian) || last == NULL || first == NULL || email == NULL)
        return 0;
    db_now(now, sizeof(now));
    stmt = db_stmt(app->db, "SELECT id FROM person WHERE email = ?1 AND last_name = ?2"
                            " COLLATE NOCASE AND first_name = ?3 COLLATE NOCASE AND id <> ?4"
                            " ORDER BY id LIMIT 1");
    if (stmt == NULL)
        return -1;
    sqlite3_bind_text(stmt, 1, email, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, last, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, first, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 4, child_id);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        guardian_id = sqlite3_column_int64(stmt, 0);
    sqlite3_reset(stmt);

    if (guardian_id == 0) {
        stmt = db_stmt(app->db, "INSERT INTO person (last_name, first_name, email, phone,"
                                " created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)");
        if (stmt == NULL)
            return -1;
        sqlite3_bind_text(stmt, 1, last, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 2, first, -1, SQLITE_STATIC);
        sqlite3_bind_text(stmt, 3, email, -1, SQLITE_STATIC);
        db_bind_text_or_null(stmt, 4, phone);
        sqlite3_bind_text(stmt, 5, now, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_DONE) {
            sqlite3_reset(stmt);
            return -1;
        }
        sqlite3_reset(stmt);
        guardian_id = sqlite3_last_insert_rowid(db_handle(app->db));
        if (person_refresh_keys(app->db, guardian_id) != SQLITE_OK ||
            api_audit(app, actor, guardian_id, "create", NULL, NULL, "inscription en ligne") != 0)
            return -1;
    }

    stmt = db_stmt(app->db, "INSERT OR IGNORE INTO family_link (person_id, related_id,"
                            " relationship, is_legal_guardian, is_payer, created_at)"
                            " VALUES (?1, ?2, 'responsable légal', 1, 1, ?3)");
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, child_id);
    sqlite3_bind_int64(stmt, 2, guardian_id);
    sqlite3_bind_text(stmt, 3, now, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        sqlite3_reset(stmt);
        return -1;
    }
    sqlite3_reset(stmt);
    return 0;
}
