/* kernels_scalar.c — the portable reference kernels. Every SIMD kernel is tested against these. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/matmul.h"
#include "kernels/quant.h"

/* ---- format conversions ---- */

float kern_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) bits = sign;
        else { /* subnormal: normalise */
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) bits = sign | 0x7f800000u | (man << 13);
    else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t kern_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    int32_t exp = (int32_t)((x >> 23) & 0xff) - 127 + 15;
    uint32_t man = x & 0x7fffff;
    if (((x >> 23) & 0xff) == 0xff) return (uint16_t)(sign | 0x7c00 | (man ? 0x200 : 0));
    if (exp >= 31) return (uint16_t)(sign | 0x7c00);
    if (exp <= 0) {
        if (exp < -10) return (uint16_t)sign;
        man |= 0x800000;
        uint32_t shift = (uint32_t)(14 - exp);
        uint32_t half = 1u << (shift - 1), rest = man & ((1u << shift) - 1);
        uint32_t r = man >> shift;
        if (rest > half || (rest == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((uint32_t)exp << 10) | (man >> 13), rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (r & 1))) r++; /* may carry into the exponent: correct */
    return (uint16_t)(sign | r);
}

float kern_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t kern_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

size_t kern_row_bytes(kiln_dtype dt, int cols) {
    switch (dt) {
    case KILN_DT_F32: return (size_t)cols * 4;
    case KILN_DT_F16:
    case KILN_DT_BF16: return (size_t)cols * 2;
    case KILN_DT_Q8_0: return (size_t)(cols / 32) * sizeof(block_q8_0);
    case KILN_DT_Q4_0: return (size_t)(cols / 32) * sizeof(block_q4_0);
    default: return 0;
    }
}

void kern_row_to_f32(float *out, const void *row, kiln_dtype dt, int cols) {
    switch (dt) {
    case KILN_DT_F32: memcpy(out, row, (size_t)cols * 4); break;
    case KILN_DT_F16: {
        const uint16_t *h = row;
        for (int i = 0; i < cols; i++) out[i] = kern_f16_to_f32(h[i]);
        break;
    }
    case KILN_DT_BF16: {
        const uint16_t *h = row;
        for (int i = 0; i < cols; i++) out[i] = kern_bf16_to_f32(h[i]);
        break;
    }
    case KILN_DT_Q8_0: dequantize_row_q8_0(row, out, cols); break;
    case KILN_DT_Q4_0: dequantize_row_q4_0(row, out, cols); break;
    default: break;
    }
}

/* ---- matmul reference ----
 * F32/F16/BF16: widen each weight row to f32, then an f32 dot with every token.
 * Q8_0/Q4_0: llama.cpp's semantics: the activations arrive quantised to int8 blocks (act_q8), each
 * block pair is an exact integer dot, scaled by d_w * d_x and summed in f32. */

static void gemm_float_scalar(float *y, const void *xv, int n, const kiln_mat *m, int r0, int r1) {
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

static void gemm_quant_scalar(float *y, const void *xv, int n, const kiln_mat *m, int r0, int r1) {
    const act_q8 *x = xv;
    const int nb = m->cols / QK;
    const size_t bsz = m->dt == KILN_DT_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    char *buf = malloc(bsz * (size_t)nb); /* a panel row, gathered (kern_qrow_plain) */
    if (!buf) { /* the reference has no fallback: no result rather than a wrong one */
        for (int t = 0; t < n; t++)
            for (int r = r0; r < r1; r++) y[(size_t)t * m->rows + r] = NAN;
        return;
    }
    for (int r = r0; r < r1; r++) {
        const char *w = kern_qrow_plain(m, r, buf);
        for (int t = 0; t < n; t++) {
            const act_q8 *xt = x + (size_t)t * nb;
            float s = 0;
            for (int b = 0; b < nb; b++) {
                int isum = 0;
                float dw;
                if (m->dt == KILN_DT_Q8_0) {
                    const block_q8_0 *wb = (const block_q8_0 *)(w + b * bsz);
                    dw = kern_f16_to_f32(wb->d);
                    for (int i = 0; i < QK; i++) isum += wb->qs[i] * xt[b].qs[i];
                } else {
                    const block_q4_0 *wb = (const block_q4_0 *)(w + b * bsz);
                    dw = kern_f16_to_f32(wb->d);
                    for (int i = 0; i < QK / 2; i++)
                        isum += ((wb->qs[i] & 0x0f) - 8) * xt[b].qs[i] + ((wb->qs[i] >> 4) - 8) * xt[b].qs[i + QK / 2];
                }
                s += dw * xt[b].d * (float)isum;
            }
            y[(size_t)t * m->rows + r] = s;
        }
    }
    free(buf);
}

const kern_isa kern_isa_scalar = {
    "scalar",
    {gemm_float_scalar, gemm_float_scalar, gemm_float_scalar, gemm_quant_scalar, gemm_quant_scalar},
    kern_attention_ref,
    quantize_act_ref,
    kern_silu_mul_ref,
};

void kern_get_rows(float *out, const kiln_mat *m, const int32_t *ids, int n) {
    size_t rb = kern_row_bytes(m->dt, m->cols);
    for (int i = 0; i < n; i++) {
        float *o = out + (size_t)i * m->cols;
        if (ids[i] >= kern_panel_rows(m)) {
            kern_row_to_f32(o, (const char *)m->data + (size_t)ids[i] * rb, m->dt, m->cols);
            continue;
        }
        char blk[sizeof(block_q8_0)]; /* a panel row: block by block */
        for (int b = 0; b < m->cols / QK; b++) {
            kern_qblock_get(m, ids[i], b, blk);
            kern_row_to_f32(o + b * QK, blk, m->dt, QK);
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

