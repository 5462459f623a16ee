/*
 * Streaming CSV reader: encoding detection and conversion to UTF-8, separator
 * sniffing, physical line tracking and the French error messages. libcsv
 * applies the quoting rules. This file feeds it one physical line at a time,
 * so that every record and field can be placed on its line. What a record
 * means is left to the import pipeline.
 *
 * Data flow: raw chunk (64 KiB) -> UTF-8 text (at most 3 bytes per input
 * byte) -> pieces ending at CR or LF -> csv_parse -> field and record
 * callbacks -> the caller's callback. Memory is the chunk buffers, libcsv's
 * field buffer (capped through max_field, see check_field_growth) and one
 * record (capped by max_fields and max_field).
 */
#include "csvread.h"

#include <csv.h>
#include <errno.h>
#include <iconv.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

#define CHUNK_SIZE (64 * 1024)
#define TEXT_CAP (3 * CHUNK_SIZE + 64) /* UTF-8 grows at most 3x from one input byte */
#define BINARY_WINDOW 4096             /* bytes of text inspected for control characters */
#define BINARY_MAX_CONTROLS 16         /* control characters tolerated in that window */
#define COLUMN_NAME_MAX 60             /* bytes of a header name quoted in a message */

enum encoding { ENC_UTF8, ENC_UTF8_BOM, ENC_UTF16LE, ENC_UTF16BE, ENC_CP1252 };

static const char *const encoding_names[] = {"utf-8", "utf-8-bom", "utf-16le", "utf-16be",
                                             "windows-1252"};

/* Windows-1252 to UTF-8 for every byte, built once from glibc's iconv table.
 * The five bytes Windows-1252 leaves undefined (0x81, 0x8D, 0x8F, 0x90, 0x9D)
 * become U+FFFD and are counted in csvread_info.replaced. */
struct cp1252_entry {
    unsigned char len;
    unsigned char bytes[3];
    unsigned char undefined;
};
static struct cp1252_entry cp1252_table[256];
static int cp1252_table_ok;
static pthread_once_t cp1252_once = PTHREAD_ONCE_INIT;

struct reader {
    size_t max_field;
    size_t max_fields;
    char separator;
    csvread_row_cb cb;
    void *userdata;
    char **err;

    /* Input: either a FILE or a memory buffer. */
    FILE *fp;
    const unsigned char *mem;
    size_t mem_len;
    size_t mem_pos;
    long long bytes;
    int eof;

    unsigned char *raw; /* CHUNK_SIZE + carry from the previous chunk */
    size_t raw_len;
    char *text; /* converted UTF-8, NUL-terminated */
    size_t text_len;
    enum encoding encoding;
    iconv_t utf16;
    long replaced;
    int utf8_fallback_logged;
    int started;        /* the first chunk has been examined */
    int encoding_known; /* encoding is set (not for a rejected binary file) */

    /* Lines: incremented at each CR, and at each LF not preceded by CR. */
    long line;
    char prev_char;

    struct csv_parser parser;
    int parser_ready;
    int in_record;
    long record_line;
    long field_line;

    /* The current record: fields copied into one arena, reused per record. */
    struct buf arena;
    size_t *offsets;
    size_t *lengths;
    char **fields;
    size_t nfields;
    size_t fields_cap;
    int all_empty;
    long records;

    /* Header names, kept to name columns in error messages. */
    struct buf header;
    size_t *header_offsets;
    size_t header_count;

    int stop;
    int rc;
};

