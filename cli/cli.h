/* cli.h — shared pieces of the thin command-line layer. Each subcommand lives in cli/<name>.c and
 * exposes `int cmd_<name>(int argc, char **argv)` (argv[0] is the subcommand name); it parses its flags
 * with its one flag table (cli_parse below), calls the library (kiln.h only) and prints. Errors: one line
 * on stderr via cli_fail, non-zero exit. */
#ifndef KILN_CLI_H
#define KILN_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kiln.h"

/* ---- flags: ONE table per command, read by both the parser and the help ------------------------------
 * Each command lists its flags once, as cli_flag rows (name, llama-cli alias, value placeholder, help,
 * where the value goes); cli_parse walks argv with that table and `--help` prints it, so the help always
 * lists exactly the flags the parser accepts. "--name VALUE" and "--name=VALUE" both work. */
typedef enum {
    CLI_SWITCH, /* no value: *(bool *)dst = true */
    CLI_STR,    /* *(const char **)dst = value (the last one given wins) */
    CLI_INT,    /* *(int *)dst, in [lo, hi] */
    CLI_U64,    /* *(uint64_t *)dst, in [lo, hi] */
    CLI_FLOAT,  /* *(float *)dst, in [lo, hi] */
    CLI_DOUBLE, /* *(double *)dst, in [lo, hi] */
    CLI_FN,     /* fn(dst, flag, value) for each occurrence: lists, repeatable and enum flags */
} cli_kind;

typedef struct cli_flag {
    const char *name;  /* "--model" */
    const char *alias; /* "-m" (llama-cli's spelling), or NULL */
    const char *arg;   /* value placeholder in the help ("DIR"); NULL for a switch */
    const char *help;
    cli_kind kind;
    void *dst;
    double lo, hi;
    void (*fn)(void *dst, const char *flag, const char *value);
    bool *seen;          /* optional: set to true when the flag is given */
    bool optional_value; /* the value may be left out ("--json" alone, or before another flag): "-" */
} cli_flag;

/* Row helpers: {"--name", "-a", "ARG", "help", CLI_INT_TO(&x, 1, 100)} */
#define CLI_SWITCH_TO(p) .kind = CLI_SWITCH, .dst = (bool *)(p)
#define CLI_STR_TO(p) .kind = CLI_STR, .dst = (const char **)(p)
#define CLI_INT_TO(p, l, h) .kind = CLI_INT, .dst = (int *)(p), .lo = (l), .hi = (h)
#define CLI_U64_TO(p, l, h) .kind = CLI_U64, .dst = (uint64_t *)(p), .lo = (l), .hi = (h)
#define CLI_FLOAT_TO(p, l, h) .kind = CLI_FLOAT, .dst = (float *)(p), .lo = (l), .hi = (h)
#define CLI_DOUBLE_TO(p, l, h) .kind = CLI_DOUBLE, .dst = (double *)(p), .lo = (l), .hi = (h)
#define CLI_FN_TO(f, p) .kind = CLI_FN, .fn = (f), .dst = (p)

typedef struct cli_spec {
    const char *name;        /* "generate", "bench serve" */
    const char *usage;       /* after "usage: kiln NAME ": "--model DIR --ids 1,2,3 --max-new-tokens N" */
    const char *about;       /* what the command does (printed under the usage line; may be NULL) */
    const cli_flag *flags;   /* terminated by a row with name NULL */
    const char *subcommands; /* "  serve    load-test a running server\n..." (help section), or NULL */
    const char *notes;       /* printed after the flags (environment, REPL commands...), or NULL */
    /* Positional arguments (not starting with '-'): up to max_pos of them into pos[], *n_pos counted. */
    const char **pos;
    int max_pos;
    int *n_pos;
} cli_spec;

/* Parses argv[1..argc) (argv[0] is the command) into the table's destinations. -h / --help prints the
 * help on stdout and exits 0; an unknown flag, a missing or bad value, or a stray argument is one line on
 * stderr and exit 2. */
void cli_parse(int argc, char **argv, const cli_spec *spec);
void cli_help(FILE *f, const cli_spec *spec);
/* Weight-format flags every weight-loading command takes, as three table rows over a kiln_model_opts:
 * --dtype f32|f16|bf16 (float format; q8_0/q4_0 still accepted as the older spelling of --quant),
 * --quant q8_0|q4_0|q4_k_m|q5_k_m|q6_k, --quant-cache (keep the converted weights on disk and map them on later loads),
 * --exact (kiln_model_opts.exact). */
void cli_dtype_flag(void *mo, const char *flag, const char *v);
void cli_quant_flag(void *mo, const char *flag, const char *v);
void cli_quant_cache_flag(void *mo, const char *flag, const char *v);
#define CLI_WEIGHT_FLAGS(mo)                                                                                  \
    {"--dtype", NULL, "f32|f16|bf16", "convert the weights to this float format at load", CLI_FN_TO(cli_dtype_flag, mo)}, \
    {"--quant", NULL, "FMT", "block-quantise the weights at load: q8_0|q4_0|q4_k_m|q5_k_m|q6_k (llama-quantize's)",                    \
     CLI_FN_TO(cli_quant_flag, mo)},                                                                          \
    {"--quant-cache", NULL, NULL, "keep the converted weights on disk and map them on later loads",           \
     CLI_FN_TO(cli_quant_cache_flag, mo)},                                                                    \
    {"--exact", NULL, NULL,                                                                                   \
     "f16/bf16 prefill in exact f32 arithmetic (default: bf16 dot products, activations rounded to bf16, "   \
     "where the CPU has AVX-512 BF16)", CLI_SWITCH_TO(&(mo)->exact)}
