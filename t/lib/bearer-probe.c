/*
 * The admin API's bearer check (admin-tool/bearer.h) alone, for
 * t/admin/35-bearer.t, until `sa-admin serve` calls it: the Authorization
 * header's value from SA_AUTHORIZATION (never argv: a token on a command
 * line is visible to every user of the host), Redis from SA_REDIS,
 * SA_PREFIX, SA_SIGNING_KEY, SA_VERIFY_KEY and SA_RECORD_MAX_AGE as
 * sa-admin reads them.
 * Prints one JSON object: status ("ok", "unauthenticated",
 * "unavailable"), why, and the caller; exits 0, 2 or 3.
 *
 * With SA_PROBE_THEN_SET=KEY and SA_PROBE_THEN_VALUE=V, the same process
 * then SETs KEY to V and checks the same header again (a second line, the
 * exit status of the second): what one API worker sees across a change.
 *
 * With SA_PROBE_OP=NAME (and SA_PROBE_IN, its input JSON), a caller found
 * runs that operation as serve would run it for the request (the caller
 * applied, channel "api") and its output is printed as a second line; an
 * error ends the probe with its exit status.
 */

#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "bearer.h"
#include "fresh.h"
#include "ops/ops.h"
#include "redis.h"
#include "xalloc.h"
#include "sa_crypto.h"


static const char *
env(const char *name, const char *fallback)
{
    const char  *v = getenv(name);

    return v != NULL && *v != '\0' ? v : fallback;
}


static sa_auth_t
check(sa_admin_t *sa0)
{
    static const char  *names[] = { "ok", "unauthenticated", "unavailable" };
    sa_admin_t          sa = *sa0;
    sa_caller_t         c;
    sa_auth_t           rc;
    const char         *why = NULL;
    json_t             *out, *in;

    rc = sa_bearer_check(&sa, getenv("SA_AUTHORIZATION"), &c, &why);

    out = json_pack("{s:s}", "status", names[rc]);

    if (rc == SA_AUTH_OK) {
        sa_caller_apply(&sa, &c);
        json_object_set_new(out, "kind", json_string(
            c.kind == SA_CALLER_ACCOUNT ? "account" : "person"));
        json_object_set_new(out, "actor", json_string(sa.actor));
        json_object_set_new(out, "proof", json_string(sa.proof));
        json_object_set_new(out, "token_id", json_string(c.token_id));
        json_object_set_new(out, "team", c.team ? json_string(c.team)
                                                : json_null());
        json_object_set_new(out, "account", c.account
                                            ? json_string(c.account)
                                            : json_null());
        json_object_set(out, "scopes", sa.scopes ? sa.scopes : json_null());
        json_object_set_new(out, "expires_at",
                            json_integer(c.expires_at));
    } else {
        json_object_set_new(out, "why", json_string(why));
    }

    json_dumpf(out, stdout, JSON_COMPACT | JSON_SORT_KEYS);
    fputc('\n', stdout);
    json_decref(out);

    if (rc == SA_AUTH_OK && getenv("SA_PROBE_OP") != NULL) {
        sa.channel = "api";
        in = json_loads(env("SA_PROBE_IN", "{}"), 0, NULL);
        fflush(stdout);
        out = sa_op_call(&sa, getenv("SA_PROBE_OP"), in);
        json_dumpf(out, stdout, JSON_COMPACT | JSON_SORT_KEYS);
        fputc('\n', stdout);
        json_decref(out);
        json_decref(in);
    }

    if (rc == SA_AUTH_OK) {
        sa_caller_free(&c);
    }
    sa0->redis = sa.redis;

    return rc;
}


int
main(void)
{
    sa_admin_t   sa;
    sa_auth_t    rc;
    const char  *key = env("SA_PROBE_THEN_SET", NULL);
    redisReply  *r;

    memset(&sa, 0, sizeof(sa));
    sa.redis_url = env("SA_REDIS", "redis://127.0.0.1:6379/0");
    sa.signing_key = env("SA_SIGNING_KEY", NULL);
    sa.prefix = env("SA_PREFIX", "sa:");
    sa.record_max_age = sa_record_max_age_env_or_exit();

    if (sa_crypto_init() != 0) {
        return 3;
    }

    rc = check(&sa);

    if (key != NULL) {
        r = sa_xredis_cmd(&sa, "SET %s %s", key,
                          env("SA_PROBE_THEN_VALUE", ""));
        freeReplyObject(r);
        fflush(stdout);
        rc = check(&sa);
    }

    sa_redis_close(&sa);

    return rc == SA_AUTH_OK ? 0 : rc == SA_AUTH_UNAUTHENTICATED ? 2 : 3;
}
