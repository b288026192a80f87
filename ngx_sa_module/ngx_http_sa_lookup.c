/*
 * The lookup of a token's record, as nginx's file cache locks an entry: one
 * GET on its way per token in this worker (the lock), and every request of
 * this worker that waits for it, so that concurrent misses for a token cost
 * one Redis round trip.  The reply is read once, inside the hiredis
 * callback: verified (unless this worker verified exactly these bytes
 * before, ngx_http_sa_verified.c), decoded and stored in the cache; every
 * waiting request gets its own copy, and its posted wake event runs its
 * phases again, never inside the callback.  A lock outlives its requests:
 * hiredis calls back even when they are gone, and the lock is freed then.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sa_module.h"
#include "ngx_http_sa_lookup.h"
#include "ngx_http_sa_verified.h"


/* the worker's part (smcf->worker->lookup) */
struct ngx_http_sa_lookup_s {
    ngx_rbtree_t               locks;         /* by token id */
    ngx_rbtree_node_t          sentinel;
    ngx_http_sa_verified_t    *verified;      /* what this worker verified */
    ngx_http_sa_main_conf_t   *smcf;
    ngx_uint_t                 exiting;
    time_t                     refused_logged; /* "is unavailable" */
    ngx_uint_t                 refused;        /* left out since */
    time_t                     late_logged;    /* "no reply within" */
    ngx_uint_t                 late;
};


struct ngx_http_sa_lock_s {
    ngx_http_sa_id_node_t      node;          /* the token id's */
    ngx_http_sa_lookup_t      *lookup;        /* whose lock */
    ngx_queue_t                waiters;       /* of ngx_http_sa_ctx_t */
    ngx_atomic_uint_t          epoch;         /* the cache's, at the GET */
    ngx_http_sa_usec_t         sent;          /* for metrics */
    ngx_event_t                timer;         /* sa_redis_timeout */
    unsigned                   in_tree:1;     /* may still be joined */
    unsigned                   done:1;        /* answered or timed out */
};


static void ngx_http_sa_lock_reply(void *data, ngx_int_t rc,
    ngx_str_t *value);
static void ngx_http_sa_lock_timeout(ngx_event_t *ev);
static void ngx_http_sa_lock_free(ngx_http_sa_lock_t *lock);


/*
 * The connection logs why Redis is unavailable, once per attempt; what
 * each request met is logged at most once a second in a worker, the line
 * saying how many requests it stands for (a flood of requests against a
 * dead Redis must not be a flood of error lines).  NGX_OK: log now, *n
 * left out before it; NGX_DECLINED: counted.
 */
static ngx_int_t
ngx_http_sa_lookup_say(time_t *logged, ngx_uint_t *left_out, ngx_uint_t *n)
{
    if (*logged == ngx_time()) {
        (*left_out)++;
        return NGX_DECLINED;
    }

    *logged = ngx_time();
    *n = *left_out;
    *left_out = 0;

    return NGX_OK;
}


ngx_http_sa_lookup_t *
ngx_http_sa_lookup_init_process(ngx_cycle_t *cycle,
    ngx_http_sa_main_conf_t *smcf)
{
    ngx_http_sa_lookup_t  *lu;

    lu = ngx_pcalloc(cycle->pool, sizeof(ngx_http_sa_lookup_t));
    if (lu == NULL) {
        return NULL;
    }

    lu->verified = ngx_http_sa_verified_init(cycle);
    if (lu->verified == NULL) {
        return NULL;
    }

    lu->smcf = smcf;

    ngx_rbtree_init(&lu->locks, &lu->sentinel, ngx_http_sa_id_insert);

    return lu;
}


/*
 * Redis' last answers, which come as the worker exits, wake nobody and
 * read nothing: what was verified can go.
 */
void
ngx_http_sa_lookup_exit_process(ngx_http_sa_lookup_t *lu)
{
    lu->exiting = 1;

    ngx_http_sa_verified_exit(lu->verified);
    lu->verified = NULL;
}


/* the request is gone: it leaves its lock */
void
ngx_http_sa_lookup_leave(ngx_http_sa_ctx_t *ctx)
{
    if (ctx->lock) {
        ngx_queue_remove(&ctx->queue);
        ctx->lock = NULL;
    }
}


