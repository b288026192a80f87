#define _GNU_SOURCE    /* strptime(), timegm() */

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

#define SA_DURATION_MAX  (100LL * 366 * 86400)


static int64_t
sa_unit_seconds(char unit)
{
    switch (unit) {
    case 's': return 1;
    case 'm': return 60;
    case 'h': return 3600;
    case 'd': return 86400;
    case 'w': return 7 * 86400;
    }

    return 0;
}


int64_t
sa_duration_parse(const char *s)
{
    int64_t  total = 0, n, unit;
    int      digits;

    if (strcmp(s, "0") == 0) {
        return 0;
    }

    if (*s == '\0') {
        return -1;
    }

    while (*s) {
        n = 0;
        for (digits = 0; *s >= '0' && *s <= '9'; s++, digits++) {
            if (digits == 10) {
                return -1;
            }
            n = n * 10 + (*s - '0');
        }

        unit = sa_unit_seconds(*s);
        if (digits == 0 || unit == 0) {
            return -1;
        }
        s++;

        total += n * unit;
        if (total > SA_DURATION_MAX) {
            return -1;
        }
    }

    return total;
}


static int
sa_all_digits(const char *s)
{
    if (*s == '\0') {
        return 0;
    }

    return strspn(s, "0123456789") == strlen(s);
}


int64_t
sa_time_parse(const char *s, int64_t now)
{
    struct tm    tm;
    const char  *end;
    int64_t      d;

    if (sa_all_digits(s) && strlen(s) <= 12) {
        return strtoll(s, NULL, 10);
    }

    d = sa_duration_parse(s);
    if (d >= 0) {
        return now - d;
    }

    memset(&tm, 0, sizeof(tm));
    end = strptime(s, "%Y-%m-%d", &tm);
    if (end != NULL && *end == 'T') {
        end = strptime(end + 1, "%H:%M:%S", &tm);
        if (end == NULL || strcmp(end, "Z") != 0) {
            return -1;
        }
        end++;
    }

    if (end == NULL || *end != '\0') {
        return -1;
    }

    return (int64_t) timegm(&tm);
}


int
sa_time_format(int64_t t, char out[SA_TIME_LEN])
{
    time_t     tt = (time_t) t;
    struct tm  tm;

    /* years 1970-9999 only: unsigned data from Redis may hold anything */
    if (t < SA_TIME_MIN || t > SA_TIME_MAX || gmtime_r(&tt, &tm) == NULL
        || strftime(out, SA_TIME_LEN, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
    {
        out[0] = '\0';
        return -1;
    }

    return 0;
}


int64_t
sa_now(void)
{
    return (int64_t) time(NULL);
}


static int
sa_chars_in(const char *s, const char *set, size_t max)
{
    size_t  len = strlen(s);

    return len > 0 && len <= max && strspn(s, set) == len;
}


int
sa_name_valid(const char *s)
{
    return sa_chars_in(s, "abcdefghijklmnopqrstuvwxyz0123456789_.-", 63)
           && strchr("_.-", s[0]) == NULL;
}


int
sa_user_valid(const char *s)
{
    return sa_chars_in(s, "abcdefghijklmnopqrstuvwxyz"
                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@+-",
                      SA_USER_MAX);
}


int
sa_perm_valid(const char *s)
{
    return strcmp(s, "service_accounts:create") == 0
           || strcmp(s, "service_accounts:delete") == 0
           || strcmp(s, "service_accounts:tokens") == 0;
}


const char *
sa_vis(const char *s)
{
    static char          bufs[4][256];
    static unsigned      next;
    static const char    hex[] = "0123456789abcdef";
    char                *out = bufs[next++ % 4];
    const unsigned char *p = (const unsigned char *) s;
    size_t               n = 0;

    for ( /* void */ ; *p && n < 200; p++) {
        if (*p >= 0x20 && *p < 0x7f && *p != '\\') {
            out[n++] = (char) *p;
        } else {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }

    if (*p) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n] = '\0';

    return out;
}


int64_t
sa_mono_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


void
sa_progress_start(sa_progress_t *p)
{
    p->start_ms = p->shown_ms = sa_mono_ms();
}


double
sa_progress_elapsed(const sa_progress_t *p)
{
    return (double) (sa_mono_ms() - p->start_ms) / 1000.0;
}


int
sa_progress_due(sa_progress_t *p)
{
    int64_t  now = sa_mono_ms();

    if (now - p->shown_ms < 1000) {
        return 0;
    }

    p->shown_ms = now;
    return 1;
}
