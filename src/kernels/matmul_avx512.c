/* matmul_avx512.c — AVX-512 (F/BW/VL/VNNI) matmul kernels.
 *
 * Float weights (F32/F16/BF16): widened to f32 in registers and multiplied with f32 FMA, so results
 * match the scalar reference to rounding order (the engine's f32 goldens hold). With 4+ tokens a 4-row x
 * 4-token micro-kernel keeps 16 zmm accumulators over token blocks sized to stay in L2; with fewer,
 * GEMV_ROWS rows at a time, leftover rows singly (gemv_f; BF16 rows as dwords, 32 values a step). K is
 * walked 16 values at a time (BF16 decode: 32) with a masked tail.
 *
 * Q8_0 / Q4_0 weights: int8 dot products with vpdpbusd. vpdpbusd multiplies UNSIGNED by signed bytes, so
 * weights go in unsigned (Q8: w ^ 0x80 = w+128; Q4: the stored nibble = w+8) and the activation block's
 * precomputed corr = -c*sum(x) seeds the accumulator (quant.h); each block's int32 sums are scaled by
 * d_w*d_x into f32 accumulators. Matrices in 16-row panels (kernels.h, what the loader makes) go through
 * panel_tile for any token count; plain rows (a matrix's last rows < 16, plain matrices) through 4-row x
 * 4-token tiles with two blocks per zmm. */
#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>

#include "kernels/matmul.h"
#include "kernels/simd_x86.h"

#define PF_VALUES 512 /* software prefetch distance in weight values */
/* Q8_0 weights made unsigned: xor 0x80 adds kern_formats[KILN_DT_Q8_0].weight_offset (128) to an int8. */
#define Q8_UNSIGNED ((char)kern_formats[KILN_DT_Q8_0].weight_offset)

/* ---- float weights ---- */

INL __m512 load_w(int dt, const char *row, int k, __mmask16 mk) {
    if (dt == KILN_DT_F32) return _mm512_maskz_loadu_ps(mk, (const float *)row + k);
    __m256i h = _mm256_maskz_loadu_epi16(mk, (const uint16_t *)row + k);
    if (dt == KILN_DT_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); /* bf16: top half of f32 */
}

INL void micro_f(int dt, int R, int T, const char *w, size_t rb, const float *x, int K, float *y, int M) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) acc[i][j] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 wv[4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) wv[i] = load_w(dt, w + i * rb, k, 0xffff);
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)j * K + k);
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
        }
    }
    if (k < K) {
        __mmask16 mk = lanes16(K - k);
        __m512 wv[4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) wv[i] = load_w(dt, w + i * rb, k, mk);
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) {
            __m512 xv = _mm512_maskz_loadu_ps(mk, x + (size_t)j * K + k);
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) y[(size_t)j * M + i] = _mm512_reduce_add_ps(acc[i][j]);
}

/* Decode (1-3 tokens) reads each weight row once, against x in f32 (kept exact: the scalar reference's
 * products). BF16 and F32 rows go GEMV_ROWS at a time (F16's one at a time: gemv_f), each x vector loaded
 * once for all of them: on the Xeon (Emerald Rapids) one core keeps more weight lines in flight across 8 row
 * streams than along one, and the loop does fewer x loads per weight. A GEMV experiment of the 1B model's
 * BF16 shapes, 2 threads, weights in memory: 8 rows read 18 GB/s where one row at a time read 15 (the read
 * probe: 15); from L2, one thread, 32 against 25 GB/s. Rows whose x exceeds L1 (ffn_down's 8192-wide x: 32
 * KiB) need the several rows as well, or every x load misses too (measured on Zen 4). Leftover rows (fewer
 * than GEMV_ROWS) go one at a time. No software prefetch: the hardware streamer alone runs these loops at
 * memory speed, and _mm_prefetch into L1 (T0 / NTA) slowed them 1.6-2.2x (T1 did not help either; Zen 4); on
 * the Xeon, T0 1 KiB or T1 2 KiB ahead in each of the 8 streams, and 16 rows with one accumulator each, were
 * no faster end to end either (BF16 tg128, within the host's noise). Nor was vdpbf16ps against x rounded to
 * bf16 (the prefill kernel's 4-row tile, 1 op per 32 weights): slower end to end (4.3 / 4.9 / 4.1 against 4.8
 * / 5.1 / 6.3 tok/s, interleaved), so decode stays exact in both modes. */
#define GEMV_ROWS 8

