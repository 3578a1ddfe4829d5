/* model.c — kiln_model_open: the config, the checkpoint's files (shards.c), every tensor the config
 * implies bound from the tables in tensors.c (presence, dtype and shape checked), then conversion to the
 * requested formats (convert.c, weight_format.c).
 *
 * Zero-copy by default: matrices stay in the read-only mappings in their stored dtype and the matmul
 * kernels read them in place, so the page cache holds the only copy. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "dist/dist.h"
#include "model/gguf_model.h"
#include "model/model.h"

void kiln_model_opts_default(kiln_model_opts *o) {
    *o = (kiln_model_opts){.dtype = -1, .quant = -1};
}

/* The shape as "[a, b]" for an error message. */
static void shape_str(char *out, size_t n, const int64_t *shape, int ndim) {
    size_t o = (size_t)snprintf(out, n, "[");
    for (int i = 0; i < ndim && o < n - 24; i++)
        o += (size_t)snprintf(out + o, n - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    snprintf(out + o, n - o, "]");
}

/* (model.h) */
int model_find_tensor(const st_set *s, const tensor_desc *d, const char *name, int64_t rows, int64_t cols,
                      const st_tensor **out, kiln_err *err) {
    const st_file *f = NULL;
    const st_tensor *t = st_set_find(s, name, &f);
    *out = t;
    if (!t) return d->optional ? 0 : kiln_err_set(err, "%s: missing tensor '%s'", s->source, name);
    const int64_t want[2] = {rows, cols};
    if (t->ndim == (cols ? 2 : 1) && t->shape[0] == rows && (!cols || t->shape[1] == cols)) return 0;
    char got[128], implied[64];
    shape_str(got, sizeof got, t->shape, t->ndim);
    shape_str(implied, sizeof implied, want, cols ? 2 : 1);
    return kiln_err_set(err, "%s: tensor '%s' has shape %s, config implies %s", f->path, name, got, implied);
}

/* Gemma's norm weights are offsets from 1 ((1 + w) in f32, as transformers computes it): added once here, so
 * the norms are ordinary RMSNorms. Every "*norm.weight" tensor, the rule llama.cpp's converter applies when it
 * writes them into a GGUF (whose config therefore has no norm_offset). */
void model_apply_norm_offset(const kiln_config *c, const char *name, float *v, int64_t n) {
    size_t len = strlen(name), k = strlen("norm.weight");
    if (!c->norm_offset || len < k || strcmp(name + len - k, "norm.weight")) return;
    for (int64_t i = 0; i < n; i++) v[i] += 1.0f;
}

/* A router as an owned f32 copy (ROLE_ROUTER: never converted with the load; freed with the vectors). */
static int bind_router(kiln_model *m, kiln_mat *mat, const st_tensor *t, int64_t rows, int64_t cols, kiln_err *err) {
    float *v = malloc((size_t)rows * (size_t)cols * sizeof(float));
    if (!v) return kiln_err_set(err, "out of memory");
    const size_t row_bytes = kern_row_bytes(t->dt, (int)cols);
    for (int64_t r = 0; r < rows; r++)
        kern_row_to_f32(v + r * cols, (const char *)t->data + (size_t)r * row_bytes, t->dt, (int)cols);
    *mat = (kiln_mat){v, KILN_DT_F32, (int)rows, (int)cols, KERN_LAYOUT_PLAIN};
    m->weight_bytes += weight_bytes(KILN_DT_F32, rows, cols);
    return 0;
}

/* Binds one tensor where d->offset says: a matrix as a view into the mapping, a vector as an f32 copy. */
static int bind(void *ud, const tensor_desc *d, int layer, const char *name, int64_t rows, int64_t cols, kiln_err *err) {
    kiln_model *m = ud;
    const st_tensor *t;
    const int local = dist_local_layer(m->dist, layer);
    if ((layer >= 0 && local < 0) || !dist_holds(m->dist, d->role, m->cfg.tie_word_embeddings) ||
        !dist_holds_expert(m->dist, d, m->cfg.n_experts))
        return 0; /* another rank's */
    int64_t stored_rows, first_row;
    tensor_stored_rows(&m->cfg, d, &stored_rows, &first_row);
    if (model_find_tensor(&m->shards, d, name, stored_rows, cols, &t, err)) return -1;
    if (!t) return 0; /* optional and absent */
    char *base = layer >= 0 ? (char *)&m->layers[local] : (char *)m;
    m->params += (size_t)rows * (size_t)(cols ? cols : 1);
    shard_view sv; /* this rank's part of the tensor (of its rows in a fused one; all of it without dist) */
    const char *data = (const char *)t->data + (size_t)first_row * (cols ? kern_row_bytes(t->dt, (int)cols) : kern_row_bytes(t->dt, 1));
    if (dist_shard(m->dist, &m->shards, d, data, t->dt, rows, cols, &sv, err)) return -1;
    if (sv.owned) m->slices[m->n_slices++] = sv.owned;
    rows = sv.rows, cols = sv.cols;
    if (d->role == ROLE_VECTOR) {
        float *v = malloc((size_t)rows * sizeof(float));
        if (!v) return kiln_err_set(err, "out of memory");
        kern_row_to_f32(v, sv.data, t->dt, (int)rows);
        model_apply_norm_offset(&m->cfg, name, v, rows);
        memcpy(base + d->offset, &v, sizeof v);
        m->weight_bytes += weight_bytes(KILN_DT_F32, rows, 0);
        return 0;
    }
    kiln_mat *mat = (kiln_mat *)(base + d->offset);
    if (d->role == ROLE_ROUTER) return bind_router(m, mat, t, rows, cols, err);
    *mat = (kiln_mat){sv.data, t->dt, (int)rows, (int)cols, KERN_LAYOUT_PLAIN};
    /* the list keeps the weight cache's order: embedding, lm_head, then the layers' matrices */
    int at = d->role == ROLE_OUTPUT ? 1 : m->n_mats;
    const size_t after = (size_t)(m->n_mats - at);
    memmove(&m->mats[at + 1], &m->mats[at], after * sizeof *m->mats);
    memmove(&m->mat_desc[at + 1], &m->mat_desc[at], after * sizeof *m->mat_desc);
    memmove(&m->mat_layer[at + 1], &m->mat_layer[at], after * sizeof *m->mat_layer);
    m->mats[at] = mat, m->mat_desc[at] = tensor_row(d), m->mat_layer[at] = layer;
    m->n_mats++;
    return 0;
}

static int count_mats(void *ud, const tensor_desc *d, int layer, const char *name, int64_t rows, int64_t cols,
                      kiln_err *err) {
    (void)layer, (void)name, (void)rows, (void)cols, (void)err;
    *(int *)ud += d->role != ROLE_VECTOR && d->role != ROLE_ROUTER;
    return 0;
}

/* A GGUF's rope_freqs tensor: f32, one positive divisor per frequency. */
static int bind_rope_freqs(kiln_model *m, kiln_err *err) {
    const st_file *f;
    const st_tensor *t = st_set_find(&m->shards, GGUF_ROPE_FREQS, &f);
    if (!t) return 0;
    const int n = m->cfg.head_dim / 2;
    if (t->ndim != 1 || t->shape[0] != n || t->dt != KILN_DT_F32)
        return kiln_err_set(err, "%s: tensor '%s' must be %d f32 values (head_dim / 2)", f->path, GGUF_ROPE_FREQS, n);
    if (!(m->rope_freq_factors = malloc((size_t)n * sizeof(float)))) return kiln_err_set(err, "out of memory");
    memcpy(m->rope_freq_factors, t->data, (size_t)n * sizeof(float));
    for (int i = 0; i < n; i++)
        if (!(m->rope_freq_factors[i] > 0) || !isfinite(m->rope_freq_factors[i]))
            return kiln_err_set(err, "%s: tensor '%s'[%d] is %g, want a finite value > 0", f->path, GGUF_ROPE_FREQS, i,
                                m->rope_freq_factors[i]);
    return 0;
}

static int bind_all(kiln_model *m, kiln_err *err) {
    int cap = 0;
    tensors_each(&m->cfg, count_mats, &cap, err);
    m->layers = calloc((size_t)m->cfg.n_layers, sizeof *m->layers);
    m->mats = malloc((size_t)cap * sizeof *m->mats + 1);
    m->slices = malloc((size_t)cap * sizeof *m->slices + 1);
    m->mat_desc = malloc((size_t)cap * sizeof *m->mat_desc + 1);
    m->mat_layer = malloc((size_t)cap * sizeof *m->mat_layer + 1);
    if (!m->layers || !m->mats || !m->slices || !m->mat_desc || !m->mat_layer) return kiln_err_set(err, "out of memory");
    if (tensors_each(&m->cfg, bind, m, err)) return -1;
    if (!m->lm_head.data) m->lm_head = m->embed;
    dist_local_config(m->dist, &m->cfg); /* from here on the engine sees this rank's share */
    return bind_rope_freqs(m, err);
}

/* The figures the rest of the library reads off a loaded model. */
static void account(kiln_model *m) {
    for (int i = 0; i < m->n_mats; i++) {
        const kiln_mat *w = m->mats[i];
        m->weight_bytes += weight_bytes(w->dt, w->rows, w->cols);
        const bool scratch = kern_is_quantised(w->dt) || (!m->exact && (w->dt == KILN_DT_F16 || w->dt == KILN_DT_BF16));
        if (scratch && w->cols > m->quant_cols_max) m->quant_cols_max = w->cols;
    }
}

/* (model.h) */
weight_slot model_slot(const kiln_model *m, int i) {
    return (weight_slot){m->mat_desc[i], m->mat_layer[i], m->cfg.n_layers, model_is_output(m, m->mats[i]),
                         m->mats[i]->dt, m->mats[i]->cols, m->cfg.n_experts};
}

/* True when every matrix already has the requested format: nothing to convert, stay zero-copy. */
static bool already_in(const kiln_model *m, const weight_request *rq) {
    bool same = true;
    for (int i = 0; i < m->n_mats; i++) {
        const weight_slot s = model_slot(m, i);
        same &= m->mats[i]->dt == weight_format(rq, &s);
    }
    return same && rq->quant < 0;
}

/* Matrices whose layout is not the one the kernels read (a GGUF's rows where they read 16-row panels):
 * they are repacked once at load (convert.c). */
static bool needs_relayout(const kiln_model *m) {
    for (int i = 0; i < m->n_mats; i++)
        if (m->mats[i]->layout != kern_weight_layout(m->mats[i]->dt)) return true;
    return false;
}

kiln_model *kiln_model_open(const char *dir, const kiln_model_opts *opts, kiln_err *err) {
    kiln_model_opts def;
    if (!opts) {
        kiln_model_opts_default(&def);
        opts = &def;
    }
    weight_request rq;
    if (weight_request_from_opts(opts, &rq, err)) return NULL;
    kiln_model *m = calloc(1, sizeof *m);
    if (!m) {
        kiln_err_set(err, "out of memory");
        return NULL;
    }
    m->dist = opts->dist;
    m->exact = opts->exact;
    if (m->dist && opts->weight_cache) {
        kiln_err_set(err, "--quant-cache is not supported with --tp / --pp (each rank converts its own shard)");
        goto fail;
    }
    if (kiln_config_load(dir, &m->cfg, err)) goto fail;
    m->full_cfg = m->cfg;
    if (dist_plan(m->dist, &m->cfg, err) || st_set_open(&m->shards, dir, err) || bind_all(m, err)) goto fail;
    if (m->cfg.window_absent && opts->warn)
        opts->warn(opts->cb_ud, "this GGUF names a Mistral model but has no attention.sliding_window key (llama.cpp's "
                                "converter writes none): running without the sliding window, as llama.cpp does");
    kern_init();
    m->pool = kiln_pool_new(opts->threads);
    if (!m->pool) {
        kiln_err_set(err, "cannot start %d threads", opts->threads);
        goto fail;
    }
    const bool convert = (weight_request_converts(&rq) && !already_in(m, &rq)) || needs_relayout(m);
    if (convert && model_convert(m, dir, opts, &rq, err)) goto fail;
    dist_shard_output(m->dist, &m->lm_head); /* after conversion, which re-ties lm_head to the embedding */
    account(m);
    return m;
fail:
    kiln_model_free(m);
    return NULL;
}

/* Frees one bound vector (the tables say where each lives; unbound ones are NULL). */
static int free_vector(void *ud, const tensor_desc *d, int layer, const char *name, int64_t rows, int64_t cols,
                       kiln_err *err) {
    (void)name, (void)rows, (void)cols, (void)err;
    kiln_model *m = ud;
    if ((d->role != ROLE_VECTOR && d->role != ROLE_ROUTER) || (layer >= 0 && !m->layers)) return 0;
    char *slot = (layer >= 0 ? (char *)&m->layers[layer] : (char *)m) + d->offset;
    if (d->role == ROLE_ROUTER) {
        kiln_mat *r = (kiln_mat *)slot;
        free((void *)r->data);
        r->data = NULL;
        return 0;
    }
    float **v = (float **)slot;
    free(*v);
    *v = NULL;
    return 0;
}

void kiln_model_free(kiln_model *m) {
    if (!m) return;
    tensors_each(&m->cfg, free_vector, m, NULL);
    free(m->layers);
    free(m->mats);
    for (int i = 0; i < m->n_slices; i++) free(m->slices[i]);
    free(m->slices);
    free(m->mat_desc), free(m->mat_layer);
    free(m->rope_freq_factors);
    st_set_close(&m->shards);
    free(m->owned);
    if (m->cache_map) munmap(m->cache_map, m->cache_len);
    free(m->cache_path);
    if (m->pool) kiln_pool_free(m->pool);
    free(m);
}

const kiln_config *kiln_model_config(const kiln_model *m) { return &m->full_cfg; }
int kiln_model_threads(const kiln_model *m) { return kiln_pool_size(m->pool); }
size_t kiln_model_weight_bytes(const kiln_model *m) { return m->weight_bytes; }
size_t kiln_model_param_count(const kiln_model *m) { return m->params; }

const char *kiln_model_weight_cache(const kiln_model *m, bool *reused) {
    if (reused) *reused = m->cache_reused;
    return m->cache_path;
}
