/*
 * Unit tests for plugins: the two shipped plugins (gabarit,
 * certificat-medical) and the fixture plugin tests/scripts/plugins/essai,
 * loaded by the real engine from files in a temporary directory. Field
 * declarations, validation with French messages, hooks, routes and plugin
 * migrations applied to a real SQLite file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <time.h>

#include "db.h"
#include "log.h"
#include "migrate.h"
#include "test_script_util.h"

struct fixture {
    struct test_tree tree;
    struct script_engine *engine;
    struct script_version *version;
    struct script_state *state;
    const struct fields_catalogue *fields;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char *err = NULL;

    log_set_level("off");
    tree_init(&f->tree);
    tree_copy(&f->tree, "scripts/roles.lua", "scripts/roles.lua");
    tree_copy(&f->tree, "plugins/gabarit/plugin.lua", "plugins/gabarit/plugin.lua");
    tree_copy(&f->tree, "plugins/certificat-medical/plugin.lua",
              "plugins/certificat-medical/plugin.lua");
    tree_copy(&f->tree, "tests/scripts/plugins/essai/plugin.lua", "plugins/essai/plugin.lua");
    tree_copy(&f->tree, "tests/scripts/plugins/essai/migrations/0001_essai_table.sql",
              "plugins/essai/migrations/0001_essai_table.sql");
    f->engine = tree_engine(&f->tree, &err);
    if (f->engine == NULL)
        fail_msg("engine: %s", err);
    f->version = script_engine_acquire(f->engine);
    f->state = script_version_state(f->version);
    f->fields = script_version_fields(f->version);
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

static void plugin_fields_declared(void **state)
{
    struct fixture *f = *state;
    const struct field_def *taille = fields_find(f->fields, "taille_cm");
    const struct field_def *certificat = fields_find(f->fields, "certificat_medical_date");
    json_t *status;

    assert_non_null(taille);
    assert_string_equal(taille->label, "Taille (cm)");
    assert_int_equal(taille->type, FIELD_NUMBER);
    assert_string_equal(taille->plugin, "gabarit");
    assert_true(taille->is_public);
    assert_string_equal(taille->aliases[0], "Taille");
    assert_string_equal(taille->view[0], "gerant");
    assert_non_null(fields_find(f->fields, "poids_kg"));

    assert_non_null(certificat);
    assert_int_equal(certificat->type, FIELD_DATE);
    assert_string_equal(certificat->plugin, "certificat-medical");

    /* Core fields first, then plugins in directory name order. */
    assert_string_equal(f->fields->fields[0].key, "last_name");
    assert_string_equal(f->fields->fields[f->fields->core_count].plugin, "certificat-medical");
    assert_ptr_equal(fields_find_alias(f->fields, "POIDS"), fields_find(f->fields, "poids_kg"));
    assert_ptr_equal(fields_find_alias(f->fields, "Date certificat medical"), certificat);

    /* The certificate is visible to a client but only staff edit it. */
    assert_true(fields_can_view(certificat, SCRIPT_ROLE_CLIENT));
    assert_false(fields_can_edit(certificat, SCRIPT_ROLE_CLIENT));
    assert_true(fields_can_edit(certificat, SCRIPT_ROLE_CLIENT | SCRIPT_ROLE_EMPLOYE));
    assert_false(fields_can_view(certificat, SCRIPT_ROLE_COMPTABLE));
    assert_true(fields_can_view(fields_find(f->fields, "essai_code"), SCRIPT_ROLE_VISITEUR));

    status = script_engine_status(f->engine);
    assert_int_equal(json_array_size(json_object_get(status, "plugins")), 3);
    json_decref(status);
}

static void assert_valid(struct fixture *f, const char *key, const char *value)
{
    char *err = NULL;

    if (fields_validate(f->fields, key, value, f->state, &err) != 0)
        fail_msg("%s = \"%s\" rejected: %s", key, value, err);
    assert_null(err);
}

