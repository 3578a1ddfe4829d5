/* run.c — `kiln run`: prompt in, streamed text out, with transformers' generation controls.
 *
 *   kiln run --model DIR [--prompt TEXT | --prompt-file F | stdin] [--system TEXT] [--raw] [--ids 1,2,3]
 *            [--max-new-tokens N] [--min-new-tokens N] [--do-sample | --greedy] [--temperature T]
 *            [--top-k K] [--top-p P] [--min-p P] [--repetition-penalty R] [--presence-penalty P]
 *            [--frequency-penalty F] [--seed S] [--stop STR]...
 *            [--think on|off] [--thinking show|hide] [--max-input-tokens N] [--batch-file F.jsonl]
 *            [--json] [--threads N] [--dtype T] [--quant Q] [--quant-cache]
 *            [--json-schema FILE | --regex RE | --grammar FILE | --choice A,B] [--logit-bias ID=BIAS,...]
 *
 * Defaults come from the model's generation_config.json as transformers applies them; flags win. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "gen_cli.h"
#include "grammar_cli.h"

static void run_batch(gen_cli *g, const char *path) {
    size_t len;
    char *all = cli_read_file("--batch-file", path, &len);
    int cap = 16, n = 0;
    int32_t **ids = malloc((size_t)cap * sizeof *ids);
    size_t *nids = malloc((size_t)cap * sizeof *nids);
    int line_no = 0;
    for (char *line = strtok(all, "\n"); line; line = strtok(NULL, "\n")) {
        line_no++;
        if (strspn(line, " \t\r") == strlen(line)) continue;
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o || !json_is_object(o))
            cli_fail(1, "--batch-file %s:%d: %s", path, line_no, o ? "expected a JSON object" : je.text);
        json_t *pr = json_object_get(o, "prompt");
        if (!pr) pr = json_object_get(o, "text");
        json_t *sys = json_object_get(o, "system");
        if (!json_is_string(pr))
            cli_fail(1, "--batch-file %s:%d: needs a \"prompt\" string", path, line_no);
        if (n == cap) {
            cap *= 2;
            ids = realloc(ids, (size_t)cap * sizeof *ids);
            nids = realloc(nids, (size_t)cap * sizeof *nids);
            if (!ids || !nids) cli_fail(1, "out of memory");
        }
        gen_cli_prompt(g, json_string_value(pr), json_string_length(pr),
                       json_is_string(sys) ? json_string_value(sys) : g->system, &ids[n], &nids[n]);
        n++;
        json_decref(o);
    }
    free(all);
    if (n == 0) cli_fail(1, "--batch-file %s: no prompts", path);
    kiln_gen_output *out = calloc((size_t)n, sizeof *out);
    kiln_err err = {0};
    if (!out || kiln_generate(g->model, g->tok, &g->params, n, (const int32_t *const *)ids, nids, NULL, NULL,
                              out, &err))
        cli_fail(1, "%s", err.msg);
    for (int i = 0; i < n; i++) {
        gen_cli_print_json(&out[i]);
        kiln_gen_output_free(&out[i]);
        free(ids[i]);
    }
    free(out);
    free(ids);
    free(nids);
}

int cmd_run(int argc, char **argv) {
    gen_cli g;
    const char *prompt = NULL, *prompt_file = NULL, *batch = NULL, *ids_arg = NULL;
    grammar_cli gc = {0};
    cli_dist dist = CLI_DIST_DEFAULT;
    gen_cli_init(&g);
    cli_flag flags[GEN_CLI_N_FLAGS + GRAMMAR_CLI_N_FLAGS + 9];
    int nf = gen_cli_flags(&g, flags);
    nf += grammar_cli_flags(&gc, flags + nf);
    const cli_flag own[] = {
        {"--prompt", "-p", "TEXT", "the prompt (else --prompt-file, --ids, --batch-file or stdin)", CLI_STR_TO(&prompt)},
        {"--prompt-file", NULL, "FILE", "read the prompt from FILE", CLI_STR_TO(&prompt_file)},
        {"--ids", NULL, "1,2,3", "prompt token ids as they are (no template)", CLI_STR_TO(&ids_arg)},
        {"--batch-file", NULL, "F.jsonl", "one {\"prompt\":...,\"system\":...} per line, generated together; JSON out",
         CLI_STR_TO(&batch)},
        {"--raw", NULL, NULL, "no chat template: continue the text as it is", CLI_SWITCH_TO(&g.raw)},
        {"--json", NULL, NULL, "one JSON object (text, thinking, ids, finish_reason, stats) instead of a stream",
         CLI_SWITCH_TO(&g.json)},
        CLI_DIST_FLAGS(&dist),
        {0},
    };
    memcpy(flags + nf, own, sizeof own);
    const cli_spec spec = {.name = "run", .usage = "--model DIR [--prompt TEXT | --prompt-file F | --ids 1,2,3 | --batch-file F.jsonl | stdin] [flags]",
                           .about = "Generates text from a prompt, streamed to stdout (thinking on stderr). Defaults come from\n"
                           "the model's generation_config.json as transformers applies them; flags win.",
                           .flags = flags};
    cli_parse(argc, argv, &spec);
    if (!!prompt + !!prompt_file + !!batch + !!ids_arg > 1)
        cli_fail(2, "give one of --prompt, --prompt-file, --batch-file, --ids");
    if (dist.tp * dist.pp > 1 && !prompt && !prompt_file && !batch && !ids_arg)
        cli_fail(2, "--tp / --pp: give the prompt by flag (mpirun passes stdin to rank 0 only)");
    cli_dist_start(&dist, &g.mopts);
    gen_cli_open(&g);
    grammar_cli_apply(&gc, g.tok, &g.params);
    if (batch) {
        run_batch(&g, batch);
        grammar_cli_free(&gc);
        gen_cli_close(&g);
        return 0;
    }
    int32_t *ids = NULL;
    size_t n_ids = 0;
    kiln_err err = {0};
    if (ids_arg) {
        if (cli_parse_ids(ids_arg, &ids, &n_ids, &err)) cli_fail(2, "--ids: %s", err.msg);
        gen_cli_fit(&g, &ids, &n_ids);
    } else {
        char *text;
        size_t len;
        if (prompt) text = strdup(prompt), len = strlen(prompt);
        else if (prompt_file) text = cli_read_file("--prompt-file", prompt_file, &len);
        else {
            if (isatty(STDIN_FILENO)) fprintf(stderr, "(reading the prompt from stdin; end with Ctrl-D)\n");
            text = cli_read_stream(stdin, &len);
        }
        gen_cli_prompt(&g, text, len, g.system, &ids, &n_ids);
        free(text);
    }
    kiln_gen_output out;
    const int32_t *pp = ids;
    const bool stream = !g.json && cli_dist_rank0(); /* other ranks print nothing */
    if (kiln_generate(g.model, g.tok, &g.params, 1, &pp, &n_ids, stream ? gen_cli_stream : NULL, &g, &out, &err))
        cli_fail(1, "%s", err.msg);
    if (g.json) gen_cli_print_json(&out);
    else if (stream) {
        fputc('\n', stdout);
        fflush(stdout);
        gen_cli_print_stats(&out);
        cli_dist_report(out.stats.gen_tokens); /* one forward step per generated token */
    }
    kiln_gen_output_free(&out);
    free(ids);
    grammar_cli_free(&gc);
    gen_cli_close(&g);
    return 0;
}
