/*
 * The sandbox every script runs in: a Lua state with a capped allocator, a
 * count hook enforcing a wall-clock budget per call, and only the base,
 * string, table, math and utf8 libraries plus os.time/date/clock. There is
 * no io, package or debug library, no dofile/loadfile/collectgarbage/print,
 * no string.dump; `load` accepts source text only, and `require` reads only
 * scripts/lib/<name>.lua from the version's snapshot (never the disk).
 * The `licol` API is installed by script_api.c.
 *
 * The count hook runs between VM instructions only, and Lua 5.4 turns hooks
 * off inside __gc finalizers. So setmetatable rejects __gc, and the C
 * functions that can loop for long inside one call (pattern matching,
 * table.move, string.rep of an empty string) are wrapped with a cost check.
 *
 * NOTE: the pattern cost is an estimate. A call accepted under
 * PATTERN_MAX_STEPS can still take a few seconds, and a plain find (or a
 * find without special characters) of a long needle is not checked.
 */
#include "script_internal.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "util.h"

#define HOOK_EVERY 1000 /* VM instructions between two clock checks */

/* Maximum elements table.move may copy in one call. */
#define TABLE_MOVE_MAX 1000000

/* Maximum estimated matcher steps of one pattern call. On one Xeon core
 * with Lua 5.4.4, patterns near this bound ('a*b' on 31,000 bytes,
 * '^a*a*a*b' on 1,800 bytes) ran for 2 to 5 s. */
#define PATTERN_MAX_STEPS 1e9

int64_t script_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct script_state *state_of(lua_State *L)
{
    return *(struct script_state **)lua_getextraspace(L);
}

/* Lua allocator with a cap on the bytes the state has allocated. Growth
 * beyond the cap fails, and Lua turns that into a memory error after an
 * emergency collection. Shrinking and freeing are never refused here. */
static void *sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct script_state *st = ud;
    void *p;

    if (ptr == NULL)
        osize = 0;
    if (nsize == 0) {
        free(ptr);
        st->mem_used -= osize;
        return NULL;
    }
    if (nsize > osize && st->mem_limit > 0 && st->mem_used - osize + nsize > st->mem_limit)
        return NULL;
    p = realloc(ptr, nsize);
    if (p == NULL)
        return NULL;
    st->mem_used = st->mem_used - osize + nsize;
    return p;
}

/* Count hook: raises an error once the call's deadline has passed. After
 * the first hit it fires on every instruction, so a script catching the
 * error with pcall in a loop is stopped at its next instruction. */
static void budget_hook(lua_State *L, lua_Debug *ar)
{
    struct script_state *st = state_of(L);

    if (st->deadline_ns == 0 || script_now_ns() < st->deadline_ns)
        return;
    if (!st->budget_hit) {
        st->budget_hit = 1;
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    }
    lua_getinfo(L, "Sl", ar);
    lua_pushfstring(L, "%s:%d: time budget of %d ms exceeded", ar->short_src, ar->currentline,
                    (int)st->version->limits.budget_ms);
    lua_error(L);
}

/* Message handler: turns the error into a string and appends a traceback.
 * Stack: [-1, +1]. */
static int message_handler(lua_State *L)
{
    const char *msg = lua_tostring(L, 1);

    if (msg == NULL)
        msg = luaL_tolstring(L, 1, NULL);
    luaL_traceback(L, L, msg, 1);
    return 1;
}

static void budget_start(struct script_state *st, int *nested)
{
    *nested = st->deadline_ns != 0;
    if (*nested)
        return;
    st->budget_hit = 0;
    st->deadline_ns = script_now_ns() + (int64_t)st->version->limits.budget_ms * 1000000;
}

static void budget_end(struct script_state *st, int nested)
{
    if (nested)
        return;
    st->deadline_ns = 0;
    if (st->budget_hit) {
        st->budget_hit = 0;
        lua_sethook(st->L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
    }
}

int script_sandbox_pcall(struct script_state *st, int nargs, int nresults, char **err)
{
    lua_State *L = st->L;
    int base = lua_gettop(L) - nargs;
    int nested;
    int status;

    lua_rawgeti(L, LUA_REGISTRYINDEX, st->handler_ref);
    lua_insert(L, base);
    budget_start(st, &nested);
    status = lua_pcall(L, nargs, nresults, base);
    budget_end(st, nested);

    if (status == LUA_OK) {
        lua_remove(L, base);
        return LUA_OK;
    }
    if (status == LUA_ERRMEM)
        *err = str_printf("memory limit of %zu MiB exceeded", st->mem_limit >> 20);
    else
        *err = strdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "error object is not a string");
    lua_settop(L, base - 1);
    lua_gc(L, LUA_GCCOLLECT);
    return status;
}

