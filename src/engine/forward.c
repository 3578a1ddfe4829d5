/* forward.c — one forward step of a Llama / Mistral / Qwen2 / Qwen3 decoder over a batch of sequences.
 *
 * All new tokens of all sequences in the batch go through each weight matrix together (one matmul per
 * matrix per step), so prefill is a GEMM and batched decode reads each weight once for every sequence.
 * Attention is per sequence and per head, reading the paged KV cache in place. Everything is f32.
 *
 *   x = embed(tokens)
 *   for each layer:
 *       h = rmsnorm(x) ; q,k,v = h·Wq,Wk,Wv (+bias, Qwen2) ; per-head rmsnorm(q,k) (Qwen3) ; rope(q,k)
 *       cache k,v ; x += attention(q, cache)·Wo
 *       h = rmsnorm(x) ; x += (silu(h·Wgate) * h·Wup)·Wdown
 *   logits = rmsnorm(x)·Wlm_head          (only for the rows asked for)
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/ctx.h"

static int grow(float **p, size_t n) {
    float *q = realloc(*p, n * sizeof **p);
    if (!q) return -1;
    *p = q;
    return 0;
}

static int ensure_scratch(kiln_ctx *c, int T) {
    if (T <= c->cap_tokens) return 0;
    const kiln_config *cfg = &c->m->cfg;
    size_t H = (size_t)cfg->hidden_size, Q = (size_t)cfg->n_heads * cfg->head_dim, I = (size_t)cfg->intermediate_size;
    size_t t = (size_t)T;
    int *ts = realloc(c->tok_seq, t * sizeof *ts);
    if (ts) c->tok_seq = ts;
    int *tp = realloc(c->tok_pos, t * sizeof *tp);
    if (tp) c->tok_pos = tp;
    if (!ts || !tp || grow(&c->x, t * H) || grow(&c->xb, t * (H > Q ? H : Q)) || grow(&c->q, t * Q) ||
        grow(&c->kn, t * c->kv_dim) || grow(&c->vn, t * c->kv_dim) || grow(&c->att, t * Q) || grow(&c->hb, t * I) ||
        grow(&c->hb2, t * I))
        return -1;
    c->cap_tokens = T;
    return 0;
}

/* HF rotate_half convention: pairs (i, i + half) rotate by angle pos * inv_freq[i]. */
static void rope(float *v, int n_heads, int head_dim, int pos, const float *inv_freq) {
    int half = head_dim / 2;
    for (int i = 0; i < half; i++) {
        float angle = (float)pos * inv_freq[i]; /* float32 product, as torch.outer in the reference */
        float co = (float)cos((double)angle), si = (float)sin((double)angle);
        for (int h = 0; h < n_heads; h++) {
            float *x = v + (size_t)h * head_dim;
            float a = x[i], b = x[i + half];
            x[i] = a * co - b * si;
            x[i + half] = b * co + a * si;
        }
    }
}

struct attn_job {
    kiln_ctx *c;
    int layer, T;
};

/* One (token, head) pair per work item: scores over the sequence's cached positions 0..pos, softmax,
 * weighted sum of values. Causality is implicit: a token sees only positions up to its own. */
static void attention_part(void *arg, int ith, int nth) {
    const struct attn_job *j = arg;
    kiln_ctx *c = j->c;
    const kiln_config *cfg = &c->m->cfg;
    int hd = cfg->head_dim, nh = cfg->n_heads, group = cfg->n_heads / cfg->n_kv_heads;
    float scale = 1.0f / sqrtf((float)hd);
    float *scores = c->scores + (size_t)ith * c->n_ctx;
    int lo, hi;
    kiln_split_range(j->T * nh, ith, nth, &lo, &hi);
    for (int w = lo; w < hi; w++) {
        int t = w / nh, h = w % nh, kvh = h / group;
        const kiln_seq *s = &c->seqs[c->tok_seq[t]];
        int n = c->tok_pos[t] + 1;
        const float *q = c->q + ((size_t)t * nh + h) * hd;
        for (int p = 0; p < n; p++) {
            const float *k = kv_row(c, c->k, j->layer, s->blocks[p / KILN_KV_BLOCK], p % KILN_KV_BLOCK) + kvh * hd;
            float dot = 0;
            for (int d = 0; d < hd; d++) dot += q[d] * k[d];
            scores[p] = dot * scale;
        }
        kern_softmax(scores, n);
        float *out = c->att + ((size_t)t * nh + h) * hd;
        memset(out, 0, (size_t)hd * sizeof *out);
        for (int p = 0; p < n; p++) {
            const float *v = kv_row(c, c->v, j->layer, s->blocks[p / KILN_KV_BLOCK], p % KILN_KV_BLOCK) + kvh * hd;
            float a = scores[p];
            for (int d = 0; d < hd; d++) out[d] += a * v[d];
        }
    }
}

