/*
 * Online registration ("inscription en ligne"): the rules read from
 * scripts/registration.lua, the verification link's token, the duplicate
 * lookup against the people already on file, the per-IP rate limit of the
 * public form, and the writes that link a registration to a person. The
 * tables are in migrations/0008_registration.sql; the HTTP routes, the
 * mails and the staff decisions are in core/api_registration.c.
 */
#ifndef LICOL_REGISTRATION_H
#define LICOL_REGISTRATION_H

#include <jansson.h>
#include <stdint.h>

#include "db.h"
#include "fields.h"
#include "token.h"

struct script_state;

#define REGISTRATION_MAX_REQUIRED 32
#define REGISTRATION_DIGEST_SIZE 32 /* BLAKE2b-256 of the token's 32 random bytes */

/* Settings from reglages(), or the defaults below when the script is
 * absent, fails or returns a value out of range. */
struct registration_settings {
    int max_per_ip; /* accepted submissions per IP address per window */
    int window_minutes;
    int majority_age; /* years; under it a legal guardian is required */
    int link_hours;   /* validity of the verification link */
};

#define REGISTRATION_DEFAULT_MAX_PER_IP 10
#define REGISTRATION_DEFAULT_WINDOW_MINUTES 60
#define REGISTRATION_DEFAULT_MAJORITY_AGE 18
#define REGISTRATION_DEFAULT_LINK_HOURS 48

/* Rules from regles(candidat) for one applicant. */
struct registration_rules {
    char required[REGISTRATION_MAX_REQUIRED][FIELDS_MAX_KEY + 1];
    size_t required_count;
    unsigned role;           /* enum script_role bit given once the address is verified; 0 = none */
    unsigned validated_role; /* bit given when staff validate; never 0 */
};

/* Reads the settings. state may be NULL (no script engine): defaults. A
 * script failure is logged and gives the defaults too. */
void registration_settings_get(struct script_state *state, struct registration_settings *out);

/* Calls regles(applicant). applicant is the submitted fields plus "age"
 * and "mineur". Without the script (state NULL or module absent) the rules
 * are: name, first name, birth date and e-mail required, role visiteur,
 * validated role client. Returns 0, or -1 with *err (French, caller frees)
 * when the script fails or returns an unknown role or field. */
int registration_rules_get(struct script_state *state, const struct fields_catalogue *fields,
                           json_t *applicant, struct registration_rules *out, char **err);

/* Age in whole years on today (both yyyy-mm-dd). Returns -1 when either
 * date is malformed or birth_date is after today. */
int registration_age(const char *birth_date, const char *today);

/* Creates a verification token: text for the link, digest for the table. */
void registration_token_new(char text[TOKEN_TEXT_SIZE],
                            unsigned char digest[REGISTRATION_DIGEST_SIZE]);

/* Computes the digest of a token's text. Returns 0, or -1 when text is not
 * exactly 43 base64url characters. */
int registration_token_digest(const char *text, unsigned char digest[REGISTRATION_DIGEST_SIZE]);

enum registration_duplicate {
    REGISTRATION_DUPLICATE_NONE = 0,
    REGISTRATION_DUPLICATE_LICENCE,  /* same valid licence number */
    REGISTRATION_DUPLICATE_IDENTITY, /* same folded name, first name and birth date */
};

/* Finds an existing person the applicant seems to be: first by licence
 * number (may be NULL), then by match_key (may be NULL or empty), never
 * exclude_id. Returns the person id and sets *reason, 0 when there is
 * none, or -1 on a database error. */
int64_t registration_find_duplicate(struct db *db, const char *licence_number,
                                    const char *match_key, int64_t exclude_id,
                                    enum registration_duplicate *reason);

/* Counts the submissions recorded from ip within window_seconds. Returns
 * the count, or -1 on a database error. Older rows are deleted. */
int registration_attempts_count(struct db *db, const char *ip, long window_seconds);

/* Records one submission from ip. Returns 0 or -1. */
int registration_attempt_record(struct db *db, const char *ip);

struct app;
struct auth_user;

/* Gives (give = 1) or removes one role bit, with its audit row, inside the
 * caller's transaction. Returns 0 or -1. */
int registration_set_role(struct app *app, const struct auth_user *actor, int64_t person_id,
                          unsigned bit, int give);

/* Returns 1 when the person holds at least one role (also on a database
 * error, so that no role is added by mistake), else 0. */
int registration_has_roles(struct db *db, int64_t person_id);

/* Records the decisions of registration (its "consents", "ip",
 * "user_agent" and "id" members, as the staff API returns them) as consent
 * proofs of person_id, channel registration, inside the caller's
 * transaction. Returns 0 or -1 (logged). */
int registration_record_consents(struct db *db, json_t *registration, int64_t person_id);

/* Finds or creates the legal guardian ({last_name, first_name, email,
 * phone}, may be NULL: nothing done) of child_id and links them as legal
 * guardian and payer. A person with the same address, name and first name
 * (ASCII case ignored) is reused. Returns 0 or -1. */
int registration_attach_guardian(struct app *app, const struct auth_user *actor, json_t *guardian,
                                 int64_t child_id);

/* Registers the public routes (GET /api/v1/inscription/formulaire, POST
 * /api/v1/inscription, POST /api/v1/inscription/confirmation) and the
 * staff routes under /api/v1/inscriptions (core/api_registration.c). */
void api_registration_register_routes(struct app *app);

#endif
