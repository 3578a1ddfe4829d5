/* safetensors.c — mmap and validation of safetensors files (see safetensors.h). */
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "kernels/format.h"

/* Largest header the reference implementation accepts (100 MB). */
#define ST_MAX_HEADER (100u * 1000 * 1000)

/* The formats safetensors can hold (kern_formats[].st_name), one value per block. */
static int parse_dtype(const char *s, kiln_dtype *dt, size_t *esize) {
    for (int i = 0; i < KILN_DT_COUNT; i++)
        if (kern_formats[i].st_name && strcmp(s, kern_formats[i].st_name) == 0) {
            *dt = (kiln_dtype)i, *esize = kern_formats[i].block_bytes;
            return 0;
        }
    return -1;
}

static int cmp_by_offset(const void *a, const void *b) {
    const st_tensor *x = a, *y = b;
    const char *px = x->data, *py = y->data;
    return px < py ? -1 : px > py;
}

/* One header entry → t. base is the data area (data_len bytes). */
static int parse_entry(const char *path, const char *name, json_t *e, const char *base, size_t data_len,
                       st_tensor *t, kiln_err *err) {
    if (!json_is_object(e)) return kiln_err_set(err, "%s: tensor '%s': entry is not an object", path, name);
    json_t *jd = json_object_get(e, "dtype"), *js = json_object_get(e, "shape"),
           *jo = json_object_get(e, "data_offsets");
    if (!json_is_string(jd)) return kiln_err_set(err, "%s: tensor '%s': missing dtype", path, name);
    size_t esize;
    if (parse_dtype(json_string_value(jd), &t->dt, &esize))
        return kiln_err_set(err, "%s: tensor '%s': dtype '%s' not supported (F32, F16, BF16)", path, name,
                            json_string_value(jd));
    if (!json_is_array(js) || json_array_size(js) > ST_MAX_DIMS)
        return kiln_err_set(err, "%s: tensor '%s': bad shape", path, name);
    t->ndim = (int)json_array_size(js);
    size_t count = 1;
    for (int i = 0; i < t->ndim; i++) {
        json_t *d = json_array_get(js, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return kiln_err_set(err, "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, i);
        t->shape[i] = json_integer_value(d);
        if (__builtin_mul_overflow(count, (size_t)t->shape[i], &count))
            return kiln_err_set(err, "%s: tensor '%s': shape overflows", path, name);
    }
    size_t nbytes;
    if (__builtin_mul_overflow(count, esize, &nbytes))
        return kiln_err_set(err, "%s: tensor '%s': shape overflows", path, name);
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return kiln_err_set(err, "%s: tensor '%s': data_offsets must be [begin, end]", path, name);
    json_int_t b = json_integer_value(json_array_get(jo, 0)), en = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || en < b || (uint64_t)en > data_len)
        return kiln_err_set(err, "%s: tensor '%s': data_offsets [%lld, %lld] outside the data area (%zu bytes)", path,
                            name, (long long)b, (long long)en, data_len);
    if ((size_t)(en - b) != nbytes)
        return kiln_err_set(err, "%s: tensor '%s': data_offsets span %lld bytes but shape x dtype needs %zu", path,
                            name, (long long)(en - b), nbytes);
    t->data = base + b;
    t->nbytes = nbytes;
    /* The kernels read elements through typed pointers: misaligned data would be undefined behaviour. */
    if ((uintptr_t)t->data % esize)
        return kiln_err_set(err, "%s: tensor '%s': data not aligned to its %zu-byte elements", path, name, esize);
    t->name = strdup(name);
    if (!t->name) return kiln_err_set(err, "out of memory");
    return 0;
}

int st_parse(st_file *f, const void *buf, size_t size, const char *path, kiln_err *err) {
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return kiln_err_set(err, "out of memory");
    const unsigned char *p = buf;
    if (size < 8) goto fail_msg_short;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen > size - 8 || hlen > ST_MAX_HEADER) {
        kiln_err_set(err, "%s: header length %llu exceeds the file size %zu", path, (unsigned long long)hlen, size);
        goto fail;
    }
    json_error_t je;
    json_t *h = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!h || !json_is_object(h)) {
        kiln_err_set(err, "%s: header is not a JSON object (%s)", path, h ? "wrong type" : je.text);
        json_decref(h);
        goto fail;
    }
    const char *base = (const char *)p + 8 + hlen;
    size_t data_len = size - 8 - (size_t)hlen;
    f->tensors = calloc(json_object_size(h) + 1, sizeof *f->tensors);
    if (!f->tensors) {
        kiln_err_set(err, "out of memory");
        json_decref(h);
        goto fail;
    }
    const char *name;
    json_t *e;
    json_object_foreach(h, name, e) {
        if (strcmp(name, "__metadata__") == 0) {
            if (!json_is_object(e)) {
                kiln_err_set(err, "%s: __metadata__ is not an object", path);
                json_decref(h);
                goto fail;
            }
            continue;
        }
        if (parse_entry(path, name, e, base, data_len, &f->tensors[f->n_tensors], err)) {
            json_decref(h);
            goto fail;
        }
        f->n_tensors++;
    }
    json_decref(h);
    /* No two tensors may share bytes: sort a copy by start and check neighbours. */
    st_tensor *sorted = malloc((size_t)f->n_tensors * sizeof *sorted + 1);
    if (!sorted) {
        kiln_err_set(err, "out of memory");
        goto fail;
    }
    memcpy(sorted, f->tensors, (size_t)f->n_tensors * sizeof *sorted);
    qsort(sorted, (size_t)f->n_tensors, sizeof *sorted, cmp_by_offset);
    for (int i = 1; i < f->n_tensors; i++) {
        const st_tensor *a = &sorted[i - 1], *b = &sorted[i];
        if ((const char *)a->data + a->nbytes > (const char *)b->data) {
            kiln_err_set(err, "%s: tensor '%s' overlaps tensor '%s'", path, b->name, a->name);
            free(sorted);
            goto fail;
        }
    }
    free(sorted);
    return 0;
fail_msg_short:
    kiln_err_set(err, "%s: file too short for a safetensors header (%zu bytes)", path, size);
fail:
    st_close(f);
    return -1;
}

static int parse_st(void *f, const void *buf, size_t size, const char *path, kiln_err *err) {
    return st_parse(f, buf, size, path, err);
}

int st_open(st_file *f, const char *path, kiln_err *err) {
    memset(f, 0, sizeof *f);
    return kiln_map_parse(path, parse_st, f, &f->map, &f->size, err);
}

void st_close(st_file *f) {
    for (int i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->owned);
    free(f->path);
    if (f->map) munmap(f->map, f->size);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}
