/* attention_avx512.c — AVX-512 attention over a paged KV cache (same contracts as the portable
 * kern_attention_ref / kern_attention_block_ref in attention.c, which tests compare them against).
 *
 * Why a separate kernel: prefill attends T queries over up to T positions, and the portable loops
 * compile to 128-bit SSE at best; it was ~23% of a 512-token prefill's profile (perf, Llama-3.2-1B
 * shape) for ~1.3% of the FLOPs. Two kernels:
 *   one query (decode)  the query heads of a kv head together, one online-softmax pass over the keys
 *                       (attend_group, below: why and how);
 *   a block of queries  flash-attention tiles (flash_block, below).
 * The softmax's exp is a vector exp (Cephes-style range reduction + degree-6 polynomial, ~1 ulp).
 * head_dim up to 256 in steps of 16 with a masked tail (stories260K has 8); wider heads use the
 * portable path. Rows are read in the cache's format, 16 values per load (load16): f32 as is, f16 by
 * vcvtph2ps, bf16 by a 16-bit shift, q8_0 as int8 widened and times the block's f16 scale; the format
 * is a compile-time constant of each instantiation, so the f32 loop is what it was. */
#include <float.h>
#include <immintrin.h>
#include <math.h>

#include "kernels/exp_avx512.h"
#include "kernels/format.h"
#include "kernels/matmul.h"
#include "kernels/simd_x86.h"

enum { MAXV = 16 }; /* head_dim <= 16 * MAXV */

/* Values 16c..16c+15 of a KV row of format T (lanes outside m read as 0; q8_0 rows never need a mask:
 * head_dim % 32 == 0). */
INL __m512 load16(const kiln_dtype T, const char *row, int c, __mmask16 m) {
    switch (T) {
    case KILN_DT_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 32 * c));
    case KILN_DT_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 32 * c)), 16));
    case KILN_DT_Q8_0: {
        const char *blk = row + (size_t)(c / 2) * sizeof(block_q8_0);
        const __m512 q = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(blk + 2 + 16 * (c % 2)))));
        uint16_t d;
        memcpy(&d, blk, sizeof d);
        return _mm512_mul_ps(q, _mm512_set1_ps(_cvtsh_ss(d)));
    }
    default: return _mm512_maskz_loadu_ps(m, row + 64 * c);
    }
}

/* ---- one query (decode, or too few rows for a tile): the heads of a kv head together ----
 *
 * Decode at depth is bound by how the cache is read, not by its bytes: the kernel before this one took a
 * head at a time, so each K and V row was loaded and converted once per query head (4x for Llama's groups)
 * and its rows, 16 at a time 16 KiB apart, crossed a page every 2 KiB where the hardware prefetcher stops.
 * Here GH query heads of one kv head (GH x head_dim / 16 <= 16 registers) go over the positions in one
 * online-softmax pass, SK keys at a time, each row read and converted once for all GH heads, and the rows of
 * the next SK keys are prefetched while these are computed:
 *   scores  a key's GH dot products are FMA'd into GH accumulators and reduced at once by the first
 *           log2(GH) levels of a transpose-add tree (tree_level), so 16 / GH keys fill one tree (16 dot
 *           products, lanes head-major after a permute): few live registers, one reduction per 16 dots;
 *   softmax each head's running max and sum are kept in its 16 / GH lanes (a segment) of one vector;
 *   values  the GH output heads stay in registers while each value row is FMA'd in once. */

enum { SK = 64 }; /* keys per step of the online softmax: 4 trees of 16 dot products per head group */

/* The K and V rows of keys s0 + lo .. s0 + hi - 1 of a step. */
typedef struct {
    const char *k[SK], *v[SK];
    int lo, hi;
} step_rows;

