/* test_kernels.c — every SIMD matmul against the scalar reference, quantisation against llama.cpp's
 * arithmetic, the ISA switch, and the thread pool. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"
#include "runtime/cpu.h"
#include "runtime/threadpool.h"

static uint64_t rng = 88172645463325252ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1 << 23))) - 1.0f;
}

static void *make_weights(kiln_dtype dt, int rows, int cols, float *f32_out) {
    size_t rb = kern_row_bytes(dt, cols);
    char *w = malloc(rb * rows);
    float *tmp = malloc(sizeof(float) * cols);
    for (int r = 0; r < rows; r++) {
        for (int c = 0; c < cols; c++) tmp[c] = frand() * (1.0f + (float)(r % 3));
        kern_row_from_f32(w + rb * r, dt, tmp, cols);
        if (f32_out) kern_row_to_f32(f32_out + (size_t)r * cols, w + rb * r, dt, cols);
    }
    free(tmp);
    return w;
}

static const char *isas[] = {"avx2", "avx512"};

/* Runs one shape through every supported SIMD ISA and thread count and compares with scalar.
 * Tolerance: relative to sum |w||x| (the size of the rounding in any summation order). */
static int compare_shape(kiln_dtype dt, int rows, int cols, int n, kiln_pool **pools, int with_bias) {
    float *wf = malloc(sizeof(float) * rows * cols);
    void *w = make_weights(dt, rows, cols, wf);
    float *x = malloc(sizeof(float) * n * cols), *bias = malloc(sizeof(float) * rows);
    for (int i = 0; i < n * cols; i++) x[i] = frand();
    for (int i = 0; i < rows; i++) bias[i] = frand();
    float *ref = malloc(sizeof(float) * n * rows), *got = malloc(sizeof(float) * n * rows);
    kiln_mat m = {w, dt, rows, cols};
    kern_set_isa("scalar");
    kern_matmul(pools[0], ref, x, n, &m, with_bias ? bias : NULL);
    int bad = 0;
    for (size_t s = 0; s < sizeof isas / sizeof *isas; s++) {
        if (kern_set_isa(isas[s]) != 0) continue;
        for (int p = 0; p < 3; p++) {
            for (int i = 0; i < n * rows; i++) got[i] = NAN;
            kern_matmul(pools[p], got, x, n, &m, with_bias ? bias : NULL);
            for (int t = 0; t < n && bad < 3; t++)
                for (int r = 0; r < rows && bad < 3; r++) {
                    double mag = 1e-6;
                    for (int c = 0; c < cols; c++) mag += fabs(wf[(size_t)r * cols + c] * x[(size_t)t * cols + c]);
                    float a = ref[(size_t)t * rows + r], b = got[(size_t)t * rows + r];
                    if (!(fabs(a - b) <= 2e-5 * mag + 1e-6)) {
                        CHECK(0, "%s dt=%s rows=%d cols=%d n=%d threads=%d: y[%d][%d] scalar %g simd %g", isas[s],
                              kiln_dtype_name(dt), rows, cols, n, p + 1, t, r, a, b);
                        bad++;
                    }
                }
        }
    }
    kern_set_isa(kern_best_isa());
    free(wf), free(w), free(x), free(bias), free(ref), free(got);
    return bad;
}

static kiln_pool *pools[3];

TEST(simd_matmul_matches_scalar_float) {
    const int rows[] = {1, 3, 16, 37}, cols[] = {8, 17, 64, 172};
    for (int dt = KILN_DT_F32; dt <= KILN_DT_BF16; dt++)
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                for (int n = 1; n <= 17; n += (n < 6 ? 1 : 5))
                    if (compare_shape(dt, rows[a], cols[b], n, pools, (a + b) & 1)) return;
}

TEST(simd_matmul_matches_scalar_quant) {
    const int rows[] = {1, 3, 16, 37}, cols[] = {32, 96, 320};
    for (int dt = KILN_DT_Q8_0; dt <= KILN_DT_Q4_0; dt++)
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 3; b++)
                for (int n = 1; n <= 17; n += (n < 6 ? 1 : 5))
                    if (compare_shape(dt, rows[a], cols[b], n, pools, (a + b) & 1)) return;
}

