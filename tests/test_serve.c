/* test_serve.c — the server's pieces without HTTP: metrics text, error bodies, the prefix cache over a
 * real paged KV cache, and request output (stop strings, <think> split, sampling, tool calls) with real
 * tokenizers.
 * The HTTP end-to-end tests live in tests/cli/serve.sh. */
#include <jansson.h>
#include <math.h>
#include <unistd.h>

#include "check.h"
#include "common/fileio.h"
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

/* Bad input is a 400; the server running out of memory (here, or inside a library call such as the
 * template render, whose message ends in "out of memory") is a 500 for that request. */
TEST(out_of_memory_is_500_not_400) {
    char msg[256], param[64];
    perr e = {msg, sizeof msg, param, sizeof param};
    CHECK(perr_set(&e, "messages", "chat template failed: %s", "template: out of memory") == 500, "%s", msg);
    CHECK(perr_set(&e, "messages", "chat template failed: %s", "template line 1 column 4: output budget of 4 MiB exceeded") == 400,
          "a broken limit is the request's fault: %s", msg);
    CHECK(perr_set(&e, "temperature", "'temperature' must be a number") == 400, "%s", msg);
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
    int src = prefix_cache_lookup(pc, c, toks, 39, &n_match);
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
    CHECK(prefix_cache_lookup(pc, c, other, 20, &n_match) == -1 && n_match == 0, "false hit");
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

/* A request as the HTTP side builds it: openai_parse over a JSON body, against a model's tokenizer
 * (tiny-qwen3: a chat template with thinking and tools) and its generation_config.json defaults. */
typedef struct fixture {
    kiln_tokenizer *tok;
    serve_model_info mi;
} fixture;

static bool fixture_open(fixture *f, const char *model) {
    kiln_err err = {{0}};
    memset(f, 0, sizeof *f);
    f->tok = kiln_tokenizer_open(model_path(model), &err);
    if (!f->tok) return fprintf(stderr, "%s\n", err.msg), false;
    static const char *names[1];
    names[0] = model;
    f->mi = (serve_model_info){.name = model, .names = names, .n_names = 1, .tok = f->tok, .n_ctx = 4096, .thinking = true,
                              .vocab = (int)kiln_tokenizer_vocab_size(f->tok)};
    kiln_gen_params_default(&f->mi.defaults);
    f->mi.defaults.top_k = 0;
    f->mi.defaults.max_new_tokens = 0;
    if (kiln_gen_params_load(&f->mi.defaults, model_path(model), &err)) return fprintf(stderr, "%s\n", err.msg), false;
    return true;
}

static serve_req *request(fixture *f, serve_kind kind, const char *body) {
    serve_req *r = serve_req_new();
    char msg[256], param[64];
    snprintf(r->id, sizeof r->id, "chatcmpl-test");
    if (openai_parse(&f->mi, kind, body, strlen(body), r, msg, sizeof msg, param, sizeof param)) {
        fprintf(stderr, "parse: %s\n", msg);
        serve_req_unref(r);
        return NULL;
    }
    return r;
}

/* Forces the ids of `text` (then `tail` ids, e.g. EOS) through a request's output, one at a time, as the
 * scheduler would; after each token, the SSE chunk a streaming client would get is appended to sse. */
static serve_finish feed(fixture *f, req_output *o, serve_req *r, const char *text, const int32_t *tail, int n_tail,
                         strbuf *sse) {
    int32_t *ids;
    size_t n;
    kiln_err err;
    if (kiln_encode(f->tok, text, strlen(text), false, &ids, &n, &err)) return FIN_ERROR;
    serve_cursor cur = {0};
    serve_finish fin = FIN_NONE;
    for (size_t i = 0; i < n + (size_t)n_tail && fin == FIN_NONE; i++) {
        kiln_gen_step st;
        if (output_force(o, i < n ? ids[i] : tail[i - n], &st)) break;
        fin = output_push(o, r, &st, NULL);
        if (fin != FIN_NONE) r->done = true, r->finish = fin;
        char *c = sse ? openai_stream_chunk(&f->mi, r, &cur) : NULL;
        if (c) strbuf_puts(sse, c);
        free(c);
    }
    free(ids);
    return fin;
}

static req_output *output(fixture *f, serve_req *r) {
    kiln_err err = {{0}};
    req_output *o = output_new(r, f->tok, (int)kiln_tokenizer_vocab_size(f->tok), &err);
    if (!o) fprintf(stderr, "%s\n", err.msg);
    return o;
}

TEST(output_stop_strings_and_thinking) {
    fixture f;
    REQUIRE(fixture_open(&f, "tiny-qwen3"), "fixture");
    int32_t eos = kiln_token_id(f.tok, "<|im_end|>");

    serve_req *r = request(&f, REQ_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"2+2?\"}]}");
    REQUIRE(r && r->split_thinking && r->gen.do_sample && r->gen.top_k == 20, "generation_config defaults");
    req_output *o = output(&f, r);
    CHECK(feed(&f, o, r, "<think>\nLet me see.\n</think>\n\nThe answer is 4.", &eos, 1, NULL) == FIN_STOP, "eos");
    CHECK(r->reasoning.p && !strcmp(r->reasoning.p, "Let me see."), "reasoning '%s'", r->reasoning.p);
    CHECK(r->content.p && !strcmp(r->content.p, "The answer is 4."), "content '%s'", r->content.p);
    output_free(o);
    serve_req_unref(r);

    /* Without the split (completions), the tags are ordinary text. */
    r = request(&f, REQ_COMPLETION, "{\"prompt\":\"x\",\"stop\":\"END\",\"temperature\":0}");
    REQUIRE(r && !r->gen.do_sample && r->gen.n_stop == 1, "parse");
    o = output(&f, r);
    CHECK(feed(&f, o, r, "<think>one</think> two ENDthree", NULL, 0, NULL) == FIN_STOP, "stop string not seen");
    CHECK(r->content.p && !strcmp(r->content.p, "<think>one</think> two "), "content '%s'", r->content.p);
    output_free(o);
    serve_req_unref(r);

    r = request(&f, REQ_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":3,\"ignore_eos\":true}");
    REQUIRE(r && r->gen.n_eos == 0 && r->gen.max_new_tokens == 3, "parse");
    o = output(&f, r);
    CHECK(feed(&f, o, r, "a b c d e f", NULL, 0, NULL) == FIN_LENGTH && r->n_gen == 3, "max_tokens: n_gen %d", r->n_gen);
    output_free(o);
    serve_req_unref(r);
    kiln_tokenizer_free(f.tok);
}

TEST(sampling_is_seeded_and_respects_top_k) {
    enum { V = 50 };
    float logits[V], work[V];
    for (int i = 0; i < V; i++) logits[i] = (float)(i % 7);
    fixture f;
    REQUIRE(fixture_open(&f, "stories260K"), "fixture");
    int32_t draws[2][32];
    for (int pass = 0; pass < 2; pass++) {
        serve_req *r = request(&f, REQ_COMPLETION, "{\"prompt\":\"a\",\"temperature\":1,\"top_p\":1,\"top_k\":3,\"seed\":42}");
        REQUIRE(r, "parse");
        kiln_err err = {{0}};
        req_output *o = output_new(r, f.tok, V, &err);
        REQUIRE(o, "%s", err.msg);
        for (int i = 0; i < 32; i++) {
            kiln_gen_step st;
            memcpy(work, logits, sizeof work);
            CHECK(output_sample(o, r, work, &st, NULL) == 0, "sample");
            draws[pass][i] = st.token;
            /* top-3 of i % 7 keeps every id tied at the threshold (value 6), as transformers does. */
            CHECK(st.token % 7 == 6, "id %d outside the top-k", st.token);
        }
        output_free(o);
        serve_req_unref(r);
    }
    CHECK(!memcmp(draws[0], draws[1], sizeof draws[0]), "same seed, different draws");
    bool varied = false;
    for (int i = 1; i < 32; i++) varied |= draws[0][i] != draws[0][0];
    CHECK(varied, "sampling always drew %d", draws[0][0]);

    serve_req *r = request(&f, REQ_COMPLETION, "{\"prompt\":\"a\",\"temperature\":0,\"logprobs\":2}");
    REQUIRE(r, "parse");
    kiln_err err = {{0}};
    req_output *o = output_new(r, f.tok, V, &err);
    REQUIRE(o, "%s", err.msg);
    serve_logprob lp = {0};
    kiln_gen_step st;
    logits[31] = 100;
    memcpy(work, logits, sizeof work);
    CHECK(output_sample(o, r, work, &st, &lp) == 0 && st.token == 31 && lp.n_top == 2 && lp.top_id[0] == 31 &&
          fabsf(lp.logprob) < 1e-3f, "greedy: token %d top %d lp %g", st.token, lp.top_id[0], lp.logprob);
    output_free(o);
    serve_req_unref(r);
    kiln_tokenizer_free(f.tok);
}

/* Collects a stream's deltas: content text, tool calls (name + arguments), the last finish_reason. */
typedef struct streamed {
    strbuf content;
    char names[4][32], args[4][64];
    int n_calls;
    char finish[16];
    bool leaked; /* a tool-call tag reached the content */
} streamed;

static void parse_sse(const char *sse, streamed *out) {
    memset(out, 0, sizeof *out);
    for (const char *p = strstr(sse, "data: "); p; p = strstr(p + 1, "data: ")) {
        const char *end = strstr(p, "\n\n");
        json_t *o = json_loadb(p + 6, (size_t)(end - p - 6), 0, NULL);
        json_t *c = json_array_get(json_object_get(o, "choices"), 0), *d = json_object_get(c, "delta");
        const char *text = json_string_value(json_object_get(d, "content"));
        if (text) strbuf_puts(&out->content, text);
        if (text && strstr(text, "tool_call")) out->leaked = true;
        json_t *calls = json_object_get(d, "tool_calls");
        for (size_t i = 0; i < json_array_size(calls) && out->n_calls < 4; i++) {
            json_t *fn = json_object_get(json_array_get(calls, i), "function");
            snprintf(out->names[out->n_calls], 32, "%s", json_string_value(json_object_get(fn, "name")));
            snprintf(out->args[out->n_calls++], 64, "%s", json_string_value(json_object_get(fn, "arguments")));
        }
        const char *fin = json_string_value(json_object_get(c, "finish_reason"));
        if (fin) snprintf(out->finish, sizeof out->finish, "%s", fin);
        json_decref(o);
    }
}

/* Tool calls: streamed as delta.tool_calls (never as raw text) and finish "tool_calls"; the whole
 * response carries the same calls. The model's output is forced: tiny models cannot produce one. */
TEST(tool_calls_stream_as_tool_calls) {
    fixture f;
    REQUIRE(fixture_open(&f, "tiny-qwen3"), "fixture");
    int32_t eos = kiln_token_id(f.tok, "<|im_end|>");
    const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"time?\"}],\"stream\":true,"
                       "\"chat_template_kwargs\":{\"enable_thinking\":false},\"tools\":[{\"type\":\"function\","
                       "\"function\":{\"name\":\"get_time\",\"parameters\":{\"type\":\"object\"}}}]}";
    static const struct {
        const char *out, *content, *name, *args, *finish;
    } cases[] = {
        {"Let me check.\n<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"tz\": \"UTC\"}}\n</tool_call>",
         "Let me check.", "get_time", "{\"tz\":\"UTC\"}", "tool_calls"},
        /* Llama-3.1 style: the whole answer is the call */
        {"{\"name\": \"get_time\", \"parameters\": {\"tz\": \"CET\"}}", "", "get_time", "{\"tz\":\"CET\"}", "tool_calls"},
        /* JSON that is not a call of an offered tool, and a malformed call, stay text */
        {"{\"name\": \"launch\", \"parameters\": {}}", "{\"name\": \"launch\", \"parameters\": {}}", NULL, NULL, "stop"},
        {"A <tool_call>not json</tool_call> B", "A <tool_call>not json</tool_call> B", NULL, NULL, "stop"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        serve_req *r = request(&f, REQ_CHAT, body);
        REQUIRE(r && r->has_tools && r->n_tools == 1, "parse");
        req_output *o = output(&f, r);
        strbuf sse = {0};
        CHECK(feed(&f, o, r, cases[k].out, &eos, 1, &sse) == FIN_STOP, "case %zu: not stopped", k);
        streamed got;
        parse_sse(sse.p ? sse.p : "", &got);
        const char *content = got.content.p ? got.content.p : "";
        if (cases[k].name) {
            CHECK(!got.leaked && !strcmp(content, cases[k].content), "case %zu: streamed content '%s'", k, content);
            CHECK(got.n_calls == 1 && !strcmp(got.names[0], cases[k].name) && !strcmp(got.args[0], cases[k].args),
                  "case %zu: %d calls, '%s' '%s'", k, got.n_calls, got.names[0], got.args[0]);
        } else {
            CHECK(got.n_calls == 0 && !strcmp(content, cases[k].content), "case %zu: '%s', %d calls", k, content,
                  got.n_calls);
        }
        CHECK(!strcmp(got.finish, cases[k].finish), "case %zu: finish '%s'", k, got.finish);
        /* The non-streaming response agrees. */
        char *s = openai_response_json(&f.mi, r);
        json_t *j = json_loads(s, 0, NULL);
        json_t *c = json_array_get(json_object_get(j, "choices"), 0), *m = json_object_get(c, "message");
        json_t *calls = json_object_get(m, "tool_calls");
        CHECK(json_array_size(calls) == (size_t)got.n_calls &&
                  !strcmp(json_string_value(json_object_get(c, "finish_reason")), cases[k].finish),
              "case %zu: %s", k, s);
        CHECK(*cases[k].content ? !strcmp(json_string_value(json_object_get(m, "content")), cases[k].content)
                                : json_is_null(json_object_get(m, "content")),
              "case %zu: %s", k, s);
        json_decref(j);
        free(s);
        strbuf_free(&sse);
        strbuf_free(&got.content);
        output_free(o);
        serve_req_unref(r);
    }
    kiln_tokenizer_free(f.tok);
}

/* A model opened quietly on one thread (the scheduler tests drive sched_new directly). */
static kiln_model *quiet_model(const char *name, kiln_err *err) {
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.quiet = true;
    mo.threads = 1;
    return kiln_model_open(model_path(name), &mo, err);
}

/* --max-queue 0 means no queue limit: 100 requests submitted at once to one batch slot all wait and
 * all finish (none turned away), each with its max_tokens. */
TEST(unlimited_queue_takes_everything) {
    fixture f;
    REQUIRE(fixture_open(&f, "stories260K"), "fixture");
    kiln_err err = {{0}};
    kiln_model *m = quiet_model("stories260K", &err);
    REQUIRE(m, "%s", err.msg);
    serve_metrics *met = metrics_new();
    serve_sched_opts so = {.max_batch = 1, .max_queue = 0, .n_ctx = 64, .prefill_chunk = 64};
    serve_sched *s = sched_new(m, f.tok, met, &so, &err);
    REQUIRE(s, "%s", err.msg);
    enum { N = 100 };
    serve_req *rs[N];
    int refused = 0;
    for (int i = 0; i < N; i++) {
        rs[i] = request(&f, REQ_COMPLETION, "{\"prompt\":[1,403,407],\"max_tokens\":3,\"ignore_eos\":true}");
        REQUIRE(rs[i], "parse");
        rs[i]->timeout_s = 600;
        refused += sched_submit(s, rs[i]) != 0;
    }
    CHECK(refused == 0, "%d of %d refused", refused, N);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        pthread_mutex_lock(&rs[i]->mu);
        while (!rs[i]->done) pthread_cond_wait(&rs[i]->cv, &rs[i]->mu);
        ok += rs[i]->finish == FIN_LENGTH && rs[i]->n_gen == 3;
        pthread_mutex_unlock(&rs[i]->mu);
    }
    CHECK(ok == N, "%d of %d finished with 3 tokens", ok, N);
    sched_free(s);
    for (int i = 0; i < N; i++) serve_req_unref(rs[i]);
    metrics_free(met);
    kiln_model_free(m);
    kiln_tokenizer_free(f.tok);
}

/* --kv-cache-mb counts the KV format's bytes: the same megabytes hold twice the blocks in f16 as in f32. */
TEST(kv_cache_mb_counts_the_kv_format) {
    kiln_err err = {{0}};
    kiln_model *m = quiet_model("stories260K", &err);
    REQUIRE(m, "%s", err.msg);
    kiln_tokenizer *tok = kiln_tokenizer_open(model_path("stories260K"), &err);
    REQUIRE(tok, "%s", err.msg);
    serve_metrics *met = metrics_new();
    int blocks[2];
    const kiln_dtype types[2] = {KILN_DT_F32, KILN_DT_F16};
    for (int i = 0; i < 2; i++) {
        serve_sched_opts so = {.max_batch = 1, .kv_cache_mb = 4, .n_ctx = 64, .prefill_chunk = 64, .kv_type = types[i]};
        serve_sched *s = sched_new(m, tok, met, &so, &err);
        REQUIRE(s, "%s", err.msg);
        blocks[i] = sched_total_blocks(s);
        sched_free(s);
    }
    const kiln_config *g = kiln_model_config(m);
    int64_t per_block = KILN_KV_BLOCK * kiln_kv_bytes_per_token(g->n_layers, g->n_kv_heads, g->head_dim, KILN_DT_F32);
    CHECK(blocks[0] == (int)((4 << 20) / per_block) && blocks[1] == (int)((4 << 20) / (per_block / 2)), "blocks in 4 MB: f32 %d, f16 %d",
          blocks[0], blocks[1]);
    metrics_free(met);
    kiln_tokenizer_free(tok);
    kiln_model_free(m);
}

/* ---- detokenization against context (issue 17 item 4) ---- */

static kiln_tokenizer *tokenizer(const char *name) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s/%s", shared(), strcmp(name, "stories260K") ? "tokenizers" : "models", name);
    kiln_err err = {{0}};
    kiln_tokenizer *t = kiln_tokenizer_open(p, &err);
    if (!t) fprintf(stderr, "%s: %s\n", p, err.msg);
    return t;
}

