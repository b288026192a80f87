/*
 * The worker's Redis connections.
 *
 * hiredis owns the socket; an ngx_connection_t wraps its fd so that nginx's
 * epoll drives it.  hiredis connects and writes (redisAsyncHandleWrite);
 * replies are read here, never by hiredis's async layer, whose callback
 * matching aborts the process (assert) on a reply nobody asked for or a
 * malformed pub/sub message: each read goes through sa_resp_scan() (core/),
 * which refuses an oversized or malformed reply as soon as it is announced,
 * then hiredis's redisReader builds the reply, and sa_resp_route() hands it
 * to the oldest command sent (our own queue, rd->sent) or to the pub/sub
 * handler, or ends the connection with a protocol error.  Events are
 * level-triggered: a read handles at most 16 KiB, and epoll reports the
 * rest again.
 *
 * A connection is idle (waiting for its reconnect timer), connecting (TCP
 * connect, then AUTH, SELECT and PING, and for the subscriber SUBSCRIBE,
 * all within one deadline), or ready.  Nothing but the set-up is sent
 * before it is ready: commands asked for meanwhile wait in a queue.
 *
 * However a connection ends (refused, connect or reply deadline, set-up
 * error, protocol error, server close, dead subscriber, worker exit),
 * hiredis frees its context, and freeing always calls the ev.cleanup hook,
 * even for a context that never connected: ngx_http_sa_redis_cleanup() is
 * the one place where a connection's end is handled.  To end one we only
 * ever call ngx_http_sa_redis_close(), which asks hiredis to free it (at
 * once, or when the hiredis callback we are in returns).
 *
 * Queued hiredis callbacks cannot be cancelled: every command's handler is
 * called exactly once, with the reply or with NULL.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <sodium.h>

#include "sa_resp.h"

#include "ngx_http_sa_redis.h"
#include "ngx_http_sa_metrics.h"


#define NGX_HTTP_SA_BACKOFF_MIN   100
#define NGX_HTTP_SA_BACKOFF_MAX   5000

/*
 * A connection must be set up, and a ready one must answer something while
 * commands wait, within max(1 s, 4 x sa_redis_timeout): a paused,
 * blackholed or partitioned Redis never resets TCP.
 */
#define NGX_HTTP_SA_STALL_MIN     1000

/* what a server said, escaped for a log line (sa_resp_printable()) */
#define NGX_HTTP_SA_SAID_MAX      256

/* seconds of silence before TCP probes a sentinel's host (3, 1 s apart) */
#define NGX_HTTP_SA_SENTINEL_KEEPALIVE  5


typedef enum {
    NGX_HTTP_SA_REDIS_IDLE = 0,
    NGX_HTTP_SA_REDIS_CONNECTING,
    NGX_HTTP_SA_REDIS_READY
} ngx_http_sa_redis_state_e;


typedef struct ngx_http_sa_redis_s  ngx_http_sa_redis_t;

struct ngx_http_sa_redis_s {
    ngx_http_sa_redis_worker_t    *worker;      /* whose connection */
    ngx_http_sa_redis_conf_t      *conf;
    ngx_http_sa_redis_addr_t      *target;      /* NULL: no master known */
    ngx_log_t                     *log;
    const char                    *role;        /* for messages */
    redisAsyncContext             *ac;
    ngx_connection_t              *conn;
    ngx_http_sa_redis_state_e      state;
    ngx_event_t                    reconnect;
    ngx_event_t                    watchdog;    /* set-up or reply deadline */
    ngx_msec_t                     backoff;
    ngx_msec_t                     stall;
    ngx_uint_t                     outstanding; /* replies owed when ready */
    ngx_uint_t                     subscribed;  /* channels confirmed */
    ngx_queue_t                    pending;     /* commands before ready */
    ngx_queue_t                    sent;        /* ngx_http_sa_redis_cb_t,
                                                   oldest first */
    redisCallbackFn               *push;        /* pub/sub, once subscribed */
    sa_resp_t                      resp;        /* the reply stream guard */
    u_char                         reason[160]; /* why we end it: the log */
    void                         (*setup)(ngx_http_sa_redis_t *rd);
    void                         (*ready)(ngx_http_sa_redis_t *rd);
    void                         (*lost)(ngx_http_sa_redis_t *rd);
    unsigned                       connected:1;
    unsigned                       renew:1;     /* ended on purpose, to
                                                   start again elsewhere */
    unsigned                       timed_out:1; /* ended by the watchdog */
    unsigned                       subscribed_up:1;
    unsigned                       exiting:1;
    unsigned                       protocol:1;  /* ended on a bad reply */
};


/* a command sent, whose reply goes to fn */
typedef struct {
    ngx_queue_t                    queue;       /* in sent */
    redisCallbackFn               *fn;
    void                          *privdata;
} ngx_http_sa_redis_cb_t;


/* a command whose reply someone waits for */
typedef struct {
    ngx_queue_t                    queue;       /* in pending */
    ngx_http_sa_redis_t           *rd;          /* the command connection */
    ngx_http_sa_redis_handler_pt   handler;
    void                          *data;
    char                          *cmd;         /* formatted, while pending */
    int                            len;
} ngx_http_sa_redis_wait_t;


static void ngx_http_sa_redis_connect(ngx_http_sa_redis_t *rd);
static void ngx_http_sa_redis_close(ngx_http_sa_redis_t *rd,
    const char *fmt, ...);
static void ngx_http_sa_redis_schedule(ngx_http_sa_redis_t *rd);
static void ngx_http_sa_redis_reply(redisAsyncContext *ac, void *reply,
    void *privdata);
static void ngx_http_sa_redis_read(ngx_http_sa_redis_t *rd);
static void ngx_http_sa_redis_subscribe(ngx_http_sa_redis_t *rd);
static void ngx_http_sa_redis_heartbeat(ngx_event_t *ev);
static void ngx_http_sa_sentinel_ask_again(ngx_http_sa_redis_t *rd);
static void ngx_http_sa_sentinel_lost(ngx_http_sa_redis_t *rd);


/*
 * A master that moves again within NGX_HTTP_SA_BACKOFF_MAX of its last move
 * (a flapping or lying sentinel) is followed ever later, 100 ms to 5 s, and
 * its moves are logged at most NGX_HTTP_SA_MOVES_LOGGED times in each
 * NGX_HTTP_SA_MOVES_WINDOW.
 */
#define NGX_HTTP_SA_MOVES_LOGGED  5
#define NGX_HTTP_SA_MOVES_WINDOW  10000

/* where the sentinel last said the master is */
typedef struct {
    ngx_http_sa_redis_addr_t       addr;
    u_char                         host[NGX_INET6_ADDRSTRLEN + 1];
    u_char                         address[NGX_INET6_ADDRSTRLEN
                                           + sizeof("[]:65535")];
    ngx_msec_t                     moved;       /* the last move */
    ngx_msec_t                     backoff;     /* 0: follow the next at
                                                   once */
    ngx_msec_t                     window;      /* the log window's start */
    ngx_uint_t                     logged;      /* lines in that window */
    ngx_uint_t                     unlogged;    /* moves since the last
                                                   line */
    unsigned                       has_moved:1;
    unsigned                       has_window:1;
} ngx_http_sa_redis_master_t;


