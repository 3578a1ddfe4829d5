/* grammar_cli.h — `kiln run`'s constrained-decoding and logit-bias flags:
 *   --json-schema FILE | --regex RE | --grammar FILE (GBNF) | --choice A,B,...   (at most one)
 *   --logit-bias ID=BIAS,...                                                      (OpenAI's, -100..100) */
#ifndef KILN_GRAMMAR_CLI_H
#define KILN_GRAMMAR_CLI_H

#include "cli.h"

typedef struct grammar_cli {
    const char *kind, *arg; /* the one grammar flag given ("--regex", its value), or NULL */
    const char *bias_arg;
    kiln_grammar *grammar;
    kiln_grammar_vocab *vocab;
    kiln_logit_bias *bias;
    int n_bias;
} grammar_cli;

/* Writes the flag rows (GRAMMAR_CLI_N_FLAGS of them) into rows, returns how many. */
enum { GRAMMAR_CLI_N_FLAGS = 5 };
int grammar_cli_flags(grammar_cli *c, cli_flag *rows);
/* Compiles the grammar against the tokenizer and points p at it (and at the bias list); exits on error. */
void grammar_cli_apply(grammar_cli *c, const kiln_tokenizer *t, kiln_gen_params *p);
void grammar_cli_free(grammar_cli *c);

#endif
