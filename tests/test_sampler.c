/* test_sampler.c — the logits processors against transformers' definitions, worked by hand.
 *
 * Every expected value below is derived in the comments from the transformers source it mirrors
 * (transformers/generation/logits_process.py), never from our own code:
 *   RepetitionPenaltyLogitsProcessor  score = gather(scores, ids); where(score < 0, score*p, score/p);
 *                                     scatter back (so an id seen twice is penalised once)
 *   TemperatureLogitsWarper           scores / T
 *   TopKLogitsWarper                  remove scores < topk(scores, max(k, min_keep))[-1]  (ties kept)
 *   TopPLogitsWarper                  sort ascending; cumsum(softmax) <= 1 - top_p is removed, but the
 *                                     last min_tokens_to_keep (the most likely) never are
 *   MinPLogitsWarper                  remove probs < min_p * max(probs), the min_keep most likely kept
 * and the order _get_logits_processor builds them in: repetition penalty (a processor, also when
 * greedy), then, when sampling, temperature, top-k, top-p, min-p.
 *
 * Many cases use logits k*ln2 so that the probabilities are exact binary fractions (2^k / sum): the
 * boundary cases (cumsum == 1 - top_p, prob == min_p * max) are then decided by the rule, not rounding. */
#include <math.h>

#include "check.h"
#include "kiln.h"

#define LN2 0.69314718055994530942
#define NEG (-INFINITY)

static bool removed(float x) { return isinf(x) && x < 0; }

/* logits[i] = e[i] * ln 2, so softmax ∝ 2^e[i] */
static void pow2_logits(float *l, const double *e, int n) {
    for (int i = 0; i < n; i++) l[i] = (float)(e[i] * LN2);
}

/* softmax of what survived must equal want[] (0 = removed, which must be -inf) */
static void check_probs(const char *what, const float *logits, const double *want, int n) {
    float p[64];
    kiln_softmax(logits, p, n);
    for (int i = 0; i < n; i++) {
        if (want[i] == 0) CHECK(removed(logits[i]), "%s: token %d should be removed (logit %g)", what, i, logits[i]);
        else CHECK(!removed(logits[i]), "%s: token %d should be kept", what, i);
        CHECK(fabs(p[i] - want[i]) < 1e-6, "%s: p[%d] = %.9f, want %.9f", what, i, p[i], want[i]);
    }
}

TEST(softmax_and_argmax) {
    /* softmax([0, ln2, 2ln2]) = [1,2,4]/7; -inf → 0; argmax takes the first maximum (torch.argmax) */
    float l[4] = {0, (float)LN2, (float)(2 * LN2), NEG}, p[4];
    kiln_softmax(l, p, 4);
    double want[4] = {1 / 7., 2 / 7., 4 / 7., 0};
    for (int i = 0; i < 4; i++) CHECK(fabs(p[i] - want[i]) < 1e-7, "p[%d]=%g want %g", i, p[i], want[i]);
    float t[5] = {1, 3, 2, 3, -1};
    CHECK(kiln_argmax(t, 5) == 1, "argmax of a tie = first: %d", kiln_argmax(t, 5));
}

TEST(repetition_penalty) {
    /* scores [2, -1, 0.5, 3, -2, 0], ids [0, 1, 1, 4, 0], penalty 2:
     *   id 0:  2 > 0 → 2/2 = 1        (appears twice: gather/scatter penalises it once)
     *   id 1: -1 < 0 → -1*2 = -2      (twice too: -2, not -4)
     *   id 4: -2 < 0 → -2*2 = -4
     *   ids 2, 3, 5 not seen: unchanged (0.5, 3, 0) */
    float l[6] = {2, -1, 0.5f, 3, -2, 0};
    int32_t ids[5] = {0, 1, 1, 4, 0};
    kiln_logits_repetition_penalty(l, 6, ids, 5, 2.0f);
    float want[6] = {1, -2, 0.5f, 3, -4, 0};
    for (int i = 0; i < 6; i++) CHECK(l[i] == want[i], "l[%d]=%g want %g", i, l[i], want[i]);
    /* penalty < 1 rewards: 3 / 0.5 = 6 and -2 * 0.5 = -1; a zero score stays 0 (0/p) */
    float r[3] = {3, -2, 0};
    int32_t rid[3] = {0, 1, 2};
    kiln_logits_repetition_penalty(r, 3, rid, 3, 0.5f);
    CHECK(r[0] == 6 && r[1] == -1 && r[2] == 0, "reward: %g %g %g", r[0], r[1], r[2]);
}

