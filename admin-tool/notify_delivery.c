/*
 * sa-admin notify run: one delivery.  A stream entry or a leased retry
 * becomes a request (the subscription unsealed, the event verified and
 * rendered), and the answer an outcome.
 */

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sodium.h>

#include "notify_worker.h"
#include "util.h"
#include "xalloc.h"


int64_t
sa_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}


/*
 * One line per delivery outcome: never a secret, never a full URL, and
 * never a control character (what an entry says cannot forge a line).
 */
void
sa_log(sa_dlv_t *d, const char *fmt, ...)
{
    va_list  ap;
    char     msg[512], line[1024], *p;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    snprintf(line, sizeof(line), "sa-notify: %s %s app=%s account=%s %s %s "
             "attempt %lld: %s", d->id, d->type ? d->type : "?",
             d->app ? d->app : "?", d->aid ? d->aid : "?",
             d->dest ? d->dest : "-", d->where[0] ? d->where : "-",
             (long long) json_integer_value(json_object_get(d->state,
                                                            "attempts")),
             msg);

    for (p = line; *p; p++) {
        if ((unsigned char) *p < 0x20 || *p == 0x7f) {
            *p = '?';
        }
    }

    fprintf(stderr, "%s\n", line);
}


const char *
sa_field(json_t *fields, const char *name)
{
    return json_string_value(json_object_get(fields, name));
}


void
sa_dlv_free(sa_dlv_t *d)
{
    if (d->easy) {
        curl_easy_cleanup(d->easy);
    }
    curl_slist_free_all(d->headers);
    if (d->url) {
        sodium_memzero(d->url, strlen(d->url));
        free(d->url);
    }
    free(d->body);
    json_decref(d->fields);
    json_decref(d->state);
    free(d);
}



static int
sa_takes(json_t *events, const char *type)
{
    size_t   i;
    json_t  *v;

    json_array_foreach(events, i, v) {
        if (strcmp(json_string_value(v) ?: "", "*") == 0
            || strcmp(json_string_value(v) ?: "", type) == 0)
        {
            return 1;
        }
    }

    return 0;
}


/*
 * Whether the subscriber may still have the event: the signed account
 * record grants the application now.  The last event of a grant that ends
 * (account.ungranted, account.deleted) goes to the applications it names
 * as previous_apps, signed in the event.
 */
static int
sa_granted(sa_worker_t *w, sa_dlv_t *d, json_t *e, const char **why)
{
    json_t      *rec, *data = json_object_get(e, "data");
    int          ok;

    if (strcmp(d->type, "account.ungranted") == 0
        || strcmp(d->type, "account.deleted") == 0)
    {
        if (sa_json_has(json_object_get(data, "previous_apps"), d->app)) {
            return 1;
        }
    }

    rec = sa_worker_account(w, d->aid);
    if (rec == NULL) {
        *why = "dropped: the account is gone (or its record does not verify)";
        return 0;
    }

    ok = sa_json_has(json_object_get(rec, "apps"), d->app);
    if (!ok) {
        *why = "dropped: the account's signed record does not grant this "
               "application";
    }

    json_decref(rec);
    return ok;
}


/*
 * The event of a delivery, as {"id", "type", "time", "team", "account",
 * "data"}: a signed envelope opened, or built from the verified token
 * record (token.expiring, token.denied: the only two events an unsigned
 * entry may ask for).  NULL with *why set when there is nothing to
 * deliver; *dead set when that is a refusal to report.
 */
