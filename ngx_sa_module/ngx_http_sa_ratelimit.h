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

typedef struct {
    ngx_uint_t   remaining;          /* requests let through at once now */
    time_t       reset;              /* s until the bucket is empty */
    time_t       retry_after;        /* refused: s until one fits */
} ngx_http_sa_rl_result_t;

char *ngx_http_sa_rate_limit_conf(ngx_conf_t *cf, ngx_shm_zone_t **zone,
    void *tag);

/* NGX_OK admitted, NGX_BUSY refused */
ngx_int_t ngx_http_sa_rate_limit_check(ngx_shm_zone_t *zone,
    const u_char *id, const sa_policy_t *p, ngx_http_sa_rl_result_t *res);

#endif /* NGX_HTTP_SA_RATELIMIT_H */
