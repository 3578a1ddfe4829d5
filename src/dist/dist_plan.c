/* dist_plan.c — which part of the model a rank holds (see dist.h): the checks that the config splits,
 * the stage's layer range, and the config its forward pass runs with. No MPI here. */
#include <string.h>

#include "dist/dist.h"

int dist_plan(kiln_dist *d, const kiln_config *c, kiln_err *err) {
    if (!d) return 0;
    /* mixture of experts: whole experts per rank (dist_expert_range), so their count must divide; a dense
     * FFN splits its width. OLMo-2's q/k norm over all heads sums its squares across ranks (forward.c). */
    const struct {
        const char *what;
        int n;
    } split[] = {{"attention heads", c->n_heads},
                 {"KV heads", c->n_kv_heads},
                 {c->n_experts ? "experts" : "intermediate_size", c->n_experts ? c->n_experts : c->intermediate_size}};
    for (size_t i = 0; i < sizeof split / sizeof split[0]; i++)
        if (split[i].n % d->tp)
            return kiln_err_set(err, "--tp %d: the model's %d %s do not divide by %d", d->tp, split[i].n, split[i].what,
                                d->tp);
    if (c->n_layers < d->pp)
        return kiln_err_set(err, "--pp %d: the model has only %d layers", d->pp, c->n_layers);
    /* contiguous stages, the first ones one layer longer when the layers do not divide */
    int base = c->n_layers / d->pp, extra = c->n_layers % d->pp;
    d->layer0 = d->stage * base + (d->stage < extra ? d->stage : extra);
    d->n_layers = base + (d->stage < extra);
    d->vocab = c->vocab_size;
    return 0;
}

void dist_local_config(const kiln_dist *d, kiln_config *c) {
    if (!d) return;
    /* per-layer flags are indexed by layer: the stage's layers renumbered from 0 */
    const kiln_config full = *c;
    memset(c->swa_layers, 0, sizeof c->swa_layers);
    for (int l = 0; l < d->n_layers; l++)
        if (kiln_config_layer_windowed(&full, d->layer0 + l)) c->swa_layers[l / 64] |= (uint64_t)1 << (l % 64);
    c->n_heads /= d->tp;
    c->n_kv_heads /= d->tp;
    if (!c->n_experts) c->intermediate_size /= d->tp; /* experts stay whole: each rank holds some of them */
    c->n_layers = d->n_layers;
}

void dist_expert_range(const kiln_dist *d, int n_experts, int *e0, int *e1) {
    const int t = d ? d->tp_rank : 0, tp = d ? d->tp : 1;
    *e0 = t * n_experts / tp, *e1 = (t + 1) * n_experts / tp;
}

bool dist_holds_expert(const kiln_dist *d, const tensor_desc *desc, int n_experts) {
    if (!desc->per_expert) return true;
    int e0, e1;
    dist_expert_range(d, n_experts, &e0, &e1);
    return desc->expert >= e0 && desc->expert < e1;
}

int dist_local_layer(const kiln_dist *d, int l) {
    if (!d || l < 0) return l;
    return l >= d->layer0 && l < d->layer0 + d->n_layers ? l - d->layer0 : -1;
}

int kiln_dist_rank(const kiln_dist *d) { return d ? d->rank : 0; }
int kiln_dist_size(const kiln_dist *d) { return d ? d->size : 1; }
double kiln_dist_comm_seconds(const kiln_dist *d) { return d ? d->comm_s : 0; }
