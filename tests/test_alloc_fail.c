/* test_alloc_fail.c — out of memory at every allocation of a small run, for each public entry point.
 *
 * The Makefile links this test with -Wl,--wrap=malloc,... so every allocation libkiln.a makes (and
 * jansson's, through json_set_alloc_funcs) comes here first. For an entry point we count the
 * allocations of one successful call (total), then call it again once per N in 1..total with the N-th
 * allocation failing. Each call must either succeed or fail with a one-line kiln_err, and free
 * everything it allocated: every allocation is recorded in a pointer set, so a leak shows as a live
 * count that is not back where it started, with the N that caused it. Each entry point's sweep runs in
 * a forked child, so a crash (or an ASan report) is that entry point's FAIL, not the end of the test;
 * under LeakSanitizer the child's exit is also a leak check.
 */
#include <errno.h>
#include <execinfo.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "common/fileio.h"
#include "kiln.h"

/* ---- the allocation wrappers ---- */
void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void __real_free(void *p);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);

static atomic_long calls;   /* allocations since the counter was reset */
static atomic_long fail_at; /* the allocation that fails (1-based); 0: none */

/* The live-pointer set: open addressing over a static table (no allocation of its own). */
#define SET_BITS 21
#define SET_CAP ((size_t)1 << SET_BITS)
#define TOMB ((uintptr_t)1)
static uintptr_t set[SET_CAP];
static size_t set_live, set_used; /* used counts tombstones too */
static pthread_mutex_t set_mu = PTHREAD_MUTEX_INITIALIZER;

static size_t slot_of(uintptr_t p) { return (size_t)((p >> 4) * 0x9E3779B97F4A7C15ull >> (64 - SET_BITS)); }

static void set_rehash(void) { /* drops the tombstones: re-inserts in place through a sweep */
    static uintptr_t tmp[SET_CAP];
    memcpy(tmp, set, sizeof set);
    memset(set, 0, sizeof set);
    set_used = 0;
    for (size_t i = 0; i < SET_CAP; i++)
        if (tmp[i] > TOMB) {
            size_t j = slot_of(tmp[i]);
            while (set[j]) j = (j + 1) & (SET_CAP - 1);
            set[j] = tmp[i], set_used++;
        }
}

static bool tracking; /* on in the sweeping children only: the parent's fixture building is big */

static void set_add(void *p) {
    if (!p || !tracking) return;
    pthread_mutex_lock(&set_mu);
    if (set_used + 1 > SET_CAP / 2) set_rehash();
    if (set_live + 1 > SET_CAP / 2) { /* a test this small never gets here */
        fprintf(stderr, "test_alloc_fail: pointer set full\n");
        abort();
    }
    size_t i = slot_of((uintptr_t)p);
    while (set[i] > TOMB) i = (i + 1) & (SET_CAP - 1);
    if (!set[i]) set_used++;
    set[i] = (uintptr_t)p, set_live++;
    pthread_mutex_unlock(&set_mu);
}

static void set_del(void *p) { /* pointers allocated outside the wrappers are not in it: ignored */
    if (!p) return;
    pthread_mutex_lock(&set_mu);
    for (size_t i = slot_of((uintptr_t)p); set[i]; i = (i + 1) & (SET_CAP - 1))
        if (set[i] == (uintptr_t)p) {
            set[i] = TOMB, set_live--;
            break;
        }
    pthread_mutex_unlock(&set_mu);
}

static size_t live_count(void) {
    pthread_mutex_lock(&set_mu);
    size_t n = set_live;
    pthread_mutex_unlock(&set_mu);
    return n;
}

static bool should_fail(void) {
    long n = atomic_fetch_add(&calls, 1) + 1;
    return n == atomic_load(&fail_at);
}

/* Fails when it is this allocation's turn, else allocates through the real function and records it. */
#define COUNTED(real_call)                  \
    do {                                    \
        if (should_fail()) return NULL;     \
        void *p_ = (real_call);             \
        set_add(p_);                        \
        return p_;                          \
    } while (0)

