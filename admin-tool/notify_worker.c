/*
 * sa-admin notify run: the delivery worker.
 *
 * Deliveries come from three places: new entries of the events stream,
 * read with a consumer group (each entry is one delivery: an event for one
 * destination of one subscription); entries another worker left pending
 * for longer than the reclaim time (XAUTOCLAIM: it died); and the retry
 * schedule, a sorted set of delivery ids by due time, from which a worker
 * leases what is due.  An entry is acknowledged (and the lease ended) only
 * after the receiver answered, in one script that also schedules the
 * retry or keeps the dead letter (notify_done.lua), so that nothing is
 * lost between the two.  Transfers run concurrently on libcurl's multi
 * interface; this loop alternates between Redis (short, or blocking only
 * while nothing is in flight) and curl.
 */

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <curl/curl.h>
#include <sodium.h>

#include "change.h"
#include "notify.h"
#include "redis.h"
#include "scripts.h"
#include "util.h"
#include "xalloc.h"

#define SA_TIMEOUT_MS        10000          /* contract: no answer in 10 s */
#define SA_BACKOFF_MS        1000.0         /* 1 s doubling ... */
#define SA_BACKOFF_CAP_MS    3600000.0      /* ... capped at 1 h ... */
#define SA_GIVE_UP_MS        86400000.0     /* ... for 24 h */
#define SA_RECLAIM_MS        60000.0        /* pending that long: reclaimed */
#define SA_RECLAIM_MIN_MS    500
#define SA_DRAIN_MS          5000.0         /* SIGTERM: finish, then hand back */
#define SA_EXPIRING_EVERY_MS 1000
#define SA_REPLY_MAX         65536

typedef enum {
    SA_DLV_OK,          /* 2xx */
    SA_DLV_DROP,        /* nothing to deliver any more: acknowledged */
    SA_DLV_RETRY,
    SA_DLV_DEAD,        /* kept for notify failed */
    SA_DLV_DISABLE,     /* 410: dead letter, and the subscription disabled */
    SA_DLV_HANDBACK     /* stopping: due again now, for any worker */
} sa_outcome_t;

static const char  *sa_outcome_names[] = {
    "ok", "drop", "retry", "dead", "disable", "handback"
};

typedef struct sa_dlv_s  sa_dlv_t;

struct sa_dlv_s {
    sa_dlv_t            *next;
    char                 id[80];        /* delivery id, the same every try */
    char                 entry[48];     /* stream entry; "" from the schedule */
    json_t              *fields;        /* the entry's fields */
    json_t              *state;         /* attempts, first_at, ... */
    const char          *app, *aid, *dest, *type;
    char                 team[80];
    char                 where[300];    /* the destination as shown */
    char                 refused[160];  /* why a connect was refused */
    int                  allow_private;
    CURL                *easy;
    struct curl_slist   *headers;
    char                *body;
    char                *url;
    long                 received;
    int64_t              started;
};

typedef struct {
    sa_admin_t          *sa;
    CURLM               *multi;
    char                 me[128];       /* consumer name */
    int                  conc;
    int                  inflight;
    int                  allow_private;
    sa_dlv_t            *list;
    double               scale;
    int64_t              reclaim_ms;
    int64_t              next_due;      /* when to look at the schedule */
    long                 delivered, failed;
} sa_worker_t;

static volatile sig_atomic_t  sa_stop;


static void
sa_on_signal(int sig)
{
    (void) sig;
    sa_stop = 1;
}


static int64_t
sa_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


static void
sa_log(sa_dlv_t *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* one line per delivery outcome: never a secret, never a full URL */
static void
sa_log(sa_dlv_t *d, const char *fmt, ...)
{
    va_list  ap;
    char     msg[512];

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    fprintf(stderr, "sa-notify: %s %s app=%s account=%s %s %s attempt %lld: "
            "%s\n", d->id, d->type ? d->type : "?", d->app ? d->app : "?",
            d->aid ? d->aid : "?", d->dest ? d->dest : "-",
            d->where[0] ? d->where : "-",
            (long long) json_integer_value(json_object_get(d->state,
                                                           "attempts")),
            msg);
}


static const char *
sa_field(json_t *fields, const char *name)
{
    return json_string_value(json_object_get(fields, name));
}


static void
sa_dlv_free(sa_dlv_t *d)
{
    if (d->easy) {
        curl_easy_cleanup(d->easy);
    }
    curl_slist_free_all(d->headers);
    if (d->url) {
        sodium_memzero(d->url, strlen(d->url));
        free(d->url);
    }
    free(d->body);
    json_decref(d->fields);
    json_decref(d->state);
    free(d);
}


/* ------------------------------------------------------------ Redis side */

static void
sa_worker_args(sa_worker_t *w, sa_args_t *args)
{
    sa_args_init(args);
    sa_args_add(args, w->sa->prefix);
    sa_args_add(args, "sa-notify");
    sa_args_addf(args, "%lld", (long long) sa_now());
}


/* runs one of the worker's scripts; exits 3 on an error reply */
static redisReply *
sa_worker_script(sa_worker_t *w, sa_script_t *script, sa_args_t *args)
{
    redisReply  *r;

    sa_xscript_append(w->sa, script, 0, args);
    sa_args_free(args);
    r = sa_xredis_reply(w->sa);

    if (r->type == REDIS_REPLY_ERROR) {
        sa_fail(SA_EXIT_UNAVAILABLE, "Redis refused %s: %s", script->name,
                r->str);
        exit(SA_EXIT_UNAVAILABLE);
    }

    return r;
}


static void
sa_dlv_finish(sa_worker_t *w, sa_dlv_t *d, sa_outcome_t outcome,
    int64_t due, const char *error)
{
    sa_args_t    args;
    redisReply  *r;
    char        *state = NULL;

    if (outcome != SA_DLV_OK && outcome != SA_DLV_DROP) {
        json_object_set_new(d->state, "id", json_string(d->id));
        json_object_set(d->state, "fields", d->fields);
        json_object_set_new(d->state, "app", json_string(d->app ?: ""));
        json_object_set_new(d->state, "account", json_string(d->aid ?: ""));
        json_object_set_new(d->state, "type", json_string(d->type ?: ""));
        json_object_set_new(d->state, "dest", json_string(d->dest ?: ""));
        json_object_set_new(d->state, "where", json_string(d->where));
        if (d->team[0]) {
            json_object_set_new(d->state, "team", json_string(d->team));
        }
        if (error) {
            json_object_set_new(d->state, "error", json_string(error));
        }
        if (outcome == SA_DLV_DEAD || outcome == SA_DLV_DISABLE) {
            json_object_set_new(d->state, "failed_at",
                                json_integer(sa_now()));
        }
        state = sa_xjson_dumps(d->state, JSON_COMPACT);
    }

    sa_worker_args(w, &args);
    sa_args_add(&args, sa_outcome_names[outcome]);
    sa_args_add(&args, d->entry);
    sa_args_add(&args, d->id);
    sa_args_add(&args, w->me);
    sa_args_add(&args, state ? state : "");
    sa_args_addf(&args, "%lld", (long long) due);
    sa_args_add(&args, d->app ?: "");
    sa_args_add(&args, d->aid ?: "");
    r = sa_worker_script(w, &sa_lua_notify_done, &args);

    /* a retry due sooner than the worker meant to look */
    if ((outcome == SA_DLV_RETRY || outcome == SA_DLV_HANDBACK)
        && due < w->next_due)
    {
        w->next_due = due;
    }

    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        sa_log(d, "no longer this worker's (reclaimed by another): "
               "outcome not recorded");
    }

    freeReplyObject(r);
    free(state);
}


