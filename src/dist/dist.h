/* dist.h — distributed inference over MPI (internal): tensor parallel (--tp) and pipeline parallel (--pp).
 *
 * World rank r is pipeline stage r / tp, tensor rank r % tp; rank 0 (stage 0, tensor rank 0) holds the
 * output projection, samples and broadcasts each token. Every rank runs the same program on the same
 * input (SPMD): the only exchanges are the ones below, so only dist_mpi.c knows MPI. A NULL kiln_dist is
 * the single process: every call is then a no-op that returns 0 (or "yes, this rank does it all").
 *
 * Sharding (shard.c, no MPI): stage s holds layers [layer0, layer0 + n_layers); tensor rank t holds heads
 * [t * n_heads / tp, ...), KV heads likewise, and FFN rows [t * I / tp, ...) of gate/up, the same columns
 * of down; wo's columns follow the heads. So each rank's forward pass is the model's with a smaller
 * config, plus one all-reduce after the attention output and one after the FFN down projection. */
#ifndef KILN_DIST_H
#define KILN_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/strbuf.h"
#include "kernels/kernels.h"
#include "kiln.h"
#include "model/shards.h"
#include "model/tensors.h"

struct dist_comm; /* dist_mpi.c: the MPI communicators and the gather buffer */

struct kiln_dist {
    int rank, size;            /* world */
    int tp, pp, tp_rank, stage; /* this rank's place: stage = rank / tp, tp_rank = rank % tp */
    int layer0, n_layers;      /* this stage's layers (set by dist_plan once the config is known) */
    int vocab;                 /* the model's vocabulary size (dist_plan) */
    double comm_s;             /* seconds spent in MPI calls */
    /* follow.c: rank 0 leads (kiln_dist_lead: serve, bench, chat), the others follow its step messages */
    bool leading;
    int micro;  /* micro-batches per step with --pp > 1 (1: none) */
    strbuf msg; /* the step message being sent or received */
    struct dist_comm *comm;
};
#define DIST_MAX_MICRO 16

/* ---- exchanges (dist_mpi.c; dist_none.c without MPI) ------------------------------------------------ */
/* x[0..n) summed over the tensor-parallel group, in place. Deterministic: every rank gathers all parts
 * and adds them in rank order, so all ranks get bit-identical sums whatever MPI's algorithm. */
int dist_allreduce(kiln_dist *d, float *x, size_t n, kiln_err *err);
/* The hidden states between pipeline stages: from the previous stage's rank of the same tensor rank, and
 * to the next stage's. */
int dist_recv_prev(kiln_dist *d, float *x, size_t n, kiln_err *err);
int dist_send_next(kiln_dist *d, const float *x, size_t n, kiln_err *err);
/* The last stage's final hidden states h[0..n) to rank 0 (kiln_forward_hidden's output). */
int dist_to_output(kiln_dist *d, float *h, size_t n, kiln_err *err);
/* Logits: each rank of the last stage computes its rows of the vocabulary (dist_vocab_range) for the
 * n_out tokens into the buffer dist_logits_part returns (out itself without dist); dist_logits_gather
 * puts them together as [n_out][V] in rank 0's out (zeros on the other ranks). */
float *dist_logits_part(kiln_dist *d, float *out, size_t n_out, kiln_err *err);
int dist_logits_gather(kiln_dist *d, const float *part, float *out, size_t n_out, kiln_err *err);
/* Rank 0's sampled token to every rank of the process's distributed run (no-op when there is none, and
 * when rank 0 leads: its followers never sample). */
int dist_bcast_token(int32_t *tok, kiln_err *err);
/* x[0..n) from rank 0 to every rank. idle: a follower waiting for the next step polls and sleeps rather
 * than spinning on a core (a server may be idle for hours); that wait is not counted as MPI time. */
int dist_bcast_ints(kiln_dist *d, int32_t *x, int n, bool idle, kiln_err *err);
/* Micro-batches: while deferred, the hidden states to the next stage and the last stage's logits to rank 0
 * travel non-blocking (a send copies the data first; rank 0's receive lands in place), and dist_flush
 * waits for all of them: only then are rank 0's logits there. */
void dist_defer(kiln_dist *d, bool on);
int dist_flush(kiln_dist *d, kiln_err *err);
/* Leading runs MPI from whichever thread drives the engine (the server's engine thread): one at a time,
 * which MPI must have granted (MPI_THREAD_SERIALIZED). */
