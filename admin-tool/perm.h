/*
 * sa-admin: who may change what (DESIGN.md, "Applications and team
 * records").  Every permission is checked here, in C, against verified
 * records: the team record (its owner) and the acting user's member
 * record (its permissions).  The Lua script that makes the change then
 * compares those very bytes (common.lua, permitted()): a record changed
 * since the check is a conflict, read and judged again.
 *
 * Operators: in local mode, sa-admin run with the signing key and no
 * acting user (neither --as nor SA_ACTOR); under serve, the people named
 * with --operator (sa->operators), never through a token bounded by
 * scopes.  A caller with scopes (sa->scopes, a service account's token)
 * uses a permission only if it holds the scope of the same name, and
 * never acts as a team's owner.  An operator passes every
 * permission check and is recorded as "(operator)", a name no user can
 * have.  Some decisions are the operator's only: creating, adopting an
 * application, a grant of '*', adopting an unsigned team.
 */

#ifndef SA_ADMIN_PERM_H
#define SA_ADMIN_PERM_H

#include <jansson.h>

#include "sa_admin.h"
#include "redis.h"

#define SA_OPERATOR  "(operator)"

/* is the acting user the operator (see above) */
int sa_is_operator(sa_admin_t *sa);

/*
 * Over the API (sa->channel "api"), reading a team (list, show, audit)
 * needs its ownership or membership, as the verified records say, or an
 * operator; SA_ERR_FORBIDDEN otherwise.  Locally, nothing is checked.
 */
void sa_reader_or_exit(sa_admin_t *sa, const char *team);

/* the same as a test, for the rows of a listing (over the API, a row of
 * no team, NULL: the operators') */
int sa_reader(sa_admin_t *sa, const char *team);

/* over the API, what reads every team ("the audit") is the operators' */
void sa_all_reader_or_exit(sa_admin_t *sa, const char *what);

/* exits 2 unless the operator acts; what: "creating an application" */
void sa_operator_or_exit(sa_admin_t *sa, const char *what);

/*
 * The acting user holds perm in team (NULL perm: is its owner), proven by
 * the verified team and member records; exits 2 when not, or when one of
 * them does not verify.  The proof is kept for the script arguments of
 * sa_change_args() (ARGV[4], ARGV[5]), and read again after a conflict.
 */
void sa_permit_or_exit(sa_admin_t *sa, const char *team, const char *perm);

/* the same, returning -1 with the reason in why instead of exiting */
int sa_permit(sa_admin_t *sa, const char *team, const char *perm, char *why,
    size_t size);

/*
 * Who may act for an application (notify emit): its owner team's owner or
 * operator, or a holder of perm in the owner team or in a team it is
 * shared with, tried in that order.  Returns the team the permission was
 * proven in (for the audit; in the app record, valid while app is), or
 * exits 2.
 */
const char *sa_app_permit_or_exit(sa_admin_t *sa, json_t *app,
    const char *perm);

/*
 * A refused attempt leaves an audit entry (audit_denied.lua, at most one a
 * minute per actor, team and what: a permission, "owner", "user.token");
 * the refusal stands whatever Redis answers.  team may be "".
 */
void sa_audit_denied(sa_admin_t *sa, const char *team, const char *what);

/* the proof's two script arguments ('' '' when none was asked for) */
void sa_proof_args(sa_admin_t *sa, sa_args_t *args);

/* the next sa_proof_args() reads the records again (after a conflict) */
void sa_proof_stale(sa_admin_t *sa);

/*
 * Is the verified member record a removal's tombstone (with
 * SA_FRESH_PERIOD, team member remove leaves one: "removed": true, no
 * permissions, a higher version): no member, for every check.
 */
int sa_member_removed(json_t *m);

/* the verified team record, or exits 2 (no team, refused) */
json_t *sa_team_load_or_exit(sa_admin_t *sa, const char *team);

/* the verified record of an application, or exits 2 */
json_t *sa_app_load_or_exit(sa_admin_t *sa, const char *app);

/* does the application (its verified record) belong to or serve team */
int sa_app_serves(json_t *app, const char *team);

/*
 * Every application of apps not in had (NULL: none) may be granted to an
 * account of team: the team owns it or it is shared with the team; '*'
 * (every application) only by the operator.  Exits 2 otherwise.
 */
void sa_apps_grantable_or_exit(sa_admin_t *sa, const char *team,
    json_t *apps, json_t *had);

/*
 * Every permission scope of scopes not in had (NULL: none), the scopes
 * the admin API reads as team permissions (service_accounts:create,
 * :delete, :tokens), is one the caller may use herself in team, as
 * sa_permit() proves it: the owner (not bounded by scopes) and operators
 * every one, a member those she holds, a service account's token those
 * its account holds and it holds as scopes.  403 (and a denied audit
 * entry) otherwise.  A token given such a scope by someone who lacks it
 * would act beyond her (a token bounded to service_accounts:tokens
 * minting itself service_accounts:create; issue 22, attack review).  The
 * permission proven for the change (sa_permit_or_exit()) stays the one
 * proven before.
 */
void sa_scopes_grantable_or_exit(sa_admin_t *sa, const char *team,
    json_t *scopes, json_t *had);

#endif /* SA_ADMIN_PERM_H */
