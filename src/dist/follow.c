/* follow.c — one program on rank 0, followers elsewhere: how `kiln serve`, `bench` and `chat` run split
 * (docs/distributed.md).
 *
 * Those commands decide what to compute from input only rank 0 has (HTTP requests, a REPL's lines, the
 * scheduler's timing), so the SPMD way of run / generate (every rank runs the same command) cannot work
 * for them. Instead rank 0 leads (kiln_dist_lead): its command runs as in one process, and every
 * kiln_forward / kiln_forward_hidden it makes first broadcasts one step message; the other ranks sit in
 * kiln_dist_follow and run the same step on their shard. No second scheduler: the hook is the engine's
 * entry point (forward.c), so whatever drives the engine on rank 0 drives all ranks.
 *
 * A step message carries what a follower needs to step exactly that batch: the context's geometry (a
 * follower makes a matching context, and a new one when rank 0 moves to another), the sequences' state
 * (kv_state_pack: lengths, block tables of both KV pools, free lists; so sequence create / fork / truncate
 * / free between steps need no messages of their own, and the follower's allocations inside the step equal
 * rank 0's), and the batch (sequence ids, token counts, tokens). Positions follow from the lengths. A KV
 * block's contents change only inside a step (kv_reserve's copy-on-write, kv_store), which the follower
 * runs too; a follower that finds a block it never wrote under a sequence's length stops with an error.
 * kiln_dist_lead_end broadcasts the stop.
 *
 * Micro-batches (--pp > 1): a step's sequences are split into up to d->micro consecutive groups, each run
 * as its own forward pass (the same logits: a batch is the sum of its sequences), with the stage-to-stage
 * and last-stage-to-rank-0 transfers non-blocking (dist_defer), so stage s + 1 works on group k while
 * stage s works on group k + 1. */
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "dist/dist.h"
#include "engine/engine.h"

enum { OP_STEP = 1, OP_STOP = 2 };
/* The fixed-size header broadcast first; the payload's int32 count is in it. */
enum { H_OP, H_MAX_SEQS, H_N_CTX, H_N_BLOCKS, H_KV_TYPE, H_STEP, H_HIDDEN, H_LOGITS_ALL, H_N_SEQS, H_T, H_MICRO,
       H_PAYLOAD, H_N };

int kiln_dist_lead(kiln_dist *d, int micro_batches, kiln_err *err) {
    if (!d) return 0;
    if (d->rank != 0) return kiln_err_set(err, "only rank 0 leads a distributed run");
    if (micro_batches < 1 || micro_batches > DIST_MAX_MICRO)
        return kiln_err_set(err, "--micro-batches %d: want 1..%d", micro_batches, DIST_MAX_MICRO);
    if (micro_batches > 1 && d->pp == 1)
        return kiln_err_set(err, "--micro-batches %d: needs --pp > 1 (they overlap pipeline stages)", micro_batches);
    if (dist_threads_serialized(d, err)) return -1;
    d->leading = true;
    d->micro = micro_batches;
    return 0;
}

int kiln_dist_lead_end(kiln_dist *d, kiln_err *err) {
    if (!d || !d->leading) return 0;
    int32_t h[H_N] = {[H_OP] = OP_STOP};
    d->leading = false;
    return dist_bcast_ints(d, h, H_N, false, err);
}

/* Header and payload of a step: c's geometry and sequence state (kv_state_pack), then the batch. */
static int pack(const kiln_ctx *c, const kiln_batch *b, bool hidden, int32_t *h, strbuf *p, kiln_err *err) {
    int T = 0;
    for (int i = 0; i < b->n_seqs; i++) T += b->n_tokens[i];
    strbuf_clear(p);
    if (kv_state_pack(c, p) || strbuf_put_ints(p, b->seq, b->n_seqs) || strbuf_put_ints(p, b->n_tokens, b->n_seqs) || strbuf_put_ints(p, b->tokens, T))
        return kiln_err_set(err, "out of memory for a step message");
    const int32_t v[H_N] = {OP_STEP, c->max_seqs, c->n_ctx, kiln_ctx_total_blocks(c), (int32_t)c->kv_type,
                            c->max_step_tokens, hidden, b->logits_all, b->n_seqs, T, c->m->dist->micro,
                            (int32_t)(p->len / sizeof(int32_t))};
    memcpy(h, v, sizeof v);
    return 0;
}

/* The batch's outputs: one per sequence, or one per token with logits_all. */
static int outputs(const kiln_batch *b, int first, int n) {
    int k = 0;
    for (int i = first; i < first + n; i++) k += b->logits_all ? b->n_tokens[i] : 1;
    return k;
}

/* Runs the step, in up to micro micro-batches where they apply. Every rank calls this with the same batch
 * and micro (the leader's, from the step message). */
