/* test_safetensors.c — the loader against a generated set of broken checkpoints.
 *
 * A tiny valid Llama checkpoint is written to a temp dir; then several hundred variants (truncations at
 * many offsets, flipped header bytes, bad header lengths, wrong dtypes / shapes / offsets, overlapping,
 * missing and misshapen tensors, broken shard indexes) must each fail to load with a one-line error
 * naming the file, and never crash (this binary also runs under ASan/UBSan). */
#include <unistd.h>

#include "check.h"
#include "kiln.h"
#include "model/safetensors.h"

static char dir[] = "/tmp/kiln_test_st_XXXXXX";
static char st_path[256], cfg_path[256], idx_path[256], shard_path[2][256];

/* The tiny model: hidden 8, intermediate 16, 1 layer, 2 heads (head_dim 4), 1 kv head, vocab 16. */
static const char *CONFIG = "{\"architectures\":[\"LlamaForCausalLM\"],\"hidden_size\":8,\"intermediate_size\":16,"
                            "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
                            "\"vocab_size\":16,\"max_position_embeddings\":64,\"tie_word_embeddings\":false}";

typedef struct spec {
    const char *name;
    const char *dtype;
    int ndim;
    long shape[3];
    long begin, end; /* filled by layout() unless overridden */
} spec;

static spec base[] = {
    {"model.embed_tokens.weight", "F32", 2, {16, 8}, 0, 0},
    {"model.layers.0.input_layernorm.weight", "F32", 1, {8}, 0, 0},
    {"model.layers.0.self_attn.q_proj.weight", "F32", 2, {8, 8}, 0, 0},
    {"model.layers.0.self_attn.k_proj.weight", "BF16", 2, {4, 8}, 0, 0},
    {"model.layers.0.self_attn.v_proj.weight", "F16", 2, {4, 8}, 0, 0},
    {"model.layers.0.self_attn.o_proj.weight", "F32", 2, {8, 8}, 0, 0},
    {"model.layers.0.post_attention_layernorm.weight", "F32", 1, {8}, 0, 0},
    {"model.layers.0.mlp.gate_proj.weight", "F32", 2, {16, 8}, 0, 0},
    {"model.layers.0.mlp.up_proj.weight", "F32", 2, {16, 8}, 0, 0},
    {"model.layers.0.mlp.down_proj.weight", "F32", 2, {8, 16}, 0, 0},
    {"model.norm.weight", "F32", 1, {8}, 0, 0},
    {"lm_head.weight", "F32", 2, {16, 8}, 0, 0},
};
#define NB (int)(sizeof base / sizeof base[0])

static long esize(const char *dt) { return strcmp(dt, "F32") == 0 ? 4 : 2; }

/* Contiguous offsets in order. Returns the data size. */
static long layout(spec *s, int n) {
    long off = 0;
    for (int i = 0; i < n; i++) {
        long cnt = 1;
        for (int d = 0; d < s[i].ndim; d++) cnt *= s[i].shape[d];
        s[i].begin = off;
        s[i].end = off + cnt * esize(s[i].dtype);
        off = s[i].end;
    }
    return off;
}

/* Header JSON (padded with spaces to a multiple of 8, as the reference writer does) + data. */
static size_t build(unsigned char *out, const spec *s, int n, long data_len, const char *extra) {
    char h[8192];
    size_t o = (size_t)snprintf(h, sizeof h, "{%s", extra ? extra : "");
    for (int i = 0; i < n; i++) {
        o += (size_t)snprintf(h + o, sizeof h - o, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", (i || extra) ? "," : "",
                              s[i].name, s[i].dtype);
        for (int d = 0; d < s[i].ndim; d++) o += (size_t)snprintf(h + o, sizeof h - o, "%s%ld", d ? "," : "", s[i].shape[d]);
        o += (size_t)snprintf(h + o, sizeof h - o, "],\"data_offsets\":[%ld,%ld]}", s[i].begin, s[i].end);
    }
    h[o++] = '}';
    while (o % 8) h[o++] = ' ';
    for (int i = 0; i < 8; i++) out[i] = (unsigned char)((uint64_t)o >> (8 * i));
    memcpy(out + 8, h, o);
    /* Small finite values in every format: 0x3c00 is 1.0 in f16, 0x3f80 1.0 in bf16, 0x3e800000 0.25 f32. */
    for (long i = 0; i < data_len; i += 2) {
        out[8 + o + i] = 0;
        out[8 + o + i + 1] = 0x3c;
    }
    return 8 + o + (size_t)data_len;
}

