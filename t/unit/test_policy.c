/* Unit tests: token policies (core/sa_policy.c) and their place in the
 * signed token record, its JSON and its packed cache form (issue 25). */

#include <stdlib.h>
#include <sodium.h>
#include <jansson.h>

#include "tap.h"
#include "sa_policy.h"
#include "sa_record.h"

#define S(lit)  { lit, sizeof(lit) - 1 }
#define L(lit)  lit, sizeof(lit) - 1

static uint8_t  pk[SA_PUBLICKEY_LEN], sk[SA_SECRETKEY_LEN];


static void *
heap_alloc(void *ctx, size_t size)
{
    (void) ctx;
    return malloc(size);
}


static void
test_rate_quota(void)
{
    uint32_t  n = 0, per = 0;
    uint64_t  q = 0;
    uint8_t   period = 0;
    char      buf[32];

    ok(sa_rate_parse(L("100/s"), &n, &per) == 0 && n == 100 && per == 1,
       "100/s");
    ok(sa_rate_parse(L("5/m"), &n, &per) == 0 && n == 5 && per == 60, "5/m");
    ok(sa_rate_parse(L("7/h"), &n, &per) == 0 && n == 7 && per == 3600,
       "7/h");
    ok(sa_rate_parse(L("1000000/s"), &n, &per) == 0, "the largest rate");
    is_long(sa_rate_parse(L("1000001/s"), &n, &per), -1, "above the largest");
    is_long(sa_rate_parse(L("0/s"), &n, &per), -1, "a zero rate is none");
    is_long(sa_rate_parse(L("-1/s"), &n, &per), -1, "no sign");
    is_long(sa_rate_parse(L("01/s"), &n, &per), -1, "no leading zero");
    is_long(sa_rate_parse(L("10/d"), &n, &per), -1, "no per-day rate");
    is_long(sa_rate_parse(L("10"), &n, &per), -1, "a unit is needed");
    is_long(sa_rate_parse(L("10/s "), &n, &per), -1, "nothing after it");
    is_long(sa_rate_parse(L("99999999999999999999/s"), &n, &per), -1,
            "no overflow");

    ok(sa_quota_parse(L("10000/month"), &q, &period) == 0 && q == 10000
       && period == SA_QUOTA_MONTH, "10000/month");
    ok(sa_quota_parse(L("50/day"), &q, &period) == 0 && q == 50
       && period == SA_QUOTA_DAY, "50/day");
    ok(sa_quota_parse(L("1000000000000/day"), &q, &period) == 0,
       "the largest quota");
    is_long(sa_quota_parse(L("1000000000001/day"), &q, &period), -1,
            "above the largest quota");
    is_long(sa_quota_parse(L("5/week"), &q, &period), -1, "no weekly quota");
    is_long(sa_quota_parse(L("5/s"), &q, &period), -1, "a quota is no rate");

    sa_rate_format(30, 60, buf);
    is_str(buf, "30/m", "a rate formats back");
    sa_quota_format(10000, SA_QUOTA_MONTH, buf);
    is_str(buf, "10000/month", "a quota formats back");
}


