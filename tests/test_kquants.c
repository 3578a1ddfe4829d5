/* test_kquants.c — llama.cpp's other block formats (kernels/kquants.h) against llama.cpp itself: the
 * tensors llama-quantize wrote into ../shared/gguf/kq-llama-512 (every type), requantised here from the
 * F32 file's tensor to the same bytes and dequantised to the F32 tensor within the format's error; the
 * integer dot products against the dequantised weights and activations; every SIMD kernel against the
 * scalar one. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kernels/format.h"
#include "kernels/kernels.h"
#include "kernels/kquants.h"
#include "kernels/matmul.h"
#include "runtime/threadpool.h"

/* ---- a minimal GGUF reader (test-only; the loader has its own, validated one) ---- */

typedef struct {
    char name[64];
    int type;
    int64_t cols, rows;
    const char *data;
} gg_tensor;
typedef struct {
    char *buf;
    size_t size;
    int n;
    gg_tensor t[64];
} gg_file;

static uint64_t rd(const char **p, int bytes) {
    uint64_t v = 0;
    memcpy(&v, *p, (size_t)bytes);
    *p += bytes;
    return v;
}
static void skip_value(const char **p, int type) {
    static const int size[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (type == 8) *p += rd(p, 8);
    else if (type == 9) {
        const int et = (int)rd(p, 4);
        const uint64_t n = rd(p, 8);
        for (uint64_t i = 0; i < n; i++) skip_value(p, et);
    } else *p += size[type];
}

static bool gg_open(gg_file *g, const char *rel) {
    memset(g, 0, sizeof *g);
    FILE *f = fopen(shared_path(rel), "rb");
    if (!f) return false;
    fseek(f, 0, SEEK_END);
    g->size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    g->buf = malloc(g->size);
    const bool ok = g->buf && fread(g->buf, 1, g->size, f) == g->size && !memcmp(g->buf, "GGUF", 4);
    fclose(f);
    if (!ok) return false;
    const char *p = g->buf + 8;
    const uint64_t nt = rd(&p, 8), nkv = rd(&p, 8);
    for (uint64_t i = 0; i < nkv; i++) {
        p += rd(&p, 8); /* key */
        skip_value(&p, (int)rd(&p, 4));
    }
    uint64_t off[64];
    for (uint64_t i = 0; i < nt && i < 64; i++, g->n++) {
        gg_tensor *t = &g->t[i];
        const uint64_t len = rd(&p, 8);
        snprintf(t->name, sizeof t->name, "%.*s", (int)len, p);
        p += len;
        const int nd = (int)rd(&p, 4);
        t->cols = (int64_t)rd(&p, 8), t->rows = 1;
        for (int d = 1; d < nd; d++) t->rows *= (int64_t)rd(&p, 8);
        t->type = (int)rd(&p, 4);
        off[i] = rd(&p, 8);
    }
    const size_t data = ((size_t)(p - g->buf) + 31) / 32 * 32; /* general.alignment: the default 32 */
    for (int i = 0; i < g->n; i++) g->t[i].data = g->buf + data + off[i];
    return true;
}

static const gg_tensor *gg_find(const gg_file *g, const char *name) {
    for (int i = 0; i < g->n; i++)
        if (!strcmp(g->t[i].name, name)) return &g->t[i];
    return NULL;
}

static int dtype_of_gguf(int type) {
    for (int dt = 0; dt < KILN_DT_COUNT; dt++)
        if (kern_formats[dt].gguf_type == type) return dt;
    return -1;
}

/* The largest relative RMS error of dequantised weights (vs the f32 tensor's RMS) llama.cpp's rounding
 * gives on these random (uniform-like) weights, with room: about 2^-(bits) of the range. */
static double rel_rmse_bound(int dt) {
    switch (dt) {
    case KILN_DT_Q8_0: return 0.01;
    case KILN_DT_Q6_K: return 0.03;
    case KILN_DT_Q5_0: case KILN_DT_Q5_1: case KILN_DT_Q5_K: return 0.06;
    case KILN_DT_Q4_0: case KILN_DT_Q4_1: case KILN_DT_Q4_K: case KILN_DT_IQ4_NL: case KILN_DT_IQ4_XS: return 0.12;
    case KILN_DT_Q3_K: return 0.25;
    default: return 0.5; /* Q2_K */
    }
}

static const char *FILES[] = {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_M", "Q4_K_M",
                              "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"};

/* Every quantised tensor of every file: dequantised, near the F32 file's tensor; requantised from it by
 * kern_formats[].from_f32, the same bytes (IQ4_NL: llama-quantize searches 7 scales where
 * quantize_row_iq4_nl_ref, our from_f32, searches none, so only the error is compared). */
TEST(gguf_tensors_match_llamacpp) {
    gg_file ref;
    REQUIRE(gg_open(&ref, "gguf/kq-llama-512/kq-llama-512.F32.gguf"), "the F32 GGUF (../shared/gguf)");
    bool seen[KILN_DT_COUNT] = {false};
    for (size_t fi = 0; fi < sizeof FILES / sizeof *FILES; fi++) {
        char rel[128];
        snprintf(rel, sizeof rel, "gguf/kq-llama-512/kq-llama-512.%s.gguf", FILES[fi]);
        gg_file g;
        if (!gg_open(&g, rel)) {
            CHECK(0, "%s unreadable", rel);
            free(g.buf);
            continue;
        }
        for (int i = 0; i < g.n; i++) {
            const gg_tensor *t = &g.t[i], *r = gg_find(&ref, t->name);
            const int dt = dtype_of_gguf(t->type);
            if (t->type == 0) continue;
            if (!r || dt < 0 || r->cols != t->cols || r->rows != t->rows) {
                CHECK(0, "%s %s: type %d / shape", FILES[fi], t->name, t->type);
                continue;
            }
            seen[dt] = true;
            const kern_format *f = &kern_formats[dt];
            const int cols = (int)t->cols;
            const size_t rb = kern_row_bytes(dt, cols);
            float *deq = malloc(sizeof(float) * (size_t)cols);
            char *mine = malloc(rb);
            double err2 = 0, ref2 = 0;
            long diff_blocks = 0, blocks = 0;
            for (int64_t row = 0; row < t->rows; row++) {
                const float *x = (const float *)r->data + row * cols;
                const char *q = t->data + (size_t)row * rb;
                f->to_f32(deq, q, cols);
                for (int c = 0; c < cols; c++) err2 += (deq[c] - x[c]) * (double)(deq[c] - x[c]), ref2 += (double)x[c] * x[c];
                f->from_f32(mine, x, cols);
                for (int b = 0; b < cols / f->block_values; b++, blocks++)
                    diff_blocks += memcmp(mine + b * f->block_bytes, q + b * f->block_bytes, f->block_bytes) != 0;
            }
            const double rel = sqrt(err2 / ref2);
            CHECK(rel <= rel_rmse_bound(dt), "%s %s (%s): dequantised relative RMS error %.4f > %.3f", FILES[fi], t->name,
                  f->name, rel, rel_rmse_bound(dt));
            if (dt != KILN_DT_IQ4_NL)
                CHECK(diff_blocks == 0, "%s %s (%s): %ld of %ld blocks requantise differently", FILES[fi],
                      t->name, f->name, diff_blocks, blocks);
            free(deq), free(mine);
        }
        free(g.buf);
    }
    for (int dt = KILN_DT_Q8_0; dt < KILN_DT_COUNT; dt++) CHECK(seen[dt], "no %s tensor in the files", kern_formats[dt].name);
    free(ref.buf);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1 << 23))) - 1.0f;
}

