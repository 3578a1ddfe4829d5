/* dist_mpi.c — the exchanges of dist.h over MPI (built when the Open MPI development files are present:
 * the Makefile defines KILN_MPI; dist_none.c stands in otherwise).
 *
 * Errors come back as kiln_err: every communicator uses MPI_ERRORS_RETURN instead of MPI's default of
 * aborting the job, and MPI's own message is passed on. Only the thread that called kiln_dist_init calls
 * MPI (MPI_THREAD_FUNNELED): the worker pool never does. */
#ifdef KILN_MPI
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist/dist.h"

typedef struct grow_buf {
    float *p;
    size_t cap; /* floats */
} grow_buf;

struct dist_comm {
    MPI_Comm tp;      /* the ranks of this stage */
    grow_buf gather;  /* the parts of this rank's chunk of an all-reduce; the last stage's logits at its root */
    grow_buf part;    /* this rank's vocabulary rows of the logits */
    int *count, *displ, *part_count, *part_displ; /* [tp] each: the chunks, and the parts of this rank's */
    int thread_level; /* what MPI_Init_thread provided */
    /* deferred transfers (dist_defer): their requests, and the copies the hidden-state sends read from */
    bool deferred;
    MPI_Request req[2 * DIST_MAX_MICRO];
    int n_req;
    grow_buf sent[DIST_MAX_MICRO];
    int n_sent;
};

static kiln_dist *process_dist; /* MPI is one per process: the run kiln_dist_init started */

static int mpi_fail(int rc, const char *what, kiln_err *err) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof msg, "error %d", rc);
    return kiln_err_set(err, "MPI %s failed: %.*s", what, len, msg);
}

/* Runs one MPI call, timed into d->comm_s; its failure as kiln_err. */
#define MPI_TIMED(d, what, call)                                                                              \
    do {                                                                                                      \
        double t0_ = MPI_Wtime();                                                                             \
        int rc_ = (call);                                                                                     \
        (d)->comm_s += MPI_Wtime() - t0_;                                                                     \
        if (rc_ != MPI_SUCCESS) return mpi_fail(rc_, what, err);                                              \
    } while (0)

/* b with room for n floats: grown with the largest batch only, then every step reuses it. */
static float *room(grow_buf *b, size_t n, kiln_err *err) {
    if (n > b->cap) {
        float *p = realloc(b->p, n * sizeof *p);
        if (!p) {
            kiln_err_set(err, "out of memory for %zu floats of MPI buffers", n);
            return NULL;
        }
        b->p = p, b->cap = n;
    }
    return b->p;
}

bool kiln_dist_available(void) { return true; }