/*
 * The worker's part (smcf->worker->redis): its connections, commands, the
 * invalidation channel, and with sa_redis_sentinel the sentinel that says
 * where the master is; each connection points back to it (rd->worker),
 * and its timers and posted events carry it in ev->data.
 *
 * Heartbeats: the worker publishes its own clock on a channel of its own
 * through the command connection, and the subscriber must hear it.  Redis
 * delivers messages to a subscriber in the order they were published, so a
 * heartbeat sent at T that came back proves that every invalidation
 * published before T has been read.
 *
 * The subscriber is read at most once per event loop iteration
 * (sub_polled): every request of one epoll batch was ready before anything
 * that arrives while the batch is handled.  The flag is cleared by an event
 * posted at the first look, which nginx runs after the batch.
 */
struct ngx_http_sa_redis_worker_s {
    ngx_http_sa_redis_t            cmd;
    ngx_http_sa_redis_t            sub;
    ngx_http_sa_redis_t            sentinel;

    ngx_http_sa_redis_sub_conf_t   sub_conf;
    ngx_str_t                      hb_channel;
    ngx_event_t                    hb_timer;
    ngx_msec_t                     hb_proven;     /* sent at, newest heard */
    ngx_msec_t                     hb_delivered;  /* sent at, newest Redis
                                                     delivered to a
                                                     subscriber */
    ngx_msec_t                     hb_since;      /* this subscription's
                                                     start */
    ngx_uint_t                     sub_polled;
    ngx_event_t                    sub_poll_reset;

    ngx_uint_t                     sentinel_index;
    ngx_http_sa_redis_master_t     master;
};


/* a heartbeat on its way: when it was sent, by whom */
typedef struct {
    ngx_http_sa_redis_worker_t    *worker;
    ngx_msec_t                     sent;
} ngx_http_sa_redis_hb_t;


/* what a server sent, as a log line may show it: escaped, at most 256 bytes */
static ngx_str_t
ngx_http_sa_redis_said(u_char *buf, u_char *data, size_t len)
{
    ngx_str_t  s;

    s.data = buf;
    s.len = sa_resp_printable(buf, NGX_HTTP_SA_SAID_MAX, data, len);

    return s;
}


/* hiredis event hooks */

static void
ngx_http_sa_redis_read_handler(ngx_event_t *rev)
{
    ngx_connection_t     *c = rev->data;
    ngx_http_sa_redis_t  *rd = c->data;

    if (rd->ac) {
        ngx_http_sa_redis_read(rd);
    }
}


static void
ngx_http_sa_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t     *c = wev->data;
    ngx_http_sa_redis_t  *rd = c->data;

    if (rd->ac) {
        redisAsyncHandleWrite(rd->ac);
    }
}