static void cp1252_build(void)
{
    iconv_t cd = iconv_open("UTF-8", "WINDOWS-1252");

    if (cd == (iconv_t)-1)
        return;
    for (int c = 0; c < 256; c++) {
        char in = (char)c;
        char out[8];
        char *inp = &in;
        char *outp = out;
        size_t inleft = 1;
        size_t outleft = sizeof(out);
        struct cp1252_entry *e = &cp1252_table[c];

        iconv(cd, NULL, NULL, NULL, NULL);
        if (iconv(cd, &inp, &inleft, &outp, &outleft) == (size_t)-1 || outleft == sizeof(out)) {
            memcpy(e->bytes, "\xEF\xBF\xBD", 3);
            e->len = 3;
            e->undefined = 1;
        } else {
            e->len = (unsigned char)(sizeof(out) - outleft);
            memcpy(e->bytes, out, e->len);
        }
    }
    iconv_close(cd);
    cp1252_table_ok = 1;
}

static void set_error(struct reader *r, char *message)
{
    if (r->stop) {
        free(message);
        return;
    }
    r->stop = 1;
    r->rc = -1;
    if (r->err)
        *r->err = message ? message : strdup("Mémoire insuffisante pour lire le fichier.");
    else
        free(message);
}

/* "colonne 5 (« Code postal »)" for records after the header, "colonne 5" otherwise. */
static char *column_label(const struct reader *r, size_t index)
{
    if (r->records >= 1 && index < r->header_count) {
        const char *name = r->header.data + r->header_offsets[index];
        size_t len = strlen(name);

        /* A header name is shown up to COLUMN_NAME_MAX bytes, cut before a
         * UTF-8 continuation byte so that no character is split. */
        if (len > COLUMN_NAME_MAX) {
            len = COLUMN_NAME_MAX;
            while (len > 0 && ((unsigned char)name[len] & 0xC0) == 0x80)
                len--;
            return str_printf("colonne %zu (« %.*s… »)", index + 1, (int)len, name);
        }
        if (len)
            return str_printf("colonne %zu (« %s »)", index + 1, name);
    }
    return str_printf("colonne %zu", index + 1);
}

static void error_field_too_long(struct reader *r)
{
    char *column = column_label(r, r->nfields);
    const char *where = column ? column : "colonne ?";

    if (r->parser.quoted)
        set_error(r, str_printf("Ligne %ld, %s : le champ dépasse la taille maximale de %zu "
                                "octets. La cause habituelle est un guillemet ouvert à la ligne "
                                "%ld et jamais refermé : ajoutez le guillemet fermant ou retirez "
                                "le guillemet ouvrant, puis importez de nouveau le fichier.",
                                r->field_line, where, r->max_field, r->field_line));
    else
        set_error(r, str_printf("Ligne %ld, %s : le champ dépasse la taille maximale de %zu "
                                "octets. Raccourcissez ce champ ou retirez cette colonne de "
                                "l'export, puis importez de nouveau le fichier.",
                                r->field_line, where, r->max_field));
    free(column);
}

/* libcsv callback: one field ended. */
static void on_field(void *data, size_t len, void *userdata)
{
    struct reader *r = userdata;

    if (r->stop)
        return;
    if (r->nfields >= r->max_fields) {
        set_error(r, str_printf("Ligne %ld : l'enregistrement contient plus de %zu colonnes, le "
                                "maximum accepté. Vérifiez que le fichier est bien la liste "
                                "exportée au format CSV, que son séparateur est le bon et que "
                                "chaque ligne a le même nombre de colonnes que l'en-tête, puis "
                                "importez-le de nouveau.",
                                r->record_line, r->max_fields));
        return;
    }
    if (len > r->max_field) {
        error_field_too_long(r);
        return;
    }
    if (r->nfields == r->fields_cap) {
        size_t cap = r->fields_cap ? r->fields_cap * 2 : 32;
        size_t *offsets = realloc(r->offsets, cap * sizeof(*offsets));
        size_t *lengths = offsets ? realloc(r->lengths, cap * sizeof(*lengths)) : NULL;
        char **fields = lengths ? realloc(r->fields, cap * sizeof(*fields)) : NULL;

        if (offsets)
            r->offsets = offsets;
        if (lengths)
            r->lengths = lengths;
        if (!fields) {
            set_error(r, NULL);
            return;
        }
        r->fields = fields;
        r->fields_cap = cap;
    }
    r->offsets[r->nfields] = r->arena.len;
    r->lengths[r->nfields] = len;
    if (buf_append(&r->arena, data, len) < 0 || buf_append(&r->arena, "", 1) < 0) {
        set_error(r, NULL);
        return;
    }
    if (len)
        r->all_empty = 0;
    r->nfields++;
    r->field_line = r->line;
}

