/* test_kernels.c — every SIMD matmul against the scalar reference, quantisation against llama.cpp's
 * arithmetic, the ISA switch, and the thread pool. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* A copy of plain quantised rows in the panel layout, placed by the layout's definition (kernels.h)
 * written out independently of kern_qblock_put: per 16-row panel and block, the 16 f16 scales, then
 * 4-byte groups of the 16 rows' quant bytes; rows after the last whole panel plain. */
static void *panel_copy(const void *plain, kiln_dtype dt, int rows, int cols) {
    size_t rb = kern_row_bytes(dt, cols), bsz = rb / (size_t)(cols / 32), pbb = 16 * bsz;
    char *out = malloc(rb * rows);
    const char *in = plain;
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < cols / 32; b++) {
            const char *blk = in + r * rb + b * bsz;
            if (r >= rows / 16 * 16) {
                memcpy(out + r * rb + b * bsz, blk, bsz);
                continue;
            }
            char *pb = out + (size_t)(r / 16) * 16 * rb + (size_t)b * pbb;
            memcpy(pb + 2 * (r % 16), blk, 2);
            for (size_t g = 0; g < (bsz - 2) / 4; g++) memcpy(pb + 32 + 64 * g + 4 * (r % 16), blk + 2 + 4 * g, 4);
        }
    return out;
}

static const char *isas[] = {"avx2", "avx512"};
static kiln_pool *pools[3];
static kern_scratch ks; /* kern_matmul's scratch, reserved in main for every shape below */

/* Runs one shape through every supported SIMD ISA and thread count and compares with scalar.
 * Tolerance: relative to sum |w||x| (the size of the rounding in any summation order). */
static int compare_shape_in(kiln_dtype dt, int rows, int cols, int n, kiln_pool **pools, int with_bias, kern_layout lay) {
    float *wf = malloc(sizeof(float) * rows * cols);
    void *w = make_weights(dt, rows, cols, wf), *wi = lay == KERN_LAYOUT_PANEL16 ? panel_copy(w, dt, rows, cols) : NULL;
    float *x = malloc(sizeof(float) * n * cols), *bias = malloc(sizeof(float) * rows);
    for (int i = 0; i < n * cols; i++) x[i] = frand();
    for (int i = 0; i < rows; i++) bias[i] = frand();
    float *ref = malloc(sizeof(float) * n * rows), *got = malloc(sizeof(float) * n * rows);
    kiln_mat m = {w, dt, rows, cols, KERN_LAYOUT_PLAIN};
    kern_set_isa("scalar");
    kern_matmul(pools[0], &ks, ref, x, n, &m, with_bias ? bias : NULL);
    int bad = 0;
    if (wi) { /* the scalar reference reads the panel copy to the same bits */
        m = (kiln_mat){wi, dt, rows, cols, lay};
        kern_matmul(pools[1], &ks, got, x, n, &m, with_bias ? bias : NULL);
        if (memcmp(ref, got, sizeof(float) * n * rows) != 0) {
            CHECK(0, "scalar dt=%s rows=%d cols=%d layout=%d: panel result differs", kiln_dtype_name(dt), rows, cols, lay);
            bad++;
        }
    }
    for (size_t s = 0; s < sizeof isas / sizeof *isas; s++) {
        if (kern_set_isa(isas[s]) != 0) continue;
        for (int p = 0; p < 3; p++) {
            for (int i = 0; i < n * rows; i++) got[i] = NAN;
            kern_matmul(pools[p], &ks, got, x, n, &m, with_bias ? bias : NULL);
            for (int t = 0; t < n && bad < 3; t++)
                for (int r = 0; r < rows && bad < 3; r++) {
                    double mag = 1e-6;
                    for (int c = 0; c < cols; c++) mag += fabs(wf[(size_t)r * cols + c] * x[(size_t)t * cols + c]);
                    float a = ref[(size_t)t * rows + r], b = got[(size_t)t * rows + r];
                    if (!(fabs(a - b) <= 2e-5 * mag + 1e-6)) {
                        CHECK(0, "%s dt=%s rows=%d cols=%d n=%d layout=%d threads=%d: y[%d][%d] scalar %g simd %g",
                              isas[s], kiln_dtype_name(dt), rows, cols, n, lay, p + 1, t, r, a, b);
                        bad++;
                    }
                }
        }
    }
    kern_set_isa(kern_best_isa());
    free(wf), free(w), free(wi), free(x), free(bias), free(ref), free(got);
    return bad;
}

static int compare_shape(kiln_dtype dt, int rows, int cols, int n, kiln_pool **pools, int with_bias) {
    return compare_shape_in(dt, rows, cols, n, pools, with_bias, KERN_LAYOUT_PLAIN);
}


TEST(simd_matmul_matches_scalar_float) {
    const int rows[] = {1, 3, 16, 37}, cols[] = {8, 17, 64, 172};
    for (int dt = KILN_DT_F32; dt <= KILN_DT_BF16; dt++)
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++)
                for (int n = 1; n <= 17; n += (n < 6 ? 1 : 5))
                    if (compare_shape(dt, rows[a], cols[b], n, pools, (a + b) & 1)) return;
}

/* The bf16_dot paths' reference: w . x with both rounded to bf16, summed in double; *mag = sum |a b|. */
static double bf16_rounded_dot(const float *w, const float *x, int cols, double *mag) {
    double ref = 0;
    *mag = 1e-6;
    for (int c = 0; c < cols; c++) {
        const double a = kern_bf16_to_f32(kern_f32_to_bf16(w[c])), b = kern_bf16_to_f32(kern_f32_to_bf16(x[c]));
        ref += a * b, *mag += fabs(a * b);
    }
    return ref;
}

