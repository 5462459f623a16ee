/*
 * Plugins: loading plugins/<name>/plugin.lua into a state, parsing its
 * declarations (fields, hooks, routes) into the version, the plugin
 * migrations, and running hooks, routes and field validate functions.
 *
 * A plugin that fails to load (syntax error, invalid declaration, failing
 * selftest) rejects the whole version, like a broken script: the running
 * version keeps serving, so the plugin's fields never disappear from forms
 * and imports because of a bad edit.
 */
#include "script_internal.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "util.h"

#define MAX_ROUTES 256
#define MAX_PATH_SEGMENTS 16

/* ---- Declarations ---------------------------------------------------------- */

void script_plugin_decls_free(struct script_version *v)
{
    for (size_t i = 0; i < v->plugin_count; i++) {
        free(v->plugins[i].name);
        free(v->plugins[i].version);
        free(v->plugins[i].file);
    }
    free(v->plugins);
    for (size_t i = 0; i < v->route_count; i++) {
        free(v->routes[i].plugin);
        free(v->routes[i].method);
        free(v->routes[i].path);
    }
    free(v->routes);
    for (size_t i = 0; i < v->migration_count; i++) {
        free((char *)v->migrations[i].scope);
        free((char *)v->migrations[i].name);
    }
    free(v->migrations);
}

static int is_plugin_file(const char *name)
{
    const char *slash;

    if (strncmp(name, "plugins/", 8) != 0)
        return 0;
    slash = strchr(name + 8, '/');
    return slash != NULL && strcmp(slash, "/plugin.lua") == 0;
}

/* Reads an optional string field of the table at index. Returns a copy,
 * NULL when absent; sets *bad when present but not a string. */
static char *opt_string(lua_State *L, int index, const char *key, int *bad)
{
    char *out = NULL;
    int type = lua_getfield(L, index, key);

    if (type == LUA_TSTRING)
        out = strdup(lua_tostring(L, -1));
    else if (type != LUA_TNIL)
        *bad = 1;
    lua_pop(L, 1);
    return out;
}

/* Reads an optional list of strings. Returns a NULL-terminated array or
 * NULL when absent; on a non-string entry or too many entries sets *bad. */
