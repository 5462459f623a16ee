/*
 * libFuzzer target for the CSV reader and the normalisers. The first byte
 * picks the reader options (small caps reach the error paths quickly); the
 * rest is the file. Every field of every record then goes through every
 * normaliser with several output sizes. Besides the sanitizers, the target
 * traps when a documented guarantee breaks: fields and normaliser output
 * must be valid UTF-8, NUL-terminated within the given size.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csvread.h"
#include "normalize.h"

/* Kept separate from the reader's own validator on purpose: a bug there must
 * not hide itself by being used as the oracle. */
static int utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < n) {
        unsigned char c = u[i];
        size_t need;
        unsigned char lo = 0x80, hi = 0xBF;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        } else {
            return 0;
        }
        for (size_t k = 1; k <= need; k++) {
            if (i + k >= n || u[i + k] < lo || u[i + k] > hi)
                return 0;
            lo = 0x80;
            hi = 0xBF;
        }
        i += need + 1;
    }
    return 1;
}

static void check_output(const char *out, size_t size)
{
    size_t len = strnlen(out, size);

    if (len >= size || !utf8_valid(out, len))
        __builtin_trap();
}

static void normalise_field(const char *field)
{
    static const size_t sizes[] = {1, 2, 5, 9, 64, 512};
    char out[512];
    char second[512];

    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        size_t size = sizes[i];

        norm_text(field, out, size);
        check_output(out, size);
        norm_fold(field, out, size, 0);
        check_output(out, size);
        norm_fold(field, out, size, 1);
        check_output(out, size);
        norm_name(field, out, size);
        check_output(out, size);
        norm_phone(field, out, size);
        check_output(out, size);
        norm_postcode(field, NULL, out, size);
        check_output(out, size);
        norm_postcode(field, "BE", out, size);
        check_output(out, size);
        norm_email(field, out, size, second, size);
        check_output(out, size);
        check_output(second, size);
        norm_date(field, out, size);
        check_output(out, size);
        norm_licence(field, out, size);
        check_output(out, size);
        norm_galop(field, out, size);
        check_output(out, size);
        norm_sex(field, out, size);
        check_output(out, size);
        norm_country(field, out, size);
        check_output(out, size);
    }
}

static int on_record(void *userdata, long record_no, long line_no, size_t nfields, char **fields,
                     const size_t *lengths)
{
    long *last_line = userdata;

    /* Records come in order and never start before the previous one. */
    if (record_no < 1 || line_no < *last_line)
        __builtin_trap();
    *last_line = line_no;
    for (size_t i = 0; i < nfields; i++) {
        if (strlen(fields[i]) != lengths[i] || !utf8_valid(fields[i], lengths[i]))
            __builtin_trap();
        normalise_field(fields[i]);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char separators[] = {0, ';', ',', '\t'};
    struct csvread_options options = {0};
    struct csvread_info info;
    long last_line = 0;
    char *err = NULL;
    int rc;

    if (size < 1)
        return 0;
    options.separator = separators[data[0] & 3];
    if (data[0] & 4)
        options.max_field = 64;
    if (data[0] & 8)
        options.max_fields = 4;

    rc = csvread_buffer((const char *)data + 1, size - 1, &options, on_record, &last_line, &info,
                        &err);
    if ((rc == -1) != (err != NULL))
        __builtin_trap();
    if (err && !utf8_valid(err, strlen(err)))
        __builtin_trap();
    free(err);
    return 0;
}
