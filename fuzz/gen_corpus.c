/*
 * Writes the seed corpora of the fuzz targets (not a fuzz target itself):
 *
 *   cc -Icore -Iadmin-tool fuzz/gen_corpus.c core/sa_*.c -lsodium -ljansson \
 *       -o build/gen_corpus && build/gen_corpus fuzz/corpus
 *
 * Tokens are fresh from sa_token_generate(), records are sealed with the
 * fixed TEST key of fuzz.h, so the fuzz targets can verify them.  Files are
 * named seed-*; re-running replaces the tokens (they are random) but not
 * what the fuzzers added (other names).
 */

#include <errno.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "sa_record.h"

static const char  *out_dir;
static unsigned     nfile;


static void
put(const char *target, const char *name, const void *data, size_t len)
{
    char   path[1024];
    FILE  *f;

    snprintf(path, sizeof(path), "%s/%s", out_dir, target);
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        perror(path);
        exit(1);
    }

    snprintf(path, sizeof(path), "%s/%s/seed-%s", out_dir, target, name);
    f = fopen(path, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    nfile++;
}


static void
puts_(const char *target, const char *name, const char *s)
{
    put(target, name, s, strlen(s));
}


/* mode byte + data, for fuzz_record */
static void
put_mode(const char *name, char mode, const char *s, size_t len)
{
    char  *buf = malloc(len + 1);

    buf[0] = mode;
    memcpy(buf + 1, s, len);
    put("fuzz_record", name, buf, len + 1);
    free(buf);
}


static void
tokens(void)
{
    char   tok[SA_TOKEN_LEN + 1], buf[256], name[64];
    int    i;

    for (i = 0; i < 4; i++) {
        sa_token_generate(tok);
        snprintf(name, sizeof(name), "bearer-%d", i);
        snprintf(buf, sizeof(buf), "%s %s",
                 (const char *[]) { "Bearer", "bearer", "BEARER", "bEaReR" }[i],
                 tok);
        puts_("fuzz_token", name, buf);
    }

    sa_token_generate(tok);
    snprintf(buf, sizeof(buf), " \tBearer\t  %s \t ", tok);
    puts_("fuzz_token", "blanks", buf);
    puts_("fuzz_token", "bare-token", tok);

    snprintf(buf, sizeof(buf), "Bearer %s", tok);
    buf[strlen(buf) - 1] = buf[strlen(buf) - 1] == 'A' ? 'B' : 'A';
    puts_("fuzz_token", "bad-check", buf);

    snprintf(buf, sizeof(buf), "Bearer %.*s", SA_TOKEN_LEN - 1, tok);
    puts_("fuzz_token", "short", buf);
    snprintf(buf, sizeof(buf), "Bearer %s %s", tok, tok);
    puts_("fuzz_token", "two-credentials", buf);
    snprintf(buf, sizeof(buf), "Bearer sat-%s", tok + 4);
    puts_("fuzz_token", "bad-prefix", buf);
    snprintf(buf, sizeof(buf), "Bearer %s", tok);
    buf[7 + 10] = '+';
    puts_("fuzz_token", "bad-alphabet", buf);

    puts_("fuzz_token", "basic", "Basic dXNlcjpwYXNz");
    puts_("fuzz_token", "bearer-only", "Bearer");
    puts_("fuzz_token", "bearer-blank", "Bearer   ");
    puts_("fuzz_token", "empty", "");
    puts_("fuzz_token", "generate", "G");
}


static sa_token_record_t
sample(void)
{
    static sa_str_t    scopes[] = { { "stacks:read", 11 }, { "deploy:*", 8 } };
    static sa_str_t    apps[] = { { "billing", 7 } };
    sa_token_record_t  rec;

    memset(&rec, 0, sizeof(rec));
    rec.version = 7;
    memcpy(rec.id, "AbCdEfGh01234567", SA_TOKEN_ID_LEN + 1);
    sa_token_hash((const unsigned char *) "sat_x", 5, rec.hash);
    rec.account = (sa_str_t) { "Acct000000000001", 16 };
    rec.name = (sa_str_t) { "ci-deployer", 11 };
    rec.email = (sa_str_t) { "Acct000000000001@platform.sa.invalid", 36 };
    rec.team = (sa_str_t) { "platform", 8 };
    rec.scopes = scopes;
    rec.nscopes = 2;
    rec.apps = apps;
    rec.napps = 1;
    rec.created_at = 1764190000;
    rec.expires_at = 1771966000;

    return rec;
}


