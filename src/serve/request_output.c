/* request_output.c — what happens to one request's logits after each engine step: pick a token, turn
 * it into text, decide whether the request is finished, and route the text to content or reasoning.
 *
 * Text moves through three stages, each holding back only what it must:
 *   detokenizer (incomplete UTF-8)  →  stop strings (a suffix that may still grow into one)
 *                                   →  <think> split (a suffix that may still grow into a tag). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "serve/serve.h"

struct req_output {
    const kiln_tokenizer *tok;
    kiln_detok *detok;
    int32_t eos[16];
    int n_eos;
    bool ignore_eos;
    int max_tokens, n_gen;
    float temperature, top_p, min_p;
    int top_k;
    uint64_t rng[2];
    char **stop;
    int n_stop;
    size_t max_stop; /* longest stop string */
    sbuf held;       /* text not yet safe from stop strings */
    sbuf think;      /* text not yet routed by the <think> split */
    bool split, in_think, started, strip_nl, stopped;
    /* scratch for sampling */
    float *prob;
    int32_t *idx;
    int vocab;
};

/* xoroshiro128+ seeded through splitmix64: small, fast, reproducible per seed. */
static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
static double uniform(uint64_t s[2]) {
    uint64_t s0 = s[0], s1 = s[1], r = s0 + s1;
    s1 ^= s0;
    s[0] = ((s0 << 55) | (s0 >> 9)) ^ s1 ^ (s1 << 14);
    s[1] = (s1 << 36) | (s1 >> 28);
    return (double)(r >> 11) / 9007199254740992.0;
}

req_output *output_new(serve_req *r, const kiln_tokenizer *tok, const int32_t *eos, int n_eos) {
    req_output *o = calloc(1, sizeof *o);
    if (!o) return NULL;
    o->tok = tok;
    o->detok = kiln_detok_new(tok, true);
    if (!o->detok) {
        free(o);
        return NULL;
    }
    for (int i = 0; i < n_eos && i < 16; i++) o->eos[o->n_eos++] = eos[i];
    o->ignore_eos = r->ignore_eos;
    o->max_tokens = r->max_tokens;
    o->temperature = r->temperature;
    o->top_p = r->top_p;
    o->top_k = r->top_k;
    o->min_p = r->min_p;
    uint64_t seed = r->has_seed ? r->seed : ((uint64_t)time(NULL) << 20) ^ (uint64_t)(uintptr_t)o;
    o->rng[0] = splitmix(&seed);
    o->rng[1] = splitmix(&seed);
    o->stop = r->stop;
    o->n_stop = r->n_stop;
    for (int i = 0; i < r->n_stop; i++)
        if (strlen(r->stop[i]) > o->max_stop) o->max_stop = strlen(r->stop[i]);
    o->split = r->split_thinking;
    o->in_think = r->thinking_open;
    return o;
}

void output_free(req_output *o) {
    if (!o) return;
    kiln_detok_free(o->detok);
    sbuf_free(&o->held);
    sbuf_free(&o->think);
    free(o->prob);
    free(o->idx);
    free(o);
}

/* ---- sampling ---- */

static int cmp_desc(const void *a, const void *b, void *p) {
    const float *v = p;
    float x = v[*(const int32_t *)a], y = v[*(const int32_t *)b];
    return x < y ? 1 : x > y ? -1 : (*(const int32_t *)a - *(const int32_t *)b);
}

static int32_t argmax(const float *x, int n) {
    int32_t best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* The k best ids by value, best first (k small: selection by repeated scans would be O(kn); a partial
 * insertion keeps it one pass). */
static int top_ids(const float *x, int n, int k, int32_t *out) {
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m == k && x[i] <= x[out[m - 1]]) continue;
        int j = m < k ? m++ : m - 1;
        while (j > 0 && x[out[j - 1]] < x[i]) out[j] = out[j - 1], j--;
        out[j] = i;
    }
    return m;
}

static void fill_logprobs(const float *logits, int vocab, int32_t id, int n_top, serve_logprob *lp) {
    float mx = logits[argmax(logits, vocab)];
    double sum = 0;
    for (int i = 0; i < vocab; i++) sum += exp((double)logits[i] - mx);
    float lse = mx + (float)log(sum);
    lp->id = id;
    lp->logprob = logits[id] - lse;
    lp->n_top = top_ids(logits, vocab, n_top, lp->top_id);
    for (int k = 0; k < lp->n_top; k++) lp->top_lp[k] = logits[lp->top_id[k]] - lse;
}

