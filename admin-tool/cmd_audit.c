/* sa-admin audit: the log of every change, from the sa:audit stream. */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

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
    "  --verify      checks the chain of the whole log instead: an entry\n"
    "                deleted (a gap), added outside sa-admin's scripts, or\n"
    "                the newest ones cut off; exit 2 when it finds one\n"
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


typedef struct {
    long long   seq;            /* of the last chained entry, 0 none yet */
    char        link[64];
    size_t      entries;
    size_t      unchained;      /* from before the chain began */
    size_t      problems;
} sa_chain_t;


static void
sa_chain_problem(sa_chain_t *c, const char *id, const char *what)
{
    c->problems++;
    fprintf(stderr, "sa-admin: audit entry %s: %s\n", id, what);
}


/* one entry of the chain, in stream order */
static void
sa_chain_entry(sa_chain_t *c, const char *id, redisReply *fields)
{
    const char  *seq_s = sa_field(fields, "seq");
    const char  *prev = sa_field(fields, "prev");
    const char  *link = sa_field(fields, "link");
    char        *end, what[160];
    long long    seq;

    c->entries++;
    seq = strtoll(seq_s, &end, 10);

    if (*seq_s == '\0' || *end != '\0' || seq < 1 || *link == '\0') {
        if (c->seq == 0) {
            c->unchained++;     /* written before the log was chained */
        } else {
            sa_chain_problem(c, id, "not chained: added by something other "
                             "than sa-admin (forged?)");
        }
        return;
    }

    if (c->seq == 0 && seq > 1) {
        fprintf(stderr, "sa-admin: audit: the log starts at entry %lld (the "
                "older ones were trimmed by MAXLEN, or deleted)\n", seq);

    } else if (c->seq != 0 && seq <= c->seq) {
        snprintf(what, sizeof(what), "number %lld after %lld: added by "
                 "something other than sa-admin (forged?)", seq, c->seq);
        sa_chain_problem(c, id, what);
        return;

    } else if (c->seq != 0 && seq > c->seq + 1) {
        snprintf(what, sizeof(what), "%lld entr%s before it missing "
                 "(deleted)", seq - c->seq - 1,
                 seq - c->seq - 1 == 1 ? "y" : "ies");
        sa_chain_problem(c, id, what);

    } else if (c->seq != 0 && strcmp(prev, c->link) != 0) {
        sa_chain_problem(c, id, "does not follow the entry before it "
                         "(forged or replaced?)");
    }

    c->seq = seq;
    snprintf(c->link, sizeof(c->link), "%s", link);
}


/* --verify: the whole chain, then its end against audit:seq */
static void
sa_audit_verify(sa_admin_t *sa)
{
    sa_chain_t    c;
    redisReply   *r;
    char          start[64];
    size_t        i;
    long long     last;
    int           more;

    memset(&c, 0, sizeof(c));
    strcpy(start, "-");

    do {
        r = sa_xredis_cmd(sa, "XRANGE %s" SA_KEY_AUDIT " %s + COUNT %d",
                          sa->prefix, start, SA_AUDIT_BATCH);
        if (r->type != REDIS_REPLY_ARRAY) {
            sa_die(SA_EXIT_UNAVAILABLE, "XRANGE: %s",
                   r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        }

        for (i = 0; i < r->elements; i++) {
            sa_chain_entry(&c, r->element[i]->element[0]->str,
                           r->element[i]->element[1]);
        }

        more = r->elements == SA_AUDIT_BATCH;
        if (more) {
            snprintf(start, sizeof(start), "(%s",
                     r->element[r->elements - 1]->element[0]->str);
        }
        freeReplyObject(r);
    } while (more);

    r = sa_xredis_cmd(sa, "GET %s" SA_KEY_AUDIT ":seq", sa->prefix);
    last = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);

    if (last > c.seq) {
        c.problems++;
        fprintf(stderr, "sa-admin: audit: the newest %lld entr%s missing "
                "(deleted: %lld written, the log ends at %lld)\n",
                last - c.seq, last - c.seq == 1 ? "y is" : "ies are", last,
                c.seq);
    }

    if (sa->json) {
        sa_print_json(json_pack("{s:I, s:I, s:I, s:I, s:b}",
                                "entries", (json_int_t) c.entries,
                                "unchained", (json_int_t) c.unchained,
                                "last", (json_int_t) c.seq,
                                "problems", (json_int_t) c.problems,
                                "intact", c.problems == 0));
    } else {
        printf("audit log: %zu entries (%zu from before the chain), %s\n",
               c.entries, c.unchained,
               c.problems ? "NOT intact (above)" : "intact");
    }

    if (c.problems) {
        exit(SA_EXIT_NOT_FOUND);
    }
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
        sa_audit_verify(sa);
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
