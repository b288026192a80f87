/*
 * sa-admin app: applications and the teams they belong to (DESIGN.md,
 * "Applications and team records").  An application's record names its
 * owner team and the teams it is shared with; only their accounts can be
 * granted it, subscribe to its notifications or emit its events (perm.c).
 */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"
#include "change.h"
#include "perm.h"
#include "redis.h"
#include "scripts.h"
#include "util.h"
#include "xalloc.h"

static void sa_app_create(sa_admin_t *sa, int argc, char **argv);
static void sa_app_share(sa_admin_t *sa, int argc, char **argv);
static void sa_app_unshare(sa_admin_t *sa, int argc, char **argv);
static void sa_app_list(sa_admin_t *sa, int argc, char **argv);
static void sa_app_show(sa_admin_t *sa, int argc, char **argv);
static void sa_app_adopt(sa_admin_t *sa, int argc, char **argv);

static const sa_command_t  app_commands[] = {
    { "create", sa_app_create, "app create APP --team TEAM",
      "Creates the application APP, owned by TEAM.  An operator's decision:\n"
      "run with the signing key and without --as or SA_ACTOR.  APP is the\n"
      "name gateways give in sa_application ([A-Za-z0-9_.-], at most 64).\n" },
    { "share", sa_app_share, "app share APP --team TEAM2",
      "Shares APP with TEAM2: its accounts may then be granted APP,\n"
      "subscribe to its notifications and emit its events.  The owner of\n"
      "APP's owner team (or the operator).\n" },
    { "unshare", sa_app_unshare, "app unshare APP --team TEAM2",
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


/* APP (want 1; 0: none; -1: optional) --team TEAM, both checked */
static char **
sa_app_args_or_exit(sa_admin_t *sa, int argc, char **argv, int want,
    const char **team)
{
    static const struct option  opts[] = {
        { "team", required_argument, NULL, 't' },
        SA_OPTS_END
    };
    char  **op;

    *team = NULL;

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        if (*team != NULL) {            /* --team */
            sa_die_usage(sa, "--team given twice");
        }
        *team = optarg;
    }

    if (want < 0) {
        want = argc - optind > 0;       /* APP is optional */
    }

    op = sa_operands_or_exit(sa, argc, argv, want);

    if (want > 0 && (strcmp(op[0], "*") == 0
                     || !sa_app_valid(op[0], strlen(op[0]))))
    {
        sa_die_usage(sa, "invalid application '%s' (expected "
                     "[A-Za-z0-9_.-], at most 64)", op[0]);
    }

    if (*team != NULL && !sa_name_valid(*team)) {
        sa_die_usage(sa, "invalid team name '%s'", *team);
    }

    return op;
}


static json_t *
sa_app_public(json_t *rec)
{
    return json_pack("{s:O, s:O, s:O, s:o, s:O}",
                     "name", json_object_get(rec, "id"),
                     "team", json_object_get(rec, "team"),
                     "shared", json_object_get(rec, "shared"),
                     "created_at", sa_time_json(json_integer_value(
                                       json_object_get(rec, "created_at"))),
                     "created_by", json_object_get(rec, "created_by"));
}


static void
sa_app_print_line(json_t *pub)
{
    char  *shared;

    shared = sa_join(json_object_get(pub, "shared"), ",");
    printf("%-24s %-20s %s\n", json_string_value(json_object_get(pub, "name")),
           json_string_value(json_object_get(pub, "team")), shared);
    free(shared);
}


static void
sa_app_print(sa_admin_t *sa, json_t *rec, const char *verb)
{
    json_t  *pub = sa_app_public(rec);
    char    *shared;

    if (sa->json) {
        sa_print_json(pub);
        return;
    }

    shared = sa_join(json_object_get(pub, "shared"), ", ");
    printf("%sapplication '%s': team %s, shared with %s\n", verb,
           json_string_value(json_object_get(pub, "name")),
           json_string_value(json_object_get(pub, "team")), shared);
    free(shared);
    json_decref(pub);
}


typedef struct {
    const char  *app;
    const char  *team;
    json_t      *shared;
    const char  *action;
    json_t      *rec;           /* the record written */
} sa_app_new_t;


static int
sa_app_create_once(sa_admin_t *sa, void *data)
{
    sa_app_new_t  *c = data;
    char          *sealed;
    json_t        *team;
    sa_args_t      args;
    int            rc;

    /* the owner team exists and verifies; its record is the proof */
    team = sa_team_load_or_exit(sa, c->team);
    json_decref(team);
    sa_permit_or_exit(sa, c->team, NULL);

    json_decref(c->rec);
    c->rec = json_pack("{s:s, s:s, s:s, s:O, s:I, s:s, s:i}", "kind", "app",
                       "id", c->app, "team", c->team, "shared", c->shared,
                       "created_at", (json_int_t) sa_now(),
                       "created_by", sa->actor, "version", 1);
    sealed = sa_record_seal(sa, c->rec);

    sa_change_args(sa, &args);
    sa_args_add(&args, c->app);
    sa_args_add(&args, c->team);
    sa_args_add(&args, sealed);
    sa_args_add(&args, c->action);
    rc = sa_change_or_exit(sa, &sa_lua_app_create, &args);
    sa_args_free(&args);
    free(sealed);

    return rc;
}


static void
sa_app_create(sa_admin_t *sa, int argc, char **argv)
{
    sa_app_new_t   c;
    char         **op;
    const char    *team;

    op = sa_app_args_or_exit(sa, argc, argv, 1, &team);

    if (team == NULL) {
        sa_die_usage(sa, "--team TEAM is required");
    }

    sa_operator_or_exit(sa, "creating an application");

    c = (sa_app_new_t) { op[0], team, json_array(), "app.create", NULL };
    sa_retry_or_exit(sa, sa_app_create_once, &c, "the application");

    sa_app_print(sa, c.rec, "created ");

    json_decref(c.rec);
    json_decref(c.shared);
}


typedef struct {
    const char  *app;
    const char  *other;
    int          share;
    json_t      *rec;
} sa_app_change_t;


/* the account ids of team whose signed records hold a grant for app */
static json_t *
sa_app_holders(sa_admin_t *sa, const char *team, const char *app)
{
    redisReply   *ids;
    sa_account_t  a;
    const char   *err;
    json_t       *out = json_array(), *v;
    size_t        i, j;

    ids = sa_xredis_cmd(sa, "SMEMBERS %s" SA_KEY_TEAM "%s" SA_KEY_ACCOUNTS,
                        sa->prefix, team);

    for (i = 0; ids->type == REDIS_REPLY_ARRAY && i < ids->elements; i++) {
        redisReply  *r = sa_xredis_cmd(sa, "GET %s" SA_KEY_ACCOUNT "%s",
                                       sa->prefix, ids->element[i]->str);

        if (r->type == REDIS_REPLY_STRING
            && sa_account_from_value(sa, ids->element[i]->str, r->str, r->len,
                                     &a, &err) == 0)
        {
            json_array_foreach(a.apps, j, v) {
                if (strcmp(json_string_value(v), app) == 0) {
                    json_array_append_new(out, json_pack("{s:s, s:s}",
                                          "id", a.id, "name", a.name));
                    break;
                }
            }
            sa_account_free(&a);
        }
        freeReplyObject(r);
    }

    freeReplyObject(ids);
    return out;
}


static int
sa_app_change_once(sa_admin_t *sa, void *data)
{
    sa_app_change_t  *c = data;
    const char       *err, *owner;
    char             *sealed, *old;
    json_t           *shared, *v, *team;
    redisReply       *r;
    sa_args_t         args;
    size_t            i;
    int               rc, had = 0;

    r = sa_xredis_cmd(sa, "GET %s" SA_KEY_APP "%s", sa->prefix, c->app);
    json_decref(c->rec);
    c->rec = sa_record_open(sa, NULL, SA_KIND_APP, c->app,
                            r->type == REDIS_REPLY_STRING ? r->str : NULL,
                            r->len, &err);
    if (c->rec == NULL && err != NULL) {
        sa_die(SA_EXIT_NOT_FOUND, "the record of application '%s' is "
               "refused: %s (written by something other than sa-admin?)",
               c->app, err);
    }
    if (c->rec == NULL) {
        sa_die(SA_EXIT_NOT_FOUND, "no application '%s'", c->app);
    }
    old = sa_xstrdup(r->str);
    freeReplyObject(r);

    owner = json_string_value(json_object_get(c->rec, "team"));
    sa_permit_or_exit(sa, owner, NULL);

    if (strcmp(owner, c->other) == 0) {
        sa_die(SA_EXIT_NOT_FOUND, "team '%s' owns application '%s'", owner,
               c->app);
    }

    if (c->share) {
        team = sa_team_load_or_exit(sa, c->other);
        json_decref(team);
    }

    shared = json_array();
    json_array_foreach(json_object_get(c->rec, "shared"), i, v) {
        if (strcmp(json_string_value(v), c->other) == 0) {
            had = 1;
        } else {
            json_array_append(shared, v);
        }
    }
    if (c->share) {
        json_array_append_new(shared, json_string(c->other));
    }

    if (had == c->share) {
        json_decref(shared);
        free(old);
        return SA_EXIT_OK;              /* nothing to change */
    }

    json_object_set_new(c->rec, "shared", shared);
    json_object_set_new(c->rec, "version", json_integer(
        json_integer_value(json_object_get(c->rec, "version")) + 1));
    sealed = sa_record_seal(sa, c->rec);

    sa_change_args(sa, &args);
    sa_args_add(&args, c->app);
    sa_args_add(&args, owner);
    sa_args_add(&args, old);
    sa_args_add(&args, sealed);
    sa_args_add(&args, c->share ? "app.share" : "app.unshare");
    sa_args_add(&args, c->other);
    rc = sa_change_or_exit(sa, &sa_lua_app_change, &args);
    sa_args_free(&args);
    free(sealed);
    free(old);

    return rc;
}


static void
sa_app_share_cmd(sa_admin_t *sa, int argc, char **argv, int share)
{
    sa_app_change_t   c;
    char            **op;
    const char       *team;
    json_t           *holders, *h;
    size_t            i;

    op = sa_app_args_or_exit(sa, argc, argv, 1, &team);

    if (team == NULL) {
        sa_die_usage(sa, "--team TEAM is required");
    }

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);

    c = (sa_app_change_t) { op[0], team, share, NULL };
    sa_retry_or_exit(sa, sa_app_change_once, &c, "the application");

    if (!share) {
        holders = sa_app_holders(sa, team, op[0]);
        json_array_foreach(holders, i, h) {
            fprintf(stderr, "sa-admin: account %s/%s (%s) still holds a "
                    "grant for '%s': 'sa-admin account ungrant' removes it\n",
                    team, json_string_value(json_object_get(h, "name")),
                    json_string_value(json_object_get(h, "id")), op[0]);
        }
        json_decref(holders);
    }

    sa_app_print(sa, c.rec, share ? "shared: " : "unshared: ");
    json_decref(c.rec);
}


