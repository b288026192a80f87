#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <jansson.h>

#include "sa_record.h"


void
sa_envelope_digest(const char *value, size_t len, uint8_t out[SA_DIGEST_LEN])
{
    crypto_generichash(out, SA_DIGEST_LEN, (const unsigned char *) value, len,
                       NULL, 0);
}


sa_rec_err_t
sa_envelope_open(const char *value, size_t len,
    const uint8_t pk[SA_PUBLICKEY_LEN], const char **payload, size_t *plen)
{
    uint8_t  sig[SA_SIGNATURE_LEN];
    size_t   got;

    if (len <= SA_ENVELOPE_HEAD_LEN || len > SA_RECORD_MAX_LEN
        || memcmp(value, SA_ENVELOPE_PREFIX, SA_ENVELOPE_PREFIX_LEN) != 0
        || value[SA_ENVELOPE_HEAD_LEN - 1] != '.')
    {
        return SA_REC_MALFORMED;
    }

    if (sodium_base642bin(sig, sizeof(sig), value + SA_ENVELOPE_PREFIX_LEN,
                          SA_SIGNATURE_B64_LEN, NULL, &got, NULL,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0
        || got != sizeof(sig))
    {
        return SA_REC_MALFORMED;
    }

    *payload = value + SA_ENVELOPE_HEAD_LEN;
    *plen = len - SA_ENVELOPE_HEAD_LEN;

    if (crypto_sign_verify_detached(sig, (const unsigned char *) *payload,
                                    *plen, pk) != 0)
    {
        return SA_REC_BAD_SIGNATURE;
    }

    return SA_REC_OK;
}


char *
sa_envelope_seal(const char *payload, size_t len,
    const uint8_t sk[SA_SECRETKEY_LEN])
{
    uint8_t  sig[SA_SIGNATURE_LEN];
    char    *out;

    out = malloc(SA_ENVELOPE_HEAD_LEN + len + 1);
    if (out == NULL) {
        return NULL;
    }

    crypto_sign_detached(sig, NULL, (const unsigned char *) payload, len, sk);

    memcpy(out, SA_ENVELOPE_PREFIX, SA_ENVELOPE_PREFIX_LEN);
    sodium_bin2base64(out + SA_ENVELOPE_PREFIX_LEN, SA_SIGNATURE_B64_LEN + 1,
                      sig, sizeof(sig),
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    out[SA_ENVELOPE_HEAD_LEN - 1] = '.';
    memcpy(out + SA_ENVELOPE_HEAD_LEN, payload, len);
    out[SA_ENVELOPE_HEAD_LEN + len] = '\0';

    return out;
}


/* the fields of a token record, fetched and type-checked */
typedef struct {
    json_t  *id, *hash, *account, *name, *email, *team, *scopes, *apps;
    json_int_t  version, created_at, expires_at, fresh_until;
    int         revoked;
    sa_policy_t policy;
} sa_token_fields_t;


static int
sa_string_array_valid(json_t *arr, int (*valid)(const char *, size_t))
{
    size_t   i;
    json_t  *v;

    if (!json_is_array(arr)) {
        return 0;
    }

    json_array_foreach(arr, i, v) {
        if (!json_is_string(v)
            || !valid(json_string_value(v), json_string_length(v)))
        {
            return 0;
        }
    }

    return 1;
}


/* "fresh_until": absent (0), or an integer > 0 */
static int
sa_fresh_until_get(json_t *root, json_int_t *out)
{
    json_t  *v;

    v = json_object_get(root, "fresh_until");
    *out = 0;

    if (v == NULL) {
        return 1;
    }

    if (!json_is_integer(v) || json_integer_value(v) <= 0) {
        return 0;
    }

    *out = json_integer_value(v);
    return 1;
}


static int
sa_token_fields_get(json_t *root, sa_token_fields_t *f)
{
    const char  *kind;
    json_t      *revoked;

    if (json_unpack(root, "{s:s, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o,"
                          " s:I, s:I, s:o}",
                    "kind", &kind, "version", &f->version,
                    "id", &f->id, "hash", &f->hash, "account", &f->account,
                    "name", &f->name, "email", &f->email, "team", &f->team,
                    "scopes", &f->scopes, "apps", &f->apps,
                    "created_at", &f->created_at,
                    "expires_at", &f->expires_at, "revoked", &revoked) != 0)
    {
        return 0;
    }

    f->revoked = json_is_true(revoked);

    return strcmp(kind, "token") == 0
           && sa_fresh_until_get(root, &f->fresh_until)
           && sa_policy_from_json(root, &f->policy)
           && f->version > 0 && f->created_at >= 0 && f->expires_at >= 0
           && json_is_boolean(revoked)
           && json_is_string(f->id) && json_is_string(f->hash)
           && json_is_string(f->account) && json_is_string(f->name)
           && json_is_string(f->email) && json_is_string(f->team)
           && sa_token_id_valid(json_string_value(f->id),
                                json_string_length(f->id))
           && sa_string_array_valid(f->scopes, sa_scope_valid_granted)
           && sa_string_array_valid(f->apps, sa_app_valid);
}


/* a bump allocator over the record's single block */
typedef struct {
    char  *next;
} sa_block_t;


static void
sa_block_str(sa_block_t *b, json_t *s, sa_str_t *out)
{
    out->len = json_string_length(s);
    out->data = b->next;
    memcpy(b->next, json_string_value(s), out->len);
    b->next[out->len] = '\0';
    b->next += out->len + 1;
}


static size_t
sa_array_strings_size(json_t *arr)
{
    size_t   i, size;
    json_t  *v;

    size = 0;
    json_array_foreach(arr, i, v) {
        size += sizeof(sa_str_t) + json_string_length(v) + 1;
    }

    return size;
}


static size_t
sa_token_block_size(const sa_token_fields_t *f)
{
    return sizeof(sa_token_record_t)
           + sa_array_strings_size(f->scopes) + sa_array_strings_size(f->apps)
           + json_string_length(f->account) + 1
           + json_string_length(f->name) + 1
           + json_string_length(f->email) + 1
           + json_string_length(f->team) + 1;
}


static void
sa_block_array(sa_block_t *b, json_t *arr, sa_str_t *out, size_t *n)
{
    size_t   i;
    json_t  *v;

    *n = json_array_size(arr);
    json_array_foreach(arr, i, v) {
        sa_block_str(b, v, &out[i]);
    }
}


static sa_rec_err_t
sa_token_record_build(const sa_token_fields_t *f, sa_alloc_pt alloc,
    void *ctx, sa_token_record_t **out)
{
    size_t              size;
    uint8_t             hash[SA_HASH_LEN];
    sa_block_t          b;
    sa_token_record_t  *rec;

    if (sa_hex_decode(json_string_value(f->hash), json_string_length(f->hash),
                      hash, SA_HASH_LEN) != 0)
    {
        return SA_REC_INVALID;
    }

    size = sa_token_block_size(f);

    rec = alloc(ctx, size);
    if (rec == NULL) {
        return SA_REC_NOMEM;
    }

    memset(rec, 0, sizeof(sa_token_record_t));
    memcpy(rec->hash, hash, SA_HASH_LEN);
    rec->size = size;
    rec->version = (uint64_t) f->version;
    memcpy(rec->id, json_string_value(f->id), SA_TOKEN_ID_LEN + 1);
    rec->created_at = f->created_at;
    rec->expires_at = f->expires_at;
    rec->fresh_until = f->fresh_until;
    rec->revoked = f->revoked;
    rec->policy = f->policy;

    rec->scopes = (sa_str_t *) (rec + 1);
    rec->apps = rec->scopes + json_array_size(f->scopes);
    b.next = (char *) (rec->apps + json_array_size(f->apps));

    sa_block_array(&b, f->scopes, rec->scopes, &rec->nscopes);
    sa_block_array(&b, f->apps, rec->apps, &rec->napps);
    sa_block_str(&b, f->account, &rec->account);
    sa_block_str(&b, f->name, &rec->name);
    sa_block_str(&b, f->email, &rec->email);
    sa_block_str(&b, f->team, &rec->team);

    *out = rec;
    return SA_REC_OK;
}


sa_rec_err_t
sa_token_record_parse(const char *payload, size_t len, sa_alloc_pt alloc,
    void *ctx, sa_token_record_t **out)
{
    json_t             *root;
    json_error_t        error;
    sa_rec_err_t        rc;
    sa_token_fields_t   f;

    root = json_loadb(payload, len, JSON_REJECT_DUPLICATES, &error);
    if (root == NULL) {
        return SA_REC_INVALID;
    }

    rc = sa_token_fields_get(root, &f)
         ? sa_token_record_build(&f, alloc, ctx, out)
         : SA_REC_INVALID;

    json_decref(root);
    return rc;
}


sa_rec_err_t
sa_token_record_decode(const char *value, size_t len,
    const uint8_t pk[SA_PUBLICKEY_LEN], sa_alloc_pt alloc, void *ctx,
    sa_token_record_t **out)
{
    const char    *payload;
    size_t         plen;
    sa_rec_err_t   rc;

    rc = sa_envelope_open(value, len, pk, &payload, &plen);
    if (rc != SA_REC_OK) {
        return rc;
    }

    return sa_token_record_parse(payload, plen, alloc, ctx, out);
}


static void
sa_rebase(sa_str_t *s, const char *from, char *to)
{
    s->data = to + (s->data - from);
}


sa_token_record_t *
sa_token_record_copy(void *dst, const sa_token_record_t *rec)
{
    size_t              i;
    sa_token_record_t  *copy;
    const char         *from;

    from = (const char *) rec;
    copy = memcpy(dst, rec, rec->size);

    copy->scopes = (sa_str_t *) ((char *) dst + ((char *) rec->scopes - from));
    copy->apps = (sa_str_t *) ((char *) dst + ((char *) rec->apps - from));

    for (i = 0; i < copy->nscopes; i++) {
        sa_rebase(&copy->scopes[i], from, dst);
    }

    for (i = 0; i < copy->napps; i++) {
        sa_rebase(&copy->apps[i], from, dst);
    }

    sa_rebase(&copy->account, from, dst);
    sa_rebase(&copy->name, from, dst);
    sa_rebase(&copy->email, from, dst);
    sa_rebase(&copy->team, from, dst);

    return copy;
}


static json_t *
sa_json_strings(const sa_str_t *s, size_t n)
{
    size_t   i;
    json_t  *arr;

    arr = json_array();
    for (i = 0; arr != NULL && i < n; i++) {
        if (json_array_append_new(arr,
                json_stringn(s[i].data, s[i].len)) != 0)
        {
            json_decref(arr);
            return NULL;
        }
    }

    return arr;
}


char *
sa_token_record_json(const sa_token_record_t *rec)
{
    char     hex[SA_HASH_HEX_LEN + 1];
    char    *out;
    json_t  *root;

    sa_hex_encode(rec->hash, SA_HASH_LEN, hex);

    root = json_pack("{s:s, s:I, s:s, s:s, s:s#, s:s#, s:s#, s:s#, s:o, s:o,"
                     " s:I, s:I, s:b}",
                     "kind", "token", "version", (json_int_t) rec->version,
                     "id", rec->id, "hash", hex,
                     "account", rec->account.data, (int) rec->account.len,
                     "name", rec->name.data, (int) rec->name.len,
                     "email", rec->email.data, (int) rec->email.len,
                     "team", rec->team.data, (int) rec->team.len,
                     "scopes", sa_json_strings(rec->scopes, rec->nscopes),
                     "apps", sa_json_strings(rec->apps, rec->napps),
                     "created_at", (json_int_t) rec->created_at,
                     "expires_at", (json_int_t) rec->expires_at,
                     "revoked", (int) rec->revoked);
    if (root == NULL) {
        return NULL;
    }

    /* only when set: a record without it is byte for byte what it was */
    if (rec->fresh_until > 0
        && json_object_set_new(root, "fresh_until",
                               json_integer((json_int_t) rec->fresh_until))
           != 0)
    {
        json_decref(root);
        return NULL;
    }

    /* the same: the policy fields only when set */
    if (sa_policy_to_json(&rec->policy, root) != 0) {
        json_decref(root);
        return NULL;
    }

    out = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(root);
    return out;
}


char *
sa_token_record_encode(const sa_token_record_t *rec,
    const uint8_t sk[SA_SECRETKEY_LEN])
{
    char  *payload, *sealed;

    payload = sa_token_record_json(rec);
    if (payload == NULL) {
        return NULL;
    }

    sealed = sa_envelope_seal(payload, strlen(payload), sk);
    free(payload);
    return sealed;
}


const char *
sa_rec_strerror(sa_rec_err_t err)
{
    switch (err) {
    case SA_REC_OK:
        return "ok";
    case SA_REC_MALFORMED:
        return "not a signed record";
    case SA_REC_BAD_SIGNATURE:
        return "signature does not verify";
    case SA_REC_INVALID:
        return "signed, but not a valid record of its kind";
    case SA_REC_NOMEM:
        return "out of memory";
    }

    return "unknown error";
}


/* ------------------------------------------------ the other record kinds */

static const char  *sa_kind_names[] = {
    "token", "account", "team", "member", "app", "ptoken"
};


const char *
sa_kind_name(sa_kind_t kind)
{
    return (unsigned) kind < sizeof(sa_kind_names) / sizeof(sa_kind_names[0])
           ? sa_kind_names[kind] : "?";
}


static int
sa_any_string(const char *s, size_t len)
{
    (void) s;
    return len > 0;
}


static int
sa_perm_name(const char *s, size_t len)
{
    (void) len;
    return strcmp(s, "service_accounts:create") == 0
           || strcmp(s, "service_accounts:delete") == 0
           || strcmp(s, "service_accounts:tokens") == 0;
}


static int
sa_nonempty(json_t *v)
{
    return json_is_string(v) && json_string_length(v) > 0
           && strlen(json_string_value(v)) == json_string_length(v);
}


sa_rec_err_t
sa_record_check(json_t *payload, sa_kind_t kind, const char *id)
{
    const char  *k, *rid, *team, *user;
    uint8_t      hash[SA_HASH_LEN];
    json_int_t   version, fresh;
    size_t       tlen;
    json_t      *f;
    sa_policy_t  policy;

    if (json_unpack(payload, "{s:s, s:s, s:I}", "kind", &k, "id", &rid,
                    "version", &version) != 0
        || strcmp(k, sa_kind_name(kind)) != 0
        || strcmp(rid, id) != 0
        || version < 1
        || !sa_fresh_until_get(payload, &fresh))
    {
        /* fresh_until, of every kind: absent, or an integer > 0 */
        return SA_REC_INVALID;
    }

    switch (kind) {

    case SA_KIND_TOKEN:
        return sa_token_id_valid(rid, strlen(rid))
               && sa_fresh_until_get(payload, &fresh)
               && sa_policy_from_json(payload, &policy)
               && sa_nonempty(json_object_get(payload, "account"))
               && sa_nonempty(json_object_get(payload, "team"))
               && sa_string_array_valid(json_object_get(payload, "scopes"),
                                        sa_scope_valid_granted)
               && sa_string_array_valid(json_object_get(payload, "apps"),
                                        sa_app_valid)
               ? SA_REC_OK : SA_REC_INVALID;

    case SA_KIND_ACCOUNT:
        /* the account's policy: the defaults of its tokens */
        return sa_policy_from_json(payload, &policy)
               && sa_nonempty(json_object_get(payload, "team"))
               && sa_nonempty(json_object_get(payload, "name"))
               && sa_nonempty(json_object_get(payload, "email"))
               && sa_string_array_valid(json_object_get(payload, "apps"),
                                        sa_app_valid)
               ? SA_REC_OK : SA_REC_INVALID;

    case SA_KIND_TEAM:
        return sa_nonempty(json_object_get(payload, "owner"))
               ? SA_REC_OK : SA_REC_INVALID;

    case SA_KIND_MEMBER:
        f = json_object_get(payload, "team");
        team = json_string_value(f);
        user = json_string_value(json_object_get(payload, "user"));
        if (!sa_nonempty(f) || user == NULL || user[0] == '\0') {
            return SA_REC_INVALID;
        }
        /* the id is "<team>/<user>": a member record names both */
        tlen = strlen(team);
        return strncmp(rid, team, tlen) == 0 && rid[tlen] == '/'
               && strcmp(rid + tlen + 1, user) == 0
               && sa_string_array_valid(json_object_get(payload, "perms"),
                                        sa_perm_name)
               ? SA_REC_OK : SA_REC_INVALID;

    case SA_KIND_APP:
        return sa_app_valid(rid, strlen(rid)) && strcmp(rid, "*") != 0
               && sa_nonempty(json_object_get(payload, "team"))
               && sa_string_array_valid(json_object_get(payload, "shared"),
                                        sa_any_string)
               ? SA_REC_OK : SA_REC_INVALID;

    case SA_KIND_PTOKEN:
        f = json_object_get(payload, "hash");
        if (!sa_nonempty(f) || json_string_length(f) != SA_HASH_HEX_LEN
            || sa_hex_decode(json_string_value(f), SA_HASH_HEX_LEN, hash,
                             SA_HASH_LEN) != 0)
        {
            return SA_REC_INVALID;
        }
        return sa_token_id_valid(rid, strlen(rid))
               && sa_nonempty(json_object_get(payload, "user"))
               && json_is_integer(json_object_get(payload, "created_at"))
               && json_is_integer(json_object_get(payload, "expires_at"))
               && json_integer_value(json_object_get(payload, "expires_at"))
                  >= 0
               && json_is_boolean(json_object_get(payload, "revoked"))
               ? SA_REC_OK : SA_REC_INVALID;
    }

    return SA_REC_INVALID;
}


sa_rec_err_t
sa_record_decode(const char *value, size_t len,
    const uint8_t pk[SA_PUBLICKEY_LEN], sa_kind_t kind, const char *id,
    json_t **out)
{
    const char    *payload;
    size_t         plen;
    sa_rec_err_t   rc;
    json_t        *j;

    *out = NULL;

    rc = sa_envelope_open(value, len, pk, &payload, &plen);
    if (rc != SA_REC_OK) {
        return rc;
    }

    j = json_loadb(payload, plen, JSON_REJECT_DUPLICATES, NULL);
    if (j == NULL || sa_record_check(j, kind, id) != SA_REC_OK) {
        json_decref(j);
        return SA_REC_INVALID;
    }

    *out = j;
    return SA_REC_OK;
}


char *
sa_record_encode(json_t *payload, const uint8_t sk[SA_SECRETKEY_LEN])
{
    char  *json, *sealed;

    json = json_dumps(payload, JSON_COMPACT | JSON_SORT_KEYS);
    if (json == NULL) {
        return NULL;
    }

    sealed = sa_envelope_seal(json, strlen(json), sk);
    free(json);

    return sealed;
}


/* packed records (see sa_record.h) */

#define SA_PACK_REVOKED   0x01
#define SA_PACK_EMAIL     0x02      /* the email is stored: not the usual */
#define SA_PACK_POLICY    0x04      /* a policy follows the strings */
#define SA_PACK_POLICY_HEAD  (4 + 4 + 4 + 8 + 1 + 1)
#define SA_PACK_NET       (2 + 16)
#define SA_PACK_HEAD      (8 + 8 + SA_HASH_LEN + 3 + 8)
#define SA_PACK_FRESH     (19 + SA_HASH_LEN)     /* fresh_until's offset */

static const char  sa_email_domain[] = ".sa.invalid";


static int
sa_email_usual(const sa_token_record_t *rec)
{
    size_t  a = rec->account.len, t = rec->team.len;

    return rec->email.len == a + 1 + t + sizeof(sa_email_domain) - 1
           && memcmp(rec->email.data, rec->account.data, a) == 0
           && rec->email.data[a] == '@'
           && memcmp(rec->email.data + a + 1, rec->team.data, t) == 0
           && memcmp(rec->email.data + a + 1 + t, sa_email_domain,
                     sizeof(sa_email_domain) - 1) == 0;
}


/* one length-prefixed string; returns the new offset, or 0 if too long */
static size_t
sa_pack_str(const sa_str_t *s, uint8_t *buf, size_t size, size_t off)
{
    if (s->len > 255) {
        return 0;
    }

    if (off + 1 + s->len <= size) {
        buf[off] = (uint8_t) s->len;
        memcpy(buf + off + 1, s->data, s->len);
    }

    return off + 1 + s->len;
}


/* rate, per, burst, quota, period, nnets, then each network */
static size_t
sa_pack_policy(const sa_policy_t *p, uint8_t *buf, size_t size, size_t off)
{
    size_t  i, need = SA_PACK_POLICY_HEAD + p->nnets * SA_PACK_NET;

    if (off + need <= size) {
        memcpy(buf + off, &p->rate, 4);
        memcpy(buf + off + 4, &p->per, 4);
        memcpy(buf + off + 8, &p->burst, 4);
        memcpy(buf + off + 12, &p->quota, 8);
        buf[off + 20] = p->quota_period;
        buf[off + 21] = p->nnets;

        for (i = 0; i < p->nnets; i++) {
            buf[off + 22 + i * SA_PACK_NET] = p->nets[i].family;
            buf[off + 23 + i * SA_PACK_NET] = p->nets[i].bits;
            memcpy(buf + off + 24 + i * SA_PACK_NET, p->nets[i].addr, 16);
        }
    }

    return off + need;
}


static void
sa_unpack_policy(const uint8_t *p, sa_policy_t *pol)
{
    size_t  i;

    memcpy(&pol->rate, p, 4);
    memcpy(&pol->per, p + 4, 4);
    memcpy(&pol->burst, p + 8, 4);
    memcpy(&pol->quota, p + 12, 8);
    pol->quota_period = p[20];
    pol->nnets = p[21] <= SA_POLICY_MAX_NETS ? p[21] : SA_POLICY_MAX_NETS;

    for (i = 0; i < pol->nnets; i++) {
        pol->nets[i].family = p[22 + i * SA_PACK_NET];
        pol->nets[i].bits = p[23 + i * SA_PACK_NET];
        memcpy(pol->nets[i].addr, p + 24 + i * SA_PACK_NET, 16);
    }
}


size_t
sa_token_record_pack(const sa_token_record_t *rec, uint8_t *buf, size_t size)
{
    size_t   i, off;
    uint8_t  flags;
    int      usual;

    if (rec->nscopes > 255 || rec->napps > 255) {
        return 0;
    }

    usual = sa_email_usual(rec);
    flags = (rec->revoked ? SA_PACK_REVOKED : 0) | (usual ? 0 : SA_PACK_EMAIL)
            | (sa_policy_empty(&rec->policy) ? 0 : SA_PACK_POLICY);

    if (SA_PACK_HEAD <= size) {
        memcpy(buf, &rec->version, 8);
        memcpy(buf + 8, &rec->expires_at, 8);
        memcpy(buf + 16, rec->hash, SA_HASH_LEN);
        buf[16 + SA_HASH_LEN] = flags;
        buf[17 + SA_HASH_LEN] = (uint8_t) rec->nscopes;
        buf[18 + SA_HASH_LEN] = (uint8_t) rec->napps;
        memcpy(buf + SA_PACK_FRESH, &rec->fresh_until, 8);
    }

    off = SA_PACK_HEAD;

    if ((off = sa_pack_str(&rec->account, buf, size, off)) == 0
        || (off = sa_pack_str(&rec->name, buf, size, off)) == 0
        || (off = sa_pack_str(&rec->team, buf, size, off)) == 0
        || (!usual && (off = sa_pack_str(&rec->email, buf, size, off)) == 0))
    {
        return 0;
    }

    for (i = 0; i < rec->nscopes; i++) {
        if ((off = sa_pack_str(&rec->scopes[i], buf, size, off)) == 0) {
            return 0;
        }
    }

    for (i = 0; i < rec->napps; i++) {
        if ((off = sa_pack_str(&rec->apps[i], buf, size, off)) == 0) {
            return 0;
        }
    }

    if (flags & SA_PACK_POLICY) {
        off = sa_pack_policy(&rec->policy, buf, size, off);
    }

    return off;
}


/* walks the packed strings: their count and their bytes */
static void
sa_pack_walk(const uint8_t *packed, size_t *nstr, size_t *bytes)
{
    size_t   i, n, off;
    uint8_t  flags = packed[16 + SA_HASH_LEN];

    n = 3 + ((flags & SA_PACK_EMAIL) ? 1 : 0) + packed[17 + SA_HASH_LEN]
        + packed[18 + SA_HASH_LEN];

    *bytes = 0;

    for (i = 0, off = SA_PACK_HEAD; i < n; i++) {
        *bytes += packed[off];
        off += 1 + packed[off];
    }

    *nstr = n;
}


size_t
sa_token_record_unpacked_size(const uint8_t *packed)
{
    size_t          nstr, bytes, lists, email;
    const uint8_t  *account, *team;

    sa_pack_walk(packed, &nstr, &bytes);

    lists = packed[17 + SA_HASH_LEN] + packed[18 + SA_HASH_LEN];

    /* a derived email: account@team.sa.invalid, NUL-terminated */
    email = 0;
    if (!(packed[16 + SA_HASH_LEN] & SA_PACK_EMAIL)) {
        account = packed + SA_PACK_HEAD;
        team = account + 1 + account[0];
        team += 1 + team[0];                    /* past the name */
        email = account[0] + 1 + team[0] + sizeof(sa_email_domain);
    }

    /* strings NUL-terminated */
    return sizeof(sa_token_record_t) + lists * sizeof(sa_str_t) + bytes + nstr
           + email;
}


static const uint8_t *
sa_unpack_str(const uint8_t *p, sa_str_t *s, char **strings)
{
    s->len = p[0];
    s->data = *strings;
    memcpy(*strings, p + 1, s->len);
    (*strings)[s->len] = '\0';
    *strings += s->len + 1;

    return p + 1 + s->len;
}


sa_token_record_t *
sa_token_record_unpack(const uint8_t *packed, const char *id, void *dst)
{
    size_t              i, nscopes, napps;
    uint8_t             flags;
    const uint8_t      *p;
    char               *strings, *e;
    sa_token_record_t  *rec = dst;

    memset(rec, 0, sizeof(*rec));

    memcpy(&rec->version, packed, 8);
    memcpy(&rec->expires_at, packed + 8, 8);
    memcpy(rec->hash, packed + 16, SA_HASH_LEN);
    memcpy(&rec->fresh_until, packed + SA_PACK_FRESH, 8);
    flags = packed[16 + SA_HASH_LEN];
    nscopes = packed[17 + SA_HASH_LEN];
    napps = packed[18 + SA_HASH_LEN];

    memcpy(rec->id, id, SA_TOKEN_ID_LEN);
    rec->id[SA_TOKEN_ID_LEN] = '\0';
    rec->revoked = (flags & SA_PACK_REVOKED) ? 1 : 0;

    rec->scopes = (sa_str_t *) (rec + 1);
    rec->apps = rec->scopes + nscopes;
    rec->nscopes = nscopes;
    rec->napps = napps;
    strings = (char *) (rec->apps + napps);

    p = packed + SA_PACK_HEAD;
    p = sa_unpack_str(p, &rec->account, &strings);
    p = sa_unpack_str(p, &rec->name, &strings);
    p = sa_unpack_str(p, &rec->team, &strings);

    if (flags & SA_PACK_EMAIL) {
        p = sa_unpack_str(p, &rec->email, &strings);

    } else {
        e = strings;
        memcpy(e, rec->account.data, rec->account.len);
        e[rec->account.len] = '@';
        memcpy(e + rec->account.len + 1, rec->team.data, rec->team.len);
        memcpy(e + rec->account.len + 1 + rec->team.len, sa_email_domain,
               sizeof(sa_email_domain));
        rec->email.data = e;
        rec->email.len = rec->account.len + 1 + rec->team.len
                         + sizeof(sa_email_domain) - 1;
        strings += rec->email.len + 1;
    }

    for (i = 0; i < nscopes; i++) {
        p = sa_unpack_str(p, &rec->scopes[i], &strings);
    }

    for (i = 0; i < napps; i++) {
        p = sa_unpack_str(p, &rec->apps[i], &strings);
    }

    if (flags & SA_PACK_POLICY) {
        sa_unpack_policy(p, &rec->policy);
    }

    rec->size = (size_t) (strings - (char *) dst);

    return rec;
}
