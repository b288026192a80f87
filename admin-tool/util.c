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


/* the next code point of s at *i, -1 for a malformed sequence */
static long
sa_utf8_next(const unsigned char *s, size_t *i)
{
    unsigned char  c = s[*i];
    long           cp, min;
    int            n, k;

    if (c < 0x80) {
        (*i)++;
        return c;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 1; cp = c & 0x1f; min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 2; cp = c & 0x0f; min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 3; cp = c & 0x07; min = 0x10000;
    } else {
        return -1;
    }
    for (k = 1; k <= n; k++) {
        if ((s[*i + k] & 0xc0) != 0x80) {
            return -1;
        }
        cp = (cp << 6) | (s[*i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return -1;
    }
    *i += n + 1;
    return cp;
}


const char *
sa_utf8_fault(const char *s)
{
    size_t  i = 0;

    while (s[i]) {
        if (sa_utf8_next((const unsigned char *) s, &i) < 0) {
            return "bytes that are not UTF-8";
        }
    }
    return NULL;
}


const char *
sa_text_fault(const char *s)
{
    size_t  i = 0;
    long    cp;

    while (s[i]) {
        cp = sa_utf8_next((const unsigned char *) s, &i);
        if (cp < 0) {
            return "bytes that are not UTF-8";
        }
        if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x2028
            || cp == 0x2029)
        {
            return "a control character";
        }
        if ((cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069)) {
            return "a direction control (U+202A-202E, U+2066-2069)";
        }
    }
    return NULL;
}


int
sa_perm_valid(const char *s)
{
    return strcmp(s, "service_accounts:create") == 0
           || strcmp(s, "service_accounts:delete") == 0
           || strcmp(s, "service_accounts:tokens") == 0;
}


char *
sa_escape(char *out, const char *s, size_t max, int ascii_only)
{
    static const char    hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *) s;
    size_t               n = 0;

    for ( /* void */ ; *p && n < max; p++) {
        if (*p >= 0x20 && *p != 0x7f
            && (!ascii_only || (*p < 0x7f && *p != '\\')))
        {
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


const char *
sa_vis(const char *s)
{
    static char          bufs[4][200 + SA_ESCAPE_MORE];
    static unsigned      next;

    return sa_escape(bufs[next++ % 4], s, 200, 1);
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
