/* test_arch.c — every architecture beyond the Llama family against its golden
 * (../shared/golden/models/<arch>-tiny: llama.cpp run exactly in f32, cross-checked against a float32 torch
 * forward). The checkpoints are recreated by tests/run.sh into $ARCH_FIXTURES (byte for byte, sha256-checked).
 * Each case: the top-20 logits at every prompt position within 1e-3 (ranks may swap only between
 * reference logits within 1e-4), then the 16 greedy tokens, one decode step at a time. */
#include <jansson.h>
#include <math.h>

#include "check.h"
#include "kiln.h"

#define TOL 1e-3f

static const char *fixture_dir(const char *name) {
    static char buf[4096];
    const char *d = getenv("ARCH_FIXTURES");
    snprintf(buf, sizeof buf, "%s/%s", d && *d ? d : "build/arch-fixtures", name);
    return buf;
}

static int32_t *json_ids(json_t *a, int *n) {
    *n = (int)json_array_size(a);
    int32_t *v = malloc((size_t)*n * sizeof *v + 1);
    for (int i = 0; i < *n; i++) v[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
    return v;
}

static int argmax(const float *row, int V) {
    int best = 0;
    for (int i = 1; i < V; i++)
        if (row[i] > row[best]) best = i;
    return best;
}

/* Mismatches of one position's logits against the golden's top 20 (values, then ranks). */
static int topk_mismatches(const char *what, int p, const float *row, json_t *rid, json_t *rl) {
    int bad = 0;
    for (int k = 0; k < 20; k++) {
        int id = (int)json_integer_value(json_array_get(rid, (size_t)k));
        double ref = json_number_value(json_array_get(rl, (size_t)k));
        if (fabs(row[id] - ref) > TOL && bad++ < 3)
            fprintf(stderr, "  %s pos %d top %d id %d: %.6f vs %.6f\n", what, p, k, id, row[id], ref);
        /* rank: every token the golden ranks above id has a logit >= id's, up to the 1e-4 near-tie */
        if (k > 0) {
            int above = (int)json_integer_value(json_array_get(rid, (size_t)k - 1));
            double ra = json_number_value(json_array_get(rl, (size_t)k - 1));
            if (row[above] < row[id] && ra - ref > 1e-4 && bad++ < 3)
                fprintf(stderr, "  %s pos %d: id %d ranked above %d\n", what, p, id, above);
        }
    }
    return bad;
}

static void check_case(kiln_model *m, const char *what, json_t *cs, int greedy_max) {
    int V = kiln_model_config(m)->vocab_size, n;
    int32_t *ids = json_ids(json_object_get(cs, "prompt_ids"), &n);
    json_t *g = json_object_get(cs, "greedy_ids");
    int greedy_n = (int)json_array_size(g) < greedy_max ? (int)json_array_size(g) : greedy_max;
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.n_ctx = n + greedy_n;
    co.kv_type = KILN_DT_F32; /* the goldens are llama.cpp's with an f32 KV cache */
    kiln_err err;
    kiln_ctx *c = kiln_ctx_new(m, &co, &err);
    float *logits = malloc((size_t)n * V * sizeof(float));
    CHECK(c, "%s: %s", what, err.msg);
    int seq = c ? kiln_seq_new(c, &err) : -1, nt = n;
    kiln_batch b = {1, &seq, &nt, ids, true, logits};
    int rc = c ? kiln_forward(c, &b, &err) : -1;
    CHECK(!c || rc == 0, "%s: %s", what, err.msg);
    int bad = 0;
    for (int p = 0; rc == 0 && p < n; p++)
        bad += topk_mismatches(what, p, logits + (size_t)p * V, json_array_get(json_object_get(cs, "topk_ids"), (size_t)p),
                               json_array_get(json_object_get(cs, "topk_logits"), (size_t)p));
    CHECK(bad == 0, "%s: %d top-20 mismatches", what, bad);
    int match = 0;
    const float *last = logits + (size_t)(n - 1) * V;
    for (int s = 0; rc == 0 && s < greedy_n; s++) {
        int32_t tok = argmax(last, V);
        if (tok != json_integer_value(json_array_get(g, (size_t)s))) break;
        match++;
        nt = 1;
        kiln_batch d = {1, &seq, &nt, &tok, false, logits};
        rc = kiln_forward(c, &d, &err);
        last = logits;
    }
    CHECK(match == greedy_n, "%s: greedy matches %d of %d tokens", what, match, greedy_n);
    free(logits);
    free(ids);
    kiln_ctx_free(c);
}

/* Every golden case of <name> (an <arch>-tiny directory) from model path `path` opened with `mo`. */
static void golden_arch(const char *name, const char *path, const kiln_model_opts *mo) {
    char rel[256];
    snprintf(rel, sizeof rel, "golden/models/%s/golden.json", name);
    json_error_t je;
    json_t *gj = json_load_file(shared_path(rel), 0, &je);
    REQUIRE(gj, "cannot load %s: %s", shared_path(rel), je.text);
    kiln_err err;
    kiln_model *m = kiln_model_open(path, mo, &err);
    if (!m) json_decref(gj);
    REQUIRE(m, "%s: %s", path, err.msg);
    json_t *cases = json_object_get(gj, "cases");
    CHECK(json_array_size(cases) == 4, "%s: %zu cases", name, json_array_size(cases));
    for (size_t i = 0; i < json_array_size(cases); i++) {
        char what[128];
        snprintf(what, sizeof what, "%s case %zu", name, i);
        check_case(m, what, json_array_get(cases, i), 1000);
    }
    kiln_model_free(m);
    json_decref(gj);
}

static void golden_safetensors(const char *name) {
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    golden_arch(name, fixture_dir(name), &mo);
}

/* The recreated checkpoints are there (tests/run.sh makes them); a missing one fails here, by name. */
TEST(arch_fixtures_present) {
    static const char *names[] = {"mistral-tiny", "gemma3-tiny",  "qwen3moe-tiny", "mixtral-tiny",
                                  "phi3-tiny",    "gemma2-tiny", "olmo2-tiny"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/model.safetensors", fixture_dir(names[i]));
        CHECK(path_exists(p), "%s missing: run sh $SHARED/tools/make_arch_fixtures.sh $ARCH_FIXTURES", p);
    }
}

int main(void) {
    RUN(arch_fixtures_present);
    (void)golden_safetensors; /* each architecture adds its RUN(golden_<arch>) here */
    return check_done();
}
