/* Unit tests: the worker's SSRF policy (admin-tool/notify_ssrf.c). */

#include <arpa/inet.h>
#include <sys/socket.h>

#include "tap.h"
#include "notify_worker.h"


static const char *
check(const char *text)
{
    unsigned char  a[16];
    int            family = strchr(text, ':') ? AF_INET6 : AF_INET;

    if (inet_pton(family, text, a) != 1) {
        return "unparsable test address";
    }

    return sa_addr_forbidden(family, a);
}


int
main(void)
{
    static const char  *refused[] = {
        "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.1.1",
        "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1",
        "::", "fe80::1", "fc00::1", "ff02::1", "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
    };
    static const char  *allowed[] = {
        "1.1.1.1", "8.8.8.8", "93.184.216.34", "2606:4700:4700::1111",
        "2a00:1450:4001:82a::200e", "::ffff:1.1.1.1",
    };
    size_t              i;
    const char         *why;

    for (i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        why = check(refused[i]);
        ok(why != NULL, "%s refused (%s)", refused[i], why ? why : "-");
    }

    for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        why = check(allowed[i]);
        ok(why == NULL, "%s allowed%s%s", allowed[i], why ? ": " : "",
           why ? why : "");
    }

    return done_testing();
}