/* a signed record's payload, verified with the verify key, as JSON */
static json_t *
sa_worker_record(sa_worker_t *w, const char *key, const char *kind,
    const char *id)
{
    redisReply  *r;
    const char  *payload;
    size_t       plen;
    json_t      *j = NULL;

    r = sa_xredis_cmd(w->sa, "GET %s", key);

    if (r->type == REDIS_REPLY_STRING
        && sa_envelope_open(r->str, r->len, sa_verify_key_or_exit(w->sa),
                            &payload, &plen) == SA_REC_OK)
    {
        j = json_loadb(payload, plen, 0, NULL);
        if (!json_is_object(j)
            || strcmp(json_string_value(json_object_get(j, "kind")) ?: "",
                      kind) != 0
            || strcmp(json_string_value(json_object_get(j, "id")) ?: "",
                      id) != 0)
        {
            json_decref(j);
            j = NULL;
        }
    }

    freeReplyObject(r);
    return j;
}


/* -------------------------------------------------------- what is sent */

/* an id that is the same for every delivery of one derived event */
static void
sa_derived_id(char out[37], const char *a, const char *b, const char *c)
{
    uint8_t  h[16];
    char     hex[33];
    crypto_generichash_state  st;

    crypto_generichash_init(&st, NULL, 0, sizeof(h));
    crypto_generichash_update(&st, (const uint8_t *) a, strlen(a) + 1);
    crypto_generichash_update(&st, (const uint8_t *) b, strlen(b) + 1);
    crypto_generichash_update(&st, (const uint8_t *) c, strlen(c) + 1);
    crypto_generichash_final(&st, h, sizeof(h));
    sa_hex_encode(h, sizeof(h), hex);
    snprintf(out, 37, "evt_%.32s", hex);
}


/*
 * The event of a delivery, as {"id", "type", "time", "team", "account",
 * "data"}: a signed envelope opened, or built from the verified token
 * record (token.expiring, token.denied).  NULL with *why set when there is
 * nothing to deliver; *dead set when that is a refusal to report.
 */
