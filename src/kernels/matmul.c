/* matmul.c — kern_matmul: ISA choice, activation quantisation, and work split over the pool.
 *
 * Work unit = a chunk of weight rows (a multiple of 16, so two threads never write the same 64-byte
 * line of y). Threads take chunks from an atomic counter rather than a fixed split: on a machine
 * shared with other processes a statically split thread that gets descheduled would stall the step.
 * Inside a chunk the ISA kernel tiles over tokens, so each weight row is read from memory once per
 * call (decode: GEMV; prefill: GEMM reusing a weight tile for every token). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/matmul.h"
#include "runtime/cpu.h"

static const kern_isa *active;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int isa_supported(const kern_isa *isa) {
    const kiln_cpu *c = kiln_cpu_features();
    if (isa == &kern_isa_amx) return isa_supported(&kern_isa_avx512) && c->avx512bf16 && c->amx_bf16;
    if (isa == &kern_isa_avx512) return c->avx512f && c->avx512bw && c->avx512vl && c->avx512vnni && c->fma && c->f16c;
    if (isa == &kern_isa_avx2) return c->avx2 && c->fma && c->f16c;
    return 1;
}

static const kern_isa *isa_by_name(const char *name) {
    const kern_isa *all[] = {&kern_isa_scalar, &kern_isa_avx2, &kern_isa_avx512, &kern_isa_amx};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++)
        if (name && strcmp(name, all[i]->name) == 0) return all[i];
    return NULL;
}

const char *kern_best_isa(void) {
    if (isa_supported(&kern_isa_amx)) return "amx";
    if (isa_supported(&kern_isa_avx512)) return "avx512";
    if (isa_supported(&kern_isa_avx2)) return "avx2";
    return "scalar";
}

static void pick(void) {
    const kern_isa *want = isa_by_name(getenv("KILN_ISA"));
    active = want && isa_supported(want) ? want : isa_by_name(kern_best_isa());
}

void kern_init(void) { pthread_once(&once, pick); }
const char *kern_isa_name(void) { return kern_active_isa()->name; }

kern_layout kern_weight_layout(kiln_dtype dt) {
    return kern_has_panels(dt) && kern_active_isa()->panels[dt] ? KERN_LAYOUT_PANEL16 : KERN_LAYOUT_PLAIN;
}

const kern_isa *kern_active_isa(void) {
    kern_init();
    return active;
}

int kern_set_isa(const char *name) {
    kern_init();
    const kern_isa *isa = isa_by_name(name);
    if (!isa || !isa_supported(isa)) return -1;
    active = isa;
    return 0;
}

/* ---- scratch (kernels.h) ---- */

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

size_t kern_gemm_tmp_bytes(int cols) {
    const size_t nb = (size_t)(cols / QK);
    const size_t quant = align64(nb * sizeof(panel_prepared)) + align64(nb * KERN_MAX_BLOCK_BYTES); /* one gathered row */
    /* bf16_dot's weight tile (F16 rows rounded to bf16, or AMX's packed strip of rows zero-padded to 32
     * values): at most KERN_BF16_TILE_BYTES, or one 16-row group of wider rows (a bound that
     * grows with cols, so a scratch reserved for the widest rows fits every narrower matrix too) */
    const size_t group = (size_t)16 * kern_bf16_act_stride(cols) * sizeof(uint16_t),
                 tile = align64(group > KERN_BF16_TILE_BYTES ? group : KERN_BF16_TILE_BYTES);
    return quant > tile ? quant : tile;
}

/* Bytes of one token's activations in kern_matmul's scratch: act_q8 blocks, or bf16 for bf16_dot. */
static size_t act_scratch_bytes(int cols, bool bf16_dot) {
    const size_t q8 = (size_t)(cols / QK) * sizeof(act_q8), bf = kern_bf16_act_stride(cols) * sizeof(uint16_t);
    return bf16_dot && bf > q8 ? bf : q8;
}

