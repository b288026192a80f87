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


int
main(void)
{
    test_signature();
    test_webhook();
    test_slack();
    test_derived_id();

    return done_testing();
}
