/* matmul_amx.c — the bf16 dot-product GEMM (kern_scratch.bf16_dot: prefill with F16 / BF16 weights) on
 * AMX tiles (kern_isa_amx; compiled with the AVX-512 flags plus AMX-TILE / AMX-BF16).
 *
 * Same numbers as the vdpbf16ps kernels (matmul_avx512.c): activations and weights rounded to bf16, their
 * products accumulated in f32; only the order of the sums differs. One TDPBF16PS multiplies a 16-token x
 * 32-value activation tile by a 32-value x 16-row weight tile into a 16 x 16 f32 tile: 8192 multiply-adds,
 * against 32 for a vdpbf16ps.
 *
 * The weight tile is the transpose of 16 rows in VNNI pairs (tile row p holds w[r][2p], w[r][2p+1] for
 * r = 0..15), so the rows of a call are first packed into the thread's scratch (F16 rounded to bf16 on
 * the way), KERN_BF16_TILE_BYTES at a time, and that strip is reused by every token. The activations are
 * tiles as they are: kern_bf16_act_stride apart, zero-padded to 32 values, which the packed weights are
 * too, so K needs no tail. Register blocking: 2 token tiles x 2 weight tiles -> 4 accumulator tiles, 4
 * tile loads per 4 TDPBF16PS. Token tails use a tile config with fewer rows; a strip's last rows (fewer
 * than 16) are packed next to zero rows and their results stored through a 16 x 16 buffer.
 *
 * Measured (Llama-3.2-1B shapes, 512 tokens, 2 threads, best of 15, a loaded shared host): 2048x2048
 * 7.9 ms (vdpbf16ps: 38.9), 512x2048 2.4 (15.1), 8192x2048 21.5 (187), 2048x8192 32.8 (165), i.e. 225-400
 * GMAC/s; one core's TDPBF16PS peak here is ~1170 GMAC/s, ~640 with its tiles loaded from L1. Passes of 8
 * k blocks (the token tiles' values kept in L1, accumulators reloaded from y) were slower (2048x8192: 38-44
 * against 28 ms). */
#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/matmul.h"
#include "kernels/simd_x86.h"

#define TILE_K 32                                   /* values per tile row: 64 bytes of bf16 */
#define TILE_BYTES (16 * TILE_K * sizeof(uint16_t)) /* one packed weight tile (16 pairs x 16 rows) */

/* Tiles: 0..3 accumulators (tile 2a + b = token tile a x weight tile b), 4..5 token tiles, 6..7 weight
 * tiles. (Literal numbers below: the _tile_* macros paste their operands into the assembly as written.) */

/* ldtilecfg's 64-byte operand (palette 1). */
typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

/* Configures token tiles of m0 and m1 rows (m1 = 0: one token tile; its tiles are left unconfigured). */
static void tile_config(int m0, int m1) {
    tilecfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    const int rows[8] = {m0, m0, m1, m1, m0, m1, 16, 16};
    for (int i = 0; i < 8; i++) c.rows[i] = (uint8_t)rows[i], c.colsb[i] = rows[i] ? 64 : 0;
    /* not _tile_loadconfig: gcc 12's declares an 8-byte memory operand, so the rest of c's stores can be
     * dropped as dead (a #GP on an uninitialised config, seen at -O2) */
    __asm__ volatile("ldtilecfg %0" ::"m"(c));
}

/* The 16 x 16 transpose of 32-bit elements: r[i] lane j becomes r[j] lane i. */
INL void transpose16(__m512i r[16]) {
    __m512i t[16];
#pragma GCC unroll 8
    for (int i = 0; i < 16; i += 2) t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]), t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    /* r[4i + j], 128-bit lane L: rows 4i..4i+3 of column 4L + j */
#pragma GCC unroll 4
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]), r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]), r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        t[k] = _mm512_shuffle_i32x4(r[k], r[4 + k], 0x88), t[4 + k] = _mm512_shuffle_i32x4(r[k], r[4 + k], 0xdd);
        t[8 + k] = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0x88), t[12 + k] = _mm512_shuffle_i32x4(r[8 + k], r[12 + k], 0xdd);
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        r[k] = _mm512_shuffle_i32x4(t[k], t[8 + k], 0x88), r[8 + k] = _mm512_shuffle_i32x4(t[k], t[8 + k], 0xdd);
        r[4 + k] = _mm512_shuffle_i32x4(t[4 + k], t[12 + k], 0x88), r[12 + k] = _mm512_shuffle_i32x4(t[4 + k], t[12 + k], 0xdd);
    }
}

/* Values k..k+31 of an F16 / BF16 row as bf16 (zeros past K). */
INL __m512i load_bf16x32(int dt, const uint16_t *row, int k, int K) {
    const __m512i v = _mm512_maskz_loadu_epi16(lanes32(K - k), row + k);
    if (dt == KILN_DT_BF16) return v;
    return _mm512_inserti64x4(_mm512_castsi256_si512(f16x16_to_bf16(_mm512_castsi512_si256(v))),
                              f16x16_to_bf16(_mm512_extracti64x4_epi64(v, 1)), 1);
}

/* Rows [0, rows) of w (K values each, ws apart) packed as weight tiles: group g (rows 16g..16g+15, zero rows
 * past `rows`), k block b at out + (g * nkb + b) * TILE_BYTES. */
