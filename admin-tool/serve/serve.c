/*
 * sa-admin serve: the command, its listeners and its one epoll loop
 * (serve.h).  Signals come through a signalfd: SIGTERM and SIGINT stop
 * accepting, let the requests in flight finish and end; SIGHUP replaces
 * the workers, which read the keys again.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <microhttpd.h>

#include "serve.h"
#include "bearer.h"
#include "util.h"
#include "xalloc.h"

sa_serve_t  sa_serve;

#define SA_STOP_GRACE  30.0     /* seconds the requests in flight get */

static const char  serve_usage[] =
    "serve --listen ADDR... [--trusted-listen ADDR --user-header NAME] "
    "[--operator USER]... [--workers N] [--max-connections N] "
    "[--timeout TIME] [--console DIR|off] [--refresh-period D]";

static const char  serve_help[] =
    "Runs the admin API (docs/admin-api.md): the one process that holds the\n"
    "signing key and Redis write credentials; people, CI jobs and the\n"
    "console call it.  Prints 'listening on ADDR' on stderr per listener\n"
    "once it accepts connections.  SIGTERM: stops accepting, lets the\n"
    "requests in flight finish, exits 0.  SIGHUP: replaces the workers,\n"
    "which read the keys again.\n"
    "\n"
    "  --listen ADDR          host:port, [v6addr]:port or unix:/path\n"
    "                         (repeatable); callers prove who they are with\n"
    "                         a bearer token (sat_ or sap_)\n"
    "  --trusted-listen ADDR  a listener only a front proxy can reach (a unix\n"
    "                         socket, a private address): there the user\n"
    "                         header names the caller (repeatable)\n"
    "  --user-header NAME     that header (default X-Forwarded-User); it is\n"
    "                         ignored, and logged, on other listeners\n"
    "  --operator USER        a person who may do what the local operator\n"
    "                         does, such as creating teams (repeatable)\n"
    "  --workers N            worker processes, one request at a time each\n"
    "                         (default 4)\n"
    "  --max-connections N    open connections of all listeners together\n"
    "                         (default 1024); more are closed at once\n"
    "  --timeout TIME         a request must arrive whole within it, and an\n"
    "                         idle connection is closed after it (default\n"
    "                         10s)\n"
    "  --console DIR|off      the web console's files, served at / (default\n"
    "                         " SA_CONSOLE_DIR " when it exists)\n"
    "  --refresh-period D     every D, a child process renews the token\n"
    "                         records' fresh_until as key refresh does\n"
    "                         (period SA_FRESH_PERIOD, window a quarter of\n"
    "                         it; D must be shorter than the window)\n";

static const sa_command_t  serve_command = {
    "serve", NULL, serve_usage, serve_help
};


double
sa_mono(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}


void
sa_serve_log(const char *fmt, ...)
{
    va_list  ap;

    fputs("sa-admin: serve: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}


void
sa_serve_log_rated(sa_lograte_t *rate, const char *fmt, ...)
{
    va_list  ap;
    double   now = sa_mono();

    if (now - rate->start >= 1.0) {
        if (rate->dropped) {
            sa_serve_log("(%u more lines like the last left out)",
                         rate->dropped);
        }
        rate->start = now;
        rate->n = 0;
        rate->dropped = 0;
    }

    if (rate->n >= 10) {
        rate->dropped++;
        return;
    }
    rate->n++;

    fputs("sa-admin: serve: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}


static int
sa_nonblock_cloexec(int fd)
{
    int  fl = fcntl(fd, F_GETFL);

    return fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0
           || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ? -1 : 0;
}


/* a unix socket at path; an old socket file there is replaced */
static int
sa_listen_unix_or_exit(sa_listener_t *l, const char *path)
{
    struct sockaddr_un  sun;
    struct stat         st;
    int                 fd;

    if (strlen(path) >= sizeof(sun.sun_path) || path[0] != '/') {
        sa_die(SA_EXIT_USAGE, "invalid listen address 'unix:%s' (expected an "
               "absolute path of at most %zu bytes)", path,
               sizeof(sun.sun_path) - 1);
    }

    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            sa_die(SA_EXIT_USAGE, "'%s' exists and is no socket", path);
        }
        unlink(path);
    }

    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path));

    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *) &sun, sizeof(sun)) != 0
        || listen(fd, 511) != 0 || sa_nonblock_cloexec(fd) != 0)
    {
        sa_die(SA_EXIT_UNAVAILABLE, "cannot listen on unix:%s: %s", path,
               strerror(errno));
    }

    l->unix_path = 1;
    l->addr = sa_xstrdup(path - 5);
    return fd;
}


