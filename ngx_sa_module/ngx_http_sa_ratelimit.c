/*
 * sa_rate_limit zone=NAME:SIZE [mode=local] [sync=TIME]
 *               [on_unavailable=allow|deny];
 *
 * One node per token id in a shared zone, found through an rbtree keyed by
 * the id's hash, the least recently used first to go (limit_req's layout).
 * The bucket: "excess" in units of 1/3.6e12 request drains at rate/per; an
 * admitted request adds one request; one is refused when it would not fit
 * in burst + 1.  So a token admits burst + 1 requests at once, then
 * rate/per, whether its node is new or drained (burst 0: one at a time).
 * A node is dropped when it has drained (it holds nothing a new one would
 * not), or, when the zone is full, the least recently used one.
 *
 * The same node holds the token's quota for its current period (a UTC day
 * or calendar month): "qtotal" and "qapplied", the largest total of all
 * gateways and this gateway's part that a sync reply brought back
 * (ngx_http_sa_quota_total()), and "qmine", what this gateway admitted in
 * the period.  The count is (qtotal - qapplied) + qmine: the other
 * gateways' as last heard plus this one's exactly, so with one gateway a
 * quota is exact whatever the number of workers.  Until the first reply
 * of the period (after a start, or for a node made again) the others
 * count 0.  A node with a quota is dropped only from a full zone.
 *
 * mode=cluster (issue 25, item 4): the bucket also holds what the other
 * gateways admitted.  Each admitted request adds 1 to the token's counter
 * of the current minute ("w<minute>", kind NGX_HTTP_SA_SYNC_RATE of the
 * batching sync), a refused one reads it (delta 0); each reply gives the
 * other gateways' part of it (total - mine), of which what is new since
 * the last reply ("rothers") is added to the bucket.  So a gateway hears
 * of another's admissions within 2 x sync.  A node that has not heard
 * (new, or not read for longer than 4 x sync) takes the news as at most a
 * full bucket: the count of a minute includes what has drained since; one
 * that keeps hearing takes up to two (over-admissions are paid back).  In
 * the first seconds of a minute the last one is read too, so that what
 * came in its last ticks is not lost.
 */

#include <sodium.h>

#include "ngx_http_sa_ratelimit.h"

/*
 * one request: divisible by 1000 ms times every "per" (1, 60, 3600), so
 * that the drain per ms is exact; (burst + 1) units still fit in int64
 */
#define NGX_HTTP_SA_RL_UNIT  3600000000000LL


typedef struct {
    u_char                 color;
    u_char                 dummy;
    u_char                 id[SA_TOKEN_ID_LEN];
    ngx_queue_t            queue;
    ngx_msec_t             last;
    int64_t                excess;
    int64_t                drain;        /* per ms, as last counted */
    u_char                 qperiod[NGX_HTTP_SA_SYNC_PERIOD_LEN];
    int64_t                qtotal;       /* all gateways, last heard */
    int64_t                qapplied;     /* this one's part of it */
    int64_t                qmine;        /* admitted here this period */
    unsigned               qknown:1;     /* a reply of this period came */
    ngx_msec_t             qread;        /* when a reply came, last */
    unsigned               cluster:1;    /* mode=cluster counted it */
    unsigned               rknown:1;     /* heard of the others */
    unsigned               rprev:1;      /* rprev_others is of rwin - 1 */
    ngx_msec_t             rheard;       /* when, last */
    time_t                 rwin;         /* the minute of rothers */
    int64_t                rothers;      /* the others' count applied */
    int64_t                rprev_others; /* the same, of the minute before */
    int64_t                limit;        /* (burst + 1) units, last counted */
} ngx_http_sa_rl_node_t;


typedef struct {
    ngx_rbtree_t           rbtree;
    ngx_rbtree_node_t      sentinel;
    ngx_queue_t            queue;
    u_char                 gateway[NGX_HTTP_SA_SYNC_GW_LEN];
} ngx_http_sa_rl_shctx_t;


