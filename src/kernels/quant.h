/* quant.h — llama.cpp's Q8_0 / Q4_0 block formats and the on-the-fly activation format.
 *
 * Weights: block_q8_0 / block_q4_0 are byte-for-byte llama.cpp's (so GGUF tensors can be used as they
 * are). Activations for the int8 dot products: act_q8 holds one 32-value block quantised exactly like
 * quantize_row_q8_0_ref (d = amax/127 rounded to f16, q = round(x/d)), plus a precomputed correction:
 * the SIMD kernels feed the weights as UNSIGNED bytes (q8: w+128, q4: the raw nibble 0..15, i.e. w+8)
 * into vpdpbusd / pmaddubsw, so dot(w,x) = dot(w+c, x) - c*sum(x); corr = -c*sum(x) is stored once per
 * activation block instead of being recomputed for every weight row. */
#ifndef KILN_QUANT_H
#define KILN_QUANT_H

#include <stddef.h>
#include <stdint.h>

#define QK 32 /* values per block */

typedef struct {
    uint16_t d; /* f16 scale */
    int8_t qs[QK];
} block_q8_0;

typedef struct {
    uint16_t d;          /* f16 scale */
    uint8_t qs[QK / 2];  /* value i in low nibble of qs[i], value i+16 in the high nibble; stored q+8 */
} block_q4_0;

typedef struct {
    float d;      /* the f16-rounded scale, widened */
    int32_t corr; /* -c * sum(qs), c = 128 for Q8_0 weights, 8 for Q4_0 weights */
    int8_t qs[QK];
} act_q8;

_Static_assert(sizeof(block_q8_0) == 34, "llama.cpp block_q8_0 layout");
_Static_assert(sizeof(block_q4_0) == 18, "llama.cpp block_q4_0 layout");

/* Reference quantisers: the same arithmetic (and rounding) as llama.cpp's quantize_row_*_ref. k % 32 == 0. */
void quantize_row_q8_0_ref(const float *x, block_q8_0 *y, int k);
void quantize_row_q4_0_ref(const float *x, block_q4_0 *y, int k);
void dequantize_row_q8_0(const block_q8_0 *x, float *y, int k);
void dequantize_row_q4_0(const block_q4_0 *x, float *y, int k);

/* Activations, scalar reference. c is the weights' unsigned offset (kern_formats[dt].weight_offset). */
void quantize_act_ref(const float *x, act_q8 *y, int k, int c);

#endif
