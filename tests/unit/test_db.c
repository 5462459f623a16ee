/* Unit tests for the database layer and migrations, on a real SQLite file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "migrate.h"

static char *temp_db_path(void)
{
    char *path = strdup("/tmp/licol-test-db-XXXXXX");
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    return path;
}

static void remove_db(const char *path)
{
    char side[512];
    unlink(path);
    snprintf(side, sizeof(side), "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", path);
    unlink(side);
}

static void migrate_fresh_database(void **state)
{
    char *path = temp_db_path();
    char *err = NULL;
    struct db *db = db_open(path, &err);

    assert_non_null(db);
    assert_int_equal(migrate_current_version(db), 0);
    assert_int_equal(migrate_apply(db, &err), migrate_embedded_count);
    assert_null(err);
    assert_int_equal(migrate_current_version(db), migrate_latest_version());
    assert_int_equal(migrate_apply(db, &err), 0);
    db_close(db);
    remove_db(path);
    free(path);
}

static void migrate_rejects_newer_database(void **state)
{
    char *path = temp_db_path();
    char *err = NULL;
    struct db *db = db_open(path, &err);

    assert_int_equal(migrate_apply(db, &err), migrate_embedded_count);
    assert_int_equal(db_exec(db, "INSERT INTO schema_migration VALUES ('core', 9999, 'future', 'x')"),
                     0);
    assert_int_equal(migrate_apply(db, &err), -1);
    assert_non_null(err);
    assert_non_null(strstr(err, "plus récent"));
    free(err);
    db_close(db);
    remove_db(path);
    free(path);
}

static void migrate_retries_unrecorded_number(void **state)
{
    char *path = temp_db_path();
    char *err = NULL;
    struct db *db = db_open(path, &err);
    const struct migration *first = &migrate_embedded[0];

    assert_int_equal(migrate_apply(db, &err), migrate_embedded_count);
    /* Forget the first migration as if it had been merged after the others,
     * and drop what it created. */
    assert_int_equal(db_exec(db, "PRAGMA foreign_keys = OFF"), 0);
    assert_int_equal(db_exec(db, "DELETE FROM schema_migration WHERE number = 1"), 0);
    assert_int_equal(db_exec(db, "DROP TABLE galop_level"), 0);
    assert_int_equal(migrate_apply(db, &err), -1); /* 0001 fails: person exists */
    assert_non_null(err);
    assert_non_null(strstr(err, first->name));
    free(err);
    db_close(db);
    remove_db(path);
    free(path);
}

static void open_sets_wal_and_foreign_keys(void **state)
{
    char *path = temp_db_path();
    char *err = NULL;
    struct db *db = db_open(path, &err);
    sqlite3_stmt *stmt;

    assert_non_null(db);
    stmt = db_stmt(db, "PRAGMA journal_mode");
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(stmt, 0), "wal");
    stmt = db_stmt(db, "PRAGMA foreign_keys");
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(stmt, 0), 1);
    db_close(db);
    remove_db(path);
    free(path);
}

static void open_reports_unwritable_path(void **state)
{
    char *err = NULL;
    struct db *db = db_open("/nonexistent-dir/licol.db", &err);

    assert_null(db);
    assert_non_null(err);
    assert_non_null(strstr(err, "/nonexistent-dir/licol.db"));
    free(err);
}

static void statement_cache_reuses(void **state)
{
    char *path = temp_db_path();
    char *err = NULL;
    struct db *db = db_open(path, &err);
    static const char *const sql = "SELECT ?1 + 1";
    sqlite3_stmt *first = db_stmt(db, sql);
    sqlite3_stmt *second;

    sqlite3_bind_int(first, 1, 41);
    assert_int_equal(sqlite3_step(first), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(first, 0), 42);
    second = db_stmt(db, sql);
    assert_ptr_equal(first, second);
    db_close(db);
    remove_db(path);
    free(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(migrate_fresh_database),
        cmocka_unit_test(migrate_rejects_newer_database),
        cmocka_unit_test(migrate_retries_unrecorded_number),
        cmocka_unit_test(open_sets_wal_and_foreign_keys),
        cmocka_unit_test(open_reports_unwritable_path),
        cmocka_unit_test(statement_cache_reuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
