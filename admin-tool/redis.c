#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <sodium.h>

#include "audit.h"
#include "rconn.h"
#include "redis.h"
#include "util.h"
#include "xalloc.h"

#define SA_CONNECT_TIMEOUT_SEC  2
#define SA_REPLY_TIMEOUT_SEC    10

#define SA_SENTINEL_PORT        26379
#define SA_SENTINEL_ASK_SEC     1        /* connect and reply, per sentinel */
#define SA_SENTINEL_DEADLINE    10       /* s to find a master; SA_SENTINEL_TIMEOUT */
#define SA_SENTINEL_ROUNDS      3        /* reconnections to settle commands */
#define SA_WAIT_MS              300      /* WAIT 1 <ms> after changes */


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


/*
 * "[userinfo@]hosts[/db]" up to end: takes the credentials, sets *slash to
 * the '/' (or end), and returns where the hosts start (NULL: see err).
 */
static const char *
sa_url_authority(const char *p, const char *end, const char **slash,
    sa_redis_url_t *u, char *err, size_t errlen)
{
    const char  *at;

    *slash = memchr(p, '/', end - p);
    if (*slash == NULL) {
        *slash = end;
    }

    at = memchr(p, '@', *slash - p);
    if (at == NULL) {
        return p;
    }

    if (sa_url_userinfo(p, at - p, u) != 0) {
        snprintf(err, errlen, "credentials too long");
        return NULL;
    }

    return at + 1;
}


