/*
 * sa-admin token: issue, list, rescope, rotate and revoke tokens.  A token is
 * shown once, by 'issue' or 'rotate'; Redis only ever holds its BLAKE2b hash
 * inside a signed record.
 */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "fresh.h"
#include "records.h"
#include "perm.h"
#include "change.h"
#include "notify.h"
#include "redis.h"
#include "scripts.h"
#include "util.h"

#define SA_ISSUE_BATCH  1000
#define SA_ISSUE_MAX    1000000

static void sa_token_issue_cmd(sa_admin_t *sa, int argc, char **argv);
static void sa_token_list_cmd(sa_admin_t *sa, int argc, char **argv);
static void sa_token_scope_cmd(sa_admin_t *sa, int argc, char **argv);
static void sa_token_rotate_cmd(sa_admin_t *sa, int argc, char **argv);
static void sa_token_revoke_cmd(sa_admin_t *sa, int argc, char **argv);

static const sa_command_t  commands[] = {
    { "issue", sa_token_issue_cmd,
      "token issue ACCOUNT [--scope S]... [--expires 90d] [--count N]",
      "Issues a token for ACCOUNT (an account id or TEAM/NAME; needs\n"
      "service_accounts:tokens) and prints it: this is the only time it is\n"
      "shown.  Without --scope the token exists but grants no API access.\n"
      "  --scope S     resource:action, resource:* or *; repeatable\n"
      "  --expires D   lifetime (s, m, h, d, w; e.g. 90d, 1h30m); default never\n"
      "  --count N     issue N tokens at once, pipelined (one per line)\n" },
    { "list", sa_token_list_cmd, "token list ACCOUNT",
      "Lists the tokens of ACCOUNT: ids, scopes, times, status.  Never a\n"
      "secret.\n" },
    { "scope", sa_token_scope_cmd, "token scope TOKEN_ID [--scope S]...",
      "Replaces the scopes of a token (needs service_accounts:tokens); with\n"
      "no --scope the token keeps existing without any API access.\n" },
    { "rotate", sa_token_rotate_cmd, "token rotate TOKEN_ID [--overlap 1h]",
      "Issues a new token with the same scopes and lifetime and prints it;\n"
      "the old one keeps working only for the overlap (default 0: it stops\n"
      "at once).  Needs service_accounts:tokens.\n" },
    { "revoke", sa_token_revoke_cmd, "token revoke TOKEN_ID",
      "Revokes a token at once (needs service_accounts:tokens).\n" },
    { NULL, NULL, NULL, NULL }
};

typedef struct {
    json_t    *scopes;          /* --scope, deduplicated */
    int64_t    expires;         /* --expires, seconds; 0 never */
    int64_t    overlap;         /* --overlap, seconds */
    long       count;           /* --count */
    char     **op;
} sa_token_opts_t;


void
sa_cmd_token(sa_admin_t *sa, int argc, char **argv)
{
    sa_dispatch(sa, "token", commands, argc, argv);
}


static void
sa_token_flag_or_exit(sa_admin_t *sa, int ch, sa_token_opts_t *o)
{
    char  *end;

    switch (ch) {
    case 's':
        sa_json_add_valid_or_exit(sa, o->scopes, optarg,
                                  sa_scope_valid_granted, "scope",
                                  "resource:action, resource:* or *, of "
                                  "[a-z0-9_.-]");
        return;

    case 'e':
        o->expires = sa_duration_parse(optarg);
        if (o->expires <= 0) {
            sa_die_usage(sa, "invalid duration '%s' (e.g. 90d, 12h, 1h30m)",
                         optarg);
        }
        return;

    case 'o':
        o->overlap = sa_duration_parse(optarg);
        if (o->overlap < 0) {
            sa_die_usage(sa, "invalid duration '%s' (e.g. 1h, 30m, 0)",
                         optarg);
        }
        return;

    case 'n':
        o->count = strtol(optarg, &end, 10);
        if (*optarg == '\0' || *end != '\0' || o->count < 1
            || o->count > SA_ISSUE_MAX)
        {
            sa_die_usage(sa, "invalid count '%s' (1 to %d)", optarg,
                         SA_ISSUE_MAX);
        }
        return;
    }
}