/* kern_scratch.bf16_dot: F16 / BF16 weights with 4+ tokens against activations rounded to bf16 (F16
 * weights rounded to bf16 too), accumulated in f32. Reference: the same roundings, summed in double. Where
 * the CPU has no AVX-512 BF16 the exact path must run instead (same bits as a zeroed scratch). */
static int bf16_dot_shape(kiln_dtype dt, int rows, int cols, int n, kern_scratch *fast) {
    float *wf = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * n * cols);
    void *w = make_weights(dt, rows, cols, wf);
    for (int i = 0; i < n * cols; i++) x[i] = frand() * 3.0f;
    float *got = malloc(sizeof(float) * n * rows), *exact = malloc(sizeof(float) * n * rows);
    kiln_mat m = {w, dt, rows, cols, KERN_LAYOUT_PLAIN};
    const bool have = kiln_cpu_features()->avx512bf16 && kern_active_isa()->gemm_bf16dot[dt];
    int bad = kern_matmul(pools[0], NULL, exact, x, n, &m, NULL) != 0, differs = 0;
    CHECK(!bad, "exact matmul");
    for (int p = 0; p < 3 && bad < 3; p++) {
        for (int i = 0; i < n * rows; i++) got[i] = NAN;
        if (kern_matmul(pools[p], fast, got, x, n, &m, NULL) != 0) {
            CHECK(0, "bf16_dot matmul refused dt=%s rows=%d cols=%d n=%d", kiln_dtype_name(dt), rows, cols, n);
            bad++;
            break;
        }
        for (int t = 0; t < n && bad < 3; t++)
            for (int r = 0; r < rows && bad < 3; r++) {
                double mag;
                const double ref = bf16_rounded_dot(wf + (size_t)r * cols, x + (size_t)t * cols, cols, &mag);
                const float g = got[(size_t)t * rows + r], e = exact[(size_t)t * rows + r];
                differs += g != e;
                const bool ok = have ? fabs(g - ref) <= 2e-5 * mag : g == e;
                if (!ok) {
                    CHECK(0, "bf16_dot dt=%s rows=%d cols=%d n=%d threads=%d: y[%d][%d] = %g, want %g (exact %g)",
                          kiln_dtype_name(dt), rows, cols, n, p + 1, t, r, g, ref, e);
                    bad++;
                }
            }
    }
    /* the rounded path really ran: somewhere its result is not the exact one */
    if (have && rows * cols > 64) CHECK(differs > 0, "bf16_dot dt=%s rows=%d cols=%d n=%d gave the exact bits", kiln_dtype_name(dt), rows, cols, n);
    free(wf), free(x), free(w), free(got), free(exact);
    return bad;
}

TEST(bf16_dot_matches_rounded_reference) {
    if (!kiln_cpu_features()->avx512bf16) printf("  (no AVX-512 BF16 here: checking that the exact path runs instead)\n");
    kern_scratch fast = {.bf16_dot = true};
    REQUIRE(kern_scratch_reserve(&fast, 3, 40, 2048) == 0, "reserve");
    const int rows[] = {1, 3, 16, 37, 70}, cols[] = {8, 17, 64, 172, 2048}, ns[] = {4, 5, 7, 13, 40};
    /* both bf16 dot-product kernels where the CPU has them: vdpbf16ps (avx512) and AMX tiles (amx) */
    const char *kinds[] = {"avx512", "amx"};
    for (int i = 0; i < 2; i++) {
        if (kern_set_isa(kinds[i]) != 0) continue;
        for (int dt = KILN_DT_F16; dt <= KILN_DT_BF16; dt++)
            for (int a = 0; a < 5; a++)
                for (int b = 0; b < 5; b++)
                    for (int c = 0; c < 5; c++)
                        if ((a + b + c) % 2 == 0 && bf16_dot_shape(dt, rows[a], cols[b], ns[c], &fast)) goto out;
    }
    kern_set_isa(kern_best_isa());
    /* decode (1-3 tokens) stays exact */
    float *x = calloc(64 * 3, sizeof(float)), y[3 * 16], ye[3 * 16];
    void *w = make_weights(KILN_DT_BF16, 16, 64, NULL);
    for (int i = 0; i < 64 * 3; i++) x[i] = frand();
    kiln_mat m = {w, KILN_DT_BF16, 16, 64, KERN_LAYOUT_PLAIN};
    kern_matmul(pools[1], &fast, y, x, 3, &m, NULL), kern_matmul(pools[1], NULL, ye, x, 3, &m, NULL);
    CHECK(memcmp(y, ye, sizeof y) == 0, "3 tokens took the rounded path");
    free(x), free(w);
    /* a scratch reserved without bf16_dot is refused by a bf16_dot call, never overrun */
    kern_scratch small = {0};
    REQUIRE(kern_scratch_reserve(&small, 3, 4, 64) == 0, "reserve");
    small.bf16_dot = true;
    float *x2 = calloc(64 * 40, sizeof(float)), *y2 = malloc(sizeof(float) * 40 * 16);
    void *w2 = make_weights(KILN_DT_BF16, 16, 64, NULL);
    kiln_mat m2 = {w2, KILN_DT_BF16, 16, 64, KERN_LAYOUT_PLAIN};
    if (kiln_cpu_features()->avx512bf16) CHECK(kern_matmul(pools[0], &small, y2, x2, 40, &m2, NULL) == -1, "40 tokens fit a 4-token scratch");
    free(x2), free(y2), free(w2);
    kern_scratch_free(&small);
out:
    kern_set_isa(kern_best_isa());
    kern_scratch_free(&fast);
}