int kern_scratch_reserve(kern_scratch *s, int nth, int n, int cols) {
    const size_t blocks = ((size_t)n * act_scratch_bytes(cols, s->bf16_dot) + sizeof(act_q8) - 1) / sizeof(act_q8),
                 tmp = kern_gemm_tmp_bytes(cols);
    if (blocks > s->xq_blocks) {
        act_q8 *xq = realloc(s->xq, blocks * sizeof *xq);
        if (!xq) return -1;
        s->xq = xq, s->xq_blocks = blocks;
    }
    if (tmp > s->tmp_bytes || nth > s->threads) {
        const size_t per = tmp > s->tmp_bytes ? tmp : s->tmp_bytes;
        const int threads = nth > s->threads ? nth : s->threads;
        char *t = aligned_alloc(64, per * (size_t)threads);
        if (!t) return -1;
        free(s->tmp);
        s->tmp = t, s->tmp_bytes = per, s->threads = threads;
    }
    return 0;
}

void kern_scratch_free(kern_scratch *s) {
    free(s->xq);
    free(s->tmp);
    *s = (kern_scratch){0};
}

/* ---- the parallel driver ---- */

struct mm_job {
    float *y;
    const float *x;
    char *xq;   /* quantised activations (block formats), else NULL */
    size_t xq_row; /* bytes per token in xq */
    char *tmp;  /* per-thread gemm scratch (quantised weights), tmp_bytes apart */
    size_t tmp_bytes;
    int n;
    const kiln_mat *m;
    const float *bias;
    const kern_isa *isa;
    kern_gemm_fn gemm;
    bool bf16_dot; /* x goes to gemm as bf16 (kern_scratch.bf16_dot) */
    int chunk_rows, n_chunks;
    atomic_int next;
};

/* Bytes of one token's quantised activations for weights m (0: float weights take x as it is). */
static size_t act_row_bytes(const kiln_mat *m) {
    const kern_format *f = &kern_formats[m->dt];
    if (f->panels) return (size_t)(m->cols / QK) * sizeof(act_q8);
    return f->vec_dot ? kern_act_row_bytes(f->act, m->cols) : 0;
}

/* Tokens [lo, hi) of j's activations in the weights' activation format: act_q8 for the panel formats (the
 * ISA's quantiser), bf16 for bf16_dot, else llama.cpp's vec_dot type. */
static void quantize_tokens(const struct mm_job *j, int lo, int hi) {
    const kern_format *f = &kern_formats[j->m->dt];
    const int cols = j->m->cols;
    for (int t = lo; t < hi; t++) {
        const float *x = j->x + (size_t)t * cols;
        char *xq = j->xq + (size_t)t * j->xq_row;
        if (j->bf16_dot) j->isa->to_bf16(x, (uint16_t *)xq, cols);
        else if (f->panels) j->isa->quantize_act(x, (act_q8 *)xq, cols, f->weight_offset);
        else kern_acts[f->act].quantize(xq, x, cols);
    }
}

static void quantize_part(void *arg, int ith, int nth) {
    const struct mm_job *j = arg;
    int lo, hi;
    kiln_split_range(j->n, ith, nth, &lo, &hi);
    quantize_tokens(j, lo, hi);
}

/* Work unit c of j (rows c * chunk_rows onwards) on thread ith. */
static void run_chunk(const struct mm_job *j, int c, int ith) {
    const kiln_mat *m = j->m;
    const void *x = j->xq ? (const void *)j->xq : (const void *)j->x;
    void *tmp = j->tmp ? j->tmp + (size_t)ith * j->tmp_bytes : NULL;
    int r0 = c * j->chunk_rows, r1 = r0 + j->chunk_rows < m->rows ? r0 + j->chunk_rows : m->rows;
    j->gemm(j->y, x, j->n, m, r0, r1, tmp);
    if (j->bias)
        for (int t = 0; t < j->n; t++)
            for (int r = r0; r < r1; r++) j->y[(size_t)t * m->rows + r] += j->bias[r];
}

static void matmul_part(void *arg, int ith, int nth) {
    (void)nth;
    struct mm_job *j = arg;
    for (;;) {
        int c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (c >= j->n_chunks) break;
        run_chunk(j, c, ith);
    }
}

/* Rows per work unit: enough units for load balance (~8 per thread), few enough that per-unit
 * overhead stays small, at most UNIT_BYTES of weights (a big matrix's last unit is what the other
 * thread waits for at the region's end: 16 units of a 250 MB LM head were 16 MB, ~1 ms of a decode
 * step), and for prefill small enough that a unit's weights stay in L2 while every token block passes
 * over them. */
