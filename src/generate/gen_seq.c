/* gen_seq.c — one sequence's generation state: sample, detokenize, stop strings, thinking split.
 *
 * Text flows: token → incremental detokenizer (complete UTF-8 only) → `hold` → emitted. `hold` keeps
 * back the longest tail that could still become a stop string, so a stop string spanning tokens is
 * never emitted. The think tags themselves are never emitted; emitted text before the LAST </think> is
 * the thinking part. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "dist/dist.h"
#include "kiln.h"

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
    strbuf hold;    /* text not yet emitted (possible start of a stop string) */
    strbuf emitted; /* everything emitted, both parts, tags excluded */
    size_t split;   /* emitted.len when the last </think> arrived */
    strbuf step;    /* this step's text */
    kiln_grammar_matcher *grammar; /* NULL: unconstrained */
    kiln_grammar_vocab *own_vocab; /* built here when the params brought none */
    kiln_err err;                  /* why the last step failed */
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

static int grammar_start(kiln_gen_seq *g, const kiln_tokenizer *t, const kiln_gen_params *p, kiln_err *err) {
    const kiln_grammar_vocab *v = p->grammar_vocab;
    if (!v && !t) return kiln_err_set(err, "grammar: constrained decoding needs the tokenizer");
    if (!v && !(v = g->own_vocab = kiln_grammar_vocab_new(t, err))) return -1;
    g->grammar = kiln_grammar_matcher_new(p->grammar, v, err);
    return g->grammar ? 0 : -1;
}

/* Moves the grammar past the chosen token; the sequence ends once nothing more may follow. */
static int grammar_advance(kiln_gen_seq *g, int32_t tok, bool is_eos) {
    if (is_eos) {
        if (kiln_grammar_matcher_accept_eos(g->grammar, &g->err)) return -1;
        g->finish = KILN_FINISH_EOS;
        return 0;
    }
    if (kiln_grammar_matcher_accept_token(g->grammar, tok, &g->err)) return -1;
    if (!kiln_grammar_matcher_can_continue(g->grammar)) g->finish = KILN_FINISH_EOS;
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
    if (!g->hist || !(g->sampler = kiln_sampler_new(p, vocab_size, err)) || (t && !(g->detok = kiln_detok_new(t, true)))) {
        if (!g->hist || g->sampler) kiln_err_set(err, "out of memory"); /* else the sampler said why */
        kiln_gen_seq_free(g);
        return NULL;
    }
    if (p->grammar && grammar_start(g, t, p, err)) {
        kiln_gen_seq_free(g);
        return NULL;
    }
    if (n_prompt) memcpy(g->hist, prompt, n_prompt * sizeof *prompt);
    g->n_prompt = g->n_hist = n_prompt;
    if (g->detok && kiln_detok_prime(g->detok, prompt, n_prompt)) { /* the continuation's text in context */
        kiln_err_set(err, "generation: out of memory");
        kiln_gen_seq_free(g);
        return NULL;
    }
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
    kiln_grammar_matcher_free(g->grammar);
    kiln_grammar_vocab_free(g->own_vocab);
    if (g->detok) kiln_detok_free(g->detok);
    free(g->hist);
    strbuf_free(&g->hold);
    strbuf_free(&g->emitted);
    strbuf_free(&g->step);
    free(g);
}

static size_t n_gen(const kiln_gen_seq *g) { return g->n_hist - g->n_prompt; }
static bool stops_active(const kiln_gen_seq *g) { return n_gen(g) >= (size_t)g->p.min_new_tokens; }

static int emit(kiln_gen_seq *g, const char *s, size_t n) {
    return strbuf_put(&g->step, s, n) || strbuf_put(&g->emitted, s, n) ? -1 : 0;
}

/* Moves what is certain out of hold: up to a stop string (then finish), else all but a tail that is
 * a prefix of some stop string. final: the sequence ends, so the tail goes out too. */
