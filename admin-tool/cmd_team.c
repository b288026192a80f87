/* sa-admin team: teams, their owner and their members' permissions. */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"
#include "change.h"
#include "perm.h"
#include "redis.h"
#include "scripts.h"
#include "util.h"

static void sa_team_create(sa_admin_t *sa, int argc, char **argv);
static void sa_team_member(sa_admin_t *sa, int argc, char **argv);
static void sa_member_add(sa_admin_t *sa, int argc, char **argv);
static void sa_member_list(sa_admin_t *sa, int argc, char **argv);
static void sa_member_remove(sa_admin_t *sa, int argc, char **argv);
static void sa_team_adopt(sa_admin_t *sa, int argc, char **argv);

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
    char       **op, *sealed;
    sa_args_t    args;
    json_t      *team;

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

    /*
     * Creating a team grants nothing over existing applications (each has
     * an owner team, see 'sa-admin app'): whoever holds the signing key
     * may, naming any owner.
     */
    if (sa->actor == NULL) {
        sa->actor = owner;
    }
    sa_actor_or_exit(sa);

    team = json_pack("{s:s, s:s, s:s, s:I, s:s, s:i}", "kind", "team",
                     "id", op[0], "owner", owner,
                     "created_at", (json_int_t) sa_now(),
                     "created_by", sa->actor, "version", 1);
    sealed = sa_record_seal(sa, team);
    json_decref(team);

    sa_change_args(sa, &args);
    sa_args_add(&args, op[0]);
    sa_args_add(&args, owner);
    sa_args_add(&args, sealed);
    sa_change_once_or_exit(sa, &sa_lua_team_create, &args, "the team");
    sa_args_free(&args);
    free(sealed);

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


typedef struct {
    const char  *team;
    const char  *user;
    json_t      *perms;         /* NULL: remove the member */
} sa_member_t;


/*
 * One attempt at adding (or replacing) or removing a member: the owner's
 * right proven on the verified team record, the member record signed.
 */
static int
sa_member_once(sa_admin_t *sa, void *data)
{
    sa_member_t  *m = data;
    char          id[256], *sealed, *old = NULL;
    const char   *owner, *err;
    json_t       *team, *cur, *rec;
    json_int_t    version = 0;
    redisReply   *r;
    sa_args_t     args;
    int           rc;

    sa_permit_or_exit(sa, m->team, NULL);

    team = sa_team_load_or_exit(sa, m->team);
    owner = json_string_value(json_object_get(team, "owner"));
    if (strcmp(owner, m->user) == 0) {
        sa_die(SA_EXIT_NOT_FOUND, "'%s' owns team '%s' and holds every "
               "permission", m->user, m->team);
    }
    json_decref(team);

    snprintf(id, sizeof(id), "%s/%s", m->team, m->user);
    r = sa_xredis_cmd(sa, "HGET %s" SA_KEY_TEAM "%s" SA_KEY_MEMBERS " %s",
                      sa->prefix, m->team, m->user);
    if (r->type == REDIS_REPLY_STRING) {
        old = strdup(r->str);
        cur = sa_record_open(sa, NULL, SA_KIND_MEMBER, id, r->str, r->len,
                             &err);
        /* a field that does not verify is replaced, version 1 again */
        version = cur ? json_integer_value(json_object_get(cur, "version"))
                      : 0;
        json_decref(cur);
    }
    freeReplyObject(r);

    sealed = NULL;
    if (m->perms != NULL) {
        rec = json_pack("{s:s, s:s, s:s, s:s, s:O, s:I, s:s, s:I}",
                        "kind", "member", "id", id, "team", m->team,
                        "user", m->user, "perms", m->perms,
                        "created_at", (json_int_t) sa_now(),
                        "created_by", sa->actor, "version", version + 1);
        sealed = sa_record_seal(sa, rec);
        json_decref(rec);
    }

    sa_change_args(sa, &args);
    sa_args_add(&args, m->team);
    sa_args_add(&args, m->user);
    sa_args_add(&args, sealed ? sealed : "");
    sa_args_add(&args, old ? old : "");
    rc = sa_change_or_exit(sa, &sa_lua_member_add, &args);
    sa_args_free(&args);
    free(sealed);
    free(old);

    return rc;
}


