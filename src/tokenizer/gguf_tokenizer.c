/* gguf_tokenizer.c — kiln_tokenizer_open on a GGUF file (or a directory holding one): reads the
 * tokenizer.ggml.* keys and tokenizer.chat_template through the container parser and hands the arrays
 * to gguf_vocab.c. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model/gguf.h"
#include "tokenizer/tok_internal.h"

static bool ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), k = strlen(tail);
    return n >= k && !strcmp(s + n - k, tail);
}

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The GGUF a directory holds: its only .gguf, or the first part of its only split set. NULL (err set)
 * when there is none or more than one model; *found: how many .gguf files it holds. */
static char *dir_gguf(const char *dir, int *found, kiln_err *err) {
    DIR *d = opendir(dir);
    *found = 0;
    if (!d) return kiln_err_set(err, "%s: cannot read the directory", dir), NULL;
    char *pick = NULL;
    int n = 0, firsts = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!ends_with(e->d_name, ".gguf")) continue;
        n++;
        bool first = strstr(e->d_name, "-00001-of-") != NULL;
        if (first) firsts++;
        if (!pick || first) free(pick), pick = kiln_path_join(dir, e->d_name);
        if (!pick) break;
    }
    closedir(d);
    *found = n;
    if (pick && (n == 1 || firsts == 1)) return pick;
    free(pick);
    if (!n) return kiln_err_set(err, "%s: no tokenizer.json and no .gguf file", dir), NULL;
    if (n > 1) return kiln_err_set(err, "%s holds %d GGUF files: name the one to use", dir, n), NULL;
    return kiln_err_set(err, "%s: " TK_OOM, dir), NULL;
}

bool tk_gguf_source(const char *path) {
    if (ends_with(path, ".gguf") && !is_dir(path)) return true; /* missing: the GGUF reader says so */
    if (is_file(path)) {
        unsigned char magic[4] = {0};
        FILE *f = fopen(path, "rb");
        size_t got = f ? fread(magic, 1, sizeof magic, f) : 0;
        if (f) fclose(f);
        return gguf_has_magic(magic, got);
    }
    char *tj = kiln_path_join(path, "tokenizer.json");
    bool json = tj && is_file(tj);
    free(tj);
    if (json) return false;
    kiln_err e = {0};
    int found;
    free(dir_gguf(path, &found, &e));
    return found > 0;
}

/* The arrays read from the file; they point into the mapping, these tables are ours. */
typedef struct {
    tk_gguf_vocab v;
    const char **tokens, **merges;
    size_t *token_len, *merge_len;
    float *scores;
    int32_t *types;
    char *model, *pre, *tmpl;
    char **names, **named;
} vocab_read;

static void vocab_read_free(vocab_read *r) {
    free(r->tokens), free(r->merges), free(r->token_len), free(r->merge_len), free(r->scores), free(r->types);
    free(r->model), free(r->pre), free(r->tmpl);
    for (size_t i = 0; i < r->v.n_named; i++) free(r->names[i]), free(r->named[i]);
    free(r->names), free(r->named);
}

/* An array key of element type want: 1 with its kv, 0 when absent, -1 (err) when wrong. */
static int array_kv(const gguf_file *g, const char *key, gguf_vtype want, const gguf_kv **kv, kiln_err *err) {
    gguf_vtype et;
    uint64_t n;
    int rc = gguf_get_arr(g, key, &et, &n, err);
    if (rc <= 0) return rc;
    if (et != want) return kiln_err_set(err, "%s: %s is an array of %s, not %s", g->path, key, gguf_vtype_name(et), gguf_vtype_name(want));
    *kv = gguf_find_kv(g, key);
    return 1;
}

static int read_strings(const gguf_file *g, const char *key, const char ***s, size_t **len, size_t *n, kiln_err *err) {
    const gguf_kv *kv = NULL;
    int rc = array_kv(g, key, GGUF_STRING, &kv, err);
    if (rc <= 0) return rc;
    if (kv->arr_n > (uint64_t)INT32_MAX) return kiln_err_set(err, "%s: %s has too many entries", g->path, key);
    *n = (size_t)kv->arr_n;
    *s = malloc((*n + 1) * sizeof **s), *len = malloc((*n + 1) * sizeof **len);
    if (!*s || !*len) return kiln_err_set(err, TK_OOM);
    for (size_t i = 0; i < *n; i++) (*s)[i] = gguf_arr_str(kv, i, &(*len)[i]);
    return 1;
}