/* One row against one token with four accumulators. */
INL float dot_row_f(int dt, const char *row, const float *x, int K) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int k = 0;
    for (; k + 64 <= K; k += 64) {
        a0 = _mm512_fmadd_ps(load_w(dt, row, k, 0xffff), _mm512_loadu_ps(x + k), a0);
        a1 = _mm512_fmadd_ps(load_w(dt, row, k + 16, 0xffff), _mm512_loadu_ps(x + k + 16), a1);
        a2 = _mm512_fmadd_ps(load_w(dt, row, k + 32, 0xffff), _mm512_loadu_ps(x + k + 32), a2);
        a3 = _mm512_fmadd_ps(load_w(dt, row, k + 48, 0xffff), _mm512_loadu_ps(x + k + 48), a3);
    }
    for (; k < K; k += 16) {
        const __mmask16 mk = lanes16(K - k);
        a0 = _mm512_fmadd_ps(load_w(dt, row, k, mk), _mm512_maskz_loadu_ps(mk, x + k), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* GEMV_ROWS F32 rows (rb bytes apart) against one token, one accumulator each (8 independent FMA
 * chains cover the FMA latency); y[i] for row i. */
INL void dot_rows_f(int dt, const char *w, size_t rb, const float *x, int K, float *y) {
    __m512 acc[GEMV_ROWS];
#pragma GCC unroll 8
    for (int i = 0; i < GEMV_ROWS; i++) acc[i] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        const __m512 xv = _mm512_loadu_ps(x + k);
#pragma GCC unroll 8
        for (int i = 0; i < GEMV_ROWS; i++) acc[i] = _mm512_fmadd_ps(load_w(dt, w + i * rb, k, 0xffff), xv, acc[i]);
    }
    if (k < K) {
        const __mmask16 mk = lanes16(K - k);
        const __m512 xv = _mm512_maskz_loadu_ps(mk, x + k);
#pragma GCC unroll 8
        for (int i = 0; i < GEMV_ROWS; i++) acc[i] = _mm512_fmadd_ps(load_w(dt, w + i * rb, k, mk), xv, acc[i]);
    }
#pragma GCC unroll 8
    for (int i = 0; i < GEMV_ROWS; i++) y[i] = _mm512_reduce_add_ps(acc[i]);
}

/* BF16 rows read as dwords, 32 weights per vector: dword i holds weights 2i (low half) and 2i+1 (high
 * half), so as f32 the even weights are the dwords << 16 and the odd ones the dwords & 0xffff0000 (two
 * integer ops per 32 weights, where widening 16 at a time costs a vpmovzxwd and a shift each, both on the
 * 2 ports that also run the FMAs). x is split to match, into its even and odd values, with two permutes
 * per 32 values shared by all GEMV_ROWS rows. The products are the exact ones, as before. One k step:
 * 32 values (lo / hi: the masks of x's two halves, mw: the weights'); acc[2i], acc[2i+1] row i's even and
 * odd sums. */
INL void bf16_pairs_step(const char *w, size_t rb, const float *x, int k, __mmask32 mw, __mmask16 lo, __mmask16 hi,
                         __m512 *acc) {
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0),
                  odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1),
                  top = _mm512_set1_epi32((int)0xffff0000u);
    const __m512 x0 = _mm512_maskz_loadu_ps(lo, x + k), x1 = _mm512_maskz_loadu_ps(hi, x + k + 16);
    const __m512 xe = _mm512_permutex2var_ps(x0, even, x1), xo = _mm512_permutex2var_ps(x0, odd, x1);
#pragma GCC unroll 8
    for (int i = 0; i < GEMV_ROWS; i++) {
        const __m512i v = _mm512_maskz_loadu_epi16(mw, (const uint16_t *)(w + i * rb) + k);
        acc[2 * i] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_slli_epi32(v, 16)), xe, acc[2 * i]);
        acc[2 * i + 1] = _mm512_fmadd_ps(_mm512_castsi512_ps(_mm512_and_si512(v, top)), xo, acc[2 * i + 1]);
    }
}

/* GEMV_ROWS BF16 rows against one token (bf16_pairs_step); y[i] for row i. From L2 (one thread, 2048 wide)
 * this reads 38 GB/s where dot_rows_f's widening reads 32. */
INL void dot_rows_bf16(const char *w, size_t rb, const float *x, int K, float *y) {
    __m512 acc[2 * GEMV_ROWS];
#pragma GCC unroll 16
    for (int i = 0; i < 2 * GEMV_ROWS; i++) acc[i] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 32 <= K; k += 32) bf16_pairs_step(w, rb, x, k, 0xffffffffu, 0xffff, 0xffff, acc);
    if (k < K) {
        const int left = K - k;
        const __mmask16 lo = lanes16(left), hi = lanes16(left - 16);
        bf16_pairs_step(w, rb, x, k, lanes32(left), lo, hi, acc);
    }
