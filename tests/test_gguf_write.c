/* test_gguf_write.c — kiln_gguf_write (`kiln quantize`): the GGUF it writes is the model it came from.
 *   f32: kiln on the file computes the safetensors checkpoint's logits (1e-5) and greedy tokens;
 *   q8_0 / q4_k_m: the logits of the checkpoint loaded with --quant of that type (the same bytes);
 *   the tokenizer read back from the file encodes every golden tokenizer line as the goldens
 *   (transformers) say, specials included;
 *   a file that cannot be written is a one-line error that leaves nothing behind.
 * For tiny-llama3 (Llama 3 rope scaling: rope_freqs; permuted q/k; untied), tiny-qwen3 (qk-norm, tied)
 * and stories260K (SentencePiece-style tokenizer; rows of 172 that no K-quant fits). */
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "kiln.h"
#include "model/gguf.h"

static char tmp[] = "/tmp/kiln_gguf_write_XXXXXX";
#define PATH_LEN 4200 /* tmp + a name */

static const struct {
    const char *model, *golden;
} MODELS[] = {{"tiny-llama3", "llama3"}, {"tiny-qwen3", "qwen3"}, {"stories260K", "stories260K"}};

static const int32_t PROMPT[] = {1, 359, 439, 423, 262, 425, 276, 364, 439, 276, 410, 325, 428, 415, 413, 432};
#define N_PROMPT ((int)(sizeof PROMPT / sizeof *PROMPT))

static kiln_model *open_model(const char *path, int quant, int dtype) {
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.quant = quant, mo.dtype = dtype, mo.threads = 2, mo.quiet = true;
    kiln_err err;
    kiln_model *m = kiln_model_open(path, &mo, &err);
    CHECK(m, "%s: %s", path, err.msg);
    return m;
}

/* Logits at every prompt position (malloc'd, N_PROMPT x V). */
static float *logits(kiln_model *m, int *V) {
    *V = kiln_model_config(m)->vocab_size;
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.n_ctx = 64;
    kiln_err err;
    kiln_ctx *c = kiln_ctx_new(m, &co, &err);
    float *out = malloc(sizeof(float) * (size_t)N_PROMPT * *V);
    int seq = c ? kiln_seq_new(c, &err) : -1, nt = N_PROMPT;
    kiln_batch b = {1, &seq, &nt, PROMPT, true, out};
    int rc = c && out ? kiln_forward(c, &b, &err) : -1;
    CHECK(rc == 0, "forward: %s", err.msg);
    kiln_ctx_free(c);
    if (rc) free(out), out = NULL;
    return out;
}

static void greedy(kiln_model *m, int32_t *ids, size_t n) {
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    p.max_new_tokens = (int)n;
    p.think_end_id = -2;
    kiln_gen_output out = {0};
    const int32_t *prompt = PROMPT;
    size_t np = N_PROMPT;
    kiln_err err;
    CHECK(kiln_generate(m, NULL, &p, 1, &prompt, &np, NULL, NULL, &out, &err) == 0 && out.n_ids == n, "generate: %s",
          err.msg);
    for (size_t i = 0; i < n; i++) ids[i] = i < out.n_ids ? out.ids[i] : -1;
    kiln_gen_output_free(&out);
}

static char *model_dir(const char *model) {
    char rel[128];
    snprintf(rel, sizeof rel, "models/%s", model);
    return strdup(shared_path(rel));
}

static int write_as(const char *dir, const char *out, int quant, int dtype, kiln_err *err) {
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.quant = quant, mo.dtype = dtype, mo.threads = 2, mo.quiet = true;
    return kiln_gguf_write(dir, out, &mo, err);
}

