/*
 * sa-admin notify: notifications of a service account, per application,
 * to Slack or a webhook (docs/notifications.md).  The
 * delivery worker ('notify run') is in notify_worker.c.
 */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sodium.h>
#include <curl/curl.h>

#include "change.h"
#include "notify.h"
#include "perm.h"
#include "redis.h"
#include "scripts.h"
#include "util.h"
#include "xalloc.h"

#define SA_NOTIFY_URL_MAX     2048
#define SA_WEBHOOK_SECRET_LEN 43

static void sa_notify_set(sa_admin_t *sa, int argc, char **argv);
static void sa_notify_list(sa_admin_t *sa, int argc, char **argv);
static void sa_notify_remove(sa_admin_t *sa, int argc, char **argv);
static void sa_notify_test(sa_admin_t *sa, int argc, char **argv);
static void sa_notify_emit(sa_admin_t *sa, int argc, char **argv);
static void sa_notify_run_cmd(sa_admin_t *sa, int argc, char **argv);
static void sa_notify_failed(sa_admin_t *sa, int argc, char **argv);
static void sa_notify_retry(sa_admin_t *sa, int argc, char **argv);

#define SA_NOTIFY_KEY_HELP                                                   \
    "The notify key: --notify-key FILE or SA_NOTIFY_KEY (written by\n"     \
    "'sa-admin key generate').\n"

static const sa_command_t  commands[] = {
    { "set", sa_notify_set,
      "notify set APP ACCOUNT [--slack URL] [--webhook URL] --events E,...",
      "Sends ACCOUNT's events for application APP to a Slack incoming\n"
      "webhook and/or a webhook URL (http or https), replacing what was set\n"
      "(needs service_accounts:create; the account must hold a grant for\n"
      "APP).  Events: token.issued, token.rescoped, token.rotated,\n"
      "token.revoked, token.expiring, token.denied, account.granted,\n"
      "account.ungranted, account.deleted, ping, app.<word>, or '*'.\n"
      "With --webhook, prints the webhook signing secret: the only time it\n"
      "is shown.  URLs and secret are kept sealed with the notify key.\n"
      SA_NOTIFY_KEY_HELP },
    { "list", sa_notify_list, "notify list APP",
      "Lists the subscriptions of APP: account, events, destinations (host\n"
      "only), state.  Never a secret or a full URL.  With the notify key,\n"
      "subscriptions that cannot be unsealed are shown as tampered.\n" },
    { "remove", sa_notify_remove, "notify remove APP ACCOUNT",
      "Stops ACCOUNT's notifications for APP (needs\n"
      "service_accounts:create).\n" },
    { "test", sa_notify_test, "notify test APP ACCOUNT",
      "Queues a 'ping' event for that subscription, whatever events it\n"
      "takes (needs service_accounts:create).\n" },
    { "emit", sa_notify_emit, "notify emit APP EVENT [--data JSON]",
      "Queues an application's own event (EVENT: app.<word>; --data a JSON\n"
      "object) for every subscription of APP that takes it.\n" },
    { "run", sa_notify_run_cmd,
      "notify run [--once] [--allow-private] [--concurrency N]",
      "The delivery worker: delivers queued events, retries failures with\n"
      "exponential backoff (1 s doubling to 1 h, for 24 h; then kept for\n"
      "'notify failed'), disables a subscription answered 410.  Several\n"
      "workers may run side by side.  SIGTERM: finishes or hands back\n"
      "what is in flight, then exits 0.\n"
      "  --once            deliver what is queued and due, then exit\n"
      "  --allow-private   allow loopback, private, link-local destinations\n"
      "  --concurrency N   deliveries at once (default 16)\n"
      SA_NOTIFY_KEY_HELP
      "Event signatures are checked with SA_VERIFY_KEY or --verify-key FILE,\n"
      "or the signing key's own verify key.  SA_NOTIFY_TIME_SCALE (tests\n"
      "only) multiplies every retry delay and the reclaim time.\n" },
    { "failed", sa_notify_failed, "notify failed [APP]",
      "Lists the deliveries that gave up (dead letters).\n" },
    { "retry", sa_notify_retry, "notify retry ID",
      "Queues a failed delivery again, with the same delivery id.\n" },
    { NULL, NULL, NULL, NULL }
};