static void save_header(struct reader *r)
{
    size_t *offsets = malloc((r->nfields ? r->nfields : 1) * sizeof(*offsets));

    if (!offsets || buf_append(&r->header, r->arena.data, r->arena.len) < 0) {
        free(offsets);
        return; /* error messages then show column numbers only */
    }
    memcpy(offsets, r->offsets, r->nfields * sizeof(*offsets));
    r->header_offsets = offsets;
    r->header_count = r->nfields;
}

static void reset_record(struct reader *r)
{
    buf_reset(&r->arena);
    r->nfields = 0;
    r->all_empty = 1;
    r->in_record = 0;
}

/* libcsv callback: one record ended (c is the terminator, or -1 at the end). */
static void on_record(int c, void *userdata)
{
    struct reader *r = userdata;
    int rc;

    (void)c;
    if (r->stop)
        return;

    /* A spreadsheet's empty row (";;;;") is skipped like a blank line. */
    if (r->nfields == 0 || r->all_empty) {
        reset_record(r);
        return;
    }

    for (size_t i = 0; i < r->nfields; i++)
        r->fields[i] = r->arena.data + r->offsets[i];
    r->records++;
    rc = r->cb(r->userdata, r->records, r->record_line, r->nfields, r->fields, r->lengths);
    if (r->records == 1)
        save_header(r);
    reset_record(r);
    if (rc) {
        r->stop = 1;
        r->rc = rc;
    }
}

static void error_quote(struct reader *r, int at_end)
{
    char *column = column_label(r, r->nfields);
    const char *where = column ? column : "colonne ?";

    if (at_end)
        set_error(r, str_printf("Guillemet non fermé : le champ de la %s commence par un guillemet "
                                "à la ligne %ld, mais ce guillemet n'est jamais refermé. Ajoutez "
                                "le guillemet fermant ou retirez le guillemet ouvrant, puis "
                                "importez de nouveau le fichier.",
                                where, r->field_line));
    else if (r->parser.quoted)
        set_error(r, str_printf("Guillemet mal placé : le champ de la %s, ouvert par un guillemet "
                                "à la ligne %ld, contient un guillemet seul ou du texte après son "
                                "guillemet fermant. Dans un champ entre guillemets, un guillemet "
                                "s'écrit \"\" ; corrigez ce champ puis importez de nouveau le "
                                "fichier.",
                                where, r->field_line));
    else
        set_error(r, str_printf("Guillemet mal placé à la ligne %ld, %s : un guillemet apparaît "
                                "au milieu d'un champ qui n'est pas entre guillemets. Entourez le "
                                "champ de guillemets et doublez le guillemet (\"\"), ou "
                                "supprimez-le, puis importez de nouveau le fichier.",
                                r->line, where));
    free(column);
}

/* libcsv buffers a field until it ends, so a field without end (an unclosed
 * quote) would grow without limit. Its public entry_pos is the length of the
 * value buffered so far: checking it after every piece bounds libcsv's
 * buffer to max_field plus one piece. */
static void check_field_growth(struct reader *r)
{
    if (!r->stop && r->parser.entry_pos > r->max_field)
        error_field_too_long(r);
}

static int is_blank_char(const struct reader *r, char c)
{
    return c == '\r' || c == '\n' || c == ' ' || (c == '\t' && r->separator != '\t');
}

/* Feeds one piece of text that contains at most one line terminator, at its
 * end, so that r->line is the line of every byte in it. */
