/*
 * Import execution: header detection, row mapping through the format
 * scripts, matching, merging and writing. Run bookkeeping (creation,
 * reports, undo, rejected rows) is in import_run.c.
 *
 * Per row: the format script's map(row, cols) returns a record table (or
 * nil and a reason). The record is read into struct incoming, matched to a
 * known person, merged field by field with the rule of scripts/merge.lua,
 * and written inside a savepoint, so a row that fails half-way leaves
 * nothing behind.
 *
 * Matching: a valid licence number first; otherwise the folded last name,
 * first name and birth date (person.match_key). An e-mail alone never
 * matches, because families share one. Several candidates, or a candidate
 * whose licence number differs, set the row aside for staff ("à vérifier").
 */
#include "import.h"
#include "csvread.h"
#include "import_index.h"
#include "arena.h"
#include "batch_queue.h"
#include "fields.h"
#include "log.h"
#include "normalize.h"
#include "person.h"
#include "script.h"

#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define MAX_SCRIPT_ERRORS 20 /* a broken format script aborts the run after this many rows */
#define BATCH_ROWS 256       /* mapped rows handed over at a time to the writing thread */
#define BATCH_COUNT 4        /* batches in flight; with BATCH_ROWS, bounds the memory used */
#define UPDATE_CACHE_SIZE 32 /* person UPDATE statements kept, one per set of changed columns */
#define CHECKED_VALUES 2     /* values that check_values() may drop: sex and galop */
/* A batch is handed over once its copies reach this size, and the mapping
 * thread waits while the batches handed over hold more than
 * MAX_BYTES_IN_FLIGHT, so that rows of very wide files (csvread allows
 * 256 fields of 64 KiB) do not multiply memory by BATCH_ROWS. */
#define BATCH_MAX_BYTES (1024 * 1024)
#define MAX_BYTES_IN_FLIGHT (2 * 1024 * 1024)

/* Core person columns an import may set, in the order of the SQL below. */
enum column {
    COL_LAST_NAME,
    COL_FIRST_NAME,
    COL_BIRTH_DATE,
    COL_SEX,
    COL_EMAIL,
    COL_EMAIL_INVALID,
    COL_PHONE,
    COL_MOBILE,
    COL_ADDRESS,
    COL_ADDRESS2,
    COL_POSTCODE,
    COL_CITY,
    COL_COUNTRY,
    COL_LICENCE_NUMBER,
    COL_LICENCE_RAW,
    COL_GALOP,
    COL_COUNT
};

static const char *const column_names[COL_COUNT] = {
    "last_name", "first_name", "birth_date", "sex",      "email",   "email_invalid",
    "phone",     "mobile",     "address",    "address2", "postcode", "city",
    "country",   "licence_number", "licence_raw", "galop",
};

static const char *const column_labels[COL_COUNT] = {
    "Nom",     "Prénom",  "Date de naissance",   "Sexe",  "E-mail", "E-mail invalide",
    "Téléphone", "Portable", "Adresse", "Complément d'adresse", "Code postal", "Ville",
    "Pays",    "Numéro de licence", "Licence (valeur non reconnue)", "Galop",
};

enum merge_rule { RULE_FILL, RULE_NEWEST, RULE_KEEP };

struct licence_in {
    long season;
    const char *number, *type, *category, *club, *taken_on;
};

struct guardian_in {
    const char *last_name, *first_name, *email, *phone, *mobile;
};

struct incoming {
    const char *values[COL_COUNT];
    const char *email2;
    struct licence_in licence;
    int has_guardian;
    struct guardian_in guardian;
};

struct warning_in {
    const char *field, *message;
};

/* One row as the mapping thread hands it to the writing thread. Every
 * string is a copy in the batch's arena, because the Lua values it came
 * from are collected once the next row is mapped. */
struct mapped_row {
    long record_no, line_no;
    char **fields; /* the file's fields, for issue records */
    size_t nfields;
    const char *rejected; /* the mapping rejected the row for this French reason */
    struct incoming in;
    struct warning_in *warnings;
    size_t nwarnings;
    /* Plugin fields by catalogue index minus core_count: the value, and
     * the French message when fields_validate() rejected it. */
    const char **plugin_values;
    const char **plugin_errors;
};

struct mapped_batch {
    struct arena arena;
    size_t bytes; /* handed over with the batch: its arena's size then */
    size_t count;
    struct mapped_row rows[BATCH_ROWS];
};

/* Person ids already touched by this run, as a bitmap indexed by id: its
 * size follows the largest person id (about 90 KB for 700,000 people), not
 * the number of rows, so memory stays flat on a national-scale file. */
struct seen_set {
    uint64_t *bits;
    size_t words;
};

/* Issues are written to a temporary file as the run goes and stored in
 * import_row_issue after the data transaction (which a preview rolls
 * back), so that memory does not grow with the number of issues. Each is
 * one record: the fixed header below, then field, message and raw, each
 * NUL-terminated (field and raw empty when absent). */
struct issue_header {
    long record_no, line_no;
    int64_t person_id;
    char kind; /* 'r' rejected, 's' set aside, 'w' warning */
};

struct job {
    struct db *db;
    struct script_state *state;
    lua_State *L;
    const struct fields_catalogue *catalogue;
    int64_t run_id;
    const struct import_options *options;
    struct import_progress *progress;
    import_progress_fn on_progress;
    void *userdata;
    struct import_counts counts;
    char now[32];

    int header_seen;
    size_t header_count;
    json_t *header;
    int format_instance;
    char format_name[64];
    char format_label[160];
    int cols_ref;
    int row_ref;
    size_t row_len;
    int script_errors;
    int row_hook; /* a plugin handles import_row_mapped */

    enum merge_rule rules[COL_COUNT];
    enum merge_rule default_rule;
    int policy_ref;                  /* the policy table */
    enum merge_rule *plugin_rules;   /* by catalogue index minus core_count */
    char **galop_codes;              /* galop_level.code, read before the run */
    size_t galop_count;

    struct {
        unsigned mask;
        sqlite3_stmt *stmt;
    } update_cache[UPDATE_CACHE_SIZE];

    struct seen_set seen;
    json_t *samples;
    FILE *issues;        /* temporary file of issue records */
    long stored_warnings; /* warnings written to it, at most IMPORT_MAX_STORED_ISSUES */

    /* the row being processed, for issue records */
    long record_no, line_no;
    size_t nfields;
    char **fields;

    /* Rows run without a savepoint of their own unless row_savepoints is
     * set. A row that has to be rolled back alone then sets restart, and
     * the run starts over from the first row with savepoints. */
    int row_savepoints;
    int restart;

    /* The file is read and mapped on a thread of its own (the mapping
     * thread: csvread and Lua) while the calling thread writes (the
     * writing thread: SQLite). During a pass, the mapping thread alone
     * uses L, the fields from header_seen to row_hook, counts.rows and
     * the fields marked below; the writing thread uses the rest.
     * job_fail() may be called from both. */
    const char *path;
    struct csvread_info *info;
    char *read_err;
    int read_rc;
    struct batch_queue queue;
    struct mapped_batch *batch; /* mapping thread: the batch being filled */
    size_t *lengths;            /* mapping thread: field lengths after unprotecting */
    size_t lengths_size;
    pthread_mutex_t fail_lock;
    atomic_int failed;

    char *fatal;       /* French reason the run stops */
    int file_rejected; /* the fatal reason is the file, not the database */
    char encoding[16];
    char separator;
};

/* ---- small helpers -------------------------------------------------------- */

static int is_empty(const char *s)
{
    return !s || !*s;
}

