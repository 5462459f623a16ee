/*
 * Unit tests for the script sandbox and the engine's loading rules, run
 * inside the real sandbox on real files in a temporary directory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <lauxlib.h>
#include <lua.h>
#include <pthread.h>
#include <time.h>

#include "log.h"
#include "test_script_util.h"

struct fixture {
    struct test_tree tree;
    struct script_engine *engine;
    struct script_version *version;
    struct script_state *state;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char *err = NULL;

    log_set_level("off");
    tree_init(&f->tree);
    tree_write(&f->tree, "scripts/roles.lua",
               "local M = {}\n"
               "function M.can(s, a, t)\n"
               "  if a == 'explode' then error('boom') end\n"
               "  return s.roles.gerant == true, 'réservé au gérant'\n"
               "end\n"
               "return M\n");
    tree_write(&f->tree, "scripts/lib/helpers.lua",
               "return { double = function(x) return x * 2 end }\n");
    f->engine = tree_engine(&f->tree, &err);
    assert_non_null(f->engine);
    f->version = script_engine_acquire(f->engine);
    f->state = script_version_state(f->version);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    script_version_release(f->version);
    script_engine_free(f->engine);
    tree_free(&f->tree);
    free(f);
    return 0;
}

/* Runs code in the sandbox's global environment. Returns the call status
 * and, when it succeeded, the first result converted with tostring. */
static int run(struct script_state *st, const char *code, char **result)
{
    lua_State *L = script_state_lua(st);
    int rc;

    *result = NULL;
    if (luaL_loadbufferx(L, code, strlen(code), "=test", "t") != LUA_OK) {
        *result = strdup(lua_tostring(L, -1));
        lua_pop(L, 1);
        return -2;
    }
    rc = script_call(st, 0, 1, "test chunk");
    if (rc == 0) {
        *result = strdup(luaL_tolstring(L, -1, NULL));
        lua_pop(L, 2);
    }
    return rc;
}

static void assert_true_chunk(struct script_state *st, const char *code)
{
    char *result = NULL;

    assert_int_equal(run(st, code, &result), 0);
    assert_string_equal(result, "true");
    free(result);
}

