/*
 * sa-admin serve: a worker (serve.h).  It loads the keys, says it is
 * ready, then answers one request at a time: who calls (a bearer token,
 * or on a trusted listener the user header), then the route.  Every
 * request starts from the same sa (the template), only the Redis
 * connection is kept.  After SA_SERVE_RECYCLE requests it ends, and the
 * parent starts another (operations may leak: they were written for a
 * process that ends).
 */

#define _GNU_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "serve.h"
#include "bearer.h"
#include "notify.h"
#include "ops/ops.h"
#include "perm.h"
#include "records.h"
#include "redis.h"
#include "util.h"

static sa_admin_t    sa_worker_sa;
static int           sa_worker_fd = -1;
static sa_lograte_t  sa_refused_rate;      /* 401 and 503 lines */

/*
 * What an operation prints on stderr (the lines the command line shows
 * its user: "sa-admin: token X: its record fails verification; replaced
 * by a revocation") goes, while it runs, to a memory file; then to serve's
 * log as before, and its "sa-admin: " lines to the answer ("messages":
 * Sa-Admin-Message headers), which sa-admin --api prints.
 */
#define SA_WORKER_MESSAGES     32
#define SA_WORKER_MESSAGE_MAX  1000

static int         sa_worker_log = -1;     /* serve's stderr */
static int         sa_worker_cap = -1;     /* the memory file */
static int         sa_worker_capturing;


static void
sa_capture_begin(void)
{
    if (sa_worker_cap == -1) {
        return;
    }
    fflush(stderr);
    if (ftruncate(sa_worker_cap, 0) != 0
        || lseek(sa_worker_cap, 0, SEEK_SET) != 0
        || dup2(sa_worker_cap, 2) == -1)
    {
        return;
    }
    sa_worker_capturing = 1;
}


/* the messages (a new array), stderr back to serve's log */
static json_t *
sa_capture_end(void)
{
    json_t  *msgs = json_array();
    char    *buf, *p, *e, *c;
    off_t    n;

    if (!sa_worker_capturing) {
        return msgs;
    }
    sa_worker_capturing = 0;
    fflush(stderr);
    dup2(sa_worker_log, 2);

    n = lseek(sa_worker_cap, 0, SEEK_CUR);
    if (n <= 0 || n > 1024 * 1024) {
        return msgs;
    }
    buf = malloc((size_t) n + 1);
    if (buf == NULL || pread(sa_worker_cap, buf, (size_t) n, 0) != n) {
        free(buf);
        return msgs;
    }
    buf[n] = '\0';
    if (write(2, buf, (size_t) n) < 0) {
        /* the log is gone: the answer still carries them */
    }

    for (p = buf; *p != '\0'; p = *e ? e + 1 : e) {
        e = strchr(p, '\n');
        if (e == NULL) {
            e = p + strlen(p);
        }
        if (strncmp(p, "sa-admin: ", 10) != 0 || e - p - 10 > SA_WORKER_MESSAGE_MAX
            || json_array_size(msgs) >= SA_WORKER_MESSAGES)
        {
            continue;
        }
        for (c = p + 10; c < e; c++) {
            if ((unsigned char) *c < 0x20 || (unsigned char) *c >= 0x7f) {
                *c = '?';     /* a header value: printable ASCII only */
            }
        }
        json_array_append_new(msgs, json_stringn(p + 10, (size_t) (e - p - 10)));
    }
    free(buf);

    return msgs;
}


/* answer with the operation's messages */
static json_t *
sa_with_messages(json_t *answer)
{
    json_t  *msgs = sa_capture_end();

    if (json_array_size(msgs) > 0) {
        json_object_set_new(answer, "messages", msgs);
    } else {
        json_decref(msgs);
    }
    return answer;
}


static json_t *
sa_problem(int status, const char *type, int exit_code, const char *detail)
{
    char    *s = sa_problem_body(status, type, NULL, detail, exit_code);
    json_t  *j = json_loads(s, 0, NULL);

    free(s);
    return json_pack("{s:i, s:o, s:b}", "status", status, "body", j,
                     "problem", 1);
}


static json_t *
sa_ok(int status, json_t *body)
{
    return json_pack("{s:i, s:o, s:b}", "status", status, "body", body,
                     "problem", 0);
}


