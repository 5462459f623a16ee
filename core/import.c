/*
 * Import execution: header detection, row mapping through the format
 * scripts, matching, merging and writing. Run bookkeeping (creation,
 * reports, undo, rejected rows) is in import_run.c.
 *
 * Per row: the mapping thread (import_map.c) runs the format script's
 * map(row, cols) and copies the record into a struct mapped_row. This file,
 * the writing thread, matches it to a known person, merges it field by
 * field with the rule of scripts/merge.lua, and writes it in the run's
 * transaction. A row that the database refuses half-way cannot be undone
 * alone without a savepoint, so the run then starts over with one
 * savepoint per row.
 *
 * Matching: a valid licence number first; otherwise the folded last name,
 * first name and birth date (person.match_key). An e-mail alone never
 * matches, because families share one. Several candidates, or a candidate
 * whose licence number differs, set the row aside for staff ("à vérifier").
 */
#include "import_job.h"
#include "import_index.h"
#include "log.h"
#include "normalize.h"
#include "person.h"
#include "script.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static const char *const column_labels[COL_COUNT] = {
    "Nom",     "Prénom",  "Date de naissance",   "Sexe",  "E-mail", "E-mail invalide",
    "Téléphone", "Portable", "Adresse", "Complément d'adresse", "Code postal", "Ville",
    "Pays",    "Numéro de licence", "Licence (valeur non reconnue)", "Galop",
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

void job_fail(struct job *job, int file_rejected, char *message)
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

