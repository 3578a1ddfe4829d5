/* shard.c — a rank's slice of one tensor, straight from the mapped checkpoint (see dist.h).
 *
 * The split dimensions are the ones tensor parallelism divides: the heads (DIM_Q, DIM_KV: rows are
 * head-major, so a head range is a row range) and the FFN width (DIM_FFN). Rows of a slice are contiguous
 * in the file, so a row slice is a view; a column slice is a strided copy in the stored format (whole
 * quantisation blocks only). */
#include <stdlib.h>
#include <string.h>

#include "dist/dist.h"
#include "model/model.h"

static bool is_split(tensor_dim dim) { return dim == DIM_Q || dim == DIM_KV || dim == DIM_FFN; }

static int column_slice(const kiln_dist *d, const st_set *s, const tensor_desc *desc, const void *data,
                        kiln_dtype dt, int64_t rows, int64_t cols, shard_view *v, kiln_err *err) {
    const int64_t local = cols / d->tp, c0 = local * d->tp_rank;
    if (!kern_row_fits(dt, (int)local))
        return kiln_err_set(err, "--tp %d: %s: a slice of %lld columns is not whole %s blocks", d->tp, desc->name,
                            (long long)local, kiln_dtype_name(dt));
    const size_t full = kern_row_bytes(dt, (int)cols), part = kern_row_bytes(dt, (int)local),
                 skip = kern_row_bytes(dt, (int)c0);
    char *dst = malloc((size_t)rows * part + 1);
    if (!dst) return kiln_err_set(err, "out of memory for a %lld x %lld slice of %s", (long long)rows,
                                  (long long)local, desc->name);
    for (int64_t r = 0; r < rows; r++) memcpy(dst + (size_t)r * part, (const char *)data + (size_t)r * full + skip, part);
    model_drop_source_pages(s, data, (size_t)rows * full); /* read once: this rank keeps only its slice */
    *v = (shard_view){dst, rows, local, dst};
    return 0;
}

int dist_shard(const kiln_dist *d, const st_set *s, const tensor_desc *desc, const void *data, kiln_dtype dt,
               int64_t rows, int64_t cols, shard_view *v, kiln_err *err) {
    *v = (shard_view){data, rows, cols, NULL};
    if (!d || d->tp == 1) return 0;
    if (cols && is_split(desc->cols)) return column_slice(d, s, desc, data, dt, rows, cols, v, err);
    if (!is_split(desc->rows)) return 0;
    const int64_t local = rows / d->tp;
    v->data = (const char *)data + (cols ? kern_row_bytes(dt, (int)cols) : kern_row_bytes(dt, 1)) *
                                          (size_t)(local * d->tp_rank);
    v->rows = local;
    return 0;
}

void dist_vocab_range(const kiln_dist *d, int t, int vocab, int *v0, int *n) {
    const int unit = (vocab + d->tp * 16 - 1) / (d->tp * 16) * 16;
    *v0 = t * unit < vocab ? t * unit : vocab;
    *n = (*v0 + unit < vocab ? *v0 + unit : vocab) - *v0;
}

int dist_vocab_local(const kiln_dist *d, int vocab) {
    if (!d || d->tp == 1) return vocab;
    int v0, n;
    dist_vocab_range(d, d->tp_rank, vocab, &v0, &n);
    return n;
}

void dist_shard_output(kiln_dist *d, kiln_mat *lm) {
    if (!d || d->tp == 1 || !dist_last_stage(d)) return;
    int v0, n;
    dist_vocab_range(d, d->tp_rank, lm->rows, &v0, &n);
    lm->data = (const char *)lm->data + (size_t)v0 * kern_row_bytes(lm->dt, lm->cols); /* 16-row panels stay whole */
    lm->rows = n;
}
