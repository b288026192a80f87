/*
 * sa-admin token usage, account usage (issue 25, item 5): what the gateways
 * counted per token and UTC day, read from the day's hash
 * <prefix>usage:<YYYYMMDD>, fields <id>:<verdict> (written by the module's
 * sync, ngx_sa_module/ngx_http_sa_sync.c, kept 90 days): one HMGET per day
 * and SA_USAGE_SLICE tokens, in one pipeline.  The counts are not signed:
 * a value that is not a count is read as 0 and said on stderr, a key of
 * another type is a day without counts.
 */

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "records.h"
#include "perm.h"
#include "redis.h"
#include "util.h"
#include "ops.h"
#include "xalloc.h"

#define SA_USAGE_DAYS_MAX  90
#define SA_USAGE_DAYS      30

/* a sum of counts stops here (json_int_t is long long) */
#define SA_USAGE_COUNT_MAX  ((json_int_t) LLONG_MAX)

/* tokens per HMGET (each asks for all the verdicts) */
#define SA_USAGE_SLICE     500

/* the verdicts counted, as the gateway names them ("admitted": ok) */
static const char  *sa_usage_fields[] = {
    "admitted", "rate_limited", "quota_exceeded", "forbidden_source",
    "insufficient_scope", "forbidden_application", "expired", "revoked",
    "lapsed", NULL
};

#define SA_USAGE_NFIELDS  (sizeof(sa_usage_fields) / sizeof(char *) - 1)


/* in's "days": 1 to 90, SA_USAGE_DAYS when absent (an integer or digits) */
static int
sa_in_days(json_t *in)
{
    json_t      *v = json_object_get(in, "days");
    const char  *s = NULL;
    char        *end = "";
    long long    n = 0;

    if (v == NULL) {
        return SA_USAGE_DAYS;
    }

    if (json_is_integer(v)) {
        n = json_integer_value(v);

    } else if (json_is_string(v)) {
        s = json_string_value(v);
        errno = 0;
        n = strtoll(s, &end, 10);
        if (errno != 0 || end == s || *s < '0' || *s > '9') {
            end = "x";
        }

    } else {
        sa_die_kind(SA_ERR_INPUT, "field 'days' must be an integer");
    }

    if (*end != '\0' || n < 1 || n > SA_USAGE_DAYS_MAX) {
        if (s != NULL) {
            sa_die_kind(SA_ERR_INPUT, "invalid days '%s' (expected 1 to %d)",
                        s, SA_USAGE_DAYS_MAX);
        }
        sa_die_kind(SA_ERR_INPUT, "invalid days %lld (expected 1 to %d)", n,
                    SA_USAGE_DAYS_MAX);
    }

    return (int) n;
}


/* a row of zero counts, with refused */
static json_t *
sa_usage_row(void)
{
    json_t       *row = json_object();
    const char  **f;

    for (f = sa_usage_fields; *f != NULL; f++) {
        json_object_set_new(row, *f, json_integer(0));
    }
    json_object_set_new(row, "refused", json_integer(0));

    return row;
}


/*
 * adds the counts of from into to (both rows, counts >= 0), saturating: a
 * Redis writer's 2^52 in every field of many days and tokens stops at
 * SA_USAGE_COUNT_MAX instead of wrapping negative
 */
static void
sa_usage_add(json_t *to, json_t *from)
{
    const char  *k;
    json_t      *v;
    json_int_t   a, b;

    json_object_foreach(from, k, v) {
        if (json_is_integer(v) && json_object_get(to, k) != NULL) {
            a = json_integer_value(json_object_get(to, k));
            b = json_integer_value(v);
            json_object_set_new(to, k, json_integer(
                b > SA_USAGE_COUNT_MAX - a ? SA_USAGE_COUNT_MAX : a + b));
        }
    }
}