/* Prompt text + the continuation streamed by a detokenizer primed with the prompt = the decode of all,
 * at every split where the prompt is whole text (a prompt ending inside a character has no text to add
 * the rest of it to). */
static void context_roundtrip(const char *name, const char *text) {
    kiln_tokenizer *t = tokenizer(name);
    REQUIRE(t, "%s", name);
    int32_t *ids;
    size_t n;
    kiln_err err = {{0}};
    REQUIRE(!kiln_encode(t, text, strlen(text), true, &ids, &n, &err), "%s", err.msg);
    size_t full_n;
    char *full = kiln_decode(t, ids, n, true, &full_n);
    for (size_t k = 1; k < n; k++) {
        size_t pn, len;
        char *prompt = kiln_decode(t, ids, k, true, &pn);
        if (strstr(prompt, "\xef\xbf\xbd")) {
            free(prompt);
            continue;
        }
        strbuf got = {0};
        strbuf_put(&got, prompt, pn);
        kiln_detok *d = kiln_detok_new(t, true);
        kiln_detok_prime(d, ids, k);
        for (size_t i = k; i < n; i++) {
            const char *s = kiln_detok_push(d, ids[i], &len);
            strbuf_put(&got, s, len);
        }
        const char *s = kiln_detok_flush(d, &len);
        strbuf_put(&got, s, len);
        CHECK(got.len == full_n && !memcmp(got.p, full, full_n), "%s split at %zu: \"%s\" != \"%s\"", name, k, got.p, full);
        kiln_detok_free(d);
        strbuf_free(&got);
        free(prompt);
    }
    free(full);
    free(ids);
    kiln_tokenizer_free(t);
}

