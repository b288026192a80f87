/*
 * sa-admin operations: a person's personal tokens (sap_), the admin API's
 * credential for people (DESIGN.md, "Admin API"; bearer.h verifies them).
 *
 *   user.token.issue   {user, expires?}  -> the token's JSON + "token"
 *   user.token.list    {user}            -> [the tokens' JSON]
 *   user.token.revoke  {id}              -> the token's JSON, revoked
 *
 * Who: an operator, or the user herself (the proven caller under serve,
 * --as locally).  Never a caller bounded by a service account's token
 * scopes, and never for a service account's email: a personal token is
 * bounded by nothing but its user's team permissions, so a service account
 * must not mint itself one; and one issued with a personal token never
 * outlives that token.  The secret is shown once, in issue's answer;
 * Redis holds its BLAKE2b hash inside a signed record (kind "ptoken",
 * <prefix>ptok:<id>), indexed in <prefix>user:<user>:ptoks.
 */

#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "ops.h"
#include "bearer.h"
#include "change.h"
#include "perm.h"
#include "records.h"
#include "redis.h"
#include "scripts.h"
#include "util.h"
#include "xalloc.h"

#define SA_PTOKEN_DEFAULT_LIFE  (90 * 86400)
#define SA_SA_EMAIL_DOMAIN      ".sa.invalid"


/* an operator: the local key holder, or a serve --operator (a person:
 * never a caller bounded by a service account token's scopes) */
static int
sa_user_operator(sa_admin_t *sa)
{
    return sa_is_operator(sa);
}


/* a service account's email, <aid>@<team>.sa.invalid: no person */
static int
sa_user_is_account(const char *user)
{
    size_t  n = strlen(user), d = sizeof(SA_SA_EMAIL_DOMAIN) - 1;

    return n > d && strcmp(user + n - d, SA_SA_EMAIL_DOMAIN) == 0;
}


/* the caller may manage user's personal tokens, or exits 2 (forbidden) */
static void
sa_user_permit_or_exit(sa_admin_t *sa, const char *user, const char *what)
{
    sa_actor_or_exit(sa);

    if (sa_user_operator(sa)) {
        return;
    }

    sa_audit_denied(sa, "", "user.token");

    if (sa->scopes != NULL) {
        sa_die_kind(SA_ERR_FORBIDDEN, "%s: personal tokens are not for a "
                    "service account's token ('%s' acts here)", what,
                    sa->actor);
    }

    if (strcmp(sa->actor, user) != 0) {
        sa_die_kind(SA_ERR_FORBIDDEN, "%s: only an operator or '%s' "
                    "herself may ('%s' acts here)", what, sa_vis(user),
                    sa->actor);
    }
}


static const char *
sa_user_or_exit(json_t *in)
{
    const char  *user = sa_in_str(in, "user", 1);

    if (!sa_user_valid(user)) {
        sa_die_kind(SA_ERR_INPUT, "invalid user name '%s' (expected "
                    "[A-Za-z0-9_.@+-], at most 100)", sa_vis(user));
    }

    return user;
}


/*
 * A personal token that issues its user another one never makes one that
 * outlives itself: a leaked token cannot extend its own life.  The expiry
 * of the personal token that proved the caller (sa->proof "token:<id>"),
 * or 0 (another proof, or an operator).
 */
static int64_t
sa_user_proof_expiry(sa_admin_t *sa, const char *user)
{
    const char  *err;
    json_t      *rec;
    int64_t      exp = 0;

    if (sa->proof == NULL || strncmp(sa->proof, "token:", 6) != 0
        || !sa_token_id_valid(sa->proof + 6, strlen(sa->proof + 6))
        || sa_user_operator(sa))
    {
        return 0;
    }

    rec = sa_record_get(sa, sa_signing_key_or_exit(sa) + 32, SA_KIND_PTOKEN,
                        sa->proof + 6, &err);
    if (rec != NULL
        && strcmp(json_string_value(json_object_get(rec, "user")), user) == 0)
    {
        exp = json_integer_value(json_object_get(rec, "expires_at"));
    }

    json_decref(rec);
    return exp;
}


static const char *
sa_ptoken_status(json_t *rec, int64_t now)
{
    json_int_t  exp = json_integer_value(json_object_get(rec, "expires_at"));

    if (json_is_true(json_object_get(rec, "revoked"))) {
        return "revoked";
    }

    return exp && exp <= now ? "expired" : "active";
}


/* the public JSON of a personal token: never its hash */
static json_t *
sa_ptoken_json(json_t *rec, int64_t now)
{
    return json_pack("{s:O, s:O, s:o, s:O, s:o, s:s}",
        "id", json_object_get(rec, "id"),
        "user", json_object_get(rec, "user"),
        "created_at", sa_time_json(json_integer_value(
                          json_object_get(rec, "created_at"))),
        "created_by", json_object_get(rec, "created_by")
                      ? json_object_get(rec, "created_by") : json_null(),
        "expires_at", sa_time_json(json_integer_value(
                          json_object_get(rec, "expires_at"))),
        "status", sa_ptoken_status(rec, now));
}


