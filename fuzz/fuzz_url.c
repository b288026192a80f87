/*
 * sa-admin's Redis URL parser (admin-tool/redis.c: sa_redis_url_parse).
 *
 * The bytes, NUL-terminated, are the URL (--redis, SA_REDIS).  The result
 * lives in an exact-size heap copy of sa_redis_url_t, so ASan sees a write
 * past the struct; a write past one field into the next is caught by
 * requiring every string field to be NUL-terminated inside its own array.
 * The error message must fit errlen (tried with a roomy and a tiny buffer).
 *
 * On success: a unix URL has an absolute path, a tcp URL a host, a
 * sentinel URL 1..16 sentinels (each a host and a port 1..65535) and a
 * master name; the port is 1..65535 or the default, db is 0..1000000; no
 * field holds a character that ends it in the URL grammar where that cannot
 * happen.  A URL rebuilt
 * from the fields parses back to the same fields whenever the fields hold
 * nothing that would need escaping.
 */

#include "fuzz.h"
#include "redis.h"


static size_t
field_len(const char *f, size_t size)
{
    const char  *nul = memchr(f, '\0', size);

    FUZZ_ASSERT(nul != NULL);
    return (size_t) (nul - f);
}


static void
check_fields(const sa_redis_url_t *u)
{
    int  i;

    field_len(u->host, sizeof(u->host));
    field_len(u->unix_path, sizeof(u->unix_path));
    field_len(u->user, sizeof(u->user));
    field_len(u->password, sizeof(u->password));
    field_len(u->master, sizeof(u->master));

    FUZZ_ASSERT(u->nsentinels >= 0 && u->nsentinels <= SA_SENTINELS_MAX);
    for (i = 0; i < u->nsentinels; i++) {
        field_len(u->sentinels[i].host, sizeof(u->sentinels[i].host));
    }
}


static int
plain(const char *s)
{
    return strpbrk(s, "@/:?") == NULL;
}


static int
same_url(const sa_redis_url_t *a, const sa_redis_url_t *b)
{
    int  i;

    if (a->nsentinels != b->nsentinels || strcmp(a->master, b->master) != 0) {
        return 0;
    }

    for (i = 0; i < a->nsentinels; i++) {
        if (strcmp(a->sentinels[i].host, b->sentinels[i].host) != 0
            || a->sentinels[i].port != b->sentinels[i].port)
        {
            return 0;
        }
    }

    return strcmp(a->host, b->host) == 0 && a->port == b->port
           && strcmp(a->unix_path, b->unix_path) == 0 && a->db == b->db
           && strcmp(a->user, b->user) == 0
           && strcmp(a->password, b->password) == 0;
}


/* a sentinel URL's hosts hold none of ",#" either */
static int
plain_sentinels(const sa_redis_url_t *u)
{
    int  i;

    for (i = 0; i < u->nsentinels; i++) {
        if (!plain(u->sentinels[i].host)
            || strpbrk(u->sentinels[i].host, ",#") != NULL)
        {
            return 0;
        }
    }

    return 1;
}


