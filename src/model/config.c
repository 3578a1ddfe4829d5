/* config.c — config.json → kiln_config for the Llama family (Llama, Mistral, Qwen2, Qwen3; Phi-3, OLMo-2)
 * and Gemma 2 / 3.
 *
 * Only the fields the forward pass needs are read; each is validated so that a bad config fails here,
 * with the field named, rather than as a shape mismatch or a crash later. */
#include <float.h>
#include <limits.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "common/json_get.h"
#include "kiln.h"
#include "model/gguf_model.h"

static const struct {
    const char *name;
    kiln_arch arch;
} archs[] = {
    {"LlamaForCausalLM", KILN_ARCH_LLAMA},
    {"MistralForCausalLM", KILN_ARCH_MISTRAL},
    {"Qwen2ForCausalLM", KILN_ARCH_QWEN2},
    {"Qwen3ForCausalLM", KILN_ARCH_QWEN3},
    {"Gemma2ForCausalLM", KILN_ARCH_GEMMA2},
    {"Gemma3ForCausalLM", KILN_ARCH_GEMMA3},
    {"Phi3ForCausalLM", KILN_ARCH_PHI3},
    {"Olmo2ForCausalLM", KILN_ARCH_OLMO2},
    {"Qwen3MoeForCausalLM", KILN_ARCH_QWEN3_MOE},
    {"MixtralForCausalLM", KILN_ARCH_MIXTRAL},
};

/* The json_get getters, with the file's path in front of their "'key' must be ..." and a default or
 * "missing field" for an absent key. def REQUIRED (integers) or NaN (numbers) means required. */
#define REQUIRED LONG_MIN
static int get_int(json_t *o, const char *key, long def, long lo, long hi, int *out, const char *path,
                   kiln_err *err) {
    long long x = def;
    kiln_err e;
    int rc = json_get_int(o, key, lo, hi, &x, &e);
    if (rc < 0) return kiln_err_set(err, "%s: %s", path, e.msg);
    if (rc == 0 && def == REQUIRED) return kiln_err_set(err, "%s: missing field '%s'", path, key);
    *out = (int)x;
    return 0;
}

static int get_num(json_t *o, const char *key, double def, double *out, const char *path, kiln_err *err) {
    double x = def;
    kiln_err e;
    int rc = json_get_num(o, key, -DBL_MAX, DBL_MAX, &x, &e);
    if (rc < 0) return kiln_err_set(err, "%s: %s", path, e.msg);
    if (rc == 0 && isnan(def)) return kiln_err_set(err, "%s: missing field '%s'", path, key);
    *out = x;
    return 0;
}

static int get_bool(json_t *o, const char *key, bool def, bool *out, const char *path, kiln_err *err) {
    kiln_err e;
    *out = def;
    return json_get_bool(o, key, out, &e) < 0 ? kiln_err_set(err, "%s: %s", path, e.msg) : 0;
}

static int parse_rope_scaling(json_t *rs, kiln_config *c, const char *path, kiln_err *err) {
    c->rope_type = KILN_ROPE_DEFAULT;
    c->rope_factor = 1.0;
    if (!rs || json_is_null(rs)) return 0;
    if (!json_is_object(rs)) return kiln_err_set(err, "%s: rope_scaling is not an object", path);
    /* transformers accepts both spellings; rope_type wins when both are present. */
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    if (!json_is_string(t)) return kiln_err_set(err, "%s: rope_scaling has no rope_type", path);
    const char *type = json_string_value(t);
    if (strcmp(type, "default") == 0) return 0;
    if (strcmp(type, "longrope") == 0 || strcmp(type, "su") == 0) { /* Phi-3's 128k models: parse_longrope */
        c->rope_type = KILN_ROPE_LONGROPE;
        return 0;
    }
    if (get_num(rs, "factor", NAN, &c->rope_factor, path, err)) return -1;
    if (c->rope_factor <= 0) return kiln_err_set(err, "%s: rope_scaling.factor must be > 0", path);
    if (strcmp(type, "linear") == 0) {
        c->rope_type = KILN_ROPE_LINEAR;
        return 0;
    }
    if (strcmp(type, "llama3") == 0) {
        c->rope_type = KILN_ROPE_LLAMA3;
        if (get_num(rs, "low_freq_factor", NAN, &c->rope_low_freq_factor, path, err) ||
            get_num(rs, "high_freq_factor", NAN, &c->rope_high_freq_factor, path, err) ||
            get_int(rs, "original_max_position_embeddings", REQUIRED, 1, 1L << 30, &c->rope_original_max_pos, path, err))
            return -1;
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor) || c->rope_low_freq_factor <= 0)
            return kiln_err_set(err, "%s: rope_scaling needs 0 < low_freq_factor < high_freq_factor", path);
        return 0;
    }
    return kiln_err_set(err, "%s: rope_scaling type '%s' not supported (default, linear, llama3, longrope)", path, type);
}

