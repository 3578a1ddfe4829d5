/* measure.c — two quick figures that bound decode speed: memory read bandwidth (decode reads every
 * weight once per token) and the throughput of kiln's own f32 matmul kernel. Each runs for a fixed
 * time budget and reports its best pass, as STREAM does: the best pass is the machine's capability,
 * the others measure interference from whatever else runs. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels/kernels.h"
#include "kiln.h"
#include "runtime/cpu.h"
#include "runtime/hugepage.h"
#include "runtime/threadpool.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX512_PROBE 1
#endif

struct sum_job {
    const uint64_t *buf;
    size_t n;
    uint64_t out[64];
};

#ifdef HAVE_AVX512_PROBE
/* The thread's slice [lo, hi) (multiples of 8 words, 64-byte aligned) in 64-byte loads, four a step. The
 * probe must read at least as fast as any loop the kernels use, or decode's share of it overstates: on
 * Zen 4 (2 threads) this loop reads ~10% more per second than the word loop below (57 against 51 GB/s,
 * interleaved), and no variant tried beat it (software prefetch, four streams a thread). */
__attribute__((target("avx512f"))) static uint64_t sum_avx512(const uint64_t *buf, size_t lo, size_t hi) {
    __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
    size_t i = lo;
    for (; i + 32 <= hi; i += 32) {
        a = _mm512_add_epi64(a, _mm512_load_si512(buf + i));
        b = _mm512_add_epi64(b, _mm512_load_si512(buf + i + 8));
        c = _mm512_add_epi64(c, _mm512_load_si512(buf + i + 16));
        d = _mm512_add_epi64(d, _mm512_load_si512(buf + i + 24));
    }
    uint64_t lanes[8], s = 0; /* summed unsigned: _mm512_reduce_add_epi64 adds as signed (UBSan overflow) */
    _mm512_storeu_si512(lanes, _mm512_add_epi64(_mm512_add_epi64(a, b), _mm512_add_epi64(c, d)));
    for (int l = 0; l < 8; l++) s += lanes[l];
    for (; i < hi; i++) s += buf[i];
    return s;
}
#endif

static void sum_slice(void *arg, int ith, int nth) {
    struct sum_job *j = arg;
    size_t per = j->n / (size_t)nth & ~(size_t)7, lo = per * (size_t)ith, hi = ith == nth - 1 ? j->n : lo + per;
#ifdef HAVE_AVX512_PROBE
    if (kiln_cpu_features()->avx512f) {
        j->out[ith & 63] = sum_avx512(j->buf, lo, hi);
        return;
    }
#endif
    /* four independent accumulators so the loads, not the adds, are the limit */
    uint64_t a = 0, b = 0, c = 0, d = 0;
    size_t i = lo;
    for (; i + 4 <= hi; i += 4) {
        a += j->buf[i];
        b += j->buf[i + 1];
        c += j->buf[i + 2];
        d += j->buf[i + 3];
    }
    for (; i < hi; i++) a += j->buf[i];
    j->out[ith & 63] = a + b + c + d;
}

static void fill_slice(void *arg, int ith, int nth) {
    struct sum_job *j = arg;
    size_t per = j->n / (size_t)nth, lo = per * (size_t)ith, hi = ith == nth - 1 ? j->n : lo + per;
    /* first touch from the thread that later reads it (NUMA-local pages) */
    memset((void *)(j->buf + lo), 1, (hi - lo) * sizeof *j->buf);
}

double kiln_measure_read_bw(size_t bytes, int n_threads, double seconds) {
    double best = 0, t_end = kiln_now() + seconds; /* the budget includes allocating and filling */
    size_t n = bytes / sizeof(uint64_t);
    /* Huge pages where the kernel allows them (THP "madvise"): 128 faults instead of 65536 for 256 MiB,
     * which would otherwise cost more than the measurement itself, and no TLB misses in the loop. */
    void *map = mmap(NULL, n * sizeof(uint64_t), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    uint64_t *buf = map == MAP_FAILED ? NULL : map;
    kiln_advise_hugepages(buf, n * sizeof *buf);
    kiln_pool *pool = kiln_pool_new(n_threads > 64 ? 64 : n_threads);
    if (buf && pool) {
        struct sum_job j = {.buf = buf, .n = n};
        kiln_pool_run(pool, fill_slice, &j);
        for (int pass = 0; pass < 20 && (pass < 1 || kiln_now() < t_end); pass++) {
            double t0 = kiln_now();
            kiln_pool_run(pool, sum_slice, &j);
            double dt = kiln_now() - t0;
            if (dt > 0 && (double)(n * sizeof *buf) / dt > best) best = (double)(n * sizeof *buf) / dt;
        }
        volatile uint64_t sink = j.out[0];
        (void)sink;
    }
    if (buf) munmap(buf, n * sizeof *buf);
    if (pool) kiln_pool_free(pool);
    return best;
}

double kiln_measure_matmul_gflops(int rows, int cols, int n, int n_threads, double seconds) {
    float *w = malloc((size_t)rows * cols * sizeof *w), *x = malloc((size_t)n * cols * sizeof *x),
          *y = malloc((size_t)n * rows * sizeof *y);
    kiln_pool *pool = kiln_pool_new(n_threads);
    double best = 0, t_end = kiln_now() + seconds;
    if (w && x && y && pool) {
        kern_init();
        for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = (float)((i * 2654435761u) % 1000) * 1e-3f - 0.5f;
        for (size_t i = 0; i < (size_t)n * cols; i++) x[i] = (float)(i % 17) * 0.1f;
        kiln_mat m = {.data = w, .dt = KILN_DT_F32, .rows = rows, .cols = cols};
        for (int rep = 0; rep < 1000 && (rep < 1 || kiln_now() < t_end); rep++) {
            double t0 = kiln_now();
            kern_matmul(pool, NULL, y, x, n, &m, NULL); /* f32 weights: no scratch */
            double dt = kiln_now() - t0;
            double g = 2.0 * rows * cols * n / dt / 1e9;
            if (dt > 0 && g > best) best = g;
        }
    }
    free(w);
    free(x);
    free(y);
    if (pool) kiln_pool_free(pool);
    return best;
}
