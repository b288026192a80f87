/*
 * sa-admin: the operations layer's machinery (ops.h): how an error ends
 * the process or the request, the kinds' exit codes, HTTP statuses and
 * names, the input helpers, and the CLI's call of an operation.
 */

#define _GNU_SOURCE              /* vasprintf */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sa_policy.h"
#include "ops.h"
#include "sa_scope.h"
#include "util.h"

sa_die_sink_pt  sa_die_sink;
json_t         *sa_die_partial;
int             sa_die_partial_whole;
void          (*sa_die_partial_show)(json_t *partial, int whole);
const char     *sa_die_usage_line;

static const struct {
    int          exit;
    int          status;
    const char  *name;
} sa_kinds[] = {
    { 3, 500, "internal" },             /* 0: not a kind */
    { 1, 400, "input" },
    { 2, 401, "unauthenticated" },
    { 2, 403, "forbidden" },
    { 2, 404, "not-found" },
    { 2, 409, "exists" },
    { 4, 409, "conflict" },
    { 3, 503, "unavailable" },
    { 3, 500, "internal" },
    { 3, 503, "stale-record" },
};

#define SA_KINDS  (sizeof(sa_kinds) / sizeof(sa_kinds[0]))

/* an error message is cut at about this many bytes */
#define SA_DIE_LINE_MAX  1024


static size_t
sa_kind_index(sa_err_kind_t kind)
{
    return (size_t) kind < SA_KINDS ? (size_t) kind : 0;
}


int
sa_err_exit(sa_err_kind_t kind)
{
    return sa_kinds[sa_kind_index(kind)].exit;
}


int
sa_err_status(sa_err_kind_t kind)
{
    return sa_kinds[sa_kind_index(kind)].status;
}


const char *
sa_err_name(sa_err_kind_t kind)
{
    return sa_kinds[sa_kind_index(kind)].name;
}


sa_err_kind_t
sa_err_kind_of_exit(int code)
{
    switch (code) {
    case SA_EXIT_USAGE:
        return SA_ERR_INPUT;
    case SA_EXIT_NOT_FOUND:
        return SA_ERR_NOT_FOUND;
    case SA_EXIT_UNAVAILABLE:
        return SA_ERR_UNAVAILABLE;
    case SA_EXIT_CONFLICT:
        return SA_ERR_CONFLICT;
    default:
        return SA_ERR_INTERNAL;
    }
}


/*
 * The message as one line for a terminal, a log or a problem's detail:
 * control bytes (C0, DEL) as \xNN, cut at about 1 kB ("...").  What the
 * caller typed (a 10 kB name, an escape sequence, a newline) is echoed by
 * many messages; this is the one place that bounds them all.
 */
static const char *
sa_die_line(const char *message)
{
    static char  line[SA_DIE_LINE_MAX + SA_ESCAPE_MORE];

    return sa_escape(line, message, SA_DIE_LINE_MAX, 0);
}


void
sa_die_message(sa_err_kind_t kind, int code, const char *message,
    const char *usage)
{
    message = sa_die_line(message);

    if (sa_die_sink != NULL) {
        sa_die_sink(kind, message);
    }

    if (json_array_size(sa_die_partial) > 0 && sa_die_partial_show != NULL) {
        sa_die_partial_show(sa_die_partial, sa_die_partial_whole);
    }

    fprintf(stderr, "sa-admin: %s\n", message);
    if (usage != NULL) {
        fprintf(stderr, "usage: sa-admin %s\n", usage);
    }

    exit(code);
}


void
sa_vdie(sa_err_kind_t kind, int code, const char *usage, const char *fmt,
    va_list ap)
{
    static char  *msg;         /* kept: a sink may longjmp (tests) */

    free(msg);
    if (vasprintf(&msg, fmt, ap) < 0) {
        msg = NULL;
    }

    sa_die_message(kind, code, msg ? msg : "out of memory", usage);
}


void
sa_die_kind(sa_err_kind_t kind, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    sa_vdie(kind, sa_err_exit(kind),
            kind == SA_ERR_INPUT ? sa_die_usage_line : NULL, fmt, ap);
}


/* the input: a JSON object, or SA_ERR_INPUT */
static void
sa_in_object(json_t *in)
{
    if (!json_is_object(in)) {
        sa_die_kind(SA_ERR_INPUT, "the input is not a JSON object");
    }
}


