/* gguf.c — mmap and validation of GGUF container files (see gguf.h). */
#include "model/gguf.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "common/fileio.h"

#define GGUF_DEFAULT_ALIGNMENT 32
/* Longest key / tensor name accepted (ggml's GGML_MAX_NAME is 64; keys are longer in practice). */
#define GGUF_MAX_NAME 1024

/* ggml's tensor types: the container's knowledge of every id, so that sizes are validated (and a type
 * kiln does not compute is named) for all of them. kiln's own formats (kernels/format.h) carry the id
 * they are stored under; test_gguf checks the two agree. */
static const struct {
    const char *name;
    int values;
    size_t bytes;
} ggml_types[] = {
    [0] = {"F32", 1, 4},        [1] = {"F16", 1, 2},         [2] = {"Q4_0", 32, 18},      [3] = {"Q4_1", 32, 20},
    [6] = {"Q5_0", 32, 22},     [7] = {"Q5_1", 32, 24},      [8] = {"Q8_0", 32, 34},      [9] = {"Q8_1", 32, 36},
    [10] = {"Q2_K", 256, 84},   [11] = {"Q3_K", 256, 110},   [12] = {"Q4_K", 256, 144},   [13] = {"Q5_K", 256, 176},
    [14] = {"Q6_K", 256, 210},  [15] = {"Q8_K", 256, 292},   [16] = {"IQ2_XXS", 256, 66}, [17] = {"IQ2_XS", 256, 74},
    [18] = {"IQ3_XXS", 256, 98}, [19] = {"IQ1_S", 256, 50},  [20] = {"IQ4_NL", 32, 18},   [21] = {"IQ3_S", 256, 110},
    [22] = {"IQ2_S", 256, 82},  [23] = {"IQ4_XS", 256, 136}, [24] = {"I8", 1, 1},         [25] = {"I16", 1, 2},
    [26] = {"I32", 1, 4},       [27] = {"I64", 1, 8},        [28] = {"F64", 1, 8},        [29] = {"IQ1_M", 256, 56},
    [30] = {"BF16", 1, 2},      [34] = {"TQ1_0", 256, 54},   [35] = {"TQ2_0", 256, 66},   [39] = {"MXFP4", 32, 17},
};
#define N_GGML_TYPES (int)(sizeof ggml_types / sizeof ggml_types[0])

const char *gguf_type_name(int type) { return type >= 0 && type < N_GGML_TYPES ? ggml_types[type].name : NULL; }

int gguf_type_block(int type, int *block_values, size_t *block_bytes) {
    if (!gguf_type_name(type)) return -1;
    *block_values = ggml_types[type].values;
    *block_bytes = ggml_types[type].bytes;
    return 0;
}

/* Bytes of one scalar of each value type (0: not a fixed-size scalar). */
static const size_t vtype_size[GGUF_VTYPE_COUNT] = {
    [GGUF_UINT8] = 1, [GGUF_INT8] = 1,    [GGUF_UINT16] = 2, [GGUF_INT16] = 2, [GGUF_UINT32] = 4,
    [GGUF_INT32] = 4, [GGUF_FLOAT32] = 4, [GGUF_BOOL] = 1,   [GGUF_UINT64] = 8, [GGUF_INT64] = 8,
    [GGUF_FLOAT64] = 8,
};
static const char *const vtype_names[GGUF_VTYPE_COUNT] = {
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64",
    "int64", "float64",
};

size_t gguf_vtype_size(gguf_vtype t) { return (unsigned)t < GGUF_VTYPE_COUNT ? vtype_size[t] : 0; }

const char *gguf_vtype_name(gguf_vtype t) { return (unsigned)t < GGUF_VTYPE_COUNT ? vtype_names[t] : "unknown"; }

/* ---- the reader: a cursor that never reads past size ---- */

typedef struct rd {
    const unsigned char *p;
    size_t pos, size;
    const char *path;
    kiln_err *err;
} rd;

static size_t left(const rd *r) { return r->size - r->pos; }

static uint64_t le(const unsigned char *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;) v = v << 8 | p[i];
    return v;
}

static int need(rd *r, size_t n, const char *what) {
    if (n <= left(r)) return 0;
    return kiln_err_set(r->err, "%s: GGUF truncated: %s needs %zu bytes at offset %zu, %zu left", r->path, what, n,
                        r->pos, left(r));
}

