/* Unit tests: the reply stream guard (core/sa_resp.c) and reply routing. */

#include <stdlib.h>

#include "tap.h"
#include "sa_resp.h"


/* scans s whole (in pieces of step bytes): replies seen, or -1 on refusal */
static int
scan(const char *s, size_t len, size_t step, sa_resp_t *r)
{
    int           replies = 0;
    size_t        used, n;
    sa_resp_rc_e  rc;

    sa_resp_init(r);

    while (len) {
        n = len < step ? len : step;

        while (n) {
            rc = sa_resp_scan(r, (const unsigned char *) s, n, &used);
            s += used;
            len -= used;
            n -= used;

            if (rc == SA_RESP_ERROR) {
                return -1;
            }

            if (rc == SA_RESP_REPLY) {
                replies++;
            }
        }
    }

    return replies;
}


static int
replies(const char *s)
{
    sa_resp_t  r;
    int        whole, bytewise;

    whole = scan(s, strlen(s), strlen(s) ? strlen(s) : 1, &r);
    bytewise = scan(s, strlen(s), 1, &r);

    return whole == bytewise ? whole : -2;
}


static const char *
refusal(const char *s, size_t len)
{
    sa_resp_t  r;

    return scan(s, len, len, &r) == -1 ? r.error : NULL;
}


static void
test_accepted(void)
{
    is_long(replies("+OK\r\n"), 1, "a status");
    is_long(replies("-ERR no\r\n"), 1, "an error");
    is_long(replies(":0\r\n:-12\r\n:9223372036854775807\r\n"), 3, "integers");
    is_long(replies("$-1\r\n*-1\r\n*0\r\n$0\r\n\r\n"), 4, "nil, empty");
    is_long(replies("$5\r\nhel\r\n\r\n"), 1, "a bulk holding CR LF");
    is_long(replies("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\na b\r\n"), 1,
            "a pub/sub message");
    is_long(replies("*3\r\n$6\r\nmaster\r\n:5\r\n*2\r\n*3\r\n$1\r\na\r\n"
                    "$1\r\n1\r\n$1\r\n5\r\n*3\r\n$1\r\nb\r\n$1\r\n2\r\n"
                    "$1\r\n5\r\n"), 1, "ROLE of a master, two replicas");
    is_long(replies("$5\r\nhel"), 0, "an incomplete bulk: no reply yet");
}


static void
test_refused(void)
{
    static char  big[SA_RESP_BULK_MAX + 64];
    const char  *why;
    int          n;

    is_str(refusal("$100000000\r\n", 12), "bulk string longer than a record",
           "a 100 MB bulk, at its length");
    is_str(refusal("$65537", 6), "bulk string longer than a record",
           "one byte more than a record, before the CR");
    is_str(refusal("*100000000\r\n", 12), "array of too many elements",
           "*100000000, at its count");
    is_str(refusal("*65\r\n", 5), "array of too many elements",
           "65 elements");
    is_str(refusal("*1\r\n*1\r\n*1\r\n*1\r\n", 16), "arrays nested too deep",
           "four levels");
    is_str(refusal("*1\r\n*1\r\n*1\r\n*0\r\n", 16), "arrays nested too deep",
           "an empty array four levels down");
    is_str(refusal("!3\r\n", 4), "unknown reply type", "RESP3 and others");
    is_str(refusal(":01\r\n", 5), "malformed number", "a leading zero");
    is_str(refusal("$-0\r\n", 5), "malformed number", "-0");
    is_str(refusal("$-2\r\n", 5), "bulk string longer than a record",
           "a negative length");
    is_str(refusal(":9223372036854775808\r\n", 22), "integer out of range",
           "an integer above LLONG_MAX");
    is_str(refusal(":\r\n", 3), "malformed number", "no digits");
    is_str(refusal("+O\nK\r\n", 6), "LF inside a line", "a bare LF");
    is_str(refusal("+OK\rX\n", 6), "CR without LF", "a bare CR");
    is_str(refusal("$1\r\nab\r\n", 8), "bulk string not ended by CRLF",
           "a bulk longer than announced");

    memset(big, 'x', sizeof(big));
    memcpy(big, "+", 1);
    why = refusal(big, SA_RESP_LINE_MAX + 2);
    is_str(why, "line too long", "a status line of more than 1 KiB");

    /* 64 bulk strings of 1,100 bytes: more than a record in all */
    {
        char    *p, *s = malloc(64 * 1200);
        size_t   i;

        p = s + sprintf(s, "*64\r\n");
        for (i = 0; i < 64; i++) {
            p += sprintf(p, "$1100\r\n");
            memset(p, 'y', 1100);
            p += 1100;
            p += sprintf(p, "\r\n");
        }
        is_str(refusal(s, p - s), "reply longer than a record",
               "an array longer than a record in all");
        free(s);
    }

    /* a record of exactly the limit passes */
    {
        char    *s = malloc(SA_RESP_BULK_MAX + 32);
        int      h = sprintf(s, "$%d\r\n", SA_RESP_BULK_MAX);
        sa_resp_t r;

        memset(s + h, 'z', SA_RESP_BULK_MAX);
        memcpy(s + h + SA_RESP_BULK_MAX, "\r\n", 2);
        n = scan(s, h + SA_RESP_BULK_MAX + 2, 4096, &r);
        is_long(n, 1, "a bulk of exactly a record's length");
        free(s);
    }

    /* refused for good */
    {
        sa_resp_t  r;
        size_t     used;

        ok(scan("?", 1, 1, &r) == -1
           && sa_resp_scan(&r, (const unsigned char *) "+OK\r\n", 5, &used)
              == SA_RESP_ERROR,
           "a refused stream stays refused");
    }
}


