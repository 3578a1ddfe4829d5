/* tokenizer.c — loads tokenizer.json + tokenizer_config.json and runs the pipeline:
 * added-token split → normalizer → pre-tokenizer → BPE → post-processor; decode the way back.
 * Special-token handling follows Python transformers: a Llama/Gemma tokenizer class rebuilds its
 * post-processor from add_bos_token / add_eos_token (LlamaTokenizerFast.update_post_processor); other
 * classes use tokenizer.json's post-processor as is. */
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static char *token_content(json_t *v) { /* "str" or {"content": "str", ...} */
    if (json_is_object(v)) v = json_object_get(v, "content");
    const char *s = json_string_value(v);
    return s ? strdup(s) : NULL;
}

static int load_added(kiln_tokenizer *t, json_t *arr) {
    t->added = calloc(json_array_size(arr) + 1, sizeof *t->added);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *a = json_array_get(arr, i);
        const char *c = json_string_value(json_object_get(a, "content"));
        if (!c) continue;
        tk_added *x = &t->added[t->n_added++];
        x->content = strdup(c), x->len = strlen(c);
        x->id = (int32_t)json_integer_value(json_object_get(a, "id"));
        x->special = json_is_true(json_object_get(a, "special"));
        x->lstrip = json_is_true(json_object_get(a, "lstrip"));
        x->rstrip = json_is_true(json_object_get(a, "rstrip"));
        x->single_word = json_is_true(json_object_get(a, "single_word"));
        x->normalized = json_is_true(json_object_get(a, "normalized"));
        tk_map_put(&t->added_map, x->content, x->len, x->id);
        if (x->id > t->max_id) t->max_id = x->id;
    }
    return 0;
}

static void load_templates(kiln_tokenizer *t, json_t *ct) {
    if (json_is_string(ct)) {
        t->tmpl_names = calloc(1, sizeof(char *)), t->tmpl_src = calloc(1, sizeof(char *));
        t->tmpl_names[0] = strdup("default"), t->tmpl_src[0] = strdup(json_string_value(ct)), t->n_tmpl = 1;
    } else if (json_is_array(ct)) {
        size_t n = json_array_size(ct);
        t->tmpl_names = calloc(n + 1, sizeof(char *)), t->tmpl_src = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++) {
            const char *name = json_string_value(json_object_get(json_array_get(ct, i), "name"));
            const char *src = json_string_value(json_object_get(json_array_get(ct, i), "template"));
            if (!name || !src) continue;
            t->tmpl_names[t->n_tmpl] = strdup(name), t->tmpl_src[t->n_tmpl++] = strdup(src);
        }
    }
}

/* flags: tokenizer_config.json may hold integers beyond int64 (model_max_length = 1e30). */
static json_t *load_json(const char *dir, const char *name, bool required, size_t flags, kiln_err *err) {
    char *path = kiln_path_join(dir, name);
    size_t len;
    kiln_err e = {0};
    char *text = kiln_read_file(path, &len, &e);
    if (!text) {
        if (required) kiln_err_set(err, "%s", e.msg);
        free(path);
        return NULL;
    }
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_ALLOW_NUL | flags, &je);
    if (!j) kiln_err_set(err, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    free(text), free(path);
    return j;
}