static void
test_networks(void)
{
    sa_net_t     net, canon;
    sa_policy_t  p;
    char         buf[SA_NET_STR_LEN];
    uint8_t      a4[4] = { 10, 1, 2, 3 }, b4[4] = { 11, 0, 0, 1 };
    uint8_t      a6[16] = { 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0,
                            0, 0, 0, 1 };
    uint8_t      m6[16] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
                            10, 9, 9, 9 };

    is_long(sa_net_parse(L("10.0.0.0/8"), &net, NULL), 0, "an IPv4 network");
    sa_net_format(&net, buf);
    is_str(buf, "10.0.0.0/8", "formats back");
    is_long(sa_net_parse(L("10.0.0.1/8"), &net, &canon), -2,
            "host bits set are refused");
    sa_net_format(&canon, buf);
    is_str(buf, "10.0.0.0/8", "and the network meant is given back");
    is_long(sa_net_parse(L("192.0.2.7"), &net, NULL), 0, "a bare address");
    sa_net_format(&net, buf);
    is_str(buf, "192.0.2.7/32", "is one host");
    is_long(sa_net_parse(L("2001:DB8::/32"), &net, NULL), 0,
            "an IPv6 network");
    sa_net_format(&net, buf);
    is_str(buf, "2001:db8::/32", "formats canonically");
    is_long(sa_net_parse(L("10.0.0.0/33"), &net, NULL), -1, "no /33 in IPv4");
    is_long(sa_net_parse(L("::/129"), &net, NULL), -1, "no /129 in IPv6");
    is_long(sa_net_parse(L("10.0.0/8"), &net, NULL), -1, "a whole address");
    is_long(sa_net_parse(L("10.0.0.0/"), &net, NULL), -1, "bits after /");
    is_long(sa_net_parse(L("example.com"), &net, NULL), -1, "no names");
    is_long(sa_net_parse("10.0.0.0\0/8", 11, &net, NULL), -1, "no NUL");

    /* the attack review's inputs (issue 25) */
    is_long(sa_net_parse(L("010.0.0.1"), &net, NULL), -1,
            "no leading zero (octal to inet_aton, decimal to others)");
    is_long(sa_net_parse(L("10.0.0.0/08"), &net, NULL), -1,
            "nor in the prefix length");
    is_long(sa_net_parse(L("10.0.0.0/+8"), &net, NULL), -1, "no sign");
    is_long(sa_net_parse(L("10.0.0.0/-1"), &net, NULL), -1, "no negative");
    is_long(sa_net_parse(L("10.0.0.1/33"), &net, NULL), -1, "no /33");
    is_long(sa_net_parse(L(" 10.0.0.0/8"), &net, NULL), -1, "no space before");
    is_long(sa_net_parse(L("10.0.0.0/8 "), &net, NULL), -1, "nor after");
    is_long(sa_net_parse(L("10.0.0.0 /8"), &net, NULL), -1, "nor inside");
    is_long(sa_net_parse(L("10.0.0.0/8/8"), &net, NULL), -1, "one slash");
    is_long(sa_net_parse(L("10.1"), &net, NULL), -1, "no short forms");
    is_long(sa_net_parse(L("0x0a.0.0.0/8"), &net, NULL), -1, "no hex");
    is_long(sa_net_parse(L("fe80::1%eth0"), &net, NULL), -1, "no zone id");
    is_long(sa_net_parse(L("fe80::%eth0/64"), &net, NULL), -1,
            "nor in a network");
    is_long(sa_net_parse(L("[2001:db8::]/32"), &net, NULL), -1,
            "no brackets");
    {
        char  big[10240];

        memset(big, '1', sizeof(big));
        is_long(sa_net_parse(big, sizeof(big), &net, NULL), -1, "10 kB");
    }
    is_long(sa_net_parse(L("0.0.0.0/0"), &net, NULL), 0,
            "0.0.0.0/0 is every IPv4 address");
    is_long(sa_net_parse(L("::/0"), &net, NULL), 0, "::/0 every IPv6 one");
    memset(&p, 0, sizeof(p));
    p.nets[0] = net;
    p.nnets = 1;
    ok(!sa_policy_allows(&p, 4, b4), "::/0 holds no IPv4 address");
    ok(!sa_policy_allows(&p, 6, m6),
       "nor an IPv4-mapped one (it counts as IPv4)");

    /* an IPv4-mapped network is the IPv4 network (else it matched nothing) */
    is_long(sa_net_parse(L("::ffff:10.0.0.0/104"), &net, NULL), 0,
            "::ffff:10.0.0.0/104");
    sa_net_format(&net, buf);
    is_str(buf, "10.0.0.0/8", "is 10.0.0.0/8");
    p.nets[0] = net;
    ok(sa_policy_allows(&p, 4, a4) && sa_policy_allows(&p, 6, m6),
       "and holds 10.1.2.3 and ::ffff:10.9.9.9");
    is_long(sa_net_parse(L("::ffff:10.0.0.1"), &net, NULL), 0,
            "a mapped address");
    sa_net_format(&net, buf);
    is_str(buf, "10.0.0.1/32", "is the IPv4 host");
    is_long(sa_net_parse(L("::ffff:0:0/96"), &net, NULL), 0, "::ffff:0:0/96");
    sa_net_format(&net, buf);
    is_str(buf, "0.0.0.0/0", "is every IPv4 address");
    is_long(sa_net_parse(L("::ffff:10.0.0.1/104"), &net, &canon), -2,
            "host bits in a mapped network");
    sa_net_format(&canon, buf);
    is_str(buf, "10.0.0.0/8", "named as the IPv4 network meant");
    is_long(sa_net_parse(L("::fffe:0:0/95"), &net, NULL), 0,
            "a network wider than the mapped range stays IPv6");
    sa_net_format(&net, buf);
    is_str(buf, "::fffe:0:0/95", "(as nginx would print it)");

    memset(&p, 0, sizeof(p));
    ok(sa_policy_allows(&p, 4, b4), "no networks: from anywhere");
    sa_net_parse(L("10.0.0.0/8"), &p.nets[0], NULL);
    sa_net_parse(L("2001:db8::/32"), &p.nets[1], NULL);
    p.nnets = 2;
    ok(sa_policy_allows(&p, 4, a4), "10.1.2.3 is in 10.0.0.0/8");
    ok(!sa_policy_allows(&p, 4, b4), "11.0.0.1 is not");
    ok(sa_policy_allows(&p, 6, a6), "2001:db8::1 is in 2001:db8::/32");
    a6[3] = 0xb9;
    ok(!sa_policy_allows(&p, 6, a6), "2001:db9::1 is not");
    ok(sa_policy_allows(&p, 6, m6), "::ffff:10.9.9.9 counts as IPv4");
    sa_net_parse(L("10.128.0.0/9"), &p.nets[0], NULL);
    ok(!sa_policy_allows(&p, 4, a4), "a prefix not on a byte boundary");
    a4[1] = 200;
    ok(sa_policy_allows(&p, 4, a4), "matches the bits it names");
}


