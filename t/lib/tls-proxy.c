/*
 * tls-proxy: a TLS server in front of a plain one (a Redis, hostile-redis,
 * fake-sentinel) that misbehaves at the TLS layer on command, for the TLS
 * attack review (issue 24).
 *
 *   tls-proxy LISTEN_IP LISTEN_PORT TARGET_PORT CERT KEY DIR
 *
 * Each connection accepted is served by a child process: the TLS handshake
 * (CERT, KEY), then a relay to 127.0.0.1:TARGET_PORT.  DIR/mode, read when a
 * connection is accepted, rules it for its whole life (missing: "pass"):
 *
 *   pass        relay
 *   stall       accept, read nothing, answer nothing (a handshake that
 *               never ends)
 *   stall-hello read the ClientHello, answer nothing
 *   stall-finished  (with DIR/tls12) the handshake up to the client's
 *               Finished, then nothing: a handshake stopped in its middle
 *   split       every byte from the server goes in its own TLS record
 *   keyupdate   before each chunk from the server, a TLS 1.3 KeyUpdate
 *               that asks the client for one of its own
 *   reneg       TLS 1.2 only; before each chunk from the server after the
 *               first, a renegotiation (HelloRequest)
 *   close-mid   the first chunk from the server that holds a bulk string
 *               ("$" after the set-up) is cut in half: its first half,
 *               then close_notify, then the socket closed
 *
 * DIR/cert and DIR/key, when both exist at an accept, are that connection's
 * certificate and key instead of CERT and KEY, in a context of its own (a
 * server of its own: it resumes no session another connection gave); with
 * DIR/shared too, in the proxy's context (a fleet that shares its session
 * tickets' keys: a session one connection gave is resumed on another).
 * DIR/tls12 (exists): TLS 1.2 at most.  DIR/accepted
 * counts connections; DIR/log gets a line per event ("handshake done",
 * "keyupdate", "reneg", "client: N bytes").
 */

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <openssl/err.h>
#include <openssl/ssl.h>


static const char  *dir;
static int          handshakes;
static int          stall_finished;

static void say(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));


static void
info(const SSL *ssl, int where, int ret)
{
    (void) ssl;
    (void) ret;

    if (where & SSL_CB_HANDSHAKE_DONE) {
        handshakes++;
    }

    /* TLS 1.2: the client's Finished read, the server's never comes */
    if (stall_finished && (where & SSL_CB_LOOP)
        && SSL_get_state(ssl) == TLS_ST_SW_CHANGE)
    {
        say("the client's Finished read, answering nothing");
        for ( ;; ) {
            pause();
        }
    }
}


static void
say(const char *fmt, ...)
{
    char     path[4096];
    FILE    *f;
    va_list  args;

    snprintf(path, sizeof(path), "%s/log", dir);
    f = fopen(path, "a");
    if (f == NULL) {
        return;
    }

    fprintf(f, "%d ", (int) getpid());
    va_start(args, fmt);
    vfprintf(f, fmt, args);
    va_end(args);
    fputc('\n', f);
    fclose(f);
}


static void
read_file(const char *name, char *buf, size_t size)
{
    char     path[4096];
    FILE    *f;
    size_t   n;

    buf[0] = '\0';
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    f = fopen(path, "r");
    if (f == NULL) {
        return;
    }

    n = fread(buf, 1, size - 1, f);
    fclose(f);
    buf[n] = '\0';

    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) {
        buf[--n] = '\0';
    }
}


static int
exists(const char *name)
{
    char  path[4096];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}


static void
count_accepted(void)
{
    char  buf[32], path[4096];
    FILE *f;

    read_file("accepted", buf, sizeof(buf));
    snprintf(path, sizeof(path), "%s/accepted.tmp", dir);
    f = fopen(path, "w");
    if (f == NULL) {
        return;
    }
    fprintf(f, "%d\n", atoi(buf) + 1);
    fclose(f);

    {
        char  to[4096];

        snprintf(to, sizeof(to), "%s/accepted", dir);
        rename(path, to);
    }
}


