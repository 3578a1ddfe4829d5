/* convert.c — load-time conversion of every matrix to its format (weight_format.h), through the on-disk
 * weight cache when asked (weight_cache.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/gguf_model.h"
#include "model/model.h"
#include "model/weight_cache.h"
#include "runtime/hugepage.h"

static size_t mat_bytes(const kiln_mat *m) { return kern_row_bytes(m->dt, m->cols) * (size_t)m->rows; }

static void warn(const kiln_model_opts *o, const char *fmt, ...) {
    if (!o->warn) return;
    char msg[1600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    o->warn(o->cb_ud, msg);
}

/* "q8_0", "q4_0-bf16" (quantised, float matrices in bf16), "bf16": names the cache file. */
static void format_tag(char *tag, size_t n, const weight_request *rq) {
    if (rq->quant >= 0)
        snprintf(tag, n, "%s%s%s", kiln_quant_name(rq->quant), rq->dtype >= 0 ? "-" : "",
                 rq->dtype >= 0 ? kiln_dtype_name((kiln_dtype)rq->dtype) : "");
    else snprintf(tag, n, "%s", kiln_dtype_name((kiln_dtype)rq->dtype));
}

/* The source files' identity (size, mtime) for the weight cache header. */
static int source_identity(const st_set *s, wc_file *out, kiln_err *err) {
    for (int i = 0; i < s->n_files; i++) {
        struct stat st;
        if (stat(s->files[i].path, &st)) return kiln_err_set(err, "%s: %s", s->files[i].path, strerror(errno));
        out[i] = (wc_file){(uint64_t)st.st_size, (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec};
    }
    return 0;
}

/* (model.h) */
void model_drop_source_pages(const st_set *s, const void *p, size_t n) {
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = ((uintptr_t)p + pg - 1) & ~(pg - 1), b = ((uintptr_t)p + n) & ~(pg - 1);
    for (int i = 0; i < s->n_files; i++) {
        const uintptr_t lo = (uintptr_t)s->files[i].map, hi = lo + s->files[i].size;
        if (s->files[i].map && a >= lo && b <= hi && a < b) madvise((void *)a, b - a, MADV_DONTNEED);
        /* the loader's rewritten copies (a GGUF's q/k): freed the same way, never read again either */
        const uintptr_t olo = (uintptr_t)s->files[i].owned, ohi = olo + s->files[i].owned_len;
        if (s->files[i].owned && a >= olo && b <= ohi && a < b) madvise((void *)a, b - a, MADV_DONTNEED);
    }
}

/* Each matrix's target (format, shape, layout) and its offset in one buffer; the total in *total. */
static void plan(const kiln_model *m, const weight_request *rq, kiln_mat *want, size_t *offs, size_t *total) {
    *total = 0;
    for (int i = 0; i < m->n_mats; i++) {
        const kiln_mat *src = m->mats[i];
        const weight_slot slot = model_slot(m, i);
        kiln_dtype dt = weight_format(rq, &slot);
        want[i] = (kiln_mat){NULL, dt, src->rows, src->cols,
                             kern_weight_layout(dt)};
        offs[i] = *total;
        *total += mat_bytes(&want[i]);
    }
}

/* Maps the cache when it matches (true), else warns why it was rejected and returns false. */
static bool try_cache(kiln_model *m, const char *dir, const kiln_model_opts *o, const weight_request *rq,
                      const wc_want *key, size_t *offs) {
    char tag[64];
    format_tag(tag, sizeof tag, rq);
    /* a GGUF source (any part of a split set, or a directory holding it) caches beside its first file */
    char *file = gguf_source(dir) ? gguf_model_file(dir, &(kiln_err){{0}}) : NULL;
    m->cache_path = wcache_path(file ? file : dir, tag);
    free(file);
    kiln_err why = {{0}};
    int lr = m->cache_path ? wcache_load(m->cache_path, key, &m->cache_map, &m->cache_len, offs, &why) : 1;
    if (lr < 0) warn(o, "weight cache %s: %s; rebuilding it", m->cache_path, why.msg);
    return lr == 0;
}

/* Converts (or points) every matrix at base + offs[i]. */
static int convert_into(kiln_model *m, const kiln_model_opts *o, kiln_mat *want, const size_t *offs, size_t total,
                        char *base, bool cached, kiln_err *err) {
    size_t done = 0;
    for (int i = 0; i < m->n_mats; i++) {
        kiln_mat *src = m->mats[i];
        if (!cached) {
            if (kern_convert_mat(m->pool, base + offs[i], want[i].dt, src->data, src->dt, src->rows, src->cols,
                                 want[i].layout))
                return kiln_err_set(err, "out of memory converting weights");
            model_drop_source_pages(&m->shards, src->data, mat_bytes(src));
        }
        *src = want[i];
        src->data = want[i].data = base + offs[i];
        done += mat_bytes(&want[i]);
        if (!cached && !o->quiet && o->progress) o->progress(o->cb_ud, done, total);
    }
    return 0;
}

int model_convert(kiln_model *m, const char *dir, const kiln_model_opts *o, const weight_request *rq, kiln_err *err) {
    const bool tied = m->lm_head.data == m->embed.data;
    kiln_mat *want = malloc((size_t)m->n_mats * sizeof *want + 1);
    size_t *offs = malloc((size_t)m->n_mats * sizeof *offs + 1);
    wc_file *ident = malloc((size_t)(m->shards.n_files + 1) * sizeof *ident);
    int rc = want && offs && ident ? 0 : kiln_err_set(err, "out of memory");
    size_t total = 0;
    if (!rc) plan(m, rq, want, offs, &total);
    wc_want key = {ident, m->shards.n_files, want, m->n_mats, rq->quant, rq->dtype};
    bool cached = !rc && o->weight_cache && source_identity(&m->shards, ident, err) == 0 &&
                  try_cache(m, dir, o, rq, &key, offs);
    if (!rc && !cached && !(m->owned = malloc(total ? total : 1)))
        rc = kiln_err_set(err, "out of memory converting weights (%zu MiB)", total >> 20);
    if (!rc && !cached) kiln_advise_hugepages(m->owned, total); /* before convert_into writes it (hugepage.h) */
    if (!rc) rc = convert_into(m, o, want, offs, total, cached ? m->cache_map : m->owned, cached, err);
    if (!rc && m->cache_path && !cached) {
        kiln_err why = {{0}};
        if (wcache_save(m->cache_path, &key, &why)) warn(o, "weight cache not written: %s", why.msg);
    }
    m->cache_reused = cached;
    free(want), free(offs), free(ident);
    if (rc) return -1;
    if (tied) m->lm_head = m->embed;
    st_set_drop_files(&m->shards); /* nothing points into the mappings any more */
    return 0;
}