int dist_threads_serialized(const kiln_dist *d, kiln_err *err);

/* ---- leading and following (follow.c) ------------------------------------------------------------------- */
static inline bool dist_leading(const kiln_dist *d) { return d && d->leading; }
/* kiln_forward / kiln_forward_hidden on a leading rank 0: broadcasts the step, then runs it. Between steps
 * the context's sequences change only by create / fork / truncate / free, which change block tables and
 * never KV contents (kvcache.c), so the step's state message is all a follower needs. */
int dist_lead_step(kiln_ctx *c, const kiln_batch *b, float *out, bool hidden, kiln_err *err);
/* rounds.c: the forward pass itself (out: logits, or with hidden the final hidden states), and its
 * checks of a batch alone (what it would refuse, without changing anything). */
int engine_forward(kiln_ctx *c, const kiln_batch *b, float *out, bool hidden, kiln_err *err);
int engine_check(const kiln_ctx *c, const kiln_batch *b, const float *out, kiln_err *err);

/* ---- roles (dist_plan.c) ------------------------------------------------------------------------------ */
static inline bool dist_first_stage(const kiln_dist *d) { return !d || d->stage == 0; }
static inline bool dist_last_stage(const kiln_dist *d) { return !d || d->stage == d->pp - 1; }
static inline bool dist_is_output(const kiln_dist *d) { return !d || d->rank == 0; }

/* Whether this rank holds a tensor of that role at all: the embedding on the first stage (its ranks look
 * rows up) and, when it is tied, on the last; the output projection on the last stage (each of its ranks
 * then keeps only its vocabulary rows, dist_shard_output); everything else on every rank (sliced). */
static inline bool dist_holds(const kiln_dist *d, tensor_role role, bool tied) {
    if (role == ROLE_EMBEDDING) return dist_first_stage(d) || (tied && dist_last_stage(d));
    return role == ROLE_OUTPUT ? dist_last_stage(d) : true;
}

/* Checks that cfg splits over d (heads, KV heads and FFN width divisible by tp, at least pp layers) and
 * sets d's layer range. Run before any tensor is bound. */
int dist_plan(kiln_dist *d, const kiln_config *cfg, kiln_err *err);
/* cfg as this rank's forward pass sees it: its heads, KV heads, FFN width and layers. */
void dist_local_config(const kiln_dist *d, kiln_config *cfg);
/* Mixture of experts under --tp: tensor rank t holds experts [*e0, *e1) whole (t * E / tp on), routes
 * every token as one process does, runs only its experts, and the FFN's all-reduce adds the ranks' sums.
 * All experts without dist. */
void dist_expert_range(const kiln_dist *d, int n_experts, int *e0, int *e1);
bool dist_holds_expert(const kiln_dist *d, const tensor_desc *desc, int n_experts); /* true for other tensors */
/* Where global layer l lives on this rank (its index among the stage's layers), or -1: another stage's. */
int dist_local_layer(const kiln_dist *d, int l);

/* ---- shards (shard.c) --------------------------------------------------------------------------------- */
/* This rank's part of the tensor at data (dtype dt; desc, global shape rows x cols, cols 0 for a vector). A row slice is a
 * view into the mapping; a column slice (wo, w_down) is copied, row by row in the stored format, into
 * *owned (the caller frees it), and the source pages are dropped from this process. */
typedef struct shard_view {
    const void *data;
    int64_t rows, cols;
    void *owned;
} shard_view;
/* The vocabulary rows tensor rank t of the last stage computes: [*v0, *v0 + *n), in whole 16-row units
 * (a quantised matrix's panels) except the last rank's. *n may be 0 for a tiny vocabulary. */
void dist_vocab_range(const kiln_dist *d, int t, int vocab, int *v0, int *n);
/* The vocabulary rows this rank's logits hold: vocab without dist or tp. */
int dist_vocab_local(const kiln_dist *d, int vocab);
/* Narrows lm (the output projection, once converted) to this rank's vocabulary rows: a view. */
void dist_shard_output(kiln_dist *d, kiln_mat *lm);
int dist_shard(const kiln_dist *d, const st_set *s, const tensor_desc *desc, const void *data, kiln_dtype dt,
               int64_t rows, int64_t cols, shard_view *v, kiln_err *err);

#endif
