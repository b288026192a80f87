/* Unit tests: signed envelopes and the token record codec. */

#include <stdlib.h>
#include <sodium.h>
#include <jansson.h>

#include "tap.h"
#include "sa_record.h"

#define S(lit)  { lit, sizeof(lit) - 1 }

static uint8_t  pk[SA_PUBLICKEY_LEN], sk[SA_SECRETKEY_LEN];


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


static sa_token_record_t
sample(void)
{
    static sa_str_t    scopes[] = { S("stacks:read"), S("deploy:*") };
    static sa_str_t    apps[] = { S("billing") };
    sa_token_record_t  rec;

    memset(&rec, 0, sizeof(rec));
    rec.version = 7;
    memcpy(rec.id, "AbCdEfGh01234567", SA_TOKEN_ID_LEN + 1);
    sa_token_hash((const unsigned char *) "sat_x", 5, rec.hash);
    rec.account = (sa_str_t) S("Acct0000000000001");
    rec.name = (sa_str_t) S("ci-deployer");
    rec.email = (sa_str_t) S("Acct0000000000001@platform.sa.invalid");
    rec.team = (sa_str_t) S("platform");
    rec.scopes = scopes;
    rec.nscopes = 2;
    rec.apps = apps;
    rec.napps = 1;
    rec.created_at = 1700000000;
    rec.expires_at = 1800000000;

    return rec;
}


static int
same_str(sa_str_t a, sa_str_t b)
{
    return a.len == b.len && memcmp(a.data, b.data, a.len) == 0
           && a.data[a.len] == '\0';
}


static int
same_record(const sa_token_record_t *a, const sa_token_record_t *b)
{
    return a->version == b->version && strcmp(a->id, b->id) == 0
           && memcmp(a->hash, b->hash, SA_HASH_LEN) == 0
           && same_str(a->account, b->account) && same_str(a->name, b->name)
           && same_str(a->email, b->email) && same_str(a->team, b->team)
           && a->nscopes == b->nscopes && a->napps == b->napps
           && same_str(a->scopes[0], b->scopes[0])
           && same_str(a->scopes[1], b->scopes[1])
           && same_str(a->apps[0], b->apps[0])
           && a->created_at == b->created_at && a->expires_at == b->expires_at
           && a->fresh_until == b->fresh_until && a->revoked == b->revoked;
}


static sa_rec_err_t
decode(const char *value, sa_token_record_t **out)
{
    return sa_token_record_decode(value, strlen(value), pk, heap_alloc, NULL,
                                  out);
}


static void
test_round_trip(void)
{
    sa_token_record_t   rec = sample(), *got = NULL, *copy;
    char               *value, *payload;
    void               *block;

    value = sa_token_record_encode(&rec, sk);
    ok(value != NULL && strncmp(value, "sa1.", 4) == 0, "record encodes");
    is_long(decode(value, &got), SA_REC_OK, "record decodes and verifies");
    ok(got != NULL && same_record(&rec, got), "decoded record is the same");

    payload = sa_token_record_json(&rec);
    ok(strstr(value, payload) != NULL && strstr(payload, "sat_x") == NULL,
       "payload is plain JSON and holds no token");
    ok(strstr(payload, "\"version\":7") != NULL, "payload carries the version");

    block = malloc(got->size);
    copy = sa_token_record_copy(block, got);
    memset(got, 0, got->size);
    free(got);
    ok(same_record(&rec, copy), "a copied block stands on its own");

    free(block);
    free(payload);
    free(value);
}


