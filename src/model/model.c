/* model.c — opens a Hugging Face checkpoint directory: config, safetensors (single or sharded), and
 * binds every tensor the config implies, checking its presence, dtype and shape.
 *
 * Zero-copy by default: matrices stay in the read-only mappings in their stored dtype and the matmul
 * kernels read them in place, so the page cache holds the only copy. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/model.h"
#include "model/weight_cache.h"

void kiln_model_opts_default(kiln_model_opts *o) {
    *o = (kiln_model_opts){.dtype = -1, .quant = -1};
}

/* The safetensors files: model.safetensors, or the shards named by model.safetensors.index.json. */
static int open_files(kiln_model *m, const char *dir, kiln_err *err) {
    char *idx = kiln_path_join(dir, "model.safetensors.index.json");
    char *idx_real = idx ? kiln_resolve_path(idx) : NULL;
    FILE *probe = idx_real ? fopen(idx_real, "rb") : NULL;
    free(idx_real);
    if (!probe) {
        free(idx);
        char *single = kiln_path_join(dir, "model.safetensors");
        char *real = single ? kiln_resolve_path(single) : NULL;
        free(single);
        if (!real) return kiln_err_set(err, "out of memory");
        m->files = calloc(1, sizeof *m->files);
        int rc = m->files ? st_open(&m->files[0], real, err) : kiln_err_set(err, "out of memory");
        if (rc == 0) m->n_files = 1;
        m->source = real;
        return rc;
    }
    fclose(probe);
    size_t len;
    char *text = kiln_read_file(idx, &len, err);
    if (!text) {
        free(idx);
        return -1;
    }
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    free(text);
    json_t *wm = json_object_get(o, "weight_map");
    int rc = 0;
    if (!json_is_object(wm)) {
        rc = kiln_err_set(err, "%s: no weight_map object%s%s", idx, o ? "" : ": ", o ? "" : je.text);
        goto done;
    }
    m->files = calloc(json_object_size(wm) + 1, sizeof *m->files);
    if (!m->files) {
        rc = kiln_err_set(err, "out of memory");
        goto done;
    }
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v) || strchr(json_string_value(v), '/')) {
            rc = kiln_err_set(err, "%s: weight_map['%s'] is not a file name", idx, name);
            goto done;
        }
        const char *fname = json_string_value(v);
        int seen = 0;
        for (int i = 0; i < m->n_files && !seen; i++) {
            const char *p = strrchr(m->files[i].path, '/');
            seen = strcmp(p ? p + 1 : m->files[i].path, fname) == 0;
        }
        if (seen) continue;
        char *path = kiln_path_join(dir, fname);
        char *real = path ? kiln_resolve_path(path) : NULL;
        free(path);
        rc = real ? st_open(&m->files[m->n_files], real, err) : kiln_err_set(err, "out of memory");
        free(real);
        if (rc) goto done;
        m->n_files++;
    }
    /* Every mapped tensor must be in the shard the index names (else the index is stale). */
    json_object_foreach(wm, name, v) {
        int found = 0;
        for (int i = 0; i < m->n_files && !found; i++) {
            const char *p = strrchr(m->files[i].path, '/');
            found = strcmp(p ? p + 1 : m->files[i].path, json_string_value(v)) == 0 && st_find(&m->files[i], name);
        }
        if (!found) {
            rc = kiln_err_set(err, "%s: tensor '%s' not found in %s", idx, name, json_string_value(v));
            goto done;
        }
    }
done:
    json_decref(o);
    m->source = idx;
    return rc;
}

static const st_tensor *find(const kiln_model *m, const char *name, const st_file **where) {
    for (int i = 0; i < m->n_files; i++) {
        const st_tensor *t = st_find(&m->files[i], name);
        if (t) {
            *where = &m->files[i];
            return t;
        }
    }
    return NULL;
}