#define UNIT_BYTES ((size_t)512 << 10)
static int chunk_rows_for(const kiln_mat *m, int n, int nth) {
    int rows = (m->rows + nth * 8 - 1) / (nth * 8);
    const size_t rb = kern_row_bytes(m->dt, m->cols);
    /* a panel (<= 16 x 8192 x 34 bytes) already stays in L2 */
    const size_t cap = n > 1 && kern_panel_rows(m) == 0 ? (size_t)256 << 10 : UNIT_BYTES;
    if (rb && (size_t)rows * rb > cap) rows = (int)(cap / rb);
    rows = (rows + 15) & ~15;
    return rows < 16 ? 16 : rows;
}

/* Whether this call takes the bf16 dot-product path (kern_scratch.bf16_dot). */
static bool use_bf16_dot(const kern_scratch *s, const kern_isa *isa, int n, const kiln_mat *m) {
    return s && s->bf16_dot && n >= 4 && kern_dtype_valid((int)m->dt) && isa->gemm_bf16dot[m->dt] &&
           kiln_cpu_features()->avx512bf16;
}

/* Fills j for y = x m^T (+ bias) over n tokens on nth threads: the kernel, the row split, and for a
 * quantised matrix (or bf16_dot) the bytes per token of x's converted form (xq_row; xq is set by the
 * caller). Returns whether x needs that conversion (and so the caller's scratch). */
static bool job_init(struct mm_job *j, const kern_scratch *s, float *y, const float *x, int n, const kiln_mat *m,
                     const float *bias, int nth) {
    *j = (struct mm_job){.y = y, .x = x, .n = n, .m = m, .bias = bias, .isa = kern_active_isa()};
    const bool bf16_dot = j->bf16_dot = use_bf16_dot(s, j->isa, n, m);
    /* a format this ISA has no kernel for runs on the reference */
    j->gemm = bf16_dot ? j->isa->gemm_bf16dot[m->dt] : j->isa->gemm[m->dt] ? j->isa->gemm[m->dt] : kern_isa_scalar.gemm[m->dt];
    j->chunk_rows = chunk_rows_for(m, n, nth);
    j->n_chunks = (m->rows + j->chunk_rows - 1) / j->chunk_rows;
    atomic_init(&j->next, 0);
    if (!kern_is_quantised(m->dt) && !bf16_dot) return false;
    j->xq_row = bf16_dot ? kern_bf16_act_stride(m->cols) * sizeof(uint16_t) : act_row_bytes(m);
    return true;
}

/* Whether s can hold xq_bytes of converted activations and each of nth threads' gemm scratch for m. */
static bool scratch_fits(const kern_scratch *s, size_t xq_bytes, int nth, const kiln_mat *m) {
    return s && s->xq_blocks * sizeof(act_q8) >= xq_bytes && s->threads >= nth &&
           s->tmp_bytes >= kern_gemm_tmp_bytes(m->cols);
}

/* Whether converting this many activation values is quicker on the calling thread than as a parallel
 * region, whose wake-up and wait cost more than the conversion (a decode step's MoE down inputs: 8 rows
 * of 768; a few tokens of a decode batch). */
static bool convert_serially(size_t values) { return values <= 16384; }

int kern_matmul(kiln_pool *pool, kern_scratch *s, float *y, const float *x, int n, const kiln_mat *m,
                const float *bias) {
    struct mm_job j;
    const int nth = kiln_pool_size(pool);
    if (job_init(&j, s, y, x, n, m, bias, nth)) {
        if (!scratch_fits(s, (size_t)n * j.xq_row, nth, m)) return -1;
        j.xq = (char *)s->xq, j.tmp = s->tmp, j.tmp_bytes = s->tmp_bytes;
        if (n == 1 || nth == 1 || convert_serially((size_t)n * (size_t)m->cols)) quantize_part(&j, 0, 1);
        else kiln_pool_run(pool, quantize_part, &j);
    }
    if (nth == 1 || j.n_chunks == 1) matmul_part(&j, 0, 1);
    else kiln_pool_run(pool, matmul_part, &j);
    return 0;
}

/* ---- many matmuls as one parallel region (kern_matmul_many) ---- */

#define MANY_MAX 64 /* tasks per region; more are run as further regions */

