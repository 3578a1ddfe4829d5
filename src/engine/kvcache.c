/* kvcache.c — the paged KV cache: fixed blocks of KILN_KV_BLOCK tokens, block tables per sequence,
 * free lists, and refcounts so forked sequences share their common prefix.
 *
 * Two pools (engine.h): the global layers keep every position; the sliding-window layers keep a ring of
 * blocks. After each step a sequence releases the window blocks no later query can see, so a window
 * layer costs its window per sequence, not its context. Which blocks: a query at position q sees
 * q - window + 1 .. q (forward.c window_first), so with the sequence at len every block wholly before
 * floor(len / BLOCK) * BLOCK - window + 1 is released. Measuring from the start of the last block rather
 * than from len keeps up to one block more, and buys that truncating (or forking) back to the last block
 * boundary always works: the server's prefix cache keeps sequences cut to whole blocks.
 *
 * A block is written only by a sequence that holds it alone: a sequence about to write into a shared
 * block (its partially filled last block, after a fork or a truncate) first copies it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "engine/engine.h"

void kiln_ctx_opts_default(kiln_ctx_opts *o) {
    o->max_seqs = 1;
    o->n_ctx = 0;
    o->kv_blocks = 0;
    o->kv_type = KILN_KV_TYPE_DEFAULT;
    o->max_step_tokens = 0;
}

/* Bytes of one row (one head, one position) of format t, 0 when the cache cannot hold t at head_dim. */
static size_t kv_row_bytes(kiln_dtype t, int head_dim) {
    return kern_dtype_valid((int)t) && kern_kv_type_ok(t, head_dim) ? kern_row_bytes(t, head_dim) : 0;
}

int64_t kiln_kv_bytes_per_token(int n_layers, int n_kv_heads, int head_dim, kiln_dtype kv_type) {
    return 2 * (int64_t)n_layers * n_kv_heads * (int64_t)kv_row_bytes(kv_type, head_dim);
}

/* Why a KV type cannot be used for this model (one line), or 0. */
static int check_kv_type(kiln_dtype t, int head_dim, kiln_err *err) {
    if (!kern_dtype_valid((int)t) || (t != KILN_DT_F32 && t != KILN_DT_F16 && t != KILN_DT_BF16 && t != KILN_DT_Q8_0))
        return kiln_err_set(err, "KV cache type %s is not supported (f32, f16, bf16 or q8_0)",
                            kern_dtype_valid((int)t) ? kern_formats[t].name : "?");
    if (!kern_kv_type_ok(t, head_dim))
        return kiln_err_set(err, "KV cache type %s needs head_dim a multiple of %d; this model's head_dim is %d",
                            kern_formats[t].name, QK, head_dim);
    return 0;
}

/* Window-pool blocks a sequence can hold at once (kiln.h): during a step of n <= step tokens it holds the
 * blocks from that of floor(len / B) * B - w + 1 to that of len + n - 1, a span of at most
 * B - 1 + w - 1 + n positions, which touches at most floor((span - 1) / B) + 2 blocks. */
int kiln_kv_window_blocks(int sliding_window, int n_ctx, int max_step_tokens) {
    if (sliding_window <= 0) return 0;
    int64_t step = max_step_tokens > 0 ? max_step_tokens : KILN_KV_WINDOW_STEP;
    int64_t per_seq = ((int64_t)n_ctx + KILN_KV_BLOCK - 1) / KILN_KV_BLOCK;
    int64_t ring = (KILN_KV_BLOCK + step + sliding_window - 3) / KILN_KV_BLOCK + 2;
    return (int)(ring < per_seq ? ring : per_seq);
}

static int pool_init(kv_pool *p, int n_layers, int n_blocks, size_t block_bytes) {
    p->n_layers = n_layers;
    p->n_blocks = p->n_free = n_blocks;
    if (n_blocks == 0) return 0;
    if (n_layers && !(p->kv = calloc((size_t)n_blocks * n_layers, block_bytes))) return -1;
    p->refcount = calloc((size_t)n_blocks, sizeof(int));
    p->free_list = malloc((size_t)n_blocks * sizeof(int));
    if (!p->refcount || !p->free_list) return -1;
    for (int i = 0; i < n_blocks; i++) p->free_list[i] = n_blocks - 1 - i; /* lowest block ids first */
    return 0;
}