#pragma GCC unroll 8
    for (int i = 0; i < GEMV_ROWS; i++) y[i] = _mm512_reduce_add_ps(_mm512_add_ps(acc[2 * i], acc[2 * i + 1]));
}

/* Rows [r0, r1) against n < 4 tokens (above). F16 rows go one at a time (dot_row_f): on Zen 5 that decoded
 * the F16 GGUF faster in each of 6 interleaved rounds (kiln bench tg64, median 12.1 -> 14.4 tok/s; the
 * matmuls alone, matmul_bench f16, in 6 of 7). BF16 keeps GEMV_ROWS (the Xeon's figures above; on Zen 5
 * one BF16 row at a time was within the host's spread). */
INL void gemv_f(int dt, float *y, const float *x, int n, const kiln_mat *m, int r0, int r1) {
    const int K = m->cols, M = m->rows;
    const size_t rb = kern_row_bytes(dt, K);
    const char *w = m->data;
    int r = r0;
    for (; dt != KILN_DT_F16 && r + GEMV_ROWS <= r1; r += GEMV_ROWS)
        for (int t = 0; t < n; t++) { /* tokens after the first re-read the rows from L2 */
            const char *rows = w + (size_t)r * rb;
            const float *xt = x + (size_t)t * K;
            float *yt = y + (size_t)t * M + r;
            if (dt == KILN_DT_BF16) dot_rows_bf16(rows, rb, xt, K, yt);
            else dot_rows_f(dt, rows, rb, xt, K, yt);
        }
    for (; r < r1; r++)
        for (int t = 0; t < n; t++) y[(size_t)t * M + r] = dot_row_f(dt, w + (size_t)r * rb, x + (size_t)t * K, K);
}

INL void gemm_f(int dt, float *y, const float *x, int n, const kiln_mat *m, int r0, int r1) {
    if (n < 4) {
        gemv_f(dt, y, x, n, m, r0, r1);
        return;
    }
    const int K = m->cols, M = m->rows;
    const size_t rb = kern_row_bytes(dt, K);
    int tb = (int)((256u << 10) / ((size_t)K * 4)); /* a token block of x stays in L2 */
    tb = tb < 4 ? 4 : tb > 64 ? 64 : tb & ~3;
    for (int t0 = 0; t0 < n; t0 += tb) {
        const int t1 = MIN(n, t0 + tb);
        int r = r0;
        for (; r + 4 <= r1; r += 4) {
            const char *w = (const char *)m->data + (size_t)r * rb;
            int t = t0;
            for (; t + 4 <= t1; t += 4) micro_f(dt, 4, 4, w, rb, x + (size_t)t * K, K, y + (size_t)t * M + r, M);
            for (; t < t1; t++) micro_f(dt, 4, 1, w, rb, x + (size_t)t * K, K, y + (size_t)t * M + r, M);
        }
        for (; r < r1; r++) {
            const char *w = (const char *)m->data + (size_t)r * rb;
            int t = t0;
            for (; t + 4 <= t1; t += 4) micro_f(dt, 1, 4, w, rb, x + (size_t)t * K, K, y + (size_t)t * M + r, M);
            for (; t < t1; t++) micro_f(dt, 1, 1, w, rb, x + (size_t)t * K, K, y + (size_t)t * M + r, M);
        }
    }
}

static void gemm_f32(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) { (void)tmp, gemm_f(KILN_DT_F32, y, x, n, m, r0, r1); }
static void gemm_f16(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) { (void)tmp, gemm_f(KILN_DT_F16, y, x, n, m, r0, r1); }
static void gemm_bf16(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) { (void)tmp, gemm_f(KILN_DT_BF16, y, x, n, m, r0, r1); }

/* ---- float weights against bf16 activations (vdpbf16ps; kern_scratch.bf16_dot) ----
 *
 * Prefill with BF16 / F16 weights: each token's activations are rounded to bf16 once per call (kern_matmul,
 * act_to_bf16 below), and one vdpbf16ps does 32 multiply-adds (16 pairs into 16 f32 lanes), twice the
 * f32 FMA's rate on this ISA. BF16 rows are read in place; F16 rows are first rounded to bf16 a row group
 * at a time into the thread's scratch (a tile reused by every token: the rounding costs one pass over the
 * weights per call, and f16 -> bf16 keeps 8 of f16's 11 significant bits). Register tile: 4 rows x
 * BF_T tokens; its 4 rows' sums come out as one 128-bit vector (reduce4). */
#define BF_T 6 /* tokens per register tile: 4 x 6 accumulators + 4 weight vectors + 1 token vector fit in 32 zmm */

/* Each token's activations rounded to bf16 (round to nearest even), values past n zeroed up to a multiple of
 * 32 so the kernels read whole vectors. */
