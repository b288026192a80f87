/*
 * sa-admin team: the command line of the team operations (ops/team.c).
 */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "records.h"
#include "ops/ops.h"


static void
sa_team_create(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "owner", required_argument, NULL, 'o' },
        SA_OPTS_END
    };
    const char  *owner = NULL;
    char       **op;
    json_t      *in, *out;

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        owner = optarg;                 /* --owner */
    }

    op = sa_operands_or_exit(sa, argc, argv, 1);
    if (owner == NULL) {
        sa_die_usage(sa, "--owner USER is required");
    }

    in = json_pack("{s:s, s:s}", "team", op[0], "owner", owner);
    out = sa_cli_run(sa, "team.create", in);
    if (out == NULL) {
        return;
    }

    printf("created team '%s', owned by %s\n",
           json_string_value(json_object_get(out, "team")),
           json_string_value(json_object_get(out, "owner")));
    json_decref(out);
}


/* "a, b" for people; a static buffer */
static const char *
sa_perms_text(json_t *perms)
{
    static char   buf[256];
    size_t        i;
    json_t       *p;

    buf[0] = '\0';
    json_array_foreach(perms, i, p) {
        snprintf(buf + strlen(buf), sizeof(buf) - strlen(buf), "%s%s",
                 i ? ", " : "", json_string_value(p));
    }

    return buf[0] ? buf : "(read only)";
}


static void
sa_member_add(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        SA_OPT_MANY("perm", 'p'),
        SA_OPTS_END
    };
    json_t   *perms = json_array(), *in, *out;
    char    **op, *text;

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        json_array_append_new(perms, json_string(optarg));      /* --perm */
    }

    op = sa_operands_or_exit(sa, argc, argv, 2);
    in = json_pack("{s:s, s:s, s:o}", "team", op[0], "user", op[1],
                   "perms", perms);
    out = sa_cli_run(sa, "team.member.add", in);
    if (out == NULL) {
        return;
    }

    perms = json_object_get(out, "perms");
    text = sa_join(perms, ",");
    printf("%s is a member of team '%s' with %s\n",
           json_string_value(json_object_get(out, "user")),
           json_string_value(json_object_get(out, "team")),
           json_array_size(perms) ? text : "no permission (read only)");
    free(text);
    json_decref(out);
}


static void
sa_member_remove(sa_admin_t *sa, int argc, char **argv)
{
    char   **op = sa_plain_args_or_exit(sa, argc, argv, 2);
    json_t  *in, *out;

    in = json_pack("{s:s, s:s}", "team", op[0], "user", op[1]);
    out = sa_cli_run(sa, "team.member.remove", in);
    if (out == NULL) {
        return;
    }

    printf("%s is no longer a member of team '%s'\n", op[1], op[0]);
    json_decref(out);
}


static void
sa_member_list(sa_admin_t *sa, int argc, char **argv)
{
    char   **op = sa_plain_args_or_exit(sa, argc, argv, 1);
    json_t  *in, *arr, *m;
    size_t   i;

    in = json_pack("{s:s}", "team", op[0]);
    arr = sa_cli_run(sa, "team.member.list", in);
    if (arr == NULL) {
        return;
    }

    printf("%-24s %s\n", "USER", "PERMISSIONS");
    json_array_foreach(arr, i, m) {
        printf("%-24s %s\n", json_string_value(json_object_get(m, "user")),
               json_is_true(json_object_get(m, "owner"))
               ? "owner (all)" : sa_perms_text(json_object_get(m, "perms")));
    }
    json_decref(arr);
}


static void
sa_team_adopt(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        SA_OPTS_END
    };
    json_t  *teams = json_array(), *in, *out, *t, *m, *done;
    size_t   i, j;
    int      k;

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        /* --help only */
    }

    for (k = optind; k < argc; k++) {
        json_array_append_new(teams, json_string(argv[k]));
    }

    in = json_pack("{s:o}", "teams", teams);
    out = sa_op_call(sa, "team.adopt", in);
    json_decref(in);

    done = json_object_get(out, "adopted");
    if (sa->json) {
        sa_print_json(json_pack("{s:O}", "adopted", done));
        json_decref(out);
        return;
    }

    json_array_foreach(json_object_get(out, "signed"), i, t) {
        printf("team '%s': owner %s\n",
               json_string_value(json_object_get(t, "team")),
               json_string_value(json_object_get(t, "owner")));
        json_array_foreach(json_object_get(t, "members"), j, m) {
            printf("  member %s: %s\n",
                   json_string_value(json_object_get(m, "user")),
                   sa_perms_text(json_object_get(m, "perms")));
        }
    }

    printf("signed %zu team%s\n", json_array_size(done),
           json_array_size(done) == 1 ? "" : "s");
    json_decref(out);
}


static const sa_command_t  member_commands[] = {
    { "add", sa_member_add, "team member add TEAM USER [--perm PERM]...",
      "Adds USER to TEAM (or replaces the member's permissions) with the\n"
      "given permissions; the owner only.  PERM is one of\n"
      "  service_accounts:create   create accounts, change their grants\n"
      "  service_accounts:delete   delete accounts\n"
      "  service_accounts:tokens   issue, rescope, rotate, revoke tokens\n"
      "A member without --perm may only read.  The member record is\n"
      "signed: this needs the signing key.\n" },
    { "remove", sa_member_remove, "team member remove TEAM USER",
      "Removes USER from TEAM; the owner only.\n" },
    { "list", sa_member_list, "team member list TEAM",
      "Lists the owner and the members of TEAM with their permissions.\n" },
    { NULL, NULL, NULL, NULL }
};


static void
sa_team_member(sa_admin_t *sa, int argc, char **argv)
{
    sa_dispatch(sa, "team member", member_commands, argc, argv);
}


static const sa_command_t  team_commands[] = {
    { "create", sa_team_create, "team create TEAM --owner USER",
      "Creates a team owned by USER.  The owner holds every permission and\n"
      "is the only one who adds members.  TEAM: [a-z0-9][a-z0-9_.-]*, at\n"
      "most 63 characters (it is part of the accounts' addresses).  The\n"
      "team record is signed: this needs the signing key.\n" },
    { "member", sa_team_member, "team member add|remove|list ...",
      "Team membership; see 'sa-admin team member --help'.\n" },
    { "adopt", sa_team_adopt, "team adopt TEAM...",
      "Signs a team written before team records were signed (an unsigned\n"
      "owner and member permissions): its owner and members, as printed,\n"
      "become signed records.  An operator's decision (the signing key,\n"
      "no --as): check what it prints; a Redis writer may have changed\n"
      "unsigned teams.  Until then sa-admin refuses changes in the team.\n" },
    { NULL, NULL, NULL, NULL }
};


void
sa_cmd_team(sa_admin_t *sa, int argc, char **argv)
{
    sa_dispatch(sa, "team", team_commands, argc, argv);
}
