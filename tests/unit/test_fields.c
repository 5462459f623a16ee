/*
 * Unit tests for the field catalogue: the core person fields, adding plugin
 * fields, type checks and French messages, without a script state.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "fields.h"

static char **list(const char *a, const char *b)
{
    char **out = calloc(3, sizeof(*out));
    out[0] = strdup(a);
    out[1] = b ? strdup(b) : NULL;
    return out;
}

static void core_fields_in_display_order(void **state)
{
    struct fields_catalogue *cat = fields_catalogue_new();
    static const char *const order[] = {"last_name", "first_name", "birth_date", "sex",
                                        "email", "phone", "mobile", "address", "address2",
                                        "postcode", "city", "country", "licence_number", "galop"};

    assert_non_null(cat);
    assert_int_equal(cat->core_count, sizeof(order) / sizeof(order[0]));
    for (size_t i = 0; i < cat->core_count; i++) {
        assert_string_equal(cat->fields[i].key, order[i]);
        assert_null(cat->fields[i].plugin);
    }
    assert_string_equal(fields_find(cat, "first_name")->label, "Prénom");
    assert_int_equal(fields_find(cat, "birth_date")->type, FIELD_DATE);
    assert_ptr_equal(fields_find_alias(cat, "CODE POSTAL"), fields_find(cat, "postcode"));
    assert_ptr_equal(fields_find_alias(cat, "Numéro licence"), fields_find(cat, "licence_number"));
    assert_null(fields_find_alias(cat, "Couleur préférée"));
    fields_catalogue_free(cat);
}

static void core_fields_validated(void **state)
{
    struct fields_catalogue *cat = fields_catalogue_new();
    char *err = NULL;

    assert_int_equal(fields_validate(cat, "birth_date", "2012-02-29", NULL, &err), 0);
    assert_int_equal(fields_validate(cat, "birth_date", "2013-02-29", NULL, &err), -1);
    assert_string_equal(err, "Le champ « Date de naissance » doit être une date valide au format "
                             "aaaa-mm-jj (reçu « 2013-02-29 »).");
    free(err);
    assert_int_equal(fields_validate(cat, "email", "jeanne@example.fr", NULL, &err), 0);
    assert_int_equal(fields_validate(cat, "email", "jeanne@", NULL, &err), -1);
    assert_string_equal(err, "Le champ « E-mail » doit contenir une adresse e-mail valide "
                             "(reçu « jeanne@ »).");
    free(err);
    assert_int_equal(fields_validate(cat, "phone", "06 12 34 56 78", NULL, &err), 0);
    assert_int_equal(fields_validate(cat, "sex", "F", NULL, &err), 0);
    assert_int_equal(fields_validate(cat, "sex", "X", NULL, &err), -1);
    free(err);
    assert_int_equal(fields_validate(cat, "last_name", "", NULL, &err), -1);
    assert_string_equal(err, "Le champ « Nom » est obligatoire.");
    free(err);
    assert_int_equal(fields_validate(cat, "first_name", NULL, NULL, &err), 0);
    fields_catalogue_free(cat);
}

static void plugin_field_added(void **state)
{
    struct fields_catalogue *cat = fields_catalogue_new();
    struct field_def def = {0};
    struct field_def dup = {0};
    char *err = NULL;
    json_t *json;

    def.key = strdup("pointure");
    def.label = strdup("Pointure");
    def.type = FIELD_NUMBER;
    def.has_min = def.has_max = 1;
    def.min = 20;
    def.max = 50;
    def.aliases = list("Pointure", "Taille de bottes");
    def.plugin = strdup("bottes");
    def.validate_slot = -1;
    assert_int_equal(fields_catalogue_add(cat, &def, &err), 0);

    assert_int_equal(fields_validate(cat, "pointure", "38,5", NULL, &err), 0);
    assert_int_equal(fields_validate(cat, "pointure", "51", NULL, &err), -1);
    assert_string_equal(err, "Le champ « Pointure » doit être compris entre 20 et 50.");
    free(err);
    assert_ptr_equal(fields_find_alias(cat, "taille de bottes"), fields_find(cat, "pointure"));

    dup.key = strdup("pointure");
    dup.label = strdup("Autre");
    assert_int_equal(fields_catalogue_add(cat, &dup, &err), -1);
    assert_string_equal(err, "le champ « pointure » est déjà déclaré");
    free(err);

    dup.key = strdup("Mauvaise clé");
    dup.label = strdup("X");
    assert_int_equal(fields_catalogue_add(cat, &dup, &err), -1);
    free(err);

    dup.key = strdup("motif");
    dup.label = strdup("Motif");
    dup.pattern = strdup("[a-");
    assert_int_equal(fields_catalogue_add(cat, &dup, &err), -1);
    assert_non_null(strstr(err, "expression régulière"));
    free(err);

    json = fields_to_json(cat);
    assert_int_equal(json_array_size(json), cat->count);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json, cat->count - 1), "plugin")),
        "bottes");
    json_decref(json);
    fields_catalogue_free(cat);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(core_fields_in_display_order),
        cmocka_unit_test(core_fields_validated),
        cmocka_unit_test(plugin_field_added),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
