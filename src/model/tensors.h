/* tensors.h — the tensors a checkpoint must hold, as data (internal).
 *
 * Each tensor is written once, in a table: its Hugging Face name (and llama.cpp's GGUF name) ("%d" = the layer), its shape in terms of
 * the config, its role (what the format policy and the accounting need to know), whether the config asks
 * for it, whether it may be absent, and where the loader keeps it. The loader binds from these tables and
 * `kiln info --model` counts from them, so both see the same tensors. A new architecture's tensors (fused
 * qkv, MoE experts, extra norms) are new rows here and, where needed, new conditions. */
#ifndef KILN_TENSORS_H
#define KILN_TENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

/* A dimension, from the config. */
typedef enum {
    DIM_NONE = 0, /* (cols of a vector) */
    DIM_HIDDEN,   /* hidden_size */
    DIM_Q,        /* n_heads * head_dim */
    DIM_KV,       /* n_kv_heads * head_dim */
    DIM_FFN,      /* intermediate_size */
    DIM_HEAD,     /* head_dim */
    DIM_VOCAB,    /* vocab_size */
    DIM_QK,       /* DIM_Q + DIM_KV (where a fused qkv's v rows start) */
    DIM_QKV,      /* DIM_Q + 2 * DIM_KV (a fused qkv: Phi-3's qkv_proj) */
    DIM_FFN2,     /* 2 * intermediate_size (a fused gate | up: Phi-3's gate_up_proj) */
    DIM_EXPERTS,    /* n_experts (the router's rows) */
    DIM_EXPERT_FFN, /* expert_ffn_size */
} tensor_dim;

/* When the config asks for the tensor. */
typedef enum {
    WHEN_ALWAYS = 0,
    WHEN_ATTN_BIAS, /* attention_bias */
    WHEN_QK_NORM,   /* qk_norm */
    WHEN_UNTIED,    /* !tie_word_embeddings */
    WHEN_PLAIN_NORMS,    /* !post_norms: post_attention_layernorm is the MLP's input norm (Llama) */
    WHEN_SANDWICH_NORMS, /* sandwich_norms (Gemma) */
    WHEN_UNFUSED,   /* !fused_proj: separate q / k / v and gate / up matrices */
    WHEN_FUSED,     /* fused_proj (Phi-3): q / k / v and gate / up are row slices of one stored tensor each */
    WHEN_PRE_NORMS, /* !no_pre_norms: RMSNorm before attention and before the MLP */
    WHEN_POST_NORMS, /* post_norms (OLMo-2, Gemma): RMSNorm on each sublayer's output */
    WHEN_QK_NORM_FULL, /* qk_norm_full (OLMo-2): q / k RMSNorm over the whole projection */
    WHEN_DENSE_FFN,   /* n_experts == 0: one FFN per layer */
    WHEN_DENSE_UNFUSED, /* n_experts == 0 and !fused_proj: separate gate and up matrices */
    WHEN_MOE_QWEN,    /* Qwen3-MoE's router and experts (mlp.*) */
    WHEN_MOE_MIXTRAL, /* Mixtral's (block_sparse_moe.*) */
} tensor_when;

typedef enum {
    ROLE_MATRIX,    /* a weight matrix, read whole every token; takes the load's format */
    ROLE_EMBEDDING, /* the token embedding: read one row per token unless it is also the output projection */
    ROLE_OUTPUT,    /* the output projection (lm_head) */
    ROLE_VECTOR,    /* norm weights and biases: kept in f32 */
    ROLE_ROUTER,    /* an MoE router (experts x hidden): kept in f32, as llama.cpp does, so that quantising
                       the experts never changes which of them a token is routed to */
} tensor_role;

typedef struct tensor_desc {
    const char *name;
    tensor_role role;
    tensor_dim rows, cols; /* a vector has rows values and cols DIM_NONE */
    tensor_when when;
    bool optional; /* may be absent (lm_head: then the embedding serves as output projection) */
    size_t offset; /* where the loader keeps it: a kiln_mat or a float * in kiln_layer (layer tensors)
                      or in struct kiln_model (the others) */
    const char *gguf_name; /* llama.cpp's name for it in a GGUF file ("%d" = the layer) */
    /* A slice (matrices only): rows [slice_at, slice_at + rows) of the stored tensor `name`, which has
     * fused_rows rows; fused_rows DIM_NONE (the default): the tensor is stored whole. Rows are independent
     * in every format, so the loader binds a slice as a view into the stored tensor (no copy). */
    tensor_dim fused_rows, slice_at;
    /* One tensor per routed expert: the Hugging Face name has a second "%d", the expert; the GGUF name is
     * llama.cpp's one stacked [n_experts, rows, cols] tensor. The walk visits each expert with a copy of
     * the row whose `expert` is set and whose offset is that expert's (kiln_layer.experts[expert]). */
    bool per_expert;
    int expert;
    const struct tensor_desc *row; /* in a per-expert copy: the table row it copies (static, so it may be kept;
                                      the copy lives only for the visit); NULL in the tables themselves */
} tensor_desc;

/* The table row of d, which outlives the walk (a per-expert copy does not): what a visitor keeps. */
static inline const tensor_desc *tensor_row(const tensor_desc *d) { return d->row ? d->row : d; }

/* d's full name for layer (ignored outside the layers): the Hugging Face one, or the GGUF one. */
int tensor_name(const tensor_desc *d, bool gguf, int layer, char *out, size_t n);

/* The stored tensor d reads: its rows (what its shape must show) and the first row of d in it; for a
 * tensor stored whole, rows and 0. */
void tensor_stored_rows(const kiln_config *c, const tensor_desc *d, int64_t *stored_rows, int64_t *first_row);


/* Called for each tensor the config asks for, in load order; layer is -1 outside the layers, name the
 * full name, rows x cols its shape (cols 0 for a vector). A non-zero return stops the walk with it. */
typedef int (*tensor_visit_fn)(void *ud, const tensor_desc *d, int layer, const char *name, int64_t rows,
                               int64_t cols, kiln_err *err);
int tensors_each(const kiln_config *c, tensor_visit_fn fn, void *ud, kiln_err *err);

#endif
