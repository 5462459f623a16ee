/*
 * Automatic update from the federation file (see fetch.h for the contract).
 *
 * Divisions: the schedule (parsing, next time, timer), the request from
 * scripts/federation.lua, the fetch_run rows, one download attempt on
 * curl_uv with its classification and retries, the hand-over to the import
 * and its end, start/stop, and the status for the API. The HTTP routes are
 * in api_fetch.c; the import itself is api_import_start's business.
 *
 * A fetch ("job") goes through three phases: download (a transfer is in
 * progress), retry wait (the backoff timer runs) and import (the file was
 * handed to the import, whose end a listener reports). The job ends with
 * one outcome written to its fetch_run row.
 */
#include "fetch.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <lua.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api.h"
#include "app.h"
#include "curl_uv.h"
#include "import.h"
#include "log.h"
#include "script.h"
#include "util.h"

#define FETCH_MAX_URL 2048
#define FETCH_MAX_HEADERS 32
#define FETCH_MAX_HEADER_NAME 64
#define FETCH_MAX_HEADER_VALUE 1024
#define FETCH_MAX_BODY (64 * 1024)
#define FETCH_MAX_VALIDATOR 512       /* ETag or Last-Modified kept; longer ones are ignored */
#define FETCH_MAX_REDIRECTS 5L
#define FETCH_MAX_RETRY_DELAY_MS (6LL * 3600 * 1000)
#define FETCH_MAX_INTERVAL_SECONDS (366U * 24 * 3600)
#define FETCH_TIMER_SLICE_MS (5LL * 60 * 1000) /* re-read the wall clock at least this often */
#define FETCH_HISTORY 30
#define FETCH_ERROR_SIZE 1024

enum job_phase { PHASE_DOWNLOAD = 0, PHASE_RETRY_WAIT, PHASE_IMPORT };

/* The request described by federation.lua, validated. */
struct fetch_request {
    char url[FETCH_MAX_URL]; /* http or https, without credentials */
    int post;
    struct curl_slist *headers;
    char *body; /* POST only; NULL for none */
    int basic_auth;
};

struct fetch_job {
    int64_t run_id;
    enum fetch_trigger trigger;
    enum job_phase phase;
    struct fetch_request request;
    char sent_etag[FETCH_MAX_VALIDATOR];
    char sent_last_modified[FETCH_MAX_VALIDATOR];
    int attempt; /* 1 for the first */
    int64_t retry_at_ms;
    char error[FETCH_ERROR_SIZE]; /* French, the last failure */

    /* The attempt in progress. */
    CURL *easy;
    struct curl_slist *attempt_headers;
    FILE *file;
    char path[1200];
    crypto_hash_sha256_state sha;
    unsigned long long bytes;
    size_t max_bytes; /* fetch_max_bytes when the attempt started; 0 = no cap */
    int too_large;
    int write_errno;

    /* Result of the last response. */
    long http_status;
    char etag[FETCH_MAX_VALIDATOR];
    char last_modified[FETCH_MAX_VALIDATOR];
    char sha256[crypto_hash_sha256_BYTES * 2 + 1];
    int64_t import_run_id;
};

struct fetch {
    struct app *app;
    struct curl_uv *curl;
    uv_timer_t schedule_timer;
    uv_timer_t retry_timer;
    int open_handles; /* the two timers and curl_uv, until their close callbacks */
    struct fetch_schedule schedule;
    char schedule_text[64];
    int64_t next_run_at_ms; /* 0 when the schedule is off */
    struct fetch_job *job;  /* NULL when idle */
    char skipped_at[32];
    char skipped_reason[256];
    int warned_not_configured; /* logged once until a fetch starts again */
    int stopping;
};

/* The import listener is registered once per process and cannot be
 * removed, so it reaches the running subsystem through this pointer. */
static struct fetch *active_fetch;
static int listener_registered;

static void import_finished(struct app *app, int64_t run_id, int dry_run, int failed, void *arg);
static void start_attempt(struct fetch *f);

/* ---- time ------------------------------------------------------------------ */

