/* sa-admin: the audit log's receipts, checkpoints and their check (audit.h). */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "audit.h"
#include "change.h"
#include "notify.h"
#include "records.h"
#include "redis.h"
#include "scripts.h"
#include "xalloc.h"


/* SHA-1 (FIPS 180-4), only to recompute the links Redis's Lua wrote */

typedef struct {
    uint32_t  h[5];
    uint64_t  len;
    uint8_t   buf[64];
    size_t    used;
} sa_sha1_t;


#define SA_ROL(x, n)  (((x) << (n)) | ((x) >> (32 - (n))))


static void
sa_sha1_block(sa_sha1_t *c, const uint8_t *p)
{
    uint32_t  w[80], a, b, d, e, f, k, t, cc;
    int       i;

    for (i = 0; i < 16; i++) {
        w[i] = (uint32_t) p[i * 4] << 24 | (uint32_t) p[i * 4 + 1] << 16
               | (uint32_t) p[i * 4 + 2] << 8 | p[i * 4 + 3];
    }
    for (i = 16; i < 80; i++) {
        w[i] = SA_ROL(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    }

    a = c->h[0]; b = c->h[1]; cc = c->h[2]; d = c->h[3]; e = c->h[4];

    for (i = 0; i < 80; i++) {
        if (i < 20) {
            f = (b & cc) | (~b & d);
            k = 0x5a827999;
        } else if (i < 40) {
            f = b ^ cc ^ d;
            k = 0x6ed9eba1;
        } else if (i < 60) {
            f = (b & cc) | (b & d) | (cc & d);
            k = 0x8f1bbcdc;
        } else {
            f = b ^ cc ^ d;
            k = 0xca62c1d6;
        }
        t = SA_ROL(a, 5) + f + e + k + w[i];
        e = d; d = cc; cc = SA_ROL(b, 30); b = a; a = t;
    }

    c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d; c->h[4] += e;
}


static void
sa_sha1_update(sa_sha1_t *c, const void *data, size_t len)
{
    const uint8_t  *p = data;
    size_t          n;

    c->len += len;

    while (len > 0) {
        n = 64 - c->used < len ? 64 - c->used : len;
        memcpy(c->buf + c->used, p, n);
        c->used += n;
        p += n;
        len -= n;
        if (c->used == 64) {
            sa_sha1_block(c, c->buf);
            c->used = 0;
        }
    }
}


void
sa_sha1_hex(const void *data, size_t len, char out[41])
{
    static const uint32_t  init[5] = { 0x67452301, 0xefcdab89, 0x98badcfe,
                                       0x10325476, 0xc3d2e1f0 };
    sa_sha1_t  c;
    uint8_t    pad[72], digest[20];
    uint64_t   bits;
    size_t     n, i;

    memcpy(c.h, init, sizeof(init));
    c.len = 0;
    c.used = 0;
    sa_sha1_update(&c, data, len);

    bits = c.len * 8;
    n = (c.used < 56 ? 56 : 120) - c.used;
    memset(pad, 0, sizeof(pad));
    pad[0] = 0x80;
    for (i = 0; i < 8; i++) {
        pad[n + i] = (uint8_t) (bits >> (56 - 8 * i));
    }
    sa_sha1_update(&c, pad, n + 8);

    for (i = 0; i < 20; i++) {
        digest[i] = (uint8_t) (c.h[i / 4] >> (24 - 8 * (i % 4)));
    }
    sodium_bin2hex(out, 41, digest, sizeof(digest));
}


/* receipts */

typedef struct {
    long long  from;
    long long  to;
    char       link[41];
} sa_receipt_t;

static sa_receipt_t  *sa_receipts;
static size_t         sa_nreceipts, sa_receipts_cap;


redisReply *
sa_audit_unwrap(redisReply *r)
{
    redisReply  *inner;
    long long    from, to;

    if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 5
        || r->element[0]->type != REDIS_REPLY_STRING
        || strcmp(r->element[0]->str, "sa-audit:1") != 0
        || r->element[1]->type != REDIS_REPLY_INTEGER
        || r->element[2]->type != REDIS_REPLY_INTEGER
        || r->element[3]->type != REDIS_REPLY_STRING
        || r->element[3]->len != 40)
    {
        return r;
    }

    from = r->element[1]->integer;
    to = r->element[2]->integer;

    if (from >= 1 && from <= to) {
        if (sa_nreceipts == sa_receipts_cap) {
            sa_receipts_cap = sa_receipts_cap ? sa_receipts_cap * 2 : 8;
            sa_receipts = sa_xrealloc(sa_receipts,
                                      sa_receipts_cap * sizeof(sa_receipt_t));
        }
        sa_receipts[sa_nreceipts].from = from;
        sa_receipts[sa_nreceipts].to = to;
        memcpy(sa_receipts[sa_nreceipts].link, r->element[3]->str, 41);
        sa_nreceipts++;
    }

    inner = r->element[4];
    r->element[4] = NULL;
    freeReplyObject(r);

    return inner;
}


