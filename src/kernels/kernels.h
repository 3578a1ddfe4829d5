/* kernels.h — the compute primitives the forward pass uses, behind one small interface.
 *
 * The scalar versions (kernels_scalar.c) are the specification; SIMD versions (*_avx2.c, *_avx512.c)
 * are chosen once at start-up from CPUID and tested against the scalar ones. Setting the environment
 * variable KILN_ISA=scalar|avx2|avx512 forces a choice (tests, benchmarks).
 *
 * Data layout: a weight matrix is [rows][cols] row-major, rows = output features (as safetensors stores
 * nn.Linear weights). Q8_0 / Q4_0 rows are cols/32 blocks laid out exactly as llama.cpp's block_q8_0 /
 * block_q4_0 (f16 scale then 32 int8 / 16 bytes of nibbles); the other block formats' rows are their
 * llama.cpp blocks one after another (kquants.h). Activations are f32.
 *
 * Panels (Q8_0 / Q4_0 only, kiln_mat.layout == KERN_LAYOUT_PANEL16): the first rows/16*16 rows are
 * stored in panels of 16 rows; rows after the last whole panel are plain. Panel P fills the bytes of plain
 * rows 16P..16P+15 with its nb panel blocks in order; panel block b (panel_q8_0 / panel_q4_0 below) holds
 * block b of the 16 rows:
 *   - their 16 f16 scales (32 bytes), then
 *   - their quant bytes in 4-byte groups: for g = 0..G-1, 16 rows x 4 bytes (64 bytes) = bytes
 *     4g..4g+3 of each row's llama.cpp qs (Q8_0: G = 8, int8 values 4g..4g+3; Q4_0: G = 4, nibble bytes,
 *     so values 4g..4g+3 in the low nibbles and 16+4g..16+4g+3 in the high ones)
 * = 544 (Q8_0) / 288 (Q4_0) bytes, the size of 16 blocks. Why: vpdpbusd multiplies 64 weight bytes by a
 * broadcast 4-byte group of one token's activations, so one instruction covers 4 values of 16 rows and the
 * 16 outputs come out as one vector (no horizontal sums, no per-row scale shuffles), and a GEMV reads
 * the matrix as one sequential stream (this Zen 5's prefetcher serves that ~1.8x faster per core than
 * 4 row streams side by side). Bytes within a block are llama.cpp's; llama.cpp's own CPU backend
 * repacks Q4_0 into interleaved rows for the same reasons. kern_qblock_get/put translate.
 *
 * Q4_K panels (panel_q4_k below; same rule: panel P fills plain rows 16P..16P+15's bytes, panel block b
 * holds super-block b of the 16 rows, 2304 bytes = 16 block_q4_K): the 16 d, the 16 dmin, the 12 packed
 * scale bytes transposed (byte k of the 16 rows side by side, so one vector op unpacks a sub-block's 6-bit
 * scale or min for all 16 rows: there is no room to store them unpacked), then the quants in 4-byte groups:
 * for chunk c = 0..3 and g = 0..7, 16 rows x bytes 32c+4g..32c+4g+3 of each row's qs (low nibbles: values
 * 64c+4g.. of sub-block 2c; high nibbles: values 64c+32+4g.. of sub-block 2c+1).
 *
 * Q6_K panels (panel_q6_k below; same rule, panel block b = super-block b of the 16 rows, 3360 bytes = 16
 * block_q6_K): the quants (3072 bytes), then the scales (256 bytes: scale j of the 16 rows side by side,
 * j = 0..15), then the d (16 f16). One block after another, so decode reads one stream per panel: the
 * first layout, three arrays per panel (all quants, then all scales, then all d, every load 64-byte
 * aligned), read memory ~20% slower on Zen 4 (the short scale streams; matmul_kquants_avx512.c). A
 * super-block's quants are 16 triples of 64-byte vectors (A, B, C), one per group j of 16 values, each
 * 16 rows x 4 bytes: byte 4 * row + i of A / B / C holds the row's stored q (0..63, the value + 32) of
 * value 16j + i / 16j + 4 + i / 16j + 8 + i in bits 0..5, and in bits 6..7 bits 0..1 / 2..3 / 4..5 of
 * the q of value 16j + 12 + i: four vpdpbusd operands from three vectors (matmul_kquants_avx512.c). */