/* One token's quantised activations back to f32 (the values the integer dot multiplies). */
static void act_to_f32(kern_act a, const void *xq, float *out, int n) {
    for (int i = 0; i < n; i++) {
        if (a == KERN_ACT_Q8_K) {
            const block_q8_K *b = (const block_q8_K *)xq + i / QK_K;
            out[i] = b->d * b->qs[i % QK_K];
        } else if (a == KERN_ACT_Q8_1) {
            const block_q8_1 *b = (const block_q8_1 *)xq + i / QK;
            out[i] = kern_f16_to_f32(b->d) * b->qs[i % QK];
        } else {
            const block_q8_0 *b = (const block_q8_0 *)xq + i / QK;
            out[i] = kern_f16_to_f32(b->d) * b->qs[i % QK];
        }
    }
}

/* The integer dot of each format equals the f32 dot of its dequantised weights with the dequantised
 * activations (the same numbers, summed differently): a wrong nibble order, scale unpacking or min term
 * would be far off. And the Q8_1 sums and Q8_K bsums are what the blocks hold. */
TEST(vec_dot_equals_dequantised_dot) {
    enum { K = 1024 };
    float x[K], w[K], wd[K], xd[K];
    char wq[K * 2], xq[K * 2];
    for (int dt = 0; dt < KILN_DT_COUNT; dt++) {
        const kern_format *f = &kern_formats[dt];
        if (!f->vec_dot) continue;
        for (int trial = 0; trial < 4; trial++) {
            for (int i = 0; i < K; i++) w[i] = frand() * (1 + (i / 64) % 5), x[i] = frand() * (trial + 1);
            if (trial == 3)
                for (int i = 0; i < K / 2; i++) w[i] = 0, x[K - 1 - i] = 0; /* all-zero blocks */
            f->from_f32(wq, w, K);
            f->to_f32(wd, wq, K);
            kern_acts[f->act].quantize(xq, x, K);
            act_to_f32(f->act, xq, xd, K);
            double ref = 0, mag = 1e-9, slack = 0;
            for (int i = 0; i < K; i++) ref += (double)wd[i] * xd[i], mag += fabs((double)wd[i] * xd[i]);
            /* Q8_1 carries d*sum(q) rounded to f16 (s), which the min term multiplies: half an f16 ulp each */
            for (int b = 0; f->act == KERN_ACT_Q8_1 && b < K / QK; b++) {
                uint16_t m;
                memcpy(&m, wq + b * f->block_bytes + 2, 2); /* block_q4_1 / q5_1: d, then m */
                slack += fabs(kern_f16_to_f32(m) * kern_f16_to_f32(((const block_q8_1 *)xq)[b].s)) / 2048;
            }
            const float got = f->vec_dot(K, wq, xq);
            CHECK(fabs(got - ref) <= 2e-5 * mag + slack, "%s trial %d: vec_dot %.6g, dequantised %.6g (|.| %.3g)", f->name,
                  trial, got, ref, mag);
        }
    }
    float a[QK_K];
    for (int i = 0; i < QK_K; i++) a[i] = frand();
    block_q8_K b8;
    quantize_row_q8_K_ref(a, &b8, QK_K);
    for (int j = 0; j < QK_K / 16; j++) {
        int s = 0;
        for (int l = 0; l < 16; l++) s += b8.qs[16 * j + l];
        CHECK(b8.bsums[j] == s, "bsums[%d] %d vs %d", j, b8.bsums[j], s);
    }
    block_q8_1 b1;
    quantize_row_q8_1_ref(a, &b1, QK);
    int s = 0;
    for (int l = 0; l < QK; l++) s += b1.qs[l];
    CHECK(fabsf(kern_f16_to_f32(b1.s) - s * kern_f16_to_f32(b1.d)) <= 1e-3f * fabsf(s * kern_f16_to_f32(b1.d)) + 1e-4f,
          "q8_1 s");
}

