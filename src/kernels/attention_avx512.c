/* attention_avx512.c — AVX-512 attention of one query over a paged KV cache (same contract as the
 * portable kern_attention_ref in attention.c, which tests compare it against).
 *
 * Why a separate kernel: prefill attends T queries over up to T positions, and the portable loops
 * compile to 128-bit SSE at best; it was ~23% of a 512-token prefill's profile (perf, Llama-3.2-1B
 * shape) for ~1.3% of the FLOPs. Here:
 *   scores  16 positions at a time: the query head sits in registers (head_dim/16 zmm), each key row
 *           takes head_dim/16 FMAs into its own accumulator, and the 16 accumulators are reduced
 *           together by a transpose-add tree (4 shuffle levels, not 16 separate horizontal sums);
 *   softmax max, a vector exp (Cephes-style range reduction + degree-6 polynomial, ~1 ulp) and sum;
 *   values  the output head stays in registers while every position's value row is FMA'd in.
 * head_dim up to 256 in steps of 16 with a masked tail (stories260K has 8); wider heads use the
 * portable path. */
#include <immintrin.h>
#include <math.h>

#include "kernels/exp_avx512.h"
#include "kernels/matmul.h"
#include "kernels/simd_x86.h"

enum { MAXV = 16 }; /* head_dim <= 16 * MAXV */

/* r[i] = sum of v[i]'s 16 lanes, for i in 0..15. */
INL __m512 hsum16(const __m512 v[16]) {
    __m512 a[8], b[4], c[2];
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++) /* 256-bit halves: [v0.q0+v0.q2, v0.q1+v0.q3, v1.q0+v1.q2, v1.q1+v1.q3] */
        a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++) /* one 128-bit quarter per source vector: v(4i), v(4i+1), v(4i+2), v(4i+3) */
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
#pragma GCC unroll 16
    for (int i = 0; i < 2; i++) /* two floats per source vector inside each quarter */
        c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 r = _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
    /* the tree leaves vector i's sum in lane 4*(i%4) + i/4 (a 4x4 transpose): undo it */
    return _mm512_permutexvar_ps(_mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0), r);
}

INL __mmask16 first(int m) { return m >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << m) - 1); }

/* One query head over positions kv->first..n_pos-1. NV = head_dim / 16 rounded up (a constant for the common
 * head sizes so the head stays in registers; 0 = use nv). */
INL void attend_head(const int NV, int nv, float *out, const float *qh, int head_dim, size_t hoff, int n_pos,
                     const kern_kv_view *kv, float *scratch) {
    if (NV) nv = NV;
    const __mmask16 tail = first(head_dim - 16 * (nv - 1));
    const __m512 scale = _mm512_set1_ps(kern_attn_scale(kv, head_dim));
    const int p_first = kv->first, p_start = p_first / kv->block * kv->block;
    __m512 qv[MAXV];
#pragma GCC unroll 16
    for (int c = 0; c < nv; c++) qv[c] = _mm512_maskz_loadu_ps(c == nv - 1 ? tail : 0xffff, qh + 16 * c);
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int p0 = p_start; p0 < n_pos; p0 += kv->block) {
        const float *k = kv->k + (size_t)kv->table[p0 / kv->block] * kv->block_stride + hoff;
        const int np = n_pos - p0 < kv->block ? n_pos - p0 : kv->block;
        for (int p = p_first > p0 ? p_first - p0 : 0; p < np; p += 16) {
            const int m = np - p < 16 ? np - p : 16;
            __m512 acc[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                acc[i] = _mm512_setzero_ps();
                if (i >= m) continue;
                const float *kp = k + (size_t)(p + i) * kv->row_stride;
#pragma GCC unroll 16
                for (int c = 0; c < nv; c++)
                    acc[i] = _mm512_fmadd_ps(qv[c], _mm512_maskz_loadu_ps(c == nv - 1 ? tail : 0xffff, kp + 16 * c), acc[i]);
            }
            const __m512 s = _mm512_mul_ps(hsum16(acc), scale);
            _mm512_mask_storeu_ps(scratch + p0 + p, first(m), s);
            mx = _mm512_mask_max_ps(mx, first(m), mx, s);
        }
    }
    float smax = _mm512_reduce_max_ps(mx);
    if (kv->softcap > 0) { /* tanh is monotonic: the capped maximum is the cap of the maximum */
        kern_softcap(scratch + p_first, n_pos - p_first, kv->softcap);
        kern_softcap(&smax, 1, kv->softcap);
    }
    const __m512 vmax = _mm512_set1_ps(smax);
    __m512 vsum = _mm512_setzero_ps();
    for (int p = p_first; p < n_pos; p += 16) {
        const __mmask16 mm = first(n_pos - p);
        const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mm, scratch + p), vmax));
        _mm512_mask_storeu_ps(scratch + p, mm, e);
        vsum = _mm512_mask_add_ps(vsum, mm, vsum, e);
    }
    /* values: two accumulator sets so consecutive positions' FMAs do not wait on each other */
    __m512 o0[MAXV], o1[MAXV];
