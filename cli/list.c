/* list.c — `kiln list [--cache-dir D] [--json]`: models in the hub cache with size and revision. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_list(int argc, char **argv) {
    const char *dir = NULL;
    bool json = false;
    const cli_flag flags[] = {
        {"--cache-dir", NULL, "DIR", "the hub cache (default: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub)",
         CLI_STR_TO(&dir)},
        {"--json", NULL, NULL, "one JSON object per model", CLI_SWITCH_TO(&json)},
        {0},
    };
    const cli_spec spec = {.name = "list", .usage = "[--cache-dir DIR] [--json]", .about = "Lists the models in the hub cache.", .flags = flags};
    cli_parse(argc, argv, &spec);
    kiln_hub_entry *e;
    size_t n;
    kiln_err err;
    if (kiln_hub_list(dir, &e, &n, &err) != 0) cli_fail(1, "%s", err.msg);
    if (json) {
        for (size_t i = 0; i < n; i++) {
            json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:i, s:s}", "repo_id", e[i].repo_id, "revisions", e[i].revisions,
                                  "sha", e[i].sha, "size", (json_int_t)e[i].size, "files", e[i].n_files, "path",
                                  e[i].path);
            char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
            if (s) printf("%s\n", s);
            free(s);
            json_decref(o);
        }
    } else {
        printf("%-40s %-12s %-12s %10s %6s\n", "REPO", "REVISION", "SHA", "SIZE", "FILES");
        for (size_t i = 0; i < n; i++)
            printf("%-40s %-12s %-12.12s %8.1f MB %6d\n", e[i].repo_id, e[i].revisions[0] ? e[i].revisions : "-",
                   e[i].sha[0] ? e[i].sha : "-", (double)e[i].size / 1e6, e[i].n_files);
        if (n == 0) {
            char *root = dir ? strdup(dir) : kiln_hub_cache_root();
            fprintf(stderr, "(no models in %s)\n", root ? root : "the cache");
            free(root);
        }
    }
    free(e);
    return 0;
}