/* locks */

static ngx_http_sa_lock_t *
ngx_http_sa_lock_find(ngx_http_sa_lookup_t *lu, u_char *id)
{
    return (ngx_http_sa_lock_t *) ngx_http_sa_id_find(&lu->locks, id);
}


/* no request joins it any more; its waiters still get its answer */
static void
ngx_http_sa_lock_detach(ngx_http_sa_lock_t *lock)
{
    if (lock->in_tree) {
        ngx_rbtree_delete(&lock->lookup->locks, &lock->node.node);
        lock->in_tree = 0;
    }
}


static ngx_http_sa_lock_t *
ngx_http_sa_lock_create(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_main_conf_t *smcf)
{
    u_char               key[NGX_HTTP_SA_KEY_MAX];
    size_t               argvlen[2];
    const char          *argv[2];
    ngx_http_sa_lock_t  *lock;

    lock = ngx_calloc(sizeof(ngx_http_sa_lock_t), r->connection->log);
    if (lock == NULL) {
        return NULL;
    }

    /* read before the GET is sent: changes seen later are newer than it */
    lock->epoch = smcf->cache ? ngx_http_sa_cache_epoch(smcf->cache) : 0;
    lock->sent = ngx_http_sa_metrics_usec();

    argv[0] = "GET";
    argvlen[0] = sizeof("GET") - 1;
    argv[1] = (const char *) key;
    argvlen[1] = ngx_http_sa_key(key, &smcf->prefix, SA_KEY_TOKEN, ctx->id, 0)
                 - key;

    if (ngx_http_sa_redis_command(smcf->worker->redis, 2, argv, argvlen,
                                  ngx_http_sa_lock_reply, lock)
        != NGX_OK)
    {
        ngx_free(lock);
        return NULL;
    }

    ngx_http_sa_id_set(&lock->node, ctx->id);
    ngx_queue_init(&lock->waiters);
    lock->lookup = smcf->worker->lookup;

    lock->timer.handler = ngx_http_sa_lock_timeout;
    lock->timer.data = lock;
    lock->timer.log = ngx_cycle->log;
    ngx_add_timer(&lock->timer, smcf->timeout);

    ngx_rbtree_insert(&lock->lookup->locks, &lock->node.node);
    lock->in_tree = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "sa: GET sent, cache epoch %uA", lock->epoch);

    return lock;
}


/*
 * Waits on the GET on its way for this token, or sends one: NGX_AGAIN, and
 * ctx->wake is posted when it is answered; NGX_ERROR when Redis cannot be
 * asked.
 */
ngx_int_t
ngx_http_sa_lookup(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_main_conf_t *smcf)
{
    ngx_uint_t             n;
    ngx_http_sa_lock_t    *lock;
    ngx_http_sa_lookup_t  *lu;

    lock = ngx_http_sa_lock_find(smcf->worker->lookup, ctx->id);

    /*
     * A change of this token seen (by any worker) since that GET was sent:
     * its reply may predate the change, and this request came after it.
     */
    if (lock && smcf->cache
        && ngx_http_sa_cache_changed(smcf->cache, ctx->id, lock->epoch))
    {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "sa: token changed since the GET on its way");
        ngx_http_sa_lock_detach(lock);
        lock = NULL;
    }

    if (lock == NULL) {
        lock = ngx_http_sa_lock_create(r, ctx, smcf);
    }

    if (lock == NULL) {
        lu = smcf->worker->lookup;

        if (ngx_http_sa_lookup_say(&lu->refused_logged, &lu->refused, &n)
            != NGX_OK)
        {
            return NGX_ERROR;
        }

        if (n) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "sa: Redis %V is unavailable (and was for %ui "
                          "requests before it, not logged)",
                          &smcf->redis->name, n);
        } else {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "sa: Redis %V is unavailable", &smcf->redis->name);
        }

        return NGX_ERROR;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "sa: waiting for Redis");

    ctx->lock = lock;
    ngx_queue_insert_tail(&lock->waiters, &ctx->queue);

    return NGX_AGAIN;
}


