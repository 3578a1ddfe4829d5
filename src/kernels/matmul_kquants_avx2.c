/* matmul_kquants_avx2.c — AVX2 matmul for Q4_K, Q5_K and Q6_K weights against Q8_K activations (the
 * scalar reference: kern_q*_k_vec_dot, llama.cpp's generic arithmetic; the AVX-512 design of
 * matmul_kquants_avx512.c with pmaddubsw + pmaddwd in place of vpdpbusd).
 *
 * Per weight row and 256-value super-block, the quants are unpacked once into 8 ymm of unsigned bytes in
 * value order (Q4_K 0..15, Q5_K 0..31, Q6_K 0..63 = q + 32), each with the int16 scale of its 16-bit lanes;
 * then for each token of a tile: pmaddubsw (pairs; at most 2 * 63 * 127, so it never saturates), pmaddwd
 * by the scales (int32, exact), one convert and FMA by d * d_x into the token's float lanes, summed once
 * per row. What the unsigned form adds comes off through the
 * Q8_K group sums (bsums), one pmaddwd each: Q6_K's 32 * sum(scale * bsum), and the Q4_K / Q5_K mins term
 * dmin * sum(min * bsum), as in the reference. The integer sums are exact; only the f32 scaling rounds in
 * another order than the reference's 8 float lanes. That row kernel serves Q5_K, Q6_K and the rows outside
 * whole panels; Q4_K, which the loader gives in 16-row panels on this ISA, has the panel kernel below. */
#include <immintrin.h>

#include "kernels/kquants.h"
#include "kernels/kquants_x86.h"
#include "kernels/matmul.h"
#include "kernels/simd_x86.h"

#define KQ_TOKENS 8 /* tokens sharing one unpacked super-block */

/* One super-block, unpacked. */
typedef struct {
    __m256i q[8];  /* unsigned quants, values 32k..32k+31 */
    __m256i sc[8]; /* the int16 scale of each 16-bit lane of pmaddubsw(q[k], x) */
    __m256i cw;    /* per group of 16: int16 weight of its bsum in the integer sum (Q6_K: -32 * scale) */
    __m256i mw;    /* per group of 16: int16 weight of its bsum in the mins term (Q4_K / Q5_K: the min) */
    float d, dmin;
} kq_super;

/* 16 int16 lanes, lane i = byte first + i / per of v (sign-extended). */
INL __m256i spread16(__m128i v, int first, int per) {
    char idx[16];
    for (int i = 0; i < 16; i++) idx[i] = (char)(first + i / per);
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(v, _mm_loadu_si128((const __m128i *)idx)));
}

/* Q4_K / Q5_K: 8 blocks of 32, one per ymm; the min of block j weights bsum groups 2j and 2j+1. */
INL void k4_scales(const uint8_t packed[K_SCALE_SIZE], kq_super *u) {
    uint32_t w[4]; /* scales in bytes 0..7, mins in 8..15: kept in registers */
    kern_scale_min_k4_words(packed, w);
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) u->sc[k] = _mm256_set1_epi16((short)((w[k / 4] >> (8 * (k % 4))) & 0xff));
    u->mw = spread16(_mm_setr_epi32((int)w[0], (int)w[1], (int)w[2], (int)w[3]), 8, 2); /* mins <= 63 */
    u->cw = _mm256_setzero_si256();
}

/* Q4_K (qh NULL) or Q5_K. */
INL void unpack_k4(kq_k4_block b, kq_super *u) {
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) kq_k4_pair(b.qs, b.qh, k, &u->q[2 * k], &u->q[2 * k + 1]);
    k4_scales(b.scales, u);
    u->d = _cvtsh_ss(b.d), u->dmin = _cvtsh_ss(b.dmin);
}

INL void unpack_q6_k(const block_q6_K *b, kq_super *u) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) kq_q6_quarters(b, h, &u->q[4 * h]);
    const __m128i s = _mm_loadu_si128((const __m128i *)b->scales); /* 16 int8 scales, groups of 16 */
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) u->sc[k] = spread16(s, 2 * k, 8);
    u->cw = _mm256_mullo_epi16(_mm256_cvtepi8_epi16(s), _mm256_set1_epi16(-32)); /* the stored q is a + 32 */
    u->mw = _mm256_setzero_si256();
    u->d = _cvtsh_ss(b->d), u->dmin = 0;
}

