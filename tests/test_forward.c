/* test_forward.c — the forward pass against the independent reference goldens in
 * $SHARED/golden/models/<model>/ (top-20 logits at every position, full last logits, greedy ids), plus
 * KV-cache equivalences: all-at-once prefill == token by token == batched with another sequence == forked. */
#include <jansson.h>
#include <math.h>

#include "check.h"
#include "kiln.h"

static json_t *load_golden(const char *model) {
    char rel[256];
    snprintf(rel, sizeof rel, "golden/models/%s/golden.json", model);
    json_error_t je;
    json_t *g = json_load_file(shared_path(rel), 0, &je);
    if (!g) fprintf(stderr, "  cannot read %s: %s\n", shared_path(rel), je.text);
    return g;
}

static kiln_model *open_model(const char *model, int dtype) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/%s", model);
    kiln_model_opts o;
    kiln_model_opts_default(&o);
    o.dtype = dtype;
    kiln_err err;
    kiln_model *m = kiln_model_open(shared_path(rel), &o, &err);
    if (!m) fprintf(stderr, "  %s\n", err.msg);
    return m;
}

static int32_t *json_ids(json_t *a, size_t *n) {
    *n = json_array_size(a);
    int32_t *v = malloc((*n ? *n : 1) * sizeof *v);
    for (size_t i = 0; i < *n; i++) v[i] = (int32_t)json_integer_value(json_array_get(a, i));
    return v;
}

static int32_t argmax(const float *v, int n) {
    int32_t b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b]) b = i;
    return b;
}

/* The reference's top-20 at one position: every logit within 1e-3, and our ranking of those ids equal
 * to the reference's except for swaps of entries whose reference logits differ by < 1e-4 (plus the 5e-6
 * the reference's 5-decimal rounding adds). */
static void check_position(const char *what, const float *row, int V, json_t *ref_ids, json_t *ref_logits) {
    size_t K = json_array_size(ref_ids);
    for (size_t k = 0; k < K; k++) {
        int id = (int)json_integer_value(json_array_get(ref_ids, k));
        double want = json_number_value(json_array_get(ref_logits, k));
        CHECK(fabs(row[id] - want) <= 1e-3, "%s: logit of %d = %.6f, reference %.6f", what, id, row[id], want);
        for (size_t j = k + 1; j < K; j++) { /* every later reference entry must not beat this one... */
            int oid = (int)json_integer_value(json_array_get(ref_ids, j));
            double owant = json_number_value(json_array_get(ref_logits, j));
            if (row[oid] > row[id]) /* ...unless the two are a tie by the reference's own numbers */
                CHECK(want - owant < 1e-4 + 1e-5, "%s: token %d (ref %.5f) ranks above %d (ref %.5f)", what, oid,
                      owant, id, want);
        }
    }
    /* and no token outside the reference's list may beat its last entry by more than the logit tolerance */
    double last = json_number_value(json_array_get(ref_logits, K - 1));
    for (int t = 0; t < V; t++) {
        if (row[t] <= last + 1e-3) continue;
        int listed = 0;
        for (size_t k = 0; k < K && !listed; k++) listed = json_integer_value(json_array_get(ref_ids, k)) == t;
        CHECK(listed, "%s: token %d (%.6f) is outside the reference top-%zu (last %.5f)", what, t, row[t], K, last);
    }
}

