/* tensors.c — the tensor tables of the Llama family (Llama, Mistral, Qwen2, Qwen3; Phi-3, OLMo-2), Gemma 2 / 3,
 * Qwen3-MoE and Mixtral (whose FFN is a router and experts), and the walk over them (see tensors.h). */
#include "model/tensors.h"

#include <stdio.h>

#include "model/model.h"

#define LAYER(field) offsetof(kiln_layer, field)
#define MODEL(field) offsetof(struct kiln_model, field)
#define EXPERT(field) (offsetof(kiln_layer, experts) + offsetof(kiln_expert, field))

/* The rows give the trailing slice fields (zero: DIM_NONE, stored whole) and per_expert / expert fields
 * (tensors.h) only where they apply. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

/* Before the layers. */
static const tensor_desc head_tensors[] = {
    {"model.embed_tokens.weight", ROLE_EMBEDDING, DIM_VOCAB, DIM_HIDDEN, WHEN_ALWAYS, false, MODEL(embed), "token_embd.weight"},
};

/* One decoder layer, in the order the loader checks them. */
static const tensor_desc layer_tensors[] = {
    {"model.layers.%d.input_layernorm.weight", ROLE_VECTOR, DIM_HIDDEN, DIM_NONE, WHEN_PRE_NORMS, false, LAYER(attn_norm), "blk.%d.attn_norm.weight"},
    {"model.layers.%d.self_attn.q_proj.weight", ROLE_MATRIX, DIM_Q, DIM_HIDDEN, WHEN_UNFUSED, false, LAYER(wq), "blk.%d.attn_q.weight"},
    {"model.layers.%d.self_attn.k_proj.weight", ROLE_MATRIX, DIM_KV, DIM_HIDDEN, WHEN_UNFUSED, false, LAYER(wk), "blk.%d.attn_k.weight"},
    {"model.layers.%d.self_attn.v_proj.weight", ROLE_MATRIX, DIM_KV, DIM_HIDDEN, WHEN_UNFUSED, false, LAYER(wv), "blk.%d.attn_v.weight"},
    {"model.layers.%d.self_attn.o_proj.weight", ROLE_MATRIX, DIM_HIDDEN, DIM_Q, WHEN_ALWAYS, false, LAYER(wo), "blk.%d.attn_output.weight"},
    {"model.layers.%d.post_attention_layernorm.weight", ROLE_VECTOR, DIM_HIDDEN, DIM_NONE, WHEN_PLAIN_NORMS, false, LAYER(ffn_norm), "blk.%d.ffn_norm.weight"},
    {"model.layers.%d.mlp.gate_proj.weight", ROLE_MATRIX, DIM_FFN, DIM_HIDDEN, WHEN_DENSE_UNFUSED, false, LAYER(w_gate), "blk.%d.ffn_gate.weight"},
    {"model.layers.%d.mlp.up_proj.weight", ROLE_MATRIX, DIM_FFN, DIM_HIDDEN, WHEN_DENSE_UNFUSED, false, LAYER(w_up), "blk.%d.ffn_up.weight"},
    {"model.layers.%d.mlp.down_proj.weight", ROLE_MATRIX, DIM_HIDDEN, DIM_FFN, WHEN_DENSE_FFN, false, LAYER(w_down), "blk.%d.ffn_down.weight"},
    {"model.layers.%d.self_attn.q_proj.bias", ROLE_VECTOR, DIM_Q, DIM_NONE, WHEN_ATTN_BIAS, false, LAYER(bq), "blk.%d.attn_q.bias"},
    {"model.layers.%d.self_attn.k_proj.bias", ROLE_VECTOR, DIM_KV, DIM_NONE, WHEN_ATTN_BIAS, false, LAYER(bk), "blk.%d.attn_k.bias"},
    {"model.layers.%d.self_attn.v_proj.bias", ROLE_VECTOR, DIM_KV, DIM_NONE, WHEN_ATTN_BIAS, false, LAYER(bv), "blk.%d.attn_v.bias"},
    {"model.layers.%d.self_attn.q_norm.weight", ROLE_VECTOR, DIM_HEAD, DIM_NONE, WHEN_QK_NORM, false, LAYER(q_norm), "blk.%d.attn_q_norm.weight"},
    {"model.layers.%d.self_attn.k_norm.weight", ROLE_VECTOR, DIM_HEAD, DIM_NONE, WHEN_QK_NORM, false, LAYER(k_norm), "blk.%d.attn_k_norm.weight"},
    /* Gemma's sandwich: pre_feedforward_layernorm is the MLP's input norm (post_attention_layernorm the
     * attention output's, below) */
    {"model.layers.%d.pre_feedforward_layernorm.weight", ROLE_VECTOR, DIM_HIDDEN, DIM_NONE, WHEN_SANDWICH_NORMS, false, LAYER(ffn_norm), "blk.%d.ffn_norm.weight"},
    /* Phi-3: q | k | v rows of one qkv_proj, gate | up rows of one gate_up_proj (GGUF: attn_qkv, and ffn_up
     * holding gate | up as llama.cpp's converter writes it) */
    {"model.layers.%d.self_attn.qkv_proj.weight", ROLE_MATRIX, DIM_Q, DIM_HIDDEN, WHEN_FUSED, false, LAYER(wq), "blk.%d.attn_qkv.weight", DIM_QKV, DIM_NONE},
    {"model.layers.%d.self_attn.qkv_proj.weight", ROLE_MATRIX, DIM_KV, DIM_HIDDEN, WHEN_FUSED, false, LAYER(wk), "blk.%d.attn_qkv.weight", DIM_QKV, DIM_Q},
    {"model.layers.%d.self_attn.qkv_proj.weight", ROLE_MATRIX, DIM_KV, DIM_HIDDEN, WHEN_FUSED, false, LAYER(wv), "blk.%d.attn_qkv.weight", DIM_QKV, DIM_QK},
    {"model.layers.%d.mlp.gate_up_proj.weight", ROLE_MATRIX, DIM_FFN, DIM_HIDDEN, WHEN_FUSED, false, LAYER(w_gate), "blk.%d.ffn_up.weight", DIM_FFN2, DIM_NONE},
    {"model.layers.%d.mlp.gate_up_proj.weight", ROLE_MATRIX, DIM_FFN, DIM_HIDDEN, WHEN_FUSED, false, LAYER(w_up), "blk.%d.ffn_up.weight", DIM_FFN2, DIM_FFN},
    /* OLMo-2 and Gemma: norms on the sublayer outputs; OLMo-2: q / k norms over the whole projection */
    {"model.layers.%d.post_attention_layernorm.weight", ROLE_VECTOR, DIM_HIDDEN, DIM_NONE, WHEN_POST_NORMS, false, LAYER(post_attn_norm), "blk.%d.post_attention_norm.weight"},
    {"model.layers.%d.post_feedforward_layernorm.weight", ROLE_VECTOR, DIM_HIDDEN, DIM_NONE, WHEN_POST_NORMS, false, LAYER(post_ffn_norm), "blk.%d.post_ffw_norm.weight"},
    {"model.layers.%d.self_attn.q_norm.weight", ROLE_VECTOR, DIM_Q, DIM_NONE, WHEN_QK_NORM_FULL, false, LAYER(q_norm), "blk.%d.attn_q_norm.weight"},
    {"model.layers.%d.self_attn.k_norm.weight", ROLE_VECTOR, DIM_KV, DIM_NONE, WHEN_QK_NORM_FULL, false, LAYER(k_norm), "blk.%d.attn_k_norm.weight"},
    /* mixture of experts: the router, then each expert's SwiGLU (gate, up, down) */
    {"model.layers.%d.mlp.gate.weight", ROLE_ROUTER, DIM_EXPERTS, DIM_HIDDEN, WHEN_MOE_QWEN, false, LAYER(router), "blk.%d.ffn_gate_inp.weight"},
    {"model.layers.%d.mlp.experts.%d.gate_proj.weight", ROLE_MATRIX, DIM_EXPERT_FFN, DIM_HIDDEN, WHEN_MOE_QWEN, false, EXPERT(w_gate), "blk.%d.ffn_gate_exps.weight", .per_expert = true},
    {"model.layers.%d.mlp.experts.%d.up_proj.weight", ROLE_MATRIX, DIM_EXPERT_FFN, DIM_HIDDEN, WHEN_MOE_QWEN, false, EXPERT(w_up), "blk.%d.ffn_up_exps.weight", .per_expert = true},
    {"model.layers.%d.mlp.experts.%d.down_proj.weight", ROLE_MATRIX, DIM_HIDDEN, DIM_EXPERT_FFN, WHEN_MOE_QWEN, false, EXPERT(w_down), "blk.%d.ffn_down_exps.weight", .per_expert = true},
    {"model.layers.%d.block_sparse_moe.gate.weight", ROLE_ROUTER, DIM_EXPERTS, DIM_HIDDEN, WHEN_MOE_MIXTRAL, false, LAYER(router), "blk.%d.ffn_gate_inp.weight"},
    {"model.layers.%d.block_sparse_moe.experts.%d.w1.weight", ROLE_MATRIX, DIM_EXPERT_FFN, DIM_HIDDEN, WHEN_MOE_MIXTRAL, false, EXPERT(w_gate), "blk.%d.ffn_gate_exps.weight", .per_expert = true},
    {"model.layers.%d.block_sparse_moe.experts.%d.w3.weight", ROLE_MATRIX, DIM_EXPERT_FFN, DIM_HIDDEN, WHEN_MOE_MIXTRAL, false, EXPERT(w_up), "blk.%d.ffn_up_exps.weight", .per_expert = true},
    {"model.layers.%d.block_sparse_moe.experts.%d.w2.weight", ROLE_MATRIX, DIM_HIDDEN, DIM_EXPERT_FFN, WHEN_MOE_MIXTRAL, false, EXPERT(w_down), "blk.%d.ffn_down_exps.weight", .per_expert = true},
};

