/*
 * Password hashing with libsodium's crypto_pwhash_str (Argon2id, interactive
 * limits), and generation of one-time passwords that are easy to type.
 */
#ifndef LICOL_PASSWORD_H
#define LICOL_PASSWORD_H

#include <stddef.h>

#define PASSWORD_HASH_SIZE 128 /* crypto_pwhash_STRBYTES */
#define PASSWORD_MIN_LENGTH 10
#define PASSWORD_MAX_LENGTH 256

/* Hashes password into out. Returns 0, or -1 when out of memory. */
int password_hash(const char *password, char out[PASSWORD_HASH_SIZE]);

/* Returns 1 when password matches hash, else 0. */
int password_verify(const char *password, const char *hash);

/* Writes a random password of 16 characters from an alphabet without
 * look-alike letters (no 0/O, 1/l/I) into out (>= 17 bytes). */
void password_generate(char *out, size_t size);

/* Overwrites a password string held in memory with zeros, then frees it.
 * NULL is accepted. */
void password_free(char *password);

/* Returns NULL when password is acceptable, else a French message
 * (static string) saying what to change. */
const char *password_check_strength(const char *password);

#endif
