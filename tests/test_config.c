/* test_config.c — config.json parsing: the fixtures, every architecture, rope_scaling spellings,
 * eos lists, and one-line errors for what we refuse. */
#include <unistd.h>

#include "check.h"
#include "kiln.h"

static char dir[] = "/tmp/kiln_test_config_XXXXXX";

/* Writes DIR/config.json with the body and parses it. */
static int load_json(const char *body, kiln_config *c, kiln_err *err) {
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fputs(body, f);
    fclose(f);
    return kiln_config_load(dir, c, err);
}

#define BASE "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":4," \
             "\"vocab_size\":100"

TEST(fixtures) {
    kiln_config c;
    kiln_err err;
    REQUIRE(kiln_config_load(shared_path("models/tiny-llama3"), &c, &err) == 0, "%s", err.msg);
    CHECK(c.arch == KILN_ARCH_LLAMA && c.n_kv_heads == 2 && c.head_dim == 16 && c.vocab_size == 128256, "llama3");
    CHECK(c.rope_type == KILN_ROPE_LLAMA3 && c.rope_factor == 32 && c.rope_low_freq_factor == 1 &&
              c.rope_high_freq_factor == 4 && c.rope_original_max_pos == 8192 && c.rope_theta == 500000,
          "llama3 rope");
    CHECK(c.n_eos_token_ids == 3 && c.eos_token_ids[2] == 128009 && c.bos_token_id == 128000, "eos list");
    CHECK(!c.tie_word_embeddings && c.torch_dtype == KILN_DT_BF16, "tie/dtype");
    REQUIRE(kiln_config_load(shared_path("models/tiny-qwen2"), &c, &err) == 0, "%s", err.msg);
    CHECK(c.arch == KILN_ARCH_QWEN2 && c.attention_bias && !c.qk_norm && c.torch_dtype == KILN_DT_F16, "qwen2");
    CHECK(c.n_eos_token_ids == 1 && c.eos_token_ids[0] == 151645 && c.rms_norm_eps == 1e-6f, "qwen2 eos");
    REQUIRE(kiln_config_load(shared_path("models/tiny-qwen3"), &c, &err) == 0, "%s", err.msg);
    CHECK(c.arch == KILN_ARCH_QWEN3 && c.qk_norm && c.head_dim == 32 && c.hidden_size == 64, "qwen3");
    REQUIRE(kiln_config_load(shared_path("models/stories260K"), &c, &err) == 0, "%s", err.msg);
    CHECK(c.tie_word_embeddings && c.rope_type == KILN_ROPE_DEFAULT && c.torch_dtype == KILN_DT_F32, "stories");
}

TEST(architectures_and_defaults) {
    kiln_config c;
    kiln_err err;
    REQUIRE(load_json("{\"architectures\":[\"MistralForCausalLM\"]," BASE "}", &c, &err) == 0, "%s", err.msg);
    CHECK(c.arch == KILN_ARCH_MISTRAL && c.head_dim == 16 && c.n_kv_heads == 4, "derived head_dim / kv heads");
    CHECK(c.rope_theta == 10000 && c.bos_token_id == -1 && c.n_eos_token_ids == 0, "defaults");
    REQUIRE(load_json("{\"architectures\":[\"Qwen2ForCausalLM\"],\"attention_bias\":false," BASE "}", &c, &err) == 0,
            "%s", err.msg);
    CHECK(c.attention_bias, "Qwen2 always has q/k/v biases");
    REQUIRE(load_json("{\"architectures\":[\"LlamaForCausalLM\"],\"attention_bias\":true,\"head_dim\":32,"
                      "\"num_key_value_heads\":2,\"eos_token_id\":[5,6]," BASE "}", &c, &err) == 0, "%s", err.msg);
    CHECK(c.attention_bias && c.head_dim == 32 && c.n_kv_heads == 2 && c.n_eos_token_ids == 2, "explicit fields");
}

