/*
 * Script engine core: the table of modules the engine requires, reading a
 * snapshot of the script and plugin files, building and validating a
 * version, the reference-counted versions and states, reloads and the
 * status report. The sandbox is in script_sandbox.c, the `licol` API in
 * script_api.c, plugins in script_plugin.c, permissions in script_roles.c
 * and the file watch in script_watch.c.
 */
#include "script_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <lauxlib.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define DEFAULT_MEMORY_LIMIT ((size_t)64 << 20)
#define DEFAULT_BUDGET_MS 200
#define DEFAULT_DEBOUNCE_MS 250
#define DEFAULT_POLL_MS 5000
#define DEFAULT_MAX_STRING ((size_t)64 << 10)
#define MAX_DIR_DEPTH 4

enum module_need { MODULE_OPTIONAL = 0, MODULE_REQUIRED = 1 };

/* The modules loaded from scripts/. pattern is matched against the path
 * under scripts/ (fnmatch, '*' does not cross '/'). Each file returns a
 * table holding at least the functions listed; an optional selftest()
 * runs at load. To add a module: add its id to enum script_module and a
 * line here. */
static const struct module_spec {
    const char *pattern;
    enum module_need need;
    const char *functions[SCRIPT_MAX_FUNCTIONS + 1];
} module_specs[SCRIPT_MOD_COUNT] = {
    [SCRIPT_MOD_ROLES] = {"roles.lua", MODULE_REQUIRED, {"can", NULL}},
    [SCRIPT_MOD_FORMATS] = {"formats/*.lua", MODULE_OPTIONAL, {"detect", "map", NULL}},
    [SCRIPT_MOD_MERGE] = {"merge.lua", MODULE_OPTIONAL, {"policy", NULL}},
    [SCRIPT_MOD_FEDERATION] = {"federation.lua", MODULE_OPTIONAL, {"source", NULL}},
    [SCRIPT_MOD_REGISTRATION] = {"registration.lua", MODULE_OPTIONAL, {"reglages", "regles", NULL}},
    [SCRIPT_MOD_CONSENT] = {"consent.lua", MODULE_OPTIONAL, {"apres_import", "relances", NULL}},
};

const char *const script_hook_names[SCRIPT_HOOK_COUNT] = {
    "person_created", "person_updated", "import_row_mapped", "import_finished",
    "consent_recorded",
};

/* ---- Shared error record ------------------------------------------------- */

static struct script_errors *errors_new(void)
{
    struct script_errors *errors = calloc(1, sizeof(*errors));

    if (errors == NULL)
        return NULL;
    atomic_init(&errors->refs, 1);
    pthread_mutex_init(&errors->lock, NULL);
    return errors;
}

/* Returns the length of the valid UTF-8 sequence at s[0], or 0 when it is
 * invalid (overlong forms, surrogates and code points over U+10FFFF
 * included, as JSON encoders reject them). */
static size_t utf8_sequence_length(const unsigned char *s, size_t len)
{
    size_t n;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF)
        n = 2, cp = s[0] & 0x1F;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF)
        n = 3, cp = s[0] & 0x0F;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4)
        n = 4, cp = s[0] & 0x07;
    else
        return 0;
    if (n > len)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

/* Returns a copy of message in which each invalid UTF-8 byte is replaced
 * by U+FFFD, so the status JSON can always carry it. */
static char *utf8_sanitized_copy(const char *message)
{
    const unsigned char *s = (const unsigned char *)message;
    size_t len = strlen(message);
    char *copy = malloc(len * 3 + 1); /* each byte becomes at most 3 */
    size_t out = 0;

    if (copy == NULL)
        return NULL;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence_length(s + i, len - i);

        if (n == 0) {
            memcpy(copy + out, "\xEF\xBF\xBD", 3);
            out += 3;
            i++;
        } else {
            memcpy(copy + out, s + i, n);
            out += n;
            i += n;
        }
    }
    copy[out] = '\0';
    return copy;
}

