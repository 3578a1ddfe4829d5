/* test_gguf.c — the GGUF container parser and the GGUF model loader.
 *
 * The container against llama.cpp's own files in $SHARED/gguf (every key and tensor where the README says),
 * and against generated truncations and byte flips of a small GGUF this test writes (each a one-line error,
 * never a crash; this binary also runs under ASan/UBSan). */
#include <fcntl.h>
#include <jansson.h>
#include <math.h>

#include "check.h"
#include "common/strbuf.h"
#include "kernels/format.h"
#include "kernels/kernels.h"
#include "kiln.h"
#include "model/gguf.h"
#include "model/shards.h"
#include "model/tensors.h"

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


/* ---- the model loader against llama.cpp's logits ---- */

static json_t *golden(const char *fmt) {
    char rel[256];
    snprintf(rel, sizeof rel, KQ512 "%s.golden.json", fmt);
    json_error_t je;
    return json_load_file(shared_path(rel), 0, &je);
}

static float *read_logits(const char *fmt, size_t n) {
    char rel[256];
    snprintf(rel, sizeof rel, KQ512 "%s.logits.f32", fmt);
    FILE *f = fopen(shared_path(rel), "rb");
    float *v = f ? malloc(n * sizeof *v) : NULL;
    if (v && fread(v, sizeof *v, n, f) != n) free(v), v = NULL;
    if (f) fclose(f);
    return v;
}

static kiln_model *open_gguf(const char *fmt, kiln_err *err) {
    char rel[256];
    snprintf(rel, sizeof rel, KQ512 "%s.gguf", fmt);
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.threads = 1;
    return kiln_model_open(shared_path(rel), &mo, err);
}

/* Prefills case cs's prompt (logits at every position into *all, n x V), then greedy-decodes steps tokens;
 * returns how many of the golden greedy_ids it reproduced in a row. */
static int run_case(kiln_model *m, json_t *cs, float **all, int *n_out, int steps) {
    const int V = kiln_model_config(m)->vocab_size;
    json_t *pid = json_object_get(cs, "prompt_ids"), *g = json_object_get(cs, "greedy_ids");
    int n = (int)json_array_size(pid);
    int32_t *ids = malloc((size_t)n * sizeof *ids);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(pid, (size_t)i));
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.n_ctx = n + steps + 1;
    co.kv_type = KILN_DT_F32; /* llama.cpp's goldens ran with an f32 KV cache */
    kiln_err err = {{0}};
    kiln_ctx *c = kiln_ctx_new(m, &co, &err);
    *all = malloc((size_t)n * V * sizeof(float));
    *n_out = n;
    int seq = c ? kiln_seq_new(c, &err) : -1, nt = n, match = 0;
    kiln_batch b = {1, &seq, &nt, ids, true, *all};
    int rc = c ? kiln_forward(c, &b, &err) : -1;
    CHECK(rc == 0, "forward: %s", err.msg);
    float *last = malloc((size_t)V * sizeof *last);
    if (rc == 0) memcpy(last, *all + (size_t)(n - 1) * V, (size_t)V * sizeof *last);
    for (int s = 0; rc == 0 && s < steps; s++) {
        int32_t tok = 0; /* the argmax */
        for (int i = 1; i < V; i++) tok = last[i] > last[tok] ? i : tok;
        if (tok != json_integer_value(json_array_get(g, (size_t)s))) break;
        match++, nt = 1;
        kiln_batch d = {1, &seq, &nt, &tok, false, last};
        rc = kiln_forward(c, &d, &err);
    }
    free(last), free(ids);
    kiln_ctx_free(c);
    return match;
}

/* KL(p || q) of two logit rows, softmax in double. */
static double kl_rows(const float *p, const float *q, int V) {
    double mp = -INFINITY, mq = -INFINITY, sp = 0, sq = 0, kl = 0;
    for (int i = 0; i < V; i++) mp = fmax(mp, p[i]), mq = fmax(mq, q[i]);
    for (int i = 0; i < V; i++) sp += exp(p[i] - mp), sq += exp(q[i] - mq);
    for (int i = 0; i < V; i++) {
        double lp = p[i] - mp - log(sp), lq = q[i] - mq - log(sq);
        kl += exp(lp) * (lp - lq);
    }
    return kl;
}

/* The largest difference between the logits at the golden's top-20 ids and its values, over positions. */
static double topk_diff(json_t *cs, const float *all, int n, int V) {
    json_t *tids = json_object_get(cs, "topk_ids"), *tl = json_object_get(cs, "topk_logits");
    double md = 0;
    for (int p = 0; p < n; p++)
        for (int k = 0; k < 20; k++) {
            int id = (int)json_integer_value(json_array_get(json_array_get(tids, (size_t)p), (size_t)k));
            double ref = json_number_value(json_array_get(json_array_get(tl, (size_t)p), (size_t)k));
            md = fmax(md, fabs(all[(size_t)p * V + id] - ref));
        }
    return md;
}

/* One format's file against llama.cpp's numbers for it. Every prompt: greedy identical for every step
 * the golden calls safe. F32: logits within 1e-3 of the top-20 at every position and of the full logits
 * file. Quantised: mean KL(llama.cpp || kiln) over medium_20 within the golden's bound. */
static void check_format(const char *fmt) {
    const bool f32 = strcmp(fmt, "F32") == 0;
    kiln_err err = {{0}};
    kiln_model *m = open_gguf(fmt, &err);
    REQUIRE(m, "%s: %s", fmt, err.msg);
    json_t *gj = golden(fmt);
    REQUIRE(gj, "cannot read the %s golden", fmt);
    const int V = kiln_model_config(m)->vocab_size;
    CHECK(V == 512 && kiln_model_config(m)->tie_word_embeddings, "vocab %d, tied", V);
    const double bound = json_number_value(json_object_get(json_object_get(gj, "kl"), "test_bound_kl_llamacpp_to_engine"));
    json_t *cases = json_object_get(gj, "cases");
    for (size_t ci = 0; ci < json_array_size(cases); ci++) {
        json_t *cs = json_array_get(cases, ci);
        const char *name = json_string_value(json_object_get(cs, "name"));
        int safe = (int)json_integer_value(json_object_get(cs, "greedy_safe_steps")), n;
        float *all;
        int match = run_case(m, cs, &all, &n, safe);
        CHECK(match == safe, "%s %s: greedy %d of %d safe steps", fmt, name, match, safe);
        if (f32) CHECK(topk_diff(cs, all, n, V) <= 1e-3, "%s: top-20 logits max diff %g", name, topk_diff(cs, all, n, V));
        float *ref = json_is_string(json_object_get(cs, "full_logits_file")) ? read_logits(fmt, (size_t)n * V) : NULL;
        CHECK(ref || !json_is_string(json_object_get(cs, "full_logits_file")), "cannot read the %s logits file", fmt);
        double fd = 0, kl = 0;
        for (size_t i = 0; f32 && ref && i < (size_t)n * V; i++) fd = fmax(fd, fabs(all[i] - ref[i]));
        for (int p = 0; !f32 && ref && p < n; p++) kl += kl_rows(ref + (size_t)p * V, all + (size_t)p * V, V) / n;
        if (ref && !f32) printf("  %s: mean KL(llama.cpp || kiln) %.6f, bound %.6f\n", fmt, kl, bound);
        CHECK(fd <= 1e-3 && kl <= bound, "%s %s: full logits max diff %g, mean KL %g (bound %g)", fmt, name, fd, kl, bound);
        free(ref), free(all);
    }
    json_decref(gj);
    kiln_model_free(m);
}

