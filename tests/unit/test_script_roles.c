/*
 * The shipped scripts/roles.lua, checked against a table of
 * (roles, action, target) -> expected decision, through script_can in the
 * real sandbox.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "log.h"
#include "test_script_util.h"

enum target_kind { NONE, SELF, FAMILY, OTHER, GRANT_GERANT, GRANT_CLIENT };

#define G SCRIPT_ROLE_GERANT
#define E SCRIPT_ROLE_EMPLOYE
#define C SCRIPT_ROLE_CLIENT
#define V SCRIPT_ROLE_VISITEUR
#define A SCRIPT_ROLE_COMPTABLE
#define P SCRIPT_ROLE_PROPRIETAIRE

static const struct {
    unsigned roles;
    const char *action;
    enum target_kind target;
    int expected;
} cases[] = {
    /* Gérant: everything. */
    {G, "settings.update", NONE, 1},
    {G, "tokens.manage", NONE, 1},
    {G, "rider.roles.update", GRANT_GERANT, 1},
    {G, "finance.update", NONE, 1},
    {G, "rider.delete", OTHER, 1},
    /* Employé: riders, families, imports, mail; not settings, finance,
     * tokens, nor the gerant role. */
    {E, "riders.list", NONE, 1},
    {E, "rider.read", OTHER, 1},
    {E, "rider.create", NONE, 1},
    {E, "rider.update", OTHER, 1},
    {E, "rider.delete", OTHER, 1},
    {E, "rider.roles.update", GRANT_CLIENT, 1},
    {E, "rider.roles.update", GRANT_GERANT, 0},
    {E, "family.update", OTHER, 1},
    {E, "import.run", NONE, 1},
    {E, "import.read", NONE, 1},
    {E, "import.undo", NONE, 1},
    {E, "mail.send", NONE, 1},
    {E, "outbox.read", NONE, 1},
    {E, "consent.manage", OTHER, 1},
    {E, "registrations.manage", NONE, 1},
    {E, "scripts.status", NONE, 1},
    {E, "settings.read", NONE, 0},
    {E, "settings.update", NONE, 0},
    {E, "finance.read", NONE, 0},
    {E, "finance.update", NONE, 0},
    {E, "tokens.manage", NONE, 0},
    {E, "horses.read", NONE, 0},
    /* Comptable: reads riders and finances. */
    {A, "riders.list", NONE, 1},
    {A, "rider.read", OTHER, 1},
    {A, "finance.read", NONE, 1},
    {A, "finance.update", NONE, 1},
    {A, "rider.update", OTHER, 0},
    {A, "import.run", NONE, 0},
    {A, "settings.read", NONE, 0},
    /* Client: own profile and family members only. */
    {C, "rider.read", SELF, 1},
    {C, "rider.update", SELF, 1},
    {C, "rider.read", FAMILY, 1},
    {C, "rider.update", FAMILY, 1},
    {C, "family.update", SELF, 1},
    {C, "rider.read", OTHER, 0},
    {C, "rider.update", OTHER, 0},
    {C, "rider.read", NONE, 0},
    {C, "riders.list", NONE, 0},
    {C, "rider.delete", SELF, 0},
    {C, "rider.roles.update", SELF, 0},
    {C, "horses.read", NONE, 0},
    {C, "mail.send", NONE, 0},
    /* Propriétaire: as Client plus horses. */
    {P, "rider.read", FAMILY, 1},
    {P, "horses.read", NONE, 1},
    {P, "rider.read", OTHER, 0},
    {P, "finance.read", NONE, 0},
    /* Visiteur: own profile only. */
    {V, "rider.read", SELF, 1},
    {V, "rider.update", SELF, 1},
    {V, "rider.read", FAMILY, 0},
    {V, "rider.read", OTHER, 0},
    {V, "riders.list", NONE, 0},
    /* Several roles: the union. */
    {C | A, "finance.read", NONE, 1},
    {C | A, "rider.update", FAMILY, 1},
    {V | P, "horses.read", NONE, 1},
    /* No role, unknown action. */
    {0, "rider.read", SELF, 0},
    {G, "rider.fly", NONE, 0},
};

static void fill_target(enum target_kind kind, struct script_target *t)
{
    memset(t, 0, sizeof(*t));
    t->person_id = 2;
    switch (kind) {
    case SELF:
        t->person_id = 1;
        t->is_self = 1;
        break;
    case FAMILY:
        t->is_family = 1;
        break;
    case GRANT_GERANT:
        t->role = "gerant";
        break;
    case GRANT_CLIENT:
        t->role = "client";
        break;
    default:
        break;
    }
}

static void roles_table_decisions(void **state)
{
    struct test_tree tree;
    struct script_engine *engine;
    struct script_version *v;
    char *err = NULL;

    log_set_level("off");
    tree_init(&tree);
    tree_copy(&tree, "scripts/roles.lua", "scripts/roles.lua");
    engine = tree_engine(&tree, &err);
    if (engine == NULL)
        fail_msg("roles.lua does not load: %s", err);
    v = script_engine_acquire(engine);

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct script_subject subject = {.person_id = 1, .roles = cases[i].roles};
        struct script_target target;
        char *reason = NULL;
        int got;

        fill_target(cases[i].target, &target);
        got = script_can(script_version_state(v), &subject, cases[i].action,
                         cases[i].target == NONE ? NULL : &target, &reason);
        if (got != cases[i].expected)
            fail_msg("case %zu: roles 0x%x, %s, target %d: got %d, expected %d", i,
                     cases[i].roles, cases[i].action, cases[i].target, got, cases[i].expected);
        if (!got)
            assert_non_null(reason); /* every denial comes with a French reason */
        free(reason);
    }
    assert_null(script_state_last_error(script_version_state(v)));

    script_version_release(v);
    script_engine_free(engine);
    tree_free(&tree);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(roles_table_decisions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
