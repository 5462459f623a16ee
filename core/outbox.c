/*
 * The outbox: queueing mails in SQLite and the sender that drains the queue
 * over SMTP. Contents:
 *   - queueing, recovery, retry, counts and listing (plain SQL);
 *   - the sender: slots (one reused easy handle each), the pump that claims
 *     due mails within the rate limit, and the completion handler that
 *     records the outcome and schedules retries.
 *
 * The database is the only shared state between a sender and the code that
 * queues mails, so mails queued by another process (the CLI import, say) are
 * found by the periodic poll.
 */
#include "outbox.h"
#include "mail_error.h"
#include "normalize.h"
#include "curl_uv.h"
#include "log.h"
#include "util.h"

#include <curl/curl.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LIST_LIMIT_MAX 500
#define SMTP_REPLY_MAX 300   /* bytes of the last server reply kept for last_error */
#define MAX_CONNECTIONS 16

/* ---- Queue --------------------------------------------------------------- */

void outbox_config_default(struct outbox_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->tls = OUTBOX_TLS_TRY;
    cfg->template_dir = LICOL_SOURCE_DIR "/scripts/mail";
    cfg->rate_per_second = 10;
    cfg->max_attempts = 8;
    cfg->backoff_base_seconds = 60;
    cfg->backoff_max_seconds = 6 * 3600;
    cfg->connect_timeout_ms = 10000;
    cfg->send_timeout_ms = 60000;
    cfg->connections = 1;
    cfg->poll_interval_ms = 5000;
}

static void format_time(time_t t, char *buf, size_t size)
{
    struct tm tm;

    gmtime_r(&t, &tm);
    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int outbox_queue(struct db *db, const struct outbox_config *cfg, const struct outbox_mail *mail,
                 const char *subject, const char *text, const char *html, int64_t *id,
                 char **err)
{
    struct mail_message msg = {
        .from_name = cfg->from_name,
        .from_address = cfg->from_address,
        .to_name = mail->to_name,
        .to_address = mail->to_address,
        .subject = subject,
        .text = text,
        .html = html,
    };
    char now[32];
    char *message_id = NULL;
    char *message = NULL;
    sqlite3_stmt *stmt;
    int rc = -1;

    *err = NULL;
    if (!mail->kind || !*mail->kind) {
        *err = strdup("Le type de mail est manquant.");
        return -1;
    }
    message = mail_build(&msg, &message_id, err);
    if (!message)
        return -1;

    db_now(now, sizeof(now));
    stmt = db_stmt(db, "INSERT INTO outbox (kind, state, sender, recipient, subject, message_id,"
                       " message, person_id, import_run_id, next_attempt_at, created_at)"
                       " VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)");
    if (!stmt) {
        *err = strdup("Le mail n'a pas pu être mis en file d'attente (erreur de base de données).");
        goto done;
    }
    sqlite3_bind_text(stmt, 1, mail->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, cfg->from_address, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, mail->to_address, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, subject, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 5, message_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 6, message, -1, SQLITE_STATIC);
    if (mail->person_id > 0)
        sqlite3_bind_int64(stmt, 7, mail->person_id);
    if (mail->import_run_id > 0)
        sqlite3_bind_int64(stmt, 8, mail->import_run_id);
    sqlite3_bind_text(stmt, 9, now, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        *err = str_printf("Le mail n'a pas pu être mis en file d'attente : %s",
                          sqlite3_errmsg(db_handle(db)));
        sqlite3_reset(stmt);
        goto done;
    }
    sqlite3_reset(stmt);
    if (id)
        *id = sqlite3_last_insert_rowid(db_handle(db));
    log_debug("outbox", "queued mail %lld (%s)", (long long)sqlite3_last_insert_rowid(db_handle(db)),
             mail->kind);
    rc = 0;

done:
    free(message);
    free(message_id);
    return rc;
}

int outbox_queue_template(struct db *db, const struct outbox_config *cfg,
                          const struct outbox_mail *mail, const char *template_name,
                          const struct mail_var *vars, size_t nvars, int64_t *id, char **err)
{
    struct mail_content content;
    int rc;

    if (mail_template_render(cfg->template_dir, template_name, vars, nvars, &content, err) < 0)
        return -1;
    rc = outbox_queue(db, cfg, mail, content.subject, content.text, content.html, id, err);
    mail_content_free(&content);
    return rc;
}

int outbox_recover(struct db *db)
{
    sqlite3_stmt *stmt = db_stmt(db, "UPDATE outbox SET state = 'queued' WHERE state = 'sending'");
    int count;

    if (!stmt)
        return -1;
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        log_error("outbox", "requeueing interrupted mails failed: %s",
                  sqlite3_errmsg(db_handle(db)));
        sqlite3_reset(stmt);
        return -1;
    }
    sqlite3_reset(stmt);
    count = sqlite3_changes(db_handle(db));
    if (count > 0)
        log_warn("outbox", "requeued %d mail(s) left in 'sending' by an interrupted run; they may "
                           "be delivered twice",
                 count);
    return count;
}

