/* Unit tests for the CSV reader: the sample exports, encodings, line ends,
 * quoting, every rejected input with its French message, and bounded memory
 * on a large file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "csvread.h"

#define KEPT_RECORDS 16

/* Records seen by the callback: all are counted, the first few kept as
 * "field|field|..." with their line numbers. */
struct collected {
    long count;
    long last_record_no;
    char *joined[KEPT_RECORDS];
    long lines[KEPT_RECORDS];
    size_t nfields[KEPT_RECORDS];
    int contains_coeur;
    int stop_at; /* record number at which the callback returns 7 */
};

static int collect(void *userdata, long record_no, long line_no, size_t nfields, char **fields,
                   const size_t *lengths)
{
    struct collected *c = userdata;

    c->count++;
    c->last_record_no = record_no;
    for (size_t i = 0; i < nfields; i++) {
        assert_int_equal(strlen(fields[i]), lengths[i]);
        if (strstr(fields[i], "C\xC5\x93ur"))
            c->contains_coeur = 1;
    }
    if (c->count <= KEPT_RECORDS) {
        size_t total = 1;
        char *s;

        for (size_t i = 0; i < nfields; i++)
            total += lengths[i] + 1;
        s = calloc(1, total);
        assert_non_null(s);
        for (size_t i = 0; i < nfields; i++) {
            if (i)
                strcat(s, "|");
            strcat(s, fields[i]);
        }
        c->joined[c->count - 1] = s;
        c->lines[c->count - 1] = line_no;
        c->nfields[c->count - 1] = nfields;
    }
    return c->stop_at && record_no == c->stop_at ? 7 : 0;
}

static void collected_free(struct collected *c)
{
    for (int i = 0; i < KEPT_RECORDS; i++)
        free(c->joined[i]);
    memset(c, 0, sizeof(*c));
}

static int read_text(const char *data, size_t len, struct collected *c, struct csvread_info *info,
                     char **err)
{
    memset(c, 0, sizeof(*c));
    return csvread_buffer(data, len, NULL, collect, c, info, err);
}

static char *sample_path(const char *name)
{
    const char *shared = getenv("LICOL_SHARED_DIR");
    char *path = NULL;

    assert_true(asprintf(&path, "%s/samples/%s", shared ? shared : "/work/shared", name) > 0);
    return path;
}

static void check_sample(const char *name, long records, const char *encoding, char separator)
{
    char *path = sample_path(name);
    struct collected c = {0};
    struct csvread_info info;
    char *err = NULL;

    assert_int_equal(csvread_file(path, NULL, collect, &c, &info, &err), 0);
    assert_null(err);
    assert_int_equal(c.count, records);
    assert_int_equal(info.records, records);
    assert_string_equal(info.encoding, encoding);
    assert_int_equal(info.separator, separator);
    assert_int_equal(info.replaced, 0);
    assert_int_equal(c.nfields[0], 22);
    assert_int_equal(c.nfields[1], 22);
    assert_true(info.bytes > 0);
    collected_free(&c);
    free(path);
}

static void sample_ffe_2025(void **state)
{
    char *path = sample_path("ffe-2025.csv");
    struct collected c = {0};
    char *err = NULL;

    check_sample("ffe-2025.csv", 301, "windows-1252", ';');
    assert_int_equal(csvread_file(path, NULL, collect, &c, NULL, &err), 0);
    assert_true(c.contains_coeur); /* "Cœur": 0x9C decoded as Windows-1252 */
    assert_non_null(strstr(c.joined[0], "Numéro licence|Nom|Prénom"));
    assert_non_null(strstr(c.joined[2], "PARIS|Théo"));
    assert_int_equal(c.lines[0], 1);
    assert_int_equal(c.lines[2], 3);
    collected_free(&c);
    free(path);
}

static void sample_ffe_2026(void **state)
{
    check_sample("ffe-2026.csv", 331, "windows-1252", ';');
}

