/* Unit tests for mail templates and message building. Decoding by an
 * independent implementation (Python's email package) is checked in
 * test_outbox.c, on what the SMTP sink receives. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mail.h"

/* Unfolds a header produced by mail_header_encode and decodes its
 * encoded-words, dropping the whitespace between two adjacent words as
 * RFC 2047 section 6.2 requires. Returns the value, which the caller frees. */
static char *decode_header(const char *header)
{
    size_t size = strlen(header) + 1;
    char *unfolded = calloc(1, size);
    char *out = calloc(1, size);
    char *u = unfolded, *q = out, *p;
    int first = 1, previous_encoded = 0;

    for (const char *s = header; *s; s++) {
        if (s[0] == '\r' && s[1] == '\n')
            s++;
        else
            *u++ = *s;
    }
    p = strchr(unfolded, ':') + 1;
    if (*p == ' ')
        p++;

    for (;;) {
        char *space = strchr(p, ' ');
        size_t len = space ? (size_t)(space - p) : strlen(p);
        int encoded = len > 12 && strncmp(p, "=?UTF-8?B?", 10) == 0 &&
                      strncmp(p + len - 2, "?=", 2) == 0;

        if (!first && !(previous_encoded && encoded))
            *q++ = ' ';
        if (encoded) {
            size_t bin_len = 0;

            sodium_base642bin((unsigned char *)q, size - (size_t)(q - out), p + 10, len - 12, NULL,
                              &bin_len, NULL, sodium_base64_VARIANT_ORIGINAL);
            q += bin_len;
        } else {
            memcpy(q, p, len);
            q += len;
        }
        first = 0;
        previous_encoded = encoded;
        if (!space)
            break;
        p = space + 1;
    }
    *q = '\0';
    free(unfolded);
    return out;
}

static size_t longest_line(const char *text)
{
    size_t longest = 0;

    while (*text) {
        const char *end = strstr(text, "\r\n");
        size_t len = end ? (size_t)(end - text) : strlen(text);

        if (len > longest)
            longest = len;
        if (!end)
            break;
        text = end + 2;
    }
    return longest;
}

static void header_encoding_table(void **state)
{
    static const struct {
        const char *value;
        const char *exact; /* expected output, or NULL to check by decoding */
        int encoded;       /* 1 when encoded-words are expected */
    } cases[] = {
        {"Bonjour", "Subject: Bonjour\r\n", 0},
        {"", "Subject: \r\n", 0},
        {"Récupération de votre mot de passe", NULL, 1},
        {"Écurie du Moulin : merci d'accepter nos conditions", NULL, 1},
        {"Galop 3 — réussi ! 🐴🐴🐴 félicitations à Zoé et Chloé, avec de très longs mots "
         "accentués pour forcer plusieurs mots encodés sur plusieurs lignes repliées",
         NULL, 1},
        {"A plain ASCII subject that is long enough to need folding because it goes well past "
         "the seventy-eight character soft limit of RFC 5322",
         NULL, 0},
        {"two  spaces  kept", "Subject: two  spaces  kept\r\n", 0},
        {"looks like =?UTF-8?B?QQ==?= an encoded word", NULL, 1},
        {"日本語の件名", NULL, 1},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *err = NULL;
        char *header = mail_header_encode("Subject", cases[i].value, &err);
        char *decoded;

        assert_non_null(header);
        assert_null(err);
        assert_true(longest_line(header) <= 78);
        assert_int_equal(strncmp(header, "Subject:", 8), 0);
        assert_string_equal(header + strlen(header) - 2, "\r\n");
        if (cases[i].exact)
            assert_string_equal(header, cases[i].exact);
        assert_int_equal(strstr(header, "=?UTF-8?B?") != NULL, cases[i].encoded);
        for (const char *p = header; *p; p++)
            assert_true((unsigned char)*p < 0x80);
        header[strlen(header) - 2] = '\0';
        decoded = decode_header(header);
        assert_string_equal(decoded, cases[i].value);
        free(decoded);
        free(header);
    }
}