/* the signed message of a checkpoint */
static size_t
sa_checkpoint_msg(sa_admin_t *sa, long long from, long long to,
    const char *link, char *out, size_t size)
{
    int  n;

    n = snprintf(out, size, "sa-audit:1\n%s\n%lld\n%lld\n%s", sa->prefix,
                 from, to, link);

    return n < 0 || (size_t) n >= size ? 0 : (size_t) n;
}


void
sa_audit_sign_pending(sa_admin_t *sa)
{
    const uint8_t  *sk;
    sa_receipt_t   *rc;
    sa_args_t       args;
    redisReply     *r;
    char            msg[256], hex[2 * crypto_sign_BYTES + 1];
    uint8_t         sig[crypto_sign_BYTES];
    size_t          n, i, len;

    if (sa_nreceipts == 0) {
        return;
    }

    /* taken first: the ZADD's own reply passes through here again */
    rc = sa_receipts;
    n = sa_nreceipts;
    sa_receipts = NULL;
    sa_nreceipts = sa_receipts_cap = 0;

    sk = sa_signing_key_if_loaded();
    if (sk == NULL) {
        sa_fail(SA_EXIT_OK, "warning: audit entries %lld to %lld are not "
                "signed (no signing key loaded)", rc[0].from, rc[n - 1].to);
        free(rc);
        return;
    }

    sa_args_init(&args);
    sa_args_add(&args, "ZADD");
    sa_args_addf(&args, "%s" SA_KEY_AUDIT SA_AUDIT_SIG, sa->prefix);

    for (i = 0; i < n; i++) {
        len = sa_checkpoint_msg(sa, rc[i].from, rc[i].to, rc[i].link, msg,
                                sizeof(msg));
        crypto_sign_detached(sig, NULL, (const uint8_t *) msg, len, sk);
        sodium_bin2hex(hex, sizeof(hex), sig, sizeof(sig));
        sa_args_addf(&args, "%lld", rc[i].to);
        sa_args_addf(&args, "%lld:%lld:%s:%s", rc[i].to, rc[i].from,
                     rc[i].link, hex);
    }

    sa_xredis_append(sa, &args);
    r = sa_xredis_reply(sa);
    if (r->type == REDIS_REPLY_ERROR) {
        sa_fail(SA_EXIT_OK, "warning: audit entries %lld to %lld are not "
                "signed: Redis refused the signature: %s", rc[0].from,
                rc[n - 1].to, r->str);
    }

    freeReplyObject(r);
    sa_args_free(&args);
    free(rc);
}


/* audit --verify */

#define SA_AUDIT_BATCH  1000

typedef struct {
    long long   to;
    long long   from;
    uint8_t     sig[crypto_sign_BYTES];
    int         seen;
    int         ok;
} sa_checkpoint_t;

typedef struct {
    long long   a, b;
} sa_range_t;

typedef struct {
    sa_admin_t        *sa;
    const uint8_t     *pk;
    long long          seq;         /* of the last chained entry, 0 none */
    long long          first;       /* the first chained entry's number */
    char               link[64];
    size_t             entries;
    size_t             unchained;   /* from before the chain began */
    size_t             problems;
    size_t             signed_n;
    long long          run;         /* the unbroken run of the chain starts */
    sa_checkpoint_t   *cp;          /* by to */
    size_t             ncp;
    sa_range_t        *open;        /* chained entries no checkpoint covers */
    size_t             nopen, capopen;
} sa_chain_t;


