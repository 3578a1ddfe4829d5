/* test_gguf.c — the GGUF container parser and the GGUF model loader.
 *
 * The container against llama.cpp's own files in $SHARED/gguf (every key and tensor where the README says),
 * and against generated truncations and byte flips of a small GGUF this test writes (each a one-line error,
 * never a crash; this binary also runs under ASan/UBSan). */
#include <jansson.h>
#include <math.h>

#include "check.h"
#include "kernels/format.h"
#include "kiln.h"
#include "model/gguf.h"

#define KQ512 "gguf/kq-llama-512/kq-llama-512."

/* The container reads llama.cpp's F32 file: the README's hyperparameters, tied embeddings, dims innermost
 * first, F32 everywhere, default alignment. */
TEST(container_reads_llamacpp_f32) {
    gguf_file g;
    kiln_err err = {{0}};
    REQUIRE(gguf_open(&g, shared_path(KQ512 "F32.gguf"), &err) == 0, "%s", err.msg);
    CHECK(g.version == 3, "version %u", g.version);
    CHECK(g.alignment == 32, "alignment %zu", g.alignment);
    const char *arch;
    size_t n;
    CHECK(gguf_get_str(&g, "general.architecture", &arch, &n, &err) == 1 && n == 5 && !memcmp(arch, "llama", 5),
          "architecture");
    uint32_t u = 0;
    CHECK(gguf_get_u32(&g, "llama.embedding_length", &u, &err) == 1 && u == 256, "embedding_length %u", u);
    CHECK(gguf_get_u32(&g, "llama.attention.head_count_kv", &u, &err) == 1 && u == 2, "head_count_kv %u", u);
    CHECK(gguf_get_u32(&g, "llama.attention.key_length", &u, &err) == 1 && u == 64, "key_length %u", u);
    float eps = 0;
    CHECK(gguf_get_f32(&g, "llama.attention.layer_norm_rms_epsilon", &eps, &err) == 1 && fabsf(eps - 1e-5f) < 1e-9f,
          "eps %g", eps);
    CHECK(gguf_get_u32(&g, "general.architecture", &u, &err) == -1 && strstr(err.msg, "general.architecture"),
          "a string read as u32 is an error naming the key: %s", err.msg);
    CHECK(gguf_get_u32(&g, "no.such.key", &u, &err) == 0, "absent key");
    gguf_vtype et;
    uint64_t len = 0;
    CHECK(gguf_get_arr(&g, "tokenizer.ggml.tokens", &et, &len, &err) == 1 && et == GGUF_STRING && len == 512,
          "tokens: type %d, %llu", et, (unsigned long long)len);
    const gguf_kv *tok = gguf_find_kv(&g, "tokenizer.ggml.tokens");
    const char *s = tok ? gguf_arr_str(tok, 1, &n) : NULL;
    CHECK(s && n == 3 && !memcmp(s, "<s>", 3), "token 1 is <s>");
    const gguf_kv *sc = gguf_find_kv(&g, "tokenizer.ggml.scores");
    double d = 0;
    CHECK(sc && gguf_arr_f64(sc, 3, &d) == 0, "scores readable");
    CHECK(gguf_find_tensor(&g, "output.weight") == NULL, "tied: no output.weight");
    const gguf_tensor *e = gguf_find_tensor(&g, "token_embd.weight");
    REQUIRE(e, "token_embd.weight");
    CHECK(e->type == 0 && e->n_dims == 2 && e->ne[0] == 256 && e->ne[1] == 512 && e->nbytes == 256 * 512 * 4,
          "token_embd: type %d dims %lld x %lld", e->type, (long long)e->ne[0], (long long)e->ne[1]);
    CHECK(gguf_n_tensors(&g) == 20, "%d tensors", gguf_n_tensors(&g));
    gguf_close(&g);
}

/* kiln's formats (format.h) are stored under the ggml ids whose block geometry they have. */
TEST(format_table_agrees_with_ggml_types) {
    for (int dt = 0; dt < KILN_DT_COUNT; dt++) {
        int bv = 0;
        size_t bb = 0;
        CHECK(gguf_type_block(kern_formats[dt].gguf_type, &bv, &bb) == 0 && bv == kern_formats[dt].block_values &&
                  bb == kern_formats[dt].block_bytes,
              "%s: ggml %d has %d values in %zu bytes", kern_formats[dt].name, kern_formats[dt].gguf_type, bv, bb);
    }
    CHECK(gguf_type_name(12) && !strcmp(gguf_type_name(12), "Q4_K"), "Q4_K");
    CHECK(gguf_type_name(4) == NULL && gguf_type_name(40) == NULL && gguf_type_name(-1) == NULL, "unknown ids");
}

