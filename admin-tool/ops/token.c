/*
 * sa-admin token: the operations that issue, list, rescope, rotate and
 * revoke tokens (ops.h).  A token is in the output once, of 'issue' or
 * 'rotate'; Redis only ever holds its BLAKE2b hash inside a signed record.
 */

#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "bearer.h"
#include "fresh.h"
#include "records.h"
#include "perm.h"
#include "change.h"
#include "notify.h"
#include "redis.h"
#include "scripts.h"
#include "util.h"
#include "ops.h"
#include "xalloc.h"

#define SA_ISSUE_BATCH  1000
#define SA_ISSUE_MAX    1000000
/* over the API: one batch, so that a request holds a worker briefly */
#define SA_ISSUE_API_MAX  SA_ISSUE_BATCH

/* the token id of in's "id": a usage error for the token itself */
static const char *
sa_in_token_id(json_t *in)
{
    const char  *id = sa_in_str(in, "id", 1);

    /* a token (sat_, or a personal sap_) is never echoed: its secret */
    if (strncmp(id, "sat_", 4) == 0 || strncmp(id, "sap_", 4) == 0) {
        sa_die_kind(SA_ERR_INPUT, "give the token id (16 characters after "
                    "'sat_'), never the token itself");
    }

    if (!sa_token_id_valid(id, strlen(id))) {
        sa_die_kind(SA_ERR_INPUT, "invalid token id '%s'", sa_vis(id));
    }

    return id;
}


/* a duration field ("90d", "1h30m"); dflt when absent */
static int64_t
sa_in_duration(json_t *in, const char *field, int64_t dflt, int64_t min,
    const char *example)
{
    const char  *s = sa_in_str(in, field, 0);
    int64_t      d;

    if (s == NULL) {
        return dflt;
    }

    d = sa_duration_parse(s);
    if (d < min) {
        sa_die_kind(SA_ERR_INPUT, "invalid duration '%s' (e.g. %s)", s,
                    example);
    }

    return d;
}


/* in's "scopes": each granted-scope syntax, once; [] when absent */
static json_t *
sa_in_scopes(json_t *in, int required)
{
    return sa_in_list(in, "scopes", required, sa_scope_valid_granted, "scope",
                      "resource:action, resource:* or *, of [a-z0-9_.-]");
}


typedef struct {
    json_t    *scopes;
    int64_t    expires;         /* seconds; 0 never */
    json_t    *in;              /* its policy fields over the account's */
} sa_token_opts_t;


/*
 * The policy of a new token: the account's (its defaults), then each field
 * the token sets for itself (in; NULL: none)
 */
static void
sa_token_policy(sa_account_t *a, json_t *in, sa_policy_t *p)
{
    if (!sa_policy_from_json(a->json, p)) {
        /* the record was verified and checked: cannot happen */
        sa_die_kind(SA_ERR_INTERNAL, "account %s: invalid policy", a->id);
    }

    if (in != NULL) {
        sa_in_policy(in, p);
    }
}


/* a new token for the account; the token text goes to out */
static char *
sa_token_new_record(sa_admin_t *sa, sa_account_t *a, json_t *scopes,
    const sa_policy_t *policy, int64_t now, int64_t lifetime,
    char token[SA_TOKEN_LEN + 1], sa_token_record_t *rec)
{
    size_t  n;

    sa_token_generate(token);

    memset(rec, 0, sizeof(*rec));
    rec->version = 1;
    memcpy(rec->id, token + SA_TOKEN_ID_OFF, SA_TOKEN_ID_LEN);
    sa_token_hash((unsigned char *) token, SA_TOKEN_LEN, rec->hash);
    rec->account = (sa_str_t) { a->id, strlen(a->id) };
    rec->name = (sa_str_t) { a->name, strlen(a->name) };
    rec->email = (sa_str_t) { a->email, strlen(a->email) };
    rec->team = (sa_str_t) { a->team, strlen(a->team) };
    rec->scopes = sa_strs_from_json(scopes, &rec->nscopes);
    rec->apps = sa_strs_from_json(a->apps, &n);
    rec->napps = n;
    rec->created_at = now;
    rec->expires_at = lifetime ? now + lifetime : 0;
    rec->policy = *policy;

    return sa_token_seal(sa, rec);
}


