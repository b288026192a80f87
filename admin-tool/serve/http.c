/*
 * sa-admin serve: the HTTP side of the parent (serve.h).  libmicrohttpd's
 * callbacks, the routes, what the parent answers alone (404, 405, 413,
 * 415, the browser checks, a body that is no JSON object, /metrics), the
 * answers' headers, and the metrics.
 */

#define _GNU_SOURCE

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <microhttpd.h>

#include "serve.h"
#include "ops/ops.h"
#include "util.h"
#include "xalloc.h"


/* ------------------------------------------------------------ routes */

static const sa_route_t  sa_builtin_routes[] = {
    { "healthz", "GET", "/healthz", 200, 0, SA_ROUTE_HEALTHZ, 0, NULL },
    { "metrics", "GET", "/metrics", 200, 0, SA_ROUTE_METRICS, 0, NULL },
    { "me", "GET", "/v1/me", 200, 0, SA_ROUTE_ME, 1, NULL },
    { "openapi", "GET", "/v1/openapi.json", 200, 0, SA_ROUTE_OPENAPI, 0,
      NULL },
};

static sa_route_t  *sa_routes;
static int          sa_nroutes;

#define SA_NBUCKETS  12
static const double  sa_buckets[SA_NBUCKETS] = {
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5
};

typedef struct {
    uint64_t  count[SA_NBUCKETS + 1];
    double    sum;
    uint64_t  n;
} sa_histo_t;

typedef struct {
    int       route;        /* index, sa_nroutes: no route */
    int       status;
    uint64_t  n;
} sa_counter_t;

static struct {
    sa_counter_t  *c;
    size_t         nc;
    sa_histo_t    *h;           /* per route, and one for no route */
    uint64_t       auth_failures;
    uint64_t       refused_header;
    uint64_t       refused_conns;     /* over --max-connections */
} sa_metrics;


static void
sa_route_add(const sa_route_t *r)
{
    sa_routes = sa_xrealloc(sa_routes, (sa_nroutes + 1) * sizeof(*r));
    sa_routes[sa_nroutes++] = *r;
}


void
sa_routes_init(void)
{
    size_t          i;
    const sa_op_t  *op;
    sa_route_t      r;

    for (i = 0; i < sizeof(sa_builtin_routes) / sizeof(sa_builtin_routes[0]);
         i++)
    {
        sa_route_add(&sa_builtin_routes[i]);
    }

    /* every operation of the registry but those that need the keys */
    for (op = sa_ops; op->name != NULL; op++) {
        if (op->flags & SA_OP_LOCAL) {
            continue;
        }
        memset(&r, 0, sizeof(r));
        r.name = op->name;
        r.method = op->method;
        r.path = op->path;
        r.status = op->status;
        r.flags = op->flags;
        r.kind = SA_ROUTE_OP;
        r.authn = 1;
        r.op = op;
        sa_route_add(&r);
    }

    /* one for no route, one for the console's files */
    sa_metrics.h = sa_xcalloc(sa_nroutes + 2, sizeof(sa_histo_t));
}


const sa_route_t *
sa_route_at(int i)
{
    return i >= 0 && i < sa_nroutes ? &sa_routes[i] : NULL;
}


/* %XX decoding in place; -1 on a bad escape or a NUL */
static int
sa_pct_decode(char *s, int plus)
{
    char  *in = s, *out = s;
    int    hi, lo;

    while (*in) {
        if (*in == '%') {
            hi = in[1] ? (in[1] >= 'a' ? in[1] - 'a' + 10 : in[1] >= 'A'
                          ? in[1] - 'A' + 10 : in[1] - '0') : -1;
            lo = hi >= 0 && in[2] ? (in[2] >= 'a' ? in[2] - 'a' + 10
                                     : in[2] >= 'A' ? in[2] - 'A' + 10
                                     : in[2] - '0') : -1;
            if (hi < 0 || hi > 15 || lo < 0 || lo > 15
                || strchr("0123456789abcdefABCDEF", in[1]) == NULL
                || strchr("0123456789abcdefABCDEF", in[2]) == NULL
                || (hi == 0 && lo == 0))
            {
                return -1;
            }
            *out++ = (char) (hi * 16 + lo);
            in += 3;

        } else {
            *out++ = (plus && *in == '+') ? ' ' : *in;
            in++;
        }
    }
    *out = '\0';

    return 0;
}


/*
 * The route of method and path, its {names} into in.  Returns the index,
 * -1 when no route has that path, -2 when routes have it with other
 * methods (allow: them), -3 when a segment is malformed.
 */