/* The two pools and each layer's place in its own. */
static int pools_init(kiln_ctx *c, const kiln_ctx_opts *o) {
    const kiln_config *cfg = &c->m->cfg;
    int n[KV_POOLS] = {0};
    if (!(c->layer_slot = malloc((size_t)cfg->n_layers * sizeof(int)))) return -1;
    for (int l = 0; l < cfg->n_layers; l++) c->layer_slot[l] = n[kv_pool_of(c, l)]++;
    c->window = n[KV_WINDOW] ? cfg->sliding_window : 0;
    c->max_step_tokens = o->max_step_tokens > 0 ? o->max_step_tokens : KILN_KV_WINDOW_STEP;
    int ring = kiln_kv_window_blocks(c->window, c->n_ctx, c->max_step_tokens);
    return pool_init(&c->pool[KV_GLOBAL], n[KV_GLOBAL], o->kv_blocks, c->kv_block_bytes) ||
                   pool_init(&c->pool[KV_WINDOW], n[KV_WINDOW], c->max_seqs * ring, c->kv_block_bytes)
               ? -1
               : 0;
}

/* The pools a sequence has tables in: the window one only when some layer has a window. */
static int n_pools(const kiln_ctx *c) { return c->window ? KV_POOLS : 1; }

kiln_ctx *kiln_ctx_new(kiln_model *m, const kiln_ctx_opts *opts, kiln_err *err) {
    kiln_ctx_opts o;
    if (opts) o = *opts;
    else kiln_ctx_opts_default(&o);
    const kiln_config *cfg = &m->cfg;
    int maxpos = cfg->max_position_embeddings;
    if (o.max_seqs <= 0) o.max_seqs = 1;
    if (o.n_ctx <= 0) o.n_ctx = maxpos < 4096 ? maxpos : 4096;
    if (check_kv_type(o.kv_type, cfg->head_dim, err)) return NULL;
    if (o.n_ctx > maxpos) {
        kiln_err_set(err, "n_ctx %d exceeds the model's max_position_embeddings %d", o.n_ctx, maxpos);
        return NULL;
    }
    if (o.max_step_tokens < 0) {
        kiln_err_set(err, "max_step_tokens %d must be >= 0 (0: %d)", o.max_step_tokens, KILN_KV_WINDOW_STEP);
        return NULL;
    }
    int per_seq = (o.n_ctx + KILN_KV_BLOCK - 1) / KILN_KV_BLOCK;
    if (o.kv_blocks <= 0) o.kv_blocks = o.max_seqs * per_seq;
    kiln_ctx *c = calloc(1, sizeof *c);
    if (!c) goto oom;
    c->m = m;
    c->max_seqs = o.max_seqs;
    c->n_ctx = o.n_ctx;
    c->max_blocks_per_seq = per_seq;
    c->kv_dim = cfg->n_kv_heads * cfg->head_dim;
    c->kv_type = o.kv_type;
    c->kv_row_bytes = kv_row_bytes(o.kv_type, cfg->head_dim);
    c->kv_block_bytes = 2 * KILN_KV_BLOCK * (size_t)cfg->n_kv_heads * c->kv_row_bytes;
    if (pools_init(c, &o)) goto oom;
    c->seqs = calloc((size_t)c->max_seqs, sizeof *c->seqs);
    c->inv_freq = malloc((size_t)cfg->head_dim * sizeof(float)); /* global, then local (engine.h) */
    if (!c->seqs || !c->inv_freq) goto oom;
    for (int s = 0; s < c->max_seqs; s++)
        for (int p = 0; p < n_pools(c); p++)
            if (!(c->seqs[s].table[p] = malloc((size_t)per_seq * sizeof(int)))) goto oom;
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
        for (int s = 0; s < c->max_seqs; s++)
            for (int p = 0; p < KV_POOLS; p++) free(c->seqs[s].table[p]);
    free(c->seqs);
    for (int p = 0; p < KV_POOLS; p++) {
        free(c->pool[p].kv);
        free(c->pool[p].refcount);
        free(c->pool[p].free_list);
    }
    free(c->layer_slot);
    free(c->inv_freq);
    float *bufs[] = {c->x, c->h, c->q, c->k, c->v, c->att, c->gate, c->up, c->rope_cs, c->scores, c->rope_cs_local};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(c->pos);
    moe_scratch_free(c);
    kern_scratch_free(&c->ks);
    free(c);
}

