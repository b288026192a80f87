/* sa-admin: fresh_until on every token record signed (fresh.h) */

#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "fresh.h"
#include "records.h"
#include "refresh.h"
#include "util.h"

int64_t
sa_fresh_period_env_or_exit(void)
{
    int64_t      period;
    const char  *v = getenv("SA_FRESH_PERIOD");

    if (v == NULL || *v == '\0') {
        return 0;
    }

    period = sa_duration_parse(v);

    if (period <= 0) {
        sa_die(SA_EXIT_USAGE, "SA_FRESH_PERIOD '%s' is not a duration "
               "(e.g. 24h)", v);
    }

    return period;
}


int64_t
sa_record_max_age_env_or_exit(void)
{
    int64_t      max_age;
    const char  *v = getenv("SA_RECORD_MAX_AGE");

    if (v == NULL || *v == '\0' || strcmp(v, "off") == 0) {
        return 0;
    }

    max_age = sa_duration_parse(v);

    if (max_age <= 0) {
        sa_die(SA_EXIT_USAGE, "SA_RECORD_MAX_AGE '%s' is not a duration "
               "(e.g. 25h) or off", v);
    }

    return max_age;
}


const char *
sa_fresh_refusal(const sa_admin_t *sa, int64_t fresh_until)
{
    int64_t  now;

    if (sa->record_max_age <= 0) {
        return NULL;
    }

    now = sa_now();

    if (fresh_until == 0) {
        return "record refused: it has no fresh_until (SA_RECORD_MAX_AGE "
               "is set)";
    }

    if (fresh_until <= now) {
        return "record refused: its fresh_until has passed (not renewed, "
               "or replayed)";
    }

    if (fresh_until - now > sa->record_max_age) {
        return "record refused: its fresh_until lies more than "
               "SA_RECORD_MAX_AGE ahead";
    }

    return NULL;
}


char *
sa_token_seal(sa_admin_t *sa, sa_token_record_t *rec)
{
    if (sa->fresh_period > 0) {
        rec->fresh_until = sa_now() + sa->fresh_period;
    }

    /* a long-running signer remembers it: no refresh renews an older one */
    if (sa->versions != NULL) {
        sa_versions_note(sa->versions, rec->id, rec->version);
    }

    return sa_token_record_encode(rec, sa_signing_key_or_exit(sa));
}


static const char  sa_fresh_none[] = "it has no fresh_until (SA_RECORD_MAX_AGE "
    "is set: 'sa-admin key refresh' stamps one)";
static const char  sa_fresh_past[] = "its fresh_until has passed (not renewed "
    "by 'sa-admin key refresh' or serve's refresher, or an older record put "
    "back by a Redis writer)";
static const char  sa_fresh_ahead[] = "its fresh_until lies more than "
    "SA_RECORD_MAX_AGE ahead (signed with a longer SA_FRESH_PERIOD: 'sa-admin "
    "key refresh' brings it back)";


const char *
sa_record_fresh_refusal(const sa_admin_t *sa, json_t *payload)
{
    int64_t  now, fresh_until;

    if (sa->record_max_age <= 0 && sa->fresh_period <= 0) {
        return NULL;
    }

    /* sa_record_check() vouched for it: absent, or an integer > 0 */
    fresh_until = json_integer_value(json_object_get(payload, "fresh_until"));
    now = sa_now();

    if (fresh_until == 0) {
        return sa->record_max_age > 0 ? sa_fresh_none : NULL;
    }

    if (fresh_until <= now) {
        return sa_fresh_past;
    }

    if (sa->record_max_age > 0 && fresh_until - now > sa->record_max_age) {
        return sa_fresh_ahead;
    }

    return NULL;
}


int
sa_fresh_reason(const char *err)
{
    return err == sa_fresh_none || err == sa_fresh_past
           || err == sa_fresh_ahead;
}
