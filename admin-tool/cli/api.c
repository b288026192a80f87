/*
 * sa-admin --api URL: the command line as a client of the admin API
 * (sa-admin serve).  A command builds its operation's input exactly as
 * locally; instead of running the operation, sa_op_via sends it to the
 * operation's route (ops/registry.c): the path's {names} from the input,
 * the rest as the query (GET) or the JSON body, with the bearer token of
 * SA_TOKEN or --token-file.  The answer is the operation's output, printed
 * by the same code; a problem+json answer ends the process with its
 * detail and its "exit" member, as the local error would.
 */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>
#include <sodium.h>

#include "records.h"
#include "ops/ops.h"
#include "util.h"
#include "xalloc.h"

#define SA_API_TOKEN_MAX   512
#define SA_API_ANSWER_MAX  (256 * 1024 * 1024)

typedef struct {
    const char  *url;           /* as given */
    char        *base;          /* http[s]://host[:port][/prefix] */
    const char  *unix_path;     /* unix:/path, or NULL */
    char         token[SA_API_TOKEN_MAX + 1];
    long         timeout;       /* s: SA_API_TIMEOUT, default 300 */
    CURL        *curl;
} sa_api_t;

static sa_api_t  sa_api;

typedef struct {
    char    *data;
    size_t   len, cap;
} sa_buf_t;


static size_t
sa_api_write(char *p, size_t size, size_t n, void *cls)
{
    sa_buf_t  *b = cls;
    size_t     len = size * n;

    if (b->len + len + 1 > SA_API_ANSWER_MAX) {
        return 0;
    }
    if (b->len + len + 1 > b->cap) {
        b->cap = (b->len + len + 1) * 2;
        b->data = sa_xrealloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, p, len);
    b->len += len;
    b->data[b->len] = '\0';
    return len;
}


/* an Sa-Admin-Message header: what the operation said, as locally */
static size_t
sa_api_header(char *p, size_t size, size_t n, void *cls)
{
    size_t  len = size * n, k = sizeof("Sa-Admin-Message:") - 1;

    (void) cls;

    if (len > k && strncasecmp(p, "Sa-Admin-Message:", k) == 0) {
        p += k;
        len -= k;
        while (len > 0 && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        while (len > 0 && (p[len - 1] == '\r' || p[len - 1] == '\n')) {
            len--;
        }
        fprintf(stderr, "sa-admin: %.*s\n", (int) len, p);
    }

    return size * n;
}


/* the token of --token-file: a regular file only its owner can read */
static void
sa_api_token_file_or_exit(const char *path)
{
    struct stat  st;
    ssize_t      n;
    size_t       len;
    int          fd;
    char         buf[SA_API_TOKEN_MAX + 2];

    fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY);
    if (fd == -1) {
        sa_die(SA_EXIT_USAGE, "token file: cannot open \"%s\": %s", path,
               strerror(errno));
    }
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        sa_die(SA_EXIT_USAGE, "token file \"%s\" is not a regular file",
               path);
    }
    if (st.st_mode & 077) {
        close(fd);
        sa_die(SA_EXIT_USAGE, "token file \"%s\" is accessible by others: "
               "fix with chmod 600 \"%s\"", path, path);
    }

    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    len = n > 0 ? (size_t) n : 0;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) {
        len--;
    }
    if (n < 0 || len == 0 || len > SA_API_TOKEN_MAX) {
        sodium_memzero(buf, sizeof(buf));
        sa_die(SA_EXIT_USAGE, "token file \"%s\": no token in it", path);
    }
    memcpy(sa_api.token, buf, len);
    sa_api.token[len] = '\0';
    sodium_memzero(buf, sizeof(buf));
}