/* Bytes of n blocks of pool p (every layer of the pool). */
static size_t pool_bytes(const kiln_ctx *c, int p, int n) {
    return (size_t)n * c->pool[p].n_layers * c->kv_block_bytes;
}

int kiln_ctx_n_ctx(const kiln_ctx *c) { return c->n_ctx; }
kiln_model *kiln_ctx_model(const kiln_ctx *c) { return c->m; }
size_t kiln_ctx_kv_bytes(const kiln_ctx *c) {
    return pool_bytes(c, KV_GLOBAL, c->pool[KV_GLOBAL].n_blocks) + pool_bytes(c, KV_WINDOW, c->pool[KV_WINDOW].n_blocks);
}
size_t kiln_ctx_kv_bytes_used(const kiln_ctx *c) {
    size_t b = 0;
    for (int p = 0; p < KV_POOLS; p++) b += pool_bytes(c, p, c->pool[p].n_blocks - c->pool[p].n_free);
    return b;
}
size_t kiln_ctx_block_bytes(const kiln_ctx *c) { return pool_bytes(c, KV_GLOBAL, 1); }
kiln_dtype kiln_ctx_kv_type(const kiln_ctx *c) { return c->kv_type; }
int kiln_ctx_free_blocks(const kiln_ctx *c) { return c->pool[KV_GLOBAL].n_free; }
int kiln_ctx_total_blocks(const kiln_ctx *c) { return c->pool[KV_GLOBAL].n_blocks; }
int kiln_ctx_window_free_blocks(const kiln_ctx *c) { return c->pool[KV_WINDOW].n_free; }
int kiln_ctx_window_total_blocks(const kiln_ctx *c) { return c->pool[KV_WINDOW].n_blocks; }

static int valid_seq(const kiln_ctx *c, int seq) { return seq >= 0 && seq < c->max_seqs && c->seqs[seq].used; }

int kiln_seq_new(kiln_ctx *c, kiln_err *err) {
    for (int s = 0; s < c->max_seqs; s++)
        if (!c->seqs[s].used) {
            kv_seq *q = &c->seqs[s];
            q->used = true;
            q->len = q->n_blocks = q->first_live = 0;
            return s;
        }
    return kiln_err_set(err, "all %d sequence slots are in use", c->max_seqs);
}

static int block_take(kv_pool *p) {
    int b = p->free_list[--p->n_free];
    p->refcount[b] = 1;
    return b;
}

/* The first table entry of pool p that s still holds. */
static int live_lo(const kv_seq *s, int p) { return p == KV_WINDOW ? s->first_live : 0; }

/* Releases entries [lo, hi) of s's table in pool p (shared blocks by refcount) and marks them dropped. */
static void release_range(kiln_ctx *c, kv_seq *s, int p, int lo, int hi) {
    kv_pool *pl = &c->pool[p];
    for (int i = lo; i < hi; i++) {
        int b = s->table[p][i];
        if (--pl->refcount[b] == 0) pl->free_list[pl->n_free++] = b;
        s->table[p][i] = KV_DROPPED;
    }
}

/* The first window block a sequence of len tokens must keep (kvcache.c's opening comment). */
static int window_live_from(const kiln_ctx *c, int len) {
    int lo = len / KILN_KV_BLOCK * KILN_KV_BLOCK - c->window + 1;
    return c->window && lo > 0 ? lo / KILN_KV_BLOCK : 0;
}

/* Releases the window blocks s no longer needs. */
static void window_drop(kiln_ctx *c, kv_seq *s) {
    int to = window_live_from(c, s->len);
    if (!c->window || to <= s->first_live) return;
    release_range(c, s, KV_WINDOW, s->first_live, to);
    s->first_live = to;
}

void kiln_seq_free(kiln_ctx *c, int seq) {
    if (!valid_seq(c, seq)) return;
    kv_seq *s = &c->seqs[seq];
    for (int p = 0; p < n_pools(c); p++) release_range(c, s, p, live_lo(s, p), s->n_blocks);
    s->used = false;
    s->len = s->n_blocks = s->first_live = 0;
}