static void
sa_issue_args(sa_admin_t *sa, sa_args_t *args, sa_account_t *a,
    const sa_token_record_t *rec, const char *sealed, const char *action,
    const char *ev)
{
    char  exat[24];

    sa_token_exat(rec, exat);

    sa_change_args(sa, args);
    sa_args_add(args, a->team);
    sa_args_add(args, a->id);
    sa_args_addf(args, "%lld", (long long) a->version);
    sa_args_add(args, rec->id);
    sa_args_add(args, sealed);
    sa_args_add(args, exat);
    sa_args_add(args, action);
    sa_args_add(args, ev);
}


static void
sa_token_issued(json_t *out, const sa_token_record_t *rec, const char *token)
{
    json_t  *t = sa_token_json(rec, NULL, rec->created_at);

    json_object_set_new(t, "token", json_string(token));
    json_array_append_new(out, t);
}


/*
 * A refusal after some tokens were issued: they exist, and are shown with
 * the error (sa_die_partial, ops.h); every change sent was answered, so
 * no other was made.
 */
static SA_NORETURN void
sa_issue_refused(sa_err_kind_t kind, const char *why, json_t *out)
{
    if (json_array_size(out) == 0) {
        sa_die_message(kind, sa_err_exit(kind), why, NULL);
    }

    sa_die_partial_whole = 1;
    sa_die_kind(kind, "%s; %zu token(s) had been issued before it (shown)",
                why, json_array_size(out));
}


/*
 * One pipelined batch of new tokens for the account.  Returns how many were
 * issued; after a refusal, once every token issued is shown, it exits.
 */
static long
sa_issue_batch_or_exit(sa_admin_t *sa, sa_account_t *a,
    const sa_token_opts_t *o, long n, json_t *out)
{
    static char         tokens[SA_ISSUE_BATCH][SA_TOKEN_LEN + 1];
    static sa_token_record_t  recs[SA_ISSUE_BATCH];
    sa_args_t           args;
    char               *sealed, *ev;
    long                i, issued = 0;
    int                 rc;
    char               *refusal = NULL, *why;
    redisReply         *r;
    sa_err_kind_t       kind = SA_ERR_INTERNAL;
    int64_t             now = sa_now();
    sa_policy_t         policy;

    /* proven before the pipeline: no other command may come between */
    sa_permit_or_exit(sa, a->team, "service_accounts:tokens");
    sa_token_policy(a, o->in, &policy);

    for (i = 0; i < n; i++) {
        sealed = sa_token_new_record(sa, a, o->scopes, &policy, now,
                                     o->expires, tokens[i], &recs[i]);
        ev = sa_event_seal_token(sa, "token.issued", &recs[i],
                 json_pack("{s:o}", "token", sa_event_token_json(&recs[i])));
        sa_issue_args(sa, &args, a, &recs[i], sealed, "token.issue", ev);
        sa_xscript_append(sa, &sa_lua_token_issue, 0, &args);
        sa_args_free(&args);
        free(sealed);
        free(ev);
    }

    for (i = 0; i < n; i++) {
        r = sa_xredis_reply(sa);
        rc = sa_change_refusal(r, &kind, &why);
        if (rc == SA_EXIT_OK) {
            sa_token_issued(out, &recs[i], tokens[i]);
            issued++;
        } else if (rc == SA_REFUSED && refusal == NULL) {
            refusal = why;
        } else if (rc == SA_REFUSED) {
            free(why);
        }
        freeReplyObject(r);
        sodium_memzero(tokens[i], sizeof(tokens[i]));
        free(recs[i].scopes);
        free(recs[i].apps);
    }

    if (refusal != NULL) {
        sa_issue_refused(kind, refusal, out);
    }

    return issued;
}


