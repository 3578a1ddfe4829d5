/* test_model_stats.c — `kiln info --model`'s figures (kiln_model_stats) are the bytes the loader holds:
 * for every format, on every fixture model (tied and untied, f32 / f16 / bf16 checkpoints, single file and
 * sharded), bytes_per_token[fmt] equals kiln_model_weight_bytes of a load in that format, less the rows of
 * an untied input embedding that a decoded token does not read (kiln.h: it counts one row). And the stats
 * read exactly the checkpoint the loader opens: the shard index, not every *.safetensors in the folder. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "kernels/format.h"
#include "model/model.h"

static const char *MODELS[] = {"stories260K", "tiny-llama3", "tiny-qwen2", "tiny-qwen3"};

/* What one decoded token reads of m's weights, by kiln.h's rule. */
static int64_t loaded_bytes_per_token(const kiln_model *m) {
    int64_t b = (int64_t)kiln_model_weight_bytes(m);
    if (m->lm_head.data != m->embed.data) /* untied: the embedding is read one row per token */
        b -= (int64_t)kern_row_bytes(m->embed.dt, m->embed.cols) * (m->embed.rows - 1);
    return b;
}

static kiln_model *open_as(const char *dir, int quant, int dtype) {
    kiln_model_opts o;
    kiln_model_opts_default(&o);
    o.quant = quant, o.dtype = dtype, o.threads = 1, o.quiet = true;
    kiln_err err;
    kiln_model *m = kiln_model_open(dir, &o, &err);
    CHECK(m, "%s quant %d dtype %d: %s", dir, quant, dtype, err.msg);
    return m;
}

/* A load in format f: quant for the block formats, dtype for the float ones. */
/* Format f (a kiln_dtype or a K-quant mix, KILN_QUANT_*): a quantised one through --quant, else --dtype. */
static kiln_model *open_in_format(const char *dir, int f) {
    bool q = f >= KILN_DT_COUNT || kern_is_quantised((kiln_dtype)f);
    return open_as(dir, q ? f : -1, q ? -1 : f);
}

TEST(bytes_per_token_are_what_the_loader_holds) {
    for (size_t i = 0; i < sizeof MODELS / sizeof *MODELS; i++) {
        char rel[128], dir[4096];
        snprintf(rel, sizeof rel, "models/%s", MODELS[i]);
        snprintf(dir, sizeof dir, "%s", shared_path(rel));
        REQUIRE(path_exists(dir), "fixture %s missing", dir);
        kiln_model_stats s;
        kiln_err err;
        REQUIRE(kiln_model_stats_load(dir, &s, &err) == 0, "%s: %s", dir, err.msg);
        for (int f = 0; f < KILN_QUANT_END; f++) { /* every format, then the K-quant mixes */
            kiln_model *m = open_in_format(dir, f);
            if (!m) continue;
            CHECK(s.bytes_per_token[f] == loaded_bytes_per_token(m), "%s %s: kiln info says %lld, the loader holds %lld",
                  MODELS[i], f < KILN_DT_COUNT ? kiln_dtype_name((kiln_dtype)f) : kiln_quant_name(f), (long long)s.bytes_per_token[f],
                  (long long)loaded_bytes_per_token(m));
            kiln_model_free(m);
        }
        kiln_model *m = open_as(dir, -1, -1); /* as stored: zero-copy */
        if (!m) continue;
        CHECK(s.checkpoint_bytes_per_token == loaded_bytes_per_token(m), "%s as stored: %lld vs %lld", MODELS[i],
              (long long)s.checkpoint_bytes_per_token, (long long)loaded_bytes_per_token(m));
        CHECK(s.params == (int64_t)kiln_model_param_count(m), "%s params %lld vs %zu", MODELS[i], (long long)s.params,
              kiln_model_param_count(m));
        kiln_model_free(m);
    }
}

/* The bug this guards: a Q4_0 load keeps the output projection in Q8_0 (34 bytes per 32 weights), and
 * kiln info counted it at Q4_0's 18. tiny-qwen3 is tied: its embedding is that projection. */
TEST(q4_0_counts_the_output_projection_in_q8_0) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", shared_path("models/tiny-qwen3"));
    kiln_config c;
    kiln_model_stats s;
    kiln_err err;
    REQUIRE(kiln_config_load(dir, &c, &err) == 0 && kiln_model_stats_load(dir, &s, &err) == 0, "%s", err.msg);
    REQUIRE(c.tie_word_embeddings, "tiny-qwen3 should be tied");
    const int64_t head = (int64_t)c.vocab_size * (c.hidden_size / 32);
    /* everything else is the same in both counts: the difference is the head at 34 vs 18 bytes a block */
    kiln_model *m = open_as(dir, KILN_DT_Q4_0, -1);
    REQUIRE(m, "open");
    CHECK(m->lm_head.dt == KILN_DT_Q8_0, "loader keeps lm_head in %s", kiln_dtype_name(m->lm_head.dt));
    CHECK(s.bytes_per_token[KILN_DT_Q4_0] >= head * 34, "q4_0 %lld < head in q8_0 %lld",
          (long long)s.bytes_per_token[KILN_DT_Q4_0], (long long)(head * 34));
    kiln_model_free(m);
}

