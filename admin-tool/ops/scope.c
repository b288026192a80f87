/*
 * sa-admin scope: the scope catalogue (DESIGN.md, "Console and scope
 * catalogue"; issue 23, item 3).  An application's catalogue is the list
 * of scopes its gateways check, each with a description: the console's
 * check boxes, and what `token issue` and `token scope` compare a token's
 * scopes with, so that a typo ("stack:read") does not yield a token that
 * silently opens nothing.
 *
 * The catalogue lives in the application's signed record ("scopes", an
 * object scope -> description), changed as app share changes it: the
 * record read and verified, the new one signed, and the script
 * (app_change.lua) replacing it only if it still holds the bytes read.
 * Who may: the owner of the application's owner team, or a holder of
 * service_accounts:create in it.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "records.h"
#include "change.h"
#include "perm.h"
#include "redis.h"
#include "scripts.h"
#include "util.h"
#include "xalloc.h"
#include "ops.h"
#include "sa_scope.h"

#define SA_SCOPE_DESC_MAX  200


static int
sa_cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char * const *) a, *(const char * const *) b);
}


static const char *
sa_in_scope(json_t *in)
{
    const char  *s = sa_in_str(in, "scope", 1);

    if (!sa_scope_valid_required(s, strlen(s))) {
        sa_die_kind(SA_ERR_INPUT, "invalid scope '%s' (expected "
                    "resource:action, of [a-z0-9_.-])", s);
    }

    return s;
}


/*
 * Printable text of at most SA_SCOPE_DESC_MAX bytes: UTF-8, no control
 * character (C0, DEL, C1, line separators) and no direction control, which
 * would turn the console's text around it (what a box says it opens)
 */
static const char *
sa_in_description(json_t *in)
{
    const char  *d = sa_in_str(in, "description", 0), *why;

    if (d == NULL) {
        return "";
    }
    if (strlen(d) > SA_SCOPE_DESC_MAX) {
        sa_die_kind(SA_ERR_INPUT, "the description is longer than %d bytes",
                    SA_SCOPE_DESC_MAX);
    }
    why = sa_text_fault(d);
    if (why != NULL) {
        sa_die_kind(SA_ERR_INPUT, "the description holds %s", why);
    }

    return d;
}


typedef struct {
    const char  *app;
    const char  *scope;
    const char  *description;     /* NULL: remove */
    json_t      *rec;
    int          changed;
} sa_scope_change_t;


static int
sa_scope_change_once(sa_admin_t *sa, void *data)
{
    sa_scope_change_t  *c = data;
    const char         *err, *owner, *had;
    char               *sealed, *old;
    json_t             *scopes;
    redisReply         *r;
    sa_args_t           args;
    int                 rc;

    r = sa_xredis_cmd(sa, "GET %s" SA_KEY_APP "%s", sa->prefix, c->app);
    json_decref(c->rec);
    c->rec = sa_record_open(sa, NULL, SA_KIND_APP, c->app,
                            r->type == REDIS_REPLY_STRING ? r->str : NULL,
                            r->len, &err);
    if (c->rec == NULL && err != NULL) {
        sa_die_kind(sa_refused_kind(err), "the record of application '%s' "
                    "is refused: %s%s", c->app, err, sa_refused_hint(err));
    }
    if (c->rec == NULL) {
        freeReplyObject(r);
        sa_die_kind(SA_ERR_NOT_FOUND, "no application '%s'", c->app);
    }
    old = sa_xstrdup(r->str);
    freeReplyObject(r);

    owner = json_string_value(json_object_get(c->rec, "team"));
    sa_permit_or_exit(sa, owner, "service_accounts:create");

    scopes = json_object_get(c->rec, "scopes");
    scopes = json_is_object(scopes) ? json_deep_copy(scopes) : json_object();
    had = json_string_value(json_object_get(scopes, c->scope));

    if (c->description == NULL) {
        if (had == NULL) {
            json_decref(scopes);
            free(old);
            sa_die_kind(SA_ERR_NOT_FOUND, "application '%s' has no scope "
                        "'%s' in its catalogue", c->app, c->scope);
        }
        json_object_del(scopes, c->scope);

    } else if (had != NULL && strcmp(had, c->description) == 0) {
        json_decref(scopes);
        free(old);
        return SA_EXIT_OK;              /* nothing to change */

    } else {
        json_object_set_new(scopes, c->scope, json_string(c->description));
    }

    json_object_set_new(c->rec, "scopes", scopes);
    json_object_set_new(c->rec, "version", json_integer(
        json_integer_value(json_object_get(c->rec, "version")) + 1));
    sealed = sa_record_seal(sa, c->rec);

    sa_change_args(sa, &args);
    sa_args_add(&args, c->app);
    sa_args_add(&args, owner);
    sa_args_add(&args, old);
    sa_args_add(&args, sealed);
    sa_args_add(&args, c->description ? "scope.define" : "scope.remove");
    sa_args_add(&args, c->scope);
    rc = sa_change_or_exit(sa, &sa_lua_app_change, &args);
    sa_args_free(&args);
    free(sealed);
    free(old);
    c->changed = rc == SA_EXIT_OK;

    return rc;
}


