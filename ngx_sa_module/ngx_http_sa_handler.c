/*
 * The access handler.  It parses "Authorization: Bearer <token>", refuses a
 * malformed token without touching Redis, answers from the cache when it
 * can, and otherwise boards the flight of the one GET on its way for that
 * token (sending it if there is none), parking the request.  The reply
 * resumes every waiting request: signature, hash, expiry, application and
 * scopes are checked, and the handler runs again to return the outcome, as
 * in ngx_http_auth_request_module.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sa_module.h"


static ngx_int_t ngx_http_sa_start(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, ngx_http_sa_loc_conf_t *slcf);
static ngx_int_t ngx_http_sa_board(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, ngx_http_sa_main_conf_t *smcf);
static void ngx_http_sa_landed(void *data, redisReply *reply);
static void ngx_http_sa_flight_timeout(ngx_event_t *ev);
static void ngx_http_sa_flight_forget(ngx_http_sa_flight_t *f);
static ngx_int_t ngx_http_sa_judge(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, ngx_http_sa_landing_t *l);
static ngx_int_t ngx_http_sa_cached(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, ngx_http_sa_cache_t *cache);
static ngx_int_t ngx_http_sa_unavailable(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);
static ngx_int_t ngx_http_sa_check_record(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, sa_token_record_t *rec);
static ngx_int_t ngx_http_sa_fail(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, ngx_http_sa_status_e status, ngx_uint_t level,
    ngx_int_t rc);
static void ngx_http_sa_record_use(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);


ngx_int_t
ngx_http_sa_handler(ngx_http_request_t *r)
{
    ngx_http_sa_ctx_t       *ctx;
    ngx_http_sa_loc_conf_t  *slcf;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sa_module);

    if (slcf->realm.len == 0) {
        return NGX_DECLINED;
    }

    ctx = ngx_http_get_module_ctx(r, ngx_http_sa_module);

    if (ctx != NULL) {
        /* resumed by the reply (or woken early by someone else) */
        return ctx->rc == NGX_AGAIN ? NGX_AGAIN : ngx_http_sa_respond(r, ctx,
                                                                      slcf);
    }

    ctx = ngx_pcalloc(r->pool, sizeof(ngx_http_sa_ctx_t));
    if (ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_http_set_ctx(r, ctx, ngx_http_sa_module);

    ctx->rc = ngx_http_sa_start(r, ctx, slcf);

    return ctx->rc == NGX_AGAIN ? NGX_AGAIN : ngx_http_sa_respond(r, ctx,
                                                                  slcf);
}


/* parses the header and sends the GET; NGX_AGAIN when it is on its way */
static ngx_int_t
ngx_http_sa_start(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_loc_conf_t *slcf)
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
        return NGX_HTTP_UNAUTHORIZED;
    }

    terr = (berr == SA_BEARER_OK) ? sa_token_parse(token, len)
                                  : SA_TOKEN_BAD_LENGTH;

    if (terr != SA_TOKEN_OK) {
        /* a malformed token may be a mistyped secret: log no byte of it */
        ngx_log_error(NGX_LOG_INFO, r->connection->log, 0,
                      "sa: malformed bearer token: %s",
                      berr == SA_BEARER_OK ? sa_token_strerror(terr)
                                           : "not one credential");
        ctx->status = NGX_HTTP_SA_MALFORMED;
        return NGX_HTTP_UNAUTHORIZED;
    }

    ngx_memcpy(ctx->id, token + SA_TOKEN_ID_OFF, SA_TOKEN_ID_LEN);
    ctx->has_id = 1;
    sa_token_hash(token, SA_TOKEN_LEN, ctx->hash);

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sa_module);

    if (smcf->cache) {
        rc = ngx_http_sa_cached(r, ctx, smcf->cache);
        if (rc != NGX_DECLINED) {
            return rc;
        }
    }

    return ngx_http_sa_board(r, ctx, smcf);
}


