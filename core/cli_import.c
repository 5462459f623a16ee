/*
 * licol import: imports a rider file from the command line, with a
 * progress bar on a terminal, a French summary, or one JSON object with
 * --json. Same pipeline, record and undo as an upload through the web
 * interface.
 */
#include "cli.h"
#include "import.h"
#include "log.h"
#include "migrate.h"
#include "script.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char help[] =
    "Utilisation : licol import [--db FICHIER] [--dry-run] [--replace]\n"
    "                           [--format auto|ffe|celeris] [--json] FICHIER.csv\n"
    "\n"
    "Importe un fichier de cavaliers : la liste des licenciés téléchargée\n"
    "depuis l'espace club FFE, ou l'export des clients d'un autre logiciel.\n"
    "Les personnes déjà connues sont reconnues et mises à jour, sans doublon.\n"
    "\n"
    "  --dry-run   aperçu : compte ce qui serait créé, mis à jour, mis de\n"
    "              côté ou rejeté, sans rien modifier\n"
    "  --replace   « Remplacer les données » : une valeur non vide du fichier\n"
    "              remplace celle déjà connue (par défaut, le fichier ne fait\n"
    "              que compléter les champs vides et mettre à jour la licence)\n"
    "  --format    format du fichier (défaut : auto, reconnu d'après l'en-tête)\n"
    "  --json      affiche le résultat en JSON (created, updated, unchanged,\n"
    "              set_aside, rejected, run_id, ...)\n"
    "\n"
    "       licol import [--db FICHIER] --undo N\n"
    "\n"
    "  --undo N    annule l'import n° N (le dernier import seulement) : les\n"
    "              personnes créées sont supprimées et les valeurs modifiées\n"
    "              retrouvent leur état d'avant, sauf si quelqu'un a modifié\n"
    "              ces fiches depuis\n"
    "\n"
    "Codes de sortie : 0 import fait, 1 échec, 2 mauvaise utilisation,\n"
    "3 base inutilisable, 4 fichier refusé.\n";

struct progress_view {
    int tty;
    int last_percent;
};

static void show_progress(void *userdata, const struct import_progress *progress)
{
    struct progress_view *view = userdata;
    long long total = atomic_load(&progress->lines_total);
    long long done = atomic_load(&progress->lines_done);
    int percent = total > 0 ? (int)(done * 100 / total) : 0;
    char bar[41];

    if (!view->tty || percent == view->last_percent)
        return;
    view->last_percent = percent;
    for (int i = 0; i < 40; i++)
        bar[i] = i < percent * 40 / 100 ? '#' : '.';
    bar[40] = '\0';
    fprintf(stderr, "\r[%s] %3d %%  %ld lignes", bar, percent, atomic_load(&progress->rows));
    fflush(stderr);
}

static void print_summary(const struct import_options *options, int64_t run_id,
                          const struct import_counts *c, json_t *run)
{
    const char *format = json_string_value(json_object_get(run, "format_label"));
    const char *encoding = json_string_value(json_object_get(run, "encoding"));

    printf("%s n° %lld : %s (%s, %s)\n", options->dry_run ? "Aperçu de l'import" : "Import",
           (long long)run_id, options->filename, format ? format : "?",
           encoding ? encoding : "?");
    printf("  %ld ligne%s lue%s\n", c->rows, c->rows > 1 ? "s" : "", c->rows > 1 ? "s" : "");
    printf("  %ld personne%s %s\n", c->created, c->created > 1 ? "s" : "",
           options->dry_run ? "à créer" : (c->created > 1 ? "créées" : "créée"));
    printf("  %ld personne%s %s\n", c->updated, c->updated > 1 ? "s" : "",
           options->dry_run ? "à mettre à jour" : (c->updated > 1 ? "mises à jour" : "mise à jour"));
    printf("  %ld personne%s inchangée%s\n", c->unchanged, c->unchanged > 1 ? "s" : "",
           c->unchanged > 1 ? "s" : "");
    printf("  %ld ligne%s mise%s de côté (à vérifier)\n", c->set_aside, c->set_aside > 1 ? "s" : "",
           c->set_aside > 1 ? "s" : "");
    printf("  %ld ligne%s rejetée%s\n", c->rejected, c->rejected > 1 ? "s" : "",
           c->rejected > 1 ? "s" : "");
    printf("  %ld avertissement%s\n", c->warnings, c->warnings > 1 ? "s" : "");
    if (options->dry_run)
        printf("Rien n'a été modifié. Relancez sans --dry-run pour importer.\n");
}

