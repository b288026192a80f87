/*
 * sa-admin notify: the operations on the notifications of a service
 * account, per application, to Slack or a webhook (ops.h;
 * docs/notifications.md).  The delivery worker ('notify run', local, no
 * operation) is in notify_worker.c.
 */

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
#include "records.h"
#include "ops.h"

#define SA_NOTIFY_URL_MAX     2048
#define SA_WEBHOOK_SECRET_LEN 43

/*
 * A destination URL: http or https, a host, no credentials, nothing that
 * is not printable.  Its display form (scheme://host[:port]/...) goes to
 * out: what listings and logs show, never the path or query, where Slack
 * and many webhooks keep their secret.
 */
static void
sa_notify_url_or_exit(const char *what, const char *url, char *out,
    size_t size)
{
    CURLU        *u;
    char         *scheme = NULL, *host = NULL, *port = NULL, *user = NULL;
    const char   *p, *why = NULL;

    for (p = url; *p; p++) {
        if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f) {
            sa_die_kind(SA_ERR_INPUT, "invalid %s URL: spaces or control "
                        "characters", what);
        }
    }

    if (strlen(url) > SA_NOTIFY_URL_MAX) {
        sa_die_kind(SA_ERR_INPUT, "invalid %s URL: longer than %d", what,
                    SA_NOTIFY_URL_MAX);
    }

    u = curl_url();
    if (u == NULL
        || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK
        || curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
    {
        why = " (expected http:// or https://HOST/...)";

    } else if (strcasecmp(scheme, "http") != 0
               && strcasecmp(scheme, "https") != 0)
    {
        why = ": only http and https";

    } else if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        why = ": no credentials in it";

    } else {
        curl_url_get(u, CURLUPART_PORT, &port, 0);
        snprintf(out, size, "%s://%s%s%s/...", scheme, host,
                 port ? ":" : "", port ? port : "");
    }

    /* freed before an error ends the request (serve) */
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(user);
    curl_url_cleanup(u);

    if (why != NULL) {
        sa_die_kind(SA_ERR_INPUT, "invalid %s URL%s", what, why);
    }
}


/* in's "events" (or field): each a known event type, once */
static json_t *
sa_in_events_of(json_t *in, const char *field)
{
    json_t  *list = sa_in_strs(in, field, 0), *out, *v;
    size_t   i;

    json_array_foreach(list, i, v) {
        if (!sa_event_type_valid(json_string_value(v), 1)) {
            sa_die_kind(SA_ERR_INPUT, "unknown event '%s'",
                        json_string_value(v));
        }
    }

    out = json_array();
    json_array_foreach(list, i, v) {
        sa_json_add_unique(out, json_string_value(v));
    }

    return out;
}


static json_t *
sa_in_events(json_t *in)
{
    return sa_in_events_of(in, "events");
}


/*
 * in's "slack_events" or "webhook_events": what that destination takes,
 * each within events (or events '*'); NULL when absent (all of events)
 */
static json_t *
sa_in_dest_events(json_t *in, const char *field, const char *dest,
    int have, json_t *events)
{
    json_t  *list, *v;
    size_t   i;

    if (json_object_get(in, field) == NULL) {
        return NULL;
    }
    if (!have) {
        sa_die_kind(SA_ERR_INPUT, "field '%s' needs '%s'", field, dest);
    }
    list = sa_in_events_of(in, field);
    json_array_foreach(list, i, v) {
        if (!sa_json_has(events, json_string_value(v))
            && !sa_json_has(events, "*"))
        {
            sa_die_kind(SA_ERR_INPUT, "%s event '%s' is not in events", dest,
                        json_string_value(v));
        }
    }

    return list;
}


static int
sa_account_granted(sa_account_t *a, const char *app)
{
    return sa_json_has(a->apps, app) || sa_json_has(a->apps, "*");
}


typedef struct {
    const char    *app;
    const char    *ref;
    const char    *slack;
    const char    *webhook;
    char           slack_shown[SA_NOTIFY_URL_MAX + 16];
    char           webhook_shown[SA_NOTIFY_URL_MAX + 16];
    json_t        *events;
    json_t        *slack_events;     /* NULL: all of events */
    json_t        *webhook_events;
    char           secret[6 + SA_WEBHOOK_SECRET_LEN + 1];
    sa_account_t   a;
    int            keep_slack;       /* the stored URL stays (keep) */
    int            keep_webhook;     /* the stored URL and secret stay */
    char          *kept_slack;       /* the stored ones, read and unsealed */
    char          *kept_webhook;
    char          *old;              /* the subscription they came from */
} sa_notify_set_t;


