/*
 * Authorization header + token parser on arbitrary bytes.
 *
 * sa_bearer_parse() and sa_token_parse() see attacker bytes on every
 * request.  Beyond "no crash, no read past len" (libFuzzer hands us an
 * exact-size heap copy, so ASan sees any over-read), both are compared with
 * independent reference implementations written from the README's rules:
 *
 *   header: blank-separated words (blank = space, tab); no word: malformed;
 *           first word not "bearer" (ASCII case-insensitive): none; then
 *           exactly one more word: ok, otherwise malformed
 *   token:  sat_<16 base62>_<43 base62><6 base62 = CRC32 of the rest>
 *           (a personal token: the same with sap_, sa_token_parse_as())
 *
 * and a token whose check is recomputed must parse iff its shape is right;
 * no bytes are ever both a sat_ and a sap_ token.
 */

#include "fuzz.h"
#include "sa_token.h"

static const char  ref_b62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";


static int
ref_blank(unsigned char c)
{
    return c == ' ' || c == '\t';
}


static int
ref_b62_char(unsigned char c)
{
    return c != '\0' && memchr(ref_b62, c, 62) != NULL;
}


static int
ref_all_b62(const unsigned char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (!ref_b62_char(p[i])) {
            return 0;
        }
    }

    return 1;
}


/* bitwise CRC-32 (IEEE 802.3, reflected), no table */
static uint32_t
ref_crc32(const unsigned char *p, size_t n)
{
    uint32_t  crc = 0xFFFFFFFFu;
    int       k;

    while (n--) {
        crc ^= *p++;
        for (k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
        }
    }

    return ~crc;
}


static void
ref_check(const unsigned char *tok, char out[SA_TOKEN_CHECK_LEN])
{
    uint32_t  crc = ref_crc32(tok, SA_TOKEN_CHECK_OFF);
    int       i;

    for (i = SA_TOKEN_CHECK_LEN - 1; i >= 0; i--) {
        out[i] = ref_b62[crc % 62];
        crc /= 62;
    }
}


/* shape only: length, prefix, separator, alphabet */
static sa_token_err_t
ref_token_shape_as(const unsigned char *t, size_t n, const char *prefix)
{
    size_t  i;

    if (n != 70) {
        return SA_TOKEN_BAD_LENGTH;
    }

    if (memcmp(t, prefix, 4) != 0 || t[20] != '_') {
        return SA_TOKEN_BAD_PREFIX;
    }

    for (i = 4; i < n; i++) {
        if (i != 20 && !ref_b62_char(t[i])) {
            return SA_TOKEN_BAD_ALPHABET;
        }
    }

    return SA_TOKEN_OK;
}


static sa_token_err_t
ref_token_shape(const unsigned char *t, size_t n)
{
    return ref_token_shape_as(t, n, "sat_");
}


static sa_token_err_t
ref_token_parse_as(const unsigned char *t, size_t n, const char *prefix)
{
    char            check[SA_TOKEN_CHECK_LEN];
    sa_token_err_t  rc = ref_token_shape_as(t, n, prefix);

    if (rc != SA_TOKEN_OK) {
        return rc;
    }

    ref_check(t, check);
    return memcmp(check, t + 64, 6) == 0 ? SA_TOKEN_OK : SA_TOKEN_BAD_CHECK;
}


static sa_token_err_t
ref_token_parse(const unsigned char *t, size_t n)
{
    return ref_token_parse_as(t, n, "sat_");
}


static sa_bearer_err_t
ref_bearer_parse(const unsigned char *v, size_t n, size_t *tok_off,
    size_t *tok_len)
{
    size_t  i = 0, nwords = 0, off[3] = { 0 }, len[3] = { 0 }, k;

    while (i < n) {
        while (i < n && ref_blank(v[i])) {
            i++;
        }
        if (i == n) {
            break;
        }
        if (nwords < 3) {
            off[nwords] = i;
        }
        while (i < n && !ref_blank(v[i])) {
            i++;
        }
        if (nwords < 3) {
            len[nwords] = i - off[nwords];
        }
        nwords++;
    }

    if (nwords == 0) {
        return SA_BEARER_MALFORMED;
    }

    if (len[0] != 6) {
        return SA_BEARER_NONE;
    }

    for (k = 0; k < 6; k++) {
        unsigned char  c = v[off[0] + k];

        if (c >= 'A' && c <= 'Z') {
            c = (unsigned char) (c - 'A' + 'a');
        }
        if (c != (unsigned char) "bearer"[k]) {
            return SA_BEARER_NONE;
        }
    }

    if (nwords != 2) {
        return SA_BEARER_MALFORMED;
    }

    *tok_off = off[1];
    *tok_len = len[1];
    return SA_BEARER_OK;
}


