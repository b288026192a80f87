/*
 * Signed records (nginx-free).
 *
 * Redis holds every record as an envelope:
 *
 *   sa1.<signature>.<payload JSON>
 *
 * where <signature> is base64url (no padding, 86 characters) of the Ed25519
 * signature of the payload bytes.  The payload names its "kind", so a record
 * of one kind can never pass for another.  The signature is checked before
 * the JSON is parsed, so the parser only ever sees what sa-admin wrote.
 *
 * A token record carries everything a gateway needs in one GET.  Its version
 * only grows: a gateway that has seen version N refuses anything older.
 * An optional "fresh_until" (unix seconds, > 0) bounds how long the record
 * may be taken as current: a signer that runs all the time renews it (sa-admin
 * key refresh), and a gateway with sa_record_max_age refuses a record past
 * it, so that a replayed older record works only until its fresh_until.
 */

#ifndef SA_RECORD_H
#define SA_RECORD_H

#include <stddef.h>
#include <stdint.h>

#include "sa_crypto.h"
#include "sa_policy.h"
#include "sa_scope.h"
#include "sa_token.h"

#define SA_ENVELOPE_PREFIX      "sa1."
#define SA_ENVELOPE_PREFIX_LEN  4
#define SA_SIGNATURE_B64_LEN    86
#define SA_ENVELOPE_HEAD_LEN    (SA_ENVELOPE_PREFIX_LEN                     \
                                 + SA_SIGNATURE_B64_LEN + 1)

#define SA_RECORD_MAX_LEN       (64 * 1024)

/* BLAKE2b-128 of a whole envelope: what a gateway remembers it verified */
#define SA_DIGEST_LEN           16

typedef enum {
    SA_REC_OK = 0,
    SA_REC_MALFORMED,        /* not an envelope at all */
    SA_REC_BAD_SIGNATURE,    /* an envelope whose signature fails: tampered */
    SA_REC_INVALID,          /* signed, but not a valid token record */
    SA_REC_NOMEM
} sa_rec_err_t;

typedef struct {
    uint64_t    version;
    char        id[SA_TOKEN_ID_LEN + 1];
    uint8_t     hash[SA_HASH_LEN];
    sa_str_t    account;             /* account id */
    sa_str_t    name;                /* account name */
    sa_str_t    email;               /* <account-id>@<team>.sa.invalid */
    sa_str_t    team;
    sa_str_t   *scopes;
    size_t      nscopes;
    sa_str_t   *apps;
    size_t      napps;
    int64_t     created_at;          /* unix seconds */
    int64_t     expires_at;          /* unix seconds, 0 = never */
    int64_t     fresh_until;         /* unix seconds, 0 = none: the record
                                        is current until then at most
                                        (sa_record_max_age) */
    unsigned    revoked;
    sa_policy_t policy;              /* rate, quota, networks (sa_policy.h):
                                        the fields are signed like the rest */
    size_t      size;                /* bytes of the whole block */
} sa_token_record_t;

typedef void *(*sa_alloc_pt)(void *ctx, size_t size);

/*
 * Verifies an envelope; on success points *payload into value.
 * Never allocates.
 */
sa_rec_err_t sa_envelope_open(const char *value, size_t len,
    const uint8_t pk[SA_PUBLICKEY_LEN], const char **payload, size_t *plen);

/* returns a malloc()ed NUL-terminated envelope, or NULL */
/*
 * The digest of an envelope's bytes.  Two envelopes with the same digest
 * are the same bytes (a second preimage of BLAKE2b-128 is out of reach), so
 * a gateway that verified one needs no signature check for the other.
 */
void sa_envelope_digest(const char *value, size_t len,
    uint8_t out[SA_DIGEST_LEN]);

char *sa_envelope_seal(const char *payload, size_t len,
    const uint8_t sk[SA_SECRETKEY_LEN]);