static void act_to_bf16(const float *x, uint16_t *y, int n) {
    int k = 0;
    for (; k + 32 <= n; k += 32)
        _mm512_storeu_si512(y + k, (__m512i)_mm512_cvtne2ps_pbh(_mm512_loadu_ps(x + k + 16), _mm512_loadu_ps(x + k)));
    if (k < n) {
        const int left = n - k;
        const __mmask16 lo = lanes16(left), hi = lanes16(left - 16);
        _mm512_storeu_si512(y + k, (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, x + k + 16),
                                                                  _mm512_maskz_loadu_ps(lo, x + k)));
    }
}

/* The sums of a, b, c, d's 16 lanes, as one vector {sum a, sum b, sum c, sum d}. */
INL __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
    __m256 a8 = _mm256_add_ps(_mm512_castps512_ps256(a), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    __m256 b8 = _mm256_add_ps(_mm512_castps512_ps256(b), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(b), 1)));
    __m256 c8 = _mm256_add_ps(_mm512_castps512_ps256(c), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(c), 1)));
    __m256 d8 = _mm256_add_ps(_mm512_castps512_ps256(d), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(d), 1)));
    __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(a8, b8), _mm256_hadd_ps(c8, d8)); /* lanes: a b c d | a b c d */
    return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

/* One k step of micro_bf: the R rows' 32 weights at k (mk: the weights' tail; the activations' padding is
 * zero) against the T tokens'. */
INL void step_bf(int R, int T, const uint16_t *w, size_t ws, const uint16_t *x, size_t xs, int k, __mmask32 mk,
                 __m512 (*acc)[BF_T]) {
    __m512bh wv[4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) wv[i] = (__m512bh)_mm512_maskz_loadu_epi16(mk, w + i * ws + k);
#pragma GCC unroll 6
    for (int j = 0; j < T; j++) {
        const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + (size_t)j * xs + k);
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) acc[i][j] = _mm512_dpbf16_ps(acc[i][j], wv[i], xv);
    }
}

/* R (1 or 4) bf16 rows (ws values apart) x T tokens of bf16 activations (xs values apart, zero-padded to
 * 32); y[t * M + i]. The mask only on the last step: computed on every one it sat on the loop's critical
 * path. */
INL void micro_bf(int R, int T, const uint16_t *w, size_t ws, const uint16_t *x, size_t xs, int K, float *y, int M) {
    __m512 acc[4][BF_T];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 6
        for (int j = 0; j < T; j++) acc[i][j] = _mm512_setzero_ps();
    int k = 0;
    for (; k + 32 <= K; k += 32) step_bf(R, T, w, ws, x, xs, k, 0xffffffffu, acc);
    if (k < K) step_bf(R, T, w, ws, x, xs, k, lanes32(K - k), acc);
#pragma GCC unroll 6
    for (int j = 0; j < T; j++) {
        if (R == 4) _mm_storeu_ps(y + (size_t)j * M, reduce4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]));
        else y[(size_t)j * M] = _mm512_reduce_add_ps(acc[0][j]);
    }
}

/* R rows against every token of [t0, t1), BF_T at a time (constant T in each call: accumulators in registers). */
INL void rows_bf(int R, const uint16_t *w, size_t ws, const uint16_t *x, size_t xs, int t0, int t1, int K, float *y, int M) {
    int t = t0;
    for (; t + BF_T <= t1; t += BF_T) micro_bf(R, BF_T, w, ws, x + (size_t)t * xs, xs, K, y + (size_t)t * M, M);
    x += (size_t)t * xs, y += (size_t)t * M;
    switch (t1 - t) {
#define TAIL(T) case T: micro_bf(R, T, w, ws, x, xs, K, y, M); break;
    TAIL(1) TAIL(2) TAIL(3) TAIL(4) TAIL(5)
#undef TAIL
    default: break;
    }
}

/* rows bf16 rows w (ws values apart) x n tokens; y is the first row's column. Tokens in blocks whose
 * activations stay in L2 while the rows pass over them. */
static void gemm_bf_rows(const uint16_t *w, size_t ws, int rows, const uint16_t *x, size_t xs, int n, int K, float *y, int M) {
    int tb = (int)((256u << 10) / (xs * 2));
    tb = tb < BF_T ? BF_T : tb > 16 * BF_T ? 16 * BF_T : tb / BF_T * BF_T;
    for (int t0 = 0; t0 < n; t0 += tb) {
        const int t1 = MIN(n, t0 + tb);
        int r = 0;
        for (; r + 4 <= rows; r += 4) rows_bf(4, w + r * ws, ws, x, xs, t0, t1, K, y + r, M);
        for (; r < rows; r++) rows_bf(1, w + r * ws, ws, x, xs, t0, t1, K, y + r, M);
    }
}

