/* gguf_write.c — kiln_gguf_write: a safetensors checkpoint as a GGUF v3 file that llama.cpp's tools load.
 *
 * What llama.cpp's converter (convert_hf_to_gguf.py) and llama-quantize would write, for every architecture
 * kiln runs: general.* and the `{arch}.*` keys (the one key table, gguf_keys.h, that the reader walks too:
 * experts, window, soft-caps, local RoPE base and longrope keys where the config has them; the window layers
 * as a per-layer array where they are not the architecture's default period), the tensors under their GGUF
 * names (tensors.c) in the formats a load with the same options gives them (weight_format: the llama-quantize
 * mixes included) — Gemma's norms as 1 + w, Phi-3's fused qkv_proj / gate_up_proj whole (attn_qkv, ffn_up),
 * each layer's experts stacked into one [experts, rows, cols] tensor (ffn_{gate,up,down}_exps), attn_q /
 * attn_k rows of llama-architecture models permuted per head as the converter permutes them — rope_freqs for
 * Llama 3 rope scaling, longrope's rope_factors_long / _short, and the tokenizer (tokenizer.ggml.*,
 * tokenizer.chat_template; gguf_export.c). Data aligned to 32 bytes (the default).
 *
 * Mistral (and Phi-3, and a windowed Qwen) carry their sliding window in {arch}.attention.sliding_window,
 * which kiln applies; llama.cpp's converter writes none for Mistral and llama.cpp's llama, phi3 and qwen
 * builds ignore it, so the writer warns that llama.cpp runs such a file without its window.
 *
 * The header is built in memory, the tensors are converted one at a time and streamed out, into a
 * temporary file beside the target. Its config is then read back and must be the checkpoint's in every
 * field that decides the forward pass (gguf_config_differs); only then is it renamed over the target. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/strbuf.h"
#include "kernels/format.h"
#include "model/gguf.h"
#include "model/gguf_keys.h"
#include "model/gguf_model.h"
#include "model/model.h"
#include "runtime/threadpool.h"
#include "tokenizer/tok_internal.h"

#define ALIGN 32

/* One tensor of the file: a checkpoint tensor (a fused one whole), a stack of experts' matrices, or one
 * the writer computes (extra: rope_freqs, longrope's factors). */
typedef struct out_tensor {
    char name[160];
    const tensor_desc *desc; /* NULL: an extra tensor */
    int layer;
    const st_tensor *src[KILN_MAX_EXPERTS]; /* src[e]: expert e of a stack; else src[0] */
    int n_src;                              /* 0 for an extra tensor */
    bool stack;                             /* a per-expert row: a [n_src, rows, cols] stack */
    int64_t rows, cols; /* cols 0: a vector of rows values */
    kiln_dtype dt;
    int heads; /* > 0: rows permuted per head (llama-arch q/k) */
    const float *extra; /* the values of an extra tensor (rows f32) */
    size_t offset, bytes;
} out_tensor;

typedef struct writer {
    const kiln_config *cfg;
    st_set shards;
    out_tensor *t;
    int n, cap;
    const char *arch; /* its GGUF name */
    bool permuted, windows;
    int swa_pattern;
    float *rope_freqs;
    strbuf kv;
    uint64_t n_kv;
    int failed; /* an append ran out of memory */
} writer;

/* ---- the metadata ---- */

