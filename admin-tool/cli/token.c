/*
 * sa-admin token: the command line of the token operations (ops/token.c).
 * The token itself goes alone on stdout, so that TOKEN=$(sa-admin ...)
 * works; what else is said goes to stderr.
 */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "records.h"
#include "ops/ops.h"

#define SA_ISSUE_MAX    1000000
#define SA_API_ISSUE_MAX  1000          /* a request to serve (ops/token.c) */


int
sa_cli_policy_opt(sa_admin_t *sa, int ch, json_t *in)
{
    json_t  *from;
    char    *end;
    long     n;

    switch (ch) {
    case 'R':
        json_object_set_new(in, "rate", json_string(optarg));
        return 1;
    case 'B':
        /* digits only, as the record's parser: no sign, space, leading 0 */
        n = strtol(optarg, &end, 10);
        if (*optarg < '0' || *optarg > '9' || *end != '\0' || n < 0
            || n > 1000000 || (optarg[0] == '0' && optarg[1] != '\0'))
        {
            sa_die_usage(sa, "invalid burst '%s' (0 to 1000000)", optarg);
        }
        json_object_set_new(in, "burst", json_integer(n));
        return 1;
    case 'Q':
        json_object_set_new(in, "quota", json_string(optarg));
        return 1;
    case 'F':
        from = json_object_get(in, "allow_from");
        if ((strcmp(optarg, "none") == 0 && json_is_array(from))
            || (strcmp(optarg, "none") != 0 && json_is_string(from)))
        {
            /* "none" among networks would have widened them to anywhere */
            sa_die_usage(sa, "--allow-from none cannot be combined with "
                         "networks");
        }
        if (strcmp(optarg, "none") == 0) {
            json_object_set_new(in, "allow_from", json_string("none"));
        } else {
            if (from == NULL) {
                from = json_array();
                json_object_set_new(in, "allow_from", from);
            }
            json_array_append_new(from, json_string(optarg));
        }
        return 1;
    }

    return 0;
}


/*
 * A token command's flags (which are allowed: opts) into its input, and
 * its one operand as "id"
 */
static json_t *
sa_token_args_or_exit(sa_admin_t *sa, int argc, char **argv,
    const struct option *opts)
{
    json_t  *in = json_object(), *scopes = json_array();
    char    *end;
    long     n;
    int      ch;

    while ((ch = sa_getopt_or_exit(sa, argc, argv, opts)) != -1) {
        if (sa_cli_policy_opt(sa, ch, in)) {
            continue;
        }

        switch (ch) {
        case 's':
            json_array_append_new(scopes, json_string(optarg));
            break;
        case 'e':
            json_object_set_new(in, "expires", json_string(optarg));
            break;
        case 'o':
            json_object_set_new(in, "overlap", json_string(optarg));
            break;
        case 'S':
            json_object_set_new(in, "strict", json_true());
            break;
        case 'n':
            n = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || n < 1 || n > SA_ISSUE_MAX)
            {
                sa_die_usage(sa, "invalid count '%s' (1 to %d)", optarg,
                             SA_ISSUE_MAX);
            }
            json_object_set_new(in, "count", json_integer(n));
            break;
        }
    }

    /*
     * only the commands that take --scope have "scopes"; token scope with
     * only policy flags keeps them
     */
    if (opts[0].val == 's'
        && (json_array_size(scopes) > 0
            || strcmp(sa->command->name, "issue") == 0
            || (json_object_get(in, "rate") == NULL
                && json_object_get(in, "burst") == NULL
                && json_object_get(in, "quota") == NULL
                && json_object_get(in, "allow_from") == NULL)))
    {
        json_object_set_new(in, "scopes", scopes);
    } else {
        json_decref(scopes);
    }

    json_object_set_new(in, "id",
                        json_string(sa_operands_or_exit(sa, argc, argv, 1)[0]));
    return in;
}


/* over --api, the catalogue's warnings come in the answer (scope.c) */
static void
sa_token_warnings(json_t *out)
{
    json_t  *w;
    size_t   i;

    if (!json_is_object(out)) {
        return;
    }
    json_array_foreach(json_object_get(out, "warnings"), i, w) {
        fprintf(stderr, "sa-admin: warning: %s\n", json_string_value(w));
    }
}


static int  sa_token_issue_json;


