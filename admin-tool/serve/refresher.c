/*
 * sa-admin serve --refresh-period D: the record refresher (refresh.h;
 * issue 22, item 7) in one long-lived child process of serve, not in the
 * workers.  Every D it runs sa_refresh_run() with the period
 * SA_FRESH_PERIOD and the window a quarter of it (as key refresh) and logs
 * what it did.
 *
 * It keeps a version memory (sa_versions_t) for as long as it lives: every
 * version a run reads, and every version named on the invalidation
 * channel, to which it stays subscribed on a connection of its own (every
 * change sa-admin makes publishes "<id>:<version>" there, whichever worker
 * or command line made it).  A record older than a version it knows was put
 * back by a Redis writer: it is refused, logged and counted
 * (sa_admin_refresh_refused_total{reason="older"}), never renewed, so it
 * lapses at its own fresh_until.  After each batch of records is read and
 * before it is judged, a PING on the subscription (answered after every
 * message published before it) brings in what was published meanwhile: a
 * change made during a run, then its older record put back, is known
 * before that record is judged.
 *
 * A run that fails (Redis gone: sa_die() anywhere below) ends through the
 * sink, which jumps back here: the run is logged as failed, the memory
 * stays, the next comes D later.  What the failed run had allocated is
 * lost (a batch's replies at most).  While the subscription is down (it is
 * made again before each run) changes are learnt only from the records the
 * runs read.  The memory starts empty: a record put back before serve
 * started is not told from a current one (as by key refresh).
 *
 * SIGHUP (serve passes it on): the signing key is read again before the
 * next run.  The refresher dies with its parent (PR_SET_PDEATHSIG) and on
 * SIGTERM; serve starts another if it dies otherwise.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "ops/ops.h"
#include "records.h"
#include "redis.h"
#include "refresh.h"
#include "sa_keys.h"
#include "serve.h"
#include "util.h"


/* a record is far smaller; a longer message is not read */
#define SA_RECORDS_MESSAGE_MAX  (1024 * 1024)


static sa_refresh_shm_t       *sa_rstats;
static sa_versions_t          *sa_rversions;
static sa_rconn_t             *sa_rsub;          /* the subscription */
static char                    sa_rchannel[300];
static char                    sa_rrecords[300];  /* SA_KEY_RECORDS */
static sigjmp_buf              sa_rback;
static volatile sig_atomic_t   sa_rhup;
static int64_t                 sa_revery;


static void
sa_refresher_hup(int sig)
{
    (void) sig;
    sa_rhup = 1;
}


static void
sa_refresher_child_init(pid_t parent)
{
    sigset_t          set;
    struct sigaction  sa;

    sigemptyset(&set);
    sigprocmask(SIG_SETMASK, &set, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = sa_refresher_hup;
    sigaction(SIGHUP, &sa, NULL);
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) {
        _exit(0);
    }
}


/* sa_die() in a run: logged, and back to the loop */
static SA_NORETURN void
sa_refresher_sink(sa_err_kind_t kind, const char *message)
{
    (void) kind;
    sa_serve_log("refresh: %s", message);
    siglongjmp(sa_rback, 1);
}


/* ------------------------------------------------- the subscription */

static void
sa_sub_close(const char *why)
{
    if (sa_rsub == NULL) {
        return;
    }

    sa_serve_log("refresh: the invalidation channel is lost (%s); changes "
                 "are learnt from the records read until it is back", why);
    sa_rconn_free(sa_rsub);
    sa_rsub = NULL;
    __atomic_store_n(&sa_rstats->subscribed, 0, __ATOMIC_RELAXED);
}


/*
 * A message of <prefix>records (common.lua, record_written()): a record of
 * the other kinds written, as it was stored, or the signed marker of one
 * deleted (a higher version, never a usable record): the record itself,
 * signed by sa-admin.  Only a message that verifies with the signing key
 * and names a kind, an id and a version is kept: a Redis writer, who can
 * publish anything there, can neither raise a record's version past what
 * sa-admin signed (a made-up version would make the refresher refuse the
 * current record, and every later one, for as long as it runs) nor fill
 * the memory with made-up names; replaying a genuine message only tells a
 * version that was current once (the memory keeps the highest).  Never
 * ends the run (no sa_die: this is heard between runs too).
 */