/* Fills r for the step from s0, walking *blk / *slot (the block index and slot of key s0 + r->lo onwards). */
static inline void step_rows_at(step_rows *r, const kern_kv_view *kv, size_t hoff, int s0, int n_pos, int *blk, int *slot) {
    r->lo = kv->first > s0 ? kv->first - s0 : 0;
    r->hi = n_pos - s0 < SK ? n_pos - s0 : SK;
    for (int j = r->lo; j < r->hi; j++) {
        const size_t off = (size_t)kv->table[*blk] * kv->block_stride + (size_t)*slot * kv->row_stride + hoff;
        r->k[j] = kv->k + off, r->v[j] = kv->v + off;
        if (++*slot == kv->block) *slot = 0, ++*blk;
    }
}

INL void row_prefetch(const step_rows *r, int j, size_t row_bytes) {
    for (size_t b = 0; b < row_bytes; b += 64) {
        _mm_prefetch(r->k[j] + b, _MM_HINT_T0);
        _mm_prefetch(r->v[j] + b, _MM_HINT_T0);
    }
}

/* Level L of the transpose-add tree that reduces 16 vectors to the vector of their 16 lane sums (4 levels
 * of pairs, not 16 separate horizontal sums): level 0 adds 256-bit halves, 1 128-bit quarters, 2 pairs of
 * floats, 3 floats. After all four, vector i's sum is in lane 4*(i%4) + i/4 (a 4x4 transpose). */
INL __m512 tree_level(const int L, __m512 x, __m512 y) {
    switch (L) {
    case 0: return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x44), _mm512_shuffle_f32x4(x, y, 0xEE));
    case 1: return _mm512_add_ps(_mm512_shuffle_f32x4(x, y, 0x88), _mm512_shuffle_f32x4(x, y, 0xDD));
    case 2: return _mm512_add_ps(_mm512_shuffle_ps(x, y, 0x44), _mm512_shuffle_ps(x, y, 0xEE));
    default: return _mm512_add_ps(_mm512_shuffle_ps(x, y, 0x88), _mm512_shuffle_ps(x, y, 0xDD));
    }
}

/* v[0..n) (n a power of 2 <= 16) reduced pairwise through the tree's levels L, L + 1, ...: returns v[0]. */
INL __m512 tree(__m512 *v, const int n, const int L) {
    int s = n, lv = L;
#pragma GCC unroll 4
    for (int step = 0; step < 4; step++)
        if (s > 1) {
#pragma GCC unroll 8
            for (int i = 0; i < s / 2; i++) v[i] = tree_level(lv, v[2 * i], v[2 * i + 1]);
            s /= 2, lv++;
        }
    return v[0];
}

/* The lanes of a score vector whose keys (lane_key + k0: key kl of its segment) lie in [lo, hi): the keys
 * of the step's first and last 16 that are before kv->first or past the last position are not scores. */
INL __mmask16 keys_in(__m512i lane_key, int k0, int lo, int hi) {
    const __m512i key = _mm512_add_epi32(lane_key, _mm512_set1_epi32(k0));
    return _mm512_cmpge_epi32_mask(key, _mm512_set1_epi32(lo)) & _mm512_cmplt_epi32_mask(key, _mm512_set1_epi32(hi));
}

/* Each segment of S lanes (S a power of 2) set to its maximum. */
INL __m512 segment_max(__m512 x, const int S, __m512i iota) {
#pragma GCC unroll 4
    for (int s = 1; s < S; s *= 2) x = _mm512_max_ps(x, _mm512_permutexvar_ps(_mm512_xor_si512(iota, _mm512_set1_epi32(s)), x));
    return x;
}

/* GH query heads (q, out: head_dim apart) of the kv head at hoff over positions kv->first..n_pos-1. NV =
 * head_dim / 16 rounded up when it is a compile-time constant (0: use nv, GH must be 1). */