static void
test_tampering(void)
{
    sa_token_record_t   rec = sample(), *got;
    char               *value, *edited;
    size_t              i, len;
    int                 accepted = 0;
    uint8_t             pk2[SA_PUBLICKEY_LEN], sk2[SA_SECRETKEY_LEN];

    value = sa_token_record_encode(&rec, sk);
    len = strlen(value);

    /* every single-bit change in signature or payload is refused */
    for (i = SA_ENVELOPE_PREFIX_LEN; i < len; i++) {
        value[i] ^= 0x01;
        got = NULL;
        accepted += decode(value, &got) == SA_REC_OK;
        free(got);
        value[i] ^= 0x01;
    }
    is_long(accepted, 0, "no single-bit change of a record verifies");

    /* the attack that matters: widen the scopes in place */
    edited = strdup(value);
    memcpy(strstr(edited, "stacks:read"), "stacks:*   ", 11);
    is_long(decode(edited, &got), SA_REC_BAD_SIGNATURE,
            "a widened scope is refused as tampered");
    free(edited);

    crypto_sign_keypair(pk2, sk2);
    edited = sa_token_record_encode(&rec, sk2);
    is_long(decode(edited, &got), SA_REC_BAD_SIGNATURE,
            "a record signed with another key is refused");
    free(edited);

    value[len - 5] = '\0';
    is_long(decode(value, &got), SA_REC_BAD_SIGNATURE,
            "a truncated record is refused");
    free(value);

    is_long(decode("", &got), SA_REC_MALFORMED, "empty value is malformed");
    is_long(decode("{\"kind\":\"token\"}", &got), SA_REC_MALFORMED,
            "unsigned JSON is malformed");
    is_long(decode("sa1.abc.{}", &got), SA_REC_MALFORMED,
            "a short signature is malformed");
}


/* payloads that are correctly signed but not token records */
static void
test_invalid_payloads(void)
{
    static const char  *bad[] = {
        "not json",
        "[]",
        "{\"kind\":\"account\"}",
        /* field by field, each breaks one rule of a good record */
        "{\"kind\":\"token\",\"version\":0,%s}",
        "{\"kind\":\"tok\",\"version\":1,%s}",
        "{\"kind\":\"token\",\"version\":1,\"version\":2,%s}",
        "{\"kind\":\"token\",\"version\":\"1\",%s}",
    };
    static const char  *rest =
        "\"id\":\"AbCdEfGh01234567\",\"hash\":\"%s\",\"account\":\"a\","
        "\"name\":\"n\",\"email\":\"e\",\"team\":\"t\",\"scopes\":[%s],"
        "\"apps\":[%s],\"created_at\":1,\"expires_at\":%s,\"revoked\":%s";
    char                buf[1024], fields[768], *value;
    sa_token_record_t  *got;
    size_t              i;
    const char         *hash64 =
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

#define CHECK(scopes, apps, exp, rev, hash, want, name)                      \
    snprintf(fields, sizeof(fields), rest, hash, scopes, apps, exp, rev);    \
    snprintf(buf, sizeof(buf), "{\"kind\":\"token\",\"version\":1,%s}",      \
             fields);                                                        \
    value = sa_envelope_seal(buf, strlen(buf), sk);                          \
    got = NULL;                                                              \
    is_long(decode(value, &got), want, name);                                \
    free(got);                                                               \
    free(value)

    CHECK("\"a:b\"", "\"x\"", "0", "false", hash64, SA_REC_OK,
          "the reference payload is valid");
    CHECK("\"A:b\"", "\"x\"", "0", "false", hash64, SA_REC_INVALID,
          "a bad scope is invalid");
    CHECK("1", "\"x\"", "0", "false", hash64, SA_REC_INVALID,
          "a non-string scope is invalid");
    CHECK("\"a:b\"", "\"x y\"", "0", "false", hash64, SA_REC_INVALID,
          "a bad app name is invalid");
    CHECK("\"a:b\"", "\"x\"", "-1", "false", hash64, SA_REC_INVALID,
          "a negative expiry is invalid");
    CHECK("\"a:b\"", "\"x\"", "0", "1", hash64, SA_REC_INVALID,
          "a non-boolean revoked is invalid");
    CHECK("\"a:b\"", "\"x\"", "0", "false", "0011", SA_REC_INVALID,
          "a short hash is invalid");
    CHECK("", "", "0", "true", hash64, SA_REC_OK,
          "a revoked record with no scopes is valid");
#undef CHECK

    snprintf(fields, sizeof(fields), rest, hash64, "", "", "0", "false");
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), bad[i], fields);
        value = sa_envelope_seal(buf, strlen(buf), sk);
        got = NULL;
        ok(decode(value, &got) == SA_REC_INVALID,
           "signed but invalid payload %zu refused", i);
        free(got);
        free(value);
    }

    snprintf(buf, sizeof(buf), "{\"kind\":\"token\",\"version\":1,%s}", fields);
    value = sa_envelope_seal(buf, strlen(buf), sk);
    is_long(sa_token_record_decode(value, strlen(value), pk, no_alloc, NULL,
                                   &got), SA_REC_NOMEM,
            "allocation failure is reported, not a crash");
    free(value);
}