TEST(detok_continues_in_context) {
    context_roundtrip("stories260K", "Once upon a time, there was a cat.");
    context_roundtrip("llama2-sp", "Once upon a time 世界 🙂 done");
    context_roundtrip("llama2", "Hello world, again");
    context_roundtrip("llama3", "Once upon a time 世界 🙂");
    context_roundtrip("qwen3", "Once upon a time 思考 🇨🇳");
}

/* Forces `cont`'s ids after the request's prompt, with a logprob entry per token. */
static void force_text(fixture *f, req_output *o, serve_req *r, const char *cont) {
    int32_t *all;
    size_t n;
    kiln_err err = {{0}};
    strbuf text = {0};
    strbuf_put(&text, r->prompt_text.p, r->prompt_text.len);
    strbuf_puts(&text, cont);
    if (kiln_encode(f->tok, text.p, text.len, true, &all, &n, &err)) return;
    for (size_t i = (size_t)r->n_prompt; i < n; i++) {
        kiln_gen_step st;
        serve_logprob lp = {.id = all[i], .logprob = -1};
        if (output_force(o, all[i], &st)) break;
        output_push(o, r, &st, &lp);
    }
    r->done = true;
    r->finish = FIN_LENGTH;
    free(all);
    strbuf_free(&text);
}