static void
sa_chain_problem(sa_chain_t *c, const char *id, const char *what)
{
    c->problems++;
    fprintf(stderr, "sa-admin: audit entry %s: %s\n", id, what);
}


const char *
sa_audit_field(redisReply *fields, const char *name)
{
    size_t  i;

    for (i = 0; i + 1 < fields->elements; i += 2) {
        if (strcmp(fields->element[i]->str, name) == 0) {
            return fields->element[i + 1]->str;
        }
    }

    return "";
}


static int
sa_cp_cmp(const void *a, const void *b)
{
    long long  x = ((const sa_checkpoint_t *) a)->to;
    long long  y = ((const sa_checkpoint_t *) b)->to;

    return x < y ? -1 : x > y;
}


/*
 * A member of audit:sig, "<to>:<from>:<link>:<signature in hex>", parsed
 * into cp; -1 when it is malformed.  The link is for key resign, which
 * checks the old signature without the log; verify uses the entry's own.
 */
static int
sa_checkpoint_parse(const char *v, sa_checkpoint_t *cp, char link[41])
{
    char       *end, *end2;
    long long   to, from;

    to = strtoll(v, &end, 10);
    if (*end != ':') {
        return -1;
    }
    from = strtoll(end + 1, &end2, 10);

    if (to < 1 || from < 1 || from > to || *end2 != ':'
        || strlen(end2 + 1) != 41 + 2 * crypto_sign_BYTES
        || end2[41] != ':')
    {
        return -1;
    }

    memcpy(link, end2 + 1, 40);
    link[40] = '\0';
    cp->to = to;
    cp->from = from;
    cp->seen = 0;
    cp->ok = 0;

    return sodium_hex2bin(cp->sig, crypto_sign_BYTES, end2 + 42,
                          2 * crypto_sign_BYTES, NULL, NULL, NULL);
}


static void
sa_checkpoint_add(sa_chain_t *c, const char *v, size_t *cap)
{
    char  link[41];

    if (c->ncp == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        c->cp = sa_xrealloc(c->cp, *cap * sizeof(sa_checkpoint_t));
    }

    if (sa_checkpoint_parse(v, &c->cp[c->ncp], link) != 0) {
        c->problems++;
        fprintf(stderr, "sa-admin: audit: signature '%.40s...' is malformed "
                "(written by something other than sa-admin)\n", v);
        return;
    }

    c->ncp++;
}


/* up to SA_AUDIT_BATCH members of audit:sig from the start'th on */
static redisReply *
sa_checkpoints_batch_or_exit(sa_admin_t *sa, long long start)
{
    redisReply  *r;

    r = sa_xredis_cmd(sa, "ZRANGE %s" SA_KEY_AUDIT SA_AUDIT_SIG " %lld %lld",
                      sa->prefix, start, start + SA_AUDIT_BATCH - 1);
    if (r->type != REDIS_REPLY_ARRAY) {
        sa_die(SA_EXIT_UNAVAILABLE, "ZRANGE of the audit signatures: %s",
               r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }

    return r;
}


/* every member of audit:sig, parsed and sorted by number */
static void
sa_checkpoints_load(sa_chain_t *c)
{
    sa_admin_t   *sa = c->sa;
    redisReply   *r;
    size_t        i, cap = 0;
    long long     start = 0;

    for ( ;; ) {
        r = sa_checkpoints_batch_or_exit(sa, start);

        for (i = 0; i < r->elements; i++) {
            sa_checkpoint_add(c, r->element[i]->str, &cap);
        }

        start += r->elements;
        if (r->elements < SA_AUDIT_BATCH) {
            freeReplyObject(r);
            break;
        }
        freeReplyObject(r);
    }

    qsort(c->cp, c->ncp, sizeof(sa_checkpoint_t), sa_cp_cmp);
}


/* the first checkpoint at entry to (a writer may add more), or NULL */
static sa_checkpoint_t *
sa_checkpoint_find(sa_chain_t *c, long long to)
{
    size_t  lo = 0, hi = c->ncp, mid;

    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if (c->cp[mid].to < to) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }

    return lo < c->ncp && c->cp[lo].to == to ? &c->cp[lo] : NULL;
}