static void
sa_notify_kept_free(sa_notify_set_t *c)
{
    if (c->kept_slack != NULL) {
        sodium_memzero(c->kept_slack, strlen(c->kept_slack));
        free(c->kept_slack);
    }
    if (c->kept_webhook != NULL) {
        sodium_memzero(c->kept_webhook, strlen(c->kept_webhook));
        free(c->kept_webhook);
    }
    free(c->old);
    c->kept_slack = c->kept_webhook = c->old = NULL;
}


/*
 * keep: the URLs (and the webhook's secret) of the account's subscription
 * to app as stored, unsealed with the notify key; the subscription's
 * value goes to c->old, which the script checks is still there
 */
static void
sa_notify_keep_or_exit(sa_admin_t *sa, sa_notify_set_t *c)
{
    redisReply   *r;
    json_t       *sub, *priv = NULL;
    const char   *v;
    char         *plain = NULL;

    sa_notify_kept_free(c);

    r = sa_xredis_cmd(sa, "HGET %s %s", sa_key(sa, SA_KEY_NOTIFY, c->app),
                      c->a.id);
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        sa_die_kind(SA_ERR_INPUT, "%s/%s has no notifications for '%s' "
                    "whose URL could be kept", c->a.team, c->a.name, c->app);
    }
    c->old = sa_xstrdup(r->str);
    freeReplyObject(r);

    sub = json_loads(c->old, 0, NULL);
    v = json_string_value(json_object_get(sub, "sealed"));
    if (v != NULL) {
        plain = sa_unseal(sa_notify_key_or_exit(), v);
    }
    json_decref(sub);
    if (plain != NULL) {
        priv = json_loads(plain, 0, NULL);
        sodium_memzero(plain, strlen(plain));
        free(plain);
    }
    if (!json_is_object(priv)) {
        json_decref(priv);
        sa_die_kind(SA_ERR_INPUT, "the notifications of %s/%s for '%s' "
                    "cannot be unsealed (tampered?): give the URLs again",
                    c->a.team, c->a.name, c->app);
    }

    if (c->keep_slack) {
        v = json_string_value(json_object_get(priv, "slack"));
        if (v == NULL) {
            json_decref(priv);
            sa_die_kind(SA_ERR_INPUT, "%s/%s has no Slack URL for '%s' to "
                        "keep", c->a.team, c->a.name, c->app);
        }
        c->kept_slack = sa_xstrdup(v);
    }

    if (c->keep_webhook) {
        v = json_string_value(json_object_get(priv, "webhook"));
        if (v == NULL) {
            json_decref(priv);
            sa_die_kind(SA_ERR_INPUT, "%s/%s has no webhook URL for '%s' to "
                        "keep", c->a.team, c->a.name, c->app);
        }
        c->kept_webhook = sa_xstrdup(v);
        v = json_string_value(json_object_get(priv, "secret"));
        if (v == NULL || strlen(v) != sizeof(c->secret) - 1) {
            json_decref(priv);
            sa_die_kind(SA_ERR_INPUT, "the webhook secret of %s/%s for '%s' "
                        "is unreadable: give the webhook URL again",
                        c->a.team, c->a.name, c->app);
        }
        memcpy(c->secret, v, sizeof(c->secret));
    }

    /* plain strings of priv may hold secrets: wiped with it */
    v = json_string_value(json_object_get(priv, "secret"));
    if (v != NULL) {
        sodium_memzero((char *) v, strlen(v));
    }
    json_decref(priv);

    if (c->kept_slack != NULL) {
        c->slack = c->kept_slack;
        sa_notify_url_or_exit("Slack", c->slack, c->slack_shown,
                              sizeof(c->slack_shown));
    }
    if (c->kept_webhook != NULL) {
        c->webhook = c->kept_webhook;
        sa_notify_url_or_exit("webhook", c->webhook, c->webhook_shown,
                              sizeof(c->webhook_shown));
    }
}


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
        sa_die_kind(SA_ERR_NOT_FOUND, "account %s/%s holds no grant for "
                    "application '%s' (see 'sa-admin account grant')",
                    c->a.team, c->a.name, c->app);
    }

    /* only an owning or sharing team's accounts subscribe to it */
    app = sa_app_load_or_exit(sa, c->app);
    if (!sa_app_serves(app, c->a.team)) {
        sa_die_kind(SA_ERR_FORBIDDEN, "application '%s' belongs to team "
                    "'%s' and is not shared with team '%s'", c->app,
                    json_string_value(json_object_get(app, "team")),
                    c->a.team);
    }
    json_decref(app);
    sa_permit_or_exit(sa, c->a.team, "service_accounts:create");

    if (c->keep_slack || c->keep_webhook) {
        sa_notify_keep_or_exit(sa, c);
    }

    priv = json_pack("{s:i, s:s, s:s, s:O, s:s*, s:s*, s:s*}", "v", 1,
                     "app", c->app, "account", c->a.id, "events", c->events,
                     "webhook", c->webhook, "slack", c->slack,
                     "secret", c->webhook ? c->secret : NULL);
    if (c->slack_events != NULL) {
        json_object_set(priv, "slack_events", c->slack_events);
    }
    if (c->webhook_events != NULL) {
        json_object_set(priv, "webhook_events", c->webhook_events);
    }
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
    if (c->slack_events != NULL) {
        json_object_set(pub, "slack_events", c->slack_events);
    }
    if (c->webhook_events != NULL) {
        json_object_set(pub, "webhook_events", c->webhook_events);
    }
    sub = sa_xjson_dumps(pub, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(pub);
    free(sealed);

    sa_change_args(sa, &args);
    sa_args_add(&args, c->a.team);
    sa_args_add(&args, c->a.id);
    sa_args_addf(&args, "%lld", (long long) c->a.version);
    sa_args_add(&args, c->app);
    sa_args_add(&args, sub);
    if (c->old != NULL) {
        sa_args_add(&args, c->old);     /* kept from it: still there */
    }
    rc = sa_change_or_exit(sa, &sa_lua_notify_set, &args);

    sa_args_free(&args);
    free(sub);

    return rc;
}


