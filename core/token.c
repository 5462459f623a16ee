/*
 * One-time tokens stored as digests. Lookups go through the UNIQUE index on
 * token_hash. That index comparison is not constant-time, but it compares
 * digests, and timing how much of a digest matches reveals nothing about
 * which token text would produce it. The digest found is compared again
 * with sodium_memcmp before it is trusted.
 */
#include "token.h"
#include "log.h"

#include <sodium.h>

#include <stdbool.h>
#include <string.h>
#include <time.h>

#define TOKEN_BYTES 32
#define HASH_BYTES 32

static long default_ttl(const char *kind)
{
    if (!kind)
        return -1;
    if (strcmp(kind, "invitation") == 0)
        return TOKEN_TTL_INVITATION;
    if (strcmp(kind, "reset") == 0)
        return TOKEN_TTL_RESET;
    if (strcmp(kind, "consent") == 0)
        return TOKEN_TTL_CONSENT;
    return -1;
}

static void format_time(time_t t, char *buf, size_t size)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Decodes token text into its digest. Returns false for anything that is not
 * exactly 43 base64url characters encoding 32 bytes. */
static bool token_digest(const char *token, unsigned char hash[HASH_BYTES])
{
    unsigned char raw[TOKEN_BYTES];
    size_t raw_len = 0;

    if (!token || strlen(token) != TOKEN_TEXT_SIZE - 1)
        return false;
    if (sodium_base642bin(raw, sizeof(raw), token, TOKEN_TEXT_SIZE - 1, NULL, &raw_len, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
        raw_len != TOKEN_BYTES)
        return false;
    crypto_generichash(hash, HASH_BYTES, raw, sizeof(raw), NULL, 0);
    sodium_memzero(raw, sizeof(raw));
    return true;
}

int token_create(struct db *db, int64_t person_id, const char *kind, long ttl_seconds,
                 char out[TOKEN_TEXT_SIZE])
{
    unsigned char raw[TOKEN_BYTES];
    unsigned char hash[HASH_BYTES];
    char now[32], expires[32];
    long ttl = ttl_seconds ? ttl_seconds : default_ttl(kind);
    sqlite3_stmt *stmt;
    time_t t = time(NULL);
    int rc = TOKEN_ERROR;

    out[0] = '\0';
    if (default_ttl(kind) < 0 || ttl <= 0) {
        log_error("token", "invalid token kind or lifetime for person %lld", (long long)person_id);
        return TOKEN_ERROR;
    }
    randombytes_buf(raw, sizeof(raw));
    crypto_generichash(hash, sizeof(hash), raw, sizeof(raw), NULL, 0);
    format_time(t, now, sizeof(now));
    format_time(t + ttl, expires, sizeof(expires));

    stmt = db_stmt(db, "INSERT INTO password_token (person_id, kind, token_hash, created_at,"
                       " expires_at) VALUES (?1, ?2, ?3, ?4, ?5)");
    if (!stmt)
        goto done;
    sqlite3_bind_int64(stmt, 1, person_id);
    sqlite3_bind_text(stmt, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_blob(stmt, 3, hash, sizeof(hash), SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, expires, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        log_error("token", "storing a %s token for person %lld failed: %s", kind,
                  (long long)person_id, sqlite3_errmsg(db_handle(db)));
        sqlite3_reset(stmt);
        goto done;
    }
    sqlite3_reset(stmt);
    sodium_bin2base64(out, TOKEN_TEXT_SIZE, raw, sizeof(raw),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    log_info("token", "created %s token for person %lld, expires %s", kind, (long long)person_id,
             expires);
    rc = 0;

done:
    sodium_memzero(raw, sizeof(raw));
    return rc;
}

/* Runs a lookup statement whose ?1 is the digest, ?2 the kind and ?3 the
 * current time, and whose result row is (person_id, token_hash). */
static int run_lookup(struct db *db, const char *sql, const char *token, const char *kind,
                      int64_t *person_id)
{
    unsigned char hash[HASH_BYTES];
    char now[32];
    sqlite3_stmt *stmt;
    int step;
    int rc = TOKEN_INVALID;

    if (default_ttl(kind) < 0 || !token_digest(token, hash))
        return TOKEN_INVALID;
    db_now(now, sizeof(now));
    stmt = db_stmt(db, sql);
    if (!stmt)
        return TOKEN_ERROR;
    sqlite3_bind_blob(stmt, 1, hash, sizeof(hash), SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, now, -1, SQLITE_STATIC);

    step = sqlite3_step(stmt);
    if (step == SQLITE_ROW) {
        const void *stored = sqlite3_column_blob(stmt, 1);
        if (stored && sqlite3_column_bytes(stmt, 1) == HASH_BYTES &&
            sodium_memcmp(stored, hash, HASH_BYTES) == 0) {
            *person_id = sqlite3_column_int64(stmt, 0);
            rc = 0;
        }
        /* Step to the end so an UPDATE ... RETURNING completes. */
        while (sqlite3_step(stmt) == SQLITE_ROW)
            ;
    } else if (step != SQLITE_DONE) {
        log_error("token", "token lookup failed: %s", sqlite3_errmsg(db_handle(db)));
        rc = TOKEN_ERROR;
    }
    sqlite3_reset(stmt);
    return rc;
}

int token_consume(struct db *db, const char *token, const char *kind, int64_t *person_id)
{
    int rc = run_lookup(db,
                        "UPDATE password_token SET used_at = ?3"
                        " WHERE token_hash = ?1 AND kind = ?2 AND used_at IS NULL"
                        " AND voided_at IS NULL AND expires_at > ?3"
                        " RETURNING person_id, token_hash",
                        token, kind, person_id);

    if (rc == 0)
        log_info("token", "consumed %s token of person %lld", kind, (long long)*person_id);
    return rc;
}

int token_peek(struct db *db, const char *token, const char *kind, int64_t *person_id)
{
    return run_lookup(db,
                      "SELECT person_id, token_hash FROM password_token"
                      " WHERE token_hash = ?1 AND kind = ?2 AND used_at IS NULL"
                      " AND voided_at IS NULL AND expires_at > ?3",
                      token, kind, person_id);
}

int token_void_person(struct db *db, int64_t person_id)
{
    char now[32];
    sqlite3_stmt *stmt = db_stmt(db, "UPDATE password_token SET voided_at = ?2"
                                     " WHERE person_id = ?1 AND kind IN ('invitation', 'reset')"
                                     " AND used_at IS NULL AND voided_at IS NULL");
    int count;

    if (!stmt)
        return TOKEN_ERROR;
    db_now(now, sizeof(now));
    sqlite3_bind_int64(stmt, 1, person_id);
    sqlite3_bind_text(stmt, 2, now, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        log_error("token", "voiding tokens of person %lld failed: %s", (long long)person_id,
                  sqlite3_errmsg(db_handle(db)));
        sqlite3_reset(stmt);
        return TOKEN_ERROR;
    }
    sqlite3_reset(stmt);
    count = sqlite3_changes(db_handle(db));
    if (count > 0)
        log_info("token", "voided %d password token(s) of person %lld", count,
                 (long long)person_id);
    return count;
}
