/* sa-admin team: teams, their owner and their members' permissions. */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"
#include "change.h"
#include "redis.h"
#include "scripts.h"
#include "util.h"

static void sa_team_create(sa_admin_t *sa, int argc, char **argv);
static void sa_team_member(sa_admin_t *sa, int argc, char **argv);
static void sa_member_add(sa_admin_t *sa, int argc, char **argv);
static void sa_member_list(sa_admin_t *sa, int argc, char **argv);

static const sa_command_t  team_commands[] = {
    { "create", sa_team_create, "team create TEAM --owner USER",
      "Creates a team owned by USER.  The owner holds every permission and\n"
      "is the only one who adds members.  TEAM: [a-z0-9][a-z0-9_.-]*, at\n"
      "most 63 characters (it is part of the accounts' addresses).\n" },
    { "member", sa_team_member, "team member add|list ...",
      "Team membership; see 'sa-admin team member --help'.\n" },
    { NULL, NULL, NULL, NULL }
};

static const sa_command_t  member_commands[] = {
    { "add", sa_member_add, "team member add TEAM USER [--perm PERM]...",
      "Adds USER to TEAM (or replaces the member's permissions) with the\n"
      "given permissions; the owner only.  PERM is one of\n"
      "  service_accounts:create   create accounts, change their grants\n"
      "  service_accounts:delete   delete accounts\n"
      "  service_accounts:tokens   issue, rescope, rotate, revoke tokens\n"
      "A member without --perm may only read.\n" },
    { "list", sa_member_list, "team member list TEAM",
      "Lists the owner and the members of TEAM with their permissions.\n" },
    { NULL, NULL, NULL, NULL }
};


void
sa_cmd_team(sa_admin_t *sa, int argc, char **argv)
{
    sa_dispatch(sa, "team", team_commands, argc, argv);
}


static void
sa_team_member(sa_admin_t *sa, int argc, char **argv)
{
    sa_dispatch(sa, "team member", member_commands, argc, argv);
}


static void
sa_team_create(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "owner", required_argument, NULL, 'o' },
        SA_OPTS_END
    };
    const char  *owner = NULL;
    char       **op;
    sa_args_t    args;

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        owner = optarg;                 /* --owner */
    }

    op = sa_operands_or_exit(sa, argc, argv, 1);

    if (!sa_name_valid(op[0])) {
        sa_die_usage(sa, "invalid team name '%s'", op[0]);
    }

    if (owner == NULL) {
        sa_die_usage(sa, "--owner USER is required");
    }

    if (!sa_user_valid(owner)) {
        sa_die_usage(sa, "invalid user name '%s'", owner);
    }

    /* creating a team needs no permission: the creator may name anyone */
    if (sa->actor == NULL) {
        sa->actor = owner;
    }
    sa_actor_or_exit(sa);

    sa_change_args(sa, &args);
    sa_args_add(&args, op[0]);
    sa_args_add(&args, owner);
    sa_change_once_or_exit(sa, &sa_lua_team_create, &args, "the team");
    sa_args_free(&args);

    if (sa->json) {
        sa_print_json(json_pack("{s:s, s:s}", "team", op[0], "owner", owner));
    } else {
        printf("created team '%s', owned by %s\n", op[0], owner);
    }
}


static void
sa_perms_add_or_exit(sa_admin_t *sa, char *perms, size_t size,
    const char *perm)
{
    if (!sa_perm_valid(perm)) {
        sa_die_usage(sa, "unknown permission '%s'", perm);
    }

    /* a repeated --perm is harmless: keep each once */
    if (strstr(perms, perm) == NULL) {
        if (perms[0]) {
            strncat(perms, ",", size - strlen(perms) - 1);
        }
        strncat(perms, perm, size - strlen(perms) - 1);
    }
}


static json_t *
sa_perms_json(const char *perms)
{
    json_t  *arr = json_array();
    char    *copy, *p, *save;

    copy = strdup(perms);
    for (p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        json_array_append_new(arr, json_string(p));
    }
    free(copy);

    return arr;
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
    char        perms[128] = "";
    char      **op;
    sa_args_t   args;

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        sa_perms_add_or_exit(sa, perms, sizeof(perms), optarg);  /* --perm */
    }

    op = sa_operands_or_exit(sa, argc, argv, 2);

    if (!sa_name_valid(op[0])) {
        sa_die_usage(sa, "invalid team name '%s'", op[0]);
    }

    if (!sa_user_valid(op[1])) {
        sa_die_usage(sa, "invalid user name '%s'", op[1]);
    }

    sa_actor_or_exit(sa);

    sa_change_args(sa, &args);
    sa_args_add(&args, op[0]);
    sa_args_add(&args, op[1]);
    sa_args_add(&args, perms);
    sa_change_once_or_exit(sa, &sa_lua_member_add, &args, "the team");
    sa_args_free(&args);

    if (sa->json) {
        sa_print_json(json_pack("{s:s, s:s, s:o}", "team", op[0],
                                "user", op[1], "perms", sa_perms_json(perms)));
    } else {
        printf("%s is a member of team '%s' with %s\n", op[1], op[0],
               perms[0] ? perms : "no permission (read only)");
    }
}


static void
sa_member_list(sa_admin_t *sa, int argc, char **argv)
{
    char        **op;
    redisReply   *owner, *members;
    json_t       *arr;
    size_t        i;

    op = sa_plain_args_or_exit(sa, argc, argv, 1);

    owner = sa_xredis_cmd(sa, "HGET %s owner", sa_key(sa, SA_KEY_TEAM, op[0]));
    if (owner->type != REDIS_REPLY_STRING) {
        sa_die(SA_EXIT_NOT_FOUND, "team '%s' does not exist", op[0]);
    }

    members = sa_xredis_cmd(sa, "HGETALL %s" SA_KEY_TEAM "%s" SA_KEY_MEMBERS,
                            sa->prefix, op[0]);

    arr = json_array();
    json_array_append_new(arr, json_pack("{s:s, s:[sss], s:b}",
                          "user", owner->str,
                          "perms", "service_accounts:create",
                          "service_accounts:delete", "service_accounts:tokens",
                          "owner", 1));

    for (i = 0; i + 1 < members->elements; i += 2) {
        json_array_append_new(arr, json_pack("{s:s, s:o, s:b}",
                              "user", members->element[i]->str,
                              "perms",
                              sa_perms_json(members->element[i + 1]->str),
                              "owner", 0));
    }

    freeReplyObject(owner);
    freeReplyObject(members);

    if (sa->json) {
        sa_print_json(arr);
        return;
    }

    printf("%-24s %s\n", "USER", "PERMISSIONS");
    for (i = 0; i < json_array_size(arr); i++) {
        json_t  *m = json_array_get(arr, i);

        printf("%-24s %s\n", json_string_value(json_object_get(m, "user")),
               json_is_true(json_object_get(m, "owner"))
               ? "owner (all)" : sa_perms_text(json_object_get(m, "perms")));
    }
    json_decref(arr);
}
