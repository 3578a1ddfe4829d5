/* safetensors.h — one memory-mapped .safetensors file, validated tensor by tensor.
 *
 * Layout: 8-byte little-endian header length N, N bytes of JSON header, then the data area. Each header
 * entry {"dtype","shape","data_offsets":[begin,end]} points into the data area (offsets relative to it). */
#ifndef KILN_SAFETENSORS_H
#define KILN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

#define ST_MAX_DIMS 4

typedef struct st_tensor {
    char *name;
    kiln_dtype dt;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data; /* inside the mapping, or an aligned copy when the file's offset is misaligned */
    size_t nbytes;
    size_t offset; /* begin, relative to the data area */
    void *owned; /* the aligned copy, if one was needed */
} st_tensor;

typedef struct st_file {
    char *path;
    void *map;
    size_t size;
    st_tensor *tensors;
    int n_tensors;
} st_file;

/* Maps and validates path; on failure *f is left empty and err names the file (and tensor). */
int st_open(st_file *f, const char *path, kiln_err *err);
void st_close(st_file *f);
const st_tensor *st_find(const st_file *f, const char *name);
/* Elements of a tensor (product of its shape). */
int64_t st_numel(const st_tensor *t);

#endif
