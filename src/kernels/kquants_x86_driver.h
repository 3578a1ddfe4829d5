/* kquants_x86_driver.h — the loop over rows and token tiles, and the Q5_K / Q6_K entry points, that the AVX2 and
 * AVX-512 K-quant kernel files share: included at the end of each, after it defines KQ_TOKENS (the tile),
 * KQ_ISA (the entry points' suffix) and row_tile(dt, T, y, M, w, nb, x, xb) (one row x T tokens). */
#ifndef KILN_KQUANTS_X86_DRIVER_H
#define KILN_KQUANTS_X86_DRIVER_H

#define KQ_CAT2(a, b) a##b
#define KQ_CAT(a, b) KQ_CAT2(a, b)

/* rows plain rows from w (rb bytes apart) x n tokens, into y[t * M + 0..rows); x holds each token's Q8_K
 * blocks, xb bytes apart. Tokens go in blocks of ~256 KiB of activations, so each row's pass over them
 * stays in L2 rather than L3 (the driver already sizes the row chunk to stay in L2); a tile of KQ_TOKENS
 * (or one, decoding) is a constant size, so its accumulators stay in registers. */
INL void gemm_kq_rows(int dt, float *y, int M, const void *x, int n, const char *w, int rows, int cols) {
    const int nb = cols / QK_K;
    const size_t rb = kern_row_bytes(dt, cols), xb = kern_act_row_bytes(KERN_ACT_Q8_K, cols);
    int tb = (int)((256u << 10) / xb) / KQ_TOKENS * KQ_TOKENS;
    tb = tb < KQ_TOKENS ? KQ_TOKENS : tb;
    for (int b0 = 0; b0 < n; b0 += tb)
        for (int r = 0; r < rows; r++)
            for (int t0 = b0; t0 < MIN(n, b0 + tb); t0 += KQ_TOKENS) {
                const int T = MIN(KQ_TOKENS, MIN(n, b0 + tb) - t0);
                float *yt = y + (size_t)t0 * M + r;
                const char *xt = (const char *)x + (size_t)t0 * xb, *wr = w + (size_t)r * rb;
                if (T == KQ_TOKENS) row_tile(dt, KQ_TOKENS, yt, M, wr, nb, xt, xb);
                else if (T == 1) row_tile(dt, 1, yt, M, wr, nb, xt, xb); /* decode */
                else row_tile(dt, T, yt, M, wr, nb, xt, xb);
            }
}

/* Rows [r0, r1) of m: rows in panels (Q4_K's and Q6_K's, kernels.h) gathered one at a time into tmp, plain rows in
 * place. */
INL void gemm_kq(int dt, float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    const int pr = kern_panel_rows(m), M = m->rows;
    int r = r0;
    for (; r < r1 && r < pr; r++)
        gemm_kq_rows(dt, y + r, M, x, n, kern_qrow_plain(m, r, kern_tmp_row(tmp, m->cols)), 1, m->cols);
    if (r < r1) gemm_kq_rows(dt, y + r, M, x, n, kern_qrow(m, r), r1 - r, m->cols);
}

/* (the Q4_K and Q6_K entry points are each file's: AVX-512 has panel kernels for them) */
void KQ_CAT(kern_gemm_q5_k_, KQ_ISA)(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    gemm_kq(KILN_DT_Q5_K, y, x, n, m, r0, r1, tmp);
}

#endif
