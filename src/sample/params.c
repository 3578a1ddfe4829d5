/* params.c — generation parameters: transformers' GenerationConfig defaults and generation_config.json. */
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "common/json_get.h"
#include "kiln.h"
#include "model/gguf.h"
#include "model/gguf_model.h"

void kiln_gen_params_default(kiln_gen_params *p) {
    memset(p, 0, sizeof *p);
    p->max_new_tokens = 20;
    p->min_new_tokens = 0;
    p->do_sample = false;
    p->temperature = 1.0f;
    p->top_k = 50;
    p->top_p = 1.0f;
    p->min_p = 0.0f;
    p->repetition_penalty = 1.0f;
    p->presence_penalty = p->frequency_penalty = 0.0f;
    p->seed = 0;
    p->think_end_id = -1;
    p->kv_type = KILN_KV_TYPE_DEFAULT;
}

static bool has_eos(const kiln_gen_params *p, int32_t id) {
    for (int i = 0; i < p->n_eos; i++)
        if (p->eos_ids[i] == id) return true;
    return false;
}

void kiln_gen_params_add_eos(kiln_gen_params *p, int32_t id) {
    if (id >= 0 && !has_eos(p, id) && p->n_eos < KILN_GEN_MAX_EOS) p->eos_ids[p->n_eos++] = id;
}


static int add_eos_id(kiln_gen_params *p, long long id, const char *file, kiln_err *err) {
    if (!has_eos(p, (int32_t)id) && p->n_eos == KILN_GEN_MAX_EOS)
        return kiln_err_set(err, "%s: more than %d eos_token_id values", file, KILN_GEN_MAX_EOS);
    kiln_gen_params_add_eos(p, (int32_t)id);
    return 0;
}

/* eos_token_id: an int or a list of ints (null: none), each a token id. */
static int add_eos_json(kiln_gen_params *p, json_t *root, const char *file, kiln_err *err) {
    long long ids[64];
    kiln_err e;
    int n;
    if (json_get_int_list(root, "eos_token_id", 0, JSON_MAX_TOKEN_ID, ids, 64, &n, &e) < 0)
        return kiln_err_set(err, "%s: %s", file, e.msg);
    for (int i = 0; i < n; i++)
        if (add_eos_id(p, ids[i], file, err)) return -1;
    return 0;
}

/* GenerationConfig fields, with the ranges transformers' processors accept; only those present change p. */
static int load_generation(kiln_gen_params *p, json_t *o, kiln_err *e) {
    double temperature = p->temperature, top_p = p->top_p, min_p = p->min_p, rep = p->repetition_penalty;
    long long top_k = p->top_k, max_new = p->max_new_tokens, min_new = p->min_new_tokens;
    if (json_get_bool(o, "do_sample", &p->do_sample, e) < 0 ||
        json_get_num(o, "temperature", 0, 1e6, &temperature, e) < 0 || json_get_int(o, "top_k", 0, INT_MAX, &top_k, e) < 0 ||
        json_get_num(o, "top_p", 0, 1, &top_p, e) < 0 || json_get_num(o, "min_p", 0, 1, &min_p, e) < 0 ||
        json_get_num(o, "repetition_penalty", 0, 1e6, &rep, e) < 0 ||
        json_get_int(o, "max_new_tokens", 0, INT_MAX, &max_new, e) < 0 ||
        json_get_int(o, "min_new_tokens", 0, INT_MAX, &min_new, e) < 0)
        return -1;
    if (rep <= 0) return kiln_err_set(e, "'repetition_penalty' must be > 0, got %g", rep);
    p->temperature = (float)temperature, p->top_p = (float)top_p, p->min_p = (float)min_p;
    p->repetition_penalty = (float)rep, p->top_k = (int)top_k;
    p->max_new_tokens = (int)max_new, p->min_new_tokens = (int)min_new;
    return 0;
}

/* path as a JSON object; NULL without an error when the file is absent. */
static json_t *load_optional(const char *path, kiln_err *err) {
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT) return NULL;
    size_t len;
    char *text = kiln_read_file(path, &len, err);
    json_error_t je;
    json_t *root = text ? json_loadb(text, len, 0, &je) : NULL;
    if (text && !json_is_object(root)) kiln_err_set(err, "%s: %s", path, root ? "not a JSON object" : je.text);
    if (!json_is_object(root)) json_decref(root), root = NULL;
    free(text);
    return root;
}

/* One of the two files; config.json (gen false) gives only its eos_token_id. */
static int load_file(kiln_gen_params *p, const char *path, bool gen, kiln_err *err) {
    kiln_err e = {0};
    json_t *root = load_optional(path, &e);
    if (!root) return e.msg[0] ? kiln_err_set(err, "%s", e.msg) : 0; /* both optional here */
    int rc = gen ? load_generation(p, root, &e) : 0;
    if (rc) kiln_err_set(err, "%s: %s", path, e.msg);
    if (!rc && gen && json_object_get(root, "eos_token_id")) p->n_eos = 0; /* generation_config wins */
    if (!rc) rc = add_eos_json(p, root, path, err);
    json_decref(root);
    return rc;
}