static json_t *
sa_event_of(sa_worker_t *w, sa_dlv_t *d, const char **why, int *dead)
{
    const char  *ev = sa_field(d->fields, "ev"), *tid, *payload;
    const char  *status, *exp_s;
    size_t       plen;
    json_t      *e, *rec, *acct, *data;
    char         eid[37], key[256];
    int64_t      exp, now = sa_now();

    *dead = 0;

    if (ev != NULL) {
        e = NULL;
        if (sa_envelope_open(ev, strlen(ev), sa_verify_key_or_exit(w->sa),
                             &payload, &plen) == SA_REC_OK)
        {
            e = json_loadb(payload, plen, 0, NULL);
        }
        if (!json_is_object(e)
            || strcmp(json_string_value(json_object_get(e, "kind")) ?: "",
                      "event") != 0
            || strcmp(json_string_value(json_object_get(e, "type")) ?: "",
                      d->type) != 0)
        {
            json_decref(e);
            *why = "the event's signature does not verify (not written by "
                   "sa-admin?)";
            *dead = 1;
            return NULL;
        }

        acct = json_object_get(e, "account");
        if (acct != NULL
            && strcmp(json_string_value(json_object_get(acct, "id")) ?: "",
                      d->aid) != 0)
        {
            json_decref(e);
            *why = "the event names another account";
            *dead = 1;
            return NULL;
        }

        if (acct == NULL) {
            /* an application's event: the subscriber's own account */
            snprintf(key, sizeof(key), "%s" SA_KEY_ACCOUNT "%s",
                     w->sa->prefix, d->aid);
            rec = sa_worker_record(w, key, "account", d->aid);
            if (rec == NULL) {
                json_decref(e);
                *why = "the account is gone";
                return NULL;
            }
            json_object_set_new(e, "team", json_string(
                json_string_value(json_object_get(rec, "team")) ?: ""));
            json_object_set_new(e, "account", json_pack("{s:O, s:O, s:O}",
                "id", json_object_get(rec, "id"),
                "name", json_object_get(rec, "name"),
                "email", json_object_get(rec, "email")));
            json_decref(rec);
        }

        return e;
    }

    /* token.expiring (from the expiry index), token.denied (gateway) */
    tid = sa_field(d->fields, "token");
    if (tid == NULL || !sa_token_id_valid(tid, strlen(tid))) {
        *why = "malformed entry";
        *dead = 1;
        return NULL;
    }

    snprintf(key, sizeof(key), "%s" SA_KEY_TOKEN "%s", w->sa->prefix, tid);
    rec = sa_worker_record(w, key, "token", tid);
    if (rec == NULL
        || strcmp(json_string_value(json_object_get(rec, "account")) ?: "",
                  d->aid) != 0)
    {
        json_decref(rec);
        *why = "the token record is gone or does not verify";
        return NULL;
    }

    exp = json_integer_value(json_object_get(rec, "expires_at"));

    if (strcmp(d->type, "token.expiring") == 0) {
        exp_s = sa_field(d->fields, "expires_at");
        if (json_is_true(json_object_get(rec, "revoked")) || exp <= now
            || exp_s == NULL || strtoll(exp_s, NULL, 10) != exp)
        {
            json_decref(rec);
            *why = "the token was revoked, expired or changed meanwhile";
            return NULL;
        }
        data = json_pack("{s:{s:s, s:O, s:o}, s:I}", "token", "id", tid,
                         "scopes", json_object_get(rec, "scopes"),
                         "expires_at", sa_time_json(exp),
                         "days_left", (json_int_t) ((exp - now + 86399)
                                                    / 86400));
        sa_derived_id(eid, "token.expiring", tid,
                      exp - now > 86400 ? "7d" : "1d");

    } else {
        status = sa_field(d->fields, "status") ?: "";
        data = json_pack("{s:{s:s, s:O, s:o}, s:s}", "token", "id", tid,
                         "scopes", json_object_get(rec, "scopes"),
                         "expires_at", sa_time_json(exp), "status", status);
        sa_derived_id(eid, "token.denied", tid,
                      sa_field(d->fields, "time") ?: "");
    }

    e = json_pack("{s:s, s:s, s:I, s:O, s:{s:O, s:O, s:O}, s:o}",
                  "id", eid, "type", d->type,
                  "time", (json_int_t) (strtoll(sa_field(d->fields, "time")
                                                ?: "0", NULL, 10) ?: now),
                  "team", json_object_get(rec, "team"),
                  "account", "id", json_object_get(rec, "account"),
                  "name", json_object_get(rec, "name"),
                  "email", json_object_get(rec, "email"),
                  "data", data);
    json_decref(rec);

    return e;
}


/* the webhook body: the contract's fields, in the contract's order */
static char *
sa_webhook_body(json_t *e, const char *app)
{
    char     t[SA_TIME_LEN];
    json_t  *body, *a = json_object_get(e, "account");
    char    *s;

    sa_time_format(json_integer_value(json_object_get(e, "time")), t);

    body = json_pack("{s:O, s:O, s:s, s:O, s:s, s:{s:O, s:O, s:O}, s:O}",
                     "id", json_object_get(e, "id"),
                     "type", json_object_get(e, "type"), "time", t,
                     "team", json_object_get(e, "team"),
                     "application", app,
                     "account", "id", json_object_get(a, "id"),
                     "name", json_object_get(a, "name"),
                     "email", json_object_get(a, "email"),
                     "data", json_object_get(e, "data"));
    s = sa_xjson_dumps(body, JSON_COMPACT);
    json_decref(body);

    return s;
}


/* Slack's mrkdwn: &, < and > escaped */
static void
sa_slack_escape(char *out, size_t size, const char *s)
{
    size_t  n = 0;

    for (; *s && n + 6 < size; s++) {
        n += snprintf(out + n, size - n, "%s",
                      *s == '&' ? "&amp;" : *s == '<' ? "&lt;"
                      : *s == '>' ? "&gt;" : (char[2]) { *s, 0 });
    }
    out[n] = '\0';
}


/* one readable line: what happened, to which account, in which app */
static char *
sa_slack_body(json_t *e, const char *app)
{
    const char  *type = json_string_value(json_object_get(e, "type"));
    json_t      *acct = json_object_get(e, "account");
    json_t      *data = json_object_get(e, "data");
    json_t      *tok = json_object_get(data, "token");
    char         who[256], line[1024], what[700], *list, *prev, *raw;
    const char  *tid = json_string_value(json_object_get(tok, "id")) ?: "?";
    const char  *exp = json_string_value(json_object_get(tok, "expires_at"));
    json_t      *body;
    char        *s;

    snprintf(who, sizeof(who), "service account *%s/%s*",
             json_string_value(json_object_get(e, "team")) ?: "?",
             json_string_value(json_object_get(acct, "name")) ?: "?");

    list = sa_join(json_object_get(tok, "scopes"), ", ");

    if (strcmp(type, "token.issued") == 0) {
        snprintf(what, sizeof(what), "Token `%s` was issued for %s (scopes: "
                 "%s; expires: %s)", tid, who, list, exp ? exp : "never");
    } else if (strcmp(type, "token.rescoped") == 0) {
        snprintf(what, sizeof(what), "Token `%s` of %s now has scopes %s",
                 tid, who, list);
    } else if (strcmp(type, "token.rotated") == 0) {
        snprintf(what, sizeof(what), "Token `%s` of %s was rotated; it is "
                 "replaced by `%s`", json_string_value(json_object_get(data,
                 "rotated_from")) ?: "?", who, tid);
    } else if (strcmp(type, "token.revoked") == 0) {
        snprintf(what, sizeof(what), "Token `%s` of %s was revoked", tid,
                 who);
    } else if (strcmp(type, "token.expiring") == 0) {
        snprintf(what, sizeof(what), "Token `%s` of %s expires at %s (in "
                 "%lld day%s)", tid, who, exp ? exp : "?",
                 (long long) json_integer_value(json_object_get(data,
                                                                "days_left")),
                 json_integer_value(json_object_get(data, "days_left")) == 1
                 ? "" : "s");
    } else if (strcmp(type, "token.denied") == 0) {
        snprintf(what, sizeof(what), "The gateway refused token `%s` of %s: "
                 "%s", tid, who, json_string_value(json_object_get(data,
                 "status")) ?: "?");
    } else if (strcmp(type, "account.granted") == 0
               || strcmp(type, "account.ungranted") == 0)
    {
        free(list);
        list = sa_join(json_object_get(data, "apps"), ", ");
        prev = sa_join(json_object_get(data, "previous_apps"), ", ");
        snprintf(what, sizeof(what), "The grants of %s changed from %s to %s",
                 who, prev, list);
        free(prev);
    } else if (strcmp(type, "account.deleted") == 0) {
        snprintf(what, sizeof(what), "%c%s was deleted; its tokens are "
                 "revoked", 'S', who + 1);
    } else if (strcmp(type, "ping") == 0) {
        snprintf(what, sizeof(what), "Test notification for %s", who);
    } else {
        raw = sa_xjson_dumps(data, JSON_COMPACT);
        snprintf(what, sizeof(what), "Event `%s` for %s: %.200s%s", type,
                 who, raw, strlen(raw) > 200 ? "..." : "");
        free(raw);
    }
    free(list);

    snprintf(line, sizeof(line), "%s, in application *%s*", what, app);
    sa_slack_escape(what, sizeof(what), line);

    body = json_pack("{s:s}", "text", what);
    s = sa_xjson_dumps(body, JSON_COMPACT);
    json_decref(body);

    return s;
}


