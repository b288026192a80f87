/*
 * The reply stream from Redis or a sentinel: sa_resp_scan() in front of
 * hiredis's redisReader, and sa_resp_route(), as the module drives them
 * (ngx_http_sa_redis_read()).
 *
 * Input: byte 0 picks the read sizes (0: all at once, else 1..64 bytes at a
 * time, as recv() might return them); byte 1 the commands awaited (low two
 * bits), whether SUBSCRIBE was sent (bit 7), and bounds of 300 and 600
 * bytes set by sa_resp_limits() (bit 6); the rest is the stream.
 *
 * Invariants beyond "no crash": hiredis never fails on bytes the scanner
 * accepted, and has a complete reply exactly when the scanner says one
 * ended, of the type, length, element count, first element types and kind
 * the scanner reported; no accepted reply has a bulk longer than
 * SA_RESP_BULK_MAX, an array longer than SA_RESP_ELEMENTS_MAX, nesting
 * deeper than SA_RESP_DEPTH_MAX or more than SA_RESP_REPLY_MAX bytes; the
 * reader never buffers more than one bounded reply plus one read; a routed
 * pub/sub reply has the elements the module reads, of the types it reads.
 */

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include "fuzz.h"
#include "sa_resp.h"


static char
fuzz_type(int type)
{
    switch (type) {
    case REDIS_REPLY_STRING:  return '$';
    case REDIS_REPLY_STATUS:  return '+';
    case REDIS_REPLY_ERROR:   return '-';
    case REDIS_REPLY_INTEGER: return ':';
    case REDIS_REPLY_ARRAY:   return '*';
    case REDIS_REPLY_NIL:     return 'n';
    default:                  return '?';
    }
}


/* this input's bounds: a record's, or (byte 1, bit 6) small ones, as a
 * subscriber's larger bounds are set through sa_resp_limits() */
static long long  fuzz_bulk_max;
static size_t     fuzz_reply_max;


/* bounds, and the count of elements below the top */
static size_t
fuzz_check_bounds(redisReply *reply, unsigned depth)
{
    size_t  i, items = 0;

    FUZZ_ASSERT(depth <= SA_RESP_DEPTH_MAX);

    if (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS
        || reply->type == REDIS_REPLY_ERROR)
    {
        FUZZ_ASSERT((long long) reply->len <= fuzz_bulk_max);
        FUZZ_ASSERT(reply->str[reply->len] == '\0');
    }

    if (reply->type == REDIS_REPLY_ARRAY) {
        FUZZ_ASSERT(depth < SA_RESP_DEPTH_MAX);
        FUZZ_ASSERT(reply->elements <= SA_RESP_ELEMENTS_MAX);

        for (i = 0; i < reply->elements; i++) {
            items += 1 + fuzz_check_bounds(reply->element[i], depth + 1);
        }
    }

    return items;
}


static void
fuzz_check_reply(const sa_resp_reply_t *s, redisReply *reply)
{
    size_t  i;

    FUZZ_ASSERT(s->bytes <= fuzz_reply_max);
    FUZZ_ASSERT(fuzz_check_bounds(reply, 0) == s->items);

    if (s->type == '$' || s->type == '*') {
        FUZZ_ASSERT(fuzz_type(reply->type) == (s->n == -1 ? 'n' : s->type));

    } else {
        FUZZ_ASSERT(fuzz_type(reply->type) == s->type);
    }

    if (s->type == '$' && s->n >= 0) {
        FUZZ_ASSERT((long long) reply->len == s->n);
    }

    if (s->type == ':') {
        FUZZ_ASSERT(reply->integer == s->n);
    }

    if (reply->type != REDIS_REPLY_ARRAY) {
        return;
    }

    FUZZ_ASSERT((long long) reply->elements == s->n);

    for (i = 0; i < 3; i++) {
        if (i >= reply->elements) {
            FUZZ_ASSERT(s->etype[i] == 0);
            continue;
        }

        FUZZ_ASSERT(fuzz_type(reply->element[i]->type) == s->etype[i]);
    }

    if (reply->elements && reply->element[0]->type == REDIS_REPLY_STRING) {
        FUZZ_ASSERT(s->kind_len == reply->element[0]->len);
        FUZZ_ASSERT(s->kind_ok == (s->kind_len <= SA_RESP_KIND_MAX));

        if (s->kind_ok) {
            FUZZ_ASSERT(memcmp(s->kind, reply->element[0]->str, s->kind_len)
                        == 0);
        }
    }
}


