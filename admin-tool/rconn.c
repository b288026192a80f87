/*
 * sa-admin's Redis transport (see rconn.h): non-blocking sockets waited on
 * with poll(), so that every step has a deadline; TLS with OpenSSL, on the
 * same path as plain TCP (only sa_rconn_io_read/_write differ).
 */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "rconn.h"
#include "util.h"
#include "sa_admin.h"
#include "xalloc.h"



static void
sa_rconn_fail(sa_rconn_t *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
sa_rconn_fail(sa_rconn_t *c, const char *fmt, ...)
{
    va_list  args;

    if (c->err) {
        return;                  /* the first reason is kept */
    }

    va_start(args, fmt);
    vsnprintf(c->errstr, sizeof(c->errstr), fmt, args);
    va_end(args);

    c->err = REDIS_ERR_IO;
}


/* waits for events on the socket until deadline: 1 ready, 0 timed out */
static int
sa_rconn_wait(sa_rconn_t *c, short events, long long deadline)
{
    struct pollfd  pfd;
    long long      left;
    int            n;

    for ( ;; ) {
        left = deadline - sa_mono_ms();
        if (left <= 0) {
            return 0;
        }

        pfd.fd = c->fd;
        pfd.events = events;
        pfd.revents = 0;

        n = poll(&pfd, 1, (int) left);

        if (n > 0) {
            return 1;
        }

        if (n == 0) {
            return 0;
        }

        if (errno != EINTR) {
            return 1;            /* the next read or write says why */
        }
    }
}


/* OpenSSL's reason for the last failure, or the system's */
static void
sa_rconn_tls_fail(sa_rconn_t *c, const char *what, int sslerr)
{
    unsigned long  e = ERR_peek_last_error();
    const char    *reason = e ? ERR_reason_error_string(e) : NULL;

    if (c->renegotiation) {
        /* the server gave up when its HelloRequest was refused */
        sa_rconn_fail(c, "the server asked for a TLS renegotiation, refused "
                      "(TLS %s failed: %s)", what, reason ? reason : "closed");

    } else if (reason) {
        sa_rconn_fail(c, "TLS %s failed: %s", what, reason);

    } else if (sslerr == SSL_ERROR_SYSCALL && errno) {
        sa_rconn_fail(c, "TLS %s failed: %s", what, strerror(errno));

    } else if (sslerr == SSL_ERROR_ZERO_RETURN
               || sslerr == SSL_ERROR_SYSCALL)
    {
        sa_rconn_fail(c, "the server closed the connection");

    } else {
        sa_rconn_fail(c, "TLS %s failed (SSL error %d)", what, sslerr);
    }

    ERR_clear_error();
}


/* reads what is left on the socket through TLS, for the reason it gives */
static void
sa_rconn_tls_alert(sa_rconn_t *c)
{
    char           buf[256];
    int            n, sslerr;
    unsigned long  e;
    const char    *reason;

    ERR_clear_error();
    n = SSL_read(c->ssl, buf, sizeof(buf));
    sslerr = n > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, n);
    e = ERR_peek_last_error();
    reason = e ? ERR_reason_error_string(e) : NULL;

    if (sslerr == SSL_ERROR_SSL && reason) {
        sa_rconn_fail(c, "TLS read failed: %s", reason);
    }

    ERR_clear_error();
}


/*
 * One read or write: > 0 bytes, 0 to wait for *events, -1 failed (err
 * set).  A read of 0 bytes (the server closed) is a failure.
 */
