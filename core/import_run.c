/*
 * Import run bookkeeping: creating the run record, describing runs for the
 * API, undoing the last import, exporting rejected rows, and cleaning up
 * after a killed process. The execution itself is in import.c.
 */
#include "import.h"
#include "log.h"
#include "person.h"

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int64_t import_run_create(struct db *db, const char *path, const struct import_options *options,
                          char **err)
{
    crypto_hash_sha256_state sha;
    unsigned char digest[crypto_hash_sha256_BYTES];
    char hex[crypto_hash_sha256_BYTES * 2 + 1], now[32];
    unsigned char chunk[65536];
    long long size = 0, lines = 0;
    size_t n;
    FILE *f = fopen(path, "rb");
    sqlite3_stmt *stmt;
    int last_was_newline = 1;

    *err = NULL;
    if (!f) {
        *err = str_printf("Impossible de lire le fichier %s : %s.", path, strerror(errno));
        return -1;
    }
    crypto_hash_sha256_init(&sha);
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        crypto_hash_sha256_update(&sha, chunk, n);
        size += (long long)n;
        for (size_t i = 0; i < n; i++) {
            if (chunk[i] == '\n' || (chunk[i] == '\r' && (i + 1 >= n || chunk[i + 1] != '\n')))
                lines++;
        }
        last_was_newline = chunk[n - 1] == '\n' || chunk[n - 1] == '\r';
    }
    if (ferror(f)) {
        *err = str_printf("Erreur de lecture du fichier %s : %s.", path, strerror(errno));
        fclose(f);
        return -1;
    }
    fclose(f);
    if (size > 0 && !last_was_newline)
        lines++;
    crypto_hash_sha256_final(&sha, digest);
    sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
    db_now(now, sizeof(now));

    stmt = db_stmt(db, "INSERT INTO import_run (state, dry_run, replace_data, format_requested,"
                       " filename, file_size, file_lines, sha256, file_path, source, actor_id,"
                       " preview_of, created_at)"
                       " VALUES ('queued', ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)");
    if (!stmt) {
        *err = strdup("Impossible d'enregistrer l'import (base de données).");
        return -1;
    }
    sqlite3_bind_int(stmt, 1, options->dry_run);
    sqlite3_bind_int(stmt, 2, options->replace);
    sqlite3_bind_text(stmt, 3, options->format[0] ? options->format : "auto", -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, options->filename, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 5, size);
    sqlite3_bind_int64(stmt, 6, lines);
    sqlite3_bind_text(stmt, 7, hex, -1, SQLITE_STATIC);
    db_bind_text_or_null(stmt, 8, options->dry_run ? path : NULL);
    sqlite3_bind_text(stmt, 9, options->source[0] ? options->source : "cli", -1, SQLITE_STATIC);
    if (options->actor_id)
        sqlite3_bind_int64(stmt, 10, options->actor_id);
    if (options->preview_of)
        sqlite3_bind_int64(stmt, 11, options->preview_of);
    sqlite3_bind_text(stmt, 12, now, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        *err = str_printf("Impossible d'enregistrer l'import : %s.", db_error_fr(db));
        sqlite3_reset(stmt);
        return -1;
    }
    sqlite3_reset(stmt);
    return sqlite3_last_insert_rowid(db_handle(db));
}

void import_recover_interrupted(struct db *db)
{
    sqlite3_stmt *stmt = db_stmt(db, "UPDATE import_run SET state = 'failed', error = ?1,"
                                     " finished_at = ?2 WHERE state IN ('queued', 'running')");
    char now[32];

    if (!stmt)
        return;
    db_now(now, sizeof(now));
    sqlite3_bind_text(stmt, 1,
                      "Import interrompu (arrêt du serveur ou du programme) : rien n'a été "
                      "modifié. Relancez l'import.",
                      -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, now, -1, SQLITE_STATIC);
    sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (sqlite3_changes(db_handle(db)) > 0)
        log_warn("import", "%d interrupted import runs marked as failed",
                 sqlite3_changes(db_handle(db)));
}

