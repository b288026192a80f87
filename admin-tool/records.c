#define _GNU_SOURCE     /* memmem */

#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "records.h"
#include "fresh.h"
#include "perm.h"
#include "refresh.h"
#include "xalloc.h"
#include "change.h"
#include "redis.h"
#include "scan.h"
#include "util.h"
#include "ops/ops.h"


static uint8_t  sa_signing_key_bytes[SA_SECRETKEY_LEN];
static int      sa_signing_key_loaded;
static int      sa_signing_key_wiped;   /* atexit() done */


/* the key leaves memory with the process, whichever way it exits */
static void
sa_signing_key_wipe(void)
{
    sodium_memzero(sa_signing_key_bytes, sizeof(sa_signing_key_bytes));
}


const uint8_t *
sa_signing_key_or_exit(sa_admin_t *sa)
{
    uint8_t     *key = sa_signing_key_bytes;
    char         err[600];

    if (sa_signing_key_loaded) {
        return key;
    }

    if (sa->signing_key == NULL) {
        sa_die(SA_EXIT_USAGE, "no signing key: use --signing-key FILE or "
               "SA_SIGNING_KEY (see 'sa-admin key generate')");
    }

    if (sa_key_load(sa->signing_key, SA_KEY_SIGNING, key, err,
                    sizeof(err)) != 0)
    {
        sa_die(SA_EXIT_USAGE, "signing key %s", err);
    }

    if (!sa_signing_key_wiped) {
        sa_signing_key_wiped = 1;
        atexit(sa_signing_key_wipe);
    }
    sa_signing_key_loaded = 1;
    return key;
}


void
sa_signing_key_forget(void)
{
    sa_signing_key_wipe();
    sa_verified_forget();
    sa_signing_key_loaded = 0;
}


const uint8_t *
sa_signing_key_if_loaded(void)
{
    return sa_signing_key_loaded ? sa_signing_key_bytes : NULL;
}


const char *
sa_actor_or_exit(sa_admin_t *sa)
{
    if (sa->actor == NULL || strcmp(sa->actor, SA_OPERATOR) == 0) {
        /* no acting user: the operator, who holds the signing key */
        sa_signing_key_or_exit(sa);
        sa->actor = SA_OPERATOR;
        return sa->actor;
    }

    if (!sa_user_valid(sa->actor)) {
        sa_die(SA_EXIT_USAGE, "invalid user name '%s'", sa->actor);
    }

    return sa->actor;
}


const char *
sa_actor_arg(sa_admin_t *sa)
{
    static char  buf[512];
    const char  *actor = sa_actor_or_exit(sa);

    snprintf(buf, sizeof(buf), "%s\n%s\n%s", actor,
             sa->proof ? sa->proof : "local",
             sa->channel ? sa->channel : "cli");
    return buf;
}


const char *
sa_key(sa_admin_t *sa, const char *a, const char *b)
{
    static char  buf[512];

    snprintf(buf, sizeof(buf), "%s%s%s", sa->prefix, a, b ? b : "");
    return buf;
}


void *
sa_heap_alloc(void *ctx, size_t size)
{
    (void) ctx;
    return malloc(size);
}


/*
 * The envelopes this process verified: a digest of their bytes under the
 * key that verified them (BLAKE2b-128 keyed with it).  The same bytes
 * under the same key again need no signature check (bearer.c and a
 * gateway's worker do the same, ngx_http_sa_verified.c): two envelopes
 * with one digest are the same bytes, and another key's digest differs.
 * Every check on the payload (kind, id, fresh_until) is still made each
 * time.  Under serve an authenticated read opens the account and team
 * records: two Ed25519 checks a request without it (bench/README.md).
 * Direct-mapped: a collision costs a check, never a wrong answer.
 */
#define SA_VERIFIED_SLOTS  1024         /* a power of two */

static uint8_t  sa_verified[SA_VERIFIED_SLOTS][SA_DIGEST_LEN];
static uint8_t  sa_verified_set[SA_VERIFIED_SLOTS];


