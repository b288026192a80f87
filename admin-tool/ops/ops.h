/*
 * sa-admin: the operations layer.  Every operation of the contract exists
 * once, here (admin-tool/ops/<group>.c), and is called by the command line
 * (admin-tool/cli/), by the admin API (admin-tool/serve/) and by tests.
 *
 * An operation takes a JSON object (the fields of the API's body, the
 * path's {names} and the query's names, all by the same names) and the
 * proven caller in sa (sa->actor, sa->proof, sa->channel, sa->scopes), and
 * returns the JSON object that `--json` prints (a new reference).  It
 * never prints.  Every error ends it where it is found, through
 * sa_die_kind(): the CLI prints the line and exits with the kind's exit
 * status; `serve` answers the kind's HTTP status as problem+json.
 */

#ifndef SA_ADMIN_OPS_H
#define SA_ADMIN_OPS_H

#include <stdarg.h>
#include <jansson.h>

#include "sa_admin.h"

typedef enum {
    SA_ERR_INPUT = 1,        /* 400, exit 1: a field missing, malformed */
    SA_ERR_UNAUTHENTICATED,  /* 401, exit 2: no or bad credential (serve) */
    SA_ERR_FORBIDDEN,        /* 403, exit 2: not permitted */
    SA_ERR_NOT_FOUND,        /* 404, exit 2 */
    SA_ERR_EXISTS,           /* 409, exit 2: the name is taken */
    SA_ERR_CONFLICT,         /* 409, exit 4: concurrent changes kept winning */
    SA_ERR_UNAVAILABLE,      /* 503, exit 3: Redis down or refusing */
    SA_ERR_INTERNAL,         /* 500, exit 3 */
    SA_ERR_STALE             /* 503, exit 3: a record a permission check
                                reads is past its fresh_until (fresh.h);
                                serve shows the message, naming it */
} sa_err_kind_t;

/* one line "sa-admin: <message>" on stderr and exit(sa_err_exit(kind)),
 * or, when a sink is set (serve), the sink's answer and _exit() */