static ngx_http_sa_flight_t *
ngx_http_sa_flight_find(u_char *id)
{
    uint32_t               hash;
    ngx_int_t              rc;
    ngx_rbtree_node_t     *node, *sentinel;
    ngx_http_sa_flight_t  *f;

    hash = ngx_crc32_short(id, SA_TOKEN_ID_LEN);
    node = ngx_http_sa_flights.root;
    sentinel = ngx_http_sa_flights.sentinel;

    while (node != sentinel) {
        if (hash != node->key) {
            node = (hash < node->key) ? node->left : node->right;
            continue;
        }

        f = (ngx_http_sa_flight_t *) node;
        rc = ngx_memcmp(id, f->id, SA_TOKEN_ID_LEN);
        if (rc == 0) {
            return f;
        }

        node = (rc < 0) ? node->left : node->right;
    }

    return NULL;
}


static ngx_http_sa_flight_t *
ngx_http_sa_flight_start(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_main_conf_t *smcf)
{
    u_char                *p;
    u_char                 key[256];
    ngx_str_t              k;
    ngx_int_t              rc;
    ngx_http_sa_flight_t  *f;

    if (smcf->prefix.len + sizeof("tok:") - 1 + SA_TOKEN_ID_LEN > sizeof(key)) {
        return NULL;
    }

    f = ngx_calloc(sizeof(ngx_http_sa_flight_t), r->connection->log);
    if (f == NULL) {
        return NULL;
    }

    p = ngx_cpymem(key, smcf->prefix.data, smcf->prefix.len);
    p = ngx_cpymem(p, "tok:", sizeof("tok:") - 1);
    p = ngx_cpymem(p, ctx->id, SA_TOKEN_ID_LEN);

    k.data = key;
    k.len = p - key;

    rc = ngx_http_sa_redis_get(&k, ngx_http_sa_landed, f, r->connection->log);

    if (rc != NGX_OK) {
        ngx_free(f);
        return NULL;
    }

    ngx_memcpy(f->id, ctx->id, SA_TOKEN_ID_LEN);
    f->node.key = ngx_crc32_short(ctx->id, SA_TOKEN_ID_LEN);
    f->generation = ngx_http_sa_generation;
    ngx_queue_init(&f->waiters);

    f->timer.handler = ngx_http_sa_flight_timeout;
    f->timer.data = f;
    f->timer.log = ngx_cycle->log;
    ngx_add_timer(&f->timer, ngx_http_sa_redis_timeout());

    ngx_rbtree_insert(&ngx_http_sa_flights, &f->node);

    return f;
}


/* the request goes away while it waits: it leaves the flight */
static void
ngx_http_sa_leave(void *data)
{
    ngx_http_sa_ctx_t  *ctx = data;

    if (ctx->flight) {
        ngx_queue_remove(&ctx->link);
        ctx->flight = NULL;
    }
}


/* joins the GET on its way for this token, or sends one */
static ngx_int_t
ngx_http_sa_board(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_main_conf_t *smcf)
{
    ngx_pool_cleanup_t    *cln;
    ngx_http_sa_flight_t  *f;

    cln = ngx_pool_cleanup_add(r->pool, 0);
    if (cln == NULL) {
        return NGX_ERROR;
    }

    f = ngx_http_sa_flight_find(ctx->id);

    if (f == NULL) {
        f = ngx_http_sa_flight_start(r, ctx, smcf);
    }

    if (f == NULL) {
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "sa: Redis %V is unavailable", &smcf->redis->address);
        return ngx_http_sa_unavailable(r, ctx);
    }

    ctx->request = r;
    ctx->flight = f;
    ngx_queue_insert_tail(&f->waiters, &ctx->link);

    cln->handler = ngx_http_sa_leave;
    cln->data = ctx;

    return NGX_AGAIN;
}


static void
ngx_http_sa_flight_land(ngx_http_sa_flight_t *f)
{
    f->landed = 1;
    ngx_rbtree_delete(&ngx_http_sa_flights, &f->node);

    if (f->timer.timer_set) {
        ngx_del_timer(&f->timer);
    }
}