TEST(rope_scaling_spellings) {
    kiln_config c;
    kiln_err err;
    REQUIRE(load_json("{\"architectures\":[\"LlamaForCausalLM\"],\"rope_scaling\":{\"type\":\"linear\",\"factor\":2.0},"
                      BASE "}", &c, &err) == 0, "%s", err.msg);
    CHECK(c.rope_type == KILN_ROPE_LINEAR && c.rope_factor == 2.0, "linear via 'type'");
    REQUIRE(load_json("{\"architectures\":[\"LlamaForCausalLM\"],\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":4},"
                      BASE "}", &c, &err) == 0, "%s", err.msg);
    CHECK(c.rope_type == KILN_ROPE_LINEAR && c.rope_factor == 4.0, "linear via 'rope_type'");
    REQUIRE(load_json("{\"architectures\":[\"LlamaForCausalLM\"],\"rope_scaling\":{\"type\":\"llama3\",\"factor\":8,"
                      "\"low_freq_factor\":1,\"high_freq_factor\":4,\"original_max_position_embeddings\":8192},"
                      BASE "}", &c, &err) == 0, "%s", err.msg);
    CHECK(c.rope_type == KILN_ROPE_LLAMA3 && c.rope_factor == 8, "llama3 via 'type'");
    CHECK(load_json("{\"architectures\":[\"LlamaForCausalLM\"],\"rope_scaling\":{\"type\":\"yarn\",\"factor\":8}," BASE "}",
                    &c, &err) != 0 && strstr(err.msg, "yarn"), "yarn refused: %s", err.msg);
    CHECK(load_json("{\"architectures\":[\"LlamaForCausalLM\"],\"rope_scaling\":{\"type\":\"llama3\",\"factor\":8}," BASE "}",
                    &c, &err) != 0 && strstr(err.msg, "low_freq_factor"), "llama3 without fields: %s", err.msg);
}

/* Which layers get the sliding window, and Gemma's settings with transformers' defaults. */
#define SHAPE7 "\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":7,\"num_attention_heads\":4," \
               "\"vocab_size\":100"
static unsigned windowed_layers(const kiln_config *c) {
    unsigned bits = 0;
    for (int l = 0; l < c->n_layers; l++) bits |= (unsigned)kiln_config_layer_windowed(c, l) << l;
    return bits;
}

TEST(windows_and_gemma) {
    kiln_config c;
    kiln_err err;
    REQUIRE(load_json("{\"architectures\":[\"MistralForCausalLM\"],\"sliding_window\":8," SHAPE7 "}", &c, &err) == 0,
            "%s", err.msg);
    CHECK(c.sliding_window == 8 && windowed_layers(&c) == 0x7f && !c.norm_offset && c.hidden_act == KILN_ACT_SILU,
          "Mistral: every layer (%#x)", windowed_layers(&c));
    REQUIRE(load_json("{\"architectures\":[\"MistralForCausalLM\"],\"sliding_window\":null," SHAPE7 "}", &c, &err) == 0,
            "%s", err.msg);
    CHECK(windowed_layers(&c) == 0, "null window");
    REQUIRE(load_json("{\"architectures\":[\"Qwen2ForCausalLM\"],\"sliding_window\":8,\"use_sliding_window\":true,"
                      "\"max_window_layers\":5," SHAPE7 "}", &c, &err) == 0, "%s", err.msg);
    CHECK(windowed_layers(&c) == 0x60, "Qwen2: layers >= max_window_layers (%#x)", windowed_layers(&c));
    REQUIRE(load_json("{\"architectures\":[\"Qwen2ForCausalLM\"],\"sliding_window\":8," SHAPE7 "}", &c, &err) == 0,
            "%s", err.msg);
    CHECK(windowed_layers(&c) == 0, "Qwen2 without use_sliding_window");
    REQUIRE(load_json("{\"architectures\":[\"Gemma3ForCausalLM\"],\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":8},"
                      SHAPE7 "}", &c, &err) == 0, "%s", err.msg);
    CHECK(c.arch == KILN_ARCH_GEMMA3 && c.sliding_window == 4096 && windowed_layers(&c) == 0x5f, "Gemma 3 pattern 6 (%#x)",
          windowed_layers(&c));
    CHECK(c.norm_offset && c.sandwich_norms && c.qk_norm && c.tie_word_embeddings && c.hidden_act == KILN_ACT_GELU_TANH &&
              c.embed_scale == 8.0f && c.attn_scale == 1.0f / 16 && c.attn_logit_softcap == 0 && c.final_logit_softcap == 0 &&
              c.rope_local_theta == 10000 && c.rope_type == KILN_ROPE_LINEAR,
          "Gemma 3 defaults");
    REQUIRE(load_json("{\"architectures\":[\"Gemma2ForCausalLM\"],\"query_pre_attn_scalar\":64," SHAPE7 "}", &c, &err) == 0,
            "%s", err.msg);
    CHECK(windowed_layers(&c) == 0x55 && c.attn_logit_softcap == 50 && c.final_logit_softcap == 30 &&
              c.attn_scale == 0.125f && c.rope_local_theta == 0 && !c.qk_norm,
          "Gemma 2 defaults (%#x)", windowed_layers(&c));
    REQUIRE(load_json("{\"architectures\":[\"Gemma2ForCausalLM\"],\"attn_logit_softcapping\":null,"
                      "\"final_logit_softcapping\":null,\"sliding_window\":16,\"layer_types\":[\"full_attention\","
                      "\"sliding_attention\",\"full_attention\",\"full_attention\",\"full_attention\",\"full_attention\","
                      "\"sliding_attention\"]," SHAPE7 "}", &c, &err) == 0, "%s", err.msg);
    CHECK(windowed_layers(&c) == 0x42 && c.sliding_window == 16 && c.attn_logit_softcap == 0 && c.final_logit_softcap == 0,
          "layer_types and null caps (%#x)", windowed_layers(&c));
}