static void assert_invalid(struct fixture *f, const char *key, const char *value,
                           const char *message)
{
    char *err = NULL;

    assert_int_equal(fields_validate(f->fields, key, value, f->state, &err), -1);
    assert_non_null(err);
    if (strcmp(err, message) != 0)
        fail_msg("%s = \"%s\": got \"%s\", expected \"%s\"", key, value, err, message);
    free(err);
}

static void plugin_fields_validated(void **state)
{
    struct fixture *f = *state;
    char future[16];
    time_t later = time(NULL) + 30 * 86400;
    struct tm tm;

    assert_valid(f, "taille_cm", "155");
    assert_valid(f, "taille_cm", "155,5");
    assert_valid(f, "taille_cm", "");
    assert_invalid(f, "taille_cm", "grand", "Le champ « Taille (cm) » doit être un nombre (reçu « grand »).");
    assert_invalid(f, "taille_cm", "300", "Le champ « Taille (cm) » doit être compris entre 60 et 230.");
    assert_invalid(f, "poids_kg", "5", "Le champ « Poids (kg) » doit être compris entre 10 et 200.");

    assert_valid(f, "certificat_medical_date", "2024-05-02");
    assert_invalid(f, "certificat_medical_date", "02/05/2024",
                   "Le champ « Date du certificat médical » doit être une date valide au format "
                   "aaaa-mm-jj (reçu « 02/05/2024 »).");
    gmtime_r(&later, &tm);
    strftime(future, sizeof(future), "%Y-%m-%d", &tm);
    assert_invalid(f, "certificat_medical_date", future,
                   "Date du certificat médical : la date ne peut pas être dans le futur.");

    assert_valid(f, "essai_code", "AB12");
    assert_invalid(f, "essai_code", "ab12", "Le champ « Code essai » n'a pas le format attendu (reçu « ab12 »).");
    assert_invalid(f, "essai_code", "AB12345", "Le champ « Code essai » ne doit pas dépasser 6 caractères.");
    assert_valid(f, "essai_couleur", "gris");
    assert_invalid(f, "essai_couleur", "pie", "Le champ « Couleur » n'accepte pas la valeur « pie ».");
    assert_invalid(f, "essai_couleur", "", "Le champ « Couleur » est obligatoire.");
    assert_valid(f, "essai_actif", "oui");
    assert_invalid(f, "essai_actif", "peut-être", "Le champ « Actif » doit valoir oui ou non (reçu « peut-être »).");
    assert_valid(f, "essai_pair", "4");
    assert_invalid(f, "essai_pair", "3", "Nombre pair : doit être pair.");
    assert_invalid(f, "inconnu", "1", "Le champ « inconnu » n'existe pas.");

    /* Without a state only the C checks run. */
    {
        char *err = NULL;
        assert_int_equal(fields_validate(f->fields, "essai_pair", "3", NULL, &err), 0);
    }
}

static void hooks_called(void **state)
{
    struct fixture *f = *state;
    json_t *payload = json_pack("{s:i, s:s, s:{s:s}}", "id", 7, "licence_type", "competition",
                                "fields", "certificat_medical_date", "2000-01-01");
    json_t *result = NULL;
    json_t *warning;

    assert_int_equal(script_run_hook(f->state, SCRIPT_HOOK_PERSON_CREATED, payload, &result), 0);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(result, "essai"), "vu")),
                     7);
    warning = json_object_get(result, "certificat-medical");
    assert_string_equal(json_string_value(json_object_get(warning, "statut")), "expire");
    assert_non_null(strstr(json_string_value(json_array_get(json_object_get(warning,
                                                                            "avertissements"),
                                                            0)),
                           "plus de 12 mois"));
    json_decref(result);
    json_decref(payload);

    payload = json_pack("{s:s}", "texte", "photos-2026");
    assert_int_equal(script_run_hook(f->state, SCRIPT_HOOK_CONSENT_RECORDED, payload, &result), 0);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(result, "essai"), "texte")),
        "photos-2026");
    json_decref(result);
    json_decref(payload);

    /* A practice licence gets no warning. */
    payload = json_pack("{s:i, s:s, s:{}}", "id", 8, "licence_type", "pratiquant", "fields");
    assert_int_equal(script_run_hook(f->state, SCRIPT_HOOK_PERSON_UPDATED, payload, &result), 0);
    assert_int_equal(json_object_size(result), 0);
    json_decref(result);
    json_decref(payload);
}

