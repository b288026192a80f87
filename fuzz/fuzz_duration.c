/*
 * sa-admin's durations and times (admin-tool/util.c).
 *
 * The bytes, NUL-terminated, go to sa_duration_parse() (--expires,
 * --overlap) and sa_time_parse() (audit --since), which must never crash.
 *
 *   durations: -1 or 0..100 years (SA_DURATION_MAX, 100 * 366 days), and
 *              equal to a reference parser of ([0-9]{1,10}[smhdw])+ | "0"
 *   times:     all digits (at most 12): that number; a valid duration d:
 *              now - d; otherwise -1 or a date
 *
 * The first 8 bytes also make a timestamp for sa_time_format() (used for
 * created_at, expires_at, last_used_at and audit times read back from
 * Redis): its output must be a NUL-terminated string inside SA_TIME_LEN
 * whatever the value, and for years 1970..9999 parse back to the same
 * timestamp through sa_time_parse().
 *
 * The other util.c checks of command-line input (team and account names,
 * users, permissions) are compared with reference implementations too.
 *
 * Found here and fixed: sa_time_format() used to leave its buffer without
 * a NUL for years outside 0..9999 (fuzz/crashes/README.md); the crashing
 * inputs stay in the corpus as regression seeds.
 */

#include "fuzz.h"
#include "util.h"

#define DURATION_MAX  (100LL * 366 * 86400)
#define NOW           1764190000LL          /* 2025-11-26T20:46:40Z */
#define YEAR_10000    253402300800LL        /* 10000-01-01T00:00:00Z */


static int64_t
ref_duration(const char *s)
{
    int64_t      total = 0, n;
    size_t       digits;
    const char  *u;

    if (strcmp(s, "0") == 0) {
        return 0;
    }

    if (*s == '\0') {
        return -1;
    }

    while (*s) {
        digits = strspn(s, "0123456789");
        if (digits == 0 || digits > 10) {
            return -1;
        }
        n = strtoll(s, NULL, 10);
        s += digits;

        u = strchr("smhdw", *s);
        if (*s == '\0' || u == NULL) {
            return -1;
        }
        s++;

        static const int64_t  mult[] = { 1, 60, 3600, 86400, 604800 };
        total += n * mult[u - "smhdw"];
        if (total > DURATION_MAX) {
            return -1;
        }
    }

    return total;
}


static void
check_format(int64_t t)
{
    char     *out, again[SA_TIME_LEN];
    int64_t   back;
    size_t    len;

    /* exact size, no NUL anywhere until the function writes one */
    out = malloc(SA_TIME_LEN);
    FUZZ_ASSERT(out != NULL);
    memset(out, 0xA5, SA_TIME_LEN);
    sa_time_format(t, out);

    if (memchr(out, '\0', SA_TIME_LEN) == NULL) {
        fprintf(stderr, "sa_time_format(%lld) leaves no NUL in its %zu "
                "bytes: \"%.*s\"\n", (long long) t, SA_TIME_LEN,
                (int) SA_TIME_LEN, out);
    }

    /* what every caller does next (json_string(), printf "%s") */
    len = strlen(out);

    if (t >= 0 && t < YEAR_10000) {
        FUZZ_ASSERT(len == SA_TIME_LEN - 1);
        back = sa_time_parse(out, NOW);
        if (back != t) {
            fprintf(stderr, "sa_time_parse(\"%s\") = %lld, want %lld\n", out,
                    (long long) back, (long long) t);
            abort();
        }
        sa_time_format(back, again);
        FUZZ_ASSERT(strcmp(out, again) == 0);
    }

    free(out);
}


/* [a-z0-9][a-z0-9_.-]{0,62} */
static int
ref_name_valid(const char *s)
{
    size_t  i, n = strlen(s);

    if (n == 0 || n > 63) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        char  c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')
              || (i > 0 && (c == '_' || c == '.' || c == '-'))))
        {
            return 0;
        }
    }

    return 1;
}


/* [A-Za-z0-9_.@+-]{1,64} */
static int
ref_user_valid(const char *s)
{
    size_t  i, n = strlen(s);

    if (n == 0 || n > 64) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        char  c = s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || strchr("_.@+-", c) != NULL))
        {
            return 0;
        }
    }

    return 1;
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char     *s;
    int64_t   d, t, ts;
    size_t    len;

    s = fuzz_cstr(data, size);
    len = strlen(s);

    d = sa_duration_parse(s);
    FUZZ_ASSERT(d == -1 || (d >= 0 && d <= DURATION_MAX));
    if (d != ref_duration(s)) {
        fprintf(stderr, "sa_duration_parse(\"%s\") = %lld, reference %lld\n",
                s, (long long) d, (long long) ref_duration(s));
        abort();
    }

    t = sa_time_parse(s, NOW);

    if (len > 0 && len <= 12 && strspn(s, "0123456789") == len) {
        FUZZ_ASSERT(t == strtoll(s, NULL, 10));

    } else if (d >= 0) {
        FUZZ_ASSERT(t == NOW - d);

    } else if (t != -1) {
        /* a date: it starts with its year (strptime skips blanks) */
        FUZZ_ASSERT(strpbrk(s, "0123456789") != NULL);
    }

    FUZZ_ASSERT(sa_name_valid(s) == ref_name_valid(s));
    FUZZ_ASSERT(sa_user_valid(s) == ref_user_valid(s));
    FUZZ_ASSERT(sa_perm_valid(s) == (strcmp(s, "service_accounts:create") == 0
                                     || strcmp(s, "service_accounts:delete")
                                        == 0
                                     || strcmp(s, "service_accounts:tokens")
                                        == 0));

    if (size >= 8) {
        memcpy(&ts, data, 8);
        check_format(ts);
        /* and a value in the years people use */
        check_format((int64_t) ((uint64_t) ts % (uint64_t) YEAR_10000));
    }

    free(s);
    return 0;
}