#ifndef KILN_KERNELS_H
#define KILN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/format.h"
#include "kernels/quant.h"
#include "kiln.h"
#include "runtime/threadpool.h"

/* How a matrix's rows are laid out in memory. */
typedef enum {
    KERN_LAYOUT_PLAIN = 0, /* rows one after another (every format) */
    KERN_LAYOUT_PANEL16,   /* Q8_0 / Q4_0 / Q4_K / Q6_K: leading rows in 16-row panels (above); what the loader makes */
    KERN_LAYOUT_PREPARED,  /* one panel's scratch copy inside the AVX-512 GEMM (panel_prepared): never a
                              kiln_mat's layout, only the kernel's */
} kern_layout;

typedef struct kiln_mat {
    const void *data;
    kiln_dtype dt;
    int rows, cols;
    kern_layout layout;
} kiln_mat;

#define KERN_PANEL 16 /* rows per panel */

/* One panel block of each quantised format; the generic view (scales, then groups of 16 rows x 4 bytes)
 * is kern_panel, whose accessors serve both. */
typedef struct {
    uint16_t d[KERN_PANEL];
    uint8_t qs[QK / 4][KERN_PANEL][4];
} panel_q8_0;
typedef struct {
    uint16_t d[KERN_PANEL];
    uint8_t qs[QK / 8][KERN_PANEL][4];
} panel_q4_0;
typedef struct {
    uint16_t d[KERN_PANEL];
    uint8_t qs[][KERN_PANEL][4];
} kern_panel;
/* The AVX-512 GEMM's prepared copy of a panel block (any source format): scales, 32 unused bytes (so the
 * groups are 64-byte aligned), then 8 groups of unsigned weight bytes in value order. */
typedef struct {
    uint16_t d[KERN_PANEL];
    uint8_t unused[32];
    uint8_t w[8][KERN_PANEL][4];
} panel_prepared;

_Static_assert(sizeof(panel_q8_0) == 544 && sizeof(panel_q8_0) == KERN_PANEL * sizeof(block_q8_0), "Q8_0 panel");
_Static_assert(sizeof(panel_q4_0) == 288 && sizeof(panel_q4_0) == KERN_PANEL * sizeof(block_q4_0), "Q4_0 panel");
_Static_assert(offsetof(panel_q8_0, qs) == offsetof(kern_panel, qs) && offsetof(panel_q4_0, qs) == offsetof(kern_panel, qs),
               "every panel: 16 scales, then the groups");
_Static_assert(sizeof(panel_prepared) == 576 && offsetof(panel_prepared, w) == 64, "prepared panel block");
/* Q4_K's panel block (above): 64-byte aligned vectors at 64 (scales: bytes 0..3, 4..7, 8..11 of the 16
 * rows) and 256 on (the quant groups) within the block. */
typedef struct {
    uint16_t d[KERN_PANEL], dmin[KERN_PANEL];
    uint8_t scales[K_SCALE_SIZE][KERN_PANEL];
    uint8_t qs[QK_K / 64][8][KERN_PANEL][4];
} panel_q4_k;
_Static_assert(sizeof(panel_q4_k) == KERN_PANEL * sizeof(block_q4_K) && offsetof(panel_q4_k, scales) == 64 &&
                   offsetof(panel_q4_k, qs) == 256,
               "Q4_K panel: the size of 16 blocks, vectors 64-byte aligned in it");

/* Q6_K's panel (above): a super-block's quant and scale bytes for 16 rows. */
enum { KERN_Q6_K_PANEL_QS = 3 * QK_K / 4 * KERN_PANEL, KERN_Q6_K_PANEL_SCALES = QK_K / 16 * KERN_PANEL };
/* Where super-block b of the Q6_K panel holding row r keeps its parts (r < kern_panel_rows(m)). */
typedef struct {
    uint8_t *qs;    /* KERN_Q6_K_PANEL_QS bytes: 16 triples of 16 rows x 4 bytes */
    int8_t *scales; /* [16][KERN_PANEL]: scale j of the rows */
    uint16_t *d;    /* [KERN_PANEL] */
} panel_q6_k;