/* the tokens issued before an error ended the command (ops.h) */
static void
sa_token_issue_partial(json_t *partial, int whole)
{
    json_t  *t;
    size_t   i, n = json_array_size(partial);

    if (sa_token_issue_json) {
        sa_print_json(json_incref(partial));
    } else {
        json_array_foreach(partial, i, t) {
            printf("%s\n", json_string_value(json_object_get(t, "token")));
        }
    }
    fflush(stdout);

    fprintf(stderr, "sa-admin: %zu token%s had been issued when the error "
            "below stopped the command: %s valid, shown only this once: "
            "store %s now, or revoke %s%s\n", n, n == 1 ? "" : "s",
            n == 1 ? "it is" : "they are", n == 1 ? "it" : "them",
            n == 1 ? "it" : "them",
            whole ? "" : "; Redis failed with more under way, which may "
            "exist unseen: 'sa-admin token list ACCOUNT' shows every token");
}


/*
 * Over --api, a count above what one request may ask (serve answers 400
 * past SA_API_ISSUE_MAX, ops/token.c) goes as several requests, one after
 * the other; an error shows the tokens of every request before it and
 * those its answer names (cli/api.c appends them), as the local command
 * does.  Takes in; returns the array of every token.
 */
static json_t *
sa_token_issue_requests(sa_admin_t *sa, json_t *in)
{
    json_int_t   left = json_integer_value(json_object_get(in, "count"));
    json_int_t   n;
    json_t      *all = json_array(), *out;

    while (left > 0) {
        n = left < SA_API_ISSUE_MAX ? left : SA_API_ISSUE_MAX;
        json_object_set_new(in, "count", json_integer(n));
        sa_die_partial = all;           /* shown if this request fails */
        sa_die_partial_whole = 0;       /* unless its answer says more */
        out = sa_op_call(sa, "token.issue", in);
        sa_die_partial = NULL;
        if (json_is_array(out)) {
            json_array_extend(all, out);
        } else {
            json_array_append(all, out);
        }
        json_decref(out);
        left -= n;
    }

    json_decref(in);
    return all;
}


static void
sa_token_issue_cmd(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        SA_OPT_MANY("scope", 's'),
        { "expires", required_argument, NULL, 'e' },
        { "count", required_argument, NULL, 'n' },
        { "strict", no_argument, NULL, 'S' },
        SA_POLICY_OPTS,
        SA_OPTS_END
    };
    json_t  *in, *out, *t;
    size_t   i, n;

    in = sa_token_args_or_exit(sa, argc, argv, opts);
    sa_token_issue_json = sa->json;
    sa_die_partial_show = sa_token_issue_partial;
    if (sa_api_on()
        && json_integer_value(json_object_get(in, "count")) > SA_API_ISSUE_MAX)
    {
        out = sa_token_issue_requests(sa, in);
        if (sa->json) {
            sa_print_json(out);
            return;
        }
    } else {
        out = sa_cli_run(sa, "token.issue", in);
        if (out == NULL) {
            return;
        }
    }

    sa_token_warnings(out);
    if (json_is_object(out)) {
        printf("%s\n", json_string_value(json_object_get(out, "token")));
        n = 1;
    } else {
        json_array_foreach(out, i, t) {
            printf("%s\n", json_string_value(json_object_get(t, "token")));
        }
        n = json_array_size(out);
    }

    fprintf(stderr, "issued %zu token%s; shown only this once: store %s "
            "now\n", n, n > 1 ? "s" : "", n > 1 ? "them" : "it");
    json_decref(out);
}


/* a token's policy as one line, when it has one */
static void
sa_token_policy_print(json_t *t)
{
    char  *from;

#define S(f) (json_string_value(json_object_get(t, f)) ?: "none")
    if (json_is_null(json_object_get(t, "rate"))
        && json_is_null(json_object_get(t, "quota"))
        && json_array_size(json_object_get(t, "allow_from")) == 0)
    {
        return;
    }

    from = sa_join(json_object_get(t, "allow_from"), ", ");
    printf("  rate %s burst %lld quota %s allow-from %s\n", S("rate"),
           (long long) json_integer_value(json_object_get(t, "burst")),
           S("quota"),
           json_array_size(json_object_get(t, "allow_from")) ? from
                                                            : "anywhere");
#undef S
    free(from);
}


