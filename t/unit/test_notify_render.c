/* Unit tests: what the notification worker sends (admin-tool/notify_render.c). */

#include <stdlib.h>
#include <string.h>

#include "tap.h"
#include "notify_worker.h"


static json_t *
event(const char *type, json_t *data)
{
    return json_pack("{s:s, s:s, s:I, s:s, s:{s:s, s:s, s:s}, s:o}",
                     "id", "evt_1", "type", type,
                     "time", (json_int_t) 1700000000, "team", "plat",
                     "account", "id", "sa_1", "name", "ci",
                     "email", "sa_1@plat.sa.invalid", "data", data);
}


static void
test_signature(void)
{
    char  hdr[256];

    /* python3: hmac.new(b'whsec_test', b'1700000000.{"a":1}', sha256) */
    sa_signature(hdr, sizeof(hdr), "whsec_test", "{\"a\":1}", 1700000000);
    is_str(hdr, "X-SA-Signature: t=1700000000,v1=38877139021993b830af32fe"
           "ea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789",
           "signature: HMAC-SHA256 of \"<t>.<body>\"");
}


static void
test_webhook(void)
{
    json_t  *e = event("app.deploy", json_pack("{s:s}", "v", "1"));
    char    *b = sa_webhook_body(e, "billing");

    is_str(b, "{\"id\":\"evt_1\",\"type\":\"app.deploy\",\"time\":"
           "\"2023-11-14T22:13:20Z\",\"team\":\"plat\",\"application\":"
           "\"billing\",\"account\":{\"id\":\"sa_1\",\"name\":\"ci\","
           "\"email\":\"sa_1@plat.sa.invalid\"},\"data\":{\"v\":\"1\"}}",
           "webhook body: the contract's fields in its order");
    free(b);
    json_decref(e);
}


static void
test_slack(void)
{
    json_t  *e = event("ping", json_object());
    char    *b = sa_slack_body(e, "a<b>&c");

    is_str(b, "{\"text\":\"Test notification for service account *plat/ci*,"
           " in application *a&lt;b&gt;&amp;c*\"}",
           "slack: one line, mrkdwn escaped");
    free(b);
    json_decref(e);
}


static void
test_derived_id(void)
{
    char  a[37], b[37], c[37];

    sa_derived_id(a, "token.denied", "x", "1");
    sa_derived_id(b, "token.denied", "x", "1");
    sa_derived_id(c, "token.denied", "x1", "");
    ok(strcmp(a, b) == 0 && strncmp(a, "evt_", 4) == 0 && strlen(a) == 36,
       "derived id: the same for the same parts");
    ok(strcmp(a, c) != 0, "derived id: parts are separated");
}


static void
test_utf8(void)
{
    char     m[256], *b;
    json_t  *e;
    size_t   i;

    is_long((long) sa_utf8_prefix("ab\xc3\xa9", 4), 4, "utf8: a whole é kept");
    is_long((long) sa_utf8_prefix("ab\xc3\xa9", 3), 2, "utf8: half an é cut");
    is_long((long) sa_utf8_prefix("a\xe2\x82\xac", 3), 1, "utf8: 2/3 of € cut");
    is_long((long) sa_utf8_prefix("\xf0\x9f\x98\x80x", 4), 4, "utf8: 4 bytes kept");

    /* 191 'a' and 30 'é' (the crash of issue 20, item 2) */
    memset(m, 'a', 191);
    for (i = 0; i < 30; i++) {
        memcpy(m + 191 + 2 * i, "\xc3\xa9", 2);
    }
    m[251] = '\0';
    e = event("app.note", json_pack("{s:s}", "m", m));
    b = sa_slack_body(e, "billing");
    ok(b != NULL && strstr(b, "\xc3\xa9..., in application") != NULL,
       "slack: data cut after a whole character");
    free(b);
    json_decref(e);

    /* what cannot be rendered is NULL, never an exit */
    e = event("app.note", json_object());
    json_object_set_new(json_object_get(e, "account"), "name", json_null());
    json_object_del(e, "team");
    b = sa_webhook_body(e, "billing");
    ok(b == NULL, "webhook: an event without its fields: NULL");
    free(b);
    json_decref(e);
}