static int
sa_route_match(const char *method, const char *path, json_t *in,
    char *allow, size_t size)
{
    char        *segs[32], *copy, *p, *tsegs[32], *tcopy;
    int          nsegs = 0, nt, i, j, found = -1, ok;
    json_t      *vals;

    allow[0] = '\0';

    if (path[0] != '/' || strlen(path) > 4096) {
        return -1;
    }

    copy = sa_xstrdup(path + 1);
    for (p = copy; nsegs < 32; ) {
        segs[nsegs++] = p;
        p = strchr(p, '/');
        if (p == NULL) {
            break;
        }
        *p++ = '\0';
    }
    if (p != NULL) {
        free(copy);
        return -1;
    }

    for (i = 0; i < sa_nroutes; i++) {
        tcopy = sa_xstrdup(sa_routes[i].path + 1);
        nt = 0;
        for (p = tcopy; nt < 32; ) {
            tsegs[nt++] = p;
            p = strchr(p, '/');
            if (p == NULL) {
                break;
            }
            *p++ = '\0';
        }

        ok = nt == nsegs;
        for (j = 0; ok && j < nt; j++) {
            if (tsegs[j][0] == '{') {
                ok = segs[j][0] != '\0';
            } else {
                ok = strcmp(tsegs[j], segs[j]) == 0;
            }
        }

        if (ok && strcmp(sa_routes[i].method, method) != 0) {
            if (strstr(allow, sa_routes[i].method) == NULL) {
                snprintf(allow + strlen(allow), size - strlen(allow), "%s%s",
                         allow[0] ? ", " : "", sa_routes[i].method);
            }
            ok = 0;
        }

        if (ok) {
            vals = json_object();
            for (j = 0; ok && j < nt; j++) {
                if (tsegs[j][0] != '{') {
                    continue;
                }
                tsegs[j][strlen(tsegs[j]) - 1] = '\0';
                /* a bad escape, a NUL, or no UTF-8 (json_string() NULL) */
                if (sa_pct_decode(segs[j], 0) != 0
                    || json_object_set_new(vals, tsegs[j] + 1,
                                           json_string(segs[j])) != 0)
                {
                    ok = 0;
                    break;
                }
            }
            if (!ok || json_object_update(in, vals) != 0) {
                json_decref(vals);
                free(tcopy);
                free(copy);
                return -3;
            }
            json_decref(vals);
            found = i;
            free(tcopy);
            break;
        }

        free(tcopy);
    }

    free(copy);

    return found >= 0 ? found : allow[0] ? -2 : -1;
}


/* ------------------------------------------------------------ answers */

static const char *
sa_status_title(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 503: return "Service Unavailable";
    default:  return "Internal Server Error";
    }
}


char *
sa_problem_body(int status, const char *type, const char *title,
    const char *detail, int exit_code)
{
    json_t  *j;
    char    *s, urn[64];

    snprintf(urn, sizeof(urn), "urn:sa-admin:%s", type);
    j = json_pack("{s:s, s:s, s:i, s:s, s:i}", "type", urn,
                  "title", title ? title : sa_status_title(status),
                  "status", status, "detail", detail ? detail : "",
                  "exit", exit_code);
    s = json_dumps(j, JSON_COMPACT);
    json_decref(j);

    return s;
}


/* an answer of the parent's own */
static void
sa_answer_problem(sa_req_t *r, int status, const char *type, int exit_code,
    const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static void
sa_answer_problem(sa_req_t *r, int status, const char *type, int exit_code,
    const char *fmt, ...)
{
    va_list  ap;
    char     detail[512];

    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);

    free(r->answer);
    r->answer = sa_problem_body(status, type, NULL, detail, exit_code);
    r->status = status;
    r->problem = 1;
}


static void
sa_metrics_count(sa_req_t *r)
{
    int          route = r->route ? r->route_ix
                         : r->console ? sa_nroutes + 1 : sa_nroutes;
    double       t = sa_mono() - r->start;
    sa_histo_t  *h = &sa_metrics.h[route];
    size_t       i;

    for (i = 0; i < sa_metrics.nc; i++) {
        if (sa_metrics.c[i].route == route
            && sa_metrics.c[i].status == r->status)
        {
            break;
        }
    }
    if (i == sa_metrics.nc) {
        sa_metrics.c = sa_xrealloc(sa_metrics.c, (i + 1) * sizeof(*sa_metrics.c));
        sa_metrics.c[i].route = route;
        sa_metrics.c[i].status = r->status;
        sa_metrics.c[i].n = 0;
        sa_metrics.nc++;
    }
    sa_metrics.c[i].n++;

    for (i = 0; i < SA_NBUCKETS && t > sa_buckets[i]; i++) {
        /* void */
    }
    h->count[i]++;
    h->sum += t;
    h->n++;
}