/*
 * notify.set: PUT /v1/apps/{app}/notifications/{account}
 *   app      string, required: the application
 *   account  string, required: an account id or TEAM/NAME, granted app
 *   slack    string: a Slack incoming-webhook URL (http or https)
 *   webhook  string: a webhook URL; one of slack and webhook at least
 *   events   array of strings, required: event types, or "*"
 *   slack_events, webhook_events   arrays: what that destination takes
 *   keep     array of "slack", "webhook": that destination's stored URL
 *            (and the webhook's signing secret) stay, instead of a URL
 *            given again (a toggle saved without retyping a secret URL)
 * Replaces the account's subscription (needs service_accounts:create).
 * Returns {"application", "account": {"id", "team", "name"}, "events",
 * "webhook", "slack" (host only), "secret"} (the webhook signing secret,
 * shown this once, with a new webhook URL; else null).
 */
json_t *
sa_op_notify_set(sa_admin_t *sa, json_t *in)
{
    sa_notify_set_t   c;
    json_t           *out;

    json_t           *keep, *k;
    size_t            i;

    sa_in_only(in, "app", "account", "slack", "webhook", "events",
               "slack_events", "webhook_events", "keep", NULL);
    memset(&c, 0, sizeof(c));

    keep = sa_in_strs(in, "keep", 0);
    json_array_foreach(keep, i, k) {
        if (strcmp(json_string_value(k), "slack") == 0) {
            c.keep_slack = 1;
        } else if (strcmp(json_string_value(k), "webhook") == 0) {
            c.keep_webhook = 1;
        } else {
            sa_die_kind(SA_ERR_INPUT, "invalid keep '%s' (expected slack or "
                        "webhook)", json_string_value(k));
        }
    }
    if (c.keep_slack && json_object_get(in, "slack") != NULL) {
        sa_die_kind(SA_ERR_INPUT, "the Slack URL given and kept: one of "
                    "them");
    }
    if (c.keep_webhook && json_object_get(in, "webhook") != NULL) {
        sa_die_kind(SA_ERR_INPUT, "the webhook URL given and kept: one of "
                    "them");
    }

    c.slack = sa_in_str(in, "slack", 0);
    if (c.slack != NULL) {
        sa_notify_url_or_exit("Slack", c.slack, c.slack_shown,
                              sizeof(c.slack_shown));
    }
    c.webhook = sa_in_str(in, "webhook", 0);
    if (c.webhook != NULL) {
        sa_notify_url_or_exit("webhook", c.webhook, c.webhook_shown,
                              sizeof(c.webhook_shown));
    }
    c.events = sa_in_events(in);
    c.ref = sa_in_str(in, "account", 1);
    c.app = sa_in_app(in, 1);

    if (c.slack == NULL && c.webhook == NULL && !c.keep_slack
        && !c.keep_webhook)
    {
        json_decref(c.events);
        sa_die_kind(SA_ERR_INPUT, "--slack URL or --webhook URL is required");
    }
    if (json_array_size(c.events) == 0) {
        json_decref(c.events);
        sa_die_kind(SA_ERR_INPUT, "--events E,... is required");
    }
    c.slack_events = sa_in_dest_events(in, "slack_events", "slack",
                                       c.slack != NULL || c.keep_slack,
                                       c.events);
    c.webhook_events = sa_in_dest_events(in, "webhook_events", "webhook",
                                         c.webhook != NULL || c.keep_webhook,
                                         c.events);

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);
    sa_notify_key_or_exit();

    memcpy(c.secret, "whsec_", 6);
    sa_random_base62(c.secret + 6, SA_WEBHOOK_SECRET_LEN);
    c.secret[sizeof(c.secret) - 1] = '\0';

    sa_retry_or_exit(sa, sa_notify_set_once, &c, "the account");

    out = json_pack("{s:s, s:{s:s, s:s, s:s}, s:O, s:s*, s:s*, s:s*}",
                    "application", c.app,
                    "account", "id", c.a.id, "team", c.a.team,
                    "name", c.a.name, "events", c.events,
                    "webhook", c.webhook ? c.webhook_shown : NULL,
                    "slack", c.slack ? c.slack_shown : NULL,
                    "secret", c.webhook && !c.keep_webhook ? c.secret : NULL);
    if (c.slack_events != NULL) {
        json_object_set_new(out, "slack_events", c.slack_events);
    }
    if (c.webhook_events != NULL) {
        json_object_set_new(out, "webhook_events", c.webhook_events);
    }

    sodium_memzero(c.secret, sizeof(c.secret));
    sa_notify_kept_free(&c);
    sa_account_free(&c.a);
    json_decref(c.events);
    return out;
}