/* Bytes of one panel block of format dt (16 blocks). */
static inline size_t kern_panel_block_bytes(kiln_dtype dt) { return KERN_PANEL * kern_formats[dt].block_bytes; }
/* How many leading rows are in panels (0 for plain matrices). */
static inline int kern_panel_rows(const kiln_mat *m) {
    return m->layout == KERN_LAYOUT_PANEL16 && kern_has_panels(m->dt) ? m->rows / KERN_PANEL * KERN_PANEL : 0;
}
/* Where plain row r starts (r >= kern_panel_rows(m); a panel fills 16 plain rows' bytes). */
static inline const char *kern_qrow(const kiln_mat *m, int r) {
    return (const char *)m->data + (size_t)r * kern_row_bytes(m->dt, m->cols);
}
/* Where panel block b of the panel holding row r starts (r < kern_panel_rows(m)); a Q4_K one is a
 * panel_q4_k, a Q6_K one is split by kern_panel_q6_k. */
static inline const kern_panel *kern_panel_block(const kiln_mat *m, int r, int b) {
    const size_t nb = (size_t)(m->cols / kern_formats[m->dt].block_values);
    return (const kern_panel *)((const char *)m->data +
                                ((size_t)(r / KERN_PANEL) * nb + (size_t)b) * kern_panel_block_bytes(m->dt));
}
static inline panel_q6_k kern_panel_q6_k(const kiln_mat *m, int r, int b) {
    char *p = (char *)kern_panel_block(m, r, b);
    return (panel_q6_k){(uint8_t *)p, (int8_t *)p + KERN_Q6_K_PANEL_QS, (uint16_t *)(p + KERN_Q6_K_PANEL_QS + KERN_Q6_K_PANEL_SCALES)};
}
_Static_assert(KERN_Q6_K_PANEL_QS + KERN_Q6_K_PANEL_SCALES + 2 * KERN_PANEL == KERN_PANEL * sizeof(block_q6_K),
               "Q6_K panel: the size of 16 blocks");
/* Row r's block b as a llama.cpp block (34 / 18 / 144 / 210 bytes), whatever the layout; and the reverse. */
void kern_qblock_get(const kiln_mat *m, int r, int b, void *blk);
void kern_qblock_put(const kiln_mat *m, int r, int b, const void *blk);
/* Row r as plain llama.cpp blocks: m's own bytes when the row is plain, else gathered into buf (one row,
 * kern_row_bytes(m->dt, m->cols) bytes, the caller's). */
const char *kern_qrow_plain(const kiln_mat *m, int r, char *buf);

/* Picks the ISA once (idempotent, thread-safe): the best one CPUID allows, or $KILN_ISA when it names a
 * supported one (an unsupported or unknown KILN_ISA falls back to the best, never to a faulting path). */
void kern_init(void);
const char *kern_isa_name(void);
/* The layout the loader gives a matrix of format dt: 16-row panels where the active ISA's kernels read
 * them (kern_isa.panels: AVX-512 / AMX all four panel formats, AVX2 Q8_0 and Q4_0), else plain rows. A
 * kernel without panel code gathers a panel row at a time: on a Zen 3 that decoded a Q4_K_M GGUF at 2.1
 * tok/s against 27 from its plain rows (docs/performance.md). */
kern_layout kern_weight_layout(kiln_dtype dt);

/* Scratch for kern_matmul, owned by the caller and sized before the hot path (kern_scratch_reserve), so
 * the kernels never allocate: the quantised activations of a batch, and per thread a 64-byte aligned
 * area for one gathered row and one prepared panel. Zero-initialise; free with kern_scratch_free. */
