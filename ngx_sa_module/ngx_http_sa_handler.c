/*
 * The HTTP side: the phase handlers, the request's context and its verdict.
 * The access handler parses "Authorization: Bearer <token>", refuses a
 * malformed token without touching Redis, answers from the cache when it
 * can, and otherwise waits on the token's lookup (ngx_http_sa_lookup.c);
 * a posted event wakes it, the handler runs again and judges (hash,
 * expiry, application, scopes), as in ngx_http_auth_request_module.  What
 * a verdict sets off in Redis (last use, token.denied) is in
 * ngx_http_sa_effects.c; what the client and the upstream see in
 * ngx_http_sa_response.c.
 *
 * The verdict lives in a pool cleanup, so an internal redirect keeps it:
 * the new location's rules are checked against the same record, without a
 * second lookup.  Subrequests, which skip the access phase, are judged in
 * the rewrite phase on the main request's credential.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sa_module.h"
#include "ngx_http_sa_lookup.h"
#include "ngx_http_sa_effects.h"
#include "ngx_http_sa_verified.h"
#include "ngx_http_sa_metrics.h"
#include "ngx_http_sa_ratelimit.h"


static void ngx_http_sa_start_main(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);
static void ngx_http_sa_judge_main(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);
static ngx_int_t ngx_http_sa_judge_subrequest(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, ngx_http_sa_ctx_t *mctx);
static ngx_http_sa_ctx_t *ngx_http_sa_create_ctx(ngx_http_request_t *r);
static void ngx_http_sa_count_usage(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);
static void ngx_http_sa_cleanup(void *data);
static ngx_int_t ngx_http_sa_start(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);
static ngx_int_t ngx_http_sa_malformed(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, sa_bearer_err_t berr, sa_token_err_t terr);
static ngx_int_t ngx_http_sa_cached(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, ngx_http_sa_main_conf_t *smcf,
    const u_char *token);
static void ngx_http_sa_wait_handler(ngx_event_t *ev);
static ngx_int_t ngx_http_sa_judge(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);
static ngx_int_t ngx_http_sa_unavailable(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);
static ngx_int_t ngx_http_sa_check_record(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, sa_token_record_t *rec);
static ngx_int_t ngx_http_sa_check_rate(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, sa_token_record_t *rec);
static ngx_int_t ngx_http_sa_check_token(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, sa_token_record_t *rec);
static ngx_int_t ngx_http_sa_check_rules(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, sa_token_record_t *rec);
static ngx_int_t ngx_http_sa_fail(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, ngx_http_sa_status_e status);
static ngx_int_t ngx_http_sa_check_fresh(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, sa_token_record_t *rec,
    ngx_http_sa_loc_conf_t *slcf);


ngx_int_t
ngx_http_sa_handler_init_process(ngx_cycle_t *cycle,
    ngx_http_sa_main_conf_t *smcf)
{
    smcf->worker->lookup = ngx_http_sa_lookup_init_process(cycle, smcf);
    if (smcf->worker->lookup == NULL) {
        return NGX_ERROR;
    }

    smcf->worker->effects = ngx_http_sa_effects_init_process(cycle, smcf);
    if (smcf->worker->effects == NULL) {
        return NGX_ERROR;
    }

    return NGX_OK;
}


void
ngx_http_sa_handler_exit_process(ngx_http_sa_main_conf_t *smcf)
{
    ngx_http_sa_lookup_exit_process(smcf->worker->lookup);
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

        /* the same record, this location's rules; a refused rate stays */
        if (ctx->record) {
            ctx->rc = ngx_http_sa_check_rules(r, ctx, ctx->record);

            if (ctx->rc == NGX_OK) {
                ctx->rc = ngx_http_sa_check_rate(r, ctx, ctx->record);
            }
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
        ngx_http_sa_count_usage(r, ctx);
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
    ngx_http_sa_count_usage(r, ctx);
}


/*
 * The token's use today, by verdict, for "sa-admin token usage" (with
 * sa_rate_limit): only a genuine token's (its hash matched), so that random
 * tokens cost Redis nothing.
 */