void
sa_metrics_auth_failure(void)
{
    sa_metrics.auth_failures++;
}


static const char *
sa_route_label(int i)
{
    return i < sa_nroutes ? sa_routes[i].name
           : i == sa_nroutes + 1 ? "console" : "none";
}


static char *
sa_metrics_text(sa_serve_t *s)
{
    char      *buf = NULL;
    size_t     size = 0;
    FILE      *f = open_memstream(&buf, &size);
    size_t     i;
    int        r, b, busy = 0;
    uint64_t   cum;

    fputs("# HELP sa_admin_requests_total Requests answered, by route and "
          "status.\n# TYPE sa_admin_requests_total counter\n", f);
    for (i = 0; i < sa_metrics.nc; i++) {
        fprintf(f, "sa_admin_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                sa_route_label(sa_metrics.c[i].route), sa_metrics.c[i].status,
                (unsigned long long) sa_metrics.c[i].n);
    }

    fputs("# HELP sa_admin_request_duration_seconds Time from a request's "
          "headers to its answer, by route.\n"
          "# TYPE sa_admin_request_duration_seconds histogram\n", f);
    for (r = 0; r <= sa_nroutes + 1; r++) {
        if (sa_metrics.h[r].n == 0) {
            continue;
        }
        cum = 0;
        for (b = 0; b <= SA_NBUCKETS; b++) {
            cum += sa_metrics.h[r].count[b];
            if (b < SA_NBUCKETS) {
                fprintf(f, "sa_admin_request_duration_seconds_bucket{route="
                        "\"%s\",le=\"%g\"} %llu\n", sa_route_label(r),
                        sa_buckets[b], (unsigned long long) cum);
            } else {
                fprintf(f, "sa_admin_request_duration_seconds_bucket{route="
                        "\"%s\",le=\"+Inf\"} %llu\n", sa_route_label(r),
                        (unsigned long long) cum);
            }
        }
        fprintf(f, "sa_admin_request_duration_seconds_sum{route=\"%s\"} %.6f\n"
                "sa_admin_request_duration_seconds_count{route=\"%s\"} %llu\n",
                sa_route_label(r), sa_metrics.h[r].sum, sa_route_label(r),
                (unsigned long long) sa_metrics.h[r].n);
    }

    for (r = 0; r < s->nworkers; r++) {
        busy += s->workers[r].req != NULL;
    }

    fprintf(f, "# HELP sa_admin_auth_failures_total Requests refused for no "
            "or a bad credential (401).\n"
            "# TYPE sa_admin_auth_failures_total counter\n"
            "sa_admin_auth_failures_total %llu\n"
            "# HELP sa_admin_user_header_ignored_total Requests that sent the "
            "user header to a listener not trusted.\n"
            "# TYPE sa_admin_user_header_ignored_total counter\n"
            "sa_admin_user_header_ignored_total %llu\n"
            "# HELP sa_admin_connections_refused_total Connections closed "
            "at once: --max-connections were open (all listeners).\n"
            "# TYPE sa_admin_connections_refused_total counter\n"
            "sa_admin_connections_refused_total %llu\n"
            "# HELP sa_admin_connections Open connections.\n"
            "# TYPE sa_admin_connections gauge\n"
            "sa_admin_connections %u\n"
            "# HELP sa_admin_workers Worker processes, and those answering.\n"
            "# TYPE sa_admin_workers gauge\n"
            "sa_admin_workers %d\n"
            "# TYPE sa_admin_workers_busy gauge\n"
            "sa_admin_workers_busy %d\n",
            (unsigned long long) sa_metrics.auth_failures,
            (unsigned long long) sa_metrics.refused_header,
            (unsigned long long) sa_metrics.refused_conns, s->nconns,
            s->nworkers, busy);

    if (s->refresh_stats != NULL) {
        sa_refresh_shm_t  *rs = s->refresh_stats;

#define SA_RS(field)  ((unsigned long long) __atomic_load_n(&rs->field,     \
                                                            __ATOMIC_RELAXED))
        fprintf(f, "# HELP sa_admin_refresh_runs_total Runs of the record "
                "refresher, and those that failed.\n"
                "# TYPE sa_admin_refresh_runs_total counter\n"
                "sa_admin_refresh_runs_total %llu\n"
                "# TYPE sa_admin_refresh_runs_failed_total counter\n"
                "sa_admin_refresh_runs_failed_total %llu\n"
                "# HELP sa_admin_refresh_renewed_total Token records whose "
                "fresh_until the refresher renewed.\n"
                "# TYPE sa_admin_refresh_renewed_total counter\n"
                "sa_admin_refresh_renewed_total %llu\n"
                "# HELP sa_admin_refresh_refused_total Token records not "
                "renewed: older than a version known (put back by a Redis "
                "writer), or not verified.\n"
                "# TYPE sa_admin_refresh_refused_total counter\n"
                "sa_admin_refresh_refused_total{reason=\"older\"} %llu\n"
                "sa_admin_refresh_refused_total{reason=\"invalid\"} %llu\n"
                "# HELP sa_admin_refresh_versions_heard_total Token versions "
                "heard on the invalidation channel.\n"
                "# TYPE sa_admin_refresh_versions_heard_total counter\n"
                "sa_admin_refresh_versions_heard_total %llu\n"
                "# HELP sa_admin_refresh_versions Token ids in the "
                "refresher's version memory.\n"
                "# TYPE sa_admin_refresh_versions gauge\n"
                "sa_admin_refresh_versions %llu\n"
                "# HELP sa_admin_refresh_subscribed 1 while the refresher "
                "hears the invalidation channel.\n"
                "# TYPE sa_admin_refresh_subscribed gauge\n"
                "sa_admin_refresh_subscribed %llu\n"
                "# HELP sa_admin_refresh_restarts_total Refreshers started "
                "again after one ended (its memory lost).\n"
                "# TYPE sa_admin_refresh_restarts_total counter\n"
                "sa_admin_refresh_restarts_total %llu\n"
                "# HELP sa_admin_refresh_records_renewed_total Team, member, "
                "application, account and personal token records whose "
                "fresh_until the refresher renewed.\n"
                "# TYPE sa_admin_refresh_records_renewed_total counter\n"
                "sa_admin_refresh_records_renewed_total %llu\n"
                "# HELP sa_admin_refresh_records_refused_total Those not "
                "renewed: older than a version known, or not verified.\n"
                "# TYPE sa_admin_refresh_records_refused_total counter\n"
                "sa_admin_refresh_records_refused_total{reason=\"older\"} "
                "%llu\n"
                "sa_admin_refresh_records_refused_total{reason=\"invalid\"} "
                "%llu\n"
                "# HELP sa_admin_refresh_messages_ignored_total Messages the "
                "refresher heard but did not keep: on <prefix>records not a "
                "record signed by the signing key (forged, or garbage), on "
                "the invalidation channel a new id past the memory's bound.\n"
                "# TYPE sa_admin_refresh_messages_ignored_total counter\n"
                "sa_admin_refresh_messages_ignored_total{reason=\"unsigned\"} "
                "%llu\n"
                "sa_admin_refresh_messages_ignored_total{reason=\"bound\"} "
                "%llu\n",
                SA_RS(runs), SA_RS(failed), SA_RS(renewed), SA_RS(older),
                SA_RS(refused), SA_RS(heard), SA_RS(versions),
                SA_RS(subscribed), SA_RS(restarts), SA_RS(rec_renewed),
                SA_RS(rec_older), SA_RS(rec_refused), SA_RS(rec_unsigned),
                SA_RS(tok_unheard));
