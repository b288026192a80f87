/*
 * sa-admin: SCAN over the keys of one pattern under the key prefix, batch
 * by batch.  Every caller must see every key (account delete, key resign
 * and key refresh must not miss a record), so a refused or malformed
 * reply is never the end of the keys: it is an error.
 */

#ifndef SA_ADMIN_SCAN_H
#define SA_ADMIN_SCAN_H

#include "redis.h"

typedef struct {
    char   cursor[32];
    char   match[512];
    int    count;
    int    done;
} sa_scan_t;

/* the keys <prefix, its glob characters escaped><pattern>, count a batch */
void sa_scan_start(sa_scan_t *sc, sa_admin_t *sa, int count,
    const char *pattern, const char *suffix);

/*
 * The next batch: a reply whose element[1] is an array of strings (the
 * keys; possibly none), for the caller to free; NULL when the scan is
 * over, or, with *rc set to SA_EXIT_UNAVAILABLE and the reason on stderr,
 * when Redis refused or answered something else.
 */
redisReply *sa_scan_next(sa_scan_t *sc, sa_admin_t *sa, int *rc);

/* the same, ending the process (exit 3) where sa_scan_next() fails */
redisReply *sa_scan_next_or_exit(sa_scan_t *sc, sa_admin_t *sa);

#endif /* SA_ADMIN_SCAN_H */
