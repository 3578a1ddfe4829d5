/* test_kvwindow.c — the sliding-window layers' KV ring (src/engine/kvcache.c): window layers keep only the
 * blocks a later query can see, and every way of reusing a sequence stays exact with that.
 *
 * On the gemma3 (5 window layers + 1 global), gemma2 (alternating) and mistral (every layer windowed)
 * fixtures, all with sliding_window 8, prompts of 200 random ids (25 windows): decoding in rounds, forks,
 * truncates, the server's prefix cache, kiln_generate_in's reuse and mixed batches all give the logits of
 * one fresh pass within 1e-4; the blocks in use are the global layers' every position plus the window
 * layers' ring, exactly; going back before the window is refused (or, for the callers, prefilled again). */
#include <math.h>

#include "check.h"
#include "kiln.h"
#include "serve/serve.h"

#define N 200
#define TOL 1e-4

static const char *const MODELS[] = {"gemma3-tiny", "gemma2-tiny", "mistral-tiny"};
#define N_MODELS (int)(sizeof MODELS / sizeof *MODELS)

static kiln_model *open_arch(const char *name) {
    char dir[4096];
    const char *d = getenv("ARCH_FIXTURES");
    snprintf(dir, sizeof dir, "%s/%s", d && *d ? d : "build/arch-fixtures", name);
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.quiet = true;
    mo.exact = true; /* rounds vs one pass: bf16 dot products round a 4+ token step but not a decode step */
    kiln_err err;
    kiln_model *m = kiln_model_open(dir, &mo, &err);
    CHECK(m, "%s: %s (run sh $SHARED/tools/make_arch_fixtures.sh $ARCH_FIXTURES)", name, err.msg);
    return m;
}

static void prompt_ids(int32_t *ids, int n, int V) {
    for (int i = 0; i < n; i++) ids[i] = 1 + (int32_t)(((int64_t)i * 7919 + 13) % (V - 1));
}

/* An f32 context (exact comparisons) of max_seqs sequences of N tokens; step 0: the default. */
static kiln_ctx *ctx_for(kiln_model *m, int max_seqs, int step) {
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.max_seqs = max_seqs, co.n_ctx = N, co.kv_type = KILN_DT_F32, co.max_step_tokens = step;
    kiln_err err;
    kiln_ctx *c = kiln_ctx_new(m, &co, &err);
    CHECK(c, "%s", err.msg);
    return c;
}

/* The logits of every position of ids[0..N) in one pass: the reference. */
static float *one_pass(kiln_model *m, const int32_t *ids) {
    const int V = kiln_model_config(m)->vocab_size;
    kiln_ctx *c = ctx_for(m, 1, 0);
    float *ref = malloc((size_t)N * V * sizeof *ref);
    kiln_err err;
    int s = c ? kiln_seq_new(c, &err) : -1, n = N;
    kiln_batch b = {1, &s, &n, ids, true, ref};
    CHECK(c && kiln_forward(c, &b, &err) == 0, "reference pass: %s", err.msg);
    kiln_ctx_free(c);
    return ref;
}

/* Largest |difference| between rows [0, n) of got and the reference's rows from position p0. */
static double diff_rows(const float *got, const float *ref, int p0, int n, int V) {
    double worst = 0;
    for (size_t i = 0; i < (size_t)n * V; i++) worst = fmax(worst, fabs(got[i] - ref[(size_t)p0 * V + i]));
    return worst;
}

static int n_window_layers(const kiln_config *g) {
    int n = 0;
    for (int l = 0; l < g->n_layers; l++) n += kiln_config_layer_windowed(g, l);
    return n;
}

/* The window blocks a sequence of len tokens holds: those overlapping [floor(len/16)*16 - w + 1, len). */
static int expected_window_blocks(int len, int w) {
    int lo = len / KILN_KV_BLOCK * KILN_KV_BLOCK - w + 1;
    return (len + KILN_KV_BLOCK - 1) / KILN_KV_BLOCK - (lo > 0 ? lo / KILN_KV_BLOCK : 0);
}

