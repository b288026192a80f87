/*
 * Scopes (nginx-free).
 *
 * A scope is "resource:action" with both parts in [a-z0-9_.-]+.  A token may
 * also hold "resource:*" (every action of the resource) or "*" (everything).
 * A route requires groups of scopes: any scope of a group satisfies that
 * group, and every group must be satisfied.
 */

#ifndef SA_SCOPE_H
#define SA_SCOPE_H

#include <stddef.h>

#define SA_SCOPE_MAX_LEN  128

typedef struct {
    const char  *data;
    size_t       len;
} sa_str_t;

typedef struct {
    const sa_str_t  *scopes;      /* alternatives: any one suffices */
    size_t           n;
} sa_scope_group_t;

/* a scope a route may require: concrete "resource:action" */
int sa_scope_valid_required(const char *s, size_t len);

/* a scope a token may hold: also "resource:*" and "*" */
int sa_scope_valid_granted(const char *s, size_t len);

int sa_scope_match(const sa_str_t *granted, const sa_str_t *required);

/*
 * Returns the index of the first group not satisfied by the granted scopes,
 * or -1 when all are.  With no groups at all, a token must hold at least one
 * scope: a token with no scopes has no API access (returns 0 then).
 */
long sa_scopes_check(const sa_str_t *granted, size_t ngranted,
    const sa_scope_group_t *groups, size_t ngroups);

/* "*" grants every application; otherwise an exact name match */
int sa_app_granted(const sa_str_t *apps, size_t napps, const char *app,
    size_t len);

/* an application name: [A-Za-z0-9_.-]+, at most 64 characters, or "*" */
int sa_app_valid(const char *s, size_t len);

#endif /* SA_SCOPE_H */
