/* model_stats.c — a model's decode cost from its headers: parameters, bytes per token in each weight
 * format, KV bytes per token. Reads config.json and the JSON header of each *.safetensors file; the
 * weights themselves are never touched, so this is instant even for large checkpoints. */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "kiln.h"

struct shape_cfg {
    int n_layers, n_heads, n_kv_heads, head_dim, hidden, max_pos;
    bool tied;
};

static int read_config(const char *dir, struct shape_cfg *c, kiln_err *err) {
    kiln_config cfg;
    if (kiln_config_load(dir, &cfg, err) != 0) return -1;
    *c = (struct shape_cfg){cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.hidden_size,
                            cfg.max_position_embeddings, cfg.tie_word_embeddings};
    return 0;
}

static int st_dtype_bytes(const char *dt) {
    if (!strcmp(dt, "F32") || !strcmp(dt, "I32") || !strcmp(dt, "U32")) return 4;
    if (!strcmp(dt, "F16") || !strcmp(dt, "BF16") || !strcmp(dt, "I16")) return 2;
    if (!strcmp(dt, "F64") || !strcmp(dt, "I64")) return 8;
    if (!strcmp(dt, "U8") || !strcmp(dt, "I8") || !strcmp(dt, "BOOL")) return 1;
    return 0;
}

/* Accumulates one tensor into the stats. `skip` tensors (an untied embedding) count in params and
 * checkpoint bytes but are read one row per token. */
static void add_tensor(kiln_model_stats *s, const char *dt, int64_t rows, int64_t cols, bool two_d, bool skip,
                       int64_t *by_dtype_count) {
    int eb = st_dtype_bytes(dt);
    int64_t n = rows * cols;
    s->params += n;
    s->checkpoint_bytes += n * eb;
    if (!strcmp(dt, "F32")) by_dtype_count[0] += n;
    else if (!strcmp(dt, "F16")) by_dtype_count[1] += n;
    else if (!strcmp(dt, "BF16")) by_dtype_count[2] += n;
    int64_t per_tok = skip ? cols : n; /* an untied embedding: one row */
    if (skip) rows = 1;
    s->checkpoint_bytes_per_token += per_tok * eb;
    s->bytes_per_token[KILN_DT_F32] += per_tok * 4;
    s->bytes_per_token[KILN_DT_F16] += per_tok * 2;
    s->bytes_per_token[KILN_DT_BF16] += per_tok * 2;
    bool quant = two_d && cols % 32 == 0;
    s->bytes_per_token[KILN_DT_Q8_0] += quant ? rows * (cols / 32) * 34 : per_tok * 4;
    s->bytes_per_token[KILN_DT_Q4_0] += quant ? rows * (cols / 32) * 18 : per_tok * 4;
}

static int read_header(const char *path, kiln_model_stats *s, bool tied, int64_t *counts, kiln_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return kiln_err_set(err, "cannot open %s", path);
    unsigned char len8[8];
    uint64_t hl = 0;
    if (fread(len8, 1, 8, f) == 8)
        for (int i = 7; i >= 0; i--) hl = hl << 8 | len8[i];
    char *hdr = hl > 0 && hl < (100u << 20) ? malloc(hl + 1) : NULL;
    int rc = 0;
    if (!hdr || fread(hdr, 1, hl, f) != hl) rc = kiln_err_set(err, "%s: bad safetensors header", path);
    fclose(f);
    json_t *o = NULL;
    if (rc == 0) {
        hdr[hl] = 0;
        json_error_t je;
        o = json_loads(hdr, 0, &je);
        if (!json_is_object(o)) rc = kiln_err_set(err, "%s: header is not JSON (%s)", path, je.text);
    }
    const char *name;
    json_t *t;
    if (rc == 0) json_object_foreach(o, name, t) {
            if (!strcmp(name, "__metadata__")) continue;
            const char *dt = json_string_value(json_object_get(t, "dtype"));
            json_t *shape = json_object_get(t, "shape");
            if (!dt || !json_is_array(shape)) {
                rc = kiln_err_set(err, "%s: tensor %s lacks dtype or shape", path, name);
                break;
            }
            int64_t rows = 1, cols = 1;
            size_t nd = json_array_size(shape);
            for (size_t i = 0; i < nd; i++) {
                int64_t d = json_integer_value(json_array_get(shape, i));
                if (i + 1 == nd) cols = d;
                else rows *= d;
            }
            bool embed = strstr(name, "embed_tokens.weight") != NULL;
            add_tensor(s, dt, rows, cols, nd == 2, embed && !tied, counts);
        }
    json_decref(o);
    free(hdr);
    return rc;
}

int kiln_model_stats_load(const char *dir, kiln_model_stats *s, kiln_err *err) {
    memset(s, 0, sizeof *s);
    struct shape_cfg c = {0};
    if (read_config(dir, &c, err) != 0) return -1;
    s->n_layers = c.n_layers;
    s->n_kv_heads = c.n_kv_heads;
    s->head_dim = c.head_dim;
    s->max_position_embeddings = c.max_pos;
    s->kv_bytes_per_token = 2LL * c.n_layers * c.n_kv_heads * c.head_dim * 4;
    DIR *d = opendir(dir);
    if (!d) return kiln_err_set(err, "cannot open directory %s", dir);
    struct dirent *e;
    int rc = 0, files = 0;
    int64_t counts[3] = {0};
    while (rc == 0 && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors") != 0) continue;
        char *p = kiln_path_join(dir, e->d_name);
        rc = p ? read_header(p, s, c.tied, counts, err) : kiln_err_set(err, "out of memory");
        free(p);
        files++;
    }
    closedir(d);
    if (rc == 0 && files == 0) rc = kiln_err_set(err, "%s: no *.safetensors file", dir);
    int best = counts[0] >= counts[1] && counts[0] >= counts[2] ? 0 : counts[1] >= counts[2] ? 1 : 2;
    snprintf(s->checkpoint_dtype, sizeof s->checkpoint_dtype, "%s", kiln_dtype_name((kiln_dtype)best));
    return rc;
}
