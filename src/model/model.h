/* model.h — the loaded model as the engine sees it (internal to libkiln).
 *
 * Matrices are kiln_mat views: into the safetensors mapping (zero-copy, stored dtype) or, when the
 * caller asked for another dtype, into one owned buffer. Norm weights and biases are small f32 copies. */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H

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
    kiln_mat embed, lm_head; /* lm_head == embed when tied */
    float *final_norm;
    kiln_layer *layers;
    void *owned; /* converted matrices (opts.dtype), NULL when zero-copy */
    size_t weight_bytes, params;
    kiln_pool *pool;
};

/* Converts one matrix to dt into dst_buf (kern_row_bytes(dt, cols) * rows bytes) and points dst at it.
 * The hook for quantised formats: Q8_0/Q4_0 are not supported yet. */
int model_convert_matrix(kiln_mat *dst, void *dst_buf, const kiln_mat *src, kiln_dtype dt, kiln_err *err);

#endif