static int parse_status(fixture *f, serve_kind kind, const char *body, char *param, size_t param_size) {
    serve_req *r = serve_req_new();
    char msg[512];
    int st = openai_parse(&f->mi, kind, body, strlen(body), r, msg, sizeof msg, param, param_size);
    if (!st && kind == REQ_COMPLETION && r->max_tokens != 16 && !strstr(body, "max_tokens")) st = -16;
    serve_req_unref(r);
    return st;
}

/* One completion of "Once upon" forced to continue with " a time,": the response's JSON. */
static json_t *once_upon(fixture *f, const char *extra) {
    char body[256];
    snprintf(body, sizeof body, "{\"prompt\":\"Once upon\",\"max_tokens\":8%s}", extra);
    serve_req *r = request(f, REQ_COMPLETION, body);
    req_output *o = r ? output(f, r) : NULL;
    json_t *j = NULL;
    if (o) {
        force_text(f, o, r, " a time,");
        char *js = openai_response_json(&f->mi, r);
        j = json_loads(js, 0, NULL);
        free(js);
    }
    output_free(o);
    serve_req_unref(r);
    return json_array_get(json_object_get(j, "choices"), 0) ? j : (json_decref(j), NULL);
}

TEST(completion_text_echo_and_offsets_in_context) {
    fixture f;
    REQUIRE(fixture_open(&f, "stories260K"), "fixture");
    json_t *j = once_upon(&f, ",\"logprobs\":0");
    REQUIRE(j, "completion");
    json_t *c = json_array_get(json_object_get(j, "choices"), 0), *lp = json_object_get(c, "logprobs");
    CHECK(!strcmp(json_string_value(json_object_get(c, "text")), " a time,"), "continuation keeps its space");
    json_t *toks = json_object_get(lp, "tokens"), *offs = json_object_get(lp, "text_offset");
    CHECK(json_array_size(toks) == 3 && !strcmp(json_string_value(json_array_get(toks, 0)), " a") &&
              !strcmp(json_string_value(json_array_get(toks, 1)), " time"),
          "tokens in context");
    CHECK(json_integer_value(json_array_get(offs, 0)) == 0 && json_integer_value(json_array_get(offs, 1)) == 2 &&
              json_integer_value(json_array_get(offs, 2)) == 7,
          "text_offset");
    json_decref(j);
    j = once_upon(&f, ",\"echo\":true");
    REQUIRE(j, "echo");
    c = json_array_get(json_object_get(j, "choices"), 0);
    CHECK(!strcmp(json_string_value(json_object_get(c, "text")), "Once upon a time,"), "echo: '%s'",
          json_string_value(json_object_get(c, "text")));
    json_decref(j);
    char param[64] = "";
    CHECK(parse_status(&f, REQ_COMPLETION, "{\"prompt\":\"a\",\"echo\":true,\"logprobs\":1}", param, sizeof param) == 400 &&
              !strcmp(param, "echo"),
          "echo with logprobs would need prompt logprobs: refused");
    kiln_tokenizer_free(f.tok);
}