static void write_file(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    fwrite(buf, 1, n, f);
    fclose(f);
}

static unsigned char good[16384];
static size_t good_len;
static size_t header_len;

/* Loads the temp dir; returns 0 on success, else checks the error is one line naming the file. */
static int load(const char *label, int want_fail) {
    kiln_err err = {{0}};
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.threads = 1;
    kiln_model *m = kiln_model_open(dir, &mo, &err);
    if (m) {
        kiln_model_free(m);
        if (want_fail) CHECK(0, "%s: loaded but should fail", label);
        return 0;
    }
    if (want_fail) {
        CHECK(err.msg[0] && !strchr(err.msg, '\n') && strstr(err.msg, dir), "%s: bad message '%s'", label, err.msg);
    } else CHECK(0, "%s: %s", label, err.msg);
    return -1;
}

static void write_variant(spec *s, int n, const char *extra) {
    static unsigned char buf[16384];
    long data = 0;
    for (int i = 0; i < n; i++)
        if (s[i].end > data) data = s[i].end;
    if (data > 8192) data = 8192; /* offsets pointing far past the end: the file stays small */
    write_file(st_path, buf, build(buf, s, n, data, extra));
}

TEST(valid_model_loads) {
    spec s[NB];
    memcpy(s, base, sizeof s);
    long data = layout(s, NB);
    good_len = build(good, s, NB, data, NULL);
    header_len = good_len - (size_t)data;
    write_file(st_path, good, good_len);
    REQUIRE(load("valid", 0) == 0, "valid model");
    kiln_err err;
    kiln_model *m = kiln_model_open(dir, NULL, &err);
    REQUIRE(m, "%s", err.msg);
    CHECK(kiln_model_param_count(m) == 16 * 8 * 2 + 8 * 3 + 64 * 2 + 32 * 2 + 128 * 3, "params %zu",
          kiln_model_param_count(m));
    /* a forward step runs on the mixed F32/BF16/F16 matrices */
    kiln_ctx *c = kiln_ctx_new(m, NULL, &err);
    REQUIRE(c, "%s", err.msg);
    float lg[16];
    int32_t ids[3] = {1, 2, 3};
    int seq = kiln_seq_new(c, &err), n = 3;
    kiln_batch b = {1, &seq, &n, ids, false, lg};
    CHECK(kiln_forward(c, &b, &err) == 0, "%s", err.msg);
    kiln_ctx_free(c);
    kiln_model_free(m);
    /* __metadata__ is allowed */
    write_variant(s, NB, "\"__metadata__\":{\"format\":\"pt\"}");
    CHECK(load("metadata", 0) == 0, "metadata");
}

TEST(truncations) {
    int n = 0;
    size_t step = good_len / 400 + 1;
    for (size_t cut = 0; cut < good_len; cut += (cut < header_len + 16 ? 1 : step)) {
        if (cut > 64 && cut < header_len - 8 && cut % 3) continue; /* thin out the middle of the header */
        write_file(st_path, good, cut);
        char label[64];
        snprintf(label, sizeof label, "truncated at %zu of %zu", cut, good_len);
        load(label, 1);
        n++;
    }
    CHECK(n >= 300, "only %d truncations", n);
    printf("  %d truncations\n", n);
}

