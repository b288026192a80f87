/* sa-admin: fresh_until on every token record signed (fresh.h) */

#include <stdlib.h>

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
