/*
 * Signed envelopes and the token record codec.
 *
 * The first byte picks a mode, the rest is the input:
 *
 *   0  the bytes as a Redis value: sa_envelope_open() + sa_token_record_decode()
 *      with the fixed test verify key (what a gateway does with a GET reply)
 *   1  the bytes as a payload, sealed with the fixed test signing key, then
 *      decoded: the signature passes, so the JSON parser and validator
 *      behind it are reached through the real entry point
 *   2  the bytes as a payload, straight into sa_token_record_parse()
 *   3  as 2, and again with an allocator that fails: never SA_REC_OK, and
 *      SA_REC_NOMEM exactly when the parse with memory succeeds
 *
 * Every decoded record is checked: the block is exactly rec->size bytes
 * (an exact-size malloc, so ASan sees any write past it), every string and
 * array lies inside it and strings are NUL-terminated there; the sizes add
 * up; scopes and apps are valid; sa_token_record_copy() into a fresh buffer
 * gives equal fields that live in the new block, even after the original is
 * wiped and freed; sa_token_record_json() of the copy parses back to the
 * same record and re-encodes to the same text; in mode 1 the record also
 * round-trips through sa_token_record_encode() and decode.
 */

#include "fuzz.h"
#include "sa_record.h"


static void *
heap_alloc(void *ctx, size_t size)
{
    (void) ctx;
    return malloc(size);
}


static void *
no_alloc(void *ctx, size_t size)
{
    (void) ctx;
    (void) size;
    return NULL;
}


static int
in_block(const sa_token_record_t *rec, const void *p, size_t len)
{
    const char  *b = (const char *) rec, *q = p;

    return q >= b + sizeof(*rec) && len <= rec->size
           && q <= b + rec->size - len;
}


static size_t
check_str(const sa_token_record_t *rec, const sa_str_t *s)
{
    FUZZ_ASSERT(s->data != NULL);
    FUZZ_ASSERT(in_block(rec, s->data, s->len + 1));
    FUZZ_ASSERT(s->data[s->len] == '\0');
    /* jansson refuses \u0000 without JSON_ALLOW_NUL */
    FUZZ_ASSERT(memchr(s->data, '\0', s->len) == NULL);

    return s->len + 1;
}


static void
check_record(const sa_token_record_t *rec)
{
    size_t  i, used;

    FUZZ_ASSERT(rec->size >= sizeof(*rec));
    FUZZ_ASSERT(rec->version > 0 && rec->version <= (uint64_t) INT64_MAX);
    FUZZ_ASSERT(rec->created_at >= 0 && rec->expires_at >= 0
                && rec->fresh_until >= 0);
    FUZZ_ASSERT(rec->revoked == 0 || rec->revoked == 1);
    FUZZ_ASSERT(rec->id[SA_TOKEN_ID_LEN] == '\0'
                && strlen(rec->id) == SA_TOKEN_ID_LEN
                && sa_token_id_valid(rec->id, SA_TOKEN_ID_LEN));

    used = sizeof(*rec);

    FUZZ_ASSERT(rec->nscopes == 0
                || in_block(rec, rec->scopes,
                            rec->nscopes * sizeof(sa_str_t)));
    FUZZ_ASSERT(rec->napps == 0
                || in_block(rec, rec->apps, rec->napps * sizeof(sa_str_t)));
    used += (rec->nscopes + rec->napps) * sizeof(sa_str_t);

    for (i = 0; i < rec->nscopes; i++) {
        used += check_str(rec, &rec->scopes[i]);
        FUZZ_ASSERT(sa_scope_valid_granted(rec->scopes[i].data,
                                           rec->scopes[i].len));
    }

    for (i = 0; i < rec->napps; i++) {
        used += check_str(rec, &rec->apps[i]);
        FUZZ_ASSERT(sa_app_valid(rec->apps[i].data, rec->apps[i].len));
    }

    used += check_str(rec, &rec->account);
    used += check_str(rec, &rec->name);
    used += check_str(rec, &rec->email);
    used += check_str(rec, &rec->team);

    /* the block holds exactly the record, nothing overlaps or is missing */
    FUZZ_ASSERT(used == rec->size);
}