void
sa_api_setup_or_exit(sa_admin_t *sa, const char *url, const char *token_file)
{
    const char  *env = getenv("SA_TOKEN"), *c;
    size_t       n;

    if (url == NULL || *url == '\0') {
        if (token_file != NULL) {
            sa_die(SA_EXIT_USAGE, "--token-file is for --api (SA_API)");
        }
        return;
    }

    if (sa->actor != NULL) {
        sa_die(SA_EXIT_USAGE, "--as (SA_ACTOR) with --api: the server "
               "decides who you are, from your token");
    }

    sa_api.url = url;
    if (strncmp(url, "unix:", 5) == 0 && url[5] == '/') {
        sa_api.unix_path = url + 5;
        sa_api.base = sa_xstrdup("http://localhost");

    } else if (strncmp(url, "http://", 7) == 0
               || strncmp(url, "https://", 8) == 0)
    {
        n = strlen(url);
        while (n > 0 && url[n - 1] == '/') {
            n--;
        }
        sa_api.base = sa_xstrdup(url);
        sa_api.base[n] = '\0';

    } else {
        sa_die(SA_EXIT_USAGE, "invalid --api URL '%s' (expected http://, "
               "https:// or unix:/path)", url);
    }

    if (token_file != NULL) {
        sa_api_token_file_or_exit(token_file);

    } else if (env != NULL && *env != '\0') {
        if (strlen(env) > SA_API_TOKEN_MAX) {
            sa_die(SA_EXIT_USAGE, "SA_TOKEN is too long");
        }
        strcpy(sa_api.token, env);

    } else {
        sa_die(SA_EXIT_USAGE, "--api needs a token: SA_TOKEN or "
               "--token-file FILE");
    }

    for (c = sa_api.token; *c; c++) {
        if ((unsigned char) *c <= ' ' || *c == 0x7f) {
            sa_die(SA_EXIT_USAGE, "the token has a space or a control "
                   "character in it");
        }
    }

    sa_api.timeout = 300;
    env = getenv("SA_API_TIMEOUT");
    if (env != NULL && *env != '\0') {
        char  *end;

        sa_api.timeout = strtol(env, &end, 10);
        if (*end != '\0' || sa_api.timeout < 1 || sa_api.timeout > 86400) {
            sa_die(SA_EXIT_USAGE, "invalid SA_API_TIMEOUT '%s' (seconds, 1 "
                   "to 86400)", env);
        }
    }

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        sa_die(SA_EXIT_UNAVAILABLE, "libcurl failed to start");
    }

    sa_op_via = sa_api_call;
}


int
sa_api_on(void)
{
    return sa_api.base != NULL;
}


void
sa_api_local_or_exit(sa_admin_t *sa)
{
    if (sa_api_on()) {
        sa_die_usage(sa, "this command needs the keys themselves: it runs "
                     "only locally, without --api (SA_API)");
    }
}


/*
 * A path's {app} given as the list "apps" of one (account ungrant --app
 * X): moved to "app"; a list of more is a route of its own
 * (account.ungrant.apps)
 */
static json_t *
sa_api_plural(json_t *in, const char *name)
{
    json_t  *list, *v;
    char     plural[80];

    snprintf(plural, sizeof(plural), "%ss", name);
    list = json_object_get(in, plural);
    if (!json_is_array(list) || json_array_size(list) != 1) {
        return NULL;
    }
    v = json_incref(json_array_get(list, 0));
    json_object_del(in, plural);
    json_object_set_new(in, name, v);
    return v;
}


/* the route with its {names} from in (taken out of it), %-escaped */
static char *
sa_api_path_or_exit(CURL *curl, const sa_op_t *op, json_t *in)
{
    const char  *p = op->path, *e;
    sa_buf_t     b = { NULL, 0, 0 };
    json_t      *v;
    char        *esc, name[64];
    size_t       n;

    sa_api_write((char *) sa_api.base, 1, strlen(sa_api.base), &b);

    while (*p) {
        if (*p != '{' || (e = strchr(p, '}')) == NULL) {
            sa_api_write((char *) p, 1, 1, &b);
            p++;
            continue;
        }
        n = (size_t) (e - p - 1);
        if (n >= sizeof(name)) {
            sa_die_kind(SA_ERR_INTERNAL, "route %s: name too long", op->path);
        }
        memcpy(name, p + 1, n);
        name[n] = '\0';
        v = json_object_get(in, name);
        if (v == NULL) {
            v = sa_api_plural(in, name);
        }
        if (!json_is_string(v) || json_string_length(v) == 0) {
            sa_die_kind(SA_ERR_INPUT, "missing field '%s'", name);
        }
        esc = curl_easy_escape(curl, json_string_value(v),
                               (int) json_string_length(v));
        if (esc == NULL) {
            sa_die_kind(SA_ERR_INTERNAL, "out of memory");
        }
        sa_api_write(esc, 1, strlen(esc), &b);
        curl_free(esc);
        json_object_del(in, name);
        p = e + 1;
    }

    return b.data;
}


