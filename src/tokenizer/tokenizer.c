/* tokenizer.c — loads tokenizer.json + tokenizer_config.json and runs the pipeline:
 * added-token split → normalizer → pre-tokenizer → BPE → post-processor; decode the way back.
 * Special-token handling follows Python transformers: a Llama/Gemma tokenizer class rebuilds its
 * post-processor from add_bos_token / add_eos_token (LlamaTokenizerFast.update_post_processor); other
 * classes use tokenizer.json's post-processor as is. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer/tok_internal.h"

/* "str" or {"content": "str", ...} → *out (NULL when absent); -1 only when out of memory. */
static int token_content(json_t *v, char **out) {
    if (json_is_object(v)) v = json_object_get(v, "content");
    const char *s = json_string_value(v);
    *out = s ? strdup(s) : NULL;
    return s && !*out ? -1 : 0;
}

/* added_tokens: each needs a content string and an id in [0, bound) — the ids a vocab of n entries
 * with n_added added tokens can use (as for the vocab itself, see bpe.c). */
static int load_added(kiln_tokenizer *t, json_t *arr, long long bound, kiln_err *err) {
    if (!(t->added = calloc(json_array_size(arr) + 1, sizeof *t->added))) return kiln_err_set(err, TK_OOM);
    for (size_t i = 0; i < json_array_size(arr); i++) {
        json_t *a = json_array_get(arr, i);
        const char *c = json_string_value(json_object_get(a, "content"));
        if (!c) continue;
        json_t *jid = json_object_get(a, "id");
        long long id = json_is_integer(jid) ? json_integer_value(jid) : -1;
        if (id < 0 || id >= bound)
            return kiln_err_set(err, "tokenizer.json: added_tokens[%zu] (\"%s\") needs an integer id in [0, %lld)", i, c, bound);
        tk_added *x = &t->added[t->n_added];
        if (!(x->content = strdup(c))) return kiln_err_set(err, TK_OOM);
        t->n_added++;
        x->len = strlen(c);
        x->id = (int32_t)id;
        x->special = json_is_true(json_object_get(a, "special"));
        x->lstrip = json_is_true(json_object_get(a, "lstrip"));
        x->rstrip = json_is_true(json_object_get(a, "rstrip"));
        x->single_word = json_is_true(json_object_get(a, "single_word"));
        x->normalized = json_is_true(json_object_get(a, "normalized"));
        if (tk_map_put(&t->added_map, x->content, x->len, x->id)) return kiln_err_set(err, TK_OOM);
        if (x->id > t->max_id) t->max_id = x->id;
    }
    return 0;
}

static int add_template(kiln_tokenizer *t, const char *name, const char *src) {
    char *n = strdup(name), *s = strdup(src);
    if (!n || !s) return free(n), free(s), -1;
    t->tmpl_names[t->n_tmpl] = n, t->tmpl_src[t->n_tmpl++] = s;
    return 0;
}

/* chat_template: one string, or a list of {name, template}. */
static int load_templates(kiln_tokenizer *t, json_t *ct) {
    size_t n = json_is_string(ct) ? 1 : json_is_array(ct) ? json_array_size(ct) : 0;
    if (!n) return 0;
    t->tmpl_names = calloc(n, sizeof(char *)), t->tmpl_src = calloc(n, sizeof(char *));
    if (!t->tmpl_names || !t->tmpl_src) return -1;
    if (json_is_string(ct)) return add_template(t, "default", json_string_value(ct));
    for (size_t i = 0; i < n; i++) {
        const char *name = json_string_value(json_object_get(json_array_get(ct, i), "name"));
        const char *src = json_string_value(json_object_get(json_array_get(ct, i), "template"));
        if (name && src && add_template(t, name, src)) return -1;
    }
    return 0;
}

