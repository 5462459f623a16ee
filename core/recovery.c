/*
 * Password-recovery mails: one mail per distinct address, to the person
 * who holds (or will hold) the login of that address, with a one-time link
 * to choose a password.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "auth.h"
#include "log.h"
#include "mail.h"
#include "recovery.h"
#include "token.h"
#include "util.h"

#define NAME_LIST_MAX (16 * 1024) /* bytes of the family names in one mail */

void recovery_expiry_text(long ttl_seconds, char *out, size_t size)
{
    time_t at = time(NULL) + ttl_seconds;
    struct tm tm;

    localtime_r(&at, &tm);
    strftime(out, size, "%d/%m/%Y à %H:%M", &tm);
}

long recovery_import_people(struct db *db, int64_t run_id, int64_t **ids, char **err)
{
    sqlite3_stmt *stmt;
    size_t count = 0, cap = 0;
    int64_t *list = NULL, *grown;
    long rc = -1;

    *ids = NULL;
    *err = NULL;
    stmt = db_stmt(db, "SELECT id, dry_run FROM import_run WHERE id = ?1");
    if (stmt == NULL)
        goto db_error;
    sqlite3_bind_int64(stmt, 1, run_id);
    if (sqlite3_step(stmt) != SQLITE_ROW) {
        sqlite3_reset(stmt);
        *err = str_printf("L'import n° %lld n'existe pas.", (long long)run_id);
        return -1;
    }
    if (sqlite3_column_int(stmt, 1)) {
        sqlite3_reset(stmt);
        *err = str_printf("L'import n° %lld est un aperçu : il n'a rien enregistré.",
                          (long long)run_id);
        return -1;
    }
    sqlite3_reset(stmt);

    stmt = db_stmt(db, "SELECT DISTINCT a.person_id FROM audit_log a"
                       " JOIN person p ON p.id = a.person_id"
                       " WHERE a.import_run_id = ?1 ORDER BY a.person_id");
    if (stmt == NULL)
        goto db_error;
    sqlite3_bind_int64(stmt, 1, run_id);
    while (sqlite3_step(stmt) == SQLITE_ROW && count < RECOVERY_MAX_PEOPLE) {
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            grown = realloc(list, cap * sizeof(*list));
            if (grown == NULL) {
                sqlite3_reset(stmt);
                *err = strdup("Mémoire insuffisante.");
                goto done;
            }
            list = grown;
        }
        list[count++] = sqlite3_column_int64(stmt, 0);
    }
    sqlite3_reset(stmt);
    *ids = list;
    list = NULL;
    rc = (long)count;
    goto done;

db_error:
    *err = str_printf("Erreur de la base de données : %s", sqlite3_errmsg(db_handle(db)));
done:
    free(list);
    return rc;
}

char *recovery_family_names(struct db *db, const char *email, int64_t holder)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT first_name, last_name FROM person"
                                     " WHERE email = ?1 AND id <> ?2 ORDER BY birth_date, id");
    struct buf out;

    buf_init(&out, NAME_LIST_MAX);
    if (stmt != NULL) {
        sqlite3_bind_text(stmt, 1, email, -1, SQLITE_TRANSIENT);
        sqlite3_bind_int64(stmt, 2, holder);
        while (sqlite3_step(stmt) == SQLITE_ROW) {
            const char *first = (const char *)sqlite3_column_text(stmt, 0);
            const char *last = (const char *)sqlite3_column_text(stmt, 1);

            if (out.len > 0 && buf_appendz(&out, ", ") < 0)
                break;
            if (buf_printf(&out, "%s%s%s", first ? first : "", first && first[0] ? " " : "",
                           last ? last : "") < 0)
                break;
        }
        sqlite3_reset(stmt);
    }
    if (buf_terminate(&out) < 0 || out.data == NULL) {
        buf_free(&out);
        return strdup("");
    }
    return out.data;
}

/* One person as the request sees it. */
struct person_row {
    int64_t id;
    char name[512];
    char email[MAIL_ADDRESS_MAX + 1];
    int has_email;
    char invalid[MAIL_ADDRESS_MAX + 1];
    int found;
};