static int same(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static void job_fail(struct job *job, int file_rejected, char *message)
{
    pthread_mutex_lock(&job->fail_lock);
    if (job->fatal) {
        free(message);
    } else {
        job->fatal = message ? message : strdup("Erreur interne pendant l'import.");
        job->file_rejected = file_rejected;
        atomic_store(&job->failed, 1);
    }
    pthread_mutex_unlock(&job->fail_lock);
}

static void job_db_fail(struct job *job, const char *what)
{
    job_fail(job, 0,
             str_printf("Erreur de la base de données (%s) : %s. L'import est annulé, rien n'a "
                        "été modifié.",
                        what, db_error_fr(job->db)));
}

static char *row_raw_json(struct job *job)
{
    json_t *array = json_array();
    char *text;

    for (size_t i = 0; i < job->nfields; i++) {
        json_t *value = json_string(job->fields[i]);
        json_array_append_new(array, value ? value : json_string(""));
    }
    text = json_dumps(array, JSON_COMPACT);
    json_decref(array);
    return text;
}

/* Records an issue for the current row. Every rejected and set-aside row
 * is kept (staff download them to fix and import again); warnings beyond
 * IMPORT_MAX_STORED_ISSUES are only counted by the caller. */
static void add_issue(struct job *job, char kind, const char *field, const char *message,
                      int64_t person_id)
{
    struct issue_header header;
    char *raw = NULL;

    if (kind == 'w' && job->stored_warnings >= IMPORT_MAX_STORED_ISSUES)
        return;
    if (!job->issues) {
        job->issues = tmpfile();
        if (!job->issues) {
            log_error("import", "run %lld: cannot create a temporary file for issues",
                      (long long)job->run_id);
            return;
        }
    }
    if (kind == 'w')
        job->stored_warnings++;
    else
        raw = row_raw_json(job);
    memset(&header, 0, sizeof(header));
    header.record_no = job->record_no;
    header.line_no = job->line_no;
    header.person_id = person_id;
    header.kind = kind;
    fwrite(&header, sizeof(header), 1, job->issues);
    fwrite(field ? field : "", 1, strlen(field ? field : "") + 1, job->issues);
    fwrite(message, 1, strlen(message) + 1, job->issues);
    fwrite(raw ? raw : "", 1, strlen(raw ? raw : "") + 1, job->issues);
    free(raw);
}

/* Reads one NUL-terminated string of an issue record into out. */
static int read_issue_text(FILE *f, struct buf *out)
{
    int c;

    buf_reset(out);
    while ((c = getc(f)) != EOF && c != '\0') {
        char ch = (char)c;
        buf_append(out, &ch, 1);
    }
    buf_terminate(out);
    return c == EOF ? -1 : 0;
}

static void reject_row(struct job *job, const char *message)
{
    job->counts.rejected++;
    add_issue(job, 'r', NULL, message, 0);
}

static void set_aside_row(struct job *job, const char *message, int64_t person_id)
{
    job->counts.set_aside++;
    add_issue(job, 's', NULL, message, person_id);
}

/* ---- seen set ------------------------------------------------------------- */

static int seen_find(const struct seen_set *set, int64_t id)
{
    size_t word = (size_t)id / 64;

    if (id <= 0 || word >= set->words)
        return 0;
    return (set->bits[word] >> (id % 64)) & 1;
}

static void seen_add(struct seen_set *set, int64_t id)
{
    size_t word = (size_t)id / 64;

    if (id <= 0)
        return;
    if (word >= set->words) {
        size_t words = set->words ? set->words : 1024;
        uint64_t *bits;
        while (words <= word)
            words *= 2;
        bits = realloc(set->bits, words * sizeof(*bits));
        if (!bits)
            return; /* only the duplicate warning is lost */
        memset(bits + set->words, 0, (words - set->words) * sizeof(*bits));
        set->bits = bits;
        set->words = words;
    }
    set->bits[word] |= (uint64_t)1 << (id % 64);
}

/* ---- merge policy ------------------------------------------------------------ */

static int rule_from_name(const char *name, enum merge_rule *rule)
{
    if (!strcmp(name, "fill"))
        *rule = RULE_FILL;
    else if (!strcmp(name, "newest"))
        *rule = RULE_NEWEST;
    else if (!strcmp(name, "keep"))
        *rule = RULE_KEEP;
    else
        return -1;
    return 0;
}

/* Reads scripts/merge.lua's policy() once per run. Without merge.lua the
 * built-in default applies: licence fields newest, the rest fill. */
static int load_policy(struct job *job)
{
    lua_State *L = job->L;
    int top = lua_gettop(L);

    for (int c = 0; c < COL_COUNT; c++)
        job->rules[c] = RULE_FILL;
    job->rules[COL_LICENCE_NUMBER] = RULE_NEWEST;
    job->rules[COL_GALOP] = RULE_NEWEST;
    job->default_rule = RULE_FILL;
    job->policy_ref = LUA_NOREF;

    if (script_module_count(job->state, SCRIPT_MOD_MERGE) == 0)
        return 0;
    if (script_push_function(job->state, SCRIPT_MOD_MERGE, 0, SCRIPT_MERGE_POLICY) < 0)
        return 0;
    if (script_call(job->state, 0, 1, "merge.lua policy()") < 0) {
        job_fail(job, 0, str_printf("Le script merge.lua a échoué : %s",
                                    script_state_last_error(job->state)));
        return -1;
    }
    if (!lua_istable(L, -1)) {
        job_fail(job, 0, strdup("Le script merge.lua doit rendre une table de règles par "
                                "champ (policy())."));
        lua_settop(L, top);
        return -1;
    }
    lua_getfield(L, -1, "default");
    if (lua_isstring(L, -1) && rule_from_name(lua_tostring(L, -1), &job->default_rule) < 0) {
        job_fail(job, 0, str_printf("merge.lua : règle « %s » inconnue pour default (règles "
                                    "possibles : fill, newest, keep).",
                                    lua_tostring(L, -1)));
        lua_settop(L, top);
        return -1;
    }
    lua_pop(L, 1);
    for (int c = 0; c < COL_COUNT; c++) {
        lua_getfield(L, -1, column_names[c]);
        if (lua_isstring(L, -1)) {
            if (rule_from_name(lua_tostring(L, -1), &job->rules[c]) < 0) {
                job_fail(job, 0, str_printf("merge.lua : règle « %s » inconnue pour %s (règles "
                                            "possibles : fill, newest, keep).",
                                            lua_tostring(L, -1), column_names[c]));
                lua_settop(L, top);
                return -1;
            }
        } else if (c != COL_LICENCE_NUMBER && c != COL_GALOP) {
            job->rules[c] = job->default_rule;
        }
        lua_pop(L, 1);
    }
    job->policy_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_settop(L, top);
    return 0;
}

/* Reads the Galop codes that person.galop may reference, for
 * check_values() on the mapping thread. */
static int load_galop_codes(struct job *job)
{
    sqlite3_stmt *stmt = db_stmt(job->db, "SELECT code FROM galop_level ORDER BY rank");
    int rc;

    if (!stmt)
        return -1;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        char **codes = realloc(job->galop_codes, (job->galop_count + 1) * sizeof(*codes));
        char *code = strdup((const char *)sqlite3_column_text(stmt, 0));
        if (!codes || !code) {
            free(code);
            if (codes)
                job->galop_codes = codes;
            sqlite3_reset(stmt);
            return -1;
        }
        job->galop_codes = codes;
        job->galop_codes[job->galop_count++] = code;
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Reads the rules of plugin fields from the policy table once, so that
 * the writing thread needs no Lua. */
static int load_plugin_rules(struct job *job)
{
    lua_State *L = job->L;
    size_t count = job->catalogue->count - job->catalogue->core_count;

    job->plugin_rules = calloc(count ? count : 1, sizeof(*job->plugin_rules));
    if (!job->plugin_rules)
        return -1;
    for (size_t i = 0; i < count; i++) {
        const struct field_def *def = &job->catalogue->fields[job->catalogue->core_count + i];
        job->plugin_rules[i] = job->default_rule;
        if (job->policy_ref == LUA_NOREF)
            continue;
        lua_rawgeti(L, LUA_REGISTRYINDEX, job->policy_ref);
        lua_getfield(L, -1, def->key);
        if (lua_isstring(L, -1))
            rule_from_name(lua_tostring(L, -1), &job->plugin_rules[i]);
        lua_pop(L, 2);
    }
    return 0;
}

/* Returns 1 when the incoming value should replace the stored one. */
static int should_take(enum merge_rule rule, const char *stored, const char *incoming,
                       int replace, int incoming_is_newest)
{
    if (is_empty(incoming) || same(stored, incoming))
        return 0; /* an empty incoming value never erases anything */
    if (rule == RULE_KEEP)
        return is_empty(stored);
    if (is_empty(stored))
        return 1;
    if (rule == RULE_NEWEST)
        return incoming_is_newest;
    return replace;
}

/* ---- header --------------------------------------------------------------- */

static void format_name_from_file(const char *file, char *out, size_t size)
{
    const char *base = strrchr(file, '/');
    size_t len;

    base = base ? base + 1 : file;
    len = strcspn(base, ".");
    snprintf(out, size, "%.*s", (int)len, base);
}

static int handle_header(struct job *job, size_t n, char **fields)
{
    lua_State *L = job->L;
    int top = lua_gettop(L);
    size_t formats = script_module_count(job->state, SCRIPT_MOD_FORMATS);
    long best_score = 0;
    int best = -1;
    struct buf missing_text;

    job->header_seen = 1;
    job->header_count = n;
    job->header = json_array();
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        json_t *name = json_string(fields[i]);
        json_array_append_new(job->header, name ? name : json_string(""));
        script_push_string(job->state, fields[i], strlen(fields[i]));
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    int headers_index = lua_gettop(L);

    buf_init(&missing_text, 64 * 1024);
    for (size_t f = 0; f < formats; f++) {
        char name[64];
        long score;

        format_name_from_file(script_module_file(job->state, SCRIPT_MOD_FORMATS, f), name,
                              sizeof(name));
        if (strcmp(job->options->format, "auto") != 0 && strcmp(job->options->format, name) != 0)
            continue;
        if (script_push_function(job->state, SCRIPT_MOD_FORMATS, f, SCRIPT_FORMAT_DETECT) < 0)
            continue;
        lua_pushvalue(L, headers_index);
        if (script_call(job->state, 1, 4, "format detect()") < 0) {
            log_warn("import", "run %lld: detect() of format %s failed", (long long)job->run_id,
                     name);
            continue;
        }
        score = (long)lua_tointeger(L, -4);
        if (score > best_score && lua_istable(L, -3)) {
            best_score = score;
            best = (int)f;
            if (job->cols_ref != LUA_NOREF)
                luaL_unref(L, LUA_REGISTRYINDEX, job->cols_ref);
            lua_pushvalue(L, -3);
            job->cols_ref = luaL_ref(L, LUA_REGISTRYINDEX);
            snprintf(job->format_name, sizeof(job->format_name), "%s", name);
            snprintf(job->format_label, sizeof(job->format_label), "%s",
                     lua_isstring(L, -1) ? lua_tostring(L, -1) : name);
        } else if (score <= 0 && lua_istable(L, -2)) {
            buf_printf(&missing_text, "%s« %s » : il manque ", missing_text.len ? " ; " : "",
                       lua_isstring(L, -1) ? lua_tostring(L, -1) : name);
            for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, -2); i++) {
                lua_rawgeti(L, -2, i);
                buf_printf(&missing_text, "%s%s", i > 1 ? ", " : "", lua_tostring(L, -1));
                lua_pop(L, 1);
            }
        }
        lua_settop(L, headers_index);
    }

    if (best < 0) {
        char *found = json_dumps(job->header, JSON_COMPACT);
        if (formats == 0)
            job_fail(job, 1, strdup("Aucun format d'import n'est installé (scripts/formats/)."));
        else if (strcmp(job->options->format, "auto") != 0 && missing_text.len == 0)
            job_fail(job, 1, str_printf("Format « %s » inconnu. Choisissez « auto » ou l'un des "
                                        "fichiers de scripts/formats/.",
                                        job->options->format));
        else
            job_fail(job, 1,
                     str_printf("Colonnes non reconnues : ce fichier ne correspond à aucun format "
                                "connu. Colonnes attendues, par format : %s. Colonnes trouvées "
                                "dans le fichier : %s. Vérifiez que vous avez exporté la bonne "
                                "liste, ou ajoutez vos noms de colonnes dans scripts/formats/.",
                                missing_text.len ? missing_text.data : "?", found ? found : "?"));
        free(found);
        buf_free(&missing_text);
        lua_settop(L, top);
        return 1;
    }
    buf_free(&missing_text);
    job->format_instance = best;
    lua_settop(L, top);

    lua_createtable(L, (int)n, 0);
    job->row_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    log_info("import", "run %lld: format %s (score %ld), %zu columns", (long long)job->run_id,
             job->format_name, best_score, n);
    return 0;
}

/* ---- reading a record table ------------------------------------------------- */

/* Returns a copy of the string at key, or NULL when it is absent, not a
 * string, or empty. */
static const char *copy_string(lua_State *L, int table, const char *key, struct arena *arena)
{
    const char *copy = NULL;
    size_t len;

    lua_getfield(L, table, key);
    if (lua_type(L, -1) == LUA_TSTRING) {
        const char *s = lua_tolstring(L, -1, &len);
        if (len > 0)
            copy = arena_strndup(arena, s, len);
    }
    lua_pop(L, 1);
    return copy;
}

