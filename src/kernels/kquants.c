/* kquants.c — the other llama.cpp block formats (kquants.h): dequantisation, the activation quantisers
 * and the integer dot products, each following llama.cpp's scalar reference (ggml-quants.c,
 * ggml-cpu/quants.c *_generic) operation for operation, so the f32 results round as llama.cpp's do. */
#include "kernels/kquants.h"

#include <math.h>
#include <string.h>

#include "kernels/format.h"
#include "kernels/matmul.h"

const int8_t kern_iq4nl_values[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static inline float h2f(uint16_t h) { return kern_f16_to_f32(h); }

/* A Q5 block's high bits as one little-endian u32 (bit j: bit 4 of value j). */
static inline uint32_t q5_qh(const uint8_t qh[4]) {
    uint32_t v;
    memcpy(&v, qh, sizeof v);
    return v;
}

void kern_q3_k_scales(const uint8_t packed[12], int8_t out[16]) {
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    uint32_t aux[4];
    memcpy(aux, packed, 12);
    const uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    memcpy(out, aux, 16);
}

/* ---- activations ---- */

void quantize_row_q8_1_ref(const float *x, block_q8_1 *y, int k) {
    for (int i = 0; i < k / QK; i++, x += QK) {
        block_q8_0 b;
        quantize_row_q8_0_ref(x, &b, QK); /* Q8_1's step and quants are Q8_0's */
        float amax = 0.0f;
        int sum = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j])), sum += b.qs[j];
        y[i].d = b.d, y[i].s = kern_f32_to_f16((float)sum * (amax / 127.0f)); /* s from the unrounded step */
        memcpy(y[i].qs, b.qs, QK);
    }
}

void quantize_row_q8_K_ref(const float *x, block_q8_K *y, int k) {
    for (int i = 0; i < k / QK_K; i++, x += QK_K) {
        float max = 0, amax = 0;
        for (int j = 0; j < QK_K; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
        if (!amax) {
            memset(&y[i], 0, sizeof y[i]); /* llama.cpp leaves bsums as they were; every use multiplies d = 0 */
            continue;
        }
        const float iscale = -127.f / max; /* -127, not -128: llama.cpp's choice (its IQ2 SIMD needs it) */
        for (int j = 0; j < QK_K; j++) {
            const int v = kern_nearest_int(iscale * x[j]);
            y[i].qs[j] = (int8_t)(v < 127 ? v : 127);
        }
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += y[i].qs[j * 16 + l];
            y[i].bsums[j] = (int16_t)sum;
        }
        y[i].d = 1 / iscale;
    }
}

void kern_q8_1_row_from_f32(void *dst, const float *src, int n) { quantize_row_q8_1_ref(src, dst, n); }
/* Q8_K through the ISA kern_matmul runs (AVX-512: bit-exact with the reference) */
void kern_q8_k_row_from_f32(void *dst, const float *src, int n) { kern_active_isa()->quantize_q8_k(src, dst, n); }

/* ---- the 32-value formats: value j (0..31) of a block, as an integer level ---- */

static inline int nibble(const uint8_t qs[QK / 2], int j) { return j < QK / 2 ? qs[j] & 0x0f : qs[j - QK / 2] >> 4; }
/* Q5: bit 4 of value j from qh (as llama.cpp: bit j of the little-endian u32) */
static inline int q5_level(const uint8_t qs[QK / 2], const uint8_t qh[4], int j) {
    return nibble(qs, j) | (int)(((q5_qh(qh) >> j) << 4) & 0x10);
}
static inline int q4_1_level(const void *b, int j) { return nibble(((const block_q4_1 *)b)->qs, j); }
static inline int q5_0_level(const void *b, int j) {
    return q5_level(((const block_q5_0 *)b)->qs, ((const block_q5_0 *)b)->qh, j) - 16;
}
static inline int q5_1_level(const void *b, int j) { return q5_level(((const block_q5_1 *)b)->qs, ((const block_q5_1 *)b)->qh, j); }
static inline int iq4_nl_level(const void *b, int j) { return kern_iq4nl_values[nibble(((const block_iq4_nl *)b)->qs, j)]; }