TEST(f32_matches_llamacpp) { check_format("F32"); }
/* BOS / EOS come from tokenizer.ggml.* (the stories260K tokenizer: 1 and 2), for the config and the
 * generation parameters. */
TEST(special_ids_from_metadata) {
    kiln_config c;
    kiln_err err = {{0}};
    REQUIRE(kiln_config_load(shared_path(KQ512 "F32.gguf"), &c, &err) == 0, "%s", err.msg);
    CHECK(c.bos_token_id == 1 && c.n_eos_token_ids == 1 && c.eos_token_ids[0] == 2, "bos %d, eos %d x%d",
          c.bos_token_id, c.eos_token_ids[0], c.n_eos_token_ids);
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    CHECK(kiln_gen_params_load(&p, shared_path(KQ512 "F32.gguf"), &err) == 0 && p.n_eos == 1 && p.eos_ids[0] == 2,
          "gen params: %s", err.msg);
}

TEST(q8_0_matches_llamacpp) { check_format("Q8_0"); }

/* Every llama-quantize type of the kq-llama-512 set (the _M mixes hold Q6_K / Q5_K / Q4_K / Q3_K tensors
 * side by side) against llama.cpp's own logits: KL within the golden's bound, safe greedy steps equal. */
TEST(every_quantised_type_matches_llamacpp) {
    static const char *const fmts[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K_M",
                                       "Q4_K_M", "Q5_K_M", "Q6_K", "IQ4_NL", "IQ4_XS"};
    for (size_t i = 0; i < sizeof fmts / sizeof *fmts; i++) check_format(fmts[i]);
}

/* ---- a GGUF writer (for files llama.cpp's tools did not ship: split F32 parts, a Q4_0 file, hostile
 * variants) ---- */

typedef struct wtensor {
    const char *name;
    int type, n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;
    size_t nbytes;
} wtensor;

static void put_u32(strbuf *b, uint32_t v) { strbuf_put(b, &v, 4); }
static void put_u64(strbuf *b, uint64_t v) { strbuf_put(b, &v, 8); }
static void put_str(strbuf *b, const char *s, size_t n) { put_u64(b, n), strbuf_put(b, s, n); }
static void pad_to(strbuf *b, size_t align) {
    while (b->len % align) strbuf_putc(b, 0);
}

/* A key copied from a parsed file, byte for byte. */
static void put_kv(strbuf *b, const gguf_kv *kv) {
    put_str(b, kv->key, strlen(kv->key));
    put_u32(b, kv->type);
    if (kv->type == GGUF_STRING) put_str(b, (const char *)kv->val, kv->str_len);
    else if (kv->type != GGUF_ARRAY) strbuf_put(b, kv->val, gguf_vtype_size(kv->type));
    else {
        put_u32(b, kv->arr_type), put_u64(b, kv->arr_n);
        size_t n = kv->arr_type == GGUF_STRING ? (size_t)(kv->arr_str[kv->arr_n] - kv->arr_str[0])
                                               : kv->arr_n * gguf_vtype_size(kv->arr_type);
        strbuf_put(b, kv->arr_type == GGUF_STRING ? (const void *)kv->arr_str[0] : kv->val, n);
    }
}

static void put_kv_u32(strbuf *b, const char *key, uint32_t v) {
    put_str(b, key, strlen(key)), put_u32(b, GGUF_UINT32), put_u32(b, v);
}

/* Writes path: meta's keys (if any), then split keys (split_count > 0), then n_extra keys already
 * serialised in extra, then the tensors. */
static bool write_gguf_kv(const char *path, const gguf_file *meta, int split_no, int split_count, const strbuf *extra,
                          int n_extra, const wtensor *t, int nt) {
    strbuf b = {0};
    strbuf_put(&b, "GGUF", 4);
    put_u32(&b, 3), put_u64(&b, (uint64_t)nt);
    put_u64(&b, (uint64_t)(meta ? meta->n_kv : 0) + (split_count ? 2 : 0) + (uint64_t)n_extra);
    for (int i = 0; meta && i < meta->n_kv; i++) put_kv(&b, &meta->kvs[i]);
    if (split_count) put_kv_u32(&b, "split.no", (uint32_t)split_no), put_kv_u32(&b, "split.count", (uint32_t)split_count);
    if (n_extra) strbuf_put(&b, extra->p, extra->len);
    size_t off = 0;
    for (int i = 0; i < nt; i++) {
        put_str(&b, t[i].name, strlen(t[i].name));
        put_u32(&b, (uint32_t)t[i].n_dims);
        for (int d = 0; d < t[i].n_dims; d++) put_u64(&b, (uint64_t)t[i].ne[d]);
        put_u32(&b, (uint32_t)t[i].type), put_u64(&b, off);
        off += (t[i].nbytes + 31) / 32 * 32;
    }
    pad_to(&b, 32);
    for (int i = 0; i < nt; i++) strbuf_put(&b, t[i].data, t[i].nbytes), pad_to(&b, 32);
    FILE *f = fopen(path, "wb");
    bool ok = f && b.len && fwrite(b.p, 1, b.len, f) == b.len;
    if (f) ok &= fclose(f) == 0;
    strbuf_free(&b);
    return ok;
}

static bool write_gguf(const char *path, const gguf_file *meta, int split_no, int split_count, const wtensor *t,
                       int nt) {
    return write_gguf_kv(path, meta, split_no, split_count, NULL, 0, t, nt);
}

static wtensor as_w(const gguf_tensor *x) {
    wtensor w = {x->name, x->type, x->n_dims, {1, 1, 1, 1}, x->data, x->nbytes};
    memcpy(w.ne, x->ne, sizeof w.ne);
    return w;
}