/* Looks a tensor up and checks its shape: [d0] when d1 == 0, else [d0, d1]. */
static const st_tensor *need(kiln_model *m, const char *name, int64_t d0, int64_t d1, kiln_err *err) {
    const st_file *f = NULL;
    const st_tensor *t = find(m, name, &f);
    if (!t) {
        kiln_err_set(err, "%s: missing tensor '%s'", m->source, name);
        return NULL;
    }
    int ok = d1 ? (t->ndim == 2 && t->shape[0] == d0 && t->shape[1] == d1) : (t->ndim == 1 && t->shape[0] == d0);
    if (!ok) {
        char got[128] = "";
        size_t o = 0;
        for (int i = 0; i < t->ndim && o < sizeof got - 24; i++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
        if (d1)
            kiln_err_set(err, "%s: tensor '%s' has shape [%s], config implies [%lld, %lld]", f->path, name, got,
                         (long long)d0, (long long)d1);
        else
            kiln_err_set(err, "%s: tensor '%s' has shape [%s], config implies [%lld]", f->path, name, got,
                         (long long)d0);
        return NULL;
    }
    m->params += (size_t)d0 * (size_t)(d1 ? d1 : 1);
    return t;
}

static int bind_mat(kiln_model *m, kiln_mat *out, const char *name, int rows, int cols, kiln_err *err) {
    const st_tensor *t = need(m, name, rows, cols, err);
    if (!t) return -1;
    *out = (kiln_mat){t->data, t->dt, rows, cols, 1};
    return 0;
}

static int bind_vec(kiln_model *m, float **out, const char *name, int n, kiln_err *err) {
    const st_tensor *t = need(m, name, n, 0, err);
    if (!t) return -1;
    *out = malloc((size_t)n * sizeof(float));
    if (!*out) return kiln_err_set(err, "out of memory");
    kern_row_to_f32(*out, t->data, t->dt, n);
    m->weight_bytes += (size_t)n * sizeof(float);
    return 0;
}

static int bind_layer(kiln_model *m, int l, kiln_err *err) {
    const kiln_config *c = &m->cfg;
    kiln_layer *L = &m->layers[l];
    int H = c->hidden_size, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    char n[160];
#define NAME(suffix) (snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix), n)
    if (bind_vec(m, &L->attn_norm, NAME("input_layernorm.weight"), H, err) ||
        bind_mat(m, &L->wq, NAME("self_attn.q_proj.weight"), qd, H, err) ||
        bind_mat(m, &L->wk, NAME("self_attn.k_proj.weight"), kvd, H, err) ||
        bind_mat(m, &L->wv, NAME("self_attn.v_proj.weight"), kvd, H, err) ||
        bind_mat(m, &L->wo, NAME("self_attn.o_proj.weight"), H, qd, err) ||
        bind_vec(m, &L->ffn_norm, NAME("post_attention_layernorm.weight"), H, err) ||
        bind_mat(m, &L->w_gate, NAME("mlp.gate_proj.weight"), c->intermediate_size, H, err) ||
        bind_mat(m, &L->w_up, NAME("mlp.up_proj.weight"), c->intermediate_size, H, err) ||
        bind_mat(m, &L->w_down, NAME("mlp.down_proj.weight"), H, c->intermediate_size, err))
        return -1;
    if (c->attention_bias &&
        (bind_vec(m, &L->bq, NAME("self_attn.q_proj.bias"), qd, err) ||
         bind_vec(m, &L->bk, NAME("self_attn.k_proj.bias"), kvd, err) ||
         bind_vec(m, &L->bv, NAME("self_attn.v_proj.bias"), kvd, err)))
        return -1;
    if (c->qk_norm && (bind_vec(m, &L->q_norm, NAME("self_attn.q_norm.weight"), c->head_dim, err) ||
                       bind_vec(m, &L->k_norm, NAME("self_attn.k_norm.weight"), c->head_dim, err)))
        return -1;
#undef NAME
    return 0;
}

/* The format a matrix gets at load: Q8_0/Q4_0 need whole 32-value blocks per row, so narrower-blocked
 * matrices (e.g. stories260K's 172-wide w_down) get the float format instead (f32 unless --dtype names
 * one), as llama.cpp keeps such tensors unquantised. */
static kiln_dtype target_dtype(int quant, int dtype, int cols) {
    if (quant >= 0 && cols % 32 == 0) return (kiln_dtype)quant;
    return dtype >= 0 ? (kiln_dtype)dtype : KILN_DT_F32;
}

/* Every distinct matrix of the model (lm_head only when untied), for conversion and accounting. */
static int list_mats(kiln_model *m, kiln_mat **out) {
    int n = 0;
    out[n++] = &m->embed;
    if (m->lm_head.data != m->embed.data) out[n++] = &m->lm_head;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        kiln_layer *L = &m->layers[l];
        kiln_mat *ms[] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->w_gate, &L->w_up, &L->w_down};
        for (int i = 0; i < 7; i++) out[n++] = ms[i];
    }
    return n;
}