/* The AMX GEMM called directly (kern_matmul gives it 4+ tokens and 16-row chunks): every token count
 * 1..40 (token tiles of 16 with tails, one or two per block), rows not a multiple of 16 or 32, K of
 * 32k + 7 (the packed weights' and the activations' zero padding), and ragged row ranges, against the
 * bf16-rounded products summed in double; y outside [r0, r1) untouched. */
static int amx_shape(kiln_dtype dt, int rows, int cols, int n, int r0, int r1, void *tmp) {
    const kern_isa *isa = kern_active_isa();
    float *wf = malloc(sizeof(float) * rows * cols), *x = malloc(sizeof(float) * n * cols),
          *y = malloc(sizeof(float) * n * rows);
    void *w = make_weights(dt, rows, cols, wf);
    const size_t xs = kern_bf16_act_stride(cols);
    uint16_t *xb = malloc(sizeof(uint16_t) * xs * n);
    for (int i = 0; i < n * cols; i++) x[i] = frand() * 3.0f;
    for (int t = 0; t < n; t++) isa->to_bf16(x + (size_t)t * cols, xb + (size_t)t * xs, cols);
    for (int i = 0; i < n * rows; i++) y[i] = 7.0f;
    kiln_mat m = {w, dt, rows, cols, KERN_LAYOUT_PLAIN};
    isa->gemm_bf16dot[dt](y, xb, n, &m, r0, r1, tmp);
    int bad = 0;
    for (int t = 0; t < n && bad < 3; t++)
        for (int r = 0; r < rows && bad < 3; r++) {
            double mag;
            const double ref = bf16_rounded_dot(wf + (size_t)r * cols, x + (size_t)t * cols, cols, &mag);
            const float g = y[(size_t)t * rows + r];
            const bool ok = r >= r0 && r < r1 ? fabs(g - ref) <= 2e-5 * mag : g == 7.0f;
            if (!ok) {
                CHECK(0, "amx dt=%s rows=%d cols=%d n=%d range [%d, %d): y[%d][%d] = %g, want %g", kiln_dtype_name(dt),
                      rows, cols, n, r0, r1, t, r, g, r >= r0 && r < r1 ? ref : 7.0);
                bad++;
            }
        }
    free(wf), free(x), free(y), free(w), free(xb);
    return bad;
}

TEST(amx_gemm_matches_rounded_reference) {
    if (kern_set_isa("amx") != 0) {
        printf("  (no AMX-BF16 here: nothing to check)\n");
        return;
    }
    const int cols = 4 * 32 + 7, big = 2048 + 7, widest = 8192 + 7;
    void *tmp = aligned_alloc(64, kern_gemm_tmp_bytes(widest));
    for (int dt = KILN_DT_F16; dt <= KILN_DT_BF16; dt++) {
        for (int n = 1; n <= 40; n++)
            if (amx_shape(dt, 37, cols, n, 0, 37, tmp)) goto out;
        const int shapes[][4] = {{70, 7, 5, 70}, {70, 39, 3, 51}, {16, 32, 0, 16}, {48, 64, 16, 48}, {1, 8, 0, 1},
                                 {33, 1, 1, 32}, {200, big, 7, 190}, {17, widest, 0, 17}};
        for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
            for (int n = 17; n <= 33; n += 16)
                if (amx_shape(dt, shapes[i][0], shapes[i][1], n, shapes[i][2], shapes[i][3], tmp)) goto out;
    }
out:
    free(tmp);
    kern_set_isa(kern_best_isa());
}

/* Plain rows and the loader's panels: fewer rows than a panel (all plain), one panel, panels with a
 * plain tail (37), several panels; token counts below, at and above the 8-token tile, with tails. */
TEST(simd_matmul_matches_scalar_quant) {
    const int rows[] = {1, 3, 16, 37, 64}, cols[] = {32, 96, 320}, lays[] = {KERN_LAYOUT_PLAIN, KERN_LAYOUT_PANEL16};
    for (int dt = KILN_DT_Q8_0; dt <= KILN_DT_Q4_0; dt++)
        for (int a = 0; a < 5; a++)
            for (int b = 0; b < 3; b++)
                for (int n = 1; n <= 17; n += (n < 6 ? 1 : 5))
                    for (int k = 0; k < 2; k++)
                        if (compare_shape_in(dt, rows[a], cols[b], n, pools, (a + b) & 1, lays[k])) return;
}

/* A kernel called on a row range that starts inside a panel (the pool only hands out multiples of 16,
 * but the kernel contract is any [r0, r1)): rows 1..15 of the panel, then plain rows 16..20. */
TEST(quant_gemm_ragged_row_range) {
    enum { R = 23, K = 128, N = 5 };
    for (int dt = KILN_DT_Q8_0; dt <= KILN_DT_Q4_0; dt++) {
        void *w = make_weights(dt, R, K, NULL), *wi = panel_copy(w, dt, R, K);
        float x[N * K], ref[N * R], got[N * R];
        act_q8 xq[N * K / 32];
        for (int i = 0; i < N * K; i++) x[i] = frand();
        for (int t = 0; t < N; t++) quantize_act_ref(x + t * K, xq + t * K / 32, K, kern_formats[dt].weight_offset);
        kiln_mat plain = {w, dt, R, K, KERN_LAYOUT_PLAIN}, inter = {wi, dt, R, K, KERN_LAYOUT_PANEL16};
        kern_isa_scalar.gemm[dt](ref, xq, N, &plain, 0, R, ks.tmp);
        for (size_t s = 0; s < sizeof isas / sizeof *isas; s++) {
            if (kern_set_isa(isas[s]) != 0) continue;
            for (int i = 0; i < N * R; i++) got[i] = NAN;
            kern_active_isa()->gemm[dt](got, xq, N, &inter, 1, R - 2, ks.tmp);
            for (int t = 0; t < N; t++)
                for (int r = 1; r < R - 2; r++)
                    CHECK(fabsf(got[t * R + r] - ref[t * R + r]) <= 1e-4f * (1 + fabsf(ref[t * R + r])),
                          "%s %s y[%d][%d] %g vs %g", isas[s], kiln_dtype_name(dt), t, r, got[t * R + r], ref[t * R + r]);
            CHECK(isnan(got[0]) && isnan(got[R - 1]), "%s wrote outside [1, %d)", isas[s], R - 2);
        }
        kern_set_isa(kern_best_isa());
        free(w), free(wi);
    }
}