static void gemm_bf16dot_bf16(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    (void)tmp;
    const uint16_t *w = (const uint16_t *)m->data + (size_t)r0 * m->cols;
    gemm_bf_rows(w, (size_t)m->cols, r1 - r0, x, kern_bf16_act_stride(m->cols), n, m->cols, y + r0, m->rows);
}

/* F16 rows rounded to bf16 into tmp, kern_bf16_tile_rows(cols) rows at a time, then as BF16 rows. */
static void gemm_bf16dot_f16(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    const int K = m->cols, step = kern_bf16_tile_rows(K);
    uint16_t *tile = tmp;
    for (int g = r0; g < r1; g += step) {
        const int rows = MIN(step, r1 - g);
        for (int r = 0; r < rows; r++) {
            const uint16_t *src = (const uint16_t *)m->data + (size_t)(g + r) * K;
            uint16_t *dst = tile + (size_t)r * K;
            for (int k = 0; k < K; k += 16) {
                const __mmask16 mk = lanes16(K - k);
                _mm256_mask_storeu_epi16(dst + k, mk, f16x16_to_bf16(_mm256_maskz_loadu_epi16(mk, src + k)));
            }
        }
        gemm_bf_rows(tile, (size_t)K, rows, x, kern_bf16_act_stride(K), n, K, y + g, m->rows);
    }
}

/* ---- quantised weights ---- */

/* Quantised rows are addressed as (first row's start, bytes between rows, bytes between blocks). */
INL __m256i load_wq(int dt, const char *blk) {
    if (dt == KILN_DT_Q8_0) {
        const block_q8_0 *bl = (const block_q8_0 *)blk;
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)bl->qs), _mm256_set1_epi8(Q8_UNSIGNED));
    }
    const block_q4_0 *bl = (const block_q4_0 *)blk;
    const __m128i q = _mm_loadu_si128((const __m128i *)bl->qs), lo4 = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), lo4), _mm_and_si128(q, lo4));
}

/* Both block types start with the f16 scale. */
INL float wscale(const char *blk) { return _cvtsh_ss(*(const uint16_t *)blk); }

INL void micro_q(int dt, int R, int T, const char *w, size_t rstep, size_t bstep, const act_q8 *x, int nb, float *y,
                 int M) {
    __m256 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) acc[i][j] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        __m256i wv[4];
        __m256 dw[4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            wv[i] = load_wq(dt, w + i * rstep + b * bstep);
            dw[i] = _mm256_set1_ps(wscale(w + i * rstep + b * bstep));
        }
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) {
            const act_q8 *a = x + (size_t)j * nb + b;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)a->qs);
            const __m256i c0 = _mm256_zextsi128_si256(_mm_cvtsi32_si128(a->corr));
            const __m256 dx = _mm256_set1_ps(a->d);
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                __m256i s = _mm256_dpbusd_epi32(c0, wv[i], xv);
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw[i], dx), acc[i][j]);
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) y[(size_t)j * M + i] = hsum256(acc[i][j]);
}


/* Two blocks per zmm halve the dpbusd / convert / FMA count per weight byte, which is what limits
 * a GEMV here (the loads alone would run at memory speed) and the GEMM's int8 throughput. */
/* How a block pair shares a zmm: Q8_0 keeps each block in a 256-bit half; Q4_0's nibble split interleaves
 * 128-bit quarters (lo0 lo1 hi0 hi1, 16 values each). Every lane pattern of a pair follows from this. */
#define PAIR_QUARTERS(dt) ((dt) == KILN_DT_Q4_0)
/* Lanes of block 1 in a pair, and the first of them. */
#define PAIR_MASK(dt) ((__mmask16)(PAIR_QUARTERS(dt) ? 0xf0f0 : 0xff00))
#define PAIR_FIRST1(dt) ((__mmask16)(PAIR_MASK(dt) & -PAIR_MASK(dt)))

INL __m512i load_wq2(int dt, const char *b0, const char *b1) {
    if (!PAIR_QUARTERS(dt)) {
        const size_t q = offsetof(block_q8_0, qs);
        __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b0 + q))),
                                       _mm256_loadu_si256((const __m256i *)(b1 + q)), 1);
        return _mm512_xor_si512(v, _mm512_set1_epi8(Q8_UNSIGNED));
    }
    const size_t q = offsetof(block_q4_0, qs);
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(b0 + q))),
                                        _mm_loadu_si128((const __m128i *)(b1 + q)), 1);
    /* lo0 lo1 hi0 hi1 (16 values each): block order is restored on the activation side (pair_x), once
     * per token instead of once per weight row */
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
}

