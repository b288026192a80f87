/*
 * The worker's Redis connection.
 *
 * hiredis owns the socket; an ngx_connection_t wraps its fd so that nginx's
 * epoll drives redisAsyncHandleRead/Write.  Events are level-triggered: a
 * read handles at most 16 KiB, and epoll reports the rest again.
 *
 * Queued hiredis callbacks cannot be cancelled: every GET's handler is
 * called exactly once, with the reply or with NULL when the connection is
 * gone, and must cope with whoever asked being gone (see the module's
 * flights).
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <sys/ioctl.h>
#include <hiredis/async.h>

#include "ngx_http_sa_redis.h"


#define NGX_HTTP_SA_BACKOFF_MIN   100
#define NGX_HTTP_SA_BACKOFF_MAX   5000

/* no reply at all for this long while requests wait: the link is dead */
#define NGX_HTTP_SA_STALL_MIN     1000


typedef struct ngx_http_sa_redis_s  ngx_http_sa_redis_t;

struct ngx_http_sa_redis_s {
    ngx_http_sa_redis_conf_t      *conf;
    ngx_log_t                     *log;
    const char                    *role;        /* for messages */
    redisAsyncContext             *ac;
    ngx_connection_t              *conn;
    ngx_event_t                    reconnect;
    ngx_msec_t                     backoff;
    ngx_msec_t                     last_reply;
    ngx_uint_t                     waiting;
    void                         (*ready)(ngx_http_sa_redis_t *rd);
    void                         (*lost)(ngx_http_sa_redis_t *rd);
    unsigned                       exiting:1;
};


static void ngx_http_sa_redis_connect(ngx_http_sa_redis_t *rd);
static void ngx_http_sa_redis_reconnect_handler(ngx_event_t *ev);
static void ngx_http_sa_redis_schedule(ngx_http_sa_redis_t *rd);


/* the worker's two connections: commands, and the invalidation channel */
static ngx_http_sa_redis_t  ngx_http_sa_redis;
static ngx_http_sa_redis_t  ngx_http_sa_redis_sub;

static ngx_str_t                      ngx_http_sa_channel;
static ngx_http_sa_redis_message_pt   ngx_http_sa_on_message;
static ngx_http_sa_redis_state_pt     ngx_http_sa_on_state;


/* hiredis event hooks */

static void
ngx_http_sa_redis_read_handler(ngx_event_t *rev)
{
    ngx_connection_t     *c = rev->data;
    ngx_http_sa_redis_t  *rd = c->data;

    redisAsyncHandleRead(rd->ac);
}


static void
ngx_http_sa_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t     *c = wev->data;
    ngx_http_sa_redis_t  *rd = c->data;

    redisAsyncHandleWrite(rd->ac);
}


static void
ngx_http_sa_redis_add_event(ngx_event_t *ev, ngx_int_t event)
{
    if (!ev->active) {
        if (ngx_add_event(ev, event, NGX_LEVEL_EVENT) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                          "sa_redis: cannot add event");
        }
    }
}


static void
ngx_http_sa_redis_del_event(ngx_event_t *ev, ngx_int_t event)
{
    if (ev->active) {
        ngx_del_event(ev, event, 0);
    }
}


static void
ngx_http_sa_redis_add_read(void *data)
{
    ngx_http_sa_redis_t  *rd = data;

    ngx_http_sa_redis_add_event(rd->conn->read, NGX_READ_EVENT);
}


static void
ngx_http_sa_redis_del_read(void *data)
{
    ngx_http_sa_redis_t  *rd = data;

    ngx_http_sa_redis_del_event(rd->conn->read, NGX_READ_EVENT);
}


static void
ngx_http_sa_redis_add_write(void *data)
{
    ngx_http_sa_redis_t  *rd = data;

    ngx_http_sa_redis_add_event(rd->conn->write, NGX_WRITE_EVENT);
}


static void
ngx_http_sa_redis_del_write(void *data)
{
    ngx_http_sa_redis_t  *rd = data;

    ngx_http_sa_redis_del_event(rd->conn->write, NGX_WRITE_EVENT);
}


/*
 * Called by redisAsyncFree() just before hiredis closes the fd: forget the
 * events (NGX_CLOSE_EVENT: the close removes them from epoll) and give the
 * ngx_connection_t back without closing the fd ourselves.
 */
