/* model.c — a checkpoint directory → weights the forward pass can read.
 *
 * Matrices stay in the memory-mapped files in their stored dtype (zero copy) unless a compute format
 * is requested, in which case each is converted once into memory we own and the mapping's pages are
 * released. Small vectors (norm weights, biases) are widened to f32 copies. Every tensor the config
 * implies must be present with exactly the implied shape. */
#include "model/model.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

void kiln_model_opts_default(kiln_model_opts *o) {
    memset(o, 0, sizeof *o);
    o->dtype = -1;
}

static void *own(kiln_model *m, void *p) {
    if (!p) return NULL;
    if (m->n_owned == m->cap_owned) {
        int cap = m->cap_owned ? m->cap_owned * 2 : 64;
        void **n = realloc(m->owned, (size_t)cap * sizeof *n);
        if (!n) {
            free(p);
            return NULL;
        }
        m->owned = n;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = p;
    return p;
}

/* ---- finding tensors across shards ---- */

static int open_shards(kiln_model *m, const char *dir, kiln_err *err) {
    char *index = kiln_path_join(dir, "model.safetensors.index.json");
    if (!index) return kiln_err_set(err, "out of memory");
    if (access(index, F_OK) != 0) {
        free(index);
        char *single = kiln_path_join(dir, "model.safetensors");
        m->files = calloc(1, sizeof *m->files);
        if (!single || !m->files) {
            free(single);
            return kiln_err_set(err, "out of memory");
        }
        if (access(single, F_OK) != 0) {
            kiln_err_set(err, "%s: no model.safetensors or model.safetensors.index.json", dir);
            free(single);
            return -1;
        }
        int rc = st_open(&m->files[0], single, err);
        free(single);
        if (rc == 0) m->n_files = 1;
        return rc;
    }
    size_t len;
    char *text = kiln_read_file(index, &len, err);
    json_error_t je;
    json_t *root = text ? json_loadb(text, len, 0, &je) : NULL;
    free(text);
    int rc = 0;
    json_t *map = json_object_get(root, "weight_map");
    if (!text) rc = -1;
    else if (!root) rc = kiln_err_set(err, "%s: malformed JSON: %s", index, je.text);
    else if (!json_is_object(map)) rc = kiln_err_set(err, "%s: missing \"weight_map\" object", index);
    if (rc) goto out;
    /* Distinct shard names, in first-seen order. */
    size_t n = json_object_size(map);
    const char **names = calloc(n ? n : 1, sizeof *names);
    m->files = calloc(n ? n : 1, sizeof *m->files);
    if (!names || !m->files) {
        free(names);
        rc = kiln_err_set(err, "out of memory");
        goto out;
    }
    int n_names = 0;
    const char *key;
    json_t *v;
    json_object_foreach(map, key, v) {
        const char *f = json_string_value(v);
        if (!f || strchr(f, '/') || !strcmp(f, "..")) {
            rc = kiln_err_set(err, "%s: tensor %s: bad shard file name", index, key);
            break;
        }
        int seen = 0;
        for (int i = 0; i < n_names; i++) seen |= !strcmp(names[i], f);
        if (!seen) names[n_names++] = f;
    }
    for (int i = 0; i < n_names && !rc; i++) {
        char *p = kiln_path_join(dir, names[i]);
        rc = p ? st_open(&m->files[i], p, err) : kiln_err_set(err, "out of memory");
        if (!rc) m->n_files = i + 1;
        free(p);
    }
    /* Every tensor must be in the shard the index names. */
    json_object_foreach(map, key, v) {
        if (rc) break;
        for (int i = 0; i < m->n_files; i++)
            if (!strcmp(strrchr(m->files[i].path, '/') + 1, json_string_value(v)) && !st_find(&m->files[i], key))
                rc = kiln_err_set(err, "%s: tensor %s listed in the index is missing", m->files[i].path, key);
    }
    free(names);
out:
    json_decref(root);
    free(index);
    return rc;
}

static const st_tensor *find(const kiln_model *m, const char *name, const st_file **file) {
    for (int i = 0; i < m->n_files; i++) {
        const st_tensor *t = st_find(&m->files[i], name);
        if (t) {
            if (file) *file = &m->files[i];
            return t;
        }
    }
    return NULL;
}

/* The tensor `name` with exactly the given shape (d1 = 0 for a vector). */
static const st_tensor *expect(const kiln_model *m, const char *name, int64_t d0, int64_t d1, kiln_err *err) {
    const st_file *f = NULL;
    const st_tensor *t = find(m, name, &f);
    const char *where = m->n_files == 1 ? m->files[0].path : "checkpoint";
    if (!t) {
        kiln_err_set(err, "%s: missing tensor %s", where, name);
        return NULL;
    }
    int ndim = d1 ? 2 : 1;
    if (t->ndim != ndim || t->shape[0] != d0 || (ndim == 2 && t->shape[1] != d1)) {
        char got[96] = "";
        for (int i = 0; i < t->ndim; i++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? "," : "", (long long)t->shape[i]);
        if (ndim == 2)
            kiln_err_set(err, "%s: tensor %s has shape [%s], config implies [%lld,%lld]", f->path, name, got,
                         (long long)d0, (long long)d1);
        else kiln_err_set(err, "%s: tensor %s has shape [%s], config implies [%lld]", f->path, name, got, (long long)d0);
        return NULL;
    }
    return t;
}

static float *load_vec(kiln_model *m, const char *name, int n, kiln_err *err) {
    const st_tensor *t = expect(m, name, n, 0, err);
    if (!t) return NULL;
    float *v = own(m, malloc((size_t)n * sizeof *v));
    if (!v) {
        kiln_err_set(err, "out of memory loading %s", name);
        return NULL;
    }
    kern_row_to_f32(v, t->data, t->dt, n);
    m->n_params += (size_t)n;
    m->weight_bytes += (size_t)n * 4;
    return v;
}

/* A [rows][cols] matrix: zero-copy view, or converted into an owned buffer when dtype >= 0. */
static int load_mat(kiln_model *m, kiln_mat *out, const char *name, int rows, int cols, int dtype, kiln_err *err) {
    const st_tensor *t = expect(m, name, rows, cols, err);
    if (!t) return -1;
    *out = (kiln_mat){t->data, t->dt, rows, cols};
    m->n_params += (size_t)rows * cols;
    if (dtype >= 0 && (kiln_dtype)dtype != t->dt) {
        kiln_dtype dt = (kiln_dtype)dtype;
        if ((dt == KILN_DT_Q8_0 || dt == KILN_DT_Q4_0) && cols % 32)
            return kiln_err_set(err, "tensor %s: %d columns is not a multiple of 32, cannot use %s", name, cols,
                                kiln_dtype_name(dt));
        size_t bytes = kern_row_bytes(dt, cols) * (size_t)rows;
        void *buf = own(m, malloc(bytes ? bytes : 1));
        if (!buf) return kiln_err_set(err, "out of memory converting %s to %s", name, kiln_dtype_name(dt));
        if (kern_convert_mat(m->pool, buf, dt, t->data, t->dt, rows, cols))
            return kiln_err_set(err, "out of memory converting %s to %s", name, kiln_dtype_name(dt));
        /* The mapped source pages are no longer needed: drop them so RSS holds one copy. */
        uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = ((uintptr_t)t->data + page - 1) & ~(page - 1),
                  b = ((uintptr_t)t->data + t->nbytes) & ~(page - 1);
        if (b > a && !t->owned) madvise((void *)a, b - a, MADV_DONTNEED);
        *out = (kiln_mat){buf, dt, rows, cols};
    }
    m->weight_bytes += kern_row_bytes(out->dt, cols) * (size_t)rows;
    return 0;
}

static int load_layer(kiln_model *m, int l, int dtype, kiln_err *err) {
    const kiln_config *c = &m->cfg;
    kiln_layer *L = &m->layers[l];
    int H = c->hidden_size, q = c->n_heads * c->head_dim, kv = c->n_kv_heads * c->head_dim, I = c->intermediate_size;
    char n[160];
#define NAME(s) (snprintf(n, sizeof n, "model.layers.%d.%s", l, s), n)
    if (!(L->attn_norm = load_vec(m, NAME("input_layernorm.weight"), H, err))) return -1;
    if (!(L->ffn_norm = load_vec(m, NAME("post_attention_layernorm.weight"), H, err))) return -1;
    if (load_mat(m, &L->wq, NAME("self_attn.q_proj.weight"), q, H, dtype, err) ||
        load_mat(m, &L->wk, NAME("self_attn.k_proj.weight"), kv, H, dtype, err) ||
        load_mat(m, &L->wv, NAME("self_attn.v_proj.weight"), kv, H, dtype, err) ||
        load_mat(m, &L->wo, NAME("self_attn.o_proj.weight"), H, q, dtype, err) ||
        load_mat(m, &L->w_gate, NAME("mlp.gate_proj.weight"), I, H, dtype, err) ||
        load_mat(m, &L->w_up, NAME("mlp.up_proj.weight"), I, H, dtype, err) ||
        load_mat(m, &L->w_down, NAME("mlp.down_proj.weight"), H, I, dtype, err))
        return -1;
    if (c->attention_bias) {
        if (!(L->bq = load_vec(m, NAME("self_attn.q_proj.bias"), q, err))) return -1;
        if (!(L->bk = load_vec(m, NAME("self_attn.k_proj.bias"), kv, err))) return -1;
        if (!(L->bv = load_vec(m, NAME("self_attn.v_proj.bias"), kv, err))) return -1;
    }
    if (c->qk_norm) {
        if (!(L->q_norm = load_vec(m, NAME("self_attn.q_norm.weight"), c->head_dim, err))) return -1;
        if (!(L->k_norm = load_vec(m, NAME("self_attn.k_norm.weight"), c->head_dim, err))) return -1;
    }
#undef NAME
    return 0;
}

/* RoPE inverse frequencies exactly as transformers computes them (float64 math, then float32). */
static int rope_frequencies(kiln_model *m, kiln_err *err) {
    const kiln_config *c = &m->cfg;
    int half = c->head_dim / 2;
    m->inv_freq = own(m, malloc((size_t)half * sizeof *m->inv_freq));
    if (!m->inv_freq) return kiln_err_set(err, "out of memory");
    for (int i = 0; i < half; i++) {
        double inv = 1.0 / pow(c->rope_theta, (double)(2 * i) / c->head_dim);
        if (c->rope_type == KILN_ROPE_LINEAR) inv /= c->rope_factor;
        else if (c->rope_type == KILN_ROPE_LLAMA3) { /* transformers' _compute_llama3_parameters */
            double old = c->rope_original_max_pos, lo_wl = old / c->rope_low_freq_factor,
                   hi_wl = old / c->rope_high_freq_factor, wl = 2 * M_PI / inv;
            double inv_l = wl > lo_wl ? inv / c->rope_factor : inv;
            if (!(wl < hi_wl) && !(wl > lo_wl)) {
                double smooth = (old / wl - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                inv_l = (1 - smooth) * inv_l / c->rope_factor + smooth * inv_l;
            }
            inv = inv_l;
        }
        m->inv_freq[i] = (float)inv;
    }
    return 0;
}

kiln_model *kiln_model_open(const char *dir, const kiln_model_opts *opts, kiln_err *err) {
    kiln_model_opts def;
    if (!opts) {
        kiln_model_opts_default(&def);
        opts = &def;
    }
    kiln_model *m = calloc(1, sizeof *m);
    if (!m) {
        kiln_err_set(err, "out of memory");
        return NULL;
    }
    kern_init();
    if (kiln_config_load(dir, &m->cfg, err)) goto fail;
    m->pool = kiln_pool_new(opts->threads);
    if (!m->pool) {
        kiln_err_set(err, "cannot start threads");
        goto fail;
    }
    if (opts->dtype >= KILN_DT_COUNT) {
        kiln_err_set(err, "unknown dtype %d", opts->dtype);
        goto fail;
    }
    if (open_shards(m, dir, err)) goto fail;
    const kiln_config *c = &m->cfg;
    if (load_mat(m, &m->embed, "model.embed_tokens.weight", c->vocab_size, c->hidden_size, -1, err)) goto fail;
    /* Embedding rows are gathered, not streamed: kept as stored unless a float format is asked for. */
    if (!(m->final_norm = load_vec(m, "model.norm.weight", c->hidden_size, err))) goto fail;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) {
        kiln_err_set(err, "out of memory");
        goto fail;
    }
    for (int l = 0; l < c->n_layers; l++)
        if (load_layer(m, l, opts->dtype, err)) goto fail;
    if (find(m, "lm_head.weight", NULL) && !c->tie_word_embeddings) {
        if (load_mat(m, &m->lm_head, "lm_head.weight", c->vocab_size, c->hidden_size, opts->dtype, err)) goto fail;
    } else if (opts->dtype >= 0 && (kiln_dtype)opts->dtype != m->embed.dt) {
        /* Tied head in a converted format: the head is streamed every token, so it gets its own copy. */
        if (load_mat(m, &m->lm_head, "model.embed_tokens.weight", c->vocab_size, c->hidden_size, opts->dtype, err))
            goto fail;
        m->n_params -= (size_t)c->vocab_size * c->hidden_size;
    } else m->lm_head = m->embed;
    if (rope_frequencies(m, err)) goto fail;
    return m;
fail:
    kiln_model_free(m);
    return NULL;
}

void kiln_model_free(kiln_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n_files; i++) st_close(&m->files[i]);
    free(m->files);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->layers);
    kiln_pool_free(m->pool);
    free(m);
}

const kiln_config *kiln_model_config(const kiln_model *m) { return &m->cfg; }
size_t kiln_model_weight_bytes(const kiln_model *m) { return m->weight_bytes; }
size_t kiln_model_param_count(const kiln_model *m) { return m->n_params; }