INL void attend_group(const kiln_dtype T, const int NV, const int GH, int nv, float *out, const float *q, int head_dim,
                      size_t hoff, int n_pos, const kern_kv_view *kv) {
    if (NV) nv = NV;
    const int KPT = 16 / GH, LG = GH == 4 ? 2 : GH == 2 ? 1 : 0; /* keys per tree, levels inside a key */
    const __mmask16 tail = lanes16(head_dim - 16 * (nv - 1));
    const __m512 scale = _mm512_set1_ps(kern_attn_scale(kv, head_dim));
    const __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i lane_key = _mm512_and_si512(iota, _mm512_set1_epi32(KPT - 1)); /* lane h*KPT+kl: key kl */
    int perm[16]; /* the tree leaves dot i = kl*GH + h in lane 4*(i%4) + i/4: to lane h*KPT + kl */
    for (int o = 0; o < 16; o++) {
        const int i = o % KPT * GH + o / KPT;
        perm[o] = 4 * (i % 4) + i / 4;
    }
    const __m512i pidx = _mm512_loadu_si512(perm);
    const size_t row_bytes = kern_row_bytes(T, head_dim);
    float ob[16 * 16] __attribute__((aligned(64))) = {0}; /* the GH output heads between steps */
    float sb[SK * GH] __attribute__((aligned(64)));        /* a step's scores, then weights: [chunk][g][h][kl] */
    float ab[16] __attribute__((aligned(64)));
    __m512 m = _mm512_set1_ps(-INFINITY), l = _mm512_setzero_ps();
    step_rows rows[2];
    int blk = kv->first / kv->block, slot = kv->first % kv->block, s0 = kv->first & ~15;
    step_rows_at(&rows[0], kv, hoff, s0, n_pos, &blk, &slot);
    for (int cur = 0; s0 < n_pos; s0 += SK, cur ^= 1) {
        const step_rows *r = &rows[cur];
        int nx_hi = 0; /* the next step's rows, prefetched key by key in the score loop below */
        if (s0 + SK < n_pos) {
            step_rows_at(&rows[cur ^ 1], kv, hoff, s0 + SK, n_pos, &blk, &slot);
            nx_hi = rows[cur ^ 1].hi;
        }
        const step_rows *nx = &rows[cur ^ 1];
        const int c_lo = r->lo & ~15, lo = r->lo, hi = r->hi;
        { /* scores, scaled, into sb */
            __m512 qv[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) qv[i] = _mm512_setzero_ps(); /* once unrolled, GCC cannot tell the unused ones are unread */
#pragma GCC unroll 16
            for (int h = 0; h < GH; h++)
#pragma GCC unroll 16
                for (int c = 0; c < nv; c++) qv[h * nv + c] = _mm512_maskz_loadu_ps(c == nv - 1 ? tail : 0xffff, q + (size_t)h * head_dim + 16 * c);
            for (int c0 = c_lo; c0 < hi; c0 += 16)
#pragma GCC unroll 4
                for (int g = 0; g < GH; g++) {
                    __m512 w[16];
#pragma GCC unroll 16
                    for (int kl = 0; kl < KPT; kl++) {
                        const int j = c0 + g * KPT + kl;
                        if (j < nx_hi) row_prefetch(nx, j, row_bytes);
                        __m512 acc[4];
#pragma GCC unroll 4
                        for (int h = 0; h < GH; h++) acc[h] = _mm512_setzero_ps();
                        if (j >= lo && j < hi) {
#pragma GCC unroll 16
                            for (int c = 0; c < nv; c++) {
                                const __m512 kc = load16(T, r->k[j], c, c == nv - 1 ? tail : 0xffff);
#pragma GCC unroll 4
                                for (int h = 0; h < GH; h++) acc[h] = _mm512_fmadd_ps(qv[h * nv + c], kc, acc[h]);
                            }
                        }
                        w[kl] = tree(acc, GH, 0);
                    }
                    const __m512 t = _mm512_permutexvar_ps(pidx, tree(w, KPT, LG));
                    _mm512_store_ps(sb + (size_t)(c0 / 16 * GH + g) * 16, _mm512_mul_ps(t, scale));
                }
        }
        const int n_sc = ((hi + 15) / 16 - c_lo / 16) * GH * 16; /* scores written from sb + c_lo * GH */
        if (kv->softcap > 0) kern_softcap(sb + (size_t)c_lo * GH, n_sc, kv->softcap);
        { /* online softmax: each head's max over its segment, the old sums and outputs rescaled by alpha */
            __m512 mx = _mm512_set1_ps(-INFINITY);
            for (int c0 = c_lo; c0 < hi; c0 += 16)
                for (int g = 0; g < GH; g++)
                    mx = _mm512_mask_max_ps(mx, keys_in(lane_key, c0 + g * KPT, lo, hi), mx, _mm512_load_ps(sb + (size_t)(c0 / 16 * GH + g) * 16));
            const __m512 m_new = _mm512_max_ps(m, segment_max(mx, KPT, iota)), alpha = exp_ps(_mm512_sub_ps(m, m_new));
            m = m_new;
            __m512 sum = _mm512_setzero_ps();
            for (int c0 = c_lo; c0 < hi; c0 += 16)
                for (int g = 0; g < GH; g++) {
                    float *s = sb + (size_t)(c0 / 16 * GH + g) * 16;
                    const __m512 p = _mm512_maskz_mov_ps(keys_in(lane_key, c0 + g * KPT, lo, hi), exp_ps(_mm512_sub_ps(_mm512_load_ps(s), m)));
                    _mm512_store_ps(s, p);
                    sum = _mm512_add_ps(sum, p);
                }
            l = _mm512_fmadd_ps(l, alpha, sum);
            _mm512_store_ps(ab, alpha);
        }
        { /* values: o = alpha o + sum_j p_j v_j */
            __m512 o[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) o[i] = _mm512_setzero_ps();
#pragma GCC unroll 16
            for (int h = 0; h < GH; h++)
#pragma GCC unroll 16
                for (int c = 0; c < nv; c++) o[h * nv + c] = _mm512_mul_ps(_mm512_load_ps(ob + (h * nv + c) * 16), _mm512_set1_ps(ab[h * KPT]));
            for (int j = lo; j < hi; j++) {
                const float *p = sb + (size_t)(j / 16 * GH + j % 16 / KPT) * 16 + j % KPT; /* head h at p[h * KPT] */
#pragma GCC unroll 16
                for (int c = 0; c < nv; c++) {
                    const __m512 vc = load16(T, r->v[j], c, c == nv - 1 ? tail : 0xffff);
#pragma GCC unroll 4
                    for (int h = 0; h < GH; h++) o[h * nv + c] = _mm512_fmadd_ps(_mm512_set1_ps(p[h * KPT]), vc, o[h * nv + c]);
                }
            }
#pragma GCC unroll 16
            for (int h = 0; h < GH; h++)
#pragma GCC unroll 16
                for (int c = 0; c < nv; c++) _mm512_store_ps(ob + (h * nv + c) * 16, o[h * nv + c]);
        }
    }
    float lb[16];
    _mm512_storeu_ps(lb, l);
    for (int h = 0; h < GH; h++) {
        float sum = 0;
        for (int kl = 0; kl < KPT; kl++) sum += lb[h * KPT + kl];
        const __m512 inv = _mm512_set1_ps(1.0f / sum);
        for (int c = 0; c < nv; c++)
            _mm512_mask_storeu_ps(out + (size_t)h * head_dim + 16 * c, c == nv - 1 ? tail : 0xffff,
                                  _mm512_mul_ps(_mm512_load_ps(ob + (h * nv + c) * 16), inv));
    }
}