static int undo_import(const char *db_path, const char *config_path, int64_t run_id,
                       int json_output)
{
    struct config cfg;
    struct db *db;
    char *err = NULL;
    json_t *conflicts = NULL;
    int rc;

    if (cli_load_config(&cfg, config_path, &err) < 0 ||
        (db_path && config_set(&cfg, "db", db_path, &err) < 0)) {
        fprintf(stderr, "Erreur : %s\n", err);
        free(err);
        return CLI_USAGE;
    }
    db = cli_open_db(&cfg, 1);
    if (!db)
        return CLI_DATABASE;
    rc = import_undo(db, run_id, 0, &err, &conflicts);
    if (json_output) {
        json_t *out = json_pack("{s:I,s:b}", "run_id", (json_int_t)run_id, "undone", rc == 0);
        char *text;
        if (err)
            json_object_set_new(out, "error", json_string(err));
        if (conflicts)
            json_object_set(out, "conflicts", conflicts);
        text = json_dumps(out, JSON_INDENT(2));
        puts(text);
        free(text);
        json_decref(out);
    }
    if (rc < 0) {
        fprintf(stderr, "Erreur : %s\n", err);
    } else if (!json_output) {
        printf("Import n° %lld annulé.\n", (long long)run_id);
    }
    free(err);
    json_decref(conflicts);
    db_close(db);
    return rc < 0 ? CLI_FAILED : CLI_OK;
}

