/*
 * ngx_http_sa_module: service-account bearer tokens, verified against
 * signed records in Redis, with per-route scopes.
 *
 * This file: the directives, their merge rules and the checks that make a
 * bad configuration fail "nginx -t"; the worker's start (Redis connections,
 * the invalidation channel) and stop.  The request path is in
 * ngx_http_sa_handler.c (with ngx_http_sa_lookup.c, ngx_http_sa_effects.c),
 * responses in ngx_http_sa_response.c, variables in ngx_http_sa_variables.c.
 * Token parsing, hashing, signatures, the record codec and scope matching
 * live in core/, shared with sa-admin.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>

#include "ngx_http_sa_module.h"
#include "ngx_http_sa_ratelimit.h"
#include "ngx_http_sa_verified.h"
#include "ngx_http_sa_metrics.h"


static ngx_int_t ngx_http_sa_init(ngx_conf_t *cf);
static ngx_int_t ngx_http_sa_init_process(ngx_cycle_t *cycle);
static ngx_int_t ngx_http_sa_sync_start(ngx_cycle_t *cycle,
    ngx_http_sa_main_conf_t *smcf);
static void ngx_http_sa_exit_process(ngx_cycle_t *cycle);
static void *ngx_http_sa_create_main_conf(ngx_conf_t *cf);
static char *ngx_http_sa_init_main_conf(ngx_conf_t *cf, void *conf);
static void *ngx_http_sa_create_loc_conf(ngx_conf_t *cf);
static char *ngx_http_sa_merge_loc_conf(ngx_conf_t *cf, void *parent,
    void *child);
static char *ngx_http_sa_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_sa_redis_sentinel(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sa_verify_key(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sa_auth(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_sa_scope(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_sa_application(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sa_cache(ngx_conf_t *cf, ngx_command_t *cmd, void *conf);
static char *ngx_http_sa_rate_limit(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sa_record_max_age(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);
static char *ngx_http_sa_metrics(ngx_conf_t *cf, ngx_command_t *cmd,
    void *conf);


/* made from NGX_HTTP_SA_STATUS_LIST, beside the enum */
ngx_http_sa_status_t  ngx_http_sa_statuses[NGX_HTTP_SA_STATUSES] = {
#define NGX_HTTP_SA_STATUS_ENTRY(id, name, rc, level)                          \
    { ngx_string(name), rc, level },
    NGX_HTTP_SA_STATUS_LIST(NGX_HTTP_SA_STATUS_ENTRY)
#undef NGX_HTTP_SA_STATUS_ENTRY
};


#if !(NGX_SSL)
#define NGX_SSL_TLSv1    0x0008
#define NGX_SSL_TLSv1_1  0x0010
#define NGX_SSL_TLSv1_2  0x0020
#define NGX_SSL_TLSv1_3  0x0040
#endif

static ngx_conf_bitmask_t  ngx_http_sa_ssl_protocols[] = {
    { ngx_string("TLSv1"), NGX_SSL_TLSv1 },
    { ngx_string("TLSv1.1"), NGX_SSL_TLSv1_1 },
    { ngx_string("TLSv1.2"), NGX_SSL_TLSv1_2 },
    { ngx_string("TLSv1.3"), NGX_SSL_TLSv1_3 },
    { ngx_null_string, 0 }
};


