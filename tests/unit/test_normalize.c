/* Unit tests for the value normalisers: one table of cases per function. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "normalize.h"

struct norm_case {
    const char *in;
    enum norm_status status;
    const char *out;
};

typedef enum norm_status (*norm_fn)(const char *in, char *out, size_t size);

static void check_case(const char *function, norm_fn fn, const struct norm_case *c)
{
    char out[512];
    enum norm_status status;

    memset(out, 'Z', sizeof(out));
    status = fn(c->in, out, sizeof(out));
    if (status != c->status || strcmp(out, c->out) != 0)
        print_error("%s(\"%s\"): expected %d \"%s\", got %d \"%s\"\n", function, c->in, c->status,
                    c->out, status, out);
    assert_int_equal(status, c->status);
    assert_string_equal(out, c->out);
}

#define RUN_TABLE(fn, table)                                                                       \
    for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++)                                  \
    check_case(#fn, fn, &table[i])

static enum norm_status fold_words(const char *in, char *out, size_t size)
{
    return norm_fold(in, out, size, 0);
}

static enum norm_status fold_alnum(const char *in, char *out, size_t size)
{
    return norm_fold(in, out, size, 1);
}

static enum norm_status postcode_france(const char *in, char *out, size_t size)
{
    return norm_postcode(in, NULL, out, size);
}

static enum norm_status postcode_belgium(const char *in, char *out, size_t size)
{
    return norm_postcode(in, "BE", out, size);
}

static enum norm_status email_first(const char *in, char *out, size_t size)
{
    return norm_email(in, out, size, NULL, 0);
}

static void text_cases(void **state)
{
    static const struct norm_case cases[] = {
        {"Saumur", NORM_OK, "Saumur"},
        {"  Le Pin-au-Haras  ", NORM_OK, "Le Pin-au-Haras"},
        {"a\t\tb", NORM_OK, "a b"},
        {"21 allée des Tilleuls\nBâtiment B", NORM_OK, "21 allée des Tilleuls Bâtiment B"},
        {"a\r\nb", NORM_OK, "a b"},
        {"a\xC2\xA0\xC2\xA0"
         "b",
         NORM_OK, "a b"}, /* non-breaking spaces */
        {"a\xE2\x80\xAF"
         "b",
         NORM_OK, "a b"},                          /* narrow no-break space */
        {"\xEF\xBB\xBFSaumur", NORM_OK, "Saumur"}, /* BOM */
        {"a\xE2\x80\x8B"
         "b",
         NORM_OK, "ab"}, /* zero-width space */
        {"", NORM_EMPTY, ""},
        {"   ", NORM_EMPTY, ""},
        {".", NORM_EMPTY, ""},
        {"-", NORM_EMPTY, ""},
        {"--", NORM_EMPTY, ""},
        {"?", NORM_EMPTY, ""},
        {"/", NORM_EMPTY, ""},
        {"x", NORM_EMPTY, ""},
        {"X", NORM_EMPTY, ""},
        {"néant", NORM_EMPTY, ""},
        {"NEANT", NORM_EMPTY, ""},
        {"inconnu", NORM_EMPTY, ""},
        {"Inconnue", NORM_EMPTY, ""},
        {"N/A", NORM_EMPTY, ""},
        {"unknown", NORM_EMPTY, ""},
        {"non renseigné", NORM_EMPTY, ""},
        {"non renseigné(e)", NORM_EMPTY, ""},
        {"À compléter", NORM_EMPTY, ""},
        {"***", NORM_EMPTY, ""},
        {"\xE2\x80\x93", NORM_EMPTY, ""}, /* en dash */
        {"Nil", NORM_EMPTY, ""},          /* the longer list still applies to text */
        {"NC", NORM_EMPTY, ""},
        {"Sans", NORM_OK, "Sans"},
        {"vide", NORM_OK, "vide"},
        {"Sans-Souci", NORM_OK, "Sans-Souci"},
        {"3 allée Sans Souci", NORM_OK, "3 allée Sans Souci"},
        {"x y", NORM_OK, "x y"},
        {"Xavier", NORM_OK, "Xavier"},
        {"e\xCC\x81"
         "cole",
         NORM_OK, "école"}, /* decomposed é */
        {"Ce\xCC\x81"
         "dric",
         NORM_OK, "Cédric"},
        {"Cœur", NORM_OK, "Cœur"},
        {"\xFF"
         "abc",
         NORM_OK,
         "\xEF\xBF\xBD"
         "abc"},                               /* invalid byte -> U+FFFD */
        {"ab\xC3", NORM_OK, "ab\xEF\xBF\xBD"}, /* truncated sequence at the end */
        {"\xED\xA0\x80", NORM_OK, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* surrogate */
    };

    RUN_TABLE(norm_text, cases);
}

static void text_null_input(void **state)
{
    char out[8] = "zzz";

    assert_int_equal(norm_text(NULL, out, sizeof(out)), NORM_EMPTY);
    assert_string_equal(out, "");
}

static void text_truncates_at_character(void **state)
{
    char out[6];

    /* "éééé" is 8 bytes: only two whole characters fit in 6 bytes with the NUL. */
    assert_int_equal(norm_text("éééé", out, sizeof(out)), NORM_OK);
    assert_string_equal(out, "éé");
    assert_int_equal(norm_text("abc", out, 0), NORM_OK);
    assert_int_equal(norm_text("abc", NULL, 0), NORM_OK);
}