static void put(writer *w, const void *p, size_t n) { w->failed |= strbuf_put(&w->kv, p, n); }
static void put_u32(writer *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(writer *w, uint64_t v) { put(w, &v, 8); }
static void put_strn(writer *w, const char *s, size_t n) { put_u64(w, n), put(w, s, n); }
static void key(writer *w, const char *k, gguf_vtype t) { put_strn(w, k, strlen(k)), put_u32(w, t), w->n_kv++; }

static void kv_u32(writer *w, const char *k, uint32_t v) { key(w, k, GGUF_UINT32), put_u32(w, v); }
static void kv_f32(writer *w, const char *k, float v) { key(w, k, GGUF_FLOAT32), put(w, &v, 4); }
static void kv_i32(writer *w, const char *k, int32_t v) { key(w, k, GGUF_INT32), put(w, &v, 4); }
static void kv_bool(writer *w, const char *k, bool v) {
    const uint8_t b = v;
    key(w, k, GGUF_BOOL), put(w, &b, 1);
}
static void kv_str(writer *w, const char *k, const char *s) { key(w, k, GGUF_STRING), put_strn(w, s, strlen(s)); }
static void kv_arr(writer *w, const char *k, gguf_vtype elem, uint64_t n) {
    key(w, k, GGUF_ARRAY), put_u32(w, elem), put_u64(w, n);
}
static void kv_strs(writer *w, const char *k, const char *const *s, const size_t *len, size_t n) {
    kv_arr(w, k, GGUF_STRING, n);
    for (size_t i = 0; i < n; i++) put_strn(w, s[i], len[i]);
}
static void kv_id(writer *w, const char *what, int32_t id) {
    char k[64];
    snprintf(k, sizeof k, "tokenizer.ggml.%s_token_id", what);
    if (id >= 0) kv_u32(w, k, (uint32_t)id);
}

/* llama.cpp's llama_ftype for the request (general.file_type), or -1 when it has none. */
static int file_type(const weight_request *rq, kiln_dtype stored) {
    static const struct {
        int quant, ftype;
    } Q[] = {{KILN_DT_Q8_0, 7}, {KILN_DT_Q4_0, 2}, {KILN_DT_Q6_K, 18}, {KILN_QUANT_Q4_K_M, 15}, {KILN_QUANT_Q5_K_M, 17}};
    for (size_t i = 0; rq->quant >= 0 && i < sizeof Q / sizeof Q[0]; i++)
        if (Q[i].quant == rq->quant) return Q[i].ftype;
    if (rq->quant >= 0) return -1;
    const kiln_dtype f = rq->dtype >= 0 ? (kiln_dtype)rq->dtype : stored;
    return f == KILN_DT_F32 ? 0 : f == KILN_DT_F16 ? 1 : f == KILN_DT_BF16 ? 32 : -1;
}

static void general(writer *w, const char *arch, const char *dir, int ftype) {
    kv_str(w, "general.architecture", arch);
    kv_str(w, "general.type", "model");
    const char *base = strrchr(dir, '/');
    char name[256];
    snprintf(name, sizeof name, "%s", base && base[1] ? base + 1 : dir);
    if (name[0]) kv_str(w, "general.name", name);
    if (ftype >= 0) kv_u32(w, "general.file_type", (uint32_t)ftype);
    kv_u32(w, "general.quantization_version", 2);
}

/* Whether the window layers of c are what llama.cpp (and kiln's reader) assume from the window alone. */
static bool default_window_layers(const writer *w) {
    for (int l = 0; l < w->cfg->n_layers; l++)
        if (kiln_config_layer_windowed(w->cfg, l) != gguf_swa_period_windows(w->swa_pattern, l)) return false;
    return true;
}

/* The `{arch}.*` keys: every row of the table the config asks for, the window layers where they are not
 * the architecture's default period, then rope scaling. */
static void hyperparameters(writer *w, const char *arch) {
    const kiln_config *c = w->cfg;
    char k[160];
    for (size_t i = 0; i < gguf_n_arch_keys; i++) {
        const gguf_arch_key *a = &gguf_arch_keys[i];
        if (!gguf_key_written(a, c)) continue;
        const char *f = (const char *)c + a->field;
        snprintf(k, sizeof k, "%s.%s", arch, a->suffix);
        if (a->kind == GK_INT) {
            int v;
            memcpy(&v, f, sizeof v);
            kv_u32(w, k, (uint32_t)v);
        } else kv_f32(w, k, a->kind == GK_FLOAT ? *(const float *)(const void *)f : (float)*(const double *)(const void *)f);
    }
    if (c->sliding_window > 0 && !default_window_layers(w)) {
        snprintf(k, sizeof k, "%s." GK_WINDOW_PATTERN, arch);
        kv_arr(w, k, GGUF_BOOL, (uint64_t)c->n_layers);
        for (int l = 0; l < c->n_layers; l++) {
            const uint8_t on = kiln_config_layer_windowed(c, l);
            put(w, &on, 1);
        }
    }
    if (c->rope_type == KILN_ROPE_LINEAR) {
        snprintf(k, sizeof k, "%s.rope.scaling.type", arch), kv_str(w, k, "linear");
        snprintf(k, sizeof k, "%s.rope.scaling.factor", arch), kv_f32(w, k, (float)c->rope_factor);
    }
}

/* The checkpoint's generation defaults, read as kiln reads them (kiln_gen_params_load), so the file
 * generates as its checkpoint does:
 * - generation_config.json's sampling fields as llama.cpp's general.sampling.* keys. kiln's reader and
 *   llama.cpp take a temperature > 0 as "sample", so a config that does not sample writes temp 0 (llama.cpp's
 *   converter copies the temperature whatever do_sample says). kiln's repetition penalty covers the whole
 *   context, llama.cpp's the last 64 tokens unless penalty_last_n is -1.
 * - end-of-generation ids beyond the tokenizer's eos (Llama 3's <|eom_id|>, <|eot_id|>) as the eot and eom
 *   ids, which kiln's reader and llama.cpp stop on too. */
static int generation(writer *w, const char *dir, int32_t eos, kiln_err *err) {
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    if (kiln_gen_params_load(&p, dir, err)) return -1;
    char path[4096];
    struct stat st;
    if (snprintf(path, sizeof path, "%s/generation_config.json", dir) < (int)sizeof path && stat(path, &st) == 0) {
        kv_f32(w, "general.sampling.temp", p.do_sample ? p.temperature : 0);
        kv_i32(w, "general.sampling.top_k", p.top_k);
        kv_f32(w, "general.sampling.top_p", p.top_p);
        kv_f32(w, "general.sampling.min_p", p.min_p);
        kv_f32(w, "general.sampling.penalty_repeat", p.repetition_penalty);
        if (p.repetition_penalty != 1) kv_i32(w, "general.sampling.penalty_last_n", -1);
    }
    static const char *const more[] = {"eot", "eom"};
    int n = 0;
    for (int i = 0; i < p.n_eos; i++) {
        if (p.eos_ids[i] == eos) continue;
        if (n == 2)
            return kiln_err_set(err, "%s: %d end-of-generation ids; a GGUF file carries three (eos, eot, eom)", dir, p.n_eos);
        kv_id(w, more[n++], p.eos_ids[i]);
    }
    return 0;
}

static int tokenizer(writer *w, const char *dir, kiln_err *err) {
    tk_gguf_export x;
    if (tk_gguf_export_open(&x, dir, (size_t)w->cfg->vocab_size, w->cfg->bos_token_id, err))
        return tk_gguf_export_close(&x), -1;
    const tk_gguf_vocab *v = &x.v;
    kv_str(w, "tokenizer.ggml.model", v->model);
    kv_str(w, "tokenizer.ggml.pre", v->pre);
    kv_strs(w, "tokenizer.ggml.tokens", v->tokens, v->token_len, v->n_tokens);
    if (v->scores) kv_arr(w, "tokenizer.ggml.scores", GGUF_FLOAT32, v->n_tokens), put(w, v->scores, 4 * v->n_tokens);
    kv_arr(w, "tokenizer.ggml.token_type", GGUF_INT32, v->n_tokens), put(w, v->types, 4 * v->n_tokens);
    if (v->n_merges) kv_strs(w, "tokenizer.ggml.merges", v->merges, v->merge_len, v->n_merges);
    kv_id(w, "bos", v->bos), kv_id(w, "eos", v->eos), kv_id(w, "unknown", v->unk), kv_id(w, "padding", v->pad);
    kv_bool(w, "tokenizer.ggml.add_bos_token", v->add_bos);
    kv_bool(w, "tokenizer.ggml.add_eos_token", v->add_eos);
    if (v->chat_template) kv_str(w, "tokenizer.chat_template", v->chat_template);
    const int rc = generation(w, dir, v->eos, err);
    tk_gguf_export_close(&x);
    return rc;
}

/* ---- the tensors ---- */

static out_tensor *add(writer *w, kiln_err *err) {
    if (w->n == w->cap) {
        int nc = w->cap ? w->cap * 2 : 64;
        out_tensor *p = realloc(w->t, (size_t)nc * sizeof *p);
        if (!p) return kiln_err_set(err, "out of memory"), NULL;
        w->t = p, w->cap = nc;
    }
    out_tensor *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    return t;
}

/* The stack a per-expert row's expert e > 0 joins (planned at expert 0, the entry before the others'). */
static out_tensor *stack_of(writer *w, const tensor_desc *row, int layer) {
    for (int i = w->n - 1; i >= 0; i--)
        if (w->t[i].desc == row && w->t[i].layer == layer) return &w->t[i];
    return NULL;
}

/* One tensor of the walk: a tensor stored whole is one entry; a fused tensor (Phi-3's qkv_proj, gate_up_proj)
 * is written whole at its first slice, as llama.cpp stores it (attn_qkv, ffn_up holding gate | up); each
 * expert's matrix joins its layer's stack (ffn_{gate,up,down}_exps). */
static int plan_tensor(void *ud, const tensor_desc *d, int layer, const char *name, int64_t rows, int64_t cols,
                       kiln_err *err) {
    writer *w = ud;
    const st_tensor *src;
    int64_t stored_rows, first_row;
    tensor_stored_rows(w->cfg, d, &stored_rows, &first_row);
    if (first_row > 0) return 0; /* a later slice of a fused tensor planned whole at its first */
    if (model_find_tensor(&w->shards, d, name, stored_rows, cols, &src, err)) return -1;
    if (!src) return 0;
    out_tensor *t = d->per_expert && d->expert > 0 ? stack_of(w, tensor_row(d), layer) : NULL;
    if (t) return t->src[t->n_src++] = src, 0;
    if (!(t = add(w, err))) return -1;
    tensor_name(d, true, layer, t->name, sizeof t->name);
    t->desc = tensor_row(d), t->layer = layer, t->src[0] = src, t->n_src = 1, t->stack = d->per_expert;
    t->rows = d->fused_rows != DIM_NONE ? stored_rows : rows, t->cols = cols;
    t->heads = w->permuted ? gguf_permuted_heads(w->cfg, d, layer) : 0;
    return 0;
}

/* An extra f32 vector tensor of n values (kept by the writer until the end). */
static int add_extra(writer *w, const char *name, const float *v, int n, kiln_err *err) {
    out_tensor *t = add(w, err);
    if (!t) return -1;
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rows = n, t->extra = v;
    return 0;
}

/* llama.cpp's converter's rope_freqs for Llama 3 scaling (LlamaModel.generate_extra_tensors), in float32
 * as its torch code computes them. */
static float *llama3_rope_freqs(const kiln_config *c) {
    const int n = c->head_dim / 2;
    float *f = malloc((size_t)n * sizeof *f);
    if (!f) return NULL;
    const float old = (float)c->rope_original_max_pos, lo = (float)c->rope_low_freq_factor,
                hi = (float)c->rope_high_freq_factor, factor = (float)c->rope_factor;
    const float low_wavelen = old / lo, high_wavelen = old / hi;
    for (int i = 0; i < n; i++) {
        const float freq = 1.0f / powf((float)c->rope_theta, (float)(2 * i) / (float)c->head_dim);
        const float wavelen = 2.0f * (float)M_PI / freq;
        if (wavelen < high_wavelen) f[i] = 1.0f;
        else if (wavelen > low_wavelen) f[i] = factor;
        else {
            const float smooth = (old / wavelen - lo) / (hi - lo);
            f[i] = 1.0f / ((1.0f - smooth) / factor + smooth);
        }
    }
    return f;
}

/* Every tensor's format (weight_format, as a load with rq gives it), size and offset. */
static void layout(writer *w, const weight_request *rq, size_t *total) {
    bool untied = false;
    for (int i = 0; i < w->n; i++) untied |= w->t[i].desc && w->t[i].desc->role == ROLE_OUTPUT;
    *total = 0;
    for (int i = 0; i < w->n; i++) {
        out_tensor *t = &w->t[i];
        if (t->desc) {
            const tensor_role r = t->desc->role;
            const weight_slot s = {t->desc, t->layer, w->cfg->n_layers, r == ROLE_OUTPUT || (r == ROLE_EMBEDDING && !untied),
                                   t->src[0]->dt, (int)t->cols, w->cfg->n_experts};
            t->dt = weight_format(rq, &s);
        } else t->dt = KILN_DT_F32;
        t->bytes = weight_bytes(t->dt, t->rows, t->cols) * (size_t)(t->stack ? t->n_src : 1);
        t->offset = *total;
        *total += (t->bytes + ALIGN - 1) / ALIGN * ALIGN;
    }
}

static void tensor_infos(writer *w) {
    for (int i = 0; i < w->n; i++) {
        const out_tensor *t = &w->t[i];
        put_strn(w, t->name, strlen(t->name));
        put_u32(w, t->stack ? 3 : t->cols ? 2 : 1);
        if (t->cols) put_u64(w, (uint64_t)t->cols);
        put_u64(w, (uint64_t)t->rows);
        if (t->stack) put_u64(w, (uint64_t)t->n_src);
        put_u32(w, (uint32_t)kern_formats[t->dt].gguf_type);
        put_u64(w, t->offset);
    }
}

/* ---- the file ---- */

static int write_all(FILE *f, const void *p, size_t n, const char *path, kiln_err *err) {
    if (n && fwrite(p, 1, n, f) != n) return kiln_err_set(err, "%s: write failed (%s)", path, strerror(errno));
    return 0;
}

static int pad(FILE *f, size_t n, const char *path, kiln_err *err) {
    static const char zeros[ALIGN];
    return write_all(f, zeros, (ALIGN - n % ALIGN) % ALIGN, path, err);
}

/* Matrix src (rows x cols of t, stored as src_t) converted (and permuted) into dst. */
static int convert_mat(kiln_pool *pool, const out_tensor *t, const st_tensor *src, char *dst, kiln_err *err) {
    const size_t bytes = weight_bytes(t->dt, t->rows, t->cols);
    char *out = t->heads ? malloc(bytes) : dst;
    if (!out || kern_convert_mat(pool, out, t->dt, src->data, src->dt, (int)t->rows, (int)t->cols, KERN_LAYOUT_PLAIN)) {
        if (out != dst) free(out);
        return kiln_err_set(err, "out of memory converting %s", t->name);
    }
    if (t->heads) gguf_permute_rows(dst, out, t->rows, bytes / (size_t)t->rows, t->heads, true), free(out);
    return 0;
}

/* Tensor t converted into buf (t->bytes): a vector in f32 (Gemma's norms as 1 + w, as llama.cpp's converter
 * writes them), a matrix, each expert of a stack after the one before. */
static int convert(const writer *w, kiln_pool *pool, const out_tensor *t, char *buf, kiln_err *err) {
    if (t->extra) return memcpy(buf, t->extra, t->bytes), 0;
    if (!t->cols) {
        float *v = (float *)(void *)buf;
        kern_row_to_f32(v, t->src[0]->data, t->src[0]->dt, (int)t->rows);
        char hf[160];
        tensor_name(t->desc, false, t->layer, hf, sizeof hf);
        model_apply_norm_offset(w->cfg, hf, v, t->rows);
        return 0;
    }
    const size_t each = t->bytes / (size_t)t->n_src;
    for (int e = 0; e < t->n_src; e++)
        if (convert_mat(pool, t, t->src[e], buf + (size_t)e * each, err)) return -1;
    return 0;
}

static int write_file(writer *w, FILE *f, const char *path, const kiln_model_opts *o, size_t total, kiln_err *err) {
    strbuf head = {0};
    const uint32_t version = 3;
    const uint64_t nt = (uint64_t)w->n;
    int rc = strbuf_put(&head, "GGUF", 4) || strbuf_put(&head, &version, 4) || strbuf_put(&head, &nt, 8) ||
                     strbuf_put(&head, &w->n_kv, 8)
                 ? kiln_err_set(err, "out of memory")
                 : 0;
    if (!rc) rc = write_all(f, head.p, head.len, path, err);
    if (!rc) rc = write_all(f, w->kv.p, w->kv.len, path, err);
    if (!rc) rc = pad(f, head.len + w->kv.len, path, err);
    strbuf_free(&head);
    kiln_pool *pool = rc ? NULL : kiln_pool_new(o->threads);
    if (!rc && !pool) rc = kiln_err_set(err, "cannot start %d threads", o->threads);
    size_t done = 0;
    for (int i = 0; !rc && i < w->n; i++) {
        const out_tensor *t = &w->t[i];
        char *buf = malloc(t->bytes + 1);
        rc = buf ? convert(w, pool, t, buf, err) : kiln_err_set(err, "out of memory (%s)", t->name);
        if (!rc) rc = write_all(f, buf, t->bytes, path, err);
        if (!rc) rc = pad(f, t->bytes, path, err);
        free(buf);
        for (int e = 0; e < t->n_src; e++) model_drop_source_pages(&w->shards, t->src[e]->data, t->src[e]->nbytes);
        done = t->offset + (t->bytes + ALIGN - 1) / ALIGN * ALIGN;
        if (!rc && o->progress && !o->quiet) o->progress(o->cb_ud, done, total);
    }
    if (pool) kiln_pool_free(pool);
    return rc;
}

/* ---- the round trip ---- */

/* The kiln_config fields that decide what the forward pass computes, and how the file keeps each: exactly,
 * as an f32 key (doubles), or computed by the reader as llama.cpp computes it (within float rounding). */
typedef enum { SAME, AS_F32, NEAR } field_kind;
#define FIELD(f, k) {#f, offsetof(kiln_config, f), sizeof(((kiln_config *)0)->f), k}
static const struct {
    const char *name;
    size_t off, size;
    field_kind kind;
} fields[] = {
    FIELD(arch, SAME), FIELD(hidden_size, SAME), FIELD(intermediate_size, SAME), FIELD(n_layers, SAME),
    FIELD(n_heads, SAME), FIELD(n_kv_heads, SAME), FIELD(head_dim, SAME), FIELD(vocab_size, SAME),
    FIELD(max_position_embeddings, SAME), FIELD(rms_norm_eps, SAME), FIELD(rope_theta, AS_F32),
    FIELD(rope_type, SAME), FIELD(rope_factor, AS_F32), FIELD(rope_low_freq_factor, SAME),
    FIELD(rope_high_freq_factor, SAME), FIELD(rope_original_max_pos, SAME), FIELD(tie_word_embeddings, SAME),
    FIELD(attention_bias, SAME), FIELD(qk_norm, SAME), FIELD(sliding_window, SAME), FIELD(swa_layers, SAME),
    FIELD(norm_offset, SAME), FIELD(sandwich_norms, SAME), FIELD(hidden_act, SAME), FIELD(embed_scale, NEAR),
    FIELD(attn_scale, NEAR), FIELD(attn_logit_softcap, SAME), FIELD(final_logit_softcap, SAME),
    FIELD(rope_local_theta, AS_F32), FIELD(fused_proj, SAME), FIELD(no_pre_norms, SAME), FIELD(post_norms, SAME),
    FIELD(qk_norm_full, SAME), FIELD(rope_dim, SAME), FIELD(rope_attn_factor, AS_F32),
    FIELD(rope_short_factor, SAME), FIELD(rope_long_factor, SAME), FIELD(n_experts, SAME),
    FIELD(n_experts_used, SAME), FIELD(expert_ffn_size, SAME), FIELD(norm_topk_prob, SAME),
};

/* The config a GGUF written from c gives when read back: Mistral is labelled llama, Gemma's norms hold
 * 1 + w, Llama 3 scaling is the rope_freqs tensor (a plain RoPE divided by it). */
void gguf_expected_config(const kiln_config *c, kiln_config *want) {
    *want = *c;
    if (want->arch == KILN_ARCH_MISTRAL) want->arch = KILN_ARCH_LLAMA;
    want->norm_offset = false;
    if (want->rope_type == KILN_ROPE_LLAMA3) {
        want->rope_type = KILN_ROPE_DEFAULT, want->rope_factor = 1.0;
        want->rope_low_freq_factor = want->rope_high_freq_factor = 0, want->rope_original_max_pos = 0;
    }
}

const char *gguf_config_differs(const kiln_config *want, const kiln_config *got) {
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *a = (const char *)want + fields[i].off, *b = (const char *)got + fields[i].off;
        bool same;
        if (fields[i].kind == AS_F32) same = (float)*(const double *)(const void *)a == (float)*(const double *)(const void *)b;
        else if (fields[i].kind == NEAR) {
            const float x = *(const float *)(const void *)a, y = *(const float *)(const void *)b;
            same = fabsf(x - y) <= 1e-6f * fabsf(x);
        } else same = !memcmp(a, b, fields[i].size);
        if (!same) return fields[i].name;
    }
    return NULL;
}