static void seen_remove(struct seen_set *set, int64_t id)
{
    size_t word = (size_t)id / 64;

    if (id > 0 && word < set->words)
        set->bits[word] &= ~((uint64_t)1 << (id % 64));
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
        const char *text = (const char *)sqlite3_column_text(stmt, 0);
        char **codes;
        char *code;

        if (!text)
            continue; /* a NULL code cannot be referenced */
        codes = realloc(job->galop_codes, (job->galop_count + 1) * sizeof(*codes));
        code = strdup(text);
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

/* ---- issues of a mapped row ------------------------------------------------- */

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
    /* A trigger's RAISE(IGNORE) skips the insert without an error: the
     * last rowid is then another row's. */
    if (sqlite3_changes(db_handle(job->db)) == 0)
        return 0;
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
 * only completes what the first line left empty. stored_season is the
 * person's latest licence season (0 for none): a later season cannot have
 * a row yet, so it is inserted without a lookup.
 * Returns 1 when something changed, 0 when not, -1 on error. */
static int upsert_licence(struct job *job, int64_t id, const struct licence_in *in,
                          int fill_only, int is_new, long stored_season)
{
    sqlite3_stmt *stmt;
    char field[32];
    int rc, changed = 0;

    if (in->season <= 0 || !in->number)
        return 0;
    snprintf(field, sizeof(field), "licence:%ld", in->season);
    /* A person created by this row has no licence yet, and a season later
     * than the latest stored one has no row yet. */
    if (is_new || in->season > stored_season)
        goto insert;
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
        if (guardian_id < 0)
            return -1;
        if (guardian_id == 0) {
            job->counts.warnings++;
            add_issue(job, 'w', "guardian", "une règle de la base ajoutée par une extension a "
                                            "ignoré la création du responsable légal : lien à "
                                            "faire à la main",
                      child_id);
            return 0;
        }
        if (audit(job, guardian_id, "create", NULL, NULL, "responsable légal") ||
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
    long stored_season = 0;

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
        if (id == 0) {
            reject_row(job, "une règle de la base ajoutée par une extension a ignoré la création "
                            "de cette personne : la ligne n'a pas été importée");
            json_decref(changes);
            return 0;
        }
        if (audit(job, id, "create", NULL, NULL, NULL) != SQLITE_OK || ensure_role(job, id, 1, 0) < 0)
            goto db_error;
        for (int c = 0; c < COL_COUNT; c++) {
            if (in.values[c])
                sample_change(changes, column_names[c], column_labels[c], NULL, in.values[c]);
        }
        if (upsert_licence(job, id, &in.licence, 0, 1, 0) < 0 ||
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
            if (audit(job, id, "update", "email_invalid", old[COL_EMAIL_INVALID], NULL) !=
                SQLITE_OK) {
                rc = -1;
                goto update_done;
            }
        }
        rc = changed ? update_person(job, id, merged, old) : SQLITE_OK;
    update_done:
        for (int c = 0; c < COL_COUNT; c++)
            free(old[c]);
        if (rc != SQLITE_OK)
            goto db_error;
    }

    rc = upsert_licence(job, id, &in.licence, first_seen != 0, 0, stored_season);
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
         * file that changes more is still one update, and a person whose
         * first line changed nothing moves from unchanged to updated. */
        if (!first_seen) {
            job->counts.updated++;
        } else if (seen_find(&job->unchanged, id)) {
            seen_remove(&job->unchanged, id);
            job->counts.unchanged--;
            job->counts.updated++;
        }
        {
            const char *names[COL_COUNT] = {0};
            names[COL_LAST_NAME] = in.values[COL_LAST_NAME];
            names[COL_FIRST_NAME] = in.values[COL_FIRST_NAME];
            add_sample(job, id, "update", names, changes);
        }
    } else {
        if (!first_seen) {
            job->counts.unchanged++;
            seen_add(&job->unchanged, id);
        }
        json_decref(changes);
    }
    record_warnings(job, row, id);
    return 0;

db_error:
    json_decref(changes);
    if ((sqlite3_errcode(db_handle(job->db)) & 0xff) == SQLITE_CONSTRAINT) {
        const char *sqlite_message = sqlite3_errmsg(db_handle(job->db));
        const char *reason = "la ligne contredit une donnée déjà enregistrée : vérifiez-la dans "
                             "le fichier";
        char trigger_reason[400];

        log_info("import", "run %lld line %ld: constraint: %s", (long long)job->run_id,
                 job->line_no, sqlite_message);
        if (sqlite3_errcode(db_handle(job->db)) == SQLITE_CONSTRAINT_TRIGGER) {
            /* RAISE() in a trigger of a plugin's migration: its message
             * is the integrator's, meant for staff. */
            snprintf(trigger_reason, sizeof(trigger_reason),
                     "la base a refusé cette ligne : « %.300s » (règle ajoutée par une "
                     "extension)",
                     sqlite_message);
            reason = trigger_reason;
        } else if (strstr(sqlite_message, "licence_number")) {
            reason = "le numéro de licence de cette ligne est déjà celui d'une autre fiche : "
                     "vérifiez-le dans le fichier";
        }
        reject_row(job, reason);
        return -2; /* roll the row back, go on */
    }
    job_db_fail(job, "écriture d'une personne");
    return -1;
}

/* ---- writing thread ---------------------------------------------------------- */

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

/* Fails the run when the last row ended the whole transaction, as
 * RAISE(ROLLBACK) in a trigger or a full disk do, even in a statement
 * whose result the row ignored. Without this check, the next rows would
 * run outside any transaction and be committed one by one. Returns 1 when
 * the run failed. */
static int transaction_lost(struct job *job)
{
    if (!sqlite3_get_autocommit(db_handle(job->db)))
        return 0;
    log_error("import", "run %lld line %ld: the database rolled the transaction back: %s",
              (long long)job->run_id, job->line_no, sqlite3_errmsg(db_handle(job->db)));
    job_fail(job, 0,
             str_printf("La base de données a annulé tout l'import à la ligne %ld : « %.300s ». "
                        "Rien n'a été modifié. Si ce message vient d'une extension, corrigez la "
                        "ligne ou la règle de l'extension, puis relancez l'import.",
                        job->line_no, sqlite3_errmsg(db_handle(job->db))));
    return 1;
}

