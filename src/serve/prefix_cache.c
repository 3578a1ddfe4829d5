/* prefix_cache.c — keeps the KV of finished prompts so later requests that start the same way (a system
 * prompt, the chat history of a conversation) skip recomputing it.
 *
 * An entry is a whole engine sequence the scheduler no longer runs, truncated to its full blocks. Its key
 * is the chain of per-block hashes (hash i covers tokens of blocks 0..i), so matching a new prompt is a
 * walk over 64-bit values, block by block; the tokens are kept too and compared on a hash match, so a
 * collision can never serve wrong KV. A hit becomes kiln_seq_fork(entry, n): the engine shares the full
 * blocks by reference count, no copy. Eviction is least-recently-used, driven by the scheduler when it
 * needs blocks or sequence slots.
 *
 * Sliding-window layers keep only the window's KV (kvcache.c), so an entry can serve a prefix only as
 * long as its window before that prefix's end is still cached (kiln_seq_reusable): a prompt that shares
 * less with it is prefilled from the start, never forked from KV that is gone. */
#include <stdlib.h>
#include <string.h>

#include "serve/serve.h"

typedef struct entry {
    int seq;
    int n_blocks;
    uint64_t *hash;  /* [n_blocks] chained */
    int32_t *tokens; /* [n_blocks * KILN_KV_BLOCK] */
    uint64_t used;   /* LRU clock */
} entry;

struct prefix_cache {
    entry *e;
    int n, cap;
    uint64_t clock;
};

uint64_t prefix_block_hash(uint64_t prev, const int32_t *tokens) {
    /* FNV-1a over the previous hash and the block's token bytes. */
    uint64_t h = 1469598103934665603ULL ^ prev;
    h *= 1099511628211ULL;
    const unsigned char *p = (const unsigned char *)tokens;
    for (size_t i = 0; i < KILN_KV_BLOCK * sizeof(int32_t); i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

prefix_cache *prefix_cache_new(int max_entries) {
    prefix_cache *pc = calloc(1, sizeof *pc);
    if (!pc) return NULL;
    pc->cap = max_entries > 0 ? max_entries : 1;
    pc->e = calloc((size_t)pc->cap, sizeof *pc->e);
    if (!pc->e) {
        free(pc);
        return NULL;
    }
    return pc;
}

static void drop(prefix_cache *pc, kiln_ctx *ctx, int i) {
    kiln_seq_free(ctx, pc->e[i].seq);
    free(pc->e[i].hash);
    free(pc->e[i].tokens);
    pc->e[i] = pc->e[--pc->n];
}

void prefix_cache_free(prefix_cache *pc, kiln_ctx *ctx) {
    if (!pc) return;
    while (pc->n) drop(pc, ctx, pc->n - 1);
    free(pc->e);
    free(pc);
}

int prefix_cache_count(const prefix_cache *pc) { return pc->n; }

/* Full blocks of tokens[0..n) that entry x shares with them. */
static int shared_blocks(const entry *x, const int32_t *tokens, int n, const uint64_t *hash) {
    int nb = n / KILN_KV_BLOCK, k = 0;
    while (k < nb && k < x->n_blocks && x->hash[k] == hash[k] &&
           !memcmp(x->tokens + k * KILN_KV_BLOCK, tokens + k * KILN_KV_BLOCK, KILN_KV_BLOCK * sizeof(int32_t)))
        k++;
    return k;
}

/* Whether sequence seq can serve its first k blocks (a window model's KV before them may be gone). */
static bool serves(const kiln_ctx *ctx, int seq, int k) {
    return kiln_seq_reusable(ctx, seq, k * KILN_KV_BLOCK) == k * KILN_KV_BLOCK;
}

static uint64_t *hash_blocks(const int32_t *tokens, int nb) {
    uint64_t *h = malloc(((size_t)nb + 1) * sizeof *h);
    if (!h) return NULL;
    uint64_t prev = 0;
    for (int i = 0; i < nb; i++) h[i] = prev = prefix_block_hash(prev, tokens + i * KILN_KV_BLOCK);
    return h;
}

int prefix_cache_lookup(prefix_cache *pc, const kiln_ctx *ctx, const int32_t *tokens, int n, int *n_match) {
    *n_match = 0;
    int nb = n / KILN_KV_BLOCK;
    if (nb == 0 || pc->n == 0) return -1;
    uint64_t *h = hash_blocks(tokens, nb);
    if (!h) return -1;
    int best = -1, best_k = 0;
    for (int i = 0; i < pc->n; i++) {
        int k = shared_blocks(&pc->e[i], tokens, n, h);
        if (k > best_k && serves(ctx, pc->e[i].seq, k)) best = i, best_k = k;
    }
    free(h);
    if (best < 0) return -1;
    pc->e[best].used = ++pc->clock;
    *n_match = best_k * KILN_KV_BLOCK;
    return pc->e[best].seq;
}

void prefix_cache_insert(prefix_cache *pc, kiln_ctx *ctx, int seq, const int32_t *tokens, int n) {
    int nb = n / KILN_KV_BLOCK;
    uint64_t *h = nb ? hash_blocks(tokens, nb) : NULL;
    if (!h || kiln_seq_truncate(ctx, seq, nb * KILN_KV_BLOCK, NULL) != 0) {
        free(h);
        kiln_seq_free(ctx, seq);
        return;
    }
    for (int i = 0; i < pc->n; i++) {
        int k = shared_blocks(&pc->e[i], tokens, n, h);
        if (k == nb && serves(ctx, pc->e[i].seq, k)) { /* nothing new: an existing entry already serves this prompt */
            pc->e[i].used = ++pc->clock;
            free(h);
            kiln_seq_free(ctx, seq);
            return;
        }
        /* the new one extends it, and (windows) still serves every prefix it served */
        if (k == pc->e[i].n_blocks && serves(ctx, seq, k)) drop(pc, ctx, i--);
    }
    if (pc->n == pc->cap) { /* full: make room by dropping the least recently used */
        int lru = 0;
        for (int i = 1; i < pc->n; i++)
            if (pc->e[i].used < pc->e[lru].used) lru = i;
        drop(pc, ctx, lru);
    }
    int32_t *t = malloc((size_t)nb * KILN_KV_BLOCK * sizeof *t);
    if (!t) {
        free(h);
        kiln_seq_free(ctx, seq);
        return;
    }
    memcpy(t, tokens, (size_t)nb * KILN_KV_BLOCK * sizeof *t);
    pc->e[pc->n++] = (entry){.seq = seq, .n_blocks = nb, .hash = h, .tokens = t, .used = ++pc->clock};
}

bool prefix_cache_evict(prefix_cache *pc, kiln_ctx *ctx) {
    if (pc->n == 0) return false;
    int lru = 0;
    for (int i = 1; i < pc->n; i++)
        if (pc->e[i].used < pc->e[lru].used) lru = i;
    drop(pc, ctx, lru);
    return true;
}