int outbox_retry(struct db *db, int64_t id)
{
    char now[32];
    sqlite3_stmt *stmt = db_stmt(db, "UPDATE outbox SET state = 'queued', attempts = 0,"
                                     " next_attempt_at = ?2 WHERE id = ?1 AND state = 'failed'");

    if (!stmt)
        return -1;
    db_now(now, sizeof(now));
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_text(stmt, 2, now, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        log_error("outbox", "retry of mail %lld failed: %s", (long long)id,
                  sqlite3_errmsg(db_handle(db)));
        sqlite3_reset(stmt);
        return -1;
    }
    sqlite3_reset(stmt);
    if (sqlite3_changes(db_handle(db)) != 1)
        return -1;
    log_info("outbox", "mail %lld requeued by staff", (long long)id);
    return 0;
}

int outbox_counts(struct db *db, struct outbox_counts *counts)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT state, COUNT(*) FROM outbox GROUP BY state");
    int step;

    memset(counts, 0, sizeof(*counts));
    if (!stmt)
        return -1;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        const char *state = (const char *)sqlite3_column_text(stmt, 0);
        long n = (long)sqlite3_column_int64(stmt, 1);

        if (strcmp(state, "queued") == 0)
            counts->queued = n;
        else if (strcmp(state, "sending") == 0)
            counts->sending = n;
        else if (strcmp(state, "sent") == 0)
            counts->sent = n;
        else if (strcmp(state, "failed") == 0)
            counts->failed = n;
    }
    sqlite3_reset(stmt);
    return step == SQLITE_DONE ? 0 : -1;
}

static json_t *column_json(sqlite3_stmt *stmt, int col)
{
    switch (sqlite3_column_type(stmt, col)) {
    case SQLITE_NULL: return json_null();
    case SQLITE_INTEGER: return json_integer(sqlite3_column_int64(stmt, col));
    default: return json_string((const char *)sqlite3_column_text(stmt, col));
    }
}

json_t *outbox_list(struct db *db, const char *state, int limit, int offset, char **err)
{
    static const char *const columns[] = {"id", "kind", "state", "recipient", "subject",
                                          "attempts", "next_attempt_at", "last_error",
                                          "created_at", "sent_at", "person_id", "import_run_id"};
    sqlite3_stmt *stmt = db_stmt(db, "SELECT id, kind, state, recipient, subject, attempts,"
                                     " next_attempt_at, last_error, created_at, sent_at, person_id,"
                                     " import_run_id FROM outbox WHERE ?1 IS NULL OR state = ?1"
                                     " ORDER BY id DESC LIMIT ?2 OFFSET ?3");
    json_t *list = NULL;
    int step;

    *err = NULL;
    if (!stmt) {
        *err = strdup("La liste des mails n'a pas pu être lue (erreur de base de données).");
        return NULL;
    }
    if (limit <= 0 || limit > LIST_LIMIT_MAX)
        limit = LIST_LIMIT_MAX;
    db_bind_text_or_null(stmt, 1, state);
    sqlite3_bind_int(stmt, 2, limit);
    sqlite3_bind_int(stmt, 3, offset > 0 ? offset : 0);

    list = json_array();
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        json_t *row = json_object();

        for (int i = 0; i < (int)(sizeof(columns) / sizeof(columns[0])); i++)
            json_object_set_new(row, columns[i], column_json(stmt, i));
        json_array_append_new(list, row);
    }
    if (step != SQLITE_DONE) {
        *err = str_printf("La liste des mails n'a pas pu être lue : %s",
                          sqlite3_errmsg(db_handle(db)));
        json_decref(list);
        list = NULL;
    }
    sqlite3_reset(stmt);
    return list;
}

