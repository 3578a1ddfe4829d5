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
#include <stdbool.h>

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

/* One row against one token with four accumulators. Used when there are too few tokens for the 4x4
 * tiles (decode): row after row is then one sequential stream through the matrix, which this machine's
 * prefetcher serves faster than the 4 row streams of a 4-row tile (as for the quantised rows, kernels.h). */
INL float dot_row_f(int dt, const char *row, const float *x, int K) {
    const size_t es = dt == KILN_DT_F32 ? 4 : 2;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int k = 0;
    for (; k + 64 <= K; k += 64) {
        _mm_prefetch(row + (size_t)(k + PF_VALUES) * es, _MM_HINT_T0);
        if (es == 4) _mm_prefetch(row + (size_t)(k + PF_VALUES) * es + 128, _MM_HINT_T0);
        a0 = _mm512_fmadd_ps(load_w(dt, row, k, 0xffff), _mm512_loadu_ps(x + k), a0);
        a1 = _mm512_fmadd_ps(load_w(dt, row, k + 16, 0xffff), _mm512_loadu_ps(x + k + 16), a1);
        a2 = _mm512_fmadd_ps(load_w(dt, row, k + 32, 0xffff), _mm512_loadu_ps(x + k + 32), a2);
        a3 = _mm512_fmadd_ps(load_w(dt, row, k + 48, 0xffff), _mm512_loadu_ps(x + k + 48), a3);
    }
    for (; k < K; k += 16) {
        const __mmask16 mk = K - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (K - k)) - 1);
        a0 = _mm512_fmadd_ps(load_w(dt, row, k, mk), _mm512_maskz_loadu_ps(mk, x + k), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

INL void gemm_f(int dt, float *y, const float *x, int n, const kiln_mat *m, int r0, int r1) {
    const int K = m->cols, M = m->rows;
    const size_t rb = kern_row_bytes(dt, K);
    int tb = (int)((256u << 10) / ((size_t)K * 4)); /* a token block of x stays in L2 */
    tb = tb < 4 ? 4 : tb > 64 ? 64 : tb & ~3;
    if (n < 4) {
        for (int r = r0; r < r1; r++)
            for (int t = 0; t < n; t++)
                y[(size_t)t * M + r] = dot_row_f(dt, (const char *)m->data + (size_t)r * rb, x + (size_t)t * K, K);
        return;
    }
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

static void gemm_f32(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *scratch) { (void)scratch, gemm_f(KILN_DT_F32, y, x, n, m, r0, r1); }
static void gemm_f16(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *scratch) { (void)scratch, gemm_f(KILN_DT_F16, y, x, n, m, r0, r1); }
static void gemm_bf16(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *scratch) { (void)scratch, gemm_f(KILN_DT_BF16, y, x, n, m, r0, r1); }

/* ---- quantised weights ---- */

/* Quantised rows are addressed as (row start, bytes between its blocks): plain or interleaved (kernels.h). */
INL __m256i load_wq(int dt, const char *blk) {
    if (dt == KILN_DT_Q8_0) {
        const block_q8_0 *bl = (const block_q8_0 *)blk;
        return _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)bl->qs), _mm256_set1_epi8((char)0x80));
    }
    const block_q4_0 *bl = (const block_q4_0 *)blk;
    const __m128i q = _mm_loadu_si128((const __m128i *)bl->qs), lo4 = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), lo4), _mm_and_si128(q, lo4));
}

/* Both block types start with the f16 scale. */
INL float wscale(const char *blk) { return _cvtsh_ss(*(const uint16_t *)blk); }

INL float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

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
INL __m512i load_wq2(int dt, const char *b0, const char *b1) {
    if (dt == KILN_DT_Q8_0) {
        __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b0 + 2))),
                                       _mm256_loadu_si256((const __m256i *)(b1 + 2)), 1);
        return _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
    }
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(b0 + 2))),
                                        _mm_loadu_si128((const __m128i *)(b1 + 2)), 1);
    /* lo0 lo1 hi0 hi1 (16 values each): block order is restored on the activation side (pair_x), once
     * per token instead of once per weight row */
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
    return _mm512_and_si512(z, _mm512_set1_epi8(0x0f));
}

INL __m512 wscale2(int dt, const char *b0, const char *b1) {
    const uint16_t d0 = *(const uint16_t *)b0, d1 = *(const uint16_t *)b1;
    __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)(d0 | ((uint32_t)d1 << 16))));
    return _mm512_permutexvar_ps(dt == KILN_DT_Q8_0 ? _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0)
                                                    : _mm512_set_epi32(1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0),
                                 _mm512_castps128_ps512(f));
}