static void feed_piece(struct reader *r, const char *s, size_t n)
{
    if (!r->in_record) {
        for (size_t i = 0; i < n; i++) {
            if (!is_blank_char(r, s[i])) {
                r->in_record = 1;
                r->record_line = r->line;
                r->field_line = r->line;
                break;
            }
        }
    }
    if (csv_parse(&r->parser, s, n, on_field, on_record, r) != n && !r->stop) {
        if (csv_error(&r->parser) == CSV_EPARSE)
            error_quote(r, 0);
        else
            set_error(r, NULL);
        return;
    }
    check_field_growth(r);
}

static void error_nul(struct reader *r)
{
    set_error(r, str_printf("Le fichier contient un octet nul à la ligne %ld : ce n'est pas un "
                            "fichier CSV texte. Exportez-le de nouveau au format CSV.",
                            r->line));
}

/* Splits the converted text at CR and LF and feeds libcsv line by line. */
static void feed_text(struct reader *r)
{
    const char *text = r->text;
    size_t len = r->text_len;
    size_t pos = 0;

    while (pos < len && !r->stop) {
        size_t n = strcspn(text + pos, "\r\n");
        size_t piece;

        if (pos + n < len && text[pos + n] == '\0') {
            error_nul(r);
            return;
        }
        piece = pos + n < len ? n + 1 : n;
        feed_piece(r, text + pos, piece);
        if (pos + n < len) {
            char c = text[pos + n];
            /* The character just before the terminator: the end of the
             * previous piece (or chunk) when this piece is only the LF. */
            char before = n > 0 ? text[pos + n - 1] : r->prev_char;

            if (c == '\r' || before != '\r')
                r->line++;
            r->prev_char = c;
        } else if (n > 0) {
            r->prev_char = text[pos + n - 1];
        }
        pos += piece;
    }
}

