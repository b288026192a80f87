/*
 * The worker's Redis connections.
 *
 * Each is nginx's own: ngx_event_connect_peer() connects, nginx's SSL layer
 * (ngx_ssl_create_connection, ngx_ssl_handshake, then the certificate's
 * verification and name) runs TLS when sa_redis says "ssl", and epoll
 * drives it, edge-triggered, as nginx adds connections.  hiredis keeps only
 * what it is good at: redisFormatCommand* builds commands, which are
 * appended to the connection's output and written when the transport is up
 * (and after the events at hand, so commands asked for together go in one
 * write); its redisReader parses replies.  Each read goes through
 * sa_resp_scan() (core/), which refuses an oversized or malformed reply as
 * soon as it is announced, then the reader builds the reply, and
 * sa_resp_route() hands it to the oldest command sent (our own queue,
 * rd->sent) or to the pub/sub handler, or ends the connection with a
 * protocol error.
 *
 * A connection is idle (waiting for its reconnect timer), connecting (TCP
 * connect, TLS, then AUTH, SELECT and PING, and for the subscriber
 * SUBSCRIBE, all within one deadline), or ready.  Nothing but the set-up is
 * sent before it is ready: commands asked for meanwhile wait in a queue.
 *
 * However a connection ends (refused, connect or reply deadline, TLS
 * refused, set-up error, protocol error, server close, dead subscriber,
 * worker exit), it ends in ngx_http_sa_redis_close(), at once: the socket
 * is closed, then every command's handler still owed a reply is called,
 * exactly once, with NULL.
 */

#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
#include <hiredis/hiredis.h>
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

/*
 * Replies a ready connection may owe: a Redis that answers just often
 * enough to keep its deadline (one reply a second) would otherwise have
 * every request's command queued, and its lock kept, until answered (a
 * flood of random tokens: +9 MB a worker in 20 s, for hours).  Beyond it,
 * commands are refused at once (503), logged at most once a second.
 */
#define NGX_HTTP_SA_OWED_MAX      4096

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

/* a reply (a redisReply, NULL when the connection ended first) */
typedef void (*ngx_http_sa_redis_reply_pt)(ngx_http_sa_redis_t *rd,
    void *reply, void *privdata);

struct ngx_http_sa_redis_s {
    ngx_http_sa_redis_worker_t    *worker;      /* whose connection */
    ngx_http_sa_redis_conf_t      *conf;
    ngx_http_sa_redis_addr_t      *target;      /* NULL: no master known */
    ngx_log_t                     *log;
    const char                    *role;        /* for messages */
    ngx_peer_connection_t          pc;
    ngx_resolver_ctx_t            *resolving;   /* the name, being resolved */
    ngx_sockaddr_t                 resolved;    /* what it resolved to */
    ngx_uint_t                     rr;          /* the address to use next */
    ngx_connection_t              *conn;        /* NULL: no connection */
    redisReader                   *reader;      /* this connection's */
    u_char                        *out;         /* commands to write */
    size_t                         out_len;
    size_t                         out_sent;
    size_t                         out_size;
#if (NGX_SSL)
    ngx_ssl_session_t             *ssl_session; /* for the next handshake */
    ngx_sockaddr_t                 ssl_peer;    /* to whom: offered only */
    socklen_t                      ssl_peer_len; /* there again */
#endif
    ngx_http_sa_redis_state_e      state;
    ngx_event_t                    reconnect;
    ngx_event_t                    watchdog;    /* set-up or reply deadline */
    ngx_msec_t                     backoff;
    ngx_msec_t                     stall;
    ngx_uint_t                     outstanding; /* replies owed when ready */
    time_t                         owed_logged; /* "replies owed" line */
    ngx_uint_t                     subscribed;  /* channels confirmed */
    ngx_queue_t                    pending;     /* commands before ready */
    ngx_queue_t                    sent;        /* ngx_http_sa_redis_cb_t,
                                                   oldest first */
    ngx_http_sa_redis_reply_pt     push;        /* pub/sub, once subscribed */
    sa_resp_t                      resp;        /* the reply stream guard */
    u_char                         reason[160]; /* why we end it: the log */
    void                         (*setup)(ngx_http_sa_redis_t *rd);
    void                         (*ready)(ngx_http_sa_redis_t *rd);
    void                         (*lost)(ngx_http_sa_redis_t *rd);
    unsigned                       tcp:1;       /* TCP connected */
    unsigned                       connected:1; /* and TLS up */
    unsigned                       renew:1;     /* ended on purpose, to
                                                   start again elsewhere */
    unsigned                       timed_out:1; /* ended by the watchdog */
    unsigned                       subscribed_up:1;
    unsigned                       exiting:1;
    unsigned                       protocol:1;  /* ended on a bad reply */
    unsigned                       read_wants_write:1; /* TLS: a read
                                                   goes on when writable */
    unsigned                       renegotiation:1; /* asked, refused */
};


