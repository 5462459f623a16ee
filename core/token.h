/*
 * One-time tokens for links sent by mail: 'invitation' (choose a first
 * password after an import), 'reset' (password recovery) and 'consent'
 * (accept the club's terms). A token is 256 random bits, given to the
 * caller once as base64url text (43 characters, no padding) and stored only
 * as its BLAKE2b-256 digest. A token is tied to one person and one kind,
 * expires, and can be consumed once.
 *
 * Return codes: 0 on success, TOKEN_INVALID when the token is unknown,
 * malformed, of another kind, expired, used or voided (callers show one
 * message for all of these, so a guesser learns nothing), and TOKEN_ERROR
 * on a database error (logged).
 */
#ifndef LICOL_TOKEN_H
#define LICOL_TOKEN_H

#include "db.h"

#include <stdint.h>

#define TOKEN_TEXT_SIZE 44 /* 43 base64url characters and the NUL */

#define TOKEN_TTL_INVITATION (14L * 24 * 3600) /* seconds */
#define TOKEN_TTL_RESET 3600L
#define TOKEN_TTL_CONSENT (30L * 24 * 3600)

#define TOKEN_INVALID (-1)
#define TOKEN_ERROR (-2)

/* Creates a token of kind ("invitation", "reset" or "consent") for
 * person_id, valid for ttl_seconds (0 = the kind's default above), and
 * writes its text to out. Returns 0, or TOKEN_ERROR when kind is unknown,
 * ttl_seconds is negative or the insert fails (for example no such person). */
int token_create(struct db *db, int64_t person_id, const char *kind, long ttl_seconds,
                 char out[TOKEN_TEXT_SIZE]);

/* Marks the token used and sets *person_id, in one UPDATE so two concurrent
 * uses cannot both succeed. Returns 0, TOKEN_INVALID or TOKEN_ERROR. */
int token_consume(struct db *db, const char *token, const char *kind, int64_t *person_id);

/* Checks the token as token_consume does without using it up, to decide
 * whether to show the form behind a link. Returns 0, TOKEN_INVALID or
 * TOKEN_ERROR. */
int token_peek(struct db *db, const char *token, const char *kind, int64_t *person_id);

/* Voids every unused 'invitation' and 'reset' token of person_id. Call it
 * when the person's password changes, so an older recovery link stops
 * working. 'consent' tokens are unaffected. Returns the number voided, or
 * TOKEN_ERROR. */
int token_void_person(struct db *db, int64_t person_id);

#endif