static int32_t sample(req_output *o, const float *logits, int vocab) {
    if (o->temperature <= 0 || o->top_k == 1) return argmax(logits, vocab);
    if (o->vocab != vocab) {
        free(o->prob);
        free(o->idx);
        o->prob = malloc((size_t)vocab * sizeof *o->prob);
        o->idx = malloc((size_t)vocab * sizeof *o->idx);
        o->vocab = vocab;
        if (!o->prob || !o->idx) return argmax(logits, vocab);
    }
    /* Candidates: all, or the top k, sorted by logit. Sorting the whole vocabulary is only needed for
     * top-p; without it, one pass in id order samples the same distribution. */
    int n = vocab;
    if (o->top_k > 0 && o->top_k < vocab) n = top_ids(logits, vocab, o->top_k, o->idx);
    else if (o->top_p >= 1) {
        float mx = logits[argmax(logits, vocab)];
        double total = 0;
        for (int i = 0; i < vocab; i++) {
            float p = expf((logits[i] - mx) / o->temperature); /* the best token has p = 1 */
            o->prob[i] = p >= o->min_p ? p : 0;
            total += o->prob[i];
        }
        double u = uniform(o->rng) * total, acc = 0;
        for (int i = 0; i < vocab; i++)
            if ((acc += o->prob[i]) > u && o->prob[i] > 0) return i;
        return argmax(logits, vocab);
    } else {
        for (int i = 0; i < vocab; i++) o->idx[i] = i;
        qsort_r(o->idx, (size_t)vocab, sizeof *o->idx, cmp_desc, (void *)logits);
    }
    float mx = logits[o->idx[0]];
    for (int i = 0; i < n; i++) o->prob[i] = expf((logits[o->idx[i]] - mx) / o->temperature);
    /* min-p: drop tokens below min_p times the best one's probability. */
    int keep = n;
    if (o->min_p > 0) {
        keep = 1;
        while (keep < n && o->prob[keep] >= o->min_p * o->prob[0]) keep++;
    }
    /* top-p: the smallest prefix whose mass reaches top_p. */
    double total = 0;
    for (int i = 0; i < keep; i++) total += o->prob[i];
    if (o->top_p < 1) {
        double acc = 0;
        for (int i = 0; i < keep; i++) {
            acc += o->prob[i];
            if (acc >= o->top_p * total) {
                keep = i + 1;
                total = acc;
                break;
            }
        }
    }
    double u = uniform(o->rng) * total, acc = 0;
    for (int i = 0; i < keep; i++) {
        acc += o->prob[i];
        if (u < acc) return o->idx[i];
    }
    return o->idx[keep - 1];
}

int32_t output_sample(req_output *o, const float *logits, int vocab, serve_logprob *lp) {
    int32_t id = sample(o, logits, vocab);
    if (lp) fill_logprobs(logits, vocab, id, lp->n_top, lp);
    return id;
}

/* ---- text routing ---- */

/* Length of the longest suffix of s[0..n) that is a proper prefix of tag. */
static size_t partial_suffix(const char *s, size_t n, const char *tag) {
    size_t t = strlen(tag);
    for (size_t k = t - 1 < n ? t - 1 : n; k > 0; k--)
        if (!memcmp(s + n - k, tag, k)) return k;
    return 0;
}

static void to_content(req_output *o, serve_req *r, const char *s, size_t n) {
    if (o->strip_nl) { /* the blank line between </think> and the answer belongs to neither */
        while (n && (*s == '\n' || *s == ' ')) s++, n--;
        if (n) o->strip_nl = false;
    }
    sbuf_put(&r->content, s, n);
}

/* The <think> split: text before <think>...</think> at the very start goes to content, inside to
 * reasoning. Holds back a suffix that might be the start of the tag it waits for. */