/* scores (float) and token_type (int32): one per token when present. */
static int read_per_token(const gguf_file *g, vocab_read *r, kiln_err *err) {
    const gguf_kv *sk = NULL, *tk = NULL;
    int rs = gguf_find_kv(g, "tokenizer.ggml.scores") ? array_kv(g, "tokenizer.ggml.scores", GGUF_FLOAT32, &sk, err) : 0;
    int rt = rs >= 0 && gguf_find_kv(g, "tokenizer.ggml.token_type") ? array_kv(g, "tokenizer.ggml.token_type", GGUF_INT32, &tk, err) : 0;
    if (rs < 0 || rt < 0) return -1;
    size_t n = r->v.n_tokens;
    if ((sk && sk->arr_n != n) || (tk && tk->arr_n != n))
        return kiln_err_set(err, "%s: tokenizer.ggml.%s has %llu entries for %zu tokens", g->path, sk && sk->arr_n != n ? "scores" : "token_type",
                            (unsigned long long)(sk && sk->arr_n != n ? sk->arr_n : tk->arr_n), n);
    if ((sk && !(r->scores = malloc(n * sizeof *r->scores))) || (tk && !(r->types = malloc(n * sizeof *r->types))))
        return kiln_err_set(err, TK_OOM);
    for (size_t i = 0; i < n; i++) {
        double s;
        int64_t t;
        if (sk && !gguf_arr_f64(sk, i, &s)) r->scores[i] = (float)s;
        if (tk && !gguf_arr_int(tk, i, &t)) r->types[i] = (int32_t)t;
    }
    r->v.scores = r->scores, r->v.types = r->types;
    return 0;
}

/* A token id key: -1 when absent. */
static int read_id(const gguf_file *g, const char *what, int32_t *id, kiln_err *err) {
    char key[64];
    snprintf(key, sizeof key, "tokenizer.ggml.%s_token_id", what);
    *id = -1;
    return gguf_get_i32(g, key, id, err) < 0 ? -1 : 0;
}

static int read_bool(const gguf_file *g, const char *key, bool dflt, bool *out, kiln_err *err) {
    *out = dflt;
    return gguf_get_bool(g, key, out, err) < 0 ? -1 : 0;
}

/* tokenizer.chat_template, and the named ones (tokenizer.chat_templates lists the names, each in
 * tokenizer.chat_template.NAME). */
static int read_templates(const gguf_file *g, vocab_read *r, kiln_err *err) {
    if (gguf_get_strdup(g, "tokenizer.chat_template", &r->tmpl, err) < 0) return -1;
    r->v.chat_template = r->tmpl;
    const char **names = NULL;
    size_t *len = NULL, n = 0;
    int rc = read_strings(g, "tokenizer.chat_templates", &names, &len, &n, err);
    if (rc > 0 && (!(r->names = calloc(n + 1, sizeof *r->names)) || !(r->named = calloc(n + 1, sizeof *r->named))))
        rc = kiln_err_set(err, TK_OOM);
    for (size_t i = 0; rc > 0 && i < n; i++) {
        char key[320];
        snprintf(key, sizeof key, "tokenizer.chat_template.%.*s", (int)(len[i] < 256 ? len[i] : 256), names[i]);
        char *src = NULL;
        if (gguf_get_strdup(g, key, &src, err) < 0) rc = -1;
        else if (!src) rc = kiln_err_set(err, "%s: tokenizer.chat_templates names \"%s\" but %s is absent", g->path, key + 24, key);
        else if (!(r->names[i] = strndup(names[i], len[i]))) free(src), rc = kiln_err_set(err, TK_OOM);
        else r->named[i] = src, r->v.n_named++;
    }
    free(names), free(len);
    r->v.named_names = (const char **)r->names, r->v.named_templates = (const char **)r->named;
    return rc < 0 ? -1 : 0;
}

/* Without tokenizer.ggml.unknown_token_id the token typed UNKNOWN is the unknown token. */
static int32_t typed_unknown(const tk_gguf_vocab *v) {
    for (size_t i = 0; v->types && i < v->n_tokens; i++)
        if (v->types[i] == TK_TYPE_UNKNOWN) return (int32_t)i;
    return -1;
}

