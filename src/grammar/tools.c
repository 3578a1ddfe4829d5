/* tools.c — a grammar for tool calls: the output is one or more calls, each `open + {"name": NAME,
 * "arguments": ARGS} + close`, with NAME one of the tools and ARGS valid against that tool's parameters
 * schema. The server picks open / close / separator for the model family (Hermes / Qwen:
 * "<tool_call>\n", "\n</tool_call>", "\n"), so tool_choice "required" or a named function cannot produce
 * anything else. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

static int tool_rule(const char *name, const char *params, int i, int *counter, strbuf *s, kiln_err *err) {
    char rule[32];
    snprintf(rule, sizeof rule, "args%d", i);
    if (json_schema_rules(params ? params : "{\"type\":\"object\"}", rule, counter, s, err)) return -1;
    strbuf lit = {0};
    json_t *js = json_string(name);
    char *quoted = js ? json_dumps(js, JSON_ENCODE_ANY) : NULL; /* the name as a JSON string */
    json_decref(js);
    int rc = !quoted || gbnf_literal(&lit, quoted, strlen(quoted)) ||
             strbuf_printf(s, "tool%d ::= \"{\" ws \"\\\"name\\\"\" ws \":\" ws %s ws \",\" ws \"\\\"arguments\\\"\" ws \":\" ws "
                              "args%d ws \"}\"\n", i, lit.p, i);
    free(quoted);
    strbuf_free(&lit);
    return rc ? kiln_err_set(err, "tool grammar: out of memory") : 0;
}

kiln_grammar *kiln_grammar_from_tools(const char *const *names, const char *const *parameters, int n_tools,
                                      const char *call_open, const char *call_close, const char *separator,
                                      int max_calls, kiln_err *err) {
    if (n_tools <= 0) return kiln_err_set(err, "tool grammar: no tools"), NULL;
    if (max_calls < 1) return kiln_err_set(err, "tool grammar: max_calls must be at least 1"), NULL;
    strbuf s = {0};
    int counter = 0, rc = 0;
    kiln_err e = {{0}};
    for (int i = 0; i < n_tools && !rc; i++) {
        rc = tool_rule(names[i], parameters ? parameters[i] : NULL, i, &counter, &s, &e);
        if (rc) kiln_err_set(err, "tool '%s' parameters: %s", names[i], e.msg);
    }
    if (!rc) {
        rc = strbuf_puts(&s, "call ::= ") || gbnf_literal(&s, call_open ? call_open : "", call_open ? strlen(call_open) : 0) ||
             strbuf_puts(&s, " (");
        for (int i = 0; i < n_tools && !rc; i++) rc = strbuf_printf(&s, "%s tool%d", i ? " |" : "", i);
        rc = rc || strbuf_puts(&s, " ) ") || gbnf_literal(&s, call_close ? call_close : "", call_close ? strlen(call_close) : 0) ||
             strbuf_puts(&s, "\nroot ::= call");
        if (!rc && max_calls > 1)
            rc = strbuf_puts(&s, " ( ") || gbnf_literal(&s, separator ? separator : "", separator ? strlen(separator) : 0) ||
                 strbuf_printf(&s, " call ){0,%d}", max_calls - 1);
        rc = rc || strbuf_putc(&s, '\n') || json_schema_primitives(&s);
        if (rc) kiln_err_set(err, "tool grammar: out of memory");
    }
    if (rc) {
        strbuf_free(&s);
        return NULL;
    }
    return gbnf_compile_buf(&s, "tool grammar", err);
}
