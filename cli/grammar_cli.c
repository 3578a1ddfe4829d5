/* grammar_cli.c — see grammar_cli.h. */
#include "grammar_cli.h"

#include <stdlib.h>
#include <string.h>

int grammar_cli_flag(grammar_cli *c, int argc, char **argv, int *i) {
    static const char *const kinds[] = {"--json-schema", "--regex", "--grammar", "--choice"};
    const char *v;
    if (cli_opt(argc, argv, i, "--logit-bias", &v)) {
        if (c->bias_arg) cli_fail(2, "--logit-bias given twice (list every ID=BIAS in one, comma-separated)");
        c->bias_arg = v;
        return 1;
    }
    for (size_t k = 0; k < sizeof kinds / sizeof *kinds; k++)
        if (cli_opt(argc, argv, i, kinds[k], &v)) {
            if (c->kind) cli_fail(2, "%s and %s are mutually exclusive (give one grammar)", c->kind, kinds[k]);
            c->kind = kinds[k], c->arg = v;
            return 1;
        }
    return 0;
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
    char *text = kiln_read_file(c->arg, &len, err);
    if (!text) return NULL;
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