/* the digest tells envelopes apart by every byte, and only by their bytes */
static void
test_digest(void)
{
    char     env[] = "sa1.abc.{\"kind\":\"token\"}";
    uint8_t  d1[SA_DIGEST_LEN], d2[SA_DIGEST_LEN], want[SA_DIGEST_LEN];
    size_t   i, len = strlen(env);
    int      all_differ = 1;

    sa_envelope_digest(env, len, d1);
    sa_envelope_digest(env, len, d2);
    ok(memcmp(d1, d2, sizeof(d1)) == 0, "digest: the same bytes, the same digest");

    crypto_generichash(want, sizeof(want), (const unsigned char *) env, len,
                       NULL, 0);
    ok(memcmp(d1, want, sizeof(d1)) == 0, "digest: BLAKE2b-128 of the bytes");

    for (i = 0; i < len; i++) {
        env[i] ^= 1;
        sa_envelope_digest(env, len, d2);
        all_differ &= memcmp(d1, d2, sizeof(d1)) != 0;
        env[i] ^= 1;
    }
    ok(all_differ, "digest: every single-bit flip changes it");

    sa_envelope_digest(env, len - 1, d2);
    ok(memcmp(d1, d2, sizeof(d1)) != 0, "digest: a shorter envelope differs");
}


#define HASH_HEX "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"

/* packed for a gateway's cache, then unpacked: the same record (created_at
   is not packed: no gateway uses it) */
static int
same_packed(const sa_token_record_t *a, const sa_token_record_t *b)
{
    size_t  i;

    if (a->version != b->version || strcmp(a->id, b->id) != 0
        || memcmp(a->hash, b->hash, SA_HASH_LEN) != 0
        || !same_str(a->account, b->account) || !same_str(a->name, b->name)
        || !same_str(a->email, b->email) || !same_str(a->team, b->team)
        || a->nscopes != b->nscopes || a->napps != b->napps
        || a->expires_at != b->expires_at || a->revoked != b->revoked
        || a->fresh_until != b->fresh_until)
    {
        return 0;
    }
    for (i = 0; i < a->nscopes; i++) {
        if (!same_str(a->scopes[i], b->scopes[i])) {
            return 0;
        }
    }
    for (i = 0; i < a->napps; i++) {
        if (!same_str(a->apps[i], b->apps[i])) {
            return 0;
        }
    }
    return 1;
}


static void
test_pack_one(const char *fields, const char *what)
{
    char                buf[4096];
    uint8_t             packed[4096];
    size_t              need, size;
    sa_token_record_t  *rec = NULL, *back;
    void               *mem;

    snprintf(buf, sizeof(buf), "{\"kind\":\"token\",\"version\":7,%s}", fields);
    if (sa_token_record_parse(buf, strlen(buf), heap_alloc, NULL, &rec) != SA_REC_OK) {
        ok(0, "pack %s: parses", what);
        return;
    }

    need = sa_token_record_pack(rec, NULL, 0);
    ok(need > 0 && need < rec->size, "pack %s: %zu bytes packed, %zu unpacked",
       what, need, rec->size);
    ok(sa_token_record_pack(rec, packed, need) == need, "pack %s: fits", what);

    size = sa_token_record_unpacked_size(packed);
    mem = malloc(size);
    back = sa_token_record_unpack(packed, rec->id, mem);
    ok(same_packed(rec, back), "pack %s: unpacks to the same record", what);
    ok(back->size == size, "pack %s: exactly the size announced", what);

    free(mem);
    free(rec);
}


