/*
 * sa-admin serve: GET /v1/openapi.json, the OpenAPI 3.1 document of the
 * whole admin API (issue 22).  Its one home is schema/openapi.json; the
 * build embeds it (serve/embed-openapi.pl), so the document served is the
 * one of the binary's own routes, and t/api/45-openapi.t checks it against
 * them.  The parent answers it alone, without a credential, as it answers
 * /metrics.
 */

#include "serve.h"
#include "xalloc.h"

extern const char  sa_openapi_json[];   /* build/admin/openapi_json.c */


char *
sa_openapi_text(void)
{
    return sa_xstrdup(sa_openapi_json);
}
