/* gguf_write.c — kiln_gguf_write: a safetensors checkpoint as a GGUF v3 file that llama.cpp's tools load.
 *
 * What llama.cpp's converter (convert_hf_to_gguf.py) and llama-quantize would write: general.* and the
 * `{arch}.*` keys (the one key table, gguf_keys.h, that the reader walks too), the tensors under their
 * GGUF names (tensors.c) in the formats a load with the same options gives them (weight_format: the
 * llama-quantize mixes included), attn_q / attn_k rows of llama-architecture models permuted per head
 * as the converter permutes them, rope_freqs for Llama 3 rope scaling, and the tokenizer
 * (tokenizer.ggml.*, tokenizer.chat_template; gguf_export.c). Data aligned to 32 bytes (the default).
 *
 * The header is built in memory, the tensors are converted one at a time and streamed out, into a
 * temporary file beside the target that is renamed over it only when everything is written. */
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

/* One tensor of the file. */
typedef struct out_tensor {
    char name[160];
    const tensor_desc *desc; /* NULL: rope_freqs */
    int layer;
    const st_tensor *src;
    int64_t rows, cols; /* cols 0: a vector of rows values */
    kiln_dtype dt;
    int heads; /* > 0: rows permuted per head (llama-arch q/k) */
    size_t offset, bytes;
} out_tensor;

typedef struct writer {
    const kiln_config *cfg;
    st_set shards;
    out_tensor *t;
    int n, cap;
    bool permuted;
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

/* The `{arch}.*` keys: every row of the table, then rope scaling. */
static void hyperparameters(writer *w, const char *arch) {
    const kiln_config *c = w->cfg;
    char k[160];
    for (size_t i = 0; i < gguf_n_arch_keys; i++) {
        const gguf_arch_key *a = &gguf_arch_keys[i];
        const char *f = (const char *)c + a->field;
        snprintf(k, sizeof k, "%s.%s", arch, a->suffix);
        if (a->kind == GK_INT) {
            int v;
            memcpy(&v, f, sizeof v);
            kv_u32(w, k, (uint32_t)v);
        } else kv_f32(w, k, a->kind == GK_FLOAT ? *(const float *)(const void *)f : (float)*(const double *)(const void *)f);
    }
    if (c->rope_type == KILN_ROPE_LINEAR) {
        snprintf(k, sizeof k, "%s.rope.scaling.type", arch), kv_str(w, k, "linear");
        snprintf(k, sizeof k, "%s.rope.scaling.factor", arch), kv_f32(w, k, (float)c->rope_factor);
    }
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
    tk_gguf_export_close(&x);
    return 0;
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

static int plan_tensor(void *ud, const tensor_desc *d, int layer, const char *name, int64_t rows, int64_t cols,
                       kiln_err *err) {
    writer *w = ud;
    const st_tensor *src;
    if (model_find_tensor(&w->shards, d, name, rows, cols, &src, err)) return -1;
    if (!src) return 0;
    out_tensor *t = add(w, err);
    if (!t) return -1;
    tensor_name(d, true, layer, t->name, sizeof t->name);
    t->desc = tensor_row(d), t->layer = layer, t->src = src, t->rows = rows, t->cols = cols;
    t->heads = w->permuted ? gguf_permuted_heads(w->cfg, d, layer) : 0;
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
            const weight_slot s = {t->desc, t->layer, w->cfg->n_layers,
                                   r == ROLE_OUTPUT || (r == ROLE_EMBEDDING && !untied), t->src->dt, (int)t->cols};
            t->dt = weight_format(rq, &s);
        } else t->dt = KILN_DT_F32;
        t->bytes = weight_bytes(t->dt, t->rows, t->cols);
        t->offset = *total;
        *total += (t->bytes + ALIGN - 1) / ALIGN * ALIGN;
    }
}

static void tensor_infos(writer *w) {
    for (int i = 0; i < w->n; i++) {
        const out_tensor *t = &w->t[i];
        put_strn(w, t->name, strlen(t->name));
        put_u32(w, t->cols ? 2 : 1);
        if (t->cols) put_u64(w, (uint64_t)t->cols);
        put_u64(w, (uint64_t)t->rows);
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

/* Tensor t converted (and permuted) into buf (t->bytes). */
static int convert(const writer *w, kiln_pool *pool, const out_tensor *t, char *buf, kiln_err *err) {
    if (!t->desc) return memcpy(buf, w->rope_freqs, t->bytes), 0;
    if (!t->cols) return kern_row_to_f32((float *)(void *)buf, t->src->data, t->src->dt, (int)t->rows), 0;
    char *dst = t->heads ? malloc(t->bytes) : buf;
    if (!dst || kern_convert_mat(pool, dst, t->dt, t->src->data, t->src->dt, (int)t->rows, (int)t->cols, KERN_LAYOUT_PLAIN)) {
        if (dst != buf) free(dst);
        return kiln_err_set(err, "out of memory converting %s", t->name);
    }
    if (t->heads) gguf_permute_rows(buf, dst, t->rows, t->bytes / (size_t)t->rows, t->heads, true), free(dst);
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
        if (t->src) model_drop_source_pages(&w->shards, t->src->data, t->src->nbytes);
        done = t->offset + (t->bytes + ALIGN - 1) / ALIGN * ALIGN;
        if (!rc && o->progress && !o->quiet) o->progress(o->cb_ud, done, total);
    }
    if (pool) kiln_pool_free(pool);
    return rc;
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
    if (!rc && rename(tmp, path)) rc = kiln_err_set(err, "%s: cannot rename %s into place (%s)", path, tmp, strerror(errno));
    if (rc) unlink(tmp);
    free(tmp);
    return rc;
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
    const char *arch = gguf_arch_name(cfg.arch, &w.permuted);
    if (!arch) return kiln_err_set(err, "%s: architecture %s has no GGUF writer in kiln yet", dir, cfg.architecture);
    if (cfg.sliding_window > 0)
        return kiln_err_set(err, "%s: sliding_window %d: kiln's GGUF writer does not write a window yet", dir,
                            cfg.sliding_window);
    kern_init();
    int rc = st_set_open(&w.shards, dir, err) || tensors_each(&cfg, plan_tensor, &w, err) ? -1 : 0;
    if (!rc && cfg.rope_type == KILN_ROPE_LLAMA3) {
        out_tensor *t = add(&w, err);
        if (!t || !(w.rope_freqs = llama3_rope_freqs(&cfg))) rc = t ? kiln_err_set(err, "out of memory") : -1;
        else snprintf(t->name, sizeof t->name, "%s", GGUF_ROPE_FREQS), t->rows = cfg.head_dim / 2;
    }
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
    st_set_close(&w.shards);
    strbuf_free(&w.kv);
    free(w.t), free(w.rope_freqs);
    return rc;
}