void script_errors_record(struct script_errors *errors, const char *message)
{
    char *copy = utf8_sanitized_copy(message);

    pthread_mutex_lock(&errors->lock);
    free(errors->last_error);
    errors->last_error = copy;
    errors->last_error_at = time(NULL);
    errors->errors++;
    pthread_mutex_unlock(&errors->lock);
}

void script_errors_release(struct script_errors *errors)
{
    if (errors == NULL || atomic_fetch_sub(&errors->refs, 1) != 1)
        return;
    pthread_mutex_destroy(&errors->lock);
    free(errors->last_error);
    free(errors);
}

/* ---- File snapshot --------------------------------------------------------- */

struct file_list {
    struct script_file *files;
    size_t count;
    size_t cap;
    crypto_hash_sha256_state meta; /* names, sizes, mtimes, inodes */
    int read_contents;
    char *error; /* French */
};

static int add_file(struct file_list *list, const char *path, const char *name)
{
    struct stat st;
    struct script_file *file;
    int fd = -1;
    int rc = -1;

    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
        return 0; /* vanished or not a file: ignored */
    crypto_hash_sha256_update(&list->meta, (const unsigned char *)name, strlen(name) + 1);
    crypto_hash_sha256_update(&list->meta, (const unsigned char *)&st.st_size, sizeof(st.st_size));
    crypto_hash_sha256_update(&list->meta, (const unsigned char *)&st.st_mtim, sizeof(st.st_mtim));
    crypto_hash_sha256_update(&list->meta, (const unsigned char *)&st.st_ino, sizeof(st.st_ino));
    if (!list->read_contents)
        return 0;

    if (list->count >= SCRIPT_MAX_FILES) {
        list->error = str_printf("Trop de fichiers de scripts (plus de %d).", SCRIPT_MAX_FILES);
        return -1;
    }
    if (st.st_size > SCRIPT_MAX_FILE) {
        list->error = str_printf("Le fichier %s dépasse la taille maximale de %d octets.", name,
                                 SCRIPT_MAX_FILE);
        return -1;
    }
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 16;
        struct script_file *grown = realloc(list->files, cap * sizeof(*grown));
        if (grown == NULL)
            goto oom;
        list->files = grown;
        list->cap = cap;
    }

    file = &list->files[list->count];
    memset(file, 0, sizeof(*file));
    file->name = strdup(name);
    file->text = malloc((size_t)st.st_size + 1);
    if (file->name == NULL || file->text == NULL) {
        free(file->name);
        free(file->text);
        goto oom;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    while (fd >= 0 && file->len < (size_t)st.st_size) {
        ssize_t n = read(fd, file->text + file->len, (size_t)st.st_size - file->len);
        if (n <= 0)
            break;
        file->len += (size_t)n;
    }
    if (fd < 0) {
        list->error = str_printf("Impossible de lire %s : %s.", name, strerror(errno));
        free(file->name);
        free(file->text);
        goto done;
    }
    file->text[file->len] = '\0';
    list->count++;
    rc = 0;
    goto done;

oom:
    list->error = strdup("Mémoire insuffisante pour lire les scripts.");
done:
    if (fd >= 0)
        close(fd);
    return rc;
}

static int name_ends_with(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    return n >= s && strcmp(name + n - s, suffix) == 0;
}

/* Adds the files under dir whose names end with suffix, recursively. prefix
 * is the logical name of dir ("scripts/"). Hidden entries (editor temporary
 * files such as .roles.lua.swp) are skipped. */