static int rd_u32(rd *r, uint32_t *v, const char *what) {
    if (need(r, 4, what)) return -1;
    *v = (uint32_t)le(r->p + r->pos, 4);
    r->pos += 4;
    return 0;
}

static int rd_u64(rd *r, uint64_t *v, const char *what) {
    if (need(r, 8, what)) return -1;
    *v = le(r->p + r->pos, 8);
    r->pos += 8;
    return 0;
}

/* A gguf_string: u64 length, bytes. The bytes stay in the mapping. */
static int rd_str(rd *r, const unsigned char **s, uint64_t *len, const char *what) {
    if (rd_u64(r, len, what)) return -1;
    if (*len > left(r))
        return kiln_err_set(r->err, "%s: GGUF %s: string length %llu exceeds the %zu bytes left", r->path, what,
                            (unsigned long long)*len, left(r));
    *s = r->p + r->pos;
    r->pos += (size_t)*len;
    return 0;
}

/* A key or tensor name: non-empty, bounded, without NUL; copied NUL-terminated. */
static int rd_name(rd *r, char **out, const char *what) {
    const unsigned char *s;
    uint64_t len;
    if (rd_str(r, &s, &len, what)) return -1;
    if (len == 0 || len > GGUF_MAX_NAME || memchr(s, 0, (size_t)len))
        return kiln_err_set(r->err, "%s: GGUF %s at offset %zu: empty, longer than %d bytes or holding a NUL byte",
                            r->path, what, r->pos - (size_t)len, GGUF_MAX_NAME);
    *out = malloc((size_t)len + 1);
    if (!*out) return kiln_err_set(r->err, "out of memory");
    memcpy(*out, s, (size_t)len);
    (*out)[len] = 0;
    return 0;
}

/* An array value: element type, count, then the elements (string arrays get their pointer table). */
static int rd_array(rd *r, gguf_kv *kv) {
    uint32_t et;
    if (rd_u32(r, &et, "array type") || rd_u64(r, &kv->arr_n, "array length")) return -1;
    if (et >= GGUF_VTYPE_COUNT || et == GGUF_ARRAY)
        return kiln_err_set(r->err, "%s: GGUF key '%s': array element type %u %s", r->path, kv->key, et,
                            et == GGUF_ARRAY ? "(nested arrays are not supported)" : "is unknown");
    kv->arr_type = (gguf_vtype)et;
    kv->val = r->p + r->pos;
    if (et != GGUF_STRING) {
        if (kv->arr_n > left(r) / vtype_size[et])
            return kiln_err_set(r->err, "%s: GGUF key '%s': %llu %s elements exceed the %zu bytes left", r->path,
                                kv->key, (unsigned long long)kv->arr_n, vtype_names[et], left(r));
        r->pos += (size_t)kv->arr_n * vtype_size[et];
        return 0;
    }
    if (kv->arr_n > left(r) / 8) /* each string takes at least its 8-byte length */
        return kiln_err_set(r->err, "%s: GGUF key '%s': %llu strings exceed the %zu bytes left", r->path, kv->key,
                            (unsigned long long)kv->arr_n, left(r));
    kv->arr_str = malloc(((size_t)kv->arr_n + 1) * sizeof *kv->arr_str);
    if (!kv->arr_str) return kiln_err_set(r->err, "out of memory");
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        kv->arr_str[i] = r->p + r->pos;
        const unsigned char *s;
        uint64_t len;
        if (rd_str(r, &s, &len, kv->key)) return -1;
    }
    kv->arr_str[kv->arr_n] = r->p + r->pos;
    return 0;
}

static int rd_kv(rd *r, gguf_kv *kv) {
    uint32_t t;
    if (rd_name(r, &kv->key, "key") || rd_u32(r, &t, "value type")) return -1;
    if (t >= GGUF_VTYPE_COUNT)
        return kiln_err_set(r->err, "%s: GGUF key '%s': unknown value type %u", r->path, kv->key, t);
    kv->type = (gguf_vtype)t;
    if (t == GGUF_ARRAY) return rd_array(r, kv);
    if (t == GGUF_STRING) return rd_str(r, &kv->val, &kv->str_len, kv->key);
    if (need(r, vtype_size[t], kv->key)) return -1;
    kv->val = r->p + r->pos;
    r->pos += vtype_size[t];
    if (t == GGUF_BOOL && *kv->val > 1)
        return kiln_err_set(r->err, "%s: GGUF key '%s': bool value %u is neither 0 nor 1", r->path, kv->key, *kv->val);
    return 0;
}

