/* forward.c — one forward step over a batch of sequences.
 *
 * All new tokens of all sequences travel together through each layer, so every weight matrix is read
 * once per step (one kern_matmul over all tokens); only attention is per token, over its own sequence's
 * cached positions. Compute is f32 throughout. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "engine/engine.h"

/* Grows the per-token scratch to hold T tokens: every buffer the step and its kernels use, so nothing
 * allocates (or can fail) once the step has begun. */
static int ensure_scratch(kiln_ctx *c, size_t T, kiln_err *err) {
    if (T <= c->scratch_tokens) return 0;
    const kiln_config *g = &c->m->cfg;
    size_t H = (size_t)g->hidden_size, qd = (size_t)g->n_heads * g->head_dim, kvd = (size_t)c->kv_dim,
           I = (size_t)(g->n_experts ? g->expert_ffn_size : g->intermediate_size), hd = (size_t)g->head_dim;
    struct {
        float **p;
        size_t per_token;
    } bufs[] = {{&c->x, H}, {&c->h, H > qd ? H : qd}, {&c->q, qd}, {&c->k, kvd}, {&c->v, kvd},
                {&c->att, qd}, {&c->gate, I}, {&c->up, I}, {&c->rope_cs, hd}, {&c->rope_cs_local, hd}};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        float *p = realloc(*bufs[i].p, T * bufs[i].per_token * sizeof(float));
        if (!p) return kiln_err_set(err, "out of memory for a batch of %zu tokens", T);
        *bufs[i].p = p;
    }
    int *pos = realloc(c->pos, T * sizeof(int));
    if (!pos) return kiln_err_set(err, "out of memory for a batch of %zu tokens", T);
    c->pos = pos;
    if (!c->scores) {
        /* the attention kernel's scratch (scores of n_ctx positions, a flash tile) per pool thread */
        c->scores = malloc((size_t)kiln_pool_size(c->m->pool) * kern_attention_block_scratch(c->n_ctx, g->head_dim) * sizeof(float));
        if (!c->scores) return kiln_err_set(err, "out of memory");
    }
    if (moe_scratch(c, T, err)) return -1;
    c->ks.bf16_dot = !c->m->exact; /* before sizing: it decides what the scratch holds */
    const size_t act_rows = T > c->moe_rows ? T : c->moe_rows; /* a step's tokens, or an expert group's rows */
    if (c->m->quant_cols_max &&
        kern_scratch_reserve(&c->ks, kiln_pool_size(c->m->pool), (int)act_rows, c->m->quant_cols_max))
        return kiln_err_set(err, "out of memory for a batch of %zu tokens", T);
    c->scratch_tokens = T;
    return 0;
}

/* Checks the whole batch before anything changes, so a failure leaves the cache as it was (engine.h). */
int forward_validate(const kiln_ctx *c, const kiln_batch *b, const float *out, int *T, kiln_err *err) {
    if (b->n_seqs <= 0 || !b->seq || !b->n_tokens || !b->tokens || !out)
        return kiln_err_set(err, "empty or incomplete batch");
    int total = 0, V = c->m->cfg.vocab_size;
    for (int i = 0; i < b->n_seqs; i++) {
        int s = b->seq[i], n = b->n_tokens[i];
        if (s < 0 || s >= c->max_seqs || !c->seqs[s].used) return kiln_err_set(err, "sequence %d does not exist", s);
        for (int j = 0; j < i; j++)
            if (b->seq[j] == s) return kiln_err_set(err, "sequence %d appears twice in the batch", s);
        if (n < 1) return kiln_err_set(err, "sequence %d: n_tokens %d must be >= 1", s, n);
        if (c->seqs[s].len + n > c->n_ctx)
            return kiln_err_set(err, "sequence %d: %d + %d tokens exceed the context of %d", s, c->seqs[s].len, n,
                                c->n_ctx);
        for (int t = 0; t < n; t++) {
            int32_t id = b->tokens[total + t];
            if (id < 0 || id >= V)
                return kiln_err_set(err, "token id %d at position %d is outside the vocabulary [0, %d)", id,
                                    c->seqs[s].len + t, V);
        }
        total += n;
    }
    if (kv_check_room(c, b, err)) return -1;
    *T = total;
    return 0;
}

