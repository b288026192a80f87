/*
 * A guard in front of hiredis's reply reader: scans the byte stream from a
 * Redis server or a sentinel (RESP2) as it arrives, without buffering it,
 * and says where each reply ends, or that the stream is not one the gateway
 * accepts.  Only bytes it has accepted are handed to hiredis's redisReader,
 * which then never holds more than one bounded reply.
 *
 * Refused as soon as the offending byte is seen: an unknown type byte, a
 * malformed length or integer, a bulk string longer than a record
 * (SA_RESP_BULK_MAX, refused when its length is announced), an array of
 * more elements than any reply the gateway asks for (SA_RESP_ELEMENTS_MAX,
 * SA_RESP_ITEMS_MAX in all), nesting deeper than ROLE's (SA_RESP_DEPTH_MAX),
 * a status, error or number line longer than SA_RESP_LINE_MAX, a reply of
 * more than SA_RESP_REPLY_MAX bytes in all, a bulk not ended by CRLF.
 *
 * sa_resp_route() then decides, for each complete reply, whether it is the
 * answer to a command sent (the oldest one still unanswered), a pub/sub
 * message or subscribe confirmation of the shape the gateway reads, or a
 * reply nobody asked for: what hiredis's async layer asserts on.
 *
 * No nginx, no hiredis: unit-tested in t/unit/test_resp.c and fuzzed (with
 * hiredis's reader behind it) by fuzz/fuzz_resp.c.
 */

#ifndef SA_RESP_H
#define SA_RESP_H

#include <stddef.h>

#include "sa_record.h"

#define SA_RESP_BULK_MAX      SA_RECORD_MAX_LEN
#define SA_RESP_REPLY_MAX     (SA_RECORD_MAX_LEN + 4096)
#define SA_RESP_LINE_MAX      1024
/* ROLE on a master: [ "master", offset, [ [ip, port, offset], ... ] ] */
#define SA_RESP_DEPTH_MAX     3
#define SA_RESP_ELEMENTS_MAX  64
#define SA_RESP_ITEMS_MAX     256
#define SA_RESP_KIND_MAX      16

/*
 * A subscriber's bounds (sa_resp_limits()): an invalidation message is no
 * record, and one change of an account names every token of it, about 20
 * bytes each (1 MiB: some 50,000 tokens).
 */
#define SA_RESP_MESSAGE_MAX   (1024 * 1024)

typedef enum {
    SA_RESP_AGAIN = 0,       /* every byte taken, no reply complete yet */
    SA_RESP_REPLY,           /* a reply ends after *used bytes */
    SA_RESP_ERROR            /* refused: r->error says why */
} sa_resp_rc_e;

typedef enum {
    SA_RESP_UNEXPECTED = 0,  /* a reply nobody asked for, or malformed push */
    SA_RESP_AWAITED,         /* the answer to the oldest command sent */
    SA_RESP_MESSAGE,         /* [ "message", channel, payload ] */
    SA_RESP_SUBSCRIBED       /* [ "subscribe", channel, count ] */
} sa_resp_route_e;

/* the shape of the last complete reply (what routing needs) */
typedef struct {
    unsigned char   type;        /* '+', '-', ':', '$', '*' */
    long long       n;           /* '$' length, '*' count (-1: nil), ':' */
    size_t          bytes;       /* on the wire */
    size_t          items;       /* scalars and arrays below the top */
    /* a top-level array's first three elements: '$', '+', '-', ':', '*',
     * 'n' for a nil bulk or array, 0 for none */
    unsigned char   etype[3];
    /* element 0 when it is a bulk string of at most SA_RESP_KIND_MAX */
    unsigned char   kind[SA_RESP_KIND_MAX];
    size_t          kind_len;
    unsigned        kind_ok:1;
} sa_resp_reply_t;

typedef struct {
    int             state;
    unsigned char   cur;         /* type of the item being read */
    int             neg;
    int             digits;
    long long       num;
    size_t          line;        /* bytes of the current line */
    long long       bulk;        /* bytes of bulk content still owed */
    int             child;       /* index among the top array's elements
                                    of the item being read, or -1 */
    unsigned        depth;       /* arrays open */
    long long       left[SA_RESP_DEPTH_MAX];   /* elements each still owes */
    sa_resp_reply_t reply;
    const char     *error;
    long long       bulk_max;    /* SA_RESP_BULK_MAX unless set */
    size_t          reply_max;   /* SA_RESP_REPLY_MAX unless set */
} sa_resp_t;

void sa_resp_init(sa_resp_t *r);

/* other bounds for a bulk string and a reply (a subscriber's, or tests') */
void sa_resp_limits(sa_resp_t *r, long long bulk_max, size_t reply_max);

/*
 * Scans len bytes at p.  SA_RESP_REPLY: the reply in r->reply ends after
 * *used bytes; call again with the rest.  SA_RESP_AGAIN: *used == len.
 * SA_RESP_ERROR: the stream is refused (for good), *used is what came
 * before the offending byte.
 */
sa_resp_rc_e sa_resp_scan(sa_resp_t *r, const unsigned char *p, size_t len,
    size_t *used);

/* awaited: commands sent and not yet answered; subscribed: SUBSCRIBE sent */
sa_resp_route_e sa_resp_route(const sa_resp_reply_t *reply, size_t awaited,
    int subscribed);

/*
 * What a server said (an error reply, a role, an address), for a log line:
 * printable ASCII as it is, any other byte and '\\' and '"' as \xNN, at
 * most size bytes (cut short with "..."); returns the bytes written, no NUL.
 */
size_t sa_resp_printable(unsigned char *dst, size_t size,
    const unsigned char *src, size_t len);

#endif /* SA_RESP_H */