static void
sa_member_args_or_exit(sa_admin_t *sa, char **op)
{
    if (!sa_name_valid(op[0])) {
        sa_die_usage(sa, "invalid team name '%s'", op[0]);
    }

    if (!sa_user_valid(op[1])) {
        sa_die_usage(sa, "invalid user name '%s'", op[1]);
    }
}


static void
sa_member_add(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        SA_OPT_MANY("perm", 'p'),
        SA_OPTS_END
    };
    char          perms[128] = "";
    char        **op;
    sa_member_t   m;

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        sa_perms_add_or_exit(sa, perms, sizeof(perms), optarg);  /* --perm */
    }

    op = sa_operands_or_exit(sa, argc, argv, 2);
    sa_member_args_or_exit(sa, op);

    m = (sa_member_t) { op[0], op[1], sa_perms_json(perms) };
    sa_retry_or_exit(sa, sa_member_once, &m, "the member");
    json_decref(m.perms);

    if (sa->json) {
        sa_print_json(json_pack("{s:s, s:s, s:o}", "team", op[0],
                                "user", op[1], "perms", sa_perms_json(perms)));
    } else {
        printf("%s is a member of team '%s' with %s\n", op[1], op[0],
               perms[0] ? perms : "no permission (read only)");
    }
}


static void
sa_member_remove(sa_admin_t *sa, int argc, char **argv)
{
    char         **op;
    sa_member_t    m;

    op = sa_plain_args_or_exit(sa, argc, argv, 2);
    sa_member_args_or_exit(sa, op);

    m = (sa_member_t) { op[0], op[1], NULL };
    sa_retry_or_exit(sa, sa_member_once, &m, "the member");

    if (sa->json) {
        sa_print_json(json_pack("{s:s, s:s, s:b}", "team", op[0],
                                "user", op[1], "removed", 1));
    } else {
        printf("%s is no longer a member of team '%s'\n", op[1], op[0]);
    }
}


