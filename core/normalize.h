/*
 * Normalisers for the values found in club files: names, phones, postcodes,
 * e-mails, dates, licence numbers, Galop levels, sex and countries. They are
 * pure functions on UTF-8 text, safe to call from any thread, and are offered
 * to the Lua scripts that decide how a file is mapped.
 *
 * Every function writes a NUL-terminated result into out (at most size
 * bytes, truncated safely at a character boundary) and returns a status.
 * With NORM_INVALID, out holds the input trimmed, so staff can still see
 * what the file said.
 */
#ifndef LICOL_NORMALIZE_H
#define LICOL_NORMALIZE_H

#include <stddef.h>

enum norm_status {
    NORM_OK = 0,      /* out holds the normalised value */
    NORM_EMPTY = 1,   /* nothing usable: empty, a placeholder such as ".", or "unknown" */
    NORM_INVALID = 2, /* a value was there but could not be understood */
};

/* Trims, collapses runs of white space (including non-breaking space and
 * line breaks) to one space, drops zero-width characters, and composes a
 * Latin letter followed by a combining grave, acute, circumflex, tilde,
 * diaeresis or cedilla into its precomposed form ("e" + U+0301 -> "é")
 * when Latin-1 Supplement or Latin Extended-A has one. Invalid UTF-8 bytes
 * become U+FFFD.
 *
 * Placeholders become empty. The whole value is compared, in any case and
 * without accents, so "Sans-Souci" stays. They are:
 * - any value without a letter or digit (".", "-", "?", "/", "***");
 * - "néant", "inconnu(e)", "non renseigné(e)", "à compléter", "n/a" with
 *   the slash, "undefined" and "unknown";
 * - short words: "x", "xx", "xxx", "na", "n a", "nc", "nr", "nd", "nil",
 *   "null", "none", "aucun(e)". "sans" and "vide" are not placeholders.
 * The normalisers from norm_phone on apply the same trimming, composition
 * and placeholders first. norm_name applies the first two groups only. */
enum norm_status norm_text(const char *in, char *out, size_t size);

/* Copies in (NUL-terminated) into out as valid UTF-8: each invalid byte
 * becomes U+FFFD, and the copy stops before a character that does not fit,
 * so out is always valid UTF-8. For text from outside, such as a server's
 * reply, before it goes into JSON. */
void norm_utf8_repair(const char *in, char *out, size_t size);

/* Lower-case key for comparisons: accents of Latin-1 Supplement and Latin
 * Extended-A folded to ASCII (é->e, œ->oe, ß->ss, ł->l, ...), case folded,
 * and combining marks U+0300 to U+036F dropped, so decomposed text gives
 * the same key as precomposed text. Letters of other scripts are kept
 * unchanged. With alnum_only, everything that is not a letter or digit is
 * dropped ("N° licence" -> "nlicence"); otherwise punctuation becomes a
 * space and spaces are collapsed. */
enum norm_status norm_fold(const char *in, char *out, size_t size, int alnum_only);

/* Display case for last and first names: every word capitalised after a
 * space, a hyphen or an apostrophe ("DUPONT" -> "Dupont", "jean-pierre" ->
 * "Jean-Pierre", "martin--durand" -> "Martin--Durand", "o'neill" and
 * "o’neill" -> "O'Neill" / "O’Neill", the apostrophe kept as typed). The
 * particles "de", "du", "des" and "d'" stay lower-case unless they are the
 * whole name: "DE LA FONTAINE" -> "de La Fontaine". A Dutch elided article
 * typed in lower case (an apostrophe and one letter, followed by another
 * word: "'t Hooft", "van 't Hof") keeps its lower-case letter.
 *
 * Combining accents are composed as in norm_text. Only the first two groups
 * of norm_text's placeholders become empty: values without a letter or
 * digit, and the unambiguous markers ("inconnu", "néant", "n/a"...). Short
 * words such as "X", "Nil", "Na", "Nd", "Null", "Sans" or "Vide" are kept,
 * because they are real first names or surnames. */
enum norm_status norm_name(const char *in, char *out, size_t size);