static void assert_chunk_fails(struct script_state *st, const char *code, const char *needle)
{
    char *result = NULL;

    assert_int_equal(run(st, code, &result), -1);
    assert_non_null(script_state_last_error(st));
    if (strstr(script_state_last_error(st), needle) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", script_state_last_error(st), needle);
    free(result);
}

static void sandbox_hides_dangerous_libraries(void **state)
{
    struct fixture *f = *state;

    assert_true_chunk(f->state, "return io == nil and package == nil and debug == nil");
    assert_true_chunk(f->state, "return dofile == nil and loadfile == nil and "
                                "collectgarbage == nil and print == nil");
    assert_true_chunk(f->state, "return os.execute == nil and os.getenv == nil and "
                                "os.remove == nil and os.rename == nil and os.exit == nil");
    assert_true_chunk(f->state, "return type(os.time) == 'function' and "
                                "type(os.date) == 'function' and type(os.clock) == 'function'");
    assert_true_chunk(f->state, "return string.dump == nil and (''):len() == 0");
}

static void sandbox_escape_attempts_fail(void **state)
{
    struct fixture *f = *state;

    assert_chunk_fails(f->state, "os.execute('touch /tmp/licol-escaped')", "field 'execute'");
    assert_chunk_fails(f->state, "return io.open('/etc/passwd')", "io");
    assert_chunk_fails(f->state, "return string.dump(function() end)", "dump");
    assert_chunk_fails(f->state, "return debug.getregistry()", "debug");
    assert_chunk_fails(f->state, "return package.loadlib('libc.so.6', 'system')", "package");
    assert_int_equal(access("/tmp/licol-escaped", F_OK), -1);
}

static void sandbox_load_rejects_bytecode(void **state)
{
    struct fixture *f = *state;

    /* A precompiled chunk starts with ESC "Lua". */
    assert_true_chunk(f->state, "local fn, err = load('\\27Lua\\84\\0') "
                                "return fn == nil and err:find('binary chunk') ~= nil");
    assert_true_chunk(f->state, "local fn = load(function() return nil end) return fn == nil");
    assert_true_chunk(f->state, "return load('return 1 + 1')() == 2");
    /* The env argument becomes the chunk's only global table. */
    assert_true_chunk(f->state, "return load('return x', 't', 't', { x = 7 })() == 7");
}

static void sandbox_require_reads_only_lib(void **state)
{
    struct fixture *f = *state;

    assert_true_chunk(f->state, "return require('helpers').double(21) == 42");
    assert_true_chunk(f->state, "return require('helpers') == require('helpers')");
    assert_chunk_fails(f->state, "return require('../roles')", "invalid module name");
    assert_chunk_fails(f->state, "return require('roles')", "not found");
    assert_chunk_fails(f->state, "return require('/etc/passwd')", "invalid module name");
    assert_chunk_fails(f->state, "return require('os')", "not found");
}

static void budget_stops_infinite_loop(void **state)
{
    struct fixture *f = *state;
    struct timespec a, b;
    double elapsed;

    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_chunk_fails(f->state, "while true do end", "time budget of 100 ms exceeded");
    clock_gettime(CLOCK_MONOTONIC, &b);
    elapsed = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    assert_true(elapsed < 2.0);
    assert_non_null(strstr(script_state_last_error(f->state), "test:1:"));

    /* Catching the error with pcall does not keep the loop alive. */
    assert_chunk_fails(f->state, "while true do pcall(function() while true do end end) end",
                       "time budget");
    /* The state is usable again afterwards. */
    assert_true_chunk(f->state, "return 1 + 1 == 2");
}

static void memory_cap_stops_bomb(void **state)
{
    struct fixture *f = *state;

    assert_chunk_fails(f->state,
                       "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1 << 16) .. i end",
                       "memory limit of 8 MiB exceeded");
    assert_chunk_fails(f->state, "return string.rep('x', 1 << 30)", "memory limit");
    assert_true_chunk(f->state, "local t = {} for i = 1, 1000 do t[i] = i end return #t == 1000");
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void gc_finalizer_rejected(void **state)
{
    struct fixture *f = *state;

    assert_chunk_fails(f->state, "setmetatable({}, {__gc = function() while true do end end})",
                       "__gc");
    assert_chunk_fails(f->state, "setmetatable({}, {__gc = false})", "__gc");
    assert_true_chunk(f->state, "local t = setmetatable({}, {__index = {x = 1}}) "
                                "return t.x == 1 and setmetatable(t, nil) == t");
    assert_chunk_fails(f->state, "setmetatable({}, 1)", "nil or table");

    /* The array metatable is shared and reachable: a __gc added to it is
     * dropped before C attaches it to the next array. */
    assert_true_chunk(f->state, "local mt = getmetatable(licol.json.array()) "
                                "mt.__gc = function() while true do end end "
                                "local a = licol.json.array() "
                                "local d = licol.json.decode('[1]') "
                                "return rawget(mt, '__gc') == nil and "
                                "getmetatable(d) == mt");
    assert_true_chunk(f->state, "return debug == nil and collectgarbage == nil");
}

static void table_move_range_capped(void **state)
{
    struct fixture *f = *state;
    struct timespec start;

    clock_gettime(CLOCK_MONOTONIC, &start);
    assert_chunk_fails(f->state, "local t = table.move({1}, 1, 2^40, 1, {})",
                       "table.move : plage trop grande");
    assert_chunk_fails(f->state, "table.move({}, math.mininteger, -1, 1)", "plage trop grande");
    assert_true(seconds_since(&start) < 1.0);
    assert_true_chunk(f->state, "local t = table.move({1, 2, 3}, 1, 3, 2) "
                                "return t[1] == 1 and t[2] == 1 and t[4] == 3");
    assert_true_chunk(f->state, "return #table.move({1, 2}, 1, 2, 1, {}) == 2");
    assert_true_chunk(f->state, "return #table.move({}, 5, 1, 1) == 0");
}

static void string_rep_empty_returns_fast(void **state)
{
    struct fixture *f = *state;
    struct timespec start;

    clock_gettime(CLOCK_MONOTONIC, &start);
    assert_true_chunk(f->state, "return string.rep('', 2^40) == '' and ('').rep('', 1e15, '') == ''");
    assert_true(seconds_since(&start) < 1.0);
    assert_true_chunk(f->state, "return ('ab'):rep(3, ',') == 'ab,ab,ab'");
}

static void costly_patterns_rejected(void **state)
{
    static const char *const attacks[] = {
        "string.find(s, '.-.-.-.-.-.-.-.-.-.-.-.-b')",
        "s:find('.-.-.-.-.-.-.-.-.-.-.-.-b')",
        "s:match('.*.*.*.*.*b')",
        "for m in s:gmatch('a*a*a*a*b') do end",
        "s:gsub('^.-.-.-.-.-b', '')",
        "s:find('a*b')",
        "s:find('[a]+[%a]+%a+b')",
    };
    struct fixture *f = *state;

    for (size_t i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
        char *code = str_printf("local s = string.rep('a', 60000) %s", attacks[i]);
        struct timespec start;

        clock_gettime(CLOCK_MONOTONIC, &start);
        assert_chunk_fails(f->state, code, "motif trop coûteux pour un texte de 60000 caractères");
        assert_true(seconds_since(&start) < 1.0);
        free(code);
    }
    /* The documented limit of the usual trim pattern. */
    assert_chunk_fails(f->state, "return (' '):rep(2000):match('^%s*(.-)%s*$')",
                       "texte de 2000 caractères");
    /* init shortens the scanned text. */
    assert_chunk_fails(f->state, "return ('a'):rep(60000):find('.-.-b', -50000)",
                       "texte de 50000 caractères");
}

static void ordinary_patterns_allowed(void **state)
{
    struct fixture *f = *state;

    assert_true_chunk(f->state, "local s = '  ' .. ('mot '):rep(100) .. ' ' "
                                "return #s:match('^%s*(.-)%s*$') == 399");
    assert_true_chunk(f->state, "return ('  2024 '):match('^%s*(%d%d%d%d)%s*$') == '2024'");
    assert_true_chunk(f->state, "return ('2024-03-05'):match('^(%d%d%d%d)%-(%d%d)%-(%d%d)$') "
                                "== '2024'");
    assert_true_chunk(f->state, "return ('1m75'):match('^(%d)m(%d%d?)$') == '1'");
    assert_true_chunk(f->state, "return ('180 cm'):gsub('%s*cm$', '') == '180'");
    assert_true_chunk(f->state, "return ('licence_season'):gsub('^licence', '') == '_season'");
    assert_true_chunk(f->state, "local n = 0 for w in ('a b c'):gmatch('%a') do n = n + 1 end "
                                "return n == 3");
    assert_true_chunk(f->state, "return ('x'):rep(1800):match('^%s*(.-)%s*$') == ('x'):rep(1800)");
    /* A plain find, or one without special characters, is never checked. */
    assert_true_chunk(f->state, "local s = ('a'):rep(60000) .. 'b' "
                                "return s:find('.-.-b', 1, true) == nil and s:find('ab') == 60000");
    /* One open item on a long text stays under the bound. */
    assert_true_chunk(f->state, "return ('a'):rep(20000):find('%d+') == nil");
}

static void errors_carry_location_and_traceback(void **state)
{
    struct fixture *f = *state;
    struct script_subject gerant = {.person_id = 1, .roles = SCRIPT_ROLE_GERANT};
    const char *err;
    json_t *status;

    assert_int_equal(script_can(f->state, &gerant, "explode", NULL, NULL), 0);
    err = script_state_last_error(f->state);
    assert_non_null(err);
    assert_non_null(strstr(err, "scripts/roles.lua:3: boom"));
    assert_non_null(strstr(err, "stack traceback:"));

    status = script_engine_status(f->engine);
    assert_non_null(strstr(json_string_value(json_object_get(status, "last_error")),
                           "scripts/roles.lua:3: boom"));
    assert_true(json_is_string(json_object_get(status, "last_error_at")));
    json_decref(status);
}

static void can_returns_reason(void **state)
{
    struct fixture *f = *state;
    struct script_subject gerant = {.person_id = 1, .roles = SCRIPT_ROLE_GERANT};
    struct script_subject client = {.person_id = 2, .roles = SCRIPT_ROLE_CLIENT};
    char *reason = NULL;

    assert_int_equal(script_can(f->state, &gerant, "rider.read", NULL, &reason), 1);
    assert_null(reason);
    assert_int_equal(script_can(f->state, &client, "rider.read", NULL, &reason), 0);
    assert_string_equal(reason, "réservé au gérant");
    free(reason);
    /* The cached role set follows the subject. */
    assert_int_equal(script_can(f->state, &gerant, "rider.read", NULL, NULL), 1);
}

static void api_json_and_text(void **state)
{
    struct fixture *f = *state;

    assert_true_chunk(f->state, "local t = licol.json.decode('{\"a\":[1,2,{\"b\":null}]}') "
                                "return t.a[2] == 2 and t.a[3].b == licol.json.null");
    assert_true_chunk(f->state, "return licol.json.encode({ b = 1, a = { 'x', true } }) == "
                                "'{\"a\":[\"x\",true],\"b\":1}'");
    assert_true_chunk(f->state, "return licol.json.encode(licol.json.array()) == '[]'");
    assert_true_chunk(f->state, "local v, err = licol.json.decode('{') return v == nil and "
                                "err:find('invalid JSON') ~= nil");
    assert_true_chunk(f->state, "return licol.text.trim('  a b \\194\\160') == 'a b'");
    assert_true_chunk(f->state, "return licol.text.upper('élodie œuvre') == 'ÉLODIE ŒUVRE'");
    assert_true_chunk(f->state, "return licol.text.lower('ÇA ÎLE') == 'ça île'");
    assert_chunk_fails(f->state, "return licol.json.encode({ f = print or function() end })",
                       "cannot be encoded");
}

static void input_strings_capped(void **state)
{
    struct fixture *f = *state;
    lua_State *L = script_state_lua(f->state);
    size_t big = (64 << 10) + 1;
    char *text = malloc(big + 1);
    json_t *payload;

    memset(text, 'a', big);
    text[big] = '\0';
    assert_int_equal(script_push_string(f->state, text, big), -1);
    assert_int_equal(lua_rawlen(L, -1), 0);
    lua_pop(L, 1);
    assert_int_equal(script_push_string(f->state, text, big - 1), 0);
    lua_pop(L, 1);

    payload = json_pack("{s:s}", "long", text);
    assert_int_equal(script_push_json(f->state, payload), -1);
    assert_true(lua_isnil(L, -1));
    lua_pop(L, 1);
    json_decref(payload);

    assert_chunk_fails(f->state, "return licol.text.trim(string.rep('a', 65537))",
                       "exceeds the 65536 byte limit");
    assert_true_chunk(f->state, "licol.log.info('message from a test') return true");
    free(text);
}

static void api_norm_bindings(void **state)
{
    struct fixture *f = *state;

    assert_true_chunk(f->state, "local v, s = licol.norm.phone('06 12 34 56 78') "
                                "return v == '+33612345678' and s == 'ok'");
    assert_true_chunk(f->state, "local v, s = licol.norm.name('DUPONT') "
                                "return v == 'Dupont' and s == 'ok'");
    assert_true_chunk(f->state, "local v, s = licol.norm.date('31/04/2010') return s == 'invalid'");
    assert_true_chunk(f->state, "local v, s = licol.norm.date('0000-00-00') return s == 'empty'");
    assert_true_chunk(f->state, "local v, s = licol.norm.postcode('1000', 'FR') "
                                "return v == '01000' and s == 'ok'");
    assert_true_chunk(f->state, "local v, s, b = licol.norm.email('A@x.fr; b@y.fr') "
                                "return v == 'a@x.fr' and s == 'ok' and b == 'b@y.fr'");
    assert_true_chunk(f->state, "local v, s = licol.norm.licence('1234567a') "
                                "return v == '1234567A' and s == 'ok'");
    assert_true_chunk(f->state, "return licol.norm.galop('G3') == 'galop-3'");
    assert_true_chunk(f->state, "return licol.norm.sex('Femme') == 'F'");
    assert_true_chunk(f->state, "return licol.norm.country('Belgique') == 'BE'");
    assert_true_chunk(f->state, "return licol.text.fold('N° Licence', true) == 'nlicence'");
    assert_true_chunk(f->state, "local v, s = licol.norm.name(string.rep('a', 5000)) "
                                "return s == 'invalid'");
}

static void api_config_and_fields_read_only(void **state)
{
    struct fixture *f = *state;
    json_t *config = json_pack("{s:s, s:{s:i}}", "club", "Les Écuries", "mail", "port", 25);
    char *result = NULL;

    script_engine_set_config(f->engine, config);
    json_decref(config);
    assert_int_equal(script_engine_reload(f->engine), 1);
    script_version_release(f->version);
    f->version = script_engine_acquire(f->engine);
    f->state = script_version_state(f->version);

    assert_true_chunk(f->state, "return licol.config.club == 'Les Écuries' and "
                                "licol.config.mail.port == 25");
    assert_chunk_fails(f->state, "licol.config.club = 'x'", "read-only");
    assert_chunk_fails(f->state, "licol.config.mail.port = 1", "read-only");
    assert_true_chunk(f->state, "local n = 0 for k in pairs(licol.config) do n = n + 1 end "
                                "return n == 2");
    assert_true_chunk(f->state, "return licol.fields[1].key == 'last_name' and "
                                "licol.fields[1].label == 'Nom' and #licol.fields >= 14");
    assert_chunk_fails(f->state, "licol.fields[1].label = 'x'", "read-only");
    assert_true_chunk(f->state, "return licol.json.encode(licol.config) == "
                                "'{\"club\":\"Les Écuries\",\"mail\":{\"port\":25}}'");
    free(result);
}

static void load_failures_are_reported(void **state)
{
    static const struct {
        const char *text;
        const char *needle;
    } cases[] = {
        {"return { can = function( }", "scripts/roles.lua:1:"},
        {"local x = nil\nreturn x.y", "scripts/roles.lua:2:"},
        {"return { cannot = function() end }", "missing function can"},
        {"while true do end", "time budget"},
        {"local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(1 << 16) .. i end", "memory limit"},
        {"return { can = function() return true end, selftest = function() return false, "
         "'cas 3' end }",
         "selftest returned false: cas 3"},
        {"return 42", "must return a table"},
    };
    struct test_tree tree;

    tree_init(&tree);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *err = NULL;
        struct script_engine *engine;

        tree_write(&tree, "scripts/roles.lua", cases[i].text);
        engine = tree_engine(&tree, &err);
        assert_null(engine);
        assert_non_null(err);
        if (strstr(err, cases[i].needle) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, err, cases[i].needle);
        free(err);
    }

    /* roles.lua is required; a missing optional module (formats) is not. */
    {
        char *err = NULL;
        tree_remove(&tree, "scripts/roles.lua");
        assert_null(tree_engine(&tree, &err));
        assert_non_null(strstr(err, "required script is missing"));
        free(err);
    }
    tree_free(&tree);
}

/* Each attack fails the load, and a reload keeps the old version. */
static void runaway_c_calls_rejected_at_reload(void **state)
{
    static const struct {
        const char *line;
        const char *needle;
    } cases[] = {
        {"setmetatable({}, {__gc = function() while true do end end})", "__gc"},
        {"local s = string.rep('a', 60000); string.find(s, '.-.-.-.-.-.-.-.-.-.-.-.-b')",
         "motif trop coûteux"},
        {"local t = table.move({1}, 1, 2^40, 1, {})", "plage trop grande"},
    };
    struct fixture *f = *state;
    struct script_subject gerant = {.person_id = 1, .roles = SCRIPT_ROLE_GERANT};
    char *old_id = strdup(script_version_id(f->version));

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *text = str_printf("%s\n%s", cases[i].line, ROLES_ALLOW_GERANT);
        struct script_version *current;
        json_t *status;
        const char *last_error;

        tree_write(&f->tree, "scripts/roles.lua", text);
        assert_int_equal(script_engine_reload(f->engine), -1);
        current = script_engine_acquire(f->engine);
        assert_string_equal(script_version_id(current), old_id);
        assert_int_equal(script_can(script_version_state(current), &gerant, "rider.read", NULL,
                                    NULL),
                         1);
        script_version_release(current);

        status = script_engine_status(f->engine);
        last_error = json_string_value(json_object_get(status, "last_error"));
        assert_non_null(last_error);
        if (strstr(last_error, cases[i].needle) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, last_error, cases[i].needle);
        json_decref(status);
        free(text);
    }
    free(old_id);
}