static void
ngx_http_sa_redis_cleanup(void *data)
{
    ngx_http_sa_redis_t  *rd = data;
    ngx_connection_t     *c = rd->conn;

    if (c == NULL) {
        return;
    }

    if (c->read->active) {
        ngx_del_event(c->read, NGX_READ_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->write->active) {
        ngx_del_event(c->write, NGX_WRITE_EVENT, NGX_CLOSE_EVENT);
    }

    if (c->read->posted) {
        ngx_delete_posted_event(c->read);
    }

    if (c->write->posted) {
        ngx_delete_posted_event(c->write);
    }

    ngx_free_connection(c);
    c->fd = (ngx_socket_t) -1;

    rd->conn = NULL;
}


/* connection life cycle */

static void
ngx_http_sa_redis_lost(ngx_http_sa_redis_t *rd)
{
    rd->ac = NULL;

    if (rd->lost) {
        rd->lost(rd);
    }

    if (!rd->exiting) {
        ngx_http_sa_redis_schedule(rd);
    }
}


static void
ngx_http_sa_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_http_sa_redis_t  *rd = ac->ev.data;

    if (status != REDIS_OK) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "sa_redis: %s connection to %V failed: %s", rd->role,
                      &rd->conf->address, ac->errstr);

        /* hiredis frees the context itself after this callback */
        ngx_http_sa_redis_lost(rd);
        return;
    }

    ngx_log_error(NGX_LOG_INFO, rd->log, 0, "sa_redis: %s connection to %V",
                  rd->role, &rd->conf->address);
}


static void
ngx_http_sa_redis_disconnected(const redisAsyncContext *ac, int status)
{
    ngx_http_sa_redis_t  *rd = ac->ev.data;

    if (!rd->exiting) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "sa_redis: %s connection to %V lost%s%s", rd->role,
                      &rd->conf->address, status == REDIS_OK ? "" : ": ",
                      status == REDIS_OK ? "" : ac->errstr);
    }

    ngx_http_sa_redis_lost(rd);
}


/* AUTH, SELECT and PING after connect; only a PONG resets the backoff */
static void
ngx_http_sa_redis_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_http_sa_redis_t  *rd = ac->ev.data;
    redisReply           *reply = r;
    const char           *what = privdata;

    if (reply == NULL) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0, "sa_redis: %s on %V failed: %s",
                      what, &rd->conf->address, reply->str);
        redisAsyncDisconnect(ac);
        return;
    }

    if (ngx_strcmp(what, "PING") == 0) {
        rd->backoff = 0;

        if (rd->ready) {
            rd->ready(rd);
        }
    }
}


static void
ngx_http_sa_redis_setup(ngx_http_sa_redis_t *rd)
{
    ngx_http_sa_redis_conf_t  *conf = rd->conf;

    if (conf->password.len && conf->user.len) {
        redisAsyncCommand(rd->ac, ngx_http_sa_redis_setup_reply, "AUTH",
                          "AUTH %b %b", conf->user.data, conf->user.len,
                          conf->password.data, conf->password.len);

    } else if (conf->password.len) {
        redisAsyncCommand(rd->ac, ngx_http_sa_redis_setup_reply, "AUTH",
                          "AUTH %b", conf->password.data,
                          conf->password.len);
    }

    if (conf->db) {
        redisAsyncCommand(rd->ac, ngx_http_sa_redis_setup_reply, "SELECT",
                          "SELECT %d", (int) conf->db);
    }

    redisAsyncCommand(rd->ac, ngx_http_sa_redis_setup_reply, "PING", "PING");
}


static ngx_int_t
ngx_http_sa_redis_attach(ngx_http_sa_redis_t *rd, redisAsyncContext *ac)
{
    ngx_connection_t  *c;

    c = ngx_get_connection(ac->c.fd, rd->log);
    if (c == NULL) {
        return NGX_ERROR;
    }

    c->data = rd;
    c->log = rd->log;
    c->read->log = rd->log;
    c->write->log = rd->log;
    c->read->handler = ngx_http_sa_redis_read_handler;
    c->write->handler = ngx_http_sa_redis_write_handler;

    rd->ac = ac;
    rd->conn = c;
    rd->last_reply = ngx_current_msec;

    /* the hooks first: setting the connect callback already adds a write */
    ac->ev.data = rd;
    ac->ev.addRead = ngx_http_sa_redis_add_read;
    ac->ev.delRead = ngx_http_sa_redis_del_read;
    ac->ev.addWrite = ngx_http_sa_redis_add_write;
    ac->ev.delWrite = ngx_http_sa_redis_del_write;
    ac->ev.cleanup = ngx_http_sa_redis_cleanup;

    redisAsyncSetConnectCallback(ac, ngx_http_sa_redis_connected);
    redisAsyncSetDisconnectCallback(ac, ngx_http_sa_redis_disconnected);

    return NGX_OK;
}