static void text_long_input(void **state)
{
    size_t len = 200000;
    char *in = malloc(len + 1);
    char *out = malloc(len + 1);

    assert_non_null(in);
    assert_non_null(out);
    for (size_t i = 0; i < len; i++)
        in[i] = i % 7 == 0 ? ' ' : 'a';
    in[len] = '\0';
    assert_int_equal(norm_text(in, out, len + 1), NORM_OK);
    assert_true(strlen(out) > 100000);
    assert_int_equal(norm_name(in, out, 64), NORM_INVALID);
    assert_true(strlen(out) < 64);
    assert_int_equal(norm_phone(in, out, 64), NORM_INVALID);
    assert_int_equal(norm_email(in, out, 64, NULL, 0), NORM_INVALID);
    assert_int_equal(norm_date(in, out, 64), NORM_INVALID);
    assert_int_equal(norm_country(in, out, 64), NORM_INVALID);
    free(in);
    free(out);
}

static void fold_cases(void **state)
{
    static const struct norm_case words[] = {
        {"Élise", NORM_OK, "elise"},
        {"CÉDRIC", NORM_OK, "cedric"},
        {"Cœur Volant", NORM_OK, "coeur volant"},
        {"ŒUVRE", NORM_OK, "oeuvre"},
        {"Straße", NORM_OK, "strasse"},
        {"Lætitia", NORM_OK, "laetitia"},
        {"François", NORM_OK, "francois"},
        {"àáâãäå èéêë ìíîï òóôõöø ùúûü ýÿ ñ", NORM_OK, "aaaaaa eeee iiii oooooo uuuu yy n"},
        {"ÀÁÂÃÄÅ ÈÉÊË ÌÍÎÏ ÒÓÔÕÖØ ÙÚÛÜ Ý Ÿ Ñ", NORM_OK, "aaaaaa eeee iiii oooooo uuuu y y n"},
        {"Łódź Dvořák Şişli", NORM_OK, "lodz dvorak sisli"},
        {"N° licence", NORM_OK, "n licence"},
        {"Le Pin-au-Haras", NORM_OK, "le pin au haras"},
        {"o’neill", NORM_OK, "o neill"},
        {"  a -- b  ", NORM_OK, "a b"},
        {"", NORM_EMPTY, ""},
        {"---", NORM_EMPTY, ""},
        {"Δelta", NORM_OK, "Δelta"},           /* outside Latin: kept */
        {"Le\xCC\x81gere", NORM_OK, "legere"}, /* decomposed é */
        {"Le\xCC\x81gere Nfd", NORM_OK, "legere nfd"},
        {"q\xCC\x81", NORM_OK, "q"},         /* a mark with no precomposed letter */
        {"a\xCC\x81\xCC\xA3", NORM_OK, "a"}, /* two marks */
        {"\xCC\x81", NORM_EMPTY, ""},        /* a mark alone */
    };
    static const struct norm_case alnum[] = {
        {"N° licence", NORM_OK, "nlicence"},
        {"Numéro licence", NORM_OK, "numerolicence"},
        {"Date de naissance", NORM_OK, "datedenaissance"},
        {"E-mail", NORM_OK, "email"},
        {"Code Postal", NORM_OK, "codepostal"},
        {"Galop Poney d'Or", NORM_OK, "galopponeydor"},
        {"Franc\xCC\xA7ois", NORM_OK, "francois"},
        {"...", NORM_EMPTY, ""},
    };

    RUN_TABLE(fold_words, words);
    RUN_TABLE(fold_alnum, alnum);
}

/* The identity key of a person folds names with alnum_only: decomposed
 * text (as macOS exports write it) and precomposed text must give one key. */
static void fold_decomposed_matches_composed(void **state)
{
    static const struct {
        const char *decomposed;
        const char *composed;
    } pairs[] = {
        {"Le\xCC\x81gere", "Légere"},
        {"He\xCC\x81le\xCC\x80ne", "Hélène"},
        {"Franc\xCC\xA7ois", "François"},
        {"Noe\xCC\x88l", "Noël"},
        {"Jose\xCC\x81 Nun\xCC\x83"
         "ez",
         "José Nuñez"},
        {"Je\xCC\x82me", "Jême"},
        {"E\xCC\x81LODIE", "ÉLODIE"},
    };
    char decomposed[64];
    char composed[64];

    for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
        for (int alnum = 0; alnum <= 1; alnum++) {
            assert_int_equal(norm_fold(pairs[i].decomposed, decomposed, sizeof(decomposed), alnum),
                             NORM_OK);
            assert_int_equal(norm_fold(pairs[i].composed, composed, sizeof(composed), alnum),
                             NORM_OK);
            assert_string_equal(decomposed, composed);
        }
    }
}

/* Every base letter with each of the six combining marks the composition
 * table covers: the letters of Latin-1 Supplement and Latin Extended-A are
 * composed, every other pair is left decomposed. All composed letters here
 * are two bytes in UTF-8. Each pair follows an "o" so that "x" with a mark
 * does not fold to the placeholder "x". */
