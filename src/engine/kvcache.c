/* kvcache.c — the paged KV cache: fixed blocks of KILN_KV_BLOCK tokens, a block table per sequence,
 * a free list, and refcounts so forked sequences share their common prefix.
 *
 * A block is written only by a sequence that holds it alone: a sequence about to write into a shared
 * block (its partially filled last block, after a fork or a truncate) first copies it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine.h"

void kiln_ctx_opts_default(kiln_ctx_opts *o) {
    o->max_seqs = 1;
    o->n_ctx = 0;
    o->kv_blocks = 0;
}

kiln_ctx *kiln_ctx_new(kiln_model *m, const kiln_ctx_opts *opts, kiln_err *err) {
    kiln_ctx_opts o;
    if (opts) o = *opts;
    else kiln_ctx_opts_default(&o);
    const kiln_config *cfg = &m->cfg;
    int maxpos = cfg->max_position_embeddings;
    if (o.max_seqs <= 0) o.max_seqs = 1;
    if (o.n_ctx <= 0) o.n_ctx = maxpos < 4096 ? maxpos : 4096;
    if (o.n_ctx > maxpos) {
        kiln_err_set(err, "n_ctx %d exceeds the model's max_position_embeddings %d", o.n_ctx, maxpos);
        return NULL;
    }
    int per_seq = (o.n_ctx + KILN_KV_BLOCK - 1) / KILN_KV_BLOCK;
    if (o.kv_blocks <= 0) o.kv_blocks = o.max_seqs * per_seq;
    kiln_ctx *c = calloc(1, sizeof *c);
    if (!c) goto oom;
    c->m = m;
    c->max_seqs = o.max_seqs;
    c->n_ctx = o.n_ctx;
    c->n_blocks = o.kv_blocks;
    c->max_blocks_per_seq = per_seq;
    c->kv_dim = cfg->n_kv_heads * cfg->head_dim;
    c->kv = calloc((size_t)c->n_blocks * cfg->n_layers * 2 * KILN_KV_BLOCK * (size_t)c->kv_dim, sizeof(float));
    c->refcount = calloc((size_t)c->n_blocks, sizeof(int));
    c->free_list = malloc((size_t)c->n_blocks * sizeof(int));
    c->seqs = calloc((size_t)c->max_seqs, sizeof *c->seqs);
    c->inv_freq = malloc((size_t)cfg->head_dim * sizeof(float)); /* global, then local (engine.h) */
    if (!c->kv || !c->refcount || !c->free_list || !c->seqs || !c->inv_freq) goto oom;
    for (int s = 0; s < c->max_seqs; s++)
        if (!(c->seqs[s].table = malloc((size_t)per_seq * sizeof(int)))) goto oom;
    /* Lowest block ids first: pop from the end. */
    for (int i = 0; i < c->n_blocks; i++) c->free_list[i] = c->n_blocks - 1 - i;
    c->n_free = c->n_blocks;
    /* inv_freq as transformers computes it (default, linear, llama3 `_compute_llama3_parameters`), in
     * double then rounded to float. */
    const double PI = 3.14159265358979323846;
    int hd = cfg->rope_dim; /* the rotated dims of each head (partial_rotary_factor) */
    for (int i = 0; i < hd / 2; i++) {
        double f = 1.0 / pow(cfg->rope_theta, (double)(2 * i) / hd);
        if (cfg->rope_type == KILN_ROPE_LINEAR) f /= cfg->rope_factor;
        else if (cfg->rope_type == KILN_ROPE_LLAMA3) {
            double old = cfg->rope_original_max_pos, lo = cfg->rope_low_freq_factor, hi = cfg->rope_high_freq_factor;
            double wl = 2 * PI / f, lo_wl = old / lo, hi_wl = old / hi;
            double fl = wl > lo_wl ? f / cfg->rope_factor : f;
            if (!(wl < hi_wl) && !(wl > lo_wl)) {
                double smooth = (old / wl - lo) / (hi - lo);
                fl = (1 - smooth) * fl / cfg->rope_factor + smooth * fl;
            }
            f = fl;
        } else if (cfg->rope_type == KILN_ROPE_LONGROPE) /* by the context, as llama.cpp (engine.h rope_scale) */
            f /= c->n_ctx > cfg->rope_original_max_pos ? cfg->rope_long_factor[i] : cfg->rope_short_factor[i];
        if (m->rope_freq_factors) f /= m->rope_freq_factors[i]; /* a GGUF's rope_freqs (llama.cpp: theta / factor) */
        c->inv_freq[i] = (float)f;
    }
    for (int i = 0; cfg->rope_local_theta > 0 && i < hd / 2; i++) /* default RoPE: no scaling on window layers */
        c->inv_freq[hd / 2 + i] = (float)(1.0 / pow(cfg->rope_local_theta, (double)(2 * i) / hd));
    c->rope_scale = cfg->rope_type == KILN_ROPE_LONGROPE ? (float)cfg->rope_attn_factor : 1.0f;
    return c;
oom:
    kiln_ctx_free(c);
    kiln_err_set(err, "out of memory allocating the KV cache (%d blocks)", o.kv_blocks);
    return NULL;
}

