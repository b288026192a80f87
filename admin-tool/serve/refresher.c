/*
 * sa-admin serve --refresh-period D: the record refresher (refresh.h;
 * issue 22, item 7) in one child process of serve, not in the workers.
 * Every D it forks a run: the run connects to Redis, calls
 * sa_refresh_run() with the period SA_FRESH_PERIOD and the window a quarter
 * of it (as key refresh), logs what it did and exits, so that a run ended
 * by sa_die() (Redis gone) ends that run only; the next comes D later.
 * The refresher and its run die with their parent (PR_SET_PDEATHSIG) and
 * on SIGTERM.  No version memory across runs yet (refresh.h,
 * sa_versions_t): each run is as a 'key refresh' from a timer.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "refresh.h"
#include "serve.h"


static void
sa_refresher_child_init(pid_t parent)
{
    sigset_t  set;

    sigemptyset(&set);
    sigprocmask(SIG_SETMASK, &set, NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_IGN);
    if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent) {
        _exit(0);
    }
}


static void
sa_refresher_run_once(sa_serve_t *s, int64_t period)
{
    sa_admin_t          sa = s->tmpl;
    sa_refresh_opts_t   ro;
    sa_refresh_stats_t  st;
    json_t             *j;
    char               *text;
    int                 rc;

    sa.actor = "serve";
    sa.json = 0;
    memset(&ro, 0, sizeof(ro));
    memset(&st, 0, sizeof(st));
    rc = sa_refresh_run(&sa, period, period / 4 > 0 ? period / 4 : 1, &ro,
                        &st);
    j = sa_refresh_json(&st, 0);
    text = json_dumps(j, JSON_COMPACT);
    sa_serve_log("refresh: %s%s", text ? text : "?",
                 st.lapsed ? " (records had lapsed)" : "");
    free(text);
    json_decref(j);
    _exit(rc);
}


void
sa_refresher_start(sa_serve_t *s, int64_t every)
{
    pid_t            parent = getpid(), pid, run;
    int              status;
    struct timespec  ts;

    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        sa_die(SA_EXIT_UNAVAILABLE, "fork: %s", strerror(errno));
    }
    if (pid > 0) {
        s->refresher = pid;
        sa_serve_log("refresh: every %llds, period %llds (pid %d)",
                     (long long) every, (long long) s->tmpl.fresh_period,
                     (int) pid);
        return;
    }

    /* the refresher: listeners, workers' sockets, MHD's are the parent's */
    close_range(3, ~0U, 0);
    sa_refresher_child_init(parent);
    parent = getpid();

    for ( ;; ) {
        run = fork();
        if (run == 0) {
            sa_refresher_child_init(parent);
            sa_refresher_run_once(s, s->tmpl.fresh_period);
        }
        if (run < 0) {
            sa_serve_log("refresh: fork: %s", strerror(errno));
        } else {
            while (waitpid(run, &status, 0) < 0 && errno == EINTR) {
                /* again */
            }
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                sa_serve_log("refresh: the run failed (status %d); the next "
                             "in %llds", WIFEXITED(status)
                             ? WEXITSTATUS(status) : 128 + WTERMSIG(status),
                             (long long) every);
            }
        }
        ts.tv_sec = every;
        ts.tv_nsec = 0;
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
            /* again */
        }
    }
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