/* a name a proxy may give: a user, and no service account's email */
static int
sa_proxy_user_valid(const char *u)
{
    size_t  n = strlen(u), k = strlen(".sa.invalid");

    return sa_user_valid(u) && !(n >= k && strcmp(u + n - k, ".sa.invalid")
                                           == 0);
}


/*
 * The caller, proven: *answer set (a 401 or 503) when there is none.
 * The bearer token first; else, on a trusted listener, the user header.
 */
static int
sa_worker_caller(sa_admin_t *sa, json_t *req, sa_caller_t *c, int *have,
    json_t **answer)
{
    const char  *auth, *user, *why = NULL, *peer;
    sa_auth_t    rc;

    auth = json_string_value(json_object_get(req, "auth"));
    user = json_string_value(json_object_get(req, "user"));
    peer = json_string_value(json_object_get(req, "peer"));
    *have = 0;

    if (auth != NULL) {
        rc = sa_bearer_check(sa, auth, c, &why);
        if (rc == SA_AUTH_OK) {
            *have = 1;
            sa_caller_apply(sa, c);
            sa_bearer_used(sa, c);
            return 0;
        }
        if (rc == SA_AUTH_UNAVAILABLE) {
            sa_serve_log_rated(&sa_refused_rate, "503 from %s: %s", peer, why ? why : "Redis");
            *answer = sa_problem(503, "unavailable", 3, "Redis is "
                                 "unavailable");
            return -1;
        }
        sa_serve_log_rated(&sa_refused_rate, "401 from %s: %s", peer, why ? why : "refused");
        *answer = sa_problem(401, "unauthenticated", 2, "a valid bearer "
                             "token is needed (Authorization: Bearer "
                             "sat_... or sap_...)");
        return -1;
    }

    if (user != NULL) {
        if (!sa_proxy_user_valid(user)) {
            sa_serve_log_rated(&sa_refused_rate, "401 from %s: the user header names no valid user "
                         "'%s'", peer, sa_vis(user));
            *answer = sa_problem(401, "unauthenticated", 2, "the user header "
                                 "names no valid user");
            return -1;
        }
        sa->actor = user;
        sa->proof = "proxy";
        sa->scopes = NULL;
        return 0;
    }

    sa_serve_log_rated(&sa_refused_rate, "401 from %s: no credential", peer);
    *answer = sa_problem(401, "unauthenticated", 2, "a valid bearer token is "
                         "needed (Authorization: Bearer sat_... or sap_...)");
    return -1;
}


static json_t *
sa_worker_me(sa_admin_t *sa, sa_caller_t *c, int have)
{
    json_t  *me;

    me = json_pack("{s:s, s:s, s:s, s:b}", "actor", sa->actor,
                   "proof", sa->proof, "channel", sa->channel,
                   "operator", sa_is_operator(sa));
    /* the console's first page (issue 23) */
    json_object_set_new(me, "teams", sa_teams_of(sa, sa->actor,
                                                 sa_is_operator(sa)));

    if (!have) {
        json_object_set_new(me, "kind", json_string("proxy"));
        json_object_set_new(me, "scopes", json_null());
        return me;
    }

    json_object_set_new(me, "kind", json_string(
        c->kind == SA_CALLER_ACCOUNT ? "account" : "person"));
    json_object_set_new(me, "token_id", json_string(c->token_id));
    if (c->team != NULL) {
        json_object_set_new(me, "team", json_string(c->team));
        json_object_set_new(me, "account", json_string(c->account));
    }
    json_object_set(me, "scopes", c->scopes ? c->scopes : json_null());
    json_object_set_new(me, "expires_at", json_integer(c->expires_at));

    return me;
}


static json_t *
sa_worker_healthz(sa_admin_t *sa)
{
    redisReply  *r;
    int          ok;

    r = sa_xredis_cmd(sa, "PING");      /* unreachable: exit 3, a 503 */
    ok = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);

    if (!ok) {
        return sa_problem(503, "unavailable", 3, "Redis answered PING with "
                          "an error");
    }

    return sa_ok(200, json_pack("{s:s, s:s}", "status", "ok", "redis", "ok"));
}


