/* matmul_kquants_avx512.c — AVX-512 VNNI matmul for Q4_K, Q5_K and Q6_K weights against Q8_K activations
 * (the scalar reference: kern_q*_k_vec_dot, llama.cpp's generic arithmetic).
 *
 * Per weight row and 256-value super-block, the quants are unpacked once into 4 zmm of unsigned bytes in
 * value order (64 values each: Q4_K 0..15, Q5_K 0..31, Q6_K 0..63 = q + 32), with each 16-bit lane's
 * block scale beside them; then for each token of a tile, per zmm: vpmaddubsw (pairs, at most 2*63*127:
 * never saturates) and vpdpwssd by the scales (int32 lanes, exact), one convert and one FMA by d * d_x
 * into the token's float accumulator, which is summed once per row, not once per super-block. What the
 * unsigned form adds comes off through the Q8_K group sums (bsums), one vpmaddwd: Q6_K's
 * 32 * sum(scale * bsum) inside the integer sum, the Q4_K / Q5_K mins term dmin * sum(min * bsum) as a
 * second FMA, as in the reference. The integer sums are exact; only the f32 scaling's rounding order
 * differs from the reference (which keeps 8 float lanes). */
#include <immintrin.h>

#include "kernels/kquants.h"
#include "kernels/kquants_x86.h"
#include "kernels/matmul.h"
#include "kernels/simd_x86.h"

#define KQ_TOKENS 8 /* tokens sharing one unpacked super-block */

/* One super-block, unpacked. */
typedef struct {
    __m512i q[4];  /* unsigned quants, values 64k..64k+63 */
    __m512i sc[4]; /* the scale of each 16-bit lane of vpmaddubsw(q[k], x) */
    __m256i gw;    /* per group of 16, int16: weight of its bsum (Q6_K: -32 * scale; Q4_K / Q5_K: the min) */
    float d, dmin;
} kq_super;

INL __m512i join(__m256i lo, __m256i hi) { return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1); }

/* 32 int16 lanes from the 16 of v: lane i = v[first + i / per]. */
INL __m512i spread16(__m256i v, int first, int per) {
    short idx[32];
    for (int i = 0; i < 32; i++) idx[i] = (short)(first + i / per);
    return _mm512_permutexvar_epi16(_mm512_loadu_si512(idx), _mm512_castsi256_si512(v));
}

/* Q4_K / Q5_K: the 8 scales (bytes 0..7) and mins (8..15), built in registers. */
INL __m128i k4_scale_bytes(const uint8_t packed[K_SCALE_SIZE]) {
    uint32_t w[4];
    kern_scale_min_k4_words(packed, w);
    return _mm_setr_epi32((int)w[0], (int)w[1], (int)w[2], (int)w[3]);
}

/* Q4_K / Q5_K: 8 blocks of 32, 2 per zmm (int16 lanes 0..15, 16..31); block j's min weights groups 2j, 2j+1. */
INL void k4_scales(const uint8_t packed[K_SCALE_SIZE], kq_super *u) {
    const __m256i s = _mm256_cvtepu8_epi16(k4_scale_bytes(packed)); /* lanes 0..7 scales, 8..15 mins */
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) u->sc[k] = spread16(s, 2 * k, 16);
    u->gw = _mm512_castsi512_si256(spread16(s, 8, 2));
}

/* Q4_K (qh NULL) or Q5_K. */
INL void unpack_k4(kq_k4_block b, kq_super *u) {
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        __m256i lo, hi;
        kq_k4_pair(b.qs, b.qh, k, &lo, &hi);
        u->q[k] = join(lo, hi);
    }
    k4_scales(b.scales, u);
    u->d = _cvtsh_ss(b.d), u->dmin = _cvtsh_ss(b.dmin);
}

INL void unpack_q6_k(const block_q6_K *b, kq_super *u) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i o[4];
        kq_q6_quarters(b, h, o);
        u->q[2 * h] = join(o[0], o[1]), u->q[2 * h + 1] = join(o[2], o[3]);
    }
    const __m256i s = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales)); /* 16 scales, groups of 16 */
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) u->sc[k] = spread16(s, 4 * k, 8);
    u->gw = _mm256_mullo_epi16(s, _mm256_set1_epi16(-32)); /* the stored q is a + 32 */
    u->d = _cvtsh_ss(b->d), u->dmin = 0;
}

