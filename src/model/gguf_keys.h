/* gguf_keys.h — the `{arch}.*` hyperparameter keys of a GGUF file and the kiln_config field each one is:
 * ONE table that the reader (gguf_model.c) and the writer (gguf_write.c) both walk (internal). */
#ifndef KILN_GGUF_KEYS_H
#define KILN_GGUF_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

typedef enum { GK_INT, GK_FLOAT, GK_DOUBLE } gguf_key_kind; /* the field's C type (int, float, double) */

typedef struct gguf_arch_key {
    const char *suffix;  /* the key is "{arch}." + suffix */
    size_t field;        /* offsetof(kiln_config, ...) */
    gguf_key_kind kind;  /* written as u32 (GK_INT) or f32 */
    bool required;       /* reading: absent is an error; else the default below */
    uint32_t lo, hi;     /* GK_INT: the accepted range */
    double dflt;         /* absent: this value ... */
    size_t dflt_field;   /* ... or, when non-zero, that field's (already read) value */
    bool same_as_field;  /* another key for a field read before: must equal it (reading) */
} gguf_arch_key;

extern const gguf_arch_key gguf_arch_keys[];
extern const size_t gguf_n_arch_keys;

#endif
