/* grammar_bench.c — what a grammar mask costs per generated token, on a real tokenizer.
 *
 *   grammar_bench TOKENIZER_DIR [RUNS]        e.g. ../shared/models/tiny-qwen3 (Qwen3's ~151k ids) 5
 *
 * Build: `make build/bench/grammar_bench` (or `make bench`, which builds every bench/ program).
 *
 * For two JSON schemas (an object with strings, an integer, an enum and an array) it times, per token,
 * kiln_grammar_matcher_mask over vocabulary-sized logits plus kiln_grammar_matcher_accept_token, with a
 * fresh matcher each run (cold caches: what one request sees). Two token streams: the tokenization of a
 * valid document, and a random walk that picks uniformly among the allowed tokens (what a random-weight
 * model does, and the worst case for the caches). Prints one JSON line per schema and stream: the median
 * over RUNS of the mean µs per token (thread CPU time), and the vocabulary build time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kiln.h"

/* Thread CPU time: on a shared machine, wall time mostly measures the neighbours. */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* "typical": what OpenAI-style structured outputs send (no length limits); "bounded": every string has a
 * maxLength, so each character position is a new matcher state (the worst case for the mask cache). */
static const char *const SCHEMAS[][2] = {
    {"typical", "{\"type\":\"object\",\"properties\":{"
                "\"name\":{\"type\":\"string\"},"
                "\"age\":{\"type\":\"integer\"},"
                "\"role\":{\"enum\":[\"admin\",\"user\",\"guest\"]},"
                "\"email\":{\"type\":\"string\",\"format\":\"email\"},"
                "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":4}},"
                "\"required\":[\"name\",\"age\",\"role\",\"tags\"]}"},
    {"bounded", "{\"type\":\"object\",\"properties\":{"
                "\"name\":{\"type\":\"string\",\"maxLength\":40},"
                "\"age\":{\"type\":\"integer\"},"
                "\"role\":{\"enum\":[\"admin\",\"user\",\"guest\"]},"
                "\"email\":{\"type\":\"string\",\"format\":\"email\"},"
                "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"maxLength\":20},\"maxItems\":4}},"
                "\"required\":[\"name\",\"age\",\"role\",\"tags\"]}"}};
static const char DOC[] = "{\"name\": \"Ada Lovelace\", \"age\": 36, \"role\": \"admin\", "
                          "\"email\": \"ada@example.org\", \"tags\": [\"math\", \"engines\", \"poetry\"]}";

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what, const kiln_err *e) {
    fprintf(stderr, "grammar_bench: %s: %s\n", what, e->msg);
    exit(1);
}

/* One run: a fresh matcher over ids (doc) or a seeded random walk of up to max_tokens (ids NULL).
 * Returns mean µs per token; *n_tok gets the token count. */
static double run_once(const kiln_grammar *g, const kiln_grammar_vocab *v, int n_vocab, int32_t eos,
                       const int32_t *ids, size_t n_ids, uint64_t seed, int max_tokens, int *n_tok) {
    kiln_err e = {{0}};
    kiln_grammar_matcher *m = kiln_grammar_matcher_new(g, v, &e);
    if (!m) die("matcher", &e);
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    int32_t *allowed = malloc((size_t)n_vocab * sizeof *allowed);
    double total = 0;
    int n = 0;
    for (;; n++) {
        if (ids ? (size_t)n >= n_ids : n >= max_tokens || !kiln_grammar_matcher_can_continue(m)) break;
        for (int i = 0; i < n_vocab; i++) logits[i] = 0;
        double t0 = cpu_now();
        if (kiln_grammar_matcher_mask(m, logits, n_vocab, &eos, 1, &e)) die("mask", &e);
        total += cpu_now() - t0;
        int32_t tok = ids ? ids[n] : -1;
        if (!ids) { /* uniform among the allowed ones (not timed) */
            int k = 0;
            for (int i = 0; i < n_vocab; i++)
                if (logits[i] == 0 && i != eos) allowed[k++] = i;
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            if (k == 0) break;
            tok = allowed[(seed >> 33) % (uint64_t)k];
        }
        t0 = cpu_now();
        if (kiln_grammar_matcher_accept_token(m, tok, &e)) die("accept", &e);
        total += cpu_now() - t0;
    }
    *n_tok = n;
    free(logits), free(allowed);
    kiln_grammar_matcher_free(m);
    return n ? total / n * 1e6 : 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: grammar_bench TOKENIZER_DIR [RUNS]\n");
        return 2;
    }
    int runs = argc > 2 ? atoi(argv[2]) : 5;
    if (runs < 1) runs = 1;
    kiln_err e = {{0}};
    kiln_tokenizer *t = kiln_tokenizer_open(argv[1], &e);
    if (!t) die("tokenizer", &e);
    double t0 = kiln_now();
    kiln_grammar_vocab *v = kiln_grammar_vocab_new(t, &e);
    if (!v) die("vocab", &e);
    double vocab_ms = (kiln_now() - t0) * 1e3;
    int n_vocab = (int)kiln_tokenizer_vocab_size(t);
    int32_t eos = kiln_tokenizer_specials(t)->eos_id;
    int32_t *ids;
    size_t n_ids;
    if (kiln_encode(t, DOC, strlen(DOC), false, &ids, &n_ids, &e)) die("encode", &e);
    double *us = malloc((size_t)runs * sizeof *us);
    for (size_t sc = 0; sc < sizeof SCHEMAS / sizeof *SCHEMAS; sc++) {
        kiln_grammar *g = kiln_grammar_from_json_schema(SCHEMAS[sc][1], &e);
        if (!g) die("schema", &e);
        for (int stream = 0; stream < 2; stream++) {
            int n_tok = 0;
            for (int r = 0; r < runs; r++)
                us[r] = run_once(g, v, n_vocab, eos, stream ? NULL : ids, n_ids, 1234 + (uint64_t)r, 200, &n_tok);
            qsort(us, (size_t)runs, sizeof *us, cmp_d);
            printf("{\"tokenizer\":\"%s\",\"vocab\":%d,\"schema\":\"%s\",\"stream\":\"%s\",\"tokens\":%d,\"runs\":%d,"
                   "\"us_per_token_median\":%.1f,\"us_per_token_min\":%.1f,\"us_per_token_max\":%.1f,"
                   "\"vocab_build_ms\":%.1f}\n",
                   argv[1], n_vocab, SCHEMAS[sc][0], stream ? "random_walk" : "document", n_tok, runs, us[runs / 2], us[0],
                   us[runs - 1], vocab_ms);
        }
        kiln_grammar_free(g);
    }
    free(us), free(ids);
    kiln_grammar_vocab_free(v);
    kiln_tokenizer_free(t);
    return 0;
}
