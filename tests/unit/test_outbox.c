/* Tests of the outbox and its sender against a real SMTP server on loopback
 * (tests/tools/smtp_sink.py) and a real SQLite file. The sink decodes every
 * message with Python's email package, so these tests also check that an
 * independent reader gets back the subject, names and parts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "../tools/smtp_sink.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "outbox.h"

#define CLUB_ADDRESS "club@ecurie-du-moulin.test"
#define CLUB_NAME "Écurie du Moulin"
#define LINK "https://club.test/mot-de-passe?jeton=Zm9v_YmFy-123"

struct fixture {
    char path[64];
    struct db *db;
    struct smtp_sink sink;
    char url[64];
    struct outbox_config cfg;
};

static void open_db(struct fixture *f)
{
    char *err = NULL;

    f->db = db_open(f->path, &err);
    assert_non_null(f->db);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char *err = NULL;
    int fd;

    snprintf(f->path, sizeof(f->path), "/tmp/licol-test-outbox-XXXXXX");
    fd = mkstemp(f->path);
    close(fd);
    open_db(f);
    assert_true(migrate_apply(f->db, &err) >= 0);
    assert_int_equal(smtp_sink_prepare(&f->sink), 0);
    snprintf(f->url, sizeof(f->url), "smtp://127.0.0.1:%d", f->sink.port);

    outbox_config_default(&f->cfg);
    f->cfg.smtp_url = f->url;
    f->cfg.tls = OUTBOX_TLS_NONE;
    f->cfg.from_address = CLUB_ADDRESS;
    f->cfg.from_name = CLUB_NAME;
    f->cfg.rate_per_second = 0;
    f->cfg.max_attempts = 3;
    f->cfg.backoff_base_seconds = 1;
    f->cfg.backoff_max_seconds = 2;
    f->cfg.connect_timeout_ms = 2000;
    f->cfg.send_timeout_ms = 10000;
    f->cfg.poll_interval_ms = 200;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char side[96];

    smtp_sink_cleanup(&f->sink);
    db_close(f->db);
    unlink(f->path);
    snprintf(side, sizeof(side), "%s-wal", f->path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", f->path);
    unlink(side);
    free(f);
    return 0;
}

static int64_t queue_simple(struct fixture *f, const char *to)
{
    struct outbox_mail mail = {.kind = "test", .to_address = to};
    int64_t id = 0;
    char *err = NULL;

    if (outbox_queue(f->db, &f->cfg, &mail, "Essai", "Bonjour\n", "<p>Bonjour</p>", &id, &err) < 0)
        fail_msg("queue failed: %s", err);
    return id;
}

static const char *mail_state(struct fixture *f, int64_t id)
{
    static char state[16];
    sqlite3_stmt *stmt = db_stmt(f->db, "SELECT state FROM outbox WHERE id = ?1");

    sqlite3_bind_int64(stmt, 1, id);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    snprintf(state, sizeof(state), "%s", (const char *)sqlite3_column_text(stmt, 0));
    sqlite3_reset(stmt);
    return state;
}

static char *mail_column(struct fixture *f, int64_t id, const char *sql)
{
    sqlite3_stmt *stmt = db_stmt(f->db, sql);
    char *value = NULL;

    sqlite3_bind_int64(stmt, 1, id);
    assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
    if (sqlite3_column_type(stmt, 0) != SQLITE_NULL)
        value = strdup((const char *)sqlite3_column_text(stmt, 0));
    sqlite3_reset(stmt);
    return value;
}

/* ---- Running the sender on a loop --------------------------------------- */

typedef bool (*done_fn)(const struct outbox_counts *counts, void *data);

struct run {
    struct db *db;
    done_fn done;
    void *data;
    uv_timer_t check;
    uint64_t deadline;
    bool reached;
};

static void check_cb(uv_timer_t *timer)
{
    struct run *run = timer->data;
    struct outbox_counts counts;

    assert_int_equal(outbox_counts(run->db, &counts), 0);
    if (run->done(&counts, run->data)) {
        run->reached = true;
        uv_stop(timer->loop);
    } else if (uv_now(timer->loop) >= run->deadline) {
        uv_stop(timer->loop);
    }
}

static void stopped_cb(void *data)
{
    *(bool *)data = true;
}

/* Starts a sender, runs the loop until done returns true or timeout_ms
 * passes, stops the sender and checks that every uv handle was closed.
 * Returns whether done was reached. */
