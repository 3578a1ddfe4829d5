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
 * Panels (Q8_0 / Q4_0 only, kiln_mat.il == KERN_PANEL): the first rows/16*16 rows are stored in panels
 * of 16 rows; rows after the last whole panel are plain. Panel P fills the bytes of plain rows
 * 16P..16P+15 with its nb panel blocks in order; panel block b holds block b of the 16 rows:
 *   - their 16 f16 scales (32 bytes), then
 *   - their quant bytes in 4-byte groups: for g = 0..G-1, 16 rows x 4 bytes (64 bytes) = bytes
 *     4g..4g+3 of each row's llama.cpp qs (Q8_0: G = 8, int8 values 4g..4g+3; Q4_0: G = 4, nibble bytes,
 *     so values 4g..4g+3 in the low nibbles and 16+4g..16+4g+3 in the high ones)
 * = 544 (Q8_0) / 288 (Q4_0) bytes, the size of 16 blocks. Why: vpdpbusd multiplies 64 weight bytes by a
 * broadcast 4-byte group of one token's activations, so one instruction covers 4 values of 16 rows and the
 * 16 outputs come out as one vector (no horizontal sums, no per-row scale shuffles), and a GEMV reads
 * the matrix as one sequential stream (this Zen 5's prefetcher serves that ~1.8x faster per core than
 * 4 row streams side by side). Bytes within a block are llama.cpp's; llama.cpp's own CPU backend
 * repacks Q4_0 into interleaved rows for the same reasons. kern_qblock_get/put translate. */
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
    int il; /* quantised layout: KERN_PANEL = panels (see above); 0 or 1 = plain rows */
} kiln_mat;

/* The layout the loader gives Q8_0 / Q4_0 matrices. */
#define KERN_PANEL 16

/* How many leading rows are in panels (0 for plain matrices). */
static inline int kern_panel_rows(const kiln_mat *m) {
    return m->il == KERN_PANEL && (m->dt == KILN_DT_Q8_0 || m->dt == KILN_DT_Q4_0) ? m->rows / KERN_PANEL * KERN_PANEL : 0;
}
/* Where plain quantised row r starts (r >= kern_panel_rows(m); a panel fills 16 plain rows' bytes). */
static inline const char *kern_qrow(const kiln_mat *m, int r) {
    const size_t bsz = m->dt == KILN_DT_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    return (const char *)m->data + (size_t)r * bsz * (size_t)(m->cols / 32);
}
/* Where panel block b of the panel holding row r starts (r < kern_panel_rows(m)). */
static inline const char *kern_panel_block(const kiln_mat *m, int r, int b) {
    const size_t bsz = m->dt == KILN_DT_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    return (const char *)m->data + ((size_t)(r / KERN_PANEL) * (size_t)(m->cols / 32) + (size_t)b) * KERN_PANEL * bsz;
}
/* Row r's block b as a llama.cpp block (34 / 18 bytes), whatever the layout; and the reverse. */
void kern_qblock_get(const kiln_mat *m, int r, int b, void *blk);
void kern_qblock_put(const kiln_mat *m, int r, int b, const void *blk);
/* Row r as plain llama.cpp blocks: m's own bytes when the row is plain, else gathered into buf (one row). */
const char *kern_qrow_plain(const kiln_mat *m, int r, char *buf);

/* Bytes of one row of `cols` values in format dt (cols must be a multiple of 32 for Q8_0/Q4_0). */
size_t kern_row_bytes(kiln_dtype dt, int cols);

/* Picks the ISA once (idempotent, thread-safe): the best one CPUID allows, or $KILN_ISA when it names a
 * supported one (an unsupported or unknown KILN_ISA falls back to the best, never to a faulting path). */
void kern_init(void);
const char *kern_isa_name(void);

/* y[n][m->rows] = x[n][m->cols] · m^T (+ bias[m->rows] when bias != NULL), split over the pool. */
void kern_matmul(kiln_pool *pool, float *y, const float *x, int n, const kiln_mat *m, const float *bias);
/* out[i][0..cols) = row ids[i] of m, converted to f32 (embedding lookup; any layout). */
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
 * dst gets layout il (KERN_PANEL or 1 = plain; float formats are always plain). Returns 0, or -1 when out of
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
