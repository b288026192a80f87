/*
 * Hashing, constant-time comparison and Ed25519 keys (nginx-free).
 *
 * Key files are one line of text, a label and base64 of 32 bytes:
 *   signing.key   "sa-signing-key-v1 <base64 seed>"       (mode 0600)
 *   verify.key    "sa-verify-key-v1 <base64 public key>"
 * The label makes it impossible to hand a gateway the signing key by
 * mistake without being told so.
 */

#ifndef SA_CRYPTO_H
#define SA_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#define SA_HASH_LEN        32
#define SA_HASH_HEX_LEN    (SA_HASH_LEN * 2)
#define SA_PUBLICKEY_LEN   32
#define SA_SECRETKEY_LEN   64
#define SA_SIGNATURE_LEN   64

#define SA_SIGNING_KEY_LABEL  "sa-signing-key-v1"
#define SA_VERIFY_KEY_LABEL   "sa-verify-key-v1"

typedef enum {
    SA_KEY_SIGNING,
    SA_KEY_VERIFY
} sa_key_kind_t;

/* sodium_init(); returns -1 when libsodium cannot start */
int sa_crypto_init(void);

void sa_token_hash(const unsigned char *token, size_t len,
    uint8_t out[SA_HASH_LEN]);

/* constant time: the time taken does not depend on where a and b differ */
int sa_hash_equal(const uint8_t a[SA_HASH_LEN], const uint8_t b[SA_HASH_LEN]);

void sa_hex_encode(const uint8_t *bin, size_t len, char *hex);
int sa_hex_decode(const char *hex, size_t hexlen, uint8_t *bin, size_t len);

/*
 * Parses a key file's contents.  SA_KEY_SIGNING yields the 64-byte libsodium
 * secret key (derived from the stored seed); SA_KEY_VERIFY the 32-byte public
 * key.  On failure returns -1 and writes a one-line reason into err.
 */
int sa_key_parse(const char *buf, size_t len, sa_key_kind_t kind,
    uint8_t *key, char *err, size_t errlen);

/* reads and parses a key file; the same contract as sa_key_parse() */
int sa_key_load(const char *path, sa_key_kind_t kind, uint8_t *key,
    char *err, size_t errlen);

/*
 * Creates DIR/signing.key (0600) and DIR/verify.key (0644).  Refuses to
 * overwrite an existing key: losing a signing key invalidates every token.
 */
int sa_key_generate(const char *dir, char *err, size_t errlen);

#endif /* SA_CRYPTO_H */