/* Blocks in use in both pools, and their bytes, are the global layers' every position plus the ring. */
static void check_blocks(const kiln_model *m, const kiln_ctx *c, int len, const char *what) {
    const kiln_config *g = kiln_model_config(m);
    const int nw = n_window_layers(g), w = g->sliding_window;
    const int global = (len + KILN_KV_BLOCK - 1) / KILN_KV_BLOCK, ring = expected_window_blocks(len, w);
    const int used = kiln_ctx_total_blocks(c) - kiln_ctx_free_blocks(c),
              wused = kiln_ctx_window_total_blocks(c) - kiln_ctx_window_free_blocks(c);
    CHECK(used == global && wused == ring, "%s at %d: blocks %d (want %d), window blocks %d (want %d)", what, len, used,
          global, wused, ring);
    const int64_t per_g = kiln_kv_bytes_per_token(g->n_layers - nw, g->n_kv_heads, g->head_dim, KILN_DT_F32),
                  per_w = kiln_kv_bytes_per_token(nw, g->n_kv_heads, g->head_dim, KILN_DT_F32);
    CHECK((int64_t)kiln_ctx_kv_bytes_used(c) == KILN_KV_BLOCK * (global * per_g + ring * per_w) &&
              (int64_t)kiln_ctx_block_bytes(c) == KILN_KV_BLOCK * per_g,
          "%s at %d: %zu bytes in use", what, len, kiln_ctx_kv_bytes_used(c));
}

/* One model's run: its prompt, the one-pass reference, an output buffer and a context. */
typedef struct fixture {
    kiln_model *m;
    int V;
    int32_t ids[N];
    float *ref, *out;
    kiln_ctx *c;
} fixture;

/* false when something is missing (reported); fixture_close either way. */
static bool fixture_open(fixture *f, const char *name, int out_rows, int max_seqs, int step) {
    f->ref = f->out = NULL, f->c = NULL;
    if (!(f->m = open_arch(name))) return false;
    f->V = kiln_model_config(f->m)->vocab_size;
    prompt_ids(f->ids, N, f->V);
    f->ref = one_pass(f->m, f->ids);
    f->out = malloc((size_t)out_rows * f->V * sizeof *f->out);
    return (f->c = ctx_for(f->m, max_seqs, step)) != NULL;
}

static void fixture_close(fixture *f) {
    kiln_ctx_free(f->c);
    free(f->ref), free(f->out);
    kiln_model_free(f->m);
}

/* Every block of both pools is back on its free list. */
static void check_no_leak(const kiln_ctx *c, const char *what) {
    CHECK(kiln_ctx_free_blocks(c) == kiln_ctx_total_blocks(c) &&
              kiln_ctx_window_free_blocks(c) == kiln_ctx_window_total_blocks(c),
          "%s: blocks leaked", what);
}

/* Feeds ids[from..to) to seq in steps of `chunk`, every step's logits against the reference. */
static void feed(kiln_ctx *c, const kiln_model *m, int seq, const int32_t *ids, int from, int to, int chunk,
                 const float *ref, float *out, const char *what) {
    const int V = kiln_model_config(m)->vocab_size;
    kiln_err err;
    for (int p = from; p < to; p += chunk) {
        int n = to - p < chunk ? to - p : chunk;
        kiln_batch b = {1, &seq, &n, ids + p, true, out};
        REQUIRE(kiln_forward(c, &b, &err) == 0, "%s at %d: %s", what, p, err.msg);
        double d = diff_rows(out, ref, p, n, V);
        CHECK(d <= TOL, "%s: positions %d..%d differ from one pass by %g", what, p, p + n - 1, d);
    }
}

/* Rounds of 5 tokens (a 37-token chunk is 8 of them), then decoding one token at a time: the logits of one
 * pass, the blocks in use after every step exactly the global layers' plus the ring, the ring's pool
 * sized per sequence, nothing leaked. */
