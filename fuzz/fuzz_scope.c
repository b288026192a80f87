/*
 * Scope validity and matching, and application names.
 *
 * The input is split at '\n' into strings.  The strings before the first
 * empty one are the token's granted scopes; after it, required scopes,
 * grouped, with empty strings between groups (so "a:b\nc:*\n\nx:y\nz:w\n\nq:r"
 * grants {a:b, c:*} and requires (x:y or z:w) and q:r).
 *
 * Checked against reference implementations written from sa_scope.h:
 *   required  "resource:action", both parts [a-z0-9_.-]+, at most 128 bytes
 *   granted   also "resource:*" and "*"
 *   match     "*" matches all; equal strings match; "res:*" matches "res:..."
 *   check     first unsatisfied group, -1 when all are, 0 without scopes
 *   apps      [A-Za-z0-9_.-]{1,64} or "*"; "*" grants every application
 * and invariants: a valid required scope is a valid granted scope; a token
 * holding exactly the required scope satisfies it; "*" satisfies every
 * (non-empty) group; "res:*" satisfies every required "res:..."; adding a
 * granted scope never turns a satisfied route into an unsatisfied one.
 */

#include "fuzz.h"
#include "sa_scope.h"

#define MAX_STRS  64


static int
ref_scope_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'
           || c == '.' || c == '-';
}


static int
ref_part(const char *s, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (!ref_scope_char((unsigned char) s[i])) {
            return 0;
        }
    }

    return n > 0;
}


static int
ref_required(const char *s, size_t n)
{
    size_t  i, colons = 0, at = 0;

    if (n == 0 || n > 128) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        if (s[i] == ':') {
            colons++;
            at = i;
        }
    }

    return colons == 1 && ref_part(s, at) && ref_part(s + at + 1, n - at - 1);
}


static int
ref_granted(const char *s, size_t n)
{
    if (n == 1 && s[0] == '*') {
        return 1;
    }

    if (n >= 3 && n <= 128 && s[n - 2] == ':' && s[n - 1] == '*') {
        return ref_part(s, n - 2);
    }

    return ref_required(s, n);
}


/* for a valid granted g and a valid required r */
static int
ref_match(const sa_str_t *g, const sa_str_t *r)
{
    if (g->len == 1 && g->data[0] == '*') {
        return 1;
    }

    if (g->data[g->len - 1] == '*') {
        /* "res:*": r's resource is res (r has a single ':') */
        return r->len > g->len - 1
               && memcmp(g->data, r->data, g->len - 1) == 0;
    }

    return g->len == r->len && memcmp(g->data, r->data, g->len) == 0;
}


static int
ref_app_valid(const char *s, size_t n)
{
    size_t  i;

    if (n == 1 && s[0] == '*') {
        return 1;
    }

    if (n == 0 || n > 64) {
        return 0;
    }

    for (i = 0; i < n; i++) {
        unsigned char  c = (unsigned char) s[i];

        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
              || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
        {
            return 0;
        }
    }

    return 1;
}


static long
ref_check(const sa_str_t *g, size_t ng, const sa_scope_group_t *groups,
    size_t ngroups)
{
    size_t  i, j, k;
    int     ok;

    if (ng == 0) {
        return 0;
    }

    for (i = 0; i < ngroups; i++) {
        ok = 0;
        for (j = 0; j < groups[i].n && !ok; j++) {
            for (k = 0; k < ng && !ok; k++) {
                ok = ref_match(&g[k], &groups[i].scopes[j]);
            }
        }
        if (!ok) {
            return (long) i;
        }
    }

    return -1;
}


