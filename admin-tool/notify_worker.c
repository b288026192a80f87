/*
 * sa-admin notify run: the delivery worker.
 *
 * Deliveries come from three places: new entries of the events stream,
 * read with a consumer group (each entry is one delivery: an event for one
 * destination of one subscription); entries another worker left pending
 * for longer than the reclaim time (XAUTOCLAIM: it died); and the retry
 * schedule, a sorted set of delivery ids by due time, from which a worker
 * leases what is due.  An entry is acknowledged (and the lease ended) only
 * after the receiver answered, in one script that also schedules the
 * retry or keeps the dead letter (notify_done.lua), so that nothing is
 * lost between the two.  Transfers run concurrently on libcurl's multi
 * interface; this loop alternates between Redis (short, or blocking only
 * while nothing is in flight) and curl.
 */

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>

#include "notify_worker.h"
#include "scripts.h"
#include "util.h"
#include "xalloc.h"


static volatile sig_atomic_t  sa_stop;


static void
sa_on_signal(int sig)
{
    (void) sig;
    sa_stop = 1;
}


/* that stream entry or scheduled delivery is in flight here already */
static int
sa_taken(sa_worker_t *w, const char *entry, const char *sched)
{
    sa_dlv_t  *d;

    for (d = w->list; d != NULL; d = d->next) {
        if ((entry && strcmp(d->entry, entry) == 0)
            || (sched && (strcmp(d->sched, sched) == 0
                          || strcmp(d->id, sched) == 0)))
        {
            return 1;
        }
    }

    return 0;
}


/* a stream entry ([id, [field, value, ...]]) becomes a delivery */
static int
sa_take_entry(sa_worker_t *w, redisReply *entry)
{
    sa_dlv_t    *d;
    redisReply  *kv;
    json_t      *fields;
    size_t       i;
    char         id[80];

    if (entry == NULL || entry->type != REDIS_REPLY_ARRAY
        || entry->elements != 2 || entry->element[0]->type
           != REDIS_REPLY_STRING)
    {
        return 0;
    }

    if (sa_taken(w, entry->element[0]->str, NULL)) {
        return 0;
    }
    snprintf(id, sizeof(id), "dlv_%s", entry->element[0]->str);

    kv = entry->element[1];
    fields = json_object();
    for (i = 0; kv->type == REDIS_REPLY_ARRAY && i + 1 < kv->elements;
         i += 2)
    {
        json_object_set_new(fields, kv->element[i]->str,
                            json_stringn(kv->element[i + 1]->str,
                                         kv->element[i + 1]->len));
    }

    /* an unsigned entry's time is the stream's (ms-seq), not its own */
    if (sa_field(fields, "ev") == NULL) {
        json_object_set_new(fields, "time", json_sprintf("%lld",
            strtoll(entry->element[0]->str, NULL, 10) / 1000));
    }

    /* the gateway's token.denied, token.quota_*: no destination yet */
    if (sa_field(fields, "dest") == NULL
        && sa_gateway_type(sa_field(fields, "type") ?: ""))
    {
        sa_expand(w, entry->element[0]->str, fields);
        json_decref(fields);
        return 1;
    }

    d = sa_xcalloc(1, sizeof(*d));
    snprintf(d->id, sizeof(d->id), "%s", id);
    snprintf(d->entry, sizeof(d->entry), "%s", entry->element[0]->str);
    d->fields = fields;
    d->state = json_pack("{s:i, s:I}", "attempts", 0,
                         "first_at", (json_int_t) sa_ms());
    sa_dlv_start(w, d);

    return 1;
}


/* a leased retry ([delivery id, state]) becomes a delivery */
static int
sa_take_retry(sa_worker_t *w, const char *id, const char *state)
{
    sa_dlv_t  *d;
    json_t    *st;

    if (sa_taken(w, NULL, id)) {
        return 0;
    }

    st = json_loads(state, 0, NULL);
    if (!json_is_object(st) || !json_is_object(json_object_get(st,
                                                               "fields")))
    {
        json_decref(st);
        st = json_pack("{s:{}, s:i, s:I}", "fields", "attempts", 0,
                       "first_at", (json_int_t) sa_ms());
    }

    d = sa_xcalloc(1, sizeof(*d));
    snprintf(d->id, sizeof(d->id), "%s", id);
    snprintf(d->sched, sizeof(d->sched), "%s", id);
    d->fields = json_incref(json_object_get(st, "fields"));
    d->state = st;
    sa_dlv_start(w, d);

    return 1;
}