/* One block's values d*level + m (inlined: level is a constant at every call). */
static inline void dequant32(const void *blk, float d, float m, float *y, int (*level)(const void *, int)) {
    for (int j = 0; j < QK; j++) y[j] = (float)level(blk, j) * d + m;
}
/* One block's integer dot with its Q8_0 / Q8_1 quants (llama.cpp sums the two halves apart; exact). */
static inline int dot32(const void *blk, const int8_t *q8, int (*level)(const void *, int)) {
    int sumi = 0;
    for (int j = 0; j < QK; j++) sumi += level(blk, j) * q8[j];
    return sumi;
}

/* ---- dequantisation ---- */

void dequantize_row_q4_1(const block_q4_1 *x, float *y, int k) {
    for (int i = 0; i < k / QK; i++) dequant32(&x[i], h2f(x[i].d), h2f(x[i].m), y + i * QK, q4_1_level);
}
void dequantize_row_q5_0(const block_q5_0 *x, float *y, int k) {
    for (int i = 0; i < k / QK; i++) dequant32(&x[i], h2f(x[i].d), 0.0f, y + i * QK, q5_0_level);
}
void dequantize_row_q5_1(const block_q5_1 *x, float *y, int k) {
    for (int i = 0; i < k / QK; i++) dequant32(&x[i], h2f(x[i].d), h2f(x[i].m), y + i * QK, q5_1_level);
}
void dequantize_row_iq4_nl(const block_iq4_nl *x, float *y, int k) {
    for (int i = 0; i < k / QK; i++) dequant32(&x[i], h2f(x[i].d), 0.0f, y + i * QK, iq4_nl_level);
}

void dequantize_row_q2_K(const block_q2_K *x, float *y, int k) {
    for (int i = 0; i < k / QK_K; i++) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        int is = 0;
        for (int n = 0; n < QK_K; n += 128, q += 32)
            for (int shift = 0; shift < 8; shift += 2)
                for (int half = 0; half < 2; half++) { /* two blocks of 16: q[0..16) then q[16..32) */
                    const uint8_t sc = x[i].scales[is++];
                    const float dl = d * (float)(sc & 0xf), ml = min * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[l + 16 * half] >> shift) & 3) - ml;
                }
    }
}

