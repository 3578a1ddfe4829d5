/* kquants_quantize.c — llama.cpp's reference weight quantisers for the formats of kquants.h
 * (quantize_row_*_ref in ggml-quants.c: no importance matrix), the from_f32 entries of kern_formats.
 *
 * Same searches, same f32 operations in the same order, same rounding (nearest_int), so a tensor
 * quantised here matches what llama.cpp's reference writes. */
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "kernels/format.h"
#include "kernels/kquants.h"

#define GROUP_MAX_EPS 1e-15f
#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define MIN(a, b) ((a) < (b) ? (a) : (b))

/* ---- 32-value blocks ---- */

/* Q4_1 / Q5_1: d = (max - min) / (2^bits - 1), m = min; q = (x - min)/d rounded half up, clamped. */
static void affine_block(const float *x, int bits, uint16_t *d_out, uint16_t *m_out, uint8_t q[QK]) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < QK; j++) min = x[j] < min ? x[j] : min, max = x[j] > max ? x[j] : max;
    const int top = (1 << bits) - 1;
    const float d = (max - min) / (float)top, id = d ? 1.0f / d : 0.0f;
    *d_out = kern_f32_to_f16(d), *m_out = kern_f32_to_f16(min);
    for (int j = 0; j < QK; j++) {
        const int v = bits == 4 ? (int8_t)((x[j] - min) * id + 0.5f) : (uint8_t)((x[j] - min) * id + 0.5f);
        q[j] = (uint8_t)MIN(top, v);
    }
}

/* Nibbles of values j and j+16, and (5-bit formats) their bit 4 into qh. */
static void pack_nibbles(const uint8_t q[QK], uint8_t qs[QK / 2], uint8_t qh[4]) {
    uint32_t h = 0;
    for (int j = 0; j < QK / 2; j++) {
        qs[j] = (uint8_t)((q[j] & 0x0f) | ((q[j + QK / 2] & 0x0f) << 4));
        h |= ((q[j] & 0x10u) >> 4) << j;
        h |= ((q[j + QK / 2] & 0x10u) >> 4) << (j + QK / 2);
    }
    if (qh) memcpy(qh, &h, sizeof h);
}

void quantize_row_q4_1_ref(const float *x, block_q4_1 *y, int k) {
    for (int i = 0; i < k / QK; i++, x += QK) {
        uint8_t q[QK];
        affine_block(x, 4, &y[i].d, &y[i].m, q);
        pack_nibbles(q, y[i].qs, NULL);
    }
}

void quantize_row_q5_1_ref(const float *x, block_q5_1 *y, int k) {
    for (int i = 0; i < k / QK; i++, x += QK) {
        uint8_t q[QK];
        affine_block(x, 5, &y[i].d, &y[i].m, q);
        pack_nibbles(q, y[i].qs, y[i].qh);
    }
}

void quantize_row_q5_0_ref(const float *x, block_q5_0 *y, int k) {
    for (int i = 0; i < k / QK; i++, x += QK) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]), max = x[j];
        const float d = max / -16, id = d ? 1.0f / d : 0.0f;
        y[i].d = kern_f32_to_f16(d);
        uint8_t q[QK];
        for (int j = 0; j < QK; j++) q[j] = (uint8_t)MIN(31, (int8_t)(x[j] * id + 16.5f));
        pack_nibbles(q, y[i].qs, y[i].qh);
    }
}

static inline int best_index_int8(int n, const int8_t *val, float x) {
    if (x <= val[0]) return 0;
    if (x >= val[n - 1]) return n - 1;
    int ml = 0, mu = n - 1;
    while (mu - ml > 1) {
        const int mav = (ml + mu) / 2;
        if (x < val[mav]) mu = mav;
        else ml = mav;
    }
    return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}

/* sum w*q*x and sum w*q*q of the nearest IQ4 levels to x*id (levels' indices into L when L != NULL). */
static void iq4_fit(const float *xb, const float *weight, float id, uint8_t *L, float *sumqx, float *sumq2) {
    *sumqx = *sumq2 = 0;
    for (int j = 0; j < 32; j++) {
        const int l = best_index_int8(16, kern_iq4nl_values, id * xb[j]);
        if (L) L[j] = (uint8_t)l;
        const float q = kern_iq4nl_values[l], w = weight[j];
        *sumqx += w * q * xb[j];
        *sumq2 += w * q * q;
    }
}

