/*
 * sa-admin: bearer tokens of the admin API's callers (bearer.h).  The
 * checks of a gateway (ngx_sa_module/ngx_http_sa_handler.c,
 * ngx_http_sa_check_token()) in the same order, with the same core code:
 * sa_token_parse_as(), sa_token_record_decode() / sa_record_decode(),
 * sa_token_hash() and sa_hash_equal().
 */

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sodium.h>

#include "bearer.h"
#include "fresh.h"
#include "notify.h"
#include "records.h"
#include "redis.h"
#include "util.h"
#include "xalloc.h"


/*
 * The versions this process has verified, by token id, as a gateway's
 * workers remember them (ngx_http_sa_verified.c): a record older than one
 * seen is a replay (a Redis writer putting back a token's record from
 * before its revocation) and refused.  A fixed table, a slot per id
 * (hashed, a few probes); a full neighbourhood forgets its first slot.
 */
#define SA_SEEN_SLOTS   4096            /* a power of two */
#define SA_SEEN_PROBES  8

/* a token's last use is written at most this often, as a gateway does
 * (ngx_http_sa_effects.c, NGX_HTTP_SA_USED_EVERY) */
#define SA_USED_EVERY   60

typedef struct {
    char      id[SA_TOKEN_ID_LEN];
    char      kind;                     /* 't' sat_, 'p' sap_; 0 free */
    uint64_t  version;
    int64_t   used;                     /* its last use written, unix s */
} sa_seen_t;

static sa_seen_t  sa_seen_own[SA_SEEN_SLOTS];
static sa_seen_t *sa_seen = sa_seen_own;

/*
 * Under serve, one table for every worker (sa_bearer_share()), in memory
 * shared with the parent: a worker started after a SIGHUP, a recycling or
 * a crash, or another worker, knows what any of them verified or wrote.
 * A robust lock: a worker killed while holding it does not stop the others.
 */
typedef struct {
    pthread_mutex_t  lock;
    sa_seen_t        slots[SA_SEEN_SLOTS];
} sa_seen_shared_t;

static sa_seen_shared_t  *sa_seen_shm;


int
sa_bearer_share(void)
{
    pthread_mutexattr_t  a;
    void                *p;

    if (sa_seen_shm != NULL) {
        return 0;
    }

    p = mmap(NULL, sizeof(sa_seen_shared_t), PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        return -1;
    }

    sa_seen_shm = p;
    pthread_mutexattr_init(&a);
    pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&sa_seen_shm->lock, &a);
    pthread_mutexattr_destroy(&a);
    memcpy(sa_seen_shm->slots, sa_seen_own, sizeof(sa_seen_own));
    sa_seen = sa_seen_shm->slots;

    return 0;
}


static void
sa_seen_lock(void)
{
    if (sa_seen_shm != NULL
        && pthread_mutex_lock(&sa_seen_shm->lock) == EOWNERDEAD)
    {
        /* its holder died between two stores: a slot at worst half
         * written, which refuses or forgets one token's versions */
        pthread_mutex_consistent(&sa_seen_shm->lock);
    }
}


static void
sa_seen_unlock(void)
{
    if (sa_seen_shm != NULL) {
        pthread_mutex_unlock(&sa_seen_shm->lock);
    }
}


/* remembers (kind, id) at version; -1 when an older version than one seen */
static int
sa_bearer_seen_locked(char kind, const char *id, uint64_t version)
{
    uint32_t    h;
    unsigned    i;
    sa_seen_t  *s, *free_slot = NULL;

    h = sa_crc32((const unsigned char *) id, SA_TOKEN_ID_LEN) ^ (uint32_t) kind;

    for (i = 0; i < SA_SEEN_PROBES; i++) {
        s = &sa_seen[(h + i) & (SA_SEEN_SLOTS - 1)];

        if (s->kind == kind && memcmp(s->id, id, SA_TOKEN_ID_LEN) == 0) {
            if (version < s->version) {
                return -1;
            }
            s->version = version;
            return 0;
        }

        if (s->kind == 0 && free_slot == NULL) {
            free_slot = s;
        }
    }

    s = free_slot ? free_slot : &sa_seen[h & (SA_SEEN_SLOTS - 1)];
    memcpy(s->id, id, SA_TOKEN_ID_LEN);
    s->kind = kind;
    s->version = version;
    s->used = 0;

    return 0;
}