static void
sa_verified_digest(const uint8_t *pk, const char *value, size_t len,
    uint8_t d[SA_DIGEST_LEN], unsigned *slot)
{
    crypto_generichash(d, SA_DIGEST_LEN, (const unsigned char *) value, len,
                       pk, SA_PUBLICKEY_LEN);
    *slot = ((unsigned) d[0] | (unsigned) d[1] << 8) & (SA_VERIFIED_SLOTS - 1);
}


void
sa_verified_forget(void)
{
    sodium_memzero(sa_verified_set, sizeof(sa_verified_set));
}


/*
 * The payload of a record, its signature checked with pk (NULL: the signing
 * key's public half).  Without a signing key only reading commands get here
 * (every writing command loads the key first): the record is shown
 * unverified.  NULL, with why in *err, when it cannot be used.
 */
static const char *
sa_payload(sa_admin_t *sa, const uint8_t *pk, const char *value, size_t len,
    size_t *plen, const char **err)
{
    const char    *payload;
    sa_rec_err_t   rc;
    uint8_t        d[SA_DIGEST_LEN];
    unsigned       slot;

    if (pk == NULL && sa->signing_key == NULL) {
        if (!sa->warned_unverified) {
            fprintf(stderr, "sa-admin: no signing key: records are shown "
                    "unverified (set SA_SIGNING_KEY to check them)\n");
            sa->warned_unverified = 1;
        }
        if (len <= SA_ENVELOPE_HEAD_LEN) {
            *err = "malformed";
            return NULL;
        }
        *plen = len - SA_ENVELOPE_HEAD_LEN;
        return value + SA_ENVELOPE_HEAD_LEN;
    }

    if (pk == NULL) {
        pk = sa_signing_key_or_exit(sa) + 32;
    }

    sa_verified_digest(pk, value, len, d, &slot);
    if (sa_verified_set[slot]
        && sodium_memcmp(sa_verified[slot], d, SA_DIGEST_LEN) == 0)
    {
        /* these very bytes passed sa_envelope_open() under pk */
        *plen = len - SA_ENVELOPE_HEAD_LEN;
        return value + SA_ENVELOPE_HEAD_LEN;
    }

    rc = sa_envelope_open(value, len, pk, &payload, plen);
    if (rc != SA_REC_OK) {
        *err = sa_rec_strerror(rc);
        return NULL;
    }

    memcpy(sa_verified[slot], d, SA_DIGEST_LEN);
    sa_verified_set[slot] = 1;

    return payload;
}


json_t *
sa_record_open(sa_admin_t *sa, const uint8_t *pk, sa_kind_t kind,
    const char *id, const char *value, size_t len, const char **err)
{
    const char  *payload;
    size_t       plen;
    json_t      *j;

    *err = NULL;

    if (value == NULL) {
        return NULL;
    }

    payload = sa_payload(sa, pk, value, len, &plen, err);
    if (payload == NULL) {
        return NULL;
    }

    j = json_loadb(payload, plen, JSON_REJECT_DUPLICATES, NULL);
    if (j == NULL || sa_record_check(j, kind, id) != SA_REC_OK) {
        *err = j == NULL ? "not JSON"
                         : sa_rec_strerror(SA_REC_INVALID);
        json_decref(j);
        return NULL;
    }

    /* the bounded replay window (fresh.h) */
    if (kind != SA_KIND_TOKEN && !sa->fresh_lax
        && (*err = sa_record_fresh_refusal(sa, j)) != NULL)
    {
        json_decref(j);
        return NULL;
    }

    return j;
}


sa_err_kind_t
sa_refused_kind(const char *err)
{
    return sa_fresh_reason(err) ? SA_ERR_STALE : SA_ERR_NOT_FOUND;
}


const char *
sa_refused_hint(const char *err)
{
    return sa_fresh_reason(err) ? ""
           : " (written by something other than sa-admin?)";
}


json_t *
sa_record_open_lax(sa_admin_t *sa, const uint8_t *pk, sa_kind_t kind,
    const char *id, const char *value, size_t len, const char **err)
{
    int      lax = sa->fresh_lax;
    json_t  *j;

    sa->fresh_lax = 1;
    j = sa_record_open(sa, pk, kind, id, value, len, err);
    sa->fresh_lax = lax;

    return j;
}