/* A float general.sampling key within [lo, hi] into *out (1), absent (0), or -1 naming file and key. */
static int sampling_f32(const gguf_file *g, const char *key, double lo, double hi, float *out, kiln_err *err) {
    float v;
    const int rc = gguf_get_f32(g, key, &v, err);
    if (rc == 1 && !(v >= lo && v <= hi)) return kiln_err_set(err, "%s: %s = %g: must be in [%g, %g]", g->path, key, v, lo, hi);
    if (rc == 1) *out = v;
    return rc;
}

/* Keys of samplers kiln does not have: refused by name unless they hold the value that turns them off. */
static int sampling_unsupported(const gguf_file *g, kiln_err *err) {
    static const struct {
        const char *key, *why;
        float off;
    } keys[] = {{"general.sampling.mirostat", "kiln has no mirostat sampler", 0},
                {"general.sampling.xtc_probability", "kiln has no XTC sampler", 0}};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        const gguf_kv *kv = gguf_find_kv(g, keys[i].key);
        if (!kv) continue;
        float f;
        int32_t n;
        const bool is_float = kv->type == GGUF_FLOAT32 || kv->type == GGUF_FLOAT64;
        if (is_float ? gguf_get_f32(g, keys[i].key, &f, err) < 0 : gguf_get_i32(g, keys[i].key, &n, err) < 0) return -1;
        if (!is_float) f = (float)n;
        if (f != keys[i].off) return kiln_err_set(err, "%s: %s = %g: %s", g->path, keys[i].key, f, keys[i].why);
    }
    if (gguf_find_kv(g, "general.sampling.sequence"))
        return kiln_err_set(err, "%s: general.sampling.sequence: kiln applies its samplers in one fixed order", g->path);
    return 0;
}

/* llama.cpp's generation defaults (general.sampling.*, which its converter takes from generation_config.json)
 * into the fields generation_config.json fills. A GGUF has no do_sample: a file temperature > 0 samples, 0 is
 * greedy, as llama.cpp runs such a file. The repetition penalty counts the whole context here, so a
 * penalty_last_n window other than -1 (whole context) is refused while the penalty is on. */
static int load_gguf_sampling(kiln_gen_params *p, const char *model, kiln_err *err) {
    char *path = gguf_model_file(model, err);
    gguf_file g;
    if (!path || gguf_open(&g, path, err)) return free(path), -1;
    free(path);
    int32_t top_k = p->top_k, last_n = -1;
    int rc_k, rc_t;
    int rc = (rc_t = sampling_f32(&g, "general.sampling.temp", 0, 1e6, &p->temperature, err)) < 0 ||
             sampling_f32(&g, "general.sampling.top_p", 0, 1, &p->top_p, err) < 0 ||
             sampling_f32(&g, "general.sampling.min_p", 0, 1, &p->min_p, err) < 0 ||
             sampling_f32(&g, "general.sampling.penalty_repeat", 1e-6, 1e6, &p->repetition_penalty, err) < 0 ||
             (rc_k = gguf_get_i32(&g, "general.sampling.top_k", &top_k, err)) < 0 ||
             gguf_get_i32(&g, "general.sampling.penalty_last_n", &last_n, err) < 0 || sampling_unsupported(&g, err)
                 ? -1
                 : 0;
    if (!rc && rc_k == 1 && top_k < 0)
        rc = kiln_err_set(err, "%s: general.sampling.top_k = %d: must be >= 0", g.path, (int)top_k);
    if (!rc && last_n != -1 && p->repetition_penalty != 1.0f)
        rc = kiln_err_set(err, "%s: general.sampling.penalty_last_n = %d: kiln's repetition penalty covers the whole context (-1)",
                          g.path, (int)last_n);
    if (!rc) p->top_k = top_k;
    if (!rc && rc_t == 1) p->do_sample = p->temperature > 0;
    gguf_close(&g);
    return rc;
}

int kiln_gen_params_load(kiln_gen_params *p, const char *model_dir, kiln_err *err) {
    if (gguf_source(model_dir)) { /* a GGUF's generation defaults are general.sampling.*, its EOS/EOT ids */
        kiln_config c;
        if (gguf_config_load(model_dir, &c, err) || load_gguf_sampling(p, model_dir, err)) return -1;
        for (int i = 0; i < c.n_eos_token_ids; i++) kiln_gen_params_add_eos(p, c.eos_token_ids[i]);
        return 0;
    }
    /* config.json's eos_token_id first (transformers falls back to it), then generation_config.json. */
    const char *names[2] = {"config.json", "generation_config.json"};
    for (int f = 0; f < 2; f++) {
        char *path = kiln_path_join(model_dir, names[f]);
        if (!path) return kiln_err_set(err, "%s: out of memory", model_dir);
        int rc = load_file(p, path, f == 1, err);
        free(path);
        if (rc) return -1;
    }
    return 0;
}
