/* model.h — the loaded model as the engine sees it (internal to libkiln).
 *
 * Matrices are kiln_mat views: into the safetensors mapping (zero-copy, stored dtype) or, when the
 * caller asked for another dtype, into one owned buffer. Norm weights and biases are small f32 copies. */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H

#include "common/fileio.h"
#include "kernels/kernels.h"
#include "model/safetensors.h"

typedef struct kiln_layer {
    kiln_mat wq, wk, wv, wo, w_gate, w_up, w_down;
    float *attn_norm, *ffn_norm;
    float *bq, *bk, *bv;      /* attention_bias only */
    float *q_norm, *k_norm;   /* qk_norm only: [head_dim] */
} kiln_layer;

struct kiln_model {
    kiln_config cfg;
    st_file *files;
    int n_files;
    char *source; /* the file errors name: model.safetensors or the shard index */
    kiln_mat embed, lm_head; /* lm_head == embed when tied */
    float *final_norm;
    kiln_layer *layers;
    void *owned; /* converted matrices (opts.dtype / opts.quant), NULL when zero-copy or cached */
    void *cache_map; /* the mapped weight cache the matrices point into, or NULL */
    size_t cache_len;
    char *cache_path; /* opts.weight_cache: the cache file */
    bool cache_reused;
    size_t weight_bytes, params;
    kiln_pool *pool;
};

#endif
