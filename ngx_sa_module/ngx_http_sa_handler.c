/*
 * The access handler.  It parses "Authorization: Bearer <token>", refuses a
 * malformed token without touching Redis, answers from the cache when it
 * can, and otherwise waits on the token's lock: the one GET on its way for
 * that token in this worker, sent if there is none.  The reply is read once
 * inside the hiredis callback, every waiting request gets a copy, and a
 * posted event wakes each of them; the handler then runs again and judges
 * (hash, expiry, application, scopes), as in ngx_http_auth_request_module.
 * A reply with the same bytes as one this worker verified before needs no
 * signature check (ngx_http_sa_verified.c).
 *
 * The verdict lives in a pool cleanup, so an internal redirect keeps it:
 * the new location's rules are checked against the same record, without a
 * second lookup.  A genuine token refused where the location names its
 * application is reported to the notification worker (token.denied).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sa_module.h"
#include "ngx_http_sa_verified.h"
#include "ngx_http_sa_metrics.h"


/* without a cache, last uses are remembered per worker in a small table */
#define NGX_HTTP_SA_USED_SLOTS    65536   /* 1.5 MiB a worker */

/* and, with or without, the last token.denied event sent per token */
#define NGX_HTTP_SA_DENIED_SLOTS  4096
#define NGX_HTTP_SA_DENIED_EVERY  60


typedef struct {
    u_char                     id[SA_TOKEN_ID_LEN];
    time_t                     written;
} ngx_http_sa_used_slot_t;


static void ngx_http_sa_start_main(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);
static void ngx_http_sa_judge_main(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);
static ngx_int_t ngx_http_sa_judge_subrequest(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, ngx_http_sa_ctx_t *mctx);
static ngx_http_sa_ctx_t *ngx_http_sa_create_ctx(ngx_http_request_t *r);
static void ngx_http_sa_cleanup(void *data);
static ngx_int_t ngx_http_sa_start(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);
static ngx_int_t ngx_http_sa_malformed(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, sa_bearer_err_t berr, sa_token_err_t terr);
static ngx_int_t ngx_http_sa_cached(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, ngx_http_sa_cache_t *cache,
    const u_char *token);
static ngx_int_t ngx_http_sa_lookup(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, ngx_http_sa_main_conf_t *smcf);
static void ngx_http_sa_lock_reply(void *data, ngx_int_t rc,
    ngx_str_t *value);
static void ngx_http_sa_lock_timeout(ngx_event_t *ev);
static void ngx_http_sa_lock_free(ngx_http_sa_lock_t *lock);
static void ngx_http_sa_wait_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_sa_judge(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);
static ngx_int_t ngx_http_sa_unavailable(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);
static ngx_int_t ngx_http_sa_check_record(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, sa_token_record_t *rec);
static ngx_int_t ngx_http_sa_check_token(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, sa_token_record_t *rec);
static ngx_int_t ngx_http_sa_check_rules(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, sa_token_record_t *rec);
static ngx_int_t ngx_http_sa_fail(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, ngx_http_sa_status_e status);
static void ngx_http_sa_record_use(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);
static void ngx_http_sa_report_denied(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);


/* per worker */
static ngx_http_sa_cache_t      *ngx_http_sa_worker_cache;
static ngx_http_sa_used_slot_t  *ngx_http_sa_used_slots;
static ngx_http_sa_used_slot_t  *ngx_http_sa_denied_slots;
static ngx_rbtree_t              ngx_http_sa_locks;
static ngx_rbtree_node_t         ngx_http_sa_locks_sentinel;
static ngx_uint_t                ngx_http_sa_exiting;


ngx_int_t
ngx_http_sa_handler_init_process(ngx_cycle_t *cycle,
    ngx_http_sa_main_conf_t *smcf)
{
    ngx_http_sa_exiting = 0;
    ngx_http_sa_worker_cache = smcf->cache;

    ngx_rbtree_init(&ngx_http_sa_locks, &ngx_http_sa_locks_sentinel,
                    ngx_http_sa_id_insert);

    if (smcf->cache) {
        ngx_http_sa_cache_count_entries(smcf->cache);

    } else {
        ngx_http_sa_used_slots = ngx_pcalloc(cycle->pool,
                                    NGX_HTTP_SA_USED_SLOTS
                                    * sizeof(ngx_http_sa_used_slot_t));
        if (ngx_http_sa_used_slots == NULL) {
            return NGX_ERROR;
        }
    }

    ngx_http_sa_denied_slots = ngx_pcalloc(cycle->pool,
                                           NGX_HTTP_SA_DENIED_SLOTS
                                           * sizeof(ngx_http_sa_used_slot_t));
    if (ngx_http_sa_denied_slots == NULL) {
        return NGX_ERROR;
    }

    return ngx_http_sa_verified_init(cycle);
}


