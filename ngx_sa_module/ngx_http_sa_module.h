/*
 * ngx_http_sa_module: what its files share.
 *
 *   ngx_http_sa_module.c    directives, configuration, worker start and stop
 *   ngx_http_sa_handler.c   the phase handlers, the request's verdict
 *   ngx_http_sa_lookup.c    a token's GET, shared by its waiting requests;
 *                           the reply read once and stored in the cache
 *   ngx_http_sa_effects.c   last use and token.denied, not awaited
 *   ngx_http_sa_response.c  RFC 6750 responses, the credential hidden
 *   ngx_http_sa_variables.c the $sa_* variables
 *   ngx_http_sa_redis.c     the worker's Redis connections, heartbeats,
 *                           the sentinel that says where the master is
 *   ngx_http_sa_cache.c     the shared-memory cache, ids' hash and trees
 *   ngx_http_sa_verified.c  what this worker verified (records, versions)
 *   ngx_http_sa_metrics.c   sa_metrics: counters in a zone of their own
 *   ngx_http_sa_ratelimit.c sa_rate_limit: rates and quotas in a zone
 *   ngx_http_sa_sync.c      usage and shared counters, batched to Redis
 */

#ifndef NGX_HTTP_SA_MODULE_H
#define NGX_HTTP_SA_MODULE_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "sa_keys.h"
#include "sa_record.h"
#include "ngx_http_sa_cache.h"
#include "ngx_http_sa_redis.h"
#include "ngx_http_sa_metrics.h"
#include "ngx_http_sa_ratelimit.h"
#include "ngx_http_sa_sync.h"


#define NGX_HTTP_SA_VERIFY_KEYS  4

/* the longest sa_redis_prefix: keys are built in fixed buffers */
#define NGX_HTTP_SA_PREFIX_MAX  100
#define NGX_HTTP_SA_KEY_MAX     (NGX_HTTP_SA_PREFIX_MAX                     \
                                 + sizeof(SA_KEY_TOKEN) - 1 + SA_TOKEN_ID_LEN \
                                 + sizeof(SA_KEY_USED) - 1)


/*
 * What one worker process owns (tables, locks, connections, timers): made
 * from the cycle pool by init_process and hung on the main conf, of which
 * every worker has its own copy once forked.  Each part is private to the
 * file named; what runs later (timers, Redis callbacks, connections)
 * reaches its part through its data pointer.  The zones hold what workers
 * share.
 */
typedef struct ngx_http_sa_lookup_s   ngx_http_sa_lookup_t;
typedef struct ngx_http_sa_effects_s  ngx_http_sa_effects_t;

typedef struct {
    ngx_http_sa_lookup_t      *lookup;        /* ngx_http_sa_lookup.c */
    ngx_http_sa_effects_t     *effects;       /* ngx_http_sa_effects.c */
    ngx_http_sa_redis_worker_t  *redis;       /* ngx_http_sa_redis.c */
    ngx_http_sa_sync_t        *sync;          /* ngx_http_sa_sync.c, with
                                                 sa_rate_limit */
} ngx_http_sa_worker_t;


typedef struct {
    ngx_http_sa_redis_conf_t  *redis;
    ngx_http_sa_redis_ssl_conf_t  redis_ssl;  /* sa_redis_ssl_* */
    ngx_msec_t                 timeout;
    ngx_str_t                  prefix;
    /* sa_verify_key, up to 4: a record verifies with any (key rotation) */
    u_char                     verify_keys[NGX_HTTP_SA_VERIFY_KEYS]
                                          [SA_PUBLICKEY_LEN];
    ngx_uint_t                 nverify_keys;
    ngx_flag_t                 used;          /* some sa_auth is not off */
    ngx_flag_t                 metrics;       /* some sa_metrics */
    ngx_http_sa_cache_t       *cache;
    ngx_http_sa_rl_conf_t      rl;            /* sa_rate_limit (zone NULL:
                                                 none) */
    ngx_http_sa_sync_conf_t    sync;          /* its sync, in the worker */
    ngx_flag_t                 rate_limit_off; /* sa_rate_limit off */
    ngx_int_t                  authorization_variable;   /* its index */
    ngx_http_sa_worker_t      *worker;        /* set in the worker */
} ngx_http_sa_main_conf_t;