struct attn_job {
    kiln_ctx *c;
    const kiln_batch *b;
    int layer;
};

/* Keys a block of n queries from position p0 visits (a window of w: 0 = none), its cost in the split. */
static int64_t qblock_cost(int p0, int n, int w) {
    int64_t keys = 0;
    for (int p = p0; p < p0 + n; p++) keys += w && p + 1 > w ? w : p + 1;
    return keys;
}

/* Work units are (sequence, slice of query heads sharing a kv head, block of consecutive tokens), walked
 * slice-major so each thread's units reuse one kv head's keys and values; kern_attention_block reads those
 * rows once per unit (a flash tile: up to KERN_ATTN_ROWS query rows = tokens x heads). A slice is the
 * whole kv head's group unless that leaves a thread idle (one decoding sequence with few kv heads): then
 * halved until there are units for every thread. Threads take the units whose cost (keys visited, so a
 * causal prompt's later blocks weigh more) falls in their share of the total, so both threads stay busy
 * at every length. */
static void attn_part(void *arg, int ith, int nth) {
    const struct attn_job *j = arg;
    kiln_ctx *c = j->c;
    const kiln_config *g = &c->m->cfg;
    const int H = g->n_heads, group = H / g->n_kv_heads, n_seqs = j->b->n_seqs;
    const int window = kiln_config_layer_windowed(g, j->layer) ? g->sliding_window : 0;
    int hs = group, qb;
    for (;; hs /= 2) {
        qb = hs < KERN_ATTN_ROWS ? KERN_ATTN_ROWS / hs : 1;
        int units = 0;
        for (int i = 0; i < n_seqs; i++) units += (j->b->n_tokens[i] + qb - 1) / qb * (H / hs);
        if (units >= 2 * nth || hs % 2) break;
    }
    int64_t total = 0;
    for (int i = 0, t = 0; i < n_seqs; t += j->b->n_tokens[i++]) total += qblock_cost(c->pos[t], j->b->n_tokens[i], window);
    total *= H / hs;
    float *scratch = c->scores + (size_t)ith * kern_attention_block_scratch(c->n_ctx, g->head_dim);
    const size_t qd = (size_t)H * g->head_dim;
    int64_t done = 0;
    for (int i = 0, t = 0; i < n_seqs; t += j->b->n_tokens[i++]) {
        kern_kv_view kv = kv_view(c, j->b->seq[i], j->layer);
        kv.scale = g->attn_scale, kv.softcap = g->attn_logit_softcap;
        for (int h = 0; h < H; h += hs)
            for (int n0 = 0; n0 < j->b->n_tokens[i]; n0 += qb) {
                const int n = j->b->n_tokens[i] - n0 < qb ? j->b->n_tokens[i] - n0 : qb, p0 = c->pos[t + n0];
                const int64_t cost = qblock_cost(p0, n, window), mid = done + cost / 2;
                done += cost;
                if (mid * nth / (total > 0 ? total : 1) != ith) continue;
                const size_t off = (size_t)(t + n0) * qd;
                kern_attention_block(c->att + off, c->q + off, qd, n, p0, window, H, g->n_kv_heads, g->head_dim, h, h + hs,
                                     &kv, scratch);
            }
    }
}

/* The gated MLP's elementwise step (SwiGLU, or Gemma's GELU-tanh) over the pool in 16-float units (no two
 * threads share a cache line). */
struct silu_job {
    float *gate;
    const float *up;
    size_t n;
    kiln_act act;
};

static void silu_part(void *arg, int ith, int nth) {
    const struct silu_job *j = arg;
    const size_t units = (j->n + 15) / 16, lo = units * ith / nth * 16, hi = units * (ith + 1) / nth * 16;
    if (lo >= j->n) return;
    const int n = (int)((hi < j->n ? hi : j->n) - lo);
    if (j->act == KILN_ACT_GELU_TANH) kern_gelu_tanh_mul(j->gate + lo, j->up + lo, n);
    else kern_silu_mul(j->gate + lo, j->up + lo, n);
}