/* The GGUF written with (quant, dtype) computes what the checkpoint loaded with (quant, dtype) does. */
static void same_model(const char *model, int quant, int dtype, double tol, bool tokens) {
    char *dir = model_dir(model), out[4096];
    REQUIRE(path_exists(dir), "fixture %s missing", dir);
    snprintf(out, sizeof out, "%s/%s.%s.gguf", tmp, model, quant >= 0 ? kiln_quant_name(quant) : kiln_dtype_name((kiln_dtype)dtype));
    kiln_err err;
    REQUIRE(write_as(dir, out, quant, dtype, &err) == 0, "%s: %s", model, err.msg);
    kiln_model *a = open_model(dir, quant, dtype), *b = open_model(out, -1, -1);
    int Va = 0, Vb = 0;
    float *la = a ? logits(a, &Va) : NULL, *lb = b ? logits(b, &Vb) : NULL;
    if (la && lb && Va == Vb) {
        double d = 0;
        for (size_t i = 0; i < (size_t)N_PROMPT * Va; i++) d = fmax(d, fabs((double)la[i] - lb[i]));
        fprintf(stderr, "  %s %s: max |logits(GGUF) - logits(safetensors)| = %.3g\n", model, out + strlen(tmp) + 1, d);
        CHECK(d <= tol, "%s: the GGUF's logits differ by %.3g (> %.0e)", out, d, tol);
    } else CHECK(0, "%s: no logits to compare (vocab %d vs %d)", out, Va, Vb);
    if (tokens && a && b) {
        int32_t ga[16], gb[16];
        greedy(a, ga, 16), greedy(b, gb, 16);
        CHECK(!memcmp(ga, gb, sizeof ga), "%s: greedy tokens differ", out);
    }
    free(la), free(lb);
    kiln_model_free(a), kiln_model_free(b);
    free(dir);
}

TEST(f32_file_is_the_checkpoint) {
    for (size_t i = 0; i < sizeof MODELS / sizeof *MODELS; i++) same_model(MODELS[i].model, -1, KILN_DT_F32, 1e-5, true);
}

TEST(quantised_files_are_the_quantised_load) {
    for (size_t i = 0; i < sizeof MODELS / sizeof *MODELS; i++) {
        same_model(MODELS[i].model, KILN_DT_Q8_0, -1, 1e-5, false);
        same_model(MODELS[i].model, KILN_QUANT_Q4_K_M, -1, 1e-5, false);
    }
}

static bool ids_equal(json_t *want, const int32_t *ids, size_t n) {
    if (json_array_size(want) != n) return false;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(want, i)) != ids[i]) return false;
    return true;
}

/* The f32 files written above carry the tokenizer: every golden line, with and without specials. */
TEST(tokenizer_from_the_file_encodes_the_goldens) {
    for (size_t i = 0; i < sizeof MODELS / sizeof *MODELS; i++) {
        char path[4096], rel[128];
        snprintf(path, sizeof path, "%s/%s.f32.gguf", tmp, MODELS[i].model);
        kiln_err err;
        kiln_tokenizer *t = kiln_tokenizer_open(path, &err);
        CHECK(t, "%s: %s", path, err.msg);
        snprintf(rel, sizeof rel, "golden/tokenizers/%s.tokens.jsonl", MODELS[i].golden);
        FILE *f = fopen(shared_path(rel), "r");
        REQUIRE(f, "golden %s missing", shared_path(rel));
        char line[1 << 16];
        int n = 0, ok = 0;
        while (t && fgets(line, sizeof line, f)) {
            json_t *j = json_loads(line, 0, NULL);
            const char *text = json_string_value(json_object_get(j, "text"));
            size_t len = json_string_length(json_object_get(j, "text"));
            int32_t *a = NULL, *b = NULL;
            size_t na = 0, nb = 0;
            bool good = text && !kiln_encode(t, text, len, false, &a, &na, &err) &&
                        !kiln_encode(t, text, len, true, &b, &nb, &err) && ids_equal(json_object_get(j, "ids"), a, na) &&
                        ids_equal(json_object_get(j, "ids_with_special"), b, nb);
            n++, ok += good;
            if (!good) fprintf(stderr, "  %s line %d differs: %s", MODELS[i].golden, n, line);
            free(a), free(b);
            json_decref(j);
        }
        fclose(f);
        fprintf(stderr, "  %s: %d/%d golden lines\n", MODELS[i].golden, ok, n);
        CHECK(n > 0 && ok == n, "%s: %d of %d golden lines encode as the goldens say", MODELS[i].golden, ok, n);
        kiln_tokenizer_free(t);
    }
}

/* Whether key has the same type and value in both files (absent from both counts as the same). */
static bool same_kv(const gguf_file *a, const gguf_file *b, const char *key) {
    const gguf_kv *x = gguf_find_kv(a, key), *y = gguf_find_kv(b, key);
    if (!x || !y) return !x && !y;
    if (x->type != y->type) return false;
    if (x->type == GGUF_STRING) return x->str_len == y->str_len && !memcmp(x->val, y->val, x->str_len);
    if (x->type != GGUF_ARRAY) return !memcmp(x->val, y->val, gguf_vtype_size(x->type));
    if (x->arr_type != y->arr_type || x->arr_n != y->arr_n) return false;
    if (x->arr_type != GGUF_STRING) return !memcmp(gguf_arr_data(x), gguf_arr_data(y), x->arr_n * gguf_vtype_size(x->arr_type));
    for (uint64_t i = 0; i < x->arr_n; i++) {
        size_t la, lb;
        const char *sa = gguf_arr_str(x, i, &la), *sb = gguf_arr_str(y, i, &lb);
        if (la != lb || memcmp(sa, sb, la)) return false;
    }
    return true;
}