int kiln_seq_len(const kiln_ctx *c, int seq) { return valid_seq(c, seq) ? c->seqs[seq].len : -1; }

int kiln_seq_reusable(const kiln_ctx *c, int seq, int n) {
    if (!valid_seq(c, seq)) return -1;
    const kv_seq *s = &c->seqs[seq];
    if (n <= 0) return 0;
    if (n > s->len) n = s->len;
    int from = n - c->window + 1; /* the first position a query at n sees */
    return !c->window || (from > 0 ? from : 0) >= s->first_live * KILN_KV_BLOCK ? n : 0;
}

/* Why seq cannot go back to n tokens (a window's KV before it is gone), or 0. */
static int check_reusable(const kiln_ctx *c, int seq, int n, const char *what, kiln_err *err) {
    if (n == 0 || kiln_seq_reusable(c, seq, n) == n) return 0;
    const kv_seq *s = &c->seqs[seq];
    return kiln_err_set(err,
                        "cannot %s sequence %d at %d tokens: its window layers (sliding_window %d) keep positions "
                        "%d.. only, and a query at %d sees from %d; prefill it again from 0",
                        what, seq, n, c->window, s->first_live * KILN_KV_BLOCK, n, n - c->window + 1);
}

int kiln_seq_truncate(kiln_ctx *c, int seq, int n_tokens, kiln_err *err) {
    if (!valid_seq(c, seq)) return kiln_err_set(err, "sequence %d does not exist", seq);
    kv_seq *s = &c->seqs[seq];
    if (n_tokens < 0 || n_tokens > s->len)
        return kiln_err_set(err, "cannot truncate sequence %d of %d tokens to %d", seq, s->len, n_tokens);
    if (check_reusable(c, seq, n_tokens, "truncate", err)) return -1;
    int keep = (n_tokens + KILN_KV_BLOCK - 1) / KILN_KV_BLOCK;
    for (int p = 0; p < n_pools(c); p++) {
        int lo = live_lo(s, p);
        release_range(c, s, p, lo > keep ? lo : keep, s->n_blocks);
    }
    s->n_blocks = keep;
    s->len = n_tokens;
    if (n_tokens == 0) s->first_live = 0;
    window_drop(c, s);
    return 0;
}

/* Block dst of pool p becomes a copy of src (every layer of the pool). */
static void block_copy(kiln_ctx *c, int p, int dst, int src) {
    if (c->pool[p].n_layers) memcpy(c->pool[p].kv + pool_bytes(c, p, dst), c->pool[p].kv + pool_bytes(c, p, src), pool_bytes(c, p, 1));
}

/* A private copy of the block behind entry i of s's table in pool p (taken from p's free list). */
static void block_unshare(kiln_ctx *c, kv_seq *s, int p, int i) {
    int b = block_take(&c->pool[p]), old = s->table[p][i];
    block_copy(c, p, b, old);
    c->pool[p].refcount[old]--; /* still held by another sequence: it stays off the free list */
    s->table[p][i] = b;
}

int kiln_seq_fork(kiln_ctx *c, int src, int n_tokens, kiln_err *err) {
    if (!valid_seq(c, src)) return kiln_err_set(err, "sequence %d does not exist", src);
    if (n_tokens < 0 || n_tokens > c->seqs[src].len)
        return kiln_err_set(err, "cannot fork %d tokens of sequence %d (it has %d)", n_tokens, src, c->seqs[src].len);
    if (check_reusable(c, src, n_tokens, "fork", err)) return -1;
    int id = kiln_seq_new(c, err);
    if (id < 0) return -1;
    kv_seq *d = &c->seqs[id];
    const kv_seq *s = &c->seqs[src];
    int live = window_live_from(c, n_tokens);
    d->first_live = s->first_live > live ? s->first_live : live;
    d->n_blocks = (n_tokens + KILN_KV_BLOCK - 1) / KILN_KV_BLOCK;
    d->len = n_tokens;
    /* A shared partial last block is copied only when one of its holders writes into it (kv_reserve, inside
     * a step), so a fork changes no KV contents: a distributed follower mirrors it from the table alone. */
    for (int p = 0; p < n_pools(c); p++)
        for (int i = 0; i < d->n_blocks; i++) {
            d->table[p][i] = i < live_lo(d, p) ? KV_DROPPED : s->table[p][i];
            if (i >= live_lo(d, p)) c->pool[p].refcount[d->table[p][i]]++;
        }
    return id;
}

