/*
 * The `licol` table offered to scripts: logging, JSON, text helpers, the
 * normalisers of core/normalize.h, the read-only configuration and field
 * catalogue. Also the conversions between JSON (jansson) and Lua values
 * used by hooks and routes. Nothing here touches files, the database or
 * the network: scripts decide, C does the I/O.
 */
#include "script_internal.h"

#include <lauxlib.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include "log.h"
#include "normalize.h"
#include "util.h"

#define NORM_MAX_INPUT 4096 /* bytes accepted by licol.norm.* */
#define NORM_OUT 1024       /* bytes of a normalised value */
#define LOG_MAX_MESSAGE 1000

static const char JSON_NULL_KEY = 0;  /* address used as licol.json.null */
static const char ARRAY_MT_KEY = 0;   /* registry key of the array marker metatable */

static struct script_state *state_of(lua_State *L)
{
    return *(struct script_state **)lua_getextraspace(L);
}

/* Returns the string argument at arg, rejecting strings over the engine's
 * max_string cap. */
static const char *check_capped(lua_State *L, int arg, size_t *len)
{
    struct script_state *st = state_of(L);
    const char *s = luaL_checklstring(L, arg, len);

    if (*len > st->version->limits.max_string)
        luaL_error(L, "string argument of %I bytes exceeds the %I byte limit",
                   (lua_Integer)*len, (lua_Integer)st->version->limits.max_string);
    return s;
}

/* ---- licol.log --------------------------------------------------------- */

static int api_log(lua_State *L)
{
    int level = (int)lua_tointeger(L, lua_upvalueindex(1));
    size_t len;
    const char *msg = luaL_tolstring(L, 1, &len);
    lua_Debug ar;
    char where[128] = "?";

    if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "Sl", &ar))
        snprintf(where, sizeof(where), "%s:%d", ar.short_src, ar.currentline);
    LOG_AT((enum log_level)level, "script", "%s: %.*s", where,
           (int)(len > LOG_MAX_MESSAGE ? LOG_MAX_MESSAGE : len), msg);
    return 0;
}

/* ---- JSON <-> Lua -------------------------------------------------------- */

/* Pushes the array marker metatable. A script can reach it with
 * getmetatable, so a __gc field it added is removed first: lua_setmetatable
 * would register a finalizer, and finalizers run without the time budget. */
static void push_array_mt(lua_State *L)
{
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ARRAY_MT_KEY);
    lua_pushliteral(L, "__gc");
    lua_pushnil(L);
    lua_rawset(L, -3);
}

static int push_json_depth(struct script_state *st, json_t *value, int depth)
{
    lua_State *L = st->L;
    size_t i;
    const char *key;
    json_t *item;

    if (depth > SCRIPT_JSON_DEPTH || !lua_checkstack(L, 4))
        return -1;

    switch (json_typeof(value)) {
    case JSON_OBJECT:
        lua_createtable(L, 0, (int)json_object_size(value));
        json_object_foreach(value, key, item) {
            if (push_json_depth(st, item, depth + 1) < 0)
                return -1;
            lua_setfield(L, -2, key);
        }
        return 0;
    case JSON_ARRAY:
        lua_createtable(L, (int)json_array_size(value), 0);
        json_array_foreach(value, i, item) {
            if (push_json_depth(st, item, depth + 1) < 0)
                return -1;
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        push_array_mt(L);
        lua_setmetatable(L, -2);
        return 0;
    case JSON_STRING:
        if (json_string_length(value) > st->version->limits.max_string)
            return -1;
        lua_pushlstring(L, json_string_value(value), json_string_length(value));
        return 0;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(value));
        return 0;
    case JSON_REAL:
        lua_pushnumber(L, json_real_value(value));
        return 0;
    case JSON_TRUE:
    case JSON_FALSE:
        lua_pushboolean(L, json_is_true(value));
        return 0;
    case JSON_NULL:
        lua_pushlightuserdata(L, (void *)&JSON_NULL_KEY);
        return 0;
    }
    return -1;
}

int script_push_json(struct script_state *st, json_t *value)
{
    int top = lua_gettop(st->L);

    if (value == NULL || push_json_depth(st, value, 0) < 0) {
        lua_settop(st->L, top);
        lua_pushnil(st->L);
        return -1;
    }
    return 0;
}

/* A table is a JSON array when it carries the array marker metatable, or
 * when its keys are exactly 1..n with n > 0. */
