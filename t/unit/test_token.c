/* Unit tests: token generation, parsing and every kind of malformed token. */

#include <stdlib.h>

#include <sodium.h>

#include "tap.h"
#include "sa_crypto.h"
#include "sa_token.h"

#define N_GENERATED  2000


static int
parses_as(const char *t, size_t len, sa_token_err_t want)
{
    return sa_token_parse((const unsigned char *) t, len) == want;
}


/* the bit-at-a-time definition: the eight-bytes-a-step code must agree */
static uint32_t
crc32_bitwise(const unsigned char *p, size_t len)
{
    uint32_t  crc = 0xFFFFFFFFu;
    int       k;

    while (len--) {
        crc ^= *p++;
        for (k = 0; k < 8; k++) {
            crc = (crc & 1) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
        }
    }

    return crc ^ 0xFFFFFFFFu;
}


static void
test_crc32_slices(void)
{
    unsigned char  buf[200];
    size_t         len, off;
    int            bad = 0;

    randombytes_buf(buf, sizeof(buf));

    /* every length and alignment around the 8-byte steps */
    for (off = 0; off < 8; off++) {
        for (len = 0; len + off <= sizeof(buf); len++) {
            bad += sa_crc32(buf + off, len) != crc32_bitwise(buf + off, len);
        }
    }

    ok(bad == 0, "crc32: the same as bit at a time, every length 0..200, "
                 "every alignment");
}


static void
test_crc32(void)
{
    is_long(sa_crc32((const unsigned char *) "123456789", 9), 0xCBF43926L,
            "crc32 check value of \"123456789\"");
    is_long(sa_crc32((const unsigned char *) "", 0), 0, "crc32 of nothing");
    test_crc32_slices();
}


static int
cmp_ids(const void *a, const void *b)
{
    return memcmp(a, b, SA_TOKEN_ID_LEN);
}


