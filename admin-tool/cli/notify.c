#define _GNU_SOURCE     /* asprintf */

/*
 * sa-admin notify: the command line of the notification operations
 * (ops/notify.c), and of the delivery worker, 'notify run', which needs
 * the keys themselves and stays local (notify_worker.c).
 */

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "notify.h"
#include "records.h"
#include "xalloc.h"
#include "ops/ops.h"


/* "TEAM/NAME" of an account id, for the text of remove and test */
static char *
sa_account_name(sa_admin_t *sa, json_t *id)
{
    json_t  *a, *in;
    char    *name;

    in = json_pack("{s:O}", "id", id);
    a = sa_op_call(sa, "account.show", in);
    json_decref(in);
    if (asprintf(&name, "%s/%s", json_string_value(json_object_get(a, "team")),
                 json_string_value(json_object_get(a, "name"))) < 0)
    {
        name = NULL;
    }
    json_decref(a);

    return name;
}


static void
sa_notify_set(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "slack", required_argument, NULL, 's' },
        { "webhook", required_argument, NULL, 'w' },
        SA_OPT_MANY("events", 'e'),
        SA_OPT_MANY("slack-events", 'S'),
        SA_OPT_MANY("webhook-events", 'W'),
        SA_OPT_MANY("keep", 'k'),
        SA_OPTS_END
    };
    json_t       *in = json_object(), *events = json_array(), *out, *acct;
    json_t       *list;
    char        **op, *copy, *e, *save;
    const char   *field;
    int           ch;

    while ((ch = sa_getopt_or_exit(sa, argc, argv, opts)) != -1) {
        switch (ch) {
        case 's':
            json_object_set_new(in, "slack", json_string(optarg));
            break;
        case 'w':
            json_object_set_new(in, "webhook", json_string(optarg));
            break;
        case 'e':
        case 'S':
        case 'W':
        case 'k':
            /* --events a,b --events c; --slack-events, --webhook-events:
             * what that destination takes of them; --keep slack,webhook */
            field = ch == 'S' ? "slack_events" : ch == 'W' ? "webhook_events"
                    : "keep";
            list = ch == 'e' ? events : json_object_get(in, field);
            if (list == NULL) {
                list = json_array();
                json_object_set_new(in, field, list);
            }
            copy = sa_xstrdup(optarg);
            save = NULL;
            for (e = strtok_r(copy, ",", &save); e != NULL;
                 e = strtok_r(NULL, ",", &save))
            {
                json_array_append_new(list, json_string(e));
            }
            free(copy);
            break;
        }
    }

    op = sa_operands_or_exit(sa, argc, argv, 2);
    json_object_set_new(in, "events", events);
    json_object_set_new(in, "app", json_string(op[0]));
    json_object_set_new(in, "account", json_string(op[1]));

    out = sa_cli_run(sa, "notify.set", in);
    if (out == NULL) {
        return;
    }

    acct = json_object_get(out, "account");
#define S(o, f) json_string_value(json_object_get(o, f))
    if (json_is_string(json_object_get(out, "secret"))) {
        /* the secret alone on stdout, so that SECRET=$(sa-admin ...) works */
        printf("%s\n", S(out, "secret"));
        fprintf(stderr, "notifications of %s/%s for %s set; the webhook "
                "signing secret is shown only this once: store it now\n",
                S(acct, "team"), S(acct, "name"), S(out, "application"));

    } else {
        printf("notifications of %s/%s for %s go to %s%s%s\n",
               S(acct, "team"), S(acct, "name"), S(out, "application"),
               S(out, "slack") ? S(out, "slack") : "",
               S(out, "slack") && S(out, "webhook") ? " and " : "",
               S(out, "webhook") ? S(out, "webhook") : "");
    }
#undef S

    json_decref(out);
}


