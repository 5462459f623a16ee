/*
 * Helpers shared by the subcommands of the licol program: loading the
 * configuration and opening the database with French error messages.
 */
#include "cli.h"
#include "log.h"
#include "migrate.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Picks the directory that contains web/, scripts/ and plugins/: $LICOL_HOME,
 * else the current directory when it has them, else the source tree the
 * binary was built from. */
void cli_base_dir(char *out, size_t size)
{
    const char *home = getenv("LICOL_HOME");
    struct stat st;

    if (home && *home) {
        snprintf(out, size, "%s", home);
        return;
    }
    if (stat("scripts", &st) == 0 && S_ISDIR(st.st_mode) && stat("web", &st) == 0 &&
        S_ISDIR(st.st_mode)) {
        if (getcwd(out, size))
            return;
    }
    snprintf(out, size, "%s", LICOL_SOURCE_DIR);
}

int cli_load_config(struct config *cfg, const char *config_path, char **err)
{
    char base[1024], default_path[1200];

    cli_base_dir(base, sizeof(base));
    config_defaults(cfg, base);
    if (config_path) {
        if (config_load_file(cfg, config_path, 1, err) < 0)
            return -1;
    } else {
        snprintf(default_path, sizeof(default_path), "%s/etc/licol.conf", base);
        if (config_load_file(cfg, default_path, 0, err) < 0)
            return -1;
    }
    if (config_load_env(cfg, err) < 0)
        return -1;
    if (log_set_level(cfg->log_level) < 0) {
        *err = str_printf("Niveau de journal « %s » inconnu : debug, info, warn ou error.",
                          cfg->log_level);
        return -1;
    }
    return 0;
}

struct db *cli_open_db(const struct config *cfg, int apply_migrations)
{
    char *err = NULL;
    char dir[1024];
    char *slash;
    struct db *db;

    snprintf(dir, sizeof(dir), "%s", cfg->db_path);
    slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        mkdir(dir, 0750);
    }
    db = db_open(cfg->db_path, &err);
    if (!db) {
        fprintf(stderr, "Erreur : %s\n", err);
        free(err);
        return NULL;
    }
    if (apply_migrations && migrate_apply(db, &err) < 0) {
        fprintf(stderr, "Erreur : %s\n", err);
        free(err);
        db_close(db);
        return NULL;
    }
    return db;
}

