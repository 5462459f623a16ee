/*
 * The rider routes of the JSON API other than the list: one rider's record,
 * creation, field edits (core columns of person and plugin fields in
 * person_field), roles, deletion and the change history. Every edit writes
 * audit_log rows and refreshes the person's search text. The list is in
 * core/api_riders_list.c, family links in core/api_family.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "auth.h"
#include "token.h"
#include "log.h"
#include "normalize.h"
#include "person.h"
#include "script.h"
#include "util.h"

#define HISTORY_PER_PAGE 50

/* ---- one rider ---------------------------------------------------------- */

/* Core fields stored in columns of person, with the statement that writes
 * each one (column names cannot be bound). */
#define SET_SQL(column) "UPDATE person SET " column " = ?2 WHERE id = ?1"
static const struct {
    const char *key;
    const char *update_sql;
} core_columns[] = {
    {"last_name", "UPDATE person SET last_name = coalesce(?2, '') WHERE id = ?1"},
    {"first_name", "UPDATE person SET first_name = coalesce(?2, '') WHERE id = ?1"},
    {"birth_date", SET_SQL("birth_date")},
    {"sex", SET_SQL("sex")},
    {"email", SET_SQL("email")},
    {"phone", SET_SQL("phone")},
    {"mobile", SET_SQL("mobile")},
    {"address", SET_SQL("address")},
    {"address2", SET_SQL("address2")},
    {"postcode", SET_SQL("postcode")},
    {"city", SET_SQL("city")},
    {"country", SET_SQL("country")},
    {"licence_number", SET_SQL("licence_number")},
    {"galop", SET_SQL("galop")},
};
#define CORE_COLUMN_COUNT (sizeof(core_columns) / sizeof(core_columns[0]))

/* Same order as core_columns. */
#define PERSON_SELECT                                                                              \
    "SELECT last_name, first_name, birth_date, sex, email, phone, mobile, address, address2,"     \
    " postcode, city, country, licence_number, galop, created_at, updated_at, licence_raw,"      \
    " email_invalid FROM person WHERE id = ?1"

static int core_column_index(const char *key)
{
    for (size_t i = 0; i < CORE_COLUMN_COUNT; i++) {
        if (strcmp(core_columns[i].key, key) == 0)
            return (int)i;
    }
    return -1;
}

static int role_in_list(unsigned roles, char **list)
{
    if (list == NULL)
        return 1;
    for (size_t i = 0; list[i] != NULL; i++) {
        if (roles & script_role_from_name(list[i]))
            return 1;
    }
    return 0;
}

/* Current values of every field of a person, as an object key -> string
 * (absent when empty). Returns NULL when the person does not exist. */
static json_t *person_values(struct app *app, int64_t id, json_t **meta)
{
    sqlite3_stmt *stmt = db_stmt(app->db, PERSON_SELECT);
    json_t *values = NULL;

    if (stmt == NULL)
        return NULL;
    sqlite3_bind_int64(stmt, 1, id);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        values = json_object();
        for (size_t i = 0; i < CORE_COLUMN_COUNT; i++) {
            const char *v = (const char *)sqlite3_column_text(stmt, (int)i);
            if (v != NULL && v[0] != '\0')
                json_object_set_new(values, core_columns[i].key, json_string(v));
        }
        if (meta != NULL)
            *meta = json_pack("{s:o,s:o,s:o,s:o}", "created_at", api_column_json(stmt, 14),
                              "updated_at", api_column_json(stmt, 15), "licence_raw",
                              api_column_json(stmt, 16), "email_invalid",
                              api_column_json(stmt, 17));
    }
    sqlite3_reset(stmt);
    if (values == NULL)
        return NULL;

    stmt = db_stmt(app->db, "SELECT key, value FROM person_field WHERE person_id = ?1");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, id);
        while (sqlite3_step(stmt) == SQLITE_ROW)
            json_object_set_new(values, (const char *)sqlite3_column_text(stmt, 0),
                                json_string((const char *)sqlite3_column_text(stmt, 1)));
        sqlite3_reset(stmt);
    }
    return values;
}

static unsigned person_roles(struct app *app, int64_t id)
{
    sqlite3_stmt *stmt =
        db_stmt(app->db, "SELECT group_concat(role) FROM person_role WHERE person_id = ?1");
    unsigned roles = 0;

    if (stmt == NULL)
        return 0;
    sqlite3_bind_int64(stmt, 1, id);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        roles = api_roles_parse((const char *)sqlite3_column_text(stmt, 0));
    sqlite3_reset(stmt);
    return roles;
}

static json_t *licences_json(struct app *app, int64_t id)
{
    json_t *out = json_array();
    sqlite3_stmt *stmt = db_stmt(app->db, "SELECT season, number, type, category, club, taken_on"
                                          " FROM licence WHERE person_id = ?1 ORDER BY season DESC");

    if (stmt == NULL)
        return out;
    sqlite3_bind_int64(stmt, 1, id);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        json_array_append_new(out, json_pack("{s:I,s:o,s:o,s:o,s:o,s:o}", "season",
                                             (json_int_t)sqlite3_column_int64(stmt, 0), "number",
                                             api_column_json(stmt, 1), "type",
                                             api_column_json(stmt, 2), "category",
                                             api_column_json(stmt, 3), "club",
                                             api_column_json(stmt, 4), "taken_on",
                                             api_column_json(stmt, 5)));
    }
    sqlite3_reset(stmt);
    return out;
}

/* Login state of a person: {has_login, holder}. holder is the person who
 * holds, or would hold, the one login of the person's e-mail address
 * (auth_family_account_holder), or null without an address. */