static void
sa_sub_record(const char *msg, size_t len)
{
    char                key[700];
    const char         *payload, *kind, *id;
    size_t              plen;
    json_int_t          version;
    json_t             *j;
    const uint8_t      *sk = sa_signing_key_if_loaded();
    sa_kind_t           k;
    int                 known = 0;

    j = NULL;

    if (sk == NULL || len > SA_RECORDS_MESSAGE_MAX
        || sa_envelope_open(msg, len, sk + 32, &payload, &plen) != SA_REC_OK
        || (j = json_loadb(payload, plen, JSON_REJECT_DUPLICATES, NULL))
           == NULL
        || json_unpack(j, "{s:s, s:s, s:I}", "kind", &kind, "id", &id,
                       "version", &version) != 0
        || version < 1 || id[0] == '\0'
        || strlen(kind) + strlen(id) + 2 > sizeof(key))
    {
        json_decref(j);
        __atomic_add_fetch(&sa_rstats->rec_unsigned, 1, __ATOMIC_RELAXED);
        return;
    }

    for (k = SA_KIND_TOKEN; k <= SA_KIND_PTOKEN; k++) {
        if (k != SA_KIND_TOKEN && strcmp(kind, sa_kind_name(k)) == 0) {
            known = 1;
        }
    }

    if (!known) {
        json_decref(j);
        __atomic_add_fetch(&sa_rstats->rec_unsigned, 1, __ATOMIC_RELAXED);
        return;
    }

    snprintf(key, sizeof(key), "%s:%s", kind, id);
    sa_versions_note_rec(sa_rversions, key, (uint64_t) version);
    json_decref(j);
    __atomic_add_fetch(&sa_rstats->heard, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&sa_rstats->versions, sa_versions_count(sa_rversions),
                     __ATOMIC_RELAXED);
}


/* one reply on the subscription (taken); 1: the pong of a PING */
static int
sa_sub_reply(redisReply *r)
{
    size_t       noted, bounded = 0;
    redisReply  *k;
    int          pong = 0;

    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2
        && r->element[0]->type == REDIS_REPLY_STRING)
    {
        k = r->element[0];

        if (r->elements == 3 && strcmp(k->str, "message") == 0
            && r->element[1]->type == REDIS_REPLY_STRING
            && strcmp(r->element[1]->str, sa_rrecords) == 0
            && r->element[2]->type == REDIS_REPLY_STRING)
        {
            sa_sub_record(r->element[2]->str, r->element[2]->len);

        } else if (r->elements == 3 && strcmp(k->str, "message") == 0
            && r->element[2]->type == REDIS_REPLY_STRING)
        {
            noted = sa_versions_note_message(sa_rversions, r->element[2]->str,
                                             r->element[2]->len, &bounded);
            __atomic_add_fetch(&sa_rstats->tok_unheard, bounded,
                               __ATOMIC_RELAXED);
            __atomic_add_fetch(&sa_rstats->heard, noted, __ATOMIC_RELAXED);
            __atomic_store_n(&sa_rstats->versions,
                             sa_versions_count(sa_rversions),
                             __ATOMIC_RELAXED);

        } else if (strcmp(k->str, "pong") == 0) {
            pong = 1;
        }
    }

    freeReplyObject(r);
    return pong;
}


/* subscribed on a connection of its own; may end the run (sa_die) */
static void
sa_sub_open(sa_admin_t *sa)
{
    redisReply  *r;
    int          ok;

    sa_rsub = sa_redis_connect_more(sa);
    r = sa_rconn_command(sa_rsub, "SUBSCRIBE %s %s", sa_rchannel,
                         sa_rrecords);
    ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 3
         && r->element[0]->type == REDIS_REPLY_STRING
         && strcmp(r->element[0]->str, "subscribe") == 0;

    /* the second channel's confirmation */
    if (ok) {
        freeReplyObject(r);
        r = NULL;
        if (sa_rconn_get_reply(sa_rsub, (void **) &r) != REDIS_OK) {
            r = NULL;
        }
        ok = r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 3
             && r->element[0]->type == REDIS_REPLY_STRING
             && strcmp(r->element[0]->str, "subscribe") == 0;
    }

    if (!ok) {
        sa_serve_log("refresh: SUBSCRIBE %s: %s", sa_rchannel,
                     r == NULL ? sa_rsub->errstr
                     : r->type == REDIS_REPLY_ERROR ? r->str
                     : "unexpected reply");
        freeReplyObject(r);
        sa_rconn_free(sa_rsub);
        sa_rsub = NULL;
        return;
    }

    freeReplyObject(r);
    __atomic_store_n(&sa_rstats->subscribed, 1, __ATOMIC_RELAXED);
}


