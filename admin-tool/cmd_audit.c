/* sa-admin audit: the log of every change, from the sa:audit stream. */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "records.h"
#include "change.h"
#include "redis.h"
#include "util.h"

#define SA_AUDIT_BATCH  1000

static void sa_audit_run(sa_admin_t *sa, int argc, char **argv);

static const sa_command_t  audit_command = {
    "audit", sa_audit_run, "audit [--team TEAM] [--since T] [--verify]",
    "Prints the audit log: time, actor, action, target of every change,\n"
    "and of refused attempts (action 'denied', at most one a minute per\n"
    "actor, team and permission).\n"
    "  --team TEAM   only this team's changes\n"
    "  --since T     a duration ago (24h, 7d), unix seconds, or a UTC date\n"
    "                (2026-11-26 or 2026-11-26T09:00:00Z)\n"
    "  --verify      checks the whole log instead: its chain (an entry\n"
    "                deleted, changed, added outside sa-admin's scripts, the\n"
    "                newest ones cut off) and its signatures (with the\n"
    "                verify key: an entry no signature covers is reported);\n"
    "                exit 2 when it finds one\n"
};


void
sa_cmd_audit(sa_admin_t *sa, int argc, char **argv)
{
    sa->command = &audit_command;
    optind = 0;
    sa_audit_run(sa, argc, argv);
}


static const char *
sa_field(redisReply *fields, const char *name)
{
    size_t  i;

    for (i = 0; i + 1 < fields->elements; i += 2) {
        if (strcmp(fields->element[i]->str, name) == 0) {
            return fields->element[i + 1]->str;
        }
    }

    return "";
}


/* appends the entries of one XRANGE reply; returns the last entry's id */
static const char *
sa_audit_entries(redisReply *r, const char *team, json_t *out)
{
    size_t       i;
    redisReply  *fields;
    const char  *last = NULL;

    for (i = 0; i < r->elements; i++) {
        last = r->element[i]->element[0]->str;
        fields = r->element[i]->element[1];

        if (team != NULL && strcmp(sa_field(fields, "team"), team) != 0) {
            continue;
        }

        json_array_append_new(out, json_pack("{s:o, s:s, s:s, s:s, s:s}",
            "time", sa_time_json(strtoll(sa_field(fields, "time"), NULL, 10)),
            "actor", sa_field(fields, "actor"),
            "action", sa_field(fields, "action"),
            "target", sa_field(fields, "target"),
            "team", sa_field(fields, "team")));
    }

    return last;
}


static json_t *
sa_audit_read(sa_admin_t *sa, const char *team, int64_t since)
{
    json_t       *out = json_array();
    redisReply   *r;
    char          start[64];
    const char   *last;

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


static void
sa_audit_run(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "team", required_argument, NULL, 't' },
        { "since", required_argument, NULL, 's' },
        { "verify", no_argument, NULL, 'v' },
        SA_OPTS_END
    };
    const char  *team = NULL;
    int64_t      since = 0;
    json_t      *out, *e;
    size_t       i;
    int          ch, verify = 0;

    while ((ch = sa_getopt_or_exit(sa, argc, argv, opts)) != -1) {
        switch (ch) {
        case 'v':
            verify = 1;
            break;
        case 't':
            team = optarg;
            break;
        case 's':
            since = sa_time_parse(optarg, sa_now());
            if (since < 0) {
                sa_die_usage(sa, "invalid time '%s'", optarg);
            }
            break;
        }
    }

    sa_operands_or_exit(sa, argc, argv, 0);

    if (verify) {
        if (team != NULL || since != 0) {
            sa_die_usage(sa, "--verify checks the whole log: without --team "
                         "and --since");
        }
        sa_audit_verify_or_exit(sa);
        return;
    }

    out = sa_audit_read(sa, team, since);

    if (sa->json) {
        sa_print_json(out);
        return;
    }

    printf("%-20s  %-16s  %-16s  %-16s  %s\n", "TIME", "TEAM", "ACTOR",
           "ACTION", "TARGET");
    json_array_foreach(out, i, e) {
#define S(f) json_string_value(json_object_get(e, f))
        printf("%-20s  %-16s  %-16s  %-16s  %s\n", S("time"), S("team"),
               S("actor"), S("action"), S("target"));
#undef S
    }
    json_decref(out);
}