static json_t *account_json(struct app *app, int64_t id)
{
    sqlite3_stmt *stmt = db_stmt(app->db, "SELECT password_hash IS NOT NULL, email FROM person"
                                          " WHERE id = ?1");
    char email[256] = "";
    int has_login = 0;
    int64_t holder = 0;
    json_t *holder_json = json_null();

    if (stmt == NULL)
        return json_pack("{s:b,s:n}", "has_login", 0, "holder");
    sqlite3_bind_int64(stmt, 1, id);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        has_login = sqlite3_column_int(stmt, 0);
        if (sqlite3_column_type(stmt, 1) != SQLITE_NULL)
            snprintf(email, sizeof(email), "%s", (const char *)sqlite3_column_text(stmt, 1));
    }
    sqlite3_reset(stmt);
    if (email[0] != '\0')
        holder = auth_family_account_holder(app->db, email);
    if (holder > 0 && (stmt = db_stmt(app->db, "SELECT last_name, first_name FROM person"
                                                " WHERE id = ?1")) != NULL) {
        sqlite3_bind_int64(stmt, 1, holder);
        if (sqlite3_step(stmt) == SQLITE_ROW) {
            json_decref(holder_json);
            holder_json = json_pack("{s:I,s:s,s:s}", "id", (json_int_t)holder, "last_name",
                                    (const char *)sqlite3_column_text(stmt, 0), "first_name",
                                    (const char *)sqlite3_column_text(stmt, 1));
        }
        sqlite3_reset(stmt);
    }
    return json_pack("{s:b,s:o}", "has_login", has_login, "holder", holder_json);
}

/* The full record as the user may see it, or NULL when it does not exist. */
static json_t *rider_json(struct app *app, const struct auth_user *user, int64_t id)
{
    struct api_scripts scripts;
    json_t *meta = NULL, *values = person_values(app, id, &meta);
    json_t *fields, *editable, *body;
    int may_update;

    if (values == NULL)
        return NULL;
    api_scripts_acquire(app, &scripts);
    may_update = auth_allowed(app, user, "rider.update", id);
    fields = json_object();
    editable = json_array();
    for (size_t i = 0; i < scripts.fields->count; i++) {
        const struct field_def *f = &scripts.fields->fields[i];
        json_t *value = json_object_get(values, f->key);

        if (!role_in_list(user->roles, f->view))
            continue;
        json_object_set(fields, f->key, value ? value : json_null());
        if (may_update && role_in_list(user->roles, f->edit))
            json_array_append_new(editable, json_string(f->key));
    }
    api_scripts_release(&scripts);

    body = json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:O,s:O,s:O,s:O}", "id", (json_int_t)id, "fields",
                     fields, "roles", api_roles_json(person_roles(app, id)), "licences",
                     licences_json(app, id), "family", api_family_links_json(app, id),
                     "editable", editable, "created_at", json_object_get(meta, "created_at"),
                     "updated_at", json_object_get(meta, "updated_at"), "licence_raw",
                     json_object_get(meta, "licence_raw"), "email_invalid",
                     json_object_get(meta, "email_invalid"));
    json_object_set_new(body, "account", account_json(app, id));
    json_decref(meta);
    json_decref(values);
    return body;
}

static int person_exists(struct app *app, int64_t id)
{
    sqlite3_stmt *stmt = db_stmt(app->db, "SELECT 1 FROM person WHERE id = ?1");
    int found = 0;

    if (stmt == NULL)
        return 0;
    sqlite3_bind_int64(stmt, 1, id);
    found = sqlite3_step(stmt) == SQLITE_ROW;
    sqlite3_reset(stmt);
    return found;
}

static void handle_get(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    int64_t id = api_param_id(req, "id");
    const struct auth_user *user;
    json_t *body;

    if (id == 0 || (user = auth_require(app, req, "rider.read", id)) == NULL)
        return;
    body = rider_json(app, user, id);
    if (body == NULL) {
        http_respond_error(req, 404, "not_found", "Cavalier introuvable.");
        return;
    }
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200, body);
}

/* ---- validation and writes ------------------------------------------------- */

/* Converts a JSON value of a request to text: strings as they are, numbers
 * and booleans written out, null as NULL. Returns -1 for arrays and
 * objects. */
