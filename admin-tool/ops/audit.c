/*
 * sa-admin audit: the operations that read the log of every change, the
 * <prefix>audit stream, and verify it (audit.h).
 */

#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "records.h"
#include "redis.h"
#include "util.h"
#include "perm.h"
#include "ops.h"

#define SA_AUDIT_BATCH  1000


/* appends the entries of one XRANGE reply; returns the last entry's id */
static const char *
sa_audit_entries(redisReply *r, const char *team, json_t *out)
{
    size_t       i;
    redisReply  *f;
    const char  *last = NULL;
    json_t      *e;

    for (i = 0; i < r->elements; i++) {
        last = r->element[i]->element[0]->str;
        f = r->element[i]->element[1];

        if (team != NULL && strcmp(sa_audit_field(f, "team"), team) != 0) {
            continue;
        }

        e = json_pack("{s:o, s:s, s:s, s:s, s:s}",
            "time", sa_time_json(strtoll(sa_audit_field(f, "time"), NULL,
                                         10)),
            "actor", sa_audit_field(f, "actor"),
            "action", sa_audit_field(f, "action"),
            "target", sa_audit_field(f, "target"),
            "team", sa_audit_field(f, "team"));
        /* how the actor was proven, and the channel (entries since then) */
        if (*sa_audit_field(f, "proof") != '\0') {
            json_object_set_new(e, "proof",
                                json_string(sa_audit_field(f, "proof")));
            json_object_set_new(e, "channel",
                                json_string(sa_audit_field(f, "channel")));
        }
        json_array_append_new(out, e);
    }

    return last;
}


/*
 * audit.list: GET /v1/audit
 *   team   string: only this team's entries
 *   since  string: a duration ago ("24h", "7d"), unix seconds, or a UTC
 *          date ("2026-11-26", "2026-11-26T09:00:00Z")
 * Returns the entries, oldest first: an array of {"time", "actor",
 * "action", "target", "team"}, and "proof", "channel" in entries that
 * record them.
 */
json_t *
sa_op_audit_list(sa_admin_t *sa, json_t *in)
{
    json_t       *out;
    redisReply   *r;
    char          start[64];
    const char   *last, *team, *s;
    int64_t       since = 0;

    sa_in_only(in, "team", "since", NULL);
    team = sa_in_str(in, "team", 0);
    if (team != NULL) {
        sa_reader_or_exit(sa, team);
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

    out = json_array();
    snprintf(start, sizeof(start), "%lld", (long long) since * 1000);

    for ( ;; ) {
        r = sa_xredis_cmd(sa, "XRANGE %s" SA_KEY_AUDIT " %s + COUNT %d",
                          sa->prefix, start, SA_AUDIT_BATCH);
        if (r->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            break;
        }

        last = sa_audit_entries(r, team, out);
        if (last == NULL || r->elements < SA_AUDIT_BATCH) {
            freeReplyObject(r);
            break;
        }

        /* exclusive start: "(" + the last id seen */
        snprintf(start, sizeof(start), "(%s", last);
        freeReplyObject(r);
    }

    return out;
}


/*
 * audit.verify: GET /v1/audit/verify
 *   (no field)
 * Checks the whole log: its chain and its signatures (the verify key).
 * Returns {"entries", "unchained", "last", "signed", "unsigned",
 * "problems", "intact"}; the CLI exits 2 unless intact.
 */
json_t *
sa_op_audit_verify(sa_admin_t *sa, json_t *in)
{
    sa_in_only(in, NULL);

    return sa_audit_verify(sa);
}