static sa_token_record_t
sample(void)
{
    static sa_str_t    scopes[] = { S("stacks:read") };
    sa_token_record_t  rec;

    memset(&rec, 0, sizeof(rec));
    rec.version = 3;
    memcpy(rec.id, "AbCdEfGh01234567", SA_TOKEN_ID_LEN + 1);
    sa_token_hash((const unsigned char *) "sat_x", 5, rec.hash);
    rec.account = (sa_str_t) S("Acct000000000001");
    rec.name = (sa_str_t) S("ci");
    rec.email = (sa_str_t) S("Acct000000000001@platform.sa.invalid");
    rec.team = (sa_str_t) S("platform");
    rec.scopes = scopes;
    rec.nscopes = 1;
    rec.created_at = 1700000000;

    rec.policy.rate = 100;
    rec.policy.per = 60;
    rec.policy.burst = 20;
    rec.policy.quota = 10000;
    rec.policy.quota_period = SA_QUOTA_MONTH;
    sa_net_parse(L("10.0.0.0/8"), &rec.policy.nets[0], NULL);
    sa_net_parse(L("2001:db8::/32"), &rec.policy.nets[1], NULL);
    rec.policy.nnets = 2;

    return rec;
}


static int
same_policy(const sa_policy_t *a, const sa_policy_t *b)
{
    return a->rate == b->rate && a->per == b->per && a->burst == b->burst
           && a->quota == b->quota && a->quota_period == b->quota_period
           && a->nnets == b->nnets
           && memcmp(a->nets, b->nets, a->nnets * sizeof(sa_net_t)) == 0;
}