static void
ngx_http_sa_redis_add_event(ngx_event_t *ev, ngx_int_t event)
{
    if (!ev->active) {
        if (ngx_add_event(ev, event, NGX_LEVEL_EVENT) != NGX_OK) {
            ngx_log_error(NGX_LOG_ERR, ev->log, 0,
                          "sa: cannot add a Redis connection event");
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
 * Queues a formatted command in hiredis's output buffer, and its reply
 * handler (fn NULL: SUBSCRIBE, answered on rd->push) in rd->sent.
 */
static ngx_int_t
ngx_http_sa_redis_send(ngx_http_sa_redis_t *rd, redisCallbackFn *fn,
    void *privdata, const char *cmd, size_t len)
{
    ngx_http_sa_redis_cb_t  *cb;

    if (rd->ac == NULL
        || (rd->ac->c.flags & (REDIS_FREEING|REDIS_DISCONNECTING)))
    {
        return NGX_DECLINED;
    }

    cb = NULL;

    if (fn) {
        cb = ngx_alloc(sizeof(ngx_http_sa_redis_cb_t), rd->log);
        if (cb == NULL) {
            return NGX_ERROR;
        }

        cb->fn = fn;
        cb->privdata = privdata;
    }

    if (redisAppendFormattedCommand(&rd->ac->c, cmd, len) != REDIS_OK) {
        if (cb) {
            ngx_free(cb);
        }

        return NGX_ERROR;
    }

    if (cb) {
        ngx_queue_insert_tail(&rd->sent, &cb->queue);
    }

    /* hiredis writes it once connected, then drops the write event */
    ngx_http_sa_redis_add_write(rd);

    return NGX_OK;
}


/* as redisAsyncCommand(), on our own queue */
static ngx_int_t
ngx_http_sa_redis_sendf(ngx_http_sa_redis_t *rd, redisCallbackFn *fn,
    void *privdata, const char *fmt, ...)
{
    int        len;
    char      *cmd;
    va_list    args;
    ngx_int_t  rc;

    va_start(args, fmt);
    len = redisvFormatCommand(&cmd, fmt, args);
    va_end(args);

    if (len < 0) {
        return NGX_ERROR;
    }

    rc = ngx_http_sa_redis_send(rd, fn, privdata, cmd, len);
    redisFreeCommand(cmd);

    return rc;
}


static ngx_int_t
ngx_http_sa_redis_send_argv(ngx_http_sa_redis_t *rd, redisCallbackFn *fn,
    void *privdata, int argc, const char **argv, const size_t *argvlen)
{
    int        len;
    char      *cmd;
    ngx_int_t  rc;

    len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    if (len < 0) {
        return NGX_ERROR;
    }

    rc = ngx_http_sa_redis_send(rd, fn, privdata, cmd, len);
    redisFreeCommand(cmd);

    return rc;
}


/*
 * One read: scanned by the guard, fed to hiredis's reader, and every reply
 * it completes handed to its handler.  A handler may end the connection:
 * the context (and its reader) is gone when rd->ac is no longer ac.
 */
static void
ngx_http_sa_redis_read(ngx_http_sa_redis_t *rd)
{
    u_char                   buf[16384], *p;
    void                    *reply;
    size_t                   used;
    ssize_t                  n;
    ngx_err_t                err;
    ngx_queue_t             *q;
    sa_resp_rc_e             rc;
    sa_resp_route_e          route;
    redisAsyncContext       *ac = rd->ac;
    ngx_http_sa_redis_cb_t  *cb;

    /* a reply before the write event saw the connect: let hiredis see it */
    if (!(ac->c.flags & REDIS_CONNECTED)) {
        redisAsyncHandleWrite(ac);

        if (rd->ac != ac || !(ac->c.flags & REDIS_CONNECTED)) {
            return;
        }
    }

    n = recv(rd->conn->fd, buf, sizeof(buf), 0);

    if (n == -1) {
        err = ngx_socket_errno;

        if (err == NGX_EAGAIN || err == NGX_EINTR) {
            return;
        }

        ngx_http_sa_redis_close(rd, "recv() failed (%d: %s)", err,
                                strerror(err));
        return;
    }

    if (n == 0) {
        ngx_http_sa_redis_close(rd, "the server closed the connection");
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                   "sa: Redis %s connection: %z bytes read", rd->role, n);

    p = buf;

    while (n > 0) {
        rc = sa_resp_scan(&rd->resp, p, n, &used);

        if (used
            && redisReaderFeed(ac->c.reader, (const char *) p, used)
               != REDIS_OK)
        {
            rd->protocol = 1;
            ngx_http_sa_redis_close(rd, "protocol error: %s",
                                    ac->c.reader->errstr);
            return;
        }

        p += used;
        n -= used;

        if (rc == SA_RESP_ERROR) {
            rd->protocol = 1;
            ngx_http_sa_redis_close(rd, "protocol error: %s",
                                    rd->resp.error);
            return;
        }

        if (rc == SA_RESP_AGAIN) {
            return;
        }

        route = sa_resp_route(&rd->resp.reply, !ngx_queue_empty(&rd->sent),
                              rd->push != NULL);

        if (route == SA_RESP_UNEXPECTED) {
            rd->protocol = 1;
            ngx_http_sa_redis_close(rd, "protocol error: %s",
                                    rd->push ? "not a pub/sub message"
                                             : "a reply nobody asked for");
            return;
        }

        reply = NULL;

        if (redisReaderGetReply(ac->c.reader, &reply) != REDIS_OK
            || reply == NULL)
        {
            /* the guard and hiredis disagree: never expected */
            rd->protocol = 1;
            ngx_http_sa_redis_close(rd, "protocol error: the reply reader "
                                    "failed");
            return;
        }

        if (route == SA_RESP_AWAITED) {
            q = ngx_queue_head(&rd->sent);
            ngx_queue_remove(q);
            cb = ngx_queue_data(q, ngx_http_sa_redis_cb_t, queue);

            cb->fn(ac, reply, cb->privdata);
            ngx_free(cb);

        } else {
            rd->push(ac, reply, NULL);
        }

        freeReplyObject(reply);

        if (rd->ac != ac) {
            return;              /* ended by the handler */
        }
    }
}


/* the end of a connection: every way there goes through here */

static void
ngx_http_sa_redis_release(ngx_http_sa_redis_t *rd)
{
    ngx_connection_t  *c = rd->conn;

    /* NGX_CLOSE_EVENT: hiredis closes the fd, which leaves epoll by itself */
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


/* the replies owed by a context being freed: each handler gets NULL */
static void
ngx_http_sa_redis_fail_sent(ngx_http_sa_redis_t *rd, redisAsyncContext *ac)
{
    ngx_queue_t             *q;
    ngx_http_sa_redis_cb_t  *cb;

    while (!ngx_queue_empty(&rd->sent)) {
        q = ngx_queue_head(&rd->sent);
        ngx_queue_remove(q);

        cb = ngx_queue_data(q, ngx_http_sa_redis_cb_t, queue);
        cb->fn(ac, NULL, cb->privdata);
        ngx_free(cb);
    }
}


static void
ngx_http_sa_redis_fail_pending(ngx_http_sa_redis_t *rd)
{
    ngx_queue_t               *q;
    ngx_http_sa_redis_wait_t  *w;

    while (!ngx_queue_empty(&rd->pending)) {
        q = ngx_queue_head(&rd->pending);
        ngx_queue_remove(q);

        w = ngx_queue_data(q, ngx_http_sa_redis_wait_t, queue);
        redisFreeCommand(w->cmd);
        w->handler(w->data, NGX_ERROR, NULL);
        ngx_free(w);
    }
}


/*
 * The ev.cleanup hook: hiredis calls it once for every context it frees,
 * just before it closes the fd; the replies still owed are answered here,
 * with NULL, once the connection is marked idle (a handler asking for a
 * command then hears that Redis is unavailable).  The reconnect comes from
 * a timer, never from here: a new socket could get the fd number that is
 * about to be closed.
 */
static void
ngx_http_sa_redis_cleanup(void *data)
{
    ngx_http_sa_redis_t  *rd = data;

    const char         *why;
    redisAsyncContext  *ac = rd->ac;

    why = rd->reason[0] ? (const char *) rd->reason
          : rd->ac->c.err ? rd->ac->c.errstr : "closed";

    if (rd->renew) {
        ngx_log_error(NGX_LOG_INFO, rd->log, 0,
                      "sa: Redis %s connection to %V closed: %s", rd->role,
                      &rd->target->address, why);

    } else if (!rd->exiting) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "sa: Redis %s connection to %V %s: %s", rd->role,
                      &rd->target->address,
                      rd->connected ? "lost" : "failed", why);

        /* refused: connect refused, a set-up error, the server closing */
        ngx_http_sa_metrics_count(rd->protocol
                                  || rd->ac->c.err == REDIS_ERR_PROTOCOL
                                  ? NGX_HTTP_SA_M_REDIS_PROTOCOL
                                  : rd->timed_out
                                  ? NGX_HTTP_SA_M_REDIS_TIMEOUT
                                  : NGX_HTTP_SA_M_REDIS_REFUSED);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                   "sa: Redis %s connection ended, %ui replies owed",
                   rd->role, rd->outstanding);

    if (rd->conn) {
        ngx_http_sa_redis_release(rd);
    }

    if (rd->watchdog.timer_set) {
        ngx_del_timer(&rd->watchdog);
    }

    /*
     * The next connection comes at once only after one that worked: a
     * server that sets up and then answers garbage is retried ever later.
     */
    if (rd->state == NGX_HTTP_SA_REDIS_READY && !rd->protocol) {
        rd->backoff = 0;
    }

    rd->ac = NULL;
    rd->state = NGX_HTTP_SA_REDIS_IDLE;
    rd->outstanding = 0;
    rd->subscribed = 0;
    rd->connected = 0;
    rd->timed_out = 0;
    rd->protocol = 0;
    rd->push = NULL;
    rd->reason[0] = '\0';

    ngx_http_sa_redis_fail_sent(rd, ac);
    ngx_http_sa_redis_fail_pending(rd);

    if (rd->lost) {
        rd->lost(rd);
    }

    if (!rd->exiting) {
        if (!rd->renew) {
            ngx_http_sa_sentinel_ask_again(rd);
        }

        ngx_http_sa_redis_schedule(rd);
    }

    rd->renew = 0;
}


/*
 * Ends a connection.  Inside one of its hiredis callbacks, hiredis frees it
 * when the callback returns; never call this from the connect callback.
 */
static void
ngx_http_sa_redis_close(ngx_http_sa_redis_t *rd, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    if (rd->ac == NULL || (rd->ac->c.flags & REDIS_FREEING)) {
        return;
    }

    va_start(args, fmt);
    p = ngx_vslprintf(rd->reason, rd->reason + sizeof(rd->reason) - 1, fmt,
                      args);
    va_end(args);
    *p = '\0';

    redisAsyncFree(rd->ac);
}


static void
ngx_http_sa_redis_watchdog_handler(ngx_event_t *ev)
{
    ngx_http_sa_redis_t  *rd = ev->data;

    rd->timed_out = 1;

    if (rd->state == NGX_HTTP_SA_REDIS_CONNECTING) {
        ngx_http_sa_redis_close(rd, "not set up within %M ms", rd->stall);
        return;
    }

    ngx_http_sa_redis_close(rd, "no reply for %M ms", rd->stall);
}


/* connection life cycle */

static void
ngx_http_sa_redis_connected(const redisAsyncContext *ac, int status)
{
    ngx_http_sa_redis_t  *rd = ac->ev.data;

    /* on failure hiredis frees the context right after this returns */
    if (status == REDIS_OK) {
        rd->connected = 1;
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                       "sa: Redis %s connection: TCP connected", rd->role);
    }
}


static void
ngx_http_sa_redis_send_pending(ngx_http_sa_redis_t *rd)
{
    ngx_queue_t               *q;
    ngx_http_sa_redis_wait_t  *w;

    while (!ngx_queue_empty(&rd->pending) && rd->ac) {
        q = ngx_queue_head(&rd->pending);
        ngx_queue_remove(q);

        w = ngx_queue_data(q, ngx_http_sa_redis_wait_t, queue);

        if (ngx_http_sa_redis_send(rd, ngx_http_sa_redis_reply, w, w->cmd,
                                   w->len)
            != NGX_OK)
        {
            redisFreeCommand(w->cmd);
            w->handler(w->data, NGX_ERROR, NULL);
            ngx_free(w);
            continue;
        }

        redisFreeCommand(w->cmd);
        w->cmd = NULL;

        if (rd->outstanding++ == 0) {
            ngx_add_timer(&rd->watchdog, rd->stall);
        }
    }
}


static void
ngx_http_sa_redis_set_ready(ngx_http_sa_redis_t *rd)
{
    rd->state = NGX_HTTP_SA_REDIS_READY;

    if (rd->watchdog.timer_set) {
        ngx_del_timer(&rd->watchdog);
    }

    ngx_log_error(NGX_LOG_INFO, rd->log, 0, "sa: Redis %s connection to %V",
                  rd->role, &rd->target->address);

    if (rd->ready) {
        rd->ready(rd);
    }
}


/* ROLE's first word: "master", "slave", "sentinel" */
static const char *
ngx_http_sa_redis_role(redisReply *reply)
{
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements == 0
        || reply->element[0]->type != REDIS_REPLY_STRING)
    {
        return "unknown";
    }

    return reply->element[0]->str;
}


