/*
 * Automatic update from the federation file: downloads the licensee file on
 * a schedule or on request, and hands a new file to the import
 * (api_import_start) with the safe default policy.
 *
 * scripts/federation.lua (optional) describes the request: URL, method,
 * extra headers, body and whether to send the configured credentials. The
 * credentials (fetch_user, fetch_password) are added here, never read from
 * the script. Downloads use libcurl's multi interface on the loop
 * (core/curl_uv.h) and are written to a temporary file under var_dir,
 * removed on failure. Conditional requests (If-None-Match,
 * If-Modified-Since) reuse the validators of the last good download, and a
 * file whose SHA-256 was already applied is never imported again.
 *
 * Every fetch leaves a row in fetch_run (migrations/0007_fetch.sql). One
 * fetch at a time, and none while an import runs: a run that would overlap
 * is skipped and logged. Everything runs on the loop thread.
 */
#ifndef LICOL_FETCH_H
#define LICOL_FETCH_H

#include <jansson.h>
#include <stdint.h>
#include <time.h>

struct app;
struct fetch;

enum fetch_schedule_kind { FETCH_SCHEDULE_OFF = 0, FETCH_SCHEDULE_DAILY, FETCH_SCHEDULE_EVERY };

/* A parsed fetch_schedule value. */
struct fetch_schedule {
    enum fetch_schedule_kind kind;
    int hour, minute;           /* DAILY: local time of day */
    unsigned interval_seconds;  /* EVERY */
};

/* Parses "" (off), "daily HH:MM" (local time), or "every N hours",
 * "every N minutes", "every N seconds" (singular accepted, N >= 1).
 * Returns 0, or -1 with *err (French, caller frees). */
int fetch_schedule_parse(const char *text, struct fetch_schedule *out, char **err);

/* Returns the first time strictly after now at which a DAILY schedule
 * fires, or now + interval for EVERY, or 0 when OFF. */
time_t fetch_schedule_next(const struct fetch_schedule *schedule, time_t now);

/* Starts the subsystem on app's loop and database: marks fetches left
 * unfinished by a stopped process, parses the schedule and arms its timer.
 * Call once, before other threads start (the first curl_uv_new runs
 * curl_global_init). Returns NULL with *err (French, caller frees) when the
 * schedule is invalid or libcurl cannot start. */
struct fetch *fetch_start(struct app *app, char **err);

/* Applies app->config again after SIGHUP: a changed schedule is re-armed;
 * an invalid one is logged and the previous one kept. The transfer
 * settings apply from the next attempt. */
void fetch_reload(struct fetch *fetch);

/* Cancels a download in progress (its row records the interruption),
 * stops the retry wait and closes the timers and libcurl's handles so the
 * loop can end. A running import is left to finish; its end is still
 * recorded. */
void fetch_stop(struct fetch *fetch);

/* Frees the subsystem after fetch_stop and after the loop ended. NULL is
 * accepted. */
void fetch_free(struct fetch *fetch);

enum fetch_trigger { FETCH_TRIGGER_SCHEDULE = 0, FETCH_TRIGGER_MANUAL };

/* Reason fetch_run_now did not start a download. */
enum fetch_refusal {
    FETCH_REFUSED_NONE = 0,
    FETCH_REFUSED_BUSY,           /* a fetch or an import is in progress */
    FETCH_REFUSED_NOT_CONFIGURED, /* the source gives no URL */
    FETCH_REFUSED_SOURCE,         /* federation.lua failed or returned an invalid request */
    FETCH_REFUSED_INTERNAL,       /* database or memory */
};

/* Starts a fetch now. actor_id is the person who asked (0: the schedule,
 * or an API token). Returns the fetch_run id with the download started, or
 * 0 with *refusal and *err (French, caller frees) when it did not start.
 * A refusal for FETCH_REFUSED_SOURCE still records a failed fetch_run row,
 * whose id is stored in *failed_run_id (0 otherwise). */
int64_t fetch_run_now(struct fetch *fetch, enum fetch_trigger trigger, int64_t actor_id,
                      enum fetch_refusal *refusal, int64_t *failed_run_id, char **err);

/* The status for GET /api/v1/fetch: {configured, source_error, schedule,
 * schedule_label, next_run_at, running, phase, retry_at, skipped, last,
 * history}. New reference, or NULL on a database error. */
json_t *fetch_status_json(struct fetch *fetch);

/* One fetch_run row as JSON, or NULL when not found. */
json_t *fetch_run_json(struct fetch *fetch, int64_t run_id);

/* Registers GET /api/v1/fetch and POST /api/v1/fetch/run (core/api_fetch.c).
 * app->fetch may be NULL (no subsystem): the routes then respond 503. */
void api_fetch_register_routes(struct app *app);

#endif