TEST(simd_matmul_large_shapes) {
    for (int dt = 0; dt < KILN_DT_COUNT; dt++) {
        if (compare_shape(dt, 131, 2048, 1, pools, 0)) return;
        if (compare_shape(dt, 67, 1024, 13, pools, 1)) return;
    }
}

/* llama.cpp's block layout and rounding, on a block whose answer is worked out by hand. */
TEST(quant_blocks_match_llamacpp) {
    float x[32];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16); /* amax 16 at x[0] = -16 */
    block_q8_0 q8;
    quantize_row_q8_0_ref(x, &q8, 32);
    CHECK(kern_f16_to_f32(q8.d) == kern_f16_to_f32(kern_f32_to_f16(16.0f / 127.0f)), "q8 d=%g", kern_f16_to_f32(q8.d));
    CHECK(q8.qs[0] == -127 && q8.qs[16] == 0 && q8.qs[31] == 119, "q8 qs %d %d %d", q8.qs[0], q8.qs[16], q8.qs[31]);
    block_q4_0 q4;
    quantize_row_q4_0_ref(x, &q4, 32);
    CHECK(kern_f16_to_f32(q4.d) == 2.0f, "q4 d=%g (max/-8 keeps the sign of the largest value)", kern_f16_to_f32(q4.d));
    CHECK(q4.qs[0] == 0x80, "q4 qs[0]=%#x (x[0]=-16 -> 0, x[16]=0 -> 8)", q4.qs[0]);
    CHECK(q4.qs[15] == 0xf8, "q4 qs[15]=%#x (x[15]=-1 -> 8, x[31]=15 -> 16 clamped to 15)", q4.qs[15]);
    unsigned char raw[34];
    memcpy(raw, &q8, sizeof raw);
    CHECK(raw[2] == (unsigned char)-127, "q8 layout: 2-byte f16 scale, then the int8 values");
}

TEST(quant_round_trip_error_bounds) {
    enum { K = 4096 };
    float *x = malloc(sizeof(float) * K), *y = malloc(sizeof(float) * K);
    for (int i = 0; i < K; i++) x[i] = frand() * (i % 7 == 0 ? 5.0f : 1.0f);
    block_q8_0 *q8 = malloc(sizeof(block_q8_0) * K / 32);
    block_q4_0 *q4 = malloc(sizeof(block_q4_0) * K / 32);
    quantize_row_q8_0_ref(x, q8, K);
    dequantize_row_q8_0(q8, y, K);
    for (int b = 0; b < K / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        for (int j = 0; j < 32; j++) {
            float e = fabsf(x[b * 32 + j] - y[b * 32 + j]);
            /* half a step, plus the f16 rounding of the scale times 127 steps */
            if (!(e <= amax / 127 * 0.5f + amax * 1e-3f)) {
                CHECK(0, "q8 block %d value %d error %g (amax %g)", b, j, e, amax);
                goto out;
            }
        }
    }
    quantize_row_q4_0_ref(x, q4, K);
    dequantize_row_q4_0(q4, y, K);
    for (int b = 0; b < K / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b * 32 + j]));
        for (int j = 0; j < 32; j++) {
            float e = fabsf(x[b * 32 + j] - y[b * 32 + j]);
            /* steps of amax/8; the positive end is clamped to +7 steps, so up to one whole step */
            if (!(e <= amax / 8 * 1.01f)) {
                CHECK(0, "q4 block %d value %d error %g (amax %g)", b, j, e, amax);
                goto out;
            }
        }
    }
out:
    free(x), free(y), free(q8), free(q4);
}

/* The int8 path approximates the f32 product of the dequantised weights: a wrong sign trick, nibble
 * order or correction term would be far off. */
