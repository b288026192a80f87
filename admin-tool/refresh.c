/*
 * sa-admin key refresh: token records renewed before their fresh_until
 * lapses (refresh.h).
 */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>
#include <jansson.h>

#include "change.h"
#include "sa_scope.h"
#include "fresh.h"
#include "records.h"
#include "redis.h"
#include "scan.h"
#include "refresh.h"
#include "scripts.h"
#include "util.h"
#include "xalloc.h"

#define SA_REFRESH_SCAN     1000     /* SCAN COUNT */
#define SA_REFRESH_GROUP    50       /* records per key_refresh.lua */


/* ------------------------------------------------------ version memory */

typedef struct {
    char      id[SA_TOKEN_ID_LEN];
    uint8_t   heard;                    /* only heard, not read since */
    uint64_t  version;                  /* 0: a free slot */
} sa_version_slot_t;

/* a record of another kind: "<kind>:<id>" (refresh.h) */
typedef struct {
    char      *key;                     /* NULL: a free slot */
    uint64_t   version;
} sa_rversion_slot_t;

struct sa_versions_s {
    sa_version_slot_t   *slots;
    size_t               cap;           /* a power of 2 */
    size_t               n;
    size_t               unread;        /* slots .heard (the bound's) */
    sa_rversion_slot_t  *rslots;
    size_t               rcap;          /* a power of 2 */
    size_t               rn;
    uint8_t              key[crypto_shorthash_KEYBYTES];
};


sa_versions_t *
sa_versions_new(void)
{
    sa_versions_t  *v = sa_xcalloc(1, sizeof(sa_versions_t));

    v->cap = 1024;
    v->slots = sa_xcalloc(v->cap, sizeof(sa_version_slot_t));
    v->rcap = 256;
    v->rslots = sa_xcalloc(v->rcap, sizeof(sa_rversion_slot_t));
    /* keyed: nobody picks token ids that pile up in one run of slots */
    randombytes_buf(v->key, sizeof(v->key));

    return v;
}


void
sa_versions_free(sa_versions_t *v)
{
    size_t  i;

    if (v != NULL) {
        for (i = 0; i < v->rcap; i++) {
            free(v->rslots[i].key);
        }
        free(v->rslots);
        free(v->slots);
        free(v);
    }
}


static size_t
sa_versions_rslot(const sa_versions_t *v, const char *key)
{
    uint64_t  h;
    size_t    i;

    crypto_shorthash((unsigned char *) &h, (const unsigned char *) key,
                     strlen(key), v->key);

    for (i = h & (v->rcap - 1); ; i = (i + 1) & (v->rcap - 1)) {
        if (v->rslots[i].key == NULL || strcmp(v->rslots[i].key, key) == 0) {
            return i;
        }
    }
}


uint64_t
sa_versions_known_rec(const sa_versions_t *v, const char *key)
{
    return v->rslots[sa_versions_rslot(v, key)].version;
}


void
sa_versions_note_rec(sa_versions_t *v, const char *key, uint64_t version)
{
    size_t               i, old_cap;
    sa_rversion_slot_t  *old, *s;

    if (version == 0) {
        return;
    }

    if (2 * (v->rn + 1) > v->rcap) {
        old = v->rslots;
        old_cap = v->rcap;
        v->rcap *= 2;
        v->rslots = sa_xcalloc(v->rcap, sizeof(sa_rversion_slot_t));

        for (i = 0; i < old_cap; i++) {
            if (old[i].key != NULL) {
                v->rslots[sa_versions_rslot(v, old[i].key)] = old[i];
            }
        }
        free(old);
    }

    s = &v->rslots[sa_versions_rslot(v, key)];

    if (s->key == NULL) {
        s->key = sa_xstrdup(key);
        v->rn++;
    }

    if (version > s->version) {
        s->version = version;
    }
}


static size_t
sa_versions_slot(const sa_versions_t *v, const char *id)
{
    uint64_t  h;
    size_t    i;

    crypto_shorthash((unsigned char *) &h, (const unsigned char *) id,
                     SA_TOKEN_ID_LEN, v->key);

    for (i = h & (v->cap - 1); ; i = (i + 1) & (v->cap - 1)) {
        if (v->slots[i].version == 0
            || memcmp(v->slots[i].id, id, SA_TOKEN_ID_LEN) == 0)
        {
            return i;
        }
    }
}


