/* matmul.h — the per-ISA kernel table behind kern_matmul and kern_attention (internal to src/kernels).
 *
 * A gemm function computes y[t][r] = dot(row r of m, token t of x) for t in [0, n) and rows r in
 * [r0, r1); y has m->rows columns per token. For F32/F16/BF16 weights x is float[n][cols]; for Q8_0 /
 * Q4_0 weights x is act_q8[n][cols/32], quantised with the offset kern_formats[m->dt].weight_offset, and
 * tmp is this thread's kern_gemm_tmp_bytes(cols) of scratch (NULL for float weights); for the other block
 * formats x is n tokens of kern_formats[m->dt].act blocks, kern_act_row_bytes(act, cols) apart. Bias is
 * added by the caller. Each ISA file fills one table (a NULL entry: the scalar one runs); kern_init picks
 * one. */
#ifndef KILN_MATMUL_H
#define KILN_MATMUL_H

#include <math.h>

#include "kernels/kernels.h"
#include "kernels/quant.h"

typedef void (*kern_gemm_fn)(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp);

/* The per-thread scratch a gemm function may use (tmp above; 64-byte aligned, quantised weights only): one
 * prepared panel (AVX-512 prefill) and one gathered plain row (kern_qrow_plain), for rows of cols values. */
size_t kern_gemm_tmp_bytes(int cols);
/* Where in tmp the prepared panel (64-byte aligned) and the gathered row live. */
static inline panel_prepared *kern_tmp_prepared(void *tmp) { return tmp; }
static inline char *kern_tmp_row(void *tmp, int cols) {
    return (char *)tmp + (((size_t)(cols / QK) * sizeof(panel_prepared) + 63) & ~(size_t)63);
}

typedef void (*kern_attn_fn)(float *out, const float *q, int n_heads, int n_kv_heads, int head_dim, int n_pos,
                             const kern_kv_view *kv, float *scratch, int h0, int h1);

typedef void (*kern_attn_block_fn)(float *out, const float *q, size_t q_stride, int nq, int pos0, int window,
                                   int n_heads, int n_kv_heads, int head_dim, int h0, int h1, const kern_kv_view *kv,
                                   float *scratch);

typedef struct kern_isa {
    const char *name;
    bool panels[KILN_DT_COUNT]; /* formats (of the panel family) whose kernels here read 16-row panels
                                   natively (kern_weight_layout); the others gather a panel row at a time,
                                   so their matrices stay in plain rows */
    kern_gemm_fn gemm[KILN_DT_COUNT]; /* indexed by weight dtype */
    kern_attn_fn attention;           /* kern_attention's contract (kernels.h) */
    void (*quantize_act)(const float *x, act_q8 *y, int k, int c); /* quantize_act_ref's contract */
    void (*quantize_q8_k)(const float *x, block_q8_K *y, int k);    /* quantize_row_q8_K_ref's, bit for bit */
    void (*silu_mul)(float *gate, const float *up, int n);         /* kern_silu_mul's contract */
    /* The bf16 dot-product path for float weights (kern_scratch.bf16_dot; NULL entries: none): x is
     * bf16[n][kern_bf16_act_stride(cols)] made by to_bf16, tmp holds kern_bf16_tile_rows(cols) rows of
     * kern_bf16_act_stride(cols) bf16 values (an F16 weight tile rounded to bf16, or the AMX kernels'
     * packed weight strip). */
    kern_gemm_fn gemm_bf16dot[KILN_DT_COUNT];
    void (*to_bf16)(const float *x, uint16_t *y, int n); /* n floats rounded to bf16, zero-padded to 32 */
    void (*gelu_tanh_mul)(float *gate, const float *up, int n);    /* kern_gelu_tanh_mul's contract */
    kern_attn_block_fn attention_block; /* kern_attention_block's contract */
} kern_isa;

/* Values between two tokens' bf16 activations: cols rounded up to whole 32-value vectors. */
static inline size_t kern_bf16_act_stride(int cols) { return ((size_t)cols + 31) & ~(size_t)31; }
/* Rows of a bf16 weight tile in a thread's scratch, each kern_bf16_act_stride(cols) values: at most
 * KERN_BF16_TILE_BYTES (stays in L2 while every token block passes over it), at least one 16-row group. */
#define KERN_BF16_TILE_BYTES ((size_t)256 << 10)
static inline int kern_bf16_tile_rows(int cols) {
    int rows = (int)(KERN_BF16_TILE_BYTES / (kern_bf16_act_stride(cols > 0 ? cols : 1) * 2)) & ~15;
    return rows < 16 ? 16 : rows;
}