/*
 * Is (kind, id)'s last use due to be written at now: not written in the
 * last SA_USED_EVERY seconds by any worker (an id no longer in the table:
 * due); if so, remembered as written now.
 */
static int
sa_bearer_use_due(char kind, const char *id, int64_t now)
{
    uint32_t    h;
    unsigned    i;
    sa_seen_t  *s;
    int         due = 1;

    h = sa_crc32((const unsigned char *) id, SA_TOKEN_ID_LEN) ^ (uint32_t) kind;

    sa_seen_lock();
    for (i = 0; i < SA_SEEN_PROBES; i++) {
        s = &sa_seen[(h + i) & (SA_SEEN_SLOTS - 1)];
        if (s->kind == kind && memcmp(s->id, id, SA_TOKEN_ID_LEN) == 0) {
            due = s->used == 0 || now - s->used >= SA_USED_EVERY
                  || now < s->used;
            if (due) {
                s->used = now;
            }
            break;
        }
    }
    sa_seen_unlock();

    return due;
}


static int
sa_bearer_seen(char kind, const char *id, uint64_t version)
{
    int  rc;

    sa_seen_lock();
    rc = sa_bearer_seen_locked(kind, id, version);
    sa_seen_unlock();

    return rc;
}


void
sa_bearer_wrote(int person, const char *id, uint64_t version)
{
    if (sa_token_id_valid(id, strlen(id))) {
        (void) sa_bearer_seen(person ? 'p' : 't', id, version);
    }
}


/*
 * The envelopes this process verified, by kind and id: their digest
 * (BLAKE2b-128, sa_envelope_digest()).  The same bytes again need no
 * signature check (a gateway's worker does the same,
 * ngx_http_sa_verified.c): two envelopes with one digest are the same
 * bytes.  One slot per (kind, id), the last verified.  Emptied with the
 * versions by sa_bearer_forget(), which a change of verify key needs
 * (serve replaces its workers).
 */
typedef struct {
    char      id[SA_TOKEN_ID_LEN];
    char      kind;                     /* 't', 'a', 'p'; 0 free */
    uint8_t   digest[SA_DIGEST_LEN];
} sa_proven_t;

static sa_proven_t  sa_proven[SA_SEEN_SLOTS];


static sa_proven_t *
sa_proven_slot(char kind, const char *id)
{
    uint32_t  h = sa_crc32((const unsigned char *) id, SA_TOKEN_ID_LEN)
                  ^ ((uint32_t) kind << 24);

    return &sa_proven[h & (SA_SEEN_SLOTS - 1)];
}


/* these very bytes were verified before under (kind, id) */
static int
sa_bearer_proven(char kind, const char *id, const uint8_t d[SA_DIGEST_LEN])
{
    sa_proven_t  *s = sa_proven_slot(kind, id);

    return s->kind == kind && memcmp(s->id, id, SA_TOKEN_ID_LEN) == 0
           && sodium_memcmp(s->digest, d, SA_DIGEST_LEN) == 0;
}


static void
sa_bearer_prove(char kind, const char *id, const uint8_t d[SA_DIGEST_LEN])
{
    sa_proven_t  *s = sa_proven_slot(kind, id);

    memcpy(s->id, id, SA_TOKEN_ID_LEN);
    s->kind = kind;
    memcpy(s->digest, d, SA_DIGEST_LEN);
}


/*
 * A record of a JSON kind (account, ptoken) naming id: verified, or known
 * as bytes verified before; *out the payload (json_decref() it).
 */
static sa_rec_err_t
sa_bearer_open(char k, sa_kind_t kind, const char *id, const char *value,
    size_t len, const uint8_t *pk, json_t **out)
{
    uint8_t       d[SA_DIGEST_LEN];
    sa_rec_err_t  err;
    json_t       *j;

    *out = NULL;
    sa_envelope_digest(value, len, d);

    if (!sa_bearer_proven(k, id, d)) {
        err = sa_record_decode(value, len, pk, kind, id, out);
        if (err == SA_REC_OK) {
            sa_bearer_prove(k, id, d);
        }
        return err;
    }

    j = json_loadb(value + SA_ENVELOPE_HEAD_LEN, len - SA_ENVELOPE_HEAD_LEN,
                   JSON_REJECT_DUPLICATES, NULL);
    if (j == NULL || sa_record_check(j, kind, id) != SA_REC_OK) {
        json_decref(j);
        return SA_REC_INVALID;
    }

    *out = j;
    return SA_REC_OK;
}