int script_sandbox_run(struct script_state *st, const char *chunkname, const char *text,
                       size_t len, char **err)
{
    lua_State *L = st->L;
    char *name = str_printf("=%s", chunkname);
    int rc = -1;
    int status;

    status = luaL_loadbufferx(L, text, len, name ? name : "=?", "t");
    if (status != LUA_OK) {
        *err = status == LUA_ERRMEM
                   ? str_printf("%s: memory limit exceeded while compiling", chunkname)
                   : strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
        goto done;
    }
    status = script_sandbox_pcall(st, 0, 1, err);
    if (status != LUA_OK) {
        if (status == LUA_ERRMEM) {
            char *with_file = str_printf("%s: %s", chunkname, *err);
            free(*err);
            *err = with_file;
        }
        goto done;
    }
    rc = 0;

done:
    free(name);
    return rc;
}

/* load(chunk [, chunkname [, mode [, env]]]) limited to source text: the
 * mode argument is ignored and bytecode is rejected. */
static int sandbox_load(lua_State *L)
{
    size_t len;
    const char *text = lua_tolstring(L, 1, &len);
    const char *chunkname = luaL_optstring(L, 2, "=(load)");
    int has_env = !lua_isnone(L, 4);
    int status;

    if (text == NULL || lua_type(L, 1) != LUA_TSTRING) {
        luaL_pushfail(L);
        lua_pushliteral(L, "load: only source text is accepted");
        return 2;
    }
    if (len > SCRIPT_MAX_FILE)
        return luaL_error(L, "load: chunk larger than %d bytes", SCRIPT_MAX_FILE);

    status = luaL_loadbufferx(L, text, len, chunkname, "t");
    if (status != LUA_OK) {
        luaL_pushfail(L);
        lua_insert(L, -2);
        return 2;
    }
    if (has_env) {
        lua_pushvalue(L, 4);
        if (lua_setupvalue(L, -2, 1) == NULL)
            lua_pop(L, 1);
    }
    return 1;
}

static int valid_lib_name(const char *name, size_t len)
{
    if (len == 0 || len > 64)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

/* require(name): runs scripts/lib/<name>.lua from the snapshot once and
 * caches its result, like package.loaded. */
static int sandbox_require(lua_State *L)
{
    struct script_state *st = state_of(L);
    size_t len;
    const char *name = luaL_checklstring(L, 1, &len);
    const struct script_file *file;
    char path[96];

    if (!valid_lib_name(name, len))
        return luaL_error(L, "require: invalid module name '%s' (expected [a-z0-9_] only, "
                             "a file of scripts/lib/)", name);

    lua_getfield(L, LUA_REGISTRYINDEX, "licol.loaded");
    lua_getfield(L, -1, name);
    if (lua_toboolean(L, -1)) {
        if (lua_type(L, -1) == LUA_TLIGHTUSERDATA)
            return luaL_error(L, "require: circular require of '%s'", name);
        return 1;
    }
    lua_pop(L, 1);

    snprintf(path, sizeof(path), "scripts/lib/%s.lua", name);
    file = script_version_file(st->version, path);
    if (file == NULL)
        return luaL_error(L, "require: module '%s' not found (expected %s)", name, path);

    lua_pushlightuserdata(L, (void *)st); /* "loading" marker */
    lua_setfield(L, -2, name);

    lua_pushfstring(L, "=%s", path);
    if (luaL_loadbufferx(L, file->text, file->len, lua_tostring(L, -1), "t") != LUA_OK)
        return lua_error(L);
    lua_remove(L, -2);
    lua_pushstring(L, name);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_pushboolean(L, 1);
    }
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, name);
    return 1;
}

/* Calls the wrapped function (upvalue 1) with all the arguments and returns
 * all its results. */
