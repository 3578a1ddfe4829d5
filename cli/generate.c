/* generate.c — `kiln generate --model DIR --ids 1,2,3 --max-new-tokens N [--stop-at-eos]`: greedy
 * continuation of token ids through the library's generation loop (kiln_generate with greedy parameters),
 * printed as {"ids":[...]} (generated ids only). No tokenizer is needed: ids in, ids out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cmd_generate(int argc, char **argv) {
    const char *model = NULL, *ids_s = NULL;
    int max_new = -1;
    bool stop_at_eos = false;
    kiln_dtype kv_type = KILN_KV_TYPE_DEFAULT;
    cli_dist dist = CLI_DIST_DEFAULT;
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    cli_weight_callbacks(&mo);
    const cli_flag flags[] = {
        CLI_MODEL_FLAG(&model),
        {"--ids", NULL, "1,2,3", "prompt token ids", CLI_STR_TO(&ids_s)},
        {"--max-new-tokens", "-n", "N", "tokens to generate (required)", CLI_INT_TO(&max_new, 0, 1 << 24)},
        {"--stop-at-eos", NULL, NULL, "stop after one of the model's EOS ids (config.json)", CLI_SWITCH_TO(&stop_at_eos)},
        CLI_THREADS_FLAG(&mo.threads, 1),
        CLI_WEIGHT_FLAGS(&mo),
        CLI_KV_TYPE_FLAG(&kv_type),
        CLI_DIST_FLAGS(&dist),
        {0},
    };
    const cli_spec spec = {.name = "generate", .usage = "--model DIR --ids 1,2,3 --max-new-tokens N [flags]",
                           .about = "Greedy continuation of token ids, printed as {\"ids\":[...]} (the generated ids only).",
                           .flags = flags};
    cli_parse(argc, argv, &spec);
    if (!model || !ids_s || max_new < 0) cli_fail(2, "--model, --ids and --max-new-tokens are required");
    cli_dist_start(&dist, &mo);
    kiln_err err;
    int32_t *ids;
    size_t n;
    if (cli_parse_ids(ids_s, &ids, &n, &err)) cli_fail(2, "--ids: %s", err.msg);
    kiln_model *m = kiln_model_open(cli_model_dir(model), &mo, &err);
    if (!m) cli_fail(1, "%s", err.msg);
    const kiln_config *cfg = kiln_model_config(m);
    kiln_gen_params p;
    kiln_gen_params_default(&p); /* greedy, no stop strings, no EOS ids */
    p.max_new_tokens = max_new;
    p.kv_type = kv_type;
    p.think_end_id = -2; /* ids only: no thinking split */
    if (stop_at_eos)
        for (int i = 0; i < cfg->n_eos_token_ids; i++) kiln_gen_params_add_eos(&p, cfg->eos_token_ids[i]);
    kiln_gen_output out = {0};
    const int32_t *prompt = ids;
    /* max_new 0 still loads and checks the model, and generates nothing */
    if (max_new > 0 && kiln_generate(m, NULL, &p, 1, &prompt, &n, NULL, NULL, &out, &err)) cli_fail(1, "%s", err.msg);
    printf("{\"ids\":[");
    for (size_t i = 0; i < out.n_ids; i++) printf("%s%d", i ? "," : "", out.ids[i]);
    printf("]}\n");
    if (fflush(stdout) != 0) cli_fail(1, "write error on stdout");
    kiln_gen_output_free(&out);
    free(ids);
    kiln_model_free(m);
    return 0;
}