void *__wrap_malloc(size_t n) { COUNTED(__real_malloc(n)); }
void *__wrap_calloc(size_t k, size_t n) { COUNTED(__real_calloc(k, n)); }
char *__wrap_strdup(const char *s) { COUNTED(__real_strdup(s)); }
char *__wrap_strndup(const char *s, size_t n) { COUNTED(__real_strndup(s, n)); }
void *__wrap_aligned_alloc(size_t a, size_t n) { COUNTED(__real_aligned_alloc(a, n)); }
void *__wrap_realloc(void *p, size_t n) {
    if (should_fail()) return NULL; /* p stays valid, as realloc leaves it */
    void *q = __real_realloc(p, n);
    if (q) set_del(p), set_add(q);
    return q;
}
void __wrap_free(void *p) {
    set_del(p);
    __real_free(p);
}
int __wrap_posix_memalign(void **out, size_t a, size_t n) {
    if (should_fail()) return ENOMEM;
    int rc = __real_posix_memalign(out, a, n);
    if (!rc) set_add(*out);
    return rc;
}
/* jansson's allocations fail like kiln's, except inside its parser: jansson 2.14's lexer ignores a
 * failed append to its token buffer (lex_save) and then copies the string token past the end of its
 * allocation (a heap overflow in lex_scan_string). So a parse fails as a whole instead: json_loadb and
 * json_loads (wrapped too) count as one allocation and return NULL with "out of memory" when it is
 * theirs to fail — what kiln sees when jansson runs out of memory while parsing. */
static _Thread_local int in_parser;

static void *json_malloc(size_t n) {
    if (!in_parser) return __wrap_malloc(n);
    void *p = __real_malloc(n);
    set_add(p);
    return p;
}
static void json_free(void *p) { __wrap_free(p); }

json_t *__real_json_loadb(const char *buf, size_t n, size_t flags, json_error_t *e);
json_t *__real_json_loads(const char *s, size_t flags, json_error_t *e);

static json_t *parse_failed(json_error_t *e) {
    if (e) memset(e, 0, sizeof *e), e->line = e->column = -1, snprintf(e->text, sizeof e->text, "out of memory");
    return NULL;
}
json_t *__wrap_json_loadb(const char *buf, size_t n, size_t flags, json_error_t *e) {
    if (should_fail()) return parse_failed(e);
    in_parser++;
    json_t *j = __real_json_loadb(buf, n, flags, e);
    in_parser--;
    return j;
}
json_t *__wrap_json_loads(const char *s, size_t flags, json_error_t *e) {
    if (should_fail()) return parse_failed(e);
    in_parser++;
    json_t *j = __real_json_loads(s, flags, e);
    in_parser--;
    return j;
}

/* LeakSanitizer's own check, when the build has it (weak: absent in the release build). */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

