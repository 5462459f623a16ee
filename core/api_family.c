/*
 * Family links of the JSON API: linking a rider to an existing person or
 * to a new one (a child added by a parent), and removing a link. A link is
 * directed as in the table family_link: related_id is the relationship of
 * person_id ("mère" of the child). Links are what lets a family's account
 * holder reach the children's records (is_family in roles.lua), so linking
 * an existing person needs family.update on both people.
 *
 * POST /api/v1/riders/:id/family takes "direction": "parent" (default: the
 * other person is a parent or guardian of :id, so :id is person_id) or
 * "child" (the other person is a child of :id, so :id is related_id).
 * relationship, is_legal_guardian and is_payer always describe the parent
 * side of the link.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "auth.h"
#include "log.h"
#include "util.h"

#define RELATIONSHIP_MAX 50 /* bytes */

json_t *api_family_links_json(struct app *app, int64_t person_id)
{
    json_t *out = json_array();
    sqlite3_stmt *stmt = db_stmt(
        app->db,
        "SELECT f.id, p.id, p.last_name, p.first_name, f.relationship, f.is_legal_guardian,"
        " f.is_payer, 'parent' FROM family_link f JOIN person p ON p.id = f.related_id"
        " WHERE f.person_id = ?1"
        " UNION ALL SELECT f.id, p.id, p.last_name, p.first_name, f.relationship,"
        " f.is_legal_guardian, f.is_payer, 'child' FROM family_link f"
        " JOIN person p ON p.id = f.person_id WHERE f.related_id = ?1 ORDER BY 1");

    if (stmt == NULL)
        return out;
    sqlite3_bind_int64(stmt, 1, person_id);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        json_array_append_new(
            out, json_pack("{s:I,s:{s:I,s:s,s:s},s:s,s:b,s:b,s:s}", "link_id",
                           (json_int_t)sqlite3_column_int64(stmt, 0), "person", "id",
                           (json_int_t)sqlite3_column_int64(stmt, 1), "last_name",
                           (const char *)sqlite3_column_text(stmt, 2), "first_name",
                           (const char *)sqlite3_column_text(stmt, 3), "relationship",
                           (const char *)sqlite3_column_text(stmt, 4), "is_legal_guardian",
                           sqlite3_column_int(stmt, 5), "is_payer", sqlite3_column_int(stmt, 6),
                           "direction", (const char *)sqlite3_column_text(stmt, 7)));
    }
    sqlite3_reset(stmt);
    return out;
}

struct link_request {
    struct app *app;
    struct http_request *req;
    const struct auth_user *user;
    int64_t rider_id;   /* the rider of the URL */
    int other_is_child; /* direction "child" */
    int64_t person_id;  /* the child side of the link */
    int64_t related_id; /* the parent side */
    const char *relationship;
    int is_legal_guardian;
    int is_payer;
    int64_t link_id;
};

static int link_exists(struct app *app, int64_t a, int64_t b)
{
    sqlite3_stmt *stmt = db_stmt(app->db, "SELECT 1 FROM family_link WHERE (person_id = ?1 AND"
                                          " related_id = ?2) OR (person_id = ?2 AND related_id = ?1)");
    int found = 0;

    if (stmt == NULL)
        return 0;
    sqlite3_bind_int64(stmt, 1, a);
    sqlite3_bind_int64(stmt, 2, b);
    found = sqlite3_step(stmt) == SQLITE_ROW;
    sqlite3_reset(stmt);
    return found;
}

/* Inserts the link and its audit rows inside the caller's transaction.
 * Responds and returns -1 on failure. */