static int drain_hold(kiln_gen_seq *g, bool final) {
    strbuf *h = &g->hold;
    if (h->len == 0) return 0;
    size_t keep = 0;
    /* While --min-new-tokens suppresses stops, possible starts of a stop string are still held back,
     * so that one which completes on or after the min-th token stops the sequence unprinted. */
    if (stops_active(g) && g->p.n_stop > 0) {
        size_t first = SIZE_MAX;
        for (int i = 0; i < g->p.n_stop; i++) {
            const char *s = g->p.stop[i];
            if (!s || !*s) continue;
            const char *at = memmem(h->p, h->len, s, strlen(s));
            if (at && (size_t)(at - h->p) < first) first = (size_t)(at - h->p);
        }
        if (first != SIZE_MAX) {
            int rc = emit(g, h->p, first);
            strbuf_clear(h);
            g->finish = KILN_FINISH_STOP;
            return rc;
        }
    }
    if (!final)
        for (int i = 0; i < g->p.n_stop; i++) {
            const char *s = g->p.stop[i];
            size_t ls = s ? strlen(s) : 0;
            for (size_t k = ls > 0 ? ls - 1 : 0; k > keep; k--)
                if (k <= h->len && memcmp(h->p + h->len - k, s, k) == 0) {
                    keep = k;
                    break;
                }
        }
    size_t out = h->len - keep;
    if (emit(g, h->p, out)) return -1;
    memmove(h->p, h->p + out, keep);
    h->len = keep;
    h->p[keep] = 0;
    return 0;
}

static int flush_detok(kiln_gen_seq *g) {
    if (!g->detok) return 0;
    size_t n = 0;
    const char *s = kiln_detok_flush(g->detok, &n);
    if (!s || strbuf_put(&g->hold, s, n)) return -1;
    kiln_detok *fresh = kiln_detok_new(g->tok, true);
    if (!fresh) return -1;
    kiln_detok_free(g->detok);
    g->detok = fresh;
    return kiln_detok_prime(g->detok, g->hist, g->n_hist);
}

int kiln_gen_seq_push(kiln_gen_seq *g, int32_t tok, kiln_gen_step *out) {
    memset(out, 0, sizeof *out);
    out->token = tok;
    strbuf_clear(&g->step);
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
    if (g->grammar && grammar_advance(g, tok, is_eos)) return -1;
    int rc = 0;
    if (is_eos && n_gen(g) > (size_t)g->p.min_new_tokens) { /* counted after appending */
        g->finish = KILN_FINISH_EOS;
    } else if (tok == g->think_end_id || tok == g->think_start_id) {
        rc = flush_detok(g) || drain_hold(g, true);
        if (tok == g->think_end_id) {
            g->in_think = false;
            g->split = g->emitted.len;
        } else {
            g->in_think = true;
        }
    } else if (g->detok) {
        size_t n = 0;
        const char *s = kiln_detok_push(g->detok, tok, &n);
        rc = !s || strbuf_put(&g->hold, s, n) ? -1 : 0;
    }
    if (!rc && g->finish == KILN_FINISH_NONE && g->p.max_new_tokens > 0 &&
        n_gen(g) >= (size_t)g->p.max_new_tokens)
        g->finish = KILN_FINISH_LENGTH;
    if (!rc) {
        bool final = g->finish != KILN_FINISH_NONE;
        if (final) rc = flush_detok(g);
        if (!rc) rc = drain_hold(g, final);
        if (!rc && g->finish == KILN_FINISH_STOP) strbuf_clear(&g->hold);
    }
    out->finish = g->finish;
    out->text = g->step.p ? g->step.p : "";
    out->text_len = g->step.len;
    return rc;
}

int kiln_gen_seq_step(kiln_gen_seq *g, float *logits, kiln_gen_step *out) {
    if (n_gen(g) < (size_t)g->p.min_new_tokens)
        for (int i = 0; i < g->p.n_eos; i++) /* MinNewTokensLengthLogitsProcessor */
            if (g->p.eos_ids[i] >= 0 && g->p.eos_ids[i] < g->vocab) logits[g->p.eos_ids[i]] = -INFINITY;
    if (g->grammar && kiln_grammar_matcher_mask(g->grammar, logits, g->vocab, g->p.eos_ids, g->p.n_eos, &g->err))
        return -1;
    int32_t tok = kiln_sampler_sample(g->sampler, logits, g->hist, g->n_hist, g->n_prompt);
    if (dist_bcast_token(&tok, &g->err)) return -1; /* distributed: rank 0's sample is everyone's */
    return kiln_gen_seq_push(g, tok, out);
}

kiln_finish kiln_gen_seq_finish(const kiln_gen_seq *g) { return g->finish; }

const char *kiln_gen_seq_error(const kiln_gen_seq *g) { return g->err.msg[0] ? g->err.msg : "out of memory"; }

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
    *content = trimmed_copy(e + g->split, g->emitted.len - g->split);
    if (!*thinking || !*content) {
        free(*thinking);
        free(*content);
        *thinking = *content = NULL;
        return kiln_err_set(err, "out of memory");
    }
    return 0;
}
