/* gguf_keys.c — the `{arch}.*` key table (see gguf_keys.h), in the order llama.cpp's converter writes it. */
#include "model/gguf_keys.h"

#include <string.h>

#define CFG(f) offsetof(kiln_config, f)
#define BIG (1u << 24)

const gguf_arch_key gguf_arch_keys[] = {
    {"context_length", CFG(max_position_embeddings), GK_INT, false, 1, 1u << 28, 2048, 0, false, GW_ALWAYS},
    {"embedding_length", CFG(hidden_size), GK_INT, true, 1, BIG, 0, 0, false, GW_ALWAYS},
    {"feed_forward_length", CFG(intermediate_size), GK_INT, true, 1, BIG, 0, 0, false, GW_ALWAYS},
    {"block_count", CFG(n_layers), GK_INT, true, 1, 4096, 0, 0, false, GW_ALWAYS},
    {"attention.head_count", CFG(n_heads), GK_INT, true, 1, 4096, 0, 0, false, GW_ALWAYS},
    {"attention.head_count_kv", CFG(n_kv_heads), GK_INT, false, 1, 4096, 0, CFG(n_heads), false, GW_ALWAYS},
    {"rope.freq_base", CFG(rope_theta), GK_DOUBLE, false, 0, 0, 10000.0, 0, false, GW_ALWAYS},
    {"attention.layer_norm_rms_epsilon", CFG(rms_norm_eps), GK_FLOAT, true, 0, 0, 0, 0, false, GW_ALWAYS},
    /* key_length's default is hidden / heads: gguf_model.c fills head_dim with it before the walk */
    {"attention.key_length", CFG(head_dim), GK_INT, false, 2, 65536, 0, CFG(head_dim), false, GW_ALWAYS},
    {"attention.value_length", CFG(head_dim), GK_INT, false, 1, 65536, 0, CFG(head_dim), true, GW_ALWAYS},
    /* the rotated dims of each head: all of them unless partial rotary (Phi-4-mini) */
    {"rope.dimension_count", CFG(rope_dim), GK_INT, false, 2, 65536, 0, CFG(head_dim), false, GW_ALWAYS},
    /* read after the tensors (its default is token_embd's row count): gguf_model.c reads it by name */
    {"vocab_size", CFG(vocab_size), GK_INT, false, 1, 1u << 28, 0, CFG(vocab_size), false, GW_ALWAYS},
    /* the architecture-specific keys (gguf_model.c's read_moe, read_window, read_gemma, read_longrope) */
    {GK_EXPERT_COUNT, CFG(n_experts), GK_INT, false, 0, KILN_MAX_EXPERTS, 0, 0, false, GW_MOE},
    {GK_EXPERT_USED, CFG(n_experts_used), GK_INT, true, 1, KILN_MAX_EXPERTS, 0, 0, false, GW_MOE},
    {GK_EXPERT_FFN, CFG(expert_ffn_size), GK_INT, false, 1, BIG, 0, CFG(intermediate_size), false, GW_QWEN_MOE},
    {GK_WINDOW, CFG(sliding_window), GK_INT, false, 0, 1u << 30, 0, 0, false, GW_WINDOW},
    {GK_ATTN_SOFTCAP, CFG(attn_logit_softcap), GK_FLOAT, false, 0, 0, 0, 0, false, GW_SOFTCAP},
    {GK_FINAL_SOFTCAP, CFG(final_logit_softcap), GK_FLOAT, false, 0, 0, 0, 0, false, GW_SOFTCAP},
    {GK_ROPE_BASE_SWA, CFG(rope_local_theta), GK_DOUBLE, false, 0, 0, 0, 0, false, GW_LOCAL_ROPE},
    {GK_ROPE_ORIG_CTX, CFG(rope_original_max_pos), GK_INT, true, 1, 1u << 28, 0, 0, false, GW_LONGROPE},
    {GK_ROPE_ATTN_FACTOR, CFG(rope_attn_factor), GK_DOUBLE, false, 0, 0, 1.0, 0, false, GW_LONGROPE},
};
const size_t gguf_n_arch_keys = sizeof gguf_arch_keys / sizeof gguf_arch_keys[0];

bool gguf_key_written(const gguf_arch_key *k, const kiln_config *c) {
    switch (k->when) {
    case GW_MOE: return c->n_experts > 0;
    case GW_QWEN_MOE: return c->n_experts > 0 && c->arch == KILN_ARCH_QWEN3_MOE;
    case GW_WINDOW: return c->sliding_window > 0;
    case GW_SOFTCAP: {
        float v;
        memcpy(&v, (const char *)c + k->field, sizeof v);
        return c->arch == KILN_ARCH_GEMMA2 || v != 0;
    }
    case GW_LOCAL_ROPE: return c->rope_local_theta > 0;
    case GW_LONGROPE: return c->rope_type == KILN_ROPE_LONGROPE;
    case GW_ALWAYS: break;
    }
    return true;
}