/*
 * AUTH, SELECT and PING (or ROLE): any error ends the connection, a PONG
 * (or "master") readies it.
 */
static void
ngx_http_sa_redis_setup_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_http_sa_redis_t  *rd = ac->ev.data;
    redisReply           *reply = r;
    const char           *what = privdata;
    const char           *role;
    u_char                said[NGX_HTTP_SA_SAID_MAX];
    ngx_str_t             text;

    if (reply == NULL || rd->state != NGX_HTTP_SA_REDIS_CONNECTING) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        text = ngx_http_sa_redis_said(said, (u_char *) reply->str,
                                      reply->len);
        ngx_http_sa_redis_close(rd, "%s refused%s: %V", what,
                                ngx_strcmp(what, "ROLE") == 0
                                && ngx_strncmp(reply->str, "NOPERM", 6) == 0
                                ? " (the ACL user needs +role)" : "",
                                &text);
        return;
    }

    if (ngx_strcmp(what, "ROLE") == 0) {
        /* the sentinels may still name a primary that was demoted */
        role = ngx_http_sa_redis_role(reply);

        if (ngx_strcmp(role, "master") != 0) {
            text = ngx_http_sa_redis_said(said, (u_char *) role,
                                          ngx_strlen(role));
            ngx_http_sa_redis_close(rd, "not the master (role %V)", &text);
            return;
        }

    } else if (ngx_strcmp(what, "PING") != 0) {
        return;
    }

    /* the subscriber still has to subscribe, within the same deadline */
    if (rd == &rd->worker->sub) {
        ngx_http_sa_redis_subscribe(rd);

    } else {
        ngx_http_sa_redis_set_ready(rd);
    }
}


static void
ngx_http_sa_redis_setup(ngx_http_sa_redis_t *rd)
{
    ngx_http_sa_redis_conf_t  *conf = rd->conf;

    /* queued before the connect completes: hiredis sends them first */

    /* a command that cannot be queued leaves it to the watchdog */

    if (conf->password.len && conf->user.len) {
        (void) ngx_http_sa_redis_sendf(rd, ngx_http_sa_redis_setup_reply,
                                       "AUTH", "AUTH %b %b", conf->user.data,
                                       conf->user.len, conf->password.data,
                                       conf->password.len);

    } else if (conf->password.len) {
        (void) ngx_http_sa_redis_sendf(rd, ngx_http_sa_redis_setup_reply,
                                       "AUTH", "AUTH %b", conf->password.data,
                                       conf->password.len);
    }

    if (conf->db) {
        (void) ngx_http_sa_redis_sendf(rd, ngx_http_sa_redis_setup_reply,
                                       "SELECT", "SELECT %d", (int) conf->db);
    }

    /* ROLE answers like PING, and says whether it is still the master */
    if (conf->sentinels) {
        (void) ngx_http_sa_redis_sendf(rd, ngx_http_sa_redis_setup_reply,
                                       "ROLE", "ROLE");

    } else {
        (void) ngx_http_sa_redis_sendf(rd, ngx_http_sa_redis_setup_reply,
                                       "PING", "PING");
    }
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
    rd->state = NGX_HTTP_SA_REDIS_CONNECTING;
    rd->reason[0] = '\0';
    rd->protocol = 0;
    rd->push = NULL;
    sa_resp_init(&rd->resp);

    /* the hooks first: setting the connect callback already adds a write */
    ac->ev.data = rd;
    ac->ev.addRead = ngx_http_sa_redis_add_read;
    ac->ev.delRead = ngx_http_sa_redis_del_read;
    ac->ev.addWrite = ngx_http_sa_redis_add_write;
    ac->ev.delWrite = ngx_http_sa_redis_del_write;
    ac->ev.cleanup = ngx_http_sa_redis_cleanup;

    redisAsyncSetConnectCallback(ac, ngx_http_sa_redis_connected);

    return NGX_OK;
}


/*
 * A connection that failed before hiredis had our hooks (no cleanup call):
 * the next sentinel is tried, or the sentinels are asked again, as when a
 * connection ends (an unreachable address fails at once, every time).
 */
static void
ngx_http_sa_redis_failed(ngx_http_sa_redis_t *rd)
{
    if (rd == &rd->worker->sentinel) {
        ngx_http_sa_sentinel_lost(rd);

    } else {
        ngx_http_sa_sentinel_ask_again(rd);
    }

    ngx_http_sa_redis_schedule(rd);
}


static void
ngx_http_sa_redis_connect(ngx_http_sa_redis_t *rd)
{
    redisAsyncContext         *ac;
    ngx_http_sa_redis_addr_t  *to = rd->target;

    /* the sentinel connection starts this one when it learns the master */
    if (to == NULL) {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                       "sa: Redis %s connection: waiting for the sentinels",
                       rd->role);
        return;
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                   "sa: Redis %s connection: connecting to %V", rd->role,
                   &to->address);

    /* both are NUL-terminated, and the host is an IP address */
    ac = to->unix_path.len
         ? redisAsyncConnectUnix((char *) to->unix_path.data)
         : redisAsyncConnect((char *) to->host.data, (int) to->port);

    /* a context that failed at once never had our hooks: no cleanup call */
    if (ac->err) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "sa: Redis %s connection to %V failed: %s", rd->role,
                      &to->address, ac->errstr);
        redisAsyncFree(ac);
        ngx_http_sa_redis_failed(rd);
        return;
    }

    if (ngx_http_sa_redis_attach(rd, ac) != NGX_OK) {
        redisAsyncFree(ac);
        ngx_http_sa_redis_failed(rd);
        return;
    }

    ngx_add_timer(&rd->watchdog, rd->stall);

    rd->setup(rd);
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

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                   "sa: Redis %s connection: reconnect in %M ms",
                   rd->role, delay);

    ngx_add_timer(&rd->reconnect, delay);
}


static void
ngx_http_sa_redis_reconnect_handler(ngx_event_t *ev)
{
    ngx_http_sa_redis_t  *rd = ev->data;

    if (rd->ac == NULL && !rd->exiting) {
        ngx_http_sa_metrics_count(NGX_HTTP_SA_M_REDIS_RECONNECT);
        ngx_http_sa_redis_connect(rd);
    }
}


/* commands */