/* rope_scaling.<key>: n numbers > 0 (longrope's factors, one per rotated frequency). */
static int get_factors(json_t *rs, const char *key, int n, float *out, const char *path, kiln_err *err) {
    json_t *a = json_object_get(rs, key);
    if (!json_is_array(a) || (int)json_array_size(a) != n)
        return kiln_err_set(err, "%s: rope_scaling.%s must be a list of %d numbers (rope dims / 2)", path, key, n);
    for (int i = 0; i < n; i++) {
        double x = json_number_value(json_array_get(a, (size_t)i));
        if (!json_is_number(json_array_get(a, (size_t)i)) || !(x > 0) || !isfinite(x))
            return kiln_err_set(err, "%s: rope_scaling.%s[%d] must be a finite number > 0", path, key, i);
        out[i] = (float)x;
    }
    return 0;
}

/* Longrope ("su"), as transformers' _compute_longrope_parameters: each frequency divided by short_factor
 * (long_factor past the original context), cos and sin scaled by attention_factor, which defaults to
 * sqrt(1 + ln s / ln original) for s = max_position_embeddings / original_max_position_embeddings > 1.
 * Phi-3 configs always have the original (Phi3Config's default: 4096); elsewhere it is max_position_embeddings
 * and s is rope_scaling.factor. */
static int parse_longrope(json_t *o, kiln_config *c, const char *path, kiln_err *err) {
    json_t *rs = json_object_get(o, "rope_scaling");
    const int n = c->rope_dim / 2;
    if (n > KILN_ROPE_MAX_FACTORS)
        return kiln_err_set(err, "%s: longrope over %d rotated dims not supported (at most %d)", path, c->rope_dim,
                            2 * KILN_ROPE_MAX_FACTORS);
    if (get_factors(rs, "short_factor", n, c->rope_short_factor, path, err) ||
        get_factors(rs, "long_factor", n, c->rope_long_factor, path, err))
        return -1;
    const bool phi3 = c->arch == KILN_ARCH_PHI3;
    double s = 1.0;
    if (get_int(o, "original_max_position_embeddings", phi3 ? 4096 : c->max_position_embeddings, 1, 1L << 28,
                &c->rope_original_max_pos, path, err) ||
        get_num(rs, "factor", 1.0, &s, path, err))
        return -1;
    if (phi3 || json_object_get(o, "original_max_position_embeddings"))
        s = (double)c->max_position_embeddings / c->rope_original_max_pos;
    c->rope_attn_factor = s > 1 ? sqrt(1 + log(s) / log(c->rope_original_max_pos)) : 1.0;
    if (get_num(rs, "attention_factor", c->rope_attn_factor, &c->rope_attn_factor, path, err)) return -1;
    if (!(c->rope_attn_factor > 0)) return kiln_err_set(err, "%s: rope_scaling.attention_factor must be > 0", path);
    return 0;
}

/* The rotated dims: int(head_dim * partial_rotary_factor), as transformers (Phi-4-mini: 0.75). */
static int parse_rope_dim(json_t *o, kiln_config *c, const char *path, kiln_err *err) {
    double f = 1.0;
    if (get_num(o, "partial_rotary_factor", 1.0, &f, path, err)) return -1;
    c->rope_dim = (int)(c->head_dim * f);
    if (!(f > 0 && f <= 1) || c->rope_dim < 2 || c->rope_dim % 2)
        return kiln_err_set(err, "%s: partial_rotary_factor %g gives %d rotated dims of %d (want an even number >= 2)",
                            path, f, c->rope_dim, c->head_dim);
    return 0;
}

