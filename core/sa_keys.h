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
#define SA_KEY_TEAM         "team:"         /* team:<team>, a signed record */
#define SA_KEY_MEMBERS      ":members"      /* hash user -> signed record */
#define SA_KEY_ACCOUNTS     ":accounts"     /* team:<team>:accounts */
#define SA_KEY_NAMES        ":names"        /* team:<team>:names */
#define SA_KEY_ACCOUNT      "acct:"         /* acct:<aid>, a signed record */
#define SA_KEY_TOKENS       ":tokens"       /* acct:<aid>:tokens */
#define SA_KEY_TOKEN        "tok:"          /* tok:<tid>, a signed record */
#define SA_KEY_USED         ":used"         /* tok:<tid>:used */
#define SA_KEY_PTOKEN       "ptok:"         /* ptok:<tid>, a signed record:
                                               a personal token (sap_) */
#define SA_KEY_USER         "user:"         /* user:<user>:ptoks */
#define SA_KEY_PTOKENS      ":ptoks"        /* set of <tid> */
#define SA_KEY_APPS         "apps"          /* set of application names */
#define SA_KEY_APP          "app:"          /* app:<app>, a signed record */
#define SA_KEY_AUDIT        "audit"         /* a stream */
#define SA_KEY_INVALIDATE   "invalidate"    /* a pub/sub channel */
#define SA_KEY_RECORDS      "records"       /* a pub/sub channel: sa-admin's
                                               records of the other kinds
                                               written, for serve's
                                               refresher (no gateway) */

/* notifications (sa-admin notify; schema/README.md, "Notifications") */
#define SA_KEY_EVENTS       "events"        /* stream: one entry per delivery */
#define SA_NOTIFY_GROUP     "sa-notify"     /* its consumer group */
#define SA_KEY_NOTIFY       "notify:"       /* notify:<app>, hash aid -> sub */
#define SA_KEY_SUBS         ":notify"       /* acct:<aid>:notify, set of apps */
#define SA_KEY_EXPIRING     "expiring"      /* zset tid -> next notice time */
#define SA_KEY_DUE          "delivery:due"  /* zset delivery id -> due (ms) */
#define SA_KEY_DELIVERY     "delivery:data" /* hash delivery id -> state */
#define SA_KEY_OWNER        "delivery:owner"  /* hash delivery id -> worker */
#define SA_KEY_FAILED       "delivery:failed" /* hash delivery id -> state */
#define SA_KEY_SEEN         "delivery:seen:"  /* seen:<delivery id>, dedupe */
#define SA_KEY_LIMIT        "delivery:limit:" /* limit:<tid:app:aid:dest> */

#endif /* SA_KEYS_H */