static void read_record(lua_State *L, int rec, struct arena *arena, struct incoming *in)
{
    memset(in, 0, sizeof(*in));
    for (int c = 0; c < COL_COUNT; c++)
        in->values[c] = copy_string(L, rec, column_names[c], arena);
    in->email2 = copy_string(L, rec, "email2", arena);

    lua_getfield(L, rec, "licence");
    if (lua_istable(L, -1)) {
        int t = lua_gettop(L);
        lua_getfield(L, t, "season");
        in->licence.season = lua_isinteger(L, -1) ? (long)lua_tointeger(L, -1) : 0;
        lua_pop(L, 1);
        in->licence.number = copy_string(L, t, "number", arena);
        in->licence.type = copy_string(L, t, "type", arena);
        in->licence.category = copy_string(L, t, "category", arena);
        in->licence.club = copy_string(L, t, "club", arena);
        in->licence.taken_on = copy_string(L, t, "taken_on", arena);
    }
    lua_pop(L, 1);

    lua_getfield(L, rec, "guardian");
    if (lua_istable(L, -1)) {
        int t = lua_gettop(L);
        in->guardian.last_name = copy_string(L, t, "last_name", arena);
        in->guardian.first_name = copy_string(L, t, "first_name", arena);
        in->guardian.email = copy_string(L, t, "email", arena);
        in->guardian.phone = copy_string(L, t, "phone", arena);
        in->guardian.mobile = copy_string(L, t, "mobile", arena);
        in->has_guardian = in->guardian.last_name || in->guardian.first_name;
    }
    lua_pop(L, 1);
}

/* Copies the record's warnings list ({field =, message =} tables). */
static void read_warnings(lua_State *L, int rec, struct arena *arena, struct mapped_row *row)
{
    row->warnings = NULL;
    row->nwarnings = 0;
    lua_getfield(L, rec, "warnings");
    if (lua_istable(L, -1)) {
        size_t n = (size_t)lua_rawlen(L, -1);
        /* Room for the warnings of check_values() as well. */
        row->warnings = arena_alloc(arena, (n + CHECKED_VALUES) * sizeof(*row->warnings));
        for (size_t i = 1; row->warnings && i <= n; i++) {
            lua_rawgeti(L, -1, (lua_Integer)i);
            if (lua_istable(L, -1)) {
                int t = lua_gettop(L);
                const char *message = copy_string(L, t, "message", arena);
                if (message) {
                    row->warnings[row->nwarnings].field = copy_string(L, t, "field", arena);
                    row->warnings[row->nwarnings].message = message;
                    row->nwarnings++;
                }
            }
            lua_pop(L, 1);
        }
    } else {
        row->warnings = arena_alloc(arena, CHECKED_VALUES * sizeof(*row->warnings));
    }
    lua_pop(L, 1);
}

static int galop_known(const struct job *job, const char *code)
{
    for (size_t i = 0; i < job->galop_count; i++) {
        if (!strcmp(job->galop_codes[i], code))
            return 1;
    }
    return 0;
}

/* Drops, with a warning, a value of the club's script that the person
 * table would refuse (the CHECK on sex, the reference to galop_level),
 * so that the row is imported without it rather than refused by the
 * database half-way. */
static void check_values(const struct job *job, struct arena *arena, struct mapped_row *row)
{
    const char **sex = &row->in.values[COL_SEX];
    const char **galop = &row->in.values[COL_GALOP];
    const char *field = NULL;
    char message[300];

    if (!row->warnings)
        return;
    if (*sex && strcmp(*sex, "F") != 0 && strcmp(*sex, "M") != 0) {
        snprintf(message, sizeof(message),
                 "sexe « %.100s » non enregistré : seules les valeurs F et M sont possibles ; "
                 "vérifiez la colonne ou le script de format",
                 *sex);
        field = "sex";
        *sex = NULL;
    } else if (*galop && !galop_known(job, *galop)) {
        snprintf(message, sizeof(message),
                 "niveau de Galop « %.100s » inconnu de Licol : non enregistré ; vérifiez le "
                 "script de format",
                 *galop);
        field = "galop";
        *galop = NULL;
    }
    if (field) {
        row->warnings[row->nwarnings].field = field;
        row->warnings[row->nwarnings].message = arena_strndup(arena, message, strlen(message));
        row->nwarnings++;
        /* Both values may be wrong: check the other one too. */
        check_values(job, arena, row);
    }
}

/* Copies the plugin field values of the record and validates them here,
 * because validation may run a plugin's Lua function. */
static void read_plugin_fields(struct job *job, int rec, struct arena *arena,
                               struct mapped_row *row)
{
    size_t count = job->catalogue->count - job->catalogue->core_count;

    row->plugin_values = NULL;
    row->plugin_errors = NULL;
    if (count == 0)
        return;
    row->plugin_values = arena_alloc(arena, count * sizeof(*row->plugin_values));
    row->plugin_errors = arena_alloc(arena, count * sizeof(*row->plugin_errors));
    if (!row->plugin_values || !row->plugin_errors) {
        row->plugin_values = row->plugin_errors = NULL;
        return;
    }
    for (size_t i = 0; i < count; i++) {
        const struct field_def *def = &job->catalogue->fields[job->catalogue->core_count + i];
        const char *value = copy_string(job->L, rec, def->key, arena);
        char *err = NULL;

        row->plugin_values[i] = value;
        row->plugin_errors[i] = NULL;
        if (value && fields_validate(job->catalogue, def->key, value, job->state, &err) < 0) {
            const char *message = err ? err : "valeur invalide";
            row->plugin_errors[i] = arena_strndup(arena, message, strlen(message));
        }
        free(err);
    }
}

static void record_warnings(struct job *job, const struct mapped_row *row, int64_t person_id)
{
    for (size_t i = 0; i < row->nwarnings; i++) {
        job->counts.warnings++;
        add_issue(job, 'w', row->warnings[i].field, row->warnings[i].message, person_id);
    }
}

/* ---- writing -------------------------------------------------------------- */