static int load_person(struct db *db, int64_t id, struct person_row *row)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT first_name, last_name, email, email_invalid"
                                     " FROM person WHERE id = ?1");

    memset(row, 0, sizeof(*row));
    row->id = id;
    if (stmt == NULL)
        return -1;
    sqlite3_bind_int64(stmt, 1, id);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        const char *first = (const char *)sqlite3_column_text(stmt, 0);
        const char *last = (const char *)sqlite3_column_text(stmt, 1);
        const char *email = (const char *)sqlite3_column_text(stmt, 2);
        const char *invalid = (const char *)sqlite3_column_text(stmt, 3);

        row->found = 1;
        snprintf(row->name, sizeof(row->name), "%s%s%s", first ? first : "",
                 first && first[0] ? " " : "", last ? last : "");
        if (email != NULL && email[0] != '\0' && strlen(email) <= MAIL_ADDRESS_MAX &&
            mail_address_check(email) == 0) {
            snprintf(row->email, sizeof(row->email), "%s", email);
            row->has_email = 1;
        } else if (email != NULL && email[0] != '\0') {
            snprintf(row->invalid, sizeof(row->invalid), "%s", email);
        }
        if (invalid != NULL && !row->has_email)
            snprintf(row->invalid, sizeof(row->invalid), "%s", invalid);
    }
    sqlite3_reset(stmt);
    return 0;
}

static int already_sent(struct db *db, int64_t run_id, const char *email)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT 1 FROM outbox WHERE import_run_id = ?1"
                                     " AND kind = 'recuperation' AND recipient = ?2 LIMIT 1");
    int found = 0;

    if (stmt == NULL)
        return 0;
    sqlite3_bind_int64(stmt, 1, run_id);
    sqlite3_bind_text(stmt, 2, email, -1, SQLITE_TRANSIENT);
    found = sqlite3_step(stmt) == SQLITE_ROW;
    sqlite3_reset(stmt);
    return found;
}

/* Queues the mail of one address. Returns 0, or -1 with *err. */
static int queue_one(struct app *app, const struct outbox_config *cfg, const char *email,
                     const char *kind, int64_t run_id, char **err)
{
    struct person_row holder;
    char token[TOKEN_TEXT_SIZE], expiry[64];
    char *link = NULL, *family = NULL, *family_text = NULL;
    long ttl = strcmp(kind, "reset") == 0 ? TOKEN_TTL_RESET : TOKEN_TTL_INVITATION;
    int64_t holder_id = auth_family_account_holder(app->db, email);
    int rc = -1;

    if (holder_id <= 0 || load_person(app->db, holder_id, &holder) != 0 || !holder.found) {
        *err = strdup("Erreur de la base de données.");
        return -1;
    }
    if (token_create(app->db, holder_id, kind, ttl, token) != 0) {
        *err = strdup("Impossible de créer le lien personnel.");
        return -1;
    }
    recovery_expiry_text(ttl, expiry, sizeof(expiry));
    link = str_printf("%s%s#jeton=%s", app->config.public_url, RECOVERY_PAGE, token);
    family = recovery_family_names(app->db, email, holder_id);
    if (link == NULL || family == NULL)
        goto oom;
    family_text = family[0]
                      ? str_printf("Ce compte vous donne aussi accès aux fiches de : %s.", family)
                      : strdup("");
    if (family_text == NULL)
        goto oom;
    {
        sqlite3_stmt *stmt = db_stmt(app->db, "SELECT first_name, last_name FROM person WHERE id = ?1");
        char first[256] = "", last[256] = "";
        struct mail_var vars[6];
        struct outbox_mail mail = {0};

        if (stmt != NULL) {
            sqlite3_bind_int64(stmt, 1, holder_id);
            if (sqlite3_step(stmt) == SQLITE_ROW) {
                snprintf(first, sizeof(first), "%s", (const char *)sqlite3_column_text(stmt, 0));
                snprintf(last, sizeof(last), "%s", (const char *)sqlite3_column_text(stmt, 1));
            }
            sqlite3_reset(stmt);
        }
        vars[0] = (struct mail_var){"prenom", first};
        vars[1] = (struct mail_var){"nom", last};
        vars[2] = (struct mail_var){"club", app->config.club_name};
        vars[3] = (struct mail_var){"lien", link};
        vars[4] = (struct mail_var){"expiration", expiry};
        vars[5] = (struct mail_var){"famille", family_text};
        mail.kind = "recuperation";
        mail.to_name = holder.name;
        mail.to_address = email;
        mail.person_id = holder_id;
        mail.import_run_id = run_id;
        rc = outbox_queue_template(app->db, cfg, &mail, "recuperation", vars, 6, NULL, err);
    }
    goto done;

oom:
    *err = strdup("Mémoire insuffisante.");
done:
    free(link);
    free(family);
    free(family_text);
    return rc;
}