/* The F32 file opened, its tensors as they are in t (room for 32). */
static bool f32_tensors(gguf_file *g, wtensor *t) {
    kiln_err err = {{0}};
    if (gguf_open(g, shared_path(KQ512 "F32.gguf"), &err)) return fprintf(stderr, "  %s\n", err.msg), false;
    for (int i = 0; i < g->n_tensors && i < 32; i++) t[i] = as_w(&g->tensors[i]);
    return g->n_tensors < 32;
}

static char tmpdir[] = "/tmp/kiln_test_gguf_XXXXXX";

static const char *tmp_path(const char *name) {
    static char buf[2][512];
    static int k;
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

/* Every position's logits of medium_20 (case 1) from the model at path (opts: quant or -1). */
static float *medium_logits(const char *path, int quant, int *V) {
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.threads = 1;
    mo.quant = quant;
    kiln_err err = {{0}};
    kiln_model *m = kiln_model_open(path, &mo, &err);
    CHECK(m, "%s", err.msg);
    json_t *gj = golden("F32");
    float *all = NULL;
    int n;
    if (m && gj) {
        *V = kiln_model_config(m)->vocab_size;
        run_case(m, json_array_get(json_object_get(gj, "cases"), 1), &all, &n, 0);
    }
    json_decref(gj);
    kiln_model_free(m);
    return all;
}

static double max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; a && b && i < n; i++) d = fmax(d, fabs(a[i] - b[i]));
    return a && b ? d : INFINITY;
}

/* The F32 file cut into 3 parts (8 + 8 + 4 tensors, metadata in the first, as llama-gguf-split does):
 * naming any part, or the directory holding them, gives exactly the unsplit file's logits. */
TEST(split_parts_open_as_one) {
    gguf_file g;
    kiln_err err = {{0}};
    REQUIRE(gguf_open(&g, shared_path(KQ512 "F32.gguf"), &err) == 0, "%s", err.msg);
    REQUIRE(mkdir(tmp_path("split"), 0755) == 0, "mkdir");
    const int cut[4] = {0, 8, 16, 20};
    for (int p = 0; p < 3; p++) {
        wtensor t[8];
        for (int i = cut[p]; i < cut[p + 1]; i++) t[i - cut[p]] = as_w(&g.tensors[i]);
        char name[64];
        snprintf(name, sizeof name, "split/m-%05d-of-00003.gguf", p + 1);
        gguf_file meta_only = g;
        meta_only.n_kv = p ? 0 : g.n_kv;
        CHECK(write_gguf(tmp_path(name), &meta_only, p, 3, t, cut[p + 1] - cut[p]), "write %s", name);
    }
    gguf_close(&g);
    int V = 0;
    float *whole = medium_logits(shared_path(KQ512 "F32.gguf"), -1, &V);
    const char *names[] = {"split/m-00002-of-00003.gguf", "split/m-00003-of-00003.gguf", "split"};
    for (int i = 0; i < 3; i++) {
        float *part = medium_logits(tmp_path(names[i]), -1, &V);
        CHECK(max_diff(whole, part, (size_t)20 * V) == 0, "%s: logits differ from the unsplit file", names[i]);
        free(part);
    }
    /* a missing part is a one-line error naming it */
    unlink(tmp_path("split/m-00003-of-00003.gguf"));
    kiln_model *m = kiln_model_open(tmp_path("split/m-00001-of-00003.gguf"), NULL, &err);
    CHECK(!m && strstr(err.msg, "m-00003-of-00003.gguf"), "missing part: %s", m ? "opened" : err.msg);
    kiln_model_free(m);
    free(whole);
}

/* llama-gguf-split's Q4_K_M parts: the config of any part is the unsplit file's, and the split directory
 * computes exactly the unsplit file's logits. */
TEST(llamacpp_split_matches_unsplit) {
    kiln_config a, b;
    kiln_err err = {{0}};
    CHECK(kiln_config_load(shared_path(KQ512 "Q4_K_M.gguf"), &a, &err) == 0, "%s", err.msg);
    CHECK(kiln_config_load(shared_path("gguf/kq-llama-512/split/kq-llama-512.Q4_K_M-00003-of-00003.gguf"), &b, &err) == 0,
          "%s", err.msg);
    CHECK(memcmp(&a, &b, sizeof a) == 0, "split config differs");
    int V1 = 0, V2 = 0;
    float *one = medium_logits(shared_path(KQ512 "Q4_K_M.gguf"), -1, &V1);
    float *split = medium_logits(shared_path("gguf/kq-llama-512/split"), -1, &V2);
    CHECK(one && split && V1 == V2 && max_diff(one, split, (size_t)20 * V1) == 0, "split and unsplit logits differ");
    free(one), free(split);
}

/* A Q4_0 GGUF written here from the F32 file (matrices Q4_0 by the reference rounding, llama.cpp's
 * quantize_row_q4_0_ref; token_embd Q8_0) computes exactly what `--quant q4_0` makes of the F32 file:
 * the Q4_0 blocks are repacked as they are and the q/k rows un-permuted as blocks. */
TEST(q4_0_file_equals_load_time_q4_0) {
    gguf_file g;
    wtensor t[32];
    REQUIRE(f32_tensors(&g, t), "the F32 file");
    void *bufs[32] = {0};
    for (int i = 0; i < g.n_tensors; i++) {
        const gguf_tensor *x = &g.tensors[i];
        if (x->n_dims != 2) continue;
        kiln_dtype dt = strcmp(x->name, "token_embd.weight") ? KILN_DT_Q4_0 : KILN_DT_Q8_0;
        size_t rb = kern_row_bytes(dt, (int)x->ne[0]);
        char *q = bufs[i] = malloc(rb * (size_t)x->ne[1]);
        for (int64_t r = 0; r < x->ne[1]; r++)
            kern_formats[dt].from_f32(q + rb * (size_t)r, (const float *)x->data + r * x->ne[0], (int)x->ne[0]);
        t[i].type = kern_formats[dt].gguf_type, t[i].data = q, t[i].nbytes = rb * (size_t)x->ne[1];
    }
    CHECK(write_gguf(tmp_path("q4_0.gguf"), &g, 0, 0, t, g.n_tensors), "write");
    gguf_close(&g);
    for (int i = 0; i < 32; i++) free(bufs[i]);
    int V = 0;
    float *mine = medium_logits(tmp_path("q4_0.gguf"), -1, &V), *ref = medium_logits(shared_path(KQ512 "F32.gguf"), KILN_DT_Q4_0, &V);
    double d = max_diff(mine, ref, (size_t)20 * V);
    CHECK(d <= 1e-6, "Q4_0 file vs --quant q4_0: max diff %g", d);
    free(mine), free(ref);
}

