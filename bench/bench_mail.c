/*
 * Mail sending benchmark: queues N mails rendered from the shipped
 * 'recuperation' template into a fresh outbox, then sends them all to
 * tests/tools/smtp_sink.py on loopback and reports mails per second.
 *
 *   bench_mail [COUNT [CONNECTIONS]]     defaults: 10000 mails, 1 connection
 *
 * The sender runs with no rate limit, on this process's loop. The sink
 * stores each message but skips decoding it (--no-decode), so the figure
 * measures Licol and aiosmtpd's protocol handling, not Python's email parser.
 */
#include "../tests/tools/smtp_sink.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "outbox.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

struct progress {
    struct outbox_sender *sender;
    long target;
};

static void check_cb(uv_timer_t *timer)
{
    struct progress *progress = timer->data;
    struct outbox_stats stats;

    outbox_sender_stats(progress->sender, &stats);
    if (stats.sent + stats.failed >= progress->target)
        uv_stop(timer->loop);
}

static void remove_db(const char *path)
{
    char side[128];

    unlink(path);
    snprintf(side, sizeof(side), "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", path);
    unlink(side);
}

static int queue_mails(struct db *db, const struct outbox_config *cfg, long count)
{
    char address[64], link[128];
    char *err = NULL;

    db_begin(db);
    for (long i = 0; i < count; i++) {
        const struct mail_var vars[] = {
            {"prenom", "Léa"},
            {"nom", "Martin--Durand"},
            {"club", "Écurie du Moulin"},
            {"lien", link},
            {"expiration", "18 décembre 2026 à 20 h 00"},
            {"famille", ""},
        };
        struct outbox_mail mail = {.kind = "recuperation", .to_name = "Léa Martin--Durand",
                                   .to_address = address};

        snprintf(address, sizeof(address), "rider%06ld@example.test", i);
        snprintf(link, sizeof(link), "https://club.test/mot-de-passe?jeton=%032ld", i);
        if (outbox_queue_template(db, cfg, &mail, "recuperation", vars, 6, NULL, &err) < 0) {
            fprintf(stderr, "queueing failed: %s\n", err);
            free(err);
            db_rollback(db);
            return -1;
        }
    }
    return db_commit(db) == SQLITE_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
    long count = argc > 1 ? atol(argv[1]) : 10000;
    int connections = argc > 2 ? atoi(argv[2]) : 1;
    const char *const sink_args[] = {"--no-decode", NULL};
    char path[] = "/tmp/licol-bench-mail-XXXXXX";
    struct smtp_sink sink;
    struct outbox_config cfg;
    struct outbox_stats stats;
    struct progress progress = {.target = count};
    struct db *db = NULL;
    uv_loop_t loop;
    uv_timer_t check;
    char url[64];
    char *err = NULL;
    uint64_t start;
    double queue_seconds, send_seconds;
    int fd, rc = 1;

    if (count < 1 || connections < 1 || sodium_init() < 0) {
        fprintf(stderr, "usage: bench_mail [COUNT [CONNECTIONS]]\n");
        return 2;
    }
    log_set_level("warn");
    fd = mkstemp(path);
    close(fd);
    db = db_open(path, &err);
    if (!db || migrate_apply(db, &err) < 0) {
        fprintf(stderr, "database: %s\n", err);
        goto done;
    }
    if (smtp_sink_start(&sink, sink_args) < 0) {
        fprintf(stderr, "could not start %s\n", SMTP_SINK_SCRIPT);
        goto done;
    }

    outbox_config_default(&cfg);
    snprintf(url, sizeof(url), "smtp://127.0.0.1:%d", sink.port);
    cfg.smtp_url = url;
    cfg.tls = OUTBOX_TLS_NONE;
    cfg.from_address = "club@ecurie-du-moulin.test";
    cfg.from_name = "Écurie du Moulin";
    cfg.rate_per_second = 0;
    cfg.connections = connections;

    start = uv_hrtime();
    if (queue_mails(db, &cfg, count) < 0)
        goto stop_sink;
    queue_seconds = (double)(uv_hrtime() - start) / 1e9;

    uv_loop_init(&loop);
    progress.sender = outbox_sender_start(&loop, db, &cfg, &err);
    if (!progress.sender) {
        fprintf(stderr, "sender: %s\n", err);
        goto stop_sink;
    }
    uv_timer_init(&loop, &check);
    check.data = &progress;
    start = uv_hrtime();
    uv_timer_start(&check, check_cb, 10, 10);
    uv_run(&loop, UV_RUN_DEFAULT);
    send_seconds = (double)(uv_hrtime() - start) / 1e9;
    outbox_sender_stats(progress.sender, &stats);
    uv_close((uv_handle_t *)&check, NULL);
    outbox_sender_stop(progress.sender, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);

    printf("queued %ld mails in %.2f s (%.0f mails/s)\n", count, queue_seconds,
           (double)count / queue_seconds);
    printf("sent %ld, failed %ld, over %ld SMTP connection(s) in %.2f s: %.0f mails/s\n",
           stats.sent, stats.failed, stats.connections, send_seconds,
           (double)stats.sent / send_seconds);
    printf("sink received %d messages\n", smtp_sink_wait(&sink, (int)count, 5000));
    rc = stats.sent == count ? 0 : 1;

stop_sink:
    smtp_sink_cleanup(&sink);
done:
    db_close(db);
    remove_db(path);
    return rc;
}