TEST(window_rounds_and_blocks) {
    for (int k = 0; k < N_MODELS; k++) {
        fixture f;
        if (fixture_open(&f, MODELS[k], 37, 2, 5)) {
            const kiln_config *g = kiln_model_config(f.m);
            kiln_err err;
            int s = kiln_seq_new(f.c, &err);
            CHECK(kiln_ctx_window_total_blocks(f.c) == 2 * kiln_kv_window_blocks(g->sliding_window, N, 5) &&
                      kiln_kv_window_blocks(g->sliding_window, N, 5) == 3,
                  "%s: window pool %d", MODELS[k], kiln_ctx_window_total_blocks(f.c));
            for (int p = 0; p < N; p = kiln_seq_len(f.c, s)) {
                feed(f.c, f.m, s, f.ids, p, p < 111 ? p + 37 : p + 1, 37, f.ref, f.out, MODELS[k]);
                check_blocks(f.m, f.c, kiln_seq_len(f.c, s), MODELS[k]);
                if (kiln_seq_len(f.c, s) == p) break; /* a failed step (reported) */
            }
            kiln_seq_free(f.c, s);
            check_no_leak(f.c, MODELS[k]);
        }
        fixture_close(&f);
    }
}

/* Back before the window: refused with the reason, nothing changed; the last block boundary and later
 * points work; forks at them and a fresh sequence then run in one mixed batch, as one pass; truncating to
 * 0 and prefilling again works too. */
static void fork_truncate_mixed(fixture *x, const char *name) {
    kiln_ctx *c = x->c;
    const int V = x->V;
    const int32_t *ids = x->ids;
    kiln_err err = {{0}};
    int a = kiln_seq_new(c, &err), n150 = 150;
    kiln_batch b = {1, &a, &n150, ids, false, x->out};
    REQUIRE(kiln_forward(c, &b, &err) == 0, "%s: %s", name, err.msg);
    int free_g = kiln_ctx_free_blocks(c), free_w = kiln_ctx_window_free_blocks(c);
    CHECK(kiln_seq_reusable(c, a, 100) == 0 && kiln_seq_reusable(c, a, 144) == 144 && kiln_seq_reusable(c, a, 0) == 0 &&
              kiln_seq_reusable(c, a, 999) == 150,
          "%s: reusable %d %d", name, kiln_seq_reusable(c, a, 100), kiln_seq_reusable(c, a, 144));
    CHECK(kiln_seq_truncate(c, a, 100, &err) == -1 && strstr(err.msg, "sliding_window 8") && kiln_seq_len(c, a) == 150 &&
              kiln_ctx_free_blocks(c) == free_g && kiln_ctx_window_free_blocks(c) == free_w,
          "%s: truncate before the window: %s", name, err.msg);
    CHECK(kiln_seq_fork(c, a, 20, &err) == -1 && strstr(err.msg, "prefill it again"), "%s: fork: %s", name, err.msg);
    int f = kiln_seq_fork(c, a, 144, &err);
    CHECK(f >= 0 && kiln_seq_truncate(c, a, 147, &err) == 0, "%s: %s", name, err.msg);
    int fresh = kiln_seq_new(c, &err);
    /* a from 147, the fork from 144, a fresh sequence from 0, in one batch */
    int seqs[3] = {a, f, fresh}, counts[3] = {N - 147, N - 144, 60};
    int32_t toks[(N - 147) + (N - 144) + 60];
    memcpy(toks, ids + 147, (size_t)counts[0] * sizeof *toks);
    memcpy(toks + counts[0], ids + 144, (size_t)counts[1] * sizeof *toks);
    memcpy(toks + counts[0] + counts[1], ids, (size_t)counts[2] * sizeof *toks);
    kiln_batch mixed = {3, seqs, counts, toks, true, x->out};
    if (f >= 0 && fresh >= 0 && kiln_forward(c, &mixed, &err) == 0) {
        double d = fmax(diff_rows(x->out, x->ref, 147, counts[0], V),
                        fmax(diff_rows(x->out + (size_t)counts[0] * V, x->ref, 144, counts[1], V),
                             diff_rows(x->out + (size_t)(counts[0] + counts[1]) * V, x->ref, 0, counts[2], V)));
        CHECK(d <= TOL, "%s: fork / truncate / mixed batch differ from one pass by %g", name, d);
    } else CHECK(0, "%s: mixed batch: %s", name, err.msg);
    CHECK(kiln_seq_truncate(c, f, 0, &err) == 0, "%s: %s", name, err.msg);
    feed(c, x->m, f, ids, 0, N, 64, x->ref, x->out, name);
    for (int i = 0; i < 3; i++) kiln_seq_free(c, seqs[i]);
    check_no_leak(c, name);
}

