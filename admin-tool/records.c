#include <stdlib.h>
#include <string.h>

#include "records.h"
#include "redis.h"
#include "util.h"


const uint8_t *
sa_signing_key(sa_admin_t *sa)
{
    static uint8_t  key[SA_SECRETKEY_LEN];
    static int      loaded;
    char            err[600];

    if (loaded) {
        return key;
    }

    if (sa->signing_key == NULL) {
        sa_fail(SA_EXIT_USAGE, "no signing key: use --signing-key FILE or "
                "SA_SIGNING_KEY (see 'sa-admin key generate')");
        exit(SA_EXIT_USAGE);
    }

    if (sa_key_load(sa->signing_key, SA_KEY_SIGNING, key, err,
                    sizeof(err)) != 0)
    {
        sa_fail(SA_EXIT_USAGE, "signing key %s", err);
        exit(SA_EXIT_USAGE);
    }

    loaded = 1;
    return key;
}


const char *
sa_actor(sa_admin_t *sa)
{
    if (sa->actor == NULL) {
        sa_fail(SA_EXIT_USAGE, "who is acting? use --as USER or SA_ACTOR");
        exit(SA_EXIT_USAGE);
    }

    if (!sa_user_valid(sa->actor)) {
        sa_fail(SA_EXIT_USAGE, "invalid user name '%s'", sa->actor);
        exit(SA_EXIT_USAGE);
    }

    return sa->actor;
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


static const char *
sa_verified_payload(sa_admin_t *sa, const char *what, const char *value,
    size_t len, size_t *plen)
{
    const char    *payload;
    sa_rec_err_t   rc;

    /*
     * Without a signing key only reading commands get here (every writing
     * command loads the key first): show the record unverified.
     */
    if (sa->signing_key == NULL) {
        if (len <= SA_ENVELOPE_HEAD_LEN) {
            exit(sa_fail(SA_EXIT_NOT_FOUND, "the record of %s is malformed",
                         what));
        }
        *plen = len - SA_ENVELOPE_HEAD_LEN;
        return value + SA_ENVELOPE_HEAD_LEN;
    }

    rc = sa_envelope_open(value, len, sa_signing_key(sa) + 32, &payload, plen);
    if (rc != SA_REC_OK) {
        sa_fail(SA_EXIT_NOT_FOUND, "the record of %s is refused: %s "
                "(written by something other than sa-admin?)", what,
                sa_rec_strerror(rc));
        exit(SA_EXIT_NOT_FOUND);
    }

    return payload;
}


static char *
sa_account_id_by_name(sa_admin_t *sa, const char *ref)
{
    char         key[256];
    const char  *slash = strchr(ref, '/');
    redisReply  *r;
    char        *id = NULL;

    snprintf(key, sizeof(key), "%steam:%.*s:names", sa->prefix,
             (int) (slash - ref), ref);
    r = sa_redis_cmd(sa, "HGET %s %s", key, slash + 1);
    if (r->type == REDIS_REPLY_STRING) {
        id = strdup(r->str);
    }
    freeReplyObject(r);

    return id;
}


void
sa_account_load(sa_admin_t *sa, const char *ref, sa_account_t *a)
{
    char          *id;
    redisReply    *r;
    const char    *payload;
    size_t         plen;
    json_error_t   error;

    id = strchr(ref, '/') ? sa_account_id_by_name(sa, ref) : strdup(ref);
    if (id == NULL || !sa_token_id_valid(id, strlen(id))) {
        exit(sa_fail(SA_EXIT_NOT_FOUND, "no account '%s'", ref));
    }

    r = sa_redis_cmd(sa, "GET %s", sa_key(sa, "acct:", id));
    if (r->type != REDIS_REPLY_STRING) {
        exit(sa_fail(SA_EXIT_NOT_FOUND, "no account '%s'", ref));
    }

    payload = sa_verified_payload(sa, ref, r->str, r->len, &plen);

    memset(a, 0, sizeof(*a));
    a->json = json_loadb(payload, plen, 0, &error);
    freeReplyObject(r);
    free(id);

    if (a->json == NULL
        || json_unpack(a->json, "{s:s, s:s, s:s, s:s, s:o, s:I}",
                       "id", &a->id, "team", &a->team, "name", &a->name,
                       "email", &a->email, "apps", &a->apps,
                       "version", &a->version) != 0
        || !json_is_array(a->apps))
    {
        exit(sa_fail(SA_EXIT_NOT_FOUND, "account '%s': invalid record", ref));
    }
}


void
sa_account_free(sa_account_t *a)
{
    json_decref(a->json);
    a->json = NULL;
}


char *
sa_account_seal(sa_admin_t *sa, json_t *payload)
{
    char  *json, *sealed;

    json = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
    if (json == NULL) {
        exit(sa_fail(SA_EXIT_UNAVAILABLE, "out of memory"));
    }

    sealed = sa_envelope_seal(json, strlen(json), sa_signing_key(sa));
    free(json);

    return sealed;
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
sa_token_from_value(sa_admin_t *sa, const char *tid, const char *value,
    size_t len)
{
    const char         *payload;
    size_t              plen;
    char                what[64];
    sa_token_record_t  *rec = NULL;

    if (value == NULL) {
        return NULL;
    }

    snprintf(what, sizeof(what), "token '%s'", tid);
    payload = sa_verified_payload(sa, what, value, len, &plen);

    if (sa_token_record_parse(payload, plen, sa_heap_alloc, NULL, &rec)
        != SA_REC_OK
        || strcmp(rec->id, tid) != 0)
    {
        exit(sa_fail(SA_EXIT_NOT_FOUND, "%s: invalid record", what));
    }

    return rec;
}


sa_token_record_t *
sa_token_try_value(sa_admin_t *sa, const char *tid, const char *value,
    size_t len, int *tampered)
{
    const char         *payload;
    size_t              plen;
    sa_token_record_t  *rec = NULL;

    *tampered = 0;

    if (value == NULL) {
        return NULL;
    }

    if (sa->signing_key == NULL) {
        payload = len > SA_ENVELOPE_HEAD_LEN ? value + SA_ENVELOPE_HEAD_LEN
                                             : NULL;
        plen = len - SA_ENVELOPE_HEAD_LEN;

    } else if (sa_envelope_open(value, len, sa_signing_key(sa) + 32,
                                &payload, &plen) != SA_REC_OK)
    {
        payload = NULL;
    }

    if (payload == NULL
        || sa_token_record_parse(payload, plen, sa_heap_alloc, NULL, &rec)
           != SA_REC_OK
        || strcmp(rec->id, tid) != 0)
    {
        free(rec);
        *tampered = 1;
        return NULL;
    }

    return rec;
}


sa_token_record_t *
sa_token_load(sa_admin_t *sa, const char *tid)
{
    redisReply         *r;
    sa_token_record_t  *rec;

    r = sa_redis_cmd(sa, "GET %s", sa_key(sa, "tok:", tid));
    rec = sa_token_from_value(sa, tid,
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
sa_token_set_append(sa_admin_t *sa, sa_token_set_t *ts, size_t i)
{
    sa_args_t  args;

    sa_args_init(&args);
    sa_args_add(&args, "MGET");
    sa_args_addf(&args, "%stok:%s", sa->prefix, ts->ids[i]);
    sa_args_addf(&args, "%stok:%s:used", sa->prefix, ts->ids[i]);
    sa_redis_append(sa, &args);
    sa_args_free(&args);
}


void
sa_token_set_load(sa_admin_t *sa, const char *aid, sa_token_set_t *ts)
{
    redisReply  *set, *r;
    size_t       i;

    memset(ts, 0, sizeof(*ts));

    set = sa_redis_cmd(sa, "SMEMBERS %s%s%s:tokens", sa->prefix, "acct:", aid);
    ts->n = set->type == REDIS_REPLY_ARRAY ? set->elements : 0;
    ts->ids = calloc(ts->n + 1, sizeof(char *));
    ts->recs = calloc(ts->n + 1, sizeof(sa_token_record_t *));
    ts->used = calloc(ts->n + 1, sizeof(char *));
    ts->tampered = calloc(ts->n + 1, sizeof(int));

    for (i = 0; i < ts->n; i++) {
        ts->ids[i] = strdup(set->element[i]->str);
        sa_token_set_append(sa, ts, i);
    }
    freeReplyObject(set);

    for (i = 0; i < ts->n; i++) {
        r = sa_redis_next_reply(sa);
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
            ts->recs[i] = sa_token_try_value(sa, ts->ids[i],
                                             r->element[0]->str,
                                             r->element[0]->len,
                                             &ts->tampered[i]);
            ts->used[i] = r->element[1]->str ? strdup(r->element[1]->str)
                                             : NULL;
        }
        freeReplyObject(r);
    }
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
    memset(ts, 0, sizeof(*ts));
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
    return json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:s}",
                     "id", rec->id, "account", rec->account.data,
                     "team", rec->team.data, "name", rec->name.data,
                     "scopes", sa_strs_json(rec->scopes, rec->nscopes),
                     "created_at", sa_time_json(rec->created_at),
                     "expires_at", sa_time_json(rec->expires_at),
                     "last_used_at",
                     sa_time_json(last_used ? strtoll(last_used, NULL, 10) : 0),
                     "status", sa_token_status(rec, now));
}
