/*
 * sa-admin: reading and writing the signed records of schema/README.md.
 * Every record read in order to be rewritten is verified first, so that
 * sa-admin never re-signs what somebody else wrote into Redis.
 */

#ifndef SA_ADMIN_RECORDS_H
#define SA_ADMIN_RECORDS_H

#include <jansson.h>

#include "sa_admin.h"
#include "sa_keys.h"
#include "sa_record.h"
#include "ops/ops.h"

#define SA_EXPIRED_KEEP  (7 * 86400)   /* an expired record answers "expired" */

typedef struct {
    json_t       *json;          /* the payload object; owns the strings */
    const char   *id;
    const char   *team;
    const char   *name;
    const char   *email;
    json_t       *apps;          /* array of strings */
    json_int_t    version;
} sa_account_t;

/* the signing key, loaded on first use; exits 1 when it is unusable */
const uint8_t *sa_signing_key_or_exit(sa_admin_t *sa);

/* the signing key if sa_signing_key_or_exit() loaded it, else NULL */
const uint8_t *sa_signing_key_if_loaded(void);

/* the key wiped from memory: the next sa_signing_key_or_exit() reads the
 * file again (serve's refresher, on SIGHUP) */
void sa_signing_key_forget(void);
/* forgets which envelopes this process verified (records.c) */
void sa_verified_forget(void);

/*
 * The signed record of a kind and id, as its payload's JSON object
 * (json_decref() it): its signature verified with pk, of that kind and
 * naming id (sa_record_check() in core/sa_record.c: a genuine record copied
 * under another key is refused too).  pk NULL: the signing key's public
 * half, or, without a signing key (reading commands only: every change
 * loads the key first), unverified with a warning on stderr.
 *
 * sa_record_get() reads it from the kind's key: tok:<id>, acct:<id>,
 * team:<id>, app:<id>, ptok:<id>, or for a member (id "TEAM/USER") the field USER of
 * team:TEAM:members.  sa_record_open() judges a value already read.
 * Both return NULL when there is none (*err NULL) or when it is refused
 * (*err says why; nothing to free).
 */
json_t *sa_record_get(sa_admin_t *sa, const uint8_t *pk, sa_kind_t kind,
    const char *id, const char **err);
json_t *sa_record_open(sa_admin_t *sa, const uint8_t *pk, sa_kind_t kind,
    const char *id, const char *value, size_t len, const char **err);

/*
 * sa_record_open() refuses a record past its fresh_until (fresh.h,
 * sa_record_fresh_refusal()); _lax() does not, for a record read only for
 * the version a change builds on (a change to a lapsed record keeps its
 * version growing, as the refresher's version memory expects).
 */
json_t *sa_record_open_lax(sa_admin_t *sa, const uint8_t *pk, sa_kind_t kind,
    const char *id, const char *value, size_t len, const char **err);

/*
 * How a refused record ends a permission check: SA_ERR_STALE (503,
 * exit 3, the message shown by serve too) when err is a fresh_until reason (the refresher is down, or an
 * older record was put back), else SA_ERR_NOT_FOUND (404, exit 2); and
 * the hint that follows err in the message.
 */
sa_err_kind_t sa_refused_kind(const char *err);
const char *sa_refused_hint(const char *err);

/* sa_record_get(), exiting 2 when there is none or it is refused (3 when
 * it is past its fresh_until) */
json_t *sa_record_get_or_exit(sa_admin_t *sa, sa_kind_t kind,
    const char *id);

/* a payload object sealed with the signing key; the caller frees it */
char *sa_record_seal(sa_admin_t *sa, json_t *payload);

/*
 * the acting user (--as, SA_ACTOR); when none is given, the operator
 * (perm.h), which needs the signing key; exits 1 on an invalid name
 */
const char *sa_actor_or_exit(sa_admin_t *sa);