void
sa_cmd_notify(sa_admin_t *sa, int argc, char **argv)
{
    sa_dispatch(sa, "notify", commands, argc, argv);
}


static void
sa_notify_app_or_exit(sa_admin_t *sa, const char *app)
{
    if (strcmp(app, "*") == 0 || !sa_app_valid(app, strlen(app))) {
        sa_die_usage(sa, "invalid application '%s' (expected "
                     "[A-Za-z0-9_.-], at most 64)", app);
    }
}


/*
 * A destination URL: http or https, a host, no credentials, nothing that
 * is not printable.  Its display form (scheme://host[:port]/...) goes to
 * out: what listings and logs show, never the path or query, where Slack
 * and many webhooks keep their secret.
 */
static void
sa_notify_url_or_exit(sa_admin_t *sa, const char *what, const char *url,
    char *out, size_t size)
{
    CURLU        *u;
    char         *scheme = NULL, *host = NULL, *port = NULL, *user = NULL;
    const char   *p;

    for (p = url; *p; p++) {
        if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f) {
            sa_die_usage(sa, "invalid %s URL: spaces or control characters",
                         what);
        }
    }

    if (strlen(url) > SA_NOTIFY_URL_MAX) {
        sa_die_usage(sa, "invalid %s URL: longer than %d", what,
                     SA_NOTIFY_URL_MAX);
    }

    u = curl_url();
    if (u == NULL
        || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
    {
        sa_die_usage(sa, "invalid %s URL (expected http:// or "
                     "https://HOST/...)", what);
    }

    if (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0) {
        sa_die_usage(sa, "invalid %s URL: only http and https", what);
    }

    if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        sa_die_usage(sa, "invalid %s URL: no credentials in it", what);
    }

    curl_url_get(u, CURLUPART_PORT, &port, 0);
    snprintf(out, size, "%s://%s%s%s/...", scheme, host, port ? ":" : "",
             port ? port : "");

    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(user);
    curl_url_cleanup(u);
}


/* --events a,b --events c: into a JSON array without duplicates */
static void
sa_notify_events_or_exit(sa_admin_t *sa, json_t *events, const char *list)
{
    char  *copy = sa_xstrdup(list), *e, *save = NULL;

    for (e = strtok_r(copy, ",", &save); e != NULL;
         e = strtok_r(NULL, ",", &save))
    {
        if (!sa_event_type_valid(e, 1)) {
            sa_die_usage(sa, "unknown event '%s'", e);
        }
        sa_json_add_unique(events, e);
    }

    free(copy);
}


static int
sa_account_granted(sa_account_t *a, const char *app)
{
    size_t   i;
    json_t  *v;

    json_array_foreach(a->apps, i, v) {
        if (strcmp(json_string_value(v), app) == 0
            || strcmp(json_string_value(v), "*") == 0)
        {
            return 1;
        }
    }

    return 0;
}


typedef struct {
    const char    *app;
    const char    *ref;
    const char    *slack;
    const char    *webhook;
    char           slack_shown[SA_NOTIFY_URL_MAX + 16];
    char           webhook_shown[SA_NOTIFY_URL_MAX + 16];
    json_t        *events;
    char           secret[6 + SA_WEBHOOK_SECRET_LEN + 1];
    sa_account_t   a;
} sa_notify_set_t;