static json_t *
sa_scope_change(sa_admin_t *sa, json_t *in, int define)
{
    sa_scope_change_t  c;

    memset(&c, 0, sizeof(c));
    if (define) {
        sa_in_only(in, "app", "scope", "description", NULL);
    } else {
        sa_in_only(in, "app", "scope", NULL);
    }
    c.app = sa_in_app(in, 1);
    c.scope = sa_in_scope(in);
    c.description = define ? sa_in_description(in) : NULL;

    sa_actor_or_exit(sa);
    sa_signing_key_or_exit(sa);

    sa_retry_or_exit(sa, sa_scope_change_once, &c, "the application");
    json_decref(c.rec);

    if (define) {
        return json_pack("{s:s, s:s, s:s}", "application", c.app,
                         "scope", c.scope, "description", c.description);
    }

    return json_pack("{s:s, s:s, s:b}", "application", c.app, "scope",
                     c.scope, "removed", 1);
}


/*
 * scope.define: PUT /v1/apps/{app}/scopes/{scope}
 *   app          string, required: the application
 *   scope        string, required: resource:action
 *   description  string: what it opens (at most 200 bytes, no control
 *                characters); replaces the one there
 * The owner of the application's owner team, or service_accounts:create
 * in it.  Returns {"application", "scope", "description"}.
 */
json_t *
sa_op_scope_define(sa_admin_t *sa, json_t *in)
{
    return sa_scope_change(sa, in, 1);
}


/*
 * scope.remove: DELETE /v1/apps/{app}/scopes/{scope}
 *   app, scope   strings, required
 * As scope.define; tokens holding the scope keep it.  Returns
 * {"application", "scope", "removed": true}.
 */
json_t *
sa_op_scope_remove(sa_admin_t *sa, json_t *in)
{
    return sa_scope_change(sa, in, 0);
}


/* the catalogue of a verified application record, into out */
static void
sa_scope_rows(json_t *rec, json_t *out)
{
    const char  *k;
    json_t      *v, *scopes = json_object_get(rec, "scopes");
    const char **keys;
    size_t       n = 0, i;

    if (!json_is_object(scopes)) {
        return;
    }
    keys = sa_xcalloc(json_object_size(scopes) + 1, sizeof(*keys));
    json_object_foreach(scopes, k, v) {
        keys[n++] = k;
    }
    qsort(keys, n, sizeof(*keys), sa_cmp_str);
    for (i = 0; i < n; i++) {
        json_array_append_new(out, json_pack("{s:O, s:s, s:O}",
                              "application", json_object_get(rec, "id"),
                              "scope", keys[i], "description",
                              json_object_get(scopes, keys[i])));
    }
    free(keys);
}


/*
 * every application's verified record, by name, refused ones said; with
 * sight, only those the caller reads (sa_app_sight()); without, all (the
 * catalogue checks of token issue and token scope)
 */
static json_t *
sa_scope_apps(sa_admin_t *sa, sa_app_sight_t *sight)
{
    redisReply      *names, *r;
    json_t          *out = json_array(), *rec;
    const char      *err, **v;
    size_t           i, n;

    names = sa_xredis_cmd(sa, "SMEMBERS %s" SA_KEY_APPS, sa->prefix);
    n = names->type == REDIS_REPLY_ARRAY ? names->elements : 0;
    v = sa_xcalloc(n + 1, sizeof(*v));
    for (i = 0; i < n; i++) {
        v[i] = names->element[i]->str;
    }
    qsort(v, n, sizeof(*v), sa_cmp_str);

    for (i = 0; i < n; i++) {
        r = sa_xredis_cmd(sa, "GET %s" SA_KEY_APP "%s", sa->prefix, v[i]);
        rec = sa_record_open(sa, NULL, SA_KIND_APP, v[i],
                             r->type == REDIS_REPLY_STRING ? r->str : NULL,
                             r->len, &err);
        if (rec == NULL && err != NULL) {
            fprintf(stderr, "sa-admin: the record of application '%s' is "
                    "refused: %s%s; not listed\n", sa_vis(v[i]), err,
                    sa_refused_hint(err));
        }
        if (rec != NULL && (sight == NULL || sa_app_seen(sa, sight, rec))) {
            json_array_append_new(out, rec);
        } else {
            json_decref(rec);
        }
        freeReplyObject(r);
    }
    free(v);
    freeReplyObject(names);

    return out;
}


