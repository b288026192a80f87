/*
 * sa-admin audit: the command line of the audit operations (ops/audit.c).
 */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "records.h"
#include "ops/ops.h"


/* --verify: the summary; exit 2 unless the log is intact */
static void
sa_audit_verify_cmd(sa_admin_t *sa)
{
    json_t  *in = json_object(), *out;
    int      intact;

    out = sa_op_call(sa, "audit.verify", in);
    json_decref(in);
    intact = json_is_true(json_object_get(out, "intact"));

#define N(f) ((size_t) json_integer_value(json_object_get(out, f)))
    if (sa->json) {
        sa_print_json(out);
    } else {
        printf("audit log: %zu entries (%zu from before the chain), %zu "
               "signed, %s\n", N("entries"), N("unchained"), N("signed"),
               N("problems") ? "NOT intact (above)"
               : N("unsigned") ? "NOT all signed (above)" : "intact");
        json_decref(out);
    }
#undef N

    if (!intact) {
        exit(SA_EXIT_NOT_FOUND);
    }
}


static void
sa_audit_run(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "team", required_argument, NULL, 't' },
        { "since", required_argument, NULL, 's' },
        { "account", required_argument, NULL, 'a' },
        { "actor", required_argument, NULL, 'A' },
        { "limit", required_argument, NULL, 'l' },
        { "before", required_argument, NULL, 'b' },
        { "after", required_argument, NULL, 'f' },
        { "newest", no_argument, NULL, 'n' },
        { "verify", no_argument, NULL, 'v' },
        SA_OPTS_END
    };
    json_t      *in = json_object(), *out, *e;
    size_t       i, limit = 0;
    const char  *field;
    int          ch, verify = 0, newest = 0;

    while ((ch = sa_getopt_or_exit(sa, argc, argv, opts)) != -1) {
        switch (ch) {
        case 'v':
            verify = 1;
            continue;
        case 'n':
            json_object_set_new(in, "order", json_string("newest"));
            newest = 1;
            continue;
        case 't': field = "team"; break;
        case 's': field = "since"; break;
        case 'a': field = "account"; break;
        case 'A': field = "actor"; break;
        case 'l': field = "limit"; limit = strtoul(optarg, NULL, 10); break;
        case 'b': field = "before"; break;
        default: field = "after"; break;
        }
        json_object_set_new(in, field, json_string(optarg));
    }

    sa_operands_or_exit(sa, argc, argv, 0);

    if (verify) {
        if (json_object_size(in) != 0) {
            sa_die_usage(sa, "--verify checks the whole log: without the "
                         "other flags");
        }
        json_decref(in);
        sa_audit_verify_cmd(sa);
        return;
    }

    out = sa_cli_run(sa, "audit.list", in);      /* takes in */
    if (out == NULL) {
        return;
    }

    printf("%-20s  %-20s  %-16s  %-16s  %-16s  %s\n", "ID", "TIME", "TEAM",
           "ACTOR", "ACTION", "TARGET");
    json_array_foreach(out, i, e) {
#define S(f) json_string_value(json_object_get(e, f))
        printf("%-20s  %-20s  %-16s  %-16s  %-16s  %s\n", S("id"), S("time"),
               S("team"), S("actor"), S("action"), S("target"));
#undef S
    }

    /* a full page: where the next one starts */
    if (limit > 0 && json_array_size(out) == limit) {
        e = json_array_get(out, limit - 1);
        fprintf(stderr, "sa-admin: %zu entries shown; the next ones: --%s "
                "%s\n", limit,
                newest ? "before" : "after",
                json_string_value(json_object_get(e, "id")));
    }
    json_decref(out);
}


static const sa_command_t  audit_command = {
    "audit", sa_audit_run,
    "audit [--team TEAM] [--since T] [--account ACCOUNT] [--actor USER] "
    "[--newest] [--limit N] [--before ID] [--after ID] [--verify]",
    "Prints the audit log, oldest first: id, time, team, actor, action,\n"
    "target of every change, and of refused attempts (action 'denied', at\n"
    "most one a minute per actor, team and permission).\n"
    "  --team TEAM   only this team's changes\n"
    "  --since T     a duration ago (24h, 7d), unix seconds, or a UTC date\n"
    "                (2026-11-26 or 2026-11-26T09:00:00Z)\n"
    "  --account A   only the entries about this service account (an id or\n"
    "                TEAM/NAME): its changes, its tokens', its membership\n"
    "  --actor USER  only the changes USER made\n"
    "  --newest      newest first\n"
    "  --limit N     at most N entries (1 to 1000), the first in that order\n"
    "  --before ID   only the entries older than entry ID (the ID column)\n"
    "  --after ID    only the entries newer than entry ID; a page of\n"
    "                --newest --limit N goes on with --before its last ID\n"
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
    sa_die_usage_line = audit_command.usage;
    optind = 0;
    sa_audit_run(sa, argc, argv);
}