/* llama.cpp's quantize_row_iq4_nl_impl without an importance matrix, for blocks of 32: a super-block of
 * nblk blocks (1: IQ4_NL, its scale stored as is; 8: IQ4_XS, 6-bit block scales under an f16 one). */
static void iq4_quantize(const float *x, int nblk, int ntry, uint16_t *dh, uint8_t *q4, uint16_t *scales_h,
                         uint8_t *scales_l) {
    const int8_t *values = kern_iq4nl_values;
    uint8_t L[QK_K] = {0}; /* a block that is all zero keeps level 0 (llama.cpp leaves it unset) */
    float scales[QK_K / 32], weight[32];
    memset(q4, 0, (size_t)nblk * 16);
    *dh = kern_f32_to_f16(0.f);
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < nblk; ib++) {
        const float *xb = x + ib * 32;
        uint8_t *Lb = L + ib * 32;
        for (int j = 0; j < 32; j++) weight[j] = xb[j] * xb[j];
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(xb[j]) > amax) amax = fabsf(xb[j]), max = xb[j];
        if (amax < GROUP_MAX_EPS) {
            scales[ib] = 0;
            continue;
        }
        float d = ntry > 0 ? -max / values[0] : max / values[0], sumqx, sumq2;
        iq4_fit(xb, weight, 1 / d, Lb, &sumqx, &sumq2);
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; itry++) {
            iq4_fit(xb, weight, (itry + values[0]) / max, NULL, &sumqx, &sumq2);
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) d = sumqx / sumq2, best = d * sumqx;
        }
        scales[ib] = d;
        if (fabsf(d) > amax_scale) amax_scale = fabsf(d), max_scale = d;
    }
    if (nblk > 1) {
        *scales_h = 0;
        const float d = -max_scale / 32, id = d ? 1 / d : 0.f;
        *dh = kern_f32_to_f16(d);
        for (int ib = 0; ib < nblk; ib++) {
            int l = kern_nearest_int(id * scales[ib]);
            l = MAX(-32, MIN(31, l));
            const float dl = d * (float)l, idl = dl ? 1 / dl : 0.f;
            for (int j = 0; j < 32; j++) L[ib * 32 + j] = (uint8_t)best_index_int8(16, values, idl * x[ib * 32 + j]);
            l += 32;
            if (ib % 2 == 0) scales_l[ib / 2] = (uint8_t)(l & 0xf);
            else scales_l[ib / 2] |= (uint8_t)((l & 0xf) << 4);
            *scales_h |= (uint16_t)((l >> 4) << 2 * (ib % 8));
        }
    } else {
        *dh = kern_f32_to_f16(scales[0]);
        if (ntry > 0) {
            const float id = scales[0] ? 1 / scales[0] : 0;
            for (int j = 0; j < 32; j++) L[j] = (uint8_t)best_index_int8(16, values, id * x[j]);
        }
    }
    for (int i = 0; i < nblk; i++)
        for (int j = 0; j < 16; j++) q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

void quantize_row_iq4_nl_ref(const float *x, block_iq4_nl *y, int k) {
    for (int i = 0; i < k / QK; i++) iq4_quantize(x + QK * i, 1, -1, &y[i].d, y[i].qs, NULL, NULL);
}

void quantize_row_iq4_xs_ref(const float *x, block_iq4_xs *y, int k) {
    for (int i = 0; i < k / QK_K; i++)
        iq4_quantize(x + QK_K * i, QK_K / 32, 7, &y[i].d, y[i].qs, &y[i].scales_h, y[i].scales_l);
}

/* ---- K-quant helpers (ggml-quants.c) ---- */

/* The value of largest magnitude, keeping its sign (0, with L zeroed, when every |x| < GROUP_MAX_EPS). */
static float signed_max(int n, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) amax = fabsf(x[i]), max = x[i];
    if (amax >= GROUP_MAX_EPS) return max;
    memset(L, 0, (size_t)n);
    return 0;
}

