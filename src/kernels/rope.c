/* rope.c — rotary position embedding, Hugging Face rotate_half layout. */
#include "kernels/kernels.h"

void kern_rope(float *x, int n_heads, int head_dim, int rot_dim, const float *cos, const float *sin) {
    int half = rot_dim / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            float a = v[i], b = v[i + half];
            v[i] = a * cos[i] - b * sin[i];
            v[i + half] = b * cos[i] + a * sin[i];
        }
    }
}
