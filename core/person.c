#include "person.h"
#include "normalize.h"

#include <stdio.h>
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