/*
 * scope.list: GET /v1/scopes
 *   app    string: only this application's
 * Returns the catalogue, by application and scope: an array of
 * {"application", "scope", "description"}; over the API, of the
 * applications the caller reads (sa_app_sight()).
 */
json_t *
sa_op_scope_list(sa_admin_t *sa, json_t *in)
{
    json_t          *apps, *out, *rec;
    const char      *app;
    size_t           i;
    sa_app_sight_t  *sight;

    sa_in_only(in, "app", NULL);
    app = sa_in_app(in, 0);
    if (app != NULL) {
        apps = json_pack("[o]", sa_app_read_or_exit(sa, app));
    } else {
        sight = sa_app_sight(sa);
        apps = sa_scope_apps(sa, sight);
        sa_app_sight_free(sight);
    }

    out = json_array();
    json_array_foreach(apps, i, rec) {
        sa_scope_rows(rec, out);
    }
    json_decref(apps);

    return out;
}


/* does a catalogue scope match a granted one ("stacks:*", "*" too) */
static int
sa_scope_in(json_t *catalogue, const char *granted)
{
    sa_str_t     g = { granted, strlen(granted) }, c;
    const char  *k;
    json_t      *v;

    json_object_foreach(catalogue, k, v) {
        c.data = k;
        c.len = strlen(k);
        if (sa_scope_match(&g, &c)) {
            return 1;
        }
    }

    return 0;
}


static json_t *
sa_scopes_uncatalogued(sa_admin_t *sa, json_t *apps, json_t *scopes,
    int strict)
{
    json_t       *all, *cat, *rec, *s, *bad, *a;
    size_t        i, j, napps = json_array_size(apps);
    const char   *name, *k, *an;
    json_t       *v;

    all = sa_scope_apps(sa, NULL);
    cat = json_object();
    json_array_foreach(all, i, rec) {
        name = json_string_value(json_object_get(rec, "id"));
        for (j = 0; j < napps; j++) {
            a = json_array_get(apps, j);
            an = json_string_value(a);
            if (an != NULL && (strcmp(an, "*") == 0 || strcmp(an, name) == 0)) {
                break;
            }
        }
        if (j == napps || !json_is_object(json_object_get(rec, "scopes"))) {
            continue;
        }
        json_object_foreach(json_object_get(rec, "scopes"), k, v) {
            json_object_set(cat, k, v);
        }
    }
    json_decref(all);

    bad = json_array();
    /* no catalogue for these applications: nothing to compare, unless
     * --strict asks for one */
    if (json_object_size(cat) > 0 || strict) {
        json_array_foreach(scopes, i, s) {
            if (!sa_scope_in(cat, json_string_value(s))) {
                json_array_append(bad, s);
            }
        }
    }
    json_decref(cat);

    return bad;
}


void
sa_scopes_catalogued_or_exit(sa_admin_t *sa, json_t *apps, json_t *scopes,
    int strict, json_t **warnings)
{
    json_t  *bad, *s;
    size_t   i;

    if (scopes == NULL || json_array_size(scopes) == 0) {
        return;
    }

    bad = sa_scopes_uncatalogued(sa, apps, scopes, strict);
    json_array_foreach(bad, i, s) {
        if (strict) {
            sa_die_kind(SA_ERR_INPUT, "scope '%s' is in no catalogue of the "
                        "account's applications (sa-admin scope list; "
                        "--strict refuses it)", json_string_value(s));
        }
        if (*warnings == NULL) {
            *warnings = json_array();
        }
        json_array_append_new(*warnings, json_sprintf("scope '%s' is in no "
                              "catalogue of the account's applications "
                              "(sa-admin scope list)", json_string_value(s)));
    }
    json_decref(bad);
}


void
sa_warnings_out(sa_admin_t *sa, json_t *out, json_t *warnings)
{
    json_t  *w;
    size_t   i;

    if (warnings == NULL) {
        return;
    }
    if (sa->channel != NULL && strcmp(sa->channel, "api") == 0) {
        if (json_is_object(out)) {
            json_object_set(out, "warnings", warnings);
        }
    } else {
        json_array_foreach(warnings, i, w) {
            fprintf(stderr, "sa-admin: warning: %s\n", json_string_value(w));
        }
    }
    json_decref(warnings);
}
