/*
 * sa-admin: allocation that cannot fail.  As in OpenBSD's signify, these
 * helpers exit (status 3, one line on stderr) when memory runs out, and
 * say so in their names; nothing else in sa-admin exits behind its
 * caller's back without a name that says so.
 */

#ifndef SA_ADMIN_XALLOC_H
#define SA_ADMIN_XALLOC_H

#include <stddef.h>

void *sa_xmalloc(size_t size);
void *sa_xcalloc(size_t n, size_t size);
void *sa_xrealloc(void *p, size_t size);
char *sa_xstrdup(const char *s);

/* json_dumps() of a document sa-admin built itself: only memory can fail */
struct json_t;
char *sa_xjson_dumps(const struct json_t *doc, size_t flags);

#endif /* SA_ADMIN_XALLOC_H */