/* A worked block: Q4_K with known scale bytes reads the scales and mins llama.cpp's get_scale_min_k4 does. */
TEST(q4_k_scale_packing) {
    block_q4_K b;
    memset(&b, 0, sizeof b);
    b.d = kern_f32_to_f16(1.0f), b.dmin = kern_f32_to_f16(0.5f);
    for (int j = 0; j < 4; j++) b.scales[j] = (uint8_t)(j + 1), b.scales[j + 4] = (uint8_t)(10 + j);
    b.scales[8] = 0x21;            /* block 4: scale low 1, min low 2 */
    b.scales[0] |= 1 << 6;         /* block 4's scale high bits = 1 -> 17 */
    b.scales[4] |= 2 << 6;         /* block 4's min high bits = 2 -> 34 */
    for (int i = 0; i < QK_K / 2; i++) b.qs[i] = 0x31; /* low nibble 1 (first 32 of each 64), high 3 */
    float y[QK_K];
    dequantize_row_q4_K(&b, y, QK_K);
    CHECK(y[0] == 1 * 1 - 0.5f * 10, "block 0 value %g", y[0]);       /* sc 1, m 10, q 1 */
    CHECK(y[32] == 2 * 3 - 0.5f * 11, "block 1 value %g", y[32]);     /* sc 2, m 11, q 3 */
    CHECK(y[128] == 17 * 1 - 0.5f * 34, "block 4 value %g", y[128]);  /* sc 17, m 34, q 1 */
}