/* waits for what OpenSSL wants, or dies with the connection */
static void
ssl_wait(SSL *ssl, int fd, int rc)
{
    struct pollfd  p;
    int            e = SSL_get_error(ssl, rc);

    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
        say("TLS error %d: %s", e,
            ERR_reason_error_string(ERR_peek_last_error())
            ? ERR_reason_error_string(ERR_peek_last_error()) : "-");
        _exit(0);
    }

    p.fd = fd;
    p.events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
    (void) poll(&p, 1, 1000);
}


static void
ssl_write_all(SSL *ssl, int fd, const char *buf, size_t len)
{
    int  n;

    while (len) {
        ERR_clear_error();
        n = SSL_write(ssl, buf, (int) len);
        if (n > 0) {
            buf += n;
            len -= n;
            continue;
        }
        ssl_wait(ssl, fd, n);
    }
}


static void
write_all(int fd, const char *buf, size_t len)
{
    ssize_t  n;

    while (len) {
        n = write(fd, buf, len);
        if (n <= 0) {
            if (n < 0 && errno == EINTR) {
                continue;
            }
            _exit(0);
        }
        buf += n;
        len -= n;
    }
}


static void
serve(int cfd, SSL_CTX *ctx, int target)
{
    int                 ufd, n, one = 1, seen, cut;
    char                mode[64], buf[16384];
    SSL                *ssl;
    struct pollfd       p[2];
    struct sockaddr_in  sin;

    read_file("mode", mode, sizeof(mode));
    if (mode[0] == '\0') {
        strcpy(mode, "pass");
    }

    say("accepted, mode %s", mode);

    stall_finished = (strcmp(mode, "stall-finished") == 0);

    if (strcmp(mode, "stall") == 0) {
        for ( ;; ) {
            pause();
        }
    }

    if (strcmp(mode, "stall-hello") == 0) {
        n = read(cfd, buf, sizeof(buf));
        say("ClientHello: %d bytes, answering nothing", n);
        for ( ;; ) {
            pause();
        }
    }

    ufd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(target);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(ufd, (struct sockaddr *) &sin, sizeof(sin)) != 0) {
        say("upstream: %s", strerror(errno));
        _exit(0);
    }
    setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    fcntl(cfd, F_SETFL, O_NONBLOCK);

    if (exists("cert") && exists("key") && !exists("shared")) {
        say("a context of its own");
        ctx = SSL_CTX_new(TLS_server_method());
        if (exists("tls12")) {
            SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
        }
    }

    ssl = SSL_new(ctx);
    SSL_set_fd(ssl, cfd);
    SSL_set_info_callback(ssl, info);

    if (exists("cert") && exists("key")) {
        char  cert[4096], key[4096];

        snprintf(cert, sizeof(cert), "%s/cert", dir);
        snprintf(key, sizeof(key), "%s/key", dir);

        if (SSL_use_certificate_chain_file(ssl, cert) != 1
            || SSL_use_PrivateKey_file(ssl, key, SSL_FILETYPE_PEM) != 1)
        {
            say("DIR/cert or DIR/key refused");
            _exit(0);
        }
    }

    for ( ;; ) {
        ERR_clear_error();
        n = SSL_accept(ssl);
        if (n == 1) {
            break;
        }
        ssl_wait(ssl, cfd, n);
    }

    say("handshake done, %s%s", SSL_get_version(ssl),
        SSL_session_reused(ssl) ? ", resumed" : "");

    seen = 0;
    cut = 0;

    for ( ;; ) {
        p[0].fd = cfd;
        p[0].events = POLLIN;
        p[0].revents = 0;
        p[1].fd = ufd;
        p[1].events = POLLIN;
        p[1].revents = 0;

        if (!SSL_pending(ssl)) {
            n = poll(p, 2, -1);
            if (n < 0 && errno != EINTR) {
                _exit(0);
            }
        } else {
            p[0].revents = POLLIN;
        }

        if (p[0].revents) {
            for ( ;; ) {
                ERR_clear_error();
                n = SSL_read(ssl, buf, sizeof(buf));
                if (n > 0) {
                    say("client: %d bytes", n);
                    write_all(ufd, buf, n);
                    continue;
                }
                n = SSL_get_error(ssl, n);
                if (n == SSL_ERROR_WANT_READ || n == SSL_ERROR_WANT_WRITE) {
                    break;
                }
                say("client gone: SSL error %d (%s), %d handshakes", n,
                    ERR_reason_error_string(ERR_peek_last_error())
                    ? ERR_reason_error_string(ERR_peek_last_error()) : "-",
                    handshakes);
                _exit(0);
            }
        }

        if (p[1].revents) {
            n = read(ufd, buf, sizeof(buf));
            if (n <= 0) {
                say("upstream gone");
                (void) SSL_shutdown(ssl);
                _exit(0);
            }

            if (strcmp(mode, "keyupdate") == 0) {
                if (SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) != 1) {
                    say("keyupdate refused");
                } else {
                    say("keyupdate");
                }
            }

            if (strcmp(mode, "reneg") == 0 && seen) {
                if (SSL_renegotiate(ssl) != 1) {
                    say("reneg refused");
                } else {
                    ERR_clear_error();
                    (void) SSL_do_handshake(ssl);
                    say("reneg");
                }
            }

            if (strcmp(mode, "close-mid") == 0 && !cut
                && memchr(buf, '$', n) != NULL)
            {
                cut = 1;
                ssl_write_all(ssl, cfd, buf, n / 2);
                say("close_notify after %d of %d bytes", n / 2, n);
                (void) SSL_shutdown(ssl);
                usleep(100000);
                _exit(0);
            }

            if (strcmp(mode, "split") == 0) {
                int  i;

                for (i = 0; i < n; i++) {
                    ssl_write_all(ssl, cfd, buf + i, 1);
                }

            } else {
                ssl_write_all(ssl, cfd, buf, n);
            }

            seen++;
        }
    }
}


