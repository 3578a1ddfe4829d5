/* simd_x86.h — small helpers the x86 SIMD kernel files share (include only from *_avx2.c / *_avx512.c,
 * which are compiled with at least AVX2 + FMA + F16C). */
#ifndef KILN_SIMD_X86_H
#define KILN_SIMD_X86_H

#include <immintrin.h>

#define INL static inline __attribute__((always_inline))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* The sum of a ymm's 8 floats. */
INL float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* AVX-512 masks of the first n lanes of 16 / 32 (n <= 0: none, n past the width: all): the masked tails. */
INL __mmask16 lanes16(int n) { return n >= 16 ? (__mmask16)0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }
INL __mmask32 lanes32(int n) { return n >= 32 ? (__mmask32)0xffffffffu : n <= 0 ? 0 : (__mmask32)((1u << n) - 1); }

#ifdef __AVX512BF16__
/* 16 F16 values rounded to bf16 (nearest even): how the bf16 dot products read F16 weights. */
INL __m256i f16x16_to_bf16(__m256i h) { return (__m256i)_mm512_cvtneps_pbh(_mm512_cvtph_ps(h)); }
#endif

#endif