static void sample_celeris(void **state)
{
    char *path = sample_path("celeris-clients.csv");
    struct collected c = {0};
    char *err = NULL;

    check_sample("celeris-clients.csv", 501, "utf-8", ',');
    assert_int_equal(csvread_file(path, NULL, collect, &c, NULL, &err), 0);
    assert_null(strchr(c.joined[0], '"'));
    assert_non_null(strstr(c.joined[0], "Sexe|Nom|Prénom|E-mail"));
    assert_true(c.contains_coeur);
    collected_free(&c);
    free(path);
}

static void windows_1252_punctuation(void **state)
{
    /* 0x92 ’, 0x9C œ, 0x80 €, 0x85 …, 0xE9 é: Windows-1252, not Latin-1. */
    static const char data[] = "nom;note\r\nd\x92"
                               "Arc;C\x9Cur 10\x80\x85 \xE9t\xE9\r\n";
    struct collected c;
    struct csvread_info info;
    char *err = NULL;

    assert_int_equal(read_text(data, sizeof(data) - 1, &c, &info, &err), 0);
    assert_string_equal(info.encoding, "windows-1252");
    assert_string_equal(c.joined[1], "d’Arc|Cœur 10€… été");
    assert_int_equal(info.replaced, 0);
    collected_free(&c);
}

static void windows_1252_undefined_byte(void **state)
{
    static const char data[] = "a;b\n\x81;\x9D\xE9\n";
    struct collected c;
    struct csvread_info info;
    char *err = NULL;

    assert_int_equal(read_text(data, sizeof(data) - 1, &c, &info, &err), 0);
    assert_string_equal(c.joined[1], "\xEF\xBF\xBD|\xEF\xBF\xBDé");
    assert_int_equal(info.replaced, 2);
    collected_free(&c);
}

static void utf8_bom(void **state)
{
    static const char data[] = "\xEF\xBB\xBFnom,prénom\nCœur,Élise\n";
    struct collected c;
    struct csvread_info info;
    char *err = NULL;

    assert_int_equal(read_text(data, sizeof(data) - 1, &c, &info, &err), 0);
    assert_string_equal(info.encoding, "utf-8-bom");
    assert_string_equal(c.joined[0], "nom|prénom");
    assert_string_equal(c.joined[1], "Cœur|Élise");
    collected_free(&c);
}

/* Writes s (UTF-8, ASCII plus the characters used below) as UTF-16 with BOM. */
static size_t to_utf16(const char *s, int big_endian, unsigned char *out)
{
    size_t n = 0;
    const unsigned char *u = (const unsigned char *)s;

    out[n++] = big_endian ? 0xFE : 0xFF;
    out[n++] = big_endian ? 0xFF : 0xFE;
    while (*u) {
        uint32_t cp;
        if (*u < 0x80) {
            cp = *u++;
        } else if (*u < 0xE0) {
            cp = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
            u += 2;
        } else if (*u < 0xF0) {
            cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
            u += 3;
        } else {
            cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
                 ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
            u += 4;
        }
        uint32_t units[2];
        int count = 1;
        if (cp >= 0x10000) {
            units[0] = 0xD800 + ((cp - 0x10000) >> 10);
            units[1] = 0xDC00 + ((cp - 0x10000) & 0x3FF);
            count = 2;
        } else {
            units[0] = cp;
        }
        for (int i = 0; i < count; i++) {
            out[n++] = (unsigned char)(big_endian ? units[i] >> 8 : units[i] & 0xFF);
            out[n++] = (unsigned char)(big_endian ? units[i] & 0xFF : units[i] >> 8);
        }
    }
    return n;
}