/* acc += one unpacked super-block . one Q8_K block, in 16 float lanes (d, dmin: u's, broadcast). */
INL __m512 super_dot(int dt, const kq_super *u, const block_q8_K *y, __m512 d, __m512 dmin, __m512 acc) {
    const __m256i g = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)y->bsums), u->gw);
    __m512i isum = dt == KILN_DT_Q6_K ? _mm512_zextsi256_si512(g) : _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(u->q[k], _mm512_loadu_si512(y->qs + 64 * k)), u->sc[k]);
    const __m512 v = dt == KILN_DT_Q6_K ? _mm512_mul_ps(_mm512_cvtepi32_ps(isum), d) /* Q4_K / Q5_K: minus the mins term */
                                        : _mm512_fmsub_ps(_mm512_cvtepi32_ps(isum), d,
                                                          _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_zextsi256_si512(g)), dmin));
    return _mm512_fmadd_ps(v, _mm512_set1_ps(y->d), acc);
}

/* One row (w, nb super-blocks) x T tokens (x: the first one's Q8_K blocks, the next xb bytes on), into
 * y[t * M]. Called with T a constant, the accumulators stay in registers. */
INL void row_tile(int dt, int T, float *y, int M, const char *w, int nb, const char *x, size_t xb) {
    const size_t bsz = kern_formats[dt].block_bytes;
    __m512 acc[KQ_TOKENS];
#pragma GCC unroll 8
    for (int t = 0; t < KQ_TOKENS; t++) acc[t] = _mm512_setzero_ps(); /* all: GCC cannot see T bound its reads */
    for (int i = 0; i < nb; i++) {
        const char *blk = w + (size_t)i * bsz;
        kq_super u;
        if (dt == KILN_DT_Q6_K) unpack_q6_k((const block_q6_K *)blk, &u);
        else unpack_k4(kq_k4_fields(dt, blk), &u);
        const __m512 d = _mm512_set1_ps(u.d), dmin = _mm512_set1_ps(u.dmin);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[t] = super_dot(dt, &u, (const block_q8_K *)(x + (size_t)t * xb) + i, d, dmin, acc[t]);
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) y[(size_t)t * M] = _mm512_reduce_add_ps(acc[t]);
}

/* ---- Q4_K in 16-row panels (panel_q4_k, kernels.h): prefill and decode ----
 *
 * Per panel block (one super-block of 16 rows) and token: for each sub-block j, 8 vpdpbusd of a 64-byte
 * group (16 rows x 4 unsigned nibbles) against a broadcast of the token's 4 matching activation bytes give
 * the 16 rows' exact int32 sums, multiplied by the rows' 6-bit scales (vpmulld) into the super-block's
 * int32 sum; the mins term sum_j min_j * (bsum_2j + bsum_2j+1) is one vpdpwssd per sub-block (min_j in
 * both int16 halves against the token's bsum pair); then d * d_x and dmin * d_x once per super-block. The
 * 16 rows come out as one vector (no horizontal sums) and a GEMV reads the matrix as one stream. The
 * integer sums are the reference's exactly; only the f32 scaling rounds in another order.
 *
 * Decoding (fewer than 4 tokens), a software prefetch of the panel block 4 ahead, one per line read (Q4_K:
 * its 32 quant lines; Q6_K: 4 of its 53 lines per group). The hardware streamer alone left these reads
 * short of memory speed on Zen 5 (one thread, `matmul_bench l2 q4_k 65536 2048 4`, interleaved: Q4_K
 * 24.9-27.9 GB/s without, 31.4-32.5 with; Q6_K 24.7-27.7 against 30.3-32.0; kiln bench tg64 of the
 * Q4_K_M GGUF, 4 rounds, median 41.7 -> 51.5 tok/s, of the Q6_K GGUF 33.4 -> 38.6). Earlier, a prefetcht0
 * loop ahead of each block (36 per 2304 bytes, an earlier host) had slowed the GEMV: 8 matrices 8192 x 2048
 * from memory, 2 threads, Q4_K panels 28.4 / 41.4 GB/s with it, 67.5 / 66.3 without; prefill keeps none
 * (its passes over a panel after the first read it from L2). */
