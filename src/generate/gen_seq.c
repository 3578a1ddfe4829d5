/* gen_seq.c — one sequence's generation state: sample, detokenize, stop strings, thinking split.
 *
 * Text flows: token → incremental detokenizer (complete UTF-8 only) → `hold` → emitted. `hold` keeps
 * back the longest tail that could still become a stop string, so a stop string spanning tokens is
 * never emitted. The think tags themselves are never emitted; emitted text before the LAST </think> is
 * the thinking part. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kiln.h"

typedef struct {
    char *p;
    size_t n, cap;
} buf;

static int buf_add(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) return -1;
        b->p = np;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return 0;
}

struct kiln_gen_seq {
    const kiln_tokenizer *tok;
    kiln_gen_params p;
    kiln_sampler *sampler;
    kiln_detok *detok;
    int vocab;
    int32_t *hist; /* prompt + generated */
    size_t n_prompt, n_hist, cap_hist;
    int32_t think_start_id, think_end_id;
    bool in_think;
    kiln_finish finish;
    buf hold;     /* text not yet emitted (possible start of a stop string) */
    buf emitted;  /* everything emitted, both parts, tags excluded */
    size_t split; /* emitted.n when the last </think> arrived */
    buf step;     /* this step's text */
};

const char *kiln_finish_name(kiln_finish f) {
    switch (f) {
    case KILN_FINISH_EOS: return "eos";
    case KILN_FINISH_LENGTH: return "length";
    case KILN_FINISH_STOP: return "stop";
    default: return "";
    }
}

size_t kiln_think_split(const int32_t *ids, size_t n, int32_t think_end_id) {
    if (think_end_id < 0) return 0;
    for (size_t i = n; i > 0; i--)
        if (ids[i - 1] == think_end_id) return i;
    return 0;
}

kiln_gen_seq *kiln_gen_seq_new(const kiln_tokenizer *t, const kiln_gen_params *p, const int32_t *prompt,
                               size_t n_prompt, int vocab_size, kiln_err *err) {
    kiln_gen_seq *g = calloc(1, sizeof *g);
    if (!g) {
        kiln_err_set(err, "out of memory");
        return NULL;
    }
    g->tok = t;
    g->p = *p;
    g->vocab = vocab_size;
    g->cap_hist = n_prompt + (size_t)(p->max_new_tokens > 0 ? p->max_new_tokens : 0) + 1;
    g->hist = malloc(g->cap_hist * sizeof *g->hist);
    g->sampler = kiln_sampler_new(p, vocab_size, err);
    g->detok = t ? kiln_detok_new(t, true) : NULL;
    if (!g->hist || !g->sampler || (t && !g->detok)) {
        if (g->hist && g->sampler) kiln_err_set(err, "out of memory");
        kiln_gen_seq_free(g);
        return NULL;
    }
    if (n_prompt) memcpy(g->hist, prompt, n_prompt * sizeof *prompt);
    g->n_prompt = g->n_hist = n_prompt;
    if (g->detok) kiln_detok_prime(g->detok, prompt, n_prompt); /* the continuation's text in context */
    g->think_end_id = p->think_end_id;
    if (g->think_end_id == -1 && t) g->think_end_id = kiln_token_id(t, "</think>");
    g->think_start_id = (g->think_end_id >= 0 && t) ? kiln_token_id(t, "<think>") : -1;
    /* A prompt that ends inside an open <think> (a template that opens it) starts in thinking mode. */
    for (size_t i = n_prompt; i > 0; i--) {
        if (prompt[i - 1] == g->think_end_id) break;
        if (g->think_start_id >= 0 && prompt[i - 1] == g->think_start_id) {
            g->in_think = true;
            break;
        }
    }
    return g;
}

void kiln_gen_seq_free(kiln_gen_seq *g) {
    if (!g) return;
    kiln_sampler_free(g->sampler);
    if (g->detok) kiln_detok_free(g->detok);
    free(g->hist);
    free(g->hold.p);
    free(g->emitted.p);
    free(g->step.p);
    free(g);
}

static size_t n_gen(const kiln_gen_seq *g) { return g->n_hist - g->n_prompt; }
static bool stops_active(const kiln_gen_seq *g) { return n_gen(g) >= (size_t)g->p.min_new_tokens; }

static int emit(kiln_gen_seq *g, const char *s, size_t n) {
    return buf_add(&g->step, s, n) || buf_add(&g->emitted, s, n) ? -1 : 0;
}

/* Moves what is certain out of hold: up to a stop string (then finish), else all but a tail that is
 * a prefix of some stop string. final: the sequence ends, so the tail goes out too. */