/* Phone number to E.164. French numbers in every shape seen in club files:
 * "06 12 34 56 78", "06.12.34.56.78", "+33 6 12...", "+33 (0)6 12...",
 * "0033612...", and nine digits that lost their leading zero
 * ("612345678"). Dots, spaces, dashes, slashes and parentheses are
 * ignored. Overseas departments keep +33 as the federation files write
 * them. A number with another country code ("+32 ...", "0041...") is kept
 * in E.164 form when it has 8 to 15 digits. Letters, two numbers in one
 * field, or a French number without exactly nine digits after the prefix
 * are NORM_INVALID. */
enum norm_status norm_phone(const char *in, char *out, size_t size);

/* Postcode. For France (country "FR", NULL or empty, any case; also the
 * overseas departments GP, MQ, GF, RE, YT and Monaco, which use French
 * postcodes), spaces and an "F-" or "FR-" prefix are removed, four digits
 * are padded back to five ("1000" -> "01000"), five digits are OK, and
 * anything else is NORM_INVALID. Foreign postcodes are trimmed and kept. */
enum norm_status norm_postcode(const char *in, const char *country_iso2, char *out, size_t size);

/* E-mail address, lower-cased and validated: one '@', a local part and a
 * domain with a dot, ASCII only, no spaces, no leading, trailing or double
 * dot, a top-level domain of letters. When the field contains two
 * addresses (separated by ';', ',', '/', space, " et " or " & "), the
 * first goes to out and the second to second (when second is not NULL;
 * "" otherwise). Three addresses, or any part that is not an address,
 * make the whole field NORM_INVALID. */
enum norm_status norm_email(const char *in, char *out, size_t size, char *second,
                            size_t second_size);

/* Date to yyyy-mm-dd. Accepts dd/mm/yyyy, d/m/yyyy, dd-mm-yyyy, dd.mm.yyyy,
 * yyyy-mm-dd, yyyy/mm/dd and either followed by " hh:mm[:ss]" (or
 * "Thh:mm"). "0000-00-00", "00/00/0000" and empty are NORM_EMPTY.
 * Impossible dates (month 13, 31 April, 29 February of a common year, a
 * year before 1900 or after 2100) and two-digit years are NORM_INVALID. */
enum norm_status norm_date(const char *in, char *out, size_t size);

/* FFE licence number: seven digits and a letter, upper-cased
 * ("1234567a" -> "1234567A"). These decorations are removed first: a
 * leading "Licence" or "License", then "N°" or "Nº", each in any case and
 * optionally followed by ':'; every space; and one hyphen between the
 * digits and the letter ("N° 1234567-A" -> "1234567A"). Anything else is
 * NORM_INVALID and must not be used as an identity key. */
enum norm_status norm_licence(const char *in, char *out, size_t size);

/* Galop label to a code of the table galop_level: "Galop 3", "G3", "g 3",
 * "3", "galop 3 " -> "galop-3" (1 to 9); "Galop Poney de Bronze" and
 * "Poney de Bronze" -> "poney-bronze"; "Galop de Bronze" -> "galop-bronze";
 * "Galop d'Or" or "Galop d’Or" -> "galop-or"; the codes themselves are
 * accepted. "0", "Galop 0" and empty are NORM_EMPTY. */
enum norm_status norm_galop(const char *in, char *out, size_t size);

/* Sex: "F", "Femme", "Féminin", "Mme", "Madame", "Mlle", "2" -> "F"; "M",
 * "H", "Homme", "Masculin", "M.", "Monsieur", "1" -> "M" (1 and 2 as in the
 * French social security number). Anything else is NORM_INVALID. */
enum norm_status norm_sex(const char *in, char *out, size_t size);

/* Country name (French or English) or ISO code (alpha-2 or alpha-3, any
 * case) to ISO 3166-1 alpha-2: "France", "FRA", "fr" -> "FR"; "Belgique"
 * -> "BE"; "UK" -> "GB". Covers the countries of the European Union, the
 * United Kingdom, Switzerland, Norway, Iceland and the other countries
 * common among French clubs' riders. The overseas departments (Guadeloupe,
 * Martinique, Guyane, La Réunion, Mayotte, and their ISO codes) are "FR",
 * because they are France and use French postcodes and phone numbers. */
enum norm_status norm_country(const char *in, char *out, size_t size);

#endif
