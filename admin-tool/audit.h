/*
 * sa-admin: the audit log, chained and signed.
 *
 * Every change's script appends its entries to <prefix>audit and chains
 * them (common.lua, audit(): seq, prev, link = SHA-1 of prev, seq and the
 * entry).  Its reply carries a receipt: the first and last number of the
 * entries it wrote and the last link.  redis.c hands every script reply
 * to sa_audit_unwrap(), which takes the receipt off (callers see the
 * script's own reply), and, once nothing is in flight, to
 * sa_audit_sign_pending(), which signs each receipt with the signing key
 * (Ed25519, "sa-audit:1\n<prefix>\n<from>\n<to>\n<link>") and stores it
 * in the sorted set <prefix>audit:sig, score <to>, member
 * "<to>:<from>:<link>:<signature in hex>": one ZADD per change, after its
 * reply (common.lua drops the members of entries MAXLEN trimmed).
 *
 * A signed checkpoint proves the entries from..to were written by a
 * script that sa-admin with the signing key ran, and, since the link
 * chains every entry before, fixes all that came before them: none of
 * those can be changed, removed or inserted without breaking a link that
 * sa_audit_verify() recomputes or the signature.  An entry that
 * no checkpoint covers is reported as unsigned.
 */

#ifndef SA_ADMIN_AUDIT_H
#define SA_ADMIN_AUDIT_H

#include <hiredis/hiredis.h>

#include <stddef.h>
#include <stdint.h>

#include "sa_admin.h"
#include "sa_crypto.h"

#define SA_AUDIT_SIG  ":sig"            /* <prefix>audit:sig */

/*
 * A script's reply without its receipt (kept for sa_audit_sign_pending());
 * r itself when it carries none.  Only for replies to EVALSHA of our own
 * scripts: any other reply could be made to look like a receipt.
 */
redisReply *sa_audit_unwrap(redisReply *r);

/* signs and stores the receipts kept so far (redis.c, nothing in flight) */
void sa_audit_sign_pending(sa_admin_t *sa);

/* lowercase hex SHA-1 of data, as Redis's redis.sha1hex() */
void sa_sha1_hex(const void *data, size_t len, char out[41]);

/*
 * audit --verify: the chain and the checkpoints of the whole log; each
 * problem on stderr; returns the summary {"entries", "unchained", "last",
 * "signed", "unsigned", "problems", "intact"}.
 */
struct json_t *sa_audit_verify(sa_admin_t *sa);

/* the value of a field of a stream entry's reply, "" when absent */
const char *sa_audit_field(redisReply *fields, const char *name);

/*
 * key resign: every checkpoint that verifies with one of the nold old
 * verify keys is signed again with sk (one that verifies with none is
 * counted in *refused and left for audit --verify to report).  Returns
 * how many were re-signed.
 */
size_t sa_audit_resign(sa_admin_t *sa, const uint8_t *sk,
    const uint8_t (*old)[SA_PUBLICKEY_LEN], int nold, size_t *refused);

#endif /* SA_ADMIN_AUDIT_H */
