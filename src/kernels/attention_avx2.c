/* attention_avx2.c — AVX2 attention over a paged KV cache (kern_attention / kern_attention_block's
 * contracts; tests compare it with the portable reference in attention.c, as they do the AVX-512 one).
 *
 * Why: without it an AVX2 machine ran the portable loops, whose f16 rows are converted in software one
 * value at a time; on a Zen 3 that was ~43% of a 256-token Q4_K_M prefill's profile (perf: the reference
 * loop 14%, the f16 conversions 29%).
 *
 * One design for decode and prefill, flash-attention style: a tile of up to MAXR query rows (tokens x query
 * heads of one kv head) goes over its keys KEYS at a time with an online softmax. Each key's K and V rows are
 * converted to f32 once per tile (f16 by vcvtph2ps, bf16 by a shift, q8_0 widened and times its scale) into
 * zero-padded buffers, so every format and head size runs the same 8-lane loops: 8 keys' dot products with one
 * query row reduce to one vector by a hadd tree, its exp is exp256_ps, and the row's output (in an L1 buffer)
 * takes the 8 weighted value rows in one pass over its chunks. A decoding token is one tile of its kv head's
 * query heads, so each cached row is read once for the group (Llama's 4 heads), not once per head. */
#include <math.h>
#include <string.h>

#include "kernels/exp_avx2.h"
#include "kernels/format.h"
#include "kernels/matmul.h"
#include "kernels/simd_x86.h"

enum {
    KEYS = 8,          /* keys per online-softmax step (one vector of scores) */
    MAXR = 16,         /* query rows per tile */
    MAXD = 256,        /* head_dim this kernel takes; wider heads use the portable path */
    TILE_FLOATS = 2048 /* MAXR rows of up to 128 values; heads over 128 get MAXR / 2 rows */
};

/* A tile: its query rows and, per row, the positions it sees (first..last) and where its output goes. */
typedef struct {
    const float *q[MAXR];
    float *out[MAXR];
    int first[MAXR], last[MAXR];
    int n;
} tile_rows;

/* Values i..i+7 (i + 8 <= head_dim, i % 8 == 0) of a KV row of format T as f32. */
INL __m256 load8(const kiln_dtype T, const char *row, int i) {
    switch (T) {
    case KILN_DT_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * (size_t)i)));
    case KILN_DT_BF16:
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * (size_t)i))), 16));
    case KILN_DT_Q8_0: {
        const char *blk = row + (size_t)(i / QK) * sizeof(block_q8_0);
        uint16_t d;
        memcpy(&d, blk, sizeof d);
        const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(blk + 2 + i % QK))));
        return _mm256_mul_ps(q, _mm256_set1_ps(_cvtsh_ss(d)));
    }
    default: return _mm256_loadu_ps((const float *)row + i);
    }
}

/* A KV row as hp f32 values (head_dim, then zeros up to hp, a multiple of 8). */
INL void row_to_f32(const kiln_dtype T, float *dst, const char *row, int head_dim, int hp) {
    int i = 0;
    for (; i + 8 <= head_dim; i += 8) _mm256_storeu_ps(dst + i, load8(T, row, i));
    if (i < head_dim) { /* tail (f32 / f16 / bf16: q8_0 heads are whole blocks): the format's own conversion */
        float t[8] = {0};
        kern_row_to_f32(t, row + kern_row_bytes(T, i), T, head_dim - i);
        _mm256_storeu_ps(dst + i, _mm256_loadu_ps(t));
        i += 8;
    }
    for (; i < hp; i += 8) _mm256_storeu_ps(dst + i, _mm256_setzero_ps());
}

/* The 8 lane sums of a[0..7] as one vector (lane j = sum of a[j]). */
INL __m256 sum8x8(const __m256 *a) {
    const __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
    const __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20), _mm256_permute2f128_ps(h0, h1, 0x31));
}

