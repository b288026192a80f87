/*
 * The worker's Redis connections, driven by nginx's event loop, with nginx
 * timers for every deadline (hiredis 0.14 has none): one connection for
 * commands, and, with sa_cache, one subscribed to the invalidation channel,
 * whose liveness is proven by heartbeats.  With sa_redis_sentinel, a third
 * one asks a sentinel where the master is and listens for its moves.
 */

#ifndef NGX_HTTP_SA_REDIS_H
#define NGX_HTTP_SA_REDIS_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>


/* where a Redis server listens */
typedef struct {
    ngx_str_t                  address;       /* host:port or unix:path */
    ngx_str_t                  host;          /* IP text, NUL-terminated */
    ngx_int_t                  port;
    ngx_str_t                  unix_path;     /* non-empty for unix: */
    struct sockaddr           *sockaddr;      /* what is connected to */
    socklen_t                  socklen;
    ngx_str_t                  ssl_name;      /* the name as written: SNI
                                                 and the certificate's */
    ngx_uint_t                 by_name;       /* a host name: resolved at
                                                 each connect (resolver), or
                                                 once at start */
} ngx_http_sa_redis_addr_t;


/* TLS to Redis: sa_redis ... ssl, sa_redis_ssl_* */
typedef struct {
    ngx_flag_t                 verify;
    ngx_str_t                  trusted_certificate;
    ngx_str_t                  name;          /* sa_redis_ssl_name */
    ngx_str_t                  certificate;
    ngx_str_t                  certificate_key;
    ngx_uint_t                 protocols;
#if (NGX_SSL)
    ngx_ssl_t                 *ssl;           /* NULL: plain TCP */
#endif
} ngx_http_sa_redis_ssl_conf_t;


/*
 * sa_redis names the server; sa_redis_sentinel names a master and the
 * sentinels that know where it is, which the worker asks at run time.
 */
typedef struct {
    ngx_str_t                  name;          /* for messages */
    ngx_http_sa_redis_addr_t   node;          /* sa_redis */
    ngx_str_t                  master;        /* sa_redis_sentinel */
    ngx_array_t               *sentinels;     /* ngx_http_sa_redis_addr_t */
    ngx_int_t                  db;
    ngx_str_t                  user;
    ngx_str_t                  password;
    ngx_str_t                  sentinel_user;
    ngx_str_t                  sentinel_password;
    ngx_msec_t                 timeout;
    ngx_flag_t                 ssl_on;        /* "ssl", "rediss://" */
    ngx_resolver_t            *resolver;      /* http's "resolver", or NULL:
                                                 names resolved at start */
    ngx_http_sa_redis_ssl_conf_t  *ssl;       /* the main conf's */
} ngx_http_sa_redis_conf_t;


/*
 * Called exactly once for every ngx_http_sa_redis_command() that returned
 * NGX_OK, with what Redis answered:
 *   NGX_OK        a bulk string in *value;
 *   NGX_DONE      an integer, its digits in *value;
 *   NGX_DECLINED  nil;
 *   NGX_ABORT     something that is not a value (an array, a status);
 *   NGX_ERROR     no answer (the connection ended first), or an error reply
 *                 (logged here, at error level).
 * The value is freed after the call returns.  It runs inside hiredis: it
 * must not run request phases (post an event instead).
 */
typedef void (*ngx_http_sa_redis_handler_pt)(void *data, ngx_int_t rc,
    ngx_str_t *value);

/*
 * A message of the invalidation channel (space-separated token ids), with
 * the data of the ngx_http_sa_redis_sub_conf_t.
 */
typedef void (*ngx_http_sa_redis_message_pt)(void *data, u_char *msg,
    size_t len);

/* the subscription is up (1: every later change will be seen) or down */
typedef void (*ngx_http_sa_redis_state_pt)(void *data, ngx_uint_t up);


typedef struct {
    ngx_str_t                      channel;
    ngx_msec_t                     heartbeat;
    ngx_http_sa_redis_message_pt   on_message;
    ngx_http_sa_redis_state_pt     on_state;
    void                          *data;
} ngx_http_sa_redis_sub_conf_t;


/* a worker's connections, heartbeats and sentinel (ngx_http_sa_redis.c) */
typedef struct ngx_http_sa_redis_worker_s  ngx_http_sa_redis_worker_t;


/* sub NULL: no subscriber connection (no sa_cache).  NULL: no memory */
ngx_http_sa_redis_worker_t *ngx_http_sa_redis_init_process(
    ngx_cycle_t *cycle, ngx_http_sa_redis_conf_t *conf,
    ngx_http_sa_redis_sub_conf_t *sub);
void ngx_http_sa_redis_exit_process(ngx_http_sa_redis_worker_t *rw);

/*
 * Postconfiguration: with http's "resolver", host names are resolved
 * through it at every connect; without, once, now, with a warning.
 */
ngx_int_t ngx_http_sa_redis_names(ngx_conf_t *cf,
    ngx_http_sa_redis_conf_t *conf);

/*
 * Sends a command on the command connection.  With a handler: NGX_OK, and
 * the handler will be called; a command asked for while the connection is
 * being set up waits until AUTH, SELECT and PING have answered.  Without a
 * handler the reply is ignored and nothing waits.  NGX_DECLINED: Redis is
 * unavailable now.
 */
ngx_int_t ngx_http_sa_redis_command(ngx_http_sa_redis_worker_t *rw, int argc,
    const char **argv, const size_t *argvlen,
    ngx_http_sa_redis_handler_pt handler, void *data);

/*
 * 1 while the command connection is set up and not known lost (0: down,
 * waiting to reconnect, or connecting)
 */
ngx_uint_t ngx_http_sa_redis_command_up(ngx_http_sa_redis_worker_t *rw);

/*
 * 1 while the subscriber has proven, within heartbeat + sa_redis_timeout,
 * that it receives everything published: only then may a cached record be
 * served.  Reads whatever the channel already holds first, so that a change
 * published before the request arrived is never missed because epoll
 * reported the request first.
 */
ngx_uint_t ngx_http_sa_redis_subscriber_fresh(ngx_http_sa_redis_worker_t *rw);

#endif /* NGX_HTTP_SA_REDIS_H */