/* ---- description ------------------------------------------------------------ */

static int64_t last_real_run(struct db *db)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT MAX(id) FROM import_run WHERE dry_run = 0"
                                     " AND state = 'done'");
    int64_t id = 0;

    if (stmt && sqlite3_step(stmt) == SQLITE_ROW)
        id = sqlite3_column_int64(stmt, 0);
    if (stmt)
        sqlite3_reset(stmt);
    return id;
}

static json_t *text_or_null(sqlite3_stmt *stmt, int col)
{
    const char *v = (const char *)sqlite3_column_text(stmt, col);
    return v ? json_string(v) : json_null();
}

static json_t *issues_json(struct db *db, int64_t run_id, const char *kind, int limit)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT line_no, field, message, person_id FROM"
                                     " import_row_issue WHERE run_id = ?1 AND kind = ?2"
                                     " ORDER BY record_no, id LIMIT ?3");
    json_t *items = json_array();

    if (!stmt)
        return items;
    sqlite3_bind_int64(stmt, 1, run_id);
    sqlite3_bind_text(stmt, 2, kind, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 3, limit);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        json_t *item = json_pack("{s:I,s:o,s:o}", "row", (json_int_t)sqlite3_column_int64(stmt, 0),
                                 "field", text_or_null(stmt, 1), "reason", text_or_null(stmt, 2));
        if (sqlite3_column_type(stmt, 3) != SQLITE_NULL)
            json_object_set_new(item, "person_id", json_integer(sqlite3_column_int64(stmt, 3)));
        json_array_append_new(items, item);
    }
    sqlite3_reset(stmt);
    return items;
}

static const char RUN_COLUMNS[] =
    "r.id, r.state, r.dry_run, r.replace_data, r.format_requested, r.format, r.format_label,"
    " r.encoding, r.separator, r.filename, r.file_size, r.sha256, r.source, r.actor_id,"
    " TRIM(COALESCE(p.first_name, '') || ' ' || COALESCE(p.last_name, '')), r.created_at,"
    " r.started_at, r.finished_at, r.duration_ms, r.rows, r.created, r.updated, r.unchanged,"
    " r.set_aside, r.rejected, r.warnings, r.error, r.preview_of, r.undone_at, r.file_lines,"
    " r.script_version";

static json_t *run_row_json(sqlite3_stmt *stmt, int64_t last_real)
{
    int64_t id = sqlite3_column_int64(stmt, 0);
    const char *state = (const char *)sqlite3_column_text(stmt, 1);
    int dry_run = sqlite3_column_int(stmt, 2);
    json_t *run = json_object();

    json_object_set_new(run, "id", json_integer(id));
    json_object_set_new(run, "state", json_string(state));
    json_object_set_new(run, "dry_run", json_boolean(dry_run));
    json_object_set_new(run, "replace", json_boolean(sqlite3_column_int(stmt, 3)));
    json_object_set_new(run, "format_requested", text_or_null(stmt, 4));
    json_object_set_new(run, "format", text_or_null(stmt, 5));
    json_object_set_new(run, "format_label", text_or_null(stmt, 6));
    json_object_set_new(run, "encoding", text_or_null(stmt, 7));
    json_object_set_new(run, "separator", text_or_null(stmt, 8));
    json_object_set_new(run, "filename", text_or_null(stmt, 9));
    json_object_set_new(run, "size", json_integer(sqlite3_column_int64(stmt, 10)));
    json_object_set_new(run, "sha256", text_or_null(stmt, 11));
    json_object_set_new(run, "source", text_or_null(stmt, 12));
    if (sqlite3_column_type(stmt, 13) != SQLITE_NULL)
        json_object_set_new(run, "by",
                            json_pack("{s:I,s:o}", "id", (json_int_t)sqlite3_column_int64(stmt, 13),
                                      "name", text_or_null(stmt, 14)));
    else
        json_object_set_new(run, "by", json_null());
    json_object_set_new(run, "created_at", text_or_null(stmt, 15));
    json_object_set_new(run, "started_at", text_or_null(stmt, 16));
    json_object_set_new(run, "finished_at", text_or_null(stmt, 17));
    json_object_set_new(run, "duration_ms", sqlite3_column_type(stmt, 18) == SQLITE_NULL
                                                ? json_null()
                                                : json_integer(sqlite3_column_int64(stmt, 18)));
    json_object_set_new(run, "counts",
                        json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}", "rows",
                                  (json_int_t)sqlite3_column_int64(stmt, 19), "created",
                                  (json_int_t)sqlite3_column_int64(stmt, 20), "updated",
                                  (json_int_t)sqlite3_column_int64(stmt, 21), "unchanged",
                                  (json_int_t)sqlite3_column_int64(stmt, 22), "set_aside",
                                  (json_int_t)sqlite3_column_int64(stmt, 23), "rejected",
                                  (json_int_t)sqlite3_column_int64(stmt, 24), "warnings",
                                  (json_int_t)sqlite3_column_int64(stmt, 25)));
    json_object_set_new(run, "error", text_or_null(stmt, 26));
    json_object_set_new(run, "preview_of", sqlite3_column_type(stmt, 27) == SQLITE_NULL
                                               ? json_null()
                                               : json_integer(sqlite3_column_int64(stmt, 27)));
    json_object_set_new(run, "undone_at", text_or_null(stmt, 28));
    json_object_set_new(run, "script_version", text_or_null(stmt, 30));
    json_object_set_new(run, "undoable",
                        json_boolean(!dry_run && state && !strcmp(state, "done") && id == last_real));
    json_object_set_new(run, "confirmable",
                        json_boolean(dry_run && state && !strcmp(state, "done")));
    return run;
}

