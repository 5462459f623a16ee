/*
 * The rider list of the JSON API (GET /api/v1/riders): paging, sorting,
 * search through person.search_text, and counts per status. It is the hot
 * path of the staff interface, so its responses are cached per query, role
 * set, year and script version, and dropped as soon as the database
 * changes (see api_data_generation). The other rider routes are in
 * core/api_riders.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.h"
#include "auth.h"
#include "normalize.h"
#include "script.h"
#include "util.h"

#define LIST_MAX_PER_PAGE 200
#define LIST_DEFAULT_PER_PAGE 50
#define LIST_MAX_QUERY 200      /* bytes of the search text */
#define LIST_CACHE_SLOTS 64

static const char *const statuses[] = {"gerant",    "employe",   "client", "visiteur",
                                       "comptable", "proprietaire"};
#define STATUS_COUNT (sizeof(statuses) / sizeof(statuses[0]))

/* ---- list ------------------------------------------------------------------ */

/* The page is chosen first, from person ids alone, so that rows skipped by
 * OFFSET cost one index entry each (the name indexes cover the ids), and
 * the columns below are computed for the 50 rows shown only.
 *
 * Columns: 0 id, 1 last_name, 2 first_name, 3 birth_date, 4 email, 5 phone,
 * 6 mobile, 7 licence_number, 8 latest licence season, 9 licence valid this
 * year, 10 galop, 11 galop label, 12 roles (comma-separated), 13 consent
 * status (the consent_person_status view of migrations/0005_consent.sql).
 * Parameters: ?1 role or NULL, ?3 limit, ?4 offset, ?5 current year, and
 * in the search variant ?2, ?6, ?7, ?8 the LIKE patterns (NULL when
 * unused). The roles of the page come from the same query (an indexed
 * lookup per row), not from one query per rider. */
#define LIST_SEARCH                                                                                \
    " AND p.search_text LIKE ?2 ESCAPE '\\'"                                                      \
    " AND (?6 IS NULL OR p.search_text LIKE ?6 ESCAPE '\\')"                                       \
    " AND (?7 IS NULL OR p.search_text LIKE ?7 ESCAPE '\\')"                                       \
    " AND (?8 IS NULL OR p.search_text LIKE ?8 ESCAPE '\\')"
#define LIST_SQL(filter, order)                                                                    \
    "SELECT p.id, p.last_name, p.first_name, p.birth_date, p.email, p.phone, p.mobile,"            \
    " p.licence_number, (SELECT max(season) FROM licence l WHERE l.person_id = p.id),"            \
    " EXISTS (SELECT 1 FROM licence l WHERE l.person_id = p.id AND l.season = ?5),"               \
    " p.galop, g.label,"                                                                           \
    " (SELECT group_concat(role) FROM person_role r WHERE r.person_id = p.id),"                    \
    " (SELECT cs.status FROM consent_person_status cs WHERE cs.person_id = p.id)"                 \
    " FROM (SELECT p.id AS page_id FROM person p"                                                  \
    "       WHERE (?1 IS NULL OR EXISTS (SELECT 1 FROM person_role r"                              \
    "                                    WHERE r.person_id = p.id AND r.role = ?1))" filter       \
    "       ORDER BY " order " LIMIT ?3 OFFSET ?4) page"                                           \
    " JOIN person p ON p.id = page.page_id LEFT JOIN galop_level g ON g.code = p.galop"            \
    " ORDER BY " order
#define LIST_SORT(key, order) {key, LIST_SQL("", order), LIST_SQL(LIST_SEARCH, order)}

/* Galop sorts use the rank through a subquery so that the ORDER BY reads
 * columns of person only, in the inner and the outer query alike. */
#define GALOP_RANK "(SELECT rank FROM galop_level r WHERE r.code = p.galop)"

