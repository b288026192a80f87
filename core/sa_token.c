/*
 * Token generation and parsing.  Parsing is on every request's path and sees
 * attacker-controlled bytes: it never allocates and never reads past len.
 */

#include <string.h>
#include <sodium.h>

#include "sa_token.h"

static const char sa_base62[] =
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";


uint32_t
sa_crc32(const unsigned char *p, size_t len)
{
    static uint32_t  table[256];
    static int       ready;
    uint32_t         c, crc;
    unsigned         i, k;

    /* the table is a pure function of the polynomial: racing fills agree */
    if (!ready) {
        for (i = 0; i < 256; i++) {
            c = i;
            for (k = 0; k < 8; k++) {
                c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            }
            table[i] = c;
        }
        ready = 1;
    }

    crc = 0xFFFFFFFFu;
    while (len--) {
        crc = table[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    }

    return crc ^ 0xFFFFFFFFu;
}


static int
sa_base62_char(unsigned char ch)
{
    return (ch >= '0' && ch <= '9')
           || (ch >= 'A' && ch <= 'Z')
           || (ch >= 'a' && ch <= 'z');
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


sa_token_err_t
sa_token_shape(const unsigned char *token, size_t len)
{
    if (len != SA_TOKEN_LEN) {
        return SA_TOKEN_BAD_LENGTH;
    }

    if (memcmp(token, SA_TOKEN_PREFIX, SA_TOKEN_PREFIX_LEN) != 0
        || token[SA_TOKEN_SECRET_OFF - 1] != '_')
    {
        return SA_TOKEN_BAD_PREFIX;
    }

    return SA_TOKEN_OK;
}


sa_token_err_t
sa_token_parse(const unsigned char *token, size_t len)
{
    char            check[SA_TOKEN_CHECK_LEN];
    sa_token_err_t  err;

    err = sa_token_shape(token, len);
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
    memcpy(out, SA_TOKEN_PREFIX, SA_TOKEN_PREFIX_LEN);
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


sa_bearer_err_t
sa_bearer_parse(const unsigned char *value, size_t len,
    const unsigned char **token, size_t *token_len)
{
    static const char  scheme[] = "bearer";
    size_t             i, start, end;

    for (i = 0; i < len && sa_blank(value[i]); i++) { /* void */ }

    start = i;
    for ( /* void */ ; i < len && !sa_blank(value[i]); i++) { /* void */ }

    if (i - start != sizeof(scheme) - 1) {
        return (i - start == 0) ? SA_BEARER_MALFORMED : SA_BEARER_NONE;
    }

    for (end = 0; end < sizeof(scheme) - 1; end++) {
        if ((value[start + end] | 0x20) != (unsigned char) scheme[end]) {
            return SA_BEARER_NONE;
        }
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