static int table_is_array(lua_State *L, int index, size_t *n)
{
    lua_Integer count = 0;

    *n = lua_rawlen(L, index);
    if (lua_getmetatable(L, index)) {
        push_array_mt(L);
        int marked = lua_rawequal(L, -1, -2);
        lua_pop(L, 2);
        if (marked)
            return 1;
    }
    if (*n == 0)
        return 0;
    lua_pushnil(L);
    while (lua_next(L, index) != 0) {
        lua_pop(L, 1);
        count++;
    }
    return (size_t)count == *n;
}

static int readonly_newindex(lua_State *L);

/* When the table at index is a read-only proxy (licol.config, licol.fields),
 * pushes the table it wraps and returns 1; otherwise pushes nothing and
 * returns 0. */
static int push_proxied(lua_State *L, int index)
{
    int proxied = 0;

    if (!lua_getmetatable(L, index))
        return 0;
    if (lua_getfield(L, -1, "__newindex") == LUA_TFUNCTION &&
        lua_tocfunction(L, -1) == readonly_newindex) {
        lua_getfield(L, -2, "__index");
        proxied = 1;
    }
    if (proxied) {
        lua_insert(L, -3);
        lua_pop(L, 2);
    } else {
        lua_pop(L, 2);
    }
    return proxied;
}

static json_t *to_json_depth(lua_State *L, int index, int depth)
{
    json_t *out = NULL;
    size_t n;

    index = lua_absindex(L, index);
    if (depth > SCRIPT_JSON_DEPTH || !lua_checkstack(L, 4))
        return NULL;

    switch (lua_type(L, index)) {
    case LUA_TNIL:
        return json_null();
    case LUA_TBOOLEAN:
        return json_boolean(lua_toboolean(L, index));
    case LUA_TNUMBER:
        if (lua_isinteger(L, index))
            return json_integer((json_int_t)lua_tointeger(L, index));
        if (!isfinite(lua_tonumber(L, index)))
            return NULL;
        return json_real(lua_tonumber(L, index));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, index, &len);
        return json_stringn(s, len); /* NULL on invalid UTF-8 */
    }
    case LUA_TLIGHTUSERDATA:
        return lua_touserdata(L, index) == &JSON_NULL_KEY ? json_null() : NULL;
    case LUA_TTABLE:
        break;
    default:
        return NULL;
    }

    if (push_proxied(L, index)) {
        out = to_json_depth(L, -1, depth + 1);
        lua_pop(L, 1);
        return out;
    }

    if (table_is_array(L, index, &n)) {
        out = json_array();
        for (size_t i = 1; out != NULL && i <= n; i++) {
            lua_rawgeti(L, index, (lua_Integer)i);
            json_t *item = to_json_depth(L, -1, depth + 1);
            lua_pop(L, 1);
            if (item == NULL || json_array_append_new(out, item) < 0) {
                json_decref(out);
                out = NULL;
            }
        }
        return out;
    }

    out = json_object();
    lua_pushnil(L);
    while (out != NULL && lua_next(L, index) != 0) {
        char numkey[32];
        const char *key;
        json_t *item;

        if (lua_type(L, -2) == LUA_TSTRING) {
            key = lua_tostring(L, -2);
        } else if (lua_isinteger(L, -2)) {
            snprintf(numkey, sizeof(numkey), "%lld", (long long)lua_tointeger(L, -2));
            key = numkey;
        } else {
            lua_pop(L, 2);
            json_decref(out);
            return NULL;
        }
        item = to_json_depth(L, -1, depth + 1);
        lua_pop(L, 1);
        if (item == NULL || json_object_set_new(out, key, item) < 0) {
            lua_pop(L, 1);
            json_decref(out);
            out = NULL;
        }
    }
    return out;
}

json_t *script_to_json(struct script_state *st, int index)
{
    return to_json_depth(st->L, index, 0);
}

