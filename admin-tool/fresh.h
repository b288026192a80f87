/*
 * sa-admin: the bounded replay window (issue 22, item 7).
 *
 * A token record may carry a signed fresh_until (unix seconds): a gateway
 * with sa_record_max_age refuses it past then, so an older record put back
 * into Redis works only until its own fresh_until, on any gateway.  Every
 * token record sa-admin signs goes through sa_token_seal(): with a period
 * set (SA_FRESH_PERIOD, or sa->fresh_period set by its caller, e.g. serve)
 * it carries fresh_until = now + period.  "key refresh" (refresh.c) renews
 * the records that lapse soon.
 */

#ifndef SA_FRESH_H
#define SA_FRESH_H

#include <stdint.h>

#include "sa_admin.h"
#include "sa_record.h"

/* SA_FRESH_PERIOD: a duration ("24h"), at least 1s; 0 if unset; else exit 1 */
int64_t sa_fresh_period_env_or_exit(void);

/*
 * SA_RECORD_MAX_AGE: what sa_record_max_age is at a gateway, for the admin
 * API's own check of service-account tokens (bearer.c); 0 if unset (off);
 * a value that is no duration: exit 1.
 */
int64_t sa_record_max_age_env_or_exit(void);

/*
 * With sa->record_max_age set, why a token record with this fresh_until is
 * not current (no fresh_until, past it, or more than the max age ahead),
 * as a gateway judges it; NULL when it is, or when the check is off.
 */
const char *sa_fresh_refusal(const sa_admin_t *sa, int64_t fresh_until);

/*
 * The token record sealed with the signing key; with sa->fresh_period, its
 * fresh_until is set to now + period first (else kept as it is).  NULL
 * when out of memory.
 */
char *sa_token_seal(sa_admin_t *sa, sa_token_record_t *rec);

/*
 * The records a permission check reads (account, team, member,
 * application, personal token) carry a signed fresh_until too when
 * SA_FRESH_PERIOD is set (sa_record_seal() in records.c stamps it; key
 * refresh renews it).  Why such a record is not current, or NULL when it
 * is: with sa->record_max_age (SA_RECORD_MAX_AGE) as a gateway judges a
 * token record (no fresh_until, past it, more than the max age ahead);
 * else with sa->fresh_period (SA_FRESH_PERIOD) only a fresh_until that has
 * passed (a record without one, signed before the period was set, is
 * taken); with neither, the check is off.  The reasons are phrased to
 * follow "... is refused: " (docs/admin-api.md, "The record refresher").
 */
struct json_t;
const char *sa_record_fresh_refusal(const sa_admin_t *sa,
    struct json_t *payload);

/* is err one of sa_record_fresh_refusal()'s reasons */
int sa_fresh_reason(const char *err);

#endif /* SA_FRESH_H */