static void status_builds_after_invalid_utf8_error(void **state)
{
    struct fixture *f = *state;
    json_t *status;
    const char *last_error;

    tree_write(&f->tree, "scripts/roles.lua", "error('caf\\233 ' .. utf8.char(0x7FFFFFFF))\n");
    assert_int_equal(script_engine_reload(f->engine), -1);
    status = script_engine_status(f->engine);
    assert_non_null(status);
    last_error = json_string_value(json_object_get(status, "last_error"));
    assert_non_null(last_error);
    if (strstr(last_error, "caf\xEF\xBF\xBD \xEF\xBF\xBD") == NULL)
        fail_msg("invalid bytes not replaced: \"%s\"", last_error);
    json_decref(status);

    /* A failing call records its error the same way. */
    assert_chunk_fails(f->state, "error('\\255\\254')", "\xEF\xBF\xBD\xEF\xBF\xBD");
    status = script_engine_status(f->engine);
    assert_non_null(status);
    json_decref(status);
}

static void formats_glob_loads_each_file(void **state)
{
    struct test_tree tree;
    struct script_engine *engine;
    struct script_version *v;
    struct script_state *st;
    char *err = NULL;

    tree_init(&tree);
    tree_write(&tree, "scripts/roles.lua", ROLES_ALLOW_GERANT);
    tree_write(&tree, "scripts/formats/ffe.lua",
               "return { detect = function(h) return 1 end, map = function(r) return r end }");
    tree_write(&tree, "scripts/formats/celeris.lua",
               "return { detect = function(h) return 0 end, map = function(r) return r end }");
    engine = tree_engine(&tree, &err);
    assert_non_null(engine);
    v = script_engine_acquire(engine);
    st = script_version_state(v);
    assert_int_equal(script_module_count(st, SCRIPT_MOD_FORMATS), 2);
    assert_string_equal(script_module_file(st, SCRIPT_MOD_FORMATS, 0), "formats/celeris.lua");
    assert_int_equal(script_push_function(st, SCRIPT_MOD_FORMATS, 1, SCRIPT_FORMAT_DETECT), 0);
    lua_pushnil(script_state_lua(st));
    assert_int_equal(script_call(st, 1, 1, "detect"), 0);
    assert_int_equal(lua_tointeger(script_state_lua(st), -1), 1);
    lua_pop(script_state_lua(st), 1);
    script_version_release(v);
    script_engine_free(engine);

    /* A format missing map rejects the version. */
    tree_write(&tree, "scripts/formats/bad.lua", "return { detect = function() end }");
    assert_null(tree_engine(&tree, &err));
    assert_non_null(strstr(err, "scripts/formats/bad.lua: missing function map"));
    free(err);
    tree_free(&tree);
}