/* ---- fixtures, made before any sweep with nothing failing ---- */
static char *qwen3_template; /* the Qwen3 chat template (tools, thinking) */
static char tmpdir[] = "/tmp/kiln_alloc_fail_XXXXXX";
static const char *VARS = "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                          "{\"role\":\"user\",\"content\":\"Hi 🙂\"},{\"role\":\"assistant\",\"content\":"
                          "\"<think>\\nhm\\n</think>\\n\\nHello!\"},{\"role\":\"user\",\"content\":\"Again\"}],"
                          "\"add_generation_prompt\":true}";
static const char *TEXT = "Once upon a time, 昇腾 🙂 a <s> cat\n\n  sat.";

static char *read_template(void) {
    kiln_err err = {0};
    size_t n;
    char *s = kiln_read_file(shared_path("tokenizers/qwen3/tokenizer_config.json"), &n, &err);
    json_t *j = s ? json_loadb(s, n, 0, NULL) : NULL;
    const char *t = json_string_value(json_object_get(j, "chat_template"));
    char *out = t ? strdup(t) : NULL;
    json_decref(j), free(s);
    return out;
}

/* A tokenizer directory: stories260K's tokenizer.json, a tokenizer_config.json with the Qwen3 template
 * (a small vocabulary keeps every sweep short). */
static bool make_chat_dir(void) {
    if (!mkdtemp(tmpdir) || !qwen3_template) return false;
    char path[512], target[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
    snprintf(target, sizeof target, "%s", shared_path("models/stories260K/tokenizer.json"));
    char *abs = realpath(target, NULL);
    bool ok = abs && symlink(abs, path) == 0;
    free(abs);
    json_t *cfg = json_pack("{s:s, s:s, s:s}", "bos_token", "<s>", "eos_token", "</s>", "chat_template", qwen3_template);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", tmpdir);
    ok = ok && cfg && json_dump_file(cfg, path, 0) == 0;
    json_decref(cfg);
    return ok;
}

/* A byte-level tokenizer with Qwen3's whole pipeline (NFC, regex Split, ByteLevel both ways) but only
 * its first 1,100 ids and the merges among them, plus two added tokens: the regex / byte-level paths at
 * a size a sweep can afford. Written to tmpdir/bl. */
#define BL_IDS 1100
static bool make_bytelevel_dir(void) {
    kiln_err err = {0};
    size_t n;
    char *text = kiln_read_file(shared_path("tokenizers/qwen3/tokenizer.json"), &n, &err);
    json_t *full = text ? json_loadb(text, n, 0, NULL) : NULL;
    free(text);
    json_t *model = json_object_get(full, "model"), *vocab = json_object(), *merges = json_array();
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(model, "vocab"), key, v)
        if (json_integer_value(v) < BL_IDS) json_object_set(vocab, key, v);
    size_t i;
    json_array_foreach(json_object_get(model, "merges"), i, v) {
        const char *a = json_string_value(json_array_get(v, 0)), *b = json_string_value(json_array_get(v, 1));
        char ab[256];
        if (!a || !b || snprintf(ab, sizeof ab, "%s%s", a, b) >= (int)sizeof ab) continue;
        if (json_object_get(vocab, a) && json_object_get(vocab, b) && json_object_get(vocab, ab)) json_array_append(merges, v);
    }
    json_t *mini = json_pack("{s:{s:s, s:o, s:o}, s:[{s:i, s:s, s:b}, {s:i, s:s, s:b}], s:O, s:O, s:O, s:O}",
                             "model", "type", "BPE", "vocab", vocab, "merges", merges, "added_tokens", "id", BL_IDS,
                             "content", "<|im_start|>", "special", 1, "id", BL_IDS + 1, "content", "<|im_end|>",
                             "special", 1, "normalizer", json_object_get(full, "normalizer"), "pre_tokenizer",
                             json_object_get(full, "pre_tokenizer"), "decoder", json_object_get(full, "decoder"),
                             "post_processor", json_object_get(full, "post_processor"));
    char path[600];
    snprintf(path, sizeof path, "%s/bl", tmpdir);
    bool ok = mini && json_array_size(merges) > 500 && mkdir(path, 0700) == 0;
    snprintf(path, sizeof path, "%s/bl/tokenizer.json", tmpdir);
    ok = ok && json_dump_file(mini, path, 0) == 0;
    json_decref(mini), json_decref(full);
    return ok;
}

static void remove_chat_dir(void) {
    char path[600];
    snprintf(path, sizeof path, "%s/bl/tokenizer.json", tmpdir), unlink(path);
    snprintf(path, sizeof path, "%s/bl", tmpdir), rmdir(path);
    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir), unlink(path);
    snprintf(path, sizeof path, "%s/tokenizer_config.json", tmpdir), unlink(path);
    rmdir(tmpdir);
}

static kiln_model *open_model(int quant, kiln_err *err) {
    kiln_model_opts o;
    kiln_model_opts_default(&o);
    o.weight_cache = false, o.quiet = true, o.threads = 1, o.quant = quant;
    return kiln_model_open(shared_path("models/stories260K"), &o, err);
}

/* ---- the entry points: each does one whole call and frees what it got; 0 ok, -1 failed ----
 * On success each folds what it produced into `digest`: a call that recovers from a failed allocation
 * must give what the unfailed call gave (no silently skipped step, no NaN logits). */