static size_t mat_bytes(const kiln_mat *m) { return kern_row_bytes(m->dt, m->cols) * (size_t)m->rows; }

static void warn(const kiln_model_opts *o, const char *fmt, ...) {
    if (!o->warn) return;
    char msg[1600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    o->warn(o->cb_ud, msg);
}

/* "q8_0", "q4_0-bf16" (quantised, float matrices in bf16), "bf16": names the cache file. */
static void format_tag(char *tag, size_t n, int quant, int dtype) {
    if (quant >= 0) snprintf(tag, n, "%s%s%s", kiln_dtype_name((kiln_dtype)quant), dtype >= 0 ? "-" : "",
                             dtype >= 0 ? kiln_dtype_name((kiln_dtype)dtype) : "");
    else snprintf(tag, n, "%s", kiln_dtype_name((kiln_dtype)dtype));
}

/* The source files' identity (size, mtime) for the weight cache header. */
static int source_identity(const kiln_model *m, wc_file *out, kiln_err *err) {
    for (int i = 0; i < m->n_files; i++) {
        struct stat st;
        if (stat(m->files[i].path, &st)) return kiln_err_set(err, "%s: %s", m->files[i].path, strerror(errno));
        out[i] = (wc_file){(uint64_t)st.st_size, (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec};
    }
    return 0;
}

/* A converted matrix's source pages are not read again: dropping them from this process keeps peak RSS
 * near the converted size plus one matrix, instead of both full copies. Only pages wholly inside a
 * safetensors mapping (file-backed and read-only: anything touching them again re-reads the page cache). */
static void drop_source_pages(const kiln_model *m, const void *p, size_t n) {
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = ((uintptr_t)p + pg - 1) & ~(pg - 1), b = ((uintptr_t)p + n) & ~(pg - 1);
    for (int i = 0; i < m->n_files; i++) {
        const uintptr_t lo = (uintptr_t)m->files[i].map, hi = lo + m->files[i].size;
        if (m->files[i].map && a >= lo && b <= hi && a < b) madvise((void *)a, b - a, MADV_DONTNEED);
    }
}

/* Converts every matrix into one owned buffer (or maps it from the weight cache), then drops the
 * safetensors mappings (nothing points into them any more). */
static int convert_all(kiln_model *m, const char *dir, const kiln_model_opts *o, int quant, int dtype, kiln_err *err) {
    bool tied = m->lm_head.data == m->embed.data;
    int cap = 2 + 7 * m->cfg.n_layers;
    kiln_mat **mats = malloc((size_t)cap * sizeof *mats);
    kiln_mat *want = malloc((size_t)cap * sizeof *want);
    size_t *offs = malloc((size_t)cap * sizeof *offs);
    wc_file *ident = malloc((size_t)(m->n_files + 1) * sizeof *ident);
    int rc = mats && want && offs && ident ? 0 : kiln_err_set(err, "out of memory");
    int n = rc ? 0 : list_mats(m, mats);
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        /* Q4_0 keeps the output projection (lm_head, or the embedding it is tied to) in Q8_0: every logit
         * goes through it, and llama-quantize likewise keeps it at Q6_K (Q8_0 when rows are not 256-wide). */
        bool head = mats[i] == &m->lm_head || (tied && mats[i] == &m->embed);
        int q = quant == KILN_DT_Q4_0 && head ? KILN_DT_Q8_0 : quant;
        kiln_dtype dt = target_dtype(q, dtype, mats[i]->cols);
        int il = dt == KILN_DT_Q8_0 || dt == KILN_DT_Q4_0 ? KERN_PANEL : 1;
        want[i] = (kiln_mat){NULL, dt, mats[i]->rows, mats[i]->cols, il};
        offs[i] = total;
        total += mat_bytes(&want[i]);
    }
    wc_want key = {ident, m->n_files, want, n, quant, dtype};
    bool cached = false;
    if (!rc && o->weight_cache && source_identity(m, ident, err) == 0) {
        char tag[64];
        format_tag(tag, sizeof tag, quant, dtype);
        m->cache_path = wcache_path(dir, tag);
        kiln_err why = {{0}};
        int lr = m->cache_path ? wcache_load(m->cache_path, &key, &m->cache_map, &m->cache_len, offs, &why) : 1;
        cached = lr == 0;
        if (lr < 0) warn(o, "weight cache %s: %s; rebuilding it", m->cache_path, why.msg);
    }
    if (!rc && !cached) {
        m->owned = malloc(total ? total : 1);
        if (!m->owned) rc = kiln_err_set(err, "out of memory converting weights (%zu MiB)", total >> 20);
    }
    char *base = cached ? m->cache_map : m->owned;
    size_t done = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (!cached && kern_convert_mat(m->pool, base + offs[i], want[i].dt, mats[i]->data, mats[i]->dt,
                                        mats[i]->rows, mats[i]->cols, want[i].il))
            rc = kiln_err_set(err, "out of memory converting weights");
        if (!cached && !rc) drop_source_pages(m, mats[i]->data, mat_bytes(mats[i]));
        *mats[i] = want[i];
        mats[i]->data = want[i].data = base + offs[i];
        done += mat_bytes(&want[i]);
        if (!cached && !o->quiet && o->progress) o->progress(o->cb_ud, done, total);
    }
    if (!rc && m->cache_path && !cached) {
        kiln_err why = {{0}};
        if (wcache_save(m->cache_path, &key, &why)) warn(o, "weight cache not written: %s", why.msg);
    }
    m->cache_reused = cached;
    free(mats), free(want), free(offs), free(ident);
    if (rc) return -1;
    if (tied) m->lm_head = m->embed;
    for (int i = 0; i < m->n_files; i++) st_close(&m->files[i]);
    m->n_files = 0;
    return 0;
}