static bool run_sender(struct fixture *f, done_fn done, void *data, int timeout_ms,
                       struct outbox_stats *stats)
{
    uv_loop_t loop;
    struct run run = {.db = f->db, .done = done, .data = data};
    struct outbox_sender *sender;
    bool stopped = false;
    char *err = NULL;

    uv_loop_init(&loop);
    sender = outbox_sender_start(&loop, f->db, &f->cfg, &err);
    if (!sender)
        fail_msg("sender start failed: %s", err);
    uv_timer_init(&loop, &run.check);
    run.check.data = &run;
    run.deadline = uv_now(&loop) + (uint64_t)timeout_ms;
    uv_timer_start(&run.check, check_cb, 20, 20);
    uv_run(&loop, UV_RUN_DEFAULT);

    if (stats)
        outbox_sender_stats(sender, stats);
    uv_close((uv_handle_t *)&run.check, NULL);
    outbox_sender_stop(sender, stopped_cb, &stopped);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_true(stopped);
    assert_int_equal(uv_loop_close(&loop), 0);
    return run.reached;
}

static bool all_sent(const struct outbox_counts *counts, void *data)
{
    return counts->sent == *(long *)data && counts->queued == 0 && counts->sending == 0;
}

static bool nothing_pending(const struct outbox_counts *counts, void *data)
{
    return counts->queued == 0 && counts->sending == 0;
}

static bool never(const struct outbox_counts *counts, void *data)
{
    return false;
}

/* ---- Tests -------------------------------------------------------------- */

static void template_mail_decodes_at_sink(void **state)
{
    struct fixture *f = *state;
    const struct mail_var vars[] = {
        {"prenom", "Léa"},
        {"nom", "Martin--Durand"},
        {"club", CLUB_NAME},
        {"lien", LINK},
        {"expiration", "18 décembre 2026 à 20 h 00"},
        {"famille", ""},
    };
    struct outbox_mail mail = {
        .kind = "recuperation",
        .to_name = "Léa Martin--Durand",
        .to_address = "lea@example.test",
    };
    struct mail_content expected;
    int64_t id = 0;
    long want = 1;
    char *err = NULL;
    char *message_id, *sent_at;
    json_t *received, *headers;
    const char *text, *html;

    assert_int_equal(smtp_sink_run(&f->sink, NULL), 0);
    assert_int_equal(outbox_queue_template(f->db, &f->cfg, &mail, "recuperation", vars, 6, &id, &err),
                     0);
    assert_string_equal(mail_state(f, id), "queued");
    assert_true(run_sender(f, all_sent, &want, 10000, NULL));
    assert_string_equal(mail_state(f, id), "sent");
    sent_at = mail_column(f, id, "SELECT sent_at FROM outbox WHERE id = ?1");
    assert_non_null(sent_at);
    free(sent_at);

    assert_int_equal(smtp_sink_wait(&f->sink, 1, 2000), 1);
    received = smtp_sink_message(&f->sink, 1);
    assert_non_null(received);
    assert_int_equal(mail_template_render(f->cfg.template_dir, "recuperation", vars, 6, &expected,
                                          &err),
                     0);
    headers = json_object_get(received, "headers");
    assert_string_equal(json_string_value(json_object_get(received, "mail_from")), CLUB_ADDRESS);
    assert_string_equal(json_string_value(json_array_get(json_object_get(received, "rcpt_tos"), 0)),
                        "lea@example.test");
    assert_string_equal(json_string_value(json_object_get(headers, "Subject")), expected.subject);
    assert_non_null(strstr(expected.subject, "Écurie du Moulin"));
    assert_string_equal(json_string_value(json_object_get(received, "from_name")), CLUB_NAME);
    assert_string_equal(json_string_value(json_object_get(received, "from_address")), CLUB_ADDRESS);
    assert_non_null(strstr(json_string_value(json_object_get(headers, "To")), "Léa Martin--Durand"));
    assert_non_null(json_string_value(json_object_get(headers, "Date")));
    assert_string_equal(json_string_value(json_object_get(headers, "MIME-Version")), "1.0");
    assert_non_null(strstr(json_string_value(json_object_get(headers, "Content-Type")),
                           "multipart/alternative"));
    message_id = mail_column(f, id, "SELECT message_id FROM outbox WHERE id = ?1");
    assert_string_equal(json_string_value(json_object_get(headers, "Message-ID")), message_id);
    assert_non_null(strstr(message_id, "@ecurie-du-moulin.test>"));
    free(message_id);

    text = json_string_value(json_object_get(received, "text"));
    html = json_string_value(json_object_get(received, "html"));
    assert_non_null(text);
    assert_non_null(html);
    assert_non_null(strstr(text, LINK));
    assert_non_null(strstr(html, "href=\"" LINK "\""));
    assert_non_null(strstr(text, "Bonjour Léa Martin--Durand,"));
    assert_non_null(strstr(html, "18 décembre 2026"));
    assert_int_equal(json_array_size(json_object_get(received, "defects")), 0);
    assert_true(json_integer_value(json_object_get(received, "max_line_length")) <= 78);
    mail_content_free(&expected);
    json_decref(received);
}

