/* test_tokenizer.c — golden ids/decodes from Python transformers for llama3, qwen3, llama2 and
 * stories260K; chat renders re-encoded; pathological speed; incremental detokenization; edge cases. */
#include <jansson.h>
#include <time.h>

#include "check.h"
#include "kiln.h"

static const char *shared(void) {
    const char *s = getenv("SHARED");
    return s && *s ? s : "../shared";
}

static char *path2(const char *a, const char *b) {
    size_t n = strlen(shared()) + strlen(a) + strlen(b) + 8;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s%s", shared(), a, b);
    return p;
}

static kiln_tokenizer *open_tok(const char *name) {
    char *dir = path2(!strcmp(name, "stories260K") ? "models/" : "tokenizers/", name);
    kiln_err err = {0};
    kiln_tokenizer *t = kiln_tokenizer_open(dir, &err);
    if (!t) fprintf(stderr, "  open %s: %s\n", dir, err.msg);
    free(dir);
    return t;
}

static bool ids_equal(json_t *want, const int32_t *ids, size_t n) {
    if (json_array_size(want) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(want, i)) != ids[i]) return false;
    return true;
}

static void dump_ids(const char *label, const int32_t *ids, size_t n) {
    fprintf(stderr, "    %s:", label);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", ids[i]);
    fputc('\n', stderr);
}

/* Every line of <name>.tokens.jsonl: ids, ids_with_special, decoded (= decode(ids), specials kept). */
static void golden_tokens(const char *name) {
    kiln_tokenizer *t = open_tok(name);
    REQUIRE(t, "tokenizer %s did not open", name);
    char *p = path2("golden/tokenizers/", name);
    char *file = malloc(strlen(p) + 32);
    sprintf(file, "%s.tokens.jsonl", p);
    FILE *f = fopen(file, "r");
    CHECK(f, "missing fixture %s", file);
    char *line = NULL;
    size_t cap = 0;
    int lines = 0;
    while (f && getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *j = json_loads(line, JSON_ALLOW_NUL, &je);
        if (!j) continue;
        lines++;
        const char *text = json_string_value(json_object_get(j, "text"));
        size_t tn = json_string_length(json_object_get(j, "text"));
        int32_t *ids;
        size_t n;
        kiln_err err = {0};
        CHECK(kiln_encode(t, text, tn, false, &ids, &n, &err) == 0, "%s", err.msg);
        bool ok = ids_equal(json_object_get(j, "ids"), ids, n);
        CHECK(ok, "%s ids mismatch for %s", name, json_dumps(json_object_get(j, "text"), JSON_ENCODE_ANY | JSON_ENSURE_ASCII));
        if (!ok) dump_ids("got", ids, n);
        free(ids);
        CHECK(kiln_encode(t, text, tn, true, &ids, &n, &err) == 0, "%s", err.msg);
        CHECK(ids_equal(json_object_get(j, "ids_with_special"), ids, n), "%s ids_with_special mismatch for line %d", name, lines);
        free(ids);
        kiln_encode(t, text, tn, false, &ids, &n, &err);
        size_t dn;
        char *dec = kiln_decode(t, ids, n, false, &dn);
        json_t *want = json_object_get(j, "decoded");
        bool dok = json_string_length(want) == dn && !memcmp(json_string_value(want), dec, dn);
        CHECK(dok, "%s decode mismatch line %d: got \"%s\" want \"%s\"", name, lines, dec, json_string_value(want));
        free(dec), free(ids);
        json_decref(j);
    }
    CHECK(lines >= 10, "%s: only %d golden lines", name, lines);
    free(line), free(file), free(p);
    if (f) fclose(f);
    kiln_tokenizer_free(t);
}

/* Chat goldens: encode(rendered, add_special=false) == ids. */
static void golden_chat(const char *name) {
    kiln_tokenizer *t = open_tok(name);
    REQUIRE(t, "tokenizer %s did not open", name);
    char *p = path2("golden/tokenizers/", name);
    char *file = malloc(strlen(p) + 32);
    sprintf(file, "%s.chat.jsonl", p);
    FILE *f = fopen(file, "r");
    CHECK(f, "missing fixture %s", file);
    char *line = NULL;
    size_t cap = 0;
    int lines = 0;
    while (f && getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, JSON_ALLOW_NUL, NULL);
        json_t *r = json_object_get(j, "rendered");
        if (!json_is_string(r)) { json_decref(j); continue; }
        lines++;
        int32_t *ids;
        size_t n;
        kiln_err err = {0};
        kiln_encode(t, json_string_value(r), json_string_length(r), false, &ids, &n, &err);
        bool ok = ids_equal(json_object_get(j, "ids"), ids, n);
        CHECK(ok, "%s chat line %d ids mismatch", name, lines);
        if (!ok) dump_ids("got", ids, n);
        free(ids);
        json_decref(j);
    }
    CHECK(lines >= 1, "%s: no chat lines", name);
    free(line), free(file), free(p);
    if (f) fclose(f);
    kiln_tokenizer_free(t);
}

TEST(golden_llama3) { golden_tokens("llama3"); }
TEST(golden_qwen3) { golden_tokens("qwen3"); }
TEST(golden_llama2) { golden_tokens("llama2"); }
TEST(golden_stories260K) { golden_tokens("stories260K"); }
TEST(golden_chat_llama3) { golden_chat("llama3"); }
TEST(golden_chat_qwen3) { golden_chat("qwen3"); }

int main(void) {
    RUN(golden_llama3);
    RUN(golden_qwen3);
    RUN(golden_llama2);
    RUN(golden_stories260K);
    RUN(golden_chat_llama3);
    RUN(golden_chat_qwen3);
    return check_done();
}