static kiln_pool *pools[3], *pool2;
static kern_scratch ks;

/* Q4_K rows in the panel layout placed by its definition (kernels.h), written out independently of
 * kern_qblock_put: per 16-row panel and super-block, the 16 d, the 16 dmin, the 12 scale bytes of the 16
 * rows side by side, then for chunk c and group g the 16 rows' qs[32c + 4g .. +3]; the last rows plain. */
static void q4_k_panels_by_definition(const char *plain, char *out, int rows, int cols) {
    const size_t rb = kern_row_bytes(KILN_DT_Q4_K, cols), bs = sizeof(block_q4_K);
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < cols / QK_K; b++) {
            const char *blk = plain + r * rb + b * bs;
            if (r >= rows / 16 * 16) {
                memcpy(out + r * rb + b * bs, blk, bs);
                continue;
            }
            char *pb = out + (size_t)(r / 16) * 16 * rb + (size_t)b * 16 * bs;
            const int i = r % 16;
            memcpy(pb + 2 * i, blk, 2);           /* d */
            memcpy(pb + 32 + 2 * i, blk + 2, 2);  /* dmin */
            for (int k = 0; k < 12; k++) pb[64 + 16 * k + i] = blk[4 + k];
            for (int c = 0; c < 4; c++)
                for (int g = 0; g < 8; g++) memcpy(pb + 256 + 512 * c + 64 * g + 4 * i, blk + 16 + 32 * c + 4 * g, 4);
        }
}

/* Q6_K rows in the panel layout placed by its definition (kernels.h): per 16-row panel, super-block b of
 * the 16 rows at 3360 * b: its quants (16 triples A, B, C of 16 rows x 4 bytes), its scales (scale j of
 * the 16 rows side by side), its d; the last rows plain. */
static void q6_k_panels_by_definition(const char *plain, char *out, int rows, int cols) {
    const size_t rb = kern_row_bytes(KILN_DT_Q6_K, cols), bs = sizeof(block_q6_K);
    const int nb = cols / QK_K;
    for (int r = 0; r < rows; r++)
        for (int b = 0; b < nb; b++) {
            const block_q6_K *blk = (const block_q6_K *)(plain + r * rb + b * bs);
            if (r >= rows / 16 * 16) {
                memcpy(out + r * rb + b * bs, blk, bs);
                continue;
            }
            uint8_t q[QK_K]; /* the stored q of value v (llama.cpp's dequantize_row_q6_K) */
            for (int v = 0; v < QK_K; v++) {
                const int h = v / 128, l = v % 32, k = v % 128 / 32;
                const uint8_t ql = blk->ql[64 * h + l + (k % 2 ? 32 : 0)];
                q[v] = (uint8_t)((k < 2 ? ql & 15 : ql >> 4) | (blk->qh[32 * h + l] >> (2 * k) & 3) << 4);
            }
            char *qs = out + (size_t)(r / 16) * 16 * rb + (size_t)b * 3360, *sc = qs + 3072, *d = sc + 256;
            const int i = r % 16;
            memcpy(d + 2 * i, &blk->d, 2);
            for (int g = 0; g < 16; g++) sc[16 * g + i] = (char)blk->scales[g];
            for (int g = 0; g < 16; g++)
                for (int t = 0; t < 3; t++)
                    for (int k = 0; k < 4; k++)
                        qs[192 * g + 64 * t + 4 * i + k] = (char)(q[16 * g + 4 * t + k] | (q[16 * g + 12 + k] >> (2 * t) & 3) << 6);
        }
}