/* Query heads [h0, h1) of the kv head at hoff (q and out: the token's heads), in groups as wide as the
 * registers allow: 4 heads of 64, 2 of 128, else one at a time. */
INL void attend_heads_typed(const kiln_dtype T, float *out, const float *q, int head_dim, int h0, int h1, size_t hoff,
                            int n_pos, const kern_kv_view *kv) {
    const int nv = (head_dim + 15) / 16;
    for (int h = h0, gh; h < h1; h += gh) {
        float *o = out + (size_t)h * head_dim;
        const float *qh = q + (size_t)h * head_dim;
        const int left = h1 - h;
        if (nv == 4) {
            gh = left >= 4 ? 4 : left >= 2 ? 2 : 1;
            if (gh == 4) attend_group(T, 4, 4, nv, o, qh, head_dim, hoff, n_pos, kv);
            else if (gh == 2) attend_group(T, 4, 2, nv, o, qh, head_dim, hoff, n_pos, kv);
            else attend_group(T, 4, 1, nv, o, qh, head_dim, hoff, n_pos, kv);
        } else if (nv == 8) {
            gh = left >= 2 ? 2 : 1;
            if (gh == 2) attend_group(T, 8, 2, nv, o, qh, head_dim, hoff, n_pos, kv);
            else attend_group(T, 8, 1, nv, o, qh, head_dim, hoff, n_pos, kv);
        } else {
            gh = 1;
            attend_group(T, 0, 1, nv, o, qh, head_dim, hoff, n_pos, kv);
        }
    }
}

