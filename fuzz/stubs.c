/*
 * What admin-tool/redis.c needs from admin-tool/main.c (which has main()
 * and so cannot be linked into a fuzz target).  Only the URL parser is
 * fuzzed: nothing here is reached on its paths.
 */

#include <stdarg.h>

#include "sa_admin.h"


int
sa_fail(int code, const char *fmt, ...)
{
    (void) fmt;
    return code;
}