/*
 * Decodes a verified token record payload into ONE block obtained from
 * alloc(ctx, size): strings and arrays live inside it, so the block can be
 * copied elsewhere with sa_token_record_copy().  Strings are NUL-terminated.
 */
sa_rec_err_t sa_token_record_parse(const char *payload, size_t len,
    sa_alloc_pt alloc, void *ctx, sa_token_record_t **out);

/* envelope check + parse: what a gateway does with a GET reply */
sa_rec_err_t sa_token_record_decode(const char *value, size_t len,
    const uint8_t pk[SA_PUBLICKEY_LEN], sa_alloc_pt alloc, void *ctx,
    sa_token_record_t **out);

/* copies a record block to dst (rec->size bytes) and rebases its pointers */
sa_token_record_t *sa_token_record_copy(void *dst,
    const sa_token_record_t *rec);

/*
 * A record packed for a gateway's cache: no pointers (the cache is shared
 * memory, mapped anywhere), one length byte per string, the id left out (the
 * cache keeps it), and the email left out when it is the usual
 * <account>@<team>.sa.invalid.
 *
 * sa_token_record_pack() returns the bytes needed, writing them when size
 * allows; 0 when a string is too long for its length byte or a list has
 * more than 255 items (such a record is simply not cached).
 * sa_token_record_unpacked_size() gives the size of the sa_token_record_t
 * block sa_token_record_unpack() builds in dst from packed bytes and id.
 */
size_t sa_token_record_pack(const sa_token_record_t *rec, uint8_t *buf,
    size_t size);
size_t sa_token_record_unpacked_size(const uint8_t *packed);
sa_token_record_t *sa_token_record_unpack(const uint8_t *packed,
    const char *id, void *dst);

/* returns the malloc()ed payload JSON (sorted keys, compact), or NULL */
char *sa_token_record_json(const sa_token_record_t *rec);

/* payload JSON + seal: what sa-admin stores */
char *sa_token_record_encode(const sa_token_record_t *rec,
    const uint8_t sk[SA_SECRETKEY_LEN]);

/*
 * The other kinds of signed record (schema/README.md).  Every payload is a
 * JSON object with "kind", "id" (the name it is stored under) and
 * "version" (>= 1); besides:
 *
 *   account  team, name, email, apps [strings]         key acct:<id>
 *   team     owner                                     key team:<id>
 *   member   team, user, perms [strings]; id is        field <user> of
 *            "<team>/<user>"                           team:<team>:members
 *   app      team (the owner), shared [team names]     key app:<id>
 *   ptoken   user, hash (64 hex), created_at,          key ptok:<id>
 *            expires_at (0 never), revoked (boolean):
 *            a person's personal token (sap_), for
 *            the admin API only; no gateway reads it
 *
 * (token records have their own codec above).
 */
typedef enum {
    SA_KIND_TOKEN = 0,
    SA_KIND_ACCOUNT,
    SA_KIND_TEAM,
    SA_KIND_MEMBER,
    SA_KIND_APP,
    SA_KIND_PTOKEN
} sa_kind_t;

const char *sa_kind_name(sa_kind_t kind);

/*
 * A verified payload judged: a well-formed record of that kind naming id.
 * SA_REC_OK, or SA_REC_INVALID.
 */
struct json_t;
sa_rec_err_t sa_record_check(struct json_t *payload, sa_kind_t kind,
    const char *id);

/*
 * Envelope check, JSON, sa_record_check(): *out gets the payload object
 * (json_decref() it) on SA_REC_OK.
 */
sa_rec_err_t sa_record_decode(const char *value, size_t len,
    const uint8_t pk[SA_PUBLICKEY_LEN], sa_kind_t kind, const char *id,
    struct json_t **out);

/* a payload object as sorted compact JSON, sealed; malloc()ed, or NULL */
char *sa_record_encode(struct json_t *payload,
    const uint8_t sk[SA_SECRETKEY_LEN]);

const char *sa_rec_strerror(sa_rec_err_t err);

#endif /* SA_RECORD_H */
