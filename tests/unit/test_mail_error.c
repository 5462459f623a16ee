/* French explanations of failed SMTP deliveries (core/mail_error.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <curl/curl.h>
#include <string.h>

#include "mail_error.h"

static const struct {
    int curl_code;
    long smtp_code;
    const char *reply;
    const char *expected; /* start of the explanation */
} cases[] = {
    {CURLE_RECV_ERROR, 550, "550 5.1.1 Mailbox unavailable", "L'adresse du destinataire n'existe pas"},
    {CURLE_RECV_ERROR, 550, "550 5.1.10 Recipient address has null MX", "Le domaine de l'adresse du destinataire ne reçoit pas"},
    {CURLE_RECV_ERROR, 550, "550 5.1.2 Bad destination system", "Le domaine de l'adresse"},
    {CURLE_RECV_ERROR, 552, "552 5.2.2 Mailbox full", "La boîte du destinataire est pleine"},
    {CURLE_RECV_ERROR, 554, "554 5.7.1 Message rejected as spam", "Le serveur a refusé le mail (règle anti-spam"},
    {CURLE_RECV_ERROR, 554, "554 5.7.26 Unauthenticated sender", "Le serveur a refusé le mail pour une règle de sécurité"},
    {CURLE_LOGIN_DENIED, 535, "535 5.7.8 Authentication credentials invalid", "L'identifiant ou le mot de passe"},
    {CURLE_RECV_ERROR, 451, "451 4.3.0 Try again later", "Le serveur a refusé le mail pour un moment"},
    {CURLE_RECV_ERROR, 451, "451 4.7.1 Greylisted, try again", "Le serveur a refusé le mail pour un moment"},
    {CURLE_RECV_ERROR, 421, "421 4.7.0 Try again later", "Le serveur d'envoi est momentanément indisponible"},
    {CURLE_RECV_ERROR, 454, "454 4.7.0 TLS not available", "Le serveur a refusé le mail pour un moment"},
    {CURLE_USE_SSL_FAILED, 454, "454 TLS not available", "Le serveur d'envoi ne propose pas de connexion chiffrée"},
    {CURLE_LOGIN_DENIED, 454, "454 4.7.0 Temporary authentication failure", "L'identifiant ou le mot de passe"},
    {CURLE_LOGIN_DENIED, 538, "538 Encryption required", "L'identifiant ou le mot de passe"},
    {CURLE_RECV_ERROR, 599, "599 Something odd", "Le serveur a refusé le mail"},
    {CURLE_RECV_ERROR, 421, "421 Service not available", "Le serveur d'envoi est momentanément indisponible"},
    {CURLE_RECV_ERROR, 550, "550 No such user here", "Le serveur a refusé l'adresse du destinataire"},
    {CURLE_RECV_ERROR, 550, "550 see RFC 5.1.1 later", "L'adresse du destinataire n'existe pas"},
    {CURLE_RECV_ERROR, 550, "550 version 5.1.1.2", "Le serveur a refusé l'adresse du destinataire"},
    {CURLE_COULDNT_CONNECT, 0, NULL, "Impossible de joindre le serveur d'envoi"},
    {CURLE_COULDNT_RESOLVE_HOST, 0, "", "Le nom du serveur d'envoi est introuvable"},
    {CURLE_OPERATION_TIMEDOUT, 0, NULL, "Le serveur d'envoi n'a pas répondu à temps"},
    {CURLE_USE_SSL_FAILED, 0, NULL, "Le serveur d'envoi ne propose pas de connexion chiffrée"},
    {CURLE_PEER_FAILED_VERIFICATION, 0, NULL, "La connexion chiffrée (TLS)"},
    {CURLE_WRITE_ERROR, 0, NULL, "L'envoi a échoué"},
    {CURLE_RECV_ERROR, 0, "garbage 9.9.9", "La connexion avec le serveur d'envoi a été coupée"},
};

static void explanation_table(void **state)
{
    char out[400];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        mail_error_explain(cases[i].curl_code, cases[i].smtp_code, cases[i].reply, out,
                           sizeof(out));
        if (strncmp(out, cases[i].expected, strlen(cases[i].expected)) != 0)
            fail_msg("case %zu (%s): \"%s\" does not start with \"%s\"", i,
                     cases[i].reply ? cases[i].reply : "no reply", out, cases[i].expected);
    }
}

static void explanation_truncated(void **state)
{
    char out[8];

    (void)state;
    mail_error_explain(CURLE_COULDNT_CONNECT, 0, NULL, out, sizeof(out));
    assert_int_equal(strlen(out), sizeof(out) - 1);
    mail_error_explain(CURLE_COULDNT_CONNECT, 0, NULL, out, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(explanation_table),
        cmocka_unit_test(explanation_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
