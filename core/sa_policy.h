/*
 * Token policies (nginx-free): a rate with its burst, a quota, and the
 * source networks a token may be used from (issue 25).  They live in the
 * signed token record (and, as defaults, in the account record), so that a
 * Redis writer can neither raise a limit nor widen a network.
 *
 * In a payload, each only when set:
 *
 *   "rate":       "N/s", "N/m" or "N/h"          1 <= N <= 1000000
 *   "burst":      B (integer, needs "rate")      0 <= B <= 1000000
 *   "quota":      "N/day" or "N/month" (UTC)     1 <= N <= 10^12
 *   "allow_from": ["10.0.0.0/8", "2001:db8::/32", ...]  1 to 16 networks,
 *                 each canonical (no host bits set)
 */

#ifndef SA_POLICY_H
#define SA_POLICY_H

#include <stddef.h>
#include <stdint.h>

#define SA_POLICY_MAX_NETS   16
#define SA_RATE_MAX          1000000
#define SA_BURST_MAX         1000000
#define SA_QUOTA_MAX         1000000000000ULL
#define SA_NET_STR_LEN       64          /* enough for "ipv6/128" */

#define SA_QUOTA_DAY         1
#define SA_QUOTA_MONTH       2

typedef struct {
    uint8_t     family;                  /* 4 or 6 */
    uint8_t     bits;                    /* prefix length */
    uint8_t     addr[16];                /* 4 bytes used for IPv4 */
} sa_net_t;

typedef struct sa_policy_s {
    uint32_t    rate;                    /* requests per 'per' s; 0: none */
    uint32_t    per;                     /* 1, 60 or 3600 */
    uint32_t    burst;
    uint8_t     quota_period;            /* 0: no quota */
    uint8_t     nnets;                   /* 0: from anywhere */
    uint64_t    quota;
    sa_net_t    nets[SA_POLICY_MAX_NETS];
} sa_policy_t;

/* "N/s", "N/m", "N/h": 0, or -1 */
int sa_rate_parse(const char *s, size_t len, uint32_t *n, uint32_t *per);
/* "N/day", "N/month": 0, or -1 */
int sa_quota_parse(const char *s, size_t len, uint64_t *n, uint8_t *period);

/*
 * "ADDR/BITS" or a bare address (all bits): 0; -1 not a network; -2 a
 * network with host bits set (canonical, when given, gets what was meant).
 * Strict: no leading zero, space, zone id (fe80::1%eth0) or short form; an
 * IPv4-mapped network (::ffff:10.0.0.0/104) is its IPv4 one (10.0.0.0/8).
 */
int sa_net_parse(const char *s, size_t len, sa_net_t *net,
    sa_net_t *canonical);

/* the canonical text forms, NUL-terminated */
void sa_rate_format(uint32_t n, uint32_t per, char buf[24]);
void sa_quota_format(uint64_t n, uint8_t period, char buf[32]);
void sa_net_format(const sa_net_t *net, char buf[SA_NET_STR_LEN]);

/*
 * Whether an address (family 4 with 4 bytes, or 6 with 16) is inside one of
 * the policy's networks; a policy without networks allows every address.
 * An IPv4-mapped IPv6 address (::ffff:a.b.c.d) counts as its IPv4 address.
 */
int sa_policy_allows(const sa_policy_t *p, int family, const uint8_t *addr);

/* whether any limit is set */
int sa_policy_empty(const sa_policy_t *p);

/*
 * The policy fields of a payload object (absent: none).  1, or 0 when one
 * is present but invalid.
 */
struct json_t;
int sa_policy_from_json(struct json_t *root, sa_policy_t *p);

/* sets the fields that are set (canonical forms) on root: 0, or -1 */
int sa_policy_to_json(const sa_policy_t *p, struct json_t *root);

#endif /* SA_POLICY_H */