typedef struct {
    ngx_http_sa_rl_shctx_t  *sh;
    ngx_slab_pool_t         *shpool;
    ngx_msec_t               sync;       /* mode=cluster's sync=; 0: local */
    ngx_msec_t               qstale;     /* a quota total older is read
                                            again (2 x sync=) */
    time_t                   full_said;  /* this worker's last "is full" */
} ngx_http_sa_rl_ctx_t;


static void
ngx_http_sa_rl_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node,
    ngx_rbtree_node_t *sentinel)
{
    ngx_rbtree_node_t      **p;
    ngx_http_sa_rl_node_t   *n, *t;

    for ( ;; ) {

        if (node->key < temp->key) {
            p = &temp->left;

        } else if (node->key > temp->key) {
            p = &temp->right;

        } else {
            n = (ngx_http_sa_rl_node_t *) &node->color;
            t = (ngx_http_sa_rl_node_t *) &temp->color;

            p = (ngx_memcmp(n->id, t->id, SA_TOKEN_ID_LEN) < 0)
                ? &temp->left : &temp->right;
        }

        if (*p == sentinel) {
            break;
        }

        temp = *p;
    }

    *p = node;
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}


static ngx_int_t
ngx_http_sa_rl_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_http_sa_rl_ctx_t  *octx = data;
    ngx_http_sa_rl_ctx_t  *ctx = shm_zone->data;

    /* a reload keeps the buckets */
    if (octx) {
        ctx->sh = octx->sh;
        ctx->shpool = octx->shpool;
        return NGX_OK;
    }

    ctx->shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        ctx->sh = ctx->shpool->data;
        return NGX_OK;
    }

    ctx->sh = ngx_slab_alloc(ctx->shpool, sizeof(ngx_http_sa_rl_shctx_t));
    if (ctx->sh == NULL) {
        return NGX_ERROR;
    }

    ctx->shpool->data = ctx->sh;

    /* names this gateway in shared counters, until it is restarted */
    {
        u_char  gw[NGX_HTTP_SA_SYNC_GW_LEN / 2];

        randombytes_buf(gw, sizeof(gw));
        ngx_hex_dump(ctx->sh->gateway, gw, sizeof(gw));
    }

    ngx_rbtree_init(&ctx->sh->rbtree, &ctx->sh->sentinel,
                    ngx_http_sa_rl_insert);
    ngx_queue_init(&ctx->sh->queue);

    ctx->shpool->log_ctx = ngx_slab_alloc(ctx->shpool,
                                          sizeof(" in sa_rate_limit zone \"\"")
                                          + shm_zone->shm.name.len);
    if (ctx->shpool->log_ctx == NULL) {
        return NGX_ERROR;
    }

    ngx_sprintf(ctx->shpool->log_ctx, " in sa_rate_limit zone \"%V\"%Z",
                &shm_zone->shm.name);

    ctx->shpool->log_nomem = 0;

    return NGX_OK;
}


void
ngx_http_sa_rate_limit_gateway(ngx_shm_zone_t *zone, u_char *gw)
{
    ngx_http_sa_rl_ctx_t  *ctx = zone->data;

    ngx_memcpy(gw, ctx->sh->gateway, NGX_HTTP_SA_SYNC_GW_LEN);
}


