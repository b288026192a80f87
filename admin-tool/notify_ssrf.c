/*
 * sa-admin notify run: the SSRF policy.  Which addresses a delivery may
 * connect to, checked on the address curl is about to connect to
 * (t/unit/test_notify_ssrf.c).
 *
 * The tables are IANA's IPv4 and IPv6 Special-Purpose Address Registries
 * (iana-ipv4-special-registry, iana-ipv6-special-registry; as of 2024),
 * with multicast, the deprecated site-local fec0::/10 and everything
 * outside global unicast 2000::/3 added.  The longest prefix decides: an
 * entry that is globally reachable in the registry (e.g. 192.0.0.9/32
 * inside 192.0.0.0/24) allows what a shorter one refuses.  IPv6 forms that
 * embed an IPv4 address (v4-mapped, v4-compatible, SIIT ::ffff:0:a.b.c.d,
 * NAT64 64:ff9b::/96, 6to4, Teredo's server and client) are refused when
 * the embedded address is.  Any address of one of the host's own
 * interfaces is refused too.
 */

#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "notify_worker.h"


typedef struct {
    uint8_t      addr[16];
    unsigned     bits;
    const char  *kind;          /* NULL: globally reachable, allowed */
} sa_range_t;

#define V4(a, b, c, d)  { a, b, c, d }

static const sa_range_t  sa_v4_special[] = {
    { V4(0, 0, 0, 0), 8, "\"this network\"" },              /* RFC 791 */
    { V4(10, 0, 0, 0), 8, "private" },                      /* RFC 1918 */
    { V4(100, 64, 0, 0), 10, "shared (carrier-grade NAT)" },/* RFC 6598 */
    { V4(127, 0, 0, 0), 8, "loopback" },                    /* RFC 1122 */
    { V4(169, 254, 0, 0), 16, "link-local" },               /* RFC 3927 */
    { V4(172, 16, 0, 0), 12, "private" },                   /* RFC 1918 */
    { V4(192, 0, 0, 0), 24, "IETF protocol assignment" },   /* RFC 6890 */
    { V4(192, 0, 0, 9), 32, NULL },                         /* PCP anycast */
    { V4(192, 0, 0, 10), 32, NULL },                        /* TURN anycast */
    { V4(192, 0, 2, 0), 24, "documentation (TEST-NET-1)" }, /* RFC 5737 */
    { V4(192, 88, 99, 0), 24, "6to4 relay anycast" },       /* RFC 7526 */
    { V4(192, 168, 0, 0), 16, "private" },                  /* RFC 1918 */
    { V4(198, 18, 0, 0), 15, "benchmarking" },              /* RFC 2544 */
    { V4(198, 51, 100, 0), 24, "documentation (TEST-NET-2)" },
    { V4(203, 0, 113, 0), 24, "documentation (TEST-NET-3)" },
    { V4(224, 0, 0, 0), 4, "multicast" },                   /* RFC 5771 */
    { V4(240, 0, 0, 0), 4, "reserved" },                    /* RFC 1112 */
    { V4(255, 255, 255, 255), 32, "limited broadcast" },    /* RFC 919 */
};

static const sa_range_t  sa_v6_special[] = {
    { { 0 }, 0, "not global unicast" },             /* outside 2000::/3 */
    { { 0x20 }, 3, NULL },                          /* global unicast */
    { { 0 }, 128, "unspecified" },                  /* RFC 4291 */
    { { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1 }, 128,
      "loopback" },
    { { 0, 0x64, 0xff, 0x9b }, 96, NULL },          /* NAT64, RFC 6052 */
    { { 0, 0x64, 0xff, 0x9b, 0, 1 }, 48, "local-use NAT64" }, /* RFC 8215 */
    { { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff }, 96, NULL }, /* mapped */
    { { 0x01 }, 64, "discard-only" },               /* RFC 6666 */
    { { 0x01, 0, 0, 0, 0, 0, 0, 1 }, 64, "dummy prefix" },  /* RFC 9780 */
    { { 0x20, 0x01 }, 23, "IETF protocol assignment" },     /* RFC 2928 */
    { { 0x20, 0x01, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01 }, 128,
      NULL },                                       /* 2001:1::1, PCP */
    { { 0x20, 0x01, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02 }, 128,
      NULL },                                       /* 2001:1::2, TURN */
    { { 0x20, 0x01, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x03 }, 128,
      NULL },                                       /* 2001:1::3, DNS-SD */
    { { 0x20, 0x01, 0, 0x02 }, 48, "benchmarking" },        /* RFC 5180 */
    { { 0x20, 0x01, 0, 0x03 }, 32, NULL },          /* AMT */
    { { 0x20, 0x01, 0, 0x04, 0x01, 0x12 }, 48, NULL },      /* AS112-v6 */
    { { 0x20, 0x01, 0, 0x20 }, 28, NULL },          /* ORCHIDv2 */
    { { 0x20, 0x01, 0, 0x30 }, 28, NULL },          /* DRIP */
    { { 0x20, 0x01, 0x0d, 0xb8 }, 32, "documentation" },    /* RFC 3849 */
    { { 0x26, 0x20, 0, 0x4f, 0x80 }, 48, NULL },    /* AS112 delegation */
    { { 0x3f, 0xff }, 20, "documentation" },        /* RFC 9637 */
    { { 0x5f }, 16, "SRv6 SIDs" },                  /* RFC 9602 */
    { { 0xfc }, 7, "private (unique local)" },      /* RFC 4193 */
    { { 0xfe, 0x80 }, 10, "link-local" },           /* RFC 4291 */
    { { 0xfe, 0xc0 }, 10, "site-local (deprecated)" },      /* RFC 3879 */
    { { 0xff }, 8, "multicast" },                   /* RFC 4291 */
};


