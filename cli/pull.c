/* pull.c — `kiln pull ORG/NAME [--revision R] [--include GLOB]... [--cache-dir D | --local-dir D]
 * [--endpoint URL] [--parallel N] [--quiet]`: download a model the way huggingface_hub does.
 * Prints the snapshot directory on stdout (so `kiln run --model "$(kiln pull X)"` works); progress on
 * stderr when it is a terminal. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void human_bytes(char *buf, size_t n, double b) {
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1000 && i < 4) b /= 1000, i++;
    snprintf(buf, n, i ? "%.1f %s" : "%.0f %s", b, u[i]);
}

struct bar {
    double t0;
};

static void draw(void *ud, const kiln_hub_progress *p) {
    struct bar *b = ud;
    double el = kiln_now() - b->t0;
    double frac = p->bytes_total > 0 ? (double)p->bytes_done / (double)p->bytes_total : 0;
    if (frac > 1) frac = 1;
    char done[32], total[32], rate[32];
    human_bytes(done, sizeof done, (double)p->bytes_done);
    human_bytes(total, sizeof total, (double)p->bytes_total);
    human_bytes(rate, sizeof rate, el > 0 ? (double)p->bytes_done / el : 0);
    char bar[31];
    int w = (int)(frac * 30);
    for (int i = 0; i < 30; i++) bar[i] = i < w ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r[%s] %3.0f%%  %d/%d files  %s / %s  %s/s   ", bar, frac * 100, p->files_done, p->files_total,
            done, total, rate);
    fflush(stderr);
}

typedef struct globs {
    const char *v[64];
    int n;
} globs;

static void include_flag(void *globs_, const char *flag, const char *v) {
    globs *g = globs_;
    if (g->n == 64) cli_fail(2, "too many %s patterns (64 at most)", flag);
    g->v[g->n++] = v;
}

int cmd_pull(int argc, char **argv) {
    kiln_hub_opts o = {0};
    globs inc = {{0}, 0};
    const char *repo = NULL;
    int n_pos = 0;
    bool quiet = false;
    const cli_flag flags[] = {
        {"--revision", NULL, "REV", "branch, tag or commit (default main)", CLI_STR_TO(&o.revision)},
        {"--include", NULL, "GLOB", "fetch only files matching GLOB (repeatable, up to 64)", CLI_FN_TO(include_flag, &inc)},
        {"--cache-dir", NULL, "DIR", "the hub cache (default: $HF_HUB_CACHE, $HF_HOME/hub, ~/.cache/huggingface/hub)",
         CLI_STR_TO(&o.cache_dir)},
        {"--local-dir", NULL, "DIR", "plain files in DIR instead of the cache", CLI_STR_TO(&o.local_dir)},
        {"--endpoint", NULL, "URL", "hub or mirror (default: $HF_ENDPOINT, else https://huggingface.co)",
         CLI_STR_TO(&o.endpoint)},
        {"--parallel", NULL, "N", "concurrent downloads (default 4)", CLI_INT_TO(&o.parallel, 1, 64)},
        {"--quiet", "-q", NULL, "no progress and no summary on stderr", CLI_SWITCH_TO(&quiet)},
        {0},
    };
    const cli_spec spec = {.name = "pull", .usage = "ORG/NAME [flags]",
                           .about = "Downloads a model the way huggingface_hub does (same cache layout) and prints the snapshot\n"
                           "directory on stdout, so `kiln run --model \"$(kiln pull X)\"` works.",
                           .flags = flags, .notes = "environment: HF_ENDPOINT, HF_TOKEN, HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE=1\n",
                           .pos = &repo, .max_pos = 1, .n_pos = &n_pos};
    cli_parse(argc, argv, &spec);
    if (!repo) cli_fail(2, "which repo? (kiln pull ORG/NAME)");
    o.include = inc.v, o.n_include = inc.n;
    if (o.cache_dir && o.local_dir) cli_fail(2, "--cache-dir and --local-dir exclude each other");
    struct bar b = {kiln_now()};
    if (!quiet && isatty(2)) {
        o.progress = draw;
        o.progress_ud = &b;
    }
    kiln_hub_result res;
    kiln_err err;
    int rc = kiln_hub_pull(repo, &o, &res, &err);
    if (o.progress) fputc('\n', stderr);
    if (rc != 0) cli_fail(1, "%s", err.msg);
    /* Not silenced by --quiet: a file nobody could check is something the user must know about. */
    if (res.n_unverified)
        fprintf(stderr, "kiln pull: warning: %d file%s could not be verified (the hub gave no hash; size checked only): %s\n",
                res.n_unverified, res.n_unverified == 1 ? "" : "s", res.unverified);
    if (!quiet) {
        char got[32];
        human_bytes(got, sizeof got, (double)res.bytes_downloaded);
        fprintf(stderr, "%s @ %.12s: %d files, %d downloaded (%s) in %.1f s\n", repo, res.sha, res.n_files,
                res.n_downloaded, got, kiln_now() - b.t0);
    }
    printf("%s\n", res.dir);
    return 0;
}
