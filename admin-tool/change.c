/*
 * sa-admin: how a change reaches Redis.  sa-admin reads what it changes,
 * verifies and re-signs it, and hands one Lua script the versions it read;
 * the script writes nothing when one of them changed meanwhile (CONFLICT),
 * and the whole attempt is made again from a fresh read.
 */

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>

#include "change.h"
#include "perm.h"
#include "records.h"


int
sa_reply_status(redisReply *r)
{
    static const struct { const char *code; int exit; }  codes[] = {
        { "NOTFOUND ", SA_EXIT_NOT_FOUND },
        { "NOPERM ", SA_EXIT_NOT_FOUND },
        { "EXISTS ", SA_EXIT_NOT_FOUND },
        { "INVALID ", SA_EXIT_USAGE },
    };
    const char  *msg = r->str;
    size_t       i, n;

    /* scripts raise "CODE message"; Redis itself raises e.g. "OOM ..." */
    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        n = strlen(codes[i].code);
        if (strncmp(msg, codes[i].code, n) == 0) {
            return sa_fail(codes[i].exit, "%s", msg + n);
        }
    }

    return sa_fail(SA_EXIT_UNAVAILABLE, "Redis refused the change: %s", msg);
}


void
sa_change_args(sa_admin_t *sa, sa_args_t *args)
{
    sa_args_init(args);
    sa_args_add(args, sa->prefix);
    sa_args_add(args, sa_actor_or_exit(sa));
    sa_args_addf(args, "%lld", (long long) time(NULL));
    sa_proof_args(sa, args);
}


int
sa_change_judge(redisReply *r)
{
    if (r->type != REDIS_REPLY_ERROR) {
        return SA_EXIT_OK;
    }

    return strncmp(r->str, "CONFLICT ", 9) == 0 ? SA_CONFLICT
                                                : sa_reply_status(r);
}


int
sa_change_reply(sa_admin_t *sa)
{
    redisReply  *r;
    int          rc;

    r = sa_xredis_reply(sa);
    rc = sa_change_judge(r);

    freeReplyObject(r);
    return rc;
}


int
sa_change_or_exit(sa_admin_t *sa, sa_script_t *script, sa_args_t *args)
{
    int  rc;

    sa_xscript_append(sa, script, 0, args);
    rc = sa_change_reply(sa);

    if (rc != SA_EXIT_OK && rc != SA_CONFLICT) {
        exit(rc);               /* sa_change_judge() said why */
    }

    return rc;
}


void
sa_change_once_or_exit(sa_admin_t *sa, sa_script_t *script, sa_args_t *args,
    const char *what)
{
    if (sa_change_or_exit(sa, script, args) == SA_CONFLICT) {
        sa_die(SA_EXIT_CONFLICT, "%s changed meanwhile; retry", what);
    }
}


void
sa_backoff(int n)
{
    uint32_t         cap;
    struct timespec  ts;

    cap = n >= 8 ? SA_BACKOFF_MAX_MS : SA_BACKOFF_MS << n;
    if (cap > SA_BACKOFF_MAX_MS) {
        cap = SA_BACKOFF_MAX_MS;
    }

    /* microseconds in [0, cap ms] */
    ts.tv_nsec = (long) randombytes_uniform(cap * 1000 + 1) * 1000;
    ts.tv_sec = ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        /* the rest of it */
    }
}


int
sa_retry(sa_admin_t *sa, sa_attempt_pt attempt, void *ctx)
{
    int  rc, n;

    rc = SA_CONFLICT;

    for (n = 0; n < SA_RETRIES && rc == SA_CONFLICT; n++) {
        if (n > 0) {
            sa_backoff(n);
            sa_proof_stale(sa);         /* the team may have changed too */
        }
        rc = attempt(sa, ctx);
    }

    return rc;
}


void
sa_retry_or_exit(sa_admin_t *sa, sa_attempt_pt attempt, void *ctx,
    const char *what)
{
    if (sa_retry(sa, attempt, ctx) == SA_CONFLICT) {
        sa_die(SA_EXIT_CONFLICT, "%s kept changing; retry", what);
    }
}
