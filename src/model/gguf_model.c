/* gguf_model.c — GGUF files as a kiln checkpoint: path resolution (single, split, directory), the config
 * from the `{arch}.*` keys, the tensors under their Hugging Face names (see gguf_model.h). */
#include "model/gguf_model.h"

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/format.h"
#include "model/gguf.h"
#include "model/gguf_keys.h"
#include "model/model.h"

/* The architectures kiln runs, as GGUF's general.architecture names them. Mistral checkpoints convert to
 * "llama", and so do Mixtral's (a llama file with experts is one: read_moe). permuted: the converter
 * permuted attn_q / attn_k rows (its LlamaModel does; the others' are not: llama.cpp runs them with NEOX,
 * i.e. rotate-half, RoPE). swa_pattern: the period of window layers llama.cpp assumes when a file has a
 * window but no {arch}.attention.sliding_window_pattern (layer l windowed iff n == 0 or l % n < n - 1).
 * windows: llama.cpp applies a window for this architecture at all (its llama, qwen2 / qwen3 and phi3
 * builds ignore {arch}.attention.sliding_window: kiln's writer warns when it writes one there). */
static const struct {
    const char *name, *hf_name;
    kiln_arch arch;
    bool permuted;
    int swa_pattern;
    bool windows;
} gguf_archs[] = {
    {"llama", "LlamaForCausalLM", KILN_ARCH_LLAMA, true, 0, false},
    {"qwen2", "Qwen2ForCausalLM", KILN_ARCH_QWEN2, false, 0, false},
    {"qwen3", "Qwen3ForCausalLM", KILN_ARCH_QWEN3, false, 0, false},
    {"gemma2", "Gemma2ForCausalLM", KILN_ARCH_GEMMA2, false, 2, true},
    {"gemma3", "Gemma3ForCausalLM", KILN_ARCH_GEMMA3, false, 6, true},
    {"phi3", "Phi3ForCausalLM", KILN_ARCH_PHI3, false, 0, false},
    {"olmo2", "Olmo2ForCausalLM", KILN_ARCH_OLMO2, false, 4, true},
    {"qwen3moe", "Qwen3MoeForCausalLM", KILN_ARCH_QWEN3_MOE, false, 0, false},
};
#define N_ARCHS (sizeof gguf_archs / sizeof gguf_archs[0])

/* (gguf_model.h) */
void table_names_join(char *out, size_t cap, const void *table, size_t n, size_t stride) {
    size_t len = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && len < cap; i++) {
        const char *name;
        memcpy(&name, (const char *)table + i * stride, sizeof name);
        len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? ", " : "", name);
    }
}

/* ---- which files ---- */

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* "NAME-00002-of-00003.gguf": the prefix length (up to that '-'), part number and count. */
#define SPLIT_SUFFIX_LEN 20 /* "-NNNNN-of-NNNNN.gguf" */
static bool split_name(const char *path, size_t *prefix, int *no, int *count) {
    size_t n = strlen(path);
    if (n <= SPLIT_SUFFIX_LEN) return false;
    const char *s = path + n - SPLIT_SUFFIX_LEN;
    for (int i = 0; i < SPLIT_SUFFIX_LEN; i++) {
        const bool digit = (i >= 1 && i <= 5) || (i >= 10 && i <= 14);
        if (digit ? (s[i] < '0' || s[i] > '9') : s[i] != "-00000-of-00000.gguf"[i]) return false;
    }
    *prefix = n - SPLIT_SUFFIX_LEN;
    *no = atoi(s + 1);
    *count = atoi(s + 10);
    return *no >= 1 && *count >= 1 && *no <= *count;
}

static bool has_magic(const char *path) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return false;
    struct stat st;
    char buf[4];
    bool yes = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && read(fd, buf, 4) == 4 && gguf_has_magic(buf, 4);
    close(fd);
    return yes;
}

/* The .gguf entries of dir (malloc'd names; *n of them). */
static char **list_gguf(const char *dir, int *n) {
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return NULL;
    char **names = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!ends_with(e->d_name, ".gguf")) continue;
        char **more = realloc(names, (size_t)(*n + 1) * sizeof *names);
        char *copy = more ? strdup(e->d_name) : NULL;
        if (more) names = more;
        if (!copy) break;
        names[(*n)++] = copy;
    }
    closedir(d);
    return names;
}