TEST(window_fork_truncate_mixed_batch) {
    for (int k = 0; k < N_MODELS; k++) {
        fixture f;
        if (fixture_open(&f, MODELS[k], 2 * N, 4, 0)) fork_truncate_mixed(&f, MODELS[k]);
        fixture_close(&f);
    }
}

/* Runs `n` tokens of ids from `from` on seq and returns the worst difference from the reference. */
static double continue_from(kiln_ctx *c, int seq, const int32_t *ids, int from, int n, const float *ref, float *out,
                            int V) {
    kiln_err err;
    kiln_batch b = {1, &seq, &n, ids + from, true, out};
    if (kiln_forward(c, &b, &err)) return INFINITY;
    return diff_rows(out, ref, from, n, V);
}

/* The server's prefix cache: a long entry serves only prompts reaching past its window's start (a shorter
 * match is never forked from KV that is gone), a short entry kept beside it still serves the short ones,
 * and what is forked continues as one pass. */
static void prefix_cache_window(fixture *x, const char *name) {
    kiln_ctx *c = x->c;
    const int32_t *ids = x->ids;
    prefix_cache *pc = prefix_cache_new(4);
    kiln_err err;
    int lens[2] = {40, 150}; /* the short entry first: the long one extends it but cannot replace it */
    for (int i = 0; i < 2; i++) {
        int s = kiln_seq_new(c, &err);
        CHECK(continue_from(c, s, ids, 0, lens[i], x->ref, x->out, x->V) <= TOL, "%s: prefill %d", name, lens[i]);
        prefix_cache_insert(pc, c, s, ids, lens[i]);
    }
    CHECK(prefix_cache_count(pc) == 2, "%s: %d entries", name, prefix_cache_count(pc));
    int n_match = -1, src = prefix_cache_lookup(pc, c, ids, 159, &n_match);
    CHECK(src >= 0 && n_match == 144, "%s: long match %d", name, n_match);
    int f = src >= 0 ? kiln_seq_fork(c, src, n_match, &err) : -1;
    CHECK(f >= 0 && continue_from(c, f, ids, 144, N - 144, x->ref, x->out, x->V) <= TOL, "%s: forked long entry", name);
    kiln_seq_free(c, f);
    /* 100 shared tokens: the long entry no longer holds its window there; the short one serves 32 */
    src = prefix_cache_lookup(pc, c, ids, 100, &n_match);
    CHECK(src >= 0 && n_match == 32, "%s: short match %d", name, n_match);
    f = src >= 0 ? kiln_seq_fork(c, src, n_match, &err) : -1;
    CHECK(f >= 0 && continue_from(c, f, ids, 32, 68, x->ref, x->out, x->V) <= TOL, "%s: forked short entry", name);
    kiln_seq_free(c, f);
    while (prefix_cache_evict(pc, c)) {}
    check_no_leak(c, name);
    prefix_cache_free(pc, c);
}

TEST(window_prefix_cache) {
    for (int k = 0; k < N_MODELS; k++) {
        fixture f;
        if (fixture_open(&f, MODELS[k], N, 4, 0)) prefix_cache_window(&f, MODELS[k]);
        fixture_close(&f);
    }
}

/* kiln_generate_in (kiln chat's reuse): a common prefix still inside the window is reused, one before it
 * is prefilled again (reused_tokens 0); either way the greedy answer is a fresh sequence's. */
