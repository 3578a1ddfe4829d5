/* test_gguf_tokenizer.c — the tokenizer read from a GGUF file's tokenizer.ggml.* keys (vocab-only
 * files made by llama.cpp's converter, ../shared/gguf/tokenizers/) reproduces transformers' goldens:
 * ids, ids with the file's BOS rule, and decodes; the chat template and special ids come from the file;
 * unknown pre-tokenizer or model names are one-line errors. */
#include <jansson.h>

#include "check.h"
#include "kiln.h"

static char *gguf_path(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "gguf/tokenizers/%s.vocab.gguf", name);
    return strdup(shared_path(rel));
}

static kiln_tokenizer *open_gguf(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "gguf/tokenizers/%s.vocab.gguf", name);
    kiln_err err = {0};
    kiln_tokenizer *t = kiln_tokenizer_open(shared_path(rel), &err);
    if (!t) fprintf(stderr, "  open %s: %s\n", rel, err.msg);
    return t;
}

static bool same_ids(json_t *want, const int32_t *ids, size_t n) {
    bool ok = json_array_size(want) == n;
    for (size_t i = 0; ok && i < n; i++) ok = json_integer_value(json_array_get(want, i)) == ids[i];
    return ok;
}

/* One golden line: encode (with and without specials) and decode as the golden says. */
static bool line_matches(const kiln_tokenizer *t, json_t *j) {
    json_t *text = json_object_get(j, "text"), *want = json_object_get(j, "decoded");
    int32_t *ids = NULL, *ids_sp = NULL;
    size_t n = 0, n_sp = 0, dn = 0;
    kiln_err err = {0};
    bool ok = kiln_encode(t, json_string_value(text), json_string_length(text), false, &ids, &n, &err) == 0 &&
              kiln_encode(t, json_string_value(text), json_string_length(text), true, &ids_sp, &n_sp, &err) == 0;
    ok = ok && same_ids(json_object_get(j, "ids"), ids, n) && same_ids(json_object_get(j, "ids_with_special"), ids_sp, n_sp);
    char *dec = ok ? kiln_decode(t, ids, n, false, &dn) : NULL;
    ok = ok && dec && dn == json_string_length(want) && !memcmp(dec, json_string_value(want), dn);
    free(ids), free(ids_sp), free(dec);
    return ok;
}

/* How many lines of golden/tokenizers/<golden>.tokens.jsonl the GGUF tokenizer <name> matches (of *total). */
static int golden_matches(const char *name, const char *golden, int *total, bool report) {
    *total = 0;
    kiln_tokenizer *t = open_gguf(name);
    char rel[256];
    snprintf(rel, sizeof rel, "golden/tokenizers/%s.tokens.jsonl", golden);
    FILE *f = fopen(shared_path(rel), "r");
    if (!t || !f) {
        fprintf(stderr, "  missing fixture %s or tokenizer %s\n", rel, name);
        if (f) fclose(f);
        kiln_tokenizer_free(t);
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    int ok = 0;
    while (getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, JSON_ALLOW_NUL, NULL);
        if (!j) continue;
        bool m = line_matches(t, j);
        if (!m && report) fprintf(stderr, "  %s line %d differs: %s\n", name, *total, line);
        ok += m, ++*total;
        json_decref(j);
    }
    free(line), fclose(f), kiln_tokenizer_free(t);
    return ok;
}

static void golden_exact(const char *name, const char *golden) {
    int total, ok = golden_matches(name, golden, &total, true);
    CHECK(total >= 30 && ok == total, "%s: %d of %d golden lines match", name, ok, total);
}

TEST(golden_llama3) { golden_exact("tiny-llama3", "llama3"); }
TEST(golden_qwen3) { golden_exact("tiny-qwen3", "qwen3"); }
TEST(golden_llama2_sp) { golden_exact("llama2-sp", "llama2-sp"); }
/* Converted without scores or merges: the README's rule (merged piece's id, ▁-only pieces last)
 * matches every line, where llama.cpp matches 25/35 and 26/35. */
