/* params.c — generation parameters: transformers' GenerationConfig defaults and generation_config.json. */
#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "kiln.h"

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
}

void kiln_gen_params_add_eos(kiln_gen_params *p, int32_t id) {
    if (id < 0) return;
    for (int i = 0; i < p->n_eos; i++)
        if (p->eos_ids[i] == id) return;
    if (p->n_eos < KILN_GEN_MAX_EOS) p->eos_ids[p->n_eos++] = id;
}

/* eos_token_id: an int or a list of ints (null: none). */
static int add_eos_json(kiln_gen_params *p, json_t *v, const char *file, kiln_err *err) {
    if (!v || json_is_null(v)) return 0;
    if (json_is_integer(v)) {
        kiln_gen_params_add_eos(p, (int32_t)json_integer_value(v));
        return 0;
    }
    if (!json_is_array(v)) return kiln_err_set(err, "%s: eos_token_id must be an integer or a list", file);
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) {
        if (!json_is_integer(x)) return kiln_err_set(err, "%s: eos_token_id[%zu] is not an integer", file, i);
        kiln_gen_params_add_eos(p, (int32_t)json_integer_value(x));
    }
    return 0;
}

static int get_num(json_t *o, const char *key, double *out, const char *file, kiln_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return kiln_err_set(err, "%s: %s must be a number", file, key);
    *out = json_number_value(v);
    return 1;
}

int kiln_gen_params_load(kiln_gen_params *p, const char *model_dir, kiln_err *err) {
    /* config.json's eos_token_id first (transformers falls back to it), then generation_config.json. */
    const char *names[2] = {"config.json", "generation_config.json"};
    for (int f = 0; f < 2; f++) {
        char *path = kiln_path_join(model_dir, names[f]);
        char *real = kiln_resolve_path(path);
        free(path);
        if (!real || access(real, R_OK) != 0) {
            free(real);
            continue; /* both optional here: the model loader insists on config.json */
        }
        json_error_t je;
        json_t *root = json_load_file(real, 0, &je);
        if (!root || !json_is_object(root)) {
            kiln_err_set(err, "%s: %s", real, root ? "not a JSON object" : je.text);
            json_decref(root);
            free(real);
            return -1;
        }
        int rc = 0;
        if (f == 1) { /* GenerationConfig fields; only those present change p */
            double x;
            json_t *ds = json_object_get(root, "do_sample");
            if (ds && json_is_boolean(ds)) p->do_sample = json_is_true(ds);
            if ((rc = get_num(root, "temperature", &x, real, err)) > 0) p->temperature = (float)x;
            if (rc >= 0 && (rc = get_num(root, "top_k", &x, real, err)) > 0) p->top_k = (int)x;
            if (rc >= 0 && (rc = get_num(root, "top_p", &x, real, err)) > 0) p->top_p = (float)x;
            if (rc >= 0 && (rc = get_num(root, "min_p", &x, real, err)) > 0) p->min_p = (float)x;
            if (rc >= 0 && (rc = get_num(root, "repetition_penalty", &x, real, err)) > 0)
                p->repetition_penalty = (float)x;
            if (rc >= 0 && (rc = get_num(root, "max_new_tokens", &x, real, err)) > 0) p->max_new_tokens = (int)x;
            if (rc >= 0 && (rc = get_num(root, "min_new_tokens", &x, real, err)) > 0) p->min_new_tokens = (int)x;
            if (rc > 0) rc = 0;
            if (rc == 0 && json_object_get(root, "eos_token_id")) p->n_eos = 0; /* generation_config wins */
        }
        if (rc == 0) rc = add_eos_json(p, json_object_get(root, "eos_token_id"), real, err);
        json_decref(root);
        free(real);
        if (rc) return -1;
    }
    return 0;
}