/* redis://[userinfo@]host[:port][/db] */
static int
sa_url_tcp(const char *p, sa_redis_url_t *u, char *err, size_t errlen)
{
    const char  *slash, *colon, *end;

    end = p + strlen(p);

    p = sa_url_authority(p, end, &slash, u, err, errlen);
    if (p == NULL) {
        return -1;
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


/*
 * redis-sentinel://[userinfo@]host[:port][,host[:port]...][/db]#MASTER
 * (the Lettuce / Spring form; a sentinel's port defaults to 26379).  The
 * credentials are the data nodes', not the sentinels'.
 */
static int
sa_url_sentinel(const char *p, sa_redis_url_t *u, char *err, size_t errlen)
{
    const char     *hash, *end, *slash, *comma, *colon, *seg;
    sa_hostport_t  *s;

    hash = strrchr(p, '#');     /* a password may hold a "#" */
    if (hash == NULL || hash[1] == '\0') {
        snprintf(err, errlen, "missing #MASTER (the name the sentinels "
                 "know the master by)");
        return -1;
    }

    if (sa_url_copy(u->master, sizeof(u->master), hash + 1,
                    strlen(hash + 1)) != 0)
    {
        snprintf(err, errlen, "master name too long");
        return -1;
    }

    end = hash;

    p = sa_url_authority(p, end, &slash, u, err, errlen);
    if (p == NULL) {
        return -1;
    }

    u->port = 0;

    for (seg = p; ; seg = comma + 1) {
        comma = memchr(seg, ',', slash - seg);
        if (comma == NULL) {
            comma = slash;
        }

        if (u->nsentinels == SA_SENTINELS_MAX) {
            snprintf(err, errlen, "more than %d sentinels", SA_SENTINELS_MAX);
            return -1;
        }

        s = &u->sentinels[u->nsentinels];
        s->port = SA_SENTINEL_PORT;
        colon = memchr(seg, ':', comma - seg);

        if (sa_url_copy(s->host, sizeof(s->host), seg,
                        (colon ? colon : comma) - seg) != 0
            || s->host[0] == '\0')
        {
            snprintf(err, errlen, "missing or too long sentinel host "
                     "(expected host:port[,host:port...])");
            return -1;
        }

        if (colon && (sa_url_int(colon + 1, comma - colon - 1, 65535,
                                 &s->port) != 0
                      || s->port == 0))
        {
            snprintf(err, errlen, "invalid sentinel port");
            return -1;
        }

        u->nsentinels++;

        if (comma == slash) {
            break;
        }
    }

    if (slash < end && slash + 1 < end
        && sa_url_int(slash + 1, end - slash - 1, 1000000, &u->db) != 0)
    {
        snprintf(err, errlen, "invalid database number");
        return -1;
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

    if (strncmp(url, "rediss://", 9) == 0) {
        u->tls = 1;
        return sa_url_tcp(url + 9, u, err, errlen);
    }

    if (strncmp(url, "redis-sentinel+tls://", 21) == 0) {
        u->tls = 1;
        return sa_url_sentinel(url + 21, u, err, errlen);
    }

    if (strncmp(url, "unix://", 7) == 0) {
        return sa_url_unix(url + 7, u, err, errlen);
    }

    if (strncmp(url, "redis-sentinel://", 17) == 0) {
        return sa_url_sentinel(url + 17, u, err, errlen);
    }

    snprintf(err, errlen, "expected redis://host:port/db, unix:///path or "
             "redis-sentinel://host:port[,host:port...]/db#MASTER "
             "(rediss:// and redis-sentinel+tls:// for TLS)");
    return -1;
}


/* the sentinels, for messages: "h:p,h:p" */
static void
sa_url_sentinel_list(const sa_redis_url_t *u, char *out, size_t size)
{
    size_t  n = 0;
    int     i;

    out[0] = '\0';

    for (i = 0; i < u->nsentinels && n < size; i++) {
        n += snprintf(out + n, size - n, "%s%s:%d", i ? "," : "",
                      u->sentinels[i].host, u->sentinels[i].port);
    }
}


/* where we connect, for messages: never with the password */
static void
sa_url_display(const sa_redis_url_t *u, char *out, size_t size)
{
    char  list[SA_SENTINELS_MAX * 270];

    if (u->unix_path[0]) {
        snprintf(out, size, "unix://%s?db=%d", u->unix_path, u->db);

    } else if (u->nsentinels && u->host[0]) {
        snprintf(out, size, "redis%s://%s:%d/%d (master %s)",
                 u->tls ? "s" : "", u->host, u->port, u->db, u->master);

    } else if (u->nsentinels) {
        sa_url_sentinel_list(u, list, sizeof(list));
        snprintf(out, size, "redis-sentinel%s://%.400s/%d#%.100s",
                 u->tls ? "+tls" : "", list, u->db, u->master);

    } else {
        snprintf(out, size, "redis%s://%s:%d/%d", u->tls ? "s" : "", u->host,
                 u->port, u->db);
    }
}

/*
 * The connection and what is in flight on it.  sa-admin holds one
 * connection at a time; every command sent is kept (as sent) until its
 * reply is read, so that after a failover the commands can be settled on
 * the new master (see redis.h).
 */
typedef struct {
    char          *cmd;          /* the command as sent (RESP) */
    size_t         len;
    sa_script_t   *script;       /* a script run with a change key */
    char           key[128];     /* its change key */
    int            ours;         /* EVALSHA of our script: a receipt */
} sa_sent_t;

#define ms(tv)  ((int) ((tv).tv_sec * 1000 + (tv).tv_usec / 1000))

static struct {
    sa_redis_url_t   url;
    SSL_CTX         *tls;        /* rediss://, redis-sentinel+tls:// */
    unsigned         conn;       /* connections made so far */
    sa_sent_t       *sent;       /* in flight, sent[head..n) */
    int              head, n, cap;
    redisReply     **ready;      /* replies settled after a failover */
    int              rhead, rn, rcap;
    int              changed;    /* changes made since the last WAIT */
    int              warned;
} sa_conn;


static void
sa_redis_die(const char *where, const char *what)
{
    sa_die(SA_EXIT_UNAVAILABLE, "Redis unavailable at %s: %s", where, what);
}


static void
sa_redis_setup(sa_rconn_t *c, const sa_redis_url_t *u, const char *where)
{
    redisReply  *r = NULL;

    if (u->password[0] && u->user[0]) {
        r = sa_rconn_command(c, "AUTH %s %s", u->user, u->password);
    } else if (u->password[0]) {
        r = sa_rconn_command(c, "AUTH %s", u->password);
    }

    if (r != NULL && r->type == REDIS_REPLY_ERROR) {
        sa_redis_die(where, r->str);
    }
    freeReplyObject(r);

    r = sa_rconn_command(c, "SELECT %d", u->db);
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        sa_redis_die(where, r ? r->str : c->errstr);
    }
    freeReplyObject(r);
}



static void
sa_sleep_ms(long long ms)
{
    struct timespec  ts = { ms / 1000, (ms % 1000) * 1000000 };

    nanosleep(&ts, NULL);
}


/*
 * One sentinel asked for the master, and the master tried: connected,
 * AUTH and SELECT (a refusal of those ends the program, as for redis://),
 * and it must say ROLE master.  NULL with *why set otherwise.
 */
static sa_rconn_t *
sa_sentinel_try(sa_redis_url_t *u, const sa_hostport_t *s, char *why,
    size_t wsize)
{
    sa_rconn_t    *c;
    redisReply      *r;
    struct timeval   tv = { SA_SENTINEL_ASK_SEC, 0 };
    struct timeval   rtv = { SA_REPLY_TIMEOUT_SEC, 0 };
    char             where[600];
    int              ok;

    c = sa_rconn_connect(s->host, s->port, NULL, sa_conn.tls, ms(tv));
    if (c == NULL || c->err) {
        snprintf(why, wsize, "sentinel %s:%d: %s", s->host, s->port,
                 c ? c->errstr : "out of memory");
        sa_rconn_free(c);
        return NULL;
    }

    sa_rconn_set_timeout(c, ms(tv));
    r = sa_rconn_command(c, "SENTINEL get-master-addr-by-name %s", u->master);
    ok = 0;

    if (r == NULL) {
        snprintf(why, wsize, "sentinel %s:%d: %s", s->host, s->port,
                 c->errstr);

    } else if (r->type == REDIS_REPLY_NIL) {
        snprintf(why, wsize, "sentinel %s:%d knows no master named '%s'",
                 s->host, s->port, u->master);

    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(why, wsize, "sentinel %s:%d: %s", s->host, s->port, r->str);

    } else if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
               || r->element[0]->type != REDIS_REPLY_STRING
               || r->element[1]->type != REDIS_REPLY_STRING
               || snprintf(u->host, sizeof(u->host), "%s",
                           r->element[0]->str) >= (int) sizeof(u->host)
               || (u->port = atoi(r->element[1]->str)) <= 0)
    {
        snprintf(why, wsize, "sentinel %s:%d: unexpected reply", s->host,
                 s->port);

    } else {
        ok = 1;
    }

    freeReplyObject(r);
    sa_rconn_free(c);

    if (!ok) {
        u->host[0] = '\0';
        return NULL;
    }

    sa_url_display(u, where, sizeof(where));

    c = sa_rconn_connect(u->host, u->port, NULL, sa_conn.tls, ms(tv));
    if (c == NULL || c->err) {
        snprintf(why, wsize, "%s:%d (named by sentinel %s:%d): %s", u->host,
                 u->port, s->host, s->port, c ? c->errstr : "out of memory");
        sa_rconn_free(c);
        return NULL;
    }

    sa_rconn_set_timeout(c, ms(rtv));
    sa_redis_setup(c, u, where);

    r = sa_rconn_command(c, "ROLE");
    ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements > 0
         && r->element[0]->type == REDIS_REPLY_STRING
         && strcmp(r->element[0]->str, "master") == 0;

    if (!ok) {
        snprintf(why, wsize, "%s:%d (named by sentinel %s:%d) is not a "
                 "master: ROLE %s", u->host, u->port, s->host, s->port,
                 r == NULL ? c->errstr
                 : r->type == REDIS_REPLY_ERROR ? r->str
                 : r->type == REDIS_REPLY_ARRAY && r->elements > 0
                   && r->element[0]->type == REDIS_REPLY_STRING
                   ? r->element[0]->str : "?");
        sa_rconn_free(c);
        c = NULL;
    }

    freeReplyObject(r);
    return c;
}


/*
 * The master, from the sentinels in turn, in rounds with a growing pause
 * until SA_SENTINEL_TIMEOUT seconds (a failover takes a few); the program
 * ends with exit status 3 when there is none.  extra: said after why.
 */
static sa_rconn_t *
sa_sentinel_connect(sa_redis_url_t *u, const char *extra)
{
    sa_rconn_t  *c;
    const char    *env;
    char           why[1024] = "no sentinel asked";
    char           list[SA_SENTINELS_MAX * 270];
    long long      deadline, nap = 100, left;
    int            i, secs = SA_SENTINEL_DEADLINE;

    env = getenv("SA_SENTINEL_TIMEOUT");
    if (env != NULL && atoi(env) > 0) {
        secs = atoi(env);
    }

    deadline = sa_mono_ms() + secs * 1000LL;

    for ( ;; ) {
        for (i = 0; i < u->nsentinels; i++) {
            c = sa_sentinel_try(u, &u->sentinels[i], why, sizeof(why));
            if (c != NULL) {
                return c;
            }
        }

        left = deadline - sa_mono_ms();
        if (left <= 0) {
            break;
        }

        sa_sleep_ms(nap < left ? nap : left);
        nap = nap * 2 < 1000 ? nap * 2 : 1000;
    }

    sa_url_sentinel_list(u, list, sizeof(list));
    sa_die(SA_EXIT_UNAVAILABLE, "no master for %s from sentinels %s: %s%s",
           u->master, list, why, extra ? extra : "");
}


static void
sa_connected(sa_admin_t *sa, sa_rconn_t *c)
{
    sa->redis = c;
    sa_conn.conn++;
    sa_url_display(&sa_conn.url, sa->redis_where, sizeof(sa->redis_where));
}


sa_rconn_t *
sa_xredis(sa_admin_t *sa)
{
    sa_redis_url_t  *u = &sa_conn.url;
    sa_rconn_t      *c;
    sa_tls_conf_t    tls;
    char             err[256], where[600];
    struct timeval   tv = { SA_CONNECT_TIMEOUT_SEC, 0 };
    struct timeval   rtv = { SA_REPLY_TIMEOUT_SEC, 0 };

    if (sa->redis != NULL) {
        return sa->redis;
    }

    if (sa_redis_url_parse(sa->redis_url, u, err, sizeof(err)) != 0) {
        sa_die(SA_EXIT_USAGE, "invalid Redis URL: %s", err);
    }

    if (u->tls && sa_conn.tls == NULL) {
        tls.ca = sa->redis_ca;
        tls.cert = sa->redis_cert;
        tls.key = sa->redis_key;
        tls.insecure = sa->redis_insecure;
        sa_conn.tls = sa_tls_ctx_or_exit(&tls);
    }

    if (u->nsentinels) {
        sa_connected(sa, sa_sentinel_connect(u, NULL));
        return sa->redis;
    }

    sa_url_display(u, where, sizeof(where));

    c = u->unix_path[0] ? sa_rconn_connect(NULL, 0, u->unix_path, NULL, ms(tv))
                        : sa_rconn_connect(u->host, u->port, NULL, sa_conn.tls,
                                           ms(tv));

    if (c == NULL || c->err) {
        sa_redis_die(where, c ? c->errstr : "out of memory");
    }

    sa_rconn_set_timeout(c, ms(rtv));
    sa_redis_setup(c, u, where);

    sa_connected(sa, c);
    return c;
}


sa_rconn_t *
sa_redis_connect_more(sa_admin_t *sa)
{
    sa_redis_url_t   u;
    sa_rconn_t      *c;
    sa_tls_conf_t    tls;
    char             err[256], where[600];
    struct timeval   tv = { SA_CONNECT_TIMEOUT_SEC, 0 };
    struct timeval   rtv = { SA_REPLY_TIMEOUT_SEC, 0 };

    if (sa_redis_url_parse(sa->redis_url, &u, err, sizeof(err)) != 0) {
        sa_die(SA_EXIT_USAGE, "invalid Redis URL: %s", err);
    }

    if (u.tls && sa_conn.tls == NULL) {
        tls.ca = sa->redis_ca;
        tls.cert = sa->redis_cert;
        tls.key = sa->redis_key;
        tls.insecure = sa->redis_insecure;
        sa_conn.tls = sa_tls_ctx_or_exit(&tls);
    }

    if (u.nsentinels) {
        return sa_sentinel_connect(&u, NULL);
    }

    sa_url_display(&u, where, sizeof(where));

    c = u.unix_path[0] ? sa_rconn_connect(NULL, 0, u.unix_path, NULL, ms(tv))
                       : sa_rconn_connect(u.host, u.port, NULL, sa_conn.tls,
                                          ms(tv));

    if (c == NULL || c->err) {
        snprintf(err, sizeof(err), "%s", c ? c->errstr : "out of memory");
        sa_rconn_free(c);
        sa_redis_die(where, err);
    }

    sa_rconn_set_timeout(c, ms(rtv));
    sa_redis_setup(c, &u, where);

    return c;
}


static void
sa_sent_drop(sa_sent_t *e)
{
    free(e->cmd);
    e->cmd = NULL;
}


void
sa_redis_close(sa_admin_t *sa)
{
    while (sa_conn.head < sa_conn.n) {
        sa_sent_drop(&sa_conn.sent[sa_conn.head++]);
    }

    while (sa_conn.rhead < sa_conn.rn) {
        freeReplyObject(sa_conn.ready[sa_conn.rhead++]);
    }

    free(sa_conn.sent);
    free(sa_conn.ready);
    sa_conn.sent = NULL;
    sa_conn.ready = NULL;
    sa_conn.head = sa_conn.n = sa_conn.cap = 0;
    sa_conn.rhead = sa_conn.rn = sa_conn.rcap = 0;

    if (sa->redis != NULL) {
        sa_rconn_free(sa->redis);
        sa->redis = NULL;
    }
}


/* sends a formatted command (taking cmd) and keeps it until its reply */
static void
sa_send(sa_admin_t *sa, char *cmd, size_t len, sa_script_t *script,
    const char *key)
{
    sa_sent_t  *e;

    sa_xredis(sa);

    if (sa_conn.head == sa_conn.n) {
        sa_conn.head = sa_conn.n = 0;
    }

    if (sa_conn.n == sa_conn.cap) {
        sa_conn.cap = sa_conn.cap ? sa_conn.cap * 2 : 16;
        sa_conn.sent = sa_xrealloc(sa_conn.sent,
                                   sa_conn.cap * sizeof(sa_sent_t));
    }

    e = &sa_conn.sent[sa_conn.n++];
    e->cmd = cmd;
    e->len = len;
    e->script = script;
    e->ours = 0;
    snprintf(e->key, sizeof(e->key), "%s", key ? key : "");

    if (sa_rconn_append(sa->redis, cmd, len) != REDIS_OK) {
        sa_redis_die(sa->redis_where, sa->redis->errstr);
    }
}


/* an error reply that means "not the master (any more)" */
static int
sa_not_master(redisReply *r)
{
    return r->type == REDIS_REPLY_ERROR
           && (strncmp(r->str, "READONLY ", 9) == 0
               || strncmp(r->str, "MASTERDOWN ", 11) == 0
               || strncmp(r->str, "LOADING ", 8) == 0);
}


static void
sa_ready_push(redisReply *r)
{
    if (sa_conn.rhead == sa_conn.rn) {
        sa_conn.rhead = sa_conn.rn = 0;
    }

    if (sa_conn.rn == sa_conn.rcap) {
        sa_conn.rcap = sa_conn.rcap ? sa_conn.rcap * 2 : 16;
        sa_conn.ready = sa_xrealloc(sa_conn.ready,
                                    sa_conn.rcap * sizeof(redisReply *));
    }

    sa_conn.ready[sa_conn.rn++] = r;
}


/* loads a script on the current connection (a new master lacks it) */
static int
sa_script_load_now(sa_admin_t *sa, sa_script_t *script)
{
    redisReply  *r;
    int          ok;

    r = sa_rconn_command(sa->redis, "SCRIPT LOAD %s", script->body);
    ok = r != NULL && r->type == REDIS_REPLY_STRING && r->len == 40;
    if (ok) {
        script->conn = sa_conn.conn;
    }

    freeReplyObject(r);
    return ok;
}


/*
 * Settles what is in flight on a new connection to the master: a script
 * with a change key is looked up first (the key exists: the change was
 * made, and running it again only gives its recorded reply; it does not:
 * it was not made, and is made now), any other command is sent again.
 * The replies wait in sa_conn.ready.  Returns 0 when the connection broke
 * again.
 */
static int
sa_settle(sa_admin_t *sa, const char *lost, const char *why)
{
    sa_sent_t    *e;
    redisReply   *r;
    void         *reply;
    int           made;

    while (sa_conn.head < sa_conn.n) {
        e = &sa_conn.sent[sa_conn.head];

        if (e->script != NULL) {
            if (!sa_script_load_now(sa, e->script)) {
                return 0;
            }

            r = sa_rconn_command(sa->redis, "EXISTS %s", e->key);
            if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
                freeReplyObject(r);
                return 0;
            }

            made = r->integer == 1;
            freeReplyObject(r);

            sa_fail(SA_EXIT_OK, "lost the reply to %s from %s (%s); %s "
                    "shows the change %s", e->script->name, lost, why,
                    sa->redis_where,
                    made ? "was made" : "was not made: making it there now");
        }

        if (sa_rconn_append(sa->redis, e->cmd, e->len)
                != REDIS_OK
            || sa_rconn_get_reply(sa->redis, &reply) != REDIS_OK)
        {
            return 0;
        }

        if (sa_not_master(reply)) {
            freeReplyObject(reply);
            return 0;
        }

        if (e->script != NULL && ((redisReply *) reply)->type
                                 != REDIS_REPLY_ERROR)
        {
            sa_conn.changed++;
        }

        if (e->ours) {
            reply = sa_audit_unwrap(reply);
        }
        sa_ready_push(reply);
        sa_sent_drop(e);
        sa_conn.head++;
    }

    return 1;
}


