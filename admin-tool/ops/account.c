/*
 * sa-admin account: the operations on service accounts (ops.h).  An
 * account belongs to a team, has application grants and tokens, and no
 * email or password of its own: its address <id>@<team>.sa.invalid can
 * never receive mail.
 */

#include <stdlib.h>
#include <string.h>

#include "fresh.h"
#include "records.h"
#include "perm.h"
#include "change.h"
#include "notify.h"
#include "redis.h"
#include "scripts.h"
#include "util.h"
#include "ops.h"

#define SA_LIST_BATCH  1000


typedef struct {
    const char *op[2];          /* team, name */
    json_t     *apps;
    json_t     *payload;        /* the record written */
    sa_policy_t policy;         /* the defaults of its tokens */
} sa_create_t;


/* a fresh id each attempt: a (most unlikely) taken id is a conflict */
static int
sa_account_create_once(sa_admin_t *sa, void *data)
{
    sa_create_t  *c = data;
    char          id[SA_TOKEN_ID_LEN + 1], email[256], *sealed;
    sa_args_t     args;
    int           rc;

    sa_random_base62(id, SA_TOKEN_ID_LEN);
    id[SA_TOKEN_ID_LEN] = '\0';
    snprintf(email, sizeof(email), "%s@%s.sa.invalid", id, c->op[0]);

    json_decref(c->payload);
    c->payload = json_pack("{s:s, s:i, s:s, s:s, s:s, s:s, s:O, s:I, s:s}",
                           "kind", "account", "version", 1, "id", id,
                           "team", c->op[0], "name", c->op[1],
                           "email", email, "apps", c->apps,
                           "created_at", (json_int_t) sa_now(),
                           "created_by", sa->actor);
    sa_policy_to_json(&c->policy, c->payload);
    sealed = sa_account_seal(sa, c->payload);

    sa_change_args(sa, &args);
    sa_args_add(&args, c->op[0]);
    sa_args_add(&args, c->op[1]);
    sa_args_add(&args, id);
    sa_args_add(&args, sealed);
    rc = sa_change_or_exit(sa, &sa_lua_account_create, &args);
    sa_args_free(&args);
    free(sealed);

    return rc;
}


/* an input field naming applications, each valid, each once */
static json_t *
sa_in_apps(json_t *in, const char *field, int required)
{
    return sa_in_list(in, field, required, sa_app_valid, "application",
                      "[A-Za-z0-9_.-], at most 64, or '*'");
}


/*
 * account.create: POST /v1/teams/{team}/accounts (201)
 *   team   string, required: the team
 *   name   string, required: [a-z0-9][a-z0-9_.-]*, unique in the team
 *   apps   array of strings: applications granted ('*' for all)
 *   rate, burst, quota, allow_from: the policy its tokens get unless they
 *          set their own (sa_in_policy() in ops.h)
 * Needs service_accounts:create in team.  Returns the account.
 */
json_t *
sa_op_account_create(sa_admin_t *sa, json_t *in)
{
    sa_create_t   c;
    json_t       *out;

    memset(&c, 0, sizeof(c));
    sa_in_only(in, "team", "name", "apps", SA_POLICY_FIELDS, NULL);
    sa_in_policy(in, &c.policy);
    c.op[0] = sa_in_name(in, "team", 1, sa_name_valid, "team name");
    c.op[1] = sa_in_name(in, "name", 1, sa_name_valid, "account name");
    c.apps = sa_in_apps(in, "apps", 0);

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);
    sa_permit_or_exit(sa, c.op[0], "service_accounts:create");
    sa_apps_grantable_or_exit(sa, c.op[0], c.apps, NULL);
    sa_retry_or_exit(sa, sa_account_create_once, &c, "the account id");

    out = sa_account_public_json(c.payload);
    json_decref(c.payload);
    json_decref(c.apps);
    return out;
}


/*
 * GETs of a batch of account ids, pipelined; the public JSON of each record
 * appended to out.  A record that is not a genuine account record of this
 * team is reported and skipped.
 */
