/* matmul_legacy_avx512.c — AVX-512 VNNI matmul for the 32-value formats Q5_0 and IQ4_NL (against Q8_0
 * activations) and Q4_1 / Q5_1 (against Q8_1), the scalar reference being kern_*_vec_dot (llama.cpp's
 * generic arithmetic). llama-quantize's _M mixes fall back to Q5_0 for rows that are not whole 256-value
 * super-blocks (Gemma 3's 1152), so half of such a file's matrices are Q5_0.
 *
 * Two blocks share a zmm, decoded in registers into unsigned bytes in value order: the stored 4- or 5-bit
 * q (nibbles split, a Q5 qh's 64 bits applied as a byte mask; Q5_0's q is w + 16), or IQ4_NL's table value
 * + 128 (one vpshufb of the nibbles). vpdpbusd multiplies them with the token's int8 quants, seeded with
 * the offset's share -offset * sum(x) (one vpdpbusd of the offset per token and block pair, shared by the
 * tile's rows), so each int32 lane group is the block's exact integer dot; one convert and one FMA by
 * d_w * d_x per pair into 16 float lanes (Q4_1 / Q5_1: one more FMA, m * s in the lanes 0 and 8), summed
 * once per row and token. Tiles of 4 rows x 4 tokens (the K-quant kernels' R x T idea with the legacy
 * panels' pair trick); one token (decode) streams 4 rows; many tokens read each 4-row group decoded once
 * per token block from the thread's scratch. */
#include <immintrin.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "kernels/kquants.h"
#include "kernels/matmul.h"
#include "kernels/simd_x86.h"

#define LQ_ROWS 4
#define LQ_TOKENS 4
#define LQ_PF_BLOCKS 16 /* software prefetch distance for a GEMV's row streams (512 values, as matmul_avx512.c) */

/* What each weight gets added to make it unsigned for vpdpbusd (Q4_1 / Q5_1 store unsigned q). */
INL int lq_offset(int dt) { return dt == KILN_DT_Q5_0 ? 16 : dt == KILN_DT_IQ4_NL ? 128 : 0; }
/* Q4_1 / Q5_1: x = d*q + m, against Q8_1 activations (their s = d_x * sum(x) carries the m term). */
INL bool lq_has_min(int dt) { return dt == KILN_DT_Q4_1 || dt == KILN_DT_Q5_1; }

/* A block's 16 nibble bytes (every format: value i low nibble of qs[i], value i + 16 the high nibble). */
INL const uint8_t *lq_qs(int dt, const char *blk) {
    switch (dt) {
    case KILN_DT_Q5_0: return ((const block_q5_0 *)blk)->qs;
    case KILN_DT_Q4_1: return ((const block_q4_1 *)blk)->qs;
    case KILN_DT_Q5_1: return ((const block_q5_1 *)blk)->qs;
    default: return ((const block_iq4_nl *)blk)->qs;
    }
}
/* A Q5's bit 4 of each value (NULL: none). */
INL const uint8_t *lq_qh_bytes(int dt, const char *blk) {
    return dt == KILN_DT_Q5_0 ? ((const block_q5_0 *)blk)->qh : dt == KILN_DT_Q5_1 ? ((const block_q5_1 *)blk)->qh : NULL;
}
INL uint32_t lq_qh(int dt, const char *blk) {
    uint32_t h;
    memcpy(&h, lq_qh_bytes(dt, blk), sizeof h);
    return h;
}

/* Blocks b0 and (if two; else zeros) b0 + bsz as 64 unsigned bytes: b0's 32 values, then b1's. */
INL __m512i lq_pair_w(int dt, const char *b0, size_t bsz, bool two) {
    const __m128i q0 = _mm_loadu_si128((const __m128i *)lq_qs(dt, b0));
    const __m128i q1 = two ? _mm_loadu_si128((const __m128i *)lq_qs(dt, b0 + bsz)) : _mm_setzero_si128();
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1);
    const __m512i lo4 = _mm512_set1_epi8(0x0f);
    __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
    z = _mm512_and_si512(z, lo4);                            /* lo0 lo1 hi0 hi1, 16 values each */
    z = _mm512_shuffle_i64x2(z, z, _MM_SHUFFLE(3, 1, 2, 0)); /* lo0 hi0 lo1 hi1: value order */
    if (lq_qh_bytes(dt, b0)) {
        const uint64_t h = lq_qh(dt, b0) | (two ? (uint64_t)lq_qh(dt, b0 + bsz) << 32 : 0);
        return _mm512_mask_add_epi8(z, (__mmask64)h, z, _mm512_set1_epi8(0x10)); /* bit 4 is clear: + is | */
    }
    if (dt != KILN_DT_IQ4_NL) return z;
    /* the table + 128 (xor 0x80 on int8) in every 128-bit lane */
    const __m128i t = _mm_xor_si128(_mm_loadu_si128((const __m128i *)kern_iq4nl_values), _mm_set1_epi8((char)0x80));
    return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(t), z);
}