/* the connection broke (or its node is no master now): see redis.h */
static void
sa_failover(sa_admin_t *sa, const char *what)
{
    char  lost[600], why[256], extra[1200];
    int   round, changes, i;

    snprintf(lost, sizeof(lost), "%s", sa->redis_where);
    snprintf(why, sizeof(why), "%s", what);

    for (round = 0; round < SA_SENTINEL_ROUNDS; round++) {
        sa_rconn_free(sa->redis);
        sa->redis = NULL;

        for (changes = 0, i = sa_conn.head; i < sa_conn.n; i++) {
            changes += sa_conn.sent[i].script != NULL;
        }

        snprintf(extra, sizeof(extra), "; whether %d change(s) sent to %s "
                 "were made is unknown (one that was made left its key "
                 "%schange:<id>)", changes, lost, sa->prefix);

        sa_conn.url.host[0] = '\0';
        sa_connected(sa, sa_sentinel_connect(&sa_conn.url,
                                             changes ? extra : NULL));

        if (sa_settle(sa, lost, why)) {
            return;
        }

        snprintf(lost, sizeof(lost), "%s", sa->redis_where);
        snprintf(why, sizeof(why), "%s", sa->redis->err ? sa->redis->errstr
                                                        : "not the master");
    }

    sa_redis_die(sa->redis_where, "the connection kept breaking");
}


