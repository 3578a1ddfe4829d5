/* safetensors.h — memory-mapped, fully validated safetensors files.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
 * then the data area; offsets are relative to the data area. st_open maps the file read-only and checks
 * everything a reader could trip over, so later code may trust every tensor's pointer and size. */
#ifndef KILN_SAFETENSORS_H
#define KILN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    char *name;
    kiln_dtype dt; /* F32, F16 or BF16 */
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data; /* inside the mapping, aligned to the element size */
    size_t nbytes;
} st_tensor;

typedef struct st_file {
    char *path;
    void *map;
    size_t size;
    st_tensor *tensors;
    int n_tensors;
    void *owned; /* tensors the loader rewrote (a GGUF's un-permuted q/k rows), freed with the file */
    size_t owned_len;
} st_file;

/* Maps and validates path; on failure f is left empty (st_close is still safe). */
int st_open(st_file *f, const char *path, kiln_err *err);
/* Validates an in-memory image (buf, size) named path; tensors point into buf. */
int st_parse(st_file *f, const void *buf, size_t size, const char *path, kiln_err *err);
void st_close(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name);

#endif