uint64_t
sa_versions_known(const sa_versions_t *v, const char *id)
{
    return v->slots[sa_versions_slot(v, id)].version;
}


/*
 * heard: the version comes from the unauthenticated invalidation channel,
 * not from a record read.  Anyone who can publish there can name made-up
 * ids without end: a new id heard is kept only while fewer than
 * SA_VERSIONS_UNREAD_MAX ids are heard and not read since (a record read
 * clears the mark), so that a flood cannot grow the memory until the
 * refresher dies (and is started again with it empty).  0: not kept.
 */
static int
sa_versions_note_as(sa_versions_t *v, const char *id, uint64_t version,
    int heard)
{
    size_t              i, old_cap;
    sa_version_slot_t  *old, *s;

    if (version == 0) {
        return 1;
    }

    s = &v->slots[sa_versions_slot(v, id)];

    if (s->version == 0 && heard && v->unread >= SA_VERSIONS_UNREAD_MAX) {
        return 0;
    }

    /* at most half full: probes stay short */
    if (s->version == 0 && 2 * (v->n + 1) > v->cap) {
        old = v->slots;
        old_cap = v->cap;
        v->cap *= 2;
        v->slots = sa_xcalloc(v->cap, sizeof(sa_version_slot_t));

        for (i = 0; i < old_cap; i++) {
            if (old[i].version) {
                v->slots[sa_versions_slot(v, old[i].id)] = old[i];
            }
        }
        free(old);

        s = &v->slots[sa_versions_slot(v, id)];
    }

    if (s->version == 0) {
        memcpy(s->id, id, SA_TOKEN_ID_LEN);
        v->n++;
        s->heard = (uint8_t) heard;
        v->unread += heard;

    } else if (s->heard && !heard) {
        s->heard = 0;
        v->unread--;
    }

    if (version > s->version) {
        s->version = version;
    }

    return 1;
}


void
sa_versions_note(sa_versions_t *v, const char *id, uint64_t version)
{
    (void) sa_versions_note_as(v, id, version, 0);
}


size_t
sa_versions_count(const sa_versions_t *v)
{
    return v->n + v->rn;
}


size_t
sa_versions_note_message(sa_versions_t *v, const char *msg, size_t len,
    size_t *bounded)
{
    size_t                noted;
    uint64_t              version;
    const unsigned char  *p, *end, *id;

    /* the gateway's own parser of these messages (core/sa_token.c) */
    p = (const unsigned char *) msg;
    end = p + len;
    noted = 0;

    while (sa_invalidation_next(&p, end, &id, &version)) {
        /* a made-up id names no token; only a real id can be refused */
        if (version > 0 && sa_token_id_valid((const char *) id,
                                             SA_TOKEN_ID_LEN))
        {
            if (sa_versions_note_as(v, (const char *) id, version, 1)) {
                noted++;
            } else if (bounded != NULL) {
                (*bounded)++;
            }
        }
    }

    return noted;
}


/* ------------------------------------------------------------- the run */

typedef struct {
    sa_admin_t                *sa;
    const uint8_t             *sk;
    uint8_t                    pk[SA_PUBLICKEY_LEN];
    int64_t                    now, period, within;
    const sa_refresh_opts_t   *opts;
    sa_refresh_stats_t        *st;
    sa_progress_t              progress;
} sa_refresh_t;


static void
sa_refresh_progress(sa_refresh_t *rf)
{
    if (!rf->opts->progress || !sa_progress_due(&rf->progress)) {
        return;
    }

    fprintf(stderr, "sa-admin: key refresh: %zu token records read, %zu "
            "%s (%.0f s)\n", rf->st->read, rf->st->renewed,
            rf->opts->dry_run ? "to renew" : "renewed",
            sa_progress_elapsed(&rf->progress));
}


static void
sa_refresh_refuse(sa_refresh_t *rf, const char *id, const char *why)
{
    rf->st->refused++;
    fprintf(stderr, "sa-admin: token %s is refused: %s; not renewed\n", id,
            why);
}


