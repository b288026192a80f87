/*
 * sa-admin serve: the admin API (DESIGN.md, "Admin API"; issue 22).
 *
 * One parent process runs libmicrohttpd in external mode, every listener's
 * daemon driven by one epoll loop (serve.c).  It reads each request whole
 * (headers and body, within the limits), finds its route (http.c), checks
 * what it can alone (404, 405, 413, 415, the browser checks, the body's
 * JSON) and hands the request to one of a prefork pool of workers
 * (pool.c), suspending the connection.  A worker (worker.c) runs one
 * request at a time with its own Redis connection: it authenticates the
 * caller, runs the operation, and writes the answer back; the parent
 * resumes the connection and sends it.  A worker that dies answers
 * through the sink of ops.h (or, failing that, by its exit status) and is
 * replaced.
 *
 * Parent <-> worker: frames of a 4-byte big-endian length and a JSON
 * document.  Request: {"route":N, "in":{...}, "auth":S|null,
 * "user":S|null, "peer":S}.  Answer: {"status":N, "body":V, "problem":B,
 * "bye":B} ("bye": the worker ends after this answer).
 */

#ifndef SA_ADMIN_SERVE_H
#define SA_ADMIN_SERVE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <jansson.h>

#include "sa_admin.h"

struct MHD_Daemon;
struct MHD_Connection;

#define SA_SERVE_BODY_MAX   (1024 * 1024)    /* 413 beyond */
#define SA_SERVE_FRAME_MAX  (16 * 1024 * 1024)
#define SA_SERVE_RECYCLE    10000            /* requests per worker */

/* what a route runs */
typedef enum {
    SA_ROUTE_OP = 0,          /* an operation of sa_ops[] */
    SA_ROUTE_HEALTHZ,
    SA_ROUTE_METRICS,
    SA_ROUTE_ME,
    SA_ROUTE_OPENAPI          /* GET /v1/openapi.json (openapi.c) */
} sa_route_kind_t;

typedef struct {
    const char       *name;       /* "account.create", "healthz" */
    const char       *method;
    const char       *path;       /* "/v1/teams/{team}/accounts" */
    int               status;     /* of a success */
    unsigned          flags;      /* SA_OP_* of ops.h */
    sa_route_kind_t   kind;
    int               authn;      /* needs a proven caller */
    const void       *op;         /* the sa_op_t of SA_ROUTE_OP */
} sa_route_t;

typedef struct {
    char                *addr;        /* as printed: "127.0.0.1:8080",
                                         "unix:/run/sa.sock" */
    int                  fd;
    int                  trusted;     /* --trusted-listen: the user header */
    int                  unix_path;   /* unlink at the end */
    struct MHD_Daemon   *mhd;
    int                  epfd;        /* MHD's epoll fd */
} sa_listener_t;

typedef struct sa_req_s   sa_req_t;
typedef struct sa_conn_s  sa_conn_t;

/* one connection, for the request deadline (slowloris) */
struct sa_conn_s {
    int          fd;
    double       since;          /* accepted, or its last answer sent */
    int          busy;           /* a whole request is being answered */
    sa_conn_t   *prev, *next;
};

/* one request in the parent */
struct sa_req_s {
    sa_listener_t          *l;
    struct MHD_Connection  *conn;
    const sa_route_t       *route;    /* NULL: not found */
    int                     route_ix;
    json_t                 *in;       /* path and query fields */
    char                   *body;
    size_t                  len, cap;
    int                     too_large;
    int                     close_now;    /* answered from the headers and
                                             the body never read: 413, an
                                             ambiguous length */
    int                     status;   /* the answer, once known */
    char                   *answer;
    int                     problem;
    const char             *allow;    /* 405: the Allow header */
    json_t                 *messages; /* the operation's stderr lines:
                                         Sa-Admin-Message headers */
    int                     queued;   /* waiting for a worker */
    int                     dispatched;
    int                     suspended;
    int                     sent;
    int                     console;  /* a file of the console */
    double                  start;
    char                   *auth;     /* the Authorization header */
    char                   *user;     /* the user header (trusted only) */
    char                    peer[128];
    sa_req_t               *next;     /* the queue */
};

typedef struct {
    pid_t      pid;
    int        fd;            /* the parent's end */
    int        ready;         /* sent its ready byte */
    int        retiring;      /* SIGHUP or bye: no new requests */
    sa_req_t  *req;           /* being answered */
    char      *buf;           /* the answer being read */
    size_t     len, cap;
    double     respawn_at;    /* an empty slot: when to start one */
    uint64_t   served;
} sa_worker_t;