static void connection_reused_across_mails(void **state)
{
    struct fixture *f = *state;
    struct outbox_stats stats;
    char address[64];
    long want = 20;


    assert_int_equal(smtp_sink_run(&f->sink, NULL), 0);
    for (int i = 0; i < 20; i++) {
        snprintf(address, sizeof(address), "rider%02d@example.test", i);
        queue_simple(f, address);
    }
    assert_true(run_sender(f, all_sent, &want, 20000, &stats));
    assert_int_equal(stats.sent, 20);
    assert_int_equal(stats.connections, 1);
    assert_int_equal(smtp_sink_wait(&f->sink, 20, 2000), 20);
    for (int n = 1; n <= 20; n++) {
        json_t *message = smtp_sink_message(&f->sink, n);
        json_t *first = smtp_sink_message(&f->sink, 1);

        assert_int_equal(json_integer_value(json_object_get(message, "peer_port")),
                         json_integer_value(json_object_get(first, "peer_port")));
        json_decref(message);
        json_decref(first);
    }
}

static void smtp_down_keeps_mails_queued(void **state)
{
    struct fixture *f = *state;
    int64_t ids[3];
    char *error;
    char *attempts;
    long want = 3;

    for (int i = 0; i < 3; i++)
        ids[i] = queue_simple(f, "waiting@example.test");
    f->cfg.backoff_base_seconds = 1;
    assert_false(run_sender(f, never, NULL, 1500, NULL));
    for (int i = 0; i < 3; i++) {
        assert_string_equal(mail_state(f, ids[i]), "queued");
        error = mail_column(f, ids[i], "SELECT last_error FROM outbox WHERE id = ?1");
        assert_non_null(error);
        assert_non_null(strstr(error, "onnect"));
        assert_non_null(strstr(error, "Impossible de joindre le serveur d'envoi"));
        free(error);
        attempts = mail_column(f, ids[i], "SELECT attempts FROM outbox WHERE id = ?1");
        assert_true(atoi(attempts) >= 1);
        free(attempts);
    }

    f->cfg.max_attempts = 10;
    assert_int_equal(smtp_sink_run(&f->sink, NULL), 0);
    assert_true(run_sender(f, all_sent, &want, 15000, NULL));
    assert_int_equal(smtp_sink_wait(&f->sink, 3, 2000), 3);
}

