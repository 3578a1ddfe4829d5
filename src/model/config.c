/* config.c — config.json → kiln_config, validated.
 *
 * Only the fields the forward pass needs are read; each is checked for type and range so a bad config
 * fails here with its field name rather than later as a wrong shape or a crash. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"

static const struct {
    const char *name;
    kiln_arch arch;
} known_archs[] = {
    {"LlamaForCausalLM", KILN_ARCH_LLAMA},
    {"MistralForCausalLM", KILN_ARCH_MISTRAL},
    {"Qwen2ForCausalLM", KILN_ARCH_QWEN2},
    {"Qwen3ForCausalLM", KILN_ARCH_QWEN3},
};

/* Integer field: required unless def >= 0 is given. */
static int get_int(json_t *root, const char *key, int def, int lo, int *out, const char *path, kiln_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (def < 0) return kiln_err_set(err, "%s: missing \"%s\"", path, key);
        *out = def;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > (1 << 30))
        return kiln_err_set(err, "%s: \"%s\" must be an integer >= %d", path, key, lo);
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_num(json_t *root, const char *key, double def, double *out, const char *path, kiln_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        if (isnan(def)) return kiln_err_set(err, "%s: missing \"%s\"", path, key);
        *out = def;
        return 0;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) <= 0)
        return kiln_err_set(err, "%s: \"%s\" must be a positive number", path, key);
    *out = json_number_value(v);
    return 0;
}

static int get_bool(json_t *root, const char *key, bool def, bool *out, const char *path, kiln_err *err) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) return kiln_err_set(err, "%s: \"%s\" must be true or false", path, key);
    *out = json_is_true(v);
    return 0;
}

static int parse_rope_scaling(json_t *rs, kiln_config *c, const char *path, kiln_err *err) {
    c->rope_type = KILN_ROPE_DEFAULT;
    c->rope_factor = 1.0;
    if (!rs || json_is_null(rs)) return 0;
    if (!json_is_object(rs)) return kiln_err_set(err, "%s: \"rope_scaling\" must be an object or null", path);
    json_t *t = json_object_get(rs, "rope_type");
    if (!t) t = json_object_get(rs, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : NULL;
    if (!type) return kiln_err_set(err, "%s: rope_scaling has no \"rope_type\"", path);
    if (!strcmp(type, "default")) return 0;
    if (get_num(rs, "factor", NAN, &c->rope_factor, path, err)) return -1;
    if (!strcmp(type, "linear")) {
        c->rope_type = KILN_ROPE_LINEAR;
        return 0;
    }
    if (!strcmp(type, "llama3")) {
        c->rope_type = KILN_ROPE_LLAMA3;
        if (get_num(rs, "low_freq_factor", NAN, &c->rope_low_freq_factor, path, err) ||
            get_num(rs, "high_freq_factor", NAN, &c->rope_high_freq_factor, path, err) ||
            get_int(rs, "original_max_position_embeddings", -1, 1, &c->rope_original_max_pos, path, err))
            return -1;
        if (c->rope_high_freq_factor <= c->rope_low_freq_factor)
            return kiln_err_set(err, "%s: rope_scaling high_freq_factor must exceed low_freq_factor", path);
        return 0;
    }
    return kiln_err_set(err, "%s: unsupported rope_scaling type \"%s\" (supported: default, linear, llama3)", path,
                        type);
}

static int parse_dtype(json_t *root, kiln_config *c, const char *path, kiln_err *err) {
    json_t *v = json_object_get(root, "torch_dtype");
    if (!v) v = json_object_get(root, "dtype"); /* newer transformers write "dtype" */
    c->torch_dtype = KILN_DT_F32;
    if (!v || json_is_null(v)) return 0;
    const char *s = json_string_value(v);
    if (!s) return kiln_err_set(err, "%s: \"torch_dtype\" must be a string", path);
    if (!strcmp(s, "bfloat16")) c->torch_dtype = KILN_DT_BF16;
    else if (!strcmp(s, "float16")) c->torch_dtype = KILN_DT_F16;
    else if (!strcmp(s, "float32")) c->torch_dtype = KILN_DT_F32;
    else return kiln_err_set(err, "%s: unsupported torch_dtype \"%s\"", path, s);
    return 0;
}

static int parse_eos(json_t *root, kiln_config *c, const char *path, kiln_err *err) {
    json_t *v = json_object_get(root, "eos_token_id");
    c->n_eos_token_ids = 0;
    if (!v || json_is_null(v)) return 0;
    if (json_is_integer(v)) {
        c->eos_token_ids[c->n_eos_token_ids++] = (int)json_integer_value(v);
        return 0;
    }
    if (!json_is_array(v)) return kiln_err_set(err, "%s: \"eos_token_id\" must be an integer or a list", path);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e) {
        if (!json_is_integer(e)) return kiln_err_set(err, "%s: \"eos_token_id\" entries must be integers", path);
        if (c->n_eos_token_ids < 8) c->eos_token_ids[c->n_eos_token_ids++] = (int)json_integer_value(e);
    }
    return 0;
}