/* after changes: did a replica get them? (a failover loses what none has) */
static void
sa_replicated(sa_admin_t *sa)
{
    redisReply  *r;

    if (sa_conn.changed == 0 || sa->redis == NULL) {
        return;
    }

    sa_conn.changed = 0;
    r = sa_rconn_command(sa->redis, "WAIT 1 %d", SA_WAIT_MS);

    if (r == NULL) {
        sa_fail(SA_EXIT_OK, "warning: could not ask %s whether a replica "
                "has the change (%s)", sa->redis_where, sa->redis->errstr);
        sa_rconn_free(sa->redis);
        sa->redis = NULL;

    } else if (r->type == REDIS_REPLY_INTEGER && r->integer < 1
               && !sa_conn.warned)
    {
        sa_fail(SA_EXIT_OK, "warning: no replica of %s acknowledged the "
                "change within %d ms; a failover now could lose it",
                sa->redis_where, SA_WAIT_MS);
        sa_conn.warned = 1;
    }

    freeReplyObject(r);
}


redisReply *
sa_xredis_reply(sa_admin_t *sa)
{
    sa_sent_t  *e;
    void       *r = NULL;

    if (sa_conn.rhead < sa_conn.rn) {
        r = sa_conn.ready[sa_conn.rhead++];

    } else {
        if (sa->redis == NULL || sa_conn.head == sa_conn.n) {
            sa_redis_die(sa->redis_where, "no reply awaited");
        }

        if (sa_rconn_get_reply(sa->redis, &r) != REDIS_OK
            || (sa_conn.url.nsentinels && sa_not_master(r)))
        {
            if (!sa_conn.url.nsentinels) {
                sa_redis_die(sa->redis_where, sa->redis->errstr);
            }

            sa_failover(sa, r ? ((redisReply *) r)->str : sa->redis->errstr);
            freeReplyObject(r);
            return sa_xredis_reply(sa);
        }

        e = &sa_conn.sent[sa_conn.head++];
        if (e->script != NULL && e->key[0]
            && ((redisReply *) r)->type != REDIS_REPLY_ERROR)
        {
            sa_conn.changed++;
        }
        if (e->ours) {
            r = sa_audit_unwrap(r);
        }
        sa_sent_drop(e);
    }

    /* nothing in flight: the audit entries written so far get signed */
    if (sa_conn.head == sa_conn.n && sa_conn.rhead == sa_conn.rn) {
        sa_audit_sign_pending(sa);
    }

    if (sa_conn.head == sa_conn.n && sa_conn.rhead == sa_conn.rn
        && sa_conn.url.nsentinels)
    {
        sa_replicated(sa);
    }

    return r;
}


