#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sa_admin.h"
#include "xalloc.h"
#include "ops/ops.h"


/* exit 3 on the command line; 500 under serve (the sink of ops.h) */
static SA_NORETURN void
sa_out_of_memory(size_t size)
{
    sa_die_kind(SA_ERR_INTERNAL, "out of memory (%zu bytes)", size);
}


void *
sa_xmalloc(size_t size)
{
    void  *p = malloc(size ? size : 1);

    if (p == NULL) {
        sa_out_of_memory(size);
    }

    return p;
}


void *
sa_xcalloc(size_t n, size_t size)
{
    void  *p = calloc(n ? n : 1, size ? size : 1);

    if (p == NULL) {
        sa_out_of_memory(n * size);
    }

    return p;
}


void *
sa_xrealloc(void *p, size_t size)
{
    void  *q = realloc(p, size ? size : 1);

    if (q == NULL) {
        sa_out_of_memory(size);
    }

    return q;
}


char *
sa_xstrdup(const char *s)
{
    char  *p = strdup(s);

    if (p == NULL) {
        sa_out_of_memory(strlen(s) + 1);
    }

    return p;
}


char *
sa_xjson_dumps(const struct json_t *doc, size_t flags)
{
    char  *s = json_dumps(doc, flags);

    if (s == NULL) {
        sa_out_of_memory(0);
    }

    return s;
}
