/* logits.c — `kiln logits --model DIR --ids 1,2,3 [--top K] [--all-logits FILE] [--threads N] [--dtype D]`:
 * one JSON line per prompt position, {"pos":P,"top":[[id,logit],...]} sorted by logit descending. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

/* Indices of the k largest of v[0..n) in descending order (ties: lower id first). */
static void top_k(const float *v, int n, int k, int *out) {
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        if (cnt == k && !(v[i] > v[out[k - 1]])) continue;
        int j = cnt < k ? cnt++ : k - 1;
        while (j > 0 && v[i] > v[out[j - 1]]) {
            out[j] = out[j - 1];
            j--;
        }
        out[j] = i;
    }
}

/* Writes the floats to path via a temp file + rename, so readers never see a half-written file. */
static void write_atomic(const char *path, const float *v, size_t n) {
    size_t len = strlen(path);
    char *tmp = malloc(len + 32);
    if (!tmp) cli_fail(1, "out of memory");
    snprintf(tmp, len + 32, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) cli_fail(1, "--all-logits %s: cannot create %s", path, tmp);
    int ok = fwrite(v, sizeof *v, n, f) == n; /* x86-64 and aarch64 are little-endian */
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        cli_fail(1, "--all-logits %s: write failed", path);
    }
    free(tmp);
}

int cmd_logits(int argc, char **argv) {
    const char *model = NULL, *ids_s = NULL, *top_s = NULL, *all = NULL, *threads_s = NULL, *dtype_s = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_opt(argc, argv, &i, "--model", &model) || cli_opt(argc, argv, &i, "--ids", &ids_s) ||
            cli_opt(argc, argv, &i, "--top", &top_s) || cli_opt(argc, argv, &i, "--all-logits", &all) ||
            cli_opt(argc, argv, &i, "--threads", &threads_s) || cli_opt(argc, argv, &i, "--dtype", &dtype_s))
            continue;
        cli_fail(2, "unknown argument '%s' (usage: kiln logits --model DIR --ids 1,2,3 [--top K] "
                    "[--all-logits FILE] [--threads N] [--dtype f32|f16|bf16])", argv[i]);
    }
    if (!model || !ids_s) cli_fail(2, "--model and --ids are required");
    int k = top_s ? (int)cli_long("--top", top_s, 1, 1 << 20) : 20;
    kiln_err err;
    int32_t *ids;
    size_t n;
    if (cli_parse_ids(ids_s, &ids, &n, &err)) cli_fail(2, "--ids: %s", err.msg);
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    if (threads_s) mo.threads = (int)cli_long("--threads", threads_s, 1, 1024);
    if (dtype_s) {
        kiln_dtype dt;
        if (kiln_dtype_parse(dtype_s, &dt)) cli_fail(2, "--dtype: unknown format '%s'", dtype_s);
        mo.dtype = dt;
    }
    kiln_model *m = kiln_model_open(cli_model_dir(model), &mo, &err);
    if (!m) cli_fail(1, "%s", err.msg);
    const kiln_config *cfg = kiln_model_config(m);
    int V = cfg->vocab_size;
    if (k > V) k = V;
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    /* Only as many KV blocks as the prompt needs: the full default context would waste memory. */
    co.n_ctx = (int)n <= cfg->max_position_embeddings ? (int)n : cfg->max_position_embeddings;
    kiln_ctx *c = kiln_ctx_new(m, &co, &err);
    if (!c) cli_fail(1, "%s", err.msg);
    float *logits = malloc(n * (size_t)V * sizeof(float));
    int *top = malloc((size_t)k * sizeof(int));
    if (!logits || !top) cli_fail(1, "out of memory");
    int seq = kiln_seq_new(c, &err), nt = (int)n;
    kiln_batch b = {1, &seq, &nt, ids, true, logits};
    if (kiln_forward(c, &b, &err)) cli_fail(1, "%s", err.msg);
    /* The file first: when it cannot be written, nothing has reached stdout either. */
    if (all) write_atomic(all, logits + (n - 1) * (size_t)V, (size_t)V);
    for (size_t p = 0; p < n; p++) {
        const float *row = logits + p * (size_t)V;
        top_k(row, V, k, top);
        printf("{\"pos\":%zu,\"top\":[", p);
        for (int i = 0; i < k; i++) printf("%s[%d,%.9g]", i ? "," : "", top[i], row[top[i]]);
        printf("]}\n");
    }
    if (fflush(stdout) != 0) cli_fail(1, "write error on stdout");
    free(top);
    free(logits);
    free(ids);
    kiln_ctx_free(c);
    kiln_model_free(m);
    return 0;
}