/*
 * token.issue: POST /v1/accounts/{id}/tokens (201)
 *   id       string, required: the account, an id or TEAM/NAME
 *   scopes   array of strings: resource:action, resource:* or *; none: the
 *            token exists but grants no API access
 *   expires  string: a lifetime, "90d", "1h30m" (s, m, h, d, w); absent:
 *            never
 *   count    integer, 1 to 1000000 (over the API 1 to 1000): that many
 *            tokens, pipelined
 *   rate, burst, quota, allow_from: its policy (sa_in_policy() in ops.h);
 *            a field absent is the account's default, "none" clears it
 * Needs service_accounts:tokens.  Returns the token (with its secret,
 * "token", the only time it is shown), or with count > 1 an array of them.
 */
json_t *
sa_op_token_issue(sa_admin_t *sa, json_t *in)
{
    sa_token_opts_t   o;
    sa_account_t      a;
    const char       *ref;
    json_t           *out, *c, *doc;
    long              count, left, done;
    int               stalls = 0, strict, checked = 0, api;
    char              why[80];
    json_t           *warnings = NULL;

    sa_policy_t       check;

    sa_in_only(in, "id", "scopes", "expires", "count", "strict",
               SA_POLICY_FIELDS, NULL);
    ref = sa_in_str(in, "id", 1);
    strict = sa_in_bool(in, "strict", 0);
    /* a bad policy said before anything is written */
    memset(&check, 0, sizeof(check));
    o.in = sa_in_policy(in, &check) ? in : NULL;
    o.expires = sa_in_duration(in, "expires", 0, 1, "90d, 12h, 1h30m");
    c = json_object_get(in, "count");
    api = sa->channel != NULL && strcmp(sa->channel, "api") == 0;
    if (c != NULL && (!json_is_integer(c) || json_integer_value(c) < 1
                      || json_integer_value(c)
                         > (api ? SA_ISSUE_API_MAX : SA_ISSUE_MAX)))
    {
        if (api) {
            sa_die_kind(SA_ERR_INPUT, "field 'count' must be an integer from "
                        "1 to %d over the API (more: several requests, or "
                        "the command line with the signing key, up to %d)",
                        SA_ISSUE_API_MAX, SA_ISSUE_MAX);
        }
        sa_die_kind(SA_ERR_INPUT, "field 'count' must be an integer from 1 "
                    "to %d", SA_ISSUE_MAX);
    }
    count = c != NULL ? (long) json_integer_value(c) : 1;
    o.scopes = sa_in_scopes(in, 0);

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);
    out = json_array();
    /* an error from now on shows the tokens issued before it */
    sa_die_partial = out;
    sa_die_partial_whole = 0;

    /* a batch can lose tokens to a concurrent change of the account */
    for (left = count; left > 0 && stalls < SA_RETRIES; ) {
        if (stalls > 0) {
            sa_backoff(stalls);
        }
        sa_account_load_or_exit(sa, ref, &a);
        if (!checked) {
            /* no token holds a permission its issuer lacks (perm.h) */
            sa_permit_or_exit(sa, a.team, "service_accounts:tokens");
            sa_scopes_grantable_or_exit(sa, a.team, o.scopes, NULL);
            /* the catalogue of the account's applications (scope.c) */
            sa_scopes_catalogued_or_exit(sa, a.apps, o.scopes, strict,
                                         &warnings);
            checked = 1;
        }
        done = sa_issue_batch_or_exit(sa, &a, &o, left < SA_ISSUE_BATCH
                                                  ? left : SA_ISSUE_BATCH,
                                      out);
        sa_account_free(&a);

        stalls = done ? 0 : stalls + 1;
        left -= done;
    }

    json_decref(o.scopes);

    if (left) {
        snprintf(why, sizeof(why), "the account kept changing; %ld token(s) "
                 "not issued", left);
        sa_issue_refused(SA_ERR_CONFLICT, why, out);
    }

    sa_die_partial = NULL;
    doc = count == 1 ? json_incref(json_array_get(out, 0)) : json_incref(out);
    json_decref(out);
    sa_warnings_out(sa, doc, warnings);
    return doc;
}


