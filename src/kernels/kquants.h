/* kquants.h — llama.cpp's other block formats (ggml-common.h), byte for byte, and their references.
 *
 * The 32-value blocks Q4_1 / Q5_0 / Q5_1 / IQ4_NL and the 256-value super-blocks ("K-quants") Q2_K..Q6_K
 * and IQ4_XS, so GGUF tensors are used as they are. The references follow llama.cpp's scalar code: to_f32
 * is dequantize_row_*, from_f32 is quantize_row_*_ref (kquants_quantize.c), and the matmul is llama.cpp's
 * CPU arithmetic: the activations quantised to int8 blocks (Q8_0, Q8_1 or Q8_K, as ggml's vec_dot_type
 * for the weight type says), then per block an exact integer dot scaled in f32 (ggml_vec_dot_*_generic in
 * ggml-cpu/quants.c). Only that arithmetic gives llama.cpp's numbers; a dequantise-then-f32 product
 * differs from it by the activation rounding. */
#ifndef KILN_KQUANTS_H
#define KILN_KQUANTS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/quant.h"

#define QK_K 256        /* values per super-block */
#define K_SCALE_SIZE 12 /* Q4_K / Q5_K: 8 6-bit scales and 8 6-bit mins */

/* ---- 32-value blocks ---- */
typedef struct {
    uint16_t d, m;         /* f16 step and minimum: x = d*q + m */
    uint8_t qs[QK / 2];    /* q 0..15: value i low nibble of qs[i], value i+16 the high nibble */
} block_q4_1;
typedef struct {
    uint16_t d;            /* f16 step: x = d*(q - 16) */
    uint8_t qh[4];         /* bit 4 of value i (little-endian u32) */
    uint8_t qs[QK / 2];    /* bits 0..3, nibbles as Q4_1 */
} block_q5_0;
typedef struct {
    uint16_t d, m;         /* x = d*q + m, q 0..31 */
    uint8_t qh[4];
    uint8_t qs[QK / 2];
} block_q5_1;
typedef struct {
    uint16_t d;            /* x = d * kvalues_iq4nl[q] */
    uint8_t qs[QK / 2];
} block_iq4_nl;

/* ---- 256-value super-blocks ---- */
typedef struct {
    uint8_t scales[QK_K / 16]; /* 16 blocks of 16: low nibble scale, high nibble min */
    uint8_t qs[QK_K / 4];      /* 2-bit quants */
    uint16_t d, dmin;          /* f16 super-scales of the scales and the mins: x = d*sc*q - dmin*m */
} block_q2_K;
typedef struct {
    uint8_t hmask[QK_K / 8]; /* bit 2 of each quant (set: q >= 0) */
    uint8_t qs[QK_K / 4];    /* bits 0..1 */
    uint8_t scales[12];      /* 16 6-bit scales, offset 32 */
    uint16_t d;              /* x = d*(sc - 32)*(q - 4) */
} block_q3_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE]; /* 8 blocks of 32: 6-bit scale and min each (get_scale_min_k4) */
    uint8_t qs[QK_K / 2];         /* x = d*sc*q - dmin*m, q 0..15 */
} block_q4_K;
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8]; /* bit 4 of each quant */
    uint8_t qs[QK_K / 2]; /* bits 0..3; q 0..31 */
} block_q5_K;
typedef struct {
    uint8_t ql[QK_K / 2];     /* bits 0..3 */
    uint8_t qh[QK_K / 4];     /* bits 4..5 */
    int8_t scales[QK_K / 16]; /* 16 blocks of 16: int8 scales */
    uint16_t d;               /* x = d*sc*(q - 32) */
} block_q6_K;
typedef struct {
    uint16_t d;
    uint16_t scales_h;          /* bits 4..5 of the 8 6-bit block scales (offset 32) */
    uint8_t scales_l[QK_K / 64]; /* bits 0..3 */
    uint8_t qs[QK_K / 2];        /* x = d*(ls - 32) * kvalues_iq4nl[q] */
} block_iq4_xs;

/* ---- activation blocks (llama.cpp's vec_dot types) ---- */
typedef struct {
    uint16_t d, s; /* f16 step, and d * sum(qs) (f16) */
    int8_t qs[QK];
} block_q8_1;
typedef struct {
    float d;                   /* f32 step */
    int8_t qs[QK_K];
    int16_t bsums[QK_K / 16];  /* sums of the 16 groups of 16 */
} block_q8_K;

