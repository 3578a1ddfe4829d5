/* quant.c — Q8_0 / Q4_0 quantisation (llama.cpp's reference arithmetic) and format conversion of rows.
 *
 * The rounding matters: a model quantised here must be bit-identical to llama.cpp's
 * quantize_row_q8_0_ref / quantize_row_q4_0_ref so figures compare like with like. */
#include "kernels/quant.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/kquants.h"

void quantize_row_q8_0_ref(const float *x, block_q8_0 *y, int k) {
    for (int i = 0; i < k / QK; i++, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        y[i].d = kern_f32_to_f16(d);
        for (int j = 0; j < QK; j++) y[i].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

void quantize_row_q4_0_ref(const float *x, block_q4_0 *y, int k) {
    for (int i = 0; i < k / QK; i++, x += QK) {
        float amax = 0.0f, max = 0.0f; /* max keeps its sign: the scale maps it to -8 exactly */
        for (int j = 0; j < QK; j++)
            if (amax < fabsf(x[j])) {
                amax = fabsf(x[j]);
                max = x[j];
            }
        const float d = max / -8.0f, id = d ? 1.0f / d : 0.0f;
        y[i].d = kern_f32_to_f16(d);
        for (int j = 0; j < QK / 2; j++) {
            int8_t a = (int8_t)(x[j] * id + 8.5f), b = (int8_t)(x[QK / 2 + j] * id + 8.5f);
            uint8_t xi0 = a < 15 ? (uint8_t)a : 15, xi1 = b < 15 ? (uint8_t)b : 15;
            y[i].qs[j] = (uint8_t)(xi0 | (xi1 << 4));
        }
    }
}

void dequantize_row_q8_0(const block_q8_0 *x, float *y, int k) {
    for (int i = 0; i < k / QK; i++) {
        const float d = kern_f16_to_f32(x[i].d);
        for (int j = 0; j < QK; j++) y[i * QK + j] = d * (float)x[i].qs[j];
    }
}

void dequantize_row_q4_0(const block_q4_0 *x, float *y, int k) {
    for (int i = 0; i < k / QK; i++) {
        const float d = kern_f16_to_f32(x[i].d);
        for (int j = 0; j < QK / 2; j++) {
            y[i * QK + j] = d * (float)((x[i].qs[j] & 0x0f) - 8);
            y[i * QK + j + QK / 2] = d * (float)((x[i].qs[j] >> 4) - 8);
        }
    }
}

int32_t kern_q8_0_block_dot(const void *wblk, const int8_t *x) {
    const block_q8_0 *w = wblk;
    int32_t isum = 0;
    for (int i = 0; i < QK; i++) isum += w->qs[i] * x[i];
    return isum;
}

int32_t kern_q4_0_block_dot(const void *wblk, const int8_t *x) {
    const block_q4_0 *w = wblk;
    int32_t isum = 0;
    for (int i = 0; i < QK / 2; i++) isum += ((w->qs[i] & 0x0f) - 8) * x[i] + ((w->qs[i] >> 4) - 8) * x[i + QK / 2];
    return isum;
}

void quantize_act_ref(const float *x, act_q8 *y, int k, int c) {
    for (int i = 0; i < k / QK; i++, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        y[i].d = kern_f16_to_f32(kern_f32_to_f16(d));
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            y[i].qs[j] = (int8_t)roundf(x[j] * id);
            sum += y[i].qs[j];
        }
        y[i].corr = -c * sum;
    }
}

struct convert_job {
    void *dst;
    const void *src;
    kiln_dtype dst_dt, src_dt;
    int rows, cols;
    kern_layout layout;
    int failed[64 * 16]; /* one flag per thread, a cache line apart */
};

/* ---- the panel layout (kernels.h) ---- */

/* Row i's block inside panel block p: its scale is p->d[i], its quant group g is p->qs[g][i]. */
static void panel_copy(kiln_dtype dt, kern_panel *p, int i, char *blk, bool to_panel) {
    char *d = (char *)&p->d[i];
    if (to_panel) memcpy(d, blk, sizeof p->d[i]);
    else memcpy(blk, d, sizeof p->d[i]);
    for (int g = 0; g < kern_formats[dt].panel_groups; g++) {
        char *q = (char *)p->qs[g][i], *b = blk + sizeof p->d[i] + sizeof p->qs[g][i] * (size_t)g;
        if (to_panel) memcpy(q, b, sizeof p->qs[g][i]);
        else memcpy(b, q, sizeof p->qs[g][i]);
    }
}

/* n bytes between a panel's place and a block's, in the direction asked. */
static void panel_move(void *panel, void *blk, size_t n, bool to_panel) {
    if (to_panel) memcpy(panel, blk, n);
    else memcpy(blk, panel, n);
}

/* Q4_K (panel_q4_k): row i's d, dmin, scale bytes and quant groups. */
static void panel_copy_q4_k(panel_q4_k *p, int i, char *blk, bool to_panel) {
    block_q4_K *b = (block_q4_K *)blk;
    panel_move(&p->d[i], &b->d, sizeof b->d, to_panel);
    panel_move(&p->dmin[i], &b->dmin, sizeof b->dmin, to_panel);
    for (int k = 0; k < K_SCALE_SIZE; k++) panel_move(&p->scales[k][i], &b->scales[k], 1, to_panel);
    for (int c = 0; c < QK_K / 64; c++)
        for (int g = 0; g < 8; g++) panel_move(p->qs[c][g][i], &b->qs[32 * c + 4 * g], sizeof p->qs[c][g][i], to_panel);
}

/* Q6_K (panel_q6_k): row i's d, scales and quants (the triples, kernels.h). */
static void panel_copy_q6_k(panel_q6_k p, int i, char *blk, bool to_panel) {
    block_q6_K *b = (block_q6_K *)blk;
    panel_move(&p.d[i], &b->d, sizeof b->d, to_panel);
    for (int j = 0; j < QK_K / 16; j++) panel_move(&p.scales[KERN_PANEL * j + i], &b->scales[j], 1, to_panel);
    uint8_t q[QK_K] = {0};
    if (to_panel) kern_q6_k_levels(b, q);
    for (int j = 0; j < QK_K / 16; j++)
        for (int v = 0; v < 3; v++)
            for (int k = 0; k < 4; k++) {
                uint8_t *byte = &p.qs[64 * (3 * j + v) + 4 * i + k];
                const int a = 16 * j + 4 * v + k, c = 16 * j + 12 + k; /* c: the value whose bits 2v..2v+1 ride along */
                if (to_panel) *byte = (uint8_t)(q[a] | ((q[c] >> (2 * v)) & 3) << 6);
                else q[a] = *byte & 63, q[c] = (uint8_t)(q[c] | (*byte >> 6) << (2 * v));
            }
    if (!to_panel) kern_q6_k_pack(q, b);
}

/* Row r's block b <-> its place in m's panel. */
static void panel_block_copy(const kiln_mat *m, int r, int b, char *blk, bool to_panel) {
    if (m->dt == KILN_DT_Q6_K) {
        panel_copy_q6_k(kern_panel_q6_k(m, r, b), r % KERN_PANEL, blk, to_panel);
        return;
    }
    void *p = (void *)kern_panel_block(m, r, b);
    if (m->dt == KILN_DT_Q4_K) panel_copy_q4_k(p, r % KERN_PANEL, blk, to_panel);
    else panel_copy(m->dt, p, r % KERN_PANEL, blk, to_panel);
}

void kern_qblock_get(const kiln_mat *m, int r, int b, void *blk) {
    const size_t bsz = kern_formats[m->dt].block_bytes;
    if (r >= kern_panel_rows(m)) memcpy(blk, kern_qrow(m, r) + (size_t)b * bsz, bsz);
    else panel_block_copy(m, r, b, blk, false);
}

void kern_qblock_put(const kiln_mat *m, int r, int b, const void *blk) {
    const size_t bsz = kern_formats[m->dt].block_bytes;
    if (r >= kern_panel_rows(m)) memcpy((char *)kern_qrow(m, r) + (size_t)b * bsz, blk, bsz);
    else panel_block_copy(m, r, b, (char *)blk, true);
}

const char *kern_qrow_plain(const kiln_mat *m, int r, char *buf) {
    if (r >= kern_panel_rows(m)) return kern_qrow(m, r);
    const size_t bsz = kern_formats[m->dt].block_bytes;
    for (int b = 0; b < m->cols / kern_formats[m->dt].block_values; b++) kern_qblock_get(m, r, b, buf + (size_t)b * bsz);
    return buf;
}

static void convert_part(void *arg, int ith, int nth) {
    struct convert_job *j = arg;
    int lo, hi;
    kiln_split_range(j->rows, ith, nth, &lo, &hi);
    float *tmp = malloc(sizeof(float) * (size_t)j->cols);
    if (!tmp) {
        j->failed[(ith % 64) * 16] = 1;
        return;
    }
    size_t sb = kern_row_bytes(j->src_dt, j->cols), db = kern_row_bytes(j->dst_dt, j->cols);
    const kiln_mat dst = {j->dst, j->dst_dt, j->rows, j->cols, j->layout};
    const int panel_rows = kern_panel_rows(&dst);
    char *plain = panel_rows ? malloc(db) : NULL; /* one quantised row, then spread over its panel */
    if (panel_rows && !plain) j->failed[(ith % 64) * 16] = 1;
    /* same format (a GGUF's quantised blocks into panels): the bytes move as they are */
    const bool same = j->src_dt == j->dst_dt;
    for (int r = lo; r < hi && (!panel_rows || plain); r++) {
        const char *src = (const char *)j->src + sb * r;
        char *out = r >= panel_rows ? (char *)j->dst + db * r : plain;
        if (same) memcpy(out, src, db);
        else {
            kern_row_to_f32(tmp, src, j->src_dt, j->cols);
            kern_row_from_f32(out, j->dst_dt, tmp, j->cols);
        }
        if (r >= panel_rows) continue;
        const size_t bsz = kern_formats[j->dst_dt].block_bytes;
        for (int b = 0; b < j->cols / kern_formats[j->dst_dt].block_values; b++) kern_qblock_put(&dst, r, b, plain + b * bsz);
    }
    free(plain);
    free(tmp);
}

int kern_convert_mat(kiln_pool *pool, void *dst, kiln_dtype dst_dt, const void *src, kiln_dtype src_dt, int rows,
                     int cols, kern_layout layout) {
    struct convert_job *j = calloc(1, sizeof *j);
    if (!j) return -1;
    *j = (struct convert_job){.dst = dst, .src = src, .dst_dt = dst_dt, .src_dt = src_dt, .rows = rows, .cols = cols,
                               .layout = kern_has_panels(dst_dt) ? layout : KERN_LAYOUT_PLAIN};
    kiln_pool_run(pool, convert_part, j);
    int failed = 0;
    for (int i = 0; i < 64; i++) failed |= j->failed[i * 16];
    free(j);
    return failed ? -1 : 0;
}
