/*
 * sa-admin: how a change reaches Redis.  sa-admin reads what it changes,
 * verifies and re-signs it, and hands one Lua script the versions it read;
 * the script writes nothing when one of them changed meanwhile (CONFLICT),
 * and the whole attempt is made again from a fresh read.
 */

#define _GNU_SOURCE     /* asprintf */

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
#include "xalloc.h"
#include "ops/ops.h"


/*
 * the kind of a script's error reply; *msg: its message.  Scripts raise
 * "CODE message"; Redis itself raises e.g. "OOM ...", which is unavailable.
 */
static sa_err_kind_t
sa_reply_kind(redisReply *r, const char **msg)
{
    static const struct { const char *code; sa_err_kind_t kind; }  codes[] = {
        { "NOTFOUND ", SA_ERR_NOT_FOUND },
        { "NOPERM ", SA_ERR_FORBIDDEN },
        { "EXISTS ", SA_ERR_EXISTS },
        { "INVALID ", SA_ERR_INPUT },
    };
    size_t  i, n;

    for (i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        n = strlen(codes[i].code);
        if (strncmp(r->str, codes[i].code, n) == 0) {
            *msg = r->str + n;
            return codes[i].kind;
        }
    }

    *msg = NULL;
    return SA_ERR_UNAVAILABLE;
}


int
sa_change_refusal(redisReply *r, sa_err_kind_t *kind, char **why)
{
    const char  *msg;

    if (r->type != REDIS_REPLY_ERROR) {
        return SA_EXIT_OK;
    }

    if (strncmp(r->str, "CONFLICT ", 9) == 0) {
        return SA_CONFLICT;
    }

    *kind = sa_reply_kind(r, &msg);
    if (msg != NULL) {
        *why = sa_xstrdup(msg);
    } else if (asprintf(why, "Redis refused the change: %s", r->str) < 0) {
        *why = sa_xstrdup(r->str);
    }

    return SA_REFUSED;
}


int
sa_reply_status(redisReply *r)
{
    sa_err_kind_t   kind;
    char           *why;
    int             code;

    if (sa_change_refusal(r, &kind, &why) != SA_REFUSED) {
        return SA_EXIT_UNAVAILABLE;     /* not an error reply */
    }

    code = sa_fail(sa_err_exit(kind), "%s", why);
    free(why);
    return code;
}


void
sa_change_args(sa_admin_t *sa, sa_args_t *args)
{
    sa_args_init(args);
    sa_args_add(args, sa->prefix);
    sa_args_add(args, sa_actor_arg(sa));
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
    redisReply     *r;
    sa_err_kind_t   kind;
    char           *why;
    int             rc;

    sa_xscript_append(sa, script, 0, args);
    r = sa_xredis_reply(sa);
    rc = sa_change_refusal(r, &kind, &why);
    freeReplyObject(r);

    if (rc == SA_REFUSED) {
        /* no usage line: the command line was right */
        sa_die_message(kind, sa_err_exit(kind), why, NULL);
    }

    return rc;
}


void
sa_change_once_or_exit(sa_admin_t *sa, sa_script_t *script, sa_args_t *args,
    const char *what)
{
    if (sa_change_or_exit(sa, script, args) == SA_CONFLICT) {
        sa_die_kind(SA_ERR_CONFLICT, "%s changed meanwhile; retry", what);
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
        sa_die_kind(SA_ERR_CONFLICT, "%s kept changing; retry", what);
    }
}