static int audit(struct job *job, int64_t person_id, const char *action, const char *field,
                 const char *old_value, const char *new_value)
{
    sqlite3_stmt *stmt = db_stmt(job->db, "INSERT INTO audit_log (at, actor_id, person_id, action,"
                                          " field, old_value, new_value, import_run_id)"
                                          " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    int rc;

    if (!stmt)
        return SQLITE_ERROR;
    sqlite3_bind_text(stmt, 1, job->now, -1, SQLITE_STATIC);
    if (job->options->actor_id)
        sqlite3_bind_int64(stmt, 2, job->options->actor_id);
    sqlite3_bind_int64(stmt, 3, person_id);
    sqlite3_bind_text(stmt, 4, action, -1, SQLITE_STATIC);
    db_bind_text_or_null(stmt, 5, field);
    db_bind_text_or_null(stmt, 6, old_value);
    db_bind_text_or_null(stmt, 7, new_value);
    sqlite3_bind_int64(stmt, 8, job->run_id);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static void compute_keys(const char *const values[COL_COUNT], char *match_key, char *search)
{
    person_match_key(values[COL_LAST_NAME], values[COL_FIRST_NAME], values[COL_BIRTH_DATE],
                     match_key, PERSON_KEY_SIZE);
    person_search_text(values[COL_LAST_NAME], values[COL_FIRST_NAME], values[COL_EMAIL],
                       values[COL_PHONE], values[COL_MOBILE], values[COL_LICENCE_NUMBER], search,
                       PERSON_SEARCH_SIZE);
}

/* Binds the columns ?1 to ?16 in column order, then the derived keys as
 * ?17 and ?18; match_key and search are the caller's buffers that must
 * outlive the statement's execution. */
static void bind_person_values(sqlite3_stmt *stmt, const char *const values[COL_COUNT],
                               char *match_key, char *search)
{
    compute_keys(values, match_key, search);
    sqlite3_bind_text(stmt, 1, values[COL_LAST_NAME] ? values[COL_LAST_NAME] : "", -1,
                      SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, values[COL_FIRST_NAME] ? values[COL_FIRST_NAME] : "", -1,
                      SQLITE_STATIC);
    for (int c = COL_BIRTH_DATE; c < COL_COUNT; c++)
        db_bind_text_or_null(stmt, c + 1, values[c]);
    sqlite3_bind_text(stmt, 17, match_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 18, search, -1, SQLITE_STATIC);
}

static int64_t insert_person(struct job *job, const char *const values[COL_COUNT])
{
    sqlite3_stmt *stmt = db_stmt(
        job->db, "INSERT INTO person (last_name, first_name, birth_date, sex, email, email_invalid,"
                 " phone, mobile, address, address2, postcode, city, country, licence_number,"
                 " licence_raw, galop, match_key, search_text, created_at, updated_at,"
                 " created_by_import)"
                 " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,"
                 " ?17, ?18, ?19, ?19, ?20)");
    char match_key[PERSON_KEY_SIZE], search[PERSON_SEARCH_SIZE];
    int rc;

    if (!stmt)
        return -1;
    bind_person_values(stmt, values, match_key, search);
    sqlite3_bind_text(stmt, 19, job->now, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 20, job->run_id);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return -1;
    return sqlite3_last_insert_rowid(db_handle(job->db));
}

/* Columns that the derived keys are computed from. */
#define MATCH_KEY_COLUMNS ((1u << COL_LAST_NAME) | (1u << COL_FIRST_NAME) | (1u << COL_BIRTH_DATE))
#define SEARCH_COLUMNS                                                                        \
    ((1u << COL_LAST_NAME) | (1u << COL_FIRST_NAME) | (1u << COL_EMAIL) | (1u << COL_PHONE) | \
     (1u << COL_MOBILE) | (1u << COL_LICENCE_NUMBER))

/* Returns the UPDATE statement that sets the columns of mask (bit c for
 * column c) and the keys derived from them, prepared once per mask.
 * Setting only the changed columns spares SQLite from rewriting the
 * entries of indexes on unchanged ones, such as the licence number's. */
static sqlite3_stmt *update_statement(struct job *job, unsigned mask)
{
    struct buf sql;
    sqlite3_stmt *stmt = NULL;
    size_t slot;

    for (slot = 0; slot < UPDATE_CACHE_SIZE && job->update_cache[slot].stmt; slot++) {
        if (job->update_cache[slot].mask == mask)
            return job->update_cache[slot].stmt;
    }
    if (slot == UPDATE_CACHE_SIZE) {
        /* Full: the rarest combinations of changes share the last slot. */
        slot = UPDATE_CACHE_SIZE - 1;
        sqlite3_finalize(job->update_cache[slot].stmt);
        job->update_cache[slot].stmt = NULL;
    }

    buf_init(&sql, 1024);
    buf_printf(&sql, "UPDATE person SET");
    for (int c = 0; c < COL_COUNT; c++) {
        if (mask & (1u << c))
            buf_printf(&sql, " %s = ?%d,", column_names[c], c + 1);
    }
    if (mask & MATCH_KEY_COLUMNS)
        buf_printf(&sql, " match_key = ?17,");
    if (mask & SEARCH_COLUMNS)
        buf_printf(&sql, " search_text = ?18,");
    buf_printf(&sql, " updated_at = ?19 WHERE id = ?20");
    buf_terminate(&sql);
    if (sqlite3_prepare_v3(db_handle(job->db), sql.data, -1, SQLITE_PREPARE_PERSISTENT, &stmt,
                           NULL) != SQLITE_OK) {
        log_error("import", "prepare failed: %s (sql: %.200s)", sqlite3_errmsg(db_handle(job->db)),
                  sql.data);
        stmt = NULL;
    }
    buf_free(&sql);
    job->update_cache[slot].mask = mask;
    job->update_cache[slot].stmt = stmt;
    return stmt;
}

/* Writes the merged values of a known person; old are the stored ones. */
static int update_person(struct job *job, int64_t id, const char *const values[COL_COUNT],
                         char *const old[COL_COUNT])
{
    char match_key[PERSON_KEY_SIZE], search[PERSON_SEARCH_SIZE];
    unsigned mask = 0;
    sqlite3_stmt *stmt;
    int rc;

    for (int c = 0; c < COL_COUNT; c++) {
        if (!same(values[c], old[c]))
            mask |= 1u << c;
    }
    stmt = update_statement(job, mask);
    if (!stmt)
        return SQLITE_ERROR;
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    bind_person_values(stmt, values, match_key, search);
    sqlite3_bind_text(stmt, 19, job->now, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 20, id);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Adds the client role to a person without any role: a new person, or a
 * known one whose has_roles the caller read with the person. Returns 1
 * when added, 0 when the person had roles, -1 on error. */
static int ensure_role(struct job *job, int64_t id, int is_new, int has_roles)
{
    sqlite3_stmt *stmt;
    int rc;

    if (has_roles)
        return 0;
    stmt = db_stmt(job->db, "INSERT INTO person_role (person_id, role) VALUES (?1, 'client')");
    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, id);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return -1;
    /* A new person's "create" entry is enough for undo: deleting the
     * person cascades to roles, licences, links and contacts. */
    if (is_new)
        return 1;
    return audit(job, id, "add", "role", NULL, "client") == SQLITE_OK ? 1 : -1;
}

static char *licence_json(const char *number, const char *type, const char *category,
                          const char *club, const char *taken_on)
{
    json_t *o = json_object();
    char *text;

    json_object_set_new(o, "number", number ? json_string(number) : json_null());
    json_object_set_new(o, "type", type ? json_string(type) : json_null());
    json_object_set_new(o, "category", category ? json_string(category) : json_null());
    json_object_set_new(o, "club", club ? json_string(club) : json_null());
    json_object_set_new(o, "taken_on", taken_on ? json_string(taken_on) : json_null());
    text = json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(o);
    return text;
}

/* Inserts or updates the licence of the row's season. The file's values
 * win for that season, because licence fields always take the newest value.
 * With fill_only (a second line of the same person in one file), the row
 * only completes what the first line left empty.
 * Returns 1 when something changed, 0 when not, -1 on error. */
static int upsert_licence(struct job *job, int64_t id, const struct licence_in *in,
                          int fill_only, int is_new)
{
    sqlite3_stmt *stmt;
    char field[32];
    int rc, changed = 0;

    if (in->season <= 0 || !in->number)
        return 0;
    snprintf(field, sizeof(field), "licence:%ld", in->season);
    if (is_new)
        goto insert; /* a person created by this row has no licence yet */
    stmt = db_stmt(job->db, "SELECT number, type, category, club, taken_on FROM licence"
                            " WHERE person_id = ?1 AND season = ?2");
    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_int64(stmt, 2, in->season);
    rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        const char *old[5];
        const char *merged[5];
        const char *incoming[5] = {in->number, in->type, in->category, in->club, in->taken_on};
        char *old_copy[5];
        for (int i = 0; i < 5; i++) {
            const char *v = (const char *)sqlite3_column_text(stmt, i);
            old_copy[i] = v ? strdup(v) : NULL;
            old[i] = old_copy[i];
            merged[i] = is_empty(incoming[i]) || (fill_only && !is_empty(old[i])) ? old[i]
                                                                                 : incoming[i];
            if (!same(merged[i], old[i]))
                changed = 1;
        }
        sqlite3_reset(stmt);
        if (changed) {
            char *old_json = licence_json(old[0], old[1], old[2], old[3], old[4]);
            char *new_json = licence_json(merged[0], merged[1], merged[2], merged[3], merged[4]);
            stmt = db_stmt(job->db, "UPDATE licence SET number = ?3, type = ?4, category = ?5,"
                                    " club = ?6, taken_on = ?7 WHERE person_id = ?1 AND season = ?2");
            rc = stmt ? SQLITE_OK : SQLITE_ERROR;
            if (stmt) {
                sqlite3_bind_int64(stmt, 1, id);
                sqlite3_bind_int64(stmt, 2, in->season);
                for (int i = 0; i < 5; i++)
                    db_bind_text_or_null(stmt, i + 3, merged[i]);
                rc = sqlite3_step(stmt) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
                sqlite3_reset(stmt);
            }
            if (rc == SQLITE_OK)
                rc = audit(job, id, "update", field, old_json, new_json);
            free(old_json);
            free(new_json);
            if (rc != SQLITE_OK)
                changed = -1;
        }
        for (int i = 0; i < 5; i++)
            free(old_copy[i]);
        return changed;
    }
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return -1;

insert:
    stmt = db_stmt(job->db, "INSERT INTO licence (person_id, season, number, type, category, club,"
                            " taken_on) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_int64(stmt, 2, in->season);
    sqlite3_bind_text(stmt, 3, in->number, -1, SQLITE_STATIC);
    db_bind_text_or_null(stmt, 4, in->type);
    db_bind_text_or_null(stmt, 5, in->category);
    db_bind_text_or_null(stmt, 6, in->club);
    db_bind_text_or_null(stmt, 7, in->taken_on);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return -1;
    if (is_new)
        return 1;
    {
        char *new_json = licence_json(in->number, in->type, in->category, in->club, in->taken_on);
        rc = audit(job, id, "add", field, NULL, new_json);
        free(new_json);
    }
    return rc == SQLITE_OK ? 1 : -1;
}

/* Adds the second e-mail address of the file as an extra contact. */
static int add_contact(struct job *job, int64_t id, const char *email, int is_new)
{
    sqlite3_stmt *stmt;
    int rc;

    if (is_empty(email))
        return 0;
    stmt = db_stmt(job->db, "INSERT OR IGNORE INTO person_contact (person_id, kind, value, note)"
                            " VALUES (?1, 'email', ?2, 'import')");
    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_text(stmt, 2, email, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return -1;
    if (sqlite3_changes(db_handle(job->db)) == 0)
        return 0;
    if (is_new)
        return 1;
    {
        char id_text[32];
        snprintf(id_text, sizeof(id_text), "%lld",
                 (long long)sqlite3_last_insert_rowid(db_handle(job->db)));
        return audit(job, id, "add", "contact", NULL, id_text) == SQLITE_OK ? 1 : -1;
    }
}

static void sample_change(json_t *changes, const char *field, const char *label,
                          const char *old_value, const char *new_value)
{
    if (!changes)
        return; /* the report has enough samples already */
    json_array_append_new(changes, json_pack("{s:s,s:s,s:o,s:o}", "field", field, "label", label,
                                             "old", old_value ? json_string(old_value) : json_null(),
                                             "new", new_value ? json_string(new_value) : json_null()));
}

static void add_sample(struct job *job, int64_t id, const char *action,
                       const char *const values[COL_COUNT], json_t *changes)
{
    char name[512];

    if (!changes || json_array_size(job->samples) >= IMPORT_SAMPLE_CHANGES ||
        json_array_size(changes) == 0) {
        json_decref(changes);
        return;
    }
    snprintf(name, sizeof(name), "%s %s", values[COL_FIRST_NAME] ? values[COL_FIRST_NAME] : "",
             values[COL_LAST_NAME] ? values[COL_LAST_NAME] : "");
    json_array_append_new(job->samples,
                          json_pack("{s:i,s:{s:I,s:s},s:s,s:o}", "row", (int)job->line_no, "person",
                                    "id", (json_int_t)id, "name", name, "action", action,
                                    "changes", changes));
}

/* Finds or creates the legal guardian of a minor and links them. Returns 1
 * when something changed, 0 when not, -1 on error. */
static int link_guardian(struct job *job, int64_t child_id, const struct guardian_in *g)
{
    sqlite3_stmt *stmt;
    char match_key[PERSON_KEY_SIZE];
    int64_t guardian_id = 0;
    int candidates = 0, rc, changed = 0;

    person_match_key(g->last_name, g->first_name, NULL, match_key, sizeof(match_key));
    stmt = db_stmt(job->db, "SELECT id, email FROM person WHERE match_key = ?1 AND id <> ?2");
    if (!stmt)
        return -1;
    sqlite3_bind_text(stmt, 1, match_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, child_id);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *email = (const char *)sqlite3_column_text(stmt, 1);
        candidates++;
        if (!g->email || same(email, g->email))
            guardian_id = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return -1;
    if (guardian_id && candidates > 1 && !g->email)
        guardian_id = 0; /* homonyms and nothing to tell them apart: create none, link none */

    if (!guardian_id && candidates > 1) {
        job->counts.warnings++;
        add_issue(job, 'w', "guardian", "plusieurs personnes portent le nom du responsable légal : "
                                        "lien à faire à la main",
                  child_id);
        return 0;
    }
    if (!guardian_id) {
        const char *values[COL_COUNT] = {0};
        values[COL_LAST_NAME] = g->last_name;
        values[COL_FIRST_NAME] = g->first_name;
        values[COL_EMAIL] = g->email;
        values[COL_PHONE] = g->phone;
        values[COL_MOBILE] = g->mobile;
        guardian_id = insert_person(job, values);
        if (guardian_id < 0 || audit(job, guardian_id, "create", NULL, NULL, "responsable légal") ||
            ensure_role(job, guardian_id, 1, 0) < 0)
            return -1;
        job->counts.created++;
        seen_add(&job->seen, guardian_id);
        if (json_array_size(job->samples) < IMPORT_SAMPLE_CHANGES) {
            json_t *changes = json_array();
            for (int c = 0; c < COL_COUNT; c++) {
                if (values[c])
                    sample_change(changes, column_names[c], column_labels[c], NULL, values[c]);
            }
            add_sample(job, guardian_id, "create", values, changes);
        }
        changed = 1;
    }

    stmt = db_stmt(job->db, "INSERT OR IGNORE INTO family_link (person_id, related_id, relationship,"
                            " is_legal_guardian, is_payer, created_at)"
                            " VALUES (?1, ?2, 'responsable légal', 1, 1, ?3)");
    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, child_id);
    sqlite3_bind_int64(stmt, 2, guardian_id);
    sqlite3_bind_text(stmt, 3, job->now, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return -1;
    if (sqlite3_changes(db_handle(job->db)) > 0) {
        char id_text[32];
        snprintf(id_text, sizeof(id_text), "%lld",
                 (long long)sqlite3_last_insert_rowid(db_handle(job->db)));
        if (audit(job, child_id, "add", "family_link", NULL, id_text) != SQLITE_OK)
            return -1;
        changed = 1;
    }
    return changed;
}

/* Merges the plugin fields of the record (one key per field declared by a
 * plugin) into person_field. Invalid values become warnings. Returns 1
 * when something changed, -1 on a database error. */
static int merge_plugin_fields(struct job *job, const struct mapped_row *row, int64_t id,
                               int is_new, json_t *changes)
{
    int changed = 0;

    for (size_t i = job->catalogue->core_count; i < job->catalogue->count && row->plugin_values;
         i++) {
        const struct field_def *def = &job->catalogue->fields[i];
        size_t slot = i - job->catalogue->core_count;
        const char *value = row->plugin_values[slot];
        sqlite3_stmt *stmt;
        char *old = NULL;
        char audit_field[FIELDS_MAX_KEY + 8];
        int rc = SQLITE_OK;

        if (is_empty(value))
            continue;
        if (row->plugin_errors[slot]) {
            job->counts.warnings++;
            add_issue(job, 'w', def->key, row->plugin_errors[slot], id);
            continue;
        }
        stmt = db_stmt(job->db, "SELECT value FROM person_field WHERE person_id = ?1 AND key = ?2");
        if (!stmt)
            return -1;
        sqlite3_bind_int64(stmt, 1, id);
        sqlite3_bind_text(stmt, 2, def->key, -1, SQLITE_STATIC);
        if (sqlite3_step(stmt) == SQLITE_ROW)
            old = strdup((const char *)sqlite3_column_text(stmt, 0));
        sqlite3_reset(stmt);
        if (should_take(job->plugin_rules[slot], old, value, job->options->replace, 1)) {
            stmt = db_stmt(job->db, "INSERT INTO person_field (person_id, key, value)"
                                    " VALUES (?1, ?2, ?3) ON CONFLICT (person_id, key)"
                                    " DO UPDATE SET value = excluded.value");
            rc = SQLITE_ERROR;
            if (stmt) {
                sqlite3_bind_int64(stmt, 1, id);
                sqlite3_bind_text(stmt, 2, def->key, -1, SQLITE_STATIC);
                sqlite3_bind_text(stmt, 3, value, -1, SQLITE_STATIC);
                rc = sqlite3_step(stmt) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
                sqlite3_reset(stmt);
            }
            snprintf(audit_field, sizeof(audit_field), "field:%s", def->key);
            if (rc == SQLITE_OK && !is_new)
                rc = audit(job, id, "update", audit_field, old, value);
            sample_change(changes, def->key, def->label, old, value);
            changed = 1;
        }
        free(old);
        if (rc != SQLITE_OK)
            return -1;
    }
    return changed;
}

/* ---- one row ----------------------------------------------------------------- */

enum match_result { MATCH_NONE, MATCH_ONE, MATCH_AMBIGUOUS, MATCH_CONFLICT, MATCH_ERROR };

/* Compares two match keys "last|first|birth": the same person unless both
 * the folded last name and the birth date differ (a birth date missing on
 * either side counts as agreeing). A changed last name alone (marriage,
 * typing) or a corrected birth date alone is still the same rider. */
static int same_identity(const char *known, const char *incoming)
{
    const char *known_first = strchr(known, '|');
    const char *incoming_first = strchr(incoming, '|');
    const char *known_birth = known_first ? strchr(known_first + 1, '|') : NULL;
    const char *incoming_birth = incoming_first ? strchr(incoming_first + 1, '|') : NULL;
    int same_last, same_birth;

    if (!known_first || !incoming_first || !known_birth || !incoming_birth)
        return 1;
    same_last = known_first - known == incoming_first - incoming &&
                memcmp(known, incoming, (size_t)(known_first - known)) == 0;
    same_birth = !known_birth[1] || !incoming_birth[1] || !strcmp(known_birth, incoming_birth);
    return same_last || same_birth;
}

static enum match_result match_person(struct job *job, const struct incoming *in, int64_t *id,
                                      char *why, size_t why_size)
{
    sqlite3_stmt *stmt;
    char match_key[PERSON_KEY_SIZE];
    int rc, n = 0;
    int64_t candidate = 0;
    char candidate_licence[32] = "";

    *id = 0;
    person_match_key(in->values[COL_LAST_NAME], in->values[COL_FIRST_NAME],
                     in->values[COL_BIRTH_DATE], match_key, sizeof(match_key));
    if (in->values[COL_LICENCE_NUMBER]) {
        char known_key[PERSON_KEY_SIZE] = "";
        stmt = db_stmt(job->db, "SELECT id, match_key FROM person WHERE licence_number = ?1");
        if (!stmt)
            return MATCH_ERROR;
        sqlite3_bind_text(stmt, 1, in->values[COL_LICENCE_NUMBER], -1, SQLITE_STATIC);
        rc = sqlite3_step(stmt);
        if (rc == SQLITE_ROW) {
            const char *key = (const char *)sqlite3_column_text(stmt, 1);
            *id = sqlite3_column_int64(stmt, 0);
            snprintf(known_key, sizeof(known_key), "%s", key ? key : "");
        }
        sqlite3_reset(stmt);
        if (rc == SQLITE_ROW) {
            /* A licence number identifies one rider, but a typing error in
             * a file can give a rider someone else's number: when both the
             * last name and the birth date differ, it is not the same
             * person, and nothing is merged. */
            if (!same_identity(known_key, match_key)) {
                snprintf(why, why_size,
                         "à vérifier : le numéro de licence %s est déjà celui d'une autre "
                         "personne (n° %lld), dont le nom et la date de naissance diffèrent ; "
                         "rien n'a été fusionné. Vérifiez le numéro dans le fichier.",
                         in->values[COL_LICENCE_NUMBER], (long long)*id);
                return MATCH_CONFLICT;
            }
            return MATCH_ONE;
        }
        if (rc != SQLITE_DONE)
            return MATCH_ERROR;
    }

    stmt = db_stmt(job->db, "SELECT id, licence_number FROM person WHERE match_key = ?1 LIMIT 5");
    if (!stmt)
        return MATCH_ERROR;
    sqlite3_bind_text(stmt, 1, match_key, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *licence = (const char *)sqlite3_column_text(stmt, 1);
        n++;
        candidate = sqlite3_column_int64(stmt, 0);
        snprintf(candidate_licence, sizeof(candidate_licence), "%s", licence ? licence : "");
    }
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE)
        return MATCH_ERROR;
    if (n == 0)
        return MATCH_NONE;
    if (n > 1) {
        snprintf(why, why_size,
                 "à vérifier : plusieurs personnes connues ont ce nom, ce prénom et cette date de "
                 "naissance ; rien n'a été fusionné. Rapprochez-les sur leur fiche puis "
                 "importez de nouveau cette ligne.");
        return MATCH_AMBIGUOUS;
    }
    if (in->values[COL_LICENCE_NUMBER] && candidate_licence[0]) {
        snprintf(why, why_size,
                 "à vérifier : une personne connue (n° %lld) a ce nom, ce prénom et cette date de "
                 "naissance mais le numéro de licence %s, différent de %s ; rien n'a été "
                 "fusionné.",
                 (long long)candidate, candidate_licence, in->values[COL_LICENCE_NUMBER]);
        *id = candidate;
        return MATCH_CONFLICT;
    }
    *id = candidate;
    return MATCH_ONE;
}

static int process_record(struct job *job, const struct mapped_row *row)
{
    struct incoming in = row->in;
    enum match_result match;
    int64_t id;
    char why[512];
    /* Field changes are described for the first IMPORT_SAMPLE_CHANGES people
     * only; past that, no JSON is built. */
    json_t *changes = json_array_size(job->samples) < IMPORT_SAMPLE_CHANGES ? json_array() : NULL;
    int changed = 0, rc;
    int first_seen, has_roles = 0;

    if (is_empty(in.values[COL_LAST_NAME]) && is_empty(in.values[COL_FIRST_NAME])) {
        reject_row(job, "ni nom ni prénom : la ligne ne désigne personne");
        json_decref(changes);
        return 0;
    }

    match = match_person(job, &in, &id, why, sizeof(why));
    if (match == MATCH_ERROR)
        goto db_error;
    if (match == MATCH_AMBIGUOUS || match == MATCH_CONFLICT) {
        set_aside_row(job, why, id);
        record_warnings(job, row, id);
        json_decref(changes);
        return 0;
    }

    if (match == MATCH_NONE) {
        id = insert_person(job, in.values);
        if (id < 0)
            goto db_error;
        if (audit(job, id, "create", NULL, NULL, NULL) != SQLITE_OK || ensure_role(job, id, 1, 0) < 0)
            goto db_error;
        for (int c = 0; c < COL_COUNT; c++) {
            if (in.values[c])
                sample_change(changes, column_names[c], column_labels[c], NULL, in.values[c]);
        }
        if (upsert_licence(job, id, &in.licence, 0, 1) < 0 ||
            add_contact(job, id, in.email2, 1) < 0)
            goto db_error;
        if (merge_plugin_fields(job, row, id, 1, changes) < 0)
            goto db_error;
        if (in.has_guardian && link_guardian(job, id, &in.guardian) < 0)
            goto db_error;
        job->counts.created++;
        seen_add(&job->seen, id);
        record_warnings(job, row, id);
        add_sample(job, id, "create", in.values, changes);
        return 0;
    }

    /* Update of a known person. A second line of the same person in this
     * file only completes what the first one left empty, so the result does
     * not depend on which line comes last. */
    first_seen = seen_find(&job->seen, id);
    {
        sqlite3_stmt *stmt = db_stmt(
            job->db, "SELECT last_name, first_name, birth_date, sex, email, email_invalid, phone,"
                     " mobile, address, address2, postcode, city, country, licence_number,"
                     " licence_raw, galop,"
                     " (SELECT MAX(season) FROM licence WHERE person_id = person.id),"
                     " EXISTS (SELECT 1 FROM person_role WHERE person_id = person.id)"
                     " FROM person WHERE id = ?1");
        char *old[COL_COUNT] = {0};
        const char *merged[COL_COUNT];
        long stored_season;
        int newest;

        if (!stmt)
            goto db_error;
        sqlite3_bind_int64(stmt, 1, id);
        if (sqlite3_step(stmt) != SQLITE_ROW) {
            sqlite3_reset(stmt);
            goto db_error;
        }
        for (int c = 0; c < COL_COUNT; c++) {
            const char *v = (const char *)sqlite3_column_text(stmt, c);
            old[c] = v && *v ? strdup(v) : NULL;
        }
        stored_season = sqlite3_column_type(stmt, COL_COUNT) == SQLITE_NULL
                            ? 0
                            : (long)sqlite3_column_int64(stmt, COL_COUNT);
        has_roles = sqlite3_column_int(stmt, COL_COUNT + 1);
        sqlite3_reset(stmt);
        newest = in.licence.season > 0 && in.licence.season >= stored_season;

        for (int c = 0; c < COL_COUNT; c++) {
            merged[c] = old[c];
            enum merge_rule rule = first_seen ? RULE_KEEP : job->rules[c];
            if (should_take(rule, old[c], in.values[c], job->options->replace, newest)) {
                merged[c] = in.values[c];
                changed = 1;
                sample_change(changes, column_names[c], column_labels[c], old[c], in.values[c]);
                if (audit(job, id, "update", column_names[c], old[c], in.values[c]) !=
                    SQLITE_OK) {
                    rc = -1;
                    goto update_done;
                }
            }
        }
        /* A valid address replaces the one kept aside as invalid. */
        if (merged[COL_EMAIL] && merged[COL_EMAIL_INVALID] && !same(merged[COL_EMAIL], old[COL_EMAIL])) {
            merged[COL_EMAIL_INVALID] = NULL;
            audit(job, id, "update", "email_invalid", old[COL_EMAIL_INVALID], NULL);
        }
        rc = changed ? update_person(job, id, merged, old) : SQLITE_OK;
    update_done:
        for (int c = 0; c < COL_COUNT; c++)
            free(old[c]);
        if (rc != SQLITE_OK)
            goto db_error;
    }

    rc = upsert_licence(job, id, &in.licence, first_seen != 0, 0);
    if (rc < 0)
        goto db_error;
    changed |= rc;
    rc = ensure_role(job, id, 0, has_roles);
    if (rc < 0)
        goto db_error;
    changed |= rc;
    rc = add_contact(job, id, in.email2, 0);
    if (rc < 0)
        goto db_error;
    changed |= rc;
    rc = merge_plugin_fields(job, row, id, 0, changes);
    if (rc < 0)
        goto db_error;
    changed |= rc;
    if (in.has_guardian) {
        rc = link_guardian(job, id, &in.guardian);
        if (rc < 0)
            goto db_error;
        changed |= rc;
    }

    if (first_seen) {
        job->counts.warnings++;
        add_issue(job, 'w', NULL,
                  "cette personne figure déjà plus haut dans le fichier : les deux lignes ont été "
                  "réunies",
                  id);
    } else {
        seen_add(&job->seen, id);
    }
    if (changed) {
        /* Counted once per person: a second line of the same person in the
         * file that changes more is still one update. */
        if (!first_seen)
            job->counts.updated++;
        {
            const char *names[COL_COUNT] = {0};
            names[COL_LAST_NAME] = in.values[COL_LAST_NAME];
            names[COL_FIRST_NAME] = in.values[COL_FIRST_NAME];
            add_sample(job, id, "update", names, changes);
        }
    } else {
        if (!first_seen)
            job->counts.unchanged++;
        json_decref(changes);
    }
    record_warnings(job, row, id);
    return 0;

db_error:
    json_decref(changes);
    if ((sqlite3_errcode(db_handle(job->db)) & 0xff) == SQLITE_CONSTRAINT) {
        log_info("import", "run %lld line %ld: constraint: %s", (long long)job->run_id,
                 job->line_no, sqlite3_errmsg(db_handle(job->db)));
        reject_row(job, strstr(sqlite3_errmsg(db_handle(job->db)), "licence_number")
                            ? "le numéro de licence de cette ligne est déjà celui d'une autre "
                              "fiche : vérifiez-le dans le fichier"
                            : "la ligne contredit une donnée déjà enregistrée : vérifiez-la "
                              "dans le fichier");
        return -2; /* roll the row back, go on */
    }
    job_db_fail(job, "écriture d'une personne");
    return -1;
}

/* ---- per record callback ---------------------------------------------------- */

static int row_is_blank(size_t n, char **fields, const size_t *lengths)
{
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < lengths[i]; j++) {
            if (fields[i][j] != ' ' && fields[i][j] != '\t')
                return 0;
        }
    }
    return 1;
}

