/*
 * Consent storage: documents, versions with their SHA-256, the proof rows
 * and the export. The latest decision per person and document is kept by
 * a trigger (consent_last) and the status by a view (consent_person_status),
 * both in migrations/0005_consent.sql.
 */
#include <csv.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consent.h"
#include "log.h"
#include "util.h"

#define EXPORT_MAX (256 * 1024 * 1024) /* bytes of one CSV export */
#define PROOFS_SHOWN 200

static const char *const decision_names[] = {"accepted", "refused", "withdrawn"};
static const char *const channel_names[] = {"mail_link", "login", "registration", "paper"};

const char *consent_decision_name(enum consent_decision decision)
{
    return (unsigned)decision < 3 ? decision_names[decision] : NULL;
}

const char *consent_channel_name(enum consent_channel channel)
{
    return (unsigned)channel < 4 ? channel_names[channel] : NULL;
}

int consent_decision_parse(const char *name)
{
    for (int i = 0; name != NULL && i < 3; i++) {
        if (strcmp(name, decision_names[i]) == 0)
            return i;
    }
    return -1;
}

static void sha256_hex(const char *text, char out[65])
{
    unsigned char digest[crypto_hash_sha256_BYTES];

    crypto_hash_sha256(digest, (const unsigned char *)text, strlen(text));
    sodium_bin2hex(out, 65, digest, sizeof(digest));
}

int64_t consent_record_as(struct db *db, const struct consent_proof *proof, int64_t acted_by,
                          char **err)
{
    sqlite3_stmt *stmt;
    int64_t document_id = 0, version_id = 0, id = -1;
    char hash[65] = "", now[32], agent[CONSENT_AGENT_MAX + 1] = "";
    const char *decision = consent_decision_name(proof->decision);
    const char *channel = consent_channel_name(proof->channel);

    *err = NULL;
    if (decision == NULL || channel == NULL || proof->document == NULL) {
        *err = strdup("Décision ou canal inconnu.");
        return -1;
    }
    if (proof->version_id == 0)
        stmt = db_stmt(db, "SELECT d.id, v.id, v.hash FROM consent_document d"
                           " JOIN consent_version v ON v.id = d.current_version_id"
                           " WHERE d.key = ?1");
    else
        stmt = db_stmt(db, "SELECT d.id, v.id, v.hash FROM consent_document d"
                           " JOIN consent_version v ON v.document_id = d.id"
                           " WHERE d.key = ?1 AND v.id = ?2");
    if (stmt == NULL)
        goto db_error;
    sqlite3_bind_text(stmt, 1, proof->document, -1, SQLITE_TRANSIENT);
    if (proof->version_id != 0)
        sqlite3_bind_int64(stmt, 2, proof->version_id);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        document_id = sqlite3_column_int64(stmt, 0);
        version_id = sqlite3_column_int64(stmt, 1);
        snprintf(hash, sizeof(hash), "%s", (const char *)sqlite3_column_text(stmt, 2));
    }
    sqlite3_reset(stmt);
    if (document_id == 0) {
        *err = str_printf("Document inconnu ou sans version publiée : %s", proof->document);
        return -1;
    }

    if (proof->user_agent != NULL)
        snprintf(agent, sizeof(agent), "%s", proof->user_agent);
    db_now(now, sizeof(now));
    stmt = db_stmt(db, "INSERT INTO consent_proof (person_id, document_id, version_id,"
                       " version_hash, decision, channel, at, ip, user_agent, recorded_by, acted_by)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
    if (stmt == NULL)
        goto db_error;
    sqlite3_bind_int64(stmt, 1, proof->person_id);
    sqlite3_bind_int64(stmt, 2, document_id);
    sqlite3_bind_int64(stmt, 3, version_id);
    sqlite3_bind_text(stmt, 4, hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 5, decision, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 6, channel, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 7, now, -1, SQLITE_TRANSIENT);
    db_bind_text_or_null(stmt, 8, proof->ip);
    db_bind_text_or_null(stmt, 9, agent);
    if (proof->recorded_by > 0)
        sqlite3_bind_int64(stmt, 10, proof->recorded_by);
    if (acted_by > 0 && acted_by != proof->person_id)
        sqlite3_bind_int64(stmt, 11, acted_by);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        sqlite3_reset(stmt);
        goto db_error;
    }
    sqlite3_reset(stmt);
    id = sqlite3_last_insert_rowid(db_handle(db));
    log_info("consent", "person %lld %s %s version %lld (%s), proof %lld",
             (long long)proof->person_id, decision, proof->document, (long long)version_id,
             channel, (long long)id);
    return id;