/* Redis' last answers, which come as the worker exits, wake nobody */
void
ngx_http_sa_handler_exit_process(void)
{
    ngx_http_sa_exiting = 1;
}


ngx_int_t
ngx_http_sa_handler(ngx_http_request_t *r)
{
    ngx_http_sa_ctx_t       *ctx;
    ngx_http_sa_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sa_module);

    if (slcf->realm.len == 0) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_sa_get_ctx(r);

    if (ctx == NULL) {
        ctx = ngx_http_sa_create_ctx(r);
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ngx_http_sa_start_main(r, ctx);

        if (ctx->rc == NGX_AGAIN) {
            ctx->main_waits = 1;
            return NGX_AGAIN;
        }

        return ngx_http_sa_respond(r, ctx, slcf);
    }

    ngx_http_set_ctx(r, ctx, ngx_http_sa_module);

    if (ctx->rc == NGX_AGAIN) {
        if (!ctx->answered) {
            /*
             * A client event while it waits, or (after an internal
             * redirect) the lookup a subrequest started: wake it too.
             */
            ctx->main_waits = 1;
            return NGX_AGAIN;
        }

        ngx_http_sa_judge_main(r, ctx);

    } else if (ctx->judged != slcf) {
        ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "sa: verified before an internal redirect: %V",
                       &ngx_http_sa_statuses[ctx->status].name);

        /* the same record, this location's rules */
        if (ctx->record) {
            ctx->rc = ngx_http_sa_check_rules(r, ctx, ctx->record);
        }

        ctx->judged = slcf;
    }

    return ngx_http_sa_respond(r, ctx, slcf);
}


/*
 * The access phase's last handler: ngx_http_sa_init() puts it first in the
 * phase's array, which the phase runs from the end.  Under "satisfy any" a
 * checker that grants access ends the phase, so when this one runs none
 * did; a verdict that Redis' failure left open (ngx_http_sa_respond()
 * declined) is answered 503 here.
 */
ngx_int_t
ngx_http_sa_access_last(ngx_http_request_t *r)
{
    ngx_http_sa_ctx_t         *ctx;
    ngx_http_sa_loc_conf_t    *slcf;
    ngx_http_core_loc_conf_t  *clcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sa_module);
    clcf = ngx_http_get_module_loc_conf(r, ngx_http_core_module);

    if (slcf->realm.len == 0 || clcf->satisfy != NGX_HTTP_SATISFY_ANY) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_sa_get_ctx(r);

    if (ctx == NULL || ctx->rc != NGX_HTTP_SERVICE_UNAVAILABLE
        || ctx->judged != slcf)
    {
        return NGX_DECLINED;
    }

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "sa: satisfy any, nothing granted, Redis unavailable");

    return ngx_http_sa_respond_unavailable(r, ctx);
}


/* the main request's credential: parsed, then the cache or a GET */
static void
ngx_http_sa_start_main(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx)
{
    ctx->rc = ngx_http_sa_start(r, ctx);
    ctx->judged = ngx_http_get_module_loc_conf(r, ngx_http_sa_module);

    if (ctx->rc != NGX_AGAIN) {
        ngx_http_sa_metrics_request(ctx->status);
    }
}


/*
 * The lookup was answered.  Whoever runs first (the posted wake, an event
 * of the client's connection in the same epoll batch, or a subrequest)
 * judges, by the main request's location; the wake must then not run the
 * main request's phases a second time.
 */
static void
ngx_http_sa_judge_main(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx)
{
    if (ctx->wake.posted && ngx_queue_empty(&ctx->subrequests)) {
        ngx_delete_posted_event(&ctx->wake);
    }

    ctx->main_waits = 0;
    ctx->rc = ngx_http_sa_judge(r, ctx);
    ctx->judged = ngx_http_get_module_loc_conf(r, ngx_http_sa_module);
    ngx_http_sa_metrics_request(ctx->status);
}