static const struct {
    const char *key;
    const char *sql;        /* without search */
    const char *sql_search; /* with search terms */
} list_sorts[] = {
    LIST_SORT("nom", "p.last_name COLLATE NOCASE, p.first_name COLLATE NOCASE, p.id"),
    LIST_SORT("-nom", "p.last_name COLLATE NOCASE DESC, p.first_name COLLATE NOCASE DESC, p.id DESC"),
    LIST_SORT("prenom", "p.first_name COLLATE NOCASE, p.last_name COLLATE NOCASE, p.id"),
    LIST_SORT("-prenom",
              "p.first_name COLLATE NOCASE DESC, p.last_name COLLATE NOCASE DESC, p.id DESC"),
    LIST_SORT("naissance", "p.birth_date IS NULL, p.birth_date, p.id"),
    LIST_SORT("-naissance", "p.birth_date IS NULL, p.birth_date DESC, p.id DESC"),
    LIST_SORT("licence", "p.licence_number IS NULL, p.licence_number, p.id"),
    LIST_SORT("-licence", "p.licence_number IS NULL, p.licence_number DESC, p.id DESC"),
    LIST_SORT("galop", GALOP_RANK " IS NULL, " GALOP_RANK ", p.last_name COLLATE NOCASE, p.id"),
    LIST_SORT("-galop",
              GALOP_RANK " IS NULL, " GALOP_RANK " DESC, p.last_name COLLATE NOCASE, p.id"),
    /* "maj" lists the most recently updated first. */
    LIST_SORT("maj", "p.updated_at DESC, p.id DESC"),
    LIST_SORT("-maj", "p.updated_at, p.id"),
};
#define SORT_COUNT (sizeof(list_sorts) / sizeof(list_sorts[0]))

struct list_cache_entry {
    char *key;
    char *body;
    size_t len;
    uint64_t generation;
};

static struct list_cache_entry list_cache[LIST_CACHE_SLOTS];
static size_t list_cache_next;

static struct list_cache_entry *cache_find(const char *key, uint64_t generation)
{
    for (size_t i = 0; i < LIST_CACHE_SLOTS; i++) {
        struct list_cache_entry *e = &list_cache[i];
        if (e->key != NULL && e->generation == generation && strcmp(e->key, key) == 0)
            return e;
    }
    return NULL;
}

/* Stores body under key, replacing the oldest entry. Takes ownership of
 * key and body. */
static void cache_store(char *key, char *body, uint64_t generation)
{
    struct list_cache_entry *e = &list_cache[list_cache_next];

    list_cache_next = (list_cache_next + 1) % LIST_CACHE_SLOTS;
    free(e->key);
    free(e->body);
    e->key = key;
    e->body = body;
    e->len = strlen(body);
    e->generation = generation;
}

#define SEARCH_TERMS 4

/* LIKE patterns of a search: every term must occur in person.search_text.
 * Unused terms are empty. */
struct search {
    char terms[SEARCH_TERMS][LIST_MAX_QUERY * 2 + 4];
    size_t count;
};

/* Appends "%<text>%" to search with %, _ and \ escaped. */
static void search_add(struct search *search, const char *text, size_t len)
{
    char *out = search->terms[search->count];
    size_t cap = sizeof(search->terms[0]), n = 0;

    out[n++] = '%';
    for (size_t i = 0; i < len && n + 3 < cap; i++) {
        if (text[i] == '%' || text[i] == '_' || text[i] == '\\')
            out[n++] = '\\';
        out[n++] = text[i];
    }
    out[n++] = '%';
    out[n] = '\0';
    search->count++;
}

/* Builds the search for q and returns the number of terms. A phone number,
 * an e-mail address or a licence number is searched in its stored form. Other text is folded
 * (accents and case ignored) and split into words, and each word must
 * match. Words past the fourth must match in order. */