static int64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Writes ms since the epoch as yyyy-mm-ddThh:mm:ssZ. */
static void format_utc(int64_t ms, char *out, size_t size)
{
    time_t seconds = (time_t)(ms / 1000);
    struct tm tm;

    gmtime_r(&seconds, &tm);
    strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Parses yyyy-mm-ddThh:mm:ssZ. Returns ms since the epoch, or 0. */
static int64_t parse_utc(const char *text)
{
    struct tm tm;

    memset(&tm, 0, sizeof(tm));
    if (!text || !strptime(text, "%Y-%m-%dT%H:%M:%SZ", &tm))
        return 0;
    return (int64_t)timegm(&tm) * 1000;
}

/* ---- schedule -------------------------------------------------------------- */

int fetch_schedule_parse(const char *text, struct fetch_schedule *out, char **err)
{
    char unit[16], extra;
    unsigned long long count, seconds;
    int hour, minute;

    *err = NULL;
    memset(out, 0, sizeof(*out));
    while (isspace((unsigned char)*text))
        text++;
    if (*text == '\0')
        return 0;

    if (sscanf(text, "daily %d:%d %c", &hour, &minute, &extra) == 2 && hour >= 0 && hour <= 23 &&
        minute >= 0 && minute <= 59) {
        out->kind = FETCH_SCHEDULE_DAILY;
        out->hour = hour;
        out->minute = minute;
        return 0;
    }

    if (sscanf(text, "every %llu %15s %c", &count, unit, &extra) == 2 && count >= 1 &&
        count <= FETCH_MAX_INTERVAL_SECONDS && isdigit((unsigned char)text[6])) {
        if (!strcmp(unit, "hours") || !strcmp(unit, "hour"))
            seconds = count * 3600;
        else if (!strcmp(unit, "minutes") || !strcmp(unit, "minute"))
            seconds = count * 60;
        else if (!strcmp(unit, "seconds") || !strcmp(unit, "second"))
            seconds = count;
        else
            seconds = 0;
        if (seconds >= 1 && seconds <= FETCH_MAX_INTERVAL_SECONDS) {
            out->kind = FETCH_SCHEDULE_EVERY;
            out->interval_seconds = (unsigned)seconds;
            return 0;
        }
    }

    *err = str_printf("Programmation « %s » invalide (fetch_schedule) : écrivez « daily HH:MM », "
                      "« every N hours », « every N minutes » ou « every N seconds », avec N "
                      "d'au moins 1 et au plus un an, ou laissez vide pour désactiver la mise à "
                      "jour automatique.",
                      text);
    return -1;
}

time_t fetch_schedule_next(const struct fetch_schedule *schedule, time_t now)
{
    struct tm tm;
    time_t at;

    switch (schedule->kind) {
    case FETCH_SCHEDULE_OFF:
        return 0;
    case FETCH_SCHEDULE_EVERY:
        return now + (time_t)schedule->interval_seconds;
    case FETCH_SCHEDULE_DAILY:
        break;
    }

    /* mktime normalises tm_mday past the end of the month, and tm_isdst = -1
     * lets it pick the offset in force on that day. */
    for (int days = 0; days <= 2; days++) {
        localtime_r(&now, &tm);
        tm.tm_mday += days;
        tm.tm_hour = schedule->hour;
        tm.tm_min = schedule->minute;
        tm.tm_sec = 0;
        tm.tm_isdst = -1;
        at = mktime(&tm);
        if (at > now)
            return at;
    }
    return now + 24 * 3600;
}

/* French description of the schedule, for the status page. */
static char *schedule_label(const struct fetch_schedule *schedule)
{
    unsigned n = schedule->interval_seconds;

    switch (schedule->kind) {
    case FETCH_SCHEDULE_OFF:
        return strdup("désactivée");
    case FETCH_SCHEDULE_DAILY:
        return str_printf("tous les jours à %02d:%02d", schedule->hour, schedule->minute);
    case FETCH_SCHEDULE_EVERY:
        break;
    }
    if (n % 3600 == 0)
        return n == 3600 ? strdup("toutes les heures") : str_printf("toutes les %u heures", n / 3600);
    if (n % 60 == 0)
        return n == 60 ? strdup("toutes les minutes") : str_printf("toutes les %u minutes", n / 60);
    return n == 1 ? strdup("toutes les secondes") : str_printf("toutes les %u secondes", n);
}

static void schedule_cb(uv_timer_t *timer);

/* Arms the schedule timer for next_run_at_ms. Long waits are cut in slices
 * so that a change of the wall clock (daylight saving time, NTP) is
 * noticed. */
static void schedule_arm(struct fetch *f)
{
    int64_t delay;

    uv_timer_stop(&f->schedule_timer);
    if (f->stopping || f->next_run_at_ms == 0)
        return;
    delay = f->next_run_at_ms - now_ms();
    if (delay < 0)
        delay = 0;
    if (delay > FETCH_TIMER_SLICE_MS)
        delay = FETCH_TIMER_SLICE_MS;
    uv_timer_start(&f->schedule_timer, schedule_cb, (uint64_t)delay, 0);
}

/* Started time of the newest fetch, in ms, or 0. */
static int64_t last_started_ms(struct fetch *f)
{
    sqlite3_stmt *stmt = db_stmt(f->app->db, "SELECT started_at FROM fetch_run"
                                             " ORDER BY id DESC LIMIT 1");
    int64_t at = 0;

    if (!stmt)
        return 0;
    if (sqlite3_step(stmt) == SQLITE_ROW)
        at = parse_utc((const char *)sqlite3_column_text(stmt, 0));
    sqlite3_reset(stmt);
    return at;
}

/* Computes the first run of a schedule just set: the next daily time, or
 * one interval after the newest fetch (at once when that is past, so a
 * server that was down catches up). */
static void schedule_first(struct fetch *f)
{
    int64_t now = now_ms(), last;

    switch (f->schedule.kind) {
    case FETCH_SCHEDULE_OFF:
        f->next_run_at_ms = 0;
        break;
    case FETCH_SCHEDULE_DAILY:
        f->next_run_at_ms = (int64_t)fetch_schedule_next(&f->schedule, (time_t)(now / 1000)) * 1000;
        break;
    case FETCH_SCHEDULE_EVERY:
        last = last_started_ms(f);
        f->next_run_at_ms = last + (int64_t)f->schedule.interval_seconds * 1000;
        if (f->next_run_at_ms < now)
            f->next_run_at_ms = now;
        break;
    }
    schedule_arm(f);
}

static void schedule_cb(uv_timer_t *timer)
{
    struct fetch *f = timer->data;
    enum fetch_refusal refusal;
    int64_t failed_run_id, now = now_ms();
    char *err = NULL;

    if (now < f->next_run_at_ms) {
        schedule_arm(f);
        return;
    }
    if (f->schedule.kind == FETCH_SCHEDULE_EVERY) {
        /* Keep the rhythm of the slots; skip those already past. */
        int64_t step = (int64_t)f->schedule.interval_seconds * 1000;
        f->next_run_at_ms += step;
        if (f->next_run_at_ms <= now)
            f->next_run_at_ms = now + step;
    } else {
        f->next_run_at_ms = (int64_t)fetch_schedule_next(&f->schedule, (time_t)(now / 1000)) * 1000;
    }
    schedule_arm(f);

    if (fetch_run_now(f, FETCH_TRIGGER_SCHEDULE, 0, &refusal, &failed_run_id, &err) > 0) {
        f->warned_not_configured = 0;
    } else {
        if (refusal == FETCH_REFUSED_NOT_CONFIGURED && !f->warned_not_configured) {
            log_warn("fetch", "scheduled fetches skipped: no source URL configured (fetch_url)");
            f->warned_not_configured = 1;
        }
        free(err);
    }
}

/* ---- request from federation.lua ------------------------------------------ */

static void request_clear(struct fetch_request *request)
{
    curl_slist_free_all(request->headers);
    free(request->body);
    memset(request, 0, sizeof(*request));
}

/* The request of the shipped script, used when federation.lua is absent. */
static json_t *default_source(const struct config *config)
{
    json_t *request;

    if (!config->fetch_url[0])
        return json_null();
    request = json_pack("{s:s,s:s}", "url", config->fetch_url, "method", "GET");
    if (request && config->fetch_user[0])
        json_object_set_new(request, "auth", json_string("basic"));
    return request;
}

static int header_name_valid(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > FETCH_MAX_HEADER_NAME)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!isalnum(c) && c != '-' && c != '_')
            return 0;
    }
    return 1;
}

/* Headers Licol sets itself and a script may not. */
static int header_reserved(const char *name)
{
    static const char *const reserved[] = {"Authorization", "Proxy-Authorization",
                                           "If-None-Match", "If-Modified-Since", "Host",
                                           "Content-Length", "Transfer-Encoding"};

    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        if (strcasecmp(name, reserved[i]) == 0)
            return 1;
    }
    return 0;
}

static int request_headers(json_t *headers, struct fetch_request *request, char **err)
{
    const char *name;
    json_t *value;

    if (!headers || json_is_null(headers) || (json_is_array(headers) && json_array_size(headers) == 0))
        return 0;
    if (!json_is_object(headers)) {
        *err = strdup("federation.lua : headers doit être une table { Nom = \"valeur\" }.");
        return -1;
    }
    if (json_object_size(headers) > FETCH_MAX_HEADERS) {
        *err = str_printf("federation.lua : trop d'en-têtes (%d au plus).", FETCH_MAX_HEADERS);
        return -1;
    }
    json_object_foreach(headers, name, value) {
        const char *text = json_string_value(value);
        struct curl_slist *grown;
        char *line;

        if (!header_name_valid(name)) {
            *err = str_printf("federation.lua : nom d'en-tête « %.64s » invalide (lettres, "
                              "chiffres et tirets, %d caractères au plus).",
                              name, FETCH_MAX_HEADER_NAME);
            return -1;
        }
        if (header_reserved(name)) {
            *err = str_printf("federation.lua : l'en-tête %s est réservé à Licol. Les "
                              "identifiants viennent de la configuration (fetch_user, "
                              "fetch_password) : écrivez auth = \"basic\".",
                              name);
            return -1;
        }
        if (!text || strlen(text) > FETCH_MAX_HEADER_VALUE || strpbrk(text, "\r\n")) {
            *err = str_printf("federation.lua : la valeur de l'en-tête %s doit être un texte "
                              "d'une ligne de %d caractères au plus.",
                              name, FETCH_MAX_HEADER_VALUE);
            return -1;
        }
        line = str_printf("%s: %s", name, text);
        grown = line ? curl_slist_append(request->headers, line) : NULL;
        free(line);
        if (!grown) {
            *err = strdup("Mémoire insuffisante.");
            return -1;
        }
        request->headers = grown;
    }
    return 0;
}