static int
sa_notify_set_once(sa_admin_t *sa, void *data)
{
    sa_notify_set_t  *c = data;
    json_t           *priv, *pub, *app;
    char             *plain, *sealed, *sub;
    sa_args_t         args;
    int               rc;

    sa_account_free(&c->a);
    sa_account_load_or_exit(sa, c->ref, &c->a);

    if (!sa_account_granted(&c->a, c->app)) {
        sa_die(SA_EXIT_NOT_FOUND, "account %s/%s holds no grant for "
               "application '%s' (see 'sa-admin account grant')",
               c->a.team, c->a.name, c->app);
    }

    /* only an owning or sharing team's accounts subscribe to it */
    app = sa_app_load_or_exit(sa, c->app);
    if (!sa_app_serves(app, c->a.team)) {
        sa_die(SA_EXIT_NOT_FOUND, "application '%s' belongs to team '%s' "
               "and is not shared with team '%s'", c->app,
               json_string_value(json_object_get(app, "team")), c->a.team);
    }
    json_decref(app);
    sa_permit_or_exit(sa, c->a.team, "service_accounts:create");

    priv = json_pack("{s:i, s:s, s:s, s:O, s:s*, s:s*, s:s*}", "v", 1,
                     "app", c->app, "account", c->a.id, "events", c->events,
                     "webhook", c->webhook, "slack", c->slack,
                     "secret", c->webhook ? c->secret : NULL);
    plain = sa_xjson_dumps(priv, JSON_COMPACT);
    sealed = sa_seal(sa_notify_key_or_exit(), plain, strlen(plain));
    sodium_memzero(plain, strlen(plain));
    free(plain);
    json_decref(priv);

    pub = json_pack("{s:s, s:s, s:s, s:s, s:O, s:s*, s:s*, s:I, s:s, s:s}",
                    "app", c->app, "account", c->a.id, "team", c->a.team,
                    "name", c->a.name, "events", c->events,
                    "webhook", c->webhook ? c->webhook_shown : NULL,
                    "slack", c->slack ? c->slack_shown : NULL,
                    "created_at", (json_int_t) sa_now(),
                    "created_by", sa->actor, "sealed", sealed);
    sub = sa_xjson_dumps(pub, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(pub);
    free(sealed);

    sa_change_args(sa, &args);
    sa_args_add(&args, c->a.team);
    sa_args_add(&args, c->a.id);
    sa_args_addf(&args, "%lld", (long long) c->a.version);
    sa_args_add(&args, c->app);
    sa_args_add(&args, sub);
    rc = sa_change_or_exit(sa, &sa_lua_notify_set, &args);

    sa_args_free(&args);
    free(sub);

    return rc;
}


static void
sa_notify_set(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "slack", required_argument, NULL, 's' },
        { "webhook", required_argument, NULL, 'w' },
        SA_OPT_MANY("events", 'e'),
        SA_OPTS_END
    };
    sa_notify_set_t    c;
    char             **op;
    int                ch;

    memset(&c, 0, sizeof(c));
    c.events = json_array();

    while ((ch = sa_getopt_or_exit(sa, argc, argv, opts)) != -1) {
        switch (ch) {
        case 's':
            c.slack = optarg;
            sa_notify_url_or_exit(sa, "Slack", optarg, c.slack_shown,
                                  sizeof(c.slack_shown));
            break;
        case 'w':
            c.webhook = optarg;
            sa_notify_url_or_exit(sa, "webhook", optarg, c.webhook_shown,
                                  sizeof(c.webhook_shown));
            break;
        case 'e':
            sa_notify_events_or_exit(sa, c.events, optarg);
            break;
        }
    }

    op = sa_operands_or_exit(sa, argc, argv, 2);
    c.app = op[0];
    c.ref = op[1];
    sa_notify_app_or_exit(sa, c.app);

    if (c.slack == NULL && c.webhook == NULL) {
        sa_die_usage(sa, "--slack URL or --webhook URL is required");
    }
    if (json_array_size(c.events) == 0) {
        sa_die_usage(sa, "--events E,... is required");
    }

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);
    sa_notify_key_or_exit();

    memcpy(c.secret, "whsec_", 6);
    sa_random_base62(c.secret + 6, SA_WEBHOOK_SECRET_LEN);
    c.secret[sizeof(c.secret) - 1] = '\0';

    sa_retry_or_exit(sa, sa_notify_set_once, &c, "the account");

    if (sa->json) {
        sa_print_json(json_pack("{s:s, s:{s:s, s:s, s:s}, s:O, s:s*, s:s*, "
                                "s:s*}", "application", c.app,
                                "account", "id", c.a.id, "team", c.a.team,
                                "name", c.a.name, "events", c.events,
                                "webhook", c.webhook ? c.webhook_shown : NULL,
                                "slack", c.slack ? c.slack_shown : NULL,
                                "secret", c.webhook ? c.secret : NULL));

    } else if (c.webhook) {
        /* the secret alone on stdout, so that SECRET=$(sa-admin ...) works */
        printf("%s\n", c.secret);
        fprintf(stderr, "notifications of %s/%s for %s set; the webhook "
                "signing secret is shown only this once: store it now\n",
                c.a.team, c.a.name, c.app);

    } else {
        printf("notifications of %s/%s for %s go to %s\n", c.a.team,
               c.a.name, c.app, c.slack_shown);
    }

    sodium_memzero(c.secret, sizeof(c.secret));
    sa_account_free(&c.a);
    json_decref(c.events);
}


