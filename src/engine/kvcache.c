/* kvcache.c — the paged KV cache: fixed blocks of KILN_KV_BLOCK positions, a block table per sequence,
 * a free list, and reference counts so sequences can share a prefix (kiln_seq_fork).
 *
 * A block shared by several sequences is read-only: a sequence that must write into a shared,
 * partially filled last block first copies it (copy-on-write). Full shared blocks are never written
 * again, since positions only grow and truncation below them drops the reference instead. */
#include <stdlib.h>
#include <string.h>

#include "engine/ctx.h"

void kiln_ctx_opts_default(kiln_ctx_opts *o) {
    o->max_seqs = 1;
    o->n_ctx = 0;
    o->kv_blocks = 0;
}

static int blocks_for(int tokens) { return (tokens + KILN_KV_BLOCK - 1) / KILN_KV_BLOCK; }

kiln_ctx *kiln_ctx_new(kiln_model *m, const kiln_ctx_opts *opts, kiln_err *err) {
    kiln_ctx_opts def;
    if (!opts) {
        kiln_ctx_opts_default(&def);
        opts = &def;
    }
    const kiln_config *cfg = kiln_model_config(m);
    int max_pos = cfg->max_position_embeddings;
    int n_ctx = opts->n_ctx > 0 ? opts->n_ctx : (max_pos < 4096 ? max_pos : 4096);
    if (n_ctx > max_pos) {
        kiln_err_set(err, "context %d exceeds the model's max_position_embeddings %d", n_ctx, max_pos);
        return NULL;
    }
    int max_seqs = opts->max_seqs > 0 ? opts->max_seqs : 1;
    long blocks = opts->kv_blocks > 0 ? opts->kv_blocks : (long)max_seqs * blocks_for(n_ctx);
    if (blocks > (1L << 24)) {
        kiln_err_set(err, "KV cache of %ld blocks is too large", blocks);
        return NULL;
    }
    kiln_ctx *c = calloc(1, sizeof *c);
    if (!c) goto oom;
    c->m = m;
    c->n_ctx = n_ctx;
    c->max_seqs = max_seqs;
    c->kv_dim = cfg->n_kv_heads * cfg->head_dim;
    c->total_blocks = (int)blocks;
    size_t floats = (size_t)cfg->n_layers * (size_t)blocks * KILN_KV_BLOCK * (size_t)c->kv_dim;
    /* calloc: untouched blocks cost no resident memory until used */
    c->k = calloc(floats, sizeof(float));
    c->v = calloc(floats, sizeof(float));
    c->ref = calloc((size_t)blocks, sizeof *c->ref);
    c->free_list = malloc((size_t)blocks * sizeof *c->free_list);
    c->seqs = calloc((size_t)max_seqs, sizeof *c->seqs);
    c->scores = malloc((size_t)kiln_pool_size(m->pool) * (size_t)n_ctx * sizeof *c->scores);
    if (!c->k || !c->v || !c->ref || !c->free_list || !c->seqs || !c->scores) goto oom;
    /* Stack order: block 0 on top, so a fresh context fills low blocks first. */
    for (int i = 0; i < c->total_blocks; i++) c->free_list[i] = c->total_blocks - 1 - i;
    c->n_free = c->total_blocks;
    return c;
oom:
    kiln_err_set(err, "out of memory allocating the KV cache (%ld blocks)", blocks);
    kiln_ctx_free(c);
    return NULL;
}

void kiln_ctx_free(kiln_ctx *c) {
    if (!c) return;
    for (int i = 0; i < c->max_seqs && c->seqs; i++) free(c->seqs[i].blocks);
    free(c->seqs);
    free(c->k);
    free(c->v);
    free(c->ref);
    free(c->free_list);
    free(c->scores);
    free(c->x);
    free(c->xb);
    free(c->q);
    free(c->kn);
    free(c->vn);
    free(c->att);
    free(c->hb);
    free(c->hb2);
    free(c->tok_seq);
    free(c->tok_pos);
    free(c);
}

int kiln_ctx_n_ctx(const kiln_ctx *c) { return c->n_ctx; }
int kiln_ctx_free_blocks(const kiln_ctx *c) { return c->n_free; }
int kiln_ctx_total_blocks(const kiln_ctx *c) { return c->total_blocks; }
size_t kiln_ctx_kv_bytes(const kiln_ctx *c) {
    return 2 * (size_t)c->m->cfg.n_layers * (size_t)c->total_blocks * KILN_KV_BLOCK * (size_t)c->kv_dim *
           sizeof(float);
}

static int block_alloc(kiln_ctx *c) {
    int b = c->free_list[--c->n_free];
    c->ref[b] = 1;
    return b;
}

static void block_release(kiln_ctx *c, int b) {
    if (--c->ref[b] == 0) c->free_list[c->n_free++] = b;
}

static int seq_push_block(kiln_seq *s, int b) {
    if (s->n_blocks == s->cap_blocks) {
        int cap = s->cap_blocks ? s->cap_blocks * 2 : 8;
        int *n = realloc(s->blocks, (size_t)cap * sizeof *n);
        if (!n) return -1;
        s->blocks = n;
        s->cap_blocks = cap;
    }
    s->blocks[s->n_blocks++] = b;
    return 0;
}