/* ---- the parameter contract (issue 17 items 2 and 6) ---- */

TEST(parameters_are_used_or_refused_by_name) {
    fixture f;
    REQUIRE(fixture_open(&f, "stories260K"), "fixture");
    static const struct {
        const char *extra, *param;
        int status;
    } cases[] = {
        {"\"response_format\":{\"type\":\"json_object\"}", "", 0},
        {"\"response_format\":{\"type\":\"text\"}", "", 0},
        {"\"response_format\":{\"type\":\"xml\"}", "response_format", 400},
        {"\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"x\"}}", "response_format", 400},
        {"\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{\"type\":\"bogus\"}}}", "response_format", 400},
        {"\"logit_bias\":{\"5\":10}", "", 0},
        {"\"logit_bias\":{\"five\":10}", "logit_bias", 400},
        {"\"logit_bias\":{\"5\":-101}", "logit_bias", 400},
        {"\"logit_bias\":{\"99999999\":1}", "logit_bias", 400},
        {"\"best_of\":2", "", 0},
        {"\"best_of\":2,\"n\":3", "best_of", 400},
        {"\"best_of\":3,\"n\":2,\"stream\":true", "best_of", 400},
        {"\"n\":17", "n", 400},
        {"\"store\":true", "store", 400},
        {"\"guided_json\":{}", "", 0},
        {"\"guided_json\":\"{\\\"type\\\":\\\"integer\\\"}\"", "", 0},
        {"\"guided_regex\":\"[a-z]+\"", "", 0},
        {"\"guided_regex\":\"(\"", "guided_regex", 400},
        {"\"guided_choice\":[\"yes\",\"no\"]", "", 0},
        {"\"guided_choice\":[]", "guided_choice", 400},
        {"\"guided_grammar\":\"root ::= \\\"x\\\"\"", "", 0},
        {"\"grammar\":\"root ::= nothing\"", "grammar", 400},
        {"\"json_schema\":{\"type\":\"integer\"}", "", 0},
        {"\"guided_regex\":\"a\",\"guided_choice\":[\"b\"]", "guided_choice", 400}, /* two grammars */
        {"\"no_such_thing\":1", "no_such_thing", 400},
        {"\"stream\":true,\"stream_options\":{\"continuous_usage_stats\":true}", "stream_options", 400},
        {"\"messages\":[]", "messages", 400}, /* a chat parameter on /v1/completions */
        {"\"model\":\"gpt-4\"", "model", 404},
        {"\"user\":\"u1\",\"metadata\":{\"a\":\"b\"},\"store\":false,\"logit_bias\":{},\"best_of\":1", "", 0},
        {"\"model\":\"stories260K\"", "", 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char body[256], param[64] = "";
        snprintf(body, sizeof body, "{\"prompt\":\"a\",%s}", cases[i].extra);
        int st = parse_status(&f, REQ_COMPLETION, body, param, sizeof param);
        CHECK(st == cases[i].status && !strcmp(param, cases[i].param), "%s: status %d param '%s'", body, st, param);
    }
    kiln_tokenizer_free(f.tok);
    REQUIRE(fixture_open(&f, "tiny-qwen3"), "fixture");
    const char *chat[][2] = {
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\"}", "tool_choice"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"parallel_tool_calls\":false}", "parallel_tool_calls"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"echo\":true}", "echo"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"g\"}},"
         "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}", "tool_choice"},
        {"{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\",\"response_format\":{\"type\":\"json_object\"},"
         "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]}", "tool_choice"},
    };
    for (size_t i = 0; i < sizeof chat / sizeof *chat; i++) {
        char param[64] = "";
        int st = parse_status(&f, REQ_CHAT, chat[i][0], param, sizeof param);
        CHECK(st == 400 && !strcmp(param, chat[i][1]), "%s: status %d param '%s'", chat[i][0], st, param);
    }
    char param[64];
    CHECK(parse_status(&f, REQ_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"auto\"}", param,
                       sizeof param) == 0, "tool_choice auto: %s", param);
    kiln_tokenizer_free(f.tok);
    char *e = openai_error_json(401, "no", NULL);
    CHECK(strstr(e, "\"code\":401"), "one code type (the HTTP status): %s", e);
    free(e);
}