static void
records(void)
{
    static const char  *payloads[][2] = {
        { "revoked-empty",
          "{\"account\":\"a\",\"apps\":[],\"created_at\":1,\"email\":\"e\","
          "\"expires_at\":0,\"hash\":\"00112233445566778899aabbccddeeff"
          "00112233445566778899aabbccddeeff\",\"id\":\"AbCdEfGh01234567\","
          "\"kind\":\"token\",\"name\":\"n\",\"revoked\":true,\"scopes\":[],"
          "\"team\":\"t\",\"version\":1}" },
        { "star",
          "{\"kind\":\"token\",\"version\":9007199254740993,"
          "\"id\":\"zzzzzzzzzzzzzzzz\",\"hash\":\"FFEEDDCCBBAA99887766554433221100"
          "ffeeddccbbaa99887766554433221100\",\"account\":\"\",\"name\":"
          "\"\\u00e9\\ud83d\\ude00 \\\"q\\\" \\\\ \\/\",\"email\":\"x@y\","
          "\"team\":\"t\",\"scopes\":[\"*\",\"a:*\",\"a.b-c_d:e.f\"],"
          "\"apps\":[\"*\",\"A-b_c.9\"],\"created_at\":0,\"expires_at\":"
          "9223372036854775807,\"revoked\":false,\"extra\":[1,{\"n\":null}]}" },
        { "bad-kind",
          "{\"kind\":\"account\",\"version\":1,\"id\":\"AbCdEfGh01234567\"}" },
        { "dup-key",
          "{\"kind\":\"token\",\"kind\":\"token\",\"version\":1}" },
        { "bad-scope",
          "{\"account\":\"a\",\"apps\":[\"x\"],\"created_at\":1,\"email\":\"e\","
          "\"expires_at\":0,\"hash\":\"00112233445566778899aabbccddeeff"
          "00112233445566778899aabbccddeeff\",\"id\":\"AbCdEfGh01234567\","
          "\"kind\":\"token\",\"name\":\"n\",\"revoked\":false,\"scopes\":"
          "[\"A:b\"],\"team\":\"t\",\"version\":1}" },
        { "neg-expiry",
          "{\"account\":\"a\",\"apps\":[\"x\"],\"created_at\":1,\"email\":\"e\","
          "\"expires_at\":-1,\"hash\":\"00112233445566778899aabbccddeeff"
          "00112233445566778899aabbccddeeff\",\"id\":\"AbCdEfGh01234567\","
          "\"kind\":\"token\",\"name\":\"n\",\"revoked\":false,\"scopes\":"
          "[\"a:b\"],\"team\":\"t\",\"version\":1}" },
        { "not-json", "sa1.not json at all" },
    };
    /* a valid payload, key by key */
    static const char  *ref[][2] = {
        { "kind", "\"token\"" }, { "version", "1" },
        { "id", "\"AbCdEfGh01234567\"" },
        { "hash", "\"00112233445566778899aabbccddeeff"
                  "00112233445566778899aabbccddeeff\"" },
        { "account", "\"a\"" }, { "name", "\"n\"" }, { "email", "\"e\"" },
        { "team", "\"t\"" }, { "scopes", "[\"a:b\"]" }, { "apps", "[\"x\"]" },
        { "created_at", "1" }, { "expires_at", "0" }, { "revoked", "false" },
    };
    /* ... with one field replaced (or left out: NULL) */
    static const char  *bad[][3] = {
        { "scopes-not-array", "scopes", "\"a:b\"" },
        { "apps-not-array", "apps", "{}" },
        { "apps-bad", "apps", "[\"x y\"]" },
        { "id-short", "id", "\"AbCd\"" },
        { "id-alphabet", "id", "\"AbCdEfGh0123456_\"" },
        { "hash-not-hex", "hash", "\"0g112233445566778899aabbccddeeff"
                                  "00112233445566778899aabbccddeeff\"" },
        { "revoked-int", "revoked", "1" },
        { "version-zero", "version", "0" },
        { "version-string", "version", "\"1\"" },
        { "name-null", "name", "null" },
        { "created-real", "created_at", "1.5" },
        { "no-team", "team", NULL },
    };
    char                buf[1024];
    sa_token_record_t   rec = sample();
    char               *json, *value, name[64];
    size_t              i;

    json = sa_token_record_json(&rec);
    value = sa_token_record_encode(&rec, fuzz_sk);

    put_mode("envelope-valid", '0', value, strlen(value));
    value[SA_ENVELOPE_HEAD_LEN + 5] ^= 1;
    put_mode("envelope-tampered", '0', value, strlen(value));
    put_mode("envelope-short", '0', value, SA_ENVELOPE_HEAD_LEN);
    put_mode("sealed-sample", '1', json, strlen(json));
    put_mode("parse-sample", '2', json, strlen(json));
    put_mode("nomem-sample", '3', json, strlen(json));
    free(value);

    rec.revoked = 1;
    rec.nscopes = 0;
    rec.napps = 0;
    rec.expires_at = 0;
    free(json);
    json = sa_token_record_json(&rec);
    value = sa_token_record_encode(&rec, fuzz_sk);
    put_mode("envelope-tombstone", '0', value, strlen(value));
    put_mode("sealed-tombstone", '1', json, strlen(json));
    free(value);
    free(json);

    for (i = 0; i < sizeof(payloads) / sizeof(payloads[0]); i++) {
        snprintf(name, sizeof(name), "sealed-%s", payloads[i][0]);
        put_mode(name, '1', payloads[i][1], strlen(payloads[i][1]));
        snprintf(name, sizeof(name), "parse-%s", payloads[i][0]);
        put_mode(name, '2', payloads[i][1], strlen(payloads[i][1]));
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        size_t       k, n = 0;
        const char  *v;

        buf[n++] = '{';
        for (k = 0; k < sizeof(ref) / sizeof(ref[0]); k++) {
            v = strcmp(ref[k][0], bad[i][1]) == 0 ? bad[i][2] : ref[k][1];
            if (v != NULL) {
                n += snprintf(buf + n, sizeof(buf) - n, "%s\"%s\":%s",
                              n > 1 ? "," : "", ref[k][0], v);
            }
        }
        buf[n++] = '}';
        snprintf(name, sizeof(name), "sealed-%s", bad[i][0]);
        put_mode(name, '1', buf, n);
    }
}


