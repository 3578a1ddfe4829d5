/* grammar_cli.c — see grammar_cli.h. */
#include "grammar_cli.h"

#include <stdlib.h>
#include <string.h>

static void on_grammar(void *dst, const char *flag, const char *value) {
    grammar_cli *c = dst;
    if (c->kind && strcmp(c->kind, flag) != 0)
        cli_fail(2, "%s and %s are mutually exclusive (give one grammar)", c->kind, flag);
    c->kind = flag, c->arg = value;
}

static void on_bias(void *dst, const char *flag, const char *value) {
    grammar_cli *c = dst;
    if (c->bias_arg) cli_fail(2, "%s given twice (list every ID=BIAS in one, comma-separated)", flag);
    c->bias_arg = value;
}

int grammar_cli_flags(grammar_cli *c, cli_flag *rows) {
    const cli_flag own[GRAMMAR_CLI_N_FLAGS] = {
        {"--json-schema", NULL, "FILE", "constrain the output to JSON valid against this JSON Schema", CLI_FN_TO(on_grammar, c)},
        {"--regex", NULL, "RE", "constrain the output to match this regular expression", CLI_FN_TO(on_grammar, c)},
        {"--grammar", NULL, "FILE", "constrain the output to this GBNF grammar (llama.cpp's syntax)", CLI_FN_TO(on_grammar, c)},
        {"--choice", NULL, "A,B,...", "the output is exactly one of these strings", CLI_FN_TO(on_grammar, c)},
        {"--logit-bias", NULL, "ID=BIAS,...", "added to the token's logit, -100..100 (-100 bans it)", CLI_FN_TO(on_bias, c)},
    };
    memcpy(rows, own, sizeof own);
    return GRAMMAR_CLI_N_FLAGS;
}

static void parse_bias(grammar_cli *c) {
    size_t n = 1;
    for (const char *s = c->bias_arg; *s; s++) n += *s == ',';
    c->bias = calloc(n, sizeof *c->bias);
    if (!c->bias) cli_fail(1, "out of memory");
    char *copy = strdup(c->bias_arg), *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '=');
        if (!eq) cli_fail(2, "--logit-bias: '%s' is not ID=BIAS", item);
        *eq = 0;
        c->bias[c->n_bias].token = (int32_t)cli_long("--logit-bias id", item, 0, INT32_MAX);
        c->bias[c->n_bias++].bias = (float)cli_double("--logit-bias bias", eq + 1, -100, 100);
    }
    free(copy);
    if (c->n_bias == 0) cli_fail(2, "--logit-bias: empty list");
}

static kiln_grammar *compile(grammar_cli *c, kiln_err *err) {
    if (!strcmp(c->kind, "--regex")) return kiln_grammar_from_regex(c->arg, err);
    if (!strcmp(c->kind, "--choice")) {
        char *copy = strdup(c->arg), *save = NULL;
        const char **items = calloc(strlen(c->arg) + 1, sizeof *items);
        int n = 0;
        if (!copy || !items) cli_fail(1, "out of memory");
        for (char *s = strtok_r(copy, ",", &save); s; s = strtok_r(NULL, ",", &save)) items[n++] = s;
        kiln_grammar *g = kiln_grammar_from_choice(items, n, err);
        free(items), free(copy);
        return g;
    }
    size_t len;
    char *text = cli_read_file(c->kind, c->arg, &len);
    kiln_grammar *g = !strcmp(c->kind, "--grammar") ? kiln_grammar_from_gbnf(text, err)
                                                     : kiln_grammar_from_json_schema(text, err);
    free(text);
    return g;
}

void grammar_cli_apply(grammar_cli *c, const kiln_tokenizer *t, kiln_gen_params *p) {
    kiln_err err = {0};
    if (c->bias_arg) {
        parse_bias(c);
        p->logit_bias = c->bias, p->n_logit_bias = c->n_bias;
    }
    if (!c->kind) return;
    if (!(c->grammar = compile(c, &err))) cli_fail(2, "%s %s: %s", c->kind, c->arg, err.msg);
    if (!(c->vocab = kiln_grammar_vocab_new(t, &err))) cli_fail(1, "%s", err.msg);
    p->grammar = c->grammar, p->grammar_vocab = c->vocab;
}

void grammar_cli_free(grammar_cli *c) {
    kiln_grammar_free(c->grammar);
    kiln_grammar_vocab_free(c->vocab);
    free(c->bias);
    memset(c, 0, sizeof *c);
}
