/*
 * sa-admin key refresh: token records renewed before their fresh_until
 * lapses (fresh.h; issue 22, item 7).  The command's entry is in
 * cmd_key.c's table; sa_refresh_run() is what the admin API server calls
 * now and then (/work/notes/api-design.md, "refresh").
 *
 * The records are found with SCAN (<prefix>tok:*) and read with pipelined
 * GETs, SCAN batch by SCAN batch, as key resign does.  A record is renewed
 * when it verifies with the current signing key, is a valid token record
 * under its own id, is neither revoked nor expired, and has no fresh_until,
 * or one that has passed, lapses within `within`, or lies more than
 * `period` ahead (signed with a longer period: brought back to it).  Only fresh_until and
 * the signature change (the version stays): fresh_until = now + period,
 * or, for a record that had none or had lapsed, a time spread at random
 * over (now + within, now + period], so that records stamped together do
 * not come due together.  Renewed records are written in groups by one
 * script (key_refresh.lua) that replaces each only if its key still holds
 * the very bytes read: a change made meanwhile is never undone.
 *
 * What it cannot tell by itself: a revoked token's older record put back
 * into Redis by a writer looks like any current record.  A long-running
 * caller keeps a version memory (sa_versions_t) across runs: every version
 * it reads or signs (sa_token_seal() notes into sa->versions) is kept, and
 * a record older than one it knows is refused, never renewed.
 */

#ifndef SA_ADMIN_REFRESH_H
#define SA_ADMIN_REFRESH_H

#include <stddef.h>
#include <stdint.h>

#include "sa_admin.h"

/* token id -> the highest record version seen; grows as needed */
typedef struct sa_versions_s  sa_versions_t;

sa_versions_t *sa_versions_new(void);
void sa_versions_free(sa_versions_t *v);

/* the highest version known of id (16 characters), 0 for none */
uint64_t sa_versions_known(const sa_versions_t *v, const char *id);

/* raises id's version to version (never lowers it) */
void sa_versions_note(sa_versions_t *v, const char *id, uint64_t version);

/*
 * The same for the records of the other kinds (account, team, member,
 * application, personal token), by "<kind>:<id>" ("member:plat/bob").
 */
uint64_t sa_versions_known_rec(const sa_versions_t *v, const char *key);
void sa_versions_note_rec(sa_versions_t *v, const char *key,
    uint64_t version);

/* token ids and records known */
size_t sa_versions_count(const sa_versions_t *v);

/*
 * A message of the invalidation channel (<prefix>invalidate: "<id>:<version>
 * <id>:<version> ...", as every sa-admin change publishes it): each version
 * noted.  A caller that runs the refresh in another process than the one
 * that makes changes subscribes and feeds every message here, so that a
 * change made elsewhere is known before the next run reads it.  Messages
 * are not authenticated: a publisher can at worst make genuine records
 * refused (never renewed, so they lapse), as at a gateway.  Returns how
 * many versions were noted; malformed items are skipped.
 */
size_t sa_versions_note_message(sa_versions_t *v, const char *msg,
    size_t len, size_t *bounded);

/*
 * At most this many token ids heard on the invalidation channel and not
 * read by a run since are kept (a flood of made-up ids; *bounded counts
 * those not kept).
 */
#define SA_VERSIONS_UNREAD_MAX  (1 << 18)

typedef struct {
    int             dry_run;        /* count, write nothing */
    int             progress;       /* a line on stderr every second */
    int             lapsed;         /* renew the records of the other kinds
                                       (account, team, member, application,
                                       personal token) whose fresh_until
                                       has passed: else left (refused) */
    sa_versions_t  *versions;       /* NULL: no memory across runs */
    /* called after each batch of records is read, before it is judged:
     * serve's refresher notes into versions every invalidation published
     * until then (a change made, then its older record put back, while
     * the run goes on); NULL: none */
    void          (*sync)(void *data);
    void           *sync_data;
} sa_refresh_opts_t;

/* the records permission checks read (account, team, member,
 * application, personal token): counted apart, as the token records */
typedef struct {
    size_t          read;
    size_t          renewed;
    size_t          stamped;
    size_t          lapsed;
    size_t          ahead;
    size_t          fresh;
    size_t          refused;
    size_t          older;
    size_t          changed;
    size_t          gone;
} sa_refresh_recs_t;

typedef struct {
    size_t          read;           /* token records read */
    size_t          renewed;        /* written (dry run: would be) */
    size_t          stamped;        /* of which had no fresh_until */
    size_t          lapsed;         /* of which had lapsed already */
    size_t          ahead;          /* of which lay more than the period
                                       ahead (brought back to it) */
    size_t          fresh;          /* lapse beyond the window: left */
    size_t          skipped;        /* revoked or expired: left */
    size_t          refused;        /* not verified or invalid: reported */
    size_t          older;          /* older than a version known */
    size_t          changed;        /* changed between read and write */
    size_t          gone;           /* deleted or expired meanwhile */
    sa_refresh_recs_t  records;     /* the other kinds (above) */
    int64_t         next_due;       /* earliest fresh_until left, 0 none */
    double          seconds;
} sa_refresh_stats_t;

/*
 * One run over every token record: renews what lapses within `within`
 * (seconds, 0 < within < period) with fresh_until = now + period.  Needs
 * the signing key.  Returns SA_EXIT_OK, or SA_EXIT_UNAVAILABLE when Redis
 * refused a command (the run stops; what was renewed stays renewed, and
 * the next run goes on); refused and older records are reported on stderr
 * and counted, the run goes on.  As every operation, a broken connection
 * ends the process through sa_die() (redis.h).
 */
int sa_refresh_run(sa_admin_t *sa, int64_t period, int64_t within,
    const sa_refresh_opts_t *opts, sa_refresh_stats_t *st);

/* the stats as the --json object of key refresh */
struct json_t *sa_refresh_json(const sa_refresh_stats_t *st, int dry_run);

#define SA_REFRESH_USAGE                                                    \
    "key refresh [--period D] [--within D] [--lapsed] [--dry-run]"

#define SA_REFRESH_HELP                                                     \
    "Renews the fresh_until of every token record that has none, or\n"     \
    "whose fresh_until has passed, lapses within --within or lies more\n"  \
    "than --period ahead, to now + --period (records that had none or\n"  \
    "had lapsed: spread at random between now + --within and now +\n"    \
    "--period).  Nothing else changes:\n"                                 \
    "not the version, not the expiry.  Revoked and expired records are\n"   \
    "left as they are.  Only records that verify with the current signing\n" \
    "key are renewed; any other is reported on stderr and left, and the\n"  \
    "command exits 2.  A record changed between its read and its write is\n" \
    "left (the change wins).  The team, member, application, account and\n" \
    "personal token records are renewed the same way, but one whose\n"     \
    "fresh_until has passed is left unless --lapsed.\n"                  \
    "For gateways with sa_record_max_age: run it\n" \
    "more often than --within (e.g. hourly with --period 24h --within\n"    \
    "6h), or let the admin API server run it.\n"                           \
    "  --period D   fresh_until = now + D (default SA_FRESH_PERIOD)\n"      \
    "  --within D   renew what lapses within D (default a quarter of the\n" \
    "               period; less than it)\n"                               \
    "  --lapsed     renew lapsed team, member, application, account and\n" \
    "               personal token records too (left otherwise: one could\n" \
    "               be an older record put back)\n"                          \
    "  --dry-run    count what would be renewed; write nothing\n"

void sa_key_refresh_cmd(sa_admin_t *sa, int argc, char **argv);

#endif /* SA_ADMIN_REFRESH_H */
