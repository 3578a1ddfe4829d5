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
#include "kernels/kquants_x86.h"
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

/* Q4_K (qh NULL) or Q5_K. */
INL void unpack_k4(kq_k4_block b, kq_super *u) {
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m256i lo, hi;
        kq_k4_pair(b.qs, b.qh, k, &lo, &hi);
        u->q[k] = join(lo, hi);
    }
    k4_scales(b.scales, u);
    u->d = _cvtsh_ss(b.d), u->dmin = _cvtsh_ss(b.dmin);
}

INL void unpack_q6_k(const block_q6_K *b, kq_super *u) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i o[4];
        kq_q6_quarters(b, h, o);
        u->q[2 * h] = join(o[0], o[1]), u->q[2 * h + 1] = join(o[2], o[3]);
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
        const char *blk = kq_next_block(w, i, bsz);
        kq_super u;
        if (dt == KILN_DT_Q6_K) unpack_q6_k((const block_q6_K *)blk, &u);
        else unpack_k4(kq_k4_fields(dt, blk), &u);
        const __m512 d = _mm512_set1_ps(u.d), dmin = _mm512_set1_ps(u.dmin);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[t] = super_dot(dt, &u, (const block_q8_K *)(x + (size_t)t * xb) + i, d, dmin, acc[t]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) y[(size_t)t * M] = _mm512_reduce_add_ps(acc[t]);
}

#define KQ_ISA avx512
#include "kernels/kquants_x86_driver.h"