static void
sa_token_list_cmd(sa_admin_t *sa, int argc, char **argv)
{
    char   **op = sa_plain_args_or_exit(sa, argc, argv, 1);
    json_t  *in, *out, *t;
    size_t   i;
    char    *scopes;

    in = json_pack("{s:s}", "id", op[0]);
    out = sa_cli_run(sa, "token.list", in);
    if (out == NULL) {
        return;
    }

    printf("%-16s  %-8s  %-20s  %-20s  %-20s  %s\n", "ID", "STATUS",
           "CREATED", "EXPIRES", "LAST USED", "SCOPES");

    json_array_foreach(out, i, t) {
        scopes = sa_join(json_object_get(t, "scopes"), ", ");
#define S(f) (json_string_value(json_object_get(t, f)) ?: "-")
        printf("%-16s  %-8s  %-20s  %-20s  %-20s  %s\n", S("id"), S("status"),
               S("created_at"), S("expires_at"), S("last_used_at"), scopes);
#undef S
        free(scopes);
        sa_token_policy_print(t);
    }
    json_decref(out);
}


/* token scope and token revoke: TOKEN_ID, then one record replaced */
static void
sa_token_change_cmd(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  scope_opts[] = {
        SA_OPT_MANY("scope", 's'),
        { "strict", no_argument, NULL, 'S' },
        SA_POLICY_OPTS,
        SA_OPTS_END
    };
    static const struct option  revoke_opts[] = {
        SA_OPTS_END
    };
    int      revoke = strcmp(sa->command->name, "revoke") == 0;
    json_t  *out;
    char    *s;

    out = sa_cli_run(sa, revoke ? "token.revoke" : "token.scope",
                     sa_token_args_or_exit(sa, argc, argv,
                                           revoke ? revoke_opts
                                                  : scope_opts));
    if (out == NULL) {
        return;
    }

    sa_token_warnings(out);
    s = sa_join(json_object_get(out, "scopes"), ", ");
    if (revoke) {
        printf("token %s revoked\n",
               json_string_value(json_object_get(out, "id")));
    } else {
        printf("token %s now has scopes %s\n",
               json_string_value(json_object_get(out, "id")), s);
        sa_token_policy_print(out);
    }
    free(s);
    json_decref(out);
}


static void
sa_token_rotate_cmd(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "overlap", required_argument, NULL, 'o' },
        SA_OPTS_END
    };
    json_t  *t;

    t = sa_cli_run(sa, "token.rotate", sa_token_args_or_exit(sa, argc, argv,
                                                             opts));
    if (t == NULL) {
        return;
    }

    printf("%s\n", json_string_value(json_object_get(t, "token")));
    fprintf(stderr, "new token %s replaces %s, which stops working at %s; "
            "the new token is shown only this once\n",
            json_string_value(json_object_get(t, "id")),
            json_string_value(json_object_get(t, "rotated_from")),
            json_string_value(json_object_get(t, "old_expires_at")));
    json_decref(t);
}


/* the counts of a usage row: admitted, refused, the refusals given */
static void
sa_usage_print_row(const char *label, json_t *row, json_t *total)
{
    const char  *k;
    json_t      *v;

    printf("%-10s  %9lld  %9lld", label,
           (long long) json_integer_value(json_object_get(row, "admitted")),
           (long long) json_integer_value(json_object_get(row, "refused")));
    json_object_foreach(total, k, v) {
        if (strcmp(k, "admitted") && strcmp(k, "refused")
            && json_integer_value(v) > 0)
        {
            printf("  %*lld", (int) strlen(k),
                   (long long) json_integer_value(json_object_get(row, k)));
        }
    }
    printf("\n");
}


/*
 * token usage and account usage (ops/usage.c): OPERAND [--days N], a
 * table of the days with requests, newest first, then the total; the
 * refusal columns are those with any count
 */