static void utf16_files(void **state)
{
    static const char text[] = "nom\tprénom\tnote\r\nCœur\tÉlise\t😀 10€\r\n";
    unsigned char data[256];

    for (int big_endian = 0; big_endian <= 1; big_endian++) {
        size_t n = to_utf16(text, big_endian, data);
        char path[] = "/tmp/licol-test-utf16-XXXXXX";
        int fd = mkstemp(path);
        struct collected c = {0};
        struct csvread_info info;
        char *err = NULL;

        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, n), (ssize_t)n);
        close(fd);
        assert_int_equal(csvread_file(path, NULL, collect, &c, &info, &err), 0);
        assert_string_equal(info.encoding, big_endian ? "utf-16be" : "utf-16le");
        assert_int_equal(info.separator, '\t');
        assert_int_equal(c.count, 2);
        assert_string_equal(c.joined[0], "nom|prénom|note");
        assert_string_equal(c.joined[1], "Cœur|Élise|😀 10€");
        assert_int_equal(c.lines[1], 2);
        collected_free(&c);
        unlink(path);
    }
}

static void utf16_lone_surrogate(void **state)
{
    /* "a;b\n" then a high surrogate followed by 'x' */
    static const char data[] = "\xFF\xFE"
                               "a\0;\0b\0\n\0"
                               "\x3D\xD8"
                               "x\0;\0y\0\n\0";
    struct collected c;
    struct csvread_info info;
    char *err = NULL;

    assert_int_equal(read_text(data, sizeof(data) - 1, &c, &info, &err), 0);
    assert_int_equal(c.count, 2);
    assert_string_equal(c.joined[1], "\xEF\xBF\xBDx|y");
    assert_int_equal(info.replaced, 1);
    collected_free(&c);
}

static void line_ends(void **state)
{
    static const char *const inputs[] = {
        "a;b\n1;2\n3;4\n", "a;b\r\n1;2\r\n3;4\r\n", "a;b\r1;2\r3;4\r",
        "a;b\n1;2\r\n3;4", /* mixed, no final line end */
    };

    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        struct collected c;
        char *err = NULL;

        assert_int_equal(read_text(inputs[i], strlen(inputs[i]), &c, NULL, &err), 0);
        assert_int_equal(c.count, 3);
        assert_string_equal(c.joined[1], "1|2");
        assert_string_equal(c.joined[2], "3|4");
        assert_int_equal(c.lines[0], 1);
        assert_int_equal(c.lines[1], 2);
        assert_int_equal(c.lines[2], 3);
        collected_free(&c);
    }
}

/* A lone CR among LF or CRLF line ends ends a line like the others, so every
 * record after it gets its own line number. */
static void lone_cr_among_other_line_ends(void **state)
{
    static const struct {
        const char *data;
        long lines[4]; /* line of each record, header included */
    } cases[] = {
        {"a;b\n1;2\r3;4\n5;6\n", {1, 2, 3, 4}},
        {"a;b\r\n1;2\r3;4\r\n5;6\r\n", {1, 2, 3, 4}},
        {"a;b\r1;2\n3;4\r5;6", {1, 2, 3, 4}},
        {"a;b\n1;2\r\r3;4\n5;6\n", {1, 2, 4, 5}}, /* two CRs: an empty line between */
        {"a;b\n1;2\r\n\r3;4\n5;6\n", {1, 2, 4, 5}},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct collected c;
        char *err = NULL;

        assert_int_equal(read_text(cases[i].data, strlen(cases[i].data), &c, NULL, &err), 0);
        assert_int_equal(c.count, 4);
        assert_string_equal(c.joined[1], "1|2");
        assert_string_equal(c.joined[2], "3|4");
        assert_string_equal(c.joined[3], "5|6");
        for (int k = 0; k < 4; k++) {
            if (c.lines[k] != cases[i].lines[k])
                print_error("case %zu, record %d: expected line %ld, got %ld\n", i, k + 1,
                            cases[i].lines[k], c.lines[k]);
            assert_int_equal(c.lines[k], cases[i].lines[k]);
        }
        collected_free(&c);
    }
}

/* A CRLF split across two chunks counts as one line end, and a lone CR at the
 * end of a chunk followed by text counts as one. */