typedef struct kern_scratch {
    act_q8 *xq;        /* panel formats' act_q8; the other block formats' activation blocks (kern_acts,
                          each no larger per value than act_q8) in the same bytes */
    size_t xq_blocks;  /* capacity of xq, in act_q8 blocks */
    char *tmp;         /* threads x tmp_bytes */
    size_t tmp_bytes;  /* per thread */
    int threads;
    /* Float arithmetic for F16 / BF16 weights with 4+ tokens. false (a zeroed struct): the exact path,
     * f32 FMA on widened weights and f32 activations (the scalar reference up to summation order). true:
     * activations rounded to bf16 once per call and vdpbf16ps dot products (F16 weights rounded to bf16
     * too) where the CPU has AVX-512 BF16, about twice the speed (docs/performance.md); s must then be
     * reserved for the float matrices as well. Decode (1-3 tokens) is exact either way. */
    bool bf16_dot;
} kern_scratch;
/* Makes s hold what kern_matmul needs for up to n tokens of rows up to cols wide (quantised matrices, and
 * float ones when s->bf16_dot; other float matrices need none) on up to nth threads. Grows only; 0, or -1
 * when out of memory (s stays usable at its old size). */
int kern_scratch_reserve(kern_scratch *s, int nth, int n, int cols);
void kern_scratch_free(kern_scratch *s);

/* y[n][m->rows] = x[n][m->cols] · m^T (+ bias[m->rows] when bias != NULL), split over the pool. Quantised
 * weights need s reserved for (pool size, n, m->cols); float weights accept s == NULL. Returns 0, or -1
 * (nothing written) when s is too small: a caller's sizing bug, never a NaN result. */
int kern_matmul(kiln_pool *pool, kern_scratch *s, float *y, const float *x, int n, const kiln_mat *m,
                const float *bias);
/* One matmul of kern_matmul_many: y[n][m->rows] = x[n][m->cols] · m^T (no bias). */
typedef struct kern_mm_task {
    float *y;
    const float *x;
    int n;
    const kiln_mat *m;
} kern_mm_task;
/* The tasks' matmuls, as kern_matmul computes each (same kernels, same row split, so the same bits), in
 * two parallel regions per 64 tasks instead of two per task: every distinct activation (tasks with the
 * same x, n and activation format share one) converted once, then all the tasks' row chunks taken from
 * one counter, so the threads stay busy across tasks (a mixture-of-experts layer's small matrices). s must
 * hold every distinct activation of a region at once. Returns 0, or -1 when s is too small (a sizing bug;
 * that region wrote nothing). */
int kern_matmul_many(kiln_pool *pool, kern_scratch *s, const kern_mm_task *tasks, int n_tasks);
/* out[i][0..cols) = row ids[i] of m, converted to f32 (embedding lookup; any layout). */
void kern_get_rows(float *out, const kiln_mat *m, const int32_t *ids, int n);
/* y = x / sqrt(mean(x^2) + eps) * w; y may alias x. */
void kern_rmsnorm(float *y, const float *x, const float *w, int dim, float eps);
/* gate[i] = silu(gate[i]) * up[i]. */
void kern_silu_mul(float *gate, const float *up, int n);
/* gate[i] = gelu_tanh(gate[i]) * up[i] (gelu_pytorch_tanh in f32, no table: the reference with libm's tanhf,
 * the AVX-512 one as x / (1 + e^(-2a)) with a vector exp, within a few ulp of it). */
void kern_gelu_tanh_mul(float *gate, const float *up, int n);
/* x[i] = tanh(x[i] / cap) * cap (Gemma's logit soft-capping). */
void kern_softcap(float *x, int n, float cap);
/* In-place softmax over n values. */
void kern_softmax(float *x, int n);

/* Converts a row between f32 and format dt (kern_formats[dt].to_f32 / from_f32; nothing for an unknown dt). */
void kern_row_to_f32(float *out, const void *row, kiln_dtype dt, int cols);
void kern_row_from_f32(void *dst, kiln_dtype dt, const float *src, int cols);
/* Converts a plain rows x cols matrix from src_dt to dst_dt (through f32, row by row) split over the
 * pool: the load-time path behind --dtype / --quant. cols % 32 == 0 when dst_dt is Q8_0/Q4_0, and then
 * dst gets layout (KERN_LAYOUT_PANEL16 or PLAIN; float formats are always plain). Returns 0, or -1 when
 * out of memory (dst is then incomplete). */
