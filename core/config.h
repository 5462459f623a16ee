/*
 * Configuration: built-in defaults, then a file of "key = value" lines
 * (etc/licol.conf), then environment variables LICOL_<KEY> (upper case),
 * then command-line flags. Each later source overrides the earlier ones.
 * docs/configuration.md lists every key.
 */
#ifndef LICOL_CONFIG_H
#define LICOL_CONFIG_H

#include <stddef.h>

struct config {
    char listen_host[64];
    int listen_port;
    char db_path[1024];
    char var_dir[1024];     /* uploads, reports, rejected rows */
    char web_dir[1024];     /* static assets of the staff interface */
    char scripts_dir[1024];
    char plugins_dir[1024];
    char log_level[16];
    char public_url[512];   /* base of links in e-mails, e.g. https://club.example.fr */
    char club_name[256];
    char admin_email[256];  /* manager account created on first start */

    size_t max_body;        /* bytes */
    size_t max_upload;      /* bytes */
    unsigned max_connections;
    unsigned header_timeout_ms;
    unsigned body_timeout_ms;
    unsigned idle_timeout_ms;
    unsigned shutdown_grace_ms;
    int cookie_secure;      /* 1: session cookie marked Secure (behind TLS) */
    char trusted_proxy[64]; /* address of the reverse proxy whose X-Forwarded-For is believed */

    char smtp_url[512];
    char smtp_user[256];
    char smtp_password[256];
    char mail_from[256];
    char mail_from_name[256];
    double mail_rate_per_second;
    int mail_max_attempts;

    char fetch_schedule[64];   /* "" (off), "daily HH:MM", "every N hours|minutes|seconds" */
    char fetch_url[1024];
    char fetch_user[256];
    char fetch_password[256];
    size_t fetch_max_bytes;
    unsigned fetch_connect_timeout_ms;
    unsigned fetch_timeout_ms;      /* whole transfer, connection included */
    int fetch_retries;              /* attempts after the first one */
    unsigned fetch_retry_delay_ms;  /* before the first retry; doubles at each one */
    int fetch_insecure_tls;         /* 1: do not verify the server's certificate (dangerous) */
    char fetch_ca_file[1024];       /* CA bundle to trust; "" = the system's */

    char config_path[1024]; /* the file that was read, "" when none */
};

/* Fills defaults relative to base_dir (the source tree or the install). */
void config_defaults(struct config *cfg, const char *base_dir);

/* Reads path. A missing file is an error only when required. Returns 0, or
 * -1 with *err set to a French message naming the line (caller frees). */
int config_load_file(struct config *cfg, const char *path, int required, char **err);

/* Applies LICOL_<KEY> environment variables. Returns 0 or -1 with *err. */
int config_load_env(struct config *cfg, char **err);

/* Sets one key from text (used by the file, the environment and flags).
 * Returns 0, or -1 with *err naming the key and the expected value. */
int config_set(struct config *cfg, const char *key, const char *value, char **err);

/* Parses "host:port" or ":port" or "[v6]:port" into the listen fields. */
int config_set_listen(struct config *cfg, const char *value, char **err);

#endif