void
sa_bearer_forget(void)
{
    sa_seen_lock();
    memset(sa_seen, 0, sizeof(sa_seen_own));
    sa_seen_unlock();
    memset(sa_proven, 0, sizeof(sa_proven));
    sa_verified_forget();
}


/* the value at <prefix><kind key><id>: a string reply, NULL when absent */
static redisReply *
sa_bearer_get(sa_admin_t *sa, const char *key, const char *id,
    sa_auth_t *rc, const char **why)
{
    redisReply  *r;

    r = sa_xredis_cmd(sa, "GET %s%s%s", sa->prefix, key, id);

    if (r->type == REDIS_REPLY_STRING) {
        return r;
    }

    if (r->type == REDIS_REPLY_NIL) {
        *rc = SA_AUTH_UNAUTHENTICATED;
        *why = "unknown token";

    } else if (r->type == REDIS_REPLY_ERROR
               && strncmp(r->str, "WRONGTYPE", 9) != 0)
    {
        *rc = SA_AUTH_UNAVAILABLE;
        *why = "Redis refused to read the record";

    } else {
        /* WRONGTYPE: a hash or a set where a record belongs */
        *rc = SA_AUTH_UNAUTHENTICATED;
        *why = "record refused: not a signed record";
    }

    freeReplyObject(r);
    return NULL;
}


/* the hash, revocation and expiry: the token's own verdict */
static sa_auth_t
sa_bearer_judge(const char *token, const uint8_t want[SA_HASH_LEN],
    int revoked, int64_t expires_at, const char **why)
{
    uint8_t  hash[SA_HASH_LEN];

    sa_token_hash((const unsigned char *) token, SA_TOKEN_LEN, hash);

    if (!sa_hash_equal(want, hash)) {
        *why = "wrong secret";
        return SA_AUTH_UNAUTHENTICATED;
    }

    if (revoked) {
        *why = "revoked";
        return SA_AUTH_UNAUTHENTICATED;
    }

    if (expires_at && expires_at <= sa_now()) {
        *why = "expired";
        return SA_AUTH_UNAUTHENTICATED;
    }

    return SA_AUTH_OK;
}


/* sat_: the token record, then the account's */
static sa_auth_t
sa_bearer_account(sa_admin_t *sa, const char *token, const uint8_t *pk,
    sa_caller_t *c, const char **why)
{
    sa_token_record_t  *rec = NULL;
    sa_rec_err_t        err;
    sa_auth_t           rc;
    redisReply         *r;
    json_t             *acct;
    const char         *team, *email;
    uint8_t             d[SA_DIGEST_LEN];

    r = sa_bearer_get(sa, SA_KEY_TOKEN, c->token_id, &rc, why);
    if (r == NULL) {
        return rc;
    }

    sa_envelope_digest(r->str, r->len, d);

    if (sa_bearer_proven('t', c->token_id, d)) {
        err = sa_token_record_parse(r->str + SA_ENVELOPE_HEAD_LEN,
                                    r->len - SA_ENVELOPE_HEAD_LEN,
                                    sa_heap_alloc, NULL, &rec);
    } else {
        err = sa_token_record_decode(r->str, r->len, pk, sa_heap_alloc, NULL,
                                     &rec);
        if (err == SA_REC_OK) {
            sa_bearer_prove('t', c->token_id, d);
        }
    }
    freeReplyObject(r);

    if (err != SA_REC_OK) {
        *why = err == SA_REC_BAD_SIGNATURE ? "record refused: bad signature"
               : "record refused: not a valid token record";
        return SA_AUTH_UNAUTHENTICATED;
    }

    if (strcmp(rec->id, c->token_id) != 0) {
        /* a genuine record copied under another token's key */
        free(rec);
        *why = "record refused: it names another token";
        return SA_AUTH_UNAUTHENTICATED;
    }

    if (sa_bearer_seen('t', c->token_id, rec->version) != 0) {
        free(rec);
        *why = "record refused: older than one already seen (a replay)";
        return SA_AUTH_UNAUTHENTICATED;
    }

    rc = sa_bearer_judge(token, rec->hash, rec->revoked, rec->expires_at,
                         why);
    if (rc != SA_AUTH_OK) {
        free(rec);
        return rc;
    }

    /* the bounded replay window, as a gateway with sa_record_max_age */
    if ((*why = sa_fresh_refusal(sa, rec->fresh_until)) != NULL) {
        free(rec);
        return SA_AUTH_UNAUTHENTICATED;
    }

    /* the account: deleted, or its record not what sa-admin signed */
    if (!sa_token_id_valid(rec->account.data, rec->account.len)) {
        free(rec);
        *why = "account record refused";
        return SA_AUTH_UNAUTHENTICATED;
    }

    r = sa_bearer_get(sa, SA_KEY_ACCOUNT, rec->account.data, &rc, why);
    if (r == NULL) {
        free(rec);
        if (rc == SA_AUTH_UNAUTHENTICATED) {
            *why = strcmp(*why, "unknown token") == 0 ? "account gone"
                                                      : "account record refused";
        }
        return rc;
    }

    (void) sa_bearer_open('a', SA_KIND_ACCOUNT, rec->account.data, r->str,
                          r->len, pk, &acct);
    freeReplyObject(r);

    team = json_string_value(json_object_get(acct, "team"));
    email = json_string_value(json_object_get(acct, "email"));

    if (acct == NULL || strcmp(team, rec->team.data) != 0) {
        json_decref(acct);
        free(rec);
        *why = "account record refused";
        return SA_AUTH_UNAUTHENTICATED;
    }

    if ((*why = sa_record_fresh_refusal(sa, acct)) != NULL) {
        json_decref(acct);
        free(rec);
        return SA_AUTH_UNAUTHENTICATED;
    }

    if (!sa_user_valid(email)) {
        /* a team name longer than a user name allows (DESIGN.md) */
        json_decref(acct);
        free(rec);
        *why = "the account's email is not a user name";
        return SA_AUTH_UNAUTHENTICATED;
    }

    c->kind = SA_CALLER_ACCOUNT;
    c->actor = sa_xstrdup(email);
    c->team = sa_xstrdup(team);
    c->account = sa_xstrdup(rec->account.data);
    c->scopes = sa_strs_json(rec->scopes, rec->nscopes);
    c->expires_at = rec->expires_at;

    json_decref(acct);
    free(rec);
    return SA_AUTH_OK;
}