static bool is_gemma(const kiln_config *c) { return c->arch == KILN_ARCH_GEMMA2 || c->arch == KILN_ARCH_GEMMA3; }

/* The MLP's activation, by transformers' ACT2FN name: Gemma reads hidden_activation (hidden_act is its legacy
 * spelling), the Llama family hidden_act. */
static int parse_act(json_t *o, kiln_config *c, const char *path, kiln_err *err) {
    const char *key = "hidden_activation";
    json_t *act = is_gemma(c) ? json_object_get(o, key) : NULL;
    if (!act || json_is_null(act)) act = json_object_get(o, key = "hidden_act");
    c->hidden_act = is_gemma(c) ? KILN_ACT_GELU_TANH : KILN_ACT_SILU;
    if (!act || json_is_null(act)) return 0;
    const char *name = json_is_string(act) ? json_string_value(act) : "";
    if (strcmp(name, "silu") == 0) c->hidden_act = KILN_ACT_SILU;
    else if (strcmp(name, "gelu_pytorch_tanh") == 0) c->hidden_act = KILN_ACT_GELU_TANH;
    else return kiln_err_set(err, "%s: %s '%s' not supported (silu, gelu_pytorch_tanh)", path, key, name);
    return 0;
}

/* A soft-capping value: def when the key is absent, 0 (none) when it is null. */
static int get_cap(json_t *o, const char *key, double def, float *out, const char *path, kiln_err *err) {
    json_t *v = json_object_get(o, key);
    double x = def;
    if (v && json_is_null(v)) x = 0;
    else if (get_num(o, key, def, &x, path, err)) return -1;
    if (x < 0) return kiln_err_set(err, "%s: '%s' must be >= 0 or null", path, key);
    *out = (float)x;
    return 0;
}

/* Which layers use the window, from layer_types ("sliding_attention" / "full_attention"). */
static int parse_layer_types(json_t *lt, kiln_config *c, const char *path, kiln_err *err) {
    if (!json_is_array(lt) || (int)json_array_size(lt) != c->n_layers)
        return kiln_err_set(err, "%s: layer_types must list %d layer kinds", path, c->n_layers);
    for (int l = 0; l < c->n_layers; l++) {
        const char *t = json_string_value(json_array_get(lt, (size_t)l));
        if (t && strcmp(t, "sliding_attention") == 0) c->swa_layers[l / 64] |= 1ull << (l % 64);
        else if (!t || strcmp(t, "full_attention") != 0)
            return kiln_err_set(err, "%s: layer_types[%d] '%s' not supported (sliding_attention, full_attention)", path, l,
                                t ? t : "?");
    }
    return 0;
}

/* The sliding window and its layers, as transformers decides them: layer_types when given, else Gemma 2
 * alternates (even layers local), Gemma 3 has sliding_window_pattern - 1 local layers then a global one,
 * Qwen2/3 window layers >= max_window_layers only with use_sliding_window, and a Llama-family config (Mistral)
 * with a non-null sliding_window windows every layer. */
static int parse_window(json_t *o, kiln_config *c, const char *path, kiln_err *err) {
    json_t *w = json_object_get(o, "sliding_window");
    bool qwen = c->arch == KILN_ARCH_QWEN2 || c->arch == KILN_ARCH_QWEN3, use = !qwen;
    if (qwen && get_bool(o, "use_sliding_window", false, &use, path, err)) return -1;
    if (!use || (w && json_is_null(w))) return 0;
    if (!w && !is_gemma(c)) return 0;
    if (get_int(o, "sliding_window", 4096, 1, 1L << 30, &c->sliding_window, path, err)) return -1; /* Gemma's default */
    json_t *lt = json_object_get(o, "layer_types");
    if (lt && !json_is_null(lt)) return parse_layer_types(lt, c, path, err);
    int pattern = 1, first = 0; /* layer l is local unless (l + 1) % pattern == 0 (pattern 1: every layer) */
    if (c->arch == KILN_ARCH_GEMMA2) pattern = 2;
    if (c->arch == KILN_ARCH_GEMMA3 && get_int(o, "sliding_window_pattern", 6, 1, 1L << 20, &pattern, path, err))
        return -1;
    if (qwen && get_int(o, "max_window_layers", 28, 0, 1L << 20, &first, path, err)) return -1;
    for (int l = first; l < c->n_layers; l++)
        if (pattern == 1 || (l + 1) % pattern) c->swa_layers[l / 64] |= 1ull << (l % 64);
    return 0;
}

