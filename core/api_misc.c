/*
 * Reference data of the JSON API: the field catalogue (core and plugin
 * fields), the Galop scale, and the status of the script engine.
 */
#include <string.h>

#include "api.h"
#include "auth.h"
#include "script.h"

/* Form section of a core field; plugin fields are grouped by plugin. */
static const char *core_group(const char *key)
{
    static const struct {
        const char *key;
        const char *group;
    } groups[] = {
        {"last_name", "Identité"},   {"first_name", "Identité"},   {"birth_date", "Identité"},
        {"sex", "Identité"},         {"email", "Contact"},         {"phone", "Contact"},
        {"mobile", "Contact"},       {"address", "Adresse"},       {"address2", "Adresse"},
        {"postcode", "Adresse"},     {"city", "Adresse"},          {"country", "Adresse"},
        {"licence_number", "Licence"}, {"galop", "Licence"},
    };

    for (size_t i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
        if (strcmp(groups[i].key, key) == 0)
            return groups[i].group;
    }
    return "Autres";
}

static json_t *list_json(char **list)
{
    json_t *out;

    if (list == NULL)
        return json_null();
    out = json_array();
    for (size_t i = 0; list[i] != NULL; i++)
        json_array_append_new(out, json_string(list[i]));
    return out;
}

/* Reference data is readable by anyone who may read riders, or at least
 * their own record. Responds and returns NULL otherwise. */
static const struct auth_user *require_reader(struct app *app, struct http_request *req)
{
    const struct auth_user *user = auth_authenticate(app, req);

    if (user == NULL)
        return NULL;
    if (user->person_id != 0 && auth_allowed(app, user, "rider.read", user->person_id) &&
        !user->must_change_password)
        return user;
    return auth_require(app, req, "rider.read", 0);
}

static void handle_fields(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    struct api_scripts scripts;
    json_t *fields;

    if (require_reader(app, req) == NULL)
        return;
    api_scripts_acquire(app, &scripts);
    fields = json_array();
    for (size_t i = 0; i < scripts.fields->count; i++) {
        const struct field_def *f = &scripts.fields->fields[i];
        json_t *item = json_pack(
            "{s:s,s:s,s:s,s:s,s:o,s:o,s:b,s:o,s:o}", "key", f->key, "label", f->label, "type",
            fields_type_names[f->type], "group", f->plugin ? f->plugin : core_group(f->key),
            "plugin", f->plugin ? json_string(f->plugin) : json_null(), "choices",
            list_json(f->choices), "required", f->required, "editable_by", list_json(f->edit),
            "visible_to", list_json(f->view));

        if (item == NULL)
            continue;
        if (f->max_length > 0)
            json_object_set_new(item, "max_length", json_integer(f->max_length));
        if (f->has_min)
            json_object_set_new(item, "min", json_real(f->min));
        if (f->has_max)
            json_object_set_new(item, "max", json_real(f->max));
        json_array_append_new(fields, item);
    }
    api_scripts_release(&scripts);
    http_respond_json(req, 200, json_pack("{s:o}", "fields", fields));
}

static void handle_galops(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    sqlite3_stmt *stmt;
    json_t *items;

    if (require_reader(app, req) == NULL)
        return;
    stmt = db_stmt(app->db, "SELECT code, label, track, rank FROM galop_level ORDER BY rank, code");
    if (stmt == NULL) {
        api_respond_db_error(req, app, "galops");
        return;
    }
    items = json_array();
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        json_array_append_new(items,
                              json_pack("{s:s,s:s,s:s,s:I}", "code",
                                        (const char *)sqlite3_column_text(stmt, 0), "label",
                                        (const char *)sqlite3_column_text(stmt, 1), "track",
                                        (const char *)sqlite3_column_text(stmt, 2), "rank",
                                        (json_int_t)sqlite3_column_int64(stmt, 3)));
    }
    sqlite3_reset(stmt);
    http_respond_json(req, 200, items);
}

static void handle_scripts_status(struct http_request *req, void *ctx)
{
    struct app *app = ctx;

    if (auth_require(app, req, "scripts.status", 0) == NULL)
        return;
    if (app->scripts == NULL) {
        http_respond_error(req, 503, "unavailable", "Le moteur de scripts n'est pas démarré.");
        return;
    }
    http_set_header(req, "Cache-Control", "no-store");
    http_respond_json(req, 200, script_engine_status(app->scripts));
}

void api_misc_register_routes(struct app *app)
{
    router_add(app->router, "GET", "/api/v1/fields", handle_fields, app, 0);
    router_add(app->router, "GET", "/api/v1/galops", handle_galops, app, 0);
    router_add(app->router, "GET", "/api/v1/scripts/status", handle_scripts_status, app, 0);
}