/* Heads [h0, h1) of one kv head, the format a compile-time constant. */
static void attend_heads(float *out, const float *q, int head_dim, int h0, int h1, size_t hoff, int n_pos,
                         const kern_kv_view *kv) {
    switch (kv->type) {
    case KILN_DT_F16: attend_heads_typed(KILN_DT_F16, out, q, head_dim, h0, h1, hoff, n_pos, kv); break;
    case KILN_DT_BF16: attend_heads_typed(KILN_DT_BF16, out, q, head_dim, h0, h1, hoff, n_pos, kv); break;
    case KILN_DT_Q8_0: attend_heads_typed(KILN_DT_Q8_0, out, q, head_dim, h0, h1, hoff, n_pos, kv); break;
    default: attend_heads_typed(KILN_DT_F32, out, q, head_dim, h0, h1, hoff, n_pos, kv); break;
    }
}

void kern_attention_avx512(float *out, const float *q, int n_heads, int n_kv_heads, int head_dim, int n_pos,
                           const kern_kv_view *kv, float *scratch, int h0, int h1) {
    const int nv = (head_dim + 15) / 16;
    if (nv > MAXV || n_pos <= kv->first || !kern_kv_type_ok(kv->type, head_dim)) {
        kern_attention_ref(out, q, n_heads, n_kv_heads, head_dim, n_pos, kv, scratch, h0, h1);
        return;
    }
    const int group = n_heads / n_kv_heads;
    for (int h = h0, e; h < h1; h = e) { /* one kv head's heads at a time */
        e = (h / group + 1) * group < h1 ? (h / group + 1) * group : h1;
        attend_heads(out, q, head_dim, h, e, (size_t)(h / group) * kv->head_stride, n_pos, kv);
    }
}

/* ---- a block of queries: flash-attention tiles ----
 *
 * Up to 64 query rows (row r = token r / nh, head r % nh) against 64 keys at a time. The tile's key and
 * value rows are converted to f32 once (Kf, Vf: [key][head_dim]); the queries are transposed once per block
 * (QT: [head_dim][rows]) and the output kept transposed (OT: [head_dim][rows]), so both products vectorise
 * over 16 query rows and any head_dim works (the inner loop runs over head_dim or keys one at a time):
 *   scores  ST[j][r] = sum_d Kf[j][d] QT[d][r]
 *   values  OT[d][r] = alpha[r] OT[d][r] + sum_j Vf[j][d] P[j][r]
 * with the online softmax between (each row's running max m and sum l; alpha = e^(m_old - m_new)); causal
 * and window masks are per (key, row) compares. RS = rows rounded up to 16 is the row stride. */

/* C[a][0..16 NR) = (init ? C[a] * scale : 0) + sum_b X[a xa + b xb] Y[b][0..16 NR), a < NA (NA x NR <= 16
 * accumulators), b < nb; C and Y rows RS floats apart. */