static void layer_forward(kiln_ctx *c, int l, int T) {
    kiln_model *m = c->m;
    const kiln_config *cfg = &m->cfg;
    const kiln_layer *L = &m->layers[l];
    int H = cfg->hidden_size, hd = cfg->head_dim, nh = cfg->n_heads, nkv = cfg->n_kv_heads, I = cfg->intermediate_size;
    int Q = nh * hd;
    for (int t = 0; t < T; t++)
        kern_rmsnorm(c->xb + (size_t)t * H, c->x + (size_t)t * H, L->attn_norm, H, cfg->rms_norm_eps);
    kern_matmul(m->pool, c->q, c->xb, T, &L->wq, L->bq);
    kern_matmul(m->pool, c->kn, c->xb, T, &L->wk, L->bk);
    kern_matmul(m->pool, c->vn, c->xb, T, &L->wv, L->bv);
    for (int t = 0; t < T; t++) {
        float *q = c->q + (size_t)t * Q, *k = c->kn + (size_t)t * c->kv_dim;
        if (cfg->qk_norm) {
            for (int h = 0; h < nh; h++) kern_rmsnorm(q + h * hd, q + h * hd, L->q_norm, hd, cfg->rms_norm_eps);
            for (int h = 0; h < nkv; h++) kern_rmsnorm(k + h * hd, k + h * hd, L->k_norm, hd, cfg->rms_norm_eps);
        }
        rope(q, nh, hd, c->tok_pos[t], m->inv_freq);
        rope(k, nkv, hd, c->tok_pos[t], m->inv_freq);
        const kiln_seq *s = &c->seqs[c->tok_seq[t]];
        int p = c->tok_pos[t], b = s->blocks[p / KILN_KV_BLOCK];
        memcpy(kv_row(c, c->k, l, b, p % KILN_KV_BLOCK), k, (size_t)c->kv_dim * sizeof(float));
        memcpy(kv_row(c, c->v, l, b, p % KILN_KV_BLOCK), c->vn + (size_t)t * c->kv_dim, (size_t)c->kv_dim * sizeof(float));
    }
    struct attn_job job = {c, l, T};
    kiln_pool_run(m->pool, attention_part, &job);
    kern_matmul(m->pool, c->xb, c->att, T, &L->wo, NULL);
    for (size_t i = 0; i < (size_t)T * H; i++) c->x[i] += c->xb[i];

    for (int t = 0; t < T; t++)
        kern_rmsnorm(c->xb + (size_t)t * H, c->x + (size_t)t * H, L->ffn_norm, H, cfg->rms_norm_eps);
    kern_matmul(m->pool, c->hb, c->xb, T, &L->w_gate, NULL);
    kern_matmul(m->pool, c->hb2, c->xb, T, &L->w_up, NULL);
    kern_silu_mul(c->hb, c->hb2, T * I);
    kern_matmul(m->pool, c->xb, c->hb, T, &L->w_down, NULL);
    for (size_t i = 0; i < (size_t)T * H; i++) c->x[i] += c->xb[i];
}

/* Checks the whole batch before touching any state, so a bad batch changes nothing. */
static int validate(const kiln_ctx *c, const kiln_batch *b, int *T, kiln_err *err) {
    if (b->n_seqs < 1) return kiln_err_set(err, "empty batch");
    const kiln_config *cfg = &c->m->cfg;
    int total = 0, blocks = 0;
    const int32_t *tok = b->tokens;
    for (int i = 0; i < b->n_seqs; i++) {
        int s = b->seq[i], n = b->n_tokens[i];
        if (s < 0 || s >= c->max_seqs || !c->seqs[s].alive) return kiln_err_set(err, "no sequence %d", s);
        for (int j = 0; j < i; j++)
            if (b->seq[j] == s) return kiln_err_set(err, "sequence %d appears twice in one batch", s);
        if (n < 1) return kiln_err_set(err, "sequence %d: no tokens", s);
        if (c->seqs[s].len + n > c->n_ctx)
            return kiln_err_set(err, "sequence %d: %d + %d tokens exceed the context of %d", s, c->seqs[s].len, n,
                                c->n_ctx);
        for (int j = 0; j < n; j++)
            if (tok[j] < 0 || tok[j] >= cfg->vocab_size)
                return kiln_err_set(err, "token id %d out of range (vocab_size %d)", tok[j], cfg->vocab_size);
        tok += n;
        total += n;
        blocks += kv_blocks_needed(c, s, n);
    }
    if (blocks > c->n_free)
        return kiln_err_set(err, "KV cache full: batch needs %d blocks, %d free", blocks, c->n_free);
    *T = total;
    return 0;
}

int kiln_forward(kiln_ctx *c, const kiln_batch *b, kiln_err *err) {
    kiln_model *m = c->m;
    const kiln_config *cfg = &m->cfg;
    int T = 0;
    if (validate(c, b, &T, err)) return -1;
    if (ensure_scratch(c, T)) return kiln_err_set(err, "out of memory for a batch of %d tokens", T);
    for (int i = 0, t = 0; i < b->n_seqs; i++) {
        if (kv_reserve(c, b->seq[i], b->n_tokens[i], err)) return -1; /* cannot fail after validate */
        for (int j = 0; j < b->n_tokens[i]; j++, t++) {
            c->tok_seq[t] = b->seq[i];
            c->tok_pos[t] = c->seqs[b->seq[i]].len + j;
        }
    }
    int H = cfg->hidden_size;
    kern_get_rows(c->x, &m->embed, b->tokens, T);
    for (int l = 0; l < cfg->n_layers; l++) layer_forward(c, l, T);

    /* Gather the rows whose logits are wanted, normalise them, project. */
    int n_out = 0;
    for (int i = 0, t = 0; i < b->n_seqs; i++) {
        t += b->n_tokens[i];
        if (b->logits_all)
            for (int j = t - b->n_tokens[i]; j < t; j++, n_out++)
                kern_rmsnorm(c->xb + (size_t)n_out * H, c->x + (size_t)j * H, m->final_norm, H, cfg->rms_norm_eps);
        else
            kern_rmsnorm(c->xb + (size_t)n_out++ * H, c->x + (size_t)(t - 1) * H, m->final_norm, H, cfg->rms_norm_eps);
    }
    if (b->logits) kern_matmul(m->pool, b->logits, c->xb, n_out, &m->lm_head, NULL);
    for (int i = 0; i < b->n_seqs; i++) c->seqs[b->seq[i]].len += b->n_tokens[i];
    return 0;
}
