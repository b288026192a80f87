/*
 * The reply stream guard (sa_resp.h): a byte-at-a-time state machine over
 * RESP2 that keeps only counters, so that a hostile server can make it hold
 * nothing but its fixed-size state.
 */

#include <string.h>

#include "sa_resp.h"


enum {
    S_TYPE = 0,      /* the type byte of an item */
    S_LINE,          /* a status or error line, up to CR */
    S_NUM,           /* an integer, a bulk length or an element count */
    S_LF,            /* the LF after a line's CR */
    S_BULK,          /* bulk content */
    S_BULK_CR,       /* the CR after it */
    S_BULK_LF,       /* the LF after it */
    S_FAILED
};


void
sa_resp_init(sa_resp_t *r)
{
    memset(r, 0, sizeof(sa_resp_t));
    r->child = -1;
    r->bulk_max = SA_RESP_BULK_MAX;
    r->reply_max = SA_RESP_REPLY_MAX;
}


void
sa_resp_limits(sa_resp_t *r, long long bulk_max, size_t reply_max)
{
    r->bulk_max = bulk_max;
    r->reply_max = reply_max;
}


/* "... longer than a record", or than a message with a subscriber's bounds */
static const char *
sa_resp_too_long(sa_resp_t *r, int bulk)
{
    if (r->bulk_max == SA_RESP_BULK_MAX) {
        return bulk ? "bulk string longer than a record"
                    : "reply longer than a record";
    }

    return bulk ? "bulk string longer than a message"
                : "reply longer than a message";
}


static sa_resp_rc_e
sa_resp_fail(sa_resp_t *r, const char *why)
{
    r->state = S_FAILED;
    r->error = why;
    return SA_RESP_ERROR;
}


/* an item is complete: 1 when that completes the reply */
static int
sa_resp_item_done(sa_resp_t *r)
{
    r->state = S_TYPE;

    for ( ;; ) {
        if (r->depth == 0) {
            return 1;
        }

        if (--r->left[r->depth - 1] > 0) {
            return 0;
        }

        r->depth--;              /* that array is complete: an item too */
    }
}


/* the type byte of an item */
static sa_resp_rc_e
sa_resp_start(sa_resp_t *r, unsigned char c)
{
    long long  index;

    if (c != '+' && c != '-' && c != ':' && c != '$' && c != '*') {
        return sa_resp_fail(r, "unknown reply type");
    }

    if (r->depth == 0) {
        memset(&r->reply, 0, sizeof(sa_resp_reply_t));
        r->reply.type = c;

    } else if (++r->reply.items > SA_RESP_ITEMS_MAX) {
        return sa_resp_fail(r, "too many elements in one reply");
    }

    r->child = -1;

    if (r->depth == 1) {
        index = r->reply.n - r->left[0];
        r->child = (int) index;

        if (index < 3) {
            r->reply.etype[index] = c;
        }
    }

    r->cur = c;
    r->line = 0;
    r->neg = 0;
    r->digits = 0;
    r->num = 0;
    r->state = (c == '+' || c == '-') ? S_LINE : S_NUM;

    return SA_RESP_AGAIN;
}


/* a number's digit or sign, refused as soon as it leaves its range */
static sa_resp_rc_e
sa_resp_digit(sa_resp_t *r, unsigned char c)
{
    long long  max;

    if (c == '-' && r->digits == 0 && !r->neg) {
        r->neg = 1;
        return SA_RESP_AGAIN;
    }

    if (c < '0' || c > '9') {
        return sa_resp_fail(r, "malformed number");
    }

    /* as Redis writes them: no leading zero, no "-0" */
    if (r->digits++ == 19 || (r->digits == 2 && r->num == 0)) {
        return sa_resp_fail(r, "malformed number");
    }

    max = r->cur == '$' ? r->bulk_max
          : r->cur == '*' ? SA_RESP_ELEMENTS_MAX
          : 922337203685477580LL;         /* LLONG_MAX / 10 */

    if (r->cur == ':') {
        if (r->num > max || (r->num == max && c > '7')) {
            return sa_resp_fail(r, "integer out of range");
        }

        r->num = r->num * 10 + (c - '0');
        return SA_RESP_AGAIN;
    }

    r->num = r->num * 10 + (c - '0');

    if (r->neg ? r->num > 1 : r->num > max) {
        return sa_resp_fail(r, r->cur == '$' ? sa_resp_too_long(r, 1)
                                             : "array of too many elements");
    }

    return SA_RESP_AGAIN;
}