db_error:
    *err = str_printf("Erreur de la base de données : %s", sqlite3_errmsg(db_handle(db)));
    return -1;
}

int64_t consent_record(struct db *db, const struct consent_proof *proof, char **err)
{
    return consent_record_as(db, proof, 0, err);
}

static json_t *version_json(sqlite3_stmt *stmt, int first, int with_text)
{
    json_t *out = json_pack("{s:I,s:I,s:s,s:s,s:s}", "version_id",
                            (json_int_t)sqlite3_column_int64(stmt, first), "version",
                            (json_int_t)sqlite3_column_int64(stmt, first + 1), "hash",
                            (const char *)sqlite3_column_text(stmt, first + 2), "title",
                            (const char *)sqlite3_column_text(stmt, first + 3), "published_at",
                            (const char *)sqlite3_column_text(stmt, first + 4));

    if (out != NULL && with_text)
        json_object_set_new(out, "text",
                            json_string((const char *)sqlite3_column_text(stmt, first + 5)));
    return out;
}

json_t *consent_current_documents(struct db *db)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT d.key, v.title, v.id, v.version, v.hash,"
                                     " d.required, v.text FROM consent_document d"
                                     " JOIN consent_version v ON v.id = d.current_version_id"
                                     " ORDER BY d.position, d.id");
    json_t *out = json_array();

    if (stmt == NULL)
        return out;
    while (sqlite3_step(stmt) == SQLITE_ROW)
        json_array_append_new(
            out, json_pack("{s:s,s:s,s:I,s:I,s:s,s:i,s:s}", "key",
                           (const char *)sqlite3_column_text(stmt, 0), "title",
                           (const char *)sqlite3_column_text(stmt, 1), "version_id",
                           (json_int_t)sqlite3_column_int64(stmt, 2), "version",
                           (json_int_t)sqlite3_column_int64(stmt, 3), "hash",
                           (const char *)sqlite3_column_text(stmt, 4), "required",
                           sqlite3_column_int(stmt, 5), "text",
                           (const char *)sqlite3_column_text(stmt, 6)));
    sqlite3_reset(stmt);
    return out;
}

const char *consent_status(struct db *db, int64_t person_id)
{
    static const char *const known[] = {"accepte", "en_attente", "refuse", "a_renouveler"};
    sqlite3_stmt *stmt =
        db_stmt(db, "SELECT status FROM consent_person_status WHERE person_id = ?1");
    const char *status = NULL;

    if (stmt == NULL)
        return NULL;
    sqlite3_bind_int64(stmt, 1, person_id);
    if (sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_type(stmt, 0) != SQLITE_NULL) {
        const char *value = (const char *)sqlite3_column_text(stmt, 0);

        for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
            if (strcmp(value, known[i]) == 0)
                status = known[i];
        }
    }
    sqlite3_reset(stmt);
    return status;
}

