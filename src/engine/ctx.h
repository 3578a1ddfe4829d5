/* ctx.h — an inference context: the paged KV cache, its sequences, and forward-pass scratch (internal). */
#ifndef KILN_CTX_H
#define KILN_CTX_H

#include "model/model.h"

typedef struct kiln_seq {
    bool alive;
    int len;      /* tokens whose K/V are in the cache */
    int *blocks;  /* block table: block ids holding positions [i*BLOCK, (i+1)*BLOCK) */
    int n_blocks, cap_blocks;
} kiln_seq;

struct kiln_ctx {
    kiln_model *m;
    int n_ctx, max_seqs, kv_dim;
    /* KV storage: for layer l and block b, K rows start at k + ((l * n_blocks + b) * BLOCK) * kv_dim. */
    float *k, *v;
    int total_blocks;
    int *ref;        /* per block: sequences holding it (0 = free) */
    int *free_list;  /* stack of free block ids */
    int n_free;
    kiln_seq *seqs;
    /* forward scratch, grown to the largest batch seen */
    int cap_tokens;
    float *x, *xb, *q, *kn, *vn, *att, *hb, *hb2;
    float *scores; /* [n_threads][n_ctx] */
    int *tok_seq, *tok_pos;
};

/* Block storage of layer l, block b, slot s (0..BLOCK-1). */
static inline float *kv_row(const struct kiln_ctx *c, float *base, int l, int b, int s) {
    return base + (((size_t)l * c->total_blocks + (size_t)b) * KILN_KV_BLOCK + (size_t)s) * c->kv_dim;
}

/* Makes sure seq can take n more tokens: allocates blocks and copies a shared partial last block
 * (copy-on-write). Fails without changing anything when the free list is short. */
int kv_reserve(struct kiln_ctx *c, int seq, int n, kiln_err *err);
/* Blocks kv_reserve would take for seq to grow by n tokens. */
int kv_blocks_needed(const struct kiln_ctx *c, int seq, int n);

#endif