/* Writing thread: merges one mapped row into the database. Returns 0, or 1
 * to stop (a fatal error, or a restart with savepoints). */
static int write_row(struct job *job, const struct mapped_row *row)
{
    long created, updated, unchanged, set_aside;
    size_t samples_before;
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
        if (transaction_lost(job))
            return 1;
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
    /* counts.rows belongs to the mapping thread: only the writer's are kept. */
    created = job->counts.created;
    updated = job->counts.updated;
    unchanged = job->counts.unchanged;
    set_aside = job->counts.set_aside;
    samples_before = json_array_size(job->samples);
    rc = process_record(job, row);
    if (transaction_lost(job))
        return 1;
    if (rc == 0) {
        if (run_savepoint(job, "RELEASE import_row") != SQLITE_OK) {
            job_db_fail(job, "fin de ligne");
            rc = -1;
        }
    } else {
        run_savepoint(job, "ROLLBACK TO import_row");
        run_savepoint(job, "RELEASE import_row");
        /* What the row counted before it failed (a guardian created, say)
         * was rolled back with it. Its rejection and warnings stay. */
        job->counts.created = created;
        job->counts.updated = updated;
        job->counts.unchanged = unchanged;
        job->counts.set_aside = set_aside;
        while (json_array_size(job->samples) > samples_before)
            json_array_remove(job->samples, json_array_size(job->samples) - 1);
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
    int stopped = 0, thread_rc;

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
    atomic_store(&job->writer_stopped, 0);
    job->batch = NULL;
    job->read_rc = 0;
    thread_rc = pthread_create(&thread, NULL, import_mapping_thread, job);
    if (thread_rc != 0) {
        log_error("import", "run %lld: cannot start the mapping thread: %s",
                  (long long)job->run_id, strerror(thread_rc));
        job_fail(job, 0, strdup("Impossible de lancer la lecture du fichier : le système refuse "
                                "un fil d'exécution de plus. Réessayez l'import."));
    } else {
        while ((batch = batch_queue_pop(&job->queue))) {
            /* Rows mapped before a failure of the mapping thread are still
             * written: the run is rolled back, but the issues of its rows
             * (the script errors that made it fail among them) are kept
             * for staff. */
            if (!stopped && check_cancel(job))
                stopped = 1;
            for (size_t i = 0; i < batch->count && !stopped; i++)
                stopped = write_row(job, &batch->rows[i]);
            if (stopped && !atomic_load(&job->writer_stopped)) {
                atomic_store(&job->writer_stopped, 1);
                batch_queue_stop(&job->queue);
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
    free(job->unchanged.bits);
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
    if (job->unchanged.bits)
        memset(job->unchanged.bits, 0, job->unchanged.words * sizeof(*job->unchanged.bits));
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
    db_set_long_writer(db);
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
        char *rebuild_err = NULL;
        /* The estimate uses the file's line count when the caller has it,
         * because a file of few but very wide lines is not a large one. */
        long long estimated_rows = atomic_load(&progress->lines_total);

        if (estimated_rows <= 1)
            estimated_rows =
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
            } else if (import_indexes_rebuild(db, &deferred, &rebuild_err) != SQLITE_OK) {
                job_fail(&job, 0,
                         str_printf("Erreur de la base de données (reconstruction des index) : "
                                    "%s. L'import est annulé, rien n'a été modifié.",
                                    rebuild_err ? rebuild_err : "?"));
                free(rebuild_err);
                db_rollback(db);
            } else if (write_results(&job, &info, "done", NULL, elapsed_ms(&start)) !=
                       SQLITE_OK) {
                /* Stored with the data, so that a run whose data was
                 * committed is never left "running" by a kill. */
                job_db_fail(&job, "enregistrement du rapport");
                db_rollback(db);
            } else if (check_cancel(&job)) {
                db_rollback(db); /* the stop came during the rebuild */
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
