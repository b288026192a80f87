#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "redis.h"
#include "xalloc.h"

#define SA_CONNECT_TIMEOUT_SEC  2
#define SA_REPLY_TIMEOUT_SEC    10


static int
sa_url_int(const char *s, size_t len, int max, int *out)
{
    int  v = 0;

    if (len == 0 || len > 9) {
        return -1;
    }

    while (len--) {
        if (*s < '0' || *s > '9') {
            return -1;
        }
        v = v * 10 + (*s++ - '0');
    }

    if (v > max) {
        return -1;
    }

    *out = v;
    return 0;
}


static int
sa_url_copy(char *dst, size_t size, const char *src, size_t len)
{
    if (len >= size) {
        return -1;
    }

    memcpy(dst, src, len);
    dst[len] = '\0';
    return 0;
}


/* "user:pass@" or ":pass@" or "pass@" (redis-cli accepts the last too) */
static int
sa_url_userinfo(const char *p, size_t len, sa_redis_url_t *u)
{
    const char  *colon = memchr(p, ':', len);

    if (colon == NULL) {
        return sa_url_copy(u->password, sizeof(u->password), p, len);
    }

    return sa_url_copy(u->user, sizeof(u->user), p, colon - p)
           | sa_url_copy(u->password, sizeof(u->password), colon + 1,
                         len - (colon - p) - 1);
}


/* redis://[userinfo@]host[:port][/db] */
static int
sa_url_tcp(const char *p, sa_redis_url_t *u, char *err, size_t errlen)
{
    const char  *at, *slash, *colon, *end;

    end = p + strlen(p);
    slash = memchr(p, '/', end - p);
    if (slash == NULL) {
        slash = end;
    }

    at = memchr(p, '@', slash - p);
    if (at != NULL) {
        if (sa_url_userinfo(p, at - p, u) != 0) {
            snprintf(err, errlen, "credentials too long");
            return -1;
        }
        p = at + 1;
    }

    colon = memchr(p, ':', slash - p);
    if (sa_url_copy(u->host, sizeof(u->host), p,
                    (colon ? colon : slash) - p) != 0
        || u->host[0] == '\0')
    {
        snprintf(err, errlen, "missing or too long host");
        return -1;
    }

    if (colon && sa_url_int(colon + 1, slash - colon - 1, 65535, &u->port)) {
        snprintf(err, errlen, "invalid port");
        return -1;
    }

    if (slash < end && slash + 1 < end
        && sa_url_int(slash + 1, end - slash - 1, 1000000, &u->db) != 0)
    {
        snprintf(err, errlen, "invalid database number");
        return -1;
    }

    return 0;
}


/* unix://[userinfo@]/path[?db=N] */
static int
sa_url_unix(const char *p, sa_redis_url_t *u, char *err, size_t errlen)
{
    const char  *at, *q, *end;

    end = p + strlen(p);
    at = strchr(p, '@');
    if (at != NULL) {
        if (sa_url_userinfo(p, at - p, u) != 0) {
            snprintf(err, errlen, "credentials too long");
            return -1;
        }
        p = at + 1;
    }

    q = strchr(p, '?');
    if (q == NULL) {
        q = end;
    }

    if (*p != '/' || sa_url_copy(u->unix_path, sizeof(u->unix_path), p,
                                 q - p) != 0)
    {
        snprintf(err, errlen, "expected unix:///absolute/path");
        return -1;
    }

    if (q < end) {
        if (strncmp(q, "?db=", 4) != 0
            || sa_url_int(q + 4, end - q - 4, 1000000, &u->db) != 0)
        {
            snprintf(err, errlen, "invalid database (expected ?db=N)");
            return -1;
        }
    }

    return 0;
}


int
sa_redis_url_parse(const char *url, sa_redis_url_t *u, char *err,
    size_t errlen)
{
    memset(u, 0, sizeof(*u));
    u->port = 6379;

    if (strncmp(url, "redis://", 8) == 0) {
        return sa_url_tcp(url + 8, u, err, errlen);
    }

    if (strncmp(url, "unix://", 7) == 0) {
        return sa_url_unix(url + 7, u, err, errlen);
    }

    snprintf(err, errlen, "expected redis://host:port/db or unix:///path");
    return -1;
}


/* where we connect, for messages: never with the password */
static void
sa_url_display(const sa_redis_url_t *u, char *out, size_t size)
{
    if (u->unix_path[0]) {
        snprintf(out, size, "unix://%s?db=%d", u->unix_path, u->db);
    } else {
        snprintf(out, size, "redis://%s:%d/%d", u->host, u->port, u->db);
    }
}


static void
sa_redis_die(const char *where, const char *what)
{
    sa_fail(SA_EXIT_UNAVAILABLE, "Redis unavailable at %s: %s", where, what);
    exit(SA_EXIT_UNAVAILABLE);
}


static void
sa_redis_setup(redisContext *c, const sa_redis_url_t *u, const char *where)
{
    redisReply  *r = NULL;

    if (u->password[0] && u->user[0]) {
        r = redisCommand(c, "AUTH %s %s", u->user, u->password);
    } else if (u->password[0]) {
        r = redisCommand(c, "AUTH %s", u->password);
    }

    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        sa_redis_die(where, r->str);
    }
    freeReplyObject(r);

    r = redisCommand(c, "SELECT %d", u->db);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        sa_redis_die(where, r ? r->str : c->errstr);
    }
    freeReplyObject(r);
}


