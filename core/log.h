/*
 * Logging: one line per event on standard error, in the form
 *
 *   2026-12-04T19:50:00.123Z INFO  http: listening on 127.0.0.1:8080
 *   2026-12-04T19:50:01.002Z WARN  db: busy, retrying [core/db.c:88]
 *
 * Levels below the threshold cost one comparison: the macros skip evaluating
 * their arguments. WARN and above carry the source file and line. Logs are
 * for developers and integrators, so they are written in English; messages
 * for club staff go through the HTTP and CLI layers in French.
 *
 * Never pass a password, a token or a full personal record to these macros.
 */
#ifndef LICOL_LOG_H
#define LICOL_LOG_H

enum log_level { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3, LOG_OFF = 4 };

extern enum log_level log_threshold;

/* Sets the threshold from a name ("debug", "info", "warn", "error", "off").
 * Returns 0, or -1 when the name is unknown (the threshold is unchanged). */
int log_set_level(const char *name);

void log_write(enum log_level level, const char *module, const char *file, int line,
               const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#define LOG_AT(level, module, ...)                                                                 \
    do {                                                                                           \
        if ((level) >= log_threshold)                                                              \
            log_write((level), (module), __FILE__, __LINE__, __VA_ARGS__);                         \
    } while (0)

#define log_debug(module, ...) LOG_AT(LOG_DEBUG, module, __VA_ARGS__)
#define log_info(module, ...) LOG_AT(LOG_INFO, module, __VA_ARGS__)
#define log_warn(module, ...) LOG_AT(LOG_WARN, module, __VA_ARGS__)
#define log_error(module, ...) LOG_AT(LOG_ERROR, module, __VA_ARGS__)

#endif
