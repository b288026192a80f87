/*
 * A time warp for tests (LD_PRELOAD, t/module/56-rate-attack.t): shifts the
 * clocks a process reads by offsets the test changes while it runs.  The
 * file named by SA_TIMEWARP holds two little-endian int64 millisecond
 * offsets, mapped shared at start (so forked nginx workers see each
 * change at once): [0] for CLOCK_MONOTONIC (and its variants: nginx's
 * ngx_current_msec, its timers), [1] for the wall clock (CLOCK_REALTIME,
 * gettimeofday, time: ngx_time(), as "date -s" would step it).  Without
 * SA_TIMEWARP, or with a file shorter than 16 bytes, nothing is shifted.
 */

#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static volatile const int64_t  *warp;
static int (*real_clock_gettime)(clockid_t, struct timespec *);
static int (*real_gettimeofday)(struct timeval *, void *);


__attribute__((constructor))
static void
timewarp_init(void)
{
    const char   *path = getenv("SA_TIMEWARP");
    struct stat   st;
    void         *p;
    int           fd;

    real_clock_gettime = (int (*)(clockid_t, struct timespec *))
                             dlsym(RTLD_NEXT, "clock_gettime");
    real_gettimeofday = (int (*)(struct timeval *, void *))
                            dlsym(RTLD_NEXT, "gettimeofday");

    if (path == NULL || (fd = open(path, O_RDONLY)) < 0) {
        return;
    }

    if (fstat(fd, &st) == 0 && st.st_size >= 16) {
        p = mmap(NULL, 16, PROT_READ, MAP_SHARED, fd, 0);
        if (p != MAP_FAILED) {
            warp = p;
        }
    }

    close(fd);
}


static void
timewarp_shift(struct timespec *ts, int64_t ms)
{
    int64_t  ns = (int64_t) ts->tv_nsec + (ms % 1000) * 1000000;

    ts->tv_sec += ms / 1000;
    if (ns < 0) {
        ns += 1000000000;
        ts->tv_sec--;
    } else if (ns >= 1000000000) {
        ns -= 1000000000;
        ts->tv_sec++;
    }
    ts->tv_nsec = ns;
}


int
clock_gettime(clockid_t id, struct timespec *ts)
{
    int  rc;

    /* a library's constructor may ask before ours ran (libmicrohttpd) */
    if (real_clock_gettime == NULL) {
        timewarp_init();
    }
    rc = real_clock_gettime(id, ts);

    if (rc != 0 || warp == NULL) {
        return rc;
    }

    switch (id) {
    case CLOCK_MONOTONIC:
    case CLOCK_MONOTONIC_COARSE:
    case CLOCK_MONOTONIC_RAW:
    case CLOCK_BOOTTIME:
        timewarp_shift(ts, warp[0]);
        break;
    case CLOCK_REALTIME:
    case CLOCK_REALTIME_COARSE:
        timewarp_shift(ts, warp[1]);
        break;
    default:
        break;
    }

    return rc;
}


int
gettimeofday(struct timeval *tv, void *tz)
{
    struct timespec  ts;
    int              rc;

    if (real_gettimeofday == NULL) {
        timewarp_init();
    }
    rc = real_gettimeofday(tv, tz);

    if (rc == 0 && warp != NULL) {
        ts.tv_sec = tv->tv_sec;
        ts.tv_nsec = tv->tv_usec * 1000;
        timewarp_shift(&ts, warp[1]);
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
    }

    return rc;
}


time_t
time(time_t *t)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    if (t != NULL) {
        *t = ts.tv_sec;
    }

    return ts.tv_sec;
}