/* a chained entry no checkpoint covers yet */
static void
sa_open_add(sa_chain_t *c, long long seq)
{
    if (c->nopen > 0 && c->open[c->nopen - 1].b + 1 == seq) {
        c->open[c->nopen - 1].b = seq;
        return;
    }

    if (c->nopen == c->capopen) {
        c->capopen = c->capopen ? c->capopen * 2 : 16;
        c->open = sa_xrealloc(c->open, c->capopen * sizeof(sa_range_t));
    }
    c->open[c->nopen].a = seq;
    c->open[c->nopen].b = seq;
    c->nopen++;
}


/* entries from..to (the newest ones seen) are covered by a checkpoint */
static void
sa_open_cover(sa_chain_t *c, long long from)
{
    while (c->nopen > 0 && c->open[c->nopen - 1].b >= from) {
        if (c->open[c->nopen - 1].a >= from) {
            c->signed_n += c->open[c->nopen - 1].b - c->open[c->nopen - 1].a
                           + 1;
            c->nopen--;
        } else {
            c->signed_n += c->open[c->nopen - 1].b - from + 1;
            c->open[c->nopen - 1].b = from - 1;
            break;
        }
    }
}


/*
 * The checkpoints at this entry, if any: each signature must verify, and
 * the entries it covers follow each other unbroken (check: 0 when this
 * entry is broken itself: the checkpoints are only marked seen).
 */
static void
sa_chain_checkpoint(sa_chain_t *c, const char *id, long long seq,
    const char *link, int check)
{
    sa_checkpoint_t  *cp, *end;
    char              msg[256], what[200];
    size_t            len;

    cp = sa_checkpoint_find(c, seq);
    end = c->cp + c->ncp;

    for ( /* void */ ; cp != NULL && cp < end && cp->to == seq; cp++) {
        cp->seen = 1;
        if (!check) {
            continue;
        }

        len = sa_checkpoint_msg(c->sa, cp->from, cp->to, link, msg,
                                sizeof(msg));
        if (len == 0 || crypto_sign_verify_detached(cp->sig,
                            (const uint8_t *) msg, len, c->pk) != 0)
        {
            sa_chain_problem(c, id, "its signature does not verify (the "
                             "entry or one before it changed, or the "
                             "signature is forged)");
            continue;
        }

        /* a range cut at the start by MAXLEN is fine; across a break not */
        if (cp->from < c->run && c->run != c->first) {
            snprintf(what, sizeof(what), "signed with the entries from %lld "
                     "on, but the chain is broken in between (above)",
                     cp->from);
            sa_chain_problem(c, id, what);
            continue;
        }

        cp->ok = 1;
        sa_open_cover(c, cp->from);
    }
}


