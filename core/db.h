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

/* Opens (creating if needed) the database at path with WAL journaling,
 * foreign keys on and a busy timeout. Returns NULL on failure and sets *err
 * to a French message the caller frees with free(). */
struct db *db_open(const char *path, char **err);

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

int db_begin(struct db *db);     /* BEGIN IMMEDIATE */
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
