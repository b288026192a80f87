#include <string.h>

#include "sa_scope.h"


static int
sa_scope_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9')
           || ch == '_' || ch == '.' || ch == '-';
}


static int
sa_scope_part_valid(const char *s, size_t len)
{
    size_t  i;

    if (len == 0) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        if (!sa_scope_char((unsigned char) s[i])) {
            return 0;
        }
    }

    return 1;
}


/* splits at the single ':'; returns the resource length or -1 */
static long
sa_scope_split(const char *s, size_t len)
{
    const char  *colon;

    if (len == 0 || len > SA_SCOPE_MAX_LEN) {
        return -1;
    }

    colon = memchr(s, ':', len);
    if (colon == NULL) {
        return -1;
    }

    return colon - s;
}


int
sa_scope_valid_required(const char *s, size_t len)
{
    long  rlen;

    rlen = sa_scope_split(s, len);
    if (rlen < 0) {
        return 0;
    }

    return sa_scope_part_valid(s, rlen)
           && sa_scope_part_valid(s + rlen + 1, len - rlen - 1);
}


int
sa_scope_valid_granted(const char *s, size_t len)
{
    long  rlen;

    if (len == 1 && s[0] == '*') {
        return 1;
    }

    rlen = sa_scope_split(s, len);
    if (rlen < 0) {
        return 0;
    }

    if (len - rlen - 1 == 1 && s[len - 1] == '*') {
        return sa_scope_part_valid(s, rlen);
    }

    return sa_scope_valid_required(s, len);
}


int
sa_scope_match(const sa_str_t *granted, const sa_str_t *required)
{
    size_t  rlen;

    if (granted->len == 1 && granted->data[0] == '*') {
        return 1;
    }

    if (granted->len == required->len
        && memcmp(granted->data, required->data, granted->len) == 0)
    {
        return 1;
    }

    /* "res:*" matches "res:<anything>" */
    if (granted->len >= 3
        && granted->data[granted->len - 1] == '*'
        && granted->data[granted->len - 2] == ':')
    {
        rlen = granted->len - 1;        /* "res:" */
        return required->len > rlen
               && memcmp(granted->data, required->data, rlen) == 0;
    }

    return 0;
}


static int
sa_group_satisfied(const sa_str_t *granted, size_t ngranted,
    const sa_scope_group_t *group)
{
    size_t  i, j;

    for (i = 0; i < group->n; i++) {
        for (j = 0; j < ngranted; j++) {
            if (sa_scope_match(&granted[j], &group->scopes[i])) {
                return 1;
            }
        }
    }

    return 0;
}


long
sa_scopes_check(const sa_str_t *granted, size_t ngranted,
    const sa_scope_group_t *groups, size_t ngroups)
{
    size_t  i;

    if (ngranted == 0) {
        return 0;
    }

    for (i = 0; i < ngroups; i++) {
        if (!sa_group_satisfied(granted, ngranted, &groups[i])) {
            return (long) i;
        }
    }

    return -1;
}


int
sa_app_granted(const sa_str_t *apps, size_t napps, const char *app,
    size_t len)
{
    size_t  i;

    for (i = 0; i < napps; i++) {
        if ((apps[i].len == 1 && apps[i].data[0] == '*')
            || (apps[i].len == len && memcmp(apps[i].data, app, len) == 0))
        {
            return 1;
        }
    }

    return 0;
}


int
sa_app_valid(const char *s, size_t len)
{
    size_t         i;
    unsigned char  ch;

    if (len == 1 && s[0] == '*') {
        return 1;
    }

    if (len == 0 || len > 64) {
        return 0;
    }

    for (i = 0; i < len; i++) {
        ch = (unsigned char) s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
              || (ch >= '0' && ch <= '9') || ch == '_' || ch == '.'
              || ch == '-'))
        {
            return 0;
        }
    }

    return 1;
}