struct worker_args {
    struct script_version *version;
    int allowed;
    int denied;
};

static void *worker(void *arg)
{
    struct worker_args *a = arg;
    char *err = NULL;
    struct script_state *st = script_state_new(a->version, &err);
    struct script_subject gerant = {.person_id = 1, .roles = SCRIPT_ROLE_GERANT};
    struct script_subject client = {.person_id = 2, .roles = SCRIPT_ROLE_CLIENT};

    if (st == NULL)
        return NULL;
    for (int i = 0; i < 1000; i++) {
        a->allowed += script_can(st, &gerant, "rider.read", NULL, NULL);
        a->denied += !script_can(st, &client, "rider.read", NULL, NULL);
    }
    script_state_free(st);
    return NULL;
}

static void worker_state_is_independent(void **state)
{
    struct fixture *f = *state;
    struct worker_args a = {.version = f->version};
    pthread_t thread;

    assert_int_equal(pthread_create(&thread, NULL, worker, &a), 0);
    for (int i = 0; i < 1000; i++) {
        struct script_subject gerant = {.person_id = 1, .roles = SCRIPT_ROLE_GERANT};
        assert_int_equal(script_can(f->state, &gerant, "rider.read", NULL, NULL), 1);
    }
    pthread_join(thread, NULL);
    assert_int_equal(a.allowed, 1000);
    assert_int_equal(a.denied, 1000);
}

