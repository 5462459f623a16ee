/*
 * The licol command: subcommands serve, migrate, user, import and version.
 * Output meant for club administrators (help, summaries, errors) is French;
 * logs on stderr stay English. Exit codes are listed in usage() and in
 * docs/cli.md.
 */
#include "app.h"
#include "cli.h"
#include "config.h"
#include "db.h"
#include "log.h"
#include "migrate.h"
#include "password.h"
#include "util.h"

#include <getopt.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *out)
{
    fputs("Utilisation : licol COMMANDE [OPTIONS]\n"
          "\n"
          "Licol gère le fichier des cavaliers d'un centre équestre.\n"
          "\n"
          "Commandes :\n"
          "  serve     démarre le serveur web\n"
          "  migrate   met à jour le schéma de la base de données\n"
          "  user add  crée un compte (gérant, employé, ...)\n"
          "  import    importe un fichier de cavaliers (FFE, Céléris)\n"
          "  version   affiche la version\n"
          "\n"
          "Options communes :\n"
          "  --db FICHIER       base de données SQLite (défaut : var/licol.db)\n"
          "  --config FICHIER   fichier de configuration (défaut : etc/licol.conf)\n"
          "  --help             aide de la commande\n"
          "\n"
          "Codes de sortie : 0 succès, 1 échec, 2 mauvaise utilisation,\n"
          "3 base de données inutilisable, 4 fichier importé refusé.\n"
          "\n"
          "Aide détaillée : licol COMMANDE --help, et docs/cli.md.\n",
          out);
}

/* Parses the options every command shares. Returns 0, 2 on a usage error,
 * or -1 when --help was printed. */
