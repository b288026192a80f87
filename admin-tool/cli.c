/*
 * sa-admin: what every command uses to talk to its user: errors and usage
 * on stderr, --help on stdout, flags and operands, and dispatch to the
 * commands of a group.  Kept apart from main() so that other programs (the
 * fuzz targets) can link it.
 *
 * One error model, as signify's: a usage error, --help and every error of
 * a command end the process where they are found (sa_die*, *_or_exit);
 * a command that returns has succeeded.
 */

#include <getopt.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "sa_admin.h"
#include "ops/ops.h"
#include "util.h"


static void
sa_vline(const char *fmt, va_list ap)
{
    fputs("sa-admin: ", stderr);
    vfprintf(stderr, fmt, ap);
}


/* through the sink of ops.h (serve), else stderr and exit(code) */
void
sa_die(int code, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    sa_vdie(sa_err_kind_of_exit(code), code, NULL, fmt, ap);
}


int
sa_fail(int code, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    sa_vline(fmt, ap);
    va_end(ap);
    fputc('\n', stderr);

    return code;
}


void
sa_die_usage(sa_admin_t *sa, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    sa_vdie(SA_ERR_INPUT, SA_EXIT_USAGE, sa->command->usage, fmt, ap);
}


/* the running command's --help on stdout, and exit 0 */
static SA_NORETURN void
sa_help_and_exit(sa_admin_t *sa)
{
    printf("usage: sa-admin %s\n\n%s", sa->command->usage,
           sa->command->help);
    exit(SA_EXIT_OK);
}


int  sa_opt_many;


int
sa_getopt_or_exit(sa_admin_t *sa, int argc, char **argv,
    const struct option *longopts)
{
    int                  ch, i = -1;
    static uint64_t      seen;
    static const void   *table;

    /* the command's first call (the dispatcher sets optind 0) */
    if (optind == 0 || table != longopts) {
        seen = 0;
        table = longopts;
    }

    /* a leading ':' lets a missing value be told from an unknown flag */
    ch = getopt_long(argc, argv, ":h", longopts, &i);

    switch (ch) {
    case ':':
        sa_die_usage(sa, "option '%s' needs a value", argv[optind - 1]);
    case '?':
        sa_die_usage(sa, "unknown option '%s'", argv[optind - 1]);
    case 'h':
        sa_help_and_exit(sa);
    case 0:
        /* SA_OPT_MANY: getopt_long stored val in sa_opt_many */
        return longopts[i].val;
    }

    /* JSON holds UTF-8 only: other bytes would be dropped, not refused */
    if (ch != -1 && optarg != NULL && sa_utf8_fault(optarg) != NULL) {
        if (i >= 0) {
            sa_die_usage(sa, "the value of '--%s' is not UTF-8",
                         longopts[i].name);
        }
        sa_die_usage(sa, "the value of '-%c' is not UTF-8", ch);
    }

    /* a value given twice would be taken silently, the last one winning */
    if (ch != -1 && i >= 0 && i < 64 && longopts[i].has_arg != no_argument) {
        if (seen & ((uint64_t) 1 << i)) {
            sa_die_usage(sa, "option '--%s' may be given only once",
                         longopts[i].name);
        }
        seen |= (uint64_t) 1 << i;
    }

    return ch;
}


char **
sa_operands_or_exit(sa_admin_t *sa, int argc, char **argv, int want)
{
    int  have = argc - optind, i;

    if (have < want) {
        sa_die_usage(sa, "missing operand");
    }

    if (have > want) {
        sa_die_usage(sa, "unexpected argument '%s'", argv[optind + want]);
    }

    for (i = 0; i < want; i++) {
        if (sa_utf8_fault(argv[optind + i]) != NULL) {
            sa_die_usage(sa, "operand %d is not UTF-8", i + 1);
        }
    }

    return argv + optind;
}


char **
sa_plain_args_or_exit(sa_admin_t *sa, int argc, char **argv, int want)
{
    static const struct option  help_only[] = { SA_OPTS_END };

    while (sa_getopt_or_exit(sa, argc, argv, help_only) != -1) {
        /* nothing but --help, which exits */
    }

    return sa_operands_or_exit(sa, argc, argv, want);
}


int
sa_json_has(json_t *arr, const char *s)
{
    size_t   i;
    json_t  *v;

    json_array_foreach(arr, i, v) {
        if (strcmp(json_string_value(v) ?: "", s) == 0) {
            return 1;
        }
    }

    return 0;
}


void
sa_json_add_unique(json_t *arr, const char *s)
{
    if (!sa_json_has(arr, s)) {
        json_array_append_new(arr, json_string(s));
    }
}


void
sa_json_add_valid_or_exit(sa_admin_t *sa, json_t *arr, const char *s,
    int (*valid)(const char *s, size_t len), const char *what,
    const char *expected)
{
    if (!valid(s, strlen(s))) {
        sa_die_usage(sa, "invalid %s '%s' (expected %s)", what, s, expected);
    }

    sa_json_add_unique(arr, s);
}


static void
sa_group_usage(FILE *out, const char *group, const sa_command_t *cmds)
{
    fprintf(out, "usage:\n");
    for (; cmds->name != NULL; cmds++) {
        fprintf(out, "  sa-admin %s\n", cmds->usage);
    }
    fprintf(out, "\n'sa-admin %s COMMAND --help' describes a command.\n",
            group);
}


void
sa_dispatch(sa_admin_t *sa, const char *group, const sa_command_t *cmds,
    int argc, char **argv)
{
    const sa_command_t  *c;

    if (argc >= 2 && (strcmp(argv[1], "--help") == 0
                      || strcmp(argv[1], "-h") == 0))
    {
        sa_group_usage(stdout, group, cmds);
        exit(SA_EXIT_OK);
    }

    if (argc < 2) {
        fprintf(stderr, "sa-admin: '%s' needs a command\n", group);
        sa_group_usage(stderr, group, cmds);
        exit(SA_EXIT_USAGE);
    }

    for (c = cmds; c->name != NULL; c++) {
        if (strcmp(argv[1], c->name) == 0) {
            sa->command = c;
            sa_die_usage_line = c->usage;
            optind = 0;          /* glibc: restart getopt from scratch */
            c->run(sa, argc - 1, argv + 1);
            return;
        }
    }

    fprintf(stderr, "sa-admin: unknown command '%s %s'\n", group, argv[1]);
    sa_group_usage(stderr, group, cmds);
    exit(SA_EXIT_USAGE);
}


