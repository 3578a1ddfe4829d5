/* test_q8k_quant.c — the AVX-512 Q8_K activation quantiser (kquants_quantize_avx512.c) writes exactly the
 * reference's bytes (d, qs, bsums) on random rows and on the values where a careless version differs:
 * zeros and -0, rounding ties, the max-abs value at either sign and repeated with both signs (the FIRST
 * one decides iscale's sign), values that make iscale overflow (denormals) or vanish (infinities), NaNs,
 * and rows of 256 to 8192 values; kern_q8_k_row_from_f32 gives the same bytes under every ISA. */
#include "check.h"

#include <float.h>
#include <math.h>

#include "kernels/format.h"
#include "kernels/kquants.h"
#include "kernels/matmul.h"

enum { MAX_K = 8192 };

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t next32(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 32);
}
static float frand(void) { return (float)(next32() & 0xffffff) / (float)(1 << 23) - 1.0f; } /* [-1, 1) */

/* Whether the quantiser under test can run here (else the tests say so and check only the dispatch). */
static bool have_avx512(void) {
    if (kern_set_isa("avx512") == 0) return true;
    printf("  (no AVX-512 here: quantize_row_q8_K_avx512 cannot run; only the dispatch is checked)\n");
    return false;
}

/* Compares both quantisers on x[0..k); names the first differing block and field. */
static int same_bytes(const float *x, int k, const char *what) {
    static block_q8_K want[MAX_K / QK_K], got[MAX_K / QK_K];
    memset(want, 0x5a, sizeof want), memset(got, 0xa5, sizeof got); /* both must write every byte */
    quantize_row_q8_K_ref(x, want, k);
    quantize_row_q8_K_avx512(x, got, k);
    for (int b = 0; b < k / QK_K; b++) {
        const char *field = memcmp(&want[b].d, &got[b].d, sizeof want[b].d) ? "d"
                            : memcmp(want[b].qs, got[b].qs, sizeof want[b].qs) ? "qs"
                            : memcmp(want[b].bsums, got[b].bsums, sizeof want[b].bsums) ? "bsums" : NULL;
        if (field) {
            CHECK(0, "%s, k=%d: block %d's %s differs (d %g vs %g)", what, k, b, field, want[b].d, got[b].d);
            return 1;
        }
    }
    return 0;
}

TEST(avx512_equals_reference_on_random_rows) {
    if (!have_avx512()) return;
    static float x[MAX_K];
    const int ks[] = {256, 512, 2048, 8192};
    const float scales[] = {1.0f, 1e-3f, 300.0f, 1e-38f, 1e30f};
    for (int s = 0; s < 5; s++)
        for (int i = 0; i < 4; i++)
            for (int rep = 0; rep < 8; rep++) {
                for (int j = 0; j < ks[i]; j++) x[j] = frand() * scales[s];
                if (same_bytes(x, ks[i], "random")) return;
            }
}

/* One block whose every value is v (and a second one of v and -v alternating). */
static void constant_blocks(float *x, float v) {
    for (int j = 0; j < QK_K; j++) x[j] = v, x[QK_K + j] = j % 2 ? -v : v;
}

TEST(avx512_equals_reference_on_edge_values) {
    if (!have_avx512()) return;
    static float x[2 * QK_K];
    const float consts[] = {0.0f, -0.0f, 1.0f, -1.0f, FLT_MIN, 1e-45f, -1e-45f, FLT_MAX, -FLT_MAX, INFINITY, -INFINITY};
    for (size_t c = 0; c < sizeof consts / sizeof *consts; c++) {
        constant_blocks(x, consts[c]);
        if (same_bytes(x, 2 * QK_K, "constant block")) return;
    }
    /* ties: max = 127 makes iscale -1, so x + 0.5 rounds to even; also at a max of -127 */
    for (int sign = -1; sign <= 1; sign += 2) {
        for (int j = 0; j < 2 * QK_K; j++) x[j] = (float)((j % 253) - 126) + ((j & 1) ? 0.5f : -0.5f);
        x[3] = x[QK_K + 7] = 127.0f * (float)sign;
        if (same_bytes(x, 2 * QK_K, "ties")) return;
    }
    /* the max magnitude at both signs: the first decides; placed first, last and mid-vector */
    const int at[][2] = {{0, 255}, {255, 0}, {17, 200}, {200, 17}, {15, 16}};
    for (int a = 0; a < 5; a++)
        for (int sign = -1; sign <= 1; sign += 2) {
            for (int j = 0; j < QK_K; j++) x[j] = frand();
            x[at[a][0]] = 2.0f * (float)sign, x[at[a][1]] = -2.0f * (float)sign;
            if (same_bytes(x, QK_K, "max at both signs")) return;
        }
    /* denormals among zeros (iscale overflows to -inf), one value among zeros, NaNs among values */
    for (int j = 0; j < QK_K; j++) x[j] = (j % 3) ? 0.0f : 1e-40f * (float)(j % 7 - 3);
    if (same_bytes(x, QK_K, "denormals")) return;
    memset(x, 0, sizeof x), x[100] = -3.0f;
    if (same_bytes(x, QK_K, "a single value")) return;
    for (int j = 0; j < QK_K; j++) x[j] = (j % 37) ? frand() : NAN;
    if (same_bytes(x, QK_K, "NaNs")) return;
    for (int j = 0; j < QK_K; j++) x[j] = NAN;
    same_bytes(x, QK_K, "all NaN");
}

/* The matmuls' entry point gives the reference's bytes whichever ISA is active. */
TEST(row_from_f32_equals_reference_under_every_isa) {
    static float x[2048];
    static block_q8_K want[2048 / QK_K], got[2048 / QK_K];
    for (int j = 0; j < 2048; j++) x[j] = frand() * 5.0f;
    quantize_row_q8_K_ref(x, want, 2048);
    const char *isas[] = {"scalar", "avx2", "avx512"};
    for (int i = 0; i < 3; i++) {
        if (kern_set_isa(isas[i]) != 0) continue; /* not on this CPU: the others still run */
        memset(got, 0, sizeof got);
        kern_q8_k_row_from_f32(got, x, 2048);
        CHECK(memcmp(want, got, sizeof want) == 0, "kern_q8_k_row_from_f32 under %s differs", isas[i]);
    }
    kern_set_isa(kern_best_isa());
}

int main(void) {
    RUN(avx512_equals_reference_on_random_rows);
    RUN(avx512_equals_reference_on_edge_values);
    RUN(row_from_f32_equals_reference_under_every_isa);
    kern_set_isa(kern_best_isa());
    return check_done();
}