/* one entry of the chain, in stream order */
static void
sa_chain_entry(sa_chain_t *c, const char *id, redisReply *fields)
{
    const char  *seq_s = sa_audit_field(fields, "seq");
    const char  *prev = sa_audit_field(fields, "prev");
    const char  *link = sa_audit_field(fields, "link");
    const char  *proof, *channel;
    char        *end, *text, what[160], want[41];
    long long    seq;
    size_t       len;
    int          changed = 0, broken = 0;

    c->entries++;
    seq = strtoll(seq_s, &end, 10);

    if (*seq_s == '\0' || *end != '\0' || seq < 1 || *link == '\0') {
        if (c->seq == 0) {
            c->unchained++;     /* written before the log was chained */
        } else {
            sa_chain_problem(c, id, "not chained: added by something other "
                             "than sa-admin (forged?)");
        }
        return;
    }

    /* the link must be the hash of what the entry says (common.lua) */
    /* entries with a proof (and channel) hash them too */
    proof = sa_audit_field(fields, "proof");
    channel = sa_audit_field(fields, "channel");
    len = strlen(prev) + strlen(seq_s) + strlen(sa_audit_field(fields, "time"))
          + strlen(sa_audit_field(fields, "actor"))
          + strlen(sa_audit_field(fields, "action"))
          + strlen(sa_audit_field(fields, "target"))
          + strlen(sa_audit_field(fields, "team")) + strlen(proof)
          + strlen(channel) + 9;
    text = sa_xmalloc(len);
    snprintf(text, len, "%s\n%s\n%s\n%s\n%s\n%s\n%s%s%s%s%s", prev, seq_s,
             sa_audit_field(fields, "time"), sa_audit_field(fields, "actor"),
             sa_audit_field(fields, "action"), sa_audit_field(fields, "target"),
             sa_audit_field(fields, "team"), *proof ? "\n" : "", proof,
             *proof ? "\n" : "", *proof ? channel : "");
    len = strlen(text) + 1;
    sa_sha1_hex(text, len - 1, want);
    free(text);

    if (strcmp(want, link) != 0) {
        sa_chain_problem(c, id, "its link is not the hash of its fields "
                         "(changed since it was written?)");
        changed = 1;
    }

    if (c->seq == 0) {
        c->first = seq;
        c->run = seq;
        if (seq > 1) {
            fprintf(stderr, "sa-admin: audit: the log starts at entry %lld "
                    "(the older ones were trimmed by MAXLEN, or deleted)\n",
                    seq);
        }

    } else if (seq <= c->seq) {
        snprintf(what, sizeof(what), "number %lld after %lld: added by "
                 "something other than sa-admin (forged?)", seq, c->seq);
        sa_chain_problem(c, id, what);
        sa_chain_checkpoint(c, id, seq, link, 0);
        return;

    } else if (seq > c->seq + 1) {
        snprintf(what, sizeof(what), "%lld entr%s before it missing "
                 "(deleted)", seq - c->seq - 1,
                 seq - c->seq - 1 == 1 ? "y" : "ies");
        sa_chain_problem(c, id, what);
        broken = 1;

    } else if (strcmp(prev, c->link) != 0) {
        sa_chain_problem(c, id, "does not follow the entry before it "
                         "(forged or replaced?)");
        broken = 1;
    }

    /* where the unbroken run that this entry ends starts */
    if (changed) {
        c->run = seq + 1;
    } else if (broken) {
        c->run = seq;
    }

    c->seq = seq;
    snprintf(c->link, sizeof(c->link), "%s", link);

    sa_open_add(c, seq);
    sa_chain_checkpoint(c, id, seq, link, !changed);
}


