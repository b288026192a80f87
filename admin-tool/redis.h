/*
 * sa-admin's Redis connection: URL parsing, connect with AUTH and SELECT,
 * commands, pipelines and Lua scripts.  Connection faults end the program
 * with exit status 3 and one line on stderr; error replies go back to the
 * caller.
 *
 * rediss:// and redis-sentinel+tls:// run TLS (rconn.c) to Redis, and to
 * the sentinels and the master, verified with --redis-ca (SA_REDIS_CA, or
 * the system's CAs) unless --redis-insecure; --redis-cert and --redis-key
 * (SA_REDIS_CERT, SA_REDIS_KEY) are a client certificate.
 *
 * redis-sentinel:// URLs: the master is asked of the sentinels, and must
 * say ROLE master.  When the connection breaks (or the node turned replica)
 * with commands in flight, sa-admin finds the master again through the
 * sentinels and settles them there: a command is sent again, a script
 * first looks up its change key (see common.lua), so that a change whose
 * reply was lost is reported as made or made once; the callers get their
 * replies as if nothing had happened.  After changes, WAIT for a replica.
 */

#ifndef SA_ADMIN_REDIS_H
#define SA_ADMIN_REDIS_H

#include <stddef.h>
#include <hiredis/hiredis.h>

#include "rconn.h"
#include "sa_admin.h"

#define SA_SENTINELS_MAX  16

typedef struct {
    char  host[256];
    int   port;
} sa_hostport_t;

typedef struct {
    char           host[256];
    int            port;
    char           unix_path[256];        /* non-empty for unix:// */
    int            tls;                   /* rediss://, redis-sentinel+tls:// */
    int            db;
    char           user[128];
    char           password[256];
    /* redis-sentinel://: the sentinels (host and port empty until asked) */
    int            nsentinels;
    sa_hostport_t  sentinels[SA_SENTINELS_MAX];
    char           master[256];
} sa_redis_url_t;

/* a growing argument vector for one command */
typedef struct {
    int      n;
    int      cap;
    char   **v;
    size_t  *len;
} sa_args_t;

typedef struct {
    const char  *name;
    const char  *body;
    char         sha[41];        /* filled by the first use */
    unsigned     conn;           /* the connection it was loaded on */
} sa_script_t;

int sa_redis_url_parse(const char *url, sa_redis_url_t *u, char *err,
    size_t errlen);

/* the connection, made on first use */
sa_rconn_t *sa_xredis(sa_admin_t *sa);

void sa_redis_close(sa_admin_t *sa);

/*
 * Another connection to the same Redis (the master of a sentinel URL),
 * AUTH and SELECT done, apart from sa->redis and its commands in flight:
 * for a subscriber (serve's refresher).  A failure ends the program as
 * sa_xredis() does (through sa_die(): a sink may catch it).
 */
sa_rconn_t *sa_redis_connect_more(sa_admin_t *sa);

/* one command; printf-like, as redisCommand() */
redisReply *sa_xredis_cmd(sa_admin_t *sa, const char *fmt, ...);

/* pipelining: append any number of commands, then read their replies */
void sa_xredis_append(sa_admin_t *sa, sa_args_t *args);
redisReply *sa_xredis_reply(sa_admin_t *sa);

/*
 * EVALSHA of a script, loading it first if needed.  With a sentinel URL and
 * nkeys 0, KEYS[1] is a fresh change key (<prefix>change:<32 hex>).
 */
void sa_xscript_append(sa_admin_t *sa, sa_script_t *script, int nkeys,
    sa_args_t *keys_and_args);

/*
 * s with the glob characters of SCAN MATCH (* ? [ ] \) escaped, so that a
 * key prefix such as "p[1]:" matches only itself; into out (at least
 * 2 * strlen(s) + 1 bytes, else the result is cut).
 */
void sa_glob_escape(const char *s, char *out, size_t size);

void sa_args_init(sa_args_t *a);
void sa_args_add(sa_args_t *a, const char *s);
void sa_args_addn(sa_args_t *a, const char *s, size_t len);
void sa_args_addf(sa_args_t *a, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sa_args_free(sa_args_t *a);
#endif /* SA_ADMIN_REDIS_H */
