/* logits.c — `kiln logits --model DIR --ids 1,2,3 [--top K] [--all-logits FILE] [--stats] [weight flags]`:
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

/* --all-logits goes to a temp file renamed into place at the end, so readers never see a half-written
 * file; it is created before any output so that a bad path fails before anything is printed. */
static FILE *open_temp(const char *path, char **tmp) {
    size_t len = strlen(path);
    *tmp = malloc(len + 32);
    if (!*tmp) cli_fail(1, "out of memory");
    snprintf(*tmp, len + 32, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(*tmp, "wb");
    if (!f) cli_fail(1, "--all-logits %s: cannot create %s", path, *tmp);
    return f;
}

static void write_atomic(FILE *f, char *tmp, const char *path, const float *v, size_t n) {
    int ok = fwrite(v, sizeof *v, n, f) == n; /* x86-64 and aarch64 are little-endian */
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        cli_fail(1, "--all-logits %s: write failed", path);
    }
    free(tmp);
}

int cmd_logits(int argc, char **argv) {
    const char *model = NULL, *ids_s = NULL, *all = NULL;
    int k = 20;
    bool stats = false;
    kiln_dtype kv_type = KILN_KV_TYPE_DEFAULT;
    cli_dist dist = CLI_DIST_DEFAULT;
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    cli_weight_callbacks(&mo);
    const cli_flag flags[] = {
        CLI_MODEL_FLAG(&model),
        {"--ids", NULL, "1,2,3", "token ids, one output line per position", CLI_STR_TO(&ids_s)},
        {"--top", NULL, "K", "logits per position, largest first (default 20)", CLI_INT_TO(&k, 1, 1 << 20)},
        {"--all-logits", NULL, "FILE", "also write the last position's full logits (f32, little-endian)", CLI_STR_TO(&all)},
        {"--stats", NULL, NULL, "memory figures as one JSON line on stderr", CLI_SWITCH_TO(&stats)},
        CLI_THREADS_FLAG(&mo.threads, 1),
        CLI_WEIGHT_FLAGS(&mo),
        CLI_KV_TYPE_FLAG(&kv_type),
        CLI_DIST_FLAGS(&dist),
        {0},
    };
    const cli_spec spec = {.name = "logits", .usage = "--model DIR --ids 1,2,3 [flags]",
                           .about = "Top logits at every prompt position, one JSON line each: {\"pos\":P,\"top\":[[id,logit],...]}.",
                           .flags = flags};
    cli_parse(argc, argv, &spec);
    if (!model || !ids_s) cli_fail(2, "--model and --ids are required");
    cli_dist_start(&dist, &mo);
    if (!cli_dist_rank0()) all = NULL; /* rank 0 alone has the logits */
    kiln_err err;
    int32_t *ids;
    size_t n;
    if (cli_parse_ids(ids_s, &ids, &n, &err)) cli_fail(2, "--ids: %s", err.msg);
    char *all_tmp = NULL;
    FILE *all_f = all ? open_temp(all, &all_tmp) : NULL;
    kiln_model *m = kiln_model_open(cli_model_dir(model), &mo, &err);
    if (!m) {
        if (all_f) fclose(all_f), unlink(all_tmp);
        cli_fail(1, "%s", err.msg);
    }
    const kiln_config *cfg = kiln_model_config(m);
    int V = cfg->vocab_size;
    if (k > V) k = V;
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.kv_type = kv_type;
    /* Only as many KV blocks as the prompt needs: the full default context would waste memory. */
    co.n_ctx = (int)n <= cfg->max_position_embeddings ? (int)n : cfg->max_position_embeddings;
    kiln_ctx *c = kiln_ctx_new(m, &co, &err);
    if (!c) {
        if (all_f) fclose(all_f), unlink(all_tmp);
        cli_fail(1, "%s", err.msg);
    }
    /* The prompt goes through in chunks of CHUNK positions: the same numbers as one prefill (the KV
     * cache makes them equivalent) with logits memory bounded by CHUNK x vocab instead of n x vocab.
     * Everything that could fail half-way is checked first, so bad input prints nothing on stdout. */
    enum { CHUNK = 32 };
    for (size_t p = 0; p < n; p++)
        if (ids[p] >= V) {
            if (all_f) fclose(all_f), unlink(all_tmp);
            cli_fail(1, "token id %d at position %zu is outside the vocabulary [0, %d)", ids[p], p, V);
        }
    if (n > (size_t)co.n_ctx) {
        if (all_f) fclose(all_f), unlink(all_tmp);
        cli_fail(1, "%zu ids exceed the model's %d positions", n, cfg->max_position_embeddings);
    }
    float *logits = malloc((n < CHUNK ? n : CHUNK) * (size_t)V * sizeof(float));
    int *top = malloc((size_t)k * sizeof(int));
    if (!logits || !top) cli_fail(1, "out of memory");
    int seq = kiln_seq_new(c, &err), nt = 0;
    for (size_t p0 = 0; p0 < n; p0 += (size_t)nt) {
        nt = n - p0 < CHUNK ? (int)(n - p0) : CHUNK;
        kiln_batch b = {1, &seq, &nt, ids + p0, true, logits};
        if (kiln_forward(c, &b, &err)) {
            if (all_f) fclose(all_f), unlink(all_tmp);
            cli_fail(1, "%s", err.msg);
        }
        for (int r = 0; r < nt; r++) {
            const float *row = logits + (size_t)r * V;
            top_k(row, V, k, top);
            printf("{\"pos\":%zu,\"top\":[", p0 + (size_t)r);
            for (int i = 0; i < k; i++) printf("%s[%d,%.9g]", i ? "," : "", top[i], row[top[i]]);
            printf("]}\n");
        }
    }
    if (all) write_atomic(all_f, all_tmp, all, logits + (size_t)(nt - 1) * V, (size_t)V);
    if (fflush(stdout) != 0) cli_fail(1, "write error on stdout");
    /* --stats: memory figures as one JSON line on stderr (stdout stays the contract's JSON lines). */
    if (stats)
        fprintf(stderr, "{\"peak_rss_bytes\":%zu,\"weight_bytes\":%zu,\"kv_bytes\":%zu,\"params\":%zu%s}\n",
                kiln_peak_rss_bytes(), kiln_model_weight_bytes(m), kiln_ctx_kv_bytes(c), kiln_model_param_count(m),
                cli_dist_stats());
    free(top);
    free(logits);
    free(ids);
    kiln_ctx_free(c);
    kiln_model_free(m);
    return 0;
}