static void route(req_output *o, serve_req *r, const char *s, size_t n, bool final) {
    if (!o->split) {
        sbuf_put(&r->content, s, n);
        return;
    }
    sbuf_put(&o->think, s, n);
    for (;;) {
        char *p = o->think.p;
        size_t len = o->think.len;
        if (!len) return;
        if (!o->in_think && !o->started) { /* does the answer open with <think>? */
            size_t ws = 0;
            while (ws < len && (p[ws] == '\n' || p[ws] == ' ')) ws++;
            if (len - ws >= 7 && !memcmp(p + ws, "<think>", 7)) {
                o->in_think = true;
                o->started = true;
                memmove(p, p + ws + 7, len - ws - 7 + 1);
                o->think.len = len - ws - 7;
                continue;
            }
            if (!final && len - ws < 7 && !memcmp(p + ws, "<think>", len - ws)) return; /* a prefix of <think> */
            o->started = true;
        }
        if (o->in_think) {
            char *end = memmem(p, len, "</think>", 8);
            if (end) {
                sbuf_put(&r->reasoning, p, (size_t)(end - p));
                size_t rest = len - (size_t)(end - p) - 8;
                memmove(p, end + 8, rest + 1);
                o->think.len = rest;
                o->in_think = false;
                o->strip_nl = true;
                continue;
            }
            size_t keep = final ? 0 : partial_suffix(p, len, "</think>");
            sbuf_put(&r->reasoning, p, len - keep);
            memmove(p, p + len - keep, keep + 1);
            o->think.len = keep;
            return;
        }
        o->started = true;
        to_content(o, r, p, len);
        o->think.len = 0;
        return;
    }
}

/* Stop strings: returns true when one appeared (text before it is emitted, the rest dropped). */
static bool push_text(req_output *o, serve_req *r, const char *s, size_t n) {
    if (!o->n_stop) {
        route(o, r, s, n, false);
        return false;
    }
    size_t before = o->held.len;
    sbuf_put(&o->held, s, n);
    /* Search only where a new match can start: max_stop - 1 bytes before the new text. */
    size_t from = before > o->max_stop ? before - o->max_stop : 0;
    size_t cut = o->held.len;
    for (int i = 0; i < o->n_stop; i++) {
        size_t sl = strlen(o->stop[i]);
        char *m = memmem(o->held.p + from, o->held.len - from, o->stop[i], sl);
        if (m && (size_t)(m - o->held.p) < cut) cut = (size_t)(m - o->held.p);
    }
    if (cut < o->held.len) {
        route(o, r, o->held.p, cut, false);
        o->held.len = 0;
        return true;
    }
    size_t keep = 0;
    for (int i = 0; i < o->n_stop; i++) {
        size_t k = partial_suffix(o->held.p, o->held.len, o->stop[i]);
        if (k > keep) keep = k;
    }
    route(o, r, o->held.p, o->held.len - keep, false);
    memmove(o->held.p, o->held.p + o->held.len - keep, keep + 1);
    o->held.len = keep;
    return false;
}

serve_finish output_push(req_output *o, serve_req *r, int32_t id, const serve_logprob *lp) {
    if (r->return_token_ids) {
        int32_t *g = realloc(r->gen_ids, (size_t)(o->n_gen + 1) * sizeof *g);
        if (g) r->gen_ids = g, g[o->n_gen] = id;
    }
    o->n_gen++;
    r->n_gen = o->n_gen;
    bool eos = false;
    for (int i = 0; i < o->n_eos && !o->ignore_eos; i++) eos |= o->eos[i] == id;
    if (eos) return FIN_STOP; /* the EOS token is neither text nor logprob */
    if (lp) {
        if (r->n_lp == r->cap_lp) {
            int cap = r->cap_lp ? 2 * r->cap_lp : 16;
            serve_logprob *p = realloc(r->lp, (size_t)cap * sizeof *p);
            if (p) r->lp = p, r->cap_lp = cap;
        }
        if (r->n_lp < r->cap_lp) r->lp[r->n_lp++] = *lp;
    }
    size_t n = 0;
    const char *s = kiln_detok_push(o->detok, id, &n);
    if (n && push_text(o, r, s, n)) {
        o->stopped = true; /* what follows the stop string is dropped */
        return FIN_STOP;
    }
    return o->n_gen >= o->max_tokens ? FIN_LENGTH : FIN_NONE;
}

void output_flush(req_output *o, serve_req *r) {
    size_t n = 0;
    const char *s = o->stopped ? NULL : kiln_detok_flush(o->detok, &n);
    if (n) push_text(o, r, s, n);
    if (!o->stopped) route(o, r, o->held.p ? o->held.p : "", o->held.len, false);
    o->held.len = 0;
    route(o, r, "", 0, true);
}
