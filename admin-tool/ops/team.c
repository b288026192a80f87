/*
 * sa-admin team: the operations on teams, their owner and their members'
 * permissions (ops.h).
 */

#include <stdlib.h>
#include <string.h>

#include "records.h"
#include "change.h"
#include "perm.h"
#include "redis.h"
#include "scripts.h"
#include "util.h"
#include "ops.h"

/*
 * A new team record, signed, and the script's arguments that start with
 * it (team_create.lua, team_adopt.lua): team, owner, the record
 */
static void
sa_team_args(sa_admin_t *sa, sa_args_t *args, const char *team,
    const char *owner)
{
    json_t  *rec;
    char    *sealed;

    rec = json_pack("{s:s, s:s, s:s, s:I, s:s, s:i}", "kind", "team",
                    "id", team, "owner", owner,
                    "created_at", (json_int_t) sa_now(),
                    "created_by", sa->actor, "version", 1);
    sealed = sa_record_seal(sa, rec);
    json_decref(rec);

    sa_change_args(sa, args);
    sa_args_add(args, team);
    sa_args_add(args, owner);
    sa_args_add(args, sealed);
    free(sealed);
}


/*
 * team.create: POST /v1/teams (201)
 *   team   string, required: [a-z0-9][a-z0-9_.-]*, at most 63
 *   owner  string, required: the user who owns it
 * Needs the signing key; without an acting user the owner acts.  Returns
 * {"team", "owner"}.
 */
json_t *
sa_op_team_create(sa_admin_t *sa, json_t *in)
{
    const char  *team, *owner;
    sa_args_t    args;

    sa_in_only(in, "team", "owner", NULL);
    team = sa_in_team(in, 1);
    owner = sa_in_name(in, "owner", 1, sa_user_valid, "user name");

    /*
     * Creating a team grants nothing over existing applications (each has
     * an owner team, see 'sa-admin app'): whoever holds the signing key
     * may, naming any owner.
     */
    if (sa->actor == NULL) {
        sa->actor = owner;
    }
    sa_actor_or_exit(sa);

    /* over the API, only operators create teams (DESIGN.md, "Admin API") */
    if (sa->channel != NULL && strcmp(sa->channel, "api") == 0) {
        sa_operator_or_exit(sa, "creating a team");
    }

    sa_team_args(sa, &args, team, owner);
    sa_change_once_or_exit(sa, &sa_lua_team_create, &args, "the team");
    sa_args_free(&args);

    return json_pack("{s:s, s:s}", "team", team, "owner", owner);
}


/* a member's permissions as stored before records were signed: "a,b" */
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
    int           rc, removed = 0, tomb = 0;

    sa_permit_or_exit(sa, m->team, NULL);

    team = sa_team_load_or_exit(sa, m->team);
    owner = json_string_value(json_object_get(team, "owner"));
    if (strcmp(owner, m->user) == 0) {
        sa_die_kind(SA_ERR_FORBIDDEN, "'%s' owns team '%s' and holds every "
                    "permission", m->user, m->team);
    }
    json_decref(team);

    snprintf(id, sizeof(id), "%s/%s", m->team, m->user);
    r = sa_xredis_cmd(sa, "HGET %s" SA_KEY_TEAM "%s" SA_KEY_MEMBERS " %s",
                      sa->prefix, m->team, m->user);
    if (r->type == REDIS_REPLY_STRING) {
        old = strdup(r->str);
        /* lax: a lapsed record's version is built on (records.h) */
        cur = sa_record_open_lax(sa, NULL, SA_KIND_MEMBER, id, r->str,
                                 r->len, &err);
        /* a field that does not verify is replaced, version 1 again */
        version = cur ? json_integer_value(json_object_get(cur, "version"))
                      : 0;
        removed = cur != NULL && sa_member_removed(cur);
        json_decref(cur);
    }
    freeReplyObject(r);

    if (m->perms == NULL && removed) {
        free(old);
        sa_die_kind(SA_ERR_NOT_FOUND, "'%s' is not a member of team '%s'",
                    m->user, m->team);
    }

    /*
     * With SA_FRESH_PERIOD a removal leaves a tombstone (removed, no
     * permissions, a higher version) instead of deleting: the refresher
     * that reads it never renews the older record a Redis writer puts
     * back (docs/admin-api.md, "The record refresher").
     */
    if (m->perms == NULL && version > 0 && sa->fresh_period > 0) {
        tomb = 1;
    }

    sealed = NULL;
    if (tomb) {
        rec = json_pack("{s:s, s:s, s:s, s:s, s:[], s:b, s:I, s:s, s:I}",
                        "kind", "member", "id", id, "team", m->team,
                        "user", m->user, "perms", "removed", 1,
                        "created_at", (json_int_t) sa_now(),
                        "created_by", sa->actor, "version", version + 1);
        sealed = sa_record_seal(sa, rec);
        json_decref(rec);

    } else if (m->perms != NULL) {
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
    sa_args_add(&args, tomb ? "1" : "");
    rc = sa_change_or_exit(sa, &sa_lua_member_add, &args);
    sa_args_free(&args);
    free(sealed);
    free(old);

    return rc;
}


