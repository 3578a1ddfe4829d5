/* kernels.h — the compute primitives the forward pass uses, behind one small interface.
 *
 * The scalar versions (kernels_scalar.c) are the specification; SIMD versions (*_avx2.c, *_avx512.c)
 * are chosen once at start-up from CPUID and tested against the scalar ones. Setting the environment
 * variable KILN_ISA=scalar|avx2|avx512 forces a choice (tests, benchmarks).
 *
 * Data layout: a weight matrix is [rows][cols] row-major, rows = output features (as safetensors stores
 * nn.Linear weights). Q8_0 / Q4_0 rows are cols/32 blocks laid out exactly as llama.cpp's block_q8_0 /
 * block_q4_0 (f16 scale then 32 int8 / 16 bytes of nibbles). Activations are f32.
 *
 * Row interleaving (Q8_0 / Q4_0 only, kiln_mat.il > 1): rows come in groups of il whose blocks alternate,
 * block b of row g*il + i at group start + (b*il + i) * block bytes; rows after the last whole group are
 * plain. Each group still occupies il plain rows' bytes. Why: a GEMV computes il rows at once for
 * instruction-level parallelism, and il separate row streams defeat the hardware prefetcher (measured on
 * this Zen 5: 4 interleaved 2176-byte rows read at ~18 GB/s per core against ~33 GB/s sequential);
 * interleaved, the same work is one sequential stream. Blocks themselves stay llama.cpp's, so a GGUF
 * tensor maps as il = 1 and llama.cpp's repacking does the same thing for its own kernels. */
#ifndef KILN_KERNELS_H
#define KILN_KERNELS_H

#include <stdint.h>

#include "kernels/quant.h"
#include "kiln.h"
#include "runtime/threadpool.h"

typedef struct kiln_mat {
    const void *data;
    kiln_dtype dt;
    int rows, cols;
    int il; /* row interleave (see above); 0 or 1 = plain rows */
} kiln_mat;

/* The interleave the loader gives Q8_0 / Q4_0 matrices (matches the 4-row tiles of the SIMD kernels). */
#define KERN_QUANT_IL 4

/* Where row r of a quantised matrix starts and how far apart its consecutive blocks are (bytes). */
static inline const char *kern_qrow(const kiln_mat *m, int r, size_t *bstep) {
    const size_t bsz = m->dt == KILN_DT_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0), rb = bsz * (size_t)(m->cols / 32);
    const int il = m->il > 1 ? m->il : 1;
    if (il == 1 || r >= m->rows / il * il) {
        *bstep = bsz;
        return (const char *)m->data + (size_t)r * rb;
    }
    *bstep = bsz * (size_t)il;
    return (const char *)m->data + (size_t)(r / il) * il * rb + (size_t)(r % il) * bsz;
}

/* Bytes of one row of `cols` values in format dt (cols must be a multiple of 32 for Q8_0/Q4_0). */
size_t kern_row_bytes(kiln_dtype dt, int cols);

/* Picks the ISA once (idempotent, thread-safe): the best one CPUID allows, or $KILN_ISA when it names a
 * supported one (an unsupported or unknown KILN_ISA falls back to the best, never to a faulting path). */
void kern_init(void);
const char *kern_isa_name(void);

/* y[n][m->rows] = x[n][m->cols] · m^T (+ bias[m->rows] when bias != NULL), split over the pool. */
void kern_matmul(kiln_pool *pool, float *y, const float *x, int n, const kiln_mat *m, const float *bias);
/* out[i][0..cols) = row ids[i] of m, converted to f32 (embedding lookup; any interleave). */
void kern_get_rows(float *out, const kiln_mat *m, const int32_t *ids, int n);
/* y = x / sqrt(mean(x^2) + eps) * w; y may alias x. */
void kern_rmsnorm(float *y, const float *x, const float *w, int dim, float eps);
/* gate[i] = silu(gate[i]) * up[i]. */
void kern_silu_mul(float *gate, const float *up, int n);
/* In-place softmax over n values. */
void kern_softmax(float *x, int n);

/* Scalar format conversions (the reference everybody agrees on). */
float kern_f16_to_f32(uint16_t h);
uint16_t kern_f32_to_f16(float f);
float kern_bf16_to_f32(uint16_t h);
uint16_t kern_f32_to_bf16(float f); /* round to nearest even, as torch does */
void kern_row_to_f32(float *out, const void *row, kiln_dtype dt, int cols);
/* Converts / quantises one row of f32 into format dt (llama.cpp's reference rounding for Q8_0/Q4_0). */
void kern_row_from_f32(void *dst, kiln_dtype dt, const float *src, int cols);
/* Converts a plain rows x cols matrix from src_dt to dst_dt (through f32, row by row) split over the
 * pool: the load-time path behind --dtype / --quant. cols % 32 == 0 when dst_dt is Q8_0/Q4_0, and then
 * dst gets row interleave il (1 = plain; float formats are always plain). Returns 0, or -1 when out of
 * memory (dst is then incomplete). */
int kern_convert_mat(kiln_pool *pool, void *dst, kiln_dtype dst_dt, const void *src, kiln_dtype src_dt, int rows,
                     int cols, int il);


/* ---- RoPE and attention (src/kernels/rope.c, src/kernels/attention.c) ---- */

/* Rotary embedding in the Hugging Face convention (rotate_half: dimension i pairs with i + head_dim/2),
 * in place on n_heads heads of head_dim values; cos/sin hold head_dim/2 values for this position. */
void kern_rope(float *x, int n_heads, int head_dim, const float *cos, const float *sin);

/* Causal attention of one query token over n_pos cached positions (0..n_pos-1) of a paged KV cache.
 * Key/value of position p, kv head h: k + table[p / block] * block_stride + (p % block) * row_stride
 * + h * head_stride (same for v). q and out are [n_heads][head_dim]; query head i uses kv head i / (n_heads / n_kv_heads).
 * scratch holds n_pos floats. */
typedef struct kern_kv_view {
    const float *k, *v;
    const int *table;
    int block;
    size_t block_stride, row_stride, head_stride;
} kern_kv_view;
/* Heads [h0, h1) of one query token attending over positions 0..n_pos-1 (scratch: n_pos floats). */
void kern_attention(float *out, const float *q, int n_heads, int n_kv_heads, int head_dim, int n_pos,
                    const kern_kv_view *kv, float *scratch, int h0, int h1);

#endif