/* The f16 steps at p0 and (if two; else 0) p1 as 16 float lanes: lanes 0..7 (the first block's int32
 * sums) p0's, 8..15 p1's. One convert and one permute, not two scalar converts and broadcasts. */
INL __m512 lq_pair_scale(const void *p0, const void *p1, bool two) {
    uint16_t d0, d1 = 0;
    memcpy(&d0, p0, sizeof d0);
    if (two) memcpy(&d1, p1, sizeof d1);
    const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128((int)(d0 | (uint32_t)d1 << 16)));
    return _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), _mm512_castps128_ps512(f));
}

/* One row's block pair decoded (the form many tokens read from the caller's scratch, 64-byte aligned). */
typedef struct {
    __m512i w; /* lq_pair_w */
    __m512 d;  /* lq_pair_scale of the steps */
    __m512 m;  /* Q4_1 / Q5_1: the minimums in lanes 0 and 8, zeros elsewhere */
} lq_pair;
/* Many tokens: each 4-row group's pairs are decoded once per token block into tmp, not once per 4 tokens. */
#define LQ_PREP_N 8

INL lq_pair lq_decode(int dt, const char *b0, size_t bsz, bool two) {
    lq_pair p = {lq_pair_w(dt, b0, bsz, two), lq_pair_scale(b0, b0 + bsz, two), _mm512_setzero_ps()};
    if (lq_has_min(dt)) /* m follows d in both blocks */
        p.m = _mm512_maskz_mov_ps((__mmask16)0x0101, lq_pair_scale(b0 + 2, b0 + bsz + 2, two));
    return p;
}
/* Bytes per activation block and where its quants start (Q8_0: d, qs; Q8_1: d, s, qs). */
INL size_t lq_act_bytes(int dt) { return kern_acts[kern_formats[dt].act].block_bytes; }
INL size_t lq_act_qs(int dt) { return lq_has_min(dt) ? offsetof(block_q8_1, qs) : offsetof(block_q8_0, qs); }

/* acc[i][j] += rows i x tokens j over the block pair at b (or the single last block: two false). w: the
 * first row's start, rb bytes between rows (or, prepared, prep: row i's np decoded pairs at prep + i * np);
 * x: the first token's Q8_0 blocks, xb bytes between tokens. */
INL void lq_step(int dt, int R, int T, bool two, bool prepared, const char *w, size_t rb, const lq_pair *prep, int np,
                 const char *x, size_t xb, int b, __m512 acc[LQ_ROWS][LQ_TOKENS]) {
    const size_t bsz = kern_formats[dt].block_bytes;
    lq_pair wr[LQ_ROWS];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
        if (prepared) {
            wr[i] = prep[(size_t)i * np + b / 2];
            continue;
        }
        const char *b0 = w + i * rb + (size_t)b * bsz;
        if (T == 1) _mm_prefetch(b0 + LQ_PF_BLOCKS * bsz, _MM_HINT_T0);
        wr[i] = lq_decode(dt, b0, bsz, two);
    }
    const __m512i off = _mm512_set1_epi8((char)lq_offset(dt));
#pragma GCC unroll 4
    for (int j = 0; j < T; j++) {
        const size_t ab = lq_act_bytes(dt);
        const char *a0 = x + (size_t)j * xb + (size_t)b * ab, *a1 = a0 + ab; /* both start with the f16 d */
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)(a0 + lq_act_qs(dt)));
        const __m256i x1 = two ? _mm256_loadu_si256((const __m256i *)(a1 + lq_act_qs(dt))) : _mm256_setzero_si256();
        const __m512i xv = _mm512_inserti64x4(_mm512_castsi256_si512(x0), x1, 1);
        const __m512i c0 = lq_offset(dt) ? _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, xv))
                                         : _mm512_setzero_si512();
        const __m512 dx = lq_pair_scale(a0, a1, two);
        const __m512 sx = lq_has_min(dt) ? lq_pair_scale(a0 + offsetof(block_q8_1, s), a1 + offsetof(block_q8_1, s), two)
                                         : _mm512_setzero_ps();
#pragma GCC unroll 4
        for (int i = 0; i < R; i++) {
            const __m512i s = _mm512_dpbusd_epi32(c0, wr[i].w, xv);
            acc[i][j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(wr[i].d, dx), acc[i][j]);
            if (lq_has_min(dt)) acc[i][j] = _mm512_fmadd_ps(wr[i].m, sx, acc[i][j]);
        }
    }
}