static int value_text(json_t *value, char *out, size_t size, int *is_null)
{
    *is_null = 0;
    if (json_is_null(value)) {
        *is_null = 1;
        out[0] = '\0';
    } else if (json_is_string(value)) {
        if (json_string_length(value) >= size ||
            strlen(json_string_value(value)) != json_string_length(value))
            return -1; /* too long, or a NUL inside */
        memcpy(out, json_string_value(value), json_string_length(value) + 1);
    } else if (json_is_integer(value)) {
        snprintf(out, size, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
    } else if (json_is_real(value)) {
        snprintf(out, size, "%g", json_real_value(value));
    } else if (json_is_boolean(value)) {
        snprintf(out, size, "%s", json_is_true(value) ? "1" : "0");
    } else {
        return -1;
    }
    return 0;
}

/* Normalises a validated core value into out (the stored form). Returns
 * NULL, or a French message for the field. */
static const char *normalize_core(struct app *app, const char *key, const char *value,
                                  const char *country, char *out, size_t size)
{
    char second[256];
    enum norm_status st;

    if (value[0] == '\0') {
        out[0] = '\0';
        return NULL;
    }
    if (strcmp(key, "email") == 0) {
        st = norm_email(value, out, size, second, sizeof(second));
        return st == NORM_OK ? NULL : "Adresse e-mail invalide.";
    }
    if (strcmp(key, "phone") == 0 || strcmp(key, "mobile") == 0) {
        st = norm_phone(value, out, size);
        return st == NORM_OK ? NULL : "Numéro de téléphone invalide.";
    }
    if (strcmp(key, "licence_number") == 0) {
        st = norm_licence(value, out, size);
        return st == NORM_OK ? NULL
                             : "Le numéro de licence doit comporter sept chiffres suivis d'une "
                               "lettre (par exemple 1234567A).";
    }
    if (strcmp(key, "postcode") == 0) {
        st = norm_postcode(value, country, out, size);
        return st == NORM_OK ? NULL : "Code postal invalide (cinq chiffres en France).";
    }
    if (strcmp(key, "country") == 0) {
        st = norm_country(value, out, size);
        return st == NORM_OK ? NULL : "Pays inconnu : donnez son nom ou son code (FR, BE…).";
    }
    if (strcmp(key, "galop") == 0) {
        sqlite3_stmt *stmt;
        int found = 0;

        st = norm_galop(value, out, size);
        if (st == NORM_EMPTY) {
            out[0] = '\0';
            return NULL;
        }
        if (st == NORM_OK && (stmt = db_stmt(app->db, "SELECT 1 FROM galop_level WHERE code = ?1"))) {
            sqlite3_bind_text(stmt, 1, out, -1, SQLITE_STATIC);
            found = sqlite3_step(stmt) == SQLITE_ROW;
            sqlite3_reset(stmt);
        }
        return found ? NULL : "Niveau de Galop inconnu (par exemple « Galop 3 »).";
    }
    if (strcmp(key, "birth_date") == 0) {
        char today[16];
        time_t now = time(NULL);
        struct tm tm;

        gmtime_r(&now, &tm);
        strftime(today, sizeof(today), "%Y-%m-%d", &tm);
        snprintf(out, size, "%s", value);
        return strcmp(value, today) > 0 ? "La date de naissance ne peut pas être dans le futur."
                                        : NULL;
    }
    if (strcmp(key, "last_name") == 0 || strcmp(key, "first_name") == 0) {
        /* A name staff type is taken as typed, trimmed: short names such as
         * "Nil" or "X" are real, so only a value without any letter or
         * digit counts as empty (norm_name's rule, without its change of
         * case, which would undo a deliberate "McDonald"). */
        char display[512];

        if (norm_name(value, display, sizeof(display)) == NORM_EMPTY) {
            out[0] = '\0';
            return NULL;
        }
        /* norm_text keeps the case but its broader list of placeholders
         * would erase such a name: fall back to the display form then. */
        if (norm_text(value, out, size) == NORM_EMPTY)
            snprintf(out, size, "%s", display);
        return NULL;
    }
    if (strcmp(key, "address") == 0 || strcmp(key, "address2") == 0 ||
        strcmp(key, "city") == 0) {
        st = norm_text(value, out, size);
        if (st == NORM_EMPTY)
            out[0] = '\0';
        return NULL;
    }
    snprintf(out, size, "%s", value);
    return NULL;
}

struct change {
    const char *key; /* points into the catalogue */
    char *old_value; /* NULL when empty */
    char *new_value; /* NULL when empty */
};

struct change_set {
    struct change items[FIELDS_MAX_LIST * 4];
    size_t count;
};

static void change_set_clear(struct change_set *set)
{
    for (size_t i = 0; i < set->count; i++) {
        free(set->items[i].old_value);
        free(set->items[i].new_value);
    }
    set->count = 0;
}

/* Checks every key of body against the catalogue, the user's edit rights
 * and the field rules, and fills set with the values that change. Returns
 * 0; or responds (403 or 422) and returns -1. required_check: also report
 * required fields missing from body (creation). With rejected non-NULL,
 * no response is sent: *rejected is set to 1 when some key was rejected,
 * and set keeps the accepted ones. */
static int collect_changes(struct app *app, struct http_request *req,
                           const struct auth_user *user, json_t *body, json_t *current,
                           int creating, struct change_set *set, int *rejected)
{
    struct api_scripts scripts;
    json_t *errors = json_object();
    const char *key;
    json_t *value;
    char text[FIELDS_MAX_VALUE + 1], stored[FIELDS_MAX_VALUE + 1], country[8] = "";
    const char *country_now = json_string_value(json_object_get(current, "country"));
    int rc = -1, forbidden = 0;

    api_scripts_acquire(app, &scripts);
    if (json_is_string(json_object_get(body, "country")))
        norm_country(json_string_value(json_object_get(body, "country")), country,
                     sizeof(country));
    else if (country_now != NULL)
        snprintf(country, sizeof(country), "%s", country_now);

    json_object_foreach(body, key, value) {
        const struct field_def *f;
        const char *problem;
        char *err = NULL;
        int is_null = 0;
        const char *old;

        if (creating && strcmp(key, "roles") == 0)
            continue;
        f = fields_find(scripts.fields, key);
        if (f == NULL) {
            json_object_set_new(errors, key, json_string("Champ inconnu."));
            continue;
        }
        if (!role_in_list(user->roles, f->edit) || !role_in_list(user->roles, f->view)) {
            forbidden = 1;
            continue;
        }
        if (value_text(value, text, sizeof(text), &is_null) != 0) {
            json_object_set_new(errors, key,
                                json_string("Valeur invalide : texte de 4096 octets au plus "
                                            "attendu."));
            continue;
        }
        if (fields_validate(scripts.fields, key, text, scripts.state, &err) != 0) {
            json_object_set_new(errors, key, json_string(err ? err : "Valeur invalide."));
            free(err);
            continue;
        }
        if (f->plugin == NULL) {
            problem = normalize_core(app, key, text, country, stored, sizeof(stored));
            if (problem != NULL) {
                json_object_set_new(errors, key, json_string(problem));
                continue;
            }
        } else {
            snprintf(stored, sizeof(stored), "%s", text);
        }
        old = json_string_value(json_object_get(current, key));
        if ((old == NULL && stored[0] == '\0') || (old != NULL && strcmp(old, stored) == 0))
            continue;
        if (set->count == sizeof(set->items) / sizeof(set->items[0])) {
            json_object_set_new(errors, key, json_string("Trop de champs dans une requête."));
            continue;
        }
        set->items[set->count].key = f->key;
        set->items[set->count].old_value = old ? strdup(old) : NULL;
        set->items[set->count].new_value = stored[0] ? strdup(stored) : NULL;
        set->count++;
    }

    if (creating) {
        for (size_t i = 0; i < scripts.fields->count; i++) {
            const struct field_def *f = &scripts.fields->fields[i];
            if (f->required && json_object_get(body, f->key) == NULL &&
                json_object_get(errors, f->key) == NULL) {
                char *message = str_printf("Le champ « %s » est obligatoire.", f->label);
                json_object_set_new(errors, f->key, json_string(message ? message : ""));
                free(message);
            }
        }
    }

    if (rejected != NULL) {
        *rejected = forbidden || json_object_size(errors) > 0;
        rc = 0;
        goto done;
    }
    if (forbidden) {
        http_respond_error(req, 403, "forbidden",
                           "Vous n'avez pas le droit de modifier certains de ces champs.");
        goto done;
    }
    if (json_object_size(errors) > 0) {
        api_respond_validation(req, errors);
        errors = NULL;
        goto done;
    }
    rc = 0;

done:
    json_decref(errors);
    api_scripts_release(&scripts);
    if (rc != 0)
        change_set_clear(set);
    return rc;
}

/* Checks the uniqueness rules that depend on other people: licence number
 * and the one-login-per-address rule. A person editing their own record may
 * not move their login onto an address that any other record uses: that
 * would take the login of a family whose members have no password yet.
 * Returns 0, or responds 409 (only returns -1 when req is NULL). */
static int check_conflicts(struct app *app, struct http_request *req, int64_t id, int is_self,
                           const struct change_set *set)
{
    sqlite3_stmt *stmt;

    for (size_t i = 0; i < set->count; i++) {
        const struct change *c = &set->items[i];
        int taken = 0;

        if (c->new_value == NULL)
            continue;
        if (strcmp(c->key, "licence_number") == 0) {
            stmt = db_stmt(app->db, "SELECT 1 FROM person WHERE licence_number = ?1 AND id <> ?2");
        } else if (strcmp(c->key, "email") == 0) {
            /* Only an account holder moving to an address that already has
             * one is refused: one login per e-mail address. */
            stmt = db_stmt(app->db, "SELECT 1 FROM person o JOIN person p ON p.id = ?2"
                                    " WHERE p.password_hash IS NOT NULL AND o.email = ?1"
                                    " AND o.id <> ?2 AND (o.password_hash IS NOT NULL OR ?3)");
        } else {
            continue;
        }
        if (stmt == NULL)
            continue;
        sqlite3_bind_text(stmt, 1, c->new_value, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 2, id);
        if (strcmp(c->key, "email") == 0)
            sqlite3_bind_int(stmt, 3, is_self);
        taken = sqlite3_step(stmt) == SQLITE_ROW;
        sqlite3_reset(stmt);
        if (taken) {
            const char *message =
                strcmp(c->key, "licence_number") == 0
                    ? "Ce numéro de licence est déjà attribué à une autre personne."
                : is_self ? "Cette adresse e-mail est déjà celle d'une autre fiche : demandez au "
                            "club de la modifier pour vous."
                          : "Une autre personne a déjà un compte avec cette adresse e-mail.";
            if (req != NULL)
                http_respond_json(req, 409,
                                  json_pack("{s:{s:s,s:s,s:{s:s}}}", "error", "code", "conflict",
                                            "message", message, "fields", c->key, message));
            return -1;
        }
    }
    return 0;
}

static int audit(struct app *app, const struct auth_user *user, int64_t person_id,
                 const char *action, const char *field, const char *old_value,
                 const char *new_value, const char *now)
{
    sqlite3_stmt *stmt = db_stmt(app->db, "INSERT INTO audit_log (at, actor_id, person_id, action,"
                                          " field, old_value, new_value)"
                                          " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    int rc;

    if (stmt == NULL)
        return -1;
    sqlite3_bind_text(stmt, 1, now, -1, SQLITE_STATIC);
    if (user != NULL && user->person_id != 0)
        sqlite3_bind_int64(stmt, 2, user->person_id);
    sqlite3_bind_int64(stmt, 3, person_id);
    sqlite3_bind_text(stmt, 4, action, -1, SQLITE_STATIC);
    db_bind_text_or_null(stmt, 5, field);
    sqlite3_bind_text(stmt, 6, old_value, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 7, new_value, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt) == SQLITE_DONE ? 0 : -1;
    sqlite3_reset(stmt);
    return rc;
}

int api_audit(struct app *app, const struct auth_user *user, int64_t person_id,
              const char *action, const char *field, const char *old_value,
              const char *new_value)
{
    char now[32];

    db_now(now, sizeof(now));
    return audit(app, user, person_id, action, field, old_value, new_value, now);
}

/* Writes set to person id inside the caller's transaction, with one audit
 * row per field. Returns 0 or -1 (database error). */
static int write_changes(struct app *app, const struct auth_user *user, int64_t id,
                         const struct change_set *set, const char *action)
{
    sqlite3_stmt *stmt;
    char now[32];

    db_now(now, sizeof(now));
    for (size_t i = 0; i < set->count; i++) {
        const struct change *c = &set->items[i];
        int column = core_column_index(c->key);

        if (column >= 0) {
            stmt = db_stmt(app->db, core_columns[column].update_sql);
            if (stmt == NULL)
                return -1;
            sqlite3_bind_int64(stmt, 1, id);
            sqlite3_bind_text(stmt, 2, c->new_value, -1, SQLITE_STATIC);
        } else if (c->new_value != NULL) {
            stmt = db_stmt(app->db, "INSERT INTO person_field (person_id, key, value)"
                                    " VALUES (?1, ?2, ?3) ON CONFLICT (person_id, key)"
                                    " DO UPDATE SET value = excluded.value");
            if (stmt == NULL)
                return -1;
            sqlite3_bind_int64(stmt, 1, id);
            sqlite3_bind_text(stmt, 2, c->key, -1, SQLITE_STATIC);
            sqlite3_bind_text(stmt, 3, c->new_value, -1, SQLITE_STATIC);
        } else {
            stmt = db_stmt(app->db, "DELETE FROM person_field WHERE person_id = ?1 AND key = ?2");
            if (stmt == NULL)
                return -1;
            sqlite3_bind_int64(stmt, 1, id);
            sqlite3_bind_text(stmt, 2, c->key, -1, SQLITE_STATIC);
        }
        if (sqlite3_step(stmt) != SQLITE_DONE) {
            sqlite3_reset(stmt);
            return -1;
        }
        sqlite3_reset(stmt);
        if (strcmp(c->key, "licence_number") == 0 && c->new_value != NULL) {
            /* A valid number replaces a raw value kept from an import. */
            stmt = db_stmt(app->db, "UPDATE person SET licence_raw = NULL WHERE id = ?1");
            if (stmt == NULL)
                return -1;
            sqlite3_bind_int64(stmt, 1, id);
            sqlite3_step(stmt);
            sqlite3_reset(stmt);
        }
        if (audit(app, user, id, action, c->key, c->old_value, c->new_value, now) != 0)
            return -1;
    }

    stmt = db_stmt(app->db, "UPDATE person SET updated_at = ?2 WHERE id = ?1");
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_text(stmt, 2, now, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        sqlite3_reset(stmt);
        return -1;
    }
    sqlite3_reset(stmt);
    return person_refresh_keys(app->db, id) == SQLITE_OK ? 0 : -1;
}

/* Runs the plugins' person_created or person_updated hooks after a commit,
 * with the record as docs/plugins.md describes it: id, the core fields,
 * "fields" for the plugin fields, licence_type (of the latest licence) and
 * roles, plus "changes" ({field: {old, new}}) for an update. Returns the
 * object {plugin: returned value} of the plugins that returned something
 * (new reference), or NULL when none did. Failing handlers are logged by
 * the engine and do not undo the edit. */
static json_t *run_person_hook(struct app *app, enum script_hook event, int64_t id,
                               const struct change_set *set)
{
    struct api_scripts scripts;
    json_t *payload = NULL, *values = NULL, *plugin_fields, *result = NULL;
    sqlite3_stmt *stmt;
    const char *key;
    json_t *value;

    api_scripts_acquire(app, &scripts);
    if (scripts.state == NULL || (values = person_values(app, id, NULL)) == NULL)
        goto done;

    payload = json_pack("{s:I,s:o}", "id", (json_int_t)id, "roles",
                        api_roles_json(person_roles(app, id)));
    plugin_fields = json_object();
    json_object_foreach(values, key, value) {
        const struct field_def *f = fields_find(scripts.fields, key);
        json_object_set(f != NULL && f->plugin != NULL ? plugin_fields : payload, key, value);
    }
    json_object_set_new(payload, "fields", plugin_fields);
    stmt = db_stmt(app->db, "SELECT type FROM licence WHERE person_id = ?1"
                            " ORDER BY season DESC LIMIT 1");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, id);
        if (sqlite3_step(stmt) == SQLITE_ROW)
            json_object_set_new(payload, "licence_type", api_column_json(stmt, 0));
        sqlite3_reset(stmt);
    }
    if (set != NULL) {
        json_t *changes = json_object();

        for (size_t i = 0; i < set->count; i++) {
            json_object_set_new(changes, set->items[i].key,
                                json_pack("{s:s?,s:s?}", "old", set->items[i].old_value, "new",
                                          set->items[i].new_value));
        }
        json_object_set_new(payload, "changes", changes);
    }
    script_run_hook(scripts.state, event, payload, &result);
    if (result != NULL && json_object_size(result) == 0) {
        json_decref(result);
        result = NULL;
    }

done:
    json_decref(values);
    json_decref(payload);
    api_scripts_release(&scripts);
    return result;
}

