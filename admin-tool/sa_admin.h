/*
 * sa-admin: shared declarations of the command-line tool.
 *
 * Every command group's command line lives in its own cli/<group>.c and
 * exports one sa_cmd_<group>() entry point with the signature of
 * sa_group_pt; its operations are in ops/<group>.c (ops/ops.h).
 */

#ifndef SA_ADMIN_H
#define SA_ADMIN_H

#include <stdint.h>
#include <stdio.h>

/* exit codes (contract) */
#define SA_EXIT_OK           0
#define SA_EXIT_USAGE        1
#define SA_EXIT_NOT_FOUND    2    /* not found, or not permitted */
#define SA_EXIT_UNAVAILABLE  3    /* Redis down or refusing */
#define SA_EXIT_CONFLICT     4    /* concurrent changes kept winning; retry */

#define SA_PREFIX_MAX  100    /* SA_PREFIX, as sa_redis_prefix */

typedef struct sa_admin_s    sa_admin_t;
typedef struct sa_command_s  sa_command_t;

/*
 * A command: it returns when it succeeded (exit status 0); every error
 * ends the process where it is found, with its exit status and one line
 * on stderr (sa_die(), and the helpers named *_or_exit or sa_die_*).
 */
typedef void (*sa_run_pt)(sa_admin_t *sa, int argc, char **argv);

struct sa_command_s {
    const char   *name;
    sa_run_pt     run;
    const char   *usage;         /* "team create TEAM --owner USER" */
    const char   *help;          /* what it does, its options */
};

struct sa_admin_s {
    const char          *redis_url;      /* --redis, SA_REDIS */
    const char          *signing_key;    /* --signing-key, SA_SIGNING_KEY */
    const char          *actor;          /* --as, SA_ACTOR; the proven
                                            caller under serve */
    const char          *proof;          /* how actor was proven: "local",
                                            "token:<id>", "proxy" */
    const char          *channel;        /* "cli" or "api" */
    struct json_t       *scopes;         /* the calling token's scopes,
                                            which bound its permissions;
                                            NULL: not bounded */
    const char         **operators;      /* serve --operator USER...,
                                            NULL-terminated, or NULL */
    const char          *notify_key;     /* --notify-key (notify.h) */
    const char          *verify_key;     /* --verify-key (notify.h) */
    int64_t              fresh_period;   /* SA_FRESH_PERIOD (fresh.h), s;
                                            0: no fresh_until written */
    int64_t              record_max_age; /* SA_RECORD_MAX_AGE (fresh.h), s:
                                            the admin API refuses a token
                                            record that is not fresh, as
                                            sa_record_max_age; 0: off */
    int                  fresh_lax;      /* sa_record_open() takes a
                                            record past its fresh_until
                                            (records.h, _lax()) */
    struct sa_versions_s *versions;      /* refresh.h: every token record
                                            version signed is noted; NULL:
                                            none kept (the CLI) */
    int                  json;           /* --json */
    int                  warned_unverified;
    const char          *prefix;         /* SA_PREFIX, default "sa:" */
    const sa_command_t  *command;         /* the command being run */
    struct sa_rconn_s   *redis;          /* see redis.h, rconn.h */
    const char          *redis_ca;       /* --redis-ca, SA_REDIS_CA */
    const char          *redis_cert;     /* --redis-cert, SA_REDIS_CERT */
    const char          *redis_key;      /* --redis-key, SA_REDIS_KEY */
    int                  redis_insecure; /* --redis-insecure */
    char                 redis_where[600];
};

typedef sa_run_pt  sa_group_pt;

/* runs the command named by argv[1] of a group's table (NULL-terminated) */
void sa_dispatch(sa_admin_t *sa, const char *group, const sa_command_t *cmds,
    int argc, char **argv);

void sa_cmd_key(sa_admin_t *sa, int argc, char **argv);

#define SA_NORETURN  __attribute__((noreturn))

/* one line to stderr, prefixed "sa-admin: ", and exit(code) */
SA_NORETURN void sa_die(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * One line to stderr, prefixed "sa-admin: "; returns code.  For warnings
 * and for what must go on (the worker, a pipeline whose every reply is
 * read): an error that ends the command is sa_die().
 */
int sa_fail(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* a usage error: the message and the command's usage line; exit 1 */
SA_NORETURN void sa_die_usage(sa_admin_t *sa, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Parses a command's own flags with getopt_long (flags and operands may be
 * mixed; operands end up from argv[optind]).  Returns the option's val, or
 * -1 at the end.  --help (-h) prints the command's help and exits 0; an
 * unknown flag, a missing value, and a flag with a value given twice are
 * usage errors (exit 1), except for a flag declared with SA_OPT_MANY (a
 * list: --scope, --app...).  Every table ends with SA_OPTS_END.
 */
struct option;
int sa_getopt_or_exit(sa_admin_t *sa, int argc, char **argv,
    const struct option *longopts);

extern int  sa_opt_many;

#define SA_OPT_MANY(name, val)  { name, required_argument, &sa_opt_many, val }

#define SA_OPTS_END                                                         \
    { "help", no_argument, NULL, 'h' },                                     \
    { NULL, 0, NULL, 0 }

/* after sa_getopt_or_exit(): exactly want operands, or a usage error */
char **sa_operands_or_exit(sa_admin_t *sa, int argc, char **argv, int want);

/* commands without flags: --help, then exactly want operands */
char **sa_plain_args_or_exit(sa_admin_t *sa, int argc, char **argv,
    int want);

/* appends s to a JSON array of strings unless it is there already */
struct json_t;
void sa_json_add_unique(struct json_t *arr, const char *s);

/* does the JSON array hold the string s */
int sa_json_has(struct json_t *arr, const char *s);

/*
 * A repeatable flag's value: valid(s, len), or a usage error "invalid
 * <what> '<s>' (expected <expected>)"; then added to arr once.
 */
void sa_json_add_valid_or_exit(sa_admin_t *sa, struct json_t *arr,
    const char *s, int (*valid)(const char *s, size_t len), const char *what,
    const char *expected);

void sa_cmd_team(sa_admin_t *sa, int argc, char **argv);
void sa_cmd_app(sa_admin_t *sa, int argc, char **argv);
void sa_cmd_scope(sa_admin_t *sa, int argc, char **argv);
void sa_cmd_account(sa_admin_t *sa, int argc, char **argv);
void sa_cmd_token(sa_admin_t *sa, int argc, char **argv);
void sa_cmd_audit(sa_admin_t *sa, int argc, char **argv);
void sa_cmd_notify(sa_admin_t *sa, int argc, char **argv);
void sa_cmd_user(sa_admin_t *sa, int argc, char **argv);
void sa_cmd_serve(sa_admin_t *sa, int argc, char **argv);

#endif /* SA_ADMIN_H */
