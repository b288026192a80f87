/*
 * sa-admin: what every command uses to talk to its user: errors and usage
 * on stderr, --help on stdout, flags and operands, and dispatch to the
 * commands of a group.  Kept apart from main() so that other programs (the
 * fuzz targets) can link it.
 *
 * One convention for "done": a helper that has already finished the
 * command (it showed --help) returns SA_DONE, which the dispatcher turns
 * into exit status 0; anything else non-zero is an exit status.
 */

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "sa_admin.h"


int
sa_fail(int code, const char *fmt, ...)
{
    va_list  ap;

    fputs("sa-admin: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);

    return code;
}


int
sa_usage_error(sa_admin_t *sa, const char *fmt, ...)
{
    va_list  ap;

    fputs("sa-admin: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nusage: sa-admin %s\n", sa->command->usage);

    return SA_EXIT_USAGE;
}


int
sa_help(sa_admin_t *sa)
{
    printf("usage: sa-admin %s\n\n%s", sa->command->usage,
           sa->command->help);
    return SA_DONE;
}


int
sa_getopt(sa_admin_t *sa, int argc, char **argv,
    const struct option *longopts)
{
    int  ch;

    /* a leading ':' lets a missing value be told from an unknown flag */
    ch = getopt_long(argc, argv, ":h", longopts, NULL);

    if (ch == ':') {
        sa_usage_error(sa, "option '%s' needs a value", argv[optind - 1]);
        return '?';
    }

    if (ch == '?') {
        sa_usage_error(sa, "unknown option '%s'", argv[optind - 1]);
        return '?';
    }

    return ch;
}


/* the operands after flags; exits with a usage error on a wrong count */
int
sa_operands(sa_admin_t *sa, int argc, char **argv, int want, char ***out)
{
    int  have = argc - optind;

    if (have < want) {
        return sa_usage_error(sa, "missing operand");
    }

    if (have > want) {
        return sa_usage_error(sa, "unexpected argument '%s'",
                              argv[optind + want]);
    }

    if (out != NULL) {
        *out = argv + optind;
    }

    return SA_EXIT_OK;
}


static const struct option  help_only[] = {
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 }
};


/* for commands without flags: 0 to go on, SA_DONE after --help, or 1 */
static int
sa_only_help(sa_admin_t *sa, int argc, char **argv)
{
    int  ch;

    while ((ch = sa_getopt(sa, argc, argv, help_only)) != -1) {
        return ch == 'h' ? sa_help(sa) : SA_EXIT_USAGE;
    }

    return SA_EXIT_OK;
}


int
sa_plain_args(sa_admin_t *sa, int argc, char **argv, int want, char ***op)
{
    int  rc;

    rc = sa_only_help(sa, argc, argv);
    if (rc != SA_EXIT_OK) {
        return rc;
    }

    return sa_operands(sa, argc, argv, want, op);
}


void
sa_json_add_unique(json_t *arr, const char *s)
{
    size_t   i;
    json_t  *v;

    json_array_foreach(arr, i, v) {
        if (strcmp(json_string_value(v), s) == 0) {
            return;
        }
    }

    json_array_append_new(arr, json_string(s));
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


int
sa_dispatch(sa_admin_t *sa, const char *group, const sa_command_t *cmds,
    int argc, char **argv)
{
    int                  rc;
    const sa_command_t  *c;

    if (argc >= 2 && (strcmp(argv[1], "--help") == 0
                      || strcmp(argv[1], "-h") == 0))
    {
        sa_group_usage(stdout, group, cmds);
        return SA_EXIT_OK;
    }

    if (argc < 2) {
        fprintf(stderr, "sa-admin: '%s' needs a command\n", group);
        sa_group_usage(stderr, group, cmds);
        return SA_EXIT_USAGE;
    }

    for (c = cmds; c->name != NULL; c++) {
        if (strcmp(argv[1], c->name) == 0) {
            sa->command = c;
            optind = 0;          /* glibc: restart getopt from scratch */
            rc = c->run(sa, argc - 1, argv + 1);
            return rc == SA_DONE ? SA_EXIT_OK : rc;
        }
    }

    fprintf(stderr, "sa-admin: unknown command '%s %s'\n", group, argv[1]);
    sa_group_usage(stderr, group, cmds);
    return SA_EXIT_USAGE;
}