static void line_end_at_chunk_boundary(void **state)
{
    const size_t chunk = 64 * 1024; /* CHUNK_SIZE in csvread.c */

    for (int lone = 0; lone <= 1; lone++) {
        char *data = malloc(chunk + 64);
        size_t n = 0;
        struct collected c;
        char *err = NULL;

        assert_non_null(data);
        n += (size_t)sprintf(data, "a;b\n");
        memset(data + n, 'x', chunk - 1 - n); /* one long field up to the chunk's last byte */
        n = chunk - 1;
        data[n++] = '\r'; /* the chunk's last byte */
        n += (size_t)sprintf(data + n, lone ? "3;4\n5;6\n" : "\n3;4\n5;6\n");

        assert_int_equal(read_text(data, n, &c, NULL, &err), 0);
        assert_int_equal(c.count, 4);
        assert_int_equal(c.lines[1], 2);
        assert_string_equal(c.joined[2], "3|4");
        assert_int_equal(c.lines[2], 3);
        assert_int_equal(c.lines[3], 4);
        collected_free(&c);
        free(data);
    }
}

static void quoted_fields_and_lines(void **state)
{
    static const char data[] = "nom,adresse,ville\r\n"
                               "\"Dupont, Jean\",\"21 allée des Tilleuls\nBâtiment B\",Saumur\r\n"
                               "\"Martin\",\"dit \"\"le grand\"\"\",\"Tours\"\r\n"
                               "\"Durand\",\"ligne 1\r\nligne 2\r\nligne 3\",Caen\r\n"
                               "Petit,,Pau\r\n";
    struct collected c;
    struct csvread_info info;
    char *err = NULL;

    assert_int_equal(read_text(data, sizeof(data) - 1, &c, &info, &err), 0);
    assert_int_equal(info.separator, ',');
    assert_int_equal(c.count, 5);
    assert_string_equal(c.joined[1], "Dupont, Jean|21 allée des Tilleuls\nBâtiment B|Saumur");
    assert_int_equal(c.lines[1], 2);
    assert_string_equal(c.joined[2], "Martin|dit \"le grand\"|Tours");
    assert_int_equal(c.lines[2], 4);
    assert_string_equal(c.joined[3], "Durand|ligne 1\r\nligne 2\r\nligne 3|Caen");
    assert_int_equal(c.lines[3], 5);
    assert_string_equal(c.joined[4], "Petit||Pau");
    assert_int_equal(c.lines[4], 8);
    collected_free(&c);
}

static void separator_sniffing(void **state)
{
    static const struct {
        const char *data;
        char separator;
    } cases[] = {
        {"a;b;c\n1;2;3\n", ';'},       {"a,b,c\n1,2,3\n", ','},
        {"a\tb\tc\n1\t2\t3\n", '\t'},  {"\"x;y\",b,c\n1,2,3\n", ','}, /* the ';' is inside quotes */
        {"\"a,b\";c;d\n1;2;3\n", ';'}, {"seule\nvaleur\n", ';'},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct collected c;
        struct csvread_info info;
        char *err = NULL;

        assert_int_equal(read_text(cases[i].data, strlen(cases[i].data), &c, &info, &err), 0);
        assert_int_equal(info.separator, cases[i].separator);
        assert_int_equal(c.count, 2);
        collected_free(&c);
    }
}

static void separator_option(void **state)
{
    static const char data[] = "a;b,c\n1;2,3\n";
    struct csvread_options options = {.separator = ','};
    struct collected c = {0};
    struct csvread_info info;
    char *err = NULL;

    assert_int_equal(csvread_buffer(data, sizeof(data) - 1, &options, collect, &c, &info, &err), 0);
    assert_int_equal(info.separator, ',');
    assert_string_equal(c.joined[1], "1;2|3");
    collected_free(&c);
}

static void blank_lines_and_ragged_rows(void **state)
{
    static const char data[] = "\n\r\na;b;c\n\n  \n;;\n1;2\n1;2;3;4\n\n";
    struct collected c;
    char *err = NULL;

    assert_int_equal(read_text(data, sizeof(data) - 1, &c, NULL, &err), 0);
    assert_int_equal(c.count, 3);
    assert_int_equal(c.lines[0], 3);
    assert_string_equal(c.joined[1], "1|2");
    assert_int_equal(c.lines[1], 7);
    assert_int_equal(c.nfields[2], 4);
    assert_int_equal(c.lines[2], 8);
    collected_free(&c);
}