typedef struct {
    kiln_tokenizer *tok, *chat_tok, *bl_tok;
    kiln_model *model, *model_q8;
} fixtures;
static fixtures fx;
static uint64_t digest;

static void fold(const void *p, size_t n) { /* FNV-1a */
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) digest = (digest ^ b[i]) * 1099511628211ull;
}

static int ep_tokenizer_open(kiln_err *err) {
    kiln_tokenizer *t = kiln_tokenizer_open(shared_path("models/stories260K"), err);
    kiln_tokenizer_free(t);
    return t ? 0 : -1;
}

static int ep_tokenizer_open_gguf(kiln_err *err) {
    kiln_tokenizer *t = kiln_tokenizer_open(shared_path("gguf/tokenizers/stories260K.vocab.gguf"), err);
    kiln_tokenizer_free(t);
    return t ? 0 : -1;
}

static char bl_dir[600];

static int ep_tokenizer_open_bl(kiln_err *err) {
    kiln_tokenizer *t = kiln_tokenizer_open(bl_dir, err);
    kiln_tokenizer_free(t);
    return t ? 0 : -1;
}

static int encode_with(const kiln_tokenizer *t, kiln_err *err) {
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = kiln_encode(t, TEXT, strlen(TEXT), true, &ids, &n, err);
    if (!rc) fold(ids, n * sizeof *ids);
    free(ids);
    return rc;
}
static int ep_encode(kiln_err *err) { return encode_with(fx.tok, err); }

/* byte-level: encode (regex split), then decode and stream back what it gave */
static int ep_encode_decode_bl(kiln_err *err) {
    static const char text[] = "<|im_start|>user\nHello, wörld! 12345 🙂\n\n  x<|im_end|>";
    int32_t *ids = NULL;
    size_t n = 0, len;
    if (kiln_encode(fx.bl_tok, text, sizeof text - 1, false, &ids, &n, err)) return -1;
    fold(ids, n * sizeof *ids);
    char *s = kiln_decode(fx.bl_tok, ids, n, false, &len);
    kiln_detok *d = s ? kiln_detok_new(fx.bl_tok, false) : NULL;
    int rc = d ? 0 : -1;
    for (size_t i = 0; !rc && i < n; i++) {
        const char *piece = kiln_detok_push(d, ids[i], &len);
        if (piece) fold(piece, len);
        else rc = -1;
    }
    if (s) fold(s, strlen(s));
    free(s), free(ids), kiln_detok_free(d);
    return rc ? kiln_err_set(err, "decode: out of memory") : 0;
}

/* decode and the streaming detokenizer (what generation uses) over ids with byte-fallback runs */
static int ep_decode(kiln_err *err) {
    static const int32_t ids[] = {1, 403, 407, 261, 431, 260, 233, 150, 170, 239, 133, 157, 260, 243, 162, 156, 128, 2};
    size_t n = sizeof ids / sizeof ids[0], len;
    char *s = kiln_decode(fx.tok, ids, n, true, &len);
    if (!s) return kiln_err_set(err, "decode: out of memory");
    fold(s, len);
    free(s);
    kiln_detok *d = kiln_detok_new(fx.tok, true);
    if (!d) return kiln_err_set(err, "detok: out of memory");
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        const char *piece = kiln_detok_push(d, ids[i], &len);
        if (piece) fold(piece, len);
        else rc = -1;
    }
    const char *rest = rc ? NULL : kiln_detok_flush(d, &len);
    if (rest) fold(rest, len);
    else rc = -1;
    kiln_detok_free(d);
    return rc ? kiln_err_set(err, "detok: out of memory") : 0;
}

static int ep_template_render(kiln_err *err) {
    size_t n;
    char *s = kiln_template_render(qwen3_template, VARS, &n, err);
    if (s) fold(s, n);
    free(s);
    return s ? 0 : -1;
}

static int ep_chat_render(kiln_err *err) {
    size_t n;
    char *s = kiln_chat_render(fx.chat_tok, VARS, &n, err);
    if (s) fold(s, n);
    free(s);
    return s ? 0 : -1;
}