/*
 * The scripts' ARGV[2] (common.lua): "<actor>\n<proof>\n<channel>", so
 * that audit entries record how the actor was proven ("local", the
 * signing key's holder on the command line; "token:<id>"; "proxy") and
 * the channel ("cli", "api").  One static buffer.
 */
const char *sa_actor_arg(sa_admin_t *sa);

/* "<prefix><a><b>" in a static buffer that the next call overwrites */
const char *sa_key(sa_admin_t *sa, const char *a, const char *b);

/*
 * Finds an account by id or by "TEAM/NAME"; exits 2 when there is none,
 * and when its record does not verify.
 */
void sa_account_load_or_exit(sa_admin_t *sa, const char *ref, sa_account_t *a);

/*
 * The same for a value already read: verified, kind "account", naming id.
 * Returns -1 with the reason in *err (nothing to free) when it is not.
 */
int sa_account_from_value(sa_admin_t *sa, const char *id, const char *value,
    size_t len, sa_account_t *a, const char **err);
void sa_account_free(sa_account_t *a);

/* seals an account payload object (sa_record_seal()) */
#define sa_account_seal  sa_record_seal

json_t *sa_account_public_json(json_t *payload);

/*
 * A token record by id (malloc()ed block), verified; NULL when the key is
 * absent.  Exits 2 when the record does not verify.
 */
sa_token_record_t *sa_token_load_or_exit(sa_admin_t *sa, const char *tid);

/* the same for a value already read, e.g. from a pipeline; NULL: absent */
sa_token_record_t *sa_token_from_value_or_exit(sa_admin_t *sa, const char *tid,
    const char *value, size_t len);

/* the same, but a bad record only sets *tampered (for listings) */
sa_token_record_t *sa_token_try_value(sa_admin_t *sa, const char *tid,
    const char *value, size_t len, int *tampered);

/* the EXAT argument of a record's key: expiry + a week, or "0" for never */
void sa_token_exat(const sa_token_record_t *rec, char out[24]);

/*
 * Makes rec revoked, without a scope.  Every revocation goes through here:
 * token revoke, account delete, and the revocation that replaces a record
 * failing verification.  The version is the caller's.
 */
void sa_token_revoke(sa_token_record_t *rec);

/* "active", "expired" or "revoked" */
const char *sa_token_status(const sa_token_record_t *rec, int64_t now);

void *sa_heap_alloc(void *ctx, size_t size);

/* one JSON document and a newline on stdout; takes the reference */
void sa_print_json(json_t *doc);

/* json array of a record's scopes or apps */
json_t *sa_strs_json(const sa_str_t *s, size_t n);

/* a time as RFC 3339, or JSON null for 0 */
json_t *sa_time_json(int64_t t);



typedef struct {
    size_t               n;
    size_t               cap;
    char               **ids;
    sa_token_record_t  **recs;       /* verified and the account's, or NULL */
    char               **used;       /* last use, unix seconds, or NULL */
    int                 *tampered;   /* the record failed verification */
    int                 *foreign;    /* it names another account */
    int                 *unlisted;   /* not in the account's index */
} sa_token_set_t;

/*
 * The tokens the account's index lists, read with one pipeline, each
 * verified; one whose record names another account is flagged foreign
 * (and reported), never treated as this account's.
 */
void sa_token_set_load(sa_admin_t *sa, const char *aid, sa_token_set_t *ts);

/* adds the account's tokens that its index misses, found by a SCAN */
void sa_token_set_scan(sa_admin_t *sa, const char *aid, sa_token_set_t *ts);
void sa_token_set_free(sa_token_set_t *ts);

/* the strings of a JSON array joined by sep ("-" when none); free() it */
char *sa_join(json_t *arr, const char *sep);

/* a scope or app list as sa_str_t, pointing into a JSON array's strings */
sa_str_t *sa_strs_from_json(json_t *arr, size_t *n);

/* the public JSON of a token (contract fields + status) */
json_t *sa_token_json(const sa_token_record_t *rec, const char *last_used,
    int64_t now);
#endif /* SA_ADMIN_RECORDS_H */
