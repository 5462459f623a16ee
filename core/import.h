/*
 * Import of a rider file: read (core/csvread.h), map each row to a person
 * with the club's format scripts (the .lua files of scripts/formats/), recognise the
 * person already known, merge by the club's policy (scripts/merge.lua), and
 * record everything.
 *
 * A run is one SQLite transaction: a crash or a kill leaves the database as
 * it was. A preview (dry run) executes exactly the same code and rolls the
 * transaction back, so its counts are those the real run will produce on the
 * same database. Each run leaves a row in import_run, its rejected and
 * set-aside rows in import_row_issue, and its field-level changes in
 * audit_log, which is also what undo replays backwards.
 *
 * Runs execute on any thread with their own struct db and script state; the
 * progress counters may be read from another thread.
 */
#ifndef LICOL_IMPORT_H
#define LICOL_IMPORT_H

#include <jansson.h>
#include <stdatomic.h>
#include <stdint.h>

#include "db.h"
#include "util.h"

struct script_state;

#define IMPORT_SAMPLE_CHANGES 50     /* changed people described in a run's report */
#define IMPORT_MAX_STORED_ISSUES 20000 /* warnings stored per run; more are only counted */

struct import_options {
    int dry_run;
    int replace;          /* "Remplacer les données": incoming values replace stored ones */
    char format[32];      /* "auto" or a format script name ("ffe", "celeris") */
    char filename[256];   /* the name staff gave the file */
    char source[8];       /* "cli", "web" or "auto" */
    int64_t actor_id;     /* person who ran it; 0 for the system */
    int64_t preview_of;   /* the preview this run confirms, or 0 */
};

struct import_progress {
    atomic_llong lines_done;
    atomic_llong lines_total;
    atomic_long rows;
    atomic_int cancel; /* set from another thread to stop the run; it then fails, unchanged */
};

struct import_counts {
    long rows;
    long created;
    long updated;
    long unchanged;
    long set_aside;
    long rejected;
    long warnings;
};

/* Records a new run (state "queued") for the file at path: size, line count
 * and SHA-256. Returns the run id, or -1 with *err (French). */
int64_t import_run_create(struct db *db, const char *path, const struct import_options *options,
                          char **err);

/* Progress callback for the command line, called every few hundred rows. */
typedef void (*import_progress_fn)(void *userdata, const struct import_progress *progress);

/* Executes run_id on the file at path. Returns 0 when the run is done
 * (counts filled), -1 when it failed: then *err is the French reason,
 * stored in the run too, and the data is unchanged. file_rejected is set to
 * 1 when the file as a whole was unusable (bad encoding, unknown columns,
 * ...) rather than the database failing. */
int import_run_execute(struct db *db, struct script_state *state, int64_t run_id,
                       const char *path, const struct import_options *options,
                       struct import_progress *progress, import_progress_fn on_progress,
                       void *userdata, struct import_counts *counts, int *file_rejected,
                       char **err);

/* The run as JSON for the API (see docs/api.md), or NULL when not found. */
json_t *import_run_to_json(struct db *db, int64_t run_id);

/* Runs, newest first. */
json_t *import_run_list(struct db *db, int limit);

/* Cancels the last real import: deletes the people it created and restores
 * the values it changed. Refused (returns -1, *err French) when it is not
 * the last import, is a preview, was already undone, or when somebody
 * changed those people since; then *conflicts (when not NULL) lists who and
 * what. Returns 0 on success. */
int import_undo(struct db *db, int64_t run_id, int64_t actor_id, char **err, json_t **conflicts);

/* Writes the rejected and set-aside rows of a run as CSV (UTF-8 with BOM,
 * ';'), with the file's columns plus "Motif du rejet". Cells that a
 * spreadsheet would run as a formula are prefixed with an apostrophe, which
 * the import removes again. Returns 0, or -1 when the run is unknown. */
int import_rejected_csv(struct db *db, int64_t run_id, struct buf *out);

/* Marks runs left "running" or "queued" by a killed process as failed.
 * Their data transaction never committed, so nothing else needs repair. */
void import_recover_interrupted(struct db *db);

#endif
