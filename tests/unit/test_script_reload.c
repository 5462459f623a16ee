/*
 * Hot reload with a running libuv loop: scripts edited on disk the way
 * editors save them (temporary file + rename) while permission checks run.
 * Broken edits leave the previous version serving; a fixed file is picked
 * up; work in flight keeps the version it acquired.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <time.h>
#include <uv.h>

#include "log.h"
#include "test_script_util.h"

#define ROLES_V1 "return { can = function(s, a, t) return s.roles.gerant == true end }\n"
#define ROLES_V2                                                                                   \
    "return { can = function(s, a, t)\n"                                                           \
    "  return s.roles.gerant == true or (s.roles.client == true and a == 'rider.read')\n"          \
    "end }\n"

static const struct script_subject gerant = {.person_id = 1, .roles = SCRIPT_ROLE_GERANT};
static const struct script_subject client = {.person_id = 2, .roles = SCRIPT_ROLE_CLIENT};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static json_int_t status_int(struct script_engine *engine, const char *key)
{
    json_t *status = script_engine_status(engine);
    json_int_t value = json_integer_value(json_object_get(status, key));
    json_decref(status);
    return value;
}

/* Runs the loop, with permission checks on the current version between
 * iterations, until the status counter key reaches want or 3 s pass.
 * Returns 1 when reached. */
static int run_until(uv_loop_t *loop, struct script_engine *engine, const char *key,
                     json_int_t want)
{
    int64_t deadline = now_ms() + 3000;

    while (now_ms() < deadline) {
        struct script_version *v = script_engine_acquire(engine);

        assert_int_equal(script_can(script_version_state(v), &gerant, "rider.read", NULL, NULL),
                         1);
        script_version_release(v);
        uv_run(loop, UV_RUN_NOWAIT);
        if (status_int(engine, key) >= want)
            return 1;
        usleep(5000);
    }
    return 0;
}

static void reload_rejects_broken_edits(void **state)
{
    static const struct {
        const char *what;
        const char *text;
        const char *needle;
    } broken[] = {
        {"syntax error", "return { can = function(s) return end end }", "scripts/roles.lua:1:"},
        {"runtime error at load", "local cfg = nil\nreturn cfg.roles", "scripts/roles.lua:2:"},
        {"missing export", "return { peut = function() return true end }", "missing function can"},
        {"infinite loop", "while true do end\n", "time budget"},
        {"memory bomb", "local t = {} for i = 1, 1e9 do t[i] = ('x'):rep(1 << 16) .. i end",
         "memory limit"},
        {"failing selftest",
         "return { can = function() return true end, selftest = function() error('cas 1 faux') "
         "end }",
         "cas 1 faux"},
    };
    struct test_tree tree;
    struct script_engine *engine;
    struct script_version *in_flight;
    char first_id[13];
    char *err = NULL;
    uv_loop_t loop;

    log_set_level("off");
    uv_loop_init(&loop);
    tree_init(&tree);
    tree_write(&tree, "scripts/roles.lua", ROLES_V1);
    engine = tree_engine(&tree, &err);
    assert_non_null(engine);
    assert_int_equal(script_engine_watch(engine, &loop), 0);
    in_flight = script_engine_acquire(engine);
    strcpy(first_id, script_version_id(in_flight));

    for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++) {
        json_t *status;
        const char *last_error;

        tree_write(&tree, "scripts/roles.lua", broken[i].text);
        if (!run_until(&loop, engine, "rejected_reloads", (json_int_t)i + 1))
            fail_msg("%s: the edit was not rejected", broken[i].what);

        status = script_engine_status(engine);
        assert_string_equal(json_string_value(json_object_get(status, "version")), first_id);
        last_error = json_string_value(json_object_get(status, "last_error"));
        if (last_error == NULL || strstr(last_error, broken[i].needle) == NULL)
            fail_msg("%s: last_error \"%s\" lacks \"%s\"", broken[i].what,
                     last_error ? last_error : "(null)", broken[i].needle);
        assert_int_equal(json_integer_value(json_object_get(status, "reloads")), 0);
        json_decref(status);
    }

    /* The fixed file is picked up, and the version acquired before keeps
     * its old decisions. */
    tree_write(&tree, "scripts/roles.lua", ROLES_V2);
    assert_true(run_until(&loop, engine, "reloads", 1));
    {
        struct script_version *now = script_engine_acquire(engine);

        assert_string_not_equal(script_version_id(now), first_id);
        assert_int_equal(script_can(script_version_state(now), &client, "rider.read", NULL, NULL),
                         1);
        assert_int_equal(
            script_can(script_version_state(in_flight), &client, "rider.read", NULL, NULL), 0);
        script_version_release(now);
    }
    script_version_release(in_flight);

    /* Without a change on disk, nothing is rebuilt; SIGHUP forces it. */
    assert_int_equal(script_engine_reload_if_changed(engine), 0);
    assert_int_equal(script_engine_reload(engine), 1);
    assert_int_equal(status_int(engine, "reloads"), 2);

    script_engine_stop(engine);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    script_engine_free(engine);
    assert_int_equal(uv_loop_close(&loop), 0);
    tree_free(&tree);
}