static void free_names(char **names, int n) {
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* Whether every name is a part of one split set (same prefix, same count). */
static bool one_split_set(char **names, int n) {
    size_t p0, p;
    int no, c0, c;
    if (!split_name(names[0], &p0, &no, &c0)) return false;
    for (int i = 1; i < n; i++)
        if (!split_name(names[i], &p, &no, &c) || p != p0 || c != c0 || strncmp(names[i], names[0], p)) return false;
    return true;
}

bool gguf_source(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return ends_with(path, ".gguf");
    if (!S_ISDIR(st.st_mode)) return ends_with(path, ".gguf") || has_magic(path);
    char *cfg = kiln_path_join(path, "config.json");
    bool has_cfg = cfg && stat(cfg, &st) == 0;
    free(cfg);
    int n;
    char **names = has_cfg ? NULL : list_gguf(path, &n);
    bool yes = names && n > 0;
    if (names) free_names(names, n);
    return yes;
}

/* A directory's one GGUF model (its file, or any part of its one split set); else the path itself. */
static char *resolve_file(const char *path, kiln_err *err) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        char *p = strdup(path);
        if (!p) kiln_err_set(err, "out of memory");
        return p;
    }
    int n;
    char **names = list_gguf(path, &n);
    char *file = NULL;
    if (!names || n == 0) kiln_err_set(err, "%s: no .gguf file in the directory", path);
    else if (n > 1 && !one_split_set(names, n))
        kiln_err_set(err, "%s: the directory holds %d GGUF files that are not one split model; name one with --model",
                     path, n);
    else if (!(file = kiln_path_join(path, names[0]))) kiln_err_set(err, "out of memory");
    if (names) free_names(names, n);
    return file;
}

/* ---- opening the parts ---- */

typedef struct gguf_parts {
    gguf_file *g;
    int n;
} gguf_parts;

static void parts_close(gguf_parts *p) {
    for (int i = 0; p->g && i < p->n; i++) gguf_close(&p->g[i]);
    free(p->g);
    p->g = NULL, p->n = 0;
}

/* A part's split.no (0-based) and split.count agree with its file name. */
static int check_split_keys(const gguf_file *g, int no, int count, kiln_err *err) {
    uint32_t kno = 0, kcount = 1;
    if (gguf_get_u32(g, "split.no", &kno, err) < 0 || gguf_get_u32(g, "split.count", &kcount, err) < 0) return -1;
    if ((int)kcount != count || (count > 1 && (int)kno != no))
        return kiln_err_set(err, "%s: GGUF split.no %u / split.count %u, but this is part %d of %d", g->path, kno,
                            kcount, no + 1, count);
    return 0;
}

static int parts_open(gguf_parts *p, const char *path, kiln_err *err) {
    memset(p, 0, sizeof *p);
    char *file = resolve_file(path, err);
    if (!file) return -1;
    size_t prefix;
    int no, count = 1;
    const bool split = split_name(file, &prefix, &no, &count);
    int rc = 0;
    p->g = calloc((size_t)count, sizeof *p->g);
    if (!p->g) rc = kiln_err_set(err, "out of memory");
    for (int i = 0; !rc && i < count; i++) {
        char *name = split ? malloc(prefix + SPLIT_SUFFIX_LEN + 1) : NULL;
        if (split && name) snprintf(name, prefix + SPLIT_SUFFIX_LEN + 1, "%.*s-%05d-of-%05d.gguf", (int)prefix, file,
                                    i + 1, count);
        const char *part = split ? name : file;
        if (!part) rc = kiln_err_set(err, "out of memory");
        else if (!(rc = gguf_open(&p->g[i], part, err))) p->n++, rc = check_split_keys(&p->g[i], i, count, err);
        free(name);
    }
    free(file);
    if (rc) parts_close(p);
    return rc;
}

static const gguf_tensor *parts_find(const gguf_parts *p, const char *name) {
    for (int i = 0; i < p->n; i++) {
        const gguf_tensor *t = gguf_find_tensor(&p->g[i], name);
        if (t) return t;
    }
    return NULL;
}

char *gguf_model_file(const char *path, kiln_err *err) {
    gguf_parts p;
    if (parts_open(&p, path, err)) return NULL;
    char *file = strdup(p.g[0].path);
    parts_close(&p);
    if (!file) kiln_err_set(err, "out of memory");
    return file;
}

/* ---- the config ---- */

/* The getter's result for "{arch}.suffix" (in key): -1 also when a required key is absent. */
static int arch_got(const gguf_file *g, const char *key, int rc, bool required, kiln_err *err) {
    if (rc == 0 && required) return kiln_err_set(err, "%s: GGUF key '%s' missing", g->path, key);
    return rc < 0 ? -1 : 0;
}

