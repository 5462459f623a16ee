/*
 * Small helpers shared by every module: formatted allocation and a growable
 * byte buffer with a hard cap.
 */
#ifndef LICOL_UTIL_H
#define LICOL_UTIL_H

#include <stdarg.h>
#include <stddef.h>

/* Returns a newly allocated formatted string, or NULL when out of memory. */
char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *str_vprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* Growable buffer. Appends past max (0 = unbounded) fail with -1 and leave
 * the content unchanged, so a cap is an ordinary error, never a crash. */
struct buf {
    char *data;
    size_t len;
    size_t cap;
    size_t max;
};

void buf_init(struct buf *b, size_t max);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_appendz(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Makes data NUL-terminated without counting the NUL in len. */
int buf_terminate(struct buf *b);

#endif
