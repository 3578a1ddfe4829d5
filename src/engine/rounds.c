/* rounds.c — kiln_forward: a model with sliding-window layers computes at most max_step_tokens tokens of
 * one sequence per forward step, so a step never needs more than a window plus that many positions of
 * its window layers' cache (kvcache.c keeps only those). A longer batch runs in rounds: round r feeds
 * tokens [r * step, (r + 1) * step) of every sequence that has them, and the rows each round outputs are
 * put where one step would have put them. The results are those of one step (attention over the cache
 * is the same, and every other operation is per token). Without window layers a batch is one step.
 * The whole batch is checked before the first round, so only a distributed run's transport failing in a
 * later round can leave the earlier rounds' tokens in the cache. */
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "engine/engine.h"

struct rounds {
    int *seq, *n, *from; /* the round's batch: sequences, their token counts, the caller's batch index */
    int32_t *tok;
    float *rows;         /* the round's output */
};

static void rounds_free(struct rounds *r) {
    free(r->seq), free(r->n), free(r->from), free(r->tok), free(r->rows);
}

/* Round `done` (tokens [done, done + step) of each sequence); its output rows go to out as one step's. */
static int round_run(kiln_ctx *c, const kiln_batch *b, float *out, bool hidden_only, size_t width, int done,
                     struct rounds *r, kiln_err *err) {
    const int step = c->max_step_tokens;
    int nr = 0, nt = 0;
    for (int i = 0, off = 0; i < b->n_seqs; off += b->n_tokens[i++]) {
        if (b->n_tokens[i] <= done) continue;
        int k = b->n_tokens[i] - done < step ? b->n_tokens[i] - done : step;
        r->seq[nr] = b->seq[i], r->n[nr] = k, r->from[nr++] = i;
        memcpy(r->tok + nt, b->tokens + off + done, (size_t)k * sizeof *r->tok);
        nt += k;
    }
    kiln_batch rb = {.n_seqs = nr, .seq = r->seq, .n_tokens = r->n, .tokens = r->tok, .logits_all = b->logits_all,
                     .logits = r->rows};
    if (forward_step(c, &rb, r->rows, hidden_only, err)) return -1;
    for (int j = 0, row = 0; j < nr; j++) {
        int i = r->from[j], first = 0; /* the caller's row of this sequence's first output row */
        for (int q = 0; q < i; q++) first += b->logits_all ? b->n_tokens[q] : 1;
        if (b->logits_all) memcpy(out + (first + done) * width, r->rows + row * width, (size_t)r->n[j] * width * sizeof *out);
        else if (done + r->n[j] == b->n_tokens[i]) memcpy(out + first * width, r->rows + row * width, width * sizeof *out);
        row += b->logits_all ? r->n[j] : 1;
    }
    return 0;
}

static int forward_rounds(kiln_ctx *c, const kiln_batch *b, float *out, bool hidden_only, kiln_err *err) {
    int longest = 0, T = 0;
    for (int i = 0; b->n_tokens && i < b->n_seqs; i++)
        if (b->n_tokens[i] > longest) longest = b->n_tokens[i];
    if (!c->window || longest <= c->max_step_tokens) return forward_step(c, b, out, hidden_only, err);
    /* The whole batch is checked first, so a round cannot fail on its input or the global blocks; the
     * window pool is sized never to run out (kiln_kv_window_blocks). */
    if (forward_validate(c, b, out, &T, err)) return -1;
    const kiln_config *g = &c->m->cfg;
    const size_t width = (size_t)(hidden_only ? g->hidden_size : g->vocab_size);
    const int step = c->max_step_tokens;
    const size_t rows = b->logits_all ? (size_t)(T < b->n_seqs * step ? T : b->n_seqs * step) : (size_t)b->n_seqs;
    struct rounds r = {malloc((size_t)b->n_seqs * sizeof(int)), malloc((size_t)b->n_seqs * sizeof(int)),
                       malloc((size_t)b->n_seqs * sizeof(int)), malloc((size_t)b->n_seqs * step * sizeof(int32_t)),
                       malloc(rows * width * sizeof(float))};
    int rc = r.seq && r.n && r.from && r.tok && r.rows ? 0 : kiln_err_set(err, "out of memory for a batch of %d tokens", T);
    for (int done = 0; !rc && done < longest; done += step) rc = round_run(c, b, out, hidden_only, width, done, &r, err);
    rounds_free(&r);
    return rc;
}

/* (dist.h) What a distributed step runs on every rank, and the check a leading rank 0 makes before it
 * tells its followers the step. */
int engine_forward(kiln_ctx *c, const kiln_batch *b, float *out, bool hidden, kiln_err *err) {
    return forward_rounds(c, b, out, hidden, err);
}

int engine_check(const kiln_ctx *c, const kiln_batch *b, const float *out, kiln_err *err) {
    int T;
    return forward_validate(c, b, out, &T, err);
}

/* A leading rank 0 (serve, bench, chat split over MPI) first tells its followers the step. */
int kiln_forward(kiln_ctx *c, const kiln_batch *b, kiln_err *err) {
    return dist_leading(c->m->dist) ? dist_lead_step(c, b, b->logits, false, err)
                                    : forward_rounds(c, b, b->logits, false, err);
}

int kiln_forward_hidden(kiln_ctx *c, const kiln_batch *b, float *hidden, kiln_err *err) {
    return dist_leading(c->m->dist) ? dist_lead_step(c, b, hidden, true, err) : forward_rounds(c, b, hidden, true, err);
}