static ngx_command_t  ngx_http_sa_commands[] = {

    { ngx_string("sa_redis"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_sa_redis,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sa_redis_sentinel"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_2MORE,
      ngx_http_sa_redis_sentinel,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sa_redis_ssl_verify"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sa_main_conf_t, redis_ssl.verify),
      NULL },

    { ngx_string("sa_redis_ssl_trusted_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sa_main_conf_t, redis_ssl.trusted_certificate),
      NULL },

    { ngx_string("sa_redis_ssl_name"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sa_main_conf_t, redis_ssl.name),
      NULL },

    { ngx_string("sa_redis_ssl_certificate"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sa_main_conf_t, redis_ssl.certificate),
      NULL },

    { ngx_string("sa_redis_ssl_certificate_key"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_TAKE1,
      ngx_conf_set_str_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sa_main_conf_t, redis_ssl.certificate_key),
      NULL },

    { ngx_string("sa_redis_ssl_protocols"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_conf_set_bitmask_slot,
      NGX_HTTP_MAIN_CONF_OFFSET,
      offsetof(ngx_http_sa_main_conf_t, redis_ssl.protocols),
      &ngx_http_sa_ssl_protocols },

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

    { ngx_string("sa_rate_limit"),
      NGX_HTTP_MAIN_CONF|NGX_CONF_1MORE,
      ngx_http_sa_rate_limit,
      NGX_HTTP_MAIN_CONF_OFFSET,
      0,
      NULL },

    { ngx_string("sa_rate_limit_headers"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_FLAG,
      ngx_conf_set_flag_slot,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sa_loc_conf_t, rate_limit_headers),
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
      ngx_http_sa_application,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sa_loc_conf_t, application),
      NULL },

    { ngx_string("sa_record_max_age"),
      NGX_HTTP_MAIN_CONF|NGX_HTTP_SRV_CONF|NGX_HTTP_LOC_CONF|NGX_CONF_TAKE1,
      ngx_http_sa_record_max_age,
      NGX_HTTP_LOC_CONF_OFFSET,
      offsetof(ngx_http_sa_loc_conf_t, record_max_age),
      NULL },

    { ngx_string("sa_metrics"),
      NGX_HTTP_LOC_CONF|NGX_CONF_NOARGS,
      ngx_http_sa_metrics,
      NGX_HTTP_LOC_CONF_OFFSET,
      0,
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
    smcf->redis_ssl.verify = NGX_CONF_UNSET;

    if (sa_crypto_init() != 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "libsodium failed to start");
        return NULL;
    }

    return smcf;
}


/*
 * TLS to Redis, as proxy_ssl_* does it, but verifying by default: a token
 * store must not be open to a man in the middle unless one says so.
 */
static char *
ngx_http_sa_redis_ssl(ngx_conf_t *cf, ngx_http_sa_main_conf_t *smcf)
{
    ngx_http_sa_redis_ssl_conf_t  *sc = &smcf->redis_ssl;

#if (NGX_SSL)
    ngx_str_t            ciphers = ngx_string("DEFAULT");
    ngx_pool_cleanup_t  *cln;
#endif

    ngx_conf_init_value(sc->verify, 1);
    ngx_conf_merge_bitmask_value(sc->protocols, 0,
                                 (NGX_CONF_BITMASK_SET|NGX_SSL_TLSv1_2
                                  |NGX_SSL_TLSv1_3));

    if (sc->trusted_certificate.data == NULL) {
        ngx_str_set(&sc->trusted_certificate,
                    "/etc/ssl/certs/ca-certificates.crt");
    }

    smcf->redis->ssl = sc;

    if (!smcf->redis->ssl_on) {
        if (sc->certificate.len || sc->name.len) {
            ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                               "sa_redis_ssl_* is ignored: \"%V\" is not "
                               "\"ssl\"", &smcf->redis->name);
        }
        return NGX_CONF_OK;
    }

#if (NGX_SSL)

    if ((sc->certificate.len == 0) != (sc->certificate_key.len == 0)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sa_redis_ssl_certificate and "
                           "sa_redis_ssl_certificate_key go together");
        return NGX_CONF_ERROR;
    }

    sc->ssl = ngx_pcalloc(cf->pool, sizeof(ngx_ssl_t));
    if (sc->ssl == NULL) {
        return NGX_CONF_ERROR;
    }

    sc->ssl->log = cf->log;

    if (ngx_ssl_create(sc->ssl, sc->protocols, NULL) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    cln = ngx_pool_cleanup_add(cf->pool, 0);
    if (cln == NULL) {
        ngx_ssl_cleanup_ctx(sc->ssl);
        return NGX_CONF_ERROR;
    }

    cln->handler = ngx_ssl_cleanup_ctx;
    cln->data = sc->ssl;

    if (ngx_ssl_ciphers(cf, sc->ssl, &ciphers, 0) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (sc->certificate.len
        && ngx_ssl_certificate(cf, sc->ssl, &sc->certificate,
                               &sc->certificate_key, NULL)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (sc->verify
        && ngx_ssl_trusted_certificate(cf, sc->ssl, &sc->trusted_certificate,
                                       9)
           != NGX_OK)
    {
        return NGX_CONF_ERROR;
    }

    if (ngx_ssl_client_session_cache(cf, sc->ssl, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    if (!sc->verify) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "sa_redis_ssl_verify off: the Redis server is "
                           "not authenticated");
    }

    return NGX_CONF_OK;

#else

    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                       "\"ssl\" in \"%V\" needs nginx built with OpenSSL",
                       &smcf->redis->name);
    return NGX_CONF_ERROR;

#endif
}


static char *
ngx_http_sa_init_main_conf(ngx_conf_t *cf, void *conf)
{
    ngx_http_sa_main_conf_t  *smcf = conf;

    ngx_conf_init_msec_value(smcf->timeout, 200);

    if (smcf->redis) {
        smcf->redis->timeout = smcf->timeout;

        if (ngx_http_sa_redis_ssl(cf, smcf) != NGX_CONF_OK) {
            return NGX_CONF_ERROR;
        }
    }

    if (smcf->prefix.data == NULL) {
        ngx_str_set(&smcf->prefix, "sa:");
    }

    /* the keys are built in fixed buffers on the request path */
    if (smcf->prefix.len > NGX_HTTP_SA_PREFIX_MAX) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "sa_redis_prefix \"%V\" is too long: at most %d "
                           "bytes", &smcf->prefix, NGX_HTTP_SA_PREFIX_MAX);
        return NGX_CONF_ERROR;
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
    slcf->rate_limit_headers = NGX_CONF_UNSET;
    slcf->record_max_age = NGX_CONF_UNSET;

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
    ngx_conf_merge_value(conf->rate_limit_headers, prev->rate_limit_headers,
                         1);
    ngx_conf_merge_sec_value(conf->record_max_age, prev->record_max_age, 0);

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

    if (arg->len == 3 && ngx_strncmp(arg->data, "ssl", 3) == 0) {
        rc->ssl_on = 1;
        return NGX_CONF_OK;
    }

    if (rc->sentinels && arg->len > 18
        && ngx_strncmp(arg->data, "sentinel_password=", 18) == 0)
    {
        rc->sentinel_password.data = arg->data + 18;
        rc->sentinel_password.len = arg->len - 18;
        return NGX_CONF_OK;
    }

    if (rc->sentinels && arg->len > 14
        && ngx_strncmp(arg->data, "sentinel_user=", 14) == 0)
    {
        rc->sentinel_user.data = arg->data + 14;
        rc->sentinel_user.len = arg->len - 14;
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
ngx_http_sa_redis_address(ngx_conf_t *cf, ngx_command_t *cmd, ngx_str_t *text,
    ngx_http_sa_redis_addr_t *addr, ngx_uint_t tcp_only)
{
    ngx_url_t   u;
    u_char     *p;
    ngx_str_t   host;

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = *text;
    u.default_port = tcp_only ? 26379 : 6379;
    u.no_resolve = 1;           /* names: ngx_http_sa_redis_names() */

    addr->address = *text;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK) {
        if (u.err) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "%s in %V \"%V\"",
                               u.err, &cmd->name, &u.url);
        }
        return NGX_CONF_ERROR;
    }


    if (u.family == AF_UNIX) {
        if (tcp_only) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "a sentinel is \"host:port\", not \"%V\"",
                               &u.url);
            return NGX_CONF_ERROR;
        }

        addr->sockaddr = u.addrs[0].sockaddr;
        addr->socklen = u.addrs[0].socklen;

        /* "unix:/path": the path follows the 5-byte "unix:" prefix */
        addr->unix_path.len = text->len - 5;
        addr->unix_path.data = ngx_pnalloc(cf->pool, addr->unix_path.len + 1);
        if (addr->unix_path.data == NULL) {
            return NGX_CONF_ERROR;
        }
        p = ngx_cpymem(addr->unix_path.data, text->data + 5,
                       addr->unix_path.len);
        *p = '\0';
        return NGX_CONF_OK;
    }

    if (u.naddrs) {
        addr->port = ngx_inet_get_port(u.addrs[0].sockaddr);
        addr->sockaddr = u.addrs[0].sockaddr;
        addr->socklen = u.addrs[0].socklen;

    } else {
        addr->port = u.port;
        addr->by_name = 1;
    }

    /* the host as written, NUL-terminated (SNI): the certificate's name */
    host = u.host;

    if (host.len > 2 && host.data[0] == '[') {
        host.data++;
        host.len -= 2;
    }

    addr->ssl_name.len = host.len;
    addr->ssl_name.data = ngx_pnalloc(cf->pool, host.len + 1);
    if (addr->ssl_name.data == NULL) {
        return NGX_CONF_ERROR;
    }
    p = ngx_cpymem(addr->ssl_name.data, host.data, host.len);
    *p = '\0';

    addr->host.data = ngx_pnalloc(cf->pool, NGX_SOCKADDR_STRLEN + 1);
    if (addr->host.data == NULL) {
        return NGX_CONF_ERROR;
    }

    if (u.naddrs) {
        addr->host.len = ngx_sock_ntop(u.addrs[0].sockaddr,
                                       u.addrs[0].socklen, addr->host.data,
                                       NGX_SOCKADDR_STRLEN, 0);

    } else {
        addr->host.len = ngx_min(u.host.len, NGX_SOCKADDR_STRLEN);
        ngx_memcpy(addr->host.data, u.host.data, addr->host.len);
    }

    addr->host.data[addr->host.len] = '\0';

    return NGX_CONF_OK;
}


