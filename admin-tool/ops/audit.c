/*
 * sa-admin audit: the operations that read the log of every change, the
 * <prefix>audit stream, and verify it (audit.h).
 */

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "records.h"
#include "redis.h"
#include "util.h"
#include "perm.h"
#include "ops.h"

#define SA_AUDIT_BATCH  1000
#define SA_AUDIT_LIMIT  1000            /* the largest limit= */


typedef struct {
    const char  *team;          /* NULL: every team */
    const char  *actor;         /* NULL: every actor */
    json_t      *targets;       /* an object whose keys are the targets
                                   to keep; NULL: every target */
    size_t       limit;         /* 0: no limit */
    size_t       n;             /* entries kept so far */
} sa_audit_filter_t;


/* appends the entries of one XRANGE (XREVRANGE) reply that pass f, until
 * f's limit; returns the last entry's id read, NULL when none or done */
static const char *
sa_audit_entries(redisReply *r, sa_audit_filter_t *f, json_t *out)
{
    size_t       i;
    redisReply  *fl;
    const char  *last = NULL;
    json_t      *e;

    for (i = 0; i < r->elements; i++) {
        if (f->limit && f->n == f->limit) {
            return NULL;
        }

        last = r->element[i]->element[0]->str;
        fl = r->element[i]->element[1];

        if ((f->team != NULL && strcmp(sa_audit_field(fl, "team"), f->team))
            || (f->actor != NULL
                && strcmp(sa_audit_field(fl, "actor"), f->actor))
            || (f->targets != NULL
                && json_object_get(f->targets,
                                   sa_audit_field(fl, "target")) == NULL))
        {
            continue;
        }

        e = json_pack("{s:s, s:o, s:s, s:s, s:s, s:s}",
            "id", last,
            "time", sa_time_json(strtoll(sa_audit_field(fl, "time"), NULL,
                                         10)),
            "actor", sa_audit_field(fl, "actor"),
            "action", sa_audit_field(fl, "action"),
            "target", sa_audit_field(fl, "target"),
            "team", sa_audit_field(fl, "team"));
        /* how the actor was proven, and the channel (entries since then) */
        if (*sa_audit_field(fl, "proof") != '\0') {
            json_object_set_new(e, "proof",
                                json_string(sa_audit_field(fl, "proof")));
            json_object_set_new(e, "channel",
                                json_string(sa_audit_field(fl, "channel")));
        }
        json_array_append_new(out, e);
        f->n++;
    }

    return f->limit && f->n == f->limit ? NULL : last;
}


/* an entry id of the stream, "<ms>-<seq>", as its two numbers; or exit */
static void
sa_in_entry_id(json_t *in, const char *field, unsigned long long *ms,
    unsigned long long *seq)
{
    const char  *s = sa_in_str(in, field, 0), *p;
    char        *end;
    size_t       digits = 0;

    if (s == NULL) {
        return;
    }

    for (p = s; *p; p++) {
        digits += *p >= '0' && *p <= '9';
    }
    errno = 0;
    *ms = strtoull(s, &end, 10);
    if (digits + 1 != strlen(s) || end == s || *end != '-' || end[1] == '\0'
        || errno != 0 || strlen(s) > 41)
    {
        sa_die_kind(SA_ERR_INPUT, "invalid %s '%s' (expected an entry id, "
                    "as 1764770000000-0)", field, s);
    }
    *seq = strtoull(end + 1, &end, 10);
    if (*end != '\0' || errno != 0) {
        sa_die_kind(SA_ERR_INPUT, "invalid %s '%s' (expected an entry id, "
                    "as 1764770000000-0)", field, s);
    }
}


/*
 * The targets of the entries about an account (ref: an id or TEAM/NAME):
 * its id, its tokens', its user name as a team member.  An id with no
 * account (deleted since): the entries that name the id.
 */