/* the day i days before now, as YYYYMMDD and YYYY-MM-DD */
static void
sa_usage_day(int64_t now, int i, char key[9], char date[11])
{
    time_t     t = (time_t) (now - (int64_t) i * 86400);
    struct tm  tm;

    gmtime_r(&t, &tm);
    strftime(key, 9, "%Y%m%d", &tm);
    strftime(date, 11, "%Y-%m-%d", &tm);
}


/*
 * A token's slice of a day's HMGET reply (SA_USAGE_NFIELDS values, in the
 * order of sa_usage_fields) as a row; 1 when it counted anything.
 */
static int
sa_usage_parse(redisReply **el, const char *tid, const char *date,
    json_t *row)
{
    size_t       i;
    long long    n;
    char        *end;
    int          any = 0;
    json_int_t   refused = 0;

    for (i = 0; i < SA_USAGE_NFIELDS; i++) {
        if (el[i]->type != REDIS_REPLY_STRING) {
            continue;                   /* nil: none of this verdict */
        }

        errno = 0;
        n = strtoll(el[i]->str, &end, 10);
        if (errno != 0 || *end != '\0' || el[i]->str[0] < '0'
            || el[i]->str[0] > '9' || n > (1LL << 52))
        {
            fprintf(stderr, "sa-admin: usage of token %s on %s: '%s' is not "
                    "a count: read as 0\n", tid, date, sa_usage_fields[i]);
            continue;
        }

        json_object_set_new(row, sa_usage_fields[i], json_integer(n));
        if (i != 0) {
            refused += n;
        }
        any |= n > 0;
    }

    json_object_set_new(row, "refused", json_integer(refused));
    return any;
}


/*
 * The usage of the n tokens ids over the last days, read in one pipeline
 * (per day, an HMGET of SA_USAGE_SLICE tokens' verdicts at a time):
 * out["usage"] (the days with any count, newest first, each {date, counts}
 * of all tokens together), out["total"]; per token, when tokens is not
 * NULL, {id, total, last_day} appended to it.
 */
static void
sa_usage_read(sa_admin_t *sa, char **ids, size_t n, int days, json_t *out,
    json_t *tokens)
{
    sa_args_t     args;
    redisReply   *r;
    size_t        t, s, e;
    int           d;
    int64_t       now = sa_now();
    char          key[9], date[11], **last;
    const char  **f;
    json_t      **byday, **ttotal, *total, *row, *day;

    for (d = 0; d < days; d++) {
        sa_usage_day(now, d, key, date);

        for (s = 0; s < n; s += SA_USAGE_SLICE) {
            e = s + SA_USAGE_SLICE < n ? s + SA_USAGE_SLICE : n;
            sa_args_init(&args);
            sa_args_add(&args, "HMGET");
            sa_args_addf(&args, "%s" "usage:%s", sa->prefix, key);
            for (t = s; t < e; t++) {
                for (f = sa_usage_fields; *f != NULL; f++) {
                    sa_args_addf(&args, "%s:%s", ids[t], *f);
                }
            }
            sa_xredis_append(sa, &args);
            sa_args_free(&args);
        }
    }

    byday = sa_xcalloc(days, sizeof(json_t *));
    ttotal = sa_xcalloc(n + 1, sizeof(json_t *));
    last = sa_xcalloc(n + 1, sizeof(char *));
    total = sa_usage_row();

    for (t = 0; t < n; t++) {
        ttotal[t] = sa_usage_row();
    }

    for (d = 0; d < days; d++) {
        sa_usage_day(now, d, key, date);

        for (s = 0; s < n; s += SA_USAGE_SLICE) {
            e = s + SA_USAGE_SLICE < n ? s + SA_USAGE_SLICE : n;
            r = sa_xredis_reply(sa);

            /* a key of another type (an error) or a short reply: no day */
            if (r->type != REDIS_REPLY_ARRAY
                || r->elements != (e - s) * SA_USAGE_NFIELDS)
            {
                freeReplyObject(r);
                continue;
            }

            for (t = s; t < e; t++) {
                row = sa_usage_row();

                if (sa_usage_parse(r->element + (t - s) * SA_USAGE_NFIELDS,
                                   ids[t], date, row))
                {
                    /* the days go newest first: the first is the last */
                    if (last[t] == NULL) {
                        last[t] = sa_xstrdup(date);
                    }
                    day = byday[d];
                    if (day == NULL) {
                        day = sa_usage_row();
                        json_object_set_new(day, "date", json_string(date));
                        byday[d] = day;
                    }
                    sa_usage_add(day, row);
                    sa_usage_add(ttotal[t], row);
                }

                json_decref(row);
            }

            freeReplyObject(r);
        }
    }

    for (t = 0; t < n; t++) {
        sa_usage_add(total, ttotal[t]);

        if (tokens != NULL) {
            json_array_append_new(tokens, json_pack("{s:s, s:o, s:o}",
                "id", ids[t], "total", ttotal[t],
                "last_day", last[t] ? json_string(last[t]) : json_null()));
        } else {
            json_decref(ttotal[t]);
        }
        free(last[t]);
    }
    free(ttotal);
    free(last);

    row = json_array();
    for (d = 0; d < days; d++) {
        if (byday[d] != NULL) {
            json_array_append_new(row, byday[d]);
        }
    }
    free(byday);

    json_object_set_new(out, "days", json_integer(days));
    json_object_set_new(out, "usage", row);
    json_object_set_new(out, "total", total);
}