static int walk_dir(struct file_list *list, const char *dir, const char *prefix,
                    const char *suffix, int depth)
{
    struct dirent **entries = NULL;
    int n = scandir(dir, &entries, NULL, alphasort);
    int rc = 0;

    if (n < 0)
        return 0; /* a missing directory contains no files */
    for (int i = 0; i < n; i++) {
        const char *base = entries[i]->d_name;
        char *path = NULL, *name = NULL;
        struct stat st;

        if (rc == 0 && base[0] != '.') {
            path = str_printf("%s/%s", dir, base);
            name = str_printf("%s%s", prefix, base);
            if (path == NULL || name == NULL) {
                rc = -1;
            } else if (stat(path, &st) == 0 && S_ISDIR(st.st_mode) && depth < MAX_DIR_DEPTH) {
                char *sub = str_printf("%s/", name);
                rc = sub ? walk_dir(list, path, sub, suffix, depth + 1) : -1;
                free(sub);
            } else if (name_ends_with(base, suffix)) {
                rc = add_file(list, path, name);
            }
        }
        free(path);
        free(name);
        free(entries[i]);
    }
    free(entries);
    return rc;
}

static int valid_plugin_name(const char *name)
{
    if (name[0] == '\0' || strlen(name) > 64)
        return 0;
    for (const char *p = name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
            return 0;
    }
    return 1;
}

static int walk_plugins(struct file_list *list, const char *plugins_dir)
{
    struct dirent **entries = NULL;
    int n;
    int rc = 0;

    if (plugins_dir == NULL)
        return 0;
    n = scandir(plugins_dir, &entries, NULL, alphasort);
    if (n < 0)
        return 0;
    for (int i = 0; i < n; i++) {
        const char *base = entries[i]->d_name;
        char *path = NULL, *name = NULL, *mdir = NULL, *mprefix = NULL;

        if (rc == 0 && base[0] != '.') {
            path = str_printf("%s/%s/plugin.lua", plugins_dir, base);
            name = str_printf("plugins/%s/plugin.lua", base);
            mdir = str_printf("%s/%s/migrations", plugins_dir, base);
            mprefix = str_printf("plugins/%s/migrations/", base);
            if (path == NULL || name == NULL || mdir == NULL || mprefix == NULL) {
                rc = -1;
            } else if (access(path, F_OK) == 0) {
                if (!valid_plugin_name(base)) {
                    list->error = str_printf("Nom d'extension invalide : « %s » (lettres "
                                             "minuscules, chiffres, - et _ seulement).",
                                             base);
                    rc = -1;
                } else {
                    rc = add_file(list, path, name);
                    if (rc == 0)
                        rc = walk_dir(list, mdir, mprefix, ".sql", MAX_DIR_DEPTH);
                }
            }
        }
        free(path);
        free(name);
        free(mdir);
        free(mprefix);
        free(entries[i]);
    }
    free(entries);
    return rc;
}

static void files_free(struct script_file *files, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(files[i].name);
        free(files[i].text);
    }
    free(files);
}

static int snapshot(const struct script_engine *engine, struct file_list *list, int read_contents,
                    unsigned char digest[32])
{
    int rc;

    memset(list, 0, sizeof(*list));
    list->read_contents = read_contents;
    crypto_hash_sha256_init(&list->meta);
    rc = walk_dir(list, engine->scripts_dir, "scripts/", ".lua", 0);
    if (rc == 0)
        rc = walk_plugins(list, engine->plugins_dir);
    crypto_hash_sha256_final(&list->meta, digest);
    return rc;
}

int script_fingerprint(const struct script_engine *engine, unsigned char digest[32])
{
    struct file_list list;
    int rc = snapshot(engine, &list, 0, digest);

    free(list.error);
    return rc;
}

/* ---- Versions --------------------------------------------------------------- */

const struct script_file *script_version_file(const struct script_version *version,
                                              const char *name)
{
    for (size_t i = 0; i < version->file_count; i++) {
        if (strcmp(version->files[i].name, name) == 0)
            return &version->files[i];
    }
    return NULL;
}

static void version_free(struct script_version *v)
{
    script_sandbox_close(v->main);
    script_plugin_decls_free(v);
    fields_catalogue_free(v->fields);
    files_free(v->files, v->file_count);
    json_decref(v->config);
    script_errors_release(v->errors);
    free(v);
}