static void header_injection_rejected(void **state)
{
    static const char *const values[] = {
        "Bonjour\r\nBcc: victim@example.test",
        "Bonjour\nBcc: victim@example.test",
        "Bonjour\rBcc: victim@example.test",
        "tab\there",
        "invalid \xc3\x28 utf-8",
        "overlong \xc0\xaf slash",
    };

    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char *err = NULL;
        char *header = mail_header_encode("Subject", values[i], &err);

        assert_null(header);
        assert_non_null(err);
        free(err);
    }
}

static struct mail_message sample_message(void)
{
    struct mail_message msg = {
        .from_name = "Écurie du Moulin",
        .from_address = "club@ecurie-du-moulin.test",
        .to_name = "Léa Martin",
        .to_address = "lea.martin@example.test",
        .subject = "Récupération de votre mot de passe",
        .text = "Bonjour Léa,\nvoici le lien : https://club.test/r?t=abc\n",
        .html = "<p>Bonjour Léa,</p>\n<p><a href=\"https://club.test/r?t=abc\">lien</a></p>\n",
    };
    return msg;
}

static void build_rejects_injection(void **state)
{
    static const struct {
        const char *field;
        const char *value;
    } cases[] = {
        {"subject", "Salut\r\nBcc: victim@example.test"},
        {"subject", "Salut\nX-Spam: yes"},
        {"from_name", "Club\r\nBcc: victim@example.test"},
        {"to_name", "Léa\nBcc: victim@example.test"},
        {"to_address", "lea@example.test\r\nBcc: victim@example.test"},
        {"to_address", "lea@example.test>, victim@example.test"},
        {"to_address", "Léa <lea@example.test>"},
        {"to_address", "lea@@example.test"},
        {"to_address", "no-at-sign.example.test"},
        {"to_address", "lea@"},
        {"to_address", "lea@example..test"},
        {"from_address", "club@example.test\nBcc: x@y.test"},
        {"text", "bad \xff byte"},
    };

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mail_message msg = sample_message();
        char *err = NULL;
        char *message;

        if (strcmp(cases[i].field, "subject") == 0)
            msg.subject = cases[i].value;
        else if (strcmp(cases[i].field, "from_name") == 0)
            msg.from_name = cases[i].value;
        else if (strcmp(cases[i].field, "to_name") == 0)
            msg.to_name = cases[i].value;
        else if (strcmp(cases[i].field, "to_address") == 0)
            msg.to_address = cases[i].value;
        else if (strcmp(cases[i].field, "from_address") == 0)
            msg.from_address = cases[i].value;
        else
            msg.text = cases[i].value;
        message = mail_build(&msg, NULL, &err);
        if (message)
            fail_msg("case %zu (%s) was accepted", i, cases[i].field);
        assert_non_null(err);
        free(err);
    }
}

static void build_writes_required_headers(void **state)
{
    struct mail_message msg = sample_message();
    char *err = NULL;
    char *message_id = NULL;
    char *message = mail_build(&msg, &message_id, &err);
    char *body;

    assert_non_null(message);
    assert_null(err);
    assert_non_null(message_id);
    assert_non_null(strstr(message_id, "@ecurie-du-moulin.test>"));
    assert_int_equal(message_id[0], '<');
    assert_int_equal(strncmp(message, "Date: ", 6), 0);
    assert_non_null(strstr(message, " +0000\r\n"));
    assert_non_null(strstr(message, "\r\nMessage-ID: <"));
    assert_non_null(strstr(message, message_id));
    assert_non_null(strstr(message, "\r\nFrom: =?UTF-8?B?"));
    assert_non_null(strstr(message, "<club@ecurie-du-moulin.test>\r\n"));
    assert_non_null(strstr(message, "\r\nTo: =?UTF-8?B?"));
    assert_non_null(strstr(message, "<lea.martin@example.test>\r\n"));
    assert_non_null(strstr(message, "\r\nSubject: =?UTF-8?B?"));
    assert_non_null(strstr(message, "\r\nMIME-Version: 1.0\r\n"));
    assert_non_null(strstr(message, "\r\nContent-Type: multipart/alternative;\r\n boundary=\"=_licol_"));
    assert_non_null(strstr(message, "Content-Type: text/plain; charset=UTF-8\r\n"));
    assert_non_null(strstr(message, "Content-Type: text/html; charset=UTF-8\r\n"));
    assert_non_null(strstr(message, "Content-Transfer-Encoding: base64\r\n"));
    assert_true(longest_line(message) <= 78);

    body = strstr(message, "\r\n\r\n");
    assert_non_null(body);
    for (const char *p = message; *p; p++) {
        if (*p == '\n')
            assert_int_equal(p[-1], '\r');
        assert_true((unsigned char)*p < 0x80);
    }
    free(message_id);
    free(message);
}