int
main(int argc, char **argv)
{
    int                 lfd, cfd, one = 1, target;
    SSL_CTX            *ctx;
    struct sockaddr_in  sin;

    if (argc != 7) {
        fprintf(stderr, "usage: tls-proxy LISTEN_IP LISTEN_PORT TARGET_PORT "
                "CERT KEY DIR\n");
        return 1;
    }

    dir = argv[6];
    target = atoi(argv[3]);

    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_IGN);        /* no zombies */

    ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL
        || SSL_CTX_use_certificate_chain_file(ctx, argv[4]) != 1
        || SSL_CTX_use_PrivateKey_file(ctx, argv[5], SSL_FILETYPE_PEM) != 1)
    {
        fprintf(stderr, "tls-proxy: %s\n",
                ERR_reason_error_string(ERR_peek_last_error()));
        return 1;
    }

    if (exists("tls12")) {
        SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    }

    lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons(atoi(argv[2]));
    inet_pton(AF_INET, argv[1], &sin.sin_addr);

    if (bind(lfd, (struct sockaddr *) &sin, sizeof(sin)) != 0
        || listen(lfd, 128) != 0)
    {
        fprintf(stderr, "tls-proxy: listen %s:%s: %s\n", argv[1], argv[2],
                strerror(errno));
        return 1;
    }

    for ( ;; ) {
        cfd = accept(lfd, NULL, NULL);
        if (cfd < 0) {
            continue;
        }

        count_accepted();

        if (fork() == 0) {
            close(lfd);
            /* die with the proxy (the harness kills its group anyway) */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            serve(cfd, ctx, target);
            _exit(0);
        }

        close(cfd);
    }
}