/*
 * Subrequests (SSI "include virtual", auth_request, mirror) never run the
 * access phase: ngx_http_core_access_phase() skips it for r != r->main.
 * This handler runs in the rewrite phase, which they do run, first in it
 * (before "return"), and judges a subrequest that reaches a location with
 * sa_auth by that location's sa_scope and sa_application, on the main
 * request's credential.  That credential is verified once per main request
 * (by its own access check, or here for the first subrequest that needs
 * it); a subrequest that comes while the lookup is on its way is parked
 * and posted when it is answered.  allow/deny and "satisfy" do not apply
 * to subrequests, as nginx skips them: the token decides alone.
 */
ngx_int_t
ngx_http_sa_subrequest_handler(ngx_http_request_t *r)
{
    ngx_int_t                rc;
    ngx_http_request_t      *mr;
    ngx_http_sa_ctx_t       *ctx, *mctx;
    ngx_http_sa_loc_conf_t  *slcf;

    if (r == r->main) {
        return NGX_DECLINED;
    }

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sa_module);

    if (slcf->realm.len == 0) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_sa_module);

    if (ctx == NULL) {
        ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_sa_ctx_t));
        if (ctx == NULL) {
            return NGX_ERROR;
        }

        ctx->request = r;
        ctx->rc = NGX_AGAIN;
        ngx_queue_init(&ctx->subrequests);
        ngx_http_set_ctx(r, ctx, ngx_http_sa_module);

    } else if (ctx->parked) {
        return NGX_DONE;            /* a client event while it waits */

    } else if (ctx->rc == NGX_OK && ctx->judged == slcf) {
        return NGX_DECLINED;        /* "rewrite ... last" to itself */
    }

    mr = r->main;
    mctx = ngx_http_sa_get_ctx(mr);

    if (mctx == NULL) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "sa: subrequest verifies the main request's token");

        mctx = ngx_http_sa_create_ctx(mr);
        if (mctx == NULL) {
            return NGX_ERROR;
        }

        ngx_http_sa_start_main(mr, mctx);

    } else if (mctx->rc == NGX_AGAIN && mctx->answered) {
        ngx_http_sa_judge_main(mr, mctx);
    }

    if (mctx->rc == NGX_AGAIN) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "sa: subrequest waits for the main request's token");

        ctx->parked = 1;
        ngx_queue_insert_tail(&mctx->subrequests, &ctx->queue);
        return NGX_DONE;
    }

    ctx->rc = ngx_http_sa_judge_subrequest(r, ctx, mctx);
    ctx->judged = slcf;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "sa: subrequest judged: %V",
                   &ngx_http_sa_statuses[ctx->status].name);

    rc = ngx_http_sa_respond(r, ctx, slcf);

    /* NGX_OK would end the rewrite phase's checker with a finalization */
    return rc == NGX_OK ? NGX_DECLINED : rc;
}


/* the main request's verdict on its credential, this location's rules */
static ngx_int_t
ngx_http_sa_judge_subrequest(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_ctx_t *mctx)
{
    ngx_int_t  rc;

    ngx_memcpy(ctx->id, mctx->id, SA_TOKEN_ID_LEN);
    ctx->has_id = mctx->has_id;
    ctx->bearer = mctx->bearer;
    ctx->record = mctx->record;

    if (mctx->record) {
        rc = ngx_http_sa_check_rules(r, ctx, mctx->record);

        if (rc != NGX_OK && rc != NGX_ERROR) {
            ngx_http_sa_report_denied(r, ctx);
        }

        return rc;
    }

    /* refused for the token itself, or no memory to judge it */
    if (mctx->rc == NGX_ERROR || mctx->status == NGX_HTTP_SA_OK) {
        return NGX_ERROR;
    }

    ctx->status = mctx->status;

    return ngx_http_sa_statuses[ctx->status].rc;
}


/* the verdict, in the module context or, after a redirect, in the pool */
ngx_http_sa_ctx_t *
ngx_http_sa_get_ctx(ngx_http_request_t *r)
{
    ngx_pool_cleanup_t  *cln;
    ngx_http_sa_ctx_t   *ctx;

    ctx = ngx_http_get_module_ctx(r, ngx_http_sa_module);

    if (ctx == NULL && (r->internal || r->filter_finalize)) {

        /* only looked up: which location judged it is the handler's affair */
        for (cln = r->pool->cleanup; cln; cln = cln->next) {
            if (cln->handler == ngx_http_sa_cleanup) {
                ctx = cln->data;
                break;
            }
        }
    }

    return ctx;
}