/* Float decode (1-3 tokens) on a row range that is no multiple of the kernels' row blocks (8-row blocks,
 * then single rows), over widths with every kind of tail (odd, under one vector, a bf16 pair split across
 * the 16-value halves), against the scalar reference; nothing outside [r0, r1) written. */
TEST(float_gemv_ragged_row_range) {
    enum { R = 29, KMAX = 2048 + 39, N = 3 };
    static const int widths[] = {1, 2, 15, 16, 17, 31, 32, 33, 47, 63, 64, 95, KMAX};
    static float x[N * KMAX], wf[R * KMAX], ref[N * R], got[N * R];
    for (int i = 0; i < N * KMAX; i++) x[i] = frand();
    for (int dt = KILN_DT_F32; dt <= KILN_DT_BF16; dt++)
        for (size_t wi = 0; wi < sizeof widths / sizeof *widths; wi++) {
            const int K = widths[wi];
            void *w = make_weights(dt, R, K, wf);
            kiln_mat m = {w, dt, R, K, KERN_LAYOUT_PLAIN};
            for (int n = 1; n <= N; n++) {
                kern_isa_scalar.gemm[dt](ref, x, n, &m, 0, R, NULL);
                for (size_t s = 0; s < sizeof isas / sizeof *isas; s++) {
                    if (kern_set_isa(isas[s]) != 0) continue;
                    for (int i = 0; i < N * R; i++) got[i] = NAN;
                    kern_active_isa()->gemm[dt](got, x, n, &m, 3, R - 1, NULL);
                    for (int t = 0; t < n; t++) {
                        for (int r = 3; r < R - 1; r++) {
                            double mag = 1e-6; /* the size of the rounding in any summation order */
                            for (int c = 0; c < K; c++) mag += fabs(wf[(size_t)r * K + c] * x[(size_t)t * K + c]);
                            CHECK(fabs(got[t * R + r] - ref[t * R + r]) <= 2e-5 * mag, "%s %s K=%d n=%d y[%d][%d] %g vs %g",
                                  isas[s], kiln_dtype_name(dt), K, n, t, r, got[t * R + r], ref[t * R + r]);
                        }
                        CHECK(isnan(got[t * R + 2]) && isnan(got[t * R + R - 1]), "%s %s K=%d wrote outside [3, %d)",
                              isas[s], kiln_dtype_name(dt), K, R - 1);
                    }
                }
                kern_set_isa(kern_best_isa());
            }
            free(w);
        }
}

/* Embedding lookup from a panel matrix returns the same rows as from the plain one. */
TEST(get_rows_panels) {
    enum { R = 37, K = 64 };
    for (int dt = KILN_DT_Q8_0; dt <= KILN_DT_Q4_0; dt++) {
        void *w = make_weights(dt, R, K, NULL), *wi = panel_copy(w, dt, R, K);
        kiln_mat plain = {w, dt, R, K, KERN_LAYOUT_PLAIN}, inter = {wi, dt, R, K, KERN_LAYOUT_PANEL16};
        int32_t ids[] = {0, 3, 15, 16, 31, 36, 33}; /* panel rows, then the plain tail */
        float a[7 * K], b[7 * K];
        kern_get_rows(a, &plain, ids, 7);
        kern_get_rows(b, &inter, ids, 7);
        CHECK(memcmp(a, b, sizeof a) == 0, "%s panel rows differ", kiln_dtype_name(dt));
        free(w), free(wi);
    }
}

