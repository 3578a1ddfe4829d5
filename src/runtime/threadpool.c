/* threadpool.c — persistent workers woken per parallel region with a generation counter.
 *
 * One mutex + two condition variables: `start` wakes workers when the generation advances, `done`
 * wakes the caller when the last worker finishes. Simple and correct first; a spinning barrier can
 * replace it where decode steps are short enough for wake-up latency to matter. */
#include "runtime/threadpool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct kiln_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t start, done;
    unsigned long generation;
    int pending;
    int quit;
    kiln_pool_fn fn;
    void *arg;
};

struct worker_arg {
    kiln_pool *p;
    int ith;
};

static void *worker(void *a) {
    struct worker_arg *wa = a;
    kiln_pool *p = wa->p;
    int ith = wa->ith;
    free(wa);
    unsigned long seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->generation == seen && !p->quit) pthread_cond_wait(&p->start, &p->mu);
        if (p->quit) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        kiln_pool_fn fn = p->fn;
        void *arg = p->arg;
        pthread_mutex_unlock(&p->mu);
        fn(arg, ith, p->n);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0) pthread_cond_signal(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

int kiln_physical_cores(void) {
    /* Count distinct (physical id, core id) pairs; fall back to online CPUs. */
    FILE *f = fopen("/proc/cpuinfo", "r");
    int seen[1024][2], ns = 0, phys = 0, core = -1;
    char line[512];
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "physical id : %d", &phys) == 1) continue;
            if (sscanf(line, "core id : %d", &core) == 1) {
                int dup = 0;
                for (int i = 0; i < ns; i++)
                    if (seen[i][0] == phys && seen[i][1] == core) dup = 1;
                if (!dup && ns < 1024) {
                    seen[ns][0] = phys;
                    seen[ns][1] = core;
                    ns++;
                }
            }
        }
        fclose(f);
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (ns <= 0 || ns > online) ns = online > 0 ? (int)online : 1;
    return ns;
}

kiln_pool *kiln_pool_new(int n_threads) {
    if (n_threads <= 0) n_threads = kiln_physical_cores();
    kiln_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
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
        if (!wa) {
            p->n = i;
            break;
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
    p->quit = 1;
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
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->pending = p->n - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}
