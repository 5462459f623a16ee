/*
 * Configuration keys are described once in the table below: name, type and
 * where the value lives in struct config. The file, the environment and the
 * flags all go through config_set().
 */
#include "config.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum key_type { KEY_STRING, KEY_INT, KEY_SIZE, KEY_UINT, KEY_DOUBLE, KEY_BOOL };

struct key_def {
    const char *name;
    enum key_type type;
    size_t offset;
    size_t size; /* for strings: the buffer size */
};

#define STR(field) KEY_STRING, offsetof(struct config, field), sizeof(((struct config *)0)->field)
#define NUM(type, field) type, offsetof(struct config, field), 0

static const struct key_def keys[] = {
    {"listen_host", STR(listen_host)},
    {"listen_port", NUM(KEY_INT, listen_port)},
    {"db", STR(db_path)},
    {"var_dir", STR(var_dir)},
    {"web_dir", STR(web_dir)},
    {"scripts_dir", STR(scripts_dir)},
    {"plugins_dir", STR(plugins_dir)},
    {"log_level", STR(log_level)},
    {"public_url", STR(public_url)},
    {"club_name", STR(club_name)},
    {"admin_email", STR(admin_email)},
    {"max_body", NUM(KEY_SIZE, max_body)},
    {"max_upload", NUM(KEY_SIZE, max_upload)},
    {"max_connections", NUM(KEY_UINT, max_connections)},
    {"header_timeout_ms", NUM(KEY_UINT, header_timeout_ms)},
    {"body_timeout_ms", NUM(KEY_UINT, body_timeout_ms)},
    {"idle_timeout_ms", NUM(KEY_UINT, idle_timeout_ms)},
    {"shutdown_grace_ms", NUM(KEY_UINT, shutdown_grace_ms)},
    {"cookie_secure", NUM(KEY_BOOL, cookie_secure)},
    {"trusted_proxy", STR(trusted_proxy)},
    {"smtp_url", STR(smtp_url)},
    {"smtp_user", STR(smtp_user)},
    {"smtp_password", STR(smtp_password)},
    {"mail_from", STR(mail_from)},
    {"mail_from_name", STR(mail_from_name)},
    {"mail_rate_per_second", NUM(KEY_DOUBLE, mail_rate_per_second)},
    {"mail_max_attempts", NUM(KEY_INT, mail_max_attempts)},
    {"fetch_schedule", STR(fetch_schedule)},
    {"fetch_url", STR(fetch_url)},
    {"fetch_user", STR(fetch_user)},
    {"fetch_password", STR(fetch_password)},
    {"fetch_max_bytes", NUM(KEY_SIZE, fetch_max_bytes)},
    {"fetch_connect_timeout_ms", NUM(KEY_UINT, fetch_connect_timeout_ms)},
    {"fetch_timeout_ms", NUM(KEY_UINT, fetch_timeout_ms)},
    {"fetch_retries", NUM(KEY_INT, fetch_retries)},
    {"fetch_retry_delay_ms", NUM(KEY_UINT, fetch_retry_delay_ms)},
    {"fetch_insecure_tls", NUM(KEY_BOOL, fetch_insecure_tls)},
    {"fetch_ca_file", STR(fetch_ca_file)},
};

void config_defaults(struct config *cfg, const char *base_dir)
{
    memset(cfg, 0, sizeof(*cfg));
    snprintf(cfg->listen_host, sizeof(cfg->listen_host), "127.0.0.1");
    cfg->listen_port = 8080;
    snprintf(cfg->var_dir, sizeof(cfg->var_dir), "%s/var", base_dir);
    snprintf(cfg->db_path, sizeof(cfg->db_path), "%s/var/licol.db", base_dir);
    snprintf(cfg->web_dir, sizeof(cfg->web_dir), "%s/web", base_dir);
    snprintf(cfg->scripts_dir, sizeof(cfg->scripts_dir), "%s/scripts", base_dir);
    snprintf(cfg->plugins_dir, sizeof(cfg->plugins_dir), "%s/plugins", base_dir);
    snprintf(cfg->log_level, sizeof(cfg->log_level), "info");
    snprintf(cfg->public_url, sizeof(cfg->public_url), "http://127.0.0.1:8080");
    snprintf(cfg->club_name, sizeof(cfg->club_name), "Centre équestre");
    snprintf(cfg->admin_email, sizeof(cfg->admin_email), "gerant@club.invalid");
    cfg->max_body = 1024 * 1024;
    cfg->max_upload = 100 * 1024 * 1024;
    cfg->max_connections = 1024;
    cfg->header_timeout_ms = 10000;
    cfg->body_timeout_ms = 30000;
    cfg->idle_timeout_ms = 60000;
    cfg->shutdown_grace_ms = 10000;
    snprintf(cfg->smtp_url, sizeof(cfg->smtp_url), "smtp://127.0.0.1:25");
    snprintf(cfg->mail_from, sizeof(cfg->mail_from), "licol@club.invalid");
    snprintf(cfg->mail_from_name, sizeof(cfg->mail_from_name), "Centre équestre");
    cfg->mail_rate_per_second = 20;
    cfg->mail_max_attempts = 8;
    cfg->fetch_max_bytes = 200 * 1024 * 1024;
    cfg->fetch_connect_timeout_ms = 30000;
    cfg->fetch_timeout_ms = 600000;
    cfg->fetch_retries = 3;
    cfg->fetch_retry_delay_ms = 60000;
}

/* Parses a size with an optional K, M or G suffix (powers of 1024). */
static int parse_size(const char *text, size_t *out)
{
    char *end;
    unsigned long long value;

    errno = 0;
    value = strtoull(text, &end, 10);
    if (errno || end == text)
        return -1;
    switch (toupper((unsigned char)*end)) {
    case 'K': value *= 1024ULL; end++; break;
    case 'M': value *= 1024ULL * 1024; end++; break;
    case 'G': value *= 1024ULL * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end)
        return -1;
    *out = (size_t)value;
    return 0;
}