/* "{arch}.suffix" as an integer in [lo, hi]; def when absent (required: absent is an error). */
static int arch_int(const gguf_file *g, const char *arch, const char *suffix, bool required, uint32_t def,
                    uint32_t lo, uint32_t hi, int *out, kiln_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    uint32_t v = def;
    if (arch_got(g, key, gguf_get_u32(g, key, &v, err), required, err)) return -1;
    if (v < lo || v > hi)
        return kiln_err_set(err, "%s: GGUF key '%s' is %u, want %u..%u", g->path, key, v, lo, hi);
    *out = (int)v;
    return 0;
}

static int arch_f32(const gguf_file *g, const char *arch, const char *suffix, bool required, float def, float *out,
                    kiln_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    float v = def;
    if (arch_got(g, key, gguf_get_f32(g, key, &v, err), required, err)) return -1;
    if (!(v > 0) || !isfinite(v)) return kiln_err_set(err, "%s: GGUF key '%s' is %g, want a finite value > 0", g->path, key, v);
    *out = v;
    return 0;
}

static int read_arch(const gguf_file *g, kiln_config *c, int *which, kiln_err *err) {
    const char *a;
    size_t n;
    int rc = gguf_get_str(g, "general.architecture", &a, &n, err);
    if (rc < 0) return -1;
    if (rc == 0) return kiln_err_set(err, "%s: GGUF key 'general.architecture' missing", g->path);
    for (size_t i = 0; i < N_ARCHS; i++)
        if (strlen(gguf_archs[i].name) == n && memcmp(a, gguf_archs[i].name, n) == 0) {
            c->arch = gguf_archs[i].arch;
            snprintf(c->architecture, sizeof c->architecture, "%s", gguf_archs[i].hf_name);
            snprintf(c->model_type, sizeof c->model_type, "%s", gguf_archs[i].name);
            *which = (int)i;
            return 0;
        }
    char known[256];
    table_names_join(known, sizeof known, gguf_archs, N_ARCHS, sizeof gguf_archs[0]);
    return kiln_err_set(err, "%s: GGUF architecture '%.*s' not supported (%s)", g->path, (int)(n > 64 ? 64 : n), a,
                        known);
}

/* One row of the key table (gguf_keys.h) into c. */
static int read_key(const gguf_file *g, const char *arch, const gguf_arch_key *k, kiln_config *c, kiln_err *err) {
    char *f = (char *)c + k->field;
    if (k->kind != GK_INT) {
        float v;
        if (arch_f32(g, arch, k->suffix, k->required, (float)k->dflt, &v, err)) return -1;
        if (k->kind == GK_FLOAT) memcpy(f, &v, sizeof v);
        else *(double *)(void *)f = v;
        return 0;
    }
    int cur, v;
    memcpy(&cur, k->dflt_field ? (char *)c + k->dflt_field : f, sizeof cur);
    if (arch_int(g, arch, k->suffix, k->required, k->dflt_field ? (uint32_t)cur : (uint32_t)k->dflt, k->lo, k->hi, &v, err))
        return -1;
    if (k->same_as_field && v != cur)
        return kiln_err_set(err, "%s: GGUF %s.%s %d differs from key_length %d: partial rotary / unequal value and key "
                                 "lengths not supported", g->path, arch, k->suffix, v, cur);
    memcpy(f, &v, sizeof v);
    return 0;
}

/* The table's keys, but vocab_size (read once the tensors are known). */
static int read_shape(const gguf_file *g, const char *arch, kiln_config *c, kiln_err *err) {
    c->rope_theta = 10000.0;
    for (size_t i = 0; i < gguf_n_arch_keys; i++) {
        const gguf_arch_key *k = &gguf_arch_keys[i];
        if (k->when != GW_ALWAYS || k->field == offsetof(kiln_config, vocab_size)) continue;
        if (k->field == offsetof(kiln_config, head_dim) && !k->same_as_field) c->head_dim = c->hidden_size / c->n_heads;
        if (read_key(g, arch, k, c, err)) return -1;
    }
    if (c->head_dim % 2 || c->n_heads % c->n_kv_heads)
        return kiln_err_set(err, "%s: GGUF heads: key_length %d (want even), %d heads, %d KV heads (want a multiple)",
                            g->path, c->head_dim, c->n_heads, c->n_kv_heads);
    if (c->rope_dim > c->head_dim || c->rope_dim % 2) /* partial rotary (Phi-4-mini): the leading rope_dim of each head */
        return kiln_err_set(err, "%s: GGUF %s.rope.dimension_count %d must be even and at most key_length %d", g->path,
                            arch, c->rope_dim, c->head_dim);
    return 0;
}