static int
same_str(const sa_str_t *a, const sa_str_t *b)
{
    return a->len == b->len && memcmp(a->data, b->data, a->len) == 0;
}


static int
same_record(const sa_token_record_t *a, const sa_token_record_t *b)
{
    size_t  i;

    if (a->version != b->version || strcmp(a->id, b->id) != 0
        || memcmp(a->hash, b->hash, SA_HASH_LEN) != 0
        || !same_str(&a->account, &b->account)
        || !same_str(&a->name, &b->name) || !same_str(&a->email, &b->email)
        || !same_str(&a->team, &b->team) || a->nscopes != b->nscopes
        || a->napps != b->napps || a->created_at != b->created_at
        || a->expires_at != b->expires_at || a->revoked != b->revoked
        || a->fresh_until != b->fresh_until
        || a->size != b->size)
    {
        return 0;
    }

    for (i = 0; i < a->nscopes; i++) {
        if (!same_str(&a->scopes[i], &b->scopes[i])) {
            return 0;
        }
    }

    for (i = 0; i < a->napps; i++) {
        if (!same_str(&a->apps[i], &b->apps[i])) {
            return 0;
        }
    }

    return 1;
}


/* takes ownership of rec */
static void
check_decoded(sa_token_record_t *rec, int sealed)
{
    sa_token_record_t  *copy, *again = NULL, *again2 = NULL;
    void               *block;
    char               *json, *json2, *value;
    sa_rec_err_t        rc;

    check_record(rec);

    /* copy into a fresh block; the copy must not point into the original */
    block = malloc(rec->size);
    FUZZ_ASSERT(block != NULL);
    copy = sa_token_record_copy(block, rec);
    FUZZ_ASSERT(copy == block);
    check_record(copy);
    FUZZ_ASSERT(same_record(rec, copy));

    memset(rec, 0xA5, rec->size);
    free(rec);

    check_record(copy);

    /* re-encode and parse again: the same record, the same text */
    json = sa_token_record_json(copy);
    FUZZ_ASSERT(json != NULL);
    rc = sa_token_record_parse(json, strlen(json), heap_alloc, NULL, &again);
    if (rc != SA_REC_OK) {
        fprintf(stderr, "re-encoded record does not parse (%s): %s\n",
                sa_rec_strerror(rc), json);
    }
    FUZZ_ASSERT(rc == SA_REC_OK);
    check_record(again);
    FUZZ_ASSERT(same_record(copy, again));

    json2 = sa_token_record_json(again);
    FUZZ_ASSERT(json2 != NULL && strcmp(json, json2) == 0);

    if (sealed) {
        value = sa_token_record_encode(copy, fuzz_sk);
        FUZZ_ASSERT(value != NULL);
        FUZZ_ASSERT(strlen(value) == SA_ENVELOPE_HEAD_LEN + strlen(json)
                    && strcmp(value + SA_ENVELOPE_HEAD_LEN, json) == 0);
        rc = sa_token_record_decode(value, strlen(value), fuzz_pk,
                                    heap_alloc, NULL, &again2);
        FUZZ_ASSERT(rc == SA_REC_OK && same_record(copy, again2));
        free(again2);
        free(value);
    }

    free(json2);
    free(json);
    free(again);
    free(block);
}