static void build_ascii_name_quoted(void **state)
{
    struct mail_message msg = sample_message();
    char *err = NULL;
    char *message;

    msg.from_name = "Club \"Le Galop\" Paris";
    msg.to_name = NULL;
    message = mail_build(&msg, NULL, &err);
    assert_non_null(message);
    assert_non_null(strstr(message, "From: \"Club \\\"Le Galop\\\" Paris\" <club@"));
    assert_non_null(strstr(message, "\r\nTo: <lea.martin@example.test>\r\n"));
    free(message);
}

static void build_message_ids_differ(void **state)
{
    struct mail_message msg = sample_message();
    char *err = NULL;
    char *first_id = NULL, *second_id = NULL;
    char *first = mail_build(&msg, &first_id, &err);
    char *second = mail_build(&msg, &second_id, &err);

    assert_non_null(first);
    assert_non_null(second);
    assert_string_not_equal(first_id, second_id);
    free(first);
    free(second);
    free(first_id);
    free(second_id);
}

static void build_text_only_single_part(void **state)
{
    struct mail_message msg = sample_message();
    char *err = NULL;
    char *message;

    msg.html = NULL;
    message = mail_build(&msg, NULL, &err);
    assert_non_null(message);
    assert_null(strstr(message, "multipart"));
    assert_non_null(strstr(message, "Content-Type: text/plain; charset=UTF-8\r\n"));
    free(message);
}

/* ---- Templates ---------------------------------------------------------- */

struct template_dir {
    char path[64];
};

static void write_file(const char *dir, const char *name, const char *content)
{
    char path[256];
    FILE *file;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    file = fopen(path, "w");
    assert_non_null(file);
    fputs(content, file);
    fclose(file);
}

static void remove_file(const char *dir, const char *name)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
}

static int template_setup(void **state)
{
    struct template_dir *t = calloc(1, sizeof(*t));

    snprintf(t->path, sizeof(t->path), "/tmp/licol-test-mail-XXXXXX");
    assert_non_null(mkdtemp(t->path));
    write_file(t->path, "essai.subject.txt", "Bonjour {{ prenom }} !\n");
    write_file(t->path, "essai.txt", "Bonjour {{prenom}} {{nom}},\nLien : {{lien}}\n");
    write_file(t->path, "essai.html", "<p>Bonjour {{prenom}} {{nom}}</p><a href=\"{{lien}}\">x</a>");
    *state = t;
    return 0;
}