static void
ngx_http_sa_redis_connect(ngx_http_sa_redis_t *rd)
{
    redisAsyncContext         *ac;
    ngx_http_sa_redis_conf_t  *conf = rd->conf;

    /* both were made NUL-terminated when the configuration was read */
    ac = conf->unix_path.len
         ? redisAsyncConnectUnix((char *) conf->unix_path.data)
         : redisAsyncConnect((char *) conf->host.data, (int) conf->port);

    if (ac->err) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "sa_redis: %s connection to %V failed: %s", rd->role,
                      &conf->address, ac->errstr);
        redisAsyncFree(ac);
        ngx_http_sa_redis_schedule(rd);
        return;
    }

    if (ngx_http_sa_redis_attach(rd, ac) != NGX_OK) {
        redisAsyncFree(ac);
        ngx_http_sa_redis_schedule(rd);
        return;
    }

    ngx_http_sa_redis_setup(rd);
}


/* capped exponential backoff with jitter: workers do not reconnect in step */
static void
ngx_http_sa_redis_schedule(ngx_http_sa_redis_t *rd)
{
    ngx_msec_t  delay;

    if (rd->reconnect.timer_set) {
        return;
    }

    rd->backoff = rd->backoff ? ngx_min(rd->backoff * 2,
                                        NGX_HTTP_SA_BACKOFF_MAX)
                              : NGX_HTTP_SA_BACKOFF_MIN;

    delay = rd->backoff / 2 + (ngx_msec_t) ngx_random() % (rd->backoff / 2);

    ngx_add_timer(&rd->reconnect, delay);
}


static void
ngx_http_sa_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_http_sa_redis_t  *rd = ev->data;

    if (rd->ac == NULL && !rd->exiting) {
        ngx_http_sa_redis_connect(rd);
    }
}


/* the subscriber: SUBSCRIBE once set up, then one callback per message */

static void
ngx_http_sa_redis_sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    redisReply  *reply = r;
    redisReply  *kind, *payload;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3)
    {
        return;
    }

    kind = reply->element[0];
    payload = reply->element[2];

    if (kind->type != REDIS_REPLY_STRING) {
        return;
    }

    if (ngx_strcmp(kind->str, "subscribe") == 0) {
        ngx_log_error(NGX_LOG_INFO, ngx_http_sa_redis_sub.log, 0,
                      "sa_redis: subscribed to \"%V\"", &ngx_http_sa_channel);
        ngx_http_sa_on_state(1);
        return;
    }

    if (ngx_strcmp(kind->str, "message") == 0
        && payload->type == REDIS_REPLY_STRING)
    {
        ngx_http_sa_on_message((u_char *) payload->str, payload->len);
    }
}


static void
ngx_http_sa_redis_sub_ready(ngx_http_sa_redis_t *rd)
{
    redisAsyncCommand(rd->ac, ngx_http_sa_redis_sub_reply, NULL,
                      "SUBSCRIBE %b", ngx_http_sa_channel.data,
                      ngx_http_sa_channel.len);
}


static void
ngx_http_sa_redis_sub_lost(ngx_http_sa_redis_t *rd)
{
    ngx_http_sa_on_state(0);
}


/*
 * Reads what the invalidation channel holds right now.  Called before a
 * cached record is served, so that a change published before the request
 * arrived is never missed because epoll reported the request first.
 */
void
ngx_http_sa_redis_poll_subscriber(void)
{
    int                   n;
    ngx_http_sa_redis_t  *rd = &ngx_http_sa_redis_sub;

    if (rd->ac == NULL || rd->conn == NULL) {
        return;
    }

    if (ioctl(rd->conn->fd, FIONREAD, &n) == 0 && n > 0) {
        redisAsyncHandleRead(rd->ac);
    }
}


static void
ngx_http_sa_redis_start(ngx_http_sa_redis_t *rd, ngx_cycle_t *cycle,
    ngx_http_sa_redis_conf_t *conf, const char *role)
{
    ngx_memzero(rd, sizeof(ngx_http_sa_redis_t));

    rd->conf = conf;
    rd->log = cycle->log;
    rd->role = role;

    rd->reconnect.handler = ngx_http_sa_redis_reconnect_handler;
    rd->reconnect.data = rd;
    rd->reconnect.log = cycle->log;
    rd->reconnect.cancelable = 1;
}