json_t *api_rider_created_hook(struct app *app, int64_t id)
{
    return run_person_hook(app, SCRIPT_HOOK_PERSON_CREATED, id, NULL);
}

static int set_roles(struct app *app, const struct auth_user *user, int64_t id, unsigned old_roles,
                     unsigned new_roles)
{
    sqlite3_stmt *stmt;
    char now[32];

    db_now(now, sizeof(now));
    for (unsigned bit = AUTH_ROLE_GERANT; bit <= AUTH_ROLE_PROPRIETAIRE; bit <<= 1) {
        const char *role = api_role_name(bit);
        int had = (old_roles & bit) != 0, has = (new_roles & bit) != 0;

        if (had == has)
            continue;
        stmt = db_stmt(app->db, has ? "INSERT INTO person_role (person_id, role) VALUES (?1, ?2)"
                                    : "DELETE FROM person_role WHERE person_id = ?1 AND role = ?2");
        if (stmt == NULL)
            return -1;
        sqlite3_bind_int64(stmt, 1, id);
        sqlite3_bind_text(stmt, 2, role, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) != SQLITE_DONE) {
            sqlite3_reset(stmt);
            return -1;
        }
        sqlite3_reset(stmt);
        if (audit(app, user, id, has ? "role.add" : "role.remove", "role", has ? NULL : role,
                  has ? role : NULL, now) != 0)
            return -1;
    }
    return 0;
}