static void
sa_account_batch(sa_admin_t *sa, const char *team, redisReply *ids,
    size_t from, size_t to, json_t *out)
{
    sa_args_t      args;
    size_t         i;
    redisReply    *r;
    const char    *id, *err;
    sa_account_t   a;

    for (i = from; i < to; i++) {
        sa_args_init(&args);
        sa_args_add(&args, "GET");
        sa_args_addf(&args, "%s" SA_KEY_ACCOUNT "%s", sa->prefix,
                     ids->element[i]->str);
        sa_xredis_append(sa, &args);
        sa_args_free(&args);
    }

    for (i = from; i < to; i++) {
        r = sa_xredis_reply(sa);
        id = ids->element[i]->str;

        /* an account deleted since SMEMBERS is simply not listed */
        if (r->type != REDIS_REPLY_STRING) {
            freeReplyObject(r);
            continue;
        }

        if (sa_account_from_value(sa, id, r->str, r->len, &a, &err) != 0) {
            fprintf(stderr, "sa-admin: account %s: record refused: %s%s\n",
                    id, err, sa_refused_hint(err));

        } else if (strcmp(a.team, team) != 0) {
            fprintf(stderr, "sa-admin: account %s is listed in team %s but "
                    "belongs to team %s: skipped\n", id, team, a.team);
            sa_account_free(&a);

        } else {
            json_array_append_new(out, sa_account_public_json(a.json));
            sa_account_free(&a);
        }

        freeReplyObject(r);
    }
}


/*
 * account.list: GET /v1/teams/{team}/accounts
 *   team   string, required
 * Returns the team's accounts, an array sorted by name.
 */
json_t *
sa_op_account_list(sa_admin_t *sa, json_t *in)
{
    const char   *team;
    redisReply   *owner, *ids;
    json_t       *out;
    size_t        i;
    int           exists;

    sa_in_only(in, "team", NULL);
    team = sa_in_str(in, "team", 1);
    sa_reader_or_exit(sa, team);

    owner = sa_xredis_cmd(sa, "EXISTS %s", sa_key(sa, SA_KEY_TEAM, team));
    exists = owner->integer == 1;
    freeReplyObject(owner);
    if (!exists) {
        sa_die_kind(SA_ERR_NOT_FOUND, "team '%s' does not exist", team);
    }

    ids = sa_xredis_cmd(sa, "SMEMBERS %s" SA_KEY_TEAM "%s" SA_KEY_ACCOUNTS,
                        sa->prefix, team);
    out = json_array();
    for (i = 0; i < ids->elements; i += SA_LIST_BATCH) {
        sa_account_batch(sa, team, ids, i,
                         i + SA_LIST_BATCH < ids->elements
                         ? i + SA_LIST_BATCH : ids->elements, out);
    }
    freeReplyObject(ids);

    return sa_json_sorted(out, sa_cmp_by_name);
}


/*
 * account.show: GET /v1/accounts/{id}
 *   id     string, required: an account id or TEAM/NAME
 * Returns the account.
 */
json_t *
sa_op_account_show(sa_admin_t *sa, json_t *in)
{
    sa_account_t   a;
    json_t        *out;

    sa_in_only(in, "id", NULL);
    sa_account_load_or_exit(sa, sa_in_str(in, "id", 1), &a);
    sa_reader_or_exit(sa, a.team);

    out = sa_account_public_json(a.json);
    sa_account_free(&a);
    return out;
}


/* a token record rewritten for the account's change; caller frees */
static char *
sa_token_rewrite(sa_admin_t *sa, const sa_token_record_t *old,
    const sa_str_t *apps, size_t napps, int revoke)
{
    sa_token_record_t  rec = *old;

    rec.version++;
    rec.apps = (sa_str_t *) apps;
    rec.napps = napps;

    if (revoke) {
        sa_token_revoke(&rec);
    }

    return sa_token_seal(sa, &rec);
}


/*
 * A revocation for a token whose record cannot be trusted: built from the
 * account alone, with the highest version a script can compare exactly
 * (2^53 - 1, Lua numbers are doubles), so that nothing supersedes it.
 */