TEST(temperature) {
    /* [1, 2, 3] / 0.5 = [2, 4, 6]; softmax = [e^-4, e^-2, 1] / (1 + e^-2 + e^-4) */
    float l[3] = {1, 2, 3};
    kiln_logits_temperature(l, 3, 0.5f);
    CHECK(l[0] == 2 && l[1] == 4 && l[2] == 6, "scaled: %g %g %g", l[0], l[1], l[2]);
    double z = 1 + exp(-2) + exp(-4);
    double want[3] = {exp(-4) / z, exp(-2) / z, 1 / z};
    check_probs("T=0.5", l, want, 3);
    /* T = 2 flattens: [1, 2, 3] / 2 = [0.5, 1, 1.5] */
    float h[3] = {1, 2, 3};
    kiln_logits_temperature(h, 3, 2.0f);
    CHECK(h[0] == 0.5f && h[1] == 1 && h[2] == 1.5f, "T=2: %g %g %g", h[0], h[1], h[2]);
}

TEST(top_k) {
    /* scores [1, 5, 3, 5, 2, 4], k = 3: topk values [5, 5, 4], threshold 4: remove scores < 4 →
     * keep ids 1, 3, 5. Probabilities: e^5, e^5, e^4 over (2e^5 + e^4) = [e, e, 1] / (2e + 1). */
    float l[6] = {1, 5, 3, 5, 2, 4};
    kiln_logits_top_k(l, 6, 3, 1);
    double e = exp(1), z = 2 * e + 1;
    double want[6] = {0, e / z, 0, e / z, 0, 1 / z};
    check_probs("k=3", l, want, 6);
    /* k = 1 with a tie at the top: threshold 5, both 5s survive (ties at the k-th value are kept) */
    float t[6] = {1, 5, 3, 5, 2, 4};
    kiln_logits_top_k(t, 6, 1, 1);
    double want1[6] = {0, 0.5, 0, 0.5, 0, 0};
    check_probs("k=1 tie", t, want1, 6);
    /* k >= vocab: top_k = min(k, vocab), nothing removed; k = 0 disables */
    float a[3] = {1, 2, 3};
    kiln_logits_top_k(a, 3, 10, 1);
    kiln_logits_top_k(a, 3, 0, 1);
    CHECK(!removed(a[0]) && !removed(a[1]) && !removed(a[2]), "nothing removed");
    /* k < min_tokens_to_keep: top_k = max(1, 2) = 2: topk = [5, 5], threshold 5 → ids 1, 3 only */
    float m[6] = {1, 5, 3, 5, 2, 4};
    kiln_logits_top_k(m, 6, 1, 2);
    CHECK(removed(m[5]) && !removed(m[1]) && !removed(m[3]), "min_keep 2");
}