/* Samples a request's answer from flat logits with one favoured id per step (a stand-in for a model that
 * ignores the format): the grammar alone must keep the output valid. Returns the content (malloc'd). */
static char *sample_answer(fixture *f, serve_req *r, int32_t favoured) {
    req_output *o = output(f, r);
    int vocab = (int)kiln_tokenizer_vocab_size(f->tok);
    float *logits = malloc((size_t)vocab * sizeof *logits);
    serve_finish fin = FIN_NONE;
    for (int i = 0; o && logits && i < r->max_tokens && fin == FIN_NONE; i++) {
        for (int k = 0; k < vocab; k++) logits[k] = (float)((k * 2654435761u + (unsigned)i * 40503u) % 1000) / 100.f;
        logits[favoured] = 50;
        kiln_gen_step st;
        if (output_sample(o, r, logits, &st, NULL)) break;
        fin = output_push(o, r, &st, NULL);
    }
    r->finish = fin;
    free(logits);
    output_free(o);
    return strdup(r->content.p ? r->content.p : "");
}

TEST(grammar_fields_constrain_the_output) {
    fixture f;
    REQUIRE(fixture_open(&f, "tiny-qwen3"), "fixture");
    int32_t junk = kiln_token_id(f.tok, "hello");
    REQUIRE(junk >= 0, "token");
    serve_req *r = request(&f, REQ_CHAT,
                           "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":60,\"temperature\":0,"
                           "\"response_format\":{\"type\":\"json_schema\",\"json_schema\":{\"name\":\"n\",\"strict\":true,"
                           "\"schema\":{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":0,"
                           "\"maximum\":99},\"c\":{\"enum\":[\"red\",\"blue\"]}},\"required\":[\"n\",\"c\"]}}}}");
    REQUIRE(r && r->grammar && !r->split_thinking, "parse (a grammar renders without thinking)");
    char *text = kiln_decode(f.tok, r->prompt, (size_t)r->n_prompt, false, NULL);
    CHECK(text && strstr(text, "<think>\n\n</think>"), "Qwen3 told not to think: %s", text);
    free(text);
    char *out = sample_answer(&f, r, junk);
    json_t *j = json_loads(out, 0, NULL);
    json_t *n = json_object_get(j, "n"), *c = json_object_get(j, "c");
    CHECK(r->finish == FIN_STOP && json_is_integer(n) && json_integer_value(n) >= 0 && json_integer_value(n) <= 99 &&
              json_is_string(c) && (!strcmp(json_string_value(c), "red") || !strcmp(json_string_value(c), "blue")) &&
              json_object_size(j) == 2,
          "schema-valid answer: '%s' (finish %d)", out, r->finish);
    json_decref(j);
    free(out);
    serve_req_unref(r);

    /* tool_choice naming a function: exactly one call to it, arguments valid against its parameters. */
    r = request(&f, REQ_CHAT,
                "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":80,\"temperature\":0,"
                "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"a\"}},{\"type\":\"function\",\"function\":"
                "{\"name\":\"add\",\"parameters\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"integer\"}},"
                "\"required\":[\"x\"]}}}],\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"add\"}}}");
    REQUIRE(r && r->grammar && r->has_tools, "parse tool_choice");
    out = sample_answer(&f, r, junk);
    j = r->n_calls == 1 ? json_loads(r->calls[0].arguments, 0, NULL) : NULL;
    CHECK(r->finish == FIN_STOP && r->n_calls == 1 && !strcmp(r->calls[0].name, "add") &&
              json_is_integer(json_object_get(j, "x")) && json_object_size(j) == 1 && !*out,
          "one call to add: %d calls, content '%s'", r->n_calls, out);
    json_decref(j);
    free(out);
    serve_req_unref(r);

    /* tool_choice none: the tools stay out of the prompt. */
    r = request(&f, REQ_CHAT,
                "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"none\","
                "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"secret_tool\"}}]}");
    REQUIRE(r, "parse tool_choice none");
    text = kiln_decode(f.tok, r->prompt, (size_t)r->n_prompt, false, NULL);
    CHECK(text && !strstr(text, "secret_tool") && !r->has_tools && !r->grammar, "tools left out: %s", text);
    free(text);
    serve_req_unref(r);

    /* logit_bias reaches the sampler: +100 on one id makes it the greedy answer. */
    r = request(&f, REQ_COMPLETION, "{\"prompt\":\"x\",\"max_tokens\":1,\"temperature\":0,\"return_token_ids\":true,"
                           "\"logit_bias\":{\"7\":100}}");
    REQUIRE(r && r->gen.n_logit_bias == 1 && r->gen.logit_bias[0].token == 7, "parse logit_bias");
    free(sample_answer(&f, r, junk));
    CHECK(r->n_gen == 1 && r->gen_ids && r->gen_ids[0] == 7, "the biased id wins over the favoured one");
    serve_req_unref(r);
    kiln_tokenizer_free(f.tok);
}