static int run_step(kiln_ctx *c, const kiln_batch *b, float *out, bool hidden, int micro, kiln_err *err) {
    kiln_dist *d = c->m->dist;
    int M = !hidden && d->pp > 1 ? (micro < b->n_seqs ? micro : b->n_seqs) : 1;
    if (M <= 1) return engine_forward(c, b, out, hidden, err);
    const size_t V = (size_t)d->vocab;
    dist_defer(d, true);
    int rc = 0;
    for (int k = 0, s0 = 0, tok0 = 0, out0 = 0; k < M && !rc; k++) {
        const int s1 = b->n_seqs * (k + 1) / M;
        kiln_batch sb = {.n_seqs = s1 - s0, .seq = b->seq + s0, .n_tokens = b->n_tokens + s0, .tokens = b->tokens + tok0,
                         .logits_all = b->logits_all};
        rc = engine_forward(c, &sb, out + (size_t)out0 * V, false, err);
        for (int i = s0; i < s1; i++) tok0 += b->n_tokens[i];
        out0 += outputs(b, s0, s1 - s0);
        s0 = s1;
    }
    dist_defer(d, false);
    if (dist_flush(d, err)) return -1; /* a failed group still waits for the transfers it started */
    return rc;
}

int dist_lead_step(kiln_ctx *c, const kiln_batch *b, float *out, bool hidden, kiln_err *err) {
    kiln_dist *d = c->m->dist;
    /* a batch the engine would refuse is refused before anything is sent: the followers never see it */
    if (engine_check(c, b, out, err)) return -1;
    int32_t h[H_N];
    if (pack(c, b, hidden, h, &d->msg, err) || dist_bcast_ints(d, h, H_N, false, err) ||
        dist_bcast_ints(d, (int32_t *)d->msg.p, h[H_PAYLOAD], false, err))
        return -1;
    return run_step(c, b, out, hidden, d->micro, err);
}

/* ---- the follower --------------------------------------------------------------------------------------- */

typedef struct follower {
    kiln_model *m;
    kiln_ctx *ctx;
    float *out;
    size_t out_cap; /* floats */
} follower;

/* A context of the leader's geometry (the one it has, or a new one). */
static int match_ctx(follower *f, const int32_t *h, kiln_err *err) {
    kiln_ctx *c = f->ctx;
    if (c && c->max_seqs == h[H_MAX_SEQS] && c->n_ctx == h[H_N_CTX] && kiln_ctx_total_blocks(c) == h[H_N_BLOCKS] &&
        (int)c->kv_type == h[H_KV_TYPE] && c->max_step_tokens == h[H_STEP])
        return 0;
    kiln_ctx_free(c);
    kiln_ctx_opts o = {.max_seqs = h[H_MAX_SEQS], .n_ctx = h[H_N_CTX], .kv_blocks = h[H_N_BLOCKS],
                       .kv_type = (kiln_dtype)h[H_KV_TYPE], .max_step_tokens = h[H_STEP]};
    return (f->ctx = kiln_ctx_new(f->m, &o, err)) ? 0 : -1;
}

/* One step as the leader sent it. */
static int follow_step(follower *f, const int32_t *h, const int32_t *p, kiln_err *err) {
    const int32_t *end = p + h[H_PAYLOAD];
    if (match_ctx(f, h, err) || kv_state_apply(f->ctx, &p, end, err)) return -1;
    const int n = h[H_N_SEQS], T = h[H_T];
    if (n < 1 || T < 1 || end - p != 2 * (ptrdiff_t)n + T) return kiln_err_set(err, "malformed step message from rank 0");
    kiln_batch b = {.n_seqs = n, .seq = p, .n_tokens = p + n, .tokens = p + 2 * n, .logits_all = h[H_LOGITS_ALL]};
    const kiln_config *g = &f->m->cfg;
    const size_t need = (size_t)(b.logits_all ? T : n) * (size_t)(h[H_HIDDEN] ? g->hidden_size : g->vocab_size);
    if (need > f->out_cap) {
        float *o = realloc(f->out, need * sizeof *o);
        if (!o) return kiln_err_set(err, "out of memory for a step's output");
        f->out = o, f->out_cap = need;
    }
    b.logits = f->out;
    return run_step(f->ctx, &b, f->out, h[H_HIDDEN], h[H_MICRO], err);
}

int kiln_dist_follow(kiln_model *m, kiln_err *err) {
    kiln_dist *d = m->dist;
    if (!d || d->rank == 0) return kiln_err_set(err, "only ranks other than 0 follow a distributed run");
    follower f = {.m = m};
    int rc = 0;
    for (;;) {
        int32_t h[H_N];
        if ((rc = dist_bcast_ints(d, h, H_N, true, err))) break; /* idle until rank 0's next step */
        if (h[H_OP] != OP_STEP) break;
        strbuf_clear(&d->msg);
        if (h[H_PAYLOAD] < 0 || strbuf_reserve(&d->msg, (size_t)h[H_PAYLOAD] * sizeof(int32_t))) {
            rc = kiln_err_set(err, "out of memory for a step message");
            break;
        }
        if ((rc = dist_bcast_ints(d, (int32_t *)d->msg.p, h[H_PAYLOAD], false, err))) break;
        if ((rc = follow_step(&f, h, (const int32_t *)d->msg.p, err))) break;
    }
    kiln_ctx_free(f.ctx);
    free(f.out);
    return rc;
}