/* Checks that url is an absolute http or https URL without credentials. */
static int request_url(const char *url, struct fetch_request *request, char **err)
{
    CURLU *parsed = curl_url();
    char *scheme = NULL, *user = NULL, *password = NULL;
    int rc = -1;

    if (!parsed) {
        *err = strdup("Mémoire insuffisante.");
        return -1;
    }
    if (strlen(url) >= sizeof(request->url) ||
        curl_url_set(parsed, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(parsed, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK) {
        *err = str_printf("Adresse de téléchargement « %.200s » invalide : attendu une adresse "
                          "complète http:// ou https://.",
                          url);
        goto done;
    }
    if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
        *err = str_printf("Adresse de téléchargement « %.200s » refusée : seules les adresses "
                          "http:// et https:// sont acceptées.",
                          url);
        goto done;
    }
    if (curl_url_get(parsed, CURLUPART_USER, &user, 0) == CURLUE_OK ||
        curl_url_get(parsed, CURLUPART_PASSWORD, &password, 0) == CURLUE_OK) {
        *err = strdup("L'adresse de téléchargement ne doit pas contenir d'identifiants : "
                      "renseignez fetch_user et fetch_password dans la configuration.");
        goto done;
    }
    snprintf(request->url, sizeof(request->url), "%s", url);
    rc = 0;
done:
    curl_free(scheme);
    curl_free(user);
    curl_free(password);
    curl_url_cleanup(parsed);
    return rc;
}

/* Fills request from the table source() returned, converted to JSON. */
static int request_from_json(const struct config *config, json_t *json,
                             struct fetch_request *request, char **err)
{
    json_t *method = json_object_get(json, "method");
    json_t *body = json_object_get(json, "body");
    json_t *auth = json_object_get(json, "auth");
    const char *url = json_string_value(json_object_get(json, "url"));

    if (!url || !url[0]) {
        *err = strdup("federation.lua : source() doit rendre une table avec url, ou nil.");
        return -1;
    }
    if (request_url(url, request, err) < 0)
        return -1;

    if (method && !json_is_null(method)) {
        const char *name = json_string_value(method);
        if (name && strcmp(name, "POST") == 0)
            request->post = 1;
        else if (!name || strcmp(name, "GET") != 0) {
            *err = strdup("federation.lua : method doit valoir \"GET\" ou \"POST\".");
            return -1;
        }
    }

    if (body && !json_is_null(body)) {
        const char *text = json_string_value(body);
        if (!request->post || !text) {
            *err = strdup("federation.lua : body doit être un texte, envoyé avec method = "
                          "\"POST\" seulement.");
            return -1;
        }
        if (strlen(text) > FETCH_MAX_BODY) {
            *err = str_printf("federation.lua : body dépasse %d octets.", FETCH_MAX_BODY);
            return -1;
        }
        request->body = strdup(text);
        if (!request->body) {
            *err = strdup("Mémoire insuffisante.");
            return -1;
        }
    }

    if (auth && !json_is_null(auth)) {
        const char *name = json_string_value(auth);
        if (!name || strcmp(name, "basic") != 0) {
            *err = strdup("federation.lua : auth doit valoir \"basic\" ou nil.");
            return -1;
        }
        if (!config->fetch_user[0]) {
            *err = strdup("federation.lua demande les identifiants (auth = \"basic\"), mais "
                          "fetch_user n'est pas renseigné dans la configuration.");
            return -1;
        }
        request->basic_auth = 1;
    }
    return request_headers(json_object_get(json, "headers"), request, err);
}

/* Asks federation.lua (or the default) for the request. Returns 1 with
 * *request filled, 0 when no source is configured, or -1 with *err. */
static int source_request(struct fetch *f, struct fetch_request *request, char **err)
{
    const struct config *config = &f->app->config;
    struct api_scripts scripts;
    json_t *result = NULL, *arg;
    time_t now = time(NULL);
    struct tm tm;
    int rc = -1;

    *err = NULL;
    memset(request, 0, sizeof(*request));
    localtime_r(&now, &tm);
    arg = json_pack("{s:s,s:b,s:s,s:i}", "fetch_url", config->fetch_url, "has_credentials",
                    config->fetch_user[0] != '\0', "club_name", config->club_name, "season",
                    tm.tm_year + 1900);
    api_scripts_acquire(f->app, &scripts);

    if (!scripts.state || script_module_count(scripts.state, SCRIPT_MOD_FEDERATION) == 0) {
        result = default_source(config);
    } else {
        lua_State *L = script_state_lua(scripts.state);
        int top = lua_gettop(L);

        script_push_function(scripts.state, SCRIPT_MOD_FEDERATION, 0, SCRIPT_FEDERATION_SOURCE);
        script_push_json(scripts.state, arg);
        if (script_call(scripts.state, 1, 1, "federation.lua source()") < 0) {
            const char *why = script_state_last_error(scripts.state);
            *err = str_printf("Le script federation.lua a échoué : %.600s", why ? why : "?");
        } else if (lua_isnil(L, -1)) {
            result = json_null();
        } else if (!lua_istable(L, -1)) {
            *err = strdup("federation.lua : source() doit rendre une table ou nil.");
        } else {
            result = script_to_json(scripts.state, -1);
            if (!result)
                *err = strdup("federation.lua : la table rendue par source() est illisible "
                              "(texte trop long ou tables trop imbriquées).");
        }
        lua_settop(L, top);
    }
    api_scripts_release(&scripts);
    json_decref(arg);

    if (result && json_is_null(result))
        rc = 0;
    else if (result && request_from_json(config, result, request, err) == 0)
        rc = 1;
    if (rc < 0) {
        request_clear(request);
        if (!*err)
            *err = strdup("federation.lua : source() doit rendre une table ou nil.");
    }
    json_decref(result);
    return rc;
}

/* ---- fetch_run rows ---------------------------------------------------------- */

static int64_t row_insert(struct fetch *f, enum fetch_trigger trigger, int64_t actor_id,
                          const char *url)
{
    sqlite3_stmt *stmt = db_stmt(f->app->db,
                                 "INSERT INTO fetch_run (started_at, trigger, actor_id, url)"
                                 " VALUES (?1, ?2, ?3, ?4)");
    char now[32];
    int64_t id = -1;

    if (!stmt)
        return -1;
    db_now(now, sizeof(now));
    sqlite3_bind_text(stmt, 1, now, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 2, trigger == FETCH_TRIGGER_MANUAL ? "manual" : "schedule", -1,
                      SQLITE_STATIC);
    if (actor_id > 0)
        sqlite3_bind_int64(stmt, 3, actor_id);
    db_bind_text_or_null(stmt, 4, url);
    if (sqlite3_step(stmt) == SQLITE_DONE)
        id = sqlite3_last_insert_rowid(db_handle(f->app->db));
    else
        log_error("fetch", "cannot record a fetch: %s", sqlite3_errmsg(db_handle(f->app->db)));
    sqlite3_reset(stmt);
    return id;
}

/* Writes the job's progress; with outcome set, also finishes the row. */
static void row_update(struct fetch *f, const struct fetch_job *job, const char *outcome)
{
    sqlite3_stmt *stmt = db_stmt(f->app->db,
                                 "UPDATE fetch_run SET attempts = ?2, http_status = ?3, bytes = ?4,"
                                 " sha256 = ?5, etag = ?6, last_modified = ?7, error = ?8,"
                                 " import_run_id = ?9, outcome = ?10,"
                                 " finished_at = CASE WHEN ?10 IS NULL THEN NULL ELSE ?11 END"
                                 " WHERE id = ?1");
    char now[32];

    if (!stmt)
        return;
    db_now(now, sizeof(now));
    sqlite3_bind_int64(stmt, 1, job->run_id);
    sqlite3_bind_int(stmt, 2, job->attempt);
    if (job->http_status > 0)
        sqlite3_bind_int64(stmt, 3, job->http_status);
    sqlite3_bind_int64(stmt, 4, (sqlite3_int64)job->bytes);
    db_bind_text_or_null(stmt, 5, job->sha256);
    db_bind_text_or_null(stmt, 6, job->etag);
    db_bind_text_or_null(stmt, 7, job->last_modified);
    db_bind_text_or_null(stmt, 8, job->error);
    if (job->import_run_id > 0)
        sqlite3_bind_int64(stmt, 9, job->import_run_id);
    db_bind_text_or_null(stmt, 10, outcome);
    sqlite3_bind_text(stmt, 11, now, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        log_error("fetch", "fetch %lld: cannot update its record: %s", (long long)job->run_id,
                  sqlite3_errmsg(db_handle(f->app->db)));
    sqlite3_reset(stmt);
}

/* Marks fetches left unfinished by a process that stopped. A fetch whose
 * import had started takes the import's result. */
static void rows_recover(struct fetch *f)
{
    sqlite3_stmt *stmt = db_stmt(
        f->app->db,
        "UPDATE fetch_run SET finished_at = ?1,"
        " outcome = CASE WHEN import_run_id IS NULL THEN 'failed'"
        "   WHEN (SELECT state FROM import_run WHERE id = import_run_id) IN ('done', 'undone')"
        "   THEN 'imported' ELSE 'import_failed' END,"
        " error = CASE WHEN import_run_id IS NOT NULL"
        "   AND (SELECT state FROM import_run WHERE id = import_run_id) IN ('done', 'undone')"
        "   THEN NULL ELSE 'Mise à jour interrompue par l''arrêt du serveur.' END"
        " WHERE outcome IS NULL");
    char now[32];

    if (!stmt)
        return;
    db_now(now, sizeof(now));
    sqlite3_bind_text(stmt, 1, now, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        log_error("fetch", "cannot recover unfinished fetches: %s",
                  sqlite3_errmsg(db_handle(f->app->db)));
    else if (sqlite3_changes(db_handle(f->app->db)) > 0)
        log_warn("fetch", "%d fetch(es) left unfinished by the previous process marked as ended",
                 sqlite3_changes(db_handle(f->app->db)));
    sqlite3_reset(stmt);
}

/* Removes the downloads a stopped process left in var_dir/fetch. At start
 * no fetch runs and no import has begun, so none of them is in use. */
static void remove_leftover_files(struct fetch *f)
{
    char dir[1100], path[1400];
    struct dirent *entry;
    DIR *listing;

    snprintf(dir, sizeof(dir), "%s/fetch", f->app->config.var_dir);
    listing = opendir(dir);
    if (!listing)
        return;
    while ((entry = readdir(listing)) != NULL) {
        if (strncmp(entry->d_name, "fetch-", 6) != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
        if (unlink(path) < 0)
            log_warn("fetch", "cannot remove leftover download %s: %s", path, strerror(errno));
        else
            log_info("fetch", "removed leftover download %s", path);
    }
    closedir(listing);
}

/* Loads the validators of the last good download of url into the job. */
static void load_validators(struct fetch *f, struct fetch_job *job)
{
    sqlite3_stmt *stmt = db_stmt(f->app->db,
                                 "SELECT etag, last_modified FROM fetch_run"
                                 " WHERE url = ?1 AND outcome IN ('imported', 'same_content',"
                                 " 'unchanged') AND (etag IS NOT NULL OR last_modified IS NOT NULL)"
                                 " ORDER BY id DESC LIMIT 1");

    if (!stmt)
        return;
    sqlite3_bind_text(stmt, 1, job->request.url, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        const char *etag = (const char *)sqlite3_column_text(stmt, 0);
        const char *modified = (const char *)sqlite3_column_text(stmt, 1);
        snprintf(job->sent_etag, sizeof(job->sent_etag), "%s", etag ? etag : "");
        snprintf(job->sent_last_modified, sizeof(job->sent_last_modified), "%s",
                 modified ? modified : "");
    }
    sqlite3_reset(stmt);
}

/* Returns 1 when a file with this SHA-256 is the one the last real import
 * applied (undone included, so that an import staff cancelled is not
 * brought back). */
static int content_already_applied(struct fetch *f, const char *sha256)
{
    /* Only the last real import counts: a file identical to it changes
     * nothing, but an older file published again after another one (A, B,
     * then A) must be applied again, or B's data would stay. An undone
     * last import is not applied again automatically. */
    sqlite3_stmt *stmt = db_stmt(f->app->db,
                                 "SELECT sha256 = ?1 FROM import_run WHERE dry_run = 0"
                                 " AND state IN ('done', 'undone') ORDER BY id DESC LIMIT 1");
    int found = 0;

    if (!stmt)
        return 0;
    sqlite3_bind_text(stmt, 1, sha256, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        found = sqlite3_column_int(stmt, 0);
    sqlite3_reset(stmt);
    return found;
}

/* ---- end of a job ------------------------------------------------------------ */

static void job_close_attempt(struct fetch_job *job)
{
    if (job->file) {
        fclose(job->file);
        job->file = NULL;
    }
    if (job->easy) {
        curl_easy_cleanup(job->easy);
        job->easy = NULL;
    }
    curl_slist_free_all(job->attempt_headers);
    job->attempt_headers = NULL;
}

static void job_remove_file(struct fetch_job *job)
{
    if (job->path[0] && unlink(job->path) < 0 && errno != ENOENT)
        log_warn("fetch", "fetch %lld: cannot remove %s: %s", (long long)job->run_id, job->path,
                 strerror(errno));
    job->path[0] = '\0';
}

static void job_free(struct fetch_job *job)
{
    job_close_attempt(job);
    request_clear(&job->request);
    free(job);
}

/* Records the outcome, logs it and makes the subsystem idle. */
static void job_finish(struct fetch *f, const char *outcome)
{
    struct fetch_job *job = f->job;

    if (strcmp(outcome, "imported") != 0)
        job_remove_file(job);
    row_update(f, job, outcome);
    if (job->error[0])
        log_warn("fetch", "fetch %lld ended: %s after %d attempt(s): %s", (long long)job->run_id,
                 outcome, job->attempt, job->error);
    else
        log_info("fetch", "fetch %lld ended: %s (HTTP %ld, %llu bytes, import run %lld)",
                 (long long)job->run_id, outcome, job->http_status, job->bytes,
                 (long long)job->import_run_id);
    f->job = NULL;
    job_free(job);
}

static void set_error(struct fetch_job *job, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(struct fetch_job *job, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(job->error, sizeof(job->error), fmt, ap);
    va_end(ap);
}

/* ---- import ------------------------------------------------------------------ */

/* A file name for the import history: the URL path's last segment, with
 * characters other than letters, digits, '.', '-' and '_' replaced. */
static void import_filename(const char *url, char *out, size_t size)
{
    CURLU *parsed = curl_url();
    char *path = NULL;
    const char *name = "";
    size_t len = 0;

    if (parsed && curl_url_set(parsed, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(parsed, CURLUPART_PATH, &path, 0) == CURLUE_OK)
        name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    for (const char *p = name; *p && len + 1 < size; p++) {
        unsigned char c = (unsigned char)*p;
        out[len++] = (isalnum(c) || c == '.' || c == '-' || c == '_') ? (char)c : '_';
    }
    out[len] = '\0';
    if (len == 0)
        snprintf(out, size, "licencies-federation.csv");
    curl_free(path);
    curl_url_cleanup(parsed);
}

/* Hands the downloaded file to the import, or finishes the job when its
 * content was already applied or the import cannot start. */
static void hand_to_import(struct fetch *f)
{
    struct fetch_job *job = f->job;
    struct import_options options;
    char *err = NULL;
    int64_t run_id = 0;

    if (content_already_applied(f, job->sha256)) {
        log_info("fetch", "fetch %lld: content %.12s was already applied", (long long)job->run_id,
                 job->sha256);
        job_finish(f, "same_content");
        return;
    }

    memset(&options, 0, sizeof(options));
    options.dry_run = 0;
    options.replace = 0;
    snprintf(options.format, sizeof(options.format), "auto");
    snprintf(options.source, sizeof(options.source), "auto");
    import_filename(job->request.url, options.filename, sizeof(options.filename));
    options.actor_id = 0;

    if (api_import_start(f->app, job->path, &options, 0, &run_id, &err) < 0) {
        set_error(job, "Le fichier a été téléchargé mais l'import n'a pas pu démarrer : %s",
                  err ? err : "erreur inconnue.");
        free(err);
        job_finish(f, "import_failed");
        return;
    }
    /* The import owns the file now and deletes it when done. */
    job->path[0] = '\0';
    job->import_run_id = run_id;
    job->phase = PHASE_IMPORT;
    row_update(f, job, NULL);
    log_info("fetch", "fetch %lld: new content %.12s handed to import run %lld",
             (long long)job->run_id, job->sha256, (long long)run_id);
}

static void import_finished(struct app *app, int64_t run_id, int dry_run, int failed, void *arg)
{
    struct fetch *f = active_fetch;
    struct fetch_job *job;
    sqlite3_stmt *stmt;

    (void)arg;
    (void)dry_run;
    if (!f || !f->job || f->job->phase != PHASE_IMPORT || f->job->import_run_id != run_id)
        return;
    job = f->job;
    if (!failed) {
        job_finish(f, "imported");
        return;
    }
    stmt = db_stmt(app->db, "SELECT error FROM import_run WHERE id = ?1");
    if (stmt) {
        sqlite3_bind_int64(stmt, 1, run_id);
        if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_text(stmt, 0))
            set_error(job, "L'import du fichier téléchargé a échoué (import n° %lld) : %s",
                      (long long)run_id, (const char *)sqlite3_column_text(stmt, 0));
        sqlite3_reset(stmt);
    }
    if (!job->error[0])
        set_error(job, "L'import du fichier téléchargé a échoué (import n° %lld).",
                  (long long)run_id);
    job_finish(f, "import_failed");
}

/* ---- one download attempt ---------------------------------------------------- */

static size_t write_cb(char *data, size_t size, size_t count, void *userdata)
{
    struct fetch_job *job = userdata;
    size_t len = size * count;
    size_t max = job->max_bytes;

    /* Counting here stops a response without Content-Length (or a lying
     * one, or a compressed one that expands) as soon as it passes the cap. */
    if (max > 0 && job->bytes + len > max) {
        job->too_large = 1;
        return 0;
    }
    if (fwrite(data, 1, len, job->file) != len) {
        job->write_errno = errno ? errno : EIO;
        return 0;
    }
    crypto_hash_sha256_update(&job->sha, (const unsigned char *)data, len);
    job->bytes += len;
    return len;
}

/* Copies a response header of the last request into out, or "" when it is
 * absent or longer than out. */
static void response_header(CURL *easy, const char *name, char *out, size_t size)
{
    struct curl_header *header = NULL;

    out[0] = '\0';
    if (curl_easy_header(easy, name, 0, CURLH_HEADER, -1, &header) == CURLHE_OK && header &&
        strlen(header->value) < size && !strpbrk(header->value, "\r\n"))
        snprintf(out, size, "%s", header->value);
}

/* Sets job->error for a failed attempt. Returns 1 when another attempt may
 * succeed (network trouble, timeout, server error), 0 otherwise. */
static int classify_failure(struct fetch *f, struct fetch_job *job, CURLcode result,
                            const char *curl_error)
{
    const struct config *config = &f->app->config;
    long status = job->http_status;
    curl_off_t connect_time = 0;

    if (job->too_large || result == CURLE_FILESIZE_EXCEEDED) {
        set_error(job, "Fichier trop volumineux : le téléchargement a été interrompu au-delà de "
                       "%zu octets (fetch_max_bytes).",
                  config->fetch_max_bytes);
        return 0;
    }
    if (job->write_errno) {
        set_error(job, "Impossible d'écrire le fichier téléchargé (%s) : %s.", job->path,
                  strerror(job->write_errno));
        return 0;
    }
    switch (result) {
    case CURLE_OK:
        break;
    case CURLE_OPERATION_TIMEDOUT:
        curl_easy_getinfo(job->easy, CURLINFO_CONNECT_TIME_T, &connect_time);
        if (connect_time == 0)
            set_error(job, "Le serveur n'a pas accepté la connexion en %u s "
                           "(fetch_connect_timeout_ms).",
                      config->fetch_connect_timeout_ms / 1000);
        else
            set_error(job, "Téléchargement trop long : interrompu après %u s (fetch_timeout_ms).",
                      config->fetch_timeout_ms / 1000);
        return 1;
    case CURLE_COULDNT_CONNECT:
        set_error(job, "Connexion impossible au serveur (%s) : il est arrêté ou refuse la "
                       "connexion.",
                  job->request.url);
        return 1;
    case CURLE_COULDNT_RESOLVE_HOST:
        set_error(job, "Serveur introuvable : le nom de l'adresse %s n'a pas pu être résolu.",
                  job->request.url);
        return 1;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
        set_error(job, "Connexion sécurisée refusée : le certificat du serveur n'a pas pu être "
                       "vérifié (%s).",
                  curl_error);
        return 0;
    case CURLE_TOO_MANY_REDIRECTS:
        set_error(job, "Trop de redirections (plus de %ld) depuis l'adresse %s.",
                  FETCH_MAX_REDIRECTS, job->request.url);
        return 0;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        set_error(job, "Adresse de téléchargement refusée (%s) : %s.", job->request.url,
                  curl_error);
        return 0;
    default:
        set_error(job, "Échec du téléchargement depuis %s : %s.", job->request.url, curl_error);
        return 1;
    }

    if (status == 401 || status == 403) {
        if (job->request.basic_auth)
            set_error(job, "Identifiants refusés par le serveur (HTTP %ld) : vérifiez fetch_user "
                           "et fetch_password.",
                      status);
        else
            set_error(job, "Le serveur demande une identification (HTTP %ld) : renseignez "
                           "fetch_user et fetch_password.",
                      status);
        return 0;
    }
    if (status == 404 || status == 410) {
        set_error(job, "Fichier introuvable sur le serveur (HTTP %ld) : vérifiez l'adresse %s.",
                  status, job->request.url);
        return 0;
    }
    if (status == 408 || status == 429 || status >= 500) {
        set_error(job, "Le serveur est indisponible (HTTP %ld).", status);
        return 1;
    }
    if (status == 200 && job->bytes == 0) {
        set_error(job, "Le serveur a envoyé un fichier vide.");
        return 0;
    }
    set_error(job, "Réponse inattendue du serveur (HTTP %ld).", status);
    return 0;
}

static void retry_cb(uv_timer_t *timer)
{
    struct fetch *f = timer->data;

    if (f->job && f->job->phase == PHASE_RETRY_WAIT && !f->stopping)
        start_attempt(f);
}

/* Waits before the next attempt: the base delay, doubled at each retry. */
static void schedule_retry(struct fetch *f)
{
    struct fetch_job *job = f->job;
    int64_t delay = f->app->config.fetch_retry_delay_ms;

    for (int i = 1; i < job->attempt && delay < FETCH_MAX_RETRY_DELAY_MS; i++)
        delay *= 2;
    if (delay > FETCH_MAX_RETRY_DELAY_MS)
        delay = FETCH_MAX_RETRY_DELAY_MS;
    job->phase = PHASE_RETRY_WAIT;
    job->retry_at_ms = now_ms() + delay;
    row_update(f, job, NULL);
    log_warn("fetch", "fetch %lld: attempt %d failed, retrying in %lld ms: %s",
             (long long)job->run_id, job->attempt, (long long)delay, job->error);
    uv_timer_start(&f->retry_timer, retry_cb, (uint64_t)delay, 0);
}

static void transfer_done(CURL *easy, CURLcode result, const char *error, void *data)
{
    struct fetch *f = data;
    struct fetch_job *job = f->job;
    unsigned char digest[crypto_hash_sha256_BYTES];
    int file_error = 0;

    (void)easy;
    curl_easy_getinfo(job->easy, CURLINFO_RESPONSE_CODE, &job->http_status);
    response_header(job->easy, "ETag", job->etag, sizeof(job->etag));
    response_header(job->easy, "Last-Modified", job->last_modified, sizeof(job->last_modified));
    if (job->file && fclose(job->file) != 0 && result == CURLE_OK) {
        job->write_errno = errno;
        file_error = 1;
    }
    job->file = NULL;

    if (result == CURLE_OK && !file_error && job->http_status == 304) {
        /* The server may omit the validators in a 304; keep those sent. */
        if (!job->etag[0])
            snprintf(job->etag, sizeof(job->etag), "%s", job->sent_etag);
        if (!job->last_modified[0])
            snprintf(job->last_modified, sizeof(job->last_modified), "%s",
                     job->sent_last_modified);
        job->error[0] = '\0';
        job_close_attempt(job);
        job_finish(f, "unchanged");
        return;
    }
    if (result == CURLE_OK && !file_error && job->http_status == 200 && job->bytes > 0) {
        crypto_hash_sha256_final(&job->sha, digest);
        sodium_bin2hex(job->sha256, sizeof(job->sha256), digest, sizeof(digest));
        job->error[0] = '\0';
        job_close_attempt(job);
        hand_to_import(f);
        return;
    }

    if (classify_failure(f, job, result, error) && job->attempt <= f->app->config.fetch_retries &&
        !f->stopping) {
        job_close_attempt(job);
        job_remove_file(job);
        job->etag[0] = job->last_modified[0] = '\0';
        schedule_retry(f);
        return;
    }
    job->etag[0] = job->last_modified[0] = '\0';
    job_close_attempt(job);
    job_finish(f, "failed");
}

/* Builds the easy handle of one attempt from the request and the current
 * configuration. Returns NULL with job->error set. */
static CURL *build_easy(struct fetch *f, struct fetch_job *job)
{
    const struct config *config = &f->app->config;
    struct curl_slist *headers = NULL;
    CURL *easy = curl_easy_init();
    char line[FETCH_MAX_VALIDATOR + 32];

    if (!easy) {
        set_error(job, "Impossible de préparer le téléchargement (libcurl).");
        return NULL;
    }
    for (struct curl_slist *item = job->request.headers; item; item = item->next)
        headers = curl_slist_append(headers, item->data);
    if (job->sent_etag[0]) {
        snprintf(line, sizeof(line), "If-None-Match: %s", job->sent_etag);
        headers = curl_slist_append(headers, line);
    }
    if (job->sent_last_modified[0]) {
        snprintf(line, sizeof(line), "If-Modified-Since: %s", job->sent_last_modified);
        headers = curl_slist_append(headers, line);
    }
    job->attempt_headers = headers;

    curl_easy_setopt(easy, CURLOPT_URL, job->request.url);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(easy, CURLOPT_MAXREDIRS, FETCH_MAX_REDIRECTS);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_USERAGENT, "Licol/" LICOL_VERSION);
    curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)config->fetch_connect_timeout_ms);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long)config->fetch_timeout_ms);
    if (config->fetch_max_bytes > 0)
        curl_easy_setopt(easy, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)config->fetch_max_bytes);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, job);
    if (headers)
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    if (job->request.post) {
        const char *body = job->request.body ? job->request.body : "";
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long)strlen(body));
        curl_easy_setopt(easy, CURLOPT_COPYPOSTFIELDS, body);
    }
    if (job->request.basic_auth) {
        curl_easy_setopt(easy, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
        curl_easy_setopt(easy, CURLOPT_USERNAME, config->fetch_user);
        curl_easy_setopt(easy, CURLOPT_PASSWORD, config->fetch_password);
    }
    if (config->fetch_insecure_tls) {
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
        if (strncmp(job->request.url, "https:", 6) == 0)
            log_warn("fetch", "fetch %lld: TLS certificate verification is off "
                              "(fetch_insecure_tls)",
                     (long long)job->run_id);
    } else if (config->fetch_ca_file[0]) {
        curl_easy_setopt(easy, CURLOPT_CAINFO, config->fetch_ca_file);
    }
    return easy;
}