/* flags: tokenizer_config.json may hold integers beyond int64 (model_max_length = 1e30). */
static json_t *load_json(const char *dir, const char *name, bool required, size_t flags, kiln_err *err) {
    char *path = kiln_path_join(dir, name);
    if (!path) return kiln_err_set(err, "%s/%s: " TK_OOM, dir, name), NULL;
    struct stat st;
    if (!required && stat(path, &st) != 0 && errno == ENOENT) return free(path), NULL; /* absent is fine */
    size_t len;
    char *text = kiln_read_file(path, &len, err);
    if (!text) return free(path), NULL;
    json_error_t je;
    json_t *j = json_loadb(text, len, JSON_ALLOW_NUL | flags, &je);
    if (!j) kiln_err_set(err, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    free(text), free(path);
    return j;
}

/* (tok_internal.h) */
json_t *tk_load_json(const char *dir, const char *name, kiln_err *err) { return load_json(dir, name, true, 0, err); }

/* tokenizer.json's pipeline: model, normalizer, pre-tokenizer, decoder, added tokens. */
static int load_pipeline(kiln_tokenizer *t, json_t *tj, kiln_err *e) {
    json_t *model = json_object_get(tj, "model"), *added = json_object_get(tj, "added_tokens");
    size_t n_added = json_array_size(added);
    if (!(t->bpe = tk_bpe_load(model, n_added, e))) return -1;
    if (!(t->norm = tk_normalizer_load(json_object_get(tj, "normalizer"), e)) && e->msg[0]) return -1;
    if (!(t->pre = tk_pretok_load(json_object_get(tj, "pre_tokenizer"), e)) && e->msg[0]) return -1;
    if (!(t->dec = tk_decoder_load(json_object_get(tj, "decoder"), e)) && e->msg[0]) return -1;
    t->max_id = (int32_t)tk_bpe_vocab_size(t->bpe) - 1;
    return load_added(t, added, (long long)(json_object_size(json_object_get(model, "vocab")) + n_added), e);
}

/* tokenizer_config.json (cfg may be NULL): special tokens, chat templates, and the post-processor. */
static int load_config(kiln_tokenizer *t, json_t *cfg, json_t *tj, kiln_err *e) {
    static const char *keys[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    int32_t *ids[4] = {&t->sp.bos_id, &t->sp.eos_id, &t->sp.pad_id, &t->sp.unk_id};
    const char **strs[4] = {&t->sp.bos_token, &t->sp.eos_token, &t->sp.pad_token, &t->sp.unk_token};
    for (int k = 0; k < 4; k++) {
        if (token_content(json_object_get(cfg, keys[k]), &t->sp_str[k])) return kiln_err_set(e, TK_OOM);
        *strs[k] = t->sp_str[k];
        *ids[k] = t->sp_str[k] ? kiln_token_id(t, t->sp_str[k]) : -1;
    }
    if (load_templates(t, json_object_get(cfg, "chat_template"))) return kiln_err_set(e, TK_OOM);
    t->clean_up_spaces = json_is_true(json_object_get(cfg, "clean_up_tokenization_spaces"));
    const char *cls = json_string_value(json_object_get(cfg, "tokenizer_class"));
    bool llama_like = cls && (!strncmp(cls, "LlamaTokenizer", 14) || !strncmp(cls, "CodeLlamaTokenizer", 18) ||
                              !strncmp(cls, "GemmaTokenizer", 14));
    if (llama_like) { /* update_post_processor: defaults add_bos_token=True, add_eos_token=False */
        json_t *ab = json_object_get(cfg, "add_bos_token"), *ae = json_object_get(cfg, "add_eos_token");
        bool bos = ab ? json_is_true(ab) : true, eos = ae ? json_is_true(ae) : false;
        t->post = tk_post_bos_eos(bos ? t->sp.bos_id : -1, eos ? t->sp.eos_id : -1);
        return t->post ? 0 : kiln_err_set(e, TK_OOM);
    }
    t->post = tk_post_load(json_object_get(tj, "post_processor"), t->max_id + 1, e);
    return t->post ? 0 : -1;
}

kiln_tokenizer *tk_tokenizer_build(json_t *tj, json_t *cfg, const char *where, kiln_err *err) {
    kiln_tokenizer *t = calloc(1, sizeof *t);
    kiln_err e = {0};
    if (!t) kiln_err_set(&e, TK_OOM);
    else t->max_id = -1;
    if (!t || load_pipeline(t, tj, &e) || load_config(t, cfg, tj, &e)) {
        kiln_err_set(err, "%s: %s", where, e.msg);
        kiln_tokenizer_free(t);
        t = NULL;
    }
    return t;
}

kiln_tokenizer *kiln_tokenizer_open(const char *dir, kiln_err *err) {
    if (tk_gguf_source(dir)) return tk_gguf_open(dir, err);
    json_t *tj = load_json(dir, "tokenizer.json", true, 0, err);
    if (!tj) return NULL;
    kiln_err ce = {0};
    json_t *cfg = load_json(dir, "tokenizer_config.json", false, JSON_DECODE_INT_AS_REAL, &ce);
    if (!cfg && ce.msg[0]) return json_decref(tj), kiln_err_set(err, "%s", ce.msg), NULL;
    char *where = kiln_path_join(dir, "tokenizer.json");
    kiln_tokenizer *t = where ? tk_tokenizer_build(tj, cfg, where, err) : NULL;
    if (!where) kiln_err_set(err, "%s/tokenizer.json: " TK_OOM, dir);
    free(where), json_decref(tj), json_decref(cfg);
    return t;
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
    strbuf norm;
} enc_ctx;

static int on_piece(void *c, const char *s, size_t n) {
    enc_ctx *e = c;
    return tk_bpe_encode(e->t->bpe, s, n, e->ids);
}

static int on_segment(void *c, const char *s, size_t n, int32_t id) {
    enc_ctx *e = c;
    if (id >= 0) return tk_ids_add(e->ids, id);
    strbuf_clear(&e->norm);
    size_t limit = n > (SIZE_MAX - TK_NORM_SLACK) / TK_NORM_GROWTH ? SIZE_MAX : n * TK_NORM_GROWTH + TK_NORM_SLACK;
    int rc = tk_normalize(e->t->norm, s, n, limit, &e->norm);
    if (rc) return rc;
    return e->norm.len ? tk_pretokenize(e->t->pre, e->norm.p, e->norm.len, on_piece, e) : 0;
}

/* The ids of text before the post-processor. */
static int encode_raw(const kiln_tokenizer *t, const char *text, size_t len, tk_ids *raw) {
    strbuf clean = {0}; /* Python strings are valid Unicode: map invalid bytes to U+FFFD first */
    enc_ctx e = {t, raw, {0}};
    int rc = tk_utf8_lossy(&clean, text, len);
    if (!rc) rc = tk_split_added(t, clean.p ? clean.p : "", clean.len, on_segment, &e);
    strbuf_free(&e.norm), strbuf_free(&clean);
    return rc;
}

int kiln_encode(const kiln_tokenizer *t, const char *text, size_t len, bool add_special, int32_t **ids,
                size_t *n_ids, kiln_err *err) {
    *ids = NULL, *n_ids = 0;
    tk_ids raw = {0}, out = {0};
    int rc = encode_raw(t, text, len, &raw);
    if (!rc && add_special) rc = tk_post_apply(t->post, &raw, &out);
    if (!add_special) out = raw, raw = (tk_ids){0};
    free(raw.p);
    if (!rc && !out.p && !(out.p = malloc(sizeof(int32_t)))) rc = -1;
    free(rc ? out.p : NULL);
    if (rc == TK_TOO_LONG)
        return kiln_err_set(err, "encode: the tokenizer's normalizer makes the text more than %d times longer",
                            TK_NORM_GROWTH);
    if (rc == TK_REGEX_FAILED) return kiln_err_set(err, "encode: the pre-tokenizer's regex failed (PCRE2 match limit)");
    if (rc) return kiln_err_set(err, "encode: " TK_OOM);
    *ids = out.p, *n_ids = out.n;
    return 0;
}

/* ---- decode ---- */
static const char *id_str(const kiln_tokenizer *t, int32_t id) {
    const tk_added *a = tk_added_by_id(t, id);
    return a ? a->content : tk_bpe_token_str(t->bpe, id);
}

/* Raw decoded bytes (before the lossy UTF-8 pass). */
static int decode_raw(const kiln_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, bool stream, strbuf *out) {
    if (n >= SIZE_MAX / sizeof(char *)) return -1;
    const char **toks = malloc((n + 1) * sizeof *toks);
    if (!toks) return -1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip_special && kiln_token_is_special(t, ids[i])) continue;
        const char *s = id_str(t, ids[i]);
        if (s) toks[m++] = s;
    }
    int rc = tk_decode_tokens(t->dec, toks, m, stream, out);
    free(toks);
    return rc;
}