/* hiredis' reply, handed on as a value: no hiredis type leaves this file */
static void
ngx_http_sa_redis_answer(ngx_http_sa_redis_t *rd,
    ngx_http_sa_redis_wait_t *w, redisReply *reply)
{
    u_char     digits[NGX_INT64_LEN], said[NGX_HTTP_SA_SAID_MAX];
    ngx_str_t  value;

    if (reply == NULL) {
        w->handler(w->data, NGX_ERROR, NULL);
        return;
    }

    switch (reply->type) {

    case REDIS_REPLY_STRING:
        value.data = (u_char *) reply->str;
        value.len = reply->len;
        w->handler(w->data, NGX_OK, &value);
        return;

    case REDIS_REPLY_INTEGER:
        value.data = digits;
        value.len = ngx_sprintf(digits, "%L", (int64_t) reply->integer)
                    - digits;
        w->handler(w->data, NGX_DONE, &value);
        return;

    case REDIS_REPLY_NIL:
        w->handler(w->data, NGX_DECLINED, NULL);
        return;

    case REDIS_REPLY_ERROR:
        value = ngx_http_sa_redis_said(said, (u_char *) reply->str,
                                       reply->len);
        ngx_log_error(NGX_LOG_ERR, rd->log, 0, "sa: Redis error: %V", &value);
        w->handler(w->data, NGX_ERROR, NULL);
        return;

    default:
        w->handler(w->data, NGX_ABORT, NULL);
        return;
    }
}


static void
ngx_http_sa_redis_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    ngx_http_sa_redis_wait_t  *w = privdata;
    ngx_http_sa_redis_t       *rd = w->rd;

    /* NULL: the context is being freed, the cleanup resets the count */
    if (reply != NULL && rd->outstanding) {
        if (--rd->outstanding) {
            ngx_add_timer(&rd->watchdog, rd->stall);     /* progress */

        } else if (rd->watchdog.timer_set) {
            ngx_del_timer(&rd->watchdog);
        }
    }

    if (w->handler) {
        ngx_http_sa_redis_answer(rd, w, reply);
    }

    ngx_free(w);
}


ngx_int_t
ngx_http_sa_redis_command(ngx_http_sa_redis_worker_t *rw, int argc,
    const char **argv, const size_t *argvlen,
    ngx_http_sa_redis_handler_pt handler, void *data)
{
    ngx_http_sa_redis_t       *rd = &rw->cmd;
    ngx_http_sa_redis_wait_t  *w;

    if (rd->state == NGX_HTTP_SA_REDIS_IDLE || rd->ac == NULL
        || (rd->state == NGX_HTTP_SA_REDIS_CONNECTING && handler == NULL))
    {
        return NGX_DECLINED;
    }

    w = ngx_alloc(sizeof(ngx_http_sa_redis_wait_t), rd->log);
    if (w == NULL) {
        return NGX_DECLINED;
    }

    w->rd = rd;
    w->handler = handler;
    w->data = data;
    w->cmd = NULL;

    if (rd->state == NGX_HTTP_SA_REDIS_CONNECTING) {
        w->len = redisFormatCommandArgv(&w->cmd, argc, argv, argvlen);
        if (w->len < 0) {
            ngx_free(w);
            return NGX_DECLINED;
        }

        ngx_queue_insert_tail(&rd->pending, &w->queue);

        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                       "sa: %s waits for the connection", argv[0]);
        return NGX_OK;
    }

    if (ngx_http_sa_redis_send_argv(rd, ngx_http_sa_redis_reply, w, argc,
                                    argv, argvlen)
        != NGX_OK)
    {
        ngx_free(w);
        return NGX_DECLINED;
    }

    if (rd->outstanding++ == 0) {
        ngx_add_timer(&rd->watchdog, rd->stall);
    }

    ngx_http_sa_metrics_count(NGX_HTTP_SA_M_REDIS_COMMAND);

    return NGX_OK;
}


static void
ngx_http_sa_redis_command_ready(ngx_http_sa_redis_t *rd)
{
    ngx_http_sa_redis_worker_t  *rw = rd->worker;

    ngx_http_sa_redis_send_pending(rd);

    /* the first heartbeat as soon as both connections are up */
    if (rw->sub.state == NGX_HTTP_SA_REDIS_READY) {
        ngx_http_sa_redis_heartbeat(&rw->hb_timer);
    }
}


/* the subscriber: SUBSCRIBE once set up, then one callback per message */

static void
ngx_http_sa_redis_heard(ngx_http_sa_redis_worker_t *rw, u_char *data,
    size_t len)
{
    ngx_int_t  sent;

    sent = ngx_atoi(data, len);

    if (sent != NGX_ERROR && (ngx_msec_t) sent <= ngx_current_msec
        && (ngx_msec_t) sent > rw->hb_proven)
    {
        rw->hb_proven = (ngx_msec_t) sent;
    }
}


static void
ngx_http_sa_redis_sub_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_http_sa_redis_t         *rd = ac->ev.data;
    ngx_http_sa_redis_worker_t  *rw = rd->worker;
    redisReply           *reply = r;
    redisReply           *kind, *channel, *payload;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3)
    {
        return;
    }

    kind = reply->element[0];
    channel = reply->element[1];
    payload = reply->element[2];

    if (kind->type != REDIS_REPLY_STRING
        || channel->type != REDIS_REPLY_STRING)
    {
        return;
    }

    if (ngx_strcmp(kind->str, "subscribe") == 0) {
        /* the invalidation channel and the heartbeat channel */
        if (++rd->subscribed == 2) {
            ngx_http_sa_redis_set_ready(rd);
        }
        return;
    }

    if (ngx_strcmp(kind->str, "message") != 0
        || payload->type != REDIS_REPLY_STRING)
    {
        return;
    }

    if ((size_t) channel->len == rw->hb_channel.len
        && ngx_strncmp(channel->str, rw->hb_channel.data,
                       channel->len) == 0)
    {
        ngx_http_sa_redis_heard(rw, (u_char *) payload->str, payload->len);
        return;
    }

    rw->sub_conf.on_message(rw->sub_conf.data, (u_char *) payload->str,
                            payload->len);
}


/* AUTH and SELECT went through: subscribe, ready once both are confirmed */
static void
ngx_http_sa_redis_subscribe(ngx_http_sa_redis_t *rd)
{
    const char                  *argv[3];
    size_t                       argvlen[3];
    ngx_http_sa_redis_worker_t  *rw = rd->worker;

    argv[0] = "SUBSCRIBE";
    argvlen[0] = sizeof("SUBSCRIBE") - 1;
    argv[1] = (const char *) rw->sub_conf.channel.data;
    argvlen[1] = rw->sub_conf.channel.len;
    argv[2] = (const char *) rw->hb_channel.data;
    argvlen[2] = rw->hb_channel.len;

    /* confirmations and messages: no reply is awaited after this one */
    if (ngx_http_sa_redis_send_argv(rd, NULL, NULL, 3, argv, argvlen)
        == NGX_OK)
    {
        rd->push = ngx_http_sa_redis_sub_reply;
    }
}


static void
ngx_http_sa_redis_sub_ready(ngx_http_sa_redis_t *rd)
{
    ngx_http_sa_redis_worker_t  *rw = rd->worker;

    ngx_log_error(NGX_LOG_INFO, rd->log, 0,
                  "sa: subscribed to \"%V\"",
                  &rw->sub_conf.channel);

    rw->hb_proven = 0;
    rw->hb_delivered = 0;
    rw->hb_since = ngx_current_msec;

    rd->subscribed_up = 1;
    ngx_http_sa_metrics_subscribed(1);

    rw->sub_conf.on_state(rw->sub_conf.data, 1);

    if (rw->cmd.state == NGX_HTTP_SA_REDIS_READY) {
        ngx_http_sa_redis_heartbeat(&rw->hb_timer);
    }
}


static void
ngx_http_sa_redis_sub_lost(ngx_http_sa_redis_t *rd)
{
    ngx_http_sa_redis_worker_t  *rw = rd->worker;

    rw->hb_proven = 0;
    rw->hb_delivered = 0;

    if (rd->subscribed_up) {
        rd->subscribed_up = 0;
        ngx_http_sa_metrics_subscribed(0);
    }

    rw->sub_conf.on_state(rw->sub_conf.data, 0);
}