/* the fresh_until a renewed record gets */
static int64_t
sa_refresh_until(sa_refresh_t *rf, int64_t fresh_until)
{
    uint32_t  spread;

    if (fresh_until > rf->now) {
        return rf->now + rf->period;       /* due, or too far ahead */
    }

    /* none, or lapsed: spread over (now + within, now + period] */
    spread = (uint32_t) (rf->period - rf->within);

    return rf->now + rf->period - (int64_t) randombytes_uniform(spread);
}


/*
 * One record value judged: *sealed gets the renewed record (free() it)
 * when it is to be renewed.
 */
static void
sa_refresh_judge(sa_refresh_t *rf, const char *id, const char *value,
    size_t len, char **sealed)
{
    const char          *payload;
    size_t               plen;
    uint64_t             known;
    sa_token_record_t   *rec = NULL;
    sa_refresh_stats_t  *st = rf->st;

    *sealed = NULL;

    if (sa_envelope_open(value, len, rf->pk, &payload, &plen) != SA_REC_OK) {
        sa_refresh_refuse(rf, id, "it does not verify with the signing key "
                          "(signed with another key: run 'key resign' "
                          "first; or written by something other than "
                          "sa-admin)");
        return;
    }

    if (sa_token_record_parse(payload, plen, sa_heap_alloc, NULL, &rec)
        != SA_REC_OK)
    {
        sa_refresh_refuse(rf, id, "not a valid token record");
        return;
    }

    if (strcmp(rec->id, id) != 0) {
        sa_refresh_refuse(rf, id, "the record names another token");
        goto done;
    }

    if (rf->opts->versions != NULL) {
        known = sa_versions_known(rf->opts->versions, id);

        if (rec->version < known) {
            st->older++;
            fprintf(stderr, "sa-admin: token %s is refused: version %llu "
                    "is older than version %llu seen before (put back by a "
                    "Redis writer?); not renewed\n", id,
                    (unsigned long long) rec->version,
                    (unsigned long long) known);
            goto done;
        }

        sa_versions_note(rf->opts->versions, id, rec->version);
    }

    if (rec->revoked || (rec->expires_at && rec->expires_at <= rf->now)) {
        st->skipped++;
        goto done;
    }

    if (rec->fresh_until > rf->now + rf->period) {
        /* signed with a longer period: gateways set for this one refuse it */
        st->ahead++;

    } else if (rec->fresh_until > rf->now + rf->within) {
        st->fresh++;
        if (st->next_due == 0 || rec->fresh_until < st->next_due) {
            st->next_due = rec->fresh_until;
        }
        goto done;
    }

    if (rec->fresh_until == 0) {
        st->stamped++;

    } else if (rec->fresh_until <= rf->now) {
        st->lapsed++;
    }

    rec->fresh_until = sa_refresh_until(rf, rec->fresh_until);

    if (rf->opts->dry_run) {
        st->renewed++;
        goto done;
    }

    *sealed = sa_token_record_encode(rec, rf->sk);
    if (*sealed == NULL) {
        sa_die(SA_EXIT_UNAVAILABLE, "out of memory");
    }

done:

    free(rec);
}


/*
 * The replies of one key_refresh.lua or record_refresh.lua, counted into
 * renewed, changed (between read and write) and gone (deleted meanwhile).
 */
static int
sa_refresh_reply(sa_refresh_t *rf, size_t *renewed, size_t *changed,
    size_t *gone)
{
    size_t       i;
    redisReply  *r;
    int          rc = SA_EXIT_OK;

    r = sa_xredis_reply(rf->sa);

    if (r->type == REDIS_REPLY_ERROR) {
        rc = sa_fail(SA_EXIT_UNAVAILABLE, "key refresh: Redis refused the "
                     "write: %s", r->str);

    } else if (r->type == REDIS_REPLY_ARRAY) {
        for (i = 0; i < r->elements; i++) {
            switch (r->element[i]->integer) {
            case 1:
                (*renewed)++;
                break;
            case 2:
                (*changed)++;
                break;
            default:
                (*gone)++;
                break;
            }
        }
    }

    freeReplyObject(r);
    return rc;
}


/*
 * One SCAN batch: its token records read with one pipeline, the renewed
 * ones written with another, SA_REFRESH_GROUP records per script.
 */