static void rejected_recipient_fails_then_retry(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {"--reject", "nobody@example.test", NULL};
    int64_t good, bad;
    char *error;
    json_t *listing;
    json_t *row;
    char *err = NULL;

    assert_int_equal(smtp_sink_run(&f->sink, args), 0);
    good = queue_simple(f, "rider@example.test");
    bad = queue_simple(f, "nobody@example.test");
    assert_true(run_sender(f, nothing_pending, NULL, 10000, NULL));
    assert_string_equal(mail_state(f, good), "sent");
    assert_string_equal(mail_state(f, bad), "failed");
    error = mail_column(f, bad, "SELECT last_error FROM outbox WHERE id = ?1");
    assert_non_null(error);
    assert_non_null(strstr(error, "550"));
    assert_non_null(strstr(error, "Mailbox unavailable"));
    /* Staff read a French explanation before the server's reply. */
    assert_ptr_equal(strstr(error, "L'adresse du destinataire n'existe pas"), error);
    free(error);
    error = mail_column(f, bad, "SELECT attempts FROM outbox WHERE id = ?1");
    assert_string_equal(error, "1");
    free(error);

    listing = outbox_list(f->db, "failed", 50, 0, &err);
    assert_non_null(listing);
    assert_int_equal(json_array_size(listing), 1);
    row = json_array_get(listing, 0);
    assert_int_equal(json_integer_value(json_object_get(row, "id")), bad);
    assert_string_equal(json_string_value(json_object_get(row, "recipient")), "nobody@example.test");
    assert_string_equal(json_string_value(json_object_get(row, "subject")), "Essai");
    assert_non_null(strstr(json_string_value(json_object_get(row, "last_error")), "550"));
    assert_true(json_is_null(json_object_get(row, "sent_at")));
    assert_null(json_object_get(row, "message"));
    json_decref(listing);

    assert_int_equal(outbox_retry(f->db, good), -1);
    assert_int_equal(outbox_retry(f->db, 999999), -1);
    assert_int_equal(outbox_retry(f->db, bad), 0);
    assert_string_equal(mail_state(f, bad), "queued");
    error = mail_column(f, bad, "SELECT attempts FROM outbox WHERE id = ?1");
    assert_string_equal(error, "0");
    free(error);
}

static void temporary_failure_retried_then_failed(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {"--tempfail", "busy@example.test", NULL};
    struct outbox_stats stats;
    int64_t id;
    char *value;

    assert_int_equal(smtp_sink_run(&f->sink, args), 0);
    f->cfg.max_attempts = 2;
    id = queue_simple(f, "busy@example.test");
    assert_true(run_sender(f, nothing_pending, NULL, 15000, &stats));
    assert_string_equal(mail_state(f, id), "failed");
    assert_int_equal(stats.retried, 1);
    assert_int_equal(stats.failed, 1);
    value = mail_column(f, id, "SELECT attempts FROM outbox WHERE id = ?1");
    assert_string_equal(value, "2");
    free(value);
    value = mail_column(f, id, "SELECT last_error FROM outbox WHERE id = ?1");
    assert_non_null(strstr(value, "451"));
    assert_non_null(strstr(value, "pour un moment"));
    free(value);
}

static void auth_credentials_used(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {"--auth", "club:s3cret", NULL};
    long want = 1;
    json_t *received;
    int64_t id;
    char *error;

    assert_int_equal(smtp_sink_run(&f->sink, args), 0);
    f->cfg.username = "club";
    f->cfg.password = "s3cret";
    queue_simple(f, "rider@example.test");
    assert_true(run_sender(f, all_sent, &want, 10000, NULL));
    received = smtp_sink_message(&f->sink, 1);
    assert_non_null(received);
    assert_true(json_is_true(json_object_get(received, "auth")));
    json_decref(received);

    f->cfg.password = "wrong";
    id = queue_simple(f, "rider@example.test");
    assert_true(run_sender(f, nothing_pending, NULL, 10000, NULL));
    assert_string_equal(mail_state(f, id), "failed");
    error = mail_column(f, id, "SELECT last_error FROM outbox WHERE id = ?1");
    assert_non_null(strstr(error, "535"));
    assert_non_null(strstr(error, "smtp_user et smtp_password"));
    free(error);
}

static void tls_required_rejects_plain_server(void **state)
{
    struct fixture *f = *state;
    int64_t id;
    char *error;

    assert_int_equal(smtp_sink_run(&f->sink, NULL), 0);
    f->cfg.tls = OUTBOX_TLS_REQUIRED;
    f->cfg.max_attempts = 1;
    id = queue_simple(f, "rider@example.test");
    assert_true(run_sender(f, nothing_pending, NULL, 10000, NULL));
    assert_string_equal(mail_state(f, id), "failed");
    error = mail_column(f, id, "SELECT last_error FROM outbox WHERE id = ?1");
    assert_non_null(strstr(error, "STARTTLS"));
    assert_non_null(strstr(error, "connexion chiffrée"));
    free(error);
    assert_int_equal(smtp_sink_count(&f->sink), 0);
}

static void rate_limit_spaces_mails(void **state)
{
    struct fixture *f = *state;
    long want = 10;
    uint64_t start;
    double seconds;

    assert_int_equal(smtp_sink_run(&f->sink, NULL), 0);
    for (int i = 0; i < 10; i++)
        queue_simple(f, "rider@example.test");
    f->cfg.rate_per_second = 20;
    start = uv_hrtime();
    assert_true(run_sender(f, all_sent, &want, 10000, NULL));
    seconds = (double)(uv_hrtime() - start) / 1e9;
    /* Ten starts 50 ms apart: the last one 450 ms after the first. */
    assert_true(seconds >= 0.45);
}