/* transformers' clean_up_tokenization (when clean_up_tokenization_spaces is set); in place. */
static void clean_up(strbuf *b) {
    static const char *pats[][2] = {{" .", "."}, {" ?", "?"}, {" !", "!"}, {" ,", ","}, {" ' ", "'"}, {" n't", "n't"},
                                    {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
    for (size_t p = 0; p < sizeof pats / sizeof pats[0]; p++) {
        size_t pn = strlen(pats[p][0]), rn = strlen(pats[p][1]), w = 0;
        for (size_t r = 0; r < b->len;) {
            if (r + pn <= b->len && !memcmp(b->p + r, pats[p][0], pn)) memmove(b->p + w, pats[p][1], rn), w += rn, r += pn;
            else b->p[w++] = b->p[r++];
        }
        b->len = w;
        if (b->p) b->p[w] = 0;
    }
}

char *kiln_decode(const kiln_tokenizer *t, const int32_t *ids, size_t n, bool skip_special, size_t *out_len) {
    strbuf raw = {0}, out = {0};
    int rc = decode_raw(t, ids, n, skip_special, false, &raw) || tk_utf8_lossy(&out, raw.p, raw.len) ? -1 : 0;
    strbuf_free(&raw);
    if (!rc && t->clean_up_spaces) clean_up(&out);
    char *s = rc ? NULL : strbuf_take(&out, out_len);
    if (!s) strbuf_free(&out);
    if (!s && out_len) *out_len = 0;
    return s;
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
    strbuf out;
};

kiln_detok *kiln_detok_new(const kiln_tokenizer *t, bool skip_special) {
    kiln_detok *d = calloc(1, sizeof *d);
    if (d) d->t = t, d->skip = skip_special;
    return d;
}

void kiln_detok_free(kiln_detok *d) {
    if (d) free(d->ids.p), strbuf_free(&d->out), free(d);
}

/* Appends to fresh the raw bytes that window ids[prefix..] adds beyond ids[prefix..read); if a decoder
 * rewrote the earlier text so it is no longer a prefix, the whole window counts as new. */
static int window_new(kiln_detok *d, bool stream, strbuf *fresh) {
    strbuf prev = {0}, cur = {0};
    int rc = decode_raw(d->t, d->ids.p + d->prefix, d->read - d->prefix, d->skip, true, &prev) ||
             decode_raw(d->t, d->ids.p + d->prefix, d->ids.n - d->prefix, d->skip, stream, &cur);
    if (!rc) {
        size_t k = prev.len <= cur.len && (prev.len == 0 || !memcmp(prev.p, cur.p, prev.len)) ? prev.len : 0;
        rc = strbuf_put(fresh, cur.p ? cur.p + k : "", cur.len - k);
    }
    strbuf_free(&prev), strbuf_free(&cur);
    return rc ? -1 : 0;
}

/* Context ids (a prompt) the next pushes decode against, emitting nothing for them. Only the last few
 * are kept: enough for the decoders that look at a neighbour (Metaspace's leading space, Strip), as
 * vLLM's incremental detokenizer starts 5 tokens back. */
#define DETOK_CONTEXT 6
int kiln_detok_prime(kiln_detok *d, const int32_t *ids, size_t n) {
    size_t from = n > DETOK_CONTEXT ? n - DETOK_CONTEXT : 0;
    d->ids.n = 0;
    for (size_t i = from; i < n; i++)
        if (tk_ids_add(&d->ids, ids[i])) {
            d->ids.n = 0; /* out of memory: no context (as a fresh detokenizer) */
            break;
        }
    d->prefix = 0;
    d->read = d->ids.n;
    return d->ids.n == n - from ? 0 : -1;
}

const char *kiln_detok_push(kiln_detok *d, int32_t id, size_t *len) {
    *len = 0;
    if (tk_ids_add(&d->ids, id)) return NULL;
    strbuf fresh = {0};
    strbuf_clear(&d->out);
    int rc = window_new(d, true, &fresh) || strbuf_put(&d->out, "", 0) ? -1 : 0;
    if (!rc && fresh.len && !tk_utf8_incomplete_tail(fresh.p, fresh.len)) {
        rc = tk_utf8_lossy(&d->out, fresh.p, fresh.len);
        if (!rc) d->prefix = d->read, d->read = d->ids.n;
    }
    strbuf_free(&fresh);
    if (rc) { /* out of memory: as if id had not been pushed */
        d->ids.n--;
        return NULL;
    }
    *len = d->out.len;
    return d->out.p;
}

const char *kiln_detok_flush(kiln_detok *d, size_t *len) {
    *len = 0;
    strbuf fresh = {0};
    strbuf_clear(&d->out);
    int rc = window_new(d, false, &fresh) || strbuf_put(&d->out, "", 0) || tk_utf8_lossy(&d->out, fresh.p, fresh.len);
    strbuf_free(&fresh);
    if (rc) return NULL;
    d->prefix = d->read = d->ids.n;
    *len = d->out.len;
    return d->out.p;
}
