/*
 * Streaming CSV reader for the files clubs import. It detects the encoding
 * (UTF-8 with or without BOM, UTF-16 with BOM, otherwise Windows-1252) and
 * the separator (';', ',' or tab, sniffed from the header line), converts
 * everything to UTF-8, and hands each record to a callback as an array of
 * NUL-terminated fields. Quoted fields with separators, quotes and line
 * breaks inside are parsed by libcsv. CRLF, LF and CR-only line ends are
 * accepted. Memory stays bounded whatever the file size: one record at a
 * time, each field capped.
 *
 * Encoding: a file without BOM is UTF-8 when its first 64 KiB are valid
 * UTF-8, else Windows-1252. Invalid bytes met later in a UTF-8 file are
 * decoded as Windows-1252 (a warning is logged). The five bytes that
 * Windows-1252 leaves undefined, and lone UTF-16 surrogates, become U+FFFD
 * and are counted in csvread_info.replaced.
 *
 * Records: blank lines and rows whose fields are all empty (";;;") are
 * skipped; rows with more or fewer fields than the header are delivered as
 * they are. Unquoted fields lose their leading and trailing spaces.
 *
 * Errors (binary data, a NUL byte, a misplaced or unterminated quote, a
 * field or a record over its cap) stop the read and produce a French
 * message naming the line and, where known, the column, for the club's
 * staff. Quoting is strict: a quote inside an unquoted field, or text after
 * a closing quote, is an error rather than a guess.
 */
#ifndef LICOL_CSVREAD_H
#define LICOL_CSVREAD_H

#include <stddef.h>

#define CSVREAD_DEFAULT_MAX_FIELD (64 * 1024) /* bytes of one field, after conversion */
#define CSVREAD_DEFAULT_MAX_FIELDS 256        /* fields in one record */

struct csvread_options {
    size_t max_field;  /* 0 = CSVREAD_DEFAULT_MAX_FIELD */
    size_t max_fields; /* 0 = CSVREAD_DEFAULT_MAX_FIELDS */
    char separator;    /* 0 = sniff from the first record; ';' when it has no separator */
};

struct csvread_info {
    char encoding[16]; /* "utf-8", "utf-8-bom", "utf-16le", "utf-16be", "windows-1252" */
    char separator;    /* the separator used */
    long records;      /* records delivered, header included */
    long long bytes;   /* bytes read from the input */
    long replaced;     /* characters replaced by U+FFFD: bytes undefined in Windows-1252
                        * (0x81, 0x8D, 0x8F, 0x90, 0x9D) and lone UTF-16 surrogates */
};

/* One record. record_no counts records from 1 (the header); line_no is the
 * physical line where the record starts, 1-based, as a spreadsheet shows it.
 * fields[i] is valid UTF-8 with a NUL at lengths[i]; the arrays are valid
 * only during the call. Return 0 to go on, non-zero to stop (the read then
 * returns that value). */
typedef int (*csvread_row_cb)(void *userdata, long record_no, long line_no, size_t nfields,
                              char **fields, const size_t *lengths);

/* Reads the file at path. Returns 0 when the whole file was read, the
 * callback's non-zero value when it stopped, or -1 on an error with *err set
 * to a French message (caller frees). info may be NULL. */
int csvread_file(const char *path, const struct csvread_options *options, csvread_row_cb cb,
                 void *userdata, struct csvread_info *info, char **err);

/* Same as csvread_file on a memory buffer (used by tests and the fuzzer). */
int csvread_buffer(const char *data, size_t len, const struct csvread_options *options,
                   csvread_row_cb cb, void *userdata, struct csvread_info *info, char **err);

#endif