/* the LF of a line: the item, or the header of a bulk or an array, ends */
static sa_resp_rc_e
sa_resp_line_done(sa_resp_t *r)
{
    long long  n;

    n = r->neg ? -r->num : r->num;

    if (r->depth == 0) {
        r->reply.n = n;
    }

    if (r->cur == '$' && n >= 0) {
        r->bulk = n;
        r->state = n ? S_BULK : S_BULK_CR;
        return SA_RESP_AGAIN;
    }

    if (r->cur == '*' && n >= 0 && r->depth == SA_RESP_DEPTH_MAX) {
        return sa_resp_fail(r, "arrays nested too deep");
    }

    if (r->cur == '*' && n > 0) {
        r->left[r->depth++] = n;
        r->state = S_TYPE;
        return SA_RESP_AGAIN;
    }

    /* a nil bulk or array among the first three elements */
    if (r->cur != ':' && n == -1 && r->child >= 0 && r->child < 3) {
        r->reply.etype[r->child] = 'n';
    }

    return sa_resp_item_done(r) ? SA_RESP_REPLY : SA_RESP_AGAIN;
}


sa_resp_rc_e
sa_resp_scan(sa_resp_t *r, const unsigned char *p, size_t len, size_t *used)
{
    size_t         i, n, room;
    unsigned char  c;
    sa_resp_rc_e   rc;

    *used = 0;

    if (r->state == S_FAILED) {
        return SA_RESP_ERROR;
    }

    for (i = 0; i < len; i++) {
        c = p[i];

        if (r->state == S_BULK) {
            /* the content, as much of it as is here, at once */
            n = len - i;
            if ((long long) n > r->bulk) {
                n = (size_t) r->bulk;
            }

            if (r->reply.bytes + n > r->reply_max) {
                *used = i;
                return sa_resp_fail(r, sa_resp_too_long(r, 0));
            }

            if (r->child == 0 && r->depth == 1) {
                if (r->reply.kind_len < SA_RESP_KIND_MAX) {
                    room = SA_RESP_KIND_MAX - r->reply.kind_len;
                    memcpy(r->reply.kind + r->reply.kind_len, p + i,
                           n < room ? n : room);
                }

                r->reply.kind_len += n;
            }

            r->reply.bytes += n;
            r->bulk -= n;
            i += n - 1;

            if (r->bulk == 0) {
                r->state = S_BULK_CR;
            }

            continue;
        }

        if (r->state == S_TYPE && r->depth == 0) {
            /* a new reply */
            if (sa_resp_start(r, c) == SA_RESP_ERROR) {
                *used = i;
                return SA_RESP_ERROR;
            }

            r->reply.bytes = 1;
            continue;
        }

        if (++r->reply.bytes > r->reply_max) {
            *used = i;
            return sa_resp_fail(r, sa_resp_too_long(r, 0));
        }

        switch (r->state) {

        case S_TYPE:
            if (sa_resp_start(r, c) == SA_RESP_ERROR) {
                *used = i;
                return SA_RESP_ERROR;
            }
            break;

        case S_LINE:
            if (c == '\r') {
                r->state = S_LF;

            } else if (c == '\n') {
                *used = i;
                return sa_resp_fail(r, "LF inside a line");

            } else if (++r->line > SA_RESP_LINE_MAX) {
                *used = i;
                return sa_resp_fail(r, "line too long");
            }
            break;

        case S_NUM:
            if (c == '\r') {
                if (r->digits == 0 || (r->neg && r->num == 0)) {
                    *used = i;
                    return sa_resp_fail(r, "malformed number");
                }
                r->state = S_LF;
                break;
            }

            if (sa_resp_digit(r, c) == SA_RESP_ERROR) {
                *used = i;
                return SA_RESP_ERROR;
            }
            break;

        case S_LF:
            if (c != '\n') {
                *used = i;
                return sa_resp_fail(r, "CR without LF");
            }

            rc = r->cur == '+' || r->cur == '-'
                 ? (sa_resp_item_done(r) ? SA_RESP_REPLY : SA_RESP_AGAIN)
                 : sa_resp_line_done(r);

            if (rc != SA_RESP_AGAIN) {
                *used = rc == SA_RESP_REPLY ? i + 1 : i;
                return rc;
            }
            break;

        case S_BULK_CR:
            if (c != '\r') {
                *used = i;
                return sa_resp_fail(r, "bulk string not ended by CRLF");
            }
            r->state = S_BULK_LF;
            break;

        case S_BULK_LF:
            if (c != '\n') {
                *used = i;
                return sa_resp_fail(r, "bulk string not ended by CRLF");
            }

            if (r->child == 0 && r->depth == 1) {
                r->reply.kind_ok = r->reply.kind_len <= SA_RESP_KIND_MAX;
            }

            if (sa_resp_item_done(r)) {
                *used = i + 1;
                return SA_RESP_REPLY;
            }
            break;
        }
    }

    *used = len;
    return SA_RESP_AGAIN;
}


