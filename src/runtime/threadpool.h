/* threadpool.h — a persistent pool of worker threads for data-parallel kernels.
 *
 * kiln_pool_run(pool, fn, arg) calls fn(arg, ith, nth) once on each of the nth threads (the calling
 * thread is ith 0) and returns when all have finished. Workers stay alive between calls. */
#ifndef KILN_THREADPOOL_H
#define KILN_THREADPOOL_H

typedef struct kiln_pool kiln_pool;
typedef void (*kiln_pool_fn)(void *arg, int ith, int nth);

kiln_pool *kiln_pool_new(int n_threads); /* n_threads <= 0: physical cores */
void kiln_pool_free(kiln_pool *p);
int kiln_pool_size(const kiln_pool *p);
void kiln_pool_run(kiln_pool *p, kiln_pool_fn fn, void *arg);
/* Physical cores of this machine (hyper-threads not counted); at least 1. */
int kiln_physical_cores(void);

/* Splits [0, n) into nth contiguous ranges; thread ith gets [*lo, *hi). */
static inline void kiln_split_range(int n, int ith, int nth, int *lo, int *hi) {
    int per = n / nth, rem = n % nth;
    *lo = ith * per + (ith < rem ? ith : rem);
    *hi = *lo + per + (ith < rem ? 1 : 0);
}

#endif