/* GET: the input's fields as the query (each a string) */
static void
sa_api_query_or_exit(CURL *curl, sa_buf_t *b, json_t *in)
{
    const char  *k;
    json_t      *v;
    char        *ek, *ev;
    int          first = 1;

    json_object_foreach(in, k, v) {
        if (!json_is_string(v)) {
            sa_die_kind(SA_ERR_INTERNAL, "field '%s' is not a string: it "
                        "cannot go in a query", k);
        }
        ek = curl_easy_escape(curl, k, 0);
        ev = curl_easy_escape(curl, json_string_value(v),
                              (int) json_string_length(v));
        if (ek == NULL || ev == NULL) {
            sa_die_kind(SA_ERR_INTERNAL, "out of memory");
        }
        sa_api_write(first ? "?" : "&", 1, 1, b);
        sa_api_write(ek, 1, strlen(ek), b);
        sa_api_write("=", 1, 1, b);
        sa_api_write(ev, 1, strlen(ev), b);
        curl_free(ek);
        curl_free(ev);
        first = 0;
    }
}


/* the kind of a problem's type urn:sa-admin:<name> */
static sa_err_kind_t
sa_api_kind(const char *type, int code)
{
    int  k;

    if (type != NULL && strncmp(type, "urn:sa-admin:", 13) == 0) {
        for (k = SA_ERR_INPUT; k <= SA_ERR_STALE; k++) {
            if (strcmp(type + 13, sa_err_name(k)) == 0) {
                return k;
            }
        }
    }

    return sa_err_kind_of_exit(code);
}


/* an answer that is not a success: its problem, as the local error */
SA_NORETURN static void
sa_api_problem(long status, const char *ctype, sa_buf_t *b)
{
    json_t       *p = NULL, *w;
    const char   *detail, *type;
    sa_err_kind_t kind;
    char          msg[1024];
    int           code;

    if (ctype != NULL && strstr(ctype, "json") != NULL && b->data != NULL) {
        p = json_loadb(b->data, b->len, 0, NULL);
    }

    detail = json_string_value(json_object_get(p, "detail"));
    type = json_string_value(json_object_get(p, "type"));
    w = json_object_get(p, "exit");
    code = json_is_integer(w) ? (int) json_integer_value(w) : 0;

    if (detail == NULL || code < 1 || code > 4) {
        /* not serve's: a proxy in front, another server */
        code = status == 401 || status == 403 || status == 404
               ? SA_EXIT_NOT_FOUND
               : (status >= 400 && status < 500) ? SA_EXIT_USAGE
               : SA_EXIT_UNAVAILABLE;
        if (status == 401) {
            snprintf(msg, sizeof(msg), "the admin API at %s refused the "
                     "token (HTTP 401)", sa_api.url);
        } else {
            snprintf(msg, sizeof(msg), "the admin API at %s answered HTTP "
                     "%ld", sa_api.url, status);
        }
        json_decref(p);
        sa_die_message(sa_err_kind_of_exit(code), code, msg, NULL);
    }

    kind = sa_api_kind(type, code);
    snprintf(msg, sizeof(msg), "%s", detail);
    /* tokens issued before the error (token issue --count): shown */
    w = json_object_get(p, "issued");
    if (json_is_array(w) && json_array_size(w) > 0) {
        /* after those of the requests before (cli/token.c, a count over
         * what one request may ask) */
        if (json_is_array(sa_die_partial)) {
            json_array_extend(sa_die_partial, w);
        } else {
            sa_die_partial = json_incref(w);
        }
        sa_die_partial_whole = json_is_true(json_object_get(p,
                                                            "issued_whole"));
    } else {
        /* none: a refusal made none; a failure may have made some */
        sa_die_partial_whole = kind != SA_ERR_UNAVAILABLE
                               && kind != SA_ERR_INTERNAL;
    }
    json_decref(p);
    sa_die_message(kind, code, msg,
                   kind == SA_ERR_INPUT ? sa_die_usage_line : NULL);
}


static json_t *sa_api_call_one(sa_admin_t *sa, const sa_op_t *op,
    json_t *in);


/*
 * An operation sent to its route: one request.  (A list the CLI gives
 * several of goes to a route that takes the list, account.ungrant.apps;
 * a route naming one {app} takes a list of one.)
 */
json_t *
sa_api_call(sa_admin_t *sa, const sa_op_t *op, json_t *in)
{
    return sa_api_call_one(sa, op, in);
}