/* Length of the longest valid UTF-8 prefix of s. When the text ends inside a
 * sequence that could still be completed, *incomplete is set. */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n, int *incomplete)
{
    size_t i = 0;

    *incomplete = 0;
    while (i < n) {
        unsigned char c = s[i];
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
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F; /* no UTF-16 surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return i;
        }
        for (size_t k = 1; k <= need; k++) {
            if (i + k >= n) {
                *incomplete = 1;
                return i;
            }
            if (s[i + k] < lo || s[i + k] > hi)
                return i;
            lo = 0x80;
            hi = 0xBF;
        }
        i += need + 1;
    }
    return i;
}

static void text_put_cp1252(struct reader *r, unsigned char c)
{
    const struct cp1252_entry *e = &cp1252_table[c];

    memcpy(r->text + r->text_len, e->bytes, e->len);
    r->text_len += e->len;
    if (e->undefined)
        r->replaced++;
}

/* Converts raw[0..len) to UTF-8 text and returns how many bytes were used;
 * the rest (an incomplete character) is carried to the next chunk. */
static size_t convert(struct reader *r, const unsigned char *in, size_t len)
{
    size_t pos = 0;

    r->text_len = 0;
    switch (r->encoding) {
    case ENC_UTF8:
    case ENC_UTF8_BOM:
        /* The first 64 KiB were valid UTF-8. If a later chunk is not, its
         * invalid bytes are decoded as Windows-1252: such files are usually a
         * UTF-8 export with lines pasted from a Windows-1252 one. */
        while (pos < len) {
            int incomplete;
            size_t valid = utf8_valid_prefix(in + pos, len - pos, &incomplete);

            memcpy(r->text + r->text_len, in + pos, valid);
            r->text_len += valid;
            pos += valid;
            if (pos == len || (incomplete && !r->eof))
                break;
            if (!r->utf8_fallback_logged) {
                log_warn("csvread",
                         "invalid UTF-8 near line %ld, decoding those bytes as "
                         "Windows-1252",
                         r->line);
                r->utf8_fallback_logged = 1;
            }
            text_put_cp1252(r, in[pos]);
            pos++;
        }
        break;
    case ENC_CP1252:
        for (; pos < len; pos++) {
            unsigned char c = in[pos];
            if (c < 0x80)
                r->text[r->text_len++] = (char)c;
            else
                text_put_cp1252(r, c);
        }
        break;
    case ENC_UTF16LE:
    case ENC_UTF16BE:
        while (pos < len) {
            char *inp = (char *)in + pos;
            size_t inleft = len - pos;
            char *outp = r->text + r->text_len;
            size_t outleft = TEXT_CAP - 8 - r->text_len;
            size_t rc = iconv(r->utf16, &inp, &inleft, &outp, &outleft);
            int e = errno;

            r->text_len = (size_t)(outp - r->text);
            pos = (size_t)((const unsigned char *)inp - in);
            if (rc != (size_t)-1)
                break;
            if (e == EINVAL && !r->eof)
                break; /* incomplete character: carried over */

            /* A lone surrogate or a truncated last character. */
            memcpy(r->text + r->text_len, "\xEF\xBF\xBD", 3);
            r->text_len += 3;
            r->replaced++;
            pos += len - pos >= 2 ? 2 : len - pos;
            iconv(r->utf16, NULL, NULL, NULL, NULL);
        }
        break;
    }
    r->text[r->text_len] = '\0';
    return pos;
}

/* Reads until raw contains CHUNK_SIZE bytes or the input ends. */
static int fill_raw(struct reader *r)
{
    while (r->raw_len < CHUNK_SIZE && !r->eof) {
        size_t want = CHUNK_SIZE - r->raw_len;
        size_t got;

        if (r->fp) {
            got = fread(r->raw + r->raw_len, 1, want, r->fp);
            if (got < want) {
                if (ferror(r->fp))
                    return -1;
                r->eof = 1;
            }
        } else {
            got = r->mem_len - r->mem_pos < want ? r->mem_len - r->mem_pos : want;
            memcpy(r->raw + r->raw_len, r->mem + r->mem_pos, got);
            r->mem_pos += got;
            if (r->mem_pos == r->mem_len)
                r->eof = 1;
        }
        r->raw_len += got;
        r->bytes += (long long)got;
    }
    return 0;
}

static int starts_with(const unsigned char *s, size_t n, const char *prefix, size_t plen)
{
    return n >= plen && memcmp(s, prefix, plen) == 0;
}

/* Recognises the files staff most often pick by mistake. */
static int reject_known_binary(struct reader *r)
{
    const unsigned char *s = r->raw;
    size_t n = r->raw_len;
    const char *kind = NULL;

    if (starts_with(s, n, "PK\x03\x04", 4))
        kind = "un classeur compressé (Excel .xlsx ou LibreOffice .ods)";
    else if (starts_with(s, n, "\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", 8))
        kind = "un classeur Excel de l'ancien format (.xls)";
    else if (starts_with(s, n, "%PDF", 4))
        kind = "un document PDF";
    if (!kind)
        return 0;
    set_error(r, str_printf("Le fichier est %s, pas un fichier CSV. Ouvrez la liste dans votre "
                            "tableur, enregistrez-la au format « CSV (point-virgule) », puis "
                            "importez ce fichier CSV.",
                            kind));
    return -1;
}

static int choose_encoding(struct reader *r, size_t *skip)
{
    const unsigned char *s = r->raw;
    size_t n = r->raw_len;
    int incomplete;

    *skip = 0;
    if (starts_with(s, n, "\xEF\xBB\xBF", 3)) {
        r->encoding = ENC_UTF8_BOM;
        *skip = 3;
    } else if (starts_with(s, n, "\xFF\xFE", 2)) {
        r->encoding = ENC_UTF16LE;
        *skip = 2;
    } else if (starts_with(s, n, "\xFE\xFF", 2)) {
        r->encoding = ENC_UTF16BE;
        *skip = 2;
    } else if (utf8_valid_prefix(s, n, &incomplete) == n || (incomplete && !r->eof)) {
        /* incomplete: the 64 KiB window ends inside a valid character */
        r->encoding = ENC_UTF8;
    } else {
        r->encoding = ENC_CP1252;
    }
    r->encoding_known = 1;

    if (r->encoding == ENC_UTF16LE || r->encoding == ENC_UTF16BE) {
        r->utf16 = iconv_open("UTF-8", r->encoding == ENC_UTF16LE ? "UTF-16LE" : "UTF-16BE");
        if (r->utf16 == (iconv_t)-1) {
            set_error(r, strdup("Le fichier est en UTF-16 mais la conversion n'est pas "
                                "disponible sur ce serveur. Enregistrez-le en UTF-8 puis "
                                "importez-le de nouveau."));
            return -1;
        }
    }
    return 0;
}

/* Counts control characters in the first text: a few are tolerated (a stray
 * form feed), many mean the file is not text. */
static int reject_binary_text(struct reader *r)
{
    size_t n = r->text_len < BINARY_WINDOW ? r->text_len : BINARY_WINDOW;
    int controls = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)r->text[i];
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\0') || c == 0x7F)
            controls++;
    }
    if (controls <= BINARY_MAX_CONTROLS)
        return 0;
    set_error(r, strdup("Le fichier n'est pas un fichier CSV : ses premières lignes contiennent "
                        "des données binaires (caractères de contrôle). Exportez la liste au "
                        "format CSV (texte séparé par des points-virgules ou des virgules), puis "
                        "importez ce fichier-là."));
    return -1;
}