TEST(flipped_header_bytes) {
    static unsigned char buf[16384];
    int n = 0;
    const char *lm = strstr((const char *)good + 8, "\"lm_head.weight\"");
    size_t lm_lo = (size_t)(lm - (const char *)good) + 1, lm_hi = lm_lo + strlen("lm_head.weight");
    for (size_t i = 8; i < header_len; i++) {
        /* Renaming lm_head.weight leaves it absent, and an absent head is tied to the embedding as
         * transformers does: that file loads, correctly. */
        if (i >= lm_lo && i < lm_hi) continue;
        memcpy(buf, good, good_len);
        buf[i] ^= (i % 2) ? 0x20 : 0x41; /* never a no-op; case flips rename tensors, others break JSON */
        if (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r') buf[i] = 0x01;
        write_file(st_path, buf, good_len);
        char label[64];
        snprintf(label, sizeof label, "header byte %zu ('%c')", i, good[i]);
        /* A flipped digit inside a shape or offset can still be a number; it then contradicts the others
         * (sizes, overlaps, config shapes), so every single flip must fail. */
        load(label, 1);
        n++;
    }
    printf("  %d flipped bytes\n", n);
}

TEST(bad_header_lengths) {
    static unsigned char buf[16384];
    uint64_t h = header_len - 8;
    uint64_t lens[] = {0, 1, 2, h - 8, h - 1, h + 1, h + 8, good_len - 8, good_len - 7, good_len, UINT32_MAX,
                       (uint64_t)1 << 40, UINT64_MAX, UINT64_MAX - 7};
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        memcpy(buf, good, good_len);
        for (int i = 0; i < 8; i++) buf[i] = (unsigned char)(lens[k] >> (8 * i));
        write_file(st_path, buf, good_len);
        char label[64];
        snprintf(label, sizeof label, "header length %llu", (unsigned long long)lens[k]);
        load(label, 1);
    }
    write_file(st_path, "", 0);
    load("empty file", 1);
}