int64_t consent_publish(struct db *db, const char *key, const char *title, const char *text,
                        int64_t published_by, char **err)
{
    sqlite3_stmt *stmt;
    int64_t document_id = 0, version_id = -1;
    int version = 1;
    char hash[65], now[32];

    *err = NULL;
    if (title == NULL || title[0] == '\0' || strlen(title) > CONSENT_TITLE_MAX) {
        *err = str_printf("Le titre est obligatoire (%d caractères au plus).", CONSENT_TITLE_MAX);
        return -1;
    }
    if (text == NULL || text[0] == '\0' || strlen(text) > CONSENT_TEXT_MAX) {
        *err = strdup("Le texte est obligatoire (512 Kio au plus).");
        return -1;
    }
    stmt = db_stmt(db, "SELECT d.id, coalesce((SELECT max(version) FROM consent_version v"
                       " WHERE v.document_id = d.id), 0) + 1 FROM consent_document d"
                       " WHERE d.key = ?1");
    if (stmt == NULL)
        goto db_error;
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        document_id = sqlite3_column_int64(stmt, 0);
        version = sqlite3_column_int(stmt, 1);
    }
    sqlite3_reset(stmt);
    if (document_id == 0) {
        *err = str_printf("Document inconnu : %s", key);
        return -1;
    }
    sha256_hex(text, hash);
    db_now(now, sizeof(now));
    if (db_begin(db) != SQLITE_OK)
        goto db_error;
    stmt = db_stmt(db, "INSERT INTO consent_version (document_id, version, title, text, hash,"
                       " published_at, published_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
    if (stmt == NULL)
        goto rollback;
    sqlite3_bind_int64(stmt, 1, document_id);
    sqlite3_bind_int(stmt, 2, version);
    sqlite3_bind_text(stmt, 3, title, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 4, text, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 5, hash, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(stmt, 6, now, -1, SQLITE_TRANSIENT);
    if (published_by > 0)
        sqlite3_bind_int64(stmt, 7, published_by);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        sqlite3_reset(stmt);
        goto rollback;
    }
    sqlite3_reset(stmt);
    version_id = sqlite3_last_insert_rowid(db_handle(db));
    stmt = db_stmt(db, "UPDATE consent_document SET current_version_id = ?2, title = ?3"
                       " WHERE id = ?1");
    if (stmt == NULL)
        goto rollback;
    sqlite3_bind_int64(stmt, 1, document_id);
    sqlite3_bind_int64(stmt, 2, version_id);
    sqlite3_bind_text(stmt, 3, title, -1, SQLITE_TRANSIENT);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        sqlite3_reset(stmt);
        goto rollback;
    }
    sqlite3_reset(stmt);
    if (db_commit(db) != SQLITE_OK)
        goto rollback;
    log_info("consent", "published %s version %d (id %lld)", key, version, (long long)version_id);
    return version_id;

rollback:
    *err = str_printf("Erreur de la base de données : %s", sqlite3_errmsg(db_handle(db)));
    db_rollback(db);
    return -1;
db_error:
    *err = str_printf("Erreur de la base de données : %s", sqlite3_errmsg(db_handle(db)));
    return -1;
}

json_t *consent_documents_json(struct db *db)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT d.id, d.key, d.title, d.required,"
                                     " v.id, v.version, v.hash, v.title, v.published_at, v.text"
                                     " FROM consent_document d LEFT JOIN consent_version v"
                                     " ON v.id = d.current_version_id ORDER BY d.position, d.id");
    sqlite3_stmt *versions;
    json_t *out = json_array();

    if (stmt == NULL)
        return out;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        json_t *doc = json_pack("{s:s,s:s,s:b}", "key", (const char *)sqlite3_column_text(stmt, 1),
                                "title", (const char *)sqlite3_column_text(stmt, 2), "required",
                                sqlite3_column_int(stmt, 3));
        json_t *list = json_array();

        json_object_set_new(doc, "current", sqlite3_column_type(stmt, 4) == SQLITE_NULL
                                                ? json_null()
                                                : version_json(stmt, 4, 1));
        versions = db_stmt(db, "SELECT id, version, hash, title, published_at FROM"
                               " consent_version WHERE document_id = ?1 ORDER BY version DESC");
        if (versions != NULL) {
            sqlite3_bind_int64(versions, 1, sqlite3_column_int64(stmt, 0));
            while (sqlite3_step(versions) == SQLITE_ROW)
                json_array_append_new(list, version_json(versions, 0, 0));
            sqlite3_reset(versions);
        }
        json_object_set_new(doc, "versions", list);
        json_array_append_new(out, doc);
    }
    sqlite3_reset(stmt);
    return out;
}

static json_t *proof_json(sqlite3_stmt *stmt)
{
    return json_pack("{s:I,s:s,s:I,s:s,s:s,s:s,s:s,s:o,s:o,s:o,s:o}", "id",
                     (json_int_t)sqlite3_column_int64(stmt, 0), "document",
                     (const char *)sqlite3_column_text(stmt, 1), "version",
                     (json_int_t)sqlite3_column_int64(stmt, 2), "version_hash",
                     (const char *)sqlite3_column_text(stmt, 3), "decision",
                     (const char *)sqlite3_column_text(stmt, 4), "channel",
                     (const char *)sqlite3_column_text(stmt, 5), "at",
                     (const char *)sqlite3_column_text(stmt, 6), "ip",
                     sqlite3_column_type(stmt, 7) == SQLITE_NULL
                         ? json_null()
                         : json_string((const char *)sqlite3_column_text(stmt, 7)),
                     "user_agent",
                     sqlite3_column_type(stmt, 8) == SQLITE_NULL
                         ? json_null()
                         : json_string((const char *)sqlite3_column_text(stmt, 8)),
                     "recorded_by",
                     sqlite3_column_type(stmt, 9) == SQLITE_NULL
                         ? json_null()
                         : json_string((const char *)sqlite3_column_text(stmt, 9)),
                     "acted_by",
                     sqlite3_column_type(stmt, 10) == SQLITE_NULL
                         ? json_null()
                         : json_string((const char *)sqlite3_column_text(stmt, 10)));
}