static size_t search_build(const char *q, struct search *search)
{
    char folded[LIST_MAX_QUERY * 2], value[64];
    const char *p;

    memset(search, 0, sizeof(*search));
    if (norm_phone(q, value, sizeof(value)) == NORM_OK) {
        /* search_text contains +33 numbers in their national form too. */
        if (strncmp(value, "+33", 3) == 0) {
            value[2] = '0';
            search_add(search, value + 2, strlen(value + 2));
        } else {
            search_add(search, value, strlen(value));
        }
        return search->count;
    }
    if (strchr(q, '@') != NULL &&
        norm_email(q, folded, sizeof(folded), value, sizeof(value)) == NORM_OK) {
        /* search_text contains the address as stored (lower case). */
        search_add(search, folded, strlen(folded));
        return search->count;
    }
    if (norm_licence(q, value, sizeof(value)) == NORM_OK &&
        norm_fold(value, folded, sizeof(folded), 1) == NORM_OK) {
        search_add(search, folded, strlen(folded));
        return search->count;
    }
    if (norm_fold(q, folded, sizeof(folded), 0) != NORM_OK)
        return 0;
    p = folded;
    while (*p != '\0' && search->count < SEARCH_TERMS) {
        size_t len;

        while (*p == ' ')
            p++;
        len = search->count == SEARCH_TERMS - 1 ? strlen(p) : strcspn(p, " ");
        if (len == 0)
            break;
        if (search->count == SEARCH_TERMS - 1) {
            /* The remaining words, in order, with anything between them. */
            char rest[sizeof(folded)];
            size_t n = 0;

            for (size_t i = 0; i < len && n + 1 < sizeof(rest); i++)
                rest[n++] = p[i] == ' ' ? '%' : p[i];
            search_add(search, rest, n);
            break;
        }
        search_add(search, p, len);
        p += len;
    }
    return search->count;
}

/* Binds the search terms to the parameters listed in index. */
static void search_bind(sqlite3_stmt *stmt, const struct search *search, const int index[SEARCH_TERMS])
{
    for (size_t i = 0; i < search->count; i++)
        sqlite3_bind_text(stmt, index[i], search->terms[i], -1, SQLITE_STATIC);
}

/* Counts per status, and "tous", for the search (no terms: everyone). */
static json_t *list_counts(struct app *app, const struct search *search)
{
    static const int params[SEARCH_TERMS] = {1, 2, 3, 4};
    json_t *counts = json_object();
    sqlite3_stmt *stmt;
    json_int_t all = 0;

    for (size_t i = 0; i < STATUS_COUNT; i++)
        json_object_set_new(counts, statuses[i], json_integer(0));
    if (search->count == 0)
        stmt = db_stmt(app->db, "SELECT role, count(*) FROM person_role GROUP BY role");
    else
        stmt = db_stmt(app->db, "SELECT r.role, count(*) FROM person p JOIN person_role r"
                                " ON r.person_id = p.id WHERE p.search_text LIKE ?1 ESCAPE '\\'"
                                " AND (?2 IS NULL OR p.search_text LIKE ?2 ESCAPE '\\')"
                                " AND (?3 IS NULL OR p.search_text LIKE ?3 ESCAPE '\\')"
                                " AND (?4 IS NULL OR p.search_text LIKE ?4 ESCAPE '\\')"
                                " GROUP BY r.role");
    if (stmt == NULL)
        return counts;
    search_bind(stmt, search, params);
    while (sqlite3_step(stmt) == SQLITE_ROW)
        json_object_set_new(counts, (const char *)sqlite3_column_text(stmt, 0),
                            json_integer(sqlite3_column_int64(stmt, 1)));
    sqlite3_reset(stmt);

    if (search->count == 0)
        stmt = db_stmt(app->db, "SELECT count(*) FROM person");
    else
        stmt = db_stmt(app->db, "SELECT count(*) FROM person p"
                                " WHERE p.search_text LIKE ?1 ESCAPE '\\'"
                                " AND (?2 IS NULL OR p.search_text LIKE ?2 ESCAPE '\\')"
                                " AND (?3 IS NULL OR p.search_text LIKE ?3 ESCAPE '\\')"
                                " AND (?4 IS NULL OR p.search_text LIKE ?4 ESCAPE '\\')");
    if (stmt == NULL)
        return counts;
    search_bind(stmt, search, params);
    if (sqlite3_step(stmt) == SQLITE_ROW)
        all = sqlite3_column_int64(stmt, 0);
    sqlite3_reset(stmt);
    json_object_set_new(counts, "tous", json_integer(all));
    return counts;
}