TEST(window_generate_in_reuse) {
    kiln_model *m = open_arch("gemma3-tiny");
    if (!m) return;
    const int V = kiln_model_config(m)->vocab_size;
    int32_t ids[N];
    prompt_ids(ids, N, V);
    kiln_ctx *c = ctx_for(m, 2, 0);
    REQUIRE(c, "context");
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    p.max_new_tokens = 6;
    kiln_err err;
    int s = kiln_seq_new(c, &err), fresh = kiln_seq_new(c, &err);
    struct {
        size_t n_prompt, n_reuse;
        int reused;
    } turns[] = {{120, 0, 0}, {150, 120, 120}, {90, 80, 0}};
    for (int t = 0; t < 3; t++) {
        kiln_gen_output o, f;
        int rc = kiln_generate_in(c, s, turns[t].n_reuse, NULL, &p, ids, turns[t].n_prompt, NULL, NULL, &o, &err);
        CHECK(rc == 0, "turn %d: %s", t, err.msg);
        if (rc) continue;
        CHECK(kiln_seq_truncate(c, fresh, 0, &err) == 0 &&
                  kiln_generate_in(c, fresh, 0, NULL, &p, ids, turns[t].n_prompt, NULL, NULL, &f, &err) == 0,
              "fresh: %s", err.msg);
        CHECK(o.stats.reused_tokens == turns[t].reused && o.n_ids == f.n_ids &&
                  !memcmp(o.ids, f.ids, o.n_ids * sizeof *o.ids),
              "turn %d: reused %d (want %d), answers differ", t, o.stats.reused_tokens, turns[t].reused);
        kiln_gen_output_free(&o);
        kiln_gen_output_free(&f);
    }
    kiln_ctx_free(c);
    kiln_model_free(m);
}

/* kiln_forward_hidden and last-token logits in rounds (two sequences of different lengths, step 7) equal
 * one step's. */
TEST(window_rounds_outputs) {
    kiln_model *m = open_arch("gemma2-tiny");
    if (!m) return;
    const kiln_config *g = kiln_model_config(m);
    const int V = g->vocab_size, H = g->hidden_size;
    int32_t ids[N];
    prompt_ids(ids, N, V);
    float *want = malloc((size_t)2 * V * sizeof *want), *got = malloc((size_t)2 * V * sizeof *got);
    for (int hidden = 0; hidden < 2; hidden++) {
        const size_t width = hidden ? (size_t)H : (size_t)V;
        for (int r = 0; r < 2; r++) {
            kiln_ctx *c = ctx_for(m, 2, r ? 7 : 0);
            kiln_err err;
            int seqs[2] = {kiln_seq_new(c, &err), kiln_seq_new(c, &err)}, counts[2] = {45, 9};
            int32_t toks[54];
            memcpy(toks, ids, 45 * sizeof *toks);
            memcpy(toks + 45, ids + 100, 9 * sizeof *toks);
            kiln_batch b = {2, seqs, counts, toks, false, r ? got : want};
            int rc = hidden ? kiln_forward_hidden(c, &b, r ? got : want, &err) : kiln_forward(c, &b, &err);
            CHECK(rc == 0, "%s", err.msg);
            kiln_ctx_free(c);
        }
        double d = 0;
        for (size_t i = 0; i < 2 * width; i++) d = fmax(d, fabs(got[i] - want[i]));
        CHECK(d <= TOL, "%s in rounds differ by %g", hidden ? "hidden states" : "logits", d);
    }
    free(want), free(got);
    kiln_model_free(m);
}

/* kiln info's figures are what a context allocates: a context of max_position_embeddings holds
 * kv_bytes_per_token for each of its positions plus kv_window_bytes_per_seq; a model without window
 * layers has none. */
