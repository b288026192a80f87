#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sa_module.h"
#include "ngx_http_sa_metrics.h"


#define NGX_HTTP_SA_METRICS_SLOTS    64      /* worker numbers, modulo */
#define NGX_HTTP_SA_METRICS_SIZE     (256 * 1024)
#define NGX_HTTP_SA_BUCKETS          12


/* upper bounds of the latency histogram's buckets, in microseconds */
static ngx_http_sa_usec_t  ngx_http_sa_buckets[NGX_HTTP_SA_BUCKETS] = {
    250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
    1000000
};


/* one worker's counters; the latency buckets are not cumulative here */
typedef struct {
    ngx_atomic_t                 requests[NGX_HTTP_SA_STATUSES];
    ngx_atomic_t                 counters[NGX_HTTP_SA_M_COUNTERS];
    ngx_atomic_t                 latency[NGX_HTTP_SA_BUCKETS + 1];
    ngx_atomic_t                 latency_usec;

    /*
     * The pid of the slot's worker while its subscriber is up, else 0: a
     * killed worker's pid stays until its successor, which has the same
     * worker number, clears it; one going down clears only its own pid, so
     * that an old worker leaving after a reload leaves the new one's be.
     */
    ngx_atomic_t                 subscriber;
} ngx_http_sa_metrics_slot_t;


typedef struct {
    ngx_atomic_t                 unused;      /* was a shared counter */
    ngx_http_sa_metrics_slot_t   slots[NGX_HTTP_SA_METRICS_SLOTS];
} ngx_http_sa_metrics_sh_t;


/*
 * The zone's address, the same in every process once the zone is made:
 * counters are bumped through it as nginx's own ngx_stat_* are, from
 * wherever something happens, with nothing to pass along.
 */
static ngx_http_sa_metrics_sh_t  *ngx_http_sa_metrics_sh;


static ngx_int_t
ngx_http_sa_metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data)
{
    ngx_slab_pool_t  *shpool;

    /* a reload keeps the counters */
    if (data) {
        shm_zone->data = data;
        ngx_http_sa_metrics_sh = data;
        return NGX_OK;
    }

    shpool = (ngx_slab_pool_t *) shm_zone->shm.addr;

    if (shm_zone->shm.exists) {
        shm_zone->data = shpool->data;
        ngx_http_sa_metrics_sh = shpool->data;
        return NGX_OK;
    }

    ngx_http_sa_metrics_sh = ngx_slab_calloc(shpool,
                                             sizeof(ngx_http_sa_metrics_sh_t));
    if (ngx_http_sa_metrics_sh == NULL) {
        return NGX_ERROR;
    }

    shpool->data = ngx_http_sa_metrics_sh;
    shm_zone->data = ngx_http_sa_metrics_sh;

    return NGX_OK;
}


ngx_int_t
ngx_http_sa_metrics_conf(ngx_conf_t *cf, void *tag)
{
    ngx_str_t        name = ngx_string("sa_metrics");
    ngx_shm_zone_t  *zone;

    zone = ngx_shared_memory_add(cf, &name, NGX_HTTP_SA_METRICS_SIZE, tag);
    if (zone == NULL) {
        return NGX_ERROR;
    }

    zone->init = ngx_http_sa_metrics_init_zone;

    return NGX_OK;
}


static ngx_http_sa_metrics_slot_t *
ngx_http_sa_metrics_slot(void)
{
    if (ngx_http_sa_metrics_sh == NULL) {
        return NULL;
    }

    return &ngx_http_sa_metrics_sh->slots[ngx_worker
                                          % NGX_HTTP_SA_METRICS_SLOTS];
}


void
ngx_http_sa_metrics_request(ngx_uint_t status)
{
    ngx_http_sa_metrics_slot_t  *slot = ngx_http_sa_metrics_slot();

    if (slot && status < NGX_HTTP_SA_STATUSES) {
        (void) ngx_atomic_fetch_add(&slot->requests[status], 1);
    }
}


void
ngx_http_sa_metrics_count(ngx_http_sa_counter_e counter)
{
    ngx_http_sa_metrics_slot_t  *slot = ngx_http_sa_metrics_slot();

    if (slot) {
        (void) ngx_atomic_fetch_add(&slot->counters[counter], 1);
    }
}


