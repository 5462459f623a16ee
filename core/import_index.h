/*
 * Secondary indexes dropped at the start of a large import and built again
 * before its commit, inside the same transaction (see import_index.c).
 */
#ifndef LICOL_IMPORT_INDEX_H
#define LICOL_IMPORT_INDEX_H

#include "db.h"

#include <stddef.h>

/* Below this many estimated rows, an import keeps every index. */
#define IMPORT_DEFER_INDEX_MIN_ROWS 20000
/* A table's indexes are set aside when the file brings at least
 * 1/IMPORT_DEFER_INDEX_RATIO of its current row count. */
#define IMPORT_DEFER_INDEX_RATIO 5
/* File bytes per row for the estimate when the file's line count is not
 * known. Federation and Céléris rows are 150 to 250 bytes, so this
 * overestimates the rows. */
#define IMPORT_BYTES_PER_ROW_ESTIMATE 120
/* Page cache, in KiB, while the indexes are built: also the size of each
 * sorted run that CREATE INDEX keeps in memory. */
#define IMPORT_REBUILD_CACHE_KIB 4096

struct import_indexes {
    size_t count;
    char **names;
    char **sql; /* the CREATE INDEX statements, from sqlite_schema */
};

/* Drops the secondary indexes worth rebuilding for an import of about
 * estimated_rows rows and fills set with them. Must run inside the
 * import's transaction, begun with temp_store = FILE: SQLite sizes its
 * statement journals and sorts by the setting in force when the
 * transaction starts, and in memory the journal of a DROP INDEX and the
 * sorted runs of a CREATE INDEX grow with the table. Returns 0, or -1 on
 * a database error. */
int import_indexes_defer(struct db *db, long long estimated_rows, struct import_indexes *set);

/* Creates the indexes of set again. Returns an SQLite result code; on an
 * error, *err is SQLite's message in French (caller frees). */
int import_indexes_rebuild(struct db *db, struct import_indexes *set, char **err);

void import_indexes_free(struct import_indexes *set);

#endif
