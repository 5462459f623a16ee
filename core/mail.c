/*
 * Template rendering and RFC 5322 message building. Contents:
 *   - checks on header values (UTF-8, control characters, addresses);
 *   - header encoding: RFC 2047 encoded-words and folding;
 *   - message assembly: Date, Message-ID, MIME parts in base64;
 *   - templates: reading the files and substituting {{placeholders}}.
 *
 * Base64 comes from libsodium; randomness from randombytes_buf.
 */
#include "mail.h"
#include "util.h"

#include <sodium.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LINE_SOFT_MAX 78   /* RFC 5322 2.1.1: lines SHOULD stay within 78 characters */
#define WORD_INPUT_MAX 36  /* UTF-8 bytes per encoded-word: 48 base64 chars, 60 in all */
#define BASE64_LINE_INPUT 57 /* bytes per base64 line: 76 characters (RFC 2045 6.8) */
#define MESSAGE_MAX (3 * MAIL_BODY_MAX) /* whole message; base64 adds a third per part */

/* ---- Checks on values ---------------------------------------------------- */

/* Returns true when s[0..len) is well-formed UTF-8 without overlong forms,
 * surrogates or code points above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t len)
{
    size_t i = 0;

    while (i < len) {
        unsigned char c = s[i];
        size_t need;
        unsigned int cp;

        if (c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf) {
            need = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            need = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + need >= len)
            return false;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10ffff ||
            (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += need + 1;
    }
    return true;
}

/* Returns true when s contains a C0 control character or DEL. Tab counts:
 * no header Licol writes needs one. */
static bool has_control(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p == 0x7f)
            return true;
    }
    return false;
}

static bool is_plain_ascii(const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p > 0x7e)
            return false;
    }
    /* Text that looks like an encoded-word would be decoded by readers. */
    return strstr(s, "=?") == NULL;
}

int mail_address_check(const char *address)
{
    const char *at;
    size_t len;

    if (!address)
        return -1;
    len = strlen(address);
    if (len < 3 || len > MAIL_ADDRESS_MAX)
        return -1;
    for (const unsigned char *p = (const unsigned char *)address; *p; p++) {
        if (*p <= 0x20 || *p >= 0x7f || strchr("<>()[]\\,;:\"", *p))
            return -1;
    }
    at = strchr(address, '@');
    if (!at || at == address || strchr(at + 1, '@'))
        return -1;
    if (at[1] == '\0' || at[1] == '.' || address[len - 1] == '.' || strstr(at, ".."))
        return -1;
    if (address[0] == '.' || at[-1] == '.' || strstr(address, ".."))
        return -1;
    return 0;
}

/* Checks one header value against injection and caps. Returns 0, or -1 with
 * *err naming the field. */
static int check_header_value(const char *field, const char *value, size_t cap, char **err)
{
    size_t len = strlen(value);

    if (has_control(value)) {
        *err = str_printf("Le champ %s contient un retour à la ligne ou un caractère de "
                          "contrôle, ce qui est interdit dans un en-tête de mail. Retirez-le.",
                          field);
        return -1;
    }
    if (len > cap) {
        *err = str_printf("Le champ %s est trop long (%zu octets, maximum %zu).", field, len, cap);
        return -1;
    }
    if (!utf8_valid((const unsigned char *)value, len)) {
        *err = str_printf("Le champ %s n'est pas du texte UTF-8 valide.", field);
        return -1;
    }
    return 0;
}

/* ---- Header encoding ----------------------------------------------------- */

/* Appends one token to a header line, preceded by a space, or by CRLF and a
 * space when the token would push the line past LINE_SOFT_MAX. A token that
 * is longer than a whole line still goes on its own line, unsplit. */
static int append_token(struct buf *out, size_t *column, const char *token, size_t len)
{
    if (*column + 1 + len > LINE_SOFT_MAX && len > 0) {
        if (buf_appendz(out, "\r\n") < 0)
            return -1;
        *column = 0;
    }
    if (buf_append(out, " ", 1) < 0 || buf_append(out, token, len) < 0)
        return -1;
    *column += 1 + len;
    return 0;
}

