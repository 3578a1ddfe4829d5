/* matmul_bench.c — the matmuls of one Llama-3.2-1B forward pass, timed, plus a read-bandwidth probe.
 *
 * pp = all 16 layers' projections + lm_head for n prompt tokens in one batched GEMM each; tg = the same
 * for one token (GEMV), i.e. only the matmuls of decode: attention, norms and rope are NOT included (they
 * are small next to the weights at these lengths). Random weights in the chosen format, allocated as the
 * loader does (huge pages advised) unless pages=4k. tg runs in rounds, each the bandwidth probe `kiln
 * info` uses (kiln_measure_read_bw) followed by n_gen decode passes, so each round's share of the probed
 * bandwidth compares figures taken seconds apart; the JSON line gives medians over rounds and every
 * round's share. On a shared machine compare builds by alternating runs (A B A B ...), never by
 * absolute figures from different runs.
 *
 *   make build/bench/matmul_bench
 *   build/bench/matmul_bench f16 2 [n_prompt=512] [n_gen=32] [pp_reps=1] [rounds=5] [pages=huge|4k]
 *       (pp: best of pp_reps passes, n_prompt 0 skips it; small batches, e.g. 8 tokens, need ~20 to settle)
 *   build/bench/matmul_bench bw 2        (read bandwidth only)
 *   build/bench/matmul_bench l2 q6_k [rows=512] [cols=2048] [passes=2000] [plain]   (one thread, one small
 *       matrix decoded over and over: the kernel's rate from L2, where the memory rate does not hide it;
 *       plain: rows one after another, not the loader's panels, i.e. the row kernel)
 *   build/bench/matmul_bench peak 2      (arithmetic peak: vdpbf16ps and f32 FMA GFLOP/s from registers, the
 *       prefill roofline as bw is decode's, and the pp tok/s it bounds on this shape: the layers' matmuls
 *       per prompt token, lm_head only for the last)
 * pp is the engine's default arithmetic (kern_scratch.bf16_dot: bf16 dot products for F16 / BF16 weights);
 * pp_exact_tok_s the exact f32 path (--exact), measured alternately in the same run (float weights). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "kiln.h"
#include "runtime/hugepage.h"

#include "kernels/kernels.h"
#include "runtime/cpu.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double now(void) { return clock_s(CLOCK_MONOTONIC); }

enum { H = 2048, KV = 512, FF = 8192, VOCAB = 128256, LAYERS = 16, MAX_ROUNDS = 64 };
static const int shapes[7][2] = {{H, H}, {KV, H}, {KV, H}, {H, H}, {FF, H}, {FF, H}, {H, FF}};

/* Weights as the loader allocates them (huge pages advised, runtime/hugepage.h), or on 4 KiB pages to
 * show what that costs. */