static int template_teardown(void **state)
{
    struct template_dir *t = *state;
    static const char *const names[] = {"essai.subject.txt", "essai.txt", "essai.html",
                                        "sans.subject.txt", "sans.txt", "huge.subject.txt"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        remove_file(t->path, names[i]);
    rmdir(t->path);
    free(t);
    return 0;
}

static const struct mail_var essai_vars[] = {
    {"prenom", "Zoé"},
    {"nom", "O'Brien <script>"},
    {"lien", "https://club.test/r?t=abc&x=1"},
};
#define ESSAI_NVARS (sizeof(essai_vars) / sizeof(essai_vars[0]))

static void template_substitutes_and_escapes(void **state)
{
    struct template_dir *t = *state;
    struct mail_content content;
    char *err = NULL;

    assert_int_equal(mail_template_render(t->path, "essai", essai_vars, ESSAI_NVARS, &content, &err),
                     0);
    assert_null(err);
    assert_string_equal(content.subject, "Bonjour Zoé !");
    assert_string_equal(content.text,
                        "Bonjour Zoé O'Brien <script>,\nLien : https://club.test/r?t=abc&x=1\n");
    assert_string_equal(content.html, "<p>Bonjour Zoé O&#39;Brien &lt;script&gt;</p>"
                                      "<a href=\"https://club.test/r?t=abc&amp;x=1\">x</a>");
    mail_content_free(&content);
}

static void template_edit_applies_at_once(void **state)
{
    struct template_dir *t = *state;
    struct mail_content content;
    char *err = NULL;

    assert_int_equal(mail_template_render(t->path, "essai", essai_vars, ESSAI_NVARS, &content, &err),
                     0);
    assert_string_equal(content.subject, "Bonjour Zoé !");
    mail_content_free(&content);

    write_file(t->path, "essai.subject.txt", "Nouveau sujet pour {{prenom}}\n");
    assert_int_equal(mail_template_render(t->path, "essai", essai_vars, ESSAI_NVARS, &content, &err),
                     0);
    assert_string_equal(content.subject, "Nouveau sujet pour Zoé");
    mail_content_free(&content);
}

static void template_unknown_placeholder_fails(void **state)
{
    struct template_dir *t = *state;
    struct mail_content content;
    char *err = NULL;

    write_file(t->path, "essai.txt", "Bonjour,\n\nVotre galop : {{galop}}\n");
    assert_int_equal(mail_template_render(t->path, "essai", essai_vars, ESSAI_NVARS, &content, &err),
                     -1);
    assert_non_null(err);
    assert_non_null(strstr(err, "{{galop}}"));
    assert_non_null(strstr(err, "essai.txt"));
    assert_non_null(strstr(err, "ligne 3"));
    assert_non_null(strstr(err, "prenom, nom, lien"));
    assert_null(content.subject);
    free(err);
}

static void template_unclosed_placeholder_fails(void **state)
{
    struct template_dir *t = *state;
    struct mail_content content;
    char *err = NULL;

    write_file(t->path, "essai.html", "<p>{{prenom</p>\n");
    assert_int_equal(mail_template_render(t->path, "essai", essai_vars, ESSAI_NVARS, &content, &err),
                     -1);
    assert_non_null(strstr(err, "essai.html"));
    assert_non_null(strstr(err, "}}"));
    free(err);
}

static void template_missing_file_fails(void **state)
{
    struct template_dir *t = *state;
    struct mail_content content;
    char *err = NULL;

    write_file(t->path, "sans.subject.txt", "Sujet\n");
    write_file(t->path, "sans.txt", "Texte\n");
    assert_int_equal(mail_template_render(t->path, "sans", essai_vars, ESSAI_NVARS, &content, &err),
                     -1);
    assert_non_null(strstr(err, "sans.html"));
    assert_non_null(strstr(err, "introuvable"));
    free(err);

    assert_int_equal(mail_template_render(t->path, "absent", essai_vars, ESSAI_NVARS, &content, &err),
                     -1);
    assert_non_null(strstr(err, "absent.subject.txt"));
    free(err);
}

static void template_bad_names_rejected(void **state)
{
    struct template_dir *t = *state;
    struct mail_content content;
    static const char *const names[] = {"../essai", "essai/x", "", "essai.txt", "a b"};

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char *err = NULL;

        assert_int_equal(mail_template_render(t->path, names[i], essai_vars, ESSAI_NVARS, &content, &err),
                         -1);
        assert_non_null(strstr(err, "Nom de modèle"));
        free(err);
    }
}

