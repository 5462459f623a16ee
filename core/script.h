/*
 * Lua 5.4 script engine: the scripts a club edits (the .lua files under scripts/, shared
 * helpers in scripts/lib/) and the plugins an integrator adds
 * (plugins/<name>/plugin.lua), loaded into sandboxed Lua states.
 *
 * A version is an immutable, reference-counted snapshot of every file (source
 * text), the plugin declarations parsed from it (field catalogue, hooks,
 * routes, plugin migrations) and one main Lua state used only on the libuv
 * loop thread. A worker thread builds its own state from the same version
 * with script_state_new(); a lua_State is never shared between threads.
 *
 * Reloads (file watch, poll, SIGHUP) build a new version in a fresh state,
 * validate it, and only then swap it in. A broken edit never replaces the
 * running version: the error is logged and kept for the status page. Work in
 * flight keeps the version it acquired until it releases it.
 *
 * Scripts decide; C does all I/O. The script API (the global table `licol`)
 * is described in docs/scripts.md, plugins in docs/plugins.md.
 */
#ifndef LICOL_SCRIPT_H
#define LICOL_SCRIPT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <uv.h>

#include "fields.h"

struct lua_State;
struct script_engine;
struct script_version;
struct script_state;

struct script_config {
    const char *scripts_dir;  /* club scripts; required */
    const char *plugins_dir;  /* plugins; NULL or missing directory = no plugins */
    size_t memory_limit;      /* bytes per Lua state; 0 = 64 MiB */
    unsigned budget_ms;       /* wall-clock budget per call and per file load; 0 = 200 */
    unsigned debounce_ms;     /* delay after a file event before checking; 0 = 250 */
    unsigned poll_ms;         /* fallback poll interval; 0 = 5000 */
    size_t max_string;        /* max bytes of a string C passes to a script; 0 = 64 KiB */
};

/* Modules the engine loads from scripts/. The table in script.c maps each
 * id to a file name or glob, marks the module required or optional and
 * lists the functions it must export. Callers reach a function with (module, instance,
 * function index); instance is 0 except for glob modules such as formats. */
enum script_module {
    SCRIPT_MOD_ROLES = 0, /* roles.lua, required */
    SCRIPT_MOD_FORMATS,   /* each .lua file under formats/, optional, one instance per file */
    SCRIPT_MOD_MERGE,     /* merge.lua: import merge policy, optional */
    SCRIPT_MOD_FEDERATION, /* federation.lua: source of the automatic update, optional */
    SCRIPT_MOD_REGISTRATION, /* registration.lua: online registration rules, optional */
    SCRIPT_MOD_CONSENT,   /* consent.lua: when to ask for consent and remind, optional */
    SCRIPT_MOD_COUNT
};

enum { SCRIPT_ROLES_CAN = 0 };
enum { SCRIPT_FORMAT_DETECT = 0, SCRIPT_FORMAT_MAP = 1 };
enum { SCRIPT_MERGE_POLICY = 0 };
enum { SCRIPT_FEDERATION_SOURCE = 0 };
enum { SCRIPT_REGISTRATION_SETTINGS = 0, SCRIPT_REGISTRATION_RULES = 1 };
enum { SCRIPT_CONSENT_AFTER_IMPORT = 0, SCRIPT_CONSENT_REMINDERS = 1 };

/* Plugin hook events, in the order of script_hook_names. */
enum script_hook {
    SCRIPT_HOOK_PERSON_CREATED = 0,
    SCRIPT_HOOK_PERSON_UPDATED,
    SCRIPT_HOOK_IMPORT_ROW_MAPPED,
    SCRIPT_HOOK_IMPORT_FINISHED,
    SCRIPT_HOOK_CONSENT_RECORDED,
    SCRIPT_HOOK_COUNT
};

extern const char *const script_hook_names[SCRIPT_HOOK_COUNT];

/* A migration shipped by a plugin (plugins/<name>/migrations/NNNN_x.sql),
 * to apply with migrate_apply_scoped(db, scope, number, name, sql, &err). */
struct script_migration {
    const char *scope; /* the plugin name */
    int number;
    const char *name;
    const char *sql;
};