/* The loader's repacking into dt's panels (a GGUF's rows, and --quant's f32 ones) is the layout that
 * by_definition writes, and the accessors read every row's blocks and f32 values back. */
static void panels_are_the_layout(kiln_dtype dt, void (*by_definition)(const char *, char *, int, int),
                                  void (*quantize)(const float *, void *, int)) {
    enum { R = 37, K = 768 };
    const size_t rb = kern_row_bytes(dt, K), bs = kern_formats[dt].block_bytes;
    float *src = malloc(sizeof(float) * R * K), *got = malloc(sizeof(float) * K), *want = malloc(sizeof(float) * K);
    char *plain = malloc(rb * R), *ref = malloc(rb * R), *a = malloc(rb * R), *b = malloc(rb * R);
    for (int i = 0; i < R * K; i++) src[i] = frand() * (1 + (i / 256) % 4);
    for (int r = 0; r < R; r++) quantize(src + r * K, plain + r * rb, K);
    by_definition(plain, ref, R, K);
    CHECK(kern_convert_mat(pools[2], a, dt, plain, dt, R, K, KERN_LAYOUT_PANEL16) == 0, "repack");
    CHECK(kern_convert_mat(pools[2], b, dt, src, KILN_DT_F32, R, K, KERN_LAYOUT_PANEL16) == 0, "quantise");
    CHECK(memcmp(a, ref, rb * R) == 0, "%s: GGUF rows repacked differ from the layout", kiln_dtype_name(dt));
    CHECK(memcmp(b, ref, rb * R) == 0, "%s: f32 rows quantised into panels differ from the layout", kiln_dtype_name(dt));
    const kiln_mat m = {a, dt, R, K, KERN_LAYOUT_PANEL16};
    char blk[KERN_MAX_BLOCK_BYTES];
    for (int r = 0; r < R; r++) {
        for (int k = 0; k < K / QK_K; k++) {
            kern_qblock_get(&m, r, k, blk);
            CHECK(memcmp(blk, plain + r * rb + k * bs, bs) == 0, "%s row %d block %d", kiln_dtype_name(dt), r, k);
        }
        const int32_t id = r;
        kern_get_rows(got, &m, &id, 1);
        kern_row_to_f32(want, plain + r * rb, dt, K);
        CHECK(memcmp(got, want, sizeof(float) * K) == 0, "%s row %d embedding lookup", kiln_dtype_name(dt), r);
    }
    free(src), free(got), free(want), free(plain), free(ref), free(a), free(b);
}
static void quantize_q4_k(const float *x, void *y, int k) { quantize_row_q4_K_ref(x, y, k); }
static void quantize_q6_k(const float *x, void *y, int k) { quantize_row_q6_K_ref(x, y, k); }
TEST(q4_k_panels_are_the_layout) { panels_are_the_layout(KILN_DT_Q4_K, q4_k_panels_by_definition, quantize_q4_k); }
TEST(q6_k_panels_are_the_layout) { panels_are_the_layout(KILN_DT_Q6_K, q6_k_panels_by_definition, quantize_q6_k); }

/* kern_matmul on every vec_dot format: equal to each row's vec_dot with the token's quantised
 * activations, whatever ISA (one without a kernel for the format runs the reference) and thread count. */
