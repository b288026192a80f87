/*
 * sa-admin key: the Ed25519 key pair that signs token records, and
 * re-signing every record with a new one (key_resign.c), renewing the
 * token records' fresh_until (refresh.c).
 */

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "key_resign.h"
#include "refresh.h"
#include "notify.h"
#include "ops/ops.h"
#include "records.h"
#include "sa_admin.h"
#include "sa_crypto.h"

static void sa_key_generate_cmd(sa_admin_t *sa, int argc, char **argv);

static const sa_command_t  commands[] = {
    { "generate", sa_key_generate_cmd, "key generate --out DIR",
      "Writes DIR/signing.key (mode 0600, for sa-admin only),\n"
      "DIR/verify.key (for gateways: sa_verify_key) and DIR/notify.key\n"
      "(mode 0600, for sa-admin and the notification worker only).  DIR\n"
      "is created (mode 0700, with its missing parents, as mkdir -p) when\n"
      "missing; an existing DIR that others may write to (group or world\n"
      "writable, or not owned by you or root) is refused.  Existing keys\n"
      "are never overwritten.\n" },
    { "resign", sa_key_resign_cmd, SA_RESIGN_USAGE, SA_RESIGN_HELP },
    { "refresh", sa_key_refresh_cmd, SA_REFRESH_USAGE, SA_REFRESH_HELP },
    { NULL, NULL, NULL, NULL }
};


void
sa_cmd_key(sa_admin_t *sa, int argc, char **argv)
{
    int  i, help = argc < 2;

    /* every key command needs the keys themselves: never over --api */
    for (i = 1; i < argc; i++) {
        help |= strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0;
    }
    if (sa_api_on() && !help) {
        sa_die(SA_EXIT_USAGE, "key %s needs the keys themselves: it runs "
               "only locally, without --api (SA_API)", argv[1]);
    }

    sa_dispatch(sa, "key", commands, argc, argv);
}


static void
sa_key_unlink(const char *dir, const char *name)
{
    char  path[4096];

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    unlink(path);
}


/*
 * DIR as mkdir -p makes it, each missing directory 0700; an existing DIR
 * must be one that only its owner (the user or root) may write to, as ssh
 * wants of the directories that hold its keys: else another user could
 * replace verify.key, or the signing key once written.
 */
static void
sa_key_dir_or_exit(const char *dir)
{
    char         path[4096], *p, c;
    struct stat  st;

    if (snprintf(path, sizeof(path), "%s", dir) >= (int) sizeof(path)) {
        sa_die(SA_EXIT_NOT_FOUND, "cannot create \"%s\": %s", dir,
               strerror(ENAMETOOLONG));
    }

    for (p = path + 1; ; p++) {
        if (*p != '/' && *p != '\0') {
            continue;
        }

        c = *p;
        *p = '\0';
        if (mkdir(path, 0700) != 0 && errno != EEXIST) {
            sa_die(SA_EXIT_NOT_FOUND, "cannot create \"%s\": %s", path,
                   strerror(errno));
        }
        *p = c;

        if (c == '\0') {
            break;
        }
    }

    if (stat(dir, &st) != 0) {
        sa_die(SA_EXIT_NOT_FOUND, "cannot create \"%s\": %s", dir,
               strerror(errno));
    }

    if (!S_ISDIR(st.st_mode)) {
        sa_die(SA_EXIT_NOT_FOUND, "cannot create \"%s\": %s", dir,
               strerror(ENOTDIR));
    }

    if ((st.st_mode & 022) || (st.st_uid != geteuid() && st.st_uid != 0)) {
        sa_die(SA_EXIT_NOT_FOUND, "\"%s\" may be written by others (mode "
               "%04o, owner uid %u): the keys go into a directory only its "
               "owner can change; fix with chmod go-w \"%s\", or choose "
               "another --out", dir, (unsigned) (st.st_mode & 07777),
               (unsigned) st.st_uid, dir);
    }
}


static void
sa_key_generate_cmd(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "out", required_argument, NULL, 'o' },
        SA_OPTS_END
    };
    const char  *dir = NULL;
    char         err[512];

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        dir = optarg;                   /* --out */
    }

    sa_operands_or_exit(sa, argc, argv, 0);

    if (dir == NULL) {
        sa_die_usage(sa, "--out DIR is required");
    }

    /* a new directory only its owner can enter: the signing key goes there */
    sa_key_dir_or_exit(dir);

    if (sa_key_generate(dir, err, sizeof(err)) != 0) {
        sa_die(SA_EXIT_NOT_FOUND, "%s", err);
    }

    if (sa_notify_key_generate(dir, err, sizeof(err)) != 0) {
        /* all three or none */
        sa_key_unlink(dir, "signing.key");
        sa_key_unlink(dir, "verify.key");
        sa_die(SA_EXIT_NOT_FOUND, "%s", err);
    }

    if (sa->json) {
        sa_print_json(json_pack("{s:s+, s:s+, s:s+}",
                                "signing_key", dir, "/signing.key",
                                "verify_key", dir, "/verify.key",
                                "notify_key", dir, "/notify.key"));
    } else {
        printf("wrote %s/signing.key (keep it secret), %s/verify.key "
               "(for sa_verify_key) and %s/notify.key (keep it secret)\n",
               dir, dir, dir);
    }
}
