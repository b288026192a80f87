/* sa-admin: permission checks against verified records (perm.h). */

#include <stdlib.h>
#include <string.h>

#include "perm.h"
#include "fresh.h"
#include "records.h"
#include "scripts.h"
#include "util.h"
#include "xalloc.h"
#include "ops/ops.h"


/* the one permission a command proves (a command changes one team) */
static struct {
    char        *team;
    char        *perm;          /* NULL: ownership */
    char        *team_rec;      /* the bytes read and verified */
    char        *member_rec;    /* "" when the owner or the operator acts */
    int          stale;
} sa_proof;


int
sa_is_operator(sa_admin_t *sa)
{
    const char   *actor = sa_actor_or_exit(sa);
    const char  **op;

    if (strcmp(actor, SA_OPERATOR) == 0) {
        return 1;
    }

    /* serve --operator USER: people, never a token bounded by scopes */
    for (op = sa->operators; op != NULL && *op != NULL; op++) {
        if (strcmp(actor, *op) == 0 && sa->scopes == NULL) {
            return 1;
        }
    }

    return 0;
}


void
sa_operator_or_exit(sa_admin_t *sa, const char *what)
{
    sa_signing_key_or_exit(sa);

    if (!sa_is_operator(sa)) {
        sa_die_kind(SA_ERR_FORBIDDEN, "%s is an operator's decision: run "
                     "sa-admin with the signing key and without --as or "
                     "SA_ACTOR ('%s' acts here)", what, sa->actor);
    }
}


/* GET or HGET as bytes: malloc()ed, NULL when absent; *wrongtype set */
static char *
sa_raw(sa_admin_t *sa, const char *team, const char *user, size_t *len,
    int *wrongtype)
{
    redisReply  *r;
    char        *out = NULL;

    if (user == NULL) {
        r = sa_xredis_cmd(sa, "GET %s" SA_KEY_TEAM "%s", sa->prefix, team);
    } else {
        r = sa_xredis_cmd(sa, "HGET %s" SA_KEY_TEAM "%s" SA_KEY_MEMBERS " %s",
                          sa->prefix, team, user);
    }

    *wrongtype = r->type == REDIS_REPLY_ERROR;

    if (r->type == REDIS_REPLY_STRING) {
        out = sa_xmalloc(r->len + 1);
        memcpy(out, r->str, r->len);
        out[r->len] = '\0';
        *len = r->len;
    }

    freeReplyObject(r);
    return out;
}


/* the last sa_team_read() refused the record for its fresh_until */
static int  sa_team_stale;


/*
 * The team record's bytes and payload, verified; NULL with the reason in
 * why otherwise.
 */
static json_t *
sa_team_read(sa_admin_t *sa, const char *team, char **bytes, char *why,
    size_t size)
{
    char        *raw;
    size_t       len = 0;
    int          wrongtype;
    const char  *err;
    json_t      *j;

    raw = sa_raw(sa, team, NULL, &len, &wrongtype);
    sa_team_stale = 0;

    if (wrongtype) {
        snprintf(why, size, "team '%s' is unsigned (from before team records "
                 "were signed): an operator checks it and runs 'sa-admin "
                 "team adopt %s'", team, team);
        return NULL;
    }

    if (raw == NULL) {
        snprintf(why, size, "team '%s' does not exist", team);
        return NULL;
    }

    j = sa_record_open(sa, NULL, SA_KIND_TEAM, team, raw, len, &err);
    if (j == NULL) {
        snprintf(why, size, "the record of team '%s' is refused: %s%s",
                 team, err, sa_refused_hint(err));
        sa_team_stale = sa_fresh_reason(err);
        free(raw);
        return NULL;
    }

    if (bytes != NULL) {
        *bytes = raw;
    } else {
        free(raw);
    }

    return j;
}


json_t *
sa_team_load_or_exit(sa_admin_t *sa, const char *team)
{
    char     why[512];
    json_t  *j;

    j = sa_team_read(sa, team, NULL, why, sizeof(why));
    if (j == NULL) {
        sa_die_kind(sa_team_stale ? SA_ERR_STALE : SA_ERR_NOT_FOUND,
                    "%s", why);
    }

    return j;
}


/* does the calling token (sa->scopes) hold the scope named perm */
static int
sa_scopes_hold(sa_admin_t *sa, const char *perm)
{
    return sa_json_has(sa->scopes, perm);
}


/*
 * 1 when the caller may read team: not over the API, an operator, its
 * owner or a member (verified records); 0 with the reason in why; -1
 * with why when the team's record cannot be read
 */