static void header_only(void **state)
{
    static const char data[] = "Numéro licence;Nom;Prénom\r\n";
    struct collected c;
    struct csvread_info info;
    char *err = NULL;

    assert_int_equal(read_text(data, sizeof(data) - 1, &c, &info, &err), 0);
    assert_int_equal(c.count, 1);
    assert_int_equal(info.records, 1);
    collected_free(&c);
}

static void callback_stops_read(void **state)
{
    static const char data[] = "a\n1\n2\n3\n";
    struct collected c = {.stop_at = 2};
    char *err = NULL;

    assert_int_equal(csvread_buffer(data, sizeof(data) - 1, NULL, collect, &c, NULL, &err), 7);
    assert_null(err);
    assert_int_equal(c.count, 2);
    collected_free(&c);
}

/* Reads data and expects an error containing every fragment. */
static void expect_error(const char *data, size_t len, const struct csvread_options *options,
                         const char *const *fragments)
{
    struct collected c = {0};
    char *err = NULL;

    assert_int_equal(csvread_buffer(data, len, options, collect, &c, NULL, &err), -1);
    assert_non_null(err);
    for (size_t i = 0; fragments[i]; i++) {
        if (!strstr(err, fragments[i]))
            print_error("message \"%s\" lacks \"%s\"\n", err, fragments[i]);
        assert_non_null(strstr(err, fragments[i]));
    }
    free(err);
    collected_free(&c);
}

static void error_empty_file(void **state)
{
    static const char *const expected[] = {"Le fichier est vide.", NULL};

    expect_error("", 0, NULL, expected);
    expect_error("\xEF\xBB\xBF", 3, NULL, expected);
    expect_error("\r\n\r\n  \n", 7, NULL, expected);
    expect_error(";;;\n", 4, NULL, expected);
}

static void error_nul_byte(void **state)
{
    static const char data[] = "a;b\r\n1;2\r\n3\0;4\r\n";
    static const char *const expected[] = {
        "Le fichier contient un octet nul à la ligne 3 : ce n'est pas un fichier CSV texte. "
        "Exportez-le de nouveau au format CSV.",
        NULL};

    expect_error(data, sizeof(data) - 1, NULL, expected);
}

static void error_binary_data(void **state)
{
    unsigned char data[2048];
    static const char *const expected[] = {"n'est pas un fichier CSV", "données binaires",
                                           "Exportez", NULL};
    static const char *const xlsx[] = {"classeur", "pas un fichier CSV", "CSV (point-virgule)",
                                       NULL};
    static const char *const pdf[] = {"PDF", "pas un fichier CSV", NULL};

    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)((i * 37 + 11) % 251 + 1); /* no NUL */
    expect_error((const char *)data, sizeof(data), NULL, expected);
    expect_error("PK\x03\x04\x14\0\x06\0", 8, NULL, xlsx);
    expect_error("%PDF-1.7\n", 9, NULL, pdf);
}

static void error_unterminated_quote(void **state)
{
    static const char data[] = "nom;adresse\n"
                               "Dupont;\"21 rue\nBâtiment B\"\n"
                               "Martin;\"3 place du Marché\nTours\n"
                               "Durand;Caen\n";
    static const char *const expected[] = {"Guillemet non fermé", "ligne 4",
                                           "colonne 2 (« adresse »)", "guillemet fermant", NULL};

    expect_error(data, sizeof(data) - 1, NULL, expected);
}

static void error_stray_quote(void **state)
{
    static const char inside[] = "nom;taille\nDupont;12\" pouces\n";
    static const char after[] = "nom;taille\nDupont;\"12\" pouces\n";
    static const char *const inside_expected[] = {"Guillemet mal placé à la ligne 2",
                                                  "colonne 2 (« taille »)", NULL};
    static const char *const after_expected[] = {"Guillemet mal placé", "ligne 2",
                                                 "colonne 2 (« taille »)", "\"\"", NULL};

    expect_error(inside, sizeof(inside) - 1, NULL, inside_expected);
    expect_error(after, sizeof(after) - 1, NULL, after_expected);
}

