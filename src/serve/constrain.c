/* constrain.c — the request fields that constrain decoding, compiled into one kiln_grammar per request.
 *
 * OpenAI's response_format and tool_choice, vLLM's guided_* fields and llama.cpp's grammar / json_schema
 * all end in the library's grammar engine (src/grammar/): the request owns the compiled grammar, the
 * server's one kiln_grammar_vocab is shared, and the sequence ends (finish "stop") once the output is
 * complete. Two grammar fields in one request are a 400 naming both: kiln will not guess which wins. */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve.h"

/* Hermes / Qwen tool-call framing: what request_output.c's parser reads back into tool_calls. */
#define CALL_OPEN "<tool_call>\n"
#define CALL_CLOSE "\n</tool_call>"
#define CALL_SEP "\n"
#define PARALLEL_MAX_CALLS 8

/* Installs g (from `field`) as the request's grammar; NULL g: compile error in err. */
static int set_grammar(serve_req *r, const char *field, kiln_grammar *g, const kiln_err *err, perr *e) {
    if (!g) return perr_set(e, field, "'%s': %s", field, err->msg);
    if (r->grammar) {
        kiln_grammar_free(g);
        return perr_set(e, field, "'%s' and '%s' both constrain the output: send only one", r->grammar_field, field);
    }
    r->grammar = g;
    r->grammar_field = field;
    return 0;
}

/* A JSON Schema given as an object (or, for guided_json, its text). */
static int schema_grammar(serve_req *r, const char *field, json_t *schema, perr *e) {
    kiln_err err = {{0}};
    if (json_is_string(schema)) return set_grammar(r, field, kiln_grammar_from_json_schema(json_string_value(schema), &err), &err, e);
    if (!json_is_object(schema) && !json_is_boolean(schema))
        return perr_set(e, field, "'%s' must be a JSON Schema object", field);
    char *text = json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) return perr_set(e, field, "out of memory");
    kiln_grammar *g = kiln_grammar_from_json_schema(text, &err);
    free(text);
    return set_grammar(r, field, g, &err, e);
}

/* OpenAI's response_format: text (nothing), json_object (any object), json_schema. strict true or false
 * both constrain: an unconstrained answer is what a client asking for a schema cannot use. */
static int response_format(serve_req *r, json_t *rf, perr *e) {
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (!json_is_object(rf) || !type)
        return perr_set(e, "response_format", "'response_format' must be an object with a 'type'");
    if (!strcmp(type, "text")) return 0;
    if (!strcmp(type, "json_object")) {
        kiln_err err = {{0}};
        return set_grammar(r, "response_format", kiln_grammar_from_json_schema("{\"type\":\"object\"}", &err), &err, e);
    }
    if (strcmp(type, "json_schema"))
        return perr_set(e, "response_format", "'response_format.type' must be text, json_object or json_schema, got '%s'", type);
    json_t *js = json_object_get(rf, "json_schema"), *strict = json_object_get(js, "strict");
    if (!json_is_object(js)) return perr_set(e, "response_format", "'response_format.json_schema' must be an object");
    if (strict && !json_is_null(strict) && !json_is_boolean(strict))
        return perr_set(e, "response_format", "'response_format.json_schema.strict' must be a boolean");
    json_t *schema = json_object_get(js, "schema");
    if (!schema) return perr_set(e, "response_format", "'response_format.json_schema.schema' is required");
    return schema_grammar(r, "response_format", schema, e);
}

/* guided_choice: a non-empty list of strings. */
static int choice_grammar(serve_req *r, json_t *v, perr *e) {
    size_t n = json_array_size(v);
    if (!json_is_array(v) || n == 0 || n > 4096)
        return perr_set(e, "guided_choice", "'guided_choice' must be a list of 1 to 4096 strings");
    const char **choices = malloc(n * sizeof *choices);
    if (!choices) return perr_set(e, "guided_choice", "out of memory");
    for (size_t i = 0; i < n; i++) {
        choices[i] = json_string_value(json_array_get(v, i));
        if (!choices[i]) {
            free(choices);
            return perr_set(e, "guided_choice", "'guided_choice[%zu]' must be a string", i);
        }
    }
    kiln_err err = {{0}};
    kiln_grammar *g = kiln_grammar_from_choice(choices, (int)n, &err);
    free(choices);
    return set_grammar(r, "guided_choice", g, &err, e);
}

/* guided_regex, guided_grammar, grammar: one string each. */
static int text_grammar(serve_req *r, const char *field, json_t *v, bool regex, perr *e) {
    if (!json_is_string(v)) return perr_set(e, field, "'%s' must be a string", field);
    kiln_err err = {{0}};
    kiln_grammar *g = regex ? kiln_grammar_from_regex(json_string_value(v), &err)
                            : kiln_grammar_from_gbnf(json_string_value(v), &err);
    return set_grammar(r, field, g, &err, e);
}