/* PUBLISH answered: to how many subscribers Redis delivered the heartbeat */
static void
ngx_http_sa_redis_published(void *data, ngx_int_t rc, ngx_str_t *value)
{
    ngx_http_sa_redis_hb_t      *hb = data;
    ngx_msec_t                   sent = hb->sent;
    ngx_http_sa_redis_worker_t  *rw = hb->worker;
    ngx_http_sa_redis_t         *sub = &rw->sub;

    ngx_free(hb);

    /* no answer, an error (logged), or about an earlier subscription */
    if (rc != NGX_DONE || sub->state != NGX_HTTP_SA_REDIS_READY
        || sent < rw->hb_since || sent < rw->hb_delivered)
    {
        return;
    }

    if (value->len == 1 && value->data[0] == '0') {
        /* the server does not know our subscription: it is gone */
        ngx_http_sa_redis_close(sub, "not subscribed at the server");
        return;
    }

    rw->hb_delivered = sent;
}


static void
ngx_http_sa_redis_heartbeat(ngx_event_t *ev)
{
    u_char                       now[NGX_INT_T_LEN];
    ngx_msec_t                   heard;
    const char                  *argv[3];
    size_t                       argvlen[3];
    ngx_http_sa_redis_hb_t      *hb;
    ngx_http_sa_redis_worker_t  *rw = ev->data;
    ngx_http_sa_redis_t         *sub = &rw->sub;

    if (!rw->cmd.exiting) {
        if (ev->timer_set) {
            ngx_del_timer(ev);
        }
        ngx_add_timer(ev, rw->sub_conf.heartbeat);
    }

    if (sub->state != NGX_HTTP_SA_REDIS_READY
        || rw->cmd.state != NGX_HTTP_SA_REDIS_READY)
    {
        return;
    }

    /*
     * Redis delivered heartbeats that were never heard, and nothing was
     * heard for a heartbeat and a deadline: the subscriber's link is dead.
     */
    heard = ngx_max(rw->hb_proven, rw->hb_since);

    if (rw->hb_delivered > rw->hb_proven
        && ngx_current_msec - heard
           > rw->sub_conf.heartbeat + sub->stall)
    {
        ngx_http_sa_redis_close(sub, "no heartbeat heard for %M ms",
                                ngx_current_msec - heard);
        return;
    }

    argv[0] = "PUBLISH";
    argvlen[0] = sizeof("PUBLISH") - 1;
    argv[1] = (const char *) rw->hb_channel.data;
    argvlen[1] = rw->hb_channel.len;
    argv[2] = (const char *) now;
    argvlen[2] = ngx_sprintf(now, "%M", ngx_current_msec) - now;

    /* freed by the handler, which every command gets exactly once */
    hb = ngx_alloc(sizeof(ngx_http_sa_redis_hb_t), ev->log);
    if (hb == NULL) {
        return;
    }

    hb->worker = rw;
    hb->sent = ngx_current_msec;

    if (ngx_http_sa_redis_command(rw, 3, argv, argvlen,
                                  ngx_http_sa_redis_published, hb)
        != NGX_OK)
    {
        ngx_free(hb);
    }
}


static void
ngx_http_sa_redis_poll_reset(ngx_event_t *ev)
{
    ngx_http_sa_redis_worker_t  *rw = ev->data;

    rw->sub_polled = 0;
}


static void
ngx_http_sa_redis_poll_subscriber(ngx_http_sa_redis_t *rd)
{
    int                          n;
    ngx_uint_t                   i;
    ngx_http_sa_redis_worker_t  *rw = rd->worker;

    rw->sub_polled = 1;
    ngx_post_event(&rw->sub_poll_reset, &ngx_posted_events);

    /* hiredis reads 16 KiB at a time: a long message may take several */
    for (i = 0; i < 64 && rd->state == NGX_HTTP_SA_REDIS_READY
                && ngx_socket_nread(rd->conn->fd, &n) == 0 && n > 0;
         i++)
    {
        ngx_http_sa_redis_read(rd);
    }
}


ngx_uint_t
ngx_http_sa_redis_subscriber_fresh(ngx_http_sa_redis_worker_t *rw)
{
    ngx_http_sa_redis_t  *rd = &rw->sub;

    if (rd->state != NGX_HTTP_SA_REDIS_READY) {
        return 0;
    }

    if (!rw->sub_polled) {
        ngx_http_sa_redis_poll_subscriber(rd);

        if (rd->state != NGX_HTTP_SA_REDIS_READY) {
            return 0;
        }
    }

    return rw->hb_proven
           && ngx_current_msec - rw->hb_proven
              <= rw->sub_conf.heartbeat + rd->conf->timeout;
}


/*
 * The sentinel connection (sa_redis_sentinel).  It asks one sentinel where
 * the master is, then listens on its +switch-master channel; the two data
 * connections go where it says, and wait, idle, while no master is known.
 * When a data connection ends, or finds that its node is no longer the
 * master, the next sentinel is asked again on a new connection: a master
 * that died may have been replaced while this sentinel was unreachable.
 */

/* sentinels announce IP addresses; a host name would need a blocking lookup */
static ngx_uint_t
ngx_http_sa_sentinel_is_ip(u_char *host, size_t len)
{
#if (NGX_HAVE_INET6)
    u_char  addr6[16];

    if (ngx_inet6_addr(host, len, addr6) == NGX_OK) {
        return 1;
    }
#endif

    return ngx_inet_addr(host, len) != INADDR_NONE;
}


/* how long the data connections wait before following this move */
static ngx_msec_t
ngx_http_sa_sentinel_follow_delay(ngx_http_sa_redis_worker_t *rw)
{
    ngx_msec_t  b;

    if (rw->master.has_moved
        && ngx_current_msec - rw->master.moved
           < NGX_HTTP_SA_BACKOFF_MAX)
    {
        b = rw->master.backoff;
        b = b ? ngx_min(b * 2, NGX_HTTP_SA_BACKOFF_MAX)
              : NGX_HTTP_SA_BACKOFF_MIN;

    } else {
        b = 0;
    }

    rw->master.backoff = b;
    rw->master.moved = ngx_current_msec;
    rw->master.has_moved = 1;

    return b ? b / 2 + (ngx_msec_t) ngx_random() % (b / 2) : 1;
}


/*
 * A data connection leaves its node at once and reconnects to the master
 * after delay; one already waiting to reconnect sooner than that keeps its
 * timer (a flapping master never pushes a reconnect later), and connects to
 * wherever the master is by then.
 */
static void
ngx_http_sa_sentinel_redirect(ngx_http_sa_redis_t *rd, ngx_msec_t delay)
{
    if (rd->conf == NULL || rd->exiting) {
        return;                  /* the subscriber, without sa_cache */
    }

    rd->backoff = 0;

    if (rd->ac) {
        rd->renew = 1;
        ngx_http_sa_redis_close(rd, "the master moved");

    } else if (rd->reconnect.timer_set
               && (ngx_msec_int_t) (rd->reconnect.timer.key - ngx_current_msec)
                  <= (ngx_msec_int_t) delay)
    {
        return;
    }

    if (rd->reconnect.timer_set) {
        ngx_del_timer(&rd->reconnect);
    }

    ngx_add_timer(&rd->reconnect, delay);
}