json_t *import_run_to_json(struct db *db, int64_t run_id)
{
    static char sql[1024];
    sqlite3_stmt *stmt;
    json_t *run = NULL;
    int64_t last_real = last_real_run(db);

    if (!sql[0])
        snprintf(sql, sizeof(sql),
                 "SELECT %s, r.report FROM import_run r LEFT JOIN person p ON p.id = r.actor_id"
                 " WHERE r.id = ?1",
                 RUN_COLUMNS);
    stmt = db_stmt(db, sql);
    if (!stmt)
        return NULL;
    sqlite3_bind_int64(stmt, 1, run_id);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        const char *report = (const char *)sqlite3_column_text(stmt, 31);
        json_t *parsed = report ? json_loads(report, 0, NULL) : NULL;
        run = run_row_json(stmt, last_real);
        json_object_set_new(run, "progress",
                            json_pack("{s:I,s:I}", "lines_total",
                                      (json_int_t)sqlite3_column_int64(stmt, 29), "rows",
                                      (json_int_t)sqlite3_column_int64(stmt, 19)));
        json_object_set_new(run, "sample_changes",
                            parsed && json_object_get(parsed, "sample_changes")
                                ? json_incref(json_object_get(parsed, "sample_changes"))
                                : json_array());
        json_decref(parsed);
    }
    sqlite3_reset(stmt);
    if (run) {
        json_object_set_new(run, "set_aside", issues_json(db, run_id, "set_aside", 200));
        json_object_set_new(run, "rejected", issues_json(db, run_id, "rejected", 200));
        json_object_set_new(run, "warnings", issues_json(db, run_id, "warning", 200));
    }
    return run;
}

json_t *import_run_list(struct db *db, int limit)
{
    static char sql[1024];
    sqlite3_stmt *stmt;
    json_t *items = json_array();
    int64_t last_real = last_real_run(db);

    if (!sql[0])
        snprintf(sql, sizeof(sql),
                 "SELECT %s FROM import_run r LEFT JOIN person p ON p.id = r.actor_id"
                 " ORDER BY r.id DESC LIMIT ?1",
                 RUN_COLUMNS);
    stmt = db_stmt(db, sql);
    if (!stmt)
        return items;
    sqlite3_bind_int(stmt, 1, limit);
    while (sqlite3_step(stmt) == SQLITE_ROW)
        json_array_append_new(items, run_row_json(stmt, last_real));
    sqlite3_reset(stmt);
    return items;
}

