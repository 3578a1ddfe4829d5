/* model.h — the loaded model as the engine sees it (internal to libkiln).
 *
 * Matrices are kiln_mat views: into the safetensors mapping (zero-copy, stored dtype) or, when the
 * caller asked for another dtype, into one owned buffer. Norm weights and biases are small f32 copies.
 * Loading is split by job: shards.c opens the files, tensors.c lists the tensors, weight_format.c picks
 * each one's format, convert.c converts (and caches), model.c binds them and owns the result. */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H

#include "common/fileio.h"
#include "kernels/kernels.h"
#include "model/shards.h"
#include "model/weight_format.h"

/* One routed expert of a mixture-of-experts layer: a SwiGLU FFN of expert_ffn_size. */
typedef struct kiln_expert {
    kiln_mat w_gate, w_up, w_down;
} kiln_expert;

typedef struct kiln_layer {
    kiln_mat wq, wk, wv, wo, w_gate, w_up, w_down;
    float *attn_norm, *ffn_norm;
    float *bq, *bk, *bv;      /* attention_bias only */
    float *q_norm, *k_norm;   /* qk_norm only: [head_dim]; qk_norm_full (OLMo-2): [n_heads * head_dim], [kv_dim] */
    float *post_attn_norm, *post_ffn_norm; /* post_norms (OLMo-2, Gemma): on the attention / MLP output */
    /* n_experts > 0 only (instead of w_gate / w_up / w_down): the router, an owned f32 copy [n_experts x
     * hidden] (ROLE_ROUTER), and the first n_experts entries of experts. Inline, so that the tensor tables
     * can name each expert's slot by its offset (tensors.h per_expert). */
    kiln_mat router;
    kiln_expert experts[KILN_MAX_EXPERTS];
} kiln_layer;

struct kiln_model {
    kiln_config cfg;      /* what the forward pass runs: this rank's share under dist (dist_local_config) */
    kiln_config full_cfg; /* the checkpoint's (kiln_model_config) */
    kiln_dist *dist;      /* NULL: the whole model in this process */
    void **slices;        /* dist: the column slices copied out of the checkpoint (wo, w_down) */
    int n_slices;
    st_set shards; /* the checkpoint's files (closed once every matrix is converted) */
    kiln_mat embed, lm_head; /* lm_head == embed when tied */
    float *final_norm;
    float *rope_freq_factors; /* [head_dim / 2] divisors of RoPE's frequencies (a GGUF's rope_freqs), or NULL */
    kiln_layer *layers;
    kiln_mat **mats; /* every distinct matrix (the embedding, lm_head when untied, the layers'), load order */
    const tensor_desc **mat_desc; /* each one's table row ... */
    int *mat_layer;               /* ... and layer (-1 outside the layers): what weight_format reads */
    int n_mats;
    int quant_cols_max; /* widest row of a matrix kern_matmul needs scratch for (0: none): quantised ones, and
                           F16 / BF16 ones unless exact: what kern_matmul's scratch must fit */
    bool exact;         /* kiln_model_opts.exact: F16 / BF16 prefill without bf16 dot products */
    void *owned; /* converted matrices (opts.dtype / opts.quant), NULL when zero-copy or cached */
    void *cache_map; /* the mapped weight cache the matrices point into, or NULL */
    size_t cache_len;
    char *cache_path; /* opts.weight_cache: the cache file */
    bool cache_reused;
    size_t weight_bytes, params;
    kiln_pool *pool;
};

/* Whether matrix m is the output projection (lm_head, or the embedding when it stands in for it). */
static inline bool model_is_output(const struct kiln_model *m, const kiln_mat *mat) {
    return mat == &m->lm_head || (mat == &m->embed && m->lm_head.data == m->embed.data);
}

/* Gemma's norm offsets: v (n values of the vector tensor called name) + 1 where c->norm_offset and name is a
 * "*norm.weight" (model.c; the GGUF writer stores them so, as llama.cpp's converter does). */
void model_apply_norm_offset(const kiln_config *c, const char *name, float *v, int64_t n);

/* What weight_format needs to know of matrix i (m->mats[i]). */
weight_slot model_slot(const struct kiln_model *m, int i);

/* Looks up the tensor d describes (called name, rows x cols, cols 0 for a vector; for a slice, the rows of
 * the stored tensor: tensor_stored_rows) and checks its shape.
 * 0 with *out set, or with *out NULL when d is optional and absent; -1 (err) when missing or misshapen. */
int model_find_tensor(const st_set *s, const tensor_desc *d, const char *name, int64_t rows, int64_t cols,
                      const st_tensor **out, kiln_err *err);

/* A converted matrix's source pages are not read again: dropping them from this process keeps peak RSS
 * near the converted size plus one matrix, instead of both full copies. Only pages wholly inside one of
 * s's mappings (file-backed and read-only: anything touching them again re-reads the page cache) or of
 * its files' owned copies (never read once converted). */
void model_drop_source_pages(const st_set *s, const void *p, size_t n);

/* convert.c: converts every matrix to the format weight_format gives it (or maps them from the weight
 * cache), then closes the checkpoint files. */
int model_convert(struct kiln_model *m, const char *dir, const kiln_model_opts *o, const weight_request *rq,
                  kiln_err *err);

#endif
