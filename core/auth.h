/*
 * Authentication and authorisation of API requests.
 *
 * A request is authenticated by the session cookie "licol_session" (browser)
 * or by "Authorization: Bearer <token>" (integrators' API tokens, scoped to
 * one role). State-changing requests (POST, PUT, PATCH, DELETE) with a
 * session cookie must carry the session's CSRF token in the X-CSRF-Token
 * header. Permissions are decided by scripts/roles.lua through the script
 * engine; the server enforces the decision.
 */
#ifndef LICOL_AUTH_H
#define LICOL_AUTH_H

#include <stdint.h>

#include "app.h"
#include "http.h"

enum auth_role_bit {
    AUTH_ROLE_GERANT = 1 << 0,
    AUTH_ROLE_EMPLOYE = 1 << 1,
    AUTH_ROLE_CLIENT = 1 << 2,
    AUTH_ROLE_VISITEUR = 1 << 3,
    AUTH_ROLE_COMPTABLE = 1 << 4,
    AUTH_ROLE_PROPRIETAIRE = 1 << 5,
};

struct auth_user {
    int64_t person_id;     /* the person logged in; 0 for an API token */
    int64_t token_id;      /* the API token used, 0 for a session */
    int64_t session_id;
    unsigned roles;        /* enum auth_role_bit mask */
    char email[256];
    char csrf_token[64];
    int must_change_password;
};

/* Authenticates req and checks with roles.lua whether the user may perform action
 * (one of the actions listed in docs/scripts.md, e.g. "rider.update") on
 * the person target_person_id (0 when the action has no target person).
 * On success returns the user (owned by req, valid until the response).
 * Otherwise responds itself (401 not logged in, 403 forbidden or bad CSRF
 * token, with a French JSON error) and returns NULL. */
const struct auth_user *auth_require(struct app *app, struct http_request *req,
                                     const char *action, int64_t target_person_id);

/* Same check without responding: returns 1 when allowed. user may come from
 * auth_require for another action. */
int auth_allowed(struct app *app, const struct auth_user *user, const char *action,
                 int64_t target_person_id);

/* Authenticates req (session cookie with its CSRF token on state-changing
 * methods, or API token) without any permission check. Returns the user
 * (owned by req), or NULL after responding 401 or 403 "csrf". */
const struct auth_user *auth_authenticate(struct app *app, struct http_request *req);

/* auth_authenticate without responding: on failure returns NULL with
 * *status (401 or 403) and the error's code and French message (static
 * strings). Usable when the headers are known but the body is not read yet
 * (upload prechecks). */
const struct auth_user *auth_identify(struct app *app, struct http_request *req, int *status,
                                      const char **code, const char **message);

/* auth_require and auth_allowed with target.role set (the role granted,
 * removed or given to an API token, for rider.roles.update and
 * tokens.manage). role may be NULL. */
const struct auth_user *auth_require_role(struct app *app, struct http_request *req,
                                          const char *action, int64_t target_person_id,
                                          const char *role);
int auth_allowed_role(struct app *app, const struct auth_user *user, const char *action,
                      int64_t target_person_id, const char *role);

/* Returns the person who holds, or should hold, the login of a family's
 * shared e-mail address: the person with a password for that address when
 * there is one; otherwise an adult legal guardian or payer, else the
 * oldest adult, else the oldest person (people without a birth date last,
 * then the lowest id). Returns 0 when nobody has the address, -1 on a
 * database error. */
int64_t auth_family_account_holder(struct db *db, const char *email);

/* Sets a person's password hash (password_hash() output), clears
 * must_change_password, writes an audit row and voids the person's unused
 * mail links. Refuses (-1, *err_fr set, caller frees) when another person
 * with the same e-mail address already has a password: one login per
 * address. Returns 0. The caller handles the transaction. */
int auth_set_password(struct db *db, int64_t person_id, const char *hash, char **err_fr);

/* Registers /api/v1/session (login, logout, current user) and the account
 * routes (password change, API tokens). */
void auth_register_routes(struct app *app);

#endif