void
sa_in_only(json_t *in, ...)
{
    const char  *key, *name;
    json_t      *v;
    va_list      ap;
    int          known;

    sa_in_object(in);

    json_object_foreach(in, key, v) {
        known = 0;
        va_start(ap, in);
        while (!known && (name = va_arg(ap, const char *)) != NULL) {
            known = strcmp(name, key) == 0;
        }
        va_end(ap);

        if (!known) {
            sa_die_kind(SA_ERR_INPUT, "unknown field '%s'", sa_vis(key));
        }
    }
}


/* the field's value, or NULL when absent and optional */
static json_t *
sa_in_get(json_t *in, const char *field, int required)
{
    json_t  *v;

    sa_in_object(in);

    v = json_object_get(in, field);
    if ((v == NULL || json_is_null(v)) && required) {
        sa_die_kind(SA_ERR_INPUT, "missing field '%s'", field);
    }

    return json_is_null(v) ? NULL : v;
}


const char *
sa_in_str(json_t *in, const char *field, int required)
{
    json_t  *v = sa_in_get(in, field, required);

    if (v != NULL && !json_is_string(v)) {
        sa_die_kind(SA_ERR_INPUT, "field '%s' must be a string", field);
    }

    return json_string_value(v);
}


json_t *
sa_in_strs(json_t *in, const char *field, int required)
{
    json_t  *v = sa_in_get(in, field, required), *s;
    size_t   i;

    if (v == NULL) {
        return NULL;
    }

    if (!json_is_array(v)) {
        sa_die_kind(SA_ERR_INPUT, "field '%s' must be an array of strings",
                    field);
    }

    json_array_foreach(v, i, s) {
        if (!json_is_string(s)) {
            sa_die_kind(SA_ERR_INPUT, "field '%s' must be an array of "
                        "strings", field);
        }
    }

    return v;
}


const char *
sa_in_name(json_t *in, const char *field, int required,
    int (*valid)(const char *s), const char *what)
{
    const char  *s = sa_in_str(in, field, required);

    if (s != NULL && !valid(s)) {
        sa_die_kind(SA_ERR_INPUT, "invalid %s '%s'", what, s);
    }

    return s;
}


json_t *
sa_in_list(json_t *in, const char *field, int required,
    int (*valid)(const char *s, size_t len), const char *what,
    const char *expected)
{
    json_t      *arr, *out, *v;
    const char  *s;
    size_t       i;

    /* one string is a list of one: {"app": "a"} as {"apps": ["a"]} */
    v = sa_in_get(in, field, required);
    arr = json_is_string(v) ? NULL : sa_in_strs(in, field, required);

    out = json_array();

    for (i = 0; arr != NULL ? i < json_array_size(arr) : v != NULL && i < 1;
         i++)
    {
        if (arr != NULL) {
            v = json_array_get(arr, i);
        }
        s = json_string_value(v);
        if (!valid(s, json_string_length(v))
            || strlen(s) != json_string_length(v))
        {
            json_decref(out);
            sa_die_kind(SA_ERR_INPUT, "invalid %s '%s' (expected %s)", what,
                        s, expected);
        }
        sa_json_add_unique(out, s);
    }

    return out;
}


const char *
sa_in_app(json_t *in, int required)
{
    const char  *app = sa_in_str(in, "app", required);

    if (app != NULL && (strcmp(app, "*") == 0
                        || !sa_app_valid(app, strlen(app))))
    {
        sa_die_kind(SA_ERR_INPUT, "invalid application '%s' (expected "
                    "[A-Za-z0-9_.-], at most 64)", app);
    }

    return app;
}


const char *
sa_in_team(json_t *in, int required)
{
    return sa_in_name(in, "team", required, sa_name_valid, "team name");
}


int
sa_in_bool(json_t *in, const char *field, int dflt)
{
    json_t  *v = sa_in_get(in, field, 0);

    if (v == NULL) {
        return dflt;
    }

    if (!json_is_boolean(v)) {
        sa_die_kind(SA_ERR_INPUT, "field '%s' must be true or false", field);
    }

    return json_is_true(v);
}


json_t *
sa_json_sorted(json_t *arr, int (*cmp)(const void *a, const void *b))
{
    size_t    i, n = json_array_size(arr);
    json_t  **v, *out;

    v = calloc(n + 1, sizeof(json_t *));
    if (v == NULL) {
        sa_die_kind(SA_ERR_INTERNAL, "out of memory");
    }
    for (i = 0; i < n; i++) {
        v[i] = json_array_get(arr, i);
    }
    qsort(v, n, sizeof(json_t *), cmp);

    out = json_array();
    for (i = 0; i < n; i++) {
        json_array_append(out, v[i]);
    }

    free(v);
    json_decref(arr);
    return out;
}