void
sa_cli_usage(sa_admin_t *sa, int argc, char **argv, const char *op)
{
    static const struct option  opts[] = {
        { "days", required_argument, NULL, 'd' },
        SA_OPTS_END
    };
    json_t      *in = json_object(), *out, *total, *row, *v;
    const char  *k;
    char        *end, up[32], *u;
    long         n;
    size_t       i;
    int          ch;

    while ((ch = sa_getopt_or_exit(sa, argc, argv, opts)) != -1) {
        if (ch == 'd') {
            n = strtol(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end != '\0' || n < 1
                || n > 90)
            {
                json_decref(in);
                sa_die_usage(sa, "invalid days '%s' (1 to 90)", optarg);
            }
            json_object_set_new(in, "days", json_string(optarg));
        }
    }
    json_object_set_new(in, "id",
                        json_string(sa_operands_or_exit(sa, argc, argv, 1)[0]));

    out = sa_cli_run(sa, op, in);
    if (out == NULL) {
        return;
    }

    total = json_object_get(out, "total");
    printf("%-10s  %9s  %9s", "DATE", "ADMITTED", "REFUSED");
    json_object_foreach(total, k, v) {
        if (strcmp(k, "admitted") && strcmp(k, "refused")
            && json_integer_value(v) > 0)
        {
            snprintf(up, sizeof(up), "%s", k);
            for (u = up; *u; u++) {
                *u = (char) (*u >= 'a' && *u <= 'z' ? *u - 32 : *u);
            }
            printf("  %s", up);
        }
    }
    printf("\n");

    json_array_foreach(json_object_get(out, "usage"), i, row) {
        sa_usage_print_row(json_string_value(json_object_get(row, "date")),
                           row, total);
    }
    sa_usage_print_row("total", total, total);

    if (json_array_size(json_object_get(out, "usage")) == 0) {
        printf("no request counted in the last %lld days\n",
               (long long) json_integer_value(json_object_get(out, "days")));
    }

    if (json_object_get(out, "tokens") != NULL) {
        printf("\n%-16s  %9s  %9s  %s\n", "TOKEN", "ADMITTED", "REFUSED",
               "LAST DAY");
        json_array_foreach(json_object_get(out, "tokens"), i, row) {
            v = json_object_get(row, "total");
            printf("%-16s  %9lld  %9lld  %s\n",
                   json_string_value(json_object_get(row, "id")),
                   (long long) json_integer_value(json_object_get(v,
                                                              "admitted")),
                   (long long) json_integer_value(json_object_get(v,
                                                              "refused")),
                   json_string_value(json_object_get(row, "last_day"))
                   ?: "-");
        }
    }

    json_decref(out);
}


static void
sa_token_usage_cmd(sa_admin_t *sa, int argc, char **argv)
{
    sa_cli_usage(sa, argc, argv, "token.usage");
}


static const sa_command_t  commands[] = {
    { "issue", sa_token_issue_cmd,
      "token issue ACCOUNT [--scope S]... [--expires 90d] [--count N] "
      "[--strict] [POLICY]",
      "Issues a token for ACCOUNT (an account id or TEAM/NAME; needs\n"
      "service_accounts:tokens) and prints it: this is the only time it is\n"
      "shown.  Without --scope the token exists but grants no API access.\n"
      "A scope in no catalogue of the account's applications (sa-admin\n"
      "scope list) is warned about.\n"
      "  --scope S     resource:action, resource:* or *; repeatable\n"
      "  --expires D   lifetime (s, m, h, d, w; e.g. 90d, 1h30m); default never\n"
      "  --count N     issue N tokens at once, pipelined (one per line; over\n"
      "                --api, in requests of at most 1000)\n"
      "  --strict      refuse a scope outside the catalogue (exit 1)\n"
      "POLICY, signed in the token; a flag not given is the account's:\n"
      SA_POLICY_HELP },
    { "list", sa_token_list_cmd, "token list ACCOUNT",
      "Lists the tokens of ACCOUNT: ids, scopes, times, status.  Never a\n"
      "secret.\n" },
    { "scope", sa_token_change_cmd,
      "token scope TOKEN_ID [--scope S]... [--strict] [POLICY]",
      "Replaces the scopes of a token (needs service_accounts:tokens); with\n"
      "no --scope the token keeps existing without any API access.  A scope\n"
      "outside the catalogue is warned about, refused with --strict.  With\n"
      "POLICY flags and no --scope, only those change; gateways see it on\n"
      "the next request, cached or not:\n"
      SA_POLICY_HELP },
    { "rotate", sa_token_rotate_cmd, "token rotate TOKEN_ID [--overlap 1h]",
      "Issues a new token with the same scopes and lifetime and prints it;\n"
      "the old one keeps working only for the overlap (default 0: it stops\n"
      "at once).  Needs service_accounts:tokens.\n" },
    { "revoke", sa_token_change_cmd, "token revoke TOKEN_ID",
      "Revokes a token at once (needs service_accounts:tokens).\n" },
    { "usage", sa_token_usage_cmd, "token usage TOKEN_ID [--days N]",
      "Prints what the gateways counted for a token, per UTC day (newest\n"
      "first, the days with requests): admitted, refused, and the refusals\n"
      "by reason (rate_limited, quota_exceeded, forbidden_source, ...).\n"
      "Counted by gateways with sa_rate_limit, kept 90 days: is anything\n"
      "still using the token?\n"
      "  --days N      the last N days, 1 to 90 (default 30)\n" },
    { NULL, NULL, NULL, NULL }
};


void
sa_cmd_token(sa_admin_t *sa, int argc, char **argv)
{
    sa_dispatch(sa, "token", commands, argc, argv);
}