static int read_vocab(const gguf_file *g, vocab_read *r, kiln_err *err) {
    tk_gguf_vocab *v = &r->v;
    if (gguf_get_strdup(g, "tokenizer.ggml.model", &r->model, err) < 0) return -1;
    if (!r->model) return kiln_err_set(err, "%s: no tokenizer.ggml.model (the file carries no tokenizer)", g->path);
    if (gguf_get_strdup(g, "tokenizer.ggml.pre", &r->pre, err) < 0) return -1;
    v->model = r->model, v->pre = r->pre;
    int rc = read_strings(g, "tokenizer.ggml.tokens", &r->tokens, &r->token_len, &v->n_tokens, err);
    if (rc == 0) return kiln_err_set(err, "%s: no tokenizer.ggml.tokens", g->path);
    if (rc < 0 || read_per_token(g, r, err)) return -1;
    v->tokens = r->tokens, v->token_len = r->token_len;
    if (read_strings(g, "tokenizer.ggml.merges", &r->merges, &r->merge_len, &v->n_merges, err) < 0) return -1;
    v->merges = r->merges, v->merge_len = r->merge_len;
    bool llama = !strcmp(r->model, "llama");
    if (read_id(g, "bos", &v->bos, err) || read_id(g, "eos", &v->eos, err) || read_id(g, "unknown", &v->unk, err) ||
        read_id(g, "padding", &v->pad, err))
        return -1;
    if (v->unk < 0) v->unk = typed_unknown(v);
    /* defaults as transformers' LlamaTokenizer (add BOS) and llama.cpp's BPE vocabularies (none) */
    if (read_bool(g, "tokenizer.ggml.add_bos_token", llama, &v->add_bos, err) ||
        read_bool(g, "tokenizer.ggml.add_eos_token", false, &v->add_eos, err) ||
        read_bool(g, "tokenizer.ggml.add_space_prefix", true, &v->add_space_prefix, err))
        return -1;
    return read_templates(g, r, err);
}

/* The tokenizer of an opened file; closes it. */
static kiln_tokenizer *open_parsed(gguf_file *g, const char *path, kiln_err *err) {
    vocab_read r = {0};
    kiln_err e = {0};
    kiln_tokenizer *t = NULL;
    if (read_vocab(g, &r, &e)) kiln_err_set(err, "%s", e.msg);
    else t = tk_tokenizer_from_vocab(&r.v, path, err);
    vocab_read_free(&r);
    gguf_close(g);
    return t;
}

/* A later part of a split file (NAME-0000k-of-0000N.gguf, split.no > 0): the first part, which alone
 * holds the metadata, as a new path; NULL when path is no such part (or out of memory). */
static char *first_split_part(const gguf_file *g, const char *path) {
    uint32_t no = 0;
    kiln_err e = {0};
    const char *base = strrchr(path, '/'), *at = NULL;
    base = base ? base + 1 : path;
    if (gguf_get_u32(g, "split.no", &no, &e) != 1 || no == 0) return NULL;
    for (const char *p = strstr(base, "-of-"); p; p = strstr(p + 1, "-of-")) at = p; /* the last one */
    if (!at || at - base < 6 || at[-6] != '-') return NULL;
    char *first = strdup(path);
    if (first) memcpy(first + (at - 5 - path), "00001", 5);
    return first;
}

static kiln_tokenizer *open_file(const char *path, kiln_err *err) {
    gguf_file g = {0};
    if (gguf_open(&g, path, err)) return NULL;
    char *first = gguf_find_kv(&g, "tokenizer.ggml.model") ? NULL : first_split_part(&g, path);
    if (!first) return open_parsed(&g, path, err);
    gguf_close(&g);
    kiln_err e = {0};
    kiln_tokenizer *t = gguf_open(&g, first, &e) ? NULL : open_parsed(&g, first, &e);
    if (!t) kiln_err_set(err, "%s (the first part of %s)", e.msg, path);
    free(first);
    return t;
}

kiln_tokenizer *tk_gguf_open(const char *path, kiln_err *err) {
    if (!is_dir(path)) return open_file(path, err);
    int found;
    char *file = dir_gguf(path, &found, err);
    kiln_tokenizer *t = file ? open_file(file, err) : NULL;
    free(file);
    return t;
}
