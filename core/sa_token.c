/*
 * Token generation and parsing.  Parsing is on every request's path and sees
 * attacker-controlled bytes: it never allocates and never reads past len.
 */

#include <string.h>
#include <sodium.h>

#include "sa_token.h"

static const char sa_base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";


/*
 * CRC-32 (IEEE), eight bytes a step ("slicing-by-8"): a token's check
 * covers 52 bytes, on the path of every request that is not a cache hit.
 * The tables are a pure function of the polynomial: racing fills agree.
 */
static uint32_t  sa_crc_table[8][256];
static int       sa_crc_ready;


static void
sa_crc32_init(void)
{
    uint32_t  c;
    unsigned  i, k;

    for (i = 0; i < 256; i++) {
        c = i;
        for (k = 0; k < 8; k++) {
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        }
        sa_crc_table[0][i] = c;
    }

    for (i = 0; i < 256; i++) {
        for (k = 1; k < 8; k++) {
            c = sa_crc_table[k - 1][i];
            sa_crc_table[k][i] = (c >> 8) ^ sa_crc_table[0][c & 0xFF];
        }
    }

    sa_crc_ready = 1;
}


static uint32_t
sa_le32(const unsigned char *p)
{
    return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16
           | (uint32_t) p[3] << 24;
}


uint32_t
sa_crc32(const unsigned char *p, size_t len)
{
    uint32_t  crc, a, b;

    if (!sa_crc_ready) {
        sa_crc32_init();
    }

    crc = 0xFFFFFFFFu;

    for ( /* void */ ; len >= 8; p += 8, len -= 8) {
        a = sa_le32(p) ^ crc;
        b = sa_le32(p + 4);
        crc = sa_crc_table[7][a & 0xFF] ^ sa_crc_table[6][(a >> 8) & 0xFF]
              ^ sa_crc_table[5][(a >> 16) & 0xFF] ^ sa_crc_table[4][a >> 24]
              ^ sa_crc_table[3][b & 0xFF] ^ sa_crc_table[2][(b >> 8) & 0xFF]
              ^ sa_crc_table[1][(b >> 16) & 0xFF] ^ sa_crc_table[0][b >> 24];
    }

    while (len--) {
        crc = sa_crc_table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    }

    return crc ^ 0xFFFFFFFFu;
}


/* 1 for the 62 characters of sa_base62, one look per byte */
static unsigned char  sa_base62_table[256];
static int            sa_base62_ready;


static int
sa_base62_char(unsigned char ch)
{
    unsigned  i;

    if (!sa_base62_ready) {
        for (i = 0; i < sizeof(sa_base62) - 1; i++) {
            sa_base62_table[(unsigned char) sa_base62[i]] = 1;
        }
        sa_base62_ready = 1;
    }

    return sa_base62_table[ch];
}


int
sa_is_base62(const unsigned char *p, size_t len)
{
    while (len--) {
        if (!sa_base62_char(*p++)) {
            return 0;
        }
    }

    return 1;
}


/* fixed width, most significant digit first; 62^6 > 2^32 */
static void
sa_check_encode(uint32_t crc, char out[SA_TOKEN_CHECK_LEN])
{
    int  i;

    for (i = SA_TOKEN_CHECK_LEN - 1; i >= 0; i--) {
        out[i] = sa_base62[crc % 62];
        crc /= 62;
    }
}


static sa_token_err_t
sa_token_shape_as(const unsigned char *token, size_t len, const char *prefix)
{
    if (len != SA_TOKEN_LEN) {
        return SA_TOKEN_BAD_LENGTH;
    }

    if (memcmp(token, prefix, SA_TOKEN_PREFIX_LEN) != 0
        || token[SA_TOKEN_SECRET_OFF - 1] != '_')
    {
        return SA_TOKEN_BAD_PREFIX;
    }

    return SA_TOKEN_OK;
}


sa_token_err_t
sa_token_shape(const unsigned char *token, size_t len)
{
    return sa_token_shape_as(token, len, SA_TOKEN_PREFIX);
}


sa_token_err_t
sa_token_parse(const unsigned char *token, size_t len)
{
    return sa_token_parse_as(token, len, SA_TOKEN_PREFIX);
}


sa_token_err_t
sa_token_parse_as(const unsigned char *token, size_t len, const char *prefix)
{
    char            check[SA_TOKEN_CHECK_LEN];
    sa_token_err_t  err;

    err = sa_token_shape_as(token, len, prefix);
    if (err != SA_TOKEN_OK) {
        return err;
    }

    if (!sa_is_base62(token + SA_TOKEN_ID_OFF, SA_TOKEN_ID_LEN)
        || !sa_is_base62(token + SA_TOKEN_SECRET_OFF,
                         SA_TOKEN_SECRET_LEN + SA_TOKEN_CHECK_LEN))
    {
        return SA_TOKEN_BAD_ALPHABET;
    }

    sa_check_encode(sa_crc32(token, SA_TOKEN_CHECK_OFF), check);

    if (memcmp(check, token + SA_TOKEN_CHECK_OFF, SA_TOKEN_CHECK_LEN) != 0) {
        return SA_TOKEN_BAD_CHECK;
    }

    return SA_TOKEN_OK;
}