static void import_row_hook_chains(void **state)
{
    struct fixture *f = *state;
    json_t *row = json_pack("{s:s, s:s, s:s}", "numero", "42", "taille_cm", "1m62", "poids_kg",
                            "48,5 kg");
    json_t *result = NULL;

    assert_int_equal(script_run_hook(f->state, SCRIPT_HOOK_IMPORT_ROW_MAPPED, row, &result), 0);
    assert_string_equal(json_string_value(json_object_get(result, "taille_cm")), "162");
    assert_string_equal(json_string_value(json_object_get(result, "poids_kg")), "48.5");
    assert_string_equal(json_string_value(json_object_get(result, "essai_code")), "AB42");
    /* The caller's payload is left as it was. */
    assert_string_equal(json_string_value(json_object_get(row, "taille_cm")), "1m62");
    json_decref(result);
    json_decref(row);
}

static void failing_hook_is_reported(void **state)
{
    struct fixture *f = *state;
    json_t *payload = json_pack("{s:i}", "run", 3);
    json_t *result = NULL;
    json_t *status;

    assert_int_equal(script_run_hook(f->state, SCRIPT_HOOK_IMPORT_FINISHED, payload, &result), -1);
    assert_non_null(result);
    json_decref(result);
    json_decref(payload);
    status = script_engine_status(f->engine);
    assert_non_null(strstr(json_string_value(json_object_get(status, "last_error")),
                           "plugins/essai/plugin.lua:"));
    assert_non_null(strstr(json_string_value(json_object_get(status, "last_error")),
                           "échec volontaire"));
    json_decref(status);
}

static void routes_found_and_called(void **state)
{
    struct fixture *f = *state;
    json_t *request = json_pack("{s:s, s:{s:s}}", "method", "GET", "query", "x", "1");
    json_t *body = NULL;
    int route, status;

    route = script_route_find(f->state, "gabarit", "GET", "/monture/150");
    assert_true(route >= 0);
    assert_int_equal(script_route_call(f->state, route, "/monture/150", request, &status, &body), 0);
    assert_int_equal(status, 200);
    assert_string_equal(json_string_value(json_object_get(body, "categorie")), "poney C");
    json_decref(body);

    assert_int_equal(script_route_call(f->state, route, "/monture/abc", request, &status, &body), 0);
    assert_int_equal(status, 400);
    json_decref(body);

    route = script_route_find(f->state, "essai", "get", "/echo/bonjour");
    assert_true(route >= 0);
    assert_int_equal(script_route_call(f->state, route, "/echo/bonjour", request, &status, &body), 0);
    assert_int_equal(status, 201);
    assert_string_equal(json_string_value(json_object_get(body, "mot")), "bonjour");
    assert_string_equal(json_string_value(json_object_get(json_object_get(body, "q"), "x")), "1");
    json_decref(body);

    assert_int_equal(script_route_find(f->state, "essai", "GET", "/echo"), -1);
    assert_int_equal(script_route_find(f->state, "gabarit", "POST", "/monture/150"), -1);
    assert_int_equal(script_route_find(f->state, "essai", "GET", "/monture/150"), -1);

    route = script_route_find(f->state, "essai", "POST", "/casse");
    assert_int_equal(script_route_call(f->state, route, "/casse", request, &status, &body), -1);
    assert_int_equal(status, 500);
    assert_non_null(json_object_get(body, "error"));
    json_decref(body);
    json_decref(request);
}

static void worker_state_runs_plugins(void **state)
{
    struct fixture *f = *state;
    char *err = NULL;
    struct script_state *worker = script_state_new(f->version, &err);
    json_t *request = json_object();
    json_t *body = NULL;
    int route, status;

    assert_non_null(worker);
    route = script_route_find(worker, "essai", "GET", "/echo/x");
    assert_int_equal(script_route_call(worker, route, "/echo/x", request, &status, &body), 0);
    assert_int_equal(status, 201);
    json_decref(body);
    assert_invalid(f, "essai_pair", "5", "Nombre pair : doit être pair.");
    {
        char *verr = NULL;
        assert_int_equal(fields_validate(f->fields, "essai_pair", "5", worker, &verr), -1);
        assert_string_equal(verr, "Nombre pair : doit être pair.");
        free(verr);
    }
    json_decref(request);
    script_state_free(worker);
}