/* resumes every waiting request with the landing's outcome */
static void
ngx_http_sa_flight_wake(ngx_http_sa_flight_t *f, ngx_http_sa_landing_t *l)
{
    ngx_queue_t         *q;
    ngx_connection_t    *c;
    ngx_http_sa_ctx_t   *ctx;
    ngx_http_request_t  *r;

    while (!ngx_queue_empty(&f->waiters)) {
        q = ngx_queue_head(&f->waiters);
        ngx_queue_remove(q);

        ctx = ngx_queue_data(q, ngx_http_sa_ctx_t, link);
        ctx->flight = NULL;
        r = ctx->request;
        c = r->connection;

        ctx->rc = ngx_http_sa_judge(r, ctx, l);

        /* the phases may finalize and free r: c outlives it */
        ngx_http_core_run_phases(r);
        ngx_http_run_posted_requests(c);
    }
}


static void
ngx_http_sa_flight_timeout(ngx_event_t *ev)
{
    ngx_http_sa_flight_t   *f = ev->data;
    ngx_http_sa_landing_t   l;

    ngx_memzero(&l, sizeof(ngx_http_sa_landing_t));
    l.unavailable = 1;

    ngx_http_sa_flight_land(f);
    ngx_http_sa_flight_wake(f, &l);

    /* last: dropping a dead connection calls ngx_http_sa_landed(f) */
    ngx_http_sa_redis_timed_out();
}


static void *
ngx_http_sa_heap_alloc(void *ctx, size_t size)
{
    return ngx_alloc(size, ngx_cycle->log);
}


/* the reply, read once: decoded, verified, and stored in the cache */
static void
ngx_http_sa_read_reply(ngx_http_sa_flight_t *f, redisReply *reply,
    ngx_http_sa_landing_t *l)
{
    ngx_uint_t                keep;
    ngx_http_sa_main_conf_t  *smcf;

    ngx_memzero(l, sizeof(ngx_http_sa_landing_t));

    if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
        if (reply) {
            ngx_log_error(NGX_LOG_ERR, ngx_cycle->log, 0,
                          "sa: Redis error: %s", reply->str);
        }
        l->unavailable = 1;
        return;
    }

    smcf = ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_sa_module);

    /* a change published since the GET was sent may predate its reply */
    keep = f->generation == ngx_http_sa_generation && ngx_http_sa_subscribed;

    if (reply->type == REDIS_REPLY_NIL) {
        l->status = NGX_HTTP_SA_UNKNOWN;
        if (smcf->cache) {
            (void) ngx_http_sa_cache_store(smcf->cache, f->id, NULL, keep,
                                           ngx_cycle->log);
        }
        return;
    }

    l->err = (reply->type == REDIS_REPLY_STRING)
             ? sa_token_record_decode(reply->str, reply->len,
                                      smcf->verify_key,
                                      ngx_http_sa_heap_alloc, NULL, &l->rec)
             : SA_REC_MALFORMED;

    if (l->err != SA_REC_OK) {
        l->status = NGX_HTTP_SA_TAMPERED;
        return;
    }

    if (smcf->cache
        && ngx_memcmp(l->rec->id, f->id, SA_TOKEN_ID_LEN) == 0
        && ngx_http_sa_cache_store(smcf->cache, f->id, l->rec, keep,
                                   ngx_cycle->log)
           == NGX_DECLINED)
    {
        l->status = NGX_HTTP_SA_TAMPERED;
        l->older = 1;
        return;
    }

    l->status = NGX_HTTP_SA_OK;
}


static void
ngx_http_sa_landed(void *data, redisReply *reply)
{
    ngx_http_sa_flight_t   *f = data;
    ngx_http_sa_landing_t   l;

    if (f->landed || ngx_http_sa_exiting) {
        /* timed out earlier, or the worker is going away */
        ngx_http_sa_flight_forget(f);
        return;
    }

    ngx_http_sa_flight_land(f);
    ngx_http_sa_read_reply(f, reply, &l);
    ngx_http_sa_flight_wake(f, &l);

    if (l.rec) {
        ngx_free(l.rec);
    }

    ngx_free(f);
}


