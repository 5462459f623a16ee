/*
 * Script engine benchmark: the cost of one permission check (script_can on
 * the shipped scripts/roles.lua) and of mapping one 22-column federation
 * row through a Lua mapping function that calls licol.norm helpers
 * (bench/ffe_map.lua). Not a test: run it by hand,
 *
 *   build/bench/bench_script [iterations]
 *
 * and record the output in docs/benchmarks.md.
 */
#include <lauxlib.h>
#include <lua.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "script.h"
#include "util.h"

#define COLUMNS 22

static const char *const headers[COLUMNS] = {
    "Numéro licence", "Nom", "Prénom", "Date de naissance", "Sexe", "Catégorie", "Type licence",
    "Millésime", "Date de saisie", "Galop", "Adresse", "Complément adresse", "Code postal",
    "Ville", "Pays", "Téléphone", "Portable", "Email", "Nom du responsable légal",
    "Prénom du responsable légal", "Email du responsable légal", "Numéro club",
};

/* Synthetic rows in the shapes real files show: lower-case names, a
 * postcode that lost its leading zero, phones in several forms, two
 * addresses in one e-mail field, a minor with a guardian. */
static const char *const rows[][COLUMNS] = {
    {"1234567A", "martin--durand", "jeanne", "02/03/2012", "F", "Junior", "Licence Pratiquant",
     "2026", "05/09/2025", "Galop 3", "12 rue des Écuries", "", "1000", "Bourg-en-Bresse",
     "France", "04.74.12.34.56", "612345678", "famille.martin@example.fr; p.durand@example.fr",
     "MARTIN", "Claire", "famille.martin@example.fr", "9000007"},
    {"7654321b", "DE LA FONTAINE", "Jean-pierre", "1975-11-30", "Homme", "Senior",
     "Licence Compétition", "2026", "2025-10-01", "G7", "3 chemin du Moulin", "Bâtiment B",
     "69003", "Lyon", "FRA", "+33 4 78 00 00 00", "06 98 76 54 32", "JP.Fontaine@Example.FR",
     "", "", "", "9000007"},
    {"en cours", "o'neill", "Sean", "00/00/0000", "M", "Junior", "Licence Pratiquant", "2026",
     "12/09/2025", "Galop Poney de Bronze", "1 place du Marché", "", "44000", "Nantes",
     "Irlande", "0033240000000", "", "", "O'NEILL", "Mary", "mary.oneill@example.ie",
     "9000007"},
};

#define ROW_COUNT (sizeof(rows) / sizeof(rows[0]))

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void copy_file(const char *from, const char *to)
{
    char *cmd = str_printf("mkdir -p \"$(dirname '%s')\" && cp '%s' '%s'", to, from, to);
    if (system(cmd) != 0) {
        fprintf(stderr, "cannot copy %s\n", from);
        exit(1);
    }
    free(cmd);
}

static void report(const char *what, long n, double seconds)
{
    printf("%-34s %10ld calls %8.3f s %9.0f ns/call %11.0f calls/s\n", what, n, seconds,
           seconds * 1e9 / (double)n, (double)n / seconds);
}

static void bench_can(struct script_state *st, long n)
{
    struct script_subject employe = {.person_id = 10, .roles = SCRIPT_ROLE_EMPLOYE};
    struct script_subject client = {.person_id = 11, .roles = SCRIPT_ROLE_CLIENT};
    struct script_target family = {.person_id = 12, .is_family = 1};
    long allowed = 0;
    double t0;

    t0 = now_s();
    for (long i = 0; i < n; i++)
        allowed += script_can(st, &employe, "rider.update", NULL, NULL);
    report("script_can (same subject)", n, now_s() - t0);

    t0 = now_s();
    for (long i = 0; i < n; i++)
        allowed += script_can(st, &client, "rider.read", &family, NULL);
    report("script_can (client, family target)", n, now_s() - t0);

    t0 = now_s();
    for (long i = 0; i < n; i++)
        allowed += script_can(st, (i & 1) ? &client : &employe, "settings.update", NULL, NULL);
    report("script_can (alternating subjects)", n, now_s() - t0);

    if (allowed != 2 * n) {
        fprintf(stderr, "unexpected decisions: %ld allowed\n", allowed);
        exit(1);
    }
}

static void bench_map(struct script_state *st, long n)
{
    lua_State *L = script_state_lua(st);
    int row_ref;
    double t0;

    if (script_module_count(st, SCRIPT_MOD_FORMATS) != 1) {
        fprintf(stderr, "the mapping fixture did not load\n");
        exit(1);
    }
    lua_createtable(L, 0, COLUMNS);
    row_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    t0 = now_s();
    for (long i = 0; i < n; i++) {
        const char *const *row = rows[i % ROW_COUNT];

        script_push_function(st, SCRIPT_MOD_FORMATS, 0, SCRIPT_FORMAT_MAP);
        lua_rawgeti(L, LUA_REGISTRYINDEX, row_ref);
        for (int c = 0; c < COLUMNS; c++) {
            script_push_string(st, row[c], strlen(row[c]));
            lua_setfield(L, -2, headers[c]);
        }
        if (script_call(st, 1, 1, "bench map") != 0) {
            fprintf(stderr, "map failed: %s\n", script_state_last_error(st));
            exit(1);
        }
        lua_pop(L, 1);
    }
    report("map one 22-column row", n, now_s() - t0);
    luaL_unref(L, LUA_REGISTRYINDEX, row_ref);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    char root[] = "/tmp/licol-bench-script-XXXXXX";
    const char *src = getenv("LICOL_SOURCE_DIR") ? getenv("LICOL_SOURCE_DIR") : LICOL_SOURCE_DIR;
    struct script_config cfg = {0};
    struct script_engine *engine;
    struct script_version *v;
    char *err = NULL, *from, *to, *scripts;

    log_set_level("warn");
    if (n <= 0 || mkdtemp(root) == NULL)
        return 1;
    from = str_printf("%s/scripts/roles.lua", src);
    to = str_printf("%s/scripts/roles.lua", root);
    copy_file(from, to);
    free(from);
    free(to);
    from = str_printf("%s/bench/ffe_map.lua", src);
    to = str_printf("%s/scripts/formats/ffe.lua", root);
    copy_file(from, to);
    free(from);
    free(to);

    scripts = str_printf("%s/scripts", root);
    cfg.scripts_dir = scripts;
    engine = script_engine_new(&cfg, &err);
    if (engine == NULL) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    v = script_engine_acquire(engine);

    printf("script engine benchmark, %ld iterations per line\n", n);
    bench_can(script_version_state(v), n);
    bench_map(script_version_state(v), n / 10 > 0 ? n / 10 : 1);

    script_version_release(v);
    script_engine_free(engine);
    from = str_printf("rm -rf '%s'", root);
    if (system(from) != 0)
        fprintf(stderr, "cannot remove %s\n", root);
    free(from);
    free(scripts);
    return 0;
}
