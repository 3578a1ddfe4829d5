/* targets.c — what the fuzz suite feeds and to which loader: one target per file the library reads from
 * a model directory, each with its seeds, its mutation mix, the loader call and the checks on what the
 * loader accepted (a loader that says yes must have produced something usable). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "fuzz/fuzz.h"
#include "kiln.h"
#include "model/gguf.h"

/* ---- mutation mixes ------------------------------------------------------------------------------ */

/* JSON files: mostly structure-aware, some blind bytes, some both. */
static void mutate_json_file(fuzz_rng *r, const char *seed, size_t n, strbuf *out, char *desc, size_t cap) {
    uint64_t pick = fuzz_below(r, 20);
    if (pick < 11 && fuzz_mutate_json(r, seed, n, out, desc, cap) == 0) return;
    if (pick < 15) {
        fuzz_mutate_bytes(r, seed, n, out, desc, cap);
        return;
    }
    strbuf tmp = {0};
    char d1[160];
    if (fuzz_mutate_json(r, seed, n, &tmp, d1, sizeof d1) != 0) {
        strbuf_put(&tmp, seed, n);
        snprintf(d1, sizeof d1, "-");
    }
    char d2[160];
    fuzz_mutate_bytes(r, tmp.p, tmp.len, out, d2, sizeof d2);
    snprintf(desc, cap, "%s + %s", d1, d2);
    strbuf_free(&tmp);
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

static void put_le64(strbuf *o, uint64_t v) {
    for (int i = 0; i < 8; i++) strbuf_putc(o, (char)(v >> (8 * i)));
}

/* safetensors: u64 header length + JSON header + data. The header is mutated (as JSON or as bytes), or
 * the length field, or the file is cut short; the data is kept. */
static void mutate_safetensors(fuzz_rng *r, const char *seed, size_t n, strbuf *out, char *desc, size_t cap) {
    if (n < 8 || seed[0] == '{') { /* the shard index, model.safetensors.index.json */
        mutate_json_file(r, seed, n, out, desc, cap);
        return;
    }
    const unsigned char *p = (const unsigned char *)seed;
    uint64_t hlen = n >= 8 ? le64(p) : 0;
    if (hlen > n - 8) hlen = 0;
    strbuf_clear(out);
    uint64_t pick = fuzz_below(r, 10);
    if (pick < 7) { /* a new header, its length field to match (mostly) */
        strbuf hdr = {0};
        if (pick < 4 && fuzz_mutate_json(r, seed + 8, hlen, &hdr, desc, cap) == 0) {
        } else fuzz_mutate_bytes(r, seed + 8, hlen, &hdr, desc, cap);
        put_le64(out, fuzz_below(r, 8) ? hdr.len : hdr.len + fuzz_below(r, 64) - 32);
        strbuf_put(out, hdr.p ? hdr.p : "", hdr.len);
        strbuf_put(out, seed + 8 + hlen, n - 8 - hlen);
        strbuf_free(&hdr);
    } else if (pick < 9) { /* an odd length field */
        static const uint64_t lens[] = {0, 1, 2, 7, 8, 0xffffffffull, 0x100000000ull, 0x7fffffffffffffffull,
                                        0xffffffffffffffffull, 100000000};
        uint64_t len = fuzz_below(r, 2) ? lens[fuzz_below(r, 10)] : hlen + fuzz_below(r, n) - n / 2;
        put_le64(out, len);
        strbuf_put(out, seed + 8, n - 8);
        snprintf(desc, cap, "safetensors: header length %llu", (unsigned long long)len);
    } else { /* cut short */
        size_t at = (size_t)fuzz_below(r, n);
        strbuf_put(out, seed, at);
        snprintf(desc, cap, "safetensors: truncated at %zu of %zu", at, n);
    }
}

/* GGUF: the header (keys, tensor infos) mutated as bytes, the data kept (mostly), or the file cut short. */
static void mutate_gguf(fuzz_rng *r, const char *seed, size_t n, strbuf *out, char *desc, size_t cap) {
    gguf_file g;
    size_t header = n;
    if (gguf_parse(&g, seed, n, "seed", NULL) == 0) header = g.data_offset, gguf_close(&g);
    strbuf_clear(out);
    if (fuzz_below(r, 8)) {
        fuzz_mutate_bytes(r, seed, header, out, desc, cap);
        strbuf_put(out, seed + header, n - header);
    } else {
        size_t at = (size_t)fuzz_below(r, n);
        strbuf_put(out, seed, at);
        snprintf(desc, cap, "gguf: truncated at %zu of %zu", at, n);
    }
}

/* Jinja snippets spliced into chat templates: ordinary edge cases (errors a template may raise, odd
 * indexing, filters), then the ones that need the template limits (kiln_template_limits: recursion,
 * 64-bit overflow, 10^12 bytes or iterations, self-containing lists) to end with an error. */
static const char *const snippets[] = {
    "{{ x.y.z }}", "{{ messages[999] }}", "{{ none.attr }}", "{{ 1 / 0 }}", "{{ 1 // 0 }}", "{{ 1 % 0 }}",
    "{{ messages | tojson }}", "{{ range(5) | list }}", "{% set ns = namespace(a=1) %}{{ ns.a }}{{ ns.b }}",
    "{{ raise_exception('fuzz') }}", "{{ [1, 2][5] }}", "{{ {}['k'] }}",
    "{{ 'abc'[::-1] }}{{ 'abc'[1:999] }}{{ 'abc'[-999:] }}", "{{ (1, 2) }}{{ loop.index }}",
    "{% macro m(a, b=1) %}{{ a }}{% endmacro %}{{ m(1, 2, 3) }}{{ m() }}",
    "{{ 10 ** 3 }}{{ 'x' * 3 }}{{ -9223372036854775807 - 1 }}", "{% if %}", "{{", "{% endfor %}", "{% for %}",
    "{{ messages[0]['content'][0:3] | upper }}",
    "{% for m in messages %}{% for k in messages %}{{ k.role }}{% endfor %}{% endfor %}",
    "{{ 'a' | indent(4) }}{{ messages | length }}{{ tools | tojson(indent=2) }}",
    /* limits */
    "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "{{ (-9223372036854775807 - 1) // -1 }}",
    "{{ 2 ** 64 }}", "{{ 9223372036854775807 + 1 }}", "{{ 1 ** 9223372036854775807 }}",
    "{{ range(-9223372036854775807 - 1, 9223372036854775807) | length }}", "{{ 'a' * 10 ** 12 }}",
    "{{ 'x' | indent(10 ** 12) }}", "{{ messages | tojson(indent=10 ** 9) }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% set l = [] %}{% set _ = l.append(l) %}{{ l }}{{ l == l }}",
    "{% macro d(s) %}{{ d(s ~ s) }}{% endmacro %}{{ d('ab') }}",
};
#define N_SNIPPETS (sizeof snippets / sizeof *snippets)
#define DEEP_PARENS 30000

/* The chat template with a snippet (or 30,000 nested parentheses: the nesting limit) spliced in after a tag. */
static int splice_template(fuzz_rng *r, const char *seed, size_t n, strbuf *out, char *desc, size_t cap) {
    json_t *doc = json_loadb(seed, n, JSON_ALLOW_NUL, NULL);
    json_t *ct = json_object_get(doc, "chat_template");
    if (json_is_array(ct)) /* named templates: [{"name", "template"}] */
        ct = json_object_get(json_array_get(ct, fuzz_below(r, json_array_size(ct) + 1)), "template");
    if (!json_is_string(ct)) {
        json_decref(doc);
        return -1;
    }
    const char *src = json_string_value(ct);
    size_t len = strlen(src), at = 0, tags = 0;
    for (size_t i = 1; i < len; i++) tags += src[i] == '}' && (src[i - 1] == '}' || src[i - 1] == '%');
    size_t want = fuzz_below(r, tags + 1);
    for (size_t i = 1, seen = 0; i < len && at == 0 && want; i++)
        if (src[i] == '}' && (src[i - 1] == '}' || src[i - 1] == '%') && ++seen == want) at = i + 1;
    strbuf t = {0};
    strbuf_put(&t, src, at);
    size_t k = fuzz_below(r, N_SNIPPETS + 1);
    if (k == N_SNIPPETS) { /* deep nesting in an expression */
        strbuf_puts(&t, "{{ ");
        for (int i = 0; i < DEEP_PARENS; i++) strbuf_putc(&t, '(');
        strbuf_putc(&t, '1');
        for (int i = 0; i < DEEP_PARENS; i++) strbuf_putc(&t, ')');
        strbuf_puts(&t, " }}");
    } else strbuf_puts(&t, snippets[k]);
    strbuf_puts(&t, src + at);
    json_string_set(ct, t.p);
    strbuf_free(&t);
    char *text = json_dumps(doc, JSON_INDENT(1));
    strbuf_clear(out);
    strbuf_puts(out, text ? text : "");
    free(text);
    json_decref(doc);
    snprintf(desc, cap, "template: snippet %zu at byte %zu", k, at);
    return 0;
}

/* tokenizer_config.json: a quarter of the cases splice Jinja into the template, the rest as JSON. */
static void mutate_tokenizer_config(fuzz_rng *r, const char *seed, size_t n, strbuf *out, char *desc, size_t cap) {
    if (fuzz_below(r, 4) == 0 && splice_template(r, seed, n, out, desc, cap) == 0) return;
    mutate_json_file(r, seed, n, out, desc, cap);
}

/* ---- loaders and their checks --------------------------------------------------------------------- */

#define INVALID(...) (snprintf(why, why_cap, __VA_ARGS__), FUZZ_INVALID)

/* A refusal must say why. */
static fuzz_outcome rejected(const kiln_err *e, char *why, size_t why_cap) {
    if (!e->msg[0]) return INVALID("refused without an error message");
    if (strchr(e->msg, '\n')) return INVALID("the error is not one line: %.200s", e->msg);
    return FUZZ_REJECTED;
}

static fuzz_outcome run_config(const char *dir, char *why, size_t why_cap) {
    kiln_config c;
    kiln_err e = {{0}};
    if (kiln_config_load(dir, &c, &e) != 0) return rejected(&e, why, why_cap);
    if (c.hidden_size <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.head_dim <= 0 ||
        c.vocab_size <= 0 || c.intermediate_size <= 0 || c.max_position_embeddings <= 0)
        return INVALID("accepted a non-positive size (hidden %d layers %d heads %d/%d head_dim %d vocab %d ffn %d "
                       "max_pos %d)",
                       c.hidden_size, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.vocab_size,
                       c.intermediate_size, c.max_position_embeddings);
    if (c.n_heads % c.n_kv_heads != 0) return INVALID("accepted %d heads over %d kv heads", c.n_heads, c.n_kv_heads);
    if (!isfinite(c.rms_norm_eps) || c.rms_norm_eps <= 0 || !isfinite(c.rope_theta) || c.rope_theta <= 0)
        return INVALID("accepted rms_norm_eps %g rope_theta %g", c.rms_norm_eps, c.rope_theta);
    if (c.n_eos_token_ids < 0 || c.n_eos_token_ids > 8) return INVALID("accepted %d eos ids", c.n_eos_token_ids);
    return FUZZ_ACCEPTED;
}

static fuzz_outcome run_gen(const char *dir, char *why, size_t why_cap) {
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    kiln_err e = {{0}};
    if (kiln_gen_params_load(&p, dir, &e) != 0) return rejected(&e, why, why_cap);
    if (p.n_eos < 0 || p.n_eos > KILN_GEN_MAX_EOS || p.n_stop < 0 || p.n_stop > KILN_GEN_MAX_STOP)
        return INVALID("accepted %d eos ids, %d stop strings", p.n_eos, p.n_stop);
    if (!(p.temperature >= 0) || !isfinite(p.temperature) || !(p.top_p >= 0 && p.top_p <= 1) || p.top_k < 0 ||
        !(p.min_p >= 0 && p.min_p <= 1) || !(p.repetition_penalty > 0) || !isfinite(p.repetition_penalty) ||
        p.max_new_tokens < 0 || p.min_new_tokens < 0)
        return INVALID("accepted temperature %g top_p %g top_k %d min_p %g repetition_penalty %g max_new_tokens %d "
                       "min_new_tokens %d",
                       p.temperature, p.top_p, p.top_k, p.min_p, p.repetition_penalty, p.max_new_tokens,
                       p.min_new_tokens);
    return FUZZ_ACCEPTED;
}

/* A loaded tokenizer must encode and decode: every id in range, every id with a string or a decode. */
static fuzz_outcome check_tokenizer(const kiln_tokenizer *t, char *why, size_t why_cap) {
    size_t vocab = kiln_tokenizer_vocab_size(t);
    if (vocab == 0 || vocab > (size_t)1 << 31) return INVALID("accepted a vocabulary of %zu", vocab);
    static const char text[] = "Hello world, ünïcode 123!\n\t <|im_end|> <s></s>\xff";
    int32_t *ids = NULL;
    size_t n = 0;
    kiln_err e = {{0}};
    fuzz_outcome out = FUZZ_ACCEPTED;
    if (kiln_encode(t, text, sizeof text - 1, true, &ids, &n, &e) == 0) {
        for (size_t i = 0; i < n && out == FUZZ_ACCEPTED; i++)
            if (ids[i] < 0 || (size_t)ids[i] >= vocab) out = INVALID("encoded to id %d of a vocabulary of %zu", ids[i], vocab);
        char *dec = out == FUZZ_ACCEPTED ? kiln_decode(t, ids, n, false, NULL) : NULL;
        if (out == FUZZ_ACCEPTED && !dec) out = INVALID("decode of its own %zu ids failed", n);
        free(dec);
    }
    free(ids);
    /* Every id decodes (alone and all together, special tokens kept or skipped) without a crash. */
    size_t n_all = vocab < 4096 ? vocab : 4096;
    int32_t *all = out == FUZZ_ACCEPTED ? malloc(n_all * sizeof *all) : NULL;
    for (size_t i = 0; all && i < n_all; i++) {
        all[i] = i + 1 < n_all ? (int32_t)i : (int32_t)(vocab - 1);
        kiln_token_str(t, all[i]);
        kiln_token_is_special(t, all[i]);
    }
    for (int skip = 0; all && skip < 2; skip++) {
        char *dec = kiln_decode(t, all, n_all, skip, NULL);
        if (!dec) out = INVALID("decode of ids 0..%zu failed", n_all - 1);
        free(dec);
    }
    free(all);
    return out;
}

/* The tokenizer's chat template on two conversations (every role, tools, tool calls). */
static fuzz_outcome render_chats(const kiln_tokenizer *t, char *why, size_t why_cap) {
    static const char *const convs[] = {
        "{\"messages\":[{\"role\":\"system\",\"content\":\"You are kiln.\"},{\"role\":\"user\",\"content\":"
        "\"Hi <|im_end|> there\"},{\"role\":\"assistant\",\"content\":\"<think>x</think>Hello\",\"tool_calls\":"
        "[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":{\"x\":1}}}]},{\"role\":\"tool\","
        "\"content\":\"42\"},{\"role\":\"user\",\"content\":\"again\"}],\"tools\":[{\"type\":\"function\","
        "\"function\":{\"name\":\"f\",\"description\":\"d\",\"parameters\":{\"type\":\"object\",\"properties\":"
        "{\"x\":{\"type\":\"integer\"}}}}}],\"add_generation_prompt\":true,\"enable_thinking\":false}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"Once upon a time\"}],\"add_generation_prompt\":false}"};
    fuzz_outcome out = FUZZ_ACCEPTED;
    for (size_t i = 0; out == FUZZ_ACCEPTED && kiln_tokenizer_chat_template(t, NULL) && i < 2; i++) {
        size_t len = 0;
        kiln_err e = {{0}};
        char *s = kiln_chat_render(t, convs[i], &len, &e);
        if (!s && !e.msg[0]) out = INVALID("chat render failed without an error message");
        if (!s && strchr(e.msg, '\n')) out = INVALID("the chat render error is not one line: %.200s", e.msg);
        free(s);
    }
    return out;
}

/* tokenizer.json / tokenizer_config.json: the tokenizer (and with chat, its template) from dir. */
static fuzz_outcome open_tokenizer(const char *dir, bool chat, char *why, size_t why_cap) {
    kiln_err e = {{0}};
    kiln_tokenizer *t = kiln_tokenizer_open(dir, &e);
    if (!t) return rejected(&e, why, why_cap);
    fuzz_outcome out = check_tokenizer(t, why, why_cap);
    if (chat && out == FUZZ_ACCEPTED) out = render_chats(t, why, why_cap);
    kiln_tokenizer_free(t);
    return out;
}

static fuzz_outcome run_tokenizer(const char *dir, char *why, size_t why_cap) {
    return open_tokenizer(dir, false, why, why_cap);
}

static fuzz_outcome run_tokenizer_config(const char *dir, char *why, size_t why_cap) {
    return open_tokenizer(dir, true, why, why_cap);
}

static fuzz_outcome run_model(const char *dir, char *why, size_t why_cap) {
    kiln_model_opts o;
    kiln_model_opts_default(&o);
    o.threads = 1;
    o.quiet = true;
    o.weight_cache = false;
    kiln_err e = {{0}};
    kiln_model *m = kiln_model_open(dir, &o, &e);
    if (!m) return rejected(&e, why, why_cap);
    fuzz_outcome out = kiln_model_weight_bytes(m) > 0 ? FUZZ_ACCEPTED : INVALID("opened a model with no weights");
    kiln_model_free(m);
    return out;
}

/* The mutated GGUF in dir (the seed directories hold other GGUFs too: the file is named). */
static fuzz_outcome run_gguf(const char *dir, char *why, size_t why_cap) {
    char *vocab = kiln_path_join(dir, "stories260K.vocab.gguf"), *model = kiln_path_join(dir, "kq-llama-512.Q8_0.gguf");
    struct stat st;
    const bool is_vocab = vocab && lstat(vocab, &st) == 0 && S_ISREG(st.st_mode);
    fuzz_outcome out = vocab && model ? run_model(is_vocab ? vocab : model, why, why_cap) : INVALID("out of memory");
    free(vocab), free(model);
    return out;
}

/* ---- the table ---------------------------------------------------------------------------------- */

#define SEEDS(...) (const fuzz_seed[]){__VA_ARGS__}, sizeof((const fuzz_seed[]){__VA_ARGS__}) / sizeof(fuzz_seed)

/* The seed sets: the four models of $SHARED/models; stories260K's tokenizer and the three cut ones. */
#define MODELS(f) {"models/stories260K", f}, {"models/tiny-llama3", f}, {"models/tiny-qwen2", f}, {"models/tiny-qwen3", f}
#define TOKENIZERS(f) {"models/stories260K", f}, {"@qwen3", f}, {"@llama3", f}, {"@llama2", f}

const fuzz_target fuzz_targets[] = {
    {"tokenizer.json", SEEDS(TOKENIZERS("tokenizer.json")), 1200, mutate_json_file, run_tokenizer},
    {"tokenizer_config.json", SEEDS(TOKENIZERS("tokenizer_config.json")), 1200, mutate_tokenizer_config,
     run_tokenizer_config},
    {"config.json", SEEDS(MODELS("config.json")), 1000, mutate_json_file, run_config},
    {"generation_config.json", SEEDS(MODELS("generation_config.json")), 800, mutate_json_file, run_gen},
    {"safetensors",
     SEEDS({"models/tiny-qwen2", "model-00002-of-00002.safetensors"}, {"models/stories260K", "model.safetensors"},
           {"models/tiny-qwen2", "model.safetensors.index.json"}),
     1000, mutate_safetensors, run_model},
    {"gguf", SEEDS({"gguf/kq-llama-512", "kq-llama-512.Q8_0.gguf"}, {"gguf/tokenizers", "stories260K.vocab.gguf"}),
     200, mutate_gguf, run_gguf},
};
const int fuzz_n_targets = sizeof fuzz_targets / sizeof *fuzz_targets;
