/*
 * sa-admin notify run: what is sent.  The event of an unsigned entry, the
 * webhook body, the Slack text and the webhook signature; pure functions
 * of their arguments (t/unit/test_notify_render.c).
 */

#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "notify_worker.h"
#include "util.h"
#include "xalloc.h"


/* "<tag><32 hex of BLAKE2b-128 of the NUL-terminated parts>" */
static void
sa_hash_id(char out[37], const char *tag, const char **parts, size_t n)
{
    uint8_t  h[16];
    char     hex[33];
    size_t   i;
    crypto_generichash_state  st;

    crypto_generichash_init(&st, NULL, 0, sizeof(h));
    for (i = 0; i < n; i++) {
        crypto_generichash_update(&st, (const uint8_t *) parts[i],
                                  strlen(parts[i]) + 1);
    }
    crypto_generichash_final(&st, h, sizeof(h));
    sa_hex_encode(h, sizeof(h), hex);
    snprintf(out, 37, "%s%.32s", tag, hex);
}


void
sa_derived_id(char out[37], const char *a, const char *b, const char *c)
{
    sa_hash_id(out, "evt_", (const char *[]) { a, b, c }, 3);
}


int
sa_event_id_valid(const char *id)
{
    size_t  n = id ? strlen(id) : 0, i;

    if (n < 5 || n > 40 || strncmp(id, "evt_", 4) != 0) {
        return 0;
    }

    for (i = 4; i < n; i++) {
        if (!((id[i] >= 'a' && id[i] <= 'z') || (id[i] >= 'A' && id[i] <= 'Z')
              || (id[i] >= '0' && id[i] <= '9')))
        {
            return 0;
        }
    }

    return 1;
}


const char *
sa_event_time_refused(int64_t t, int64_t now)
{
    if (t <= 0) {
        return "the event has no time";
    }
    if (now - t > SA_EVENT_MAX_AGE) {
        return "the event is too old to be delivered (more than 48 h)";
    }
    if (t - now > SA_EVENT_MAX_SKEW) {
        return "the event's time is in the future";
    }

    return NULL;
}


int
sa_denied_status_valid(const char *s)
{
    static const char  *statuses[] = {
        "expired", "revoked", "insufficient_scope", "forbidden_application",
        "forbidden_source", NULL
    };
    const char        **p;

    for (p = statuses; s != NULL && *p != NULL; p++) {
        if (strcmp(s, *p) == 0) {
            return 1;
        }
    }

    return 0;
}


void
sa_delivery_id(char out[37], const char *event, const char *app,
    const char *aid, const char *dest)
{
    sa_hash_id(out, "dlv_", (const char *[]) { event, app, aid, dest }, 4);
}


int
sa_gateway_type(const char *type)
{
    return type != NULL
           && (strcmp(type, "token.denied") == 0
               || strcmp(type, "token.quota_warning") == 0
               || strcmp(type, "token.quota_exhausted") == 0);
}


/* s: digits only, 1 to 20 of them */
static int
sa_digits(const char *s, size_t max)
{
    size_t  n = s ? strspn(s, "0123456789") : 0;

    return s != NULL && n > 0 && n <= max && s[n] == '\0';
}


/*
 * A gateway's quota entry (ngx_http_sa_sync.c): its quota must be the
 * token's signed one and its period of the signed kind ("d" YYYYMMDD or
 * "m" YYYYMM), shown as "2026-12-03" or "2026-12" in out (11 bytes);
 * "used" is a count.  Its numbers are unsigned hints, as a denied status.
 */
static const char *
sa_quota_entry_refused(const sa_token_record_t *rec, json_t *fields,
    char *out)
{
    const char  *used = json_string_value(json_object_get(fields, "used"));
    const char  *quota = json_string_value(json_object_get(fields, "quota"));
    const char  *period = json_string_value(json_object_get(fields,
                                                            "period"));
    char         q[32];

    if (rec->policy.quota_period == 0) {
        return "dropped: the token has no quota (any more)";
    }

    snprintf(q, sizeof(q), "%llu", (unsigned long long) rec->policy.quota);
    if (!sa_digits(used, 15) || quota == NULL || strcmp(quota, q) != 0) {
        return "dropped: the entry's quota is not the token's signed one";
    }

    if (period == NULL
        || (rec->policy.quota_period == SA_QUOTA_DAY
            && !(period[0] == 'd' && sa_digits(period + 1, 8)
                 && strlen(period) == 9))
        || (rec->policy.quota_period == SA_QUOTA_MONTH
            && !(period[0] == 'm' && sa_digits(period + 1, 6)
                 && strlen(period) == 7)))
    {
        return "dropped: the entry's period is not of the token's quota";
    }

    if (period[0] == 'd') {
        snprintf(out, 11, "%.4s-%.2s-%.2s", period + 1, period + 5,
                 period + 7);
    } else {
        snprintf(out, 11, "%.4s-%.2s", period + 1, period + 5);
    }

    return NULL;
}


