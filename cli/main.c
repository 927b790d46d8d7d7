/*
 * main.c - weftctl, Weft's command-line tool: dispatches to the subcommands in cli/cli.h.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static int usage(FILE *f)
{
    fputs("usage: weftctl <command> [options]\n"
          "\n"
          "commands:\n"
          "  inject -f FILE|- [--uninject] [-o yaml|json]   add (or remove) Weft's sidecar in "
          "manifests\n",
          f);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage(stderr);
    if (strcmp(argv[1], "inject") == 0)
        return cli_inject_main(argc - 1, argv + 1, stdin, stdout, stderr);
    if (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "weftctl: unknown command \"%s\"\n", argv[1]);
    return usage(stderr);
}
