/*
 * sa-admin notify run: the Redis side of the worker.  Its scripts
 * (admin-tool/lua/notify_*.lua) and the records it verifies; nothing here
 * talks to a receiver.
 */

#include <stdlib.h>
#include <string.h>

#include "notify_worker.h"
#include "scripts.h"
#include "util.h"
#include "xalloc.h"

/* notify_done.lua's names of the outcomes */
static const char  *sa_outcome_names[] = {
    "ok", "drop", "retry", "dead", "disable", "handback"
};


void
sa_worker_args(sa_worker_t *w, sa_args_t *args)
{
    sa_args_init(args);
    sa_args_add(args, w->sa->prefix);
    sa_args_add(args, "sa-notify");
    sa_args_addf(args, "%lld", (long long) sa_now());
    sa_args_add(args, "");              /* no permission proven (perm.h) */
    sa_args_add(args, "");
}


/* runs one of the worker's scripts; exits 3 on an error reply */
redisReply *
sa_worker_script(sa_worker_t *w, sa_script_t *script, sa_args_t *args)
{
    redisReply  *r;

    sa_xscript_append(w->sa, script, 0, args);
    sa_args_free(args);
    r = sa_xredis_reply(w->sa);

    if (r->type == REDIS_REPLY_ERROR) {
        sa_die(SA_EXIT_UNAVAILABLE, "Redis refused %s: %s", script->name,
               r->str);
    }

    return r;
}


void
sa_dlv_finish(sa_worker_t *w, sa_dlv_t *d, sa_outcome_t outcome,
    int64_t due, const char *error)
{
    sa_args_t    args;
    redisReply  *r;
    char        *state = NULL;

    if (outcome != SA_DLV_OK && outcome != SA_DLV_DROP) {
        json_object_set_new(d->state, "id", json_string(d->id));
        json_object_set(d->state, "fields", d->fields);
        json_object_set_new(d->state, "app", json_string(d->app ?: ""));
        json_object_set_new(d->state, "account", json_string(d->aid ?: ""));
        json_object_set_new(d->state, "type", json_string(d->type ?: ""));
        json_object_set_new(d->state, "dest", json_string(d->dest ?: ""));
        json_object_set_new(d->state, "where", json_string(d->where));
        if (d->team[0]) {
            json_object_set_new(d->state, "team", json_string(d->team));
        }
        if (error) {
            json_object_set_new(d->state, "error", json_string(error));
        }
        if (outcome == SA_DLV_DEAD || outcome == SA_DLV_DISABLE) {
            json_object_set_new(d->state, "failed_at",
                                json_integer(sa_now()));
        }
        state = sa_xjson_dumps(d->state, JSON_COMPACT);
    }

    sa_worker_args(w, &args);
    sa_args_add(&args, sa_outcome_names[outcome]);
    sa_args_add(&args, d->entry);
    sa_args_add(&args, d->sched[0] ? d->sched : d->id);
    sa_args_add(&args, w->me);
    sa_args_add(&args, state ? state : "");
    sa_args_addf(&args, "%lld", (long long) due);
    sa_args_add(&args, d->app ?: "");
    sa_args_add(&args, d->aid ?: "");
    sa_args_add(&args, d->id);
    sa_args_addf(&args, "%lld", (long long) SA_SEEN_MS);
    r = sa_worker_script(w, &sa_lua_notify_done, &args);

    /* a retry due sooner than the worker meant to look */
    if ((outcome == SA_DLV_RETRY || outcome == SA_DLV_HANDBACK)
        && due < w->next_due)
    {
        w->next_due = due;
    }

    if (r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
        sa_log(d, "no longer this worker's (reclaimed by another): "
               "outcome not recorded");
    }

    freeReplyObject(r);
    free(state);
}


json_t *
sa_worker_account(sa_worker_t *w, const char *aid)
{
    const char  *err;

    return sa_record_get(w->sa, sa_verify_key_or_exit(w->sa),
                         SA_KIND_ACCOUNT, aid, &err);
}