static ngx_http_sa_redis_conf_t *
ngx_http_sa_redis_conf(ngx_conf_t *cf, ngx_http_sa_main_conf_t *smcf)
{
    if (smcf->redis) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"sa_redis\" or \"sa_redis_sentinel\" is "
                           "duplicate");
        return NULL;
    }

    smcf->redis = ngx_pcalloc(cf->pool, sizeof(ngx_http_sa_redis_conf_t));

    return smcf->redis;
}


static char *
ngx_http_sa_redis(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sa_main_conf_t *smcf = conf;

    char                      *rv;
    u_char                    *p;
    ngx_str_t                 *value, address;
    ngx_uint_t                 i;
    ngx_http_sa_redis_conf_t  *rc;

    rc = ngx_http_sa_redis_conf(cf, smcf);
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;
    address = value[1];

    /* redis://host:port/db, rediss://host:port/db (TLS) */
    if (address.len > 9 && ngx_strncmp(address.data, "rediss://", 9) == 0) {
        rc->ssl_on = 1;
        address.data += 9;
        address.len -= 9;

    } else if (address.len > 8
               && ngx_strncmp(address.data, "redis://", 8) == 0)
    {
        address.data += 8;
        address.len -= 8;

    } else {
        goto options;
    }

    p = ngx_strlchr(address.data, address.data + address.len, '/');

    if (p) {
        if (p + 1 < address.data + address.len) {
            rc->db = ngx_atoi(p + 1, address.data + address.len - p - 1);
            if (rc->db == NGX_ERROR) {
                return "has an invalid database number in the URL";
            }
        }

        address.len = p - address.data;
    }

    if (address.len == 0
        || ngx_strlchr(address.data, address.data + address.len, '@'))
    {
        return "has a URL that is not redis[s]://host[:port][/db] "
               "(a password is password=)";
    }

options:

    rc->name = address;

    for (i = 2; i < cf->args->nelts; i++) {
        rv = ngx_http_sa_redis_option(cf, rc, &value[i]);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    if (rc->ssl_on && address.len > 5
        && ngx_strncmp(address.data, "unix:", 5) == 0)
    {
        return "has \"ssl\" with a unix socket";
    }

    return ngx_http_sa_redis_address(cf, cmd, &address, &rc->node, 0);
}


/* sa_redis_sentinel MASTER host:port [host:port...] [db=] [password=] ... */
static char *
ngx_http_sa_redis_sentinel(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sa_main_conf_t *smcf = conf;

    char                      *rv;
    u_char                    *p;
    ngx_str_t                 *value;
    ngx_uint_t                 i;
    ngx_http_sa_redis_conf_t  *rc;
    ngx_http_sa_redis_addr_t  *addr;

    rc = ngx_http_sa_redis_conf(cf, smcf);
    if (rc == NULL) {
        return NGX_CONF_ERROR;
    }

    rc->sentinels = ngx_array_create(cf->pool, 3,
                                     sizeof(ngx_http_sa_redis_addr_t));
    if (rc->sentinels == NULL) {
        return NGX_CONF_ERROR;
    }

    value = cf->args->elts;
    rc->master = value[1];

    for (i = 2; i < cf->args->nelts; i++) {
        if (ngx_strlchr(value[i].data, value[i].data + value[i].len, '=')
            || (value[i].len == 3
                && ngx_strncmp(value[i].data, "ssl", 3) == 0))
        {
            rv = ngx_http_sa_redis_option(cf, rc, &value[i]);
            if (rv != NGX_CONF_OK) {
                return rv;
            }
            continue;
        }

        addr = ngx_array_push(rc->sentinels);
        if (addr == NULL) {
            return NGX_CONF_ERROR;
        }
        ngx_memzero(addr, sizeof(ngx_http_sa_redis_addr_t));

        rv = ngx_http_sa_redis_address(cf, cmd, &value[i], addr, 1);
        if (rv != NGX_CONF_OK) {
            return rv;
        }
    }

    if (rc->sentinels->nelts == 0) {
        return "needs at least one sentinel \"host:port\"";
    }

    /* messages name it as: master "NAME" */
    rc->name.len = sizeof("master \"\"") - 1 + rc->master.len;
    rc->name.data = ngx_pnalloc(cf->pool, rc->name.len);
    if (rc->name.data == NULL) {
        return NGX_CONF_ERROR;
    }

    p = ngx_cpymem(rc->name.data, "master \"", sizeof("master \"") - 1);
    p = ngx_cpymem(p, rc->master.data, rc->master.len);
    *p = '"';

    return NGX_CONF_OK;
}


static char *
ngx_http_sa_verify_key(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sa_main_conf_t *smcf = conf;

    char        err[512];
    ngx_str_t  *value, path;

    if (smcf->nverify_keys == NGX_HTTP_SA_VERIFY_KEYS) {
        return "is given more than 4 times";
    }

    value = cf->args->elts;
    path = value[1];

    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) {
        return NGX_CONF_ERROR;
    }

    /* ngx_conf_full_name() returns a NUL-terminated copy */
    if (sa_key_load((char *) path.data, SA_KEY_VERIFY,
                    smcf->verify_keys[smcf->nverify_keys],
                    err, sizeof(err))
        != 0)
    {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "sa_verify_key %s", err);
        return NGX_CONF_ERROR;
    }

    smcf->nverify_keys++;

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