void script_version_retain(struct script_version *version)
{
    atomic_fetch_add(&version->refs, 1);
}

void script_version_release(struct script_version *version)
{
    if (version != NULL && atomic_fetch_sub(&version->refs, 1) == 1)
        version_free(version);
}

const char *script_version_id(const struct script_version *version)
{
    return version->id;
}

time_t script_version_loaded_at(const struct script_version *version)
{
    return version->loaded_at;
}

struct script_state *script_version_state(struct script_version *version)
{
    return version->main;
}

const struct fields_catalogue *script_version_fields(const struct script_version *version)
{
    return version->fields;
}

const struct script_migration *script_version_migrations(const struct script_version *version,
                                                          size_t *count)
{
    *count = version->migration_count;
    return version->migrations;
}

int script_run_selftest(struct script_state *st, const char *file, char **err)
{
    lua_State *L = st->L;
    char *call_err = NULL;
    int rc = 0;

    if (lua_getfield(L, -1, "selftest") != LUA_TFUNCTION) {
        lua_pop(L, 1);
        return 0;
    }
    if (script_sandbox_pcall(st, 0, 2, &call_err) != LUA_OK) {
        *err = str_printf("%s%sselftest failed: %s", file ? file : "", file ? ": " : "",
                          call_err);
        free(call_err);
        return -1;
    }
    if (lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2)) {
        const char *why = lua_tostring(L, -1);
        *err = str_printf("%s%sselftest returned false%s%s", file ? file : "",
                          file ? ": " : "", why ? ": " : "", why ? why : "");
        rc = -1;
    }
    lua_pop(L, 2);
    return rc;
}

/* Loads one module file, checks its exports and stores their references.
 * Stack: [-0, +0]. */