sa_token_record_t *
sa_worker_token(sa_worker_t *w, const char *tid)
{
    redisReply         *r;
    const char         *payload;
    size_t              plen;
    sa_token_record_t  *rec = NULL;

    r = sa_xredis_cmd(w->sa, "GET %s", sa_key(w->sa, SA_KEY_TOKEN, tid));

    if (r->type != REDIS_REPLY_STRING
        || sa_envelope_open(r->str, r->len, sa_verify_key_or_exit(w->sa),
                            &payload, &plen) != SA_REC_OK
        || sa_token_record_parse(payload, plen, sa_heap_alloc, NULL, &rec)
           != SA_REC_OK
        || strcmp(rec->id, tid) != 0)
    {
        free(rec);
        rec = NULL;
    }

    freeReplyObject(r);
    return rec;
}


const char *
sa_dlv_may_go(sa_worker_t *w, sa_dlv_t *d, const char *tid)
{
    sa_args_t    args;
    redisReply  *r;
    const char  *why;

    sa_worker_args(w, &args);
    sa_args_add(&args, d->id);
    sa_args_add(&args, d->entry);
    sa_args_addf(&args, "%lld", (long long) SA_SEEN_MS);
    if (strcmp(d->type, "token.denied") == 0 && tid != NULL) {
        sa_args_addf(&args, "%s:%s:%s:%s", tid, d->app, d->aid, d->dest);
    } else {
        sa_args_add(&args, "");
    }
    sa_args_addf(&args, "%d", SA_DENIED_EVERY);
    r = sa_worker_script(w, &sa_lua_notify_seen, &args);

    why = r->type != REDIS_REPLY_STRING ? "Redis answered notify_seen "
                                          "oddly: tried again later"
          : strcmp(r->str, "duplicate") == 0
            ? "dropped: this event went to this destination already"
          : strcmp(r->str, "limited") == 0
            ? "dropped: a token.denied of this token went to this "
              "destination less than a minute ago"
          : NULL;

    freeReplyObject(r);
    return why;
}


/* expands a gateway's entry (sa_gateway_type()) into deliveries */
void
sa_expand(sa_worker_t *w, const char *entry, json_t *fields)
{
    const char         *tid = sa_field(fields, "token");
    const char         *app = sa_field(fields, "app");
    sa_token_record_t  *rec = NULL;
    sa_args_t           args;

    if (tid && sa_token_id_valid(tid, strlen(tid)) && app
        && sa_app_valid(app, strlen(app)))
    {
        rec = sa_worker_token(w, tid);
    }

    sa_worker_args(w, &args);
    sa_args_add(&args, entry);
    sa_args_add(&args, w->me);
    sa_args_add(&args, app ?: "");
    sa_args_add(&args, rec ? rec->account.data : "");
    sa_args_add(&args, tid ?: "");
    sa_args_add(&args, sa_field(fields, "status") ?: "");
    sa_args_add(&args, sa_field(fields, "time") ?: "");
    sa_args_add(&args, sa_field(fields, "type"));
    sa_args_add(&args, sa_field(fields, "used") ?: "");
    sa_args_add(&args, sa_field(fields, "quota") ?: "");
    sa_args_add(&args, sa_field(fields, "period") ?: "");
    freeReplyObject(sa_worker_script(w, &sa_lua_notify_expand, &args));

    free(rec);
}


/* the next retry due, in ms from now (a large number when none) */
int64_t
sa_next_due(sa_worker_t *w)
{
    redisReply  *r;
    int64_t      wait = INT64_MAX / 2;

    r = sa_xredis_cmd(w->sa, "ZRANGE %s 0 0 WITHSCORES",
                      sa_key(w->sa, SA_KEY_DUE, NULL));
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
        wait = (int64_t) strtoll(r->element[1]->str, NULL, 10) - sa_ms();
    }
    freeReplyObject(r);

    return wait;
}


void
sa_expiring(sa_worker_t *w)
{
    sa_args_t  args;

    sa_worker_args(w, &args);
    sa_args_add(&args, "1000");
    freeReplyObject(sa_worker_script(w, &sa_lua_notify_expiring, &args));
}