#undef SA_RS
    }

    fclose(f);
    return buf;
}


static const char *
sa_conn_header(struct MHD_Connection *conn, const char *name)
{
    return MHD_lookup_connection_value(conn, MHD_HEADER_KIND, name);
}


typedef struct {
    const char  *name;
    int          n;
} sa_hcount_t;


static enum MHD_Result
sa_hcount_one(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
    sa_hcount_t  *hc = cls;

    (void) kind;
    (void) value;

    if (strcasecmp(key, hc->name) == 0) {
        hc->n++;
    }
    return MHD_YES;
}


/*
 * How often the request names a header.  libmicrohttpd's lookup gives the
 * first of several: a header that decides who calls or where a write
 * comes from must be there once, or a client's own copy put before a
 * proxy's (a proxy that adds instead of replacing) would be the one read.
 */
static int
sa_conn_header_count(struct MHD_Connection *conn, const char *name)
{
    sa_hcount_t  hc = { name, 0 };

    MHD_get_connection_values(conn, MHD_HEADER_KIND, sa_hcount_one, &hc);
    return hc.n;
}


/* queues r's answer with the headers every answer carries */
static enum MHD_Result
sa_send(sa_req_t *r)
{
    struct MHD_Response  *resp;
    enum MHD_Result       rc;
    const char           *ctype;
    json_t               *m;
    size_t                i;

    resp = MHD_create_response_from_buffer(strlen(r->answer), r->answer,
                                           MHD_RESPMEM_MUST_COPY);
    if (resp == NULL) {
        return MHD_NO;
    }

    ctype = r->problem ? "application/problem+json"
            : r->route && r->route->kind == SA_ROUTE_METRICS
            ? "text/plain; version=0.0.4; charset=utf-8" : "application/json";
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "Content-Security-Policy",
                            "default-src 'none'; frame-ancestors 'none'");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Cross-Origin-Resource-Policy",
                            "same-origin");

    if (r->status == 401) {
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    }
    if (r->status == 503) {
        MHD_add_response_header(resp, "Retry-After", "1");
    }
    if (r->status == 405 && r->allow != NULL) {
        MHD_add_response_header(resp, "Allow", r->allow);
    }
    json_array_foreach(r->messages, i, m) {
        MHD_add_response_header(resp, "Sa-Admin-Message",
                                json_string_value(m));
    }

    rc = MHD_queue_response(r->conn, (unsigned) r->status, resp);
    MHD_destroy_response(resp);

    if (!r->sent) {
        r->sent = 1;
        sa_metrics_count(r);
    }

    return rc;
}