static char **opt_list(lua_State *L, int index, const char *key, int *bad)
{
    char **list = NULL;
    lua_Integer n;

    if (lua_getfield(L, index, key) == LUA_TNIL) {
        lua_pop(L, 1);
        return NULL;
    }
    if (!lua_istable(L, -1) || (n = (lua_Integer)lua_rawlen(L, -1)) > FIELDS_MAX_LIST) {
        *bad = 1;
        lua_pop(L, 1);
        return NULL;
    }
    list = calloc((size_t)n + 1, sizeof(*list));
    for (lua_Integer i = 1; list != NULL && i <= n; i++) {
        if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
            *bad = 1;
        else
            list[i - 1] = strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return list;
}

/* Parses the field declaration on top of the stack into def. Stack: [-0, +0]. */
static int parse_field(lua_State *L, const char *plugin, int position, struct field_def *def,
                       char **err)
{
    int bad = 0;
    char *type = NULL;
    int type_id;

    memset(def, 0, sizeof(*def));
    def->key = opt_string(L, -1, "key", &bad);
    def->label = opt_string(L, -1, "label", &bad);
    type = opt_string(L, -1, "type", &bad);
    def->pattern = opt_string(L, -1, "pattern", &bad);
    def->choices = opt_list(L, -1, "choices", &bad);
    def->aliases = opt_list(L, -1, "csv_aliases", &bad);
    def->view = opt_list(L, -1, "view", &bad);
    def->edit = opt_list(L, -1, "edit", &bad);
    def->plugin = strdup(plugin);

    lua_getfield(L, -1, "required");
    def->required = lua_toboolean(L, -1);
    lua_getfield(L, -2, "public");
    def->is_public = lua_toboolean(L, -1);
    lua_getfield(L, -3, "min");
    if ((def->has_min = lua_isnumber(L, -1)))
        def->min = lua_tonumber(L, -1);
    lua_getfield(L, -4, "max");
    if ((def->has_max = lua_isnumber(L, -1)))
        def->max = lua_tonumber(L, -1);
    lua_getfield(L, -5, "length");
    def->max_length = (int)lua_tointeger(L, -1);
    lua_getfield(L, -6, "validate");
    def->has_validate = lua_isfunction(L, -1);
    lua_pop(L, 6);

    for (int l = 0; l < 2; l++) {
        char **roles = l == 0 ? def->view : def->edit;
        for (size_t i = 0; roles != NULL && roles[i] != NULL; i++)
            bad |= script_role_from_name(roles[i]) == 0;
    }
    type_id = type ? fields_type_from_name(type) : -1;
    if (bad || def->key == NULL || def->label == NULL || type_id < 0) {
        *err = str_printf("fields[%d] (%s): key, label and type are required; type is one of "
                          "text, number, date, boolean, choice, email, phone; pattern is a "
                          "string; choices, csv_aliases, view and edit are lists of at most %d "
                          "strings; view and edit contain role names (gerant, employe, client, "
                          "visiteur, comptable, proprietaire)",
                          position, def->key ? def->key : "?", FIELDS_MAX_LIST);
        free(type);
        fields_def_clear(def);
        return -1;
    }
    def->type = (enum field_type)type_id;
    free(type);
    return 0;
}

static int add_validate_ref(struct script_state *st, int ref)
{
    int *grown = realloc(st->validate_refs, (st->validate_count + 1) * sizeof(*grown));

    if (grown == NULL)
        return -1;
    st->validate_refs = grown;
    st->validate_refs[st->validate_count++] = ref;
    return 0;
}

/* Parses fields = {...} of the plugin table on top of the stack. */
static int load_fields(struct script_state *st, const char *plugin, int parse, char **err)
{
    lua_State *L = st->L;
    lua_Integer n;
    int rc = 0;

    if (lua_getfield(L, -1, "fields") == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1)) {
        *err = strdup("fields must be a list of tables");
        lua_pop(L, 1);
        return -1;
    }
    n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; rc == 0 && i <= n; i++) {
        struct field_def def;
        char *field_err = NULL;

        if (lua_rawgeti(L, -1, i) != LUA_TTABLE) {
            *err = str_printf("fields[%d] must be a table", (int)i);
            rc = -1;
        } else if (parse_field(L, plugin, (int)i, &def, err) != 0) {
            rc = -1;
        } else {
            int has_validate = def.has_validate;
            def.validate_slot = has_validate ? (int)st->validate_count : -1;
            if (has_validate) {
                lua_getfield(L, -1, "validate");
                if (add_validate_ref(st, luaL_ref(L, LUA_REGISTRYINDEX)) != 0)
                    rc = -1;
            }
            if (parse && rc == 0 &&
                fields_catalogue_add(st->version->fields, &def, &field_err) != 0) {
                *err = str_printf("fields[%d]: %s", (int)i, field_err);
                free(field_err);
                rc = -1;
            } else if (!parse) {
                fields_def_clear(&def);
            }
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

static int hook_index(const char *name)
{
    for (int h = 0; h < SCRIPT_HOOK_COUNT; h++) {
        if (strcmp(name, script_hook_names[h]) == 0)
            return h;
    }
    return -1;
}

/* Parses hooks = { event = function } of the plugin table on top of the
 * stack into the state's hook references for plugin number p. */
static int load_hooks(struct script_state *st, size_t p, int *declared, char **err)
{
    lua_State *L = st->L;

    if (lua_getfield(L, -1, "hooks") == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1)) {
        *err = strdup("hooks must be a table of functions");
        lua_pop(L, 1);
        return -1;
    }
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
        int h = lua_type(L, -2) == LUA_TSTRING ? hook_index(lua_tostring(L, -2)) : -1;
        if (h < 0 || !lua_isfunction(L, -1)) {
            *err = str_printf("hooks.%s: unknown event or not a function (events: "
                              "person_created, person_updated, import_row_mapped, "
                              "import_finished, consent_recorded)",
                              lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?");
            lua_pop(L, 3);
            return -1;
        }
        declared[h] = 1;
        st->hook_refs[p * SCRIPT_HOOK_COUNT + (size_t)h] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    lua_pop(L, 1);
    return 0;
}

static int valid_route(const char *method, const char *path)
{
    static const char *const methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    int ok = 0;

    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++)
        ok |= strcmp(method, methods[i]) == 0;
    return ok && path[0] == '/' && strlen(path) < 256 && strstr(path, "..") == NULL;
}

/* Appends a route declaration (parse) and stores the handler on top of the
 * stack as the next route reference. Worker states find their routes in
 * the same order as the main state, because both load the same sorted
 * files. Takes ownership of method and path. Stack: [-1, +0]. */
static int add_route(struct script_state *st, const char *plugin, int parse, char *method,
                     char *path)
{
    struct script_version *v = st->version;
    size_t index = st->routes_loaded;

    if (parse) {
        struct script_route_decl *decls = NULL;
        int *refs = NULL;

        if (v->route_count < MAX_ROUTES)
            decls = realloc(v->routes, (v->route_count + 1) * sizeof(*decls));
        if (decls != NULL)
            v->routes = decls;
        if (decls != NULL)
            refs = realloc(st->route_refs, (v->route_count + 1) * sizeof(*refs));
        if (refs == NULL) {
            free(method);
            free(path);
            lua_pop(st->L, 1);
            return -1;
        }
        st->route_refs = refs;
        decls[index].plugin = strdup(plugin);
        decls[index].method = method;
        decls[index].path = path;
        v->route_count++;
    } else {
        free(method);
        free(path);
        if (index >= v->route_count) {
            lua_pop(st->L, 1);
            return -1;
        }
    }
    st->route_refs[index] = luaL_ref(st->L, LUA_REGISTRYINDEX);
    st->routes_loaded++;
    return 0;
}

/* Parses routes = { { method, path, handler }, ... } of the plugin table on
 * top of the stack. Stack: [-0, +0]. */
static int load_routes(struct script_state *st, const char *plugin, int parse, char **err)
{
    lua_State *L = st->L;
    lua_Integer n;
    int rc = 0;

    if (lua_getfield(L, -1, "routes") == LUA_TNIL) {
        lua_pop(L, 1);
        return 0;
    }
    if (!lua_istable(L, -1)) {
        *err = strdup("routes must be a list of { method, path, handler }");
        lua_pop(L, 1);
        return -1;
    }
    n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; rc == 0 && i <= n; i++) {
        int bad = 0;
        char *method = NULL, *path = NULL;

        if (lua_rawgeti(L, -1, i) == LUA_TTABLE) {
            method = opt_string(L, -1, "method", &bad);
            path = opt_string(L, -1, "path", &bad);
            lua_getfield(L, -1, "handler");
        } else {
            lua_pushnil(L);
        }
        if (bad || method == NULL || path == NULL || !lua_isfunction(L, -1) ||
            !valid_route(method, path)) {
            *err = str_printf("routes[%d]: method (GET, POST, PUT, PATCH or DELETE), path "
                              "(starting with /) and handler (a function) are required",
                              (int)i);
            free(method);
            free(path);
            lua_pop(L, 1);
            rc = -1;
        } else if (add_route(st, plugin, parse, method, path) != 0) {
            *err = str_printf("routes[%d]: more than %d routes or out of memory", (int)i,
                              MAX_ROUTES);
            rc = -1;
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return rc;
}

/* Collects plugins/<name>/migrations/NNNN_label.sql of plugin. */
static int load_migrations(struct script_version *v, const char *plugin, char **err)
{
    char prefix[128];
    size_t plen;

    snprintf(prefix, sizeof(prefix), "plugins/%s/migrations/", plugin);
    plen = strlen(prefix);
    for (size_t i = 0; i < v->file_count; i++) {
        const char *name = v->files[i].name;
        const char *base = name + plen;
        struct script_migration *grown;
        int number = 0;
        size_t digits = 0;

        if (strncmp(name, prefix, plen) != 0 || strchr(base, '/') != NULL)
            continue;
        while (base[digits] >= '0' && base[digits] <= '9') {
            number = number * 10 + (base[digits] - '0');
            digits++;
        }
        if (digits != 4 || base[4] != '_' || number == 0) {
            *err = str_printf("%s: migration file names are NNNN_name.sql (four digits, "
                              "from 0001)",
                              name);
            return -1;
        }
        grown = realloc(v->migrations, (v->migration_count + 1) * sizeof(*grown));
        if (grown == NULL) {
            *err = strdup("out of memory");
            return -1;
        }
        v->migrations = grown;
        grown[v->migration_count].scope = strdup(plugin);
        grown[v->migration_count].number = number;
        grown[v->migration_count].name = strndup(base + 5, strlen(base + 5) - 4);
        grown[v->migration_count].sql = v->files[i].text;
        v->migration_count++;
    }
    return 0;
}

/* Loads one plugin file as plugin number p. Stack: [-0, +0]. */
static int load_plugin(struct script_state *st, const struct script_file *file, size_t p,
                       int parse, char **err)
{
    lua_State *L = st->L;
    struct script_version *v = st->version;
    char dir_name[80];
    const char *start = file->name + 8;
    size_t dlen = (size_t)(strchr(start, '/') - start);
    char *name = NULL, *version = NULL;
    char *decl_err = NULL;
    int declared[SCRIPT_HOOK_COUNT] = {0};
    int bad = 0;
    int rc = -1;

    snprintf(dir_name, sizeof(dir_name), "%.*s", (int)(dlen < 64 ? dlen : 64), start);
    if (script_sandbox_run(st, file->name, file->text, file->len, err) != 0)
        return -1;
    if (!lua_istable(L, -1)) {
        *err = str_printf("%s: plugin.lua must return a table", file->name);
        lua_pop(L, 1);
        return -1;
    }

    name = opt_string(L, -1, "name", &bad);
    version = opt_string(L, -1, "version", &bad);
    if (bad || name == NULL || strcmp(name, dir_name) != 0) {
        decl_err = str_printf("name must be \"%s\", the plugin's directory name", dir_name);
        goto done;
    }
    if (load_fields(st, name, parse, &decl_err) != 0 ||
        load_hooks(st, p, declared, &decl_err) != 0 ||
        load_routes(st, name, parse, &decl_err) != 0 ||
        script_run_selftest(st, NULL, &decl_err) != 0)
        goto done;
    if (parse) {
        if (load_migrations(v, name, &decl_err) != 0)
            goto done;
        v->plugins[p].name = name;
        v->plugins[p].version = version;
        v->plugins[p].file = strdup(file->name);
        memcpy(v->plugins[p].hooks, declared, sizeof(declared));
        v->plugin_count = p + 1;
        name = version = NULL;
    }
    rc = 0;

done:
    if (rc != 0)
        *err = str_printf("%s: %s", file->name, decl_err ? decl_err : "out of memory");
    free(decl_err);
    free(name);
    free(version);
    lua_pop(L, 1);
    return rc;
}

int script_plugins_load(struct script_state *st, int parse, char **err)
{
    struct script_version *v = st->version;
    size_t nplugins = 0, p = 0;

    for (size_t i = 0; i < v->file_count; i++)
        nplugins += is_plugin_file(v->files[i].name);
    if (parse) {
        v->plugins = calloc(nplugins ? nplugins : 1, sizeof(*v->plugins));
        if (v->plugins == NULL)
            goto oom;
    }
    st->hook_refs = malloc((nplugins ? nplugins : 1) * SCRIPT_HOOK_COUNT * sizeof(int));
    if (st->hook_refs == NULL)
        goto oom;
    for (size_t i = 0; i < nplugins * SCRIPT_HOOK_COUNT; i++)
        st->hook_refs[i] = LUA_NOREF;
    if (!parse && v->route_count > 0) {
        st->route_refs = malloc(v->route_count * sizeof(int));
        if (st->route_refs == NULL)
            goto oom;
        for (size_t i = 0; i < v->route_count; i++)
            st->route_refs[i] = LUA_NOREF;
    }

    for (size_t i = 0; i < v->file_count; i++) {
        if (!is_plugin_file(v->files[i].name))
            continue;
        if (load_plugin(st, &v->files[i], p, parse, err) != 0)
            return -1;
        p++;
    }
    return 0;

oom:
    *err = strdup("out of memory");
    return -1;
}

/* ---- Field validation --------------------------------------------------------- */

int script_field_validate(struct script_state *st, const struct field_def *field,
                          const char *value, char **err_fr)
{
    lua_State *L = st->L;
    char what[160];
    int rc = 0;

    if (!field->has_validate || field->validate_slot < 0 ||
        (size_t)field->validate_slot >= st->validate_count)
        return 0;
    snprintf(what, sizeof(what), "plugin %s: validate of field %s", field->plugin, field->key);
    lua_rawgeti(L, LUA_REGISTRYINDEX, st->validate_refs[field->validate_slot]);
    script_push_string(st, value, strlen(value));
    if (script_call(st, 1, 2, what) != 0) {
        *err_fr = str_printf("Le champ « %s » n'a pas pu être vérifié (erreur dans l'extension "
                             "%s).",
                             field->label, field->plugin);
        return -1;
    }
    /* Returns nil or true when valid; false or a message when not. */
    if (lua_type(L, -2) == LUA_TSTRING) {
        *err_fr = str_printf("%s : %s", field->label, lua_tostring(L, -2));
        rc = -1;
    } else if (lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2)) {
        if (lua_type(L, -1) == LUA_TSTRING)
            *err_fr = str_printf("%s : %s", field->label, lua_tostring(L, -1));
        else
            *err_fr = str_printf("La valeur du champ « %s » est invalide.", field->label);
        rc = -1;
    }
    lua_pop(L, 2);
    return rc;
}

/* ---- Hooks ------------------------------------------------------------------------ */

int script_run_row_hook(struct script_state *st, int index)
{
    lua_State *L = st->L;
    struct script_version *v = st->version;
    int rc = 0;

    index = lua_absindex(L, index);
    lua_pushvalue(L, index);
    for (size_t p = 0; p < v->plugin_count; p++) {
        int ref = st->hook_refs[p * SCRIPT_HOOK_COUNT + (size_t)SCRIPT_HOOK_IMPORT_ROW_MAPPED];
        char what[128];

        if (ref == LUA_NOREF)
            continue;
        snprintf(what, sizeof(what), "plugin %s: hook import_row_mapped", v->plugins[p].name);
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        lua_pushvalue(L, -2);
        if (script_call(st, 1, 1, what) != 0) {
            rc = -1;
            continue;
        }
        if (lua_istable(L, -1)) {
            lua_remove(L, -2);
        } else {
            if (!lua_isnil(L, -1)) {
                script_state_record_error(st, what, "import_row_mapped must return the record "
                                                    "(a table) or nil");
                rc = -1;
            }
            lua_pop(L, 1);
        }
    }
    return rc;
}

int script_has_hook(struct script_state *st, enum script_hook event)
{
    for (size_t p = 0; p < st->version->plugin_count; p++) {
        if (st->hook_refs[p * SCRIPT_HOOK_COUNT + (size_t)event] != LUA_NOREF)
            return 1;
    }
    return 0;
}

int script_run_hook(struct script_state *st, enum script_hook event, json_t *payload,
                    json_t **result)
{
    lua_State *L = st->L;
    struct script_version *v = st->version;
    json_t *record = event == SCRIPT_HOOK_IMPORT_ROW_MAPPED ? json_incref(payload) : NULL;
    json_t *returns = event == SCRIPT_HOOK_IMPORT_ROW_MAPPED ? NULL : json_object();
    int rc = 0;

    for (size_t p = 0; p < v->plugin_count; p++) {
        int ref = st->hook_refs[p * SCRIPT_HOOK_COUNT + (size_t)event];
        char what[128];
        json_t *value;

        if (ref == LUA_NOREF)
            continue;
        snprintf(what, sizeof(what), "plugin %s: hook %s", v->plugins[p].name,
                 script_hook_names[event]);
        lua_rawgeti(L, LUA_REGISTRYINDEX, ref);
        if (script_push_json(st, record ? record : payload) != 0) {
            lua_pop(L, 2);
            script_state_record_error(st, what, "payload too large or too deep for a script");
            rc = -1;
            continue;
        }
        if (script_call(st, 1, 1, what) != 0) {
            rc = -1;
            continue;
        }
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            continue;
        }
        value = script_to_json(st, -1);
        lua_pop(L, 1);
        if (value == NULL) {
            script_state_record_error(st, what, "returned a value that cannot be converted to "
                                                "JSON");
            rc = -1;
        } else if (record != NULL) {
            if (json_is_object(value)) {
                json_decref(record);
                record = value;
            } else {
                json_decref(value);
                script_state_record_error(st, what, "import_row_mapped must return the record "
                                                    "(a table) or nil");
                rc = -1;
            }
        } else {
            json_object_set_new(returns, v->plugins[p].name, value);
        }
    }
    *result = record ? record : returns;
    return rc;
}