void kiln_ctx_free(kiln_ctx *c) {
    if (!c) return;
    if (c->seqs)
        for (int s = 0; s < c->max_seqs; s++) free(c->seqs[s].table);
    free(c->seqs);
    free(c->kv);
    free(c->refcount);
    free(c->free_list);
    free(c->inv_freq);
    float *bufs[] = {c->x, c->h, c->q, c->k, c->v, c->att, c->gate, c->up, c->rope_cs, c->scores, c->rope_cs_local};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(c->pos);
    moe_scratch_free(c);
    kern_scratch_free(&c->ks);
    free(c);
}

int kiln_ctx_n_ctx(const kiln_ctx *c) { return c->n_ctx; }
size_t kiln_ctx_kv_bytes(const kiln_ctx *c) {
    return (size_t)c->n_blocks * c->m->cfg.n_layers * 2 * KILN_KV_BLOCK * (size_t)c->kv_dim * sizeof(float);
}
int kiln_ctx_free_blocks(const kiln_ctx *c) { return c->n_free; }
int kiln_ctx_total_blocks(const kiln_ctx *c) { return c->n_blocks; }

static int valid_seq(const kiln_ctx *c, int seq) { return seq >= 0 && seq < c->max_seqs && c->seqs[seq].used; }

int kiln_seq_new(kiln_ctx *c, kiln_err *err) {
    for (int s = 0; s < c->max_seqs; s++)
        if (!c->seqs[s].used) {
            c->seqs[s].used = true;
            c->seqs[s].len = 0;
            c->seqs[s].n_blocks = 0;
            return s;
        }
    return kiln_err_set(err, "all %d sequence slots are in use", c->max_seqs);
}

static void block_release(kiln_ctx *c, int b) {
    if (--c->refcount[b] == 0) c->free_list[c->n_free++] = b;
}

static int block_take(kiln_ctx *c) {
    int b = c->free_list[--c->n_free];
    c->refcount[b] = 1;
    return b;
}

void kiln_seq_free(kiln_ctx *c, int seq) {
    if (!valid_seq(c, seq)) return;
    kv_seq *s = &c->seqs[seq];
    for (int i = 0; i < s->n_blocks; i++) block_release(c, s->table[i]);
    s->used = false;
    s->len = s->n_blocks = 0;
}

int kiln_seq_len(const kiln_ctx *c, int seq) { return valid_seq(c, seq) ? c->seqs[seq].len : -1; }

int kiln_seq_truncate(kiln_ctx *c, int seq, int n_tokens, kiln_err *err) {
    if (!valid_seq(c, seq)) return kiln_err_set(err, "sequence %d does not exist", seq);
    kv_seq *s = &c->seqs[seq];
    if (n_tokens < 0 || n_tokens > s->len)
        return kiln_err_set(err, "cannot truncate sequence %d of %d tokens to %d", seq, s->len, n_tokens);
    int keep = (n_tokens + KILN_KV_BLOCK - 1) / KILN_KV_BLOCK;
    for (int i = keep; i < s->n_blocks; i++) block_release(c, s->table[i]);
    s->n_blocks = keep;
    s->len = n_tokens;
    return 0;
}

static void block_copy(kiln_ctx *c, int dst, int src) {
    size_t per_block = (size_t)c->m->cfg.n_layers * 2 * KILN_KV_BLOCK * (size_t)c->kv_dim;
    memcpy(kv_k(c, dst, 0), kv_k(c, src, 0), per_block * sizeof(float));
}

int kiln_seq_fork(kiln_ctx *c, int src, int n_tokens, kiln_err *err) {
    if (!valid_seq(c, src)) return kiln_err_set(err, "sequence %d does not exist", src);
    const kv_seq *s = &c->seqs[src];
    if (n_tokens < 0 || n_tokens > s->len)
        return kiln_err_set(err, "cannot fork %d tokens of sequence %d (it has %d)", n_tokens, src, s->len);
    int full = n_tokens / KILN_KV_BLOCK, partial = n_tokens % KILN_KV_BLOCK != 0;
    if (partial && c->n_free == 0) return kiln_err_set(err, "KV cache out of blocks (fork of sequence %d)", src);
    int id = kiln_seq_new(c, err);
    if (id < 0) return -1;
    kv_seq *d = &c->seqs[id];
    s = &c->seqs[src];
    for (int i = 0; i < full; i++) {
        d->table[i] = s->table[i];
        c->refcount[s->table[i]]++;
    }
    d->n_blocks = full;
    if (partial) {
        int b = block_take(c);
        block_copy(c, b, s->table[full]);
        d->table[d->n_blocks++] = b;
    }
    d->len = n_tokens;
    return id;
}

int kv_blocks_needed(const kiln_ctx *c, int seq, int n) {
    const kv_seq *s = &c->seqs[seq];
    int need = (s->len + n + KILN_KV_BLOCK - 1) / KILN_KV_BLOCK - s->n_blocks;
    /* Writing into a shared, partially filled last block needs a private copy first. */
    if (s->len % KILN_KV_BLOCK && c->refcount[s->table[s->n_blocks - 1]] > 1) need++;
    return need;
}

void kv_reserve(kiln_ctx *c, int seq, int n) {
    kv_seq *s = &c->seqs[seq];
    if (s->len % KILN_KV_BLOCK) {
        int last = s->table[s->n_blocks - 1];
        if (c->refcount[last] > 1) {
            int b = block_take(c);
            block_copy(c, b, last);
            block_release(c, last);
            s->table[s->n_blocks - 1] = b;
        }
    }
    int want = (s->len + n + KILN_KV_BLOCK - 1) / KILN_KV_BLOCK;
    while (s->n_blocks < want) s->table[s->n_blocks++] = block_take(c);
}