/* The written file (tmp) read back gives the checkpoint's config, or the write is refused naming the field
 * the GGUF cannot carry (e.g. a Gemma query_pre_attn_scalar llama.cpp does not derive). */
static int check_round_trip(const writer *w, const char *tmp, const char *path, kiln_err *err) {
    kiln_config want, got;
    gguf_expected_config(w->cfg, &want);
    if (gguf_config_load(tmp, &got, err)) return -1;
    const char *field = gguf_config_differs(&want, &got);
    if (field)
        return kiln_err_set(err, "%s: %s's %s would read back from the GGUF differently (llama.cpp's %s keys cannot "
                                 "say it): not written", path, w->cfg->architecture, field, w->arch);
    return 0;
}

/* Writes the file into a temporary beside path, renamed over path when complete; removed on failure. */
static int write_atomic(writer *w, const char *path, const kiln_model_opts *o, size_t total, kiln_err *err) {
    const size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp) return kiln_err_set(err, "out of memory");
    snprintf(tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        kiln_err_set(err, "%s: cannot create (%s)", path, strerror(errno));
        return free(tmp), -1;
    }
    const mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask)) { /* mkstemp's 0600: the file gets what open(2) would give it */
        kiln_err_set(err, "%s: %s", tmp, strerror(errno));
        return close(fd), unlink(tmp), free(tmp), -1;
    }
    FILE *f = fdopen(fd, "wb");
    int rc = f ? write_file(w, f, path, o, total, err) : kiln_err_set(err, "%s: %s", tmp, strerror(errno));
    if (f && fclose(f) && !rc) rc = kiln_err_set(err, "%s: write failed (%s)", path, strerror(errno));
    if (!f) close(fd);
    if (!rc) rc = check_round_trip(w, tmp, path, err);
    if (!rc && rename(tmp, path)) rc = kiln_err_set(err, "%s: cannot rename %s into place (%s)", path, tmp, strerror(errno));
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
}