static void
check_token(const unsigned char *t, size_t n)
{
    sa_token_err_t  rc;
    unsigned char  *fixed;

    rc = sa_token_parse(t, n);
    FUZZ_ASSERT(rc == ref_token_parse(t, n));
    FUZZ_ASSERT(sa_token_strerror(rc) != NULL);

    /* personal tokens: their own prefix, never both kinds at once */
    FUZZ_ASSERT(sa_token_parse_as(t, n, SA_PTOKEN_PREFIX)
                == ref_token_parse_as(t, n, "sap_"));
    FUZZ_ASSERT(rc != SA_TOKEN_OK
                || sa_token_parse_as(t, n, SA_PTOKEN_PREFIX) != SA_TOKEN_OK);

    if (rc == SA_TOKEN_OK) {
        FUZZ_ASSERT(n == SA_TOKEN_LEN);
        FUZZ_ASSERT(sa_token_id_valid((const char *) t + SA_TOKEN_ID_OFF,
                                      SA_TOKEN_ID_LEN));
        FUZZ_ASSERT(sa_crc32(t, SA_TOKEN_CHECK_OFF)
                    == ref_crc32(t, SA_TOKEN_CHECK_OFF));
    }

    /* with its check recomputed, a well-shaped token parses */
    if (n == SA_TOKEN_LEN) {
        fixed = malloc(n);
        memcpy(fixed, t, n);
        ref_check(fixed, (char *) fixed + SA_TOKEN_CHECK_OFF);
        rc = ref_token_shape(fixed, n);
        FUZZ_ASSERT(sa_token_parse(fixed, n) == rc);
        free(fixed);
    }

    FUZZ_ASSERT(sa_is_base62(t, n) == ref_all_b62(t, n));
}


FUZZ_INIT_TEST_KEYS()


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const unsigned char  *tok = NULL;
    size_t                tok_len = 0, ref_off = 0, ref_len = 0, i;
    sa_bearer_err_t       rc, ref;
    char                  gen[SA_TOKEN_LEN + 1];

    rc = sa_bearer_parse(data, size, &tok, &tok_len);
    ref = ref_bearer_parse(data, size, &ref_off, &ref_len);
    FUZZ_ASSERT(rc == ref);

    if (rc == SA_BEARER_OK) {
        FUZZ_ASSERT(tok == data + ref_off && tok_len == ref_len);
        FUZZ_ASSERT(tok_len > 0 && tok + tok_len <= data + size);
        for (i = 0; i < tok_len; i++) {
            FUZZ_ASSERT(!ref_blank(tok[i]));
        }
        check_token(tok, tok_len);
    }

    /* the bytes as a bare token too (what a length check would see) */
    check_token(data, size);

    sa_token_id_valid((const char *) data, size);

    /* a fresh token always parses, and parses inside a header */
    if (size > 0 && data[0] == 'G') {
        char  hdr[8 + SA_TOKEN_LEN + 2];

        sa_token_generate_as(gen, SA_PTOKEN_PREFIX);
        FUZZ_ASSERT(sa_token_parse_as((unsigned char *) gen, SA_TOKEN_LEN,
                                      SA_PTOKEN_PREFIX) == SA_TOKEN_OK
                    && sa_token_parse((unsigned char *) gen, SA_TOKEN_LEN)
                       == SA_TOKEN_BAD_PREFIX);

        sa_token_generate(gen);
        FUZZ_ASSERT(strlen(gen) == SA_TOKEN_LEN);
        FUZZ_ASSERT(sa_token_parse((unsigned char *) gen, SA_TOKEN_LEN)
                    == SA_TOKEN_OK);
        snprintf(hdr, sizeof(hdr), "bEaReR\t%s ", gen);
        FUZZ_ASSERT(sa_bearer_parse((unsigned char *) hdr, strlen(hdr), &tok,
                                    &tok_len) == SA_BEARER_OK
                    && tok_len == SA_TOKEN_LEN
                    && memcmp(tok, gen, SA_TOKEN_LEN) == 0);
    }

    return 0;
}
