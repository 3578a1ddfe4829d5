/* template.c — the public entry points: kiln_template_render (source + JSON variables). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "template/jinja.h"

char *kiln_template_render(const char *tmpl, const char *vars_json, size_t *out_len, kiln_err *err) {
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
    jctx *c = calloc(1, sizeof *c);
    if (!c) {
        json_decref(vars);
        kiln_err_set(err, "template: out of memory");
        return NULL;
    }
    c->err = err;
    char *out = NULL;
    size_t n = 0;
    if (setjmp(c->fail) == 0) {
        jval root = jv_from_json(c, vars);
        size_t n_tok;
        jtok *toks = j_lex(c, tmpl, &n_tok);
        jnode *ast = j_parse(c, toks, n_tok);
        j_render(c, ast, root.d, &out, &n);
    } else out = NULL;
    json_decref(vars);
    ja_free(&c->arena);
    free(c);
    if (out && out_len) *out_len = n;
    return out;
}

