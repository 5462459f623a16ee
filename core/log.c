/*
 * Line-oriented logger. Each call formats the whole line into one buffer and
 * writes it with a single write(2), so lines from the import worker thread
 * and the loop thread never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

enum log_level log_threshold = LOG_INFO;

static const char *level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

int log_set_level(const char *name)
{
    static const char *names[] = {"debug", "info", "warn", "error", "off"};

    for (int i = 0; i < 5; i++) {
        if (strcasecmp(name, names[i]) == 0) {
            log_threshold = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

void log_write(enum log_level level, const char *module, const char *file, int line,
               const char *fmt, ...)
{
    char buf[4096];
    struct timespec now;
    struct tm tm;
    size_t len;
    int n;
    va_list ap;

    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    len = strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    n = snprintf(buf + len, sizeof(buf) - len, ".%03ldZ %-5s %s: ", now.tv_nsec / 1000000L,
                 level_names[level], module);
    len += (size_t)n;

    va_start(ap, fmt);
    n = vsnprintf(buf + len, sizeof(buf) - len, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    len += (size_t)n;
    if (len > sizeof(buf) - 80)
        len = sizeof(buf) - 80; /* truncated message: keep room for the location */

    if (level >= LOG_WARN) {
        const char *src = strstr(file, "core/");
        n = snprintf(buf + len, sizeof(buf) - len, " [%s:%d]", src ? src : file, line);
        len += (size_t)n;
    }
    buf[len++] = '\n';

    ssize_t written = write(STDERR_FILENO, buf, len);
    (void)written; /* nothing sensible to do when stderr is gone */
}