static void
round_trip(const sa_redis_url_t *u)
{
    char             url[6000], err[256], cred[400] = "";
    sa_redis_url_t  *v;
    size_t           n;
    int              i;

    if (!plain(u->user) || strchr(u->password, '@') != NULL
        || strchr(u->password, '/') != NULL
        || (u->unix_path[0] && strpbrk(u->unix_path, "@?") != NULL)
        || (!u->unix_path[0] && !u->nsentinels && !plain(u->host))
        || (u->nsentinels && (!plain_sentinels(u)
                              || strchr(u->password, '#') != NULL
                              || strpbrk(u->user, ",#") != NULL)))
    {
        return;
    }

    if (u->user[0] || u->password[0]) {
        snprintf(cred, sizeof(cred), "%s:%s@", u->user, u->password);
    }

    if (u->nsentinels) {
        n = snprintf(url, sizeof(url), "redis-sentinel://%s", cred);
        for (i = 0; i < u->nsentinels; i++) {
            n += snprintf(url + n, sizeof(url) - n, "%s%s:%d", i ? "," : "",
                          u->sentinels[i].host, u->sentinels[i].port);
        }
        snprintf(url + n, sizeof(url) - n, "/%d#%s", u->db, u->master);

    } else if (u->unix_path[0]) {
        snprintf(url, sizeof(url), "unix://%s%s?db=%d", cred, u->unix_path,
                 u->db);
    } else {
        snprintf(url, sizeof(url), "redis://%s%s:%d/%d", cred, u->host,
                 u->port, u->db);
    }

    v = malloc(sizeof(*v));
    FUZZ_ASSERT(v != NULL);
    if (sa_redis_url_parse(url, v, err, sizeof(err)) != 0) {
        fprintf(stderr, "rebuilt URL refused: %s (%s)\n", url, err);
        abort();
    }
    check_fields(v);
    if (!same_url(u, v)) {
        fprintf(stderr, "rebuilt URL %s parses differently\n", url);
        abort();
    }
    free(v);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char            *url, *err, tiny[8];
    sa_redis_url_t  *u;
    int              rc, rc2, i;

    url = fuzz_cstr(data, size);
    u = malloc(sizeof(*u));
    err = malloc(256);
    FUZZ_ASSERT(u != NULL && err != NULL);

    memset(u, 0xA5, sizeof(*u));
    memset(err, 0xA5, 256);

    rc = sa_redis_url_parse(url, u, err, 256);
    FUZZ_ASSERT(rc == 0 || rc == -1);
    check_fields(u);

    if (rc != 0) {
        FUZZ_ASSERT(memchr(err, '\0', 256) != NULL && err[0] != '\0');

    } else {
        FUZZ_ASSERT(u->db >= 0 && u->db <= 1000000);
        FUZZ_ASSERT(u->port >= 0 && u->port <= 65535);

        if (strncmp(url, "unix://", 7) == 0) {
            FUZZ_ASSERT(u->unix_path[0] == '/');
            FUZZ_ASSERT(u->host[0] == '\0');
            FUZZ_ASSERT(strchr(u->unix_path, '?') == NULL);
        } else if (strncmp(url, "redis-sentinel://", 17) == 0) {
            FUZZ_ASSERT(u->nsentinels >= 1);
            FUZZ_ASSERT(u->host[0] == '\0' && u->unix_path[0] == '\0');
            FUZZ_ASSERT(u->master[0] != '\0');
            FUZZ_ASSERT(strchr(u->master, '#') == NULL);
            for (i = 0; i < u->nsentinels; i++) {
                FUZZ_ASSERT(u->sentinels[i].host[0] != '\0');
                FUZZ_ASSERT(strpbrk(u->sentinels[i].host, ":/,") == NULL);
                FUZZ_ASSERT(u->sentinels[i].port >= 1
                            && u->sentinels[i].port <= 65535);
            }
        } else {
            FUZZ_ASSERT(strncmp(url, "redis://", 8) == 0);
            FUZZ_ASSERT(u->host[0] != '\0' && u->unix_path[0] == '\0');
            FUZZ_ASSERT(u->nsentinels == 0);
            FUZZ_ASSERT(strpbrk(u->host, ":/") == NULL);
        }

        FUZZ_ASSERT(strchr(u->user, ':') == NULL);
        round_trip(u);
    }

    /* the same verdict with a tiny error buffer, and the message fits */
    memset(tiny, 0xA5, sizeof(tiny));
    rc2 = sa_redis_url_parse(url, u, tiny, sizeof(tiny));
    FUZZ_ASSERT(rc2 == rc);
    if (rc2 != 0) {
        FUZZ_ASSERT(memchr(tiny, '\0', sizeof(tiny)) != NULL);
    }

    free(err);
    free(u);
    free(url);
    return 0;
}