static void
ngx_http_sa_count_usage(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx)
{
    ngx_http_sa_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sa_module);

    if (smcf->worker == NULL || smcf->worker->sync == NULL || !ctx->genuine) {
        return;
    }

    switch (ctx->status) {

    case NGX_HTTP_SA_OK:
    case NGX_HTTP_SA_EXPIRED:
    case NGX_HTTP_SA_REVOKED:
    case NGX_HTTP_SA_LAPSED:
    case NGX_HTTP_SA_INSUFFICIENT_SCOPE:
    case NGX_HTTP_SA_FORBIDDEN_APPLICATION:
    case NGX_HTTP_SA_FORBIDDEN_SOURCE:
    case NGX_HTTP_SA_RATE_LIMITED:
    case NGX_HTTP_SA_QUOTA_EXCEEDED:
        ngx_http_sa_sync_usage(smcf->worker->sync, ctx->id, ctx->status);
        return;

    default:
        return;
    }
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

        if (rc == NGX_OK) {
            /*
             * The rate is the main request's, counted once (here, if its
             * own location did not): refused there, refused here too.
             */
            rc = ngx_http_sa_check_rate(r->main, mctx, mctx->record);

            if (rc != NGX_OK && rc != NGX_ERROR) {
                ctx->status = mctx->status;
                ctx->rl_retry = mctx->rl_retry;
            }

            return rc;
        }

        if (rc != NGX_ERROR
            && ctx->status != NGX_HTTP_SA_LAPSED)
        {
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

    ngx_http_sa_lookup_leave(ctx);

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
        rc = ngx_http_sa_cached(r, ctx, smcf, token);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    /* nothing reaches Redis that is not a well-formed token */
    terr = sa_token_parse(token, len);
    if (terr != SA_TOKEN_OK) {
        return ngx_http_sa_malformed(r, ctx, berr, terr);
    }

    rc = ngx_http_sa_lookup(r, ctx, smcf);

    return (rc == NGX_ERROR) ? ngx_http_sa_unavailable(r, ctx) : rc;
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
    ngx_http_sa_main_conf_t *smcf, const u_char *token)
{
    ngx_http_sa_cache_t        *cache = smcf->cache;

    ngx_uint_t                  use_due;
    sa_token_record_t          *rec;
    ngx_http_sa_loc_conf_t     *slcf;
    ngx_http_sa_cache_proof_t   proof;

    if (!ngx_http_sa_redis_subscriber_fresh(smcf->worker->redis)) {
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
        /*
         * No entry outlives its record's fresh_until: past it, Redis may
         * hold the record renewed, so it is asked again.
         */
        slcf = ngx_http_get_module_loc_conf(r, ngx_http_sa_module);

        if (slcf->record_max_age
            && ngx_http_sa_record_fresh(rec, slcf->record_max_age,
                                        ngx_time())
               != NGX_HTTP_SA_FRESH)
        {
            ngx_log_debug0(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                           "sa: cached record not fresh, asking Redis");
            ngx_http_sa_metrics_count(NGX_HTTP_SA_M_CACHE_MISS);
            return NGX_DECLINED;
        }

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
        rc = ngx_http_sa_check_rate(r, ctx, rec);
    }

    if (rc == NGX_OK) {
        ngx_http_sa_record_use(r, ctx);

    } else if (ctx->status == NGX_HTTP_SA_EXPIRED
               || ctx->status == NGX_HTTP_SA_REVOKED
               || ctx->status == NGX_HTTP_SA_INSUFFICIENT_SCOPE
               || ctx->status == NGX_HTTP_SA_FORBIDDEN_APPLICATION
               || ctx->status == NGX_HTTP_SA_FORBIDDEN_SOURCE)
    {
        ngx_http_sa_report_denied(r, ctx);
    }

    return rc;
}


/* n in decimal at p: the end (ngx_sprintf's parsing costs more, per request) */
static u_char *
ngx_http_sa_rate_uint(u_char *p, uint64_t n)
{
    u_char   tmp[NGX_INT64_LEN], *t;

    t = tmp + sizeof(tmp);

    do {
        *--t = (u_char) ('0' + n % 10);
        n /= 10;
    } while (n);

    return ngx_cpymem(p, t, tmp + sizeof(tmp) - t);
}


/*
 * "RateLimit-Policy: "sa";q=A;w=B" or "RateLimit: "sa";r=A;t=B"
 * (draft-ietf-httpapi-ratelimit-headers), written in the request's pool
 */