/*
 * notify.list: GET /v1/apps/{app}/notifications
 *   app      string, required
 * Returns the subscriptions of app, never a secret or a full URL: an
 * array of {"application", "account": {"id", "team", "name"}, "events",
 * "webhook", "slack", "created_at", "created_by", "state"}.
 */
json_t *
sa_op_notify_list(sa_admin_t *sa, json_t *in)
{
    const char     *app;
    char           *plain;
    redisReply     *r;
    json_t         *out, *sub, *row;
    size_t          i;
    int             check;

    sa_in_only(in, "app", NULL);
    app = sa_in_app(in, 1);

    /* the key is optional here: with it, tampered subscriptions show */
    check = sa_notify_key_given();

    r = sa_xredis_cmd(sa, "HGETALL %s", sa_key(sa, SA_KEY_NOTIFY, app));
    out = json_array();

    for (i = 0; i + 1 < r->elements; i += 2) {
        sub = json_loadb(r->element[i + 1]->str, r->element[i + 1]->len, 0,
                         NULL);
        if (!json_is_object(sub)) {
            fprintf(stderr, "sa-admin: subscription of %s to %s is "
                    "unreadable (written by something other than "
                    "sa-admin?)\n", r->element[i]->str, app);
            json_decref(sub);
            continue;
        }
        /* over the API, the subscriptions of the teams the caller reads */
        if (!sa_reader(sa, json_string_value(json_object_get(sub, "team")))) {
            json_decref(sub);
            continue;
        }

        row = json_pack("{s:s, s:{s:s, s:O*, s:O*}, s:O*, s:O*, s:O*, s:o, "
                        "s:O*}", "application", app,
                        "account", "id", r->element[i]->str,
                        "team", json_object_get(sub, "team"),
                        "name", json_object_get(sub, "name"),
                        "events", json_object_get(sub, "events"),
                        "webhook", json_object_get(sub, "webhook"),
                        "slack", json_object_get(sub, "slack"),
                        "created_at", sa_time_json(json_integer_value(
                                          json_object_get(sub, "created_at"))),
                        "created_by", json_object_get(sub, "created_by"));

        if (json_object_get(sub, "slack_events") != NULL) {
            json_object_set(row, "slack_events",
                            json_object_get(sub, "slack_events"));
        }
        if (json_object_get(sub, "webhook_events") != NULL) {
            json_object_set(row, "webhook_events",
                            json_object_get(sub, "webhook_events"));
        }

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
                        r->element[i]->str, app);
            } else {
                sodium_memzero(plain, strlen(plain));
                free(plain);
            }
        }

        json_array_append_new(out, row);
        json_decref(sub);
    }
    freeReplyObject(r);

    return out;
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


