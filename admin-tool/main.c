/*
 * sa-admin: creates teams and service accounts, issues and revokes their
 * tokens.  This file reads the global options and hands the rest of the
 * command line to the command group.
 */

#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "sa_admin.h"
#include <jansson.h>

#include "fresh.h"
#include "ops/ops.h"
#include "notify.h"
#include "redis.h"
#include "sa_crypto.h"

/* the version: the Makefile passes the first entry of debian/changelog */
#ifndef SA_VERSION
#error "SA_VERSION is not defined: build with make (from debian/changelog)"
#endif

static const char  usage[] =
    "usage: sa-admin [--redis URL] [--signing-key FILE] [--as USER] [--json]\n"
    "                [--api URL [--token-file FILE]]\n"
    "                GROUP COMMAND [ARGS]\n"
    "\n"
    "groups:\n"
    "  key       generate the keys; re-sign every record with a new one\n"
    "  team      create teams, add members with permissions\n"
    "  app       applications: their owner team, shared with other teams\n"
    "  scope     the scope catalogue of an application (console check boxes)\n"
    "  account   create, list, show, grant, ungrant, delete service accounts\n"
    "  token     issue, list, scope, rotate, revoke tokens\n"
    "  audit     print the audit log\n"
    "  notify    notifications and webhooks, and their delivery worker\n"
    "  user      a person's personal tokens for the admin API\n"
    "  serve     run the admin API (HTTP)\n"
    "\n"
    "global options (also from the environment):\n"
    "  --redis URL          redis://[user:pass@]host:port/db,\n"
    "                       rediss://... (TLS), unix:///path?db=N or, through\n"
    "                       Redis Sentinel, redis-sentinel[+tls]://[user:pass@]\n"
    "                       host:port[,host:port...][/db]#MASTER (SA_REDIS;\n"
    "                       default redis://127.0.0.1:6379/0)\n"
    "  --redis-ca FILE      CA certificates for TLS (SA_REDIS_CA; default the\n"
    "                       system's); the server's certificate must chain to\n"
    "                       them and name the host of the URL\n"
    "  --redis-cert FILE    a client certificate for TLS (SA_REDIS_CERT)\n"
    "  --redis-key FILE     its key (SA_REDIS_KEY)\n"
    "  --redis-insecure     TLS without verifying the server (never in\n"
    "                       production)\n"
    "  --signing-key FILE   Ed25519 signing key (SA_SIGNING_KEY)\n"
    "  --as USER            the acting user (SA_ACTOR); without one, the\n"
    "                       holder of the signing key acts as the operator\n"
    "  --api URL            run the command at the admin API (SA_API):\n"
    "                       http://host:port, https://... (the system's CAs)\n"
    "                       or unix:/path; the token from SA_TOKEN or\n"
    "                       --token-file FILE (only its owner may read it);\n"
    "                       neither the signing key nor Redis is needed\n"
    "  --token-file FILE    the bearer token for --api\n"
    "  SA_API_TIMEOUT       seconds an --api request may take (default 300)\n"
    "  --json               print one JSON document on stdout\n"
    "  --version            print the version and exit\n"
    "  SA_PREFIX            Redis key prefix (default sa:, as sa_redis_prefix)\n"
    "  SA_FRESH_PERIOD      sign token records fresh until now + this period\n"
    "                       (e.g. 24h), for gateways with sa_record_max_age\n"
    "  SA_RECORD_MAX_AGE    the admin API refuses a service-account token whose\n"
    "                       record is not fresh, as sa_record_max_age does\n"
    "\n"
    "'sa-admin GROUP --help' lists a group's commands.\n"
    "exit status: 0 ok, 1 usage, 2 not found or not permitted,\n"
    "3 Redis unavailable, 4 conflict (concurrent changes kept winning)\n";

typedef struct {
    const char   *name;
    sa_group_pt   run;
} sa_group_t;

static const sa_group_t  groups[] = {
    { "key", sa_cmd_key },
    { "team", sa_cmd_team },
    { "app", sa_cmd_app },
    { "scope", sa_cmd_scope },
    { "account", sa_cmd_account },
    { "token", sa_cmd_token },
    { "audit", sa_cmd_audit },
    { "notify", sa_cmd_notify },
    { "user", sa_cmd_user },
    { "serve", sa_cmd_serve },
    { NULL, NULL }
};


static int  sa_show_version;     /* --version, anywhere on the line */
static const char  *sa_api_url;         /* --api, SA_API */
static const char  *sa_token_file;      /* --token-file */


/* "sa-admin 0.3", or {"version":"0.3"} with --json */
static int
sa_version(sa_admin_t *sa)
{
    json_t  *doc;

    if (sa->json) {
        doc = json_pack("{s:s}", "version", SA_VERSION);
        json_dumpf(doc, stdout, JSON_COMPACT);
        fputc('\n', stdout);
        json_decref(doc);

    } else {
        printf("sa-admin %s\n", SA_VERSION);
    }

    return SA_EXIT_OK;
}


/*
 * Takes the global options out of argv wherever they stand, so that
 * "sa-admin team list t --json" works as well as "sa-admin --json team ...".
 * Returns the new argc, or -1 after a usage error.
 */