static json_t *
sa_api_call_one(sa_admin_t *sa, const sa_op_t *op, json_t *in)
{
    struct curl_slist  *h = NULL;
    sa_buf_t            url = { NULL, 0, 0 }, ans = { NULL, 0, 0 };
    json_t             *body, *out, *w, *v;
    json_error_t        err;
    CURLcode            rc;
    char               *path, *text = NULL, auth[SA_API_TOKEN_MAX + 32];
    char               *ctype = NULL;
    long                status = 0;
    size_t              i;
    int                 write;

    (void) sa;

    if (op->method == NULL) {
        sa_die_kind(SA_ERR_INTERNAL, "operation %s has no route", op->name);
    }

    if (sa_api.curl == NULL && (sa_api.curl = curl_easy_init()) == NULL) {
        sa_die(SA_EXIT_UNAVAILABLE, "libcurl failed to start");
    }
    curl_easy_reset(sa_api.curl);

    body = json_deep_copy(in);
    path = sa_api_path_or_exit(sa_api.curl, op, body);
    sa_api_write(path, 1, strlen(path), &url);
    free(path);

    write = strcmp(op->method, "GET") != 0;
    if (!write) {
        sa_api_query_or_exit(sa_api.curl, &url, body);
    } else {
        text = json_dumps(body, JSON_COMPACT);
        h = curl_slist_append(h, "Content-Type: application/json");
    }
    json_decref(body);

    snprintf(auth, sizeof(auth), "Authorization: Bearer %s", sa_api.token);
    h = curl_slist_append(h, auth);
    sodium_memzero(auth, sizeof(auth));
    h = curl_slist_append(h, "Accept: application/json");

    curl_easy_setopt(sa_api.curl, CURLOPT_URL, url.data);
    curl_easy_setopt(sa_api.curl, CURLOPT_CUSTOMREQUEST, op->method);
    if (text != NULL) {
        curl_easy_setopt(sa_api.curl, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(sa_api.curl, CURLOPT_POSTFIELDSIZE,
                         (long) strlen(text));
    } else {
        curl_easy_setopt(sa_api.curl, CURLOPT_HTTPGET, 1L);
        curl_easy_setopt(sa_api.curl, CURLOPT_CUSTOMREQUEST, NULL);
    }
    if (sa_api.unix_path != NULL) {
        curl_easy_setopt(sa_api.curl, CURLOPT_UNIX_SOCKET_PATH,
                         sa_api.unix_path);
    }
    curl_easy_setopt(sa_api.curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(sa_api.curl, CURLOPT_WRITEFUNCTION, sa_api_write);
    curl_easy_setopt(sa_api.curl, CURLOPT_WRITEDATA, &ans);
    curl_easy_setopt(sa_api.curl, CURLOPT_HEADERFUNCTION, sa_api_header);
    curl_easy_setopt(sa_api.curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(sa_api.curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(sa_api.curl, CURLOPT_TIMEOUT, sa_api.timeout);
    curl_easy_setopt(sa_api.curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(sa_api.curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(sa_api.curl, CURLOPT_NOPROXY,
                     sa_api.unix_path != NULL ? "*" : NULL);
    curl_easy_setopt(sa_api.curl, CURLOPT_USERAGENT, "sa-admin");

    rc = curl_easy_perform(sa_api.curl);
    curl_slist_free_all(h);
    free(text);
    free(url.data);

    if (rc != CURLE_OK) {
        free(ans.data);
        sa_die(SA_EXIT_UNAVAILABLE, "cannot reach the admin API at %s: %s",
               sa_api.url, curl_easy_strerror(rc));
    }

    curl_easy_getinfo(sa_api.curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(sa_api.curl, CURLINFO_CONTENT_TYPE, &ctype);

    if (status < 200 || status > 299) {
        sa_api_problem(status, ctype, &ans);
    }

    out = ans.data ? json_loadb(ans.data, ans.len, 0, &err) : NULL;
    free(ans.data);
    if (out == NULL) {
        sa_die(SA_EXIT_UNAVAILABLE, "the admin API at %s answered HTTP %ld "
               "without JSON", sa_api.url, status);
    }

    /* serve's warnings, where the local operation prints them */
    w = json_is_object(out) ? json_object_get(out, "warnings") : NULL;
    if (json_is_array(w)) {
        json_array_foreach(w, i, v) {
            fprintf(stderr, "sa-admin: warning: %s\n", json_string_value(v));
        }
        json_object_del(out, "warnings");
    }

    return out;
}
