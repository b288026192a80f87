/*
 * sa-admin key resign: every account and token record re-signed with the
 * current signing key, for rotating it (docs/key-rotation.md).  The
 * command's entry is in cli/key.c's table.
 */

#ifndef SA_ADMIN_KEY_RESIGN_H
#define SA_ADMIN_KEY_RESIGN_H

#include "sa_admin.h"

#define SA_RESIGN_USAGE                                                     \
    "key resign --old-verify-key FILE... [--team TEAM] [--dry-run]"

#define SA_RESIGN_HELP                                                      \
    "Re-signs every token and account record (of TEAM, or all) with the\n"  \
    "current signing key (--signing-key, SA_SIGNING_KEY), one record per\n" \
    "atomic step: its version bumped, its expiry kept, a token's id\n"      \
    "published on the invalidation channel.  Only a record that verifies\n" \
    "with an --old-verify-key is re-signed; one already signed with the\n"  \
    "current key is skipped, so an interrupted run is finished by running\n" \
    "it again.  A record that verifies with none of the keys (written by\n" \
    "something other than sa-admin, or signed with a key not given) is\n"  \
    "reported on stderr and left as it is; the command then exits 2.\n"    \
    "Finds the records with SCAN (tokens first, then accounts); progress\n" \
    "on stderr when it takes longer than a second.\n"                       \
    "  --old-verify-key FILE  the verify key of a retiring signing key;\n"  \
    "                         repeatable (at most 8); at least one\n"       \
    "  --team TEAM            only the records whose signed team is TEAM\n" \
    "  --dry-run              count what would be re-signed; write nothing\n"

void sa_key_resign_cmd(sa_admin_t *sa, int argc, char **argv);

#endif /* SA_ADMIN_KEY_RESIGN_H */