typedef struct {
    ngx_str_t                  realm;         /* empty: off */
    ngx_array_t               *scopes;        /* of sa_scope_group_t */
    ngx_http_complex_value_t  *application;
    ngx_flag_t                 hide_credentials;
    time_t                     record_max_age; /* sa_record_max_age; 0: off */
    ngx_flag_t                 rate_limit_headers;
} ngx_http_sa_loc_conf_t;


/*
 * Every $sa_status, in the order of the contract: its name, the access
 * phase's answer, the level of its log line.  The enum and the table
 * ngx_http_sa_statuses[] are both made from this list.
 */
#define NGX_HTTP_SA_STATUS_LIST(X)                                            \
    X(OK, "ok", NGX_OK, NGX_LOG_DEBUG)                                        \
    X(MISSING, "missing", NGX_HTTP_UNAUTHORIZED, NGX_LOG_INFO)                \
    X(MALFORMED, "malformed", NGX_HTTP_UNAUTHORIZED, NGX_LOG_INFO)            \
    X(UNKNOWN, "unknown", NGX_HTTP_UNAUTHORIZED, NGX_LOG_INFO)                \
    X(EXPIRED, "expired", NGX_HTTP_UNAUTHORIZED, NGX_LOG_INFO)                \
    X(REVOKED, "revoked", NGX_HTTP_UNAUTHORIZED, NGX_LOG_INFO)                \
    /* a record that fails verification is somebody's doing: error */       \
    X(TAMPERED, "tampered", NGX_HTTP_UNAUTHORIZED, NGX_LOG_ERR)              \
    /* sa_record_max_age: no fresh_until, past it, or too far ahead */      \
    X(LAPSED, "lapsed", NGX_HTTP_UNAUTHORIZED, NGX_LOG_WARN)                 \
    X(INSUFFICIENT_SCOPE, "insufficient_scope", NGX_HTTP_FORBIDDEN,           \
      NGX_LOG_INFO)                                                           \
    X(FORBIDDEN_APPLICATION, "forbidden_application", NGX_HTTP_FORBIDDEN,     \
      NGX_LOG_INFO)                                                           \
    /* the token's allow_from does not hold the client's address */         \
    X(FORBIDDEN_SOURCE, "forbidden_source", NGX_HTTP_FORBIDDEN, NGX_LOG_INFO) \
    /* the token's signed rate (sa_rate_limit) */                            \
    X(RATE_LIMITED, "rate_limited", NGX_HTTP_TOO_MANY_REQUESTS, NGX_LOG_INFO) \
    /* the token's signed quota for the day or month (sa_rate_limit) */     \
    X(QUOTA_EXCEEDED, "quota_exceeded", NGX_HTTP_TOO_MANY_REQUESTS,           \
      NGX_LOG_INFO)                                                           \
    /* Redis' failures are logged where they happen, at error level */      \
    X(UNAVAILABLE, "unavailable", NGX_HTTP_SERVICE_UNAVAILABLE, NGX_LOG_INFO)


typedef enum {
#define NGX_HTTP_SA_STATUS_ENUM(id, name, rc, level)  NGX_HTTP_SA_##id,
    NGX_HTTP_SA_STATUS_LIST(NGX_HTTP_SA_STATUS_ENUM)
#undef NGX_HTTP_SA_STATUS_ENUM
    NGX_HTTP_SA_STATUSES
} ngx_http_sa_status_e;


/* what a GET brought back, read once for every request waiting on it */
typedef struct {
    ngx_http_sa_status_e       status;        /* OK: record is genuine */
    sa_token_record_t         *record;
    sa_rec_err_t               err;           /* why TAMPERED */
    uint64_t                   version;       /* of a replayed older record */
    unsigned                   older:1;
    unsigned                   borrowed:1;    /* record: the worker's memory */
} ngx_http_sa_answer_t;


typedef struct ngx_http_sa_lock_s  ngx_http_sa_lock_t;


/*
 * The request's verdict.  It lives in a pool cleanup, so that it outlives
 * the internal redirects that zero the module contexts (as in
 * ngx_http_realip_module): a request is verified once.  Subrequests share
 * their main request's pool and its verdict on the credential; each
 * subrequest judged by a location with sa_auth has a context of its own
 * (module context only, no cleanup) for that location's verdict.
 */