redisReply *
sa_xredis_cmd(sa_admin_t *sa, const char *fmt, ...)
{
    va_list   ap;
    char     *cmd;
    int       len;

    va_start(ap, fmt);
    len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);

    if (len < 0) {
        sa_redis_die(sa->redis_where, "out of memory");
    }

    sa_send(sa, cmd, len, NULL, NULL);
    return sa_xredis_reply(sa);
}


static void
sa_send_argv(sa_admin_t *sa, sa_args_t *args, sa_script_t *script,
    const char *key)
{
    char  *cmd;
    int    len;

    len = redisFormatCommandArgv(&cmd, args->n, (const char **) args->v,
                                 args->len);
    if (len < 0) {
        sa_redis_die(sa->redis_where, "out of memory");
    }

    sa_send(sa, cmd, len, script, key);
}


void
sa_xredis_append(sa_admin_t *sa, sa_args_t *args)
{
    sa_send_argv(sa, args, NULL, NULL);
}


static void
sa_xscript_load(sa_admin_t *sa, sa_script_t *script)
{
    redisReply  *r;

    sa_xredis(sa);

    if (script->sha[0] && script->conn == sa_conn.conn) {
        return;
    }

    r = sa_xredis_cmd(sa, "SCRIPT LOAD %s", script->body);
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        sa_die(SA_EXIT_UNAVAILABLE, "Redis refused script %s: %s",
               script->name, r->type == REDIS_REPLY_ERROR ? r->str : "?");
    }

    memcpy(script->sha, r->str, 41);
    script->conn = sa_conn.conn;
    freeReplyObject(r);
}


