/* attention_avx512.c — AVX-512 attention of one query over a paged KV cache (same contract as the
 * portable kern_attention_ref in attention.c, which tests compare it against).
 *
 * Why a separate kernel: prefill attends T queries over up to T positions, and the portable loops
 * compile to 128-bit SSE at best; it was ~23% of a 512-token prefill's profile (perf, Llama-3.2-1B
 * shape) for ~1.3% of the FLOPs. Here:
 *   scores  16 positions at a time: the query head sits in registers (head_dim/16 zmm), each key row
 *           takes head_dim/16 FMAs into its own accumulator, and the 16 accumulators are reduced
 *           together by a transpose-add tree (4 shuffle levels, not 16 separate horizontal sums);
 *   softmax max, a vector exp (Cephes-style range reduction + degree-6 polynomial, ~1 ulp) and sum;
 *   values  the output head stays in registers while every position's value row is FMA'd in.
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

/* r[i] = sum of v[i]'s 16 lanes, for i in 0..15. */
INL __m512 hsum16(const __m512 v[16]) {
    __m512 a[8], b[4], c[2];
#pragma GCC unroll 16
    for (int i = 0; i < 8; i++) /* 256-bit halves: [v0.q0+v0.q2, v0.q1+v0.q3, v1.q0+v1.q2, v1.q1+v1.q3] */
        a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
#pragma GCC unroll 16
    for (int i = 0; i < 4; i++) /* one 128-bit quarter per source vector: v(4i), v(4i+1), v(4i+2), v(4i+3) */
        b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(a[2 * i], a[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
#pragma GCC unroll 16
    for (int i = 0; i < 2; i++) /* two floats per source vector inside each quarter */
        c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 r = _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_ps(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
    /* the tree leaves vector i's sum in lane 4*(i%4) + i/4 (a 4x4 transpose): undo it */
    return _mm512_permutexvar_ps(_mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0), r);
}

INL __mmask16 first(int m) { return m >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << m) - 1); }

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

/* One query head over positions kv->first..n_pos-1. NV = head_dim / 16 rounded up (a constant for the common
 * head sizes so the head stays in registers; 0 = use nv). */
INL void attend_head(const kiln_dtype T, const int NV, int nv, float *out, const float *qh, int head_dim, size_t hoff, int n_pos,
                     const kern_kv_view *kv, float *scratch) {
    if (NV) nv = NV;
    const __mmask16 tail = first(head_dim - 16 * (nv - 1));
    const __m512 scale = _mm512_set1_ps(kern_attn_scale(kv, head_dim));
    const int p_first = kv->first, p_start = p_first / kv->block * kv->block;
    __m512 qv[MAXV];
#pragma GCC unroll 16
    for (int c = 0; c < nv; c++) qv[c] = _mm512_maskz_loadu_ps(c == nv - 1 ? tail : 0xffff, qh + 16 * c);
    __m512 mx = _mm512_set1_ps(-INFINITY);
    for (int p0 = p_start; p0 < n_pos; p0 += kv->block) {
        const char *k = kv->k + (size_t)kv->table[p0 / kv->block] * kv->block_stride + hoff;
        const int np = n_pos - p0 < kv->block ? n_pos - p0 : kv->block;
        for (int p = p_first > p0 ? p_first - p0 : 0; p < np; p += 16) {
            const int m = np - p < 16 ? np - p : 16;
            __m512 acc[16];
#pragma GCC unroll 16
            for (int i = 0; i < 16; i++) {
                acc[i] = _mm512_setzero_ps();
                if (i >= m) continue;
                const char *kp = k + (size_t)(p + i) * kv->row_stride;
#pragma GCC unroll 16
                for (int c = 0; c < nv; c++)
                    acc[i] = _mm512_fmadd_ps(qv[c], load16(T, kp, c, c == nv - 1 ? tail : 0xffff), acc[i]);
            }
            const __m512 s = _mm512_mul_ps(hsum16(acc), scale);
            _mm512_mask_storeu_ps(scratch + p0 + p, first(m), s);
            mx = _mm512_mask_max_ps(mx, first(m), mx, s);
        }
    }
    float smax = _mm512_reduce_max_ps(mx);
    if (kv->softcap > 0) { /* tanh is monotonic: the capped maximum is the cap of the maximum */
        kern_softcap(scratch + p_first, n_pos - p_first, kv->softcap);
        kern_softcap(&smax, 1, kv->softcap);
    }
    const __m512 vmax = _mm512_set1_ps(smax);
    __m512 vsum = _mm512_setzero_ps();
    for (int p = p_first; p < n_pos; p += 16) {
        const __mmask16 mm = first(n_pos - p);
        const __m512 e = exp_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(mm, scratch + p), vmax));
        _mm512_mask_storeu_ps(scratch + p, mm, e);
        vsum = _mm512_mask_add_ps(vsum, mm, vsum, e);
    }
    /* values: two accumulator sets so consecutive positions' FMAs do not wait on each other */
    __m512 o0[MAXV], o1[MAXV];