TEST(top_p) {
    /* probs [1/8, 1/2, 1/8, 1/4] (logits [0, 2, 0, 1] * ln2 over sum 8).
     * Ascending: 1/8, 1/8, 1/4, 1/2; cumsum 0.125, 0.25, 0.5, 1.0.
     * top_p 0.75 → remove cumsum <= 0.25: both 1/8s (0.125, and 0.25 <= 0.25: equality is removed, the
     * "<=" rule; a "keep until the mass reaches top_p" variant would differ here).
     * Kept {1/2, 1/4} → renormalised [2/3, 1/3]. */
    double e[4] = {0, 2, 0, 1};
    float l[4];
    pow2_logits(l, e, 4);
    float p0[4];
    kiln_softmax(l, p0, 4);
    REQUIRE(p0[0] == 0.125f && p0[1] == 0.5f && p0[3] == 0.25f, "softmax of k*ln2 not exact: %.9g %.9g %.9g",
            p0[0], p0[1], p0[3]);
    kiln_logits_top_p(l, 4, 0.75f, 1);
    double want[4] = {0, 2 / 3., 0, 1 / 3.};
    check_probs("top_p 0.75 boundary", l, want, 4);

    /* top_p 0.5 → remove cumsum <= 0.5: 0.125, 0.25, 0.5 → only the 1/2 token. */
    pow2_logits(l, e, 4);
    kiln_logits_top_p(l, 4, 0.5f, 1);
    double want2[4] = {0, 1, 0, 0};
    check_probs("top_p 0.5", l, want2, 4);

    /* top_p 0.3 → remove cumsum <= 0.7: still only the last (1.0 > 0.7) survives */
    pow2_logits(l, e, 4);
    kiln_logits_top_p(l, 4, 0.3f, 1);
    check_probs("top_p 0.3", l, want2, 4);

    /* top_p 0 → remove cumsum <= 1: everything, even the final 1.0 — but sorted_indices_to_remove
     * [..., -min_tokens_to_keep:] = 0 keeps the most likely one (min_keep 1), or the two most likely
     * (min_keep 2: 1/2 and 1/4 → [2/3, 1/3]). */
    pow2_logits(l, e, 4);
    kiln_logits_top_p(l, 4, 0.0f, 1);
    check_probs("top_p 0 min_keep 1", l, want2, 4);
    pow2_logits(l, e, 4);
    kiln_logits_top_p(l, 4, 0.0f, 2);
    check_probs("top_p 0 min_keep 2", l, want, 4);

    /* top_p 1 disables: nothing removed even though cumsum <= 0 never holds anyway */
    pow2_logits(l, e, 4);
    kiln_logits_top_p(l, 4, 1.0f, 1);
    double all[4] = {0.125, 0.5, 0.125, 0.25};
    check_probs("top_p 1", l, all, 4);

    /* non-binary case, probs ∝ [1, 2, 3, 4] (logits ln 1..ln 4), sum 10 → [0.1, 0.2, 0.3, 0.4];
     * ascending cumsum 0.1, 0.3, 0.6, 1.0; top_p 0.65 → remove <= 0.35: ids 0, 1 → [3/7, 4/7]. */
    float q[4] = {0, logf(2), logf(3), logf(4)};
    kiln_logits_top_p(q, 4, 0.65f, 1);
    double wq[4] = {0, 0, 3 / 7., 4 / 7.};
    check_probs("top_p 0.65", q, wq, 4);
}

TEST(min_p) {
    /* probs [1/8, 1/2, 1/8, 1/4], max 1/2.
     * min_p 0.3 → threshold 0.15: remove 1/8s → {1/2, 1/4} → [2/3, 1/3].
     * min_p 0.5 → threshold 0.25 exactly: 1/4 < 0.25 is false → kept (strict "<"): the same set.
     * min_p 0.6 → threshold 0.3: 1/4 removed → only the 1/2 token. */
    double e[4] = {0, 2, 0, 1};
    float l[4];
    double two[4] = {0, 2 / 3., 0, 1 / 3.}, one[4] = {0, 1, 0, 0};
    pow2_logits(l, e, 4);
    kiln_logits_min_p(l, 4, 0.3f, 1);
    check_probs("min_p 0.3", l, two, 4);
    pow2_logits(l, e, 4);
    kiln_logits_min_p(l, 4, 0.5f, 1);
    check_probs("min_p 0.5 boundary", l, two, 4);
    pow2_logits(l, e, 4);
    kiln_logits_min_p(l, 4, 0.6f, 1);
    check_probs("min_p 0.6", l, one, 4);
    /* min_keep 2 with min_p 0.6: the two most likely survive regardless */
    pow2_logits(l, e, 4);
    kiln_logits_min_p(l, 4, 0.6f, 2);
    check_probs("min_p 0.6 min_keep 2", l, two, 4);
    /* min_p 0 disables */
    pow2_logits(l, e, 4);
    kiln_logits_min_p(l, 4, 0.0f, 1);
    double all[4] = {0.125, 0.5, 0.125, 0.25};
    check_probs("min_p 0", l, all, 4);
}