/* The tokenizer keys are what llama.cpp's converter writes for the same checkpoint: its --vocab-only
 * files in ../shared/gguf/tokenizers (stories260K's made with ../shared/gguf/hfshim; the converter also
 * writes add_sep_token, which llama.cpp reads for BERT-style models only). */
TEST(tokenizer_keys_are_the_converters) {
    static const char *const KEYS[] = {
        "tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges", "tokenizer.ggml.scores", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.add_bos_token",
        "tokenizer.chat_template"};
    for (size_t i = 0; i < sizeof MODELS / sizeof *MODELS; i++) {
        char ours[PATH_LEN], rel[128];
        snprintf(ours, sizeof ours, "%s/%s.f32.gguf", tmp, MODELS[i].model);
        snprintf(rel, sizeof rel, "gguf/tokenizers/%s.vocab.gguf", MODELS[i].model);
        gguf_file a, b;
        kiln_err err;
        REQUIRE(gguf_open(&a, ours, &err) == 0, "%s", err.msg);
        if (gguf_open(&b, shared_path(rel), &err)) {
            CHECK(0, "%s", err.msg);
            gguf_close(&a);
            continue;
        }
        for (size_t k = 0; k < sizeof KEYS / sizeof *KEYS; k++)
            CHECK(same_kv(&a, &b, KEYS[k]), "%s: %s differs from the converter's", MODELS[i].model, KEYS[k]);
        gguf_close(&a), gguf_close(&b);
    }
}

/* Whether dir holds an entry whose name starts with prefix. */
static bool has_entry(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    bool found = false;
    struct dirent *e;
    while (d && (e = readdir(d))) found |= !strncmp(e->d_name, prefix, strlen(prefix));
    if (d) closedir(d);
    return found;
}

TEST(unwritable_targets_are_one_line_errors_leaving_nothing) {
    char *dir = model_dir("stories260K"), out[PATH_LEN];
    kiln_err err;
    snprintf(out, sizeof out, "%s/no/such/dir/x.gguf", tmp);
    CHECK(write_as(dir, out, KILN_DT_Q8_0, -1, &err) != 0 && err.msg[0] && !strchr(err.msg, '\n') && strstr(err.msg, out),
          "missing directory: '%s'", err.msg);
    /* a file where a directory should be (ENOTDIR whoever runs the test, root included) */
    char file[1024];
    snprintf(file, sizeof file, "%s/afile", tmp);
    write_test_file(tmp, "afile", "x");
    snprintf(out, sizeof out, "%s/x.gguf", file);
    CHECK(write_as(dir, out, KILN_DT_Q8_0, -1, &err) != 0 && !strchr(err.msg, '\n') && strstr(err.msg, out),
          "path under a file: '%s'", err.msg);
    /* a failure after the temporary file exists (the tokenizer is checked after the tensors are planned,
     * the write fails on a path that is a directory): the temporary file goes again */
    snprintf(out, sizeof out, "%s/adir", tmp);
    REQUIRE(mkdir(out, 0755) == 0, "mkdir %s", out);
    CHECK(write_as(dir, out, KILN_DT_Q8_0, -1, &err) != 0 && !strchr(err.msg, '\n') && !has_entry(tmp, "adir.tmp"),
          "target is a directory: '%s'", err.msg);
    rmdir(out), unlink(file);
    free(dir);
}

static void clean_tmp(void) {
    DIR *d = opendir(tmp);
    struct dirent *e;
    char p[4096];
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') snprintf(p, sizeof p, "%s/%s", tmp, e->d_name), unlink(p);
    if (d) closedir(d);
    rmdir(tmp);
}

int main(void) {
    if (!mkdtemp(tmp)) return fprintf(stderr, "mkdtemp failed\n"), 1;
    RUN(f32_file_is_the_checkpoint);
    RUN(quantised_files_are_the_quantised_load);
    RUN(tokenizer_from_the_file_encodes_the_goldens);
    RUN(tokenizer_keys_are_the_converters);
    RUN(unwritable_targets_are_one_line_errors_leaving_nothing);
    clean_tmp();
    return check_done();
}
