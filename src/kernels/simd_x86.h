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

#endif