void
ngx_http_sa_metrics_latency(ngx_http_sa_usec_t usec)
{
    ngx_uint_t                   i;
    ngx_http_sa_metrics_slot_t  *slot = ngx_http_sa_metrics_slot();

    if (slot == NULL) {
        return;
    }

    for (i = 0; i < NGX_HTTP_SA_BUCKETS; i++) {
        if (usec <= ngx_http_sa_buckets[i]) {
            break;
        }
    }

    (void) ngx_atomic_fetch_add(&slot->latency[i], 1);
    (void) ngx_atomic_fetch_add(&slot->latency_usec, usec);
}


void
ngx_http_sa_metrics_init_process(void)
{
    ngx_http_sa_metrics_slot_t  *slot = ngx_http_sa_metrics_slot();

    /* whoever had this worker number before is gone, or going */
    if (slot) {
        slot->subscriber = 0;
    }
}


void
ngx_http_sa_metrics_subscribed(ngx_uint_t up)
{
    ngx_http_sa_metrics_slot_t  *slot = ngx_http_sa_metrics_slot();

    if (slot == NULL) {
        return;
    }

    if (up) {
        slot->subscriber = (ngx_atomic_uint_t) ngx_pid;

    } else {
        (void) ngx_atomic_cmp_set(&slot->subscriber,
                                  (ngx_atomic_uint_t) ngx_pid, 0);
    }
}


