/*
 * SQLite storage: opening a database file with Licol's settings, a cache of
 * prepared statements, and transaction helpers. Every query in Licol goes
 * through a prepared statement with bound parameters; no SQL text is ever
 * built from input.
 *
 * A struct db belongs to one thread. The import worker opens its own.
 */
#ifndef LICOL_DB_H
#define LICOL_DB_H

#include <sqlite3.h>
#include <stddef.h>

struct db;

#define DB_BUSY_TIMEOUT_MS 5000 /* how long a statement waits for another connection's lock */
#define DB_BUSY_STEP_MS 5       /* pause between two tries of the event loop's connection */
/* Maximum wait of the event loop's connection for a lock. The whole server
 * waits with it, and Licol's other writers hold the lock for milliseconds:
 * a longer holder is an import, perhaps run by `licol import` in another
 * process, which this process cannot see. */
#define DB_INTERACTIVE_WAIT_MS 500
/* After such a wait ran out, the event loop's connection gives up at once
 * for this long, so that the next statements of the same request, which
 * run right after, do not wait again. A later request waits again. */
#define DB_INTERACTIVE_RETRY_AFTER_MS 100

/* Opens (creating if needed) the database at path with WAL journaling,
 * foreign keys on and a busy timeout, and attaches the sessions file (see
 * db_sessions_path) as the schema "sessions". Returns NULL on failure and
 * sets *err to a French message the caller frees with free(). */
struct db *db_open(const char *path, char **err);

/* Returns the path of the file that contains login sessions and failed
 * logins beside the database at path: path + "-sessions", or ":memory:"
 * for an in-memory database. The caller frees it; NULL when out of memory. */
char *db_sessions_path(const char *path);

/* Deletes the sessions of people who no longer exist, and creates, for
 * this connection, the trigger that deletes a person's sessions with the
 * person. Does nothing while the person table does not exist;
 * migrate_apply calls it again once it does. */
int db_link_sessions(struct db *db);

/* Makes the connection of the event loop give up waiting for a lock at
 * once while a long write (db_set_long_writer) is open in this process,
 * and after DB_INTERACTIVE_WAIT_MS otherwise. */
void db_set_interactive(struct db *db);

/* On a connection set with db_set_interactive, makes statements give up
 * at once on a lock (no_wait 1) until called again with 0. */
void db_set_no_wait(struct db *db, int no_wait);

/* Marks the connection's write transactions as long ones, such as an
 * import's: from db_begin to db_commit or db_rollback, interactive
 * connections do not wait for the write lock. The connection then leaves
 * the sessions file alone during the transaction, and db_commit deletes
 * the sessions of the people it deleted. */
void db_set_long_writer(struct db *db);

/* Returns 1 while a long write transaction is open in this process. */
int db_long_write_in_progress(void);

/* Finalises cached statements and closes the connection. NULL is accepted. */
void db_close(struct db *db);

sqlite3 *db_handle(struct db *db);
const char *db_path(struct db *db);

/* Returns a prepared statement for sql, reset and with bindings cleared,
 * from the cache when the same SQL text was prepared before. The statement
 * stays owned by the cache: callers must not finalize it. sql must be a
 * string literal or otherwise outlive the db (the cache keys on the
 * pointer). Returns NULL and logs on a preparation error. */
sqlite3_stmt *db_stmt(struct db *db, const char *sql);

/* Runs sql (which may hold several statements and no parameters). Returns 0
 * or the SQLite error code, logged. */
int db_exec(struct db *db, const char *sql);

/* Starts a write transaction: BEGIN IMMEDIATE, or for a long writer a
 * transaction that holds the main file's write lock only. */
int db_begin(struct db *db);
int db_commit(struct db *db);
int db_rollback(struct db *db);

/* Runs sql, a counting query with ?1 bound to text and ?2 to number, and
 * returns the integer of its first row (0 when the query fails). Used by
 * the rate limits: "how many attempts for this address since then". */
int db_count(struct db *db, const char *sql, const char *text, long long number);

/* Binds text, or NULL when value is NULL or empty. */
int db_bind_text_or_null(sqlite3_stmt *stmt, int index, const char *value);

/* Returns a French explanation of the connection's last error for club
 * staff, with what to do for the common cases (database busy, disk full,
 * read-only, corrupt); otherwise the SQLite message. Static or owned by
 * SQLite: valid until the next call on db. */
const char *db_error_fr(struct db *db);

/* Writes the current UTC time as yyyy-mm-ddThh:mm:ssZ into buf (>= 21 bytes). */
void db_now(char *buf, size_t size);

#endif