typedef struct {
    ngx_http_request_t        *request;
    ngx_http_sa_status_e       status;
    ngx_int_t                  rc;            /* NGX_AGAIN until judged */
    ngx_http_sa_loc_conf_t    *judged;        /* by whose rules */
    sa_token_record_t         *record;        /* genuine, in r->pool */
    sa_scope_group_t          *missing;       /* the unsatisfied sa_scope */
    ngx_http_sa_lock_t        *lock;          /* the GET it waits for */
    ngx_queue_t                queue;         /* in lock->waiters; of a
                                                 subrequest: in its main's
                                                 subrequests */
    ngx_queue_t                subrequests;   /* parked until answered */
    ngx_event_t                wake;          /* posted when it is answered */
    ngx_http_sa_answer_t       answer;        /* record copied to r->pool */
    u_char                     id[SA_TOKEN_ID_LEN];
    const u_char              *token;         /* in the request's header */
    sa_token_record_t         *proven;        /* the token is this one's */
    unsigned                   has_id:1;
    unsigned                   bearer:1;      /* "Bearer" was presented */
    unsigned                   answered:1;
    unsigned                   cached:1;      /* answered from the cache */
    unsigned                   use_due:1;     /* and its use is to record */
    unsigned                   retry_after:1; /* header added */
    unsigned                   main_waits:1;  /* in its access phase */
    unsigned                   parked:1;      /* a subrequest, waiting */
    unsigned                   rated:1;       /* counted by sa_rate_limit */
    unsigned                   genuine:1;     /* the token's hash matched */
    time_t                     rl_retry;      /* rate_limited,
                                                 quota_exceeded: Retry-After */
    ngx_http_sa_status_e       rl_status;     /* what sa_rate_limit said */
} ngx_http_sa_ctx_t;


typedef struct {
    ngx_str_t                  name;          /* $sa_status */
    ngx_int_t                  rc;            /* for the access phase */
    ngx_uint_t                 level;         /* of its log line */
} ngx_http_sa_status_t;

extern ngx_http_sa_status_t      ngx_http_sa_statuses[NGX_HTTP_SA_STATUSES];
extern ngx_module_t              ngx_http_sa_module;


/* ngx_http_sa_handler.c */
ngx_int_t ngx_http_sa_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_sa_subrequest_handler(ngx_http_request_t *r);
ngx_int_t ngx_http_sa_access_last(ngx_http_request_t *r);
ngx_http_sa_ctx_t *ngx_http_sa_get_ctx(ngx_http_request_t *r);
ngx_int_t ngx_http_sa_handler_init_process(ngx_cycle_t *cycle,
    ngx_http_sa_main_conf_t *smcf);
void ngx_http_sa_handler_exit_process(ngx_http_sa_main_conf_t *smcf);

typedef enum {
    NGX_HTTP_SA_FRESH = 0,
    NGX_HTTP_SA_FRESH_NONE,           /* no fresh_until */
    NGX_HTTP_SA_FRESH_PAST,           /* fresh_until has passed */
    NGX_HTTP_SA_FRESH_AHEAD           /* more than sa_record_max_age ahead */
} ngx_http_sa_fresh_e;

ngx_http_sa_fresh_e ngx_http_sa_record_fresh(const sa_token_record_t *rec,
    time_t max_age, time_t now);

/* ngx_http_sa_response.c: calls nothing of the files above */
ngx_int_t ngx_http_sa_respond(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_loc_conf_t *slcf);
ngx_int_t ngx_http_sa_respond_unavailable(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx);

/* ngx_http_sa_variables.c */
ngx_int_t ngx_http_sa_add_variables(ngx_conf_t *cf);

/*
 * The one place that names the module's keys in Redis: <prefix><name>
 * (SA_KEY_EVENTS, SA_KEY_INVALIDATE), and for a token <prefix>tok:<id>,
 * with used <prefix>tok:<id>:used.  key has NGX_HTTP_SA_KEY_MAX bytes: the
 * prefix is limited when the configuration is read.  Returns the end.
 */
static ngx_inline u_char *
ngx_http_sa_key(u_char *key, ngx_str_t *prefix, const char *name, u_char *id,
    ngx_uint_t used)
{
    u_char  *p;

    p = ngx_cpymem(key, prefix->data, prefix->len);
    p = ngx_cpymem(p, name, ngx_strlen(name));

    if (id) {
        p = ngx_cpymem(p, id, SA_TOKEN_ID_LEN);

        if (used) {
            p = ngx_cpymem(p, SA_KEY_USED, sizeof(SA_KEY_USED) - 1);
        }
    }

    return p;
}


#endif /* NGX_HTTP_SA_MODULE_H */