/* Lanes of block 1 in a zmm pair: Q8_0 keeps blocks in 256-bit halves, Q4_0 interleaves 128-bit quarters
 * (x0[0:16] x1[0:16] x0[16:32] x1[16:32]) to match the nibble order of load_wq2. */
#define PAIR_MASK(dt) ((__mmask16)((dt) == KILN_DT_Q8_0 ? 0xff00 : 0xf0f0))

/* The activation side of a block pair: bytes, scales d_x, corrections (in lane 0 of each block). */
INL void pair_x(int dt, const act_q8 *a, __m512i *xv, __m512i *c0, __m512 *dx) {
    __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a[0].qs)),
                                   _mm256_loadu_si256((const __m256i *)a[1].qs), 1);
    *xv = dt == KILN_DT_Q8_0 ? v : _mm512_shuffle_i64x2(v, v, _MM_SHUFFLE(3, 1, 2, 0));
    *c0 = _mm512_mask_set1_epi32(_mm512_maskz_set1_epi32(1, a[0].corr), dt == KILN_DT_Q8_0 ? 0x100 : 0x10, a[1].corr);
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

/* ---- quantised GEMM over packed 16-row panels (prefill, batched decode) ----
 *
 * The GEMV layout above spends most instructions assembling operands (block pairs, scales, corrections)
 * per 4x4 tile; with many tokens that overhead, not the dot products, bounds it. So for n >= PANEL_MIN_N
 * each 16-row panel is first repacked (once per call, into per-thread scratch) in the layout vpdpbusd
 * wants for broadcast activations:
 *
 *   per block b: f16 dw[16] (32 B, then 32 B unused to keep the rest aligned), then for s = 0..7:
 *   u8 w[16 rows][4] (64 B) = values 4s..4s+3 of each row, unsigned (q8: w ^ 0x80, q4: the raw nibble)
 *   — 576 bytes per block.
 *
 * A token then costs per block 8 vpdpbusd with a 4-byte broadcast of its own activation bytes (memory
 * operand), one seed (its corr), one convert and two float ops, for 16 rows at once; y gets 16 contiguous
 * outputs per token. The int32 block sums are exact, and each lane accumulates its row's blocks in order,
 * as the scalar reference does. */
#define PANEL 16
typedef int32_t i32_alias __attribute__((may_alias)); /* 4 activation bytes read as one broadcast dword */
#define PANEL_MIN_N 5 /* measured: below 5 tokens the per-call packing costs more than it saves */
#define PANEL_TOKENS 8
#define PANEL_BLOCK_BYTES (PANEL * 4 + PANEL * QK)

static size_t gemm_q_scratch(const kiln_mat *m, int n) {
    return n >= PANEL_MIN_N && m->rows >= PANEL ? (size_t)(m->cols / QK) * PANEL_BLOCK_BYTES : 0;
}

/* One block of 16 rows as 8 zmm of their 32 unsigned bytes, row i and i+8 in the halves of z[i]. */
INL void panel_load_block(int dt, const char *const *w, const size_t *bstep, int b, __m512i z[8]) {
#pragma GCC unroll 8
    for (int i = 0; i < 8; i++) {
        const char *lo = w[i] + (size_t)b * bstep[i] + 2, *hi = w[i + 8] + (size_t)b * bstep[i + 8] + 2;
        if (dt == KILN_DT_Q8_0) {
            __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)lo)),
                                           _mm256_loadu_si256((const __m256i *)hi), 1);
            z[i] = _mm512_xor_si512(v, _mm512_set1_epi8((char)0x80));
        } else { /* nibbles: low = values 0..15, high = 16..31 */
            __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)lo)),
                                                _mm_loadu_si128((const __m128i *)hi), 1);
            __m512i q = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
            q = _mm512_and_si512(q, _mm512_set1_epi8(0x0f)); /* lo_i lo_i+8 hi_i hi_i+8 */
            z[i] = _mm512_shuffle_i64x2(q, q, _MM_SHUFFLE(3, 1, 2, 0));
        }
    }
}

/* 16 rows x 8 dwords -> 8 x (dword s of rows 0..15): an 8x8 dword transpose in each 256-bit half
 * (rows 0-7 low, 8-15 high), then qword permutes put rows 0-3,4-7 | 8-11,12-15 in order. */
