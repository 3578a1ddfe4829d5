/* attention.c — scaled dot-product attention over a paged KV cache: the portable reference of one query
 * (kern_attention_ref) and of a block of queries (kern_attention_block_ref, one query at a time: the
 * specification the tiled kernel is tested against), and the entry points that pick the ISA's version.
 *
 * The cache is a list of blocks of `block` positions (kv->table maps a sequence's block index to a
 * physical block), so positions are walked block by block instead of dividing per position. Dot
 * Rows are read in the cache's own format (kern_kv_view.type), converted a 32-value chunk at a time by the
 * format's reference conversion: this is the specification the SIMD kernels are tested against. Dot
 * products keep 8 independent partial sums: a single running sum is a chain of dependent adds (one
 * add latency per element), 8 lanes break it and let the compiler use SIMD. */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/matmul.h"

enum { LANES = 8 };

static inline float dot(const float *a, const float *b, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += a[i + l] * b[i + l];
    float s = 0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Row values i0..i0+n-1 (n <= QK; i0 a multiple of QK) of a KV row of format t as f32: the format's own
 * reference conversion (format.h), a 32-value chunk at a time, so nothing is copied beyond one chunk. */
static inline const float *kv_chunk(float tmp[QK], const char *row, kiln_dtype t, int i0, int n) {
    if (t == KILN_DT_F32) return (const float *)row + i0;
    kern_row_to_f32(tmp, row + kern_row_bytes(t, i0), t, n);
    return tmp;
}

/* q . key row (head_dim values of format t). f32 rows keep the one 8-lane dot (the golden tests' path). */
static float dot_row(const float *q, const char *row, kiln_dtype t, int head_dim) {
    if (t == KILN_DT_F32) return dot(q, (const float *)row, head_dim);
    float tmp[QK], s = 0;
    for (int i0 = 0; i0 < head_dim; i0 += QK) {
        const int n = head_dim - i0 < QK ? head_dim - i0 : QK;
        s += dot(q + i0, kv_chunk(tmp, row, t, i0, n), n);
    }
    return s;
}

/* o += w * value row. */
static void axpy_row(float *o, float w, const char *row, kiln_dtype t, int head_dim) {
    float tmp[QK];
    for (int i0 = 0; i0 < head_dim; i0 += QK) {
        const int n = head_dim - i0 < QK ? head_dim - i0 : QK;
        const float *v = kv_chunk(tmp, row, t, i0, n);
        for (int i = 0; i < n; i++) o[i0 + i] += w * v[i];
    }
}

void kern_attention_ref(float *out, const float *q, int n_heads, int n_kv_heads, int head_dim, int n_pos,
                        const kern_kv_view *kv, float *scratch, int h0, int h1) {
    const int group = n_heads / n_kv_heads, first = kv->first, p_start = first / kv->block * kv->block;
    const float scale = kern_attn_scale(kv, head_dim);
    for (int h = h0; h < h1; h++) {
        const float *qh = q + (size_t)h * head_dim;
        const size_t hoff = (size_t)(h / group) * kv->head_stride;
        for (int p0 = p_start; p0 < n_pos; p0 += kv->block) {
            const char *k = kv->k + (size_t)kv->table[p0 / kv->block] * kv->block_stride + hoff;
            const int np = n_pos - p0 < kv->block ? n_pos - p0 : kv->block;
            for (int p = first > p0 ? first - p0 : 0; p < np; p++)
                scratch[p0 + p] = dot_row(qh, k + (size_t)p * kv->row_stride, kv->type, head_dim) * scale;
        }
        if (kv->softcap > 0) kern_softcap(scratch + first, n_pos - first, kv->softcap);
        kern_softmax(scratch + first, n_pos - first);
        float *o = out + (size_t)h * head_dim;
        memset(o, 0, (size_t)head_dim * sizeof *o);
        for (int p0 = p_start; p0 < n_pos; p0 += kv->block) {
            const char *v = kv->v + (size_t)kv->table[p0 / kv->block] * kv->block_stride + hoff;
            const int np = n_pos - p0 < kv->block ? n_pos - p0 : kv->block;
            for (int p = first > p0 ? first - p0 : 0; p < np; p++)
                axpy_row(o, scratch[p0 + p], v + (size_t)p * kv->row_stride, kv->type, head_dim);
        }
    }
}

void kern_attention(float *out, const float *q, int n_heads, int n_kv_heads, int head_dim, int n_pos,
                    const kern_kv_view *kv, float *scratch, int h0, int h1) {
    kern_active_isa()->attention(out, q, n_heads, n_kv_heads, head_dim, n_pos, kv, scratch, h0, h1);
}

void kern_attention_block_ref(float *out, const float *q, size_t q_stride, int nq, int pos0, int window, int n_heads,
                              int n_kv_heads, int head_dim, int h0, int h1, const kern_kv_view *kv, float *scratch) {
    for (int t = 0; t < nq; t++) {
        kern_kv_view kt = *kv;
        kt.first = kern_attn_first(kv, pos0 + t, window);
        kern_attention_ref(out + t * q_stride, q + t * q_stride, n_heads, n_kv_heads, head_dim, pos0 + t + 1, &kt, scratch,
                           h0, h1);
    }
}

void kern_attention_block(float *out, const float *q, size_t q_stride, int nq, int pos0, int window, int n_heads,
                          int n_kv_heads, int head_dim, int h0, int h1, const kern_kv_view *kv, float *scratch) {
    kern_active_isa()->attention_block(out, q, q_stride, nq, pos0, window, n_heads, n_kv_heads, head_dim, h0, h1, kv,
                                       scratch);
}

/* The larger of: the n_ctx scores of one query (the reference, the AVX-512 single-token path); the AVX-512
 * flash tile (attention_avx512.c: transposed queries, the tile's keys and values as f32, scores, the
 * transposed output: 4 x 64 x head_dim + 64 x 64, and each row's max and sum), plus 16 for alignment. */
size_t kern_attention_block_scratch(int n_ctx, int head_dim) {
    const size_t rows = (size_t)n_ctx,
                 tile = (size_t)4 * KERN_ATTN_ROWS * head_dim + (size_t)KERN_ATTN_ROWS * KERN_ATTN_KEYS + 2 * KERN_ATTN_ROWS;
    return (rows > tile ? rows : tile) + 16;
}