INL float hmax256(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

/* The tile's rows over their keys (all of one kv head, at hoff). */
INL void attend_tile(const kiln_dtype T, const int HP, const tile_rows *t, int head_dim, size_t hoff, const kern_kv_view *kv) {
    const int hp = HP ? HP : (head_dim + 7) & ~7, nc = hp / 8;
    const float scale = kern_attn_scale(kv, head_dim);
    float qf[TILE_FLOATS] __attribute__((aligned(32))), of[TILE_FLOATS] __attribute__((aligned(32)));
    float kf[KEYS][MAXD] __attribute__((aligned(32))), vf[KEYS][MAXD] __attribute__((aligned(32)));
    float m[MAXR], l[MAXR];
    int lo = t->first[0], hi = t->last[0];
    for (int r = 0; r < t->n; r++) {
        memcpy(qf + r * hp, t->q[r], sizeof(float) * head_dim);
        memset(qf + r * hp + head_dim, 0, sizeof(float) * (hp - head_dim));
        memset(of + r * hp, 0, sizeof(float) * hp);
        m[r] = -INFINITY, l[r] = 0;
        lo = t->first[r] < lo ? t->first[r] : lo, hi = t->last[r] > hi ? t->last[r] : hi;
    }
    const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int blk = lo / kv->block, slot = lo % kv->block; /* the cache block and slot of the next key */
    for (int s0 = lo; s0 <= hi; s0 += KEYS) {
        const int nk = hi - s0 + 1 < KEYS ? hi - s0 + 1 : KEYS;
        for (int j = 0; j < KEYS; j++) {
            if (j < nk) { /* K and V rows of a position sit at the same offset from their bases */
                const size_t off = (size_t)kv->table[blk] * kv->block_stride + (size_t)slot * kv->row_stride + hoff;
                row_to_f32(T, kf[j], kv->k + off, head_dim, hp);
                row_to_f32(T, vf[j], kv->v + off, head_dim, hp);
                if (++slot == kv->block) slot = 0, blk++;
            } else { /* past the last key: zeros, whose weights are 0 */
                memset(kf[j], 0, sizeof(float) * hp), memset(vf[j], 0, sizeof(float) * hp);
            }
        }
        const __m256i key = _mm256_add_epi32(iota, _mm256_set1_epi32(s0));
        for (int r = 0; r < t->n; r++) {
            if (t->last[r] < s0 || t->first[r] >= s0 + nk) continue; /* none of these keys is the row's */
            const float *qr = qf + r * hp;
            __m256 acc[KEYS];
#pragma GCC unroll 8
            for (int j = 0; j < KEYS; j++) acc[j] = _mm256_setzero_ps();
            for (int c = 0; c < nc; c++) {
                const __m256 qc = _mm256_load_ps(qr + 8 * c);
#pragma GCC unroll 8
                for (int j = 0; j < KEYS; j++) acc[j] = _mm256_fmadd_ps(qc, _mm256_load_ps(kf[j] + 8 * c), acc[j]);
            }
            __m256 sc = _mm256_mul_ps(sum8x8(acc), _mm256_set1_ps(scale));
            if (kv->softcap > 0) {
                float sb[KEYS];
                _mm256_storeu_ps(sb, sc);
                kern_softcap(sb, KEYS, kv->softcap);
                sc = _mm256_loadu_ps(sb);
            }
            const __m256i in = _mm256_and_si256(_mm256_cmpgt_epi32(key, _mm256_set1_epi32(t->first[r] - 1)),
                                                _mm256_cmpgt_epi32(_mm256_set1_epi32(t->last[r] + 1), key));
            sc = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), sc, _mm256_castsi256_ps(in));
            const float m_new = fmaxf(m[r], hmax256(sc)), alpha = expf(m[r] - m_new);
            const __m256 p = _mm256_and_ps(exp256_ps(_mm256_sub_ps(sc, _mm256_set1_ps(m_new))), _mm256_castsi256_ps(in));
            m[r] = m_new, l[r] = l[r] * alpha + hsum256(p);
            float pw[KEYS];
            _mm256_storeu_ps(pw, p);
            __m256 pb[KEYS];
#pragma GCC unroll 8
            for (int j = 0; j < KEYS; j++) pb[j] = _mm256_set1_ps(pw[j]);
            const __m256 av = _mm256_set1_ps(alpha);
            float *o = of + r * hp;
            for (int c = 0; c < nc; c++) {
                __m256 oc = _mm256_mul_ps(_mm256_load_ps(o + 8 * c), av);
#pragma GCC unroll 8
                for (int j = 0; j < KEYS; j++) oc = _mm256_fmadd_ps(pb[j], _mm256_load_ps(vf[j] + 8 * c), oc);
                _mm256_store_ps(o + 8 * c, oc);
            }
        }
    }
    for (int r = 0; r < t->n; r++) {
        const float inv = l[r] > 0 ? 1.0f / l[r] : 0;
        for (int i = 0; i < head_dim; i++) t->out[r][i] = of[r * hp + i] * inv;
    }
}