TEST(simd_matmul_large_shapes) {
    for (int dt = 0; dt < KILN_DT_COUNT; dt++) {
        if (compare_shape(dt, 131, 2048, 1, pools, 0)) return;
        if (compare_shape(dt, 67, 1024, 13, pools, 1)) return;
        /* float decode over rows too wide for x to stay in L1 (8 rows at a time, then single rows;
         * a masked tail of K): ffn_down's shape */
        if (!kern_is_quantised(dt))
            for (int n = 1; n <= 3; n++)
                if (compare_shape(dt, 45, 8192 + 16 * (n - 1) + (n == 3 ? 7 : 0), n, pools, n & 1)) return;
        /* (Q4_K's panels: tests/test_kquants.c) */
        if (kern_formats[dt].panels && (compare_shape_in(dt, 131, 2048, 1, pools, 0, KERN_LAYOUT_PANEL16) ||
                                                          compare_shape_in(dt, 67, 1024, 13, pools, 1, KERN_LAYOUT_PANEL16)))
            return;
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
        kiln_mat m = {w, dt, R, K, KERN_LAYOUT_PLAIN};
        kern_matmul(pools[1], &ks, y, x, 1, &m, NULL);
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
    enum { R = 37, K = 256 };
    float src[R * K];
    for (int i = 0; i < R * K; i++) src[i] = frand() * 3;
    for (int dt = 0; dt < KILN_DT_COUNT; dt++) {
        size_t rb = kern_row_bytes(dt, K);
        char *a = malloc(rb * R), *b = malloc(rb * R);
        for (int r = 0; r < R; r++) kern_row_from_f32(a + rb * r, dt, src + r * K, K);
        CHECK(kern_convert_mat(pools[2], b, dt, src, KILN_DT_F32, R, K, KERN_LAYOUT_PLAIN) == 0, "convert to %s", kiln_dtype_name(dt));
        CHECK(memcmp(a, b, rb * R) == 0, "threaded conversion to %s differs", kiln_dtype_name(dt));
        /* with the loader's layout: quantised formats come out in panels, float ones plain (Q4_K's
         * panels: tests/test_kquants.c) */
        if (kern_has_panels(dt) && !kern_formats[dt].panels) {
            free(a), free(b);
            continue;
        }
        bool q = kern_has_panels(dt);
        char *c = q ? panel_copy(a, dt, R, K) : NULL;
        CHECK(kern_convert_mat(pools[2], b, dt, src, KILN_DT_F32, R, K, KERN_LAYOUT_PANEL16) == 0, "convert to panels");
        CHECK(memcmp(q ? c : a, b, rb * R) == 0, "panel conversion to %s differs", kiln_dtype_name(dt));
        free(a), free(b), free(c);
    }
}

/* Every SIMD attention against the portable reference, in every KV cache format, plain, windowed and
 * scaled / soft-capped: head sizes with masked tails, the register specialisations (64, 128), the generic path and the wide-head fallback; position
 * counts around the 16-wide score tiles; a paged cache whose blocks are out of order; GQA; a head
 * sub-range. The reference on a cache of format t also equals the f32 reference on the same values
 * decoded (kern_row_to_f32), so the reference reads each format right. */
TEST(simd_attention_matches_reference) {
    enum { BLOCK = 16, NBLK = 24, HQ = 8, HKV = 2 };
    const int dims[] = {8, 24, 64, 128, 144, 272, 96}, npos[] = {1, 5, 16, 17, 100, NBLK * BLOCK};
    const kiln_dtype types[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_BF16, KILN_DT_Q8_0};
    int table[NBLK];
    for (int i = 0; i < NBLK; i++) table[i] = (i * 7 + 3) % NBLK; /* a permutation: 7 is coprime to 24 */
    for (int ti = 0; ti < 4; ti++)
        for (int d = 0; d < 14; d++) { /* each head size position-major (rows of kv_dim), then head-major */
            const kiln_dtype t = types[ti];
            const int hd = dims[d % 7], head_major = d >= 7;
            if (!kern_kv_type_ok(t, hd)) continue;
            const size_t rb = kern_row_bytes(t, hd), rbf = (size_t)hd * sizeof(float);
            const size_t rows = (size_t)2 * BLOCK * HKV * NBLK; /* k then v per block */
            char *cache = malloc(rb * rows), *f32 = malloc(rbf * rows);
            float *vals = malloc(rbf), *q = malloc(sizeof(float) * HQ * hd), *ref = malloc(sizeof(float) * HQ * hd);
            float *dec = malloc(sizeof(float) * HQ * hd), *got = malloc(sizeof(float) * HQ * hd);
            float *scratch = malloc(sizeof(float) * NBLK * BLOCK);
            for (size_t r = 0; r < rows; r++) {
                for (int i = 0; i < hd; i++) vals[i] = frand() * (1.0f + (float)(r % 5));
                kern_row_from_f32(cache + r * rb, t, vals, hd);
                kern_row_to_f32((float *)(f32 + r * rbf), cache + r * rb, t, hd);
            }
            for (int i = 0; i < HQ * hd; i++) q[i] = frand() * 2;
            /* the same geometry in bytes for both caches */
            kern_kv_view kv = {cache, cache + (size_t)BLOCK * HKV * rb, table, BLOCK, 2 * BLOCK * HKV * rb,
                               head_major ? rb : HKV * rb, head_major ? BLOCK * rb : rb, t, 0, 0, 0};
            kern_kv_view kvf = {f32, f32 + (size_t)BLOCK * HKV * rbf, table, BLOCK, 2 * BLOCK * HKV * rbf,
                                head_major ? rbf : HKV * rbf, head_major ? BLOCK * rbf : rbf, KILN_DT_F32, 0, 0, 0};
            for (int p = 0; p < 6; p++) {
                /* every third count through a window starting inside a block, every third with a scale and soft-cap */
                kv.first = kvf.first = p % 3 == 1 ? npos[p] * 2 / 3 : 0;
                kv.scale = kvf.scale = p % 3 == 2 ? 0.3f : 0;
                kv.softcap = kvf.softcap = p % 3 == 2 ? 5.0f : 0;
                kern_attention_ref(ref, q, HQ, HKV, hd, npos[p], &kv, scratch, 0, HQ);
                kern_attention_ref(dec, q, HQ, HKV, hd, npos[p], &kvf, scratch, 0, HQ);
                for (int i = 0; i < HQ * hd; i++)
                    if (!(fabsf(dec[i] - ref[i]) <= 1e-5f * (1 + fabsf(ref[i])))) {
                        CHECK(0, "reference %s head_dim=%d n_pos=%d out[%d]: %g vs %g on the decoded f32 cache",
                              kiln_dtype_name(t), hd, npos[p], i, ref[i], dec[i]);
                        break;
                    }
                for (size_t s = 0; s < sizeof isas / sizeof *isas; s++) {
                    if (kern_set_isa(isas[s]) != 0) continue;
                    for (int i = 0; i < HQ * hd; i++) got[i] = NAN;
                    kern_attention(got, q, HQ, HKV, hd, npos[p], &kv, scratch, 1, HQ - 2);
                    for (int i = 0; i < HQ * hd; i++) {
                        bool in = i >= hd && i < (HQ - 2) * hd;
                        if (in ? !(fabsf(got[i] - ref[i]) <= 2e-5f * (1 + fabsf(ref[i]))) : !isnan(got[i])) {
                            CHECK(0, "%s kv %s head_dim=%d n_pos=%d out[%d]: %g vs reference %g", isas[s],
                                  kiln_dtype_name(t), hd, npos[p], i, got[i], ref[i]);
                            break;
                        }
                    }
                }
                kern_set_isa(kern_best_isa());
            }
            free(cache), free(f32), free(vals), free(q), free(ref), free(dec), free(got), free(scratch);
        }
}

/* GELU-tanh (gelu_pytorch_tanh) against the formula in double, from -12 to 12 (tanh saturating both ways). */
TEST(gelu_tanh_mul_matches_formula) {
    enum { N = 481 };
    float gate[N], up[N];
    for (int i = 0; i < N; i++) gate[i] = -12.0f + 0.05f * (float)i, up[i] = 0.5f + (float)(i % 7);
    float x[N];
    memcpy(x, gate, sizeof x);
    kern_gelu_tanh_mul(gate, up, N);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double v = x[i], want = 0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))) * up[i];
        worst = fmax(worst, fabs(gate[i] - want) / fmax(1.0, fabs(want)));
    }
    CHECK(worst < 1e-6, "gelu_tanh off by %g (relative)", worst);
}