static ngx_http_sa_ctx_t *
ngx_http_sa_create_ctx(ngx_http_request_t *r)
{
    ngx_http_sa_ctx_t   *ctx;
    ngx_pool_cleanup_t  *cln;

    cln = ngx_pool_cleanup_add(r->pool, sizeof(ngx_http_sa_ctx_t));
    if (cln == NULL) {
        return NULL;
    }

    ctx = cln->data;
    ngx_memzero(ctx, sizeof(ngx_http_sa_ctx_t));

    ctx->request = r;
    ctx->rc = NGX_AGAIN;
    ngx_queue_init(&ctx->subrequests);
    ctx->wake.handler = ngx_http_sa_wait_handler;
    ctx->wake.data = r;
    ctx->wake.log = r->connection->log;

    cln->handler = ngx_http_sa_cleanup;

    ngx_http_set_ctx(r, ctx, ngx_http_sa_module);

    return ctx;
}


/* the request is gone: it leaves its lock, and nothing may wake it */
static void
ngx_http_sa_cleanup(void *data)
{
    ngx_http_sa_ctx_t  *ctx = data;

    if (ctx->lock) {
        ngx_queue_remove(&ctx->queue);
        ctx->lock = NULL;
    }

    if (ctx->wake.posted) {
        ngx_delete_posted_event(&ctx->wake);
    }
}


/* parses the header; the cache, or a GET: NGX_AGAIN while it is on its way */
static ngx_int_t
ngx_http_sa_start(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx)
{
    size_t                    len;
    ngx_int_t                 rc;
    sa_token_err_t            terr;
    sa_bearer_err_t           berr;
    const unsigned char      *token;
    ngx_table_elt_t          *auth;
    ngx_http_sa_main_conf_t  *smcf;

    auth = r->headers_in.authorization;

    berr = auth ? sa_bearer_parse(auth->value.data, auth->value.len, &token,
                                  &len)
                : SA_BEARER_NONE;

    if (berr == SA_BEARER_NONE) {
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sa: no bearer token was provided");
        ctx->status = NGX_HTTP_SA_MISSING;
        return ngx_http_sa_statuses[NGX_HTTP_SA_MISSING].rc;
    }

    ctx->bearer = 1;

    /* the shape finds the id; the rest of the parse is for what needs it */
    terr = (berr == SA_BEARER_OK) ? sa_token_shape(token, len)
                                  : SA_TOKEN_BAD_LENGTH;

    if (terr != SA_TOKEN_OK) {
        return ngx_http_sa_malformed(r, ctx, berr, terr);
    }

    ngx_memcpy(ctx->id, token + SA_TOKEN_ID_OFF, SA_TOKEN_ID_LEN);
    ctx->has_id = 1;
    ctx->token = token;

    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "sa: token \"%*s\"", (size_t) SA_TOKEN_ID_LEN, ctx->id);

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sa_module);

    if (smcf->cache) {
        rc = ngx_http_sa_cached(r, ctx, smcf->cache, token);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    /* nothing reaches Redis that is not a well-formed token */
    terr = sa_token_parse(token, len);
    if (terr != SA_TOKEN_OK) {
        return ngx_http_sa_malformed(r, ctx, berr, terr);
    }

    return ngx_http_sa_lookup(r, ctx, smcf);
}


static ngx_int_t
ngx_http_sa_malformed(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    sa_bearer_err_t berr, sa_token_err_t terr)
{
    /* a malformed token may be a mistyped secret: log no byte of it */
    ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                  "sa: malformed bearer token: %s",
                  berr == SA_BEARER_OK ? sa_token_strerror(terr)
                                       : "not one credential");
    ctx->status = NGX_HTTP_SA_MALFORMED;
    ctx->has_id = 0;

    return ngx_http_sa_statuses[NGX_HTTP_SA_MALFORMED].rc;
}


/*
 * A fresh cache entry answers without Redis, but only while this worker's
 * subscriber has proven, recently enough, that it hears every change.
 */