char *
ngx_http_sa_rate_limit_conf(ngx_conf_t *cf, ngx_http_sa_rl_conf_t *rl,
    void *tag)
{
    u_char                *p;
    ssize_t                size;
    ngx_str_t             *value, s, name;
    ngx_int_t              ms;
    ngx_uint_t             i;
    ngx_shm_zone_t       **zone = &rl->zone;
    ngx_http_sa_rl_ctx_t  *ctx;

    if (*zone) {
        return "is duplicate";
    }

    rl->sync = 100;
    rl->allow = 1;
    rl->cluster = 0;

    value = cf->args->elts;
    size = 0;
    name.len = 0;

    for (i = 1; i < cf->args->nelts; i++) {

        if (ngx_strncmp(value[i].data, "zone=", 5) == 0) {
            name.data = value[i].data + 5;
            p = (u_char *) ngx_strchr(name.data, ':');
            if (p == NULL) {
                goto invalid;
            }
            name.len = p - name.data;
            s.data = p + 1;
            s.len = value[i].data + value[i].len - s.data;
            size = ngx_parse_size(&s);
            if (name.len == 0 || size == NGX_ERROR) {
                goto invalid;
            }
            if (size < (ssize_t) (8 * ngx_pagesize)) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "zone \"%V\" is too small", &value[i]);
                return NGX_CONF_ERROR;
            }
            continue;
        }

        if (ngx_strcmp(value[i].data, "mode=local") == 0) {
            rl->cluster = 0;
            continue;
        }

        if (ngx_strcmp(value[i].data, "mode=cluster") == 0) {
            rl->cluster = 1;
            continue;
        }

        if (ngx_strncmp(value[i].data, "sync=", 5) == 0) {
            s.data = value[i].data + 5;
            s.len = value[i].len - 5;
            ms = ngx_parse_time(&s, 0);
            if (ms == NGX_ERROR || ms < 10 || ms > 60000) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                                   "invalid parameter \"%V\": from 10ms to "
                                   "60s", &value[i]);
                return NGX_CONF_ERROR;
            }
            rl->sync = (ngx_msec_t) ms;
            continue;
        }

        if (ngx_strcmp(value[i].data, "on_unavailable=allow") == 0) {
            rl->allow = 1;
            continue;
        }

        if (ngx_strcmp(value[i].data, "on_unavailable=deny") == 0) {
            rl->allow = 0;
            continue;
        }

        goto invalid;
    }

    if (name.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sa_rate_limit must have a \"zone\" "
                           "parameter");
        return NGX_CONF_ERROR;
    }

    ctx = ngx_pcalloc(cf->pool, sizeof(ngx_http_sa_rl_ctx_t));
    if (ctx == NULL) {
        return NGX_CONF_ERROR;
    }

    *zone = ngx_shared_memory_add(cf, &name, size, tag);
    if (*zone == NULL) {
        return NGX_CONF_ERROR;
    }

    if ((*zone)->data) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "zone \"%V\" is already used", &name);
        return NGX_CONF_ERROR;
    }

    ctx->sync = rl->cluster ? rl->sync : 0;
    ctx->qstale = 2 * rl->sync;

    (*zone)->init = ngx_http_sa_rl_init_zone;
    (*zone)->data = ctx;

    return NGX_CONF_OK;

invalid:

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"",
                       &value[i]);
    return NGX_CONF_ERROR;
}


/* whether a node still holds what a new one would not know */
static ngx_uint_t
ngx_http_sa_rl_holds(ngx_http_sa_rl_node_t *lr, ngx_msec_t now)
{
    int64_t  ms = (ngx_msec_int_t) (now - lr->last);

    /*
     * not yet empty: a new node would forget what it holds; nor a quota's
     * count (a new node would not know the total); nor, for a minute, a
     * cluster count (a new node would take the others' count of the minute
     * as a full bucket)
     */
    return ms < 0 || lr->qperiod[0] != '\0'
           || (lr->drain && ms < (lr->excess + lr->drain - 1) / lr->drain)
           || (lr->cluster && ms < 60000);
}


/*
 * n 1: drops up to two nodes of the least recently used end that have
 * drained; n 0: the least recently used one, drained or not (a full zone).
 * Returns whether it dropped one that still held something.
 */