static int compare_ids(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

    return (x > y) - (x < y);
}

int recovery_send(struct app *app, const struct recovery_request *request, json_t **result,
                  char **err)
{
    struct outbox_config cfg;
    json_t *without = json_array(), *seen = json_object();
    int64_t *ids = NULL;
    long queued = 0, addresses = 0, skipped = 0;
    int rc = -1;

    *result = NULL;
    *err = NULL;
    if (request->count > RECOVERY_MAX_PEOPLE) {
        *err = str_printf("Trop de personnes à la fois (%d au plus).", RECOVERY_MAX_PEOPLE);
        goto done;
    }
    ids = malloc((request->count ? request->count : 1) * sizeof(*ids));
    if (ids == NULL) {
        *err = strdup("Mémoire insuffisante.");
        goto done;
    }
    if (request->count > 0)
        memcpy(ids, request->person_ids, request->count * sizeof(*ids));
    qsort(ids, request->count, sizeof(*ids), compare_ids);
    mail_service_config(app, &cfg);

    if (db_begin(app->db) != SQLITE_OK) {
        *err = strdup("Erreur de la base de données.");
        goto done;
    }
    for (size_t i = 0; i < request->count; i++) {
        struct person_row row;

        if (i > 0 && ids[i] == ids[i - 1])
            continue;
        if (load_person(app->db, ids[i], &row) != 0) {
            *err = strdup("Erreur de la base de données.");
            goto rollback;
        }
        if (!row.found) {
            json_array_append_new(without, json_pack("{s:I,s:s,s:s}", "id", (json_int_t)row.id,
                                                     "name", "", "reason",
                                                     "Cette personne n'existe pas."));
            continue;
        }
        if (!row.has_email) {
            char *reason = row.invalid[0]
                               ? str_printf("Adresse e-mail invalide : %s", row.invalid)
                               : strdup("Pas d'adresse e-mail.");
            json_array_append_new(without,
                                  json_pack("{s:I,s:s,s:s}", "id", (json_int_t)row.id, "name",
                                            row.name, "reason", reason ? reason : ""));
            free(reason);
            continue;
        }
        if (json_object_get(seen, row.email) != NULL)
            continue;
        json_object_set_new(seen, row.email, json_true());
        addresses++;
        if (request->skip_already_sent && request->import_run_id != 0 &&
            already_sent(app->db, request->import_run_id, row.email)) {
            skipped++;
            continue;
        }
        if (queue_one(app, &cfg, row.email, request->token_kind, request->import_run_id, err) !=
            0)
            goto rollback;
        queued++;
    }
    if (db_commit(app->db) != SQLITE_OK) {
        *err = strdup("Erreur de la base de données.");
        goto rollback;
    }
    api_data_changed();
    if (queued > 0)
        mail_service_wake();
    *result = json_pack("{s:I,s:I,s:I,s:O}", "queued", (json_int_t)queued, "addresses",
                        (json_int_t)addresses, "already_sent", (json_int_t)skipped,
                        "without_email", without);
    log_info("recovery", "queued %ld recovery mail(s) for %ld address(es), %zu without e-mail",
             queued, addresses, json_array_size(without));
    rc = 0;
    goto done;

rollback:
    db_rollback(app->db);
done:
    free(ids);
    json_decref(without);
    json_decref(seen);
    return rc;
}
