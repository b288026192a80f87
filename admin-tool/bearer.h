/*
 * sa-admin: who calls the admin API with a bearer token (DESIGN.md, "Admin
 * API"; issue 22, item 3).  Two kinds of token, one format (core/sa_token.h):
 *
 *   sat_...  a service account's token, verified exactly as a gateway
 *            verifies it: the shape and check digits, one GET of
 *            <prefix>tok:<id>, the record's signature with the verify key
 *            (sa_verify_key_or_exit(): --verify-key, SA_VERIFY_KEY, or the
 *            signing key's public half), the record naming this id, the
 *            BLAKE2b hash of the whole token compared in constant time,
 *            revocation (a tombstone), expiry; then the account record
 *            (<prefix>acct:<aid>, verified, naming that account and team:
 *            a deleted account's tokens stop at once, even where a
 *            tombstone was lost).  The caller is the account's email,
 *            <aid>@<team>.sa.invalid, bounded by the token's scopes.
 *   sap_...  a person's personal token: the same checks on the record
 *            <prefix>ptok:<id> (kind "ptoken", sa_record.h).  The caller is
 *            the record's user; no scopes (bounded by the user's team
 *            permissions only).  No gateway accepts one: its prefix and its
 *            record's key and kind differ from a service account's.
 *
 * Like a gateway's worker, the process remembers the version of every
 * record it verified or wrote (a few thousand ids): an older record of the
 * same token is then a replay (its record from before a revocation, put
 * back by a Redis writer) and refused.  Under serve the memory is shared
 * by every worker and outlives each (sa_bearer_share()).
 *
 * Nothing here prints, logs or keeps the token's secret; the reasons say
 * what failed without it.  A Redis that cannot be reached ends the request
 * where it is found, as every operation does (sa_die(3): the sink's 503
 * under serve); an error reply of a reachable Redis is SA_AUTH_UNAVAILABLE.
 */

#ifndef SA_ADMIN_BEARER_H
#define SA_ADMIN_BEARER_H

#include <jansson.h>

#include "sa_admin.h"
#include "sa_token.h"

typedef enum {
    SA_AUTH_OK = 0,
    SA_AUTH_UNAUTHENTICATED,    /* 401 + WWW-Authenticate: Bearer */
    SA_AUTH_UNAVAILABLE         /* 503: Redis answered with an error */
} sa_auth_t;

typedef enum {
    SA_CALLER_ACCOUNT = 1,      /* sat_: a service account */
    SA_CALLER_PERSON            /* sap_: a person's personal token */
} sa_caller_kind_t;

typedef struct {
    sa_caller_kind_t  kind;
    char              token_id[SA_TOKEN_ID_LEN + 1];
    char              proof[sizeof("token:") + SA_TOKEN_ID_LEN];
                                /* "token:<id>", for sa->proof */
    char             *actor;    /* the account's email, or the user */
    char             *team;     /* sat_: the account's team; else NULL */
    char             *account;  /* sat_: the account id; else NULL */
    json_t           *scopes;   /* sat_: the token's scopes (an array of
                                   strings, owned); sap_: NULL */
    int64_t           expires_at;    /* unix seconds, 0 never */
} sa_caller_t;

/*
 * Verifies a token (len bytes, not NUL-terminated) as described above.
 * SA_AUTH_OK fills *c (sa_caller_free() it); otherwise *c is empty and
 * *why (static) says what failed: "malformed token", "unknown token",
 * "wrong secret", "revoked", "expired", "record refused: ..." (a record
 * that does not verify, names another token, or is older than one seen:
 * what a Redis writer forged or replayed), "account gone", "account record refused", "Redis: ...".
 */
sa_auth_t sa_bearer_verify(sa_admin_t *sa, const char *token, size_t len,
    sa_caller_t *c, const char **why);

/*
 * The same from an Authorization header's value (NULL: no header):
 * "Bearer <token>", the scheme in any case (core/sa_bearer_parse()).
 * No header, another scheme or a malformed one: SA_AUTH_UNAUTHENTICATED.
 */
sa_auth_t sa_bearer_check(sa_admin_t *sa, const char *header,
    sa_caller_t *c, const char **why);

/*
 * The token's last use, after it authenticated a request: "SET
 * <prefix>tok:<id>:used <now>" (sat_, as a gateway writes it, shown by
 * token list), "SET <prefix>ptok:<id>:used <now>" (sap_, expiring with
 * the record; user token list), at most once a minute per token for all
 * workers (the version memory's table).  An error reply is not an error.
 */
void sa_bearer_used(sa_admin_t *sa, const sa_caller_t *c);

/* the caller becomes sa's: actor, proof and scopes point into c */
void sa_caller_apply(sa_admin_t *sa, const sa_caller_t *c);

void sa_caller_free(sa_caller_t *c);

/* forgets the versions seen (a test's fresh start) */
void sa_bearer_forget(void);

/*
 * The version memory in memory shared with the processes forked after
 * (serve, before its workers): what one worker verified or wrote, every
 * worker knows, the ones started later too (SIGHUP, recycling, a crash).
 * -1 when the memory cannot be mapped.
 */
int sa_bearer_share(void);

/*
 * A change of a token's record, written by this process (revoke, rescope,
 * rotate: the version it signed): an older record of it put back is a
 * replay from now on, even before anyone presents the token.
 */
void sa_bearer_wrote(int person, const char *id, uint64_t version);

#endif /* SA_ADMIN_BEARER_H */