/* Length of the longest prefix of s[0..len) of at most max bytes that ends on
 * a UTF-8 character boundary. */
static size_t utf8_prefix(const char *s, size_t len, size_t max)
{
    size_t n = len < max ? len : max;

    while (n < len && n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

/* Appends value as a series of "=?UTF-8?B?...?=" encoded-words (RFC 2047),
 * each holding whole UTF-8 characters and at most 60 characters long, so a
 * word always fits on a folded line. Readers drop the folding whitespace
 * between adjacent encoded-words, so the text decodes back unchanged. */
static int append_encoded_words(struct buf *out, size_t *column, const char *value)
{
    size_t len = strlen(value);
    size_t pos = 0;

    while (pos < len) {
        char b64[sodium_base64_ENCODED_LEN(WORD_INPUT_MAX, sodium_base64_VARIANT_ORIGINAL)];
        char word[sizeof(b64) + 16];
        size_t n = utf8_prefix(value + pos, len - pos, WORD_INPUT_MAX);
        int word_len;

        sodium_bin2base64(b64, sizeof(b64), (const unsigned char *)value + pos, n,
                          sodium_base64_VARIANT_ORIGINAL);
        word_len = snprintf(word, sizeof(word), "=?UTF-8?B?%s?=", b64);
        if (append_token(out, column, word, (size_t)word_len) < 0)
            return -1;
        pos += n;
    }
    return 0;
}

/* Appends printable ASCII text split at its spaces, folding where needed.
 * Folding only inserts CRLF before an existing space, so unfolding restores
 * the text exactly. */
static int append_folded_ascii(struct buf *out, size_t *column, const char *value)
{
    const char *p = value;

    for (;;) {
        const char *space = strchr(p, ' ');
        size_t n = space ? (size_t)(space - p) : strlen(p);

        if (p == value) {
            if (buf_append(out, " ", 1) < 0 || buf_append(out, p, n) < 0)
                return -1;
            *column += 1 + n;
        } else if (append_token(out, column, p, n) < 0) {
            return -1;
        }
        if (!space)
            return 0;
        p = space + 1;
    }
}

/* Appends "Name: value" for an unstructured field (RFC 5322 3.2.5), without
 * the closing CRLF. */
static int append_unstructured(struct buf *out, const char *name, const char *value)
{
    size_t column = strlen(name) + 1;

    if (buf_appendz(out, name) < 0 || buf_append(out, ":", 1) < 0)
        return -1;
    if (*value == '\0')
        return buf_append(out, " ", 1);
    if (is_plain_ascii(value))
        return append_folded_ascii(out, &column, value);
    return append_encoded_words(out, &column, value);
}

/* Appends "Name: display-name <address>" (RFC 5322 3.4), without CRLF. An
 * ASCII name is written as a quoted-string, any other as encoded-words. */
static int append_address(struct buf *out, const char *name, const char *display,
                          const char *address)
{
    size_t column = strlen(name) + 1;
    char *bracketed = NULL;
    int rc = -1;

    if (buf_appendz(out, name) < 0 || buf_append(out, ":", 1) < 0)
        goto done;
    if (display && *display) {
        if (is_plain_ascii(display)) {
            struct buf quoted;

            buf_init(&quoted, 2 * MAIL_NAME_MAX + 3);
            buf_append(&quoted, "\"", 1);
            for (const char *p = display; *p; p++) {
                if ((*p == '"' || *p == '\\') && buf_append(&quoted, "\\", 1) < 0)
                    break;
                buf_append(&quoted, p, 1);
            }
            buf_append(&quoted, "\"", 1);
            rc = append_token(out, &column, quoted.data, quoted.len);
            buf_free(&quoted);
            if (rc < 0)
                goto done;
            rc = -1;
        } else if (append_encoded_words(out, &column, display) < 0) {
            goto done;
        }
    }
    bracketed = str_printf("<%s>", address);
    if (!bracketed || append_token(out, &column, bracketed, strlen(bracketed)) < 0)
        goto done;
    rc = 0;

done:
    free(bracketed);
    return rc;
}

char *mail_header_encode(const char *name, const char *value, char **err)
{
    struct buf out;

    *err = NULL;
    if (check_header_value(name, value, MAIL_SUBJECT_MAX, err) < 0)
        return NULL;
    buf_init(&out, 4 * MAIL_SUBJECT_MAX);
    if (append_unstructured(&out, name, value) < 0 || buf_appendz(&out, "\r\n") < 0 ||
        buf_terminate(&out) < 0) {
        buf_free(&out);
        *err = strdup("mémoire insuffisante");
        return NULL;
    }
    return out.data;
}

/* ---- Message assembly ---------------------------------------------------- */

/* Appends the RFC 5322 date of now, in UTC, with English day and month
 * names whatever the locale. */
static int append_date(struct buf *out)
{
    static const char *const days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char *const months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                         "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    struct tm tm;

    gmtime_r(&now, &tm);
    return buf_printf(out, "Date: %s, %02d %s %04d %02d:%02d:%02d +0000\r\n", days[tm.tm_wday],
                      tm.tm_mday, months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                      tm.tm_sec);
}

static void random_hex(char *out, size_t bytes)
{
    unsigned char raw[32];

    if (bytes > sizeof(raw))
        bytes = sizeof(raw);
    randombytes_buf(raw, bytes);
    sodium_bin2hex(out, 2 * bytes + 1, raw, bytes);
}

/* Appends text with every line ending turned into CRLF, the canonical form
 * of text in MIME (RFC 2045 6.8). */
static int append_crlf_text(struct buf *out, const char *text)
{
    for (const char *p = text; *p; p++) {
        int rc;

        if (*p == '\r' && p[1] == '\n') {
            rc = buf_appendz(out, "\r\n");
            p++;
        } else if (*p == '\r' || *p == '\n') {
            rc = buf_appendz(out, "\r\n");
        } else {
            rc = buf_append(out, p, 1);
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

/* Appends one MIME part: its headers, then content base64-encoded in lines
 * of 76 characters. */
static int append_part(struct buf *out, const char *content_type, const char *content)
{
    struct buf canonical;
    int rc = -1;

    buf_init(&canonical, 2 * MAIL_BODY_MAX);
    if (append_crlf_text(&canonical, content) < 0)
        goto done;
    if (buf_printf(out,
                   "Content-Type: %s; charset=UTF-8\r\n"
                   "Content-Transfer-Encoding: base64\r\n\r\n",
                   content_type) < 0)
        goto done;
    for (size_t pos = 0; pos < canonical.len; pos += BASE64_LINE_INPUT) {
        char line[sodium_base64_ENCODED_LEN(BASE64_LINE_INPUT, sodium_base64_VARIANT_ORIGINAL)];
        size_t n = canonical.len - pos < BASE64_LINE_INPUT ? canonical.len - pos : BASE64_LINE_INPUT;

        sodium_bin2base64(line, sizeof(line), (const unsigned char *)canonical.data + pos, n,
                          sodium_base64_VARIANT_ORIGINAL);
        if (buf_appendz(out, line) < 0 || buf_appendz(out, "\r\n") < 0)
            goto done;
    }
    rc = 0;

done:
    buf_free(&canonical);
    return rc;
}

static int check_body(const char *field, const char *body, char **err)
{
    size_t len = strlen(body);

    if (len > MAIL_BODY_MAX) {
        *err = str_printf("Le %s du mail est trop long (%zu octets, maximum %d).", field, len,
                          MAIL_BODY_MAX);
        return -1;
    }
    if (!utf8_valid((const unsigned char *)body, len)) {
        *err = str_printf("Le %s du mail n'est pas du texte UTF-8 valide.", field);
        return -1;
    }
    return 0;
}

static int check_message(const struct mail_message *msg, char **err)
{
    if (mail_address_check(msg->from_address) < 0) {
        *err = str_printf("L'adresse d'expéditeur « %s » est invalide. Corrigez mail_from.",
                          msg->from_address ? msg->from_address : "");
        return -1;
    }
    if (mail_address_check(msg->to_address) < 0) {
        *err = str_printf("L'adresse de destinataire « %s » est invalide.",
                          msg->to_address ? msg->to_address : "");
        return -1;
    }
    if (msg->from_name && check_header_value("nom d'expéditeur", msg->from_name, MAIL_NAME_MAX, err) < 0)
        return -1;
    if (msg->to_name && check_header_value("nom du destinataire", msg->to_name, MAIL_NAME_MAX, err) < 0)
        return -1;
    if (!msg->subject || check_header_value("sujet", msg->subject, MAIL_SUBJECT_MAX, err) < 0) {
        if (!msg->subject)
            *err = strdup("Le sujet du mail est manquant.");
        return -1;
    }
    if (!msg->text || check_body("texte", msg->text, err) < 0) {
        if (!msg->text)
            *err = strdup("Le texte du mail est manquant.");
        return -1;
    }
    if (msg->html && check_body("contenu HTML", msg->html, err) < 0)
        return -1;
    return 0;
}

char *mail_build(const struct mail_message *msg, char **message_id, char **err)
{
    struct buf out;
    char id_hex[33], boundary_hex[33];
    char *id = NULL;
    char *result = NULL;

    *err = NULL;
    if (message_id)
        *message_id = NULL;
    if (check_message(msg, err) < 0)
        return NULL;

    buf_init(&out, MESSAGE_MAX);
    random_hex(id_hex, 16);
    random_hex(boundary_hex, 16);
    id = str_printf("<%s@%s>", id_hex, strchr(msg->from_address, '@') + 1);
    if (!id)
        goto done;

    if (append_date(&out) < 0 || buf_printf(&out, "Message-ID: %s\r\n", id) < 0)
        goto done;
    if (append_address(&out, "From", msg->from_name, msg->from_address) < 0 ||
        buf_appendz(&out, "\r\n") < 0)
        goto done;
    if (append_address(&out, "To", msg->to_name, msg->to_address) < 0 ||
        buf_appendz(&out, "\r\n") < 0)
        goto done;
    if (append_unstructured(&out, "Subject", msg->subject) < 0 || buf_appendz(&out, "\r\n") < 0)
        goto done;
    /* Auto-Submitted (RFC 3834) keeps vacation responders from replying. */
    if (buf_appendz(&out, "MIME-Version: 1.0\r\nAuto-Submitted: auto-generated\r\n") < 0)
        goto done;

    if (msg->html) {
        if (buf_printf(&out,
                       "Content-Type: multipart/alternative;\r\n boundary=\"=_licol_%s\"\r\n\r\n"
                       "--=_licol_%s\r\n",
                       boundary_hex, boundary_hex) < 0 ||
            append_part(&out, "text/plain", msg->text) < 0 ||
            buf_printf(&out, "--=_licol_%s\r\n", boundary_hex) < 0 ||
            append_part(&out, "text/html", msg->html) < 0 ||
            buf_printf(&out, "--=_licol_%s--\r\n", boundary_hex) < 0)
            goto done;
    } else if (append_part(&out, "text/plain", msg->text) < 0) {
        goto done;
    }
    if (buf_terminate(&out) < 0)
        goto done;
    result = out.data;
    out.data = NULL;

done:
    if (!result)
        *err = strdup("Le mail n'a pas pu être construit : il dépasse la taille maximale ou la "
                      "mémoire manque.");
    if (result && message_id) {
        *message_id = id;
        id = NULL;
    }
    free(id);
    buf_free(&out);
    return result;
}

/* ---- Templates ----------------------------------------------------------- */

static bool template_name_valid(const char *name)
{
    if (!name || !*name || strlen(name) > 64)
        return false;
    for (const char *p = name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '-' || *p == '_'))
            return false;
    }
    return true;
}

/* Reads a whole template file into a NUL-terminated string. */
static char *read_template(const char *path, size_t *len, char **err)
{
    FILE *file = fopen(path, "rb");
    char *data = NULL;
    size_t n;

    if (!file) {
        *err = str_printf("Le modèle de mail %s est introuvable ou illisible (%s). Créez ce "
                          "fichier ou vérifiez le dossier des modèles.",
                          path, strerror(errno));
        return NULL;
    }
    data = malloc(MAIL_TEMPLATE_MAX + 1);
    if (!data) {
        *err = strdup("mémoire insuffisante");
        goto done;
    }
    n = fread(data, 1, MAIL_TEMPLATE_MAX + 1, file);
    if (ferror(file)) {
        *err = str_printf("Lecture du modèle de mail %s impossible.", path);
    } else if (n > MAIL_TEMPLATE_MAX) {
        *err = str_printf("Le modèle de mail %s est trop gros (maximum %d octets).", path,
                          MAIL_TEMPLATE_MAX);
    } else if (!utf8_valid((const unsigned char *)data, n)) {
        *err = str_printf("Le modèle de mail %s n'est pas enregistré en UTF-8. Réenregistrez-le "
                          "en UTF-8.",
                          path);
    } else {
        data[n] = '\0';
        *len = n;
    }

done:
    fclose(file);
    if (*err) {
        free(data);
        data = NULL;
    }
    return data;
}

static int append_html_escaped(struct buf *out, const char *value)
{
    for (const char *p = value; *p; p++) {
        int rc;

        switch (*p) {
        case '&': rc = buf_appendz(out, "&amp;"); break;
        case '<': rc = buf_appendz(out, "&lt;"); break;
        case '>': rc = buf_appendz(out, "&gt;"); break;
        case '"': rc = buf_appendz(out, "&quot;"); break;
        case '\'': rc = buf_appendz(out, "&#39;"); break;
        default: rc = buf_append(out, p, 1); break;
        }
        if (rc < 0)
            return -1;
    }
    return 0;
}

static char *list_var_names(const struct mail_var *vars, size_t nvars)
{
    struct buf names;

    buf_init(&names, 4096);
    for (size_t i = 0; i < nvars; i++)
        buf_printf(&names, "%s%s", i ? ", " : "", vars[i].name);
    if (nvars == 0)
        buf_appendz(&names, "aucune");
    buf_terminate(&names);
    return names.data;
}

/* Substitutes every {{name}} of text (spaces inside the braces allowed)
 * into a new string. label names the file in error messages. */
static char *substitute(const char *text, const char *label, const struct mail_var *vars,
                        size_t nvars, bool html, char **err)
{
    struct buf out;
    const char *p = text;
    int overflow = 0;

    buf_init(&out, MAIL_BODY_MAX);
    for (;;) {
        const char *open = strstr(p, "{{");
        const char *close, *start, *end;
        const struct mail_var *var = NULL;
        size_t line = 1;

        if (!open) {
            overflow |= buf_appendz(&out, p);
            break;
        }
        overflow |= buf_append(&out, p, (size_t)(open - p));
        for (const char *q = text; q < open; q++)
            line += *q == '\n';
        close = strstr(open + 2, "}}");
        if (!close || memchr(open + 2, '\n', (size_t)(close - open - 2))) {
            *err = str_printf("Le modèle %s, ligne %zu, ouvre « {{ » sans le refermer par « }} ».",
                              label, line);
            goto fail;
        }
        start = open + 2;
        end = close;
        while (start < end && *start == ' ')
            start++;
        while (end > start && end[-1] == ' ')
            end--;
        for (size_t i = 0; i < nvars; i++) {
            if (strlen(vars[i].name) == (size_t)(end - start) &&
                memcmp(vars[i].name, start, (size_t)(end - start)) == 0) {
                var = &vars[i];
                break;
            }
        }
        if (!var) {
            char *names = list_var_names(vars, nvars);
            *err = str_printf("Le modèle %s, ligne %zu, utilise {{%.*s}}, qui n'existe pas pour "
                              "ce mail. Variables disponibles : %s.",
                              label, line, (int)(end - start), start, names ? names : "");
            free(names);
            goto fail;
        }
        if (html)
            overflow |= append_html_escaped(&out, var->value ? var->value : "");
        else
            overflow |= buf_appendz(&out, var->value ? var->value : "");
        p = close + 2;
    }
    if (overflow || buf_terminate(&out) < 0) {
        *err = str_printf("Le mail produit par le modèle %s dépasse %d octets.", label,
                          MAIL_BODY_MAX);
        goto fail;
    }
    return out.data;

fail:
    buf_free(&out);
    return NULL;
}

/* Renders one file of a template. suffix is ".subject.txt", ".txt" or
 * ".html". */
static char *render_file(const char *dir, const char *name, const char *suffix,
                         const struct mail_var *vars, size_t nvars, bool html, char **err)
{
    char *path = str_printf("%s/%s%s", dir, name, suffix);
    char *label = str_printf("%s%s", name, suffix);
    char *text = NULL;
    char *result = NULL;
    size_t len = 0;

    if (!path || !label) {
        *err = strdup("mémoire insuffisante");
        goto done;
    }
    text = read_template(path, &len, err);
    if (text)
        result = substitute(text, label, vars, nvars, html, err);

done:
    free(text);
    free(label);
    free(path);
    return result;
}

/* Trims spaces and line breaks around the subject, then rejects one that is
 * empty or still spans several lines. */
static int finish_subject(char *subject, const char *name, char **err)
{
    size_t len = strlen(subject);
    size_t start = 0;

    while (len > 0 && strchr(" \t\r\n", subject[len - 1]))
        subject[--len] = '\0';
    while (start < len && strchr(" \t\r\n", subject[start]))
        start++;
    memmove(subject, subject + start, len - start + 1);
    if (*subject == '\0') {
        *err = str_printf("Le sujet du modèle %s.subject.txt est vide. Écrivez le sujet sur "
                          "une ligne.",
                          name);
        return -1;
    }
    if (strpbrk(subject, "\r\n")) {
        *err = str_printf("Le sujet du modèle %s.subject.txt tient sur plusieurs lignes, ou une "
                          "valeur insérée contient un retour à la ligne. Le sujet doit tenir "
                          "sur une ligne.",
                          name);
        return -1;
    }
    return 0;
}

int mail_template_render(const char *dir, const char *name, const struct mail_var *vars,
                         size_t nvars, struct mail_content *out, char **err)
{
    *err = NULL;
    memset(out, 0, sizeof(*out));
    if (!template_name_valid(name)) {
        *err = str_printf("Nom de modèle de mail invalide : « %s ».", name ? name : "");
        return -1;
    }

    out->subject = render_file(dir, name, ".subject.txt", vars, nvars, false, err);
    if (out->subject && finish_subject(out->subject, name, err) < 0)
        goto fail;
    if (!out->subject)
        goto fail;
    out->text = render_file(dir, name, ".txt", vars, nvars, false, err);
    if (!out->text)
        goto fail;
    out->html = render_file(dir, name, ".html", vars, nvars, true, err);
    if (!out->html)
        goto fail;
    return 0;

fail:
    mail_content_free(out);
    return -1;
}

void mail_content_free(struct mail_content *content)
{
    if (!content)
        return;
    free(content->subject);
    free(content->text);
    free(content->html);
    memset(content, 0, sizeof(*content));
}