static sa_resp_route_e
route(const char *s, size_t awaited, int subscribed)
{
    sa_resp_t  r;

    if (scan(s, strlen(s), strlen(s), &r) != 1) {
        return (sa_resp_route_e) -1;
    }

    return sa_resp_route(&r.reply, awaited, subscribed);
}


static void
test_route(void)
{
    is_long(route("+OK\r\n", 1, 0), SA_RESP_AWAITED, "awaited: any reply");
    is_long(route("+OK\r\n", 0, 0), SA_RESP_UNEXPECTED,
            "an extra reply: unexpected");
    is_long(route("+PONG\r\n", 0, 1), SA_RESP_UNEXPECTED,
            "subscribed: a status is unexpected");
    is_long(route("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n", 0, 1),
            SA_RESP_MESSAGE, "a message");
    is_long(route("*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n", 0, 1),
            SA_RESP_SUBSCRIBED, "a confirmation");
    is_long(route("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n", 0, 0),
            SA_RESP_UNEXPECTED, "a message while not subscribed");
    is_long(route("*1\r\n$7\r\nmessage\r\n", 0, 1), SA_RESP_UNEXPECTED,
            "a message of one element");
    is_long(route("*3\r\n$7\r\nmessage\r\n$-1\r\n$1\r\nx\r\n", 0, 1),
            SA_RESP_UNEXPECTED, "a message with a nil channel");
    is_long(route("*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n:1\r\n", 0, 1),
            SA_RESP_UNEXPECTED, "a message with an integer payload");
    is_long(route("*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n$1\r\n1\r\n", 0, 1),
            SA_RESP_UNEXPECTED, "a confirmation with a string count");
    is_long(route("*3\r\n+message\r\n$2\r\nch\r\n$1\r\nx\r\n", 0, 1),
            SA_RESP_UNEXPECTED, "a kind that is a status");
    is_long(route("*3\r\n$8\r\nmessagex\r\n$2\r\nch\r\n$1\r\nx\r\n", 0, 1),
            SA_RESP_UNEXPECTED, "another kind");
    is_long(route("*4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$2\r\nch\r\n$1\r\nx\r\n",
                  0, 1),
            SA_RESP_UNEXPECTED, "pmessage (never subscribed to)");
    is_long(route("*3\r\n$20\r\nmessagemessagemessag\r\n$2\r\nch\r\n"
                  "$1\r\nx\r\n", 0, 1),
            SA_RESP_UNEXPECTED, "a long kind");
}