static void
sa_member_list(sa_admin_t *sa, int argc, char **argv)
{
    char        **op, id[256];
    const char   *err;
    redisReply   *members;
    json_t       *arr, *team, *m;
    size_t        i;

    op = sa_plain_args_or_exit(sa, argc, argv, 1);

    team = sa_record_get_or_exit(sa, SA_KIND_TEAM, op[0]);

    members = sa_xredis_cmd(sa, "HGETALL %s" SA_KEY_TEAM "%s" SA_KEY_MEMBERS,
                            sa->prefix, op[0]);

    arr = json_array();
    json_array_append_new(arr, json_pack("{s:O, s:[sss], s:b}",
                          "user", json_object_get(team, "owner"),
                          "perms", "service_accounts:create",
                          "service_accounts:delete", "service_accounts:tokens",
                          "owner", 1));

    for (i = 0; members->type == REDIS_REPLY_ARRAY && i + 1 < members->elements;
         i += 2)
    {
        snprintf(id, sizeof(id), "%s/%s", op[0], members->element[i]->str);
        m = sa_record_open(sa, NULL, SA_KIND_MEMBER, id,
                           members->element[i + 1]->str,
                           members->element[i + 1]->len, &err);
        if (m == NULL) {
            fprintf(stderr, "sa-admin: the member record of '%s' is "
                    "refused: %s (written by something other than "
                    "sa-admin?); not listed\n",
                    sa_vis(members->element[i]->str), err);
            continue;
        }
        json_array_append_new(arr, json_pack("{s:s, s:O, s:b}",
                              "user", members->element[i]->str,
                              "perms", json_object_get(m, "perms"),
                              "owner", 0));
        json_decref(m);
    }

    json_decref(team);
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


/* one unsigned team signed as read; SA_CONFLICT when it changed */
static int
sa_team_adopt_once(sa_admin_t *sa, void *data)
{
    const char   *team = data;
    char          id[256], *sealed;
    redisReply   *owner, *members;
    json_t       *rec, *perms;
    sa_args_t     args;
    size_t        i;
    int           rc;

    owner = sa_xredis_cmd(sa, "HGET %s" SA_KEY_TEAM "%s owner", sa->prefix,
                          team);
    if (owner->type == REDIS_REPLY_ERROR) {
        sa_die(SA_EXIT_NOT_FOUND, "team '%s' is signed already", team);
    }
    if (owner->type != REDIS_REPLY_STRING) {
        sa_die(SA_EXIT_NOT_FOUND, "team '%s' does not exist", team);
    }
    if (!sa_user_valid(owner->str)) {
        sa_die(SA_EXIT_NOT_FOUND, "team '%s': its owner '%s' is no valid "
               "user name; not adopted", team, sa_vis(owner->str));
    }

    members = sa_xredis_cmd(sa, "HGETALL %s" SA_KEY_TEAM "%s" SA_KEY_MEMBERS,
                            sa->prefix, team);

    rec = json_pack("{s:s, s:s, s:s, s:I, s:s, s:i}", "kind", "team",
                    "id", team, "owner", owner->str,
                    "created_at", (json_int_t) sa_now(),
                    "created_by", sa->actor, "version", 1);
    sealed = sa_record_seal(sa, rec);
    json_decref(rec);

    sa_change_args(sa, &args);
    sa_args_add(&args, team);
    sa_args_add(&args, owner->str);
    sa_args_add(&args, sealed);
    free(sealed);
    sa_args_addf(&args, "%zu", members->type == REDIS_REPLY_ARRAY
                               ? members->elements / 2 : (size_t) 0);

    if (!sa->json) {
        printf("team '%s': owner %s\n", team, owner->str);
    }

    for (i = 0; members->type == REDIS_REPLY_ARRAY
                && i + 1 < members->elements; i += 2)
    {
        perms = sa_perms_json(members->element[i + 1]->str);
        snprintf(id, sizeof(id), "%s/%s", team, members->element[i]->str);
        rec = json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:s, s:i}",
                        "kind", "member", "id", id, "team", team,
                        "user", members->element[i]->str, "perms", perms,
                        "created_at", (json_int_t) sa_now(),
                        "created_by", sa->actor, "version", 1);
        if (sa_record_check(rec, SA_KIND_MEMBER, id) != SA_REC_OK
            || !sa_user_valid(members->element[i]->str))
        {
            sa_die(SA_EXIT_NOT_FOUND, "team '%s': member '%s' with '%s' is "
                   "not valid; not adopted (remove it first)", team,
                   sa_vis(members->element[i]->str),
                   sa_vis(members->element[i + 1]->str));
        }
        sealed = sa_record_seal(sa, rec);
        sa_args_add(&args, members->element[i]->str);
        sa_args_add(&args, members->element[i + 1]->str);
        sa_args_add(&args, sealed);
        free(sealed);

        if (!sa->json) {
            printf("  member %s: %s\n", members->element[i]->str,
                   sa_perms_text(json_object_get(rec, "perms")));
        }
        json_decref(rec);
    }

    rc = sa_change_or_exit(sa, &sa_lua_team_adopt, &args);
    sa_args_free(&args);
    freeReplyObject(members);
    freeReplyObject(owner);

    return rc;
}


static void
sa_team_adopt(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        SA_OPTS_END
    };
    json_t  *done;
    int      i;

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        /* --help only */
    }

    if (optind >= argc) {
        sa_die_usage(sa, "which team? (TEAM...)");
    }

    for (i = optind; i < argc; i++) {
        if (!sa_name_valid(argv[i])) {
            sa_die_usage(sa, "invalid team name '%s'", argv[i]);
        }
    }

    sa_operator_or_exit(sa, "adopting an unsigned team");

    done = json_array();
    for (i = optind; i < argc; i++) {
        sa_retry_or_exit(sa, sa_team_adopt_once, argv[i], "the team");
        json_array_append_new(done, json_string(argv[i]));
    }

    if (sa->json) {
        sa_print_json(json_pack("{s:o}", "adopted", done));
    } else {
        printf("signed %zu team%s\n", json_array_size(done),
               json_array_size(done) == 1 ? "" : "s");
        json_decref(done);
    }
}
