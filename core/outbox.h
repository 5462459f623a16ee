/*
 * Durable mail queue and its SMTP sender. Every mail is written to the
 * outbox table (migrations/0004_outbox.sql) before any attempt to send it.
 * The sender runs on a libuv loop (the worker below gives it its own thread
 * and loop). It claims due mails one by one and sends them with libcurl
 * through curl_uv.h. It keeps one easy handle per
 * connection slot and reuses it, so libcurl keeps each SMTP connection open
 * across mails.
 *
 * States: queued -> sending -> sent, or back to queued with a later
 * next_attempt_at (exponential backoff), or failed when the server gave a
 * permanent (5xx) reply or the attempts are used up. Staff can put a failed
 * mail back in the queue with outbox_retry.
 *
 * Delivery is at-least-once: a mail is marked sent only after the server
 * accepted it, and a mail left in 'sending' by a killed process goes back to
 * 'queued' when the sender starts. A mail in flight at a crash may therefore
 * reach its recipient twice, but it is never lost.
 *
 * Message building and templates belong to mail.h. Logs carry the outbox id
 * and never the message or a token.
 */
#ifndef LICOL_OUTBOX_H
#define LICOL_OUTBOX_H

#include "db.h"
#include "mail.h"

#include <jansson.h>
#include <stdint.h>
#include <uv.h>

/* STARTTLS policy for smtp:// URLs (CURLOPT_USE_SSL). smtps:// URLs always
 * use implicit TLS and ignore this setting. */
enum outbox_tls {
    OUTBOX_TLS_NONE,     /* never STARTTLS: loopback relays only */
    OUTBOX_TLS_TRY,      /* STARTTLS when the server offers it (CURLUSESSL_TRY) */
    OUTBOX_TLS_REQUIRED, /* fail unless STARTTLS succeeds (CURLUSESSL_ALL) */
};

/* Sender settings. Strings are copied by outbox_sender_start; NULL username
 * means no SMTP AUTH. */
struct outbox_config {
    const char *smtp_url;     /* smtp://host[:port] or smtps://host[:port] */
    enum outbox_tls tls;
    const char *username;
    const char *password;
    const char *from_address; /* envelope sender and From address */
    const char *from_name;    /* From display name, for example the club's name */
    const char *template_dir; /* templates for outbox_queue_template */
    double rate_per_second;   /* maximum mails started per second; 0 = no limit */
    int max_attempts;         /* attempts before a mail is marked failed */
    int backoff_base_seconds; /* delay after the first failure; doubles each time */
    int backoff_max_seconds;  /* ceiling of that delay */
    long connect_timeout_ms;
    long send_timeout_ms;     /* whole SMTP transaction of one mail */
    int connections;          /* parallel SMTP connections, 1 or more */
    int poll_interval_ms;     /* how often to look for mails queued by other processes */
};

/* Fills cfg with defaults. These are STARTTLS when offered, 10 mails per
 * second, 8 attempts, a backoff from 60 s to 6 h, timeouts of 10 s
 * (connect) and 60 s (send), one connection, a poll every 5 s, and the
 * templates in scripts/mail of the source tree. smtp_url and the sender address are left NULL. */
void outbox_config_default(struct outbox_config *cfg);

/* Recipient and purpose of a mail. person_id and import_run_id are 0 when
 * none. */
struct outbox_mail {
    const char *kind; /* 'recuperation', 'consentement', 'test', ... */
    const char *to_name;
    const char *to_address;
    int64_t person_id;
    int64_t import_run_id;
};

/* Builds a message from cfg's sender and the given subject and parts (html
 * may be NULL) and inserts it as queued, due now. Returns 0 and sets *id
 * (when id is not NULL), or -1 with *err set to a French message. */
int outbox_queue(struct db *db, const struct outbox_config *cfg, const struct outbox_mail *mail,
                 const char *subject, const char *text, const char *html, int64_t *id,
                 char **err);

/* Renders template_name from cfg->template_dir with vars (see
 * mail_template_render), then queues the result as outbox_queue does. */
int outbox_queue_template(struct db *db, const struct outbox_config *cfg,
                          const struct outbox_mail *mail, const char *template_name,
                          const struct mail_var *vars, size_t nvars, int64_t *id, char **err);

/* Puts back in the queue every mail left in 'sending', which only a process
 * killed mid-send leaves behind. outbox_sender_start calls it. Returns the
 * number of mails requeued, or -1. */
int outbox_recover(struct db *db);

/* Puts failed mail id back in the queue, due now, with its attempts reset
 * and its last error kept until the next attempt. Returns 0, or -1 when no
 * failed mail has this id. Call outbox_sender_wake afterwards. */
int outbox_retry(struct db *db, int64_t id);

struct outbox_counts {
    long queued;
    long sending;
    long sent;
    long failed;
};

/* Counts mails by state. Returns 0, or -1 on a database error. */
int outbox_counts(struct db *db, struct outbox_counts *counts);

/* Lists mails for the staff outbox page, newest first: an array of objects
 * with id, kind, state, recipient, subject, attempts, next_attempt_at,
 * last_error, created_at, sent_at, person_id and import_run_id (the last
 * four may be null). state filters when not NULL. limit is capped at 500.
 * Returns a new reference, or NULL with *err set. */
json_t *outbox_list(struct db *db, const char *state, int limit, int offset, char **err);

struct outbox_sender;

/* Totals since the sender started, for tests, benchmarks and the status
 * page. connections counts the SMTP connections libcurl opened. */
struct outbox_stats {
    long sent;
    long retried;
    long failed;
    long connections;
};

/* Requeues mails left in 'sending' (outbox_recover), then starts sending due
 * mails on loop. db must stay open and be used only on the loop's thread
 * until the sender has stopped. Returns NULL with *err set (French) when the
 * configuration is invalid. */
struct outbox_sender *outbox_sender_start(uv_loop_t *loop, struct db *db,
                                          const struct outbox_config *cfg, char **err);

/* Makes the sender look for due mails now, after a mail was queued or
 * retried in this process. */
void outbox_sender_wake(struct outbox_sender *sender);

void outbox_sender_stats(const struct outbox_sender *sender, struct outbox_stats *stats);

/* Stops the sender. Mails in flight are cancelled and put back in the queue
 * (they may have reached the server already: at-least-once). The sender is
 * freed once its uv handles are closed, then stopped (may be NULL) fires. */
void outbox_sender_stop(struct outbox_sender *sender, void (*stopped)(void *data), void *data);

/* A sender on its own thread, with its own libuv loop and its own database
 * connection. The server uses this one: libcurl 7.88 waits for the reply to
 * the end of a message's data inside a blocking call (smtp_done), so a slow
 * relay would otherwise stall the server's loop until it replies, for up
 * to send_timeout_ms. */
struct outbox_worker;

/* Opens db_path, starts a sender on a new thread and returns once it runs.
 * Returns NULL with *err set (French) when the database cannot be opened or
 * the configuration is invalid. */
struct outbox_worker *outbox_worker_start(const char *db_path, const struct outbox_config *cfg,
                                          char **err);

/* Same as outbox_sender_wake, callable from any thread. */
void outbox_worker_wake(struct outbox_worker *worker);

/* Stops the sender as outbox_sender_stop does, waits for the thread to end,
 * copies the sender's totals to stats (may be NULL) and frees the worker.
 * It may wait up to send_timeout_ms when a mail is between its last data
 * byte and the server's reply. */
void outbox_worker_stop(struct outbox_worker *worker, struct outbox_stats *stats);

#endif
