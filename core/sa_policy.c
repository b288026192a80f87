#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <jansson.h>

#include "sa_policy.h"


static const uint8_t  sa_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         0xff, 0xff };


/* decimal digits only, no sign, no leading zero, at most max */
static int
sa_decimal(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    size_t    i;
    uint64_t  v = 0;

    if (len == 0 || len > 13 || (s[0] == '0' && len > 1)) {
        return -1;
    }

    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') {
            return -1;
        }
        v = v * 10 + (uint64_t) (s[i] - '0');
    }

    if (v > max) {
        return -1;
    }

    *out = v;
    return 0;
}


/* splits "N/UNIT" at the slash */
static int
sa_split(const char *s, size_t len, size_t *slash)
{
    const char  *p = memchr(s, '/', len);

    if (p == NULL) {
        return -1;
    }

    *slash = (size_t) (p - s);
    return 0;
}


static int
sa_unit(const char *s, size_t len, const char *unit)
{
    return len == strlen(unit) && memcmp(s, unit, len) == 0;
}


int
sa_rate_parse(const char *s, size_t len, uint32_t *n, uint32_t *per)
{
    size_t       k;
    uint64_t     v;
    const char  *u;

    if (sa_split(s, len, &k) != 0
        || sa_decimal(s, k, SA_RATE_MAX, &v) != 0 || v == 0)
    {
        return -1;
    }

    u = s + k + 1;
    len -= k + 1;

    if (sa_unit(u, len, "s")) {
        *per = 1;
    } else if (sa_unit(u, len, "m")) {
        *per = 60;
    } else if (sa_unit(u, len, "h")) {
        *per = 3600;
    } else {
        return -1;
    }

    *n = (uint32_t) v;
    return 0;
}


int
sa_quota_parse(const char *s, size_t len, uint64_t *n, uint8_t *period)
{
    size_t       k;
    uint64_t     v;
    const char  *u;

    if (sa_split(s, len, &k) != 0
        || sa_decimal(s, k, SA_QUOTA_MAX, &v) != 0 || v == 0)
    {
        return -1;
    }

    u = s + k + 1;
    len -= k + 1;

    if (sa_unit(u, len, "day")) {
        *period = SA_QUOTA_DAY;
    } else if (sa_unit(u, len, "month")) {
        *period = SA_QUOTA_MONTH;
    } else {
        return -1;
    }

    *n = v;
    return 0;
}


int
sa_net_parse(const char *s, size_t len, sa_net_t *net, sa_net_t *canonical)
{
    char        buf[SA_NET_STR_LEN];
    char       *slash;
    uint64_t    bits;
    unsigned    i, max;
    int         host = 0;
    sa_net_t    n;

    if (len == 0 || len >= sizeof(buf) || memchr(s, '\0', len) != NULL) {
        return -1;
    }

    memcpy(buf, s, len);
    buf[len] = '\0';

    memset(&n, 0, sizeof(n));
    slash = strchr(buf, '/');
    if (slash != NULL) {
        *slash++ = '\0';
    }

    if (inet_pton(AF_INET, buf, n.addr) == 1) {
        n.family = 4;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, n.addr) == 1) {
        n.family = 6;
        max = 128;
    } else {
        return -1;
    }

    bits = max;
    if (slash != NULL
        && (sa_decimal(slash, strlen(slash), max, &bits) != 0))
    {
        return -1;
    }

    /*
     * An IPv4-mapped network (::ffff:10.0.0.0/104) is the IPv4 network: a
     * mapped client address counts as IPv4 (sa_policy_allows()), so as
     * IPv6 it would match no one.
     */
    if (n.family == 6 && bits >= 96 && memcmp(n.addr, sa_mapped, 12) == 0) {
        memmove(n.addr, n.addr + 12, 4);
        memset(n.addr + 4, 0, 12);
        n.family = 4;
        max = 32;
        bits -= 96;
    }

    n.bits = (uint8_t) bits;

    /* host bits: cleared in what is given back, but said */
    for (i = 0; i < max / 8; i++) {
        uint8_t  keep;

        if (i * 8 >= bits) {
            keep = 0;
        } else if (i * 8 + 8 <= bits) {
            keep = 0xff;
        } else {
            keep = (uint8_t) (0xff << (8 - (bits - i * 8)));
        }

        if (n.addr[i] & ~keep) {
            host = 1;
        }
        n.addr[i] &= keep;
    }

    if (canonical != NULL) {
        *canonical = n;
    }

    if (host) {
        return -2;
    }

    *net = n;
    return 0;
}


