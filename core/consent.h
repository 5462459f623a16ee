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

#endif