/* "master is at", at most NGX_HTTP_SA_MOVES_LOGGED lines a window */
static void
ngx_http_sa_sentinel_log_move(ngx_http_sa_redis_t *rd, ngx_msec_t delay)
{
    ngx_http_sa_redis_worker_t  *rw = rd->worker;

    if (!rw->master.has_window
        || ngx_current_msec - rw->master.window
           >= NGX_HTTP_SA_MOVES_WINDOW)
    {
        rw->master.window = ngx_current_msec;
        rw->master.has_window = 1;
        rw->master.logged = 0;
    }

    if (rw->master.logged == NGX_HTTP_SA_MOVES_LOGGED) {
        rw->master.unlogged++;

        ngx_log_debug3(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                       "sa: sentinel %V: master at %V (not logged), "
                       "followed in %M ms", &rd->target->address,
                       &rw->master.addr.address, delay);
        return;
    }

    rw->master.logged++;

    if (rw->master.unlogged || delay > 1) {
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "sa: sentinel %V: master \"%V\" is at %V "
                      "(it moves often: followed in %M ms; "
                      "%ui moves not logged)",
                      &rd->target->address, &rd->conf->master,
                      &rw->master.addr.address, delay,
                      rw->master.unlogged);

    } else {
        ngx_log_error(NGX_LOG_NOTICE, rd->log, 0,
                      "sa: sentinel %V: master \"%V\" is at %V",
                      &rd->target->address, &rd->conf->master,
                      &rw->master.addr.address);
    }

    rw->master.unlogged = 0;
}


/* NGX_DECLINED: the sentinel named no usable address (logged) */
static ngx_int_t
ngx_http_sa_sentinel_master_at(ngx_http_sa_redis_t *rd, u_char *host,
    size_t hlen, u_char *port, size_t plen)
{
    u_char                      *p, said_host[NGX_HTTP_SA_SAID_MAX];
    u_char                       said_port[NGX_HTTP_SA_SAID_MAX];
    ngx_int_t                    n;
    ngx_str_t                    h, pt;
    ngx_msec_t                   delay;
    ngx_http_sa_redis_worker_t  *rw = rd->worker;

    n = ngx_atoi(port, plen);

    if (n < 1 || n > 65535 || hlen > NGX_INET6_ADDRSTRLEN
        || !ngx_http_sa_sentinel_is_ip(host, hlen))
    {
        h = ngx_http_sa_redis_said(said_host, host, hlen);
        pt = ngx_http_sa_redis_said(said_port, port, plen);
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "sa: sentinel %V names \"%V\" port \"%V\" for "
                      "master \"%V\": not an IP address and a port",
                      &rd->target->address, &h, &pt, &rd->conf->master);
        return NGX_DECLINED;
    }

    if (rw->master.addr.port == n
        && rw->master.addr.host.len == hlen
        && ngx_strncmp(rw->master.host, host, hlen) == 0)
    {
        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                       "sa: sentinel %V: master still at %V",
                       &rd->target->address,
                       &rw->master.addr.address);
        return NGX_OK;
    }

    /* first off the old node, whose address the messages still name */
    delay = ngx_http_sa_sentinel_follow_delay(rw);
    ngx_http_sa_sentinel_redirect(&rw->cmd, delay);
    ngx_http_sa_sentinel_redirect(&rw->sub, delay);

    p = ngx_cpymem(rw->master.host, host, hlen);
    *p = '\0';

    rw->master.addr.host.data = rw->master.host;
    rw->master.addr.host.len = hlen;
    rw->master.addr.port = n;
    rw->master.addr.address.data = rw->master.address;
    rw->master.addr.address.len =
        ngx_sprintf(rw->master.address,
                    ngx_strlchr(host, host + hlen, ':') ? "[%*s]:%i"
                                                        : "%*s:%i",
                    hlen, host, n)
        - rw->master.address;

    ngx_http_sa_sentinel_log_move(rd, delay);

    rw->cmd.target = &rw->master.addr;

    if (rw->sub.conf) {
        rw->sub.target = &rw->master.addr;
    }

    return NGX_OK;
}


/* SENTINEL get-master-addr-by-name: [ip, port], or nil for an unknown name */
static void
ngx_http_sa_sentinel_master_reply(redisAsyncContext *ac, void *r,
    void *privdata)
{
    ngx_http_sa_redis_t  *rd = ac->ev.data;
    redisReply           *reply = r;
    redisReply           *host, *port;
    u_char                said[NGX_HTTP_SA_SAID_MAX];
    ngx_str_t             text;

    if (reply == NULL || rd->state != NGX_HTTP_SA_REDIS_CONNECTING) {
        return;
    }

    if (reply->type == REDIS_REPLY_ERROR) {
        text = ngx_http_sa_redis_said(said, (u_char *) reply->str,
                                      reply->len);
        ngx_http_sa_redis_close(rd, "SENTINEL refused: %V", &text);
        return;
    }

    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING)
    {
        ngx_http_sa_redis_close(rd, "it does not know master \"%V\"",
                                &rd->conf->master);
        return;
    }

    host = reply->element[0];
    port = reply->element[1];

    /* an unusable answer: the next sentinel may announce an IP address */
    if (ngx_http_sa_sentinel_master_at(rd, (u_char *) host->str, host->len,
                                       (u_char *) port->str, port->len)
        != NGX_OK)
    {
        ngx_http_sa_redis_close(rd, "no usable address for master \"%V\"",
                                &rd->conf->master);
    }
}


/* "+switch-master": "<name> <old ip> <old port> <new ip> <new port>" */
static void
ngx_http_sa_sentinel_switched(ngx_http_sa_redis_t *rd, u_char *p,
    size_t len)
{
    u_char      *end, *field[5];
    size_t       flen[5];
    ngx_uint_t   n;

    end = p + len;

    for (n = 0; n < 5 && p < end; n++) {
        field[n] = p;
        p = ngx_strlchr(p, end, ' ');
        p = p ? p : end;
        flen[n] = p - field[n];
        p++;
    }

    if (n != 5 || p < end) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "sa: sentinel %V sent a malformed +switch-master",
                      &rd->target->address);
        return;
    }

    if (flen[0] != rd->conf->master.len
        || ngx_strncmp(field[0], rd->conf->master.data, flen[0]) != 0)
    {
        return;                  /* another master this sentinel watches */
    }

    (void) ngx_http_sa_sentinel_master_at(rd, field[3], flen[3], field[4],
                                          flen[4]);
}


static void
ngx_http_sa_sentinel_message(redisAsyncContext *ac, void *r, void *privdata)
{
    ngx_http_sa_redis_t  *rd = ac->ev.data;
    redisReply           *reply = r;
    redisReply           *kind, *payload;

    if (reply == NULL || reply->type != REDIS_REPLY_ARRAY
        || reply->elements != 3
        || reply->element[0]->type != REDIS_REPLY_STRING)
    {
        return;
    }

    kind = reply->element[0];
    payload = reply->element[2];

    if (ngx_strcmp(kind->str, "subscribe") == 0) {
        ngx_http_sa_redis_set_ready(rd);
        return;
    }

    if (ngx_strcmp(kind->str, "message") == 0
        && payload->type == REDIS_REPLY_STRING)
    {
        ngx_http_sa_sentinel_switched(rd, (u_char *) payload->str,
                                      payload->len);
    }
}


/* as nginx sets "listen ... so_keepalive=": idle, interval, count */
static void
ngx_http_sa_sentinel_keepalive(ngx_http_sa_redis_t *rd)
{
    int  on = 1;

    if (setsockopt(rd->conn->fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(int))
        == -1)
    {
        ngx_log_error(NGX_LOG_WARN, rd->log, ngx_socket_errno,
                      "sa: setsockopt(SO_KEEPALIVE) failed, ignored");
        return;
    }

#if (NGX_HAVE_KEEPALIVE_TUNABLE)
    {
    int  idle = NGX_HTTP_SA_SENTINEL_KEEPALIVE, intvl = 1, cnt = 3;

    (void) setsockopt(rd->conn->fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle,
                      sizeof(int));
    (void) setsockopt(rd->conn->fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl,
                      sizeof(int));
    (void) setsockopt(rd->conn->fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt,
                      sizeof(int));
    }
#endif
}