static int
sa_prefix_match(const uint8_t *a, const uint8_t *p, unsigned bits)
{
    unsigned  full = bits / 8, rest = bits % 8;

    if (memcmp(a, p, full) != 0) {
        return 0;
    }

    return rest == 0
           || ((a[full] ^ p[full]) & (uint8_t) (0xff << (8 - rest))) == 0;
}


/* the kind of the longest matching entry; NULL: allowed */
static const char *
sa_lookup(const sa_range_t *t, size_t n, const uint8_t *a, int *found)
{
    size_t       i;
    int          best = -1;
    const char  *kind = NULL;

    for (i = 0; i < n; i++) {
        if ((int) t[i].bits > best && sa_prefix_match(a, t[i].addr,
                                                      t[i].bits))
        {
            best = (int) t[i].bits;
            kind = t[i].kind;
        }
    }

    *found = best >= 0;
    return kind;
}


/*
 * The IPv4 addresses an IPv6 address embeds (RFC 4291, 6052, 6145, 3056,
 * 4380): up to two (Teredo's server and client); returns how many.
 */
static int
sa_v6_embedded(const uint8_t *a, uint8_t v4[2][4])
{
    static const uint8_t  zero[12] = { 0 };
    static const uint8_t  mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0xff, 0xff };
    static const uint8_t  siit[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
                                       0, 0 };
    static const uint8_t  nat64[12] = { 0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0,
                                        0, 0, 0 };
    int                   i;

    if (memcmp(a, mapped, 12) == 0 || memcmp(a, siit, 12) == 0
        || memcmp(a, nat64, 12) == 0
        || (memcmp(a, zero, 12) == 0 && (a[12] | a[13] | a[14]) != 0))
    {
        memcpy(v4[0], a + 12, 4);                /* ::a.b.c.d and kin */
        return 1;
    }

    if (a[0] == 0 && a[1] == 0x64 && a[2] == 0xff && a[3] == 0x9b
        && a[4] == 0 && a[5] == 1)
    {
        /* 64:ff9b:1::/48, any RFC 6052 layout: /96 and /48..64 */
        memcpy(v4[0], a + 12, 4);
        v4[1][0] = a[6];
        v4[1][1] = a[7];
        v4[1][2] = a[9];
        v4[1][3] = a[10];
        return 2;
    }

    if (a[0] == 0x20 && a[1] == 0x02) {          /* 6to4 2002:V4ADDR::/48 */
        memcpy(v4[0], a + 2, 4);
        return 1;
    }

    if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0 && a[3] == 0) {
        memcpy(v4[0], a + 4, 4);                 /* Teredo: server */
        for (i = 0; i < 4; i++) {
            v4[1][i] = a[12 + i] ^ 0xff;         /* client, obfuscated */
        }
        return 2;
    }

    return 0;
}


const char *
sa_addr_forbidden(int family, const void *addr)
{
    const uint8_t  *a = addr;
    const char     *kind;
    uint8_t         v4[2][4];
    int             i, n, found;

    if (family == AF_INET) {
        return sa_lookup(sa_v4_special, sizeof(sa_v4_special)
                         / sizeof(sa_v4_special[0]), a, &found);
    }

    if (family != AF_INET6) {
        return "not an IP";
    }

    n = sa_v6_embedded(a, v4);
    for (i = 0; i < n; i++) {
        kind = sa_addr_forbidden(AF_INET, v4[i]);
        if (kind != NULL) {
            return kind;
        }
    }

    /* ::a.b.c.d with a public a.b.c.d: a deprecated form, no route */
    if (n == 1 && memcmp(a, (uint8_t[12]) { 0 }, 12) == 0) {
        return "IPv4-compatible (deprecated)";
    }

    return sa_lookup(sa_v6_special, sizeof(sa_v6_special)
                     / sizeof(sa_v6_special[0]), a, &found);
}


int
sa_addr_local(int family, const void *addr)
{
    struct ifaddrs  *ifs, *i;
    const void      *own;
    size_t           len = family == AF_INET ? 4 : 16;
    int              hit = 0;

    if (getifaddrs(&ifs) != 0) {
        return -1;
    }

    for (i = ifs; i != NULL && !hit; i = i->ifa_next) {
        if (i->ifa_addr == NULL || i->ifa_addr->sa_family != family) {
            continue;
        }
        own = family == AF_INET
              ? (const void *) &((struct sockaddr_in *) i->ifa_addr)->sin_addr
              : (const void *) &((struct sockaddr_in6 *)
                                 i->ifa_addr)->sin6_addr;
        hit = memcmp(own, addr, len) == 0;
    }

    freeifaddrs(ifs);
    return hit;
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
    sa_dlv_t       *d = data;
    const char     *why = NULL;
    const uint8_t  *addr = NULL;
    char            ip[INET6_ADDRSTRLEN] = "?";
    int             local;

    (void) purpose;

    if (sa->family == AF_INET) {
        addr = (const uint8_t *) &((struct sockaddr_in *) &sa->addr)->sin_addr;
    } else if (sa->family == AF_INET6) {
        addr = ((struct sockaddr_in6 *) &sa->addr)->sin6_addr.s6_addr;
    }

    why = addr ? sa_addr_forbidden(sa->family, addr) : "not an IP";

    if (why == NULL) {
        /* one of this host's own (an IPv4 one also as ::ffff:a.b.c.d) */
        local = sa->family == AF_INET6
                && IN6_IS_ADDR_V4MAPPED((const struct in6_addr *) addr)
                ? sa_addr_local(AF_INET, addr + 12)
                : sa_addr_local(sa->family, addr);
        why = local == 0 ? NULL : local > 0 ? "this host's own"
                                            : "unknown (getifaddrs failed)";
    }

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