static int parse_common(int argc, char **argv, const char *help, struct config *cfg,
                        int allow_listen)
{
    static const struct option options[] = {
        {"db", required_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'},
        {"listen", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *db = NULL, *listen = NULL;
    char *err = NULL;
    int opt;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'd': db = optarg; break;
        case 'c': config_path = optarg; break;
        case 'l':
            if (!allow_listen)
                goto bad;
            listen = optarg;
            break;
        case 'h': fputs(help, stdout); return -1;
        default: goto bad;
        }
    }
    if (optind < argc)
        goto bad;
    if (cli_load_config(cfg, config_path, &err) < 0 ||
        (db && config_set(cfg, "db", db, &err) < 0) ||
        (listen && config_set_listen(cfg, listen, &err) < 0)) {
        fprintf(stderr, "Erreur : %s\n", err);
        free(err);
        return 2;
    }
    return 0;
bad:
    fputs(help, stderr);
    return 2;
}

static int cmd_serve(int argc, char **argv)
{
    static const char help[] =
        "Utilisation : licol serve [--db FICHIER] [--listen HÔTE:PORT] [--config FICHIER]\n"
        "\n"
        "Démarre le serveur web (par défaut sur http://127.0.0.1:8080).\n"
        "Au premier démarrage, un compte gérant est créé et son mot de passe\n"
        "à usage unique est affiché.\n"
        "Signaux : SIGTERM ou SIGINT arrêtent proprement le serveur, SIGHUP\n"
        "recharge la configuration et les scripts.\n";
    struct config cfg;
    int rc = parse_common(argc, argv, help, &cfg, 1);

    if (rc)
        return rc < 0 ? 0 : rc;
    return app_serve(&cfg) == 0 ? 0 : 1;
}

static int cmd_migrate(int argc, char **argv)
{
    static const char help[] = "Utilisation : licol migrate [--db FICHIER] [--config FICHIER]\n"
                               "\n"
                               "Applique les migrations de schéma en attente. Une base plus\n"
                               "récente que ce programme est refusée sans être modifiée.\n";
    struct config cfg;
    struct db *db;
    char *err = NULL;
    int applied;
    int rc = parse_common(argc, argv, help, &cfg, 0);

    if (rc)
        return rc < 0 ? 0 : rc;
    db = cli_open_db(&cfg, 0);
    if (!db)
        return 3;
    applied = migrate_apply(db, &err);
    if (applied < 0) {
        fprintf(stderr, "Erreur : %s\n", err);
        free(err);
        db_close(db);
        return 3;
    }
    printf("Base %s : schéma %d (%d migration%s appliquée%s).\n", cfg.db_path,
           migrate_current_version(db), applied, applied > 1 ? "s" : "", applied > 1 ? "s" : "");
    db_close(db);
    return 0;
}

static const char *const ROLES[] = {"gerant", "employe", "client", "visiteur", "comptable",
                                    "proprietaire"};

static int cmd_user(int argc, char **argv)
{
    static const char help[] =
        "Utilisation : licol user add --email ADRESSE --role RÔLE [--db FICHIER]\n"
        "                             [--nom NOM] [--prenom PRÉNOM] [--password-stdin]\n"
        "\n"
        "Crée un compte. RÔLE : gerant, employe, client, visiteur, comptable ou\n"
        "proprietaire. Sans --password-stdin, un mot de passe à usage unique est\n"
        "généré et affiché ; il devra être changé à la première connexion.\n"
        "Avec --password-stdin, le mot de passe est lu sur l'entrée standard.\n";
    static const struct option options[] = {
        {"db", required_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'},
        {"email", required_argument, NULL, 'e'},
        {"role", required_argument, NULL, 'r'},
        {"nom", required_argument, NULL, 'n'},
        {"prenom", required_argument, NULL, 'p'},
        {"password-stdin", no_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *db_path = NULL, *config_path = NULL, *email = NULL, *role = NULL;
    const char *last_name = "", *first_name = "";
    int from_stdin = 0, opt, role_ok = 0, must_change = 1;
    char password[PASSWORD_MAX_LENGTH + 2], hash[PASSWORD_HASH_SIZE], now[32];
    struct config cfg;
    struct db *db;
    sqlite3_stmt *stmt;
    sqlite3_int64 person_id;
    char *err = NULL;

    if (argc < 2 || strcmp(argv[1], "add") != 0) {
        fputs(argc >= 2 && !strcmp(argv[1], "--help") ? help : help, argc >= 2 ? stdout : stderr);
        return argc >= 2 && !strcmp(argv[1], "--help") ? 0 : 2;
    }
    argc--;
    argv++;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'd': db_path = optarg; break;
        case 'c': config_path = optarg; break;
        case 'e': email = optarg; break;
        case 'r': role = optarg; break;
        case 'n': last_name = optarg; break;
        case 'p': first_name = optarg; break;
        case 's': from_stdin = 1; break;
        case 'h': fputs(help, stdout); return 0;
        default: fputs(help, stderr); return 2;
        }
    }
    if (!email || !role || optind < argc) {
        fputs(help, stderr);
        return 2;
    }
    for (size_t i = 0; i < sizeof(ROLES) / sizeof(ROLES[0]); i++)
        role_ok |= strcmp(role, ROLES[i]) == 0;
    if (!role_ok) {
        fprintf(stderr, "Erreur : rôle « %s » inconnu. Rôles possibles : gerant, employe, "
                        "client, visiteur, comptable, proprietaire.\n",
                role);
        return 2;
    }
    if (!strchr(email, '@')) {
        fprintf(stderr, "Erreur : « %s » n'est pas une adresse e-mail.\n", email);
        return 2;
    }
    if (from_stdin) {
        if (!fgets(password, sizeof(password), stdin)) {
            fputs("Erreur : aucun mot de passe reçu sur l'entrée standard.\n", stderr);
            return 2;
        }
        password[strcspn(password, "\r\n")] = '\0';
        if (password_check_strength(password)) {
            fprintf(stderr, "Erreur : %s\n", password_check_strength(password));
            return 2;
        }
        must_change = 0;
    } else {
        password_generate(password, sizeof(password));
    }
    if (cli_load_config(&cfg, config_path, &err) < 0 ||
        (db_path && config_set(&cfg, "db", db_path, &err) < 0)) {
        fprintf(stderr, "Erreur : %s\n", err);
        free(err);
        return 2;
    }
    db = cli_open_db(&cfg, 1);
    if (!db)
        return 3;
    if (password_hash(password, hash) < 0) {
        fputs("Erreur : mémoire insuffisante pour chiffrer le mot de passe.\n", stderr);
        db_close(db);
        return 1;
    }
    db_now(now, sizeof(now));
    if (db_begin(db) != SQLITE_OK)
        goto db_error;
    stmt = db_stmt(db, "SELECT id FROM person WHERE email = ?1 AND password_hash IS NOT NULL");
    sqlite3_bind_text(stmt, 1, email, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) == SQLITE_ROW) {
        fprintf(stderr, "Erreur : un compte existe déjà avec l'adresse %s.\n", email);
        db_rollback(db);
        db_close(db);
        return 1;
    }
    stmt = db_stmt(db, "INSERT INTO person (last_name, first_name, email, password_hash,"
                       " must_change_password, search_text, created_at, updated_at)"
                       " VALUES (?1, ?2, ?3, ?4, ?5, lower(?1 || ' ' || ?2 || ' ' || ?3), ?6, ?6)");
    sqlite3_bind_text(stmt, 1, last_name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, first_name, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, email, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 4, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int(stmt, 5, must_change);
    sqlite3_bind_text(stmt, 6, now, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        goto db_error;
    person_id = sqlite3_last_insert_rowid(db_handle(db));
    stmt = db_stmt(db, "INSERT INTO person_role (person_id, role) VALUES (?1, ?2)");
    sqlite3_bind_int64(stmt, 1, person_id);
    sqlite3_bind_text(stmt, 2, role, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE)
        goto db_error;
    stmt = db_stmt(db, "INSERT INTO audit_log (at, person_id, action, field, new_value)"
                       " VALUES (?1, ?2, 'create', 'role', ?3)");
    sqlite3_bind_text(stmt, 1, now, -1, SQLITE_STATIC);
    sqlite3_bind_int64(stmt, 2, person_id);
    sqlite3_bind_text(stmt, 3, role, -1, SQLITE_STATIC);
    if (sqlite3_step(stmt) != SQLITE_DONE || db_commit(db) != SQLITE_OK)
        goto db_error;

    printf("Compte créé : %s (rôle %s).\n", email, role);
    if (!from_stdin)
        printf("Mot de passe à usage unique : %s\n"
               "Il devra être changé à la première connexion.\n",
               password);
    sodium_memzero(password, sizeof(password));
    db_close(db);
    return 0;

db_error:
    fprintf(stderr, "Erreur : impossible de créer le compte : %s\n",
            sqlite3_errmsg(db_handle(db)));
    db_rollback(db);
    db_close(db);
    return 1;
}

int main(int argc, char **argv)
{
    const char *command = argc > 1 ? argv[1] : NULL;

    setvbuf(stdout, NULL, _IOLBF, 0);
    if (sodium_init() < 0) {
        fputs("Erreur : la bibliothèque libsodium n'a pas pu démarrer.\n", stderr);
        return 1;
    }
    if (!command || !strcmp(command, "--help") || !strcmp(command, "-h") ||
        !strcmp(command, "help")) {
        usage(command ? stdout : stderr);
        return command ? 0 : 2;
    }
    if (!strcmp(command, "version") || !strcmp(command, "--version")) {
        printf("licol %s (schéma %d, SQLite %s, libuv %s, Lua 5.4)\n", LICOL_VERSION,
               migrate_latest_version(), sqlite3_libversion(), uv_version_string());
        return 0;
    }
    if (!strcmp(command, "serve"))
        return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(command, "migrate"))
        return cmd_migrate(argc - 1, argv + 1);
    if (!strcmp(command, "user"))
        return cmd_user(argc - 1, argv + 1);
    if (!strcmp(command, "import"))
        return cli_import(argc - 1, argv + 1);
    fprintf(stderr, "Commande inconnue « %s ».\n\n", command);
    usage(stderr);
    return 2;
}
