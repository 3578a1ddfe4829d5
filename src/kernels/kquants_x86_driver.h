/* kquants_x86_driver.h — the loops over rows, panels and token tiles, and the Q5_K entry point, that the AVX2
 * and AVX-512 K-quant kernel files share: included at the end of each, after it defines KQ_TOKENS (the row
 * kernel's tile), KQ_ISA (the entry points' suffix), row_tile(dt, T, y, M, w, nb, x, xb) (one plain row x T
 * tokens), and for the formats it reads in panels KP_TOKENS and kp_tokens(dt, m, r, x, xb, n, y, M) (the
 * panel holding row r x n tokens into y[t * M + 0..16)). */
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

/* Whole panels in [r0, r1) through kp_tokens, tokens in blocks of ~256 KiB of activations so that they and
 * the chunk's panels stay in L2; the rest (a direct caller's ragged ends, the plain rows after the last
 * panel) through the row kernel, panel rows gathered into tmp. */
INL void gemm_panels(int dt, float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    const int M = m->rows, pr = kern_panel_rows(m);
    const int a = (r0 + KERN_PANEL - 1) / KERN_PANEL * KERN_PANEL, e = MIN(r1, pr) / KERN_PANEL * KERN_PANEL;
    if (a >= e) {
        gemm_kq(dt, y, x, n, m, r0, r1, tmp);
        return;
    }
    if (r0 < a) gemm_kq(dt, y, x, n, m, r0, a, tmp);
    const size_t xb = kern_act_row_bytes(KERN_ACT_Q8_K, m->cols);
    int tb = (int)((256u << 10) / xb) / KP_TOKENS * KP_TOKENS;
    tb = tb < KP_TOKENS ? KP_TOKENS : tb;
    for (int t0 = 0; t0 < n; t0 += tb)
        for (int r = a; r < e; r += KERN_PANEL)
            kp_tokens(dt, m, r, (const char *)x + (size_t)t0 * xb, xb, MIN(tb, n - t0), y + (size_t)t0 * M + r, M);
    if (e < r1) gemm_kq(dt, y, x, n, m, e, r1, tmp);
}

/* (the Q4_K and Q6_K entry points are each file's: which of them it reads in panels is its own) */
void KQ_CAT(kern_gemm_q5_k_, KQ_ISA)(float *y, const void *x, int n, const kiln_mat *m, int r0, int r1, void *tmp) {
    gemm_kq(KILN_DT_Q5_K, y, x, n, m, r0, r1, tmp);
}

#endif