/* Blocks of pool p that n more tokens of seq take. */
static int blocks_needed(const kiln_ctx *c, int seq, int p, int n) {
    const kv_seq *s = &c->seqs[seq];
    int need = (s->len + n + KILN_KV_BLOCK - 1) / KILN_KV_BLOCK - s->n_blocks;
    /* Writing into a shared, partially filled last block needs a private copy first. */
    if (s->len % KILN_KV_BLOCK && c->pool[p].refcount[s->table[p][s->n_blocks - 1]] > 1) need++;
    return need;
}

int kv_check_room(const kiln_ctx *c, const kiln_batch *b, kiln_err *err) {
    for (int p = 0; p < n_pools(c); p++) {
        int need = 0;
        for (int i = 0; i < b->n_seqs; i++) { /* a window model computes max_step_tokens at a time (rounds.c) */
            int n = b->n_tokens[i];
            need += blocks_needed(c, b->seq[i], p, p == KV_WINDOW && n > c->max_step_tokens ? c->max_step_tokens : n);
        }
        if (need > c->pool[p].n_free)
            return kiln_err_set(err, "KV cache out of %sblocks: the batch needs %d, %d free",
                                p == KV_WINDOW ? "window-layer " : "", need, c->pool[p].n_free);
    }
    return 0;
}

void kv_reserve(kiln_ctx *c, int seq, int n) {
    kv_seq *s = &c->seqs[seq];
    int want = (s->len + n + KILN_KV_BLOCK - 1) / KILN_KV_BLOCK;
    for (int p = 0; p < n_pools(c); p++) {
        if (s->len % KILN_KV_BLOCK && c->pool[p].refcount[s->table[p][s->n_blocks - 1]] > 1)
            block_unshare(c, s, p, s->n_blocks - 1);
        for (int i = s->n_blocks; i < want; i++) s->table[p][i] = block_take(&c->pool[p]);
    }
    s->n_blocks = want;
}

void kv_advance(kiln_ctx *c, int seq, int n) {
    kv_seq *s = &c->seqs[seq];
    s->len += n;
    window_drop(c, s);
}

void kv_store(kiln_ctx *c, int seq, int p, int layer, const float *k, const float *v) {
    const int hd = c->m->cfg.head_dim;
    const int block = c->seqs[seq].table[kv_pool_of(c, layer)][p / KILN_KV_BLOCK];
    char *kc = kv_k(c, block, layer) + (size_t)(p % KILN_KV_BLOCK) * c->kv_row_bytes;
    const size_t v_off = c->kv_block_bytes / 2, head = (size_t)KILN_KV_BLOCK * c->kv_row_bytes;
    for (int h = 0; h < c->m->cfg.n_kv_heads; h++, kc += head) { /* head-major (engine.h) */
        kern_row_from_f32(kc, c->kv_type, k + (size_t)h * hd, hd);
        kern_row_from_f32(kc + v_off, c->kv_type, v + (size_t)h * hd, hd);
    }
}

kern_kv_view kv_view(const kiln_ctx *c, int seq, int layer) {
    const int p = kv_pool_of(c, layer);
    const char *k = kv_k(c, 0, layer);
    return (kern_kv_view){.k = k, .v = k + c->kv_block_bytes / 2, .table = c->seqs[seq].table[p], .block = KILN_KV_BLOCK,
                          .block_stride = pool_bytes(c, p, 1), .row_stride = c->kv_row_bytes,
                          .head_stride = (size_t)KILN_KV_BLOCK * c->kv_row_bytes, .type = c->kv_type};
}

/* ---- the sequences' state as int32s, for a distributed follower to mirror (dist/follow.c) ---------------- */

