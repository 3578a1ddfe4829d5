/* threadpool.c — persistent workers woken per parallel region by a generation counter.
 *
 * Wake-up latency matters: a decode step is ~7 matmuls per layer, each a few tens of microseconds,
 * and a futex wake costs several microseconds per thread. So workers spin on the generation counter
 * for a short while (SPIN_ITERS pause instructions, ~40 us) before sleeping on a condition variable,
 * and the caller spins the same way waiting for the last worker. On a machine shared with other work
 * the spin is short enough that idle workers give the cores back almost at once.
 *
 * Lost wake-ups are impossible: a worker increments `sleepers` and re-checks `generation` under the
 * mutex before waiting; the caller bumps `generation` and then reads `sleepers` (both sequentially
 * consistent), so one of them sees the other and the caller broadcasts under the same mutex. The hot
 * counters sit on their own cache lines so spinning readers do not slow the writers. */
#include "runtime/threadpool.h"

#include "runtime/cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SPIN_ITERS (1 << 11) /* x ~65-cycle pause: ~40 us */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

struct kiln_pool {
    _Alignas(64) atomic_ulong generation; /* bumped once per kiln_pool_run */
    _Alignas(64) atomic_int pending;      /* workers still running the current region */
    _Alignas(64) atomic_int sleepers;     /* workers blocked (or about to block) on `start` */
    atomic_int quit;
    kiln_pool_fn fn;
    void *arg;
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
};

struct worker_arg {
    kiln_pool *p;
    int ith;
};

static void wait_for_work(kiln_pool *p, unsigned long seen) {
    for (int i = 0; i < SPIN_ITERS; i++) {
        if (atomic_load(&p->generation) != seen || atomic_load(&p->quit)) return;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    while (atomic_load(&p->generation) == seen && !atomic_load(&p->quit)) pthread_cond_wait(&p->start, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
}

static void *worker(void *a) {
    struct worker_arg *wa = a;
    kiln_pool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    unsigned long seen = 0;
    for (;;) {
        wait_for_work(p, seen);
        if (atomic_load(&p->quit)) return NULL;
        seen = atomic_load(&p->generation);
        p->fn(p->arg, ith, p->n);
        if (atomic_fetch_sub(&p->pending, 1) == 1) { /* last one out wakes a sleeping caller */
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

kiln_pool *kiln_pool_new(int n_threads) {
    if (n_threads <= 0) n_threads = kiln_physical_cores();
    kiln_pool *p = aligned_alloc(64, (sizeof *p + 63) & ~(size_t)63);
    if (!p) return NULL;
    memset(p, 0, sizeof *p);
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start, NULL);
    pthread_cond_init(&p->done, NULL);
    p->threads = calloc((size_t)n_threads, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    for (int i = 1; i < n_threads; i++) {
        struct worker_arg *wa = malloc(sizeof *wa);
        if (!wa) { /* out of memory: no pool (the caller reports it) rather than a silently smaller one */
            p->n = i;
            kiln_pool_free(p);
            return NULL;
        }
        wa->p = p;
        wa->ith = i;
        if (pthread_create(&p->threads[i], NULL, worker, wa) != 0) {
            free(wa);
            p->n = i; /* run with the threads we got */
            break;
        }
    }
    return p;
}

void kiln_pool_free(kiln_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int kiln_pool_size(const kiln_pool *p) { return p ? p->n : 1; }

void kiln_pool_run(kiln_pool *p, kiln_pool_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n - 1);
    atomic_fetch_add(&p->generation, 1); /* publishes fn/arg (seq_cst) */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->start);
        pthread_mutex_unlock(&p->mu);
    }
    fn(arg, 0, p->n);
    for (int i = 0; i < SPIN_ITERS && atomic_load(&p->pending) > 0; i++) cpu_relax();
    if (atomic_load(&p->pending) > 0) {
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->pending) > 0) pthread_cond_wait(&p->done, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
}