INL void mk_tile(const int NR, const int NA, float *C, const float *X, size_t xa, size_t xb, const float *Y, int RS, int nb,
                 const __m512 *scale) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int a = 0; a < NA; a++)
#pragma GCC unroll 4
        for (int v = 0; v < NR; v++)
            acc[a][v] = scale ? _mm512_mul_ps(_mm512_loadu_ps(C + (size_t)a * RS + 16 * v), scale[v]) : _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        __m512 y[4];
#pragma GCC unroll 4
        for (int v = 0; v < NR; v++) y[v] = _mm512_loadu_ps(Y + (size_t)b * RS + 16 * v);
#pragma GCC unroll 4
        for (int a = 0; a < NA; a++) {
            const __m512 x = _mm512_set1_ps(X[a * xa + b * xb]);
#pragma GCC unroll 4
            for (int v = 0; v < NR; v++) acc[a][v] = _mm512_fmadd_ps(x, y[v], acc[a][v]);
        }
    }
#pragma GCC unroll 4
    for (int a = 0; a < NA; a++)
#pragma GCC unroll 4
        for (int v = 0; v < NR; v++) _mm512_storeu_ps(C + (size_t)a * RS + 16 * v, acc[a][v]);
}

/* C rows [0, na) of mk_tile, 4 at a time, NR = RS / 16 known at compile time. */
INL void mk_rows_nr(const int NR, float *C, int na, const float *X, size_t xa, size_t xb, const float *Y, int nb,
                    const __m512 *scale) {
    const int RS = 16 * NR;
    int a = 0;
    for (; a + 4 <= na; a += 4) mk_tile(NR, 4, C + (size_t)a * RS, X + a * xa, xa, xb, Y, RS, nb, scale);
    switch (na - a) {
    case 3: mk_tile(NR, 3, C + (size_t)a * RS, X + a * xa, xa, xb, Y, RS, nb, scale); break;
    case 2: mk_tile(NR, 2, C + (size_t)a * RS, X + a * xa, xa, xb, Y, RS, nb, scale); break;
    case 1: mk_tile(NR, 1, C + (size_t)a * RS, X + a * xa, xa, xb, Y, RS, nb, scale); break;
    default: break;
    }
}

static void mk_rows(int NR, float *C, int na, const float *X, size_t xa, size_t xb, const float *Y, int nb,
                    const __m512 *scale) {
    switch (NR) {
    case 1: mk_rows_nr(1, C, na, X, xa, xb, Y, nb, scale); break;
    case 2: mk_rows_nr(2, C, na, X, xa, xb, Y, nb, scale); break;
    case 3: mk_rows_nr(3, C, na, X, xa, xb, Y, nb, scale); break;
    default: mk_rows_nr(4, C, na, X, xa, xb, Y, nb, scale); break;
    }
}

/* Rows of positions p0..p0+n-1 (K or V base `base`, kv head at hoff) as f32, head_dim apart. */
INL void rows_f32_typed(const kiln_dtype T, float *dst, const char *base, size_t hoff, int p0, int n, int head_dim,
                        const kern_kv_view *kv) {
    const int nv = (head_dim + 15) / 16;
    const __mmask16 tail = lanes16(head_dim - 16 * (nv - 1));
    for (int j = 0; j < n; j++) {
        const int p = p0 + j;
        const char *row = base + (size_t)kv->table[p / kv->block] * kv->block_stride + (size_t)(p % kv->block) * kv->row_stride + hoff;
        for (int c = 0; c < nv; c++) {
            const __mmask16 m = c == nv - 1 ? tail : 0xffff;
            _mm512_mask_storeu_ps(dst + (size_t)j * head_dim + 16 * c, m, load16(T, row, c, m));
        }
    }
}