#define KP_TOKENS 8    /* tokens sharing each weight vector */
typedef int32_t kp_i32 __attribute__((may_alias)); /* 4 activation bytes / 2 bsums read as one dword */

/* The 16 rows' sub-block scales (sc[0]: j = 0..3, sc[1]: j = 4..7, byte 16 * (j % 4) + row) and mins
 * (mn), unpacked from the transposed scale bytes as kern_scale_min_k4_words does for one row. */
INL void kp_scales(const panel_q4_k *p, __m512i sc[2], __m512i mn[2]) {
    const __m512i a = _mm512_loadu_si512(p->scales[0]), b = _mm512_loadu_si512(p->scales[4]),
                  c = _mm512_loadu_si512(p->scales[8]);
    const __m512i m6 = _mm512_set1_epi8(63), m4 = _mm512_set1_epi8(15), m2 = _mm512_set1_epi8(3);
    sc[0] = _mm512_and_si512(a, m6), mn[0] = _mm512_and_si512(b, m6);
    sc[1] = _mm512_or_si512(_mm512_and_si512(c, m4), _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(a, 6), m2), 4));
    mn[1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(c, 4), m4),
                            _mm512_slli_epi16(_mm512_and_si512(_mm512_srli_epi16(b, 6), m2), 4));
}

/* Sub-block j's 16 bytes of v (kp_scales' sc or mn: byte 16 * (j % 4) + row of v[j / 4]) into the 16
 * rows' dword lanes: that 128-bit lane copied to all four (a switch: the shuffle takes a constant), then
 * vpshufb by idx (kp_row_index): 2 ops, where extract + zero-extend + shift + or made the mins' pairs in 4. */
INL __m512i kp_rows(const __m512i v[2], int j, __m512i idx) {
    const __m512i h = v[j >> 2];
    switch (j & 3) {
    case 0: return _mm512_shuffle_epi8(_mm512_shuffle_i32x4(h, h, 0x00), idx);
    case 1: return _mm512_shuffle_epi8(_mm512_shuffle_i32x4(h, h, 0x55), idx);
    case 2: return _mm512_shuffle_epi8(_mm512_shuffle_i32x4(h, h, 0xaa), idx);
    default: return _mm512_shuffle_epi8(_mm512_shuffle_i32x4(h, h, 0xff), idx);
    }
}
/* kp_rows' vpshufb index: dword lane i takes byte i, zero-extended (pair false) or in both int16 halves. */
INL __m512i kp_row_index(bool pair) {
    const __m512i i = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return pair ? _mm512_or_si512(_mm512_or_si512(i, _mm512_slli_epi32(i, 16)), _mm512_set1_epi32((int)0x80008000u))
                : _mm512_or_si512(i, _mm512_set1_epi32((int)0x80808000u));
}

/* One Q4_K panel block x T tokens (xt[t]: token t's Q8_K block): facc[t] += the 16 rows' dots. With
 * few tokens per weight vector (decode) an odd sub-block's high nibbles are dotted in place (w & 0xf0, 16x
 * the value: at most 4 * 240 * 128 * 8 = 983040 a sub-block, exact in int32) and its sum shifted down
 * (exact: a multiple of 16), one op per vector instead of a shift and a mask. */