static int
sa_read_new(sa_worker_t *w, long block_ms)
{
    redisReply  *r, *entries;
    size_t       i;
    int          n = 0;
    char         key[256];

    snprintf(key, sizeof(key), "%s" SA_KEY_EVENTS, w->sa->prefix);

    if (block_ms > 0) {
        r = sa_xredis_cmd(w->sa, "XREADGROUP GROUP %s %s COUNT %d BLOCK %ld "
                          "STREAMS %s >", SA_NOTIFY_GROUP, w->me,
                          w->conc - w->inflight, block_ms, key);
    } else {
        r = sa_xredis_cmd(w->sa, "XREADGROUP GROUP %s %s COUNT %d STREAMS "
                          "%s >", SA_NOTIFY_GROUP, w->me,
                          w->conc - w->inflight, key);
    }

    if (r->type == REDIS_REPLY_ERROR) {
        sa_die(SA_EXIT_UNAVAILABLE, "XREADGROUP: %s", r->str);
    }

    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1
        && r->element[0]->elements == 2)
    {
        entries = r->element[0]->element[1];
        for (i = 0; i < entries->elements; i++) {
            n += sa_take_entry(w, entries->element[i]);
        }
    }

    freeReplyObject(r);
    return n;
}


/* entries a dead worker left pending: XAUTOCLAIM */
static int
sa_reclaim(sa_worker_t *w)
{
    redisReply  *r;
    size_t       i;
    int          n = 0;
    char         key[256];

    snprintf(key, sizeof(key), "%s" SA_KEY_EVENTS, w->sa->prefix);
    r = sa_xredis_cmd(w->sa, "XAUTOCLAIM %s %s %s %lld 0-0 COUNT %d", key,
                      SA_NOTIFY_GROUP, w->me, (long long) w->reclaim_ms,
                      w->conc - w->inflight);

    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2
        && r->element[1]->type == REDIS_REPLY_ARRAY)
    {
        for (i = 0; i < r->element[1]->elements; i++) {
            if (sa_take_entry(w, r->element[1]->element[i])) {
                n++;
                fprintf(stderr, "sa-notify: reclaimed %s from a worker that "
                        "stopped answering\n",
                        r->element[1]->element[i]->element[0]->str);
            }
        }
    }

    freeReplyObject(r);
    return n;
}


static int
sa_claim_due(sa_worker_t *w)
{
    sa_args_t    args;
    redisReply  *r;
    size_t       i;
    int          n = 0;

    sa_worker_args(w, &args);
    sa_args_add(&args, w->me);
    sa_args_addf(&args, "%lld", (long long) sa_ms());
    sa_args_addf(&args, "%lld", (long long) w->reclaim_ms);
    sa_args_addf(&args, "%d", w->conc - w->inflight);
    r = sa_worker_script(w, &sa_lua_notify_claim, &args);

    for (i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        n += sa_take_retry(w, r->element[i]->str, r->element[i + 1]->str);
    }

    freeReplyObject(r);
    return n;
}


static void
sa_curl_step(sa_worker_t *w, int wait_ms)
{
    CURLMsg   *m;
    sa_dlv_t  *d;
    int        running, left;

    curl_multi_perform(w->multi, &running);

    while ((m = curl_multi_info_read(w->multi, &left)) != NULL) {
        if (m->msg == CURLMSG_DONE) {
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &d);
            sa_dlv_done(w, d, m->data.result);
        }
    }

    if (wait_ms > 0 && w->inflight > 0) {
        curl_multi_poll(w->multi, NULL, 0, wait_ms, NULL);
    }
}


/* stopping: what is still in flight goes back to the schedule, due now */
static void
sa_hand_back(sa_worker_t *w)
{
    sa_dlv_t  *d;
    int64_t    attempts;

    while ((d = w->list) != NULL) {
        sa_unlink(w, d);
        attempts = json_integer_value(json_object_get(d->state, "attempts"));
        json_object_set_new(d->state, "attempts", json_integer(attempts - 1));
        sa_log(d, "handed back (stopping)");
        sa_dlv_finish(w, d, SA_DLV_HANDBACK, sa_ms(), "handed back");
        sa_dlv_free(d);
    }
}