/* a worker's answer (pool.c): the connection goes on */
void
sa_http_answered(sa_serve_t *s, sa_req_t *r, int status, char *body,
    int problem)
{
    (void) s;

    free(r->answer);
    r->answer = body;
    r->status = status;
    r->problem = problem;
    if (status == 401) {
        sa_metrics_auth_failure();
    }

    if (r->suspended) {
        r->suspended = 0;
        MHD_resume_connection(r->conn);
    }
}


/* ------------------------------------------------------------ requests */

typedef struct {
    sa_req_t  *r;
    int        bad;
    char       field[80];
} sa_query_t;


static enum MHD_Result
sa_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
    sa_query_t  *q = cls;
    char        *k, *v;

    (void) kind;

    k = sa_xstrdup(key);
    v = sa_xstrdup(value ? value : "");
    if (sa_pct_decode(k, 1) != 0 || sa_pct_decode(v, 1) != 0) {
        q->bad = 1;
        snprintf(q->field, sizeof(q->field), "%s", "");

    } else if (json_object_get(q->r->in, k) != NULL) {
        q->bad = 2;
        snprintf(q->field, sizeof(q->field), "%s", k);

    } else if (json_object_set_new(q->r->in, k, json_string(v)) != 0) {
        q->bad = 1;             /* no UTF-8: the field would be dropped */
    }

    free(k);
    free(v);
    return q->bad ? MHD_NO : MHD_YES;
}


static int
sa_is_write(const char *method)
{
    return strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0
           || strcmp(method, "DELETE") == 0 || strcmp(method, "PATCH") == 0;
}


/* application/json, parameters allowed ("; charset=utf-8") */
static int
sa_is_json(const char *ctype)
{
    size_t  n = strlen("application/json");

    return ctype != NULL && strncasecmp(ctype, "application/json", n) == 0
           && (ctype[n] == '\0' || ctype[n] == ';' || ctype[n] == ' ');
}


/*
 * A write from a page of another site is refused (issue 22, item 5): when
 * the browser says where the request comes from, it must be this origin.
 */
static const char *
sa_cross_site(struct MHD_Connection *conn)
{
    const char  *site, *origin, *host, *o;

    if (sa_conn_header_count(conn, "Sec-Fetch-Site") > 1
        || sa_conn_header_count(conn, "Origin") > 1
        || sa_conn_header_count(conn, "Host") > 1)
    {
        return "Origin, Host or Sec-Fetch-Site given more than once";
    }

    site = sa_conn_header(conn, "Sec-Fetch-Site");
    if (site != NULL && strcasecmp(site, "same-origin") != 0
        && strcasecmp(site, "none") != 0)
    {
        return "Sec-Fetch-Site is not same-origin";
    }

    origin = sa_conn_header(conn, "Origin");
    if (origin == NULL) {
        return NULL;
    }

    host = sa_conn_header(conn, "Host");
    if (host == NULL) {
        return "Origin without Host";
    }
    o = strncasecmp(origin, "https://", 8) == 0 ? origin + 8
        : strncasecmp(origin, "http://", 7) == 0 ? origin + 7 : NULL;
    if (o == NULL || strcasecmp(o, host) != 0) {
        return "Origin is not this origin";
    }

    return NULL;
}


static void
sa_peer(struct MHD_Connection *conn, sa_req_t *r)
{
    const union MHD_ConnectionInfo  *ci;
    const struct sockaddr           *sa;
    char                             a[INET6_ADDRSTRLEN];

    snprintf(r->peer, sizeof(r->peer), "%s", "unix");
    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (ci == NULL || ci->client_addr == NULL) {
        return;
    }
    sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *) sa)->sin_addr, a,
                  sizeof(a));
        snprintf(r->peer, sizeof(r->peer), "%s", a);
    } else if (sa->sa_family == AF_INET6) {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *) sa)->sin6_addr, a,
                  sizeof(a));
        snprintf(r->peer, sizeof(r->peer), "%s", a);
    }
}


