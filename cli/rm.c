/* rm.c — `kiln rm ORG/NAME [--cache-dir D]`: remove a model from the hub cache. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_rm(int argc, char **argv) {
    const char *dir = NULL, *repo = NULL, *v;
    for (int i = 1; i < argc; i++) {
        if (cli_opt(argc, argv, &i, "--cache-dir", &v)) dir = v;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: kiln rm ORG/NAME [--cache-dir D]\n");
            return 0;
        } else if (argv[i][0] == '-') cli_fail(2, "unknown flag %s (kiln rm --help)", argv[i]);
        else if (repo) cli_fail(2, "one repo at a time");
        else repo = argv[i];
    }
    if (!repo) cli_fail(2, "which repo? (kiln rm ORG/NAME)");
    kiln_err err;
    if (kiln_hub_remove(dir, repo, &err) != 0) cli_fail(1, "%s", err.msg);
    fprintf(stderr, "removed %s\n", repo);
    return 0;
}
