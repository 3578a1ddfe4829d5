/* postprocessor.c — adds special tokens: TemplateProcessing (single), BertProcessing/RobertaProcessing
 * (cls … sep), Sequence; ByteLevel changes only offsets, so it is a no-op for ids. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* The single-sequence template flattened: ids to emit, with -1 standing for the sequence itself. */
struct tk_post {
    tk_ids tmpl;
};

void tk_post_free(tk_post *p) {
    if (p) free(p->tmpl.p), free(p);
}

tk_post *tk_post_bos_eos(int32_t bos, int32_t eos) {
    tk_post *p = calloc(1, sizeof *p);
    if (bos >= 0) tk_ids_add(&p->tmpl, bos);
    tk_ids_add(&p->tmpl, -1);
    if (eos >= 0) tk_ids_add(&p->tmpl, eos);
    return p;
}

static int add_template(json_t *j, tk_ids *t, kiln_err *err) {
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return kiln_err_set(err, "tokenizer.json: post_processor without a type");
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "processors");
        for (size_t i = 0; i < json_array_size(arr); i++)
            if (add_template(json_array_get(arr, i), t, err)) return -1;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) return 0;
    bool had_seq = false;
    for (size_t i = 0; i < t->n; i++) had_seq |= t->p[i] == -1;
    tk_ids mine = {0};
    if (!strcmp(type, "TemplateProcessing")) {
        json_t *single = json_object_get(j, "single"), *sp = json_object_get(j, "special_tokens");
        for (size_t i = 0; i < json_array_size(single); i++) {
            json_t *item = json_array_get(single, i), *st = json_object_get(item, "SpecialToken");
            if (json_object_get(item, "Sequence")) {
                tk_ids_add(&mine, -1);
            } else if (st) {
                const char *name = json_string_value(json_object_get(st, "id"));
                json_t *ids = json_object_get(json_object_get(sp, name ? name : ""), "ids");
                if (!json_array_size(ids)) return free(mine.p), kiln_err_set(err, "tokenizer.json: TemplateProcessing: special token \"%s\" has no ids", name ? name : "?");
                for (size_t k = 0; k < json_array_size(ids); k++) tk_ids_add(&mine, (int32_t)json_integer_value(json_array_get(ids, k)));
            }
        }
    } else if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        json_t *cls = json_object_get(j, "cls"), *sep = json_object_get(j, "sep");
        tk_ids_add(&mine, (int32_t)json_integer_value(json_array_get(cls, 1)));
        tk_ids_add(&mine, -1);
        tk_ids_add(&mine, (int32_t)json_integer_value(json_array_get(sep, 1)));
    } else {
        return kiln_err_set(err, "tokenizer.json: unsupported post_processor type \"%s\"", type);
    }
    if (!had_seq) { /* first template: take it */
        free(t->p), *t = mine;
        return 0;
    }
    /* a later template wraps the earlier result: substitute the earlier template for -1 */
    tk_ids out = {0};
    for (size_t i = 0; i < mine.n; i++)
        if (mine.p[i] == -1) for (size_t k = 0; k < t->n; k++) tk_ids_add(&out, t->p[k]);
        else tk_ids_add(&out, mine.p[i]);
    free(mine.p), free(t->p), *t = out;
    return 0;
}

tk_post *tk_post_load(json_t *j, kiln_err *err) {
    tk_post *p = calloc(1, sizeof *p);
    if (j && !json_is_null(j) && add_template(j, &p->tmpl, err)) return tk_post_free(p), NULL;
    bool has_seq = false;
    for (size_t i = 0; i < p->tmpl.n; i++) has_seq |= p->tmpl.p[i] == -1;
    if (!has_seq) tk_ids_add(&p->tmpl, -1);
    return p;
}

void tk_post_apply(const tk_post *p, const tk_ids *in, tk_ids *out) {
    for (size_t i = 0; i < p->tmpl.n; i++)
        if (p->tmpl.p[i] == -1) for (size_t k = 0; k < in->n; k++) tk_ids_add(out, in->p[k]);
        else tk_ids_add(out, p->tmpl.p[i]);
}