/*
 * token.list: GET /v1/accounts/{id}/tokens
 *   id     string, required: the account, an id or TEAM/NAME
 * Returns its tokens, oldest first, never a secret: an array.
 */
json_t *
sa_op_token_list(sa_admin_t *sa, json_t *in)
{
    sa_account_t      a;
    sa_token_set_t    ts;
    json_t           *out;
    size_t            i;
    int64_t           now = sa_now();

    sa_in_only(in, "id", NULL);
    sa_account_load_or_exit(sa, sa_in_str(in, "id", 1), &a);
    sa_reader_or_exit(sa, a.team);
    sa_token_set_load(sa, a.id, &ts);

    out = json_array();
    for (i = 0; i < ts.n; i++) {
        if (ts.recs[i] != NULL) {
            json_array_append_new(out, sa_token_json(ts.recs[i], ts.used[i],
                                                     now));

        } else if (ts.tampered[i]) {
            /* say so, and show nothing it claims */
            json_array_append_new(out, json_pack("{s:s, s:s, s:[], s:n, s:n, s:n, s:s}",
                               "id", ts.ids[i], "account", a.id, "scopes",
                               "created_at", "expires_at", "last_used_at",
                               "status", "tampered"));
        }
    }
    out = sa_json_sorted(out, sa_cmp_by_created);

    sa_token_set_free(&ts);
    sa_account_free(&a);
    return out;
}


/* a token that can still be changed: exists and is not revoked */
static sa_token_record_t *
sa_token_changeable_or_exit(sa_admin_t *sa, const char *tid)
{
    sa_token_record_t  *rec;

    rec = sa_token_load_or_exit(sa, tid);

    if (rec == NULL) {
        sa_die_kind(SA_ERR_NOT_FOUND, "no token '%s'", tid);
    }

    if (rec->revoked) {
        sa_die_kind(SA_ERR_NOT_FOUND, "token '%s' is revoked", tid);
    }

    return rec;
}


typedef struct {
    const char  *tid;
    json_t      *scopes;        /* NULL: revoke, or only the policy */
    json_t      *policy;        /* the policy fields to change, or NULL */
    const char  *action;
    json_t      *out;           /* the token after the change */
    int          strict;        /* a scope outside the catalogue: 400 */
    int          checked;
    json_t      *warnings;
} sa_token_update_t;