int kern_convert_mat(kiln_pool *pool, void *dst, kiln_dtype dst_dt, const void *src, kiln_dtype src_dt, int rows,
                     int cols, kern_layout layout);


/* ---- RoPE and attention (src/kernels/rope.c, src/kernels/attention.c) ---- */

/* Rotary embedding in the Hugging Face convention (rotate_half: dimension i pairs with i + head_dim/2),
 * in place on n_heads heads of head_dim values; cos/sin hold head_dim/2 values for this position. */
/* Rotates the first rot_dim values of each head (rotate-half within them; rot_dim < head_dim: partial rotary,
 * the rest pass through). cos and sin: [rot_dim / 2]. */
void kern_rope(float *x, int n_heads, int head_dim, int rot_dim, const float *cos, const float *sin);

/* Causal attention of one query token over n_pos cached positions (0..n_pos-1) of a paged KV cache.
 * Key/value row of position p, kv head h: k + table[p / block] * block_stride + (p % block) * row_stride
 * + h * head_stride bytes (same for v): head_dim values in format `type`, read as they are (no f32 copy
 * of the cache): f32, f16, bf16, or q8_0 (head_dim / 32 llama.cpp block_q8_0s; head_dim % 32 == 0).
 * q and out are [n_heads][head_dim] f32; query head i uses kv head i / (n_heads / n_kv_heads).
 * scratch holds n_pos floats. */
typedef struct kern_kv_view {
    const char *k, *v;
    const int *table;
    int block;
    size_t block_stride, row_stride, head_stride; /* bytes */
    kiln_dtype type;
    /* The layer's attention, all zero for plain causal attention: the first visible position (a sliding
     * window: positions first..n_pos-1 only), the score scale (0: 1 / sqrt(head_dim)) and the scores'
     * soft-cap (tanh(s / cap) * cap before the softmax; 0: none). */
    int first;
    float scale, softcap;
} kern_kv_view;
/* Whether the KV cache can hold heads of head_dim values in format t (the attention kernels read it). */
static inline bool kern_kv_type_ok(kiln_dtype t, int head_dim) {
    return t == KILN_DT_F32 || t == KILN_DT_F16 || t == KILN_DT_BF16 || (t == KILN_DT_Q8_0 && head_dim % QK == 0);
}
/* Heads [h0, h1) of one query token attending over positions kv->first..n_pos-1 (scratch: n_pos floats,
 * indexed by position). */
void kern_attention(float *out, const float *q, int n_heads, int n_kv_heads, int head_dim, int n_pos,
                    const kern_kv_view *kv, float *scratch, int h0, int h1);

/* A block of queries at once: nq consecutive positions pos0..pos0+nq-1 of one sequence (already in the
 * cache), query heads [h0, h1) (fastest when they share one kv head: its rows are read once for all). Query t is q + t * q_stride floats (its heads as above),
 * its output out + t * q_stride; it attends causally over positions first_t..pos0+t, first_t =
 * max(kv->first, pos0 + t + 1 - window) (window 0: no window). The AVX-512 version is tiled
 * flash-attention style (a tile of up to 64 query rows = tokens x heads against 64 keys at a time, online
 * softmax, so each key and value row is read once per tile, not once per query); fewer than 16 rows (a
 * decoding token) go a kv head's query heads together, in one online-softmax pass over its keys. scratch: kern_attention_block_scratch
 * floats, the caller's (nothing allocates). */
void kern_attention_block(float *out, const float *q, size_t q_stride, int nq, int pos0, int window, int n_heads,
                          int n_kv_heads, int head_dim, int h0, int h1, const kern_kv_view *kv, float *scratch);
/* Query rows (tokens x heads) and keys of one flash tile: a caller gives kern_attention_block up to
 * KERN_ATTN_ROWS / (h1 - h0) tokens at a time to make one tile of them. */
enum { KERN_ATTN_ROWS = 64, KERN_ATTN_KEYS = 64 };
/* Floats of scratch kern_attention_block needs (and kern_attention, whose n_pos <= n_ctx) for caches of up
 * to n_ctx positions and heads of head_dim. */
size_t kern_attention_block_scratch(int n_ctx, int head_dim);

#endif
