/* cli.h — shared pieces of the thin command-line layer. Each subcommand lives in cli/<name>.c and
 * exposes `int cmd_<name>(int argc, char **argv)` (argv[0] is the subcommand name); it parses flags,
 * calls the library and prints. Errors: one line on stderr via cli_fail, non-zero exit. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

/* "--name VALUE" or "--name=VALUE" at argv[*i]: sets *val, advances *i past the value, returns 1.
 * Returns 0 if argv[*i] is another flag. A missing value is a usage error (exit 2). */
int cli_opt(int argc, char **argv, int *i, const char *name, const char **val);
/* Parses "1,2,3" into a malloc'd id list; returns -1 with a message on bad input. */
int cli_parse_ids(const char *s, int32_t **ids, size_t *n, kiln_err *err);
/* Strict number parsing: the whole string must be a number in range, else exit 2 naming the flag. */
long cli_long(const char *flag, const char *s, long lo, long hi);
double cli_double(const char *flag, const char *s, double lo, double hi);
/* Prints "kiln <cmd>: message" and exits with status code. */
void cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
/* Resolves --model: a directory path as is; ORG/NAME that is not a directory through the hub cache. */
const char *cli_model_dir(const char *arg);

extern const char *cli_cmd_name;

/* Weight-format flags every weight-loading command takes: --dtype f32|f16|bf16 (float format; q8_0/q4_0
 * still accepted as the older spelling of --quant), --quant q8_0|q4_0, --quant-cache (keep the converted
 * weights on disk and map them on later loads). Returns 1 if argv[*i] was one (advancing *i). */
int cli_weight_flag(int argc, char **argv, int *i, kiln_model_opts *mo);
#define CLI_WEIGHT_USAGE "[--dtype f32|f16|bf16] [--quant q8_0|q4_0] [--quant-cache]"
/* Conversion progress bar (stderr, TTY only) and load warnings on stderr. */
void cli_weight_callbacks(kiln_model_opts *mo);
/* "q8_0", "bf16", "q4_0+bf16", or NULL when the checkpoint's own format is kept (static buffer). */
const char *cli_weight_format(const kiln_model_opts *mo);


#define CLI_COMMANDS(X)                                                                  \
    X(logits, "top logits per position for token ids (JSON lines)")                      \
    X(generate, "greedy continuation of token ids (JSON)")                               \
    X(tokenize, "encode text with the model's tokenizer (JSON lines)")                   \
    X(template, "render the chat template (JSON lines)")                                 \
    X(run, "generate text from a prompt, streamed")                                      \
    X(chat, "interactive multi-turn chat")                                               \
    X(bench, "measure latency, throughput and memory over repeated runs")               \
    X(serve, "OpenAI-compatible HTTP server with continuous batching")                   \
    X(pull, "download a model from a Hugging Face hub (or mirror) into the cache")       \
    X(list, "list cached models")                                                        \
    X(rm, "remove a cached model")                                                       \
    X(info, "describe this machine (and a model): SIMD, memory, bandwidth, roofline")

#define CLI_DECLARE(name, help) int cmd_##name(int argc, char **argv);
CLI_COMMANDS(CLI_DECLARE)
#undef CLI_DECLARE

/* `kiln bench serve ...` (cli/bench_serve.c): cli/bench.c hands argv over when argv[1] is "serve". */
int cmd_bench_serve(int argc, char **argv);

#endif