static void pack_rows(int dt, const uint16_t *w, size_t ws, int rows, int K, int nkb, char *out) {
    for (int g = 0; g * 16 < rows; g++)
        for (int b = 0; b < nkb; b++) {
            __m512i r[16];
            for (int i = 0; i < 16; i++)
                r[i] = g * 16 + i < rows ? load_bf16x32(dt, w + (size_t)(g * 16 + i) * ws, b * TILE_K, K) : _mm512_setzero_si512();
            transpose16(r);
            char *dst = out + ((size_t)g * (size_t)nkb + (size_t)b) * TILE_BYTES;
#pragma GCC unroll 16
            for (int p = 0; p < 16; p++) _mm512_storeu_si512(dst + 64 * p, r[p]);
        }
}

/* Accumulator tile c (tokens rows) to y (M floats per token), its first `valid` columns (weight rows). */
#define STORE_C(c, y, M, tokens, valid)                                                                          \
    do {                                                                                                         \
        if ((valid) == 16) _tile_stored(c, y, (M) * sizeof(float));                                              \
        else {                                                                                                   \
            float buf_[16][16];                                                                                  \
            _tile_stored(c, buf_, sizeof buf_[0]);                                                               \
            for (int t_ = 0; t_ < (tokens); t_++) memcpy((y) + (size_t)t_ * (M), buf_[t_], (size_t)(valid) * sizeof(float)); \
        }                                                                                                        \
    } while (0)

/* NA token tiles (x, xs values apart) x NB weight tiles (b, gs bytes apart) over nkb k blocks; mt tokens in
 * the last token tile (its configured rows), v0 / v1 valid rows in the weight tiles; y is the first
 * token's first row. (Tile numbers are immediates: NA and NB are constants in each call.) */
INL void tile_block(int NA, int NB, const uint16_t *x, size_t xs, const char *b, size_t gs, int nkb, float *y, int M,
                    int mt, int v0, int v1) {
    _tile_zero(0);
    if (NB == 2) _tile_zero(1);
    if (NA == 2) _tile_zero(2);
    if (NA == 2 && NB == 2) _tile_zero(3);
    const size_t xb = xs * sizeof(uint16_t);
    for (int k = 0; k < nkb; k++) {
        _tile_loadd(4, x + (size_t)k * TILE_K, xb);
        if (NA == 2) _tile_loadd(5, x + 16 * xs + (size_t)k * TILE_K, xb);
        _tile_loadd(6, b + (size_t)k * TILE_BYTES, 64);
        if (NB == 2) _tile_loadd(7, b + gs + (size_t)k * TILE_BYTES, 64);
        _tile_dpbf16ps(0, 4, 6);
        if (NB == 2) _tile_dpbf16ps(1, 4, 7);
        if (NA == 2) _tile_dpbf16ps(2, 5, 6);
        if (NA == 2 && NB == 2) _tile_dpbf16ps(3, 5, 7);
    }
    const int m0 = NA == 2 ? 16 : mt;
    STORE_C(0, y, M, m0, v0);
    if (NB == 2) STORE_C(1, y + 16, M, m0, v1);
    if (NA == 2) STORE_C(2, y + (size_t)16 * M, M, mt, v0);
    if (NA == 2 && NB == 2) STORE_C(3, y + (size_t)16 * M + 16, M, mt, v1);
}

/* All n tokens against a packed strip of `rows` rows; y is the strip's first row's column. Token blocks
 * of 32 (2 tiles) outside, the strip's 32-row pairs of tile groups inside (the token tiles stay in L1 while
 * the strip streams from L2). */
static void strip_tokens(const char *packed, int rows, int nkb, const uint16_t *x, size_t xs, int n, float *y, int M) {
    const size_t gs = (size_t)nkb * TILE_BYTES;
    tile_config(16, 16);
    for (int t0 = 0; t0 < n; t0 += 32) {
        const int left = n - t0, NA = left > 16 ? 2 : 1, mt = MIN(16, NA == 2 ? left - 16 : left); /* last tile's tokens */
        if (left < 32) tile_config(NA == 2 ? 16 : mt, NA == 2 ? mt : 0);
        const uint16_t *xt = x + (size_t)t0 * xs;
        float *yt = y + (size_t)t0 * M;
        for (int r = 0; r < rows; r += 32) {
            const char *b = packed + (size_t)(r / 16) * gs;
            const int v0 = MIN(16, rows - r), v1 = MIN(16, rows - r - 16);
            if (NA == 2 && v1 > 0) tile_block(2, 2, xt, xs, b, gs, nkb, yt + r, M, mt, v0, v1);
            else if (NA == 2) tile_block(2, 1, xt, xs, b, gs, nkb, yt + r, M, mt, v0, 0);
            else if (v1 > 0) tile_block(1, 2, xt, xs, b, gs, nkb, yt + r, M, mt, v0, v1);
            else tile_block(1, 1, xt, xs, b, gs, nkb, yt + r, M, mt, v0, 0);
        }
    }
}

/* Rows [r0, r1) of an F16 / BF16 matrix, a strip of kern_bf16_tile_rows at a time packed into tmp. */
static void gemm_amx(int dt, float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    const int K = m->cols, step = kern_bf16_tile_rows(K), nkb = (int)(kern_bf16_act_stride(K) / TILE_K);
    for (int g = r0; g < r1; g += step) {
        const int rows = MIN(step, r1 - g);
        pack_rows(dt, (const uint16_t *)m->data + (size_t)g * K, (size_t)K, rows, K, nkb, tmp);
        strip_tokens(tmp, rows, nkb, x, kern_bf16_act_stride(K), n, y + g, m->rows);
    }
    _tile_release(); /* back to the init state: the kernel need not save this thread's tiles on a switch */
}

void kern_gemm_bf16dot_f16_amx(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    gemm_amx(KILN_DT_F16, y, x, n, m, r0, r1, tmp);
}
void kern_gemm_bf16dot_bf16_amx(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    gemm_amx(KILN_DT_BF16, y, x, n, m, r0, r1, tmp);
}