static ssize_t
sa_rconn_io(sa_rconn_t *c, int writing, void *buf, size_t len,
    short *events)
{
    ssize_t  n;
    int      sslerr;

    sigset_t         pipe, old;
    struct timespec  zero = { 0, 0 };

    if (c->ssl) {
        ERR_clear_error();

        /* OpenSSL writes with write(): a closed peer must not be SIGPIPE */
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        sigprocmask(SIG_BLOCK, &pipe, &old);

        n = writing ? SSL_write(c->ssl, buf, (int) len)
                    : SSL_read(c->ssl, buf, (int) len);

        sslerr = n > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, (int) n);

        if (sslerr == SSL_ERROR_SYSCALL && errno == EPIPE) {
            (void) sigtimedwait(&pipe, NULL, &zero);
        }

        sigprocmask(SIG_SETMASK, &old, NULL);

        if (n > 0) {
            return n;
        }

        if (sslerr == SSL_ERROR_WANT_READ) {
            *events = POLLIN;
            return 0;
        }

        if (sslerr == SSL_ERROR_WANT_WRITE) {
            *events = POLLOUT;
            return 0;
        }

        if (writing && sslerr == SSL_ERROR_SYSCALL) {
            /* an alert the server sent before it reset (TLS 1.3 says
             * "certificate required" only after the handshake) */
            sa_rconn_tls_alert(c);
        }

        sa_rconn_tls_fail(c, writing ? "write" : "read", sslerr);
        return -1;
    }

    n = writing ? send(c->fd, buf, len, MSG_NOSIGNAL)
                : recv(c->fd, buf, len, 0);

    if (n > 0) {
        return n;
    }

    if (n == 0 && !writing) {
        sa_rconn_fail(c, "Server closed the connection");
        return -1;
    }

    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        *events = writing ? POLLOUT : POLLIN;
        return 0;
    }

    sa_rconn_fail(c, "%s", strerror(errno));
    return -1;
}


/*
 * A renegotiation is refused (SSL_OP_NO_RENEGOTIATION): what the server
 * would present in it would never be verified.  Its HelloRequest is noted,
 * so that a server that then gives up is said to have asked for one.
 */
static void
sa_rconn_tls_msg(int write_p, int version, int content_type, const void *buf,
    size_t len, SSL *ssl, void *arg)
{
    sa_rconn_t  *c = arg;

    (void) version;
    (void) ssl;

    if (!write_p && content_type == SSL3_RT_HANDSHAKE && len >= 1
        && ((const unsigned char *) buf)[0] == SSL3_MT_HELLO_REQUEST)
    {
        c->renegotiation = 1;
    }
}


SSL_CTX *
sa_tls_ctx_or_exit(const sa_tls_conf_t *tls)
{
    static SSL_CTX  *ctx;
    unsigned long    e;

    if (ctx != NULL) {
        return ctx;
    }

    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        sa_die(SA_EXIT_UNAVAILABLE, "TLS: cannot make a context");
    }

    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_AUTO_RETRY);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);

    if (tls->insecure) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);

    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);

        if (tls->ca ? SSL_CTX_load_verify_locations(ctx, tls->ca, NULL) != 1
                    : SSL_CTX_set_default_verify_paths(ctx) != 1)
        {
            e = ERR_peek_last_error();
            sa_die(SA_EXIT_USAGE, "cannot read the CA certificates%s%s: %s",
                   tls->ca ? " in " : "", tls->ca ? tls->ca : "",
                   e ? ERR_reason_error_string(e) : "unknown error");
        }
    }

    if ((tls->cert == NULL) != (tls->key == NULL)) {
        sa_die(SA_EXIT_USAGE, "--redis-cert and --redis-key go together");
    }

    if (tls->cert
        && (SSL_CTX_use_certificate_chain_file(ctx, tls->cert) != 1
            || SSL_CTX_use_PrivateKey_file(ctx, tls->key, SSL_FILETYPE_PEM)
               != 1
            || SSL_CTX_check_private_key(ctx) != 1))
    {
        e = ERR_peek_last_error();
        sa_die(SA_EXIT_USAGE, "cannot use the client certificate %s with "
               "key %s: %s", tls->cert, tls->key,
               e ? ERR_reason_error_string(e) : "unknown error");
    }

    ERR_clear_error();

    return ctx;
}


static int
sa_rconn_is_ip(const char *host)
{
    unsigned char  a[16];

    return inet_pton(AF_INET, host, a) == 1
           || inet_pton(AF_INET6, host, a) == 1;
}