/* Parses {"roles": [...]}. Returns the mask, or -1 after responding 422. */
static long parse_roles(struct http_request *req, json_t *list)
{
    unsigned roles = 0;
    size_t i;
    json_t *item;

    if (!json_is_array(list)) {
        api_respond_validation(req, json_pack("{s:s}", "roles", "Donnez une liste de rôles."));
        return -1;
    }
    json_array_foreach(list, i, item) {
        unsigned bit = json_is_string(item) ? script_role_from_name(json_string_value(item)) : 0;
        if (bit == 0) {
            api_respond_validation(
                req, json_pack("{s:s}", "roles",
                               "Rôle inconnu : les rôles sont gerant, employe, client, visiteur, "
                               "comptable et proprietaire."));
            return -1;
        }
        roles |= bit;
    }
    return roles;
}

/* Checks rider.roles.update for every role that changes. Returns 0, or
 * responds 403 and returns -1. */
static int check_role_rights(struct app *app, struct http_request *req,
                             const struct auth_user *user, int64_t id, unsigned old_roles,
                             unsigned new_roles)
{
    for (unsigned bit = AUTH_ROLE_GERANT; bit <= AUTH_ROLE_PROPRIETAIRE; bit <<= 1) {
        const char *role = api_role_name(bit);

        if ((old_roles & bit) == (new_roles & bit))
            continue;
        if (!auth_allowed_role(app, user, "rider.roles.update", id, role)) {
            api_respond_errorf(req, 403, "forbidden",
                               "Vous n'avez pas le droit d'attribuer ou de retirer le rôle « %s ».",
                               role);
            return -1;
        }
    }
    return 0;
}

