/* The Lua scripts of admin-tool/lua/, compiled in by embed.pl. */

#ifndef SA_ADMIN_SCRIPTS_H
#define SA_ADMIN_SCRIPTS_H

#include "redis.h"

extern sa_script_t  sa_lua_team_create;
extern sa_script_t  sa_lua_member_add;
extern sa_script_t  sa_lua_team_adopt;
extern sa_script_t  sa_lua_app_create;
extern sa_script_t  sa_lua_app_change;
extern sa_script_t  sa_lua_account_create;
extern sa_script_t  sa_lua_account_change;
extern sa_script_t  sa_lua_token_issue;
extern sa_script_t  sa_lua_token_update;
extern sa_script_t  sa_lua_notify_set;
extern sa_script_t  sa_lua_notify_emit;
extern sa_script_t  sa_lua_notify_done;
extern sa_script_t  sa_lua_notify_claim;
extern sa_script_t  sa_lua_notify_expiring;
extern sa_script_t  sa_lua_notify_expand;
extern sa_script_t  sa_lua_notify_retry;
extern sa_script_t  sa_lua_notify_seen;
extern sa_script_t  sa_lua_key_resign;
extern sa_script_t  sa_lua_key_resign_done;
extern sa_script_t  sa_lua_key_refresh;
extern sa_script_t  sa_lua_record_refresh;
extern sa_script_t  sa_lua_audit_denied;
extern sa_script_t  sa_lua_audit_resign;
extern sa_script_t  sa_lua_ptoken_issue;
extern sa_script_t  sa_lua_ptoken_revoke;

#endif /* SA_ADMIN_SCRIPTS_H */
