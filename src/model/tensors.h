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
    DIM_EXPERTS,    /* n_experts (the router's rows) */
    DIM_EXPERT_FFN, /* expert_ffn_size */
} tensor_dim;

/* When the config asks for the tensor. */
typedef enum {
    WHEN_ALWAYS = 0,
    WHEN_ATTN_BIAS, /* attention_bias */
    WHEN_QK_NORM,   /* qk_norm */
    WHEN_UNTIED,    /* !tie_word_embeddings */
    WHEN_DENSE_FFN,   /* n_experts == 0: one FFN per layer */
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
    /* One tensor per routed expert: the Hugging Face name has a second "%d", the expert; the GGUF name is
     * llama.cpp's one stacked [n_experts, rows, cols] tensor. The walk visits each expert with a copy of
     * the row whose `expert` is set and whose offset is that expert's (kiln_layer.experts[expert]). */
    bool per_expert;
    int expert;
} tensor_desc;

/* d's full name for layer (ignored outside the layers): the Hugging Face one, or the GGUF one. */
int tensor_name(const tensor_desc *d, bool gguf, int layer, char *out, size_t n);


/* Called for each tensor the config asks for, in load order; layer is -1 outside the layers, name the
 * full name, rows x cols its shape (cols 0 for a vector). A non-zero return stops the walk with it. */
typedef int (*tensor_visit_fn)(void *ud, const tensor_desc *d, int layer, const char *name, int64_t rows,
                               int64_t cols, kiln_err *err);
int tensors_each(const kiln_config *c, tensor_visit_fn fn, void *ud, kiln_err *err);

#endif