/* The whole chain through the sampler, which leaves the processed logits in place. a = ln 2.
 *   scores [3a, 4a, 5a, 2.5a, -a], history [1, 1, 4], penalty 2, T 0.5, top_k 3, top_p 0.95, min_p 0.05
 *   repetition penalty: id 1: 4a/2 = 2a; id 4: -a*2 = -2a           → [3a, 2a, 5a, 2.5a, -2a]
 *   temperature 0.5:                                                 → [6a, 4a, 10a, 5a, -4a]
 *     (weights 2^6 = 64, 16, 1024, 32, 1/16)
 *   top_k 3: the three largest are ids 2, 0, 3 (1024, 64, 32); ids 1, 4 removed. (Had top-k run before
 *     the penalty, id 1 (4a) would have beaten id 3 (2.5a).)
 *   top_p 0.95: probs 1024, 64, 32 / 1120; ascending cumsum 32/1120 = 0.0286 <= 0.05 (removed),
 *     96/1120 = 0.0857 > 0.05 (kept). (Had top-p run before the temperature, on weights 32, 8, 5.66
 *     the smallest has 0.124 > 0.05 and id 3 would survive.)
 *   min_p 0.05: probs 1024/1088, 64/1088; threshold 0.05 * 0.941 = 0.047 < 0.0588: id 0 kept.
 *   Final: id 2 → 1024/1088 = 16/17, id 0 → 64/1088 = 1/17. */
TEST(processor_order) {
    double e[5] = {3, 4, 5, 2.5, -1};
    float l[5];
    pow2_logits(l, e, 5);
    int32_t hist[3] = {1, 1, 4};
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    p.do_sample = true;
    p.repetition_penalty = 2;
    p.temperature = 0.5f;
    p.top_k = 3;
    p.top_p = 0.95f;
    p.min_p = 0.05f;
    kiln_err err = {0};
    kiln_sampler *s = kiln_sampler_new(&p, 5, &err);
    REQUIRE(s, "%s", err.msg);
    int32_t tok = kiln_sampler_sample(s, l, hist, 3, 3);
    double want[5] = {1 / 17., 0, 16 / 17., 0, 0};
    check_probs("chain", l, want, 5);
    CHECK(tok == 0 || tok == 2, "sampled a removed token %d", tok);
    kiln_sampler_free(s);
}

/* OpenAI's presence / frequency penalties, worked by hand: prompt {3}, generated {1, 1, 2}, presence 0.3,
 * frequency 0.2: id 1 (twice) 0.5 - 2*0.2 - 0.3 = -0.2; id 2 (once) 0.2 - 0.2 - 0.3 = -0.3; id 3 was only in
 * the prompt and id 0 never appeared: unchanged. Greedy still applies them (vLLM does). Then a case where the
 * penalty moves the argmax, and a negative one (encouraging repeats) that moves it back. */
TEST(presence_frequency_penalties) {
    float l[4] = {1.0f, 0.5f, 0.2f, 0.0f};
    int32_t hist[4] = {3, 1, 1, 2};
    kiln_logits_presence_frequency(l, 4, hist + 1, 3, 0.3f, 0.2f);
    CHECK(l[0] == 1.0f && fabsf(l[1] + 0.2f) < 1e-6f && fabsf(l[2] + 0.3f) < 1e-6f && l[3] == 0.0f,
          "penalised logits %g %g %g %g", l[0], l[1], l[2], l[3]);
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    p.presence_penalty = 0.2f;
    kiln_err err = {0};
    kiln_sampler *s = kiln_sampler_new(&p, 2, &err);
    REQUIRE(s, "%s", err.msg);
    float g[2] = {1.0f, 0.9f};
    int32_t h[2] = {1, 0}; /* prompt {1}, generated {0} */
    CHECK(kiln_sampler_sample(s, g, h, 2, 1) == 1, "presence 0.2 should move the argmax off the repeated id 0");
    float g2[2] = {1.0f, 0.9f};
    CHECK(kiln_sampler_sample(s, g2, h, 2, 2) == 0, "prompt ids must not be penalised");
    kiln_sampler_free(s);
    p.presence_penalty = 0, p.frequency_penalty = -0.5f;
    s = kiln_sampler_new(&p, 2, &err);
    REQUIRE(s, "%s", err.msg);
    float g3[2] = {1.0f, 0.9f};
    int32_t h3[3] = {0, 1, 1}; /* prompt {0}, generated {1, 1}: 0.9 + 2 * 0.5 = 1.9 */
    CHECK(kiln_sampler_sample(s, g3, h3, 3, 1) == 1 && fabsf(g3[1] - 1.9f) < 1e-6f, "negative frequency: %g", g3[1]);
    kiln_sampler_free(s);
}