static void reload_watches_new_subdirectories(void **state)
{
    struct test_tree tree;
    struct script_engine *engine;
    struct script_version *v;
    char *err = NULL;
    uv_loop_t loop;

    log_set_level("off");
    uv_loop_init(&loop);
    tree_init(&tree);
    tree_write(&tree, "scripts/roles.lua", ROLES_V1);
    engine = tree_engine(&tree, &err);
    assert_non_null(engine);
    assert_int_equal(script_engine_watch(engine, &loop), 0);

    /* A new directory, then a file in it: both changes must be seen. */
    tree_write(&tree, "scripts/formats/ffe.lua",
               "return { detect = function() return 1 end, map = function(r) return r end }");
    assert_true(run_until(&loop, engine, "reloads", 1));
    v = script_engine_acquire(engine);
    assert_int_equal(script_module_count(script_version_state(v), SCRIPT_MOD_FORMATS), 1);
    script_version_release(v);

    tree_write(&tree, "scripts/formats/celeris.lua",
               "return { detect = function() return 0 end, map = function(r) return r end }");
    assert_true(run_until(&loop, engine, "reloads", 2));
    v = script_engine_acquire(engine);
    assert_int_equal(script_module_count(script_version_state(v), SCRIPT_MOD_FORMATS), 2);
    script_version_release(v);

    /* A new plugin directory is picked up as well. */
    tree_write(&tree, "plugins/essai/plugin.lua",
               "return { name = 'essai', version = '1', fields = { { key = 'essai_note', "
               "label = 'Note', type = 'number' } } }");
    assert_true(run_until(&loop, engine, "reloads", 3));
    v = script_engine_acquire(engine);
    assert_non_null(fields_find(script_version_fields(v), "essai_note"));
    script_version_release(v);

    script_engine_stop(engine);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    script_engine_free(engine);
    assert_int_equal(uv_loop_close(&loop), 0);
    tree_free(&tree);
}

static void poll_catches_changes_without_events(void **state)
{
    struct test_tree tree;
    struct script_engine *engine;
    struct script_config cfg = {0};
    char *err = NULL;
    uv_loop_t loop;

    log_set_level("off");
    uv_loop_init(&loop);
    tree_init(&tree);
    tree_write(&tree, "scripts/roles.lua", ROLES_V1);
    cfg.scripts_dir = tree.scripts;
    cfg.plugins_dir = tree.plugins;
    cfg.poll_ms = 50;
    cfg.debounce_ms = 60000; /* events effectively never fire */
    engine = script_engine_new(&cfg, &err);
    assert_non_null(engine);
    assert_int_equal(script_engine_watch(engine, &loop), 0);

    tree_write(&tree, "scripts/roles.lua", ROLES_V2);
    assert_true(run_until(&loop, engine, "reloads", 1));

    script_engine_stop(engine);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    script_engine_free(engine);
    assert_int_equal(uv_loop_close(&loop), 0);
    tree_free(&tree);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reload_rejects_broken_edits),
        cmocka_unit_test(reload_watches_new_subdirectories),
        cmocka_unit_test(poll_catches_changes_without_events),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