static void rows_f32(float *dst, const char *base, size_t hoff, int p0, int n, int head_dim, const kern_kv_view *kv) {
    switch (kv->type) {
    case KILN_DT_F16: rows_f32_typed(KILN_DT_F16, dst, base, hoff, p0, n, head_dim, kv); break;
    case KILN_DT_BF16: rows_f32_typed(KILN_DT_BF16, dst, base, hoff, p0, n, head_dim, kv); break;
    case KILN_DT_Q8_0: rows_f32_typed(KILN_DT_Q8_0, dst, base, hoff, p0, n, head_dim, kv); break;
    default: rows_f32_typed(KILN_DT_F32, dst, base, hoff, p0, n, head_dim, kv); break;
    }
}

/* The online-softmax step of one key tile (nk keys from k0) for rows 16v..16v+15: scale (and soft-cap) the
 * scores, mask them, update the running max and sum, leave P = e^(s - m) (0 where masked) in ST and the
 * output's rescale factor in *alpha. */
static void softmax_step(float *ST, int RS, int v, int k0, int nk, const int *qpos, const int *qfirst, float *m, float *l,
                         float scale, float cap, __m512 *alpha) {
    const __m512i pos = _mm512_loadu_si512(qpos + 16 * v), fst = _mm512_loadu_si512(qfirst + 16 * v);
    const __m512 vs = _mm512_set1_ps(scale);
    __m512 mx = _mm512_loadu_ps(m + 16 * v);
    const __m512 m_old = mx;
    for (int j = 0; j < nk; j++) {
        float *s = ST + (size_t)j * RS + 16 * v;
        __m512 x = _mm512_mul_ps(_mm512_loadu_ps(s), vs);
        if (cap > 0) { /* no vector tanh: the reference's own tanhf on these 16 */
            _mm512_storeu_ps(s, x);
            kern_softcap(s, 16, cap);
            x = _mm512_loadu_ps(s);
        }
        _mm512_storeu_ps(s, x);
        const __m512i key = _mm512_set1_epi32(k0 + j);
        const __mmask16 ok = _mm512_cmple_epi32_mask(key, pos) & _mm512_cmpge_epi32_mask(key, fst);
        mx = _mm512_mask_max_ps(mx, ok, mx, x);
    }
    *alpha = exp_ps(_mm512_sub_ps(m_old, mx));
    __m512 sum = _mm512_setzero_ps();
    for (int j = 0; j < nk; j++) {
        float *s = ST + (size_t)j * RS + 16 * v;
        const __m512i key = _mm512_set1_epi32(k0 + j);
        const __mmask16 ok = _mm512_cmple_epi32_mask(key, pos) & _mm512_cmpge_epi32_mask(key, fst);
        const __m512 p = _mm512_maskz_mov_ps(ok, exp_ps(_mm512_sub_ps(_mm512_loadu_ps(s), mx)));
        _mm512_storeu_ps(s, p);
        sum = _mm512_add_ps(sum, p);
    }
    _mm512_storeu_ps(m + 16 * v, mx);
    _mm512_storeu_ps(l + 16 * v, _mm512_fmadd_ps(_mm512_loadu_ps(l + 16 * v), *alpha, sum));
}

