/* model.h — the loaded model as the engine sees it (internal). */
#ifndef KILN_MODEL_H
#define KILN_MODEL_H

#include "kernels/kernels.h"
#include "kiln.h"
#include "model/safetensors.h"
#include "runtime/threadpool.h"

typedef struct kiln_layer {
    float *attn_norm, *ffn_norm; /* [hidden] */
    float *q_norm, *k_norm;      /* [head_dim], Qwen3 only */
    float *bq, *bk, *bv;         /* q/k/v biases, when attention_bias */
    kiln_mat wq, wk, wv, wo;
    kiln_mat w_gate, w_up, w_down;
} kiln_layer;

struct kiln_model {
    kiln_config cfg;
    st_file *files;
    int n_files;
    kiln_mat embed, lm_head;
    float *final_norm;
    kiln_layer *layers;
    float *inv_freq; /* [head_dim / 2], RoPE frequencies after scaling */
    void **owned;    /* buffers this model allocated (converted matrices, f32 vectors) */
    int n_owned, cap_owned;
    kiln_pool *pool;
    size_t weight_bytes, n_params;
};

#endif