/* One tensor info; its data pointer is set once the data area's start is known (t->data holds the
 * offset until then). */
static int rd_tensor_info(rd *r, gguf_tensor *t) {
    uint32_t nd, type;
    if (rd_name(r, &t->name, "tensor name") || rd_u32(r, &nd, "tensor n_dims")) return -1;
    if (nd < 1 || nd > GGUF_MAX_DIMS)
        return kiln_err_set(r->err, "%s: GGUF tensor '%s': n_dims %u (want 1..%d)", r->path, t->name, nd, GGUF_MAX_DIMS);
    t->n_dims = (int)nd;
    for (int i = 0; i < GGUF_MAX_DIMS; i++) t->ne[i] = 1;
    for (uint32_t i = 0; i < nd; i++) {
        uint64_t d;
        if (rd_u64(r, &d, "tensor dim")) return -1;
        if (d < 1 || d > INT32_MAX)
            return kiln_err_set(r->err, "%s: GGUF tensor '%s': dim %u is %llu (want 1..%d)", r->path, t->name, i,
                                (unsigned long long)d, INT32_MAX);
        t->ne[i] = (int64_t)d;
    }
    uint64_t off;
    if (rd_u32(r, &type, "tensor type") || rd_u64(r, &off, "tensor offset")) return -1;
    int bv;
    size_t bb;
    if (gguf_type_block((int)type, &bv, &bb))
        return kiln_err_set(r->err, "%s: GGUF tensor '%s': unknown ggml type %u", r->path, t->name, type);
    t->type = (int)type;
    if (t->ne[0] % bv)
        return kiln_err_set(r->err, "%s: GGUF tensor '%s': row of %lld values is not a whole number of %s blocks (%d)",
                            r->path, t->name, (long long)t->ne[0], ggml_types[type].name, bv);
    size_t n = (size_t)(t->ne[0] / bv) * bb;
    for (int i = 1; i < GGUF_MAX_DIMS; i++)
        if (__builtin_mul_overflow(n, (size_t)t->ne[i], &n))
            return kiln_err_set(r->err, "%s: GGUF tensor '%s': size overflows", r->path, t->name);
    t->nbytes = n;
    t->data = (const void *)(uintptr_t)off;
    return 0;
}

static int cmp_tensor_data(const void *a, const void *b) {
    const gguf_tensor *x = *(const gguf_tensor *const *)a, *y = *(const gguf_tensor *const *)b;
    return (uintptr_t)x->data < (uintptr_t)y->data ? -1 : (uintptr_t)x->data > (uintptr_t)y->data;
}