static ngx_uint_t
ngx_http_sa_rl_expire(ngx_http_sa_rl_ctx_t *ctx, ngx_uint_t n,
    ngx_msec_t now)
{
    ngx_queue_t            *q;
    ngx_rbtree_node_t      *node;
    ngx_http_sa_rl_node_t  *lr;
    ngx_uint_t              i, held;

    held = 0;

    for (i = 0; i < (n ? 2 : 1); i++) {

        if (ngx_queue_empty(&ctx->sh->queue)) {
            return held;
        }

        q = ngx_queue_last(&ctx->sh->queue);
        lr = ngx_queue_data(q, ngx_http_sa_rl_node_t, queue);

        if (ngx_http_sa_rl_holds(lr, now)) {
            if (n) {
                return held;
            }
            held = 1;
        }

        ngx_queue_remove(q);

        node = (ngx_rbtree_node_t *)
                   ((u_char *) lr - offsetof(ngx_rbtree_node_t, color));

        ngx_rbtree_delete(&ctx->sh->rbtree, node);
        ngx_slab_free_locked(ctx->shpool, node);
    }

    return held;
}


/*
 * A full zone dropped a bucket that still held something: that token's
 * limit starts afresh.  Said at most once a second per worker (under the
 * zone's lock: a log line, no more).
 */
static void
ngx_http_sa_rl_full(ngx_shm_zone_t *zone)
{
    ngx_http_sa_rl_ctx_t  *ctx = zone->data;

    if (ctx->full_said == ngx_time()) {
        return;
    }

    ctx->full_said = ngx_time();

    ngx_log_error(NGX_LOG_WARN, ngx_cycle->log, 0,
                  "sa_rate_limit zone \"%V\" is full: dropped the bucket of a "
                  "token that had not drained (its limit starts afresh); "
                  "make the zone larger than the tokens in use at once",
                  &zone->shm.name);
}


/* days since 1970-01-01 of a civil date (H. Hinnant's algorithm) */
static int64_t
ngx_http_sa_days_from_civil(int64_t y, int64_t m, int64_t d)
{
    int64_t  era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

    return era * 146097 + doe - 719468;
}


/*
 * The quota's period now: its text and the seconds to its end.  Both
 * texts and the month's end change only with the day: made once a day in
 * each worker, not per request (issue 25, the cost of a request).
 */
static void
ngx_http_sa_quota_period(const sa_policy_t *p, time_t now,
    ngx_http_sa_rl_result_t *res)
{
    u_char      *e;
    int64_t      day, next;
    ngx_tm_t     tm;
    ngx_str_t   *text;

    static int64_t    cached_day = -1;
    static int64_t    month_end;
    static ngx_str_t  day_text, month_text;
    static u_char     day_buf[NGX_HTTP_SA_SYNC_PERIOD_LEN];
    static u_char     month_buf[NGX_HTTP_SA_SYNC_PERIOD_LEN];

    day = (int64_t) now / 86400;

    if (day != cached_day) {
        ngx_gmtime(now, &tm);

        e = ngx_sprintf(day_buf, "d%04d%02d%02d", tm.ngx_tm_year,
                        tm.ngx_tm_mon, tm.ngx_tm_mday);
        day_text.data = day_buf;
        day_text.len = e - day_buf;

        e = ngx_sprintf(month_buf, "m%04d%02d", tm.ngx_tm_year,
                        tm.ngx_tm_mon);
        month_text.data = month_buf;
        month_text.len = e - month_buf;

        month_end = ngx_http_sa_days_from_civil(
                        tm.ngx_tm_year + (tm.ngx_tm_mon == 12),
                        tm.ngx_tm_mon == 12 ? 1 : tm.ngx_tm_mon + 1, 1)
                    * 86400;

        cached_day = day;
    }

    if (p->quota_period == SA_QUOTA_DAY) {
        text = &day_text;
        next = (day + 1) * 86400;

    } else {
        text = &month_text;
        next = month_end;
    }

    ngx_memcpy(res->period_text, text->data, text->len);
    ngx_memzero(res->period_text + text->len,
                NGX_HTTP_SA_SYNC_PERIOD_LEN - text->len);
    res->period.data = res->period_text;
    res->period.len = text->len;
    res->period_left = (time_t) (next - now);
}


