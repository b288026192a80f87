/*
 * sa-admin serve: the prefork pool, parent side (serve.h).  Each worker
 * is a child with one end of a socketpair; it sends one ready byte once it
 * has loaded the keys, then answers one request frame at a time.  A worker
 * that ends (its 10,000th request, SIGHUP, a die that went through the
 * sink, a crash) is replaced; a request it held without answering gets the
 * answer its exit status means (1: 400, 2: 404, 3: 503, 4: 409, else 500).
 */

#define _GNU_SOURCE

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "serve.h"
#include "xalloc.h"

#define SA_RESPAWN_PAUSE  1.0     /* a worker that failed to start */


/* ------------------------------------------------------------ frames */

static int
sa_write_all(int fd, const char *p, size_t n)
{
    ssize_t  w;

    while (n > 0) {
        w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return -1;
        }
        p += w;
        n -= (size_t) w;
    }

    return 0;
}


int
sa_frame_write(int fd, json_t *doc)
{
    char           *s;
    size_t          n;
    unsigned char   hdr[4];
    int             rc;

    s = json_dumps(doc, JSON_COMPACT | JSON_ENCODE_ANY);
    if (s == NULL) {
        return -1;
    }
    n = strlen(s);
    hdr[0] = (unsigned char) (n >> 24);
    hdr[1] = (unsigned char) (n >> 16);
    hdr[2] = (unsigned char) (n >> 8);
    hdr[3] = (unsigned char) n;

    rc = sa_write_all(fd, (char *) hdr, 4) == 0
         && sa_write_all(fd, s, n) == 0 ? 0 : -1;
    free(s);

    return rc;
}


static int
sa_read_all(int fd, char *p, size_t n)
{
    ssize_t  r;

    while (n > 0) {
        r = read(fd, p, n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            return -1;
        }
        p += r;
        n -= (size_t) r;
    }

    return 0;
}


json_t *
sa_frame_read(int fd)
{
    unsigned char   hdr[4];
    size_t          n;
    char           *buf;
    json_t         *doc;

    if (sa_read_all(fd, (char *) hdr, 4) != 0) {
        return NULL;
    }
    n = (size_t) hdr[0] << 24 | (size_t) hdr[1] << 16 | (size_t) hdr[2] << 8
        | hdr[3];
    if (n > SA_SERVE_FRAME_MAX) {
        return NULL;
    }

    buf = sa_xmalloc(n + 1);
    if (sa_read_all(fd, buf, n) != 0) {
        free(buf);
        return NULL;
    }
    doc = json_loadb(buf, n, 0, NULL);
    free(buf);

    return doc;
}


/* ------------------------------------------------------------ workers */

static void
sa_worker_spawn(sa_serve_t *s, sa_worker_t *w)
{
    int                 sv[2];
    pid_t               pid;
    struct epoll_event  ev;
    sigset_t            set;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        sa_serve_log("socketpair: %s", strerror(errno));
        w->respawn_at = sa_mono() + SA_RESPAWN_PAUSE;
        return;
    }

    fflush(stderr);
    pid = fork();
    if (pid < 0) {
        sa_serve_log("fork: %s", strerror(errno));
        close(sv[0]);
        close(sv[1]);
        w->respawn_at = sa_mono() + SA_RESPAWN_PAUSE;
        return;
    }

    if (pid == 0) {
        /* the parent's files (listeners, MHD's, other workers') stay there */
        if (dup2(sv[1], 3) != 3) {
            _exit(3);
        }
        close_range(4, ~0U, 0);
        sigemptyset(&set);
        sigprocmask(SIG_SETMASK, &set, NULL);
        /* the parent decides when a worker ends: it closes the socket */
        signal(SIGTERM, SIG_IGN);
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        sa_worker_main(s, 3);
    }

    close(sv[1]);
    memset(w, 0, sizeof(*w));
    w->pid = pid;
    w->fd = sv[0];

    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN;
    ev.data.ptr = w;
    if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, w->fd, &ev) != 0) {
        sa_die(SA_EXIT_UNAVAILABLE, "epoll_ctl: %s", strerror(errno));
    }
}


static int
sa_exit_status_code(int status)
{
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}


/* what a request gets from a worker that ended without answering it */
static void
sa_answer_by_exit(sa_serve_t *s, sa_req_t *r, int code)
{
    int          status;
    const char  *type, *detail;

    switch (code) {
    case 1:
        status = 400; type = "input"; detail = "bad input";
        break;
    case 2:
        status = 404; type = "not-found"; detail = "not found or not "
                                                   "permitted";
        break;
    case 3:
        status = 503; type = "unavailable"; detail = "Redis is unavailable";
        break;
    case 4:
        status = 409; type = "conflict"; detail = "concurrent changes kept "
                                                  "winning: try again";
        code = 4;
        break;
    default:
        status = 500; type = "internal"; detail = "the worker ended without "
                                                  "an answer";
        code = 3;
        break;
    }

    sa_http_answered(s, r, status,
                     sa_problem_body(status, type, NULL, detail, code), 1);
}


