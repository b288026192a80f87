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
       && !sa_denied_status_valid(NULL), "token.denied: four statuses");
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


int
main(void)
{
    test_utf8();
    test_checks();
    test_signature();
    test_webhook();
    test_slack();
    test_derived_id();

    return done_testing();
}
