/*
 * Field catalogue: the core person fields, the fields plugins add, and the
 * validation of a value for a field. The script engine fills the plugin
 * part (script_plugin.c) and calls a plugin's own validate function through
 * script_field_validate().
 */
#include "fields.h"

#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "normalize.h"
#include "script_internal.h"
#include "util.h"

const char *const fields_type_names[FIELD_TYPE_COUNT] = {
    "text", "number", "date", "boolean", "choice", "email", "phone",
};

/* The columns of the table person that staff see and edit, in display
 * order. Labels are the French words of the forms and the federation file. */
static const struct {
    const char *key;
    const char *label;
    enum field_type type;
    int required;
    const char *aliases[4];
} core_fields[] = {
    {"last_name", "Nom", FIELD_TEXT, 1, {"Nom", "Nom de famille", NULL}},
    {"first_name", "Prénom", FIELD_TEXT, 0, {"Prénom", "Prenom", NULL}},
    {"birth_date", "Date de naissance", FIELD_DATE, 0, {"Date de naissance", "Né le", NULL}},
    {"sex", "Sexe", FIELD_CHOICE, 0, {"Sexe", "Civilité", NULL}},
    {"email", "E-mail", FIELD_EMAIL, 0, {"Email", "E-mail", "Courriel", NULL}},
    {"phone", "Téléphone", FIELD_PHONE, 0, {"Téléphone", "Tél", NULL}},
    {"mobile", "Portable", FIELD_PHONE, 0, {"Portable", "Mobile", NULL}},
    {"address", "Adresse", FIELD_TEXT, 0, {"Adresse", NULL}},
    {"address2", "Complément d'adresse", FIELD_TEXT, 0, {"Complément adresse", NULL}},
    {"postcode", "Code postal", FIELD_TEXT, 0, {"Code postal", "CP", NULL}},
    {"city", "Ville", FIELD_TEXT, 0, {"Ville", "Commune", NULL}},
    {"country", "Pays", FIELD_TEXT, 0, {"Pays", NULL}},
    {"licence_number", "Numéro de licence", FIELD_TEXT, 0, {"Numéro licence", "Licence", NULL}},
    {"galop", "Galop", FIELD_TEXT, 0, {"Galop", "Niveau", NULL}},
};

static const char *const sex_choices[] = {"F", "M", NULL};

/* Fields that only staff may edit: they come from the federation, and a
 * client changing them would change what the club believes of the rider. */
static const char *const staff_only[] = {"gerant", "employe", NULL};

int fields_type_from_name(const char *name)
{
    for (int i = 0; i < FIELD_TYPE_COUNT; i++) {
        if (strcmp(name, fields_type_names[i]) == 0)
            return i;
    }
    return -1;
}

static char **copy_list(const char *const *src)
{
    size_t n = 0;
    char **out;

    while (src[n] != NULL)
        n++;
    out = calloc(n + 1, sizeof(*out));
    for (size_t i = 0; out != NULL && i < n; i++)
        out[i] = strdup(src[i]);
    return out;
}

static void free_list(char **list)
{
    if (list == NULL)
        return;
    for (size_t i = 0; list[i] != NULL; i++)
        free(list[i]);
    free(list);
}

void fields_def_clear(struct field_def *def)
{
    free(def->key);
    free(def->label);
    free(def->pattern);
    if (def->regex != NULL) {
        regfree(def->regex);
        free(def->regex);
    }
    free_list(def->choices);
    free_list(def->aliases);
    free_list(def->view);
    free_list(def->edit);
    free(def->plugin);
    memset(def, 0, sizeof(*def));
}

static int valid_key(const char *key)
{
    size_t len = strlen(key);

    if (len == 0 || len > FIELDS_MAX_KEY || key[0] < 'a' || key[0] > 'z')
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = key[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return 0;
    }
    return 1;
}