static int api_json_encode(lua_State *L)
{
    json_t *value;
    char *text;

    luaL_checkany(L, 1);
    value = to_json_depth(L, 1, 0);
    if (value == NULL)
        return luaL_error(L, "licol.json.encode: value cannot be encoded (function, "
                             "invalid UTF-8, NaN, nesting over %d or mixed keys)",
                          SCRIPT_JSON_DEPTH);
    text = json_dumps(value, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
    json_decref(value);
    if (text == NULL)
        return luaL_error(L, "licol.json.encode: out of memory");
    lua_pushstring(L, text);
    free(text);
    return 1;
}

static int api_json_decode(lua_State *L)
{
    size_t len;
    const char *text = check_capped(L, 1, &len);
    json_error_t error;
    json_t *value = json_loadb(text, len, JSON_DECODE_ANY, &error);

    if (value == NULL) {
        luaL_pushfail(L);
        lua_pushfstring(L, "invalid JSON at line %d: %s", error.line, error.text);
        return 2;
    }
    if (script_push_json(state_of(L), value) < 0) {
        json_decref(value);
        luaL_pushfail(L);
        lua_pushliteral(L, "JSON too deep or string too long");
        return 2;
    }
    json_decref(value);
    return 1;
}

static int api_json_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1))
        lua_newtable(L);
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    push_array_mt(L);
    lua_setmetatable(L, 1);
    return 1;
}

/* ---- licol.text ------------------------------------------------------------ */

static int api_text_fold(lua_State *L)
{
    size_t len;
    const char *s = check_capped(L, 1, &len);
    int alnum = lua_toboolean(L, 2);
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, len * 2 + 1);

    norm_fold(s, out, len * 2 + 1, alnum);
    luaL_pushresultsize(&b, strlen(out));
    return 1;
}

static int is_space_at(const char *s, size_t len, size_t i, size_t *width)
{
    unsigned char c = (unsigned char)s[i];

    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
        *width = 1;
        return 1;
    }
    if (c == 0xC2 && i + 1 < len && (unsigned char)s[i + 1] == 0xA0) { /* U+00A0 */
        *width = 2;
        return 1;
    }
    return 0;
}

/* Trims ASCII white space and non-breaking spaces at both ends. */
static int api_text_trim(lua_State *L)
{
    size_t len, start = 0, end, w;
    const char *s = check_capped(L, 1, &len);

    while (start < len && is_space_at(s, len, start, &w))
        start += w;
    end = len;
    while (end > start) {
        if (is_space_at(s, len, end - 1, &w) && w == 1)
            end--;
        else if (end - start >= 2 && is_space_at(s, len, end - 2, &w) && w == 2)
            end -= 2;
        else
            break;
    }
    lua_pushlstring(L, s + start, end - start);
    return 1;
}

static locale_t utf8_locale;
static pthread_once_t utf8_once = PTHREAD_ONCE_INIT;

static void utf8_locale_init(void)
{
    utf8_locale = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
    if (utf8_locale == (locale_t)0)
        log_warn("script", "locale C.UTF-8 unavailable: licol.text.upper/lower map ASCII only");
}

/* Decodes one UTF-8 sequence at s[i]; returns its length, or 0 when it is
 * not valid (the byte is then copied as is). */
static size_t utf8_decode(const unsigned char *s, size_t len, size_t i, wint_t *cp)
{
    unsigned char c = s[i];
    size_t n;
    wint_t v;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        v = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (i + n > len)
        return 0;
    for (size_t k = 1; k < n; k++) {
        if ((s[i + k] & 0xC0) != 0x80)
            return 0;
        v = (v << 6) | (s[i + k] & 0x3F);
    }
    *cp = v;
    return n;
}

