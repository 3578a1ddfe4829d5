/* moe.c — the mixture-of-experts FFN (Qwen3-MoE, Mixtral) of one layer over a step's tokens.
 *
 * As transformers: the router's logits, softmax over all experts, the top n_experts_used kept (their
 * weights renormalised to sum 1 when norm_topk_prob), and the FFN output is the weighted sum of those
 * experts' SwiGLU outputs. The tokens are grouped by expert: each chosen expert's rows of h are gathered
 * and its three matrices run once over them, so a step reads every expert it uses once, whatever the
 * number of tokens that chose it, and never reads one that no token chose. The sum goes in expert order,
 * as the reference's loop over experts does.
 *
 * Consecutive experts go together in groups of at most moe_rows gathered rows (every used expert of a
 * decode step is one group): the group's gate and up matrices are one kern_matmul_many, its down matrices
 * another, so a decode step enters the pool 4 times per layer (router, gate/up, activation, down: the
 * token's row is converted once for all its experts and the down inputs on the calling thread) instead
 * of 4 times per expert, and both threads stream one expert's rows after another without waiting at
 * each matrix's end. */
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "engine/engine.h"

/* Gathered rows per expert group: every choice of a step of up to 32 tokens (a decode batch: one group),
 * else T (a prompt: any one expert's tokens fit, since a token chooses an expert at most once). */
static size_t group_rows(size_t T, size_t K) { return T * K <= 256 ? T * K : T > 256 ? T : 256; }

int moe_scratch(kiln_ctx *c, size_t T, kiln_err *err) {
    const kiln_config *g = &c->m->cfg;
    if (!g->n_experts) return 0;
    const size_t H = (size_t)g->hidden_size, K = (size_t)g->n_experts_used, I = (size_t)g->expert_ffn_size,
                 R = group_rows(T, K);
    struct {
        void **p;
        size_t bytes;
    } bufs[] = {{(void **)&c->moe_probs, T * g->n_experts * sizeof(float)},
                {(void **)&c->moe_x, R * H * sizeof(float)},
                {(void **)&c->moe_y, R * H * sizeof(float)},
                {(void **)&c->moe_gate, R * I * sizeof(float)},
                {(void **)&c->moe_up, R * I * sizeof(float)},
                {(void **)&c->moe_acc, T * H * sizeof(float)},
                {(void **)&c->moe_sel_w, T * K * sizeof(float)},
                {(void **)&c->moe_w, T * K * sizeof(float)},
                {(void **)&c->moe_sel, T * K * sizeof(int)},
                {(void **)&c->moe_tok, T * K * sizeof(int)}};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        void *p = realloc(*bufs[i].p, bufs[i].bytes);
        if (!p) return kiln_err_set(err, "out of memory for a batch of %zu tokens", T);
        *bufs[i].p = p;
    }
    c->moe_rows = R; /* kern_matmul_many converts a group's activations at once: ensure_scratch sizes c->ks
                        for this many rows */
    return 0;
}

void moe_scratch_free(kiln_ctx *c) {
    void *bufs[] = {c->moe_probs, c->moe_x,     c->moe_y, c->moe_gate, c->moe_up,
                    c->moe_acc,   c->moe_sel_w, c->moe_w, c->moe_sel,  c->moe_tok};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
}

/* Token t's top-k experts (ties to the lower index) and their weights, from its softmaxed router row. */
static void top_k(const float *p, int E, int k, bool renorm, int *sel, float *w) {
    float sum = 0;
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            bool taken = false;
            for (int i = 0; i < j; i++) taken |= sel[i] == e;
            if (!taken && (best < 0 || p[e] > p[best])) best = e;
        }
        sel[j] = best;
        w[j] = p[best];
        sum += w[j];
    }
    if (renorm)
        for (int j = 0; j < k; j++) w[j] /= sum;
}

/* Routes every token (its choices in moe_sel / moe_sel_w) and groups the choices by expert: expert e's
 * tokens are moe_tok[start[e] .. start[e+1]), in token order, with their weights in moe_w. */
static void route(kiln_ctx *c, int T, int *start) {
    const kiln_config *g = &c->m->cfg;
    const int E = g->n_experts, K = g->n_experts_used;
    int fill[KILN_MAX_EXPERTS + 1] = {0};
    for (int t = 0; t < T; t++) {
        float *p = c->moe_probs + (size_t)t * E;
        int *sel = c->moe_sel + (size_t)t * K;
        kern_softmax(p, E);
        top_k(p, E, K, g->norm_topk_prob, sel, c->moe_sel_w + (size_t)t * K);
        for (int j = 0; j < K; j++) fill[sel[j] + 1]++;
    }
    for (int e = 0; e < E; e++) fill[e + 1] += fill[e];
    memcpy(start, fill, (size_t)(E + 1) * sizeof *start);
    for (int i = 0; i < T * K; i++) {
        const int at = fill[c->moe_sel[i]]++;
        c->moe_tok[at] = i / K;
        c->moe_w[at] = c->moe_sel_w[i];
    }
}