/* Gemma 2 / 3: offset norms, sandwich norms, the scaled embedding, query_pre_attn_scalar, soft-capping (Gemma
 * 2's defaults 50 / 30; Gemma 3's none) and Gemma 3's local RoPE base. */
static int parse_gemma(json_t *o, kiln_config *c, const char *path, kiln_err *err) {
    const bool g2 = c->arch == KILN_ARCH_GEMMA2;
    double qpas;
    bool bidirectional = false;
    c->norm_offset = true;
    c->embed_scale = (float)sqrt((double)c->hidden_size);
    if (get_num(o, "query_pre_attn_scalar", 256, &qpas, path, err) ||
        get_cap(o, "attn_logit_softcapping", g2 ? 50 : 0, &c->attn_logit_softcap, path, err) ||
        get_cap(o, "final_logit_softcapping", g2 ? 30 : 0, &c->final_logit_softcap, path, err) ||
        get_bool(o, "use_bidirectional_attention", false, &bidirectional, path, err))
        return -1;
    if (!(qpas > 0)) return kiln_err_set(err, "%s: query_pre_attn_scalar must be > 0", path);
    if (bidirectional) return kiln_err_set(err, "%s: use_bidirectional_attention true not supported", path);
    if (json_object_get(o, "rope_parameters"))
        return kiln_err_set(err, "%s: rope_parameters not supported (use rope_theta / rope_local_base_freq)", path);
    c->attn_scale = (float)(1.0 / sqrt(qpas));
    if (g2) return 0;
    if (get_num(o, "rope_local_base_freq", 10000.0, &c->rope_local_theta, path, err)) return -1;
    if (!(c->rope_local_theta > 0)) return kiln_err_set(err, "%s: rope_local_base_freq must be > 0", path);
    return 0;
}

static int parse_eos(json_t *o, kiln_config *c, const char *path, kiln_err *err) {
    long long ids[sizeof c->eos_token_ids / sizeof *c->eos_token_ids];
    kiln_err e;
    int n, max = (int)(sizeof ids / sizeof *ids);
    if (json_get_int_list(o, "eos_token_id", 0, JSON_MAX_TOKEN_ID, ids, max, &n, &e) < 0)
        return kiln_err_set(err, "%s: %s", path, e.msg);
    for (int i = 0; i < n; i++) c->eos_token_ids[i] = (int)ids[i];
    c->n_eos_token_ids = n;
    return 0;
}

static int parse_dtype(json_t *o, kiln_config *c, const char *path, kiln_err *err) {
    json_t *v = json_object_get(o, "torch_dtype");
    if (!v) v = json_object_get(o, "dtype"); /* newer transformers write "dtype" */
    c->torch_dtype = KILN_DT_F32;
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return kiln_err_set(err, "%s: torch_dtype is not a string", path);
    const char *s = json_string_value(v);
    if (strcmp(s, "float32") == 0) c->torch_dtype = KILN_DT_F32;
    else if (strcmp(s, "float16") == 0) c->torch_dtype = KILN_DT_F16;
    else if (strcmp(s, "bfloat16") == 0) c->torch_dtype = KILN_DT_BF16;
    else return kiln_err_set(err, "%s: torch_dtype '%s' not supported (float32, float16, bfloat16)", path, s);
    return 0;
}

/* (gguf_model.h) */
void config_arch_flags(kiln_config *c) {
    const bool gemma = c->arch == KILN_ARCH_GEMMA2 || c->arch == KILN_ARCH_GEMMA3;
    c->fused_proj = c->arch == KILN_ARCH_PHI3;
    c->no_pre_norms = c->qk_norm_full = c->arch == KILN_ARCH_OLMO2;
    c->post_norms = c->arch == KILN_ARCH_OLMO2 || gemma;
    c->sandwich_norms = gemma; /* pre- and post-norms both */
}

/* Phi-3 and OLMo-2: what their modeling code fixes, and what it would read that kiln does not implement,
 * refused by name. */