static int insert_link(void *arg, int64_t other_id)
{
    struct link_request *lr = arg;
    struct app *app = lr->app;
    sqlite3_stmt *stmt;
    char now[32], *text;
    int rc = -1;

    lr->person_id = lr->other_is_child ? other_id : lr->rider_id;
    lr->related_id = lr->other_is_child ? lr->rider_id : other_id;
    db_now(now, sizeof(now));
    stmt = db_stmt(app->db, "INSERT INTO family_link (person_id, related_id, relationship,"
                            " is_legal_guardian, is_payer, created_at)"
                            " VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    if (stmt == NULL) {
        api_respond_db_error(lr->req, app, "family link");
        return -1;
    }
    sqlite3_bind_int64(stmt, 1, lr->person_id);
    sqlite3_bind_int64(stmt, 2, lr->related_id);
    sqlite3_bind_text(stmt, 3, lr->relationship, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 4, lr->is_legal_guardian);
    sqlite3_bind_int(stmt, 5, lr->is_payer);
    sqlite3_bind_text(stmt, 6, now, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE) {
        sqlite3_reset(stmt);
        api_respond_db_error(lr->req, app, "family link");
        return -1;
    }
    sqlite3_reset(stmt);
    lr->link_id = sqlite3_last_insert_rowid(db_handle(app->db));

    /* Audit value: "<parent id> <relationship> of <child id>", on both. */
    text = str_printf("%lld %s de %lld", (long long)lr->related_id, lr->relationship,
                      (long long)lr->person_id);
    if (text != NULL &&
        api_audit(app, lr->user, lr->person_id, "family.add", "family", NULL, text) == 0 &&
        api_audit(app, lr->user, lr->related_id, "family.add", "family", NULL, text) == 0)
        rc = 0;
    free(text);
    if (rc != 0)
        api_respond_db_error(lr->req, app, "family audit");
    return rc;
}

static void handle_link(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    int64_t id = api_param_id(req, "id");
    struct link_request lr = {0};
    json_t *body = NULL, *errors, *other, *new_person, *hooks = NULL, *answer;
    const struct auth_user *user;
    const char *direction;

    if (id == 0 || (user = auth_require(app, req, "family.update", id)) == NULL)
        return;
    if ((body = api_read_object(req)) == NULL)
        return;
    lr.app = app;
    lr.req = req;
    lr.user = user;
    lr.rider_id = id;
    direction = json_string_value(json_object_get(body, "direction"));
    lr.other_is_child = direction != NULL && strcmp(direction, "child") == 0;
    lr.relationship = json_string_value(json_object_get(body, "relationship"));
    lr.is_legal_guardian = json_is_true(json_object_get(body, "is_legal_guardian"));
    lr.is_payer = json_is_true(json_object_get(body, "is_payer"));
    other = json_object_get(body, "person_id");
    new_person = json_object_get(body, "new_person");

    errors = json_object();
    if (lr.relationship == NULL || lr.relationship[0] == '\0')
        json_object_set_new(errors, "relationship",
                            json_string("Précisez le lien de parenté (par exemple « mère »)."));
    else if (strlen(lr.relationship) > RELATIONSHIP_MAX)
        json_object_set_new(errors, "relationship",
                            json_string("Le lien de parenté ne doit pas dépasser 50 caractères."));
    if (direction != NULL && strcmp(direction, "child") != 0 && strcmp(direction, "parent") != 0)
        json_object_set_new(errors, "direction",
                            json_string("Le sens du lien doit être « parent » ou « child »."));
    if ((other == NULL) == (new_person == NULL))
        json_object_set_new(errors, "person_id",
                            json_string("Choisissez une personne existante ou décrivez-en une "
                                        "nouvelle, pas les deux."));
    else if (other != NULL && (!json_is_integer(other) || json_integer_value(other) <= 0))
        json_object_set_new(errors, "person_id", json_string("Personne inconnue."));
    else if (new_person != NULL && !json_is_object(new_person))
        json_object_set_new(errors, "new_person", json_string("Décrivez la nouvelle personne."));
    if (json_object_size(errors) > 0) {
        api_respond_validation(req, errors);
        goto done;
    }
    json_decref(errors);

    if (new_person != NULL) {
        /* A new family member is a rider of the club like one created by
         * POST /api/v1/riders, hence the role client. */
        int64_t created = api_rider_create(app, req, user, new_person, AUTH_ROLE_CLIENT,
                                           insert_link, &lr);

        if (created == 0)
            goto done;
        hooks = api_rider_created_hook(app, created);
    } else {
        int64_t related = json_integer_value(other);
        sqlite3_stmt *stmt = db_stmt(app->db, "SELECT 1 FROM person WHERE id = ?1");
        int exists = 0;

        if (stmt != NULL) {
            sqlite3_bind_int64(stmt, 1, related);
            exists = sqlite3_step(stmt) == SQLITE_ROW;
            sqlite3_reset(stmt);
        }
        if (!exists) {
            api_respond_validation(req, json_pack("{s:s}", "person_id", "Personne inconnue."));
            goto done;
        }
        if (related == id) {
            api_respond_validation(req, json_pack("{s:s}", "person_id",
                                                  "Une personne ne peut pas être liée à elle-même."));
            goto done;
        }
        if (!auth_allowed(app, user, "family.update", related)) {
            http_respond_error(req, 403, "forbidden",
                               "Vous n'avez pas le droit de lier cette personne à la famille.");
            goto done;
        }
        if (link_exists(app, id, related)) {
            http_respond_error(req, 409, "conflict", "Ces deux personnes sont déjà liées.");
            goto done;
        }
        if (db_begin(app->db) != SQLITE_OK) {
            api_respond_db_error(req, app, "begin");
            goto done;
        }
        if (insert_link(&lr, related) != 0) {
            db_rollback(app->db);
            goto done;
        }
        if (db_commit(app->db) != SQLITE_OK) {
            db_rollback(app->db);
            api_respond_db_error(req, app, "commit");
            goto done;
        }
        api_data_changed();
    }
    log_info("api", "%s: family link %lld: %lld -> %lld", req->id, (long long)lr.link_id,
             (long long)lr.person_id, (long long)lr.related_id);
    answer = json_pack("{s:I,s:I,s:I,s:s,s:b,s:b,s:o}", "link_id", (json_int_t)lr.link_id,
                       "person_id", (json_int_t)lr.person_id, "related_id",
                       (json_int_t)lr.related_id, "relationship", lr.relationship,
                       "is_legal_guardian", lr.is_legal_guardian, "is_payer", lr.is_payer,
                       "family", api_family_links_json(app, id));
    if (answer != NULL && hooks != NULL)
        json_object_set(answer, "hook_results", hooks);
    http_respond_json(req, 201, answer);

done:
    json_decref(hooks);
    json_decref(body);
}

