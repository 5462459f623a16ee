/*
 * Mail messages: rendering the club's templates and building RFC 5322
 * messages from them. This module only produces text; queueing and sending
 * belong to outbox.h.
 *
 * Templates live in a directory (scripts/mail/ by default) as three UTF-8
 * files per kind of mail: NAME.subject.txt, NAME.txt (plain text part) and
 * NAME.html (HTML part). They are read from disk at each render, so a
 * club's edits apply to the next mail without a restart. A placeholder is
 * written {{name}}; values are inserted as they are in the subject and the
 * text part, and HTML-escaped in the HTML part.
 *
 * Error messages (char **err, caller frees) are French, because staff see
 * them when a template is wrong.
 */
#ifndef LICOL_MAIL_H
#define LICOL_MAIL_H

#include <stddef.h>

#define MAIL_TEMPLATE_MAX (256 * 1024) /* bytes per template file */
#define MAIL_SUBJECT_MAX 512           /* bytes of UTF-8, after substitution */
#define MAIL_NAME_MAX 256              /* bytes of a display name */
#define MAIL_ADDRESS_MAX 254           /* RFC 5321 path limit, minus the brackets */
#define MAIL_BODY_MAX (1024 * 1024)    /* bytes per body part */

/* One placeholder value. value NULL is the same as "". */
struct mail_var {
    const char *name;
    const char *value;
};

/* A rendered template. Every field is allocated; free with
 * mail_content_free. */
struct mail_content {
    char *subject;
    char *text;
    char *html;
};

/* Renders template name (letters, digits, '-' and '_' only) from dir with
 * the nvars values in vars. Fails when a file is missing or larger than
 * MAIL_TEMPLATE_MAX, is not UTF-8, uses a placeholder absent from vars or
 * leaves a "{{" unclosed, or when the subject is empty or spans several
 * lines. Returns 0, or -1 with *err set and out zeroed. */
int mail_template_render(const char *dir, const char *name, const struct mail_var *vars,
                         size_t nvars, struct mail_content *out, char **err);

void mail_content_free(struct mail_content *content);

/* Returns 0 when address is a plain ASCII addr-spec (local@domain) that
 * Licol accepts as a sender or recipient, else -1. Quoted local parts,
 * comments and internationalised addresses are rejected. */
int mail_address_check(const char *address);

/* Inputs of mail_build. The names may be NULL; html may be NULL for a
 * text-only mail. */
struct mail_message {
    const char *from_name;
    const char *from_address;
    const char *to_name;
    const char *to_address;
    const char *subject;
    const char *text;
    const char *html;
};

/* Builds a complete message with CRLF line endings: Date, Message-ID (random,
 * at the sender's domain), From, To, Subject, MIME-Version, Auto-Submitted,
 * and a multipart/alternative body with a text/plain and a text/html part in
 * UTF-8, each base64-encoded. Header text outside printable ASCII is
 * written as RFC 2047 encoded-words, and header lines are folded to at most
 * 78 characters where the value allows it (an address is never split).
 * Any CR, LF or other control character in a header value, text that is not
 * UTF-8, an invalid address or a value above its cap is rejected, so input
 * can never add a header. Returns the message, or NULL with *err set. When
 * message_id is not NULL it receives the Message-ID (with its angle
 * brackets), which the caller frees. */
char *mail_build(const struct mail_message *msg, char **message_id, char **err);

/* Writes the header field "name: value" to a new string, with value encoded
 * and folded as mail_build does for an unstructured field such as Subject,
 * and the closing CRLF. Returns NULL with *err set when value contains a
 * control character or is not UTF-8. Exposed for tests. */
char *mail_header_encode(const char *name, const char *value, char **err);

#endif