/* token scope and revoke: one record replaced by a newer version */
static int
sa_token_update_once(sa_admin_t *sa, void *data)
{
    sa_token_update_t  *u = data;
    sa_token_record_t  *old, rec;
    sa_args_t           args;
    char               *sealed, exat[24], *ev;
    json_t             *evdata;
    int                 rc;

    old = sa_token_changeable_or_exit(sa, u->tid);

    rec = *old;
    rec.version++;
    if (u->scopes != NULL) {
        rec.scopes = sa_strs_from_json(u->scopes, &rec.nscopes);
    } else if (u->policy == NULL) {
        sa_token_revoke(&rec);
    }

    if (u->policy != NULL) {
        sa_in_policy(u->policy, &rec.policy);
    }

    sealed = sa_token_seal(sa, &rec);
    sa_token_exat(&rec, exat);

    sa_permit_or_exit(sa, rec.team.data, "service_accounts:tokens");
    if (u->scopes != NULL) {
        /* no permission the caller lacks added (perm.h) */
        json_t  *had = sa_strs_json(old->scopes, old->nscopes);

        sa_scopes_grantable_or_exit(sa, rec.team.data, u->scopes, had);
        json_decref(had);
    }
    if (u->scopes != NULL && !u->checked) {
        /* the catalogue of the token's applications (scope.c) */
        json_t  *apps = sa_strs_json(old->apps, old->napps);

        sa_scopes_catalogued_or_exit(sa, apps, u->scopes, u->strict,
                                     &u->warnings);
        json_decref(apps);
        u->checked = 1;
    }
    sa_change_args(sa, &args);
    sa_args_add(&args, rec.team.data);
    sa_args_add(&args, u->action);
    sa_args_add(&args, u->tid);
    sa_args_addf(&args, "%llu", (unsigned long long) old->version);
    sa_args_add(&args, sealed);
    sa_args_add(&args, exat);
    evdata = json_pack("{s:o}", "token", sa_event_token_json(&rec));
    if (u->scopes != NULL) {
        json_object_set_new(evdata, "previous_scopes",
                            sa_strs_json(old->scopes, old->nscopes));
    }
    ev = sa_event_seal_token(sa, u->scopes || u->policy ? "token.rescoped"
                                                        : "token.revoked",
                             &rec, evdata);
    sa_args_add(&args, old->account.data);
    sa_args_add(&args, ev);
    free(ev);
    rc = sa_change_or_exit(sa, &sa_lua_token_update, &args);

    if (rc == SA_EXIT_OK) {
        u->out = sa_token_json(&rec, NULL, sa_now());
        sa_bearer_wrote(0, u->tid, rec.version);    /* replays refused */
    }

    sa_args_free(&args);
    free(sealed);
    if (u->scopes != NULL) {
        free(rec.scopes);
    }
    free(old);

    return rc;
}


/* token scope and revoke: one record replaced; the token after */
static json_t *
sa_token_change(sa_admin_t *sa, const char *tid, json_t *scopes, int strict,
    json_t *policy)
{
    sa_token_update_t  u;

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);

    u.tid = tid;
    u.scopes = scopes;
    u.policy = policy;
    u.action = scopes == NULL && policy == NULL ? "token.revoke"
                                                 : "token.scope";
    u.out = NULL;
    u.strict = strict;
    u.checked = 0;
    u.warnings = NULL;
    sa_retry_or_exit(sa, sa_token_update_once, &u, "the token");

    json_decref(scopes);
    sa_warnings_out(sa, u.out, u.warnings);
    return u.out;
}


/*
 * token.scope: PUT /v1/tokens/{id}/scopes
 *   id       string, required: the token id (never the token)
 *   scopes   array of strings: the new scopes ([]: none); required
 *            unless a policy field is given (then absent: unchanged)
 *   rate, burst, quota, allow_from: the policy fields to change
 *            (sa_in_policy() in ops.h), the others kept
 * Needs service_accounts:tokens.  Returns the token.
 */
json_t *
sa_op_token_scope(sa_admin_t *sa, json_t *in)
{
    const char   *tid;
    sa_policy_t   check;
    int           policy;

    sa_in_only(in, "id", "scopes", "strict", SA_POLICY_FIELDS, NULL);
    tid = sa_in_token_id(in);
    memset(&check, 0, sizeof(check));
    policy = sa_in_policy(in, &check);

    return sa_token_change(sa, tid,
                           !policy || json_object_get(in, "scopes") != NULL
                           ? sa_in_scopes(in, 1) : NULL,
                           sa_in_bool(in, "strict", 0), policy ? in : NULL);
}


/*
 * token.revoke: DELETE /v1/tokens/{id}
 *   id       string, required: the token id
 * Needs service_accounts:tokens.  Returns the token, revoked.
 */
json_t *
sa_op_token_revoke(sa_admin_t *sa, json_t *in)
{
    sa_in_only(in, "id", NULL);

    return sa_token_change(sa, sa_in_token_id(in), NULL, 0, NULL);
}


typedef struct {
    const char  *tid;
    int64_t      overlap;
    json_t      *out;           /* the new token, once issued */
} sa_token_rotate_t;