INL __m512 wscale2(int dt, const char *b0, const char *b1) {
    const uint16_t d0 = *(const uint16_t *)b0, d1 = *(const uint16_t *)b1;
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)(d0 | ((uint32_t)d1 << 16))));
    /* lane i takes scale 1 where PAIR_MASK has bit i */
    return _mm512_permutexvar_ps(PAIR_QUARTERS(dt) ? _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0)
                                                   : _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                                 _mm512_castps128_ps512(f));
}

/* The activation side of a block pair: bytes, scales d_x, corrections (in lane 0 of each block). */
INL void pair_x(int dt, const act_q8 *a, __m512i *xv, __m512i *c0, __m512 *dx) {
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a[0].qs)),
                                   _mm256_loadu_si256((const __m256i *)a[1].qs), 1);
    /* quarters: x0[0:16] x1[0:16] x0[16:32] x1[16:32], the nibble order of load_wq2 */
    *xv = PAIR_QUARTERS(dt) ? _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0)) : v;
    *c0 = _mm512_mask_set1_epi32(_mm512_maskz_set1_epi32(1, a[0].corr), PAIR_FIRST1(dt), a[1].corr);
    *dx = _mm512_mask_mov_ps(_mm512_set1_ps(a[0].d), PAIR_MASK(dt), _mm512_set1_ps(a[1].d));
}

/* R rows x T tokens, two blocks per zmm; an odd last block goes through micro_q. */
INL void micro_q2(int dt, int R, int T, const char *w, size_t rstep, size_t bstep, const act_q8 *x, int nb, float *y,
                  int M) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) acc[i][j] = _mm512_setzero_ps();
    int b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m512i wv[4];
        __m512 dw[4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            const char *b0 = w + i * rstep + b * bstep;
            if (T == 1) _mm_prefetch(b0 + (size_t)(PF_VALUES / QK) * bstep, _MM_HINT_T0);
            wv[i] = load_wq2(dt, b0, b0 + bstep), dw[i] = wscale2(dt, b0, b0 + bstep);
        }
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) {
            __m512i xv, c0;
            __m512 dx;
            pair_x(dt, x + (size_t)j * nb + b, &xv, &c0, &dx);
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                __m512i s = _mm512_dpbusd_epi32(c0, wv[i], xv);
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[i], dx), acc[i][j]);
            }
        }
    }
    float tail[4][4] = {{0}};
    if (b < nb)
#pragma GCC unroll 4
        for (int j = 0; j < T; j++)
            micro_q(dt, R, 1, w + b * bstep, rstep, bstep, x + (size_t)j * nb + b, nb - b, &tail[j][0], 1);
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) y[(size_t)j * M + i] = _mm512_reduce_add_ps(acc[i][j]) + tail[j][i];
}

/* Plain rows w[0..rows) (rb bytes apart) x n tokens in tiles of 4 rows x 4 tokens; y is row 0's column.
 * Serves the rows after a matrix's last whole panel, plain matrices, and gathered panel rows. */
