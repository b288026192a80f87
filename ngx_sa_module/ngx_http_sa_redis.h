/*
 * One hiredis asynchronous connection per worker, driven by nginx's event
 * loop, with nginx timers for reply timeouts and reconnects (hiredis 0.14
 * has neither).
 */

#ifndef NGX_HTTP_SA_REDIS_H
#define NGX_HTTP_SA_REDIS_H

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <hiredis/hiredis.h>


typedef struct {
    ngx_str_t                  address;       /* as written, for messages */
    ngx_str_t                  host;          /* IP text, resolved once */
    ngx_int_t                  port;
    ngx_str_t                  unix_path;     /* non-empty for unix: */
    ngx_int_t                  db;
    ngx_str_t                  user;
    ngx_str_t                  password;
    ngx_msec_t                 timeout;
} ngx_http_sa_redis_conf_t;


/*
 * Called exactly once per ngx_http_sa_redis_get() that returned NGX_OK:
 * with the reply, or with NULL when the connection failed or was dropped.
 * The reply is freed after the call returns.
 */
typedef void (*ngx_http_sa_redis_handler_pt)(void *data, redisReply *reply);


/* a message of the invalidation channel: space-separated token ids */
typedef void (*ngx_http_sa_redis_message_pt)(u_char *data, size_t len);

/* the subscription is up (1: every later change will be seen) or down */
typedef void (*ngx_http_sa_redis_state_pt)(ngx_uint_t up);


/* channel NULL: no subscriber connection */
ngx_int_t ngx_http_sa_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_sa_redis_conf_t *conf, ngx_str_t *channel,
    ngx_http_sa_redis_message_pt on_message,
    ngx_http_sa_redis_state_pt on_state);
void ngx_http_sa_redis_exit_process(ngx_cycle_t *cycle);

void ngx_http_sa_redis_poll_subscriber(void);

/* a command whose reply is ignored */
void ngx_http_sa_redis_send(int argc, const char **argv,
    const size_t *argvlen);

/* NGX_OK: the handler will be called; NGX_DECLINED: Redis is unavailable */
ngx_int_t ngx_http_sa_redis_get(ngx_str_t *key,
    ngx_http_sa_redis_handler_pt handler, void *data, ngx_log_t *log);

/* sa_redis_timeout */
ngx_msec_t ngx_http_sa_redis_timeout(void);

/* a GET went unanswered for sa_redis_timeout: drop a dead connection */
void ngx_http_sa_redis_timed_out(void);

#endif /* NGX_HTTP_SA_REDIS_H */
