/*
 * Consent to the club's terms (GDPR): versioned documents (CGU, CGV,
 * privacy policy), each version kept with its full text and a SHA-256 of
 * it, and a proof row for every decision a person makes: who, which
 * document and version hash, when, from which IP address and user agent,
 * through which channel, recorded by whom (paper consents), and
 * withdrawals. Accepting the terms and optional consents (news mail,
 * photos) are separate documents, never bundled.
 *
 * The workflow (who is asked, when, reminders) is decided by
 * scripts/consent.lua; this module stores and reads.
 */
#ifndef LICOL_CONSENT_H
#define LICOL_CONSENT_H

#include <jansson.h>
#include <stdint.h>

#include "db.h"

enum consent_channel {
    CONSENT_CHANNEL_MAIL_LINK = 0, /* personal link in a mail */
    CONSENT_CHANNEL_LOGIN,         /* asked after logging in */
    CONSENT_CHANNEL_REGISTRATION,  /* online registration form */
    CONSENT_CHANNEL_PAPER,         /* signed on paper, recorded by staff */
};

enum consent_decision {
    CONSENT_ACCEPTED = 0,
    CONSENT_REFUSED,
    CONSENT_WITHDRAWN,
};

struct consent_proof {
    int64_t person_id;
    const char *document;      /* document key: "cgu", "cgv", "confidentialite", "newsletter", ... */
    int64_t version_id;        /* the version shown; 0 = the current version of document */
    enum consent_decision decision;
    enum consent_channel channel;
    const char *ip;            /* may be NULL (paper) */
    const char *user_agent;    /* may be NULL (paper) */
    int64_t recorded_by;       /* staff person for a paper consent, else 0 */
};

/* Records one decision. Returns the proof row id, or -1 with *err (French,
 * caller frees) when the document or version is unknown or the database
 * fails. Runs inside the caller's transaction if one is open. */
int64_t consent_record(struct db *db, const struct consent_proof *proof, char **err);

/* Current version of every document, for forms:
 * [{key, title, version_id, version, hash, required, text}]. required is 1
 * for the terms everyone must accept, 0 for optional consents. */
json_t *consent_current_documents(struct db *db);

/* ---- additions for the consent workflow (core/consent.c) ------------------ */

#define CONSENT_TEXT_MAX (512 * 1024) /* bytes of one version's text */
#define CONSENT_TITLE_MAX 200          /* bytes of a title */
#define CONSENT_AGENT_MAX 400          /* bytes of a user agent kept in a proof */

/* consent_record with acted_by: the account holder who decided for a
 * family member sharing the address (0 when the person decided). */
int64_t consent_record_as(struct db *db, const struct consent_proof *proof, int64_t acted_by,
                          char **err);

/* A person's status towards the required terms: "accepte", "en_attente",
 * "refuse", "a_renouveler", or NULL when the club has published no terms
 * (or on a database error). Static strings. Lists should rather join the
 * view: LEFT JOIN consent_person_status cs ON cs.person_id = p.id and read
 * cs.status (migrations/0005_consent.sql). */
const char *consent_status(struct db *db, int64_t person_id);

/* Publishes a new version of document key with its title and text (UTF-8,
 * capped above) and makes it current; people who accepted an older version
 * of a required document become "a_renouveler". Returns the version id, or
 * -1 with *err (French). */
int64_t consent_publish(struct db *db, const char *key, const char *title, const char *text,
                        int64_t published_by, char **err);

/* Every document with its versions (without their texts, except the
 * current one): [{key, title, required, current: {...} | null,
 * versions: [{version_id, version, hash, title, published_at}]}]. */
json_t *consent_documents_json(struct db *db);

/* A person's consent record: {person_id, status, documents: [{key, title,
 * required, version_id, last: {decision, version_id, version, current, at,
 * channel} | null}], proofs: [... newest first, at most 200]}. NULL when
 * the person does not exist. */
json_t *consent_person_json(struct db *db, int64_t person_id);

/* Proof rows as CSV (UTF-8 with a BOM, ';' separated, CRLF), one line per
 * decision, oldest first, for document key (NULL: all). Cells that a
 * spreadsheet would read as a formula (starting with = + - @, a tab or a
 * CR) get a leading apostrophe. Returns the text (caller frees) and its
 * length, or NULL with *err. */
char *consent_export_csv(struct db *db, const char *key, size_t *len, char **err);

/* Decision and channel names as stored ("accepted", "mail_link", ...) and
 * back. The parse functions return -1 for an unknown name. */
const char *consent_decision_name(enum consent_decision decision);
const char *consent_channel_name(enum consent_channel channel);
int consent_decision_parse(const char *name);

/* ---- the workflow in the server (core/api_consent.c) ----------------------- */

struct app;

/* Listens for the end of imports (consent.lua apres_import decides whether
 * to ask the clients at once) and starts the reminder timer (consent.lua
 * relances). Returns 0. */
int consent_service_start(struct app *app, char **err);
void consent_service_stop(struct app *app);

/* Registers the /api/v1/consents routes. */
void api_consent_register_routes(struct app *app);

#endif