/* Every tensor's offset: aligned, inside the data area, overlapping no other. Sets the data pointers. */
static int place_tensors(gguf_file *g, const unsigned char *base, kiln_err *err) {
    const size_t data_len = g->size - g->data_offset;
    for (int i = 0; i < g->n_tensors; i++) {
        gguf_tensor *t = &g->tensors[i];
        uint64_t off = (uint64_t)(uintptr_t)t->data;
        if (off % g->alignment)
            return kiln_err_set(err, "%s: GGUF tensor '%s': offset %llu is not a multiple of the alignment %zu",
                                g->path, t->name, (unsigned long long)off, g->alignment);
        if (off > data_len || t->nbytes > data_len - off)
            return kiln_err_set(err, "%s: GGUF tensor '%s': %zu bytes at data offset %llu run past the end of the "
                                     "file (data area %zu bytes)", g->path, t->name, t->nbytes,
                                (unsigned long long)off, data_len);
        t->data = base + g->data_offset + off;
    }
    const gguf_tensor **by = malloc((size_t)g->n_tensors * sizeof *by + 1);
    if (!by) return kiln_err_set(err, "out of memory");
    for (int i = 0; i < g->n_tensors; i++) by[i] = &g->tensors[i];
    qsort(by, (size_t)g->n_tensors, sizeof *by, cmp_tensor_data);
    int rc = 0;
    for (int i = 1; i < g->n_tensors && !rc; i++)
        if ((const char *)by[i - 1]->data + by[i - 1]->nbytes > (const char *)by[i]->data)
            rc = kiln_err_set(err, "%s: GGUF tensor '%s' overlaps tensor '%s'", g->path, by[i]->name, by[i - 1]->name);
    free(by);
    return rc;
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* No name twice among n (sorted copies of the pointers: a hostile file may hold millions). */
static int check_unique_names(const gguf_file *g, char **names, int n, const char *what, kiln_err *err) {
    char **s = malloc((size_t)n * sizeof *s + 1);
    if (!s) return kiln_err_set(err, "out of memory");
    memcpy(s, names, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_name);
    int rc = 0;
    for (int i = 1; i < n && !rc; i++)
        if (strcmp(s[i - 1], s[i]) == 0) rc = kiln_err_set(err, "%s: GGUF %s '%s' appears twice", g->path, what, s[i]);
    free(s);
    return rc;
}

static int check_unique(const gguf_file *g, kiln_err *err) {
    char **names = malloc((size_t)(g->n_kv > g->n_tensors ? g->n_kv : g->n_tensors) * sizeof *names + 1);
    if (!names) return kiln_err_set(err, "out of memory");
    for (int i = 0; i < g->n_kv; i++) names[i] = g->kvs[i].key;
    int rc = check_unique_names(g, names, g->n_kv, "key", err);
    for (int i = 0; i < g->n_tensors; i++) names[i] = g->tensors[i].name;
    if (!rc) rc = check_unique_names(g, names, g->n_tensors, "tensor", err);
    free(names);
    return rc;
}

/* general.alignment: a u32 power of two when present. */
static int read_alignment(gguf_file *g, kiln_err *err) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *kv = gguf_find_kv(g, "general.alignment");
    if (!kv) return 0;
    uint32_t a = kv->type == GGUF_UINT32 ? (uint32_t)le(kv->val, 4) : 0;
    if (a == 0 || (a & (a - 1)))
        return kiln_err_set(err, "%s: GGUF general.alignment must be a uint32 power of two", g->path);
    g->alignment = a;
    return 0;
}

bool gguf_has_magic(const void *buf, size_t n) { return n >= 4 && memcmp(buf, "GGUF", 4) == 0; }

/* Header: magic, version, counts (each bounded by the bytes that could hold them). */
static int rd_header(rd *r, gguf_file *g, uint64_t *n_tensors, uint64_t *n_kv) {
    if (r->size < 4 || !gguf_has_magic(r->p, r->size))
        return kiln_err_set(r->err, "%s: not a GGUF file (no 'GGUF' magic)", r->path);
    r->pos = 4;
    if (rd_u32(r, &g->version, "version")) return -1;
    if (g->version != 2 && g->version != 3)
        return kiln_err_set(r->err, "%s: GGUF version %u not supported (2 or 3)", r->path, g->version);
    if (rd_u64(r, n_tensors, "tensor count") || rd_u64(r, n_kv, "key count")) return -1;
    /* a key takes >= 13 bytes (length, one byte, type, one value byte), a tensor info >= 29 */
    if (*n_kv > left(r) / 13 || *n_tensors > left(r) / 29 || *n_kv > INT32_MAX || *n_tensors > INT32_MAX)
        return kiln_err_set(r->err, "%s: GGUF counts (%llu tensors, %llu keys) exceed what %zu bytes can hold", r->path,
                            (unsigned long long)*n_tensors, (unsigned long long)*n_kv, r->size);
    return 0;
}