/* a token's node; NULL: none */
static ngx_http_sa_rl_node_t *
ngx_http_sa_rl_find(ngx_http_sa_rl_ctx_t *ctx, const u_char *id,
    uint32_t hash)
{
    ngx_int_t               rc;
    ngx_rbtree_node_t      *node, *sentinel;
    ngx_http_sa_rl_node_t  *lr;

    node = ctx->sh->rbtree.root;
    sentinel = ctx->sh->rbtree.sentinel;

    while (node != sentinel) {
        if (hash != node->key) {
            node = hash < node->key ? node->left : node->right;
            continue;
        }

        lr = (ngx_http_sa_rl_node_t *) &node->color;
        rc = ngx_memcmp(id, lr->id, SA_TOKEN_ID_LEN);
        if (rc == 0) {
            return lr;
        }
        node = rc < 0 ? node->left : node->right;
    }

    return NULL;
}


/* mode=cluster: the node's minute is res->rwin; the last one read too? */
static void
ngx_http_sa_rl_window(ngx_http_sa_rl_node_t *lr, ngx_http_sa_rl_result_t *res)
{
    if (!lr->cluster) {
        lr->cluster = 1;
        lr->rwin = res->rwin;
    }

    if (lr->rwin != res->rwin) {
        /* a new minute: its counter starts from nothing */
        lr->rprev = lr->rwin == res->rwin - 1;
        lr->rprev_others = lr->rothers;
        lr->rothers = 0;
        lr->rwin = res->rwin;
    }

    /* the last ticks of the minute before, heard in the first seconds */
    res->rprev = lr->rprev && ngx_time() - res->rwin * 60 < 2;
}


/*
 * The rate (when the token has one), then the quota (when it has one),
 * under one lock: a request refused by either counts for neither.
 */
