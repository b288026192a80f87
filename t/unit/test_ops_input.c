/*
 * Unit tests of the operations layer (admin-tool/ops/): the registry (every
 * operation has a run function, a route of its own, a known status), the
 * kinds of error (exit codes, HTTP statuses, names), sa_die() and
 * sa_die_kind() through the sink, and the input checks of the operations
 * called directly: a wrong type, an unknown field, a missing or malformed
 * one is SA_ERR_INPUT, said before anything reaches Redis (there is none
 * here: the Redis URL points at a closed port).
 */

#include <setjmp.h>
#include <stdlib.h>

#include <jansson.h>

#include "tap.h"
#include "ops/ops.h"

static sigjmp_buf      back;
static sa_err_kind_t   got_kind;
static char            got_msg[1024];


static SA_NORETURN void
sink(sa_err_kind_t kind, const char *message)
{
    got_kind = kind;
    snprintf(got_msg, sizeof(got_msg), "%s", message);
    siglongjmp(back, 1);
}


static sa_admin_t  sa;


/* runs op on the JSON text; the kind it died with, or 0 when it returned */
static int
run(const char *name, const char *text)
{
    const sa_op_t  *op = sa_op_find(name);
    json_t         *in, *out;
    int             kind = 0;

    got_msg[0] = '\0';
    in = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);

    if (op == NULL || in == NULL) {
        json_decref(in);
        return -1;
    }

    if (sigsetjmp(back, 1) == 0) {
        out = op->run(&sa, in);
        json_decref(out);
    } else {
        kind = got_kind;
    }

    json_decref(in);
    return kind;
}


static void
input_error(const char *name, const char *text, const char *msg)
{
    int  kind = run(name, text);

    if (!ok(kind == SA_ERR_INPUT && strstr(got_msg, msg) != NULL,
            "%s %s: input error '%s'", name, text, msg))
    {
        printf("#   kind %d, message \"%s\"\n", kind, got_msg);
    }
}


/* the {names} of a route, as a JSON object of strings "x" */
static json_t *
path_names(const char *path)
{
    json_t      *o = json_object();
    const char  *p, *e;
    char         name[64];

    for (p = strchr(path, '{'); p != NULL; p = strchr(e, '{')) {
        e = strchr(p, '}');
        if (e == NULL || (size_t) (e - p) >= sizeof(name)) {
            break;
        }
        snprintf(name, sizeof(name), "%.*s", (int) (e - p - 1), p + 1);
        json_object_set_new(o, name, json_string("x"));
    }

    return o;
}


static void
test_registry(void)
{
    const sa_op_t  *op, *other;
    int             n = 0, good_routes = 1, unique = 1, found = 1;
    int             statuses = 1, runs = 1;

    for (op = sa_ops; op->name != NULL; op++) {
        n++;
        runs &= op->run != NULL;
        found &= sa_op_find(op->name) == op;
        statuses &= op->status == 200 || op->status == 201;

        if (op->flags & SA_OP_LOCAL) {
            continue;
        }

        good_routes &= op->method != NULL && op->path != NULL
                       && strncmp(op->path, "/v1/", 4) == 0
                       && (strcmp(op->method, "GET") == 0
                           || strcmp(op->method, "POST") == 0
                           || strcmp(op->method, "PUT") == 0
                           || strcmp(op->method, "DELETE") == 0);

        for (other = sa_ops; other < op; other++) {
            if (strcmp(other->name, op->name) == 0
                || (other->path != NULL && op->path != NULL
                    && strcmp(other->method, op->method) == 0
                    && strcmp(other->path, op->path) == 0))
            {
                unique = 0;
                printf("# %s and %s share a name or a route\n", other->name,
                       op->name);
            }
        }

        /* writes are POST, PUT, DELETE; reads GET */
        good_routes &= (strcmp(op->method, "GET") != 0)
                       == ((op->flags & SA_OP_WRITE) != 0);
    }

    ok(n >= 6, "the registry lists %d operations", n);
    ok(runs, "every operation has a run function");
    ok(found, "sa_op_find() finds each by its name");
    ok(sa_op_find("no.such") == NULL, "and no other");
    ok(statuses, "every status is 200 or 201");
    ok(good_routes, "every route is a method and a /v1/ path; reads GET");
    ok(unique, "no two operations share a name or a method and path");
}


/* every operation: a non-object, an unknown field; its route's names known */
static void
test_every_op(void)
{
    const sa_op_t  *op;
    json_t         *in;
    char           *text;
    int             kind;

    for (op = sa_ops; op->name != NULL; op++) {
        input_error(op->name, "[]", "not a JSON object");
        input_error(op->name, "\"team\"", "not a JSON object");

        if (op->path == NULL) {
            continue;
        }

        /* the route's names first: an unknown one would be named first */
        in = path_names(op->path);
        json_object_set_new(in, "no_such_field", json_true());
        text = json_dumps(in, JSON_COMPACT);
        kind = run(op->name, text);
        ok(kind == SA_ERR_INPUT
           && strcmp(got_msg, "unknown field 'no_such_field'") == 0,
           "%s knows its route's names (%s), refuses another", op->name,
           op->path);
        if (kind != SA_ERR_INPUT) {
            printf("#   kind %d \"%s\"\n", kind, got_msg);
        }
        free(text);
        json_decref(in);
    }
}