static int ep_config_load(kiln_err *err) {
    kiln_config c;
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    if (kiln_config_load(shared_path("models/tiny-qwen3"), &c, err) ||
        kiln_gen_params_load(&p, shared_path("models/tiny-qwen3"), err))
        return -1;
    fold(&c, sizeof c), fold(&p, sizeof p);
    return 0;
}

static int model_open_as(int quant, kiln_err *err) {
    kiln_model *m = open_model(quant, err);
    if (m) {
        size_t sizes[2] = {kiln_model_weight_bytes(m), kiln_model_param_count(m)};
        fold(sizes, sizeof sizes);
    }
    kiln_model_free(m);
    return m ? 0 : -1;
}
static int ep_model_open(kiln_err *err) { return model_open_as(-1, err); }
static int ep_model_open_q8(kiln_err *err) { return model_open_as(KILN_DT_Q8_0, err); }

static int forward_on(kiln_model *m, kiln_err *err) {
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.n_ctx = 64;
    kiln_ctx *c = kiln_ctx_new(m, &co, err);
    if (!c) return -1;
    int V = kiln_model_config(m)->vocab_size, rc = -1;
    float *logits = malloc((size_t)V * sizeof *logits);
    int seq = logits ? kiln_seq_new(c, err) : -1;
    if (!logits) kiln_err_set(err, "test: out of memory");
    if (seq >= 0) {
        static const int32_t toks[] = {1, 403, 407, 261, 431, 260};
        int nt = 6;
        kiln_batch b = {.n_seqs = 1, .seq = &seq, .n_tokens = &nt, .tokens = toks, .logits = logits};
        rc = kiln_forward(c, &b, err);
        int one = 1;
        kiln_batch b2 = {.n_seqs = 1, .seq = &seq, .n_tokens = &one, .tokens = toks, .logits = logits};
        if (!rc) rc = kiln_forward(c, &b2, err); /* a decode step after the prefill */
        if (!rc) fold(logits, (size_t)V * sizeof *logits);
    }
    free(logits);
    kiln_ctx_free(c);
    return rc;
}
static int ep_forward(kiln_err *err) { return forward_on(fx.model, err); }
static int ep_forward_q8(kiln_err *err) { return forward_on(fx.model_q8, err); }
/* A GGUF with K-quant mixes (Q4_K_M: Q4_K, Q6_K and Q5_0-sized rows side by side): open + forward. */
static int ep_gguf_forward(kiln_err *err) {
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    mo.threads = 1;
    kiln_model *m = kiln_model_open(shared_path("gguf/kq-llama-512/kq-llama-512.Q4_K_M.gguf"), &mo, err);
    int rc = m ? forward_on(m, err) : -1;
    kiln_model_free(m);
    return rc;
}

static int ep_generate(kiln_err *err) {
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    p.max_new_tokens = 4, p.do_sample = true, p.top_k = 10, p.top_p = 0.9f, p.repetition_penalty = 1.1f;
    p.stop[0] = "zzz", p.n_stop = 1;
    static const int32_t a[] = {1, 403, 407, 261}, b[] = {1, 431, 260};
    const int32_t *prompts[2] = {a, b};
    size_t lens[2] = {4, 3};
    kiln_gen_output out[2];
    int rc = kiln_generate(fx.model, fx.tok, &p, 2, prompts, lens, NULL, NULL, out, err);
    for (int i = 0; !rc && i < 2; i++) {
        fold(out[i].ids, out[i].n_ids * sizeof *out[i].ids), fold(out[i].text, strlen(out[i].text));
        fold(&out[i].finish, sizeof out[i].finish);
        kiln_gen_output_free(&out[i]);
    }
    return rc;
}

/* Every public entry point that allocates (issue 14 item 3). */
typedef struct {
    const char *name, *test;
    int (*fn)(kiln_err *);
} entry;