/* --kv-type f32|f16|bf16|q8_0 (the KV cache format; kiln_ctx_opts.kv_type) into a kiln_dtype, for every
 * command that makes a context. */
void cli_kv_type_flag(void *kv_type, const char *flag, const char *v);
#define CLI_KV_TYPE_FLAG(p)                                                                                   \
    {"--kv-type", NULL, "f32|f16|bf16|q8_0",                                                                  \
     "KV cache format (default " KILN_KV_TYPE_DEFAULT_NAME "; q8_0 needs head_dim % 32 == 0)",                \
     CLI_FN_TO(cli_kv_type_flag, p)}
/* The model directory flag (resolved with cli_model_dir) and the worker-thread flag, as most commands
 * spell them. */
#define CLI_MODEL_FLAG(p) {"--model", "-m", "DIR", "model directory, or ORG/NAME from the hub cache", CLI_STR_TO(p)}
#define CLI_THREADS_FLAG(p, lo) {"--threads", "-t", "N", "worker threads (default: physical cores)", CLI_INT_TO(p, lo, 1024)}

/* --tp N / --pp N (cli/dist_cli.c, docs/distributed.md): rows for a command's flag table; then, after
 * cli_parse, cli_dist_start starts MPI when tp x pp > 1 (one-line error when kiln was built without it or
 * the job has another size) and sets mo->dist. Ranks other than 0 run the same command on the same input
 * with stdout silenced. */
typedef struct cli_dist {
    int tp, pp;
    int micro; /* --micro-batches (serve, bench); 0: the default, 1 (off) */
} cli_dist;
#define CLI_DIST_DEFAULT {1, 1, 0}
#define CLI_DIST_FLAGS(p)                                                                                     \
    {"--tp", NULL, "N", "tensor parallel: split every layer over N MPI ranks (mpirun -np N)", CLI_INT_TO(&(p)->tp, 1, 4096)}, \
    {"--pp", NULL, "N", "pipeline parallel: N stages of layers (mpirun -np TP x PP)", CLI_INT_TO(&(p)->pp, 1, 4096)}
#define CLI_DIST_MICRO_FLAG(p)                                                                                \
    {"--micro-batches", NULL, "N", "with --pp: split each step's sequences into N groups that overlap the stages (default 1: off)", \
     CLI_INT_TO(&(p)->micro, 1, 16)}
void cli_dist_start(const cli_dist *cd, kiln_model_opts *mo);
/* Commands whose input only rank 0 has (serve, bench, chat; docs/distributed.md): right after
 * cli_dist_start, cli_dist_lead makes rank 0 lead (its forward steps are broadcast, and the end at exit,
 * whatever way it exits, so a rank 0 that fails later still releases the followers; no-op elsewhere);
 * once the model is open, cli_dist_follow runs rank 0's steps on every other rank and exits 0 when rank
 * 0 ends (it returns only on rank 0 and outside a distributed run). */
void cli_dist_follow(kiln_model *m);
void cli_dist_lead(const cli_dist *cd);
int cli_dist_micro(const cli_dist *cd); /* the micro-batches cli_dist_lead asks for */
bool cli_dist_rank0(void); /* true outside a distributed run */
/* ",\"rank\":R,\"ranks\":N,\"mpi_s\":S" for a --stats JSON line, "" outside a distributed run. */
const char *cli_dist_stats(void);
/* Rank 0's time in MPI (total and per forward step) as one line on stderr; nothing outside a distributed run. */
void cli_dist_report(int steps);

/* Parses "1,2,3" into a malloc'd id list; returns -1 with a message on bad input. */
int cli_parse_ids(const char *s, int32_t **ids, size_t *n, kiln_err *err);
/* The whole of a stream / a file named by flag (pipes and FIFOs too), NUL-terminated; exits on failure. */
char *cli_read_stream(FILE *f, size_t *len);
char *cli_read_file(const char *flag, const char *path, size_t *len);
/* Strict number parsing: the whole string must be a number in range, else exit 2 naming the flag. */
long cli_long(const char *flag, const char *s, long lo, long hi);
double cli_double(const char *flag, const char *s, double lo, double hi);
/* Prints "kiln <cmd>: message" and exits with status code. */
void cli_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
/* Resolves --model: a directory path as is; ORG/NAME that is not a directory through the hub cache. */
const char *cli_model_dir(const char *arg);

extern const char *cli_cmd_name;

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
    X(info, "describe this machine (and a model): SIMD, memory, bandwidth, roofline")  \
    X(quantize, "write a model as a GGUF file (llama.cpp's formats and K-quant mixes)")

#define CLI_DECLARE(name, help) int cmd_##name(int argc, char **argv);
CLI_COMMANDS(CLI_DECLARE)
#undef CLI_DECLARE

/* `kiln bench serve ...` (cli/bench_serve.c): cli/bench.c hands argv over when argv[1] is "serve". */
int cmd_bench_serve(int argc, char **argv);

#endif