void quantize_act_avx512(const float *x, act_q8 *y, int k, int c);
/* gemm_bf16dot on AMX tiles (matmul_amx.c; kern_isa_amx): F16 / BF16 weights. */
void kern_gemm_bf16dot_f16_amx(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp);
void kern_gemm_bf16dot_bf16_amx(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp);
/* Q4_K / Q5_K / Q6_K weights against Q8_K activations (matmul_kquants_avx512.c). */
void kern_gemm_q4_k_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp);
void kern_gemm_q5_k_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp);
void kern_gemm_q6_k_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp);
/* Q5_0 / IQ4_NL weights against Q8_0 activations, Q4_1 / Q5_1 against Q8_1 (matmul_legacy_avx512.c). */
void kern_gemm_q5_0_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp);
void kern_gemm_iq4_nl_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp);
void kern_gemm_q4_1_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp);
void kern_gemm_q5_1_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp);
/* The same against AVX2 (matmul_kquants_avx2.c). */
void kern_gemm_q4_k_avx2(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp);
void kern_gemm_q5_k_avx2(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp);
void kern_gemm_q6_k_avx2(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp);
void kern_silu_mul_ref(float *gate, const float *up, int n);
void silu_mul_avx512(float *gate, const float *up, int n);
void kern_gelu_tanh_mul_ref(float *gate, const float *up, int n);
void gelu_tanh_mul_avx512(float *gate, const float *up, int n);
void silu_mul_avx2(float *gate, const float *up, int n); /* activation_avx2.c */
void gelu_tanh_mul_avx2(float *gate, const float *up, int n);

/* Attention: the portable reference (attention.c), the AVX-512 (attention_avx512.c) and AVX2
 * (attention_avx2.c) versions. */
/* The score scale kv asks for (kern_kv_view.scale; 0: 1 / sqrt(head_dim)). */
static inline float kern_attn_scale(const kern_kv_view *kv, int head_dim) {
    return kv->scale > 0 ? kv->scale : 1.0f / sqrtf((float)head_dim);
}
void kern_attention_ref(float *out, const float *q, int n_heads, int n_kv_heads, int head_dim, int n_pos,
                        const kern_kv_view *kv, float *scratch, int h0, int h1);
void kern_attention_avx512(float *out, const float *q, int n_heads, int n_kv_heads, int head_dim, int n_pos,
                           const kern_kv_view *kv, float *scratch, int h0, int h1);

void kern_attention_block_ref(float *out, const float *q, size_t q_stride, int nq, int pos0, int window, int n_heads,
                              int n_kv_heads, int head_dim, int h0, int h1, const kern_kv_view *kv, float *scratch);
void kern_attention_avx2(float *out, const float *q, int n_heads, int n_kv_heads, int head_dim, int n_pos,
                         const kern_kv_view *kv, float *scratch, int h0, int h1);
void kern_attention_block_avx2(float *out, const float *q, size_t q_stride, int nq, int pos0, int window, int n_heads,
                               int n_kv_heads, int head_dim, int h0, int h1, const kern_kv_view *kv, float *scratch);
void kern_attention_block_avx512(float *out, const float *q, size_t q_stride, int nq, int pos0, int window,
                                 int n_heads, int n_kv_heads, int head_dim, int h0, int h1, const kern_kv_view *kv,
                                 float *scratch);
/* The first position a query at pos sees (kern_attention_block). */
static inline int kern_attn_first(const kern_kv_view *kv, int pos, int window) {
    const int w = window > 0 && pos + 1 - window > 0 ? pos + 1 - window : 0;
    return w > kv->first ? w : kv->first;
}

/* kern_isa_amx: kern_isa_avx512 with gemm_bf16dot on AMX tiles (CPUs with AMX-BF16, kiln_cpu.amx_bf16). */
extern const kern_isa kern_isa_scalar, kern_isa_avx2, kern_isa_avx512, kern_isa_amx;

/* Which table kern_matmul uses now (after kern_init). Tests switch it with kern_set_isa. */
const kern_isa *kern_active_isa(void);
/* Forces "scalar", "avx2", "avx512" or "amx"; returns -1 (and changes nothing) if unknown or unsupported here. */
int kern_set_isa(const char *name);
/* The best ISA this CPU supports. */
const char *kern_best_isa(void);

#endif