static json_t *
sa_event_of(sa_worker_t *w, sa_dlv_t *d, const char **why, int *dead)
{
    const char         *ev = sa_field(d->fields, "ev"), *tid, *payload;
    const char         *app, *id;
    size_t              plen;
    json_t             *e, *rec, *acct;
    sa_token_record_t  *tok;

    *dead = 1;

    if (ev != NULL) {
        e = NULL;
        if (sa_envelope_open(ev, strlen(ev), sa_verify_key_or_exit(w->sa),
                             &payload, &plen) == SA_REC_OK)
        {
            e = json_loadb(payload, plen, 0, NULL);
        }
        if (!json_is_object(e)
            || strcmp(json_string_value(json_object_get(e, "kind")) ?: "",
                      "event") != 0
            || strcmp(json_string_value(json_object_get(e, "type")) ?: "",
                      d->type) != 0)
        {
            json_decref(e);
            *why = "the event's signature does not verify (not written by "
                   "sa-admin?)";
            return NULL;
        }

        id = json_string_value(json_object_get(e, "id"));
        app = json_string_value(json_object_get(e, "application"));
        acct = json_object_get(e, "account");

        if (!sa_event_id_valid(id)) {
            *why = "the signed event has no valid id";
        } else if (acct == NULL && app == NULL) {
            *why = "the signed event names no application (written by an "
                   "older sa-admin?)";
        } else if (app != NULL && strcmp(app, d->app) != 0) {
            *why = "the signed event is for another application";
        } else if (acct != NULL
                   && strcmp(json_string_value(json_object_get(acct, "id"))
                             ?: "", d->aid) != 0)
        {
            *why = "the signed event names another account";
        } else {
            *why = sa_event_time_refused(json_integer_value(
                       json_object_get(e, "time")), sa_now());
        }
        if (*why != NULL) {
            json_decref(e);
            return NULL;
        }

        *dead = 0;
        if (!sa_granted(w, d, e, why)) {
            json_decref(e);
            return NULL;
        }

        if (acct == NULL) {
            /* an application's event: the subscriber's own account */
            rec = sa_worker_account(w, d->aid);
            if (rec == NULL) {
                json_decref(e);
                *why = "dropped: the account is gone";
                return NULL;
            }
            json_object_set_new(e, "team", json_string(
                json_string_value(json_object_get(rec, "team")) ?: ""));
            json_object_set_new(e, "account", json_pack("{s:O, s:O, s:O}",
                "id", json_object_get(rec, "id"),
                "name", json_object_get(rec, "name"),
                "email", json_object_get(rec, "email")));
            json_decref(rec);
        }

        return e;
    }

    /* token.expiring (from the expiry index), a gateway's events */
    if (strcmp(d->type, "token.expiring") != 0 && !sa_gateway_type(d->type))
    {
        *why = "an unsigned entry may only ask for token.denied, "
               "token.quota_warning, token.quota_exhausted or "
               "token.expiring (not written by sa-admin or a gateway?)";
        return NULL;
    }

    tid = sa_field(d->fields, "token");
    if (tid == NULL || !sa_token_id_valid(tid, strlen(tid))) {
        *why = "malformed entry";
        return NULL;
    }

    *dead = 0;
    tok = sa_worker_token(w, tid);
    if (tok == NULL || strcmp(tok->account.data, d->aid) != 0) {
        free(tok);
        *why = "dropped: the token record is gone or does not verify";
        return NULL;
    }

    e = sa_event_from_token(d->type, tok, d->fields, sa_now(), why, dead);
    free(tok);

    if (e != NULL && !sa_granted(w, d, e, why)) {
        json_decref(e);
        return NULL;
    }

    return e;
}


/*
 * An answer is judged by its status: its body is read up to SA_REPLY_MAX
 * and thrown away; beyond that the transfer is cut (bounded), and a 2xx
 * status so cut still counts (sa_dlv_done).
 */
static size_t
sa_discard(char *p, size_t size, size_t n, void *data)
{
    sa_dlv_t  *d = data;

    (void) p;
    d->received += size * n;

    return d->received > SA_REPLY_MAX ? 0 : size * n;
}


/* a header line added; NULL (all freed) when memory ran out */
static struct curl_slist *
sa_slist_add(struct curl_slist *list, const char *line)
{
    struct curl_slist  *l;

    if (list == NULL) {
        return NULL;
    }

    l = curl_slist_append(list, line);
    if (l == NULL) {
        curl_slist_free_all(list);
    }

    return l;
}


