/* test_safetensors.c — the loader refuses every broken checkpoint with one line naming the file (and
 * the tensor where there is one), and never crashes. Several hundred corruptions are generated from
 * the real stories260K checkpoint: truncations, byte flips in the header, rewritten header fields,
 * overlapping or out-of-range offsets, wrong dtypes and shapes, missing tensors, bad configs. */
#include <fcntl.h>
#include <jansson.h>
#include <unistd.h>

#include "check.h"
#include "kiln.h"
#include "model/safetensors.h"

static char tmpdir[256];
static char *orig;      /* the original model.safetensors bytes */
static size_t orig_len;
static json_t *orig_hdr; /* its parsed header */
static size_t orig_hlen;

static void write_file(const char *name, const void *data, size_t len) {
    char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    if (!f) {
        perror(p);
        exit(1);
    }
    fwrite(data, 1, len, f);
    fclose(f);
}

static void copy_fixture(const char *name) {
    char rel[256];
    snprintf(rel, sizeof rel, "models/stories260K/%s", name);
    size_t len;
    kiln_err err;
    char *s = kiln_read_file(shared_path(rel), &len, &err);
    if (!s) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    write_file(name, s, len);
    free(s);
}

static int setup(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/kiln-st-XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    kiln_err err;
    orig = kiln_read_file(shared_path("models/stories260K/model.safetensors"), &orig_len, &err);
    if (!orig) {
        fprintf(stderr, "  fixture: %s\n", err.msg);
        return -1;
    }
    for (int i = 7; i >= 0; i--) orig_hlen = orig_hlen << 8 | (uint8_t)orig[i];
    orig_hdr = json_loadb(orig + 8, orig_hlen, 0, NULL);
    copy_fixture("config.json");
    return orig_hdr ? 0 : -1;
}

/* Expect kiln_model_open on tmpdir to fail with a message naming `want` (if non-NULL). */
static int expect_failure(const char *label, const char *want) {
    kiln_err err = {{0}};
    kiln_model *m = kiln_model_open(tmpdir, NULL, &err);
    int ok = m == NULL && err.msg[0] && !strchr(err.msg, '\n') && (!want || strstr(err.msg, want));
    if (!ok) fprintf(stderr, "  %s: %s (%s)\n", label, m ? "loaded" : "wrong message", err.msg);
    kiln_model_free(m);
    return ok;
}

/* A safetensors file from a header object and the original data area (optionally resized). */
static void write_with_header(json_t *hdr, size_t data_len) {
    char *h = json_dumps(hdr, JSON_COMPACT);
    size_t hl = strlen(h), padded = (hl + 7) & ~(size_t)7; /* space padding keeps data 8-aligned, as writers do */
    size_t total = 8 + padded + data_len;
    char *buf = calloc(1, total);
    for (int i = 0; i < 8; i++) buf[i] = (char)((uint64_t)padded >> (8 * i));
    memcpy(buf + 8, h, hl);
    memset(buf + 8 + hl, ' ', padded - hl);
    hl = padded;
    size_t avail = orig_len - 8 - orig_hlen;
    memcpy(buf + 8 + hl, orig + 8 + orig_hlen, data_len < avail ? data_len : avail);
    write_file("model.safetensors", buf, total);
    free(buf);
    free(h);
}

TEST(intact_checkpoint_loads) {
    write_file("model.safetensors", orig, orig_len);
    kiln_err err;
    kiln_model *m = kiln_model_open(tmpdir, NULL, &err);
    CHECK(m != NULL, "%s", err.msg);
    kiln_model_free(m);
}

TEST(truncations) {
    int bad = 0, n = 0;
    /* every length up to past the header, then a spread through the data */
    for (size_t len = 0; len < orig_hlen + 64; len += (len < 16 ? 1 : 7), n++) {
        write_file("model.safetensors", orig, len);
        bad += !expect_failure("truncated", "model.safetensors");
    }
    for (size_t len = orig_hlen + 64; len < orig_len; len += orig_len / 97, n++) {
        write_file("model.safetensors", orig, len);
        bad += !expect_failure("truncated data", "model.safetensors");
    }
    CHECK(bad == 0, "%d of %d truncations not rejected cleanly", bad, n);
    CHECK(n > 150, "only %d truncations", n);
}

TEST(header_byte_flips) {
    /* Flipping header bytes either still parses to an equivalent header or must fail cleanly; what is
     * asserted is no crash and, on failure, a one-line message. */
    char *buf = malloc(orig_len);
    int n = 0;
    for (size_t pos = 0; pos < 8 + orig_hlen; pos += 5, n++) {
        memcpy(buf, orig, orig_len);
        buf[pos] ^= (char)(0x5a + (pos & 3));
        write_file("model.safetensors", buf, orig_len);
        kiln_err err = {{0}};
        kiln_model *m = kiln_model_open(tmpdir, NULL, &err);
        CHECK(m || (err.msg[0] && !strchr(err.msg, '\n')), "flip at %zu: no message", pos);
        kiln_model_free(m);
    }
    free(buf);
    CHECK(n > 100, "only %d flips", n);
}

/* Rewrites field `field` of tensor `name` to `value` and expects a failure naming the tensor. */
static int mutate(const char *name, const char *field, json_t *value, const char *want) {
    json_t *h = json_deep_copy(orig_hdr);
    json_object_set_new(json_object_get(h, name), field, value);
    write_with_header(h, orig_len - 8 - orig_hlen);
    json_decref(h);
    return expect_failure(field, want);
}