/* Starts one attempt: a fresh temporary file and a transfer. A failure to
 * start ends the job. */
static void start_attempt(struct fetch *f)
{
    struct fetch_job *job = f->job;
    char dir[1100];

    job->attempt++;
    job->phase = PHASE_DOWNLOAD;
    job->bytes = 0;
    job->max_bytes = f->app->config.fetch_max_bytes;
    job->too_large = 0;
    job->write_errno = 0;
    job->http_status = 0;
    crypto_hash_sha256_init(&job->sha);

    snprintf(dir, sizeof(dir), "%s/fetch", f->app->config.var_dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        set_error(job, "Impossible de créer le dossier %s : %s.", dir, strerror(errno));
        job_finish(f, "failed");
        return;
    }
    snprintf(job->path, sizeof(job->path), "%s/fetch-%lld.csv", dir, (long long)job->run_id);
    job->file = fopen(job->path, "wb");
    if (!job->file) {
        set_error(job, "Impossible de créer le fichier temporaire %s : %s.", job->path,
                  strerror(errno));
        job->path[0] = '\0';
        job_finish(f, "failed");
        return;
    }
    job->easy = build_easy(f, job);
    if (!job->easy || curl_uv_add(f->curl, job->easy, transfer_done, f) < 0) {
        if (!job->error[0])
            set_error(job, "Impossible de lancer le téléchargement (libcurl).");
        job_close_attempt(job);
        job_finish(f, "failed");
        return;
    }
    log_info("fetch", "fetch %lld: attempt %d: %s %s%s", (long long)job->run_id, job->attempt,
             job->request.post ? "POST" : "GET", job->request.url,
             job->sent_etag[0] || job->sent_last_modified[0] ? " (conditional)" : "");
}