kiln_tokenizer *kiln_tokenizer_open(const char *dir, kiln_err *err) {
    json_t *tj = load_json(dir, "tokenizer.json", true, 0, err);
    if (!tj) return NULL;
    kiln_err ce = {0};
    json_t *cfg = load_json(dir, "tokenizer_config.json", false, JSON_DECODE_INT_AS_REAL, &ce);
    if (!cfg && ce.msg[0]) return json_decref(tj), kiln_err_set(err, "%s", ce.msg), NULL;
    kiln_tokenizer *t = calloc(1, sizeof *t);
    t->max_id = -1;
    kiln_err e = {0};
    t->bpe = tk_bpe_load(json_object_get(tj, "model"), &e);
    if (t->bpe) t->norm = tk_normalizer_load(json_object_get(tj, "normalizer"), &e);
    if (t->bpe && !e.msg[0]) t->pre = tk_pretok_load(json_object_get(tj, "pre_tokenizer"), &e);
    if (t->bpe && !e.msg[0]) t->dec = tk_decoder_load(json_object_get(tj, "decoder"), &e);
    if (!t->bpe || e.msg[0]) goto fail;
    t->max_id = (int32_t)tk_bpe_vocab_size(t->bpe) - 1;
    load_added(t, json_object_get(tj, "added_tokens"));

    static const char *keys[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    int32_t *ids[4] = {&t->sp.bos_id, &t->sp.eos_id, &t->sp.pad_id, &t->sp.unk_id};
    const char **strs[4] = {&t->sp.bos_token, &t->sp.eos_token, &t->sp.pad_token, &t->sp.unk_token};
    for (int k = 0; k < 4; k++) {
        t->sp_str[k] = cfg ? token_content(json_object_get(cfg, keys[k])) : NULL;
        *strs[k] = t->sp_str[k];
        *ids[k] = t->sp_str[k] ? kiln_token_id(t, t->sp_str[k]) : -1;
    }
    if (cfg) load_templates(t, json_object_get(cfg, "chat_template"));
    t->clean_up_spaces = cfg && json_is_true(json_object_get(cfg, "clean_up_tokenization_spaces"));

    const char *cls = cfg ? json_string_value(json_object_get(cfg, "tokenizer_class")) : NULL;
    bool llama_like = cls && (!strncmp(cls, "LlamaTokenizer", 14) || !strncmp(cls, "CodeLlamaTokenizer", 18) ||
                              !strncmp(cls, "GemmaTokenizer", 14));
    if (llama_like) { /* update_post_processor: defaults add_bos_token=True, add_eos_token=False */
        json_t *ab = json_object_get(cfg, "add_bos_token"), *ae = json_object_get(cfg, "add_eos_token");
        bool bos = ab ? json_is_true(ab) : true, eos = ae ? json_is_true(ae) : false;
        t->post = tk_post_bos_eos(bos ? t->sp.bos_id : -1, eos ? t->sp.eos_id : -1);
    } else {
        t->post = tk_post_load(json_object_get(tj, "post_processor"), &e);
        if (!t->post) goto fail;
    }
    json_decref(tj), json_decref(cfg);
    return t;
fail:
    kiln_err_set(err, "%s/tokenizer.json: %s", dir, e.msg);
    json_decref(tj), json_decref(cfg);
    kiln_tokenizer_free(t);
    return NULL;
}

void kiln_tokenizer_free(kiln_tokenizer *t) {
    if (!t) return;
    tk_normalizer_free(t->norm), tk_pretok_free(t->pre), tk_bpe_free(t->bpe), tk_post_free(t->post);
    tk_decoder_free(t->dec);
    for (size_t i = 0; i < t->n_added; i++) free(t->added[i].content);
    free(t->added);
    tk_map_free(&t->added_map);
    for (int k = 0; k < 4; k++) free(t->sp_str[k]);
    for (size_t i = 0; i < t->n_tmpl; i++) free(t->tmpl_names[i]), free(t->tmpl_src[i]);
    free(t->tmpl_names), free(t->tmpl_src), free(t);
}

/* ---- encode ---- */
typedef struct {
    const kiln_tokenizer *t;
    tk_ids *ids;
    tk_buf norm;
} enc_ctx;

static void on_piece(void *c, const char *s, size_t n) {
    enc_ctx *e = c;
    tk_bpe_encode(e->t->bpe, s, n, e->ids);
}

static void on_segment(void *c, const char *s, size_t n, int32_t id) {
    enc_ctx *e = c;
    if (id >= 0) return tk_ids_add(e->ids, id);
    e->norm.n = 0;
    tk_normalize(e->t->norm, s, n, &e->norm);
    if (e->norm.n) tk_pretokenize(e->t->pre, e->norm.p, e->norm.n, on_piece, e);
}

int kiln_encode(const kiln_tokenizer *t, const char *text, size_t len, bool add_special, int32_t **ids,
                size_t *n_ids, kiln_err *err) {
    (void)err;
    tk_buf clean = {0}; /* Python strings are valid Unicode: map invalid bytes to U+FFFD first */
    tk_utf8_lossy(&clean, text, len);
    tk_ids raw = {0}, out = {0};
    enc_ctx e = {t, &raw, {0}};
    tk_split_added(t, clean.p ? clean.p : "", clean.n, on_segment, &e);
    free(e.norm.p), free(clean.p);
    if (add_special) tk_post_apply(t->post, &raw, &out), free(raw.p);
    else out = raw;
    if (!out.p) out.p = malloc(sizeof(int32_t));
    *ids = out.p, *n_ids = out.n;
    return 0;
}

/* ---- decode ---- */
static const char *id_str(const kiln_tokenizer *t, int32_t id) {
    const tk_added *a = tk_added_by_id(t, id);
    return a ? a->content : tk_bpe_token_str(t->bpe, id);
}

/* Raw decoded bytes (before the lossy UTF-8 pass). */
static void decode_raw(const kiln_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, bool stream, tk_buf *out) {
    const char **toks = malloc((n + 1) * sizeof *toks);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && kiln_token_is_special(t, ids[i])) continue;
        const char *s = id_str(t, ids[i]);
        if (s) toks[m++] = s;
    }
    tk_decode_tokens(t->dec, toks, m, stream, out);
    free(toks);
}