/* (engine.h) */
void ffn_gated_act(kiln_ctx *c, float *gate, const float *up, size_t n) {
    struct silu_job sj = {gate, up, n, c->m->cfg.hidden_act};
    kiln_pool_run(c->m->pool, silu_part, &sj);
}

/* The cos/sin table layer l's RoPE reads. */
static const float *rope_table(const kiln_ctx *c, int l) {
    const kiln_config *g = &c->m->cfg;
    return g->rope_local_theta > 0 && kiln_config_layer_windowed(g, l) ? c->rope_cs_local : c->rope_cs;
}

/* cos then sin of pos * inv_freq[k] for k < half (the angle in f32, as transformers: pos * inv_freq), times
 * scale (longrope's attention factor, else 1). */
static void rope_angles(float *cs, int pos, const float *inv_freq, int half, float scale) {
    for (int k = 0; k < half; k++) {
        float a = (float)pos * inv_freq[k];
        cs[k] = cosf(a) * scale;
        cs[half + k] = sinf(a) * scale;
    }
}

/* x[0..n) *= w / sqrt(ss / n_all + eps): an RMSNorm whose sum of squares ss covers n_all values. */
static void rms_apply(float *x, const float *w, size_t n, double ss, size_t n_all, float eps) {
    const float inv = 1.0f / sqrtf((float)(ss / (double)n_all) + eps);
    for (size_t i = 0; i < n; i++) x[i] = w[i] * (x[i] * inv);
}

static double sum_sq(const float *x, size_t n) {
    double ss = 0;
    for (size_t i = 0; i < n; i++) ss += (double)x[i] * x[i];
    return ss;
}

/* OLMo-2's q/k RMSNorm spans the whole projection, whose heads --tp splits: each rank's sums of squares
 * (per token, q's then k's) are summed over the tensor ranks in fixed order (dist_allreduce) before each
 * rank scales its slice. c->att is free scratch until attention. */
static int qk_norm_split(kiln_ctx *c, const kiln_layer *L, int T, kiln_err *err) {
    const kiln_config *g = &c->m->cfg;
    const size_t qd = (size_t)g->n_heads * g->head_dim, kvd = (size_t)c->kv_dim, tp = (size_t)c->m->dist->tp;
    float *ss = c->att;
    for (int t = 0; t < T; t++)
        ss[2 * t] = (float)sum_sq(c->q + t * qd, qd), ss[2 * t + 1] = (float)sum_sq(c->k + t * kvd, kvd);
    if (dist_allreduce(c->m->dist, ss, 2 * (size_t)T, err)) return -1;
    for (int t = 0; t < T; t++) {
        rms_apply(c->q + t * qd, L->q_norm, qd, ss[2 * t], qd * tp, g->rms_norm_eps);
        rms_apply(c->k + t * kvd, L->k_norm, kvd, ss[2 * t + 1], kvd * tp, g->rms_norm_eps);
    }
    return 0;
}

/* Per-head RMSNorm (Qwen3, Gemma 3) or one over the whole projection (OLMo-2), then RoPE on q and k of
 * every token; k and v then go into the cache. Gemma 3's window layers have their own RoPE base
 * (rope_cs_local). */