/* no request may point at a flight that is freed */
static void
ngx_http_sa_flight_forget(ngx_http_sa_flight_t *f)
{
    ngx_queue_t        *q;
    ngx_http_sa_ctx_t  *ctx;

    if (!f->landed) {
        ngx_http_sa_flight_land(f);
    }

    while (!ngx_queue_empty(&f->waiters)) {
        q = ngx_queue_head(&f->waiters);
        ngx_queue_remove(q);
        ctx = ngx_queue_data(q, ngx_http_sa_ctx_t, link);
        ctx->flight = NULL;
    }

    ngx_free(f);
}


/* one waiting request's outcome */
static ngx_int_t
ngx_http_sa_judge(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_landing_t *l)
{
    void  *copy;

    if (l->unavailable) {
        return ngx_http_sa_unavailable(r, ctx);
    }

    switch (l->status) {

    case NGX_HTTP_SA_OK:
        copy = ngx_palloc(r->pool, l->rec->size);
        if (copy == NULL) {
            return NGX_ERROR;
        }
        return ngx_http_sa_check_record(r, ctx,
                                        sa_token_record_copy(copy, l->rec));

    case NGX_HTTP_SA_UNKNOWN:
        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_UNKNOWN, NGX_LOG_INFO,
                                NGX_HTTP_UNAUTHORIZED);

    default:
        if (l->older) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "sa: record of token \"%*s\" refused: version "
                          "%uL is older than one already seen",
                          (size_t) SA_TOKEN_ID_LEN, ctx->id, l->rec->version);
        } else {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "sa: record of token \"%*s\" refused: %s",
                          (size_t) SA_TOKEN_ID_LEN, ctx->id,
                          sa_rec_strerror(l->err));
        }
        ctx->status = NGX_HTTP_SA_TAMPERED;
        return NGX_HTTP_UNAUTHORIZED;
    }
}


/*
 * A fresh cache entry answers without Redis, but only while this worker's
 * subscription is up: otherwise a change could go unseen.
 */
static ngx_int_t
ngx_http_sa_cached(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_cache_t *cache)
{
    ngx_uint_t          use_due;
    sa_token_record_t  *rec;

    ngx_http_sa_redis_poll_subscriber();

    if (!ngx_http_sa_subscribed) {
        return NGX_DECLINED;
    }

    use_due = 0;

    switch (ngx_http_sa_cache_lookup(cache, ctx->id, 0, r->pool, &rec,
                                     &use_due))
    {

    case NGX_HTTP_SA_CACHE_HIT:
        ctx->cached = 1;
        ctx->use_due = use_due;
        return ngx_http_sa_check_record(r, ctx, rec);

    case NGX_HTTP_SA_CACHE_NEGATIVE:
        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_UNKNOWN, NGX_LOG_INFO,
                                NGX_HTTP_UNAUTHORIZED);

    default:
        return NGX_DECLINED;
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
                                    &use_due)
           != NGX_HTTP_SA_CACHE_MISS)
    {
        ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                      "sa: Redis unavailable, serving the cached record of "
                      "token \"%*s\"", (size_t) SA_TOKEN_ID_LEN, ctx->id);
        return ngx_http_sa_check_record(r, ctx, rec);
    }

    ctx->status = NGX_HTTP_SA_UNAVAILABLE;
    return NGX_HTTP_SERVICE_UNAVAILABLE;
}


static ngx_int_t
ngx_http_sa_fail(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_status_e status, ngx_uint_t level, ngx_int_t rc)
{
    ctx->status = status;

    ngx_log_error(level, r->connection->log, 0, "sa: token \"%*s\": %V",
                  (size_t) SA_TOKEN_ID_LEN, ctx->id,
                  &ngx_http_sa_status_names[status]);

    return rc;
}