/* host:port or [v6]:port; the address printed is the one bound (port 0) */
static int
sa_listen_inet_or_exit(sa_listener_t *l, const char *spec)
{
    char                      host[256], serv[16], shown[300];
    const char               *colon, *h;
    size_t                    hlen;
    struct addrinfo           hints, *ai;
    struct sockaddr_storage   ss;
    socklen_t                 sl = sizeof(ss);
    int                       fd, one = 1, rc;

    colon = strrchr(spec, ':');
    if (colon == NULL || colon == spec || colon[1] == '\0'
        || strspn(colon + 1, "0123456789") != strlen(colon + 1)
        || strlen(colon + 1) > 5 || atoi(colon + 1) > 65535)
    {
        sa_die(SA_EXIT_USAGE, "invalid listen address '%s' (expected "
               "host:port, [v6addr]:port or unix:/path)", spec);
    }

    h = spec;
    hlen = (size_t) (colon - spec);
    if (h[0] == '[' && hlen > 2 && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host)) {
        sa_die(SA_EXIT_USAGE, "invalid listen address '%s'", spec);
    }
    memcpy(host, h, hlen);
    host[hlen] = '\0';
    snprintf(serv, sizeof(serv), "%s", colon + 1);

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;

    rc = getaddrinfo(host, serv, &hints, &ai);
    if (rc != 0) {
        sa_die(SA_EXIT_USAGE, "invalid listen address '%s': %s", spec,
               gai_strerror(rc));
    }

    fd = socket(ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0
        || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0
        || bind(fd, ai->ai_addr, ai->ai_addrlen) != 0
        || listen(fd, 511) != 0 || sa_nonblock_cloexec(fd) != 0
        || getsockname(fd, (struct sockaddr *) &ss, &sl) != 0)
    {
        sa_die(SA_EXIT_UNAVAILABLE, "cannot listen on %s: %s", spec,
               strerror(errno));
    }
    freeaddrinfo(ai);

    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *) &ss;
        char                 a[INET6_ADDRSTRLEN];

        inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof(a));
        snprintf(shown, sizeof(shown), "[%s]:%u", a, ntohs(s6->sin6_port));

    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *) &ss;
        char                a[INET_ADDRSTRLEN];

        inet_ntop(AF_INET, &s4->sin_addr, a, sizeof(a));
        snprintf(shown, sizeof(shown), "%s:%u", a, ntohs(s4->sin_port));
    }

    l->addr = sa_xstrdup(shown);
    return fd;
}


static void
sa_listener_add_or_exit(sa_serve_t *s, const char *spec, int trusted)
{
    sa_listener_t  *l;

    s->listeners = sa_xrealloc(s->listeners,
                               (s->nlisteners + 1) * sizeof(*l));
    l = &s->listeners[s->nlisteners++];
    memset(l, 0, sizeof(*l));
    l->trusted = trusted;

    l->fd = strncmp(spec, "unix:", 5) == 0
            ? sa_listen_unix_or_exit(l, spec + 5)
            : sa_listen_inet_or_exit(l, spec);
}