static int
sa_refresh_batch(sa_refresh_t *rf, redisReply *keys)
{
    size_t        i, n, plen, queued, scripts;
    const char   *id;
    char        **ids, *sealed;
    redisReply  **vals;
    sa_args_t     args;
    int           rc, first = SA_EXIT_OK;
    sa_admin_t   *sa = rf->sa;

    plen = strlen(sa->prefix) + sizeof(SA_KEY_TOKEN) - 1;
    ids = sa_xcalloc(keys->elements + 1, sizeof(char *));
    n = 0;

    /* tok:<id>, not tok:<id>:used */
    for (i = 0; i < keys->elements; i++) {
        if (keys->element[i]->type == REDIS_REPLY_STRING
            && keys->element[i]->len == plen + SA_TOKEN_ID_LEN
            && sa_token_id_valid(keys->element[i]->str + plen,
                                 SA_TOKEN_ID_LEN))
        {
            ids[n++] = keys->element[i]->str + plen;
        }
    }

    for (i = 0; i < n; i++) {
        sa_args_init(&args);
        sa_args_add(&args, "GET");
        sa_args_addf(&args, "%s" SA_KEY_TOKEN "%s", sa->prefix, ids[i]);
        sa_xredis_append(sa, &args);
        sa_args_free(&args);
    }

    vals = sa_xcalloc(n + 1, sizeof(redisReply *));
    for (i = 0; i < n; i++) {
        vals[i] = sa_xredis_reply(sa);
    }

    if (rf->opts->sync != NULL && n > 0) {
        rf->opts->sync(rf->opts->sync_data);
    }

    queued = 0;
    scripts = 0;
    sa_args_init(&args);

    for (i = 0; i < n; i++) {
        if (vals[i]->type != REDIS_REPLY_STRING) {
            continue;                   /* expired since the SCAN */
        }

        rf->st->read++;
        id = ids[i];

        sa_refresh_judge(rf, id, vals[i]->str, vals[i]->len, &sealed);

        if (sealed == NULL) {
            continue;
        }

        if (queued == 0) {
            sa_change_args(sa, &args);
        }

        sa_args_add(&args, id);
        sa_args_addn(&args, vals[i]->str, vals[i]->len);
        sa_args_add(&args, sealed);
        free(sealed);

        if (++queued == SA_REFRESH_GROUP) {
            sa_xscript_append(sa, &sa_lua_key_refresh, 0, &args);
            sa_args_free(&args);
            queued = 0;
            scripts++;
        }
    }

    if (queued > 0) {
        sa_xscript_append(sa, &sa_lua_key_refresh, 0, &args);
        scripts++;
    }
    sa_args_free(&args);

    /* every reply is read, even after an error, to keep the pipeline whole */
    for (i = 0; i < scripts; i++) {
        rc = sa_refresh_reply(rf, &rf->st->renewed, &rf->st->changed,
                              &rf->st->gone);
        if (rc != SA_EXIT_OK && first == SA_EXIT_OK) {
            first = rc;
        }
    }

    for (i = 0; i < n; i++) {
        freeReplyObject(vals[i]);
    }
    free(vals);
    free(ids);

    return first;
}


/* ------------------------------- the records permission checks read */

static void
sa_refresh_rrefuse(sa_refresh_t *rf, sa_kind_t kind, const char *id,
    const char *why)
{
    rf->st->records.refused++;
    fprintf(stderr, "sa-admin: the %s record '%s' is refused: %s; not "
            "renewed\n", sa_kind_name(kind), sa_vis(id), why);
}