static int qk_rope_store(kiln_ctx *c, const kiln_batch *b, const kiln_layer *L, int layer, int T, kiln_err *err) {
    const kiln_config *g = &c->m->cfg;
    int hd = g->head_dim, half = g->rope_dim / 2;
    size_t qd = (size_t)g->n_heads * hd, kvd = (size_t)c->kv_dim;
    const bool split_norm = g->qk_norm_full && c->m->dist && c->m->dist->tp > 1;
    if (split_norm && qk_norm_split(c, L, T, err)) return -1;
    for (int t = 0; t < T; t++) {
        float *q = c->q + t * qd, *k = c->k + t * kvd;
        if (g->qk_norm_full) {
            if (!split_norm) { /* (split: done above) */
                kern_rmsnorm(q, q, L->q_norm, (int)qd, g->rms_norm_eps);
                kern_rmsnorm(k, k, L->k_norm, (int)kvd, g->rms_norm_eps);
            }
        } else if (L->q_norm) {
            for (int h = 0; h < g->n_heads; h++) kern_rmsnorm(q + h * hd, q + h * hd, L->q_norm, hd, g->rms_norm_eps);
            for (int h = 0; h < g->n_kv_heads; h++)
                kern_rmsnorm(k + h * hd, k + h * hd, L->k_norm, hd, g->rms_norm_eps);
        }
        const float *cs = rope_table(c, layer) + (size_t)t * hd;
        kern_rope(q, g->n_heads, hd, g->rope_dim, cs, cs + half);
        kern_rope(k, g->n_kv_heads, hd, g->rope_dim, cs, cs + half);
    }
    int t = 0;
    for (int i = 0; i < b->n_seqs; i++)
        for (int n = 0; n < b->n_tokens[i]; n++, t++) kv_store(c, b->seq[i], c->pos[t], layer, c->k + t * kvd, c->v + t * kvd);
    return 0;
}

/* One matmul on the step's scratch (sized by ensure_scratch, so this cannot fail; a sizing bug shows as
 * an error, never as a wrong result). */
static int mm(kiln_ctx *c, float *y, const float *x, int n, const kiln_mat *w, const float *bias) {
    return kern_matmul(c->m->pool, &c->ks, y, x, n, w, bias);
}

/* A sublayer's input: the residual stream x RMSNormed by w into h, or x itself where the architecture
 * has no pre-norm (OLMo-2: w NULL). */
static const float *pre_norm(kiln_ctx *c, const float *w, int T) {
    const kiln_config *g = &c->m->cfg;
    const size_t H = (size_t)g->hidden_size;
    if (!w) return c->x;
    for (int t = 0; t < T; t++) kern_rmsnorm(c->h + t * H, c->x + t * H, w, (int)H, g->rms_norm_eps);
    return c->h;
}

/* x += the sublayer's output h, which is first RMSNormed by w where the architecture has post-norms
 * (OLMo-2, Gemma's sandwich; w NULL: none). */
static void residual_add(kiln_ctx *c, const float *w, int T) {
    const kiln_config *g = &c->m->cfg;
    const size_t H = (size_t)g->hidden_size;
    if (w)
        for (int t = 0; t < T; t++) kern_rmsnorm(c->h + t * H, c->h + t * H, w, (int)H, g->rms_norm_eps);
    for (size_t i = 0; i < (size_t)T * H; i++) c->x[i] += c->h[i];
}