static void
check_one(const sa_str_t *s)
{
    static const sa_str_t  star = { "*", 1 };
    int                    req, gra;
    char                   buf[SA_SCOPE_MAX_LEN + 2];
    sa_str_t               res_star;
    sa_scope_group_t       grp;
    const char            *colon;

    req = sa_scope_valid_required(s->data, s->len);
    gra = sa_scope_valid_granted(s->data, s->len);

    FUZZ_ASSERT(req == ref_required(s->data, s->len));
    FUZZ_ASSERT(gra == ref_granted(s->data, s->len));
    FUZZ_ASSERT(!req || gra);
    FUZZ_ASSERT(sa_app_valid(s->data, s->len)
                == ref_app_valid(s->data, s->len));

    /* whatever the bytes, matching must not crash */
    if (s->len > 0) {
        (void) sa_scope_match(s, s);
        (void) sa_scope_match(s, &star);
        (void) sa_scope_match(&star, s);
    }

    if (!req) {
        return;
    }

    FUZZ_ASSERT(sa_scope_match(s, s));
    FUZZ_ASSERT(sa_scope_match(&star, s));

    grp.scopes = s;
    grp.n = 1;
    FUZZ_ASSERT(sa_scopes_check(s, 1, &grp, 1) == -1);
    FUZZ_ASSERT(sa_scopes_check(&star, 1, &grp, 1) == -1);
    FUZZ_ASSERT(sa_scopes_check(NULL, 0, &grp, 1) == 0);

    /* "res:*" of its own resource grants it */
    colon = memchr(s->data, ':', s->len);
    memcpy(buf, s->data, colon - s->data + 1);
    buf[colon - s->data + 1] = '*';
    res_star.data = buf;
    res_star.len = colon - s->data + 2;
    FUZZ_ASSERT(sa_scope_valid_granted(res_star.data, res_star.len));
    FUZZ_ASSERT(sa_scope_match(&res_star, s));
    FUZZ_ASSERT(sa_scopes_check(&res_star, 1, &grp, 1) == -1);
}


int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const sa_str_t  star = { "*", 1 };
    sa_str_t               strs[MAX_STRS], granted[MAX_STRS + 1];
    sa_str_t               required[MAX_STRS];
    sa_scope_group_t       groups[MAX_STRS];
    size_t                 n = 0, i, j, ng = 0, nr = 0, ngroups = 0;
    const char            *p = (const char *) data, *end = p + size, *nl;
    int                    in_granted = 1, all_valid = 1, app_ok;
    long                   rc, rc2;

    while (p <= end && n < MAX_STRS) {
        nl = memchr(p, '\n', end - p);
        if (nl == NULL) {
            nl = end;
        }
        strs[n].data = p;
        strs[n].len = nl - p;
        n++;
        p = nl + 1;
    }

    for (i = 0; i < n; i++) {
        check_one(&strs[i]);
    }

    /* granted list, then groups of required scopes */
    for (i = 0; i < n; i++) {
        if (strs[i].len == 0) {
            if (in_granted) {
                in_granted = 0;
            } else if (ngroups == 0 || groups[ngroups - 1].n > 0) {
                groups[ngroups].scopes = &required[nr];
                groups[ngroups].n = 0;
                ngroups++;
            }
            continue;
        }

        if (in_granted) {
            all_valid &= sa_scope_valid_granted(strs[i].data, strs[i].len);
            granted[ng++] = strs[i];
            continue;
        }

        all_valid &= sa_scope_valid_required(strs[i].data, strs[i].len);
        if (ngroups == 0) {
            groups[0].scopes = &required[nr];
            groups[0].n = 0;
            ngroups = 1;
        }
        required[nr++] = strs[i];
        groups[ngroups - 1].n++;
    }

    if (ngroups > 0 && groups[ngroups - 1].n == 0) {
        ngroups--;
    }

    /* the module only ever checks valid scopes: compare there */
    rc = sa_scopes_check(granted, ng, groups, ngroups);

    if (all_valid) {
        FUZZ_ASSERT(rc == ref_check(granted, ng, groups, ngroups));
        FUZZ_ASSERT(rc >= -1 && rc < (long) (ngroups ? ngroups : 1));
        if (ng == 0) {
            FUZZ_ASSERT(rc == 0);
        }

        /* "*" satisfies every non-empty group */
        FUZZ_ASSERT(sa_scopes_check(&star, 1, groups, ngroups) == -1);

        /* one more granted scope never hurts */
        if (rc == -1) {
            for (i = 0; i < n; i++) {
                if (strs[i].len > 0
                    && sa_scope_valid_granted(strs[i].data, strs[i].len))
                {
                    granted[ng] = strs[i];
                    rc2 = sa_scopes_check(granted, ng + 1, groups, ngroups);
                    FUZZ_ASSERT(rc2 == -1);
                    break;
                }
            }
        }

        /* granting every required scope satisfies the route */
        if (nr > 0) {
            FUZZ_ASSERT(sa_scopes_check(required, nr, groups, ngroups) == -1);
        }
    }

    /* applications: granted list against each other string */
    for (i = 0; i < n; i++) {
        app_ok = 0;
        for (j = 0; j < ng; j++) {
            if ((granted[j].len == 1 && granted[j].data[0] == '*')
                || (granted[j].len == strs[i].len
                    && memcmp(granted[j].data, strs[i].data, strs[i].len)
                       == 0))
            {
                app_ok = 1;
            }
        }
        FUZZ_ASSERT(sa_app_granted(granted, ng, strs[i].data, strs[i].len)
                    == app_ok);
    }

    return 0;
}