/* The tile for the KV format and the common head sizes as compile-time constants. */
static void run_tile(const tile_rows *t, int head_dim, size_t hoff, const kern_kv_view *kv) {
#define TILE_FOR(T)                                                                   \
    do {                                                                              \
        if (head_dim == 64) attend_tile(T, 64, t, head_dim, hoff, kv);                \
        else if (head_dim == 128) attend_tile(T, 128, t, head_dim, hoff, kv);         \
        else attend_tile(T, 0, t, head_dim, hoff, kv);                                \
    } while (0)
    switch (kv->type) {
    case KILN_DT_F16: TILE_FOR(KILN_DT_F16); break;
    case KILN_DT_BF16: TILE_FOR(KILN_DT_BF16); break;
    case KILN_DT_Q8_0: TILE_FOR(KILN_DT_Q8_0); break;
    default: TILE_FOR(KILN_DT_F32); break;
    }
#undef TILE_FOR
}

/* Rows per tile for heads of head_dim values (the buffers hold TILE_FLOATS per tile). */
static int tile_capacity(int head_dim) {
    const int hp = (head_dim + 7) & ~7, r = TILE_FLOATS / hp;
    return r > MAXR ? MAXR : r;
}

void kern_attention_block_avx2(float *out, const float *q, size_t q_stride, int nq, int pos0, int window, int n_heads,
                               int n_kv_heads, int head_dim, int h0, int h1, const kern_kv_view *kv, float *scratch) {
    if (head_dim > MAXD) {
        kern_attention_block_ref(out, q, q_stride, nq, pos0, window, n_heads, n_kv_heads, head_dim, h0, h1, kv, scratch);
        return;
    }
    const int group = n_heads / n_kv_heads, cap = tile_capacity(head_dim);
    /* per kv head: its heads within [h0, h1), then tokens, as many of both as a tile holds */
    for (int g = h0 / group; g * group < h1; g++) {
        const int ha = g * group > h0 ? g * group : h0, hb = (g + 1) * group < h1 ? (g + 1) * group : h1;
        const size_t hoff = (size_t)g * kv->head_stride;
        tile_rows t = {.n = 0};
        for (int tok = 0; tok < nq; tok++)
            for (int h = ha; h < hb; h++) {
                const int pos = pos0 + tok, r = t.n++;
                t.q[r] = q + (size_t)tok * q_stride + (size_t)h * head_dim;
                t.out[r] = out + (size_t)tok * q_stride + (size_t)h * head_dim;
                t.first[r] = kern_attn_first(kv, pos, window), t.last[r] = pos;
                if (t.n == cap) run_tile(&t, head_dim, hoff, kv), t.n = 0;
            }
        if (t.n) run_tile(&t, head_dim, hoff, kv);
    }
}

void kern_attention_avx2(float *out, const float *q, int n_heads, int n_kv_heads, int head_dim, int n_pos,
                         const kern_kv_view *kv, float *scratch, int h0, int h1) {
    /* one query at position n_pos - 1 seeing kv->first..n_pos-1: the block kernel's one-token case */
    kern_attention_block_avx2(out, q, 0, 1, n_pos - 1, 0, n_heads, n_kv_heads, head_dim, h0, h1, kv, scratch);
}