/* Picks the separator among ';', ',' and tab by counting each outside quotes
 * in the first record. Ties go to ';' (federation files), then ','. */
static char sniff_separator(const char *text, size_t len)
{
    size_t counts[3] = {0, 0, 0};
    const char candidates[3] = {';', ',', '\t'};
    int quoted = 0;
    int best = 0;

    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '"')
            quoted = !quoted;
        else if (!quoted && (c == '\n' || c == '\r')) {
            if (counts[0] + counts[1] + counts[2] > 0)
                break;
        } else if (!quoted) {
            for (int k = 0; k < 3; k++)
                if (c == candidates[k])
                    counts[k]++;
        }
    }
    for (int k = 1; k < 3; k++)
        if (counts[k] > counts[best])
            best = k;
    return candidates[best];
}

static int start_parser(struct reader *r)
{
    if (csv_init(&r->parser, CSV_APPEND_NULL | CSV_STRICT | CSV_STRICT_FINI) != 0) {
        set_error(r, NULL);
        return -1;
    }
    csv_set_delim(&r->parser, (unsigned char)r->separator);
    r->parser_ready = 1;
    return 0;
}

/* The first chunk: signatures, encoding, binary check, separator. */
static int examine_first_chunk(struct reader *r, size_t *skip)
{
    if (reject_known_binary(r) < 0 || choose_encoding(r, skip) < 0)
        return -1;
    return 0;
}

static void finish(struct reader *r)
{
    if (r->stop)
        return;
    if (r->parser_ready) {
        int quoted_open = r->parser.quoted && r->parser.pstate != 0 && r->in_record;

        if (csv_fini(&r->parser, on_field, on_record, r) != 0 && !r->stop) {
            if (csv_error(&r->parser) == CSV_EPARSE || quoted_open)
                error_quote(r, 1);
            else
                set_error(r, NULL);
        }
    }
    if (!r->stop && r->records == 0)
        set_error(r, strdup("Le fichier est vide. Vérifiez que vous avez choisi le bon fichier "
                            "et que l'export contient au moins la ligne d'en-tête."));
}