static int
sa_resp_kind_is(const sa_resp_reply_t *reply, const char *kind)
{
    size_t  len = strlen(kind);

    return reply->kind_ok && reply->kind_len == len
           && memcmp(reply->kind, kind, len) == 0;
}


sa_resp_route_e
sa_resp_route(const sa_resp_reply_t *reply, size_t awaited, int subscribed)
{
    if (awaited) {
        return SA_RESP_AWAITED;
    }

    /* the only pushes the gateway reads: three elements, two strings */
    if (!subscribed || reply->type != '*' || reply->n != 3
        || reply->etype[0] != '$' || reply->etype[1] != '$')
    {
        return SA_RESP_UNEXPECTED;
    }

    if (sa_resp_kind_is(reply, "message") && reply->etype[2] == '$') {
        return SA_RESP_MESSAGE;
    }

    if (sa_resp_kind_is(reply, "subscribe") && reply->etype[2] == ':') {
        return SA_RESP_SUBSCRIBED;
    }

    return SA_RESP_UNEXPECTED;
}


size_t
sa_resp_printable(unsigned char *dst, size_t size, const unsigned char *src,
    size_t len)
{
    static const char  hex[] = "0123456789abcdef";

    size_t         i, n, need, all, room;
    unsigned char  c;

    all = 0;
    for (i = 0; i < len; i++) {
        c = src[i];
        all += (c < 0x20 || c >= 0x7f || c == '\\' || c == '"') ? 4 : 1;
    }

    /* cut short: room for "..." after what fits */
    room = all <= size ? size : (size >= 3 ? size - 3 : 0);

    n = 0;

    for (i = 0; i < len; i++) {
        c = src[i];
        need = (c < 0x20 || c >= 0x7f || c == '\\' || c == '"') ? 4 : 1;

        if (n + need > room) {
            break;
        }

        if (need == 1) {
            dst[n++] = c;

        } else {
            dst[n++] = '\\';
            dst[n++] = 'x';
            dst[n++] = hex[c >> 4];
            dst[n++] = hex[c & 0xf];
        }
    }

    if (i < len && size >= 3) {
        memcpy(dst + n, "...", 3);
        n += 3;
    }

    return n;
}