static void
sa_notify_list(sa_admin_t *sa, int argc, char **argv)
{
    char          **op, *plain, *ev;
    redisReply     *r;
    json_t         *out, *sub, *row;
    size_t          i;
    int             check;

    op = sa_plain_args_or_exit(sa, argc, argv, 1);
    sa_notify_app_or_exit(sa, op[0]);

    /* the key is optional here: with it, tampered subscriptions show */
    check = sa_notify_key_given();

    r = sa_xredis_cmd(sa, "HGETALL %s", sa_key(sa, SA_KEY_NOTIFY, op[0]));
    out = json_array();

    for (i = 0; i + 1 < r->elements; i += 2) {
        sub = json_loadb(r->element[i + 1]->str, r->element[i + 1]->len, 0,
                         NULL);
        if (!json_is_object(sub)) {
            fprintf(stderr, "sa-admin: subscription of %s to %s is "
                    "unreadable (written by something other than "
                    "sa-admin?)\n", r->element[i]->str, op[0]);
            json_decref(sub);
            continue;
        }

        row = json_pack("{s:s, s:{s:s, s:O*, s:O*}, s:O*, s:O*, s:O*, s:o, "
                        "s:O*}", "application", op[0],
                        "account", "id", r->element[i]->str,
                        "team", json_object_get(sub, "team"),
                        "name", json_object_get(sub, "name"),
                        "events", json_object_get(sub, "events"),
                        "webhook", json_object_get(sub, "webhook"),
                        "slack", json_object_get(sub, "slack"),
                        "created_at", sa_time_json(json_integer_value(
                                          json_object_get(sub, "created_at"))),
                        "created_by", json_object_get(sub, "created_by"));

        if (json_integer_value(json_object_get(sub, "disabled_at"))) {
            json_object_set_new(row, "state", json_string("disabled"));
        } else {
            json_object_set_new(row, "state", json_string("active"));
        }

        if (check) {
            plain = sa_unseal(sa_notify_key_or_exit(), json_string_value(
                                  json_object_get(sub, "sealed")));
            if (plain == NULL) {
                json_object_set_new(row, "state", json_string("tampered"));
                fprintf(stderr, "sa-admin: subscription of %s to %s cannot "
                        "be unsealed (tampered?): it is not delivered\n",
                        r->element[i]->str, op[0]);
            } else {
                sodium_memzero(plain, strlen(plain));
                free(plain);
            }
        }

        json_array_append_new(out, row);
        json_decref(sub);
    }
    freeReplyObject(r);

    if (sa->json) {
        sa_print_json(out);
        return;
    }

    printf("%-16s  %-30s  %-9s  %-36s  %s\n", "ACCOUNT", "NAME", "STATE",
           "DESTINATIONS", "EVENTS");
    json_array_foreach(out, i, row) {
        json_t  *acct = json_object_get(row, "account");
        char     name[160], dest[600];

        snprintf(name, sizeof(name), "%s/%s",
                 json_string_value(json_object_get(acct, "team")) ?: "?",
                 json_string_value(json_object_get(acct, "name")) ?: "?");
        snprintf(dest, sizeof(dest), "%s%s%s%s%s",
                 json_object_get(row, "webhook") ? "webhook " : "",
                 json_string_value(json_object_get(row, "webhook")) ?: "",
                 json_object_get(row, "webhook")
                 && json_object_get(row, "slack") ? ", " : "",
                 json_object_get(row, "slack") ? "slack " : "",
                 json_string_value(json_object_get(row, "slack")) ?: "");
        ev = sa_join(json_object_get(row, "events"), ",");
        printf("%-16s  %-30s  %-9s  %-36s  %s\n",
               json_string_value(json_object_get(acct, "id")), name,
               json_string_value(json_object_get(row, "state")), dest, ev);
        free(ev);
    }
    json_decref(out);
}