/* Tokens [0, nq) x heads [h0, h0 + nh) (nq * nh <= 64) of kern_attention_block. */
static void flash_block(float *out, const float *q, size_t q_stride, int nq, int pos0, int window, int head_dim, int h0,
                        int nh, size_t hoff, const kern_kv_view *kv, float *scratch) {
    const int R = nq * nh, NR = (R + 15) / 16, RS = 16 * NR, KB = KERN_ATTN_KEYS;
    float *base = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *QT = base, *Kf = QT + (size_t)head_dim * KERN_ATTN_ROWS, *Vf = Kf + (size_t)KB * head_dim;
    float *ST = Vf + (size_t)KB * head_dim, *OT = ST + (size_t)KB * KERN_ATTN_ROWS, *m = OT + (size_t)head_dim * KERN_ATTN_ROWS,
          *l = m + KERN_ATTN_ROWS;
    int qpos[KERN_ATTN_ROWS], qfirst[KERN_ATTN_ROWS];
    for (int r = 0; r < RS; r++) { /* padding rows see no key (pos -1) */
        const bool real = r < R;
        qpos[r] = real ? pos0 + r / nh : -1;
        qfirst[r] = real ? kern_attn_first(kv, qpos[r], window) : 0;
        m[r] = -FLT_MAX, l[r] = 0;
        const float *src = q + (size_t)(r / nh) * q_stride + (size_t)(h0 + r % nh) * head_dim;
        for (int d = 0; d < head_dim; d++) QT[(size_t)d * RS + r] = real ? src[d] : 0.0f, OT[(size_t)d * RS + r] = 0.0f;
    }
    const float scale = kern_attn_scale(kv, head_dim);
    const int k_end = pos0 + nq; /* first is non-decreasing in the position: row 0 sees the earliest key */
    for (int k0 = qfirst[0]; k0 < k_end; k0 += KB) {
        const int nk = k_end - k0 < KB ? k_end - k0 : KB;
        rows_f32(Kf, kv->k, hoff, k0, nk, head_dim, kv);
        rows_f32(Vf, kv->v, hoff, k0, nk, head_dim, kv);
        mk_rows(NR, ST, nk, Kf, (size_t)head_dim, 1, QT, head_dim, NULL);
        __m512 alpha[4];
        for (int v = 0; v < NR; v++) softmax_step(ST, RS, v, k0, nk, qpos, qfirst, m, l, scale, kv->softcap, &alpha[v]);
        mk_rows(NR, OT, head_dim, Vf, 1, (size_t)head_dim, ST, nk, alpha);
    }
    for (int r = 0; r < R; r++) {
        float *dst = out + (size_t)(r / nh) * q_stride + (size_t)(h0 + r % nh) * head_dim;
        const float inv = 1.0f / l[r];
        for (int d = 0; d < head_dim; d++) dst[d] = OT[(size_t)d * RS + r] * inv;
    }
}

void kern_attention_block_avx512(float *out, const float *q, size_t q_stride, int nq, int pos0, int window,
                                 int n_heads, int n_kv_heads, int head_dim, int h0, int h1, const kern_kv_view *kv,
                                 float *scratch) {
    const int nv = (head_dim + 15) / 16, nh = h1 - h0;
    if (nv > MAXV || nq <= 0 || nh <= 0 || !kern_kv_type_ok(kv->type, head_dim)) {
        kern_attention_block_ref(out, q, q_stride, nq, pos0, window, n_heads, n_kv_heads, head_dim, h0, h1, kv, scratch);
        return;
    }
    const int group = n_heads / n_kv_heads;
    if (h0 / group != (h1 - 1) / group) { /* one kv head at a time */
        for (int h = h0, e; h < h1; h = e) {
            e = (h / group + 1) * group < h1 ? (h / group + 1) * group : h1;
            kern_attention_block_avx512(out, q, q_stride, nq, pos0, window, n_heads, n_kv_heads, head_dim, h, e, kv, scratch);
        }
        return;
    }
    const size_t hoff = (size_t)(h0 / group) * kv->head_stride;
    if (nq * nh < 16) { /* too few rows to fill a tile's vectors: token by token, the heads together */
        for (int t = 0; t < nq; t++) {
            kern_kv_view kt = *kv;
            kt.first = kern_attn_first(kv, pos0 + t, window);
            attend_heads(out + t * q_stride, q + t * q_stride, head_dim, h0, h1, hoff, pos0 + t + 1, &kt);
        }
        return;
    }
    const int hc = nh < KERN_ATTN_ROWS ? nh : KERN_ATTN_ROWS, tc = KERN_ATTN_ROWS / hc;
    for (int h = h0; h < h1; h += hc)
        for (int t = 0; t < nq; t += tc)
            flash_block(out + t * q_stride, q + t * q_stride, q_stride, nq - t < tc ? nq - t : tc, pos0 + t, window, head_dim,
                        h, h1 - h < hc ? h1 - h : hc, hoff, kv, scratch);
}
