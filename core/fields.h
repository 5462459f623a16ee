/*
 * Field catalogue: the person fields Licol stores, in display order. The core
 * fields (columns of the table person) come first, then the fields declared
 * by plugins (stored in person_field, keyed by field key). The script engine
 * builds one catalogue per script version; it is immutable once built and
 * may be read from any thread while the version is held.
 *
 * Values are validated as text, because that is how forms, CSV files and
 * person_field carry them. Messages are French and name the field.
 */
#ifndef LICOL_FIELDS_H
#define LICOL_FIELDS_H

#include <jansson.h>
#include <stddef.h>

struct script_state;

enum field_type {
    FIELD_TEXT = 0,
    FIELD_NUMBER,
    FIELD_DATE,    /* yyyy-mm-dd */
    FIELD_BOOLEAN, /* "1"/"0", "true"/"false", "oui"/"non" */
    FIELD_CHOICE,  /* one of choices */
    FIELD_EMAIL,
    FIELD_PHONE,
    FIELD_TYPE_COUNT
};

#define FIELDS_MAX_KEY 64       /* bytes in a key: [a-z0-9_], starting with a letter */
#define FIELDS_MAX_VALUE 4096   /* bytes in a value passed to fields_validate */
#define FIELDS_MAX_LIST 32      /* entries in choices, csv_aliases, view and edit */

struct field_def {
    char *key;
    char *label;      /* French */
    enum field_type type;
    int required;
    int has_min, has_max;
    double min, max;  /* number: value bounds; date: none (use a validate function) */
    int max_length;   /* text: characters (UTF-8 code points); 0 = none */
    char *pattern;    /* text: POSIX extended regex the whole value must match, or NULL */
    void *regex;      /* compiled pattern (regex_t), owned */
    char **choices;   /* choice: allowed values; NULL-terminated */
    char **aliases;   /* csv_aliases: column headers that map to this field */
    char **view;      /* role names that may see the field; NULL = everyone with rider.read */
    char **edit;      /* role names that may edit it; NULL = everyone with rider.update */
    int is_public;    /* shown on the online registration form */
    char *plugin;     /* owning plugin, NULL for a core field */
    int has_validate; /* the plugin gives a validate(value) function */
    int validate_slot; /* index into the state's validate references */
};

struct fields_catalogue {
    struct field_def *fields;
    size_t count;
    size_t cap;
    size_t core_count; /* the first core_count fields are core person fields */
};

extern const char *const fields_type_names[FIELD_TYPE_COUNT];

/* Returns the type for a name ("text", "number", ...) or -1. */
int fields_type_from_name(const char *name);

/* Returns a catalogue holding the core person fields, or NULL when out of
 * memory. */
struct fields_catalogue *fields_catalogue_new(void);
void fields_catalogue_free(struct fields_catalogue *catalogue);

/* Adds a field and takes ownership of every pointer in def (strings and
 * lists are freed with the catalogue, also on failure). Compiles the
 * pattern. Returns 0, or -1 with *err (French, caller frees) when the key is
 * invalid or already declared, the pattern does not compile, or a choice
 * field has no choices. */
int fields_catalogue_add(struct fields_catalogue *catalogue, struct field_def *def, char **err);

/* Returns the field with key, or NULL. */
const struct field_def *fields_find(const struct fields_catalogue *catalogue, const char *key);

/* Returns the field whose csv_aliases (or label) match a column header,
 * compared folded (accents and case ignored), or NULL. */
const struct field_def *fields_find_alias(const struct fields_catalogue *catalogue,
                                          const char *header);

/* Validates value for the field key. C checks the type, required, bounds,
 * length, pattern and choices. Then, when state is not NULL and the owning
 * plugin gives a validate function, that function decides. An empty or NULL
 * value is valid unless the field is required. Returns 0 when valid, -1
 * with *err_fr set (French message naming the field, caller frees). */
int fields_validate(const struct fields_catalogue *catalogue, const char *key,
                    const char *value, struct script_state *state, char **err_fr);

/* Returns 1 when a person holding roles (a set of enum script_role bits)
 * may see, or edit, the field: one of the roles is listed in view (edit),
 * or the list is absent. The caller still checks rider.read or
 * rider.update through roles.lua. */
int fields_can_view(const struct field_def *field, unsigned roles);
int fields_can_edit(const struct field_def *field, unsigned roles);

/* The catalogue as a JSON array of field descriptions (new reference). */
json_t *fields_to_json(const struct fields_catalogue *catalogue);

/* Frees the members of a definition not added to a catalogue. */
void fields_def_clear(struct field_def *def);

#endif
