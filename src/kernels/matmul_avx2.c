/* matmul_avx2.c — AVX2/FMA/F16C matmul kernels (the same design as matmul_avx512.c, 16 ymm registers).
 *
 * Float weights: f32 FMA on widened weights, 2-row x 4-token micro-kernel, scalar tail for K % 8.
 * Q8_0 / Q4_0: pmaddubsw + pmaddwd (no VNNI), 16-row panels as the loader makes them (below), plain rows
 * in 2-row x 4-token tiles. pmaddubsw saturates at 16 bits, so Q8_0 uses llama.cpp's
 * sign trick (|w| times x*sign(w), at most 2*127*127) and Q4_0 feeds the raw nibble (w+8, <= 15) with
 * the activation block's corr = -8*sum(x) added to the int32 lanes. */
#include <immintrin.h>
#include <stdbool.h>

#include "kernels/matmul.h"
#include "kernels/simd_x86.h"


/* ---- float weights ---- */

INL __m256 load_w(int dt, const char *row, int k) {
    if (dt == KILN_DT_F32) return _mm256_loadu_ps((const float *)row + k);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + k));
    if (dt == KILN_DT_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

INL float scalar_w(int dt, const char *row, int k) {
    if (dt == KILN_DT_F32) return ((const float *)row)[k];
    uint16_t h = ((const uint16_t *)row)[k];
    return dt == KILN_DT_F16 ? _cvtsh_ss(h) : kern_bf16_to_f32(h);
}

INL void micro_f(int dt, int R, int T, const char *w, size_t rb, const float *x, int K, float *y, int M) {
    __m256 acc[2][4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) acc[i][j] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 wv[2];
#pragma GCC unroll 2
        for (int i = 0; i < R; i++) wv[i] = load_w(dt, w + i * rb, k);
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) {
            __m256 xv = _mm256_loadu_ps(x + (size_t)j * K + k);
#pragma GCC unroll 2
            for (int i = 0; i < R; i++) acc[i][j] = _mm256_fmadd_ps(wv[i], xv, acc[i][j]);
        }
    }
    for (int i = 0; i < R; i++)
        for (int j = 0; j < T; j++) {
            float s = hsum256(acc[i][j]);
            for (int kk = k; kk < K; kk++) s += scalar_w(dt, w + i * rb, kk) * x[(size_t)j * K + kk];
            y[(size_t)j * M + i] = s;
        }
}

INL void gemm_f(int dt, float *y, const float *x, int n, const kiln_mat *m, int r0, int r1) {
    const int K = m->cols, M = m->rows;
    const size_t rb = kern_row_bytes(dt, K);
    int tb = (int)((256u << 10) / ((size_t)K * 4));
    tb = tb < 4 ? 4 : tb > 64 ? 64 : tb & ~3;
    for (int t0 = 0; t0 < n; t0 += tb) {
        const int t1 = MIN(n, t0 + tb);
        int r = r0;
        for (; r + 2 <= r1; r += 2) {
            const char *w = (const char *)m->data + (size_t)r * rb;
            int t = t0;
            for (; t + 4 <= t1; t += 4) micro_f(dt, 2, 4, w, rb, x + (size_t)t * K, K, y + (size_t)t * M + r, M);
            for (; t < t1; t++) micro_f(dt, 2, 1, w, rb, x + (size_t)t * K, K, y + (size_t)t * M + r, M);
        }
        for (; r < r1; r++) {
            const char *w = (const char *)m->data + (size_t)r * rb;
            int t = t0;
            for (; t + 4 <= t1; t += 4) micro_f(dt, 1, 4, w, rb, x + (size_t)t * K, K, y + (size_t)t * M + r, M);
            for (; t < t1; t++) micro_f(dt, 1, 1, w, rb, x + (size_t)t * K, K, y + (size_t)t * M + r, M);
        }
    }
}

static void gemm_f32(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) { (void)tmp, gemm_f(KILN_DT_F32, y, x, n, m, r0, r1); }
static void gemm_f16(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) { (void)tmp, gemm_f(KILN_DT_F16, y, x, n, m, r0, r1); }
static void gemm_bf16(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) { (void)tmp, gemm_f(KILN_DT_BF16, y, x, n, m, r0, r1); }

/* ---- quantised weights ---- */

/* Quantised rows are addressed as (row start, bytes between its blocks): plain or interleaved (kernels.h). */
INL __m256i load_wq(int dt, const char *blk) {
    if (dt == KILN_DT_Q8_0) return _mm256_loadu_si256((const __m256i *)((const block_q8_0 *)blk)->qs);
    const __m128i q = _mm_loadu_si128((const __m128i *)((const block_q4_0 *)blk)->qs), lo4 = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), lo4), _mm_and_si128(q, lo4));
}

/* Both block types start with the f16 scale. */
INL float wscale(const char *blk) { return _cvtsh_ss(*(const uint16_t *)blk); }