TEST(quant_matmul_close_to_dequantised_f32) {
    enum { R = 8, K = 256 };
    for (int dt = KILN_DT_Q8_0; dt <= KILN_DT_Q4_0; dt++) {
        float wf[R * K], x[K], y[R];
        void *w = make_weights(dt, R, K, wf);
        for (int i = 0; i < K; i++) x[i] = frand();
        kiln_mat m = {w, dt, R, K};
        kern_matmul(pools[1], y, x, 1, &m, NULL);
        for (int r = 0; r < R; r++) {
            double ref = 0, mag = 0;
            for (int k = 0; k < K; k++) ref += wf[r * K + k] * x[k], mag += fabs(wf[r * K + k] * x[k]);
            CHECK(fabs(y[r] - ref) < 0.02 * mag, "%s row %d: %g vs f32 %g", kiln_dtype_name(dt), r, y[r], ref);
        }
        free(w);
    }
}

/* Load-time conversion over the pool equals converting row by row on one thread. */
TEST(convert_mat_matches_rowwise) {
    enum { R = 37, K = 96 };
    float src[R * K];
    for (int i = 0; i < R * K; i++) src[i] = frand() * 3;
    for (int dt = 0; dt < KILN_DT_COUNT; dt++) {
        size_t rb = kern_row_bytes(dt, K);
        char *a = malloc(rb * R), *b = malloc(rb * R);
        for (int r = 0; r < R; r++) kern_row_from_f32(a + rb * r, dt, src + r * K, K);
        CHECK(kern_convert_mat(pools[2], b, dt, src, KILN_DT_F32, R, K) == 0, "convert to %s", kiln_dtype_name(dt));
        CHECK(memcmp(a, b, rb * R) == 0, "threaded conversion to %s differs", kiln_dtype_name(dt));
        free(a), free(b);
    }
}

TEST(isa_selection) {
    const kiln_cpu *c = kiln_cpu_features();
    const char *env = getenv("KILN_ISA");
    /* main() set KILN_ISA=avx2 before the first kernel call: honoured where the CPU has AVX2. */
    if (env && strcmp(env, "avx2") == 0 && c->avx2 && c->fma && c->f16c)
        CHECK(strcmp(kern_isa_name(), "avx2") == 0, "KILN_ISA=avx2 gave %s", kern_isa_name());
    CHECK(kern_set_isa("bogus") == -1, "unknown ISA accepted");
    CHECK(kern_set_isa("scalar") == 0 && strcmp(kern_isa_name(), "scalar") == 0, "scalar not selectable");
    if (c->avx512f && c->avx512vnni) CHECK(strcmp(kern_best_isa(), "avx512") == 0, "best=%s", kern_best_isa());
    kern_set_isa(kern_best_isa());
}

struct count_arg {
    int hits[4][16]; /* one cache line per thread */
};
static void count_fn(void *a, int ith, int nth) {
    struct count_arg *c = a;
    c->hits[ith][0]++;
    c->hits[ith][1] = nth;
}

TEST(thread_pool_runs_every_thread_every_time) {
    for (int n = 1; n <= 3; n++) {
        kiln_pool *p = kiln_pool_new(n);
        REQUIRE(p && kiln_pool_size(p) == n, "pool of %d", n);
        struct count_arg c = {0};
        for (int it = 0; it < 2000; it++) kiln_pool_run(p, count_fn, &c);
        for (int i = 0; i < n; i++) CHECK(c.hits[i][0] == 2000 && c.hits[i][1] == n, "thread %d ran %d times", i, c.hits[i][0]);
        kiln_pool_free(p);
    }
    CHECK(kiln_physical_cores() >= 1, "cores");
}

int main(void) {
    setenv("KILN_ISA", "avx2", 1);
    RUN(isa_selection);
    for (int i = 0; i < 3; i++) pools[i] = kiln_pool_new(i + 1);
    RUN(quant_blocks_match_llamacpp);
    RUN(quant_round_trip_error_bounds);
    RUN(quant_matmul_close_to_dequantised_f32);
    RUN(convert_mat_matches_rowwise);
    RUN(simd_matmul_matches_scalar_float);
    RUN(simd_matmul_matches_scalar_quant);
    RUN(simd_matmul_large_shapes);
    RUN(thread_pool_runs_every_thread_every_time);
    for (int i = 0; i < 3; i++) kiln_pool_free(pools[i]);
    return check_done();
}
