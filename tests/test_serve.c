/* test_serve.c — the server's pieces without HTTP: metrics text, error bodies, the prefix cache over a
 * real paged KV cache, and request output (stop strings, <think> split, sampling) with real tokenizers.
 * The HTTP end-to-end tests live in tests/cli/serve.sh. */
#include <jansson.h>
#include <math.h>

#include "check.h"
#include "serve/serve.h"

static const char *shared(void) {
    const char *s = getenv("SHARED");
    return s ? s : "../shared";
}

static char *model_path(const char *name) {
    static char buf[4][512];
    static int k;
    char *p = buf[k++ % 4];
    snprintf(p, 512, "%s/models/%s", shared(), name);
    return p;
}

TEST(metrics_histograms_are_cumulative) {
    serve_metrics *m = metrics_new();
    metrics_ttft(m, 0.003);
    metrics_ttft(m, 0.2);
    metrics_ttft(m, 100);
    metrics_request(m, "/v1/completions", 200);
    metrics_request(m, "/v1/completions", 200);
    metrics_request(m, "/v1/completions", 429);
    metrics_gauges(m, 3, 2, 10, 64, 1);
    char *t = metrics_render(m);
    CHECK(strstr(t, "kiln_time_to_first_token_seconds_bucket{le=\"0.0025\"} 0\n"), "%s", t);
    CHECK(strstr(t, "kiln_time_to_first_token_seconds_bucket{le=\"0.005\"} 1\n"), "%s", t);
    CHECK(strstr(t, "kiln_time_to_first_token_seconds_bucket{le=\"0.25\"} 2\n"), "%s", t);
    CHECK(strstr(t, "kiln_time_to_first_token_seconds_bucket{le=\"+Inf\"} 3\n"), "%s", t);
    CHECK(strstr(t, "kiln_time_to_first_token_seconds_count 3\n"), "%s", t);
    CHECK(strstr(t, "kiln_requests_total{endpoint=\"/v1/completions\",status=\"200\"} 2\n"), "%s", t);
    CHECK(strstr(t, "kiln_requests_total{endpoint=\"/v1/completions\",status=\"429\"} 1\n"), "%s", t);
    CHECK(strstr(t, "kiln_queue_depth 3\n") && strstr(t, "kiln_kv_blocks_used 10\n"), "%s", t);
    free(t);
    metrics_free(m);
}

TEST(error_bodies_follow_openai) {
    char *s = openai_error_json(400, "'n' must be 1", "n");
    json_t *o = json_loads(s, 0, NULL);
    json_t *e = json_object_get(o, "error");
    CHECK(e && !strcmp(json_string_value(json_object_get(e, "type")), "invalid_request_error"), "%s", s);
    CHECK(!strcmp(json_string_value(json_object_get(e, "param")), "n"), "%s", s);
    CHECK(!strcmp(json_string_value(json_object_get(e, "message")), "'n' must be 1"), "%s", s);
    json_decref(o);
    free(s);
    s = openai_error_json(429, "slow down", NULL);
    CHECK(strstr(s, "\"rate_limit_exceeded\"") && strstr(s, "\"param\":null"), "%s", s);
    free(s);
}

TEST(block_hashes_chain) {
    int32_t a[KILN_KV_BLOCK], b[KILN_KV_BLOCK];
    for (int i = 0; i < KILN_KV_BLOCK; i++) a[i] = i, b[i] = i;
    b[KILN_KV_BLOCK - 1] = 999;
    uint64_t ha = prefix_block_hash(0, a), hb = prefix_block_hash(0, b);
    CHECK(ha != hb, "one token differs");
    CHECK(prefix_block_hash(ha, a) != prefix_block_hash(hb, a), "same block after different prefixes");
    CHECK(prefix_block_hash(0, a) == ha, "deterministic");
}

/* The prefix cache over the real engine: a forked sequence must give the same next-token logits as one
 * computed from scratch, and the blocks are shared, not copied. */
