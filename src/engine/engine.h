/* engine.h — the inference context (internal): paged KV cache plus forward-pass scratch.
 *
 * KV layout: one row = one head's head_dim values of one position in the context's kv_type (f32, f16,
 * bf16, or q8_0: head_dim/32 llama.cpp block_q8_0s, f16 scale then 32 int8), row_bytes =
 * kern_row_bytes(kv_type, head_dim). A layer lives in one of two pools (kv_pool below); block b of a
 * pool holds, for each of its layers (slot i = layer_slot[l]), K then V, each [n_kv_heads][KILN_KV_BLOCK]
 * rows: k(b, l) = pool.kv + (b * pool.n_layers + i) * 2 * BLOCK * n_kv_heads * row_bytes, v(b, l) =
 * k(b, l) + BLOCK * n_kv_heads * row_bytes, and head h of slot s at + (h * BLOCK + s) * row_bytes (bytes).
 * Head-major, so one head's keys are contiguous: attention walks one head over many positions, and a
 * position-major row (kv_dim floats apart) put every head slice 2 KiB apart, which the caches and
 * prefetcher handled badly (see forward.c attn_part). Attention reads the rows in their own format
 * (kern_kv_view.type); only kvcache.c writes them (kv_store). */
#ifndef KILN_ENGINE_H
#define KILN_ENGINE_H

#include "model/model.h"

/* The KV cache has two pools of blocks: one for the global layers, which keep every position, and one
 * for the sliding-window layers (kiln_config_layer_windowed), which keep only the blocks a future query
 * can still see. Both are indexed the same way (logical block pos / KILN_KV_BLOCK), so attention and
 * kv_view need not know which pool a layer uses. A model without window layers has an empty window pool;
 * one whose every layer is windowed (Mistral) has a global pool of zero-byte blocks, which still counts
 * the positions a sequence may hold (admission in the server works the same for both). */
enum { KV_GLOBAL, KV_WINDOW, KV_POOLS };
/* A window table entry whose block was dropped: far enough off that reading through it faults at once
 * (k + KV_DROPPED * block_stride lies terabytes below the cache) instead of reading another's KV. */
#define KV_DROPPED (-(1 << 30))

typedef struct kv_pool {
    int n_layers;         /* layers whose K and V live here */
    int n_blocks, n_free;
    char *kv;             /* [n_blocks][n_layers] blocks of kv_block_bytes; NULL when n_layers is 0 */
    int *refcount;        /* per block: sequences holding it */
    int *free_list;       /* stack of free block ids */
} kv_pool;

typedef struct kv_seq {
    bool used;
    int len;        /* tokens in the cache */
    int n_blocks;   /* logical blocks covered (entries of each table) */
    int first_live; /* window table: entries [0, first_live) are KV_DROPPED */
    int *table[KV_POOLS]; /* [max_blocks_per_seq] block ids in each pool */
} kv_seq;

struct kiln_ctx {
    kiln_model *m;
    int max_seqs, n_ctx, max_blocks_per_seq, kv_dim;
    int window;          /* the window layers' sliding_window; 0: no layer has one */
    int max_step_tokens; /* window models: tokens of one sequence per forward round (kiln_ctx_opts) */
    kiln_dtype kv_type;
    size_t kv_row_bytes;   /* one head of one position (above) */
    size_t kv_block_bytes; /* one block of one layer, K and V */
    kv_pool pool[KV_POOLS];
    int *layer_slot;       /* [n_layers] a layer's index among its pool's layers */
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
     * [T][n_experts]; an expert group's gathered inputs and outputs [moe_rows][hidden], its gate and up
     * [moe_rows][expert_ffn_size]; the FFN output being summed [T][hidden]; each token's experts and
     * weights [T][n_experts_used], and the same choices grouped by expert: token ids and weights
     * [T * n_experts_used] */
    float *moe_probs, *moe_x, *moe_y, *moe_gate, *moe_up, *moe_acc, *moe_sel_w, *moe_w;
    int *moe_sel, *moe_tok;
    size_t moe_rows;
};

/* The pool layer l's K and V live in. */
static inline int kv_pool_of(const kiln_ctx *c, int layer) {
    return kiln_config_layer_windowed(&c->m->cfg, layer) ? KV_WINDOW : KV_GLOBAL;
}
static inline char *kv_k(const kiln_ctx *c, int block, int layer) {
    const kv_pool *p = &c->pool[kv_pool_of(c, layer)];
    return p->kv + ((size_t)block * p->n_layers + (size_t)c->layer_slot[layer]) * c->kv_block_bytes;
}
/* Stores token position p of seq's layer: k and v hold kv_dim f32 values each (head after head),
 * converted to the cache's format. */
void kv_store(kiln_ctx *c, int seq, int p, int layer, const float *k, const float *v);
/* The attention kernels' view of seq's layer (kernels.h). A window layer's table has KV_DROPPED below
 * the block of the first position its queries can see (kern_kv_view.first): never read those. */
kern_kv_view kv_view(const kiln_ctx *c, int seq, int layer);
/* Whether the batch's new tokens fit the free blocks of both pools (a one-line error if not). */
int kv_check_room(const kiln_ctx *c, const kiln_batch *b, kiln_err *err);
/* Makes room for n more tokens of seq (new blocks; copy-on-write of a shared partial last block).
 * Callers check kv_check_room first, so this cannot fail. */
void kv_reserve(kiln_ctx *c, int seq, int n);
/* seq now holds n more tokens: its length grows, and window blocks no later query can see are released. */
void kv_advance(kiln_ctx *c, int seq, int n);

/* The sequences' state (each live sequence's length, first live window block and block tables, and both
 * pools' free lists) as int32s appended to out, and the same set on another rank's context of the same
 * geometry (the ints at *at, advanced; a one-line error for a malformed or unmirrorable message): how a
 * distributed follower mirrors rank 0's cache between steps (dist/follow.c). */
struct strbuf;
int kv_state_pack(const kiln_ctx *c, struct strbuf *out);
int kv_state_apply(kiln_ctx *c, const int32_t **at, const int32_t *end, kiln_err *err);

/* forward.c: one forward step (every sequence's tokens at once) and the batch checks it starts with;
 * rounds.c splits a window model's long steps into rounds of these (kiln_forward). */
int forward_validate(const kiln_ctx *c, const kiln_batch *b, const float *out, int *T, kiln_err *err);
int forward_step(kiln_ctx *c, const kiln_batch *b, float *out, bool hidden_only, kiln_err *err);

/* moe.c: the mixture-of-experts FFN of layer L over the step's T tokens: c->h (the normed hidden states)
 * in, the FFN's output in c->h out. Non-zero when a matmul found its scratch too small (a sizing bug). */
int moe_ffn(kiln_ctx *c, const kiln_layer *L, int T);
/* forward.c: the gated MLP's elementwise step on n values, gate = act(gate) * up with the model's activation
 * (SwiGLU's silu, Gemma's GELU-tanh), over the pool: the dense FFN and every expert use it. */
void ffn_gated_act(kiln_ctx *c, float *gate, const float *up, size_t n);
/* Grows the MoE scratch to T tokens (nothing for a dense model); frees it. */
int moe_scratch(kiln_ctx *c, size_t T, kiln_err *err);
void moe_scratch_free(kiln_ctx *c);

#endif
