/*
 * ngx_http_sa_module: service-account bearer tokens, verified against
 * signed records in Redis, with per-route scopes.
 *
 * The access handler parses "Authorization: Bearer <token>", refuses a
 * malformed token without touching Redis, then sends one GET through the
 * worker's asynchronous Redis connection (ngx_http_sa_redis.c) and parks the
 * request.  The reply resumes it: signature, hash, expiry, application and
 * scopes are checked, and the handler runs again to return the outcome, as
 * in ngx_http_auth_request_module.
 *
 * Token parsing, hashing, signatures, the record codec and scope matching
 * live in core/, shared with sa-admin.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "sa_record.h"
#include "ngx_http_sa_cache.h"
#include "ngx_http_sa_redis.h"


/* without a cache, last uses are remembered per worker in a small table */
#define NGX_HTTP_SA_USED_SLOTS  65536   /* 1.5 MiB a worker: few collisions */
#define NGX_HTTP_SA_USED_EVERY  60


typedef struct {
    ngx_http_sa_redis_conf_t  *redis;
    ngx_msec_t                 timeout;
    ngx_str_t                  prefix;
    u_char                     verify_key[SA_PUBLICKEY_LEN];
    ngx_flag_t                 verify_key_set;
    ngx_flag_t                 used;          /* some sa_auth is not off */
    ngx_http_sa_cache_t       *cache;
} ngx_http_sa_main_conf_t;


typedef struct {
    ngx_str_t                  realm;         /* empty: off */
    ngx_array_t               *scopes;        /* of sa_scope_group_t */
    ngx_http_complex_value_t  *application;
    ngx_flag_t                 hide_credentials;
} ngx_http_sa_loc_conf_t;


/* $sa_status values, in the order of the contract */
typedef enum {
    NGX_HTTP_SA_OK = 0,
    NGX_HTTP_SA_MISSING,
    NGX_HTTP_SA_MALFORMED,
    NGX_HTTP_SA_UNKNOWN,
    NGX_HTTP_SA_EXPIRED,
    NGX_HTTP_SA_REVOKED,
    NGX_HTTP_SA_TAMPERED,
    NGX_HTTP_SA_INSUFFICIENT_SCOPE,
    NGX_HTTP_SA_FORBIDDEN_APPLICATION,
    NGX_HTTP_SA_UNAVAILABLE
} ngx_http_sa_status_e;


typedef struct {
    ngx_http_sa_status_e       status;
    ngx_int_t                  rc;            /* NGX_AGAIN while waiting */
    sa_token_record_t         *record;        /* verified, in r->pool */
    sa_scope_group_t          *missing;       /* the unsatisfied sa_scope */
    ngx_http_request_t        *request;
    struct ngx_http_sa_flight_s  *flight;     /* the GET it waits for */
    ngx_queue_t                link;          /* in flight->waiters */
    u_char                     id[SA_TOKEN_ID_LEN];
    u_char                     hash[SA_HASH_LEN];
    unsigned                   has_id:1;
} ngx_http_sa_ctx_t;


typedef struct {
    u_char                     id[SA_TOKEN_ID_LEN];
    time_t                     written;
} ngx_http_sa_used_slot_t;


/*
 * One GET on its way for one token, and every request of this worker that
 * waits for it: concurrent misses for a token cost one Redis round trip.
 * The flight outlives its requests: hiredis calls back even when they are
 * gone, and the flight is freed then.
 */
typedef struct ngx_http_sa_flight_s {
    ngx_rbtree_node_t          node;          /* key: crc32 of the id */
    u_char                     id[SA_TOKEN_ID_LEN];
    ngx_queue_t                waiters;       /* of ngx_http_sa_ctx_t */
    ngx_uint_t                 generation;    /* of invalidations, at GET */
    ngx_event_t                timer;
    unsigned                   landed:1;      /* answered or timed out */
} ngx_http_sa_flight_t;


/* what a GET brought back, read once for all its waiters */
typedef struct {
    ngx_http_sa_status_e       status;        /* OK: rec holds the record */
    sa_rec_err_t               err;
    sa_token_record_t         *rec;           /* malloc()ed */
    unsigned                   unavailable:1;
    unsigned                   older:1;
} ngx_http_sa_landing_t;