/* the handshake, and the certificate's name or IP address checked */
static void
sa_rconn_tls(sa_rconn_t *c, const char *host, SSL_CTX *ctx,
    long long deadline)
{
    int    n, sslerr;
    long   v;
    short  events;

    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1) {
        sa_rconn_fail(c, "TLS: cannot start");
        return;
    }

    SSL_set_msg_callback(c->ssl, sa_rconn_tls_msg);
    SSL_set_msg_callback_arg(c->ssl, c);

    if (SSL_CTX_get_verify_mode(ctx) != SSL_VERIFY_NONE) {
        if (sa_rconn_is_ip(host)
            ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host) != 1
            : SSL_set1_host(c->ssl, host) != 1)
        {
            sa_rconn_fail(c, "TLS: cannot check the name %s", host);
            return;
        }
    }

    /* RFC 6066: no IP address in SNI */
    if (!sa_rconn_is_ip(host)) {
        (void) SSL_set_tlsext_host_name(c->ssl, host);
    }

    for ( ;; ) {
        ERR_clear_error();

        n = SSL_connect(c->ssl);
        if (n == 1) {
            return;
        }

        sslerr = SSL_get_error(c->ssl, n);

        if (sslerr == SSL_ERROR_WANT_READ || sslerr == SSL_ERROR_WANT_WRITE) {
            events = sslerr == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;

            if (!sa_rconn_wait(c, events, deadline)) {
                /* a stopped or blackholed server, and a plain port (which
                 * waits for a line TLS never sends), leave it unanswered */
                sa_rconn_fail(c, "TLS handshake timed out: %s",
                              SSL_get_state(c->ssl) == TLS_ST_CW_CLNT_HELLO
                              ? "no answer to the ClientHello (a stopped "
                                "server, or a plain port?)"
                              : "the server stopped in the middle of it");
                return;
            }

            continue;
        }

        v = SSL_get_verify_result(c->ssl);

        if (v != X509_V_OK) {
            sa_rconn_fail(c, "TLS certificate verify failed: %s (%s)",
                          X509_verify_cert_error_string(v), host);
            ERR_clear_error();
            return;
        }

        sa_rconn_tls_fail(c, "handshake", sslerr);
        return;
    }
}


static int
sa_rconn_connect_addr(sa_rconn_t *c, const struct sockaddr *sa,
    socklen_t len, long long deadline)
{
    int        err, on = 1;
    socklen_t  elen = sizeof(err);

    c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                   0);
    if (c->fd == -1) {
        return errno;
    }

    if (connect(c->fd, sa, len) == 0) {
        err = 0;

    } else if (errno != EINPROGRESS) {
        err = errno;

    } else if (!sa_rconn_wait(c, POLLOUT, deadline)) {
        err = ETIMEDOUT;

    } else if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) == -1) {
        err = errno;
    }

    if (err) {
        close(c->fd);
        c->fd = -1;
        return err;
    }

    if (sa->sa_family != AF_UNIX) {
        (void) setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    }

    return 0;
}


sa_rconn_t *
sa_rconn_connect(const char *host, int port, const char *unix_path,
    SSL_CTX *ctx, int timeout_ms)
{
    int                 rc, err;
    char                service[16];
    long long           deadline;
    sa_rconn_t         *c;
    struct addrinfo     hints, *res, *ai;
    struct sockaddr_un  sun;

    c = sa_xcalloc(1, sizeof(sa_rconn_t));
    c->fd = -1;
    c->timeout_ms = timeout_ms;

    c->reader = redisReaderCreate();
    if (c->reader == NULL) {
        sa_rconn_fail(c, "out of memory");
        return c;
    }

    deadline = sa_mono_ms() + timeout_ms;

    if (unix_path != NULL) {
        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;

        if (strlen(unix_path) >= sizeof(sun.sun_path)) {
            sa_rconn_fail(c, "socket path too long");
            return c;
        }

        strcpy(sun.sun_path, unix_path);

        err = sa_rconn_connect_addr(c, (struct sockaddr *) &sun, sizeof(sun),
                                    deadline);
        if (err) {
            sa_rconn_fail(c, "%s", strerror(err));
        }

        return c;
    }

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(service, sizeof(service), "%d", port);

    rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        sa_rconn_fail(c, "%s", gai_strerror(rc));
        return c;
    }

    err = ENOENT;

    for (ai = res; ai != NULL; ai = ai->ai_next) {
        err = sa_rconn_connect_addr(c, ai->ai_addr, ai->ai_addrlen, deadline);
        if (err == 0) {
            break;
        }
    }

    freeaddrinfo(res);

    if (err) {
        sa_rconn_fail(c, "%s", err == ETIMEDOUT ? "Connection timed out"
                                                : strerror(err));
        return c;
    }

    if (ctx != NULL) {
        sa_rconn_tls(c, host, ctx, deadline);
    }

    return c;
}


void
sa_rconn_set_timeout(sa_rconn_t *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms;
}


