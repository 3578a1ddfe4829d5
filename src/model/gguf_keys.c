/* gguf_keys.c — the `{arch}.*` key table (see gguf_keys.h), in the order llama.cpp's converter writes it. */
#include "model/gguf_keys.h"

#define CFG(f) offsetof(kiln_config, f)
#define BIG (1u << 24)

const gguf_arch_key gguf_arch_keys[] = {
    {"context_length", CFG(max_position_embeddings), GK_INT, false, 1, 1u << 28, 2048, 0, false},
    {"embedding_length", CFG(hidden_size), GK_INT, true, 1, BIG, 0, 0, false},
    {"feed_forward_length", CFG(intermediate_size), GK_INT, true, 1, BIG, 0, 0, false},
    {"block_count", CFG(n_layers), GK_INT, true, 1, 4096, 0, 0, false},
    {"attention.head_count", CFG(n_heads), GK_INT, true, 1, 4096, 0, 0, false},
    {"attention.head_count_kv", CFG(n_kv_heads), GK_INT, false, 1, 4096, 0, CFG(n_heads), false},
    {"rope.freq_base", CFG(rope_theta), GK_DOUBLE, false, 0, 0, 10000.0, 0, false},
    {"attention.layer_norm_rms_epsilon", CFG(rms_norm_eps), GK_FLOAT, true, 0, 0, 0, 0, false},
    /* key_length's default is hidden / heads: gguf_model.c fills head_dim with it before the walk */
    {"attention.key_length", CFG(head_dim), GK_INT, false, 2, 65536, 0, CFG(head_dim), false},
    {"attention.value_length", CFG(head_dim), GK_INT, false, 1, 65536, 0, CFG(head_dim), true},
    /* the rotated dims of each head: all of them unless partial rotary (Phi-4-mini) */
    {"rope.dimension_count", CFG(rope_dim), GK_INT, false, 2, 65536, 0, CFG(head_dim), false},
    /* read after the tensors (its default is token_embd's row count): gguf_model.c reads it by name */
    {"vocab_size", CFG(vocab_size), GK_INT, false, 1, 1u << 28, 0, CFG(vocab_size), false},
};
const size_t gguf_n_arch_keys = sizeof gguf_arch_keys / sizeof gguf_arch_keys[0];
