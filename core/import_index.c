/*
 * Secondary indexes set aside during a large import.
 *
 * Every person row an import inserts goes into the person table and into
 * each of its indexes, at a random place of each index. Once an index no
 * longer fits in the page cache, every such insert reads a page from the
 * file. For a large file it is cheaper to drop the indexes the import never
 * reads, insert the rows, and build the indexes again before the commit:
 * CREATE INDEX sorts the keys and writes each page once.
 *
 * Both happen inside the import's transaction, so a rolled-back or killed
 * import leaves the schema as it was, and other connections keep reading
 * the old indexes until the commit.
 */
#include "import_index.h"
#include "log.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

/* Tables whose indexes an import may set aside, with the query of their
 * size. Only person's indexes take keys in random order (e-mail, names,
 * birth date). The import appends to the indexes of person_role,
 * licence and audit_log in key order (the person id, the season, the run
 * id), which is cheap, while rebuilding them would sort tables that grow
 * with every season. */
static const struct {
    const char *table;
    const char *size_sql;
} import_tables[] = {
    {"person", "SELECT MAX(id) FROM person"},
};

/* The import looks people up by match_key while it runs. The licence
 * number index is UNIQUE, and unique indexes always stay. */
static const char *const kept_indexes[] = {"person_match_key"};

static int is_kept(const char *name)
{
    for (size_t i = 0; i < sizeof(kept_indexes) / sizeof(kept_indexes[0]); i++) {
        if (!strcmp(name, kept_indexes[i]))
            return 1;
    }
    return 0;
}

static long long table_size(struct db *db, const char *sql)
{
    sqlite3_stmt *stmt = db_stmt(db, sql);
    long long size = -1;

    if (!stmt)
        return -1;
    if (sqlite3_step(stmt) == SQLITE_ROW)
        size = sqlite3_column_int64(stmt, 0);
    sqlite3_reset(stmt);
    return size;
}

static int remember(struct import_indexes *set, const char *name, const char *sql)
{
    char **names = realloc(set->names, (set->count + 1) * sizeof(*names));
    char **sqls;

    if (!names)
        return -1;
    set->names = names;
    sqls = realloc(set->sql, (set->count + 1) * sizeof(*sqls));
    if (!sqls)
        return -1;
    set->sql = sqls;
    set->names[set->count] = strdup(name);
    set->sql[set->count] = strdup(sql);
    if (!set->names[set->count] || !set->sql[set->count]) {
        free(set->names[set->count]);
        free(set->sql[set->count]);
        return -1;
    }
    set->count++;
    return 0;
}

/* Lists the droppable indexes of one table: declared by a CREATE INDEX
 * (not a table's own UNIQUE or PRIMARY KEY), not unique, and not read by
 * the import. */
static int collect(struct db *db, const char *table, struct import_indexes *set)
{
    sqlite3_stmt *stmt = db_stmt(
        db, "SELECT s.name, s.sql FROM sqlite_schema AS s"
            " JOIN pragma_index_list(?1) AS l ON l.name = s.name"
            " WHERE s.type = 'index' AND s.sql IS NOT NULL AND l.\"unique\" = 0"
            " ORDER BY s.name");
    int rc;

    if (!stmt)
        return -1;
    sqlite3_bind_text(stmt, 1, table, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(stmt, 0);
        const char *sql = (const char *)sqlite3_column_text(stmt, 1);
        if (!is_kept(name) && remember(set, name, sql) < 0) {
            sqlite3_reset(stmt);
            return -1;
        }
    }
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? 0 : -1;
}

int import_indexes_defer(struct db *db, long long estimated_rows, struct import_indexes *set)
{
    memset(set, 0, sizeof(*set));
    if (estimated_rows < IMPORT_DEFER_INDEX_MIN_ROWS)
        return 0;

    for (size_t t = 0; t < sizeof(import_tables) / sizeof(import_tables[0]); t++) {
        long long size = table_size(db, import_tables[t].size_sql);
        if (size < 0)
            return -1;
        /* Rebuilding costs per row of the whole table, inserting costs per
         * incoming row. In 100,000-row runs of bench/import, an insert
         * cost about 2.4 us per index and a rebuild about 0.5 us per row
         * and index, so the rebuild wins from about a fifth. */
        if (estimated_rows * IMPORT_DEFER_INDEX_RATIO < size)
            continue;
        if (collect(db, import_tables[t].table, set) < 0)
            return -1;
    }

    for (size_t i = 0; i < set->count; i++) {
        char *sql = sqlite3_mprintf("DROP INDEX \"%w\"", set->names[i]);
        int rc = sql ? db_exec(db, sql) : SQLITE_NOMEM;
        sqlite3_free(sql);
        if (rc != SQLITE_OK)
            return -1;
    }
    if (set->count > 0)
        log_info("import", "%zu indexes set aside until the end of the import (about %lld rows)",
                 set->count, estimated_rows);
    return 0;
}

int import_indexes_rebuild(struct db *db, struct import_indexes *set, char **err)
{
    int rc = SQLITE_OK;

    long long cache_size = 0;
    struct timespec start, end;
    sqlite3_stmt *stmt;
    char *sql;

    *err = NULL;
    if (set->count == 0)
        return SQLITE_OK;
    stmt = db_stmt(db, "PRAGMA cache_size");
    if (stmt && sqlite3_step(stmt) == SQLITE_ROW)
        cache_size = sqlite3_column_int64(stmt, 0);
    if (stmt)
        sqlite3_reset(stmt);

    /* CREATE INDEX sorts in memory up to the page cache's size, then
     * spills sorted runs to temporary files (the caller has set
     * temp_store = FILE). The page cache is shrunk first and its memory
     * handed back, so that the sort does not add its own buffer on top of
     * a full cache. */
    sql = sqlite3_mprintf("PRAGMA cache_size = %d", IMPORT_REBUILD_CACHE_KIB * -1);
    db_exec(db, sql);
    sqlite3_free(sql);
#ifdef __GLIBC__
    malloc_trim(0);
#endif
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (size_t i = 0; i < set->count && rc == SQLITE_OK; i++)
        rc = db_exec(db, set->sql[i]);
    clock_gettime(CLOCK_MONOTONIC, &end);
    if (rc == SQLITE_OK)
        log_info("import", "%zu indexes built again in %ld ms", set->count,
                 (long)((end.tv_sec - start.tv_sec) * 1000 +
                        (end.tv_nsec - start.tv_nsec) / 1000000));
    else
        *err = strdup(db_error_fr(db)); /* before the next statement resets it */
    if (cache_size != 0) {
        sql = sqlite3_mprintf("PRAGMA cache_size = %lld", cache_size);
        db_exec(db, sql);
        sqlite3_free(sql);
    }
    return rc;
}

void import_indexes_free(struct import_indexes *set)
{
    for (size_t i = 0; i < set->count; i++) {
        free(set->names[i]);
        free(set->sql[i]);
    }
    free(set->names);
    free(set->sql);
    memset(set, 0, sizeof(*set));
}
