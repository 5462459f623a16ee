/*
 * Normalisers for club file values. Every function decodes its UTF-8 input
 * one code point at a time (an invalid byte becomes U+FFFD and never ends a
 * read early), works on a bounded copy, and writes through struct out, which
 * truncates at a character boundary. No function keeps state, so all are
 * thread-safe. Case mapping, accent folding and the composition of
 * combining accents cover ASCII, Latin-1 Supplement and Latin Extended-A.
 * Other characters pass through unchanged, except that folding drops
 * combining marks (U+0300 to U+036F). Full Unicode normalisation (NFC) is
 * not done.
 */
#include "normalize.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define WORK_MAX 1024 /* bytes of input examined by the value normalisers */

/* Output buffer of a fixed size. Once one character does not fit, nothing
 * more is written, so a truncated value is a prefix of the full one. */
struct out {
    char *p;
    size_t size;
    size_t len;
    int full;
};

static void out_init(struct out *o, char *p, size_t size)
{
    o->p = p;
    o->size = p ? size : 0;
    o->len = 0;
    o->full = 0;
    if (o->size)
        o->p[0] = '\0';
}

/* Appends n bytes that form whole characters, or nothing when they do not fit. */
static void out_bytes(struct out *o, const char *s, size_t n)
{
    if (o->full || !o->size || o->len + n >= o->size) {
        o->full = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static size_t utf8_encode(uint32_t cp, char *s)
{
    if (cp < 0x80) {
        s[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        s[0] = (char)(0xC0 | (cp >> 6));
        s[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        s[0] = (char)(0xE0 | (cp >> 12));
        s[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        s[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    s[0] = (char)(0xF0 | (cp >> 18));
    s[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    s[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    s[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static void out_cp(struct out *o, uint32_t cp)
{
    char s[4];
    out_bytes(o, s, utf8_encode(cp, s));
}

/* Appends valid UTF-8 text, whole when it fits, otherwise its longest
 * prefix of whole characters. */
static void out_str(struct out *o, const char *s)
{
    size_t len = strlen(s);

    if (!o->full && o->size && o->len + len < o->size) {
        memcpy(o->p + o->len, s, len + 1);
        o->len += len;
        return;
    }
    while (*s && !o->full) {
        unsigned char c = (unsigned char)*s;
        size_t n = 1;

        if (c >= 0xF0)
            n = 4;
        else if (c >= 0xE0)
            n = 3;
        else if (c >= 0xC0)
            n = 2;
        if (strnlen(s, n) < n)
            n = strnlen(s, n);
        out_bytes(o, s, n);
        s += n;
    }
}

/* Decodes one code point from s (NUL-terminated) and advances *pos. An
 * invalid or truncated sequence yields U+FFFD and consumes one byte. */
static uint32_t utf8_next(const char *s, size_t *pos)
{
    const unsigned char *u = (const unsigned char *)s + *pos;
    uint32_t cp;
    size_t need;
    uint32_t min;

    if (u[0] < 0x80) {
        *pos += 1;
        return u[0];
    }
    if (u[0] >= 0xC2 && u[0] <= 0xDF) {
        need = 1;
        cp = u[0] & 0x1F;
        min = 0x80;
    } else if (u[0] >= 0xE0 && u[0] <= 0xEF) {
        need = 2;
        cp = u[0] & 0x0F;
        min = 0x800;
    } else if (u[0] >= 0xF0 && u[0] <= 0xF4) {
        need = 3;
        cp = u[0] & 0x07;
        min = 0x10000;
    } else {
        *pos += 1;
        return 0xFFFD;
    }
    for (size_t k = 1; k <= need; k++) {
        if ((u[k] & 0xC0) != 0x80) { /* also stops at the NUL */
            *pos += 1;
            return 0xFFFD;
        }
        cp = (cp << 6) | (u[k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        *pos += 1;
        return 0xFFFD;
    }
    *pos += need + 1;
    return cp;
}

static int is_space_cp(uint32_t cp)
{
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000 || cp < 0x20 || (cp >= 0x7F && cp <= 0x9F);
}

/* Invisible characters dropped everywhere: zero-width spaces and joiners, BOM. */
static int is_invisible_cp(uint32_t cp)
{
    return (cp >= 0x200B && cp <= 0x200D) || cp == 0x2060 || cp == 0xFEFF || cp == 0x00AD;
}

/* ASCII spelling of the Latin-1 Supplement and Latin Extended-A letters,
 * lower case; NULL for symbols. */
static const char *fold_latin(uint32_t cp)
{
    static const char *const latin1[64] = {
        "a", "a", "a", "a", "a", "a", "ae", "c",  "e", "e", "e", "e", "i", "i", "i",  "i",
        "d", "n", "o", "o", "o", "o", "o",  NULL, "o", "u", "u", "u", "u", "y", "th", "ss",
        "a", "a", "a", "a", "a", "a", "ae", "c",  "e", "e", "e", "e", "i", "i", "i",  "i",
        "d", "n", "o", "o", "o", "o", "o",  NULL, "o", "u", "u", "u", "u", "y", "th", "y",
    };
    static const struct {
        uint16_t first, last;
        const char *ascii;
    } extended[] = {
        {0x100, 0x105, "a"}, {0x106, 0x10D, "c"},  {0x10E, 0x111, "d"}, {0x112, 0x11B, "e"},
        {0x11C, 0x123, "g"}, {0x124, 0x127, "h"},  {0x128, 0x131, "i"}, {0x132, 0x133, "ij"},
        {0x134, 0x135, "j"}, {0x136, 0x138, "k"},  {0x139, 0x142, "l"}, {0x143, 0x14B, "n"},
        {0x14C, 0x151, "o"}, {0x152, 0x153, "oe"}, {0x154, 0x159, "r"}, {0x15A, 0x161, "s"},
        {0x162, 0x167, "t"}, {0x168, 0x173, "u"},  {0x174, 0x175, "w"}, {0x176, 0x178, "y"},
        {0x179, 0x17E, "z"}, {0x17F, 0x17F, "s"},
    };

    if (cp >= 0xC0 && cp <= 0xFF)
        return latin1[cp - 0xC0];
    for (size_t i = 0; i < sizeof(extended) / sizeof(extended[0]); i++)
        if (cp >= extended[i].first && cp <= extended[i].last)
            return extended[i].ascii;
    return NULL;
}

/* Letters for case mapping and word boundaries: ASCII, Latin-1 and
 * Latin Extended-A letters, and every code point above U+017F except
 * punctuation and spaces (scripts this file does not case-map). */
static int is_letter_cp(uint32_t cp)
{
    if (cp < 0x80)
        return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
    if (cp < 0xC0)
        return cp == 0xB5;
    if (cp <= 0x17F)
        return cp != 0xD7 && cp != 0xF7;
    if (cp >= 0x2000 && cp <= 0x206F)
        return 0;
    return !is_space_cp(cp) && !is_invisible_cp(cp) && cp != 0xFFFD;
}

static uint32_t lower_cp(uint32_t cp)
{
    if (cp >= 'A' && cp <= 'Z')
        return cp + 32;
    if ((cp >= 0xC0 && cp <= 0xDE && cp != 0xD7))
        return cp + 32;
    if (cp == 0x178)
        return 0xFF;
    if (cp == 0x130)
        return 'i';
    if ((cp >= 0x100 && cp <= 0x137) || (cp >= 0x14A && cp <= 0x177))
        return cp | 1;
    if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E))
        return (cp & 1) ? cp + 1 : cp;
    return cp;
}

static uint32_t upper_cp(uint32_t cp)
{
    if (cp >= 'a' && cp <= 'z')
        return cp - 32;
    if (cp >= 0xE0 && cp <= 0xFE && cp != 0xF7)
        return cp - 32;
    if (cp == 0xFF)
        return 0x178;
    if (cp == 0x131 || cp == 0x138 || cp == 0x149 || cp == 0x17F)
        return cp;
    if ((cp >= 0x100 && cp <= 0x137) || (cp >= 0x14A && cp <= 0x177))
        return cp & ~(uint32_t)1;
    if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E))
        return (cp & 1) ? cp : cp - 1;
    return cp;
}

/* Combining diacritical marks (U+0300 to U+036F), which decomposed text
 * (NFD, common in macOS exports) writes after the base letter. */
static int is_combining_mark(uint32_t cp)
{
    return cp >= 0x300 && cp <= 0x36F;
}

/* Returns the precomposed letter for base followed by mark, or 0 when this
 * table has none. It covers the capitals of Latin-1 Supplement and Latin
 * Extended-A with grave, acute, circumflex, tilde, diaeresis and cedilla.
 * Lower-case bases go through the capital and back. */
static uint32_t compose_mark(uint32_t base, uint32_t mark)
{
    static const struct {
        uint32_t mark;
        const char *bases;           /* ASCII capitals */
        const uint16_t composed[12]; /* the letter for each base, in order */
    } table[] = {
        /* grave, acute, circumflex */
        {0x300, "AEIOU", {0xC0, 0xC8, 0xCC, 0xD2, 0xD9}},
        {0x301,
         "ACEILNORSUYZ",
         {0xC1, 0x106, 0xC9, 0xCD, 0x139, 0x143, 0xD3, 0x154, 0x15A, 0xDA, 0xDD, 0x179}},
        {0x302,
         "ACEGHIJOSUWY",
         {0xC2, 0x108, 0xCA, 0x11C, 0x124, 0xCE, 0x134, 0xD4, 0x15C, 0xDB, 0x174, 0x176}},
        /* tilde, diaeresis, cedilla */
        {0x303, "AINOU", {0xC3, 0x128, 0xD1, 0xD5, 0x168}},
        {0x308, "AEIOUY", {0xC4, 0xCB, 0xCF, 0xD6, 0xDC, 0x178}},
        {0x327, "CGKLNRST", {0xC7, 0x122, 0x136, 0x13B, 0x145, 0x156, 0x15E, 0x162}},
    };
    int lower = base >= 'a' && base <= 'z';
    uint32_t capital = lower ? base - 32 : base;

    if (capital < 'A' || capital > 'Z')
        return 0;
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
        const char *hit;

        if (table[i].mark != mark)
            continue;
        hit = strchr(table[i].bases, (int)capital);
        if (!hit)
            return 0;
        capital = table[i].composed[hit - table[i].bases];
        return lower ? lower_cp(capital) : capital;
    }
    return 0;
}

/* Decodes the code point at *pos like utf8_next. When a combining mark
 * follows it and compose_mark has a letter for the pair, it consumes the
 * mark too and returns that letter ("e" + U+0301 -> "é"). Other marks are
 * left for the next call. */
static uint32_t utf8_next_composed(const char *s, size_t *pos)
{
    uint32_t cp = utf8_next(s, pos);
    size_t after = *pos;
    uint32_t composed;

    if (!s[after])
        return cp;
    composed = compose_mark(cp, utf8_next(s, &after));
    if (!composed)
        return cp;
    *pos = after;
    return composed;
}

/* Writes the ASCII fold of in to o: lower case, accents removed (including
 * combining marks, so decomposed and precomposed text fold alike), and
 * everything that is not a letter or digit turned into one space (or
 * dropped with alnum_only). Non-Latin letters are copied. */
static void fold_into(const char *in, struct out *o, int alnum_only)
{
    size_t pos = 0;
    int pending_space = 0;

    while (in[pos] && !o->full) {
        uint32_t cp = utf8_next(in, &pos);
        const char *ascii = NULL;
        char c[2] = {0, 0};

        if (is_invisible_cp(cp) || is_combining_mark(cp))
            continue;
        if (cp < 0x80 && ((cp | 0x20) - 'a' < 26 || cp - '0' < 10)) {
            c[0] = (char)(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp);
            ascii = c;
        } else if (cp >= 0xC0 && cp <= 0x17F) {
            ascii = fold_latin(cp);
        } else if (cp >= 0x180 && is_letter_cp(cp)) {
            if (pending_space && o->len)
                out_str(o, " ");
            pending_space = 0;
            out_cp(o, cp);
            continue;
        }
        if (!ascii) {
            pending_space = !alnum_only;
            continue;
        }
        if (pending_space && o->len)
            out_str(o, " ");
        pending_space = 0;
        out_str(o, ascii);
    }
}

/* Set of placeholders a normaliser maps to empty. Names get a short list,
 * because "Nil", "Na", "Nd", "Null" or "X" are real first names or
 * surnames. Other values get the longer list. */
enum placeholder_set {
    PLACEHOLDERS_TEXT,
    PLACEHOLDERS_NAME,
};

/* Returns 1 when text contains no letter and no digit: ".", "-", "?",
 * "***", "–". Invalid bytes (U+FFFD) count as content. */
static int lacks_letter_and_digit(const char *text)
{
    size_t pos = 0;

    while (text[pos]) {
        uint32_t cp = utf8_next(text, &pos);

        if ((cp >= '0' && cp <= '9') || is_letter_cp(cp) || cp == 0xFFFD)
            return 0;
    }
    return 1;
}

/* Returns 1 when the whole of text (trimmed and collapsed) is a placeholder
 * that means "nothing". The words are compared after folding, and only with
 * the whole value, so "Sans-Souci" or "Xavier" are never placeholders. */
static int is_placeholder(const char *text, enum placeholder_set set)
{
    /* Unambiguous markers, for every kind of value. */
    static const char *const markers[] = {
        "neant",           "inconnu",     "inconnue",  "non renseigne", "non renseignee",
        "non renseigne e", "a completer", "undefined", "unknown",       NULL,
    };
    /* Short words that are placeholders in an address or a city, but may be
     * a name. "sans" and "vide" are on neither list: "Sans" is a surname. */
    static const char *const short_words[] = {
        "x",  "xx",  "xxx", "n a",  "na",   "nc",    "n c",    "nr", "n r",
        "nd", "n d", "nil", "null", "none", "aucun", "aucune", NULL,
    };
    /* Room for the longest word above, "non renseigne e", and one more
     * byte, so a longer fold stops early and marks the buffer full. */
    char key[17];
    struct out o;

    if (lacks_letter_and_digit(text))
        return 1;
    if (strcasecmp(text, "n/a") == 0)
        return 1;
    if (strlen(text) >= 64)
        return 0; /* a value this long is data, even when it folds short */
    out_init(&o, key, sizeof(key));
    fold_into(text, &o, 0);
    if (o.full)
        return 0;
    for (size_t i = 0; markers[i]; i++)
        if (strcmp(key, markers[i]) == 0)
            return 1;
    if (set == PLACEHOLDERS_NAME)
        return 0;
    for (size_t i = 0; short_words[i]; i++)
        if (strcmp(key, short_words[i]) == 0)
            return 1;
    return 0;
}

/* Trims and collapses white space of in into o, drops invisible characters
 * and composes the accented letters listed in compose_mark. Returns 1 if
 * anything was written. */
static int collapse_into(const char *in, struct out *o)
{
    size_t pos = 0;
    int pending_space = 0;

    while (in[pos]) {
        uint32_t cp = utf8_next_composed(in, &pos);

        if (is_invisible_cp(cp))
            continue;
        if (is_space_cp(cp)) {
            pending_space = 1;
            continue;
        }
        if (pending_space && o->len)
            out_str(o, " ");
        pending_space = 0;
        out_cp(o, cp);
    }
    return o->len > 0;
}

static enum norm_status prepare(const char *in, char *work, enum placeholder_set set);

enum norm_status norm_text(const char *in, char *out, size_t size)
{
    char work[WORK_MAX];
    struct out o;

    out_init(&o, out, size);
    if (prepare(in, work, PLACEHOLDERS_TEXT) == NORM_EMPTY)
        return NORM_EMPTY;
    collapse_into(in, &o); /* the full text: it may be longer than work */
    return NORM_OK;
}

void norm_utf8_repair(const char *in, char *out, size_t size)
{
    struct out o;
    size_t pos = 0;

    out_init(&o, out, size);
    while (in[pos] && !o.full)
        out_cp(&o, utf8_next(in, &pos));
}

enum norm_status norm_fold(const char *in, char *out, size_t size, int alnum_only)
{
    struct out o;

    out_init(&o, out, size);
    if (!in)
        return NORM_EMPTY;
    fold_into(in, &o, alnum_only);
    return o.len ? NORM_OK : NORM_EMPTY;
}

/* Copies in trimmed into out (for NORM_INVALID) and returns NORM_INVALID. */
static enum norm_status invalid(const char *in, char *out, size_t size)
{
    struct out o;

    out_init(&o, out, size);
    collapse_into(in, &o);
    return NORM_INVALID;
}

/* Trimmed, collapsed copy of in, at most WORK_MAX bytes. Returns NORM_EMPTY
 * for empty input and the placeholders of set, NORM_INVALID when in is
 * longer than the work buffer (no value normalised here is that long),
 * NORM_OK otherwise. */
static enum norm_status prepare(const char *in, char *work, enum placeholder_set set)
{
    struct out o;

    if (!in)
        return NORM_EMPTY;
    if (strnlen(in, 4 * WORK_MAX) >= 4 * WORK_MAX)
        return NORM_INVALID;
    out_init(&o, work, WORK_MAX);
    if (!collapse_into(in, &o))
        return NORM_EMPTY;
    if (o.len >= WORK_MAX - 4)
        return NORM_INVALID;
    if (is_placeholder(work, set))
        return NORM_EMPTY;
    return NORM_OK;
}

/* Runs prepare() for a value normaliser: on anything but NORM_OK the output
 * is already written. */
static enum norm_status begin_with(const char *in, char *work, char *out, size_t size,
                                   enum placeholder_set set)
{
    enum norm_status status = prepare(in, work, set);
    struct out o;

    out_init(&o, out, size);
    if (status == NORM_INVALID)
        return invalid(in, out, size);
    return status;
}

/* begin_with() for every value except names. */
static enum norm_status begin(const char *in, char *work, char *out, size_t size)
{
    return begin_with(in, work, out, size, PLACEHOLDERS_TEXT);
}

/* Case of one name token (no spaces): a capital after every non-letter. */
static void name_token(const char *token, size_t len, struct out *o, int particle)
{
    size_t pos = 0;
    int capital = !particle;
    char copy[WORK_MAX];

    memcpy(copy, token, len);
    copy[len] = '\0';
    while (copy[pos]) {
        uint32_t cp = utf8_next(copy, &pos);

        if (is_letter_cp(cp)) {
            out_cp(o, capital ? upper_cp(cp) : lower_cp(cp));
            capital = 0;
        } else {
            out_cp(o, cp);
            /* "d'" as a particle keeps the next letter a capital: d'Artagnan */
            capital = 1;
        }
    }
}

/* Particles that stay lower case: "de", "du", "des", and a token starting with "d'". */
static int particle_kind(const char *token, size_t len)
{
    char key[8];
    struct out o;
    char copy[16];

    if (len >= 2 && (token[0] | 0x20) == 'd' &&
        (token[1] == '\'' || (len >= 4 && memcmp(token + 1, "\xE2\x80\x99", 3) == 0)))
        return 2;
    if (len > 3)
        return 0;
    memcpy(copy, token, len);
    copy[len] = '\0';
    out_init(&o, key, sizeof(key));
    fold_into(copy, &o, 0);
    return strcmp(key, "de") == 0 || strcmp(key, "du") == 0 || strcmp(key, "des") == 0;
}

/* Returns 1 for a Dutch elided article typed in lower case: an apostrophe
 * (', ’ or ‘) and one lower-case ASCII letter, as in "'t Hooft" or
 * "'s Jacob". */
static int is_elided_article(const char *token, size_t len)
{
    size_t quote_len;

    if (len == 2 && token[0] == '\'')
        quote_len = 1;
    else if (len == 4 &&
             (memcmp(token, "\xE2\x80\x99", 3) == 0 || memcmp(token, "\xE2\x80\x98", 3) == 0))
        quote_len = 3;
    else
        return 0;
    return token[quote_len] >= 'a' && token[quote_len] <= 'z';
}

enum norm_status norm_name(const char *in, char *out, size_t size)
{
    char work[WORK_MAX];
    enum norm_status status = begin_with(in, work, out, size, PLACEHOLDERS_NAME);
    struct out o;
    size_t pos = 0;
    int single;

    if (status != NORM_OK)
        return status;
    single = strchr(work, ' ') == NULL;
    out_init(&o, out, size);
    while (work[pos]) {
        size_t len = strcspn(work + pos, " ");
        int kind = particle_kind(work + pos, len);

        if (kind == 1 && single)
            kind = 0; /* "De" alone is a name, not a particle */

        if (o.len)
            out_str(&o, " ");
        if (work[pos + len] == ' ' && is_elided_article(work + pos, len)) {
            /* "'t Hooft" keeps its "'t"; typed "'T HOOFT", it stays "'T Hooft" */
            out_bytes(&o, work + pos, len);
        } else if (kind == 1) {
            name_token(work + pos, len, &o, 1);
        } else if (kind == 2) {
            /* "D'ALMEIDA" -> "d'Almeida": the particle is lower case, the rest a name */
            size_t plen = work[pos + 1] == '\'' ? 2 : 4;
            out_str(&o, "d");
            out_bytes(&o, work + pos + 1, plen - 1);
            name_token(work + pos + plen, len - plen, &o, 0);
        } else {
            name_token(work + pos, len, &o, 0);
        }
        pos += len;
        while (work[pos] == ' ')
            pos++;
    }
    return NORM_OK;
}

/* --- Phones ------------------------------------------------------------- */

enum norm_status norm_phone(const char *in, char *out, size_t size)
{
    char work[WORK_MAX];
    enum norm_status status = begin(in, work, out, size);
    char digits[24];
    size_t n = 0;
    int plus = 0;
    struct out o;
    const char *national;
    size_t national_len;

    if (status != NORM_OK)
        return status;

    /* "+33 (0)6 12..." and "+44 (0)20...": the "(0)" is a trunk prefix, not a digit. */
    for (size_t i = 0; work[i]; i++) {
        char c = work[i];

        if (c == '(' && work[i + 1] == '0' && work[i + 2] == ')' && (plus || n > 0)) {
            i += 2;
            continue;
        }
        if (c >= '0' && c <= '9') {
            if (n == sizeof(digits) - 1)
                return invalid(in, out, size);
            digits[n++] = c;
        } else if (c == '+' && n == 0 && !plus) {
            plus = 1;
        } else if (!strchr(" .-/()", c)) {
            return invalid(in, out, size);
        }
    }
    digits[n] = '\0';

    out_init(&o, out, size);
    if (!plus && n >= 2 && digits[0] == '0' && digits[1] == '0') {
        plus = 1; /* 00 international prefix */
        memmove(digits, digits + 2, n - 1);
        n -= 2;
    }

    if (plus) {
        if (n >= 2 && digits[0] == '3' && digits[1] == '3') {
            national = digits + 2;
            national_len = n - 2;
            if (national_len == 10 && national[0] == '0') { /* "+33 06 12..." */
                national++;
                national_len--;
            }
        } else {
            /* E.164: a country code never starts with 0, at most 15 digits. */
            if (n < 8 || n > 15 || digits[0] == '0')
                return invalid(in, out, size);
            out_str(&o, "+");
            out_str(&o, digits);
            return NORM_OK;
        }
    } else if (n == 10 && digits[0] == '0') {
        national = digits + 1;
        national_len = 9;
    } else if (n == 9) {
        national = digits; /* a spreadsheet dropped the leading zero */
        national_len = 9;
    } else {
        return invalid(in, out, size);
    }
    if (national_len != 9 || national[0] == '0')
        return invalid(in, out, size);
    out_str(&o, "+33");
    out_str(&o, national);
    return NORM_OK;
}

/* --- Postcodes ---------------------------------------------------------- */

/* France and the overseas departments, whose postcodes follow French rules. */
static int uses_french_postcodes(const char *country)
{
    static const char *const codes[] = {"FR", "GP", "MQ", "GF", "RE", "YT", "MC"};

    if (!country || !*country)
        return 1;
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
        if (strcasecmp(country, codes[i]) == 0)
            return 1;
    return 0;
}

enum norm_status norm_postcode(const char *in, const char *country_iso2, char *out, size_t size)
{
    char work[WORK_MAX];
    enum norm_status status = begin(in, work, out, size);
    char digits[8];
    size_t n = 0;
    const char *p = work;
    struct out o;

    if (status != NORM_OK)
        return status;
    out_init(&o, out, size);
    if (!uses_french_postcodes(country_iso2)) {
        out_str(&o, work);
        return NORM_OK;
    }

    /* "F-75001" and "FR-75001" are the old postal forms of a French code. */
    if ((p[0] | 0x20) == 'f' && (p[1] == '-' || ((p[1] | 0x20) == 'r' && p[2] == '-')))
        p += p[1] == '-' ? 2 : 3;
    for (; *p; p++) {
        if (*p == ' ')
            continue; /* "84 000" */
        if (*p < '0' || *p > '9' || n == 5)
            return invalid(in, out, size);
        digits[n++] = *p;
    }
    digits[n] = '\0';
    if (n == 4)
        out_str(&o, "0");
    else if (n != 5)
        return invalid(in, out, size);
    out_str(&o, digits);
    return NORM_OK;
}

/* --- E-mail ------------------------------------------------------------- */

static int email_local_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || strchr("!#$%&'*+/=?^_`{|}~.-", c);
}

/* local@domain.tld, ASCII only (addresses with accents are almost always
 * typing mistakes in club files), lower case. */
static int email_valid(const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);
    size_t local_len;
    const char *domain;
    size_t domain_len;
    size_t label = 0;
    const char *last_dot = NULL;

    if (!at || len > 254 || memchr(at + 1, '@', len - (size_t)(at - s) - 1))
        return 0;
    local_len = (size_t)(at - s);
    domain = at + 1;
    domain_len = len - local_len - 1;
    if (local_len == 0 || local_len > 64 || domain_len < 4)
        return 0;
    if (s[0] == '.' || s[local_len - 1] == '.')
        return 0;
    for (size_t i = 0; i < local_len; i++) {
        if (!email_local_char(s[i]) || (s[i] == '.' && s[i + 1] == '.'))
            return 0;
    }
    for (size_t i = 0; i < domain_len; i++) {
        char c = domain[i];
        if (c == '.') {
            if (label == 0 || domain[i - 1] == '-')
                return 0;
            label = 0;
            last_dot = domain + i;
        } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-') {
            if (label == 0 && c == '-')
                return 0;
            if (++label > 63)
                return 0;
        } else {
            return 0;
        }
    }
    if (!last_dot || label < 2 || domain[domain_len - 1] == '-')
        return 0;
    for (const char *t = last_dot + 1; t < domain + domain_len; t++)
        if (*t < 'a' || *t > 'z')
            return 0; /* the top-level domain is letters */
    return 1;
}

enum norm_status norm_email(const char *in, char *out, size_t size, char *second,
                            size_t second_size)
{
    char work[WORK_MAX];
    enum norm_status status = begin(in, work, out, size);
    const char *tokens[2];
    size_t lengths[2];
    size_t count = 0;
    char *p;
    struct out o;

    if (second && second_size)
        second[0] = '\0';
    if (status != NORM_OK)
        return status;

    for (p = work; *p; p++) {
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p + 32);
        else if (*p == ';' || *p == ',' || *p == '/' || *p == ' ')
            *p = ' ';
    }
    if (strncmp(work, "mailto:", 7) == 0)
        memset(work, ' ', 7);

    p = work;
    while (*p) {
        size_t len;

        while (*p == ' ')
            p++;
        len = strcspn(p, " ");
        if (len == 0)
            break;
        if (!(len == 2 && memcmp(p, "et", 2) == 0) && !(len == 1 && *p == '&')) {
            if (count == 2)
                return invalid(in, out, size); /* three addresses, or a name and an address */
            tokens[count] = p;
            lengths[count] = len;
            count++;
        }
        p += len;
    }
    if (count == 0)
        return NORM_EMPTY;
    for (size_t i = 0; i < count; i++)
        if (!email_valid(tokens[i], lengths[i]))
            return invalid(in, out, size);

    out_init(&o, out, size);
    out_bytes(&o, tokens[0], lengths[0]);
    if (count == 2 && second) {
        struct out o2;
        out_init(&o2, second, second_size);
        out_bytes(&o2, tokens[1], lengths[1]);
    }
    return NORM_OK;
}

/* --- Dates -------------------------------------------------------------- */

/* Reads exactly between min and max digits; returns the count, 0 if none. */
static int read_number(const char **p, int min, int max, int *value)
{
    int n = 0;

    *value = 0;
    while (n < max && **p >= '0' && **p <= '9') {
        *value = *value * 10 + (**p - '0');
        (*p)++;
        n++;
    }
    if (n < min || (**p >= '0' && **p <= '9'))
        return 0;
    return n;
}

static int days_in_month(int year, int month)
{
    static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

    return month == 2 && leap ? 29 : days[month - 1];
}

/* " hh:mm[:ss]" or "Thh:mm[:ss]" after a date, validated. */
static int read_time(const char *p)
{
    int h, m, s;

    if (*p == '\0')
        return 1;
    if (*p != ' ' && *p != 'T')
        return 0;
    p++;
    if (!read_number(&p, 1, 2, &h) || *p++ != ':' || !read_number(&p, 2, 2, &m))
        return 0;
    if (*p == ':') {
        p++;
        if (!read_number(&p, 2, 2, &s) || s > 59)
            return 0;
    }
    return *p == '\0' && h < 24 && m < 60;
}

enum norm_status norm_date(const char *in, char *out, size_t size)
{
    char work[WORK_MAX];
    enum norm_status status = begin(in, work, out, size);
    const char *p = work;
    int year, month, day;
    int first;
    int n;
    char sep;
    struct out o;
    char text[11];

    if (status != NORM_OK)
        return status;

    n = read_number(&p, 1, 4, &first);
    sep = *p;
    if (!n || (sep != '/' && sep != '-' && sep != '.'))
        return invalid(in, out, size);
    p++;
    if (n == 4) { /* yyyy-mm-dd, yyyy/mm/dd */
        year = first;
        if (!read_number(&p, 1, 2, &month) || *p++ != sep || !read_number(&p, 1, 2, &day))
            return invalid(in, out, size);
    } else if (n <= 2) { /* dd/mm/yyyy */
        day = first;
        if (!read_number(&p, 1, 2, &month) || *p++ != sep || read_number(&p, 4, 4, &year) != 4)
            return invalid(in, out, size);
    } else {
        return invalid(in, out, size);
    }
    if (!read_time(p))
        return invalid(in, out, size);

    if (year == 0 && month == 0 && day == 0) {
        out_init(&o, out, size);
        return NORM_EMPTY; /* "0000-00-00": unknown */
    }
    if (year < 1900 || year > 2100 || month < 1 || month > 12 || day < 1 ||
        day > days_in_month(year, month))
        return invalid(in, out, size);

    /* The checks above bound year to four digits, month and day to two. */
    text[0] = (char)('0' + year / 1000);
    text[1] = (char)('0' + year / 100 % 10);
    text[2] = (char)('0' + year / 10 % 10);
    text[3] = (char)('0' + year % 10);
    text[4] = '-';
    text[5] = (char)('0' + month / 10);
    text[6] = (char)('0' + month % 10);
    text[7] = '-';
    text[8] = (char)('0' + day / 10);
    text[9] = (char)('0' + day % 10);
    text[10] = '\0';
    out_init(&o, out, size);
    out_str(&o, text);
    return NORM_OK;
}

/* --- Licence, Galop, sex ------------------------------------------------ */

/* Skips the ASCII word at *s, in any case, and the spaces and one ':'
 * after it. Returns 0 and leaves *s unchanged when s does not start with it. */
static int skip_word(const char **s, const char *word)
{
    size_t n = strlen(word);

    if (strncasecmp(*s, word, n) != 0)
        return 0;
    *s += n;
    while (**s == ' ')
        (*s)++;
    if (**s == ':')
        (*s)++;
    while (**s == ' ')
        (*s)++;
    return 1;
}

/* Skips the words people write before a licence number: "Licence",
 * "License", then "N°" or "Nº" (masculine ordinal), in any case. */
static const char *skip_licence_prefix(const char *s)
{
    if (!skip_word(&s, "licence"))
        skip_word(&s, "license");
    if (!skip_word(&s, "n\xC2\xB0"))
        skip_word(&s, "n\xC2\xBA");
    return s;
}

enum norm_status norm_licence(const char *in, char *out, size_t size)
{
    char work[WORK_MAX];
    enum norm_status status = begin(in, work, out, size);
    char licence[9];
    size_t n = 0;
    int hyphen_seen = 0;
    struct out o;

    if (status != NORM_OK)
        return status;
    for (const char *p = skip_licence_prefix(work); *p; p++) {
        if (*p == ' ')
            continue;
        if (*p == '-' && n == 7 && !hyphen_seen) {
            hyphen_seen = 1; /* "1234567-A": a hyphen only before the letter */
            continue;
        }
        if (n == 8)
            return invalid(in, out, size);
        licence[n++] = *p;
    }
    licence[n] = '\0';
    if (n != 8)
        return invalid(in, out, size);
    for (size_t i = 0; i < 7; i++)
        if (licence[i] < '0' || licence[i] > '9')
            return invalid(in, out, size);
    if ((licence[7] | 0x20) < 'a' || (licence[7] | 0x20) > 'z')
        return invalid(in, out, size);
    licence[7] = (char)(licence[7] & ~0x20);
    out_init(&o, out, size);
    out_str(&o, licence);
    return NORM_OK;
}

static int skip_prefix(const char **s, const char *prefix)
{
    size_t n = strlen(prefix);

    if (strncmp(*s, prefix, n) != 0)
        return 0;
    *s += n;
    return 1;
}

/* "bronze", "argent" or "or", optionally after "de" or "d" (from "d'"). */
static const char *galop_metal(const char *s)
{
    static const char *const metals[] = {"bronze", "argent", "or"};

    for (int pass = 0; pass < 3; pass++) {
        const char *p = s;
        if (pass == 1 && !skip_prefix(&p, "de"))
            continue;
        if (pass == 2 && !skip_prefix(&p, "d"))
            continue;
        for (size_t i = 0; i < 3; i++)
            if (strcmp(p, metals[i]) == 0)
                return metals[i];
    }
    return NULL;
}

enum norm_status norm_galop(const char *in, char *out, size_t size)
{
    char work[WORK_MAX];
    enum norm_status status = begin(in, work, out, size);
    char key[WORK_MAX];
    struct out o;
    const char *p = key;
    const char *metal;
    int galop_word;

    if (status != NORM_OK)
        return status;
    out_init(&o, key, sizeof(key));
    fold_into(work, &o, 1); /* "Galop Poney d'Or" -> "galopponeydor" */

    galop_word = skip_prefix(&p, "galop") || skip_prefix(&p, "niveau");
    if (!galop_word && p[0] == 'g' && p[1] >= '0' && p[1] <= '9')
        p++; /* "G3" */
    out_init(&o, out, size);
    if (p[0] >= '0' && p[0] <= '9' && p[1] == '\0') {
        if (p[0] == '0')
            return NORM_EMPTY;
        out_str(&o, "galop-");
        out_bytes(&o, p, 1);
        return NORM_OK;
    }
    if (skip_prefix(&p, "poney")) {
        metal = galop_metal(p);
        if (!metal)
            return invalid(in, out, size);
        out_str(&o, "poney-");
        out_str(&o, metal);
        return NORM_OK;
    }
    metal = galop_word ? galop_metal(p) : NULL;
    if (!metal)
        return invalid(in, out, size);
    out_str(&o, "galop-");
    out_str(&o, metal);
    return NORM_OK;
}

static int in_list(const char *key, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(key, *list) == 0)
            return 1;
    return 0;
}

enum norm_status norm_sex(const char *in, char *out, size_t size)
{
    static const char *const female[] = {
        "f",     "femme",  "feminin", "feminine", "mme", "madame", "mlle", "mademoiselle",
        "fille", "female", "woman",   "w",        "2",   NULL};
    static const char *const male[] = {"m",        "h",      "homme", "masculin", "mr", "m r",
                                       "monsieur", "garcon", "male",  "man",      "1",  NULL};
    char work[WORK_MAX];
    enum norm_status status = begin(in, work, out, size);
    char key[64];
    struct out o;

    if (status != NORM_OK)
        return status;
    if (strlen(work) >= sizeof(key))
        return invalid(in, out, size);
    out_init(&o, key, sizeof(key));
    fold_into(work, &o, 0);
    out_init(&o, out, size);
    if (in_list(key, female)) {
        out_str(&o, "F");
        return NORM_OK;
    }
    if (in_list(key, male)) {
        out_str(&o, "M");
        return NORM_OK;
    }
    return invalid(in, out, size);
}

/* --- Countries ---------------------------------------------------------- */

struct country {
    const char *iso2;
    const char *iso3;
    const char *names; /* folded names, '|'-separated */
};

/* Names are written folded (lower case, no accents, punctuation as spaces)
 * because the input is folded the same way before the lookup. */
static const struct country countries[] = {
    /* European Union */
    {"AT", "AUT", "autriche|austria|osterreich"},
    {"BE", "BEL", "belgique|belgium|belgie"},
    {"BG", "BGR", "bulgarie|bulgaria"},
    {"HR", "HRV", "croatie|croatia|hrvatska"},
    {"CY", "CYP", "chypre|cyprus"},
    {"CZ", "CZE", "tchequie|republique tcheque|czechia|czech republic"},
    {"DK", "DNK", "danemark|denmark|danmark"},
    {"EE", "EST", "estonie|estonia"},
    {"FI", "FIN", "finlande|finland|suomi"},
    {"FR", "FRA",
     "france|france metropolitaine|republique francaise|guadeloupe|martinique|guyane|"
     "guyane francaise|french guiana|reunion|ile de la reunion|mayotte"},
    {"DE", "DEU", "allemagne|germany|deutschland|rfa"},
    {"GR", "GRC", "grece|greece"},
    {"HU", "HUN", "hongrie|hungary"},
    {"IE", "IRL", "irlande|ireland|eire"},
    {"IT", "ITA", "italie|italy|italia"},
    {"LV", "LVA", "lettonie|latvia"},
    {"LT", "LTU", "lituanie|lithuania"},
    {"LU", "LUX", "luxembourg|grand duche de luxembourg"},
    {"MT", "MLT", "malte|malta"},
    {"NL", "NLD", "pays bas|netherlands|hollande|holland|nederland"},
    {"PL", "POL", "pologne|poland|polska"},
    {"PT", "PRT", "portugal"},
    {"RO", "ROU", "roumanie|romania"},
    {"SK", "SVK", "slovaquie|slovakia"},
    {"SI", "SVN", "slovenie|slovenia"},
    {"ES", "ESP", "espagne|spain|espana"},
    {"SE", "SWE", "suede|sweden|sverige"},
    /* Europe outside the Union */
    {"GB", "GBR",
     "royaume uni|united kingdom|uk|grande bretagne|great britain|angleterre|england|"
     "ecosse|scotland|pays de galles|wales|irlande du nord|northern ireland"},
    {"CH", "CHE", "suisse|switzerland|schweiz|svizzera"},
    {"NO", "NOR", "norvege|norway|norge"},
    {"IS", "ISL", "islande|iceland"},
    {"LI", "LIE", "liechtenstein"},
    {"MC", "MCO", "monaco|principaute de monaco"},
    {"AD", "AND", "andorre|andorra"},
    {"UA", "UKR", "ukraine"},
    {"TR", "TUR", "turquie|turkey|turkiye"},
    {"RU", "RUS", "russie|russia"},
    /* Americas */
    {"US", "USA",
     "etats unis|etats unis d amerique|united states|united states of america|usa|amerique"},
    {"CA", "CAN", "canada"},
    {"BR", "BRA", "bresil|brazil|brasil"},
    {"AR", "ARG", "argentine|argentina"},
    {"MX", "MEX", "mexique|mexico"},
    /* Africa */
    {"MA", "MAR", "maroc|morocco"},
    {"DZ", "DZA", "algerie|algeria"},
    {"TN", "TUN", "tunisie|tunisia"},
    {"SN", "SEN", "senegal"},
    {"CI", "CIV", "cote d ivoire|ivory coast"},
    {"CM", "CMR", "cameroun|cameroon"},
    {"ML", "MLI", "mali"},
    {"MG", "MDG", "madagascar"},
    /* Elsewhere */
    {"LB", "LBN", "liban|lebanon"},
    {"CN", "CHN", "chine|china"},
    {"JP", "JPN", "japon|japan"},
    {"AU", "AUS", "australie|australia"},
};

/* The ISO 3166-1 codes of the overseas departments, which are France. */
static const char *const overseas_codes[] = {"gp", "glp", "mq", "mtq", "gf", "guf",
                                             "re", "reu", "yt", "myt", NULL};

static int name_in_list(const char *key, const char *names)
{
    size_t len = strlen(key);

    while (*names) {
        size_t n = strcspn(names, "|");
        if (n == len && memcmp(names, key, n) == 0)
            return 1;
        names += n;
        if (*names == '|')
            names++;
    }
    return 0;
}

enum norm_status norm_country(const char *in, char *out, size_t size)
{
    static const char *const articles[] = {"la ", "le ", "les ", "l ", "the ", NULL};
    char work[WORK_MAX];
    enum norm_status status = begin(in, work, out, size);
    char folded[WORK_MAX];
    const char *key = folded;
    struct out o;

    if (status != NORM_OK)
        return status;
    out_init(&o, folded, sizeof(folded));
    fold_into(work, &o, 0);
    for (size_t i = 0; articles[i]; i++)
        if (strncmp(key, articles[i], strlen(articles[i])) == 0)
            key += strlen(articles[i]);

    out_init(&o, out, size);
    if (in_list(key, overseas_codes)) {
        out_str(&o, "FR");
        return NORM_OK;
    }
    for (size_t i = 0; i < sizeof(countries) / sizeof(countries[0]); i++) {
        const struct country *c = &countries[i];
        if (strcasecmp(key, c->iso2) == 0 || strcasecmp(key, c->iso3) == 0 ||
            name_in_list(key, c->names)) {
            out_str(&o, c->iso2);
            return NORM_OK;
        }
    }
    return invalid(in, out, size);
}