static int call_wrapped(lua_State *L)
{
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
    return lua_gettop(L);
}

/* setmetatable(t, mt) rejecting a metatable with a __gc field: Lua 5.4
 * runs finalizers with hooks off, so the time budget could not stop one.
 * Lua registers a finalizer only when the metatable is set, so adding __gc
 * to mt afterwards has no effect. */
static int sandbox_setmetatable(lua_State *L)
{
    int mt_type = lua_type(L, 2);

    luaL_checktype(L, 1, LUA_TTABLE);
    luaL_argexpected(L, mt_type == LUA_TNIL || mt_type == LUA_TTABLE, 2, "nil or table");
    if (mt_type == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable : le champ __gc (finaliseur) est interdit dans "
                                 "les scripts, retirez-le de la métatable");
        lua_pop(L, 1);
    }
    return call_wrapped(L);
}

/* table.move(a1, f, e, t [, a2]) limited to TABLE_MOVE_MAX elements, because
 * the copy loop runs in C where the time budget cannot stop it. */
static int sandbox_table_move(lua_State *L)
{
    lua_Integer first = luaL_checkinteger(L, 2);
    lua_Integer last = luaL_checkinteger(L, 3);

    luaL_checkinteger(L, 4);
    if (last >= first && (lua_Unsigned)last - (lua_Unsigned)first >= TABLE_MOVE_MAX)
        return luaL_error(L, "table.move : plage trop grande (plus de %d éléments)",
                          TABLE_MOVE_MAX);
    return call_wrapped(L);
}

/* string.rep(s, n [, sep]) returning "" at once when s and sep are empty:
 * Lua 5.4.4 would otherwise loop n times in C. Other calls are bounded by
 * the memory cap, since the result is allocated before the loop. */