void dequantize_row_q3_K(const block_q3_K *x, float *y, int k) {
    for (int i = 0; i < k / QK_K; i++) {
        const float d_all = h2f(x[i].d);
        const uint8_t *q = x[i].qs, *hm = x[i].hmask;
        int8_t scales[16];
        kern_q3_k_scales(x[i].scales, scales);
        uint8_t m = 1;
        int is = 0;
        for (int n = 0; n < QK_K; n += 128, q += 32)
            for (int shift = 0; shift < 8; shift += 2, m <<= 1)
                for (int half = 0; half < 2; half++) {
                    const float dl = d_all * (float)(scales[is++] - 32);
                    for (int l = 16 * half; l < 16 * half + 16; l++)
                        *y++ = dl * (float)(((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
                }
    }
}

void dequantize_row_q4_K(const block_q4_K *x, float *y, int k) {
    for (int i = 0; i < k / QK_K; i++) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        const uint8_t *q = x[i].qs;
        for (int is = 0; is < QK_K / 32; is += 2, q += 32) {
            uint8_t sc, m;
            kern_scale_min_k4(is, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            kern_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xf) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

void dequantize_row_q5_K(const block_q5_K *x, float *y, int k) {
    for (int i = 0; i < k / QK_K; i++) {
        const float d = h2f(x[i].d), min = h2f(x[i].dmin);
        const uint8_t *ql = x[i].qs, *qh = x[i].qh;
        uint8_t u1 = 1, u2 = 2;
        for (int is = 0; is < QK_K / 32; is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
            uint8_t sc, m;
            kern_scale_min_k4(is, x[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = min * m;
            kern_scale_min_k4(is + 1, x[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = min * m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0xf) + (qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

/* Q6_K value l of quarter part (0..3) of a 128-value half: 4 low bits from ql, 2 high from qh, minus 32. */
static inline int q6_value(const uint8_t *ql, const uint8_t *qh, int l, int part) {
    const int lo = part & 1 ? ql[l + 32] : ql[l];
    return (int8_t)(((part < 2 ? lo & 0xf : lo >> 4) | (((qh[l] >> (2 * part)) & 3) << 4)) - 32);
}

/* The stored q (0..63, value + 32) of a block's 256 values, in value order. */
void kern_q6_k_levels(const block_q6_K *b, uint8_t q[QK_K]) {
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++)
            for (int part = 0; part < 4; part++)
                q[128 * h + 32 * part + l] = (uint8_t)(q6_value(b->ql + 64 * h, b->qh + 32 * h, l, part) + 32);
}

void dequantize_row_q6_K(const block_q6_K *x, float *y, int k) {
    for (int i = 0; i < k / QK_K; i++) {
        const float d = h2f(x[i].d);
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        const int8_t *sc = x[i].scales;
        for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8)
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                /* parts: ql low nibbles, ql+32 low, ql high, ql+32 high = values l, l+32, l+64, l+96 */
                y[l] = d * (float)sc[is] * (float)q6_value(ql, qh, l, 0);
                y[l + 32] = d * (float)sc[is + 2] * (float)q6_value(ql, qh, l, 1);
                y[l + 64] = d * (float)sc[is + 4] * (float)q6_value(ql, qh, l, 2);
                y[l + 96] = d * (float)sc[is + 6] * (float)q6_value(ql, qh, l, 3);
            }
    }
}

/* IQ4_XS block ib's 6-bit scale (offset 32 still on). */
static inline int iq4_xs_scale(const block_iq4_xs *x, int ib) {
    return ((x->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((x->scales_h >> 2 * ib) & 3) << 4);
}

void dequantize_row_iq4_xs(const block_iq4_xs *x, float *y, int k) {
    for (int i = 0; i < k / QK_K; i++) {
        const uint8_t *qs = x[i].qs;
        const float d = h2f(x[i].d);
        for (int ib = 0; ib < QK_K / 32; ib++, y += 32, qs += 16) {
            const float dl = d * (float)(iq4_xs_scale(&x[i], ib) - 32);
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)kern_iq4nl_values[qs[j] & 0xf];
                y[j + 16] = dl * (float)kern_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

/* ---- the dot products (ggml_vec_dot_*_generic) ---- */

/* Q4_1 and Q5_1 take Q8_1 activations: d*d_x*dot + m*s (both blocks start with their f16 d, then m). */
static inline float dot_q8_1(int n, const void *w, size_t bsz, const block_q8_1 *y, int (*level)(const void *, int)) {
    float sumf = 0;
    for (int ib = 0; ib < n / QK; ib++) {
        const char *blk = (const char *)w + (size_t)ib * bsz;
        uint16_t dm[2];
        memcpy(dm, blk, sizeof dm);
        sumf += (h2f(dm[0]) * h2f(y[ib].d)) * (float)dot32(blk, y[ib].qs, level) + h2f(dm[1]) * h2f(y[ib].s);
    }
    return sumf;
}
float kern_q4_1_vec_dot(int n, const void *w, const void *act) { return dot_q8_1(n, w, sizeof(block_q4_1), act, q4_1_level); }
float kern_q5_1_vec_dot(int n, const void *w, const void *act) { return dot_q8_1(n, w, sizeof(block_q5_1), act, q5_1_level); }

/* Q5_0 and IQ4_NL take Q8_0 activations and have no min. */
static inline float dot_q8_0(int n, const void *w, size_t bsz, const block_q8_0 *y, int (*level)(const void *, int)) {
    float sumf = 0;
    for (int ib = 0; ib < n / QK; ib++) {
        const char *blk = (const char *)w + (size_t)ib * bsz;
        uint16_t d;
        memcpy(&d, blk, sizeof d); /* both blocks start with their f16 step */
        sumf += (h2f(d) * h2f(y[ib].d)) * (float)dot32(blk, y[ib].qs, level);
    }
    return sumf;
}
float kern_q5_0_vec_dot(int n, const void *w, const void *act) { return dot_q8_0(n, w, sizeof(block_q5_0), act, q5_0_level); }
float kern_iq4_nl_vec_dot(int n, const void *w, const void *act) {
    return dot_q8_0(n, w, sizeof(block_iq4_nl), act, iq4_nl_level);
}

float kern_q2_k_vec_dot(int n, const void *w, const void *act) {
    const block_q2_K *x = w;
    const block_q8_K *y = act;
    float sumf = 0;
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t *q2 = x[i].qs, *sc = x[i].scales;
        const int8_t *q8 = y[i].qs;
        int summs = 0;
        for (int j = 0; j < 16; j++) summs += y[i].bsums[j] * (sc[j] >> 4);
        const float dall = y[i].d * h2f(x[i].d), dmin = y[i].d * h2f(x[i].dmin);
        int isum = 0, is = 0;
        for (int k = 0; k < QK_K / 128; k++, q2 += 32)
            for (int shift = 0; shift < 8; shift += 2, q8 += 32)
                for (int half = 0; half < 2; half++) {
                    int isuml = 0;
                    for (int l = 16 * half; l < 16 * half + 16; l++) isuml += q8[l] * ((q2[l] >> shift) & 3);
                    isum += (sc[is++] & 0xf) * isuml;
                }
        sumf += dall * (float)isum - dmin * (float)summs;
    }
    return sumf;
}

/* The K-quants' common tail (llama.cpp's generic code): a super-block's 256 weight quants a[] against the
 * Q8_K quants in 8 lanes of int32 (aux32[l] sums products at positions = l mod 8), each group of 16 (or
 * 32) scaled by its block scale; the caller scales by d and adds the lanes in order at the end. */
static void k_lanes(const int8_t *a, const int8_t *q8, const int *scale, int group, int32_t aux32[8]) {
    memset(aux32, 0, 8 * sizeof *aux32);
    for (int j = 0; j < QK_K / 8; j++) {
        const int s = scale[j * 8 / group];
        for (int l = 0; l < 8; l++) aux32[l] += s * (int16_t)(q8[8 * j + l] * a[8 * j + l]);
    }
}

/* Adds d * aux32 into the 8 running f32 lane sums. */
static inline void k_accumulate(float sums[8], float d, const int32_t aux32[8]) {
    for (int l = 0; l < 8; l++) sums[l] += d * (float)aux32[l];
}
static inline float k_total(float sumf, const float sums[8]) {
    for (int l = 0; l < 8; l++) sumf += sums[l];
    return sumf;
}

float kern_q3_k_vec_dot(int n, const void *w, const void *act) {
    const block_q3_K *x = w;
    const block_q8_K *y = act;
    float sums[8] = {0};
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t *q3 = x[i].qs, *hm = x[i].hmask;
        int8_t a[QK_K], *p = a, sc8[16];
        uint8_t m = 1;
        for (int j = 0; j < QK_K; j += 128, q3 += 32)
            for (int shift = 0; shift < 8; shift += 2, m <<= 1, p += 32)
                for (int l = 0; l < 32; l++) p[l] = (int8_t)(((q3[l] >> shift) & 3) - (hm[l] & m ? 0 : 4));
        kern_q3_k_scales(x[i].scales, sc8);
        int scale[16];
        for (int j = 0; j < 16; j++) scale[j] = sc8[j] - 32;
        int32_t aux32[8];
        k_lanes(a, y[i].qs, scale, 16, aux32);
        k_accumulate(sums, h2f(x[i].d) * y[i].d, aux32);
    }
    return k_total(0, sums);
}

/* Q4_K / Q5_K: the 8 scales and 8 mins of a super-block (llama.cpp's utmp unpacking = get_scale_min_k4). */
static void k4_scales_mins(const uint8_t packed[K_SCALE_SIZE], int scale[8], int mins[8]) {
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        kern_scale_min_k4(j, packed, &sc, &m);
        scale[j] = sc, mins[j] = m;
    }
}

/* Q4_K and Q5_K after their quants are unpacked to a[] (0..15 / 0..31): scales times the lanes, minus
 * dmin * sum over groups of 16 of bsums * min. */
static float k4_super(const int8_t *a, const uint8_t packed[K_SCALE_SIZE], uint16_t d, uint16_t dmin,
                      const block_q8_K *y, float sums[8]) {
    int scale[8], mins[8], sumi = 0;
    k4_scales_mins(packed, scale, mins);
    for (int j = 0; j < QK_K / 16; j++) sumi += y->bsums[j] * mins[j / 2];
    int32_t aux32[8];
    k_lanes(a, y->qs, scale, 32, aux32);
    k_accumulate(sums, h2f(d) * y->d, aux32);
    return h2f(dmin) * y->d * (float)sumi;
}

/* Q4_K / Q5_K levels of a super-block: 4 bits from qs, + 16 where Q5_K's qh has the value's bit (qh NULL:
 * Q4_K). Values 64j..64j+31 are the low nibbles of qs[32j..32j+32), the next 32 the high ones. */
static void k4_levels(const uint8_t qs[QK_K / 2], const uint8_t *qh, int8_t a[QK_K]) {
    for (int j = 0; j < QK_K / 64; j++)
        for (int l = 0; l < 32; l++) {
            const uint8_t q = qs[32 * j + l];
            a[64 * j + l] = (int8_t)((q & 0xf) + (qh && (qh[l] & (1 << (2 * j))) ? 16 : 0));
            a[64 * j + 32 + l] = (int8_t)((q >> 4) + (qh && (qh[l] & (2 << (2 * j))) ? 16 : 0));
        }
}

float kern_q4_k_vec_dot(int n, const void *w, const void *act) {
    const block_q4_K *x = w;
    float sums[8] = {0}, sumf = 0;
    for (int i = 0; i < n / QK_K; i++) {
        int8_t a[QK_K];
        k4_levels(x[i].qs, NULL, a);
        sumf -= k4_super(a, x[i].scales, x[i].d, x[i].dmin, (const block_q8_K *)act + i, sums);
    }
    return k_total(sumf, sums);
}

float kern_q5_k_vec_dot(int n, const void *w, const void *act) {
    const block_q5_K *x = w;
    float sums[8] = {0}, sumf = 0;
    for (int i = 0; i < n / QK_K; i++) {
        int8_t a[QK_K];
        k4_levels(x[i].qs, x[i].qh, a);
        sumf -= k4_super(a, x[i].scales, x[i].d, x[i].dmin, (const block_q8_K *)act + i, sums);
    }
    return k_total(sumf, sums);
}

float kern_q6_k_vec_dot(int n, const void *w, const void *act) {
    const block_q6_K *x = w;
    const block_q8_K *y = act;
    float sums[8] = {0};
    for (int i = 0; i < n / QK_K; i++) {
        int8_t a[QK_K];
        const uint8_t *ql = x[i].ql, *qh = x[i].qh;
        for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32)
            for (int l = 0; l < 32; l++)
                for (int part = 0; part < 4; part++) a[j + 32 * part + l] = (int8_t)q6_value(ql, qh, l, part);
        int scale[16];
        for (int j = 0; j < 16; j++) scale[j] = x[i].scales[j];
        int32_t aux32[8];
        k_lanes(a, y[i].qs, scale, 16, aux32);
        k_accumulate(sums, h2f(x[i].d) * y[i].d, aux32);
    }
    return k_total(0, sums);
}

float kern_iq4_xs_vec_dot(int n, const void *w, const void *act) {
    const block_iq4_xs *x = w;
    const block_q8_K *y = act;
    float sumf = 0;
    for (int ibl = 0; ibl < n / QK_K; ibl++) {
        const float d4d8 = h2f(x[ibl].d) * y[ibl].d;
        const uint8_t *qs = x[ibl].qs;
        const int8_t *q8 = y[ibl].qs;
        for (int ib = 0; ib < QK_K / 32; ib++, qs += 16, q8 += 32) {
            const float dl = d4d8 * (float)(iq4_xs_scale(&x[ibl], ib) - 32);
            int sumi1 = 0, sumi2 = 0;
            for (int j = 0; j < 16; j++) {
                sumi1 += q8[j] * kern_iq4nl_values[qs[j] & 0xf];
                sumi2 += q8[j + 16] * kern_iq4nl_values[qs[j] >> 4];
            }
            sumf += dl * (float)(sumi1 + sumi2);
        }
    }
    return sumf;
}

/* ---- rows: the to_f32 entries of kern_formats ---- */

#define ROW_TO_F32(name, block)                                                                               \
    void kern_##name##_row_to_f32(float *out, const void *row, int n) { dequantize_row_##block(row, out, n); }
ROW_TO_F32(q4_1, q4_1)
ROW_TO_F32(q5_0, q5_0)
ROW_TO_F32(q5_1, q5_1)
ROW_TO_F32(iq4_nl, iq4_nl)
ROW_TO_F32(q2_k, q2_K)
ROW_TO_F32(q3_k, q3_K)
ROW_TO_F32(q4_k, q4_K)
ROW_TO_F32(q5_k, q5_K)
ROW_TO_F32(q6_k, q6_K)
ROW_TO_F32(iq4_xs, iq4_xs)
#undef ROW_TO_F32