ngx_int_t
ngx_http_sa_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_sa_redis_conf_t *conf, ngx_str_t *channel,
    ngx_http_sa_redis_message_pt on_message,
    ngx_http_sa_redis_state_pt on_state)
{
    ngx_http_sa_redis_start(&ngx_http_sa_redis, cycle, conf, "command");
    ngx_http_sa_redis_connect(&ngx_http_sa_redis);

    if (channel == NULL) {
        return NGX_OK;
    }

    ngx_http_sa_channel = *channel;
    ngx_http_sa_on_message = on_message;
    ngx_http_sa_on_state = on_state;

    ngx_http_sa_redis_start(&ngx_http_sa_redis_sub, cycle, conf,
                            "subscriber");
    ngx_http_sa_redis_sub.ready = ngx_http_sa_redis_sub_ready;
    ngx_http_sa_redis_sub.lost = ngx_http_sa_redis_sub_lost;
    ngx_http_sa_redis_connect(&ngx_http_sa_redis_sub);

    return NGX_OK;
}


static void
ngx_http_sa_redis_stop(ngx_http_sa_redis_t *rd)
{
    rd->exiting = 1;
    rd->lost = NULL;

    if (rd->reconnect.timer_set) {
        ngx_del_timer(&rd->reconnect);
    }

    if (rd->ac) {
        redisAsyncFree(rd->ac);
        rd->ac = NULL;
    }
}


void
ngx_http_sa_redis_exit_process(ngx_cycle_t *cycle)
{
    ngx_http_sa_redis_stop(&ngx_http_sa_redis);
    ngx_http_sa_redis_stop(&ngx_http_sa_redis_sub);
}


/* commands whose reply nobody waits for (last use) */
void
ngx_http_sa_redis_send(int argc, const char **argv, const size_t *argvlen)
{
    if (ngx_http_sa_redis.ac != NULL && ngx_http_sa_redis.conn != NULL) {
        redisAsyncCommandArgv(ngx_http_sa_redis.ac, NULL, NULL, argc, argv,
                              argvlen);
    }
}


/* GET: the caller's handler gets the reply, or NULL when there is none */

typedef struct {
    ngx_http_sa_redis_handler_pt   handler;
    void                          *data;
} ngx_http_sa_redis_wait_t;


static void
ngx_http_sa_redis_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    ngx_http_sa_redis_wait_t  *w = privdata;
    ngx_http_sa_redis_t       *rd = &ngx_http_sa_redis;

    rd->waiting--;

    if (reply != NULL) {
        rd->last_reply = ngx_current_msec;
    }

    w->handler(w->data, reply);

    ngx_free(w);
}


ngx_int_t
ngx_http_sa_redis_get(ngx_str_t *key, ngx_http_sa_redis_handler_pt handler,
    void *data, ngx_log_t *log)
{
    ngx_http_sa_redis_t       *rd = &ngx_http_sa_redis;
    ngx_http_sa_redis_wait_t  *w;
    const char                *argv[2];
    size_t                     argvlen[2];

    if (rd->ac == NULL || rd->conn == NULL) {
        return NGX_DECLINED;
    }

    w = ngx_alloc(sizeof(ngx_http_sa_redis_wait_t), log);
    if (w == NULL) {
        return NGX_ERROR;
    }

    w->handler = handler;
    w->data = data;

    argv[0] = "GET";
    argvlen[0] = 3;
    argv[1] = (const char *) key->data;
    argvlen[1] = key->len;

    if (redisAsyncCommandArgv(rd->ac, ngx_http_sa_redis_reply, w, 2, argv,
                              argvlen)
        != REDIS_OK)
    {
        ngx_free(w);
        return NGX_DECLINED;
    }

    rd->waiting++;

    return NGX_OK;
}


/*
 * A reply timed out.  When nothing at all has come back for a while, the
 * link is dead (a paused or partitioned Redis never resets the TCP
 * connection): drop it, so that the next connection can be made.  Every
 * pending GET is then answered with NULL.
 */
void
ngx_http_sa_redis_timed_out(void)
{
    ngx_http_sa_redis_t  *rd = &ngx_http_sa_redis;
    ngx_msec_t            stall;

    ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                  "sa_redis: no reply from %V within %M ms",
                  &rd->conf->address, rd->conf->timeout);

    stall = ngx_max(NGX_HTTP_SA_STALL_MIN, 4 * rd->conf->timeout);

    if (rd->ac && rd->waiting && ngx_current_msec - rd->last_reply > stall) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "sa_redis: %V has not answered for %M ms, reconnecting",
                      &rd->conf->address, ngx_current_msec - rd->last_reply);
        redisAsyncFree(rd->ac);
    }
}


ngx_msec_t
ngx_http_sa_redis_timeout(void)
{
    return ngx_http_sa_redis.conf->timeout;
}