/* the worker is gone: reap it, answer what it held, replace it */
static void
sa_worker_gone(sa_serve_t *s, sa_worker_t *w)
{
    int        status = 0, code;
    sa_req_t  *r = w->req;
    int        was_ready = w->ready;

    epoll_ctl(s->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    close(w->fd);
    while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR) {
        /* void */
    }
    code = sa_exit_status_code(status);

    if (r != NULL) {
        sa_answer_by_exit(s, r, code);
        r->dispatched = 0;
    } else if (!w->retiring && code != 0) {
        sa_serve_log("worker %d exited with %d%s", (int) w->pid, code,
                     was_ready ? "" : " before it was ready");
    }

    free(w->buf);
    memset(w, 0, sizeof(*w));
    w->fd = -1;

    if (s->stopping) {
        return;
    }

    if (was_ready) {
        sa_worker_spawn(s, w);
    } else {
        w->respawn_at = sa_mono() + SA_RESPAWN_PAUSE;
    }
}


/* the next waiting request to a free worker */
static void
sa_pool_run_queue(sa_serve_t *s)
{
    sa_worker_t  *w;
    sa_req_t     *r;
    json_t       *msg;
    int           i;

    while (s->queue != NULL) {
        w = NULL;
        for (i = 0; i < s->nworkers; i++) {
            if (s->workers[i].pid && s->workers[i].ready
                && !s->workers[i].retiring && s->workers[i].req == NULL)
            {
                w = &s->workers[i];
                break;
            }
        }
        if (w == NULL) {
            return;
        }

        r = s->queue;
        s->queue = r->next;
        if (s->queue == NULL) {
            s->queue_tail = NULL;
        }
        r->next = NULL;
        r->queued = 0;

        msg = json_pack("{s:i, s:O, s:s?, s:s?, s:s, s:s, s:b}",
                        "route", r->route_ix, "in", r->in,
                        "auth", r->auth, "user", r->user,
                        "peer", r->peer, "listener", r->l->addr,
                        "trusted", r->l->trusted);
        w->req = r;
        r->dispatched = 1;
        w->served++;
        if (sa_frame_write(w->fd, msg) != 0) {
            json_decref(msg);
            sa_worker_gone(s, w);
            continue;
        }
        json_decref(msg);
    }
}


void
sa_pool_dispatch(sa_serve_t *s, sa_req_t *r)
{
    r->queued = 1;
    if (s->queue_tail) {
        s->queue_tail->next = r;
    } else {
        s->queue = r;
    }
    s->queue_tail = r;

    sa_pool_run_queue(s);
}


/* the request's connection is gone (the daemon's end) */
void
sa_pool_forget(sa_serve_t *s, sa_req_t *r)
{
    sa_req_t  **pp;
    int         i;

    if (r->queued) {
        for (pp = &s->queue; *pp != NULL; pp = &(*pp)->next) {
            if (*pp == r) {
                *pp = r->next;
                break;
            }
        }
        s->queue_tail = NULL;
        for (pp = &s->queue; *pp != NULL; pp = &(*pp)->next) {
            s->queue_tail = *pp;
        }
    }

    for (i = 0; i < s->nworkers; i++) {
        if (s->workers[i].req == r) {
            s->workers[i].req = NULL;
            /* its answer will have nowhere to go: a fresh worker */
            s->workers[i].retiring = 1;
        }
    }
}


static void
sa_worker_answer(sa_serve_t *s, sa_worker_t *w, json_t *doc)
{
    sa_req_t  *r = w->req;
    json_t    *body;
    char      *text;

    if (json_is_true(json_object_get(doc, "bye"))) {
        w->retiring = 1;
    }

    w->req = NULL;
    if (r == NULL) {
        return;
    }
    r->dispatched = 0;

    body = json_object_get(doc, "body");
    json_decref(r->messages);
    r->messages = json_incref(json_object_get(doc, "messages"));
    text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
    sa_http_answered(s, r, (int) json_integer_value(json_object_get(doc,
                                                                    "status")),
                     text, json_is_true(json_object_get(doc, "problem")));
}