int
sa_rconn_append(sa_rconn_t *c, const char *cmd, size_t len)
{
    if (c->err) {
        return REDIS_ERR;
    }

    if (c->ocap - c->olen < len) {
        c->ocap = c->olen + len > 2 * c->ocap ? c->olen + len : 2 * c->ocap;
        c->obuf = sa_xrealloc(c->obuf, c->ocap);
    }

    memcpy(c->obuf + c->olen, cmd, len);
    c->olen += len;

    return REDIS_OK;
}


static int
sa_rconn_flush(sa_rconn_t *c, long long deadline)
{
    size_t   sent = 0;
    ssize_t  n;
    short    events;

    while (sent < c->olen) {
        n = sa_rconn_io(c, 1, c->obuf + sent, c->olen - sent, &events);

        if (n < 0) {
            return REDIS_ERR;
        }

        if (n == 0) {
            if (!sa_rconn_wait(c, events, deadline)) {
                sa_rconn_fail(c, "Resource temporarily unavailable "
                              "(no progress writing within %d ms)",
                              c->timeout_ms);
                return REDIS_ERR;
            }
            continue;
        }

        sent += n;
    }

    c->olen = 0;

    return REDIS_OK;
}


int
sa_rconn_get_reply(sa_rconn_t *c, void **reply)
{
    char       buf[16384];
    ssize_t    n;
    short      events;
    long long  deadline;

    *reply = NULL;

    if (c->err) {
        return REDIS_ERR;
    }

    if (redisReaderGetReply(c->reader, reply) != REDIS_OK) {
        sa_rconn_fail(c, "Protocol error: %s", c->reader->errstr);
        return REDIS_ERR;
    }

    if (*reply != NULL) {
        c->fed = 0;
        return REDIS_OK;
    }

    deadline = sa_mono_ms() + c->timeout_ms;

    if (c->olen && sa_rconn_flush(c, deadline) != REDIS_OK) {
        return REDIS_ERR;
    }

    deadline = sa_mono_ms() + c->timeout_ms;

    while (*reply == NULL) {
        n = sa_rconn_io(c, 0, buf, sizeof(buf), &events);

        if (n < 0) {
            return REDIS_ERR;
        }

        if (n == 0) {
            if (!sa_rconn_wait(c, events, deadline)) {
                sa_rconn_fail(c, "Resource temporarily unavailable");
                return REDIS_ERR;
            }
            continue;
        }

        /* progress: a long reply gets a deadline for each part */
        deadline = sa_mono_ms() + c->timeout_ms;

        c->fed += n;
        if (c->fed > SA_RCONN_REPLY_MAX) {
            sa_rconn_fail(c, "Protocol error: a reply of over %zu MiB, "
                          "refused", SA_RCONN_REPLY_MAX >> 20);
            return REDIS_ERR;
        }

        if (redisReaderFeed(c->reader, buf, n) != REDIS_OK
            || redisReaderGetReply(c->reader, reply) != REDIS_OK)
        {
            sa_rconn_fail(c, "Protocol error: %s", c->reader->errstr);
            return REDIS_ERR;
        }
    }

    c->fed = 0;

    return REDIS_OK;
}


redisReply *
sa_rconn_command(sa_rconn_t *c, const char *fmt, ...)
{
    int       len;
    char     *cmd;
    void     *reply;
    va_list   args;

    va_start(args, fmt);
    len = redisvFormatCommand(&cmd, fmt, args);
    va_end(args);

    if (len < 0) {
        sa_rconn_fail(c, "out of memory");
        return NULL;
    }

    if (sa_rconn_append(c, cmd, len) != REDIS_OK) {
        redisFreeCommand(cmd);
        return NULL;
    }

    redisFreeCommand(cmd);

    if (sa_rconn_get_reply(c, &reply) != REDIS_OK) {
        return NULL;
    }

    return reply;
}


void
sa_rconn_free(sa_rconn_t *c)
{
    if (c == NULL) {
        return;
    }

    if (c->ssl) {
        /* no close_notify round trip: sa-admin is done with it */
        SSL_set_quiet_shutdown(c->ssl, 1);
        SSL_free(c->ssl);
    }

    if (c->fd != -1) {
        close(c->fd);
    }

    if (c->reader) {
        redisReaderFree(c->reader);
    }

    free(c->obuf);
    free(c);
}