static void
test_pack(void)
{
    char                buf[2048], long_name[300];
    sa_token_record_t  *rec = NULL;

    test_pack_one(
        "\"id\":\"AbCdEfGhIjKlMnOp\",\"account\":\"7GkQ2mZx9PbW1cRt\","
        "\"name\":\"ci\",\"team\":\"platform\","
        "\"email\":\"7GkQ2mZx9PbW1cRt@platform.sa.invalid\","
        "\"hash\":\"" HASH_HEX "\",\"scopes\":[\"a:b\",\"c:*\"],"
        "\"apps\":[\"x\"],\"created_at\":1,\"expires_at\":99,"
        "\"revoked\":false", "the usual email");
    test_pack_one(
        "\"id\":\"AbCdEfGhIjKlMnOp\",\"account\":\"7GkQ2mZx9PbW1cRt\","
        "\"name\":\"ci\",\"team\":\"platform\","
        "\"email\":\"someone@example.org\","
        "\"hash\":\"" HASH_HEX "\",\"scopes\":[],"
        "\"apps\":[],\"created_at\":1,\"expires_at\":0,"
        "\"revoked\":true", "another email, no scopes, revoked");
    test_pack_one(
        "\"id\":\"AbCdEfGhIjKlMnOp\",\"account\":\"7GkQ2mZx9PbW1cRt\","
        "\"name\":\"ci\",\"team\":\"platform\","
        "\"email\":\"7GkQ2mZx9PbW1cRt@platform.sa.invalid\","
        "\"hash\":\"" HASH_HEX "\",\"scopes\":[\"a:b\"],"
        "\"apps\":[],\"created_at\":1,\"expires_at\":0,"
        "\"fresh_until\":1764280000,\"revoked\":false", "with fresh_until");

    memset(long_name, 'n', 256);
    long_name[256] = '\0';
    snprintf(buf, sizeof(buf), "{\"kind\":\"token\",\"version\":1,"
             "\"id\":\"AbCdEfGhIjKlMnOp\",\"account\":\"7GkQ2mZx9PbW1cRt\","
             "\"name\":\"%s\",\"team\":\"platform\","
             "\"email\":\"7GkQ2mZx9PbW1cRt@platform.sa.invalid\","
             "\"hash\":\"" HASH_HEX "\",\"scopes\":[],\"apps\":[],"
             "\"created_at\":1,\"expires_at\":0,\"revoked\":false}",
             long_name);
    if (sa_token_record_parse(buf, strlen(buf), heap_alloc, NULL, &rec) == SA_REC_OK) {
        ok(sa_token_record_pack(rec, NULL, 0) == 0,
           "pack: a 256-byte string does not pack (not cached)");
        free(rec);
    } else {
        ok(1, "pack: a 256-byte name is refused by the parser already");
    }
}


/* a record of kind sealed from JSON text, decoded back as kind and id */
static sa_rec_err_t
kind_decode(const char *json, sa_kind_t kind, const char *id)
{
    json_t        *j, *out = NULL;
    char          *sealed;
    sa_rec_err_t   rc;

    j = json_loads(json, 0, NULL);
    if (j == NULL) {
        return SA_REC_NOMEM;
    }
    sealed = sa_record_encode(j, sk);
    json_decref(j);

    rc = sa_record_decode(sealed, strlen(sealed), pk, kind, id, &out);
    json_decref(out);
    free(sealed);

    return rc;
}