/* one attempt: the new token and the shortened old record, one script */
static int
sa_token_rotate_once(sa_admin_t *sa, void *data)
{
    sa_token_rotate_t  *ro = data;
    const char         *tid = ro->tid;
    int64_t             overlap = ro->overlap;
    json_t             *out = ro->out;
    sa_token_record_t  *old, shortened, rec;
    sa_account_t        a;
    sa_args_t           args;
    json_t             *scopes, *t;
    char               *sealed, *old_sealed, exat[24], token[SA_TOKEN_LEN + 1];
    char               *ev;
    int64_t             now = sa_now(), lifetime;
    int                 rc;

    old = sa_token_changeable_or_exit(sa, tid);

    if (old->expires_at && old->expires_at <= now) {
        sa_die_kind(SA_ERR_NOT_FOUND, "token '%s' has expired; issue a new "
                    "one", tid);
    }

    sa_account_load_or_exit(sa, old->account.data, &a);
    sa_permit_or_exit(sa, a.team, "service_accounts:tokens");

    scopes = sa_strs_json(old->scopes, old->nscopes);
    /* the new secret holds them all: each one the caller's (perm.h) */
    sa_scopes_grantable_or_exit(sa, a.team, scopes, NULL);
    lifetime = old->expires_at ? old->expires_at - old->created_at : 0;
    /* the new token keeps the old one's policy */
    sealed = sa_token_new_record(sa, &a, scopes, &old->policy, now, lifetime,
                                 token, &rec);

    shortened = *old;
    shortened.version++;
    if (shortened.expires_at == 0 || shortened.expires_at > now + overlap) {
        shortened.expires_at = now + overlap;
    }
    old_sealed = sa_token_seal(sa, &shortened);
    sa_token_exat(&shortened, exat);

    ev = sa_event_seal_token(sa, "token.rotated", &rec,
             json_pack("{s:o, s:s, s:o}", "token", sa_event_token_json(&rec),
                       "rotated_from", tid, "old_expires_at",
                       sa_time_json(shortened.expires_at)));
    sa_issue_args(sa, &args, &a, &rec, sealed, "token.rotate", ev);
    free(ev);
    sa_args_add(&args, tid);
    sa_args_addf(&args, "%llu", (unsigned long long) old->version);
    sa_args_add(&args, old_sealed);
    sa_args_add(&args, exat);
    rc = sa_change_or_exit(sa, &sa_lua_token_issue, &args);

    if (rc == SA_EXIT_OK) {
        t = sa_token_json(&rec, NULL, now);
        json_object_set_new(t, "token", json_string(token));
        json_object_set_new(t, "rotated_from", json_string(tid));
        json_object_set_new(t, "old_expires_at",
                            sa_time_json(shortened.expires_at));
        json_array_append_new(out, t);
        sa_bearer_wrote(0, tid, shortened.version);
    }

    sodium_memzero(token, sizeof(token));
    sa_args_free(&args);
    free(sealed);
    free(old_sealed);
    free(rec.scopes);
    free(rec.apps);
    json_decref(scopes);
    sa_account_free(&a);
    free(old);

    return rc;
}


/*
 * token.rotate: POST /v1/tokens/{id}/rotate (201)
 *   id       string, required: the token id
 *   overlap  string: how long the old token keeps working, "1h", "30m";
 *            absent: "0", it stops at once
 * Needs service_accounts:tokens.  Returns the new token with its secret
 * ("token", shown this once), "rotated_from" and "old_expires_at".
 */
json_t *
sa_op_token_rotate(sa_admin_t *sa, json_t *in)
{
    sa_token_rotate_t   ro;
    json_t             *out, *t;

    sa_in_only(in, "id", "overlap", NULL);
    ro.tid = sa_in_token_id(in);
    ro.overlap = sa_in_duration(in, "overlap", 0, 0, "1h, 30m, 0");

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);
    out = json_array();
    ro.out = out;
    sa_retry_or_exit(sa, sa_token_rotate_once, &ro, "the token");

    t = json_incref(json_array_get(out, 0));
    json_decref(out);
    return t;
}