/* acc += one unpacked super-block . one Q8_K block, in 8 float lanes (d, dmin: u's, broadcast). */
INL __m256 super_dot(int dt, const kq_super *u, const block_q8_K *y, __m256 d, __m256 dmin, __m256 acc) {
    const __m256i bs = _mm256_loadu_si256((const __m256i *)y->bsums);
    __m256i isum = dt == KILN_DT_Q6_K ? _mm256_madd_epi16(u->cw, bs) : _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        const __m256i p = _mm256_maddubs_epi16(u->q[k], _mm256_loadu_si256((const __m256i *)(y->qs + 32 * k)));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, u->sc[k]));
    }
    const __m256 v = dt == KILN_DT_Q6_K ? _mm256_mul_ps(_mm256_cvtepi32_ps(isum), d) /* Q4_K / Q5_K: minus the mins term */
                                        : _mm256_fmsub_ps(_mm256_cvtepi32_ps(isum), d,
                                                          _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(u->mw, bs)), dmin));
    return _mm256_fmadd_ps(v, _mm256_set1_ps(y->d), acc);
}

/* One row (w, nb super-blocks) x T tokens (x: the first one's Q8_K blocks, the next xb bytes on), into
 * y[t * M]; float accumulators per token, summed once per row. */
INL void row_tile(int dt, int T, float *y, int M, const char *w, int nb, const char *x, size_t xb) {
    const size_t bsz = kern_formats[dt].block_bytes;
    __m256 acc[KQ_TOKENS];
#pragma GCC unroll 8
    for (int t = 0; t < KQ_TOKENS; t++) acc[t] = _mm256_setzero_ps();
    for (int i = 0; i < nb; i++) {
        const char *blk = w + (size_t)i * bsz;
        kq_super u;
        if (dt == KILN_DT_Q6_K) unpack_q6_k((const block_q6_K *)blk, &u);
        else unpack_k4(kq_k4_fields(dt, blk), &u);
        const __m256 d = _mm256_set1_ps(u.d), dmin = _mm256_set1_ps(u.dmin);
        for (int t = 0; t < T; t++) acc[t] = super_dot(dt, &u, (const block_q8_K *)(x + (size_t)t * xb) + i, d, dmin, acc[t]);
    }
    for (int t = 0; t < T; t++) y[(size_t)t * M] = hsum256(acc[t]);
}

/* ---- Q4_K in 16-row panels (panel_q4_k, kernels.h): prefill and decode ----
 *
 * matmul_avx2.c's Q4_0 panels with K-quant scales: a panel goes as two halves of 8 rows, a 32-byte load is
 * one 4-byte group of 8 rows, and pmaddubsw against a broadcast of the token's 4 matching activation bytes
 * gives each row's pair sums in its own dword. A sub-block's 8 groups add up in int16 (at most 8 * 2 * 15 *
 * 128 = 30720), then one pmaddwd by the rows' 6-bit scales (in both halves of each row's dword) gives the
 * 8 rows' exact int32 sums; the mins term sum_j min_j * (bsum_2j + bsum_2j+1) is four pmaddwd of the rows'
 * (min_2i, min_2i+1) pairs against the token's pair sums. d * d_x and dmin * d_x once per super-block. The 8
 * rows come out as one vector, with no per-row unpacking or horizontal sums: from L2, one token, one
 * thread, 36 GB/s where the row kernel reads 21 (`matmul_bench l2 q4_k`, Zen 5). (The high nibbles cannot
 * be dotted in place as on AVX-512: 16x the value would saturate pmaddubsw.) */
#define KP_TOKENS 4 /* tokens per pass: 8 int16 sums (low and high nibbles), 4 int32 ones, the weights in 16 ymm */
typedef int32_t kp_i32 __attribute__((may_alias)); /* 4 activation bytes read as one broadcast dword */

/* The 16 rows' sub-block scales and mins from the transposed scale bytes, as kern_scale_min_k4_words does
 * for one row: sc[h][j] holds row 8h + r's scale of sub-block j in int16 lanes 2r, 2r+1 (pmaddwd's
 * multiplier), mn[h][i] its (min_2i, min_2i+1) in lanes 2r, 2r+1. */