TEST(errors_are_one_line_and_named) {
    kiln_config c;
    kiln_err err;
    struct {
        const char *body, *want;
    } cases[] = {
        {"{\"architectures\":[\"GPT2LMHeadModel\"]," BASE "}", "GPT2LMHeadModel"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],", "invalid JSON"},
        {"[1,2]", "not a JSON object"},
        {"{" BASE "}", "architectures"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":10}", "hidden_size"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"num_key_value_heads\":3," BASE "}", "num_key_value_heads"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":\"64\",\"intermediate_size\":8,"
         "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10}", "hidden_size"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"vocab_size\":-1,\"hidden_size\":64,\"intermediate_size\":8,"
         "\"num_hidden_layers\":1,\"num_attention_heads\":4}", "vocab_size"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"eos_token_id\":\"x\"," BASE "}", "eos_token_id"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"torch_dtype\":\"int8\"," BASE "}", "int8"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_act\":\"gelu\"," BASE "}", "hidden_act"},
        {"{\"architectures\":[\"LlamaForCausalLM\"],\"head_dim\":15," BASE "}", "head_dim"},
        {"{\"architectures\":[\"Gemma3ForCausalLM\"],\"layer_types\":[\"full_attention\",\"chunked_attention\"]," BASE "}",
         "chunked_attention"},
        {"{\"architectures\":[\"Gemma3ForCausalLM\"],\"layer_types\":[\"full_attention\"]," BASE "}", "layer_types"},
        {"{\"architectures\":[\"Gemma3ForCausalLM\"],\"rope_parameters\":{}," BASE "}", "rope_parameters"},
        {"{\"architectures\":[\"Gemma3ForCausalLM\"],\"use_bidirectional_attention\":true," BASE "}",
         "use_bidirectional_attention"},
        {"{\"architectures\":[\"Gemma2ForCausalLM\"],\"hidden_activation\":\"gelu\"," BASE "}", "hidden_activation"},
        {"{\"architectures\":[\"Gemma2ForCausalLM\"],\"query_pre_attn_scalar\":0," BASE "}", "query_pre_attn_scalar"},
        {"{\"architectures\":[\"MistralForCausalLM\"],\"sliding_window\":0," BASE "}", "sliding_window"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = load_json(cases[i].body, &c, &err);
        CHECK(rc != 0 && strstr(err.msg, cases[i].want) && strstr(err.msg, "config.json") && !strchr(err.msg, '\n'),
              "case %zu: rc %d, message '%s' should name '%s'", i, rc, err.msg, cases[i].want);
    }
    CHECK(kiln_config_load("/nonexistent/kiln", &c, &err) != 0 && strstr(err.msg, "/nonexistent/kiln/config.json"),
          "missing dir: %s", err.msg);
}


/* ---- hostile files (issue 19): each in a forked child with an alarm, so a crash or hang is a FAIL ---- */

static void write_file(const char *name, const char *body) { write_test_file(dir, name, body); }

typedef struct {
    bool gen; /* kiln_gen_params_load, else kiln_config_load */
    const char *want;
} refusal;

static bool refused(const void *arg) {
    const refusal *r = arg;
    kiln_err err = {0};
    kiln_config c;
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    int rc = r->gen ? kiln_gen_params_load(&p, dir, &err) : kiln_config_load(dir, &c, &err);
    bool ok = rc != 0 && strstr(err.msg, r->want) && !strchr(err.msg, '\n');
    if (!ok) fprintf(stderr, "  rc %d, error '%s', want '%s'\n", rc, err.msg, r->want);
    return ok;
}

static bool refused_in_child(bool gen, const char *want) {
    refusal r = {gen, want};
    return in_child(refused, &r);
}

TEST(config_must_be_a_regular_file) {
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    REQUIRE(mkfifo(path, 0600) == 0, "mkfifo");
    CHECK(refused_in_child(false, "not a regular file"), "FIFO as config.json");
    CHECK(refused_in_child(true, "not a regular file"), "FIFO as config.json (generation params)");
    unlink(path);
    REQUIRE(symlink("/dev/zero", path) == 0, "symlink");
    CHECK(refused_in_child(false, "not a regular file"), "config.json → /dev/zero");
    unlink(path);
    REQUIRE(mkdir(path, 0700) == 0, "mkdir");
    CHECK(refused_in_child(false, "not a regular file"), "directory as config.json");
    rmdir(path);
}

TEST(config_ids_range_checked) {
    write_file("config.json", "{\"architectures\":[\"LlamaForCausalLM\"],\"eos_token_id\":-1," BASE "}");
    CHECK(refused_in_child(false, "'eos_token_id'"), "eos_token_id -1");
    write_file("config.json", "{\"architectures\":[\"LlamaForCausalLM\"],\"eos_token_id\":[2,-7]," BASE "}");
    CHECK(refused_in_child(false, "eos_token_id[1]"), "eos_token_id [2,-7]");
    write_file("config.json", "{\"architectures\":[\"LlamaForCausalLM\"],\"bos_token_id\":\"x\"," BASE "}");
    CHECK(refused_in_child(false, "'bos_token_id'"), "bos_token_id \"x\"");
    write_file("config.json", "{\"architectures\":[\"LlamaForCausalLM\"],\"bos_token_id\":4294967301," BASE "}");
    CHECK(refused_in_child(false, "'bos_token_id'"), "bos_token_id 2^32+5");
}

TEST(generation_config_values_checked) {
    write_file("config.json", "{\"architectures\":[\"LlamaForCausalLM\"],\"eos_token_id\":2," BASE "}");
    struct {
        const char *body, *want;
    } cases[] = {
        {"{\"temperature\":-1}", "'temperature'"},
        {"{\"top_p\":2}", "'top_p'"},
        {"{\"do_sample\":\"x\"}", "'do_sample'"},
        {"{\"top_k\":-5}", "'top_k'"},
        {"{\"top_k\":3.5}", "'top_k'"},
        {"{\"min_p\":1.5}", "'min_p'"},
        {"{\"repetition_penalty\":0}", "'repetition_penalty'"},
        {"{\"max_new_tokens\":-3}", "'max_new_tokens'"},
        {"{\"eos_token_id\":-1}", "'eos_token_id'"},
        {"{\"eos_token_id\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}", "more than 16"},
        {"[1]", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file("generation_config.json", cases[i].body);
        CHECK(refused_in_child(true, cases[i].want) && refused_in_child(true, "generation_config.json"),
              "generation_config.json %s not refused naming %s", cases[i].body, cases[i].want);
    }
    /* the values a real file has are taken, and its eos list replaces config.json's */
    write_file("generation_config.json", "{\"do_sample\":true,\"temperature\":0.6,\"top_p\":0.95,\"top_k\":20,"
                                         "\"eos_token_id\":[7,8],\"max_new_tokens\":64}");
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    kiln_err err = {0};
    REQUIRE(kiln_gen_params_load(&p, dir, &err) == 0, "%s", err.msg);
    CHECK(p.do_sample && p.temperature == 0.6f && p.top_p == 0.95f && p.top_k == 20 && p.max_new_tokens == 64,
          "values: %d %g %g %d %d", p.do_sample, p.temperature, p.top_p, p.top_k, p.max_new_tokens);
    CHECK(p.n_eos == 2 && p.eos_ids[0] == 7 && p.eos_ids[1] == 8, "eos %d", p.n_eos);
    char path[256];
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    unlink(path);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    RUN(config_must_be_a_regular_file);
    RUN(config_ids_range_checked);
    RUN(generation_config_values_checked);
    RUN(fixtures);
    RUN(architectures_and_defaults);
    RUN(rope_scaling_spellings);
    RUN(windows_and_gemma);
    RUN(errors_are_one_line_and_named);
    char path[256];
    snprintf(path, sizeof path, "%s/config.json", dir);
    unlink(path);
    rmdir(dir);
    return check_done();
}
