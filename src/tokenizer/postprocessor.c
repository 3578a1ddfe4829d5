/* postprocessor.c — adds special tokens: TemplateProcessing (single), BertProcessing/RobertaProcessing
 * (cls … sep), Sequence; ByteLevel changes only offsets, so it is a no-op for ids. */
#include <stdlib.h>
#include <string.h>

#include "common/json_get.h"
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
    if (p && ((bos >= 0 && tk_ids_add(&p->tmpl, bos)) || tk_ids_add(&p->tmpl, -1) ||
              (eos >= 0 && tk_ids_add(&p->tmpl, eos))))
        return tk_post_free(p), NULL;
    return p;
}

/* A special token id of a post-processor: an integer in [0, vocab) (the tokenizer's size so far). */
static int special_id(json_t *v, int32_t vocab, const char *what, tk_ids *out, kiln_err *err) {
    long long id;
    if (json_int_value(v, 0, (long long)vocab - 1, &id))
        return kiln_err_set(err, "tokenizer.json: post_processor %s id must be an integer in [0, %d)", what, vocab);
    return tk_ids_add(out, (int32_t)id) ? kiln_err_set(err, TK_OOM) : 0;
}

/* Substitutes `inner` for each -1 (the sequence) in `outer` into out. */
static int substitute(const tk_ids *outer, const tk_ids *inner, tk_ids *out) {
    for (size_t i = 0; i < outer->n; i++)
        if (outer->p[i] == -1) {
            for (size_t k = 0; k < inner->n; k++)
                if (tk_ids_add(out, inner->p[k])) return -1;
        } else if (tk_ids_add(out, outer->p[i])) {
            return -1;
        }
    return 0;
}

static int add_template(json_t *j, int32_t vocab, tk_ids *t, kiln_err *err) {
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return kiln_err_set(err, "tokenizer.json: post_processor without a type");
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "processors");
        for (size_t i = 0; i < json_array_size(arr); i++)
            if (add_template(json_array_get(arr, i), vocab, t, err)) return -1;
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
                if (tk_ids_add(&mine, -1)) return free(mine.p), kiln_err_set(err, TK_OOM);
            } else if (st) {
                const char *name = json_string_value(json_object_get(st, "id"));
                json_t *ids = json_object_get(json_object_get(sp, name ? name : ""), "ids");
                if (!json_array_size(ids)) return free(mine.p), kiln_err_set(err, "tokenizer.json: TemplateProcessing: special token \"%s\" has no ids", name ? name : "?");
                for (size_t k = 0; k < json_array_size(ids); k++)
                    if (special_id(json_array_get(ids, k), vocab, name ? name : "?", &mine, err)) return free(mine.p), -1;
            }
        }
    } else if (!strcmp(type, "BertProcessing") || !strcmp(type, "RobertaProcessing")) {
        json_t *cls = json_object_get(j, "cls"), *sep = json_object_get(j, "sep");
        if (special_id(json_array_get(cls, 1), vocab, "cls", &mine, err) ||
            (tk_ids_add(&mine, -1) && kiln_err_set(err, TK_OOM)) || special_id(json_array_get(sep, 1), vocab, "sep", &mine, err))
            return free(mine.p), -1;
    } else {
        return kiln_err_set(err, "tokenizer.json: unsupported post_processor type \"%s\"", type);
    }
    if (!had_seq) { /* first template: take it */
        free(t->p), *t = mine;
        return 0;
    }
    /* a later template wraps the earlier result: substitute the earlier template for -1 */
    tk_ids out = {0};
    int rc = substitute(&mine, t, &out);
    free(mine.p);
    if (rc) return free(out.p), kiln_err_set(err, TK_OOM);
    free(t->p), *t = out;
    return 0;
}

tk_post *tk_post_load(json_t *j, int32_t vocab, kiln_err *err) {
    tk_post *p = calloc(1, sizeof *p);
    if (!p) return kiln_err_set(err, TK_OOM), NULL;
    if (j && !json_is_null(j) && add_template(j, vocab, &p->tmpl, err)) return tk_post_free(p), NULL;
    bool has_seq = false;
    for (size_t i = 0; i < p->tmpl.n; i++) has_seq |= p->tmpl.p[i] == -1;
    if (!has_seq && tk_ids_add(&p->tmpl, -1)) return tk_post_free(p), kiln_err_set(err, TK_OOM), NULL;
    return p;
}

int tk_post_apply(const tk_post *p, const tk_ids *in, tk_ids *out) { return substitute(&p->tmpl, in, out); }
