/* rm.c — `kiln rm ORG/NAME [--cache-dir D]`: remove a model from the hub cache. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

int cmd_rm(int argc, char **argv) {
    const char *dir = NULL, *repo = NULL;
    int n_pos = 0;
    const cli_flag flags[] = {
        {"--cache-dir", NULL, "DIR", "the hub cache (default: as kiln list)", CLI_STR_TO(&dir)},
        {0},
    };
    const cli_spec spec = {.name = "rm", .usage = "ORG/NAME [--cache-dir DIR]", .about = "Removes a model from the hub cache.", .flags = flags,
                           .pos = &repo, .max_pos = 1, .n_pos = &n_pos};
    cli_parse(argc, argv, &spec);
    if (!repo) cli_fail(2, "which repo? (kiln rm ORG/NAME)");
    kiln_err err;
    if (kiln_hub_remove(dir, repo, &err) != 0) cli_fail(1, "%s", err.msg);
    fprintf(stderr, "removed %s\n", repo);
    return 0;
}
