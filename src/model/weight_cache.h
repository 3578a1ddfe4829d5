/* weight_cache.h — converted weights (--quant / --dtype) cached on disk as one file (internal).
 *
 * File layout (native little-endian, versioned): wc_header, n_files wc_file records (size + mtime of each
 * safetensors file: the model's identity), n_mats wc_mat records (format, shape and offset of every matrix
 * in list order), zero padding to a page, then the matrix data. A checksum over the data catches a
 * corrupt (e.g. truncated-then-extended or bit-flipped) file; any mismatch makes the cache "stale" and
 * the caller rebuilds it. Written to a temporary name and renamed, so readers never see half a file. */
#ifndef KILN_WEIGHT_CACHE_H
#define KILN_WEIGHT_CACHE_H

#include <stddef.h>
#include <stdint.h>

#include "common/fileio.h"
#include "kernels/kernels.h"

typedef struct wc_file {
    uint64_t size;
    int64_t mtime_ns;
} wc_file;

/* What a cache must match: the source files and the target format of every matrix. */
typedef struct wc_want {
    const wc_file *files;
    int n_files;
    const kiln_mat *mats; /* target dt, rows, cols (data unused) */
    int n_mats;
    int quant, dtype; /* the load options, recorded for the header */
} wc_want;

/* The cache file for a model directory or model file (a GGUF) src and the format tag (e.g. "q8_0",
 * "q4_0-bf16"): DIR/model.<tag>.kiln, or FILE.<tag>.kiln beside the file, when that directory is
 * writable, else under the hub cache root. malloc'd, NULL when out of memory. */
char *wcache_path(const char *src, const char *tag);
/* Maps path and checks it against want. 0: *map and *len set and offs[i] = byte offset of matrix i in the
 * mapping. 1: no cache file (not an error). -1: present but unusable; why (one line) in err. */
int wcache_load(const char *path, const wc_want *want, void **map, size_t *len, size_t *offs, kiln_err *err);
/* Writes the matrices (data pointers of want->mats) atomically to path. -1 with err on failure. */
int wcache_save(const char *path, const wc_want *want, kiln_err *err);

#endif