static void plugin_migrations_applied(void **state)
{
    struct fixture *f = *state;
    size_t count = 0;
    const struct script_migration *m = script_version_migrations(f->version, &count);
    char path[] = "/tmp/licol-test-plugin-db-XXXXXX";
    int fd = mkstemp(path);
    char *err = NULL;
    struct db *db;

    assert_int_equal(count, 1);
    assert_string_equal(m[0].scope, "essai");
    assert_int_equal(m[0].number, 1);
    assert_string_equal(m[0].name, "essai_table");

    close(fd);
    unlink(path);
    db = db_open(path, &err);
    assert_non_null(db);
    assert_true(migrate_apply(db, &err) > 0);
    assert_int_equal(migrate_apply_scoped(db, m[0].scope, m[0].number, m[0].name, m[0].sql, &err), 1);
    assert_int_equal(migrate_apply_scoped(db, m[0].scope, m[0].number, m[0].name, m[0].sql, &err), 0);
    assert_int_equal(db_exec(db, "INSERT INTO essai_note VALUES (1, 'ok')"), 0);
    db_close(db);
    unlink(path);
}

static void broken_plugin_rejects_version(void **state)
{
    static const struct {
        const char *text;
        const char *needle;
    } cases[] = {
        {"return { name = 'autre' }", "name must be \"casse\""},
        {"return { name = 'casse', fields = { { key = 'x', label = 'X', type = 'nombre' } } }",
         "type is one of"},
        {"return { name = 'casse', fields = { { key = 'taille_cm', label = 'T', type = 'text' } } }",
         "déjà déclaré"},
        {"return { name = 'casse', hooks = { person_deleted = function() end } }",
         "hooks.person_deleted: unknown event"},
        {"return { name = 'casse', routes = { { method = 'GET', path = 'x', handler = 1 } } }",
         "routes[1]"},
        {"return { name = 'casse', selftest = function() return false, 'non' end }",
         "selftest returned false: non"},
        {"return { name = 'casse' ", "plugins/casse/plugin.lua:1:"},
        {"return { name = 'casse', fields = { { key = 'x', label = 'X', type = 'text', "
         "view = { 'moniteur' } } } }",
         "view and edit contain role names"},
    };
    struct fixture *f = *state;

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *status;
        const char *last;

        tree_write(&f->tree, "plugins/casse/plugin.lua", cases[i].text);
        assert_int_equal(script_engine_reload(f->engine), -1);
        status = script_engine_status(f->engine);
        assert_string_equal(json_string_value(json_object_get(status, "version")),
                            script_version_id(f->version));
        last = json_string_value(json_object_get(status, "last_error"));
        if (strstr(last, cases[i].needle) == NULL)
            fail_msg("case %zu: \"%s\" lacks \"%s\"", i, last, cases[i].needle);
        json_decref(status);
    }

    /* Removing the broken plugin lets the next reload through. */
    tree_remove(&f->tree, "plugins/casse/plugin.lua");
    assert_int_equal(script_engine_reload(f->engine), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(plugin_fields_declared, setup, teardown),
        cmocka_unit_test_setup_teardown(plugin_fields_validated, setup, teardown),
        cmocka_unit_test_setup_teardown(hooks_called, setup, teardown),
        cmocka_unit_test_setup_teardown(import_row_hook_chains, setup, teardown),
        cmocka_unit_test_setup_teardown(failing_hook_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(routes_found_and_called, setup, teardown),
        cmocka_unit_test_setup_teardown(worker_state_runs_plugins, setup, teardown),
        cmocka_unit_test_setup_teardown(plugin_migrations_applied, setup, teardown),
        cmocka_unit_test_setup_teardown(broken_plugin_rejects_version, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
