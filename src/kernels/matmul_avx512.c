/* matmul_avx512.c — AVX-512 (F/BW/VL/VNNI) matmul kernels.
 *
 * Float weights (F32/F16/BF16): widened to f32 in registers and multiplied with f32 FMA, so results
 * match the scalar reference to rounding order (the engine's f32 goldens hold). A 4-row x 4-token
 * micro-kernel keeps 16 zmm accumulators; K is walked 16 values at a time with a masked tail.
 *
 * Q8_0 / Q4_0 weights: int8 dot products with vpdpbusd on ymm (one 32-value block per register).
 * vpdpbusd multiplies UNSIGNED by signed bytes, so weights go in unsigned (Q8: w ^ 0x80 = w+128;
 * Q4: the stored nibble = w+8) and the activation block's precomputed corr = -c*sum(x) seeds the
 * accumulator (quant.h). Each block's int32 lanes are scaled by d_w*d_x into f32 accumulators.
 *
 * Tiling (both): a thread owns a chunk of rows [r0,r1); tokens are processed in blocks sized to stay
 * in L2; for each 4-row weight tile every token of the block is visited, so in decode (n=1) each
 * weight byte is read once and in prefill a weight tile is reused from L1 by all tokens of a block. */
#include <immintrin.h>

#include "kernels/matmul.h"

#define INL static inline __attribute__((always_inline))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define PF_VALUES 512 /* software prefetch distance in weight values */

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
        for (int i = 0; i < R; i++) {
            /* GEMV streams R rows at once: prefetch ahead so memory sees enough requests in flight */
            if (T == 1) _mm_prefetch(w + i * rb + (size_t)(k + PF_VALUES) * (dt == KILN_DT_F32 ? 4 : 2), _MM_HINT_T0);
            wv[i] = load_w(dt, w + i * rb, k, 0xffff);
        }
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)j * K + k);
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) acc[i][j] = _mm512_fmadd_ps(wv[i], xv, acc[i][j]);
        }
    }
    if (k < K) {
        __mmask16 mk = (__mmask16)((1u << (K - k)) - 1);
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

INL void gemm_f(int dt, float *y, const float *x, int n, const kiln_mat *m, int r0, int r1) {
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

static void gemm_f32(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1) { gemm_f(KILN_DT_F32, y, x, n, m, r0, r1); }
static void gemm_f16(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1) { gemm_f(KILN_DT_F16, y, x, n, m, r0, r1); }
static void gemm_bf16(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1) { gemm_f(KILN_DT_BF16, y, x, n, m, r0, r1); }

/* ---- quantised weights ---- */

INL __m256i load_wq(int dt, const char *row, int b) {
    if (dt == KILN_DT_Q8_0) {
        const block_q8_0 *bl = (const block_q8_0 *)row + b;
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)bl->qs), _mm256_set1_epi8((char)0x80));
    }
    const block_q4_0 *bl = (const block_q4_0 *)row + b;
    const __m128i q = _mm_loadu_si128((const __m128i *)bl->qs), lo4 = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), lo4), _mm_and_si128(q, lo4));
}

INL float wscale(int dt, const char *row, int b) {
    uint16_t d = dt == KILN_DT_Q8_0 ? ((const block_q8_0 *)row)[b].d : ((const block_q4_0 *)row)[b].d;
    return _cvtsh_ss(d);
}

INL float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INL void micro_q(int dt, int R, int T, const char *w, size_t rb, const act_q8 *x, int nb, float *y, int M) {
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
            wv[i] = load_wq(dt, w + i * rb, b);
            dw[i] = _mm256_set1_ps(wscale(dt, w + i * rb, b));
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
INL __m512i load_wq2(int dt, const char *row, int b) {
    if (dt == KILN_DT_Q8_0) {
        const block_q8_0 *bl = (const block_q8_0 *)row + b;
        __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)bl[0].qs)),
                                       _mm256_loadu_si256((const __m256i *)bl[1].qs), 1);
        return _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
    }
    const block_q4_0 *bl = (const block_q4_0 *)row + b;
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)bl[0].qs)),
                                        _mm_loadu_si128((const __m128i *)bl[1].qs), 1);
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1); /* lo0 lo1 hi0 hi1 */
    z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0));                               /* lo0 hi0 lo1 hi1 */
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
}