struct many_job {
    struct mm_job job[MANY_MAX];
    int n;
    int tok0[MANY_MAX + 1];   /* prefix sums of the tokens each task converts (0: it shares an earlier one's) */
    int chunk0[MANY_MAX + 1]; /* prefix sums of the tasks' work units */
    atomic_int next;
};

/* Whether b's activations convert to exactly a's bytes (same x, tokens, width and target format). */
static bool same_conversion(const struct mm_job *a, const struct mm_job *b) {
    const kern_format *fa = &kern_formats[a->m->dt], *fb = &kern_formats[b->m->dt];
    if (a->x != b->x || a->n != b->n || a->m->cols != b->m->cols || a->bf16_dot != b->bf16_dot) return false;
    if (a->bf16_dot) return true;
    return fa->panels ? fb->panels && fa->weight_offset == fb->weight_offset : !fb->panels && fa->act == fb->act;
}

static void many_quantize_part(void *arg, int ith, int nth) {
    const struct many_job *mj = arg;
    int lo, hi;
    kiln_split_range(mj->tok0[mj->n], ith, nth, &lo, &hi);
    for (int i = 0; i < mj->n && lo < hi; i++) {
        const int a = lo > mj->tok0[i] ? lo : mj->tok0[i], b = hi < mj->tok0[i + 1] ? hi : mj->tok0[i + 1];
        if (a < b) quantize_tokens(&mj->job[i], a - mj->tok0[i], b - mj->tok0[i]);
    }
}

static void many_matmul_part(void *arg, int ith, int nth) {
    (void)nth;
    struct many_job *mj = arg;
    int i = 0; /* units are taken in increasing order, so this thread's task index only moves forward */
    for (;;) {
        const int c = atomic_fetch_add_explicit(&mj->next, 1, memory_order_relaxed);
        if (c >= mj->chunk0[mj->n]) break;
        while (c >= mj->chunk0[i + 1]) i++;
        run_chunk(&mj->job[i], c - mj->chunk0[i], ith);
    }
}

/* Up to MANY_MAX tasks as one region: each distinct activation converted once into s, then every task's
 * work units taken from one counter. */
static int many_region(kiln_pool *pool, kern_scratch *s, const kern_mm_task *t, int n, struct many_job *mj) {
    const int nth = kiln_pool_size(pool);
    size_t xq_bytes = 0, values = 0; /* bytes and values of the activations converted */
    mj->n = n, mj->tok0[0] = mj->chunk0[0] = 0;
    atomic_init(&mj->next, 0);
    for (int i = 0; i < n; i++) {
        struct mm_job *j = &mj->job[i];
        int own = 0;
        if (job_init(j, s, t[i].y, t[i].x, t[i].n, t[i].m, NULL, nth)) {
            int k = 0;
            while (k < i && !(mj->job[k].xq && same_conversion(&mj->job[k], j))) k++;
            if (k < i) j->xq = mj->job[k].xq;
            else {
                if (!scratch_fits(s, xq_bytes + (size_t)j->n * j->xq_row, nth, j->m)) return -1;
                j->xq = (char *)s->xq + xq_bytes, own = j->n;
                values += (size_t)j->n * (size_t)j->m->cols;
                xq_bytes += (size_t)j->n * j->xq_row;
            }
            j->tmp = s->tmp, j->tmp_bytes = s->tmp_bytes;
        }
        mj->tok0[i + 1] = mj->tok0[i] + own;
        mj->chunk0[i + 1] = mj->chunk0[i] + j->n_chunks;
    }
    if (mj->tok0[n] <= 1 || nth == 1 || convert_serially(values)) many_quantize_part(mj, 0, 1);
    else kiln_pool_run(pool, many_quantize_part, mj);
    if (nth == 1) many_matmul_part(mj, 0, 1);
    else kiln_pool_run(pool, many_matmul_part, mj);
    return 0;
}

int kern_matmul_many(kiln_pool *pool, kern_scratch *s, const kern_mm_task *tasks, int n_tasks) {
    struct many_job mj;
    for (int i = 0; i < n_tasks; i += MANY_MAX)
        if (many_region(pool, s, tasks + i, n_tasks - i < MANY_MAX ? n_tasks - i : MANY_MAX, &mj)) return -1;
    return 0;
}