/* Levels l = round(iscale * x) clamped to -nmax..nmax-1, stored as l + offset into L (unless NULL), and
 * the x^2-weighted sums sum w*x*l and sum w*l*l of the fit. */
static void signed_levels(int n, int nmax, float iscale, const float *x, int8_t *L, int offset, float *sumlx,
                          float *suml2) {
    *sumlx = *suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = kern_nearest_int(iscale * x[i]);
        l = MAX(-nmax, MIN(nmax - 1, l));
        if (L) L[i] = (int8_t)(l + offset);
        const float w = x[i] * x[i];
        *sumlx += w * x[i] * l;
        *suml2 += w * l * l;
    }
}

/* Symmetric levels -nmax..nmax-1 (stored +nmax) with an rmse-weighted scale search (rmse_type 1). */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    const float max = signed_max(n, x, L);
    if (!max) return 0.f;
    float sumlx, suml2;
    signed_levels(n, nmax, -nmax / max, x, L, nmax, &sumlx, &suml2);
    float scale = suml2 ? sumlx / suml2 : 0.0f, best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        const float iscale = -(nmax + 0.1f * is) / max;
        signed_levels(n, nmax, iscale, x, NULL, 0, &sumlx, &suml2);
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            signed_levels(n, nmax, iscale, x, L, nmax, &sumlx, &suml2); /* the same sums, now kept */
            scale = sumlx / suml2, best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's levels -nmax..nmax-1 (stored +nmax), refined by coordinate descent on the x^2-weighted error. */
static float make_q3_quants(int n, int nmax, const float *x, int8_t *L) {
    const float max = signed_max(n, x, L);
    if (!max) return 0.f;
    float sumlx, suml2;
    signed_levels(n, nmax, -nmax / max, x, L, 0, &sumlx, &suml2);
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            const float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int new_l = kern_nearest_int(x[i] * sl2 / slx);
                new_l = MAX(-nmax, MIN(nmax - 1, new_l));
                if (new_l != L[i]) {
                    slx += w * x[i] * new_l;
                    sl2 += w * new_l * new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l, sumlx = slx, suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Q3_K / Q6_K: each group of 16 fitted by fit (its scale, its levels in L); returns the scale of largest
 * magnitude with its sign, that magnitude in *max_abs. */
static float fit_groups(const float *x, int nmax, float (*fit)(int, int, const float *, int8_t *), int8_t *L,
                        float scales[QK_K / 16], float *max_abs) {
    float max_scale = 0;
    *max_abs = 0;
    for (int j = 0; j < QK_K / 16; j++) {
        scales[j] = fit(16, nmax, x + 16 * j, L + 16 * j);
        if (fabsf(scales[j]) > *max_abs) *max_abs = fabsf(scales[j]), max_scale = scales[j];
    }
    return max_scale;
}

/* Levels 0..nmax with a min: x ~ scale*L - the_min, searched over nstep candidate scales. */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L, float *the_min,
                              float rmin, float rdelta, int nstep, bool use_mad) {
    uint8_t Laux[32];
    float min = x[0], max = x[0], sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min), scale = 1 / iscale, best_error = 0;
    for (int i = 0; i < n; i++) {
        const int l = kern_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)MAX(0, MIN(nmax, l));
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = kern_nearest_int(iscale * (x[i] - min));
            l = MAX(0, MIN(nmax, l));
            Laux[i] = (uint8_t)l;
            const float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D, this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) this_min = 0, this_scale = sum_xl / sum_l2;
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error, scale = this_scale, min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* 2 bits of values j, j+32, j+64, j+96 of each 128 into one byte (Q2_K, Q3_K's low bits). */
static void pack_2bit(const uint8_t *L, uint8_t *qs) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

/* ---- K-quants ---- */

void quantize_row_q2_K_ref(const float *x, block_q2_K *y, int k) {
    const float q4scale = 15.f;
    for (int i = 0; i < k / QK_K; i++, x += QK_K) {
        uint8_t L[QK_K];
        float weights[16], mins[QK_K / 16], scales[QK_K / 16], max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = make_qkx2_quants(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], -0.5f, 0.1f, 15, true);
            max_scale = MAX(max_scale, scales[j]);
            max_min = MAX(max_min, mins[j]);
        }
        if (max_scale > 0) {
            const float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; j++) y[i].scales[j] = (uint8_t)kern_nearest_int(iscale * scales[j]);
            y[i].d = kern_f32_to_f16(max_scale / q4scale);
        } else {
            memset(y[i].scales, 0, sizeof y[i].scales);
            y[i].d = kern_f32_to_f16(0.f);
        }
        if (max_min > 0) {
            const float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; j++) y[i].scales[j] |= (uint8_t)(kern_nearest_int(iscale * mins[j]) << 4);
            y[i].dmin = kern_f32_to_f16(max_min / q4scale);
        } else
            y[i].dmin = kern_f32_to_f16(0.f);
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = kern_f16_to_f32(y[i].d) * (y[i].scales[j] & 0xf);
            if (!d) continue;
            const float dm = kern_f16_to_f32(y[i].dmin) * (y[i].scales[j] >> 4);
            for (int ii = 0; ii < 16; ii++) {
                const int l = kern_nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = (uint8_t)MAX(0, MIN(3, l));
            }
        }
        pack_2bit(L, y[i].qs);
    }
}