static int drain_hold(kiln_gen_seq *g, bool final) {
    buf *h = &g->hold;
    if (h->n == 0) return 0;
    size_t keep = 0;
    /* While --min-new-tokens suppresses stops, possible starts of a stop string are still held back,
     * so that one which completes on or after the min-th token stops the sequence unprinted. */
    if (stops_active(g) && g->p.n_stop > 0) {
        size_t first = SIZE_MAX;
        for (int i = 0; i < g->p.n_stop; i++) {
            const char *s = g->p.stop[i];
            if (!s || !*s) continue;
            const char *at = memmem(h->p, h->n, s, strlen(s));
            if (at && (size_t)(at - h->p) < first) first = (size_t)(at - h->p);
        }
        if (first != SIZE_MAX) {
            int rc = emit(g, h->p, first);
            h->n = 0;
            g->finish = KILN_FINISH_STOP;
            return rc;
        }
    }
    if (!final)
        for (int i = 0; i < g->p.n_stop; i++) {
            const char *s = g->p.stop[i];
            size_t ls = s ? strlen(s) : 0;
            for (size_t k = ls > 0 ? ls - 1 : 0; k > keep; k--)
                if (k <= h->n && memcmp(h->p + h->n - k, s, k) == 0) {
                    keep = k;
                    break;
                }
        }
    size_t out = h->n - keep;
    if (emit(g, h->p, out)) return -1;
    memmove(h->p, h->p + out, keep);
    h->n = keep;
    return 0;
}

static int flush_detok(kiln_gen_seq *g) {
    if (!g->detok) return 0;
    size_t n = 0;
    const char *s = kiln_detok_flush(g->detok, &n);
    if (n && buf_add(&g->hold, s, n)) return -1;
    kiln_detok_free(g->detok);
    g->detok = kiln_detok_new(g->tok, true);
    if (g->detok) kiln_detok_prime(g->detok, g->hist, g->n_hist);
    return g->detok ? 0 : -1;
}

int kiln_gen_seq_push(kiln_gen_seq *g, int32_t tok, kiln_gen_step *out) {
    memset(out, 0, sizeof *out);
    out->token = tok;
    g->step.n = 0;
    if (g->finish != KILN_FINISH_NONE) {
        out->finish = g->finish;
        out->text = "";
        return 0;
    }
    out->thinking = g->in_think;
    if (g->n_hist == g->cap_hist) { /* only when max_new_tokens <= 0 was given: grow */
        size_t cap = g->cap_hist * 2;
        int32_t *h = realloc(g->hist, cap * sizeof *h);
        if (!h) return -1;
        g->hist = h;
        g->cap_hist = cap;
    }
    g->hist[g->n_hist++] = tok;
    bool is_eos = false;
    for (int i = 0; i < g->p.n_eos; i++)
        if (g->p.eos_ids[i] == tok) is_eos = true;
    int rc = 0;
    if (is_eos && n_gen(g) > (size_t)g->p.min_new_tokens) { /* counted after appending */
        g->finish = KILN_FINISH_EOS;
    } else if (tok == g->think_end_id || tok == g->think_start_id) {
        rc = flush_detok(g) || drain_hold(g, true);
        if (tok == g->think_end_id) {
            g->in_think = false;
            g->split = g->emitted.n;
        } else {
            g->in_think = true;
        }
    } else if (g->detok) {
        size_t n = 0;
        const char *s = kiln_detok_push(g->detok, tok, &n);
        if (n) rc = buf_add(&g->hold, s, n);
    }
    if (!rc && g->finish == KILN_FINISH_NONE && g->p.max_new_tokens > 0 &&
        n_gen(g) >= (size_t)g->p.max_new_tokens)
        g->finish = KILN_FINISH_LENGTH;
    if (!rc) {
        bool final = g->finish != KILN_FINISH_NONE;
        if (final) rc = flush_detok(g);
        if (!rc) rc = drain_hold(g, final);
        if (!rc && g->finish == KILN_FINISH_STOP) g->hold.n = 0;
    }
    out->finish = g->finish;
    out->text = g->step.p ? g->step.p : "";
    out->text_len = g->step.n;
    return rc;
}

int kiln_gen_seq_step(kiln_gen_seq *g, float *logits, kiln_gen_step *out) {
    if (n_gen(g) < (size_t)g->p.min_new_tokens)
        for (int i = 0; i < g->p.n_eos; i++) /* MinNewTokensLengthLogitsProcessor */
            if (g->p.eos_ids[i] >= 0 && g->p.eos_ids[i] < g->vocab) logits[g->p.eos_ids[i]] = -INFINITY;
    int32_t tok = kiln_sampler_sample(g->sampler, logits, g->hist, g->n_hist, g->n_prompt);
    return kiln_gen_seq_push(g, tok, out);
}

kiln_finish kiln_gen_seq_finish(const kiln_gen_seq *g) { return g->finish; }

const int32_t *kiln_gen_seq_ids(const kiln_gen_seq *g, size_t *n) {
    *n = n_gen(g);
    return g->hist + g->n_prompt;
}

static char *trimmed_copy(const char *s, size_t n) {
    while (n && *s == '\n') s++, n--;
    while (n && s[n - 1] == '\n') n--;
    char *r = malloc(n + 1);
    if (r) {
        memcpy(r, s, n);
        r[n] = 0;
    }
    return r;
}

int kiln_gen_seq_result(const kiln_gen_seq *g, char **content, char **thinking, kiln_err *err) {
    const char *e = g->emitted.p ? g->emitted.p : "";
    *thinking = trimmed_copy(e, g->split);
    *content = trimmed_copy(e + g->split, g->emitted.n - g->split);
    if (!*thinking || !*content) {
        free(*thinking);
        free(*content);
        *thinking = *content = NULL;
        return kiln_err_set(err, "out of memory");
    }
    return 0;
}
