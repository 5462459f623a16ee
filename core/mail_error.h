/*
 * French explanations of a failed SMTP delivery, for the outbox page: club
 * staff read why a mail was not delivered and what to check, with the
 * technical detail (libcurl's message and the server's reply) after it.
 */
#ifndef LICOL_MAIL_ERROR_H
#define LICOL_MAIL_ERROR_H

#include <stddef.h>

/* Writes into out (NUL-terminated, truncated to size) a French sentence
 * for a delivery that failed with libcurl result curl_code, SMTP reply code
 * smtp_code (0 when none) and the server's last reply text reply (NULL or
 * empty when none). A permanent enhanced status code in the reply (RFC
 * 3463, such as "5.1.1") is read first, then a known reply code, then a
 * curl_code that points at the settings, then the reply code's class,
 * then any other curl_code. */
void mail_error_explain(int curl_code, long smtp_code, const char *reply, char *out, size_t size);

#endif