/* in's "team" and "user" */
static void
sa_in_member(json_t *in, sa_member_t *m)
{
    m->team = sa_in_team(in, 1);
    m->user = sa_in_name(in, "user", 1, sa_user_valid, "user name");
}


/*
 * team.member.add: PUT /v1/teams/{team}/members/{user}
 *   team   string, required
 *   user   string, required: [A-Za-z0-9_.@+-]{1,100}
 *   perms  array of strings: service_accounts:create, :delete, :tokens;
 *          none: read only
 * The owner only; replaces the member's permissions.  Returns {"team",
 * "user", "perms"}.
 */
json_t *
sa_op_team_member_add(sa_admin_t *sa, json_t *in)
{
    sa_member_t  m;
    json_t      *perms, *v;
    size_t       i;

    sa_in_only(in, "team", "user", "perms", NULL);
    perms = sa_in_strs(in, "perms", 0);
    json_array_foreach(perms, i, v) {
        if (!sa_perm_valid(json_string_value(v))) {
            sa_die_kind(SA_ERR_INPUT, "unknown permission '%s'",
                        json_string_value(v));
        }
    }
    sa_in_member(in, &m);

    /* a repeated permission is harmless: each once */
    m.perms = json_array();
    json_array_foreach(perms, i, v) {
        sa_json_add_unique(m.perms, json_string_value(v));
    }

    sa_retry_or_exit(sa, sa_member_once, &m, "the member");

    return json_pack("{s:s, s:s, s:o}", "team", m.team, "user", m.user,
                     "perms", m.perms);
}


/*
 * team.member.remove: DELETE /v1/teams/{team}/members/{user}
 *   team   string, required
 *   user   string, required
 * The owner only.  Returns {"team", "user", "removed": true}.
 */
json_t *
sa_op_team_member_remove(sa_admin_t *sa, json_t *in)
{
    sa_member_t  m;

    sa_in_only(in, "team", "user", NULL);
    sa_in_member(in, &m);
    m.perms = NULL;

    sa_retry_or_exit(sa, sa_member_once, &m, "the member");

    return json_pack("{s:s, s:s, s:b}", "team", m.team, "user", m.user,
                     "removed", 1);
}


/*
 * team.member.list: GET /v1/teams/{team}/members
 *   team   string, required
 * Returns the owner (first, "owner": true) and the members with their
 * permissions: an array of {"user", "perms", "owner"}.
 */