static int read_all(struct reader *r)
{
    while (!r->stop) {
        size_t skip = 0;
        size_t used;

        if (fill_raw(r) < 0) {
            set_error(r, str_printf("La lecture du fichier a échoué à la ligne %ld (%s). "
                                    "Réessayez ; si l'erreur persiste, copiez le fichier sur "
                                    "le serveur de nouveau.",
                                    r->line, strerror(errno)));
            break;
        }
        if (r->raw_len == 0)
            break;
        if (!r->started) {
            r->started = 1;
            if (examine_first_chunk(r, &skip) < 0)
                break;
        }

        used = skip + convert(r, r->raw + skip, r->raw_len - skip);

        if (!r->parser_ready) {
            if (reject_binary_text(r) < 0)
                break;
            if (!r->separator)
                r->separator = sniff_separator(r->text, r->text_len);
            if (start_parser(r) < 0)
                break;
        }
        feed_text(r);

        memmove(r->raw, r->raw + used, r->raw_len - used);
        r->raw_len -= used;
        if (r->eof && r->raw_len == 0)
            break;
    }
    finish(r);
    return r->rc;
}

static int run(struct reader *r, const struct csvread_options *options, csvread_row_cb cb,
               void *userdata, struct csvread_info *info, char **err)
{
    int rc = -1;

    r->max_field = options && options->max_field ? options->max_field : CSVREAD_DEFAULT_MAX_FIELD;
    r->max_fields =
        options && options->max_fields ? options->max_fields : CSVREAD_DEFAULT_MAX_FIELDS;
    r->separator = options ? options->separator : 0;
    r->cb = cb;
    r->userdata = userdata;
    r->err = err;
    r->line = 1;
    r->all_empty = 1;
    r->utf16 = (iconv_t)-1;
    buf_init(&r->arena, 0);
    buf_init(&r->header, 0);

    pthread_once(&cp1252_once, cp1252_build);
    r->raw = malloc(CHUNK_SIZE + 8);
    r->text = malloc(TEXT_CAP);
    if (!cp1252_table_ok || !r->raw || !r->text) {
        set_error(r, strdup("Le lecteur CSV n'a pas pu démarrer (mémoire insuffisante ou "
                            "conversion Windows-1252 indisponible). Réessayez plus tard."));
        goto done;
    }
    rc = read_all(r);

done:
    if (info) {
        memset(info, 0, sizeof(*info));
        snprintf(info->encoding, sizeof(info->encoding), "%s",
                 r->encoding_known ? encoding_names[r->encoding] : "");
        info->separator = r->separator;
        info->records = r->records;
        info->bytes = r->bytes;
        info->replaced = r->replaced;
    }
    if (r->parser_ready)
        csv_free(&r->parser);
    if (r->utf16 != (iconv_t)-1)
        iconv_close(r->utf16);
    buf_free(&r->arena);
    buf_free(&r->header);
    free(r->header_offsets);
    free(r->offsets);
    free(r->lengths);
    free(r->fields);
    free(r->raw);
    free(r->text);
    return rc;
}

int csvread_file(const char *path, const struct csvread_options *options, csvread_row_cb cb,
                 void *userdata, struct csvread_info *info, char **err)
{
    struct reader r = {0};
    int rc;

    if (err)
        *err = NULL;
    r.fp = fopen(path, "rb");
    if (!r.fp) {
        if (err)
            *err = str_printf("Le fichier « %s » ne peut pas être ouvert (%s). Vérifiez qu'il "
                              "existe et qu'il est lisible, puis réessayez.",
                              path, strerror(errno));
        if (info)
            memset(info, 0, sizeof(*info));
        return -1;
    }
    rc = run(&r, options, cb, userdata, info, err);
    fclose(r.fp);
    return rc;
}

int csvread_buffer(const char *data, size_t len, const struct csvread_options *options,
                   csvread_row_cb cb, void *userdata, struct csvread_info *info, char **err)
{
    struct reader r = {0};

    if (err)
        *err = NULL;
    r.mem = (const unsigned char *)data;
    r.mem_len = len;
    r.eof = len == 0;
    return run(&r, options, cb, userdata, info, err);
}