INL void kp_scales(const panel_q4_k *p, __m256i sc[2][8], __m256i mn[2][4]) {
    __m128i q[K_SCALE_SIZE], s[8], m[8];
#pragma GCC unroll 12
    for (int k = 0; k < K_SCALE_SIZE; k++) q[k] = _mm_loadu_si128((const __m128i *)p->scales[k]);
    const __m128i m6 = _mm_set1_epi8(63), m4 = _mm_set1_epi8(15), m2 = _mm_set1_epi8(3);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        s[j] = _mm_and_si128(q[j], m6), m[j] = _mm_and_si128(q[j + 4], m6);
        s[j + 4] = _mm_or_si128(_mm_and_si128(q[j + 8], m4), _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(q[j], 6), m2), 4));
        m[j + 4] = _mm_or_si128(_mm_and_si128(_mm_srli_epi16(q[j + 8], 4), m4),
                                _mm_slli_epi16(_mm_and_si128(_mm_srli_epi16(q[j + 4], 6), m2), 4));
    }
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        sc[0][j] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(s[j], s[j]));
        sc[1][j] = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(s[j], s[j]));
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        mn[0][i] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m[2 * i], m[2 * i + 1]));
        mn[1][i] = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(m[2 * i], m[2 * i + 1]));
    }
}

/* Halves h = h0 + hh, hh < H (rows 8h..8h+7 each) of one Q4_K panel block x T tokens (xt[t]: token t's
 * Q8_K block): facc[t][hh] += the 8 rows' dots. The sums are indexed by hh, a constant once unrolled, so
 * they stay in registers (indexed by h, a variable, GCC kept them in memory). */
INL void kp_block(int T, int H, const panel_q4_k *pb, int h0, const block_q8_K *const *xt, __m256 (*facc)[2]) {
    const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
    __m256i sc[2][8], mn[2][4], isum[KP_TOKENS][2];
    kp_scales(pb, sc, mn);
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) { /* the mins term first: its sums are free again for the main ones */
        const __m256i bs = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)xt[t]->bsums), ones); /* <= 32 * 128 */
        const __m128i pairs = _mm_packs_epi32(_mm256_castsi256_si128(bs), _mm256_extracti128_si256(bs, 1));
        const __m256i p2 = _mm256_broadcastsi128_si256(pairs); /* dword i: the sums of sub-blocks 2i, 2i+1 */
        const __m256 dx = _mm256_set1_ps(xt[t]->d);
#pragma GCC unroll 2
        for (int hh = 0, h = h0; hh < H; hh++, h++) {
            __m256i ms = _mm256_madd_epi16(mn[h][0], _mm256_shuffle_epi32(p2, 0x00));
            ms = _mm256_add_epi32(ms, _mm256_madd_epi16(mn[h][1], _mm256_shuffle_epi32(p2, 0x55)));
            ms = _mm256_add_epi32(ms, _mm256_madd_epi16(mn[h][2], _mm256_shuffle_epi32(p2, 0xaa)));
            ms = _mm256_add_epi32(ms, _mm256_madd_epi16(mn[h][3], _mm256_shuffle_epi32(p2, 0xff)));
            const __m256 dmin = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(pb->dmin + 8 * h)));
            facc[t][hh] = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_mul_ps(dmin, dx), facc[t][hh]);
            isum[t][hh] = _mm256_setzero_si256();
        }
    }
    /* chunk c: sub-block 2c in the low nibbles, 2c + 1 in the high. Each 64-byte line loaded once (with H 2,
     * its halves' 32 bytes one after the other), and prefetched KP_PF_BLOCKS blocks ahead: without that the
     * hardware streamer left this loop at half the row kernel's rate from memory (Zen 5, one thread,
     * KILN_ISA=avx2 `matmul_bench l2 q4_k 65536 2048 4`: 9.9-12.3 GB/s against 20-22; with it 31-32).
     * Loops, not unrolled: unrolled, GCC reassociates the int16 sums into trees over all of a chunk's
     * products and spills them (measured slower than the row kernel). */