/* logit_bias {"ID": bias}: ids the model has, biases in OpenAI's -100..100. */
static int logit_bias(const serve_model_info *mi, serve_req *r, json_t *v, perr *e) {
    if (!json_is_object(v)) return perr_set(e, "logit_bias", "'logit_bias' must be an object {\"token id\": bias}");
    size_t n = json_object_size(v);
    if (n == 0) return 0;
    if (n > 1024) return perr_set(e, "logit_bias", "'logit_bias' takes at most 1024 tokens, got %zu", n);
    if (!(r->bias = calloc(n, sizeof *r->bias))) return perr_set(e, "logit_bias", "out of memory");
    const char *key;
    json_t *b;
    json_object_foreach(v, key, b) {
        char *end;
        errno = 0;
        long id = strtol(key, &end, 10);
        if (!*key || *end || errno || id < 0 || id >= mi->vocab)
            return perr_set(e, "logit_bias", "'logit_bias' keys must be token ids in [0, %d), got '%s'", mi->vocab, key);
        if (!json_is_number(b) || json_number_value(b) < -100 || json_number_value(b) > 100)
            return perr_set(e, "logit_bias", "'logit_bias[\"%s\"]' must be a number between -100 and 100", key);
        r->bias[r->gen.n_logit_bias++] = (kiln_logit_bias){(int32_t)id, (float)json_number_value(b)};
    }
    r->gen.logit_bias = r->bias;
    return 0;
}

int constrain_parse(const serve_model_info *mi, json_t *o, serve_req *r, perr *e) {
    json_t *v;
    int st = 0;
    if ((v = json_object_get(o, "response_format")) && !json_is_null(v)) st = response_format(r, v, e);
    if (!st && (v = json_object_get(o, "guided_json")) && !json_is_null(v)) st = schema_grammar(r, "guided_json", v, e);
    if (!st && (v = json_object_get(o, "json_schema")) && !json_is_null(v)) st = schema_grammar(r, "json_schema", v, e);
    if (!st && (v = json_object_get(o, "guided_regex")) && !json_is_null(v)) st = text_grammar(r, "guided_regex", v, true, e);
    if (!st && (v = json_object_get(o, "guided_grammar")) && !json_is_null(v)) st = text_grammar(r, "guided_grammar", v, false, e);
    if (!st && (v = json_object_get(o, "grammar")) && !json_is_null(v)) st = text_grammar(r, "grammar", v, false, e);
    if (!st && (v = json_object_get(o, "guided_choice")) && !json_is_null(v)) st = choice_grammar(r, v, e);
    if (!st && (v = json_object_get(o, "logit_bias")) && !json_is_null(v)) st = logit_bias(mi, r, v, e);
    if (st) return st;
    r->gen.grammar = r->grammar;
    r->gen.grammar_vocab = mi->grammar_vocab;
    return 0;
}

/* The tools a forced call may use: all of them ("required") or the one named. */
static int tool_call_grammar(json_t *tools, const char *only, int max_calls, serve_req *r, perr *e) {
    size_t n = json_array_size(tools);
    const char **names = calloc(n ? n : 1, sizeof *names), **params = calloc(n ? n : 1, sizeof *params);
    int k = 0, st = names && params ? 0 : perr_set(e, "tool_choice", "out of memory");
    for (size_t i = 0; i < n && !st; i++) {
        json_t *fn = json_object_get(json_array_get(tools, i), "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!name) st = perr_set(e, "tools", "'tools[%zu].function.name' must be a string", i);
        else if (!only || !strcmp(only, name)) {
            json_t *p = json_object_get(fn, "parameters");
            names[k] = name;
            params[k++] = p && !json_is_null(p) ? json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        }
    }
    if (!st && k == 0)
        st = only ? perr_set(e, "tool_choice", "'tool_choice' names function '%s', which is not in 'tools'", only)
                  : perr_set(e, "tool_choice", "'tool_choice' \"required\" needs at least one tool in 'tools'");
    if (!st) {
        kiln_err err = {{0}};
        st = set_grammar(r, "tool_choice",
                         kiln_grammar_from_tools(names, params, k, CALL_OPEN, CALL_CLOSE, CALL_SEP, max_calls, &err),
                         &err, e);
    }
    for (int i = 0; params && i < k; i++) free((char *)params[i]);
    free(names);
    free(params);
    return st;
}

int constrain_tools(json_t *o, json_t *tools, serve_req *r, bool *offer, perr *e) {
    json_t *tc = json_object_get(o, "tool_choice"), *par = json_object_get(o, "parallel_tool_calls");
    *offer = true;
    if (par && !json_is_null(par) && !json_is_boolean(par))
        return perr_set(e, "parallel_tool_calls", "'parallel_tool_calls' must be a boolean");
    const char *mode = json_is_string(tc) ? json_string_value(tc) : NULL, *only = NULL;
    if (!tc || json_is_null(tc) || (mode && !strcmp(mode, "auto"))) {
        if (json_is_false(par)) /* an unconstrained answer may call several: only a grammar can stop that */
            return perr_set(e, "parallel_tool_calls", "'parallel_tool_calls' false needs 'tool_choice' \"required\" or a named function");
        return 0;
    }
    if (mode && !strcmp(mode, "none")) {
        *offer = false;
        return 0;
    }
    if (!mode) {
        json_t *fn = json_object_get(tc, "function");
        const char *type = json_string_value(json_object_get(tc, "type"));
        only = json_string_value(json_object_get(fn, "name"));
        if (!json_is_object(tc) || !type || strcmp(type, "function") || !only)
            return perr_set(e, "tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or {\"type\":\"function\",\"function\":{\"name\":...}}");
    } else if (strcmp(mode, "required")) {
        return perr_set(e, "tool_choice", "'tool_choice' must be \"none\", \"auto\", \"required\" or a named function, got \"%s\"", mode);
    }
    int st = tool_call_grammar(tools, only, json_is_true(par) ? PARALLEL_MAX_CALLS : 1, r, e);
    r->gen.grammar = r->grammar;
    return st;
}