static ngx_int_t
ngx_http_sa_cached(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_cache_t *cache, const u_char *token)
{
    ngx_uint_t                  use_due;
    sa_token_record_t          *rec;
    ngx_http_sa_cache_proof_t   proof;

    if (!ngx_http_sa_redis_subscriber_fresh()) {
        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "sa: subscriber not proven alive, no cache hit");
        ngx_http_sa_metrics_count(NGX_HTTP_SA_M_CACHE_MISS);
        return NGX_DECLINED;
    }

    use_due = 0;

    switch (ngx_http_sa_cache_lookup(cache, ctx->id, 0, r->pool, &rec,
                                     &use_due, &proof))
    {

    case NGX_HTTP_SA_CACHE_HIT:
        /* the hash proves the exact token; any other must be well-formed */
        if (ngx_http_sa_cache_token(cache, token, ctx->id, rec, &proof)) {
            ctx->proven = rec;

        } else if (sa_token_parse(token, SA_TOKEN_LEN) != SA_TOKEN_OK) {
            return NGX_DECLINED;
        }

        ngx_http_sa_metrics_count(NGX_HTTP_SA_M_CACHE_HIT);

        ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                       "sa: cache hit");
        ctx->cached = 1;
        ctx->use_due = use_due;
        return ngx_http_sa_check_record(r, ctx, rec);

    case NGX_HTTP_SA_CACHE_NEGATIVE:
        if (sa_token_parse(token, SA_TOKEN_LEN) != SA_TOKEN_OK) {
            return NGX_DECLINED;
        }

        ngx_http_sa_metrics_count(NGX_HTTP_SA_M_CACHE_HIT);

        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_UNKNOWN);

    default:
        ngx_http_sa_metrics_count(NGX_HTTP_SA_M_CACHE_MISS);
        return NGX_DECLINED;
    }
}


/*
 * The one place that names a token's keys: <prefix>tok:<id>, and with used
 * set <prefix>tok:<id>:used.  key has NGX_HTTP_SA_KEY_MAX bytes: the prefix
 * is limited when the configuration is read.  Returns the end.
 */
static u_char *
ngx_http_sa_token_key(u_char *key, ngx_str_t *prefix, u_char *id,
    ngx_uint_t used)
{
    u_char  *p;

    p = ngx_cpymem(key, prefix->data, prefix->len);
    p = ngx_cpymem(p, SA_KEY_TOKEN, sizeof(SA_KEY_TOKEN) - 1);
    p = ngx_cpymem(p, id, SA_TOKEN_ID_LEN);

    if (used) {
        p = ngx_cpymem(p, SA_KEY_USED, sizeof(SA_KEY_USED) - 1);
    }

    return p;
}


/* locks */

static ngx_http_sa_lock_t *
ngx_http_sa_lock_find(u_char *id)
{
    return (ngx_http_sa_lock_t *) ngx_http_sa_id_find(&ngx_http_sa_locks, id);
}


/* no request joins it any more; its waiters still get its answer */
static void
ngx_http_sa_lock_detach(ngx_http_sa_lock_t *lock)
{
    if (lock->in_tree) {
        ngx_rbtree_delete(&ngx_http_sa_locks, &lock->node.node);
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
    argvlen[1] = ngx_http_sa_token_key(key, &smcf->prefix, ctx->id, 0) - key;

    if (ngx_http_sa_redis_command(2, argv, argvlen, ngx_http_sa_lock_reply,
                                  lock)
        != NGX_OK)
    {
        ngx_free(lock);
        return NULL;
    }

    ngx_http_sa_id_set(&lock->node, ctx->id);
    ngx_queue_init(&lock->waiters);

    lock->timer.handler = ngx_http_sa_lock_timeout;
    lock->timer.data = lock;
    lock->timer.log = ngx_cycle->log;
    ngx_add_timer(&lock->timer, smcf->timeout);

    ngx_rbtree_insert(&ngx_http_sa_locks, &lock->node.node);
    lock->in_tree = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "sa: GET sent, cache epoch %uA", lock->epoch);

    return lock;
}


