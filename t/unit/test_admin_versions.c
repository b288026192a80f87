/* Unit tests: key refresh's version memory (admin-tool/refresh.h). */

#include <stdio.h>
#include <string.h>
#include <sodium.h>

#include "tap.h"
#include "refresh.h"
#include "sa_token.h"


static void
id_of(unsigned n, char id[SA_TOKEN_ID_LEN + 1])
{
    snprintf(id, SA_TOKEN_ID_LEN + 1, "Id%014u", n);
}


int
main(void)
{
    sa_versions_t  *v;
    char            id[SA_TOKEN_ID_LEN + 1];
    unsigned        i, wrong;

    if (sodium_init() < 0) {
        printf("Bail out! libsodium init failed\n");
        return 1;
    }

    v = sa_versions_new();

    id_of(1, id);
    is_long((long) sa_versions_known(v, id), 0, "an id never seen: 0");

    sa_versions_note(v, id, 3);
    is_long((long) sa_versions_known(v, id), 3, "noted: its version");

    sa_versions_note(v, id, 2);
    is_long((long) sa_versions_known(v, id), 3, "a lower version lowers nothing");

    sa_versions_note(v, id, 9);
    is_long((long) sa_versions_known(v, id), 9, "a higher one raises it");

    sa_versions_note(v, id, 0);
    is_long((long) sa_versions_known(v, id), 9, "version 0 is no version");
    is_long((long) sa_versions_count(v), 1, "one id, one entry");

    /* grows past its first size many times; every entry stays */
    for (i = 2; i <= 200000; i++) {
        id_of(i, id);
        sa_versions_note(v, id, i);
    }
    is_long((long) sa_versions_count(v), 200000, "200,000 ids kept");

    wrong = 0;
    for (i = 2; i <= 200000; i++) {
        id_of(i, id);
        wrong += sa_versions_known(v, id) != i;
    }
    is_long(wrong, 0, "each with its own version after growing");

    id_of(200001, id);
    is_long((long) sa_versions_known(v, id), 0, "and an id never noted is still 0");

    sa_versions_free(v);

    /* the invalidation channel's messages */
    v = sa_versions_new();
    {
        const char  *msg = "AbCdEfGh01234567:4 Zz00000000000000:12 "
                           "BadId:3 Yy00000000000000 Xx00000000000000:x "
                           "Ww00000000000000:99999999999999999999999";

        is_long((long) sa_versions_note_message(v, msg, strlen(msg), NULL), 2,
                "message: the two well-formed id:version items noted");
        is_long((long) sa_versions_known(v, "AbCdEfGh01234567"), 4,
                "message: the first one's version");
        is_long((long) sa_versions_known(v, "Zz00000000000000"), 12,
                "message: the second one's version");
        is_long((long) sa_versions_known(v, "Yy00000000000000"), 0,
                "message: an id without a version notes nothing");
        is_long((long) sa_versions_known(v, "Ww00000000000000"), 0,
                "message: a version too long for 64 bits notes nothing");
        is_long((long) sa_versions_note_message(v, "AbCdEfGh01234567:2", 18,
                                                  NULL),
                1, "message: a lower version is taken in ...");
        is_long((long) sa_versions_known(v, "AbCdEfGh01234567"), 4,
                "... and lowers nothing");
    }
    sa_versions_free(v);

    /* a flood of made-up ids on the channel: bounded (attack review) */
    v = sa_versions_new();
    {
        char    msg[64];
        size_t  bounded = 0, kept = 0;

        for (i = 0; i < SA_VERSIONS_UNREAD_MAX + 1000; i++) {
            id_of(i, id);
            snprintf(msg, sizeof(msg), "%.16s:7", id);
            kept += sa_versions_note_message(v, msg, strlen(msg), &bounded);
        }
        is_long((long) kept, SA_VERSIONS_UNREAD_MAX,
                "flood: new ids heard are kept up to the bound");
        is_long((long) bounded, 1000, "flood: the rest counted as not kept");
        id_of(SA_VERSIONS_UNREAD_MAX + 10, id);
        is_long((long) sa_versions_known(v, id), 0,
                "flood: one past the bound is not known");
        id_of(3, id);
        snprintf(msg, sizeof(msg), "%.16s:9", id);
        is_long((long) sa_versions_note_message(v, msg, strlen(msg), &bounded),
                1, "flood: a known id heard again is still noted");
        is_long((long) sa_versions_known(v, id), 9, "flood: with its version");
        /* a run reads records: they no longer count against the bound */
        for (i = 0; i < 500; i++) {
            id_of(i, id);
            sa_versions_note(v, id, 7);
        }
        bounded = 0;
        for (i = SA_VERSIONS_UNREAD_MAX + 2000;
             i < SA_VERSIONS_UNREAD_MAX + 3000; i++)
        {
            id_of(i, id);
            snprintf(msg, sizeof(msg), "%.16s:7", id);
            sa_versions_note_message(v, msg, strlen(msg), &bounded);
        }
        is_long((long) bounded, 500, "flood: ids read free room for as many");
    }
    sa_versions_free(v);

    return done_testing();
}