/* The window, scale and soft-cap mean what kernels.h says: positions first..n_pos-1 only, softmax of
 * tanh(q.k * scale / cap) * cap; checked against the formula on one head over a one-block-per-position cache. */
TEST(attention_window_scale_softcap) {
    enum { HD = 16, NPOS = 40 };
    float cache[NPOS][2][HD], q[HD], out[HD], scratch[NPOS], w[NPOS];
    int table[NPOS];
    for (int p = 0; p < NPOS; p++) {
        table[p] = NPOS - 1 - p;
        for (int i = 0; i < HD; i++) cache[p][0][i] = frand() * 2, cache[p][1][i] = frand();
    }
    for (int i = 0; i < HD; i++) q[i] = frand() * 2;
    const int firsts[] = {0, 1, 33, NPOS - 1};
    for (size_t s = 0; s < sizeof isas / sizeof *isas; s++) {
        if (kern_set_isa(isas[s]) != 0) continue;
        for (int f = 0; f < 4; f++)
            for (int capped = 0; capped < 2; capped++) {
                const float scale = capped ? 0.7f : 0.25f, cap = capped ? 2.0f : 0; /* 0.25 = 1 / sqrt(HD) */
                kern_kv_view kv = {.k = (const char *)&cache[0][0][0], .v = (const char *)&cache[0][1][0], .table = table,
                                   .block = 1, .block_stride = sizeof cache[0], .row_stride = sizeof cache[0][0],
                                   .type = KILN_DT_F32, .first = firsts[f], .scale = capped ? scale : 0, .softcap = cap};
                kern_attention(out, q, 1, 1, HD, NPOS, &kv, scratch, 0, 1);
                double sum = 0, mx = -INFINITY;
                for (int p = firsts[f]; p < NPOS; p++) {
                    double d = 0;
                    for (int i = 0; i < HD; i++) d += (double)q[i] * cache[NPOS - 1 - p][0][i];
                    w[p] = (float)(cap ? tanh(d * scale / cap) * cap : d * scale);
                    mx = w[p] > mx ? w[p] : mx;
                }
                for (int p = firsts[f]; p < NPOS; p++) sum += w[p] = (float)exp(w[p] - mx);
                float err = 0;
                for (int i = 0; i < HD; i++) {
                    double o = 0;
                    for (int p = firsts[f]; p < NPOS; p++) o += w[p] / sum * cache[NPOS - 1 - p][1][i];
                    err = fmaxf(err, fabsf(out[i] - (float)o));
                }
                CHECK(err < 1e-5f, "%s first %d cap %g: off by %g", isas[s], firsts[f], cap, err);
            }
        kern_set_isa(kern_best_isa());
    }
}

/* Activation quantisation: every ISA's version is bit-identical to the reference, on random blocks,
 * an all-zero block, and blocks whose scaled values land exactly on .5 (roundf rounds away from 0). */
/* The gated MLP's elementwise step: every ISA's against the portable reference, within a few ulp (the
 * vector exp is not libm's), over tails of every length and gates from -120 (exp overflow side) to +120.
 * abs_tol scales |gate * up|: GELU-tanh's reference loses that much to the cancellation in 1 + tanhf(a)
 * for negative gates (about an ulp of 1), which the vector form (x / (1 + e^-2a)) does not have. */
typedef void (*act_fn)(float *gate, const float *up, int n);
static void act_matches_reference(const char *what, act_fn ref_fn, act_fn fn, float abs_tol) {
    enum { N = 1000 };
    float gate[N], up[N], ref[N], got[N];
    for (int i = 0; i < N; i++) gate[i] = i < 8 ? (float)(i * 40 - 120) : frand() * 12, up[i] = frand() * 3;
    for (size_t s = 0; s < sizeof isas / sizeof *isas; s++) {
        if (kern_set_isa(isas[s]) != 0) continue;
        for (int n = 1; n <= N; n += n < 40 ? 1 : 97) {
            memcpy(ref, gate, sizeof(float) * n), memcpy(got, gate, sizeof(float) * n);
            ref_fn(ref, up, n);
            fn(got, up, n);
            for (int i = 0; i < n; i++)
                if (!(fabsf(got[i] - ref[i]) <= 4e-7f * fabsf(ref[i]) + abs_tol * fabsf(gate[i] * up[i]) + 1e-30f)) {
                    CHECK(0, "%s %s n=%d [%d]: gate %g up %g: ref %.9g got %.9g", what, isas[s], n, i, gate[i], up[i],
                          ref[i], got[i]);
                    kern_set_isa(kern_best_isa());
                    return;
                }
        }
    }
    kern_set_isa(kern_best_isa());
}