static void text_composes_marks(void **state)
{
    static const struct {
        const char *mark; /* UTF-8 of the combining mark */
        const char *bases;
        const char *capitals; /* composed capital for each base, in order */
        const char *lowers;   /* composed lower-case letter for each base */
    } marks[] = {
        {"\xCC\x80", "AEIOU", "ÀÈÌÒÙ", "àèìòù"},
        {"\xCC\x81", "ACEILNORSUYZ", "ÁĆÉÍĹŃÓŔŚÚÝŹ", "áćéíĺńóŕśúýź"},
        {"\xCC\x82", "ACEGHIJOSUWY", "ÂĈÊĜĤÎĴÔŜÛŴŶ", "âĉêĝĥîĵôŝûŵŷ"},
        {"\xCC\x83", "AINOU", "ÃĨÑÕŨ", "ãĩñõũ"},
        {"\xCC\x88", "AEIOUY", "ÄËÏÖÜŸ", "äëïöüÿ"},
        {"\xCC\xA7", "CGKLNRST", "ÇĢĶĻŅŖŞŢ", "çģķļņŗşţ"},
    };

    for (size_t m = 0; m < sizeof(marks) / sizeof(marks[0]); m++) {
        for (char letter = 'A'; letter <= 'Z'; letter++) {
            for (int lower = 0; lower <= 1; lower++) {
                char base = lower ? (char)(letter + 32) : letter;
                const char *hit = strchr(marks[m].bases, letter);
                const char *composed_list = lower ? marks[m].lowers : marks[m].capitals;
                char in[8];
                char expected[8];
                char out[16];

                snprintf(in, sizeof(in), "o%c%s", base, marks[m].mark);
                if (hit)
                    snprintf(expected, sizeof(expected), "o%.2s",
                             composed_list + 2 * (hit - marks[m].bases));
                else
                    snprintf(expected, sizeof(expected), "%s", in);
                assert_int_equal(norm_text(in, out, sizeof(out)), NORM_OK);
                if (strcmp(out, expected) != 0)
                    print_error("norm_text(\"%s\"): expected \"%s\", got \"%s\"\n", in, expected,
                                out);
                assert_string_equal(out, expected);
            }
        }
    }
}

static void name_cases(void **state)
{
    static const struct norm_case cases[] = {
        {"DUPONT", NORM_OK, "Dupont"},
        {"dupont", NORM_OK, "Dupont"},
        {"jean-pierre", NORM_OK, "Jean-Pierre"},
        {"JEAN-FRANÇOIS", NORM_OK, "Jean-François"},
        {"martin--durand", NORM_OK, "Martin--Durand"},
        {"Poirier--Boyer", NORM_OK, "Poirier--Boyer"},
        {"o'neill", NORM_OK, "O'Neill"},
        {"o’neill", NORM_OK, "O’Neill"},
        {"N'diaye", NORM_OK, "N'Diaye"},
        {"DE LA FONTAINE", NORM_OK, "de La Fontaine"},
        {"De La Fontaine", NORM_OK, "de La Fontaine"},
        {"de villiers", NORM_OK, "de Villiers"},
        {"DU PONT", NORM_OK, "du Pont"},
        {"des roches", NORM_OK, "des Roches"},
        {"DE SAINT-EXUPERY", NORM_OK, "de Saint-Exupery"},
        {"D'ARTAGNAN", NORM_OK, "d'Artagnan"},
        {"d’almeida", NORM_OK, "d’Almeida"},
        {"Jeanne D'ARC", NORM_OK, "Jeanne d'Arc"},
        {"De", NORM_OK, "De"},
        {"DU", NORM_OK, "Du"},
        {"des", NORM_OK, "Des"},
        {"le goff", NORM_OK, "Le Goff"},
        {"LE GOFF", NORM_OK, "Le Goff"},
        {"VAN DER BERG", NORM_OK, "Van Der Berg"},
        {"dos santos", NORM_OK, "Dos Santos"},
        {"CÉDRIC", NORM_OK, "Cédric"},
        {"élise", NORM_OK, "Élise"},
        {"ÉLODIE", NORM_OK, "Élodie"},
        {"œdipe", NORM_OK, "Œdipe"},
        {"  marie   claire  ", NORM_OK, "Marie Claire"},
        {"marie\xC2\xA0"
         "claire",
         NORM_OK, "Marie Claire"},
        /* decomposed accents are composed, then cased */
        {"Le\xCC\x81gere", NORM_OK, "Légere"},
        {"LE\xCC\x81GERE", NORM_OK, "Légere"},
        {"he\xCC\x81le\xCC\x80ne", NORM_OK, "Hélène"},
        {"FRANC\xCC\xA7OIS", NORM_OK, "François"},
        {"e\xCC\x82me", NORM_OK, "Ême"},
        /* Dutch elided articles typed in lower case */
        {"'t Hooft", NORM_OK, "'t Hooft"},
        {"'t HOOFT", NORM_OK, "'t Hooft"},
        {"\xE2\x80\x99s jacob", NORM_OK, "\xE2\x80\x99s Jacob"},
        {"\xE2\x80\x98t hooft", NORM_OK, "\xE2\x80\x98t Hooft"},
        {"van 't hof", NORM_OK, "Van 't Hof"},
        {"'T HOOFT", NORM_OK, "'T Hooft"},
        {"'t", NORM_OK, "'T"},
        {"'th Hooft", NORM_OK, "'Th Hooft"},
        /* real names that other fields treat as placeholders */
        {"Sans", NORM_OK, "Sans"},
        {"SANS", NORM_OK, "Sans"},
        {"X", NORM_OK, "X"},
        {"x", NORM_OK, "X"},
        {"Nil", NORM_OK, "Nil"},
        {"NA", NORM_OK, "Na"},
        {"Vide", NORM_OK, "Vide"},
        {"Nd", NORM_OK, "Nd"},
        {"Null", NORM_OK, "Null"},
        {"N A", NORM_OK, "N A"},
        {"NC", NORM_OK, "Nc"},
        /* placeholders for names */
        {".", NORM_EMPTY, ""},
        {"", NORM_EMPTY, ""},
        {"?", NORM_EMPTY, ""},
        {"-", NORM_EMPTY, ""},
        {"***", NORM_EMPTY, ""},
        {"\xE2\x80\x94", NORM_EMPTY, ""}, /* em dash */
        {"inconnu", NORM_EMPTY, ""},
        {"INCONNUE", NORM_EMPTY, ""},
        {"néant", NORM_EMPTY, ""},
        {"NEANT", NORM_EMPTY, ""},
        {"non renseigné", NORM_EMPTY, ""},
        {"Non renseignée", NORM_EMPTY, ""},
        {"non renseigné(e)", NORM_EMPTY, ""},
        {"à compléter", NORM_EMPTY, ""},
        {"N/A", NORM_EMPTY, ""},
        {"n/a", NORM_EMPTY, ""},
        {"undefined", NORM_EMPTY, ""},
        {"Unknown", NORM_EMPTY, ""},
        {"Inconnu Inconnu", NORM_OK, "Inconnu Inconnu"},
    };

    RUN_TABLE(norm_name, cases);
}