void quantize_row_q3_K_ref(const float *x, block_q3_K *y, int k) {
    for (int i = 0; i < k / QK_K; i++, x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16], amax;
        const float max_scale = fit_groups(x, 4, make_q3_quants, L, scales, &amax);
        memset(y[i].scales, 0, 12);
        if (max_scale) {
            const float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; j++) {
                int8_t l = (int8_t)kern_nearest_int(iscale * scales[j]);
                l = (int8_t)(MAX(-32, MIN(31, l)) + 32);
                if (j < 8) y[i].scales[j] = (uint8_t)(l & 0xf);
                else y[i].scales[j - 8] |= (uint8_t)((l & 0xf) << 4);
                l >>= 4;
                y[i].scales[j % 4 + 8] |= (uint8_t)(l << (2 * (j / 4)));
            }
            y[i].d = kern_f32_to_f16(1 / iscale);
        } else
            y[i].d = kern_f32_to_f16(0.f);
        int8_t sc[16];
        kern_q3_k_scales(y[i].scales, sc);
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = kern_f16_to_f32(y[i].d) * (sc[j] - 32);
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) {
                const int l = kern_nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(MAX(-4, MIN(3, l)) + 4);
            }
        }
        /* the high bit of the first 32 quants in bit 0 of hmask[0..32), the next 32 in bit 1, ... */
        memset(y[i].hmask, 0, QK_K / 8);
        for (int j = 0; j < QK_K; j++)
            if (L[j] > 3) {
                y[i].hmask[j % (QK_K / 8)] |= (uint8_t)(1 << (j / (QK_K / 8)));
                L[j] = (int8_t)(L[j] - 4);
            }
        pack_2bit((const uint8_t *)L, y[i].qs);
    }
}

/* Q4_K / Q5_K: per block of 32, make_qkx2_quants with weights av_x + |x|; the 8 scales and mins as 6 bits
 * under the f16 d / dmin (the 12-byte packing kern_scale_min_k4 reads); then every value re-rounded
 * against its block's stored scale and min. Returns the levels (0..nmax) in L. */
static void k4_quantize(const float *x, int nmax, float rmin, int nstep, uint16_t *d_out, uint16_t *dmin_out,
                        uint8_t scales_out[K_SCALE_SIZE], uint8_t L[QK_K]) {
    float weights[32], mins[QK_K / 32], scales[QK_K / 32], max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        const float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], rmin, 0.1f, nstep, false);
        max_scale = MAX(max_scale, scales[j]);
        max_min = MAX(max_min, mins[j]);
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f, inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t ls = (uint8_t)kern_nearest_int(inv_scale * scales[j]), lm = (uint8_t)kern_nearest_int(inv_min * mins[j]);
        ls = MIN(63, ls), lm = MIN(63, lm);
        if (j < 4) {
            scales_out[j] = ls, scales_out[j + 4] = lm;
        } else {
            scales_out[j + 4] = (uint8_t)((ls & 0xf) | ((lm & 0xf) << 4));
            scales_out[j - 4] |= (uint8_t)((ls >> 4) << 6);
            scales_out[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = kern_f32_to_f16(max_scale / 63.f), *dmin_out = kern_f32_to_f16(max_min / 63.f);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        kern_scale_min_k4(j, scales_out, &sc, &m);
        const float d = kern_f16_to_f32(*d_out) * sc;
        if (!d) continue;
        const float dm = kern_f16_to_f32(*dmin_out) * m;
        for (int ii = 0; ii < 32; ii++) {
            const int l = kern_nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)MAX(0, MIN(nmax, l));
        }
    }
}