static sa_conn_t *
sa_conn_of(struct MHD_Connection *conn)
{
    const union MHD_ConnectionInfo  *ci;

    ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}


/* the first call: the headers are in; what can be judged without the body */
static sa_req_t *
sa_req_begin(sa_listener_t *l, struct MHD_Connection *conn, const char *url,
    const char *method)
{
    static char          allow[128];
    static sa_lograte_t  ignored_rate;
    sa_req_t            *r;
    sa_query_t     q;
    const char    *v, *why;
    sa_conn_t     *c;
    int            ix;

    r = sa_xcalloc(1, sizeof(*r));
    r->l = l;
    r->conn = conn;
    r->start = sa_mono();
    r->in = json_object();
    sa_peer(conn, r);
    sa_serve.inflight++;

    c = sa_conn_of(conn);
    if (c != NULL) {
        c->busy = 0;        /* the body may still trickle: the deadline runs */
    }

    /*
     * Where the body ends must be beyond doubt: a front proxy that reads
     * it otherwise than libmicrohttpd (which takes Transfer-Encoding over
     * Content-Length, and the first of two Content-Lengths) would hand
     * serve a request of its own making inside another's body (request
     * smuggling).  Refused, and the connection closed with the answer.
     */
    if (sa_conn_header_count(conn, MHD_HTTP_HEADER_CONTENT_LENGTH) > 1
        || (sa_conn_header(conn, MHD_HTTP_HEADER_CONTENT_LENGTH) != NULL
            && sa_conn_header(conn, MHD_HTTP_HEADER_TRANSFER_ENCODING)
               != NULL))
    {
        sa_answer_problem(r, 400, "input", 1, "Content-Length given twice, "
                          "or with Transfer-Encoding");
        r->close_now = 1;
        return r;
    }

    v = sa_conn_header(conn, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (v != NULL && strtoull(v, NULL, 10) > SA_SERVE_BODY_MAX) {
        sa_answer_problem(r, 413, "too-large", 1, "the body is larger than "
                          "%d bytes", SA_SERVE_BODY_MAX);
        r->close_now = 1;
        return r;
    }

    ix = sa_route_match(method, url, r->in, allow, sizeof(allow));
    if (ix == -1 && sa_console_wants(&sa_serve, url)) {
        r->console = 1;
        return r;
    }
    if (ix == -1) {
        sa_answer_problem(r, 404, "not-found", 2, "no route %s %s",
                          sa_vis(method), sa_vis(url));
        return r;
    }
    if (ix == -2) {
        r->allow = allow;
        sa_answer_problem(r, 405, "method-not-allowed", 1, "%s is not allowed "
                          "on %s (allowed: %s)", sa_vis(method), sa_vis(url),
                          allow);
        return r;
    }
    if (ix == -3) {
        sa_answer_problem(r, 400, "input", 1, "malformed path '%s'",
                          sa_vis(url));
        return r;
    }
    r->route = &sa_routes[ix];
    r->route_ix = ix;

    memset(&q, 0, sizeof(q));
    q.r = r;
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, sa_query_arg, &q);
    if (q.bad == 1) {
        sa_answer_problem(r, 400, "input", 1, "malformed query string");
        return r;
    }
    if (q.bad == 2) {
        sa_answer_problem(r, 400, "input", 1, "field '%s' given twice",
                          q.field);
        return r;
    }

    if (sa_is_write(method)) {
        if (!sa_is_json(sa_conn_header(conn, "Content-Type"))
            || sa_conn_header_count(conn, "Content-Type") > 1)
        {
            sa_answer_problem(r, 415, "unsupported-media-type", 1,
                              "a %s needs Content-Type: application/json",
                              method);
            return r;
        }
        why = sa_cross_site(conn);
        if (why != NULL) {
            sa_answer_problem(r, 403, "forbidden", 2, "cross-site write "
                              "refused: %s", why);
            return r;
        }
    }

    if (r->route->authn) {
        v = sa_conn_header(conn, MHD_HTTP_HEADER_AUTHORIZATION);
        if (v != NULL
            && sa_conn_header_count(conn, MHD_HTTP_HEADER_AUTHORIZATION) > 1)
        {
            /* which one a proxy in front judged is anyone's guess */
            sa_metrics_auth_failure();
            sa_serve_log_rated(&ignored_rate, "401 from %s: Authorization "
                               "given more than once", r->peer);
            sa_answer_problem(r, 401, "unauthenticated", 2, "the "
                              "Authorization header is given more than once");
            return r;
        }
        r->auth = v ? sa_xstrdup(v) : NULL;
        v = sa_conn_header(conn, sa_serve.user_header);
        if (v != NULL && l->trusted
            && sa_conn_header_count(conn, sa_serve.user_header) > 1)
        {
            sa_metrics_auth_failure();
            sa_serve_log_rated(&ignored_rate, "401 from %s: %s given more "
                               "than once", r->peer, sa_serve.user_header);
            sa_answer_problem(r, 401, "unauthenticated", 2, "the user "
                              "header is given more than once");
            return r;
        }
        if (v != NULL && l->trusted) {
            r->user = sa_xstrdup(v);
        } else if (v != NULL) {
            sa_metrics.refused_header++;
            sa_serve_log_rated(&ignored_rate, "%s from %s on %s: %s ignored (not a trusted "
                         "listener)", sa_vis(url), r->peer, l->addr,
                         sa_serve.user_header);
        }
    }

    return r;
}


