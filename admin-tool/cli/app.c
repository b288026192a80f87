/*
 * sa-admin app: the command line of the application operations
 * (ops/app.c).
 */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "records.h"
#include "ops/ops.h"


/*
 * APP (want 1; 0: none; -1: optional) and --team TEAM into the input;
 * team: whether --team must (1) or may not (-1) be given, or may (0)
 */
static json_t *
sa_app_args_or_exit(sa_admin_t *sa, int argc, char **argv, int want,
    int team)
{
    static const struct option  opts[] = {
        { "team", required_argument, NULL, 't' },
        SA_OPTS_END
    };
    json_t  *in = json_object();
    char   **op;

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        json_object_set_new(in, "team", json_string(optarg));   /* --team */
    }

    if (want < 0) {
        want = argc - optind > 0;       /* APP is optional */
    }

    op = sa_operands_or_exit(sa, argc, argv, want);
    if (want > 0) {
        json_object_set_new(in, "app", json_string(op[0]));
    }

    if (team > 0 && json_object_get(in, "team") == NULL) {
        sa_die_usage(sa, "--team TEAM is required");
    }

    if (team < 0 && json_object_get(in, "team") != NULL) {
        sa_die_usage(sa, "unexpected --team");
    }

    return in;
}


/* the operation's output, an application, as a line or its JSON */
static void
sa_app_run_print(sa_admin_t *sa, const char *op, json_t *in,
    const char *verb)
{
    json_t  *pub = sa_cli_run(sa, op, in);
    char    *shared;

    if (pub == NULL) {
        return;
    }

    shared = sa_join(json_object_get(pub, "shared"), ", ");
    printf("%sapplication '%s': team %s, shared with %s\n", verb,
           json_string_value(json_object_get(pub, "name")),
           json_string_value(json_object_get(pub, "team")), shared);
    free(shared);
    json_decref(pub);
}


static void
sa_app_create(sa_admin_t *sa, int argc, char **argv)
{
    sa_app_run_print(sa, "app.create",
                     sa_app_args_or_exit(sa, argc, argv, 1, 1), "created ");
}


/* app share and app unshare */
static void
sa_app_share(sa_admin_t *sa, int argc, char **argv)
{
    int  share = strcmp(sa->command->name, "share") == 0;

    sa_app_run_print(sa, share ? "app.share" : "app.unshare",
                     sa_app_args_or_exit(sa, argc, argv, 1, 1),
                     share ? "shared: " : "unshared: ");
}


static void
sa_app_show(sa_admin_t *sa, int argc, char **argv)
{
    sa_app_run_print(sa, "app.show",
                     sa_app_args_or_exit(sa, argc, argv, 1, -1), "");
}


static void
sa_app_list(sa_admin_t *sa, int argc, char **argv)
{
    json_t  *in = sa_app_args_or_exit(sa, argc, argv, 0, 0), *arr, *pub;
    size_t   i;
    char    *shared;

    arr = sa_cli_run(sa, "app.list", in);
    if (arr == NULL) {
        return;
    }

    printf("%-24s %-20s %s\n", "APPLICATION", "TEAM", "SHARED WITH");
    json_array_foreach(arr, i, pub) {
        shared = sa_join(json_object_get(pub, "shared"), ",");
        printf("%-24s %-20s %s\n",
               json_string_value(json_object_get(pub, "name")),
               json_string_value(json_object_get(pub, "team")), shared);
        free(shared);
    }
    json_decref(arr);
}


static void
sa_app_adopt(sa_admin_t *sa, int argc, char **argv)
{
    json_t  *in = sa_app_args_or_exit(sa, argc, argv, -1, 0), *list, *t;
    size_t   i;
    char    *s;

    if (json_object_get(in, "app") != NULL) {
        sa_app_run_print(sa, "app.adopt", in, "adopted ");
        return;
    }

    list = sa_cli_run(sa, "app.adopt", in);
    if (list == NULL) {
        return;
    }

    printf("%-24s %s\n", "APPLICATION (no owner)", "GRANTED TO TEAMS");
    json_array_foreach(list, i, t) {
        s = sa_join(json_object_get(t, "teams"), ",");
        printf("%-24s %s\n", json_string_value(json_object_get(t, "name")), s);
        free(s);
    }
    json_decref(list);
}


static const sa_command_t  app_commands[] = {
    { "create", sa_app_create, "app create APP --team TEAM",
      "Creates the application APP, owned by TEAM.  An operator's decision:\n"
      "run with the signing key and without --as or SA_ACTOR.  APP is the\n"
      "name gateways give in sa_application ([A-Za-z0-9_.-], at most 64).\n" },
    { "share", sa_app_share, "app share APP --team TEAM2",
      "Shares APP with TEAM2: its accounts may then be granted APP,\n"
      "subscribe to its notifications and emit its events.  The owner of\n"
      "APP's owner team (or the operator).\n" },
    { "unshare", sa_app_share, "app unshare APP --team TEAM2",
      "Stops sharing APP with TEAM2: no new grant, subscription or event\n"
      "for TEAM2's accounts.  Grants they hold already stay until 'account\n"
      "ungrant' (listed on stderr).  The owner of APP's owner team (or the\n"
      "operator).\n" },
    { "list", sa_app_list, "app list [--team TEAM]",
      "Lists the applications (of TEAM: owned by or shared with it).\n" },
    { "show", sa_app_show, "app show APP",
      "Shows APP: its owner team, the teams it is shared with.\n" },
    { "adopt", sa_app_adopt, "app adopt [APP --team TEAM]",
      "Gives an application granted before applications had owners its\n"
      "record.  Without operands: lists every application that accounts\n"
      "hold a grant for and that has no record, with the teams whose\n"
      "accounts hold it.  With APP --team TEAM: creates APP owned by TEAM\n"
      "and shared with every other team whose accounts hold it today, so\n"
      "that nothing that works stops working.  An operator's decision.\n" },
    { NULL, NULL, NULL, NULL }
};


void
sa_cmd_app(sa_admin_t *sa, int argc, char **argv)
{
    sa_dispatch(sa, "app", app_commands, argc, argv);
}