/* True when every matrix already has the requested float format: nothing to convert, stay zero-copy. */
static bool already_in(kiln_model *m, int dtype) {
    kiln_mat **mats = malloc((size_t)(2 + 7 * m->cfg.n_layers) * sizeof *mats);
    bool same = mats != NULL;
    for (int i = 0, n = mats ? list_mats(m, mats) : 0; i < n; i++) same &= (int)mats[i]->dt == dtype;
    free(mats);
    return same;
}

kiln_model *kiln_model_open(const char *dir, const kiln_model_opts *opts, kiln_err *err) {
    kiln_model_opts def;
    if (!opts) {
        kiln_model_opts_default(&def);
        opts = &def;
    }
    /* dtype = Q8_0/Q4_0 is the older spelling of quant. */
    int quant = opts->quant, dtype = opts->dtype;
    if (dtype == KILN_DT_Q8_0 || dtype == KILN_DT_Q4_0) {
        if (quant >= 0 && quant != dtype) {
            kiln_err_set(err, "dtype %s contradicts quant %s", kiln_dtype_name((kiln_dtype)dtype),
                         kiln_dtype_name((kiln_dtype)quant));
            return NULL;
        }
        quant = dtype, dtype = -1;
    }
    if (dtype >= KILN_DT_Q8_0 || dtype < -1) {
        kiln_err_set(err, "bad dtype %d (want f32, f16 or bf16)", dtype);
        return NULL;
    }
    if (quant != -1 && quant != KILN_DT_Q8_0 && quant != KILN_DT_Q4_0) {
        kiln_err_set(err, "bad quant %d (want q8_0 or q4_0)", quant);
        return NULL;
    }
    kiln_model *m = calloc(1, sizeof *m);
    if (!m) {
        kiln_err_set(err, "out of memory");
        return NULL;
    }
    const kiln_config *c = &m->cfg;
    if (kiln_config_load(dir, &m->cfg, err) || open_files(m, dir, err)) goto fail;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) {
        kiln_err_set(err, "out of memory");
        goto fail;
    }
    if (bind_mat(m, &m->embed, "model.embed_tokens.weight", c->vocab_size, c->hidden_size, err)) goto fail;
    for (int l = 0; l < c->n_layers; l++)
        if (bind_layer(m, l, err)) goto fail;
    if (bind_vec(m, &m->final_norm, "model.norm.weight", c->hidden_size, err)) goto fail;
    /* As transformers: tie_word_embeddings shares the embedding; a missing lm_head also falls back to it. */
    const st_file *f;
    if (!c->tie_word_embeddings && find(m, "lm_head.weight", &f)) {
        if (bind_mat(m, &m->lm_head, "lm_head.weight", c->vocab_size, c->hidden_size, err)) goto fail;
    } else m->lm_head = m->embed;
    kern_init();
    m->pool = kiln_pool_new(opts->threads);
    if (!m->pool) {
        kiln_err_set(err, "cannot start %d threads", opts->threads);
        goto fail;
    }
    if ((quant >= 0 || (dtype >= 0 && !already_in(m, dtype))) && convert_all(m, dir, opts, quant, dtype, err))
        goto fail;
    kiln_mat **mats = malloc((size_t)(2 + 7 * c->n_layers) * sizeof *mats);
    if (!mats) {
        kiln_err_set(err, "out of memory");
        goto fail;
    }
    int n = list_mats(m, mats);
    for (int i = 0; i < n; i++) m->weight_bytes += mat_bytes(mats[i]);
    free(mats);
    return m;
