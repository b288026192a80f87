/* sa-admin: SCAN batch by batch (scan.h). */

#include <stdio.h>
#include <string.h>

#include "scan.h"
#include "util.h"


void
sa_scan_start(sa_scan_t *sc, sa_admin_t *sa, int count, const char *pattern,
    const char *suffix)
{
    char  prefix[256];

    /* a prefix's own glob characters must not make the pattern miss keys */
    sa_glob_escape(sa->prefix, prefix, sizeof(prefix));
    snprintf(sc->match, sizeof(sc->match), "%s%s%s", prefix, pattern,
             suffix ? suffix : "");
    strcpy(sc->cursor, "0");
    sc->count = count;
    sc->done = 0;
}


static int
sa_scan_reply_valid(redisReply *r)
{
    size_t  i;

    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2
        || r->element[0]->type != REDIS_REPLY_STRING
        || r->element[0]->len == 0
        || r->element[0]->len >= sizeof(((sa_scan_t *) 0)->cursor)
        || r->element[1]->type != REDIS_REPLY_ARRAY)
    {
        return 0;
    }

    for (i = 0; i < r->element[1]->elements; i++) {
        if (r->element[1]->element[i]->type != REDIS_REPLY_STRING) {
            return 0;
        }
    }

    return 1;
}


redisReply *
sa_scan_next(sa_scan_t *sc, sa_admin_t *sa, int *rc)
{
    redisReply  *r;

    if (sc->done) {
        return NULL;
    }

    r = sa_xredis_cmd(sa, "SCAN %s MATCH %s COUNT %d", sc->cursor, sc->match,
                      sc->count);
    if (!sa_scan_reply_valid(r)) {
        *rc = r->type == REDIS_REPLY_ERROR
              ? sa_fail(SA_EXIT_UNAVAILABLE, "SCAN refused: %s",
                        sa_vis(r->str))
              : sa_fail(SA_EXIT_UNAVAILABLE, "SCAN: unexpected reply");
        freeReplyObject(r);
        sc->done = 1;
        return NULL;
    }

    memcpy(sc->cursor, r->element[0]->str, r->element[0]->len + 1);
    sc->done = strcmp(sc->cursor, "0") == 0;

    return r;
}


redisReply *
sa_scan_next_or_exit(sa_scan_t *sc, sa_admin_t *sa)
{
    int          rc = SA_EXIT_OK;
    redisReply  *r = sa_scan_next(sc, sa, &rc);

    if (rc != SA_EXIT_OK) {
        sa_die(rc, "the scan of the keys %s stopped", sa_vis(sc->match));
    }

    return r;
}
