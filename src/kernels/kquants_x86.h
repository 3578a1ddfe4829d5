/* kquants_x86.h — unpacking Q4_K / Q5_K / Q6_K quants into unsigned bytes in value order, 32 values a ymm:
 * the steps the AVX2 and AVX-512 K-quant kernels share (include only from those files, after simd_x86.h).
 * Q4_K: 0..15, Q5_K: 0..31, Q6_K: 0..63 (the stored q, which is the value + 32). */
#ifndef KILN_KQUANTS_X86_H
#define KILN_KQUANTS_X86_H

#include <immintrin.h>

#include "kernels/kquants.h"
#include "kernels/simd_x86.h"
#include "kiln.h"

/* How many panel blocks ahead the panel kernels' decode prefetches (measured: matmul_kquants_avx512.c). */
#define KP_PF_BLOCKS 4

/* Bit `bit` of each byte of v, moved to bit 4. */
INL __m256i kq_bit_to_16(__m256i v, int bit) {
    return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(v, bit), _mm256_set1_epi8(1)), 4);
}

/* A Q4_K or Q5_K super-block's fields (qh NULL for Q4_K). */
typedef struct {
    const uint8_t *qs, *qh, *scales;
    uint16_t d, dmin;
} kq_k4_block;

INL kq_k4_block kq_k4_fields(int dt, const char *blk) {
    const block_q4_K *b4 = (const block_q4_K *)blk;
    const block_q5_K *b5 = (const block_q5_K *)blk;
    if (dt == KILN_DT_Q5_K) return (kq_k4_block){b5->qs, b5->qh, b5->scales, b5->d, b5->dmin};
    return (kq_k4_block){b4->qs, NULL, b4->scales, b4->d, b4->dmin};
}

/* Q4_K / Q5_K values 64k..64k+31 (lo: low nibbles of qs[32k..32k+32)) and the next 32 (hi: high nibbles);
 * Q5_K (qh not NULL) adds qh's bit 2k to lo and bit 2k+1 to hi as bit 4. */
INL void kq_k4_pair(const uint8_t *qs, const uint8_t *qh, int k, __m256i *lo, __m256i *hi) {
    const __m256i lo4 = _mm256_set1_epi8(0x0f), v = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
    *lo = _mm256_and_si256(v, lo4), *hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
    if (qh) {
        const __m256i h = _mm256_loadu_si256((const __m256i *)qh);
        *lo = _mm256_or_si256(*lo, kq_bit_to_16(h, 2 * k)), *hi = _mm256_or_si256(*hi, kq_bit_to_16(h, 2 * k + 1));
    }
}

/* Q6_K value bits 4..5 from qh's bit pair `pair`, moved to bits 4..5. */
INL __m256i kq_pair_to_45(__m256i qh, int pair) {
    return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * pair), _mm256_set1_epi8(3)), 4);
}

/* Q6_K values 128h..128h+127 as 4 ymm: ql[0..32) low nibbles, ql[32..64) low, ql[0..32) high, ql[32..64)
 * high (of the half's 64 ql bytes), each with its qh bit pair. */
INL void kq_q6_quarters(const block_q6_K *b, int h, __m256i out[4]) {
    const __m256i lo4 = _mm256_set1_epi8(0x0f);
    const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h));
    const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32));
    const __m256i qh = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
    out[0] = _mm256_or_si256(_mm256_and_si256(ql0, lo4), kq_pair_to_45(qh, 0));
    out[1] = _mm256_or_si256(_mm256_and_si256(ql1, lo4), kq_pair_to_45(qh, 1));
    out[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), lo4), kq_pair_to_45(qh, 2));
    out[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), lo4), kq_pair_to_45(qh, 3));
}

#endif