static char *
sa_token_tombstone(sa_admin_t *sa, sa_account_t *a, const char *tid)
{
    sa_token_record_t  rec;

    memset(&rec, 0, sizeof(rec));
    rec.version = 9007199254740991ULL;
    snprintf(rec.id, sizeof(rec.id), "%s", tid);
    rec.account = (sa_str_t) { a->id, strlen(a->id) };
    rec.name = (sa_str_t) { a->name, strlen(a->name) };
    rec.email = (sa_str_t) { a->email, strlen(a->email) };
    rec.team = (sa_str_t) { a->team, strlen(a->team) };
    rec.created_at = sa_now();
    sa_token_revoke(&rec);

    return sa_token_seal(sa, &rec);
}


/* one token's four arguments of account_change.lua */
static void
sa_token_change_args(sa_admin_t *sa, sa_args_t *args, sa_account_t *a,
    sa_token_set_t *ts, size_t i, const sa_str_t *apps, size_t napps,
    int revoke)
{
    char  *sealed, exat[24];

    sa_args_add(args, ts->ids[i]);

    if (ts->foreign[i]) {
        /* another account's token in this index: only the index entry goes */
        sa_args_add(args, "-");
        sa_args_add(args, "");
        sa_args_add(args, "0");
        return;
    }

    if (ts->tampered[i]) {
        sealed = sa_token_tombstone(sa, a, ts->ids[i]);
        fprintf(stderr, "sa-admin: token %s: its record fails verification; "
                "replaced by a revocation\n", sa_vis(ts->ids[i]));
        sa_args_add(args, "*");
        sa_args_add(args, sealed);
        sa_args_add(args, "0");
        free(sealed);
        return;
    }

    if (ts->recs[i] == NULL) {
        /* expired out of Redis */
        sa_args_add(args, "0");
        sa_args_add(args, "");
        sa_args_add(args, "0");
        return;
    }

    sealed = sa_token_rewrite(sa, ts->recs[i], apps, napps, revoke);
    sa_token_exat(ts->recs[i], exat);
    sa_args_addf(args, "%llu", (unsigned long long) ts->recs[i]->version);
    sa_args_add(args, sealed);
    sa_args_add(args, exat);
    free(sealed);
}


/*
 * One attempt at grant, ungrant or delete: everything read afresh, every
 * record re-signed, one script.  new_apps NULL: delete the account.  The
 * tokens are those whose signed records name the account: its index lists
 * them, and for ungrant and delete, which must not miss one, every token
 * record is looked at too.
 */
/*
 * The policy fields of in (sa_in_policy()) over the account's defaults in
 * payload, in place; tokens already issued keep theirs
 */
static void
sa_account_policy_apply(json_t *payload, json_t *in)
{
    sa_policy_t  p;

    if (!sa_policy_from_json(payload, &p)) {
        sa_die_kind(SA_ERR_INTERNAL, "account %s: invalid policy",
                    json_string_value(json_object_get(payload, "id")));
    }

    sa_in_policy(in, &p);

    json_object_del(payload, "rate");
    json_object_del(payload, "burst");
    json_object_del(payload, "quota");
    json_object_del(payload, "allow_from");
    sa_policy_to_json(&p, payload);
}