/* ---- starting a fetch -------------------------------------------------------- */

int64_t fetch_run_now(struct fetch *f, enum fetch_trigger trigger, int64_t actor_id,
                      enum fetch_refusal *refusal, int64_t *failed_run_id, char **err)
{
    const char *who = trigger == FETCH_TRIGGER_MANUAL ? "requested" : "scheduled";
    struct fetch_job *job;
    int found;

    *err = NULL;
    *refusal = FETCH_REFUSED_NONE;
    *failed_run_id = 0;
    if (f->stopping) {
        *refusal = FETCH_REFUSED_INTERNAL;
        *err = strdup("Le serveur s'arrête : la mise à jour n'a pas été lancée.");
        return 0;
    }
    if (f->job || api_import_busy()) {
        *refusal = FETCH_REFUSED_BUSY;
        *err = strdup(f->job ? "Une mise à jour est déjà en cours : attendez qu'elle se termine."
                             : "Un import est en cours : la mise à jour pourra être lancée quand "
                               "il sera terminé.");
        db_now(f->skipped_at, sizeof(f->skipped_at));
        snprintf(f->skipped_reason, sizeof(f->skipped_reason), "%s", *err);
        log_info("fetch", "%s fetch skipped: %s in progress", who,
                 f->job ? "another fetch" : "an import");
        return 0;
    }