/* X-SA-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")> */
static void
sa_signature(char *out, size_t size, const char *secret, const char *body)
{
    crypto_auth_hmacsha256_state  st;
    uint8_t                       mac[crypto_auth_hmacsha256_BYTES];
    char                          t[24], hex[sizeof(mac) * 2 + 1];

    snprintf(t, sizeof(t), "%lld", (long long) sa_now());

    crypto_auth_hmacsha256_init(&st, (const uint8_t *) secret,
                                strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *) t, strlen(t));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *) ".", 1);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *) body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));

    sa_hex_encode(mac, sizeof(mac), hex);
    hex[sizeof(hex) - 1] = '\0';
    snprintf(out, size, "X-SA-Signature: t=%s,v1=%s", t, hex);
}


/* -------------------------------------------------------------- SSRF */

/* NULL when the address may be connected to, else what kind it is */
static const char *
sa_addr_forbidden(int family, const void *addr)
{
    const uint8_t  *a;
    uint32_t        v4;

    if (family == AF_INET6) {
        a = ((const struct in6_addr *) addr)->s6_addr;

        /* ::ffff:a.b.c.d is an IPv4 address */
        if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *) addr)) {
            return sa_addr_forbidden(AF_INET, a + 12);
        }
        if (IN6_IS_ADDR_LOOPBACK((const struct in6_addr *) addr)) {
            return "loopback";
        }
        if (IN6_IS_ADDR_UNSPECIFIED((const struct in6_addr *) addr)) {
            return "unspecified";
        }
        if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) {
            return "link-local";
        }
        if ((a[0] & 0xfe) == 0xfc) {
            return "private";
        }
        if (a[0] == 0xff) {
            return "multicast";
        }
        return NULL;
    }

    if (family != AF_INET) {
        return "not an IP";
    }

    memcpy(&v4, addr, 4);
    v4 = ntohl(v4);

    if ((v4 >> 24) == 127) {
        return "loopback";
    }
    if ((v4 >> 24) == 10 || (v4 >> 20) == 0xac1 || (v4 >> 16) == 0xc0a8
        || (v4 >> 22) == (100 << 2 | 1))        /* 100.64/10, shared */
    {
        return "private";
    }
    if ((v4 >> 16) == 0xa9fe) {
        return "link-local";
    }
    if ((v4 >> 28) == 0xe) {
        return "multicast";
    }
    if ((v4 >> 24) == 0 || (v4 >> 28) == 0xf) {
        return "reserved";
    }

    return NULL;
}


/*
 * curl calls this for every socket it is about to connect, with the
 * address it resolved: the check is on the address actually connected to,
 * so a name that resolves differently on a second look cannot get around
 * it.
 */
static curl_socket_t
sa_open_socket(void *data, curlsocktype purpose, struct curl_sockaddr *sa)
{
    sa_dlv_t    *d = data;
    const char  *why = NULL;
    const void  *addr = NULL;
    char         ip[INET6_ADDRSTRLEN] = "?";

    (void) purpose;

    if (sa->family == AF_INET) {
        addr = &((struct sockaddr_in *) &sa->addr)->sin_addr;
    } else if (sa->family == AF_INET6) {
        addr = &((struct sockaddr_in6 *) &sa->addr)->sin6_addr;
    }

    why = addr ? sa_addr_forbidden(sa->family, addr) : "not an IP";

    if (why != NULL && !d->allow_private) {
        if (addr) {
            inet_ntop(sa->family, addr, ip, sizeof(ip));
        }
        snprintf(d->refused, sizeof(d->refused), "refused: %s is a %s "
                 "address (--allow-private allows it)", ip, why);
        return CURL_SOCKET_BAD;
    }

    return socket(sa->family, sa->socktype, sa->protocol);
}


static size_t
sa_discard(char *p, size_t size, size_t n, void *data)
{
    sa_dlv_t  *d = data;

    (void) p;
    d->received += size * n;

    /* an answer is judged by its status; a huge body is cut off */
    return d->received > SA_REPLY_MAX ? 0 : size * n;
}


/* ------------------------------------------------------ one delivery */

