/* gguf_keys.h — the `{arch}.*` hyperparameter keys of a GGUF file and the kiln_config field each one is:
 * ONE table that the reader (gguf_model.c) and the writer (gguf_write.c) both walk (internal).
 *
 * The rows whose `when` is GW_ALWAYS are read generically (their defaults and ranges here); the others are
 * architecture-specific (experts, the window, Gemma's soft-caps and local RoPE base, longrope), written
 * when their condition holds and read by gguf_model.c's per-feature readers, whose defaults depend on the
 * architecture as llama.cpp's do. Their suffixes are the GK_* names below, the one spelling of each. */
#ifndef KILN_GGUF_KEYS_H
#define KILN_GGUF_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kiln.h"

#define GK_EXPERT_COUNT "expert_count"
#define GK_EXPERT_USED "expert_used_count"
#define GK_EXPERT_FFN "expert_feed_forward_length"
#define GK_WINDOW "attention.sliding_window"
#define GK_WINDOW_PATTERN "attention.sliding_window_pattern"
#define GK_ATTN_SOFTCAP "attn_logit_softcapping"
#define GK_FINAL_SOFTCAP "final_logit_softcapping"
#define GK_ROPE_BASE_SWA "rope.freq_base_swa"
#define GK_ROPE_ATTN_FACTOR "rope.scaling.attn_factor"
#define GK_ROPE_ORIG_CTX "rope.scaling.original_context_length"

typedef enum { GK_INT, GK_FLOAT, GK_DOUBLE } gguf_key_kind; /* the field's C type (int, float, double) */

/* When the writer writes a row (and whether the generic reader reads it: GW_ALWAYS only). */
typedef enum {
    GW_ALWAYS = 0,
    GW_MOE,        /* n_experts > 0 */
    GW_QWEN_MOE,   /* Qwen3-MoE (a Mixtral's experts are feed_forward_length wide) */
    GW_WINDOW,     /* sliding_window > 0 */
    GW_SOFTCAP,    /* Gemma 2 (its defaults are not zero), or a non-zero cap */
    GW_LOCAL_ROPE, /* rope_local_theta > 0 (Gemma 3) */
    GW_LONGROPE,   /* rope_type longrope (Phi-3 128k) */
} gguf_key_when;

typedef struct gguf_arch_key {
    const char *suffix;  /* the key is "{arch}." + suffix */
    size_t field;        /* offsetof(kiln_config, ...) */
    gguf_key_kind kind;  /* written as u32 (GK_INT) or f32 */
    bool required;       /* reading: absent is an error; else the default below */
    uint32_t lo, hi;     /* GK_INT: the accepted range */
    double dflt;         /* absent: this value ... */
    size_t dflt_field;   /* ... or, when non-zero, that field's (already read) value */
    bool same_as_field;  /* another key for a field read before: must equal it (reading) */
    gguf_key_when when;
} gguf_arch_key;

extern const gguf_arch_key gguf_arch_keys[];
extern const size_t gguf_n_arch_keys;

/* Whether the writer writes row k for config c. */
bool gguf_key_written(const gguf_arch_key *k, const kiln_config *c);

#endif