static void
sa_app_share(sa_admin_t *sa, int argc, char **argv)
{
    sa_app_share_cmd(sa, argc, argv, 1);
}


static void
sa_app_unshare(sa_admin_t *sa, int argc, char **argv)
{
    sa_app_share_cmd(sa, argc, argv, 0);
}


static int
sa_cmp_json_name(const void *a, const void *b)
{
    return strcmp(json_string_value(json_object_get(*(json_t * const *) a,
                                                    "name")),
                  json_string_value(json_object_get(*(json_t * const *) b,
                                                    "name")));
}


static void
sa_app_list(sa_admin_t *sa, int argc, char **argv)
{
    char        **op;
    const char   *team, *err;
    redisReply   *names, *r;
    json_t       *rec, *arr, **v;
    size_t        i, n;

    op = sa_app_args_or_exit(sa, argc, argv, 0, &team);
    (void) op;

    names = sa_xredis_cmd(sa, "SMEMBERS %s" SA_KEY_APPS, sa->prefix);
    n = names->type == REDIS_REPLY_ARRAY ? names->elements : 0;
    v = sa_xcalloc(n + 1, sizeof(json_t *));

    for (i = 0; i < n; i++) {
        r = sa_xredis_cmd(sa, "GET %s" SA_KEY_APP "%s", sa->prefix,
                          names->element[i]->str);
        rec = sa_record_open(sa, NULL, SA_KIND_APP, names->element[i]->str,
                             r->type == REDIS_REPLY_STRING ? r->str : NULL,
                             r->len, &err);
        if (rec == NULL && err != NULL) {
            fprintf(stderr, "sa-admin: the record of application '%s' is "
                    "refused: %s (written by something other than "
                    "sa-admin?); not listed\n", sa_vis(names->element[i]->str),
                    err);
        }
        if (rec != NULL && (team == NULL || sa_app_serves(rec, team))) {
            v[i] = sa_app_public(rec);
        }
        json_decref(rec);
        freeReplyObject(r);
    }
    freeReplyObject(names);

    /* the listed ones first, by name */
    arr = json_array();
    for (i = 0; i < n; i++) {
        if (v[i] != NULL) {
            v[json_array_size(arr)] = v[i];
            json_array_append_new(arr, json_null());
        }
    }
    n = json_array_size(arr);
    json_array_clear(arr);
    qsort(v, n, sizeof(json_t *), sa_cmp_json_name);
    for (i = 0; i < n; i++) {
        json_array_append_new(arr, v[i]);
    }
    free(v);

    if (sa->json) {
        sa_print_json(arr);
        return;
    }

    printf("%-24s %-20s %s\n", "APPLICATION", "TEAM", "SHARED WITH");
    for (i = 0; i < n; i++) {
        sa_app_print_line(json_array_get(arr, i));
    }
    json_decref(arr);
}


