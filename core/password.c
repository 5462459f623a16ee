#include "password.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

int password_hash(const char *password, char out[PASSWORD_HASH_SIZE])
{
    if (sodium_init() < 0)
        return -1;
    return crypto_pwhash_str(out, password, strlen(password), crypto_pwhash_OPSLIMIT_INTERACTIVE,
                             crypto_pwhash_MEMLIMIT_INTERACTIVE);
}

int password_verify(const char *password, const char *hash)
{
    if (!hash || !*hash || sodium_init() < 0)
        return 0;
    return crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
}

void password_generate(char *out, size_t size)
{
    static const char alphabet[] = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    size_t length = size - 1 < 16 ? size - 1 : 16;

    if (sodium_init() < 0)
        return;
    for (size_t i = 0; i < length; i++)
        out[i] = alphabet[randombytes_uniform(sizeof(alphabet) - 1)];
    out[length] = '\0';
}

const char *password_check_strength(const char *password)
{
    size_t length = strlen(password);

    if (length < PASSWORD_MIN_LENGTH)
        return "Le mot de passe doit contenir au moins 10 caractères.";
    if (length > PASSWORD_MAX_LENGTH)
        return "Le mot de passe ne doit pas dépasser 256 caractères.";
    return NULL;
}

void password_free(char *password)
{
    if (!password)
        return;
    sodium_memzero(password, strlen(password));
    free(password);
}