static int sandbox_string_rep(lua_State *L)
{
    size_t len, sep_len;
    lua_Integer count;

    luaL_checklstring(L, 1, &len);
    count = luaL_checkinteger(L, 2);
    luaL_optlstring(L, 3, "", &sep_len);
    if (count > 0 && len == 0 && sep_len == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    return call_wrapped(L);
}

enum pattern_function { PATTERN_FIND, PATTERN_MATCH, PATTERN_GMATCH, PATTERN_GSUB };

static const char *const pattern_function_names[] = {"string.find", "string.match",
                                                     "string.gmatch", "string.gsub"};

/* Shape of a Lua pattern as far as the cost estimate needs it. */
struct pattern_shape {
    int anchored;     /* starts with ^ and the function honours it */
    int has_specials; /* contains a character with a pattern meaning */
    unsigned fixed;   /* items that match exactly one character */
    unsigned open;    /* items that match any length: x*, x+, x-, %b, %1 */
    unsigned optional; /* items followed by ?, which match 0 or 1 character */
};

/* Returns the index just past the set that starts at pattern[i] == '['.
 * As in Lua, a ] right after [ or [^ is a member, and % escapes the next
 * character. */
static size_t skip_set(const char *pattern, size_t len, size_t i)
{
    i++;
    if (i < len && pattern[i] == '^')
        i++;
    if (i < len)
        i++; /* the first member, even if it is ] */
    while (i < len && pattern[i] != ']') {
        if (pattern[i] == '%' && i + 1 < len)
            i++;
        i++;
    }
    return i < len ? i + 1 : len;
}

static void count_quantifier(const char *pattern, size_t len, size_t *i,
                             struct pattern_shape *shape)
{
    char next = *i < len ? pattern[*i] : '\0';

    if (next == '*' || next == '+' || next == '-') {
        shape->open++;
        (*i)++;
    } else if (next == '?') {
        shape->optional++;
        (*i)++;
    } else {
        shape->fixed++;
    }
}

/* Counts the items of a pattern. Malformed patterns are counted as well as
 * possible: the real function raises the error afterwards. */
static void pattern_shape_of(const char *pattern, size_t len, int honours_anchor,
                             struct pattern_shape *shape)
{
    size_t i = 0;

    memset(shape, 0, sizeof(*shape));
    shape->has_specials = strpbrk(pattern, "^$*+?.([%-") != NULL || strlen(pattern) < len;
    if (len > 0 && pattern[0] == '^') {
        shape->anchored = honours_anchor;
        i = 1;
    }
    while (i < len) {
        char c = pattern[i];

        if (c == '(' || c == ')' || (c == '$' && i + 1 == len)) {
            i++;
        } else if (c == '%' && i + 1 < len) {
            char escaped = pattern[i + 1];

            if (escaped == 'b') { /* %bxy scans up to the whole subject */
                shape->open++;
                i = i + 4 < len ? i + 4 : len;
            } else if (escaped == 'f') { /* frontier: zero width, then a set */
                i += 2;
                if (i < len && pattern[i] == '[')
                    i = skip_set(pattern, len, i);
            } else if (escaped >= '0' && escaped <= '9') { /* back reference */
                shape->open++;
                i += 2;
            } else {
                i += 2;
                count_quantifier(pattern, len, &i, shape);
            }
        } else if (c == '[') {
            i = skip_set(pattern, len, i);
            count_quantifier(pattern, len, &i, shape);
        } else {
            i++;
            count_quantifier(pattern, len, &i, shape);
        }
    }
}

/* Estimates the worst-case matcher steps of a pattern on a subject of
 * subject_len bytes. From one start position, q open items can split the
 * subject in C(len + q, q) ways and each optional item doubles that. An
 * unanchored pattern is tried from every start position. */
static double pattern_cost(const struct pattern_shape *shape, size_t subject_len)
{
    double len = (double)subject_len;
    double paths = 1.0;
    double starts = shape->anchored ? 1.0 : len + 1.0;

    for (unsigned k = 1; k <= shape->open && paths <= PATTERN_MAX_STEPS; k++)
        paths = paths * (len + k) / k;
    for (unsigned k = 0; k < shape->optional && paths <= PATTERN_MAX_STEPS; k++)
        paths *= 2.0;
    return starts * (paths + shape->fixed);
}

/* Returns the number of subject bytes that a find, match or gmatch call
 * scans from init, following Lua's rules for a negative or too large init. */
static size_t scanned_length(lua_State *L, int arg, size_t len)
{
    lua_Integer init = luaL_optinteger(L, arg, 1);

    if (init < 0)
        init = -init > (lua_Integer)len ? 1 : (lua_Integer)len + init + 1;
    else if (init == 0)
        init = 1;
    if (init > (lua_Integer)len + 1)
        return 0;
    return len - (size_t)(init - 1);
}

/* Wrapper of string.find, match, gmatch and gsub (upvalue 1 is the real
 * function, upvalue 2 the pattern_function). Raises an error before a
 * call whose estimated cost exceeds PATTERN_MAX_STEPS, because the matcher
 * runs in C where the time budget cannot stop it. */
static int sandbox_pattern(lua_State *L)
{
    enum pattern_function function = (enum pattern_function)lua_tointeger(L, lua_upvalueindex(2));
    size_t subject_len, pattern_len, scanned;
    const char *pattern;
    struct pattern_shape shape;

    luaL_checklstring(L, 1, &subject_len);
    pattern = luaL_checklstring(L, 2, &pattern_len);
    pattern_shape_of(pattern, pattern_len, function != PATTERN_GMATCH, &shape);

    if (function == PATTERN_FIND && (lua_toboolean(L, 4) || !shape.has_specials))
        return call_wrapped(L); /* plain search, no backtracking */
    scanned = function == PATTERN_GSUB ? subject_len : scanned_length(L, 3, subject_len);
    if (pattern_cost(&shape, scanned) > PATTERN_MAX_STEPS)
        return luaL_error(L, "%s : motif trop coûteux pour un texte de %d caractères ; "
                             "simplifiez le motif (moins de *, +, - et ?) ou raccourcissez "
                             "le texte",
                          pattern_function_names[function], (int)scanned);
    return call_wrapped(L);
}

/* Replaces table[name] with a C closure over the original function and,
 * when extra is not negative, an integer upvalue. Stack: [-0, +0]. */
static void wrap_field(lua_State *L, int table, const char *name, lua_CFunction wrapper,
                       int extra)
{
    table = lua_absindex(L, table);
    lua_getfield(L, table, name);
    if (extra >= 0)
        lua_pushinteger(L, extra);
    lua_pushcclosure(L, wrapper, extra >= 0 ? 2 : 1);
    lua_setfield(L, table, name);
}

static void remove_field(lua_State *L, int table, const char *name)
{
    table = lua_absindex(L, table);
    lua_pushnil(L);
    lua_setfield(L, table, name);
}

/* Opens the allowed libraries and strips what scripts must not reach.
 * Stack: [-0, +0]. */
static void open_sandbox_libs(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},       {LUA_STRLIBNAME, luaopen_string},
        {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
        {LUA_UTF8LIBNAME, luaopen_utf8}, {LUA_OSLIBNAME, luaopen_os},
    };
    static const char *const removed_globals[] = {"dofile", "loadfile", "collectgarbage",
                                                  "print", "warn"};
    static const char *const kept_os[] = {"time", "date", "clock"};

    for (size_t i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
        luaL_requiref(L, libs[i].name, libs[i].func, 1);
        lua_pop(L, 1);
    }

    lua_pushglobaltable(L);
    for (size_t i = 0; i < sizeof(removed_globals) / sizeof(removed_globals[0]); i++)
        remove_field(L, -1, removed_globals[i]);
    lua_pushcfunction(L, sandbox_load);
    lua_setfield(L, -2, "load");
    lua_pushcfunction(L, sandbox_require);
    lua_setfield(L, -2, "require");

    wrap_field(L, -1, "setmetatable", sandbox_setmetatable, -1);
    lua_getfield(L, -1, "table");
    wrap_field(L, -1, "move", sandbox_table_move, -1);
    lua_pop(L, 1);

    /* The string metatable's __index is this same table, so the wrappers
     * also apply to method calls such as s:find(p). */
    lua_getfield(L, -1, "string");
    remove_field(L, -1, "dump");
    wrap_field(L, -1, "rep", sandbox_string_rep, -1);
    wrap_field(L, -1, "find", sandbox_pattern, PATTERN_FIND);
    wrap_field(L, -1, "match", sandbox_pattern, PATTERN_MATCH);
    wrap_field(L, -1, "gmatch", sandbox_pattern, PATTERN_GMATCH);
    wrap_field(L, -1, "gsub", sandbox_pattern, PATTERN_GSUB);
    lua_pop(L, 1);

    /* os: a fresh table with only time, date and clock. */
    lua_getfield(L, -1, "os");
    lua_createtable(L, 0, 3);
    for (size_t i = 0; i < sizeof(kept_os) / sizeof(kept_os[0]); i++) {
        lua_getfield(L, -2, kept_os[i]);
        lua_setfield(L, -2, kept_os[i]);
    }
    lua_setfield(L, -3, "os");
    lua_pop(L, 2);

    /* Drop the library table registry entries scripts could reach through
     * nothing else, so only the sandboxed copies remain. */
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    remove_field(L, -1, LUA_OSLIBNAME);
    lua_pop(L, 1);

    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, "licol.loaded");
}

