/*
 * Shared pieces of the licol command-line program. Every subcommand writes
 * its messages for club administrators in French on stdout (results) and
 * stderr (errors), and returns one of the exit codes below.
 */
#ifndef LICOL_CLI_H
#define LICOL_CLI_H

#include <stddef.h>

#include "config.h"
#include "db.h"

enum cli_exit {
    CLI_OK = 0,
    CLI_FAILED = 1,       /* the command could not do its work */
    CLI_USAGE = 2,        /* wrong options */
    CLI_DATABASE = 3,     /* the database cannot be opened or is too new */
    CLI_INPUT_REJECTED = 4, /* the imported file was rejected as a whole */
};

/* Directory holding web/, scripts/ and plugins/: $LICOL_HOME, else the
 * current directory when it has scripts/ and web/, else the source tree. */
void cli_base_dir(char *out, size_t size);

/* Defaults, then config_path (or etc/licol.conf when NULL, if present),
 * then the environment. Returns 0 or -1 with *err (French). */
int cli_load_config(struct config *cfg, const char *config_path, char **err);

/* Opens cfg->db_path, creating its directory; applies migrations when asked.
 * Prints a French error and returns NULL on failure. */
struct db *cli_open_db(const struct config *cfg, int apply_migrations);

/* licol import ... (argv[0] is "import"). */
int cli_import(int argc, char **argv);

#endif
