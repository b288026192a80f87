/*
 * Unit tests: the worker's SSRF policy (admin-tool/notify_ssrf.c): the
 * IANA special-purpose registries, IPv6 forms that embed an IPv4 address,
 * the host's own addresses.
 */

#include <ifaddrs.h>
#include <arpa/inet.h>
#include <netinet/in.h>
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


static void
test_own(void)
{
    struct ifaddrs  *ifs, *i;
    const void      *a;
    char             ip[INET6_ADDRSTRLEN];
    unsigned char    pub[4] = { 1, 1, 1, 1 };
    int              n = 0;

    if (getifaddrs(&ifs) != 0) {
        ok(0, "getifaddrs");
        return;
    }

    for (i = ifs; i != NULL; i = i->ifa_next) {
        if (i->ifa_addr == NULL || (i->ifa_addr->sa_family != AF_INET
                                    && i->ifa_addr->sa_family != AF_INET6))
        {
            continue;
        }
        a = i->ifa_addr->sa_family == AF_INET
            ? (const void *) &((struct sockaddr_in *) i->ifa_addr)->sin_addr
            : (const void *) &((struct sockaddr_in6 *)
                               i->ifa_addr)->sin6_addr;
        inet_ntop(i->ifa_addr->sa_family, a, ip, sizeof(ip));
        ok(sa_addr_local(i->ifa_addr->sa_family, a) == 1,
           "%s (%s) is one of this host's own", ip, i->ifa_name);
        n++;
    }
    freeifaddrs(ifs);

    ok(n > 0, "this host has addresses (%d)", n);
    ok(sa_addr_local(AF_INET, pub) == 0, "1.1.1.1 is not this host's");
}


int
main(void)
{
    static const char  *refused[] = {
        /* IPv4 special-purpose registry */
        "0.1.2.3", "10.1.2.3", "100.64.0.1", "100.127.255.254", "127.0.0.1",
        "127.255.0.1", "169.254.169.254", "172.16.0.1", "172.31.255.255",
        "192.0.0.1", "192.0.0.170", "192.0.2.2", "192.88.99.1",
        "192.168.1.1", "198.18.0.1", "198.19.255.255", "198.51.100.7",
        "203.0.113.9", "224.0.0.1", "239.255.255.250", "240.0.0.1",
        "255.255.255.255",
        /* IPv6 special-purpose registry, and outside 2000::/3 */
        "::", "::1", "100::1", "100:0:0:1::1", "2001:2::1", "2001:db8::1",
        "2001:4::1", "3fff::1", "5f00::1", "fc00::1", "fd00::2", "fe80::1",
        "febf::1", "fec0::1", "feff::1", "ff02::1", "4000::1", "e000::1",
        /* IPv4 inside IPv6 */
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::127.0.0.1", "::10.0.0.1",
        "::ffff:0:7f00:1", "::ffff:0:192.168.0.1", "64:ff9b::7f00:1",
        "64:ff9b::192.0.2.2", "64:ff9b:1::1", "64:ff9b:1:7f00:1::",
        "2002:7f00:1::1", "2002:c0a8:101::1", "2002:c000:0201::1",
        "2001:0:7f00:1::1",                         /* Teredo server */
        "2001:0:4136:e378:8000:63bf:80ff:fffe",     /* client 127.0.0.1 */
        "::8.8.8.8",                                /* compatible: dead */
    };
    static const char  *allowed[] = {
        "1.1.1.1", "8.8.8.8", "93.184.216.34", "100.63.255.255",
        "100.128.0.1", "172.32.0.1", "192.0.0.9", "192.0.0.10", "192.0.3.1",
        "198.17.255.255", "198.20.0.1", "223.255.255.255",
        "2606:4700:4700::1111", "2a00:1450:4001:82a::200e",
        "::ffff:1.1.1.1", "64:ff9b::1.1.1.1", "2002:808:808::1",
        "2001:1::1", "2001:3::1", "2001:20::1", "2620:4f:8000::1",
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

    test_own();

    return done_testing();
}
