/*
 * sa-admin notify run, the delivery worker: what its files share.
 *
 *   notify_worker.c    the loop: where deliveries come from, curl's turn
 *   notify_delivery.c  one delivery: from a stream entry or a retry to an
 *                      outcome
 *   notify_store.c     the Redis side: scripts, outcomes, verified records
 *   notify_render.c    what is sent: events built, bodies, the signature
 *                      (pure: unit tested in t/unit/test_notify_render.c)
 *   notify_ssrf.c      which addresses may be connected to (pure: unit
 *                      tested in t/unit/test_notify_ssrf.c)
 */

#ifndef SA_ADMIN_NOTIFY_WORKER_H
#define SA_ADMIN_NOTIFY_WORKER_H

#include <stdint.h>
#include <curl/curl.h>
#include <jansson.h>
#include <hiredis/hiredis.h>

#include "notify.h"
#include "redis.h"

#define SA_TIMEOUT_MS        10000          /* contract: no answer in 10 s */
#define SA_BACKOFF_MS        1000.0         /* 1 s doubling ... */
#define SA_BACKOFF_CAP_MS    3600000.0      /* ... capped at 1 h ... */
#define SA_GIVE_UP_MS        86400000.0     /* ... for 24 h */
#define SA_RECLAIM_MS        60000.0        /* pending that long: reclaimed */
#define SA_RECLAIM_MIN_MS    500
#define SA_DRAIN_MS          5000.0         /* SIGTERM: finish, then hand back */
#define SA_EXPIRING_EVERY_MS 1000
#define SA_DEFER_MS          1000.0         /* its origin busy: again then */
#define SA_REPLY_MAX         65536          /* of an answer's body, read */
#define SA_EVENT_MAX_AGE     (48 * 3600)    /* s: older is not delivered */
#define SA_EVENT_MAX_SKEW    300            /* s: a clock ahead of ours */
#define SA_SEEN_MS           (49 * 3600 * 1000LL)   /* dedupe: > max age */
#define SA_DENIED_EVERY      60             /* s: token.denied per token */
#define SA_EXPIRING_FIRST    (7 * 86400)    /* the first notice, before */

typedef enum {
    SA_DLV_OK,          /* 2xx */
    SA_DLV_DROP,        /* nothing to deliver any more: acknowledged */
    SA_DLV_RETRY,
    SA_DLV_DEAD,        /* kept for notify failed */
    SA_DLV_DISABLE,     /* 410: dead letter, and the subscription disabled */
    SA_DLV_HANDBACK     /* stopping: due again now, for any worker */
} sa_outcome_t;

typedef struct sa_dlv_s  sa_dlv_t;

struct sa_dlv_s {
    sa_dlv_t            *next;
    char                 id[80];        /* delivery id, the same every try */
    char                 entry[48];     /* stream entry; "" from the schedule */
    char                 sched[80];     /* its key in the schedule, or "" */
    json_t              *fields;        /* the entry's fields */
    json_t              *state;         /* attempts, first_at, ... */
    const char          *app, *aid, *dest, *type;
    char                 team[80];
    char                 where[300];    /* the destination as shown */
    char                 refused[160];  /* why a connect was refused */
    char                 origin[256];   /* scheme://host[:port], counted */
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
    int                  per_dest;      /* in flight to one origin, at most */
    int                  inflight;
    int                  allow_private;
    sa_dlv_t            *list;
    double               scale;
    int64_t              reclaim_ms;
    int64_t              next_due;      /* when to look at the schedule */
    long                 delivered, failed;
} sa_worker_t;