TEST(silu_mul_matches_reference) { act_matches_reference("silu", kern_silu_mul_ref, kern_silu_mul, 0); }
TEST(gelu_tanh_mul_matches_reference) {
    act_matches_reference("gelu_tanh", kern_gelu_tanh_mul_ref, kern_gelu_tanh_mul, 1.2e-7f);
}

TEST(quantize_act_bit_exact) {
    enum { K = 32 * 40 };
    float x[K];
    for (int i = 0; i < K; i++) x[i] = frand() * (1 + i % 7) * 10;
    for (int i = 32; i < 64; i++) x[i] = 0;
    for (int i = 64; i < 96; i++) x[i] = (float)((i % 2 ? -1 : 1) * ((i - 64) * 2 + 1)) * 0.5f; /* k + 0.5: ties once d = 1 */
    x[64] = 127.0f;
    for (int i = 96; i < 128; i++) x[i] = ((i % 5) - 2) * 2.5f; /* ties at +-2.5, +-5 after scaling */
    x[96] = 127.0f;
    for (int c = 8; c <= 128; c += 120) {
        act_q8 ref[K / 32], got[K / 32];
        quantize_act_ref(x, ref, K, c);
        for (size_t s = 0; s < sizeof isas / sizeof *isas; s++) {
            if (kern_set_isa(isas[s]) != 0) continue;
            memset(got, 0x55, sizeof got);
            kern_active_isa()->quantize_act(x, got, K, c);
            for (int b = 0; b < K / 32; b++)
                CHECK(ref[b].d == got[b].d && ref[b].corr == got[b].corr && !memcmp(ref[b].qs, got[b].qs, 32),
                      "%s c=%d block %d differs (d %g/%g corr %d/%d)", isas[s], c, b, ref[b].d, got[b].d, ref[b].corr,
                      got[b].corr);
        }
        kern_set_isa(kern_best_isa());
    }
}

/* The format table (format.h) against the facts it must hold: llama.cpp's block sizes, ggml's GGUF ids,
 * safetensors' names, the row sizes and offsets the kernels rely on, and a round trip through each
 * format's conversions. */
TEST(format_traits) {
    const struct {
        const char *name, *st;
        int gguf, values;
        size_t bytes;
        int offset;
    } want[KILN_DT_COUNT] = {[KILN_DT_F32] = {"f32", "F32", 0, 1, 4, 0},     [KILN_DT_F16] = {"f16", "F16", 1, 1, 2, 0},
                             [KILN_DT_BF16] = {"bf16", "BF16", 30, 1, 2, 0}, [KILN_DT_Q8_0] = {"q8_0", NULL, 8, 32, 34, 128},
                             [KILN_DT_Q4_0] = {"q4_0", NULL, 2, 32, 18, 8},  [KILN_DT_Q4_1] = {"q4_1", NULL, 3, 32, 20, 0},
                             [KILN_DT_Q5_0] = {"q5_0", NULL, 6, 32, 22, 0},  [KILN_DT_Q5_1] = {"q5_1", NULL, 7, 32, 24, 0},
                             [KILN_DT_Q2_K] = {"q2_k", NULL, 10, 256, 84, 0}, [KILN_DT_Q3_K] = {"q3_k", NULL, 11, 256, 110, 0},
                             [KILN_DT_Q4_K] = {"q4_k", NULL, 12, 256, 144, 0}, [KILN_DT_Q5_K] = {"q5_k", NULL, 13, 256, 176, 0},
                             [KILN_DT_Q6_K] = {"q6_k", NULL, 14, 256, 210, 0}, [KILN_DT_IQ4_NL] = {"iq4_nl", NULL, 20, 32, 18, 0},
                             [KILN_DT_IQ4_XS] = {"iq4_xs", NULL, 23, 256, 136, 0}};
    for (int dt = 0; dt < KILN_DT_COUNT; dt++) {
        const kern_format *f = &kern_formats[dt];
        kiln_dtype parsed;
        CHECK(!strcmp(f->name, want[dt].name) && !strcmp(kiln_dtype_name(dt), want[dt].name), "name %s", f->name);
        CHECK(kiln_dtype_parse(want[dt].name, &parsed) == 0 && parsed == (kiln_dtype)dt, "parse %s", want[dt].name);
        CHECK(want[dt].st ? f->st_name && !strcmp(f->st_name, want[dt].st) : !f->st_name, "%s safetensors name", f->name);
        CHECK(f->gguf_type == want[dt].gguf && f->block_values == want[dt].values && f->block_bytes == want[dt].bytes,
              "%s: gguf %d, %d values in %zu bytes", f->name, f->gguf_type, f->block_values, f->block_bytes);
        const bool panels = dt == KILN_DT_Q8_0 || dt == KILN_DT_Q4_0, block = want[dt].values > 1;
        CHECK(kern_is_quantised(dt) == block && f->panels == panels && f->weight_offset == want[dt].offset, "%s offset", f->name);
        CHECK((f->vec_dot != NULL) == (block && !panels) && (f->act != KERN_ACT_F32) == block, "%s kernel family", f->name);
        CHECK(kern_row_bytes(dt, 512) == 512 / want[dt].values * want[dt].bytes, "%s row bytes", f->name);
        enum { N = 256 };
        float x[N], y[N];
        char row[N * 4];
        for (int i = 0; i < N; i++) x[i] = (float)(i % 64 - 32) * 0.25f; /* exact in every float format */
        f->from_f32(row, x, N);
        f->to_f32(y, row, N);
        /* a quantised format: within about a step over its bits per weight of the range 16 */
        const float tol = block ? 16.0f / powf(2.0f, 8.0f * (float)want[dt].bytes / (float)want[dt].values - 1) : 0.0f;
        for (int i = 0; i < N; i++) CHECK(fabsf(y[i] - x[i]) <= tol, "%s [%d] %g", f->name, i, y[i]);
    }
    CHECK(kiln_dtype_parse("q8_k", &(kiln_dtype){0}) == -1 && !strcmp(kiln_dtype_name(KILN_DT_COUNT), "?"), "unknown");
    CHECK(kern_panel_block_bytes(KILN_DT_Q8_0) == 544 && kern_panel_block_bytes(KILN_DT_Q4_0) == 288, "panel blocks");
}