SA_NORETURN void sa_die_kind(sa_err_kind_t kind, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

int sa_err_exit(sa_err_kind_t kind);          /* 1, 2, 3 or 4 */
int sa_err_status(sa_err_kind_t kind);        /* 400 ... 503 */
const char *sa_err_name(sa_err_kind_t kind);  /* "not-found": the problem
                                                 type urn:sa-admin:not-found */

/*
 * Where sa_die() and sa_die_kind() go instead of stderr and exit(); it
 * must not return (it writes the answer and calls _exit()).  sa_die(code)
 * without a kind maps code to a kind: 1 input, 2 not-found, 3 unavailable,
 * 4 conflict.
 */
typedef SA_NORETURN void (*sa_die_sink_pt)(sa_err_kind_t kind,
    const char *message);
extern sa_die_sink_pt  sa_die_sink;

typedef json_t *(*sa_op_pt)(sa_admin_t *sa, json_t *in);

typedef struct {
    const char  *name;       /* "account.create" */
    sa_op_pt     run;
    const char  *method;     /* "POST" */
    const char  *path;       /* "/v1/teams/{team}/accounts" */
    int          status;     /* 200, or 201 for a creation */
    unsigned     flags;
} sa_op_t;

#define SA_OP_WRITE   0x01   /* changes something: needs the write checks */
#define SA_OP_LOCAL   0x02   /* needs the keys themselves: never over --api */

/* the operation of that name, or NULL */
const sa_op_t *sa_op_find(const char *name);

/* every operation, ending with a NULL name (serve's routes, openapi test) */
extern const sa_op_t  sa_ops[];

/*
 * Input helpers: a missing required field, a wrong type or a malformed
 * value is SA_ERR_INPUT naming the field; a field not in the list of
 * sa_in_only() is SA_ERR_INPUT "unknown field 'x'".
 */
void sa_in_only(json_t *in, ...);       /* field names, then NULL */
const char *sa_in_str(json_t *in, const char *field, int required);
json_t *sa_in_strs(json_t *in, const char *field, int required);

/*
 * Extensions (h14).  sa_in_name(): a string field valid by valid(), else
 * SA_ERR_INPUT "invalid <what> '<value>'" (what: "team name").
 * sa_in_list(): an array field of strings, each valid(s, len), else
 * SA_ERR_INPUT "invalid <what> '<s>' (expected <expected>)"; returns a new
 * array holding each value once, in order ([] when absent and optional);
 * a string field is a list of one.
 * sa_in_bool(): a boolean field, dflt when absent.
 */
const char *sa_in_name(json_t *in, const char *field, int required,
    int (*valid)(const char *s), const char *what);
json_t *sa_in_list(json_t *in, const char *field, int required,
    int (*valid)(const char *s, size_t len), const char *what,
    const char *expected);
int sa_in_bool(json_t *in, const char *field, int dflt);

/* in's "app", an application's name (not '*'); in's "team", a team name */
const char *sa_in_app(json_t *in, int required);
const char *sa_in_team(json_t *in, int required);

/*
 * sa_in_policy() (issue 25): the policy fields of in applied to p, those
 * absent leaving p as it was: "rate" ("N/s", "N/m", "N/h" or "none"),
 * "burst" (an integer, only with a rate), "quota" ("N/day", "N/month" or
 * "none"), "allow_from" (an array of CIDRs or addresses; [] or "none":
 * from anywhere).  Returns whether one was given.
 */
struct sa_policy_s;
int sa_in_policy(json_t *in, struct sa_policy_s *p);
#define SA_POLICY_FIELDS  "rate", "burst", "quota", "allow_from"

/*
 * The command line's policy flags, for a getopt table (cli/token.c), and
 * their value into in: 1 when ch was one of them.
 */
#define SA_POLICY_OPTS                                                      \
    { "rate", required_argument, NULL, 'R' },                               \
    { "burst", required_argument, NULL, 'B' },                              \
    { "quota", required_argument, NULL, 'Q' },                              \
    SA_OPT_MANY("allow-from", 'F')
#define SA_POLICY_HELP                                                      \
    "  --rate R        N/s, N/m or N/h per token, or none (sa_rate_limit)\n"  \
    "  --burst B       requests over the rate let through at once (with\n"   \
    "                  --rate; default 0)\n"                                 \
    "  --quota Q       N/day or N/month (UTC), or none\n"                     \
    "  --allow-from C  a CIDR the token may be used from; repeatable; none:\n" \
    "                  from anywhere\n"
int sa_cli_policy_opt(sa_admin_t *sa, int ch, json_t *in);

/*
 * arr (taken) as a new array sorted by cmp, a qsort() comparison of two
 * json_t *: sa_cmp_by_name ("name"), sa_cmp_by_created ("created_at",
 * then "id"; RFC 3339 strings sort as times)
 */
json_t *sa_json_sorted(json_t *arr, int (*cmp)(const void *a, const void *b));
int sa_cmp_by_name(const void *a, const void *b);
int sa_cmp_by_created(const void *a, const void *b);

/*
 * The CLI's way to an operation: the registry's op of that name run with
 * in (borrowed); its output (a new reference).  sa_op_via, when set (the
 * CLI's --api mode), runs it instead of the local op.
 */
json_t *sa_op_call(sa_admin_t *sa, const char *name, json_t *in);
extern json_t *(*sa_op_via)(sa_admin_t *sa, const sa_op_t *op, json_t *in);

/*
 * cli/api.c, --api URL (SA_API): sa_api_setup_or_exit() (main) reads the
 * token (SA_TOKEN or --token-file, a regular file only its owner reads)
 * and sets sa_op_via to sa_api_call(), which sends the input to the op's
 * route and returns the answer; a problem answer ends the process with
 * its detail and "exit".  url NULL: local mode, nothing done.
 * sa_api_local_or_exit(): the usage error of a command that needs the
 * keys themselves (key, notify run, the adopts) under --api.
 */
void sa_api_setup_or_exit(sa_admin_t *sa, const char *url,
    const char *token_file);
json_t *sa_api_call(sa_admin_t *sa, const sa_op_t *op, json_t *in);
int sa_api_on(void);
void sa_api_local_or_exit(sa_admin_t *sa);

/*
 * A command's operation (cli/run.c): sa_op_call() with in, which it
 * takes; with --json it prints the output and returns NULL (the command
 * is done), else it returns the output for the command's text.
 */
json_t *sa_cli_run(sa_admin_t *sa, const char *op, json_t *in);

/* token usage, account usage (cli/token.c): OPERAND [--days N], a table */
void sa_cli_usage(sa_admin_t *sa, int argc, char **argv, const char *op);

/*
 * sa_die()'s, sa_die_usage()'s and sa_die_kind()'s common end: the sink,
 * or the line on stderr, then "usage: sa-admin <usage>" unless usage is
 * NULL, and exit(code).  sa_die_kind(SA_ERR_INPUT, ...) passes the running
 * command's usage line (sa_die_usage_line, set by sa_dispatch(); NULL
 * under serve), as a usage error of the command line does.
 */
SA_NORETURN void sa_die_message(sa_err_kind_t kind, int code,
    const char *message, const char *usage);
extern const char  *sa_die_usage_line;

/*
 * What an operation made before an error ended it and its caller must
 * still see: token.issue with a count sets it to the array of the tokens
 * issued so far (secrets and all) while it runs.  When an error ends the
 * operation with some in it, sa_die_message() first hands them to
 * sa_die_partial_show (the CLI prints them as the command's output, set
 * by cli/token.c), or serve's sink puts them in the problem's "issued"
 * (which sa-admin --api shows the same way).  sa_die_partial_whole: every
 * change sent was answered (a refusal), so no other was made; 0 when
 * Redis failed with a batch in flight, which may have made more, unseen.
 */
extern json_t  *sa_die_partial;
extern int      sa_die_partial_whole;
extern void   (*sa_die_partial_show)(json_t *partial, int whole);

/* sa_die_message() of the formatted message */
SA_NORETURN void sa_vdie(sa_err_kind_t kind, int code, const char *usage,
    const char *fmt, va_list ap);

/* the kind of an exit code of sa_die(code): 1 input, 2 not-found, ... */
sa_err_kind_t sa_err_kind_of_exit(int code);

/*
 * The operations (ops/<group>.c; their input fields are documented above
 * each, and the route in registry.c)
 */
json_t *sa_op_account_create(sa_admin_t *sa, json_t *in);
json_t *sa_op_account_list(sa_admin_t *sa, json_t *in);
json_t *sa_op_account_show(sa_admin_t *sa, json_t *in);
json_t *sa_op_account_grant(sa_admin_t *sa, json_t *in);
json_t *sa_op_account_ungrant(sa_admin_t *sa, json_t *in);
json_t *sa_op_account_delete(sa_admin_t *sa, json_t *in);
json_t *sa_op_token_issue(sa_admin_t *sa, json_t *in);
json_t *sa_op_token_list(sa_admin_t *sa, json_t *in);
json_t *sa_op_token_usage(sa_admin_t *sa, json_t *in);      /* usage.c */
json_t *sa_op_account_usage(sa_admin_t *sa, json_t *in);    /* usage.c */
json_t *sa_op_token_scope(sa_admin_t *sa, json_t *in);
json_t *sa_op_token_rotate(sa_admin_t *sa, json_t *in);
json_t *sa_op_token_revoke(sa_admin_t *sa, json_t *in);
json_t *sa_op_team_create(sa_admin_t *sa, json_t *in);
json_t *sa_op_team_member_add(sa_admin_t *sa, json_t *in);
json_t *sa_op_team_member_remove(sa_admin_t *sa, json_t *in);
json_t *sa_op_team_member_list(sa_admin_t *sa, json_t *in);
json_t *sa_op_team_adopt(sa_admin_t *sa, json_t *in);
json_t *sa_op_app_create(sa_admin_t *sa, json_t *in);
json_t *sa_op_app_share(sa_admin_t *sa, json_t *in);
json_t *sa_op_app_unshare(sa_admin_t *sa, json_t *in);
json_t *sa_op_app_list(sa_admin_t *sa, json_t *in);
json_t *sa_op_app_show(sa_admin_t *sa, json_t *in);
json_t *sa_op_app_adopt(sa_admin_t *sa, json_t *in);
json_t *sa_op_audit_list(sa_admin_t *sa, json_t *in);
json_t *sa_op_notify_set(sa_admin_t *sa, json_t *in);
json_t *sa_op_notify_list(sa_admin_t *sa, json_t *in);
json_t *sa_op_notify_remove(sa_admin_t *sa, json_t *in);
json_t *sa_op_notify_test(sa_admin_t *sa, json_t *in);
json_t *sa_op_notify_emit(sa_admin_t *sa, json_t *in);
json_t *sa_op_notify_failed(sa_admin_t *sa, json_t *in);
json_t *sa_op_notify_retry(sa_admin_t *sa, json_t *in);
json_t *sa_op_audit_verify(sa_admin_t *sa, json_t *in);

/*
 * ops/user.c: a person's personal tokens (sap_) for the admin API.
 *   user.token.issue   {user, expires?: "90d"} -> {id, user, created_at,
 *                      created_by, expires_at, status, token} (token once)
 *   user.token.list    {user} -> [{id, user, created_at, created_by,
 *                      expires_at, status, last_used_at}] (its last use
 *                      at the API, at most a minute old; null: never)
 *   user.token.revoke  {id}   -> {id, ..., status: "revoked"}
 * An operator, or the user herself; never a caller bounded by a service
 * account token's scopes.  One issued with a personal token (sa->proof)
 * expires no later than that token.
 */
json_t *sa_op_user_token_issue(sa_admin_t *sa, json_t *in);
json_t *sa_op_user_token_list(sa_admin_t *sa, json_t *in);
json_t *sa_op_user_token_revoke(sa_admin_t *sa, json_t *in);

/*
 * ops/scope.c: the scope catalogue, in each application's signed record.
 *   scope.define  {app, scope, description?} -> {application, scope,
 *                 description}
 *   scope.remove  {app, scope} -> {application, scope, removed: true}
 *   scope.list    {app?} -> [{application, scope, description}]
 * define and remove: the owner of the application's owner team, or
 * service_accounts:create in it.
 */
json_t *sa_op_scope_define(sa_admin_t *sa, json_t *in);
json_t *sa_op_scope_remove(sa_admin_t *sa, json_t *in);
json_t *sa_op_scope_list(sa_admin_t *sa, json_t *in);

/*
 * The scopes (granted: "stacks:*", "*" too) that match no scope of the
 * catalogues of apps (an account's or token's applications, '*' every
 * one): with strict, SA_ERR_INPUT for the first; else one warning each
 * appended to *warnings (a new array when NULL).  Applications without a
 * catalogue: nothing to compare, no warning (strict: every scope refused).
 */
void sa_scopes_catalogued_or_exit(sa_admin_t *sa, json_t *apps,
    json_t *scopes, int strict, json_t **warnings);

/* the warnings: "sa-admin: warning: ..." lines on stderr, or under serve
 * (channel api) out's "warnings"; takes the reference */
void sa_warnings_out(sa_admin_t *sa, json_t *out, json_t *warnings);

/*
 * ops/app.c: who reads an application (app show, app list, scope list).
 * Over the API: an operator, or a reader of a team (its owner, or a
 * member whose record verifies, as for the team reads) that owns it, that
 * it is shared with, or one of whose accounts holds a grant of it (a
 * grant kept after an unshare; never '*').  A token's scopes do not bound
 * it, as they bound no read.  Not over the API: everyone.
 * sa_app_sight(): the caller's, for sa_app_seen(sa, s, rec) on verified
 * records.  sa_app_read_or_exit(): the verified record of app, or exits:
 * 404 as before for those who read every application; for the others one
 * 403, the same for an application hidden, absent or refused, so that no
 * name can be probed.
 */
typedef struct {
    int      all;           /* not over the API, or an operator */
    json_t  *teams;         /* the teams the caller reads, [names] */
    json_t  *granted;       /* what their accounts hold; NULL until needed */
} sa_app_sight_t;

sa_app_sight_t *sa_app_sight(sa_admin_t *sa);
int sa_app_seen(sa_admin_t *sa, sa_app_sight_t *s, json_t *rec);
void sa_app_sight_free(sa_app_sight_t *s);
json_t *sa_app_read_or_exit(sa_admin_t *sa, const char *app);

/* ops/team.c: the teams user owns or is a member of (all: every team, for
 * an operator), verified, by name: [{team, owner, perms}] (/v1/me) */
json_t *sa_teams_of(sa_admin_t *sa, const char *user, int all);

#endif /* SA_ADMIN_OPS_H */