static void recover_requeues_sending(void **state)
{
    struct fixture *f = *state;
    int64_t first = queue_simple(f, "a@example.test");
    int64_t second = queue_simple(f, "b@example.test");
    struct outbox_counts counts;

    assert_int_equal(db_exec(f->db, "UPDATE outbox SET state = 'sending', attempts = 1"), 0);
    assert_int_equal(outbox_counts(f->db, &counts), 0);
    assert_int_equal(counts.sending, 2);
    assert_int_equal(outbox_recover(f->db), 2);
    assert_string_equal(mail_state(f, first), "queued");
    assert_string_equal(mail_state(f, second), "queued");
    assert_int_equal(outbox_recover(f->db), 0);
}

static void stop_requeues_mail_in_flight(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {"--rcpt-delay", "3", NULL};
    int64_t id;
    char *attempts;

    assert_int_equal(smtp_sink_run(&f->sink, args), 0);
    id = queue_simple(f, "slow@example.test");
    assert_false(run_sender(f, never, NULL, 500, NULL));
    assert_string_equal(mail_state(f, id), "queued");
    attempts = mail_column(f, id, "SELECT attempts FROM outbox WHERE id = ?1");
    assert_string_equal(attempts, "1");
    free(attempts);
}

struct tick_gap {
    uint64_t last;
    uint64_t longest;
    int ticks;
};

static void tick_cb(uv_timer_t *timer)
{
    struct tick_gap *gap = timer->data;
    uint64_t now = uv_hrtime();

    if (gap->last && now - gap->last > gap->longest)
        gap->longest = now - gap->last;
    gap->last = now;
    if (++gap->ticks == 75)
        uv_timer_stop(timer);
}

/* The server replies to the end of data after 1 s, and libcurl waits for
 * that reply in a blocking call. On the worker's thread, that wait leaves
 * the caller's loop running. */
static void worker_keeps_caller_loop_free(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {"--delay", "1", NULL};
    struct outbox_worker *worker;
    struct outbox_stats stats;
    struct tick_gap gap = {0};
    struct outbox_counts counts;
    uv_loop_t loop;
    uv_timer_t tick;
    char *err = NULL;

    assert_int_equal(smtp_sink_run(&f->sink, args), 0);
    queue_simple(f, "slow@example.test");
    worker = outbox_worker_start(f->path, &f->cfg, &err);
    assert_non_null(worker);

    uv_loop_init(&loop);
    uv_timer_init(&loop, &tick);
    tick.data = &gap;
    uv_timer_start(&tick, tick_cb, 20, 20);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&tick, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    /* A blocked loop would show a gap near 1 s; 500 ms leaves room for a
     * loaded machine. */
    assert_true(gap.longest < 500 * 1000 * 1000ULL);

    outbox_worker_wake(worker);
    assert_int_equal(smtp_sink_wait(&f->sink, 1, 5000), 1);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(outbox_counts(f->db, &counts), 0);
        if (counts.sent == 1)
            break;
        usleep(20 * 1000);
    }
    outbox_worker_stop(worker, &stats);
    assert_int_equal(counts.sent, 1);
    assert_int_equal(stats.sent, 1);
}

static void worker_reports_bad_database(void **state)
{
    struct fixture *f = *state;
    char *err = NULL;

    assert_null(outbox_worker_start("/nonexistent-dir/licol.db", &f->cfg, &err));
    assert_non_null(err);
    assert_non_null(strstr(err, "/nonexistent-dir/licol.db"));
    free(err);
}