INL void kp_block_q4_k(int T, const panel_q4_k *pb, const block_q8_K *const *xt, __m512 *facc) {
    const bool in_place = T < 4;
    const __m512i m4 = _mm512_set1_epi8(0x0f), m4h = _mm512_set1_epi8((char)0xf0);
    const __m512i by_byte = kp_row_index(false), by_pair = kp_row_index(true);
    __m512i sc[2], mn[2], isum[KP_TOKENS];
    kp_scales(pb, sc, mn);
    /* the mins term first: its accumulators are free again before the main sums need theirs */
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) isum[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        const __m512i mw2 = kp_rows(mn, j, by_pair);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
            isum[t] = _mm512_dpwssd_epi32(isum[t], mw2, _mm512_set1_epi32(*(const kp_i32 *)&xt[t]->bsums[2 * j]));
    }
    const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)pb->dmin)),
                 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)pb->d));
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        facc[t] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(dmin, _mm512_set1_ps(xt[t]->d)), facc[t]);
        isum[t] = _mm512_setzero_si512();
    }
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        const bool hi = j & 1;
        __m512i acc[KP_TOKENS];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) acc[t] = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m512i raw = _mm512_loadu_si512(pb->qs[j >> 1][g]);
            if (in_place && !hi) _mm_prefetch((const char *)pb->qs[j >> 1][g] + KP_PF_BLOCKS * sizeof(panel_q4_k), _MM_HINT_T0);
            const __m512i w = !hi ? _mm512_and_si512(raw, m4)
                              : in_place ? _mm512_and_si512(raw, m4h) : _mm512_and_si512(_mm512_srli_epi16(raw, 4), m4);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++)
                acc[t] = _mm512_dpbusd_epi32(acc[t], w, _mm512_set1_epi32(*(const kp_i32 *)&xt[t]->qs[32 * j + 4 * g]));
        }
        const __m512i s = kp_rows(sc, j, by_byte);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
            isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(hi && in_place ? _mm512_srai_epi32(acc[t], 4) : acc[t], s));
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++)
        facc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d, _mm512_set1_ps(xt[t]->d)), facc[t]);
}

/* ---- Q6_K in 16-row panels (panel_q6_k, kernels.h) ----
 *
 * As Q4_K's: per group j of 16 values and token, 4 vpdpbusd of 16 rows x 4 stored q (0..63) against a
 * broadcast of the token's 4 matching activation bytes, started from -32 * bsum_j (the stored q is the
 * value + 32: so the sum is the rows' exact int32 dot of the group), multiplied by the rows' int8
 * scales (vpmulld) into the super-block's int32 sum; d * d_x once per super-block. The four operands come
 * from a triple of vectors: three are a mask each, the fourth gathers the 2-bit pieces of the three
 * (kp_q6_fourth). At one token that is ~17 512-bit ALU ops per group (~280 per 16 rows' super-block) where
 * the row kernel (unpack_q6_k, super_dot) takes ~65 per row's super-block (~1040 for 16 rows), on the 2
 * ports this core issues them on. The integer sums are the reference's exactly; only the f32 scaling
 * rounds in another order. Same-run figures on a heavily shared host (load ~7 on 2 cores, so only the
 * ratios mean anything): one thread, a 512 x 2048 matrix from L2 (matmul_bench l2), row kernel 12.2 GB/s,
 * panels 31.2; the 1B model's matmuls from memory, 2 threads (matmul_bench q6_k 2 0 16 1 3), 8.6 / 8.3 /
 * 7.9 GB/s (44-47% of the probe) before, 13.0 / 11.2 / 12.1 (62-70%) after. On Zen 4 the first panel
 * layout (three arrays per panel, kernels.h) read memory slower than the row kernel it replaced
 * (matmul_bench q6_k 2 0 32 1 3, interleaved: 20.4 / 19.2 / 20.2 GB/s against 25.8 / 25.7 / 23.5) though
 * twice as fast from L2; one block after another reads 24.7 / 24.9 / 26.0 (L2: 37 GB/s against the
 * three arrays' 44, the row kernel's 21). */

/* The fourth operand of a triple: bits 6..7 of a, b, c as bits 0..1, 2..3, 4..5. vpsrlw shifts 16-bit
 * lanes, so a low byte takes in its neighbour's low bits: the selects keep only the bits each piece owns
 * and the last mask clears what c's neighbour left in bits 6..7. */
INL __m512i kp_q6_fourth(__m512i a, __m512i b, __m512i c) {
    const __m512i lo2 = _mm512_set1_epi8(0x03), lo4 = _mm512_set1_epi8(0x0f), m6 = _mm512_set1_epi8(0x3f);
    const __m512i ab = _mm512_ternarylogic_epi32(lo2, _mm512_srli_epi16(a, 6), _mm512_srli_epi16(b, 4), 0xca); /* lo2 ? a : b */
    return _mm512_and_si512(_mm512_ternarylogic_epi32(lo4, ab, _mm512_srli_epi16(c, 2), 0xca), m6);
}