struct script_state *script_sandbox_new(const struct script_limits *limits, char **err)
{
    struct script_state *st = calloc(1, sizeof(*st));

    if (st == NULL)
        goto fail;
    st->mem_limit = limits->memory_limit;
    st->L = lua_newstate(sandbox_alloc, st);
    if (st->L == NULL)
        goto fail;
    *(struct script_state **)lua_getextraspace(st->L) = st;
    st->subject_ref = st->target_ref = st->roles_ref = LUA_NOREF;

    open_sandbox_libs(st->L);
    lua_pushcfunction(st->L, message_handler);
    st->handler_ref = luaL_ref(st->L, LUA_REGISTRYINDEX);
    lua_sethook(st->L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
    return st;

fail:
    free(st);
    *err = strdup("Impossible de créer l'environnement des scripts : mémoire insuffisante.");
    return NULL;
}

void script_sandbox_close(struct script_state *st)
{
    if (st == NULL)
        return;
    for (int m = 0; m < SCRIPT_MOD_COUNT; m++) {
        for (size_t i = 0; i < st->module_counts[m]; i++)
            free(st->modules[m][i].file);
        free(st->modules[m]);
    }
    free(st->hook_refs);
    free(st->route_refs);
    free(st->validate_refs);
    free(st->last_error);
    if (st->L != NULL)
        lua_close(st->L);
    free(st);
}
