/*
 * Prometheus metrics of the module, in a small shared zone of its own
 * ("sa_metrics"), always there when sa_auth is used: one slot per worker
 * number, counters bumped with atomic adds (no lock on the request path),
 * summed by whoever serves "sa_metrics;".  The zone is kept across reloads,
 * so counters survive them.
 */

#ifndef NGX_HTTP_SA_METRICS_H
#define NGX_HTTP_SA_METRICS_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* microseconds on a monotonic clock: GET latencies are sub-millisecond */
typedef uint64_t  ngx_http_sa_usec_t;


typedef enum {
    NGX_HTTP_SA_M_CACHE_HIT = 0,
    NGX_HTTP_SA_M_CACHE_MISS,
    NGX_HTTP_SA_M_CACHE_EVICTION,
    NGX_HTTP_SA_M_REDIS_COMMAND,
    NGX_HTTP_SA_M_REDIS_TIMEOUT,
    NGX_HTTP_SA_M_REDIS_REFUSED,
    NGX_HTTP_SA_M_REDIS_PROTOCOL,
    NGX_HTTP_SA_M_REDIS_RECONNECT,
    NGX_HTTP_SA_M_SIGNATURE_CHECK,
    NGX_HTTP_SA_M_COUNTERS
} ngx_http_sa_counter_e;


ngx_int_t ngx_http_sa_metrics_conf(ngx_conf_t *cf, void *tag);
char *ngx_http_sa_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);

/* the request path: no lock, one atomic add */
void ngx_http_sa_metrics_request(ngx_uint_t status);
void ngx_http_sa_metrics_count(ngx_http_sa_counter_e counter);
void ngx_http_sa_metrics_latency(ngx_http_sa_usec_t usec);

/*
 * A worker's subscriber came up (1) or went down (0), counted per worker
 * slot; a new worker clears its slot, so one killed is no longer counted.
 */
void ngx_http_sa_metrics_init_process(void);
void ngx_http_sa_metrics_subscribed(ngx_uint_t up);

/* now, in microseconds of the monotonic clock */
ngx_http_sa_usec_t ngx_http_sa_metrics_usec(void);

#endif /* NGX_HTTP_SA_METRICS_H */