INL void micro_q(int dt, int R, int T, const char *w, size_t rstep, size_t bstep, const act_q8 *x, int nb, float *y,
                 int M) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[2][4];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) acc[i][j] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        __m256i wv[2], wabs[2];
        __m256 dw[2];
#pragma GCC unroll 2
        for (int i = 0; i < R; i++) {
            wv[i] = load_wq(dt, w + i * rstep + b * bstep);
            if (dt == KILN_DT_Q8_0) wabs[i] = _mm256_sign_epi8(wv[i], wv[i]);
            dw[i] = _mm256_set1_ps(wscale(w + i * rstep + b * bstep));
        }
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) {
            const act_q8 *a = x + (size_t)j * nb + b;
            const __m256i xv = _mm256_loadu_si256((const __m256i *)a->qs);
            const __m256 dx = _mm256_set1_ps(a->d);
#pragma GCC unroll 2
            for (int i = 0; i < R; i++) {
                __m256i s;
                if (dt == KILN_DT_Q8_0) {
                    s = _mm256_madd_epi16(_mm256_maddubs_epi16(wabs[i], _mm256_sign_epi8(xv, wv[i])), ones);
                } else {
                    s = _mm256_madd_epi16(_mm256_maddubs_epi16(wv[i], xv), ones);
                    s = _mm256_add_epi32(s, _mm256_zextsi128_si256(_mm_cvtsi32_si128(a->corr)));
                }
                acc[i][j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_mul_ps(dw[i], dx), acc[i][j]);
            }
        }
    }
#pragma GCC unroll 2
    for (int i = 0; i < R; i++)
#pragma GCC unroll 4
        for (int j = 0; j < T; j++) y[(size_t)j * M + i] = hsum256(acc[i][j]);
}

/* Plain rows w[0..rows) (rb bytes apart) x n tokens in tiles of 2 rows x 4 tokens; y is row 0's column. */
INL void tiles_q(int dt, float *y, int M, const act_q8 *x, int n, const char *w, int rows, int nb) {
    const size_t bsz = kern_formats[dt].block_bytes, rb = bsz * (size_t)nb;
    int tb = (int)((512u << 10) / ((size_t)nb * sizeof(act_q8)));
    tb = tb < 4 ? 4 : tb > 128 ? 128 : tb & ~3;
    for (int t0 = 0; t0 < n; t0 += tb) {
        const int t1 = MIN(n, t0 + tb);
        int r = 0;
        for (; r + 2 <= rows; r += 2) {
            int t = t0;
            for (; t + 4 <= t1; t += 4) micro_q(dt, 2, 4, w + r * rb, rb, bsz, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
            for (; t < t1; t++) micro_q(dt, 2, 1, w + r * rb, rb, bsz, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
        }
        for (; r < rows; r++) {
            int t = t0;
            for (; t + 4 <= t1; t += 4) micro_q(dt, 1, 4, w + r * rb, rb, bsz, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
            for (; t < t1; t++) micro_q(dt, 1, 1, w + r * rb, rb, bsz, x + (size_t)t * nb, nb, y + (size_t)t * M + r, M);
        }
    }
}

/* ---- quantised weights in panels (kernels.h) ----
 *
 * A 16-row panel goes as two halves of 8 rows: a 32-byte load is one value group (4 values) of 8 rows, so
 * pmaddubsw against a broadcast of the token's 4 matching activation bytes, then pmaddwd by ones, gives
 * each row's 4-value sum in its own int32 lane: the 8 rows' block sums come out as one vector (one convert
 * and two float ops per 8 rows, no horizontal sums), where plain rows pay those per row. Q4_0 (nibbles
 * <= 15, activations >= -127): eight pmaddubsw of a block add up in int16 (at most 8 * 2 * 15 * 127 =
 * 30480) before one pmaddwd, and the activation's corr (-8 sum x) undoes the stored +8. Q8_0: the sign
 * trick, |w| times x * sign(w) (at most 2 * 127 * 127 per pair), no corr. The int32 block sums are exact
 * and each lane takes its row's blocks in order, as the scalar reference does. */
#define PANEL_TOKENS 4 /* tokens per pass over a panel: 4 accumulators + a half-block's weights in 16 ymm */
typedef int32_t i32_alias __attribute__((may_alias)); /* 4 activation bytes read as one broadcast dword */

INL __m256i bcast4(const act_q8 *a, int i) { return _mm256_set1_epi32(*(const i32_alias *)&a->qs[i]); }

/* Half h (rows 8h..8h+7) of one panel (nb blocks from p) x T tokens: y[t][0..8). */
INL void panel_half(int dt, int T, const char *p, int h, const act_q8 *x, int nb, float *y, int M) {
    const size_t pbb = kern_panel_block_bytes(dt);
    const __m256i ones = _mm256_set1_epi16(1), lo4 = _mm256_set1_epi8(0x0f);
    __m256 facc[PANEL_TOKENS];
#pragma GCC unroll 4
    for (int j = 0; j < T; j++) facc[j] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++, p += pbb) {
        const kern_panel *pb = (const kern_panel *)p;
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(pb->d + 8 * h)));
        __m256i s[PANEL_TOKENS];
        if (dt == KILN_DT_Q4_0) {
            __m256i w[8]; /* value groups 0..3 (low nibbles), 4..7 (high) of the 8 rows */
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)pb->qs[g][8 * h]);
                w[g] = _mm256_and_si256(raw, lo4), w[g + 4] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), lo4);
            }
