/*
 * Applies embedded and plugin migrations. The bookkeeping table is created
 * here rather than by a migration so that version 0 is well defined.
 */
#include "migrate.h"
#include "log.h"
#include "person.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const SQL_CREATE_BOOKKEEPING =
    "CREATE TABLE IF NOT EXISTS schema_migration ("
    " scope TEXT NOT NULL, number INTEGER NOT NULL, name TEXT NOT NULL,"
    " applied_at TEXT NOT NULL, PRIMARY KEY (scope, number))";

int migrate_latest_version(void)
{
    int latest = 0;

    for (int i = 0; i < migrate_embedded_count; i++) {
        if (migrate_embedded[i].number > latest)
            latest = migrate_embedded[i].number;
    }
    return latest;
}

static int ensure_bookkeeping(struct db *db)
{
    return db_exec(db, SQL_CREATE_BOOKKEEPING);
}

int migrate_current_version(struct db *db)
{
    sqlite3_stmt *stmt;
    int version = 0;

    if (ensure_bookkeeping(db) != SQLITE_OK)
        return -1;
    stmt = db_stmt(db, "SELECT COALESCE(MAX(number), 0) FROM schema_migration WHERE scope = 'core'");
    if (!stmt)
        return -1;
    if (sqlite3_step(stmt) == SQLITE_ROW)
        version = sqlite3_column_int(stmt, 0);
    sqlite3_reset(stmt);
    return version;
}

static int record_and_run(struct db *db, const char *scope, int number, const char *name,
                          const char *sql, char **err)
{
    char now[32];
    char *msg = NULL;
    sqlite3_stmt *stmt;

    if (db_begin(db) != SQLITE_OK) {
        *err = str_printf("Impossible de démarrer la migration %04d_%s : %s", number, name,
                            sqlite3_errmsg(db_handle(db)));
        return -1;
    }
    if (sqlite3_exec(db_handle(db), sql, NULL, NULL, &msg) != SQLITE_OK) {
        *err = str_printf("La migration %s/%04d_%s a échoué : %s. La base de données n'a pas "
                            "été modifiée.",
                            scope, number, name, msg ? msg : "erreur inconnue");
        sqlite3_free(msg);
        db_rollback(db);
        return -1;
    }
    db_now(now, sizeof(now));
    stmt = db_stmt(db, "INSERT INTO schema_migration (scope, number, name, applied_at)"
                       " VALUES (?1, ?2, ?3, ?4)");
    if (!stmt) {
        db_rollback(db);
        *err = str_printf("Impossible d'enregistrer la migration %04d_%s", number, name);
        return -1;
    }
    sqlite3_bind_text(stmt, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 2, number);
    sqlite3_bind_text(stmt, 3, name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, now, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE || db_commit(db) != SQLITE_OK) {
        *err = str_printf("Impossible d'enregistrer la migration %04d_%s : %s", number, name,
                            sqlite3_errmsg(db_handle(db)));
        db_rollback(db);
        return -1;
    }
    log_info("migrate", "applied %s/%04d_%s", scope, number, name);
    return 0;
}

/* Recomputes the people's derived keys once per PERSON_KEYS_VERSION, in
 * one transaction recorded as the migration person_keys/<version>. A
 * database whose keys a newer program computed is refused, as a newer
 * schema is: recomputing them with older rules would make that program
 * miss people later. */
