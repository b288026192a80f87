/*
 * sa-admin app: the operations on applications and the teams they belong
 * to (ops.h; DESIGN.md,
 * "Applications and team records").  An application's record names its
 * owner team and the teams it is shared with; only their accounts can be
 * granted it, subscribe to its notifications or emit its events (perm.c).
 */

#include <stdlib.h>
#include <string.h>

#include "records.h"
#include "change.h"
#include "perm.h"
#include "redis.h"
#include "scan.h"
#include "scripts.h"
#include "util.h"
#include "xalloc.h"
#include "ops.h"

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


/*
 * app.create: POST /v1/apps (201)
 *   app    string, required: [A-Za-z0-9_.-], at most 64, the name
 *          gateways give in sa_application
 *   team   string, required: the owner team
 * An operator's decision.  Returns the application {"name", "team",
 * "shared", "created_at", "created_by"}.
 */
json_t *
sa_op_app_create(sa_admin_t *sa, json_t *in)
{
    sa_app_new_t   c;
    json_t        *out;

    sa_in_only(in, "app", "team", NULL);
    c = (sa_app_new_t) { sa_in_app(in, 1), sa_in_team(in, 1), NULL,
                         "app.create", NULL };

    sa_operator_or_exit(sa, "creating an application");

    c.shared = json_array();
    sa_retry_or_exit(sa, sa_app_create_once, &c, "the application");

    out = sa_app_public(c.rec);
    json_decref(c.rec);
    json_decref(c.shared);
    return out;
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
        sa_die_kind(sa_refused_kind(err), "the record of application '%s' "
                    "is refused: %s%s", c->app, err, sa_refused_hint(err));
    }
    if (c->rec == NULL) {
        sa_die_kind(SA_ERR_NOT_FOUND, "no application '%s'", c->app);
    }
    old = sa_xstrdup(r->str);
    freeReplyObject(r);

    owner = json_string_value(json_object_get(c->rec, "team"));
    sa_permit_or_exit(sa, owner, NULL);

    if (strcmp(owner, c->other) == 0) {
        sa_die_kind(SA_ERR_EXISTS, "team '%s' owns application '%s'", owner,
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


/* app.share and app.unshare */
static json_t *
sa_app_share(sa_admin_t *sa, json_t *in, int share)
{
    sa_app_change_t   c;
    json_t           *holders, *h, *out;
    size_t            i;

    sa_in_only(in, "app", "team", NULL);
    c = (sa_app_change_t) { sa_in_app(in, 1), sa_in_team(in, 1), share,
                            NULL };

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);

    sa_retry_or_exit(sa, sa_app_change_once, &c, "the application");

    if (!share) {
        holders = sa_app_holders(sa, c.other, c.app);
        json_array_foreach(holders, i, h) {
            fprintf(stderr, "sa-admin: account %s/%s (%s) still holds a "
                    "grant for '%s': 'sa-admin account ungrant' removes it\n",
                    c.other, json_string_value(json_object_get(h, "name")),
                    json_string_value(json_object_get(h, "id")), c.app);
        }
        json_decref(holders);
    }

    out = sa_app_public(c.rec);
    json_decref(c.rec);
    return out;
}


/*
 * app.share: PUT /v1/apps/{app}/teams/{team}
 *   app    string, required
 *   team   string, required: the team it is shared with
 * The owner of the application's owner team.  Returns the application.
 */
json_t *
sa_op_app_share(sa_admin_t *sa, json_t *in)
{
    return sa_app_share(sa, in, 1);
}


/*
 * app.unshare: DELETE /v1/apps/{app}/teams/{team}
 *   app    string, required
 *   team   string, required: the team it is no longer shared with
 * The owner of the application's owner team; grants that team's accounts
 * hold stay (said on stderr).  Returns the application.
 */
json_t *
sa_op_app_unshare(sa_admin_t *sa, json_t *in)
{
    return sa_app_share(sa, in, 0);
}


/*
 * app.list: GET /v1/apps
 *   team   string: only those owned by or shared with this team
 * Returns the applications, an array sorted by name; over the API, those
 * the caller reads (sa_app_sight()).
 */
json_t *
sa_op_app_list(sa_admin_t *sa, json_t *in)
{
    const char      *team, *err;
    redisReply      *names, *r;
    json_t          *rec, *arr;
    size_t           i, n;
    sa_app_sight_t  *sight;

    sa_in_only(in, "team", NULL);
    team = sa_in_team(in, 0);
    sight = sa_app_sight(sa);

    names = sa_xredis_cmd(sa, "SMEMBERS %s" SA_KEY_APPS, sa->prefix);
    n = names->type == REDIS_REPLY_ARRAY ? names->elements : 0;
    arr = json_array();

    for (i = 0; i < n; i++) {
        r = sa_xredis_cmd(sa, "GET %s" SA_KEY_APP "%s", sa->prefix,
                          names->element[i]->str);
        rec = sa_record_open(sa, NULL, SA_KIND_APP, names->element[i]->str,
                             r->type == REDIS_REPLY_STRING ? r->str : NULL,
                             r->len, &err);
        if (rec == NULL && err != NULL) {
            fprintf(stderr, "sa-admin: the record of application '%s' is "
                    "refused: %s%s; not listed\n",
                    sa_vis(names->element[i]->str), err,
                    sa_refused_hint(err));
        }
        if (rec != NULL && (team == NULL || sa_app_serves(rec, team))
            && sa_app_seen(sa, sight, rec))
        {
            json_array_append_new(arr, sa_app_public(rec));
        }
        json_decref(rec);
        freeReplyObject(r);
    }
    freeReplyObject(names);
    sa_app_sight_free(sight);

    return sa_json_sorted(arr, sa_cmp_by_name);
}


/*
 * app.show: GET /v1/apps/{app}
 *   app    string, required
 * Returns the application.  Over the API, one the caller reads
 * (sa_app_read_or_exit()).
 */
json_t *
sa_op_app_show(sa_admin_t *sa, json_t *in)
{
    json_t  *rec, *out;

    sa_in_only(in, "app", NULL);
    rec = sa_app_read_or_exit(sa, sa_in_app(in, 1));

    out = sa_app_public(rec);
    json_decref(rec);
    return out;
}


/*
 * Every application some account holds a grant for, as an object
 * app -> [teams whose accounts hold it], from the verified account
 * records (SCAN of acct:*).
 */
static json_t *
sa_apps_in_use(sa_admin_t *sa)
{
    sa_scan_t     sc;
    const char   *err, *id;
    size_t        i, j, plen;
    redisReply   *r, *v;
    sa_account_t  a;
    json_t       *out = json_object(), *app, *teams;

    sa_scan_start(&sc, sa, 1000, SA_KEY_ACCOUNT "*", NULL);
    plen = strlen(sa->prefix) + sizeof(SA_KEY_ACCOUNT) - 1;

    while ((r = sa_scan_next_or_exit(&sc, sa)) != NULL) {

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
    }

    return out;
}


/*
 * app.adopt (local: an operator's migration, no route)
 *   app    string: the application to adopt; with team
 *   team   string: its owner team
 * Without either: the applications accounts hold a grant for that have no
 * record, an array of {"name", "teams"}.  With both: the application
 * created, owned by team and shared with every other team whose accounts
 * hold it.  An operator's decision.
 */
json_t *
sa_op_app_adopt(sa_admin_t *sa, json_t *in)
{
    sa_app_new_t   c;
    const char    *app, *team, *name, *err;
    json_t        *inuse, *teams, *t, *list, *rec, *out;
    size_t         i;

    sa_in_only(in, "app", "team", NULL);
    app = sa_in_app(in, 0);
    team = sa_in_team(in, 0);

    if ((app != NULL) != (team != NULL)) {
        sa_die_kind(SA_ERR_INPUT, "APP and --team TEAM go together");
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
        json_decref(inuse);
        return list;
    }

    c = (sa_app_new_t) { app, team, json_array(), "app.adopt", NULL };
    json_array_foreach(json_object_get(inuse, app), i, t) {
        if (strcmp(json_string_value(t), team) != 0) {
            sa_team_load_or_exit(sa, json_string_value(t));
            json_array_append(c.shared, t);
        }
    }
    json_decref(inuse);

    sa_retry_or_exit(sa, sa_app_create_once, &c, "the application");

    out = sa_app_public(c.rec);
    json_decref(c.rec);
    json_decref(c.shared);
    return out;
}


sa_app_sight_t *
sa_app_sight(sa_admin_t *sa)
{
    sa_app_sight_t  *s = sa_xcalloc(1, sizeof(*s));
    json_t          *teams, *t;
    size_t           i;

    s->all = sa->channel == NULL || strcmp(sa->channel, "api") != 0
             || sa_is_operator(sa);
    s->teams = json_array();
    if (s->all) {
        return s;
    }

    teams = sa_teams_of(sa, sa_actor_or_exit(sa), 0);
    json_array_foreach(teams, i, t) {
        json_array_append(s->teams, json_object_get(t, "team"));
    }
    json_decref(teams);

    return s;
}


/* the applications the accounts of s's teams hold (never '*': a grant of
 * every application shows none of them) */
static void
sa_app_sight_grants(sa_admin_t *sa, sa_app_sight_t *s)
{
    redisReply    *ids, *r;
    sa_args_t      args;
    sa_account_t   a;
    const char    *team, *err;
    size_t         i, j, k;
    json_t        *t, *app;

    s->granted = json_array();

    json_array_foreach(s->teams, i, t) {
        team = json_string_value(t);
        ids = sa_xredis_cmd(sa, "SMEMBERS %s" SA_KEY_TEAM "%s"
                            SA_KEY_ACCOUNTS, sa->prefix, team);
        if (ids->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(ids);
            continue;
        }

        for (j = 0; j < ids->elements; j++) {
            sa_args_init(&args);
            sa_args_add(&args, "GET");
            sa_args_addf(&args, "%s" SA_KEY_ACCOUNT "%s", sa->prefix,
                         ids->element[j]->str);
            sa_xredis_append(sa, &args);
            sa_args_free(&args);
        }

        for (j = 0; j < ids->elements; j++) {
            r = sa_xredis_reply(sa);
            /* a genuine account record of this very team only */
            if (r->type == REDIS_REPLY_STRING
                && sa_account_from_value(sa, ids->element[j]->str, r->str,
                                         r->len, &a, &err) == 0)
            {
                if (strcmp(a.team, team) == 0) {
                    json_array_foreach(a.apps, k, app) {
                        if (strcmp(json_string_value(app), "*") != 0) {
                            sa_json_add_unique(s->granted,
                                               json_string_value(app));
                        }
                    }
                }
                sa_account_free(&a);
            }
            freeReplyObject(r);
        }
        freeReplyObject(ids);
    }
}


int
sa_app_seen(sa_admin_t *sa, sa_app_sight_t *s, json_t *rec)
{
    size_t   i;
    json_t  *t;

    if (s->all) {
        return 1;
    }

    json_array_foreach(s->teams, i, t) {
        if (sa_app_serves(rec, json_string_value(t))) {
            return 1;
        }
    }

    if (s->granted == NULL) {
        sa_app_sight_grants(sa, s);
    }

    return sa_json_has(s->granted,
                       json_string_value(json_object_get(rec, "id")));
}


void
sa_app_sight_free(sa_app_sight_t *s)
{
    if (s != NULL) {
        json_decref(s->teams);
        json_decref(s->granted);
        free(s);
    }
}


json_t *
sa_app_read_or_exit(sa_admin_t *sa, const char *app)
{
    sa_app_sight_t  *s = sa_app_sight(sa);
    const char      *err;
    json_t          *rec;

    if (s->all) {
        sa_app_sight_free(s);
        return sa_record_get_or_exit(sa, SA_KIND_APP, app);
    }

    /* one answer for hidden, absent and refused: no name can be probed */
    rec = sa_record_get(sa, NULL, SA_KIND_APP, app, &err);
    if (rec == NULL || !sa_app_seen(sa, s, rec)) {
        sa_die_kind(SA_ERR_FORBIDDEN, "'%s' reads no application '%s' (over "
                    "the API, an application is read by the teams that own "
                    "it, that it is shared with or whose accounts hold a "
                    "grant of it)", sa->actor, app);
    }

    sa_app_sight_free(s);
    return rec;
}
