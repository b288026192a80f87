/*
 * Service-account token format (nginx-free; shared by the module and sa-admin).
 *
 *   sat_<id:16 base62>_<secret:43 base62><check:6 base62>
 *
 * The check is CRC32 (IEEE) over everything before it, so typos and random
 * strings are rejected without a Redis round trip.  Only [A-Za-z0-9_] is
 * used, so a double click selects the whole token.
 */

#ifndef SA_TOKEN_H
#define SA_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define SA_TOKEN_PREFIX      "sat_"
#define SA_TOKEN_PREFIX_LEN  4

/*
 * A person's personal token for the admin API (sa-admin serve): the same
 * format with another prefix, so that no gateway ever takes one (the
 * gateway's parser knows only "sat_", and the record lives under another
 * key, of another kind: sa_record.h, SA_KIND_PTOKEN).
 */
#define SA_PTOKEN_PREFIX     "sap_"
#define SA_TOKEN_ID_LEN      16
#define SA_TOKEN_SECRET_LEN  43
#define SA_TOKEN_CHECK_LEN   6
#define SA_TOKEN_LEN         (SA_TOKEN_PREFIX_LEN + SA_TOKEN_ID_LEN + 1   \
                              + SA_TOKEN_SECRET_LEN + SA_TOKEN_CHECK_LEN)

/* offsets inside a token */
#define SA_TOKEN_ID_OFF      SA_TOKEN_PREFIX_LEN
#define SA_TOKEN_SECRET_OFF  (SA_TOKEN_ID_OFF + SA_TOKEN_ID_LEN + 1)
#define SA_TOKEN_CHECK_OFF   (SA_TOKEN_SECRET_OFF + SA_TOKEN_SECRET_LEN)

typedef enum {
    SA_TOKEN_OK = 0,
    SA_TOKEN_BAD_LENGTH,
    SA_TOKEN_BAD_PREFIX,
    SA_TOKEN_BAD_ALPHABET,
    SA_TOKEN_BAD_CHECK
} sa_token_err_t;

uint32_t sa_crc32(const unsigned char *p, size_t len);

int sa_is_base62(const unsigned char *p, size_t len);

/*
 * Parses a token without allocating.  On success the id is the
 * SA_TOKEN_ID_LEN bytes at token + SA_TOKEN_ID_OFF.
 */
sa_token_err_t sa_token_parse(const unsigned char *token, size_t len);

/*
 * The same for a token of the given prefix (SA_TOKEN_PREFIX or
 * SA_PTOKEN_PREFIX, SA_TOKEN_PREFIX_LEN characters): the admin API's;
 * the gateway calls only sa_token_parse() and sa_token_shape().
 */
sa_token_err_t sa_token_parse_as(const unsigned char *token, size_t len,
    const char *prefix);

/*
 * Only the shape: length, prefix and separator, what it takes to find the
 * id.  A gateway's cache hit needs no more: comparing the token's hash with
 * the record's proves it is exactly the issued token.  Everything else
 * (sa_token_parse) before anything is asked of Redis.
 */
sa_token_err_t sa_token_shape(const unsigned char *token, size_t len);

const char *sa_token_strerror(sa_token_err_t err);

typedef enum {
    SA_BEARER_OK = 0,
    SA_BEARER_NONE,          /* another scheme (Basic, ...): no bearer token */
    SA_BEARER_MALFORMED      /* "Bearer" without one well-shaped credential */
} sa_bearer_err_t;

/*
 * Finds the credential of an Authorization header value "Bearer <token>"
 * (scheme case-insensitive, RFC 7235; spaces and tabs around the token
 * allowed).  *token points into value; nothing is allocated.
 */
sa_bearer_err_t sa_bearer_parse(const unsigned char *value, size_t len,
    const unsigned char **token, size_t *token_len);

/* Writes a fresh token (SA_TOKEN_LEN chars + NUL) from libsodium's CSPRNG. */
void sa_token_generate(char out[SA_TOKEN_LEN + 1]);

/* the same with another prefix (SA_PTOKEN_PREFIX) */
void sa_token_generate_as(char out[SA_TOKEN_LEN + 1], const char *prefix);

/* A token id alone: used for the public id of a new token or account. */
void sa_random_base62(char *out, size_t len);

/* Is this string a well-formed token id (16 base62 characters)? */
int sa_token_id_valid(const char *id, size_t len);

/*
 * The items of an invalidation message (<prefix>invalidate), which anyone
 * allowed to PUBLISH may send: space-separated, each a token id, or
 * <id>:<version> with the version the token's record has now (sa-admin
 * since 0.4).  From *p, before end: skips what is not an item (shorter
 * than an id, or longer without ':' after the id), points *id at the
 * SA_TOKEN_ID_LEN bytes of the next item (any bytes: a made-up id names
 * no token), sets *version (0: none, or not a decimal number below 2^64:
 * the item still names the token), moves *p past it and returns 1; 0 when
 * none is left.  Never reads at or past end.
 */
int sa_invalidation_next(const unsigned char **p, const unsigned char *end,
    const unsigned char **id, uint64_t *version);

#endif /* SA_TOKEN_H */