TEST(matmul_is_vec_dot_per_row) {
    enum { R = 37, K = 512, N = 3 };
    float *w = malloc(sizeof(float) * R * K), x[N * K], y[N * R];
    for (int i = 0; i < R * K; i++) w[i] = frand();
    for (int i = 0; i < N * K; i++) x[i] = frand();
    for (int dt = 0; dt < KILN_DT_COUNT; dt++) {
        const kern_format *f = &kern_formats[dt];
        if (!f->vec_dot) continue;
        const size_t rb = kern_row_bytes(dt, K), xb = kern_act_row_bytes(f->act, K);
        char *wq = malloc(rb * R), *xq = malloc(xb * N);
        for (int r = 0; r < R; r++) f->from_f32(wq + rb * r, w + r * K, K);
        for (int t = 0; t < N; t++) kern_acts[f->act].quantize(xq + xb * t, x + t * K, K);
        /* the loader's layout: Q4_K's leading 32 rows in panels, the others plain (PANEL16 ignored) */
        char *wp = malloc(rb * R);
        REQUIRE(kern_convert_mat(pool2, wp, (kiln_dtype)dt, wq, (kiln_dtype)dt, R, K, KERN_LAYOUT_PANEL16) == 0, "repack");
        const kiln_mat m = {wp, (kiln_dtype)dt, R, K, KERN_LAYOUT_PANEL16};
        kern_set_isa("scalar");
        REQUIRE(kern_matmul(pool2, &ks, y, x, N, &m, NULL) == 0, "%s matmul", f->name);
        for (int t = 0; t < N; t++)
            for (int r = 0; r < R; r++)
                CHECK(y[t * R + r] == f->vec_dot(K, wq + rb * r, xq + xb * t), "%s y[%d][%d]", f->name, t, r);
        free(wq), free(xq), free(wp);
    }
    kern_set_isa(kern_best_isa());
    free(w);
}

/* y[t][r] of the SIMD ISA vs the scalar reference on the same quantised activations: the integer sums are
 * exact in both, only the f32 scaling rounds in another order, so within 2e-5 of sum |w x|. */
