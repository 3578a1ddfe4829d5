/* chat.c — kiln_chat_render: the tokenizer's chat template with its special tokens, as
 * apply_chat_template renders it. Separate from template.c so the interpreter links without a tokenizer. */
#include <jansson.h>
#include <stdlib.h>

#include "kiln.h"

char *kiln_chat_render_limited(const kiln_tokenizer *t, const char *vars_json, const kiln_template_limits *lim,
                               size_t *out_len, kiln_err *err) {
    const char *tmpl = kiln_tokenizer_chat_template(t, NULL);
    if (!tmpl) {
        kiln_err_set(err, "the tokenizer has no chat template (tokenizer_config.json chat_template)");
        return NULL;
    }
    json_error_t jerr;
    json_t *vars = json_loads(vars_json ? vars_json : "{}", JSON_ALLOW_NUL, &jerr);
    if (!vars || !json_is_object(vars)) {
        if (vars) json_decref(vars);
        kiln_err_set(err, "chat variables: %s", vars ? "expected a JSON object" : jerr.text);
        return NULL;
    }
    const kiln_special_tokens *sp = kiln_tokenizer_specials(t);
    const char *names[] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    const char *vals[] = {sp->bos_token, sp->eos_token, sp->pad_token, sp->unk_token};
    for (int i = 0; i < 4; i++)
        if (vals[i] && !json_object_get(vars, names[i])) json_object_set_new(vars, names[i], json_string(vals[i]));
    char *text = json_dumps(vars, JSON_PRESERVE_ORDER | JSON_COMPACT);
    json_decref(vars);
    if (!text) {
        kiln_err_set(err, "chat variables: cannot serialise");
        return NULL;
    }
    char *out = kiln_template_render_limited(tmpl, text, lim, out_len, err);
    free(text);
    return out;
}

char *kiln_chat_render(const kiln_tokenizer *t, const char *vars_json, size_t *out_len, kiln_err *err) {
    return kiln_chat_render_limited(t, vars_json, NULL, out_len, err);
}