/* The tensors the writer computes: Llama 3's rope_freqs, longrope's short and long factors. */
static int extras(writer *w, kiln_err *err) {
    const kiln_config *c = w->cfg;
    if (c->rope_type == KILN_ROPE_LLAMA3) {
        if (!(w->rope_freqs = llama3_rope_freqs(c))) return kiln_err_set(err, "out of memory");
        return add_extra(w, GGUF_ROPE_FREQS, w->rope_freqs, c->head_dim / 2, err);
    }
    if (c->rope_type != KILN_ROPE_LONGROPE) return 0;
    return add_extra(w, GGUF_ROPE_FACTORS_LONG, c->rope_long_factor, c->rope_dim / 2, err) ||
                   add_extra(w, GGUF_ROPE_FACTORS_SHORT, c->rope_short_factor, c->rope_dim / 2, err)
               ? -1
               : 0;
}

/* A window llama.cpp does not apply to the architecture (llama: Mistral; qwen2 / qwen3; phi3): kiln runs the
 * file windowed, llama.cpp without it. */
static void warn_window(const writer *w, const kiln_model_opts *o, const char *path) {
    if (w->cfg->sliding_window <= 0 || w->windows || !o->warn) return;
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s.attention.sliding_window %d written, but llama.cpp's %s ignores it and runs the "
                              "model without its window (kiln applies it)", path, w->arch, w->cfg->sliding_window, w->arch);
    o->warn(o->cb_ud, msg);
}