static size_t utf8_encode(wint_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Maps case with the C.UTF-8 locale. A mapped character whose UTF-8 form
 * would be longer than the original keeps its original form, so the
 * output never outgrows the input. */
static int map_case(lua_State *L, int upper)
{
    size_t len;
    const unsigned char *s = (const unsigned char *)check_capped(L, 1, &len);
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, len + 1);
    size_t o = 0;

    pthread_once(&utf8_once, utf8_locale_init);
    for (size_t i = 0; i < len;) {
        wint_t cp, mapped;
        size_t n = utf8_decode(s, len, i, &cp);
        char enc[4];
        size_t m;

        if (n == 0) {
            out[o++] = (char)s[i++];
            continue;
        }
        if (utf8_locale != (locale_t)0)
            mapped = upper ? towupper_l(cp, utf8_locale) : towlower_l(cp, utf8_locale);
        else if (cp < 0x80)
            mapped = upper ? (wint_t)(cp >= 'a' && cp <= 'z' ? cp - 32 : cp)
                           : (wint_t)(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
        else
            mapped = cp;
        m = utf8_encode(mapped, enc);
        if (m > n) {
            memcpy(out + o, s + i, n);
            o += n;
        } else {
            memcpy(out + o, enc, m);
            o += m;
        }
        i += n;
    }
    luaL_pushresultsize(&b, o);
    return 1;
}

static int api_text_upper(lua_State *L)
{
    return map_case(L, 1);
}

static int api_text_lower(lua_State *L)
{
    return map_case(L, 0);
}

/* ---- licol.norm ------------------------------------------------------------ */

/* Every norm closure carries the status names "ok", "empty" and "invalid"
 * as upvalues 2 to 4 (in enum norm_status order), so returning a status
 * costs no string interning. */
#define STATUS_UPVALUE(status) lua_upvalueindex(2 + (int)(status))

static void push_status_upvalues(lua_State *L)
{
    lua_pushliteral(L, "ok");
    lua_pushliteral(L, "empty");
    lua_pushliteral(L, "invalid");
}

typedef enum norm_status (*norm_simple_fn)(const char *in, char *out, size_t size);

/* Reads the input of a norm function: nil is treated as empty; input over
 * NORM_MAX_INPUT bytes is "invalid" without calling the normaliser. */
static const char *norm_input(lua_State *L, int arg, int *too_long)
{
    size_t len;
    const char *s;

    *too_long = 0;
    if (lua_isnoneornil(L, arg))
        return "";
    s = luaL_checklstring(L, arg, &len);
    if (len > NORM_MAX_INPUT || strlen(s) != len)
        *too_long = 1;
    return s;
}

static int norm_result(lua_State *L, const char *out, enum norm_status status)
{
    lua_pushstring(L, out);
    lua_pushvalue(L, STATUS_UPVALUE(status > NORM_INVALID ? NORM_INVALID : status));
    return 2;
}

static int api_norm_simple(lua_State *L)
{
    norm_simple_fn fn = (norm_simple_fn)lua_touserdata(L, lua_upvalueindex(1));
    char out[NORM_OUT];
    int too_long;
    const char *in = norm_input(L, 1, &too_long);

    if (too_long)
        return norm_result(L, "", NORM_INVALID);
    return norm_result(L, out, fn(in, out, sizeof(out)));
}

static int api_norm_postcode(lua_State *L)
{
    char out[NORM_OUT];
    int too_long;
    const char *in = norm_input(L, 1, &too_long);
    const char *country = luaL_optstring(L, 2, NULL);

    if (too_long)
        return norm_result(L, "", NORM_INVALID);
    return norm_result(L, out, norm_postcode(in, country, out, sizeof(out)));
}

static int api_norm_email(lua_State *L)
{
    char out[NORM_OUT], second[NORM_OUT];
    int too_long;
    const char *in = norm_input(L, 1, &too_long);
    enum norm_status status;

    if (too_long)
        return norm_result(L, "", NORM_INVALID);
    second[0] = '\0';
    status = norm_email(in, out, sizeof(out), second, sizeof(second));
    norm_result(L, out, status);
    if (second[0] != '\0')
        lua_pushstring(L, second);
    else
        lua_pushnil(L);
    return 3;
}

/* Wrapper giving norm_fold the simple signature (alnum_only off). */
static enum norm_status norm_fold_words(const char *in, char *out, size_t size)
{
    return norm_fold(in, out, size, 0);
}

static void set_norm_functions(lua_State *L)
{
    static const struct {
        const char *name;
        norm_simple_fn fn;
    } simple[] = {
        {"text", norm_text},       {"fold", norm_fold_words}, {"name", norm_name},
        {"phone", norm_phone},     {"date", norm_date},       {"licence", norm_licence},
        {"galop", norm_galop},     {"sex", norm_sex},         {"country", norm_country},
    };

    lua_createtable(L, 0, 12);
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        lua_pushlightuserdata(L, (void *)simple[i].fn);
        push_status_upvalues(L);
        lua_pushcclosure(L, api_norm_simple, 4);
        lua_setfield(L, -2, simple[i].name);
    }
    lua_pushnil(L); /* upvalue 1 is unused by postcode and email */
    push_status_upvalues(L);
    lua_pushcclosure(L, api_norm_postcode, 4);
    lua_setfield(L, -2, "postcode");
    lua_pushnil(L);
    push_status_upvalues(L);
    lua_pushcclosure(L, api_norm_email, 4);
    lua_setfield(L, -2, "email");
}