/* what ngx_http_sa_redis_sub_reply() and the sentinel's handler read */
static void
fuzz_consume(sa_resp_route_e route, redisReply *reply)
{
    redisReply  *kind, *channel, *payload;

    if (route != SA_RESP_MESSAGE && route != SA_RESP_SUBSCRIBED) {
        return;
    }

    FUZZ_ASSERT(reply->type == REDIS_REPLY_ARRAY && reply->elements == 3);

    kind = reply->element[0];
    channel = reply->element[1];
    payload = reply->element[2];

    FUZZ_ASSERT(kind->type == REDIS_REPLY_STRING);
    FUZZ_ASSERT(channel->type == REDIS_REPLY_STRING);

    if (route == SA_RESP_MESSAGE) {
        FUZZ_ASSERT(strcmp(kind->str, "message") == 0);
        FUZZ_ASSERT(payload->type == REDIS_REPLY_STRING);
        FUZZ_ASSERT(payload->str[payload->len] == '\0');

    } else {
        FUZZ_ASSERT(strcmp(kind->str, "subscribe") == 0);
        FUZZ_ASSERT(payload->type == REDIS_REPLY_INTEGER);
    }
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int            subscribed;
    void          *reply;
    size_t         step, awaited, used, n;
    redisReader   *reader;
    sa_resp_t      r;
    sa_resp_rc_e   rc;
    sa_resp_route_e  route;

    if (size < 2) {
        return 0;
    }

    step = data[0] ? 1 + data[0] % 64 : size;
    awaited = data[1] & 3;
    subscribed = (data[1] & 0x80) != 0;
    data += 2;
    size -= 2;

    reader = redisReaderCreate();
    FUZZ_ASSERT(reader != NULL);

    sa_resp_init(&r);

    if (data[-1] & 0x40) {
        fuzz_bulk_max = 300;
        fuzz_reply_max = 600;
        sa_resp_limits(&r, fuzz_bulk_max, fuzz_reply_max);

    } else {
        fuzz_bulk_max = SA_RESP_BULK_MAX;
        fuzz_reply_max = SA_RESP_REPLY_MAX;
    }

    while (size) {
        n = size < step ? size : step;

        /* one recv(): scanned, fed, then every reply it completes */
        while (n) {
            rc = sa_resp_scan(&r, data, n, &used);
            FUZZ_ASSERT(used <= n);
            FUZZ_ASSERT(rc == SA_RESP_REPLY ? used > 0
                        : rc == SA_RESP_AGAIN ? used == n : 1);

            if (used) {
                FUZZ_ASSERT(redisReaderFeed(reader, (const char *) data,
                                            used) == REDIS_OK);
            }

            data += used;
            size -= used;
            n -= used;

            FUZZ_ASSERT(reader->len - reader->pos
                        <= fuzz_reply_max + 64);

            if (rc == SA_RESP_ERROR) {
                FUZZ_ASSERT(r.error != NULL);
                goto done;
            }

            reply = NULL;
            FUZZ_ASSERT(redisReaderGetReply(reader, &reply) == REDIS_OK);

            if (rc == SA_RESP_AGAIN) {
                FUZZ_ASSERT(reply == NULL);
                break;
            }

            FUZZ_ASSERT(reply != NULL);
            fuzz_check_reply(&r.reply, reply);

            route = sa_resp_route(&r.reply, awaited, subscribed);

            if (route == SA_RESP_UNEXPECTED) {
                freeReplyObject(reply);
                goto done;             /* the module closes here */
            }

            if (route == SA_RESP_AWAITED) {
                awaited--;
            }

            fuzz_consume(route, reply);
            freeReplyObject(reply);
        }
    }

done:

    redisReaderFree(reader);

    return 0;
}
