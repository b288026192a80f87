/*
 * Key files and hex (core/sa_crypto.c: sa_key_parse, sa_hex_decode).
 *
 * The bytes are a key file's contents (sa_verify_key, --signing-key), parsed
 * as each kind.  On success a verify key is the base64 after the label and
 * a signing key is the key pair of that seed (its public half must verify
 * what it signs); on failure the reason is a non-empty NUL-terminated line
 * that fits errlen, also with a tiny buffer, and the key buffer is not
 * written past its size (exact-size heap buffers).
 *
 * The same bytes go to sa_hex_decode() for every output size that could
 * match, compared with a reference decoder, and hex encode/decode must
 * round-trip.
 */

#include "fuzz.h"


static int
ref_hex_digit(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}


static int
ref_hex_decode(const char *hex, size_t hexlen, uint8_t *bin, size_t len)
{
    size_t  i;
    int     hi, lo;

    if (hexlen != len * 2) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        hi = ref_hex_digit((unsigned char) hex[2 * i]);
        lo = ref_hex_digit((unsigned char) hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return -1;
        }
        bin[i] = (uint8_t) (hi << 4 | lo);
    }

    return 0;
}


static void
check_key(const char *buf, size_t len, sa_key_kind_t kind)
{
    size_t    klen = kind == SA_KEY_SIGNING ? SA_SECRETKEY_LEN
                                            : SA_PUBLICKEY_LEN;
    uint8_t  *key = malloc(klen), sig[SA_SIGNATURE_LEN];
    char     *err = malloc(128), tiny[4];
    int       rc;

    FUZZ_ASSERT(key != NULL && err != NULL);
    memset(err, 0xA5, 128);

    rc = sa_key_parse(buf, len, kind, key, err, 128);
    FUZZ_ASSERT(rc == 0 || rc == -1);

    if (rc != 0) {
        FUZZ_ASSERT(memchr(err, '\0', 128) != NULL && err[0] != '\0');
    } else if (kind == SA_KEY_SIGNING) {
        /* the secret key carries its public half: it must verify */
        crypto_sign_detached(sig, NULL, (const unsigned char *) "m", 1, key);
        FUZZ_ASSERT(crypto_sign_verify_detached(sig, (const unsigned char *)
                                                "m", 1, key + 32) == 0);
    }

    memset(tiny, 0xA5, sizeof(tiny));
    FUZZ_ASSERT(sa_key_parse(buf, len, kind, key, tiny, sizeof(tiny)) == rc);
    if (rc != 0) {
        FUZZ_ASSERT(memchr(tiny, '\0', sizeof(tiny)) != NULL);
    }

    free(err);
    free(key);
}


FUZZ_INIT_TEST_KEYS()


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char  *s = (const char *) data;
    uint8_t     *bin, *ref;
    char        *hex;
    size_t       n;
    int          rc;

    check_key(s, size, SA_KEY_VERIFY);
    check_key(s, size, SA_KEY_SIGNING);

    /* hex: the right size, and one off on each side */
    for (n = size / 2; n <= size / 2 + 1; n++) {
        bin = malloc(n + 1);
        ref = malloc(n + 1);
        FUZZ_ASSERT(bin != NULL && ref != NULL);
        rc = sa_hex_decode(s, size, bin, n);
        FUZZ_ASSERT(rc == ref_hex_decode(s, size, ref, n));
        if (rc == 0) {
            FUZZ_ASSERT(memcmp(bin, ref, n) == 0);
        }
        if (n > 0) {
            rc = sa_hex_decode(s, size, bin, n - 1);
            FUZZ_ASSERT(rc == -1 || size == 2 * (n - 1));
        }
        free(ref);
        free(bin);
    }

    /* encode is the inverse of decode */
    hex = malloc(size * 2 + 1);
    bin = malloc(size + 1);
    FUZZ_ASSERT(hex != NULL && bin != NULL);
    sa_hex_encode(data, size, hex);
    FUZZ_ASSERT(strlen(hex) == size * 2);
    FUZZ_ASSERT(sa_hex_decode(hex, size * 2, bin, size) == 0
                && memcmp(bin, data, size) == 0);
    free(bin);
    free(hex);

    return 0;
}