#pragma GCC unroll 4
            for (int j = 0; j < T; j++) {
                const act_q8 *a = x + (size_t)j * nb + b;
                __m256i s16 = _mm256_maddubs_epi16(w[0], bcast4(a, 0));
#pragma GCC unroll 8
                for (int g = 1; g < 8; g++) s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(w[g], bcast4(a, g < 4 ? 4 * g : 16 + 4 * (g - 4))));
                s[j] = _mm256_add_epi32(_mm256_madd_epi16(s16, ones), _mm256_set1_epi32(a->corr));
            }
        } else {
#pragma GCC unroll 4
            for (int j = 0; j < T; j++) s[j] = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int g = 0; g < 8; g++) {
                const __m256i w = _mm256_loadu_si256((const __m256i *)pb->qs[g][8 * h]), aw = _mm256_sign_epi8(w, w);
#pragma GCC unroll 4
                for (int j = 0; j < T; j++) {
                    const __m256i xs = _mm256_sign_epi8(bcast4(x + (size_t)j * nb + b, 4 * g), w);
                    s[j] = _mm256_add_epi32(s[j], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xs), ones));
                }
            }
        }
#pragma GCC unroll 4
        for (int j = 0; j < T; j++)
            facc[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[j]), _mm256_mul_ps(dw, _mm256_set1_ps(x[(size_t)j * nb + b].d)), facc[j]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < T; j++) _mm256_storeu_ps(y + (size_t)j * M, facc[j]);
}

/* All n tokens over one panel (p: its first block), into y[t][0..16). */
INL void panel_tokens(int dt, const char *p, const act_q8 *x, int n, int nb, float *y, int M) {
    for (int h = 0; h < 2; h++) {
        int t = 0;
        for (; t + PANEL_TOKENS <= n; t += PANEL_TOKENS)
            panel_half(dt, PANEL_TOKENS, p, h, x + (size_t)t * nb, nb, y + (size_t)t * M + 8 * h, M);
        const act_q8 *xt = x + (size_t)t * nb;
        float *yt = y + (size_t)t * M + 8 * h;
        switch (n - t) { /* constant T: the compiler keeps accumulators in registers */
        case 1: panel_half(dt, 1, p, h, xt, nb, yt, M); break;
        case 2: panel_half(dt, 2, p, h, xt, nb, yt, M); break;
        case 3: panel_half(dt, 3, p, h, xt, nb, yt, M); break;
        default: break;
        }
    }
}

/* Whole panels in place; a panel row outside a whole-panel range (only a direct caller's ragged range: the
 * pool hands out multiples of 16) is gathered into plain form in tmp; plain rows go to tiles. */
INL void gemm_q(int dt, float *y, const act_q8 *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    const int nb = m->cols / QK, pr = kern_panel_rows(m), M = m->rows;
    char *buf = kern_tmp_row(tmp, m->cols);
    int r = r0;
    while (r < r1 && r < pr) {
        if (r % KERN_PANEL == 0 && r + KERN_PANEL <= r1) {
            panel_tokens(dt, (const char *)kern_panel_block(m, r, 0), x, n, nb, y + r, M);
            r += KERN_PANEL;
            continue;
        }
        tiles_q(dt, y + r, M, x, n, kern_qrow_plain(m, r, buf), 1, nb);
        r++;
    }
    if (r < r1) tiles_q(dt, y + r, M, x, n, kern_qrow(m, r), r1 - r, nb);
}

static void gemm_q8(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) { gemm_q(KILN_DT_Q8_0, y, x, n, m, r0, r1, tmp); }
static void gemm_q4(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) { gemm_q(KILN_DT_Q4_0, y, x, n, m, r0, r1, tmp); }

const kern_isa kern_isa_avx2 = {
    .name = "avx2",
    .panels = {[KILN_DT_Q8_0] = true, [KILN_DT_Q4_0] = true, [KILN_DT_Q4_K] = true}, /* Q5_K, Q6_K: plain rows */
    .gemm = {gemm_f32, gemm_f16, gemm_bf16, gemm_q8, gemm_q4, [KILN_DT_Q4_K] = kern_gemm_q4_k_avx2,
             [KILN_DT_Q5_K] = kern_gemm_q5_k_avx2, [KILN_DT_Q6_K] = kern_gemm_q6_k_avx2},
    .attention = kern_attention_avx2,
    .quantize_act = quantize_act_ref,
    .quantize_q8_k = quantize_row_q8_K_ref,
    .silu_mul = silu_mul_avx2,
    .gelu_tanh_mul = gelu_tanh_mul_avx2,
    .attention_block = kern_attention_block_avx2, /* no bf16 dot-product path: gemm_bf16dot, to_bf16 NULL */
};