/* every message already here or on the socket, without waiting for more */
static void
sa_sub_drain(void)
{
    void           *r;
    struct pollfd   pfd;

    while (sa_rsub != NULL) {
        if (redisReaderGetReply(sa_rsub->reader, &r) != REDIS_OK) {
            sa_sub_close("protocol error");
            return;
        }

        if (r == NULL) {
            if (sa_rsub->ssl == NULL || SSL_pending(sa_rsub->ssl) == 0) {
                pfd.fd = sa_rsub->fd;
                pfd.events = POLLIN;
                if (poll(&pfd, 1, 0) <= 0) {
                    return;
                }
            }

            if (sa_rconn_get_reply(sa_rsub, &r) != REDIS_OK) {
                sa_sub_close(sa_rsub->errstr);
                return;
            }
        }

        sa_sub_reply(r);
    }
}


/*
 * The run's sync (refresh.h): a PING, and every message up to its pong;
 * Redis answers it after whatever it published before.
 */
static void
sa_sub_sync(void *data)
{
    void  *r;
    int    pong = 0;

    (void) data;

    if (sa_rsub == NULL) {
        return;
    }

    if (sa_rconn_append(sa_rsub, "*1\r\n$4\r\nPING\r\n", 14) != REDIS_OK) {
        sa_sub_close(sa_rsub->errstr);
        return;
    }

    while (sa_rsub != NULL && !pong) {
        if (sa_rconn_get_reply(sa_rsub, &r) != REDIS_OK) {
            sa_sub_close(sa_rsub->errstr);
            return;
        }
        pong = sa_sub_reply(r);
    }
}


/* until the monotonic time `until`, hearing the channel */
static void
sa_sub_wait(double until)
{
    double           left;
    struct pollfd    pfd;
    struct timespec  ts;

    while ((left = until - sa_mono()) > 0) {
        if (sa_rsub == NULL) {
            ts.tv_sec = (time_t) left;
            ts.tv_nsec = (long) ((left - (double) ts.tv_sec) * 1e9);
            nanosleep(&ts, NULL);
            continue;
        }

        sa_sub_drain();
        if (sa_rsub == NULL) {
            continue;
        }

        pfd.fd = sa_rsub->fd;
        pfd.events = POLLIN;
        if (poll(&pfd, 1, (int) (left * 1000) + 1) > 0) {
            sa_sub_drain();
        }
    }
}


/* ----------------------------------------------------------- the runs */

static void
sa_refresher_run_once(sa_admin_t *sa, int64_t period)
{
    sa_refresh_opts_t   ro;
    sa_refresh_stats_t  st;
    json_t             *j;
    char               *text;
    int                 rc;

    if (sa_rsub == NULL) {
        sa_sub_open(sa);
    }

    memset(&ro, 0, sizeof(ro));
    memset(&st, 0, sizeof(st));
    ro.versions = sa_rversions;
    ro.sync = sa_sub_sync;

    rc = sa_refresh_run(sa, period, period / 4 > 0 ? period / 4 : 1, &ro,
                        &st);

    __atomic_add_fetch(&sa_rstats->renewed, st.renewed, __ATOMIC_RELAXED);
    __atomic_add_fetch(&sa_rstats->refused, st.refused, __ATOMIC_RELAXED);
    __atomic_add_fetch(&sa_rstats->older, st.older, __ATOMIC_RELAXED);
    __atomic_add_fetch(&sa_rstats->rec_renewed, st.records.renewed,
                       __ATOMIC_RELAXED);
    __atomic_add_fetch(&sa_rstats->rec_refused, st.records.refused,
                       __ATOMIC_RELAXED);
    __atomic_add_fetch(&sa_rstats->rec_older, st.records.older,
                       __ATOMIC_RELAXED);
    __atomic_store_n(&sa_rstats->versions, sa_versions_count(sa_rversions),
                     __ATOMIC_RELAXED);

    j = sa_refresh_json(&st, 0);
    json_object_set_new(j, "versions_known",
                        json_integer((json_int_t)
                                     sa_versions_count(sa_rversions)));
    text = json_dumps(j, JSON_COMPACT);
    sa_serve_log("refresh: %s%s", text ? text : "?",
                 st.lapsed || st.records.lapsed ? " (records had lapsed)"
                                                : "");
    free(text);
    json_decref(j);

    if (rc != SA_EXIT_OK) {
        __atomic_add_fetch(&sa_rstats->failed, 1, __ATOMIC_RELAXED);
        sa_serve_log("refresh: the run failed (status %d); the next in "
                     "%llds", rc, (long long) sa_revery);
    }
}