/* the body is in: its JSON, then a worker (or the parent's own answer) */
static void
sa_req_ready(sa_serve_t *s, sa_req_t *r)
{
    json_t        *body;
    json_error_t   err;
    const char    *k;
    json_t        *v;

    if (r->route->kind == SA_ROUTE_METRICS) {
        r->answer = sa_metrics_text(s);
        r->status = 200;
        return;
    }

    if (r->route->kind == SA_ROUTE_OPENAPI) {
        r->answer = sa_openapi_text();
        r->status = 200;
        return;
    }

    if (sa_is_write(r->route->method) && r->len > 0) {
        body = json_loadb(r->body, r->len, JSON_REJECT_DUPLICATES, &err);
        if (body == NULL) {
            sa_answer_problem(r, 400, "input", 1, "the body is no JSON: %s "
                              "(at byte %d)", err.text, err.position);
            return;
        }
        if (!json_is_object(body)) {
            json_decref(body);
            sa_answer_problem(r, 400, "input", 1, "the body is no JSON "
                              "object");
            return;
        }
        json_object_foreach(r->in, k, v) {
            if (json_object_get(body, k) != NULL) {
                json_decref(body);
                sa_answer_problem(r, 400, "input", 1, "field '%s' given in "
                                  "the path or query and in the body", k);
                return;
            }
        }
        json_object_update(body, r->in);
        json_decref(r->in);
        r->in = body;
    }

    sa_pool_dispatch(s, r);
}


static enum MHD_Result
sa_access(void *cls, struct MHD_Connection *conn, const char *url,
    const char *method, const char *version, const char *data, size_t *size,
    void **ctx)
{
    sa_listener_t  *l = cls;
    sa_req_t       *r = *ctx;
    sa_conn_t      *c;

    (void) version;

    if (r == NULL) {
        r = sa_req_begin(l, conn, url, method);
        *ctx = r;
        if (r->console) {
            int  rc;

            rc = sa_console_send(&sa_serve, conn, url, method, &r->status);
            r->sent = 1;
            sa_metrics_count(r);
            return rc == MHD_YES ? MHD_YES : MHD_NO;
        }
        /*
         * An answer the headers decided (404, 405, 415, the browser
         * checks) waits for a body of a Content-Length (at most the
         * limit: else 413 above), read and dropped: queued before it,
         * libmicrohttpd closes the connection, and pipelined requests
         * after this one would go unanswered.  What must close (413, an
         * ambiguous length) goes at once, and so does the answer to a
         * chunked body, whose size is unknown (libmicrohttpd 0.9.75
         * cannot answer in the middle of a body).
         */
        if (r->status) {
            return r->close_now
                   || sa_conn_header(conn, MHD_HTTP_HEADER_TRANSFER_ENCODING)
                      != NULL
                   ? sa_send(r) : MHD_YES;
        }
        return MHD_YES;
    }

    if (r->status || r->console) {
        if (*size) {
            *size = 0;             /* a body after the answer: dropped */
            return MHD_YES;
        }
        return r->sent ? MHD_YES : sa_send(r);
    }

    if (*size) {
        if (r->len + *size > SA_SERVE_BODY_MAX) {
            *size = 0;
            sa_answer_problem(r, 413, "too-large", 1, "the body is larger "
                              "than %d bytes", SA_SERVE_BODY_MAX);
            return sa_send(r);
        }
        if (r->len + *size > r->cap) {
            r->cap = (r->len + *size) * 2;
            r->body = sa_xrealloc(r->body, r->cap);
        }
        memcpy(r->body + r->len, data, *size);
        r->len += *size;
        *size = 0;
        return MHD_YES;
    }

    if (r->dispatched) {
        /* resumed without an answer: cannot happen */
        return MHD_YES;
    }

    c = sa_conn_of(conn);
    if (c != NULL) {
        c->busy = 1;
    }

    sa_req_ready(&sa_serve, r);
    if (r->status) {
        return sa_send(r);
    }

    r->suspended = 1;
    MHD_suspend_connection(conn);
    return MHD_YES;
}