TEST(field_corruptions) {
    int bad = 0, n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(orig_hdr, key, v) {
        if (!strcmp(key, "__metadata__")) continue;
        json_t *off = json_object_get(v, "data_offsets");
        json_int_t b = json_integer_value(json_array_get(off, 0)), e = json_integer_value(json_array_get(off, 1));
        json_int_t data = (json_int_t)(orig_len - 8 - orig_hlen);
        bad += !mutate(key, "dtype", json_string("I64"), key), n++;
        bad += !mutate(key, "dtype", json_string("F64"), key), n++;
        bad += !mutate(key, "dtype", json_integer(3), key), n++;
        bad += !mutate(key, "shape", json_pack("[i]", 3), key), n++;
        bad += !mutate(key, "shape", json_pack("[i,i]", -1, 4), key), n++;
        bad += !mutate(key, "shape", json_string("64"), key), n++;
        bad += !mutate(key, "data_offsets", json_pack("[I,I]", e, b), key), n++;
        bad += !mutate(key, "data_offsets", json_pack("[I,I]", b, data + 4), key), n++;
        bad += !mutate(key, "data_offsets", json_pack("[I,I]", b + 4, e + 4 > data ? data + 4 : e + 4), key), n++;
        bad += !mutate(key, "data_offsets", json_pack("[I]", b), key), n++;
        bad += !mutate(key, "data_offsets", json_pack("[I,I]", (json_int_t)-8, e), key), n++;
    }
    CHECK(bad == 0, "%d of %d field corruptions not rejected with the tensor named", bad, n);
    CHECK(n > 150, "only %d", n);
}

TEST(overlap_and_missing) {
    /* two tensors pointing at the same bytes */
    json_t *h = json_deep_copy(orig_hdr);
    const char *a = "model.layers.0.mlp.up_proj.weight", *b = "model.layers.0.mlp.gate_proj.weight";
    json_object_set(json_object_get(h, a), "data_offsets", json_object_get(json_object_get(h, b), "data_offsets"));
    write_with_header(h, orig_len - 8 - orig_hlen);
    json_decref(h);
    CHECK(expect_failure("overlap", "overlaps"), "overlap");
    /* each required tensor removed in turn */
    int bad = 0, n = 0;
    const char *key;
    json_t *v;
    json_object_foreach(orig_hdr, key, v) {
        if (!strcmp(key, "__metadata__")) continue;
        h = json_deep_copy(orig_hdr);
        json_object_del(h, key);
        write_with_header(h, orig_len - 8 - orig_hlen);
        json_decref(h);
        bad += !expect_failure("missing", key), n++;
    }
    CHECK(bad == 0, "%d of %d missing tensors not named", bad, n);
    /* not JSON / not an object / absurd length */
    write_file("model.safetensors", "\x05\0\0\0\0\0\0\0[1,2]", 13);
    CHECK(expect_failure("array header", "not a JSON object"), "array header");
    write_file("model.safetensors", "\x04\0\0\0\0\0\0\0{{{{", 12);
    CHECK(expect_failure("bad json", "model.safetensors"), "bad json");
    write_file("model.safetensors", "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    CHECK(expect_failure("huge length", "header length"), "huge length");
    write_file("model.safetensors", orig, orig_len);
}

TEST(config_mismatches) {
    write_file("model.safetensors", orig, orig_len);
    static const struct {
        const char *config, *want;
    } cases[] = {
        {"{\"architectures\":[\"GPT2LMHeadModel\"],\"hidden_size\":64}", "GPT2LMHeadModel"},
        {"{\"architectures\":[\"LlamaForCausalLM\"]}", "hidden_size"},
        {"not json", "JSON"},
        {"[]", "not a JSON object"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file("config.json", cases[i].config, strlen(cases[i].config));
        CHECK(expect_failure("config", cases[i].want), "config %zu", i);
    }
    /* a config whose shapes disagree with the weights: the tensor is named */
    size_t len;
    kiln_err err;
    char *cfg = kiln_read_file(shared_path("models/stories260K/config.json"), &len, &err);
    json_t *j = json_loads(cfg, 0, NULL);
    free(cfg);
    const char *fields[] = {"hidden_size", "intermediate_size", "num_key_value_heads", "vocab_size", "head_dim"};
    for (size_t i = 0; i < 5; i++) {
        json_t *c = json_deep_copy(j);
        json_object_set_new(c, fields[i], json_integer(json_integer_value(json_object_get(c, fields[i])) * 2));
        char *s = json_dumps(c, 0);
        write_file("config.json", s, strlen(s));
        free(s);
        json_decref(c);
        CHECK(expect_failure(fields[i], "tensor"), "%s doubled", fields[i]);
    }
    json_t *c = json_deep_copy(j);
    json_object_set_new(c, "num_hidden_layers", json_integer(6));
    char *s = json_dumps(c, 0);
    write_file("config.json", s, strlen(s));
    free(s);
    json_decref(c);
    CHECK(expect_failure("layers", "model.layers.5"), "an extra layer names its missing tensor");
    json_decref(j);
    copy_fixture("config.json");
}

TEST(missing_directory) {
    kiln_err err;
    CHECK(kiln_model_open("/nonexistent/model", NULL, &err) == NULL && strstr(err.msg, "/nonexistent/model"),
          "%s", err.msg);
}

int main(void) {
    if (setup()) {
        printf("FAIL setup: cannot read the stories260K fixture\n");
        return 1;
    }
    RUN(intact_checkpoint_loads);
    RUN(truncations);
    RUN(header_byte_flips);
    RUN(field_corruptions);
    RUN(overlap_and_missing);
    RUN(config_mismatches);
    RUN(missing_directory);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    json_decref(orig_hdr);
    free(orig);
    return check_done();
}
