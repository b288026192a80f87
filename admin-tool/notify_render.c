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


void
sa_derived_id(char out[37], const char *a, const char *b, const char *c)
{
    uint8_t  h[16];
    char     hex[33];
    crypto_generichash_state  st;

    crypto_generichash_init(&st, NULL, 0, sizeof(h));
    crypto_generichash_update(&st, (const uint8_t *) a, strlen(a) + 1);
    crypto_generichash_update(&st, (const uint8_t *) b, strlen(b) + 1);
    crypto_generichash_update(&st, (const uint8_t *) c, strlen(c) + 1);
    crypto_generichash_final(&st, h, sizeof(h));
    sa_hex_encode(h, sizeof(h), hex);
    snprintf(out, 37, "evt_%.32s", hex);
}


/* token.expiring (from the expiry index), token.denied (gateway) */
json_t *
sa_event_from_token(const char *type, const sa_token_record_t *rec,
    json_t *fields, int64_t now, const char **why)
{
    const char  *status, *exp_s, *time_s;
    json_t      *data;
    char         eid[37];
    int64_t      exp = rec->expires_at;

    time_s = json_string_value(json_object_get(fields, "time"));

    if (strcmp(type, "token.expiring") == 0) {
        exp_s = json_string_value(json_object_get(fields, "expires_at"));
        if (rec->revoked || exp <= now || exp_s == NULL
            || strtoll(exp_s, NULL, 10) != exp)
        {
            *why = "the token was revoked, expired or changed meanwhile";
            return NULL;
        }
        data = json_pack("{s:{s:s, s:o, s:o}, s:I}", "token", "id", rec->id,
                         "scopes", sa_strs_json(rec->scopes, rec->nscopes),
                         "expires_at", sa_time_json(exp),
                         "days_left", (json_int_t) ((exp - now + 86399)
                                                    / 86400));
        sa_derived_id(eid, "token.expiring", rec->id,
                      exp - now > 86400 ? "7d" : "1d");

    } else {
        status = json_string_value(json_object_get(fields, "status")) ?: "";
        data = json_pack("{s:{s:s, s:o, s:o}, s:s}", "token", "id", rec->id,
                         "scopes", sa_strs_json(rec->scopes, rec->nscopes),
                         "expires_at", sa_time_json(exp), "status", status);
        sa_derived_id(eid, "token.denied", rec->id, time_s ?: "");
    }

    return json_pack("{s:s, s:s, s:I, s:s, s:{s:s, s:s, s:s}, s:o}",
                     "id", eid, "type", type,
                     "time", (json_int_t) (strtoll(time_s ?: "0", NULL, 10)
                                           ?: now),
                     "team", rec->team.data,
                     "account", "id", rec->account.data,
                     "name", rec->name.data, "email", rec->email.data,
                     "data", data);
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
    s = sa_xjson_dumps(body, JSON_COMPACT);
    json_decref(body);

    return s;
}


/* Slack's mrkdwn: &, < and > escaped */
static void
sa_slack_escape(char *out, size_t size, const char *s)
{
    size_t  n = 0;

    for (; *s && n + 6 < size; s++) {
        n += snprintf(out + n, size - n, "%s",
                      *s == '&' ? "&amp;" : *s == '<' ? "&lt;"
                      : *s == '>' ? "&gt;" : (char[2]) { *s, 0 });
    }
    out[n] = '\0';
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
        raw = sa_xjson_dumps(data, JSON_COMPACT);
        snprintf(what, sizeof(what), "Event `%s` for %s: %.200s%s", type,
                 who, raw, strlen(raw) > 200 ? "..." : "");
        free(raw);
    }
    free(list);

    snprintf(line, sizeof(line), "%s, in application *%s*", what, app);
    sa_slack_escape(what, sizeof(what), line);

    body = json_pack("{s:s}", "text", what);
    s = sa_xjson_dumps(body, JSON_COMPACT);
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