static int
sa_takes(json_t *events, const char *type)
{
    size_t   i;
    json_t  *v;

    json_array_foreach(events, i, v) {
        if (strcmp(json_string_value(v) ?: "", "*") == 0
            || strcmp(json_string_value(v) ?: "", type) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/* expands a gateway's token.denied entry into deliveries */
static void
sa_expand(sa_worker_t *w, const char *entry, json_t *fields)
{
    const char  *tid = sa_field(fields, "token"), *app = sa_field(fields,
                                                                  "app");
    json_t      *rec = NULL;
    char         key[256];
    sa_args_t    args;

    if (tid && sa_token_id_valid(tid, strlen(tid)) && app
        && sa_app_valid(app, strlen(app)))
    {
        snprintf(key, sizeof(key), "%s" SA_KEY_TOKEN "%s", w->sa->prefix,
                 tid);
        rec = sa_worker_record(w, key, "token", tid);
    }

    sa_worker_args(w, &args);
    sa_args_add(&args, entry);
    sa_args_add(&args, w->me);
    sa_args_add(&args, app ?: "");
    sa_args_add(&args, rec ? json_string_value(json_object_get(rec,
                                                               "account"))
                           : "");
    sa_args_add(&args, tid ?: "");
    sa_args_add(&args, sa_field(fields, "status") ?: "");
    sa_args_add(&args, sa_field(fields, "time") ?: "");
    freeReplyObject(sa_worker_script(w, &sa_lua_notify_expand, &args));

    json_decref(rec);
}


/*
 * Everything up to the request: the subscription unsealed, the event
 * verified, the body and headers.  Returns 0 when the transfer was
 * started; otherwise the delivery is finished here.
 */
static int
sa_dlv_start(sa_worker_t *w, sa_dlv_t *d)
{
    redisReply   *r = NULL;
    json_t       *sub = NULL, *priv = NULL, *e = NULL;
    const char   *subtext, *why = NULL, *secret, *url;
    char         *plain = NULL, hdr[256], key[256];
    int           dead = 0;
    int64_t       attempts;

    d->app = sa_field(d->fields, "app");
    d->aid = sa_field(d->fields, "account");
    d->dest = sa_field(d->fields, "dest");
    d->type = sa_field(d->fields, "type");

    if (d->app == NULL || d->aid == NULL || d->dest == NULL
        || d->type == NULL)
    {
        why = "malformed entry";
        dead = 1;
        goto done;
    }

    /* the subscription: its copy in the entry (its last event), or now */
    subtext = sa_field(d->fields, "sub");
    if (subtext == NULL) {
        snprintf(key, sizeof(key), "%s" SA_KEY_NOTIFY "%s", w->sa->prefix,
                 d->app);
        r = sa_xredis_cmd(w->sa, "HGET %s %s", key, d->aid);
        subtext = r->type == REDIS_REPLY_STRING ? r->str : NULL;
    }
    if (subtext == NULL) {
        why = "dropped: the subscription was removed";
        goto done;
    }

    sub = json_loads(subtext, 0, NULL);
    snprintf(d->where, sizeof(d->where), "%s",
             json_string_value(json_object_get(sub, d->dest)) ?: "");
    if (json_integer_value(json_object_get(sub, "disabled_at"))
        && sa_field(d->fields, "sub") == NULL)
    {
        why = "dropped: the subscription is disabled (it answered 410)";
        goto done;
    }

    plain = sa_unseal(sa_notify_key_or_exit(),
                      json_string_value(json_object_get(sub, "sealed")));
    priv = plain ? json_loads(plain, 0, NULL) : NULL;
    if (priv == NULL
        || strcmp(json_string_value(json_object_get(priv, "app")) ?: "",
                  d->app) != 0
        || strcmp(json_string_value(json_object_get(priv, "account")) ?: "",
                  d->aid) != 0)
    {
        why = "not delivered: the subscription cannot be unsealed with this "
              "notify key (tampered?)";
        dead = 1;
        goto done;
    }

    if (strcmp(d->type, "ping") != 0
        && !sa_takes(json_object_get(priv, "events"), d->type))
    {
        why = "dropped: the subscription does not take this event";
        goto done;
    }

    url = json_string_value(json_object_get(priv, d->dest));
    secret = json_string_value(json_object_get(priv, "secret"));
    if (url == NULL || (strcmp(d->dest, "webhook") == 0 && secret == NULL)) {
        why = "dropped: the subscription has no such destination";
        goto done;
    }

    e = sa_event_of(w, d, &why, &dead);
    if (e == NULL) {
        goto done;
    }
    snprintf(d->team, sizeof(d->team), "%s",
             json_string_value(json_object_get(e, "team")) ?: "");

    d->url = sa_xstrdup(url);
    d->headers = curl_slist_append(NULL, "Content-Type: application/json");

    if (strcmp(d->dest, "slack") == 0) {
        d->body = sa_slack_body(e, d->app);

    } else {
        d->body = sa_webhook_body(e, d->app);
        snprintf(hdr, sizeof(hdr), "X-SA-Event: %s", d->type);
        d->headers = curl_slist_append(d->headers, hdr);
        snprintf(hdr, sizeof(hdr), "X-SA-Delivery: %s", d->id);
        d->headers = curl_slist_append(d->headers, hdr);
        sa_signature(hdr, sizeof(hdr), secret, d->body);
        d->headers = curl_slist_append(d->headers, hdr);
    }
    d->headers = curl_slist_append(d->headers, "Expect:");

    d->easy = curl_easy_init();
    if (d->easy == NULL || d->headers == NULL) {
        sa_fail(SA_EXIT_UNAVAILABLE, "out of memory");
        exit(SA_EXIT_UNAVAILABLE);
    }

    curl_easy_setopt(d->easy, CURLOPT_URL, d->url);
    curl_easy_setopt(d->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(d->easy, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(d->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(d->body));
    curl_easy_setopt(d->easy, CURLOPT_HTTPHEADER, d->headers);
    curl_easy_setopt(d->easy, CURLOPT_USERAGENT, "sa-notify/0.3");
    curl_easy_setopt(d->easy, CURLOPT_TIMEOUT_MS, (long) SA_TIMEOUT_MS);
    curl_easy_setopt(d->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(d->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(d->easy, CURLOPT_PROXY, "");
    curl_easy_setopt(d->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(d->easy, CURLOPT_OPENSOCKETFUNCTION, sa_open_socket);
    curl_easy_setopt(d->easy, CURLOPT_OPENSOCKETDATA, d);
    curl_easy_setopt(d->easy, CURLOPT_WRITEFUNCTION, sa_discard);
    curl_easy_setopt(d->easy, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(d->easy, CURLOPT_PRIVATE, d);

    attempts = json_integer_value(json_object_get(d->state, "attempts"));
    json_object_set_new(d->state, "attempts", json_integer(attempts + 1));
    d->allow_private = w->allow_private;
    d->started = sa_ms();

    curl_multi_add_handle(w->multi, d->easy);
    d->next = w->list;
    w->list = d;
    w->inflight++;

done:

    if (plain) {
        sodium_memzero(plain, strlen(plain));
        free(plain);
    }
    if (priv) {
        /* jansson keeps its strings: wipe the secret before freeing */
        json_t  *s = json_object_get(priv, "secret");
        if (json_is_string(s)) {
            sodium_memzero((char *) json_string_value(s),
                           json_string_length(s));
        }
        json_decref(priv);
    }
    json_decref(sub);
    json_decref(e);
    freeReplyObject(r);

    if (d->easy != NULL) {
        return 0;
    }

    sa_log(d, "%s", why);
    sa_dlv_finish(w, d, dead ? SA_DLV_DEAD : SA_DLV_DROP, 0, why);
    if (dead) {
        w->failed++;
    }
    sa_dlv_free(d);
    return -1;
}


static int
sa_in_flight(sa_worker_t *w, const char *id)
{
    sa_dlv_t  *d;

    for (d = w->list; d != NULL; d = d->next) {
        if (strcmp(d->id, id) == 0) {
            return 1;
        }
    }

    return 0;
}


/* a stream entry ([id, [field, value, ...]]) becomes a delivery */
static int
sa_take_entry(sa_worker_t *w, redisReply *entry)
{
    sa_dlv_t    *d;
    redisReply  *kv;
    json_t      *fields;
    size_t       i;
    char         id[80];

    if (entry == NULL || entry->type != REDIS_REPLY_ARRAY
        || entry->elements != 2 || entry->element[0]->type
           != REDIS_REPLY_STRING)
    {
        return 0;
    }

    snprintf(id, sizeof(id), "dlv_%s", entry->element[0]->str);
    if (sa_in_flight(w, id)) {
        return 0;
    }

    kv = entry->element[1];
    fields = json_object();
    for (i = 0; kv->type == REDIS_REPLY_ARRAY && i + 1 < kv->elements;
         i += 2)
    {
        json_object_set_new(fields, kv->element[i]->str,
                            json_stringn(kv->element[i + 1]->str,
                                         kv->element[i + 1]->len));
    }

    /* the gateway's token.denied: no destination yet */
    if (sa_field(fields, "dest") == NULL
        && strcmp(sa_field(fields, "type") ?: "", "token.denied") == 0)
    {
        sa_expand(w, entry->element[0]->str, fields);
        json_decref(fields);
        return 1;
    }

    d = sa_xcalloc(1, sizeof(*d));
    snprintf(d->id, sizeof(d->id), "%s", id);
    snprintf(d->entry, sizeof(d->entry), "%s", entry->element[0]->str);
    d->fields = fields;
    d->state = json_pack("{s:i, s:I}", "attempts", 0,
                         "first_at", (json_int_t) sa_ms());
    sa_dlv_start(w, d);

    return 1;
}


/* a leased retry ([delivery id, state]) becomes a delivery */
static int
sa_take_retry(sa_worker_t *w, const char *id, const char *state)
{
    sa_dlv_t  *d;
    json_t    *st;

    if (sa_in_flight(w, id)) {
        return 0;
    }

    st = json_loads(state, 0, NULL);
    if (!json_is_object(st) || !json_is_object(json_object_get(st,
                                                               "fields")))
    {
        json_decref(st);
        st = json_pack("{s:{}, s:i, s:I}", "fields", "attempts", 0,
                       "first_at", (json_int_t) sa_ms());
    }

    d = sa_xcalloc(1, sizeof(*d));
    snprintf(d->id, sizeof(d->id), "%s", id);
    d->fields = json_incref(json_object_get(st, "fields"));
    d->state = st;
    sa_dlv_start(w, d);

    return 1;
}


static void
sa_unlink(sa_worker_t *w, sa_dlv_t *d)
{
    sa_dlv_t  **p;

    for (p = &w->list; *p != NULL; p = &(*p)->next) {
        if (*p == d) {
            *p = d->next;
            break;
        }
    }

    curl_multi_remove_handle(w->multi, d->easy);
    w->inflight--;
}


static int64_t
sa_backoff(sa_worker_t *w, int64_t attempts)
{
    double  step = SA_BACKOFF_MS * pow(2.0, (double) (attempts - 1));

    if (step > SA_BACKOFF_CAP_MS) {
        step = SA_BACKOFF_CAP_MS;
    }
    step *= w->scale;

    /* jitter: between half and all of the step */
    return (int64_t) (step / 2 + step / 2 * (randombytes_uniform(1000001)
                                             / 1000000.0));
}


static void
sa_dlv_done(sa_worker_t *w, sa_dlv_t *d, CURLcode res)
{
    long     status = 0;
    int64_t  now = sa_ms(), took = now - d->started, delay, attempts;
    int64_t  first;
    char     err[256];

    sa_unlink(w, d);
    curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &status);
    attempts = json_integer_value(json_object_get(d->state, "attempts"));
    first = json_integer_value(json_object_get(d->state, "first_at"));

    if (res == CURLE_OK && status >= 200 && status < 300) {
        sa_log(d, "delivered (HTTP %ld, %lld ms)", status, (long long) took);
        sa_dlv_finish(w, d, SA_DLV_OK, 0, NULL);
        w->delivered++;

    } else if (res == CURLE_OK && status == 410) {
        sa_log(d, "HTTP 410 Gone: subscription disabled, delivery kept for "
               "'notify failed'");
        sa_dlv_finish(w, d, SA_DLV_DISABLE, 0, "HTTP 410 Gone: subscription "
                      "disabled");
        w->failed++;

    } else if (d->refused[0]) {
        sa_log(d, "%s; kept for 'notify failed'", d->refused);
        sa_dlv_finish(w, d, SA_DLV_DEAD, 0, d->refused);
        w->failed++;

    } else {
        if (res == CURLE_OK) {
            snprintf(err, sizeof(err), "HTTP %ld", status);
        } else {
            snprintf(err, sizeof(err), "%s", curl_easy_strerror(res));
        }

        if (now - first >= SA_GIVE_UP_MS * w->scale) {
            sa_log(d, "failed (%s); gave up after %lld attempts: kept for "
                   "'notify failed'", err, (long long) attempts);
            sa_dlv_finish(w, d, SA_DLV_DEAD, 0, err);
            w->failed++;

        } else {
            delay = sa_backoff(w, attempts);
            sa_log(d, "failed (%s); retry in %.3f s", err, delay / 1000.0);
            sa_dlv_finish(w, d, SA_DLV_RETRY, now + delay, err);
        }
    }

    sa_dlv_free(d);
}


/* ------------------------------------------------------------ the loop */

static int
sa_read_new(sa_worker_t *w, long block_ms)
{
    redisReply  *r, *entries;
    size_t       i;
    int          n = 0;
    char         key[256];

    snprintf(key, sizeof(key), "%s" SA_KEY_EVENTS, w->sa->prefix);

    if (block_ms > 0) {
        r = sa_xredis_cmd(w->sa, "XREADGROUP GROUP %s %s COUNT %d BLOCK %ld "
                          "STREAMS %s >", SA_NOTIFY_GROUP, w->me,
                          w->conc - w->inflight, block_ms, key);
    } else {
        r = sa_xredis_cmd(w->sa, "XREADGROUP GROUP %s %s COUNT %d STREAMS "
                          "%s >", SA_NOTIFY_GROUP, w->me,
                          w->conc - w->inflight, key);
    }

    if (r->type == REDIS_REPLY_ERROR) {
        sa_fail(SA_EXIT_UNAVAILABLE, "XREADGROUP: %s", r->str);
        exit(SA_EXIT_UNAVAILABLE);
    }

    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1
        && r->element[0]->elements == 2)
    {
        entries = r->element[0]->element[1];
        for (i = 0; i < entries->elements; i++) {
            n += sa_take_entry(w, entries->element[i]);
        }
    }

    freeReplyObject(r);
    return n;
}


/* entries a dead worker left pending: XAUTOCLAIM */
static int
sa_reclaim(sa_worker_t *w)
{
    redisReply  *r;
    size_t       i;
    int          n = 0;
    char         key[256];

    snprintf(key, sizeof(key), "%s" SA_KEY_EVENTS, w->sa->prefix);
    r = sa_xredis_cmd(w->sa, "XAUTOCLAIM %s %s %s %lld 0-0 COUNT %d", key,
                      SA_NOTIFY_GROUP, w->me, (long long) w->reclaim_ms,
                      w->conc - w->inflight);

    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2
        && r->element[1]->type == REDIS_REPLY_ARRAY)
    {
        for (i = 0; i < r->element[1]->elements; i++) {
            if (sa_take_entry(w, r->element[1]->element[i])) {
                n++;
                fprintf(stderr, "sa-notify: reclaimed %s from a worker that "
                        "stopped answering\n",
                        r->element[1]->element[i]->element[0]->str);
            }
        }
    }

    freeReplyObject(r);
    return n;
}


static int
sa_claim_due(sa_worker_t *w)
{
    sa_args_t    args;
    redisReply  *r;
    size_t       i;
    int          n = 0;

    sa_worker_args(w, &args);
    sa_args_add(&args, w->me);
    sa_args_addf(&args, "%lld", (long long) sa_ms());
    sa_args_addf(&args, "%lld", (long long) w->reclaim_ms);
    sa_args_addf(&args, "%d", w->conc - w->inflight);
    r = sa_worker_script(w, &sa_lua_notify_claim, &args);

    for (i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        n += sa_take_retry(w, r->element[i]->str, r->element[i + 1]->str);
    }

    freeReplyObject(r);
    return n;
}


/* the next retry due, in ms from now (a large number when none) */
static int64_t
sa_next_due(sa_worker_t *w)
{
    redisReply  *r;
    int64_t      wait = INT64_MAX / 2;

    r = sa_xredis_cmd(w->sa, "ZRANGE %s 0 0 WITHSCORES",
                      sa_key(w->sa, SA_KEY_DUE, NULL));
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        wait = (int64_t) strtoll(r->element[1]->str, NULL, 10) - sa_ms();
    }
    freeReplyObject(r);

    return wait;
}


static void
sa_expiring(sa_worker_t *w)
{
    sa_args_t  args;

    sa_worker_args(w, &args);
    sa_args_add(&args, "1000");
    freeReplyObject(sa_worker_script(w, &sa_lua_notify_expiring, &args));
}


static void
sa_curl_step(sa_worker_t *w, int wait_ms)
{
    CURLMsg   *m;
    sa_dlv_t  *d;
    int        running, left;

    curl_multi_perform(w->multi, &running);

    while ((m = curl_multi_info_read(w->multi, &left)) != NULL) {
        if (m->msg == CURLMSG_DONE) {
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **) &d);
            sa_dlv_done(w, d, m->data.result);
        }
    }

    if (wait_ms > 0 && w->inflight > 0) {
        curl_multi_poll(w->multi, NULL, 0, wait_ms, NULL);
    }
}


/* stopping: what is still in flight goes back to the schedule, due now */
static void
sa_hand_back(sa_worker_t *w)
{
    sa_dlv_t  *d;
    int64_t    attempts;

    while ((d = w->list) != NULL) {
        sa_unlink(w, d);
        attempts = json_integer_value(json_object_get(d->state, "attempts"));
        json_object_set_new(d->state, "attempts", json_integer(attempts - 1));
        sa_log(d, "handed back (stopping)");
        sa_dlv_finish(w, d, SA_DLV_HANDBACK, sa_ms(), "handed back");
        sa_dlv_free(d);
    }
}


static void
sa_worker_init(sa_worker_t *w, sa_admin_t *sa, int allow_private, int conc)
{
    const char  *scale = getenv("SA_NOTIFY_TIME_SCALE");
    char         host[64] = "host", rnd[9];
    redisReply  *r;

    memset(w, 0, sizeof(*w));
    w->sa = sa;
    w->conc = conc;
    w->allow_private = allow_private;
    w->scale = scale && *scale ? strtod(scale, NULL) : 1.0;
    if (!(w->scale > 0 && w->scale <= 1000)) {
        exit(sa_fail(SA_EXIT_USAGE, "invalid SA_NOTIFY_TIME_SCALE '%s'",
                     scale));
    }
    w->reclaim_ms = (int64_t) (SA_RECLAIM_MS * w->scale);
    if (w->reclaim_ms < SA_RECLAIM_MIN_MS) {
        w->reclaim_ms = SA_RECLAIM_MIN_MS;
    }

    gethostname(host, sizeof(host) - 1);
    sa_random_base62(rnd, 8);
    rnd[8] = '\0';
    snprintf(w->me, sizeof(w->me), "%s:%ld:%s", host, (long) getpid(), rnd);

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK
        || (w->multi = curl_multi_init()) == NULL)
    {
        exit(sa_fail(SA_EXIT_UNAVAILABLE, "libcurl failed to start"));
    }
    curl_multi_setopt(w->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) conc);

    /* from 0: whatever was queued before the first worker ever ran */
    r = sa_xredis_cmd(sa, "XGROUP CREATE %s %s 0 MKSTREAM",
                      sa_key(sa, SA_KEY_EVENTS, NULL), SA_NOTIFY_GROUP);
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
        exit(sa_fail(SA_EXIT_UNAVAILABLE, "XGROUP CREATE: %s", r->str));
    }
    freeReplyObject(r);
}