static void status_reports_version(void **state)
{
    struct fixture *f = *state;
    json_t *status = script_engine_status(f->engine);
    const char *id = json_string_value(json_object_get(status, "version"));

    assert_non_null(id);
    assert_int_equal(strlen(id), 12);
    assert_string_equal(id, script_version_id(f->version));
    assert_true(json_is_string(json_object_get(status, "loaded_at")));
    assert_int_equal(json_array_size(json_object_get(status, "files")), 2);
    assert_true(json_is_null(json_object_get(status, "last_error")));
    assert_int_equal(json_integer_value(json_object_get(status, "rejected_reloads")), 0);
    json_decref(status);
}

/* The scripts and plugins shipped in the repository load together. */
static void shipped_scripts_load(void **state)
{
    const char *src = getenv("LICOL_SOURCE_DIR") ? getenv("LICOL_SOURCE_DIR") : LICOL_SOURCE_DIR;
    char *scripts = str_printf("%s/scripts", src);
    char *plugins = str_printf("%s/plugins", src);
    struct script_config cfg = {.scripts_dir = scripts, .plugins_dir = plugins};
    char *err = NULL;
    struct script_engine *engine;
    struct script_version *v;

    log_set_level("off");
    engine = script_engine_new(&cfg, &err);
    if (engine == NULL)
        fail_msg("shipped scripts do not load: %s", err);
    v = script_engine_acquire(engine);
    assert_int_equal(script_module_count(script_version_state(v), SCRIPT_MOD_ROLES), 1);
    assert_non_null(fields_find(script_version_fields(v), "taille_cm"));
    assert_non_null(fields_find(script_version_fields(v), "certificat_medical_date"));
    script_version_release(v);
    script_engine_free(engine);
    free(scripts);
    free(plugins);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(sandbox_hides_dangerous_libraries, setup, teardown),
        cmocka_unit_test_setup_teardown(sandbox_escape_attempts_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(sandbox_load_rejects_bytecode, setup, teardown),
        cmocka_unit_test_setup_teardown(sandbox_require_reads_only_lib, setup, teardown),
        cmocka_unit_test_setup_teardown(budget_stops_infinite_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(memory_cap_stops_bomb, setup, teardown),
        cmocka_unit_test_setup_teardown(gc_finalizer_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(table_move_range_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(string_rep_empty_returns_fast, setup, teardown),
        cmocka_unit_test_setup_teardown(costly_patterns_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(ordinary_patterns_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(runaway_c_calls_rejected_at_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(status_builds_after_invalid_utf8_error, setup, teardown),
        cmocka_unit_test_setup_teardown(errors_carry_location_and_traceback, setup, teardown),
        cmocka_unit_test_setup_teardown(can_returns_reason, setup, teardown),
        cmocka_unit_test_setup_teardown(api_json_and_text, setup, teardown),
        cmocka_unit_test_setup_teardown(input_strings_capped, setup, teardown),
        cmocka_unit_test_setup_teardown(api_norm_bindings, setup, teardown),
        cmocka_unit_test_setup_teardown(api_config_and_fields_read_only, setup, teardown),
        cmocka_unit_test(load_failures_are_reported),
        cmocka_unit_test(formats_glob_loads_each_file),
        cmocka_unit_test_setup_teardown(worker_state_is_independent, setup, teardown),
        cmocka_unit_test_setup_teardown(status_reports_version, setup, teardown),
        cmocka_unit_test(shipped_scripts_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
