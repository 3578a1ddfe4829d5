/* format.h — every fact about a weight format, in ONE table indexed by kiln_dtype (as ggml's type traits).
 *
 * Everything that depends on a format reads it from here: row sizes, the conversions to and from f32, the
 * names flags / JSON / safetensors / GGUF use, and what the quantised kernels need (the unsigned-weight
 * offset, the panel geometry). Adding a format = one entry here, its conversions, and its kernels.
 *
 * Why in kernels/ and why in a header: the kernels are the lowest layer that needs these facts (model/,
 * info/ and the engine sit above and include kernels.h anyway), and the SIMD kernels inline them with
 * the format as a compile-time constant: a `static const` table whose initialiser every file sees lets
 * the compiler fold kern_formats[KILN_DT_Q8_0].block_bytes to 34 inside an always_inline kernel (a
 * panel's stride and prefetch loop must be constants). Each file gets its own copy of ~300 bytes. */
#ifndef KILN_FORMAT_H
#define KILN_FORMAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels/kquants.h"
#include "kernels/quant.h"
#include "kiln.h"

/* Scalar conversions (the reference everybody agrees on). */
float kern_f16_to_f32(uint16_t h);
uint16_t kern_f32_to_f16(float f);
float kern_bf16_to_f32(uint16_t h);
uint16_t kern_f32_to_bf16(float f); /* round to nearest even, as torch does */

/* Row conversions: n values (a multiple of block_values). from_f32 is the reference rounding (torch's
 * round-to-nearest-even for f16/bf16, llama.cpp's quantize_row_*_ref for the block formats). */
typedef void (*kern_to_f32_fn)(float *out, const void *row, int n);
typedef void (*kern_from_f32_fn)(void *dst, const float *src, int n);
/* Panel formats: the exact integer dot of one weight block (its quants, without the scale) with one
 * block of int8 activations: the reference the int8 matmul kernels are tested against. */
typedef int32_t (*kern_block_dot_fn)(const void *wblk, const int8_t *x);
/* The other block formats: llama.cpp's ggml_vec_dot_<weights>_<activations> (ggml-cpu/quants.c, generic):
 * n weights of one row . n activations quantised to the format's act, in llama.cpp's arithmetic. */
typedef float (*kern_vec_dot_fn)(int n, const void *w, const void *x);

void kern_f32_row_to_f32(float *out, const void *row, int n);
void kern_f16_row_to_f32(float *out, const void *row, int n);
void kern_bf16_row_to_f32(float *out, const void *row, int n);
void kern_q8_0_row_to_f32(float *out, const void *row, int n);
void kern_q4_0_row_to_f32(float *out, const void *row, int n);
void kern_f32_row_from_f32(void *dst, const float *src, int n);
void kern_f16_row_from_f32(void *dst, const float *src, int n);
void kern_bf16_row_from_f32(void *dst, const float *src, int n);
void kern_q8_0_row_from_f32(void *dst, const float *src, int n);
void kern_q4_0_row_from_f32(void *dst, const float *src, int n);
int32_t kern_q8_0_block_dot(const void *wblk, const int8_t *x);
int32_t kern_q4_0_block_dot(const void *wblk, const int8_t *x);

/* The row conversions and dot products of the other block formats (kquants.c, kquants_quantize.c), by
 * the format's name as kern_formats spells it. */
#define KERN_BLOCK_FORMAT_FNS(x)                                                                              \
    void kern_##x##_row_to_f32(float *out, const void *row, int n);                                          \
    void kern_##x##_row_from_f32(void *dst, const float *src, int n);                                        \
    float kern_##x##_vec_dot(int n, const void *w, const void *act);
KERN_BLOCK_FORMAT_FNS(q4_1)
KERN_BLOCK_FORMAT_FNS(q5_0)
KERN_BLOCK_FORMAT_FNS(q5_1)
KERN_BLOCK_FORMAT_FNS(q2_k)
KERN_BLOCK_FORMAT_FNS(q3_k)
KERN_BLOCK_FORMAT_FNS(q4_k)
KERN_BLOCK_FORMAT_FNS(q5_k)
KERN_BLOCK_FORMAT_FNS(q6_k)
KERN_BLOCK_FORMAT_FNS(iq4_nl)
KERN_BLOCK_FORMAT_FNS(iq4_xs)

/* The int8 activation formats llama.cpp's CPU dot products take (its vec_dot_type): the matmul quantises
 * each token's activations to the weight format's act once per call. The panel formats (Q8_0 / Q4_0) take
 * act_q8 (quant.h: Q8_0 plus a correction term) through the ISA's quantize_act instead. */