/* ---- Sender -------------------------------------------------------------- */

/* One SMTP connection: an easy handle reused for every mail it sends, and
 * the mail in flight. */
struct slot {
    struct outbox_sender *sender;
    CURL *easy;
    struct curl_slist *recipients;
    bool busy;
    int64_t id;
    int attempts;
    char *message;
    size_t length;
    size_t position;
    char reply[SMTP_REPLY_MAX]; /* last line the server sent */
};

struct outbox_sender {
    uv_loop_t *loop;
    struct db *db;
    struct outbox_config cfg; /* strings point into the copies below */
    char *smtp_url, *username, *password, *from_address, *from_name, *template_dir;
    struct curl_uv *curl;
    uv_timer_t timer; /* wakes the pump: rate limit, backoff, polling */
    struct slot slots[MAX_CONNECTIONS];
    int nslots;
    double next_start_ms; /* earliest start of the next mail under the rate limit */
    struct outbox_stats stats;
    bool stopping;
    bool curl_closed;
    bool timer_closed;
    void (*stopped)(void *data);
    void *stopped_data;
};

static void pump(struct outbox_sender *s);

static double monotonic_ms(void)
{
    return (double)uv_hrtime() / 1e6;
}

/* CURLOPT_READFUNCTION: hands libcurl the message, which it dot-stuffs and
 * ends with CRLF.CRLF itself. */
static size_t read_message(char *buffer, size_t size, size_t nitems, void *userdata)
{
    struct slot *slot = userdata;
    size_t room = size * nitems;
    size_t left = slot->length - slot->position;
    size_t n = left < room ? left : room;

    memcpy(buffer, slot->message + slot->position, n);
    slot->position += n;
    return n;
}

/* CURLOPT_DEBUGFUNCTION: keeps the last 4xx or 5xx reply line the server
 * sent, so that a failure records the SMTP reply itself (for example "550
 * 5.1.1 User unknown") and not only libcurl's summary. Later replies, such
 * as the "221" reply to QUIT, do not overwrite it. */
static int keep_reply(CURL *easy, curl_infotype type, char *data, size_t size, void *userdata)
{
    struct slot *slot = userdata;
    char raw[SMTP_REPLY_MAX];
    size_t n = size;

    if (type != CURLINFO_HEADER_IN || size < 3 || (data[0] != '4' && data[0] != '5'))
        return 0;
    while (n > 0 && (data[n - 1] == '\r' || data[n - 1] == '\n'))
        n--;
    if (n >= sizeof(raw))
        n = sizeof(raw) - 1;
    memcpy(raw, data, n);
    raw[n] = '\0';
    /* The reply goes into last_error, which the API sends as JSON: an
     * 8-bit reply or one cut inside a character would make it vanish. */
    norm_utf8_repair(raw, slot->reply, sizeof(slot->reply));
    return 0;
}

