/*
 * Derived keys of a person, recomputed whenever the fields they come from
 * change (by an import, the API or an undo):
 *   match_key    folded "last|first|birth" used to recognise a person in an
 *                imported file when there is no valid licence number
 *   search_text  folded name, e-mail, phones (E.164 and national forms) and
 *                licence number, searched by the staff list
 */
#ifndef LICOL_PERSON_H
#define LICOL_PERSON_H

#include <stddef.h>
#include <stdint.h>

#include "db.h"

#define PERSON_KEY_SIZE 512
#define PERSON_SEARCH_SIZE 1024

/* Version of the computation of both keys. Raise it with any change to
 * person_match_key, person_search_text or the normalisers they call that
 * changes their output: at the next start, migrate_apply recomputes the
 * stored keys, so that people imported before still match. */
#define PERSON_KEYS_VERSION 2

void person_match_key(const char *last_name, const char *first_name, const char *birth_date,
                      char *out, size_t size);

void person_search_text(const char *last_name, const char *first_name, const char *email,
                        const char *phone, const char *mobile, const char *licence_number,
                        char *out, size_t size);

/* Recomputes and stores both keys of person id from its current row.
 * Returns 0 or an SQLite error code. */
int person_refresh_keys(struct db *db, int64_t person_id);

/* Recomputes both keys of every person and stores those that differ,
 * inside the caller's transaction. Sets *updated to the number of people
 * whose keys changed. Returns 0 or an SQLite error code. */
int person_refresh_all_keys(struct db *db, long *updated);

#endif