int cli_import(int argc, char **argv)
{
    static const struct option long_options[] = {
        {"db", required_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'},
        {"dry-run", no_argument, NULL, 'n'},
        {"replace", no_argument, NULL, 'r'},
        {"format", required_argument, NULL, 'f'},
        {"json", no_argument, NULL, 'j'},
        {"undo", required_argument, NULL, 'u'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct import_options options;
    struct import_progress progress;
    struct import_counts counts;
    struct progress_view view = {0, -1};
    struct script_config script_config;
    struct script_engine *engine = NULL;
    struct script_version *version = NULL;
    const char *db_path = NULL, *config_path = NULL, *path;
    struct config cfg;
    struct db *db = NULL;
    struct stat st;
    char *err = NULL;
    int json_output = 0, opt, file_rejected = 0, rc = CLI_FAILED;
    int64_t run_id, undo_id = 0;

    memset(&options, 0, sizeof(options));
    snprintf(options.format, sizeof(options.format), "auto");
    snprintf(options.source, sizeof(options.source), "cli");
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", long_options, NULL)) != -1) {
        switch (opt) {
        case 'd': db_path = optarg; break;
        case 'c': config_path = optarg; break;
        case 'n': options.dry_run = 1; break;
        case 'r': options.replace = 1; break;
        case 'f':
            if (strlen(optarg) >= sizeof(options.format) || strchr(optarg, '/')) {
                fprintf(stderr, "Erreur : format « %s » invalide.\n", optarg);
                return CLI_USAGE;
            }
            snprintf(options.format, sizeof(options.format), "%s", optarg);
            break;
        case 'j': json_output = 1; break;
        case 'u':
            undo_id = strtoll(optarg, NULL, 10);
            if (undo_id <= 0) {
                fprintf(stderr, "Erreur : numéro d'import « %s » invalide.\n", optarg);
                return CLI_USAGE;
            }
            break;
        case 'h': fputs(help, stdout); return CLI_OK;
        default: fputs(help, stderr); return CLI_USAGE;
        }
    }
    if (undo_id)
        return undo_import(db_path, config_path, undo_id, json_output);
    if (optind != argc - 1) {
        fputs(help, stderr);
        return CLI_USAGE;
    }
    path = argv[optind];
    {
        const char *base = strrchr(path, '/');
        snprintf(options.filename, sizeof(options.filename), "%s", base ? base + 1 : path);
    }

    if (cli_load_config(&cfg, config_path, &err) < 0 ||
        (db_path && config_set(&cfg, "db", db_path, &err) < 0)) {
        fprintf(stderr, "Erreur : %s\n", err);
        free(err);
        return CLI_USAGE;
    }
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "Erreur : le fichier %s est introuvable ou n'est pas un fichier.\n", path);
        return CLI_INPUT_REJECTED;
    }
    if ((size_t)st.st_size > cfg.max_upload) {
        fprintf(stderr, "Erreur : le fichier %s fait %lld octets, plus que la limite de %zu "
                        "octets (paramètre max_upload).\n",
                path, (long long)st.st_size, cfg.max_upload);
        return CLI_INPUT_REJECTED;
    }

    db = cli_open_db(&cfg, 1);
    if (!db)
        return CLI_DATABASE;
    import_recover_interrupted(db);
    /* A larger page cache for the bulk writes (SQLite's default is 2 MB). */
    db_exec(db, "PRAGMA cache_size = -16000");

    memset(&script_config, 0, sizeof(script_config));
    script_config.scripts_dir = cfg.scripts_dir;
    script_config.plugins_dir = cfg.plugins_dir;
    engine = script_engine_new(&script_config, &err);
    if (!engine) {
        fprintf(stderr, "Erreur : les scripts ne se chargent pas : %s\n", err);
        free(err);
        db_close(db);
        return CLI_FAILED;
    }
    version = script_engine_acquire(engine);
    {
        size_t count = 0;
        const struct script_migration *m = script_version_migrations(version, &count);
        for (size_t i = 0; i < count; i++) {
            if (migrate_apply_scoped(db, m[i].scope, m[i].number, m[i].name, m[i].sql, &err) < 0) {
                fprintf(stderr, "Erreur : %s\n", err);
                free(err);
                goto done;
            }
        }
    }

    run_id = import_run_create(db, path, &options, &err);
    if (run_id < 0) {
        fprintf(stderr, "Erreur : %s\n", err);
        free(err);
        goto done;
    }
    {
        sqlite3_stmt *stmt = db_stmt(db, "SELECT file_lines FROM import_run WHERE id = ?1");
        atomic_init(&progress.lines_done, 0);
        atomic_init(&progress.lines_total, 0);
        atomic_init(&progress.rows, 0);
        atomic_init(&progress.cancel, 0);
        sqlite3_bind_int64(stmt, 1, run_id);
        if (sqlite3_step(stmt) == SQLITE_ROW)
            atomic_store(&progress.lines_total, sqlite3_column_int64(stmt, 0));
        sqlite3_reset(stmt);
    }
    view.tty = !json_output && isatty(STDERR_FILENO);

    if (import_run_execute(db, script_version_state(version), run_id, path, &options, &progress,
                           show_progress, &view, &counts, &file_rejected, &err) < 0) {
        if (view.tty)
            fputs("\n", stderr);
        if (json_output) {
            json_t *out = json_pack("{s:I,s:s,s:s}", "run_id", (json_int_t)run_id, "state",
                                    "failed", "error", err);
            char *text = json_dumps(out, JSON_INDENT(2));
            puts(text);
            free(text);
            json_decref(out);
        }
        fprintf(stderr, "Erreur : %s\n", err);
        free(err);
        rc = file_rejected ? CLI_INPUT_REJECTED : CLI_FAILED;
        goto done;
    }
    if (view.tty)
        fputs("\n", stderr);

    {
        json_t *run = import_run_to_json(db, run_id);
        if (json_output) {
            json_t *out = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:b}", "run_id",
                                    (json_int_t)run_id, "rows", (json_int_t)counts.rows, "created",
                                    (json_int_t)counts.created, "updated",
                                    (json_int_t)counts.updated, "unchanged",
                                    (json_int_t)counts.unchanged, "set_aside",
                                    (json_int_t)counts.set_aside, "rejected",
                                    (json_int_t)counts.rejected, "warnings",
                                    (json_int_t)counts.warnings, "dry_run", options.dry_run);
            char *text;
            json_object_set(out, "format", json_object_get(run, "format"));
            json_object_set(out, "encoding", json_object_get(run, "encoding"));
            json_object_set(out, "separator", json_object_get(run, "separator"));
            json_object_set(out, "sha256", json_object_get(run, "sha256"));
            text = json_dumps(out, JSON_INDENT(2));
            puts(text);
            free(text);
            json_decref(out);
        } else {
            print_summary(&options, run_id, &counts, run);
        }
        json_decref(run);
    }
    rc = CLI_OK;

done:
    script_version_release(version);
    script_engine_stop(engine);
    script_engine_free(engine);
    db_close(db);
    return rc;
}