static void phone_cases(void **state)
{
    static const struct norm_case cases[] = {
        {"0612345678", NORM_OK, "+33612345678"},
        {"06 12 34 56 78", NORM_OK, "+33612345678"},
        {"06.12.34.56.78", NORM_OK, "+33612345678"},
        {"06-12-34-56-78", NORM_OK, "+33612345678"},
        {"06/12/34/56/78", NORM_OK, "+33612345678"},
        {"(06) 12 34 56 78", NORM_OK, "+33612345678"},
        {"+33612345678", NORM_OK, "+33612345678"},
        {"+33 6 12 34 56 78", NORM_OK, "+33612345678"},
        {"+33 (0)6 12 34 56 78", NORM_OK, "+33612345678"},
        {"+33 06 12 34 56 78", NORM_OK, "+33612345678"},
        {"0033612345678", NORM_OK, "+33612345678"},
        {"0033 6 12 34 56 78", NORM_OK, "+33612345678"},
        {"612345678", NORM_OK, "+33612345678"},
        {"489156088", NORM_OK, "+33489156088"},
        {"0140592515", NORM_OK, "+33140592515"},
        {"0033140592515", NORM_OK, "+33140592515"},
        {"0690 12 34 56", NORM_OK, "+33690123456"}, /* overseas: +33 as files write it */
        {"0262 12 34 56", NORM_OK, "+33262123456"},
        {"\xC2\xA0"
         "06 12 34 56 78 ",
         NORM_OK, "+33612345678"},
        {"+32 470 12 34 56", NORM_OK, "+32470123456"},
        {"0032 470 12 34 56", NORM_OK, "+32470123456"},
        {"0041 79 123 45 67", NORM_OK, "+41791234567"},
        {"+44 (0)20 7946 0958", NORM_OK, "+442079460958"},
        {"+1 514 555 0199", NORM_OK, "+15145550199"},
        {"", NORM_EMPTY, ""},
        {".", NORM_EMPTY, ""},
        {"0612", NORM_INVALID, "0612"},
        {"06123456789", NORM_INVALID, "06123456789"},
        {"012345678", NORM_INVALID, "012345678"},
        {"0012345", NORM_INVALID, "0012345"},
        {"+33 12345", NORM_INVALID, "+33 12345"},
        {"+33 0 12 34 56 78", NORM_INVALID, "+33 0 12 34 56 78"},
        {"+1234567890123456", NORM_INVALID, "+1234567890123456"},
        {"06 12 34 56 78 / 01 23 45 67 89", NORM_INVALID, "06 12 34 56 78 / 01 23 45 67 89"},
        {"tél 0612345678", NORM_INVALID, "tél 0612345678"},
        {"06+12345678", NORM_INVALID, "06+12345678"},
        {"  abc  ", NORM_INVALID, "abc"},
    };

    RUN_TABLE(norm_phone, cases);
}

