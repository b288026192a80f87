/*
 * sa-admin's Redis transport: one blocking connection over TCP, a unix
 * socket or TLS (OpenSSL), with a deadline on every connect, write and
 * read.  hiredis 0.14 has no TLS, so only its redisReader (replies) and
 * redisFormatCommand* (commands) are used; the socket I/O is done here,
 * the same way for plain TCP and for TLS.  The calls mirror hiredis's
 * synchronous ones: after a failure, err is set and errstr says why, and
 * the connection is of no further use.
 */

#ifndef SA_ADMIN_RCONN_H
#define SA_ADMIN_RCONN_H

#include <stddef.h>
#include <hiredis/hiredis.h>
#include <openssl/ssl.h>

/* --redis-ca, --redis-cert, --redis-key, --redis-insecure */
typedef struct {
    const char  *ca;             /* NULL: the system's CA store */
    const char  *cert;           /* a client certificate, or NULL */
    const char  *key;
    int          insecure;       /* no verification at all */
} sa_tls_conf_t;

typedef struct sa_rconn_s  sa_rconn_t;

/*
 * No reply sa-admin asks for comes near this (an account's million token
 * ids are about 25 MB): more is a broken or hostile server, refused
 * before it takes the memory.
 */
#define SA_RCONN_REPLY_MAX  ((size_t) 64 << 20)

struct sa_rconn_s {
    int            fd;
    SSL           *ssl;          /* NULL: plain */
    redisReader   *reader;
    char          *obuf;         /* commands not yet written */
    size_t         olen;
    size_t         ocap;
    int            timeout_ms;   /* each write and read */
    int            err;          /* 0, or the connection failed */
    int            renegotiation; /* the server asked for one: refused */
    size_t         fed;          /* bytes read since the last reply */
    char           errstr[256];
};

/*
 * The TLS context for tls, made once (the CA, the client certificate);
 * a file that cannot be read ends the program with exit status 1.
 */
SSL_CTX *sa_tls_ctx_or_exit(const sa_tls_conf_t *tls);

/*
 * Connects to host:port (or unix_path), within timeout_ms, and with ctx
 * runs TLS, checking the certificate against host (a name, or an IP
 * address) unless ctx was made insecure.  Never NULL: see err.
 */
sa_rconn_t *sa_rconn_connect(const char *host, int port,
    const char *unix_path, SSL_CTX *ctx, int timeout_ms);

void sa_rconn_set_timeout(sa_rconn_t *c, int timeout_ms);

/* queues a formatted command (written by the next get_reply) */
int sa_rconn_append(sa_rconn_t *c, const char *cmd, size_t len);

/* writes what is queued, then reads one reply: REDIS_OK or REDIS_ERR */
int sa_rconn_get_reply(sa_rconn_t *c, void **reply);

/* as redisCommand(): NULL when the connection failed */
redisReply *sa_rconn_command(sa_rconn_t *c, const char *fmt, ...);

void sa_rconn_free(sa_rconn_t *c);

#endif /* SA_ADMIN_RCONN_H */