void
sa_pool_event(sa_serve_t *s, sa_worker_t *w)
{
    ssize_t   n;
    size_t    flen;
    json_t   *doc;
    char      c;

    if (!w->ready) {
        n = read(w->fd, &c, 1);
        if (n == 1) {
            w->ready = 1;
            sa_pool_run_queue(s);
            return;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return;
        }
        sa_worker_gone(s, w);
        return;
    }

    for ( ;; ) {
        if (w->cap - w->len < 65536) {
            w->cap = w->cap ? w->cap * 2 : 131072;
            w->buf = sa_xrealloc(w->buf, w->cap);
        }
        n = recv(w->fd, w->buf + w->len, w->cap - w->len, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && errno == EAGAIN) {
            break;
        }
        if (n <= 0) {
            /* an answer complete before the end still counts (the sink) */
            if (w->len >= 4) {
                flen = (size_t) (unsigned char) w->buf[0] << 24
                       | (size_t) (unsigned char) w->buf[1] << 16
                       | (size_t) (unsigned char) w->buf[2] << 8
                       | (unsigned char) w->buf[3];
                if (w->len >= 4 + flen) {
                    doc = json_loadb(w->buf + 4, flen, 0, NULL);
                    if (doc != NULL) {
                        sa_worker_answer(s, w, doc);
                        json_decref(doc);
                    }
                }
            }
            w->retiring = 1;
            sa_worker_gone(s, w);
            sa_pool_run_queue(s);
            return;
        }
        w->len += (size_t) n;
    }

    while (w->len >= 4) {
        flen = (size_t) (unsigned char) w->buf[0] << 24
               | (size_t) (unsigned char) w->buf[1] << 16
               | (size_t) (unsigned char) w->buf[2] << 8
               | (unsigned char) w->buf[3];
        if (flen > SA_SERVE_FRAME_MAX) {
            kill(w->pid, SIGKILL);
            w->len = 0;
            return;
        }
        if (w->len < 4 + flen) {
            break;
        }
        doc = json_loadb(w->buf + 4, flen, 0, NULL);
        memmove(w->buf, w->buf + 4 + flen, w->len - 4 - flen);
        w->len -= 4 + flen;
        if (doc != NULL) {
            sa_worker_answer(s, w, doc);
            json_decref(doc);
        }
    }

    /* a retiring worker with nothing to do is let go: the socket closes */
    if (w->retiring && w->req == NULL && !s->stopping) {
        epoll_ctl(s->epfd, EPOLL_CTL_DEL, w->fd, NULL);
        close(w->fd);
        w->fd = -1;
        while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR) {
            /* void */
        }
        free(w->buf);
        memset(w, 0, sizeof(*w));
        w->fd = -1;
        sa_worker_spawn(s, w);
    }

    sa_pool_run_queue(s);
}


void
sa_pool_tick(sa_serve_t *s, double now)
{
    int  i;

    if (s->stopping) {
        return;
    }

    for (i = 0; i < s->nworkers; i++) {
        if (s->workers[i].pid == 0 && s->workers[i].respawn_at != 0
            && now >= s->workers[i].respawn_at)
        {
            sa_worker_spawn(s, &s->workers[i]);
        }
    }
}


/* SIGHUP: every worker is replaced once it has answered what it holds */
void
sa_pool_reload(sa_serve_t *s)
{
    int  i;

    for (i = 0; i < s->nworkers; i++) {
        sa_worker_t  *w = &s->workers[i];

        if (w->pid == 0) {
            continue;
        }
        w->retiring = 1;
        if (w->req == NULL) {
            epoll_ctl(s->epfd, EPOLL_CTL_DEL, w->fd, NULL);
            close(w->fd);
            while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR) {
                /* void */
            }
            free(w->buf);
            memset(w, 0, sizeof(*w));
            w->fd = -1;
            sa_worker_spawn(s, w);
        }
    }
}


/*
 * The first workers: each must come up (it loads the keys) or serve ends
 * with its exit status; its message is on stderr already.
 */
void
sa_pool_start_or_exit(sa_serve_t *s)
{
    int      i, status;
    ssize_t  n;
    char     c;

    s->workers = sa_xcalloc(s->nworkers, sizeof(sa_worker_t));

    for (i = 0; i < s->nworkers; i++) {
        sa_worker_t  *w = &s->workers[i];

        sa_worker_spawn(s, w);
        if (w->pid == 0) {
            sa_die(SA_EXIT_UNAVAILABLE, "cannot start the workers");
        }

        do {
            n = read(w->fd, &c, 1);
        } while (n < 0 && errno == EINTR);

        if (n != 1) {
            while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR) {
                /* void */
            }
            exit(sa_exit_status_code(status) ? sa_exit_status_code(status)
                                             : SA_EXIT_UNAVAILABLE);
        }
        w->ready = 1;
    }
}


/* the end: every worker's socket closed, so it ends; then reaped */
void
sa_pool_stop(sa_serve_t *s)
{
    int  i;

    for (i = 0; i < s->nworkers; i++) {
        if (s->workers[i].pid) {
            close(s->workers[i].fd);
        }
    }
    for (i = 0; i < s->nworkers; i++) {
        if (s->workers[i].pid) {
            while (waitpid(s->workers[i].pid, NULL, 0) < 0 && errno == EINTR) {
                /* void */
            }
        }
    }
}