/* Greedy (do_sample false) still applies the repetition penalty (a processor, not a warper) and no
 * warpers: scores [2, 1.5], id 0 seen, penalty 2 → [1, 1.5] → argmax 1; top_k 1 would not matter. */
TEST(greedy_applies_penalty_only) {
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    p.repetition_penalty = 2;
    p.top_k = 1;
    p.temperature = 0.1f;
    kiln_err err = {0};
    kiln_sampler *s = kiln_sampler_new(&p, 3, &err);
    REQUIRE(s, "%s", err.msg);
    float l[3] = {2, 1.5f, -1};
    int32_t hist[1] = {0};
    CHECK(kiln_sampler_sample(s, l, hist, 1, 1) == 1, "greedy with penalty");
    CHECK(l[0] == 1 && l[1] == 1.5f && l[2] == -1, "no warper applied: %g %g %g", l[0], l[1], l[2]);
    kiln_sampler_free(s);
}

/* temperature 0 with do_sample means greedy: always the argmax, logits left unwarped */
TEST(temperature_zero_is_greedy) {
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    p.do_sample = true;
    p.temperature = 0;
    kiln_err err = {0};
    kiln_sampler *s = kiln_sampler_new(&p, 4, &err);
    REQUIRE(s, "%s", err.msg);
    for (int k = 0; k < 50; k++) {
        float l[4] = {1, 1.2f, 1.1f, 0.9f};
        CHECK(kiln_sampler_sample(s, l, NULL, 0, 0) == 1, "draw %d not the argmax", k);
    }
    kiln_sampler_free(s);
}

static void draws(uint64_t seed, int vocab, int n, int32_t *out) {
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    p.do_sample = true;
    p.top_k = 0;
    p.seed = seed;
    kiln_err err = {0};
    kiln_sampler *s = kiln_sampler_new(&p, vocab, &err);
    float *l = malloc((size_t)vocab * sizeof *l);
    for (int k = 0; k < n; k++) {
        for (int i = 0; i < vocab; i++) l[i] = 0; /* flat: every token equally likely */
        out[k] = s && l ? kiln_sampler_sample(s, l, NULL, 0, 0) : -1;
    }
    free(l);
    kiln_sampler_free(s);
}

TEST(seed_reproduces_and_differs) {
    enum { V = 1000, N = 32 };
    int32_t a[N], b[N], c[N];
    draws(42, V, N, a);
    draws(42, V, N, b);
    draws(43, V, N, c);
    CHECK(!memcmp(a, b, sizeof a), "same seed gave different draws");
    int same = 0, distinct = 0;
    for (int i = 0; i < N; i++) {
        same += a[i] == c[i];
        bool seen = false;
        for (int j = 0; j < i; j++) seen |= a[j] == a[i];
        distinct += !seen;
        CHECK(a[i] >= 0 && a[i] < V, "draw out of range: %d", a[i]);
    }
    /* 32 uniform draws over 1000: two seeds agreeing in more than a few places would be no RNG */
    CHECK(same < 4, "seeds 42 and 43 agree in %d of %d draws", same, N);
    CHECK(distinct > 24, "only %d distinct of %d uniform draws", distinct, N);
}

/* The draw follows the probabilities: probs [1/8, 1/2, 1/8, 1/4], 40000 draws, each frequency within
 * 0.01 of its probability (standard deviation at most sqrt(0.25/40000) = 0.0025: 4 sigma). */