/* The forward pass; out gets the logits, or with hidden_only the normed hidden states (engine.h). */
int forward_step(kiln_ctx *c, const kiln_batch *b, float *out, bool hidden_only, kiln_err *err) {
    int T = 0;
    if (forward_validate(c, b, out, &T, err) || ensure_scratch(c, (size_t)T, err)) return -1;
    kiln_model *m = c->m;
    const kiln_config *g = &m->cfg;
    int H = g->hidden_size, hd = g->head_dim, half = g->rope_dim / 2;
    /* Positions, and the cos/sin of each (angle in f32 as transformers: pos * inv_freq; times rope_scale). */
    for (int i = 0, t = 0; i < b->n_seqs; i++) {
        kv_reserve(c, b->seq[i], b->n_tokens[i]);
        for (int n = 0; n < b->n_tokens[i]; n++, t++) {
            c->pos[t] = c->seqs[b->seq[i]].len + n;
            rope_angles(c->rope_cs + (size_t)t * hd, c->pos[t], c->inv_freq, half, c->rope_scale);
            if (g->rope_local_theta > 0)
                rope_angles(c->rope_cs_local + (size_t)t * hd, c->pos[t], c->inv_freq + half, half, 1.0f);
        }
    }
    /* The first pipeline stage embeds the tokens; the others receive the previous stage's output. */
    if (!dist_first_stage(m->dist)) {
        if (dist_recv_prev(m->dist, c->x, (size_t)T * H, err)) return -1;
    } else {
        kern_get_rows(c->x, &m->embed, b->tokens, T);
        if (g->embed_scale) /* Gemma: the embedding times sqrt(hidden_size) */
            for (size_t i = 0; i < (size_t)T * H; i++) c->x[i] *= g->embed_scale;
    }
    int bad = 0;
    for (int l = 0; l < g->n_layers; l++) {
        const kiln_layer *L = &m->layers[l];
        const float *in = pre_norm(c, L->attn_norm, T);
        bad |= mm(c, c->q, in, T, &L->wq, L->bq) | mm(c, c->k, in, T, &L->wk, L->bk) | mm(c, c->v, in, T, &L->wv, L->bv);
        if (qk_rope_store(c, b, L, l, T, err)) return -1;
        struct attn_job aj = {c, b, l};
        kiln_pool_run(m->pool, attn_part, &aj);
        bad |= mm(c, c->h, c->att, T, &L->wo, NULL);
        if (dist_allreduce(m->dist, c->h, (size_t)T * H, err)) return -1; /* tensor parallel: sum the heads' parts */
        residual_add(c, L->post_attn_norm, T);
        in = pre_norm(c, L->ffn_norm, T);
        if (g->n_experts) {
            bad |= moe_ffn(c, L, T); /* mixture of experts (moe.c): reads h (the MoE archs all pre-norm), into h */
        } else {
            bad |= mm(c, c->gate, in, T, &L->w_gate, NULL) | mm(c, c->up, in, T, &L->w_up, NULL);
            ffn_gated_act(c, c->gate, c->up, (size_t)T * g->intermediate_size);
            bad |= mm(c, c->h, c->gate, T, &L->w_down, NULL);
        }
        if (dist_allreduce(m->dist, c->h, (size_t)T * H, err)) return -1; /* ... and the FFN slices' */
        residual_add(c, L->post_ffn_norm, T);
    }
    if (dist_send_next(m->dist, c->x, (size_t)T * H, err)) return -1;
    for (int i = 0; i < b->n_seqs; i++) kv_advance(c, b->seq[i], b->n_tokens[i]);
    /* Final norm of the tokens that need output (packed into h), then one LM-head matmul (or h itself). */
    int n_out = 0;
    for (int i = 0, t = 0; i < b->n_seqs; i++) {
        t += b->n_tokens[i];
        for (int r = b->logits_all ? t - b->n_tokens[i] : t - 1; r < t; r++, n_out++)
            kern_rmsnorm(c->h + (size_t)n_out * H, c->x + (size_t)r * H, m->final_norm, H, g->rms_norm_eps);
    }
    /* Distributed: rank 0 alone gets the output (zeros elsewhere); the last stage's ranks compute the
     * logits, each its rows of the vocabulary (dist.h). */
    float *part;
    if (hidden_only) {
        if (dist_to_output(m->dist, c->h, (size_t)n_out * H, err)) return -1;
        if (dist_is_output(m->dist)) memcpy(out, c->h, (size_t)n_out * H * sizeof(float));
        else memset(out, 0, (size_t)n_out * H * sizeof(float));
    } else if (!(part = dist_logits_part(m->dist, out, (size_t)n_out, err))) return -1;
    else {
        if (dist_last_stage(m->dist)) {
            bad |= mm(c, part, c->h, n_out, &m->lm_head, NULL);
            if (g->final_logit_softcap > 0) /* Gemma 2's, elementwise: on each rank's part, before it travels */
                kern_softcap(part, n_out * dist_vocab_local(m->dist, g->vocab_size), g->final_logit_softcap);
        }
        if (dist_logits_gather(m->dist, part, out, (size_t)n_out, err)) return -1;
    }
    return bad ? kiln_err_set(err, "internal error: matmul scratch smaller than the batch") : 0;
}
