/* moe.c — the mixture-of-experts FFN (Qwen3-MoE, Mixtral) of one layer over a step's tokens.
 *
 * As transformers: the router's logits, softmax over all experts, the top n_experts_used kept (their
 * weights renormalised to sum 1 when norm_topk_prob), and the FFN output is the weighted sum of those
 * experts' SwiGLU outputs. The tokens are grouped by expert: each chosen expert's rows of h are gathered
 * and its three matrices run once over them (one kern_matmul each), so a step reads every expert it uses
 * once, whatever the number of tokens that chose it, and never reads one that no token chose. The sum
 * goes in expert order, as the reference's loop over experts does. */
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "engine/engine.h"

int moe_scratch(kiln_ctx *c, size_t T, kiln_err *err) {
    const kiln_config *g = &c->m->cfg;
    if (!g->n_experts) return 0;
    const size_t H = (size_t)g->hidden_size, K = (size_t)g->n_experts_used;
    struct {
        void **p;
        size_t per_token;
    } bufs[] = {{(void **)&c->moe_probs, (size_t)g->n_experts * sizeof(float)},
                {(void **)&c->moe_x, H * sizeof(float)},
                {(void **)&c->moe_y, H * sizeof(float)},
                {(void **)&c->moe_acc, H * sizeof(float)},
                {(void **)&c->moe_sel_w, K * sizeof(float)},
                {(void **)&c->moe_w, K * sizeof(float)},
                {(void **)&c->moe_sel, K * sizeof(int)},
                {(void **)&c->moe_tok, K * sizeof(int)}};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
        void *p = realloc(*bufs[i].p, T * bufs[i].per_token);
        if (!p) return kiln_err_set(err, "out of memory for a batch of %zu tokens", T);
        *bufs[i].p = p;
    }
    return 0;
}

void moe_scratch_free(kiln_ctx *c) {
    void *bufs[] = {c->moe_probs, c->moe_x, c->moe_y, c->moe_acc, c->moe_sel_w, c->moe_w, c->moe_sel, c->moe_tok};
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

/* One expert over its n gathered tokens: moe_x in, moe_y out (gate and up in the step's FFN scratch). */
static int run_expert(kiln_ctx *c, const kiln_expert *x, int n) {
    kiln_pool *pool = c->m->pool;
    int bad = kern_matmul(pool, &c->ks, c->gate, c->moe_x, n, &x->w_gate, NULL) |
              kern_matmul(pool, &c->ks, c->up, c->moe_x, n, &x->w_up, NULL);
    ffn_gated_act(c, (size_t)n * c->m->cfg.expert_ffn_size);
    return bad | kern_matmul(pool, &c->ks, c->moe_y, c->gate, n, &x->w_down, NULL);
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
    for (int e = e0; e < e1; e++) {
        const int n = start[e + 1] - start[e];
        if (!n) continue; /* no token chose it: its weights are not read */
        const int *tok = c->moe_tok + start[e];
        const float *w = c->moe_w + start[e];
        for (int i = 0; i < n; i++) memcpy(c->moe_x + (size_t)i * H, c->h + (size_t)tok[i] * H, H * sizeof(float));
        bad |= run_expert(c, &L->experts[e], n);
        for (int i = 0; i < n; i++) {
            float *acc = c->moe_acc + (size_t)tok[i] * H;
            const float *y = c->moe_y + (size_t)i * H;
            for (size_t d = 0; d < H; d++) acc[d] += w[i] * y[d];
        }
    }
    memcpy(c->h, c->moe_acc, (size_t)T * H * sizeof(float));
    return bad;
}