_Static_assert(sizeof(block_q4_1) == 20, "llama.cpp block_q4_1 layout");
_Static_assert(sizeof(block_q5_0) == 22, "llama.cpp block_q5_0 layout");
_Static_assert(sizeof(block_q5_1) == 24, "llama.cpp block_q5_1 layout");
_Static_assert(sizeof(block_iq4_nl) == 18, "llama.cpp block_iq4_nl layout");
_Static_assert(sizeof(block_q2_K) == 84, "llama.cpp block_q2_K layout");
_Static_assert(sizeof(block_q3_K) == 110, "llama.cpp block_q3_K layout");
_Static_assert(sizeof(block_q4_K) == 144, "llama.cpp block_q4_K layout");
_Static_assert(sizeof(block_q5_K) == 176, "llama.cpp block_q5_K layout");
_Static_assert(sizeof(block_q6_K) == 210, "llama.cpp block_q6_K layout");
_Static_assert(sizeof(block_iq4_xs) == 136, "llama.cpp block_iq4_xs layout");
_Static_assert(sizeof(block_q8_1) == 36, "llama.cpp block_q8_1 layout");
_Static_assert(sizeof(block_q8_K) == 292, "llama.cpp block_q8_K layout");

/* IQ4_NL / IQ4_XS's 16 levels (kvalues_iq4nl). */
extern const int8_t kern_iq4nl_values[16];

/* Q4_K / Q5_K: scale and min of block j (0..7) from the 12 packed bytes (llama.cpp's get_scale_min_k4). */
static inline void kern_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63, *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}
/* Q4_K / Q5_K: all 8 scales (bytes 0..7 of w) and mins (bytes 8..15) at once, as llama.cpp's utmp unpacking
 * does it (= kern_scale_min_k4 for j = 0..7) — in 32-bit words, so SIMD callers build a vector from
 * registers (a byte-wise unpack read back as a vector stalls on store forwarding). */
static inline void kern_scale_min_k4_words(const uint8_t q[K_SCALE_SIZE], uint32_t w[4]) {
    uint32_t u[3];
    memcpy(u, q, sizeof u);
    const uint32_t m6 = 0x3f3f3f3f, m4 = 0x0f0f0f0f, m2 = 0x03030303;
    w[0] = u[0] & m6, w[1] = (u[2] & m4) | (((u[0] >> 6) & m2) << 4);
    w[2] = u[1] & m6, w[3] = ((u[2] >> 4) & m4) | (((u[1] >> 6) & m2) << 4);
}
/* Q3_K: its 16 6-bit scales, unpacked (still offset by 32). */
void kern_q3_k_scales(const uint8_t packed[12], int8_t out[16]);

/* Activation quantisers (the vec_dot types), llama.cpp's *_ref arithmetic. k a multiple of the block. */
void quantize_row_q8_1_ref(const float *x, block_q8_1 *y, int k);
void quantize_row_q8_K_ref(const float *x, block_q8_K *y, int k);
/* The same bit for bit with AVX-512 (kquants_quantize_avx512.c; kern_isa_avx512's quantize_q8_k) */
void quantize_row_q8_K_avx512(const float *x, block_q8_K *y, int k);

/* Dequantisation (llama.cpp's dequantize_row_*). */
void dequantize_row_q4_1(const block_q4_1 *x, float *y, int k);
void dequantize_row_q5_0(const block_q5_0 *x, float *y, int k);
void dequantize_row_q5_1(const block_q5_1 *x, float *y, int k);
void dequantize_row_iq4_nl(const block_iq4_nl *x, float *y, int k);
void dequantize_row_q2_K(const block_q2_K *x, float *y, int k);
void dequantize_row_q3_K(const block_q3_K *x, float *y, int k);
void dequantize_row_q4_K(const block_q4_K *x, float *y, int k);
void dequantize_row_q5_K(const block_q5_K *x, float *y, int k);
void dequantize_row_q6_K(const block_q6_K *x, float *y, int k);
/* A Q6_K block's stored quants (0..63: the value + 32) in value order, read from and packed into its
 * ql / qh bytes (d and scales untouched); the bit layout lives in these two and q6_value. */
void kern_q6_k_levels(const block_q6_K *b, uint8_t q[QK_K]);
void kern_q6_k_pack(const uint8_t q[QK_K], block_q6_K *b);
void dequantize_row_iq4_xs(const block_iq4_xs *x, float *y, int k);

/* Weight quantisers (llama.cpp's quantize_row_*_ref, no importance matrix): kquants_quantize.c. */
void quantize_row_q4_1_ref(const float *x, block_q4_1 *y, int k);
void quantize_row_q5_0_ref(const float *x, block_q5_0 *y, int k);
void quantize_row_q5_1_ref(const float *x, block_q5_1 *y, int k);
void quantize_row_iq4_nl_ref(const float *x, block_iq4_nl *y, int k);
void quantize_row_q2_K_ref(const float *x, block_q2_K *y, int k);
void quantize_row_q3_K_ref(const float *x, block_q3_K *y, int k);
void quantize_row_q4_K_ref(const float *x, block_q4_K *y, int k);
void quantize_row_q5_K_ref(const float *x, block_q5_K *y, int k);
void quantize_row_q6_K_ref(const float *x, block_q6_K *y, int k);
void quantize_row_iq4_xs_ref(const float *x, block_iq4_xs *y, int k);

/* llama.cpp's round-to-nearest through the f32 mantissa (nearest_int: ties to even), |x| < 2^22. */
static inline int kern_nearest_int(float f) {
    const float v = f + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

#endif