static void postcode_cases(void **state)
{
    static const struct norm_case france[] = {
        {"49400", NORM_OK, "49400"},
        {"1000", NORM_OK, "01000"},
        {"6600", NORM_OK, "06600"},
        {"84 000", NORM_OK, "84000"},
        {" 97400 ", NORM_OK, "97400"},
        {"F-75001", NORM_OK, "75001"},
        {"", NORM_EMPTY, ""},
        {"-", NORM_EMPTY, ""},
        {"123", NORM_INVALID, "123"},
        {"123456", NORM_INVALID, "123456"},
        {"H2X 1Y4", NORM_INVALID, "H2X 1Y4"},
        {"L-1111", NORM_INVALID, "L-1111"},
        {"4940O", NORM_INVALID, "4940O"},
    };
    static const struct norm_case belgium[] = {
        {"1000", NORM_OK, "1000"},
        {"  B-1000 ", NORM_OK, "B-1000"},
        {"", NORM_EMPTY, ""},
    };
    char out[16];

    RUN_TABLE(postcode_france, france);
    RUN_TABLE(postcode_belgium, belgium);
    assert_int_equal(norm_postcode("1000", "FR", out, sizeof(out)), NORM_OK);
    assert_string_equal(out, "01000");
    assert_int_equal(norm_postcode("1000", "fr", out, sizeof(out)), NORM_OK);
    assert_string_equal(out, "01000");
    assert_int_equal(norm_postcode("7400", "RE", out, sizeof(out)), NORM_OK);
    assert_string_equal(out, "07400");
    assert_int_equal(norm_postcode("1000", "", out, sizeof(out)), NORM_OK);
    assert_string_equal(out, "01000");
    assert_int_equal(norm_postcode("L-1111", "LU", out, sizeof(out)), NORM_OK);
    assert_string_equal(out, "L-1111");
    assert_int_equal(norm_postcode("h2x  1y4", "CA", out, sizeof(out)), NORM_OK);
    assert_string_equal(out, "h2x 1y4");
}

static void email_cases(void **state)
{
    static const struct norm_case cases[] = {
        {"celine.schmitt@icloud.com", NORM_OK, "celine.schmitt@icloud.com"},
        {"Jean.Dupont@Free.FR", NORM_OK, "jean.dupont@free.fr"},
        {"  lucie.le_goff@laposte.net ", NORM_OK, "lucie.le_goff@laposte.net"},
        {"paul-henri.le_gall73@yahoo.fr", NORM_OK, "paul-henri.le_gall73@yahoo.fr"},
        {"a+tag@sub.example.org", NORM_OK, "a+tag@sub.example.org"},
        {"mailto:a@b.fr", NORM_OK, "a@b.fr"},
        {"", NORM_EMPTY, ""},
        {".", NORM_EMPTY, ""},
        {"louis.garnier@@laposte.net", NORM_INVALID, "louis.garnier@@laposte.net"},
        {"clemence.blanc@@free.fr", NORM_INVALID, "clemence.blanc@@free.fr"},
        {"a@b", NORM_INVALID, "a@b"},
        {"a@b.f", NORM_INVALID, "a@b.f"},
        {"a@b.fr.", NORM_INVALID, "a@b.fr."},
        {"a.@b.fr", NORM_INVALID, "a.@b.fr"},
        {".a@b.fr", NORM_INVALID, ".a@b.fr"},
        {"a..b@c.fr", NORM_INVALID, "a..b@c.fr"},
        {"a@.b.fr", NORM_INVALID, "a@.b.fr"},
        {"a@b..fr", NORM_INVALID, "a@b..fr"},
        {"a@-b.fr", NORM_INVALID, "a@-b.fr"},
        {"a@b-.fr", NORM_INVALID, "a@b-.fr"},
        {"a@b.f1", NORM_INVALID, "a@b.f1"},
        {"@b.fr", NORM_INVALID, "@b.fr"},
        {"ab.fr", NORM_INVALID, "ab.fr"},
        {"élise@free.fr", NORM_INVALID, "élise@free.fr"},
        {"a@b.fr c@d.fr e@f.fr", NORM_INVALID, "a@b.fr c@d.fr e@f.fr"},
        {"Jean Dupont a@b.fr", NORM_INVALID, "Jean Dupont a@b.fr"},
        {"a@b.fr; pas une adresse", NORM_INVALID, "a@b.fr; pas une adresse"},
    };

    RUN_TABLE(email_first, cases);
}

static void email_two_addresses(void **state)
{
    static const char *const inputs[] = {
        "a@b.fr;c@d.fr", "a@b.fr; c@d.fr",   "a@b.fr, c@d.fr",  "a@b.fr / c@d.fr",
        "a@b.fr c@d.fr", "A@B.FR et C@D.FR", "a@b.fr & c@d.fr", "a@b.fr ;; c@d.fr",
    };
    char out[64];
    char second[64];

    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        assert_int_equal(norm_email(inputs[i], out, sizeof(out), second, sizeof(second)), NORM_OK);
        assert_string_equal(out, "a@b.fr");
        assert_string_equal(second, "c@d.fr");
    }
    assert_int_equal(norm_email("a@b.fr", out, sizeof(out), second, sizeof(second)), NORM_OK);
    assert_string_equal(second, "");
    assert_int_equal(norm_email("a@b.fr;c@@d.fr", out, sizeof(out), second, sizeof(second)),
                     NORM_INVALID);
    assert_string_equal(out, "a@b.fr;c@@d.fr");
    assert_string_equal(second, "");
    /* A second address with nowhere to go is dropped, the first is kept. */
    assert_int_equal(norm_email("a@b.fr;c@d.fr", out, sizeof(out), NULL, 0), NORM_OK);
    assert_string_equal(out, "a@b.fr");
}