int fields_catalogue_add(struct fields_catalogue *cat, struct field_def *def, char **err)
{
    int rc = -1;

    if (!valid_key(def->key)) {
        *err = str_printf("clé de champ invalide « %s » (lettres minuscules, chiffres et _, "
                          "%d caractères au plus)",
                          def->key, FIELDS_MAX_KEY);
        goto done;
    }
    if (fields_find(cat, def->key) != NULL) {
        *err = str_printf("le champ « %s » est déjà déclaré", def->key);
        goto done;
    }
    if (def->type == FIELD_CHOICE && (def->choices == NULL || def->choices[0] == NULL)) {
        *err = str_printf("le champ « %s » est de type choice mais n'a pas de choices", def->key);
        goto done;
    }
    if (def->pattern != NULL) {
        /* Anchored, so the pattern must match the whole value. */
        char *anchored = str_printf("^(%s)$", def->pattern);
        int bad = anchored == NULL;

        def->regex = malloc(sizeof(regex_t));
        if (!bad && def->regex != NULL)
            bad = regcomp(def->regex, anchored, REG_EXTENDED | REG_NOSUB) != 0;
        free(anchored);
        if (def->regex == NULL || bad) {
            free(def->regex);
            def->regex = NULL;
            *err = str_printf("le motif (pattern) du champ « %s » n'est pas une expression "
                              "régulière étendue POSIX valide",
                              def->key);
            goto done;
        }
    }
    if (cat->count == cat->cap) {
        size_t cap = cat->cap ? cat->cap * 2 : 32;
        struct field_def *grown = realloc(cat->fields, cap * sizeof(*grown));
        if (grown == NULL) {
            *err = strdup("mémoire insuffisante");
            goto done;
        }
        cat->fields = grown;
        cat->cap = cap;
    }
    cat->fields[cat->count++] = *def;
    memset(def, 0, sizeof(*def));
    rc = 0;

done:
    if (rc != 0)
        fields_def_clear(def);
    return rc;
}

struct fields_catalogue *fields_catalogue_new(void)
{
    struct fields_catalogue *cat = calloc(1, sizeof(*cat));
    char *err = NULL;

    if (cat == NULL)
        return NULL;
    for (size_t i = 0; i < sizeof(core_fields) / sizeof(core_fields[0]); i++) {
        struct field_def def = {0};

        def.key = strdup(core_fields[i].key);
        def.label = strdup(core_fields[i].label);
        def.type = core_fields[i].type;
        def.required = core_fields[i].required;
        def.aliases = copy_list(core_fields[i].aliases);
        def.validate_slot = -1;
        if (def.type == FIELD_CHOICE)
            def.choices = copy_list(sex_choices);
        if (!strcmp(core_fields[i].key, "licence_number") || !strcmp(core_fields[i].key, "galop"))
            def.edit = copy_list(staff_only);
        if (def.key == NULL || def.label == NULL || def.aliases == NULL ||
            fields_catalogue_add(cat, &def, &err) != 0) {
            fields_def_clear(&def);
            free(err);
            fields_catalogue_free(cat);
            return NULL;
        }
    }
    cat->core_count = cat->count;
    return cat;
}

void fields_catalogue_free(struct fields_catalogue *cat)
{
    if (cat == NULL)
        return;
    for (size_t i = 0; i < cat->count; i++)
        fields_def_clear(&cat->fields[i]);
    free(cat->fields);
    free(cat);
}

const struct field_def *fields_find(const struct fields_catalogue *cat, const char *key)
{
    for (size_t i = 0; i < cat->count; i++) {
        if (strcmp(cat->fields[i].key, key) == 0)
            return &cat->fields[i];
    }
    return NULL;
}