/* kern_matmul never allocates: a quantised matrix with too small (or no) scratch is refused, nothing written. */
TEST(matmul_refuses_small_scratch) {
    enum { R = 16, K = 64, N = 4 };
    void *w = make_weights(KILN_DT_Q8_0, R, K, NULL);
    float x[N * K], y[N * R];
    for (int i = 0; i < N * K; i++) x[i] = frand();
    kiln_mat m = {w, KILN_DT_Q8_0, R, K, KERN_LAYOUT_PLAIN};
    kern_scratch small = {0};
    CHECK(kern_scratch_reserve(&small, 1, N - 1, K) == 0, "reserve");
    for (int i = 0; i < N * R; i++) y[i] = 7.0f;
    CHECK(kern_matmul(pools[0], NULL, y, x, N, &m, NULL) == -1, "no scratch accepted");
    CHECK(kern_matmul(pools[0], &small, y, x, N, &m, NULL) == -1, "3-token scratch accepted for 4 tokens");
    CHECK(kern_matmul(pools[1], &small, y, x, N - 1, &m, NULL) == -1, "1-thread scratch accepted for 2 threads");
    for (int i = 0; i < N * R; i++) CHECK(y[i] == 7.0f, "y[%d] written: %g", i, y[i]);
    CHECK(kern_matmul(pools[0], &small, y, x, N - 1, &m, NULL) == 0 && !isnan(y[0]) && y[0] != 7.0f, "fitting call");
    kern_scratch_free(&small);
    free(w);
}

TEST(isa_selection) {
    const kiln_cpu *c = kiln_cpu_features();
    const char *env = getenv("KILN_ISA");
    /* main() set KILN_ISA=avx2 before the first kernel call: honoured where the CPU has AVX2. */
    if (env && strcmp(env, "avx2") == 0 && c->avx2 && c->fma && c->f16c)
        CHECK(strcmp(kern_isa_name(), "avx2") == 0, "KILN_ISA=avx2 gave %s", kern_isa_name());
    CHECK(kern_set_isa("bogus") == -1, "unknown ISA accepted");
    CHECK(kern_set_isa("scalar") == 0 && strcmp(kern_isa_name(), "scalar") == 0, "scalar not selectable");
    if (c->avx512f && c->avx512vnni)
        CHECK(strcmp(kern_best_isa(), c->avx512bf16 && c->amx_bf16 ? "amx" : "avx512") == 0, "best=%s", kern_best_isa());
    kern_set_isa(kern_best_isa());
}

/* KILN_ISA is read once at start-up: check it in fresh processes (this binary with --print-isa). */
static void isa_in_child(const char *env, char *out, size_t n) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "KILN_ISA=%s /proc/%d/exe --print-isa", env, (int)getpid());
    FILE *f = popen(cmd, "r");
    out[0] = 0;
    if (f) {
        if (!fgets(out, (int)n, f)) out[0] = 0;
        pclose(f);
    }
    out[strcspn(out, "\n")] = 0;
}

TEST(isa_env_override) {
    char got[64];
    isa_in_child("scalar", got, sizeof got);
    CHECK(strcmp(got, "scalar") == 0, "KILN_ISA=scalar gave '%s'", got);
    isa_in_child("bogus", got, sizeof got);
    CHECK(strcmp(got, kern_best_isa()) == 0, "KILN_ISA=bogus gave '%s', want the best (%s)", got, kern_best_isa());
    isa_in_child("avx512", got, sizeof got);
    CHECK(strcmp(got, kern_best_isa()) == 0 || strcmp(got, "avx512") == 0, "KILN_ISA=avx512 gave '%s'", got);
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

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--print-isa") == 0) return printf("%s\n", kern_isa_name()), 0;
    setenv("KILN_ISA", "avx2", 1);
    RUN(isa_selection);
    RUN(isa_env_override);
    for (int i = 0; i < 3; i++) pools[i] = kiln_pool_new(i + 1);
    if (kern_scratch_reserve(&ks, 3, 32, 2048)) return printf("FAIL scratch\n"), 1;
    RUN(format_traits);
    RUN(matmul_refuses_small_scratch);
    RUN(quant_blocks_match_llamacpp);
    RUN(quant_round_trip_error_bounds);
    RUN(quant_matmul_close_to_dequantised_f32);
    RUN(convert_mat_matches_rowwise);
    RUN(simd_matmul_matches_scalar_float);
    RUN(bf16_dot_matches_rounded_reference);
    RUN(amx_gemm_matches_rounded_reference);
    RUN(simd_matmul_matches_scalar_quant);
    RUN(quant_gemm_ragged_row_range);
    RUN(float_gemv_ragged_row_range);
    RUN(get_rows_panels);
    RUN(simd_matmul_large_shapes);
    RUN(simd_attention_matches_reference);
    RUN(attention_window_scale_softcap);
    RUN(gelu_tanh_mul_matches_formula);
    RUN(silu_mul_matches_reference);
    RUN(gelu_tanh_mul_matches_reference);
    RUN(quantize_act_bit_exact);
    RUN(thread_pool_runs_every_thread_every_time);
    for (int i = 0; i < 3; i++) kiln_pool_free(pools[i]);
    kern_scratch_free(&ks);
    return check_done();
}