static int
sa_may_read(sa_admin_t *sa, const char *team, char *why, size_t size)
{
    char         id[256], *raw;
    const char  *actor, *err;
    size_t       len = 0;
    int          wrongtype;
    json_t      *t, *m;

    if (sa->channel == NULL || strcmp(sa->channel, "api") != 0
        || sa_is_operator(sa))
    {
        return 1;
    }

    if (team == NULL) {
        snprintf(why, size, "reading what names no team over the API is "
                 "for operators");
        return 0;
    }

    actor = sa_actor_or_exit(sa);
    t = sa_team_read(sa, team, NULL, why, size);
    if (t == NULL) {
        return -1;
    }
    if (strcmp(actor, json_string_value(json_object_get(t, "owner"))) == 0) {
        json_decref(t);
        return 1;
    }
    json_decref(t);

    raw = sa_raw(sa, team, actor, &len, &wrongtype);
    snprintf(id, sizeof(id), "%s/%s", team, actor);
    m = raw ? sa_record_open(sa, NULL, SA_KIND_MEMBER, id, raw, len, &err)
            : NULL;
    free(raw);
    if (m != NULL && sa_member_removed(m)) {
        json_decref(m);
        m = NULL;
    }
    if (m == NULL) {
        snprintf(why, size, "reading team '%s' over the API needs "
                 "membership of it ('%s' is no member)", team, actor);
        return 0;
    }
    json_decref(m);

    return 1;
}


void
sa_reader_or_exit(sa_admin_t *sa, const char *team)
{
    char  why[512];
    int   rc = sa_may_read(sa, team, why, sizeof(why));

    if (rc == -1) {
        sa_die_kind(sa_team_stale ? SA_ERR_STALE : SA_ERR_NOT_FOUND,
                    "%s", why);
    }
    if (rc == 0) {
        sa_die_kind(SA_ERR_FORBIDDEN, "%s", why);
    }
}


int
sa_reader(sa_admin_t *sa, const char *team)
{
    char  why[512];

    return sa_may_read(sa, team, why, sizeof(why)) == 1;
}


void
sa_all_reader_or_exit(sa_admin_t *sa, const char *what)
{
    if (sa->channel != NULL && strcmp(sa->channel, "api") == 0
        && !sa_is_operator(sa))
    {
        sa_die_kind(SA_ERR_FORBIDDEN, "over the API, %s of every team is "
                    "for operators: name a team", what);
    }
}


int
sa_member_removed(json_t *m)
{
    return json_is_true(json_object_get(m, "removed"));
}


/* does the verified member record hold perm */
static int
sa_member_holds(json_t *m, const char *perm)
{
    size_t   i;
    json_t  *p;

    json_array_foreach(json_object_get(m, "perms"), i, p) {
        if (strcmp(json_string_value(p), perm) == 0) {
            return 1;
        }
    }

    return 0;
}


#define SA_LACKS  (-2)          /* sa_prove(): the records verify; no right */
#define SA_STALE  (-3)          /* sa_prove(): a record past its fresh_until */


/* how a refusal of sa_prove() ends the command */
static sa_err_kind_t
sa_prove_kind(int rc)
{
    return rc == SA_LACKS ? SA_ERR_FORBIDDEN
           : rc == SA_STALE ? SA_ERR_STALE : SA_ERR_NOT_FOUND;
}


/* proves sa_proof's permission afresh; -1 with the reason in why, SA_LACKS
 * when the verified records give the acting user no such right */