ngx_http_sa_usec_t
ngx_http_sa_metrics_usec(void)
{
    struct timespec  ts;

    (void) clock_gettime(CLOCK_MONOTONIC, &ts);

    return (ngx_http_sa_usec_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}


/* "sa_metrics;": the sums of every worker's slot, Prometheus text 0.0.4 */

/* the slots whose worker's subscriber is up */
static ngx_uint_t
ngx_http_sa_metrics_subscribers(void)
{
    ngx_uint_t  i, n;

    n = 0;

    for (i = 0; i < NGX_HTTP_SA_METRICS_SLOTS; i++) {
        n += (ngx_http_sa_metrics_sh->slots[i].subscriber != 0);
    }

    return n;
}


#define NGX_HTTP_SA_METRIC(help, type, name)                                  \
    "# HELP " name " " help "\n# TYPE " name " " type "\n"


static u_char *
ngx_http_sa_metrics_text(u_char *p, ngx_atomic_uint_t *req,
    ngx_atomic_uint_t *cnt, ngx_atomic_uint_t *lat, ngx_atomic_uint_t usec,
    ngx_http_sa_cache_t *cache)
{
    ngx_uint_t         i;
    ngx_atomic_uint_t  cumulative;

    p = ngx_sprintf(p, NGX_HTTP_SA_METRIC("Requests judged, by $sa_status.",
                                          "counter", "sa_requests_total"));
    for (i = 0; i < NGX_HTTP_SA_STATUSES; i++) {
        p = ngx_sprintf(p, "sa_requests_total{status=\"%V\"} %uA\n",
                        &ngx_http_sa_statuses[i].name, req[i]);
    }

    if (cache) {
        p = ngx_sprintf(p,
                NGX_HTTP_SA_METRIC("Lookups answered by sa_cache.", "counter",
                                   "sa_cache_hits_total")
                "sa_cache_hits_total %uA\n"
                NGX_HTTP_SA_METRIC("Lookups sa_cache could not answer.",
                                   "counter", "sa_cache_misses_total")
                "sa_cache_misses_total %uA\n"
                NGX_HTTP_SA_METRIC("Entries in sa_cache.", "gauge",
                                   "sa_cache_entries")
                "sa_cache_entries %uA\n"
                NGX_HTTP_SA_METRIC("Entries sa_cache dropped for room.",
                                   "counter", "sa_cache_evictions_total")
                "sa_cache_evictions_total %uA\n",
                cnt[NGX_HTTP_SA_M_CACHE_HIT], cnt[NGX_HTTP_SA_M_CACHE_MISS],
                ngx_http_sa_cache_entries(cache),
                cnt[NGX_HTTP_SA_M_CACHE_EVICTION]);
    }

    p = ngx_sprintf(p,
            NGX_HTTP_SA_METRIC("Commands sent to Redis.", "counter",
                               "sa_redis_commands_total")
            "sa_redis_commands_total %uA\n"
            NGX_HTTP_SA_METRIC("Redis failures, by kind.", "counter",
                               "sa_redis_errors_total")
            "sa_redis_errors_total{kind=\"timeout\"} %uA\n"
            "sa_redis_errors_total{kind=\"refused\"} %uA\n"
            "sa_redis_errors_total{kind=\"protocol\"} %uA\n"
            NGX_HTTP_SA_METRIC("Connections to Redis made again.", "counter",
                               "sa_redis_reconnects_total")
            "sa_redis_reconnects_total %uA\n"
            NGX_HTTP_SA_METRIC("Record signatures checked (Ed25519).",
                               "counter", "sa_signature_checks_total")
            "sa_signature_checks_total %uA\n"
            NGX_HTTP_SA_METRIC("Time from a GET to its reply.", "histogram",
                               "sa_redis_latency_seconds"),
            cnt[NGX_HTTP_SA_M_REDIS_COMMAND], cnt[NGX_HTTP_SA_M_REDIS_TIMEOUT],
            cnt[NGX_HTTP_SA_M_REDIS_REFUSED],
            cnt[NGX_HTTP_SA_M_REDIS_PROTOCOL],
            cnt[NGX_HTTP_SA_M_REDIS_RECONNECT],
            cnt[NGX_HTTP_SA_M_SIGNATURE_CHECK]);

    cumulative = 0;

    for (i = 0; i < NGX_HTTP_SA_BUCKETS; i++) {
        cumulative += lat[i];
        p = ngx_sprintf(p, "sa_redis_latency_seconds_bucket{le=\"%uL.%06uL\"}"
                        " %uA\n", ngx_http_sa_buckets[i] / 1000000,
                        ngx_http_sa_buckets[i] % 1000000, cumulative);
    }

    cumulative += lat[NGX_HTTP_SA_BUCKETS];

    p = ngx_sprintf(p, "sa_redis_latency_seconds_bucket{le=\"+Inf\"} %uA\n"
                    "sa_redis_latency_seconds_sum %uA.%06uA\n"
                    "sa_redis_latency_seconds_count %uA\n",
                    cumulative, usec / 1000000, usec % 1000000, cumulative);

    p = ngx_sprintf(p,
            NGX_HTTP_SA_METRIC("Workers subscribed to invalidations.",
                               "gauge", "sa_subscribers_up")
            "sa_subscribers_up %ui\n",
            ngx_http_sa_metrics_subscribers());

    return p;
}


static ngx_int_t
ngx_http_sa_metrics_handler(ngx_http_request_t *r)
{
    size_t                       size;
    ngx_int_t                    rc;
    ngx_buf_t                   *b;
    ngx_uint_t                   i, j;
    ngx_chain_t                  out;
    ngx_atomic_uint_t            req[NGX_HTTP_SA_STATUSES];
    ngx_atomic_uint_t            cnt[NGX_HTTP_SA_M_COUNTERS];
    ngx_atomic_uint_t            lat[NGX_HTTP_SA_BUCKETS + 1], usec;
    ngx_http_sa_main_conf_t     *smcf;
    ngx_http_sa_metrics_slot_t  *s;

    if (!(r->method & (NGX_HTTP_GET|NGX_HTTP_HEAD))) {
        return NGX_HTTP_NOT_ALLOWED;
    }

    rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) {
        return rc;
    }

    if (ngx_http_sa_metrics_sh == NULL) {
        return NGX_HTTP_NOT_FOUND;          /* no sa_auth anywhere */
    }

    ngx_memzero(req, sizeof(req));
    ngx_memzero(cnt, sizeof(cnt));
    ngx_memzero(lat, sizeof(lat));
    usec = 0;

    /* reads only: a scrape never waits for a worker, nor a worker for it */
    for (i = 0; i < NGX_HTTP_SA_METRICS_SLOTS; i++) {
        s = &ngx_http_sa_metrics_sh->slots[i];

        for (j = 0; j < NGX_HTTP_SA_STATUSES; j++) {
            req[j] += s->requests[j];
        }
        for (j = 0; j < NGX_HTTP_SA_M_COUNTERS; j++) {
            cnt[j] += s->counters[j];
        }
        for (j = 0; j <= NGX_HTTP_SA_BUCKETS; j++) {
            lat[j] += s->latency[j];
        }
        usec += s->latency_usec;
    }

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sa_module);

    size = 8192;

    b = ngx_create_temp_buf(r->pool, size);
    if (b == NULL) {
        return NGX_HTTP_INTERNAL_SERVER_ERROR;
    }

    b->last = ngx_http_sa_metrics_text(b->pos, req, cnt, lat, usec,
                                       smcf->cache);
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_length_n = b->last - b->pos;
    ngx_str_set(&r->headers_out.content_type,
                "text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.content_type_len = sizeof("text/plain") - 1;

    rc = ngx_http_send_header(r);

    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) {
        return rc;
    }

    out.buf = b;
    out.next = NULL;

    return ngx_http_output_filter(r, &out);
}


char *
ngx_http_sa_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);
    clcf->handler = ngx_http_sa_metrics_handler;

    return NGX_CONF_OK;
}