static void bad_config_rejected(void **state)
{
    struct fixture *f = *state;
    struct outbox_config cfg = f->cfg;
    uv_loop_t loop;
    char *err = NULL;

    uv_loop_init(&loop);
    cfg.smtp_url = "http://127.0.0.1:25";
    assert_null(outbox_sender_start(&loop, f->db, &cfg, &err));
    assert_non_null(strstr(err, "smtp_url"));
    free(err);
    cfg = f->cfg;
    cfg.from_address = "pas une adresse";
    assert_null(outbox_sender_start(&loop, f->db, &cfg, &err));
    assert_non_null(strstr(err, "mail_from"));
    free(err);
    cfg = f->cfg;
    cfg.max_attempts = 0;
    assert_null(outbox_sender_start(&loop, f->db, &cfg, &err));
    assert_non_null(err);
    free(err);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* Runs a sender in a child process until the parent kills it. */
static void run_child_sender(const char *path, const struct outbox_config *cfg)
{
    uv_loop_t loop;
    struct db *db;
    char *err = NULL;

    db = db_open(path, &err);
    if (!db)
        _exit(2);
    uv_loop_init(&loop);
    if (!outbox_sender_start(&loop, db, cfg, &err))
        _exit(3);
    uv_run(&loop, UV_RUN_DEFAULT);
    _exit(0);
}

static void kill_mid_batch_loses_nothing(void **state)
{
    struct fixture *f = *state;
    const char *const args[] = {"--delay", "0.01", NULL};
    enum { TOTAL = 200 };
    bool delivered[TOTAL] = {false};
    char address[64];
    int at_kill, received;
    long want = TOTAL;
    pid_t child;
    struct outbox_counts counts;

    assert_int_equal(smtp_sink_run(&f->sink, args), 0);
    for (int i = 0; i < TOTAL; i++) {
        snprintf(address, sizeof(address), "r%03d@example.test", i);
        queue_simple(f, address);
    }
    db_close(f->db);
    f->db = NULL;

    child = fork();
    assert_true(child >= 0);
    if (child == 0)
        run_child_sender(f->path, &f->cfg);
    smtp_sink_wait(&f->sink, TOTAL / 3, 30000);
    kill(child, SIGKILL);
    waitpid(child, NULL, 0);
    at_kill = smtp_sink_count(&f->sink);
    assert_true(at_kill >= TOTAL / 3);
    assert_true(at_kill < TOTAL);

    open_db(f);
    assert_int_equal(outbox_counts(f->db, &counts), 0);
    assert_true(counts.queued > 0);
    assert_true(run_sender(f, all_sent, &want, 60000, NULL));

    received = smtp_sink_wait(&f->sink, TOTAL, 5000);
    assert_true(received >= TOTAL);
    for (int n = 1; n <= received; n++) {
        json_t *message = smtp_sink_message(&f->sink, n);
        const char *rcpt;
        int index;

        assert_non_null(message);
        rcpt = json_string_value(json_array_get(json_object_get(message, "rcpt_tos"), 0));
        assert_int_equal(sscanf(rcpt, "r%d@", &index), 1);
        assert_in_range(index, 0, TOTAL - 1);
        delivered[index] = true;
        json_decref(message);
    }
    for (int i = 0; i < TOTAL; i++) {
        if (!delivered[i])
            fail_msg("mail to r%03d@example.test never delivered", i);
    }
    assert_int_equal(outbox_counts(f->db, &counts), 0);
    assert_int_equal(counts.sent, TOTAL);
    assert_int_equal(counts.failed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(template_mail_decodes_at_sink, setup, teardown),
        cmocka_unit_test_setup_teardown(connection_reused_across_mails, setup, teardown),
        cmocka_unit_test_setup_teardown(smtp_down_keeps_mails_queued, setup, teardown),
        cmocka_unit_test_setup_teardown(rejected_recipient_fails_then_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(temporary_failure_retried_then_failed, setup, teardown),
        cmocka_unit_test_setup_teardown(auth_credentials_used, setup, teardown),
        cmocka_unit_test_setup_teardown(tls_required_rejects_plain_server, setup, teardown),
        cmocka_unit_test_setup_teardown(rate_limit_spaces_mails, setup, teardown),
        cmocka_unit_test_setup_teardown(recover_requeues_sending, setup, teardown),
        cmocka_unit_test_setup_teardown(stop_requeues_mail_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_config_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(worker_keeps_caller_loop_free, setup, teardown),
        cmocka_unit_test_setup_teardown(worker_reports_bad_database, setup, teardown),
        cmocka_unit_test_setup_teardown(kill_mid_batch_loses_nothing, setup, teardown),
    };

    if (sodium_init() < 0)
        return 1;
    log_set_level(getenv("LICOL_LOG_LEVEL") ? getenv("LICOL_LOG_LEVEL") : "warn");
    return cmocka_run_group_tests(tests, NULL, NULL);
}
