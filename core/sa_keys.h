/*
 * The Redis key names (schema/README.md), below the prefix (sa: by
 * default).  The one home of these names: the gateway and sa-admin use
 * them, and the Lua scripts get them too (admin-tool/lua/embed.pl turns
 * every string or number #define here, and those of sa_record.h, into a
 * Lua local of the same name).
 */

#ifndef SA_KEYS_H
#define SA_KEYS_H

#define SA_KEY_TEAMS        "teams"         /* set of team names */
#define SA_KEY_TEAM         "team:"         /* team:<team>, a hash */
#define SA_KEY_MEMBERS      ":members"      /* team:<team>:members */
#define SA_KEY_ACCOUNTS     ":accounts"     /* team:<team>:accounts */
#define SA_KEY_NAMES        ":names"        /* team:<team>:names */
#define SA_KEY_ACCOUNT      "acct:"         /* acct:<aid>, a signed record */
#define SA_KEY_TOKENS       ":tokens"       /* acct:<aid>:tokens */
#define SA_KEY_TOKEN        "tok:"          /* tok:<tid>, a signed record */
#define SA_KEY_USED         ":used"         /* tok:<tid>:used */
#define SA_KEY_AUDIT        "audit"         /* a stream */
#define SA_KEY_INVALIDATE   "invalidate"    /* a pub/sub channel */

#endif /* SA_KEYS_H */