static int slot_init(struct outbox_sender *s, struct slot *slot)
{
    const struct outbox_config *cfg = &s->cfg;
    long use_ssl = cfg->tls == OUTBOX_TLS_REQUIRED ? CURLUSESSL_ALL
                   : cfg->tls == OUTBOX_TLS_TRY    ? CURLUSESSL_TRY
                                                   : CURLUSESSL_NONE;

    slot->sender = s;
    slot->easy = curl_easy_init();
    if (!slot->easy)
        return -1;
    curl_easy_setopt(slot->easy, CURLOPT_URL, cfg->smtp_url);
    curl_easy_setopt(slot->easy, CURLOPT_USE_SSL, use_ssl);
    if (cfg->username) {
        curl_easy_setopt(slot->easy, CURLOPT_USERNAME, cfg->username);
        curl_easy_setopt(slot->easy, CURLOPT_PASSWORD, cfg->password ? cfg->password : "");
    }
    curl_easy_setopt(slot->easy, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(slot->easy, CURLOPT_READFUNCTION, read_message);
    curl_easy_setopt(slot->easy, CURLOPT_READDATA, slot);
    curl_easy_setopt(slot->easy, CURLOPT_CONNECTTIMEOUT_MS, cfg->connect_timeout_ms);
    curl_easy_setopt(slot->easy, CURLOPT_TIMEOUT_MS, cfg->send_timeout_ms);
    curl_easy_setopt(slot->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(slot->easy, CURLOPT_DEBUGFUNCTION, keep_reply);
    curl_easy_setopt(slot->easy, CURLOPT_DEBUGDATA, slot);
    curl_easy_setopt(slot->easy, CURLOPT_VERBOSE, 1L);
    return 0;
}

static void slot_clear(struct slot *slot)
{
    curl_slist_free_all(slot->recipients);
    slot->recipients = NULL;
    free(slot->message);
    slot->message = NULL;
    slot->busy = false;
}

/* Sets a mail's state after an attempt. sent_at and next_attempt_at are
 * given as text, or NULL to leave them unchanged. */
static void record_outcome(struct outbox_sender *s, int64_t id, const char *state,
                           const char *error, const char *sent_at, const char *next_attempt_at)
{
    sqlite3_stmt *stmt = db_stmt(s->db, "UPDATE outbox SET state = ?2,"
                                        " last_error = COALESCE(?3, last_error),"
                                        " sent_at = COALESCE(?4, sent_at),"
                                        " next_attempt_at = COALESCE(?5, next_attempt_at)"
                                        " WHERE id = ?1");

    if (!stmt)
        return;
    sqlite3_bind_int64(stmt, 1, id);
    sqlite3_bind_text(stmt, 2, state, -1, SQLITE_STATIC);
    db_bind_text_or_null(stmt, 3, error);
    db_bind_text_or_null(stmt, 4, sent_at);
    db_bind_text_or_null(stmt, 5, next_attempt_at);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        log_error("outbox", "recording state '%s' of mail %lld failed: %s", state, (long long)id,
                  sqlite3_errmsg(db_handle(s->db)));
    sqlite3_reset(stmt);
}

/* Returns the delay before attempt number attempts + 1, in seconds:
 * base * 2^(attempts - 1), capped. */
static long backoff_seconds(const struct outbox_config *cfg, int attempts)
{
    double delay = cfg->backoff_base_seconds * pow(2.0, attempts > 0 ? attempts - 1 : 0);

    if (delay > cfg->backoff_max_seconds)
        delay = cfg->backoff_max_seconds;
    return (long)delay;
}

static void send_done(CURL *easy, CURLcode result, const char *error, void *data)
{
    struct slot *slot = data;
    struct outbox_sender *s = slot->sender;
    long code = 0, connects = 0;
    char now[32];

    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(easy, CURLINFO_NUM_CONNECTS, &connects);
    s->stats.connections += connects;
    db_now(now, sizeof(now));

    if (result == CURLE_OK) {
        record_outcome(s, slot->id, "sent", NULL, now, NULL);
        s->stats.sent++;
        log_debug("outbox", "mail %lld sent", (long long)slot->id);
    } else {
        char explanation[320], detail[CURL_ERROR_SIZE + SMTP_REPLY_MAX + 32];
        char reason[sizeof(explanation) + sizeof(detail) + 32];
        bool permanent = code >= 500 && code < 600;

        if (slot->reply[0])
            snprintf(detail, sizeof(detail), "%s (server reply: %s)", error, slot->reply);
        else
            snprintf(detail, sizeof(detail), "%s", error);
        /* Staff read last_error: a French explanation first, then the
         * technical detail, usually in English, that the logs keep. */
        mail_error_explain((int)result, code, slot->reply, explanation, sizeof(explanation));
        snprintf(reason, sizeof(reason), "%s. Détail technique : %s", explanation, detail);

        if (permanent || slot->attempts >= s->cfg.max_attempts) {
            record_outcome(s, slot->id, "failed", reason, NULL, NULL);
            s->stats.failed++;
            log_warn("outbox", "mail %lld failed after %d attempt(s)%s: %s", (long long)slot->id,
                     slot->attempts, permanent ? " (permanent error)" : "", detail);
        } else {
            char next[32];
            long delay = backoff_seconds(&s->cfg, slot->attempts);
            struct timespec now_ts;

            /* Round up to the next whole second, the resolution of
             * next_attempt_at, so the wait is never shorter than delay. */
            clock_gettime(CLOCK_REALTIME, &now_ts);
            format_time(now_ts.tv_sec + delay + (now_ts.tv_nsec > 0), next, sizeof(next));
            record_outcome(s, slot->id, "queued", reason, NULL, next);
            s->stats.retried++;
            log_warn("outbox", "mail %lld attempt %d failed, retrying at %s: %s",
                     (long long)slot->id, slot->attempts, next, detail);
        }
    }
    slot_clear(slot);
    pump(s);
}

/* Claims the next due mail for slot (queued -> sending, attempts + 1) in one
 * UPDATE, so two senders on the same database never claim the same row.
 * Returns 1 when a mail was claimed, 0 when none is due, -1 on error. */
static int claim(struct outbox_sender *s, struct slot *slot)
{
    char now[32];
    sqlite3_stmt *stmt = db_stmt(s->db, "UPDATE outbox SET state = 'sending',"
                                        " attempts = attempts + 1"
                                        " WHERE id = (SELECT id FROM outbox WHERE state = 'queued'"
                                        " AND next_attempt_at <= ?1"
                                        " ORDER BY next_attempt_at, id LIMIT 1)"
                                        " RETURNING id, attempts, sender, recipient, message");
    char *path = NULL;
    int step, rc = -1;

    if (!stmt)
        return -1;
    db_now(now, sizeof(now));
    sqlite3_bind_text(stmt, 1, now, -1, SQLITE_STATIC);
    step = sqlite3_step(stmt);
    if (step == SQLITE_DONE) {
        rc = 0;
        goto done;
    }
    if (step != SQLITE_ROW) {
        if ((step & 0xff) == SQLITE_BUSY)
            log_warn("outbox", "claiming a mail timed out: the database is locked (an import "
                               "writing?); retrying later");
        else
            log_error("outbox", "claiming a mail failed: %s", sqlite3_errmsg(db_handle(s->db)));
        goto done;
    }

    slot->id = sqlite3_column_int64(stmt, 0);
    slot->attempts = sqlite3_column_int(stmt, 1);
    slot->length = (size_t)sqlite3_column_bytes(stmt, 4);
    slot->message = malloc(slot->length + 1);
    path = str_printf("<%s>", (const char *)sqlite3_column_text(stmt, 3));
    if (!slot->message || !path)
        goto done;
    memcpy(slot->message, sqlite3_column_text(stmt, 4), slot->length);
    slot->position = 0;
    slot->reply[0] = '\0';
    slot->recipients = curl_slist_append(NULL, path);
    curl_easy_setopt(slot->easy, CURLOPT_MAIL_FROM, (const char *)sqlite3_column_text(stmt, 2));
    curl_easy_setopt(slot->easy, CURLOPT_MAIL_RCPT, slot->recipients);
    while (sqlite3_step(stmt) == SQLITE_ROW)
        ;
    slot->busy = true;
    rc = 1;

done:
    sqlite3_reset(stmt);
    free(path);
    if (rc < 0 && slot->message) {
        /* Out of memory after the claim: leave the mail for the next start. */
        log_error("outbox", "out of memory preparing mail %lld", (long long)slot->id);
        slot_clear(slot);
    }
    return rc;
}

/* Returns the milliseconds until the earliest queued mail is due, or -1 when
 * none is queued. */
static long ms_until_next_due(struct outbox_sender *s)
{
    sqlite3_stmt *stmt =
        db_stmt(s->db, "SELECT MIN(next_attempt_at) FROM outbox WHERE state = 'queued'");
    long ms = -1;

    if (!stmt)
        return -1;
    if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL) {
        struct tm tm = {0};
        struct timespec now;
        const char *text = (const char *)sqlite3_column_text(stmt, 0);

        clock_gettime(CLOCK_REALTIME, &now);
        if (strptime(text, "%Y-%m-%dT%H:%M:%SZ", &tm)) {
            double due = (double)timegm(&tm) * 1000.0;
            double current = (double)now.tv_sec * 1000.0 + now.tv_nsec / 1e6;
            ms = due > current ? (long)ceil(due - current) : 0;
        }
    }
    sqlite3_reset(stmt);
    return ms;
}

static void timer_cb(uv_timer_t *timer)
{
    pump(timer->data);
}

static void arm_timer(struct outbox_sender *s, long ms)
{
    if (ms < 1)
        ms = 1;
    uv_timer_start(&s->timer, timer_cb, (uint64_t)ms, 0);
}

/* Starts due mails on free slots while the rate limit allows, then arms the
 * timer for whichever comes first: the rate limit, the next due mail or the
 * poll interval. */
static void pump(struct outbox_sender *s)
{
    double interval_ms = s->cfg.rate_per_second > 0 ? 1000.0 / s->cfg.rate_per_second : 0;

    if (s->stopping)
        return;
    uv_timer_stop(&s->timer);

    for (int i = 0; i < s->nslots; i++) {
        struct slot *slot = &s->slots[i];
        double now = monotonic_ms();
        int claimed;

        if (slot->busy)
            continue;
        if (now < s->next_start_ms) {
            arm_timer(s, (long)ceil(s->next_start_ms - now));
            return;
        }
        claimed = claim(s, slot);
        if (claimed <= 0) {
            long due = claimed < 0 ? -1 : ms_until_next_due(s);
            long wait = s->cfg.poll_interval_ms;

            /* The 10 ms floor keeps a row that is due but cannot be
             * claimed (a clock step, say) from turning this into a busy loop. */
            if (due >= 0 && due < wait)
                wait = due < 10 ? 10 : due;
            arm_timer(s, wait);
            return;
        }
        if (curl_uv_add(s->curl, slot->easy, send_done, slot) < 0) {
            record_outcome(s, slot->id, "queued", "could not start the transfer", NULL, NULL);
            slot_clear(slot);
            arm_timer(s, s->cfg.poll_interval_ms);
            return;
        }
        s->next_start_ms = (now > s->next_start_ms ? now : s->next_start_ms) + interval_ms;
    }
}

static char *copy_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int check_config(const struct outbox_config *cfg, char **err)
{
    if (!cfg->smtp_url ||
        (strncmp(cfg->smtp_url, "smtp://", 7) != 0 && strncmp(cfg->smtp_url, "smtps://", 8) != 0)) {
        *err = str_printf("smtp_url « %s » est invalide : indiquez smtp://serveur:port ou "
                          "smtps://serveur:port.",
                          cfg->smtp_url ? cfg->smtp_url : "");
        return -1;
    }
    if (mail_address_check(cfg->from_address) < 0) {
        *err = str_printf("mail_from « %s » n'est pas une adresse de mail valide.",
                          cfg->from_address ? cfg->from_address : "");
        return -1;
    }
    if (cfg->rate_per_second < 0 || cfg->max_attempts < 1 || cfg->backoff_base_seconds < 0 ||
        cfg->backoff_max_seconds < cfg->backoff_base_seconds) {
        *err = strdup("Réglages d'envoi invalides : mail_rate_per_second doit être positif ou "
                      "nul et mail_max_attempts au moins 1.");
        return -1;
    }
    if (cfg->poll_interval_ms < 1 || cfg->connect_timeout_ms < 0 || cfg->send_timeout_ms < 0) {
        *err = strdup("Réglages d'envoi invalides : l'intervalle de relecture de la file doit "
                      "être d'au moins 1 ms et les délais d'attente positifs ou nuls.");
        return -1;
    }
    if (cfg->connections < 1 || cfg->connections > MAX_CONNECTIONS) {
        *err = str_printf("Le nombre de connexions SMTP doit être entre 1 et %d.",
                          MAX_CONNECTIONS);
        return -1;
    }
    return 0;
}

static void free_sender(struct outbox_sender *s)
{
    for (int i = 0; i < s->nslots; i++) {
        slot_clear(&s->slots[i]);
        if (s->slots[i].easy)
            curl_easy_cleanup(s->slots[i].easy);
    }
    free(s->smtp_url);
    free(s->username);
    free(s->password);
    free(s->from_address);
    free(s->from_name);
    free(s->template_dir);
    free(s);
}

struct outbox_sender *outbox_sender_start(uv_loop_t *loop, struct db *db,
                                          const struct outbox_config *cfg, char **err)
{
    struct outbox_sender *s = NULL;

    *err = NULL;
    if (check_config(cfg, err) < 0)
        return NULL;
    s = calloc(1, sizeof(*s));
    if (!s) {
        *err = strdup("mémoire insuffisante");
        return NULL;
    }
    s->loop = loop;
    s->db = db;
    s->cfg = *cfg;
    s->cfg.smtp_url = s->smtp_url = strdup(cfg->smtp_url);
    s->cfg.username = s->username = copy_or_null(cfg->username);
    s->cfg.password = s->password = copy_or_null(cfg->password);
    s->cfg.from_address = s->from_address = strdup(cfg->from_address);
    s->cfg.from_name = s->from_name = copy_or_null(cfg->from_name);
    s->cfg.template_dir = s->template_dir = copy_or_null(cfg->template_dir);
    s->nslots = cfg->connections;
    for (int i = 0; i < s->nslots; i++) {
        if (slot_init(s, &s->slots[i]) < 0) {
            *err = strdup("Impossible de préparer l'envoi des mails (libcurl).");
            free_sender(s);
            return NULL;
        }
    }
    s->curl = curl_uv_new(loop);
    if (!s->curl) {
        *err = strdup("Impossible de préparer l'envoi des mails (libcurl).");
        free_sender(s);
        return NULL;
    }

    outbox_recover(db);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    log_info("outbox", "sender started: %s, %d connection(s), %.1f mail(s)/s", s->cfg.smtp_url,
             s->nslots, s->cfg.rate_per_second);
    arm_timer(s, 0);
    return s;
}

void outbox_sender_wake(struct outbox_sender *s)
{
    if (!s->stopping)
        arm_timer(s, 0);
}

void outbox_sender_stats(const struct outbox_sender *s, struct outbox_stats *stats)
{
    *stats = s->stats;
}

static void maybe_finish_stop(struct outbox_sender *s)
{
    void (*stopped)(void *) = s->stopped;
    void *data = s->stopped_data;

    if (!s->curl_closed || !s->timer_closed)
        return;
    free_sender(s);
    log_info("outbox", "sender stopped");
    if (stopped)
        stopped(data);
}

static void curl_closed_cb(void *data)
{
    struct outbox_sender *s = data;

    s->curl_closed = true;
    maybe_finish_stop(s);
}

static void timer_closed_cb(uv_handle_t *handle)
{
    struct outbox_sender *s = handle->data;

    s->timer_closed = true;
    maybe_finish_stop(s);
}

void outbox_sender_stop(struct outbox_sender *s, void (*stopped)(void *data), void *data)
{
    s->stopping = true;
    s->stopped = stopped;
    s->stopped_data = data;
    for (int i = 0; i < s->nslots; i++) {
        struct slot *slot = &s->slots[i];

        if (!slot->busy)
            continue;
        curl_uv_remove(s->curl, slot->easy);
        record_outcome(s, slot->id, "queued", NULL, NULL, NULL);
        log_info("outbox", "mail %lld cancelled by shutdown, requeued", (long long)slot->id);
        slot_clear(slot);
    }
    uv_timer_stop(&s->timer);
    curl_uv_close(s->curl, curl_closed_cb, s);
    uv_close((uv_handle_t *)&s->timer, timer_closed_cb);
}

/* ---- Sender thread ------------------------------------------------------ */

struct outbox_worker {
    uv_thread_t thread;
    uv_loop_t loop;
    uv_async_t wake;
    uv_async_t stop;
    uv_sem_t started;
    struct outbox_stats stats; /* written by the thread when it stops */
    char *db_path;
    struct outbox_config cfg;
    struct db *db;
    struct outbox_sender *sender;
    char *err; /* start failure, read after started is posted */
};

static void worker_wake_cb(uv_async_t *async)
{
    struct outbox_worker *w = async->data;

    outbox_sender_wake(w->sender);
}

static void worker_sender_stopped(void *data)
{
    struct outbox_worker *w = data;

    uv_close((uv_handle_t *)&w->wake, NULL);
    uv_close((uv_handle_t *)&w->stop, NULL);
}

static void worker_stop_cb(uv_async_t *async)
{
    struct outbox_worker *w = async->data;

    outbox_sender_stats(w->sender, &w->stats);
    outbox_sender_stop(w->sender, worker_sender_stopped, w);
    w->sender = NULL;
}

static void worker_main(void *arg)
{
    struct outbox_worker *w = arg;

    uv_loop_init(&w->loop);
    w->db = db_open(w->db_path, &w->err);
    if (w->db)
        w->sender = outbox_sender_start(&w->loop, w->db, &w->cfg, &w->err);
    if (!w->sender) {
        db_close(w->db);
        uv_loop_close(&w->loop);
        uv_sem_post(&w->started);
        return;
    }
    uv_async_init(&w->loop, &w->wake, worker_wake_cb);
    uv_async_init(&w->loop, &w->stop, worker_stop_cb);
    w->wake.data = w->stop.data = w;
    uv_sem_post(&w->started);

    uv_run(&w->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&w->loop) != 0)
        log_error("outbox", "sender loop closed with handles still open");
    db_close(w->db);
}