/*
 * Pipelined: the sentinel answers both at once, so a move is either in the
 * answer or reported on the subscription.  Nothing is ever sent once it is
 * subscribed: TCP keepalive finds a sentinel whose host went away.
 */
static void
ngx_http_sa_sentinel_setup(ngx_http_sa_redis_t *rd)
{
    ngx_http_sa_sentinel_keepalive(rd);

    (void) ngx_http_sa_redis_sendf(rd, ngx_http_sa_sentinel_master_reply,
                                   NULL, "SENTINEL get-master-addr-by-name %b",
                                   rd->conf->master.data,
                                   rd->conf->master.len);

    if (ngx_http_sa_redis_sendf(rd, NULL, NULL, "SUBSCRIBE +switch-master")
        == NGX_OK)
    {
        rd->push = ngx_http_sa_sentinel_message;
    }
}


/* the next connection goes to the next sentinel */
static void
ngx_http_sa_sentinel_lost(ngx_http_sa_redis_t *rd)
{
    ngx_array_t                 *sentinels = rd->conf->sentinels;
    ngx_http_sa_redis_worker_t  *rw = rd->worker;

    rw->sentinel_index = (rw->sentinel_index + 1) % sentinels->nelts;
    rd->target = (ngx_http_sa_redis_addr_t *) sentinels->elts
                 + rw->sentinel_index;
}


/* a data connection ended: is its node still the master? */
static void
ngx_http_sa_sentinel_ask_again(ngx_http_sa_redis_t *rd)
{
    ngx_http_sa_redis_t  *sentinel = &rd->worker->sentinel;

    if (sentinel->conf == NULL || rd == sentinel) {
        return;
    }

    if (sentinel->state == NGX_HTTP_SA_REDIS_READY) {
        sentinel->renew = 1;
        ngx_http_sa_redis_close(sentinel, "asking again, as the %s "
                                "connection to the master ended", rd->role);
    }
}


/* worker start and exit */

static void
ngx_http_sa_redis_start(ngx_http_sa_redis_worker_t *rw,
    ngx_http_sa_redis_t *rd, ngx_cycle_t *cycle,
    ngx_http_sa_redis_conf_t *conf, const char *role)
{
    rd->worker = rw;
    rd->conf = conf;
    rd->target = conf->sentinels ? NULL : &conf->node;
    rd->log = cycle->log;
    rd->role = role;
    rd->setup = ngx_http_sa_redis_setup;
    rd->stall = ngx_max(NGX_HTTP_SA_STALL_MIN, 4 * conf->timeout);
    ngx_queue_init(&rd->pending);
    ngx_queue_init(&rd->sent);

    rd->reconnect.handler = ngx_http_sa_redis_reconnect_handler;
    rd->reconnect.data = rd;
    rd->reconnect.log = cycle->log;
    rd->reconnect.cancelable = 1;

    rd->watchdog.handler = ngx_http_sa_redis_watchdog_handler;
    rd->watchdog.data = rd;
    rd->watchdog.log = cycle->log;
    rd->watchdog.cancelable = 1;
}


/* <channel>:hb:<32 hex digits>, a channel only this worker listens to */
static ngx_int_t
ngx_http_sa_redis_hb_channel(ngx_http_sa_redis_worker_t *rw,
    ngx_cycle_t *cycle, ngx_str_t *channel)
{
    u_char  *p, rnd[16];

    randombytes_buf(rnd, sizeof(rnd));

    rw->hb_channel.len = channel->len + sizeof(":hb:") - 1 + 32;
    rw->hb_channel.data = ngx_pnalloc(cycle->pool, rw->hb_channel.len);
    if (rw->hb_channel.data == NULL) {
        return NGX_ERROR;
    }

    p = ngx_cpymem(rw->hb_channel.data, channel->data, channel->len);
    p = ngx_cpymem(p, ":hb:", sizeof(":hb:") - 1);
    ngx_hex_dump(p, rnd, sizeof(rnd));

    return NGX_OK;
}


ngx_http_sa_redis_worker_t *
ngx_http_sa_redis_init_process(ngx_cycle_t *cycle,
    ngx_http_sa_redis_conf_t *conf, ngx_http_sa_redis_sub_conf_t *sub)
{
    ngx_http_sa_redis_worker_t  *rw;

    /* zeroed: no subscriber, no sentinel, no master known */
    rw = ngx_pcalloc(cycle->pool, sizeof(ngx_http_sa_redis_worker_t));
    if (rw == NULL) {
        return NULL;
    }

    rw->sub.worker = rw;
    rw->sentinel.worker = rw;

    ngx_http_sa_redis_start(rw, &rw->cmd, cycle, conf, "command");
    rw->cmd.ready = ngx_http_sa_redis_command_ready;

    if (sub != NULL) {
        rw->sub_conf = *sub;

        if (ngx_http_sa_redis_hb_channel(rw, cycle, &sub->channel)
            != NGX_OK)
        {
            return NULL;
        }

        rw->sub_poll_reset.handler = ngx_http_sa_redis_poll_reset;
        rw->sub_poll_reset.data = rw;
        rw->sub_poll_reset.log = cycle->log;

        rw->hb_timer.handler = ngx_http_sa_redis_heartbeat;
        rw->hb_timer.data = rw;
        rw->hb_timer.log = cycle->log;
        rw->hb_timer.cancelable = 1;

        ngx_http_sa_redis_start(rw, &rw->sub, cycle, conf, "subscriber");
        rw->sub.ready = ngx_http_sa_redis_sub_ready;
        rw->sub.lost = ngx_http_sa_redis_sub_lost;
        ngx_http_sa_redis_connect(&rw->sub);
    }

    ngx_http_sa_redis_connect(&rw->cmd);

    if (conf->sentinels) {
        ngx_http_sa_redis_start(rw, &rw->sentinel, cycle, conf, "sentinel");

        /* workers start at different sentinels, and go round on failure */
        rw->sentinel_index = ngx_worker % conf->sentinels->nelts;
        rw->sentinel.target =
            (ngx_http_sa_redis_addr_t *) conf->sentinels->elts
            + rw->sentinel_index;
        rw->sentinel.setup = ngx_http_sa_sentinel_setup;
        rw->sentinel.lost = ngx_http_sa_sentinel_lost;

        ngx_http_sa_redis_connect(&rw->sentinel);
    }

    return rw;
}


static void
ngx_http_sa_redis_stop(ngx_http_sa_redis_t *rd)
{
    rd->exiting = 1;

    if (rd->reconnect.timer_set) {
        ngx_del_timer(&rd->reconnect);
    }

    ngx_http_sa_redis_close(rd, "worker exiting");
}


void
ngx_http_sa_redis_exit_process(ngx_http_sa_redis_worker_t *rw)
{
    if (rw->hb_timer.timer_set) {
        ngx_del_timer(&rw->hb_timer);
    }

    if (rw->sub_poll_reset.posted) {
        ngx_delete_posted_event(&rw->sub_poll_reset);
    }

    ngx_http_sa_redis_stop(&rw->sentinel);
    ngx_http_sa_redis_stop(&rw->sub);
    ngx_http_sa_redis_stop(&rw->cmd);
}
