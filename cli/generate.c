/* generate.c — `kiln generate --model DIR --ids 1,2,3 --max-new-tokens N [--stop-at-eos] [--threads N]
 * [--dtype D] [--quant Q] [--quant-cache]`: greedy continuation, printed as {"ids":[...]} (generated ids only). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *ids_s = NULL, *max_s = NULL, *threads_s = NULL;
    int stop_at_eos = 0;
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    cli_weight_callbacks(&mo);
    for (int i = 1; i < argc; i++) {
        if (cli_weight_flag(argc, argv, &i, &mo) || cli_opt(argc, argv, &i, "--model", &model) || cli_opt(argc, argv, &i, "--ids", &ids_s) ||
            cli_opt(argc, argv, &i, "--max-new-tokens", &max_s) || cli_opt(argc, argv, &i, "--threads", &threads_s))
            continue;
        if (strcmp(argv[i], "--stop-at-eos") == 0) {
            stop_at_eos = 1;
            continue;
        }
        cli_fail(2, "unknown argument '%s' (usage: kiln generate --model DIR --ids 1,2,3 --max-new-tokens N "
                    "[--stop-at-eos] [--threads N] " CLI_WEIGHT_USAGE ")", argv[i]);
    }
    if (!model || !ids_s || !max_s) cli_fail(2, "--model, --ids and --max-new-tokens are required");
    int max_new = (int)cli_long("--max-new-tokens", max_s, 0, 1 << 24);
    kiln_err err;
    int32_t *ids;
    size_t n;
    if (cli_parse_ids(ids_s, &ids, &n, &err)) cli_fail(2, "--ids: %s", err.msg);
    if (threads_s) mo.threads = (int)cli_long("--threads", threads_s, 1, 1024);
    kiln_model *m = kiln_model_open(cli_model_dir(model), &mo, &err);
    if (!m) cli_fail(1, "%s", err.msg);
    const kiln_config *cfg = kiln_model_config(m);
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    long want = (long)n + max_new;
    if (want > cfg->max_position_embeddings)
        cli_fail(1, "%zu prompt + %d new tokens exceed the model's %d positions", n, max_new,
                 cfg->max_position_embeddings);
    co.n_ctx = (int)want;
    kiln_ctx *c = kiln_ctx_new(m, &co, &err);
    if (!c) cli_fail(1, "%s", err.msg);
    float *logits = malloc((size_t)cfg->vocab_size * sizeof(float));
    int32_t *out = malloc(((size_t)max_new + 1) * sizeof *out);
    if (!logits || !out) cli_fail(1, "out of memory");
    int seq = kiln_seq_new(c, &err), nt = (int)n, n_out = 0;
    kiln_batch b = {1, &seq, &nt, ids, false, logits};
    /* Prefill the prompt, then one token per step; the last token is never fed back. */
    while (n_out < max_new) {
        if (kiln_forward(c, &b, &err)) cli_fail(1, "%s", err.msg);
        int32_t next = argmax(logits, cfg->vocab_size);
        out[n_out++] = next;
        int eos = 0;
        for (int i = 0; i < cfg->n_eos_token_ids; i++) eos |= next == cfg->eos_token_ids[i];
        if (stop_at_eos && eos) break;
        nt = 1;
        b.tokens = &out[n_out - 1];
    }
    printf("{\"ids\":[");
    for (int i = 0; i < n_out; i++) printf("%s%d", i ? "," : "", out[i]);
    printf("]}\n");
    if (fflush(stdout) != 0) cli_fail(1, "write error on stdout");
    free(out);
    free(logits);
    free(ids);
    kiln_ctx_free(c);
    kiln_model_free(m);
    return 0;
}
