/* matmul_kquants_avx512.c — AVX-512 VNNI matmul for Q4_K, Q5_K and Q6_K weights against Q8_K activations
 * (the scalar reference: kern_q*_k_vec_dot, llama.cpp's generic arithmetic).
 *
 * Per weight row and 256-value super-block, the quants are unpacked once into 4 zmm of unsigned bytes in
 * value order (64 values each: Q4_K 0..15, Q5_K 0..31, Q6_K 0..63 = q + 32) with their block scales
 * widened to one int32 per dword lane; then for each token of a tile one vpdpbusd per zmm against the
 * token's Q8_K quants gives 4-value partial sums whose lanes map to one block each, a multiply by the
 * lane's scale, and one horizontal sum: the super-block's exact integer dot. What the unsigned form adds
 * is subtracted through the Q8_K group sums (bsums): Q6_K's 32 * sum(scale * bsum), and the Q4_K / Q5_K
 * mins term is dmin * sum(min * bsum), as in the reference. The integer sums are exact; only the f32
 * scaling's rounding order differs from the reference (which keeps 8 float lanes). */
#include <immintrin.h>

#include "kernels/kquants.h"
#include "kernels/matmul.h"
#include "kernels/simd_x86.h"

#define KQ_TOKENS 8 /* tokens sharing one unpacked super-block */

/* One super-block, unpacked. */
typedef struct {
    __m512i q[4];  /* unsigned quants, values 64k..64k+63 */
    __m512i sc[4]; /* the scale of each dword lane of q[k] */
    __m512i cw;    /* per group of 16: weight of bsum in the integer sum (Q6_K: -32 * scale) */
    __m512i mw;    /* per group of 16: weight of bsum in the mins term (Q4_K / Q5_K: the block's min) */
    float d, dmin;
} kq_super;

/* Byte i of the result = byte i / per of v, offset by first (scales to lanes: per = 8 or 4 bytes a scale). */
INL __m128i spread(__m128i v, int first, int per) {
    char idx[16];
    for (int i = 0; i < 16; i++) idx[i] = (char)(first + i / per);
    return _mm_shuffle_epi8(v, _mm_loadu_si128((const __m128i *)idx));
}

INL __m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

/* Q4_K / Q5_K: 8 blocks of 32, 2 per zmm (lanes 0..7, 8..15); mins weighted per group of 16. */
INL void k4_scales(const uint8_t packed[K_SCALE_SIZE], kq_super *u) {
    uint8_t sc[16] = {0}, mn[16] = {0};
    for (int j = 0; j < 8; j++) kern_scale_min_k4(j, packed, &sc[j], &mn[j]);
    const __m128i s = _mm_loadu_si128((const __m128i *)sc), m = _mm_loadu_si128((const __m128i *)mn);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) u->sc[k] = _mm512_cvtepu8_epi32(spread(s, 2 * k, 8));
    u->mw = _mm512_cvtepu8_epi32(spread(m, 0, 2)), u->cw = _mm512_setzero_si512();
}

INL void unpack_q4_k(const block_q4_K *b, kq_super *u) {
    const __m256i lo4 = _mm256_set1_epi8(0x0f);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        const __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * k));
        u->q[k] = join(_mm256_and_si256(v, lo4), _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4));
    }
    k4_scales(b->scales, u);
    u->d = _cvtsh_ss(b->d), u->dmin = _cvtsh_ss(b->dmin);
}

/* Bit `bit` of each byte of v, moved to bit 4. */
INL __m256i bit_to_16(__m256i v, int bit) {
    return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(v, bit), _mm256_set1_epi8(1)), 4);
}

INL void unpack_q5_k(const block_q5_K *b, kq_super *u) {
    const __m256i lo4 = _mm256_set1_epi8(0x0f), qh = _mm256_loadu_si256((const __m256i *)b->qh);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) { /* values 64k..+31 take qh bit 2k, the next 32 bit 2k+1 */
        const __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * k));
        u->q[k] = join(_mm256_or_si256(_mm256_and_si256(v, lo4), bit_to_16(qh, 2 * k)),
                       _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), lo4), bit_to_16(qh, 2 * k + 1)));
    }
    k4_scales(b->scales, u);
    u->d = _cvtsh_ss(b->d), u->dmin = _cvtsh_ss(b->dmin);
}

