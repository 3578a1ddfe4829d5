/* engine.h — the inference context (internal): paged KV cache plus forward-pass scratch.
 *
 * KV layout: block b, layer l holds K then V, each [n_kv_heads][KILN_KV_BLOCK][head_dim] floats:
 * k(b, l) = kv + (b * n_layers + l) * 2 * BLOCK * kv_dim, v(b, l) = k(b, l) + BLOCK * kv_dim, and head h
 * of slot s at + (h * BLOCK + s) * head_dim. Head-major, so one head's keys are contiguous: attention
 * walks one head over many positions, and a position-major row (kv_dim floats apart) put every head
 * slice 2 KiB apart, which the caches and prefetcher handled badly (see forward.c attn_part). */
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
    float *kv;
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
};

/* Block of a sequence's position p (the table must cover it). */
static inline int kv_block_of(const kiln_ctx *c, int seq, int p) { return c->seqs[seq].table[p / KILN_KV_BLOCK]; }
static inline float *kv_k(const kiln_ctx *c, int block, int layer) {
    return c->kv + ((size_t)block * c->m->cfg.n_layers + (size_t)layer) * 2 * KILN_KV_BLOCK * (size_t)c->kv_dim;
}
/* Makes room for n more tokens of seq (new blocks; copy-on-write of a shared partial last block).
 * Callers check kv_blocks_needed first, so this cannot fail. */
int kv_blocks_needed(const kiln_ctx *c, int seq, int n);
void kv_reserve(kiln_ctx *c, int seq, int n);

#endif
