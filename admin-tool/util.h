/* sa-admin: parsing and formatting of names, durations and times. */

#ifndef SA_ADMIN_UTIL_H
#define SA_ADMIN_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define SA_TIME_LEN  sizeof("2026-11-26T21:00:00Z")

/* "90d", "1h30m", "45s", "2w", "0": seconds; -1 when malformed */
int64_t sa_duration_parse(const char *s);

/*
 * --since: a duration ago ("24h"), unix seconds ("1764190000") or a UTC date
 * ("2026-11-26" or "2026-11-26T21:00:00Z"); -1 when malformed.
 */
int64_t sa_time_parse(const char *s, int64_t now);

#define SA_TIME_MIN  0LL                  /* 1970-01-01T00:00:00Z */
#define SA_TIME_MAX  253402300799LL       /* 9999-12-31T23:59:59Z */

/* RFC 3339 UTC; -1 and an empty string outside years 1970-9999 */
int sa_time_format(int64_t t, char out[SA_TIME_LEN]);

int64_t sa_now(void);

/* CLOCK_MONOTONIC in milliseconds */
int64_t sa_mono_ms(void);

/*
 * A long run's progress on stderr: sa_progress_due() is true once the run
 * has taken a second, then once a second.
 */
typedef struct {
    int64_t  start_ms;
    int64_t  shown_ms;
} sa_progress_t;

void sa_progress_start(sa_progress_t *p);
double sa_progress_elapsed(const sa_progress_t *p);    /* seconds */
int sa_progress_due(sa_progress_t *p);

/* team and account names: [a-z0-9][a-z0-9_.-]{0,62} */
int sa_name_valid(const char *s);

/*
 * users (--as, --owner, members): [A-Za-z0-9_.@+-]{1,100}; 100 holds the
 * email of an account of the longest team name (16 + 1 + 63 + 11 = 91),
 * the name of a service account as a team member and API caller
 */
#define SA_USER_MAX  100

int sa_user_valid(const char *s);
/* free text shown to people (a scope's description): NULL when s is
   well-formed UTF-8 without control characters (C0, DEL, C1, U+2028/9)
   or direction controls (U+202A-202E, U+2066-2069), else what it holds */
const char *sa_text_fault(const char *s);
/* NULL when s is well-formed UTF-8 (no overlong form, no surrogate) */
const char *sa_utf8_fault(const char *s);

/* the three team permissions of the contract */
int sa_perm_valid(const char *s);

/*
 * s into out for a message, at most max bytes of it and "..." if cut:
 * control bytes (C0, DEL) as \xNN, and with ascii_only every byte outside
 * printable ASCII and the backslash too.  out holds max + SA_ESCAPE_MORE.
 */
#define SA_ESCAPE_MORE  8
char *sa_escape(char *out, const char *s, size_t max, int ascii_only);

/*
 * s for a message: bytes outside printable ASCII as \xNN, cut at about
 * 200 bytes ("..."), so that what a Redis writer put into a name never
 * reaches a terminal as a control sequence or a line of its own.  One of
 * four static buffers in turn (up to four in one message).
 */
const char *sa_vis(const char *s);

#endif /* SA_ADMIN_UTIL_H */
