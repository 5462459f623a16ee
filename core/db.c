/*
 * SQLite connection set-up and the prepared-statement cache. The cache is a
 * small open-addressing table keyed on the SQL string's address, which is
 * stable because callers pass literals.
 */
#include "db.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DB_CACHE_SLOTS 512 /* power of two; more statements than this are not cached */

struct cached_stmt {
    const char *sql;
    sqlite3_stmt *stmt;
};

struct db {
    sqlite3 *handle;
    char *path;
    int long_writer;        /* set by db_set_long_writer */
    int holds_long_write;   /* counted in long_writes until the transaction ends */
    int no_wait;            /* set by db_set_no_wait */
    long long gave_up_ms;   /* monotonic time the event loop's connection last gave up */
    struct cached_stmt cache[DB_CACHE_SLOTS];
};

/* Number of long write transactions open in this process. */
static atomic_int long_writes;

/* Process-wide settings, applied before SQLite initialises itself. Memory
 * statistics are off: Licol never reads them, and keeping them takes a
 * global mutex on every allocation, shared by all connections' threads. */
static void configure_sqlite(void)
{
    /* SQLITE_MISUSE when SQLite was already initialised: harmless. */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static pthread_once_t configure_once = PTHREAD_ONCE_INIT;

static int attach_sessions(struct db *db);

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
    if (rc == SQLITE_OK && (rc = attach_sessions(db)) != SQLITE_OK) {
        char *sessions_path = db_sessions_path(path);

        *err = str_printf("Impossible d'ouvrir en écriture le fichier des sessions %s : %s. "
                          "Vérifiez qu'il appartient, comme %s, à l'utilisateur qui lance Licol "
                          "et qu'il est modifiable.",
                          sessions_path ? sessions_path : "", rc == SQLITE_READONLY
                              ? "fichier en lecture seule" : sqlite3_errmsg(db->handle), path);
        free(sessions_path);
        db_close(db);
        return NULL;
    }
    if (rc != SQLITE_OK) {
        *err = str_printf("La base de données %s est illisible : %s. Est-ce bien un fichier "
                            "Licol ?",
                            path, sqlite3_errmsg(db->handle));
        db_close(db);
        return NULL;
    }
    return db;
}

/* Login sessions and failed logins live in a second file, attached as
 * "sessions", because SQLite locks writes per file: a login, which writes
 * only there, does not wait for an import's write lock on the main file. The
 * tables keep their names, which SQLite resolves in the attached file once
 * migration 0010 has dropped the main file's old copies. */
static const char SQL_SESSIONS_SCHEMA[] =
    "PRAGMA sessions.journal_mode = WAL;"
    "CREATE TABLE IF NOT EXISTS sessions.session ("
    " id INTEGER PRIMARY KEY,"
    " token_hash TEXT NOT NULL UNIQUE,"
    " person_id INTEGER NOT NULL,"
    " csrf_token TEXT NOT NULL,"
    " created_at TEXT NOT NULL,"
    " last_seen_at TEXT NOT NULL,"
    " expires_at TEXT NOT NULL,"
    " ip TEXT,"
    " user_agent TEXT);"
    "CREATE INDEX IF NOT EXISTS sessions.session_person ON session (person_id);"
    "CREATE TABLE IF NOT EXISTS sessions.login_attempt ("
    " id INTEGER PRIMARY KEY,"
    " at INTEGER NOT NULL,"
    " ip TEXT NOT NULL,"
    " email TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS sessions.login_attempt_ip ON login_attempt (ip, at);"
    "CREATE INDEX IF NOT EXISTS sessions.login_attempt_email ON login_attempt (email, at);";

char *db_sessions_path(const char *path)
{
    if (path[0] == '\0' || strcmp(path, ":memory:") == 0)
        return strdup(":memory:");
    return str_printf("%s-sessions", path);
}

/* Creates the sessions file, when missing, with the main file's mode and
 * owner: it contains IP addresses, and a copy created by root for a CLI
 * command must stay writable by the server's user. SQLite gives its -wal
 * and -shm files the same mode. */
static void create_sessions_file(const char *main_path, const char *path)
{
    struct stat st;
    int fd;

    if (strcmp(path, ":memory:") == 0 || stat(main_path, &st) != 0)
        return;
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, st.st_mode & 0777);
    if (fd < 0)
        return; /* it exists, or ATTACH reports why it cannot be created */
    if (fchmod(fd, st.st_mode & 0777) != 0) /* open() applied the umask */
        log_warn("db", "%s: mode not set to that of %s: %s", path, main_path, strerror(errno));
    if (geteuid() == 0 && fchown(fd, st.st_uid, st.st_gid) != 0)
        log_warn("db", "%s: owner not set to that of %s: %s", path, main_path, strerror(errno));
    close(fd);
}

static int attach_sessions(struct db *db)
{
    char *path = db_sessions_path(db->path);
    sqlite3_stmt *stmt = NULL;
    int rc = SQLITE_NOMEM;

    if (path) {
        create_sessions_file(db->path, path);
        rc = sqlite3_prepare_v2(db->handle, "ATTACH DATABASE ?1 AS sessions", -1, &stmt, NULL);
    }
    if (rc == SQLITE_OK) {
        sqlite3_bind_text(stmt, 1, path, -1, SQLITE_STATIC);
        rc = sqlite3_step(stmt) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db->handle);
    }
    sqlite3_finalize(stmt);
    free(path);
    if (rc != SQLITE_OK)
        return rc;
    if (sqlite3_db_readonly(db->handle, "sessions") == 1)
        return SQLITE_READONLY;
    rc = db_exec(db, SQL_SESSIONS_SCHEMA);
    if (rc != SQLITE_OK)
        return rc;
    return db_link_sessions(db);
}