json_t *
sa_record_get(sa_admin_t *sa, const uint8_t *pk, sa_kind_t kind,
    const char *id, const char **err)
{
    static const char  *keys[] = {
        SA_KEY_TOKEN, SA_KEY_ACCOUNT, SA_KEY_TEAM, NULL, SA_KEY_APP,
        SA_KEY_PTOKEN
    };
    const char         *slash;
    redisReply         *r;
    json_t             *j;

    if (kind == SA_KIND_MEMBER) {
        slash = strchr(id, '/');
        if (slash == NULL) {
            *err = "not a member's id";
            return NULL;
        }
        r = sa_xredis_cmd(sa, "HGET %s" SA_KEY_TEAM "%.*s" SA_KEY_MEMBERS
                          " %s", sa->prefix, (int) (slash - id), id,
                          slash + 1);
    } else {
        r = sa_xredis_cmd(sa, "GET %s%s%s", sa->prefix, keys[kind], id);
    }

    if (r->type == REDIS_REPLY_ERROR) {
        /* WRONGTYPE: a hash where a record belongs */
        *err = "not a signed record";
        j = NULL;
    } else {
        j = sa_record_open(sa, pk, kind, id,
                           r->type == REDIS_REPLY_STRING ? r->str : NULL,
                           r->len, err);
    }

    freeReplyObject(r);
    return j;
}


json_t *
sa_record_get_or_exit(sa_admin_t *sa, sa_kind_t kind, const char *id)
{
    static const char  *what[] = {
        "token", "account", "team", "member", "application",
        "personal token"
    };
    const char         *err;
    json_t             *j;

    j = sa_record_get(sa, NULL, kind, id, &err);

    if (j == NULL && err == NULL) {
        sa_die_kind(SA_ERR_NOT_FOUND, "no %s '%s'", what[kind], id);
    }

    if (j == NULL) {
        sa_die_kind(sa_refused_kind(err), "the record of %s '%s' is "
                     "refused: %s%s", what[kind], id, err,
                     sa_refused_hint(err));
    }

    return j;
}


char *
sa_record_seal(sa_admin_t *sa, json_t *payload)
{
    char        *sealed, key[512];
    const char  *kind, *id;

    kind = json_string_value(json_object_get(payload, "kind"));
    id = json_string_value(json_object_get(payload, "id"));

    /* the bounded replay window (fresh.h): every kind but tokens' */
    if (kind != NULL && strcmp(kind, "token") != 0) {
        if (sa->fresh_period > 0) {
            json_object_set_new(payload, "fresh_until",
                                json_integer(sa_now() + sa->fresh_period));
        } else {
            /* a signer without the period vouches for no time: the one
             * of the record it changes would lapse, never renewed */
            json_object_del(payload, "fresh_until");
        }
    }

    /* a long-running signer remembers it (refresh.h) */
    if (sa->versions != NULL && kind != NULL && id != NULL) {
        snprintf(key, sizeof(key), "%s:%s", kind, id);
        sa_versions_note_rec(sa->versions, key, (uint64_t) json_integer_value(
                                 json_object_get(payload, "version")));
    }

    sealed = sa_record_encode(payload, sa_signing_key_or_exit(sa));
    if (sealed == NULL) {
        sa_die(SA_EXIT_UNAVAILABLE, "out of memory");
    }

    return sealed;
}


/* a verified token record naming tid, parsed by the core parser */
static sa_token_record_t *
sa_token_open(sa_admin_t *sa, const char *tid, const char *value, size_t len,
    const char **err)
{
    const char         *payload;
    size_t              plen;
    sa_token_record_t  *rec = NULL;

    payload = sa_payload(sa, NULL, value, len, &plen, err);
    if (payload == NULL) {
        return NULL;
    }

    if (sa_token_record_parse(payload, plen, sa_heap_alloc, NULL, &rec)
        != SA_REC_OK
        || strcmp(rec->id, tid) != 0)
    {
        free(rec);
        *err = "invalid record";
        return NULL;
    }

    return rec;
}