int gguf_parse(gguf_file *g, const void *buf, size_t size, const char *path, kiln_err *err) {
    memset(g, 0, sizeof *g);
    g->size = size;
    g->path = strdup(path);
    if (!g->path) return kiln_err_set(err, "out of memory");
    rd r = {buf, 0, size, path, err};
    uint64_t nt, nk;
    if (rd_header(&r, g, &nt, &nk)) goto fail;
    g->kvs = calloc((size_t)nk + 1, sizeof *g->kvs);
    g->tensors = calloc((size_t)nt + 1, sizeof *g->tensors);
    if (!g->kvs || !g->tensors) {
        kiln_err_set(err, "out of memory");
        goto fail;
    }
    for (; (uint64_t)g->n_kv < nk; g->n_kv++)
        if (rd_kv(&r, &g->kvs[g->n_kv])) {
            g->n_kv++; /* free what it allocated */
            goto fail;
        }
    for (; (uint64_t)g->n_tensors < nt; g->n_tensors++)
        if (rd_tensor_info(&r, &g->tensors[g->n_tensors])) {
            g->n_tensors++;
            goto fail;
        }
    if (check_unique(g, err) || read_alignment(g, err)) goto fail;
    g->data_offset = r.pos + (g->alignment - r.pos % g->alignment) % g->alignment;
    if (g->data_offset > size && g->n_tensors) {
        kiln_err_set(err, "%s: GGUF truncated: the data area would start at %zu, past the end (%zu bytes)", path,
                     g->data_offset, size);
        goto fail;
    }
    if (g->data_offset > size) g->data_offset = size;
    if (place_tensors(g, buf, err)) goto fail;
    return 0;
fail:
    gguf_close(g);
    return -1;
}

static int parse_gguf(void *g, const void *buf, size_t size, const char *path, kiln_err *err) {
    return gguf_parse(g, buf, size, path, err);
}

int gguf_open(gguf_file *g, const char *path, kiln_err *err) {
    memset(g, 0, sizeof *g);
    return kiln_map_parse(path, parse_gguf, g, &g->map, &g->size, err);
}

void gguf_close(gguf_file *g) {
    for (int i = 0; g->kvs && i < g->n_kv; i++) {
        free(g->kvs[i].key);
        free(g->kvs[i].arr_str);
    }
    for (int i = 0; g->tensors && i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->kvs);
    free(g->tensors);
    free(g->path);
    if (g->map) munmap(g->map, g->size);
    memset(g, 0, sizeof *g);
}

/* ---- accessors ---- */

const gguf_kv *gguf_find_kv(const gguf_file *g, const char *key) {
    for (int i = 0; i < g->n_kv; i++)
        if (strcmp(g->kvs[i].key, key) == 0) return &g->kvs[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    for (int i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

static bool is_int_type(gguf_vtype t) {
    return t <= GGUF_INT32 || t == GGUF_UINT64 || t == GGUF_INT64;
}

/* A scalar integer at p of type t as its magnitude and sign. */
static void int_at(const unsigned char *p, gguf_vtype t, uint64_t *u, bool *neg) {
    const size_t n = vtype_size[t];
    uint64_t v = le(p, n);
    const bool is_signed = t == GGUF_INT8 || t == GGUF_INT16 || t == GGUF_INT32 || t == GGUF_INT64;
    *neg = is_signed && (v >> (8 * n - 1)) & 1;
    if (*neg) v = n == 8 ? 0 - v : ((uint64_t)1 << (8 * n)) - v; /* the magnitude */
    *u = v;
}

static int wrong(const gguf_file *g, const gguf_kv *kv, const char *want, kiln_err *err) {
    return kiln_err_set(err, "%s: GGUF key '%s' is %s, want %s", g->path, kv->key, gguf_vtype_name(kv->type), want);
}

/* The integer key as a value in [lo, hi] (signed range via neg/magnitude). */
static int get_int(const gguf_file *g, const char *key, int64_t lo, uint64_t hi, uint64_t *mag, bool *neg,
                   kiln_err *err) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return 0;
    if (!is_int_type(kv->type)) return wrong(g, kv, "an integer", err);
    int_at(kv->val, kv->type, mag, neg);
    if ((*neg && (lo >= 0 || *mag > (uint64_t)-(lo + 1) + 1)) || (!*neg && *mag > hi))
        return kiln_err_set(err, "%s: GGUF key '%s': value out of range", g->path, key);
    return 1;
}

int gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out, kiln_err *err) {
    uint64_t m;
    bool neg;
    int rc = get_int(g, key, 0, UINT32_MAX, &m, &neg, err);
    if (rc == 1) *out = (uint32_t)m;
    return rc;
}

int gguf_get_i32(const gguf_file *g, const char *key, int32_t *out, kiln_err *err) {
    uint64_t m;
    bool neg;
    int rc = get_int(g, key, INT32_MIN, INT32_MAX, &m, &neg, err);
    if (rc == 1) *out = neg ? (int32_t)-(int64_t)m : (int32_t)m;
    return rc;
}

int gguf_get_u64(const gguf_file *g, const char *key, uint64_t *out, kiln_err *err) {
    uint64_t m;
    bool neg;
    int rc = get_int(g, key, 0, UINT64_MAX, &m, &neg, err);
    if (rc == 1) *out = m;
    return rc;
}

static double float_at(const unsigned char *p, gguf_vtype t) {
    if (t == GGUF_FLOAT32) {
        uint32_t b = (uint32_t)le(p, 4);
        float f;
        memcpy(&f, &b, sizeof f);
        return f;
    }
    uint64_t b = le(p, 8);
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

int gguf_get_f32(const gguf_file *g, const char *key, float *out, kiln_err *err) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return 0;
    if (kv->type != GGUF_FLOAT32 && kv->type != GGUF_FLOAT64) return wrong(g, kv, "float32", err);
    *out = (float)float_at(kv->val, kv->type);
    return 1;
}

int gguf_get_bool(const gguf_file *g, const char *key, bool *out, kiln_err *err) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return 0;
    if (kv->type != GGUF_BOOL) return wrong(g, kv, "bool", err);
    *out = *kv->val != 0;
    return 1;
}