/* A mixture of experts: a token reads n_experts_used of each layer's n_experts, so kiln info counts what
 * the loader holds less the other experts (all alike: the last n_experts - n_experts_used of each layer),
 * in every format; the KV bytes are the attention's as for a dense model. */
static void check_moe_format(const char *name, const char *dir, const kiln_model_stats *s, int f) {
    kiln_model *m = open_in_format(dir, f);
    if (!m) return;
    const kiln_config *c = kiln_model_config(m);
    int64_t idle = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int e = c->n_experts_used; e < c->n_experts; e++) {
            const kiln_expert *x = &m->layers[l].experts[e];
            const kiln_mat *w[] = {&x->w_gate, &x->w_up, &x->w_down};
            for (int j = 0; j < 3; j++) idle += (int64_t)kern_row_bytes(w[j]->dt, w[j]->cols) * w[j]->rows;
        }
    CHECK(idle > 0 && s->bytes_per_token[f] == loaded_bytes_per_token(m) - idle,
          "%s %s: kiln info says %lld, the loader holds %lld of which %lld in experts a token does not read", name,
          kiln_dtype_name((kiln_dtype)f), (long long)s->bytes_per_token[f], (long long)loaded_bytes_per_token(m),
          (long long)idle);
    CHECK(s->kv_bytes_per_token == 2LL * c->n_layers * c->n_kv_heads * c->head_dim * 2, "%s kv bytes %lld (f16 cache)", name,
          (long long)s->kv_bytes_per_token);
    kiln_model_free(m);
}

TEST(moe_counts_only_the_active_experts) {
    static const char *names[] = {"qwen3moe-tiny", "mixtral-tiny"};
    const char *env = getenv("ARCH_FIXTURES");
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", env && *env ? env : "build/arch-fixtures", names[i]);
        REQUIRE(path_exists(dir), "%s missing: run sh $SHARED/tools/make_arch_fixtures.sh $ARCH_FIXTURES", dir);
        kiln_model_stats s;
        kiln_err err;
        REQUIRE(kiln_model_stats_load(dir, &s, &err) == 0, "%s: %s", dir, err.msg);
        for (int f = 0; f < KILN_DT_COUNT; f++) check_moe_format(names[i], dir, &s, f);
    }
}

/* A folder with the sharded tiny-qwen2 (config, index, both shards) plus a stray *.safetensors file the
 * index does not name: the stats are tiny-qwen2's, the stray file is not counted. */
static char tmp[64];

static int link_into(const char *model, const char *name, const char *as) {
    char rel[512], dst[512], *abs;
    snprintf(rel, sizeof rel, "models/%s/%s", model, name);
    snprintf(dst, sizeof dst, "%s/%s", tmp, as ? as : name);
    if (!(abs = realpath(shared_path(rel), NULL))) return -1;
    int rc = symlink(abs, dst);
    free(abs);
    return rc;
}

static void clean_tmp(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    CHECK(system(cmd) == 0, "rm %s", tmp);
}

TEST(stats_honour_the_shard_index) {
    snprintf(tmp, sizeof tmp, "/tmp/kiln_stats_XXXXXX");
    REQUIRE(mkdtemp(tmp), "mkdtemp");
    const char *files[] = {"config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors",
                           "model-00002-of-00002.safetensors"};
    int bad = 0;
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) bad |= link_into("tiny-qwen2", files[i], NULL);
    bad |= link_into("stories260K", "model.safetensors", "stray.safetensors");
    CHECK(!bad, "linking the fixture files into %s", tmp);
    kiln_model_stats want, got;
    kiln_err err;
    CHECK(kiln_model_stats_load(shared_path("models/tiny-qwen2"), &want, &err) == 0, "%s", err.msg);
    CHECK(kiln_model_stats_load(tmp, &got, &err) == 0, "%s", err.msg);
    CHECK(memcmp(&want, &got, sizeof want) == 0, "a stray file changed the stats (params %lld vs %lld)",
          (long long)got.params, (long long)want.params);
    /* an index naming a missing shard fails as the loader does, with one line */
    char p[256];
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", tmp);
    unlink(p);
    CHECK(kiln_model_stats_load(tmp, &got, &err) != 0 && !strchr(err.msg, '\n') && strstr(err.msg, "00002"),
          "missing shard: '%s'", err.msg);
    clean_tmp();
}

int main(void) {
    RUN(bytes_per_token_are_what_the_loader_holds);
    RUN(q4_0_counts_the_output_projection_in_q8_0);
    RUN(stats_honour_the_shard_index);
    RUN(moe_counts_only_the_active_experts);
    return check_done();
}