static void date_cases(void **state)
{
    static const struct norm_case cases[] = {
        {"22/02/2002", NORM_OK, "2002-02-22"},
        {"1/2/2003", NORM_OK, "2003-02-01"},
        {"01/04/2013", NORM_OK, "2013-04-01"},
        {"22-02-2002", NORM_OK, "2002-02-22"},
        {"22.02.2002", NORM_OK, "2002-02-22"},
        {"2002-02-22", NORM_OK, "2002-02-22"},
        {"2002/02/22", NORM_OK, "2002-02-22"},
        {"2023-01-12 12:26:15", NORM_OK, "2023-01-12"},
        {"2023-01-12T12:26", NORM_OK, "2023-01-12"},
        {" 22/02/2002 ", NORM_OK, "2002-02-22"},
        {"29/02/2020", NORM_OK, "2020-02-29"},
        {"29/02/2000", NORM_OK, "2000-02-29"},
        {"01/01/1900", NORM_OK, "1900-01-01"},
        {"31/12/2100", NORM_OK, "2100-12-31"},
        {"0000-00-00", NORM_EMPTY, ""},
        {"00/00/0000", NORM_EMPTY, ""},
        {"0000-00-00 00:00:00", NORM_EMPTY, ""},
        {"", NORM_EMPTY, ""},
        {"-", NORM_EMPTY, ""},
        {"31/04/2020", NORM_INVALID, "31/04/2020"},
        {"29/02/2021", NORM_INVALID, "29/02/2021"},
        {"29/02/1900", NORM_INVALID, "29/02/1900"},
        {"13/13/2000", NORM_INVALID, "13/13/2000"},
        {"01/13/2000", NORM_INVALID, "01/13/2000"},
        {"00/01/2000", NORM_INVALID, "00/01/2000"},
        {"31/12/1899", NORM_INVALID, "31/12/1899"},
        {"01/01/2101", NORM_INVALID, "01/01/2101"},
        {"1850-05-05", NORM_INVALID, "1850-05-05"},
        {"22/02/02", NORM_INVALID, "22/02/02"},
        {"22/02-2002", NORM_INVALID, "22/02-2002"},
        {"2002-02-22 25:00", NORM_INVALID, "2002-02-22 25:00"},
        {"2002-02-22 junk", NORM_INVALID, "2002-02-22 junk"},
        {"22/02/20022", NORM_INVALID, "22/02/20022"},
        {"février 2002", NORM_INVALID, "février 2002"},
        {"37000", NORM_INVALID, "37000"},
    };

    RUN_TABLE(norm_date, cases);
}

static void licence_cases(void **state)
{
    static const struct norm_case cases[] = {
        {"6327815G", NORM_OK, "6327815G"},
        {"1234567a", NORM_OK, "1234567A"},
        {" 1234 567 A ", NORM_OK, "1234567A"},
        {"0339731Z", NORM_OK, "0339731Z"},
        {"N° 1234567A", NORM_OK, "1234567A"},
        {"n°1234567a", NORM_OK, "1234567A"},
        {"Nº 1234567A", NORM_OK, "1234567A"}, /* masculine ordinal in place of ° */
        {"N° : 1234567A", NORM_OK, "1234567A"},
        {"1234567-A", NORM_OK, "1234567A"},
        {"1234567 - a", NORM_OK, "1234567A"},
        {"1234567 A", NORM_OK, "1234567A"},
        {"Licence 1234567A", NORM_OK, "1234567A"},
        {"LICENCE : 1234567A", NORM_OK, "1234567A"},
        {"Licence n° 1234567-A", NORM_OK, "1234567A"},
        {"license 1234567A", NORM_OK, "1234567A"},
        {"", NORM_EMPTY, ""},
        {"?", NORM_EMPTY, ""},
        {"1234567", NORM_INVALID, "1234567"},
        {"123456A", NORM_INVALID, "123456A"},
        {"12345678A", NORM_INVALID, "12345678A"},
        {"en cours", NORM_INVALID, "en cours"},
        {"1234567-", NORM_INVALID, "1234567-"},
        {"123456AB", NORM_INVALID, "123456AB"},
        {"1234567É", NORM_INVALID, "1234567É"},
        {"N°", NORM_INVALID, "N°"},
        {"Licence", NORM_INVALID, "Licence"},
        {"N° 1234567", NORM_INVALID, "N° 1234567"},
        {"1234-567A", NORM_INVALID, "1234-567A"},
        {"1234567--A", NORM_INVALID, "1234567--A"},
        {"1234567A-", NORM_INVALID, "1234567A-"},
        {"-1234567A", NORM_INVALID, "-1234567A"},
        {"N° 12345678A", NORM_INVALID, "N° 12345678A"},
        {"n 1234567A", NORM_INVALID, "n 1234567A"},
        {"1234567A licence", NORM_INVALID, "1234567A licence"},
        {"Licence en cours", NORM_INVALID, "Licence en cours"},
    };

    RUN_TABLE(norm_licence, cases);
}