/* ---- tool round trips in every shipped template family (issue 17 item 3) ---- */

static char *read_text(const char *path) {
    kiln_err err = {{0}};
    size_t n;
    char *s = kiln_read_file(path, &n, &err);
    if (!s) fprintf(stderr, "%s\n", err.msg);
    return s;
}

TEST(tool_results_render_in_every_template) {
    const char *msgs = "[{\"role\":\"user\",\"content\":\"Weather in Paris?\"},"
                       "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\","
                       "\"function\":{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},"
                       "{\"role\":\"tool\",\"tool_call_id\":\"call_1\",\"content\":\"18C and sunny\"}]";
    const char *tools = "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"weather\","
                        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]";
    const char *files[] = {"llama-3.2-instruct", "qwen2.5-instruct", "chatml", "mistral-7b-instruct-v0.2"};
    const char *toks[] = {"qwen3", "llama3"};
    for (size_t i = 0; i < 6; i++) {
        char *tmpl = NULL, path[512];
        kiln_tokenizer *t = NULL;
        if (i < 4) {
            snprintf(path, sizeof path, "tests/fixtures/templates/%s.jinja", files[i]);
            tmpl = read_text(path);
        } else if ((t = tokenizer(toks[i - 4]))) {
            tmpl = strdup(kiln_tokenizer_chat_template(t, NULL));
        }
        const char *name = i < 4 ? files[i] : toks[i - 4];
        REQUIRE(tmpl, "%s: no template", name);
        json_t *m = json_loads(msgs, 0, NULL), *out = NULL;
        char msg[512], param[64];
        CHECK(!openai_chat_messages(m, tmpl, &out, msg, sizeof msg, param, sizeof param), "%s: %s", name, msg);
        json_t *vars = json_pack("{s:O, s:o, s:b, s:s, s:s, s:s}", "messages", out ? out : m, "tools",
                                 json_loads(tools, 0, NULL), "add_generation_prompt", 1, "bos_token", "<s>",
                                 "eos_token", "</s>", "date_string", "26 Jul 2024");
        char *vj = json_dumps(vars, 0);
        kiln_err err = {{0}};
        size_t len;
        char *text = kiln_template_render(tmpl, vj, &len, &err);
        CHECK(text && strstr(text, "18C and sunny") && strstr(text, "Paris"), "%s: %s", name, text ? text : err.msg);
        free(text);
        free(vj);
        json_decref(vars);
        json_decref(out);
        json_decref(m);
        free(tmpl);
        kiln_tokenizer_free(t);
    }
    /* and through the request path on tiny-qwen3 (Qwen3's template failed on content null) */
    fixture f;
    REQUIRE(fixture_open(&f, "tiny-qwen3"), "fixture");
    char body[2048], param[64];
    snprintf(body, sizeof body, "{\"messages\":%s,\"tools\":%s}", msgs, tools);
    CHECK(parse_status(&f, REQ_CHAT, body, param, sizeof param) == 0, "qwen3 request: %s", param);
    kiln_tokenizer_free(f.tok);
}