static int parse_phi3_olmo2(kiln_config *c, const char *path, kiln_err *err) {
    config_arch_flags(c);
    if (c->arch == KILN_ARCH_PHI3) c->attention_bias = false; /* Phi3Attention has none, whatever the config says */
    if (c->arch == KILN_ARCH_OLMO2 && c->attention_bias) /* OLMo-2 would also have an o_proj bias */
        return kiln_err_set(err, "%s: attention_bias true not supported for Olmo2ForCausalLM", path);
    return 0;
}

/* The mixture-of-experts fields, under each family's names and with transformers' defaults. Mixtral's
 * experts are intermediate_size wide and always renormalised (its modeling code divides by the top-k
 * sum); Qwen3-MoE's have moe_intermediate_size and follow norm_topk_prob. What kiln does not run (dense
 * layers among the sparse ones, shared experts, Qwen3-MoE's sliding window) is refused by name. */
static int parse_moe(json_t *o, kiln_config *c, const char *path, kiln_err *err) {
    if (c->arch != KILN_ARCH_QWEN3_MOE && c->arch != KILN_ARCH_MIXTRAL) return 0;
    const bool mix = c->arch == KILN_ARCH_MIXTRAL;
    if (get_int(o, mix ? "num_local_experts" : "num_experts", mix ? 8 : 128, 1, KILN_MAX_EXPERTS, &c->n_experts,
                path, err) ||
        get_int(o, "num_experts_per_tok", mix ? 2 : 8, 1, c->n_experts, &c->n_experts_used, path, err))
        return -1;
    if (mix) {
        c->expert_ffn_size = c->intermediate_size;
        c->norm_topk_prob = true;
        return 0;
    }
    int step, shared;
    bool window;
    if (get_int(o, "moe_intermediate_size", 768, 1, 1L << 24, &c->expert_ffn_size, path, err) ||
        get_bool(o, "norm_topk_prob", false, &c->norm_topk_prob, path, err) ||
        get_int(o, "decoder_sparse_step", 1, 1, 4096, &step, path, err) ||
        get_int(o, "shared_expert_intermediate_size", 0, 0, 1L << 24, &shared, path, err) ||
        get_bool(o, "use_sliding_window", false, &window, path, err))
        return -1;
    json_t *dense = json_object_get(o, "mlp_only_layers");
    if (step != 1 || (json_is_array(dense) && json_array_size(dense)))
        return kiln_err_set(err, "%s: decoder_sparse_step %d / mlp_only_layers: dense layers among the experts not "
                                 "supported (want decoder_sparse_step 1, mlp_only_layers [])", path, step);
    if (shared) return kiln_err_set(err, "%s: shared_expert_intermediate_size %d: shared experts not supported", path, shared);
    if (window) return kiln_err_set(err, "%s: use_sliding_window true not supported for Qwen3-MoE", path);
    return 0;
}