static int manager_count(struct app *app)
{
    sqlite3_stmt *stmt = db_stmt(app->db, "SELECT count(*) FROM person_role WHERE role = 'gerant'");
    int count = 0;

    if (stmt == NULL)
        return 0;
    if (sqlite3_step(stmt) == SQLITE_ROW)
        count = sqlite3_column_int(stmt, 0);
    sqlite3_reset(stmt);
    return count;
}

int64_t api_rider_create(struct app *app, struct http_request *req, const struct auth_user *user,
                         json_t *fields, unsigned roles, int (*in_tx)(void *arg, int64_t id),
                         void *arg)
{
    json_t *current = json_object();
    struct change_set set = {0};
    sqlite3_stmt *stmt;
    char now[32];
    int64_t id = 0;

    if (collect_changes(app, req, user, fields, current, 1, &set, NULL) != 0 ||
        check_conflicts(app, req, 0, 0, &set) != 0)
        goto done;

    db_now(now, sizeof(now));
    if (db_begin(app->db) != SQLITE_OK) {
        api_respond_db_error(req, app, "begin");
        goto done;
    }
    stmt = db_stmt(app->db, "INSERT INTO person (created_at, updated_at) VALUES (?1, ?1)");
    if (stmt == NULL)
        goto rollback;
    sqlite3_bind_text(stmt, 1, now, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        sqlite3_reset(stmt);
        goto rollback;
    }
    sqlite3_reset(stmt);
    id = sqlite3_last_insert_rowid(db_handle(app->db));
    if (write_changes(app, user, id, &set, "create") != 0 || set_roles(app, user, id, 0, roles) != 0)
        goto rollback;
    if (in_tx != NULL && in_tx(arg, id) != 0) {
        db_rollback(app->db);
        id = 0;
        goto done;
    }
    if (db_commit(app->db) != SQLITE_OK)
        goto rollback;
    api_data_changed();
    log_info("api", "%s: person %lld created by %lld", req->id, (long long)id,
             (long long)user->person_id);
    goto done;

rollback:
    api_respond_db_error(req, app, "rider create");
    db_rollback(app->db);
    id = 0;
done:
    change_set_clear(&set);
    json_decref(current);
    return id;
}

/* Returns 1 when current has a non-empty value for key. */
static int has_value(json_t *current, const char *key)
{
    const char *stored = json_string_value(json_object_get(current, key));

    return stored != NULL && stored[0] != '\0';
}

/* Adds to set the values of fields for one group of keys, validated as a
 * PATCH by user would be. It adds nothing when the record has one of them
 * or when one value is invalid. */
static void fill_group(struct app *app, struct http_request *req, const struct auth_user *user,
                       int64_t id, json_t *fields, const char *const *keys, json_t *current,
                       struct change_set *set)
{
    json_t *fill = json_object();
    struct change_set group = {0};
    const char *form_country = json_string_value(json_object_get(fields, "country"));
    int rejected = 0, postal = 0;

    for (size_t i = 0; keys[i] != NULL; i++) {
        const char *incoming = json_string_value(json_object_get(fields, keys[i]));

        if (has_value(current, keys[i]))
            goto done;
        if (strcmp(keys[i], "postcode") == 0)
            postal = 1;
        if (incoming != NULL && incoming[0] != '\0')
            json_object_set_new(fill, keys[i], json_string(incoming));
    }
    /* A postcode is checked against its country. The form's country comes
     * with the address when the record has none. An address in another
     * country than the record's is left for staff to enter. */
    if (postal && form_country != NULL && form_country[0] != '\0') {
        if (!has_value(current, "country"))
            json_object_set_new(fill, "country", json_string(form_country));
        else if (strcmp(json_string_value(json_object_get(current, "country")), form_country) != 0)
            goto done;
    }
    if (json_object_size(fill) == 0)
        goto done;
    collect_changes(app, req, user, fill, current, 0, &group, &rejected);
    if (!rejected && check_conflicts(app, NULL, id, 0, &group) != 0)
        rejected = 1; /* a licence number or login address another person has */
    if (rejected || set->count + group.count > sizeof(set->items) / sizeof(set->items[0])) {
        log_info("api", "%s: person %lld: group %s not filled (a value is invalid, taken or "
                        "not allowed)", req->id, (long long)id, keys[0]);
        goto done;
    }
    memcpy(set->items + set->count, group.items, group.count * sizeof(group.items[0]));
    set->count += group.count;
    group.count = 0; /* the values now belong to set */

done:
    change_set_clear(&group);
    json_decref(fill);
}

