/* exp_avx512.h — a vector e^x for the AVX-512 kernels (attention's softmax, SwiGLU's sigmoid). Include
 * only from *_avx512.c files (compiled with AVX-512 enabled). */
#ifndef KILN_EXP_AVX512_H
#define KILN_EXP_AVX512_H

#include <immintrin.h>

#include "kernels/exp_coeffs.h"

/* e^x: n = round(x / ln2), r = x - n ln2 in two parts, Cephes' degree-6 polynomial for e^r, then scalef
 * multiplies by 2^n (flushing to 0 below e^-104 as expf does, inf above ~88.7). ~1 ulp. */
static inline __attribute__((always_inline)) __m512 exp_ps(__m512 x) {
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(KERN_EXP_LOG2E)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(KERN_EXP_LN2_HI), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(KERN_EXP_LN2_LO), r);
    __m512 p = _mm512_set1_ps(KERN_EXP_P0);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(KERN_EXP_P1));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(KERN_EXP_P2));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(KERN_EXP_P3));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(KERN_EXP_P4));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(KERN_EXP_P5));
    const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r), _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(y, n);
}

#endif