static int
sa_account_change_once(sa_admin_t *sa, sa_account_t *a, json_t *new_apps,
    json_t *policy, const char *action, const char *perm, int narrowing)
{
    sa_token_set_t   ts;
    sa_args_t        args;
    sa_str_t        *apps;
    size_t           i, napps;
    char            *sealed, *ev;
    json_t          *payload;
    int              rc;

    sa_permit_or_exit(sa, a->team, perm);
    if (new_apps != NULL && !narrowing) {
        sa_apps_grantable_or_exit(sa, a->team, new_apps, a->apps);
    }

    sa_token_set_load(sa, a->id, &ts);
    if (narrowing) {
        sa_token_set_scan(sa, a->id, &ts);
    }

    apps = sa_strs_from_json(new_apps ? new_apps : a->apps, &napps);

    sa_change_args(sa, &args);
    sa_args_add(&args, a->team);
    sa_args_add(&args, action);
    sa_args_add(&args, a->id);
    sa_args_addf(&args, "%lld", (long long) a->version);

    if (new_apps != NULL) {
        payload = json_deep_copy(a->json);
        json_object_set(payload, "apps", new_apps);
        json_object_set_new(payload, "version", json_integer(a->version + 1));
        if (policy != NULL) {
            sa_account_policy_apply(payload, policy);
        }
        sealed = sa_account_seal(sa, payload);
        sa_args_add(&args, sealed);
        free(sealed);
        json_decref(payload);
    } else {
        sa_args_add(&args, "");
    }

    sa_args_add(&args, perm);
    sa_args_add(&args, a->name);
    sa_args_addf(&args, "%zu", ts.n);

    for (i = 0; i < ts.n; i++) {
        sa_token_change_args(sa, &args, a, &ts, i, apps, napps,
                             new_apps == NULL);
    }

    ev = sa_event_seal_account(sa, new_apps == NULL ? "account.deleted"
                               : strcmp(action, "account.grant") == 0
                                 ? "account.granted" : "account.ungranted", a,
                               new_apps == NULL
                               ? json_pack("{s:O}", "previous_apps", a->apps)
                               : json_pack("{s:O, s:O}", "apps", new_apps,
                                           "previous_apps", a->apps));
    sa_args_add(&args, ev);
    free(ev);

    /*
     * A deletion's marker for serve's refresher (<prefix>records): signed,
     * one version past the record deleted, and no account record (no team,
     * name, applications: put back, it is refused as invalid)
     */
    if (new_apps == NULL) {
        payload = json_pack("{s:s, s:s, s:I, s:b}", "kind", "account", "id",
                            a->id, "version", (json_int_t) a->version + 1,
                            "deleted", 1);
        sealed = sa_record_seal(sa, payload);
        sa_args_add(&args, sealed);
        free(sealed);
        json_decref(payload);
    }

    rc = sa_change_or_exit(sa, &sa_lua_account_change, &args);

    sa_args_free(&args);
    sa_token_set_free(&ts);
    free(apps);

    return rc;
}


static json_t *
sa_apps_changed(json_t *have, json_t *change, int grant)
{
    json_t  *out, *v, *w;
    size_t   i, j;
    int      found;

    out = grant ? json_copy(have) : json_array();

    /* grant: add what is missing; ungrant: keep what is not named */
    json_array_foreach(grant ? change : have, i, v) {
        found = 0;
        json_array_foreach(grant ? have : change, j, w) {
            found |= json_equal(v, w);
        }
        if (!found) {
            json_array_append(out, v);
        }
    }

    return out;
}


typedef struct {
    const char    *ref;         /* ACCOUNT as given */
    json_t        *change;      /* --app values; NULL: delete */
    json_t        *policy;      /* grant: its policy fields, or NULL */
    int            grant;
    json_t        *apps;        /* the account's apps after the change */
    sa_account_t   a;           /* as read by the attempt that succeeded */
} sa_account_change_t;


static int
sa_account_change_attempt(sa_admin_t *sa, void *data)
{
    sa_account_change_t  *c = data;

    sa_account_free(&c->a);
    sa_account_load_or_exit(sa, c->ref, &c->a);

    if (c->change == NULL) {
        return sa_account_change_once(sa, &c->a, NULL, NULL,
                                      "account.delete",
                                      "service_accounts:delete", 1);
    }

    json_decref(c->apps);
    c->apps = sa_apps_changed(c->a.apps, c->change, c->grant);

    return sa_account_change_once(sa, &c->a, c->apps, c->policy,
                                  c->grant ? "account.grant"
                                           : "account.ungrant",
                                  "service_accounts:create", !c->grant);
}


/*
 * grant (apps: the applications to add, policy: the defaults' fields to
 * change or NULL) or ungrant; the account after
 */