/* the record is genuine: now the rules */
static ngx_int_t
ngx_http_sa_check_record(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    sa_token_record_t *rec)
{
    long                     missing;
    ngx_str_t                app;
    ngx_http_sa_loc_conf_t  *slcf;

    if (ngx_memcmp(rec->id, ctx->id, SA_TOKEN_ID_LEN) != 0) {
        /* a genuine record copied under another token's key */
        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_TAMPERED, NGX_LOG_ERR,
                                NGX_HTTP_UNAUTHORIZED);
    }

    if (!sa_hash_equal(rec->hash, ctx->hash)) {
        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_UNKNOWN, NGX_LOG_INFO,
                                NGX_HTTP_UNAUTHORIZED);
    }

    if (rec->revoked) {
        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_REVOKED, NGX_LOG_INFO,
                                NGX_HTTP_UNAUTHORIZED);
    }

    if (rec->expires_at && rec->expires_at <= (int64_t) ngx_time()) {
        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_EXPIRED, NGX_LOG_INFO,
                                NGX_HTTP_UNAUTHORIZED);
    }

    /* from here on the identity is known: the variables show it */
    ctx->record = rec;

    slcf = ngx_http_get_module_loc_conf(r, ngx_http_sa_module);

    if (slcf->application) {
        if (ngx_http_complex_value(r, slcf->application, &app) != NGX_OK) {
            return NGX_ERROR;
        }

        if (!sa_app_granted(rec->apps, rec->napps, (char *) app.data,
                            app.len))
        {
            return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_FORBIDDEN_APPLICATION,
                                    NGX_LOG_INFO, NGX_HTTP_FORBIDDEN);
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
        return ngx_http_sa_fail(r, ctx, NGX_HTTP_SA_INSUFFICIENT_SCOPE,
                                NGX_LOG_INFO, NGX_HTTP_FORBIDDEN);
    }

    ctx->status = NGX_HTTP_SA_OK;
    ngx_http_sa_record_use(r, ctx);

    return NGX_OK;
}


static ngx_uint_t
ngx_http_sa_use_due(ngx_http_sa_ctx_t *ctx, time_t now)
{
    ngx_http_sa_used_slot_t  *slot;

    if (ctx->cached) {
        return ctx->use_due;        /* decided by the lookup, under its lock */
    }

    if (ngx_http_sa_worker_cache) {
        return ngx_http_sa_cache_used(ngx_http_sa_worker_cache, ctx->id, now);
    }

    if (ngx_http_sa_used_slots == NULL) {
        return 0;
    }

    slot = &ngx_http_sa_used_slots[ngx_crc32_short(ctx->id, SA_TOKEN_ID_LEN)
                                   % NGX_HTTP_SA_USED_SLOTS];

    if (ngx_memcmp(slot->id, ctx->id, SA_TOKEN_ID_LEN) == 0
        && now - slot->written < NGX_HTTP_SA_USED_EVERY)
    {
        return 0;
    }

    ngx_memcpy(slot->id, ctx->id, SA_TOKEN_ID_LEN);
    slot->written = now;

    return 1;
}


/* "SET <prefix>tok:<id>:used <now>", at most once a minute, not awaited */
static void
ngx_http_sa_record_use(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx)
{
    u_char                    key[128], now_text[NGX_TIME_T_LEN];
    time_t                    now;
    const char               *argv[3];
    size_t                    argvlen[3];
    ngx_http_sa_main_conf_t  *smcf;

    now = ngx_time();

    if (!ngx_http_sa_use_due(ctx, now)) {
        return;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sa_module);

    if (smcf->prefix.len + 4 + SA_TOKEN_ID_LEN + 5 > sizeof(key)) {
        return;
    }

    argv[0] = "SET";
    argvlen[0] = 3;
    argv[1] = (const char *) key;
    argvlen[1] = ngx_sprintf(key, "%Vtok:%*s:used", &smcf->prefix,
                             (size_t) SA_TOKEN_ID_LEN, ctx->id) - key;
    argv[2] = (const char *) now_text;
    argvlen[2] = ngx_sprintf(now_text, "%T", now) - now_text;

    ngx_http_sa_redis_send(3, argv, argvlen);
}