static void
sa_app_show(sa_admin_t *sa, int argc, char **argv)
{
    char        **op;
    const char   *team;
    json_t       *rec;

    op = sa_app_args_or_exit(sa, argc, argv, 1, &team);

    if (team != NULL) {
        sa_die_usage(sa, "unexpected --team");
    }

    rec = sa_record_get_or_exit(sa, SA_KIND_APP, op[0]);
    sa_app_print(sa, rec, "");
    json_decref(rec);
}


/*
 * Every application some account holds a grant for, as an object
 * app -> [teams whose accounts hold it], from the verified account
 * records (SCAN of acct:*).
 */
static json_t *
sa_apps_in_use(sa_admin_t *sa)
{
    char          cursor[32], match[256];
    const char   *err, *id;
    size_t        i, j, plen;
    redisReply   *r, *v;
    sa_account_t  a;
    json_t       *out = json_object(), *app, *teams;

    snprintf(match, sizeof(match), "%s" SA_KEY_ACCOUNT "*", sa->prefix);
    plen = strlen(sa->prefix) + sizeof(SA_KEY_ACCOUNT) - 1;
    strcpy(cursor, "0");

    do {
        r = sa_xredis_cmd(sa, "SCAN %s MATCH %s COUNT 1000", cursor, match);
        if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            freeReplyObject(r);
            break;
        }
        snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);

        for (i = 0; i < r->element[1]->elements; i++) {
            if (r->element[1]->element[i]->len != plen + SA_TOKEN_ID_LEN) {
                continue;
            }
            id = r->element[1]->element[i]->str + plen;
            v = sa_xredis_cmd(sa, "GET %s", r->element[1]->element[i]->str);
            if (v->type == REDIS_REPLY_STRING
                && sa_account_from_value(sa, id, v->str, v->len, &a, &err)
                   == 0)
            {
                json_array_foreach(a.apps, j, app) {
                    if (strcmp(json_string_value(app), "*") == 0) {
                        continue;
                    }
                    teams = json_object_get(out, json_string_value(app));
                    if (teams == NULL) {
                        teams = json_array();
                        json_object_set_new(out, json_string_value(app),
                                            teams);
                    }
                    sa_json_add_unique(teams, a.team);
                }
                sa_account_free(&a);
            }
            freeReplyObject(v);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);

    return out;
}