static void
test_generate(void)
{
    static char  ids[N_GENERATED][SA_TOKEN_ID_LEN];
    char         t[SA_TOKEN_LEN + 1];
    int          i, bad_parse, bad_shape, dups;

    bad_parse = bad_shape = dups = 0;

    for (i = 0; i < N_GENERATED; i++) {
        sa_token_generate(t);
        bad_parse += !parses_as(t, strlen(t), SA_TOKEN_OK);
        bad_shape += strlen(t) != SA_TOKEN_LEN || strncmp(t, "sat_", 4) != 0
                     || t[SA_TOKEN_SECRET_OFF - 1] != '_'
                     || strspn(t, "abcdefghijklmnopqrstuvwxyz"
                                  "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
                        != SA_TOKEN_LEN;
        memcpy(ids[i], t + SA_TOKEN_ID_OFF, SA_TOKEN_ID_LEN);
    }

    qsort(ids, N_GENERATED, SA_TOKEN_ID_LEN, cmp_ids);
    for (i = 1; i < N_GENERATED; i++) {
        dups += memcmp(ids[i - 1], ids[i], SA_TOKEN_ID_LEN) == 0;
    }

    is_long(SA_TOKEN_LEN, 70, "a token is 70 characters");
    is_long(bad_parse, 0, "every generated token parses");
    is_long(bad_shape, 0, "every generated token has the documented shape");
    is_long(dups, 0, "generated ids are distinct");
}


static void
test_lengths(const char *good)
{
    char    buf[SA_TOKEN_LEN * 2];
    size_t  len;
    int     wrong = 0;

    for (len = 0; len < sizeof(buf); len++) {
        if (len == SA_TOKEN_LEN) {
            continue;
        }
        memset(buf, 'a', sizeof(buf));
        memcpy(buf, good, len < SA_TOKEN_LEN ? len : SA_TOKEN_LEN);
        wrong += !parses_as(buf, len, SA_TOKEN_BAD_LENGTH);
    }

    is_long(wrong, 0, "every length but 70 is rejected as a wrong length");
    ok(parses_as("", 0, SA_TOKEN_BAD_LENGTH), "empty token rejected");
}


static void
test_prefix(const char *good)
{
    static const char  *prefixes[] = { "SAT_", "sat-", "sak_", "xat_",
                                       "sat ", "sa_t" };
    char                t[SA_TOKEN_LEN + 1];
    size_t              i;

    for (i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        memcpy(t, good, SA_TOKEN_LEN + 1);
        memcpy(t, prefixes[i], 4);
        ok(parses_as(t, SA_TOKEN_LEN, SA_TOKEN_BAD_PREFIX),
           "prefix \"%s\" rejected", prefixes[i]);
    }

    memcpy(t, good, SA_TOKEN_LEN + 1);
    t[SA_TOKEN_SECRET_OFF - 1] = 'x';
    ok(parses_as(t, SA_TOKEN_LEN, SA_TOKEN_BAD_PREFIX),
       "missing separator between id and secret rejected");
}


static void
test_alphabet(const char *good)
{
    static const unsigned char  bad[] = { '-', '+', '/', '=', ' ', '\0', '\t',
                                          '_', '.', 0x80, 0xC3, 0xFF };
    unsigned char               t[SA_TOKEN_LEN];
    size_t                      pos, i;
    int                         accepted = 0, tried = 0;

    for (pos = SA_TOKEN_ID_OFF; pos < SA_TOKEN_LEN; pos++) {
        if (pos == SA_TOKEN_SECRET_OFF - 1) {
            continue;
        }
        for (i = 0; i < sizeof(bad); i++) {
            memcpy(t, good, SA_TOKEN_LEN);
            t[pos] = bad[i];
            tried++;
            accepted += sa_token_parse(t, SA_TOKEN_LEN)
                        != SA_TOKEN_BAD_ALPHABET;
        }
    }

    is_long(accepted, 0, "a foreign byte at any position is an alphabet error");
    ok(tried > 700, "alphabet test tried %d variants", tried);
}


static void
test_checksum(const char *good)
{
    char    t[SA_TOKEN_LEN + 1];
    size_t  pos;
    int     accepted = 0;
    char    c;

    /* CRC32 detects every single-character substitution */
    for (pos = SA_TOKEN_ID_OFF; pos < SA_TOKEN_LEN; pos++) {
        if (pos == SA_TOKEN_SECRET_OFF - 1) {
            continue;
        }
        for (c = '0'; c <= 'z'; c++) {
            if (!sa_is_base62((unsigned char *) &c, 1) || c == good[pos]) {
                continue;
            }
            memcpy(t, good, SA_TOKEN_LEN + 1);
            t[pos] = c;
            accepted += !parses_as(t, SA_TOKEN_LEN, SA_TOKEN_BAD_CHECK);
        }
    }
    is_long(accepted, 0, "every one-character typo fails the checksum");

    /* and every transposition of two different neighbours */
    accepted = 0;
    for (pos = SA_TOKEN_SECRET_OFF; pos + 1 < SA_TOKEN_LEN; pos++) {
        memcpy(t, good, SA_TOKEN_LEN + 1);
        if (t[pos] == t[pos + 1]) {
            continue;
        }
        c = t[pos];
        t[pos] = t[pos + 1];
        t[pos + 1] = c;
        accepted += !parses_as(t, SA_TOKEN_LEN, SA_TOKEN_BAD_CHECK);
    }
    is_long(accepted, 0, "every swap of neighbours fails the checksum");
}


static void
test_random_strings(void)
{
    static const char  alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                    "abcdefghijklmnopqrstuvwxyz";
    char               t[SA_TOKEN_LEN + 1];
    unsigned long      x = 12345;
    int                i, pos, accepted = 0;

    /* a deterministic generator: the test must not fail by chance */
    memcpy(t, "sat_", 4);
    for (i = 0; i < 100000; i++) {
        for (pos = SA_TOKEN_ID_OFF; pos < SA_TOKEN_LEN; pos++) {
            x = x * 6364136223846793005UL + 1442695040888963407UL;
            t[pos] = alphabet[(x >> 33) % 62];
        }
        t[SA_TOKEN_SECRET_OFF - 1] = '_';
        accepted += parses_as(t, SA_TOKEN_LEN, SA_TOKEN_OK);
    }

    is_long(accepted, 0, "100000 random well-shaped strings all rejected");
}


static void
test_ids(void)
{
    ok(sa_token_id_valid("0123456789abcdef", 16), "16 base62 chars is an id");
    ok(!sa_token_id_valid("0123456789abcde", 15), "15 chars is not an id");
    ok(!sa_token_id_valid("0123456789abcde_", 16), "'_' is not in an id");
    ok(!sa_token_id_valid("0123456789abcde:", 16), "':' is not in an id");
}


static int
bearer(const char *v, sa_bearer_err_t want, const char *want_token)
{
    const unsigned char  *t = NULL;
    size_t                tlen = 0;
    sa_bearer_err_t       rc;

    rc = sa_bearer_parse((const unsigned char *) v, strlen(v), &t, &tlen);

    if (rc != want) {
        return 0;
    }

    return want != SA_BEARER_OK
           || (tlen == strlen(want_token) && memcmp(t, want_token, tlen) == 0);
}


static void
test_bearer(void)
{
    ok(bearer("Bearer abc", SA_BEARER_OK, "abc"), "Bearer abc");
    ok(bearer("bearer abc", SA_BEARER_OK, "abc"), "scheme is case-insensitive");
    ok(bearer("BEARER  \tabc \t", SA_BEARER_OK, "abc"),
       "spaces and tabs around the token");
    ok(bearer("Basic dXNlcjpwYXNz", SA_BEARER_NONE, NULL), "Basic is no bearer");
    ok(bearer("Bearerx abc", SA_BEARER_NONE, NULL), "Bearerx is another scheme");
    ok(bearer("Beare abc", SA_BEARER_NONE, NULL), "Beare is another scheme");
    ok(bearer("Bearer", SA_BEARER_MALFORMED, NULL), "Bearer alone");
    ok(bearer("Bearer   ", SA_BEARER_MALFORMED, NULL), "Bearer and spaces");
    ok(bearer("Bearer a b", SA_BEARER_MALFORMED, NULL), "two credentials");
    ok(bearer("Bearer a\tb", SA_BEARER_MALFORMED, NULL),
       "two credentials, a tab between");
    ok(bearer("Bearer abc ", SA_BEARER_OK, "abc"), "a blank after");
    ok(bearer("Bearer\tabc", SA_BEARER_OK, "abc"), "a tab after the scheme");
    ok(bearer("bEaReR abc", SA_BEARER_OK, "abc"), "mixed case");
    ok(bearer("Bearer@abc", SA_BEARER_NONE, NULL), "no blank after the scheme");
    ok(bearer("", SA_BEARER_MALFORMED, NULL), "empty value");
    ok(bearer("   ", SA_BEARER_MALFORMED, NULL), "blank value");
    {
        const unsigned char  *t;
        size_t                tlen;

        ok(sa_bearer_parse((const unsigned char *) "Bearer a\0b", 10, &t,
                           &tlen) == SA_BEARER_OK && tlen == 3,
           "a NUL byte is part of the credential (the token check refuses it)");
    }
}


/* the shape is the first half of the parse: never more than it accepts */
static void
test_shape(const char *good)
{
    char    t[SA_TOKEN_LEN + 1];
    size_t  i;
    int     agree = 1;

    ok(sa_token_shape((const unsigned char *) good, SA_TOKEN_LEN)
       == SA_TOKEN_OK, "shape: a good token");
    ok(sa_token_shape((const unsigned char *) good, SA_TOKEN_LEN - 1)
       == SA_TOKEN_BAD_LENGTH, "shape: a short one is a wrong length");

    memcpy(t, good, sizeof(t));
    t[SA_TOKEN_LEN - 1] = t[SA_TOKEN_LEN - 1] == 'a' ? 'b' : 'a';
    ok(sa_token_shape((const unsigned char *) t, SA_TOKEN_LEN) == SA_TOKEN_OK
       && sa_token_parse((const unsigned char *) t, SA_TOKEN_LEN)
          == SA_TOKEN_BAD_CHECK,
       "shape: a wrong checksum has the shape, and fails the parse");

    /* every byte changed to every value: whatever parses has the shape */
    for (i = 0; i < SA_TOKEN_LEN; i++) {
        int  c;

        for (c = 0; c < 256; c++) {
            memcpy(t, good, sizeof(t));
            t[i] = (char) c;
            if (sa_token_parse((const unsigned char *) t, SA_TOKEN_LEN)
                == SA_TOKEN_OK)
            {
                agree &= sa_token_shape((const unsigned char *) t,
                                        SA_TOKEN_LEN) == SA_TOKEN_OK;
            }
            if (sa_token_shape((const unsigned char *) t, SA_TOKEN_LEN)
                != SA_TOKEN_OK)
            {
                agree &= sa_token_parse((const unsigned char *) t,
                                        SA_TOKEN_LEN)
                         == sa_token_shape((const unsigned char *) t,
                                           SA_TOKEN_LEN);
            }
        }
    }
    ok(agree, "shape: agrees with the parse on every one-byte change");
}


/* personal tokens (sap_): the same format, never taken for a sat_ one */
static void
test_personal(const char *good)
{
    char  p[SA_TOKEN_LEN + 1], q[SA_TOKEN_LEN + 1];
    int   i, bad = 0;

    sa_token_generate_as(p, SA_PTOKEN_PREFIX);

    ok(strncmp(p, "sap_", 4) == 0 && strlen(p) == SA_TOKEN_LEN,
       "personal: sap_ and 70 characters");
    is_long(sa_token_parse_as((unsigned char *) p, SA_TOKEN_LEN,
                              SA_PTOKEN_PREFIX), SA_TOKEN_OK,
            "personal: parses as a personal token");
    is_long(sa_token_parse((unsigned char *) p, SA_TOKEN_LEN),
            SA_TOKEN_BAD_PREFIX, "personal: the gateway's parser refuses it");
    is_long(sa_token_shape((unsigned char *) p, SA_TOKEN_LEN),
            SA_TOKEN_BAD_PREFIX, "personal: and so does its shape check");
    is_long(sa_token_parse_as((unsigned char *) good, SA_TOKEN_LEN,
                              SA_PTOKEN_PREFIX), SA_TOKEN_BAD_PREFIX,
            "personal: a sat_ token is no personal token");

    /* the prefix is covered by the check digits: sat_ + the rest fails */
    memcpy(q, p, sizeof(q));
    memcpy(q, "sat_", 4);
    is_long(sa_token_parse((unsigned char *) q, SA_TOKEN_LEN),
            SA_TOKEN_BAD_CHECK,
            "personal: its prefix swapped for sat_ fails the checksum");

    for (i = 0; i < 500; i++) {
        sa_token_generate_as(q, SA_PTOKEN_PREFIX);
        bad += sa_token_parse_as((unsigned char *) q, SA_TOKEN_LEN,
                                 SA_PTOKEN_PREFIX) != SA_TOKEN_OK
               || sa_token_parse((unsigned char *) q, SA_TOKEN_LEN)
                  == SA_TOKEN_OK;
    }
    is_long(bad, 0, "personal: 500 generated, each only a personal token");
}


/* the items of an invalidation message, as "id=version" lines */
static const char *
items(const char *msg, size_t len)
{
    static char           out[512];
    char                 *o = out;
    uint64_t              v;
    const unsigned char  *p = (const unsigned char *) msg, *id;
    unsigned char        *copy = malloc(len ? len : 1);

    /* an exact-size copy: ASan sees a read past the end */
    memcpy(copy, msg, len);
    p = copy;
    out[0] = '\0';

    while (sa_invalidation_next(&p, copy + len, &id, &v)) {
        o += sprintf(o, "%s%.16s=%llu", o == out ? "" : " ", (const char *) id,
                     (unsigned long long) v);
    }

    free(copy);
    return out;
}


static void
test_invalidation(void)
{
    const char  *id = "abcdefghijklmnop";
    char         big[20100];

    is_str(items("", 0), "", "invalidation: empty");
    is_str(items("   ", 3), "", "invalidation: spaces");
    is_str(items(id, 16), "abcdefghijklmnop=0", "invalidation: an id");
    is_str(items("abcdefghijklmnop:7 bbbbbbbbbbbbbbbb:12", 38),
           "abcdefghijklmnop=7 bbbbbbbbbbbbbbbb=12", "two items with versions");
    is_str(items("abcdefghijklmnop:", 17), "abcdefghijklmnop=0", "<id>:");
    is_str(items("abcdefghijklmnop:-1", 19), "abcdefghijklmnop=0", "<id>:-1");
    is_str(items("abcdefghijklmnop:2x", 19), "abcdefghijklmnop=0", "<id>:2x");
    is_str(items("abcdefghijklmnop:18446744073709551615", 37),
           "abcdefghijklmnop=18446744073709551615", "<id>:2^64-1");
    is_str(items("abcdefghijklmnop:18446744073709551616", 37),
           "abcdefghijklmnop=0", "<id>:2^64 overflows: no version");
    is_str(items("abcdefghijklmnopq", 17), "", "17 bytes, no colon: skipped");
    is_str(items("abcdefghijklmno:1", 17), "", "a 15-byte id: skipped");
    is_str(items("abcdefghijklmnop;5", 18), "", "another separator: skipped");
    is_str(items("  abcdefghijklmnop:3  ", 22), "abcdefghijklmnop=3",
           "spaces around");

    memset(big, 'x', sizeof(big));
    memcpy(big, id, 16);
    big[16] = ':';
    memset(big + 17, '9', 10000);
    big[10017] = ' ';
    memcpy(big + 10018, id, 16);
    is_str(items(big, 10034), "abcdefghijklmnop=0 abcdefghijklmnop=0",
           "10 kB of digits: no version, and the next item read");
}


int
main(void)
{
    char  good[SA_TOKEN_LEN + 1];

    if (sa_crypto_init() != 0) {
        printf("Bail out! libsodium init failed\n");
        return 1;
    }

    sa_token_generate(good);

    test_crc32();
    test_generate();
    test_lengths(good);
    test_prefix(good);
    test_shape(good);
    test_alphabet(good);
    test_checksum(good);
    test_random_strings();
    test_ids();
    test_bearer();
    test_personal(good);
    test_invalidation();

    is_str(sa_token_strerror(SA_TOKEN_BAD_CHECK), "checksum mismatch",
           "errors have readable names");

    return done_testing();
}