static void
sa_worker_init(sa_worker_t *w, sa_admin_t *sa, int allow_private, int conc)
{
    const char  *scale = getenv("SA_NOTIFY_TIME_SCALE");
    char         host[64] = "host", rnd[9];
    redisReply  *r;

    memset(w, 0, sizeof(*w));
    w->sa = sa;
    w->conc = conc;
    w->per_dest = conc > 1 ? conc / 2 : 1;
    w->allow_private = allow_private;
    w->scale = scale && *scale ? strtod(scale, NULL) : 1.0;
    if (!(w->scale > 0 && w->scale <= 1000)) {
        sa_die(SA_EXIT_USAGE, "invalid SA_NOTIFY_TIME_SCALE '%s'",
               scale);
    }
    w->reclaim_ms = (int64_t) (SA_RECLAIM_MS * w->scale);
    if (w->reclaim_ms < SA_RECLAIM_MIN_MS) {
        w->reclaim_ms = SA_RECLAIM_MIN_MS;
    }

    gethostname(host, sizeof(host) - 1);
    sa_random_base62(rnd, 8);
    rnd[8] = '\0';
    snprintf(w->me, sizeof(w->me), "%s:%ld:%s", host, (long) getpid(), rnd);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK
        || (w->multi = curl_multi_init()) == NULL)
    {
        sa_die(SA_EXIT_UNAVAILABLE, "libcurl failed to start");
    }
    curl_multi_setopt(w->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) conc);

    /* from 0: whatever was queued before the first worker ever ran */
    r = sa_xredis_cmd(sa, "XGROUP CREATE %s %s 0 MKSTREAM",
                      sa_key(sa, SA_KEY_EVENTS, NULL), SA_NOTIFY_GROUP);
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
        sa_die(SA_EXIT_UNAVAILABLE, "XGROUP CREATE: %s", r->str);
    }
    freeReplyObject(r);
}


int
sa_notify_run(sa_admin_t *sa, int once, int allow_private, int concurrency)
{
    sa_worker_t        w;
    struct sigaction   act;
    int64_t            now, next_reclaim = 0, next_exp = 0;
    int64_t            stop_at = 0, wait;
    long               block;
    int                got;
    redisReply        *r;

    sa_worker_init(&w, sa, allow_private, concurrency);

    memset(&act, 0, sizeof(act));
    act.sa_handler = sa_on_signal;
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    signal(SIGPIPE, SIG_IGN);

    fprintf(stderr, "sa-notify: worker %s started (concurrency %d%s%s)\n",
            w.me, w.conc, allow_private ? ", private destinations allowed"
                                        : "", once ? ", once" : "");

    for ( ;; ) {
        now = sa_ms();
        got = 0;

        if (sa_stop) {
            if (stop_at == 0) {
                stop_at = now + (SA_DRAIN_MS * w.scale < SA_RECLAIM_MIN_MS
                                 ? SA_RECLAIM_MIN_MS
                                 : (int64_t) (SA_DRAIN_MS * w.scale));
                fprintf(stderr, "sa-notify: stopping: finishing %d "
                        "deliveries in flight\n", w.inflight);
            }
            if (w.inflight == 0) {
                break;
            }
            if (now >= stop_at) {
                sa_hand_back(&w);
                break;
            }
            sa_curl_step(&w, 50);
            continue;
        }

        if (now >= next_exp) {
            sa_expiring(&w);
            next_exp = now + SA_EXPIRING_EVERY_MS;
        }

        if (w.inflight < w.conc && now >= next_reclaim) {
            got += sa_reclaim(&w);
            next_reclaim = now + (w.reclaim_ms / 2 < 1000 ? w.reclaim_ms / 2
                                                          : 1000);
        }

        if (w.inflight < w.conc && now >= w.next_due) {
            got += sa_claim_due(&w);
            wait = sa_next_due(&w);
            w.next_due = now + (wait < 1 ? 1 : wait > 1000 ? 1000 : wait);
        }

        if (w.inflight < w.conc) {
            block = 0;
            if (w.inflight == 0 && !once) {
                wait = w.next_due - sa_ms();
                if (next_reclaim - sa_ms() < wait) {
                    wait = next_reclaim - sa_ms();
                }
                block = wait < 1 ? 1 : wait > 500 ? 500 : (long) wait;
            }
            got += sa_read_new(&w, block);
        }

        if (once && got == 0 && w.inflight == 0 && sa_next_due(&w) > 0) {
            break;
        }

        sa_curl_step(&w, w.inflight >= w.conc ? 100 : 5);
    }

    /* its name goes from the group, unless something is still pending
       under it (deleting it would make that unclaimable) */
    r = sa_xredis_cmd(sa, "XPENDING %s %s - + 1 %s",
                      sa_key(sa, SA_KEY_EVENTS, NULL), SA_NOTIFY_GROUP, w.me);
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 0) {
        freeReplyObject(sa_xredis_cmd(sa, "XGROUP DELCONSUMER %s %s %s",
                                      sa_key(sa, SA_KEY_EVENTS, NULL),
                                      SA_NOTIFY_GROUP, w.me));
    }
    freeReplyObject(r);
    fprintf(stderr, "sa-notify: worker %s stopped: %ld delivered, %ld "
            "failed for good\n", w.me, w.delivered, w.failed);

    curl_multi_cleanup(w.multi);
    curl_global_cleanup();

    return SA_EXIT_OK;
}