typedef enum { KERN_ACT_F32 = 0, KERN_ACT_Q8_0, KERN_ACT_Q8_1, KERN_ACT_Q8_K, KERN_ACT_COUNT } kern_act;
void kern_q8_1_row_from_f32(void *dst, const float *src, int n);
void kern_q8_k_row_from_f32(void *dst, const float *src, int n);
typedef struct kern_act_format {
    int block_values;
    size_t block_bytes;
    kern_from_f32_fn quantize; /* llama.cpp's quantize_row_*_ref */
} kern_act_format;
static const kern_act_format kern_acts[KERN_ACT_COUNT] = {
    [KERN_ACT_F32] = {1, sizeof(float), kern_f32_row_from_f32},
    [KERN_ACT_Q8_0] = {QK, sizeof(block_q8_0), kern_q8_0_row_from_f32},
    [KERN_ACT_Q8_1] = {QK, sizeof(block_q8_1), kern_q8_1_row_from_f32},
    [KERN_ACT_Q8_K] = {QK_K, sizeof(block_q8_K), kern_q8_k_row_from_f32},
};
/* Bytes of one token's activations of `cols` values in format a. */
static inline size_t kern_act_row_bytes(kern_act a, int cols) {
    return (size_t)(cols / kern_acts[a].block_values) * kern_acts[a].block_bytes;
}

typedef struct kern_format {
    const char *name;        /* as flags, JSON and weight-cache tags spell it: "f32", "q4_0", ... (llama.cpp's
                                type name, lower-case) */
    const char *st_name;     /* the safetensors dtype string; NULL: safetensors has no such dtype */
    int gguf_type;           /* ggml_type id in GGUF files */
    int block_values;        /* values per block (1 for the float formats) */
    size_t block_bytes;      /* bytes per block */
    kern_to_f32_fn to_f32;
    kern_from_f32_fn from_f32;
    /* How the matmul computes with it: one of two kernel families for the block formats. */
    bool panels;             /* Q8_0 / Q4_0: each block starts with its f16 scale, then its quants; int8
                                path on act_q8 activations, rows in 16-row panels (kernels.h) */
    int weight_offset;       /* panels: added to a weight to make it unsigned for vpdpbusd / pmaddubsw
                                (Q8_0: w ^ 0x80 = w + 128; Q4_0: the stored nibble = w + 8); quant.h */
    int panel_groups;        /* panels: 4-byte quant groups per block in a panel (kernels.h) */
    kern_block_dot_fn block_dot; /* panels */
    bool vec_dot_panels;     /* a vec_dot format whose rows the loader also puts in 16-row panels (Q4_K:
                                panel_q4_k; Q6_K: panel_q6_k; kernels.h) */
    kern_act act;            /* the others: activations quantised to this (llama.cpp's vec_dot_type) ... */
    kern_vec_dot_fn vec_dot; /* ... and dotted with a row by llama.cpp's arithmetic (kquants.h) */
} kern_format;