/* the EXAT of a record's key: expiry + a week (it answers "expired") */
static void
sa_ptoken_exat(json_t *rec, char out[24])
{
    json_int_t  exp = json_integer_value(json_object_get(rec, "expires_at"));

    snprintf(out, 24, "%lld", exp ? (long long) exp + SA_EXPIRED_KEEP : 0LL);
}


json_t *
sa_op_user_token_issue(sa_admin_t *sa, json_t *in)
{
    char         token[SA_TOKEN_LEN + 1], id[SA_TOKEN_ID_LEN + 1];
    char         hex[SA_HASH_HEX_LEN + 1], exat[24], *sealed;
    uint8_t      hash[SA_HASH_LEN];
    const char  *user, *expires;
    int64_t      now = sa_now(), life = SA_PTOKEN_DEFAULT_LIFE, cap;
    json_t      *rec, *out;
    sa_args_t    args;
    int          rc, attempt;

    sa_in_only(in, "user", "expires", NULL);
    user = sa_user_or_exit(in);
    expires = sa_in_str(in, "expires", 0);

    if (expires != NULL) {
        life = sa_duration_parse(expires);
        if (life <= 0) {
            sa_die_kind(SA_ERR_INPUT, "invalid duration '%s' (e.g. 90d, "
                        "12h, 1h30m)", sa_vis(expires));
        }
    }

    if (sa_user_is_account(user)) {
        sa_die_kind(SA_ERR_INPUT, "'%s' is a service account: it has "
                    "tokens of its own (sa-admin token issue)", user);
    }

    sa_user_permit_or_exit(sa, user, "issuing a personal token");
    sa_signing_key_or_exit(sa);

    cap = sa_user_proof_expiry(sa, user);
    if (cap && now + life > cap) {
        life = cap - now;
    }

    /* a new id each attempt: the only conflict is an id already taken */
    for (attempt = 0; ; attempt++) {
        sa_token_generate_as(token, SA_PTOKEN_PREFIX);
        memcpy(id, token + SA_TOKEN_ID_OFF, SA_TOKEN_ID_LEN);
        id[SA_TOKEN_ID_LEN] = '\0';
        sa_token_hash((unsigned char *) token, SA_TOKEN_LEN, hash);
        sa_hex_encode(hash, SA_HASH_LEN, hex);
        hex[SA_HASH_HEX_LEN] = '\0';

        rec = json_pack("{s:s, s:s, s:i, s:s, s:s, s:I, s:s, s:I, s:b}",
                        "kind", "ptoken", "id", id, "version", 1,
                        "user", user, "hash", hex, "created_at",
                        (json_int_t) now, "created_by", sa->actor,
                        "expires_at", (json_int_t) (now + life),
                        "revoked", 0);
        sealed = sa_record_seal(sa, rec);
        sa_ptoken_exat(rec, exat);

        sa_change_args(sa, &args);
        sa_args_add(&args, user);
        sa_args_add(&args, id);
        sa_args_add(&args, sealed);
        sa_args_add(&args, exat);
        rc = sa_change_or_exit(sa, &sa_lua_ptoken_issue, &args);
        sa_args_free(&args);
        free(sealed);

        if (rc == SA_EXIT_OK || attempt >= SA_RETRIES) {
            break;
        }
        json_decref(rec);
    }

    if (rc != SA_EXIT_OK) {
        json_decref(rec);
        sodium_memzero(token, sizeof(token));
        sa_die_kind(SA_ERR_CONFLICT, "no free token id; retry");
    }

    out = sa_ptoken_json(rec, now);
    json_object_set_new(out, "token", json_string(token));
    sodium_memzero(token, sizeof(token));
    json_decref(rec);

    return out;
}