/* every token command's flags (which are allowed: opts) and its operand */
static void
sa_token_args_or_exit(sa_admin_t *sa, int argc, char **argv,
    const struct option *opts, sa_token_opts_t *o)
{
    int  ch;

    memset(o, 0, sizeof(*o));
    o->scopes = json_array();
    o->count = 1;

    while ((ch = sa_getopt_or_exit(sa, argc, argv, opts)) != -1) {
        sa_token_flag_or_exit(sa, ch, o);
    }

    o->op = sa_operands_or_exit(sa, argc, argv, 1);
}


static void
sa_token_id_or_exit(sa_admin_t *sa, const char *id)
{
    if (strncmp(id, "sat_", 4) == 0) {
        sa_die_usage(sa, "give the token id (16 characters after 'sat_'), "
                     "never the token itself");
    }

    if (!sa_token_id_valid(id, strlen(id))) {
        sa_die_usage(sa, "invalid token id '%s'", id);
    }
}


/* a new token for the account; the token text goes to out */
static char *
sa_token_new_record(sa_admin_t *sa, sa_account_t *a, json_t *scopes,
    int64_t now, int64_t lifetime, char token[SA_TOKEN_LEN + 1],
    sa_token_record_t *rec)
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
sa_token_issued(sa_admin_t *sa, json_t *out, const sa_token_record_t *rec,
    const char *token)
{
    json_t  *t = sa_token_json(rec, NULL, rec->created_at);

    json_object_set_new(t, "token", json_string(token));

    if (sa->json) {
        json_array_append_new(out, t);
        return;
    }

    /* the token alone on stdout, so that TOKEN=$(sa-admin ...) works */
    printf("%s\n", token);
    json_decref(t);
}


/*
 * One pipelined batch of new tokens for the account.  Returns how many were
 * issued; after a refusal, once every token issued is shown, it exits.
 */
static long
sa_issue_batch_or_exit(sa_admin_t *sa, sa_account_t *a, sa_token_opts_t *o,
    long n, json_t *out)
{
    static char         tokens[SA_ISSUE_BATCH][SA_TOKEN_LEN + 1];
    static sa_token_record_t  recs[SA_ISSUE_BATCH];
    sa_args_t           args;
    char               *sealed, *ev;
    long                i, issued = 0;
    int                 rc, refusal = 0;
    int64_t             now = sa_now();

    /* proven before the pipeline: no other command may come between */
    sa_permit_or_exit(sa, a->team, "service_accounts:tokens");

    for (i = 0; i < n; i++) {
        sealed = sa_token_new_record(sa, a, o->scopes, now, o->expires,
                                     tokens[i], &recs[i]);
        ev = sa_event_seal_token(sa, "token.issued", &recs[i],
                 json_pack("{s:o}", "token", sa_event_token_json(&recs[i])));
        sa_issue_args(sa, &args, a, &recs[i], sealed, "token.issue", ev);
        sa_xscript_append(sa, &sa_lua_token_issue, 0, &args);
        sa_args_free(&args);
        free(sealed);
        free(ev);
    }

    for (i = 0; i < n; i++) {
        rc = sa_change_reply(sa);
        if (rc == SA_EXIT_OK) {
            sa_token_issued(sa, out, &recs[i], tokens[i]);
            issued++;
        } else if (rc != SA_CONFLICT) {
            refusal = rc;
        }
        sodium_memzero(tokens[i], sizeof(tokens[i]));
        free(recs[i].scopes);
        free(recs[i].apps);
    }

    if (refusal) {
        exit(refusal);          /* sa_change_reply() said why */
    }

    return issued;
}


static void
sa_token_issue_cmd(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        SA_OPT_MANY("scope", 's'),
        { "expires", required_argument, NULL, 'e' },
        { "count", required_argument, NULL, 'n' },
        SA_OPTS_END
    };
    sa_token_opts_t   o;
    sa_account_t      a;
    json_t           *out;
    long              left, done;
    int               stalls = 0;

    sa_token_args_or_exit(sa, argc, argv, opts, &o);

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);
    out = json_array();

    /* a batch can lose tokens to a concurrent change of the account */
    for (left = o.count; left > 0 && stalls < SA_RETRIES; ) {
        if (stalls > 0) {
            sa_backoff(stalls);
        }
        sa_account_load_or_exit(sa, o.op[0], &a);
        done = sa_issue_batch_or_exit(sa, &a, &o, left < SA_ISSUE_BATCH
                                                  ? left : SA_ISSUE_BATCH,
                                      out);
        sa_account_free(&a);

        stalls = done ? 0 : stalls + 1;
        left -= done;
    }

    if (sa->json) {
        sa_print_json(o.count == 1 ? json_incref(json_array_get(out, 0))
                                   : json_incref(out));
    } else if (left == 0) {
        fprintf(stderr, "issued %ld token%s; shown only this once: store %s "
                "now\n", o.count, o.count > 1 ? "s" : "",
                o.count > 1 ? "them" : "it");
    }

    json_decref(out);
    json_decref(o.scopes);

    if (left) {
        sa_die(SA_EXIT_CONFLICT, "the account kept changing; %ld token(s) "
               "not issued", left);
    }
}