static ngx_int_t
ngx_http_sa_rate_header(ngx_http_request_t *r, ngx_str_t *key,
    const char *q, uint64_t a, const char *w, uint64_t b)
{
    u_char           *p;
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    p = ngx_pnalloc(r->pool, sizeof("\"sa\";q=;w=") - 1
                             + 2 * (NGX_INT64_LEN - 1));
    if (p == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    h->key = *key;
    h->value.data = p;
    p = ngx_cpymem(p, "\"sa\";", 5);
    p = ngx_cpymem(p, q, 2);
    p = ngx_http_sa_rate_uint(p, a);
    p = ngx_cpymem(p, w, 3);
    p = ngx_http_sa_rate_uint(p, b);
    h->value.len = p - h->value.data;

    return NGX_OK;
}


/* mode=cluster: the request in the token's counter of minute win */
static void
ngx_http_sa_rate_count(ngx_http_sa_sync_t *sync, const u_char *id,
    time_t win, ngx_uint_t admitted)
{
    ngx_str_t  period;

    /* the minute's name, made once a minute (and minute before) a worker */
    static time_t     named[2] = { -1, -1 };
    static size_t     len[2];
    static u_char     buf[2][NGX_HTTP_SA_SYNC_PERIOD_LEN];
    ngx_uint_t        i;

    i = (ngx_uint_t) win & 1;

    if (named[i] != win) {
        len[i] = ngx_sprintf(buf[i], "w%T", win) - buf[i];
        named[i] = win;
    }

    period.data = buf[i];
    period.len = len[i];

    /* kept two minutes: the minute, and the next one reads its end */
    (void) ngx_http_sa_sync_add(sync, id, NGX_HTTP_SA_SYNC_RATE, &period, 120,
                                admitted ? 1 : 0, 0, NULL);
}


/*
 * sa_rate_limit: the token's signed rate and quota, counted once per main
 * request (r, ctx: the main request's), not again for its subrequests or
 * after an internal redirect, which it refuses as well once it is refused
 */
static ngx_int_t
ngx_http_sa_check_rate(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    sa_token_record_t *rec)
{
    ngx_int_t                 rc;
    ngx_str_t                 app, *appp;
    ngx_http_sa_rl_result_t   res;
    ngx_http_sa_loc_conf_t   *slcf;
    ngx_http_sa_main_conf_t  *smcf;
    ngx_http_sa_sync_t       *sync;

    static ngx_str_t  policy_key = ngx_string("RateLimit-Policy");
    static ngx_str_t  limit_key = ngx_string("RateLimit");

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sa_module);

    if (smcf->rl.zone == NULL
        || (rec->policy.rate == 0 && rec->policy.quota_period == 0)
        || r != r->main)
    {
        return NGX_OK;
    }

    if (ctx->rated) {
        if (ctx->rl_status == NGX_HTTP_SA_OK) {
            return NGX_OK;
        }

        /* refused once: in every location it reaches after that */
        ctx->status = ctx->rl_status;
        return ngx_http_sa_statuses[ctx->rl_status].rc;
    }

    ctx->rated = 1;
    sync = smcf->worker->sync;

    res.quota_unknown = 0;

    rc = ngx_http_sa_rate_limit_check(smcf->rl.zone, ctx->id, &rec->policy,
                                      ngx_http_sa_sync_up(sync),
                                      smcf->rl.allow, &res);

    if (res.rwin && (rc == NGX_OK || rc == NGX_BUSY)) {
        /* mode=cluster: admitted counts, refused only reads the others' */
        ngx_http_sa_rate_count(sync, ctx->id, res.rwin, rc == NGX_OK);
        if (res.rprev) {
            ngx_http_sa_rate_count(sync, ctx->id, res.rwin - 1, 0);
        }
    }

    switch (rc) {

    case NGX_BUSY:
        ctx->rl_retry = res.retry_after;
        ctx->rl_status = NGX_HTTP_SA_RATE_LIMITED;
        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_RATE_LIMITED);

    case NGX_DECLINED:
        ctx->rl_retry = res.retry_after;
        ctx->rl_status = NGX_HTTP_SA_QUOTA_EXCEEDED;
        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_QUOTA_EXCEEDED);

    case NGX_AGAIN:
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "sa: token \"%*s\": the other gateways' count of its "
                      "%s is unknown and Redis unavailable "
                      "(on_unavailable=deny)",
                      (size_t) SA_TOKEN_ID_LEN, ctx->id,
                      res.rwin ? "rate" : "quota");
        ctx->rl_status = NGX_HTTP_SA_UNAVAILABLE;
        ctx->status = NGX_HTTP_SA_UNAVAILABLE;
        return ngx_http_sa_statuses[NGX_HTTP_SA_UNAVAILABLE].rc;
    }

    ctx->rl_status = NGX_HTTP_SA_OK;
    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sa_module);

    if (rec->policy.quota_period) {
        /* the application, for the quota's notifications */
        appp = NULL;
        if (slcf->application
            && ngx_http_complex_value(r, slcf->application, &app) == NGX_OK)
        {
            appp = &app;
        }

        (void) ngx_http_sa_sync_add(sync, ctx->id, NGX_HTTP_SA_SYNC_QUOTA,
                                    &res.period, res.period_left + 86400, 1,
                                    rec->policy.quota, appp);

        /* the others' count unknown (a start, a new node): read it now */
        if (res.quota_unknown) {
            ngx_http_sa_sync_soon(sync);
        }
    }

    if (rec->policy.rate
        && slcf->rate_limit_headers
        && (ngx_http_sa_rate_header(r, &policy_key, "q=", rec->policy.rate,
                                    ";w=", rec->policy.per)
            != NGX_OK
            || ngx_http_sa_rate_header(r, &limit_key, "r=", res.remaining,
                                       ";t=", (uint64_t) res.reset)
            != NGX_OK))
    {
        return NGX_ERROR;
    }

    return NGX_OK;
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

    ctx->genuine = 1;               /* its use is counted (usage) */

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