static void
sa_app_adopt(sa_admin_t *sa, int argc, char **argv)
{
    sa_app_new_t   c;
    char         **op;
    const char    *team, *name, *err;
    json_t        *inuse, *teams, *t, *list, *rec;
    size_t         i;

    op = sa_app_args_or_exit(sa, argc, argv, -1, &team);

    if ((argc - optind > 0) != (team != NULL)) {
        sa_die_usage(sa, "APP and --team TEAM go together");
    }

    sa_operator_or_exit(sa, "adopting an application");
    inuse = sa_apps_in_use(sa);

    if (team == NULL) {
        list = json_array();
        json_object_foreach(inuse, name, teams) {
            rec = sa_record_get(sa, NULL, SA_KIND_APP, name, &err);
            if (rec == NULL) {
                json_array_append_new(list, json_pack("{s:s, s:O}", "name",
                                      name, "teams", teams));
            }
            json_decref(rec);
        }

        if (sa->json) {
            sa_print_json(list);
        } else {
            printf("%-24s %s\n", "APPLICATION (no owner)", "GRANTED TO TEAMS");
            json_array_foreach(list, i, t) {
                char  *s = sa_join(json_object_get(t, "teams"), ",");

                printf("%-24s %s\n",
                       json_string_value(json_object_get(t, "name")), s);
                free(s);
            }
            json_decref(list);
        }
        json_decref(inuse);
        return;
    }

    c = (sa_app_new_t) { op[0], team, json_array(), "app.adopt", NULL };
    json_array_foreach(json_object_get(inuse, op[0]), i, t) {
        if (strcmp(json_string_value(t), team) != 0) {
            sa_team_load_or_exit(sa, json_string_value(t));
            json_array_append(c.shared, t);
        }
    }
    json_decref(inuse);

    sa_retry_or_exit(sa, sa_app_create_once, &c, "the application");

    sa_app_print(sa, c.rec, "adopted ");

    json_decref(c.rec);
    json_decref(c.shared);
}