static sa_rec_err_t
decode(const char *value, sa_token_record_t **out)
{
    *out = NULL;
    return sa_token_record_decode(value, strlen(value), pk, heap_alloc, NULL,
                                  out);
}


/* a payload edited, then sealed: signed but is it valid? */
static sa_rec_err_t
resealed(const char *payload, const char *from, const char *to)
{
    char               buf[2048], *p, *value;
    sa_token_record_t *got;
    sa_rec_err_t       rc;

    p = strstr(payload, from);
    if (p == NULL) {
        return -1;
    }
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int) (p - payload), payload, to,
             p + strlen(from));
    value = sa_envelope_seal(buf, strlen(buf), sk);
    rc = decode(value, &got);
    free(got);
    free(value);
    return rc;
}


static void
test_record(void)
{
    sa_token_record_t   rec = sample(), plain = sample(), *got;
    char               *value, *payload, *edited;
    uint8_t             packed[1024];
    size_t              n;
    void               *block;
    json_t             *j;

    value = sa_token_record_encode(&rec, sk);
    is_long(decode(value, &got), SA_REC_OK, "a record with a policy decodes");
    ok(got != NULL && same_policy(&rec.policy, &got->policy),
       "with the same policy");
    free(got);

    payload = sa_token_record_json(&rec);
    ok(strstr(payload, "\"rate\":\"100/m\"") != NULL
       && strstr(payload, "\"burst\":20") != NULL
       && strstr(payload, "\"quota\":\"10000/month\"") != NULL
       && strstr(payload,
                 "\"allow_from\":[\"10.0.0.0/8\",\"2001:db8::/32\"]") != NULL,
       "the payload names rate, burst, quota, allow_from");

    memset(&plain.policy, 0, sizeof(plain.policy));
    free(value);
    value = sa_token_record_json(&plain);
    ok(strstr(value, "rate") == NULL && strstr(value, "allow_from") == NULL
       && strstr(value, "quota") == NULL,
       "a record without a policy has none of the fields");
    free(value);

    /* tampering: any policy edit breaks the signature */
    value = sa_token_record_encode(&rec, sk);
    edited = strdup(value);
    memcpy(strstr(edited, "100/m"), "999/m", 5);
    is_long(decode(edited, &got), SA_REC_BAD_SIGNATURE,
            "a raised rate is tampered");
    free(edited);
    edited = strdup(value);
    memcpy(strstr(edited, "10.0.0.0/8"), "0.0.0.0/0\"", 10);
    is_long(decode(edited, &got), SA_REC_BAD_SIGNATURE,
            "a widened network is tampered");
    free(edited);
    free(value);

    /* signed but invalid policies: refused, not ignored */
    is_long(resealed(payload, "\"100/m\"", "\"100/d\""), SA_REC_INVALID,
            "a rate with an unknown unit is invalid");
    is_long(resealed(payload, "\"100/m\"", "100"), SA_REC_INVALID,
            "a rate must be text");
    is_long(resealed(payload, "\"burst\":20", "\"burst\":-1"), SA_REC_INVALID,
            "a negative burst is invalid");
    is_long(resealed(payload, "\"rate\":\"100/m\",", ""), SA_REC_INVALID,
            "a burst without a rate is invalid");
    is_long(resealed(payload, "10000/month", "10000/year"), SA_REC_INVALID,
            "a quota per year is invalid");
    is_long(resealed(payload, "10.0.0.0/8", "10.0.0.1/8"), SA_REC_INVALID,
            "a network with host bits is invalid");
    is_long(resealed(payload, "[\"10.0.0.0/8\",\"2001:db8::/32\"]", "[]"),
            SA_REC_INVALID, "an empty allow_from is invalid");
    is_long(resealed(payload, "\"10.0.0.0/8\"", "\"nowhere\""),
            SA_REC_INVALID, "an address that is not one is invalid");
    is_long(resealed(payload, "\"burst\":20", "\"burst\":0"), SA_REC_OK,
            "burst 0 is valid");
    is_long(resealed(payload, "\"burst\":20",
                     "\"burst\":20,\"rate\":\"999999/s\""),
            SA_REC_INVALID, "a second rate key is refused, not the last one taken");
    is_long(resealed(payload, "\"burst\":20", "\"burst\":20,\"burst\":0"),
            SA_REC_INVALID, "so is a second burst");
    is_long(resealed(payload, "\"burst\":20", "\"burst\":20.0"),
            SA_REC_INVALID, "a burst must be an integer");
    is_long(resealed(payload, "\"burst\":20", "\"burst\":1000001"),
            SA_REC_INVALID, "at most 1,000,000");
    is_long(resealed(payload, "\"burst\":20",
                     "\"burst\":18446744073709551617"),
            SA_REC_INVALID, "no overflow");
    is_long(resealed(payload, "\"100/m\"", "\"4294967297/s\""),
            SA_REC_INVALID, "a rate past 32 bits is refused, not wrapped");
    is_long(resealed(payload, "\"100/m\"", "null"), SA_REC_INVALID,
            "a null rate is invalid, not none");
    is_long(resealed(payload, "[\"10.0.0.0/8\",\"2001:db8::/32\"]", "null"),
            SA_REC_INVALID, "so is a null allow_from");
    is_long(resealed(payload, "[\"10.0.0.0/8\",\"2001:db8::/32\"]",
                     "\"10.0.0.0/8\""),
            SA_REC_INVALID, "an allow_from that is not an array");
    is_long(resealed(payload, "\"burst\":20", "\"burst\":20,\"rate_v2\":1"),
            SA_REC_OK, "a field of its own is ignored (the signer wrote it)");

    j = json_loads(payload, 0, NULL);
    is_long(sa_record_check(j, SA_KIND_TOKEN, "AbCdEfGh01234567"), SA_REC_OK,
            "sa_record_check takes the policy");
    json_object_set_new(j, "quota", json_string("0/day"));
    is_long(sa_record_check(j, SA_KIND_TOKEN, "AbCdEfGh01234567"),
            SA_REC_INVALID, "and refuses a bad one (what sa-admin reads)");
    json_decref(j);

    j = json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:[], s:s}", "kind",
                  "account", "id", "Acct000000000001", "version",
                  (json_int_t) 1, "team", "platform", "name", "ci", "email",
                  "e", "apps", "rate", "5/s");
    is_long(sa_record_check(j, SA_KIND_ACCOUNT, "Acct000000000001"),
            SA_REC_OK, "an account carries a default policy");
    json_object_set_new(j, "allow_from", json_pack("[s]", "300.0.0.0/8"));
    is_long(sa_record_check(j, SA_KIND_ACCOUNT, "Acct000000000001"),
            SA_REC_INVALID, "and a bad one is refused");
    json_decref(j);

    /* the packed cache form keeps it */
    n = sa_token_record_pack(&rec, packed, sizeof(packed));
    ok(n > 0 && n <= sizeof(packed), "a record with a policy packs");
    is_long(sa_token_record_pack(&rec, NULL, 0), n, "its size is known first");
    block = malloc(sa_token_record_unpacked_size(packed));
    got = sa_token_record_unpack(packed, rec.id, block);
    ok(same_policy(&rec.policy, &got->policy), "and unpacks with it");
    ok(got->size == sa_token_record_unpacked_size(packed),
       "in the size said");
    free(block);

    n = sa_token_record_pack(&plain, packed, sizeof(packed));
    block = malloc(sa_token_record_unpacked_size(packed));
    got = sa_token_record_unpack(packed, rec.id, block);
    ok(sa_policy_empty(&got->policy), "no policy packed: none unpacked");
    free(block);

    free(payload);
}


int
main(void)
{
    if (sodium_init() < 0) {
        printf("Bail out! libsodium init failed\n");
        return 1;
    }

    crypto_sign_keypair(pk, sk);

    test_rate_quota();
    test_networks();
    test_record();

    return done_testing();
}