kiln_dist *kiln_dist_init(int tp, int pp, kiln_err *err) {
    if (tp < 1 || pp < 1) {
        kiln_err_set(err, "--tp and --pp must be >= 1");
        return NULL;
    }
    if (process_dist) {
        kiln_err_set(err, "distributed run already started in this process");
        return NULL;
    }
    int inited = 0, provided;
    MPI_Initialized(&inited);
    /* SERIALIZED: a leading rank 0 calls MPI from the thread that drives the engine (follow.c) */
    if (!inited && MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
        kiln_err_set(err, "MPI_Init failed");
        return NULL;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    kiln_dist *d = calloc(1, sizeof *d);
    struct dist_comm *c = calloc(1, sizeof *c);
    int *counts = calloc(4 * (size_t)tp, sizeof *counts);
    if (!d || !c || !counts) {
        free(d), free(c), free(counts);
        kiln_err_set(err, "out of memory");
        MPI_Finalize();
        return NULL;
    }
    d->comm = c;
    MPI_Query_thread(&c->thread_level);
    c->count = counts, c->displ = counts + tp, c->part_count = c->displ + tp, c->part_displ = c->part_count + tp;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    d->tp = tp, d->pp = pp, d->stage = d->rank / tp, d->tp_rank = d->rank % tp;
    int rc;
    if (d->size != tp * pp)
        kiln_err_set(err, "--tp %d x --pp %d needs %d MPI processes (mpirun -np %d), this run has %d", tp, pp, tp * pp,
                     tp * pp, d->size);
    else if ((rc = MPI_Comm_split(MPI_COMM_WORLD, d->stage, d->tp_rank, &c->tp)) != MPI_SUCCESS)
        mpi_fail(rc, "Comm_split", err);
    else {
        MPI_Comm_set_errhandler(c->tp, MPI_ERRORS_RETURN);
        return process_dist = d;
    }
    free(c->count), free(c), free(d);
    MPI_Finalize();
    return NULL;
}

void kiln_dist_free(kiln_dist *d) {
    if (!d) return;
    MPI_Comm_free(&d->comm->tp);
    free(d->comm->gather.p);
    free(d->comm->part.p);
    for (int i = 0; i < DIST_MAX_MICRO; i++) free(d->comm->sent[i].p);
    strbuf_free(&d->msg);
    free(d->comm->count);
    free(d->comm);
    if (process_dist == d) process_dist = NULL;
    free(d);
    MPI_Finalize();
}

/* Reduce-scatter then all-gather, as a ring all-reduce moves 2 (N - 1) / N of the vector per rank, but
 * with the order of the sums fixed: rank r owns chunk r, receives every rank's part of it (Alltoallv),
 * adds them in rank order 0..N-1, and the owners' sums are gathered back (Allgatherv). So every element
 * is summed once, in the same order, and every rank gets the same bits whatever algorithm MPI picks. */
int dist_allreduce(kiln_dist *d, float *x, size_t n, kiln_err *err) {
    if (!d || d->tp == 1) return 0;
    struct dist_comm *c = d->comm;
    const int N = d->tp, me = d->tp_rank;
    if (n > (size_t)INT32_MAX) return kiln_err_set(err, "all-reduce of %zu floats too large for one MPI call", n);
    float *parts = room(&c->gather, (size_t)N * (n / (size_t)N + 1), err); /* N parts of the largest chunk */
    if (!parts) return -1;
    for (int r = 0, at = 0; r < N; r++) { /* chunk r: n / N floats, one more for the first n % N */
        c->count[r] = (int)(n / (size_t)N) + (r < (int)(n % (size_t)N));
        c->displ[r] = at;
        at += c->count[r];
    }
    const int k = c->count[me];
    for (int r = 0; r < N; r++) c->part_count[r] = k, c->part_displ[r] = r * k;
    MPI_TIMED(d, "Alltoallv", MPI_Alltoallv(x, c->count, c->displ, MPI_FLOAT, parts, c->part_count, c->part_displ,
                                            MPI_FLOAT, c->tp));
    float *sum = x + c->displ[me];
    memcpy(sum, parts, (size_t)k * sizeof *sum);
    for (int r = 1; r < N; r++) /* rank order */
        for (int i = 0; i < k; i++) sum[i] += parts[(size_t)r * k + i];
    MPI_TIMED(d, "Allgatherv", MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, x, c->count, c->displ, MPI_FLOAT, c->tp));
    return 0;
}

enum { TAG_HIDDEN = 1, TAG_OUTPUT = 2 };

