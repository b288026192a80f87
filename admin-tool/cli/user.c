/*
 * sa-admin user: a person's personal tokens for the admin API (sap_),
 * argv to the operations of ops/user.c, and their answers printed.
 */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "records.h"
#include "util.h"

static void sa_user_token(sa_admin_t *sa, int argc, char **argv);
static void sa_user_token_issue_cmd(sa_admin_t *sa, int argc, char **argv);
static void sa_user_token_list_cmd(sa_admin_t *sa, int argc, char **argv);
static void sa_user_token_revoke_cmd(sa_admin_t *sa, int argc, char **argv);

static const sa_command_t  commands[] = {
    { "token", sa_user_token, "user token issue|list|revoke ...",
      "A person's personal tokens for the admin API (sap_...); see\n"
      "'sa-admin user token --help'.\n" },
    { NULL, NULL, NULL, NULL }
};

static const sa_command_t  token_commands[] = {
    { "issue", sa_user_token_issue_cmd,
      "user token issue USER [--expires 90d]",
      "Issues a personal token for USER and prints it: this is the only time\n"
      "it is shown.  It authenticates USER at the admin API (sa-admin serve),\n"
      "never at a gateway.  Operators issue one for anyone; a user, over the\n"
      "API, for herself.\n"
      "  --expires D   lifetime (s, m, h, d, w; e.g. 90d, 1h30m); default 90d\n" },
    { "list", sa_user_token_list_cmd, "user token list USER",
      "Lists the personal tokens of USER: ids, times (the last use at the\n"
      "admin API too), status.  Never a\n"
      "secret.  Operators, or USER herself.\n" },
    { "revoke", sa_user_token_revoke_cmd, "user token revoke TOKEN_ID",
      "Revokes a personal token at once.  Operators, or its user herself.\n" },
    { NULL, NULL, NULL, NULL }
};


void
sa_cmd_user(sa_admin_t *sa, int argc, char **argv)
{
    sa_dispatch(sa, "user", commands, argc, argv);
}


static void
sa_user_token(sa_admin_t *sa, int argc, char **argv)
{
    sa_dispatch(sa, "user token", token_commands, argc, argv);
}


static void
sa_user_token_issue_cmd(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "expires", required_argument, NULL, 'e' },
        SA_OPTS_END
    };
    const char  *expires = NULL;
    char       **op;
    json_t      *in, *out;
    int          ch;

    while ((ch = sa_getopt_or_exit(sa, argc, argv, opts)) != -1) {
        if (ch == 'e') {
            if (sa_duration_parse(optarg) <= 0) {
                sa_die_usage(sa, "invalid duration '%s' (e.g. 90d, 12h, "
                             "1h30m)", optarg);
            }
            expires = optarg;
        }
    }
    op = sa_operands_or_exit(sa, argc, argv, 1);

    in = json_pack("{s:s}", "user", op[0]);
    if (expires != NULL) {
        json_object_set_new(in, "expires", json_string(expires));
    }

    out = sa_cli_run(sa, "user.token.issue", in);
    if (out == NULL) {
        return;
    }

    /* the token alone on stdout, so that TOKEN=$(sa-admin ...) works */
    printf("%s\n", json_string_value(json_object_get(out, "token")));
    fprintf(stderr, "issued personal token %s for %s, expiring %s; shown "
            "only this once: store it now\n",
            json_string_value(json_object_get(out, "id")), op[0],
            json_string_value(json_object_get(out, "expires_at")));
    json_decref(out);
}


static void
sa_user_token_list_cmd(sa_admin_t *sa, int argc, char **argv)
{
    char   **op;
    json_t  *in, *out, *t;
    size_t   i;

    op = sa_plain_args_or_exit(sa, argc, argv, 1);

    in = json_pack("{s:s}", "user", op[0]);
    out = sa_cli_run(sa, "user.token.list", in);
    if (out == NULL) {
        return;
    }

    printf("%-16s  %-8s  %-20s  %-20s  %-20s  %s\n", "ID", "STATUS",
           "CREATED", "EXPIRES", "LAST USED", "CREATED BY");

    json_array_foreach(out, i, t) {
#define S(f) (json_string_value(json_object_get(t, f)) ?: "-")
        printf("%-16s  %-8s  %-20s  %-20s  %-20s  %s\n", S("id"), S("status"),
               S("created_at"), S("expires_at"), S("last_used_at"),
               S("created_by"));
#undef S
    }

    json_decref(out);
}


static void
sa_user_token_revoke_cmd(sa_admin_t *sa, int argc, char **argv)
{
    char   **op;
    json_t  *in, *out;

    op = sa_plain_args_or_exit(sa, argc, argv, 1);

    if (strncmp(op[0], "sap_", 4) == 0 || strncmp(op[0], "sat_", 4) == 0) {
        sa_die_usage(sa, "give the token id (16 characters after 'sap_'), "
                     "never the token itself");
    }

    if (!sa_token_id_valid(op[0], strlen(op[0]))) {
        sa_die_usage(sa, "invalid token id '%s'", sa_vis(op[0]));
    }

    in = json_pack("{s:s}", "id", op[0]);
    out = sa_cli_run(sa, "user.token.revoke", in);
    if (out == NULL) {
        return;
    }

    printf("personal token %s revoked\n", op[0]);
    json_decref(out);
}