/* answered or timed out: nobody joins it any more */
static void
ngx_http_sa_lock_done(ngx_http_sa_lock_t *lock)
{
    lock->done = 1;
    ngx_http_sa_lock_detach(lock);

    if (lock->timer.timer_set) {
        ngx_del_timer(&lock->timer);
    }
}


/*
 * Gives every waiting request its own copy of the answer and posts its
 * wake event: request phases never run inside a hiredis callback.
 */
static void
ngx_http_sa_lock_wake(ngx_http_sa_lock_t *lock, ngx_http_sa_answer_t *a)
{
    void                *copy;
    ngx_queue_t         *q;
    ngx_http_sa_ctx_t   *ctx;

    while (!ngx_queue_empty(&lock->waiters)) {
        q = ngx_queue_head(&lock->waiters);
        ngx_queue_remove(q);

        ctx = ngx_queue_data(q, ngx_http_sa_ctx_t, queue);
        ctx->lock = NULL;
        ctx->answer = *a;

        if (a->record) {
            copy = ngx_palloc(ctx->request->pool, a->record->size);
            ctx->answer.record = copy ? sa_token_record_copy(copy, a->record)
                                      : NULL;
        }

        ctx->answered = 1;
        ngx_post_event(&ctx->wake, &ngx_posted_events);
    }
}



static void
ngx_http_sa_lock_timeout(ngx_event_t *ev)
{
    ngx_uint_t             n;
    ngx_http_sa_lock_t    *lock = ev->data;
    ngx_http_sa_lookup_t  *lu = lock->lookup;
    ngx_http_sa_answer_t   a;

    if (ngx_http_sa_lookup_say(&lu->late_logged, &lu->late, &n) == NGX_OK) {
        if (n) {
            ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                          "sa: no reply from Redis within %M ms for token "
                          "\"%*s\" (nor for %ui tokens before it, not "
                          "logged)", lu->smcf->timeout,
                          (size_t) SA_TOKEN_ID_LEN, lock->node.id, n);
        } else {
            ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                          "sa: no reply from Redis within %M ms for token "
                          "\"%*s\"", lu->smcf->timeout,
                          (size_t) SA_TOKEN_ID_LEN, lock->node.id);
        }
    }

    ngx_memzero(&a, sizeof(ngx_http_sa_answer_t));
    a.status = NGX_HTTP_SA_UNAVAILABLE;

    ngx_http_sa_metrics_count(NGX_HTTP_SA_M_REDIS_TIMEOUT);

    /* the reply, when it comes, only frees the lock */
    ngx_http_sa_lock_done(lock);
    ngx_http_sa_lock_wake(lock, &a);
}


static void *
ngx_http_sa_heap_alloc(void *ctx, size_t size)
{
    return ngx_alloc(size, ngx_cycle->log);
}


/* verified with any of the sa_verify_key keys, in their order */
static sa_rec_err_t
ngx_http_sa_decode(ngx_http_sa_main_conf_t *smcf, ngx_str_t *value,
    sa_token_record_t **rec)
{
    ngx_uint_t    i;
    sa_rec_err_t  err;

    err = SA_REC_BAD_SIGNATURE;

    for (i = 0; i < smcf->nverify_keys && err == SA_REC_BAD_SIGNATURE; i++) {
        ngx_http_sa_metrics_count(NGX_HTTP_SA_M_SIGNATURE_CHECK);
        err = sa_token_record_decode((char *) value->data, value->len,
                                     smcf->verify_keys[i],
                                     ngx_http_sa_heap_alloc, NULL, rec);
    }

    return err;
}


/* a genuine record, but older than one already seen: a replay */
static void
ngx_http_sa_refuse_older(ngx_http_sa_answer_t *a)
{
    a->status = NGX_HTTP_SA_TAMPERED;
    a->older = 1;
    a->version = a->record->version;

    if (!a->borrowed) {
        ngx_free(a->record);
    }

    a->record = NULL;
    a->borrowed = 0;
}


/*
 * The reply, read once: verified (unless this worker verified exactly
 * these bytes before), decoded, and stored in the cache.
 */