TEST(draw_frequencies) {
    enum { N = 40000 };
    kiln_gen_params p;
    kiln_gen_params_default(&p);
    p.do_sample = true;
    p.seed = 1;
    kiln_err err = {0};
    kiln_sampler *s = kiln_sampler_new(&p, 4, &err);
    REQUIRE(s, "%s", err.msg);
    double e[4] = {0, 2, 0, 1}, want[4] = {0.125, 0.5, 0.125, 0.25};
    int count[4] = {0};
    for (int k = 0; k < N; k++) {
        float l[4];
        pow2_logits(l, e, 4);
        int32_t t = kiln_sampler_sample(s, l, NULL, 0, 0);
        if (t >= 0 && t < 4) count[t]++;
    }
    for (int i = 0; i < 4; i++)
        CHECK(fabs(count[i] / (double)N - want[i]) < 0.01, "token %d: %.4f want %.4f", i, count[i] / (double)N,
              want[i]);
    kiln_sampler_free(s);
}

/* ---- the large-vocabulary paths (a heap for top-k, a radix sort for top-p / min-p) against the plain
 * definitions, written here with qsort: same survivors, bit for bit, on a 152k vocabulary with many ties,
 * negative and positive logits and ids already removed. */
static int cmp_desc(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static const float *ref_keys;
static int cmp_idx(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    float x = ref_keys[i], y = ref_keys[j];
    return x < y ? -1 : x > y ? 1 : (i > j) - (i < j);
}

static void ref_top_k(float *l, int n, int k) {
    float *s = malloc((size_t)n * sizeof *s);
    memcpy(s, l, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, cmp_desc);
    float kth = s[k - 1];
    for (int i = 0; i < n; i++)
        if (l[i] < kth) l[i] = NEG;
    free(s);
}

static void ref_top_p(float *l, int n, float p) {
    int *idx = malloc((size_t)n * sizeof *idx);
    float *sorted = malloc((size_t)n * sizeof *sorted), *pr = malloc((size_t)n * sizeof *pr);
    for (int i = 0; i < n; i++) idx[i] = i;
    ref_keys = l;
    qsort(idx, (size_t)n, sizeof *idx, cmp_idx);
    for (int i = 0; i < n; i++) sorted[i] = l[idx[i]];
    kiln_softmax(sorted, pr, n);
    float cum = 0;
    for (int i = 0; i < n; i++) {
        cum += pr[i];
        if (cum <= 1.0f - p && i < n - 1) l[idx[i]] = NEG;
    }
    free(idx), free(sorted), free(pr);
}

TEST(large_vocab_matches_definitions) {
    enum { V = 151936 };
    float *a = malloc(V * sizeof *a), *b = malloc(V * sizeof *b);
    unsigned x = 12345;
    for (int round = 0; round < 6; round++) {
        for (int i = 0; i < V; i++) {
            x = x * 1103515245u + 12345u;
            /* values on a 1/64 grid: thousands of exact ties; round 3 also has removed ids */
            a[i] = round == 3 && (x >> 8) % 5 == 0 ? NEG : (float)((int)(x >> 12 & 2047) - 1024) / 64.0f;
        }
        const int k = round < 2 ? 20 : round < 4 ? 1000 : 0;
        const float p = round % 2 ? 0.95f : 0.5f;
        memcpy(b, a, V * sizeof *a);
        if (k) kiln_logits_top_k(a, V, k, 1), ref_top_k(b, V, k);
        kiln_logits_top_p(a, V, p, 1), ref_top_p(b, V, p);
        int diff = 0, kept = 0;
        for (int i = 0; i < V; i++) diff += memcmp(&a[i], &b[i], sizeof *a) != 0, kept += !removed(a[i]);
        CHECK(diff == 0 && kept > 0, "round %d (top_k %d, top_p %.2f): %d ids differ from the definition, %d kept", round,
              k, p, diff, kept);
    }
    free(a), free(b);
}

int main(void) {
    RUN(softmax_and_argmax);
    RUN(repetition_penalty);
    RUN(temperature);
    RUN(top_k);
    RUN(top_p);
    RUN(min_p);
    RUN(processor_order);
    RUN(presence_frequency_penalties);
    RUN(greedy_applies_penalty_only);
    RUN(temperature_zero_is_greedy);
    RUN(seed_reproduces_and_differs);
    RUN(draw_frequencies);
    RUN(large_vocab_matches_definitions);
    return check_done();
}