static int parse_arch(json_t *root, kiln_config *c, const char *path, kiln_err *err) {
    json_t *a = json_object_get(root, "architectures");
    const char *name = json_is_array(a) ? json_string_value(json_array_get(a, 0)) : NULL;
    if (!name) return kiln_err_set(err, "%s: missing \"architectures\"", path);
    snprintf(c->architecture, sizeof c->architecture, "%s", name);
    const char *mt = json_string_value(json_object_get(root, "model_type"));
    snprintf(c->model_type, sizeof c->model_type, "%s", mt ? mt : "");
    for (size_t i = 0; i < sizeof known_archs / sizeof known_archs[0]; i++)
        if (!strcmp(name, known_archs[i].name)) {
            c->arch = known_archs[i].arch;
            return 0;
        }
    return kiln_err_set(err,
                        "%s: unknown architecture \"%s\" (supported: LlamaForCausalLM, MistralForCausalLM, "
                        "Qwen2ForCausalLM, Qwen3ForCausalLM)",
                        path, name);
}

static int parse_config(json_t *root, kiln_config *c, const char *path, kiln_err *err) {
    memset(c, 0, sizeof *c);
    if (!json_is_object(root)) return kiln_err_set(err, "%s: not a JSON object", path);
    if (parse_arch(root, c, path, err)) return -1;
    if (get_int(root, "hidden_size", -1, 1, &c->hidden_size, path, err) ||
        get_int(root, "intermediate_size", -1, 1, &c->intermediate_size, path, err) ||
        get_int(root, "num_hidden_layers", -1, 1, &c->n_layers, path, err) ||
        get_int(root, "num_attention_heads", -1, 1, &c->n_heads, path, err) ||
        get_int(root, "num_key_value_heads", c->n_heads, 1, &c->n_kv_heads, path, err) ||
        get_int(root, "vocab_size", -1, 1, &c->vocab_size, path, err) ||
        get_int(root, "max_position_embeddings", 2048, 1, &c->max_position_embeddings, path, err))
        return -1;
    if (c->n_heads % c->n_kv_heads)
        return kiln_err_set(err, "%s: num_attention_heads (%d) is not a multiple of num_key_value_heads (%d)", path,
                            c->n_heads, c->n_kv_heads);
    int derived = c->hidden_size / c->n_heads;
    if (get_int(root, "head_dim", derived, 2, &c->head_dim, path, err)) return -1;
    if (c->head_dim % 2) return kiln_err_set(err, "%s: head_dim %d must be even for RoPE", path, c->head_dim);
    double eps, theta;
    if (get_num(root, "rms_norm_eps", 1e-6, &eps, path, err) || get_num(root, "rope_theta", 10000.0, &theta, path, err))
        return -1;
    c->rms_norm_eps = (float)eps;
    c->rope_theta = theta;
    if (parse_rope_scaling(json_object_get(root, "rope_scaling"), c, path, err)) return -1;
    /* All four config classes default to untied; the loader also ties when lm_head.weight is absent. */
    if (get_bool(root, "tie_word_embeddings", false, &c->tie_word_embeddings, path, err)) return -1;
    /* Qwen2 always has q/k/v biases (its modeling code hard-wires them); others follow attention_bias. */
    if (get_bool(root, "attention_bias", c->arch == KILN_ARCH_QWEN2, &c->attention_bias, path, err)) return -1;
    if (c->arch == KILN_ARCH_QWEN2) c->attention_bias = true;
    c->qk_norm = c->arch == KILN_ARCH_QWEN3;
    json_t *act = json_object_get(root, "hidden_act");
    if (act && json_is_string(act) && strcmp(json_string_value(act), "silu"))
        return kiln_err_set(err, "%s: unsupported hidden_act \"%s\" (only silu)", path, json_string_value(act));
    /* Mistral v0.1's sliding window is not implemented: within the window attention is identical, so the
     * usable context is capped at the window rather than silently computing something else beyond it. */
    json_t *sw = json_object_get(root, "sliding_window");
    if (c->arch == KILN_ARCH_MISTRAL && json_is_integer(sw) && json_integer_value(sw) > 0 &&
        json_integer_value(sw) < c->max_position_embeddings)
        c->max_position_embeddings = (int)json_integer_value(sw);
    if (parse_dtype(root, c, path, err) || parse_eos(root, c, path, err)) return -1;
    json_t *bos = json_object_get(root, "bos_token_id");
    c->bos_token_id = json_is_integer(bos) ? (int)json_integer_value(bos) : -1;
    return 0;
}

int kiln_config_load(const char *dir, kiln_config *cfg, kiln_err *err) {
    char *path = kiln_path_join(dir, "config.json");
    if (!path) return kiln_err_set(err, "out of memory");
    size_t len;
    char *text = kiln_read_file(path, &len, err);
    if (!text) {
        free(path);
        return -1;
    }
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    free(text);
    int rc;
    if (!root) rc = kiln_err_set(err, "%s:%d:%d: malformed JSON: %s", path, je.line, je.column, je.text);
    else rc = parse_config(root, cfg, path, err);
    json_decref(root);
    free(path);
    return rc;
}
