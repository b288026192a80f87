/*
 * sa-admin notify run: the SSRF policy.  Which addresses a delivery may
 * connect to, checked on the address curl is about to connect to
 * (t/unit/test_notify_ssrf.c).
 */

#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "notify_worker.h"


const char *
sa_addr_forbidden(int family, const void *addr)
{
    const uint8_t  *a;
    uint32_t        v4;

    if (family == AF_INET6) {
        a = ((const struct in6_addr *) addr)->s6_addr;

        /* ::ffff:a.b.c.d is an IPv4 address */
        if (IN6_IS_ADDR_V4MAPPED((const struct in6_addr *) addr)) {
            return sa_addr_forbidden(AF_INET, a + 12);
        }
        if (IN6_IS_ADDR_LOOPBACK((const struct in6_addr *) addr)) {
            return "loopback";
        }
        if (IN6_IS_ADDR_UNSPECIFIED((const struct in6_addr *) addr)) {
            return "unspecified";
        }
        if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) {
            return "link-local";
        }
        if ((a[0] & 0xfe) == 0xfc) {
            return "private";
        }
        if (a[0] == 0xff) {
            return "multicast";
        }
        return NULL;
    }

    if (family != AF_INET) {
        return "not an IP";
    }

    memcpy(&v4, addr, 4);
    v4 = ntohl(v4);

    if ((v4 >> 24) == 127) {
        return "loopback";
    }
    if ((v4 >> 24) == 10 || (v4 >> 20) == 0xac1 || (v4 >> 16) == 0xc0a8
        || (v4 >> 22) == (100 << 2 | 1))        /* 100.64/10, shared */
    {
        return "private";
    }
    if ((v4 >> 16) == 0xa9fe) {
        return "link-local";
    }
    if ((v4 >> 28) == 0xe) {
        return "multicast";
    }
    if ((v4 >> 24) == 0 || (v4 >> 28) == 0xf) {
        return "reserved";
    }

    return NULL;
}


/*
 * curl calls this for every socket it is about to connect, with the
 * address it resolved: the check is on the address actually connected to,
 * so a name that resolves differently on a second look cannot get around
 * it.
 */
curl_socket_t
sa_open_socket(void *data, curlsocktype purpose, struct curl_sockaddr *sa)
{
    sa_dlv_t    *d = data;
    const char  *why = NULL;
    const void  *addr = NULL;
    char         ip[INET6_ADDRSTRLEN] = "?";

    (void) purpose;

    if (sa->family == AF_INET) {
        addr = &((struct sockaddr_in *) &sa->addr)->sin_addr;
    } else if (sa->family == AF_INET6) {
        addr = &((struct sockaddr_in6 *) &sa->addr)->sin6_addr;
    }

    why = addr ? sa_addr_forbidden(sa->family, addr) : "not an IP";

    if (why != NULL && !d->allow_private) {
        if (addr) {
            inet_ntop(sa->family, addr, ip, sizeof(ip));
        }
        snprintf(d->refused, sizeof(d->refused), "refused: %s is a %s "
                 "address (--allow-private allows it)", ip, why);
        return CURL_SOCKET_BAD;
    }

    return socket(sa->family, sa->socktype, sa->protocol);
}
