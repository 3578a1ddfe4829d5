/* kernels_scalar.c — the portable reference kernels. Every SIMD kernel is tested against these. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

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

/* llama.cpp block layouts: an f16 scale d, then 32 values (x = d * q). */
typedef struct {
    uint16_t d;
    int8_t qs[32];
} block_q8_0;
typedef struct {
    uint16_t d;
    uint8_t qs[16]; /* low nibbles: values 0..15, high nibbles: 16..31; q - 8 */
} block_q4_0;

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
    case KILN_DT_Q8_0: {
        const block_q8_0 *b = row;
        for (int j = 0; j < cols / 32; j++) {
            float d = kern_f16_to_f32(b[j].d);
            for (int i = 0; i < 32; i++) out[j * 32 + i] = d * (float)b[j].qs[i];
        }
        break;
    }
    case KILN_DT_Q4_0: {
        const block_q4_0 *b = row;
        for (int j = 0; j < cols / 32; j++) {
            float d = kern_f16_to_f32(b[j].d);
            for (int i = 0; i < 16; i++) {
                out[j * 32 + i] = d * (float)((b[j].qs[i] & 0x0f) - 8);
                out[j * 32 + i + 16] = d * (float)((b[j].qs[i] >> 4) - 8);
            }
        }
        break;
    }
    default: break;
    }
}

/* ---- matmul ---- */

struct matmul_job {
    float *y;
    const float *x;
    int n;
    const kiln_mat *m;
    const float *bias;
};

/* Each thread owns a contiguous range of output rows: it streams its part of the weights once per
 * call and writes disjoint parts of y (no false sharing beyond range edges). */
static void matmul_scalar_part(void *arg, int ith, int nth) {
    const struct matmul_job *j = arg;
    const kiln_mat *m = j->m;
    int lo, hi;
    kiln_split_range(m->rows, ith, nth, &lo, &hi);
    size_t rb = kern_row_bytes(m->dt, m->cols);
    float stackrow[4096];
    for (int r = lo; r < hi; r++) {
        const void *w = (const char *)m->data + (size_t)r * rb;
        if (m->dt == KILN_DT_F32) {
            const float *wf = w;
            for (int t = 0; t < j->n; t++) {
                const float *xt = j->x + (size_t)t * m->cols;
                float s = 0;
                for (int k = 0; k < m->cols; k++) s += wf[k] * xt[k];
                j->y[(size_t)t * m->rows + r] = s + (j->bias ? j->bias[r] : 0.0f);
            }
            continue;
        }
        /* Other formats: widen the row once, then dot with every token. Rows wider than the stack
         * buffer are widened chunk by chunk. */
        for (int t = 0; t < j->n; t++) j->y[(size_t)t * m->rows + r] = j->bias ? j->bias[r] : 0.0f;
        const int chunk = 4096; /* a multiple of 32: quantised blocks never straddle chunks */
        for (int c0 = 0; c0 < m->cols; c0 += chunk) {
            int cn = m->cols - c0 < chunk ? m->cols - c0 : chunk;
            kern_row_to_f32(stackrow, (const char *)w + kern_row_bytes(m->dt, c0), m->dt, cn);
            for (int t = 0; t < j->n; t++) {
                const float *xt = j->x + (size_t)t * m->cols + c0;
                float s = 0;
                for (int k = 0; k < cn; k++) s += stackrow[k] * xt[k];
                j->y[(size_t)t * m->rows + r] += s;
            }
        }
    }
}

void kern_matmul(kiln_pool *pool, float *y, const float *x, int n, const kiln_mat *m, const float *bias) {
    struct matmul_job j = {y, x, n, m, bias};
    kiln_pool_run(pool, matmul_scalar_part, &j);
}

void kern_get_rows(float *out, const kiln_mat *m, const int32_t *ids, int n) {
    size_t rb = kern_row_bytes(m->dt, m->cols);
    for (int i = 0; i < n; i++)
        kern_row_to_f32(out + (size_t)i * m->cols, (const char *)m->data + (size_t)ids[i] * rb, m->dt, m->cols);
}

/* ---- elementwise ---- */

void kern_rmsnorm(float *y, const float *x, const float *w, int dim, float eps) {
    double ss = 0; /* accumulate in double: HF computes variance in f32 but order differs; double is closer */
    for (int i = 0; i < dim; i++) ss += (double)x[i] * x[i];
    float inv = 1.0f / sqrtf((float)(ss / dim) + eps);
    for (int i = 0; i < dim; i++) y[i] = w[i] * (x[i] * inv);
}

void kern_silu_mul(float *gate, const float *up, int n) {
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

static const char *isa = "scalar";
void kern_init(void) {}
const char *kern_isa_name(void) { return isa; }