    job = calloc(1, sizeof(*job));
    if (!job) {
        *refusal = FETCH_REFUSED_INTERNAL;
        *err = strdup("Mémoire insuffisante.");
        return 0;
    }
    job->trigger = trigger;
    found = source_request(f, &job->request, err);
    if (found == 0) {
        *refusal = FETCH_REFUSED_NOT_CONFIGURED;
        free(*err);
        *err = strdup("La mise à jour automatique n'est pas configurée : renseignez fetch_url "
                      "dans la configuration ou adaptez scripts/federation.lua.");
        job_free(job);
        return 0;
    }

    job->run_id = row_insert(f, trigger, actor_id, found > 0 ? job->request.url : NULL);
    if (job->run_id < 0) {
        *refusal = FETCH_REFUSED_INTERNAL;
        free(*err);
        *err = strdup("Impossible d'enregistrer la mise à jour (base de données).");
        job_free(job);
        return 0;
    }
    f->job = job;
    if (found < 0) {
        /* A broken source is a failed fetch that staff must see. */
        set_error(job, "%s", *err);
        *refusal = FETCH_REFUSED_SOURCE;
        *failed_run_id = job->run_id;
        job_finish(f, "failed");
        return 0;
    }

    log_info("fetch", "fetch %lld started (%s, person %lld)", (long long)job->run_id,
             trigger == FETCH_TRIGGER_MANUAL ? "manual" : "schedule", (long long)actor_id);
    load_validators(f, job);
    start_attempt(f);
    return job->run_id;
}

