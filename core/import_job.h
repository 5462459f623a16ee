/*
 * Private to the import (import.c, the writing side, and import_map.c, the
 * mapping side): the state of a run and the rows that cross between its
 * two threads.
 */
#ifndef LICOL_IMPORT_JOB_H
#define LICOL_IMPORT_JOB_H

#include "import.h"
#include "arena.h"
#include "batch_queue.h"
#include "csvread.h"
#include "fields.h"

#include <lua.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>

#define MAX_SCRIPT_ERRORS 20 /* a broken format script aborts the run after this many rows */
#define BATCH_ROWS 256       /* mapped rows handed over at a time to the writing thread */
#define BATCH_COUNT 4        /* batches that go round between the two threads */
#define UPDATE_CACHE_SIZE 32 /* person UPDATE statements kept, one per set of changed columns */
#define CHECKED_VALUES 2     /* values that check_values() may drop: sex and galop */
/* A batch is handed over once its copies reach BATCH_MAX_BYTES. The
 * mapping thread waits while the batches handed over take more than
 * MAX_BYTES_IN_FLIGHT, so that very wide rows (csvread allows 256 fields
 * of 64 KiB) do not multiply memory by BATCH_ROWS. */
#define BATCH_MAX_BYTES (1024 * 1024)
#define MAX_BYTES_IN_FLIGHT (2 * 1024 * 1024)

/* Core person columns an import may set, in the order of the person
 * statements of import.c. */
enum column {
    COL_LAST_NAME,
    COL_FIRST_NAME,
    COL_BIRTH_DATE,
    COL_SEX,
    COL_EMAIL,
    COL_EMAIL_INVALID,
    COL_PHONE,
    COL_MOBILE,
    COL_ADDRESS,
    COL_ADDRESS2,
    COL_POSTCODE,
    COL_CITY,
    COL_COUNTRY,
    COL_LICENCE_NUMBER,
    COL_LICENCE_RAW,
    COL_GALOP,
    COL_COUNT
};

static const char *const column_names[COL_COUNT] = {
    "last_name", "first_name", "birth_date", "sex",      "email",   "email_invalid",
    "phone",     "mobile",     "address",    "address2", "postcode", "city",
    "country",   "licence_number", "licence_raw", "galop",
};


enum merge_rule { RULE_FILL, RULE_NEWEST, RULE_KEEP };

struct licence_in {
    long season;
    const char *number, *type, *category, *club, *taken_on;
};

struct guardian_in {
    const char *last_name, *first_name, *email, *phone, *mobile;
};

struct incoming {
    const char *values[COL_COUNT];
    const char *email2;
    struct licence_in licence;
    int has_guardian;
    struct guardian_in guardian;
};

struct warning_in {
    const char *field, *message;
};

/* One row as the mapping thread hands it to the writing thread. Every
 * string is a copy in the batch's arena, because the Lua values it came
 * from are collected once the next row is mapped. */
struct mapped_row {
    long record_no, line_no;
    char **fields; /* the file's fields, for issue records */
    size_t nfields;
    const char *rejected; /* the mapping rejected the row for this French reason */
    struct incoming in;
    struct warning_in *warnings;
    size_t nwarnings;
    /* Plugin fields by catalogue index minus core_count: the value, and
     * the French message when fields_validate() rejected it. */
    const char **plugin_values;
    const char **plugin_errors;
};

struct mapped_batch {
    struct arena arena;
    size_t bytes; /* handed over with the batch: its arena's size then */
    size_t count;
    struct mapped_row rows[BATCH_ROWS];
};

/* Person ids already touched by this run, as a bitmap indexed by id: its
 * size follows the largest person id (about 90 KB for 700,000 people), not
 * the number of rows, so memory stays flat on a national-scale file. */
struct seen_set {
    uint64_t *bits;
    size_t words;
};

/* Issues are written to a temporary file as the run goes and stored in
 * import_row_issue after the data transaction (which a preview rolls
 * back), so that memory does not grow with the number of issues. Each is
 * one record: the fixed header below, then field, message and raw, each
 * NUL-terminated (field and raw empty when absent). */
struct issue_header {
    long record_no, line_no;
    int64_t person_id;
    char kind; /* 'r' rejected, 's' set aside, 'w' warning */
};

struct job {
    struct db *db;
    struct script_state *state;
    lua_State *L;
    const struct fields_catalogue *catalogue;
    int64_t run_id;
    const struct import_options *options;
    struct import_progress *progress;
    import_progress_fn on_progress;
    void *userdata;
    struct import_counts counts;
    char now[32];

    int header_seen;
    size_t header_count;
    json_t *header;
    int format_instance;
    char format_name[64];
    char format_label[160];
    int cols_ref;
    int row_ref;
    size_t row_len;
    int script_errors;
    int row_hook; /* a plugin handles import_row_mapped */

    enum merge_rule rules[COL_COUNT];
    enum merge_rule default_rule;
    int policy_ref;                  /* the policy table */
    enum merge_rule *plugin_rules;   /* by catalogue index minus core_count */
    char **galop_codes;              /* galop_level.code, read before the run */
    size_t galop_count;

    struct {
        unsigned mask;
        sqlite3_stmt *stmt;
    } update_cache[UPDATE_CACHE_SIZE];

    struct seen_set seen;
    struct seen_set unchanged; /* people counted unchanged so far in this pass */
    json_t *samples;
    FILE *issues;        /* temporary file of issue records */
    long stored_warnings; /* warnings written to it, at most IMPORT_MAX_STORED_ISSUES */

    /* the row being processed, for issue records */
    long record_no, line_no;
    size_t nfields;
    char **fields;

    /* Rows run without a savepoint of their own unless row_savepoints is
     * set. A row that has to be rolled back alone then sets restart, and
     * the run starts over from the first row with savepoints. */
    int row_savepoints;
    int restart;

    /* The file is read and mapped on a thread of its own (the mapping
     * thread: csvread and Lua) while the calling thread writes (the
     * writing thread: SQLite). During a pass, only the mapping thread
     * uses L, the fields from header_seen to row_hook, counts.rows and
     * the fields marked below. The writing thread uses the rest, and
     * either thread may call job_fail(). */
    const char *path;
    struct csvread_info *info;
    char *read_err;
    int read_rc;
    struct batch_queue queue;
    struct mapped_batch *batch; /* mapping thread: the batch being filled */
    size_t *lengths;            /* mapping thread: field lengths after unprotecting */
    size_t lengths_size;
    pthread_mutex_t fail_lock;
    atomic_int failed;
    atomic_int writer_stopped; /* the writing thread wants no more rows */

    char *fatal;       /* French reason the run stops */
    int file_rejected; /* the fatal reason is the file, not the database */
    char encoding[16];
    char separator;
};

/* Records that the run fails, with a French reason (freed here). The first
 * reason wins. Either thread may call it. */
void job_fail(struct job *job, int file_rejected, char *message);

/* Fails the run when the server asked running imports to stop. Returns 1
 * then. Either thread may call it. */
int check_cancel(struct job *job);

/* The mapping thread's function (arg: the job): reads and maps job->path
 * into job->queue, then closes the queue. */
void *import_mapping_thread(void *arg);

#endif