/* ---- undo ------------------------------------------------------------------ */

/* One UPDATE per core column, so that no SQL is assembled from the audit
 * log's field names. */
static const struct {
    const char *field;
    const char *sql;
} restore_columns[] = {
    {"last_name", "UPDATE person SET last_name = COALESCE(?2, '') WHERE id = ?1"},
    {"first_name", "UPDATE person SET first_name = COALESCE(?2, '') WHERE id = ?1"},
    {"birth_date", "UPDATE person SET birth_date = ?2 WHERE id = ?1"},
    {"sex", "UPDATE person SET sex = ?2 WHERE id = ?1"},
    {"email", "UPDATE person SET email = ?2 WHERE id = ?1"},
    {"email_invalid", "UPDATE person SET email_invalid = ?2 WHERE id = ?1"},
    {"phone", "UPDATE person SET phone = ?2 WHERE id = ?1"},
    {"mobile", "UPDATE person SET mobile = ?2 WHERE id = ?1"},
    {"address", "UPDATE person SET address = ?2 WHERE id = ?1"},
    {"address2", "UPDATE person SET address2 = ?2 WHERE id = ?1"},
    {"postcode", "UPDATE person SET postcode = ?2 WHERE id = ?1"},
    {"city", "UPDATE person SET city = ?2 WHERE id = ?1"},
    {"country", "UPDATE person SET country = ?2 WHERE id = ?1"},
    {"licence_number", "UPDATE person SET licence_number = ?2 WHERE id = ?1"},
    {"licence_raw", "UPDATE person SET licence_raw = ?2 WHERE id = ?1"},
    {"galop", "UPDATE person SET galop = ?2 WHERE id = ?1"},
};