/* per worker: is the invalidation channel up, and how many messages came */
static ngx_uint_t                ngx_http_sa_subscribed;
static ngx_uint_t                ngx_http_sa_generation;
static ngx_http_sa_cache_t      *ngx_http_sa_worker_cache;
static ngx_http_sa_used_slot_t  *ngx_http_sa_used_slots;
static ngx_rbtree_t              ngx_http_sa_flights;
static ngx_rbtree_node_t         ngx_http_sa_flights_sentinel;
static ngx_uint_t                ngx_http_sa_exiting;


static ngx_str_t  ngx_http_sa_status_names[] = {
    ngx_string("ok"),
    ngx_string("missing"),
    ngx_string("malformed"),
    ngx_string("unknown"),
    ngx_string("expired"),
    ngx_string("revoked"),
    ngx_string("tampered"),
    ngx_string("insufficient_scope"),
    ngx_string("forbidden_application"),
    ngx_string("unavailable")
};


static ngx_int_t ngx_http_sa_handler(ngx_http_request_t *r);
static ngx_int_t ngx_http_sa_add_variables(ngx_conf_t *cf);
static ngx_int_t ngx_http_sa_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_sa_init_process(ngx_cycle_t *cycle);
static void ngx_http_sa_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_sa_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_sa_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_sa_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_sa_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_sa_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_sa_verify_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sa_auth(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_sa_scope(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_sa_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);


static ngx_command_t  ngx_http_sa_commands[] = {

    { ngx_string("sa_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_sa_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sa_redis_timeout"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_msec_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sa_main_conf_t, timeout),
      NULL },

    { ngx_string("sa_redis_prefix"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sa_main_conf_t, prefix),
      NULL },

    { ngx_string("sa_verify_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_http_sa_verify_key,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sa_cache"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_sa_cache,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sa_auth"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_HTTP_LMT_CONF
                        |NGX_CONF_TAKE1,
      ngx_http_sa_auth,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sa_scope"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_HTTP_LMT_CONF
                        |NGX_CONF_1MORE,
      ngx_http_sa_scope,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sa_application"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_HTTP_LMT_CONF
                        |NGX_CONF_TAKE1,
      ngx_http_set_complex_value_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sa_loc_conf_t, application),
      NULL },

    { ngx_string("sa_hide_credentials"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_HTTP_LMT_CONF
                        |NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sa_loc_conf_t, hide_credentials),
      NULL },

      ngx_null_command
};


static ngx_http_module_t  ngx_http_sa_module_ctx = {
    ngx_http_sa_add_variables,             /* preconfiguration */
    ngx_http_sa_init,                      /* postconfiguration */

    ngx_http_sa_create_main_conf,          /* create main configuration */
    ngx_http_sa_init_main_conf,            /* init main configuration */

    NULL,                                  /* create server configuration */
    NULL,                                  /* merge server configuration */

    ngx_http_sa_create_loc_conf,           /* create location configuration */
    ngx_http_sa_merge_loc_conf             /* merge location configuration */
};


ngx_module_t  ngx_http_sa_module = {
    NGX_MODULE_V1,
    &ngx_http_sa_module_ctx,               /* module context */
    ngx_http_sa_commands,                  /* module directives */
    NGX_HTTP_MODULE,                       /* module type */
    NULL,                                  /* init master */
    NULL,                                  /* init module */
    ngx_http_sa_init_process,              /* init process */
    NULL,                                  /* init thread */
    NULL,                                  /* exit thread */
    ngx_http_sa_exit_process,              /* exit process */
    NULL,                                  /* exit master */
    NGX_MODULE_V1_PADDING
};


static void *
ngx_http_sa_create_main_conf(ngx_conf_t *cf)
{
    ngx_http_sa_main_conf_t  *smcf;

    smcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_sa_main_conf_t));
    if (smcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     smcf->redis = NULL;
     *     smcf->prefix = { 0, NULL };
     */

    smcf->timeout = NGX_CONF_UNSET_MSEC;
    smcf->verify_key_set = 0;

    if (sa_crypto_init() != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "libsodium failed to start");
        return NULL;
    }

    return smcf;
}


static char *
ngx_http_sa_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_sa_main_conf_t  *smcf = conf;

    ngx_conf_init_msec_value(smcf->timeout, 200);

    if (smcf->redis) {
        smcf->redis->timeout = smcf->timeout;
    }

    if (smcf->prefix.data == NULL) {
        ngx_str_set(&smcf->prefix, "sa:");
    }

    return NGX_CONF_OK;
}


