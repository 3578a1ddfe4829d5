/* sampler.c — transformers' logits processors and the token draw.
 *
 * Each processor is written from its transformers definition so that, for the same logits, the same
 * tokens survive with the same probabilities:
 *   RepetitionPenaltyLogitsProcessor: for every id seen (prompt + generated), s<0 ? s*p : s/p.
 *   presence / frequency penalties:   OpenAI's (not in transformers), applied where vLLM applies them,
 *                                     right after the repetition penalty, greedy included: over the
 *                                     generated ids only, s -= frequency * count + presence * (count > 0).
 *   TemperatureLogitsWarper:          s / T.
 *   TopKLogitsWarper:                 remove s < (k-th largest s), so ties with the k-th are kept.
 *   TopPLogitsWarper:                 sort ascending, cumsum of softmax, remove where cumsum <= 1-p,
 *                                     but never the last min_keep (the most likely ones).
 *   MinPLogitsWarper:                 remove p < min_p * max p, keeping the min_keep most likely.
 * Removed logits become -INFINITY (transformers' filter_value). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"

/* The processors' working memory, n entries each: the sampler owns one for its vocabulary (allocated
 * with it, so sampling never allocates); the public one-off calls make one per call. */
typedef struct {
    unsigned char *seen;
    float *probs, *sorted;
    int *idx, *idx2;       /* the radix sort's index buffers */
    uint32_t *key, *key2; /* ... and its keys */
} scratch;

static void scratch_free(scratch *sc) {
    free(sc->seen), free(sc->probs), free(sc->sorted), free(sc->idx), free(sc->idx2), free(sc->key), free(sc->key2);
    memset(sc, 0, sizeof *sc);
}

static int scratch_init(scratch *sc, int n) {
    size_t m = n > 0 ? (size_t)n : 1;
    sc->seen = malloc(m), sc->probs = malloc(m * sizeof(float)), sc->sorted = malloc(m * sizeof(float));
    sc->idx = malloc(m * sizeof(int)), sc->idx2 = malloc(m * sizeof(int));
    sc->key = malloc(m * sizeof(uint32_t)), sc->key2 = malloc(m * sizeof(uint32_t));
    if (sc->seen && sc->probs && sc->sorted && sc->idx && sc->idx2 && sc->key && sc->key2) return 0;
    scratch_free(sc);
    return -1;
}

static void repetition_penalty(float *logits, int n, const int32_t *ids, size_t n_ids, float penalty, scratch *sc) {
    if (penalty == 1.0f || n_ids == 0) return;
    /* transformers gathers all scores first, then scatters: an id that appears twice is penalised once.
     * A seen-bitmap gives the same result. */
    memset(sc->seen, 0, (size_t)n);
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= n || sc->seen[id]) continue;
        sc->seen[id] = 1;
        float s = logits[id];
        logits[id] = s < 0 ? s * penalty : s / penalty;
    }
}

static void presence_frequency(float *logits, int n, const int32_t *ids, size_t n_ids, float presence,
                               float frequency, scratch *sc) {
    if ((presence == 0 && frequency == 0) || n_ids == 0) return;
    memset(sc->seen, 0, (size_t)n);
    for (size_t i = 0; i < n_ids; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= n) continue;
        logits[id] -= frequency; /* once per occurrence: frequency * count */
        if (!sc->seen[id]) sc->seen[id] = 1, logits[id] -= presence;
    }
}

void kiln_logits_temperature(float *logits, int n, float temperature) {
    if (temperature == 1.0f || temperature <= 0) return;
    for (int i = 0; i < n; i++) logits[i] /= temperature;
}

/* Restores the min-heap property of h[0..n) below position i. */
static void heap_down(float *h, int n, int i) {
    for (;;) {
        int l = 2 * i + 1, m = i;
        if (l < n && h[l] < h[m]) m = l;
        if (l + 1 < n && h[l + 1] < h[m]) m = l + 1;
        if (m == i) return;
        float t = h[i];
        h[i] = h[m], h[m] = t, i = m;
    }
}

/* The k-th largest of v[0..n) (duplicates counted, as torch.topk's values[-1]): a min-heap of the k largest
 * seen so far, in sc->sorted. O(n log k), and most values cost one comparison with the heap's minimum: on
 * a 152k vocabulary this replaced a full qsort (top_k 50 alone: 43.4 -> 2.5 ms per token,
 * build/bench/sampler_bench; docs/performance.md). */
static float kth_largest(const float *v, int n, int k, scratch *sc) {
    float *h = sc->sorted;
    for (int i = 0; i < k; i++) h[i] = v[i];
    for (int i = k / 2 - 1; i >= 0; i--) heap_down(h, k, i);
    for (int i = k; i < n; i++)
        if (v[i] > h[0]) h[0] = v[i], heap_down(h, k, 0);
    return h[0];
}