TEST(golden_llama2_scoreless) { golden_exact("llama2", "llama2"); }
TEST(golden_stories260K_scoreless) { golden_exact("stories260K", "stories260K"); }

/* The file's special ids and add-BOS rule, and its vocabulary size (unused slots included). */
TEST(specials_from_file) {
    kiln_tokenizer *q = open_gguf("tiny-qwen3"), *l = open_gguf("tiny-llama3"), *s = open_gguf("llama2-sp");
    REQUIRE(q && l && s, "tokenizers open");
    const kiln_special_tokens *ls = kiln_tokenizer_specials(l), *ss = kiln_tokenizer_specials(s);
    CHECK(ls->bos_id == 128000 && !strcmp(ls->bos_token, "<|begin_of_text|>"), "llama3 bos %d", ls->bos_id);
    CHECK(ss->bos_id == 1 && ss->eos_id == 2 && ss->unk_id == 0, "llama2-sp bos/eos/unk %d/%d/%d", ss->bos_id, ss->eos_id, ss->unk_id);
    CHECK(kiln_tokenizer_vocab_size(q) == 151936, "qwen3 vocab %zu", kiln_tokenizer_vocab_size(q));
    CHECK(kiln_tokenizer_vocab_size(l) == 128256, "llama3 vocab %zu", kiln_tokenizer_vocab_size(l));
    int32_t im_start = kiln_token_id(q, "<|im_start|>"), think = kiln_token_id(q, "<think>");
    CHECK(im_start == 151644 && kiln_token_is_special(q, im_start), "<|im_start|> %d is a special token", im_start);
    CHECK(think == 151667 && !kiln_token_is_special(q, think), "<think> %d is an added, not special, token", think);
    kiln_tokenizer_free(q), kiln_tokenizer_free(l), kiln_tokenizer_free(s);
}

/* tokenizer.chat_template is the template transformers has in tokenizer_config.json. */
static void template_same(const char *name, const char *dir) {
    kiln_tokenizer *g = open_gguf(name);
    kiln_err err = {0};
    kiln_tokenizer *h = kiln_tokenizer_open(shared_path(dir), &err);
    REQUIRE(g && h, "%s: %s", dir, err.msg);
    const char *a = kiln_tokenizer_chat_template(g, NULL), *b = kiln_tokenizer_chat_template(h, NULL);
    CHECK(a && b && !strcmp(a, b), "%s: GGUF chat template differs from %s's", name, dir);
    kiln_tokenizer_free(g), kiln_tokenizer_free(h);
}
TEST(chat_template_llama3) { template_same("tiny-llama3", "tokenizers/llama3"); }
TEST(chat_template_qwen3) { template_same("tiny-qwen3", "tokenizers/qwen3"); }

/* ---- hostile or unsupported files: a copy with one string changed in place ---- */
static char tmp_dir[] = "/tmp/kiln_test_ggtok_XXXXXX";

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*n);
    if (b && fread(b, 1, *n, f) != *n) free(b), b = NULL;
    fclose(f);
    return b;
}

/* tmp_dir/out: name's file with the value of string key `key` (same length) replaced by `value`; or cut
 * to `cut` bytes when cut > 0. */
static char *patched(const char *name, const char *key, const char *value, size_t cut, const char *out) {
    char *src = gguf_path(name);
    size_t n = 0;
    unsigned char *b = read_all(src, &n);
    free(src);
    if (!b) return NULL;
    if (key) {
        size_t kn = strlen(key), vn = strlen(value);
        unsigned char *k = memmem(b, n, key, kn);
        uint64_t len;
        if (k) memcpy(&len, k + kn + 4, 8); /* key, u32 type, u64 length, bytes */
        if (k && len == vn) memcpy(k + kn + 12, value, vn);
        else key = NULL;
    }
    static char path[4200];
    snprintf(path, sizeof path, "%s/%s", tmp_dir, out);
    FILE *f = fopen(path, "wb");
    if (f) fwrite(b, 1, cut ? cut : n, f), fclose(f);
    free(b);
    return f ? path : NULL;
}