static void *
ngx_http_sa_create_loc_conf(ngx_conf_t *cf)
{
    ngx_http_sa_loc_conf_t  *slcf;

    slcf = ngx_pcalloc(cf->pool, sizeof(ngx_http_sa_loc_conf_t));
    if (slcf == NULL) {
        return NULL;
    }

    /*
     * set by ngx_pcalloc():
     *
     *     slcf->realm = { 0, NULL };
     *     slcf->scopes = NULL;
     *     slcf->application = NULL;
     */

    slcf->hide_credentials = NGX_CONF_UNSET;

    return slcf;
}


static char *
ngx_http_sa_merge_loc_conf(ngx_conf_t *cf, void *parent, void *child)
{
    ngx_http_sa_loc_conf_t  *prev = parent;
    ngx_http_sa_loc_conf_t  *conf = child;

    if (conf->realm.data == NULL) {
        conf->realm = prev->realm;
    }

    /* sa_scope lines of an inner block replace the inherited ones */
    if (conf->scopes == NULL) {
        conf->scopes = prev->scopes;
    }

    if (conf->application == NULL) {
        conf->application = prev->application;
    }

    ngx_conf_merge_value(conf->hide_credentials, prev->hide_credentials, 1);

    return NGX_CONF_OK;
}


static char *
ngx_http_sa_redis_option(ngx_conf_t *cf, ngx_http_sa_redis_conf_t *rc,
    ngx_str_t *arg)
{
    if (arg->len > 3 && ngx_strncmp(arg->data, "db=", 3) == 0) {
        rc->db = ngx_atoi(arg->data + 3, arg->len - 3);
        if (rc->db == NGX_ERROR) {
            return "has an invalid \"db\" value";
        }
        return NGX_CONF_OK;
    }

    if (arg->len > 9 && ngx_strncmp(arg->data, "password=", 9) == 0) {
        rc->password.data = arg->data + 9;
        rc->password.len = arg->len - 9;
        return NGX_CONF_OK;
    }

    if (arg->len > 5 && ngx_strncmp(arg->data, "user=", 5) == 0) {
        rc->user.data = arg->data + 5;
        rc->user.len = arg->len - 5;
        return NGX_CONF_OK;
    }

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"", arg);
    return NGX_CONF_ERROR;
}


/*
 * "host:port" is resolved here, once: hiredis would resolve with a blocking
 * getaddrinfo() on every reconnect, inside a worker.
 */
static char *
ngx_http_sa_redis_address(ngx_conf_t *cf, ngx_http_sa_redis_conf_t *rc)
{
    ngx_url_t   u;
    u_char     *p;

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = rc->address;
    u.default_port = 6379;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s in sa_redis \"%V\"",
                               u.err, &u.url);
        }
        return NGX_CONF_ERROR;
    }

    if (u.naddrs == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sa_redis \"%V\" has no address", &u.url);
        return NGX_CONF_ERROR;
    }

    if (u.family == AF_UNIX) {
        /* "unix:/path": the path follows the 5-byte "unix:" prefix */
        rc->unix_path.len = rc->address.len - 5;
        rc->unix_path.data = ngx_pnalloc(cf->pool, rc->unix_path.len + 1);
        if (rc->unix_path.data == NULL) {
            return NGX_CONF_ERROR;
        }
        p = ngx_cpymem(rc->unix_path.data, rc->address.data + 5,
                       rc->unix_path.len);
        *p = '\0';
        return NGX_CONF_OK;
    }

    rc->port = ngx_inet_get_port(u.addrs[0].sockaddr);

    rc->host.data = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (rc->host.data == NULL) {
        return NGX_CONF_ERROR;
    }

    rc->host.len = ngx_sock_ntop(u.addrs[0].sockaddr, u.addrs[0].socklen,
                                 rc->host.data, NGX_SOCKADDR_STRLEN, 0);
    rc->host.data[rc->host.len] = '\0';

    return NGX_CONF_OK;
}