/* Mixture of experts: {arch}.expert_count (absent or 0: dense), expert_used_count and the experts' width
 * (expert_feed_forward_length; a llama-architecture Mixtral has none and uses feed_forward_length). A
 * llama file with experts is a Mixtral. llama.cpp renormalises the top-k weights of both (build_moe_ffn
 * with norm_w), so their norm_topk_prob is true. */
static int read_moe(const gguf_file *g, const char *arch, kiln_config *c, kiln_err *err) {
    if (arch_int(g, arch, GK_EXPERT_COUNT, false, 0, 0, KILN_MAX_EXPERTS, &c->n_experts, err)) return -1;
    const bool qwen = c->arch == KILN_ARCH_QWEN3_MOE;
    if (!c->n_experts) return qwen ? kiln_err_set(err, "%s: GGUF key '%s." GK_EXPERT_COUNT "' missing", g->path, arch) : 0;
    if (c->arch == KILN_ARCH_LLAMA) {
        c->arch = KILN_ARCH_MIXTRAL;
        snprintf(c->architecture, sizeof c->architecture, "MixtralForCausalLM");
    } else if (!qwen)
        return kiln_err_set(err, "%s: GGUF %s." GK_EXPERT_COUNT " %d: mixture of experts not supported for %s", g->path, arch,
                            c->n_experts, arch);
    int shared;
    if (arch_int(g, arch, GK_EXPERT_USED, true, 0, 1, (uint32_t)c->n_experts, &c->n_experts_used, err) ||
        arch_int(g, arch, GK_EXPERT_FFN, qwen, (uint32_t)c->intermediate_size, 1, 1u << 24,
                 &c->expert_ffn_size, err) ||
        arch_int(g, arch, "expert_shared_count", false, 0, 0, 0, &shared, err))
        return -1;
    c->norm_topk_prob = true;
    return 0;
}

static int read_rope(const gguf_parts *p, const char *arch, kiln_config *c, kiln_err *err) {
    const gguf_file *g = &p->g[0];
    float factor = 1.0f;
    c->rope_type = KILN_ROPE_DEFAULT;
    c->rope_factor = 1.0;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    const char *t;
    size_t n;
    int rc = gguf_get_str(g, key, &t, &n, err);
    if (rc < 0) return -1;
    if (rc == 0 || (n == 4 && !memcmp(t, "none", 4))) return 0;
    if (n != 6 || memcmp(t, "linear", 6))
        return kiln_err_set(err, "%s: GGUF %s '%.*s' not supported (none, linear)", g->path, key, (int)(n > 32 ? 32 : n), t);
    if (arch_f32(g, arch, "rope.scaling.factor", true, 1.0f, &factor, err)) return -1;
    c->rope_type = KILN_ROPE_LINEAR;
    c->rope_factor = factor;
    return 0;
}

/* One of longrope's factor tensors: rope_dim / 2 f32 values > 0. */
static int read_factors(const gguf_parts *p, const char *name, const kiln_config *c, float *out, kiln_err *err) {
    const gguf_tensor *t = parts_find(p, name);
    const int n = c->rope_dim / 2;
    if (!t || t->type != kern_formats[KILN_DT_F32].gguf_type || t->n_dims != 1 || t->ne[0] != n || n > KILN_ROPE_MAX_FACTORS)
        return kiln_err_set(err, "%s: GGUF tensor '%s' must be %d f32 values (rope dims / 2, at most %d)", p->g[0].path,
                            name, n, KILN_ROPE_MAX_FACTORS);
    memcpy(out, t->data, (size_t)n * sizeof(float));
    for (int i = 0; i < n; i++)
        if (!(out[i] > 0) || !isfinite(out[i]))
            return kiln_err_set(err, "%s: GGUF tensor '%s'[%d] is %g, want a finite value > 0", p->g[0].path, name, i, out[i]);
    return 0;
}

/* Longrope (Phi-3 128k), as llama.cpp's converter writes it: rope_factors_short / rope_factors_long tensors,
 * {arch}.rope.scaling.attn_factor and .original_context_length (see kiln_config). */
static int read_longrope(const gguf_parts *p, const char *arch, kiln_config *c, kiln_err *err) {
    if (!parts_find(p, GGUF_ROPE_FACTORS_LONG) && !parts_find(p, GGUF_ROPE_FACTORS_SHORT)) return 0;
    if (c->rope_type != KILN_ROPE_DEFAULT)
        return kiln_err_set(err, "%s: GGUF has longrope factors and another rope scaling", p->g[0].path);
    float attn = 1.0f;
    c->rope_type = KILN_ROPE_LONGROPE;
    if (read_factors(p, GGUF_ROPE_FACTORS_SHORT, c, c->rope_short_factor, err) ||
        read_factors(p, GGUF_ROPE_FACTORS_LONG, c, c->rope_long_factor, err) ||
        arch_f32(&p->g[0], arch, GK_ROPE_ATTN_FACTOR, false, 1.0f, &attn, err) ||
        arch_int(&p->g[0], arch, GK_ROPE_ORIG_CTX, true, 0, 1, 1u << 28,
                 &c->rope_original_max_pos, err))
        return -1;
    c->rope_attn_factor = attn;
    return 0;
}