static int
sa_prove(sa_admin_t *sa, char *why, size_t size)
{
    const char  *actor, *owner, *err;
    char         id[256], *mraw;
    size_t       mlen = 0;
    int          wrongtype;
    json_t      *t, *m;

    sa_signing_key_or_exit(sa);
    actor = sa_actor_or_exit(sa);

    free(sa_proof.team_rec);
    free(sa_proof.member_rec);
    sa_proof.team_rec = NULL;
    sa_proof.member_rec = NULL;

    t = sa_team_read(sa, sa_proof.team, &sa_proof.team_rec, why, size);
    if (t == NULL) {
        return sa_team_stale ? SA_STALE : -1;
    }
    owner = json_string_value(json_object_get(t, "owner"));

    if (sa_is_operator(sa)
        || (strcmp(actor, owner) == 0 && sa->scopes == NULL))
    {
        sa_proof.member_rec = sa_xstrdup("");
        json_decref(t);
        return 0;
    }

    json_decref(t);

    /*
     * A token bounded by scopes (a service account's, over the API) uses a
     * permission only if it holds the scope of the same name, and never
     * acts as the team's owner.
     */
    if (sa->scopes != NULL
        && (sa_proof.perm == NULL || !sa_scopes_hold(sa, sa_proof.perm)))
    {
        if (sa_proof.perm == NULL) {
            snprintf(why, size, "only the owner of team '%s' may do this, "
                     "and a token bounded by scopes does not act as it",
                     sa_proof.team);
        } else {
            snprintf(why, size, "the token lacks the scope %s (a token uses "
                     "a permission of team '%s' only if it holds the scope "
                     "of the same name)", sa_proof.perm, sa_proof.team);
        }
        return SA_LACKS;
    }

    if (sa_proof.perm == NULL) {
        snprintf(why, size, "only the owner of team '%s' may do this ('%s' "
                 "is not)", sa_proof.team, actor);
        return SA_LACKS;
    }

    mraw = sa_raw(sa, sa_proof.team, actor, &mlen, &wrongtype);
    snprintf(id, sizeof(id), "%s/%s", sa_proof.team, actor);
    m = sa_record_open(sa, NULL, SA_KIND_MEMBER, id, mraw, mlen, &err);

    if (m == NULL && (err != NULL || wrongtype)) {
        snprintf(why, size, "the member record of '%s' in team '%s' is "
                 "refused: %s%s", actor, sa_proof.team,
                 err ? err : "not a signed record", sa_refused_hint(err));
        free(mraw);
        return sa_fresh_reason(err) ? SA_STALE : -1;
    }

    if (m == NULL || sa_member_removed(m)
        || !sa_member_holds(m, sa_proof.perm))
    {
        snprintf(why, size, "'%s' lacks %s in team '%s'", actor,
                 sa_proof.perm, sa_proof.team);
        json_decref(m);
        free(mraw);
        return SA_LACKS;
    }

    json_decref(m);
    sa_proof.member_rec = mraw;
    return 0;
}


void
sa_audit_denied(sa_admin_t *sa, const char *team, const char *what)
{
    sa_args_t    args;
    redisReply  *r;

    sa_args_init(&args);
    sa_args_add(&args, sa->prefix);
    sa_args_add(&args, sa_actor_arg(sa));
    sa_args_addf(&args, "%lld", (long long) sa_now());
    sa_args_add(&args, "");                 /* no proof: nothing changes */
    sa_args_add(&args, "");
    sa_args_add(&args, team);
    sa_args_add(&args, what);
    sa_xscript_append(sa, &sa_lua_audit_denied, 0, &args);
    r = sa_xredis_reply(sa);
    freeReplyObject(r);
    sa_args_free(&args);
}


static void
sa_prove_or_exit(sa_admin_t *sa)
{
    char  why[512];
    int   rc;

    rc = sa_prove(sa, why, sizeof(why));
    if (rc == SA_LACKS) {
        sa_audit_denied(sa, sa_proof.team,
                        sa_proof.perm ? sa_proof.perm : "owner");
    }
    if (rc != 0) {
        sa_die_kind(sa_prove_kind(rc), "%s", why);
    }
}


/* sa_permit() returning sa_prove()'s status */
static int
sa_permit_try(sa_admin_t *sa, const char *team, const char *perm, char *why,
    size_t size)
{
    int  rc;

    free(sa_proof.team);
    free(sa_proof.perm);
    sa_proof.team = sa_xstrdup(team);
    sa_proof.perm = perm ? sa_xstrdup(perm) : NULL;
    sa_proof.stale = 0;

    rc = sa_prove(sa, why, size);
    if (rc == SA_LACKS) {
        sa_audit_denied(sa, sa_proof.team,
                        sa_proof.perm ? sa_proof.perm : "owner");
    }
    if (rc != 0) {
        free(sa_proof.team);
        sa_proof.team = NULL;
    }

    return rc;
}


int
sa_permit(sa_admin_t *sa, const char *team, const char *perm, char *why,
    size_t size)
{
    return sa_permit_try(sa, team, perm, why, size) == 0 ? 0 : -1;
}


void
sa_permit_or_exit(sa_admin_t *sa, const char *team, const char *perm)
{
    char  why[512];
    int   rc;

    rc = sa_permit_try(sa, team, perm, why, sizeof(why));
    if (rc != 0) {
        sa_die_kind(sa_prove_kind(rc), "%s", why);
    }
}


void
sa_proof_stale(sa_admin_t *sa)
{
    (void) sa;
    sa_proof.stale = 1;
}