static char *
ngx_http_sa_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sa_main_conf_t *smcf = conf;

    char                      *rv;
    ngx_str_t                 *value;
    ngx_uint_t                 i;
    ngx_http_sa_redis_conf_t  *rc;

    if (smcf->redis) {
        return "is duplicate";
    }

    rc = ngx_pcalloc(cf->pool, sizeof(ngx_http_sa_redis_conf_t));
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;
    rc->address = value[1];

    for (i = 2; i < cf->args->nelts; i++) {
        rv = ngx_http_sa_redis_option(cf, rc, &value[i]);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    if (ngx_http_sa_redis_address(cf, rc) != NGX_CONF_OK) {
        return NGX_CONF_ERROR;
    }

    smcf->redis = rc;

    return NGX_CONF_OK;
}


static char *
ngx_http_sa_verify_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sa_main_conf_t *smcf = conf;

    char        err[512];
    ngx_str_t  *value, path;

    if (smcf->verify_key_set) {
        return "is duplicate";
    }

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* ngx_conf_full_name() returns a NUL-terminated copy */
    if (sa_key_load((char *) path.data, SA_KEY_VERIFY, smcf->verify_key,
                    err, sizeof(err))
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "sa_verify_key %s", err);
        return NGX_CONF_ERROR;
    }

    smcf->verify_key_set = 1;

    return NGX_CONF_OK;
}


static char *
ngx_http_sa_auth(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sa_loc_conf_t *slcf = conf;

    ngx_str_t                *value;
    ngx_http_sa_main_conf_t  *smcf;

    if (slcf->realm.data) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        ngx_str_set(&slcf->realm, "");
        return NGX_CONF_OK;
    }

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_sa_module);
    smcf->used = 1;

    /* the realm goes inside a quoted header parameter */
    if (value[1].len == 0 || ngx_strlchr(value[1].data,
                                         value[1].data + value[1].len, '"'))
    {
        return "needs a non-empty realm without quotes";
    }

    slcf->realm = value[1];

    return NGX_CONF_OK;
}


static char *
ngx_http_sa_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sa_main_conf_t *smcf = conf;

    ngx_str_t  *value;

    if (smcf->cache) {
        return "is duplicate";
    }

    smcf->cache = ngx_pcalloc(cf->pool, sizeof(ngx_http_sa_cache_t));
    if (smcf->cache == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;

    return ngx_http_sa_cache_conf(cf, smcf->cache, &value[1],
                                  cf->args->nelts - 1, &ngx_http_sa_module);
}


/* each "sa_scope a b;" line is one group: any of a, b satisfies it */
static char *
ngx_http_sa_scope(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sa_loc_conf_t *slcf = conf;

    ngx_str_t         *value;
    ngx_uint_t         i;
    sa_str_t          *scopes;
    sa_scope_group_t  *group;

    if (slcf->scopes == NULL) {
        slcf->scopes = ngx_array_create(cf->pool, 2, sizeof(sa_scope_group_t));
        if (slcf->scopes == NULL) {
            return NGX_CONF_ERROR;
        }
    }

    value = cf->args->elts;

    scopes = ngx_palloc(cf->pool, (cf->args->nelts - 1) * sizeof(sa_str_t));
    if (scopes == NULL) {
        return NGX_CONF_ERROR;
    }

    for (i = 1; i < cf->args->nelts; i++) {
        if (!sa_scope_valid_required((char *) value[i].data, value[i].len)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "invalid scope \"%V\": expected "
                               "\"resource:action\" of [a-z0-9_.-]",
                               &value[i]);
            return NGX_CONF_ERROR;
        }

        scopes[i - 1].data = (char *) value[i].data;
        scopes[i - 1].len = value[i].len;
    }

    group = ngx_array_push(slcf->scopes);
    if (group == NULL) {
        return NGX_CONF_ERROR;
    }

    group->scopes = scopes;
    group->n = cf->args->nelts - 1;

    return NGX_CONF_OK;
}


/* the request path */

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
static ngx_int_t ngx_http_sa_respond(ngx_http_request_t *r,
    ngx_http_sa_ctx_t *ctx, ngx_http_sa_loc_conf_t *slcf);