json_t *consent_person_json(struct db *db, int64_t person_id)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT status FROM consent_person_status WHERE person_id = ?1");
    json_t *out, *docs = json_array(), *proofs = json_array();

    if (stmt == NULL)
        goto fail;
    sqlite3_bind_int64(stmt, 1, person_id);
    if (sqlite3_step(stmt) != SQLITE_ROW) {
        sqlite3_reset(stmt);
        goto fail;
    }
    out = json_pack("{s:I,s:o}", "person_id", (json_int_t)person_id, "status",
                    sqlite3_column_type(stmt, 0) == SQLITE_NULL
                        ? json_null()
                        : json_string((const char *)sqlite3_column_text(stmt, 0)));
    sqlite3_reset(stmt);

    stmt = db_stmt(db, "SELECT d.key, d.title, d.required, d.current_version_id, l.decision,"
                       " l.version_id, v.version, l.at, p.channel"
                       " FROM consent_document d"
                       " LEFT JOIN consent_last l ON l.document_id = d.id AND l.person_id = ?1"
                       " LEFT JOIN consent_version v ON v.id = l.version_id"
                       " LEFT JOIN consent_proof p ON p.id = l.proof_id"
                       " WHERE d.current_version_id IS NOT NULL ORDER BY d.position, d.id");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, person_id);
        while (sqlite3_step(stmt) == SQLITE_ROW) {
            json_t *doc = json_pack("{s:s,s:s,s:b,s:I}", "key",
                                    (const char *)sqlite3_column_text(stmt, 0), "title",
                                    (const char *)sqlite3_column_text(stmt, 1), "required",
                                    sqlite3_column_int(stmt, 2), "version_id",
                                    (json_int_t)sqlite3_column_int64(stmt, 3));

            if (sqlite3_column_type(stmt, 4) == SQLITE_NULL)
                json_object_set_new(doc, "last", json_null());
            else
                json_object_set_new(
                    doc, "last",
                    json_pack("{s:s,s:I,s:I,s:b,s:s,s:s}", "decision",
                              (const char *)sqlite3_column_text(stmt, 4), "version_id",
                              (json_int_t)sqlite3_column_int64(stmt, 5), "version",
                              (json_int_t)sqlite3_column_int64(stmt, 6), "current",
                              sqlite3_column_int64(stmt, 5) == sqlite3_column_int64(stmt, 3),
                              "at", (const char *)sqlite3_column_text(stmt, 7), "channel",
                              (const char *)sqlite3_column_text(stmt, 8)));
            json_array_append_new(docs, doc);
        }
        sqlite3_reset(stmt);
    }
    stmt = db_stmt(db, "SELECT p.id, d.key, v.version, p.version_hash, p.decision, p.channel,"
                       " p.at, p.ip, p.user_agent,"
                       " (SELECT trim(first_name || ' ' || last_name) FROM person s"
                       "  WHERE s.id = p.recorded_by),"
                       " (SELECT trim(first_name || ' ' || last_name) FROM person s"
                       "  WHERE s.id = p.acted_by)"
                       " FROM consent_proof p JOIN consent_document d ON d.id = p.document_id"
                       " JOIN consent_version v ON v.id = p.version_id"
                       " WHERE p.person_id = ?1 ORDER BY p.id DESC LIMIT ?2");
    if (stmt != NULL) {
        sqlite3_bind_int64(stmt, 1, person_id);
        sqlite3_bind_int(stmt, 2, PROOFS_SHOWN);
        while (sqlite3_step(stmt) == SQLITE_ROW)
            json_array_append_new(proofs, proof_json(stmt));
        sqlite3_reset(stmt);
    }
    json_object_set_new(out, "documents", docs);
    json_object_set_new(out, "proofs", proofs);
    return out;