typedef struct {
    const char    *app;
    const char    *ref;
    sa_account_t   a;
    long long      queued;
} sa_notify_one_t;


static int
sa_notify_remove_once(sa_admin_t *sa, void *data)
{
    sa_notify_one_t  *c = data;
    sa_args_t         args;
    int               rc;

    sa_account_free(&c->a);
    sa_account_load_or_exit(sa, c->ref, &c->a);
    sa_permit_or_exit(sa, c->a.team, "service_accounts:create");

    sa_change_args(sa, &args);
    sa_args_add(&args, c->a.team);
    sa_args_add(&args, c->a.id);
    sa_args_addf(&args, "%lld", (long long) c->a.version);
    sa_args_add(&args, c->app);
    sa_args_add(&args, "");
    rc = sa_change_or_exit(sa, &sa_lua_notify_set, &args);
    sa_args_free(&args);

    return rc;
}


static void
sa_notify_two_args_or_exit(sa_admin_t *sa, int argc, char **argv,
    sa_notify_one_t *c)
{
    char  **op;

    memset(c, 0, sizeof(*c));

    op = sa_plain_args_or_exit(sa, argc, argv, 2);
    c->app = op[0];
    c->ref = op[1];
    sa_notify_app_or_exit(sa, c->app);

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);
}


static void
sa_notify_remove(sa_admin_t *sa, int argc, char **argv)
{
    sa_notify_one_t  c;

    sa_notify_two_args_or_exit(sa, argc, argv, &c);
    sa_retry_or_exit(sa, sa_notify_remove_once, &c, "the account");

    if (sa->json) {
        sa_print_json(json_pack("{s:s, s:s, s:b}", "application", c.app,
                                "account", c.a.id, "removed", 1));
    } else {
        printf("notifications of %s/%s for %s removed\n", c.a.team, c.a.name,
               c.app);
    }

    sa_account_free(&c.a);
}


/* runs notify_emit.lua; returns the number of deliveries queued */
static long long
sa_notify_queue_or_exit(sa_admin_t *sa, sa_args_t *args)
{
    redisReply  *r;
    long long    queued;

    sa_xscript_append(sa, &sa_lua_notify_emit, 0, args);
    r = sa_xredis_reply(sa);

    if (r->type == REDIS_REPLY_ERROR) {
        exit(sa_reply_status(r));
    }

    queued = r->integer;
    freeReplyObject(r);
    return queued;
}


static void
sa_notify_test(sa_admin_t *sa, int argc, char **argv)
{
    sa_notify_one_t   c;
    sa_args_t         args;
    char             *ev;

    sa_notify_two_args_or_exit(sa, argc, argv, &c);

    sa_account_load_or_exit(sa, c.ref, &c.a);
    ev = sa_event_seal(sa, "ping", c.app, c.a.team, c.a.id, c.a.name,
                       c.a.email, json_pack("{s:s}", "message",
                                            "a test from sa-admin notify test"));
    sa_permit_or_exit(sa, c.a.team, "service_accounts:create");

    sa_change_args(sa, &args);
    sa_args_add(&args, "test");
    sa_args_add(&args, c.a.team);
    sa_args_add(&args, c.a.id);
    sa_args_add(&args, c.app);
    sa_args_add(&args, ev);
    c.queued = sa_notify_queue_or_exit(sa, &args);
    sa_args_free(&args);
    free(ev);

    if (sa->json) {
        sa_print_json(json_pack("{s:s, s:s, s:I}", "application", c.app,
                                "account", c.a.id, "queued",
                                (json_int_t) c.queued));
    } else {
        printf("ping queued for %s/%s in %s (%lld deliver%s)\n", c.a.team,
               c.a.name, c.app, c.queued, c.queued == 1 ? "y" : "ies");
    }

    sa_account_free(&c.a);
}