/* in's "app" and "account" */
static void
sa_notify_one_in(sa_admin_t *sa, json_t *in, sa_notify_one_t *c)
{
    memset(c, 0, sizeof(*c));

    sa_in_only(in, "app", "account", NULL);
    c->ref = sa_in_str(in, "account", 1);
    c->app = sa_in_app(in, 1);

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);
}


/*
 * notify.remove: DELETE /v1/apps/{app}/notifications/{account}
 *   app      string, required
 *   account  string, required: an account id or TEAM/NAME
 * Needs service_accounts:create.  Returns {"application", "account" (its
 * id), "removed": true}; the CLI also says the account's team and name.
 */
json_t *
sa_op_notify_remove(sa_admin_t *sa, json_t *in)
{
    sa_notify_one_t  c;
    json_t          *out;

    sa_notify_one_in(sa, in, &c);
    sa_retry_or_exit(sa, sa_notify_remove_once, &c, "the account");

    out = json_pack("{s:s, s:s, s:b}", "application", c.app,
                    "account", c.a.id, "removed", 1);
    sa_account_free(&c.a);
    return out;
}


/* runs notify_emit.lua; returns the number of deliveries queued */
static long long
sa_notify_queue_or_exit(sa_admin_t *sa, sa_args_t *args)
{
    redisReply  *r;
    long long    queued;

    sa_err_kind_t   kind;
    char           *why;

    sa_xscript_append(sa, &sa_lua_notify_emit, 0, args);
    r = sa_xredis_reply(sa);

    if (r->type == REDIS_REPLY_ERROR
        && sa_change_refusal(r, &kind, &why) == SA_REFUSED)
    {
        sa_die_message(kind, sa_err_exit(kind), why, NULL);
    }

    queued = r->integer;
    freeReplyObject(r);
    return queued;
}


/*
 * notify.test: POST /v1/apps/{app}/notifications/{account}/test
 *   app      string, required
 *   account  string, required: an account id or TEAM/NAME
 * Queues a "ping" for that subscription (needs service_accounts:create).
 * Returns {"application", "account" (its id), "queued"}.
 */
json_t *
sa_op_notify_test(sa_admin_t *sa, json_t *in)
{
    sa_notify_one_t   c;
    sa_args_t         args;
    char             *ev;
    json_t           *out;

    sa_notify_one_in(sa, in, &c);

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

    out = json_pack("{s:s, s:s, s:I}", "application", c.app, "account",
                    c.a.id, "queued", (json_int_t) c.queued);
    sa_account_free(&c.a);
    return out;
}


/*
 * notify.emit: POST /v1/apps/{app}/events
 *   app      string, required
 *   type     string, required: app.<word>, of [a-z0-9_-]
 *   data     object: the event's data
 * The application's own teams (service_accounts:create, or ownership).
 * Returns {"application", "type", "team" (the one the permission was
 * proven in), "queued"}.
 */
