/* kquants_x86_driver.h — the loop over rows and token tiles, and the three entry points, that the AVX2 and
 * AVX-512 K-quant kernel files share: included at the end of each, after it defines KQ_TOKENS (the tile),
 * KQ_ISA (the entry points' suffix) and row_tile(dt, T, y, M, w, nb, x, xb) (one row x T tokens). */
#ifndef KILN_KQUANTS_X86_DRIVER_H
#define KILN_KQUANTS_X86_DRIVER_H

#define KQ_CAT2(a, b) a##b
#define KQ_CAT(a, b) KQ_CAT2(a, b)

/* Rows [r0, r1) x n tokens; x holds each token's Q8_K blocks, xb bytes apart. Tokens go in blocks of
 * ~256 KiB of activations, so each row's pass over them stays in L2 rather than L3 (the driver already
 * sizes the row chunk to stay in L2); a tile of KQ_TOKENS (or one, decoding) is a constant size, so its
 * accumulators stay in registers. */
INL void gemm_kq(int dt, float *y, const void *x, int n, const kiln_mat *m, int r0, int r1) {
    const int nb = m->cols / QK_K, M = m->rows;
    const size_t rb = kern_row_bytes(dt, m->cols), xb = kern_act_row_bytes(KERN_ACT_Q8_K, m->cols);
    int tb = (int)((256u << 10) / xb) / KQ_TOKENS * KQ_TOKENS;
    tb = tb < KQ_TOKENS ? KQ_TOKENS : tb;
    for (int b0 = 0; b0 < n; b0 += tb)
        for (int r = r0; r < r1; r++)
            for (int t0 = b0; t0 < MIN(n, b0 + tb); t0 += KQ_TOKENS) {
                const int T = MIN(KQ_TOKENS, MIN(n, b0 + tb) - t0);
                float *yt = y + (size_t)t0 * M + r;
                const char *xt = (const char *)x + (size_t)t0 * xb, *w = (const char *)m->data + (size_t)r * rb;
                if (T == KQ_TOKENS) row_tile(dt, KQ_TOKENS, yt, M, w, nb, xt, xb);
                else if (T == 1) row_tile(dt, 1, yt, M, w, nb, xt, xb); /* decode */
                else row_tile(dt, T, yt, M, w, nb, xt, xb);
            }
}

void KQ_CAT(kern_gemm_q4_k_, KQ_ISA)(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    (void)tmp, gemm_kq(KILN_DT_Q4_K, y, x, n, m, r0, r1);
}
void KQ_CAT(kern_gemm_q5_k_, KQ_ISA)(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    (void)tmp, gemm_kq(KILN_DT_Q5_K, y, x, n, m, r0, r1);
}
void KQ_CAT(kern_gemm_q6_k_, KQ_ISA)(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    (void)tmp, gemm_kq(KILN_DT_Q6_K, y, x, n, m, r0, r1);
}

#endif