json_t *
sa_op_team_member_list(sa_admin_t *sa, json_t *in)
{
    const char   *tname, *err;
    char          id[256];
    redisReply   *members;
    json_t       *arr, *team, *m;
    size_t        i;

    sa_in_only(in, "team", NULL);
    tname = sa_in_str(in, "team", 1);

    sa_reader_or_exit(sa, tname);
    team = sa_record_get_or_exit(sa, SA_KIND_TEAM, tname);

    members = sa_xredis_cmd(sa, "HGETALL %s" SA_KEY_TEAM "%s" SA_KEY_MEMBERS,
                            sa->prefix, tname);

    arr = json_array();
    json_array_append_new(arr, json_pack("{s:O, s:[sss], s:b}",
                          "user", json_object_get(team, "owner"),
                          "perms", "service_accounts:create",
                          "service_accounts:delete", "service_accounts:tokens",
                          "owner", 1));

    for (i = 0; members->type == REDIS_REPLY_ARRAY && i + 1 < members->elements;
         i += 2)
    {
        snprintf(id, sizeof(id), "%s/%s", tname, members->element[i]->str);
        m = sa_record_open(sa, NULL, SA_KIND_MEMBER, id,
                           members->element[i + 1]->str,
                           members->element[i + 1]->len, &err);
        if (m == NULL) {
            fprintf(stderr, "sa-admin: the member record of '%s' is "
                    "refused: %s%s; not listed\n",
                    sa_vis(members->element[i]->str), err,
                    sa_refused_hint(err));
            continue;
        }
        if (sa_member_removed(m)) {
            json_decref(m);             /* a removal's tombstone */
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

    return arr;
}


typedef struct {
    const char  *team;
    json_t      *signed_;       /* {"team", "owner", "members": [...]} */
} sa_adopt_t;


/* one unsigned team signed as read; SA_CONFLICT when it changed */
static int
sa_team_adopt_once(sa_admin_t *sa, void *data)
{
    sa_adopt_t   *ad = data;
    const char   *team = ad->team;
    char          id[256], *sealed;
    redisReply   *owner, *members;
    json_t       *rec, *perms, *list;
    sa_args_t     args;
    size_t        i;
    int           rc;

    owner = sa_xredis_cmd(sa, "HGET %s" SA_KEY_TEAM "%s owner", sa->prefix,
                          team);
    if (owner->type == REDIS_REPLY_ERROR) {
        sa_die_kind(SA_ERR_EXISTS, "team '%s' is signed already", team);
    }
    if (owner->type != REDIS_REPLY_STRING) {
        sa_die_kind(SA_ERR_NOT_FOUND, "team '%s' does not exist", team);
    }
    if (!sa_user_valid(owner->str)) {
        sa_die_kind(SA_ERR_NOT_FOUND, "team '%s': its owner '%s' is no valid "
                    "user name; not adopted", team, sa_vis(owner->str));
    }

    members = sa_xredis_cmd(sa, "HGETALL %s" SA_KEY_TEAM "%s" SA_KEY_MEMBERS,
                            sa->prefix, team);

    sa_team_args(sa, &args, team, owner->str);
    sa_args_addf(&args, "%zu", members->type == REDIS_REPLY_ARRAY
                               ? members->elements / 2 : (size_t) 0);

    json_decref(ad->signed_);
    list = json_array();
    ad->signed_ = json_pack("{s:s, s:s, s:o}", "team", team, "owner",
                            owner->str, "members", list);

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
            sa_die_kind(SA_ERR_NOT_FOUND, "team '%s': member '%s' with '%s' "
                        "is not valid; not adopted (remove it first)", team,
                        sa_vis(members->element[i]->str),
                        sa_vis(members->element[i + 1]->str));
        }
        sealed = sa_record_seal(sa, rec);
        sa_args_add(&args, members->element[i]->str);
        sa_args_add(&args, members->element[i + 1]->str);
        sa_args_add(&args, sealed);
        free(sealed);

        json_array_append_new(list, json_pack("{s:s, s:O}", "user",
                              members->element[i]->str, "perms",
                              json_object_get(rec, "perms")));
        json_decref(rec);
    }

    rc = sa_change_or_exit(sa, &sa_lua_team_adopt, &args);
    sa_args_free(&args);
    freeReplyObject(members);
    freeReplyObject(owner);

    return rc;
}


/*
 * team.adopt (local: an operator's recovery, no route)
 *   teams  array of strings, required, not empty: unsigned teams
 * Signs teams written before team records were signed, each as read.
 * Returns {"adopted": [names]} and, for the CLI's text, "signed": each
 * team's {"team", "owner", "members": [{"user", "perms"}]}.
 */