json_t *
sa_op_notify_emit(sa_admin_t *sa, json_t *in)
{
    json_t      *data, *app, *out;
    sa_args_t    args;
    const char  *team, *name, *type;
    char        *ev;
    long long    queued;

    sa_in_only(in, "app", "type", "data", NULL);
    data = json_object_get(in, "data");
    if (data != NULL && !json_is_object(data)) {
        sa_die_kind(SA_ERR_INPUT, "field 'data' must be a JSON object");
    }
    name = sa_in_app(in, 1);
    type = sa_in_str(in, "type", 1);

    if (strncmp(type, "app.", 4) != 0 || !sa_event_type_valid(type, 0)) {
        sa_die_kind(SA_ERR_INPUT, "invalid event '%s' (expected app.<word>, "
                    "[a-z0-9_-])", type);
    }

    sa_actor_or_exit(sa);

    /* the application's own teams emit its events (perm.h) */
    app = sa_app_load_or_exit(sa, name);
    team = sa_app_permit_or_exit(sa, app, "service_accounts:create");

    ev = sa_event_seal(sa, type, name, NULL, NULL, NULL, NULL,
                       data ? json_incref(data) : json_object());

    sa_change_args(sa, &args);
    sa_args_add(&args, "emit");
    sa_args_add(&args, name);
    sa_args_add(&args, type);
    sa_args_add(&args, ev);
    sa_args_add(&args, team);
    queued = sa_notify_queue_or_exit(sa, &args);
    sa_args_free(&args);
    free(ev);

    out = json_pack("{s:s, s:s, s:s, s:I}", "application", name, "type",
                    type, "team", team, "queued", (json_int_t) queued);
    json_decref(app);
    return out;
}


static int
sa_by_failed_at(const void *x, const void *y)
{
    json_t      *a = *(json_t * const *) x, *b = *(json_t * const *) y;
    json_int_t   ta = json_integer_value(json_object_get(a, "failed_at"));
    json_int_t   tb = json_integer_value(json_object_get(b, "failed_at"));

    return ta < tb ? -1 : ta > tb;
}


/*
 * notify.failed: GET /v1/notifications/failed
 *   app      string: only this application's
 * Returns the deliveries that gave up, oldest first: an array of {"id",
 * "type", "application", "account", "team", "destination", "attempts",
 * "error", "failed_at", "dest"}.
 */
json_t *
sa_op_notify_failed(sa_admin_t *sa, json_t *in)
{
    redisReply   *r;
    json_t       *out, *st, *row;
    size_t        i;
    const char   *app = NULL;

    sa_in_only(in, "app", NULL);
    if (json_object_get(in, "app") != NULL) {
        app = sa_in_app(in, 1);
    }

    r = sa_xredis_cmd(sa, "HGETALL %s", sa_key(sa, SA_KEY_FAILED, NULL));
    out = json_array();

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
        /* over the API, the deliveries of the teams the caller reads */
        if (!sa_reader(sa, json_string_value(json_object_get(st, "team")))) {
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
        json_array_append_new(out, row);
        json_decref(st);
    }
    freeReplyObject(r);

    out = sa_json_sorted(out, sa_by_failed_at);
    json_array_foreach(out, i, row) {
        json_object_del(row, "_t");
    }

    return out;
}


/*
 * notify.retry: POST /v1/notifications/failed/{id}/retry
 *   id       string, required: the delivery id
 * Queues a failed delivery again, with the same delivery id (needs
 * service_accounts:create in its team).  Returns {"id", "queued": true}.
 */
json_t *
sa_op_notify_retry(sa_admin_t *sa, json_t *in)
{
    const char  *id;
    redisReply  *r;
    json_t      *st;
    char        *state;
    sa_args_t    args;

    sa_in_only(in, "id", NULL);
    id = sa_in_str(in, "id", 1);

    r = sa_xredis_cmd(sa, "HGET %s %s", sa_key(sa, SA_KEY_FAILED, NULL),
                      id);
    if (r->type != REDIS_REPLY_STRING) {
        sa_die_kind(SA_ERR_NOT_FOUND, "no failed delivery '%s'", id);
    }

    st = json_loadb(r->str, r->len, 0, NULL);
    if (!json_is_object(st)) {
        sa_die_kind(SA_ERR_NOT_FOUND, "failed delivery '%s' is unreadable",
                    id);
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
    sa_args_add(&args, id);
    sa_args_add(&args, state);
    sa_args_addf(&args, "%lld", (long long) sa_now() * 1000);
    sa_args_add(&args, json_string_value(json_object_get(st, "team")) ?: "");
    sa_args_addn(&args, r->str, r->len);
    sa_change_once_or_exit(sa, &sa_lua_notify_retry, &args,
                           "the failed delivery");

    sa_args_free(&args);
    free(state);
    json_decref(st);
    freeReplyObject(r);

    return json_pack("{s:s, s:b}", "id", id, "queued", 1);
}