static char *
sa_account_id_by_name(sa_admin_t *sa, const char *ref)
{
    char         key[256];
    const char  *slash = strchr(ref, '/');
    redisReply  *r;
    char        *id = NULL;

    snprintf(key, sizeof(key), "%s" SA_KEY_TEAM "%.*s" SA_KEY_NAMES, sa->prefix,
             (int) (slash - ref), ref);
    r = sa_xredis_cmd(sa, "HGET %s %s", key, slash + 1);
    if (r->type == REDIS_REPLY_STRING) {
        id = strdup(r->str);
    }
    freeReplyObject(r);

    return id;
}


/*
 * An account record read from Redis, checked: verified, of kind "account",
 * naming the id it was stored under.  Returns -1 (the caller reports *err)
 * when it is not one.
 */
int
sa_account_from_value(sa_admin_t *sa, const char *id, const char *value,
    size_t len, sa_account_t *a, const char **err)
{
    memset(a, 0, sizeof(*a));

    a->json = sa_record_open(sa, NULL, SA_KIND_ACCOUNT, id, value, len, err);
    if (a->json == NULL) {
        return -1;
    }

    /* sa_record_check() vouched for every one of these */
    json_unpack(a->json, "{s:s, s:s, s:s, s:s, s:o, s:I}", "id", &a->id,
                "team", &a->team, "name", &a->name, "email", &a->email,
                "apps", &a->apps, "version", &a->version);

    return 0;
}


void
sa_account_load_or_exit(sa_admin_t *sa, const char *ref, sa_account_t *a)
{
    char          *id;
    const char    *slash, *err;
    redisReply    *r;
    int            rc;

    slash = strchr(ref, '/');
    id = slash ? sa_account_id_by_name(sa, ref) : strdup(ref);
    if (id == NULL || !sa_token_id_valid(id, strlen(id))) {
        sa_die_kind(SA_ERR_NOT_FOUND, "no account '%s'", ref);
    }

    r = sa_xredis_cmd(sa, "GET %s", sa_key(sa, SA_KEY_ACCOUNT, id));
    if (r->type != REDIS_REPLY_STRING) {
        sa_die_kind(SA_ERR_NOT_FOUND, "no account '%s'", ref);
    }

    rc = sa_account_from_value(sa, id, r->str, r->len, a, &err);
    freeReplyObject(r);
    free(id);

    if (rc != 0) {
        sa_die_kind(sa_refused_kind(err), "account '%s' is refused: %s%s",
                    ref, err, sa_refused_hint(err));
    }

    /* TEAM/NAME found through the unsigned name index: it must agree */
    if (slash
        && (strncmp(a->team, ref, slash - ref) != 0
            || a->team[slash - ref] != '\0'
            || strcmp(a->name, slash + 1) != 0))
    {
        sa_die_kind(SA_ERR_NOT_FOUND, "account '%s' is refused: the name "
                    "index points at %s/%s (written by something other than "
                    "sa-admin?)", ref, a->team, a->name);
    }
}


void
sa_account_free(sa_account_t *a)
{
    json_decref(a->json);
    a->json = NULL;
}


json_t *
sa_account_public_json(json_t *payload)
{
    json_t      *out;
    json_int_t   created;

    out = json_deep_copy(payload);
    json_object_del(out, "kind");
    json_object_del(out, "version");

    created = json_integer_value(json_object_get(payload, "created_at"));
    json_object_set_new(out, "created_at", sa_time_json(created));

    return out;
}


sa_token_record_t *
sa_token_from_value_or_exit(sa_admin_t *sa, const char *tid, const char *value,
    size_t len)
{
    const char         *err;
    sa_token_record_t  *rec;

    if (value == NULL) {
        return NULL;
    }

    rec = sa_token_open(sa, tid, value, len, &err);
    if (rec == NULL) {
        sa_die_kind(SA_ERR_NOT_FOUND, "the record of token '%s' is refused: "
                    "%s (written by something other than sa-admin?)", tid,
                    err);
    }

    return rec;
}


sa_token_record_t *
sa_token_try_value(sa_admin_t *sa, const char *tid, const char *value,
    size_t len, int *tampered)
{
    const char         *err;
    sa_token_record_t  *rec;

    *tampered = 0;

    if (value == NULL) {
        return NULL;
    }

    rec = sa_token_open(sa, tid, value, len, &err);
    *tampered = rec == NULL;

    return rec;
}