static char *
ngx_http_sa_rate_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sa_main_conf_t *smcf = conf;

    ngx_str_t  *value;

    value = cf->args->elts;

    /* "off": rates are not enforced on purpose (no warning) */
    if (cf->args->nelts == 2 && ngx_strcmp(value[1].data, "off") == 0) {
        if (smcf->rl.zone || smcf->rate_limit_off) {
            return "is duplicate";
        }
        smcf->rate_limit_off = 1;
        return NGX_CONF_OK;
    }

    if (smcf->rate_limit_off) {
        return "is duplicate";
    }

    return ngx_http_sa_rate_limit_conf(cf, &smcf->rl, &ngx_http_sa_module);
}


/* "sa_metrics;": this location serves the Prometheus text */
static char *
ngx_http_sa_metrics(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sa_main_conf_t  *smcf;

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_sa_module);
    smcf->metrics = 1;

    return ngx_http_sa_metrics_directive(cf, cmd, conf);
}


/* "sa_record_max_age off | TIME;": off is 0, a time at least 1s */
static char *
ngx_http_sa_record_max_age(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    ngx_http_sa_loc_conf_t  *slcf = conf;

    time_t      max_age;
    ngx_str_t  *value;

    if (slcf->record_max_age != NGX_CONF_UNSET) {
        return "is duplicate";
    }

    value = cf->args->elts;

    if (ngx_strcmp(value[1].data, "off") == 0) {
        slcf->record_max_age = 0;
        return NGX_CONF_OK;
    }

    max_age = ngx_parse_time(&value[1], 1);

    if (max_age == (time_t) NGX_ERROR || max_age <= 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "invalid value \"%V\" in \"%V\": a time of at "
                           "least 1s, or \"off\"", &value[1], &cmd->name);
        return NGX_CONF_ERROR;
    }

    slcf->record_max_age = max_age;

    return NGX_CONF_OK;
}