/* Llama 3's RoPE scaling as llama.cpp stores it, a rope_freqs tensor of per-frequency divisors: all 2.0
 * computes exactly what linear scaling by 2 ({arch}.rope.scaling.type/factor) computes, and differs from
 * no scaling. */
TEST(rope_freqs_divide_the_frequencies) {
    gguf_file g;
    wtensor t[32];
    REQUIRE(f32_tensors(&g, t), "the F32 file");
    float twos[32];
    for (int i = 0; i < 32; i++) twos[i] = 2.0f;
    t[g.n_tensors] = (wtensor){"rope_freqs.weight", 0, 1, {32, 1, 1, 1}, twos, sizeof twos};
    CHECK(write_gguf(tmp_path("freqs.gguf"), &g, 0, 0, t, g.n_tensors + 1), "write freqs");
    strbuf kv = {0};
    const char *type_key = "llama.rope.scaling.type", *factor_key = "llama.rope.scaling.factor";
    put_str(&kv, type_key, strlen(type_key)), put_u32(&kv, GGUF_STRING), put_str(&kv, "linear", 6);
    float two = 2.0f;
    put_str(&kv, factor_key, strlen(factor_key)), put_u32(&kv, GGUF_FLOAT32), strbuf_put(&kv, &two, 4);
    CHECK(write_gguf_kv(tmp_path("linear.gguf"), &g, 0, 0, &kv, 2, t, g.n_tensors), "write linear");
    strbuf_free(&kv);
    gguf_close(&g);
    int V = 0;
    float *freqs = medium_logits(tmp_path("freqs.gguf"), -1, &V), *linear = medium_logits(tmp_path("linear.gguf"), -1, &V),
          *plain = medium_logits(shared_path(KQ512 "F32.gguf"), -1, &V);
    CHECK(max_diff(freqs, linear, (size_t)20 * V) == 0, "rope_freqs 2.0 vs linear 2: %g", max_diff(freqs, linear, (size_t)20 * V));
    CHECK(max_diff(freqs, plain, (size_t)20 * V) > 1e-3, "rope_freqs changed nothing");
    free(freqs), free(linear), free(plain);
}

/* ---- checkpoints written by kiln's GGUF writer (kiln_gguf_write, the one GGUF writer in the tree) ---- */

static void put_kv_f32(strbuf *b, const char *key, float v) {
    put_str(b, key, strlen(key)), put_u32(b, GGUF_FLOAT32), strbuf_put(b, &v, 4);
}

static void put_kv_i32(strbuf *b, const char *key, int32_t v) {
    put_str(b, key, strlen(key)), put_u32(b, GGUF_INT32), strbuf_put(b, &v, 4);
}

/* The F32 file rewritten as name with its general.sampling.* keys replaced by kv (n keys serialised). */
static const char *with_sampling(const char *name, const strbuf *kv, int n) {
    gguf_file g;
    wtensor t[32];
    bool ok = f32_tensors(&g, t);
    gguf_kv keep[64];
    gguf_file meta = g;
    meta.kvs = keep, meta.n_kv = 0;
    for (int i = 0; ok && i < g.n_kv && meta.n_kv < 64; i++)
        if (strncmp(g.kvs[i].key, "general.sampling.", 17)) keep[meta.n_kv++] = g.kvs[i];
    ok = ok && write_gguf_kv(tmp_path(name), &meta, 0, 0, kv, n, t, g.n_tensors);
    gguf_close(&g);
    CHECK(ok, "write %s", name);
    return tmp_path(name);
}

/* llama.cpp's generation defaults (general.sampling.*, as its converter writes them from
 * generation_config.json) fill what generation_config.json fills for a safetensors directory; a file
 * temperature > 0 samples. Keys of samplers kiln lacks, bad types and values are one-line errors. */
TEST(sampling_defaults_from_metadata) {
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    kiln_err err = {{0}};
    /* the keys llama.cpp's converter wrote from the checkpoint's generation_config.json (temperature 0.6, top_p 0.9) */
    CHECK(kiln_gen_params_load(&p, shared_path(KQ512 "F32.gguf"), &err) == 0 && p.do_sample &&
              p.temperature == 0.6f && p.top_p == 0.9f && p.top_k == 50,
          "converter's keys: %s sample %d temp %g top_p %g", err.msg, p.do_sample, p.temperature, p.top_p);
    strbuf kv = {0};
    put_kv_f32(&kv, "general.sampling.temp", 0.6f), put_kv_i32(&kv, "general.sampling.top_k", 20);
    put_kv_f32(&kv, "general.sampling.top_p", 0.9f), put_kv_f32(&kv, "general.sampling.min_p", 0.05f);
    put_kv_f32(&kv, "general.sampling.penalty_repeat", 1.1f), put_kv_i32(&kv, "general.sampling.penalty_last_n", -1);
    put_kv_i32(&kv, "general.sampling.mirostat", 0);
    kiln_gen_params_default(&p);
    CHECK(kiln_gen_params_load(&p, with_sampling("sampling.gguf", &kv, 7), &err) == 0, "%s", err.msg);
    CHECK(p.do_sample && p.temperature == 0.6f && p.top_k == 20 && p.top_p == 0.9f && p.min_p == 0.05f &&
              p.repetition_penalty == 1.1f && p.n_eos == 1 && p.eos_ids[0] == 2 && p.max_new_tokens == 20,
          "sample %d temp %g top_k %d top_p %g min_p %g rep %g eos %d", p.do_sample, p.temperature, p.top_k, p.top_p,
          p.min_p, p.repetition_penalty, p.n_eos);
    strbuf_free(&kv);
    put_kv_f32(&kv, "general.sampling.temp", 0); /* temperature 0: greedy, as llama.cpp */
    kiln_gen_params_default(&p), p.do_sample = true;
    CHECK(kiln_gen_params_load(&p, with_sampling("greedy.gguf", &kv, 1), &err) == 0 && !p.do_sample, "temp 0: %s", err.msg);
    strbuf_free(&kv);
    static const struct {
        const char *key, *want;
        bool is_int;
        float v;
    } bad[] = {{"general.sampling.mirostat", "mirostat", true, 2},
               {"general.sampling.xtc_probability", "XTC", false, 0.5f},
               {"general.sampling.top_p", "[0, 1]", false, 1.5f},
               {"general.sampling.top_k", ">= 0", true, -3},
               {"general.sampling.temp", "float32", true, 1}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (bad[i].is_int) put_kv_i32(&kv, bad[i].key, (int32_t)bad[i].v);
        else put_kv_f32(&kv, bad[i].key, bad[i].v);
        kiln_gen_params_default(&p), err.msg[0] = 0;
        const int rc = kiln_gen_params_load(&p, with_sampling("bad.gguf", &kv, 1), &err);
        CHECK(rc == -1 && strstr(err.msg, bad[i].key) && strstr(err.msg, bad[i].want) && !strchr(err.msg, '\n'),
              "%s: %s", bad[i].key, rc ? err.msg : "accepted");
        strbuf_free(&kv);
    }
    put_kv_f32(&kv, "general.sampling.penalty_repeat", 1.2f), put_kv_i32(&kv, "general.sampling.penalty_last_n", 64);
    kiln_gen_params_default(&p);
    CHECK(kiln_gen_params_load(&p, with_sampling("last_n.gguf", &kv, 2), &err) == -1 && strstr(err.msg, "penalty_last_n"),
          "penalty_last_n 64: %s", err.msg);
    strbuf_free(&kv);
}