static unsigned
sa_count_or_exit(sa_admin_t *sa, const char *flag, const char *v,
    unsigned max)
{
    char          *end;
    unsigned long  n;

    errno = 0;
    n = strtoul(v, &end, 10);
    if (*v < '0' || *v > '9' || *end != '\0' || errno != 0 || n == 0
        || n > max)
    {
        sa_die_usage(sa, "invalid %s '%s' (expected 1 to %u)", flag, v, max);
    }

    return (unsigned) n;
}


/* room for the connections: the soft limit of open files up to the hard */
static void
sa_files_limit(sa_serve_t *s)
{
    struct rlimit  rl;
    rlim_t         want;

    want = (rlim_t) s->max_conns + s->nlisteners + 64 + 4 * s->nworkers;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur >= want) {
        return;
    }

    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY || rl.rlim_max > want
                  ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    if (rl.rlim_cur < want) {
        sa_serve_log("open files limited to %lu: fewer connections than "
                     "--max-connections may be accepted",
                     (unsigned long) rl.rlim_cur);
    }
}


static void
sa_epoll_add_or_exit(int epfd, int fd, void *ptr)
{
    struct epoll_event  ev;

    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = ptr;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        sa_die(SA_EXIT_UNAVAILABLE, "epoll_ctl: %s", strerror(errno));
    }
}


/* the markers of what an epoll event is, besides listeners and workers */
static char  sa_ev_signal;


static void
sa_run_daemons(sa_serve_t *s)
{
    int  i;

    for (i = 0; i < s->nlisteners; i++) {
        if (s->listeners[i].mhd != NULL) {
            MHD_run(s->listeners[i].mhd);
        }
    }
}


/* SIGTERM: the listeners stop accepting; the loop ends when nothing is
 * left in flight */
static void
sa_serve_stop(sa_serve_t *s)
{
    int     i;
    MHD_socket  fd;

    if (s->stopping) {
        return;
    }
    s->stopping = 1;
    sa_serve_log("stopping: %d request%s in flight", s->inflight,
                 s->inflight == 1 ? "" : "s");

    for (i = 0; i < s->nlisteners; i++) {
        fd = MHD_quiesce_daemon(s->listeners[i].mhd);
        if (fd != MHD_INVALID_SOCKET) {
            close(fd);
        }
        if (s->listeners[i].unix_path) {
            unlink(s->listeners[i].addr + 5);
        }
    }
}


static void
sa_signal_event(sa_serve_t *s)
{
    struct signalfd_siginfo  si;

    while (read(s->sigfd, &si, sizeof(si)) == sizeof(si)) {
        switch (si.ssi_signo) {
        case SIGTERM:
        case SIGINT:
            sa_serve_stop(s);
            break;
        case SIGHUP:
            sa_serve_log("SIGHUP: replacing the workers (the keys are read "
                         "again)");
            sa_pool_reload(s);
            sa_refresher_reload(s);
            break;
        }
    }
}


/* connections past the deadline of their request are shut down: MHD then
 * closes them (a client that trickles its headers or body, slowloris) */
static void
sa_deadlines(sa_serve_t *s, double now)
{
    sa_conn_t  *c;

    for (c = s->conns; c != NULL; c = c->next) {
        if (!c->busy && c->fd >= 0 && now - c->since > s->timeout) {
            shutdown(c->fd, SHUT_RDWR);
            c->fd = -1;
        }
    }
}


static int
sa_loop_timeout(sa_serve_t *s)
{
    MHD_UNSIGNED_LONG_LONG  t;
    int                     i, ms = 1000;

    for (i = 0; i < s->nlisteners; i++) {
        if (MHD_get_timeout(s->listeners[i].mhd, &t) == MHD_YES
            && t < (MHD_UNSIGNED_LONG_LONG) ms)
        {
            ms = (int) t;
        }
    }

    return ms;
}


