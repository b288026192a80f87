/*
 * sa-admin: changes as Lua scripts, compared and retried (see change.c).
 */

#ifndef SA_ADMIN_CHANGE_H
#define SA_ADMIN_CHANGE_H

#include "redis.h"
#include "ops/ops.h"

#define SA_CONFLICT  (-1)     /* a script found its input changed: retry */

/*
 * A change that lost the race is made again, after a pause drawn at random
 * from [0, min(SA_BACKOFF_MAX_MS, SA_BACKOFF_MS << attempt)] ("full
 * jitter": concurrent losers do not meet again in step), up to SA_RETRIES
 * attempts (a few seconds at most); then it gives up with SA_EXIT_CONFLICT.
 */
#define SA_RETRIES         25
#define SA_BACKOFF_MS      2
#define SA_BACKOFF_MAX_MS  250

/* the pause before attempt n (n >= 1) */
void sa_backoff(int n);

/* an error reply ("CODE message" from a script) printed, as exit status */
int sa_reply_status(redisReply *r);

#define SA_REFUSED  (-2)      /* sa_change_refusal(): refused, and why */

/*
 * A script's reply judged without a word: SA_EXIT_OK, SA_CONFLICT, or
 * SA_REFUSED with the kind of error (ops.h) and why (malloc()ed).
 */
int sa_change_refusal(redisReply *r, sa_err_kind_t *kind, char **why);

/*
 * starts a script's arguments: prefix, acting user, now, and the two of
 * the permission proven by sa_permit_or_exit() (perm.h; '' '' when none),
 * which common.lua takes away again: a script's own arguments start at
 * ARGV[4]
 */
void sa_change_args(sa_admin_t *sa, sa_args_t *args);

/*
 * Runs a changing script (0 keys, arguments from sa_change_args()).
 * Returns SA_EXIT_OK or SA_CONFLICT; a refusal ends the process with its
 * exit status and why.
 */
int sa_change_or_exit(sa_admin_t *sa, sa_script_t *script, sa_args_t *args);

/*
 * The same for a change made once: a conflict ends with "<what> changed
 * meanwhile; retry" and exit status SA_EXIT_CONFLICT.
 */
void sa_change_once_or_exit(sa_admin_t *sa, sa_script_t *script,
    sa_args_t *args, const char *what);

/*
 * A script's reply judged: SA_EXIT_OK, SA_CONFLICT, or an exit status
 * after printing why (it returns: a pipeline reads every reply).
 */
int sa_change_judge(redisReply *r);

/* the reply of a pipelined sa_xscript_append(), judged as above */
int sa_change_reply(sa_admin_t *sa);

/*
 * One attempt at a change: read, verify, sign, one script.  Returns
 * SA_EXIT_OK, or SA_CONFLICT when the script found what it read changed
 * meanwhile; like any sa-admin helper, it ends the process on an error.
 */
typedef int (*sa_attempt_pt)(sa_admin_t *sa, void *ctx);

/*
 * Makes the attempt again while it conflicts, with sa_backoff() between,
 * at most SA_RETRIES times; returns its last status (SA_CONFLICT: it kept
 * conflicting).
 */
int sa_retry(sa_admin_t *sa, sa_attempt_pt attempt, void *ctx);

/*
 * The same; one that kept conflicting ends with "<what> kept changing;
 * retry" and exit status SA_EXIT_CONFLICT.
 */
void sa_retry_or_exit(sa_admin_t *sa, sa_attempt_pt attempt, void *ctx,
    const char *what);

#endif /* SA_ADMIN_CHANGE_H */
