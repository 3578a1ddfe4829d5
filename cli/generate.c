/* generate.c — `kiln generate --model DIR --ids 1,2,3 --max-new-tokens N [--stop-at-eos]`
 *
 * Greedy decoding over token ids; prints {"ids":[...]} (generated ids only). Stops early at one of the
 * model's EOS ids only with --stop-at-eos (the EOS id is then included, as transformers returns it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static int32_t argmax(const float *v, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

int cmd_generate(int argc, char **argv) {
    cli_model_args ma = {0};
    kiln_model_opts_default(&ma.opts);
    const char *ids_s = NULL, *v;
    long max_new = -1;
    bool stop_at_eos = false;
    for (int i = 1; i < argc; i++) {
        if (cli_model_flag(argc, argv, &i, &ma)) continue;
        if (cli_opt(argc, argv, &i, "--ids", &v)) ids_s = v;
        else if (cli_opt(argc, argv, &i, "--max-new-tokens", &v)) max_new = cli_long("--max-new-tokens", v, 0, 1 << 24);
        else if (!strcmp(argv[i], "--stop-at-eos")) stop_at_eos = true;
        else if (!strcmp(argv[i], "--help")) {
            printf("usage: kiln generate --model DIR --ids 1,2,3 --max-new-tokens N [--stop-at-eos] [--threads N] "
                   "[--dtype FMT]\n");
            return 0;
        } else cli_fail(2, "unknown flag '%s'", argv[i]);
    }
    if (!ids_s) cli_fail(2, "--ids 1,2,3 is required");
    if (max_new < 0) cli_fail(2, "--max-new-tokens N is required");
    kiln_err err;
    int32_t *ids;
    size_t n;
    if (cli_parse_ids(ids_s, &ids, &n, &err)) cli_fail(2, "%s", err.msg);
    kiln_model *m = cli_open_model(&ma);
    const kiln_config *cfg = kiln_model_config(m);
    if ((long)n + max_new > cfg->max_position_embeddings)
        cli_fail(1, "%zu prompt ids + %ld new tokens exceed the model's context of %d", n, max_new,
                 cfg->max_position_embeddings);
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.n_ctx = (int)(n + (size_t)max_new);
    kiln_ctx *c = kiln_ctx_new(m, &co, &err);
    float *logits = malloc((size_t)cfg->vocab_size * sizeof *logits);
    int32_t *out = malloc(((size_t)max_new + 1) * sizeof *out);
    if (!c || !logits || !out) cli_fail(1, "%s", c ? "out of memory" : err.msg);
    int seq = kiln_seq_new(c, &err), nt = (int)n;
    kiln_batch b = {1, &seq, &nt, ids, false, logits};
    long produced = 0;
    for (; produced < max_new; produced++) {
        if (kiln_forward(c, &b, &err)) cli_fail(1, "%s", err.msg);
        int32_t next = argmax(logits, cfg->vocab_size);
        out[produced] = next;
        bool eos = false;
        for (int e = 0; e < cfg->n_eos_token_ids; e++) eos |= next == cfg->eos_token_ids[e];
        if (stop_at_eos && eos) {
            produced++;
            break;
        }
        nt = 1;
        b.tokens = &out[produced];
    }
    printf("{\"ids\":[");
    for (long i = 0; i < produced; i++) printf("%s%d", i ? "," : "", out[i]);
    printf("]}\n");
    free(out);
    free(logits);
    free(ids);
    kiln_ctx_free(c);
    kiln_model_free(m);
    return fflush(stdout) == 0 ? 0 : 1;
}