#define MAX_TOKEN_ID (1u << 30)

/* BOS and the end-of-generation ids (eos, eot, eom: what llama.cpp stops on) from tokenizer.ggml.*. */
static int read_special(const gguf_file *g, kiln_config *c, kiln_err *err) {
    uint32_t v;
    c->bos_token_id = -1;
    int rc = gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &v, err);
    if (rc < 0) return -1;
    if (rc == 1 && v < MAX_TOKEN_ID) c->bos_token_id = (int)v;
    static const char *const eog[] = {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                                      "tokenizer.ggml.eom_token_id"};
    c->n_eos_token_ids = 0;
    for (size_t i = 0; i < sizeof eog / sizeof eog[0]; i++) {
        if ((rc = gguf_get_u32(g, eog[i], &v, err)) < 0) return -1;
        bool dup = false;
        for (int j = 0; j < c->n_eos_token_ids; j++) dup |= c->eos_token_ids[j] == (int)v;
        if (rc == 1 && v < MAX_TOKEN_ID && !dup) c->eos_token_ids[c->n_eos_token_ids++] = (int)v;
    }
    return 0;
}

/* Whether the file's general.name or general.basename mentions Mistral (the converter labels Mistral "llama"). */
static bool named_mistral(const gguf_file *g) {
    static const char *const keys[] = {"general.name", "general.basename"};
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        const char *v;
        size_t n;
        kiln_err ignored;
        if (gguf_get_str(g, keys[k], &v, &n, &ignored) != 1) continue;
        for (size_t i = 0; i + 7 <= n; i++)
            if (strncasecmp(v + i, "mistral", 7) == 0) return true;
    }
    return false;
}

/* The sliding window as llama.cpp reads it: {arch}.attention.sliding_window (Gemma 2: 4096 when absent), its
 * layers from {arch}.attention.sliding_window_pattern, a per-layer bool array or a period n (layer l windowed
 * iff n == 0 or l % n < n - 1), by default the architecture's (gguf_archs' swa_pattern). */
static int read_window(const gguf_file *g, int which, kiln_config *c, kiln_err *err) {
    const char *arch = gguf_archs[which].name;
    char key[128];
    int window = 0, pattern = gguf_archs[which].swa_pattern;
    if (arch_int(g, arch, GK_WINDOW, false, c->arch == KILN_ARCH_GEMMA2 ? 4096 : 0, 0, 1u << 30, &window, err))
        return -1;
    c->window_absent = window == 0 && c->arch == KILN_ARCH_LLAMA && named_mistral(g);
    if (!window) return 0;
    c->sliding_window = window;
    snprintf(key, sizeof key, "%s." GK_WINDOW_PATTERN, arch);
    gguf_vtype et;
    uint64_t n;
    int rc = gguf_get_arr(g, key, &et, &n, err);
    if (rc < 0) return -1;
    const gguf_kv *kv = rc ? gguf_find_kv(g, key) : NULL;
    if (kv && (et != GGUF_BOOL || n != (uint64_t)c->n_layers))
        return kiln_err_set(err, "%s: GGUF key '%s' must be %d bools (one per layer)", g->path, key, c->n_layers);
    if (!kv && arch_int(g, arch, GK_WINDOW_PATTERN, false, (uint32_t)pattern, 0, 1u << 20, &pattern, err)) return -1;
    for (int l = 0; l < c->n_layers; l++) {
        bool on = kv ? ((const unsigned char *)gguf_arr_data(kv))[l] != 0 : gguf_swa_period_windows(pattern, l);
        if (on) c->swa_layers[l / 64] |= 1ull << (l % 64);
    }
    return 0;
}

/* (gguf_model.h) llama.cpp's set_swa_pattern. */
bool gguf_swa_period_windows(int pattern, int layer) { return pattern == 0 || layer % pattern < pattern - 1; }