/* Opening path fails with one line naming `want`. */
static void refused(const char *path, const char *want) {
    REQUIRE(path, "could not write the test file");
    kiln_err err = {0};
    kiln_tokenizer *t = kiln_tokenizer_open(path, &err);
    CHECK(!t && strstr(err.msg, want) && !strchr(err.msg, '\n'), "%s: got \"%s\", want an error naming %s", path, err.msg, want);
    kiln_tokenizer_free(t);
}

TEST(unknown_pre_is_an_error) {
    refused(patched("tiny-qwen3", "tokenizer.ggml.pre", "qwen9", 0, "pre.gguf"), "\"qwen9\"");
    refused(patched("stories260K", "tokenizer.ggml.pre", "refact0", 0, "pre2.gguf"), "\"refact0\"");
}
TEST(unknown_model_is_an_error) { refused(patched("stories260K", "tokenizer.ggml.model", "bert0", 0, "m.gguf"), "\"bert0\""); }
TEST(truncated_file_is_an_error) { refused(patched("stories260K", NULL, NULL, 5000, "cut.gguf"), "cut.gguf"); }

/* A directory holding one GGUF (and no tokenizer.json) opens it; with two, it asks which. */
TEST(directory_with_a_gguf) {
    char *rel = gguf_path("stories260K"), *src = realpath(rel, NULL), dir[4200], link[4300];
    free(rel);
    REQUIRE(src, "missing fixture stories260K.vocab.gguf");
    snprintf(dir, sizeof dir, "%s/d", tmp_dir);
    mkdir(dir, 0700);
    snprintf(link, sizeof link, "%s/a.gguf", dir);
    CHECK(symlink(src, link) == 0, "symlink %s", link);
    kiln_err err = {0};
    kiln_tokenizer *t = kiln_tokenizer_open(dir, &err);
    CHECK(t && kiln_tokenizer_vocab_size(t) == 512, "%s: %s", dir, err.msg);
    kiln_tokenizer_free(t);
    snprintf(link, sizeof link, "%s/b.gguf", dir);
    CHECK(symlink(src, link) == 0, "symlink %s", link);
    refused(dir, "2 GGUF files");
    unlink(link), snprintf(link, sizeof link, "%s/a.gguf", dir), unlink(link), rmdir(dir);
    free(src);
}

/* A split model's tokenizer from any part it is named by (only the first holds the metadata), or from
 * the directory holding the parts. */
TEST(split_file_any_part) {
    const char *names[] = {"-00001-of-00003.gguf", "-00002-of-00003.gguf", "-00003-of-00003.gguf", ""};
    for (int i = 0; i < 4; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "gguf/kq-llama-512/split%s%s", names[i][0] ? "/kq-llama-512.Q4_K_M" : "", names[i]);
        kiln_err err = {0};
        kiln_tokenizer *t = kiln_tokenizer_open(shared_path(rel), &err);
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK(t && kiln_encode(t, "Hello", 5, true, &ids, &n, &err) == 0 && n == 4 && ids[0] == 1 && ids[1] == 346,
              "%s: %s", rel, err.msg);
        free(ids), kiln_tokenizer_free(t);
    }
}

int main(void) {
    if (!mkdtemp(tmp_dir)) return fprintf(stderr, "mkdtemp failed\n"), 1;
    RUN(golden_llama3);
    RUN(golden_qwen3);
    RUN(golden_llama2_sp);
    RUN(golden_llama2_scoreless);
    RUN(golden_stories260K_scoreless);
    RUN(specials_from_file);
    RUN(chat_template_llama3);
    RUN(chat_template_qwen3);
    RUN(unknown_pre_is_an_error);
    RUN(unknown_model_is_an_error);
    RUN(truncated_file_is_an_error);
    RUN(directory_with_a_gguf);
    RUN(split_file_any_part);
    const char *files[] = {"pre.gguf", "pre2.gguf", "m.gguf", "cut.gguf"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[4300];
        snprintf(p, sizeof p, "%s/%s", tmp_dir, files[i]);
        unlink(p);
    }
    rmdir(tmp_dir);
    return check_done();
}
