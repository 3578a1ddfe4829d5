/* test_weight_cache.c — --quant-cache: the converted weights written once, mapped on later loads (same
 * logits bit for bit as converting afresh), and a stale or corrupt cache rejected with one warning and
 * rebuilt. Works on a private copy of stories260K (1 MB; it mixes Q8_0 matrices with an f32 one whose
 * rows are not whole 32-blocks). Also: the --dtype q8_0 alias equals --quant q8_0. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "kiln.h"

static char dir[64];
static int warnings;
static char last_warning[512];

static void on_warn(void *ud, const char *msg) {
    (void)ud;
    warnings++;
    snprintf(last_warning, sizeof last_warning, "%s", msg);
}

static int copy_file(const char *name) {
    char src[4096], dst[256];
    snprintf(src, sizeof src, "%s/%s", shared_path("models/stories260K"), name);
    snprintf(dst, sizeof dst, "%s/%s", dir, name);
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    char buf[65536];
    size_t n;
    int ok = in && out;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    if (in) fclose(in);
    if (out && fclose(out)) ok = 0;
    return ok;
}

/* Logits of a short prompt (every position) under (quant, dtype, cache); NULL on failure. */
static float *logits_of(int quant, int dtype, bool cache, bool *reused, size_t *n_out) {
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.quant = quant, mo.dtype = dtype, mo.weight_cache = cache, mo.threads = 2, mo.warn = on_warn;
    kiln_err err;
    kiln_model *m = kiln_model_open(dir, &mo, &err);
    CHECK(m, "open: %s", err.msg);
    if (!m) return NULL;
    const char *path = kiln_model_weight_cache(m, reused);
    CHECK(!cache || (path && path_exists(path)), "cache file %s missing", path ? path : "(none)");
    int32_t ids[] = {1, 403, 261, 30, 7, 99};
    int nt = 6, V = kiln_model_config(m)->vocab_size;
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.n_ctx = 16;
    kiln_ctx *c = kiln_ctx_new(m, &co, &err);
    float *out = malloc(sizeof(float) * (size_t)nt * V);
    int seq = c ? kiln_seq_new(c, &err) : -1;
    kiln_batch b = {1, &seq, &nt, ids, true, out};
    int rc = c ? kiln_forward(c, &b, &err) : -1;
    CHECK(rc == 0, "forward: %s", err.msg);
    kiln_ctx_free(c);
    kiln_model_free(m);
    *n_out = (size_t)nt * V;
    if (rc) free(out), out = NULL;
    return out;
}

static void cache_file(char *buf, size_t n, const char *tag) { snprintf(buf, n, "%s/model.%s.kiln", dir, tag); }

TEST(cache_written_then_reused_bit_exact) {
    size_t n;
    bool reused = true;
    float *fresh = logits_of(KILN_DT_Q8_0, -1, false, &reused, &n);
    warnings = 0;
    float *first = logits_of(KILN_DT_Q8_0, -1, true, &reused, &n);
    CHECK(!reused, "first load claims to have reused a cache");
    float *second = logits_of(KILN_DT_Q8_0, -1, true, &reused, &n);
    CHECK(reused, "second load did not reuse the cache");
    CHECK(warnings == 0, "unexpected warning: %s", last_warning);
    REQUIRE(fresh && first && second, "forward failed");
    CHECK(memcmp(fresh, first, n * sizeof(float)) == 0, "cache-building load differs from a plain conversion");
    CHECK(memcmp(fresh, second, n * sizeof(float)) == 0, "logits from the mapped cache differ");
    /* --dtype q8_0 is the older spelling of --quant q8_0: same weights, same cache file. */
    float *alias = logits_of(-1, KILN_DT_Q8_0, true, &reused, &n);
    CHECK(alias && reused && memcmp(fresh, alias, n * sizeof(float)) == 0, "--dtype q8_0 alias differs");
    free(fresh), free(first), free(second), free(alias);
}

TEST(formats_get_their_own_cache_file) {
    size_t n;
    bool reused;
    float *q4 = logits_of(KILN_DT_Q4_0, KILN_DT_BF16, true, &reused, &n);
    char p[128];
    cache_file(p, sizeof p, "q4_0-bf16");
    CHECK(path_exists(p), "%s not written", p);
    float *q4b = logits_of(KILN_DT_Q4_0, KILN_DT_BF16, true, &reused, &n);
    CHECK(reused && q4 && q4b && memcmp(q4, q4b, n * sizeof(float)) == 0, "q4_0-bf16 cache not reused bit-exact");
    float *q8 = logits_of(KILN_DT_Q8_0, -1, false, &reused, &n);
    CHECK(q8 && q4 && memcmp(q8, q4, n * sizeof(float)) != 0, "q4_0 and q8_0 give identical logits");
    free(q4), free(q4b), free(q8);
}