static int parse(json_t *o, kiln_config *c, const char *path, kiln_err *err) {
    if (!json_is_object(o)) return kiln_err_set(err, "%s: not a JSON object", path);
    json_t *a = json_object_get(o, "architectures");
    if (!json_is_array(a) || json_array_size(a) == 0 || !json_is_string(json_array_get(a, 0)))
        return kiln_err_set(err, "%s: missing 'architectures' list", path);
    const char *name = json_string_value(json_array_get(a, 0));
    size_t i = 0;
    for (; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(name, archs[i].name) == 0) break;
    if (i == sizeof archs / sizeof archs[0]) {
        char known[512];
        table_names_join(known, sizeof known, archs, sizeof archs / sizeof archs[0], sizeof archs[0]);
        return kiln_err_set(err, "%s: architecture '%s' not supported (%s)", path, name, known);
    }
    c->arch = archs[i].arch;
    snprintf(c->architecture, sizeof c->architecture, "%s", name);
    json_t *mt = json_object_get(o, "model_type");
    snprintf(c->model_type, sizeof c->model_type, "%s", json_is_string(mt) ? json_string_value(mt) : "");

    const long BIG = 1L << 24;
    if (get_int(o, "hidden_size", REQUIRED, 1, BIG, &c->hidden_size, path, err) ||
        get_int(o, "intermediate_size", REQUIRED, 1, BIG, &c->intermediate_size, path, err) ||
        get_int(o, "num_hidden_layers", REQUIRED, 1, 4096, &c->n_layers, path, err) ||
        get_int(o, "num_attention_heads", REQUIRED, 1, 4096, &c->n_heads, path, err) ||
        get_int(o, "num_key_value_heads", c->n_heads, 1, 4096, &c->n_kv_heads, path, err) ||
        get_int(o, "vocab_size", REQUIRED, 1, 1L << 28, &c->vocab_size, path, err) ||
        get_int(o, "max_position_embeddings", 2048, 1, 1L << 28, &c->max_position_embeddings, path, err))
        return -1;
    if (get_int(o, "bos_token_id", -1, 0, JSON_MAX_TOKEN_ID, &c->bos_token_id, path, err)) return -1;
    /* head_dim: explicit (Qwen3: 128 with hidden 1024 / 16 heads) or derived. */
    if (c->hidden_size % c->n_heads && !json_is_number(json_object_get(o, "head_dim")))
        return kiln_err_set(err, "%s: hidden_size %d not divisible by num_attention_heads %d and no head_dim", path,
                            c->hidden_size, c->n_heads);
    if (get_int(o, "head_dim", c->hidden_size / c->n_heads, 2, 65536, &c->head_dim, path, err)) return -1;
    if (c->head_dim % 2) return kiln_err_set(err, "%s: head_dim %d must be even for RoPE", path, c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return kiln_err_set(err, "%s: num_attention_heads %d not a multiple of num_key_value_heads %d", path,
                            c->n_heads, c->n_kv_heads);

    double eps, theta;
    if (get_num(o, "rms_norm_eps", 1e-6, &eps, path, err) || get_num(o, "rope_theta", 10000.0, &theta, path, err))
        return -1;
    if (!((float)eps > 0) || !isfinite((float)eps) || !(theta > 0) || !isfinite(theta)) /* 1e-320 is 0 as a float */
        return kiln_err_set(err, "%s: rms_norm_eps and rope_theta must be finite and > 0 (as float32 for eps)", path);
    c->rms_norm_eps = (float)eps;
    c->rope_theta = theta;
    if (parse_rope_dim(o, c, path, err) || parse_rope_scaling(json_object_get(o, "rope_scaling"), c, path, err) ||
        (c->rope_type == KILN_ROPE_LONGROPE && parse_longrope(o, c, path, err)))
        return -1;

    if (parse_act(o, c, path, err) || parse_window(o, c, path, err) || (is_gemma(c) && parse_gemma(o, c, path, err)))
        return -1;
    bool mlp_bias = false;
    if (get_bool(o, "mlp_bias", false, &mlp_bias, path, err)) return -1;
    if (mlp_bias) return kiln_err_set(err, "%s: mlp_bias true not supported", path);

    if (get_bool(o, "tie_word_embeddings", is_gemma(c), &c->tie_word_embeddings, path, err)) return -1;
    /* Qwen2 always has q/k/v biases (its modeling code hard-codes bias=True); others follow the flag. */
    if (c->arch == KILN_ARCH_QWEN2) c->attention_bias = true;
    else if (get_bool(o, "attention_bias", false, &c->attention_bias, path, err)) return -1;
    c->qk_norm = c->arch == KILN_ARCH_QWEN3 || c->arch == KILN_ARCH_GEMMA3 || c->arch == KILN_ARCH_QWEN3_MOE;
    if (parse_dtype(o, c, path, err) || parse_eos(o, c, path, err) || parse_moe(o, c, path, err)) return -1;
    return parse_phi3_olmo2(c, path, err);
}

int kiln_config_load(const char *dir, kiln_config *cfg, kiln_err *err) {
    if (gguf_source(dir)) return gguf_config_load(dir, cfg, err);
    memset(cfg, 0, sizeof *cfg);
    char *path = kiln_path_join(dir, "config.json");
    if (!path) return kiln_err_set(err, "out of memory");
    size_t len;
    char *text = kiln_read_file(path, &len, err);
    if (!text) {
        free(path);
        return -1;
    }
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    free(text);
    int rc;
    if (!o) rc = kiln_err_set(err, "%s: invalid JSON at line %d: %s", path, je.line, je.text);
    else rc = parse(o, cfg, path, err);
    json_decref(o);
    free(path);
    return rc;
}