static void *alloc_weights(size_t n, bool huge) {
    char *w = malloc(n ? n : 1);
    if (w && huge) kiln_advise_hugepages(w, n);
#ifdef MADV_NOHUGEPAGE
    if (w && !huge) madvise((void *)(((uintptr_t)w + 4095) & ~(uintptr_t)4095), n > 8192 ? n - 8192 : 0, MADV_NOHUGEPAGE);
#endif
    return w;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(const double *v, int n) { /* n <= MAX_ROUNDS */
    double s[MAX_ROUNDS];
    memcpy(s, v, sizeof *v * (size_t)n);
    qsort(s, (size_t)n, sizeof *s, cmp_double);
    return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* The read-bandwidth probe kiln info uses (512 MiB, best pass within 0.3 s), in GB/s. */
static double probe_gb_s(int threads) { return kiln_measure_read_bw(512u << 20, threads, 0.3) / 1e9; }

/* A rows x cols matrix of random values in the loader's layout unless plain (huge pages advised unless !huge). */
static kiln_mat random_mat(kiln_dtype dt, int rows, int cols, int seed, bool huge, bool plain, float *row) {
    const size_t rb = kern_row_bytes(dt, cols);
    char *w = alloc_weights(rb * rows, huge), *one = malloc(rb);
    if (!w || !one) {
        free(w), free(one);
        return (kiln_mat){0};
    }
    for (int c = 0; c < cols; c++) row[c] = (float)((c * 7919 + seed) % 255 - 127) / 512.0f;
    kern_row_from_f32(one, dt, row, cols);
    /* the loader's layout for this format on the active ISA (kern_weight_layout) */
    const bool q = !plain && kern_weight_layout(dt) == KERN_LAYOUT_PANEL16;
    kiln_mat m = {w, dt, rows, cols, q ? KERN_LAYOUT_PANEL16 : KERN_LAYOUT_PLAIN};
    for (int r = 0; r < rows; r++) {
        if (!q) {
            memcpy(w + rb * r, one, rb);
            continue;
        }
        const size_t bsz = kern_formats[dt].block_bytes;
        for (int b = 0; b < cols / kern_formats[dt].block_values; b++) kern_qblock_put(&m, r, b, one + b * bsz);
    }
    free(one);
    return m;
}

/* One thread decoding one small matrix `passes` times: GB/s of weights read (from L2 once warm). */
static int l2_rate(kiln_dtype dt, int rows, int cols, int passes, bool plain) {
    kiln_pool *pool = kiln_pool_new(1);
    kern_scratch ks = {0};
    float *row = malloc(sizeof(float) * (size_t)cols), *x = malloc(sizeof(float) * (size_t)cols),
          *y = malloc(sizeof(float) * (size_t)rows);
    if (!pool || !row || !x || !y || kern_scratch_reserve(&ks, 1, 1, cols)) return fprintf(stderr, "out of memory\n"), 1;
    const kiln_mat m = random_mat(dt, rows, cols, 1, true, plain, row);
    if (!m.data) return fprintf(stderr, "out of memory\n"), 1;
    for (int c = 0; c < cols; c++) x[c] = (float)((c * 31) % 17) / 17.0f - 0.5f;
    for (int i = 0; i < passes / 10; i++) kern_matmul(pool, &ks, y, x, 1, &m, NULL);
    const double t = now();
    for (int i = 0; i < passes; i++) kern_matmul(pool, &ks, y, x, 1, &m, NULL);
    const double s = now() - t, bytes = (double)kern_row_bytes(dt, cols) * rows;
    printf("{\"isa\":\"%s\",\"dtype\":\"%s\",\"rows\":%d,\"cols\":%d,\"layout\":\"%s\",\"kib\":%.0f,\"l2_gb_s\":%.2f,\"us_per_pass\":%.2f}\n",
           kern_isa_name(), kiln_dtype_name(dt), rows, cols, plain ? "plain" : "loader", bytes / 1024, bytes * passes / s / 1e9, s / passes * 1e6);
    free((void *)m.data), free(row), free(x), free(y);
    kern_scratch_free(&ks);
    kiln_pool_free(pool);
    return 0;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The arithmetic a prefill GEMM is made of, from registers only: CHAINS independent accumulators (more
 * than latency x issue width on Zen 4 and Intel cores) so the unit's throughput, not a dependency, limits. */
enum { CHAINS = 12 };
struct peak_job {
    long iters;
    bool bf16;
    float out[64];
};
__attribute__((target("avx512f,avx512bf16"))) static void peak_slice(void *arg, int ith, int nth) {
    (void)nth;
    struct peak_job *j = arg;
    __m512 a[CHAINS];
    for (int c = 0; c < CHAINS; c++) a[c] = _mm512_set1_ps((float)c * 1e-3f);
    const __m512 x = _mm512_set1_ps(0.999f), y = _mm512_set1_ps(1e-6f);
    const __m512bh p = (__m512bh)_mm512_set1_epi16(0x3f80), q = (__m512bh)_mm512_set1_epi16(0x3380); /* 1, 2^-24 */
    for (long n = 0; n < j->iters; n++)
#pragma GCC unroll 12
        for (int c = 0; c < CHAINS; c++) a[c] = j->bf16 ? _mm512_dpbf16_ps(a[c], p, q) : _mm512_fmadd_ps(a[c], x, y);
    __m512 s = a[0];
    for (int c = 1; c < CHAINS; c++) s = _mm512_add_ps(s, a[c]);
    j->out[ith & 63] = _mm512_reduce_add_ps(s);
}

/* Best of 5 passes after a warm-up one (2^20 x CHAINS ops a thread: ~4 ms at one a cycle), GFLOP/s over all
 * threads (a vdpbf16ps: 32 pairs, 64 FLOP; an FMA: 32). */
static double peak_gflops(kiln_pool *pool, int threads, bool bf16) {
    struct peak_job j = {.iters = 1 << 20, .bf16 = bf16};
    double best = 0;
    for (int pass = 0; pass < 6; pass++) {
        const double t = now();
        kiln_pool_run(pool, peak_slice, &j);
        const double g = (double)j.iters * CHAINS * (bf16 ? 64 : 32) * threads / (now() - t) / 1e9;
        if (pass > 0 && g > best) best = g; /* pass 0 warms the clocks */
    }
    return best;
}

static int peak(int threads) {
    const kiln_cpu *f = kiln_cpu_features();
    if (!f->avx512f || !f->avx512bf16) return fprintf(stderr, "peak needs AVX-512 BF16\n"), 1;
    kiln_pool *pool = kiln_pool_new(threads);
    if (!pool) return fprintf(stderr, "out of memory\n"), 1;
    const double bf = peak_gflops(pool, threads, true), fma = peak_gflops(pool, threads, false);
    double flop = 0; /* per prompt token */
    for (int i = 0; i < 7; i++) flop += 2.0 * LAYERS * shapes[i][0] * shapes[i][1];
    printf("{\"threads\":%d,\"bf16_dot_gflops\":%.1f,\"f32_fma_gflops\":%.1f,\"gflop_per_prompt_token\":%.3f,"
           "\"pp_bound_bf16_dot_tok_s\":%.1f,\"pp_bound_f32_fma_tok_s\":%.1f}\n",
           threads, bf, fma, flop / 1e9, bf * 1e9 / flop, fma * 1e9 / flop);
    kiln_pool_free(pool);
    return 0;
}
#else
static int peak(int threads) { return (void)threads, fprintf(stderr, "peak needs x86-64 AVX-512\n"), 1; }
#endif

int main(int argc, char **argv) {
    kiln_dtype dt = KILN_DT_Q8_0;
    if (argc > 1 && strcmp(argv[1], "bw") == 0) {
        printf("{\"read_bw_gb_s\":%.2f}\n", probe_gb_s(argc > 2 ? atoi(argv[2]) : 2));
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "peak") == 0) return peak(argc > 2 ? atoi(argv[2]) : 2);
    if (argc > 2 && strcmp(argv[1], "l2") == 0) {
        if (kiln_dtype_parse(argv[2], &dt) != 0) return fprintf(stderr, "unknown dtype %s\n", argv[2]), 1;
        kern_init();
        return l2_rate(dt, argc > 3 ? atoi(argv[3]) : 512, argc > 4 ? atoi(argv[4]) : 2048, argc > 5 ? atoi(argv[5]) : 2000,
                       argc > 6 && strcmp(argv[6], "plain") == 0);
    }
    if (argc > 1 && kiln_dtype_parse(argv[1], &dt) != 0) return fprintf(stderr, "unknown dtype %s\n", argv[1]), 1;
    int threads = argc > 2 ? atoi(argv[2]) : 2, np = argc > 3 ? atoi(argv[3]) : 512, ng = argc > 4 ? atoi(argv[4]) : 32;
    int pp_reps = argc > 5 ? atoi(argv[5]) : 1, rounds = argc > 6 ? atoi(argv[6]) : 5;
    const bool huge = !(argc > 7 && strcmp(argv[7], "4k") == 0);
    if (argc > 7 && huge && strcmp(argv[7], "huge") != 0) return fprintf(stderr, "pages must be huge or 4k\n"), 1;
    if (threads < 1 || np < 0 || ng < 1 || rounds < 1 || rounds > MAX_ROUNDS)
        return fprintf(stderr, "need threads >= 1, n_prompt >= 0, n_gen >= 1, 1 <= rounds <= %d\n", MAX_ROUNDS), 1;
    kern_init();
    kiln_pool *pool = kiln_pool_new(threads);
    kern_scratch ks = {.bf16_dot = true}; /* the engine's default arithmetic (kiln_model_opts.exact = false) */
    if (!pool || kern_scratch_reserve(&ks, threads, np > 1 ? np : 1, FF)) return fprintf(stderr, "out of memory\n"), 1;
    /* One weight set per shape shared by all layers would sit in cache: allocate every layer. */
    kiln_mat mats[LAYERS * 7 + 1];
    size_t bytes = 0;
    float *row = malloc(sizeof(float) * FF);
    for (int i = 0; i < LAYERS * 7 + 1; i++) {
        int rows = i < LAYERS * 7 ? shapes[i % 7][0] : VOCAB, cols = i < LAYERS * 7 ? shapes[i % 7][1] : H;
        mats[i] = random_mat(dt, rows, cols, i, huge, false, row);
        if (!mats[i].data) return fprintf(stderr, "out of memory\n"), 1;
        bytes += kern_row_bytes(dt, cols) * rows;
    }
    const int nx = np > 1 ? np : 1;
    float *x = malloc(sizeof(float) * (size_t)nx * FF), *y = malloc(sizeof(float) * (size_t)nx * VOCAB);
    for (size_t i = 0; i < (size_t)nx * FF; i++) x[i] = (float)((i * 31) % 17) / 17.0f - 0.5f;
    /* prefill: every matmul over all np tokens (lm_head only for the last token, as an engine does), in
     * the default arithmetic and (float weights) the exact one, alternating */
    const bool float_w = !kern_is_quantised(dt);
    double pp = 1e30, pp_exact = 1e30, t;
    for (int r = 0; np > 0 && r < (pp_reps > 1 ? pp_reps : 1); r++)
        for (int exact = 0; exact <= float_w; exact++) {
            ks.bf16_dot = !exact;
            t = now();
            for (int i = 0; i < LAYERS * 7; i++) kern_matmul(pool, &ks, y, x, np, &mats[i], NULL);
            kern_matmul(pool, &ks, y, x, 1, &mats[LAYERS * 7], NULL);
            double d = now() - t, *best = exact ? &pp_exact : &pp;
            if (d < *best) *best = d;
        }
    ks.bf16_dot = true;
    /* decode: rounds of (probe, ng single-token passes over every matmul), so each round's share of the
     * bandwidth compares two figures taken seconds apart on a machine other work shares; medians over
     * rounds. Only the matmuls are timed. */
    double tok_s[MAX_ROUNDS], gb_s[MAX_ROUNDS], bw[MAX_ROUNDS], share[MAX_ROUNDS], cpu_gb_s[MAX_ROUNDS];
    for (int r = 0; r < rounds; r++) {
        bw[r] = probe_gb_s(threads);
        t = now();
        const double c = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        for (int g = 0; g < ng; g++)
            for (int i = 0; i < LAYERS * 7 + 1; i++) kern_matmul(pool, &ks, y, x, 1, &mats[i], NULL);
        const double tg = (now() - t) / ng;
        tok_s[r] = 1 / tg, gb_s[r] = bytes / tg / 1e9, share[r] = 100 * gb_s[r] / bw[r];
        /* bytes per CPU-second of all threads (pool spin included): with other work on the cores this
         * one moves far less than the wall-clock figures, so kernel changes show through it */
        cpu_gb_s[r] = bytes * ng / (clock_s(CLOCK_PROCESS_CPUTIME_ID) - c) / 1e9;
    }
    printf("{\"isa\":\"%s\",\"dtype\":\"%s\",\"threads\":%d,\"pages\":\"%s\",\"weights_mib\":%.1f,\"pp%d_tok_s\":%.2f,\"pp_exact_tok_s\":%.2f,"
           "\"rounds\":%d,\"tg_tok_s\":%.2f,\"tg_gb_s\":%.2f,\"tg_gb_per_cpu_s\":%.2f,\"read_bw_gb_s\":%.2f,\"tg_pct_of_bw\":%.1f,"
           "\"tg_pct_rounds\":[",
           kern_isa_name(), kiln_dtype_name(dt), threads, huge ? "huge" : "4k", bytes / 1048576.0, np,
           np > 0 ? np / pp : 0.0, np > 0 && float_w ? np / pp_exact : 0.0, rounds, median(tok_s, rounds), median(gb_s, rounds), median(cpu_gb_s, rounds), median(bw, rounds),
           median(share, rounds));
    for (int r = 0; r < rounds; r++) printf("%s%.1f", r ? "," : "", share[r]);
    printf("]}\n");
    for (int i = 0; i < LAYERS * 7 + 1; i++) free((void *)mats[i].data);
    free(row), free(x), free(y);
    kern_scratch_free(&ks);
    kiln_pool_free(pool);
    return 0;
}