/* notify_delivery.c */
int64_t sa_ms(void);
const char *sa_field(json_t *fields, const char *name);
void sa_log(sa_dlv_t *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void sa_dlv_free(sa_dlv_t *d);

/* 0 when the transfer was started; otherwise the delivery is finished */
int sa_dlv_start(sa_worker_t *w, sa_dlv_t *d);

/* the answer (or its absence) decides the outcome */
void sa_dlv_done(sa_worker_t *w, sa_dlv_t *d, CURLcode res);

/* a delivery of that id is in flight here */
int sa_in_flight(sa_worker_t *w, const char *id);

/* takes d off the worker's list and curl's */
void sa_unlink(sa_worker_t *w, sa_dlv_t *d);


/* notify_store.c */
void sa_worker_args(sa_worker_t *w, sa_args_t *args);
redisReply *sa_worker_script(sa_worker_t *w, sa_script_t *script,
    sa_args_t *args);
void sa_dlv_finish(sa_worker_t *w, sa_dlv_t *d, sa_outcome_t outcome,
    int64_t due, const char *error);

/* the account's record, verified (records.c: sa_record_get); NULL: none */
json_t *sa_worker_account(sa_worker_t *w, const char *aid);

/* a token record, verified and parsed by the core parser; free() it */
sa_token_record_t *sa_worker_token(sa_worker_t *w, const char *tid);

/*
 * NULL when the delivery may go out now; else why not: this event went to
 * this destination already (notify_seen.lua), or tid's token.denied went
 * there less than a minute ago
 */
const char *sa_dlv_may_go(sa_worker_t *w, sa_dlv_t *d, const char *tid);

/* a gateway's token.denied entry becomes deliveries */
void sa_expand(sa_worker_t *w, const char *entry, json_t *fields);

/* the next retry due, in ms from now (a large number when none) */
int64_t sa_next_due(sa_worker_t *w);

/* queues the token.expiring notices that are due */
void sa_expiring(sa_worker_t *w);


/* notify_render.c (pure) */

/* an id that is the same for every delivery of one derived event */
void sa_derived_id(char out[37], const char *a, const char *b,
    const char *c);

/*
 * The event of an unsigned entry (token.expiring, token.denied), built from
 * the verified token record and the entry's "time" (the worker puts the
 * stream entry's own time there).  NULL with *why set when there is nothing
 * to deliver, *dead when that is a refusal to keep as a dead letter.
 */
json_t *sa_event_from_token(const char *type, const sa_token_record_t *rec,
    json_t *fields, int64_t now, const char **why, int *dead);

/* "evt_" and 1 to 36 letters or digits */
int sa_event_id_valid(const char *id);

/* NULL when an event of time t may be delivered at now, else why not */
const char *sa_event_time_refused(int64_t t, int64_t now);

/*
 * The events a gateway writes, unsigned, with no destination: token.denied,
 * token.quota_warning, token.quota_exhausted (notify_render.c)
 */
int sa_gateway_type(const char *type);

/* the four statuses of a gateway's token.denied */
int sa_denied_status_valid(const char *s);

/* "dlv_<hex>": the one delivery of an event to one destination */
void sa_delivery_id(char out[37], const char *event, const char *app,
    const char *aid, const char *dest);

/* "scheme://host[:port]" of a URL (lowercase; no user info) */
void sa_url_origin(const char *url, char *out, size_t size);

/* the bodies (free() them); NULL when the event cannot be rendered */
char *sa_webhook_body(json_t *e, const char *app);
char *sa_slack_body(json_t *e, const char *app);

/* the length of s's longest prefix of at most max bytes that ends
   between two UTF-8 characters */
size_t sa_utf8_prefix(const char *s, size_t max);

/* "X-SA-Signature: t=<now>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>" */
void sa_signature(char *out, size_t size, const char *secret,
    const char *body, int64_t now);


/* notify_ssrf.c (pure) */

/* NULL when the address may be connected to, else what kind it is */
const char *sa_addr_forbidden(int family, const void *addr);

/* 1: one of this host's interfaces has that address; -1: cannot tell */
int sa_addr_local(int family, const void *addr);

/* curl's CURLOPT_OPENSOCKETFUNCTION, data is the delivery */
curl_socket_t sa_open_socket(void *data, curlsocktype purpose,
    struct curl_sockaddr *sa);

#endif /* SA_ADMIN_NOTIFY_WORKER_H */