TEST(prefix_cache_fork_matches_fresh_prefill) {
    kiln_err err = {{0}};
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.quiet = true;
    kiln_model *m = kiln_model_open(model_path("stories260K"), &mo, &err);
    REQUIRE(m, "%s", err.msg);
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.max_seqs = 4;
    co.n_ctx = 256;
    kiln_ctx *c = kiln_ctx_new(m, &co, &err);
    REQUIRE(c, "%s", err.msg);
    int V = kiln_model_config(m)->vocab_size;
    int32_t toks[40];
    for (int i = 0; i < 40; i++) toks[i] = 1 + (i * 37) % 400;
    float *la = malloc((size_t)V * sizeof *la), *lb = malloc((size_t)V * sizeof *lb);
    int free0 = kiln_ctx_free_blocks(c);

    /* Sequence A: 36 tokens, handed to the cache (truncated to 2 full blocks = 32 tokens). */
    int a = kiln_seq_new(c, &err);
    int n36 = 36;
    kiln_batch b = {.n_seqs = 1, .seq = &a, .n_tokens = &n36, .tokens = toks, .logits = la};
    REQUIRE(kiln_forward(c, &b, &err) == 0, "%s", err.msg);
    prefix_cache *pc = prefix_cache_new(4);
    prefix_cache_insert(pc, c, a, toks, 36);
    CHECK(prefix_cache_count(pc) == 1, "count %d", prefix_cache_count(pc));
    CHECK(kiln_ctx_free_blocks(c) == free0 - 2, "cached blocks %d", free0 - kiln_ctx_free_blocks(c));

    /* A prompt sharing the first 33 tokens: 32 are served from the cache. */
    int n_match = 0;
    int src = prefix_cache_lookup(pc, toks, 39, &n_match);
    CHECK(src == a && n_match == 32, "src %d match %d", src, n_match);
    int f = kiln_seq_fork(c, src, n_match, &err);
    REQUIRE(f >= 0, "%s", err.msg);
    CHECK(kiln_ctx_free_blocks(c) == free0 - 2, "fork copied blocks");
    int n7 = 7;
    b = (kiln_batch){.n_seqs = 1, .seq = &f, .n_tokens = &n7, .tokens = toks + 32, .logits = la};
    REQUIRE(kiln_forward(c, &b, &err) == 0, "%s", err.msg);

    int fresh = kiln_seq_new(c, &err);
    int n39 = 39;
    b = (kiln_batch){.n_seqs = 1, .seq = &fresh, .n_tokens = &n39, .tokens = toks, .logits = lb};
    REQUIRE(kiln_forward(c, &b, &err) == 0, "%s", err.msg);
    float maxd = 0;
    for (int i = 0; i < V; i++) maxd = fmaxf(maxd, fabsf(la[i] - lb[i]));
    CHECK(maxd < 1e-4f, "forked vs fresh logits differ by %g", maxd);

    /* A different first block matches nothing; eviction gives the blocks back. */
    int32_t other[20] = {5};
    CHECK(prefix_cache_lookup(pc, other, 20, &n_match) == -1 && n_match == 0, "false hit");
    kiln_seq_free(c, f);
    kiln_seq_free(c, fresh);
    CHECK(prefix_cache_evict(pc, c) && !prefix_cache_evict(pc, c), "evict");
    CHECK(kiln_ctx_free_blocks(c) == free0, "blocks leaked: %d", free0 - kiln_ctx_free_blocks(c));
    prefix_cache_free(pc, c);
    free(la);
    free(lb);
    kiln_ctx_free(c);
    kiln_model_free(m);
}

/* Feeds the ids of `text` one at a time into a request's output. */
static serve_finish feed(req_output *o, serve_req *r, const kiln_tokenizer *t, const char *text) {
    int32_t *ids;
    size_t n;
    kiln_err err;
    if (kiln_encode(t, text, strlen(text), false, &ids, &n, &err)) return FIN_ERROR;
    serve_finish f = FIN_NONE;
    for (size_t i = 0; i < n && f == FIN_NONE; i++) f = output_push(o, r, ids[i], NULL);
    free(ids);
    return f;
}

TEST(output_stop_strings_and_thinking) {
    kiln_err err = {{0}};
    kiln_tokenizer *t = kiln_tokenizer_open(model_path("tiny-qwen3"), &err);
    REQUIRE(t, "%s", err.msg);
    int32_t eos = kiln_token_id(t, "<|im_end|>");

    serve_req *r = serve_req_new();
    r->max_tokens = 1000;
    r->split_thinking = true;
    req_output *o = output_new(r, t, &eos, 1);
    CHECK(feed(o, r, t, "<think>\nLet me see.\n</think>\n\nThe answer is 4.") == FIN_NONE, "finished early");
    CHECK(output_push(o, r, eos, NULL) == FIN_STOP, "eos");
    output_flush(o, r);
    CHECK(r->reasoning.p && !strcmp(r->reasoning.p, "\nLet me see.\n"), "reasoning '%s'", r->reasoning.p);
    CHECK(r->content.p && !strcmp(r->content.p, "The answer is 4."), "content '%s'", r->content.p);
    output_free(o);
    serve_req_unref(r);

    r = serve_req_new();
    r->max_tokens = 1000;
    r->n_stop = 1;
    r->stop = malloc(sizeof *r->stop);
    r->stop[0] = strdup("END");
    o = output_new(r, t, &eos, 1);
    CHECK(feed(o, r, t, "one two ENDthree") == FIN_STOP, "stop string not seen");
    output_flush(o, r);
    CHECK(r->content.p && !strcmp(r->content.p, "one two "), "content '%s'", r->content.p);
    output_free(o);
    serve_req_unref(r);

    r = serve_req_new();
    r->max_tokens = 3;
    o = output_new(r, t, &eos, 1);
    CHECK(feed(o, r, t, "a b c d e f") == FIN_LENGTH && r->n_gen == 3, "max_tokens: n_gen %d", r->n_gen);
    output_free(o);
    serve_req_unref(r);
    kiln_tokenizer_free(t);
}