static void error_field_too_long(void **state)
{
    size_t field = 200 * 1024;
    char *data = malloc(field + 64);
    size_t n;
    static const char *const expected[] = {"Ligne 2", "colonne 3 (« c »)",
                                           "dépasse la taille maximale de 65536 octets",
                                           "Raccourcissez", NULL};
    static const char *const quoted_expected[] = {"Ligne 3", "colonne 2 (« b »)", "dépasse",
                                                  "guillemet ouvert à la ligne 3", NULL};

    assert_non_null(data);
    n = (size_t)sprintf(data, "a;b;c\n1;2;");
    memset(data + n, 'x', field);
    n += field;
    n += (size_t)sprintf(data + n, "\n");
    expect_error(data, n, NULL, expected);

    /* The same length inside an unclosed quote. */
    n = (size_t)sprintf(data, "a;b\n1;2\n3;\"");
    memset(data + n, 'y', field);
    n += field;
    expect_error(data, n, NULL, quoted_expected);
    free(data);
}

static void error_too_many_fields(void **state)
{
    static const char *const expected[] = {"Ligne 2", "plus de 4 colonnes", "séparateur", NULL};
    static const char *const default_expected[] = {"Ligne 1", "plus de 256 colonnes", NULL};
    struct csvread_options options = {.max_fields = 4};
    char wide[2048];
    size_t n = 0;

    expect_error("a;b;c;d\n1;2;3;4;5\n", 18, &options, expected);
    for (int i = 0; i < 300; i++)
        n += (size_t)sprintf(wide + n, "c%d;", i % 10);
    expect_error(wide, n, NULL, default_expected);
}

static void wide_record_accepted(void **state)
{
    /* 2,000 fields of 100 bytes on one line: far more than one chunk, but
     * no single field is long. */
    size_t size = 2 * 2000 * 101 + 64;
    char *data = malloc(size);
    struct csvread_options options = {.max_fields = 2000, .max_field = 200};
    struct collected c = {0};
    char *err = NULL;
    size_t n = 0;

    assert_non_null(data);
    for (int row = 0; row < 2; row++) {
        for (int i = 0; i < 2000; i++) {
            memset(data + n, 'a' + i % 26, 100);
            n += 100;
            data[n++] = i == 1999 ? '\n' : ';';
        }
    }
    assert_int_equal(csvread_buffer(data, n, &options, collect, &c, NULL, &err), 0);
    assert_null(err);
    assert_int_equal(c.count, 2);
    assert_int_equal(c.nfields[1], 2000);
    collected_free(&c);
    free(data);
}

static void error_long_header_name(void **state)
{
    char data[256];
    static const char *const expected[] = {"Ligne 2, colonne 1 (« ", "nné… »)", NULL};
    struct csvread_options options = {.max_field = 100};
    size_t n = 0;

    /* After 57 ASCII bytes, the second "é" spans bytes 59 and 60, so the
     * cut at 60 bytes backs off to keep only the first one. */
    memset(data, 'n', 57);
    n = 57;
    n += (size_t)sprintf(data + n, "éééé;b\n");
    memset(data + n, 'x', 150);
    n += 150;
    n += (size_t)sprintf(data + n, ";1\n");
    expect_error(data, n, &options, expected);
}

static void error_missing_file(void **state)
{
    char *err = NULL;
    struct collected c = {0};

    assert_int_equal(csvread_file("/nonexistent/licol.csv", NULL, collect, &c, NULL, &err), -1);
    assert_non_null(strstr(err, "ne peut pas être ouvert"));
    free(err);
}