static void
sa_completed(void *cls, struct MHD_Connection *conn, void **ctx,
    enum MHD_RequestTerminationCode toe)
{
    sa_req_t   *r = *ctx;
    sa_conn_t  *c;

    (void) cls;
    (void) toe;

    c = sa_conn_of(conn);
    if (c != NULL) {
        c->busy = 0;
        c->since = sa_mono();
    }

    if (r == NULL) {
        return;
    }

    if (!r->sent && r->status == 0) {
        r->status = 499;      /* the client left first */
        r->sent = 1;
        sa_metrics_count(r);
    }

    sa_pool_forget(&sa_serve, r);
    sa_serve.inflight--;
    json_decref(r->in);
    json_decref(r->messages);
    free(r->body);
    free(r->answer);
    free(r->auth);
    free(r->user);
    free(r);
    *ctx = NULL;
}


static void
sa_notify_conn(void *cls, struct MHD_Connection *conn, void **socket_ctx,
    enum MHD_ConnectionNotificationCode toe)
{
    const union MHD_ConnectionInfo  *ci;
    sa_serve_t                      *s = &sa_serve;
    sa_conn_t                       *c;

    (void) cls;

    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        c = sa_xcalloc(1, sizeof(*c));
        ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        c->fd = ci ? ci->connect_fd : -1;
        c->since = sa_mono();
        c->next = s->conns;
        if (s->conns) {
            s->conns->prev = c;
        }
        s->conns = c;
        s->nconns++;
        *socket_ctx = c;
        return;
    }

    c = *socket_ctx;
    if (c == NULL) {
        return;
    }
    if (c->prev) {
        c->prev->next = c->next;
    } else {
        s->conns = c->next;
    }
    if (c->next) {
        c->next->prev = c->prev;
    }
    s->nconns--;
    free(c);
    *socket_ctx = NULL;
}


/* names and query values are decoded per field, after the split */
static size_t
sa_unescape_none(void *cls, struct MHD_Connection *c, char *s)
{
    (void) cls;
    (void) c;
    return strlen(s);
}


static void
sa_mhd_log(void *cls, const char *fmt, va_list ap)
{
    static double  last;
    static int     dropped;
    double         now = sa_mono();
    char           line[512];
    size_t         n;

    (void) cls;

    /* a flood of refused connections is one line a second */
    if (now - last < 1.0) {
        dropped++;
        return;
    }
    last = now;

    vsnprintf(line, sizeof(line), fmt, ap);
    n = strlen(line);
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) {
        line[--n] = '\0';
    }
    if (dropped) {
        sa_serve_log("%s (and %d more messages)", line, dropped);
        dropped = 0;
    } else {
        sa_serve_log("%s", line);
    }
}


/*
 * --max-connections bounds the open connections of all listeners together
 * (they are all in this process; the workers hold none): one more is
 * closed at once, counted
 */
static enum MHD_Result
sa_accept_policy(void *cls, const struct sockaddr *addr, socklen_t len)
{
    sa_serve_t  *s = &sa_serve;

    (void) cls;
    (void) addr;
    (void) len;

    if (s->nconns >= s->max_conns) {
        sa_metrics.refused_conns++;
        return MHD_NO;
    }

    return MHD_YES;
}


int
sa_http_start(sa_serve_t *s, sa_listener_t *l)
{
    const union MHD_DaemonInfo  *di;

    l->mhd = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG,
        0, sa_accept_policy, NULL, sa_access, l,
        MHD_OPTION_EXTERNAL_LOGGER, sa_mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket) l->fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int) s->max_conns,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) s->timeout,
        MHD_OPTION_NOTIFY_COMPLETED, sa_completed, l,
        MHD_OPTION_NOTIFY_CONNECTION, sa_notify_conn, l,
        MHD_OPTION_UNESCAPE_CALLBACK, sa_unescape_none, NULL,
        MHD_OPTION_END);
    if (l->mhd == NULL) {
        return -1;
    }

    di = MHD_get_daemon_info(l->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    if (di == NULL) {
        return -1;
    }
    l->epfd = di->epoll_fd;

    return 0;
}