/* --quant q4_k_m with --quant-cache: its own file, reused bit-exact (the mix's Q6_K / Q5_0 / Q8_0 rows
 * included: this model's rows are not 256-wide, so every matrix takes a fallback). */
TEST(k_quant_mix_is_cached) {
    size_t n;
    bool reused;
    float *fresh = logits_of(KILN_QUANT_Q4_K_M, -1, false, &reused, &n);
    float *first = logits_of(KILN_QUANT_Q4_K_M, -1, true, &reused, &n);
    char p[128];
    cache_file(p, sizeof p, "q4_k_m");
    CHECK(path_exists(p) && !reused, "%s not written", p);
    float *second = logits_of(KILN_QUANT_Q4_K_M, -1, true, &reused, &n);
    CHECK(reused && fresh && first && second && !memcmp(fresh, first, n * sizeof(float)) &&
              !memcmp(fresh, second, n * sizeof(float)),
          "q4_k_m cache not reused bit-exact");
    free(fresh), free(first), free(second);
}

static void damage(const char *path, long off) {
    int fd = open(path, O_WRONLY);
    unsigned char x = 0xA5;
    CHECK(fd >= 0 && pwrite(fd, &x, 1, off) == 1, "cannot damage %s", path);
    if (fd >= 0) close(fd);
}

/* A damaged or stale cache: exactly one warning naming the reason, correct logits, and a good cache after. */
static void expect_rebuild(const char *why, const float *want, size_t n) {
    bool reused = true;
    warnings = 0;
    last_warning[0] = 0;
    float *got = logits_of(KILN_DT_Q8_0, -1, true, &reused, &n);
    CHECK(!reused, "%s cache was used", why);
    CHECK(warnings == 1 && strstr(last_warning, why), "want one warning mentioning '%s', got %d: %s", why, warnings,
          last_warning);
    CHECK(got && memcmp(got, want, n * sizeof(float)) == 0, "logits after rejecting a %s cache differ", why);
    free(got);
    warnings = 0;
    got = logits_of(KILN_DT_Q8_0, -1, true, &reused, &n);
    CHECK(reused && warnings == 0, "rebuilt cache not reused cleanly (%s)", last_warning);
    free(got);
}

TEST(corrupt_or_stale_cache_is_rebuilt) {
    size_t n;
    bool reused;
    float *want = logits_of(KILN_DT_Q8_0, -1, false, &reused, &n);
    REQUIRE(want, "no reference logits");
    char p[128];
    cache_file(p, sizeof p, "q8_0");
    struct stat st;
    REQUIRE(stat(p, &st) == 0, "no cache at %s", p);
    damage(p, (long)st.st_size - 100); /* inside the matrix data */
    expect_rebuild("corrupt", want, n);
    damage(p, 0); /* the magic */
    expect_rebuild("not a kiln weight cache", want, n);
    CHECK(truncate(p, st.st_size / 2) == 0, "truncate");
    expect_rebuild("truncated", want, n);
    /* The model changed under the cache (newer mtime): stale. */
    char model[128];
    snprintf(model, sizeof model, "%s/model.safetensors", dir);
    struct timespec later[2] = {{0, UTIME_OMIT}, {st.st_mtim.tv_sec + 10, 0}};
    CHECK(utimensat(AT_FDCWD, model, later, 0) == 0, "utimensat");
    expect_rebuild("stale", want, n);
    free(want);
}

int main(void) {
    snprintf(dir, sizeof dir, "/tmp/kiln-wcache-XXXXXX");
    if (!mkdtemp(dir) || !copy_file("config.json") || !copy_file("model.safetensors")) {
        printf("FAIL setup: cannot copy stories260K (from %s) into %s\n", shared_path("models/stories260K"), dir);
        return 1;
    }
    RUN(cache_written_then_reused_bit_exact);
    RUN(formats_get_their_own_cache_file);
    RUN(k_quant_mix_is_cached);
    RUN(corrupt_or_stale_cache_is_rebuilt);
    const char *files[] = {"config.json", "model.safetensors", "model.q8_0.kiln", "model.q4_0-bf16.kiln"};
    char p[128];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) snprintf(p, sizeof p, "%s/%s", dir, files[i]), unlink(p);
    rmdir(dir);
    return check_done();
}
