/*
 * The batching sync (issue 25, items 3 and 5; ngx_http_sa_sync.c): what a
 * worker counts per token goes to Redis in one EVAL every "sync" interval
 * (sa_rate_limit ... sync=TIME, default 100ms), never a Redis command on
 * the request path, at most one write per token and counter per interval
 * per worker.
 *
 * Two kinds of item:
 *
 *   usage    per token and UTC day, requests by $sa_status ("admitted" for
 *            ok): fields <id>:<status> of the day's hash
 *            <prefix>usage:<YYYYMMDD>, kept 90 days.
 *   counter  a counter shared by all gateways, named by a kind and a
 *            period text: fields of <prefix>ctr:<kind>:<period>, one hash
 *            for all tokens, <id> (the total) and <id>:<gateway> (its
 *            part); kept "expire" seconds after the hash's first write.
 *            The reply gives back, for each counter of the batch, the
 *            total and this gateway's part, to the kind's handler (after
 *            the batch is applied; a delta of 0 only reads).  Quotas are
 *            kind "q"; cluster rate limits (rl-cluster) take
 *            NGX_HTTP_SA_SYNC_RATE.
 *
 * A batch costs Redis a few commands whatever its number of tokens (one
 * HMGET and one HSET per hash, ngx_http_sa_sync.c), never one per token.
 *
 * A batch carries a sequence number per worker (a random nonce names the
 * worker): a batch resent after a lost reply (Redis frozen, connection
 * cut) is applied once.  Until its reply, new counts wait in the table;
 * Redis down keeps them (bounded: NGX_HTTP_SA_SYNC_MAX items; more are
 * dropped, counted and logged) and the batch is sent again later.
 */

#ifndef NGX_HTTP_SA_SYNC_H
#define NGX_HTTP_SA_SYNC_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "sa_token.h"
#include "ngx_http_sa_redis.h"


/* items a worker holds (and one batch sends) at most */
#define NGX_HTTP_SA_SYNC_MAX        4096

/* a counter's period text, e.g. "d20261203", "m202612", "w1234567" */
#define NGX_HTTP_SA_SYNC_PERIOD_LEN 24

/* a gateway: 16 hex digits, the same for all its workers (the zone's) */
#define NGX_HTTP_SA_SYNC_GW_LEN     16

/* usage is kept this long in Redis */
#define NGX_HTTP_SA_USAGE_TTL       (90 * 86400)

typedef enum {
    NGX_HTTP_SA_SYNC_QUOTA = 0,     /* "q": quotas (ngx_http_sa_ratelimit.c) */
    NGX_HTTP_SA_SYNC_RATE,          /* "r": cluster rate limits */
    NGX_HTTP_SA_SYNC_KINDS
} ngx_http_sa_sync_kind_e;


/*
 * A counter's reply: the total of all gateways and this gateway's part,
 * both as Redis holds them after this batch (>= 0), with the period text
 * and the data the counter was added with.  Called in the worker, outside
 * any request, once per counter per reply.
 */
typedef void (*ngx_http_sa_sync_total_pt)(void *data, const u_char *id,
    ngx_str_t *period, int64_t total, int64_t mine);


typedef struct ngx_http_sa_sync_s  ngx_http_sa_sync_t;

typedef struct {
    ngx_msec_t                 interval;      /* sync= */
    u_char                     gateway[NGX_HTTP_SA_SYNC_GW_LEN];
    ngx_str_t                  prefix;        /* sa_redis_prefix */
} ngx_http_sa_sync_conf_t;


/* the worker's part (NULL: no memory); starts its timer */
ngx_http_sa_sync_t *ngx_http_sa_sync_init_process(ngx_cycle_t *cycle,
    ngx_http_sa_sync_conf_t *conf, ngx_http_sa_redis_worker_t *redis);

/* the next batch goes now, not at the end of the interval */
void ngx_http_sa_sync_soon(ngx_http_sa_sync_t *s);

/* the worker exits: what it holds is sent, not awaited */
void ngx_http_sa_sync_exit_process(ngx_http_sa_sync_t *s);

/* the handler of a kind's replies (init_process) */
void ngx_http_sa_sync_handler(ngx_http_sa_sync_t *s,
    ngx_http_sa_sync_kind_e kind, ngx_http_sa_sync_total_pt handler,
    void *data);

/* one request of token id, by its $sa_status name (today, UTC) */
void ngx_http_sa_sync_usage(ngx_http_sa_sync_t *s, const u_char *id,
    ngx_uint_t field);

/*
 * delta added to a counter (0: only read it back).  limit and app: a
 * quota's, for its notifications (token.quota_warning at 80 % of limit,
 * token.quota_exhausted at limit, once per period, in the same script);
 * 0 and NULL otherwise.  NGX_DECLINED: the table is full, not counted.
 */
ngx_int_t ngx_http_sa_sync_add(ngx_http_sa_sync_t *s, const u_char *id,
    ngx_http_sa_sync_kind_e kind, ngx_str_t *period, time_t expire,
    int64_t delta, uint64_t limit, ngx_str_t *app);

/*
 * 1 while the sync works: the last batch was answered and none has waited
 * for its reply longer than max(1 s, 4 x interval).
 */
ngx_uint_t ngx_http_sa_sync_up(ngx_http_sa_sync_t *s);

/* "admitted" or the status name: the usage hash's fields */
#define NGX_HTTP_SA_SYNC_FIELDS     16

#endif /* NGX_HTTP_SA_SYNC_H */
