/* model_stats.c — a model's decode cost from its headers: parameters, bytes per token in each weight
 * format, KV bytes per token. Reads config.json and the safetensors headers of the checkpoint's files
 * (the same parser, shard index and tensor tables as the loader; the weights themselves are never read,
 * so this is instant even for large checkpoints), and asks the loader's format policy what each tensor
 * would become: the figures are the bytes a load in that format holds (a mixture of experts: the experts a
 * token is routed to, n_experts_used of each layer's n_experts, plus the rest). The KV figures are what
 * kiln_ctx_new allocates: per token for the global layers, per sequence for the sliding-window layers,
 * which keep only their window (kvcache.c). */
#include <stdio.h>
#include <string.h>

#include "kernels/format.h"
#include "model/model.h"

struct tally {
    const kiln_config *cfg;
    const st_set *shards;
    kiln_model_stats *s;
    int n_layers;
    const st_tensor *embed; /* counted last: whether it is the output projection depends on lm_head */
    const tensor_desc *embed_desc;
    int64_t embed_rows, embed_cols;
    bool has_output;
    int experts_used; /* a mixture of experts reads this many of each layer's experts per token */
};

/* Adds rows (of which `read` are read per token) x cols of tensor s (cols 0: a vector) to every figure. */
static void add(kiln_model_stats *st, const weight_slot *s, int64_t read, int64_t cols) {
    const weight_request as_stored = {-1, -1};
    st->checkpoint_bytes_per_token += (int64_t)weight_bytes(weight_format(&as_stored, s), read, cols);
    for (int f = 0; f < KILN_QUANT_END; f++) {
        const weight_request rq = weight_request_for(f);
        st->bytes_per_token[f] += (int64_t)weight_bytes(weight_format(&rq, s), read, cols);
    }
}

static int count(void *ud, const tensor_desc *d, int layer, const char *name, int64_t rows, int64_t cols,
                 kiln_err *err) {
    struct tally *t = ud;
    const st_tensor *st;
    int64_t stored_rows, first_row; /* a slice counts its own rows */
    tensor_stored_rows(t->cfg, d, &stored_rows, &first_row);
    if (model_find_tensor(t->shards, d, name, stored_rows, cols, &st, err)) return -1;
    if (!st) return 0;
    /* a token reads its top-k experts of each layer; every expert has the same shape and format, so
     * counting the first k counts what any token reads */
    if (d->per_expert && d->expert >= t->experts_used) return 0;
    if (d->role == ROLE_EMBEDDING) {
        t->embed = st, t->embed_desc = tensor_row(d), t->embed_rows = rows, t->embed_cols = cols;
        return 0;
    }
    t->has_output |= d->role == ROLE_OUTPUT;
    const weight_slot s = {d, layer, t->n_layers, d->role == ROLE_OUTPUT, st->dt, (int)cols, t->cfg->n_experts};
    add(t->s, &s, rows, cols);
    return 0;
}

/* Parameters, bytes and the most common storage type over every tensor of the files. */
static void checkpoint_totals(const st_set *sh, kiln_model_stats *s) {
    int64_t values[KILN_DT_COUNT] = {0};
    for (int i = 0; i < sh->n_files; i++)
        for (int j = 0; j < sh->files[i].n_tensors; j++) {
            const st_tensor *t = &sh->files[i].tensors[j];
            int64_t n = 1;
            for (int k = 0; k < t->ndim; k++) n *= t->shape[k];
            s->params += n;
            s->checkpoint_bytes += (int64_t)t->nbytes;
            values[t->dt] += n;
        }
    int best = 0;
    for (int f = 1; f < KILN_DT_COUNT; f++)
        if (values[f] > values[best]) best = f;
    snprintf(s->checkpoint_dtype, sizeof s->checkpoint_dtype, "%s", kiln_dtype_name((kiln_dtype)best));
}

int kiln_model_stats_load(const char *dir, kiln_model_stats *s, kiln_err *err) {
    memset(s, 0, sizeof *s);
    kiln_config c;
    if (kiln_config_load(dir, &c, err) != 0) return -1;
    s->n_layers = c.n_layers;
    s->n_kv_heads = c.n_kv_heads;
    s->head_dim = c.head_dim;
    s->max_position_embeddings = c.max_position_embeddings;
    for (int l = 0; l < c.n_layers; l++) s->n_window_layers += kiln_config_layer_windowed(&c, l);
    s->sliding_window = s->n_window_layers ? c.sliding_window : 0;
    s->kv_window_blocks = kiln_kv_window_blocks(s->sliding_window, c.max_position_embeddings, 0);
    kiln_model_stats_kv(s, KILN_KV_TYPE_DEFAULT);
    st_set sh;
    struct tally t = {.cfg = &c, .shards = &sh, .s = s, .n_layers = c.n_layers, .experts_used = c.n_experts_used};
    int rc = st_set_open(&sh, dir, err) || tensors_each(&c, count, &t, err) ? -1 : 0;
    if (rc == 0) {
        /* the embedding is read whole when it is also the output projection, else one row per token */
        const bool output = !t.has_output;
        const weight_slot e = {t.embed_desc, -1, c.n_layers, output, t.embed->dt, (int)t.embed_cols, c.n_experts};
        add(s, &e, output ? t.embed_rows : 1, t.embed_cols);
        checkpoint_totals(&sh, s);
    }
    st_set_close(&sh);
    return rc;
}

int kiln_model_stats_kv(kiln_model_stats *s, kiln_dtype kv_type) {
    if (!kiln_kv_bytes_per_token(1, s->n_kv_heads, s->head_dim, kv_type)) return -1;
    s->kv_type = kv_type;
    s->kv_bytes_per_token = kiln_kv_bytes_per_token(s->n_layers - s->n_window_layers, s->n_kv_heads, s->head_dim, kv_type);
    s->kv_window_bytes_per_seq = (int64_t)s->kv_window_blocks * KILN_KV_BLOCK *
                                 kiln_kv_bytes_per_token(s->n_window_layers, s->n_kv_heads, s->head_dim, kv_type);
    return 0;
}