static int run_savepoint(struct job *job, const char *sql)
{
    sqlite3_stmt *stmt = db_stmt(job->db, sql);
    int rc;

    if (!stmt)
        return SQLITE_ERROR;
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Fails the run if the server asked running imports to stop. Called by
 * both threads, so that a stop is obeyed until the commit. */
static int check_cancel(struct job *job)
{
    if (!atomic_load(&job->progress->cancel))
        return 0;
    job_fail(job, 0, strdup("L'import a été interrompu par l'arrêt du serveur : rien n'a "
                            "été modifié. Relancez-le."));
    return 1;
}

/* Mapping thread: returns the next free row of the batch being filled,
 * handing the batch over once it holds BATCH_ROWS rows or BATCH_MAX_BYTES. Returns NULL once the writing
 * thread has stopped. */
static struct mapped_row *next_row(struct job *job, long record_no, long line_no, size_t n,
                                   char **fields, const size_t *lengths)
{
    struct mapped_batch *batch = job->batch;
    struct mapped_row *row;

    if (batch && (batch->count == BATCH_ROWS || arena_size(&batch->arena) >= BATCH_MAX_BYTES)) {
        batch->bytes = arena_size(&batch->arena);
        batch_queue_push(&job->queue, batch, batch->bytes);
        batch = job->batch = NULL;
    }
    if (!batch) {
        batch = job->batch = batch_queue_take_empty(&job->queue);
        if (!batch)
            return NULL;
    }
    row = &batch->rows[batch->count++];
    memset(row, 0, sizeof(*row));
    row->record_no = record_no;
    row->line_no = line_no;
    row->nfields = n;
    row->fields = arena_alloc(&batch->arena, (n ? n : 1) * sizeof(*row->fields));
    for (size_t i = 0; row->fields && i < n; i++)
        row->fields[i] = arena_strndup(&batch->arena, fields[i], lengths[i]);
    if (!row->fields || (n > 0 && !row->fields[n - 1])) {
        job_fail(job, 0, strdup("Mémoire insuffisante pour lire le fichier."));
        batch->count--;
        return NULL;
    }
    return row;
}

/* Mapping thread: hands over a row rejected before it reached the
 * database. Returns 0, or 1 to stop reading. */
static int hand_over_rejected(struct job *job, long record_no, long line_no, size_t n,
                              char **fields, const size_t *lengths, const char *message)
{
    struct mapped_row *row = next_row(job, record_no, line_no, n, fields, lengths);

    if (!row)
        return 1;
    row->rejected = arena_strndup(&job->batch->arena, message, strlen(message));
    return 0;
}

/* Mapping thread: csvread's callback. Maps each row with the format
 * script and hands the result over to the writing thread. */
static int on_record(void *userdata, long record_no, long line_no, size_t n, char **fields,
                     const size_t *lengths)
{
    struct job *job = userdata;
    lua_State *L = job->L;
    int top = lua_gettop(L);
    struct mapped_row *row;

    if (!job->header_seen)
        return handle_header(job, n, fields);

    atomic_store(&job->progress->lines_done, line_no);
    if (check_cancel(job))
        return 1;
    if (atomic_load(&job->failed))
        return 1;
    if (row_is_blank(n, fields, lengths))
        return 0;
    job->counts.rows++;
    atomic_store(&job->progress->rows, job->counts.rows);
    if (job->on_progress && job->counts.rows % 512 == 0)
        job->on_progress(job->userdata, job->progress);

    /* Undo the protection added by our rejected-rows download. */
    if (n > job->lengths_size) {
        size_t *grown = realloc(job->lengths, n * sizeof(*grown));
        if (!grown) {
            job_fail(job, 0, strdup("Mémoire insuffisante pour lire le fichier."));
            return 1;
        }
        job->lengths = grown;
        job->lengths_size = n;
    }
    for (size_t i = 0; i < n; i++) {
        job->lengths[i] = lengths[i];
        if (fields[i][0] == '\'' && strchr("=+-@", fields[i][1]) && fields[i][1]) {
            fields[i]++;
            job->lengths[i]--;
        }
    }
    lengths = job->lengths;

    if (n != job->header_count) {
        int extra_empty = n > job->header_count;
        for (size_t i = job->header_count; extra_empty && i < n; i++)
            extra_empty = fields[i][0] == '\0';
        if (!extra_empty) {
            char message[256];
            snprintf(message, sizeof(message),
                     "la ligne compte %zu colonnes alors que l'en-tête en a %zu : vérifiez les "
                     "séparateurs et les guillemets de cette ligne",
                     n, job->header_count);
            return hand_over_rejected(job, record_no, line_no, n, fields, lengths, message);
        }
        n = job->header_count;
    }

    /* map(row, cols) */
    script_push_function(job->state, SCRIPT_MOD_FORMATS, (size_t)job->format_instance,
                         SCRIPT_FORMAT_MAP);
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->row_ref);
    for (size_t i = 0; i < n; i++) {
        script_push_string(job->state, fields[i], lengths[i]);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    for (size_t i = n; i < job->row_len; i++) {
        lua_pushnil(L);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    job->row_len = n;
    lua_rawgeti(L, LUA_REGISTRYINDEX, job->cols_ref);
    if (script_call(job->state, 2, 2, "format map()") < 0) {
        char message[600];
        const char *err = script_state_last_error(job->state);
        snprintf(message, sizeof(message), "le script de format a échoué sur cette ligne : %.*s",
                 (int)strcspn(err ? err : "?", "\n"), err ? err : "?");
        lua_settop(L, top);
        if (hand_over_rejected(job, record_no, line_no, n, fields, lengths, message))
            return 1;
        if (++job->script_errors >= MAX_SCRIPT_ERRORS) {
            job_fail(job, 0, str_printf("Le script de format « %s » échoue sur %d lignes : %s. "
                                        "Corrigez scripts/formats/%s.lua puis relancez l'import.",
                                        job->format_name, job->script_errors, err ? err : "?",
                                        job->format_name));
            return 1;
        }
        return 0;
    }
    if (!lua_istable(L, -2)) {
        const char *reason = lua_isstring(L, -1) ? lua_tostring(L, -1) : "ligne refusée par le "
                                                                         "script de format";
        int rc = hand_over_rejected(job, record_no, line_no, n, fields, lengths, reason);
        lua_settop(L, top);
        return rc;
    }

    if (job->row_hook) {
        /* Plugins may rewrite the mapped record (import_row_mapped). The
         * result replaces the record below the nil second result. */
        script_run_row_hook(job->state, -2);
        lua_replace(L, -3);
    }

    row = next_row(job, record_no, line_no, n, fields, lengths);
    if (row) {
        int rec = lua_gettop(L) - 1;
        read_record(L, rec, &job->batch->arena, &row->in);
        read_warnings(L, rec, &job->batch->arena, row);
        check_values(job, &job->batch->arena, row);
        read_plugin_fields(job, rec, &job->batch->arena, row);
    }
    lua_settop(L, top);
    return row ? 0 : 1;
}

static void *mapping_thread(void *arg)
{
    struct job *job = arg;

    job->read_rc = csvread_file(job->path, NULL, on_record, job, job->info, &job->read_err);
    if (job->batch) {
        if (job->batch->count > 0) {
            job->batch->bytes = arena_size(&job->batch->arena);
            batch_queue_push(&job->queue, job->batch, job->batch->bytes);
        } else {
            batch_queue_give_back(&job->queue, job->batch, 0);
        }
        job->batch = NULL;
    }
    batch_queue_close(&job->queue);
    return NULL;
}

/* Writing thread: merges one mapped row into the database. Returns 0, or 1
 * to stop (a fatal error, or a restart with savepoints). */
static int write_row(struct job *job, const struct mapped_row *row)
{
    int rc;

    job->record_no = row->record_no;
    job->line_no = row->line_no;
    job->nfields = row->nfields;
    job->fields = row->fields;
    if (row->rejected) {
        reject_row(job, row->rejected);
        return 0;
    }

    if (!job->row_savepoints) {
        rc = process_record(job, row);
        if (rc == -2) {
            log_info("import", "run %lld line %ld: the row must be rolled back alone; running "
                     "the file again with one savepoint per row", (long long)job->run_id,
                     job->line_no);
            job->restart = 1;
            return 1;
        }
        return rc == -1 ? 1 : 0;
    }
    if (run_savepoint(job, "SAVEPOINT import_row") != SQLITE_OK) {
        job_db_fail(job, "début de ligne");
        return 1;
    }
    rc = process_record(job, row);
    if (rc == 0) {
        if (run_savepoint(job, "RELEASE import_row") != SQLITE_OK) {
            job_db_fail(job, "fin de ligne");
            rc = -1;
        }
    } else {
        run_savepoint(job, "ROLLBACK TO import_row");
        run_savepoint(job, "RELEASE import_row");
    }
    return rc == -1 ? 1 : 0;
}

/* Reads, maps and writes the whole file once: the mapping thread reads and
 * maps while this thread writes. Returns csvread's result. */
static int run_pass(struct job *job)
{
    struct mapped_batch *batches[BATCH_COUNT] = {0};
    struct mapped_batch *batch;
    pthread_t thread;
    int stopped = 0;

    for (int i = 0; i < BATCH_COUNT; i++) {
        batches[i] = calloc(1, sizeof(*batches[i]));
        if (!batches[i]) {
            for (int j = 0; j < i; j++)
                free(batches[j]);
            job_fail(job, 0, strdup("Mémoire insuffisante pour lancer l'import."));
            return 0;
        }
    }
    batch_queue_init(&job->queue, (void *const *)batches, BATCH_COUNT, MAX_BYTES_IN_FLIGHT);
    job->batch = NULL;
    job->read_rc = 0;
    if (pthread_create(&thread, NULL, mapping_thread, job) != 0) {
        job_fail(job, 0, strdup("Impossible de lancer la lecture du fichier (thread)."));
    } else {
        while ((batch = batch_queue_pop(&job->queue))) {
            /* Rows mapped before a failure of the mapping thread are still
             * written: the run is rolled back, but the issues of its rows
             * (the script errors that made it fail among them) are kept
             * for staff. */
            if (!stopped && check_cancel(job)) {
                stopped = 1;
                batch_queue_stop(&job->queue);
            }
            for (size_t i = 0; i < batch->count && !stopped; i++) {
                if (write_row(job, &batch->rows[i])) {
                    stopped = 1;
                    batch_queue_stop(&job->queue);
                }
            }
            batch->count = 0;
            arena_reset(&batch->arena);
            batch_queue_give_back(&job->queue, batch, batch->bytes);
        }
        pthread_join(thread, NULL);
    }
    batch_queue_destroy(&job->queue);
    for (int i = 0; i < BATCH_COUNT; i++) {
        arena_free(&batches[i]->arena);
        free(batches[i]);
    }
    return job->read_rc;
}

/* ---- run ------------------------------------------------------------------- */

static long elapsed_ms(const struct timespec *start)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* Writes the run's issues and its import_run row, in the caller's
 * transaction. */
static int write_results(struct job *job, const struct csvread_info *info, const char *state,
                         const char *error, long duration_ms)
{
    sqlite3_stmt *stmt;
    json_t *report = json_pack("{s:O,s:b}", "sample_changes", job->samples, "issues_truncated",
                               job->stored_warnings >= IMPORT_MAX_STORED_ISSUES);
    char *report_text = json_dumps(report, JSON_COMPACT);
    char *header_text = job->header ? json_dumps(job->header, JSON_COMPACT) : NULL;
    char finished[32], separator[4];
    int rc = SQLITE_OK;

    json_decref(report);
    db_now(finished, sizeof(finished));
    if (info->separator == '\t')
        snprintf(separator, sizeof(separator), "\\t");
    else
        snprintf(separator, sizeof(separator), "%c", info->separator ? info->separator : '?');

    stmt = db_stmt(job->db, "INSERT INTO import_row_issue (run_id, record_no, line_no, kind, field,"
                            " message, person_id, raw) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
    if (stmt && job->issues) {
        struct issue_header header;
        struct buf field, message, raw;

        buf_init(&field, 0);
        buf_init(&message, 0);
        buf_init(&raw, 0);
        rewind(job->issues);
        while (fread(&header, sizeof(header), 1, job->issues) == 1) {
            if (read_issue_text(job->issues, &field) < 0 ||
                read_issue_text(job->issues, &message) < 0 ||
                read_issue_text(job->issues, &raw) < 0)
                break;
            sqlite3_reset(stmt);
            sqlite3_bind_int64(stmt, 1, job->run_id);
            sqlite3_bind_int64(stmt, 2, header.record_no);
            sqlite3_bind_int64(stmt, 3, header.line_no);
            sqlite3_bind_text(stmt, 4,
                              header.kind == 'r'   ? "rejected"
                              : header.kind == 's' ? "set_aside"
                                                   : "warning",
                              -1, SQLITE_STATIC);
            db_bind_text_or_null(stmt, 5, field.data);
            sqlite3_bind_text(stmt, 6, message.data ? message.data : "", -1, SQLITE_STATIC);
            /* A preview's people may not exist once its transaction is
             * rolled back, except the known people it set aside. */
            if (header.person_id && !(job->options->dry_run && header.kind == 'w'))
                sqlite3_bind_int64(stmt, 7, header.person_id);
            else
                sqlite3_bind_null(stmt, 7);
            db_bind_text_or_null(stmt, 8, raw.data);
            if (sqlite3_step(stmt) != SQLITE_DONE) {
                rc = SQLITE_ERROR;
                break;
            }
        }
        buf_free(&field);
        buf_free(&message);
        buf_free(&raw);
    }
    if (stmt)
        sqlite3_reset(stmt);

    stmt = db_stmt(job->db,
                   "UPDATE import_run SET state = ?2, format = ?3, format_label = ?4,"
                   " encoding = ?5, separator = ?6, header = ?7, finished_at = ?8,"
                   " duration_ms = ?9, rows = ?10, created = ?11, updated = ?12,"
                   " unchanged = ?13, set_aside = ?14, rejected = ?15, warnings = ?16,"
                   " error = ?17, report = ?18 WHERE id = ?1");
    if (rc == SQLITE_OK && stmt) {
        sqlite3_bind_int64(stmt, 1, job->run_id);
        sqlite3_bind_text(stmt, 2, state, -1, SQLITE_STATIC);
        db_bind_text_or_null(stmt, 3, job->format_name);
        db_bind_text_or_null(stmt, 4, job->format_label);
        db_bind_text_or_null(stmt, 5, info->encoding);
        db_bind_text_or_null(stmt, 6, info->separator ? separator : NULL);
        db_bind_text_or_null(stmt, 7, header_text);
        sqlite3_bind_text(stmt, 8, finished, -1, SQLITE_STATIC);
        sqlite3_bind_int64(stmt, 9, duration_ms);
        sqlite3_bind_int64(stmt, 10, job->counts.rows);
        sqlite3_bind_int64(stmt, 11, job->counts.created);
        sqlite3_bind_int64(stmt, 12, job->counts.updated);
        sqlite3_bind_int64(stmt, 13, job->counts.unchanged);
        sqlite3_bind_int64(stmt, 14, job->counts.set_aside);
        sqlite3_bind_int64(stmt, 15, job->counts.rejected);
        sqlite3_bind_int64(stmt, 16, job->counts.warnings);
        db_bind_text_or_null(stmt, 17, error);
        db_bind_text_or_null(stmt, 18, report_text);
        if (sqlite3_step(stmt) != SQLITE_DONE)
            rc = SQLITE_ERROR;
        sqlite3_reset(stmt);
    } else if (!stmt) {
        rc = SQLITE_ERROR;
    }
    free(report_text);
    free(header_text);
    if (rc != SQLITE_OK)
        log_error("import", "run %lld: storing the results failed: %s", (long long)job->run_id,
                  sqlite3_errmsg(db_handle(job->db)));
    return rc;
}

/* Writes the results in a transaction of their own: for a preview or a
 * failed run, whose data transaction was rolled back. */
static int store_results(struct job *job, const struct csvread_info *info, const char *state,
                         const char *error, long duration_ms)
{
    if (db_begin(job->db) != SQLITE_OK)
        return SQLITE_ERROR;
    if (write_results(job, info, state, error, duration_ms) != SQLITE_OK ||
        db_commit(job->db) != SQLITE_OK) {
        db_rollback(job->db);
        return SQLITE_ERROR;
    }
    return SQLITE_OK;
}

static void set_duration(struct job *job, long duration_ms)
{
    sqlite3_stmt *stmt =
        db_stmt(job->db, "UPDATE import_run SET duration_ms = ?2 WHERE id = ?1");

    if (!stmt)
        return;
    sqlite3_bind_int64(stmt, 1, job->run_id);
    sqlite3_bind_int64(stmt, 2, duration_ms);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        log_warn("import", "run %lld: storing the duration failed: %s", (long long)job->run_id,
                 sqlite3_errmsg(db_handle(job->db)));
    sqlite3_reset(stmt);
}

static void job_free(struct job *job)
{
    if (job->L) {
        if (job->cols_ref != LUA_NOREF)
            luaL_unref(job->L, LUA_REGISTRYINDEX, job->cols_ref);
        if (job->row_ref != LUA_NOREF)
            luaL_unref(job->L, LUA_REGISTRYINDEX, job->row_ref);
        if (job->policy_ref != LUA_NOREF)
            luaL_unref(job->L, LUA_REGISTRYINDEX, job->policy_ref);
    }
    if (job->issues)
        fclose(job->issues);
    for (size_t i = 0; i < UPDATE_CACHE_SIZE; i++)
        sqlite3_finalize(job->update_cache[i].stmt);
    free(job->plugin_rules);
    for (size_t i = 0; i < job->galop_count; i++)
        free(job->galop_codes[i]);
    free(job->galop_codes);
    free(job->lengths);
    free(job->seen.bits);
    json_decref(job->samples);
    json_decref(job->header);
    free(job->fatal);
    pthread_mutex_destroy(&job->fail_lock);
}

/* Forgets what a pass over the file produced, before the file is read
 * again from the start. The transaction was rolled back by the caller. */
static void job_reset_pass(struct job *job)
{
    if (job->cols_ref != LUA_NOREF)
        luaL_unref(job->L, LUA_REGISTRYINDEX, job->cols_ref);
    if (job->row_ref != LUA_NOREF)
        luaL_unref(job->L, LUA_REGISTRYINDEX, job->row_ref);
    job->cols_ref = job->row_ref = LUA_NOREF;
    json_decref(job->header);
    job->header = NULL;
    job->header_seen = 0;
    job->header_count = 0;
    job->row_len = 0;
    job->script_errors = 0;
    memset(&job->counts, 0, sizeof(job->counts));
    if (job->seen.bits)
        memset(job->seen.bits, 0, job->seen.words * sizeof(*job->seen.bits));
    json_array_clear(job->samples);
    if (job->issues)
        fclose(job->issues);
    job->issues = NULL;
    job->stored_warnings = 0;
    job->restart = 0;
    atomic_store(&job->progress->lines_done, 0);
    atomic_store(&job->progress->rows, 0);
}

static int mark_running(struct job *job)
{
    sqlite3_stmt *stmt = db_stmt(job->db, "UPDATE import_run SET state = 'running',"
                                          " started_at = ?2, script_version = ?3 WHERE id = ?1");
    int rc;

    if (!stmt)
        return SQLITE_ERROR;
    sqlite3_bind_int64(stmt, 1, job->run_id);
    sqlite3_bind_text(stmt, 2, job->now, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, script_version_id(script_state_version(job->state)), -1,
                      SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int import_run_execute(struct db *db, struct script_state *state, int64_t run_id,
                       const char *path, const struct import_options *options,
                       struct import_progress *progress, import_progress_fn on_progress,
                       void *userdata, struct import_counts *counts, int *file_rejected,
                       char **err)
{
    struct job job;
    struct csvread_info info;
    struct timespec start;
    char *read_err = NULL;
    long duration_ms;
    int rc, read_rc, results_stored = 0;

    memset(&job, 0, sizeof(job));
    memset(&info, 0, sizeof(info));
    *err = NULL;
    *file_rejected = 0;
    job.db = db;
    job.state = state;
    job.L = script_state_lua(state);
    job.catalogue = script_version_fields(script_state_version(state));
    job.run_id = run_id;
    job.options = options;
    job.progress = progress;
    job.on_progress = on_progress;
    job.userdata = userdata;
    job.cols_ref = job.row_ref = job.policy_ref = LUA_NOREF;
    job.samples = json_array();
    job.row_hook = script_has_hook(state, SCRIPT_HOOK_IMPORT_ROW_MAPPED);
    job.path = path;
    job.info = &info;
    pthread_mutex_init(&job.fail_lock, NULL);
    db_now(job.now, sizeof(job.now));
    clock_gettime(CLOCK_MONOTONIC, &start);

    if (mark_running(&job) != SQLITE_OK) {
        *err = str_printf("Impossible de démarrer l'import : %s.", db_error_fr(db));
        job_free(&job);
        return -1;
    }
    log_info("import", "run %lld: start (%s%s) on %s", (long long)run_id,
             options->dry_run ? "preview" : "real run", options->replace ? ", replace" : "",
             options->filename);

    if (load_policy(&job) == 0) {
        if (load_plugin_rules(&job) < 0)
            job_fail(&job, 0, strdup("Mémoire insuffisante pour lancer l'import."));
        else if (load_galop_codes(&job) < 0)
            job_db_fail(&job, "lecture des niveaux de Galop");
    }
    if (!job.fatal) {
        struct import_indexes deferred;
        struct stat st;
        long long estimated_rows =
            stat(path, &st) == 0 ? (long long)st.st_size / IMPORT_BYTES_PER_ROW_ESTIMATE : 0;

        /* Temporary data of the run (statement journals, index sorts) go
         * to files, so that memory does not grow with the tables. */
        db_exec(db, "PRAGMA temp_store = FILE");

        for (;;) {
            if (db_begin(db) != SQLITE_OK) {
                job_db_fail(&job, "début de l'import");
                break;
            }
            if (import_indexes_defer(db, estimated_rows, &deferred) < 0) {
                job_db_fail(&job, "préparation des index");
                import_indexes_free(&deferred);
                db_rollback(db);
                break;
            }
            read_rc = run_pass(&job);
            read_err = job.read_err;
            job.read_err = NULL;
            if (job.restart && !job.fatal) {
                import_indexes_free(&deferred);
                db_rollback(db);
                free(read_err);
                read_err = NULL;
                job_reset_pass(&job);
                job.row_savepoints = 1;
                continue;
            }
            if (read_rc < 0) {
                job_fail(&job, 1, read_err);
                read_err = NULL;
            } else if (!job.header_seen) {
                job_fail(&job, 1, strdup("Le fichier est vide."));
            } else if (!job.fatal && job.counts.rows == 0) {
                job_fail(&job, 1, strdup("Le fichier ne contient que la ligne d'en-tête : aucune "
                                         "personne à importer."));
            }
            /* A preview rolls back, which brings the set-aside indexes
             * back without building them. */
            if (job.fatal || options->dry_run || check_cancel(&job)) {
                db_rollback(db);
            } else if (import_indexes_rebuild(db, &deferred) != SQLITE_OK) {
                job_db_fail(&job, "reconstruction des index");
                db_rollback(db);
            } else if (write_results(&job, &info, "done", NULL, elapsed_ms(&start)) !=
                       SQLITE_OK) {
                /* Stored with the data, so that a run whose data was
                 * committed is never left "running" by a kill. */
                job_db_fail(&job, "enregistrement du rapport");
                db_rollback(db);
            } else if (db_commit(db) != SQLITE_OK) {
                job_db_fail(&job, "validation de l'import");
                db_rollback(db);
            } else {
                results_stored = 1;
            }
            import_indexes_free(&deferred);
            break;
        }
        db_exec(db, "PRAGMA temp_store = MEMORY");
    }
    free(read_err);

    duration_ms = elapsed_ms(&start);
    if (job.fatal) {
        /* Nothing of the data was kept: the counts describe nothing. */
        struct import_counts kept = job.counts;
        memset(&job.counts, 0, sizeof(job.counts));
        job.counts.rows = kept.rows;
    }
    atomic_store(&progress->lines_done, atomic_load(&progress->lines_total));
    if (results_stored) {
        /* The duration stored with the data left out the commit. */
        set_duration(&job, duration_ms);
    } else {
        rc = store_results(&job, &info, job.fatal ? "failed" : "done", job.fatal, duration_ms);
        if (rc != SQLITE_OK && !job.fatal)
            job_db_fail(&job, "enregistrement du rapport");
    }

    *counts = job.counts;
    if (job.fatal) {
        log_warn("import", "run %lld failed after %ld ms: %s", (long long)run_id, duration_ms,
                 job.file_rejected ? "file rejected" : "error");
        *err = job.fatal;
        *file_rejected = job.file_rejected;
        job.fatal = NULL;
        job_free(&job);
        return -1;
    }
    if (!options->dry_run && script_has_hook(state, SCRIPT_HOOK_IMPORT_FINISHED)) {
        json_t *payload = json_pack("{s:I,s:s,s:s,s:{s:i,s:i,s:i,s:i,s:i,s:i}}", "run_id",
                                    (json_int_t)run_id, "format", job.format_name, "filename",
                                    options->filename, "counts", "rows", (int)job.counts.rows,
                                    "created", (int)job.counts.created, "updated",
                                    (int)job.counts.updated, "unchanged",
                                    (int)job.counts.unchanged, "set_aside",
                                    (int)job.counts.set_aside, "rejected",
                                    (int)job.counts.rejected);
        json_t *result = NULL;
        script_run_hook(state, SCRIPT_HOOK_IMPORT_FINISHED, payload, &result);
        json_decref(payload);
        json_decref(result);
    }
    log_info("import",
             "run %lld done in %ld ms: %ld rows, %ld created, %ld updated, %ld unchanged, "
             "%ld set aside, %ld rejected, %ld warnings",
             (long long)run_id, duration_ms, job.counts.rows, job.counts.created,
             job.counts.updated, job.counts.unchanged, job.counts.set_aside, job.counts.rejected,
             job.counts.warnings);
    job_free(&job);
    return 0;
}