/* one record of another kind judged, as sa_refresh_judge() a token's */
static void
sa_refresh_rjudge(sa_refresh_t *rf, sa_kind_t kind, const char *id,
    const char *value, size_t len, char **sealed)
{
    const char         *payload;
    size_t              plen;
    uint64_t            version, known;
    int64_t             fresh_until;
    char                vkey[700];
    json_t             *j;
    sa_refresh_recs_t  *st = &rf->st->records;

    *sealed = NULL;

    if (sa_envelope_open(value, len, rf->pk, &payload, &plen) != SA_REC_OK) {
        sa_refresh_rrefuse(rf, kind, id, "it does not verify with the "
                           "signing key (signed with another key: run 'key "
                           "resign' first; or written by something other "
                           "than sa-admin)");
        return;
    }

    j = json_loadb(payload, plen, JSON_REJECT_DUPLICATES, NULL);
    if (j == NULL || sa_record_check(j, kind, id) != SA_REC_OK) {
        sa_refresh_rrefuse(rf, kind, id, "not a valid record of its kind "
                           "under that name");
        json_decref(j);
        return;
    }

    version = (uint64_t) json_integer_value(json_object_get(j, "version"));
    fresh_until = json_integer_value(json_object_get(j, "fresh_until"));

    if (rf->opts->versions != NULL) {
        snprintf(vkey, sizeof(vkey), "%s:%s", sa_kind_name(kind), id);
        known = sa_versions_known_rec(rf->opts->versions, vkey);

        if (version < known) {
            st->older++;
            fprintf(stderr, "sa-admin: the %s record '%s' is refused: "
                    "version %llu is older than version %llu seen before "
                    "(put back by a Redis writer?); not renewed\n",
                    sa_kind_name(kind), sa_vis(id),
                    (unsigned long long) version, (unsigned long long) known);
            goto done;
        }

        sa_versions_note_rec(rf->opts->versions, vkey, version);
    }

    if (fresh_until > rf->now + rf->period) {
        st->ahead++;

    } else if (fresh_until > rf->now + rf->within) {
        st->fresh++;
        if (rf->st->next_due == 0 || fresh_until < rf->st->next_due) {
            rf->st->next_due = fresh_until;
        }
        goto done;
    }

    if (fresh_until == 0) {
        st->stamped++;

    } else if (fresh_until <= rf->now) {
        /* refused by every permission check since: renewing it could
         * bring back an older record put back (docs/admin-api.md) */
        st->lapsed++;
        if (!rf->opts->lapsed) {
            goto done;
        }
    }

    json_object_set_new(j, "fresh_until",
                        json_integer(sa_refresh_until(rf, fresh_until)));

    if (rf->opts->dry_run) {
        st->renewed++;
        goto done;
    }

    *sealed = sa_record_encode(j, rf->sk);
    if (*sealed == NULL) {
        sa_die(SA_EXIT_UNAVAILABLE, "out of memory");
    }

done:

    json_decref(j);
}


/* a key after the prefix: its kind, and for a members hash its team */
static int
sa_refresh_rkind(const char *k, size_t len, sa_kind_t *kind, size_t *idoff)
{
    static const struct {
        const char  *head;
        sa_kind_t    kind;
    } heads[] = {
        { SA_KEY_ACCOUNT, SA_KIND_ACCOUNT },
        { SA_KEY_TEAM, SA_KIND_TEAM },
        { SA_KEY_APP, SA_KIND_APP },
        { SA_KEY_PTOKEN, SA_KIND_PTOKEN },
    };
    size_t       i, h, ml = sizeof(SA_KEY_MEMBERS) - 1;
    const char  *id;

    for (i = 0; i < sizeof(heads) / sizeof(heads[0]); i++) {
        h = strlen(heads[i].head);
        if (len <= h || strncmp(k, heads[i].head, h) != 0) {
            continue;
        }

        id = k + h;
        *idoff = h;
        *kind = heads[i].kind;

        switch (heads[i].kind) {
        case SA_KIND_ACCOUNT:
        case SA_KIND_PTOKEN:
            return sa_token_id_valid(id, len - h);

        case SA_KIND_APP:
            return strchr(id, ':') == NULL && sa_app_valid(id, len - h);

        default:
            /* team:<team>, or team:<team>:members (a team has no colon) */
            if (strchr(id, ':') == NULL) {
                return 1;
            }
            if (len - h > ml && strcmp(k + len - ml, SA_KEY_MEMBERS) == 0
                && memchr(id, ':', len - h - ml) == NULL)
            {
                *kind = SA_KIND_MEMBER;
                return 1;
            }
            return 0;
        }
    }

    return 0;
}