/*
 * "sa_application $http_x_app;" lets the client choose which grant is
 * checked: "nginx -t" warns about variables the client sets directly
 * ($http_*, $arg_*, $cookie_*).  A map of them is not seen.
 */
static char *
ngx_http_sa_application(ngx_conf_t *cf, ngx_command_t *cmd, void *conf)
{
    char        *rv;
    u_char      *p, *end, *name;
    ngx_str_t   *value, var;
    ngx_uint_t   i;

    static ngx_str_t  client[] = {
        ngx_string("http_"), ngx_string("arg_"), ngx_string("cookie_")
    };

    rv = ngx_http_set_complex_value_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) {
        return rv;
    }

    value = cf->args->elts;
    end = value[1].data + value[1].len;

    for (p = value[1].data; p < end; p++) {
        if (*p != '$') {
            continue;
        }

        name = (p + 1 < end && p[1] == '{') ? p + 2 : p + 1;

        for (p = name; p < end; p++) {
            if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z')
                  || (*p >= '0' && *p <= '9') || *p == '_'))
            {
                break;
            }
        }

        var.data = name;
        var.len = p - name;
        p--;

        for (i = 0; i < sizeof(client) / sizeof(ngx_str_t); i++) {
            if (var.len > client[i].len
                && ngx_strncasecmp(var.data, client[i].data, client[i].len)
                   == 0)
            {
                ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                                   "sa_application \"%V\" uses \"$%V\", "
                                   "which the client sets: a client may "
                                   "choose the application checked",
                                   &value[1], &var);
                break;
            }
        }
    }

    return NGX_CONF_OK;
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