/* Each quantised file's tensor types are the golden's (e.g. Q6_K token_embd in the Q4_0 file). */
TEST(container_reads_quantised_types) {
    gguf_file g;
    kiln_err err = {{0}};
    REQUIRE(gguf_open(&g, shared_path(KQ512 "Q4_0.gguf"), &err) == 0, "%s", err.msg);
    const gguf_tensor *e = gguf_find_tensor(&g, "token_embd.weight"), *q = gguf_find_tensor(&g, "blk.0.attn_q.weight");
    CHECK(e && e->type == 14 && e->nbytes == 512 * 210, "token_embd Q6_K");
    CHECK(q && q->type == 2 && q->nbytes == 256 / 32 * 18 * 256, "attn_q Q4_0");
    gguf_close(&g);
}


/* ---- the model loader against llama.cpp's logits ---- */

static json_t *golden(const char *fmt) {
    char rel[256];
    snprintf(rel, sizeof rel, KQ512 "%s.golden.json", fmt);
    json_error_t je;
    return json_load_file(shared_path(rel), 0, &je);
}

static float *read_logits(const char *fmt, size_t n) {
    char rel[256];
    snprintf(rel, sizeof rel, KQ512 "%s.logits.f32", fmt);
    FILE *f = fopen(shared_path(rel), "rb");
    float *v = f ? malloc(n * sizeof *v) : NULL;
    if (v && fread(v, sizeof *v, n, f) != n) free(v), v = NULL;
    if (f) fclose(f);
    return v;
}

static kiln_model *open_gguf(const char *fmt, kiln_err *err) {
    char rel[256];
    snprintf(rel, sizeof rel, KQ512 "%s.gguf", fmt);
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.threads = 1;
    return kiln_model_open(shared_path(rel), &mo, err);
}

/* Prefills case cs's prompt (logits at every position into *all, n x V), then greedy-decodes steps tokens;
 * returns how many of the golden greedy_ids it reproduced in a row. */
static int run_case(kiln_model *m, json_t *cs, float **all, int *n_out, int steps) {
    const int V = kiln_model_config(m)->vocab_size;
    json_t *pid = json_object_get(cs, "prompt_ids"), *g = json_object_get(cs, "greedy_ids");
    int n = (int)json_array_size(pid);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(pid, (size_t)i));
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.n_ctx = n + steps + 1;
    kiln_err err = {{0}};
    kiln_ctx *c = kiln_ctx_new(m, &co, &err);
    *all = malloc((size_t)n * V * sizeof(float));
    *n_out = n;
    int seq = c ? kiln_seq_new(c, &err) : -1, nt = n, match = 0;
    kiln_batch b = {1, &seq, &nt, ids, true, *all};
    int rc = c ? kiln_forward(c, &b, &err) : -1;
    CHECK(rc == 0, "forward: %s", err.msg);
    float *last = malloc((size_t)V * sizeof *last);
    if (rc == 0) memcpy(last, *all + (size_t)(n - 1) * V, (size_t)V * sizeof *last);
    for (int s = 0; rc == 0 && s < steps; s++) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (last[i] > last[best]) best = i;
        if (best != json_integer_value(json_array_get(g, (size_t)s))) break;
        match++;
        int32_t tok = best;
        nt = 1;
        kiln_batch d = {1, &seq, &nt, &tok, false, last};
        rc = kiln_forward(c, &d, &err);
    }
    free(last), free(ids);
    kiln_ctx_free(c);
    return match;
}

/* The F32 file: logits within 1e-3 of llama.cpp's top-20 at every position of every prompt and of its
 * full logits file, greedy identical for every step the golden calls safe. */