/* Soft-capping: a non-negative float; def when absent. */
static int arch_cap(const gguf_file *g, const char *arch, const char *suffix, float def, float *out, kiln_err *err) {
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    float v = def;
    if (gguf_get_f32(g, key, &v, err) < 0) return -1;
    if (!(v >= 0) || !isfinite(v)) return kiln_err_set(err, "%s: GGUF key '%s' is %g, want a finite value >= 0", g->path, key, v);
    *out = v;
    return 0;
}

/* Gemma 2 / 3 as llama.cpp runs them: the norms already hold 1 + w (its converter adds the 1), the embedding
 * times sqrt(n_embd), the score scale 1 / sqrt(head_dim) except for the 27B models (46 / 62 layers:
 * 1 / sqrt(n_embd / n_head), Gemma's query_pre_attn_scalar), soft-capping (Gemma 2's defaults 50 / 30) and
 * the window layers' rope.freq_base_swa (Gemma 3 default 10000; Gemma 2: the global base). */
static int read_gemma(const gguf_file *g, const char *arch, kiln_config *c, kiln_err *err) {
    const bool g2 = c->arch == KILN_ARCH_GEMMA2;
    if (!g2 && c->arch != KILN_ARCH_GEMMA3) return 0;
    c->hidden_act = KILN_ACT_GELU_TANH;
    c->embed_scale = sqrtf((float)c->hidden_size);
    const bool is_27b = c->n_layers == (g2 ? 46 : 62);
    c->attn_scale = 1.0f / sqrtf((float)(is_27b ? c->hidden_size / c->n_heads : c->head_dim));
    float local = g2 ? 0.0f : 10000.0f;
    if (arch_cap(g, arch, GK_ATTN_SOFTCAP, g2 ? 50.0f : 0.0f, &c->attn_logit_softcap, err) ||
        arch_cap(g, arch, GK_FINAL_SOFTCAP, g2 ? 30.0f : 0.0f, &c->final_logit_softcap, err) ||
        arch_cap(g, arch, GK_ROPE_BASE_SWA, local, &local, err))
        return -1;
    c->rope_local_theta = local;
    return 0;
}

static int config_from_parts(const gguf_parts *p, kiln_config *c, bool *permuted, kiln_err *err) {
    memset(c, 0, sizeof *c);
    const gguf_file *g = &p->g[0];
    int which = 0;
    if (read_arch(g, c, &which, err)) return -1;
    const char *arch = gguf_archs[which].name;
    *permuted = gguf_archs[which].permuted;
    if (read_shape(g, arch, c, err) || read_moe(g, arch, c, err) || read_rope(p, arch, c, err) ||
        read_special(g, c, err) || read_window(g, which, c, err) || read_gemma(g, arch, c, err))
        return -1;
    const gguf_tensor *e = parts_find(p, "token_embd.weight");
    if (!e || e->n_dims != 2) return kiln_err_set(err, "%s: GGUF tensor 'token_embd.weight' missing or not 2-D", g->path);
    c->vocab_size = (int)e->ne[1];
    for (size_t i = 0; i < gguf_n_arch_keys; i++)
        if (gguf_arch_keys[i].field == offsetof(kiln_config, vocab_size) && read_key(g, arch, &gguf_arch_keys[i], c, err))
            return -1;
    c->tie_word_embeddings = !parts_find(p, "output.weight");
    c->attention_bias = c->arch == KILN_ARCH_QWEN2 || parts_find(p, "blk.0.attn_q.bias");
    c->qk_norm = c->arch == KILN_ARCH_QWEN3 || c->arch == KILN_ARCH_GEMMA3 || c->arch == KILN_ARCH_QWEN3_MOE;
    config_arch_flags(c);
    if (read_longrope(p, arch, c, err)) return -1;
    c->torch_dtype = e->type == kern_formats[KILN_DT_BF16].gguf_type  ? KILN_DT_BF16
                     : e->type == kern_formats[KILN_DT_F16].gguf_type ? KILN_DT_F16
                                                                       : KILN_DT_F32;
    return 0;
}

int gguf_config_load(const char *path, kiln_config *cfg, kiln_err *err) {
    gguf_parts p;
    if (parts_open(&p, path, err)) return -1;
    bool permuted;
    int rc = config_from_parts(&p, cfg, &permuted, err);
    parts_close(&p);
    return rc;
}

/* ---- the tensors ---- */

/* The kiln format a ggml type is computed in, or -1. */
static int dtype_of(int ggml_type) {
    for (int i = 0; i < KILN_DT_COUNT; i++)
        if (kern_formats[i].gguf_type == ggml_type) return i;
    return -1;
}

/* A 3-D tensor is llama.cpp's stack of experts ([n_experts, rows, cols], ffn_*_exps): the loader sees one
 * 2-D tensor per expert, named "NAME#e" (gguf_expert_name), viewing its slice of the stack. (A stack of
 * more than KILN_MAX_EXPERTS stays whole: no model kiln runs uses it.) */