/*
 * The token's allow_from (issue 25): the client's address as
 * $remote_addr has it, so after set_real_ip_from (the realip module runs
 * in the post-read and preaccess phases, before this one).  A connection
 * without an IP address (a unix socket) is from no network.
 */
static ngx_uint_t
ngx_http_sa_source_allowed(ngx_http_request_t *r, sa_token_record_t *rec)
{
    struct sockaddr      *sa;
    struct sockaddr_in   *sin;
#if (NGX_HAVE_INET6)
    struct sockaddr_in6  *sin6;
#endif

    if (rec->policy.nnets == 0) {
        return 1;
    }

    sa = r->connection->sockaddr;

    switch (sa->sa_family) {

    case AF_INET:
        sin = (struct sockaddr_in *) sa;
        return sa_policy_allows(&rec->policy, 4,
                                (const uint8_t *) &sin->sin_addr);

#if (NGX_HAVE_INET6)
    case AF_INET6:
        sin6 = (struct sockaddr_in6 *) sa;
        return sa_policy_allows(&rec->policy, 6,
                                (const uint8_t *) &sin6->sin6_addr);
#endif
    }

    return 0;
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

    if (slcf->record_max_age
        && ngx_http_sa_check_fresh(r, ctx, rec, slcf) != NGX_OK)
    {
        return ngx_http_sa_statuses[NGX_HTTP_SA_LAPSED].rc;
    }

    if (!ngx_http_sa_source_allowed(r, rec)) {
        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_FORBIDDEN_SOURCE);
    }

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
 * sa_record_max_age: is the record current?  It must carry a fresh_until,
 * not passed, and not more than max_age ahead (so a signature made with a
 * long period, or leaked, is bounded by the gateway's own setting).
 */
ngx_http_sa_fresh_e
ngx_http_sa_record_fresh(const sa_token_record_t *rec, time_t max_age,
    time_t now)
{
    if (rec->fresh_until == 0) {
        return NGX_HTTP_SA_FRESH_NONE;
    }

    if (rec->fresh_until <= (int64_t) now) {
        return NGX_HTTP_SA_FRESH_PAST;
    }

    if (rec->fresh_until - (int64_t) now > (int64_t) max_age) {
        return NGX_HTTP_SA_FRESH_AHEAD;
    }

    return NGX_HTTP_SA_FRESH;
}


static ngx_int_t
ngx_http_sa_check_fresh(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    sa_token_record_t *rec, ngx_http_sa_loc_conf_t *slcf)
{
    time_t      now;
    ngx_uint_t  level;

    now = ngx_time();
    level = ngx_http_sa_statuses[NGX_HTTP_SA_LAPSED].level;

    switch (ngx_http_sa_record_fresh(rec, slcf->record_max_age, now)) {

    case NGX_HTTP_SA_FRESH:
        return NGX_OK;

    case NGX_HTTP_SA_FRESH_NONE:
        ngx_log_error(level, r->connection->log, 0,
                      "sa: record of token \"%*s\" refused: it has no "
                      "fresh_until (sa_record_max_age is set)",
                      (size_t) SA_TOKEN_ID_LEN, ctx->id);
        break;

    case NGX_HTTP_SA_FRESH_PAST:
        ngx_log_error(level, r->connection->log, 0,
                      "sa: record of token \"%*s\" refused: fresh until "
                      "%L, %L s ago (not renewed by sa-admin, or replayed)",
                      (size_t) SA_TOKEN_ID_LEN, ctx->id, rec->fresh_until,
                      (int64_t) now - rec->fresh_until);
        break;

    default: /* NGX_HTTP_SA_FRESH_AHEAD */
        ngx_log_error(level, r->connection->log, 0,
                      "sa: record of token \"%*s\" refused: fresh until "
                      "%L, %L s ahead, more than sa_record_max_age %T s",
                      (size_t) SA_TOKEN_ID_LEN, ctx->id, rec->fresh_until,
                      rec->fresh_until - (int64_t) now,
                      slcf->record_max_age);
        break;
    }

    ctx->status = NGX_HTTP_SA_LAPSED;

    return NGX_DECLINED;
}
