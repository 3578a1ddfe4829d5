/* activation_avx512.c — SwiGLU's silu(gate) * up with a vector exp, the same expression as the portable
 * kern_silu_mul_ref (kernels_scalar.c) that tests compare it against. The libm expf loop was ~5% of a
 * 512-token prefill's profile. */
#include "kernels/exp_avx512.h"
#include "kernels/matmul.h"

void silu_mul_avx512(float *gate, const float *up, int n) {
    for (int i = 0; i < n; i += 16) {
        const __mmask16 mk = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        const __m512 g = _mm512_maskz_loadu_ps(mk, gate + i), u = _mm512_maskz_loadu_ps(mk, up + i);
        const __m512 e = exp_ps(_mm512_sub_ps(_mm512_setzero_ps(), g));
        _mm512_mask_storeu_ps(gate + i, mk, _mm512_mul_ps(_mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0f), e)), u));
    }
}
