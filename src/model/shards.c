/* shards.c — opening a checkpoint's safetensors files, single or sharded (see shards.h). */
#include "model/shards.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"

static const char *base_name(const char *path) {
    const char *p = strrchr(path, '/');
    return p ? p + 1 : path;
}

/* Index of the open shard whose file name is fname, or -1. */
static int shard_index(const st_set *s, const char *fname) {
    for (int i = 0; i < s->n_files; i++)
        if (strcmp(base_name(s->files[i].path), fname) == 0) return i;
    return -1;
}

static int open_single(st_set *s, const char *dir, kiln_err *err) {
    char *single = kiln_path_join(dir, "model.safetensors");
    char *real = single ? kiln_resolve_path(single) : NULL;
    free(single);
    if (!real) return kiln_err_set(err, "out of memory");
    s->source = real;
    s->files = calloc(1, sizeof *s->files);
    if (!s->files) return kiln_err_set(err, "out of memory");
    if (st_open(&s->files[0], real, err)) return -1;
    s->n_files = 1;
    return 0;
}

/* Opens every shard weight_map names (each once), then checks every mapped tensor is in its shard. */
static int open_shards(st_set *s, const char *dir, json_t *wm, kiln_err *err) {
    s->files = calloc(json_object_size(wm) + 1, sizeof *s->files);
    if (!s->files) return kiln_err_set(err, "out of memory");
    const char *name;
    json_t *v;
    json_object_foreach(wm, name, v) {
        if (!json_is_string(v) || strchr(json_string_value(v), '/'))
            return kiln_err_set(err, "%s: weight_map['%s'] is not a file name", s->source, name);
        if (shard_index(s, json_string_value(v)) >= 0) continue;
        char *path = kiln_path_join(dir, json_string_value(v));
        char *real = path ? kiln_resolve_path(path) : NULL;
        free(path);
        int rc = real ? st_open(&s->files[s->n_files], real, err) : kiln_err_set(err, "out of memory");
        free(real);
        if (rc) return -1;
        s->n_files++;
    }
    /* Every mapped tensor must be in the shard the index names (else the index is stale). */
    json_object_foreach(wm, name, v) {
        int i = shard_index(s, json_string_value(v));
        if (i < 0 || !st_find(&s->files[i], name))
            return kiln_err_set(err, "%s: tensor '%s' not found in %s", s->source, name, json_string_value(v));
    }
    return 0;
}

int st_set_open(st_set *s, const char *dir, kiln_err *err) {
    memset(s, 0, sizeof *s);
    char *idx = kiln_path_join(dir, "model.safetensors.index.json");
    char *idx_real = idx ? kiln_resolve_path(idx) : NULL;
    struct stat st;
    const bool oom = !idx_real, present = !oom && stat(idx_real, &st) == 0;
    free(idx_real);
    if (oom) {
        free(idx);
        return kiln_err_set(err, "out of memory");
    }
    if (!present) {
        free(idx);
        return open_single(s, dir, err);
    }
    s->source = idx;
    if (!S_ISREG(st.st_mode)) return kiln_err_set(err, "%s: not a regular file", idx);
    size_t len;
    char *text = kiln_read_file(idx, &len, err);
    if (!text) return -1;
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    free(text);
    json_t *wm = json_object_get(o, "weight_map");
    int rc = json_is_object(wm) ? open_shards(s, dir, wm, err)
                                : kiln_err_set(err, "%s: no weight_map object%s%s", idx, o ? "" : ": ", o ? "" : je.text);
    json_decref(o);
    return rc;
}

void st_set_drop_files(st_set *s) {
    for (int i = 0; i < s->n_files; i++) st_close(&s->files[i]);
    free(s->files);
    s->files = NULL;
    s->n_files = 0;
}

void st_set_close(st_set *s) {
    st_set_drop_files(s);
    free(s->source);
    s->source = NULL;
}

const st_tensor *st_set_find(const st_set *s, const char *name, const st_file **where) {
    for (int i = 0; i < s->n_files; i++) {
        const st_tensor *t = st_find(&s->files[i], name);
        if (t) {
            if (where) *where = &s->files[i];
            return t;
        }
    }
    return NULL;
}
