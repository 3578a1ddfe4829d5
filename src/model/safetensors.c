/* safetensors.c — mmap a .safetensors file and check every claim its header makes against the file.
 *
 * Nothing in the header is trusted: the header length against the file size, the JSON itself, each
 * dtype, shape and offset pair, the byte span against shape × element size, and that no two tensors
 * overlap. A file that passes can be read anywhere its tensors say without leaving the mapping. */
#include "model/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_HEADER (100u << 20) /* the format's own limit: 100 MB */

static int dtype_from_str(const char *s, kiln_dtype *dt, size_t *elem) {
    if (!strcmp(s, "F32")) *dt = KILN_DT_F32, *elem = 4;
    else if (!strcmp(s, "F16")) *dt = KILN_DT_F16, *elem = 2;
    else if (!strcmp(s, "BF16")) *dt = KILN_DT_BF16, *elem = 2;
    else return -1;
    return 0;
}

static int parse_tensor(st_tensor *t, const char *name, json_t *v, const uint8_t *data, size_t data_size,
                        const char *path, kiln_err *err) {
    t->name = strdup(name);
    if (!t->name) return kiln_err_set(err, "%s: out of memory", path);
    if (!json_is_object(v)) return kiln_err_set(err, "%s: tensor %s: header entry is not an object", path, name);
    const char *ds = json_string_value(json_object_get(v, "dtype"));
    if (!ds) return kiln_err_set(err, "%s: tensor %s: missing dtype", path, name);
    size_t elem;
    if (dtype_from_str(ds, &t->dt, &elem))
        return kiln_err_set(err, "%s: tensor %s: unsupported dtype %s (supported: F32, F16, BF16)", path, name, ds);
    json_t *shape = json_object_get(v, "shape");
    if (!json_is_array(shape) || json_array_size(shape) > ST_MAX_DIMS)
        return kiln_err_set(err, "%s: tensor %s: shape must be a list of at most %d dimensions", path, name,
                            ST_MAX_DIMS);
    t->ndim = (int)json_array_size(shape);
    uint64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        json_t *d = json_array_get(shape, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > (1ll << 40))
            return kiln_err_set(err, "%s: tensor %s: bad shape dimension %d", path, name, i);
        t->shape[i] = json_integer_value(d);
        numel *= (uint64_t)t->shape[i];
        if (numel > (1ull << 42)) return kiln_err_set(err, "%s: tensor %s: shape too large", path, name);
    }
    json_t *off = json_object_get(v, "data_offsets");
    json_t *b = json_array_get(off, 0), *e = json_array_get(off, 1);
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_is_integer(b) || !json_is_integer(e))
        return kiln_err_set(err, "%s: tensor %s: data_offsets must be [begin, end]", path, name);
    json_int_t begin = json_integer_value(b), end = json_integer_value(e);
    if (begin < 0 || end < begin || (uint64_t)end > data_size)
        return kiln_err_set(err, "%s: tensor %s: data_offsets [%lld, %lld] outside the data area (%zu bytes)", path,
                            name, (long long)begin, (long long)end, data_size);
    t->nbytes = (size_t)(end - begin);
    t->offset = (size_t)begin;
    if ((uint64_t)t->nbytes != numel * elem)
        return kiln_err_set(err, "%s: tensor %s: %zu bytes but shape × %s needs %llu", path, name, t->nbytes, ds,
                            (unsigned long long)(numel * elem));
    t->data = data + begin;
    if ((uintptr_t)t->data % elem) { /* legal but unaligned: keep an aligned copy so kernels may load words */
        t->owned = malloc(t->nbytes ? t->nbytes : 1);
        if (!t->owned) return kiln_err_set(err, "%s: tensor %s: out of memory", path, name);
        memcpy(t->owned, t->data, t->nbytes);
        t->data = t->owned;
    }
    return 0;
}

static int cmp_by_offset(const void *a, const void *b) {
    const st_tensor *x = *(const st_tensor *const *)a, *y = *(const st_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* No two tensors may share bytes (zero-sized ones excepted): sort by offset, compare neighbours. */
static int check_overlaps(st_file *f, kiln_err *err) {
    st_tensor **order = malloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *order);
    if (!order) return kiln_err_set(err, "%s: out of memory", f->path);
    for (int i = 0; i < f->n_tensors; i++) order[i] = &f->tensors[i];
    qsort(order, (size_t)f->n_tensors, sizeof *order, cmp_by_offset);
    int rc = 0;
    for (int i = 1; i < f->n_tensors && !rc; i++) {
        const st_tensor *prev = order[i - 1], *cur = order[i];
        if (cur->nbytes && prev->nbytes && cur->offset < prev->offset + prev->nbytes)
            rc = kiln_err_set(err, "%s: tensor %s overlaps tensor %s", f->path, cur->name, prev->name);
    }
    free(order);
    return rc;
}

static int parse_header(st_file *f, const char *json, size_t len, const uint8_t *data, size_t data_size,
                        kiln_err *err) {
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!root) return kiln_err_set(err, "%s: malformed header JSON: %s", f->path, je.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = kiln_err_set(err, "%s: header is not a JSON object", f->path);
        goto out;
    }
    size_t n = json_object_size(root);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) {
        rc = kiln_err_set(err, "%s: out of memory", f->path);
        goto out;
    }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) continue;
        st_tensor *t = &f->tensors[f->n_tensors++];
        if ((rc = parse_tensor(t, key, v, data, data_size, f->path, err))) break;
    }
    if (!rc) rc = check_overlaps(f, err);
out:
    json_decref(root);
    return rc;
}

int st_open(st_file *f, const char *path, kiln_err *err) {
    memset(f, 0, sizeof *f);
    f->path = strdup(path);
    if (!f->path) return kiln_err_set(err, "%s: out of memory", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        kiln_err_set(err, "%s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        kiln_err_set(err, "%s: not a regular file", path);
        goto fail;
    }
    f->size = (size_t)st.st_size;
    if (f->size < 8) {
        close(fd);
        kiln_err_set(err, "%s: truncated (%zu bytes, no header length)", path, f->size);
        goto fail;
    }
    f->map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (f->map == MAP_FAILED) {
        f->map = NULL;
        kiln_err_set(err, "%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    const uint8_t *p = f->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | p[i];
    if (hlen == 0 || hlen > MAX_HEADER || hlen > f->size - 8) {
        kiln_err_set(err, "%s: header length %llu does not fit the file (%zu bytes): truncated or not safetensors",
                     path, (unsigned long long)hlen, f->size);
        goto fail;
    }
    if (parse_header(f, (const char *)p + 8, (size_t)hlen, p + 8 + hlen, f->size - 8 - (size_t)hlen, err)) goto fail;
    return 0;
fail:
    st_close(f);
    return -1;
}

void st_close(st_file *f) {
    for (int i = 0; i < f->n_tensors; i++) {
        free(f->tensors[i].name);
        free(f->tensors[i].owned);
    }
    free(f->tensors);
    if (f->map) munmap(f->map, f->size);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name) {
    for (int i = 0; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[i].name, name)) return &f->tensors[i];
    return NULL;
}

int64_t st_numel(const st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}
