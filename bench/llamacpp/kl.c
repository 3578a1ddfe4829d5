/* llamacpp/kl.c — llama.cpp's side of bench/quant-quality.sh's K-quant rows: the mean KL divergence of
 * each quantised GGUF's next-token distributions from the base (F32) GGUF's, and top-1 agreement, as
 * llama.cpp (libllama) computes them, on token ids read from a file and split exactly as
 * bench/quant_quality.c splits them (CTX-token chunks, BOS first, positions CTX/2 .. CTX-2 scored), so
 * that both engines are compared on the same positions. float32 KV cache, flash attention off (llama.cpp's
 * exact numbers). Not built by make (it needs llama.cpp; outside bench/*.c): the bench script compiles it against
 * $LLAMA_BIN's libllama.
 *   llamacpp_kl --ids FILE --ctx N --chunks M --threads T BASE.gguf QUANT.gguf...   (one JSON line each) */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"

static void die(const char *m, const char *a) {
    fprintf(stderr, "llamacpp_kl: %s%s\n", m, a ? a : "");
    exit(1);
}

static int32_t *read_ids(const char *path, size_t *n) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot read ", path);
    size_t cap = 1024;
    int32_t *ids = malloc(cap * sizeof *ids);
    *n = 0;
    int c;
    long v = 0;
    int in = 0;
    while ((c = fgetc(f)) != EOF) {
        if (c >= '0' && c <= '9') v = v * 10 + (c - '0'), in = 1;
        else if (in) {
            if (*n == cap) ids = realloc(ids, (cap *= 2) * sizeof *ids);
            ids[(*n)++] = (int32_t)v, v = 0, in = 0;
        }
    }
    if (in) ids[(*n)++] = (int32_t)v;
    fclose(f);
    return ids;
}

/* Logits of every scored position of every chunk: [positions][V]. */
static float *run(const char *path, const int32_t *ids, size_t n, int ctx, int chunks, int threads, int *V, size_t *np) {
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *m = llama_model_load_from_file(path, mp);
    if (!m) die("cannot load ", path);
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)ctx, cp.n_batch = (uint32_t)ctx, cp.n_ubatch = (uint32_t)ctx;
    cp.n_threads = threads, cp.n_threads_batch = threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = GGML_TYPE_F32, cp.type_v = GGML_TYPE_F32;
    struct llama_context *c = llama_init_from_model(m, cp);
    if (!c) die("cannot make a context for ", path);
    const struct llama_vocab *vocab = llama_model_get_vocab(m);
    *V = llama_vocab_n_tokens(vocab);
    const int scored = ctx - 1 - ctx / 2;
    size_t n_chunks = 0;
    for (size_t s = 0; s + (size_t)ctx <= n && (int)n_chunks < chunks; s += (size_t)ctx) n_chunks++;
    float *out = malloc(sizeof(float) * n_chunks * (size_t)scored * (size_t)*V);
    struct llama_batch b = llama_batch_init(ctx, 0, 1);
    for (size_t k = 0; k < n_chunks; k++) {
        llama_memory_clear(llama_get_memory(c), true);
        b.n_tokens = ctx;
        for (int i = 0; i < ctx; i++) {
            b.token[i] = i == 0 ? llama_vocab_bos(vocab) : ids[k * (size_t)ctx + (size_t)i];
            b.pos[i] = i, b.n_seq_id[i] = 1, b.seq_id[i][0] = 0, b.logits[i] = 1;
        }
        if (llama_decode(c, b)) die("decode failed on ", path);
        for (int p = ctx / 2; p < ctx - 1; p++)
            memcpy(out + ((k * (size_t)scored) + (size_t)(p - ctx / 2)) * (size_t)*V, llama_get_logits_ith(c, p),
                   sizeof(float) * (size_t)*V);
    }
    llama_batch_free(b);
    llama_free(c);
    llama_model_free(m);
    *np = n_chunks * (size_t)scored;
    return out;
}

static double lse(const float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    double s = 0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
    return mx + log(s);
}

static int argmax(const float *x, int n) {
    int a = 0;
    for (int i = 1; i < n; i++) a = x[i] > x[a] ? i : a;
    return a;
}

int main(int argc, char **argv) {
    const char *idsf = NULL;
    int ctx = 64, chunks = 1000, threads = 2, first = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--ids") && i + 1 < argc) idsf = argv[++i];
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc) ctx = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--chunks") && i + 1 < argc) chunks = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!first) first = i;
    }
    if (!idsf || !first || first + 1 >= argc) die("usage: --ids FILE --ctx N --chunks M --threads T BASE.gguf QUANT.gguf...", NULL);
    llama_backend_init();
    size_t n, np, nq;
    int32_t *ids = read_ids(idsf, &n);
    int V, Vq;
    float *ref = run(argv[first], ids, n, ctx, chunks, threads, &V, &np);
    for (int f = first + 1; f < argc; f++) {
        if (argv[f][0] == '-') { f++; continue; }
        float *q = run(argv[f], ids, n, ctx, chunks, threads, &Vq, &nq);
        if (Vq != V || nq != np) die("vocabulary or positions differ: ", argv[f]);
        double kl = 0;
        int agree = 0;
        for (size_t p = 0; p < np; p++) {
            const float *x = ref + p * V, *y = q + p * V;
            const double lx = lse(x, V), ly = lse(y, V);
            for (int i = 0; i < V; i++) kl += exp(x[i] - lx) * ((x[i] - lx) - (y[i] - ly));
            agree += argmax(x, V) == argmax(y, V);
        }
        printf("{\"file\":\"%s\",\"positions\":%zu,\"mean_kl\":%.6g,\"top1_agree\":%.4f}\n", argv[f], np, kl / np,
               (double)agree / np);
        fflush(stdout);
        free(q);
    }
    free(ref), free(ids);
    return 0;
}