struct outbox_worker *outbox_worker_start(const char *db_path, const struct outbox_config *cfg,
                                          char **err)
{
    struct outbox_worker *w = calloc(1, sizeof(*w));

    *err = NULL;
    if (!w || !(w->db_path = strdup(db_path))) {
        free(w);
        *err = strdup("mémoire insuffisante");
        return NULL;
    }
    /* The strings in cfg must outlive the thread's start, where
     * outbox_sender_start copies them. */
    w->cfg = *cfg;
    uv_sem_init(&w->started, 0);
    if (uv_thread_create(&w->thread, worker_main, w) != 0) {
        *err = strdup("Impossible de démarrer le fil d'envoi des mails.");
        goto fail;
    }
    uv_sem_wait(&w->started);
    if (!w->sender) {
        uv_thread_join(&w->thread);
        *err = w->err;
        goto fail;
    }
    return w;

fail:
    uv_sem_destroy(&w->started);
    free(w->db_path);
    free(w);
    return NULL;
}

void outbox_worker_wake(struct outbox_worker *w)
{
    uv_async_send(&w->wake);
}

void outbox_worker_stop(struct outbox_worker *w, struct outbox_stats *stats)
{
    uv_async_send(&w->stop);
    uv_thread_join(&w->thread);
    if (stats)
        *stats = w->stats;
    uv_sem_destroy(&w->started);
    free(w->db_path);
    free(w);
}
