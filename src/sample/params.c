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

int kiln_gen_params_load(kiln_gen_params *p, const char *model_dir, kiln_err *err) {
    if (gguf_source(model_dir)) { /* a GGUF has no generation_config: its EOS/EOT ids */
        kiln_config c;
        if (gguf_config_load(model_dir, &c, err)) return -1;
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
