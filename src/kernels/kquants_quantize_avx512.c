/* kquants_quantize_avx512.c — the Q8_K activation quantiser (quantize_row_q8_K_ref's contract, kquants.h)
 * with AVX-512: every K-quant matmul's activations go through it, and the scalar one was ~5% of a Q4_K
 * prefill and ~9% of a Gemma-3 Q4_K_M one.
 *
 * Bit-exact with the reference, which tests check: amax is a max (exact in any order, NaNs dropped as
 * the reference's `>` drops them), max is the FIRST value of largest magnitude (its sign decides
 * iscale's), iscale = -127/max, each value iscale * x rounded by llama.cpp's nearest_int (add 1.5 * 2^23,
 * keep the mantissa: the same f32 add, the same bits), clamped at 127 and truncated to int8 (as the
 * reference's cast does with the out-of-range values an infinite iscale gives), d = 1/iscale. bsums are
 * sums of 16 int8 values: each value offset by 128 to unsigned, summed by vpsadbw in 8-byte halves,
 * the halves added in pairs and the offset 16 * 128 taken back. */
#include <immintrin.h>
#include <string.h>

#include "kernels/kquants.h"
#include "kernels/matmul.h"

/* The first value of x[0..QK_K) with |value| == amax (amax > 0 and one of them). */
static float first_of_magnitude(const float *x, float amax) {
    const __m512 want = _mm512_set1_ps(amax);
    for (int v = 0; v < QK_K / 16; v++) {
        const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * v)), want, _CMP_EQ_OQ);
        if (hit) return x[16 * v + __builtin_ctz(hit)];
    }
    return 0; /* not reached: amax is one of the magnitudes */
}

/* Sixteen values' nearest_int(iscale * x), clamped at 127, as int8. */
static inline __m128i quantize16(const float *x, __m512 iscale) {
    const __m512 v = _mm512_add_ps(_mm512_mul_ps(iscale, _mm512_loadu_ps(x)), _mm512_set1_ps(12582912.f));
    const __m512i i = _mm512_sub_epi32(_mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x007fffff)),
                                       _mm512_set1_epi32(0x00400000));
    return _mm512_cvtepi32_epi8(_mm512_min_epi32(i, _mm512_set1_epi32(127)));
}

/* Four groups' (64 int8 values) sums of 16, as int32. */
static inline __m128i group_sums4(__m512i q) {
    const __m512i sad = _mm512_sad_epu8(_mm512_xor_si512(q, _mm512_set1_epi8((char)0x80)), _mm512_setzero_si512());
    const __m128i halves = _mm512_cvtepi64_epi16(sad); /* 8 half-group sums, each <= 8 * 255 */
    return _mm_sub_epi32(_mm_madd_epi16(halves, _mm_set1_epi16(1)), _mm_set1_epi32(16 * 128));
}

void quantize_row_q8_K_avx512(const float *x, block_q8_K *y, int k) {
    for (int i = 0; i < k / QK_K; i++, x += QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int v = 0; v < QK_K / 16; v++) /* max(|x|, m): a NaN |x| leaves m */
            m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * v)), m);
        const float amax = _mm512_reduce_max_ps(m);
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -127.f / first_of_magnitude(x, amax);
        const __m512 vs = _mm512_set1_ps(iscale);
        __m512i q[QK_K / 64];
        for (int g = 0; g < QK_K / 64; g++) {
            const float *xg = x + 64 * g;
            __m512i t = _mm512_castsi128_si512(quantize16(xg, vs));
            t = _mm512_inserti32x4(t, quantize16(xg + 16, vs), 1);
            t = _mm512_inserti32x4(t, quantize16(xg + 32, vs), 2);
            q[g] = _mm512_inserti32x4(t, quantize16(xg + 48, vs), 3);
            _mm512_storeu_si512(y[i].qs + 64 * g, q[g]);
        }
        for (int g = 0; g < QK_K / 128; g++) {
            const __m128i s = _mm_packs_epi32(group_sums4(q[2 * g]), group_sums4(q[2 * g + 1]));
            _mm_storeu_si128((__m128i *)(y[i].bsums + 8 * g), s);
        }
        y[i].d = 1 / iscale;
    }
}