static void galop_cases(void **state)
{
    static const struct norm_case cases[] = {
        {"Galop 1", NORM_OK, "galop-1"},
        {"Galop 3", NORM_OK, "galop-3"},
        {"Galop 3 ", NORM_OK, "galop-3"},
        {"galop 3", NORM_OK, "galop-3"},
        {"GALOP 7", NORM_OK, "galop-7"},
        {"G3", NORM_OK, "galop-3"},
        {"g 3", NORM_OK, "galop-3"},
        {"3", NORM_OK, "galop-3"},
        {"Galop 8", NORM_OK, "galop-8"},
        {"Galop 9", NORM_OK, "galop-9"},
        {"galop-4", NORM_OK, "galop-4"},
        {"Galop Poney de Bronze", NORM_OK, "poney-bronze"},
        {"Galop Poney d'Argent", NORM_OK, "poney-argent"},
        {"Galop poney d'argent", NORM_OK, "poney-argent"},
        {"Galop Poney d’Or", NORM_OK, "poney-or"},
        {"Poney d'Or", NORM_OK, "poney-or"},
        {"Poney de bronze", NORM_OK, "poney-bronze"},
        {"Galop de Bronze", NORM_OK, "galop-bronze"},
        {"Galop d'Argent", NORM_OK, "galop-argent"},
        {"Galop d’Argent", NORM_OK, "galop-argent"},
        {"Galop d'Or", NORM_OK, "galop-or"},
        {"Galop d’Or", NORM_OK, "galop-or"},
        {"GALOP D'OR", NORM_OK, "galop-or"},
        {"poney-bronze", NORM_OK, "poney-bronze"},
        {"galop-or", NORM_OK, "galop-or"},
        {"0", NORM_EMPTY, ""},
        {"Galop 0", NORM_EMPTY, ""},
        {"", NORM_EMPTY, ""},
        {"-", NORM_EMPTY, ""},
        {"Galop 10", NORM_INVALID, "Galop 10"},
        {"Galop", NORM_INVALID, "Galop"},
        {"Bronze", NORM_INVALID, "Bronze"},
        {"Poney", NORM_INVALID, "Poney"},
        {"Galop de Platine", NORM_INVALID, "Galop de Platine"},
        {"débutant", NORM_INVALID, "débutant"},
    };

    RUN_TABLE(norm_galop, cases);
}

static void sex_cases(void **state)
{
    static const struct norm_case cases[] = {
        {"F", NORM_OK, "F"},        {"f", NORM_OK, "F"},        {"Femme", NORM_OK, "F"},
        {"Féminin", NORM_OK, "F"},  {"FÉMININ", NORM_OK, "F"},  {"Mme", NORM_OK, "F"},
        {"Mme.", NORM_OK, "F"},     {"Madame", NORM_OK, "F"},   {"Mlle", NORM_OK, "F"},
        {"M", NORM_OK, "M"},        {"m", NORM_OK, "M"},        {"H", NORM_OK, "M"},
        {"Homme", NORM_OK, "M"},    {"Masculin", NORM_OK, "M"}, {"M.", NORM_OK, "M"},
        {"Monsieur", NORM_OK, "M"}, {"Mr", NORM_OK, "M"},       {"", NORM_EMPTY, ""},
        {"?", NORM_EMPTY, ""},      {"Z", NORM_INVALID, "Z"},   {"Autre", NORM_INVALID, "Autre"},
        {"MF", NORM_INVALID, "MF"},
    };

    RUN_TABLE(norm_sex, cases);
}

static void country_cases(void **state)
{
    static const struct norm_case cases[] = {
        {"France", NORM_OK, "FR"},
        {"FRANCE", NORM_OK, "FR"},
        {"FRA", NORM_OK, "FR"},
        {"fr", NORM_OK, "FR"},
        {"Belgique", NORM_OK, "BE"},
        {"Belgium", NORM_OK, "BE"},
        {"BEL", NORM_OK, "BE"},
        {"Allemagne", NORM_OK, "DE"},
        {"DEU", NORM_OK, "DE"},
        {"Suisse", NORM_OK, "CH"},
        {"CHE", NORM_OK, "CH"},
        {"Royaume-Uni", NORM_OK, "GB"},
        {"United Kingdom", NORM_OK, "GB"},
        {"UK", NORM_OK, "GB"},
        {"GBR", NORM_OK, "GB"},
        {"Luxembourg", NORM_OK, "LU"},
        {"LUX", NORM_OK, "LU"},
        {"Canada", NORM_OK, "CA"},
        {"CAN", NORM_OK, "CA"},
        {"Pays-Bas", NORM_OK, "NL"},
        {"les Pays-Bas", NORM_OK, "NL"},
        {"The Netherlands", NORM_OK, "NL"},
        {"Espagne", NORM_OK, "ES"},
        {"Italie", NORM_OK, "IT"},
        {"Portugal", NORM_OK, "PT"},
        {"Irlande", NORM_OK, "IE"},
        {"Suède", NORM_OK, "SE"},
        {"Tchéquie", NORM_OK, "CZ"},
        {"Norvège", NORM_OK, "NO"},
        {"Islande", NORM_OK, "IS"},
        {"États-Unis", NORM_OK, "US"},
        {"USA", NORM_OK, "US"},
        {"Maroc", NORM_OK, "MA"},
        {"Algérie", NORM_OK, "DZ"},
        {"Tunisie", NORM_OK, "TN"},
        {"Sénégal", NORM_OK, "SN"},
        {"Côte d'Ivoire", NORM_OK, "CI"},
        {"Côte d’Ivoire", NORM_OK, "CI"},
        {"CIV", NORM_OK, "CI"},
        {"Brésil", NORM_OK, "BR"},
        {"Brazil", NORM_OK, "BR"},
        {"Guadeloupe", NORM_OK, "FR"},
        {"Martinique", NORM_OK, "FR"},
        {"La Réunion", NORM_OK, "FR"},
        {"Réunion", NORM_OK, "FR"},
        {"Guyane", NORM_OK, "FR"},
        {"Mayotte", NORM_OK, "FR"},
        {"GP", NORM_OK, "FR"},
        {"REU", NORM_OK, "FR"},
        {"", NORM_EMPTY, ""},
        {"-", NORM_EMPTY, ""},
        {"Narnia", NORM_INVALID, "Narnia"},
        {"ZZ", NORM_INVALID, "ZZ"},
        {"Fra nce", NORM_INVALID, "Fra nce"},
    };

    RUN_TABLE(norm_country, cases);
}