int kv_state_pack(const kiln_ctx *c, strbuf *out) {
    int used = 0, rc = 0;
    for (int s = 0; s < c->max_seqs; s++) used += c->seqs[s].used;
    rc |= strbuf_put_ints(out, &used, 1);
    for (int s = 0; s < c->max_seqs; s++) {
        const kv_seq *q = &c->seqs[s];
        if (!q->used) continue;
        const int row[4] = {s, q->len, q->n_blocks, q->first_live};
        rc |= strbuf_put_ints(out, row, 4);
        for (int p = 0; p < n_pools(c); p++) rc |= strbuf_put_ints(out, q->table[p], q->n_blocks);
    }
    for (int p = 0; p < n_pools(c); p++) rc |= strbuf_put_ints(out, &c->pool[p].n_free, 1) | strbuf_put_ints(out, c->pool[p].free_list, c->pool[p].n_free);
    return rc ? -1 : 0;
}

/* One table entry of a packed sequence, checked: a live block of pool p, or KV_DROPPED below first_live.
 * A block under the sequence's length that was free here was filled outside a step (the follower never
 * wrote it): refused rather than computed from. */
static int apply_entry(kiln_ctx *c, kv_seq *q, int p, int i, int32_t blk, bool *was_free, kiln_err *err) {
    if (i < live_lo(q, p)) {
        if (blk != KV_DROPPED) return kiln_err_set(err, "malformed step message from rank 0");
        q->table[p][i] = KV_DROPPED;
        return 0;
    }
    if (blk < 0 || blk >= c->pool[p].n_blocks) return kiln_err_set(err, "malformed step message from rank 0");
    if (was_free[blk] && i * KILN_KV_BLOCK < q->len)
        return kiln_err_set(err, "KV block %d was filled outside a forward step, which a follower cannot mirror", blk);
    q->table[p][i] = blk;
    c->pool[p].refcount[blk]++;
    return 0;
}

static int apply_pools(kiln_ctx *c, const int32_t **at, const int32_t *end, bool **was_free, kiln_err *err) {
    const int32_t *v = *at;
    if (end - v < 1) return kiln_err_set(err, "malformed step message from rank 0");
    const int used = *v++;
    if (used < 0 || used > c->max_seqs) return kiln_err_set(err, "malformed step message from rank 0");
    for (int u = 0; u < used; u++) {
        if (end - v < 4 || v[0] < 0 || v[0] >= c->max_seqs || c->seqs[v[0]].used || v[1] < 0 || v[2] < 0 ||
            v[2] > c->max_blocks_per_seq || v[3] < 0 || v[3] > v[2] || (!c->window && v[3]) ||
            end - v - 4 < (ptrdiff_t)n_pools(c) * v[2])
            return kiln_err_set(err, "malformed step message from rank 0");
        kv_seq *q = &c->seqs[v[0]];
        q->used = true, q->len = v[1], q->n_blocks = v[2], q->first_live = v[3];
        v += 4;
        for (int p = 0; p < n_pools(c); p++)
            for (int i = 0; i < q->n_blocks; i++)
                if (apply_entry(c, q, p, i, *v++, was_free[p], err)) return -1;
    }
    for (int p = 0; p < n_pools(c); p++) {
        kv_pool *pl = &c->pool[p];
        if (end - v < 1 || v[0] < 0 || v[0] > pl->n_blocks || end - v - 1 < v[0])
            return kiln_err_set(err, "malformed step message from rank 0");
        pl->n_free = *v++;
        memcpy(pl->free_list, v, (size_t)pl->n_free * sizeof *v);
        v += pl->n_free;
    }
    *at = v;
    return 0;
}

int kv_state_apply(kiln_ctx *c, const int32_t **at, const int32_t *end, kiln_err *err) {
    bool *was_free[KV_POOLS] = {0};
    int rc = 0;
    for (int p = 0; p < n_pools(c) && !rc; p++) {
        kv_pool *pl = &c->pool[p];
        if (!(was_free[p] = calloc((size_t)pl->n_blocks + 1, sizeof *was_free[p]))) rc = kiln_err_set(err, "out of memory");
        for (int i = 0; !rc && i < pl->n_free; i++) was_free[p][pl->free_list[i]] = true;
        if (pl->n_blocks) memset(pl->refcount, 0, (size_t)pl->n_blocks * sizeof *pl->refcount);
    }
    for (int s = 0; s < c->max_seqs; s++) c->seqs[s].used = false, c->seqs[s].len = c->seqs[s].n_blocks = c->seqs[s].first_live = 0;
    if (!rc) rc = apply_pools(c, at, end, was_free, err);
    for (int p = 0; p < KV_POOLS; p++) free(was_free[p]);
    return rc;
}