/* The block formats computed with llama.cpp's vec_dot against act-quantised activations. */
#define KERN_VEC_DOT_FORMAT(x, gguf, values, block, act_, ...)                                                \
    {.name = #x, .gguf_type = gguf, .block_values = values, .block_bytes = sizeof(block),                    \
     .to_f32 = kern_##x##_row_to_f32, .from_f32 = kern_##x##_row_from_f32, .act = act_,                       \
     .vec_dot = kern_##x##_vec_dot, __VA_ARGS__}

static const kern_format kern_formats[KILN_DT_COUNT] = {
    [KILN_DT_F32] = {.name = "f32", .st_name = "F32", .gguf_type = 0, .block_values = 1, .block_bytes = 4,
                     .to_f32 = kern_f32_row_to_f32, .from_f32 = kern_f32_row_from_f32},
    [KILN_DT_F16] = {.name = "f16", .st_name = "F16", .gguf_type = 1, .block_values = 1, .block_bytes = 2,
                     .to_f32 = kern_f16_row_to_f32, .from_f32 = kern_f16_row_from_f32},
    [KILN_DT_BF16] = {.name = "bf16", .st_name = "BF16", .gguf_type = 30, .block_values = 1, .block_bytes = 2,
                      .to_f32 = kern_bf16_row_to_f32, .from_f32 = kern_bf16_row_from_f32},
    [KILN_DT_Q8_0] = {.name = "q8_0", .gguf_type = 8, .block_values = QK, .block_bytes = sizeof(block_q8_0),
                      .to_f32 = kern_q8_0_row_to_f32, .from_f32 = kern_q8_0_row_from_f32, .panels = true,
                      .weight_offset = 128, .panel_groups = QK / 4, .block_dot = kern_q8_0_block_dot,
                      .act = KERN_ACT_Q8_0},
    [KILN_DT_Q4_0] = {.name = "q4_0", .gguf_type = 2, .block_values = QK, .block_bytes = sizeof(block_q4_0),
                      .to_f32 = kern_q4_0_row_to_f32, .from_f32 = kern_q4_0_row_from_f32, .panels = true,
                      .weight_offset = 8, .panel_groups = QK / 8, .block_dot = kern_q4_0_block_dot,
                      .act = KERN_ACT_Q8_0},
    [KILN_DT_Q4_1] = KERN_VEC_DOT_FORMAT(q4_1, 3, QK, block_q4_1, KERN_ACT_Q8_1),
    [KILN_DT_Q5_0] = KERN_VEC_DOT_FORMAT(q5_0, 6, QK, block_q5_0, KERN_ACT_Q8_0),
    [KILN_DT_Q5_1] = KERN_VEC_DOT_FORMAT(q5_1, 7, QK, block_q5_1, KERN_ACT_Q8_1),
    [KILN_DT_Q2_K] = KERN_VEC_DOT_FORMAT(q2_k, 10, QK_K, block_q2_K, KERN_ACT_Q8_K),
    [KILN_DT_Q3_K] = KERN_VEC_DOT_FORMAT(q3_k, 11, QK_K, block_q3_K, KERN_ACT_Q8_K),
    [KILN_DT_Q4_K] = KERN_VEC_DOT_FORMAT(q4_k, 12, QK_K, block_q4_K, KERN_ACT_Q8_K, .vec_dot_panels = true),
    [KILN_DT_Q5_K] = KERN_VEC_DOT_FORMAT(q5_k, 13, QK_K, block_q5_K, KERN_ACT_Q8_K),
    [KILN_DT_Q6_K] = KERN_VEC_DOT_FORMAT(q6_k, 14, QK_K, block_q6_K, KERN_ACT_Q8_K, .vec_dot_panels = true),
    [KILN_DT_IQ4_NL] = KERN_VEC_DOT_FORMAT(iq4_nl, 20, QK, block_iq4_nl, KERN_ACT_Q8_0),
    [KILN_DT_IQ4_XS] = KERN_VEC_DOT_FORMAT(iq4_xs, 23, QK_K, block_iq4_xs, KERN_ACT_Q8_K),
};
#undef KERN_VEC_DOT_FORMAT

/* The largest block of a panel format (stack buffers for one panel block; per 32 values, a bound on the
 * row scratch of a gathered panel row). */
#define KERN_MAX_BLOCK_BYTES sizeof(block_q6_K)
_Static_assert(sizeof(block_q4_0) <= KERN_MAX_BLOCK_BYTES && sizeof(block_q8_0) <= KERN_MAX_BLOCK_BYTES &&
                   sizeof(block_q4_K) <= KERN_MAX_BLOCK_BYTES,
               "KERN_MAX_BLOCK_BYTES covers every panel block");

static inline bool kern_dtype_valid(int dt) { return dt >= 0 && dt < KILN_DT_COUNT; }
/* Block-quantised (int8 activations, kern_matmul needs scratch), and of those the panel family. */
static inline bool kern_is_quantised(kiln_dtype dt) { return kern_dtype_valid((int)dt) && kern_formats[dt].block_values > 1; }
static inline bool kern_has_panels(kiln_dtype dt) {
    return kern_dtype_valid((int)dt) && (kern_formats[dt].panels || kern_formats[dt].vec_dot_panels);
}

/* Bytes of one row of `cols` values in format dt (cols a multiple of block_values; 0 for an unknown dt). */
static inline size_t kern_row_bytes(kiln_dtype dt, int cols) {
    if (!kern_dtype_valid((int)dt)) return 0;
    return (size_t)(cols / kern_formats[dt].block_values) * kern_formats[dt].block_bytes;
}
/* A panel format block's scale (every panel format block starts with it). */
static inline float kern_block_scale(const void *blk) {
    uint16_t d;
    memcpy(&d, blk, sizeof d);
    return kern_f16_to_f32(d);
}
/* Whether rows of `cols` values can be stored in format dt (whole blocks). */
static inline bool kern_row_fits(kiln_dtype dt, int cols) { return cols % kern_formats[dt].block_values == 0; }


#endif