static void
sa_serve_loop(sa_serve_t *s)
{
    struct epoll_event  evs[64];
    double              stop_at = 0, now;
    int                 n, i;
    void               *p;

    for ( ;; ) {
        n = epoll_wait(s->epfd, evs, 64, sa_loop_timeout(s));
        if (n < 0 && errno != EINTR) {
            sa_die(SA_EXIT_UNAVAILABLE, "epoll_wait: %s", strerror(errno));
        }

        for (i = 0; i < n; i++) {
            p = evs[i].data.ptr;
            if (p == &sa_ev_signal) {
                sa_signal_event(s);

            } else if (p >= (void *) s->workers
                       && p < (void *) (s->workers + s->nworkers))
            {
                sa_pool_event(s, p);
            }
        }

        /* listeners' events, resumed connections, MHD's own timeouts */
        sa_run_daemons(s);

        now = sa_mono();
        sa_deadlines(s, now);
        sa_pool_tick(s, now);
        sa_refresher_tick(s);

        if (s->stopping) {
            if (stop_at == 0) {
                stop_at = now + SA_STOP_GRACE;
            }
            if (s->inflight == 0 || now > stop_at) {
                break;
            }
        }
    }

    if (s->inflight) {
        sa_serve_log("stopped with %d request%s unanswered", s->inflight,
                     s->inflight == 1 ? "" : "s");
    }

    for (i = 0; i < s->nlisteners; i++) {
        MHD_stop_daemon(s->listeners[i].mhd);
    }
    sa_pool_stop(s);
    sa_refresher_stop(s);
    sa_serve_log("stopped");
}


static const struct option  serve_opts[] = {
    SA_OPT_MANY("listen", 'l'),
    SA_OPT_MANY("trusted-listen", 'T'),
    { "user-header", required_argument, NULL, 'u' },
    SA_OPT_MANY("operator", 'o'),
    { "workers", required_argument, NULL, 'w' },
    { "max-connections", required_argument, NULL, 'm' },
    { "timeout", required_argument, NULL, 't' },
    { "console", required_argument, NULL, 'c' },
    { "refresh-period", required_argument, NULL, 'r' },
    SA_OPTS_END
};