/* After the layers. As transformers: tie_word_embeddings shares the embedding, and a missing lm_head
 * also falls back to it. */
static const tensor_desc tail_tensors[] = {
    {"model.norm.weight", ROLE_VECTOR, DIM_HIDDEN, DIM_NONE, WHEN_ALWAYS, false, MODEL(final_norm), "output_norm.weight"},
    {"lm_head.weight", ROLE_OUTPUT, DIM_VOCAB, DIM_HIDDEN, WHEN_UNTIED, true, MODEL(lm_head), "output.weight"},
};
#pragma GCC diagnostic pop

static int64_t dim(const kiln_config *c, tensor_dim d) {
    switch (d) {
    case DIM_HIDDEN: return c->hidden_size;
    case DIM_Q: return (int64_t)c->n_heads * c->head_dim;
    case DIM_KV: return (int64_t)c->n_kv_heads * c->head_dim;
    case DIM_FFN: return c->intermediate_size;
    case DIM_HEAD: return c->head_dim;
    case DIM_VOCAB: return c->vocab_size;
    case DIM_QK: return (int64_t)(c->n_heads + c->n_kv_heads) * c->head_dim;
    case DIM_QKV: return (int64_t)(c->n_heads + 2 * c->n_kv_heads) * c->head_dim;
    case DIM_FFN2: return 2 * (int64_t)c->intermediate_size;
    case DIM_EXPERTS: return c->n_experts;
    case DIM_EXPERT_FFN: return c->expert_ffn_size;
    case DIM_NONE: break;
    }
    return 0;
}

