/* Unit tests: scope syntax and matching, application grants. */

#include "tap.h"
#include "sa_scope.h"

#define S(lit)  { lit, sizeof(lit) - 1 }


static int
valid_req(const char *s)
{
    return sa_scope_valid_required(s, strlen(s));
}


static int
valid_tok(const char *s)
{
    return sa_scope_valid_granted(s, strlen(s));
}


static void
test_syntax(void)
{
    static const char  *good[] = { "stacks:read", "deploy:write", "a:b",
                                   "my-app.v2:run_now", "0:9" };
    static const char  *bad[] = { "", ":", "stacks", "stacks:", ":read",
                                  "Stacks:read", "stacks:read:x", "stacks :read",
                                  "stacks:re ad", "stacks:*", "*", "*:read",
                                  "st/acks:read", "stacks:réad" };
    size_t              i;
    char                longest[SA_SCOPE_MAX_LEN + 2];

    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        ok(valid_req(good[i]) && valid_tok(good[i]), "valid scope %s", good[i]);
    }

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ok(!valid_req(bad[i]), "invalid required scope \"%s\"", bad[i]);
    }

    ok(valid_tok("stacks:*"), "token scope resource:* is valid");
    ok(valid_tok("*"), "token scope * is valid");
    ok(!valid_tok("*:*"), "*:* is not a scope");
    ok(!valid_tok("*:read"), "*:read is not a scope");
    ok(!valid_tok("stacks:**"), "stacks:** is not a scope");
    ok(!valid_tok("stacks:re*"), "a partial wildcard is not a scope");

    memset(longest, 'a', sizeof(longest));
    longest[5] = ':';
    ok(sa_scope_valid_required(longest, SA_SCOPE_MAX_LEN),
       "a scope of the maximum length is valid");
    ok(!sa_scope_valid_required(longest, SA_SCOPE_MAX_LEN + 1),
       "a longer one is not");
}


static int
match(const char *granted, const char *required)
{
    sa_str_t  g = { granted, strlen(granted) };
    sa_str_t  r = { required, strlen(required) };

    return sa_scope_match(&g, &r);
}


static void
test_match(void)
{
    ok(match("stacks:read", "stacks:read"), "exact match");
    ok(!match("stacks:read", "stacks:write"), "other action");
    ok(!match("stacks:read", "stack:read"), "other resource");
    ok(!match("stacks:rea", "stacks:read"), "prefix is no match");
    ok(!match("stacks:read", "stacks:rea"), "longer is no match");
    ok(match("stacks:*", "stacks:write"), "resource:* matches an action");
    ok(!match("stacks:*", "stacksx:write"), "resource:* needs the same resource");
    ok(!match("stack:*", "stacks:write"), "resource:* is not a resource prefix");
    ok(match("*", "deploy:write"), "* matches everything");
}


static void
test_groups(void)
{
    sa_str_t          granted[] = { S("stacks:read"), S("deploy:*") };
    sa_str_t          g1[] = { S("stacks:write"), S("stacks:read") };
    sa_str_t          g2[] = { S("deploy:run") };
    sa_str_t          g3[] = { S("billing:read") };
    sa_scope_group_t  all[] = { { g1, 2 }, { g2, 1 } };
    sa_scope_group_t  miss[] = { { g1, 2 }, { g3, 1 }, { g2, 1 } };

    is_long(sa_scopes_check(granted, 2, all, 2), -1,
            "any-of within a group, all-of across groups");
    is_long(sa_scopes_check(granted, 2, miss, 3), 1,
            "the first unsatisfied group is reported");
    is_long(sa_scopes_check(granted, 1, all, 2), 1,
            "a token lacking the second group fails it");
    is_long(sa_scopes_check(granted, 2, NULL, 0), -1,
            "no required scopes: any token with a scope passes");
    is_long(sa_scopes_check(NULL, 0, NULL, 0), 0,
            "no required scopes: a token with no scope fails");
    is_long(sa_scopes_check(NULL, 0, all, 2), 0,
            "a token with no scope fails the first group");
}


static void
test_apps(void)
{
    sa_str_t  apps[] = { S("billing"), S("stacks-api") };
    sa_str_t  star[] = { S("*") };

    ok(sa_app_granted(apps, 2, "billing", 7), "granted app");
    ok(!sa_app_granted(apps, 2, "bill", 4), "app prefix is not granted");
    ok(!sa_app_granted(apps, 2, "billingx", 8), "longer name is not granted");
    ok(!sa_app_granted(apps, 0, "billing", 7), "no grants, no app");
    ok(sa_app_granted(star, 1, "anything", 8), "* grants every app");
    ok(sa_app_valid("stacks-api.v2", 13), "app name valid");
    ok(!sa_app_valid("stacks api", 10), "space in app name invalid");
    ok(!sa_app_valid("", 0), "empty app name invalid");
    ok(sa_app_valid("*", 1), "* is a valid grant");
}


int
main(void)
{
    test_syntax();
    test_match();
    test_groups();
    test_apps();

    return done_testing();
}