static void
scopes(void)
{
    static const char  *s[][2] = {
        { "exact", "stacks:read\n\nstacks:read" },
        { "star", "*\n\nstacks:read\nstacks:write\n\nbilling:read" },
        { "res-star", "stacks:*\n\nstacks:write\n\nstacks:read" },
        { "miss", "stacks:read\n\nstacks:write\n\nother:x" },
        { "groups", "a:b\nc:*\nd.e-f_g:h\n\nx:y\nc:z\n\na:b\n\nq:r\nc:q" },
        { "none", "\n\nstacks:read" },
        { "invalid", "Stacks:read\n:\na:\n:b\na:b:c\na:*x\n*:*\n**\n\na:*\n*" },
        { "apps", "billing\nBilling-2.x_y\n*\n\nbilling" },
        { "long",
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:"
          "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n"
          "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa:"
          "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" },
    };
    size_t  i;

    for (i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
        puts_("fuzz_scope", s[i][0], s[i][1]);
    }
}


static void
texts(const char *target, const char *const *s, size_t n)
{
    char    name[32];
    size_t  i;

    for (i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "%02zu", i);
        puts_(target, name, s[i]);
    }
}


static void
keys(void)
{
    char   b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    char   line[256];

    sodium_bin2base64(b64, sizeof(b64), (const unsigned char *) FUZZ_TEST_SEED,
                      32, sodium_base64_VARIANT_ORIGINAL);
    snprintf(line, sizeof(line), "%s %s\n", SA_SIGNING_KEY_LABEL, b64);
    puts_("fuzz_key", "signing", line);

    sodium_bin2base64(b64, sizeof(b64), fuzz_pk, 32,
                      sodium_base64_VARIANT_ORIGINAL);
    snprintf(line, sizeof(line), "%s %s\r\n ", SA_VERIFY_KEY_LABEL, b64);
    puts_("fuzz_key", "verify", line);
    snprintf(line, sizeof(line), "%s %.20s", SA_VERIFY_KEY_LABEL, b64);
    puts_("fuzz_key", "verify-short", line);
    puts_("fuzz_key", "hex", "00112233445566778899aabbccddeeff"
                             "00112233445566778899AABBCCDDEEFF");
    puts_("fuzz_key", "hex-odd", "0g1");
    puts_("fuzz_key", "label-only", SA_SIGNING_KEY_LABEL " ");
}


int
main(int argc, char **argv)
{
    static const char  *urls[] = {
        "redis://127.0.0.1:6379/0",
        "redis://user:pw@127.0.0.1:6379/2",
        "redis://:secret@redis.example:6380/15",
        "redis://justpassword@localhost",
        "redis://host",
        "redis://host:/1",
        "redis://host:65536/0",
        "redis://host:6379/",
        "redis://[::1]:6379/0",
        "redis://a@b@c:1/2",
        "redis://u:p:w@h:1/1000000",
        "unix:///tmp/r.sock?db=3",
        "unix:///var/run/redis/redis.sock",
        "unix://user:pw@/tmp/r.sock?db=1",
        "unix://tmp/r.sock",
        "unix:///tmp/r.sock?db=",
        "unix:///tmp/a@b.sock",
        "http://127.0.0.1:6379",
        "",
    };
    static const char  *durations[] = {
        "90d", "1h30m", "45s", "2w", "0", "12h", "1h", "0s", "9999999999w",
        "5226w", "36600d", "36601d", "1d1d1d", "10", "h", "1", "-1d", "1y",
        "2026-11-26T09:00:00Z", "2026-11-26", "1764190000", "999999999999",
        "1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-02-31",
        "2026-11-26T25:00:00Z", "2026-11-26T09:00:00", " 2026-11-26",
        "24h",
    };

    if (argc != 2) {
        fprintf(stderr, "usage: gen_corpus DIR\n");
        return 1;
    }

    out_dir = argv[1];
    fuzz_keys();

    tokens();
    records();
    scopes();
    keys();
    texts("fuzz_url", urls, sizeof(urls) / sizeof(urls[0]));
    texts("fuzz_duration", durations, sizeof(durations) / sizeof(durations[0]));

    printf("%u seed files in %s\n", nfile, out_dir);
    return 0;
}