int api_rider_fill_empty(struct app *app, struct http_request *req, const struct auth_user *user,
                         int64_t id, json_t *fields, const char *const *const *groups,
                         int (*in_tx)(void *arg, int64_t id), void *arg, size_t *filled)
{
    json_t *current = NULL, *hooks;
    struct change_set set = {0};
    int rc = -1;

    *filled = 0;
    if (db_begin(app->db) != SQLITE_OK) {
        api_respond_db_error(req, app, "begin");
        goto done;
    }
    /* Read inside the transaction: a value written meanwhile by another
     * connection is then seen, and kept. */
    current = person_values(app, id, NULL);
    if (current == NULL) {
        http_respond_error(req, 404, "not_found", "Cavalier introuvable.");
        db_rollback(app->db);
        goto done;
    }
    /* Without the right to edit this record, the decision goes on and
     * fills nothing. */
    if (auth_allowed(app, user, "rider.update", id)) {
        for (size_t g = 0; groups[g] != NULL; g++)
            fill_group(app, req, user, id, fields, groups[g], current, &set);
    }
    if (set.count > 0 && write_changes(app, user, id, &set, "update") != 0) {
        api_respond_db_error(req, app, "rider fill");
        db_rollback(app->db);
        goto done;
    }
    if (in_tx != NULL && in_tx(arg, id) != 0) {
        db_rollback(app->db);
        goto done;
    }
    if (db_commit(app->db) != SQLITE_OK) {
        api_respond_db_error(req, app, "rider fill");
        db_rollback(app->db);
        goto done;
    }
    api_data_changed();
    *filled = set.count;
    if (set.count > 0) {
        hooks = run_person_hook(app, SCRIPT_HOOK_PERSON_UPDATED, id, &set);
        json_decref(hooks);
    }
    rc = 0;

done:
    change_set_clear(&set);
    json_decref(current);
    return rc;
}

static void handle_create(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_require(app, req, "rider.create", 0);
    json_t *body = NULL, *rider, *hooks;
    long roles = AUTH_ROLE_CLIENT;
    int64_t id;

    if (user == NULL || (body = api_read_object(req)) == NULL)
        return;
    /* The default role comes with rider.create; roles given explicitly
     * are checked one by one. */
    if (json_object_get(body, "roles") != NULL) {
        roles = parse_roles(req, json_object_get(body, "roles"));
        if (roles < 0 || check_role_rights(app, req, user, 0, 0, (unsigned)roles) != 0)
            goto done;
    }
    id = api_rider_create(app, req, user, body, (unsigned)roles, NULL, NULL);
    if (id == 0)
        goto done;
    hooks = api_rider_created_hook(app, id);
    rider = rider_json(app, user, id);
    if (rider == NULL)
        rider = json_pack("{s:I}", "id", (json_int_t)id);
    if (hooks != NULL)
        json_object_set_new(rider, "hook_results", hooks);
    http_respond_json(req, 201, rider);

done:
    json_decref(body);
}

static void handle_update(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    int64_t id = api_param_id(req, "id");
    const struct auth_user *user;
    json_t *body = NULL, *current = NULL, *rider, *hooks = NULL;
    struct change_set set = {0};

    if (id == 0 || (user = auth_require(app, req, "rider.update", id)) == NULL)
        return;
    if ((body = api_read_object(req)) == NULL)
        return;
    current = person_values(app, id, NULL);
    if (current == NULL) {
        http_respond_error(req, 404, "not_found", "Cavalier introuvable.");
        goto done;
    }
    if (collect_changes(app, req, user, body, current, 0, &set, NULL) != 0 ||
        check_conflicts(app, req, id, user->person_id == id, &set) != 0)
        goto done;
    if (set.count > 0) {
        if (db_begin(app->db) != SQLITE_OK) {
            api_respond_db_error(req, app, "begin");
            goto done;
        }
        if (write_changes(app, user, id, &set, "update") != 0 || db_commit(app->db) != SQLITE_OK) {
            api_respond_db_error(req, app, "rider update");
            db_rollback(app->db);
            goto done;
        }
        api_data_changed();
        log_info("api", "%s: person %lld: %zu fields updated", req->id, (long long)id, set.count);
        for (size_t i = 0; i < set.count; i++) {
            /* A password link mailed to the old address must not work
             * once the address is corrected. */
            if (strcmp(set.items[i].key, "email") == 0) {
                token_void_person(app->db, id);
                break;
            }
        }
        hooks = run_person_hook(app, SCRIPT_HOOK_PERSON_UPDATED, id, &set);
    }
    rider = rider_json(app, user, id);
    if (rider == NULL)
        rider = json_object();
    if (hooks != NULL)
        json_object_set_new(rider, "hook_results", hooks);
    http_respond_json(req, 200, rider);

done:
    change_set_clear(&set);
    json_decref(current);
    json_decref(body);
}

static void handle_roles(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    int64_t id = api_param_id(req, "id");
    const struct auth_user *user;
    json_t *body = NULL;
    unsigned old_roles;
    long roles;

    if (id == 0 || (user = auth_authenticate(app, req)) == NULL)
        return;
    if ((body = api_read_object(req)) == NULL)
        return;
    if (!person_exists(app, id)) {
        http_respond_error(req, 404, "not_found", "Cavalier introuvable.");
        goto done;
    }
    if ((roles = parse_roles(req, json_object_get(body, "roles"))) < 0)
        goto done;
    old_roles = person_roles(app, id);
    /* Each role granted or removed is checked with target.role set; saving
     * the same roles again needs only the right to edit the record. */
    if (old_roles == (unsigned)roles) {
        if (auth_require(app, req, "rider.update", id) == NULL)
            goto done;
    } else if (user->must_change_password) {
        http_respond_error(req, 403, "password_change_required",
                           "Vous devez d'abord choisir un nouveau mot de passe.");
        goto done;
    } else if (check_role_rights(app, req, user, id, old_roles, (unsigned)roles) != 0) {
        goto done;
    }
    if ((old_roles & AUTH_ROLE_GERANT) && !(roles & AUTH_ROLE_GERANT) && manager_count(app) <= 1) {
        http_respond_error(req, 409, "conflict",
                           "Le club doit garder au moins un gérant : nommez-en un autre avant "
                           "de retirer ce rôle.");
        goto done;
    }
    if (db_begin(app->db) != SQLITE_OK) {
        api_respond_db_error(req, app, "begin");
        goto done;
    }
    if (set_roles(app, user, id, old_roles, (unsigned)roles) != 0 ||
        db_commit(app->db) != SQLITE_OK) {
        api_respond_db_error(req, app, "roles update");
        db_rollback(app->db);
        goto done;
    }
    api_data_changed();
    log_info("api", "%s: person %lld roles set to %#lx", req->id, (long long)id, roles);
    http_respond_json(req, 200, json_pack("{s:I,s:o}", "id", (json_int_t)id, "roles",
                                          api_roles_json((unsigned)roles)));

done:
    json_decref(body);
}

