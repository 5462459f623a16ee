#include "person.h"
#include "normalize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void person_match_key(const char *last_name, const char *first_name, const char *birth_date,
                      char *out, size_t size)
{
    char last[200], first[200];

    norm_fold(last_name ? last_name : "", last, sizeof(last), 1);
    norm_fold(first_name ? first_name : "", first, sizeof(first), 1);
    snprintf(out, size, "%s|%s|%s", last, first, birth_date ? birth_date : "");
}

/* Appends a phone number in the forms people type: E.164 and, for a French
 * number, the national form with its leading zero. */
static void append_phone(char *out, size_t size, const char *phone)
{
    size_t len = strlen(out);

    if (!phone || !*phone)
        return;
    if (strncmp(phone, "+33", 3) == 0)
        snprintf(out + len, size - len, " %s 0%s", phone, phone + 3);
    else
        snprintf(out + len, size - len, " %s", phone);
}

void person_search_text(const char *last_name, const char *first_name, const char *email,
                        const char *phone, const char *mobile, const char *licence_number,
                        char *out, size_t size)
{
    char names[600], licence[64];
    char raw[600];
    size_t len;

    snprintf(raw, sizeof(raw), "%s %s", last_name ? last_name : "", first_name ? first_name : "");
    norm_fold(raw, names, sizeof(names), 0);
    norm_fold(licence_number ? licence_number : "", licence, sizeof(licence), 1);
    snprintf(out, size, "%s %s %s", names, email ? email : "", licence);
    append_phone(out, size, phone);
    append_phone(out, size, mobile);
    len = strlen(out);
    while (len > 0 && out[len - 1] == ' ')
        out[--len] = '\0';
}

int person_refresh_keys(struct db *db, int64_t person_id)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT last_name, first_name, birth_date, email, phone,"
                                     " mobile, licence_number FROM person WHERE id = ?1");
    char match_key[PERSON_KEY_SIZE], search[PERSON_SEARCH_SIZE];
    int rc;

    if (!stmt)
        return SQLITE_ERROR;
    sqlite3_bind_int64(stmt, 1, person_id);
    rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) {
        sqlite3_reset(stmt);
        return rc == SQLITE_DONE ? SQLITE_NOTFOUND : rc;
    }
#define COL(i) ((const char *)sqlite3_column_text(stmt, (i)))
    person_match_key(COL(0), COL(1), COL(2), match_key, sizeof(match_key));
    person_search_text(COL(0), COL(1), COL(3), COL(4), COL(5), COL(6), search, sizeof(search));
#undef COL
    sqlite3_reset(stmt);

    stmt = db_stmt(db, "UPDATE person SET match_key = ?2, search_text = ?3 WHERE id = ?1");
    if (!stmt)
        return SQLITE_ERROR;
    sqlite3_bind_int64(stmt, 1, person_id);
    sqlite3_bind_text(stmt, 2, match_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, search, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

#define REFRESH_CHUNK 1000 /* people read per query, before their updates */

struct stored_keys {
    int64_t id;
    char match_key[PERSON_KEY_SIZE];
    char search[PERSON_SEARCH_SIZE];
};

/* Reads up to REFRESH_CHUNK people from from_id on (ids of 0 or below,
 * written by hand, included) and computes their keys.
 * Returns how many were read, or -1 with the SQLite error in *rc. The
 * updates run after the query is reset, never while it reads the table. */
static int compute_chunk(struct db *db, int64_t from_id, struct stored_keys *keys,
                         unsigned char *changed, int *rc)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT id, last_name, first_name, birth_date, email, phone,"
                                     " mobile, licence_number, match_key, search_text"
                                     " FROM person WHERE id >= ?1 ORDER BY id LIMIT ?2");
    int n = 0;

    if (!stmt) {
        *rc = SQLITE_ERROR;
        return -1;
    }
    sqlite3_bind_int64(stmt, 1, from_id);
    sqlite3_bind_int(stmt, 2, REFRESH_CHUNK);
    while ((*rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct stored_keys *k = &keys[n];
        const char *old_key = (const char *)sqlite3_column_text(stmt, 8);
        const char *old_search = (const char *)sqlite3_column_text(stmt, 9);

#define COL(i) ((const char *)sqlite3_column_text(stmt, (i)))
        k->id = sqlite3_column_int64(stmt, 0);
        person_match_key(COL(1), COL(2), COL(3), k->match_key, sizeof(k->match_key));
        person_search_text(COL(1), COL(2), COL(4), COL(5), COL(6), COL(7), k->search,
                           sizeof(k->search));
#undef COL
        changed[n] = !old_key || strcmp(old_key, k->match_key) != 0 || !old_search ||
                     strcmp(old_search, k->search) != 0;
        n++;
    }
    sqlite3_reset(stmt);
    if (*rc != SQLITE_DONE)
        return -1;
    *rc = SQLITE_OK;
    return n;
}

int person_refresh_all_keys(struct db *db, long *updated)
{
    struct stored_keys *keys = malloc(REFRESH_CHUNK * sizeof(*keys));
    unsigned char changed[REFRESH_CHUNK];
    int64_t from_id = INT64_MIN;
    int rc = SQLITE_OK, n;

    *updated = 0;
    if (!keys)
        return SQLITE_NOMEM;
    while ((n = compute_chunk(db, from_id, keys, changed, &rc)) > 0) {
        for (int i = 0; i < n && rc == SQLITE_OK; i++) {
            sqlite3_stmt *stmt;

            if (!changed[i])
                continue;
            stmt = db_stmt(db, "UPDATE person SET match_key = ?2, search_text = ?3 WHERE id = ?1");
            if (!stmt) {
                rc = SQLITE_ERROR;
                break;
            }
            sqlite3_bind_int64(stmt, 1, keys[i].id);
            sqlite3_bind_text(stmt, 2, keys[i].match_key, -1, SQLITE_STATIC);
            sqlite3_bind_text(stmt, 3, keys[i].search, -1, SQLITE_STATIC);
            rc = sqlite3_step(stmt) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db_handle(db));
            /* A trigger's RAISE(IGNORE) may skip the update: not counted. */
            if (rc == SQLITE_OK && sqlite3_changes(db_handle(db)) > 0)
                (*updated)++;
            sqlite3_reset(stmt);
        }
        if (rc != SQLITE_OK || keys[n - 1].id == INT64_MAX)
            break;
        from_id = keys[n - 1].id + 1;
    }
    free(keys);
    return rc;
}
