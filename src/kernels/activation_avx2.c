/* activation_avx2.c — activation_avx512.c's SwiGLU and GELU-tanh steps on 8 lanes (the same expressions;
 * tests compare both with kern_silu_mul_ref / kern_gelu_tanh_mul_ref). The scalar tail (n % 8) is the
 * reference's. */
#include <math.h>

#include "kernels/exp_avx2.h"
#include "kernels/matmul.h"
#include "kernels/simd_x86.h"

INL __m256 over_one_plus_exp(__m256 v, __m256 e_arg) {
    return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), exp256_ps(e_arg)));
}

void silu_mul_avx2(float *gate, const float *up, int n) {
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 s = over_one_plus_exp(g, _mm256_sub_ps(_mm256_setzero_ps(), g));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    kern_silu_mul_ref(gate + i, up + i, n - i);
}

void gelu_tanh_mul_avx2(float *gate, const float *up, int n) {
    const __m256 m2c = _mm256_set1_ps(-2.0f * 0.79788456080286535588f), k = _mm256_set1_ps(0.044715f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(gate + i);
        const __m256 inner = _mm256_fmadd_ps(_mm256_mul_ps(k, x), _mm256_mul_ps(x, x), x); /* x + k x^3 */
        const __m256 g = over_one_plus_exp(x, _mm256_mul_ps(m2c, inner));
        _mm256_storeu_ps(gate + i, _mm256_mul_ps(g, _mm256_loadu_ps(up + i)));
    }
    kern_gelu_tanh_mul_ref(gate + i, up + i, n - i);
}