INL void panel_transpose_store(__m512i z[8], char *out) {
    __m512i t[8], u[8];
#pragma GCC unroll 8
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm512_unpacklo_epi32(z[2 * i], z[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(z[2 * i], z[2 * i + 1]);
    }
#pragma GCC unroll 8
    for (int h = 0; h < 2; h++) { /* h = 0: rows 0-3 (and 8-11), h = 1: rows 4-7 (and 12-15) */
        u[4 * h + 0] = _mm512_unpacklo_epi64(t[4 * h], t[4 * h + 2]);     /* dwords 0 | 4 */
        u[4 * h + 1] = _mm512_unpackhi_epi64(t[4 * h], t[4 * h + 2]);     /* 1 | 5 */
        u[4 * h + 2] = _mm512_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]); /* 2 | 6 */
        u[4 * h + 3] = _mm512_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]); /* 3 | 7 */
    }
    const __m512i first = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0), second = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
#pragma GCC unroll 8
    for (int s = 0; s < 4; s++) {
        _mm512_store_si512((__m512i *)(out + s * 64), _mm512_permutex2var_epi64(u[s], first, u[s + 4]));
        _mm512_store_si512((__m512i *)(out + (s + 4) * 64), _mm512_permutex2var_epi64(u[s], second, u[s + 4]));
    }
}

/* Rows r..r+15 (any addressing, kern_qrow) into the panel layout above; out is 64-byte aligned. */
INL void panel_pack(int dt, const kiln_mat *m, int r, char *out) {
    const char *w[PANEL];
    size_t bstep[PANEL];
    int32_t off[PANEL], step[PANEL];
    for (int i = 0; i < PANEL; i++) {
        w[i] = kern_qrow(m, r + i, &bstep[i]);
        off[i] = (int32_t)(w[i] - w[0]), step[i] = (int32_t)bstep[i]; /* rows ascend: 0 <= off < 16 rows */
    }
    /* the 16 scales of a block by one gather (4 bytes from each block start, f16 in the low half): 16
     * scalar stores read back as one vector would stall on store forwarding */
    __m512i idx = _mm512_loadu_si512(off);
    const __m512i stepv = _mm512_loadu_si512(step);
    const int nb = m->cols / QK;
    for (int b = 0; b < nb; b++, out += PANEL_BLOCK_BYTES, idx = _mm512_add_epi32(idx, stepv)) {
        _mm256_store_si256((__m256i *)out, _mm512_cvtepi32_epi16(_mm512_i32gather_epi32(idx, w[0], 1)));
        __m512i z[8];
        panel_load_block(dt, w, bstep, b, z);
        panel_transpose_store(z, out + PANEL * 4);
    }
}

/* 16 packed rows x T tokens (T <= PANEL_TOKENS), all nb blocks; writes y[t][0..16) for each token. */
INL void panel_tile(int T, const char *p, const act_q8 *x, int nb, float *y, int M, const char *pf, size_t pf_step) {
    __m512 facc[PANEL_TOKENS];
    const act_q8 *xt[PANEL_TOKENS];
#pragma GCC unroll 8
    for (int j = 0; j < T; j++) facc[j] = _mm512_setzero_ps(), xt[j] = x + (size_t)j * nb;
    for (int b = 0; b < nb; b++, p += PANEL_BLOCK_BYTES) {
        __m512i acc[PANEL_TOKENS];
        if (pf) /* the next panel's weights, 1/nb of them per block: memory works while this panel computes */
            for (size_t o = 0; o < pf_step; o += 64) _mm_prefetch(pf + b * pf_step + o, _MM_HINT_T1);
#pragma GCC unroll 8
        for (int j = 0; j < T; j++) acc[j] = _mm512_set1_epi32(xt[j][b].corr);
#pragma GCC unroll 8
        for (int s = 0; s < 8; s++) {
            const __m512i w = _mm512_load_si512((const __m512i *)(p + PANEL * 4 + s * 64));
#pragma GCC unroll 8
            for (int j = 0; j < T; j++)
                acc[j] = _mm512_dpbusd_epi32(acc[j], w, _mm512_set1_epi32(*(const i32_alias *)&xt[j][b].qs[4 * s]));
        }
        const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)p));
