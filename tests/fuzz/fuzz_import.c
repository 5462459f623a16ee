/*
 * libFuzzer target for the import's read-map-merge path: each input is
 * written to a file and imported as a preview (the whole pipeline, then a
 * rollback) into an in-memory database that already holds the riders of
 * the 2025 federation sample, using the shipped scripts and plugins, so
 * that matching and merging run against real data.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "import.h"
#include "log.h"
#include "migrate.h"
#include "script.h"

static struct db *db;
static struct script_engine *engine;
static struct script_version *version;
static char input_path[64];
static long iterations;

static void fail(const char *what, char *err)
{
    fprintf(stderr, "fuzz_import set-up: %s: %s\n", what, err ? err : "?");
    abort();
}

static void run_import(const char *path, int dry_run)
{
    struct import_options options;
    struct import_progress progress;
    struct import_counts counts;
    char *err = NULL;
    int file_rejected;
    int64_t run_id;

    memset(&options, 0, sizeof(options));
    options.dry_run = dry_run;
    snprintf(options.format, sizeof(options.format), "auto");
    snprintf(options.source, sizeof(options.source), "cli");
    snprintf(options.filename, sizeof(options.filename), "fuzz.csv");
    atomic_init(&progress.lines_done, 0);
    atomic_init(&progress.lines_total, 0);
    atomic_init(&progress.rows, 0);
    atomic_init(&progress.cancel, 0);
    run_id = import_run_create(db, path, &options, &err);
    if (run_id < 0)
        fail("run", err);
    import_run_execute(db, script_version_state(version), run_id, path, &options, &progress, NULL,
                       NULL, &counts, &file_rejected, &err);
    free(err);
}

static void set_up(void)
{
    struct script_config config;
    char scripts[1024], plugins[1024], sample[1024];
    const char *shared = getenv("LICOL_SHARED_DIR");
    char *err = NULL;

    log_set_level("off");
    db = db_open(":memory:", &err);
    if (!db || migrate_apply(db, &err) < 0)
        fail("database", err);
    snprintf(scripts, sizeof(scripts), "%s/scripts", LICOL_SOURCE_DIR);
    snprintf(plugins, sizeof(plugins), "%s/plugins", LICOL_SOURCE_DIR);
    memset(&config, 0, sizeof(config));
    config.scripts_dir = scripts;
    config.plugins_dir = plugins;
    engine = script_engine_new(&config, &err);
    if (!engine)
        fail("scripts", err);
    version = script_engine_acquire(engine);
    snprintf(sample, sizeof(sample), "%s/samples/ffe-2025.csv",
             shared ? shared : LICOL_SOURCE_DIR "/../shared");
    if (access(sample, R_OK) == 0)
        run_import(sample, 0);
    snprintf(input_path, sizeof(input_path), "/tmp/licol-fuzz-import-%d.csv", (int)getpid());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FILE *f;

    if (!db)
        set_up();
    f = fopen(input_path, "wb");
    if (!f)
        abort();
    fwrite(data, 1, size, f);
    fclose(f);
    run_import(input_path, 1);
    /* Previews leave their run records; keep the database small. */
    if (++iterations % 1000 == 0)
        db_exec(db, "DELETE FROM import_row_issue; DELETE FROM import_run WHERE id > 1");
    unlink(input_path);
    return 0;
}
