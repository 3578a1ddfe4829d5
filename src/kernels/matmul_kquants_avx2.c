/* matmul_kquants_avx2.c — AVX2 matmul for Q4_K, Q5_K and Q6_K weights against Q8_K activations (the
 * scalar reference: kern_q*_k_vec_dot, llama.cpp's generic arithmetic; the AVX-512 design of
 * matmul_kquants_avx512.c with pmaddubsw + pmaddwd in place of vpdpbusd).
 *
 * Per weight row and 256-value super-block, the quants are unpacked once into 8 ymm of unsigned bytes in
 * value order (Q4_K 0..15, Q5_K 0..31, Q6_K 0..63 = q + 32), each with the int16 scale of its 16-bit lanes;
 * then for each token of a tile: pmaddubsw (pairs; at most 2 * 63 * 127, so it never saturates), pmaddwd
 * by the scales (int32, exact), one convert and FMA by d * d_x into the token's float lanes, summed once
 * per row. What the unsigned form adds comes off through the
 * Q8_K group sums (bsums), one pmaddwd each: Q6_K's 32 * sum(scale * bsum), and the Q4_K / Q5_K mins term
 * dmin * sum(min * bsum), as in the reference. The integer sums are exact; only the f32 scaling rounds in
 * another order than the reference's 8 float lanes. */
#include <immintrin.h>

#include "kernels/kquants.h"
#include "kernels/kquants_x86.h"
#include "kernels/matmul.h"
#include "kernels/simd_x86.h"

#define KQ_TOKENS 8 /* tokens sharing one unpacked super-block */

/* One super-block, unpacked. */
typedef struct {
    __m256i q[8];  /* unsigned quants, values 32k..32k+31 */
    __m256i sc[8]; /* the int16 scale of each 16-bit lane of pmaddubsw(q[k], x) */
    __m256i cw;    /* per group of 16: int16 weight of its bsum in the integer sum (Q6_K: -32 * scale) */
    __m256i mw;    /* per group of 16: int16 weight of its bsum in the mins term (Q4_K / Q5_K: the min) */
    float d, dmin;
} kq_super;

/* 16 int16 lanes, lane i = byte first + i / per of v (sign-extended). */
INL __m256i spread16(__m128i v, int first, int per) {
    char idx[16];
    for (int i = 0; i < 16; i++) idx[i] = (char)(first + i / per);
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(v, _mm_loadu_si128((const __m128i *)idx)));
}

/* Q4_K / Q5_K: 8 blocks of 32, one per ymm; the min of block j weights bsum groups 2j and 2j+1. */
INL void k4_scales(const uint8_t packed[K_SCALE_SIZE], kq_super *u) {
    uint32_t w[4]; /* scales in bytes 0..7, mins in 8..15: kept in registers */
    kern_scale_min_k4_words(packed, w);
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) u->sc[k] = _mm256_set1_epi16((short)((w[k / 4] >> (8 * (k % 4))) & 0xff));
    u->mw = spread16(_mm_setr_epi32((int)w[0], (int)w[1], (int)w[2], (int)w[3]), 8, 2); /* mins <= 63 */
    u->cw = _mm256_setzero_si256();
}

/* Q4_K (qh NULL) or Q5_K. */
INL void unpack_k4(kq_k4_block b, kq_super *u) {
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) kq_k4_pair(b.qs, b.qh, k, &u->q[2 * k], &u->q[2 * k + 1]);
    k4_scales(b.scales, u);
    u->d = _cvtsh_ss(b.d), u->dmin = _cvtsh_ss(b.dmin);
}

INL void unpack_q6_k(const block_q6_K *b, kq_super *u) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) kq_q6_quarters(b, h, &u->q[4 * h]);
    const __m128i s = _mm_loadu_si128((const __m128i *)b->scales); /* 16 int8 scales, groups of 16 */
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) u->sc[k] = spread16(s, 2 * k, 8);
    u->cw = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(s), _mm256_set1_epi16(-32)); /* the stored q is a + 32 */
    u->mw = _mm256_setzero_si256();
    u->d = _cvtsh_ss(b->d), u->dmin = 0;
}

/* acc += one unpacked super-block . one Q8_K block, in 8 float lanes (d, dmin: u's, broadcast). */
INL __m256 super_dot(int dt, const kq_super *u, const block_q8_K *y, __m256 d, __m256 dmin, __m256 acc) {
    const __m256i bs = _mm256_loadu_si256((const __m256i *)y->bsums);
    __m256i isum = dt == KILN_DT_Q6_K ? _mm256_madd_epi16(u->cw, bs) : _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        const __m256i p = _mm256_maddubs_epi16(u->q[k], _mm256_loadu_si256((const __m256i *)(y->qs + 32 * k)));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, u->sc[k]));
    }
    const __m256 v = dt == KILN_DT_Q6_K ? _mm256_mul_ps(_mm256_cvtepi32_ps(isum), d) /* Q4_K / Q5_K: minus the mins term */
                                        : _mm256_fmsub_ps(_mm256_cvtepi32_ps(isum), d,
                                                          _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(u->mw, bs)), dmin));
    return _mm256_fmadd_ps(v, _mm256_set1_ps(y->d), acc);
}

/* One row (w, nb super-blocks) x T tokens (x: the first one's Q8_K blocks, the next xb bytes on), into
 * y[t * M]; float accumulators per token, summed once per row. */
INL void row_tile(int dt, int T, float *y, int M, const char *w, int nb, const char *x, size_t xb) {
    const size_t bsz = kern_formats[dt].block_bytes;
    __m256 acc[KQ_TOKENS];
#pragma GCC unroll 8
    for (int t = 0; t < KQ_TOKENS; t++) acc[t] = _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const char *blk = w + (size_t)i * bsz;
        kq_super u;
        if (dt == KILN_DT_Q6_K) unpack_q6_k((const block_q6_K *)blk, &u);
        else unpack_k4(kq_k4_fields(dt, blk), &u);
        const __m256 d = _mm256_set1_ps(u.d), dmin = _mm256_set1_ps(u.dmin);
        for (int t = 0; t < T; t++) acc[t] = super_dot(dt, &u, (const block_q8_K *)(x + (size_t)t * xb) + i, d, dmin, acc[t]);
    }
    for (int t = 0; t < T; t++) y[(size_t)t * M] = hsum256(acc[t]);
}

#define KQ_ISA avx2
#include "kernels/kquants_x86_driver.h"

/* Q4_K / Q6_K rows in panels are gathered (gemm_kq): AVX2 has no panel kernels. */
void kern_gemm_q4_k_avx2(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    gemm_kq(KILN_DT_Q4_K, y, x, n, m, r0, r1, tmp);
}
void kern_gemm_q6_k_avx2(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    gemm_kq(KILN_DT_Q6_K, y, x, n, m, r0, r1, tmp);
}