/* Counts of recent searches: they do not depend on the page or the sort,
 * so paging through a result does not count again. */
#define COUNTS_CACHE_SLOTS 16

struct counts_cache_entry {
    char q[LIST_MAX_QUERY + 1];
    json_t *counts;
    uint64_t generation;
};

static struct counts_cache_entry counts_cache[COUNTS_CACHE_SLOTS];
static size_t counts_cache_next;

/* Returns the counts for q (new reference), from the cache when fresh. */
static json_t *cached_counts(struct app *app, const char *q, const struct search *search,
                             uint64_t generation)
{
    struct counts_cache_entry *e;

    for (size_t i = 0; i < COUNTS_CACHE_SLOTS; i++) {
        e = &counts_cache[i];
        if (e->counts != NULL && e->generation == generation && strcmp(e->q, q) == 0)
            return json_incref(e->counts);
    }
    e = &counts_cache[counts_cache_next];
    counts_cache_next = (counts_cache_next + 1) % COUNTS_CACHE_SLOTS;
    json_decref(e->counts);
    e->counts = list_counts(app, search);
    e->generation = generation;
    snprintf(e->q, sizeof(e->q), "%s", q);
    return json_incref(e->counts);
}

static json_t *list_item(sqlite3_stmt *stmt)
{
    json_t *item = json_object();

    json_object_set_new(item, "id", json_integer(sqlite3_column_int64(stmt, 0)));
    json_object_set_new(item, "last_name", api_column_json(stmt, 1));
    json_object_set_new(item, "first_name", api_column_json(stmt, 2));
    json_object_set_new(item, "birth_date", api_column_json(stmt, 3));
    json_object_set_new(item, "email", api_column_json(stmt, 4));
    json_object_set_new(item, "phone", api_column_json(stmt, 5));
    json_object_set_new(item, "mobile", api_column_json(stmt, 6));
    json_object_set_new(item, "licence_number", api_column_json(stmt, 7));
    json_object_set_new(item, "licence_season",
                        sqlite3_column_type(stmt, 8) == SQLITE_NULL
                            ? json_null()
                            : json_integer(sqlite3_column_int64(stmt, 8)));
    json_object_set_new(item, "licence_valid", json_boolean(sqlite3_column_int(stmt, 9)));
    json_object_set_new(item, "galop", api_column_json(stmt, 10));
    json_object_set_new(item, "galop_label", api_column_json(stmt, 11));
    json_object_set_new(item, "roles",
                        api_roles_json(api_roles_parse((const char *)sqlite3_column_text(stmt, 12))));
    /* accepte, en_attente, refuse, a_renouveler; null when no terms are published. */
    json_object_set_new(item, "consent_status", api_column_json(stmt, 13));
    return item;
}