TEST(wrong_dtypes_shapes_offsets) {
    spec s[NB];
    const char *dts[] = {"F64", "I8", "U8", "BOOL", "F8_E4M3", "", "f32", "Q8_0"};
    int n = 0;
    for (int t = 0; t < NB; t++) {
        char label[160];
        for (size_t d = 0; d < sizeof dts / sizeof dts[0]; d++) { /* unknown dtypes */
            memcpy(s, base, sizeof s);
            layout(s, NB);
            s[t].dtype = dts[d];
            write_variant(s, NB, NULL);
            snprintf(label, sizeof label, "%s dtype '%s'", s[t].name, dts[d]);
            load(label, 1), n++;
        }
        /* known dtype whose size disagrees with the span */
        memcpy(s, base, sizeof s);
        layout(s, NB);
        s[t].dtype = strcmp(s[t].dtype, "F32") == 0 ? "BF16" : "F32";
        write_variant(s, NB, NULL);
        snprintf(label, sizeof label, "%s dtype size", s[t].name);
        load(label, 1), n++;
        /* shapes: each dimension +1 / -1 / 0, an extra dimension, transposed, scalar (offsets laid out to
         * match, so only the config check can catch them) */
        for (int d = 0; d < s[t].ndim; d++)
            for (int delta = -1; delta <= 1; delta++) {
                memcpy(s, base, sizeof s);
                s[t].shape[d] = delta ? s[t].shape[d] + delta : 0;
                layout(s, NB);
                write_variant(s, NB, NULL);
                snprintf(label, sizeof label, "%s shape[%d] %+d", s[t].name, d, delta);
                load(label, 1), n++;
            }
        memcpy(s, base, sizeof s);
        s[t].shape[s[t].ndim++] = 1;
        layout(s, NB);
        write_variant(s, NB, NULL);
        load("extra dim", 1), n++;
        memcpy(s, base, sizeof s);
        s[t].ndim = 0;
        layout(s, NB);
        write_variant(s, NB, NULL);
        load("scalar", 1), n++;
        if (base[t].ndim == 2 && base[t].shape[0] != base[t].shape[1]) {
            memcpy(s, base, sizeof s);
            long tmp = s[t].shape[0];
            s[t].shape[0] = s[t].shape[1];
            s[t].shape[1] = tmp;
            layout(s, NB);
            write_variant(s, NB, NULL);
            snprintf(label, sizeof label, "%s transposed", s[t].name);
            load(label, 1), n++;
        }
        /* offsets: shifted by one element / one byte, past the end, reversed, overlapping the previous */
        long shifts[][2] = {{2, 2}, {1, 1}, {-1, -1}, {0, 4}, {0, -2}, {1000000, 1000000}, {-100000000, 0}};
        for (size_t k = 0; k < sizeof shifts / sizeof shifts[0]; k++) {
            memcpy(s, base, sizeof s);
            layout(s, NB);
            s[t].begin += shifts[k][0];
            s[t].end += shifts[k][1];
            if (t == NB - 1 && shifts[k][0] == 2 && shifts[k][1] == 2) s[t].begin -= 4, s[t].end -= 4;
            write_variant(s, NB, NULL);
            snprintf(label, sizeof label, "%s offsets %+ld %+ld", s[t].name, shifts[k][0], shifts[k][1]);
            load(label, 1), n++;
        }
        if (t > 0) {
            memcpy(s, base, sizeof s);
            layout(s, NB);
            long len = s[t].end - s[t].begin;
            s[t].begin = s[t - 1].begin; /* same bytes as the previous tensor */
            s[t].end = s[t].begin + len;
            write_variant(s, NB, NULL);
            snprintf(label, sizeof label, "%s overlaps %s", s[t].name, s[t - 1].name);
            load(label, 1), n++;
        }
        /* missing tensor */
        memcpy(s, base, sizeof s);
        for (int i = t; i < NB - 1; i++) s[i] = s[i + 1];
        layout(s, NB - 1);
        write_variant(s, NB - 1, NULL);
        snprintf(label, sizeof label, "missing %s", base[t].name);
        /* a missing lm_head falls back to the tied embedding, as in transformers */
        load(label, strcmp(base[t].name, "lm_head.weight") != 0), n++;
    }
    /* malformed entries */
    const char *extras[] = {"\"x\":1", "\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}",
                            "\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,0]}",
                            "\"x\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}",
                            "\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}",
                            "\"x\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4],\"data_offsets\":[0,4]}",
                            "\"__metadata__\":[1]",
                            "\"model.norm.weight\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]}"};
    for (size_t k = 0; k < sizeof extras / sizeof extras[0]; k++) {
        memcpy(s, base, sizeof s);
        layout(s, NB);
        write_variant(s, NB, extras[k]);
        load(extras[k], 1), n++;
    }
    printf("  %d structural corruptions\n", n);
    write_file(st_path, good, good_len);
}

TEST(misaligned_data_rejected) {
    /* Header length 9 with a 1-tensor F32 body starting at file offset 17: not 4-byte aligned. */
    unsigned char buf[64] = {0};
    const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
    size_t hl = strlen(h);
    buf[0] = (unsigned char)(hl + 1);
    memcpy(buf + 8, h, hl);
    buf[8 + hl] = ' ';
    st_file f;
    kiln_err err;
    static unsigned char aligned[64] __attribute__((aligned(16)));
    memcpy(aligned, buf, sizeof buf);
    int rc = st_parse(&f, aligned, 8 + hl + 1 + 4, "mem", &err);
    if (((8 + hl + 1) % 4) != 0) CHECK(rc != 0 && strstr(err.msg, "aligned"), "misaligned accepted: %s", err.msg);
    if (rc == 0) st_close(&f);
}

