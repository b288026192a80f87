/*
 * What a verdict sets off in Redis, not awaited: a genuine token's last use
 * ("SET <prefix>tok:<id>:used <now>", at most once a minute per token: with
 * a cache the entry remembers it, without one a per-worker table), and a
 * genuine token refused where the location names its application (one
 * token.denied entry for the notification worker, at most once a minute
 * per token and worker).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sa_module.h"
#include "ngx_http_sa_effects.h"


/* without a cache, last uses are remembered per worker in a small table */
#define NGX_HTTP_SA_USED_SLOTS    65536   /* 1.5 MiB a worker */

/* and, with or without, the last token.denied event sent per token */
#define NGX_HTTP_SA_DENIED_SLOTS  4096
#define NGX_HTTP_SA_DENIED_EVERY  60


typedef struct {
    u_char                     id[SA_TOKEN_ID_LEN];
    time_t                     written;
} ngx_http_sa_used_slot_t;


/* the worker's part (smcf->worker->effects) */
struct ngx_http_sa_effects_s {
    ngx_http_sa_used_slot_t   *used;          /* without a cache only */
    ngx_http_sa_used_slot_t   *denied;
};


ngx_http_sa_effects_t *
ngx_http_sa_effects_init_process(ngx_cycle_t *cycle,
    ngx_http_sa_main_conf_t *smcf)
{
    ngx_http_sa_effects_t  *fx;

    fx = ngx_pcalloc(cycle->pool, sizeof(ngx_http_sa_effects_t));
    if (fx == NULL) {
        return NULL;
    }

    if (smcf->cache == NULL) {
        fx->used = ngx_pcalloc(cycle->pool, NGX_HTTP_SA_USED_SLOTS
                                            * sizeof(ngx_http_sa_used_slot_t));
        if (fx->used == NULL) {
            return NULL;
        }
    }

    fx->denied = ngx_pcalloc(cycle->pool, NGX_HTTP_SA_DENIED_SLOTS
                                          * sizeof(ngx_http_sa_used_slot_t));
    if (fx->denied == NULL) {
        return NULL;
    }

    return fx;
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
ngx_http_sa_use_due(ngx_http_sa_main_conf_t *smcf, ngx_http_sa_ctx_t *ctx,
    time_t now)
{
    if (ctx->cached) {
        return ctx->use_due;        /* decided by the lookup, under its lock */
    }

    if (smcf->cache) {
        return ngx_http_sa_cache_used(smcf->cache, ctx->id, now);
    }

    return ngx_http_sa_slot_due(smcf->worker->effects->used,
                                NGX_HTTP_SA_USED_SLOTS, ctx->id, now,
                                NGX_HTTP_SA_USED_EVERY);
}


/*
 * A genuine token refused (expired, revoked, insufficient_scope,
 * forbidden_application) in a location that names its application: one
 * token.denied entry for the notification worker, not awaited, at most once
 * a minute per token and worker.  A token Redis does not know never gets
 * here: random tokens cost Redis nothing new.
 */
void
ngx_http_sa_report_denied(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx)
{
    u_char                    now_text[NGX_TIME_T_LEN];
    u_char                    key[NGX_HTTP_SA_KEY_MAX];
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
    smcf = ngx_http_get_module_main_conf(r, ngx_http_sa_module);

    if (!ngx_http_sa_slot_due(smcf->worker->effects->denied,
                              NGX_HTTP_SA_DENIED_SLOTS, ctx->id, now,
                              NGX_HTTP_SA_DENIED_EVERY))
    {
        return;
    }
    status = &ngx_http_sa_statuses[ctx->status].name;

#define NGX_HTTP_SA_ARG(i, s, n)                                              \
    argv[i] = (const char *) (s); argvlen[i] = (n)

    NGX_HTTP_SA_ARG(0, "XADD", 4);
    NGX_HTTP_SA_ARG(1, key, ngx_http_sa_key(key, &smcf->prefix, SA_KEY_EVENTS,
                                            NULL, 0) - key);
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

    (void) ngx_http_sa_redis_command(smcf->worker->redis, 13, argv, argvlen,
                                     NULL, NULL);
}


/* "SET <prefix>tok:<id>:used <now>", at most once a minute, not awaited */
void
ngx_http_sa_record_use(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx)
{
    u_char                    key[NGX_HTTP_SA_KEY_MAX];
    u_char                    now_text[NGX_TIME_T_LEN];
    time_t                    now;
    const char               *argv[3];
    size_t                    argvlen[3];
    ngx_http_sa_main_conf_t  *smcf;

    now = ngx_time();
    smcf = ngx_http_get_module_main_conf(r, ngx_http_sa_module);

    if (!ngx_http_sa_use_due(smcf, ctx, now)) {
        return;
    }

    argv[0] = "SET";
    argvlen[0] = 3;
    argv[1] = (const char *) key;
    argvlen[1] = ngx_http_sa_key(key, &smcf->prefix, SA_KEY_TOKEN, ctx->id, 1)
                 - key;
    argv[2] = (const char *) now_text;
    argvlen[2] = ngx_sprintf(now_text, "%T", now) - now_text;

    (void) ngx_http_sa_redis_command(smcf->worker->redis, 3, argv, argvlen,
                                     NULL, NULL);
}