static void
sa_notify_emit(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "data", required_argument, NULL, 'd' },
        SA_OPTS_END
    };
    json_t      *data = NULL, *app;
    json_error_t jerr;
    sa_args_t    args;
    const char  *team;
    char       **op, *ev;
    long long    queued;

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        json_decref(data);              /* --data */
        data = json_loads(optarg, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(data)) {
            sa_die_usage(sa, "--data must be a JSON object");
        }
    }

    op = sa_operands_or_exit(sa, argc, argv, 2);
    sa_notify_app_or_exit(sa, op[0]);

    if (strncmp(op[1], "app.", 4) != 0 || !sa_event_type_valid(op[1], 0)) {
        sa_die_usage(sa, "invalid event '%s' (expected app.<word>, "
                     "[a-z0-9_-])", op[1]);
    }

    sa_actor_or_exit(sa);

    /* the application's own teams emit its events (perm.h) */
    app = sa_app_load_or_exit(sa, op[0]);
    team = sa_app_permit_or_exit(sa, app, "service_accounts:create");

    ev = sa_event_seal(sa, op[1], op[0], NULL, NULL, NULL, NULL,
                       data ? data : json_object());

    sa_change_args(sa, &args);
    sa_args_add(&args, "emit");
    sa_args_add(&args, op[0]);
    sa_args_add(&args, op[1]);
    sa_args_add(&args, ev);
    sa_args_add(&args, team);
    queued = sa_notify_queue_or_exit(sa, &args);
    sa_args_free(&args);
    free(ev);

    if (sa->json) {
        sa_print_json(json_pack("{s:s, s:s, s:s, s:I}", "application", op[0],
                                "type", op[1], "team", team,
                                "queued", (json_int_t) queued));
    } else {
        printf("%s queued for %s (%lld deliver%s)\n", op[1], op[0], queued,
               queued == 1 ? "y" : "ies");
    }

    json_decref(app);
}


static void
sa_notify_run_cmd(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "once", no_argument, NULL, 'o' },
        { "allow-private", no_argument, NULL, 'p' },
        { "concurrency", required_argument, NULL, 'c' },
        SA_OPTS_END
    };
    int    ch, rc, once = 0, allow_private = 0;
    long   conc = 16;
    char  *end;

    while ((ch = sa_getopt_or_exit(sa, argc, argv, opts)) != -1) {
        switch (ch) {
        case 'o':
            once = 1;
            break;
        case 'p':
            allow_private = 1;
            break;
        case 'c':
            conc = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end != '\0' || conc < 1 || conc > 1024) {
                sa_die_usage(sa, "invalid concurrency '%s' (1 to 1024)",
                             optarg);
            }
            break;
        }
    }

    sa_operands_or_exit(sa, argc, argv, 0);

    sa_notify_key_or_exit();
    sa_verify_key_or_exit(sa);

    rc = sa_notify_run(sa, once, allow_private, (int) conc);
    if (rc != SA_EXIT_OK) {
        exit(rc);
    }
}


static int
sa_by_failed_at(const void *x, const void *y)
{
    json_t      *a = *(json_t * const *) x, *b = *(json_t * const *) y;
    json_int_t   ta = json_integer_value(json_object_get(a, "failed_at"));
    json_int_t   tb = json_integer_value(json_object_get(b, "failed_at"));

    return ta < tb ? -1 : ta > tb;
}