static int valid_seq(const kiln_ctx *c, int seq) { return seq >= 0 && seq < c->max_seqs && c->seqs[seq].alive; }

int kiln_seq_new(kiln_ctx *c, kiln_err *err) {
    for (int i = 0; i < c->max_seqs; i++)
        if (!c->seqs[i].alive) {
            c->seqs[i].alive = true;
            c->seqs[i].len = 0;
            c->seqs[i].n_blocks = 0;
            return i;
        }
    return kiln_err_set(err, "all %d sequence slots are in use", c->max_seqs);
}

void kiln_seq_free(kiln_ctx *c, int seq) {
    if (!valid_seq(c, seq)) return;
    kiln_seq *s = &c->seqs[seq];
    for (int i = 0; i < s->n_blocks; i++) block_release(c, s->blocks[i]);
    s->n_blocks = 0;
    s->len = 0;
    s->alive = false;
}

int kiln_seq_len(const kiln_ctx *c, int seq) { return valid_seq(c, seq) ? c->seqs[seq].len : -1; }

int kiln_seq_truncate(kiln_ctx *c, int seq, int n_tokens, kiln_err *err) {
    if (!valid_seq(c, seq)) return kiln_err_set(err, "no sequence %d", seq);
    kiln_seq *s = &c->seqs[seq];
    if (n_tokens < 0 || n_tokens > s->len)
        return kiln_err_set(err, "cannot truncate sequence %d of %d tokens to %d", seq, s->len, n_tokens);
    int keep = blocks_for(n_tokens);
    while (s->n_blocks > keep) block_release(c, s->blocks[--s->n_blocks]);
    s->len = n_tokens;
    return 0;
}

/* Copies the first `slots` positions of block src into block dst, in every layer. */
static void block_copy(kiln_ctx *c, int dst, int src, int slots) {
    size_t bytes = (size_t)slots * c->kv_dim * sizeof(float);
    for (int l = 0; l < c->m->cfg.n_layers; l++) {
        memcpy(kv_row(c, c->k, l, dst, 0), kv_row(c, c->k, l, src, 0), bytes);
        memcpy(kv_row(c, c->v, l, dst, 0), kv_row(c, c->v, l, src, 0), bytes);
    }
}

int kiln_seq_fork(kiln_ctx *c, int src, int n_tokens, kiln_err *err) {
    if (!valid_seq(c, src)) return kiln_err_set(err, "no sequence %d", src);
    if (n_tokens < 0 || n_tokens > c->seqs[src].len)
        return kiln_err_set(err, "cannot fork %d tokens of a %d-token sequence", n_tokens, c->seqs[src].len);
    int full = n_tokens / KILN_KV_BLOCK, part = n_tokens % KILN_KV_BLOCK;
    if (part && c->n_free < 1) return kiln_err_set(err, "KV cache full: no block for the forked sequence");
    int seq = kiln_seq_new(c, err);
    if (seq < 0) return -1;
    kiln_seq *s = &c->seqs[seq];
    const int *sb = c->seqs[src].blocks; /* stable: the new slot's pushes never touch src's table */
    for (int i = 0; i < full; i++) {
        if (seq_push_block(s, sb[i])) goto oom;
        c->ref[sb[i]]++;
    }
    if (part) {
        int b = block_alloc(c);
        block_copy(c, b, sb[full], part);
        if (seq_push_block(s, b)) {
            block_release(c, b);
            goto oom;
        }
    }
    s->len = n_tokens;
    return seq;
oom:
    kiln_seq_free(c, seq);
    return kiln_err_set(err, "out of memory forking a sequence");
}

int kv_blocks_needed(const kiln_ctx *c, int seq, int n) {
    const kiln_seq *s = &c->seqs[seq];
    int need = blocks_for(s->len + n) - s->n_blocks;
    /* writing into a shared, partially filled last block needs a private copy first */
    if (s->len % KILN_KV_BLOCK && c->ref[s->blocks[s->n_blocks - 1]] > 1) need++;
    return need;
}

int kv_reserve(kiln_ctx *c, int seq, int n, kiln_err *err) {
    kiln_seq *s = &c->seqs[seq];
    if (kv_blocks_needed(c, seq, n) > c->n_free) return kiln_err_set(err, "KV cache full");
    if (s->len % KILN_KV_BLOCK && c->ref[s->blocks[s->n_blocks - 1]] > 1) {
        int old = s->blocks[s->n_blocks - 1], b = block_alloc(c);
        block_copy(c, b, old, s->len % KILN_KV_BLOCK);
        block_release(c, old);
        s->blocks[s->n_blocks - 1] = b;
    }
    while (s->n_blocks < blocks_for(s->len + n)) {
        int b = block_alloc(c);
        if (seq_push_block(s, b)) {
            block_release(c, b);
            return kiln_err_set(err, "out of memory growing a block table");
        }
    }
    return 0;
}