void
sa_proof_args(sa_admin_t *sa, sa_args_t *args)
{
    if (sa_proof.team == NULL) {
        sa_args_add(args, "");
        sa_args_add(args, "");
        return;
    }

    if (sa_proof.stale) {
        sa_prove_or_exit(sa);
        sa_proof.stale = 0;
    }

    sa_args_add(args, sa_proof.team_rec);
    sa_args_add(args, sa_proof.member_rec);
}


json_t *
sa_app_load_or_exit(sa_admin_t *sa, const char *app)
{
    const char  *err;
    json_t      *j;

    j = sa_record_get(sa, NULL, SA_KIND_APP, app, &err);

    if (j == NULL && err == NULL) {
        sa_die_kind(SA_ERR_NOT_FOUND, "no application '%s' (an operator "
                     "creates it: 'sa-admin app create %s --team TEAM')",
                     app, app);
    }

    if (j == NULL) {
        sa_die_kind(sa_refused_kind(err), "the record of application '%s' "
                     "is refused: %s%s", app, err, sa_refused_hint(err));
    }

    return j;
}


int
sa_app_serves(json_t *app, const char *team)
{
    size_t   i;
    json_t  *t;

    if (strcmp(json_string_value(json_object_get(app, "team")), team) == 0) {
        return 1;
    }

    json_array_foreach(json_object_get(app, "shared"), i, t) {
        if (strcmp(json_string_value(t), team) == 0) {
            return 1;
        }
    }

    return 0;
}


void
sa_apps_grantable_or_exit(sa_admin_t *sa, const char *team, json_t *apps,
    json_t *had)
{
    size_t       i;
    json_t      *v, *app;
    const char  *name;

    json_array_foreach(apps, i, v) {
        name = json_string_value(v);

        if (had != NULL && sa_json_has(had, name)) {
            continue;                   /* held already: nothing new */
        }

        if (strcmp(name, "*") == 0) {
            sa_operator_or_exit(sa, "a grant of '*' (every application)");
            continue;
        }

        app = sa_app_load_or_exit(sa, name);
        if (!sa_app_serves(app, team)) {
            sa_die_kind(SA_ERR_FORBIDDEN, "application '%s' belongs to "
                         "team '%s' and is not shared with team '%s'", name,
                         json_string_value(json_object_get(app, "team")),
                         team);
        }
        json_decref(app);
    }
}


void
sa_scopes_grantable_or_exit(sa_admin_t *sa, const char *team, json_t *scopes,
    json_t *had)
{
    char         why[512];
    const char  *scope;
    size_t       i;
    json_t      *v;
    int          rc = 0;
    char        *st = sa_proof.team, *sp = sa_proof.perm;
    char        *str = sa_proof.team_rec, *smr = sa_proof.member_rec;
    int          sstale = sa_proof.stale;

    /* the proof of the change, kept aside */
    memset(&sa_proof, 0, sizeof(sa_proof));

    json_array_foreach(scopes, i, v) {
        scope = json_string_value(v);
        if (!sa_perm_valid(scope) || (had != NULL && sa_json_has(had, scope))) {
            continue;
        }
        rc = sa_permit(sa, team, scope, why, sizeof(why));
        if (rc != 0) {
            break;
        }
    }

    free(sa_proof.team);
    free(sa_proof.perm);
    free(sa_proof.team_rec);
    free(sa_proof.member_rec);
    sa_proof.team = st;
    sa_proof.perm = sp;
    sa_proof.team_rec = str;
    sa_proof.member_rec = smr;
    sa_proof.stale = sstale;

    if (rc != 0) {
        sa_die_kind(SA_ERR_FORBIDDEN, "a token may be given the scope %s only "
                    "by one who may use that permission in team '%s': %s",
                    scope, team, why);
    }
}


const char *
sa_app_permit_or_exit(sa_admin_t *sa, json_t *app, const char *perm)
{
    char         why[512];
    const char  *team;
    size_t       i;
    json_t      *t;

    team = json_string_value(json_object_get(app, "team"));
    if (sa_permit(sa, team, perm, why, sizeof(why)) == 0) {
        return team;
    }

    json_array_foreach(json_object_get(app, "shared"), i, t) {
        if (sa_permit(sa, json_string_value(t), perm, why, sizeof(why))
            == 0)
        {
            return json_string_value(t);
        }
    }

    sa_die_kind(SA_ERR_FORBIDDEN, "'%s' may not act for application '%s': "
                 "it needs %s (or ownership) in team '%s' or in a team the "
                 "application is shared with", sa->actor,
                 json_string_value(json_object_get(app, "id")), perm, team);
}