/* token.expiring (from the expiry index), a gateway's (sa_gateway_type) */
json_t *
sa_event_from_token(const char *type, const sa_token_record_t *rec,
    json_t *fields, int64_t now, const char **why, int *dead)
{
    const char  *status, *exp_s, *time_s;
    json_t      *data;
    char         eid[37], part[48], *end, pshown[11], qtext[32];
    int64_t      exp = rec->expires_at, t;

    /* the time of the stream entry (the worker's, never the entry's own) */
    time_s = json_string_value(json_object_get(fields, "time"));
    t = time_s ? strtoll(time_s, &end, 10) : 0;
    *dead = 1;
    if (time_s == NULL || *end != '\0') {
        *why = "malformed entry";
        return NULL;
    }
    *why = sa_event_time_refused(t, now);
    if (*why != NULL) {
        return NULL;
    }

    if (strcmp(type, "token.expiring") == 0) {
        exp_s = json_string_value(json_object_get(fields, "expires_at"));
        *dead = 0;
        if (rec->revoked || exp <= now || exp_s == NULL
            || strtoll(exp_s, NULL, 10) != exp)
        {
            *why = "dropped: the token was revoked, expired or changed "
                   "meanwhile";
            return NULL;
        }
        if (exp - now > SA_EXPIRING_FIRST + 3600) {
            *why = "dropped: the token does not expire within 7 days";
            return NULL;
        }
        data = json_pack("{s:{s:s, s:o, s:o}, s:I}", "token", "id", rec->id,
                         "scopes", sa_strs_json(rec->scopes, rec->nscopes),
                         "expires_at", sa_time_json(exp),
                         "days_left", (json_int_t) ((exp - now + 86399)
                                                    / 86400));
        snprintf(part, sizeof(part), "%lld/%s", (long long) exp,
                 exp - now > 86400 ? "7d" : "1d");
        sa_derived_id(eid, "token.expiring", rec->id, part);

    } else if (strcmp(type, "token.denied") == 0) {
        status = json_string_value(json_object_get(fields, "status"));
        if (!sa_denied_status_valid(status)) {
            *why = "the entry's status is not one of expired, revoked, "
                   "insufficient_scope, forbidden_application, "
                   "forbidden_source";
            return NULL;
        }
        data = json_pack("{s:{s:s, s:o, s:o}, s:s}", "token", "id", rec->id,
                         "scopes", sa_strs_json(rec->scopes, rec->nscopes),
                         "expires_at", sa_time_json(exp), "status", status);
        /* one event a minute per token, however many entries ask */
        snprintf(part, sizeof(part), "%lld", (long long) (t / 60));
        sa_derived_id(eid, "token.denied", rec->id, part);

    } else if (sa_gateway_type(type)) {
        *why = sa_quota_entry_refused(rec, fields, pshown);
        if (*why != NULL) {
            *dead = 0;
            return NULL;
        }
        sa_quota_format(rec->policy.quota, rec->policy.quota_period, qtext);
        data = json_pack("{s:{s:s, s:o, s:o}, s:I, s:s, s:s}", "token",
                         "id", rec->id,
                         "scopes", sa_strs_json(rec->scopes, rec->nscopes),
                         "expires_at", sa_time_json(exp),
                         "used", (json_int_t) strtoll(json_string_value(
                             json_object_get(fields, "used")), NULL, 10),
                         "quota", qtext, "period", pshown);
        /* one event per token and period, however many entries ask */
        sa_derived_id(eid, type, rec->id, pshown);

    } else {
        *why = "an unsigned entry may only ask for token.denied, "
               "token.quota_warning, token.quota_exhausted or "
               "token.expiring";
        return NULL;
    }

    *dead = 0;
    *why = NULL;
    return json_pack("{s:s, s:s, s:I, s:s, s:{s:s, s:s, s:s}, s:o}",
                     "id", eid, "type", type, "time", (json_int_t) t,
                     "team", rec->team.data,
                     "account", "id", rec->account.data,
                     "name", rec->name.data, "email", rec->email.data,
                     "data", data);
}


