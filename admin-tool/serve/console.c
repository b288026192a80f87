/*
 * sa-admin serve: the console's static files (DESIGN.md, "Console and
 * scope catalogue"; issue 23).  `--console DIR` (default
 * /usr/share/sa-admin/console when it exists, else off; `off`) serves DIR
 * at `/` to GET and HEAD, for every path outside the API's routes.
 *
 * Only regular files inside DIR, of a known type, are served: a path is
 * %-decoded once, refused when a segment is empty, `.`, `..` or hidden
 * (a leading dot), or holds a backslash or a NUL; the file's real path
 * (symlinks resolved) must still lie inside DIR's real path, and be a
 * regular file (opened without blocking: a FIFO is a 404).  Every answer
 * carries the console's Content-Security-Policy, nosniff and no-referrer.
 */

#define _GNU_SOURCE

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>

#include "serve.h"
#include "util.h"
#include "xalloc.h"

#define SA_CONSOLE_CSP  "default-src 'self'; script-src 'self'; " \
                        "object-src 'none'; frame-ancestors 'none'; " \
                        "base-uri 'none'"

static const struct {
    const char  *ext;
    const char  *type;
} sa_console_types[] = {
    { ".html", "text/html; charset=utf-8" },
    { ".css", "text/css; charset=utf-8" },
    { ".js", "text/javascript; charset=utf-8" },
    { ".mjs", "text/javascript; charset=utf-8" },
    { ".json", "application/json" },
    { ".svg", "image/svg+xml" },
    { ".png", "image/png" },
    { ".ico", "image/x-icon" },
    { ".txt", "text/plain; charset=utf-8" },
    { ".woff2", "font/woff2" },
};


/* the Content-Type of name, NULL for a type not served */
static const char *
sa_console_type(const char *name)
{
    const char  *dot = strrchr(name, '.');
    size_t       i;

    if (dot == NULL || strchr(dot, '/') != NULL) {
        return NULL;
    }
    for (i = 0; i < sizeof(sa_console_types) / sizeof(sa_console_types[0]);
         i++)
    {
        if (strcasecmp(dot, sa_console_types[i].ext) == 0) {
            return sa_console_types[i].type;
        }
    }

    return NULL;
}


void
sa_console_set_or_exit(sa_serve_t *s, const char *dir, int given)
{
    char  *real;

    s->console = NULL;
    if (dir == NULL || strcmp(dir, "off") == 0) {
        return;
    }

    real = realpath(dir, NULL);
    if (real == NULL) {
        if (!given) {
            return;         /* the default, not installed: off */
        }
        sa_die(SA_EXIT_USAGE, "--console '%s': %s", dir, strerror(errno));
    }

    if (access(real, R_OK | X_OK) != 0) {
        sa_die(SA_EXIT_USAGE, "--console '%s': %s", dir, strerror(errno));
    }

    s->console = real;
}


/* %XX decoding once into out; -1 on a bad escape or a NUL */
static int
sa_console_decode(const char *in, char *out, size_t size)
{
    size_t  n = 0;
    int     hi, lo;

    while (*in) {
        if (n + 1 >= size) {
            return -1;
        }
        if (*in == '%') {
            if (strchr("0123456789abcdefABCDEF", in[1]) == NULL || !in[1]
                || strchr("0123456789abcdefABCDEF", in[2]) == NULL || !in[2])
            {
                return -1;
            }
            hi = in[1] <= '9' ? in[1] - '0' : (in[1] | 0x20) - 'a' + 10;
            lo = in[2] <= '9' ? in[2] - '0' : (in[2] | 0x20) - 'a' + 10;
            if (hi == 0 && lo == 0) {
                return -1;
            }
            out[n++] = (char) (hi * 16 + lo);
            in += 3;
        } else {
            out[n++] = *in++;
        }
    }
    out[n] = '\0';

    return 0;
}