sa_token_record_t *
sa_token_load_or_exit(sa_admin_t *sa, const char *tid)
{
    redisReply         *r;
    sa_token_record_t  *rec;

    r = sa_xredis_cmd(sa, "GET %s", sa_key(sa, SA_KEY_TOKEN, tid));
    rec = sa_token_from_value_or_exit(sa, tid,
                              r->type == REDIS_REPLY_STRING ? r->str : NULL,
                              r->len);
    freeReplyObject(r);

    return rec;
}


void
sa_token_exat(const sa_token_record_t *rec, char out[24])
{
    snprintf(out, 24, "%lld", rec->expires_at
                              ? (long long) rec->expires_at + SA_EXPIRED_KEEP
                              : 0LL);
}


void
sa_token_revoke(sa_token_record_t *rec)
{
    rec->revoked = 1;
    rec->scopes = NULL;
    rec->nscopes = 0;
}


const char *
sa_token_status(const sa_token_record_t *rec, int64_t now)
{
    if (rec->revoked) {
        return "revoked";
    }

    if (rec->expires_at && rec->expires_at <= now) {
        return "expired";
    }

    return "active";
}


void
sa_print_json(json_t *doc)
{
    json_dumpf(doc, stdout, JSON_COMPACT);
    fputc('\n', stdout);
    json_decref(doc);
}


json_t *
sa_strs_json(const sa_str_t *s, size_t n)
{
    json_t  *arr = json_array();
    size_t   i;

    for (i = 0; i < n; i++) {
        json_array_append_new(arr, json_stringn(s[i].data, s[i].len));
    }

    return arr;
}


json_t *
sa_time_json(int64_t t)
{
    char  buf[SA_TIME_LEN];

    if (t == 0 || sa_time_format(t, buf) != 0) {
        return json_null();
    }

    return json_string(buf);
}


static void
sa_token_set_push(sa_token_set_t *ts, const char *id)
{
    size_t  cap;

    if (ts->n == ts->cap) {
        cap = ts->cap ? ts->cap * 2 : 16;
        ts->ids = sa_xrealloc(ts->ids, cap * sizeof(char *));
        ts->recs = sa_xrealloc(ts->recs, cap * sizeof(sa_token_record_t *));
        ts->used = sa_xrealloc(ts->used, cap * sizeof(char *));
        ts->tampered = sa_xrealloc(ts->tampered, cap * sizeof(int));
        ts->foreign = sa_xrealloc(ts->foreign, cap * sizeof(int));
        ts->unlisted = sa_xrealloc(ts->unlisted, cap * sizeof(int));
        ts->cap = cap;
    }

    ts->ids[ts->n] = sa_xstrdup(id);
    ts->recs[ts->n] = NULL;
    ts->used[ts->n] = NULL;
    ts->tampered[ts->n] = 0;
    ts->foreign[ts->n] = 0;
    ts->unlisted[ts->n] = 0;
    ts->n++;
}


static void
sa_token_set_append(sa_admin_t *sa, sa_token_set_t *ts, size_t i)
{
    sa_args_t  args;

    sa_args_init(&args);
    sa_args_add(&args, "MGET");
    sa_args_addf(&args, "%s" SA_KEY_TOKEN "%s", sa->prefix, ts->ids[i]);
    sa_args_addf(&args, "%s" SA_KEY_TOKEN "%s" SA_KEY_USED, sa->prefix,
                 ts->ids[i]);
    sa_xredis_append(sa, &args);
    sa_args_free(&args);
}


/*
 * Every token the account's index lists, read with one pipeline, each
 * verified.  The index is a hint: a token whose record names another
 * account is not this account's (foreign) and is reported.
 */
