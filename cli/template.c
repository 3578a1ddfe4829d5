/* template.c — `kiln template --model DIR`: renders the model's chat template for each JSON object read
 * from stdin (messages, add_generation_prompt, enable_thinking, tools, any other template variable) and
 * writes one line per input: {"rendered":"...","ids":[...]} where ids = encode(rendered) without added
 * special tokens, as apply_chat_template(tokenize=True) does. A template error (raise_exception, undefined
 * value, unsupported construct) or a malformed input line gives {"error":"..."} on that line and the run
 * goes on; the exit status is 1 if any line failed. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void print_json_line(json_t *obj) {
    char *s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s) {
        fputs(s, stdout);
        fputc('\n', stdout);
        free(s);
    }
    fflush(stdout);
    json_decref(obj);
}

static int print_error(const char *msg) {
    json_t *o = json_object();
    json_object_set_new(o, "error", json_string(msg));
    print_json_line(o);
    return 1;
}

static int render_line(const kiln_tokenizer *tok, const char *line) {
    json_error_t jerr;
    json_t *in = json_loads(line, JSON_ALLOW_NUL, &jerr);
    if (!in || !json_is_object(in)) {
        char msg[300];
        snprintf(msg, sizeof msg, "input: %s", in ? "expected a JSON object" : jerr.text);
        json_decref(in);
        return print_error(msg);
    }
    json_decref(in);
    kiln_err err = {0};
    size_t n = 0;
    char *text = kiln_chat_render(tok, line, &n, &err);
    if (!text) return print_error(err.msg);
    int32_t *ids = NULL;
    size_t n_ids = 0;
    if (kiln_encode(tok, text, n, false, &ids, &n_ids, &err) != 0) {
        free(text);
        return print_error(err.msg);
    }
    json_t *o = json_object(), *arr = json_array();
    json_object_set_new(o, "rendered", json_stringn(text, n));
    for (size_t i = 0; i < n_ids; i++) json_array_append_new(arr, json_integer(ids[i]));
    json_object_set_new(o, "ids", arr);
    print_json_line(o);
    free(text);
    free(ids);
    return 0;
}

int cmd_template(int argc, char **argv) {
    const char *model = NULL;
    const cli_flag flags[] = {CLI_MODEL_FLAG(&model), {0}};
    const cli_spec spec = {.name = "template", .usage = "--model DIR < requests.jsonl",
                           .about = "Renders the model's chat template for each JSON object on stdin (messages,\n"
                           "add_generation_prompt, enable_thinking, tools, ...): {\"rendered\":\"...\",\"ids\":[...]} per line,\n"
                           "or {\"error\":\"...\"} if the template fails.",
                           .flags = flags};
    cli_parse(argc, argv, &spec);
    if (!model) cli_fail(2, "--model DIR is required");
    kiln_err err = {0};
    kiln_tokenizer *tok = kiln_tokenizer_open(cli_model_dir(model), &err);
    if (!tok) cli_fail(1, "%s", err.msg);
    if (!kiln_tokenizer_chat_template(tok, NULL)) {
        kiln_tokenizer_free(tok);
        cli_fail(1, "%s has no chat template (tokenizer_config.json chat_template)", model);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int failed = 0;
    while ((len = getline(&line, &cap, stdin)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (!len) continue;
        failed |= render_line(tok, line);
    }
    free(line);
    kiln_tokenizer_free(tok);
    return failed ? 1 : 0;
}