/* sap_: the personal token's record */
static sa_auth_t
sa_bearer_person(sa_admin_t *sa, const char *token, const uint8_t *pk,
    sa_caller_t *c, const char **why)
{
    uint8_t        hash[SA_HASH_LEN];
    const char    *hex, *user;
    json_int_t     expires_at;
    sa_rec_err_t   err;
    sa_auth_t      rc;
    redisReply    *r;
    json_t        *rec;

    r = sa_bearer_get(sa, SA_KEY_PTOKEN, c->token_id, &rc, why);
    if (r == NULL) {
        return rc;
    }

    err = sa_bearer_open('p', SA_KIND_PTOKEN, c->token_id, r->str, r->len, pk,
                         &rec);
    freeReplyObject(r);

    if (err != SA_REC_OK) {
        /* SA_REC_INVALID also when it names another token (the id) */
        *why = err == SA_REC_BAD_SIGNATURE ? "record refused: bad signature"
               : "record refused: not a valid personal token record";
        return SA_AUTH_UNAUTHENTICATED;
    }

    if (sa_bearer_seen('p', c->token_id, (uint64_t) json_integer_value(
                           json_object_get(rec, "version"))) != 0)
    {
        json_decref(rec);
        *why = "record refused: older than one already seen (a replay)";
        return SA_AUTH_UNAUTHENTICATED;
    }

    /* sa_record_check() vouched for these */
    hex = json_string_value(json_object_get(rec, "hash"));
    user = json_string_value(json_object_get(rec, "user"));
    expires_at = json_integer_value(json_object_get(rec, "expires_at"));
    sa_hex_decode(hex, SA_HASH_HEX_LEN, hash, SA_HASH_LEN);

    rc = sa_bearer_judge(token, hash, json_is_true(json_object_get(rec,
                         "revoked")), expires_at, why);

    /* the bounded replay window of the records permission checks read */
    if (rc == SA_AUTH_OK
        && (*why = sa_record_fresh_refusal(sa, rec)) != NULL)
    {
        rc = SA_AUTH_UNAUTHENTICATED;
    }

    if (rc == SA_AUTH_OK && !sa_user_valid(user)) {
        *why = "record refused: not a user name";
        rc = SA_AUTH_UNAUTHENTICATED;
    }

    if (rc == SA_AUTH_OK) {
        c->kind = SA_CALLER_PERSON;
        c->actor = sa_xstrdup(user);
        c->expires_at = expires_at;
    }

    json_decref(rec);
    return rc;
}