int dist_recv_prev(kiln_dist *d, float *x, size_t n, kiln_err *err) {
    if (!d || d->stage == 0) return 0;
    MPI_TIMED(d, "Recv", MPI_Recv(x, (int)n, MPI_FLOAT, d->rank - d->tp, TAG_HIDDEN, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    return 0;
}

/* Starts a non-blocking transfer of the deferred mode (dist_flush waits for it). */
static MPI_Request *deferred_req(kiln_dist *d, kiln_err *err) {
    struct dist_comm *c = d->comm;
    if (c->n_req == (int)(sizeof c->req / sizeof c->req[0])) {
        kiln_err_set(err, "more than %d deferred MPI transfers in one step", c->n_req);
        return NULL;
    }
    return &c->req[c->n_req++];
}

int dist_send_next(kiln_dist *d, const float *x, size_t n, kiln_err *err) {
    if (!d || d->stage == d->pp - 1) return 0;
    struct dist_comm *c = d->comm;
    if (c->deferred) { /* x is the step's scratch, which the next micro-batch overwrites: send a copy */
        if (c->n_sent == DIST_MAX_MICRO) return kiln_err_set(err, "more than %d micro-batches in one step", DIST_MAX_MICRO);
        float *copy = room(&c->sent[c->n_sent], n, err);
        MPI_Request *rq = copy ? deferred_req(d, err) : NULL;
        if (!rq) return -1;
        c->n_sent++;
        memcpy(copy, x, n * sizeof *x);
        MPI_TIMED(d, "Isend", MPI_Isend(copy, (int)n, MPI_FLOAT, d->rank + d->tp, TAG_HIDDEN, MPI_COMM_WORLD, rq));
        return 0;
    }
    MPI_TIMED(d, "Send", MPI_Send(x, (int)n, MPI_FLOAT, d->rank + d->tp, TAG_HIDDEN, MPI_COMM_WORLD));
    return 0;
}

int dist_to_output(kiln_dist *d, float *h, size_t n, kiln_err *err) {
    if (!d || d->pp == 1) return 0; /* rank 0 is in the last stage: it has them */
    const int from = (d->pp - 1) * d->tp;
    if (d->comm->deferred && (d->rank == from || d->rank == 0)) { /* h stays untouched until dist_flush */
        MPI_Request *rq = deferred_req(d, err);
        if (!rq) return -1;
        if (d->rank == from) MPI_TIMED(d, "Isend", MPI_Isend(h, (int)n, MPI_FLOAT, 0, TAG_OUTPUT, MPI_COMM_WORLD, rq));
        else MPI_TIMED(d, "Irecv", MPI_Irecv(h, (int)n, MPI_FLOAT, from, TAG_OUTPUT, MPI_COMM_WORLD, rq));
        return 0;
    }
    if (d->rank == from) MPI_TIMED(d, "Send", MPI_Send(h, (int)n, MPI_FLOAT, 0, TAG_OUTPUT, MPI_COMM_WORLD));
    else if (d->rank == 0)
        MPI_TIMED(d, "Recv", MPI_Recv(h, (int)n, MPI_FLOAT, from, TAG_OUTPUT, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    return 0;
}

float *dist_logits_part(kiln_dist *d, float *out, size_t n_out, kiln_err *err) {
    if (!d || d->tp == 1) return out;
    int v0, n;
    dist_vocab_range(d, d->tp_rank, d->vocab, &v0, &n);
    return room(&d->comm->part, n_out * (size_t)n + 1, err);
}

/* The last stage's parts [rank][n_out][its rows] gathered at its tensor rank 0, then laid out [n_out][V]. */
static int gather_stage(kiln_dist *d, const float *part, float *out, size_t n_out, kiln_err *err) {
    struct dist_comm *c = d->comm;
    const size_t V = (size_t)d->vocab;
    if (n_out * V > (size_t)INT32_MAX) return kiln_err_set(err, "%zu logits too many for one MPI call", n_out * V);
    int v0, n;
    for (int r = 0, at = 0; r < d->tp; r++) {
        dist_vocab_range(d, r, d->vocab, &v0, &n);
        c->count[r] = (int)n_out * n, c->displ[r] = at;
        at += c->count[r];
    }
    float *all = d->tp_rank == 0 ? room(&c->gather, n_out * V + 1, err) : NULL;
    if (d->tp_rank == 0 && !all) return -1;
    MPI_TIMED(d, "Gatherv", MPI_Gatherv(part, c->count[d->tp_rank], MPI_FLOAT, all, c->count, c->displ, MPI_FLOAT, 0, c->tp));
    for (int r = 0; all && r < d->tp; r++) {
        dist_vocab_range(d, r, d->vocab, &v0, &n);
        for (size_t i = 0; i < n_out; i++)
            memcpy(out + i * V + v0, all + c->displ[r] + i * (size_t)n, (size_t)n * sizeof *out);
    }
    return 0;
}

int dist_logits_gather(kiln_dist *d, const float *part, float *out, size_t n_out, kiln_err *err) {
    if (!d) return 0;
    const size_t V = (size_t)d->vocab;
    if (d->tp > 1 && d->stage == d->pp - 1 && gather_stage(d, part, out, n_out, err)) return -1;
    if (d->pp > 1 && dist_to_output(d, out, n_out * V, err)) return -1; /* the last stage's root to rank 0 */
    if (d->rank != 0 && !d->comm->deferred) memset(out, 0, n_out * V * sizeof *out); /* deferred: still being sent */
    return 0;
}

int dist_bcast_token(int32_t *tok, kiln_err *err) {
    kiln_dist *d = process_dist;
    if (!d || d->leading) return 0;
    MPI_TIMED(d, "Bcast", MPI_Bcast(tok, 1, MPI_INT32_T, 0, MPI_COMM_WORLD));
    return 0;
}

void dist_defer(kiln_dist *d, bool on) {
    if (d) d->comm->deferred = on;
}

int dist_flush(kiln_dist *d, kiln_err *err) {
    if (!d) return 0;
    struct dist_comm *c = d->comm;
    const int n = c->n_req;
    c->n_req = c->n_sent = 0;
    MPI_Status st[2 * DIST_MAX_MICRO];
    if (n) {
        double t0 = MPI_Wtime();
        int rc = MPI_Waitall(n, c->req, st);
        d->comm_s += MPI_Wtime() - t0;
        for (int i = 0; rc == MPI_ERR_IN_STATUS && i < n; i++) /* the transfer's own error says more */
            if (st[i].MPI_ERROR != MPI_SUCCESS) return mpi_fail(st[i].MPI_ERROR, "deferred transfer", err);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "Waitall", err);
    }
    return 0;
}

int dist_threads_serialized(const kiln_dist *d, kiln_err *err) {
    if (d && d->comm->thread_level < MPI_THREAD_SERIALIZED)
        return kiln_err_set(err, "this MPI library does not allow calls from the engine thread (MPI_THREAD_SERIALIZED)");
    return 0;
}

/* The idle wait: spin (with MPI's progress) for the first 2 ms, then sleep 0.2 ms between polls, so a
 * busy server's steps follow each other at once and an idle one's followers take no core. */
static int idle_wait(MPI_Request *rq, kiln_err *err) {
    struct timespec t0, now, nap = {0, 200 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        int done = 0, rc = MPI_Test(rq, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "Test", err);
        if (done) return 0;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if ((now.tv_sec - t0.tv_sec) * 1e3 + (now.tv_nsec - t0.tv_nsec) / 1e6 > 2) nanosleep(&nap, NULL);
    }
}

/* Always the non-blocking broadcast: MPI matches a non-blocking collective only with non-blocking ones, and
 * the follower's idle wait needs one. */
int dist_bcast_ints(kiln_dist *d, int32_t *x, int n, bool idle, kiln_err *err) {
    if (!d) return 0;
    MPI_Request rq;
    int rc = MPI_Ibcast(x, n, MPI_INT32_T, 0, MPI_COMM_WORLD, &rq);
    if (rc != MPI_SUCCESS) return mpi_fail(rc, "Ibcast", err);
    if (idle) return idle_wait(&rq, err);
    MPI_TIMED(d, "Bcast", MPI_Wait(&rq, MPI_STATUS_IGNORE));
    return 0;
}

#endif