static json_t *
sa_audit_account_targets(sa_admin_t *sa, const char *ref)
{
    sa_account_t   a;
    redisReply    *r, *t;
    json_t        *set = json_object();
    size_t         i;

    if (strchr(ref, '/') == NULL && sa_token_id_valid(ref, strlen(ref))) {
        r = sa_xredis_cmd(sa, "EXISTS %s", sa_key(sa, SA_KEY_ACCOUNT, ref));
        i = r->type == REDIS_REPLY_INTEGER ? (size_t) r->integer : 1;
        freeReplyObject(r);
        if (i == 0) {
            json_object_set_new(set, ref, json_true());
            return set;
        }
    }

    sa_account_load_or_exit(sa, ref, &a);
    sa_reader_or_exit(sa, a.team);

    json_object_set_new(set, a.id, json_true());
    json_object_set_new(set, a.email, json_true());

    r = sa_xredis_cmd(sa, "SMEMBERS %s%s", sa_key(sa, SA_KEY_ACCOUNT, a.id),
                      SA_KEY_TOKENS);
    for (i = 0; r->type == REDIS_REPLY_ARRAY && i < r->elements; i++) {
        t = r->element[i];
        if (t->type == REDIS_REPLY_STRING) {
            json_object_set_new(set, t->str, json_true());
        }
    }
    freeReplyObject(r);
    sa_account_free(&a);

    return set;
}


/*
 * audit.list: GET /v1/audit
 *   team     string: only this team's entries
 *   since    string: a duration ago ("24h", "7d"), unix seconds, or a UTC
 *            date ("2026-11-26", "2026-11-26T09:00:00Z")
 *   account  string: only the entries about this service account (an id
 *            or TEAM/NAME): its own changes, its tokens', its membership;
 *            the id of an account deleted since: the entries naming it
 *   actor    string: only this actor's entries (exact)
 *   order    "oldest" (default) or "newest": which come first
 *   limit    string or integer, 1 to 1000: at most that many entries, the
 *            first ones in that order
 *   before   string, an entry's id: only the entries older than it
 *   after    string, an entry's id: only the entries newer than it
 * Returns the entries: an array of {"id", "time", "actor", "action",
 * "target", "team"}, and "proof", "channel" in entries that record them.
 * An entry's id (the stream's, "<ms>-<n>", growing) is the cursor: the
 * page older than a page shown newest first is order=newest&before=<its
 * last id>, the page newer than it order=oldest&after=<its first id>
 * (shown reversed); entries added meanwhile never shift a page.
 */