/* the refresher's counts, in memory it shares with serve (/metrics) */
typedef struct {
    uint64_t          runs;         /* runs done */
    uint64_t          failed;       /* of which failed (Redis) */
    uint64_t          renewed;      /* records renewed */
    uint64_t          refused;      /* records not verified or invalid */
    uint64_t          older;        /* records older than a version known */
    uint64_t          heard;        /* versions heard on the channel */
    uint64_t          versions;     /* token ids in the version memory */
    uint64_t          subscribed;   /* 1: the channel is heard */
    uint64_t          restarts;     /* refreshers started again */
    uint64_t          rec_renewed;  /* the same for the records permission */
    uint64_t          rec_refused;  /* checks read (account, team, member, */
    uint64_t          rec_older;    /* application, personal token) */
    uint64_t          rec_unsigned; /* <prefix>records messages ignored:
                                       not a record signed by the key */
    uint64_t          tok_unheard;  /* invalidation versions not kept: the
                                       memory's bound for ids never read */
} sa_refresh_shm_t;

typedef struct {
    sa_admin_t        tmpl;         /* the worker's sa, reset per request */
    sa_listener_t    *listeners;
    int               nlisteners;
    const char       *user_header;  /* X-Forwarded-User */
    unsigned          max_conns;
    unsigned          timeout;      /* seconds: a whole request, idle */
    int               nworkers;
    pid_t             refresher;      /* --refresh-period's child, 0 none */
    sa_refresh_shm_t *refresh_stats;  /* its counts, NULL: none */
    sa_worker_t      *workers;
    int               epfd;
    int               sigfd;
    int               stopping;
    int               inflight;     /* requests begun and not answered */
    sa_req_t         *queue, *queue_tail;
    sa_conn_t        *conns;
    unsigned          nconns;
    const char       *operators[65];
    char             *console;      /* the console's real path, NULL: off */
} sa_serve_t;

extern sa_serve_t  sa_serve;

/* http.c: the routes, the MHD callbacks, answers, metrics */
void sa_routes_init(void);
const sa_route_t *sa_route_at(int i);
int sa_http_start(sa_serve_t *s, sa_listener_t *l);
void sa_http_answered(sa_serve_t *s, sa_req_t *r, int status, char *body,
    int problem);
char *sa_problem_body(int status, const char *type, const char *title,
    const char *detail, int exit_code);
void sa_metrics_auth_failure(void);

/* console.c: the console's static files at / (--console DIR|off) */
#define SA_CONSOLE_DIR  "/usr/share/sa-admin/console"
void sa_console_set_or_exit(sa_serve_t *s, const char *dir, int given);
int sa_console_wants(sa_serve_t *s, const char *url);
int sa_console_send(sa_serve_t *s, struct MHD_Connection *conn,
    const char *url, const char *method, int *status);

/* openapi.c: the document of GET /v1/openapi.json, a new string */
char *sa_openapi_text(void);

/* pool.c: the workers, parent side */
void sa_pool_start_or_exit(sa_serve_t *s);
void sa_pool_dispatch(sa_serve_t *s, sa_req_t *r);
void sa_pool_event(sa_serve_t *s, sa_worker_t *w);
void sa_pool_tick(sa_serve_t *s, double now);
void sa_pool_reload(sa_serve_t *s);
void sa_pool_stop(sa_serve_t *s);
void sa_pool_forget(sa_serve_t *s, sa_req_t *r);

/* refresher.c: --refresh-period, sa_refresh_run() every D s in one
 * long-lived child with a version memory; _reload passes SIGHUP on, _tick
 * starts another if it ended */
void sa_refresher_start(sa_serve_t *s, int64_t every);
void sa_refresher_reload(sa_serve_t *s);
void sa_refresher_tick(sa_serve_t *s);
void sa_refresher_stop(sa_serve_t *s);

/* worker.c: a worker's life (never returns) */
SA_NORETURN void sa_worker_main(sa_serve_t *s, int fd);

/* frames (pool.c) */
int sa_frame_write(int fd, json_t *doc);
json_t *sa_frame_read(int fd);       /* blocking; NULL at EOF or error */

double sa_mono(void);
void sa_serve_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* what a client can cause: at most 10 lines a second of each kind, then
 * one line saying how many were left out */
typedef struct {
    double    start;
    unsigned  n, dropped;
} sa_lograte_t;

void sa_serve_log_rated(sa_lograte_t *rate, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif /* SA_ADMIN_SERVE_H */
