/* The Lua scripts of admin-tool/lua/, compiled in by embed.pl. */

#ifndef SA_ADMIN_SCRIPTS_H
#define SA_ADMIN_SCRIPTS_H

#include "redis.h"

extern sa_script_t  sa_lua_team_create;
extern sa_script_t  sa_lua_member_add;
extern sa_script_t  sa_lua_account_create;
extern sa_script_t  sa_lua_account_change;
extern sa_script_t  sa_lua_token_issue;
extern sa_script_t  sa_lua_token_update;

#endif /* SA_ADMIN_SCRIPTS_H */