void
sa_token_set_load(sa_admin_t *sa, const char *aid, sa_token_set_t *ts)
{
    redisReply         *set, *r;
    size_t              i;
    sa_token_record_t  *rec;

    memset(ts, 0, sizeof(*ts));

    set = sa_xredis_cmd(sa, "SMEMBERS %s" SA_KEY_ACCOUNT "%s" SA_KEY_TOKENS,
                        sa->prefix, aid);

    for (i = 0; set->type == REDIS_REPLY_ARRAY && i < set->elements; i++) {
        sa_token_set_push(ts, set->element[i]->str);
        sa_token_set_append(sa, ts, i);
    }
    freeReplyObject(set);

    for (i = 0; i < ts->n; i++) {
        r = sa_xredis_reply(sa);
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
            rec = sa_token_try_value(sa, ts->ids[i], r->element[0]->str,
                                     r->element[0]->len, &ts->tampered[i]);

            if (rec != NULL && strcmp(rec->account.data, aid) != 0) {
                fprintf(stderr, "sa-admin: token %s is listed under account "
                        "%s but its record names account %s: skipped\n",
                        ts->ids[i], aid, rec->account.data);
                ts->foreign[i] = 1;
                free(rec);
                rec = NULL;
            }

            ts->recs[i] = rec;
            ts->used[i] = r->element[1]->str ? sa_xstrdup(r->element[1]->str)
                                             : NULL;
        }
        freeReplyObject(r);
    }
}


static int
sa_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char * const *) a, *(char * const *) b);
}


/* is id among the n sorted strings, or among ts's ids from 'from' on */
static int
sa_token_known(char **sorted, size_t n, sa_token_set_t *ts, size_t from,
    const char *id)
{
    size_t  i;

    if (bsearch(&id, sorted, n, sizeof(char *), sa_cmp_str) != NULL) {
        return 1;
    }

    for (i = from; i < ts->n; i++) {
        if (strcmp(ts->ids[i], id) == 0) {
            return 1;
        }
    }

    return 0;
}


/* one SCAN batch: GETs of the unknown token keys, pipelined */
static size_t
sa_token_scan_batch(sa_admin_t *sa, const char *aid, redisReply *keys,
    char **sorted, size_t nsorted, sa_token_set_t *ts, size_t from)
{
    char                 needle[64];
    const char          *id, *value;
    size_t               i, plen, asked, n;
    sa_args_t            args;
    redisReply          *r;
    int                  tampered;
    sa_token_record_t   *rec;
    const char          *want[1024];

    plen = strlen(sa->prefix) + sizeof(SA_KEY_TOKEN) - 1;
    snprintf(needle, sizeof(needle), "\"account\":\"%s\"", aid);

    asked = 0;
    for (i = 0; i < keys->elements && asked < 1024; i++) {
        if (keys->element[i]->len != plen + SA_TOKEN_ID_LEN) {
            continue;                       /* tok:<id>:used, or not ours */
        }
        id = keys->element[i]->str + plen;
        if (sa_token_known(sorted, nsorted, ts, from, id)) {
            continue;
        }
        sa_args_init(&args);
        sa_args_add(&args, "GET");
        sa_args_add(&args, keys->element[i]->str);
        sa_xredis_append(sa, &args);
        sa_args_free(&args);
        want[asked++] = id;
    }

    n = 0;
    for (i = 0; i < asked; i++) {
        r = sa_xredis_reply(sa);
        value = r->type == REDIS_REPLY_STRING ? r->str : NULL;

        /* sa-admin writes compact JSON: only a record naming us can match */
        if (value != NULL
            && memmem(value, r->len, needle, strlen(needle)) != NULL)
        {
            rec = sa_token_try_value(sa, want[i], value, r->len, &tampered);

            if (rec != NULL && strcmp(rec->account.data, aid) == 0) {
                sa_token_set_push(ts, want[i]);
                ts->recs[ts->n - 1] = rec;
                ts->unlisted[ts->n - 1] = 1;
                fprintf(stderr, "sa-admin: token %s names account %s but is "
                        "missing from its index: included\n", want[i], aid);
                rec = NULL;
            }

            free(rec);
        }

        freeReplyObject(r);
        n++;
    }

    return n;
}


/*
 * Adds the tokens whose signed records name the account but that its index
 * does not list (a Redis writer may have removed them to have them escape
 * a revocation): every token record is read, with SCAN.  Progress on
 * stderr when it takes longer than a second.
 */
