/*
 * The mapping side of an import. It reads the file (csvread), recognises
 * the format from the header, and runs the club's format script and the
 * plugins' import_row_mapped hooks on each row. Copies of the results go
 * to the writing thread (import.c) in batches. This thread alone uses the
 * Lua state during a run, and it never touches the database.
 */
#include "import_job.h"
#include "log.h"
#include "script.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

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

/* Copies the record's warnings list ({field =, message =} tables), with
 * room for the warnings that check_values() may add. */
static void read_warnings(lua_State *L, int rec, struct arena *arena, struct mapped_row *row)
{
    size_t n = 0;

    row->nwarnings = 0;
    lua_getfield(L, rec, "warnings");
    if (lua_istable(L, -1))
        n = (size_t)lua_rawlen(L, -1);
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

static void add_warning(struct arena *arena, struct mapped_row *row, const char *field,
                        const char *message)
{
    row->warnings[row->nwarnings].field = field;
    row->warnings[row->nwarnings].message = arena_strndup(arena, message, strlen(message));
    row->nwarnings++;
}

/* Drops, with a warning, a value of the club's script that the person
 * table would refuse (the CHECK on sex, the reference to galop_level).
 * The row is then imported without it instead of being refused by the
 * database half-way. */
static void check_values(const struct job *job, struct arena *arena, struct mapped_row *row)
{
    const char **sex = &row->in.values[COL_SEX];
    const char **galop = &row->in.values[COL_GALOP];
    char message[300];

    if (!row->warnings)
        return; /* out of memory: the caller fails the run */
    if (*sex && strcmp(*sex, "F") != 0 && strcmp(*sex, "M") != 0) {
        snprintf(message, sizeof(message),
                 "sexe « %.100s » non enregistré : seules les valeurs F et M sont possibles ; "
                 "vérifiez la colonne ou le script de format",
                 *sex);
        add_warning(arena, row, "sex", message);
        *sex = NULL;
    }
    if (*galop && !galop_known(job, *galop)) {
        snprintf(message, sizeof(message),
                 "niveau de Galop « %.100s » inconnu de Licol : non enregistré ; vérifiez le "
                 "script de format",
                 *galop);
        add_warning(arena, row, "galop", message);
        *galop = NULL;
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

/* Fails the run if the server asked running imports to stop. Called by
 * both threads, so that a stop is obeyed until the commit. */
int check_cancel(struct job *job)
{
    if (!atomic_load(&job->progress->cancel))
        return 0;
    job_fail(job, 0, strdup("L'import a été interrompu par l'arrêt du serveur : rien n'a "
                            "été modifié. Relancez-le."));
    return 1;
}

/* Mapping thread: when a copy into the batch being filled failed, takes
 * the incomplete last row out of the batch and fails the run. Returns 1
 * then. */
static int drop_if_out_of_memory(struct job *job)
{
    if (!job->batch || !job->batch->arena.out_of_memory)
        return 0;
    job->batch->count--;
    job_fail(job, 0, strdup("Mémoire insuffisante pour lire le fichier."));
    return 1;
}

/* Mapping thread: returns the next free row of the batch being filled,
 * handing the batch over once it has BATCH_ROWS rows or BATCH_MAX_BYTES. Returns NULL once the writing
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
    return drop_if_out_of_memory(job) ? NULL : row;
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
    return drop_if_out_of_memory(job);
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
    if (atomic_load(&job->failed) || atomic_load(&job->writer_stopped))
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
    return row && !drop_if_out_of_memory(job) ? 0 : 1;
}

void *import_mapping_thread(void *arg)
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
