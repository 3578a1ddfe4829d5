/* gguf_model.h — a GGUF model as the loader sees a checkpoint: its kiln_config from the `{arch}.*` keys
 * and its tensors as an st_set under the Hugging Face names (internal).
 *
 * kiln_config_load and st_set_open hand a GGUF source to these, so every command that loads a model (and
 * `kiln info`) opens GGUF files through the same path as safetensors checkpoints. A GGUF source is a
 * .gguf file (or any file starting with the GGUF magic), one part of a split model
 * (NAME-00001-of-0000N.gguf: any part may be named, all are opened), or a directory without config.json
 * holding one GGUF model (a single file or one split set).
 *
 * llama.cpp's converter permutes the rows of attn_q / attn_k (and their biases) of llama-architecture
 * models per head so that its adjacent-pair RoPE reproduces Hugging Face's rotate-half RoPE. The loader
 * undoes that permutation once at load (rows are moved whole, so it is exact for every tensor type), and
 * the forward pass stays the one rotate-half RoPE for every model.
 *
 * Mixture-of-experts files (qwen3moe, and llama with {arch}.expert_count: Mixtral) stack each layer's
 * experts in one 3-D tensor per matrix (blk.N.ffn_{gate,up,down}_exps); the loader sees each expert's
 * slice as its own 2-D tensor under its Hugging Face name, so the tables' per-expert rows bind as they do
 * from safetensors. */
#ifndef KILN_GGUF_MODEL_H
#define KILN_GGUF_MODEL_H

#include <stdbool.h>

#include "kiln.h"
#include "model/shards.h"
#include "model/tensors.h"

/* llama.cpp's per-frequency RoPE divisors (Llama 3 scaling): [head_dim / 2] f32, outside the layer tables
 * because Hugging Face checkpoints have no such tensor (they compute it from rope_scaling). */
#define GGUF_ROPE_FREQS "rope_freqs.weight"
/* Longrope's frequency divisors (Phi-3 128k): [rope_dim / 2] f32 each, as llama.cpp's converter writes them. */
#define GGUF_ROPE_FACTORS_LONG "rope_factors_long.weight"
#define GGUF_ROPE_FACTORS_SHORT "rope_factors_short.weight"

/* (config.c) The flags an architecture fixes, whatever the source: Phi-3's fused projections, OLMo-2's
 * norms (kiln_config). */
void config_arch_flags(kiln_config *c);

/* "a, b, c": the names of a table's n rows, stride bytes apart, each row starting with its const char *name
 * (the architecture tables of config.c and gguf_model.c, for the error naming what kiln runs). */
void table_names_join(char *out, size_t cap, const void *table, size_t n, size_t stride);

/* Whether path names a GGUF source (above). */
bool gguf_source(const char *path);
/* The file holding a GGUF source's metadata (the model's only file, or part 1 of a split): malloc'd, or
 * NULL with err set. The tokenizer (tokenizer.ggml.*) and template (tokenizer.chat_template) are read
 * from this file. */
char *gguf_model_file(const char *path, kiln_err *err);
/* kiln_config from the GGUF's metadata (and tensor list: tied output, biases). */
int gguf_config_load(const char *path, kiln_config *cfg, kiln_err *err);
/* Opens every part; the set's tensors carry Hugging Face names and [rows, cols] shapes, q/k un-permuted.
 * On failure s is left closable. */
int gguf_set_open(st_set *s, const char *path, kiln_err *err);

/* Writing (gguf_write.c) uses the same facts: the GGUF architecture name of a (NULL: none), whether the
 * converter permutes its q/k rows, the window-layer period llama.cpp assumes for it and whether llama.cpp
 * applies a window to it at all; whether a window period puts layer l in the window (llama.cpp's
 * set_swa_pattern); the head count whose rows tensor d (of layer) has permuted (0: not permuted); the
 * permutation itself, to GGUF's order or back (rows of row_bytes moved whole). */
const char *gguf_arch_name(kiln_arch a, bool *permuted, int *swa_pattern, bool *windows);
bool gguf_swa_period_windows(int pattern, int layer);
int gguf_permuted_heads(const kiln_config *c, const tensor_desc *d, int layer);
void gguf_permute_rows(char *dst, const char *src, int64_t rows, size_t row_bytes, int heads, bool to_gguf);

/* (gguf_write.c) The config a GGUF written from checkpoint config c reads back as (Mistral labelled llama,
 * Gemma's norms holding 1 + w, Llama 3 scaling as the rope_freqs tensor), and the first field that decides
 * the forward pass in which got differs from want (NULL: none). The writer refuses a file whose config
 * would read back differently, naming the field. */
void gguf_expected_config(const kiln_config *c, kiln_config *want);
const char *gguf_config_differs(const kiln_config *want, const kiln_config *got);

#endif