json_t *
sa_op_audit_list(sa_admin_t *sa, json_t *in)
{
    sa_audit_filter_t    f;
    unsigned long long   bms = 0, bseq = 0, ams = 0, aseq = 0;
    json_t              *out, *v;
    redisReply          *r;
    char                 lo[64], hi[64];
    const char          *last, *s, *order, *account;
    char                *end;
    long long            n;
    int64_t              since = 0;
    int                  newest, have_before, have_after;

    sa_in_only(in, "team", "since", "account", "actor", "order", "limit",
               "before", "after", NULL);
    memset(&f, 0, sizeof(f));
    f.team = sa_in_str(in, "team", 0);
    if (f.team != NULL) {
        sa_reader_or_exit(sa, f.team);
    } else {
        sa_all_reader_or_exit(sa, "the audit");
    }
    s = sa_in_str(in, "since", 0);
    if (s != NULL) {
        since = sa_time_parse(s, sa_now());
        if (since < 0) {
            sa_die_kind(SA_ERR_INPUT, "invalid time '%s'", s);
        }
    }

    f.actor = sa_in_str(in, "actor", 0);
    if (f.actor != NULL && *f.actor == '\0') {
        sa_die_kind(SA_ERR_INPUT, "invalid actor '' (expected a user name)");
    }

    order = sa_in_str(in, "order", 0);
    if (order != NULL && strcmp(order, "oldest") && strcmp(order, "newest")) {
        sa_die_kind(SA_ERR_INPUT, "invalid order '%s' (expected oldest or "
                    "newest)", order);
    }
    newest = order != NULL && strcmp(order, "newest") == 0;

    v = json_object_get(in, "limit");
    if (v != NULL) {
        if (json_is_integer(v)) {
            n = json_integer_value(v);
            end = "";
        } else if (json_is_string(v)) {
            s = json_string_value(v);
            errno = 0;
            n = strtoll(s, &end, 10);
            if (errno != 0 || end == s || *s < '0' || *s > '9') {
                end = "x";
            }
        } else {
            sa_die_kind(SA_ERR_INPUT, "field 'limit' must be an integer");
        }
        if (*end != '\0' || n < 1 || n > SA_AUDIT_LIMIT) {
            if (json_is_integer(v)) {
                sa_die_kind(SA_ERR_INPUT, "invalid limit %lld (expected 1 to "
                            "%d)", n, SA_AUDIT_LIMIT);
            }
            sa_die_kind(SA_ERR_INPUT, "invalid limit '%s' (expected 1 to %d)",
                        s, SA_AUDIT_LIMIT);
        }
        f.limit = (size_t) n;
    }

    have_before = json_object_get(in, "before") != NULL;
    have_after = json_object_get(in, "after") != NULL;
    sa_in_entry_id(in, "before", &bms, &bseq);
    sa_in_entry_id(in, "after", &ams, &aseq);

    account = sa_in_str(in, "account", 0);
    if (account != NULL) {
        f.targets = sa_audit_account_targets(sa, account);
    }

    /* the range: lo from since and after, hi from before */
    if (have_after && ams >= (unsigned long long) since * 1000) {
        snprintf(lo, sizeof(lo), "(%llu-%llu", ams, aseq);
    } else {
        snprintf(lo, sizeof(lo), "%lld", (long long) since * 1000);
    }
    if (have_before) {
        snprintf(hi, sizeof(hi), "(%llu-%llu", bms, bseq);
    } else {
        snprintf(hi, sizeof(hi), "+");
    }

    out = json_array();

    /* nothing before the first id, after the last: Redis refuses them */
    if ((have_before && bms == 0 && bseq == 0)
        || (have_after && ams == ULLONG_MAX && aseq == ULLONG_MAX))
    {
        json_decref(f.targets);
        return out;
    }

    for ( ;; ) {
        r = newest
            ? sa_xredis_cmd(sa, "XREVRANGE %s" SA_KEY_AUDIT " %s %s COUNT %d",
                            sa->prefix, hi, lo, SA_AUDIT_BATCH)
            : sa_xredis_cmd(sa, "XRANGE %s" SA_KEY_AUDIT " %s %s COUNT %d",
                            sa->prefix, lo, hi, SA_AUDIT_BATCH);
        if (r->type != REDIS_REPLY_ARRAY) {
            sa_die_kind(SA_ERR_UNAVAILABLE, "reading the audit log: %s",
                        r->type == REDIS_REPLY_ERROR ? r->str
                        : "unexpected reply");
        }

        last = sa_audit_entries(r, &f, out);
        if (last == NULL || r->elements < SA_AUDIT_BATCH) {
            freeReplyObject(r);
            break;
        }

        /* exclusive: "(" + the last id seen */
        snprintf(newest ? hi : lo, sizeof(lo), "(%s", last);
        freeReplyObject(r);
    }

    json_decref(f.targets);

    return out;
}


/*
 * audit.verify: GET /v1/audit/verify
 *   (no field)
 * Checks the whole log: its chain and its signatures (the verify key).
 * Returns {"entries", "unchained", "last", "signed", "unsigned",
 * "problems", "intact"}; the CLI exits 2 unless intact.  Over the API,
 * for operators: the counts are of every team's entries, and the chain
 * is one for all (a team's part cannot be verified alone).
 */
json_t *
sa_op_audit_verify(sa_admin_t *sa, json_t *in)
{
    sa_in_only(in, NULL);
    if (sa->channel != NULL && strcmp(sa->channel, "api") == 0
        && !sa_is_operator(sa))
    {
        sa_die_kind(SA_ERR_FORBIDDEN, "over the API, verifying the audit "
                    "chain is for operators (it spans every team)");
    }

    return sa_audit_verify(sa);
}