static ngx_int_t
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
    sa_token_record_t  *rec;

    ngx_http_sa_redis_poll_subscriber();

    if (!ngx_http_sa_subscribed) {
        return NGX_DECLINED;
    }

    switch (ngx_http_sa_cache_lookup(cache, ctx->id, 0, r->pool, &rec)) {

    case NGX_HTTP_SA_CACHE_HIT:
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
    sa_token_record_t        *rec;
    ngx_http_sa_main_conf_t  *smcf;

    smcf = ngx_http_get_module_main_conf(r, ngx_http_sa_module);

    if (smcf->cache && smcf->cache->stale
        && ngx_http_sa_cache_lookup(smcf->cache, ctx->id, 1, r->pool, &rec)
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


/* the response: headers of RFC 6750, or the credentials hidden on success */

static ngx_int_t
ngx_http_sa_challenge(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_loc_conf_t *slcf)
{
    size_t             len;
    u_char            *p;
    ngx_uint_t         i;
    ngx_table_elt_t   *h;
    sa_scope_group_t  *g = ctx->missing;

    len = sizeof("Bearer realm=\"\"") - 1 + slcf->realm.len
          + sizeof(", error=\"insufficient_scope\"") - 1
          + sizeof(", scope=\"\"") - 1;

    for (i = 0; g && i < g->n; i++) {
        len += g->scopes[i].len + 1;
    }

    p = ngx_pnalloc(r->pool, len);
    if (p == NULL) {
        return NGX_ERROR;
    }

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "WWW-Authenticate");
    h->value.data = p;

    p = ngx_sprintf(p, "Bearer realm=\"%V\"", &slcf->realm);

    if (ctx->status == NGX_HTTP_SA_INSUFFICIENT_SCOPE
        || ctx->status == NGX_HTTP_SA_FORBIDDEN_APPLICATION)
    {
        p = ngx_cpymem(p, ", error=\"insufficient_scope\"",
                       sizeof(", error=\"insufficient_scope\"") - 1);

        if (g) {
            p = ngx_cpymem(p, ", scope=\"", sizeof(", scope=\"") - 1);
            for (i = 0; i < g->n; i++) {
                if (i) {
                    *p++ = ' ';
                }
                p = ngx_cpymem(p, g->scopes[i].data, g->scopes[i].len);
            }
            *p++ = '"';
        }

    } else if (ctx->status != NGX_HTTP_SA_MISSING) {
        p = ngx_cpymem(p, ", error=\"invalid_token\"",
                       sizeof(", error=\"invalid_token\"") - 1);
    }

    h->value.len = p - h->value.data;

    r->headers_out.www_authenticate = h;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sa_retry_after(ngx_http_request_t *r)
{
    ngx_table_elt_t  *h;

    h = ngx_list_push(&r->headers_out.headers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    h->hash = 1;
    ngx_str_set(&h->key, "Retry-After");
    ngx_str_set(&h->value, "1");

    return NGX_OK;
}


/*
 * The upstream must not see the token: take the header out of the list
 * (a list element cannot be marked as absent in 1.22).
 */
static void
ngx_http_sa_hide_credentials(ngx_http_request_t *r)
{
    ngx_uint_t        i;
    ngx_list_part_t  *part;
    ngx_table_elt_t  *h, *auth;

    auth = r->headers_in.authorization;
    if (auth == NULL) {
        return;
    }

    for (part = &r->headers_in.headers.part; part; part = part->next) {
        h = part->elts;

        for (i = 0; i < part->nelts; i++) {
            if (&h[i] != auth) {
                continue;
            }

            ngx_memmove(&h[i], &h[i + 1],
                        (part->nelts - i - 1) * sizeof(ngx_table_elt_t));
            part->nelts--;

            r->headers_in.authorization = NULL;
            return;
        }
    }
}


static ngx_int_t
ngx_http_sa_respond(ngx_http_request_t *r, ngx_http_sa_ctx_t *ctx,
    ngx_http_sa_loc_conf_t *slcf)
{
    switch (ctx->rc) {

    case NGX_OK:
        if (slcf->hide_credentials) {
            ngx_http_sa_hide_credentials(r);
        }
        return NGX_OK;

    case NGX_HTTP_UNAUTHORIZED:
    case NGX_HTTP_FORBIDDEN:
        if (ngx_http_sa_challenge(r, ctx, slcf) != NGX_OK) {
            return NGX_ERROR;
        }
        return ctx->rc;

    case NGX_HTTP_SERVICE_UNAVAILABLE:
        if (ngx_http_sa_retry_after(r) != NGX_OK) {
            return NGX_ERROR;
        }
        return ctx->rc;
    }

    return NGX_HTTP_INTERNAL_SERVER_ERROR;
}


/* variables */

typedef enum {
    NGX_HTTP_SA_VAR_ACCOUNT,
    NGX_HTTP_SA_VAR_ACCOUNT_NAME,
    NGX_HTTP_SA_VAR_ACCOUNT_EMAIL,
    NGX_HTTP_SA_VAR_TEAM,
    NGX_HTTP_SA_VAR_TOKEN_ID,
    NGX_HTTP_SA_VAR_SCOPES,
    NGX_HTTP_SA_VAR_STATUS
} ngx_http_sa_var_e;


static ngx_int_t
ngx_http_sa_scopes_value(ngx_http_request_t *r, sa_token_record_t *rec,
    ngx_http_variable_value_t *v)
{
    size_t   i, len;
    u_char  *p;

    len = 0;
    for (i = 0; i < rec->nscopes; i++) {
        len += rec->scopes[i].len + 1;
    }

    p = ngx_pnalloc(r->pool, len + 1);
    if (p == NULL) {
        return NGX_ERROR;
    }

    v->data = p;

    for (i = 0; i < rec->nscopes; i++) {
        if (i) {
            *p++ = ' ';
        }
        p = ngx_cpymem(p, rec->scopes[i].data, rec->scopes[i].len);
    }

    v->len = p - v->data;

    return NGX_OK;
}


static ngx_int_t
ngx_http_sa_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v,
    uintptr_t data)
{
    sa_str_t            *s;
    ngx_http_sa_ctx_t   *ctx;
    sa_token_record_t   *rec;

    ctx = ngx_http_get_module_ctx(r, ngx_http_sa_module);

    if (ctx == NULL || ctx->rc == NGX_AGAIN) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;

    rec = ctx->record;
    s = NULL;

    switch ((ngx_http_sa_var_e) data) {

    case NGX_HTTP_SA_VAR_STATUS:
        v->len = ngx_http_sa_status_names[ctx->status].len;
        v->data = ngx_http_sa_status_names[ctx->status].data;
        return NGX_OK;

    case NGX_HTTP_SA_VAR_TOKEN_ID:
        if (!ctx->has_id) {
            v->not_found = 1;
            return NGX_OK;
        }
        v->len = SA_TOKEN_ID_LEN;
        v->data = ctx->id;
        return NGX_OK;

    case NGX_HTTP_SA_VAR_SCOPES:
        if (rec == NULL) {
            v->not_found = 1;
            return NGX_OK;
        }
        return ngx_http_sa_scopes_value(r, rec, v);

    case NGX_HTTP_SA_VAR_ACCOUNT:
        s = rec ? &rec->account : NULL;
        break;

    case NGX_HTTP_SA_VAR_ACCOUNT_NAME:
        s = rec ? &rec->name : NULL;
        break;

    case NGX_HTTP_SA_VAR_ACCOUNT_EMAIL:
        s = rec ? &rec->email : NULL;
        break;

    case NGX_HTTP_SA_VAR_TEAM:
        s = rec ? &rec->team : NULL;
        break;
    }

    if (s == NULL) {
        v->not_found = 1;
        return NGX_OK;
    }

    v->len = s->len;
    v->data = (u_char *) s->data;

    return NGX_OK;
}


static ngx_http_variable_t  ngx_http_sa_vars[] = {

    { ngx_string("sa_account"), NULL, ngx_http_sa_variable,
      NGX_HTTP_SA_VAR_ACCOUNT, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sa_account_name"), NULL, ngx_http_sa_variable,
      NGX_HTTP_SA_VAR_ACCOUNT_NAME, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sa_account_email"), NULL, ngx_http_sa_variable,
      NGX_HTTP_SA_VAR_ACCOUNT_EMAIL, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sa_team"), NULL, ngx_http_sa_variable,
      NGX_HTTP_SA_VAR_TEAM, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sa_token_id"), NULL, ngx_http_sa_variable,
      NGX_HTTP_SA_VAR_TOKEN_ID, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sa_scopes"), NULL, ngx_http_sa_variable,
      NGX_HTTP_SA_VAR_SCOPES, NGX_HTTP_VAR_NOCACHEABLE, 0 },

    { ngx_string("sa_status"), NULL, ngx_http_sa_variable,
      NGX_HTTP_SA_VAR_STATUS, NGX_HTTP_VAR_NOCACHEABLE, 0 },

      ngx_http_null_variable
};


static ngx_int_t
ngx_http_sa_add_variables(ngx_conf_t *cf)
{
    ngx_http_variable_t  *var, *v;

    for (v = ngx_http_sa_vars; v->name.len; v++) {
        var = ngx_http_add_variable(cf, &v->name, v->flags);
        if (var == NULL) {
            return NGX_ERROR;
        }

        var->get_handler = v->get_handler;
        var->data = v->data;
    }

    return NGX_OK;
}


/* start-up */

static ngx_int_t
ngx_http_sa_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h;
    ngx_http_sa_main_conf_t    *smcf;
    ngx_http_core_main_conf_t  *cmcf;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_sa_module);

    if (!smcf->used) {
        return NGX_OK;
    }

    if (smcf->redis == NULL || !smcf->verify_key_set) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"sa_auth\" requires \"sa_redis\" and "
                      "\"sa_verify_key\" in the http block");
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_sa_handler;

    return NGX_OK;
}