#pragma GCC unroll 16
    for (int c = 0; c < MAXV; c++) /* all MAXV: once unrolled, GCC cannot tell the unused ones are unread */
        o0[c] = o1[c] = _mm512_setzero_ps();
    for (int p0 = p_start; p0 < n_pos; p0 += kv->block) {
        const float *v = kv->v + (size_t)kv->table[p0 / kv->block] * kv->block_stride + hoff;
        const int np = n_pos - p0 < kv->block ? n_pos - p0 : kv->block;
        int p = p_first > p0 ? p_first - p0 : 0;
        for (; p + 2 <= np; p += 2) {
            const __m512 w0 = _mm512_set1_ps(scratch[p0 + p]), w1 = _mm512_set1_ps(scratch[p0 + p + 1]);
            const float *v0 = v + (size_t)p * kv->row_stride, *v1 = v0 + kv->row_stride;
#pragma GCC unroll 16
            for (int c = 0; c < nv; c++) {
                const __mmask16 mk = c == nv - 1 ? tail : 0xffff;
                o0[c] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(mk, v0 + 16 * c), o0[c]);
                o1[c] = _mm512_fmadd_ps(w1, _mm512_maskz_loadu_ps(mk, v1 + 16 * c), o1[c]);
            }
        }
        if (p < np) {
            const __m512 w0 = _mm512_set1_ps(scratch[p0 + p]);
            const float *v0 = v + (size_t)p * kv->row_stride;
#pragma GCC unroll 16
            for (int c = 0; c < nv; c++)
                o0[c] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(c == nv - 1 ? tail : 0xffff, v0 + 16 * c), o0[c]);
        }
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
#pragma GCC unroll 16
    for (int c = 0; c < nv; c++)
        _mm512_mask_storeu_ps(out + 16 * c, c == nv - 1 ? tail : 0xffff, _mm512_mul_ps(_mm512_add_ps(o0[c], o1[c]), inv));
}

void kern_attention_avx512(float *out, const float *q, int n_heads, int n_kv_heads, int head_dim, int n_pos,
                           const kern_kv_view *kv, float *scratch, int h0, int h1) {
    const int nv = (head_dim + 15) / 16;
    if (nv > MAXV || n_pos <= 0) {
        kern_attention_ref(out, q, n_heads, n_kv_heads, head_dim, n_pos, kv, scratch, h0, h1);
        return;
    }
    const int group = n_heads / n_kv_heads;
    for (int h = h0; h < h1; h++) {
        const float *qh = q + (size_t)h * head_dim;
        float *o = out + (size_t)h * head_dim;
        const size_t hoff = (size_t)(h / group) * kv->head_stride;
        switch (nv) { /* the common head sizes get their register count at compile time */
        case 4: attend_head(4, nv, o, qh, head_dim, hoff, n_pos, kv, scratch); break;
        case 8: attend_head(8, nv, o, qh, head_dim, hoff, n_pos, kv, scratch); break;
        default: attend_head(0, nv, o, qh, head_dim, hoff, n_pos, kv, scratch); break;
        }
    }
}