void
sa_cmd_serve(sa_admin_t *sa, int argc, char **argv)
{
    sa_serve_t  *s = &sa_serve;
    const char  *listen[64], *trusted[64];
    int          nlisten = 0, ntrusted = 0, nops = 0, ch, i;
    int64_t      t;
    sigset_t     set;
    const char  *console = NULL;
    int64_t      refresh = 0;

    sa->command = &serve_command;
    optind = 0;

    memset(s, 0, sizeof(*s));
    s->user_header = NULL;
    s->max_conns = 1024;
    s->timeout = 10;
    s->nworkers = 4;

    while ((ch = sa_getopt_or_exit(sa, argc, argv, serve_opts)) != -1) {
        switch (ch) {
        case 'l':
        case 'T':
            if (nlisten + ntrusted >= 64) {
                sa_die_usage(sa, "at most 64 listeners");
            }
            if (ch == 'l') {
                listen[nlisten++] = optarg;
            } else {
                trusted[ntrusted++] = optarg;
            }
            break;
        case 'u':
            if (*optarg == '\0' || strcspn(optarg, ": \t\r\n") != strlen(optarg)) {
                sa_die_usage(sa, "invalid header name '%s'", optarg);
            }
            s->user_header = optarg;
            break;
        case 'o':
            if (!sa_user_valid(optarg)) {
                sa_die_usage(sa, "invalid user name '%s'", optarg);
            }
            if (strlen(optarg) > 11
                && strcmp(optarg + strlen(optarg) - 11, ".sa.invalid") == 0)
            {
                /* operators are people: never a token bounded by scopes */
                sa_die_usage(sa, "--operator '%s' names a service account",
                             optarg);
            }
            if (nops >= 64) {
                sa_die_usage(sa, "at most 64 operators");
            }
            s->operators[nops++] = optarg;
            break;
        case 'w':
            s->nworkers = (int) sa_count_or_exit(sa, "--workers", optarg, 256);
            break;
        case 'm':
            s->max_conns = sa_count_or_exit(sa, "--max-connections", optarg,
                                            100000);
            break;
        case 't':
            t = sa_duration_parse(optarg);
            if (t <= 0 || t > 3600) {
                sa_die_usage(sa, "invalid --timeout '%s' (expected 1s to 1h)",
                             optarg);
            }
            s->timeout = (unsigned) t;
            break;
        case 'c':
            console = optarg;
            break;
        case 'r':
            refresh = sa_duration_parse(optarg);
            if (refresh <= 0) {
                sa_die_usage(sa, "invalid --refresh-period '%s'", optarg);
            }
            break;
        }
    }
    sa_operands_or_exit(sa, argc, argv, 0);

    if (nlisten + ntrusted == 0) {
        sa_die_usage(sa, "no listener: give --listen ADDR");
    }
    if (s->user_header != NULL && ntrusted == 0) {
        sa_die_usage(sa, "--user-header needs --trusted-listen");
    }
    if (s->user_header == NULL) {
        s->user_header = "X-Forwarded-User";
    }
    if (refresh > 0 && sa->fresh_period <= 0) {
        sa_die_usage(sa, "--refresh-period needs SA_FRESH_PERIOD");
    }
    if (refresh > 0 && refresh >= (sa->fresh_period / 4 > 0
                                   ? sa->fresh_period / 4 : 1))
    {
        sa_die_usage(sa, "--refresh-period must be shorter than a quarter "
                     "of SA_FRESH_PERIOD (the window): records would lapse");
    }
    if (sa->actor != NULL) {
        sa_die_usage(sa, "serve takes its callers from the requests, not "
                     "from --as or SA_ACTOR");
    }

    s->tmpl = *sa;
    s->tmpl.channel = "api";
    s->tmpl.json = 1;
    s->tmpl.operators = nops ? s->operators : NULL;

    sa_console_set_or_exit(s, console ? console : SA_CONSOLE_DIR,
                           console != NULL);
    sa_routes_init();

    /* the signals through a signalfd; the workers get them back */
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (s->epfd < 0 || s->sigfd < 0) {
        sa_die(SA_EXIT_UNAVAILABLE, "epoll, signalfd: %s", strerror(errno));
    }
    sa_epoll_add_or_exit(s->epfd, s->sigfd, &sa_ev_signal);

    /* one version memory for every worker, past SIGHUP and recycling */
    if (sa_bearer_share() != 0) {
        sa_die(SA_EXIT_UNAVAILABLE, "mmap: %s", strerror(errno));
    }

    /* the workers first: they load the keys, and fail here when they can't */
    sa_pool_start_or_exit(s);
    if (refresh > 0) {
        sa_refresher_start(s, refresh);
    }

    for (i = 0; i < nlisten; i++) {
        sa_listener_add_or_exit(s, listen[i], 0);
    }
    for (i = 0; i < ntrusted; i++) {
        sa_listener_add_or_exit(s, trusted[i], 1);
    }
    sa_files_limit(s);

    for (i = 0; i < s->nlisteners; i++) {
        if (sa_http_start(s, &s->listeners[i]) != 0) {
            sa_die(SA_EXIT_UNAVAILABLE, "cannot start the HTTP server on %s",
                   s->listeners[i].addr);
        }
        sa_epoll_add_or_exit(s->epfd, s->listeners[i].epfd,
                             &s->listeners[i]);
    }

    if (s->console != NULL) {
        sa_serve_log("the console from %s at /", s->console);
    }
    for (i = 0; i < s->nlisteners; i++) {
        fprintf(stderr, "listening on %s\n", s->listeners[i].addr);
    }
    fflush(stderr);

    sa_serve_loop(s);
}
