/* test_matmul_many.c — kern_matmul_many (one parallel region for many matmuls, the MoE layer's experts)
 * gives each task exactly kern_matmul's bits, across formats, token counts, shared activations and more
 * tasks than one region holds, and a matrix split into byte-capped work units; a scratch too small for a
 * region is refused. */
#include "check.h"

#include "kernels/format.h"
#include "kernels/kernels.h"
#include "runtime/threadpool.h"

enum { K = 256, ROWS = 40, N_X = 5, N_TASKS = 70 };

static uint64_t rng = 0x243f6a8885a308d3ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((rng >> 40) & 0xffffff) / (float)(1 << 23) - 1.0f;
}

/* A ROWS x K matrix of random weights in format dt, in the loader's layout (panels where the format has them). */
static kiln_mat make_mat(kiln_pool *pool, kiln_dtype dt) {
    float *src = malloc(sizeof(float) * ROWS * K);
    for (int i = 0; i < ROWS * K; i++) src[i] = frand();
    void *w = malloc(kern_row_bytes(dt, K) * ROWS);
    kern_convert_mat(pool, w, dt, src, KILN_DT_F32, ROWS, K, KERN_LAYOUT_PANEL16);
    free(src);
    return (kiln_mat){w, dt, ROWS, K, kern_has_panels(dt) ? KERN_LAYOUT_PANEL16 : KERN_LAYOUT_PLAIN};
}

/* N_TASKS tasks over N_X activations of 1..32 tokens, each activation shared by tasks of every format in
 * turn (so a shared x must still be converted once per activation format), on pool; compared bit for bit
 * with one kern_matmul per task. */
static void many_equals_single(kiln_pool *pool, bool bf16_dot) {
    static const kiln_dtype dts[] = {KILN_DT_Q8_0, KILN_DT_Q4_K, KILN_DT_F32, KILN_DT_BF16, KILN_DT_Q4_0, KILN_DT_Q6_K};
    enum { N_DT = sizeof dts / sizeof dts[0] };
    static const int toks[N_X] = {1, 3, 8, 32, 5};
    kiln_mat m[N_DT];
    float *x[N_X], *want[N_TASKS], *got[N_TASKS];
    kern_mm_task t[N_TASKS];
    int total = 0;
    for (int d = 0; d < N_DT; d++) m[d] = make_mat(pool, dts[d]);
    for (int i = 0; i < N_X; i++) {
        x[i] = malloc(sizeof(float) * toks[i] * K), total += toks[i];
        for (int j = 0; j < toks[i] * K; j++) x[i][j] = frand();
    }
    kern_scratch ks = {.bf16_dot = bf16_dot};
    REQUIRE(kern_scratch_reserve(&ks, kiln_pool_size(pool), total * N_DT, K) == 0, "scratch");
    for (int i = 0; i < N_TASKS; i++) {
        const int xi = i % N_X, n = toks[xi];
        want[i] = malloc(sizeof(float) * n * ROWS), got[i] = calloc((size_t)n * ROWS, sizeof(float));
        t[i] = (kern_mm_task){got[i], x[xi], n, &m[i / N_X % N_DT]};
        REQUIRE(kern_matmul(pool, &ks, want[i], x[xi], n, t[i].m, NULL) == 0, "kern_matmul %d", i);
    }
    CHECK(kern_matmul_many(pool, &ks, t, N_TASKS) == 0, "kern_matmul_many");
    for (int i = 0; i < N_TASKS; i++)
        CHECK(memcmp(want[i], got[i], sizeof(float) * t[i].n * ROWS) == 0, "task %d (%s, %d tokens, %d threads%s) differs",
              i, kiln_dtype_name(t[i].m->dt), t[i].n, kiln_pool_size(pool), bf16_dot ? ", bf16_dot" : "");
    /* a scratch for one token cannot hold a region's activations: refused, nothing written */
    kern_scratch small = {0};
    REQUIRE(kern_scratch_reserve(&small, kiln_pool_size(pool), 1, K) == 0, "small scratch");
    memset(got[0], 0, sizeof(float) * t[0].n * ROWS);
    CHECK(kern_matmul_many(pool, &small, t, 4) == -1, "a 1-token scratch accepted for 4 tasks of 44 tokens");
    CHECK(got[0][0] == 0, "a refused call wrote its output");
    kern_scratch_free(&small), kern_scratch_free(&ks);
    for (int i = 0; i < N_TASKS; i++) free(want[i]), free(got[i]);
    for (int i = 0; i < N_X; i++) free(x[i]);
    for (int d = 0; d < N_DT; d++) free((void *)m[d].data);
}

static kiln_pool *pools[2];

TEST(many_equals_single_matmuls) {
    for (int p = 0; p < 2; p++) many_equals_single(pools[p], false);
}

TEST(many_equals_single_bf16_dot) {
    for (int p = 0; p < 2; p++) many_equals_single(pools[p], true);
}

/* A decode matmul over a matrix big enough that its work units are capped by bytes (f32 2048 x 2048: 16 MB,
 * 1 MB units at ~8 per thread, capped to 512 KB), alone and in a region with a small one: the same bits on
 * 2 threads as on 1. */
TEST(big_matrix_in_capped_units) {
    enum { R = 2048, C = 2048 };
    float *w = malloc(sizeof(float) * R * C), *x = malloc(sizeof(float) * C), *want = malloc(sizeof(float) * R),
          *got = malloc(sizeof(float) * R), *small = calloc(ROWS, sizeof(float));
    for (size_t i = 0; i < (size_t)R * C; i++) w[i] = frand();
    for (int i = 0; i < C; i++) x[i] = frand();
    const kiln_mat m = {w, KILN_DT_F32, R, C, KERN_LAYOUT_PLAIN};
    const kiln_mat ms = {w, KILN_DT_F32, ROWS, C, KERN_LAYOUT_PLAIN}; /* the first rows of w */
    REQUIRE(kern_matmul(pools[0], NULL, want, x, 1, &m, NULL) == 0, "one thread");
    memset(got, 0, sizeof(float) * R);
    CHECK(kern_matmul(pools[1], NULL, got, x, 1, &m, NULL) == 0, "two threads");
    CHECK(memcmp(want, got, sizeof(float) * R) == 0, "kern_matmul on 2 threads differs");
    memset(got, 0, sizeof(float) * R);
    kern_mm_task t[2] = {{small, x, 1, &ms}, {got, x, 1, &m}};
    CHECK(kern_matmul_many(pools[1], NULL, t, 2) == 0, "kern_matmul_many");
    CHECK(memcmp(want, got, sizeof(float) * R) == 0, "kern_matmul_many on 2 threads differs");
    CHECK(memcmp(want, small, sizeof(float) * ROWS) == 0, "the small task differs");
    free(w), free(x), free(want), free(got), free(small);
}

/* No tasks: nothing to do, no error. */
TEST(many_of_none) { CHECK(kern_matmul_many(pools[1], NULL, NULL, 0) == 0, "zero tasks"); }

int main(void) {
    pools[0] = kiln_pool_new(1), pools[1] = kiln_pool_new(2);
    RUN(many_equals_single_matmuls);
    RUN(many_equals_single_bf16_dot);
    RUN(big_matrix_in_capped_units);
    RUN(many_of_none);
    kiln_pool_free(pools[0]), kiln_pool_free(pools[1]);
    return check_done();
}
