/* gguf_export.c — a tokenizer.json checkpoint's tokenizer as GGUF's tokenizer.ggml.* arrays, as llama.cpp's
 * converter writes them (its _set_vocab_gpt2 for byte-level BPE, LlamaHfVocab for SentencePiece-style
 * BPE with byte fallback), so that reading the file back (gguf_vocab.c) rebuilds the same tokenizer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

/* Keeps s (made here) until close; NULL (s freed) when out of memory. */
static char *own(tk_gguf_export *x, char *s) {
    if (s && x->n_owned == x->cap_owned) {
        size_t nc = x->cap_owned ? x->cap_owned * 2 : 256;
        char **p = realloc(x->owned, nc * sizeof *p);
        if (p) x->owned = p, x->cap_owned = nc;
    }
    if (!s || x->n_owned == x->cap_owned) return free(s), NULL;
    return x->owned[x->n_owned++] = s;
}

static bool is_byte_token(const char *s) {
    unsigned hi, lo;
    return strlen(s) == 6 && sscanf(s, "<0x%1X%1X>", &hi, &lo) == 2 && s[5] == '>';
}

static bool wrapped(const char *s, const char *open, const char *close) {
    size_t n = strlen(s), a = strlen(open), b = strlen(close);
    return n >= a + b && !strncmp(s, open, a) && !strcmp(s + n - b, close);
}

/* The converter's does_token_look_special: added tokens it types CONTROL though they are not special. */
static bool looks_special(const char *s) {
    return !strcmp(s, "<pad>") || !strcmp(s, "<mask>") || !strcmp(s, "<2mass>") || !strcmp(s, "[@BOS@]") ||
           wrapped(s, "<|", "|>") || wrapped(s, "<\xEF\xBD\x9C", "\xEF\xBD\x9C>") || wrapped(s, "<unused", ">");
}

/* tokens and token_type by id; ids the tokenizer lacks are "[PADi]", unused (as the converter pads). */
static int tokens(tk_gguf_export *x, bool llama, kiln_err *err) {
    tk_gguf_vocab *v = &x->v;
    const char **tok = calloc(v->n_tokens + 1, sizeof *tok);
    size_t *len = calloc(v->n_tokens + 1, sizeof *len);
    int32_t *types = calloc(v->n_tokens + 1, sizeof *types);
    v->tokens = tok, v->token_len = len, v->types = types;
    if (!tok || !len || !types) return kiln_err_set(err, TK_OOM);
    for (size_t i = 0; i < v->n_tokens; i++) {
        const char *s = kiln_token_str(x->tok, (int32_t)i);
        const tk_added *a = tk_added_by_id(x->tok, (int32_t)i);
        int type = a ? (a->special || looks_special(a->content) ? TK_TYPE_CONTROL : TK_TYPE_USER) : TK_TYPE_NORMAL;
        if (!s) {
            char pad[32];
            snprintf(pad, sizeof pad, "[PAD%zu]", i);
            if (!(s = own(x, strdup(pad)))) return kiln_err_set(err, TK_OOM);
            type = TK_TYPE_UNUSED;
        } else if (llama && !a && is_byte_token(s)) type = TK_TYPE_BYTE;
        tok[i] = s, len[i] = strlen(s), types[i] = type;
    }
    return 0;
}

/* gpt2: model.merges as "left right" (tokenizer.json holds strings, or [left, right] pairs). */
static int merges(tk_gguf_export *x, kiln_err *err) {
    json_t *m = json_object_get(json_object_get(x->tj, "model"), "merges");
    const size_t n = json_array_size(m);
    const char **s = calloc(n + 1, sizeof *s);
    size_t *len = calloc(n + 1, sizeof *len);
    x->v.merges = s, x->v.merge_len = len, x->v.n_merges = n;
    if (!s || !len) return kiln_err_set(err, TK_OOM);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(m, i);
        if (json_is_string(e)) s[i] = json_string_value(e);
        else {
            const char *l = json_string_value(json_array_get(e, 0)), *r = json_string_value(json_array_get(e, 1));
            if (!l || !r) return kiln_err_set(err, "tokenizer.json: merge %zu is neither \"a b\" nor [a, b]", i);
            char *j = malloc(strlen(l) + strlen(r) + 2);
            if (j) sprintf(j, "%s %s", l, r);
            if (!(s[i] = own(x, j))) return kiln_err_set(err, TK_OOM);
        }
        len[i] = strlen(s[i]);
    }
    return 0;
}