static int
sa_by_created(const void *x, const void *y)
{
    json_t      *a = *(json_t * const *) x, *b = *(json_t * const *) y;
    const char  *ca = json_string_value(json_object_get(a, "created_at"));
    const char  *cb = json_string_value(json_object_get(b, "created_at"));
    int          c = strcmp(ca ? ca : "", cb ? cb : "");

    return c ? c : strcmp(json_string_value(json_object_get(a, "id")),
                          json_string_value(json_object_get(b, "id")));
}


static void
sa_token_table(json_t *list)
{
    size_t   i;
    json_t  *t;
    char    *scopes;

    printf("%-16s  %-8s  %-20s  %-20s  %-20s  %s\n", "ID", "STATUS",
           "CREATED", "EXPIRES", "LAST USED", "SCOPES");

    json_array_foreach(list, i, t) {
        scopes = sa_join(json_object_get(t, "scopes"), ", ");
#define S(f) (json_string_value(json_object_get(t, f)) ?: "-")
        printf("%-16s  %-8s  %-20s  %-20s  %-20s  %s\n", S("id"), S("status"),
               S("created_at"), S("expires_at"), S("last_used_at"), scopes);
#undef S
        free(scopes);
    }
}


static void
sa_token_list_cmd(sa_admin_t *sa, int argc, char **argv)
{
    char            **op;
    sa_account_t      a;
    sa_token_set_t    ts;
    json_t          **v, *out;
    size_t            i, n = 0;
    int64_t           now = sa_now();

    op = sa_plain_args_or_exit(sa, argc, argv, 1);

    sa_account_load_or_exit(sa, op[0], &a);
    sa_token_set_load(sa, a.id, &ts);

    v = calloc(ts.n + 1, sizeof(json_t *));
    for (i = 0; i < ts.n; i++) {
        if (ts.recs[i] != NULL) {
            v[n++] = sa_token_json(ts.recs[i], ts.used[i], now);

        } else if (ts.tampered[i]) {
            /* say so, and show nothing it claims */
            v[n++] = json_pack("{s:s, s:s, s:[], s:n, s:n, s:n, s:s}",
                               "id", ts.ids[i], "account", a.id, "scopes",
                               "created_at", "expires_at", "last_used_at",
                               "status", "tampered");
        }
    }
    qsort(v, n, sizeof(json_t *), sa_by_created);

    out = json_array();
    for (i = 0; i < n; i++) {
        json_array_append_new(out, v[i]);
    }
    free(v);

    if (sa->json) {
        sa_print_json(out);
    } else {
        sa_token_table(out);
        json_decref(out);
    }

    sa_token_set_free(&ts);
    sa_account_free(&a);
}


/* a token that can still be changed: exists and is not revoked */
static sa_token_record_t *
sa_token_changeable_or_exit(sa_admin_t *sa, const char *tid)
{
    sa_token_record_t  *rec;

    rec = sa_token_load_or_exit(sa, tid);

    if (rec == NULL) {
        sa_die(SA_EXIT_NOT_FOUND, "no token '%s'", tid);
    }

    if (rec->revoked) {
        sa_die(SA_EXIT_NOT_FOUND, "token '%s' is revoked", tid);
    }

    return rec;
}


typedef struct {
    const char  *tid;
    json_t      *scopes;        /* NULL: revoke */
    const char  *action;
} sa_token_update_t;