static json_t *
sa_worker_handle(sa_serve_t *s, sa_admin_t *sa, json_t *req)
{
    const sa_route_t  *route;
    sa_caller_t        c;
    json_t            *answer = NULL, *out;
    int                have = 0;

    (void) s;

    route = sa_route_at((int) json_integer_value(json_object_get(req,
                                                                 "route")));
    if (route == NULL) {
        return sa_problem(500, "internal", 3, "no such route");
    }

    if (route->kind == SA_ROUTE_HEALTHZ) {
        return sa_worker_healthz(sa);
    }

    memset(&c, 0, sizeof(c));
    if (route->authn && sa_worker_caller(sa, req, &c, &have, &answer) != 0) {
        return answer;
    }

    switch (route->kind) {
    case SA_ROUTE_ME:
        answer = sa_ok(200, sa_worker_me(sa, &c, have));
        break;
    case SA_ROUTE_OP:
        /* an error ends here, through the sink: the worker's last answer */
        sa_capture_begin();
        out = ((const sa_op_t *) route->op)->run(sa, json_object_get(req,
                                                                     "in"));
        answer = sa_with_messages(sa_ok(route->status,
                                        out ? out : json_object()));
        break;
    default:
        answer = sa_problem(500, "internal", 3, "no such route");
        break;
    }

    if (have) {
        sa_caller_free(&c);
    }

    return answer;
}


/*
 * Where sa_die() and sa_die_kind() end in a worker (ops.h): the problem
 * answer to the parent, then the worker ends (what the operation held,
 * memory, Redis state of a half-read reply, goes with it); the parent
 * starts another.
 */
static SA_NORETURN void
sa_worker_sink(sa_err_kind_t kind, const char *message)
{
    json_t      *answer;
    int          status = sa_err_status(kind);
    const char  *detail = message;

    /*
     * What broke inside (Redis's address, its error, a script's line) is
     * the log's, not the client's, who may have shown no credential yet
     */
    /* a record past its fresh_until: the caller's to know, named */
    if (kind == SA_ERR_STALE) {
        sa_serve_log("%d: %s", status, message);

    } else if (status >= 500) {
        sa_serve_log("%d: %s", status, message);
        detail = status == 503 ? "Redis is unavailable; try again"
                 : "internal error (serve's log says more)";
    }
    answer = sa_with_messages(sa_problem(status, sa_err_name(kind),
                                         sa_err_exit(kind), detail));
    /* tokens issued before the error: the caller's, shown this once */
    if (json_array_size(sa_die_partial) > 0) {
        json_object_set(json_object_get(answer, "body"), "issued",
                        sa_die_partial);
        json_object_set_new(json_object_get(answer, "body"), "issued_whole",
                            json_boolean(sa_die_partial_whole));
    }
    /* the parent must not hand this worker another request */
    json_object_set_new(answer, "bye", json_true());
    sa_frame_write(sa_worker_fd, answer);
    _exit(0);
}


/* a request's sa: the template's, with the worker's Redis connection */
static void
sa_worker_reset(sa_serve_t *s, sa_admin_t *sa)
{
    struct sa_rconn_s    *redis = sa->redis;
    char                  where[sizeof(sa->redis_where)];

    memcpy(where, sa->redis_where, sizeof(where));
    *sa = s->tmpl;
    sa->redis = redis;
    memcpy(sa->redis_where, where, sizeof(where));
    sa_proof_stale(sa);
}


void
sa_worker_main(sa_serve_t *s, int fd)
{
    sa_admin_t  *sa = &sa_worker_sa;
    json_t      *req, *answer;
    uint64_t     n;

    sa_worker_fd = fd;
    *sa = s->tmpl;
    sa_worker_log = dup(2);
    if (sa_worker_log != -1) {
        sa_worker_cap = memfd_create("sa-admin-op-stderr", MFD_CLOEXEC);
    }

    /* the keys now: a missing or bad one ends serve before it listens */
    sa_signing_key_or_exit(sa);
    sa_verify_key_or_exit(sa);

    if (write(fd, "R", 1) != 1) {
        _exit(0);
    }

    /* from now on an error is the request's answer */
    sa_die_sink = sa_worker_sink;

    for (n = 1; ; n++) {
        req = sa_frame_read(fd);
        if (req == NULL) {
            _exit(0);
        }

        sa_worker_reset(s, sa);
        answer = sa_worker_handle(s, sa, req);
        if (n >= SA_SERVE_RECYCLE) {
            json_object_set_new(answer, "bye", json_true());
        }

        if (sa_frame_write(fd, answer) != 0) {
            _exit(0);
        }
        json_decref(answer);
        json_decref(req);

        if (n >= SA_SERVE_RECYCLE) {
            _exit(0);
        }
    }
}