/* start-up */

static ngx_int_t
ngx_http_sa_init(ngx_conf_t *cf)
{
    ngx_http_handler_pt        *h, *first;
    ngx_http_sa_main_conf_t    *smcf;
    ngx_http_core_main_conf_t  *cmcf;

    static ngx_str_t  auth_var = ngx_string("http_authorization");

    smcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_sa_module);

    if ((smcf->used || smcf->metrics)
        && ngx_http_sa_metrics_conf(cf, &ngx_http_sa_module) != NGX_OK)
    {
        return NGX_ERROR;
    }

    if (smcf->redis && ngx_http_sa_redis_names(cf, smcf->redis) != NGX_OK) {
        return NGX_ERROR;
    }

    if (!smcf->used) {
        return NGX_OK;
    }

    if (smcf->redis == NULL || smcf->nverify_keys == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"sa_auth\" requires \"sa_redis\" (or "
                      "\"sa_redis_sentinel\") and "
                      "\"sa_verify_key\" in the http block");
        return NGX_ERROR;
    }

    /*
     * What a record holds is known only at run time: the one thing to say
     * here is that no record's rate will be enforced.  Once per reading of
     * the configuration (nginx -t, start, reload), at warn, the lowest level
     * nginx -t shows; "sa_rate_limit off;" says it is meant.
     */
    if (smcf->rl.zone == NULL && !smcf->rate_limit_off) {
        ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                      "\"sa_auth\" without \"sa_rate_limit\": the rate "
                      "and burst of token records are not enforced "
                      "(\"sa_rate_limit off;\" to mean it)");
    }

    /* its cached value is dropped when the header is hidden */
    smcf->authorization_variable = ngx_http_get_variable_index(cf, &auth_var);
    if (smcf->authorization_variable == NGX_ERROR) {
        return NGX_ERROR;
    }

    cmcf = ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module);

    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_sa_handler;

    /* and at the start of the array, so that it runs after every checker */
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    first = cmcf->phases[NGX_HTTP_ACCESS_PHASE].handlers.elts;
    ngx_memmove(first + 1, first, (h - first) * sizeof(ngx_http_handler_pt));
    *first = ngx_http_sa_access_last;

    /* subrequests skip the access phase: they are judged here */
    h = ngx_array_push(&cmcf->phases[NGX_HTTP_REWRITE_PHASE].handlers);
    if (h == NULL) {
        return NGX_ERROR;
    }

    *h = ngx_http_sa_subrequest_handler;

    return NGX_OK;
}