static void handle_list(struct http_request *req, void *ctx)
{
    struct app *app = ctx;
    const struct auth_user *user = auth_require(app, req, "riders.list", 0);
    char status[32] = "tous", sort[32] = "nom", q[LIST_MAX_QUERY + 1] = "";
    static const int list_params[SEARCH_TERMS] = {2, 6, 7, 8};
    struct search search;
    const char *role = NULL;
    int page, per_page, year, sort_index = -1;
    char *key = NULL, *text = NULL;
    struct list_cache_entry *hit;
    struct script_version *version = NULL;
    uint64_t generation;
    sqlite3_stmt *stmt;
    json_t *items, *counts, *body;
    time_t now = time(NULL);
    struct tm tm;

    if (user == NULL)
        return;
    http_query_param(req, "status", status, sizeof(status));
    http_query_param(req, "sort", sort, sizeof(sort));
    if (http_query_param(req, "q", q, sizeof(q)) && strlen(q) >= LIST_MAX_QUERY) {
        api_respond_validation(req, json_pack("{s:s}", "q", "La recherche est trop longue "
                                                           "(200 caractères au plus)."));
        return;
    }
    page = api_query_int(req, "page", 1, 1, 1000000);
    per_page = api_query_int(req, "per_page", LIST_DEFAULT_PER_PAGE, 1, LIST_MAX_PER_PAGE);
    if (page < 0 || per_page < 0) {
        api_respond_validation(req, json_pack("{s:s}", page < 0 ? "page" : "per_page",
                                              "Doit être un nombre entier positif."));
        return;
    }
    if (strcmp(status, "tous") != 0 && status[0] != '\0') {
        for (size_t i = 0; i < STATUS_COUNT; i++) {
            if (strcmp(status, statuses[i]) == 0)
                role = statuses[i];
        }
        if (role == NULL) {
            api_respond_validation(req, json_pack("{s:s}", "status", "Statut inconnu."));
            return;
        }
    }
    for (size_t i = 0; i < SORT_COUNT; i++) {
        if (strcmp(sort, list_sorts[i].key) == 0)
            sort_index = (int)i;
    }
    if (sort_index < 0) {
        api_respond_validation(req, json_pack("{s:s}", "sort", "Tri inconnu."));
        return;
    }
    gmtime_r(&now, &tm);
    year = tm.tm_year + 1900;

    /* The response depends on the query, the role set (field visibility)
     * and the year (licence validity). It stays valid until the data
     * change. */
    generation = api_data_generation(app);
    if (app->scripts != NULL)
        version = script_engine_acquire(app->scripts);
    key = str_printf("%s|%s|%s|%d|%d|%u|%d|%s", role ? role : "", sort, q, page, per_page,
                     user->roles, year, version ? script_version_id(version) : "");
    if (version != NULL)
        script_version_release(version);
    if (key != NULL && (hit = cache_find(key, generation)) != NULL) {
        free(key);
        http_set_header(req, "Cache-Control", "no-store");
        http_respond(req, 200, "application/json; charset=utf-8", hit->body, hit->len);
        return;
    }

    search_build(q, &search);
    stmt = db_stmt(app->db, search.count > 0 ? list_sorts[sort_index].sql_search
                                             : list_sorts[sort_index].sql);
    if (stmt == NULL) {
        free(key);
        api_respond_db_error(req, app, "rider list");
        return;
    }
    db_bind_text_or_null(stmt, 1, role);
    search_bind(stmt, &search, list_params);
    sqlite3_bind_int(stmt, 3, per_page);
    sqlite3_bind_int64(stmt, 4, (sqlite3_int64)(page - 1) * per_page);
    sqlite3_bind_int(stmt, 5, year);
    items = json_array();
    while (sqlite3_step(stmt) == SQLITE_ROW)
        json_array_append_new(items, list_item(stmt));
    sqlite3_reset(stmt);

    counts = cached_counts(app, q, &search, generation);
    body = json_pack("{s:O,s:i,s:i,s:o,s:o}", "total",
                     json_object_get(counts, role ? role : "tous"), "page", page, "per_page",
                     per_page, "counts", counts, "items", items);
    text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text == NULL) {
        free(key);
        http_respond_error(req, 500, "internal", "Mémoire insuffisante.");
        return;
    }
    http_set_header(req, "Cache-Control", "no-store");
    http_respond(req, 200, "application/json; charset=utf-8", text, strlen(text));
    if (key != NULL)
        cache_store(key, text, generation);
    else
        free(text);
}

void api_riders_list_register_routes(struct app *app)
{
    router_add(app->router, "GET", "/api/v1/riders", handle_list, app, 0);
}