/* a command sent, whose reply goes to fn */
typedef struct {
    ngx_queue_t                    queue;       /* in sent */
    ngx_http_sa_redis_reply_pt     fn;
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
static void ngx_http_sa_redis_connect_peer(ngx_http_sa_redis_t *rd,
    struct sockaddr *sockaddr, socklen_t socklen);
static void ngx_http_sa_redis_resolve(ngx_http_sa_redis_t *rd);
static void ngx_http_sa_redis_failed(ngx_http_sa_redis_t *rd);
static void ngx_http_sa_redis_close(ngx_http_sa_redis_t *rd,
    const char *fmt, ...);
static void ngx_http_sa_redis_schedule(ngx_http_sa_redis_t *rd);
static void ngx_http_sa_redis_reply(ngx_http_sa_redis_t *owner, void *reply,
    void *privdata);
static void ngx_http_sa_redis_tcp_connected(ngx_http_sa_redis_t *rd);
static void ngx_http_sa_redis_flush(ngx_http_sa_redis_t *rd);
static void ngx_http_sa_redis_end(ngx_http_sa_redis_t *rd);
#if (NGX_SSL)
static void ngx_http_sa_redis_ssl_failed(ngx_http_sa_redis_t *rd,
    const char *what, int sslerr, ngx_err_t err);
static void ngx_http_sa_redis_ssl_forget(ngx_http_sa_redis_t *rd);
#define ngx_http_sa_redis_clear_ssl_errors()  ERR_clear_error()
#endif
static ngx_uint_t ngx_http_sa_sentinel_is_ip(u_char *host, size_t len);
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
    ngx_sockaddr_t                 sockaddr;
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
    time_t                         refused;     /* an answer refused, logged
                                                   at most once a second */
    ngx_uint_t                     unrefused;   /* refusals not logged */
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


/* the connection's events: epoll's edge-triggered, as nginx adds them */

static void
ngx_http_sa_redis_read_handler(ngx_event_t *rev)
{
    ngx_connection_t     *c = rev->data;
    ngx_http_sa_redis_t  *rd = c->data;

    if (!rd->tcp) {
        ngx_http_sa_redis_tcp_connected(rd);
        return;
    }

    ngx_http_sa_redis_read(rd);

    /* a TLS write that wanted to read first goes on */
    if (rd->conn == c && rd->out_sent < rd->out_len) {
        ngx_http_sa_redis_flush(rd);
    }
}


static void
ngx_http_sa_redis_write_handler(ngx_event_t *wev)
{
    ngx_connection_t     *c = wev->data;
    ngx_http_sa_redis_t  *rd = c->data;

    if (!rd->tcp) {
        ngx_http_sa_redis_tcp_connected(rd);
        return;
    }

    if (!rd->connected) {
        return;
    }

    ngx_http_sa_redis_flush(rd);

    /* a TLS read that had to write first (a KeyUpdate's answer) goes on */
    if (rd->conn == c && rd->read_wants_write) {
        ngx_http_sa_redis_read(rd);
    }
}


/*
 * One write: n bytes, NGX_AGAIN (the next write event, or read event for
 * TLS, goes on), or NGX_ERROR (the connection was ended, and says why).
 */
static ssize_t
ngx_http_sa_redis_write(ngx_http_sa_redis_t *rd, u_char *buf, size_t size)
{
    ssize_t            n;
    ngx_err_t          err;
    ngx_connection_t  *c = rd->conn;

#if (NGX_SSL)
    int                sslerr;

    if (c->ssl) {
        ngx_http_sa_redis_clear_ssl_errors();

        n = SSL_write(c->ssl->connection, buf, size);

        if (n > 0) {
            return n;
        }

        sslerr = SSL_get_error(c->ssl->connection, n);

        if (sslerr == SSL_ERROR_WANT_WRITE || sslerr == SSL_ERROR_WANT_READ) {
            return NGX_AGAIN;
        }

        err = (sslerr == SSL_ERROR_SYSCALL) ? ngx_socket_errno : 0;
        ngx_http_sa_redis_ssl_failed(rd, "SSL_write()", sslerr, err);
        return NGX_ERROR;
    }
#endif

    n = send(c->fd, buf, size, 0);

    if (n >= 0) {
        return n;
    }

    err = ngx_socket_errno;

    if (err == NGX_EAGAIN || err == NGX_EINTR) {
        return NGX_AGAIN;
    }

    ngx_http_sa_redis_close(rd, "send() failed (%d: %s)", err, strerror(err));
    return NGX_ERROR;
}


/* writes what is queued; the rest goes when the socket is writable again */
static void
ngx_http_sa_redis_flush(ngx_http_sa_redis_t *rd)
{
    ssize_t  n;

    while (rd->out_sent < rd->out_len) {
        n = ngx_http_sa_redis_write(rd, rd->out + rd->out_sent,
                                    rd->out_len - rd->out_sent);

        if (n == NGX_AGAIN || n == NGX_ERROR) {
            return;
        }

        rd->out_sent += n;
    }

    rd->out_len = 0;
    rd->out_sent = 0;
}


/* appends a formatted command to what is to be written */
static ngx_int_t
ngx_http_sa_redis_append(ngx_http_sa_redis_t *rd, const char *cmd,
    size_t len)
{
    u_char  *p;
    size_t   size;

    if (rd->out_size - rd->out_len < len && rd->out_sent) {
        ngx_memmove(rd->out, rd->out + rd->out_sent,
                    rd->out_len - rd->out_sent);
        rd->out_len -= rd->out_sent;
        rd->out_sent = 0;
    }

    if (rd->out_size - rd->out_len < len) {
        size = ngx_max(ngx_max(2 * rd->out_size, rd->out_len + len), 4096);

        p = ngx_alloc(size, rd->log);
        if (p == NULL) {
            return NGX_ERROR;
        }

        if (rd->out) {
            ngx_memcpy(p, rd->out, rd->out_len);
            ngx_free(rd->out);
        }

        rd->out = p;
        rd->out_size = size;
    }

    ngx_memcpy(rd->out + rd->out_len, cmd, len);
    rd->out_len += len;

    /* written after the events at hand: commands asked for together go in
     * one write, and nothing is written before the connection is up */
    if (rd->connected && !rd->conn->write->posted) {
        ngx_post_event(rd->conn->write, &ngx_posted_events);
    }

    return NGX_OK;
}


/*
 * Queues a formatted command in the connection's output, and its reply
 * handler (fn NULL: SUBSCRIBE, answered on rd->push) in rd->sent.
 */
static ngx_int_t
ngx_http_sa_redis_send(ngx_http_sa_redis_t *rd, ngx_http_sa_redis_reply_pt fn,
    void *privdata, const char *cmd, size_t len)
{
    ngx_http_sa_redis_cb_t  *cb;

    if (rd->conn == NULL) {
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

    if (ngx_http_sa_redis_append(rd, cmd, len) != NGX_OK) {
        if (cb) {
            ngx_free(cb);
        }

        return NGX_ERROR;
    }

    if (cb) {
        ngx_queue_insert_tail(&rd->sent, &cb->queue);
    }

    return NGX_OK;
}


/* as redisAsyncCommand() did, on our own queue */
static ngx_int_t
ngx_http_sa_redis_sendf(ngx_http_sa_redis_t *rd, ngx_http_sa_redis_reply_pt fn,
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
ngx_http_sa_redis_send_argv(ngx_http_sa_redis_t *rd,
    ngx_http_sa_redis_reply_pt fn,
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
 * Reads what the socket holds (the kernel's, or TLS's decrypted bytes),
 * 16 KiB at a time, at most NGX_HTTP_SA_READS of them before the rest is
 * left to a posted event.  Plain sockets are read with recv() itself, not
 * c->recv, which trusts epoll's last report: the subscriber's poll must see
 * what arrived since.  NGX_AGAIN: nothing more now; NGX_ERROR: the
 * connection was ended.
 */
static ssize_t
ngx_http_sa_redis_recv(ngx_http_sa_redis_t *rd, u_char *buf, size_t size)
{
    ssize_t            n;
    ngx_err_t          err;
    const char        *hint;
    ngx_connection_t  *c = rd->conn;

#if (NGX_SSL)
    int                sslerr;

    if (c->ssl) {
        ngx_http_sa_redis_clear_ssl_errors();

        n = SSL_read(c->ssl->connection, buf, size);

        if (n > 0) {
            rd->read_wants_write = 0;
            return n;
        }

        sslerr = SSL_get_error(c->ssl->connection, n);
        err = (sslerr == SSL_ERROR_SYSCALL) ? ngx_socket_errno : 0;

        /*
         * A read may have to write first (the answer to a KeyUpdate, with
         * the socket full): the write event reads again, as ngx_ssl_recv()
         * has its write handler do.
         */
        rd->read_wants_write = (sslerr == SSL_ERROR_WANT_WRITE);

        if (sslerr == SSL_ERROR_WANT_READ || sslerr == SSL_ERROR_WANT_WRITE) {
            return NGX_AGAIN;
        }

        if (sslerr == SSL_ERROR_ZERO_RETURN || (sslerr == SSL_ERROR_SYSCALL
                                                && err == 0))
        {
            ngx_http_sa_redis_close(rd, "the server closed the connection");
            return NGX_ERROR;
        }

        ngx_http_sa_redis_ssl_failed(rd, "SSL_read()", sslerr, err);
        return NGX_ERROR;
    }
#endif

    n = recv(c->fd, buf, size, 0);

    /* a TLS-only port resets a plain connection, or says nothing */
    hint = rd->state == NGX_HTTP_SA_REDIS_CONNECTING
           ? " during the set-up (a TLS port? see \"ssl\")" : "";

    if (n == -1) {
        err = ngx_socket_errno;

        if (err == NGX_EAGAIN || err == NGX_EINTR) {
            return NGX_AGAIN;
        }

        ngx_http_sa_redis_close(rd, "recv() failed (%d: %s)%s", err,
                                strerror(err), hint);
        return NGX_ERROR;
    }

    if (n == 0) {
        ngx_http_sa_redis_close(rd, "the server closed the connection%s",
                                hint);
        return NGX_ERROR;
    }

    return n;
}


#define NGX_HTTP_SA_READS  64

/*
 * Each read is scanned by the guard, fed to hiredis's reader, and every
 * reply it completes handed to its handler.  A handler may end the
 * connection: it is gone when rd->conn is no longer c.
 */
static void
ngx_http_sa_redis_read(ngx_http_sa_redis_t *rd)
{
    u_char                   buf[16384], *p;
    void                    *reply;
    size_t                   used;
    ssize_t                  n;
    ngx_uint_t               reads;
    ngx_queue_t             *q;
    sa_resp_rc_e             rc;
    sa_resp_route_e          route;
    ngx_connection_t        *c = rd->conn;
    ngx_http_sa_redis_cb_t  *cb;

    for (reads = 0; /* void */; reads++) {

        if (reads == NGX_HTTP_SA_READS) {
            /* the rest after the other events: edge-triggered, so posted */
            if (!c->read->posted) {
                ngx_post_event(c->read, &ngx_posted_events);
            }
            return;
        }

        n = ngx_http_sa_redis_recv(rd, buf, sizeof(buf));

        if (n == NGX_AGAIN || n == NGX_ERROR) {
            return;
        }

        ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                       "sa: Redis %s connection: %z bytes read", rd->role, n);

        p = buf;

        while (n > 0) {
            rc = sa_resp_scan(&rd->resp, p, n, &used);

            if (used
                && redisReaderFeed(rd->reader, (const char *) p, used)
                   != REDIS_OK)
            {
                rd->protocol = 1;
                ngx_http_sa_redis_close(rd, "protocol error: %s",
                                        rd->reader->errstr);
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
                break;
            }

            route = sa_resp_route(&rd->resp.reply,
                                  !ngx_queue_empty(&rd->sent),
                                  rd->push != NULL);

            if (route == SA_RESP_UNEXPECTED) {
                rd->protocol = 1;
                ngx_http_sa_redis_close(rd, "protocol error: %s",
                                        rd->push ? "not a pub/sub message"
                                                 : "a reply nobody asked for");
                return;
            }

            reply = NULL;

            if (redisReaderGetReply(rd->reader, &reply) != REDIS_OK
                || reply == NULL)
            {
                /* the guard and hiredis disagree: never expected */
                rd->protocol = 1;
                ngx_http_sa_redis_close(rd, "protocol error: the reply "
                                        "reader failed");
                return;
            }

            if (route == SA_RESP_AWAITED) {
                q = ngx_queue_head(&rd->sent);
                ngx_queue_remove(q);
                cb = ngx_queue_data(q, ngx_http_sa_redis_cb_t, queue);

                cb->fn(rd, reply, cb->privdata);
                ngx_free(cb);

            } else {
                rd->push(rd, reply, NULL);
            }

            freeReplyObject(reply);

            if (rd->conn != c) {
                return;          /* ended by the handler */
            }
        }
    }
}


/* the end of a connection: every way there goes through here */

static void
ngx_http_sa_redis_release(ngx_http_sa_redis_t *rd)
{
    ngx_pool_t        *pool;
    ngx_connection_t  *c = rd->conn;

#if (NGX_SSL)
    if (c->ssl) {
        /* no close_notify either way: the connection is given up */
        c->ssl->no_wait_shutdown = 1;
        c->ssl->no_send_shutdown = 1;
        (void) ngx_ssl_shutdown(c);
    }
#endif

    pool = c->pool;

    ngx_close_connection(c);

    if (pool) {
        ngx_destroy_pool(pool);
    }

    rd->conn = NULL;
    rd->out_len = 0;
    rd->out_sent = 0;

    if (rd->reader) {
        redisReaderFree(rd->reader);
        rd->reader = NULL;
    }
}


/* the replies owed by a connection that ended: each handler gets NULL */
static void
ngx_http_sa_redis_fail_sent(ngx_http_sa_redis_t *rd)
{
    ngx_queue_t             *q;
    ngx_http_sa_redis_cb_t  *cb;

    while (!ngx_queue_empty(&rd->sent)) {
        q = ngx_queue_head(&rd->sent);
        ngx_queue_remove(q);

        cb = ngx_queue_data(q, ngx_http_sa_redis_cb_t, queue);
        cb->fn(rd, NULL, cb->privdata);
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
 * A connection ends here, at once: the socket is closed, then the replies
 * still owed are answered with NULL once the connection is marked idle (a
 * handler asking for a command then hears that Redis is unavailable).  The
 * reconnect comes from a timer, never from here.
 */
static void
ngx_http_sa_redis_end(ngx_http_sa_redis_t *rd)
{
    const char  *why;

    why = rd->reason[0] ? (const char *) rd->reason : "closed";

    if (rd->renew) {
        ngx_log_error(NGX_LOG_INFO, rd->log, 0,
                      "sa: Redis %s connection to %V closed: %s", rd->role,
                      &rd->target->address, why);

    } else if (!rd->exiting) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "sa: Redis %s connection to %V %s: %s", rd->role,
                      &rd->target->address,
                      rd->connected ? "lost" : "failed", why);

        /* refused: connect refused, TLS refused, a set-up error, a close */
        ngx_http_sa_metrics_count(rd->protocol
                                  ? NGX_HTTP_SA_M_REDIS_PROTOCOL
                                  : rd->timed_out
                                  ? NGX_HTTP_SA_M_REDIS_TIMEOUT
                                  : NGX_HTTP_SA_M_REDIS_REFUSED);
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                   "sa: Redis %s connection ended, %ui replies owed",
                   rd->role, rd->outstanding);

    ngx_http_sa_redis_release(rd);

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

    rd->state = NGX_HTTP_SA_REDIS_IDLE;
    rd->outstanding = 0;
    rd->subscribed = 0;
    rd->tcp = 0;
    rd->connected = 0;
    rd->timed_out = 0;
    rd->protocol = 0;
    rd->read_wants_write = 0;
    rd->renegotiation = 0;
    rd->push = NULL;
    rd->reason[0] = '\0';

    ngx_http_sa_redis_fail_sent(rd);
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


/* ends a connection, at once, and says why in the log */
static void
ngx_http_sa_redis_close(ngx_http_sa_redis_t *rd, const char *fmt, ...)
{
    u_char   *p;
    va_list   args;

    if (rd->conn == NULL) {
        return;
    }

    va_start(args, fmt);
    p = ngx_vslprintf(rd->reason, rd->reason + sizeof(rd->reason) - 1, fmt,
                      args);
    va_end(args);
    *p = '\0';

    ngx_http_sa_redis_end(rd);
}


static void
ngx_http_sa_redis_watchdog_handler(ngx_event_t *ev)
{
    ngx_http_sa_redis_t  *rd = ev->data;

    rd->timed_out = 1;

#if (NGX_SSL)
    if (rd->tcp && !rd->connected && rd->conn->ssl) {
        /*
         * A stopped or blackholed server, and a plain port (which waits for
         * a line that TLS never sends), leave the ClientHello unanswered.
         */
        if (SSL_get_state(rd->conn->ssl->connection) == TLS_ST_CW_CLNT_HELLO)
        {
            ngx_http_sa_redis_close(rd, "TLS handshake not done within %M "
                                    "ms: no answer to the ClientHello (a "
                                    "stopped server, or a plain port?)",
                                    rd->stall);
            return;
        }

        ngx_http_sa_redis_close(rd, "TLS handshake not done within %M ms: "
                                "the server stopped in the middle of it",
                                rd->stall);
        return;
    }
#endif

    if (rd->state == NGX_HTTP_SA_REDIS_CONNECTING) {
        ngx_http_sa_redis_close(rd, "not set up within %M ms", rd->stall);
        return;
    }

    ngx_http_sa_redis_close(rd, "no reply for %M ms", rd->stall);
}


/* connection life cycle */

/*
 * The transport is up (TCP, and TLS if configured): what was queued (the
 * set-up, commands) is written, and whatever already arrived is read.
 */
static void
ngx_http_sa_redis_transport_up(ngx_http_sa_redis_t *rd)
{
    ngx_connection_t  *c = rd->conn;

    rd->connected = 1;

    c->read->handler = ngx_http_sa_redis_read_handler;
    c->write->handler = ngx_http_sa_redis_write_handler;

    ngx_http_sa_redis_flush(rd);

    if (rd->conn == c) {
        ngx_http_sa_redis_read(rd);
    }
}


#if (NGX_SSL)

/* OpenSSL's reason (or the system's) in the line that ends the connection */
static void
ngx_http_sa_redis_ssl_failed(ngx_http_sa_redis_t *rd, const char *what,
    int sslerr, ngx_err_t err)
{
    unsigned long  e;
    const char    *reason;

    e = ERR_peek_last_error();
    reason = e ? ERR_reason_error_string(e) : NULL;

    if (rd->renegotiation) {
        /* the server gave up when its HelloRequest was refused */
        ngx_http_sa_redis_close(rd, "the server asked for a TLS "
                                "renegotiation, refused (%s: %s)", what,
                                reason ? reason : "closed");

    } else if (reason) {
        ngx_http_sa_redis_close(rd, "%s failed: %s", what, reason);

    } else if (err) {
        ngx_http_sa_redis_close(rd, "%s failed (%d: %s)", what, err,
                                strerror(err));

    } else {
        ngx_http_sa_redis_close(rd, "%s failed (SSL error %d)", what, sslerr);
    }

    ERR_clear_error();
}


/* the name the certificate must carry: sa_redis_ssl_name, or as written */
static ngx_str_t *
ngx_http_sa_redis_ssl_name(ngx_http_sa_redis_t *rd)
{
    if (rd != &rd->worker->sentinel && rd->conf->ssl->name.len) {
        return &rd->conf->ssl->name;
    }

    return &rd->target->ssl_name;
}


/* an IP address is matched against the certificate's IP addresses */
static ngx_int_t
ngx_http_sa_redis_ssl_check_name(ngx_connection_t *c, ngx_str_t *name)
{
    int    rc;
    X509  *cert;

    if (!ngx_http_sa_sentinel_is_ip(name->data, name->len)) {
        return ngx_ssl_check_host(c, name);
    }

    cert = SSL_get_peer_certificate(c->ssl->connection);
    if (cert == NULL) {
        return NGX_ERROR;
    }

    rc = X509_check_ip_asc(cert, (const char *) name->data, 0);
    X509_free(cert);

    return rc == 1 ? NGX_OK : NGX_ERROR;
}


static void
ngx_http_sa_redis_ssl_handshaked(ngx_connection_t *c)
{
    long                  rc;
    ngx_str_t            *name;
    ngx_http_sa_redis_t  *rd = c->data;

    if (!c->ssl->handshaked) {
        /* ngx_ssl_handshake() logged OpenSSL's reason just before */
        ngx_http_sa_redis_ssl_forget(rd);
        ngx_http_sa_redis_close(rd, "TLS handshake failed");
        return;
    }

    if (rd->conf->ssl->verify) {
        rc = SSL_get_verify_result(c->ssl->connection);

        if (rc != X509_V_OK) {
            ngx_http_sa_redis_ssl_forget(rd);
            ngx_http_sa_redis_close(rd, "TLS certificate verify error: "
                                    "(%l:%s)%s", rc,
                                    X509_verify_cert_error_string(rc),
                                    SSL_session_reused(c->ssl->connection)
                                    ? " (a resumed session)" : "");
            return;
        }

        name = ngx_http_sa_redis_ssl_name(rd);

        if (ngx_http_sa_redis_ssl_check_name(c, name) != NGX_OK) {
            /* a resumed session's certificate too: the next is a full
             * handshake, with the certificate the server has now */
            ngx_http_sa_redis_ssl_forget(rd);
            ngx_http_sa_redis_close(rd, "TLS certificate does not match "
                                    "\"%V\"%s", name,
                                    SSL_session_reused(c->ssl->connection)
                                    ? " (a resumed session)" : "");
            return;
        }
    }

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                   "sa: Redis %s connection: TLS up%s", rd->role,
                   SSL_session_reused(c->ssl->connection) ? ", resumed" : "");

    ngx_http_sa_redis_transport_up(rd);
}


/* TLS 1.3 sends sessions after the handshake: kept for the next connect */
static void
ngx_http_sa_redis_ssl_save_session(ngx_connection_t *c)
{
    ngx_ssl_session_t    *session;
    ngx_http_sa_redis_t  *rd = c->data;

    session = ngx_ssl_get_session(c);
    if (session == NULL) {
        return;
    }

    if (rd->ssl_session) {
        ngx_ssl_free_session(rd->ssl_session);
    }

    rd->ssl_session = session;

    ngx_memcpy(&rd->ssl_peer, rd->pc.sockaddr, rd->pc.socklen);
    rd->ssl_peer_len = rd->pc.socklen;
}


/* a session is never offered again after a handshake it failed */
static void
ngx_http_sa_redis_ssl_forget(ngx_http_sa_redis_t *rd)
{
    if (rd->ssl_session) {
        ngx_ssl_free_session(rd->ssl_session);
        rd->ssl_session = NULL;
    }
}


/*
 * A renegotiation is refused (SSL_OP_NO_RENEGOTIATION): what the server
 * then presents would never be verified.  A server that gives up on it
 * ends the connection, and the line says why.
 */
static void
ngx_http_sa_redis_ssl_msg(int write_p, int version, int content_type,
    const void *buf, size_t len, ngx_ssl_conn_t *ssl_conn, void *arg)
{
    ngx_connection_t     *c;
    ngx_http_sa_redis_t  *rd;

    if (write_p || content_type != SSL3_RT_HANDSHAKE || len < 1
        || ((const u_char *) buf)[0] != SSL3_MT_HELLO_REQUEST)
    {
        return;
    }

    c = ngx_ssl_get_connection(ssl_conn);
    rd = c->data;
    rd->renegotiation = 1;
}


static void
ngx_http_sa_redis_ssl_start(ngx_http_sa_redis_t *rd)
{
    ngx_int_t          rc;
    ngx_str_t         *name;
    ngx_connection_t  *c = rd->conn;

    if (ngx_ssl_create_connection(rd->conf->ssl->ssl, c, NGX_SSL_CLIENT)
        != NGX_OK)
    {
        ngx_http_sa_redis_close(rd, "TLS could not start");
        return;
    }

    name = ngx_http_sa_redis_ssl_name(rd);

#ifdef SSL_CTRL_SET_TLSEXT_HOSTNAME
    /* RFC 6066: no IP address in SNI; names are NUL-terminated */
    if (name->len && !ngx_http_sa_sentinel_is_ip(name->data, name->len)) {
        (void) SSL_set_tlsext_host_name(c->ssl->connection,
                                        (char *) name->data);
    }
#endif

    /* the output may grow and move between a write and its retry */
    SSL_set_mode(c->ssl->connection, SSL_MODE_ENABLE_PARTIAL_WRITE
                                     |SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

    c->ssl->save_session = ngx_http_sa_redis_ssl_save_session;

#ifdef SSL_OP_NO_RENEGOTIATION
    SSL_set_options(c->ssl->connection, SSL_OP_NO_RENEGOTIATION);
#endif
    SSL_set_msg_callback(c->ssl->connection, ngx_http_sa_redis_ssl_msg);

    /*
     * A session is offered only to the address it came from: a name that
     * moved, or a master the sentinels moved, gets a full handshake.
     */
    if (rd->ssl_session
        && ngx_cmp_sockaddr(rd->pc.sockaddr, rd->pc.socklen,
                            (struct sockaddr *) &rd->ssl_peer,
                            rd->ssl_peer_len, 1)
           != NGX_OK)
    {
        ngx_http_sa_redis_ssl_forget(rd);
    }

    if (rd->ssl_session
        && ngx_ssl_set_session(c, rd->ssl_session) != NGX_OK)
    {
        ngx_http_sa_redis_close(rd, "TLS session could not be set");
        return;
    }

    rc = ngx_ssl_handshake(c);

    if (rc == NGX_AGAIN) {
        c->ssl->handler = ngx_http_sa_redis_ssl_handshaked;
        return;
    }

    ngx_http_sa_redis_ssl_handshaked(c);
}

#endif


/* the TCP connect finished, one way or the other */
static void
ngx_http_sa_redis_tcp_connected(ngx_http_sa_redis_t *rd)
{
    int        err;
    socklen_t  len;

    err = 0;
    len = sizeof(int);

    if (getsockopt(rd->conn->fd, SOL_SOCKET, SO_ERROR, (void *) &err, &len)
        == -1)
    {
        err = ngx_socket_errno;
    }

    if (err) {
        ngx_http_sa_redis_close(rd, "connect() failed (%d: %s)", err,
                                strerror(err));
        return;
    }

    rd->tcp = 1;

    ngx_log_debug1(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                   "sa: Redis %s connection: TCP connected", rd->role);

#if (NGX_SSL)
    if (rd->conf->ssl && rd->conf->ssl->ssl) {
        ngx_http_sa_redis_ssl_start(rd);
        return;
    }
#endif

    ngx_http_sa_redis_transport_up(rd);
}


static void
ngx_http_sa_redis_send_pending(ngx_http_sa_redis_t *rd)
{
    ngx_queue_t               *q;
    ngx_http_sa_redis_wait_t  *w;

    while (!ngx_queue_empty(&rd->pending) && rd->conn) {
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
ngx_http_sa_redis_setup_reply(ngx_http_sa_redis_t *rd, void *r,
    void *privdata)
{
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

    /* queued before the connect completes: they are written first */

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


/*
 * A connection that failed before it began (no end() call): the next
 * sentinel is tried, or the sentinels are asked again, as when a
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


/*
 * A host name, with http's "resolver": resolved at every connect (the
 * resolver's cache honours the answer's TTL, or valid=), within the set-up
 * deadline; the addresses it gives are used in turn.  A name that does not
 * resolve is a failed connection: logged, counted, retried with backoff.
 */
static void
ngx_http_sa_redis_resolved(ngx_resolver_ctx_t *ctx)
{
    ngx_uint_t                 i;
    ngx_http_sa_redis_t       *rd = ctx->data;
    ngx_http_sa_redis_addr_t  *to = rd->target;

    rd->resolving = NULL;

    if (ctx->state || ctx->naddrs == 0) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "sa: Redis %s connection to %V failed: \"%V\" could "
                      "not be resolved (%i: %s)", rd->role, &to->address,
                      &ctx->name, ctx->state,
                      ngx_resolver_strerror(ctx->state));
        ngx_resolve_name_done(ctx);
        ngx_http_sa_metrics_count(NGX_HTTP_SA_M_REDIS_REFUSED);
        ngx_http_sa_redis_failed(rd);
        return;
    }

    i = rd->rr++ % ctx->naddrs;

    ngx_memcpy(&rd->resolved, ctx->addrs[i].sockaddr, ctx->addrs[i].socklen);
    ngx_inet_set_port(&rd->resolved.sockaddr, (in_port_t) to->port);

    ngx_log_debug3(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                   "sa: Redis %s connection: \"%V\" is %V", rd->role,
                   &ctx->name, &ctx->addrs[i].name);

    ngx_http_sa_redis_connect_peer(rd, &rd->resolved.sockaddr,
                                   ctx->addrs[i].socklen);

    ngx_resolve_name_done(ctx);
}


static void
ngx_http_sa_redis_resolve(ngx_http_sa_redis_t *rd)
{
    ngx_resolver_ctx_t        *ctx;
    ngx_http_sa_redis_addr_t  *to = rd->target;

    ctx = ngx_resolve_start(rd->conf->resolver, NULL);

    if (ctx == NULL || ctx == NGX_NO_RESOLVER) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "sa: Redis %s connection to %V failed: cannot start "
                      "resolving \"%V\"", rd->role, &to->address,
                      &to->ssl_name);
        ngx_http_sa_redis_failed(rd);
        return;
    }

    ctx->name = to->ssl_name;
    ctx->handler = ngx_http_sa_redis_resolved;
    ctx->data = rd;
    ctx->timeout = rd->stall;

    /* the handler may run at once, from the resolver's cache */
    rd->resolving = ctx;

    if (ngx_resolve_name(ctx) != NGX_OK) {
        rd->resolving = NULL;
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "sa: Redis %s connection to %V failed: cannot resolve "
                      "\"%V\"", rd->role, &to->address, &to->ssl_name);
        ngx_http_sa_redis_failed(rd);
    }
}


static void
ngx_http_sa_redis_connect(ngx_http_sa_redis_t *rd)
{
    ngx_http_sa_redis_addr_t  *to = rd->target;

    /* the sentinel connection starts this one when it learns the master */
    if (to == NULL) {
        ngx_log_debug1(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                       "sa: Redis %s connection: waiting for the sentinels",
                       rd->role);
        return;
    }

    if (to->by_name && rd->conf->resolver) {
        ngx_http_sa_redis_resolve(rd);
        return;
    }

    ngx_http_sa_redis_connect_peer(rd, to->sockaddr, to->socklen);
}


static void
ngx_http_sa_redis_connect_peer(ngx_http_sa_redis_t *rd,
    struct sockaddr *sockaddr, socklen_t socklen)
{
    ngx_int_t                  rc;
    ngx_connection_t          *c;
    ngx_peer_connection_t     *pc = &rd->pc;
    ngx_http_sa_redis_addr_t  *to = rd->target;

    ngx_log_debug2(NGX_LOG_DEBUG_EVENT, rd->log, 0,
                   "sa: Redis %s connection: connecting to %V", rd->role,
                   &to->address);

    ngx_memzero(pc, sizeof(ngx_peer_connection_t));
    pc->sockaddr = sockaddr;
    pc->socklen = socklen;
    pc->name = &to->address;
    pc->get = ngx_event_get_peer;
    pc->log = rd->log;
    pc->log_error = NGX_ERROR_ERR;

    rc = ngx_event_connect_peer(pc);

    /* refused at once: nginx logged why, and closed the socket */
    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                      "sa: Redis %s connection to %V failed: connect() "
                      "failed", rd->role, &to->address);
        ngx_http_sa_redis_failed(rd);
        return;
    }

    c = pc->connection;

    c->pool = ngx_create_pool(128, rd->log);
    if (c->pool == NULL) {
        ngx_close_connection(c);
        ngx_http_sa_redis_failed(rd);
        return;
    }

    rd->reader = redisReaderCreate();
    if (rd->reader == NULL) {
        ngx_destroy_pool(c->pool);
        ngx_close_connection(c);
        ngx_http_sa_redis_failed(rd);
        return;
    }

    c->data = rd;
    c->log = rd->log;
    c->pool->log = rd->log;
    c->read->log = rd->log;
    c->write->log = rd->log;
    c->read->handler = ngx_http_sa_redis_read_handler;
    c->write->handler = ngx_http_sa_redis_write_handler;

    rd->conn = c;
    rd->state = NGX_HTTP_SA_REDIS_CONNECTING;
    rd->reason[0] = '\0';
    rd->protocol = 0;
    rd->push = NULL;
    rd->out_len = 0;
    rd->out_sent = 0;
    sa_resp_init(&rd->resp);

    /* a change of an account names all its tokens: more than a record */
    if (rd == &rd->worker->sub) {
        sa_resp_limits(&rd->resp, SA_RESP_MESSAGE_MAX,
                       SA_RESP_MESSAGE_MAX + 4096);
    }

    ngx_add_timer(&rd->watchdog, rd->stall);

    /* queued, and written once the transport is up */
    rd->setup(rd);

    if (rc == NGX_OK && rd->conn == c) {
        /* connected at once (a unix socket) */
        ngx_post_event(c->write, &ngx_posted_events);
    }
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

    if (rd->conn == NULL && rd->resolving == NULL && !rd->exiting) {
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
ngx_http_sa_redis_reply(ngx_http_sa_redis_t *owner, void *reply,
    void *privdata)
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


ngx_uint_t
ngx_http_sa_redis_command_up(ngx_http_sa_redis_worker_t *rw)
{
    return rw->cmd.state == NGX_HTTP_SA_REDIS_READY;
}


ngx_int_t
ngx_http_sa_redis_command(ngx_http_sa_redis_worker_t *rw, int argc,
    const char **argv, const size_t *argvlen,
    ngx_http_sa_redis_handler_pt handler, void *data)
{
    ngx_http_sa_redis_t       *rd = &rw->cmd;
    ngx_http_sa_redis_wait_t  *w;

    if (rd->state == NGX_HTTP_SA_REDIS_IDLE || rd->conn == NULL
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

    if (rd->outstanding >= NGX_HTTP_SA_OWED_MAX) {
        if (rd->owed_logged != ngx_time()) {
            rd->owed_logged = ngx_time();
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "sa: Redis %s connection to %V owes %ui replies: "
                          "no command sent until it answers", rd->role,
                          &rd->target->address, rd->outstanding);
        }

        ngx_free(w);
        return NGX_DECLINED;
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
ngx_http_sa_redis_sub_reply(ngx_http_sa_redis_t *rd, void *r, void *privdata)
{
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
    ngx_http_sa_redis_worker_t  *rw = rd->worker;

    rw->sub_polled = 1;
    ngx_post_event(&rw->sub_poll_reset, &ngx_posted_events);

    /* reads until the socket (and TLS) holds nothing more */
    ngx_http_sa_redis_read(rd);
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

    if (rd->conn) {
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


/*
 * A sentinel's answer refused (no usable address, a malformed message):
 * logged at most once a second, a hostile sentinel may send thousands.
 * 1 when this one may be logged; *unlogged is how many were not since.
 */
static ngx_uint_t
ngx_http_sa_sentinel_log_refusal(ngx_http_sa_redis_worker_t *rw,
    ngx_uint_t *unlogged)
{
    if (rw->master.refused == ngx_time()) {
        rw->master.unrefused++;
        return 0;
    }

    rw->master.refused = ngx_time();
    *unlogged = rw->master.unrefused;
    rw->master.unrefused = 0;

    return 1;
}


/* NGX_DECLINED: the sentinel named no usable address (logged) */
static ngx_int_t
ngx_http_sa_sentinel_master_at(ngx_http_sa_redis_t *rd, u_char *host,
    size_t hlen, u_char *port, size_t plen)
{
    u_char                      *p, said_host[NGX_HTTP_SA_SAID_MAX];
    u_char                       said_port[NGX_HTTP_SA_SAID_MAX];
    ngx_int_t                    n;
    ngx_uint_t                   unlogged;
    ngx_str_t                    h, pt;
    ngx_msec_t                   delay;
    ngx_http_sa_redis_worker_t  *rw = rd->worker;

    n = ngx_atoi(port, plen);

    if (n < 1 || n > 65535 || hlen > NGX_INET6_ADDRSTRLEN
        || !ngx_http_sa_sentinel_is_ip(host, hlen))
    {
        if (ngx_http_sa_sentinel_log_refusal(rw, &unlogged)) {
            h = ngx_http_sa_redis_said(said_host, host, hlen);
            pt = ngx_http_sa_redis_said(said_port, port, plen);
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "sa: sentinel %V names \"%V\" port \"%V\" for "
                          "master \"%V\": not an IP address and a port "
                          "(%ui answers refused since, not logged)",
                          &rd->target->address, &h, &pt, &rd->conf->master,
                          unlogged);
        }
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

    /* an IP address: checked by ngx_http_sa_sentinel_is_ip() above */
    ngx_memzero(&rw->master.sockaddr, sizeof(ngx_sockaddr_t));

#if (NGX_HAVE_INET6)
    if (ngx_inet6_addr(host, hlen,
                       rw->master.sockaddr.sockaddr_in6.sin6_addr.s6_addr)
        == NGX_OK)
    {
        rw->master.sockaddr.sockaddr_in6.sin6_family = AF_INET6;
        rw->master.addr.socklen = sizeof(struct sockaddr_in6);

    } else
#endif
    {
        rw->master.sockaddr.sockaddr_in.sin_family = AF_INET;
        rw->master.sockaddr.sockaddr_in.sin_addr.s_addr =
                                                     ngx_inet_addr(host, hlen);
        rw->master.addr.socklen = sizeof(struct sockaddr_in);
    }

    ngx_inet_set_port(&rw->master.sockaddr.sockaddr, (in_port_t) n);
    rw->master.addr.sockaddr = &rw->master.sockaddr.sockaddr;

    /* without sa_redis_ssl_name, the master's certificate names its IP */
    rw->master.addr.ssl_name = rw->master.addr.host;

    ngx_http_sa_sentinel_log_move(rd, delay);

    rw->cmd.target = &rw->master.addr;

    if (rw->sub.conf) {
        rw->sub.target = &rw->master.addr;
    }

    return NGX_OK;
}


/* SENTINEL get-master-addr-by-name: [ip, port], or nil for an unknown name */
static void
ngx_http_sa_sentinel_master_reply(ngx_http_sa_redis_t *rd, void *r,
    void *privdata)
{
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
    ngx_uint_t   n, unlogged;

    end = p + len;

    for (n = 0; n < 5 && p < end; n++) {
        field[n] = p;
        p = ngx_strlchr(p, end, ' ');
        p = p ? p : end;
        flen[n] = p - field[n];
        p++;
    }

    if (n != 5 || p < end) {
        if (ngx_http_sa_sentinel_log_refusal(rd->worker, &unlogged)) {
            ngx_log_error(NGX_LOG_ERR, rd->log, 0,
                          "sa: sentinel %V sent a malformed +switch-master "
                          "(%ui answers refused since, not logged)",
                          &rd->target->address, unlogged);
        }
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
ngx_http_sa_sentinel_message(ngx_http_sa_redis_t *rd, void *r,
    void *privdata)
{
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

    /* confirmed once: a sentinel may send it again and again */
    if (ngx_strcmp(kind->str, "subscribe") == 0) {
        if (rd->state != NGX_HTTP_SA_REDIS_READY) {
            ngx_http_sa_redis_set_ready(rd);
        }
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
    ngx_http_sa_redis_conf_t  *conf = rd->conf;

    ngx_http_sa_sentinel_keepalive(rd);

    /* sentinel_password= (and sentinel_user=): sentinels with requirepass */
    if (conf->sentinel_password.len && conf->sentinel_user.len) {
        (void) ngx_http_sa_redis_sendf(rd, ngx_http_sa_redis_setup_reply,
                                       "AUTH", "AUTH %b %b",
                                       conf->sentinel_user.data,
                                       conf->sentinel_user.len,
                                       conf->sentinel_password.data,
                                       conf->sentinel_password.len);

    } else if (conf->sentinel_password.len) {
        (void) ngx_http_sa_redis_sendf(rd, ngx_http_sa_redis_setup_reply,
                                       "AUTH", "AUTH %b",
                                       conf->sentinel_password.data,
                                       conf->sentinel_password.len);
    }

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

    if (rd->resolving) {
        ngx_resolve_name_done(rd->resolving);
        rd->resolving = NULL;
    }

    /* what is queued goes if the socket takes it now (the sync's last) */
    if (rd->conn && rd->connected && rd->state == NGX_HTTP_SA_REDIS_READY) {
        ngx_http_sa_redis_flush(rd);
    }

    ngx_http_sa_redis_close(rd, "worker exiting");

    if (rd->out) {
        ngx_free(rd->out);
        rd->out = NULL;
        rd->out_size = 0;
    }

#if (NGX_SSL)
    if (rd->ssl_session) {
        ngx_ssl_free_session(rd->ssl_session);
        rd->ssl_session = NULL;
    }
#endif
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


/* the host names of sa_redis and sa_redis_sentinel, at postconfiguration */
static ngx_int_t
ngx_http_sa_redis_name(ngx_conf_t *cf, ngx_http_sa_redis_conf_t *conf,
    ngx_http_sa_redis_addr_t *addr)
{
    ngx_url_t  u;

    if (!addr->by_name || conf->resolver) {
        return NGX_OK;
    }

    ngx_memzero(&u, sizeof(ngx_url_t));
    u.url = addr->address;
    u.default_port = (in_port_t) addr->port;

    if (ngx_parse_url(cf->pool, &u) != NGX_OK || u.naddrs == 0) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "sa: Redis \"%V\": %s", &addr->address,
                      u.err ? u.err : "has no address");
        return NGX_ERROR;
    }

    addr->sockaddr = u.addrs[0].sockaddr;
    addr->socklen = u.addrs[0].socklen;

    ngx_log_error(NGX_LOG_WARN, cf->log, 0,
                  "sa: Redis \"%V\" is resolved once, now: without "
                  "\"resolver\" in http, a name that moves is not followed",
                  &addr->address);

    return NGX_OK;
}


ngx_int_t
ngx_http_sa_redis_names(ngx_conf_t *cf, ngx_http_sa_redis_conf_t *conf)
{
    ngx_uint_t                 i;
    ngx_http_sa_redis_addr_t  *addr;
    ngx_http_core_loc_conf_t  *clcf;

    clcf = ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module);

    /* without "resolver", http has a resolver with no server */
    if (clcf->resolver && clcf->resolver->connections.nelts) {
        conf->resolver = clcf->resolver;
    }

    if (conf->sentinels == NULL) {
        return ngx_http_sa_redis_name(cf, conf, &conf->node);
    }

    addr = conf->sentinels->elts;

    for (i = 0; i < conf->sentinels->nelts; i++) {
        if (ngx_http_sa_redis_name(cf, conf, &addr[i]) != NGX_OK) {
            return NGX_ERROR;
        }
    }

    return NGX_OK;
}