static void golden_model(const char *model, int dtype) {
    json_t *g = load_golden(model);
    REQUIRE(g, "golden for %s", model);
    kiln_model *m = open_model(model, dtype);
    if (!m) {
        CHECK(m, "open %s", model);
        json_decref(g);
        return;
    }
    int V = kiln_model_config(m)->vocab_size;
    kiln_err err;
    size_t ci;
    json_t *cs;
    json_array_foreach(json_object_get(g, "cases"), ci, cs) {
        size_t n;
        int32_t *ids = json_ids(json_object_get(cs, "prompt_ids"), &n);
        size_t n_greedy = json_array_size(json_object_get(cs, "greedy_ids"));
        kiln_ctx_opts co;
        kiln_ctx_opts_default(&co);
        co.n_ctx = (int)(n + n_greedy);
        kiln_ctx *c = kiln_ctx_new(m, &co, &err);
        float *logits = malloc(n * (size_t)V * sizeof *logits);
        int seq = kiln_seq_new(c, &err), nt = (int)n;
        kiln_batch b = {1, &seq, &nt, ids, true, logits};
        CHECK(kiln_forward(c, &b, &err) == 0, "%s", err.msg);
        char what[128];
        for (size_t p = 0; p < n; p++) {
            snprintf(what, sizeof what, "%s case %zu pos %zu", model, ci, p);
            check_position(what, logits + p * (size_t)V, V, json_array_get(json_object_get(cs, "topk_ids"), p),
                           json_array_get(json_object_get(cs, "topk_logits"), p));
        }
        /* full last-position logits */
        char rel[256];
        snprintf(rel, sizeof rel, "golden/models/%s/%s", model, json_string_value(json_object_get(cs, "last_logits_file")));
        size_t len;
        float *ref = (float *)kiln_read_file(shared_path(rel), &len, &err);
        CHECK(ref && len == (size_t)V * 4, "%s: %s", rel, ref ? "size mismatch" : err.msg);
        if (ref && len == (size_t)V * 4) {
            float worst = 0;
            for (int k = 0; k < V; k++) worst = fmaxf(worst, fabsf(ref[k] - logits[(n - 1) * (size_t)V + k]));
            CHECK(worst <= 1e-3, "%s case %zu: last logits max |diff| %g", model, ci, worst);
        }
        free(ref);
        /* greedy continuation, token by token through the cache */
        size_t ng;
        int32_t *want = json_ids(json_object_get(cs, "greedy_ids"), &ng);
        int32_t tok = argmax(logits + (n - 1) * (size_t)V, V);
        size_t safe = dtype < 0 ? ng : (size_t)json_integer_value(json_object_get(cs, "greedy_safe_steps"));
        for (size_t s = 0; s < ng; s++) {
            if (s < safe) CHECK(tok == want[s], "%s case %zu greedy step %zu: %d, want %d", model, ci, s, tok, want[s]);
            if (tok != want[s]) break;
            nt = 1;
            b.tokens = &tok;
            b.logits_all = false;
            if (kiln_forward(c, &b, &err)) {
                CHECK(0, "%s", err.msg);
                break;
            }
            tok = argmax(logits, V);
        }
        free(want);
        free(logits);
        free(ids);
        kiln_ctx_free(c);
    }
    kiln_model_free(m);
    json_decref(g);
}

TEST(golden_stories260K) { golden_model("stories260K", -1); }
TEST(golden_tiny_llama3) { golden_model("tiny-llama3", -1); }
TEST(golden_tiny_qwen2_sharded_f16_bias) { golden_model("tiny-qwen2", -1); }
TEST(golden_tiny_qwen3_qknorm_headdim) { golden_model("tiny-qwen3", -1); }
/* Converted to f32 at load: same numbers as reading bf16 in place. */
TEST(golden_tiny_qwen3_as_f32) { golden_model("tiny-qwen3", KILN_DT_F32); }