fail:
    kiln_model_free(m);
    return NULL;
}

void kiln_model_free(kiln_model *m) {
    if (!m) return;
    if (m->layers)
        for (int l = 0; l < m->cfg.n_layers; l++) {
            kiln_layer *L = &m->layers[l];
            float *v[] = {L->attn_norm, L->ffn_norm, L->bq, L->bk, L->bv, L->q_norm, L->k_norm};
            for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) free(v[i]);
        }
    free(m->layers);
    free(m->final_norm);
    for (int i = 0; i < m->n_files; i++) st_close(&m->files[i]);
    free(m->files);
    free(m->source);
    free(m->owned);
    if (m->cache_map) munmap(m->cache_map, m->cache_len);
    free(m->cache_path);
    if (m->pool) kiln_pool_free(m->pool);
    free(m);
}

const kiln_config *kiln_model_config(const kiln_model *m) { return &m->cfg; }
int kiln_model_threads(const kiln_model *m) { return kiln_pool_size(m->pool); }
size_t kiln_model_weight_bytes(const kiln_model *m) { return m->weight_bytes; }
size_t kiln_model_param_count(const kiln_model *m) { return m->params; }

const char *kiln_model_weight_cache(const kiln_model *m, bool *reused) {
    if (reused) *reused = m->cache_reused;
    return m->cache_path;
}