#pragma GCC unroll 8
        for (int j = 0; j < T; j++)
            facc[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[j]), _mm512_mul_ps(dw, _mm512_set1_ps(xt[j][b].d)), facc[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < T; j++) _mm512_storeu_ps(y + (size_t)j * M, facc[j]);
}

/* All n tokens over one packed panel. pf/pf_step: see panel_tile (only the first token tile prefetches). */
static void panel_tokens(const char *p, const act_q8 *x, int n, int nb, float *y, int M, const char *pf, size_t pf_step) {
    int t = 0;
    for (; t + PANEL_TOKENS <= n; t += PANEL_TOKENS, pf = NULL)
        panel_tile(PANEL_TOKENS, p, x + (size_t)t * nb, nb, y + (size_t)t * M, M, pf, pf_step);
    x += (size_t)t * nb, y += (size_t)t * M;
    switch (n - t) { /* constant T: the compiler keeps accumulators in registers */
#define TAIL(T) case T: panel_tile(T, p, x, nb, y, M, pf, pf_step); break;
    TAIL(1) TAIL(2) TAIL(3) TAIL(4) TAIL(5) TAIL(6) TAIL(7)
#undef TAIL
    default: break;
    }
}

/* Tiles of 4 rows x 4 tokens. A 4-row tile must share one addressing pattern: the 4 rows of one
 * interleave group, or 4 plain rows; other rows (an interleaved matrix's ragged start or plain tail)
 * go one at a time. */
INL void gemm_q_tiles(int dt, float *y, const act_q8 *x, int n, const kiln_mat *m, int r0, int r1) {
    const int nb = m->cols / QK, M = m->rows, il = m->il > 1 ? m->il : 1, grouped = M / il * il;
    const size_t rb = kern_row_bytes(dt, m->cols);
    int tb = (int)((512u << 10) / ((size_t)nb * sizeof(act_q8)));
    tb = tb < 4 ? 4 : tb > 128 ? 128 : tb & ~3;
    for (int t0 = 0; t0 < n; t0 += tb) {
        const int t1 = MIN(n, t0 + tb);
        for (int r = r0; r < r1;) {
            size_t bstep;
            const char *w = kern_qrow(m, r, &bstep);
            const bool four = r + 4 <= r1 && (il == 1 || r >= grouped || r % il + 4 <= il);
            const size_t rstep = il == 1 || r >= grouped ? rb : bstep / (size_t)il;
            int t = t0;
            if (four) {
                for (; t + 4 <= t1; t += 4) micro_q2(dt, 4, 4, w, rstep, bstep, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
                for (; t < t1; t++) micro_q2(dt, 4, 1, w, rstep, bstep, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
                r += 4;
            } else {
                for (; t + 4 <= t1; t += 4) micro_q2(dt, 1, 4, w, rstep, bstep, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
                for (; t < t1; t++) micro_q2(dt, 1, 1, w, rstep, bstep, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
                r += 1;
            }
        }
    }
}

/* Whole 16-row panels through the packed path when there is scratch for it; the rest (a matrix's last
 * rows < 16, or no scratch) through the tiles. */
INL void gemm_q(int dt, float *y, const act_q8 *x, int n, const kiln_mat *m, int r0, int r1, void *scratch) {
    if (scratch && n >= PANEL_MIN_N) {
        const int nb = m->cols / QK;
        /* rows are 16 row-lengths of bytes apart whatever the interleave (a group fills il plain rows) */
        const size_t rb = kern_row_bytes(dt, m->cols);
        for (; r0 + PANEL <= r1; r0 += PANEL) {
            panel_pack(dt, m, r0, scratch);
            const char *next = r0 + 2 * PANEL <= r1 ? (const char *)m->data + (size_t)(r0 + PANEL) * rb : NULL;
            panel_tokens(scratch, x, n, nb, y + r0, m->rows, next, PANEL * rb / (size_t)nb);
        }
    }
    if (r0 < r1) gemm_q_tiles(dt, y, x, n, m, r0, r1);
}

static void gemm_q8(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *scratch) { gemm_q(KILN_DT_Q8_0, y, x, n, m, r0, r1, scratch); }
static void gemm_q4(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *scratch) { gemm_q(KILN_DT_Q4_0, y, x, n, m, r0, r1, scratch); }

const kern_isa kern_isa_avx512 = {"avx512", {gemm_f32, gemm_f16, gemm_bf16, gemm_q8, gemm_q4}, gemm_q_scratch, kern_attention_avx512, quantize_act_avx512};