static int exec_id_text(struct db *db, const char *sql, int64_t id, const char *text)
{
    sqlite3_stmt *stmt = db_stmt(db, sql);
    int rc;

    if (!stmt)
        return SQLITE_ERROR;
    sqlite3_bind_int64(stmt, 1, id);
    if (text)
        sqlite3_bind_text(stmt, 2, text, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int restore_licence(struct db *db, int64_t person_id, long season, const char *old_json)
{
    json_t *old = json_loads(old_json ? old_json : "null", JSON_DECODE_ANY, NULL);
    sqlite3_stmt *stmt = db_stmt(db, "UPDATE licence SET number = COALESCE(?3, number), type = ?4,"
                                     " category = ?5, club = ?6, taken_on = ?7"
                                     " WHERE person_id = ?1 AND season = ?2");
    static const char *const keys[] = {"number", "type", "category", "club", "taken_on"};
    int rc;

    if (!stmt || !json_is_object(old)) {
        json_decref(old);
        return stmt ? SQLITE_OK : SQLITE_ERROR;
    }
    sqlite3_bind_int64(stmt, 1, person_id);
    sqlite3_bind_int64(stmt, 2, season);
    for (int i = 0; i < 5; i++) {
        const char *v = json_string_value(json_object_get(old, keys[i]));
        db_bind_text_or_null(stmt, i + 3, v);
    }
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    json_decref(old);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

static int undo_entry(struct db *db, int64_t person_id, const char *action, const char *field,
                      const char *old_value, const char *new_value)
{
    if (!strcmp(action, "create"))
        return exec_id_text(db, "DELETE FROM person WHERE id = ?1", person_id, NULL);
    if (!field)
        return SQLITE_OK;
    if (!strncmp(field, "licence:", 8)) {
        long season = strtol(field + 8, NULL, 10);
        if (!strcmp(action, "add")) {
            sqlite3_stmt *stmt = db_stmt(db, "DELETE FROM licence WHERE person_id = ?1"
                                             " AND season = ?2");
            int rc;
            if (!stmt)
                return SQLITE_ERROR;
            sqlite3_bind_int64(stmt, 1, person_id);
            sqlite3_bind_int64(stmt, 2, season);
            rc = sqlite3_step(stmt);
            sqlite3_reset(stmt);
            return rc == SQLITE_DONE ? SQLITE_OK : rc;
        }
        return restore_licence(db, person_id, season, old_value);
    }
    if (!strcmp(field, "role"))
        return exec_id_text(db, "DELETE FROM person_role WHERE person_id = ?1 AND role = ?2",
                            person_id, new_value);
    if (!strcmp(field, "family_link"))
        return exec_id_text(db, "DELETE FROM family_link WHERE id = CAST(?2 AS INTEGER)"
                                " AND person_id = ?1",
                            person_id, new_value);
    if (!strcmp(field, "contact"))
        return exec_id_text(db, "DELETE FROM person_contact WHERE id = CAST(?2 AS INTEGER)"
                                " AND person_id = ?1",
                            person_id, new_value);
    if (!strncmp(field, "field:", 6)) {
        sqlite3_stmt *stmt;
        int rc;
        if (!old_value) {
            stmt = db_stmt(db, "DELETE FROM person_field WHERE person_id = ?1 AND key = ?2");
            if (!stmt)
                return SQLITE_ERROR;
            sqlite3_bind_int64(stmt, 1, person_id);
            sqlite3_bind_text(stmt, 2, field + 6, -1, SQLITE_STATIC);
        } else {
            stmt = db_stmt(db, "UPDATE person_field SET value = ?3 WHERE person_id = ?1"
                               " AND key = ?2");
            if (!stmt)
                return SQLITE_ERROR;
            sqlite3_bind_int64(stmt, 1, person_id);
            sqlite3_bind_text(stmt, 2, field + 6, -1, SQLITE_STATIC);
            sqlite3_bind_text(stmt, 3, old_value, -1, SQLITE_STATIC);
        }
        rc = sqlite3_step(stmt);
        sqlite3_reset(stmt);
        return rc == SQLITE_DONE ? SQLITE_OK : rc;
    }
    for (size_t i = 0; i < sizeof(restore_columns) / sizeof(restore_columns[0]); i++) {
        if (!strcmp(field, restore_columns[i].field)) {
            sqlite3_stmt *stmt = db_stmt(db, restore_columns[i].sql);
            int rc;
            if (!stmt)
                return SQLITE_ERROR;
            sqlite3_bind_int64(stmt, 1, person_id);
            db_bind_text_or_null(stmt, 2, old_value);
            rc = sqlite3_step(stmt);
            sqlite3_reset(stmt);
            if (rc != SQLITE_DONE)
                return rc;
            rc = person_refresh_keys(db, person_id);
            return rc == SQLITE_NOTFOUND ? SQLITE_OK : rc;
        }
    }
    log_warn("import", "undo: unknown audit field %s ignored", field);
    return SQLITE_OK;
}

/* French label of an audit_log field (or of its action when the field is
 * empty), for messages to staff. */
static void field_label(const char *field, const char *action, char *out, size_t size)
{
    static const struct {
        const char *field;
        const char *label;
    } labels[] = {
        {"last_name", "nom"},          {"first_name", "prénom"},
        {"birth_date", "date de naissance"}, {"sex", "sexe"},
        {"email", "e-mail"},           {"email_invalid", "e-mail invalide"},
        {"phone", "téléphone"},        {"mobile", "portable"},
        {"address", "adresse"},        {"address2", "complément d'adresse"},
        {"postcode", "code postal"},   {"city", "ville"},
        {"country", "pays"},           {"licence_number", "numéro de licence"},
        {"licence_raw", "licence"},    {"galop", "Galop"},
        {"role", "statuts"},           {"roles", "statuts"},
        {"family", "famille"},         {"family_link", "famille"},
        {"contact", "contacts"},       {"password", "mot de passe"},
    };

    if (!field || !*field) {
        snprintf(out, size, "%s", action && !strcmp(action, "delete") ? "fiche supprimée"
                                  : action && !strcmp(action, "create") ? "fiche créée"
                                                                        : "fiche modifiée");
        return;
    }
    if (!strncmp(field, "licence:", 8)) {
        snprintf(out, size, "licence %s", field + 8);
        return;
    }
    if (!strncmp(field, "field:", 6)) {
        snprintf(out, size, "%s", field + 6);
        return;
    }
    for (size_t i = 0; i < sizeof(labels) / sizeof(labels[0]); i++) {
        if (!strcmp(field, labels[i].field)) {
            snprintf(out, size, "%s", labels[i].label);
            return;
        }
    }
    snprintf(out, size, "%s", field);
}

/* Lists changes made after the run to the people it touched, by anyone or
 * anything else: one entry per person and field, with French labels. */
static json_t *find_conflicts(struct db *db, int64_t run_id)
{
    sqlite3_stmt *stmt = db_stmt(
        db, "SELECT a.person_id, TRIM(COALESCE(p.first_name, '') || ' ' ||"
            " COALESCE(p.last_name, '')), a.field, MAX(a.at), a.action,"
            " TRIM(COALESCE(w.first_name, '') || ' ' || COALESCE(w.last_name, ''))"
            " FROM audit_log a LEFT JOIN person p ON p.id = a.person_id"
            " LEFT JOIN person w ON w.id = a.actor_id"
            " WHERE a.id > (SELECT MAX(id) FROM audit_log WHERE import_run_id = ?1)"
            " AND a.person_id IN (SELECT person_id FROM audit_log WHERE import_run_id = ?1)"
            " AND COALESCE(a.import_run_id, 0) <> ?1"
            " GROUP BY a.person_id, COALESCE(a.field, a.action) ORDER BY MIN(a.id) LIMIT 50");
    json_t *items = json_array();

    if (!stmt)
        return items;
    sqlite3_bind_int64(stmt, 1, run_id);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(stmt, 1);
        char label[128], fallback[64];

        field_label((const char *)sqlite3_column_text(stmt, 2),
                    (const char *)sqlite3_column_text(stmt, 4), label, sizeof(label));
        snprintf(fallback, sizeof(fallback), "personne n° %lld (supprimée)",
                 (long long)sqlite3_column_int64(stmt, 0));
        json_array_append_new(
            items, json_pack("{s:{s:I,s:s},s:o,s:s,s:o,s:o,s:o}", "person", "id",
                             (json_int_t)sqlite3_column_int64(stmt, 0), "name",
                             name && *name ? name : fallback, "field", text_or_null(stmt, 2),
                             "label", label, "at", text_or_null(stmt, 3), "action",
                             text_or_null(stmt, 4), "by", text_or_null(stmt, 5)));
    }
    sqlite3_reset(stmt);
    return items;
}

int import_undo(struct db *db, int64_t run_id, int64_t actor_id, char **err, json_t **conflicts)
{
    sqlite3_stmt *stmt;
    const char *state;
    int dry_run, found, rc = SQLITE_OK;
    long entries = 0;
    char now[32];
    json_t *found_conflicts;

    *err = NULL;
    if (conflicts)
        *conflicts = NULL;
    stmt = db_stmt(db, "SELECT state, dry_run FROM import_run WHERE id = ?1");
    if (!stmt) {
        *err = strdup("Erreur de la base de données.");
        return -1;
    }
    sqlite3_bind_int64(stmt, 1, run_id);
    found = sqlite3_step(stmt) == SQLITE_ROW;
    state = found ? (const char *)sqlite3_column_text(stmt, 0) : NULL;
    dry_run = found ? sqlite3_column_int(stmt, 1) : 0;
    if (!found) {
        sqlite3_reset(stmt);
        *err = str_printf("L'import n° %lld n'existe pas.", (long long)run_id);
        return -1;
    }
    if (dry_run) {
        sqlite3_reset(stmt);
        *err = strdup("Cet import était un aperçu : il n'a rien modifié, il n'y a rien à annuler.");
        return -1;
    }
    if (strcmp(state, "done") != 0) {
        *err = str_printf("Cet import ne peut pas être annulé : son état est « %s ».",
                          !strcmp(state, "undone") ? "déjà annulé" : state);
        sqlite3_reset(stmt);
        return -1;
    }
    sqlite3_reset(stmt);
    if (last_real_run(db) != run_id) {
        *err = strdup("Seul le dernier import peut être annulé : un import plus récent a été "
                      "fait depuis. Annulez d'abord celui-là.");
        return -1;
    }

    db_set_long_writer(db);
    if (db_begin(db) != SQLITE_OK) {
        *err = str_printf("L'annulation n'a pas pu commencer : %s.", db_error_fr(db));
        return -1;
    }
    found_conflicts = find_conflicts(db, run_id);
    if (json_array_size(found_conflicts) > 0) {
        struct buf names;
        buf_init(&names, 4096);
        for (size_t i = 0; i < json_array_size(found_conflicts) && i < 10; i++) {
            json_t *c = json_array_get(found_conflicts, i);
            buf_printf(&names, "%s%s (%s)", i ? ", " : "",
                       json_string_value(json_object_get(json_object_get(c, "person"), "name")),
                       json_string_value(json_object_get(c, "label")));
        }
        *err = str_printf("Annulation impossible : %zu modification%s %s été faite%s depuis cet "
                          "import sur les personnes qu'il a touchées : %s. Annuler l'import "
                          "effacerait ce travail. Corrigez ces fiches à la main.",
                          json_array_size(found_conflicts),
                          json_array_size(found_conflicts) > 1 ? "s" : "",
                          json_array_size(found_conflicts) > 1 ? "ont" : "a",
                          json_array_size(found_conflicts) > 1 ? "s" : "",
                          names.data ? names.data : "");
        buf_free(&names);
        db_rollback(db);
        if (conflicts)
            *conflicts = found_conflicts;
        else
            json_decref(found_conflicts);
        return -1;
    }
    json_decref(found_conflicts);

    stmt = db_stmt(db, "SELECT person_id, action, field, old_value, new_value FROM audit_log"
                       " WHERE import_run_id = ?1 AND action <> 'undo' ORDER BY id DESC");
    if (!stmt) {
        db_rollback(db);
        *err = strdup("Erreur de la base de données.");
        return -1;
    }
    /* The entries are read into memory first: undo_entry runs other
     * statements, some on the same tables. */
    {
        struct entry {
            int64_t person_id;
            char *action, *field, *old_value, *new_value;
        } *list = NULL;
        size_t count = 0, cap = 0;

        sqlite3_bind_int64(stmt, 1, run_id);
        while (sqlite3_step(stmt) == SQLITE_ROW) {
            if (count == cap) {
                cap = cap ? cap * 2 : 256;
                struct entry *grown = realloc(list, cap * sizeof(*list));
                if (!grown) {
                    rc = SQLITE_NOMEM;
                    break;
                }
                list = grown;
            }
            list[count].person_id = sqlite3_column_int64(stmt, 0);
#define DUP(i) (sqlite3_column_text(stmt, i) ? strdup((const char *)sqlite3_column_text(stmt, i)) : NULL)
            list[count].action = DUP(1);
            list[count].field = DUP(2);
            list[count].old_value = DUP(3);
            list[count].new_value = DUP(4);
#undef DUP
            count++;
        }
        sqlite3_reset(stmt);
        for (size_t i = 0; rc == SQLITE_OK && i < count; i++) {
            rc = undo_entry(db, list[i].person_id, list[i].action, list[i].field,
                            list[i].old_value, list[i].new_value);
            entries++;
        }
        for (size_t i = 0; i < count; i++) {
            free(list[i].action);
            free(list[i].field);
            free(list[i].old_value);
            free(list[i].new_value);
        }
        free(list);
    }

    db_now(now, sizeof(now));
    if (rc == SQLITE_OK) {
        stmt = db_stmt(db, "INSERT INTO audit_log (at, actor_id, action, import_run_id)"
                           " VALUES (?1, ?2, 'undo', ?3)");
        rc = stmt ? SQLITE_OK : SQLITE_ERROR;
        if (stmt) {
            sqlite3_bind_text(stmt, 1, now, -1, SQLITE_STATIC);
            if (actor_id)
                sqlite3_bind_int64(stmt, 2, actor_id);
            sqlite3_bind_int64(stmt, 3, run_id);
            rc = sqlite3_step(stmt) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
            sqlite3_reset(stmt);
        }
    }
    if (rc == SQLITE_OK) {
        stmt = db_stmt(db, "UPDATE import_run SET state = 'undone', undone_at = ?2,"
                           " undone_by = ?3 WHERE id = ?1");
        rc = stmt ? SQLITE_OK : SQLITE_ERROR;
        if (stmt) {
            sqlite3_bind_int64(stmt, 1, run_id);
            sqlite3_bind_text(stmt, 2, now, -1, SQLITE_STATIC);
            if (actor_id)
                sqlite3_bind_int64(stmt, 3, actor_id);
            rc = sqlite3_step(stmt) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
            sqlite3_reset(stmt);
        }
    }
    if (rc != SQLITE_OK || db_commit(db) != SQLITE_OK) {
        *err = str_printf("L'annulation a échoué : %s. Rien n'a été modifié.", db_error_fr(db));
        db_rollback(db);
        return -1;
    }
    log_info("import", "run %lld undone: %ld changes reverted", (long long)run_id, entries);
    return 0;
}

/* ---- rejected rows ---------------------------------------------------------- */

/* Appends one CSV cell: quoted when needed, and with a leading apostrophe
 * when a spreadsheet would read it as a formula. */
static void csv_cell(struct buf *out, const char *value)
{
    int formula = value[0] && strchr("=+-@\t\r", value[0]) != NULL;
    int quote = formula || strpbrk(value, ";\"\n\r") != NULL;

    if (quote)
        buf_append(out, "\"", 1);
    if (formula)
        buf_append(out, "'", 1);
    for (const char *p = value; *p; p++) {
        if (*p == '"')
            buf_append(out, "\"\"", 2);
        else
            buf_append(out, p, 1);
    }
    if (quote)
        buf_append(out, "\"", 1);
}

int import_rejected_csv(struct db *db, int64_t run_id, struct buf *out)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT header FROM import_run WHERE id = ?1");
    json_t *header = NULL;
    size_t columns;

    if (!stmt)
        return -1;
    sqlite3_bind_int64(stmt, 1, run_id);
    if (sqlite3_step(stmt) != SQLITE_ROW) {
        sqlite3_reset(stmt);
        return -1;
    }
    if (sqlite3_column_text(stmt, 0))
        header = json_loads((const char *)sqlite3_column_text(stmt, 0), 0, NULL);
    sqlite3_reset(stmt);
    if (!json_is_array(header))
        header = json_array();
    columns = json_array_size(header);

    buf_append(out, "\xEF\xBB\xBF", 3);
    for (size_t i = 0; i < columns; i++) {
        csv_cell(out, json_string_value(json_array_get(header, i)));
        buf_append(out, ";", 1);
    }
    buf_appendz(out, "Motif du rejet\r\n");

    stmt = db_stmt(db, "SELECT line_no, kind, message, raw FROM import_row_issue WHERE run_id = ?1"
                       " AND kind IN ('rejected', 'set_aside') ORDER BY record_no, id");
    if (!stmt) {
        json_decref(header);
        return -1;
    }
    sqlite3_bind_int64(stmt, 1, run_id);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        json_t *raw = json_loads((const char *)sqlite3_column_text(stmt, 3), 0, NULL);
        char reason[1200];
        for (size_t i = 0; i < columns; i++) {
            const char *v = json_string_value(json_array_get(raw, i));
            csv_cell(out, v ? v : "");
            buf_append(out, ";", 1);
        }
        snprintf(reason, sizeof(reason), "Ligne %lld : %s%s",
                 (long long)sqlite3_column_int64(stmt, 0),
                 strcmp((const char *)sqlite3_column_text(stmt, 1), "rejected") == 0 ? "rejetée, "
                                                                                      : "",
                 (const char *)sqlite3_column_text(stmt, 2));
        csv_cell(out, reason);
        buf_appendz(out, "\r\n");
        json_decref(raw);
    }
    sqlite3_reset(stmt);
    json_decref(header);
    return 0;
}
