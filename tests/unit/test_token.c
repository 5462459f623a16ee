/* Unit tests for one-time tokens, on a real SQLite file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "migrate.h"
#include "token.h"

struct fixture {
    char path[64];
    struct db *db;
    int64_t person;
    int64_t other;
};

static int64_t add_person(struct db *db, const char *last_name)
{
    sqlite3_stmt *stmt = db_stmt(db, "INSERT INTO person (last_name, first_name, created_at,"
                                     " updated_at) VALUES (?1, 'Léa', '2026-01-01T00:00:00Z',"
                                     " '2026-01-01T00:00:00Z')");

    sqlite3_bind_text(stmt, 1, last_name, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(stmt), SQLITE_DONE);
    return sqlite3_last_insert_rowid(db_handle(db));
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char *err = NULL;
    int fd;

    snprintf(f->path, sizeof(f->path), "/tmp/licol-test-token-XXXXXX");
    fd = mkstemp(f->path);
    close(fd);
    f->db = db_open(f->path, &err);
    assert_non_null(f->db);
    assert_true(migrate_apply(f->db, &err) >= 0);
    f->person = add_person(f->db, "Martin");
    f->other = add_person(f->db, "Durand");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char side[96];

    db_close(f->db);
    unlink(f->path);
    snprintf(side, sizeof(side), "%s-wal", f->path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", f->path);
    unlink(side);
    free(f);
    return 0;
}

static void create_gives_base64url_text(void **state)
{
    struct fixture *f = *state;
    char token[TOKEN_TEXT_SIZE];

    assert_int_equal(token_create(f->db, f->person, "reset", 0, token), 0);
    assert_int_equal(strlen(token), 43);
    for (const char *p = token; *p; p++)
        assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p));
}

static void create_twice_differs(void **state)
{
    struct fixture *f = *state;
    char first[TOKEN_TEXT_SIZE], second[TOKEN_TEXT_SIZE];

    assert_int_equal(token_create(f->db, f->person, "reset", 0, first), 0);
    assert_int_equal(token_create(f->db, f->person, "reset", 0, second), 0);
    assert_string_not_equal(first, second);
}

static void stored_value_is_not_token(void **state)
{
    struct fixture *f = *state;
    char token[TOKEN_TEXT_SIZE];
    unsigned char raw[32];
    size_t raw_len;
    sqlite3_stmt *stmt;

    assert_int_equal(token_create(f->db, f->person, "invitation", 0, token), 0);
    assert_int_equal(sodium_base642bin(raw, sizeof(raw), token, strlen(token), NULL, &raw_len,
                                       NULL, sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                     0);
    stmt = db_stmt(f->db, "SELECT token_hash FROM password_token");
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        const void *stored = sqlite3_column_blob(stmt, 0);
        assert_int_equal(sqlite3_column_bytes(stmt, 0), 32);
        assert_true(memcmp(stored, raw, 32) != 0);
        assert_null(memmem(stored, 32, token, 8));
    }
    sqlite3_reset(stmt);
    /* No column of the table contains the token text. */
    stmt = db_stmt(f->db, "SELECT COUNT(*) FROM password_token WHERE instr(CAST(token_hash AS TEXT),"
                          " ?1) > 0 OR instr(kind, ?1) > 0");
    sqlite3_bind_text(stmt, 1, token, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(stmt, 0), 0);
    sqlite3_reset(stmt);
}

static void peek_then_consume_once(void **state)
{
    struct fixture *f = *state;
    char token[TOKEN_TEXT_SIZE];
    int64_t person = 0;

    assert_int_equal(token_create(f->db, f->person, "reset", 0, token), 0);
    assert_int_equal(token_peek(f->db, token, "reset", &person), 0);
    assert_int_equal(person, f->person);
    assert_int_equal(token_peek(f->db, token, "reset", &person), 0);

    person = 0;
    assert_int_equal(token_consume(f->db, token, "reset", &person), 0);
    assert_int_equal(person, f->person);
    assert_int_equal(token_consume(f->db, token, "reset", &person), TOKEN_INVALID);
    assert_int_equal(token_peek(f->db, token, "reset", &person), TOKEN_INVALID);
}

static void wrong_kind_rejected(void **state)
{
    struct fixture *f = *state;
    char token[TOKEN_TEXT_SIZE];
    int64_t person = 0;

    assert_int_equal(token_create(f->db, f->person, "consent", 0, token), 0);
    assert_int_equal(token_consume(f->db, token, "reset", &person), TOKEN_INVALID);
    assert_int_equal(token_consume(f->db, token, "invitation", &person), TOKEN_INVALID);
    assert_int_equal(token_consume(f->db, token, "consent", &person), 0);
}