/* waits on the GET on its way for this token, or sends one */
static ngx_int_t
ngx_http_sa_lookup(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_main_conf_t *smcf)
{
    ngx_http_sa_lock_t  *lock;

    lock = ngx_http_sa_lock_find(ctx->id);

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
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sa: Redis %V is unavailable", &smcf->redis->name);
        return ngx_http_sa_unavailable(r, ctx);
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
ngx_http_sa_wait_handler(ngx_event_t *ev)
{
    ngx_queue_t         *q;
    ngx_connection_t    *c;
    ngx_http_sa_ctx_t   *ctx, *sctx;
    ngx_http_request_t  *r;

    r = ev->data;
    c = r->connection;

    ngx_http_set_log_request(c->log, r);

    ngx_log_debug0(NGX_LOG_DEBUG_HTTP, c->log, 0, "sa: woken");

    ctx = ngx_http_sa_get_ctx(r);

    if (ctx == NULL) {
        return;
    }

    /* parked subrequests run again, the first of them judges */
    while (!ngx_queue_empty(&ctx->subrequests)) {
        q = ngx_queue_head(&ctx->subrequests);
        ngx_queue_remove(q);

        sctx = ngx_queue_data(q, ngx_http_sa_ctx_t, queue);
        sctx->parked = 0;

        if (ngx_http_post_request(sctx->request, NULL) != NGX_OK) {
            ngx_http_finalize_request(sctx->request, NGX_ERROR);
        }
    }

    /* unless judged already by a client event that ran the phases first */
    if (ctx->main_waits && ctx->rc == NGX_AGAIN) {
        ctx->main_waits = 0;

        /* the phases may finalize and free r: c outlives it */
        ngx_http_core_run_phases(r);
    }

    ngx_http_run_posted_requests(c);
}


static void
ngx_http_sa_lock_timeout(ngx_event_t *ev)
{
    ngx_http_sa_lock_t       *lock = ev->data;
    ngx_http_sa_answer_t      a;
    ngx_http_sa_main_conf_t  *smcf;

    smcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_sa_module);

    ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                  "sa: no reply from Redis within %M ms for token \"%*s\"",
                  smcf->timeout, (size_t) SA_TOKEN_ID_LEN, lock->node.id);

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

    smcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_sa_module);

    if (rc == NGX_DECLINED) {
        a->status = NGX_HTTP_SA_UNKNOWN;
        if (smcf->cache) {
            (void) ngx_http_sa_cache_store(smcf->cache, lock->node.id, NULL,
                                           lock->epoch, ngx_cycle->log);
        }
        return;
    }

    if (rc != NGX_OK) {
        a->err = SA_REC_MALFORMED;
        a->status = NGX_HTTP_SA_TAMPERED;
        return;
    }

    sa_envelope_digest((char *) value->data, value->len, digest);

    a->record = ngx_http_sa_verified_find(lock->node.id, digest);

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

        if (ngx_http_sa_verified_remember(lock->node.id, digest, a->record)
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

    if (lock->done || ngx_http_sa_exiting) {
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


/* the answer, judged for one waiting request */
static ngx_int_t
ngx_http_sa_judge(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx)
{
    ngx_http_sa_answer_t  *a = &ctx->answer;

    switch (a->status) {

    case NGX_HTTP_SA_OK:
        if (a->record == NULL) {
            return NGX_ERROR;       /* no memory for the copy */
        }
        return ngx_http_sa_check_record(r, ctx, a->record);

    case NGX_HTTP_SA_UNKNOWN:
        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_UNKNOWN);

    case NGX_HTTP_SA_UNAVAILABLE:
        return ngx_http_sa_unavailable(r, ctx);

    default:
        if (a->older) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "sa: record of token \"%*s\" refused: version "
                          "%uL is older than one already seen",
                          (size_t) SA_TOKEN_ID_LEN, ctx->id, a->version);
        } else {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "sa: record of token \"%*s\" refused: %s",
                          (size_t) SA_TOKEN_ID_LEN, ctx->id,
                          sa_rec_strerror(a->err));
        }
        ctx->status = NGX_HTTP_SA_TAMPERED;
        return ngx_http_sa_statuses[NGX_HTTP_SA_TAMPERED].rc;
    }
}


/* Redis cannot answer: a record within its stale time, or 503 */
static ngx_int_t
ngx_http_sa_unavailable(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx)
{
    ngx_uint_t                use_due = 0;
    sa_token_record_t        *rec;
    ngx_http_sa_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sa_module);

    if (smcf->cache && smcf->cache->stale
        && ngx_http_sa_cache_lookup(smcf->cache, ctx->id, 1, r->pool, &rec,
                                    &use_due, NULL)
           != NGX_HTTP_SA_CACHE_MISS)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "sa: Redis unavailable, serving the cached record of "
                      "token \"%*s\"", (size_t) SA_TOKEN_ID_LEN, ctx->id);
        return ngx_http_sa_check_record(r, ctx, rec);
    }

    ctx->status = NGX_HTTP_SA_UNAVAILABLE;
    return ngx_http_sa_statuses[NGX_HTTP_SA_UNAVAILABLE].rc;
}