/* One Q6_K panel block x T tokens (xt[t]: token t's Q8_K block): facc[t] += the 16 rows' dots. */
INL void kp_block_q6_k(int T, panel_q6_k pb, const block_q8_K *const *xt, __m512 *facc) {
    const __m512i m6 = _mm512_set1_epi8(0x3f);
    _Alignas(64) int32_t corr[KP_TOKENS][QK_K / 16]; /* -32 * bsum_j, broadcast as each group's start */
    __m512i isum[KP_TOKENS];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) {
        const __m512i bs = _mm512_cvtepi16_epi32(_mm256_loadu_si256((const __m256i *)xt[t]->bsums));
        _mm512_store_si512(corr[t], _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(bs, 5)));
        isum[t] = _mm512_setzero_si512();
    }
#pragma GCC unroll 16
    for (int j = 0; j < QK_K / 16; j++) {
        const uint8_t *q = pb.qs + 192 * j;
        if (T < 4) /* 4 of the block's 53 lines per group: all of them over the 16 */
            for (int l = 0; l < 4; l++)
                _mm_prefetch((const char *)pb.qs + KP_PF_BLOCKS * kern_panel_block_bytes(KILN_DT_Q6_K) + 64 * (4 * j + l), _MM_HINT_T0);
        const __m512i a = _mm512_loadu_si512(q), b = _mm512_loadu_si512(q + 64), c = _mm512_loadu_si512(q + 128);
        const __m512i w[4] = {_mm512_and_si512(a, m6), _mm512_and_si512(b, m6), _mm512_and_si512(c, m6), kp_q6_fourth(a, b, c)};
        const __m512i s = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(pb.scales + KERN_PANEL * j)));
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            __m512i acc = _mm512_set1_epi32(corr[t][j]);
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++)
                acc = _mm512_dpbusd_epi32(acc, w[g], _mm512_set1_epi32(*(const kp_i32 *)&xt[t]->qs[16 * j + 4 * g]));
            isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(acc, s));
        }
    }
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)pb.d));
#pragma GCC unroll 8
    for (int t = 0; t < T; t++)
        facc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d, _mm512_set1_ps(xt[t]->d)), facc[t]);
}

/* ---- both formats' panels ---- */

/* The panel of m holding row r x T tokens (T <= KP_TOKENS; x: the first token's Q8_K blocks, the next
 * xb bytes on): writes y[t * M + 0..16). */
INL void kp_tile(int dt, int T, const kiln_mat *m, int r, const char *x, size_t xb, float *y, int M) {
    const int nb = m->cols / QK_K;
    __m512 facc[KP_TOKENS];
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) facc[t] = _mm512_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const block_q8_K *xt[KP_TOKENS];
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) xt[t] = (const block_q8_K *)(x + (size_t)t * xb) + b;
        if (dt == KILN_DT_Q6_K) kp_block_q6_k(T, kern_panel_q6_k(m, r, b), xt, facc);
        else kp_block_q4_k(T, (const panel_q4_k *)kern_panel_block(m, r, b), xt, facc);
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; t++) _mm512_storeu_ps(y + (size_t)t * M, facc[t]);
}

/* n tokens over one panel, KP_TOKENS at a time. */
INL void kp_tokens(int dt, const kiln_mat *m, int r, const char *x, size_t xb, int n, float *y, int M) {
    int t = 0;
    for (; t + KP_TOKENS <= n; t += KP_TOKENS) kp_tile(dt, KP_TOKENS, m, r, x + (size_t)t * xb, xb, y + (size_t)t * M, M);
    x += (size_t)t * xb, y += (size_t)t * M;
    switch (n - t) { /* constant T: the compiler keeps accumulators in registers */
#define TAIL(T) case T: kp_tile(dt, T, m, r, x, xb, y, M); break;
    TAIL(1) TAIL(2) TAIL(3) TAIL(4) TAIL(5) TAIL(6) TAIL(7)
#undef TAIL
    default: break;
    }
}

#define KQ_ISA avx512
#include "kernels/kquants_x86_driver.h"

void kern_gemm_q4_k_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    gemm_panels(KILN_DT_Q4_K, y, x, n, m, r0, r1, tmp);
}
void kern_gemm_q6_k_avx512(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    gemm_panels(KILN_DT_Q6_K, y, x, n, m, r0, r1, tmp);
}