int
sa_notify_run(sa_admin_t *sa, int once, int allow_private, int concurrency)
{
    sa_worker_t        w;
    struct sigaction   act;
    int64_t            now, next_reclaim = 0, next_exp = 0;
    int64_t            stop_at = 0, wait;
    long               block;
    int                got;
    redisReply        *r;

    sa_worker_init(&w, sa, allow_private, concurrency);

    memset(&act, 0, sizeof(act));
    act.sa_handler = sa_on_signal;
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    signal(SIGPIPE, SIG_IGN);

    fprintf(stderr, "sa-notify: worker %s started (concurrency %d%s%s)\n",
            w.me, w.conc, allow_private ? ", private destinations allowed"
                                        : "", once ? ", once" : "");

    for ( ;; ) {
        now = sa_ms();
        got = 0;

        if (sa_stop) {
            if (stop_at == 0) {
                stop_at = now + (SA_DRAIN_MS * w.scale < SA_RECLAIM_MIN_MS
                                 ? SA_RECLAIM_MIN_MS
                                 : (int64_t) (SA_DRAIN_MS * w.scale));
                fprintf(stderr, "sa-notify: stopping: finishing %d "
                        "deliveries in flight\n", w.inflight);
            }
            if (w.inflight == 0) {
                break;
            }
            if (now >= stop_at) {
                sa_hand_back(&w);
                break;
            }
            sa_curl_step(&w, 50);
            continue;
        }

        if (now >= next_exp) {
            sa_expiring(&w);
            next_exp = now + SA_EXPIRING_EVERY_MS;
        }

        if (w.inflight < w.conc && now >= next_reclaim) {
            got += sa_reclaim(&w);
            next_reclaim = now + (w.reclaim_ms / 2 < 1000 ? w.reclaim_ms / 2
                                                          : 1000);
        }

        if (w.inflight < w.conc && now >= w.next_due) {
            got += sa_claim_due(&w);
            wait = sa_next_due(&w);
            w.next_due = now + (wait < 1 ? 1 : wait > 1000 ? 1000 : wait);
        }

        if (w.inflight < w.conc) {
            block = 0;
            if (w.inflight == 0 && !once) {
                wait = w.next_due - sa_ms();
                if (next_reclaim - sa_ms() < wait) {
                    wait = next_reclaim - sa_ms();
                }
                block = wait < 1 ? 1 : wait > 500 ? 500 : (long) wait;
            }
            got += sa_read_new(&w, block);
        }

        if (once && got == 0 && w.inflight == 0 && sa_next_due(&w) > 0) {
            break;
        }

        sa_curl_step(&w, w.inflight >= w.conc ? 100 : 5);
    }

    /* its name goes from the group, unless something is still pending
       under it (deleting it would make that unclaimable) */
    r = sa_xredis_cmd(sa, "XPENDING %s %s - + 1 %s",
                      sa_key(sa, SA_KEY_EVENTS, NULL), SA_NOTIFY_GROUP, w.me);
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 0) {
        freeReplyObject(sa_xredis_cmd(sa, "XGROUP DELCONSUMER %s %s %s",
                                      sa_key(sa, SA_KEY_EVENTS, NULL),
                                      SA_NOTIFY_GROUP, w.me));
    }
    freeReplyObject(r);
    fprintf(stderr, "sa-notify: worker %s stopped: %ld delivered, %ld "
            "failed for good\n", w.me, w.delivered, w.failed);

    curl_multi_cleanup(w.multi);
    curl_global_cleanup();

    return SA_EXIT_OK;
}