/* dir written to path in format fmt ("f32", a --quant name; NULL: every tensor as stored). */
static bool write_kiln(const char *dir, const char *path, const char *fmt) {
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.quiet = true;
    if (fmt && kiln_quant_parse(fmt, &mo.quant)) mo.dtype = KILN_DT_F32;
    kiln_err err = {{0}};
    if (kiln_gguf_write(dir, path, &mo, &err)) return fprintf(stderr, "  %s\n", err.msg), false;
    return true;
}

/* model (a safetensors checkpoint in $SHARED/models) as a GGUF (the converter writes Qwen's q/k rows
 * unpermuted: llama.cpp runs them with rotate-half RoPE); its logits on a prompt must equal the
 * checkpoint's exactly (same bytes, same config). */
static void check_converted(const char *model) {
    char rel[128];
    snprintf(rel, sizeof rel, "models/%s", model);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", shared_path(rel));
    kiln_config cfg, gc;
    kiln_err err = {{0}};
    snprintf(rel, sizeof rel, "%s.gguf", model);
    REQUIRE(kiln_config_load(dir, &cfg, &err) == 0 && write_kiln(dir, tmp_path(rel), NULL), "write %s: %s", rel, err.msg);
    CHECK(kiln_config_load(tmp_path(rel), &gc, &err) == 0, "%s", err.msg);
    CHECK(gc.arch == cfg.arch && gc.attention_bias == cfg.attention_bias && gc.qk_norm == cfg.qk_norm &&
              gc.tie_word_embeddings == cfg.tie_word_embeddings && gc.vocab_size == cfg.vocab_size,
          "%s: config differs", model);
    int V = 0;
    float *a = medium_logits(tmp_path(rel), -1, &V), *b = medium_logits(dir, -1, &V);
    CHECK(max_diff(a, b, (size_t)20 * V) == 0, "%s: GGUF vs safetensors logits differ by %g", model,
          max_diff(a, b, (size_t)20 * V));
    free(a), free(b);
}

TEST(qwen2_gguf_equals_safetensors) { check_converted("tiny-qwen2"); }
TEST(qwen3_gguf_equals_safetensors) { check_converted("tiny-qwen3"); }

/* kiln's writer carries the checkpoint's generation defaults: the file's general.sampling.* and EOS ids
 * load to what generation_config.json gives (tiny-llama3 samples at temperature 0.6, top_p 0.9, three EOS). */
TEST(written_sampling_defaults_round_trip) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", shared_path("models/tiny-llama3"));
    REQUIRE(write_kiln(dir, tmp_path("sampling-llama3.gguf"), NULL), "write tiny-llama3");
    kiln_gen_params a, b;
    kiln_gen_params_default(&a), kiln_gen_params_default(&b);
    kiln_err err = {{0}};
    CHECK(kiln_gen_params_load(&a, dir, &err) == 0 && kiln_gen_params_load(&b, tmp_path("sampling-llama3.gguf"), &err) == 0,
          "%s", err.msg);
    CHECK(a.do_sample && b.do_sample == a.do_sample && b.temperature == a.temperature && b.top_k == a.top_k &&
              b.top_p == a.top_p && b.min_p == a.min_p && b.repetition_penalty == a.repetition_penalty && b.n_eos == a.n_eos,
          "GGUF: sample %d temp %g top_k %d top_p %g eos %d; checkpoint: sample %d temp %g top_k %d top_p %g eos %d",
          b.do_sample, b.temperature, b.top_k, b.top_p, b.n_eos, a.do_sample, a.temperature, a.top_k, a.top_p, a.n_eos);
    for (int i = 0; i < a.n_eos && i < b.n_eos; i++) CHECK(a.eos_ids[i] == b.eos_ids[i], "eos %d: %d vs %d", i, b.eos_ids[i], a.eos_ids[i]);
}

/* ---- the arch fixtures ($ARCH_FIXTURES, made by tests/run.sh) as GGUF files: Gemma's norms + 1, its
 * window / soft-capping / local RoPE keys; Mistral labelled llama, with or without the window key ---- */

static const char *arch_fixture(const char *name) {
    static char buf[4096];
    const char *d = getenv("ARCH_FIXTURES");
    snprintf(buf, sizeof buf, "%s/%s", d && *d ? d : "build/arch-fixtures", name);
    return buf;
}

static void collect_warning(void *ud, const char *msg) { snprintf(ud, 256, "%s", msg); }

/* The logits at every position of the golden's last case (70 tokens: past every window) from path; the
 * load's warning (if any) into warning[256]. */
static float *arch_logits(const char *path, const char *name, int *n, int *V, char *warning) {
    char rel[128];
    snprintf(rel, sizeof rel, "golden/models/%s/golden.json", name);
    json_t *gj = json_load_file(shared_path(rel), 0, NULL);
    json_t *cs = json_array_get(json_object_get(gj, "cases"), 3), *pid = json_object_get(cs, "prompt_ids");
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.warn = collect_warning, mo.cb_ud = warning;
    mo.exact = true; /* bit-identical to safetensors: the bf16 checkpoint's fast prefill rounds activations */
    kiln_err err = {{0}};
    kiln_model *m = gj ? kiln_model_open(path, &mo, &err) : NULL;
    CHECK(m, "%s: %s", path, gj ? err.msg : "no golden");
    float *all = NULL;
    *n = (int)json_array_size(pid);
    int32_t ids[128];
    for (int i = 0; i < *n && i < 128; i++) ids[i] = (int32_t)json_integer_value(json_array_get(pid, (size_t)i));
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.n_ctx = *n;
    kiln_ctx *c = m ? kiln_ctx_new(m, &co, &err) : NULL;
    if (c) {
        *V = kiln_model_config(m)->vocab_size;
        all = malloc((size_t)*n * *V * sizeof(float));
        int seq = kiln_seq_new(c, &err), nt = *n;
        kiln_batch b = {1, &seq, &nt, ids, true, all};
        CHECK(kiln_forward(c, &b, &err) == 0, "%s: %s", path, err.msg);
    }
    kiln_ctx_free(c);
    kiln_model_free(m);
    json_decref(gj);
    return all;
}