static void handle_delete(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    int64_t id = api_param_id(req, "id");
    const struct auth_user *user;
    sqlite3_stmt *stmt;
    char *name = NULL;

    if (id == 0 || (user = auth_require(app, req, "rider.delete", id)) == NULL)
        return;
    stmt = db_stmt(app->db, "SELECT trim(first_name || ' ' || last_name) FROM person WHERE id = ?1");
    if (stmt == NULL) {
        api_respond_db_error(req, app, "rider delete");
        return;
    }
    sqlite3_bind_int64(stmt, 1, id);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        name = strdup((const char *)sqlite3_column_text(stmt, 0));
    sqlite3_reset(stmt);
    if (name == NULL) {
        http_respond_error(req, 404, "not_found", "Cavalier introuvable.");
        return;
    }
    if (id == user->person_id) {
        http_respond_error(req, 409, "conflict", "Vous ne pouvez pas supprimer votre propre fiche.");
        goto done;
    }
    if ((person_roles(app, id) & AUTH_ROLE_GERANT) && manager_count(app) <= 1) {
        http_respond_error(req, 409, "conflict", "Le dernier gérant du club ne peut pas être supprimé.");
        goto done;
    }
    if (db_begin(app->db) != SQLITE_OK) {
        api_respond_db_error(req, app, "begin");
        goto done;
    }
    stmt = db_stmt(app->db, "DELETE FROM person WHERE id = ?1");
    if (stmt == NULL || api_audit(app, user, id, "delete", NULL, name, NULL) != 0) {
        api_respond_db_error(req, app, "rider delete");
        db_rollback(app->db);
        goto done;
    }
    sqlite3_bind_int64(stmt, 1, id);
    if (sqlite3_step(stmt) != SQLITE_DONE || db_commit(app->db) != SQLITE_OK) {
        sqlite3_reset(stmt);
        api_respond_db_error(req, app, "rider delete");
        db_rollback(app->db);
        goto done;
    }
    sqlite3_reset(stmt);
    api_data_changed();
    log_info("api", "%s: person %lld deleted by %lld", req->id, (long long)id,
             (long long)user->person_id);
    http_respond(req, 204, NULL, NULL, 0);

done:
    free(name);
}

static void handle_history(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    int64_t id = api_param_id(req, "id");
    int page;
    sqlite3_stmt *stmt;
    json_t *items;
    json_int_t total = 0;

    if (id == 0 || auth_require(app, req, "rider.read", id) == NULL)
        return;
    page = api_query_int(req, "page", 1, 1, 1000000);
    if (page < 0) {
        api_respond_validation(req, json_pack("{s:s}", "page", "Doit être un nombre entier positif."));
        return;
    }
    stmt = db_stmt(app->db,
                   "SELECT a.at, a.actor_id, trim(p.first_name || ' ' || p.last_name), a.action,"
                   " a.field, a.old_value, a.new_value, a.import_run_id FROM audit_log a"
                   " LEFT JOIN person p ON p.id = a.actor_id WHERE a.person_id = ?1"
                   " ORDER BY a.id DESC LIMIT ?2 OFFSET ?3");
    if (stmt == NULL) {
        api_respond_db_error(req, app, "history");
        return;
    }
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_int(stmt, 2, HISTORY_PER_PAGE);
    sqlite3_bind_int64(stmt, 3, (sqlite3_int64)(page - 1) * HISTORY_PER_PAGE);
    items = json_array();
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        json_t *actor = sqlite3_column_type(stmt, 1) == SQLITE_NULL
                            ? json_null()
                            : json_pack("{s:I,s:o}", "id", (json_int_t)sqlite3_column_int64(stmt, 1),
                                        "name", api_column_json(stmt, 2));
        json_array_append_new(
            items, json_pack("{s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "at", api_column_json(stmt, 0),
                             "actor", actor, "action", api_column_json(stmt, 3), "field",
                             api_column_json(stmt, 4), "old_value", api_column_json(stmt, 5),
                             "new_value", api_column_json(stmt, 6), "import_run_id",
                             sqlite3_column_type(stmt, 7) == SQLITE_NULL
                                 ? json_null()
                                 : json_integer(sqlite3_column_int64(stmt, 7))));
    }
    sqlite3_reset(stmt);
    stmt = db_stmt(app->db, "SELECT count(*) FROM audit_log WHERE person_id = ?1");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, id);
        if (sqlite3_step(stmt) == SQLITE_ROW)
            total = sqlite3_column_int64(stmt, 0);
        sqlite3_reset(stmt);
    }
    http_respond_json(req, 200, json_pack("{s:I,s:i,s:i,s:o}", "total", total, "page", page,
                                          "per_page", HISTORY_PER_PAGE, "items", items));
}

void api_riders_register_routes(struct app *app)
{
    api_riders_list_register_routes(app);
    router_add(app->router, "POST", "/api/v1/riders", handle_create, app, 0);
    router_add(app->router, "GET", "/api/v1/riders/:id", handle_get, app, 0);
    router_add(app->router, "PATCH", "/api/v1/riders/:id", handle_update, app, 0);
    router_add(app->router, "DELETE", "/api/v1/riders/:id", handle_delete, app, 0);
    router_add(app->router, "PUT", "/api/v1/riders/:id/roles", handle_roles, app, 0);
    router_add(app->router, "GET", "/api/v1/riders/:id/history", handle_history, app, 0);
}