/* Deletes the sessions of people who no longer exist: those deleted by a
 * long writer, or by a restore of an older copy of the main file. Person
 * ids can be reused, so such a session must not outlive its person. */
static int delete_orphan_sessions(struct db *db)
{
    return db_exec(db, "DELETE FROM sessions.session WHERE NOT EXISTS"
                       " (SELECT 1 FROM main.person WHERE person.id = session.person_id)");
}

int db_link_sessions(struct db *db)
{
    sqlite3_stmt *stmt;
    int has_person;

    stmt = db_stmt(db, "SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = 'person'");
    if (!stmt)
        return sqlite3_errcode(db->handle);
    has_person = sqlite3_step(stmt) == SQLITE_ROW;
    sqlite3_reset(stmt);
    if (!has_person)
        return SQLITE_OK; /* a new file: migrate_apply calls this again */
    if (delete_orphan_sessions(db) != SQLITE_OK)
        return sqlite3_errcode(db->handle);
    /* A TEMP trigger is the only kind that may write to another file. It
     * lasts as long as the connection, so every connection creates it. */
    return db_exec(db, "CREATE TEMP TRIGGER IF NOT EXISTS person_delete_sessions"
                       " AFTER DELETE ON main.person"
                       " BEGIN DELETE FROM session WHERE person_id = old.id; END");
}

/* Busy handler of the event loop's connection: it gives up at once while
 * this process has a long write transaction open, so that a request fails
 * fast instead of stopping the whole server for the busy timeout. */
static int interactive_busy(void *arg, int attempts)
{
    struct db *db = arg;
    struct timespec ts;
    long long now_ms;

    if (db->no_wait || atomic_load(&long_writes) > 0)
        return 0;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    now_ms = (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    /* Once a wait ran out, the lock is a long one. The next statements of
     * the same request, which follow within a millisecond, give up at
     * once, so that a request never makes the server wait more than once. */
    if (attempts == 0 && db->gave_up_ms != 0 &&
        now_ms - db->gave_up_ms < DB_INTERACTIVE_RETRY_AFTER_MS)
        return 0;
    if (attempts * DB_BUSY_STEP_MS >= DB_INTERACTIVE_WAIT_MS) {
        db->gave_up_ms = now_ms;
        return 0;
    }
    sqlite3_sleep(DB_BUSY_STEP_MS);
    return 1;
}

void db_set_interactive(struct db *db)
{
    sqlite3_busy_handler(db->handle, interactive_busy, db);
}

void db_set_no_wait(struct db *db, int no_wait)
{
    db->no_wait = no_wait;
}

void db_set_long_writer(struct db *db)
{
    db->long_writer = 1;
    /* People deleted by this connection (an undo) must not lock the
     * sessions file until the commit: db_commit removes their sessions
     * afterwards instead. */
    db_exec(db, "DROP TRIGGER IF EXISTS temp.person_delete_sessions");
}

int db_long_write_in_progress(void)
{
    return atomic_load(&long_writes) > 0;
}

/* Stops counting this connection's long write once its transaction ended. */
static void end_long_write(struct db *db)
{
    if (db->holds_long_write && sqlite3_get_autocommit(db->handle)) {
        db->holds_long_write = 0;
        atomic_fetch_sub(&long_writes, 1);
    }
}

void db_close(struct db *db)
{
    if (!db)
        return;
    if (db->holds_long_write) {
        db->holds_long_write = 0;
        atomic_fetch_sub(&long_writes, 1);
    }
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
    int rc;

    if (!db->long_writer)
        return db_exec(db, "BEGIN IMMEDIATE");

    /* BEGIN IMMEDIATE would take the write lock of every attached file,
     * the sessions file too, and logins would wait for the whole import.
     * A write statement that changes nothing takes the main file's lock
     * alone, with the same wait, before anything is read. */
    rc = db_exec(db, "BEGIN");
    if (rc == SQLITE_OK) {
        rc = db_exec(db, "DELETE FROM main.schema_migration WHERE 0");
        if (rc != SQLITE_OK) {
            db_exec(db, "ROLLBACK");
            return rc;
        }
    }
    if (rc == SQLITE_OK && !db->holds_long_write) {
        db->holds_long_write = 1;
        atomic_fetch_add(&long_writes, 1);
    }
    return rc;
}

int db_commit(struct db *db)
{
    int rc = db_exec(db, "COMMIT");

    if (rc == SQLITE_OK && db->holds_long_write)
        delete_orphan_sessions(db); /* logged on failure; the next start retries */
    end_long_write(db);
    return rc;
}

int db_rollback(struct db *db)
{
    int rc = SQLITE_OK;

    if (!sqlite3_get_autocommit(db->handle))
        rc = db_exec(db, "ROLLBACK");
    end_long_write(db);
    return rc;
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