/* The GGUF of checkpoint dir (the fixture `name`'s weights) against the fixture: its logits equal the
 * checkpoint's exactly (same_window) or, for a Mistral written without its window, differ past the window
 * (and the load warns). */
static void check_arch_converted(const char *name, const char *dir, bool same_window) {
    char rel[128], wa[256] = "", wb[256] = "";
    snprintf(rel, sizeof rel, "%s-%d.gguf", name, same_window);
    kiln_config cfg, gc;
    kiln_err err = {{0}};
    REQUIRE(kiln_config_load(arch_fixture(name), &cfg, &err) == 0 && write_kiln(dir, tmp_path(rel), "f32"), "write %s: %s",
            rel, err.msg);
    CHECK(kiln_config_load(tmp_path(rel), &gc, &err) == 0, "%s", err.msg);
    const bool gemma = cfg.arch == KILN_ARCH_GEMMA2 || cfg.arch == KILN_ARCH_GEMMA3;
    CHECK(gc.arch == (gemma ? cfg.arch : KILN_ARCH_LLAMA) && gc.qk_norm == cfg.qk_norm && gc.sandwich_norms == cfg.sandwich_norms && !gc.norm_offset &&
              gc.attn_logit_softcap == cfg.attn_logit_softcap && gc.final_logit_softcap == cfg.final_logit_softcap &&
              gc.attn_scale == cfg.attn_scale && gc.rope_local_theta == cfg.rope_local_theta,
          "%s: config differs", name);
    CHECK(same_window == !memcmp(gc.swa_layers, cfg.swa_layers, sizeof gc.swa_layers) &&
              same_window == (gc.sliding_window == cfg.sliding_window) && gc.window_absent == !same_window,
          "%s: window %d vs %d", name, gc.sliding_window, cfg.sliding_window);
    int n = 0, V = 0;
    float *a = arch_logits(tmp_path(rel), name, &n, &V, wa), *b = arch_logits(arch_fixture(name), name, &n, &V, wb);
    double d = max_diff(a, b, (size_t)n * V);
    if (same_window) CHECK(d == 0 && !wa[0], "%s: GGUF vs safetensors logits differ by %g (%s)", name, d, wa);
    else CHECK(d > 1 && strstr(wa, "sliding_window") && !wb[0], "%s: unwindowed GGUF differs by %g; warning '%s'", name, d, wa);
    free(a), free(b);
}

TEST(gemma_gguf_equals_safetensors) {
    check_arch_converted("gemma2-tiny", arch_fixture("gemma2-tiny"), true);
    check_arch_converted("gemma3-tiny", arch_fixture("gemma3-tiny"), true);
}

/* mistral-tiny's weights beside its config without sliding_window, in a directory named mistral-nowindow
 * (general.name says Mistral, as llama.cpp's converter writes it, and no window key): path of that dir. */
static const char *unwindowed_mistral(void) {
    static char dir[600];
    snprintf(dir, sizeof dir, "%s", tmp_path("mistral-nowindow"));
    char src[4200], dst[700];
    json_t *cfg = json_load_file((snprintf(src, sizeof src, "%s/config.json", arch_fixture("mistral-tiny")), src), 0, NULL);
    bool ok = cfg && mkdir(dir, 0755) == 0 && json_object_del(cfg, "sliding_window") == 0 &&
              json_dump_file(cfg, (snprintf(dst, sizeof dst, "%s/config.json", dir), dst), 0) == 0;
    json_decref(cfg);
    static const char *const files[] = {"model.safetensors", "tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; ok && i < sizeof files / sizeof *files; i++) {
        char real[4200];
        snprintf(src, sizeof src, "%s/%s", arch_fixture("mistral-tiny"), files[i]);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        ok = realpath(src, real) && symlink(real, dst) == 0;
    }
    CHECK(ok, "cannot make %s", dir);
    return dir;
}

/* Written with its window (kiln runs the file as the checkpoint; the writer warns that llama.cpp will not),
 * and without it, as llama.cpp's converter writes a Mistral (the load warns that the window is absent). */
TEST(mistral_gguf_window) {
    check_arch_converted("mistral-tiny", arch_fixture("mistral-tiny"), true);
    check_arch_converted("mistral-tiny", unwindowed_mistral(), false);
}

/* llama-quantize's per-tensor types for the same checkpoints, "gguf name without .weight=TYPE" (its matrices;
 * routers stay f32), read from its files: `llama-quantize F32.gguf OUT.gguf TYPE` on llama.cpp's converter's
 * F32 file of each fixture. Their 64-wide rows take the fallbacks (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0),
 * which keep the choices apart: qwen3moe-tiny has 8 experts (attn_v / attn_k Q8_0, attn_output Q5_K under
 * Q4_K_M), mixtral-tiny 4 (no 8-expert rule); ffn_down_exps of use_more_bits' layers Q6_K; phi3's attn_qkv
 * as attn_v. */