static ngx_int_t
ngx_http_sa_fail(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_status_e status)
{
    ctx->status = status;

    ngx_log_error(ngx_http_sa_statuses[status].level, r->connection->log, 0,
                  "sa: token \"%*s\": %V", (size_t) SA_TOKEN_ID_LEN, ctx->id,
                  &ngx_http_sa_statuses[status].name);

    return ngx_http_sa_statuses[status].rc;
}


/*
 * The verdict on a record: its own, then this location's rules.  The
 * token's use is recorded, or, for a genuine token refused, the refusal
 * reported to the account's notifications.
 */
static ngx_int_t
ngx_http_sa_check_record(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    sa_token_record_t *rec)
{
    ngx_int_t  rc;

    rc = ngx_http_sa_check_token(r, ctx, rec);

    if (rc == NGX_OK) {
        ngx_http_sa_record_use(r, ctx);

    } else if (ctx->status == NGX_HTTP_SA_EXPIRED
               || ctx->status == NGX_HTTP_SA_REVOKED
               || ctx->status == NGX_HTTP_SA_INSUFFICIENT_SCOPE
               || ctx->status == NGX_HTTP_SA_FORBIDDEN_APPLICATION)
    {
        ngx_http_sa_report_denied(r, ctx);
    }

    return rc;
}


/* is the record this token's, and may it be used at all */
static ngx_int_t
ngx_http_sa_check_token(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    sa_token_record_t *rec)
{
    u_char  hash[SA_HASH_LEN];

    if (!ngx_http_sa_id_equal(rec->id, ctx->id)) {
        /* a genuine record copied under another token's key */
        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_TAMPERED);
    }

    /* unless a cache hit already proved it (ngx_http_sa_cache_token()) */
    if (ctx->proven != rec) {
        sa_token_hash(ctx->token, SA_TOKEN_LEN, hash);

        if (!sa_hash_equal(rec->hash, hash)) {
            return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_UNKNOWN);
        }
    }

    if (rec->revoked) {
        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_REVOKED);
    }

    if (rec->expires_at && rec->expires_at <= (int64_t) ngx_time()) {
        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_EXPIRED);
    }

    /* the token is genuine: kept for the rules of later locations too */
    ctx->record = rec;

    return ngx_http_sa_check_rules(r, ctx, rec);
}


/* this location's application and scopes */
static ngx_int_t
ngx_http_sa_check_rules(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    sa_token_record_t *rec)
{
    long                     missing;
    ngx_str_t                app;
    ngx_http_sa_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sa_module);

    ctx->missing = NULL;

    if (slcf->application) {
        if (ngx_http_complex_value(r, slcf->application, &app) != NGX_OK) {
            return NGX_ERROR;
        }

        /* an empty application is no application: even "*" does not hold it */
        if (app.len == 0
            || !sa_app_granted(rec->apps, rec->napps, (char *) app.data,
                               app.len))
        {
            return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_FORBIDDEN_APPLICATION);
        }
    }

    missing = slcf->scopes
              ? sa_scopes_check(rec->scopes, rec->nscopes, slcf->scopes->elts,
                                slcf->scopes->nelts)
              : sa_scopes_check(rec->scopes, rec->nscopes, NULL, 0);

    if (missing >= 0) {
        if (slcf->scopes && (ngx_uint_t) missing < slcf->scopes->nelts) {
            ctx->missing = (sa_scope_group_t *) slcf->scopes->elts + missing;
        }
        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_INSUFFICIENT_SCOPE);
    }

    ctx->status = NGX_HTTP_SA_OK;

    return NGX_OK;
}


/*
 * 1 when this token's turn has come in a per-worker table of n slots
 * (direct-mapped: a colliding token may take a slot over early), at most
 * once every "every" seconds.
 */
static ngx_uint_t
ngx_http_sa_slot_due(ngx_http_sa_used_slot_t *slots, ngx_uint_t n, u_char *id,
    time_t now, time_t every)
{
    ngx_http_sa_used_slot_t  *slot;

    if (slots == NULL) {
        return 0;
    }

    slot = &slots[ngx_http_sa_id_hash(id) % n];

    if (ngx_http_sa_id_equal(slot->id, id)
        && now - slot->written < every)
    {
        return 0;
    }

    ngx_memcpy(slot->id, id, SA_TOKEN_ID_LEN);
    slot->written = now;

    return 1;
}


