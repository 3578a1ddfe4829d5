/* threadpool.h — a persistent pool of worker threads for data-parallel kernels.
 *
 * kiln_pool_run(pool, fn, arg) calls fn(arg, ith, nth) once on each of the nth threads (the calling
 * thread is ith 0) and returns when all have finished. Workers stay alive between calls.
 *
 * Why runtime/ and not next to one user: the kernels (kern_matmul, kern_convert_mat), the engine
 * (attention, SwiGLU), the loader (which owns the model's pool) and `kiln info`'s bandwidth measurement all
 * run on it; runtime/ holds what the machine offers (cpu.h: features and cores; this: its threads). */
#ifndef KILN_THREADPOOL_H
#define KILN_THREADPOOL_H

typedef struct kiln_pool kiln_pool;
typedef void (*kiln_pool_fn)(void *arg, int ith, int nth);

kiln_pool *kiln_pool_new(int n_threads); /* n_threads <= 0: physical cores */
void kiln_pool_free(kiln_pool *p);
int kiln_pool_size(const kiln_pool *p);
void kiln_pool_run(kiln_pool *p, kiln_pool_fn fn, void *arg);

/* Splits [0, n) into nth contiguous ranges; thread ith gets [*lo, *hi). */
static inline void kiln_split_range(int n, int ith, int nth, int *lo, int *hi) {
    int per = n / nth, rem = n % nth;
    *lo = ith * per + (ith < rem ? ith : rem);
    *hi = *lo + per + (ith < rem ? 1 : 0);
}

#endif