/* ---- Routes -------------------------------------------------------------------------- */

/* Splits path on '/' into at most MAX_PATH_SEGMENTS segments (pointers into
 * buf). Returns the count, or -1 when there are too many. */
static int split_path(char *buf, char **segments)
{
    int n = 0;

    for (char *tok = strtok(buf, "/"); tok != NULL; tok = strtok(NULL, "/")) {
        if (n == MAX_PATH_SEGMENTS)
            return -1;
        segments[n++] = tok;
    }
    return n;
}

/* Matches path against pattern; when params is not NULL, sets the
 * ":name" segments into it. Returns 1 on a match. */
static int match_path(const char *pattern, const char *path, json_t *params)
{
    char pbuf[256], vbuf[256];
    char *pseg[MAX_PATH_SEGMENTS], *vseg[MAX_PATH_SEGMENTS];
    int np, nv;

    if (strlen(pattern) >= sizeof(pbuf) || strlen(path) >= sizeof(vbuf))
        return 0;
    strcpy(pbuf, pattern);
    strcpy(vbuf, path);
    np = split_path(pbuf, pseg);
    nv = split_path(vbuf, vseg);
    if (np < 0 || np != nv)
        return 0;
    for (int i = 0; i < np; i++) {
        if (pseg[i][0] == ':') {
            if (params != NULL)
                json_object_set_new(params, pseg[i] + 1, json_string(vseg[i]));
        } else if (strcmp(pseg[i], vseg[i]) != 0) {
            return 0;
        }
    }
    return 1;
}