static int load_module(struct script_state *st, const struct module_spec *spec,
                       struct script_module_instance *inst, const struct script_file *file,
                       char **err)
{
    lua_State *L = st->L;

    for (int f = 0; f < SCRIPT_MAX_FUNCTIONS; f++)
        inst->refs[f] = LUA_NOREF;
    inst->file = strdup(file->name + strlen("scripts/"));
    if (inst->file == NULL) {
        *err = strdup("out of memory");
        return -1;
    }
    if (script_sandbox_run(st, file->name, file->text, file->len, err) != 0)
        return -1;
    if (!lua_istable(L, -1)) {
        *err = str_printf("%s: the script must return a table of functions (got %s)", file->name,
                          luaL_typename(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    for (int f = 0; spec->functions[f] != NULL; f++) {
        if (lua_getfield(L, -1, spec->functions[f]) != LUA_TFUNCTION) {
            *err = str_printf("%s: missing function %s (the returned table must contain %s = "
                              "function ...)",
                              file->name, spec->functions[f], spec->functions[f]);
            lua_pop(L, 2);
            return -1;
        }
        inst->refs[f] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    if (script_run_selftest(st, file->name, err) != 0) {
        lua_pop(L, 1);
        return -1;
    }
    lua_pop(L, 1);
    return 0;
}

static int load_modules(struct script_state *st, char **err)
{
    const struct script_version *v = st->version;

    for (int m = 0; m < SCRIPT_MOD_COUNT; m++) {
        const struct module_spec *spec = &module_specs[m];
        size_t matched = 0;

        st->modules[m] = calloc(v->file_count ? v->file_count : 1, sizeof(*st->modules[m]));
        if (st->modules[m] == NULL) {
            *err = strdup("out of memory");
            return -1;
        }
        for (size_t i = 0; i < v->file_count; i++) {
            const char *name = v->files[i].name;
            if (strncmp(name, "scripts/", 8) != 0 || fnmatch(spec->pattern, name + 8, FNM_PATHNAME) != 0)
                continue;
            st->module_counts[m] = matched + 1;
            if (load_module(st, spec, &st->modules[m][matched], &v->files[i], err) != 0)
                return -1;
            matched++;
        }
        if (matched == 0 && spec->need == MODULE_REQUIRED) {
            *err = str_printf("scripts/%s: required script is missing", spec->pattern);
            return -1;
        }
    }
    return 0;
}

/* Builds a state from the version's files. With parse set (the main state),
 * also fills the version's plugin declarations and field catalogue. */
static struct script_state *state_build(struct script_version *v, int parse, char **err)
{
    struct script_state *st = script_sandbox_new(&v->limits, err);
    char *load_err = NULL;

    if (st == NULL)
        return NULL;
    st->version = v;
    if (script_api_install(st) != 0 || script_plugins_load(st, parse, &load_err) != 0)
        goto fail;
    script_api_set_fields(st);
    if (load_modules(st, &load_err) != 0)
        goto fail;
    lua_gc(st->L, LUA_GCCOLLECT);
    return st;

fail:
    *err = load_err ? load_err : strdup("out of memory");
    script_sandbox_close(st);
    return NULL;
}

static void version_id(struct script_version *v)
{
    crypto_hash_sha256_state hash;
    unsigned char digest[crypto_hash_sha256_BYTES];
    char hex[crypto_hash_sha256_BYTES * 2 + 1];

    crypto_hash_sha256_init(&hash);
    for (size_t i = 0; i < v->file_count; i++) {
        crypto_hash_sha256_update(&hash, (const unsigned char *)v->files[i].name,
                                  strlen(v->files[i].name) + 1);
        crypto_hash_sha256_update(&hash, (const unsigned char *)v->files[i].text,
                                  v->files[i].len);
        crypto_hash_sha256_update(&hash, (const unsigned char *)"", 1);
    }
    crypto_hash_sha256_final(&hash, digest);
    sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
    memcpy(v->id, hex, 12);
    v->id[12] = '\0';
}

/* Reads the files and builds a validated version. Returns NULL with *err
 * ("file:line: message" for script errors, caller frees) on failure. */
static struct script_version *version_build(struct script_engine *engine, char **err)
{
    struct file_list list;
    struct script_version *v = NULL;

    if (snapshot(engine, &list, 1, engine->fingerprint) != 0) {
        *err = list.error ? list.error : strdup("Mémoire insuffisante pour lire les scripts.");
        files_free(list.files, list.count);
        return NULL;
    }
    v = calloc(1, sizeof(*v));
    if (v == NULL) {
        files_free(list.files, list.count);
        *err = strdup("out of memory");
        return NULL;
    }
    atomic_init(&v->refs, 1);
    v->files = list.files;
    v->file_count = list.count;
    v->limits = engine->limits;
    v->loaded_at = time(NULL);
    v->config = engine->config ? json_incref(engine->config) : NULL;
    v->errors = engine->errors;
    atomic_fetch_add(&engine->errors->refs, 1);
    version_id(v);

    v->fields = fields_catalogue_new();
    if (v->fields == NULL) {
        *err = strdup("out of memory");
        goto fail;
    }
    v->main = state_build(v, 1, err);
    if (v->main == NULL)
        goto fail;
    return v;

fail:
    version_free(v);
    return NULL;
}

/* ---- States ------------------------------------------------------------------ */

struct script_state *script_state_new(struct script_version *version, char **err)
{
    char *build_err = NULL;
    struct script_state *st = state_build(version, 0, &build_err);

    if (st == NULL) {
        *err = str_printf("Impossible de préparer les scripts : %s", build_err);
        free(build_err);
        return NULL;
    }
    script_version_retain(version);
    st->holds_version = 1;
    return st;
}

void script_state_free(struct script_state *state)
{
    struct script_version *v;

    if (state == NULL)
        return;
    v = state->holds_version ? state->version : NULL;
    script_sandbox_close(state);
    script_version_release(v);
}

struct lua_State *script_state_lua(struct script_state *state)
{
    return state->L;
}

struct script_version *script_state_version(struct script_state *state)
{
    return state->version;
}

size_t script_module_count(struct script_state *state, enum script_module module)
{
    return state->module_counts[module];
}

const char *script_module_file(struct script_state *state, enum script_module module,
                               size_t instance)
{
    if (instance >= state->module_counts[module])
        return NULL;
    return state->modules[module][instance].file;
}

int script_push_function(struct script_state *state, enum script_module module, size_t instance,
                         int function)
{
    int ref;

    if (instance >= state->module_counts[module] || function < 0 ||
        function >= SCRIPT_MAX_FUNCTIONS)
        return -1;
    ref = state->modules[module][instance].refs[function];
    if (ref == LUA_NOREF)
        return -1;
    lua_rawgeti(state->L, LUA_REGISTRYINDEX, ref);
    return 0;
}

void script_state_record_error(struct script_state *state, const char *what, const char *err)
{
    char *raw = str_printf("%s: %s", what, err);
    char *message = raw ? utf8_sanitized_copy(raw) : NULL;

    free(raw);
    log_error("script", "%s failed: %s", what, err);
    free(state->last_error);
    state->last_error = message;
    if (message != NULL)
        script_errors_record(state->version->errors, message);
}

int script_call(struct script_state *state, int nargs, int nresults, const char *what)
{
    char *err = NULL;

    if (script_sandbox_pcall(state, nargs, nresults, &err) == LUA_OK)
        return 0;
    script_state_record_error(state, what, err ? err : "unknown error");
    free(err);
    return -1;
}

int script_push_string(struct script_state *state, const char *s, size_t len)
{
    if (len > state->version->limits.max_string) {
        lua_pushliteral(state->L, "");
        return -1;
    }
    lua_pushlstring(state->L, s, len);
    return 0;
}

const char *script_state_last_error(struct script_state *state)
{
    return state->last_error;
}

/* ---- Engine ------------------------------------------------------------------ */

static char *dup_dir(const char *dir)
{
    return dir ? strdup(dir) : NULL;
}

struct script_engine *script_engine_new(const struct script_config *config, char **err)
{
    struct script_engine *engine = calloc(1, sizeof(*engine));
    char *build_err = NULL;

    if (engine == NULL || sodium_init() < 0) {
        free(engine);
        *err = strdup("Impossible d'initialiser le moteur de scripts.");
        return NULL;
    }
    pthread_mutex_init(&engine->lock, NULL);
    engine->scripts_dir = dup_dir(config->scripts_dir);
    engine->plugins_dir = dup_dir(config->plugins_dir);
    engine->limits.memory_limit = config->memory_limit ? config->memory_limit : DEFAULT_MEMORY_LIMIT;
    engine->limits.budget_ms = config->budget_ms ? config->budget_ms : DEFAULT_BUDGET_MS;
    engine->limits.max_string = config->max_string ? config->max_string : DEFAULT_MAX_STRING;
    engine->debounce_ms = config->debounce_ms ? config->debounce_ms : DEFAULT_DEBOUNCE_MS;
    engine->poll_ms = config->poll_ms ? config->poll_ms : DEFAULT_POLL_MS;
    engine->errors = errors_new();
    if (engine->scripts_dir == NULL || engine->errors == NULL) {
        *err = strdup("Le dossier des scripts n'est pas configuré.");
        goto fail;
    }

    engine->current = version_build(engine, &build_err);
    if (engine->current == NULL) {
        log_error("script", "initial load failed: %s", build_err);
        *err = str_printf("Les scripts n'ont pas pu être chargés : %s", build_err);
        free(build_err);
        goto fail;
    }
    log_info("script", "loaded version %s (%zu files, %zu plugins)", engine->current->id,
             engine->current->file_count, engine->current->plugin_count);
    return engine;

fail:
    script_engine_free(engine);
    return NULL;
}

void script_engine_set_config(struct script_engine *engine, json_t *config)
{
    json_t *old = engine->config;

    engine->config = config ? json_incref(config) : NULL;
    json_decref(old);
}

/* NOTE: the new version is built on the loop thread, so a reload stalls
 * request handling while the files load: up to budget_ms per file and
 * selftest when a script runs away (200 ms each by default). */
static int reload(struct script_engine *engine)
{
    char *err = NULL;
    struct script_version *v = version_build(engine, &err);
    struct script_version *old;

    if (v == NULL) {
        log_error("script", "reload rejected, version %s keeps running: %s",
                  engine->current->id, err);
        script_errors_record(engine->errors, err ? err : "reload failed");
        pthread_mutex_lock(&engine->errors->lock);
        engine->errors->rejected++;
        pthread_mutex_unlock(&engine->errors->lock);
        free(err);
        return -1;
    }

    pthread_mutex_lock(&engine->lock);
    old = engine->current;
    engine->current = v;
    engine->reloads++;
    pthread_mutex_unlock(&engine->lock);
    log_info("script", "reloaded: version %s replaces %s (%zu files, %zu plugins)", v->id,
             old->id, v->file_count, v->plugin_count);
    script_version_release(old);
    return 1;
}

int script_engine_reload(struct script_engine *engine)
{
    return reload(engine);
}

int script_engine_reload_if_changed(struct script_engine *engine)
{
    unsigned char digest[32];

    if (script_fingerprint(engine, digest) != 0 ||
        memcmp(digest, engine->fingerprint, sizeof(digest)) == 0)
        return 0;
    return reload(engine);
}

struct script_version *script_engine_acquire(struct script_engine *engine)
{
    struct script_version *v;

    pthread_mutex_lock(&engine->lock);
    v = engine->current;
    script_version_retain(v);
    pthread_mutex_unlock(&engine->lock);
    return v;
}

static json_t *iso_time(time_t t)
{
    struct tm tm;
    char buf[32];

    if (t == 0)
        return json_null();
    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(buf);
}

json_t *script_engine_status(struct script_engine *engine)
{
    struct script_version *v = script_engine_acquire(engine);
    json_t *files = json_array();
    json_t *plugins = json_array();
    json_t *status;
    json_int_t reloads;

    pthread_mutex_lock(&engine->lock);
    reloads = (json_int_t)engine->reloads;
    pthread_mutex_unlock(&engine->lock);
    for (size_t i = 0; i < v->file_count; i++)
        json_array_append_new(files, json_string(v->files[i].name));
    for (size_t i = 0; i < v->plugin_count; i++) {
        size_t nfields = 0;
        for (size_t f = 0; f < v->fields->count; f++) {
            const char *owner = v->fields->fields[f].plugin;
            nfields += owner != NULL && strcmp(owner, v->plugins[i].name) == 0;
        }
        json_array_append_new(plugins, json_pack("{s:s, s:s?, s:I}", "name", v->plugins[i].name,
                                                 "version", v->plugins[i].version, "fields",
                                                 (json_int_t)nfields));
    }

    pthread_mutex_lock(&engine->errors->lock);
    status = json_pack("{s:s, s:o, s:o, s:o, s:s?, s:o, s:I, s:I}", "version", v->id,
                       "loaded_at", iso_time(v->loaded_at), "files", files, "plugins", plugins,
                       "last_error", engine->errors->last_error, "last_error_at",
                       iso_time(engine->errors->last_error_at), "rejected_reloads",
                       (json_int_t)engine->errors->rejected, "reloads", reloads);
    pthread_mutex_unlock(&engine->errors->lock);
    script_version_release(v);
    return status;
}

void script_engine_free(struct script_engine *engine)
{
    if (engine == NULL)
        return;
    script_watch_free(engine->watch);
    script_version_release(engine->current);
    script_errors_release(engine->errors);
    json_decref(engine->config);
    pthread_mutex_destroy(&engine->lock);
    free(engine->scripts_dir);
    free(engine->plugins_dir);
    free(engine);
}