static int compare_simd_in(kiln_dtype dt, int rows, int cols, int n, int r0, int r1, int threads, kern_layout lay) {
    const kern_format *f = &kern_formats[dt];
    const size_t rb = kern_row_bytes(dt, cols), xb = kern_act_row_bytes(f->act, cols);
    float *w = malloc(sizeof(float) * (size_t)rows * cols), *x = malloc(sizeof(float) * (size_t)n * cols);
    float *wd = malloc(sizeof(float) * (size_t)rows * cols), *xd = malloc(sizeof(float) * (size_t)n * cols);
    float *ref = malloc(sizeof(float) * (size_t)n * rows), *got = malloc(sizeof(float) * (size_t)n * rows);
    char *wq = malloc(rb * (size_t)rows), *xq = malloc(xb * (size_t)n);
    for (int i = 0; i < rows * cols; i++) w[i] = frand() * (1 + (i / 256) % 4);
    for (int i = 0; i < n * cols; i++) x[i] = frand();
    for (int r = 0; r < rows; r++) f->from_f32(wq + rb * r, w + (size_t)r * cols, cols), f->to_f32(wd + (size_t)r * cols, wq + rb * r, cols);
    for (int t = 0; t < n; t++) kern_acts[f->act].quantize(xq + xb * t, x + (size_t)t * cols, cols), act_to_f32(f->act, xq + xb * t, xd + (size_t)t * cols, cols);
    const kiln_mat plain = {wq, dt, rows, cols, KERN_LAYOUT_PLAIN};
    int bad = 0;
    kern_isa_scalar.gemm[dt](ref, xq, n, &plain, 0, rows, NULL);
    /* the SIMD kernel reads m: the loader's panels when lay asks (Q4_K), which the scalar kernel must read
     * to the same bits as the plain rows */
    char *wp = lay == KERN_LAYOUT_PANEL16 ? malloc(rb * (size_t)rows) : NULL;
    if (wp) kern_convert_mat(pools[0], wp, dt, wq, dt, rows, cols, lay);
    const kiln_mat m = {wp ? wp : wq, dt, rows, cols, lay};
    if (wp) {
        void *stmp = aligned_alloc(64, kern_gemm_tmp_bytes(cols));
        kern_isa_scalar.gemm[dt](got, xq, n, &m, 0, rows, stmp);
        free(stmp);
        for (int i = 0; i < n * rows && !bad; i++)
            if (got[i] != ref[i]) {
                CHECK(0, "%s panels rows=%d cols=%d: scalar y[%d] %g, plain rows %g", f->name, rows, cols, i, got[i], ref[i]);
                bad++;
            }
    }
    for (int i = 0; i < n * rows; i++) got[i] = NAN;
    if (threads) { /* through kern_matmul and the pool: every row */
        kern_matmul(pools[threads - 1], &ks, got, x, n, &m, NULL);
        r0 = 0, r1 = rows;
    } else { /* ragged ranges with the scratch kern_matmul hands a thread, whole ones without (the contract
              * allows NULL: kernels with a scratch path then take the other) */
        void *tmp = r0 > 0 || wp ? aligned_alloc(64, kern_gemm_tmp_bytes(cols)) : NULL; /* panels: AVX2 gathers Q6_K */
        kern_active_isa()->gemm[dt](got, xq, n, &m, r0, r1, tmp);
        free(tmp);
    }
    for (int t = 0; t < n && bad < 3; t++)
        for (int r = 0; r < rows && bad < 3; r++) {
            const float a = ref[(size_t)t * rows + r], b = got[(size_t)t * rows + r];
            if (r < r0 || r >= r1) {
                if (!isnan(b)) {
                    CHECK(0, "%s wrote row %d outside [%d, %d)", f->name, r, r0, r1);
                    bad++;
                }
                continue;
            }
            double mag = 1e-6;
            for (int c = 0; c < cols; c++) mag += fabs((double)wd[(size_t)r * cols + c] * xd[(size_t)t * cols + c]);
            if (!(fabs(a - b) <= 2e-5 * mag)) {
                CHECK(0, "%s %s %s rows=%d cols=%d n=%d [%d,%d) threads=%d: y[%d][%d] scalar %g simd %g", kern_isa_name(),
                      f->name, wp ? "panels" : "plain", rows, cols, n, r0, r1, threads, t, r, a, b);
                bad++;
            }
        }
    free(w), free(x), free(wd), free(xd), free(ref), free(got), free(wq), free(xq), free(wp);
    return bad;
}
/* Plain rows, and for a panel format (Q4_K) the loader's panels as well. */
static int compare_simd(kiln_dtype dt, int rows, int cols, int n, int r0, int r1, int threads) {
    return compare_simd_in(dt, rows, cols, n, r0, r1, threads, KERN_LAYOUT_PLAIN) ||
           (kern_has_panels(dt) && compare_simd_in(dt, rows, cols, n, r0, r1, threads, KERN_LAYOUT_PANEL16));
}

/* Every format an ISA has its own kernel for: odd row counts, 1..9 super-blocks, token counts around the
 * 8-token tile and across token blocks, ragged row ranges called directly, and the pool's split at 1..3
 * threads. */