/* Writes rows to a file; the text crosses many 64 KiB chunk boundaries. */
static char *write_large_file(long rows, const char *row_text)
{
    char *path = strdup("/tmp/licol-test-large-XXXXXX");
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");

    assert_non_null(f);
    fputs("Numéro licence;Nom;Prénom;Adresse;Ville\r\n", f);
    for (long i = 0; i < rows; i++)
        fprintf(f, "%07ldA;%s\r\n", i, row_text);
    fclose(f);
    return path;
}

static void large_file_bounded_memory(void **state)
{
    /* é (2 bytes) and € (3 bytes) make chunk boundaries fall inside characters. */
    char *path = write_large_file(200000, "Dupont;Élise;\"12 rue du Cœur\nBâtiment B\";Saumur €");
    struct collected c = {0};
    struct csvread_info info;
    struct rusage before, after;
    char *err = NULL;

    getrusage(RUSAGE_SELF, &before);
    assert_int_equal(csvread_file(path, NULL, collect, &c, &info, &err), 0);
    getrusage(RUSAGE_SELF, &after);

    assert_int_equal(c.count, 200001);
    assert_string_equal(info.encoding, "utf-8");
    assert_string_equal(c.joined[2], "0000001A|Dupont|Élise|12 rue du Cœur\nBâtiment B|Saumur €");
    assert_int_equal(c.lines[2], 4); /* every row spans two lines */
    /* ru_maxrss is in KiB: the file is about 14 MB, the reader must stay far below. */
    assert_true(after.ru_maxrss - before.ru_maxrss < 4 * 1024);
    collected_free(&c);
    unlink(path);
    free(path);
}

static int check_last(void *userdata, long record_no, long line_no, size_t nfields, char **fields,
                      const size_t *lengths)
{
    if (nfields == 2 && strcmp(fields[1], "Tours") == 0)
        *(int *)userdata = strcmp(fields[0], "Clément") == 0 ? 1 : -1;
    return 0;
}

static void late_invalid_utf8(void **state)
{
    size_t n = 0;
    char *data = malloc(110 * 1024);
    int found = 0;
    struct csvread_info info;
    char *err = NULL;

    assert_non_null(data);
    n += (size_t)sprintf(data, "nom;ville\n");
    while (n < 100 * 1024)
        n += (size_t)sprintf(data + n, "Élise;Saumur\n");
    n += (size_t)sprintf(data + n, "Cl\xE9"
                                   "ment;Tours\n");
    assert_int_equal(csvread_buffer(data, n, NULL, check_last, &found, &info, &err), 0);
    assert_string_equal(info.encoding, "utf-8");
    assert_int_equal(found, 1);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sample_ffe_2025),
        cmocka_unit_test(sample_ffe_2026),
        cmocka_unit_test(sample_celeris),
        cmocka_unit_test(windows_1252_punctuation),
        cmocka_unit_test(windows_1252_undefined_byte),
        cmocka_unit_test(utf8_bom),
        cmocka_unit_test(utf16_files),
        cmocka_unit_test(utf16_lone_surrogate),
        cmocka_unit_test(line_ends),
        cmocka_unit_test(lone_cr_among_other_line_ends),
        cmocka_unit_test(line_end_at_chunk_boundary),
        cmocka_unit_test(quoted_fields_and_lines),
        cmocka_unit_test(separator_sniffing),
        cmocka_unit_test(separator_option),
        cmocka_unit_test(blank_lines_and_ragged_rows),
        cmocka_unit_test(header_only),
        cmocka_unit_test(callback_stops_read),
        cmocka_unit_test(error_empty_file),
        cmocka_unit_test(error_nul_byte),
        cmocka_unit_test(error_binary_data),
        cmocka_unit_test(error_unterminated_quote),
        cmocka_unit_test(error_stray_quote),
        cmocka_unit_test(error_field_too_long),
        cmocka_unit_test(error_too_many_fields),
        cmocka_unit_test(wide_record_accepted),
        cmocka_unit_test(error_long_header_name),
        cmocka_unit_test(error_missing_file),
        cmocka_unit_test(large_file_bounded_memory),
        cmocka_unit_test(late_invalid_utf8),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