/* The input rows of the expert whose n choices start at moe_tok[at], r rows into its group: one token's
 * row of h is read where it is, so the tasks of every expert that token chose share one x and
 * kern_matmul_many converts it once (a decode step: one conversion for all the experts' gate and up,
 * not one per expert); several tokens' rows are gathered into moe_x. */
static const float *expert_input(kiln_ctx *c, int at, int n, size_t r) {
    const size_t H = (size_t)c->m->cfg.hidden_size;
    if (n == 1) return c->h + (size_t)c->moe_tok[at] * H;
    for (int i = 0; i < n; i++)
        memcpy(c->moe_x + (r + (size_t)i) * H, c->h + (size_t)c->moe_tok[at + i] * H, H * sizeof(float));
    return c->moe_x + r * H;
}

/* Experts [e0, e1) of this layer, whose choices are moe_tok / moe_w [start[e0], start[e1]) (at most
 * moe_rows): their tokens' rows of h (expert_input), gate and up of every used expert as one
 * kern_matmul_many, the activation over all their rows, down likewise, and each output added to its
 * token's sum in expert order. */
static int run_group(kiln_ctx *c, const kiln_layer *L, const int *start, int e0, int e1) {
    const kiln_config *g = &c->m->cfg;
    const size_t H = (size_t)g->hidden_size, I = (size_t)g->expert_ffn_size;
    const int base = start[e0], rows = start[e1] - base;
    kern_mm_task up[2 * KILN_MAX_EXPERTS], down[KILN_MAX_EXPERTS];
    int nu = 0, nd = 0;
    if (!rows) return 0; /* (--tp: a rank none of whose experts was chosen) */
    for (int e = e0; e < e1; e++) {
        const int n = start[e + 1] - start[e];
        if (!n) continue; /* no token chose it: its weights are not read */
        const size_t r = (size_t)(start[e] - base);
        const kiln_expert *x = &L->experts[e];
        const float *in = expert_input(c, start[e], n, r);
        up[nu++] = (kern_mm_task){c->moe_gate + r * I, in, n, &x->w_gate};
        up[nu++] = (kern_mm_task){c->moe_up + r * I, in, n, &x->w_up};
        down[nd++] = (kern_mm_task){c->moe_y + r * H, c->moe_gate + r * I, n, &x->w_down};
    }
    int bad = kern_matmul_many(c->m->pool, &c->ks, up, nu);
    ffn_gated_act(c, c->moe_gate, c->moe_up, (size_t)rows * I);
    bad |= kern_matmul_many(c->m->pool, &c->ks, down, nd);
    for (int i = 0; i < rows; i++) { /* rows are in expert order, so each token's sum is too */
        float *acc = c->moe_acc + (size_t)c->moe_tok[base + i] * H;
        const float *y = c->moe_y + (size_t)i * H, w = c->moe_w[base + i];
        for (size_t d = 0; d < H; d++) acc[d] += w * y[d];
    }
    return bad;
}

int moe_ffn(kiln_ctx *c, const kiln_layer *L, int T) {
    const kiln_config *g = &c->m->cfg;
    const size_t H = (size_t)g->hidden_size;
    int start[KILN_MAX_EXPERTS + 1];
    int bad = kern_matmul(c->m->pool, &c->ks, c->moe_probs, c->h, T, &L->router, NULL);
    route(c, T, start);
    memset(c->moe_acc, 0, (size_t)T * H * sizeof(float));
    int e0, e1; /* --tp: this rank's experts (all of them in one process); the FFN's all-reduce adds the rest */
    dist_expert_range(c->m->dist, g->n_experts, &e0, &e1);
    while (e0 < e1) { /* groups of consecutive experts, each as many as fit moe_rows */
        int e = e0 + 1;
        while (e < e1 && (size_t)(start[e + 1] - start[e0]) <= c->moe_rows) e++;
        bad |= run_group(c, L, start, e0, e);
        e0 = e;
    }
    memcpy(c->h, c->moe_acc, (size_t)T * H * sizeof(float));
    return bad;
}