void
sa_token_set_scan(sa_admin_t *sa, const char *aid, sa_token_set_t *ts)
{
    char         **sorted;
    sa_scan_t      sc;
    size_t         i, nsorted, from, read;
    int            shown = 0;
    sa_progress_t  progress;
    redisReply    *r;

    nsorted = ts->n;
    sorted = sa_xmalloc((nsorted + 1) * sizeof(char *));
    for (i = 0; i < nsorted; i++) {
        sorted[i] = ts->ids[i];
    }
    qsort(sorted, nsorted, sizeof(char *), sa_cmp_str);

    sa_scan_start(&sc, sa, 1000, SA_KEY_TOKEN "*", NULL);
    from = ts->n;
    read = 0;
    sa_progress_start(&progress);

    /* a scan cut short would miss a token: never the end of the tokens */
    while ((r = sa_scan_next_or_exit(&sc, sa)) != NULL) {
        read += sa_token_scan_batch(sa, aid, r->element[1], sorted, nsorted,
                                    ts, from);
        freeReplyObject(r);

        if (sa_progress_due(&progress)) {
            shown = 1;
            fprintf(stderr, "sa-admin: looking for tokens of account %s: "
                    "%zu records read\n", aid, read);
        }
    }

    if (shown) {
        fprintf(stderr, "sa-admin: %zu records read in %.0f s\n", read,
                sa_progress_elapsed(&progress));
    }

    free(sorted);
}


void
sa_token_set_free(sa_token_set_t *ts)
{
    size_t  i;

    for (i = 0; i < ts->n; i++) {
        free(ts->ids[i]);
        free(ts->recs[i]);
        free(ts->used[i]);
    }

    free(ts->ids);
    free(ts->recs);
    free(ts->used);
    free(ts->tampered);
    free(ts->foreign);
    free(ts->unlisted);
    memset(ts, 0, sizeof(*ts));
}


char *
sa_join(json_t *arr, const char *sep)
{
    size_t   i, len;
    json_t  *v;
    char    *out;

    len = 2;
    json_array_foreach(arr, i, v) {
        len += json_string_length(v) + strlen(sep);
    }

    out = sa_xmalloc(len);
    out[0] = '\0';

    json_array_foreach(arr, i, v) {
        if (i) {
            strcat(out, sep);
        }
        strcat(out, json_string_value(v) ? json_string_value(v) : "");
    }

    if (out[0] == '\0') {
        strcpy(out, "-");
    }

    return out;
}


sa_str_t *
sa_strs_from_json(json_t *arr, size_t *n)
{
    sa_str_t  *s;
    size_t     i;
    json_t    *v;

    *n = json_array_size(arr);
    s = calloc(*n + 1, sizeof(sa_str_t));

    json_array_foreach(arr, i, v) {
        s[i].data = json_string_value(v);
        s[i].len = json_string_length(v);
    }

    return s;
}


json_t *
sa_token_json(const sa_token_record_t *rec, const char *last_used,
    int64_t now)
{
    json_t  *t, *pol;

    t = json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:s}",
                  "id", rec->id, "account", rec->account.data,
                  "team", rec->team.data, "name", rec->name.data,
                  "scopes", sa_strs_json(rec->scopes, rec->nscopes),
                  "created_at", sa_time_json(rec->created_at),
                  "expires_at", sa_time_json(rec->expires_at),
                  "last_used_at",
                  sa_time_json(last_used ? strtoll(last_used, NULL, 10) : 0),
                  "status", sa_token_status(rec, now));

    /* the policy (issue 25): each field always, null (or []) when unset */
    pol = json_object();
    sa_policy_to_json(&rec->policy, pol);
    json_object_set(t, "rate", json_object_get(pol, "rate") ?: json_null());
    json_object_set(t, "burst", json_object_get(pol, "burst") ?: json_null());
    json_object_set(t, "quota", json_object_get(pol, "quota") ?: json_null());
    json_object_set_new(t, "allow_from",
                        json_incref(json_object_get(pol, "allow_from"))
                        ?: json_array());
    json_decref(pol);

    return t;
}