static void template_subject_on_one_line(void **state)
{
    struct template_dir *t = *state;
    struct mail_content content;
    char *err = NULL;
    const struct mail_var sneaky[] = {
        {"prenom", "Zoé\r\nBcc: victim@example.test"},
        {"nom", "x"},
        {"lien", "y"},
    };

    write_file(t->path, "essai.subject.txt", "Ligne un\nLigne deux\n");
    assert_int_equal(mail_template_render(t->path, "essai", essai_vars, ESSAI_NVARS, &content, &err),
                     -1);
    assert_non_null(strstr(err, "une ligne"));
    free(err);

    write_file(t->path, "essai.subject.txt", "Bonjour {{prenom}}\n");
    assert_int_equal(mail_template_render(t->path, "essai", sneaky, 3, &content, &err), -1);
    assert_non_null(strstr(err, "une ligne"));
    free(err);

    write_file(t->path, "essai.subject.txt", "  \n");
    assert_int_equal(mail_template_render(t->path, "essai", essai_vars, ESSAI_NVARS, &content, &err),
                     -1);
    assert_non_null(strstr(err, "vide"));
    free(err);
}

static void template_not_utf8_rejected(void **state)
{
    struct template_dir *t = *state;
    struct mail_content content;
    char *err = NULL;

    /* "Écurie" as saved by a Windows-1252 editor. */
    write_file(t->path, "essai.txt", "\xc9" "curie\n");
    assert_int_equal(mail_template_render(t->path, "essai", essai_vars, ESSAI_NVARS, &content, &err),
                     -1);
    assert_non_null(strstr(err, "UTF-8"));
    free(err);
}

static void shipped_templates_render(void **state)
{
    static const char *const names[] = {"recuperation", "consentement", "test"};
    const struct mail_var vars[] = {
        {"prenom", "Léa"},
        {"nom", "Martin--Durand"},
        {"club", "Écurie du Moulin"},
        {"lien", "https://club.test/mot-de-passe?jeton=abc_DEF-123"},
        {"expiration", "18 décembre 2026 à 20 h 00"},
        {"famille", ""},
    };
    char dir[512];

    snprintf(dir, sizeof(dir), "%s/scripts/mail", LICOL_SOURCE_DIR);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        struct mail_content content;
        char *err = NULL;

        if (mail_template_render(dir, names[i], vars, 6, &content, &err) < 0)
            fail_msg("template %s: %s", names[i], err);
        assert_non_null(strstr(content.subject, "Écurie du Moulin"));
        assert_non_null(strstr(content.text, "Écurie du Moulin"));
        assert_non_null(strstr(content.html, "Écurie du Moulin"));
        if (strcmp(names[i], "test") != 0) {
            assert_non_null(strstr(content.text, "Léa Martin--Durand"));
            assert_non_null(strstr(content.text, vars[3].value));
            assert_non_null(strstr(content.html, vars[3].value));
            assert_non_null(strstr(content.text, vars[4].value));
        }
        mail_content_free(&content);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(header_encoding_table),
        cmocka_unit_test(header_injection_rejected),
        cmocka_unit_test(build_rejects_injection),
        cmocka_unit_test(build_writes_required_headers),
        cmocka_unit_test(build_ascii_name_quoted),
        cmocka_unit_test(build_message_ids_differ),
        cmocka_unit_test(build_text_only_single_part),
        cmocka_unit_test_setup_teardown(template_substitutes_and_escapes, template_setup, template_teardown),
        cmocka_unit_test_setup_teardown(template_edit_applies_at_once, template_setup, template_teardown),
        cmocka_unit_test_setup_teardown(template_unknown_placeholder_fails, template_setup, template_teardown),
        cmocka_unit_test_setup_teardown(template_unclosed_placeholder_fails, template_setup, template_teardown),
        cmocka_unit_test_setup_teardown(template_missing_file_fails, template_setup, template_teardown),
        cmocka_unit_test_setup_teardown(template_bad_names_rejected, template_setup, template_teardown),
        cmocka_unit_test_setup_teardown(template_subject_on_one_line, template_setup, template_teardown),
        cmocka_unit_test_setup_teardown(template_not_utf8_rejected, template_setup, template_teardown),
        cmocka_unit_test(shipped_templates_render),
    };

    if (sodium_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
