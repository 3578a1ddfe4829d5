/* engine.h — the inference context (internal): paged KV cache plus forward-pass scratch.
 *
 * KV layout: one row = one head's head_dim values of one position in the context's kv_type (f32, f16,
 * bf16, or q8_0: head_dim/32 llama.cpp block_q8_0s, f16 scale then 32 int8), row_bytes =
 * kern_row_bytes(kv_type, head_dim). Block b, layer l holds K then V, each [n_kv_heads][KILN_KV_BLOCK]
 * rows: k(b, l) = kv + (b * n_layers + l) * 2 * BLOCK * n_kv_heads * row_bytes, v(b, l) = k(b, l) +
 * BLOCK * n_kv_heads * row_bytes, and head h of slot s at + (h * BLOCK + s) * row_bytes (all in bytes).
 * Head-major, so one head's keys are contiguous: attention walks one head over many positions, and a
 * position-major row (kv_dim floats apart) put every head slice 2 KiB apart, which the caches and
 * prefetcher handled badly (see forward.c attn_part). Attention reads the rows in their own format
 * (kern_kv_view.type); only kvcache.c writes them (kv_store). */
#ifndef KILN_ENGINE_H
#define KILN_ENGINE_H

#include "model/model.h"

typedef struct kv_seq {
    bool used;
    int len;      /* tokens in the cache */
    int n_blocks; /* blocks held (table entries) */
    int *table;   /* [max_blocks_per_seq] block ids */
} kv_seq;

struct kiln_ctx {
    kiln_model *m;
    int max_seqs, n_ctx, n_blocks, max_blocks_per_seq, kv_dim;
    kiln_dtype kv_type;
    size_t kv_row_bytes;   /* one head of one position (above) */
    size_t kv_block_bytes; /* one block of one layer, K and V */
    char *kv;
    int *refcount;   /* per block: sequences holding it */
    int *free_list;  /* stack of free block ids */
    int n_free;
    kv_seq *seqs;
    float *inv_freq; /* [head_dim / 2], then (rope_local_theta) the window layers' [head_dim / 2] */
    /* What RoPE's cos and sin are multiplied by: longrope's attention factor, else 1. Longrope's short or
     * long factors are chosen once for the context (long when n_ctx exceeds the original context), as
     * llama.cpp does; transformers switches per forward call on the current length instead, which agrees
     * whenever n_ctx <= rope_original_max_pos. */
    float rope_scale;
    /* forward scratch, grown as batches need (ensure_scratch in forward.c, before any kernel runs) */
    size_t scratch_tokens;
    float *x, *h, *q, *k, *v, *att, *gate, *up, *rope_cs, *scores;
    int *pos;
    float *rope_cs_local; /* rope_cs of the window layers' RoPE (rope_local_theta) */
    kern_scratch ks; /* kern_matmul's: quantised activations, per-thread row / panel buffers */
    /* mixture-of-experts scratch (moe.c, grown by ensure_scratch with the rest): router probabilities
     * [T][n_experts]; one expert's gathered inputs and its outputs, and the FFN output being summed, each
     * [T][hidden]; each token's experts and weights [T][n_experts_used], and the same choices grouped by
     * expert: token ids and weights [T * n_experts_used] */
    float *moe_probs, *moe_x, *moe_y, *moe_acc, *moe_sel_w, *moe_w;
    int *moe_sel, *moe_tok;
};

/* Block of a sequence's position p (the table must cover it). */
static inline int kv_block_of(const kiln_ctx *c, int seq, int p) { return c->seqs[seq].table[p / KILN_KV_BLOCK]; }
static inline char *kv_k(const kiln_ctx *c, int block, int layer) {
    return c->kv + ((size_t)block * c->m->cfg.n_layers + (size_t)layer) * c->kv_block_bytes;
}
/* Stores token position p of seq's layer: k and v hold kv_dim f32 values each (head after head),
 * converted to the cache's format. */
void kv_store(kiln_ctx *c, int seq, int p, int layer, const float *k, const float *v);
/* The attention kernels' view of seq's layer (kernels.h). */
kern_kv_view kv_view(const kiln_ctx *c, int seq, int layer);
/* Makes room for n more tokens of seq (new blocks; copy-on-write of a shared partial last block).
 * Callers check kv_blocks_needed first, so this cannot fail. */
int kv_blocks_needed(const kiln_ctx *c, int seq, int n);
void kv_reserve(kiln_ctx *c, int seq, int n);

/* moe.c: the mixture-of-experts FFN of layer L over the step's T tokens: c->h (the normed hidden states)
 * in, the FFN's output in c->h out. Non-zero when a matmul found its scratch too small (a sizing bug). */
int moe_ffn(kiln_ctx *c, const kiln_layer *L, int T);
/* forward.c: the gated MLP's elementwise step on n values, gate = act(gate) * up with the model's activation
 * (SwiGLU's silu, Gemma's GELU-tanh), over the pool: the dense FFN and every expert use it. */
void ffn_gated_act(kiln_ctx *c, size_t n);
/* Grows the MoE scratch to T tokens (nothing for a dense model); frees it. */
int moe_scratch(kiln_ctx *c, size_t T, kiln_err *err);
void moe_scratch_free(kiln_ctx *c);

#endif