#pragma GCC unroll 1
    for (int c = 0; c < 4; c++) {
        __m256i lo16[KP_TOKENS][2], hi16[KP_TOKENS][2];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
#pragma GCC unroll 2
            for (int hh = 0, h = h0; hh < H; hh++, h++) lo16[t][hh] = hi16[t][hh] = _mm256_setzero_si256();
#pragma GCC unroll 1
        for (int g = 0; g < 8; g++) {
            _mm_prefetch((const char *)pb->qs[c][g] + KP_PF_BLOCKS * sizeof(panel_q4_k), _MM_HINT_T0);
#pragma GCC unroll 2
            for (int hh = 0, h = h0; hh < H; hh++, h++) {
                const __m256i raw = _mm256_loadu_si256((const __m256i *)pb->qs[c][g][8 * h]);
                const __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
#pragma GCC unroll 4
                for (int t = 0; t < T; t++) {
                    const uint8_t *a = (const uint8_t *)xt[t]->qs + 64 * c + 4 * g;
                    lo16[t][hh] = _mm256_add_epi16(lo16[t][hh], _mm256_maddubs_epi16(lo, _mm256_set1_epi32(*(const kp_i32 *)a)));
                    hi16[t][hh] = _mm256_add_epi16(hi16[t][hh], _mm256_maddubs_epi16(hi, _mm256_set1_epi32(*(const kp_i32 *)(a + 32))));
                }
            }
        }
#pragma GCC unroll 4
        for (int t = 0; t < T; t++)
#pragma GCC unroll 2
            for (int hh = 0, h = h0; hh < H; hh++, h++)
                isum[t][hh] = _mm256_add_epi32(isum[t][hh], _mm256_add_epi32(_mm256_madd_epi16(lo16[t][hh], sc[h][2 * c]),
                                                                           _mm256_madd_epi16(hi16[t][hh], sc[h][2 * c + 1])));
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
#pragma GCC unroll 2
        for (int hh = 0, h = h0; hh < H; hh++, h++) {
            const __m256 d = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(pb->d + 8 * h)));
            facc[t][hh] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[t][hh]), _mm256_mul_ps(d, _mm256_set1_ps(xt[t]->d)), facc[t][hh]);
        }
}

/* Halves h0..h0+H-1 of the panel of m holding row r x T tokens (T <= KP_TOKENS; x: the first token's Q8_K
 * blocks, the next xb bytes on): writes y[t * M + 8h..8h+8). */
INL void kp_tile(int T, int H, const kiln_mat *m, int r, int h0, const char *x, size_t xb, float *y, int M) {
    const int nb = m->cols / QK_K;
    __m256 facc[KP_TOKENS][2];
#pragma GCC unroll 4
    for (int t = 0; t < T; t++) facc[t][0] = facc[t][1] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const block_q8_K *xt[KP_TOKENS];
#pragma GCC unroll 4
        for (int t = 0; t < T; t++) xt[t] = (const block_q8_K *)(x + (size_t)t * xb) + b;
        kp_block(T, H, (const panel_q4_k *)kern_panel_block(m, r, b), h0, xt, facc);
    }
#pragma GCC unroll 4
    for (int t = 0; t < T; t++)
#pragma GCC unroll 2
        for (int hh = 0, h = h0; hh < H; hh++, h++) _mm256_storeu_ps(y + (size_t)t * M + 8 * h, facc[t][hh]);
}

/* n tokens over one panel. Decoding, both halves in one pass over the blocks, so each line comes from
 * memory once and whole; a batch goes a half at a time, KP_TOKENS tokens per pass: both halves' sums would
 * not fit the registers, and its passes over a panel re-read it from L1 / L2 anyway. (dt: Q4_K, the one
 * format AVX2 reads in panels.) */
INL void kp_tokens(int dt, const kiln_mat *m, int r, const char *x, size_t xb, int n, float *y, int M) {
    (void)dt;
    if (n == 1) {
        kp_tile(1, 2, m, r, 0, x, xb, y, M);
        return;
    }
    for (int h = 0; h < 2; h++) {
        int t = 0;
        for (; t + KP_TOKENS <= n; t += KP_TOKENS) kp_tile(KP_TOKENS, 1, m, r, h, x + (size_t)t * xb, xb, y + (size_t)t * M, M);
        const char *xt = x + (size_t)t * xb;
        float *yt = y + (size_t)t * M;
        switch (n - t) { /* constant T: the compiler keeps the sums in registers */
        case 1: kp_tile(1, 1, m, r, h, xt, xb, yt, M); break;
        case 2: kp_tile(2, 1, m, r, h, xt, xb, yt, M); break;
        case 3: kp_tile(3, 1, m, r, h, xt, xb, yt, M); break;
        default: break;
        }
    }
}

#define KQ_ISA avx2
#include "kernels/kquants_x86_driver.h"

void kern_gemm_q4_k_avx2(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    gemm_panels(KILN_DT_Q4_K, y, x, n, m, r0, r1, tmp);
}
/* Q6_K rows in panels (AVX-512's layout) are gathered: AVX2 reads Q6_K as plain rows. */
void kern_gemm_q6_k_avx2(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    gemm_kq(KILN_DT_Q6_K, y, x, n, m, r0, r1, tmp);
}