static int
sa_origin_busy(sa_worker_t *w, const char *origin)
{
    sa_dlv_t  *d;
    int        n = 0;

    for (d = w->list; d != NULL; d = d->next) {
        n += strcmp(d->origin, origin) == 0;
    }

    return n;
}


int
sa_in_flight(sa_worker_t *w, const char *id)
{
    sa_dlv_t  *d;

    for (d = w->list; d != NULL; d = d->next) {
        if (strcmp(d->id, id) == 0) {
            return 1;
        }
    }

    return 0;
}


/*
 * Everything up to the request: the subscription unsealed, the event
 * verified, the body and headers.
 */
int
sa_dlv_start(sa_worker_t *w, sa_dlv_t *d)
{
    redisReply   *r = NULL;
    json_t       *sub = NULL, *priv = NULL, *e = NULL;
    const char   *subtext, *why = NULL, *secret, *url;
    char         *plain = NULL, hdr[256], key[256], id[37], field[32];
    int           dead = 0, retry = 0, defer = 0;
    int64_t       attempts;

    /* what reaches a header, a log line or a key: checked first */
    d->app = sa_field(d->fields, "app");
    d->aid = sa_field(d->fields, "account");
    d->dest = sa_field(d->fields, "dest");
    d->type = sa_field(d->fields, "type");

    if (d->app && !sa_app_valid(d->app, strlen(d->app))) {
        d->app = NULL;
    }
    if (d->aid && !sa_token_id_valid(d->aid, strlen(d->aid))) {
        d->aid = NULL;
    }
    if (d->dest && strcmp(d->dest, "webhook") != 0
        && strcmp(d->dest, "slack") != 0)
    {
        d->dest = NULL;
    }
    if (d->type && !sa_event_type_valid(d->type, 0)) {
        d->type = NULL;
    }

    if (d->app == NULL || d->aid == NULL || d->dest == NULL
        || d->type == NULL)
    {
        why = "malformed entry";
        dead = 1;
        goto done;
    }

    /* the subscription: its copy in the entry (its last event), or now */
    subtext = sa_field(d->fields, "sub");
    if (subtext == NULL) {
        snprintf(key, sizeof(key), "%s" SA_KEY_NOTIFY "%s", w->sa->prefix,
                 d->app);
        r = sa_xredis_cmd(w->sa, "HGET %s %s", key, d->aid);
        subtext = r->type == REDIS_REPLY_STRING ? r->str : NULL;
    }
    if (subtext == NULL) {
        why = "dropped: the subscription was removed";
        goto done;
    }

    sub = json_loads(subtext, 0, NULL);
    snprintf(d->where, sizeof(d->where), "%s",
             json_string_value(json_object_get(sub, d->dest)) ?: "");
    if (json_integer_value(json_object_get(sub, "disabled_at"))
        && sa_field(d->fields, "sub") == NULL)
    {
        why = "dropped: the subscription is disabled (it answered 410)";
        goto done;
    }

    plain = sa_unseal(sa_notify_key_or_exit(),
                      json_string_value(json_object_get(sub, "sealed")));
    priv = plain ? json_loads(plain, 0, NULL) : NULL;
    if (priv == NULL
        || strcmp(json_string_value(json_object_get(priv, "app")) ?: "",
                  d->app) != 0
        || strcmp(json_string_value(json_object_get(priv, "account")) ?: "",
                  d->aid) != 0)
    {
        why = "not delivered: the subscription cannot be unsealed with this "
              "notify key (tampered?)";
        dead = 1;
        goto done;
    }

    snprintf(field, sizeof(field), "%s_events", d->dest);
    if (strcmp(d->type, "ping") != 0
        && (!sa_takes(json_object_get(priv, "events"), d->type)
            || (json_is_array(json_object_get(priv, field))
                && !sa_takes(json_object_get(priv, field), d->type))))
    {
        why = "dropped: the subscription does not take this event";
        goto done;
    }

    url = json_string_value(json_object_get(priv, d->dest));
    secret = json_string_value(json_object_get(priv, "secret"));
    if (url == NULL || (strcmp(d->dest, "webhook") == 0 && secret == NULL)) {
        why = "dropped: the subscription has no such destination";
        goto done;
    }

    e = sa_event_of(w, d, &why, &dead);
    if (e == NULL) {
        goto done;
    }
    snprintf(d->team, sizeof(d->team), "%s",
             json_string_value(json_object_get(e, "team")) ?: "");

    /* the one delivery of this event to this destination */
    sa_delivery_id(id, json_string_value(json_object_get(e, "id")), d->app,
                   d->aid, d->dest);
    if (strcmp(d->id, id) != 0) {
        if (sa_in_flight(w, id)) {
            why = "dropped: a duplicate of a delivery in flight";
            goto done;
        }
        snprintf(d->id, sizeof(d->id), "%s", id);
    }

    /* one destination that does not answer cannot take every slot */
    sa_url_origin(url, d->origin, sizeof(d->origin));
    if (sa_origin_busy(w, d->origin) >= w->per_dest) {
        why = "deferred: its destination has as many deliveries in flight "
              "as one may";
        defer = 1;
        goto done;
    }

    why = sa_dlv_may_go(w, d, json_string_value(json_object_get(
              json_object_get(json_object_get(e, "data"), "token"), "id")));
    if (why != NULL) {
        goto done;
    }

    d->body = strcmp(d->dest, "slack") == 0 ? sa_slack_body(e, d->app)
                                            : sa_webhook_body(e, d->app);
    if (d->body == NULL) {
        why = "the event cannot be rendered";
        dead = 1;
        goto done;
    }

    d->headers = curl_slist_append(NULL, "Content-Type: application/json");
    if (strcmp(d->dest, "webhook") == 0) {
        snprintf(hdr, sizeof(hdr), "X-SA-Event: %s", d->type);
        d->headers = sa_slist_add(d->headers, hdr);
        snprintf(hdr, sizeof(hdr), "X-SA-Delivery: %s", d->id);
        d->headers = sa_slist_add(d->headers, hdr);
        sa_signature(hdr, sizeof(hdr), secret, d->body, sa_now());
        d->headers = sa_slist_add(d->headers, hdr);
    }
    d->headers = sa_slist_add(d->headers, "Expect:");

    d->url = strdup(url);
    d->easy = d->url && d->headers ? curl_easy_init() : NULL;
    if (d->easy == NULL) {
        why = "out of memory: tried again later";
        retry = 1;
        goto done;
    }

    curl_easy_setopt(d->easy, CURLOPT_URL, d->url);
    curl_easy_setopt(d->easy, CURLOPT_POST, 1L);
    curl_easy_setopt(d->easy, CURLOPT_POSTFIELDS, d->body);
    curl_easy_setopt(d->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(d->body));
    curl_easy_setopt(d->easy, CURLOPT_HTTPHEADER, d->headers);
    curl_easy_setopt(d->easy, CURLOPT_USERAGENT, "sa-notify/0.3");
    curl_easy_setopt(d->easy, CURLOPT_TIMEOUT_MS, (long) SA_TIMEOUT_MS);
    curl_easy_setopt(d->easy, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(d->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(d->easy, CURLOPT_PROXY, "");
    curl_easy_setopt(d->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(d->easy, CURLOPT_OPENSOCKETFUNCTION, sa_open_socket);
    curl_easy_setopt(d->easy, CURLOPT_OPENSOCKETDATA, d);
    curl_easy_setopt(d->easy, CURLOPT_WRITEFUNCTION, sa_discard);
    curl_easy_setopt(d->easy, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(d->easy, CURLOPT_PRIVATE, d);

    attempts = json_integer_value(json_object_get(d->state, "attempts"));
    json_object_set_new(d->state, "attempts", json_integer(attempts + 1));
    d->allow_private = w->allow_private;
    d->started = sa_ms();

    curl_multi_add_handle(w->multi, d->easy);
    d->next = w->list;
    w->list = d;
    w->inflight++;

done:

    if (plain) {
        sodium_memzero(plain, strlen(plain));
        free(plain);
    }
    if (priv) {
        /* jansson keeps its strings: wipe the secret before freeing */
        json_t  *s = json_object_get(priv, "secret");
        if (json_is_string(s)) {
            sodium_memzero((char *) json_string_value(s),
                           json_string_length(s));
        }
        json_decref(priv);
    }
    json_decref(sub);
    json_decref(e);
    freeReplyObject(r);

    if (d->easy != NULL) {
        return 0;
    }

    sa_log(d, "%s", why);
    sa_dlv_finish(w, d, retry || defer ? SA_DLV_RETRY : dead ? SA_DLV_DEAD
                        : SA_DLV_DROP,
                  retry ? sa_ms() + 1000
                  : defer ? sa_ms() + (int64_t) (SA_DEFER_MS * w->scale) + 50
                  : 0, why);
    if (dead) {
        w->failed++;
    }
    sa_dlv_free(d);
    return -1;
}


void
sa_unlink(sa_worker_t *w, sa_dlv_t *d)
{
    sa_dlv_t  **p;

    for (p = &w->list; *p != NULL; p = &(*p)->next) {
        if (*p == d) {
            *p = d->next;
            break;
        }
    }

    curl_multi_remove_handle(w->multi, d->easy);
    w->inflight--;
}


static int64_t
sa_backoff(sa_worker_t *w, int64_t attempts)
{
    double  step = SA_BACKOFF_MS * pow(2.0, (double) (attempts - 1));

    if (step > SA_BACKOFF_CAP_MS) {
        step = SA_BACKOFF_CAP_MS;
    }
    step *= w->scale;

    /* jitter: between half and all of the step */
    return (int64_t) (step / 2 + step / 2 * (randombytes_uniform(1000001)
                                             / 1000000.0));
}


void
sa_dlv_done(sa_worker_t *w, sa_dlv_t *d, CURLcode res)
{
    long     status = 0;
    int64_t  now = sa_ms(), took = now - d->started, delay, attempts;
    int64_t  first;
    char     err[256];

    sa_unlink(w, d);
    curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &status);
    attempts = json_integer_value(json_object_get(d->state, "attempts"));
    first = json_integer_value(json_object_get(d->state, "first_at"));

    /* a 2xx whose body was cut after SA_REPLY_MAX bytes is delivered */
    if (res == CURLE_WRITE_ERROR && d->received > SA_REPLY_MAX) {
        res = CURLE_OK;
    }

    if (res == CURLE_OK && status >= 200 && status < 300) {
        sa_log(d, "delivered (HTTP %ld, %lld ms%s)", status, (long long) took,
               d->received > SA_REPLY_MAX ? ", body over 64 KiB not read"
                                          : "");
        sa_dlv_finish(w, d, SA_DLV_OK, 0, NULL);
        w->delivered++;

    } else if (res == CURLE_OK && status == 410) {
        sa_log(d, "HTTP 410 Gone: subscription disabled, delivery kept for "
               "'notify failed'");
        sa_dlv_finish(w, d, SA_DLV_DISABLE, 0, "HTTP 410 Gone: subscription "
                      "disabled");
        w->failed++;

    } else if (d->refused[0]) {
        sa_log(d, "%s; kept for 'notify failed'", d->refused);
        sa_dlv_finish(w, d, SA_DLV_DEAD, 0, d->refused);
        w->failed++;

    } else {
        if (res == CURLE_OK) {
            snprintf(err, sizeof(err), "HTTP %ld", status);
        } else {
            snprintf(err, sizeof(err), "%s", curl_easy_strerror(res));
        }

        if (now - first >= SA_GIVE_UP_MS * w->scale) {
            sa_log(d, "failed (%s); gave up after %lld attempts: kept for "
                   "'notify failed'", err, (long long) attempts);
            sa_dlv_finish(w, d, SA_DLV_DEAD, 0, err);
            w->failed++;

        } else {
            delay = sa_backoff(w, attempts);
            sa_log(d, "failed (%s); retry in %.3f s", err, delay / 1000.0);
            sa_dlv_finish(w, d, SA_DLV_RETRY, now + delay, err);
        }
    }

    sa_dlv_free(d);
}