/* ---- start and stop ---------------------------------------------------------- */

struct fetch *fetch_start(struct app *app, char **err)
{
    struct fetch *f;

    *err = NULL;
    f = calloc(1, sizeof(*f));
    if (!f) {
        *err = strdup("Mémoire insuffisante.");
        return NULL;
    }
    f->app = app;
    if (fetch_schedule_parse(app->config.fetch_schedule, &f->schedule, err) < 0) {
        free(f);
        return NULL;
    }
    snprintf(f->schedule_text, sizeof(f->schedule_text), "%s", app->config.fetch_schedule);
    f->curl = curl_uv_new(app->loop);
    if (!f->curl) {
        *err = strdup("Impossible de démarrer libcurl pour la mise à jour automatique.");
        free(f);
        return NULL;
    }
    uv_timer_init(app->loop, &f->schedule_timer);
    uv_timer_init(app->loop, &f->retry_timer);
    f->schedule_timer.data = f->retry_timer.data = f;
    f->open_handles = 3;

    if (!listener_registered) {
        if (api_import_add_listener(import_finished, NULL) < 0)
            log_error("fetch", "no free import listener slot: fetches will not see imports end");
        else
            listener_registered = 1;
    }
    active_fetch = f;
    rows_recover(f);
    remove_leftover_files(f);
    schedule_first(f);
    if (f->schedule.kind != FETCH_SCHEDULE_OFF)
        log_info("fetch", "automatic update scheduled \"%s\"", f->schedule_text);
    return f;
}

void fetch_reload(struct fetch *f)
{
    struct fetch_schedule schedule;
    char *err = NULL;

    if (!f || f->stopping || strcmp(f->schedule_text, f->app->config.fetch_schedule) == 0)
        return;
    if (fetch_schedule_parse(f->app->config.fetch_schedule, &schedule, &err) < 0) {
        log_error("fetch", "invalid fetch_schedule \"%s\", keeping \"%s\"",
                  f->app->config.fetch_schedule, f->schedule_text);
        free(err);
        return;
    }
    f->schedule = schedule;
    snprintf(f->schedule_text, sizeof(f->schedule_text), "%s", f->app->config.fetch_schedule);
    log_info("fetch", "schedule changed to \"%s\"", f->schedule_text);
    schedule_first(f);
}

static void handle_closed(uv_handle_t *handle)
{
    struct fetch *f = handle->data;

    f->open_handles--;
}

static void curl_closed(void *data)
{
    struct fetch *f = data;

    f->curl = NULL;
    f->open_handles--;
}

