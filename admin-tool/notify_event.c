/*
 * sa-admin notify: signed events.  What sa-admin writes into the events
 * stream for the worker, signed like records, and which event types exist.
 */

#include <stdlib.h>
#include <string.h>

#include "notify.h"
#include "util.h"
#include "xalloc.h"


char *
sa_event_seal(sa_admin_t *sa, const char *type, const char *app,
    const char *team, const char *aid, const char *name, const char *email,
    json_t *data)
{
    char     id[4 + 20 + 1], *json, *sealed;
    json_t  *ev;

    memcpy(id, "evt_", 4);
    sa_random_base62(id + 4, 20);
    id[24] = '\0';

    ev = json_pack("{s:s, s:s, s:s, s:I, s:s*, s:s*, s:o*, s:o}",
                   "kind", "event", "id", id, "type", type,
                   "time", (json_int_t) sa_now(), "application", app,
                   "team", team,
                   "account", aid ? json_pack("{s:s, s:s, s:s}", "id", aid,
                                              "name", name, "email", email)
                                  : NULL,
                   "data", data ? data : json_object());
    if (ev == NULL) {
        sa_die(SA_EXIT_UNAVAILABLE, "out of memory");
    }

    json = sa_xjson_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(ev);

    sealed = sa_envelope_seal(json, strlen(json), sa_signing_key_or_exit(sa));
    free(json);
    if (sealed == NULL) {
        sa_die(SA_EXIT_UNAVAILABLE, "out of memory");
    }

    return sealed;
}


char *
sa_event_seal_account(sa_admin_t *sa, const char *type, sa_account_t *a,
    json_t *data)
{
    return sa_event_seal(sa, type, NULL, a->team, a->id, a->name, a->email,
                         data);
}


char *
sa_event_seal_token(sa_admin_t *sa, const char *type,
    const sa_token_record_t *rec, json_t *data)
{
    return sa_event_seal(sa, type, NULL, rec->team.data, rec->account.data,
                         rec->name.data, rec->email.data, data);
}


json_t *
sa_event_token_json(const sa_token_record_t *rec)
{
    return json_pack("{s:s, s:o, s:o}", "id", rec->id,
                     "scopes", sa_strs_json(rec->scopes, rec->nscopes),
                     "expires_at", sa_time_json(rec->expires_at));
}


int
sa_event_type_valid(const char *s, int star)
{
    static const char  *types[] = {
        "token.issued", "token.rescoped", "token.rotated", "token.revoked",
        "token.expiring", "token.denied", "token.quota_warning",
        "token.quota_exhausted", "account.granted",
        "account.ungranted", "account.deleted", "ping", NULL
    };
    const char  **t;
    size_t        i, n;

    if (star && strcmp(s, "*") == 0) {
        return 1;
    }

    for (t = types; *t != NULL; t++) {
        if (strcmp(s, *t) == 0) {
            return 1;
        }
    }

    /* app.<word>: [a-z0-9_-], 1 to 64 */
    n = strlen(s);
    if (n < 5 || n > 68 || strncmp(s, "app.", 4) != 0) {
        return 0;
    }

    for (i = 4; i < n; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')
              || s[i] == '_' || s[i] == '-'))
        {
            return 0;
        }
    }

    return 1;
}