/* token scope and revoke: one record replaced by a newer version */
static int
sa_token_update_once(sa_admin_t *sa, void *data)
{
    sa_token_update_t  *u = data;
    sa_token_record_t  *old, rec;
    sa_args_t           args;
    char               *sealed, exat[24], *s, *ev;
    json_t             *evdata;
    int                 rc;

    old = sa_token_changeable_or_exit(sa, u->tid);

    rec = *old;
    rec.version++;
    if (u->scopes != NULL) {
        rec.scopes = sa_strs_from_json(u->scopes, &rec.nscopes);
    } else {
        sa_token_revoke(&rec);
    }

    sealed = sa_token_seal(sa, &rec);
    sa_token_exat(&rec, exat);

    sa_permit_or_exit(sa, rec.team.data, "service_accounts:tokens");
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
    ev = sa_event_seal_token(sa, u->scopes ? "token.rescoped"
                                           : "token.revoked", &rec, evdata);
    sa_args_add(&args, old->account.data);
    sa_args_add(&args, ev);
    free(ev);
    rc = sa_change_or_exit(sa, &sa_lua_token_update, &args);

    if (rc == SA_EXIT_OK && sa->json) {
        sa_print_json(sa_token_json(&rec, NULL, sa_now()));

    } else if (rc == SA_EXIT_OK && u->scopes != NULL) {
        s = sa_join(u->scopes, ", ");
        printf("token %s now has scopes %s\n", u->tid, s);
        free(s);

    } else if (rc == SA_EXIT_OK) {
        printf("token %s revoked\n", u->tid);
    }

    sa_args_free(&args);
    free(sealed);
    if (u->scopes != NULL) {
        free(rec.scopes);
    }
    free(old);

    return rc;
}


/* token scope and revoke: TOKEN_ID, then one record replaced */
static void
sa_token_change(sa_admin_t *sa, int argc, char **argv, int revoke)
{
    static const struct option  scope_opts[] = {
        SA_OPT_MANY("scope", 's'),
        SA_OPTS_END
    };
    sa_token_opts_t    o;
    sa_token_update_t  u;

    sa_token_args_or_exit(sa, argc, argv,
                          revoke ? scope_opts + 1 : scope_opts, &o);
    sa_token_id_or_exit(sa, o.op[0]);

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);

    u.tid = o.op[0];
    u.scopes = revoke ? NULL : o.scopes;
    u.action = revoke ? "token.revoke" : "token.scope";
    sa_retry_or_exit(sa, sa_token_update_once, &u, "the token");

    json_decref(o.scopes);
}


static void
sa_token_scope_cmd(sa_admin_t *sa, int argc, char **argv)
{
    sa_token_change(sa, argc, argv, 0);
}


static void
sa_token_revoke_cmd(sa_admin_t *sa, int argc, char **argv)
{
    sa_token_change(sa, argc, argv, 1);
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
        sa_die(SA_EXIT_NOT_FOUND, "token '%s' has expired; issue a new one",
               tid);
    }

    sa_account_load_or_exit(sa, old->account.data, &a);
    sa_permit_or_exit(sa, a.team, "service_accounts:tokens");

    scopes = sa_strs_json(old->scopes, old->nscopes);
    lifetime = old->expires_at ? old->expires_at - old->created_at : 0;
    sealed = sa_token_new_record(sa, &a, scopes, now, lifetime, token, &rec);

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


static void
sa_token_rotate_cmd(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "overlap", required_argument, NULL, 'o' },
        SA_OPTS_END
    };
    sa_token_opts_t     o;
    sa_token_rotate_t   ro;
    json_t             *out, *t;

    sa_token_args_or_exit(sa, argc, argv, opts, &o);
    sa_token_id_or_exit(sa, o.op[0]);
    json_decref(o.scopes);

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);
    out = json_array();

    ro.tid = o.op[0];
    ro.overlap = o.overlap;
    ro.out = out;
    sa_retry_or_exit(sa, sa_token_rotate_once, &ro, "the token");

    t = json_array_get(out, 0);
    if (sa->json) {
        sa_print_json(json_incref(t));
    } else {
        printf("%s\n", json_string_value(json_object_get(t, "token")));
        fprintf(stderr, "new token %s replaces %s, which stops working at "
                "%s; the new token is shown only this once\n",
                json_string_value(json_object_get(t, "id")), o.op[0],
                json_string_value(json_object_get(t, "old_expires_at")));
    }

    json_decref(out);
}