static const entry ENTRIES[] = {
    {"kiln_tokenizer_open", "oom_tokenizer_open", ep_tokenizer_open},
    {"kiln_encode", "oom_encode", ep_encode},
    {"kiln_tokenizer_open (GGUF)", "oom_tokenizer_open_gguf", ep_tokenizer_open_gguf},
    {"kiln_tokenizer_open (byte-level)", "oom_tokenizer_open_bytelevel", ep_tokenizer_open_bl},
    {"kiln_encode + kiln_decode + kiln_detok (byte-level)", "oom_encode_decode_bytelevel", ep_encode_decode_bl},
    {"kiln_decode + kiln_detok", "oom_decode_detok", ep_decode},
    {"kiln_config_load + kiln_gen_params_load", "oom_config_load", ep_config_load},
    {"kiln_model_open", "oom_model_open", ep_model_open},
    {"kiln_model_open (q8_0)", "oom_model_open_q8", ep_model_open_q8},
    {"kiln_ctx_new + kiln_forward", "oom_ctx_forward", ep_forward},
    {"kiln_ctx_new + kiln_forward (q8_0)", "oom_ctx_forward_q8", ep_forward_q8},
    {"kiln_model_open + kiln_forward (GGUF Q4_K_M)", "oom_gguf_forward", ep_gguf_forward},
    {"kiln_generate", "oom_generate", ep_generate},
    {"kiln_template_render", "oom_template_render", ep_template_render},
    {"kiln_chat_render", "oom_chat_render", ep_chat_render},
};

/* ---- one sweep ---- */
#define MAX_REPORTS 5

/* Shared with the parent, so that a child that dies tells where. */
typedef struct {
    long total, at, failed_calls, ok_calls;
} progress;

static bool one_line(const char *s) { return s[0] && !strchr(s, '\n'); }

/* Runs fn with the n-th allocation failing; 0 clean, else a report printed. */
static uint64_t ref_digest;

static int try_at(const entry *e, long n) {
    size_t before = live_count();
    kiln_err err = {0};
    digest = 1469598103934665603ull;
    atomic_store(&calls, 0);
    atomic_store(&fail_at, n);
    int rc = e->fn(&err);
    atomic_store(&fail_at, 0);
    size_t after = live_count();
    int bad = 0;
    if (rc && !one_line(err.msg)) bad = 1, fprintf(stderr, "  %s: N=%ld: failed without a one-line error ('%s')\n", e->name, n, err.msg);
    if (!rc && digest != ref_digest) bad = 1, fprintf(stderr, "  %s: N=%ld: succeeded with a different result\n", e->name, n);
    if (after != before) bad = 1, fprintf(stderr, "  %s: N=%ld: %s, %zu allocation(s) leaked\n", e->name, n, rc ? "error" : "success", after - before);
    return bad ? -1 : rc ? 1 : 2; /* 1 error, 2 success */
}

static int stride_for(long total) { /* at most ~1500 failing calls per entry point (ASan time) */
    return total <= 1500 ? 1 : (int)((total + 1499) / 1500);
}

static void sweep(const entry *e, progress *pr) {
    kiln_err err = {0};
    atomic_store(&calls, 0);
    digest = 1469598103934665603ull;
    if (e->fn(&err)) {
        fprintf(stderr, "  %s: fails with nothing failing: %s\n", e->name, err.msg);
        exit(3);
    }
    pr->total = atomic_load(&calls);
    ref_digest = digest;
    int stride = stride_for(pr->total), reports = 0;
    for (long n = 1; n <= pr->total && reports < MAX_REPORTS; n += stride) {
        pr->at = n;
        int r = try_at(e, n);
        if (r < 0) reports++;
        else if (r == 1) pr->failed_calls++;
        else pr->ok_calls++;
    }
    if (reports) exit(4);
}

static bool have_chat_dir;