/* Logits for `ids` computed four ways must agree to float noise. */
TEST(kv_cache_equivalences) {
    kiln_model *m = open_model("tiny-qwen3", -1);
    REQUIRE(m, "model");
    int V = kiln_model_config(m)->vocab_size;
    int32_t ids[40], other[23];
    for (int i = 0; i < 40; i++) ids[i] = (i * 7919 + 13) % 150000;
    for (int i = 0; i < 23; i++) other[i] = (i * 104729 + 5) % 150000;
    kiln_ctx_opts co = {4, 64, 0};
    kiln_err err;
    kiln_ctx *c = kiln_ctx_new(m, &co, &err);
    float *a = malloc((size_t)V * 4), *bb = malloc((size_t)V * 4 * 2), *f = malloc((size_t)V * 4);
    /* 1. all at once */
    int s1 = kiln_seq_new(c, &err), n = 40;
    kiln_batch b = {1, &s1, &n, ids, false, a};
    REQUIRE(kiln_forward(c, &b, &err) == 0, "%s", err.msg);
    /* 2. token by token in a second sequence, batched with a third (different prompt) on the last step */
    int s2 = kiln_seq_new(c, &err), one = 1;
    for (int i = 0; i < 39; i++) {
        kiln_batch bt = {1, &s2, &one, &ids[i], false, bb};
        REQUIRE(kiln_forward(c, &bt, &err) == 0, "%s", err.msg);
    }
    int s3 = kiln_seq_new(c, &err);
    int seqs[2] = {s3, s2}, ns[2] = {23, 1};
    int32_t toks[24];
    memcpy(toks, other, sizeof other);
    toks[23] = ids[39];
    kiln_batch b2 = {2, seqs, ns, toks, false, bb};
    REQUIRE(kiln_forward(c, &b2, &err) == 0, "%s", err.msg);
    float d = 0;
    for (int k = 0; k < V; k++) d = fmaxf(d, fabsf(a[k] - bb[(size_t)V + k]));
    CHECK(d < 1e-4, "prefill vs token-by-token-in-batch: %g", d);
    /* 3. fork s1 at 37 tokens (partial block → copy), feed the last 3 */
    kiln_seq_free(c, s2);
    int s4 = kiln_seq_fork(c, s1, 37, &err);
    REQUIRE(s4 >= 0, "%s", err.msg);
    int three = 3;
    kiln_batch b3 = {1, &s4, &three, &ids[37], false, f};
    REQUIRE(kiln_forward(c, &b3, &err) == 0, "%s", err.msg);
    d = 0;
    for (int k = 0; k < V; k++) d = fmaxf(d, fabsf(a[k] - f[k]));
    CHECK(d < 1e-4, "prefill vs fork+continue: %g", d);
    /* 4. truncate s1 back to 32 (block edge: shared with s4) and regrow: must not disturb s4 */
    REQUIRE(kiln_seq_truncate(c, s1, 32, &err) == 0, "%s", err.msg);
    int eight = 8;
    kiln_batch b4 = {1, &s1, &eight, &ids[32], false, f};
    REQUIRE(kiln_forward(c, &b4, &err) == 0, "%s", err.msg);
    d = 0;
    for (int k = 0; k < V; k++) d = fmaxf(d, fabsf(a[k] - f[k]));
    CHECK(d < 1e-4, "truncate+regrow: %g", d);
    /* blocks all come back */
    kiln_seq_free(c, s1);
    kiln_seq_free(c, s3);
    kiln_seq_free(c, s4);
    CHECK(kiln_ctx_free_blocks(c) == kiln_ctx_total_blocks(c), "free %d of %d", kiln_ctx_free_blocks(c),
          kiln_ctx_total_blocks(c));
    free(a);
    free(bb);
    free(f);
    kiln_ctx_free(c);
    kiln_model_free(m);
}

TEST(forward_rejects_bad_batches) {
    kiln_model *m = open_model("stories260K", -1);
    REQUIRE(m, "model");
    kiln_ctx_opts co = {1, 16, 1};
    kiln_err err;
    kiln_ctx *c = kiln_ctx_new(m, &co, &err);
    REQUIRE(c, "%s", err.msg);
    float logits[512];
    int s = kiln_seq_new(c, &err), n = 1;
    int32_t bad = 512;
    kiln_batch b = {1, &s, &n, &bad, false, logits};
    CHECK(kiln_forward(c, &b, &err) == -1 && strstr(err.msg, "512"), "vocab check: %s", err.msg);
    int32_t ids[17] = {1};
    n = 17;
    b.tokens = ids;
    CHECK(kiln_forward(c, &b, &err) == -1 && strstr(err.msg, "context"), "n_ctx check: %s", err.msg);
    CHECK(kiln_seq_len(c, s) == 0, "no state change on failure");
    CHECK(kiln_seq_new(c, &err) == -1, "one slot only");
    kiln_ctx_free(c);
    kiln_model_free(m);
}

int main(void) {
    RUN(golden_stories260K);
    RUN(golden_tiny_llama3);
    RUN(golden_tiny_qwen2_sharded_f16_bias);
    RUN(golden_tiny_qwen3_qknorm_headdim);
    RUN(golden_tiny_qwen3_as_f32);
    RUN(kv_cache_equivalences);
    RUN(forward_rejects_bad_batches);
    return check_done();
}