sa_auth_t
sa_bearer_verify(sa_admin_t *sa, const char *token, size_t len,
    sa_caller_t *c, const char **why)
{
    const unsigned char  *t = (const unsigned char *) token;
    const char           *prefix;
    const uint8_t        *pk;
    int                   person;
    sa_auth_t             rc;
    char                  copy[SA_TOKEN_LEN + 1];

    memset(c, 0, sizeof(*c));

    person = len >= SA_TOKEN_PREFIX_LEN
             && memcmp(token, SA_PTOKEN_PREFIX, SA_TOKEN_PREFIX_LEN) == 0;
    prefix = person ? SA_PTOKEN_PREFIX : SA_TOKEN_PREFIX;

    /* nothing reaches Redis that is not a well-formed token */
    if (sa_token_parse_as(t, len, prefix) != SA_TOKEN_OK) {
        *why = "malformed token";
        return SA_AUTH_UNAUTHENTICATED;
    }

    memcpy(c->token_id, token + SA_TOKEN_ID_OFF, SA_TOKEN_ID_LEN);
    c->token_id[SA_TOKEN_ID_LEN] = '\0';
    snprintf(c->proof, sizeof(c->proof), "token:%s", c->token_id);

    memcpy(copy, token, SA_TOKEN_LEN);
    copy[SA_TOKEN_LEN] = '\0';

    pk = sa_verify_key_or_exit(sa);

    rc = person ? sa_bearer_person(sa, copy, pk, c, why)
                                    : sa_bearer_account(sa, copy, pk, c, why);

    sodium_memzero(copy, sizeof(copy));

    if (rc != SA_AUTH_OK) {
        sa_caller_free(c);
    }

    return rc;
}


sa_auth_t
sa_bearer_check(sa_admin_t *sa, const char *header, sa_caller_t *c,
    const char **why)
{
    const unsigned char  *token;
    size_t                len;

    memset(c, 0, sizeof(*c));

    if (header == NULL) {
        *why = "no bearer token was provided";
        return SA_AUTH_UNAUTHENTICATED;
    }

    switch (sa_bearer_parse((const unsigned char *) header, strlen(header),
                            &token, &len))
    {
    case SA_BEARER_OK:
        return sa_bearer_verify(sa, (const char *) token, len, c, why);

    case SA_BEARER_NONE:
        *why = "no bearer token was provided";
        return SA_AUTH_UNAUTHENTICATED;

    default:
        *why = "malformed token";
        return SA_AUTH_UNAUTHENTICATED;
    }
}


void
sa_bearer_used(sa_admin_t *sa, const sa_caller_t *c)
{
    int64_t      now = sa_now();
    redisReply  *r;

    if (c->kind == SA_CALLER_ACCOUNT) {
        if (!sa_bearer_use_due('t', c->token_id, now)) {
            return;
        }
        /* what a gateway writes: the time alone, never the secret */
        r = sa_xredis_cmd(sa, "SET %s" SA_KEY_TOKEN "%s" SA_KEY_USED " %lld",
                          sa->prefix, c->token_id, (long long) now);

    } else if (c->kind == SA_CALLER_PERSON) {
        if (!sa_bearer_use_due('p', c->token_id, now)) {
            return;
        }
        /* gone with the record, a week after the expiry (ptoken_issue.lua) */
        if (c->expires_at > 0) {
            r = sa_xredis_cmd(sa, "SET %s" SA_KEY_PTOKEN "%s" SA_KEY_USED
                              " %lld EXAT %lld", sa->prefix, c->token_id,
                              (long long) now,
                              (long long) c->expires_at + SA_EXPIRED_KEEP);
        } else {
            r = sa_xredis_cmd(sa, "SET %s" SA_KEY_PTOKEN "%s" SA_KEY_USED
                              " %lld", sa->prefix, c->token_id,
                              (long long) now);
        }

    } else {
        return;
    }

    /* an error reply (a replica, out of memory): not recorded, the
     * request goes on */
    freeReplyObject(r);
}


void
sa_caller_apply(sa_admin_t *sa, const sa_caller_t *c)
{
    sa->actor = c->actor;
    sa->proof = c->proof;
    sa->scopes = c->scopes;
}


void
sa_caller_free(sa_caller_t *c)
{
    free(c->actor);
    free(c->team);
    free(c->account);
    json_decref(c->scopes);
    memset(c, 0, sizeof(*c));
}