static void ngx_http_sa_invalidated(u_char *data, size_t len);
static void ngx_http_sa_subscription(ngx_uint_t up);


static ngx_http_sa_main_conf_t *
ngx_http_sa_cycle_main_conf(ngx_cycle_t *cycle)
{
    ngx_http_conf_ctx_t  *ctx;

    ctx = (ngx_http_conf_ctx_t *) cycle->conf_ctx[ngx_http_module.index];
    if (ctx == NULL) {
        return NULL;
    }

    return ctx->main_conf[ngx_http_sa_module.ctx_index];
}


static ngx_int_t
ngx_http_sa_init_process(ngx_cycle_t *cycle)
{
    ngx_http_sa_main_conf_t  *smcf;

    u_char                   *p;
    ngx_str_t                 channel;

    smcf = ngx_http_sa_cycle_main_conf(cycle);

    if (smcf == NULL || !smcf->used) {
        return NGX_OK;
    }

    ngx_http_sa_subscribed = 0;
    ngx_http_sa_worker_cache = smcf->cache;

    ngx_rbtree_init(&ngx_http_sa_flights, &ngx_http_sa_flights_sentinel,
                    ngx_rbtree_insert_value);

    if (smcf->cache == NULL) {
        ngx_http_sa_used_slots = ngx_pcalloc(cycle->pool,
                                    NGX_HTTP_SA_USED_SLOTS
                                    * sizeof(ngx_http_sa_used_slot_t));
        return ngx_http_sa_redis_init_process(cycle, smcf->redis, NULL, NULL,
                                              NULL);
    }

    channel.len = smcf->prefix.len + sizeof("invalidate") - 1;
    channel.data = ngx_pnalloc(cycle->pool, channel.len);
    if (channel.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(channel.data, smcf->prefix.data, smcf->prefix.len);
    ngx_memcpy(p, "invalidate", sizeof("invalidate") - 1);

    return ngx_http_sa_redis_init_process(cycle, smcf->redis, &channel,
                                          ngx_http_sa_invalidated,
                                          ngx_http_sa_subscription);
}


/* a message on <prefix>invalidate: token ids, space-separated */
static void
ngx_http_sa_invalidated(u_char *data, size_t len)
{
    u_char  *p, *end, *id;

    ngx_http_sa_generation++;

    end = data + len;

    for (p = data; p < end; p++) {
        id = p;
        while (p < end && *p != ' ') {
            p++;
        }

        if (p - id == SA_TOKEN_ID_LEN) {
            ngx_http_sa_cache_invalidate(ngx_http_sa_worker_cache, id);
        }
    }
}


/* messages may have been lost while the subscription was down */
static void
ngx_http_sa_subscription(ngx_uint_t up)
{
    ngx_http_sa_generation++;
    ngx_http_sa_subscribed = up;

    if (up) {
        ngx_http_sa_cache_invalidate_all(ngx_http_sa_worker_cache);
    }
}


static void
ngx_http_sa_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_sa_main_conf_t  *smcf;

    smcf = ngx_http_sa_cycle_main_conf(cycle);

    if (smcf != NULL && smcf->used) {
        ngx_http_sa_exiting = 1;
        ngx_http_sa_redis_exit_process(cycle);
    }
}