static void
sa_notify_failed(sa_admin_t *sa, int argc, char **argv)
{
    redisReply   *r;
    json_t      **v, *out, *st, *row;
    size_t        i, n = 0;
    const char   *app = NULL;
    char        **op;
    static const struct option  opts[] = { SA_OPTS_END };

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        /* nothing but --help, which exits */
    }

    /* [APP] */
    op = sa_operands_or_exit(sa, argc, argv, argc > optind ? 1 : 0);
    if (argc > optind) {
        app = op[0];
        sa_notify_app_or_exit(sa, app);
    }

    r = sa_xredis_cmd(sa, "HGETALL %s", sa_key(sa, SA_KEY_FAILED, NULL));
    v = sa_xcalloc(r->elements / 2 + 1, sizeof(json_t *));

    for (i = 0; i + 1 < r->elements; i += 2) {
        st = json_loadb(r->element[i + 1]->str, r->element[i + 1]->len, 0,
                        NULL);
        if (!json_is_object(st)) {
            json_decref(st);
            continue;
        }
        if (app && strcmp(json_string_value(json_object_get(st, "app")) ?: "",
                          app) != 0)
        {
            json_decref(st);
            continue;
        }
        row = json_pack("{s:s, s:O*, s:O*, s:O*, s:O*, s:O*, s:O*, s:O*, "
                        "s:o, s:O*}", "id", r->element[i]->str,
                        "type", json_object_get(st, "type"),
                        "application", json_object_get(st, "app"),
                        "account", json_object_get(st, "account"),
                        "team", json_is_string(json_object_get(st, "team"))
                                ? json_object_get(st, "team") : json_null(),
                        "destination", json_object_get(st, "where"),
                        "attempts", json_object_get(st, "attempts"),
                        "error", json_object_get(st, "error"),
                        "failed_at", sa_time_json(json_integer_value(
                                         json_object_get(st, "failed_at"))),
                        "dest", json_object_get(st, "dest"));
        json_object_set(row, "_t", json_object_get(st, "failed_at"));
        v[n++] = row;
        json_decref(st);
    }
    freeReplyObject(r);

    qsort(v, n, sizeof(json_t *), sa_by_failed_at);
    out = json_array();
    for (i = 0; i < n; i++) {
        json_object_del(v[i], "_t");
        json_array_append_new(out, v[i]);
    }
    free(v);

    if (sa->json) {
        sa_print_json(out);
        return;
    }

    printf("%-24s  %-20s  %-18s  %-12s  %-16s  %-8s  %s\n", "ID",
           "FAILED", "TYPE", "APP", "ACCOUNT", "ATTEMPTS", "ERROR");
    json_array_foreach(out, i, row) {
#define S(f) (json_string_value(json_object_get(row, f)) ?: "-")
        printf("%-24s  %-20s  %-18s  %-12s  %-16s  %-8lld  %s\n", S("id"),
               S("failed_at"), S("type"), S("application"), S("account"),
               (long long) json_integer_value(json_object_get(row,
                                                              "attempts")),
               S("error"));
#undef S
    }
    json_decref(out);
}


static void
sa_notify_retry(sa_admin_t *sa, int argc, char **argv)
{
    char       **op;
    redisReply  *r;
    json_t      *st;
    char        *state;
    sa_args_t    args;

    op = sa_plain_args_or_exit(sa, argc, argv, 1);

    r = sa_xredis_cmd(sa, "HGET %s %s", sa_key(sa, SA_KEY_FAILED, NULL),
                      op[0]);
    if (r->type != REDIS_REPLY_STRING) {
        sa_die(SA_EXIT_NOT_FOUND, "no failed delivery '%s'", op[0]);
    }

    st = json_loadb(r->str, r->len, 0, NULL);
    if (!json_is_object(st)) {
        sa_die(SA_EXIT_NOT_FOUND, "failed delivery '%s' is unreadable",
               op[0]);
    }

    /* a fresh start: attempts and the 24 h window from now */
    json_object_set_new(st, "attempts", json_integer(0));
    json_object_set_new(st, "first_at", json_integer(sa_now() * 1000));
    json_object_del(st, "error");
    json_object_del(st, "failed_at");
    state = sa_xjson_dumps(st, JSON_COMPACT);

    /* a delivery of no team (a malformed entry): the operator's alone */
    if (*(json_string_value(json_object_get(st, "team")) ?: "") == '\0') {
        sa_operator_or_exit(sa, "re-queueing a delivery of no team");
    } else {
        sa_permit_or_exit(sa, json_string_value(json_object_get(st, "team")),
                          "service_accounts:create");
    }

    sa_change_args(sa, &args);
    sa_args_add(&args, op[0]);
    sa_args_add(&args, state);
    sa_args_addf(&args, "%lld", (long long) sa_now() * 1000);
    sa_args_add(&args, json_string_value(json_object_get(st, "team")) ?: "");
    sa_args_addn(&args, r->str, r->len);
    sa_change_once_or_exit(sa, &sa_lua_notify_retry, &args,
                           "the failed delivery");

    if (sa->json) {
        sa_print_json(json_pack("{s:s, s:b}", "id", op[0], "queued", 1));
    } else {
        printf("delivery %s queued again\n", op[0]);
    }

    sa_args_free(&args);
    free(state);
    json_decref(st);
    freeReplyObject(r);
}