static bool wanted(const kiln_config *c, tensor_when w) {
    switch (w) {
    case WHEN_ATTN_BIAS: return c->attention_bias;
    case WHEN_QK_NORM: return c->qk_norm;
    case WHEN_UNTIED: return !c->tie_word_embeddings;
    case WHEN_PLAIN_NORMS: return !c->post_norms;
    case WHEN_SANDWICH_NORMS: return c->sandwich_norms;
    case WHEN_UNFUSED: return !c->fused_proj;
    case WHEN_FUSED: return c->fused_proj;
    case WHEN_PRE_NORMS: return !c->no_pre_norms;
    case WHEN_POST_NORMS: return c->post_norms;
    case WHEN_QK_NORM_FULL: return c->qk_norm_full;
    case WHEN_DENSE_FFN: return c->n_experts == 0;
    case WHEN_DENSE_UNFUSED: return c->n_experts == 0 && !c->fused_proj;
    case WHEN_MOE_QWEN: return c->n_experts && c->arch == KILN_ARCH_QWEN3_MOE;
    case WHEN_MOE_MIXTRAL: return c->n_experts && c->arch == KILN_ARCH_MIXTRAL;
    case WHEN_ALWAYS: break;
    }
    return true;
}

int tensor_name(const tensor_desc *d, bool gguf, int layer, char *out, size_t n) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral" /* the names are the tables' literals */
    if (d->per_expert && !gguf) return snprintf(out, n, d->name, layer, d->expert);
    return snprintf(out, n, gguf ? d->gguf_name : d->name, layer);
#pragma GCC diagnostic pop
}

void tensor_stored_rows(const kiln_config *c, const tensor_desc *d, int64_t *stored_rows, int64_t *first_row) {
    const bool slice = d->fused_rows != DIM_NONE;
    *stored_rows = dim(c, slice ? d->fused_rows : d->rows);
    *first_row = slice ? dim(c, d->slice_at) : 0;
}

/* One row; a per-expert row once per expert, each with its expert's index and slot (tensors.h). */
static int visit_row(const kiln_config *c, const tensor_desc *d, int layer, tensor_visit_fn fn, void *ud,
                     kiln_err *err) {
    char name[160];
    if (!d->per_expert) { /* the table row itself, which visitors may keep */
        tensor_name(d, false, layer, name, sizeof name);
        return fn(ud, d, layer, name, dim(c, d->rows), dim(c, d->cols), err);
    }
    for (int e = 0; e < c->n_experts; e++) {
        tensor_desc one = *d;
        one.expert = e, one.offset += (size_t)e * sizeof(kiln_expert), one.row = d;
        tensor_name(&one, false, layer, name, sizeof name);
        int rc = fn(ud, &one, layer, name, dim(c, d->rows), dim(c, d->cols), err);
        if (rc) return rc;
    }
    return 0;
}

static int visit(const kiln_config *c, const tensor_desc *t, size_t n, int layer, tensor_visit_fn fn, void *ud,
                 kiln_err *err) {
    for (size_t i = 0; i < n; i++) {
        if (!wanted(c, t[i].when)) continue;
        int rc = visit_row(c, &t[i], layer, fn, ud, err);
        if (rc) return rc;
    }
    return 0;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

int tensors_each(const kiln_config *c, tensor_visit_fn fn, void *ud, kiln_err *err) {
    int rc = visit(c, head_tensors, COUNT(head_tensors), -1, fn, ud, err);
    for (int l = 0; l < c->n_layers && !rc; l++) rc = visit(c, layer_tensors, COUNT(layer_tensors), l, fn, ud, err);
    return rc ? rc : visit(c, tail_tensors, COUNT(tail_tensors), -1, fn, ud, err);
}