json_t *
sa_op_user_token_list(sa_admin_t *sa, json_t *in)
{
    const char  *user, *err;
    redisReply  *ids, *r, *used;
    sa_args_t    args;
    json_t      *rec, *out, *row;
    size_t       i;
    int64_t      now = sa_now();

    sa_in_only(in, "user", NULL);
    user = sa_user_or_exit(in);
    sa_user_permit_or_exit(sa, user, "listing personal tokens");

    ids = sa_xredis_cmd(sa, "SMEMBERS %s" SA_KEY_USER "%s" SA_KEY_PTOKENS,
                        sa->prefix, user);
    if (ids->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(ids);
        sa_die_kind(SA_ERR_UNAVAILABLE, "Redis refused to list the personal "
                    "tokens of '%s'", user);
    }

    for (i = 0; i < ids->elements; i++) {
        sa_args_init(&args);
        sa_args_add(&args, "GET");
        sa_args_addf(&args, "%s" SA_KEY_PTOKEN "%s", sa->prefix,
                     ids->element[i]->str);
        sa_xredis_append(sa, &args);
        sa_args_free(&args);
        /* its last use at the admin API (bearer.c, sa_bearer_used()) */
        sa_args_init(&args);
        sa_args_add(&args, "GET");
        sa_args_addf(&args, "%s" SA_KEY_PTOKEN "%s" SA_KEY_USED, sa->prefix,
                     ids->element[i]->str);
        sa_xredis_append(sa, &args);
        sa_args_free(&args);
    }

    out = json_array();

    for (i = 0; i < ids->elements; i++) {
        r = sa_xredis_reply(sa);
        used = sa_xredis_reply(sa);

        if (r->type == REDIS_REPLY_STRING
            || r->type == REDIS_REPLY_ERROR)
        {
            rec = r->type == REDIS_REPLY_STRING
                  ? sa_record_open(sa, NULL, SA_KIND_PTOKEN,
                                   ids->element[i]->str, r->str, r->len, &err)
                  : NULL;

            if (rec != NULL && strcmp(json_string_value(
                                   json_object_get(rec, "user")), user) == 0)
            {
                row = sa_ptoken_json(rec, now);
                json_object_set_new(row, "last_used_at", sa_time_json(
                    used->type == REDIS_REPLY_STRING
                    ? strtoll(used->str, NULL, 10) : 0));
                json_array_append_new(out, row);
            } else {
                /* say so, and show nothing it claims */
                json_array_append_new(out, json_pack("{s:s, s:s, s:n, s:n, "
                                      "s:n, s:s}", "id", ids->element[i]->str,
                                      "user", user, "created_at",
                                      "created_by", "expires_at", "status",
                                      "tampered"));
            }
            json_decref(rec);
        }
        /* gone (a week after its expiry): not listed */

        freeReplyObject(r);
        freeReplyObject(used);
    }

    freeReplyObject(ids);
    return sa_json_sorted(out, sa_cmp_by_created);
}


typedef struct {
    const char  *id;
    json_t      *out;
} sa_ptoken_revoke_t;


static int
sa_ptoken_revoke_once(sa_admin_t *sa, void *data)
{
    sa_ptoken_revoke_t  *rv = data;
    const char          *err, *user;
    json_t              *rec;
    json_int_t           ver;
    sa_args_t            args;
    char                *sealed, exat[24];
    int                  rc;

    /* a lapsed one is revoked too: its version keeps growing */
    sa->fresh_lax = 1;
    rec = sa_record_get(sa, sa_signing_key_or_exit(sa) + 32, SA_KIND_PTOKEN,
                        rv->id, &err);
    sa->fresh_lax = 0;

    if (rec == NULL && err == NULL) {
        sa_die_kind(SA_ERR_NOT_FOUND, "no personal token '%s'", rv->id);
    }

    if (rec == NULL) {
        sa_die_kind(sa_refused_kind(err), "the record of personal token '%s' "
                    "is refused: %s%s", rv->id, err, sa_refused_hint(err));
    }

    user = json_string_value(json_object_get(rec, "user"));
    sa_user_permit_or_exit(sa, user, "revoking a personal token");

    if (json_is_true(json_object_get(rec, "revoked"))) {
        json_decref(rec);
        sa_die_kind(SA_ERR_NOT_FOUND, "personal token '%s' is revoked",
                    rv->id);
    }

    ver = json_integer_value(json_object_get(rec, "version"));
    json_object_set_new(rec, "version", json_integer(ver + 1));
    json_object_set_new(rec, "revoked", json_true());
    json_object_set_new(rec, "revoked_by", json_string(sa->actor));
    sealed = sa_record_seal(sa, rec);
    sa_ptoken_exat(rec, exat);

    sa_change_args(sa, &args);
    sa_args_add(&args, user);
    sa_args_add(&args, rv->id);
    sa_args_addf(&args, "%lld", (long long) ver);
    sa_args_add(&args, sealed);
    sa_args_add(&args, exat);
    rc = sa_change_or_exit(sa, &sa_lua_ptoken_revoke, &args);
    sa_args_free(&args);
    free(sealed);

    if (rc == SA_EXIT_OK) {
        rv->out = sa_ptoken_json(rec, sa_now());
        sa_bearer_wrote(1, rv->id, (uint64_t) ver + 1);   /* replays refused */
    }

    json_decref(rec);
    return rc;
}


json_t *
sa_op_user_token_revoke(sa_admin_t *sa, json_t *in)
{
    sa_ptoken_revoke_t  rv;

    sa_in_only(in, "id", NULL);
    rv.id = sa_in_str(in, "id", 1);
    rv.out = NULL;

    if (strncmp(rv.id, SA_PTOKEN_PREFIX, SA_TOKEN_PREFIX_LEN) == 0
        || strncmp(rv.id, SA_TOKEN_PREFIX, SA_TOKEN_PREFIX_LEN) == 0)
    {
        sa_die_kind(SA_ERR_INPUT, "give the token id (16 characters after "
                    "'sap_'), never the token itself");
    }

    if (!sa_token_id_valid(rv.id, strlen(rv.id))) {
        sa_die_kind(SA_ERR_INPUT, "invalid token id '%s'", sa_vis(rv.id));
    }

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);
    sa_retry_or_exit(sa, sa_ptoken_revoke_once, &rv, "the personal token");

    return rv.out;
}
