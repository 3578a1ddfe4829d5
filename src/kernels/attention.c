/* attention.c — scaled dot-product attention of one query over a paged KV cache (scalar reference). */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

static inline size_t kv_off(const kern_kv_view *kv, int p) {
    return (size_t)kv->table[p / kv->block] * kv->block_stride + (size_t)(p % kv->block) * kv->row_stride;
}

void kern_attention(float *out, const float *q, int n_heads, int n_kv_heads, int head_dim, int n_pos,
                    const kern_kv_view *kv, float *scratch) {
    int group = n_heads / n_kv_heads;
    float scale = 1.0f / sqrtf((float)head_dim);
    for (int h = 0; h < n_heads; h++) {
        const float *qh = q + (size_t)h * head_dim;
        size_t hoff = (size_t)(h / group) * head_dim;
        for (int p = 0; p < n_pos; p++) {
            const float *k = kv->k + kv_off(kv, p) + hoff;
            float s = 0;
            for (int i = 0; i < head_dim; i++) s += qh[i] * k[i];
            scratch[p] = s * scale;
        }
        kern_softmax(scratch, n_pos);
        float *o = out + (size_t)h * head_dim;
        memset(o, 0, (size_t)head_dim * sizeof *o);
        for (int p = 0; p < n_pos; p++) {
            const float *v = kv->v + kv_off(kv, p) + hoff;
            float w = scratch[p];
            for (int i = 0; i < head_dim; i++) o[i] += w * v[i];
        }
    }
}
