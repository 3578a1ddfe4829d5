/* matmul_kquants_avx512.c — AVX-512 VNNI matmul for Q4_K, Q5_K and Q6_K weights against Q8_K activations
 * (the scalar reference: kern_q*_k_vec_dot, llama.cpp's generic arithmetic).
 *
 * Per weight row and 256-value super-block, the quants are unpacked once into 4 zmm of unsigned bytes in
 * value order (64 values each: Q4_K 0..15, Q5_K 0..31, Q6_K 0..63 = q + 32), with each 16-bit lane's
 * block scale beside them; then for each token of a tile, per zmm: vpmaddubsw (pairs, at most 2*63*127:
 * never saturates) and vpdpwssd by the scales (int32 lanes, exact), one convert and one FMA by d * d_x
 * into the token's float accumulator, which is summed once per row, not once per super-block. What the
 * unsigned form adds comes off through the Q8_K group sums (bsums), one vpmaddwd: Q6_K's
 * 32 * sum(scale * bsum) inside the integer sum, the Q4_K / Q5_K mins term dmin * sum(min * bsum) as a
 * second FMA, as in the reference. The integer sums are exact; only the f32 scaling's rounding order
 * differs from the reference (which keeps 8 float lanes). */
#include <immintrin.h>

#include "kernels/kquants.h"
#include "kernels/matmul.h"
#include "kernels/simd_x86.h"

#define KQ_TOKENS 8 /* tokens sharing one unpacked super-block */

/* One super-block, unpacked. */
typedef struct {
    __m512i q[4];  /* unsigned quants, values 64k..64k+63 */
    __m512i sc[4]; /* the scale of each 16-bit lane of vpmaddubsw(q[k], x) */
    __m256i gw;    /* per group of 16, int16: weight of its bsum (Q6_K: -32 * scale; Q4_K / Q5_K: the min) */
    float d, dmin;
} kq_super;

INL __m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

/* 32 int16 lanes from the 16 of v: lane i = v[first + i / per]. */
INL __m512i spread16(__m256i v, int first, int per) {
    short idx[32];
    for (int i = 0; i < 32; i++) idx[i] = (short)(first + i / per);
    return _mm512_permutexvar_epi16(_mm512_loadu_si512(idx), _mm512_castsi256_si512(v));
}

/* Q4_K / Q5_K: the 8 scales (bytes 0..7) and mins (8..15), built in registers. */
INL __m128i k4_scale_bytes(const uint8_t packed[K_SCALE_SIZE]) {
    uint32_t w[4];
    kern_scale_min_k4_words(packed, w);
    return _mm_setr_epi32((int)w[0], (int)w[1], (int)w[2], (int)w[3]);
}

/* Q4_K / Q5_K: 8 blocks of 32, 2 per zmm (int16 lanes 0..15, 16..31); block j's min weights groups 2j, 2j+1. */
INL void k4_scales(const uint8_t packed[K_SCALE_SIZE], kq_super *u) {
    const __m256i s = _mm256_cvtepu8_epi16(k4_scale_bytes(packed)); /* lanes 0..7 scales, 8..15 mins */
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) u->sc[k] = spread16(s, 2 * k, 16);
    u->gw = _mm512_castsi512_si256(spread16(s, 8, 2));
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
    const __m256i s = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales)); /* 16 scales, groups of 16 */
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) u->sc[k] = spread16(s, 4 * k, 8);
    u->gw = _mm256_mullo_epi16(s, _mm256_set1_epi16(-32)); /* the stored q is a + 32 */
    u->d = _cvtsh_ss(b->d), u->dmin = 0;
}

/* acc += one unpacked super-block . one Q8_K block, in 16 float lanes (d, dmin: u's, broadcast). */
INL __m512 super_dot(int dt, const kq_super *u, const block_q8_K *y, __m512 d, __m512 dmin, __m512 acc) {
    const __m256i g = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), u->gw);
    __m512i isum = dt == KILN_DT_Q6_K ? _mm512_zextsi256_si512(g) : _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(u->q[k], _mm512_loadu_si512(y->qs + 64 * k)), u->sc[k]);
    const __m512 v = dt == KILN_DT_Q6_K ? _mm512_mul_ps(_mm512_cvtepi32_ps(isum), d) /* Q4_K / Q5_K: minus the mins term */
                                        : _mm512_fmsub_ps(_mm512_cvtepi32_ps(isum), d,
                                                          _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_zextsi256_si512(g)), dmin));
    return _mm512_fmadd_ps(v, _mm512_set1_ps(y->d), acc);
}

/* One row (w, nb super-blocks) x T tokens (x: the first one's Q8_K blocks, the next xb bytes on), into
 * y[t * M]. Called with T a constant, the accumulators stay in registers. */
INL void row_tile(int dt, int T, float *y, int M, const char *w, int nb, const char *x, size_t xb) {
    const size_t bsz = kern_formats[dt].block_bytes;
    __m512 acc[KQ_TOKENS];
#pragma GCC unroll 8
    for (int t = 0; t < KQ_TOKENS; t++) acc[t] = _mm512_setzero_ps(); /* all: GCC cannot see T bound its reads */
    for (int i = 0; i < nb; i++) {
        const char *blk = w + (size_t)i * bsz;
        _mm_prefetch(blk + 8 * bsz, _MM_HINT_T0); /* a GEMV streams the rows: ask ahead */
        kq_super u;
        if (dt == KILN_DT_Q4_K) unpack_q4_k((const block_q4_K *)blk, &u);
        else if (dt == KILN_DT_Q5_K) unpack_q5_k((const block_q5_K *)blk, &u);
        else unpack_q6_k((const block_q6_K *)blk, &u);
        const __m512 d = _mm512_set1_ps(u.d), dmin = _mm512_set1_ps(u.dmin);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[t] = super_dot(dt, &u, (const block_q8_K *)(x + (size_t)t * xb) + i, d, dmin, acc[t]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) y[(size_t)t * M] = _mm512_reduce_add_ps(acc[t]);
}

/* Rows [r0, r1) x n tokens; x holds each token's Q8_K blocks, xb bytes apart. */
INL void gemm_kq(int dt, float *y, const void *x, int n, const kiln_mat *m, int r0, int r1) {
    const int nb = m->cols / QK_K, M = m->rows;
    const size_t rb = kern_row_bytes(dt, m->cols), xb = kern_act_row_bytes(KERN_ACT_Q8_K, m->cols);
    /* tokens in blocks of ~256 KiB of activations, so each row's pass over them hits L2, not L3 (the
     * driver already sizes the row chunk to stay in L2) */
    int tb = (int)((256u << 10) / xb) / KQ_TOKENS * KQ_TOKENS;
    tb = tb < KQ_TOKENS ? KQ_TOKENS : tb;
    for (int b0 = 0; b0 < n; b0 += tb)
        for (int r = r0; r < r1; r++) {
            const char *w = (const char *)m->data + (size_t)r * rb;
            for (int t0 = b0; t0 < MIN(n, b0 + tb); t0 += KQ_TOKENS) {
                const int T = MIN(KQ_TOKENS, MIN(n, b0 + tb) - t0);
                float *yt = y + (size_t)t0 * M + r;
                const char *xt = (const char *)x + (size_t)t0 * xb;
                if (T == KQ_TOKENS) row_tile(dt, KQ_TOKENS, yt, M, w, nb, xt, xb);
                else if (T == 1) row_tile(dt, 1, yt, M, w, nb, xt, xb); /* decode */
                else row_tile(dt, T, yt, M, w, nb, xt, xb);
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