void
sa_url_origin(const char *url, char *out, size_t size)
{
    const char  *p = strstr(url, "://"), *host, *end, *at;
    size_t       n = 0;

    if (p == NULL || size == 0) {
        snprintf(out, size, "%s", url);
        return;
    }

    host = p + 3;
    end = host + strcspn(host, "/?#");
    at = memchr(host, '@', end - host);
    if (at != NULL) {
        host = at + 1;
    }

    for (p = url; p < url + (strstr(url, "://") - url) + 3 && n + 1 < size;
         p++)
    {
        out[n++] = (*p >= 'A' && *p <= 'Z') ? *p + 32 : *p;
    }
    for (p = host; p < end && n + 1 < size; p++) {
        out[n++] = (*p >= 'A' && *p <= 'Z') ? *p + 32 : *p;
    }
    out[n] = '\0';
}


/* the webhook body: the contract's fields, in the contract's order */
char *
sa_webhook_body(json_t *e, const char *app)
{
    char     t[SA_TIME_LEN];
    json_t  *body, *a = json_object_get(e, "account");
    char    *s;

    sa_time_format(json_integer_value(json_object_get(e, "time")), t);

    body = json_pack("{s:O, s:O, s:s, s:O, s:s, s:{s:O, s:O, s:O}, s:O}",
                     "id", json_object_get(e, "id"),
                     "type", json_object_get(e, "type"), "time", t,
                     "team", json_object_get(e, "team"),
                     "application", app,
                     "account", "id", json_object_get(a, "id"),
                     "name", json_object_get(a, "name"),
                     "email", json_object_get(a, "email"),
                     "data", json_object_get(e, "data"));
    s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);

    return s;
}


size_t
sa_utf8_prefix(const char *s, size_t max)
{
    size_t  n = max, start;

    /* back to the first byte of the last character, if it is cut */
    start = n;
    while (start > 0 && ((unsigned char) s[start - 1] & 0xc0) == 0x80) {
        start--;
    }
    if (start > 0 && ((unsigned char) s[start - 1] & 0x80)) {
        unsigned char  c = s[start - 1];
        size_t         len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;

        if (n - (start - 1) < len) {
            n = start - 1;
        }
    }

    return n;
}


/* Slack's mrkdwn: &, < and > escaped; cut between characters */
static void
sa_slack_escape(char *out, size_t size, const char *s)
{
    size_t  n = 0;

    for (; *s && n + 6 < size; s++) {
        n += snprintf(out + n, size - n, "%s",
                      *s == '&' ? "&amp;" : *s == '<' ? "&lt;"
                      : *s == '>' ? "&gt;" : (char[2]) { *s, 0 });
    }
    out[sa_utf8_prefix(out, n)] = '\0';
}