TEST(sampling_is_seeded_and_respects_top_k) {
    enum { V = 50 };
    float logits[V];
    for (int i = 0; i < V; i++) logits[i] = (float)(i % 7);
    kiln_err err = {{0}};
    kiln_tokenizer *t = kiln_tokenizer_open(model_path("stories260K"), &err);
    REQUIRE(t, "%s", err.msg);
    int32_t draws[2][32];
    for (int pass = 0; pass < 2; pass++) {
        serve_req *r = serve_req_new();
        r->max_tokens = 100;
        r->temperature = 1.0f;
        r->top_p = 1.0f;
        r->top_k = 3;
        r->has_seed = true;
        r->seed = 42;
        req_output *o = output_new(r, t, NULL, 0);
        for (int i = 0; i < 32; i++) {
            draws[pass][i] = output_sample(o, logits, V, NULL);
            /* top-3 of logits i%7: the three ids with value 6 (6, 13, 20, ... : only the first three count). */
            CHECK(draws[pass][i] == 6 || draws[pass][i] == 13 || draws[pass][i] == 20, "id %d outside top-3",
                  draws[pass][i]);
        }
        output_free(o);
        serve_req_unref(r);
    }
    CHECK(!memcmp(draws[0], draws[1], sizeof draws[0]), "same seed, different draws");
    serve_req *r = serve_req_new();
    r->temperature = 0;
    req_output *o = output_new(r, t, NULL, 0);
    serve_logprob lp = {.n_top = 2};
    logits[31] = 100;
    CHECK(output_sample(o, logits, V, &lp) == 31 && lp.top_id[0] == 31 && fabsf(lp.logprob) < 1e-3f, "greedy");
    output_free(o);
    serve_req_unref(r);
    kiln_tokenizer_free(t);
}

TEST(tool_calls_become_openai_tool_calls) {
    serve_model_info mi = {.name = "m", .n_ctx = 100};
    serve_req *r = serve_req_new();
    r->kind = REQ_CHAT;
    r->has_tools = true;
    r->finish = FIN_STOP;
    snprintf(r->id, sizeof r->id, "chatcmpl-1");
    sbuf_puts(&r->content, "Let me check.\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}\n</tool_call>");
    char *s = openai_response_json(&mi, r);
    json_t *o = json_loads(s, 0, NULL);
    json_t *c = json_array_get(json_object_get(o, "choices"), 0);
    json_t *call = json_array_get(json_object_get(json_object_get(c, "message"), "tool_calls"), 0);
    json_t *fn = json_object_get(call, "function");
    CHECK(fn && !strcmp(json_string_value(json_object_get(fn, "name")), "get_time"), "%s", s);
    CHECK(fn && !strcmp(json_string_value(json_object_get(fn, "arguments")), "{\"tz\":\"UTC\"}"), "%s", s);
    CHECK(!strcmp(json_string_value(json_object_get(c, "finish_reason")), "tool_calls"), "%s", s);
    CHECK(!strcmp(json_string_value(json_object_get(json_object_get(c, "message"), "content")), "Let me check."), "%s", s);
    json_decref(o);
    free(s);
    serve_req_unref(r);
}

int main(void) {
    RUN(tool_calls_become_openai_tool_calls);
    RUN(metrics_histograms_are_cumulative);
    RUN(error_bodies_follow_openai);
    RUN(block_hashes_chain);
    RUN(prefix_cache_fork_matches_fresh_prefill);
    RUN(output_stop_strings_and_thinking);
    RUN(sampling_is_seeded_and_respects_top_k);
    return check_done();
}