/* fresh_until: optional, signed, kept through every codec */
static void
test_fresh_until(void)
{
    sa_token_record_t   rec = sample(), *got = NULL;
    char               *value, *payload, buf[1024], name[100];
    size_t              i;
    json_t             *j;
    static const char  *bad[] = { "0", "-5", "\"1764280000\"", "1.5",
                                  "true", "null" };
    static const char  *fields =
        "\"id\":\"AbCdEfGh01234567\",\"hash\":\"" HASH_HEX "\","
        "\"account\":\"a\",\"name\":\"n\",\"email\":\"e\",\"team\":\"t\","
        "\"scopes\":[],\"apps\":[],\"created_at\":1,\"expires_at\":0,"
        "\"revoked\":false";

    payload = sa_token_record_json(&rec);
    ok(payload != NULL && strstr(payload, "fresh_until") == NULL,
       "fresh_until: a record without it encodes as before (no field)");
    free(payload);

    value = sa_token_record_encode(&rec, sk);
    is_long(decode(value, &got), SA_REC_OK, "fresh_until: absent is valid");
    ok(got != NULL && got->fresh_until == 0, "fresh_until: absent reads 0");
    free(got);
    free(value);

    rec.fresh_until = 1764280000;
    payload = sa_token_record_json(&rec);
    ok(payload != NULL
       && strstr(payload, "\"expires_at\":1800000000,"
                          "\"fresh_until\":1764280000,\"hash\"") != NULL,
       "fresh_until: in the payload, in sorted order");
    free(payload);

    got = NULL;
    value = sa_token_record_encode(&rec, sk);
    is_long(decode(value, &got), SA_REC_OK, "fresh_until: the record verifies");
    ok(got != NULL && got->fresh_until == 1764280000 && same_record(&rec, got),
       "fresh_until: decoded as signed");
    free(got);

    /* it is under the signature: moving it forward is tampering */
    memcpy(strstr(value, "1764280000"), "1864280000", 10);
    got = NULL;
    is_long(decode(value, &got), SA_REC_BAD_SIGNATURE,
            "fresh_until: pushed later by a writer, refused as tampered");
    free(value);

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(buf, sizeof(buf), "{\"kind\":\"token\",\"version\":1,%s,"
                 "\"fresh_until\":%s}", fields, bad[i]);
        value = sa_envelope_seal(buf, strlen(buf), sk);
        got = NULL;
        snprintf(name, sizeof(name), "fresh_until: %s is invalid", bad[i]);
        is_long(decode(value, &got), SA_REC_INVALID, name);
        free(got);
        free(value);

        /* sa-admin's generic check agrees */
        j = json_loads(buf, 0, NULL);
        snprintf(name, sizeof(name), "fresh_until: %s fails the kind check",
                 bad[i]);
        is_long(sa_record_check(j, SA_KIND_TOKEN, "AbCdEfGh01234567"),
                SA_REC_INVALID, name);
        json_decref(j);
    }

    snprintf(buf, sizeof(buf), "{\"kind\":\"token\",\"version\":1,%s,"
             "\"fresh_until\":9}", fields);
    j = json_loads(buf, 0, NULL);
    is_long(sa_record_check(j, SA_KIND_TOKEN, "AbCdEfGh01234567"), SA_REC_OK,
            "fresh_until: a positive integer passes the kind check");
    json_decref(j);
}