static int
sa_global_options(sa_admin_t *sa, int argc, char **argv)
{
    struct { const char *name; const char **slot; }  valued[] = {
        { "--redis", &sa->redis_url },
        { "--redis-ca", &sa->redis_ca },
        { "--redis-cert", &sa->redis_cert },
        { "--redis-key", &sa->redis_key },
        { "--signing-key", &sa->signing_key },
        { "--as", &sa->actor },
        { "--notify-key", &sa->notify_key },
        { "--verify-key", &sa->verify_key },
        { "--api", &sa_api_url },
        { "--token-file", &sa_token_file }
    };
    int     i, j, out;
    size_t  k, n;

    out = 1;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            while (i < argc) {
                argv[out++] = argv[i++];
            }
            break;
        }

        if (strcmp(argv[i], "--json") == 0) {
            sa->json = 1;
            continue;
        }

        if (strcmp(argv[i], "--version") == 0) {
            sa_show_version = 1;
            continue;
        }

        if (strcmp(argv[i], "--redis-insecure") == 0) {
            sa->redis_insecure = 1;
            continue;
        }

        for (k = 0; k < sizeof(valued) / sizeof(valued[0]); k++) {
            n = strlen(valued[k].name);
            if (strncmp(argv[i], valued[k].name, n) != 0
                || (argv[i][n] != '=' && argv[i][n] != '\0'))
            {
                continue;
            }
            if (*valued[k].slot != NULL) {
                /* taken silently, the last one would win */
                fprintf(stderr, "sa-admin: option '%s' may be given only "
                        "once\n", valued[k].name);
                return -1;
            }
            if (argv[i][n] == '=') {
                *valued[k].slot = argv[i] + n + 1;
                break;
            }
            if (argv[i][n] == '\0') {
                if (i + 1 >= argc) {
                    fprintf(stderr, "sa-admin: option '%s' needs a value\n",
                            valued[k].name);
                    return -1;
                }
                *valued[k].slot = argv[++i];
                break;
            }
        }

        if (k == sizeof(valued) / sizeof(valued[0])) {
            argv[out++] = argv[i];
        }
    }

    for (j = out; j < argc; j++) {
        argv[j] = NULL;
    }

    return out;
}


static int
sa_wants_help(int argc, char **argv)
{
    int  i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            return 1;
        }
    }

    return 0;
}


static const char *
sa_env(const char *name, const char *fallback)
{
    const char  *v = getenv(name);

    return (v != NULL && *v != '\0') ? v : fallback;
}


int
main(int argc, char **argv)
{
    sa_admin_t         sa;
    const sa_group_t  *g;

    memset(&sa, 0, sizeof(sa));

    argc = sa_global_options(&sa, argc, argv);
    if (argc < 0) {
        return SA_EXIT_USAGE;
    }

    if (sa_show_version) {
        return sa_version(&sa);
    }

    if (sa.redis_url == NULL) {
        sa.redis_url = sa_env("SA_REDIS", "redis://127.0.0.1:6379/0");
    }
    if (sa.redis_ca == NULL) {
        sa.redis_ca = sa_env("SA_REDIS_CA", NULL);
    }
    if (sa.redis_cert == NULL) {
        sa.redis_cert = sa_env("SA_REDIS_CERT", NULL);
    }
    if (sa.redis_key == NULL) {
        sa.redis_key = sa_env("SA_REDIS_KEY", NULL);
    }
    if (sa.signing_key == NULL) {
        sa.signing_key = sa_env("SA_SIGNING_KEY", NULL);
    }
    if (sa_api_url == NULL) {
        sa_api_url = sa_env("SA_API", NULL);
    }
    if (sa.actor == NULL) {
        sa.actor = sa_env("SA_ACTOR", NULL);
    }
    sa.prefix = sa_env("SA_PREFIX", "sa:");
    sa.fresh_period = sa_fresh_period_env_or_exit();
    sa.record_max_age = sa_record_max_age_env_or_exit();
    if (strlen(sa.prefix) > SA_PREFIX_MAX) {
        /* as sa_redis_prefix: the gateway could not read such keys */
        fprintf(stderr, "sa-admin: SA_PREFIX is longer than %d bytes\n",
                SA_PREFIX_MAX);
        return SA_EXIT_USAGE;
    }

    /* the notify keys' own defaults (environment, key files) are notify.h's */
    if (sa.notify_key) {
        sa_notify_key_path(sa.notify_key);
    }
    if (sa.verify_key) {
        sa_verify_key_path(sa.verify_key);
    }

    if (argc < 2) {
        fputs(usage, stderr);
        return SA_EXIT_USAGE;
    }

    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0
        || strcmp(argv[1], "help") == 0)
    {
        fputs(usage, stdout);
        return SA_EXIT_OK;
    }

    if (sa_crypto_init() != 0) {
        sa_die(SA_EXIT_UNAVAILABLE, "libsodium failed to start");
    }

    /* serve is the server, never a client of one; --help needs no token */
    if (strcmp(argv[1], "serve") != 0 && !sa_wants_help(argc, argv)) {
        sa_api_setup_or_exit(&sa, sa_api_url, sa_token_file);
    }

    for (g = groups; g->name != NULL; g++) {
        if (strcmp(argv[1], g->name) == 0) {
            /* it returns only when it succeeded */
            g->run(&sa, argc - 1, argv + 1);
            sa_redis_close(&sa);
            return SA_EXIT_OK;
        }
    }

    fprintf(stderr, "sa-admin: unknown command group '%s'\n", argv[1]);
    fputs(usage, stderr);
    return SA_EXIT_USAGE;
}