static ngx_uint_t
ngx_http_sa_use_due(ngx_http_sa_ctx_t *ctx, time_t now)
{
    if (ctx->cached) {
        return ctx->use_due;        /* decided by the lookup, under its lock */
    }

    if (ngx_http_sa_worker_cache) {
        return ngx_http_sa_cache_used(ngx_http_sa_worker_cache, ctx->id, now);
    }

    return ngx_http_sa_slot_due(ngx_http_sa_used_slots, NGX_HTTP_SA_USED_SLOTS,
                                ctx->id, now, NGX_HTTP_SA_USED_EVERY);
}


/*
 * A genuine token refused (expired, revoked, insufficient_scope,
 * forbidden_application) in a location that names its application: one
 * token.denied entry for the notification worker, not awaited, at most once
 * a minute per token and worker.  A token Redis does not know never gets
 * here: random tokens cost Redis nothing new.
 */
static void
ngx_http_sa_report_denied(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx)
{
    u_char                    now_text[NGX_TIME_T_LEN];
    u_char                    key[NGX_HTTP_SA_PREFIX_MAX
                                  + sizeof(SA_KEY_EVENTS)];
    time_t                    now;
    ngx_str_t                 app, *status;
    const char               *argv[13];
    size_t                    argvlen[13];
    ngx_http_sa_loc_conf_t   *slcf;
    ngx_http_sa_main_conf_t  *smcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sa_module);

    if (slcf->application == NULL
        || ngx_http_complex_value(r, slcf->application, &app) != NGX_OK
        || app.len == 0)
    {
        return;                     /* no application: nobody to tell */
    }

    now = ngx_time();

    if (!ngx_http_sa_slot_due(ngx_http_sa_denied_slots,
                              NGX_HTTP_SA_DENIED_SLOTS, ctx->id, now,
                              NGX_HTTP_SA_DENIED_EVERY))
    {
        return;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sa_module);
    status = &ngx_http_sa_statuses[ctx->status].name;

#define NGX_HTTP_SA_ARG(i, s, n)                                              \
    argv[i] = (const char *) (s); argvlen[i] = (n)

    NGX_HTTP_SA_ARG(0, "XADD", 4);
    NGX_HTTP_SA_ARG(1, key, ngx_cpymem(ngx_cpymem(key, smcf->prefix.data,
                                                  smcf->prefix.len),
                                       SA_KEY_EVENTS,
                                       sizeof(SA_KEY_EVENTS) - 1) - key);
    NGX_HTTP_SA_ARG(2, "*", 1);
    NGX_HTTP_SA_ARG(3, "type", 4);
    NGX_HTTP_SA_ARG(4, "token.denied", sizeof("token.denied") - 1);
    NGX_HTTP_SA_ARG(5, "token", 5);
    NGX_HTTP_SA_ARG(6, ctx->id, SA_TOKEN_ID_LEN);
    NGX_HTTP_SA_ARG(7, "app", 3);
    NGX_HTTP_SA_ARG(8, app.data, app.len);
    NGX_HTTP_SA_ARG(9, "status", 6);
    NGX_HTTP_SA_ARG(10, status->data, status->len);
    NGX_HTTP_SA_ARG(11, "time", 4);
    NGX_HTTP_SA_ARG(12, now_text,
                    ngx_sprintf(now_text, "%T", now) - now_text);

#undef NGX_HTTP_SA_ARG

    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "sa: token.denied reported for application \"%V\"", &app);

    (void) ngx_http_sa_redis_command(13, argv, argvlen, NULL, NULL);
}


/* "SET <prefix>tok:<id>:used <now>", at most once a minute, not awaited */
static void
ngx_http_sa_record_use(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx)
{
    u_char                    key[NGX_HTTP_SA_KEY_MAX];
    u_char                    now_text[NGX_TIME_T_LEN];
    time_t                    now;
    const char               *argv[3];
    size_t                    argvlen[3];
    ngx_http_sa_main_conf_t  *smcf;

    now = ngx_time();

    if (!ngx_http_sa_use_due(ctx, now)) {
        return;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sa_module);

    argv[0] = "SET";
    argvlen[0] = 3;
    argv[1] = (const char *) key;
    argvlen[1] = ngx_http_sa_token_key(key, &smcf->prefix, ctx->id, 1) - key;
    argv[2] = (const char *) now_text;
    argvlen[2] = ngx_sprintf(now_text, "%T", now) - now_text;

    (void) ngx_http_sa_redis_command(3, argv, argvlen, NULL, NULL);
}
