/*
 * sa-admin: shared declarations of the command-line tool.
 *
 * Every command group lives in its own cmd_<group>.c and exports one
 * sa_cmd_<group>() entry point with the signature of sa_group_pt.
 */

#ifndef SA_ADMIN_H
#define SA_ADMIN_H

#include <stdio.h>

/* exit codes (contract) */
#define SA_EXIT_OK           0
#define SA_EXIT_USAGE        1
#define SA_EXIT_NOT_FOUND    2    /* not found, or not permitted */
#define SA_EXIT_UNAVAILABLE  3    /* Redis down or refusing */

/*
 * Not an exit status: the command is done (it showed --help); the
 * dispatcher makes it 0.  Every helper that parses a command's arguments
 * returns SA_EXIT_OK to go on, SA_DONE, or an exit status: callers pass
 * anything but SA_EXIT_OK up unchanged.
 */
#define SA_DONE              (-2)

typedef struct sa_admin_s    sa_admin_t;
typedef struct sa_command_s  sa_command_t;

typedef int (*sa_run_pt)(sa_admin_t *sa, int argc, char **argv);

struct sa_command_s {
    const char   *name;
    sa_run_pt     run;
    const char   *usage;         /* "team create TEAM --owner USER" */
    const char   *help;          /* what it does, its options */
};

struct sa_admin_s {
    const char          *redis_url;      /* --redis, SA_REDIS */
    const char          *signing_key;    /* --signing-key, SA_SIGNING_KEY */
    const char          *actor;          /* --as, SA_ACTOR */
    const char          *notify_key;     /* --notify-key (notify.h) */
    const char          *verify_key;     /* --verify-key (notify.h) */
    int                  json;           /* --json */
    int                  warned_unverified;
    const char          *prefix;         /* SA_PREFIX, default "sa:" */
    const sa_command_t  *command;         /* the command being run */
    struct redisContext *redis;          /* see redis.h */
    char                 redis_where[600];
};

typedef sa_run_pt  sa_group_pt;

/* runs the command named by argv[1] of a group's table (NULL-terminated) */
int sa_dispatch(sa_admin_t *sa, const char *group, const sa_command_t *cmds,
    int argc, char **argv);

int sa_cmd_key(sa_admin_t *sa, int argc, char **argv);

/* one line to stderr, prefixed "sa-admin: "; returns code */
int sa_fail(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* a usage error: the message and the command's usage line; returns 1 */
int sa_usage_error(sa_admin_t *sa, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* prints the running command's --help on stdout; returns SA_DONE */
int sa_help(sa_admin_t *sa);

/*
 * Parses a command's own flags with getopt_long (flags and operands may be
 * mixed; operands end up from argv[optind]).  Returns the option's val, 'h'
 * for --help/-h, -1 at the end, or '?' after a usage error was printed.
 */
struct option;
int sa_getopt(sa_admin_t *sa, int argc, char **argv,
    const struct option *longopts);

/*
 * After sa_getopt(): exactly want operands, from argv[optind], into *out
 * (out may be NULL when want is 0); otherwise a usage error (returns 1).
 */
int sa_operands(sa_admin_t *sa, int argc, char **argv, int want,
    char ***out);

/*
 * Commands without flags: --help, then exactly want operands into *op.
 * Returns 0 to go on, or SA_DONE or an exit status to return at once.
 */
int sa_plain_args(sa_admin_t *sa, int argc, char **argv, int want,
    char ***op);

/* appends s to a JSON array of strings unless it is there already */
struct json_t;
void sa_json_add_unique(struct json_t *arr, const char *s);

int sa_cmd_team(sa_admin_t *sa, int argc, char **argv);
int sa_cmd_account(sa_admin_t *sa, int argc, char **argv);
int sa_cmd_token(sa_admin_t *sa, int argc, char **argv);
int sa_cmd_audit(sa_admin_t *sa, int argc, char **argv);
int sa_cmd_notify(sa_admin_t *sa, int argc, char **argv);

#endif /* SA_ADMIN_H */