/* one SCAN batch of the other kinds, as sa_refresh_batch() */
static int
sa_refresh_rbatch(sa_refresh_t *rf, redisReply *keys)
{
    size_t        i, j, n, plen, queued, scripts, klen;
    size_t       *offs;
    sa_kind_t    *kinds;
    char        **ks, *sealed, id[600];
    redisReply  **vals, *v;
    sa_args_t     args;
    int           rc, first = SA_EXIT_OK;
    sa_admin_t   *sa = rf->sa;

    plen = strlen(sa->prefix);
    ks = sa_xcalloc(keys->elements + 1, sizeof(char *));
    kinds = sa_xcalloc(keys->elements + 1, sizeof(sa_kind_t));
    offs = sa_xcalloc(keys->elements + 1, sizeof(size_t));
    n = 0;

    for (i = 0; i < keys->elements; i++) {
        v = keys->element[i];
        if (v->type != REDIS_REPLY_STRING || v->len <= plen
            || strlen(v->str) != v->len
            || !sa_refresh_rkind(v->str + plen, v->len - plen, &kinds[n],
                                 &offs[n]))
        {
            continue;
        }
        ks[n++] = v->str + plen;
    }

    for (i = 0; i < n; i++) {
        sa_args_init(&args);
        sa_args_add(&args, kinds[i] == SA_KIND_MEMBER ? "HGETALL" : "GET");
        sa_args_addf(&args, "%s%s", sa->prefix, ks[i]);
        sa_xredis_append(sa, &args);
        sa_args_free(&args);
    }

    vals = sa_xcalloc(n + 1, sizeof(redisReply *));
    for (i = 0; i < n; i++) {
        vals[i] = sa_xredis_reply(sa);
    }

    if (rf->opts->sync != NULL && n > 0) {
        rf->opts->sync(rf->opts->sync_data);
    }

    queued = 0;
    scripts = 0;
    sa_args_init(&args);

    for (i = 0; i < n; i++) {
        v = vals[i];

        /* an unsigned team (a hash, before 0.4) answers WRONGTYPE: left
         * for team adopt; gone since the SCAN: nothing */
        if (kinds[i] != SA_KIND_MEMBER && v->type != REDIS_REPLY_STRING) {
            continue;
        }
        if (kinds[i] == SA_KIND_MEMBER && v->type != REDIS_REPLY_ARRAY) {
            continue;
        }

        for (j = 0; j < (kinds[i] == SA_KIND_MEMBER ? v->elements : 1);
             j += 2)
        {
            const char  *value, *field = "";
            size_t       vlen;

            if (kinds[i] == SA_KIND_MEMBER) {
                if (j + 1 >= v->elements
                    || v->element[j]->type != REDIS_REPLY_STRING
                    || v->element[j + 1]->type != REDIS_REPLY_STRING)
                {
                    continue;
                }
                /* "<team>/<user>" */
                klen = strlen(ks[i]) - offs[i] - (sizeof(SA_KEY_MEMBERS) - 1);
                field = v->element[j]->str;
                snprintf(id, sizeof(id), "%.*s/%s", (int) klen,
                         ks[i] + offs[i], field);
                value = v->element[j + 1]->str;
                vlen = v->element[j + 1]->len;

            } else {
                snprintf(id, sizeof(id), "%s", ks[i] + offs[i]);
                value = v->str;
                vlen = v->len;
            }

            rf->st->records.read++;
            sa_refresh_rjudge(rf, kinds[i], id, value, vlen, &sealed);

            if (sealed == NULL) {
                continue;
            }

            if (queued == 0) {
                sa_change_args(sa, &args);
            }

            sa_args_add(&args, ks[i]);
            sa_args_add(&args, field);
            sa_args_addn(&args, value, vlen);
            sa_args_add(&args, sealed);
            free(sealed);

            if (++queued == SA_REFRESH_GROUP) {
                sa_xscript_append(sa, &sa_lua_record_refresh, 0, &args);
                sa_args_free(&args);
                queued = 0;
                scripts++;
            }
        }
    }

    if (queued > 0) {
        sa_xscript_append(sa, &sa_lua_record_refresh, 0, &args);
        scripts++;
    }
    sa_args_free(&args);

    for (i = 0; i < scripts; i++) {
        rc = sa_refresh_reply(rf, &rf->st->records.renewed,
                              &rf->st->records.changed,
                              &rf->st->records.gone);
        if (rc != SA_EXIT_OK && first == SA_EXIT_OK) {
            first = rc;
        }
    }

    for (i = 0; i < n; i++) {
        freeReplyObject(vals[i]);
    }
    free(vals);
    free(ks);
    free(kinds);
    free(offs);

    return first;
}


