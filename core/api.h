/*
 * Helpers shared by the JSON API handlers (core/auth.c, core/api_*.c):
 * reading a JSON request body, validation errors with per-field French
 * messages, path parameters, and the field catalogue of the running script
 * version. The routes themselves live in the api_*.c files.
 */
#ifndef LICOL_API_H
#define LICOL_API_H

#include <jansson.h>
#include <stdint.h>

#include "app.h"
#include "fields.h"
#include "http.h"

struct script_version;
struct script_state;

/* Parses req's body as a JSON object. On failure responds 400 (code
 * "bad_request", French message) and returns NULL; on success returns a
 * new reference. An empty body gives an empty object. */
json_t *api_read_object(struct http_request *req);

/* Responds 422 {"error": {"code": "validation", "message", "fields"}}.
 * Takes ownership of fields (an object field key -> French message). */
void api_respond_validation(struct http_request *req, json_t *fields);

/* Responds with an error whose message is built from a format. */
void api_respond_errorf(struct http_request *req, int status, const char *code, const char *fmt,
                        ...) __attribute__((format(printf, 4, 5)));

/* Reads the query parameter name as an integer: fallback when absent or
 * empty, max when larger than max, -1 when it is not an integer or is
 * below min (the caller responds 422). */
int api_query_int(struct http_request *req, const char *name, int fallback, int min, int max);

/* Responds 503 "busy" when another connection had the lock (an import
 * writing), otherwise 500, and logs the SQLite message. */
void api_respond_db_error(struct http_request *req, struct app *app, const char *what);

/* Returns 1 when the last statement on app's connection failed because
 * another connection had the lock (an import writing), so that a handler
 * responds with api_respond_db_error rather than its own error. */
int api_db_busy(struct app *app);

/* Reads the path parameter name as a positive integer id. Returns it, or 0
 * after responding 404 when it is not one. */
int64_t api_param_id(struct http_request *req, const char *name);

/* The current script version (reference held) and its catalogue and main
 * state, or, while the server runs without a script engine (unit tests),
 * a catalogue of the core fields only and no state. Release with
 * api_scripts_release. */
struct api_scripts {
    struct script_version *version;
    const struct fields_catalogue *fields;
    struct script_state *state;
};
void api_scripts_acquire(struct app *app, struct api_scripts *out);
void api_scripts_release(struct api_scripts *scripts);

/* Person roles as a JSON array of role names, from a bit mask. */
json_t *api_roles_json(unsigned roles);

/* Parses a comma-separated list of role names (as group_concat returns
 * them) into a bit mask; unknown names are ignored. */
unsigned api_roles_parse(const char *list);

/* Role name for a single bit, or NULL. */
const char *api_role_name(unsigned bit);

/* Text column as a JSON string, or JSON null when the column is NULL. */
json_t *api_column_json(void *stmt, int column);

/* Data generation: a number that changes whenever the database may have
 * changed, from rows written by the loop thread's connection
 * (sqlite3_total_changes64), SQLite's data_version (commits by other
 * connections such as the import worker or the CLI) and api_data_changed()
 * calls. Cached list responses and sessions are used only while it stays
 * the same. */
void api_data_changed(void);
uint64_t api_data_generation(struct app *app);

struct auth_user;

/* Writes one audit_log row now (actor: the user's person, NULL for an API
 * token). Returns 0 or -1 on a database error. */
int api_audit(struct app *app, const struct auth_user *user, int64_t person_id,
              const char *action, const char *field, const char *old_value,
              const char *new_value);

/* Family links of a person as the rider record shows them:
 * [{link_id, person: {id, last_name, first_name}, relationship,
 * is_legal_guardian, is_payer, direction: "parent"|"child"}]. */
json_t *api_family_links_json(struct app *app, int64_t person_id);

/* Creates a person from fields (validated as POST /api/v1/riders does,
 * without the "roles" key) with roles, inside one transaction in which
 * in_tx(arg, new id) also runs (NULL: nothing more). Returns the new id,
 * or 0 after responding (422, 409 or 500; in_tx responds itself when it
 * returns non-zero). The caller runs api_rider_created_hook afterwards. */
int64_t api_rider_create(struct app *app, struct http_request *req, const struct auth_user *user,
                         json_t *fields, unsigned roles, int (*in_tx)(void *arg, int64_t id),
                         void *arg);

/* Fills empty fields of person id with the values of fields (an object as
 * for PATCH /api/v1/riders/:id), group by group. groups is a
 * NULL-terminated list of NULL-terminated key lists. A group is filled only
 * when the record has none of its values and all the new ones are valid. A group
 * with "postcode" also takes the form's country when the record has none,
 * and is skipped when the record has another one. The values are
 * validated and audited as a PATCH by user would be, and nothing is filled
 * when user lacks "rider.update" on the person. One transaction reads the
 * record, writes the values and runs in_tx(arg, id). Stored values are
 * never replaced, and invalid or taken ones are skipped. Sets *filled to the number of fields filled.
 * Returns 0, or -1 after responding (404, 403, 422, 409 or 500; in_tx
 * responds itself when it returns non-zero). */
int api_rider_fill_empty(struct app *app, struct http_request *req, const struct auth_user *user,
                         int64_t id, json_t *fields, const char *const *const *groups,
                         int (*in_tx)(void *arg, int64_t id), void *arg, size_t *filled);

/* Runs the plugins' person_created hooks for a person created by
 * api_rider_create, after its commit. Returns {plugin: returned value} of
 * the plugins that returned something (new reference), or NULL. */
json_t *api_rider_created_hook(struct app *app, int64_t id);

/* Reads the people a bulk mail action targets from body:
 * "import_run_id" (the people an import created or updated), "person_ids"
 * (at most RECOVERY_MAX_PEOPLE positive ids) or "person_id". Returns how
 * many, with *ids (caller frees) and *run_id (0 unless an import was
 * named); 0 with *run_id 0 when body names none of them (nothing
 * responded); -1 after responding 404, 422 or 500. */
long api_read_person_selection(struct app *app, struct http_request *req, json_t *body,
                               int64_t **ids, int64_t *run_id);

/* Route registration of each API file. */
void api_riders_register_routes(struct app *app);
void api_riders_list_register_routes(struct app *app);
void api_family_register_routes(struct app *app);
void api_misc_register_routes(struct app *app);
void api_import_register_routes(struct app *app);

/* Returns 1 while an import or an undo runs in the thread pool. */
int api_import_busy(void);

/* Asks a running import to stop (server shutdown): it fails and changes
 * nothing. */
void api_import_cancel(void);

struct import_options;

/* Starts an import of the file at path in the thread pool, as an upload
 * does; the run owns the file from then on (a real run deletes it when
 * done). Returns 0 with *run_id, or -1 with *err (French, caller frees),
 * for example while another import runs. */
int api_import_start(struct app *app, const char *path, const struct import_options *options,
                     int64_t confirms, int64_t *run_id, char **err);

/* Called on the loop thread when a run started by api_import_start (or an
 * upload) ends. The mail and automatic-update subsystems listen. */
typedef void (*api_import_finished_fn)(struct app *app, int64_t run_id, int dry_run, int failed,
                                       void *arg);

#define API_IMPORT_MAX_LISTENERS 4

/* Adds a listener. Returns 0, or -1 when API_IMPORT_MAX_LISTENERS are set. */
int api_import_add_listener(api_import_finished_fn cb, void *arg);

#endif