static void
test_kinds(void)
{
    static const struct {
        const char  *json;
        sa_kind_t    kind;
        const char  *id;
        int          good;
        const char  *what;
    } cases[] = {
        { "{\"kind\":\"team\",\"id\":\"plat\",\"owner\":\"alice\","
          "\"version\":1}", SA_KIND_TEAM, "plat", 1, "team: valid" },
        { "{\"kind\":\"team\",\"id\":\"plat\",\"owner\":\"alice\","
          "\"version\":1}", SA_KIND_TEAM, "bobs", 0,
          "team: a genuine record stored under another team's key" },
        { "{\"kind\":\"team\",\"id\":\"plat\",\"owner\":\"alice\","
          "\"version\":1}", SA_KIND_APP, "plat", 0,
          "team: never passes for an application" },
        { "{\"kind\":\"team\",\"id\":\"plat\",\"owner\":\"\","
          "\"version\":1}", SA_KIND_TEAM, "plat", 0, "team: no owner" },
        { "{\"kind\":\"team\",\"id\":\"plat\",\"owner\":\"alice\","
          "\"version\":0}", SA_KIND_TEAM, "plat", 0, "team: version 0" },
        { "{\"kind\":\"member\",\"id\":\"plat/carol\",\"team\":\"plat\","
          "\"user\":\"carol\",\"perms\":[\"service_accounts:tokens\"],"
          "\"version\":2}", SA_KIND_MEMBER, "plat/carol", 1,
          "member: valid" },
        { "{\"kind\":\"member\",\"id\":\"plat/carol\",\"team\":\"plat\","
          "\"user\":\"carol\",\"perms\":[],\"version\":2}",
          SA_KIND_MEMBER, "plat/mallory", 0,
          "member: carol's record under mallory's field" },
        { "{\"kind\":\"member\",\"id\":\"plat/carol\",\"team\":\"ops\","
          "\"user\":\"carol\",\"perms\":[],\"version\":2}",
          SA_KIND_MEMBER, "plat/carol", 0,
          "member: an id that disagrees with its team" },
        { "{\"kind\":\"member\",\"id\":\"plat/carol\",\"team\":\"plat\","
          "\"user\":\"carol\",\"perms\":[\"root\"],\"version\":2}",
          SA_KIND_MEMBER, "plat/carol", 0, "member: an unknown permission" },
        { "{\"kind\":\"member\",\"id\":\"plat/carol\",\"team\":\"plat\","
          "\"user\":\"carol\",\"perms\":\"service_accounts:tokens\","
          "\"version\":2}", SA_KIND_MEMBER, "plat/carol", 0,
          "member: perms not a list" },
        { "{\"kind\":\"app\",\"id\":\"billing\",\"team\":\"plat\","
          "\"shared\":[\"ops\"],\"version\":1}", SA_KIND_APP, "billing", 1,
          "app: valid" },
        { "{\"kind\":\"app\",\"id\":\"*\",\"team\":\"plat\","
          "\"shared\":[],\"version\":1}", SA_KIND_APP, "*", 0,
          "app: '*' is no application" },
        { "{\"kind\":\"app\",\"id\":\"billing\",\"team\":\"plat\","
          "\"version\":1}", SA_KIND_APP, "billing", 0, "app: no shared list" },
        { "{\"kind\":\"account\",\"id\":\"A1\",\"team\":\"plat\","
          "\"name\":\"ci\",\"email\":\"A1@plat.sa.invalid\","
          "\"apps\":[\"billing\"],\"version\":3}", SA_KIND_ACCOUNT, "A1", 1,
          "account: valid" },
        { "{\"kind\":\"account\",\"id\":\"A1\",\"team\":\"plat\","
          "\"name\":\"ci\",\"email\":\"A1@plat.sa.invalid\","
          "\"apps\":[\"bad app\"],\"version\":3}", SA_KIND_ACCOUNT, "A1", 0,
          "account: an invalid application name" },
        { "{\"kind\":\"ptoken\",\"id\":\"Xb41Lr0qPz8sT2Kd\",\"user\":\"alice\",\"hash\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"created_at\":1764190000,\"expires_at\":1771966000,\"revoked\":false,\"version\":1}",
          SA_KIND_PTOKEN, "Xb41Lr0qPz8sT2Kd", 1,
          "ptoken: valid" },
        { "{\"kind\":\"ptoken\",\"id\":\"Xb41Lr0qPz8sT2Kd\",\"user\":\"alice\",\"hash\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"created_at\":1764190000,\"expires_at\":0,\"revoked\":true,\"version\":1}",
          SA_KIND_PTOKEN, "Xb41Lr0qPz8sT2Kd", 1,
          "ptoken: revoked, never expiring" },
        { "{\"kind\":\"ptoken\",\"id\":\"Xb41Lr0qPz8sT2Kd\",\"user\":\"alice\",\"hash\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"created_at\":1764190000,\"expires_at\":1771966000,\"revoked\":false,\"version\":1}",
          SA_KIND_PTOKEN, "Yb41Lr0qPz8sT2Kd", 0,
          "ptoken: a genuine record under another token's key" },
        { "{\"kind\":\"ptoken\",\"id\":\"Xb41Lr0qPz8sT2Kd\",\"user\":\"alice\",\"hash\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"created_at\":1764190000,\"expires_at\":1771966000,\"revoked\":false,\"version\":1}",
          SA_KIND_TOKEN, "Xb41Lr0qPz8sT2Kd", 0,
          "ptoken: never passes for a service account's token" },
        { "{\"kind\":\"ptoken\",\"id\":\"short\",\"user\":\"alice\",\"hash\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"created_at\":1764190000,\"expires_at\":1771966000,\"revoked\":false,\"version\":1}",
          SA_KIND_PTOKEN, "short", 0,
          "ptoken: not a token id" },
        { "{\"kind\":\"ptoken\",\"id\":\"Xb41Lr0qPz8sT2Kd\",\"user\":\"\",\"hash\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"created_at\":1764190000,\"expires_at\":1771966000,\"revoked\":false,\"version\":1}",
          SA_KIND_PTOKEN, "Xb41Lr0qPz8sT2Kd", 0,
          "ptoken: no user" },
        { "{\"kind\":\"ptoken\",\"id\":\"Xb41Lr0qPz8sT2Kd\",\"user\":\"alice\",\"hash\":\"0123\",\"created_at\":1764190000,\"expires_at\":1771966000,\"revoked\":false,\"version\":1}",
          SA_KIND_PTOKEN, "Xb41Lr0qPz8sT2Kd", 0,
          "ptoken: a short hash" },
        { "{\"kind\":\"ptoken\",\"id\":\"Xb41Lr0qPz8sT2Kd\",\"user\":\"alice\",\"hash\":\"g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"created_at\":1764190000,\"expires_at\":1771966000,\"revoked\":false,\"version\":1}",
          SA_KIND_PTOKEN, "Xb41Lr0qPz8sT2Kd", 0,
          "ptoken: a hash not hex" },
        { "{\"kind\":\"ptoken\",\"id\":\"Xb41Lr0qPz8sT2Kd\",\"user\":\"alice\",\"hash\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"created_at\":1764190000,\"expires_at\":-5,\"revoked\":false,\"version\":1}",
          SA_KIND_PTOKEN, "Xb41Lr0qPz8sT2Kd", 0,
          "ptoken: a negative expiry" },
        { "{\"kind\":\"ptoken\",\"id\":\"Xb41Lr0qPz8sT2Kd\",\"user\":\"alice\",\"hash\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"created_at\":1764190000,\"expires_at\":1771966000,\"revoked\":0,\"version\":1}",
          SA_KIND_PTOKEN, "Xb41Lr0qPz8sT2Kd", 0,
          "ptoken: revoked not a boolean" },
        { "{\"kind\":\"ptoken\",\"id\":\"Xb41Lr0qPz8sT2Kd\",\"user\":\"alice\",\"hash\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\",\"created_at\":\"now\",\"expires_at\":1771966000,\"revoked\":false,\"version\":1}",
          SA_KIND_PTOKEN, "Xb41Lr0qPz8sT2Kd", 0,
          "ptoken: created_at not a number" },
    };
    size_t         i;
    json_t        *j, *out;
    char          *sealed;
    sa_rec_err_t   rc;

    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        rc = kind_decode(cases[i].json, cases[i].kind, cases[i].id);
        is_long(rc, cases[i].good ? SA_REC_OK : SA_REC_INVALID,
                cases[i].what);
    }

    /* one changed byte of a sealed member record: refused as tampered */
    j = json_loads("{\"kind\":\"member\",\"id\":\"plat/carol\","
                   "\"team\":\"plat\",\"user\":\"carol\",\"perms\":[],"
                   "\"version\":1}", 0, NULL);
    sealed = sa_record_encode(j, sk);
    json_decref(j);
    ok(sealed != NULL && strstr(sealed, "\"perms\":[]") != NULL,
       "encode: sorted compact JSON behind the envelope");
    sealed[strlen(sealed) - 3] ^= 1;
    out = NULL;
    rc = sa_record_decode(sealed, strlen(sealed), pk, SA_KIND_MEMBER,
                          "plat/carol", &out);
    is_long(rc, SA_REC_BAD_SIGNATURE, "member: a changed byte is tampering");
    ok(out == NULL, "member: nothing decoded from a tampered record");
    free(sealed);

    /* plain text where a record belongs (HSET ... members carol perms) */
    rc = sa_record_decode("service_accounts:tokens", 23, pk, SA_KIND_MEMBER,
                          "plat/carol", &out);
    is_long(rc, SA_REC_MALFORMED, "member: plain text is no record");

    is_str(sa_kind_name(SA_KIND_APP), "app", "kinds have names");
    is_str(sa_kind_name(SA_KIND_PTOKEN), "ptoken", "personal tokens too");
}


int
main(void)
{
    if (sodium_init() < 0) {
        printf("Bail out! libsodium init failed\n");
        return 1;
    }

    crypto_sign_keypair(pk, sk);

    test_round_trip();
    test_tampering();
    test_invalid_payloads();
    test_digest();
    test_pack();
    test_fresh_until();
    test_kinds();

    is_str(sa_rec_strerror(SA_REC_BAD_SIGNATURE), "signature does not verify",
           "errors have readable names");

    return done_testing();
}