TEST(simd_kquants_match_scalar) {
    static const char *isas[] = {"avx2", "avx512"};
    const int rows[] = {1, 3, 16, 37}, cols[] = {256, 768, 2304}, ns[] = {1, 2, 7, 8, 9, 17};
    /* 32-value formats also on rows of an odd number of blocks (a kernel pairing blocks has a single last
     * one) and Gemma 3's 1152 */
    const int cols32[] = {32, 96, 1120, 1152};
    int tested = 0, tested_avx512_32 = 0;
    for (size_t s = 0; s < sizeof isas / sizeof *isas; s++) {
        if (kern_set_isa(isas[s]) != 0) continue;
        for (int dt = 0; dt < KILN_DT_COUNT; dt++) {
            if (!kern_formats[dt].vec_dot || !kern_active_isa()->gemm[dt]) continue;
            tested++;
            tested_avx512_32 += s == 1 && kern_formats[dt].block_values == QK;
            for (int a = 0; a < 4; a++)
                for (int b = 0; b < 3; b++)
                    for (int k = 0; k < 6; k++)
                        if (compare_simd((kiln_dtype)dt, rows[a], cols[b], ns[k], 0, rows[a], 0)) goto out;
            for (int a = 0; a < 4 && kern_formats[dt].block_values == QK; a++)
                for (int b = 0; b < 4; b++)
                    for (int k = 0; k < 6; k++)
                        if (compare_simd((kiln_dtype)dt, rows[a] + 2, cols32[b], ns[k], 0, rows[a] + 2, 0) ||
                            compare_simd((kiln_dtype)dt, rows[a] + 6, cols32[b], ns[k], 1, rows[a] + 5, 0))
                            goto out;
            if (compare_simd((kiln_dtype)dt, 37, 512, 5, 3, 30, 0) || compare_simd((kiln_dtype)dt, 37, 512, 1, 17, 18, 0))
                goto out;
            /* 8192-wide rows: the kernels take tokens in blocks of 24 (256 KiB of activations), so 70 tokens
             * are 3 blocks, the last ragged */
            if (compare_simd((kiln_dtype)dt, 19, 8192, 70, 2, 19, 0)) goto out;
            /* and through whole panels (Q4_K, Q6_K): two panels and a plain tail over the 3 token blocks; a ragged
             * range around whole panels (rows 5..16 and 48..60 gathered, 16..48 in panels), decoding (the
             * in-place high nibbles of few tokens: 1 and 3) and 9 tokens */
            if (kern_has_panels((kiln_dtype)dt) &&
                (compare_simd((kiln_dtype)dt, 35, 8192, 70, 0, 35, 0) || compare_simd((kiln_dtype)dt, 67, 768, 1, 5, 60, 0) ||
                 compare_simd((kiln_dtype)dt, 67, 768, 3, 5, 60, 0) || compare_simd((kiln_dtype)dt, 67, 768, 9, 5, 60, 0)))
                goto out;
            for (int th = 1; th <= 3; th++)
                if (compare_simd((kiln_dtype)dt, 67, 1024, th == 2 ? 1 : 13, 0, 0, th)) goto out;
        }
    }
out:
    kern_set_isa(kern_best_isa());
    /* AVX2 and AVX-512 each have Q4_K, Q5_K and Q6_K kernels: on a machine with both, all six must have run */
    const int isas_here = (kern_set_isa("avx2") == 0) + (kern_set_isa("avx512") == 0);
    CHECK(tested >= 3 * isas_here, "only %d SIMD k-quant kernels tested on %d ISAs", tested, isas_here);
    /* and AVX-512 has Q4_1, Q5_0, Q5_1 and IQ4_NL ones (matmul_legacy_avx512.c) */
    if (kern_set_isa("avx512") == 0)
        CHECK(tested_avx512_32 == 4, "%d AVX-512 Q4_1 / Q5_0 / Q5_1 / IQ4_NL kernels tested, not 4", tested_avx512_32);
    kern_set_isa(kern_best_isa());
}

int main(void) {
    for (int i = 0; i < 3; i++) pools[i] = kiln_pool_new(i + 1);
    pool2 = pools[1];
    if (!pools[0] || !pool2 || !pools[2] || kern_scratch_reserve(&ks, 3, 32, 4096)) return printf("FAIL setup\n"), 1;
    RUN(q4_k_scale_packing);
    RUN(vec_dot_equals_dequantised_dot);
    RUN(q4_k_panels_are_the_layout);
    RUN(q6_k_panels_are_the_layout);
    RUN(matmul_is_vec_dot_per_row);
    RUN(simd_kquants_match_scalar);
    RUN(gguf_tensors_match_llamacpp);
    kern_scratch_free(&ks);
    for (int i = 0; i < 3; i++) kiln_pool_free(pools[i]);
    return check_done();
}