/* every segment a plain name: no empty, ".", "..", hidden, backslash */
static int
sa_console_path_ok(const char *p)
{
    const char  *seg, *end;
    size_t       len;

    if (p[0] != '/') {
        return 0;
    }
    for (seg = p + 1; ; seg = end + 1) {
        end = strchr(seg, '/');
        len = end ? (size_t) (end - seg) : strlen(seg);
        if (len == 0 || seg[0] == '.' || memchr(seg, '\\', len) != NULL) {
            return 0;
        }
        if (end == NULL) {
            return 1;
        }
    }
}


static void
sa_console_headers(struct MHD_Response *resp, const char *ctype)
{
    MHD_add_response_header(resp, "Content-Type", ctype);
    MHD_add_response_header(resp, "Content-Security-Policy", SA_CONSOLE_CSP);
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    MHD_add_response_header(resp, "Cross-Origin-Opener-Policy", "same-origin");
    MHD_add_response_header(resp, "Cross-Origin-Resource-Policy", "same-origin");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
}


static enum MHD_Result
sa_console_error(struct MHD_Connection *conn, int status, const char *detail)
{
    struct MHD_Response  *resp;
    enum MHD_Result       rc;
    char                 *body;

    body = sa_problem_body(status, status == 404 ? "not-found"
                           : status == 405 ? "method-not-allowed" : "input",
                           NULL, detail, status == 404 ? 2 : 1);
    resp = MHD_create_response_from_buffer(strlen(body), body,
                                           MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(body);
        return MHD_NO;
    }
    sa_console_headers(resp, "application/problem+json");
    if (status == 405) {
        MHD_add_response_header(resp, "Allow", "GET, HEAD");
    }
    rc = MHD_queue_response(conn, (unsigned) status, resp);
    MHD_destroy_response(resp);

    return rc;
}


int
sa_console_wants(sa_serve_t *s, const char *url)
{
    return s->console != NULL && strncmp(url, "/v1/", 4) != 0
           && strcmp(url, "/v1") != 0;
}


int
sa_console_send(sa_serve_t *s, struct MHD_Connection *conn, const char *url,
    const char *method, int *status)
{
    char                  path[1024], *full, *real;
    const char           *ctype;
    struct MHD_Response  *resp;
    struct stat           st;
    enum MHD_Result       rc;
    size_t                dlen;
    int                   fd;

    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        *status = 405;
        return sa_console_error(conn, 405, "the console is read with GET");
    }

    *status = 404;
    if (strlen(url) >= sizeof(path) - 16) {
        return sa_console_error(conn, 404, "no such page");
    }
    if (sa_console_decode(url, path, sizeof(path) - 16) != 0) {
        *status = 400;
        return sa_console_error(conn, 400, "malformed path");
    }
    if (strcmp(path, "/") == 0) {
        strcpy(path, "/index.html");
    }
    if (!sa_console_path_ok(path) || (ctype = sa_console_type(path)) == NULL) {
        return sa_console_error(conn, 404, "no such page");
    }

    full = sa_xmalloc(strlen(s->console) + strlen(path) + 1);
    strcpy(full, s->console);
    strcat(full, path);
    real = realpath(full, NULL);
    free(full);

    dlen = strlen(s->console);
    if (real == NULL || strncmp(real, s->console, dlen) != 0
        || real[dlen] != '/')
    {
        free(real);
        return sa_console_error(conn, 404, "no such page");
    }

    /* O_NONBLOCK: a FIFO put there must not stop serve in open() */
    fd = open(real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    free(real);
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        if (fd >= 0) {
            close(fd);
        }
        return sa_console_error(conn, 404, "no such page");
    }

    resp = MHD_create_response_from_fd((uint64_t) st.st_size, fd);
    if (resp == NULL) {
        close(fd);
        return MHD_NO;
    }
    sa_console_headers(resp, ctype);
    *status = 200;
    rc = MHD_queue_response(conn, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);

    return rc;
}