static const struct {
    const char *fixture, *quant, *types;
} MIXES[] = {
    {"qwen3moe-tiny", "q4_k_m",
     "token_embd=Q8_0 blk.0.attn_k=Q8_0 blk.0.attn_output=Q5_1 blk.0.attn_q=Q5_0 blk.0.attn_v=Q8_0 blk.0.ffn_down_exps=Q5_0 blk.0.ffn_gate_exps=Q5_0 blk.0.ffn_up_exps=Q5_0 blk.1.attn_k=Q8_0 blk.1.attn_output=Q5_1 blk.1.attn_q=Q5_0 blk.1.attn_v=Q8_0 blk.1.ffn_down_exps=Q8_0 blk.1.ffn_gate_exps=Q5_0 blk.1.ffn_up_exps=Q5_0 "},
    {"qwen3moe-tiny", "q5_k_m",
     "token_embd=Q8_0 blk.0.attn_k=Q8_0 blk.0.attn_output=Q5_1 blk.0.attn_q=Q5_1 blk.0.attn_v=Q8_0 blk.0.ffn_down_exps=Q5_1 blk.0.ffn_gate_exps=Q5_1 blk.0.ffn_up_exps=Q5_1 blk.1.attn_k=Q8_0 blk.1.attn_output=Q5_1 blk.1.attn_q=Q5_1 blk.1.attn_v=Q8_0 blk.1.ffn_down_exps=Q8_0 blk.1.ffn_gate_exps=Q5_1 blk.1.ffn_up_exps=Q5_1 "},
    {"qwen3moe-tiny", "q6_k",
     "token_embd=Q8_0 blk.0.attn_k=Q8_0 blk.0.attn_output=Q8_0 blk.0.attn_q=Q8_0 blk.0.attn_v=Q8_0 blk.0.ffn_down_exps=Q8_0 blk.0.ffn_gate_exps=Q8_0 blk.0.ffn_up_exps=Q8_0 blk.1.attn_k=Q8_0 blk.1.attn_output=Q8_0 blk.1.attn_q=Q8_0 blk.1.attn_v=Q8_0 blk.1.ffn_down_exps=Q8_0 blk.1.ffn_gate_exps=Q8_0 blk.1.ffn_up_exps=Q8_0 "},
    {"mixtral-tiny", "q4_k_m",
     "output=Q8_0 token_embd=Q5_0 blk.0.attn_k=Q5_0 blk.0.attn_output=Q5_0 blk.0.attn_q=Q5_0 blk.0.attn_v=Q5_0 blk.0.ffn_down_exps=Q5_0 blk.0.ffn_gate_exps=Q5_0 blk.0.ffn_up_exps=Q5_0 blk.1.attn_k=Q5_0 blk.1.attn_output=Q5_0 blk.1.attn_q=Q5_0 blk.1.attn_v=Q8_0 blk.1.ffn_down_exps=Q8_0 blk.1.ffn_gate_exps=Q5_0 blk.1.ffn_up_exps=Q5_0 "},
    {"mixtral-tiny", "q5_k_m",
     "output=Q8_0 token_embd=Q5_1 blk.0.attn_k=Q5_1 blk.0.attn_output=Q5_1 blk.0.attn_q=Q5_1 blk.0.attn_v=Q5_1 blk.0.ffn_down_exps=Q5_1 blk.0.ffn_gate_exps=Q5_1 blk.0.ffn_up_exps=Q5_1 blk.1.attn_k=Q5_1 blk.1.attn_output=Q5_1 blk.1.attn_q=Q5_1 blk.1.attn_v=Q8_0 blk.1.ffn_down_exps=Q8_0 blk.1.ffn_gate_exps=Q5_1 blk.1.ffn_up_exps=Q5_1 "},
    {"mixtral-tiny", "q6_k",
     "output=Q8_0 token_embd=Q8_0 blk.0.attn_k=Q8_0 blk.0.attn_output=Q8_0 blk.0.attn_q=Q8_0 blk.0.attn_v=Q8_0 blk.0.ffn_down_exps=Q8_0 blk.0.ffn_gate_exps=Q8_0 blk.0.ffn_up_exps=Q8_0 blk.1.attn_k=Q8_0 blk.1.attn_output=Q8_0 blk.1.attn_q=Q8_0 blk.1.attn_v=Q8_0 blk.1.ffn_down_exps=Q8_0 blk.1.ffn_gate_exps=Q8_0 blk.1.ffn_up_exps=Q8_0 "},
    {"phi3-tiny", "q4_k_m",
     "output=Q8_0 token_embd=Q5_0 blk.0.attn_output=Q5_0 blk.0.attn_qkv=Q5_0 blk.0.ffn_down=Q5_0 blk.0.ffn_up=Q5_0 blk.1.attn_output=Q5_0 blk.1.attn_qkv=Q8_0 blk.1.ffn_down=Q8_0 blk.1.ffn_up=Q5_0 "},
    {"phi3-tiny", "q5_k_m",
     "output=Q8_0 token_embd=Q5_1 blk.0.attn_output=Q5_1 blk.0.attn_qkv=Q5_1 blk.0.ffn_down=Q5_1 blk.0.ffn_up=Q5_1 blk.1.attn_output=Q5_1 blk.1.attn_qkv=Q8_0 blk.1.ffn_down=Q8_0 blk.1.ffn_up=Q5_1 "},
    {"phi3-tiny", "q6_k",
     "output=Q8_0 token_embd=Q8_0 blk.0.attn_output=Q8_0 blk.0.attn_qkv=Q8_0 blk.0.ffn_down=Q8_0 blk.0.ffn_up=Q8_0 blk.1.attn_output=Q8_0 blk.1.attn_qkv=Q8_0 blk.1.ffn_down=Q8_0 blk.1.ffn_up=Q8_0 "},
};

/* The type MIXES lists for tensor name (NULL: not listed). */
static const char *listed_type(const char *types, const char *name, char *buf, size_t n) {
    char key[200], padded[4096];
    snprintf(key, sizeof key, " %.*s=", (int)(strlen(name) - strlen(".weight")), name);
    snprintf(padded, sizeof padded, " %s", types);
    const char *p = strstr(padded, key);
    if (!p) return NULL;
    p += strlen(key);
    snprintf(buf, n, "%.*s", (int)strcspn(p, " "), p);
    return buf;
}

/* kiln's writer quantises every matrix of these MoE and fused checkpoints to llama-quantize's type. */
TEST(moe_and_fused_mixes_match_llama_quantize) {
    for (size_t i = 0; i < sizeof MIXES / sizeof *MIXES; i++) {
        char rel[128], want[16];
        snprintf(rel, sizeof rel, "%s.%s.gguf", MIXES[i].fixture, MIXES[i].quant);
        REQUIRE(write_kiln(arch_fixture(MIXES[i].fixture), tmp_path(rel), MIXES[i].quant), "write %s", rel);
        gguf_file g;
        kiln_err err = {{0}};
        REQUIRE(gguf_open(&g, tmp_path(rel), &err) == 0, "%s", err.msg);
        int checked = 0, listed = 0;
        for (const char *p = MIXES[i].types; (p = strchr(p, '=')); p++) listed++;
        for (int t = 0; t < g.n_tensors; t++) {
            const gguf_tensor *x = &g.tensors[t];
            if (x->n_dims < 2 || strstr(x->name, "ffn_gate_inp")) continue;
            const char *exp = listed_type(MIXES[i].types, x->name, want, sizeof want);
            CHECK(exp && !strcmp(exp, gguf_type_name(x->type)), "%s %s: kiln writes %s, llama-quantize %s", rel, x->name,
                  gguf_type_name(x->type), exp ? exp : "(not listed)");
            checked++;
        }
        CHECK(checked == listed, "%s: %d matrices, %d listed", rel, checked, listed);
        gguf_close(&g);
        unlink(tmp_path(rel));
    }
}

/* ---- hostile files ---- */

static bool one_line_naming(const kiln_err *e, const char *path) {
    return e->msg[0] && !strchr(e->msg, '\n') && strstr(e->msg, path);
}

