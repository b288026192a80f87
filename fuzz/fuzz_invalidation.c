/*
 * Invalidation messages (sa_invalidation_next(), core/sa_token.c): what the
 * gateway's subscriber reads from <prefix>invalidate, which anyone allowed
 * to PUBLISH may send.
 *
 * The input is the message, in an exact-size heap copy (ASan sees a read
 * at or past its end).  Invariants beyond "no crash": the items found are
 * exactly those of a reference parser written from the format (split on
 * ' ', keep what is an id of SA_TOKEN_ID_LEN bytes alone or followed by
 * ':'; the version is the decimal number after the colon when it is all
 * digits and below 2^64, else 0), in order, each id inside the message;
 * the cursor only moves forward and stops at the end.
 */

#include "fuzz.h"
#include "sa_token.h"


/* "18446744073709551615" and below, all digits (leading zeros allowed) */
static uint64_t
fuzz_ref_version(const uint8_t *s, size_t len)
{
    static const char  max[] = "18446744073709551615";

    size_t    i;
    uint64_t  v;

    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return 0;
        }
    }

    while (len > 1 && *s == '0') {
        s++;
        len--;
    }

    if (len > sizeof(max) - 1
        || (len == sizeof(max) - 1 && memcmp(s, max, len) > 0))
    {
        return 0;
    }

    v = 0;
    for (i = 0; i < len; i++) {
        v = v * 10 + (uint64_t) (s[i] - '0');
    }

    return v;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t          start, end, ref_n, n;
    uint64_t        version, ref_version[4096];
    uint8_t        *msg;
    const uint8_t  *p, *id, *last;
    size_t          ref_off[4096];

    if (size > 65536) {
        return 0;
    }

    /* the reference: item boundaries by index */
    ref_n = 0;
    for (start = 0; start <= size && ref_n < 4096; start = end + 1) {
        for (end = start; end < size && data[end] != ' '; end++) {
            /* the item */
        }

        if (end - start == SA_TOKEN_ID_LEN
            || (end - start > SA_TOKEN_ID_LEN
                && data[start + SA_TOKEN_ID_LEN] == ':'))
        {
            ref_off[ref_n] = start;
            ref_version[ref_n] = end - start > SA_TOKEN_ID_LEN + 1
                ? fuzz_ref_version(data + start + SA_TOKEN_ID_LEN + 1,
                                   end - start - SA_TOKEN_ID_LEN - 1)
                : 0;
            ref_n++;
        }

        if (end == size) {
            break;
        }
    }

    msg = malloc(size ? size : 1);
    if (msg == NULL) {
        abort();
    }
    memcpy(msg, data, size);

    p = msg;
    last = msg;
    n = 0;

    while (sa_invalidation_next(&p, msg + size, &id, &version)) {
        FUZZ_ASSERT(p >= last && p <= msg + size);
        FUZZ_ASSERT(id >= msg && id + SA_TOKEN_ID_LEN <= msg + size);
        FUZZ_ASSERT(id + SA_TOKEN_ID_LEN <= p);
        FUZZ_ASSERT(n < ref_n || ref_n == 4096);

        if (n < ref_n) {
            FUZZ_ASSERT((size_t) (id - msg) == ref_off[n]);
            FUZZ_ASSERT(version == ref_version[n]);
        }

        last = p;
        n++;
    }

    FUZZ_ASSERT(n == ref_n || ref_n == 4096);
    FUZZ_ASSERT(p == msg + size);

    free(msg);
    return 0;
}