INL void tiles_q(int dt, float *y, int M, const act_q8 *x, int n, const char *w, int rows, int nb) {
    const size_t bsz = kern_formats[dt].block_bytes, rb = bsz * (size_t)nb;
    int tb = (int)((512u << 10) / ((size_t)nb * sizeof(act_q8)));
    tb = tb < 4 ? 4 : tb > 128 ? 128 : tb & ~3;
    for (int t0 = 0; t0 < n; t0 += tb) {
        const int t1 = MIN(n, t0 + tb);
        int r = 0;
        for (; r + 4 <= rows; r += 4) {
            int t = t0;
            for (; t + 4 <= t1; t += 4) micro_q2(dt, 4, 4, w + r * rb, rb, bsz, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
            for (; t < t1; t++) micro_q2(dt, 4, 1, w + r * rb, rb, bsz, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
        }
        for (; r < rows; r++) {
            int t = t0;
            for (; t + 4 <= t1; t += 4) micro_q2(dt, 1, 4, w + r * rb, rb, bsz, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
            for (; t < t1; t++) micro_q2(dt, 1, 1, w + r * rb, rb, bsz, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
        }
    }
}

/* ---- quantised weights in panels (kernels.h): prefill, batched and single-token decode ----
 *
 * Per panel block and token: a seed (the token's corr), then for each 64-byte group of 16 rows x 4
 * weights one vpdpbusd against a broadcast of the token's 4 matching activation bytes (Q8_0: 8 groups,
 * made unsigned by xor 0x80; Q4_0: 4 loads, each giving the low-nibble and the high-nibble group), one
 * convert and two float ops; the 16 rows' results are one vector, stored to y[t][r..r+16). Weight
 * vectors are loaded once per block for up to PANEL_TOKENS tokens. The int32 block sums are exact and
 * each lane accumulates its row's blocks in order, as the scalar reference does. */
#define PANEL_TOKENS 8
/* Many tokens re-read each panel from L2 once per 8-token tile: then it pays to prepare it once into the
 * caller's aligned scratch (KERN_LAYOUT_PREPARED, panel_prepared in kernels.h) with the weights already
 * unsigned and Q4_0's nibbles split. */
#define PANEL_PREP_N 128 /* measured crossover (bench/matmul_bench.c, n = 32..512) */
#define PANEL_PF_BLOCKS 24 /* software prefetch distance, in panel blocks (~13 KB Q8_0, ~7 KB Q4_0) */
typedef int32_t i32_alias __attribute__((may_alias)); /* 4 activation bytes read as one broadcast dword */

INL __m512i bcast4(const act_q8 *a, int i) { return _mm512_set1_epi32(*(const i32_alias *)&a->qs[i]); }

/* Bytes per panel block in layout lay (PANEL16: the storage format dt's; PREPARED: any dt's). */
INL size_t panel_block_bytes(int dt, kern_layout lay) {
    return lay == KERN_LAYOUT_PREPARED ? sizeof(panel_prepared) : kern_panel_block_bytes(dt);
}

/* Value group g (0..7: values 4g..4g+3 of the 16 rows) of the panel block at p, as unsigned bytes: from
 * storage (Q8_0: group g, xor 0x80; Q4_0: group g % 4, its low nibbles for g < 4, high ones after) or
 * from the prepared copy. (A Q4_0 group pair shares one load: the compiler merges the two.) */
INL __m512i panel_group(int dt, kern_layout lay, const char *p, int g) {
    if (lay == KERN_LAYOUT_PREPARED) return _mm512_load_si512(((const panel_prepared *)p)->w[g]);
    const kern_panel *pb = (const kern_panel *)p;
    if (dt == KILN_DT_Q8_0) return _mm512_xor_si512(_mm512_loadu_si512(pb->qs[g]), _mm512_set1_epi8(Q8_UNSIGNED));
    const __m512i raw = _mm512_loadu_si512(pb->qs[g & 3]);
    return _mm512_and_si512(g < 4 ? raw : _mm512_srli_epi16(raw, 4), _mm512_set1_epi8(0x0f));
}

/* One panel (its nb blocks from p, in layout lay) x T tokens (T <= PANEL_TOKENS); writes y[t][0..16) for
 * each token. */
INL void panel_tile(int dt, kern_layout lay, int T, const char *p, const act_q8 *x, int nb, float *y, int M, bool pf) {
    const size_t pbb = panel_block_bytes(dt, lay);
    __m512 facc[PANEL_TOKENS];
    const act_q8 *xt[PANEL_TOKENS];
#pragma GCC unroll 8
    for (int j = 0; j < T; j++) facc[j] = _mm512_setzero_ps(), xt[j] = x + (size_t)j * nb;
    for (int b = 0; b < nb; b++, p += pbb) {
        if (pf && lay != KERN_LAYOUT_PREPARED) /* a first pass streams the panel from memory: ask ahead */
            for (size_t o = 0; o < pbb; o += 64) _mm_prefetch(p + PANEL_PF_BLOCKS * pbb + o, _MM_HINT_T0);
        __m512i acc[PANEL_TOKENS];
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) acc[j] = _mm512_set1_epi32(xt[j][b].corr);
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m512i w = panel_group(dt, lay, p, g);
#pragma GCC unroll 8
            for (int j = 0; j < T; j++) acc[j] = _mm512_dpbusd_epi32(acc[j], w, bcast4(&xt[j][b], 4 * g));
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const kern_panel *)p)->d));
#pragma GCC unroll 8
        for (int j = 0; j < T; j++)
            facc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[j]), _mm512_mul_ps(dw, _mm512_set1_ps(xt[j][b].d)), facc[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < T; j++) _mm512_storeu_ps(y + (size_t)j * M, facc[j]);
}

/* A panel's nb blocks from storage p into the prepared layout at out. */
INL void panel_prepare(int dt, const char *p, int nb, panel_prepared *out) {
    const size_t pbb = kern_panel_block_bytes(dt);
    for (int b = 0; b < nb; b++, p += pbb, out++) {
        _mm256_store_si256((__m256i *)out->d, _mm256_loadu_si256((const __m256i *)((const kern_panel *)p)->d));
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) _mm512_store_si512(out->w[g], panel_group(dt, KERN_LAYOUT_PANEL16, p, g));
    }
}

