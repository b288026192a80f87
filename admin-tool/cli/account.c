/*
 * sa-admin account: the command line of the account operations
 * (ops/account.c): argv to their input, their output as text or --json.
 */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "records.h"
#include "ops/ops.h"

/*
 * "[--app APP]..." into in's "apps" (and with policy the POLICY flags into
 * its policy fields), and want operands
 */
static char **
sa_app_args_or_exit(sa_admin_t *sa, int argc, char **argv, int want,
    int policy, json_t *in)
{
    static const struct option  opts[] = {
        SA_OPT_MANY("app", 'a'),
        SA_OPTS_END
    };
    static const struct option  create_opts[] = {
        SA_OPT_MANY("app", 'a'),
        SA_POLICY_OPTS,
        SA_OPTS_END
    };
    json_t  *apps = json_array();
    int      ch;

    while ((ch = sa_getopt_or_exit(sa, argc, argv,
                                   policy ? create_opts : opts)) != -1)
    {
        if (!sa_cli_policy_opt(sa, ch, in)) {
            json_array_append_new(apps, json_string(optarg));  /* --app */
        }
    }
    json_object_set_new(in, "apps", apps);

    return sa_operands_or_exit(sa, argc, argv, want);
}


/* an account (the ops' output) as one line; NULL: --json printed it */
static void
sa_account_print(json_t *pub, const char *verb)
{
    char  *apps;

    if (pub == NULL) {
        return;
    }

    apps = json_dumps(json_object_get(pub, "apps"), JSON_COMPACT);
    printf("%s%s/%s  id %s  email %s  apps %s  created %s by %s\n", verb,
           json_string_value(json_object_get(pub, "team")),
           json_string_value(json_object_get(pub, "name")),
           json_string_value(json_object_get(pub, "id")),
           json_string_value(json_object_get(pub, "email")), apps,
           json_string_value(json_object_get(pub, "created_at")),
           json_string_value(json_object_get(pub, "created_by")));
    free(apps);

    /* the policy its tokens get (issue 25), when it has one */
    if (json_object_get(pub, "rate") || json_object_get(pub, "quota")
        || json_object_get(pub, "allow_from"))
    {
        apps = json_dumps(json_object_get(pub, "allow_from") ?: json_array(),
                          JSON_COMPACT);
        printf("  token defaults: rate %s burst %lld quota %s allow-from %s\n",
               json_string_value(json_object_get(pub, "rate")) ?: "none",
               (long long) json_integer_value(json_object_get(pub, "burst")),
               json_string_value(json_object_get(pub, "quota")) ?: "none",
               apps);
        free(apps);
    }
    json_decref(pub);
}


static void
sa_account_create(sa_admin_t *sa, int argc, char **argv)
{
    json_t   *in = json_object();
    char    **op;

    op = sa_app_args_or_exit(sa, argc, argv, 2, 1, in);
    json_object_set_new(in, "team", json_string(op[0]));
    json_object_set_new(in, "name", json_string(op[1]));

    sa_account_print(sa_cli_run(sa, "account.create", in), "created ");
}


static void
sa_account_list(sa_admin_t *sa, int argc, char **argv)
{
    char   **op;
    json_t  *in, *out, *a;
    size_t   i;
    char    *apps;

    op = sa_plain_args_or_exit(sa, argc, argv, 1);
    in = json_pack("{s:s}", "team", op[0]);
    out = sa_cli_run(sa, "account.list", in);
    if (out == NULL) {
        return;
    }

    printf("%-16s  %-24s  %-20s  %s\n", "ID", "NAME", "CREATED", "APPS");
    json_array_foreach(out, i, a) {
        apps = json_dumps(json_object_get(a, "apps"), JSON_COMPACT);
        printf("%-16s  %-24s  %-20s  %s\n",
               json_string_value(json_object_get(a, "id")),
               json_string_value(json_object_get(a, "name")),
               json_string_value(json_object_get(a, "created_at")), apps);
        free(apps);
    }
    json_decref(out);
}


/* an operation on one ACCOUNT operand without flags: its input */
static json_t *
sa_account_ref_in(sa_admin_t *sa, int argc, char **argv)
{
    char  **op = sa_plain_args_or_exit(sa, argc, argv, 1);

    return json_pack("{s:s}", "id", op[0]);
}


