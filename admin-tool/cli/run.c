/*
 * sa-admin: how a command of the command line runs its operation and
 * prints what --json asks for (ops.h, sa_cli_run()).
 */

#include <jansson.h>

#include "records.h"
#include "ops/ops.h"


json_t *
sa_cli_run(sa_admin_t *sa, const char *op, json_t *in)
{
    json_t  *out = sa_op_call(sa, op, in);

    json_decref(in);

    if (sa->json) {
        sa_print_json(out);
        return NULL;
    }

    return out;
}