static void
sa_notify_list(sa_admin_t *sa, int argc, char **argv)
{
    char   **op = sa_plain_args_or_exit(sa, argc, argv, 1), *ev;
    json_t  *out, *row, *acct;
    size_t   i;
    char     name[160], dest[600];

    out = sa_cli_run(sa, "notify.list",
                         json_pack("{s:s}", "app", op[0]));
    if (out == NULL) {
        return;
    }

    printf("%-16s  %-30s  %-9s  %-36s  %s\n", "ACCOUNT", "NAME", "STATE",
           "DESTINATIONS", "EVENTS");
    json_array_foreach(out, i, row) {
        acct = json_object_get(row, "account");
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


/* notify remove and notify test: APP ACCOUNT */
static void
sa_notify_one(sa_admin_t *sa, int argc, char **argv)
{
    char       **op = sa_plain_args_or_exit(sa, argc, argv, 2), *name;
    int          test = strcmp(sa->command->name, "test") == 0;
    json_t      *out;
    json_int_t   n;

    out = sa_cli_run(sa, test ? "notify.test" : "notify.remove",
                         json_pack("{s:s, s:s}", "app", op[0],
                                   "account", op[1]));
    if (out == NULL) {
        return;
    }

    name = sa_account_name(sa, json_object_get(out, "account"));
    n = json_integer_value(json_object_get(out, "queued"));

    if (test) {
        printf("ping queued for %s in %s (%lld deliver%s)\n", name, op[0],
               (long long) n, n == 1 ? "y" : "ies");
    } else {
        printf("notifications of %s for %s removed\n", name, op[0]);
    }

    free(name);
    json_decref(out);
}


static void
sa_notify_emit(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "data", required_argument, NULL, 'd' },
        SA_OPTS_END
    };
    json_t       *in = json_object(), *data, *out;
    json_error_t  jerr;
    char        **op;
    json_int_t    n;

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        data = json_loads(optarg, JSON_REJECT_DUPLICATES, &jerr);
        if (!json_is_object(data)) {
            sa_die_usage(sa, "--data must be a JSON object");
        }
        json_object_set_new(in, "data", data);         /* --data */
    }

    op = sa_operands_or_exit(sa, argc, argv, 2);
    json_object_set_new(in, "app", json_string(op[0]));
    json_object_set_new(in, "type", json_string(op[1]));

    out = sa_cli_run(sa, "notify.emit", in);
    if (out == NULL) {
        return;
    }

    n = json_integer_value(json_object_get(out, "queued"));
    printf("%s queued for %s (%lld deliver%s)\n", op[1], op[0],
           (long long) n, n == 1 ? "y" : "ies");
    json_decref(out);
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
    sa_api_local_or_exit(sa);

    sa_notify_key_or_exit();
    sa_verify_key_or_exit(sa);

    rc = sa_notify_run(sa, once, allow_private, (int) conc);
    if (rc != SA_EXIT_OK) {
        exit(rc);
    }
}


static void
sa_notify_failed(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = { SA_OPTS_END };
    char   **op;
    json_t  *in = json_object(), *out, *row;
    size_t   i;

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        /* nothing but --help, which exits */
    }

    /* [APP] */
    op = sa_operands_or_exit(sa, argc, argv, argc > optind ? 1 : 0);
    if (argc > optind) {
        json_object_set_new(in, "app", json_string(op[0]));
    }

    out = sa_cli_run(sa, "notify.failed", in);
    if (out == NULL) {
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
    char   **op = sa_plain_args_or_exit(sa, argc, argv, 1);
    json_t  *out;

    out = sa_cli_run(sa, "notify.retry",
                         json_pack("{s:s}", "id", op[0]));
    if (out == NULL) {
        return;
    }

    printf("delivery %s queued again\n", op[0]);
    json_decref(out);
}


#define SA_NOTIFY_KEY_HELP                                                   \
    "The notify key: --notify-key FILE or SA_NOTIFY_KEY (written by\n"     \
    "'sa-admin key generate').\n"

static const sa_command_t  commands[] = {
    { "set", sa_notify_set,
      "notify set APP ACCOUNT [--slack URL] [--webhook URL] --events E,... "
      "[--slack-events E,...] [--webhook-events E,...] [--keep DEST,...]",
      "Sends ACCOUNT's events for application APP to a Slack incoming\n"
      "webhook and/or a webhook URL (http or https), replacing what was set\n"
      "(needs service_accounts:create; the account must hold a grant for\n"
      "APP).  Events: token.issued, token.rescoped, token.rotated,\n"
      "token.revoked, token.expiring, token.denied, token.quota_warning,\n"
      "token.quota_exhausted, account.granted, account.ungranted,\n"
      "account.deleted, ping, app.<word>, or '*'.\n"
      "--slack-events and --webhook-events narrow what that destination\n"
      "gets (each within --events; default all of them).\n"
      "With --webhook, prints the webhook signing secret: the only time it\n"
      "is shown.  URLs and secret are kept sealed with the notify key.\n"
      "--keep slack, --keep webhook (or slack,webhook): that destination's\n"
      "stored URL stays, instead of --slack or --webhook given again (the\n"
      "webhook keeps its secret: nothing printed); the events change.\n"
      SA_NOTIFY_KEY_HELP },
    { "list", sa_notify_list, "notify list APP",
      "Lists the subscriptions of APP: account, events, destinations (host\n"
      "only), state.  Never a secret or a full URL.  With the notify key,\n"
      "subscriptions that cannot be unsealed are shown as tampered.\n" },
    { "remove", sa_notify_one, "notify remove APP ACCOUNT",
      "Stops ACCOUNT's notifications for APP (needs\n"
      "service_accounts:create).\n" },
    { "test", sa_notify_one, "notify test APP ACCOUNT",
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
