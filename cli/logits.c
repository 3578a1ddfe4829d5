/* logits.c — `kiln logits --model DIR --ids 1,2,3 [--top K] [--all-logits FILE]`
 *
 * One JSON line per prompt position: {"pos":0,"top":[[id,logit],...]} sorted by logit, descending.
 * --all-logits writes the last position's full logits as raw little-endian float32. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const float *sort_base;
static int by_logit_desc(const void *a, const void *b) {
    float x = sort_base[*(const int *)a], y = sort_base[*(const int *)b];
    if (x != y) return x < y ? 1 : -1;
    return *(const int *)a - *(const int *)b; /* ties: lower id first, as torch.topk tends to */
}

/* Writes via a temporary file renamed into place: readers never see half a file. */
static void write_logits_file(const char *path, const float *v, size_t n) {
    size_t len = strlen(path);
    char *tmp = malloc(len + 16);
    if (!tmp) cli_fail(1, "out of memory");
    snprintf(tmp, len + 16, "%s.tmp%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) cli_fail(1, "%s: cannot write", path);
    int ok = fwrite(v, sizeof *v, n, f) == n; /* x86-64 is little-endian, as the format wants */
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        cli_fail(1, "%s: write failed", path);
    }
    free(tmp);
}

int cmd_logits(int argc, char **argv) {
    cli_model_args ma = {0};
    kiln_model_opts_default(&ma.opts);
    const char *ids_s = NULL, *all_path = NULL, *v;
    long top = 20;
    for (int i = 1; i < argc; i++) {
        if (cli_model_flag(argc, argv, &i, &ma)) continue;
        if (cli_opt(argc, argv, &i, "--ids", &v)) ids_s = v;
        else if (cli_opt(argc, argv, &i, "--top", &v)) top = cli_long("--top", v, 1, 1 << 30);
        else if (cli_opt(argc, argv, &i, "--all-logits", &v)) all_path = v;
        else if (!strcmp(argv[i], "--help")) {
            printf("usage: kiln logits --model DIR --ids 1,2,3 [--top K] [--all-logits FILE] [--threads N] "
                   "[--dtype f32|f16|bf16|q8_0|q4_0]\n");
            return 0;
        } else cli_fail(2, "unknown flag '%s'", argv[i]);
    }
    if (!ids_s) cli_fail(2, "--ids 1,2,3 is required");
    kiln_err err;
    int32_t *ids;
    size_t n;
    if (cli_parse_ids(ids_s, &ids, &n, &err)) cli_fail(2, "%s", err.msg);
    kiln_model *m = cli_open_model(&ma);
    const kiln_config *cfg = kiln_model_config(m);
    int V = cfg->vocab_size;
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.n_ctx = (int)n < cfg->max_position_embeddings ? (int)n : cfg->max_position_embeddings;
    if ((int)n > cfg->max_position_embeddings)
        cli_fail(1, "%zu ids exceed the model's context of %d", n, cfg->max_position_embeddings);
    kiln_ctx *c = kiln_ctx_new(m, &co, &err);
    float *logits = malloc(n * (size_t)V * sizeof *logits);
    int *order = malloc((size_t)V * sizeof *order);
    if (!c || !logits || !order) cli_fail(1, "%s", c ? "out of memory" : err.msg);
    int seq = kiln_seq_new(c, &err), nt = (int)n;
    kiln_batch b = {1, &seq, &nt, ids, true, logits};
    if (kiln_forward(c, &b, &err)) cli_fail(1, "%s", err.msg);
    /* The file first: if it cannot be written, nothing has gone to stdout either. */
    if (all_path) write_logits_file(all_path, logits + (n - 1) * (size_t)V, (size_t)V);
    if (top > V) top = V;
    for (size_t p = 0; p < n; p++) {
        const float *row = logits + p * (size_t)V;
        for (int k = 0; k < V; k++) order[k] = k;
        sort_base = row;
        qsort(order, (size_t)V, sizeof *order, by_logit_desc);
        printf("{\"pos\":%zu,\"top\":[", p);
        for (long k = 0; k < top; k++) printf("%s[%d,%.9g]", k ? "," : "", order[k], row[order[k]]);
        printf("]}\n");
    }
    free(order);
    free(logits);
    free(ids);
    kiln_ctx_free(c);
    kiln_model_free(m);
    return fflush(stdout) == 0 ? 0 : 1;
}