#pragma GCC unroll 16
    for (int c = 0; c < MAXV; c++) /* all MAXV: once unrolled, GCC cannot tell the unused ones are unread */
        o0[c] = o1[c] = _mm512_setzero_ps();
    for (int p0 = p_start; p0 < n_pos; p0 += kv->block) {
        const char *v = kv->v + (size_t)kv->table[p0 / kv->block] * kv->block_stride + hoff;
        const int np = n_pos - p0 < kv->block ? n_pos - p0 : kv->block;
        int p = p_first > p0 ? p_first - p0 : 0;
        for (; p + 2 <= np; p += 2) {
            const __m512 w0 = _mm512_set1_ps(scratch[p0 + p]), w1 = _mm512_set1_ps(scratch[p0 + p + 1]);
            const char *v0 = v + (size_t)p * kv->row_stride, *v1 = v0 + kv->row_stride;
#pragma GCC unroll 16
            for (int c = 0; c < nv; c++) {
                const __mmask16 mk = c == nv - 1 ? tail : 0xffff;
                o0[c] = _mm512_fmadd_ps(w0, load16(T, v0, c, mk), o0[c]);
                o1[c] = _mm512_fmadd_ps(w1, load16(T, v1, c, mk), o1[c]);
            }
        }
        if (p < np) {
            const __m512 w0 = _mm512_set1_ps(scratch[p0 + p]);
            const char *v0 = v + (size_t)p * kv->row_stride;
#pragma GCC unroll 16
            for (int c = 0; c < nv; c++) o0[c] = _mm512_fmadd_ps(w0, load16(T, v0, c, c == nv - 1 ? tail : 0xffff), o0[c]);
        }
    }
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(vsum));
#pragma GCC unroll 16
    for (int c = 0; c < nv; c++)
        _mm512_mask_storeu_ps(out + 16 * c, c == nv - 1 ? tail : 0xffff, _mm512_mul_ps(_mm512_add_ps(o0[c], o1[c]), inv));
}

/* One head with the format T and register count known at compile time. */
INL void attend_typed(const kiln_dtype T, int nv, float *o, const float *qh, int head_dim, size_t hoff, int n_pos,
                      const kern_kv_view *kv, float *scratch) {
    switch (nv) { /* the common head sizes get their register count at compile time */
    case 4: attend_head(T, 4, nv, o, qh, head_dim, hoff, n_pos, kv, scratch); break;
    case 8: attend_head(T, 8, nv, o, qh, head_dim, hoff, n_pos, kv, scratch); break;
    default: attend_head(T, 0, nv, o, qh, head_dim, hoff, n_pos, kv, scratch); break;
    }
}

void kern_attention_avx512(float *out, const float *q, int n_heads, int n_kv_heads, int head_dim, int n_pos,
                           const kern_kv_view *kv, float *scratch, int h0, int h1) {
    const int nv = (head_dim + 15) / 16;
    if (nv > MAXV || n_pos <= 0 || !kern_kv_type_ok(kv->type, head_dim)) {
        kern_attention_ref(out, q, n_heads, n_kv_heads, head_dim, n_pos, kv, scratch, h0, h1);
        return;
    }
    const int group = n_heads / n_kv_heads;
    for (int h = h0; h < h1; h++) {
        const float *qh = q + (size_t)h * head_dim;
        float *o = out + (size_t)h * head_dim;
        const size_t hoff = (size_t)(h / group) * kv->head_stride;
        switch (kv->type) {
        case KILN_DT_F16: attend_typed(KILN_DT_F16, nv, o, qh, head_dim, hoff, n_pos, kv, scratch); break;
        case KILN_DT_BF16: attend_typed(KILN_DT_BF16, nv, o, qh, head_dim, hoff, n_pos, kv, scratch); break;
        case KILN_DT_Q8_0: attend_typed(KILN_DT_Q8_0, nv, o, qh, head_dim, hoff, n_pos, kv, scratch); break;
        default: attend_typed(KILN_DT_F32, nv, o, qh, head_dim, hoff, n_pos, kv, scratch); break;
        }
    }
}

/* ---- one token (decode, or too few rows for a tile): head by head ----
 * (Reading each row once for 4 heads together, 16 accumulators of 4 keys x 4 heads reduced by one hsum16,
 * measured slower here for f16/bf16/q8_0 caches in attention_bench (f16 at depth 4096: 168 vs 124 ms per
 * token), so decode keeps the one-head kernel, whose kv head's rows the next heads find in L2.) */
INL void attend_token_typed(const kiln_dtype T, float *out, const float *q, int head_dim, int h0, int h1, size_t hoff,
                            int n_pos, const kern_kv_view *kv, float *scratch) {
    const int nv = (head_dim + 15) / 16;
    for (int h = h0; h < h1; h++) attend_typed(T, nv, out + (size_t)h * head_dim, q + (size_t)h * head_dim, head_dim, hoff, n_pos, kv, scratch);
}

static void attend_token(float *out, const float *q, int head_dim, int h0, int h1, size_t hoff, int n_pos,
                         const kern_kv_view *kv, float *scratch) {
    switch (kv->type) {
    case KILN_DT_F16: attend_token_typed(KILN_DT_F16, out, q, head_dim, h0, h1, hoff, n_pos, kv, scratch); break;
    case KILN_DT_BF16: attend_token_typed(KILN_DT_BF16, out, q, head_dim, h0, h1, hoff, n_pos, kv, scratch); break;
    case KILN_DT_Q8_0: attend_token_typed(KILN_DT_Q8_0, out, q, head_dim, h0, h1, hoff, n_pos, kv, scratch); break;
    default: attend_token_typed(KILN_DT_F32, out, q, head_dim, h0, h1, hoff, n_pos, kv, scratch); break;
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
    const __mmask16 tail = first(head_dim - 16 * (nv - 1));
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
            attend_token(out + t * q_stride, q + t * q_stride, head_dim, h0, h1, hoff, pos0 + t + 1, &kt, scratch);
        }
        return;
    }
    const int hc = nh < KERN_ATTN_ROWS ? nh : KERN_ATTN_ROWS, tc = KERN_ATTN_ROWS / hc;
    for (int h = h0; h < h1; h += hc)
        for (int t = 0; t < nq; t += tc)
            flash_block(out + t * q_stride, q + t * q_stride, q_stride, nq - t < tc ? nq - t : tc, pos0 + t, window, head_dim,
                        h, h1 - h < hc ? h1 - h : hc, hoff, kv, scratch);
}