fail:
    json_decref(docs);
    json_decref(proofs);
    return NULL;
}

/* ---- CSV export ------------------------------------------------------------- */

static const char *decision_label(const char *name)
{
    if (strcmp(name, "accepted") == 0)
        return "accepté";
    if (strcmp(name, "refused") == 0)
        return "refusé";
    if (strcmp(name, "withdrawn") == 0)
        return "retiré";
    return name;
}

static const char *channel_label(const char *name)
{
    if (strcmp(name, "mail_link") == 0)
        return "lien reçu par mail";
    if (strcmp(name, "login") == 0)
        return "espace cavalier";
    if (strcmp(name, "registration") == 0)
        return "inscription en ligne";
    if (strcmp(name, "paper") == 0)
        return "papier (saisi par l'équipe)";
    return name;
}

/* Appends one quoted cell, defused against spreadsheet formulas. */
static int csv_cell(struct buf *out, const char *value, int last)
{
    char *quoted;
    size_t len, size, written;
    int rc;

    if (value == NULL)
        value = "";
    len = strlen(value);
    size = 2 * len + 4;
    quoted = malloc(size);
    if (quoted == NULL)
        return -1;
    if (value[0] == '=' || value[0] == '+' || value[0] == '-' || value[0] == '@' ||
        value[0] == '\t' || value[0] == '\r') {
        char *prefixed = str_printf("'%s", value);

        if (prefixed == NULL) {
            free(quoted);
            return -1;
        }
        written = csv_write(quoted, size, prefixed, strlen(prefixed));
        free(prefixed);
    } else {
        written = csv_write(quoted, size, value, len);
    }
    rc = buf_append(out, quoted, written);
    if (rc == 0)
        rc = buf_appendz(out, last ? "\r\n" : ";");
    free(quoted);
    return rc;
}

char *consent_export_csv(struct db *db, const char *key, size_t *len, char **err)
{
    static const char *const header[] = {
        "preuve",   "date (UTC)", "personne", "nom",        "prénom",       "document",
        "titre",    "version",    "empreinte SHA-256",     "décision",     "canal",
        "adresse IP", "navigateur", "saisi par",          "répondu par",
    };
    const size_t columns = sizeof(header) / sizeof(header[0]);
    sqlite3_stmt *stmt;
    struct buf out;
    int rc = 0;

    *err = NULL;
    buf_init(&out, EXPORT_MAX);
    buf_appendz(&out, "\xEF\xBB\xBF");
    for (size_t i = 0; i < columns && rc == 0; i++)
        rc = csv_cell(&out, header[i], i + 1 == columns);
    stmt = db_stmt(db, "SELECT p.id, p.at, p.person_id, s.last_name, s.first_name, d.key,"
                       " v.title, v.version, p.version_hash, p.decision, p.channel, p.ip,"
                       " p.user_agent,"
                       " (SELECT trim(first_name || ' ' || last_name) FROM person r"
                       "  WHERE r.id = p.recorded_by),"
                       " (SELECT trim(first_name || ' ' || last_name) FROM person r"
                       "  WHERE r.id = p.acted_by)"
                       " FROM consent_proof p JOIN person s ON s.id = p.person_id"
                       " JOIN consent_document d ON d.id = p.document_id"
                       " JOIN consent_version v ON v.id = p.version_id"
                       " WHERE ?1 IS NULL OR d.key = ?1 ORDER BY p.id");
    if (stmt == NULL) {
        *err = strdup("Erreur de la base de données.");
        buf_free(&out);
        return NULL;
    }
    db_bind_text_or_null(stmt, 1, key);
    while (rc == 0 && sqlite3_step(stmt) == SQLITE_ROW) {
        for (size_t i = 0; i < columns && rc == 0; i++) {
            const char *value = (const char *)sqlite3_column_text(stmt, (int)i);

            if (i == 9 && value != NULL)
                value = decision_label(value);
            else if (i == 10 && value != NULL)
                value = channel_label(value);
            rc = csv_cell(&out, value, i + 1 == columns);
        }
    }
    sqlite3_reset(stmt);
    if (rc != 0 || buf_terminate(&out) != 0) {
        *err = strdup("L'export est trop volumineux.");
        buf_free(&out);
        return NULL;
    }
    *len = out.len;
    return out.data;
}
