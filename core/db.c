/*
 * SQLite connection set-up and the prepared-statement cache. The cache is a
 * small open-addressing table keyed on the SQL string's address, which is
 * stable because callers pass literals.
 */
#include "db.h"
#include "log.h"
#include "util.h"

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DB_CACHE_SLOTS 512 /* power of two; more statements than this are not cached */

struct cached_stmt {
    const char *sql;
    sqlite3_stmt *stmt;
};

struct db {
    sqlite3 *handle;
    char *path;
    struct cached_stmt cache[DB_CACHE_SLOTS];
};

/* Process-wide settings, applied before SQLite initialises itself. Memory
 * statistics are off: Licol never reads them, and keeping them takes a
 * global mutex on every allocation, shared by all connections' threads. */
static void configure_sqlite(void)
{
    /* SQLITE_MISUSE when SQLite was already initialised: harmless. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static pthread_once_t configure_once = PTHREAD_ONCE_INIT;

struct db *db_open(const char *path, char **err)
{
    struct db *db = calloc(1, sizeof(*db));
    int rc;

    pthread_once(&configure_once, configure_sqlite);
    *err = NULL;
    if (!db) {
        *err = strdup("mémoire insuffisante");
        return NULL;
    }
    db->path = strdup(path);
    rc = sqlite3_open_v2(path, &db->handle,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        *err = str_printf("Impossible d'ouvrir la base de données %s : %s. Vérifiez que le "
                            "dossier existe et que Licol a le droit d'y écrire.",
                            path, db->handle ? sqlite3_errmsg(db->handle) : sqlite3_errstr(rc));
        db_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db->handle, DB_BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(db->handle, 1);

    rc = db_exec(db, "PRAGMA journal_mode = WAL;"
                     "PRAGMA synchronous = NORMAL;"
                     "PRAGMA foreign_keys = ON;"
                     "PRAGMA temp_store = MEMORY;");
    if (rc != SQLITE_OK) {
        *err = str_printf("La base de données %s est illisible : %s. Est-ce bien un fichier "
                            "Licol ?",
                            path, sqlite3_errmsg(db->handle));
        db_close(db);
        return NULL;
    }
    return db;
}

void db_close(struct db *db)
{
    if (!db)
        return;
    for (int i = 0; i < DB_CACHE_SLOTS; i++) {
        if (db->cache[i].stmt)
            sqlite3_finalize(db->cache[i].stmt);
    }
    if (db->handle) {
        int rc = sqlite3_close(db->handle);
        if (rc != SQLITE_OK)
            log_warn("db", "close of %s failed: %s", db->path, sqlite3_errstr(rc));
    }
    free(db->path);
    free(db);
}

sqlite3 *db_handle(struct db *db)
{
    return db->handle;
}

const char *db_path(struct db *db)
{
    return db->path;
}

sqlite3_stmt *db_stmt(struct db *db, const char *sql)
{
    uintptr_t hash = ((uintptr_t)sql >> 3) * 2654435761u;
    sqlite3_stmt *stmt = NULL;

    for (int probe = 0; probe < 16; probe++) {
        struct cached_stmt *slot = &db->cache[(hash + (uintptr_t)probe) & (DB_CACHE_SLOTS - 1)];
        if (slot->sql == sql) {
            sqlite3_reset(slot->stmt);
            sqlite3_clear_bindings(slot->stmt);
            return slot->stmt;
        }
        if (slot->sql == NULL) {
            if (sqlite3_prepare_v3(db->handle, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL) !=
                SQLITE_OK) {
                log_error("db", "prepare failed: %s (sql: %.120s)", sqlite3_errmsg(db->handle), sql);
                return NULL;
            }
            slot->sql = sql;
            slot->stmt = stmt;
            return stmt;
        }
    }
    log_error("db", "statement cache full; raise DB_CACHE_SLOTS (sql: %.120s)", sql);
    return NULL;
}

int db_exec(struct db *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db->handle, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK) {
        log_error("db", "exec failed: %s (sql: %.120s)", msg ? msg : sqlite3_errstr(rc), sql);
        sqlite3_free(msg);
    }
    return rc;
}

int db_begin(struct db *db)
{
    return db_exec(db, "BEGIN IMMEDIATE");
}

int db_commit(struct db *db)
{
    return db_exec(db, "COMMIT");
}

int db_rollback(struct db *db)
{
    if (sqlite3_get_autocommit(db->handle))
        return SQLITE_OK;
    return db_exec(db, "ROLLBACK");
}

int db_count(struct db *db, const char *sql, const char *text, long long number)
{
    sqlite3_stmt *stmt = db_stmt(db, sql);
    int count = 0;

    if (!stmt)
        return 0;
    sqlite3_bind_text(stmt, 1, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(stmt, 2, number);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        count = sqlite3_column_int(stmt, 0);
    sqlite3_reset(stmt);
    return count;
}

int db_bind_text_or_null(sqlite3_stmt *stmt, int index, const char *value)
{
    if (!value || !*value)
        return sqlite3_bind_null(stmt, index);
    return sqlite3_bind_text(stmt, index, value, -1, SQLITE_TRANSIENT);
}

void db_now(char *buf, size_t size)
{
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

const char *db_error_fr(struct db *db)
{
    switch (sqlite3_errcode(db->handle) & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return "la base de données est occupée par un autre traitement (un import en cours ?) ; "
               "réessayez quand il sera terminé";
    case SQLITE_FULL:
        return "le disque est plein ; libérez de la place puis recommencez";
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_CANTOPEN:
        return "la base de données ne peut pas être modifiée (droits du fichier ou du dossier)";
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return "la base de données est endommagée ; restaurez la dernière sauvegarde";
    default:
        return sqlite3_errmsg(db->handle);
    }
}
