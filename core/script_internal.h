/*
 * Internal declarations shared by the script engine's files (script.c,
 * script_sandbox.c, script_api.c, script_plugin.c, script_roles.c,
 * script_watch.c). Not for other modules: they use script.h.
 */
#ifndef LICOL_SCRIPT_INTERNAL_H
#define LICOL_SCRIPT_INTERNAL_H

#include <lua.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "script.h"

#define SCRIPT_MAX_FUNCTIONS 4    /* required functions per module */
#define SCRIPT_MAX_FILE (1 << 20) /* bytes per script or SQL file */
#define SCRIPT_MAX_FILES 512      /* files per version */
#define SCRIPT_JSON_DEPTH 64

struct script_file {
    char *name; /* "roles.lua", "lib/x.lua", "plugins/gabarit/plugin.lua", ... */
    char *text;
    size_t len;
};

/* Error record shared by an engine and its versions, so that a state used
 * after script_engine_free() can still record its errors safely. */
struct script_errors {
    atomic_int refs;
    pthread_mutex_t lock;
    char *last_error;
    time_t last_error_at;
    unsigned rejected;
    unsigned errors;
};

void script_errors_record(struct script_errors *errors, const char *message);
void script_errors_release(struct script_errors *errors);

struct script_route_decl {
    char *plugin;
    char *method;
    char *path;
};

struct script_plugin_decl {
    char *name;
    char *version;
    char *file; /* "plugins/<name>/plugin.lua" */
    int hooks[SCRIPT_HOOK_COUNT]; /* 1 when the plugin handles the event */
};

struct script_limits {
    size_t memory_limit;
    unsigned budget_ms;
    size_t max_string;
};

struct script_version {
    atomic_int refs;
    char id[13];
    time_t loaded_at;
    struct script_file *files;
    size_t file_count;
    struct script_limits limits;
    json_t *config; /* licol.config source, may be NULL */
    struct script_errors *errors;

    /* Parsed while building the main state, then immutable. */
    struct fields_catalogue *fields;
    struct script_plugin_decl *plugins;
    size_t plugin_count;
    struct script_route_decl *routes;
    size_t route_count;
    struct script_migration *migrations;
    size_t migration_count;

    struct script_state *main;
};

struct script_module_instance {
    char *file;
    int refs[SCRIPT_MAX_FUNCTIONS];
};

struct script_state {
    lua_State *L;
    struct script_version *version;
    int holds_version; /* 1 for worker states: a reference is held */

    /* Allocator accounting and the call budget. */
    size_t mem_used;
    size_t mem_limit;
    int64_t deadline_ns; /* 0 = no call running */
    int budget_hit;

    int handler_ref; /* message handler adding the traceback */
    struct script_module_instance *modules[SCRIPT_MOD_COUNT];
    size_t module_counts[SCRIPT_MOD_COUNT];

    int *hook_refs;     /* plugin_count * SCRIPT_HOOK_COUNT, LUA_NOREF when absent */
    int *route_refs;    /* route_count */
    size_t routes_loaded;
    int *validate_refs; /* one per field with a validate function */
    size_t validate_count;

    /* script_can caches: reused subject and target tables. */
    int subject_ref, target_ref, roles_ref;
    unsigned cached_roles;
    int64_t cached_person;
    int cache_valid;

    char *last_error;
};

struct script_watch;

struct script_engine {
    char *scripts_dir;
    char *plugins_dir;
    struct script_limits limits;
    unsigned debounce_ms;
    unsigned poll_ms;

    pthread_mutex_t lock; /* guards current */
    struct script_version *current;
    struct script_errors *errors;
    json_t *config;
    unsigned reloads;
    unsigned char fingerprint[32]; /* of the files at the last load attempt */

    struct script_watch *watch;
};

/* Computes a digest of the names, sizes, mtimes and inodes of every file the
 * engine would read, without reading them. Returns 0 or -1. */
int script_fingerprint(const struct script_engine *engine, unsigned char digest[32]);

/* script_watch.c */
void script_watch_free(struct script_watch *watch);

/* script_sandbox.c */
struct script_state *script_sandbox_new(const struct script_limits *limits, char **err);
void script_sandbox_close(struct script_state *state);
int64_t script_now_ns(void);
/* Loads and runs one chunk under the budget. On success pushes its single
 * result and returns 0 ([-0, +1]); on failure returns -1 with *err set
 * ("file:line: message" and traceback, caller frees) ([-0, +0]). */
int script_sandbox_run(struct script_state *state, const char *chunkname, const char *text,
                       size_t len, char **err);
/* Protected call under the budget with the message handler. Returns the
 * Lua status; on error *err is set (caller frees) and the stack is as
 * before the function and arguments were pushed. */
int script_sandbox_pcall(struct script_state *state, int nargs, int nresults, char **err);

/* script_api.c: installs the global table `licol`. [-0, +0] */
int script_api_install(struct script_state *state);
/* Sets licol.fields from the version's catalogue. [-0, +0] */
void script_api_set_fields(struct script_state *state);

/* script_plugin.c */
int script_plugins_load(struct script_state *state, int parse, char **err);
int script_field_validate(struct script_state *state, const struct field_def *field,
                          const char *value, char **err_fr);
void script_plugin_decls_free(struct script_version *version);

/* script.c */
const struct script_file *script_version_file(const struct script_version *version,
                                              const char *name);
/* Runs the optional selftest() of the table on top of the stack. A selftest
 * fails by raising an error or returning false (and an optional message).
 * file (may be NULL) prefixes the message. Stack: [-0, +0]. */
int script_run_selftest(struct script_state *state, const char *file, char **err);
void script_state_record_error(struct script_state *state, const char *what, const char *err);

#endif