/* All n tokens over one panel. */
INL void panel_tokens(int dt, kern_layout lay, const char *p, const act_q8 *x, int n, int nb, float *y, int M) {
    int t = 0;
    for (; t + PANEL_TOKENS <= n; t += PANEL_TOKENS)
        panel_tile(dt, lay, PANEL_TOKENS, p, x + (size_t)t * nb, nb, y + (size_t)t * M, M, t == 0);
    x += (size_t)t * nb, y += (size_t)t * M;
    switch (n - t) { /* constant T: the compiler keeps accumulators in registers */
#define TAIL(T) case T: panel_tile(dt, lay, T, p, x, nb, y, M, t == 0); break;
    TAIL(1) TAIL(2) TAIL(3) TAIL(4) TAIL(5) TAIL(6) TAIL(7)
#undef TAIL
    default: break;
    }
}

/* Whole panels straight from the weights (or, for many tokens, from a prepared copy in tmp); a panel row
 * outside a whole-panel range (only a direct caller's ragged range: the pool hands out multiples of 16)
 * is gathered into plain form in tmp; plain rows go to tiles. */
INL void gemm_q(int dt, float *y, const act_q8 *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    const int nb = m->cols / QK, pr = kern_panel_rows(m), M = m->rows;
    panel_prepared *prep = n >= PANEL_PREP_N ? kern_tmp_prepared(tmp) : NULL;
    char *buf = kern_tmp_row(tmp, m->cols);
    int r = r0;
    while (r < r1 && r < pr) {
        if (r % KERN_PANEL == 0 && r + KERN_PANEL <= r1) {
            const char *p = (const char *)kern_panel_block(m, r, 0);
            if (prep) { /* (two calls, not a ?: argument: each must see a constant layout) */
                panel_prepare(dt, p, nb, prep);
                panel_tokens(dt, KERN_LAYOUT_PREPARED, (const char *)prep, x, n, nb, y + r, M);
            } else
                panel_tokens(dt, KERN_LAYOUT_PANEL16, p, x, n, nb, y + r, M);
            r += KERN_PANEL;
            continue;
        }
        tiles_q(dt, y + r, M, x, n, kern_qrow_plain(m, r, buf), 1, nb);
        r++;
    }
    if (r < r1) tiles_q(dt, y + r, M, x, n, kern_qrow(m, r), r1 - r, nb);
}

static void gemm_q8(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) { gemm_q(KILN_DT_Q8_0, y, x, n, m, r0, r1, tmp); }
static void gemm_q4(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) { gemm_q(KILN_DT_Q4_0, y, x, n, m, r0, r1, tmp); }

/* The AVX-512 table; kern_isa_amx is the same with its own bf16 dot-product GEMMs. */
#define AVX512_TABLE(NAME, BF16DOT_F16, BF16DOT_BF16)                                                          \
    {                                                                                                          \
        .name = NAME,                                                                                          \
        .panels = {[KILN_DT_Q8_0] = true, [KILN_DT_Q4_0] = true, [KILN_DT_Q4_K] = true, [KILN_DT_Q6_K] = true}, \
        .gemm = {gemm_f32, gemm_f16, gemm_bf16, gemm_q8, gemm_q4, [KILN_DT_Q4_K] = kern_gemm_q4_k_avx512,        \
                 [KILN_DT_Q5_K] = kern_gemm_q5_k_avx512, [KILN_DT_Q6_K] = kern_gemm_q6_k_avx512,                 \
                 [KILN_DT_Q5_0] = kern_gemm_q5_0_avx512, [KILN_DT_IQ4_NL] = kern_gemm_iq4_nl_avx512,             \
                 [KILN_DT_Q4_1] = kern_gemm_q4_1_avx512, [KILN_DT_Q5_1] = kern_gemm_q5_1_avx512},                \
        .attention = kern_attention_avx512,                                                                    \
        .quantize_act = quantize_act_avx512,                                                                   \
        .quantize_q8_k = quantize_row_q8_K_avx512,                                                             \
        .silu_mul = silu_mul_avx512,                                                                           \
        .gemm_bf16dot = {[KILN_DT_F16] = BF16DOT_F16, [KILN_DT_BF16] = BF16DOT_BF16},                          \
        .to_bf16 = act_to_bf16,                                                                                \
        .gelu_tanh_mul = gelu_tanh_mul_avx512,                                                                 \
        .attention_block = kern_attention_block_avx512,                                                        \
    }
const kern_isa kern_isa_avx512 = AVX512_TABLE("avx512", gemm_bf16dot_f16, gemm_bf16dot_bf16);
const kern_isa kern_isa_amx = AVX512_TABLE("amx", kern_gemm_bf16dot_f16_amx, kern_gemm_bf16dot_bf16_amx);