INL __m512 wscale2(int dt, const char *row, int b) {
    uint16_t d0, d1;
    if (dt == KILN_DT_Q8_0) d0 = ((const block_q8_0 *)row)[b].d, d1 = ((const block_q8_0 *)row)[b + 1].d;
    else d0 = ((const block_q4_0 *)row)[b].d, d1 = ((const block_q4_0 *)row)[b + 1].d;
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)(d0 | ((uint32_t)d1 << 16))));
    return _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), _mm512_castps128_ps512(f));
}

/* R rows x T tokens, two blocks per zmm; an odd last block goes through micro_q. */
INL void micro_q2(int dt, int R, int T, const char *w, size_t rb, const act_q8 *x, int nb, float *y, int M) {
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
            if (T == 1) _mm_prefetch(w + i * rb + (size_t)(b + PF_VALUES / QK) * (dt == KILN_DT_Q8_0 ? 34 : 18), _MM_HINT_T0);
            wv[i] = load_wq2(dt, w + i * rb, b), dw[i] = wscale2(dt, w + i * rb, b);
        }
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) {
            const act_q8 *a = x + (size_t)j * nb + b;
            const __m512i xv = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a[0].qs)),
                                                  _mm256_loadu_si256((const __m256i *)a[1].qs), 1);
            const __m512i c0 = _mm512_inserti64x4(_mm512_zextsi256_si512(_mm256_zextsi128_si256(_mm_cvtsi32_si128(a[0].corr))),
                                                  _mm256_zextsi128_si256(_mm_cvtsi32_si128(a[1].corr)), 1);
            const __m512 dx = _mm512_insertf32x8(_mm512_set1_ps(a[0].d), _mm256_set1_ps(a[1].d), 1);
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                __m512i s = _mm512_dpbusd_epi32(c0, wv[i], xv);
                acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw[i], dx), acc[i][j]);
            }
        }
    }
    float tail[4][4] = {{0}};
    const size_t bsz = dt == KILN_DT_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    if (b < nb)
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) micro_q(dt, R, 1, w + b * bsz, rb, x + (size_t)j * nb + b, nb - b, &tail[j][0], 1);
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) y[(size_t)j * M + i] = _mm512_reduce_add_ps(acc[i][j]) + tail[j][i];
}

INL void gemm_q(int dt, float *y, const act_q8 *x, int n, const kiln_mat *m, int r0, int r1) {
    const int nb = m->cols / QK, M = m->rows;
    const size_t rb = kern_row_bytes(dt, m->cols);
    int tb = (int)((512u << 10) / ((size_t)nb * sizeof(act_q8)));
    tb = tb < 4 ? 4 : tb > 128 ? 128 : tb & ~3;
    for (int t0 = 0; t0 < n; t0 += tb) {
        const int t1 = MIN(n, t0 + tb);
        int r = r0;
        for (; r + 4 <= r1; r += 4) {
            const char *w = (const char *)m->data + (size_t)r * rb;
            int t = t0;
            for (; t + 4 <= t1; t += 4) micro_q2(dt, 4, 4, w, rb, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
            for (; t < t1; t++) micro_q2(dt, 4, 1, w, rb, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
        }
        for (; r < r1; r++) {
            const char *w = (const char *)m->data + (size_t)r * rb;
            int t = t0;
            for (; t + 4 <= t1; t += 4) micro_q2(dt, 1, 4, w, rb, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
            for (; t < t1; t++) micro_q2(dt, 1, 1, w, rb, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
        }
    }
}

static void gemm_q8(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1) { gemm_q(KILN_DT_Q8_0, y, x, n, m, r0, r1); }
static void gemm_q4(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1) { gemm_q(KILN_DT_Q4_0, y, x, n, m, r0, r1); }

const kern_isa kern_isa_avx512 = {"avx512", {gemm_f32, gemm_f16, gemm_bf16, gemm_q8, gemm_q4}};