int script_route_find(struct script_state *st, const char *plugin, const char *method,
                      const char *path)
{
    struct script_version *v = st->version;

    for (size_t i = 0; i < v->route_count; i++) {
        const struct script_route_decl *r = &v->routes[i];
        if (strcmp(r->plugin, plugin) == 0 && strcasecmp(r->method, method) == 0 &&
            match_path(r->path, path, NULL))
            return (int)i;
    }
    return -1;
}

size_t script_route_count(struct script_state *st)
{
    return st->version->route_count;
}

int script_route_info(struct script_state *st, int route, const char **plugin,
                      const char **method, const char **path)
{
    if (route < 0 || (size_t)route >= st->version->route_count)
        return -1;
    *plugin = st->version->routes[route].plugin;
    *method = st->version->routes[route].method;
    *path = st->version->routes[route].path;
    return 0;
}

int script_route_call(struct script_state *st, int route, const char *path, json_t *request,
                      int *status, json_t **body)
{
    lua_State *L = st->L;
    const struct script_route_decl *r;
    json_t *req = NULL, *params = json_object();
    char what[320];
    int rc = -1;

    *status = 500;
    *body = NULL;
    if (route < 0 || (size_t)route >= st->version->route_count || st->route_refs == NULL)
        goto done;
    r = &st->version->routes[route];
    snprintf(what, sizeof(what), "plugin %s: route %s %s", r->plugin, r->method, r->path);
    req = request ? json_deep_copy(request) : json_object();
    if (req == NULL || !json_is_object(req))
        goto done;
    match_path(r->path, path, params);
    json_object_set(req, "params", params);

    lua_rawgeti(L, LUA_REGISTRYINDEX, st->route_refs[route]);
    if (script_push_json(st, req) != 0) {
        lua_pop(L, 2);
        script_state_record_error(st, what, "request too large or too deep for a script");
        goto done;
    }
    if (script_call(st, 1, 1, what) != 0)
        goto done;
    if (!lua_istable(L, -1)) {
        script_state_record_error(st, what, "the handler must return { status = n, json = v }");
        lua_pop(L, 1);
        goto done;
    }
    lua_getfield(L, -1, "status");
    *status = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 200;
    lua_getfield(L, -2, "json");
    *body = lua_isnil(L, -1) ? json_null() : script_to_json(st, -1);
    lua_pop(L, 3);
    if (*body == NULL || *status < 100 || *status > 599) {
        json_decref(*body);
        *body = NULL;
        *status = 500;
        script_state_record_error(st, what, "invalid status or json in the handler's response");
        goto done;
    }
    rc = 0;

done:
    if (rc != 0) {
        *status = 500;
        *body = json_pack("{s:s}", "error", "L'extension n'a pas pu traiter la demande.");
    }
    json_decref(params);
    json_decref(req);
    return rc;
}