static void
test_checks(void)
{
    char  a[37], b[37];

    ok(sa_event_time_refused(1, 1700000000) != NULL, "time 1: refused");
    ok(sa_event_time_refused(1700000000 - 47 * 3600, 1700000000) == NULL,
       "47 h old: delivered");
    ok(sa_event_time_refused(1700000000 - 49 * 3600, 1700000000) != NULL,
       "49 h old: refused");
    ok(sa_event_time_refused(1700000000 + 3600, 1700000000) != NULL,
       "an hour ahead: refused");
    ok(sa_denied_status_valid("forbidden_application")
       && sa_denied_status_valid("expired") && !sa_denied_status_valid("ok")
       && !sa_denied_status_valid("revoked\r\nX: y")
       && sa_denied_status_valid("forbidden_source")
       && !sa_denied_status_valid(NULL), "token.denied: five statuses");
    ok(sa_event_id_valid("evt_abcDEF0123456789abcd")
       && !sa_event_id_valid("evt_") && !sa_event_id_valid("evt_a\nb")
       && !sa_event_id_valid("dlv_abc") && !sa_event_id_valid(NULL),
       "event ids");
    sa_delivery_id(a, "evt_1", "billing", "acct", "webhook");
    sa_delivery_id(b, "evt_1", "billing", "acct", "slack");
    ok(strncmp(a, "dlv_", 4) == 0 && strlen(a) == 36 && strcmp(a, b) != 0,
       "delivery id: of the event and the destination");
    sa_delivery_id(b, "evt_1", "billing", "acct", "webhook");
    is_str(b, a, "delivery id: the same every time");
}


#define STR(lit)  { lit, sizeof(lit) - 1 }

static void
test_from_token(void)
{
    static sa_str_t     scopes[] = { STR("billing:read") };
    sa_token_record_t   rec;
    json_t             *f, *e;
    const char         *why;
    char                id1[64];
    int                 dead;
    int64_t             now = 1700000000;

    memset(&rec, 0, sizeof(rec));
    memcpy(rec.id, "AAAAAAAAAAAAAAAA", 17);
    rec.account = (sa_str_t) STR("acct");
    rec.name = (sa_str_t) STR("ci");
    rec.email = (sa_str_t) STR("acct@plat.sa.invalid");
    rec.team = (sa_str_t) STR("plat");
    rec.scopes = scopes;
    rec.nscopes = 1;
    rec.expires_at = now + 3 * 86400;

    f = json_pack("{s:s, s:s}", "status", "revoked", "time", "1700000000");
    e = sa_event_from_token("token.denied", &rec, f, now, &why, &dead);
    ok(e != NULL && json_integer_value(json_object_get(e, "time")) == now,
       "token.denied: built, with the entry's time");
    snprintf(id1, sizeof(id1), "%s",
             json_string_value(json_object_get(e, "id")) ?: "");
    json_decref(e);
    json_decref(f);

    f = json_pack("{s:s, s:s}", "status", "revoked", "time", "1700000030");
    e = sa_event_from_token("token.denied", &rec, f, now, &why, &dead);
    is_str(json_string_value(json_object_get(e, "id")), id1,
           "token.denied: one event id a minute");
    json_decref(e);
    json_decref(f);

    f = json_pack("{s:s, s:s}", "status", "phish at evil.example",
                  "time", "1700000000");
    e = sa_event_from_token("token.denied", &rec, f, now, &why, &dead);
    ok(e == NULL && dead, "token.denied: a free-text status is refused");
    json_decref(f);

    f = json_pack("{s:s, s:s}", "status", "expired", "time", "1");
    e = sa_event_from_token("token.denied", &rec, f, now, &why, &dead);
    ok(e == NULL && dead, "token.denied: time 1 is refused");
    json_decref(f);

    f = json_pack("{s:s, s:s}", "time", "1700000000", "status", "revoked");
    e = sa_event_from_token("account.deleted", &rec, f, now, &why, &dead);
    ok(e == NULL, "account.deleted cannot be built from a token record");
    json_decref(f);

    f = json_pack("{s:s, s:s}", "time", "1700000000", "expires_at",
                  "1700259200");
    e = sa_event_from_token("token.expiring", &rec, f, now, &why, &dead);
    ok(e != NULL && json_integer_value(json_object_get(json_object_get(e,
       "data"), "days_left")) == 3, "token.expiring: 3 days left");
    json_decref(e);
    rec.expires_at = now + 30 * 86400;
    json_object_set_new(f, "expires_at", json_string("1702592000"));
    e = sa_event_from_token("token.expiring", &rec, f, now, &why, &dead);
    ok(e == NULL && !dead, "token.expiring 30 days ahead: dropped");
    json_decref(f);
}


static void
test_origin(void)
{
    char  o[64];

    sa_url_origin("https://User:pw@Hooks.Example.COM:8443/a/b?c#d", o,
                  sizeof(o));
    is_str(o, "https://hooks.example.com:8443", "origin: no user info, "
           "lowercase, no path");
    sa_url_origin("http://[::1]:80", o, sizeof(o));
    is_str(o, "http://[::1]:80", "origin: an IPv6 literal");
}


int
main(void)
{
    test_from_token();
    test_origin();
    test_utf8();
    test_checks();
    test_signature();
    test_webhook();
    test_slack();
    test_derived_id();

    return done_testing();
}