void fetch_stop(struct fetch *f)
{
    struct fetch_job *job;

    if (!f || f->stopping)
        return;
    f->stopping = 1;
    job = f->job;
    if (job && job->phase == PHASE_DOWNLOAD) {
        curl_uv_remove(f->curl, job->easy);
        set_error(job, "Téléchargement interrompu par l'arrêt du serveur.");
        job_close_attempt(job);
        job_finish(f, "failed");
    } else if (job && job->phase == PHASE_RETRY_WAIT) {
        char previous[FETCH_ERROR_SIZE];
        snprintf(previous, sizeof(previous), "%s", job->error);
        set_error(job, "%.900s Nouvel essai annulé par l'arrêt du serveur.", previous);
        job_finish(f, "failed");
    }
    uv_timer_stop(&f->schedule_timer);
    uv_timer_stop(&f->retry_timer);
    uv_close((uv_handle_t *)&f->schedule_timer, handle_closed);
    uv_close((uv_handle_t *)&f->retry_timer, handle_closed);
    curl_uv_close(f->curl, curl_closed, f);
    log_info("fetch", "stopped");
}

void fetch_free(struct fetch *f)
{
    if (!f)
        return;
    if (!f->stopping) {
        /* Start-up failed after this subsystem started: close its handles
         * with one turn of the loop. */
        fetch_stop(f);
        uv_run(f->app->loop, UV_RUN_NOWAIT);
    }
    if (active_fetch == f)
        active_fetch = NULL;
    if (f->open_handles > 0) {
        /* NOTE: leaked on purpose; freeing would leave libuv pointing at it. */
        log_warn("fetch", "%d handle(s) still open at exit", f->open_handles);
        return;
    }
    if (f->job)
        job_free(f->job);
    free(f);
}

/* ---- status -------------------------------------------------------------------- */

static json_t *text_or_null(sqlite3_stmt *stmt, int column)
{
    const unsigned char *text = sqlite3_column_text(stmt, column);

    return text ? json_string((const char *)text) : json_null();
}

static json_t *int_or_null(sqlite3_stmt *stmt, int column)
{
    if (sqlite3_column_type(stmt, column) == SQLITE_NULL)
        return json_null();
    return json_integer(sqlite3_column_int64(stmt, column));
}

static const char *outcome_label(const char *outcome)
{
    static const struct {
        const char *outcome;
        const char *label;
    } labels[] = {
        {"unchanged", "Inchangé"},
        {"same_content", "Déjà appliqué"},
        {"imported", "Importé"},
        {"import_failed", "Échec de l'import"},
        {"failed", "Échec du téléchargement"},
    };

    for (size_t i = 0; outcome && i < sizeof(labels) / sizeof(labels[0]); i++) {
        if (strcmp(outcome, labels[i].outcome) == 0)
            return labels[i].label;
    }
    return "En cours";
}

#define ROW_COLUMNS                                                                                \
    "SELECT r.id, r.started_at, r.finished_at, r.trigger, r.actor_id, p.first_name,"              \
    " p.last_name, r.url, r.attempts, r.http_status, r.bytes, r.sha256, r.etag,"                  \
    " r.last_modified, r.outcome, r.error, r.import_run_id"                                        \
    " FROM fetch_run r LEFT JOIN person p ON p.id = r.actor_id"

static json_t *row_json(sqlite3_stmt *stmt)
{
    const char *outcome = (const char *)sqlite3_column_text(stmt, 14);
    json_t *actor = json_null();

    if (sqlite3_column_type(stmt, 4) != SQLITE_NULL) {
        const char *first = (const char *)sqlite3_column_text(stmt, 5);
        const char *last = (const char *)sqlite3_column_text(stmt, 6);
        char *name = str_printf("%s%s%s", first ? first : "", first && first[0] ? " " : "",
                                last ? last : "");
        actor = json_pack("{s:I,s:s}", "id", (json_int_t)sqlite3_column_int64(stmt, 4), "name",
                          name ? name : "");
        free(name);
    }
    return json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:i,s:o,s:I,s:o,s:o,s:o,s:o,s:s,s:o,s:o}",
                     "id", (json_int_t)sqlite3_column_int64(stmt, 0),
                     "started_at", text_or_null(stmt, 1),
                     "finished_at", text_or_null(stmt, 2),
                     "trigger", text_or_null(stmt, 3),
                     "actor", actor,
                     "url", text_or_null(stmt, 7),
                     "attempts", sqlite3_column_int(stmt, 8),
                     "http_status", int_or_null(stmt, 9),
                     "bytes", (json_int_t)sqlite3_column_int64(stmt, 10),
                     "sha256", text_or_null(stmt, 11),
                     "etag", text_or_null(stmt, 12),
                     "last_modified", text_or_null(stmt, 13),
                     "outcome", outcome ? json_string(outcome) : json_null(),
                     "outcome_label", outcome_label(outcome),
                     "error", text_or_null(stmt, 15),
                     "import_run_id", int_or_null(stmt, 16));
}

json_t *fetch_run_json(struct fetch *f, int64_t run_id)
{
    sqlite3_stmt *stmt = db_stmt(f->app->db, ROW_COLUMNS " WHERE r.id = ?1");
    json_t *row = NULL;

    if (!stmt)
        return NULL;
    sqlite3_bind_int64(stmt, 1, run_id);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        row = row_json(stmt);
    sqlite3_reset(stmt);
    return row;
}

static const char *phase_name(const struct fetch_job *job)
{
    if (!job)
        return NULL;
    switch (job->phase) {
    case PHASE_DOWNLOAD:
        return "download";
    case PHASE_RETRY_WAIT:
        return "retry_wait";
    case PHASE_IMPORT:
        return "import";
    }
    return NULL;
}

json_t *fetch_status_json(struct fetch *f)
{
    sqlite3_stmt *stmt = db_stmt(f->app->db, ROW_COLUMNS " ORDER BY r.id DESC LIMIT ?1");
    struct fetch_request request;
    json_t *status, *history;
    char *label = schedule_label(&f->schedule), *source_error = NULL;
    char next[32], retry[32];
    int configured;

    if (!stmt) {
        free(label);
        return NULL;
    }
    history = json_array();
    sqlite3_bind_int(stmt, 1, FETCH_HISTORY);
    while (sqlite3_step(stmt) == SQLITE_ROW)
        json_array_append_new(history, row_json(stmt));
    sqlite3_reset(stmt);

    configured = source_request(f, &request, &source_error) > 0;
    request_clear(&request);
    if (f->next_run_at_ms)
        format_utc(f->next_run_at_ms, next, sizeof(next));
    if (f->job && f->job->phase == PHASE_RETRY_WAIT)
        format_utc(f->job->retry_at_ms, retry, sizeof(retry));

    status = json_pack("{s:b,s:o,s:s,s:s,s:o,s:b,s:o,s:o,s:o,s:o,s:o}",
                       "configured", configured,
                       "source_error", source_error ? json_string(source_error) : json_null(),
                       "schedule", f->schedule_text,
                       "schedule_label", label ? label : "",
                       "next_run_at", f->next_run_at_ms ? json_string(next) : json_null(),
                       "running", f->job != NULL,
                       "phase", f->job ? json_string(phase_name(f->job)) : json_null(),
                       "retry_at", f->job && f->job->phase == PHASE_RETRY_WAIT
                                       ? json_string(retry) : json_null(),
                       "skipped", f->skipped_at[0] ? json_pack("{s:s,s:s}", "at", f->skipped_at,
                                                               "reason", f->skipped_reason)
                                                   : json_null(),
                       "last", json_array_size(history) ? json_incref(json_array_get(history, 0))
                                                        : json_null(),
                       "history", history);
    free(label);
    free(source_error);
    return status;
}