void
sa_xscript_append(sa_admin_t *sa, sa_script_t *script, int nkeys,
    sa_args_t *args)
{
    sa_args_t       full;
    unsigned char   id[16];
    char            key[128], hex[33];
    int             i, change;

    sa_xscript_load(sa, script);

    /* the change key of common.lua, for settling a lost reply */
    change = sa_conn.url.nsentinels && nkeys == 0;
    if (change) {
        randombytes_buf(id, sizeof(id));
        sodium_bin2hex(hex, sizeof(hex), id, sizeof(id));
        snprintf(key, sizeof(key), "%schange:%s", sa->prefix, hex);
    }

    sa_args_init(&full);
    sa_args_add(&full, "EVALSHA");
    sa_args_add(&full, script->sha);
    sa_args_addf(&full, "%d", change ? 1 : nkeys);
    if (change) {
        sa_args_add(&full, key);
    }

    for (i = 0; i < args->n; i++) {
        sa_args_addn(&full, args->v[i], args->len[i]);
    }

    sa_send_argv(sa, &full, change ? script : NULL, change ? key : NULL);
    sa_conn.sent[sa_conn.n - 1].ours = 1;
    sa_args_free(&full);
}


void
sa_glob_escape(const char *s, char *out, size_t size)
{
    size_t  n = 0;

    for (; *s != '\0' && n + 2 < size; s++) {
        if (strchr("*?[]\\", *s) != NULL) {
            out[n++] = '\\';
        }
        out[n++] = *s;
    }

    if (size > 0) {
        out[n] = '\0';
    }
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
