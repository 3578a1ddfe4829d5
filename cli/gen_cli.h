/* gen_cli.h — what `kiln run` and `kiln chat` share: generation flags, model + tokenizer, prompt
 * building through the chat template, input truncation, JSON and stats output. */
#ifndef KILN_GEN_CLI_H
#define KILN_GEN_CLI_H

#include <jansson.h>
#include <stdbool.h>

#include "cli.h"

typedef struct gen_cli {
    const char *model_dir, *system, *think; /* think: NULL, "on", "off" */
    bool raw, json, show_thinking, greedy_flag, sample_flag;
    int max_input_tokens; /* 0: no truncation */
    kiln_model_opts mopts;
    kiln_gen_params params, flags; /* flags: what the user set explicitly (applied over the model's) */
    unsigned set;                   /* bitmask of explicitly set fields in flags */
    kiln_model *model;
    kiln_tokenizer *tok;
} gen_cli;

#define GEN_CLI_HELP                                                                                   \
    "  --model DIR  --system TEXT  --max-new-tokens N  --min-new-tokens N  --do-sample | --greedy\n"   \
    "  --temperature T  --top-k K  --top-p P  --min-p P  --repetition-penalty R  --seed S  --stop STR\n" \
    "  --presence-penalty P  --frequency-penalty F  (OpenAI's, -2..2, over the generated tokens)\n"     \
    "  --think on|off  --thinking show|hide  --max-input-tokens N  --threads N\n"                                      \
    "  --dtype f32|f16|bf16  --quant q8_0|q4_0  --quant-cache\n"

void gen_cli_init(gen_cli *g);
/* Consumes one shared flag at argv[*i]; returns 0 if it is not one of them. */
int gen_cli_flag(gen_cli *g, int argc, char **argv, int *i);
/* Opens model + tokenizer and settles the parameters (generation_config.json, then flags). */
void gen_cli_open(gen_cli *g);
void gen_cli_close(gen_cli *g);
/* Prompt ids for one user text: through the chat template unless --raw / no template. Exits on error. */
void gen_cli_prompt(gen_cli *g, const char *text, size_t len, const char *system, int32_t **ids, size_t *n);
/* Renders a whole conversation (JSON array of messages) with the generation prompt; when
 * --max-input-tokens is set drops the oldest turns (the system prompt stays) until it fits. Returns -1
 * with a message (template error, too long) rather than exiting: the chat REPL goes on. */
int gen_cli_messages(gen_cli *g, json_t *messages, int32_t **ids, size_t *n, kiln_err *err);
/* Left-truncates raw ids to --max-input-tokens and checks prompt + max new tokens against the context. */
void gen_cli_fit(gen_cli *g, int32_t **ids, size_t *n);
/* Streams a step: content on stdout, thinking on stderr (dimmed on a TTY) unless --thinking hide.
 * user is the gen_cli. A kiln_gen_callback. */
int gen_cli_stream(void *user, int index, const kiln_gen_step *st);
void gen_cli_print_json(const kiln_gen_output *o);
void gen_cli_print_stats(const kiln_gen_output *o);

#endif