static void top_k(float *logits, int n, int k, int min_keep, scratch *sc) {
    if (k <= 0) return;
    if (k < min_keep) k = min_keep;
    if (k >= n) return;
    float kth = kth_largest(logits, n, k, sc);
    for (int i = 0; i < n; i++)
        if (logits[i] < kth) logits[i] = -INFINITY;
}

void kiln_softmax(const float *logits, float *probs, int n) {
    float mx = -INFINITY;
    for (int i = 0; i < n; i++)
        if (logits[i] > mx) mx = logits[i];
    if (mx == -INFINITY) { /* nothing left: uniform would be a guess; give all zeros */
        for (int i = 0; i < n; i++) probs[i] = 0;
        return;
    }
    double sum = 0;
    for (int i = 0; i < n; i++) {
        float e = expf(logits[i] - mx);
        probs[i] = e;
        sum += e;
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) probs[i] *= inv;
}

int32_t kiln_argmax(const float *logits, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (logits[i] > logits[best]) best = i;
    return best;
}

/* A float's bits as an unsigned key in the float's order (negatives flipped whole, positives' sign set). */
static uint32_t float_key(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

/* Sorts the m ids in idx ascending by logit, ties in the order given (a stable sort, as torch.sort's
 * stable=True would). LSD radix over three 11-bit digits: linear, where the qsort_r it replaced cost
 * ~25 ms per token on a 152k vocabulary. */
static void sort_ids_ascending(const float *logits, int *idx, int m, scratch *sc) {
    uint32_t *ka = sc->key, *kb = sc->key2;
    int *a = idx, *b = sc->idx2;
    for (int i = 0; i < m; i++) ka[i] = float_key(logits[idx[i]]);
    for (int shift = 0; shift < 33; shift += 11) {
        int count[2049] = {0};
        for (int i = 0; i < m; i++) count[(ka[i] >> shift & 2047) + 1]++;
        for (int d = 0; d < 2048; d++) count[d + 1] += count[d];
        for (int i = 0; i < m; i++) {
            const int at = count[ka[i] >> shift & 2047]++;
            kb[at] = ka[i], b[at] = a[i];
        }
        uint32_t *tk = ka;
        int *ti = a;
        ka = kb, kb = tk, a = b, b = ti;
    }
    if (a != idx) memcpy(idx, a, (size_t)m * sizeof *idx); /* three passes end in the other buffer */
}

/* The ids 0..n) ascending by logit, lower ids first among ties, into sc->idx. */
static void sort_ascending(const float *logits, int n, scratch *sc) {
    for (int i = 0; i < n; i++) sc->idx[i] = i;
    sort_ids_ascending(logits, sc->idx, n, sc);
}

/* Ids already removed (-inf, e.g. by top-k) sort first, have probability exactly 0 and add exactly 0 to the
 * running sum, so leaving them out of the sort, the softmax and the cumsum changes no decision: only the
 * m live ids are sorted (after top_k 20: 20 of 152k). */
static void top_p(float *logits, int n, float p, int min_keep, scratch *sc) {
    if (p >= 1.0f || n <= 0) return;
    int m = 0;
    for (int i = 0; i < n; i++)
        if (logits[i] != -INFINITY) sc->idx[m++] = i;
    sort_ids_ascending(logits, sc->idx, m, sc);
    for (int i = 0; i < m; i++) sc->sorted[i] = logits[sc->idx[i]];
    kiln_softmax(sc->sorted, sc->probs, m);
    float cum = 0, thresh = 1.0f - p;
    for (int i = 0; i < m; i++) {
        cum += sc->probs[i]; /* float32 running sum, in ascending order, as torch.cumsum */
        if (cum <= thresh && i < m - min_keep) logits[sc->idx[i]] = -INFINITY;
    }
}

static void min_p(float *logits, int n, float p, int min_keep, scratch *sc) {
    if (p <= 0 || n <= 0) return;
    sort_ascending(logits, n, sc);
    kiln_softmax(logits, sc->probs, n);
    float top = 0;
    for (int i = 0; i < n; i++)
        if (sc->probs[i] > top) top = sc->probs[i];
    float scaled = p * top;
    /* the min_keep most likely tokens (the end of the ascending order) always survive */
    for (int r = 0; r < n - min_keep; r++) {
        int i = sc->idx[r];
        if (sc->probs[i] < scaled) logits[i] = -INFINITY;
    }
}

/* The public one-off processors: their own scratch, -1 (logits untouched) when it cannot be had. */
#define WITH_SCRATCH(n, call)              \
    do {                                   \
        scratch sc_;                       \
        if (scratch_init(&sc_, n)) return -1; \
        call;                              \
        scratch_free(&sc_);                \
        return 0;                          \
    } while (0)

int kiln_logits_repetition_penalty(float *logits, int n, const int32_t *ids, size_t n_ids, float penalty) {
    WITH_SCRATCH(n, repetition_penalty(logits, n, ids, n_ids, penalty, &sc_));
}
int kiln_logits_presence_frequency(float *logits, int n, const int32_t *ids, size_t n_ids, float presence,
                                   float frequency) {
    WITH_SCRATCH(n, presence_frequency(logits, n, ids, n_ids, presence, frequency, &sc_));
}
int kiln_logits_top_k(float *logits, int n, int k, int min_keep) { WITH_SCRATCH(n, top_k(logits, n, k, min_keep, &sc_)); }
int kiln_logits_top_p(float *logits, int n, float p, int min_keep) { WITH_SCRATCH(n, top_p(logits, n, p, min_keep, &sc_)); }
int kiln_logits_min_p(float *logits, int n, float p, int min_keep) { WITH_SCRATCH(n, min_p(logits, n, p, min_keep, &sc_)); }

/* ---- seeded RNG: xoshiro256** seeded through splitmix64 (same seed, same stream, any platform) ---- */
struct kiln_sampler {
    kiln_gen_params p;
    int vocab;
    uint64_t s[4];
    float *probs;
    scratch sc;
};

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro_next(uint64_t s[4]) {
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

kiln_sampler *kiln_sampler_new(const kiln_gen_params *p, int vocab_size, kiln_err *err) {
    if (vocab_size <= 0) {
        kiln_err_set(err, "sampler: vocab size %d", vocab_size);
        return NULL;
    }
    for (int i = 0; i < p->n_logit_bias; i++) {
        const kiln_logit_bias *b = &p->logit_bias[i];
        if (b->token < 0 || b->token >= vocab_size)
            return kiln_err_set(err, "logit_bias: token id %d is outside the vocabulary (0..%d)", (int)b->token,
                                vocab_size - 1), NULL;
        if (!(b->bias >= -100 && b->bias <= 100))
            return kiln_err_set(err, "logit_bias: bias %g for token %d is outside -100..100", b->bias, (int)b->token), NULL;
    }
    kiln_sampler *s = calloc(1, sizeof *s);
    if (s) s->probs = malloc((size_t)vocab_size * sizeof *s->probs);
    if (!s || !s->probs || scratch_init(&s->sc, vocab_size)) {
        if (s) free(s->probs), free(s);
        kiln_err_set(err, "sampler: out of memory");
        return NULL;
    }
    s->p = *p;
    s->vocab = vocab_size;
    uint64_t x = p->seed;
    for (int i = 0; i < 4; i++) s->s[i] = splitmix64(&x);
    return s;
}

void kiln_sampler_free(kiln_sampler *s) {
    if (!s) return;
    free(s->probs);
    scratch_free(&s->sc);
    free(s);
}

int32_t kiln_sampler_sample(kiln_sampler *s, float *logits, const int32_t *history, size_t n_history, size_t n_prompt) {
    const kiln_gen_params *p = &s->p;
    int n = s->vocab;
    for (int i = 0; i < p->n_logit_bias; i++) logits[p->logit_bias[i].token] += p->logit_bias[i].bias;
    repetition_penalty(logits, n, history, n_history, p->repetition_penalty, &s->sc);
    if (n_prompt < n_history)
        presence_frequency(logits, n, history + n_prompt, n_history - n_prompt, p->presence_penalty,
                           p->frequency_penalty, &s->sc);
    bool sample = p->do_sample && p->temperature > 0;
    if (!sample) return kiln_argmax(logits, n);
    kiln_logits_temperature(logits, n, p->temperature);
    top_k(logits, n, p->top_k, 1, &s->sc);
    top_p(logits, n, p->top_p, 1, &s->sc);
    min_p(logits, n, p->min_p, 1, &s->sc);
    kiln_softmax(logits, s->probs, n);
    /* u in [0,1) with 53 random bits; walk the cumulative distribution (torch.multinomial's meaning). */
    double u = (double)(xoshiro_next(s->s) >> 11) * (1.0 / 9007199254740992.0);
    double cum = 0;
    int32_t last = -1;
    for (int i = 0; i < n; i++) {
        if (s->probs[i] <= 0) continue;
        cum += s->probs[i];
        last = i;
        if (u < cum) return i;
    }
    return last >= 0 ? last : kiln_argmax(logits, n); /* rounding left u past the total */
}