/*
 * token.usage: in {id: token id, days?: 1..90 (30)}, a reader of the
 * token's team.  Out {token, account, days, usage: [{date, admitted,
 * rate_limited, ..., refused}] newest first, the days with any count,
 * total}.
 */
json_t *
sa_op_token_usage(sa_admin_t *sa, json_t *in)
{
    const char         *tid;
    sa_token_record_t  *rec;
    json_t             *out;
    char               *ids[1];
    int                 days;

    sa_in_only(in, "id", "days", NULL);
    tid = sa_in_str(in, "id", 1);

    if (strncmp(tid, "sat_", 4) == 0) {
        sa_die_kind(SA_ERR_INPUT, "give the token id (16 characters after "
                    "'sat_'), never the token itself");
    }
    if (!sa_token_id_valid(tid, strlen(tid))) {
        sa_die_kind(SA_ERR_INPUT, "invalid token id '%s'", tid);
    }

    days = sa_in_days(in);

    rec = sa_token_load_or_exit(sa, tid);
    if (rec == NULL) {
        sa_die_kind(SA_ERR_NOT_FOUND, "no token '%s'", tid);
    }
    sa_reader_or_exit(sa, rec->team.data);

    out = json_pack("{s:s, s:s}", "token", rec->id,
                    "account", rec->account.data);
    ids[0] = rec->id;
    sa_usage_read(sa, ids, 1, days, out, NULL);

    free(rec);
    return out;
}


/*
 * account.usage: in {id: account id or TEAM/NAME, days?}, a reader of its
 * team.  Out {account, days, usage (all its tokens), total, tokens: [{id,
 * total, last_day}]} for every token its index lists.
 */
json_t *
sa_op_account_usage(sa_admin_t *sa, json_t *in)
{
    sa_account_t    a;
    sa_token_set_t  ts;
    json_t         *out, *tokens;
    int             days;

    sa_in_only(in, "id", "days", NULL);
    days = sa_in_days(in);
    sa_account_load_or_exit(sa, sa_in_str(in, "id", 1), &a);
    sa_reader_or_exit(sa, a.team);
    sa_token_set_load(sa, a.id, &ts);

    out = json_pack("{s:s}", "account", a.id);
    tokens = json_array();
    sa_usage_read(sa, ts.ids, ts.n, days, out, tokens);
    json_object_set_new(out, "tokens", tokens);

    sa_token_set_free(&ts);
    sa_account_free(&a);
    return out;
}
