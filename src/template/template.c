/* template.c — the public entry points: kiln_template_render(_limited) (source + JSON variables). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "template/jinja.h"

/* Parses vars_json as the JSON object of template variables (NULL: none); NULL with err filled if it is not. */
static json_t *load_vars(const char *vars_json, kiln_err *err) {
    json_error_t jerr;
    json_t *vars = json_loads(vars_json ? vars_json : "{}", JSON_ALLOW_NUL, &jerr);
    if (!vars) {
        kiln_err_set(err, "template variables: invalid JSON at line %d column %d: %s", jerr.line, jerr.column,
                     jerr.text);
        return NULL;
    }
    if (!json_is_object(vars)) {
        json_decref(vars);
        kiln_err_set(err, "template variables: expected a JSON object");
        return NULL;
    }
    return vars;
}

char *kiln_template_render_limited(const char *tmpl, const char *vars_json, const kiln_template_limits *lim,
                                   size_t *out_len, kiln_err *err) {
    json_t *vars = load_vars(vars_json, err);
    if (!vars) return NULL;
    jctx *c = malloc(sizeof *c);
    if (!c) {
        json_decref(vars);
        kiln_err_set(err, "template: out of memory");
        return NULL;
    }
    j_ctx_init(c, lim, err);
    char *out = NULL;
    size_t n = 0;
    if (setjmp(c->fail) == 0) {
        jval root = jv_from_json(c, vars);
        size_t n_tok;
        jtok *toks = j_lex(c, tmpl, &n_tok);
        jnode *ast = j_parse(c, toks, n_tok);
        out = j_render(c, ast, root.d, &n);
    } else out = NULL; /* err is filled; j_ctx_free releases what the render held */
    json_decref(vars);
    j_ctx_free(c);
    free(c);
    if (out && out_len) *out_len = n;
    return out;
}

char *kiln_template_render(const char *tmpl, const char *vars_json, size_t *out_len, kiln_err *err) {
    return kiln_template_render_limited(tmpl, vars_json, NULL, out_len, err);
}