static json_t *
sa_account_apps(sa_admin_t *sa, const char *ref, json_t *apps,
    json_t *policy, int grant)
{
    sa_account_change_t   c;
    json_t               *out;

    memset(&c, 0, sizeof(c));
    c.grant = grant;
    c.change = apps;
    c.policy = policy;
    c.ref = ref;

    if (json_array_size(apps) == 0 && policy == NULL) {
        json_decref(apps);
        sa_die_kind(SA_ERR_INPUT, "at least one application is required");
    }

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);
    sa_retry_or_exit(sa, sa_account_change_attempt, &c, "the account");

    json_object_set(c.a.json, "apps", c.apps);
    json_object_set_new(c.a.json, "version", json_integer(c.a.version + 1));
    if (policy != NULL) {
        sa_account_policy_apply(c.a.json, policy);
    }
    out = sa_account_public_json(c.a.json);

    sa_account_free(&c.a);
    json_decref(c.apps);
    json_decref(apps);
    return out;
}


/*
 * account.grant: POST /v1/accounts/{id}/apps
 *   id     string, required: an account id or TEAM/NAME
 *   apps   array of strings: applications to add
 *   rate, burst, quota, allow_from: the defaults its tokens get to change
 *          (sa_in_policy() in ops.h; "none" clears), the others kept; the
 *          tokens already issued keep their own
 * At least one application or policy field.  Needs
 * service_accounts:create.  Returns the account.
 */
json_t *
sa_op_account_grant(sa_admin_t *sa, json_t *in)
{
    const char   *ref;
    json_t       *apps;
    sa_policy_t   check;
    int           policy;

    sa_in_only(in, "id", "apps", SA_POLICY_FIELDS, NULL);

    /* a bad policy said before anything is read or written */
    memset(&check, 0, sizeof(check));
    policy = sa_in_policy(in, &check);

    apps = json_object_get(in, "apps") != NULL || !policy
           ? sa_in_apps(in, "apps", 1) : json_array();
    ref = sa_in_str(in, "id", 1);

    return sa_account_apps(sa, ref, apps, policy ? in : NULL, 1);
}


/*
 * account.ungrant: DELETE /v1/accounts/{id}/apps/{app}
 * account.ungrant.apps: DELETE /v1/accounts/{id}/apps, body {"apps": [...]}
 *   id     string, required: an account id or TEAM/NAME
 *   app    string: the application to remove
 *   apps   array of strings: several at once (the CLI's --app...), all
 *          removed by one change or none (a refusal of any changes nothing)
 * One of app and apps.  Needs service_accounts:create.  Returns the
 * account.
 */
json_t *
sa_op_account_ungrant(sa_admin_t *sa, json_t *in)
{
    const char  *ref, *one;
    json_t      *apps;

    sa_in_only(in, "id", "app", "apps", NULL);
    one = sa_in_str(in, "app", 0);
    if (one != NULL && json_object_get(in, "apps") != NULL) {
        sa_die_kind(SA_ERR_INPUT, "fields 'app' and 'apps' exclude each "
                    "other");
    }
    apps = sa_in_apps(in, one != NULL ? "app" : "apps", 1);
    ref = sa_in_str(in, "id", 1);

    return sa_account_apps(sa, ref, apps, NULL, 0);
}


/*
 * account.delete: DELETE /v1/accounts/{id}
 *   id     string, required: an account id or TEAM/NAME
 * Needs service_accounts:delete.  Revokes every token of the account.
 * Returns {"id", "team", "name", "deleted": true}.
 */
json_t *
sa_op_account_delete(sa_admin_t *sa, json_t *in)
{
    sa_account_change_t   c;
    json_t               *out;

    sa_in_only(in, "id", NULL);
    memset(&c, 0, sizeof(c));
    c.ref = sa_in_str(in, "id", 1);

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);
    sa_retry_or_exit(sa, sa_account_change_attempt, &c, "the account");

    out = json_pack("{s:s, s:s, s:s, s:b}", "id", c.a.id, "team", c.a.team,
                    "name", c.a.name, "deleted", 1);
    sa_account_free(&c.a);
    return out;
}