static void
ngx_http_sa_read_reply(ngx_http_sa_lock_t *lock, ngx_int_t rc,
    ngx_str_t *value, ngx_http_sa_answer_t *a)
{
    u_char                    digest[SA_DIGEST_LEN];
    ngx_http_sa_main_conf_t  *smcf;

    ngx_memzero(a, sizeof(ngx_http_sa_answer_t));

    if (rc == NGX_ERROR) {
        a->status = NGX_HTTP_SA_UNAVAILABLE;
        return;
    }

    smcf = lock->lookup->smcf;

    if (rc == NGX_DECLINED) {
        a->status = NGX_HTTP_SA_UNKNOWN;
        if (smcf->cache) {
            (void) ngx_http_sa_cache_store(smcf->cache, lock->node.id, NULL,
                                           lock->epoch, ngx_cycle->log);
        }
        return;
    }

    /* no real Redis answers GET so: garbage from Redis, as unavailable */
    if (rc != NGX_OK) {
        ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                      "sa: Redis answered GET for token \"%*s\" with %s, "
                      "not a string", (size_t) SA_TOKEN_ID_LEN,
                      lock->node.id,
                      rc == NGX_DONE ? "an integer" : "an array or a status");
        ngx_http_sa_metrics_count(NGX_HTTP_SA_M_REDIS_PROTOCOL);
        a->status = NGX_HTTP_SA_UNAVAILABLE;
        return;
    }

    sa_envelope_digest((char *) value->data, value->len, digest);

    a->record = ngx_http_sa_verified_find(lock->lookup->verified,
                                          lock->node.id, digest);

    if (a->record != NULL) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "sa: the same record as verified before");
        a->borrowed = 1;

    } else {
        a->err = ngx_http_sa_decode(smcf, value, &a->record);

        if (a->err != SA_REC_OK) {
            a->status = NGX_HTTP_SA_TAMPERED;
            return;
        }

        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "sa: record version %uL verified", a->record->version);

        /* a record under another token's key is refused when judged */
        if (!ngx_http_sa_id_equal(a->record->id, lock->node.id)) {
            a->status = NGX_HTTP_SA_OK;
            return;
        }

        if (ngx_http_sa_verified_remember(lock->lookup->verified,
                                          lock->node.id, digest, a->record)
            == NGX_DECLINED)
        {
            ngx_http_sa_refuse_older(a);
            return;
        }
    }

    /* remembered or just verified: a record of this very token */
    if (smcf->cache
        && ngx_http_sa_cache_store(smcf->cache, lock->node.id, a->record,
                                   lock->epoch, ngx_cycle->log)
           == NGX_DECLINED)
    {
        ngx_http_sa_refuse_older(a);
        return;
    }

    a->status = NGX_HTTP_SA_OK;
}


static void
ngx_http_sa_lock_reply(void *data, ngx_int_t rc, ngx_str_t *value)
{
    ngx_http_sa_lock_t    *lock = data;
    ngx_http_sa_answer_t   a;

    if (rc != NGX_ERROR) {
        ngx_http_sa_metrics_latency(ngx_http_sa_metrics_usec() - lock->sent);
    }

    if (lock->done || lock->lookup->exiting) {
        /* timed out earlier, or the worker is going away */
        ngx_http_sa_lock_free(lock);
        return;
    }

    ngx_http_sa_lock_done(lock);
    ngx_http_sa_read_reply(lock, rc, value, &a);
    ngx_http_sa_lock_wake(lock, &a);

    if (a.record && !a.borrowed) {
        ngx_free(a.record);
    }

    ngx_http_sa_lock_free(lock);
}


/* no request may point at a lock that is freed */
static void
ngx_http_sa_lock_free(ngx_http_sa_lock_t *lock)
{
    ngx_queue_t        *q;
    ngx_http_sa_ctx_t  *ctx;

    if (!lock->done) {
        ngx_http_sa_lock_done(lock);
    }

    while (!ngx_queue_empty(&lock->waiters)) {
        q = ngx_queue_head(&lock->waiters);
        ngx_queue_remove(q);
        ctx = ngx_queue_data(q, ngx_http_sa_ctx_t, queue);
        ctx->lock = NULL;
    }

    ngx_free(lock);
}
