/* kernels_scalar.c — the portable reference kernels. Every SIMD kernel is tested against these. */
#include <math.h>

#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"

/* ---- matmul reference ----
 * F32/F16/BF16: widen each weight row to f32, then an f32 dot with every token.
 * Q8_0/Q4_0: llama.cpp's semantics: the activations arrive quantised to int8 blocks (act_q8), each
 * block pair is an exact integer dot, scaled by d_w * d_x and summed in f32. The other block formats:
 * the activations arrive in the format's kern_acts type and each row goes through its vec_dot. */

static void gemm_float_scalar(float *y, const void *xv, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    (void)tmp;
    const float *x = xv;
    size_t rb = kern_row_bytes(m->dt, m->cols);
    float stackrow[1024];
    const int chunk = 1024; /* rows wider than the buffer are widened piece by piece */
    for (int r = r0; r < r1; r++) {
        const char *w = (const char *)m->data + (size_t)r * rb;
        for (int t = 0; t < n; t++) y[(size_t)t * m->rows + r] = 0.0f;
        for (int c0 = 0; c0 < m->cols; c0 += chunk) {
            int cn = m->cols - c0 < chunk ? m->cols - c0 : chunk;
            kern_row_to_f32(stackrow, w + kern_row_bytes(m->dt, c0), m->dt, cn);
            for (int t = 0; t < n; t++) {
                const float *xt = x + (size_t)t * m->cols + c0;
                float s = 0;
                for (int k = 0; k < cn; k++) s += stackrow[k] * xt[k];
                y[(size_t)t * m->rows + r] += s;
            }
        }
    }
}

static void gemm_quant_scalar(float *y, const void *xv, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    const act_q8 *x = xv;
    const int nb = m->cols / QK;
    const kern_format *f = &kern_formats[m->dt];
    const size_t bsz = f->block_bytes;
    char *buf = kern_tmp_row(tmp, m->cols); /* a panel row, gathered (kern_qrow_plain) */
    for (int r = r0; r < r1; r++) {
        const char *w = kern_qrow_plain(m, r, buf);
        for (int t = 0; t < n; t++) {
            const act_q8 *xt = x + (size_t)t * nb;
            float s = 0;
            for (int b = 0; b < nb; b++) {
                const char *wb = w + b * bsz;
                s += kern_block_scale(wb) * xt[b].d * (float)f->block_dot(wb, xt[b].qs);
            }
            y[(size_t)t * m->rows + r] = s;
        }
    }
}

/* The other block formats: llama.cpp's vec_dot of each row with each token's quantised activations. */
static void gemm_vec_dot_scalar(float *y, const void *xv, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    const kern_format *f = &kern_formats[m->dt];
    const size_t xb = kern_act_row_bytes(f->act, m->cols);
    for (int r = r0; r < r1; r++) {
        /* a panel row (Q4_K), gathered; tmp is needed only then */
        const char *w = r < kern_panel_rows(m) ? kern_qrow_plain(m, r, kern_tmp_row(tmp, m->cols)) : kern_qrow(m, r);
        for (int t = 0; t < n; t++) y[(size_t)t * m->rows + r] = f->vec_dot(m->cols, w, (const char *)xv + (size_t)t * xb);
    }
}

const kern_isa kern_isa_scalar = {
    .name = "scalar",
    .gemm = {gemm_float_scalar, gemm_float_scalar, gemm_float_scalar, gemm_quant_scalar, gemm_quant_scalar,
             [KILN_DT_Q4_1 ... KILN_DT_IQ4_XS] = gemm_vec_dot_scalar},
    .attention = kern_attention_ref,
    .quantize_act = quantize_act_ref,
    .quantize_q8_k = quantize_row_q8_K_ref,
    .silu_mul = kern_silu_mul_ref,
    .gelu_tanh_mul = kern_gelu_tanh_mul_ref,
    .attention_block = kern_attention_block_ref, /* no bf16 dot-product path: gemm_bf16dot, to_bf16 NULL */
};

void kern_get_rows(float *out, const kiln_mat *m, const int32_t *ids, int n) {
    size_t rb = kern_row_bytes(m->dt, m->cols);
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * m->cols;
        if (ids[i] >= kern_panel_rows(m)) {
            kern_row_to_f32(o, (const char *)m->data + (size_t)ids[i] * rb, m->dt, m->cols);
            continue;
        }
        _Alignas(16) char blk[KERN_MAX_BLOCK_BYTES]; /* a panel row: block by block */
        const int bv = kern_formats[m->dt].block_values;
        for (int b = 0; b < m->cols / bv; b++) {
            kern_qblock_get(m, ids[i], b, blk);
            kern_row_to_f32(o + b * bv, blk, m->dt, bv);
        }
    }
}

/* ---- elementwise ---- */

void kern_rmsnorm(float *y, const float *x, const float *w, int dim, float eps) {
    double ss = 0; /* accumulate in double: HF computes variance in f32 but order differs; double is closer */
    for (int i = 0; i < dim; i++) ss += (double)x[i] * x[i];
    float inv = 1.0f / sqrtf((float)(ss / dim) + eps);
    for (int i = 0; i < dim; i++) y[i] = w[i] * (x[i] * inv);
}

void kern_silu_mul(float *gate, const float *up, int n) { kern_active_isa()->silu_mul(gate, up, n); }

void kern_silu_mul_ref(float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) {
        float g = gate[i];
        gate[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void kern_gelu_tanh_mul(float *gate, const float *up, int n) { kern_active_isa()->gelu_tanh_mul(gate, up, n); }

void kern_gelu_tanh_mul_ref(float *gate, const float *up, int n) {
    const float sqrt_2_over_pi = 0.79788456080286535588f, coef = 0.044715f; /* torch's kBeta, kKappa */
    for (int i = 0; i < n; i++) {
        float x = gate[i];
        gate[i] = 0.5f * x * (1.0f + tanhf(sqrt_2_over_pi * (x + coef * x * x * x))) * up[i];
    }
}

void kern_softcap(float *x, int n, float cap) {
    for (int i = 0; i < n; i++) x[i] = tanhf(x[i] / cap) * cap;
}

void kern_softmax(float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