/* ---- Read-only tables -------------------------------------------------------- */

static int readonly_newindex(lua_State *L)
{
    return luaL_error(L, "attempt to modify a read-only table");
}

static int readonly_len(lua_State *L)
{
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__index");
    lua_pushinteger(L, (lua_Integer)lua_rawlen(L, -1));
    return 1;
}

static int readonly_next(lua_State *L)
{
    lua_settop(L, 2);
    if (lua_next(L, 1) == 0)
        return 0;
    return 2;
}

static int readonly_pairs(lua_State *L)
{
    lua_pushcfunction(L, readonly_next);
    lua_getmetatable(L, 1);
    lua_getfield(L, -1, "__index");
    lua_remove(L, -2);
    lua_pushnil(L);
    return 3;
}

/* Replaces the table on top of the stack, and every table inside it, by
 * read-only proxies. Stack: [-1, +1]. */
static void make_readonly(lua_State *L, int depth)
{
    int t = lua_gettop(L);

    if (depth > SCRIPT_JSON_DEPTH || !lua_checkstack(L, 6))
        return;
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
        if (lua_type(L, -1) == LUA_TTABLE) {
            make_readonly(L, depth + 1);
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_rawset(L, t);
        } else {
            lua_pop(L, 1);
        }
    }

    lua_newtable(L); /* proxy */
    lua_createtable(L, 0, 5);
    lua_pushvalue(L, t);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, readonly_newindex);
    lua_setfield(L, -2, "__newindex");
    lua_pushcfunction(L, readonly_len);
    lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, readonly_pairs);
    lua_setfield(L, -2, "__pairs");
    lua_pushboolean(L, 0);
    lua_setfield(L, -2, "__metatable");
    lua_setmetatable(L, -2);
    lua_remove(L, t);
}

/* Sets licol[name] to a read-only copy of value (an empty table for NULL).
 * Stack: [-0, +0]. */
static void set_readonly_json(struct script_state *st, const char *name, json_t *value)
{
    lua_State *L = st->L;

    lua_getglobal(L, "licol");
    if (value == NULL)
        lua_newtable(L);
    else if (script_push_json(st, value) < 0 || !lua_istable(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
    }
    make_readonly(L, 0);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

void script_api_set_fields(struct script_state *st)
{
    json_t *fields = fields_to_json(st->version->fields);

    set_readonly_json(st, "fields", fields);
    json_decref(fields);
}

/* ---- Installation ------------------------------------------------------------ */

int script_api_install(struct script_state *st)
{
    lua_State *L = st->L;
    static const luaL_Reg json_fns[] = {
        {"encode", api_json_encode}, {"decode", api_json_decode}, {"array", api_json_array},
        {NULL, NULL}};
    static const luaL_Reg text_fns[] = {{"fold", api_text_fold},   {"trim", api_text_trim},
                                        {"upper", api_text_upper}, {"lower", api_text_lower},
                                        {NULL, NULL}};
    static const struct {
        const char *name;
        enum log_level level;
    } levels[] = {{"debug", LOG_DEBUG}, {"info", LOG_INFO}, {"warn", LOG_WARN}, {"error", LOG_ERROR}};

    /* Marker metatable of JSON arrays. */
    lua_newtable(L);
    lua_pushliteral(L, "json.array");
    lua_setfield(L, -2, "__name");
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ARRAY_MT_KEY);

    lua_createtable(L, 0, 8); /* licol */

    lua_createtable(L, 0, 4);
    for (size_t i = 0; i < sizeof(levels) / sizeof(levels[0]); i++) {
        lua_pushinteger(L, levels[i].level);
        lua_pushcclosure(L, api_log, 1);
        lua_setfield(L, -2, levels[i].name);
    }
    lua_setfield(L, -2, "log");

    luaL_newlib(L, json_fns);
    lua_pushlightuserdata(L, (void *)&JSON_NULL_KEY);
    lua_setfield(L, -2, "null");
    lua_setfield(L, -2, "json");

    luaL_newlib(L, text_fns);
    lua_setfield(L, -2, "text");

    set_norm_functions(L);
    lua_setfield(L, -2, "norm");

    lua_setglobal(L, "licol");

    set_readonly_json(st, "config", st->version->config);
    set_readonly_json(st, "fields", NULL);
    return 0;
}
