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
    struct { /* which fields of flags the user gave */
        bool max_new, min_new, temperature, top_k, top_p, min_p, repetition, presence, frequency, seed;
    } set;
    kiln_model *model;
    kiln_tokenizer *tok;
} gen_cli;

void gen_cli_init(gen_cli *g);
/* The flags `kiln run` and `kiln chat` share, as rows of the command's flag table: writes them to
 * rows[0..GEN_CLI_N_FLAGS) and returns how many it wrote; the command appends its own and the {0} end. */
enum { GEN_CLI_N_FLAGS = 25 };
int gen_cli_flags(gen_cli *g, cli_flag *rows);
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