redisContext *
sa_xredis(sa_admin_t *sa)
{
    sa_redis_url_t   u;
    redisContext    *c;
    char             err[256], where[600];
    struct timeval   tv = { SA_CONNECT_TIMEOUT_SEC, 0 };
    struct timeval   rtv = { SA_REPLY_TIMEOUT_SEC, 0 };

    if (sa->redis != NULL) {
        return sa->redis;
    }

    if (sa_redis_url_parse(sa->redis_url, &u, err, sizeof(err)) != 0) {
        sa_fail(SA_EXIT_USAGE, "invalid Redis URL: %s", err);
        exit(SA_EXIT_USAGE);
    }

    sa_url_display(&u, where, sizeof(where));

    c = u.unix_path[0] ? redisConnectUnixWithTimeout(u.unix_path, tv)
                       : redisConnectWithTimeout(u.host, u.port, tv);

    if (c == NULL || c->err) {
        sa_redis_die(where, c ? c->errstr : "out of memory");
    }

    redisSetTimeout(c, rtv);
    sa_redis_setup(c, &u, where);

    sa->redis = c;
    snprintf(sa->redis_where, sizeof(sa->redis_where), "%s", where);
    return c;
}


void
sa_redis_close(sa_admin_t *sa)
{
    if (sa->redis != NULL) {
        redisFree(sa->redis);
        sa->redis = NULL;
    }
}


static redisReply *
sa_checked(sa_admin_t *sa, void *reply)
{
    if (reply == NULL) {
        sa_redis_die(sa->redis_where, sa->redis->errstr);
    }

    return reply;
}


redisReply *
sa_xredis_cmd(sa_admin_t *sa, const char *fmt, ...)
{
    va_list  ap;
    void    *r;

    sa_xredis(sa);

    va_start(ap, fmt);
    r = redisvCommand(sa->redis, fmt, ap);
    va_end(ap);

    return sa_checked(sa, r);
}


void
sa_xredis_append(sa_admin_t *sa, sa_args_t *args)
{
    sa_xredis(sa);

    if (redisAppendCommandArgv(sa->redis, args->n, (const char **) args->v,
                               args->len) != REDIS_OK)
    {
        sa_redis_die(sa->redis_where, sa->redis->errstr);
    }
}


redisReply *
sa_xredis_reply(sa_admin_t *sa)
{
    void  *r = NULL;

    if (redisGetReply(sa->redis, &r) != REDIS_OK) {
        sa_redis_die(sa->redis_where, sa->redis->errstr);
    }

    return r;
}


static void
sa_xscript_load(sa_admin_t *sa, sa_script_t *script)
{
    redisReply  *r;

    if (script->sha[0]) {
        return;
    }

    r = sa_xredis_cmd(sa, "SCRIPT LOAD %s", script->body);
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        sa_fail(SA_EXIT_UNAVAILABLE, "Redis refused script %s: %s",
                script->name, r->type == REDIS_REPLY_ERROR ? r->str : "?");
        exit(SA_EXIT_UNAVAILABLE);
    }

    memcpy(script->sha, r->str, 41);
    freeReplyObject(r);
}


static void
sa_script_args(sa_script_t *script, int nkeys, sa_args_t *in, sa_args_t *out)
{
    int  i;

    sa_args_init(out);
    sa_args_add(out, "EVALSHA");
    sa_args_add(out, script->sha);
    sa_args_addf(out, "%d", nkeys);

    for (i = 0; i < in->n; i++) {
        sa_args_addn(out, in->v[i], in->len[i]);
    }
}


void
sa_xscript_append(sa_admin_t *sa, sa_script_t *script, int nkeys,
    sa_args_t *args)
{
    sa_args_t  full;

    sa_xscript_load(sa, script);
    sa_script_args(script, nkeys, args, &full);
    sa_xredis_append(sa, &full);
    sa_args_free(&full);
}


void
sa_args_init(sa_args_t *a)
{
    memset(a, 0, sizeof(*a));
}


void
sa_args_addn(sa_args_t *a, const char *s, size_t len)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->v = sa_xrealloc(a->v, a->cap * sizeof(char *));
        a->len = sa_xrealloc(a->len, a->cap * sizeof(size_t));
    }

    a->v[a->n] = sa_xmalloc(len + 1);

    memcpy(a->v[a->n], s, len);
    a->v[a->n][len] = '\0';
    a->len[a->n] = len;
    a->n++;
}


void
sa_args_add(sa_args_t *a, const char *s)
{
    sa_args_addn(a, s, strlen(s));
}


void
sa_args_addf(sa_args_t *a, const char *fmt, ...)
{
    va_list  ap;
    char     buf[512];
    int      n;

    va_start(ap, fmt);
    n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);

    sa_args_addn(a, buf, n < (int) sizeof(buf) ? (size_t) n : sizeof(buf) - 1);
}


void
sa_args_free(sa_args_t *a)
{
    int  i;

    for (i = 0; i < a->n; i++) {
        free(a->v[i]);
    }

    free(a->v);
    free(a->len);
    sa_args_init(a);
}
