/* attention.c — scaled dot-product attention of one query over a paged KV cache: the portable
 * reference (kern_attention_ref) and the entry point that picks the ISA's version.
 *
 * The cache is a list of blocks of `block` positions (kv->table maps a sequence's block index to a
 * physical block), so positions are walked block by block instead of dividing per position. Dot
 * products keep 8 independent partial sums: a single running sum is a chain of dependent adds (one
 * add latency per element), 8 lanes break it and let the compiler use SIMD. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/matmul.h"

enum { LANES = 8 };

static inline float dot(const float *a, const float *b, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += a[i + l] * b[i + l];
    float s = 0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

void kern_attention_ref(float *out, const float *q, int n_heads, int n_kv_heads, int head_dim, int n_pos,
                        const kern_kv_view *kv, float *scratch, int h0, int h1) {
    const int group = n_heads / n_kv_heads, first = kv->first, p_start = first / kv->block * kv->block;
    const float scale = kern_attn_scale(kv, head_dim);
    for (int h = h0; h < h1; h++) {
        const float *qh = q + (size_t)h * head_dim;
        const size_t hoff = (size_t)(h / group) * kv->head_stride;
        for (int p0 = p_start; p0 < n_pos; p0 += kv->block) {
            const float *k = kv->k + (size_t)kv->table[p0 / kv->block] * kv->block_stride + hoff;
            const int np = n_pos - p0 < kv->block ? n_pos - p0 : kv->block;
            for (int p = first > p0 ? first - p0 : 0; p < np; p++)
                scratch[p0 + p] = dot(qh, k + (size_t)p * kv->row_stride, head_dim) * scale;
        }
        if (kv->softcap > 0) kern_softcap(scratch + first, n_pos - first, kv->softcap);
        kern_softmax(scratch + first, n_pos - first);
        float *o = out + (size_t)h * head_dim;
        memset(o, 0, (size_t)head_dim * sizeof *o);
        for (int p0 = p_start; p0 < n_pos; p0 += kv->block) {
            const float *v = kv->v + (size_t)kv->table[p0 / kv->block] * kv->block_stride + hoff;
            const int np = n_pos - p0 < kv->block ? n_pos - p0 : kv->block;
            for (int p = first > p0 ? first - p0 : 0; p < np; p++) {
                const float w = scratch[p0 + p], *vp = v + (size_t)p * kv->row_stride;
                for (int i = 0; i < head_dim; i++) o[i] += w * vp[i];
            }
        }
    }
}

void kern_attention(float *out, const float *q, int n_heads, int n_kv_heads, int head_dim, int n_pos,
                    const kern_kv_view *kv, float *scratch, int h0, int h1) {
    kern_active_isa()->attention(out, q, n_heads, n_kv_heads, head_dim, n_pos, kv, scratch, h0, h1);
}