TEST(window_info_figures) {
    for (int k = 0; k < N_MODELS; k++) {
        char dir[4096];
        const char *d = getenv("ARCH_FIXTURES");
        snprintf(dir, sizeof dir, "%s/%s", d && *d ? d : "build/arch-fixtures", MODELS[k]);
        kiln_model_stats st;
        kiln_err err;
        kiln_model *m = open_arch(MODELS[k]);
        if (!m || kiln_model_stats_load(dir, &st, &err)) {
            CHECK(0, "%s: %s", MODELS[k], m ? err.msg : "no model");
            kiln_model_free(m);
            continue;
        }
        kiln_ctx_opts co;
        kiln_ctx_opts_default(&co);
        co.n_ctx = st.max_position_embeddings;
        kiln_ctx *c = kiln_ctx_new(m, &co, &err);
        CHECK(c && st.sliding_window == 8 && st.n_window_layers == n_window_layers(kiln_model_config(m)) &&
                  (int64_t)kiln_ctx_kv_bytes(c) == st.kv_bytes_per_token * co.n_ctx + st.kv_window_bytes_per_seq &&
                  st.kv_window_bytes_per_seq > 0,
              "%s: context %zu bytes, info %lld/token + %lld/sequence", MODELS[k], c ? kiln_ctx_kv_bytes(c) : 0,
              (long long)st.kv_bytes_per_token, (long long)st.kv_window_bytes_per_seq);
        kiln_ctx_free(c);
        kiln_model_free(m);
    }
    kiln_model_stats st;
    kiln_err err;
    CHECK(kiln_model_stats_load(shared_path("models/stories260K"), &st, &err) == 0 && st.n_window_layers == 0 &&
              st.kv_window_bytes_per_seq == 0 && st.kv_bytes_per_token == 2LL * st.n_layers * st.n_kv_heads * st.head_dim * 2,
          "stories260K: %lld/token, %lld/sequence", (long long)st.kv_bytes_per_token,
          (long long)st.kv_window_bytes_per_seq);
}

/* The server: --kv-cache-mb pays the window layers' fixed pool first and makes the rest global blocks (or
 * says it cannot hold the pool); /metrics shows both pools and their bytes. */
TEST(window_server_accounting) {
    kiln_model *m = open_arch("gemma3-tiny");
    if (!m) return;
    const kiln_config *g = kiln_model_config(m);
    const int nw = n_window_layers(g);
    const int n_ctx = 4096, ring = kiln_kv_window_blocks(g->sliding_window, n_ctx, 0);
    const int64_t per_g = kiln_kv_bytes_per_token(g->n_layers - nw, g->n_kv_heads, g->head_dim, KILN_KV_TYPE_DEFAULT),
                  per_w = kiln_kv_bytes_per_token(nw, g->n_kv_heads, g->head_dim, KILN_KV_TYPE_DEFAULT);
    serve_metrics *met = metrics_new();
    serve_sched_opts so = {.max_batch = 2, .kv_cache_mb = 4, .n_ctx = n_ctx, .kv_type = KILN_KV_TYPE_DEFAULT,
                           .prefill_chunk = 64};
    kiln_err err;
    serve_sched *s = sched_new(m, NULL, met, &so, &err); /* 4 sequence slots: 2 running + 2 parked */
    const int64_t fixed = 4LL * ring * KILN_KV_BLOCK * per_w;
    CHECK(s && sched_total_blocks(s) == (int)((4LL * 1024 * 1024 - fixed) / (KILN_KV_BLOCK * per_g)),
          "%d global blocks in 4 MiB (window pool %lld bytes)", s ? sched_total_blocks(s) : -1, (long long)fixed);
    sched_free(s);
    so.kv_cache_mb = 1;
    s = sched_new(m, NULL, met, &so, &err);
    CHECK(!s && strstr(err.msg, "sliding-window layers"), "1 MiB: %s", s ? "accepted" : err.msg);
    sched_free(s);
    metrics_kv(met, 3, 140, 4096, 1 << 20);
    char *t = metrics_render(met);
    CHECK(t && strstr(t, "kiln_kv_window_blocks_used 3\n") && strstr(t, "kiln_kv_window_blocks_total 140\n") &&
              strstr(t, "kiln_kv_bytes_used 4096\n") && strstr(t, "kiln_kv_bytes_total 1048576\n"),
          "%s", t ? t : "no metrics");
    free(t);
    metrics_free(met);
    kiln_model_free(m);
}

int main(void) {
    RUN(window_rounds_and_blocks);
    RUN(window_fork_truncate_mixed_batch);
    RUN(window_prefix_cache);
    RUN(window_generate_in_reuse);
    RUN(window_rounds_outputs);
    RUN(window_info_figures);
    RUN(window_server_accounting);
    return check_done();
}
