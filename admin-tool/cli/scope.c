/*
 * sa-admin scope: the command line of the scope catalogue (ops/scope.c).
 */

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "records.h"
#include "ops/ops.h"


static void
sa_scope_define_cmd(sa_admin_t *sa, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "description", required_argument, NULL, 'd' },
        SA_OPTS_END
    };
    json_t  *in = json_object(), *out;
    char   **op;

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        json_object_set_new(in, "description", json_string(optarg));
    }
    op = sa_operands_or_exit(sa, argc, argv, 2);
    json_object_set_new(in, "app", json_string(op[0]));
    json_object_set_new(in, "scope", json_string(op[1]));

    out = sa_op_call(sa, "scope.define", in);
    json_decref(in);

    if (sa->json) {
        sa_print_json(out);
        return;
    }
    printf("application '%s': scope %s defined\n",
           json_string_value(json_object_get(out, "application")),
           json_string_value(json_object_get(out, "scope")));
    json_decref(out);
}


static void
sa_scope_remove_cmd(sa_admin_t *sa, int argc, char **argv)
{
    char   **op = sa_plain_args_or_exit(sa, argc, argv, 2);
    json_t  *in, *out;

    in = json_pack("{s:s, s:s}", "app", op[0], "scope", op[1]);
    out = sa_op_call(sa, "scope.remove", in);
    json_decref(in);

    if (sa->json) {
        sa_print_json(out);
        return;
    }
    printf("application '%s': scope %s removed from the catalogue\n",
           json_string_value(json_object_get(out, "application")),
           json_string_value(json_object_get(out, "scope")));
    json_decref(out);
}


static void
sa_scope_list_cmd(sa_admin_t *sa, int argc, char **argv)
{
    json_t  *in = json_object(), *out, *row;
    char   **op;
    size_t   i;
    static const struct option  opts[] = {
        SA_OPTS_END
    };

    while (sa_getopt_or_exit(sa, argc, argv, opts) != -1) {
        /* void: --help only */
    }
    if (argc - optind > 0) {
        op = sa_operands_or_exit(sa, argc, argv, 1);
        json_object_set_new(in, "app", json_string(op[0]));
    } else {
        sa_operands_or_exit(sa, argc, argv, 0);
    }

    out = sa_op_call(sa, "scope.list", in);
    json_decref(in);

    if (sa->json) {
        sa_print_json(out);
        return;
    }
    printf("%-24s  %-32s  %s\n", "APPLICATION", "SCOPE", "DESCRIPTION");
    json_array_foreach(out, i, row) {
        printf("%-24s  %-32s  %s\n",
               json_string_value(json_object_get(row, "application")),
               json_string_value(json_object_get(row, "scope")),
               json_string_value(json_object_get(row, "description")));
    }
    json_decref(out);
}


static const sa_command_t  commands[] = {
    { "define", sa_scope_define_cmd,
      "scope define APP SCOPE [--description TEXT]",
      "Adds SCOPE (resource:action) to the catalogue of the application\n"
      "APP, or replaces its description: the check boxes of the console,\n"
      "and what token issue and token scope compare a token's scopes with.\n"
      "The owner of APP's owner team, or service_accounts:create in it.\n"
      "  --description TEXT  what the scope opens (at most 200 bytes)\n" },
    { "list", sa_scope_list_cmd, "scope list [APP]",
      "Lists the catalogue of every application, or of APP.\n" },
    { "remove", sa_scope_remove_cmd, "scope remove APP SCOPE",
      "Removes SCOPE from APP's catalogue (as define); tokens holding it\n"
      "keep it.\n" },
    { NULL, NULL, NULL, NULL }
};


void
sa_cmd_scope(sa_admin_t *sa, int argc, char **argv)
{
    sa_dispatch(sa, "scope", commands, argc, argv);
}