/* ---- Engine ---------------------------------------------------------- */

/* Loads the first version from the configured directories. Returns NULL
 * with *err set to a French message (caller frees) when it fails to load:
 * the server must not start without a working roles.lua. */
struct script_engine *script_engine_new(const struct script_config *config, char **err);

/* Sets the table offered to scripts as licol.config (read-only). Takes a
 * new reference to config and applies it from the next version built;
 * call script_engine_reload() to apply it now. Loop thread only. */
void script_engine_set_config(struct script_engine *engine, json_t *config);

/* Builds a new version from disk and swaps it in when it loads and passes
 * validation. Returns 1 when swapped, or -1 when rejected. A rejected
 * version changes nothing: the old one keeps serving, and the error is
 * logged and kept as last_error. Loop thread only. SIGHUP calls this. */
int script_engine_reload(struct script_engine *engine);

/* Like script_engine_reload(), but returns 0 without building anything
 * when the files' names, sizes, mtimes and inodes are those of the last
 * attempt. The watch and the poll call this. */
int script_engine_reload_if_changed(struct script_engine *engine);

/* Watches the script and plugin directories (and their subdirectories)
 * with uv_fs_event, debounced, plus a slow poll. Returns 0 or -1. */
int script_engine_watch(struct script_engine *engine, uv_loop_t *loop);

/* Closes the watch handles; the loop can end once their close callbacks
 * ran. Safe to call when not watching. */
void script_engine_stop(struct script_engine *engine);

/* Frees the engine after script_engine_stop() and after the loop ran the
 * close callbacks. Versions still acquired stay valid until released. */
void script_engine_free(struct script_engine *engine);

/* Returns the current version with a reference held. Any thread. */
struct script_version *script_engine_acquire(struct script_engine *engine);

/* Status for the staff page: {version, loaded_at, files, plugins,
 * last_error, last_error_at, rejected_reloads, reloads}. New reference. */
json_t *script_engine_status(struct script_engine *engine);

/* ---- Versions -------------------------------------------------------- */

void script_version_release(struct script_version *version);
void script_version_retain(struct script_version *version);

/* Short id: the first 12 hex digits of a SHA-256 over file names and
 * contents. Valid while the version is held. */
const char *script_version_id(const struct script_version *version);
time_t script_version_loaded_at(const struct script_version *version);

/* The main state, for the loop thread only. Never NULL. */
struct script_state *script_version_state(struct script_version *version);

const struct fields_catalogue *script_version_fields(const struct script_version *version);

/* Plugin migrations in plugin then number order; *count set. */
const struct script_migration *script_version_migrations(const struct script_version *version,
                                                          size_t *count);

/* ---- States ---------------------------------------------------------- */

/* Builds an independent state from the version's sources, for a worker
 * thread. The state holds a reference to the version. Returns NULL with
 * *err set (French, caller frees) on failure. */
struct script_state *script_state_new(struct script_version *version, char **err);
void script_state_free(struct script_state *state);

struct lua_State *script_state_lua(struct script_state *state);
struct script_version *script_state_version(struct script_state *state);

/* Number of instances of a module (0 when an optional module is absent,
 * one per file for glob modules). */
size_t script_module_count(struct script_state *state, enum script_module module);

/* File name of an instance relative to scripts/ ("formats/ffe.lua"). */
const char *script_module_file(struct script_state *state, enum script_module module,
                               size_t instance);

/* Pushes the function (module, instance, function) on the stack.
 * Stack: [-0, +1]. Returns 0, or -1 (nothing pushed) when absent. */
int script_push_function(struct script_state *state, enum script_module module,
                         size_t instance, int function);

/* Calls the function below nargs arguments on the stack, like lua_pcall,
 * under the time budget and a message handler. Returns 0 with nresults on
 * the stack. On error, returns -1 with nothing pushed, after logging
 * "file:line: message" and the traceback and keeping it as the engine's
 * last error. what names the call in logs.
 * Stack: [-(nargs+1), +nresults] or [-(nargs+1), +0] on error. */
int script_call(struct script_state *state, int nargs, int nresults, const char *what);

