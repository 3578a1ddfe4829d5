/* shards.h — a checkpoint's safetensors files: model.safetensors, or the shards its
 * model.safetensors.index.json names (internal). The loader and `kiln info --model` both open a checkpoint
 * through here, so they see the same tensors. */
#ifndef KILN_SHARDS_H
#define KILN_SHARDS_H

#include "model/safetensors.h"

typedef struct st_set {
    st_file *files;
    int n_files;
    char *source; /* the file errors name: model.safetensors or the shard index */
} st_set;

/* Opens dir's checkpoint files (every header validated, see safetensors.h). On failure s is left
 * closable (st_set_close is safe). */
int st_set_open(st_set *s, const char *dir, kiln_err *err);
void st_set_close(st_set *s);
/* Unmaps the files (their tensors' data pointers become invalid) but keeps source. */
void st_set_drop_files(st_set *s);
/* The tensor called name in any file (and that file in *where, if non-NULL), or NULL. */
const st_tensor *st_set_find(const st_set *s, const char *name, const st_file **where);

#endif