/* ---- the model files watched underneath (issue 19 item 4) ---- */

TEST(model_watch_notices_files_changed_in_place) {
    char dir[] = "/tmp/kiln_watch_XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp");
    char path[256], other[256];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(other, sizeof other, "%s/new.tmp", dir);
    FILE *fp = fopen(path, "w");
    REQUIRE(fp, "create");
    fputs("0123456789", fp);
    fclose(fp);
    kiln_err err = {{0}};
    model_watch *w = model_watch_new(dir, NULL, &err);
    REQUIRE(w && model_watch_count(w) == 1, "%s", err.msg);
    CHECK(model_watch_check(w, &err) == 0, "unchanged: %s", err.msg);
    /* replaced by a rename: a new inode, the mapping keeps the old one: harmless */
    fp = fopen(other, "w");
    fputs("abcdefghijXYZ", fp);
    fclose(fp);
    rename(other, path);
    CHECK(model_watch_check(w, &err) == 0, "renamed over: %s", err.msg);
    model_watch_free(w);
    w = model_watch_new(dir, NULL, &err);
    REQUIRE(w, "%s", err.msg);
    fp = fopen(path, "r+"); /* truncated in place */
    REQUIRE(fp, "open");
    CHECK(ftruncate(fileno(fp), 3) == 0, "truncate");
    fclose(fp);
    CHECK(model_watch_check(w, &err) == -1 && strstr(err.msg, path) && strstr(err.msg, "size"), "truncated: %s", err.msg);
    model_watch_free(w);
    remove(path);
    rmdir(dir);
}

int main(void) {
    RUN(metrics_histograms_are_cumulative);
    RUN(error_bodies_follow_openai);
    RUN(out_of_memory_is_500_not_400);
    RUN(block_hashes_chain);
    RUN(prefix_cache_fork_matches_fresh_prefill);
    RUN(output_stop_strings_and_thinking);
    RUN(sampling_is_seeded_and_respects_top_k);
    RUN(tool_calls_stream_as_tool_calls);
    RUN(unlimited_queue_takes_everything);
    RUN(kv_cache_mb_counts_the_kv_format);
    RUN(detok_continues_in_context);
    RUN(completion_text_echo_and_offsets_in_context);
    RUN(parameters_are_used_or_refused_by_name);
    RUN(grammar_fields_constrain_the_output);
    RUN(tool_results_render_in_every_template);
    RUN(model_watch_notices_files_changed_in_place);
    return check_done();
}