static void expired_token_rejected(void **state)
{
    struct fixture *f = *state;
    char token[TOKEN_TEXT_SIZE];
    int64_t person = 0;

    assert_int_equal(token_create(f->db, f->person, "reset", 0, token), 0);
    assert_int_equal(db_exec(f->db, "UPDATE password_token SET expires_at = '2020-01-01T00:00:00Z'"),
                     0);
    assert_int_equal(token_peek(f->db, token, "reset", &person), TOKEN_INVALID);
    assert_int_equal(token_consume(f->db, token, "reset", &person), TOKEN_INVALID);
}

static void default_lifetimes_by_kind(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *kind;
        long seconds;
    } cases[] = {
        {"invitation", 14L * 24 * 3600},
        {"reset", 3600},
        {"consent", 30L * 24 * 3600},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char token[TOKEN_TEXT_SIZE];
        sqlite3_stmt *stmt;
        long lifetime;

        assert_int_equal(token_create(f->db, f->person, cases[i].kind, 0, token), 0);
        stmt = db_stmt(f->db, "SELECT CAST(strftime('%s', expires_at) AS INTEGER)"
                              " - CAST(strftime('%s', created_at) AS INTEGER)"
                              " FROM password_token ORDER BY id DESC LIMIT 1");
        assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
        lifetime = (long)sqlite3_column_int64(stmt, 0);
        sqlite3_reset(stmt);
        assert_int_equal(lifetime, cases[i].seconds);
    }
}

static void password_change_voids_tokens(void **state)
{
    struct fixture *f = *state;
    char reset[TOKEN_TEXT_SIZE], invitation[TOKEN_TEXT_SIZE], consent[TOKEN_TEXT_SIZE];
    char other[TOKEN_TEXT_SIZE];
    int64_t person = 0;

    assert_int_equal(token_create(f->db, f->person, "reset", 0, reset), 0);
    assert_int_equal(token_create(f->db, f->person, "invitation", 0, invitation), 0);
    assert_int_equal(token_create(f->db, f->person, "consent", 0, consent), 0);
    assert_int_equal(token_create(f->db, f->other, "reset", 0, other), 0);

    assert_int_equal(token_void_person(f->db, f->person), 2);
    assert_int_equal(token_consume(f->db, reset, "reset", &person), TOKEN_INVALID);
    assert_int_equal(token_consume(f->db, invitation, "invitation", &person), TOKEN_INVALID);
    assert_int_equal(token_consume(f->db, consent, "consent", &person), 0);
    assert_int_equal(token_consume(f->db, other, "reset", &person), 0);
    assert_int_equal(person, f->other);
    assert_int_equal(token_void_person(f->db, f->person), 0);
}

static void malformed_tokens_rejected(void **state)
{
    struct fixture *f = *state;
    char token[TOKEN_TEXT_SIZE];
    char altered[TOKEN_TEXT_SIZE];
    int64_t person = 0;
    static const char *const bad[] = {
        "", "abc", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    };

    assert_int_equal(token_create(f->db, f->person, "reset", 0, token), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(token_consume(f->db, bad[i], "reset", &person), TOKEN_INVALID);
    assert_int_equal(token_consume(f->db, NULL, "reset", &person), TOKEN_INVALID);
    assert_int_equal(token_consume(f->db, token, "unknown-kind", &person), TOKEN_INVALID);

    memcpy(altered, token, sizeof(altered));
    altered[10] = altered[10] == 'A' ? 'B' : 'A';
    assert_int_equal(token_consume(f->db, altered, "reset", &person), TOKEN_INVALID);
    assert_int_equal(token_consume(f->db, token, "reset", &person), 0);
}

static void create_rejects_bad_input(void **state)
{
    struct fixture *f = *state;
    char token[TOKEN_TEXT_SIZE];

    assert_int_equal(token_create(f->db, f->person, "admin", 0, token), TOKEN_ERROR);
    assert_int_equal(token_create(f->db, f->person, "reset", -5, token), TOKEN_ERROR);
    assert_int_equal(token_create(f->db, 999999, "reset", 0, token), TOKEN_ERROR);
    assert_string_equal(token, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(create_gives_base64url_text, setup, teardown),
        cmocka_unit_test_setup_teardown(create_twice_differs, setup, teardown),
        cmocka_unit_test_setup_teardown(stored_value_is_not_token, setup, teardown),
        cmocka_unit_test_setup_teardown(peek_then_consume_once, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_kind_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(expired_token_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(default_lifetimes_by_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(password_change_voids_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_tokens_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(create_rejects_bad_input, setup, teardown),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