ngx_int_t
ngx_http_sa_rate_limit_check(ngx_shm_zone_t *zone, const u_char *id,
    const sa_policy_t *p, ngx_uint_t sync_up, ngx_flag_t allow,
    ngx_http_sa_rl_result_t *res)
{
    int64_t                 excess, limit, drain, need, ms, used;
    uint32_t                hash;
    ngx_msec_t              now;
    ngx_rbtree_node_t      *node;
    ngx_http_sa_rl_ctx_t   *ctx = zone->data;
    ngx_http_sa_rl_node_t  *lr;
    size_t                  size;

    /* per ms, in units: exact (1/h is 1,000,000); 0 without a rate */
    drain = p->rate ? (int64_t) p->rate * (NGX_HTTP_SA_RL_UNIT / 1000 / p->per)
                    : 0;
    limit = ((int64_t) p->burst + 1) * NGX_HTTP_SA_RL_UNIT;

    if (p->quota_period) {
        ngx_http_sa_quota_period(p, ngx_time(), res);
    }

    res->rwin = 0;
    res->rprev = 0;

    if (ctx->sync && drain) {
        res->rwin = ngx_time() / 60;
        if (!sync_up && !allow) {
            /* on_unavailable=deny: the others' count is not coming */
            return NGX_AGAIN;
        }
    }

    hash = ngx_crc32_short((u_char *) id, SA_TOKEN_ID_LEN);
    now = ngx_current_msec;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    ngx_http_sa_rl_expire(ctx, 1, now);

    lr = ngx_http_sa_rl_find(ctx, id, hash);

    if (lr == NULL) {
        size = offsetof(ngx_rbtree_node_t, color)
               + sizeof(ngx_http_sa_rl_node_t);

        node = ngx_slab_alloc_locked(ctx->shpool, size);
        if (node == NULL) {
            if (ngx_http_sa_rl_expire(ctx, 0, now)) {
                ngx_http_sa_rl_full(zone);
            }
            node = ngx_slab_alloc_locked(ctx->shpool, size);
        }

        if (node == NULL) {
            /* a full zone that cannot drop a node refuses nothing */
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            res->remaining = p->burst;
            res->reset = 0;
            return NGX_OK;
        }

        ngx_memzero(node, size);
        node->key = hash;
        lr = (ngx_http_sa_rl_node_t *) &node->color;
        ngx_memcpy(lr->id, id, SA_TOKEN_ID_LEN);
        lr->last = now;
        ngx_rbtree_insert(&ctx->sh->rbtree, node);
        ngx_queue_insert_head(&ctx->sh->queue, &lr->queue);

    } else {
        ngx_queue_remove(&lr->queue);
        ngx_queue_insert_head(&ctx->sh->queue, &lr->queue);
    }

    excess = 0;

    if (drain) {
        /*
         * Another worker's clock may be a little ahead of this one's (each
         * caches its own ngx_current_msec): then nothing drains, and "last"
         * never goes back, which would drain the same time twice.
         */
        ms = (ngx_msec_int_t) (now - lr->last);

        if (ms > 0 && lr->drain) {
            /* drain * ms cannot overflow: only when it is below the excess */
            excess = ms > lr->excess / drain ? 0 : lr->excess - drain * ms;
            lr->last = now;

        } else {
            excess = lr->drain ? lr->excess : 0;
            if (ms > 0) {
                lr->last = now;
            }
        }

        lr->excess = excess;
        lr->drain = drain;
        lr->limit = limit;

        if (res->rwin) {
            ngx_http_sa_rl_window(lr, res);
        }

        if (excess + NGX_HTTP_SA_RL_UNIT > limit) {
            /* refused, not counted: until one request fits, rounded up */
            need = excess + NGX_HTTP_SA_RL_UNIT - limit;
            ms = (need + drain - 1) / drain;
            res->retry_after = (time_t) ((ms + 999) / 1000);
            if (res->retry_after < 1) {
                res->retry_after = 1;
            }
            res->remaining = 0;
            res->reset = (time_t) (((excess + drain - 1) / drain + 999)
                                   / 1000);
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return NGX_BUSY;
        }

    } else {
        lr->last = now;
        lr->excess = 0;
        lr->drain = 0;
    }

    if (p->quota_period) {

        if (ngx_memcmp(lr->qperiod, res->period_text,
                       NGX_HTTP_SA_SYNC_PERIOD_LEN)
            != 0)
        {
            /* a new period (or a new node): counted from nothing */
            ngx_memcpy(lr->qperiod, res->period_text,
                       NGX_HTTP_SA_SYNC_PERIOD_LEN);
            lr->qtotal = 0;
            lr->qapplied = 0;
            lr->qmine = 0;
            lr->qknown = 0;
        }

        if (!lr->qknown && !sync_up && !allow) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            return NGX_AGAIN;
        }

        used = (lr->qtotal > lr->qapplied ? lr->qtotal - lr->qapplied : 0)
               + lr->qmine;

        if (used >= (int64_t) p->quota) {
            ngx_shmtx_unlock(&ctx->shpool->mutex);
            res->retry_after = res->period_left;
            return NGX_DECLINED;
        }

        /*
         * Never read, or not since 2 intervals (this gateway sent nothing
         * meanwhile, so it did not hear of the others' admissions): read
         * at once (ngx_http_sa_sync_soon()).
         */
        res->quota_unknown = !lr->qknown
                             || (ngx_msec_int_t) (now - lr->qread)
                                > (ngx_msec_int_t) ctx->qstale;
        lr->qmine++;

    } else if (lr->qperiod[0] != '\0') {
        /* the quota was cleared */
        lr->qperiod[0] = '\0';
    }

    if (drain) {
        excess += NGX_HTTP_SA_RL_UNIT;
        lr->excess = excess;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);

    if (drain) {
        res->remaining = (ngx_uint_t) ((limit - excess) / NGX_HTTP_SA_RL_UNIT);

        /*
         * the draft's reset: until more is made available (one more
         * request fits), not until the bucket is empty
         */
        need = excess - (limit - ((int64_t) res->remaining + 1)
                                  * NGX_HTTP_SA_RL_UNIT);
        res->reset = need > 0
                     ? (time_t) (((need + drain - 1) / drain + 999) / 1000)
                     : 0;
    }

    return NGX_OK;
}