static void handle_unlink(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    int64_t id = api_param_id(req, "id"), link_id;
    const struct auth_user *user;
    sqlite3_stmt *stmt;
    int64_t person_id = 0, related_id = 0;
    char *text = NULL, *relationship = NULL;

    if (id == 0 || (link_id = api_param_id(req, "link_id")) == 0)
        return;
    if ((user = auth_require(app, req, "family.update", id)) == NULL)
        return;
    stmt = db_stmt(app->db, "SELECT person_id, related_id, relationship FROM family_link"
                            " WHERE id = ?1 AND (person_id = ?2 OR related_id = ?2)");
    if (stmt == NULL) {
        api_respond_db_error(req, app, "family unlink");
        return;
    }
    sqlite3_bind_int64(stmt, 1, link_id);
    sqlite3_bind_int64(stmt, 2, id);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        person_id = sqlite3_column_int64(stmt, 0);
        related_id = sqlite3_column_int64(stmt, 1);
        relationship = strdup((const char *)sqlite3_column_text(stmt, 2));
    }
    sqlite3_reset(stmt);
    if (person_id == 0) {
        http_respond_error(req, 404, "not_found", "Lien familial introuvable.");
        goto done;
    }
    if (db_begin(app->db) != SQLITE_OK) {
        api_respond_db_error(req, app, "begin");
        goto done;
    }
    stmt = db_stmt(app->db, "DELETE FROM family_link WHERE id = ?1");
    text = str_printf("%lld %s de %lld", (long long)related_id, relationship ? relationship : "",
                      (long long)person_id);
    if (stmt == NULL || text == NULL) {
        db_rollback(app->db);
        api_respond_db_error(req, app, "family unlink");
        goto done;
    }
    sqlite3_bind_int64(stmt, 1, link_id);
    if (sqlite3_step(stmt) != SQLITE_DONE ||
        api_audit(app, user, person_id, "family.remove", "family", text, NULL) != 0 ||
        api_audit(app, user, related_id, "family.remove", "family", text, NULL) != 0 ||
        db_commit(app->db) != SQLITE_OK) {
        sqlite3_reset(stmt);
        db_rollback(app->db);
        api_respond_db_error(req, app, "family unlink");
        goto done;
    }
    sqlite3_reset(stmt);
    api_data_changed();
    log_info("api", "%s: family link %lld removed", req->id, (long long)link_id);
    http_respond(req, 204, NULL, NULL, 0);

done:
    free(text);
    free(relationship);
}

void api_family_register_routes(struct app *app)
{
    router_add(app->router, "POST", "/api/v1/riders/:id/family", handle_link, app, 0);
    router_add(app->router, "DELETE", "/api/v1/riders/:id/family/:link_id", handle_unlink, app, 0);
}