static int refresh_person_keys(struct db *db, char **err)
{
    sqlite3_stmt *stmt = db_stmt(db, "SELECT COALESCE(MAX(number), 0) FROM schema_migration"
                                     " WHERE scope = 'person_keys'");
    char now[32];
    long updated = 0;
    sqlite3_int64 recorded = -1;
    int rc;

    if (!stmt)
        goto fail;
    if (sqlite3_step(stmt) == SQLITE_ROW)
        recorded = sqlite3_column_int64(stmt, 0);
    sqlite3_reset(stmt);
    if (recorded < 0)
        goto fail;
    if (recorded > PERSON_KEYS_VERSION) {
        *err = str_printf("Les clés de rapprochement des fiches de cette base ont été calculées "
                          "par une version plus récente de Licol (version %lld des clés, %d pour "
                          "ce programme). Installez une version plus récente de Licol ; la base "
                          "n'a pas été modifiée.",
                          (long long)recorded, PERSON_KEYS_VERSION);
        return -1;
    }
    if (recorded == PERSON_KEYS_VERSION)
        return 0;

    if (db_begin(db) != SQLITE_OK)
        goto rollback;
    rc = person_refresh_all_keys(db, &updated);
    db_now(now, sizeof(now));
    stmt = rc == SQLITE_OK ? db_stmt(db, "INSERT INTO schema_migration (scope, number, name,"
                                         " applied_at) VALUES ('person_keys', ?1, 'refresh', ?2)")
                           : NULL;
    if (!stmt)
        goto rollback;
    sqlite3_bind_int(stmt, 1, PERSON_KEYS_VERSION);
    sqlite3_bind_text(stmt, 2, now, -1, SQLITE_STATIC);
    rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    if (rc != SQLITE_DONE || db_commit(db) != SQLITE_OK)
        goto rollback;
    log_info("migrate", "person keys at version %d: %ld people updated", PERSON_KEYS_VERSION,
             updated);
    return 0;

rollback:
    *err = str_printf("Impossible de recalculer les clés de rapprochement des fiches : %s. La "
                      "base n'a pas été modifiée.",
                      db_error_fr(db));
    db_rollback(db);
    return -1;
fail:
    *err = str_printf("Impossible de lire l'état des clés de rapprochement des fiches : %s.",
                      db_error_fr(db));
    return -1;
}

int migrate_apply(struct db *db, char **err)
{
    int current, latest, applied = 0;

    *err = NULL;
    current = migrate_current_version(db);
    if (current < 0) {
        *err = str_printf("Impossible de lire la version du schéma : %s",
                            sqlite3_errmsg(db_handle(db)));
        return -1;
    }
    latest = migrate_latest_version();
    if (current > latest) {
        *err = str_printf("Cette base de données est au schéma %d, plus récent que celui de ce "
                            "programme (%d). Installez une version plus récente de Licol ; la "
                            "base n'a pas été modifiée.",
                            current, latest);
        return -1;
    }
    /* Every embedded migration not recorded yet is applied, in number
     * order, so that one merged late with a lower number still runs. */
    for (int i = 0; i < migrate_embedded_count; i++) {
        const struct migration *m = &migrate_embedded[i];
        sqlite3_stmt *stmt = db_stmt(db, "SELECT 1 FROM schema_migration"
                                         " WHERE scope = 'core' AND number = ?1");
        int recorded;

        if (!stmt) {
            *err = str_printf("Impossible de lire les migrations : %s",
                              sqlite3_errmsg(db_handle(db)));
            return -1;
        }
        sqlite3_bind_int(stmt, 1, m->number);
        recorded = sqlite3_step(stmt) == SQLITE_ROW;
        sqlite3_reset(stmt);
        if (recorded)
            continue;
        if (record_and_run(db, "core", m->number, m->name, m->sql, err) < 0)
            return -1;
        applied++;
    }
    if (db_link_sessions(db) != SQLITE_OK) {
        *err = str_printf("Impossible de relier les sessions aux fiches : %s",
                          sqlite3_errmsg(db_handle(db)));
        return -1;
    }
    if (refresh_person_keys(db, err) < 0)
        return -1;
    return applied;
}

int migrate_apply_scoped(struct db *db, const char *scope, int number, const char *name,
                         const char *sql, char **err)
{
    sqlite3_stmt *stmt;
    int exists;

    *err = NULL;
    if (ensure_bookkeeping(db) != SQLITE_OK) {
        *err = str_printf("Impossible de préparer les migrations : %s",
                            sqlite3_errmsg(db_handle(db)));
        return -1;
    }
    stmt = db_stmt(db, "SELECT 1 FROM schema_migration WHERE scope = ?1 AND number = ?2");
    if (!stmt) {
        *err = str_printf("Impossible de lire les migrations de %s", scope);
        return -1;
    }
    sqlite3_bind_text(stmt, 1, scope, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 2, number);
    exists = sqlite3_step(stmt) == SQLITE_ROW;
    sqlite3_reset(stmt);
    if (exists)
        return 0;
    return record_and_run(db, scope, number, name, sql, err) < 0 ? -1 : 1;
}
