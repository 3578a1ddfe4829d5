/* pull.c — `kiln pull ORG/NAME [--revision R] [--include GLOB]... [--cache-dir D | --local-dir D]
 * [--endpoint URL] [--parallel N] [--quiet]`: download a model the way huggingface_hub does.
 * Prints the snapshot directory on stdout (so `kiln run --model "$(kiln pull X)"` works); progress on
 * stderr when it is a terminal. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static void usage(void) {
    fprintf(stderr, "usage: kiln pull ORG/NAME [--revision R] [--include GLOB]... [--cache-dir D | --local-dir D]\n"
                    "                 [--endpoint URL] [--parallel N] [--quiet]\n"
                    "env: HF_ENDPOINT, HF_TOKEN, HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE=1\n");
}

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

int cmd_pull(int argc, char **argv) {
    kiln_hub_opts o = {0};
    const char *includes[64];
    const char *repo = NULL, *v;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        if (cli_opt(argc, argv, &i, "--revision", &v)) o.revision = v;
        else if (cli_opt(argc, argv, &i, "--include", &v)) {
            if (o.n_include == 64) cli_fail(2, "too many --include patterns (64 at most)");
            includes[o.n_include++] = v;
        } else if (cli_opt(argc, argv, &i, "--cache-dir", &v)) o.cache_dir = v;
        else if (cli_opt(argc, argv, &i, "--local-dir", &v)) o.local_dir = v;
        else if (cli_opt(argc, argv, &i, "--endpoint", &v)) o.endpoint = v;
        else if (cli_opt(argc, argv, &i, "--parallel", &v)) o.parallel = (int)cli_long("--parallel", v, 1, 64);
        else if (!strcmp(argv[i], "--quiet") || !strcmp(argv[i], "-q")) quiet = true;
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage();
            return 0;
        } else if (argv[i][0] == '-') cli_fail(2, "unknown flag %s (kiln pull --help)", argv[i]);
        else if (repo) cli_fail(2, "one repo at a time (got %s and %s)", repo, argv[i]);
        else repo = argv[i];
    }
    if (!repo) {
        usage();
        cli_fail(2, "which repo? (kiln pull ORG/NAME)");
    }
    if (o.cache_dir && o.local_dir) cli_fail(2, "--cache-dir and --local-dir exclude each other");
    o.include = includes;
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