TEST(f32_matches_llamacpp) {
    kiln_err err = {{0}};
    kiln_model *m = open_gguf("F32", &err);
    REQUIRE(m, "%s", err.msg);
    json_t *gj = golden("F32");
    REQUIRE(gj, "cannot read the F32 golden");
    const int V = kiln_model_config(m)->vocab_size;
    CHECK(V == 512 && kiln_model_config(m)->tie_word_embeddings, "vocab %d, tied", V);
    json_t *cases = json_object_get(gj, "cases");
    for (size_t ci = 0; ci < json_array_size(cases); ci++) {
        json_t *cs = json_array_get(cases, ci);
        int safe = (int)json_integer_value(json_object_get(cs, "greedy_safe_steps")), n;
        float *all;
        int match = run_case(m, cs, &all, &n, safe);
        CHECK(match == safe, "%s: greedy %d of %d safe steps", json_string_value(json_object_get(cs, "name")), match, safe);
        json_t *tids = json_object_get(cs, "topk_ids"), *tl = json_object_get(cs, "topk_logits");
        double md = 0;
        for (int p = 0; p < n; p++)
            for (int k = 0; k < 20; k++) {
                int id = (int)json_integer_value(json_array_get(json_array_get(tids, (size_t)p), (size_t)k));
                double ref = json_number_value(json_array_get(json_array_get(tl, (size_t)p), (size_t)k));
                md = fmax(md, fabs(all[(size_t)p * V + id] - ref));
            }
        CHECK(md <= 1e-3, "%s: top-20 logits max diff %g", json_string_value(json_object_get(cs, "name")), md);
        if (json_is_string(json_object_get(cs, "full_logits_file"))) {
            float *ref = read_logits("F32", (size_t)n * V);
            CHECK(ref, "cannot read the F32 logits file");
            double fd = 0;
            for (size_t i = 0; ref && i < (size_t)n * V; i++) fd = fmax(fd, fabs(all[i] - ref[i]));
            CHECK(fd <= 1e-3, "full logits max diff %g", fd);
            free(ref);
        }
        free(all);
    }
    json_decref(gj);
    kiln_model_free(m);
}

/* KL(p || q) of two logit rows, softmax in double. */
static double kl_rows(const float *p, const float *q, int V) {
    double mp = -INFINITY, mq = -INFINITY, sp = 0, sq = 0, kl = 0;
    for (int i = 0; i < V; i++) mp = fmax(mp, p[i]), mq = fmax(mq, q[i]);
    for (int i = 0; i < V; i++) sp += exp(p[i] - mp), sq += exp(q[i] - mq);
    for (int i = 0; i < V; i++) {
        double lp = p[i] - mp - log(sp), lq = q[i] - mq - log(sq);
        kl += exp(lp) * (lp - lq);
    }
    return kl;
}

/* A quantised file: mean KL(llama.cpp || kiln) over medium_20 within the golden's bound, greedy identical
 * for the safe steps of every prompt. */
static void check_quantised(const char *fmt) {
    kiln_err err = {{0}};
    kiln_model *m = open_gguf(fmt, &err);
    REQUIRE(m, "%s: %s", fmt, err.msg);
    json_t *gj = golden(fmt);
    REQUIRE(gj, "cannot read the %s golden", fmt);
    const int V = kiln_model_config(m)->vocab_size;
    const double bound = json_number_value(json_object_get(json_object_get(gj, "kl"), "test_bound_kl_llamacpp_to_engine"));
    json_t *cases = json_object_get(gj, "cases");
    for (size_t ci = 0; ci < json_array_size(cases); ci++) {
        json_t *cs = json_array_get(cases, ci);
        int safe = (int)json_integer_value(json_object_get(cs, "greedy_safe_steps")), n;
        float *all;
        int match = run_case(m, cs, &all, &n, safe);
        CHECK(match == safe, "%s %s: greedy %d of %d safe steps", fmt, json_string_value(json_object_get(cs, "name")),
              match, safe);
        if (json_is_string(json_object_get(cs, "full_logits_file"))) {
            float *ref = read_logits(fmt, (size_t)n * V);
            REQUIRE(ref, "cannot read the %s logits file", fmt);
            double kl = 0;
            for (int p = 0; p < n; p++) kl += kl_rows(ref + (size_t)p * V, all + (size_t)p * V, V) / n;
            printf("  %s: mean KL(llama.cpp || kiln) %.6f, bound %.6f\n", fmt, kl, bound);
            CHECK(kl <= bound, "%s: mean KL %g > bound %g", fmt, kl, bound);
            free(ref);
        }
        free(all);
    }
    json_decref(gj);
    kiln_model_free(m);
}

TEST(q8_0_matches_llamacpp) { check_quantised("Q8_0"); }

/* A tensor type kiln does not compute yet is a one-line error naming the tensor and the type (the Q4_K_M
 * file's token_embd is Q6_K). */
TEST(unsupported_type_is_named) {
    kiln_err err = {{0}};
    kiln_model *m = open_gguf("Q4_K_M", &err);
    CHECK(!m && strstr(err.msg, "type Q6_K") && strstr(err.msg, "token_embd.weight") && !strchr(err.msg, '\n'),
          "error: %s", err.msg);
    kiln_model_free(m);
}

int main(void) {
    RUN(container_reads_llamacpp_f32);
    RUN(format_table_agrees_with_ggml_types);
    RUN(container_reads_quantised_types);
    RUN(f32_matches_llamacpp);
    RUN(q8_0_matches_llamacpp);
    RUN(unsupported_type_is_named);
    return check_done();
}