void
sa_rate_format(uint32_t n, uint32_t per, char buf[24])
{
    snprintf(buf, 24, "%u/%s", (unsigned) n,
             per == 1 ? "s" : per == 60 ? "m" : "h");
}


void
sa_quota_format(uint64_t n, uint8_t period, char buf[32])
{
    snprintf(buf, 32, "%llu/%s", (unsigned long long) n,
             period == SA_QUOTA_DAY ? "day" : "month");
}


void
sa_net_format(const sa_net_t *net, char buf[SA_NET_STR_LEN])
{
    size_t  len;

    inet_ntop(net->family == 4 ? AF_INET : AF_INET6, net->addr, buf,
              SA_NET_STR_LEN - 5);
    len = strlen(buf);
    snprintf(buf + len, SA_NET_STR_LEN - len, "/%u", (unsigned) net->bits);
}


static int
sa_net_match(const sa_net_t *net, const uint8_t *addr)
{
    unsigned  full = net->bits / 8, rest = net->bits % 8;
    uint8_t   mask;

    if (memcmp(net->addr, addr, full) != 0) {
        return 0;
    }

    if (rest == 0) {
        return 1;
    }

    mask = (uint8_t) (0xff << (8 - rest));
    return (net->addr[full] & mask) == (addr[full] & mask);
}


int
sa_policy_allows(const sa_policy_t *p, int family, const uint8_t *addr)
{
    size_t  i;

    if (p->nnets == 0) {
        return 1;
    }

    if (family == 6 && memcmp(addr, sa_mapped, sizeof(sa_mapped)) == 0) {
        family = 4;
        addr += 12;
    }

    for (i = 0; i < p->nnets; i++) {
        if (p->nets[i].family == family && sa_net_match(&p->nets[i], addr)) {
            return 1;
        }
    }

    return 0;
}


int
sa_policy_empty(const sa_policy_t *p)
{
    return p->rate == 0 && p->quota_period == 0 && p->nnets == 0;
}


int
sa_policy_from_json(json_t *root, sa_policy_t *p)
{
    json_t  *v, *n;
    size_t   i;

    memset(p, 0, sizeof(*p));

    v = json_object_get(root, "rate");
    if (v != NULL
        && (!json_is_string(v)
            || sa_rate_parse(json_string_value(v), json_string_length(v),
                             &p->rate, &p->per) != 0))
    {
        return 0;
    }

    v = json_object_get(root, "burst");
    if (v != NULL) {
        if (!json_is_integer(v) || p->rate == 0
            || json_integer_value(v) < 0
            || json_integer_value(v) > SA_BURST_MAX)
        {
            return 0;
        }
        p->burst = (uint32_t) json_integer_value(v);
    }

    v = json_object_get(root, "quota");
    if (v != NULL
        && (!json_is_string(v)
            || sa_quota_parse(json_string_value(v), json_string_length(v),
                              &p->quota, &p->quota_period) != 0))
    {
        return 0;
    }

    v = json_object_get(root, "allow_from");
    if (v != NULL) {
        if (!json_is_array(v) || json_array_size(v) == 0
            || json_array_size(v) > SA_POLICY_MAX_NETS)
        {
            return 0;
        }

        json_array_foreach(v, i, n) {
            if (!json_is_string(n)
                || sa_net_parse(json_string_value(n), json_string_length(n),
                                &p->nets[i], NULL) != 0)
            {
                return 0;
            }
        }
        p->nnets = (uint8_t) json_array_size(v);
    }

    return 1;
}


int
sa_policy_to_json(const sa_policy_t *p, json_t *root)
{
    char     buf[SA_NET_STR_LEN];
    json_t  *arr;
    size_t   i;
    int      rc = 0;

    if (p->rate) {
        sa_rate_format(p->rate, p->per, buf);
        rc |= json_object_set_new(root, "rate", json_string(buf));
        rc |= json_object_set_new(root, "burst",
                                  json_integer((json_int_t) p->burst));
    }

    if (p->quota_period) {
        sa_quota_format(p->quota, p->quota_period, buf);
        rc |= json_object_set_new(root, "quota", json_string(buf));
    }

    if (p->nnets) {
        arr = json_array();
        for (i = 0; arr != NULL && i < p->nnets; i++) {
            sa_net_format(&p->nets[i], buf);
            rc |= json_array_append_new(arr, json_string(buf));
        }
        rc |= json_object_set_new(root, "allow_from", arr);
    }

    return rc ? -1 : 0;
}