static void
sa_account_show(sa_admin_t *sa, int argc, char **argv)
{
    json_t  *in = sa_account_ref_in(sa, argc, argv);

    sa_account_print(sa_cli_run(sa, "account.show", in), "");
}


/* account grant and account ungrant */
static void
sa_account_apps(sa_admin_t *sa, int argc, char **argv)
{
    json_t   *in = json_object();
    char    **op;
    int       grant = strcmp(sa->command->name, "grant") == 0;

    op = sa_app_args_or_exit(sa, argc, argv, 1, grant, in);
    if (json_array_size(json_object_get(in, "apps")) == 0) {
        if (!grant) {
            sa_die_usage(sa, "at least one --app APP is required");
        }
        if (json_object_size(in) == 1) {
            sa_die_usage(sa, "at least one --app APP or POLICY flag is "
                         "required");
        }
        json_object_del(in, "apps");        /* only the policy changes */
    }
    json_object_set_new(in, "id", json_string(op[0]));

    /* several applications: the route that takes the list (over --api,
     * one request: all or none) */
    sa_account_print(sa_cli_run(sa, grant ? "account.grant"
                                : json_array_size(json_object_get(in, "apps"))
                                  > 1 ? "account.ungrant.apps"
                                : "account.ungrant", in),
                     grant ? "granted: " : "ungranted: ");
}


static void
sa_account_delete(sa_admin_t *sa, int argc, char **argv)
{
    json_t  *in = sa_account_ref_in(sa, argc, argv), *out;

    out = sa_cli_run(sa, "account.delete", in);
    if (out == NULL) {
        return;
    }

    printf("deleted account %s/%s (%s); its tokens are revoked\n",
           json_string_value(json_object_get(out, "team")),
           json_string_value(json_object_get(out, "name")),
           json_string_value(json_object_get(out, "id")));
    json_decref(out);
}


#define SA_ACCOUNT_REF                                                       \
    "ACCOUNT is an account id or TEAM/NAME.\n"

static void
sa_account_usage(sa_admin_t *sa, int argc, char **argv)
{
    sa_cli_usage(sa, argc, argv, "account.usage");
}


static const sa_command_t  commands[] = {
    { "create", sa_account_create,
      "account create TEAM NAME [--app APP]... [POLICY]",
      "Creates a service account in TEAM (needs service_accounts:create),\n"
      "granted the given applications ('*' for all).  NAME:\n"
      "[a-z0-9][a-z0-9_.-]*, unique in the team.  POLICY: the defaults its\n"
      "tokens get when issued, unless they set their own:\n"
      SA_POLICY_HELP },
    { "list", sa_account_list, "account list TEAM",
      "Lists the accounts of TEAM.\n" },
    { "show", sa_account_show, "account show ACCOUNT",
      "Shows one account.  " SA_ACCOUNT_REF },
    { "usage", sa_account_usage, "account usage ACCOUNT [--days N]",
      "Prints what the gateways counted for the account's tokens, per UTC\n"
      "day (all its tokens together, newest first), then per token its\n"
      "total and last day with requests (see token usage).  "
      SA_ACCOUNT_REF
      "  --days N      the last N days, 1 to 90 (default 30)\n" },
    { "grant", sa_account_apps,
      "account grant ACCOUNT [--app APP]... [POLICY]",
      "Adds application grants (needs service_accounts:create).  Every\n"
      "token of the account sees them on its next request.  "
      SA_ACCOUNT_REF
      "POLICY changes the defaults its tokens get when issued from now on\n"
      "(the given fields; the tokens already issued keep theirs: token\n"
      "scope changes those).  At least one --app or POLICY flag:\n"
      SA_POLICY_HELP },
    { "ungrant", sa_account_apps, "account ungrant ACCOUNT --app APP...",
      "Removes application grants (needs service_accounts:create), at once\n"
      "for every token of the account.  " SA_ACCOUNT_REF },
    { "delete", sa_account_delete, "account delete ACCOUNT",
      "Deletes an account and revokes all its tokens at once (needs\n"
      "service_accounts:delete).  " SA_ACCOUNT_REF },
    { NULL, NULL, NULL, NULL }
};


void
sa_cmd_account(sa_admin_t *sa, int argc, char **argv)
{
    sa_dispatch(sa, "account", commands, argc, argv);
}
