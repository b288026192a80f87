/*
 * sa-admin: every operation, by name, with its route of the admin API
 * (DESIGN.md, "Admin API").  A route's {names} are input fields of the
 * same names; the query's names too (GET), and the body's fields.
 */

#include <string.h>

#include "ops.h"

json_t  *(*sa_op_via)(sa_admin_t *sa, const sa_op_t *op, json_t *in);

#define W  SA_OP_WRITE

const sa_op_t  sa_ops[] = {
    { "team.create", sa_op_team_create,
      "POST", "/v1/teams", 201, W },
    { "team.member.add", sa_op_team_member_add,
      "PUT", "/v1/teams/{team}/members/{user}", 200, W },
    { "team.member.remove", sa_op_team_member_remove,
      "DELETE", "/v1/teams/{team}/members/{user}", 200, W },
    { "team.member.list", sa_op_team_member_list,
      "GET", "/v1/teams/{team}/members", 200, 0 },
    { "team.adopt", sa_op_team_adopt,
      NULL, NULL, 200, W | SA_OP_LOCAL },

    { "app.create", sa_op_app_create,
      "POST", "/v1/apps", 201, W },
    { "app.list", sa_op_app_list,
      "GET", "/v1/apps", 200, 0 },
    { "app.show", sa_op_app_show,
      "GET", "/v1/apps/{app}", 200, 0 },
    { "app.share", sa_op_app_share,
      "PUT", "/v1/apps/{app}/teams/{team}", 200, W },
    { "app.unshare", sa_op_app_unshare,
      "DELETE", "/v1/apps/{app}/teams/{team}", 200, W },
    { "app.adopt", sa_op_app_adopt,
      NULL, NULL, 200, W | SA_OP_LOCAL },

    { "scope.define", sa_op_scope_define,
      "PUT", "/v1/apps/{app}/scopes/{scope}", 200, W },
    { "scope.remove", sa_op_scope_remove,
      "DELETE", "/v1/apps/{app}/scopes/{scope}", 200, W },
    { "scope.list", sa_op_scope_list,
      "GET", "/v1/scopes", 200, 0 },

    { "account.create", sa_op_account_create,
      "POST", "/v1/teams/{team}/accounts", 201, W },
    { "account.list", sa_op_account_list,
      "GET", "/v1/teams/{team}/accounts", 200, 0 },
    { "account.show", sa_op_account_show,
      "GET", "/v1/accounts/{id}", 200, 0 },
    { "account.delete", sa_op_account_delete,
      "DELETE", "/v1/accounts/{id}", 200, W },
    { "account.grant", sa_op_account_grant,
      "POST", "/v1/accounts/{id}/apps", 200, W },
    { "account.ungrant", sa_op_account_ungrant,
      "DELETE", "/v1/accounts/{id}/apps/{app}", 200, W },
    /* the same operation, several applications at once (all or none) */
    { "account.ungrant.apps", sa_op_account_ungrant,
      "DELETE", "/v1/accounts/{id}/apps", 200, W },

    { "user.token.issue", sa_op_user_token_issue,
      "POST", "/v1/users/{user}/tokens", 201, W },
    { "user.token.list", sa_op_user_token_list,
      "GET", "/v1/users/{user}/tokens", 200, 0 },
    { "user.token.revoke", sa_op_user_token_revoke,
      "DELETE", "/v1/user-tokens/{id}", 200, W },

    { "token.issue", sa_op_token_issue,
      "POST", "/v1/accounts/{id}/tokens", 201, W },
    { "token.list", sa_op_token_list,
      "GET", "/v1/accounts/{id}/tokens", 200, 0 },
    { "token.usage", sa_op_token_usage,
      "GET", "/v1/tokens/{id}/usage", 200, 0 },
    { "account.usage", sa_op_account_usage,
      "GET", "/v1/accounts/{id}/usage", 200, 0 },
    { "token.scope", sa_op_token_scope,
      "PUT", "/v1/tokens/{id}/scopes", 200, W },
    { "token.rotate", sa_op_token_rotate,
      "POST", "/v1/tokens/{id}/rotate", 201, W },
    { "token.revoke", sa_op_token_revoke,
      "DELETE", "/v1/tokens/{id}", 200, W },

    { "notify.set", sa_op_notify_set,
      "PUT", "/v1/apps/{app}/notifications/{account}", 200, W },
    { "notify.list", sa_op_notify_list,
      "GET", "/v1/apps/{app}/notifications", 200, 0 },
    { "notify.remove", sa_op_notify_remove,
      "DELETE", "/v1/apps/{app}/notifications/{account}", 200, W },
    { "notify.test", sa_op_notify_test,
      "POST", "/v1/apps/{app}/notifications/{account}/test", 200, W },
    { "notify.emit", sa_op_notify_emit,
      "POST", "/v1/apps/{app}/events", 200, W },
    { "notify.failed", sa_op_notify_failed,
      "GET", "/v1/notifications/failed", 200, 0 },
    { "notify.retry", sa_op_notify_retry,
      "POST", "/v1/notifications/failed/{id}/retry", 200, W },

    { "audit.list", sa_op_audit_list,
      "GET", "/v1/audit", 200, 0 },
    { "audit.verify", sa_op_audit_verify,
      "GET", "/v1/audit/verify", 200, 0 },

    { NULL, NULL, NULL, NULL, 0, 0 }
};


const sa_op_t *
sa_op_find(const char *name)
{
    const sa_op_t  *op;

    for (op = sa_ops; op->name != NULL; op++) {
        if (strcmp(op->name, name) == 0) {
            return op;
        }
    }

    return NULL;
}


json_t *
sa_op_call(sa_admin_t *sa, const char *name, json_t *in)
{
    const sa_op_t  *op = sa_op_find(name);

    if (op == NULL) {
        sa_die_kind(SA_ERR_INTERNAL, "no operation '%s'", name);
    }

    if (sa_op_via != NULL && (op->flags & SA_OP_LOCAL)) {
        sa_api_local_or_exit(sa);
    }

    if (sa_op_via != NULL) {
        return sa_op_via(sa, op, in);
    }

    return op->run(sa, in);
}
