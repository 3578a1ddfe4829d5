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

#include "kernels/quant.h"
#include "kiln.h"

/* Scalar conversions (the reference everybody agrees on). */
float kern_f16_to_f32(uint16_t h);
uint16_t kern_f32_to_f16(float f);
float kern_bf16_to_f32(uint16_t h);
uint16_t kern_f32_to_bf16(float f); /* round to nearest even, as torch does */

/* Row conversions: n values (a multiple of block_values). from_f32 is the reference rounding (torch's
 * round-to-nearest-even for f16/bf16, llama.cpp's quantize_row_*_ref for Q8_0/Q4_0). */
typedef void (*kern_to_f32_fn)(float *out, const void *row, int n);
typedef void (*kern_from_f32_fn)(void *dst, const float *src, int n);
/* Quantised formats: the exact integer dot of one weight block (its quants, without the scale) with one
 * block of int8 activations: the reference the int8 matmul kernels are tested against. */
typedef int32_t (*kern_block_dot_fn)(const void *wblk, const int8_t *x);

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

typedef struct kern_format {
    const char *name;        /* as flags, JSON and weight-cache tags spell it: "f32", "q4_0", ... */
    const char *st_name;     /* the safetensors dtype string; NULL: safetensors has no such dtype */
    int gguf_type;           /* ggml_type id in GGUF files */
    int block_values;        /* values per block (1 for the float formats) */
    size_t block_bytes;      /* bytes per block */
    bool quantised;          /* block-quantised: each block starts with its f16 scale, then its quants;
                                int8 matmul path, 16-row panels */
    int weight_offset;       /* quantised: added to a weight to make it unsigned for vpdpbusd / pmaddubsw
                                (Q8_0: w ^ 0x80 = w + 128; Q4_0: the stored nibble = w + 8); quant.h */
    int panel_groups;        /* quantised: 4-byte quant groups per block in a panel (kernels.h) */
    kern_to_f32_fn to_f32;
    kern_from_f32_fn from_f32;
    kern_block_dot_fn block_dot; /* quantised only */
} kern_format;

static const kern_format kern_formats[KILN_DT_COUNT] = {
    [KILN_DT_F32] = {.name = "f32", .st_name = "F32", .gguf_type = 0, .block_values = 1, .block_bytes = 4,
                     .to_f32 = kern_f32_row_to_f32, .from_f32 = kern_f32_row_from_f32},
    [KILN_DT_F16] = {.name = "f16", .st_name = "F16", .gguf_type = 1, .block_values = 1, .block_bytes = 2,
                     .to_f32 = kern_f16_row_to_f32, .from_f32 = kern_f16_row_from_f32},
    [KILN_DT_BF16] = {.name = "bf16", .st_name = "BF16", .gguf_type = 30, .block_values = 1, .block_bytes = 2,
                      .to_f32 = kern_bf16_row_to_f32, .from_f32 = kern_bf16_row_from_f32},
    [KILN_DT_Q8_0] = {.name = "q8_0", .gguf_type = 8, .block_values = QK, .block_bytes = sizeof(block_q8_0),
                      .quantised = true, .weight_offset = 128, .panel_groups = QK / 4,
                      .to_f32 = kern_q8_0_row_to_f32, .from_f32 = kern_q8_0_row_from_f32,
                      .block_dot = kern_q8_0_block_dot},
    [KILN_DT_Q4_0] = {.name = "q4_0", .gguf_type = 2, .block_values = QK, .block_bytes = sizeof(block_q4_0),
                      .quantised = true, .weight_offset = 8, .panel_groups = QK / 8,
                      .to_f32 = kern_q4_0_row_to_f32, .from_f32 = kern_q4_0_row_from_f32,
                      .block_dot = kern_q4_0_block_dot},
};

/* The largest block of any format (stack buffers for one block; the row scratch of a gathered row). */
#define KERN_MAX_BLOCK_BYTES sizeof(block_q8_0)
_Static_assert(sizeof(block_q4_0) <= KERN_MAX_BLOCK_BYTES, "KERN_MAX_BLOCK_BYTES covers every block");

static inline bool kern_dtype_valid(int dt) { return dt >= 0 && dt < KILN_DT_COUNT; }
static inline bool kern_is_quantised(kiln_dtype dt) { return kern_dtype_valid((int)dt) && kern_formats[dt].quantised; }

/* Bytes of one row of `cols` values in format dt (cols a multiple of block_values; 0 for an unknown dt). */
static inline size_t kern_row_bytes(kiln_dtype dt, int cols) {
    if (!kern_dtype_valid((int)dt)) return 0;
    return (size_t)(cols / kern_formats[dt].block_values) * kern_formats[dt].block_bytes;
}
/* A quantised block's scale (every quantised block starts with it). */
static inline float kern_block_scale(const void *blk) {
    uint16_t d;
    memcpy(&d, blk, sizeof d);
    return kern_f16_to_f32(d);
}
/* Whether rows of `cols` values can be stored in format dt (whole blocks). */
static inline bool kern_row_fits(kiln_dtype dt, int cols) { return cols % kern_formats[dt].block_values == 0; }


#endif
