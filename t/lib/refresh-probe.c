/*
 * sa_refresh_run() (admin-tool/refresh.h) in one long-running process with
 * a version memory kept across runs, as the admin API server runs it, for
 * t/admin/91-refresh.t.  Redis and the key from SA_REDIS, SA_PREFIX,
 * SA_SIGNING_KEY as sa-admin reads them.  Each line on stdin
 * "PERIOD WITHIN" (seconds) is one run; its stats are printed as one JSON
 * line (key refresh --json, plus "rc" and "versions", the ids the memory
 * holds).  Ends at the end of stdin.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "redis.h"
#include "refresh.h"
#include "sa_crypto.h"


static const char *
env(const char *name, const char *fallback)
{
    const char  *v = getenv(name);

    return v != NULL && *v != '\0' ? v : fallback;
}


int
main(void)
{
    char                line[256];
    long long           period, within;
    int                 rc;
    sa_admin_t          sa;
    sa_refresh_opts_t   opts;
    sa_refresh_stats_t  st;
    json_t             *out;

    memset(&sa, 0, sizeof(sa));
    sa.redis_url = env("SA_REDIS", "redis://127.0.0.1:6379/0");
    sa.signing_key = env("SA_SIGNING_KEY", NULL);
    sa.prefix = env("SA_PREFIX", "sa:");
    sa.actor = "refresh-probe";

    if (sa_crypto_init() != 0) {
        return 3;
    }

    memset(&opts, 0, sizeof(opts));
    opts.versions = sa_versions_new();
    sa.versions = opts.versions;

    while (fgets(line, sizeof(line), stdin) != NULL) {
        if (sscanf(line, "%lld %lld", &period, &within) != 2) {
            fprintf(stderr, "refresh-probe: expected PERIOD WITHIN\n");
            return 1;
        }

        rc = sa_refresh_run(&sa, period, within, &opts, &st);

        out = sa_refresh_json(&st, 0);
        json_object_set_new(out, "rc", json_integer(rc));
        json_object_set_new(out, "versions", json_integer(
            (json_int_t) sa_versions_count(opts.versions)));
        json_dumpf(out, stdout, JSON_COMPACT | JSON_SORT_KEYS);
        fputc('\n', stdout);
        fflush(stdout);
        json_decref(out);
    }

    sa_versions_free(opts.versions);
    sa_redis_close(&sa);

    return 0;
}