/* transformers' clean_up_tokenization (when clean_up_tokenization_spaces is set). */
static void clean_up(tk_buf *b) {
    static const char *pats[][2] = {{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
                                    {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (size_t p = 0; p < sizeof pats / sizeof pats[0]; p++) {
        size_t pn = strlen(pats[p][0]), rn = strlen(pats[p][1]), w = 0;
        for (size_t r = 0; r < b->n;) {
            if (r + pn <= b->n && !memcmp(b->p + r, pats[p][0], pn)) memmove(b->p + w, pats[p][1], rn), w += rn, r += pn;
            else b->p[w++] = b->p[r++];
        }
        b->n = w;
        if (b->p) b->p[w] = 0;
    }
}

char *kiln_decode(const kiln_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, size_t *out_len) {
    tk_buf raw = {0}, out = {0};
    decode_raw(t, ids, n, skip_special, false, &raw);
    tk_utf8_lossy(&out, raw.p, raw.n);
    free(raw.p);
    if (!out.p) tk_buf_add(&out, "", 0);
    if (t->clean_up_spaces) clean_up(&out);
    if (out_len) *out_len = out.n;
    return out.p;
}

size_t kiln_tokenizer_vocab_size(const kiln_tokenizer *t) { return (size_t)(t->max_id + 1); }

int32_t kiln_token_id(const kiln_tokenizer *t, const char *token) {
    int32_t id = tk_map_get(&t->added_map, token, strlen(token));
    return id >= 0 ? id : tk_bpe_token_id(t->bpe, token, strlen(token));
}

const char *kiln_token_str(const kiln_tokenizer *t, int32_t id) { return id_str(t, id); }

bool kiln_token_is_special(const kiln_tokenizer *t, int32_t id) {
    const tk_added *a = tk_added_by_id(t, id);
    return a && a->special;
}

const kiln_special_tokens *kiln_tokenizer_specials(const kiln_tokenizer *t) { return &t->sp; }

const char *kiln_tokenizer_chat_template(const kiln_tokenizer *t, const char *name) {
    for (size_t i = 0; i < t->n_tmpl; i++)
        if (!strcmp(t->tmpl_names[i], name ? name : "default")) return t->tmpl_src[i];
    return NULL;
}

/* ---- incremental detokenizer ----
 * Decodes a sliding window ids[prefix..] and emits what it adds beyond ids[prefix..read) — the window
 * keeps context for decoders that look at neighbours (Strip, Metaspace). Output waits while the new
 * text ends in an incomplete UTF-8 sequence. */
struct kiln_detok {
    const kiln_tokenizer *t;
    bool skip;
    tk_ids ids;
    size_t prefix, read;
    tk_buf out;
};

kiln_detok *kiln_detok_new(const kiln_tokenizer *t, bool skip_special) {
    kiln_detok *d = calloc(1, sizeof *d);
    d->t = t, d->skip = skip_special;
    return d;
}

void kiln_detok_free(kiln_detok *d) {
    if (d) free(d->ids.p), free(d->out.p), free(d);
}

/* Appends to fresh the raw bytes that window ids[prefix..] adds beyond ids[prefix..read); if a decoder
 * rewrote the earlier text so it is no longer a prefix, the whole window counts as new. */
static void window_new(kiln_detok *d, bool stream, tk_buf *fresh) {
    tk_buf prev = {0}, cur = {0};
    decode_raw(d->t, d->ids.p + d->prefix, d->read - d->prefix, d->skip, true, &prev);
    decode_raw(d->t, d->ids.p + d->prefix, d->ids.n - d->prefix, d->skip, stream, &cur);
    size_t k = prev.n <= cur.n && (prev.n == 0 || !memcmp(prev.p, cur.p, prev.n)) ? prev.n : 0;
    tk_buf_add(fresh, cur.p ? cur.p + k : "", cur.n - k);
    free(prev.p), free(cur.p);
}

/* Context ids (a prompt) the next pushes decode against, emitting nothing for them. Only the last few
 * are kept: enough for the decoders that look at a neighbour (Metaspace's leading space, Strip), as
 * vLLM's incremental detokenizer starts 5 tokens back. */
#define DETOK_CONTEXT 6
void kiln_detok_prime(kiln_detok *d, const int32_t *ids, size_t n) {
    size_t from = n > DETOK_CONTEXT ? n - DETOK_CONTEXT : 0;
    d->ids.n = 0;
    for (size_t i = from; i < n; i++) tk_ids_add(&d->ids, ids[i]);
    d->prefix = 0;
    d->read = d->ids.n;
}

const char *kiln_detok_push(kiln_detok *d, int32_t id, size_t *len) {
    tk_ids_add(&d->ids, id);
    tk_buf fresh = {0};
    window_new(d, true, &fresh);
    d->out.n = 0;
    tk_buf_add(&d->out, "", 0);
    if (fresh.n && !tk_utf8_incomplete_tail(fresh.p, fresh.n)) {
        tk_utf8_lossy(&d->out, fresh.p, fresh.n);
        d->prefix = d->read, d->read = d->ids.n;
    }
    free(fresh.p);
    *len = d->out.n;
    return d->out.p;
}

const char *kiln_detok_flush(kiln_detok *d, size_t *len) {
    tk_buf fresh = {0};
    window_new(d, false, &fresh);
    d->out.n = 0;
    tk_buf_add(&d->out, "", 0);
    tk_utf8_lossy(&d->out, fresh.p, fresh.n);
    free(fresh.p);
    d->prefix = d->read = d->ids.n;
    *len = d->out.n;
    return d->out.p;
}