json_t *
sa_op_team_adopt(sa_admin_t *sa, json_t *in)
{
    sa_adopt_t   ad = { NULL, NULL };
    json_t      *teams, *done, *all, *v;
    size_t       i;

    sa_in_only(in, "teams", NULL);
    teams = sa_in_strs(in, "teams", 1);
    if (json_array_size(teams) == 0) {
        sa_die_kind(SA_ERR_INPUT, "which team? (TEAM...)");
    }
    json_array_foreach(teams, i, v) {
        if (!sa_name_valid(json_string_value(v))) {
            sa_die_kind(SA_ERR_INPUT, "invalid team name '%s'",
                        json_string_value(v));
        }
    }

    sa_operator_or_exit(sa, "adopting an unsigned team");

    done = json_array();
    all = json_array();
    json_array_foreach(teams, i, v) {
        ad.team = json_string_value(v);
        sa_retry_or_exit(sa, sa_team_adopt_once, &ad, "the team");
        json_array_append(done, v);
        json_array_append_new(all, ad.signed_);
        ad.signed_ = NULL;
    }

    return json_pack("{s:o, s:o}", "adopted", done, "signed", all);
}


/*
 * The teams user owns or is a member of, as the verified records say (an
 * operator: every team), by name: [{"team", "owner", "perms"}].  For the
 * console (/v1/me); a team whose records do not verify is left out.
 */
json_t *
sa_teams_of(sa_admin_t *sa, const char *user, int all)
{
    redisReply   *names, *r;
    json_t       *out = json_array(), *t, *m, *perms;
    const char   *err, *owner;
    char          id[256];
    size_t        i, j, n;
    char        **v;

    names = sa_xredis_cmd(sa, "SMEMBERS %s" SA_KEY_TEAMS, sa->prefix);
    n = names->type == REDIS_REPLY_ARRAY ? names->elements : 0;
    v = calloc(n + 1, sizeof(*v));
    for (i = 0; i < n; i++) {
        v[i] = names->element[i]->str;
    }
    /* by name */
    for (i = 1; i < n; i++) {
        for (j = i; j > 0 && strcmp(v[j - 1], v[j]) > 0; j--) {
            char *x = v[j];
            v[j] = v[j - 1];
            v[j - 1] = x;
        }
    }

    for (i = 0; i < n; i++) {
        r = sa_xredis_cmd(sa, "GET %s" SA_KEY_TEAM "%s", sa->prefix, v[i]);
        t = r->type == REDIS_REPLY_STRING
            ? sa_record_open(sa, NULL, SA_KIND_TEAM, v[i], r->str, r->len,
                             &err)
            : NULL;
        freeReplyObject(r);
        if (t == NULL) {
            continue;
        }
        owner = json_string_value(json_object_get(t, "owner"));
        if (strcmp(owner, user) == 0) {
            json_array_append_new(out, json_pack("{s:s, s:b, s:[sss]}",
                                  "team", v[i], "owner", 1, "perms",
                                  "service_accounts:create",
                                  "service_accounts:delete",
                                  "service_accounts:tokens"));
            json_decref(t);
            continue;
        }
        json_decref(t);

        r = sa_xredis_cmd(sa, "HGET %s" SA_KEY_TEAM "%s" SA_KEY_MEMBERS " %s",
                          sa->prefix, v[i], user);
        snprintf(id, sizeof(id), "%s/%s", v[i], user);
        m = r->type == REDIS_REPLY_STRING
            ? sa_record_open(sa, NULL, SA_KIND_MEMBER, id, r->str, r->len,
                             &err)
            : NULL;
        freeReplyObject(r);
        if (m != NULL && sa_member_removed(m)) {
            json_decref(m);             /* a removal's tombstone */
            m = NULL;
        }
        if (m == NULL && !all) {
            continue;
        }
        perms = m ? json_incref(json_object_get(m, "perms")) : json_array();
        json_array_append_new(out, json_pack("{s:s, s:b, s:o}", "team", v[i],
                              "owner", 0, "perms", perms));
        json_decref(m);
    }

    free(v);
    freeReplyObject(names);
    return out;
}