TEST(sharded_index) {
    /* Split the valid model in two shards with an index; then break the index. */
    spec s[NB];
    memcpy(s, base, sizeof s);
    static unsigned char buf[16384];
    layout(s, 6);
    long d0 = s[5].end;
    write_file(shard_path[0], buf, build(buf, s, 6, d0, NULL));
    layout(s + 6, NB - 6);
    write_file(shard_path[1], buf, build(buf, s + 6, NB - 6, s[NB - 1].end, NULL));
    unlink(st_path);
    char idx[4096];
    size_t o = (size_t)snprintf(idx, sizeof idx, "{\"metadata\":{},\"weight_map\":{");
    for (int i = 0; i < NB; i++)
        o += (size_t)snprintf(idx + o, sizeof idx - o, "%s\"%s\":\"shard-%d.safetensors\"", i ? "," : "", s[i].name,
                              i < 6 ? 1 : 2);
    snprintf(idx + o, sizeof idx - o, "}}");
    write_file(idx_path, idx, strlen(idx));
    CHECK(load("sharded", 0) == 0, "sharded model");
    /* a tensor mapped to the wrong shard */
    char *p = strstr(idx, "shard-1");
    p[6] = '2';
    write_file(idx_path, idx, strlen(idx));
    load("index names the wrong shard", 1);
    p[6] = '1';
    /* a missing shard file */
    unlink(shard_path[1]);
    write_file(idx_path, idx, strlen(idx));
    load("missing shard", 1);
    write_file(idx_path, "{\"weight_map\":[]}", 17);
    load("index without weight_map object", 1);
    write_file(idx_path, "{", 1);
    load("index not JSON", 1);
    unlink(idx_path);
    unlink(shard_path[0]);
    write_file(st_path, good, good_len);
}

/* Only regular files are model files: a directory or a FIFO in model.safetensors' place (or a shard's, or
 * the index's) is a one-line error, not a hang or a read of something else. */
TEST(only_regular_files) {
    unlink(st_path);
    REQUIRE(mkfifo(st_path, 0600) == 0, "mkfifo");
    load("FIFO as model.safetensors", 1);
    unlink(st_path);
    REQUIRE(mkdir(st_path, 0700) == 0, "mkdir");
    load("directory as model.safetensors", 1);
    rmdir(st_path);
    REQUIRE(mkdir(idx_path, 0700) == 0, "mkdir");
    load("directory as the shard index", 1);
    rmdir(idx_path);
    write_file(idx_path, "{\"weight_map\":{\"model.norm.weight\":\"shard-1.safetensors\"}}", 58);
    REQUIRE(mkfifo(shard_path[0], 0600) == 0, "mkfifo");
    load("FIFO as a shard", 1);
    unlink(shard_path[0]);
    unlink(idx_path);
    write_file(st_path, good, good_len);
    CHECK(load("valid again", 0) == 0, "restored");
}

TEST(quantised_dtype_loads) {
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.dtype = KILN_DT_Q8_0;
    kiln_err err;
    kiln_model *m = kiln_model_open(dir, &mo, &err);
    CHECK(m != NULL, "q8_0: %s", err.msg);
    kiln_model_free(m);
}

int main(void) {
    if (!mkdtemp(dir)) return 1;
    snprintf(st_path, sizeof st_path, "%s/model.safetensors", dir);
    snprintf(cfg_path, sizeof cfg_path, "%s/config.json", dir);
    snprintf(idx_path, sizeof idx_path, "%s/model.safetensors.index.json", dir);
    snprintf(shard_path[0], sizeof shard_path[0], "%s/shard-1.safetensors", dir);
    snprintf(shard_path[1], sizeof shard_path[1], "%s/shard-2.safetensors", dir);
    write_file(cfg_path, CONFIG, strlen(CONFIG));
    RUN(valid_model_loads);
    RUN(truncations);
    RUN(flipped_header_bytes);
    RUN(bad_header_lengths);
    RUN(wrong_dtypes_shapes_offsets);
    RUN(misaligned_data_rejected);
    RUN(sharded_index);
    RUN(only_regular_files);
    RUN(quantised_dtype_loads);
    unlink(st_path);
    unlink(cfg_path);
    unlink(idx_path);
    unlink(shard_path[0]);
    unlink(shard_path[1]);
    rmdir(dir);
    return check_done();
}
