/*
 * A minimal TAP producer for the C unit tests, so they run under prove with
 * the integration tests.  Header-only: each test program includes it once.
 */

#ifndef SA_TAP_H
#define SA_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int  tap_run, tap_failed;


static inline int
ok(int cond, const char *fmt, ...)
{
    va_list  ap;

    tap_run++;
    printf("%sok %d - ", cond ? "" : "not ", tap_run);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");

    if (!cond) {
        tap_failed++;
    }

    return cond;
}


static inline int
is_long(long got, long want, const char *name)
{
    if (!ok(got == want, "%s", name)) {
        printf("#   got %ld, want %ld\n", got, want);
        return 0;
    }

    return 1;
}


static inline int
is_str(const char *got, const char *want, const char *name)
{
    int  same = got != NULL && want != NULL && strcmp(got, want) == 0;

    if (!ok(same, "%s", name)) {
        printf("#   got \"%s\", want \"%s\"\n", got ? got : "(null)",
               want ? want : "(null)");
        return 0;
    }

    return 1;
}


static inline int
done_testing(void)
{
    printf("1..%d\n", tap_run);
    return tap_failed ? 1 : 0;
}

#endif /* SA_TAP_H */