int kiln_gguf_write(const char *dir, const char *path, const kiln_model_opts *opts, kiln_err *err) {
    kiln_model_opts def;
    if (!opts) kiln_model_opts_default(&def), opts = &def;
    if (opts->weight_cache) return kiln_err_set(err, "writing a GGUF file takes no weight cache");
    if (gguf_source(dir)) return kiln_err_set(err, "%s: a GGUF file; kiln writes GGUF files from safetensors checkpoints", dir);
    weight_request rq;
    kiln_config cfg;
    if (weight_request_from_opts(opts, &rq, err) || kiln_config_load(dir, &cfg, err)) return -1;
    writer w = {.cfg = &cfg};
    const char *arch = w.arch = gguf_arch_name(cfg.arch, &w.permuted, &w.swa_pattern, &w.windows);
    if (!arch) return kiln_err_set(err, "%s: architecture %s has no GGUF writer in kiln yet", dir, cfg.architecture);
    kern_init();
    int rc = st_set_open(&w.shards, dir, err) || tensors_each(&cfg, plan_tensor, &w, err) || extras(&w, err) ? -1 : 0;
    size_t total = 0;
    if (!rc) {
        layout(&w, &rq, &total);
        general(&w, arch, dir, file_type(&rq, cfg.torch_dtype));
        hyperparameters(&w, arch);
        rc = tokenizer(&w, dir, err);
    }
    if (!rc) tensor_infos(&w);
    if (!rc && w.failed) rc = kiln_err_set(err, "out of memory");
    if (!rc) rc = write_atomic(&w, path, opts, total, err);
    if (!rc) warn_window(&w, opts, path);
    st_set_close(&w.shards);
    strbuf_free(&w.kv);
    free(w.t), free(w.rope_freqs);
    return rc;
}