json_t *
sa_audit_verify(sa_admin_t *sa)
{
    sa_chain_t    c;
    redisReply   *r;
    char          start[64];
    size_t        i, unsigned_n = 0;
    long long     last;
    int           more;

    memset(&c, 0, sizeof(c));
    c.sa = sa;
    c.pk = sa_verify_key_or_exit(sa);
    sa_checkpoints_load(&c);
    strcpy(start, "-");

    do {
        r = sa_xredis_cmd(sa, "XRANGE %s" SA_KEY_AUDIT " %s + COUNT %d",
                          sa->prefix, start, SA_AUDIT_BATCH);
        if (r->type != REDIS_REPLY_ARRAY) {
            sa_die(SA_EXIT_UNAVAILABLE, "XRANGE: %s",
                   r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        }

        for (i = 0; i < r->elements; i++) {
            sa_chain_entry(&c, r->element[i]->element[0]->str,
                           r->element[i]->element[1]);
        }

        more = r->elements == SA_AUDIT_BATCH;
        if (more) {
            snprintf(start, sizeof(start), "(%s",
                     r->element[r->elements - 1]->element[0]->str);
        }
        freeReplyObject(r);
    } while (more);

    r = sa_xredis_cmd(sa, "GET %s" SA_KEY_AUDIT ":seq", sa->prefix);
    last = r->type == REDIS_REPLY_STRING ? strtoll(r->str, NULL, 10) : 0;
    freeReplyObject(r);

    if (last > c.seq) {
        c.problems++;
        fprintf(stderr, "sa-admin: audit: the newest %lld entr%s missing "
                "(deleted: %lld written, the log ends at %lld)\n",
                last - c.seq, last - c.seq == 1 ? "y is" : "ies are", last,
                c.seq);
    }

    /* a signature of an entry that is not there: deleted since */
    for (i = 0; i < c.ncp; i++) {
        if (!c.cp[i].seen && c.cp[i].to >= c.first && c.first > 0) {
            c.problems++;
            fprintf(stderr, "sa-admin: audit: entry %lld is signed but "
                    "missing (deleted)\n", c.cp[i].to);
        }
    }

    for (i = 0; i < c.nopen; i++) {
        unsigned_n += c.open[i].b - c.open[i].a + 1;
        if (c.open[i].a == c.open[i].b) {
            fprintf(stderr, "sa-admin: audit: entry %lld is not signed\n",
                    c.open[i].a);
        } else {
            fprintf(stderr, "sa-admin: audit: entries %lld to %lld are not "
                    "signed\n", c.open[i].a, c.open[i].b);
        }
    }
    if (unsigned_n > 0) {
        fprintf(stderr, "sa-admin: audit: an unsigned entry was written by "
                "something other than sa-admin with the signing key "
                "(forged?), or sa-admin ended before it signed it\n");
    }

    free(c.cp);
    free(c.open);

    return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:b}",
                     "entries", (json_int_t) c.entries,
                     "unchained", (json_int_t) c.unchained,
                     "last", (json_int_t) c.seq,
                     "signed", (json_int_t) c.signed_n,
                     "unsigned", (json_int_t) unsigned_n,
                     "problems", (json_int_t) c.problems,
                     "intact", c.problems == 0 && unsigned_n == 0);
}


size_t
sa_audit_resign(sa_admin_t *sa, const uint8_t *sk,
    const uint8_t (*old)[SA_PUBLICKEY_LEN], int nold, size_t *refused)
{
    sa_checkpoint_t   cp;
    redisReply       *r;
    sa_args_t         args;
    char              link[41], msg[256], hex[2 * crypto_sign_BYTES + 1];
    uint8_t           sig[crypto_sign_BYTES];
    size_t            i, len, done = 0, sent = 0;
    long long         start = 0;
    int               k, ok;

    for ( ;; ) {
        r = sa_checkpoints_batch_or_exit(sa, start);

        for (i = 0; i < r->elements; i++) {
            if (sa_checkpoint_parse(r->element[i]->str, &cp, link) != 0) {
                (*refused)++;
                continue;
            }
            len = sa_checkpoint_msg(sa, cp.from, cp.to, link, msg,
                                    sizeof(msg));

            if (crypto_sign_verify_detached(cp.sig, (const uint8_t *) msg,
                                            len, sk + 32) == 0)
            {
                continue;               /* the current key's already */
            }

            for (ok = 0, k = 0; k < nold && !ok; k++) {
                ok = crypto_sign_verify_detached(cp.sig,
                         (const uint8_t *) msg, len, old[k]) == 0;
            }
            if (!ok) {
                (*refused)++;           /* audit --verify reports it */
                continue;
            }

            crypto_sign_detached(sig, NULL, (const uint8_t *) msg, len, sk);
            sodium_bin2hex(hex, sizeof(hex), sig, sizeof(sig));
            sa_change_args(sa, &args);
            sa_args_add(&args, r->element[i]->str);
            sa_args_addf(&args, "%lld", cp.to);
            sa_args_addf(&args, "%lld:%lld:%s:%s", cp.to, cp.from, link, hex);
            sa_xscript_append(sa, &sa_lua_audit_resign, 0, &args);
            sa_args_free(&args);
            sent++;
            done++;
        }

        start += r->elements;
        len = r->elements;
        freeReplyObject(r);

        /* the replies of this batch's scripts */
        for ( /* void */ ; sent > 0; sent--) {
            if (sa_change_reply(sa) != SA_EXIT_OK) {
                sa_die(SA_EXIT_UNAVAILABLE, "re-signing the audit "
                       "checkpoints failed; run key resign again");
            }
        }

        if (len < SA_AUDIT_BATCH) {
            break;
        }
    }

    return done;
}