/* one readable line: what happened, to which account, in which app */
char *
sa_slack_body(json_t *e, const char *app)
{
    const char  *type = json_string_value(json_object_get(e, "type"));
    json_t      *acct = json_object_get(e, "account");
    json_t      *data = json_object_get(e, "data");
    json_t      *tok = json_object_get(data, "token");
    char         who[256], line[1024], what[700], *list, *prev, *raw;
    int          cut;
    const char  *tid = json_string_value(json_object_get(tok, "id")) ?: "?";
    const char  *exp = json_string_value(json_object_get(tok, "expires_at"));
    json_t      *body;
    char        *s;

    snprintf(who, sizeof(who), "service account *%s/%s*",
             json_string_value(json_object_get(e, "team")) ?: "?",
             json_string_value(json_object_get(acct, "name")) ?: "?");

    list = sa_join(json_object_get(tok, "scopes"), ", ");

    if (strcmp(type, "token.issued") == 0) {
        snprintf(what, sizeof(what), "Token `%s` was issued for %s (scopes: "
                 "%s; expires: %s)", tid, who, list, exp ? exp : "never");
    } else if (strcmp(type, "token.rescoped") == 0) {
        snprintf(what, sizeof(what), "Token `%s` of %s now has scopes %s",
                 tid, who, list);
    } else if (strcmp(type, "token.rotated") == 0) {
        snprintf(what, sizeof(what), "Token `%s` of %s was rotated; it is "
                 "replaced by `%s`", json_string_value(json_object_get(data,
                 "rotated_from")) ?: "?", who, tid);
    } else if (strcmp(type, "token.revoked") == 0) {
        snprintf(what, sizeof(what), "Token `%s` of %s was revoked", tid,
                 who);
    } else if (strcmp(type, "token.expiring") == 0) {
        snprintf(what, sizeof(what), "Token `%s` of %s expires at %s (in "
                 "%lld day%s)", tid, who, exp ? exp : "?",
                 (long long) json_integer_value(json_object_get(data,
                                                                "days_left")),
                 json_integer_value(json_object_get(data, "days_left")) == 1
                 ? "" : "s");
    } else if (strcmp(type, "token.denied") == 0) {
        snprintf(what, sizeof(what), "The gateway refused token `%s` of %s: "
                 "%s", tid, who, json_string_value(json_object_get(data,
                 "status")) ?: "?");
    } else if (strcmp(type, "token.quota_warning") == 0
               || strcmp(type, "token.quota_exhausted") == 0)
    {
        snprintf(what, sizeof(what), "Token `%s` of %s %s its quota of %s "
                 "for %s (%lld used)", tid, who,
                 type[12] == 'w' ? "has used 80 % of" : "has used up",
                 json_string_value(json_object_get(data, "quota")) ?: "?",
                 json_string_value(json_object_get(data, "period")) ?: "?",
                 (long long) json_integer_value(json_object_get(data,
                                                                "used")));
    } else if (strcmp(type, "account.granted") == 0
               || strcmp(type, "account.ungranted") == 0)
    {
        free(list);
        list = sa_join(json_object_get(data, "apps"), ", ");
        prev = sa_join(json_object_get(data, "previous_apps"), ", ");
        snprintf(what, sizeof(what), "The grants of %s changed from %s to %s",
                 who, prev, list);
        free(prev);
    } else if (strcmp(type, "account.deleted") == 0) {
        snprintf(what, sizeof(what), "%c%s was deleted; its tokens are "
                 "revoked", 'S', who + 1);
    } else if (strcmp(type, "ping") == 0) {
        snprintf(what, sizeof(what), "Test notification for %s", who);
    } else {
        raw = json_dumps(data, JSON_COMPACT);
        if (raw == NULL) {
            free(list);
            return NULL;
        }
        cut = strlen(raw) > 200;
        if (cut) {
            raw[sa_utf8_prefix(raw, 200)] = '\0';
        }
        snprintf(what, sizeof(what), "Event `%s` for %s: %s%s", type, who,
                 raw, cut ? "..." : "");
        free(raw);
    }
    free(list);

    /* each cut (snprintf's too) falls between two characters */
    what[sa_utf8_prefix(what, strlen(what))] = '\0';
    snprintf(line, sizeof(line), "%s, in application *%s*", what, app);
    line[sa_utf8_prefix(line, strlen(line))] = '\0';
    sa_slack_escape(what, sizeof(what), line);

    body = json_pack("{s:s}", "text", what);
    s = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);

    return s;
}


/* X-SA-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")> */
void
sa_signature(char *out, size_t size, const char *secret, const char *body,
    int64_t now)
{
    crypto_auth_hmacsha256_state  st;
    uint8_t                       mac[crypto_auth_hmacsha256_BYTES];
    char                          t[24], hex[sizeof(mac) * 2 + 1];

    snprintf(t, sizeof(t), "%lld", (long long) now);

    crypto_auth_hmacsha256_init(&st, (const uint8_t *) secret,
                                strlen(secret));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *) t, strlen(t));
    crypto_auth_hmacsha256_update(&st, (const uint8_t *) ".", 1);
    crypto_auth_hmacsha256_update(&st, (const uint8_t *) body, strlen(body));
    crypto_auth_hmacsha256_final(&st, mac);
    sodium_memzero(&st, sizeof(st));

    sa_hex_encode(mac, sizeof(mac), hex);
    hex[sizeof(hex) - 1] = '\0';
    snprintf(out, size, "X-SA-Signature: t=%s,v1=%s", t, hex);
}

