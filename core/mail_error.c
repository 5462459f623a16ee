#include "mail_error.h"

#include <ctype.h>
#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

/* Explanations by enhanced status code (RFC 3463, and the IANA registry
 * for later codes such as 1.10 and 7.8): class digit ignored,
 * "subject.detail" matched exactly, or "subject." for a whole subject. */
static const struct {
    const char *code;
    const char *text;
} enhanced[] = {
    {"1.1", "l'adresse du destinataire n'existe pas : vérifiez l'adresse e-mail de la fiche"},
    {"1.10", "le domaine de l'adresse du destinataire ne reçoit pas de mail : vérifiez "
             "l'adresse e-mail de la fiche"},
    {"1.2", "le domaine de l'adresse du destinataire n'existe pas : vérifiez l'adresse e-mail "
            "de la fiche"},
    {"1.3", "l'adresse du destinataire est mal écrite : vérifiez l'adresse e-mail de la fiche"},
    {"2.1", "la boîte du destinataire est désactivée"},
    {"2.2", "la boîte du destinataire est pleine"},
    {"3.4", "le mail est trop gros pour le serveur du destinataire"},
    {"5.3", "le mail a trop de destinataires pour le serveur"},
    {"7.1", "le serveur a refusé le mail (règle anti-spam ou d'autorisation) : vérifiez les "
            "réglages d'envoi (smtp_url, mail_from) ou contactez votre fournisseur de mail"},
    {"7.8", "l'identifiant ou le mot de passe du serveur d'envoi est refusé : vérifiez "
            "smtp_user et smtp_password"},
    {"7.", "le serveur a refusé le mail pour une règle de sécurité : vérifiez les réglages "
           "d'envoi (smtp_url, mail_from) ou contactez votre fournisseur de mail"},
    {"4.", "le serveur n'a pas pu acheminer le mail vers le destinataire (réseau ou routage)"},
};

/* Finds an enhanced status code "c.s.d" at the start of a word of reply,
 * after the reply code, writes "s.d" into code and c into *class. Returns
 * 1 when found. */
static int find_enhanced(const char *reply, char *code, size_t size, int *class)
{
    for (const char *p = reply; *p; p++) {
        int subject, detail, length = 0;

        if ((p != reply && !isspace((unsigned char)p[-1])) || (*p != '2' && *p != '4' &&
                                                               *p != '5'))
            continue;
        if (sscanf(p, "%*1d.%3d.%3d%n", &subject, &detail, &length) == 2 && length > 0 &&
            (p[length] == '\0' || isspace((unsigned char)p[length]))) {
            snprintf(code, size, "%d.%d", subject, detail);
            *class = *p - '0';
            return 1;
        }
    }
    return 0;
}

/* The explanation of an enhanced status code of class 5 (permanent). A
 * class 4 code is a deferral that Licol retries: the reply code explains
 * it better than the subject, which may name a permanent cause. */
static const char *explain_enhanced(const char *reply)
{
    char code[16];
    int class = 0;

    if (!reply || !find_enhanced(reply, code, sizeof(code), &class) || class != 5)
        return NULL;
    for (size_t i = 0; i < sizeof(enhanced) / sizeof(enhanced[0]); i++) {
        size_t n = strlen(enhanced[i].code);

        if (enhanced[i].code[n - 1] == '.' ? strncmp(code, enhanced[i].code, n) == 0
                                           : strcmp(code, enhanced[i].code) == 0)
            return enhanced[i].text;
    }
    return NULL;
}

static const char *explain_reply_code(long code)
{
    switch (code) {
    case 421:
        return "le serveur d'envoi est momentanément indisponible";
    case 450:
    case 451:
    case 452:
        return "le serveur a refusé le mail pour un moment (boîte occupée, serveur surchargé "
               "ou limite d'envoi atteinte)";
    case 530:
    case 535:
        return "l'identifiant ou le mot de passe du serveur d'envoi est refusé : vérifiez "
               "smtp_user et smtp_password";
    case 550:
    case 551:
    case 553:
        return "le serveur a refusé l'adresse du destinataire : vérifiez l'adresse e-mail de la "
               "fiche";
    case 552:
        return "la boîte du destinataire est pleine, ou le mail est trop gros";
    case 554:
        return "le serveur a refusé le mail";
    default:
        return NULL;
    }
}

/* Failures that point at Licol's mail settings or the network, which a
 * reply code would not explain better. */
static const char *explain_curl_setup(int curl_code)
{
    switch (curl_code) {
    case CURLE_COULDNT_RESOLVE_HOST:
        return "le nom du serveur d'envoi est introuvable : vérifiez smtp_url";
    case CURLE_COULDNT_CONNECT:
        return "impossible de joindre le serveur d'envoi : vérifiez smtp_url et la connexion "
               "réseau du serveur Licol";
    case CURLE_OPERATION_TIMEDOUT:
        return "le serveur d'envoi n'a pas répondu à temps";
    case CURLE_LOGIN_DENIED:
        return "l'identifiant ou le mot de passe du serveur d'envoi est refusé : vérifiez "
               "smtp_user et smtp_password";
    case CURLE_USE_SSL_FAILED:
        return "le serveur d'envoi ne propose pas de connexion chiffrée (STARTTLS), que Licol "
               "exige : vérifiez smtp_url";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
        return "la connexion chiffrée (TLS) avec le serveur d'envoi a échoué : vérifiez smtp_url "
               "et le certificat du serveur";
    default:
        return NULL;
    }
}

/* Failures of the connection itself, after the server replied. */
static const char *explain_curl_transport(int curl_code)
{
    switch (curl_code) {
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
        return "la connexion avec le serveur d'envoi a été coupée";
    default:
        return NULL;
    }
}

void mail_error_explain(int curl_code, long smtp_code, const char *reply, char *out, size_t size)
{
    const char *text = explain_enhanced(reply);

    if (!text)
        text = explain_reply_code(smtp_code);
    if (!text)
        text = explain_curl_setup(curl_code);
    if (!text && smtp_code >= 400 && smtp_code < 500)
        text = "le serveur a refusé le mail pour un moment";
    if (!text && smtp_code >= 500 && smtp_code < 600)
        text = "le serveur a refusé le mail";
    if (!text)
        text = explain_curl_transport(curl_code);
    if (!text)
        text = "l'envoi a échoué";
    snprintf(out, size, "%s", text);
    if (size > 0 && out[0] >= 'a' && out[0] <= 'z')
        out[0] = (char)(out[0] - 'a' + 'A');
}