int
sa_refresh_run(sa_admin_t *sa, int64_t period, int64_t within,
    const sa_refresh_opts_t *opts, sa_refresh_stats_t *st)
{
    static const char  *heads[] = {
        SA_KEY_TEAM "*", SA_KEY_ACCOUNT "*", SA_KEY_APP "*",
        SA_KEY_PTOKEN "*"
    };
    size_t              i;
    sa_scan_t           sc;
    redisReply         *r;
    int                 rc = SA_EXIT_OK;
    sa_refresh_t        rf;
    sa_refresh_opts_t   none;

    memset(st, 0, sizeof(*st));

    if (opts == NULL) {
        memset(&none, 0, sizeof(none));
        opts = &none;
    }

    if (period <= 0 || within <= 0 || within >= period
        || period - within > UINT32_MAX)
    {
        return sa_fail(SA_EXIT_USAGE, "key refresh: the window must be "
                       "shorter than the period, both positive");
    }

    memset(&rf, 0, sizeof(rf));
    rf.sa = sa;
    rf.sk = sa_signing_key_or_exit(sa);
    memcpy(rf.pk, rf.sk + 32, SA_PUBLICKEY_LEN);
    rf.now = sa_now();
    rf.period = period;
    rf.within = within;
    rf.opts = opts;
    rf.st = st;
    sa_progress_start(&rf.progress);

    sa_scan_start(&sc, sa, SA_REFRESH_SCAN, SA_KEY_TOKEN "*", NULL);

    while (rc == SA_EXIT_OK && (r = sa_scan_next(&sc, sa, &rc)) != NULL) {
        rc = sa_refresh_batch(&rf, r->element[1]);
        freeReplyObject(r);

        sa_refresh_progress(&rf);
    }

    /* then the records permission checks read (fresh.h) */
    for (i = 0; rc == SA_EXIT_OK && i < sizeof(heads) / sizeof(heads[0]);
         i++)
    {
        sa_scan_start(&sc, sa, SA_REFRESH_SCAN, heads[i], NULL);

        while (rc == SA_EXIT_OK && (r = sa_scan_next(&sc, sa, &rc)) != NULL)
        {
            rc = sa_refresh_rbatch(&rf, r->element[1]);
            freeReplyObject(r);
        }
    }

    st->seconds = sa_progress_elapsed(&rf.progress);

    return rc;
}


json_t *
sa_refresh_json(const sa_refresh_stats_t *st, int dry_run)
{
    const sa_refresh_recs_t  *rs = &st->records;

    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
                     " s:I, s:{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I,"
                     " s:I}, s:o, s:b, s:f}",
                     "read", (json_int_t) st->read,
                     "renewed", (json_int_t) st->renewed,
                     "stamped", (json_int_t) st->stamped,
                     "lapsed", (json_int_t) st->lapsed,
                     "ahead", (json_int_t) st->ahead,
                     "fresh", (json_int_t) st->fresh,
                     "skipped", (json_int_t) st->skipped,
                     "refused", (json_int_t) st->refused,
                     "older", (json_int_t) st->older,
                     "changed", (json_int_t) st->changed,
                     "gone", (json_int_t) st->gone,
                     "records",
                     "read", (json_int_t) rs->read,
                     "renewed", (json_int_t) rs->renewed,
                     "stamped", (json_int_t) rs->stamped,
                     "lapsed", (json_int_t) rs->lapsed,
                     "ahead", (json_int_t) rs->ahead,
                     "fresh", (json_int_t) rs->fresh,
                     "refused", (json_int_t) rs->refused,
                     "older", (json_int_t) rs->older,
                     "changed", (json_int_t) rs->changed,
                     "gone", (json_int_t) rs->gone,
                     "next_due", st->next_due ? sa_time_json(st->next_due)
                                              : json_null(),
                     "dry_run", dry_run,
                     "seconds", (double) (long) (st->seconds * 1000) / 1000);
}


