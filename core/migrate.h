/*
 * Schema migrations. The files migrations/NNNN_name.sql are compiled into the
 * binary (see tools/embed-migrations.cmake) and applied in order, each in its
 * own transaction, and recorded in the table schema_migration. Plugins bring
 * their own migrations, recorded under the plugin's name.
 */
#ifndef LICOL_MIGRATE_H
#define LICOL_MIGRATE_H

#include "db.h"

struct migration {
    int number;
    const char *name;
    const char *sql;
};

extern const struct migration migrate_embedded[];
extern const int migrate_embedded_count;

/* Highest core schema version this binary knows. */
int migrate_latest_version(void);

/* Returns the core schema version recorded in the database (0 when none). */
int migrate_current_version(struct db *db);

/* Applies every pending core migration. Returns the number applied, or -1
 * with *err set to a French message (caller frees). A database whose version
 * is newer than this binary's is rejected without any change. */
int migrate_apply(struct db *db, char **err);

/* Applies one migration owned by a plugin ("scope") once. The SQL text is
 * the file's content. Returns 1 when applied, 0 when already applied, -1 on
 * error with *err set. */
int migrate_apply_scoped(struct db *db, const char *scope, int number, const char *name,
                         const char *sql, char **err);

#endif