static SA_NORETURN void
sa_refresher_main(sa_serve_t *s)
{
    static sa_admin_t  sa;       /* static: kept across siglongjmp() */
    double             start;

    sa = s->tmpl;
    sa.actor = "serve";
    sa.json = 0;
    sa.redis = NULL;
    sa_rversions = sa_versions_new();
    sa.versions = sa_rversions;
    snprintf(sa_rchannel, sizeof(sa_rchannel), "%s" SA_KEY_INVALIDATE,
             sa.prefix);
    snprintf(sa_rrecords, sizeof(sa_rrecords), "%s" SA_KEY_RECORDS,
             sa.prefix);
    sa_die_sink = sa_refresher_sink;

    for ( ;; ) {
        start = sa_mono();

        if (sa_rhup) {
            sa_rhup = 0;
            sa_signing_key_forget();
            sa_serve_log("refresh: SIGHUP: the signing key is read again");
        }

        if (sigsetjmp(sa_rback, 1) == 0) {
            sa_refresher_run_once(&sa, s->tmpl.fresh_period);

        } else {
            /* the connection (and what was in flight on it) is dropped */
            sa_redis_close(&sa);
            __atomic_add_fetch(&sa_rstats->failed, 1, __ATOMIC_RELAXED);
            sa_serve_log("refresh: the run failed; the next in %llds",
                         (long long) sa_revery);
        }

        __atomic_add_fetch(&sa_rstats->runs, 1, __ATOMIC_RELAXED);
        fflush(stderr);
        sa_sub_wait(start + (double) sa_revery);
    }
}


static void
sa_refresher_fork(sa_serve_t *s)
{
    pid_t  parent = getpid(), pid;

    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        sa_serve_log("refresh: fork: %s", strerror(errno));
        return;
    }
    if (pid > 0) {
        s->refresher = pid;
        sa_serve_log("refresh: every %llds, period %llds (pid %d)",
                     (long long) sa_revery, (long long) s->tmpl.fresh_period,
                     (int) pid);
        return;
    }

    /* the refresher: listeners, workers' sockets, MHD's are the parent's */
    close_range(3, ~0U, 0);
    sa_refresher_child_init(parent);
    sa_refresher_main(s);
}


void
sa_refresher_start(sa_serve_t *s, int64_t every)
{
    sa_rstats = mmap(NULL, sizeof(sa_refresh_shm_t), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sa_rstats == MAP_FAILED) {
        sa_die(SA_EXIT_UNAVAILABLE, "mmap: %s", strerror(errno));
    }
    memset(sa_rstats, 0, sizeof(*sa_rstats));
    s->refresh_stats = sa_rstats;
    sa_revery = every;

    sa_refresher_fork(s);
    if (s->refresher <= 0) {
        sa_die(SA_EXIT_UNAVAILABLE, "cannot start the refresher");
    }
}


void
sa_refresher_reload(sa_serve_t *s)
{
    if (s->refresher > 0) {
        kill(s->refresher, SIGHUP);
    }
}


void
sa_refresher_tick(sa_serve_t *s)
{
    int    status;
    pid_t  pid;

    if (s->refresher <= 0 || s->stopping) {
        return;
    }

    pid = waitpid(s->refresher, &status, WNOHANG);
    if (pid != s->refresher) {
        return;
    }

    sa_serve_log("refresh: the refresher (pid %d) ended (status %d); "
                 "another starts, its version memory empty", (int) pid,
                 WIFEXITED(status) ? WEXITSTATUS(status)
                                   : 128 + WTERMSIG(status));
    s->refresher = 0;
    __atomic_store_n(&sa_rstats->subscribed, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&sa_rstats->versions, 0, __ATOMIC_RELAXED);
    __atomic_add_fetch(&sa_rstats->restarts, 1, __ATOMIC_RELAXED);
    sa_refresher_fork(s);
}


void
sa_refresher_stop(sa_serve_t *s)
{
    if (s->refresher > 0) {
        kill(s->refresher, SIGTERM);
        while (waitpid(s->refresher, NULL, 0) < 0 && errno == EINTR) {
            /* again */
        }
        s->refresher = 0;
    }
}