static void ngx_http_sa_invalidated(void *data, u_char *msg, size_t len);
static void ngx_http_sa_subscription(void *data, ngx_uint_t up);


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
    ngx_http_sa_main_conf_t       *smcf;
    ngx_http_sa_redis_sub_conf_t   sub;

    smcf = ngx_http_sa_cycle_main_conf(cycle);

    /* the cache manager and loader call init_process too: no Redis there */
    if (smcf == NULL || !smcf->used
        || (ngx_process != NGX_PROCESS_WORKER
            && ngx_process != NGX_PROCESS_SINGLE))
    {
        return NGX_OK;
    }

    ngx_http_sa_metrics_init_process();

    smcf->worker = ngx_pcalloc(cycle->pool, sizeof(ngx_http_sa_worker_t));
    if (smcf->worker == NULL) {
        return NGX_ERROR;
    }

    if (ngx_http_sa_handler_init_process(cycle, smcf) != NGX_OK) {
        return NGX_ERROR;
    }

    if (smcf->cache == NULL) {
        smcf->worker->redis = ngx_http_sa_redis_init_process(cycle,
                                                             smcf->redis,
                                                             NULL);
        return smcf->worker->redis ? ngx_http_sa_sync_start(cycle, smcf)
                                   : NGX_ERROR;
    }

    sub.channel.data = ngx_pnalloc(cycle->pool, NGX_HTTP_SA_KEY_MAX);
    if (sub.channel.data == NULL) {
        return NGX_ERROR;
    }

    sub.channel.len = ngx_http_sa_key(sub.channel.data, &smcf->prefix,
                                      SA_KEY_INVALIDATE, NULL, 0)
                      - sub.channel.data;

    sub.heartbeat = smcf->cache->heartbeat;
    sub.on_message = ngx_http_sa_invalidated;
    sub.on_state = ngx_http_sa_subscription;
    sub.data = smcf->cache;

    smcf->worker->redis = ngx_http_sa_redis_init_process(cycle, smcf->redis,
                                                         &sub);
    return smcf->worker->redis ? ngx_http_sa_sync_start(cycle, smcf)
                               : NGX_ERROR;
}


/* with sa_rate_limit: usage and quotas go to Redis in batches */
static ngx_int_t
ngx_http_sa_sync_start(ngx_cycle_t *cycle, ngx_http_sa_main_conf_t *smcf)
{
    if (smcf->rl.zone == NULL) {
        return NGX_OK;
    }

    smcf->sync.interval = smcf->rl.sync;
    smcf->sync.prefix = smcf->prefix;
    ngx_http_sa_rate_limit_gateway(smcf->rl.zone, smcf->sync.gateway);

    smcf->worker->sync = ngx_http_sa_sync_init_process(cycle, &smcf->sync,
                                                       smcf->worker->redis);
    if (smcf->worker->sync == NULL) {
        return NGX_ERROR;
    }

    ngx_http_sa_sync_handler(smcf->worker->sync, NGX_HTTP_SA_SYNC_QUOTA,
                             ngx_http_sa_quota_total, smcf->rl.zone);
    ngx_http_sa_sync_handler(smcf->worker->sync, NGX_HTTP_SA_SYNC_RATE,
                             ngx_http_sa_rate_total, smcf->rl.zone);

    return NGX_OK;
}


/*
 * A message on <prefix>invalidate: its items (sa_invalidation_next(), a
 * token id or <id>:<version>), each invalidated.  A version that does not
 * read as one still invalidates.
 */
static void
ngx_http_sa_invalidated(void *data, u_char *msg, size_t len)
{
    ngx_http_sa_cache_t  *cache = data;

    uint64_t              version;
    const u_char         *p, *id;

    p = msg;

    while (sa_invalidation_next(&p, msg + len, &id, &version)) {
        ngx_log_debug3(NGX_LOG_DEBUG_HTTP, ngx_cycle->log, 0,
                       "sa: invalidation of token \"%*s\", version %uL",
                       (size_t) SA_TOKEN_ID_LEN, id, version);

        ngx_http_sa_cache_invalidate(cache, (u_char *) id, version);
    }
}


/* messages may have been lost while the subscription was down */
static void
ngx_http_sa_subscription(void *data, ngx_uint_t up)
{
    ngx_http_sa_cache_t  *cache = data;

    if (up) {
        ngx_http_sa_cache_invalidate_all(cache);
    }
}


static void
ngx_http_sa_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_sa_main_conf_t  *smcf;

    smcf = ngx_http_sa_cycle_main_conf(cycle);

    /* only a worker has its part (ngx_http_sa_init_process) */
    if (smcf != NULL && smcf->worker != NULL) {
        ngx_http_sa_handler_exit_process(smcf);
        ngx_http_sa_sync_exit_process(smcf->worker->sync);
        ngx_http_sa_redis_exit_process(smcf->worker->redis);
    }
}