static void
test_account(void)
{
    input_error("account.create", "{\"name\":\"a\"}", "missing field 'team'");
    input_error("account.create", "{\"team\":\"t\"}", "missing field 'name'");
    input_error("account.create", "{\"team\":7,\"name\":\"a\"}",
                "field 'team' must be a string");
    input_error("account.create", "{\"team\":\"T!\",\"name\":\"a\"}",
                "invalid team name 'T!'");
    input_error("account.create", "{\"team\":\"t\",\"name\":\"-a\"}",
                "invalid account name '-a'");
    input_error("account.create", "{\"team\":\"t\",\"name\":\"a\","
                "\"apps\":{}}", "field 'apps' must be an array of strings");
    input_error("account.create", "{\"team\":\"t\",\"name\":\"a\","
                "\"apps\":[1]}", "field 'apps' must be an array of strings");
    input_error("account.create", "{\"team\":\"t\",\"name\":\"a\","
                "\"apps\":[\"a b\"]}", "invalid application 'a b'");
    input_error("account.create", "{\"team\":\"t\",\"name\":\"a\","
                "\"apps\":[\"a\\u0000b\"]}", "invalid application");
    input_error("account.show", "{}", "missing field 'id'");
    input_error("account.show", "{\"id\":[\"x\"]}", "must be a string");
    input_error("account.list", "{\"team\":null}", "missing field 'team'");
    input_error("account.grant", "{\"id\":\"x\",\"apps\":[]}",
                "at least one application");
    input_error("account.grant", "{\"id\":\"x\"}", "missing field 'apps'");
    input_error("account.ungrant", "{\"id\":\"x\",\"app\":\"a\","
                "\"apps\":[\"b\"]}", "exclude each other");
    input_error("account.ungrant", "{\"id\":\"x\",\"app\":\"a/b\"}",
                "invalid application 'a/b'");
    input_error("account.delete", "{\"id\":true}", "must be a string");
}


static void
test_token(void)
{
    input_error("token.issue", "{}", "missing field 'id'");
    input_error("token.issue", "{\"id\":\"t/a\",\"count\":0}",
                "field 'count' must be an integer from 1 to 1000000");
    input_error("token.issue", "{\"id\":\"t/a\",\"count\":\"2\"}",
                "field 'count' must be an integer");
    input_error("token.issue", "{\"id\":\"t/a\",\"expires\":\"soon\"}",
                "invalid duration 'soon'");
    input_error("token.issue", "{\"id\":\"t/a\",\"expires\":\"0\"}",
                "invalid duration '0'");
    input_error("token.issue", "{\"id\":\"t/a\",\"expires\":90}",
                "field 'expires' must be a string");
    input_error("token.issue", "{\"id\":\"t/a\",\"scopes\":[\"a\"]}",
                "invalid scope 'a'");
    input_error("token.scope", "{\"id\":\"abcdefghijklmnop\"}",
                "missing field 'scopes'");
    input_error("token.scope", "{\"id\":\"short\",\"scopes\":[]}",
                "invalid token id 'short'");
    input_error("token.revoke", "{\"id\":\"sat_abcdefghijklmnop\"}",
                "never the token itself");
    input_error("token.rotate", "{\"id\":\"abcdefghijklmnop\","
                "\"overlap\":\"-1h\"}", "invalid duration '-1h'");
    input_error("token.list", "{\"id\":1}", "must be a string");
}


static void
test_team(void)
{
    input_error("team.create", "{\"team\":\"t\"}", "missing field 'owner'");
    input_error("team.create", "{\"team\":\"t\",\"owner\":\"a b\"}",
                "invalid user name 'a b'");
    input_error("team.create", "{\"team\":\"T\",\"owner\":\"a\"}",
                "invalid team name 'T'");
    input_error("team.member.add", "{\"team\":\"t\",\"user\":\"u\","
                "\"perms\":[\"service_accounts:fly\"]}",
                "unknown permission 'service_accounts:fly'");
    input_error("team.member.add", "{\"team\":\"t\",\"user\":\"u\","
                "\"perms\":\"service_accounts:tokens\"}",
                "field 'perms' must be an array of strings");
    input_error("team.member.remove", "{\"team\":\"t\"}",
                "missing field 'user'");
    input_error("team.member.list", "{\"team\":false}", "must be a string");
    input_error("team.adopt", "{\"teams\":[]}", "which team?");
    input_error("team.adopt", "{\"teams\":[\"ok\",\"Not\"]}",
                "invalid team name 'Not'");
}