/* Structural faults a byte flip rarely makes: an architecture kiln does not run, a tensor twice,
 * overlapping tensors. Each a one-line error naming the file and the fault. */
TEST(structural_faults_are_named) {
    strbuf kv = {0};
    put_str(&kv, "general.architecture", 20), put_u32(&kv, GGUF_STRING), put_str(&kv, "gpt2", 4);
    float data[64] = {0};
    wtensor two[2] = {{"a.weight", 0, 1, {32, 1, 1, 1}, data, 128}, {"a.weight", 0, 1, {32, 1, 1, 1}, data, 128}};
    CHECK(write_gguf_kv(tmp_path("arch.gguf"), NULL, 0, 0, &kv, 1, two, 1), "write");
    CHECK(write_gguf_kv(tmp_path("twice.gguf"), NULL, 0, 0, &kv, 1, two, 2), "write");
    strbuf_free(&kv);
    kiln_config c;
    kiln_err err = {{0}};
    CHECK(kiln_config_load(tmp_path("arch.gguf"), &c, &err) < 0 && strstr(err.msg, "architecture 'gpt2' not supported") &&
              one_line_naming(&err, "arch.gguf"), "%s", err.msg);
    gguf_file g;
    CHECK(gguf_open(&g, tmp_path("twice.gguf"), &err) < 0 && strstr(err.msg, "tensor 'a.weight' appears twice"), "%s", err.msg);
    /* overlap: the second tensor's offset (the last 8 bytes of its info) pointed at the first's data */
    FILE *f = fopen(tmp_path("twice.gguf"), "rb");
    static char buf[4096];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    char *second = memmem(buf + 40, n - 40, "a.weight", 8);
    second = second ? memmem(second + 8, n - (size_t)(second + 8 - buf), "a.weight", 8) : NULL;
    REQUIRE(second, "second tensor info");
    second[0] = 'b';
    memset(second + 8 + 4 + 8 + 4, 0, 8); /* name, n_dims, dim, type, then the offset */
    CHECK(gguf_parse(&g, buf, n, "overlap.gguf", &err) < 0 && strstr(err.msg, "overlaps") &&
              one_line_naming(&err, "overlap.gguf"), "%s", err.msg);
}

/* Every truncation of the F32 file's header and data boundary fails with a one-line error naming the
 * file; a sample of the data area too (a tensor then runs past the end). */
TEST(truncations_are_one_line_errors) {
    FILE *f = fopen(shared_path(KQ512 "F32.gguf"), "rb");
    REQUIRE(f, "open F32");
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    gguf_file g;
    kiln_err err = {{0}};
    int bad = 0;
    for (size_t cut = 0; cut < n; cut += cut < 16384 ? 1 : 97) {
        err.msg[0] = 0;
        if (gguf_parse(&g, buf, cut, "trunc.gguf", &err) == 0) gguf_close(&g), bad++;
        else if (!one_line_naming(&err, "trunc.gguf") && bad++ < 3) fprintf(stderr, "  cut %zu: %s\n", cut, err.msg);
    }
    CHECK(bad == 0, "%d truncations accepted or badly reported", bad);
}

/* Byte flips in the header (keys, tensor infos, counts): each either loads or is a one-line error naming
 * the file, through the whole loader (config, tensors, binding). */
TEST(header_byte_flips_never_crash) {
    FILE *in = fopen(shared_path(KQ512 "F32.gguf"), "rb");
    REQUIRE(in, "open F32");
    const char *path = tmp_path("flip.gguf");
    FILE *out = fopen(path, "wb");
    static char chunk[1 << 16];
    size_t k, header = 0;
    while ((k = fread(chunk, 1, sizeof chunk, in)) > 0) fwrite(chunk, 1, k, out);
    fclose(in), fclose(out);
    gguf_file g;
    kiln_err err = {{0}};
    REQUIRE(gguf_open(&g, path, &err) == 0, "%s", err.msg);
    header = g.data_offset;
    gguf_close(&g);
    int fd = open(path, O_RDWR);
    REQUIRE(fd >= 0, "open copy");
    uint64_t rng = 12345;
    int bad = 0, rejected = 0;
    const int cases = 300;
    for (int c = 0; c < cases; c++) {
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        /* the first 512 bytes hold the counts, the architecture and hyperparameter keys: flip there often */
        size_t at = (size_t)(rng >> 33) % (c % 2 ? 512 : header);
        unsigned char orig, flipped;
        REQUIRE(pread(fd, &orig, 1, (off_t)at) == 1, "pread");
        flipped = orig ^ (unsigned char)(1u << ((rng >> 20) % 8));
        if (c % 3 == 0) flipped = (unsigned char)(rng >> 40); /* or any byte */
        REQUIRE(pwrite(fd, &flipped, 1, (off_t)at) == 1, "pwrite");
        err.msg[0] = 0;
        kiln_model_opts mo;
        kiln_model_opts_default(&mo);
        mo.threads = 1;
        kiln_model *m = kiln_model_open(path, &mo, &err);
        if (!m && (rejected++, !one_line_naming(&err, "flip.gguf")) && bad++ < 3)
            fprintf(stderr, "  flip at %zu: %s\n", at, err.msg);
        kiln_model_free(m);
        REQUIRE(pwrite(fd, &orig, 1, (off_t)at) == 1, "restore");
    }
    close(fd);
    printf("  %d of %d header flips rejected, the others loaded\n", rejected, cases);
    CHECK(bad == 0 && rejected > cases / 4, "%d badly reported, %d rejected", bad, rejected);
}

int main(void) {
    if (!mkdtemp(tmpdir)) return 1;
    RUN(container_reads_llamacpp_f32);
    RUN(format_table_agrees_with_ggml_types);
    RUN(container_reads_quantised_types);
    RUN(f32_matches_llamacpp);
    RUN(special_ids_from_metadata);
    RUN(sampling_defaults_from_metadata);
    RUN(written_sampling_defaults_round_trip);
    RUN(q8_0_matches_llamacpp);
    RUN(every_quantised_type_matches_llamacpp);
    RUN(split_parts_open_as_one);
    RUN(llamacpp_split_matches_unsplit);
    RUN(q4_0_file_equals_load_time_q4_0);
    RUN(rope_freqs_divide_the_frequencies);
    RUN(qwen2_gguf_equals_safetensors);
    RUN(qwen3_gguf_equals_safetensors);
    RUN(gemma_gguf_equals_safetensors);
    RUN(mistral_gguf_window);
    RUN(moe_and_fused_mixes_match_llama_quantize);
    RUN(structural_faults_are_named);
    RUN(truncations_are_one_line_errors);
    RUN(header_byte_flips_never_crash);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) return 1;
    return check_done();
}