/* the bounds exactly, and one more */
static void
test_bounds(void)
{
    char    *s = malloc(SA_RESP_REPLY_MAX + 64), *p;
    size_t   i, head, total;

    p = s + sprintf(s, "*64\r\n");
    for (i = 0; i < 64; i++) {
        p += sprintf(p, ":1\r\n");
    }
    is_long(scan(s, p - s, 7, &(sa_resp_t){0}), 1, "an array of 64 elements");

    /* [[63 x :1] x 3, [63 or 64 x :1]]: 256 items below the top, or 257 */
    for (total = 0; total < 2; total++) {
        p = s + sprintf(s, "*4\r\n");
        for (i = 0; i < 4; i++) {
            size_t  j, k = (i == 3 && total) ? 64 : 63;

            p += sprintf(p, "*%zu\r\n", k);
            for (j = 0; j < k; j++) {
                p += sprintf(p, ":1\r\n");
            }
        }
        if (total == 0) {
            is_long(scan(s, p - s, 5, &(sa_resp_t){0}), 1,
                    "256 items in one reply");
        } else {
            is_str(refusal(s, p - s), "too many elements in one reply",
                   "257 items in one reply");
        }
    }

    is_long(replies("*1\r\n*1\r\n*1\r\n:1\r\n"), 1, "arrays 3 deep");
    is_long(replies("*1\r\n*1\r\n*1\r\n*-1\r\n"), 1,
            "a nil array 4 levels down");

    /* [64 KiB bulk, bulk]: SA_RESP_REPLY_MAX bytes, then one more */
    for (total = SA_RESP_REPLY_MAX; total <= SA_RESP_REPLY_MAX + 1; total++) {
        p = s + sprintf(s, "*2\r\n$%d\r\n", SA_RESP_BULK_MAX);
        memset(p, 'x', SA_RESP_BULK_MAX);
        p += SA_RESP_BULK_MAX;
        p += sprintf(p, "\r\n");
        head = p - s;
        i = total - head - 7 - 2;              /* "$NNNN\r\n" ... "\r\n" */
        p += sprintf(p, "$%zu\r\n", i);
        memset(p, 'y', i);
        p += i;
        p += sprintf(p, "\r\n");

        if (total == SA_RESP_REPLY_MAX) {
            is_long(scan(s, p - s, 1000, &(sa_resp_t){0}), 1,
                    "a reply of exactly SA_RESP_REPLY_MAX bytes");
        } else {
            is_str(refusal(s, p - s), "reply longer than a record",
                   "a reply of SA_RESP_REPLY_MAX + 1 bytes");
        }
        is_long(p - s, total, "(of that length)");
    }

    free(s);

    /* a subscriber's bounds: larger, and refused with their own words */
    {
        sa_resp_t  r;
        size_t     used;
        char       m[400];
        int        h;

        sa_resp_init(&r);
        sa_resp_limits(&r, 100, 120);
        h = sprintf(m, "$100\r\n");
        memset(m + h, 'm', 100);
        memcpy(m + h + 100, "\r\n", 2);
        is_long(sa_resp_scan(&r, (const unsigned char *) m, h + 102, &used),
                SA_RESP_REPLY, "limits: a bulk of bulk_max");

        sa_resp_init(&r);
        sa_resp_limits(&r, 100, 120);
        ok(sa_resp_scan(&r, (const unsigned char *) "$101\r\n", 6, &used)
           == SA_RESP_ERROR
           && strcmp(r.error, "bulk string longer than a message") == 0,
           "limits: bulk_max + 1, refused as longer than a message");

        sa_resp_init(&r);
        sa_resp_limits(&r, 100, 110);
        h = sprintf(m, "*2\r\n$100\r\n");
        memset(m + h, 'm', 100);
        h += 100;
        h += sprintf(m + h, "\r\n$1\r\nx\r\n");
        ok(sa_resp_scan(&r, (const unsigned char *) m, h, &used)
           == SA_RESP_ERROR
           && strcmp(r.error, "reply longer than a message") == 0,
           "limits: a reply over reply_max, refused as longer than a message");

        sa_resp_init(&r);
        is_long(r.bulk_max, SA_RESP_BULK_MAX, "limits: a record's by default");
    }
}


static const char *
printable(const char *s, size_t len, size_t size)
{
    static unsigned char  out[256];
    size_t                n;

    memset(out, '#', sizeof(out));
    n = sa_resp_printable(out, size, (const unsigned char *) s, len);
    if (n > size || out[size] != '#') {
        return "overflow";
    }
    out[n] = '\0';
    return (const char *) out;
}


static void
test_printable(void)
{
    is_str(printable("ERR wrong", 9, 100), "ERR wrong", "printable as it is");
    is_str(printable("a\x1b]0;x\a\r\0\x7f\xff\"\\z", 14, 100),
           "a\\x1b]0;x\\x07\\x0d\\x00\\x7f\\xff\\x22\\x5cz",
           "control bytes, DEL, non-ASCII, quote, backslash escaped");
    is_str(printable("abcdefghij", 10, 10), "abcdefghij", "exactly the room");
    is_str(printable("abcdefghijk", 11, 10), "abcdefg...", "cut short");
    is_str(printable("abcdef\x01", 7, 9), "abcdef...",
           "an escape that does not fit is left out");
    is_str(printable("abcdef", 6, 2), "", "no room even for ...");
    is_str(printable("", 0, 10), "", "empty");
}


int
main(void)
{
    test_accepted();
    test_refused();
    test_bounds();
    test_printable();
    test_route();

    return done_testing();
}