static void
test_app(void)
{
    input_error("app.create", "{\"app\":\"*\",\"team\":\"t\"}",
                "invalid application '*'");
    input_error("app.create", "{\"app\":\"a\"}", "missing field 'team'");
    input_error("app.share", "{\"app\":\"a\",\"team\":\"T T\"}",
                "invalid team name 'T T'");
    input_error("app.unshare", "{\"team\":\"t\"}", "missing field 'app'");
    input_error("app.show", "{\"app\":\"a/b\"}", "invalid application");
    input_error("app.list", "{\"team\":\"-\"}", "invalid team name '-'");
    input_error("app.adopt", "{\"app\":\"a\"}", "go together");
}


static void
test_notify_audit(void)
{
    input_error("notify.set", "{\"app\":\"a\",\"account\":\"t/x\","
                "\"slack\":\"ftp://h/x\",\"events\":[\"ping\"]}",
                "only http and https");
    input_error("notify.set", "{\"app\":\"a\",\"account\":\"t/x\","
                "\"webhook\":\"https://u:p@h/x\",\"events\":[\"ping\"]}",
                "no credentials");
    input_error("notify.set", "{\"app\":\"a\",\"account\":\"t/x\","
                "\"webhook\":\"https://h/x\",\"events\":[\"boom\"]}",
                "unknown event 'boom'");
    input_error("notify.set", "{\"app\":\"a\",\"account\":\"t/x\","
                "\"events\":[\"ping\"]}", "--webhook URL is required");
    input_error("notify.set", "{\"app\":\"a\",\"account\":\"t/x\","
                "\"webhook\":\"https://h/x\"}", "--events E,... is required");
    input_error("notify.list", "{\"app\":\"*\"}", "invalid application '*'");
    input_error("notify.remove", "{\"app\":\"a\"}",
                "missing field 'account'");
    input_error("notify.test", "{\"account\":\"t/x\"}",
                "missing field 'app'");
    input_error("notify.emit", "{\"app\":\"a\",\"type\":\"token.issued\"}",
                "invalid event 'token.issued'");
    input_error("notify.emit", "{\"app\":\"a\",\"type\":\"app.x\","
                "\"data\":[1]}", "field 'data' must be a JSON object");
    input_error("notify.failed", "{\"app\":7}", "must be a string");
    input_error("notify.retry", "{}", "missing field 'id'");
    input_error("audit.list", "{\"since\":\"yesterday-ish\"}",
                "invalid time 'yesterday-ish'");
    input_error("audit.list", "{\"team\":[]}", "must be a string");
    input_error("audit.verify", "{\"team\":\"t\"}", "unknown field 'team'");
}


static void
test_kinds(void)
{
    static const struct { sa_err_kind_t k; int exit, status; const char *n; }
    kinds[] = {
        { SA_ERR_INPUT, 1, 400, "input" },
        { SA_ERR_UNAUTHENTICATED, 2, 401, "unauthenticated" },
        { SA_ERR_FORBIDDEN, 2, 403, "forbidden" },
        { SA_ERR_NOT_FOUND, 2, 404, "not-found" },
        { SA_ERR_EXISTS, 2, 409, "exists" },
        { SA_ERR_CONFLICT, 4, 409, "conflict" },
        { SA_ERR_UNAVAILABLE, 3, 503, "unavailable" },
        { SA_ERR_INTERNAL, 3, 500, "internal" },
    };
    static const int  codes[] = { 1, 2, 3, 4 };
    static const sa_err_kind_t  of[] = { SA_ERR_INPUT, SA_ERR_NOT_FOUND,
                                         SA_ERR_UNAVAILABLE, SA_ERR_CONFLICT };
    volatile size_t  i;

    for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
        ok(sa_err_exit(kinds[i].k) == kinds[i].exit
           && sa_err_status(kinds[i].k) == kinds[i].status
           && strcmp(sa_err_name(kinds[i].k), kinds[i].n) == 0,
           "%s: exit %d, HTTP %d", kinds[i].n, kinds[i].exit,
           kinds[i].status);
    }

    /* sa_die(code) of the machinery goes through the sink, as its kind */
    for (i = 0; i < 4; i++) {
        if (sigsetjmp(back, 1) == 0) {
            sa_die(codes[i], "code %d", codes[i]);
        }
        ok(got_kind == of[i] && strcmp(got_msg, i == 0 ? "code 1"
               : i == 1 ? "code 2" : i == 2 ? "code 3" : "code 4") == 0,
           "sa_die(%d, ...) reaches the sink as %s", codes[i],
           sa_err_name(of[i]));
    }

    if (sigsetjmp(back, 1) == 0) {
        sa_die_kind(SA_ERR_EXISTS, "team '%s' exists", "t");
    }
    ok(got_kind == SA_ERR_EXISTS && strcmp(got_msg, "team 't' exists") == 0,
       "sa_die_kind() reaches the sink with its kind and message");
}


int
main(void)
{
    sa.redis_url = "redis://127.0.0.1:1/0";
    sa.prefix = "sa:";
    sa_die_sink = sink;

    test_registry();
    test_kinds();
    test_every_op();
    test_account();
    test_token();
    test_team();
    test_app();
    test_notify_audit();

    return done_testing();
}
