/* format.c — the format conversions behind the table in format.h: scalar f16 / bf16 and whole rows. */
#include "kernels/format.h"

#include <string.h>

#include "kernels/kernels.h"

/* An f32's bits and back (memcpy: the defined way to reinterpret). */
static inline uint32_t to_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}
static inline float from_bits(uint32_t x) {
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

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
    return from_bits(bits);
}

uint16_t kern_f32_to_f16(float f) {
    const uint32_t x = to_bits(f);
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

float kern_bf16_to_f32(uint16_t h) { return from_bits((uint32_t)h << 16); }

uint16_t kern_f32_to_bf16(float f) {
    uint32_t x = to_bits(f);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

/* ---- rows: the to_f32 / from_f32 entries of kern_formats ---- */

void kern_f32_row_to_f32(float *out, const void *row, int n) { memcpy(out, row, (size_t)n * sizeof(float)); }
void kern_f32_row_from_f32(void *dst, const float *src, int n) { memcpy(dst, src, (size_t)n * sizeof(float)); }

/* 16-bit formats: each value through its scalar conversion (inlined: cv is a constant at every call). */
static inline void widen16(float *out, const uint16_t *h, int n, float (*cv)(uint16_t)) {
    for (int i = 0; i < n; i++) out[i] = cv(h[i]);
}
static inline void narrow16(uint16_t *h, const float *src, int n, uint16_t (*cv)(float)) {
    for (int i = 0; i < n; i++) h[i] = cv(src[i]);
}

void kern_f16_row_to_f32(float *out, const void *row, int n) { widen16(out, row, n, kern_f16_to_f32); }
void kern_f16_row_from_f32(void *dst, const float *src, int n) { narrow16(dst, src, n, kern_f32_to_f16); }
void kern_bf16_row_to_f32(float *out, const void *row, int n) { widen16(out, row, n, kern_bf16_to_f32); }
void kern_bf16_row_from_f32(void *dst, const float *src, int n) { narrow16(dst, src, n, kern_f32_to_bf16); }

void kern_q8_0_row_to_f32(float *out, const void *row, int n) { dequantize_row_q8_0(row, out, n); }
void kern_q8_0_row_from_f32(void *dst, const float *src, int n) { quantize_row_q8_0_ref(src, dst, n); }
void kern_q4_0_row_to_f32(float *out, const void *row, int n) { dequantize_row_q4_0(row, out, n); }
void kern_q4_0_row_from_f32(void *dst, const float *src, int n) { quantize_row_q4_0_ref(src, dst, n); }

void kern_row_to_f32(float *out, const void *row, kiln_dtype dt, int cols) {
    if (kern_dtype_valid((int)dt)) kern_formats[dt].to_f32(out, row, cols);
}

void kern_row_from_f32(void *dst, kiln_dtype dt, const float *src, int cols) {
    if (kern_dtype_valid((int)dt)) kern_formats[dt].from_f32(dst, src, cols);
}
