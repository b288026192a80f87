/*
 * sa_rate_limit (issue 25, item 2): each token's signed "rate" and "burst"
 * enforced per token in a shared-memory leaky bucket, kept as
 * ngx_http_limit_req_module keeps its nodes (slab, rbtree, LRU queue).
 */

#ifndef NGX_HTTP_SA_RATELIMIT_H
#define NGX_HTTP_SA_RATELIMIT_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "sa_policy.h"
#include "sa_token.h"
#include "ngx_http_sa_sync.h"

typedef struct {
    ngx_uint_t   remaining;          /* requests let through at once now */
    time_t       reset;              /* s until one more fits */
    time_t       retry_after;        /* refused: s until one fits */
    ngx_str_t    period;             /* a quota's: "d20261203", "m202612" */
    time_t       period_left;        /* s until the quota's period ends */
    ngx_uint_t   quota_unknown;      /* admitted before any total was read */
    u_char       period_text[NGX_HTTP_SA_SYNC_PERIOD_LEN];
    time_t       rwin;               /* mode=cluster: the minute; 0: local */
    ngx_uint_t   rprev;              /* the minute before is read too */
} ngx_http_sa_rl_result_t;

/* sa_rate_limit's parameters */
typedef struct {
    ngx_shm_zone_t   *zone;
    ngx_msec_t        sync;          /* sync=, default 100ms */
    ngx_flag_t        allow;         /* on_unavailable=allow (default) */
    ngx_flag_t        cluster;       /* mode=cluster */
} ngx_http_sa_rl_conf_t;

char *ngx_http_sa_rate_limit_conf(ngx_conf_t *cf, ngx_http_sa_rl_conf_t *rl,
    void *tag);

/* this gateway's name in shared counters (the zone's, kept on reload) */
void ngx_http_sa_rate_limit_gateway(ngx_shm_zone_t *zone, u_char *gw);

/*
 * The rate, then the quota, in one lock: NGX_OK admitted (and counted in
 * both), NGX_BUSY over the rate, NGX_DECLINED over the quota, NGX_AGAIN
 * the quota's total is unknown and the sync down with on_unavailable=deny.
 * sync_up: ngx_http_sa_sync_up().
 */
ngx_int_t ngx_http_sa_rate_limit_check(ngx_shm_zone_t *zone,
    const u_char *id, const sa_policy_t *p, ngx_uint_t sync_up,
    ngx_flag_t allow, ngx_http_sa_rl_result_t *res);

/*
 * The rate, then the quota, in one lock (as above); in mode=cluster,
 * NGX_AGAIN also for a token with a rate while the sync is down with
 * on_unavailable=deny, and res->rwin says which minute's counter to add
 * the request to (ngx_http_sa_sync_add(), kind NGX_HTTP_SA_SYNC_RATE,
 * period "w<rwin>"), res->rprev that the one before is to be read too.
 */

/* a cluster rate counter's reply (ngx_http_sa_sync_total_pt, data: zone) */
void ngx_http_sa_rate_total(void *data, const u_char *id,
    ngx_str_t *period, int64_t total, int64_t mine);

/* a quota counter's reply (ngx_http_sa_sync_total_pt, data: the zone) */
void ngx_http_sa_quota_total(void *data, const u_char *id,
    ngx_str_t *period, int64_t total, int64_t mine);

#endif /* NGX_HTTP_SA_RATELIMIT_H */
