/*
 * Mails to riders: the server's mail service (the outbox worker thread
 * started with the configuration) and the password-recovery mails.
 *
 * Recovery mails give a person a link to choose a password: an
 * 'invitation' token after an import or when staff send them, a 'reset'
 * token for the self-service "mot de passe oublié". One mail per address:
 * people of a family who share an address get one mail, sent to the
 * family's account holder (auth_family_account_holder), which names the
 * family members the account gives access to.
 */
#ifndef LICOL_RECOVERY_H
#define LICOL_RECOVERY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "app.h"
#include "outbox.h"

#define RECOVERY_MAX_PEOPLE 20000 /* people in one request */

/* ---- mail service (core/api_mail.c) ---------------------------------------- */

/* Starts the outbox worker with the mail keys of app's configuration.
 * Without smtp_url, or when the worker cannot start, mails stay queued
 * and a warning is logged: the server still starts. Returns 0. */
int mail_service_start(struct app *app, char **err);

/* Restarts the worker with app's (reloaded) configuration. */
void mail_service_reload(struct app *app);

/* Stops the worker; mails in flight go back to the queue. */
void mail_service_stop(struct app *app);

/* Fills cfg for outbox_queue_template from app's configuration (sender,
 * templates in <scripts_dir>/mail). The strings point into app->config
 * and a static buffer: use cfg before the next call. */
void mail_service_config(struct app *app, struct outbox_config *cfg);

/* Tells the worker that mails were queued. */
void mail_service_wake(void);

/* Registers GET /api/v1/outbox and POST /api/v1/outbox/:id/retry. */
void api_mail_register_routes(struct app *app);

/* ---- recovery mails (core/recovery.c) -------------------------------------- */

/* Links in mails: the public page and its fragment. The token travels in
 * the fragment (#jeton=...), so it is never sent to the server in a
 * request line or a Referer header. */
#define RECOVERY_PAGE "/choisir-mot-de-passe.html"

struct recovery_request {
    const int64_t *person_ids;
    size_t count;
    int64_t import_run_id;  /* recorded on the outbox rows; 0 when none */
    const char *token_kind; /* "invitation" or "reset" */
    int skip_already_sent;  /* 1: skip addresses already sent this run's mail */
};

/* Queues one recuperation mail per distinct address among the people,
 * addressed to the address's account holder, inside one transaction.
 * Returns 0 and sets *result to {queued, addresses, already_sent,
 * without_email: [{id, name, reason}]}, or -1 with *err (French). */
int recovery_send(struct app *app, const struct recovery_request *request, json_t **result,
                  char **err);

/* The people an import run created or updated (ids, caller frees), in id
 * order. Returns the count, or -1 with *err. */
long recovery_import_people(struct db *db, int64_t run_id, int64_t **ids, char **err);

/* The display names of the people who share email, other than holder:
 * "Léa Martin, Hugo Martin", or "" (caller frees). */
char *recovery_family_names(struct db *db, const char *email, int64_t holder);

/* Formats the expiry of a token created now with ttl_seconds, in French
 * local time ("18/12/2026 à 20:15"). */
void recovery_expiry_text(long ttl_seconds, char *out, size_t size);

/* Registers the password routes: POST /api/v1/recovery-mails, POST
 * /api/v1/password/forgot, GET /api/v1/password/reset/:token, POST
 * /api/v1/password/reset (core/api_recovery.c). */
void api_recovery_register_routes(struct app *app);

#endif