static bool stacked(const gguf_tensor *x) { return x->n_dims == 3 && x->ne[2] <= KILN_MAX_EXPERTS; }
static int entries_of(const gguf_tensor *x) { return stacked(x) ? (int)x->ne[2] : 1; }

static void gguf_expert_name(char *out, size_t n, const char *name, int expert) {
    snprintf(out, n, "%s#%d", name, expert);
}

/* One part's tensors as an st_file (GGUF names for now, shapes outermost first); takes over g's mapping. */
static int part_to_file(gguf_file *g, st_file *f, kiln_err *err) {
    size_t n = 1;
    for (int i = 0; i < g->n_tensors; i++) n += (size_t)entries_of(&g->tensors[i]);
    f->tensors = calloc(n, sizeof *f->tensors);
    if (!f->tensors) return kiln_err_set(err, "out of memory");
    for (int i = 0; i < g->n_tensors; i++) {
        const gguf_tensor *x = &g->tensors[i];
        const bool slices = stacked(x);
        for (int e = 0; e < entries_of(x); e++) {
            st_tensor *t = &f->tensors[f->n_tensors];
            char name[200];
            gguf_expert_name(name, sizeof name, x->name, e);
            if (!(t->name = strdup(slices ? name : x->name))) return kiln_err_set(err, "out of memory");
            f->n_tensors++;
            /* a type kiln does not compute is kept as -1 - its ggml id, for the error if the model uses it */
            int dt = dtype_of(x->type);
            t->dt = (kiln_dtype)(dt >= 0 ? dt : -1 - x->type);
            t->ndim = slices ? 2 : x->n_dims;
            for (int d = 0; d < t->ndim; d++) t->shape[d] = x->ne[t->ndim - 1 - d];
            t->nbytes = x->nbytes / (size_t)entries_of(x);
            t->data = (const char *)x->data + (size_t)e * t->nbytes;
        }
    }
    f->path = g->path, f->map = g->map, f->size = g->size;
    g->path = NULL, g->map = NULL;
    return 0;
}

typedef struct naming {
    st_set *s;
    bool permuted;
    const kiln_config *cfg;
    st_tensor **perm; /* the tensors to un-permute and their head counts */
    int *perm_heads, n_perm;
} naming;

/* The formats kiln computes, for the error naming a type it does not. */
static void format_list(char *out, size_t n) {
    size_t o = 0;
    out[0] = 0;
    for (int i = 0; i < KILN_DT_COUNT && o < n; i++)
        o += (size_t)snprintf(out + o, n - o, "%s%s", i ? ", " : "", gguf_type_name(kern_formats[i].gguf_type));
}

/* Gives the tensor d describes its Hugging Face name, checks its type, and notes q/k for un-permuting. */
static int name_tensor(void *ud, const tensor_desc *d, int layer, const char *name, int64_t rows, int64_t cols,
                       kiln_err *err) {
    (void)cols;
    naming *nm = ud;
    char stack[160], gname[200];
    tensor_name(d, true, layer, stack, sizeof stack);
    if (d->per_expert) gguf_expert_name(gname, sizeof gname, stack, d->expert); /* its slice (part_to_file) */
    else snprintf(gname, sizeof gname, "%s", stack);
    const st_file *f;
    st_tensor *t = (st_tensor *)st_set_find(nm->s, gname, &f);
    if (!t) return 0; /* model_find_tensor reports it missing, under its GGUF name */
    if ((int)t->dt < 0) {
        char list[128];
        format_list(list, sizeof list);
        return kiln_err_set(err, "%s: GGUF tensor '%s' has type %s, which kiln does not compute yet (%s)", f->path,
                            gname, gguf_type_name(-1 - (int)t->dt), list);
    }
    if ((uintptr_t)t->data % (kern_is_quantised(t->dt) ? 1 : kern_formats[t->dt].block_bytes))
        return kiln_err_set(err, "%s: GGUF tensor '%s': data not aligned to its elements", f->path, gname);
    char *hf = strdup(name);
    if (!hf) return kiln_err_set(err, "out of memory");
    free(t->name);
    t->name = hf;
    const int heads = nm->permuted ? gguf_permuted_heads(nm->cfg, d, layer) : 0;
    if (heads && t->shape[0] == rows) {
        nm->perm[nm->n_perm] = t;
        nm->perm_heads[nm->n_perm++] = heads;
    }
    return 0;
}