int gguf_get_str(const gguf_file *g, const char *key, const char **out, size_t *len, kiln_err *err) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return 0;
    if (kv->type != GGUF_STRING) return wrong(g, kv, "string", err);
    *out = (const char *)kv->val;
    *len = (size_t)kv->str_len;
    return 1;
}

int gguf_get_strdup(const gguf_file *g, const char *key, char **out, kiln_err *err) {
    const char *s = NULL;
    size_t n = 0;
    *out = NULL;
    int rc = gguf_get_str(g, key, &s, &n, err);
    if (rc != 1) return rc;
    *out = malloc(n + 1);
    if (!*out) return kiln_err_set(err, "out of memory");
    memcpy(*out, s, n);
    (*out)[n] = 0;
    return 1;
}

int gguf_get_arr(const gguf_file *g, const char *key, gguf_vtype *elem_type, uint64_t *n, kiln_err *err) {
    const gguf_kv *kv = gguf_find_kv(g, key);
    if (!kv) return 0;
    if (kv->type != GGUF_ARRAY) return wrong(g, kv, "array", err);
    *elem_type = kv->arr_type;
    *n = kv->arr_n;
    return 1;
}

const char *gguf_arr_str(const gguf_kv *kv, uint64_t i, size_t *len) {
    if (kv->type != GGUF_ARRAY || kv->arr_type != GGUF_STRING || i >= kv->arr_n) return NULL;
    *len = (size_t)le(kv->arr_str[i], 8);
    return (const char *)kv->arr_str[i] + 8;
}

const void *gguf_arr_data(const gguf_kv *kv) {
    return kv->type == GGUF_ARRAY && kv->arr_type != GGUF_STRING ? kv->val : NULL;
}

int gguf_arr_int(const gguf_kv *kv, uint64_t i, int64_t *out) {
    if (!gguf_arr_data(kv) || i >= kv->arr_n || !is_int_type(kv->arr_type)) return -1;
    uint64_t m;
    bool neg;
    int_at(kv->val + i * vtype_size[kv->arr_type], kv->arr_type, &m, &neg);
    if (!neg && m > INT64_MAX) return -1;
    *out = neg ? (int64_t)(0 - m) : (int64_t)m;
    return 0;
}

int gguf_arr_f64(const gguf_kv *kv, uint64_t i, double *out) {
    if (!gguf_arr_data(kv) || i >= kv->arr_n || kv->arr_type == GGUF_BOOL) return -1;
    if (kv->arr_type == GGUF_FLOAT32 || kv->arr_type == GGUF_FLOAT64) {
        *out = float_at(kv->val + i * vtype_size[kv->arr_type], kv->arr_type);
        return 0;
    }
    int64_t v;
    if (gguf_arr_int(kv, i, &v)) return -1;
    *out = (double)v;
    return 0;
}