void
ngx_http_sa_quota_total(void *data, const u_char *id, ngx_str_t *period,
    int64_t total, int64_t mine)
{
    ngx_shm_zone_t         *zone = data;
    ngx_http_sa_rl_ctx_t   *ctx = zone->data;
    ngx_http_sa_rl_node_t  *lr;

    if (period->len >= NGX_HTTP_SA_SYNC_PERIOD_LEN) {
        return;
    }

    ngx_shmtx_lock(&ctx->shpool->mutex);

    lr = ngx_http_sa_rl_find(ctx, id,
                             ngx_crc32_short((u_char *) id, SA_TOKEN_ID_LEN));

    /* a reply of another period (a batch of yesterday's) is no news */
    if (lr != NULL && ngx_memcmp(lr->qperiod, period->data, period->len) == 0
        && lr->qperiod[period->len] == '\0')
    {
        lr->qknown = 1;
        lr->qread = ngx_current_msec;

        /* both only grow: a late reply of an earlier batch changes nothing */
        if (total > lr->qtotal) {
            lr->qtotal = total;
        }

        if (mine > lr->qapplied) {
            lr->qapplied = mine;
        }

        /* a node made again: what this gateway sent is its own */
        if (lr->qmine < lr->qapplied) {
            lr->qmine = lr->qapplied;
        }
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}


/*
 * A cluster rate counter's reply (mode=cluster): what the other gateways
 * admitted in the minute that this node has not counted yet goes into its
 * bucket, drained to now first.
 */
void
ngx_http_sa_rate_total(void *data, const u_char *id, ngx_str_t *period,
    int64_t total, int64_t mine)
{
    ngx_shm_zone_t         *zone = data;
    ngx_http_sa_rl_ctx_t   *ctx = zone->data;
    int64_t                 others, d, cap, ms, excess, *applied;
    time_t                  win;
    ngx_msec_t              now;
    ngx_http_sa_rl_node_t  *lr;

    if (period->len < 2 || period->data[0] != 'w') {
        return;
    }

    win = ngx_atotm(period->data + 1, period->len - 1);
    if (win == NGX_ERROR) {
        return;
    }

    others = total > mine ? total - mine : 0;
    now = ngx_current_msec;

    ngx_shmtx_lock(&ctx->shpool->mutex);

    lr = ngx_http_sa_rl_find(ctx, id,
                             ngx_crc32_short((u_char *) id, SA_TOKEN_ID_LEN));

    if (lr == NULL || !lr->cluster || lr->drain == 0) {
        goto done;
    }

    if (win == lr->rwin) {
        applied = &lr->rothers;

    } else if (win == lr->rwin - 1 && lr->rprev) {
        applied = &lr->rprev_others;

    } else {
        goto done;                      /* a minute gone: no news */
    }

    /* only grows: a late reply of an earlier batch changes nothing */
    d = others - *applied;
    if (d <= 0) {
        goto done;
    }

    *applied = others;

    ms = (ngx_msec_int_t) (now - lr->last);
    excess = lr->excess;

    if (ms > 0) {
        excess = ms > excess / lr->drain ? 0 : excess - lr->drain * ms;
        lr->last = now;
    }

    /* a node that has not been hearing: at most a full bucket */
    cap = lr->rknown
          && (ngx_msec_int_t) (now - lr->rheard)
             <= (ngx_msec_int_t) (4 * ctx->sync)
          ? 2 * lr->limit : lr->limit;

    lr->excess = (d > (cap - excess) / NGX_HTTP_SA_RL_UNIT)
                 ? ngx_max(excess, cap)
                 : excess + d * NGX_HTTP_SA_RL_UNIT;

done:

    if (lr != NULL && lr->cluster) {
        lr->rknown = 1;
        lr->rheard = now;
    }

    ngx_shmtx_unlock(&ctx->shpool->mutex);
}