/* Whether encoding adds BOS in front / EOS behind (the post-processor or add_bos_token). */
static int added_specials(tk_gguf_export *x, kiln_err *err) {
    int32_t *with = NULL, *without = NULL;
    size_t nw = 0, n = 0;
    int rc = kiln_encode(x->tok, "a", 1, true, &with, &nw, err) || kiln_encode(x->tok, "a", 1, false, &without, &n, err);
    if (!rc) {
        x->v.add_bos = nw > n && x->v.bos >= 0 && with[0] == x->v.bos;
        x->v.add_eos = nw > n && x->v.eos >= 0 && with[nw - 1] == x->v.eos && !(nw == n + 1 && x->v.add_bos);
    }
    free(with), free(without);
    return rc ? -1 : 0;
}

int tk_gguf_export_open(tk_gguf_export *x, const char *dir, size_t n_vocab, int32_t bos_fallback, kiln_err *err) {
    memset(x, 0, sizeof *x);
    if (!(x->tj = tk_load_json(dir, "tokenizer.json", err)) || !(x->tok = kiln_tokenizer_open(dir, err))) return -1;
    json_t *model = json_object_get(x->tj, "model");
    const char *type = json_string_value(json_object_get(model, "type"));
    if (!type || strcmp(type, "BPE"))
        return kiln_err_set(err, "%s: tokenizer model %s: GGUF holds BPE tokenizers only", dir, type ? type : "(none)");
    const bool llama = json_is_true(json_object_get(model, "byte_fallback"));
    tk_gguf_vocab *v = &x->v;
    v->model = llama ? "llama" : "gpt2";
    v->pre = llama ? "default"
                   : tk_gguf_pre_name(json_object_get(x->tj, "pre_tokenizer"), json_object_get(x->tj, "normalizer"));
    if (!v->pre) return kiln_err_set(err, "%s: its pre-tokenizer is none that GGUF's tokenizer.ggml.pre names for kiln", dir);
    size_t have = kiln_tokenizer_vocab_size(x->tok);
    v->n_tokens = n_vocab > have ? n_vocab : have;
    const kiln_special_tokens *sp = kiln_tokenizer_specials(x->tok);
    v->bos = sp->bos_id >= 0 ? sp->bos_id : bos_fallback, v->eos = sp->eos_id, v->pad = sp->pad_id, v->unk = sp->unk_id;
    v->chat_template = kiln_tokenizer_chat_template(x->tok, NULL);
    if (tokens(x, llama, err) || (!llama && merges(x, err)) || added_specials(x, err)) return -1;
    if (llama) {
        float *scores = malloc(v->n_tokens * sizeof *scores + 1);
        if (!scores) return kiln_err_set(err, TK_OOM);
        for (size_t i = 0; i < v->n_tokens; i++) scores[i] = -1000.0f; /* LlamaHfVocab's: no SentencePiece model */
        v->scores = scores;
    }
    return 0;
}

void tk_gguf_export_close(tk_gguf_export *x) {
    free((void *)x->v.tokens), free((void *)x->v.token_len), free((void *)x->v.types);
    free((void *)x->v.merges), free((void *)x->v.merge_len), free((void *)x->v.scores);
    for (size_t i = 0; i < x->n_owned; i++) free(x->owned[i]);
    free(x->owned);
    kiln_tokenizer_free(x->tok);
    json_decref(x->tj);
    memset(x, 0, sizeof *x);
}