int config_set(struct config *cfg, const char *key, const char *value, char **err)
{
    const struct key_def *def = NULL;
    char *base = (char *)cfg;
    char *end;
    long long number;

    if (strcmp(key, "listen") == 0)
        return config_set_listen(cfg, value, err);
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (strcmp(keys[i].name, key) == 0) {
            def = &keys[i];
            break;
        }
    }
    if (!def) {
        *err = str_printf("Paramètre inconnu « %s ». La liste des paramètres est dans "
                          "docs/configuration.md.",
                          key);
        return -1;
    }
    switch (def->type) {
    case KEY_STRING:
        if (strlen(value) >= def->size) {
            *err = str_printf("La valeur de « %s » est trop longue (%zu caractères au plus).",
                              key, def->size - 1);
            return -1;
        }
        memcpy(base + def->offset, value, strlen(value) + 1);
        return 0;
    case KEY_SIZE:
        if (parse_size(value, (size_t *)(base + def->offset)) < 0)
            goto invalid_number;
        return 0;
    case KEY_DOUBLE: {
        double d = strtod(value, &end);
        if (end == value || *end || d < 0)
            goto invalid_number;
        *(double *)(base + def->offset) = d;
        return 0;
    }
    case KEY_BOOL:
        if (!strcmp(value, "1") || !strcasecmp(value, "true") || !strcasecmp(value, "oui") ||
            !strcasecmp(value, "yes") || !strcasecmp(value, "on")) {
            *(int *)(base + def->offset) = 1;
        } else if (!strcmp(value, "0") || !strcasecmp(value, "false") ||
                   !strcasecmp(value, "non") || !strcasecmp(value, "no") ||
                   !strcasecmp(value, "off")) {
            *(int *)(base + def->offset) = 0;
        } else {
            *err = str_printf("La valeur de « %s » doit être oui ou non (reçu « %s »).", key,
                              value);
            return -1;
        }
        return 0;
    case KEY_INT:
    case KEY_UINT:
        errno = 0;
        number = strtoll(value, &end, 10);
        if (errno || end == value || *end || number < 0 || number > INT_MAX)
            goto invalid_number;
        if (def->type == KEY_INT)
            *(int *)(base + def->offset) = (int)number;
        else
            *(unsigned *)(base + def->offset) = (unsigned)number;
        return 0;
    }
invalid_number:
    *err = str_printf("La valeur de « %s » doit être un nombre positif (reçu « %s »).", key,
                      value);
    return -1;
}

int config_set_listen(struct config *cfg, const char *value, char **err)
{
    const char *colon = strrchr(value, ':');
    char host[64];
    char *end;
    long port;
    size_t host_len;

    if (!colon) {
        *err = str_printf("Adresse d'écoute « %s » invalide : attendu HÔTE:PORT, par exemple "
                          "127.0.0.1:8080.",
                          value);
        return -1;
    }
    host_len = (size_t)(colon - value);
    if (value[0] == '[' && host_len >= 2 && value[host_len - 1] == ']') {
        value++;
        host_len -= 2;
    }
    if (host_len >= sizeof(host)) {
        *err = str_printf("Adresse d'écoute « %s » trop longue.", value);
        return -1;
    }
    memcpy(host, value, host_len);
    host[host_len] = '\0';
    port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535) {
        *err = str_printf("Port « %s » invalide : attendu un nombre entre 0 et 65535.",
                          colon + 1);
        return -1;
    }
    snprintf(cfg->listen_host, sizeof(cfg->listen_host), "%s", host_len ? host : "127.0.0.1");
    cfg->listen_port = (int)port;
    return 0;
}

static char *trim(char *s)
{
    char *end;

    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

int config_load_file(struct config *cfg, const char *path, int required, char **err)
{
    FILE *f = fopen(path, "r");
    char line[2048];
    int line_no = 0;

    *err = NULL;
    if (!f) {
        if (!required && errno == ENOENT)
            return 0;
        *err = str_printf("Impossible de lire le fichier de configuration %s : %s.", path,
                          strerror(errno));
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        char *text, *eq, *key, *value;
        char *sub_err = NULL;

        line_no++;
        text = trim(line);
        if (*text == '\0' || *text == '#' || *text == ';')
            continue;
        eq = strchr(text, '=');
        if (!eq) {
            *err = str_printf("%s, ligne %d : attendu « clé = valeur ».", path, line_no);
            fclose(f);
            return -1;
        }
        *eq = '\0';
        key = trim(text);
        value = trim(eq + 1);
        if (value[0] == '"' && strlen(value) >= 2 && value[strlen(value) - 1] == '"') {
            value[strlen(value) - 1] = '\0';
            value++;
        }
        if (config_set(cfg, key, value, &sub_err) < 0) {
            *err = str_printf("%s, ligne %d : %s", path, line_no, sub_err);
            free(sub_err);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    snprintf(cfg->config_path, sizeof(cfg->config_path), "%s", path);
    return 0;
}

int config_load_env(struct config *cfg, char **err)
{
    char name[96];

    *err = NULL;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const char *value;
        size_t j;

        snprintf(name, sizeof(name), "LICOL_%s", keys[i].name);
        for (j = 6; name[j]; j++)
            name[j] = (char)toupper((unsigned char)name[j]);
        value = getenv(name);
        if (value && config_set(cfg, keys[i].name, value, err) < 0) {
            char *wrapped = str_printf("Variable d'environnement %s : %s", name, *err);
            free(*err);
            *err = wrapped;
            return -1;
        }
    }
    return 0;
}