/* a string field of two objects for qsort, "" for none */
static int
sa_cmp_field(const void *a, const void *b, const char *field)
{
    const char  *x, *y;

    x = json_string_value(json_object_get(*(json_t * const *) a, field));
    y = json_string_value(json_object_get(*(json_t * const *) b, field));

    return strcmp(x ? x : "", y ? y : "");
}


int
sa_cmp_by_name(const void *a, const void *b)
{
    return sa_cmp_field(a, b, "name");
}


int
sa_cmp_by_created(const void *a, const void *b)
{
    int  c = sa_cmp_field(a, b, "created_at");

    return c ? c : sa_cmp_field(a, b, "id");
}


static int
sa_in_none(json_t *v)
{
    return json_is_null(v)
           || (json_is_string(v) && strcmp(json_string_value(v), "none") == 0);
}


int
sa_in_policy(json_t *in, sa_policy_t *p)
{
    json_t       *rate, *burst, *quota, *from, *v;
    const char   *s;
    size_t        i;
    sa_net_t      net, canon;
    char          buf[SA_NET_STR_LEN];
    int           rc;

    rate = json_object_get(in, "rate");
    burst = json_object_get(in, "burst");
    quota = json_object_get(in, "quota");
    from = json_object_get(in, "allow_from");

    if (burst != NULL && (rate == NULL || sa_in_none(rate))) {
        sa_die_kind(SA_ERR_INPUT, "field 'burst' needs a 'rate'");
    }

    if (rate != NULL && sa_in_none(rate)) {
        p->rate = p->per = p->burst = 0;

    } else if (rate != NULL) {
        s = json_string_value(rate);
        if (s == NULL || sa_rate_parse(s, json_string_length(rate), &p->rate,
                                       &p->per) != 0)
        {
            sa_die_kind(SA_ERR_INPUT, "invalid rate '%s' (expected N/s, N/m "
                        "or N/h, N from 1 to %d, or none)", s ? s : "?",
                        SA_RATE_MAX);
        }
        p->burst = 0;
    }

    if (burst != NULL) {
        if (!json_is_integer(burst) || json_integer_value(burst) < 0
            || json_integer_value(burst) > SA_BURST_MAX)
        {
            sa_die_kind(SA_ERR_INPUT, "field 'burst' must be an integer from "
                        "0 to %d", SA_BURST_MAX);
        }
        p->burst = (uint32_t) json_integer_value(burst);
    }

    if (quota != NULL && sa_in_none(quota)) {
        p->quota = 0;
        p->quota_period = 0;

    } else if (quota != NULL) {
        s = json_string_value(quota);
        if (s == NULL || sa_quota_parse(s, json_string_length(quota),
                                        &p->quota, &p->quota_period) != 0)
        {
            sa_die_kind(SA_ERR_INPUT, "invalid quota '%s' (expected N/day or "
                        "N/month, or none)", s ? s : "?");
        }
    }

    if (from != NULL && sa_in_none(from)) {
        p->nnets = 0;

    } else if (from != NULL) {
        if (!json_is_array(from)) {
            sa_die_kind(SA_ERR_INPUT, "field 'allow_from' must be an array "
                        "of networks");
        }
        if (json_array_size(from) > SA_POLICY_MAX_NETS) {
            sa_die_kind(SA_ERR_INPUT, "at most %d networks in 'allow_from'",
                        SA_POLICY_MAX_NETS);
        }

        p->nnets = 0;
        json_array_foreach(from, i, v) {
            s = json_string_value(v);
            rc = s == NULL ? -1 : sa_net_parse(s, json_string_length(v),
                                               &net, &canon);
            if (rc == -2) {
                sa_net_format(&canon, buf);
                sa_die_kind(SA_ERR_INPUT, "network '%s' has host bits set "
                            "(the network is %s)", s, buf);
            }
            if (rc != 0) {
                sa_die_kind(SA_ERR_INPUT, "invalid network '%s' (expected an "
                            "IPv4 or IPv6 CIDR such as 10.0.0.0/8)",
                            s ? s : "?");
            }
            p->nets[p->nnets++] = net;
        }
    }

    return rate != NULL || burst != NULL || quota != NULL || from != NULL;
}