/* R rows x T tokens (constants at each call: the accumulators stay in registers) into y[t * M + i]. */
INL void lq_micro(int dt, int R, int T, bool prepared, const char *w, size_t rb, const lq_pair *prep, const char *x,
                  size_t xb, int nb, float *y, int M) {
    __m512 acc[LQ_ROWS][LQ_TOKENS];
    const int np = (nb + 1) / 2;
#pragma GCC unroll 4
    for (int i = 0; i < LQ_ROWS; i++)
#pragma GCC unroll 4
        for (int j = 0; j < LQ_TOKENS; j++) acc[i][j] = _mm512_setzero_ps();
    int b = 0;
    for (; b + 2 <= nb; b += 2) lq_step(dt, R, T, true, prepared, w, rb, prep, np, x, xb, b, acc);
    if (b < nb) lq_step(dt, R, T, false, prepared, w, rb, prep, np, x, xb, b, acc);
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) y[(size_t)j * M + i] = _mm512_reduce_add_ps(acc[i][j]);
}

/* R rows from w (rb bytes apart) x tokens [t0, t1), LQ_TOKENS at a time; with prep (not NULL), the rows are
 * decoded into it first. y: row 0's column. */
INL void lq_rows(int dt, int R, const char *w, size_t rb, lq_pair *prep, const char *x, size_t xb, int t0, int t1,
                 int nb, float *y, int M) {
    int t = t0;
    if (prep) {
        const int np = (nb + 1) / 2;
        for (int i = 0; i < R; i++)
            for (int p = 0; p < np; p++)
                prep[(size_t)i * np + p] = lq_decode(dt, w + i * rb + (size_t)(2 * p) * kern_formats[dt].block_bytes,
                                                     kern_formats[dt].block_bytes, 2 * p + 1 < nb);
        for (; t + LQ_TOKENS <= t1; t += LQ_TOKENS)
            lq_micro(dt, R, LQ_TOKENS, true, w, rb, prep, x + (size_t)t * xb, xb, nb, y + (size_t)t * M, M);
        for (; t < t1; t++) lq_micro(dt, R, 1, true, w, rb, prep, x + (size_t)t * xb, xb, nb, y + (size_t)t * M, M);
        return;
    }
    for (; t + LQ_TOKENS <= t1; t += LQ_TOKENS)
        lq_micro(dt, R, LQ_TOKENS, false, w, rb, NULL, x + (size_t)t * xb, xb, nb, y + (size_t)t * M, M);
    for (; t < t1; t++) lq_micro(dt, R, 1, false, w, rb, NULL, x + (size_t)t * xb, xb, nb, y + (size_t)t * M, M);
}

/* Rows [r0, r1) x n tokens, tokens in blocks whose activations stay in L2 while the rows pass over them.
 * tmp (kern_gemm_tmp_bytes: at least 18 bytes a value, 4 decoded rows need 12) or NULL (every row decoded
 * per 4-token tile, as for few tokens). */
INL void gemm_lq(int dt, float *y, const void *xv, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    const int nb = m->cols / QK, M = m->rows;
    const size_t rb = kern_row_bytes(dt, m->cols), xb = kern_act_row_bytes(kern_formats[dt].act, m->cols);
    const char *x = xv, *w0 = m->data;
    lq_pair *prep = n >= LQ_PREP_N ? tmp : NULL;
    int tb = (int)((256u << 10) / xb);
    tb = tb < LQ_TOKENS ? LQ_TOKENS : tb & ~(LQ_TOKENS - 1);
    for (int t0 = 0; t0 < n; t0 += tb) {
        const int t1 = MIN(n, t0 + tb);
        int r = r0;
        for (; r + LQ_ROWS <= r1; r += LQ_ROWS) lq_rows(dt, LQ_ROWS, w0 + (size_t)r * rb, rb, prep, x, xb, t0, t1, nb, y + r, M);
        for (; r < r1; r++) lq_rows(dt, 1, w0 + (size_t)r * rb, rb, prep, x, xb, t0, t1, nb, y + r, M);
    }
}

void kern_gemm_q5_0_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    gemm_lq(KILN_DT_Q5_0, y, x, n, m, r0, r1, tmp);
}
void kern_gemm_iq4_nl_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    gemm_lq(KILN_DT_IQ4_NL, y, x, n, m, r0, r1, tmp);
}
void kern_gemm_q4_1_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    gemm_lq(KILN_DT_Q4_1, y, x, n, m, r0, r1, tmp);
}
void kern_gemm_q5_1_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    gemm_lq(KILN_DT_Q5_1, y, x, n, m, r0, r1, tmp);
}