static int64_t
sa_refresh_duration_or_exit(sa_admin_t *sa, const char *flag, const char *s)
{
    int64_t  d = sa_duration_parse(s);

    if (d <= 0) {
        sa_die_usage(sa, "invalid %s '%s' (expected a duration, e.g. 24h)",
                     flag, s);
    }

    return d;
}


void
sa_key_refresh_cmd(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "period", required_argument, NULL, 'p' },
        { "within", required_argument, NULL, 'w' },
        { "dry-run", no_argument, NULL, 'n' },
        { "lapsed", no_argument, NULL, 'l' },
        SA_OPTS_END
    };
    int64_t              period, within;
    int                  ch, rc;
    sa_refresh_opts_t    ro;
    sa_refresh_stats_t   st;

    memset(&ro, 0, sizeof(ro));
    period = sa->fresh_period;
    within = 0;

    while ((ch = sa_getopt_or_exit(sa, argc, argv, opts)) != -1) {
        switch (ch) {
        case 'p':
            period = sa_refresh_duration_or_exit(sa, "--period", optarg);
            break;
        case 'w':
            within = sa_refresh_duration_or_exit(sa, "--within", optarg);
            break;
        case 'n':
            ro.dry_run = 1;
            break;
        case 'l':
            ro.lapsed = 1;
            break;
        }
    }

    sa_operands_or_exit(sa, argc, argv, 0);

    if (period <= 0) {
        sa_die_usage(sa, "--period D is required (or SA_FRESH_PERIOD)");
    }

    if (within == 0) {
        within = period / 4 > 0 ? period / 4 : 1;
    }

    if (within >= period) {
        sa_die_usage(sa, "--within must be shorter than --period");
    }

    ro.progress = 1;

    rc = sa_refresh_run(sa, period, within, &ro, &st);

    if (rc != SA_EXIT_OK) {
        sa_die(rc, "key refresh stopped after %zu records renewed; run it "
               "again", st.renewed);
    }

    if (sa->json) {
        sa_print_json(sa_refresh_json(&st, ro.dry_run));

    } else {
        printf("%s %zu token record%s (%zu had no fresh_until, %zu had "
               "lapsed); %zu fresh beyond the window, %zu revoked or expired "
               "left, %zu refused (%.1f s)\n",
               ro.dry_run ? "would renew" : "renewed", st.renewed,
               st.renewed == 1 ? "" : "s", st.stamped, st.lapsed, st.fresh,
               st.skipped, st.refused + st.older, st.seconds);
        printf("%s %zu of %zu team, member, application, account and "
               "personal token record%s (%zu had no fresh_until, %zu had "
               "lapsed%s); %zu refused\n",
               ro.dry_run ? "would renew" : "renewed", st.records.renewed,
               st.records.read, st.records.read == 1 ? "" : "s",
               st.records.stamped, st.records.lapsed,
               ro.lapsed ? "" : ", left", st.records.refused + st.records.older);
    }

    if (st.records.lapsed > 0 && !ro.lapsed) {
        sa_fail(SA_EXIT_OK, "warning: %zu team, member, application, "
                "account or personal token record%s had lapsed and %s "
                "left (permission checks refuse %s): if no older record "
                "was put back, renew with key refresh --lapsed",
                st.records.lapsed, st.records.lapsed == 1 ? "" : "s",
                st.records.lapsed == 1 ? "is" : "are",
                st.records.lapsed == 1 ? "it" : "them");
    }

    st.refused += st.records.refused;
    st.older += st.records.older;

    if (st.lapsed > 0) {
        sa_fail(SA_EXIT_OK, "warning: %zu record%s had lapsed before this "
                "run (gateways with sa_record_max_age refused %s): run key "
                "refresh more often than --within", st.lapsed,
                st.lapsed == 1 ? "" : "s", st.lapsed == 1 ? "it" : "them");
    }

    if (st.refused + st.older > 0) {
        sa_die(SA_EXIT_NOT_FOUND, "%zu record%s refused (above) and not "
               "renewed: gateways with sa_record_max_age refuse %s once %s "
               "fresh_until passes", st.refused + st.older,
               st.refused + st.older == 1 ? " was" : "s were",
               st.refused + st.older == 1 ? "it" : "them",
               st.refused + st.older == 1 ? "its" : "their");
    }
}