static void
mode_envelope(const char *value, size_t len)
{
    const char         *payload = NULL;
    size_t              plen = 0;
    sa_rec_err_t        rc, rc2;
    sa_token_record_t  *rec = NULL;
    char               *resealed;

    rc = sa_envelope_open(value, len, fuzz_pk, &payload, &plen);
    FUZZ_ASSERT(rc == SA_REC_OK || rc == SA_REC_MALFORMED
                || rc == SA_REC_BAD_SIGNATURE);

    if (rc == SA_REC_OK) {
        FUZZ_ASSERT(payload == value + SA_ENVELOPE_HEAD_LEN
                    && plen == len - SA_ENVELOPE_HEAD_LEN);

        /* Ed25519 is deterministic: a verified envelope is what seal makes */
        resealed = sa_envelope_seal(payload, plen, fuzz_sk);
        FUZZ_ASSERT(resealed != NULL);
        if (memcmp(resealed, value, len) != 0) {
            fprintf(stderr, "verified envelope differs from its reseal:\n"
                    "  got  %.*s\n  want %.*s\n", (int) SA_ENVELOPE_HEAD_LEN,
                    value, (int) SA_ENVELOPE_HEAD_LEN, resealed);
        }
        FUZZ_ASSERT(memcmp(resealed, value, len) == 0);
        free(resealed);
    }

    rc2 = sa_token_record_decode(value, len, fuzz_pk, heap_alloc, NULL, &rec);
    FUZZ_ASSERT(rc == SA_REC_OK ? rc2 != SA_REC_MALFORMED
                                  && rc2 != SA_REC_BAD_SIGNATURE
                                : rc2 == rc);

    if (rc2 == SA_REC_OK) {
        check_decoded(rec, 0);
    }
}


static void
mode_sealed(const char *payload, size_t len)
{
    char               *value;
    sa_token_record_t  *rec = NULL;
    sa_rec_err_t        rc;
    const char         *p;
    size_t              plen;

    value = sa_envelope_seal(payload, len, fuzz_sk);
    FUZZ_ASSERT(value != NULL);

    rc = sa_envelope_open(value, SA_ENVELOPE_HEAD_LEN + len, fuzz_pk, &p,
                          &plen);
    if (len == 0 || SA_ENVELOPE_HEAD_LEN + len > SA_RECORD_MAX_LEN) {
        FUZZ_ASSERT(rc == SA_REC_MALFORMED);
    } else {
        FUZZ_ASSERT(rc == SA_REC_OK && plen == len
                    && memcmp(p, payload, len) == 0);
    }

    rc = sa_token_record_decode(value, SA_ENVELOPE_HEAD_LEN + len, fuzz_pk,
                                heap_alloc, NULL, &rec);
    FUZZ_ASSERT(rc != SA_REC_BAD_SIGNATURE && rc != SA_REC_NOMEM);

    if (rc == SA_REC_OK) {
        check_decoded(rec, 1);
    }

    /* one flipped payload byte breaks the signature */
    if (len > 0 && SA_ENVELOPE_HEAD_LEN + len <= SA_RECORD_MAX_LEN) {
        value[SA_ENVELOPE_HEAD_LEN + (payload[0] & 0xff) % len] ^= 0x01;
        rec = NULL;
        FUZZ_ASSERT(sa_token_record_decode(value, SA_ENVELOPE_HEAD_LEN + len,
                                           fuzz_pk, heap_alloc, NULL, &rec)
                    == SA_REC_BAD_SIGNATURE && rec == NULL);
    }

    free(value);
}


static void
mode_parse(const char *payload, size_t len, int with_failing_alloc)
{
    sa_token_record_t  *rec = NULL, *none = NULL;
    sa_rec_err_t        rc, rc2;

    rc = sa_token_record_parse(payload, len, heap_alloc, NULL, &rec);
    FUZZ_ASSERT(rc == SA_REC_OK || rc == SA_REC_INVALID);

    if (with_failing_alloc) {
        rc2 = sa_token_record_parse(payload, len, no_alloc, NULL, &none);
        FUZZ_ASSERT(none == NULL);
        FUZZ_ASSERT(rc2 == (rc == SA_REC_OK ? SA_REC_NOMEM : SA_REC_INVALID));
    }

    if (rc == SA_REC_OK) {
        check_decoded(rec, 0);
    }
}


FUZZ_INIT_TEST_KEYS()


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char  *in;
    size_t       len;

    if (size == 0) {
        return 0;
    }

    in = (const char *) data + 1;
    len = size - 1;

    FUZZ_ASSERT(sa_rec_strerror((sa_rec_err_t) (data[0] % 6)) != NULL);

    switch (data[0] & 3) {
    case 0:
        mode_envelope(in, len);
        break;
    case 1:
        mode_sealed(in, len);
        break;
    case 2:
        mode_parse(in, len, 0);
        break;
    default:
        mode_parse(in, len, 1);
        break;
    }

    return 0;
}