/* (gguf_model.h) */
int gguf_permuted_heads(const kiln_config *c, const tensor_desc *d, int layer) {
    const bool q = d->offset == offsetof(kiln_layer, wq) || d->offset == offsetof(kiln_layer, bq);
    const bool k = d->offset == offsetof(kiln_layer, wk) || d->offset == offsetof(kiln_layer, bk);
    return layer < 0 ? 0 : q ? c->n_heads : k ? c->n_kv_heads : 0;
}

/* (gguf_model.h) The converter's per-head row permutation: its row h*D + 2i + j is Hugging Face's row
 * h*D + j*D/2 + i (D rows per head, j in {0, 1}). Rows move whole: exact for every type. */
void gguf_permute_rows(char *dst, const char *src, int64_t rows, size_t row_bytes, int heads, bool to_gguf) {
    const int64_t D = rows / heads, half = D / 2;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t j = 0; j < 2; j++)
            for (int64_t i = 0; i < half; i++) {
                const size_t hf = (size_t)(h * D + j * half + i) * row_bytes, gg = (size_t)(h * D + 2 * i + j) * row_bytes;
                memcpy(dst + (to_gguf ? gg : hf), src + (to_gguf ? hf : gg), row_bytes);
            }
}

/* (gguf_model.h) */
const char *gguf_arch_name(kiln_arch a, bool *permuted, int *swa_pattern, bool *windows) {
    if (a == KILN_ARCH_MISTRAL || a == KILN_ARCH_MIXTRAL) a = KILN_ARCH_LLAMA; /* the converter writes them as llama */
    for (size_t i = 0; i < N_ARCHS; i++)
        if (gguf_archs[i].arch == a) {
            *permuted = gguf_archs[i].permuted, *swa_pattern = gguf_archs[i].swa_pattern, *windows = gguf_archs[i].windows;
            return gguf_archs[i].name;
        }
    return NULL;
}

/* Copies every noted q/k tensor un-permuted into one buffer the first file owns; drops the source pages. */
static int unpermute_all(naming *nm, kiln_err *err) {
    size_t total = 0;
    for (int i = 0; i < nm->n_perm; i++) total += nm->perm[i]->nbytes;
    char *buf = malloc(total + 1);
    if (!buf) return kiln_err_set(err, "out of memory un-permuting q/k (%zu MiB)", total >> 20);
    nm->s->files[0].owned = buf;
    nm->s->files[0].owned_len = total;
    for (int i = 0; i < nm->n_perm; i++) {
        st_tensor *t = nm->perm[i];
        gguf_permute_rows(buf, t->data, t->shape[0], t->nbytes / (size_t)t->shape[0], nm->perm_heads[i], false);
        model_drop_source_pages(nm->s, t->data, t->nbytes);
        t->data = buf;
        buf += t->nbytes;
    }
    return 0;
}

static int name_all(st_set *s, const kiln_config *cfg, bool permuted, kiln_err *err) {
    naming nm = {s, permuted, cfg, NULL, NULL, 0};
    const size_t cap = (size_t)cfg->n_layers * 4 + 1;
    nm.perm = malloc(cap * sizeof *nm.perm);
    nm.perm_heads = malloc(cap * sizeof *nm.perm_heads);
    int rc = nm.perm && nm.perm_heads ? tensors_each(cfg, name_tensor, &nm, err) : kiln_err_set(err, "out of memory");
    if (!rc) rc = unpermute_all(&nm, err);
    free(nm.perm), free(nm.perm_heads);
    return rc;
}

int gguf_set_open(st_set *s, const char *path, kiln_err *err) {
    memset(s, 0, sizeof *s);
    gguf_parts p;
    if (parts_open(&p, path, err)) return -1;
    kiln_config cfg;
    bool permuted;
    int rc = config_from_parts(&p, &cfg, &permuted, err);
    if (!rc && !(s->source = strdup(p.g[0].path))) rc = kiln_err_set(err, "out of memory");
    if (!rc && !(s->files = calloc((size_t)p.n, sizeof *s->files))) rc = kiln_err_set(err, "out of memory");
    for (int i = 0; !rc && i < p.n; i++) {
        for (int j = 0; j < p.g[i].n_tensors && !rc; j++)
            if (st_set_find(s, p.g[i].tensors[j].name, NULL))
                rc = kiln_err_set(err, "%s: GGUF tensor '%s' is also in an earlier part", p.g[i].path,
                                  p.g[i].tensors[j].name);
        if (!rc) rc = part_to_file(&p.g[i], &s->files[i], err);
        s->n_files++;
    }
    parts_close(&p);
    if (!rc) rc = name_all(s, &cfg, permuted, err);
    return rc;
}