/* Every normaliser on hostile input: invalid UTF-8, tiny output buffers.
 * The checks are that nothing crashes (the sanitizer build catches reads past
 * the end) and that the output is always NUL-terminated within size. */
static void utf8_repair(void **state)
{
    static const struct {
        const char *in;
        size_t size;
        const char *out;
    } cases[] = {
        {"550 5.1.1 Boîte inconnue", 64, "550 5.1.1 Boîte inconnue"},
        {"550 Bo\xeete \xff", 64, "550 Bo\xEF\xBF\xBDte \xEF\xBF\xBD"},
        {"\xC3", 8, "\xEF\xBF\xBD"},
        {"ab\xC3\xA9", 4, "ab"},     /* é does not fit whole */
        {"ab\xC3\xA9", 5, "ab\xC3\xA9"},
        {"", 4, ""},
    };
    char out[64];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        norm_utf8_repair(cases[i].in, out, cases[i].size);
        if (strcmp(out, cases[i].out) != 0)
            fail_msg("case %zu: \"%s\" instead of \"%s\"", i, out, cases[i].out);
    }
}

static void hostile_input(void **state)
{
    static const char *const inputs[] = {
        "\xC3",
        "\xE2\x82",
        "\xF0\x9F\x98",
        "\x80\x80\x80",
        "\xFF\xFE",
        "é\xC3",
        "+33\xC2",
        ("06\xA0"
         "12345678"),
        "d'",
        "d’",
        "D'",
        "(0)",
        "+",
        "00",
        "@",
        "a@",
        "@@",
        ";;;",
        " et ",
        "galop d",
        "poney d",
        "g",
        "9999-99-99",
        "1/1/",
        "//",
        "2002-02-22 1:",
        "\xE2\x80\x99",
        "\xC5\x92\xC5\x92",
        "ß",
        "F-",
    };
    char out[4];
    char second[3];

    for (size_t i = 0; i < sizeof(inputs) / sizeof(inputs[0]); i++) {
        const char *in = inputs[i];
        for (size_t size = 1; size <= sizeof(out); size++) {
            norm_text(in, out, size);
            assert_true(strlen(out) < size);
            norm_fold(in, out, size, 0);
            assert_true(strlen(out) < size);
            norm_fold(in, out, size, 1);
            assert_true(strlen(out) < size);
            norm_name(in, out, size);
            assert_true(strlen(out) < size);
            norm_phone(in, out, size);
            assert_true(strlen(out) < size);
            norm_postcode(in, NULL, out, size);
            assert_true(strlen(out) < size);
            norm_email(in, out, size, second, sizeof(second));
            assert_true(strlen(out) < size);
            assert_true(strlen(second) < sizeof(second));
            norm_date(in, out, size);
            assert_true(strlen(out) < size);
            norm_licence(in, out, size);
            assert_true(strlen(out) < size);
            norm_galop(in, out, size);
            assert_true(strlen(out) < size);
            norm_sex(in, out, size);
            assert_true(strlen(out) < size);
            norm_country(in, out, size);
            assert_true(strlen(out) < size);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(text_cases),
        cmocka_unit_test(text_null_input),
        cmocka_unit_test(text_truncates_at_character),
        cmocka_unit_test(text_long_input),
        cmocka_unit_test(fold_cases),
        cmocka_unit_test(fold_decomposed_matches_composed),
        cmocka_unit_test(text_composes_marks),
        cmocka_unit_test(name_cases),
        cmocka_unit_test(phone_cases),
        cmocka_unit_test(postcode_cases),
        cmocka_unit_test(email_cases),
        cmocka_unit_test(email_two_addresses),
        cmocka_unit_test(date_cases),
        cmocka_unit_test(licence_cases),
        cmocka_unit_test(galop_cases),
        cmocka_unit_test(sex_cases),
        cmocka_unit_test(country_cases),
        cmocka_unit_test(hostile_input),
        cmocka_unit_test(utf8_repair),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