const struct field_def *fields_find_alias(const struct fields_catalogue *cat, const char *header)
{
    char want[256], have[256];

    if (norm_fold(header, want, sizeof(want), 1) != NORM_OK)
        return NULL;
    for (size_t i = 0; i < cat->count; i++) {
        const struct field_def *f = &cat->fields[i];
        for (size_t a = 0; f->aliases != NULL && f->aliases[a] != NULL; a++) {
            if (norm_fold(f->aliases[a], have, sizeof(have), 1) == NORM_OK &&
                strcmp(want, have) == 0)
                return f;
        }
        if (norm_fold(f->label, have, sizeof(have), 1) == NORM_OK && strcmp(want, have) == 0)
            return f;
    }
    return NULL;
}

static size_t utf8_length(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static int parse_number(const char *value, double *out)
{
    char buf[64];
    char *end;

    /* Accept the French decimal comma ("1,55"). */
    if (strlen(value) >= sizeof(buf))
        return -1;
    strcpy(buf, value);
    for (char *p = buf; *p; p++) {
        if (*p == ',')
            *p = '.';
    }
    *out = strtod(buf, &end);
    while (*end == ' ')
        end++;
    return end == buf || *end != '\0' || !isfinite(*out) ? -1 : 0;
}

static int parse_boolean(const char *value)
{
    static const char *const yes[] = {"1", "true", "oui", "o", "vrai", "yes", NULL};
    static const char *const no[] = {"0", "false", "non", "n", "faux", "no", NULL};

    for (size_t i = 0; yes[i] != NULL; i++) {
        if (strcasecmp(value, yes[i]) == 0)
            return 1;
    }
    for (size_t i = 0; no[i] != NULL; i++) {
        if (strcasecmp(value, no[i]) == 0)
            return 0;
    }
    return -1;
}

static void format_number(char *buf, size_t size, double v)
{
    snprintf(buf, size, "%g", v);
    for (char *p = buf; *p; p++) {
        if (*p == '.')
            *p = ',';
    }
}

/* Checks the type and the declared constraints. Returns 0 or -1 with
 * *err_fr set. */
static int check_value(const struct field_def *f, const char *value, char **err_fr)
{
    char norm[512], second[256], lo[32], hi[32];
    double number;

    switch (f->type) {
    case FIELD_NUMBER:
        if (parse_number(value, &number) != 0) {
            *err_fr = str_printf("Le champ « %s » doit être un nombre (reçu « %.40s »).", f->label,
                                 value);
            return -1;
        }
        format_number(lo, sizeof(lo), f->min);
        format_number(hi, sizeof(hi), f->max);
        if ((f->has_min && number < f->min) || (f->has_max && number > f->max)) {
            if (f->has_min && f->has_max)
                *err_fr = str_printf("Le champ « %s » doit être compris entre %s et %s.",
                                     f->label, lo, hi);
            else if (f->has_min)
                *err_fr = str_printf("Le champ « %s » doit être au moins %s.", f->label, lo);
            else
                *err_fr = str_printf("Le champ « %s » doit être au plus %s.", f->label, hi);
            return -1;
        }
        return 0;
    case FIELD_DATE:
        if (norm_date(value, norm, sizeof(norm)) != NORM_OK || strcmp(norm, value) != 0) {
            *err_fr = str_printf("Le champ « %s » doit être une date valide au format "
                                 "aaaa-mm-jj (reçu « %.40s »).",
                                 f->label, value);
            return -1;
        }
        return 0;
    case FIELD_BOOLEAN:
        if (parse_boolean(value) < 0) {
            *err_fr = str_printf("Le champ « %s » doit valoir oui ou non (reçu « %.40s »).",
                                 f->label, value);
            return -1;
        }
        return 0;
    case FIELD_CHOICE:
        for (size_t i = 0; f->choices != NULL && f->choices[i] != NULL; i++) {
            if (strcmp(value, f->choices[i]) == 0)
                return 0;
        }
        *err_fr = str_printf("Le champ « %s » n'accepte pas la valeur « %.40s ».", f->label,
                             value);
        return -1;
    case FIELD_EMAIL:
        if (norm_email(value, norm, sizeof(norm), second, sizeof(second)) != NORM_OK ||
            second[0] != '\0') {
            *err_fr = str_printf("Le champ « %s » doit contenir une adresse e-mail valide "
                                 "(reçu « %.40s »).",
                                 f->label, value);
            return -1;
        }
        return 0;
    case FIELD_PHONE:
        if (norm_phone(value, norm, sizeof(norm)) != NORM_OK) {
            *err_fr = str_printf("Le champ « %s » doit contenir un numéro de téléphone valide "
                                 "(reçu « %.40s »).",
                                 f->label, value);
            return -1;
        }
        return 0;
    case FIELD_TEXT:
    default:
        break;
    }

    if (f->max_length > 0 && utf8_length(value) > (size_t)f->max_length) {
        *err_fr = str_printf("Le champ « %s » ne doit pas dépasser %d caractères.", f->label,
                             f->max_length);
        return -1;
    }
    if (f->regex != NULL && regexec(f->regex, value, 0, NULL, 0) != 0) {
        *err_fr = str_printf("Le champ « %s » n'a pas le format attendu (reçu « %.40s »).",
                             f->label, value);
        return -1;
    }
    return 0;
}

int fields_validate(const struct fields_catalogue *cat, const char *key, const char *value,
                    struct script_state *state, char **err_fr)
{
    const struct field_def *f = fields_find(cat, key);

    *err_fr = NULL;
    if (f == NULL) {
        *err_fr = str_printf("Le champ « %.64s » n'existe pas.", key);
        return -1;
    }
    if (value == NULL || value[0] == '\0') {
        if (!f->required)
            return 0;
        *err_fr = str_printf("Le champ « %s » est obligatoire.", f->label);
        return -1;
    }
    if (strlen(value) > FIELDS_MAX_VALUE) {
        *err_fr = str_printf("Le champ « %s » est trop long (%d octets au plus).", f->label,
                             FIELDS_MAX_VALUE);
        return -1;
    }
    if (check_value(f, value, err_fr) != 0)
        return -1;
    if (state != NULL && f->has_validate)
        return script_field_validate(state, f, value, err_fr);
    return 0;
}

static int roles_listed(char **list, unsigned roles)
{
    if (list == NULL)
        return 1;
    for (size_t i = 0; list[i] != NULL; i++) {
        if (script_role_from_name(list[i]) & roles)
            return 1;
    }
    return 0;
}

int fields_can_view(const struct field_def *field, unsigned roles)
{
    return roles_listed(field->view, roles);
}

int fields_can_edit(const struct field_def *field, unsigned roles)
{
    return roles_listed(field->edit, roles);
}

static json_t *list_json(char **list)
{
    json_t *out;

    if (list == NULL)
        return json_null();
    out = json_array();
    for (size_t i = 0; list[i] != NULL; i++)
        json_array_append_new(out, json_string(list[i]));
    return out;
}

json_t *fields_to_json(const struct fields_catalogue *cat)
{
    json_t *out = json_array();

    for (size_t i = 0; cat != NULL && i < cat->count; i++) {
        const struct field_def *f = &cat->fields[i];
        json_t *item = json_pack("{s:s, s:s, s:s, s:b, s:b, s:o, s:o, s:o, s:o}", "key", f->key,
                                 "label", f->label, "type", fields_type_names[f->type], "required",
                                 f->required, "public", f->is_public, "choices",
                                 list_json(f->choices), "csv_aliases", list_json(f->aliases),
                                 "view", list_json(f->view), "edit", list_json(f->edit));
        if (item == NULL)
            continue;
        if (f->has_min)
            json_object_set_new(item, "min", json_real(f->min));
        if (f->has_max)
            json_object_set_new(item, "max", json_real(f->max));
        if (f->max_length > 0)
            json_object_set_new(item, "length", json_integer(f->max_length));
        if (f->pattern != NULL)
            json_object_set_new(item, "pattern", json_string(f->pattern));
        json_object_set_new(item, "plugin", f->plugin ? json_string(f->plugin) : json_null());
        json_array_append_new(out, item);
    }
    return out;
}