/* Pushes a string capped at max_string bytes (Stack: [-0, +1]). Returns 0,
 * or -1 when too long (an empty string is pushed instead). */
int script_push_string(struct script_state *state, const char *s, size_t len);

/* Converts JSON to a Lua value and back. Strings over max_string and
 * nesting deeper than 64 fail. push: [-0, +1] (nil pushed on failure),
 * returns 0 or -1. to_json: [-0, +0], returns a new reference or NULL. */
int script_push_json(struct script_state *state, json_t *value);
json_t *script_to_json(struct script_state *state, int index);

/* The last error raised in this state ("file:line: message" and
 * traceback), or NULL. Valid until the next call on the state. */
const char *script_state_last_error(struct script_state *state);

/* ---- Permissions (scripts/roles.lua) --------------------------------- */

enum script_role {
    SCRIPT_ROLE_GERANT = 1 << 0,
    SCRIPT_ROLE_EMPLOYE = 1 << 1,
    SCRIPT_ROLE_CLIENT = 1 << 2,
    SCRIPT_ROLE_VISITEUR = 1 << 3,
    SCRIPT_ROLE_COMPTABLE = 1 << 4,
    SCRIPT_ROLE_PROPRIETAIRE = 1 << 5,
};

/* Returns the role bit for a person_role.role value, or 0 when unknown. */
unsigned script_role_from_name(const char *name);

struct script_subject {
    int64_t person_id; /* 0 for an API token with no person */
    unsigned roles;    /* set of enum script_role bits */
};

struct script_target {
    int64_t person_id; /* 0 when none */
    int is_self;
    int is_family;
    const char *role; /* role granted or removed, for rider.roles.update; or NULL */
};

/* Asks roles.lua whether subject may perform action on target (NULL when
 * there is none). Returns 1 when allowed, 0 when denied, and denies (0) when
 * the script fails. When reason is not NULL and the script gives a reason
 * for a denial, *reason is set to it (French, caller frees); otherwise NULL. */
int script_can(struct script_state *state, const struct script_subject *subject,
               const char *action, const struct script_target *target, char **reason);

/* ---- Plugins ----------------------------------------------------------- */

/* Runs every plugin's handler for event, in plugin name order, with the
 * payload converted to a Lua table. For import_row_mapped each handler gets
 * the record returned by the previous one and *result is the final record.
 * For the other events *result is an object {plugin name: returned value}
 * holding the non-nil returns (for example warnings). A failing handler is
 * logged and skipped. Returns 0, or -1 when at least one handler failed;
 * *result is set in both cases (new reference). */
int script_run_hook(struct script_state *state, enum script_hook event, json_t *payload,
                    json_t **result);

/* Runs every plugin's import_row_mapped handler on the record table at
 * index (a table in this state, so no JSON conversion is needed). A handler
 * returning a table replaces the record for the next handler; one returning
 * nil keeps it. Leaves the final record on top of the stack.
 * Stack: [-0, +1]. Returns 0, or -1 when a handler failed (logged; the
 * record it received is kept). */
int script_run_row_hook(struct script_state *state, int index);

/* Returns 1 when at least one plugin handles event, so callers can skip
 * building the payload. */
int script_has_hook(struct script_state *state, enum script_hook event);

/* Finds the route of plugin for method and path (the part after
 * /api/v1/plugins/<plugin>, starting with '/'). Segments written ":name" in
 * the declaration match any segment. Returns the route index or -1. */
int script_route_find(struct script_state *state, const char *plugin, const char *method,
                      const char *path);

/* Calls a route handler with request (a JSON object the server fills:
 * method, path, query, body, subject, ...; "params" is added from the path).
 * Sets *status and *body (new reference). Returns 0, or -1 when the handler
 * failed (then *status = 500 and *body contains a French error). */
int script_route_call(struct script_state *state, int route, const char *path,
                      json_t *request, int *status, json_t **body);

/* Number of routes, and their declaration, for the router to mount. */
size_t script_route_count(struct script_state *state);
int script_route_info(struct script_state *state, int route, const char **plugin,
                      const char **method, const char **path);

#endif