const char *
sa_token_strerror(sa_token_err_t err)
{
    switch (err) {
    case SA_TOKEN_OK:
        return "ok";
    case SA_TOKEN_BAD_LENGTH:
        return "wrong length";
    case SA_TOKEN_BAD_PREFIX:
        return "wrong prefix";
    case SA_TOKEN_BAD_ALPHABET:
        return "character outside [A-Za-z0-9]";
    case SA_TOKEN_BAD_CHECK:
        return "checksum mismatch";
    }

    return "unknown error";
}


void
sa_random_base62(char *out, size_t len)
{
    size_t  i;

    /* randombytes_uniform() rejects samples, so every character is unbiased */
    for (i = 0; i < len; i++) {
        out[i] = sa_base62[randombytes_uniform(62)];
    }
}


void
sa_token_generate(char out[SA_TOKEN_LEN + 1])
{
    sa_token_generate_as(out, SA_TOKEN_PREFIX);
}


void
sa_token_generate_as(char out[SA_TOKEN_LEN + 1], const char *prefix)
{
    memcpy(out, prefix, SA_TOKEN_PREFIX_LEN);
    sa_random_base62(out + SA_TOKEN_ID_OFF, SA_TOKEN_ID_LEN);
    out[SA_TOKEN_SECRET_OFF - 1] = '_';
    sa_random_base62(out + SA_TOKEN_SECRET_OFF, SA_TOKEN_SECRET_LEN);
    sa_check_encode(sa_crc32((unsigned char *) out, SA_TOKEN_CHECK_OFF),
                    out + SA_TOKEN_CHECK_OFF);
    out[SA_TOKEN_LEN] = '\0';
}


int
sa_token_id_valid(const char *id, size_t len)
{
    return len == SA_TOKEN_ID_LEN && sa_is_base62((const unsigned char *) id, len);
}


static int
sa_blank(unsigned char ch)
{
    return ch == ' ' || ch == '\t';
}


/* "bearer" in any case, in the 6 bytes at p */
static int
sa_is_bearer(const unsigned char *p)
{
    static const char  scheme[] = "bearer";
    size_t             i;

    for (i = 0; i < sizeof(scheme) - 1; i++) {
        if ((p[i] | 0x20) != (unsigned char) scheme[i]) {
            return 0;
        }
    }

    return 1;
}


sa_bearer_err_t
sa_bearer_parse(const unsigned char *value, size_t len,
    const unsigned char **token, size_t *token_len)
{
    static const char  scheme[] = "bearer";
    size_t             i, start, end;

    /* the usual "Bearer <credential>": two memchr() instead of a loop */
    if (len > sizeof(scheme) && value[sizeof(scheme) - 1] == ' '
        && !sa_blank(value[sizeof(scheme)])
        && sa_is_bearer(value)
        && memchr(value + sizeof(scheme), ' ', len - sizeof(scheme)) == NULL
        && memchr(value + sizeof(scheme), '\t', len - sizeof(scheme)) == NULL)
    {
        *token = value + sizeof(scheme);
        *token_len = len - sizeof(scheme);
        return SA_BEARER_OK;
    }

    for (i = 0; i < len && sa_blank(value[i]); i++) { /* void */ }

    start = i;
    for ( /* void */ ; i < len && !sa_blank(value[i]); i++) { /* void */ }

    if (i - start != sizeof(scheme) - 1) {
        return (i - start == 0) ? SA_BEARER_MALFORMED : SA_BEARER_NONE;
    }

    if (!sa_is_bearer(value + start)) {
        return SA_BEARER_NONE;
    }

    for ( /* void */ ; i < len && sa_blank(value[i]); i++) { /* void */ }

    start = i;
    for ( /* void */ ; i < len && !sa_blank(value[i]); i++) { /* void */ }
    end = i;

    for ( /* void */ ; i < len && sa_blank(value[i]); i++) { /* void */ }

    if (start == end || i != len) {
        return SA_BEARER_MALFORMED;
    }

    *token = value + start;
    *token_len = end - start;

    return SA_BEARER_OK;
}


int
sa_invalidation_next(const unsigned char **p, const unsigned char *end,
    const unsigned char **id, uint64_t *version)
{
    size_t                len;
    uint64_t              v, digit;
    const unsigned char  *item, *c;

    while (*p < end) {
        item = *p;
        while (*p < end && **p != ' ') {
            (*p)++;
        }

        len = (size_t) (*p - item);

        if (*p < end) {
            (*p)++;                     /* the space */
        }

        if (len < SA_TOKEN_ID_LEN
            || (len > SA_TOKEN_ID_LEN && item[SA_TOKEN_ID_LEN] != ':'))
        {
            continue;
        }

        v = 0;

        for (c = item + SA_TOKEN_ID_LEN + 1; c < item + len; c++) {
            digit = (uint64_t) (*c - '0');

            if (*c < '0' || *c > '9' || v > (UINT64_MAX - digit) / 10) {
                v = 0;
                break;
            }

            v = v * 10 + digit;
        }

        *id = item;
        *version = v;
        return 1;
    }

    return 0;
}