/* Q6_K value bits 4..5 from qh's bit pair `pair`, moved to bits 4..5. */
INL __m256i pair_to_45(__m256i qh, int pair) {
    return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * pair), _mm256_set1_epi8(3)), 4);
}

INL void unpack_q6_k(const block_q6_K *b, kq_super *u) {
    const __m256i lo4 = _mm256_set1_epi8(0x0f);
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) { /* 128 values: ql[0..32) low, ql[32..64) low, ql[0..32) high, ql[32..64) high */
        const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
        const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
        u->q[2 * h] = join(_mm256_or_si256(_mm256_and_si256(ql0, lo4), pair_to_45(qh, 0)),
                           _mm256_or_si256(_mm256_and_si256(ql1, lo4), pair_to_45(qh, 1)));
        u->q[2 * h + 1] = join(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), lo4), pair_to_45(qh, 2)),
                               _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), lo4), pair_to_45(qh, 3)));
    }
    const __m128i s = _mm_loadu_si128((const __m128i *)b->scales); /* 16 int8 scales, groups of 16 */
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) u->sc[k] = _mm512_cvtepi8_epi32(spread(s, 4 * k, 4));
    u->cw = _mm512_mullo_epi32(_mm512_cvtepi8_epi32(s), _mm512_set1_epi32(-32)); /* the stored q is a + 32 */
    u->mw = _mm512_setzero_si512();
    u->d = _cvtsh_ss(b->d), u->dmin = 0;
}

/* One unpacked super-block . one Q8_K block. */
INL float super_dot(const kq_super *u, const block_q8_K *y) {
    const __m512i bs = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)y->bsums));
    __m512i acc = _mm512_mullo_epi32(u->cw, bs);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u->q[k], _mm512_loadu_si512(y->qs + 64 * k));
        acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(p, u->sc[k]));
    }
    const int isum = _mm512_reduce_add_epi32(acc), msum = _mm512_reduce_add_epi32(_mm512_mullo_epi32(u->mw, bs));
    return (u->d * y->d) * (float)isum - (u->dmin * y->d) * (float)msum;
}

/* Rows [r0, r1) x n tokens; x holds each token's Q8_K blocks, xb bytes apart. */
INL void gemm_kq(int dt, float *y, const void *x, int n, const kiln_mat *m, int r0, int r1) {
    const int nb = m->cols / QK_K, M = m->rows;
    const size_t rb = kern_row_bytes(dt, m->cols), xb = kern_act_row_bytes(KERN_ACT_Q8_K, m->cols);
    const size_t bsz = kern_formats[dt].block_bytes;
    for (int r = r0; r < r1; r++) {
        const char *w = (const char *)m->data + (size_t)r * rb;
        for (int t0 = 0; t0 < n; t0 += KQ_TOKENS) {
            const int T = MIN(KQ_TOKENS, n - t0);
            float acc[KQ_TOKENS] = {0};
            for (int i = 0; i < nb; i++) {
                const char *blk = w + (size_t)i * bsz;
                _mm_prefetch(blk + 8 * bsz, _MM_HINT_T0); /* a GEMV streams the rows: ask ahead */
                kq_super u;
                if (dt == KILN_DT_Q4_K) unpack_q4_k((const block_q4_K *)blk, &u);
                else if (dt == KILN_DT_Q5_K) unpack_q5_k((const block_q5_K *)blk, &u);
                else unpack_q6_k((const block_q6_K *)blk, &u);
                for (int t = 0; t < T; t++)
                    acc[t] += super_dot(&u, (const block_q8_K *)((const char *)x + (size_t)(t0 + t) * xb) + i);
            }
            for (int t = 0; t < T; t++) y[(size_t)(t0 + t) * M + r] = acc[t];
        }
    }
}

void kern_gemm_q4_k_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    (void)tmp, gemm_kq(KILN_DT_Q4_K, y, x, n, m, r0, r1);
}
void kern_gemm_q5_k_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    (void)tmp, gemm_kq(KILN_DT_Q5_K, y, x, n, m, r0, r1);
}
void kern_gemm_q6_k_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    (void)tmp, gemm_kq(KILN_DT_Q6_K, y, x, n, m, r0, r1);
}