static void setup_fixtures(void) {
    kiln_err err = {0};
    fx.tok = kiln_tokenizer_open(shared_path("models/stories260K"), &err);
    fx.chat_tok = have_chat_dir ? kiln_tokenizer_open(tmpdir, &err) : NULL;
    fx.bl_tok = fx.chat_tok ? kiln_tokenizer_open(bl_dir, &err) : NULL;
    fx.model = open_model(-1, &err);
    fx.model_q8 = fx.model ? open_model(KILN_DT_Q8_0, &err) : NULL;
    if (!fx.tok || !fx.chat_tok || !fx.bl_tok || !fx.model || !fx.model_q8 || !qwen3_template) {
        fprintf(stderr, "  fixtures: %s\n", err.msg[0] ? err.msg : "missing template or temp dir");
        exit(2);
    }
}

static void free_fixtures(void) {
    kiln_tokenizer_free(fx.tok), kiln_tokenizer_free(fx.chat_tok), kiln_model_free(fx.model);
    kiln_model_free(fx.model_q8), kiln_tokenizer_free(fx.bl_tok);
}

/* A crash in the child names where: the top frames (ASan reports its own SEGVs; abort() it does not). */
static void on_crash(int sig) {
    void *frames[32];
    int n = backtrace(frames, 32);
    char msg[64];
    int len = snprintf(msg, sizeof msg, "  signal %d, backtrace:\n", sig);
    if (write(2, msg, (size_t)len) < 0) {}
    backtrace_symbols_fd(frames, n, 2);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Forks a child for e's sweep: returns 0 if it was clean; prints what went wrong otherwise. */
static int run_entry(const entry *e, progress *pr) {
    memset(pr, 0, sizeof *pr);
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGABRT, on_crash), signal(SIGBUS, on_crash), signal(SIGFPE, on_crash);
        tracking = true;
        setup_fixtures();
        sweep(e, pr);
        free_fixtures();
        if (__lsan_do_recoverable_leak_check && __lsan_do_recoverable_leak_check()) _exit(5);
        fflush(stderr);
        _exit(0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (WIFSIGNALED(st)) {
        fprintf(stderr, "  %s: crashed (signal %d) with allocation N=%ld of %ld failing\n", e->name, WTERMSIG(st), pr->at, pr->total);
        return -1;
    }
    int code = WEXITSTATUS(st);
    if (code == 0) {
        fprintf(stderr, "  %s: %ld allocations, %ld failing calls (stride %d): %ld errors, %ld recovered\n", e->name,
                pr->total, pr->failed_calls + pr->ok_calls, stride_for(pr->total), pr->failed_calls, pr->ok_calls);
        return 0;
    }
    fprintf(stderr, "  %s: child exited %d (%s) at N=%ld of %ld\n", e->name, code,
            code == 4 ? "leak or bad error" : code == 5 ? "LeakSanitizer report" : code == 3 ? "fails unfailed" : "ASan/UBSan report or fixture error",
            pr->at, pr->total);
    return -1;
}

static progress *shared_progress;
static const entry *current;

TEST(oom_sweep) { CHECK(run_entry(current, shared_progress) == 0, "%s: an allocation failure was not handled cleanly (see above)", current->name); }

int main(void) {
    json_set_alloc_funcs(json_malloc, json_free);
    void *warm[1];
    backtrace(warm, 1); /* loads the unwinder now, not in a signal handler */
    shared_progress = mmap(NULL, sizeof(progress), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    qwen3_template = read_template();
    have_chat_dir = make_chat_dir() && make_bytelevel_dir();
    snprintf(bl_dir, sizeof bl_dir, "%s/bl", tmpdir);
    if (shared_progress == MAP_FAILED || !qwen3_template || !have_chat_dir) {
        printf("FAIL setup: %s\n", !qwen3_template ? "cannot read tokenizers/qwen3/tokenizer_config.json"
                                   : !have_chat_dir ? "cannot make the tokenizer directory" : "mmap");
        return 1;
    }
    size_t n_entries = sizeof ENTRIES / sizeof ENTRIES[0];
    for (size_t i = 0; i < n_entries; i++) {
        current = &ENTRIES[i];
        check_run(current->test, oom_sweep);
    }
    free(qwen3_template);
    remove_chat_dir();
    munmap(shared_progress, sizeof(progress));
    return check_done();
}
