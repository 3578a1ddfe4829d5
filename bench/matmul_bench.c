/* matmul_bench.c — the matmuls of one Llama-3.2-1B forward pass, timed, plus a read-bandwidth probe.
 *
 * Stand-in until `kiln bench` and the engine exist: pp = all 16 layers' projections + lm_head for
 * n prompt tokens in one batched GEMM each; tg = the same for one token (GEMV). Attention, norms and
 * rope are NOT included (they are small next to the weights at these lengths). Random weights in the
 * chosen format. Prints JSON lines.
 *
 *   cc -O2 -D_GNU_SOURCE -Iinclude -Isrc bench/matmul_bench.c build/libkiln.a -lm -pthread -o /tmp/matmul_bench
 *   /tmp/matmul_bench q8_0 2 [n_prompt=512] [n_gen=32] [pp_reps=1]   (pp: best of pp_reps passes; small
 *                                                            batches, e.g. 8 tokens, need ~20 to settle)
 *   /tmp/matmul_bench bw 2        (read bandwidth only) */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/kernels.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

enum { H = 2048, KV = 512, FF = 8192, VOCAB = 128256, LAYERS = 16 };
static const int shapes[7][2] = {{H, H}, {KV, H}, {KV, H}, {H, H}, {FF, H}, {FF, H}, {H, FF}};

struct bw_arg {
    const float *buf;
    size_t n;
    double sums[64];
};
/* Four independent 16-byte XOR chains: the loop is bound by memory, not by an add latency chain (a
 * scalar float sum runs at ~20 GB/s per core here, below what the memory delivers, and made the
 * roofline too low: kiln's decode measured "107%" of it). */
typedef uint64_t v2u64 __attribute__((vector_size(16)));
static void bw_part(void *a, int ith, int nth) {
    struct bw_arg *b = a;
    size_t lo = b->n * ith / nth / 16 * 16, hi = b->n * (ith + 1) / nth / 16 * 16;
    v2u64 s0 = {0}, s1 = {0}, s2 = {0}, s3 = {0};
    for (size_t i = lo; i < hi; i += 16) { /* 16 floats = 64 bytes per step */
        const v2u64 *v = (const v2u64 *)(const void *)(b->buf + i);
        s0 ^= v[0], s1 ^= v[1], s2 ^= v[2], s3 ^= v[3];
    }
    v2u64 s = s0 ^ s1 ^ s2 ^ s3;
    b->sums[ith * 8] = (double)(s[0] ^ s[1]);
}

/* Read bandwidth (GB/s) with nth threads over a 1 GiB buffer: best of 5. */
static double read_bandwidth(kiln_pool *pool) {
    struct bw_arg b = {.n = (1u << 30) / 4};
    float *buf = malloc(b.n * 4);
    memset(buf, 1, b.n * 4);
    b.buf = buf;
    double best = 0;
    for (int r = 0; r < 5; r++) {
        double t = now();
        kiln_pool_run(pool, bw_part, &b);
        t = now() - t;
        if ((1u << 30) / t / 1e9 > best) best = (1u << 30) / t / 1e9;
    }
    free(buf);
    return best;
}

int main(int argc, char **argv) {
    kiln_dtype dt = KILN_DT_Q8_0;
    if (argc > 1 && strcmp(argv[1], "bw") == 0) {
        kiln_pool *pool = kiln_pool_new(argc > 2 ? atoi(argv[2]) : 2);
        printf("{\"read_bw_gb_s\":%.2f}\n", read_bandwidth(pool));
        kiln_pool_free(pool);
        return 0;
    }
    if (argc > 1 && kiln_dtype_parse(argv[1], &dt) != 0) return fprintf(stderr, "unknown dtype %s\n", argv[1]), 1;
    int threads = argc > 2 ? atoi(argv[2]) : 2, np = argc > 3 ? atoi(argv[3]) : 512, ng = argc > 4 ? atoi(argv[4]) : 32;
    int pp_reps = argc > 5 ? atoi(argv[5]) : 1;
    kern_init();
    kiln_pool *pool = kiln_pool_new(threads);
    kern_scratch ks = {0};
    if (!pool || kern_scratch_reserve(&ks, threads, np, FF)) return fprintf(stderr, "out of memory\n"), 1;
    /* One weight set per shape shared by all layers would sit in cache: allocate every layer. */
    kiln_mat mats[LAYERS * 7 + 1];
    size_t bytes = 0;
    float *row = malloc(sizeof(float) * FF);
    for (int i = 0; i < LAYERS * 7 + 1; i++) {
        int rows = i < LAYERS * 7 ? shapes[i % 7][0] : VOCAB, cols = i < LAYERS * 7 ? shapes[i % 7][1] : H;
        size_t rb = kern_row_bytes(dt, cols);
        char *w = malloc(rb * rows), *one = malloc(rb);
        for (int c = 0; c < cols; c++) row[c] = (float)((c * 7919 + i) % 255 - 127) / 512.0f;
        kern_row_from_f32(one, dt, row, cols);
        /* quantised matrices get the loader's panel layout (kernels.h) */
        bool q = kern_is_quantised(dt);
        mats[i] = (kiln_mat){w, dt, rows, cols, q ? KERN_LAYOUT_PANEL16 : KERN_LAYOUT_PLAIN};
        for (int r = 0; r < rows; r++) {
            if (!q) {
                memcpy(w + rb * r, one, rb);
                continue;
            }
            size_t bsz = kern_formats[dt].block_bytes;
            for (int b = 0; b < cols / 32; b++) kern_qblock_put(&mats[i], r, b, one + b * bsz);
        }
        free(one);
        bytes += rb * rows;
    }
    float *x = malloc(sizeof(float) * (size_t)np * FF), *y = malloc(sizeof(float) * (size_t)np * VOCAB);
    for (size_t i = 0; i < (size_t)np * FF; i++) x[i] = (float)((i * 31) % 17) / 17.0f - 0.5f;
    double bw = read_bandwidth(pool);
    /* prefill: every matmul over all np tokens (lm_head only for the last token, as an engine does) */
    double pp = 1e30, t;
    for (int r = 0; r < (pp_reps > 1 ? pp_reps : 1); r++) {
        t = now();
        for (int i = 0; i < LAYERS * 7; i++) kern_matmul(pool, &ks, y, x, np, &mats[i], NULL);
        kern_matmul(pool, &ks, y, x, 1, &mats[LAYERS * 7], NULL);
        double d = now() - t;
        if (d < pp) pp = d;
    }
    t = now();
    for (int g = 0; g < ng; g++)
        for (int i = 0; i < LAYERS * 7 + 1; i++) kern_matmul(pool, &ks, y, x, 1, &mats[i], NULL);
    double tg = (now() - t) / ng;
    printf("{\"isa\":\"%s\",\"dtype\":\"%s\",\"threads\":%d,\"weights_mib\":%.1f,\"pp%d_tok_s\":%.2f,\"tg_tok_s\":%.2f,"
           "\"tg_gb_s\":%.2f,\"read_bw_gb_s\":%.2f,\"tg_pct_of_bw\":%.1f}\n",
           kern_isa_name(), kiln_dtype_name(dt), threads, bytes / 1048576.0, np, np / pp, 1 / tg, bytes / tg / 1e9, bw,
           100 * bytes / tg / 1e9 / bw);
    for (int i = 0; i < LAYERS * 7 + 1; i++) free((void *)mats[i].data);
    free(row), free(x), free(y);
    kern_scratch_free(&ks);
    kiln_pool_free(pool);
    return 0;
}
