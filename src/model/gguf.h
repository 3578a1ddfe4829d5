/* gguf.h — memory-mapped, fully validated GGUF (v2, v3) container files (internal).
 *
 * Layout (ggml's docs/gguf.md): "GGUF", u32 version, u64 tensor count, u64 key count; the keys (string
 * key, u32 value type, value; strings are u64 length + bytes, arrays u32 element type + u64 count +
 * elements); the tensor infos (string name, u32 n_dims, u64 dims innermost first, u32 ggml type, u64
 * offset); padding to general.alignment (32 when absent); the data area, each tensor at its offset
 * (a multiple of the alignment) from its start. All little-endian.
 *
 * gguf_open maps the file read-only and checks everything before anything is used: every length and
 * count against the bytes left, no duplicate keys or tensor names, key types known, arrays not nested,
 * n_dims <= 4, each dim >= 1 and the row length a whole number of the type's blocks, the byte size
 * without overflow, offsets aligned and inside the file, no two tensors overlapping. After it succeeds
 * every pointer and size below may be trusted. Values point into the mapping and may be unaligned
 * (numbers: read them through the getters, or memcpy). Strings are NOT NUL-terminated (ptr + length);
 * keys and tensor names are copied, NUL-terminated, and hold no NUL byte. */
#ifndef KILN_GGUF_H
#define KILN_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

#define GGUF_MAX_DIMS 4

/* Metadata value types (gguf.md's gguf_metadata_value_type). */
typedef enum {
    GGUF_UINT8 = 0, GGUF_INT8 = 1, GGUF_UINT16 = 2, GGUF_INT16 = 3, GGUF_UINT32 = 4, GGUF_INT32 = 5,
    GGUF_FLOAT32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_UINT64 = 10, GGUF_INT64 = 11,
    GGUF_FLOAT64 = 12, GGUF_VTYPE_COUNT
} gguf_vtype;

typedef struct gguf_kv {
    char *key;
    gguf_vtype type;
    gguf_vtype arr_type; /* arrays: the element type (never GGUF_ARRAY) */
    uint64_t arr_n;      /* arrays: the element count */
    const unsigned char *val; /* scalars: the value; strings: the bytes; arrays: the first element */
    uint64_t str_len;         /* strings: the byte count */
    const unsigned char **arr_str; /* string arrays: arr_n + 1 pointers, element i's u64 length at
                                      arr_str[i], the next element (or the end) at arr_str[i + 1] */
} gguf_kv;

typedef struct gguf_tensor {
    char *name;
    int type;  /* ggml type id (known to gguf_type_name) */
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS]; /* innermost first; unused dims are 1 */
    const void *data;          /* inside the mapping */
    size_t nbytes;
} gguf_tensor;

typedef struct gguf_file {
    char *path;
    void *map;
    size_t size;
    uint32_t version;
    gguf_kv *kvs;
    int n_kv;
    gguf_tensor *tensors;
    int n_tensors;
    size_t alignment;
    size_t data_offset; /* where the data area starts in the file */
} gguf_file;

/* Maps and validates path (a regular file only); on failure g is left empty (gguf_close is still safe). */
int gguf_open(gguf_file *g, const char *path, kiln_err *err);
/* Validates an in-memory image (buf, size) named path; everything points into buf. */
int gguf_parse(gguf_file *g, const void *buf, size_t size, const char *path, kiln_err *err);
void gguf_close(gguf_file *g);
/* Whether the first bytes of buf (n of them) are GGUF's magic. */
bool gguf_has_magic(const void *buf, size_t n);

/* ggml tensor types: the name ("Q4_K"; NULL for an id ggml does not define) and the block geometry
 * (values and bytes per block; 0 for an unknown id). */
const char *gguf_type_name(int type);
int gguf_type_block(int type, int *block_values, size_t *block_bytes);

/* Keys. */
const gguf_kv *gguf_find_kv(const gguf_file *g, const char *key);
const char *gguf_vtype_name(gguf_vtype t);
/* Bytes of one fixed-size value of type t (0 for strings, arrays and unknown types). */
size_t gguf_vtype_size(gguf_vtype t);

/* Typed scalar getters: 1 with *out set when the key exists with a compatible type, 0 when absent
 * (*out untouched), -1 (err: file, key, what is wrong) when present with another type or a value out of
 * range. Integer getters take any integer type whose value fits; f32 takes FLOAT32 or FLOAT64; str gives
 * the bytes (not NUL-terminated) and their count. */
int gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out, kiln_err *err);
int gguf_get_i32(const gguf_file *g, const char *key, int32_t *out, kiln_err *err);
int gguf_get_u64(const gguf_file *g, const char *key, uint64_t *out, kiln_err *err);
int gguf_get_f32(const gguf_file *g, const char *key, float *out, kiln_err *err);
int gguf_get_bool(const gguf_file *g, const char *key, bool *out, kiln_err *err);
int gguf_get_str(const gguf_file *g, const char *key, const char **out, size_t *len, kiln_err *err);
/* A string key as a malloc'd NUL-terminated copy (NULL when absent; -1 on a wrong type or no memory). */
int gguf_get_strdup(const gguf_file *g, const char *key, char **out, kiln_err *err);

/* Arrays: 1 with the element type and count when key is an array, 0 when absent, -1 when not an array. */
int gguf_get_arr(const gguf_file *g, const char *key, gguf_vtype *elem_type, uint64_t *n, kiln_err *err);
/* Element i (< arr_n) of a string array: its bytes and length. NULL when kv is no string array. */
const char *gguf_arr_str(const gguf_kv *kv, uint64_t i, size_t *len);
/* A numeric array's elements (arr_n of them, packed, possibly unaligned: memcpy them). NULL when kv is
 * no numeric array. */
const void *gguf_arr_data(const gguf_kv *kv);
/* Element i of a numeric array converted: integers to int64 (UINT64 above INT64_MAX fails), floats and
 * integers to double. 0 on success, -1 when kv is no numeric array or i is out of range. */
int gguf_arr_int(const gguf_kv *kv, uint64_t i, int64_t *out);
int gguf_arr_f64(const gguf_kv *kv, uint64_t i, double *out);

/* Tensors. */
static inline int gguf_n_tensors(const gguf_file *g) { return g->n_tensors; }
const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name);

#endif