void quantize_row_q4_K_ref(const float *x, block_q4_K *y, int k) {
    for (int i = 0; i < k / QK_K; i++, x += QK_K) {
        uint8_t L[QK_K];
        k4_quantize(x, 15, -1.f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
        for (int j = 0; j < QK_K; j += 64)
            for (int l = 0; l < 32; l++) y[i].qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

void quantize_row_q5_K_ref(const float *x, block_q5_K *y, int k) {
    for (int i = 0; i < k / QK_K; i++, x += QK_K) {
        uint8_t L[QK_K];
        k4_quantize(x, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
        memset(y[i].qh, 0, QK_K / 8);
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0; n < QK_K; n += 64, m1 <<= 2, m2 <<= 2)
            for (int j = 0; j < 32; j++) {
                int l1 = L[n + j], l2 = L[n + j + 32];
                if (l1 > 15) l1 -= 16, y[i].qh[j] |= m1;
                if (l2 > 15) l2 -= 16, y[i].qh[j] |= m2;
                y[i].qs[n / 2 + j] = (uint8_t)(l1 | (l2 << 4));
            }
    }
}

/* The stored q (0..63) of a block's 256 values into its ql / qh bytes (llama.cpp's order). */
void kern_q6_k_pack(const uint8_t L[QK_K], block_q6_K *b) {
    uint8_t *ql = b->ql, *qh = b->qh;
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32)
        for (int l = 0; l < 32; l++) {
            const uint8_t q1 = L[j + l] & 0xf, q2 = L[j + l + 32] & 0xf, q3 = L[j + l + 64] & 0xf, q4 = L[j + l + 96] & 0xf;
            ql[l] = (uint8_t)(q1 | (q3 << 4));
            ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
            qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                              ((L[j + l + 96] >> 4) << 6));
        }
}

void quantize_row_q6_K_ref(const float *x, block_q6_K *y, int k) {
    for (int i = 0; i < k / QK_K; i++, x += QK_K) {
        int8_t L[QK_K];
        float scales[QK_K / 16], max_abs_scale;
        const float max_scale = fit_groups(x, 32, make_qx_quants, L, scales, &max_abs_scale);
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        const float iscale = -128.f / max_scale;
        y[i].d = kern_f32_to_f16(1 / iscale);
        for (int ib = 0; ib < QK_K / 16; ib++) y[i].scales[ib] = (int8_t)MIN(127, kern_nearest_int(iscale * scales[ib]));
        for (int j = 0; j < QK_K / 16; j++) {
            const float d = kern_f16_to_f32(y[i].d) * y[i].scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++) {
                const int l = kern_nearest_int(x[16 * j + ii] / d);
                L[16 * j + ii] = (int8_t)(MAX(-32, MIN(31, l)) + 32);
            }
        }
        kern_q6_k_pack((const uint8_t *)L, &y[i]);
    }
}

/* ---- rows: the from_f32 entries of kern_formats ---- */

#define ROW_FROM_F32(name, block)                                                                             \
    void kern_##name##_row_from_f32(void *dst, const float *src, int n) { quantize_row_##block##_ref(src, dst, n); }
ROW_FROM_F32(q4_1, q4_1)
ROW_FROM_F32(q5_0, q5_0)
ROW_FROM_F32(q5_1, q5_1)
ROW_FROM_F32(iq4_nl, iq4_nl)
ROW_FROM_F32(q2_k, q2_K)
ROW_FROM_F32(q3_k, q3_K)
ROW_FROM_F32(q4_k, q4_K)
ROW_FROM_F32(q5_k, q5_K)
ROW_FROM_F32(q6_k, q6_K)
ROW_FROM_F32(iq4_xs, iq4_xs)
#undef ROW_FROM_F32
