/*
 * Helpers shared by the script engine tests. They create a temporary tree
 * with scripts/ and plugins/, write files the way editors save them (a
 * temporary file renamed over the old one), and create engines with short
 * limits so budget and memory tests run fast.
 */
#ifndef LICOL_TEST_SCRIPT_UTIL_H
#define LICOL_TEST_SCRIPT_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "script.h"
#include "util.h"

struct test_tree {
    char root[64];
    char scripts[96];
    char plugins[96];
};

__attribute__((unused)) static void tree_rm(const char *path)
{
    char *cmd = str_printf("rm -rf '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", path);
    free(cmd);
}

__attribute__((unused)) static void tree_mkdirs(const char *path)
{
    char *cmd = str_printf("mkdir -p '%s'", path);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot create %s\n", path);
    free(cmd);
}

__attribute__((unused)) static void tree_init(struct test_tree *t)
{
    strcpy(t->root, "/tmp/licol-test-script-XXXXXX");
    if (mkdtemp(t->root) == NULL)
        abort();
    snprintf(t->scripts, sizeof(t->scripts), "%s/scripts", t->root);
    snprintf(t->plugins, sizeof(t->plugins), "%s/plugins", t->root);
    tree_mkdirs(t->scripts);
    tree_mkdirs(t->plugins);
}

__attribute__((unused)) static void tree_free(struct test_tree *t)
{
    tree_rm(t->root);
}

/* Writes root/rel atomically: a temporary file, then rename(2). */
__attribute__((unused)) static void tree_write(const struct test_tree *t, const char *rel, const char *text)
{
    char *path = str_printf("%s/%s", t->root, rel);
    char *dir = strdup(path);
    char *tmp;
    FILE *f;

    *strrchr(dir, '/') = '\0';
    tree_mkdirs(dir);
    tmp = str_printf("%s/.edit.tmp", dir);
    f = fopen(tmp, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
        abort();
    free(path);
    free(tmp);
    free(dir);
}

__attribute__((unused)) static void tree_remove(const struct test_tree *t, const char *rel)
{
    char *path = str_printf("%s/%s", t->root, rel);
    unlink(path);
    free(path);
}

/* Copies a file of the repository (relative to LICOL_SOURCE_DIR) into the
 * tree. */
__attribute__((unused)) static void tree_copy(const struct test_tree *t, const char *from_repo, const char *rel)
{
    const char *src = getenv("LICOL_SOURCE_DIR");
    char *path = str_printf("%s/%s", src ? src : LICOL_SOURCE_DIR, from_repo);
    FILE *f = fopen(path, "r");
    struct buf b;
    char chunk[4096];
    size_t n;

    if (f == NULL) {
        fprintf(stderr, "cannot open %s\n", path);
        abort();
    }
    buf_init(&b, 0);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    buf_terminate(&b);
    tree_write(t, rel, b.data);
    buf_free(&b);
    free(path);
}

/* The smallest valid roles.lua. */
#define ROLES_ALLOW_GERANT                                                                         \
    "return { can = function(s, a, t) return s.roles.gerant == true end }\n"

__attribute__((unused)) static struct script_engine *tree_engine(const struct test_tree *t, char **err)
{
    struct script_config cfg = {
        .scripts_dir = t->scripts,
        .plugins_dir = t->plugins,
        .memory_limit = 8u << 20,
        .budget_ms = 100,
        .debounce_ms = 30,
        .poll_ms = 60000,
    };
    return script_engine_new(&cfg, err);
}

#endif
