/* request_output.c — what happens to one request's logits after each engine step.
 *
 * The generation itself (processors, seeded sampling, EOS, stop strings spanning tokens, min/max new
 * tokens, UTF-8 safe detokenization, the <think> split) is the library's kiln_gen_seq, the same code
 * `kiln run` uses, so a greedy answer here is `kiln run --greedy`'s answer by construction. What is left
 * is what only the API needs:
 *   - logprobs of the raw model output (before processors, as vLLM reports them);
 *   - each step's text to content or reasoning_content (chat: newlines around each part are trimmed,
 *     exactly what kiln_gen_seq_result trims, holding back trailing newlines until more text comes);
 *   - tool calls (requests with tools): Hermes / Qwen `<tool_call>{json}</tool_call>` anywhere in the
 *     content, or Llama-3.1 style where the whole answer is one JSON object {"name", "parameters"}.
 *     Text that may still turn into a call is held back, so a stream never shows a call as raw text. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve.h"

#define CALL_OPEN "<tool_call>"
#define CALL_CLOSE "</tool_call>"

/* One destination (content or reasoning) with chat's trimming: leading newlines dropped, trailing ones
 * held until non-newline text follows (and dropped at the end). */
typedef struct part {
    bool trim, started;
    int held_nl;
} part;

typedef enum { TOOLS_TEXT, TOOLS_IN_CALL, TOOLS_JSON } tools_mode;

struct req_output {
    kiln_gen_seq *gen;
    float *raw; /* logits before the processors (logprobs only) */
    int vocab;
    part content, reasoning;
    bool tools;
    tools_mode mode;
    bool seen_text; /* content had a non-space character (bare JSON calls must start the answer) */
    strbuf pending;   /* content held back by the tool-call parser */
};

req_output *output_new(serve_req *r, const kiln_tokenizer *tok, int vocab, kiln_err *err) {
    req_output *o = calloc(1, sizeof *o);
    if (!o) return kiln_err_set(err, "out of memory"), NULL;
    o->vocab = vocab;
    o->gen = kiln_gen_seq_new(tok, &r->gen, r->prompt, (size_t)r->n_prompt, vocab, err);
    if (r->logprobs || r->rank) o->raw = malloc((size_t)vocab * sizeof *o->raw);
    if (!o->gen || ((r->logprobs || r->rank) && !o->raw)) {
        if (o->gen) kiln_err_set(err, "out of memory");
        output_free(o);
        return NULL;
    }
    o->content.trim = o->reasoning.trim = r->kind == REQ_CHAT;
    o->tools = r->has_tools;
    return o;
}

void output_free(req_output *o) {
    if (!o) return;
    kiln_gen_seq_free(o->gen);
    free(o->raw);
    strbuf_free(&o->pending);
    free(o);
}

const char *output_error(const req_output *o) { return kiln_gen_seq_error(o->gen); }

const int32_t *output_ids(const req_output *o, size_t *n) { return kiln_gen_seq_ids(o->gen, n); }

/* ---- sampling ---- */

/* The k best ids by value, best first (one pass with a small insertion list). */
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

static void fill_logprobs(const float *logits, int vocab, int32_t id, serve_logprob *lp) {
    float mx = logits[kiln_argmax(logits, vocab)];
    double sum = 0;
    for (int i = 0; i < vocab; i++) sum += exp((double)logits[i] - mx);
    float lse = mx + (float)log(sum);
    lp->id = id;
    lp->logprob = logits[id] - lse;
    lp->n_top = top_ids(logits, vocab, lp->n_top, lp->top_id);
    for (int k = 0; k < lp->n_top; k++) lp->top_lp[k] = logits[lp->top_id[k]] - lse;
}

int output_sample(req_output *o, serve_req *r, float *logits, kiln_gen_step *step, serve_logprob *lp) {
    bool want = r->logprobs || r->rank;
    if (want) memcpy(o->raw, logits, (size_t)o->vocab * sizeof *logits);
    if (kiln_gen_seq_step(o->gen, logits, step)) return -1;
    if (want && lp) {
        lp->n_top = r->top_logprobs;
        fill_logprobs(o->raw, o->vocab, step->token, lp);
    }
    return 0;
}

int output_force(req_output *o, int32_t token, kiln_gen_step *step) { return kiln_gen_seq_push(o->gen, token, step); }

/* ---- text routing ---- */

static void part_put(part *p, strbuf *dst, const char *s, size_t n) {
    if (!p->trim) {
        strbuf_put(dst, s, n);
        return;
    }
    if (!p->started)
        while (n && *s == '\n') s++, n--;
    size_t body = n;
    while (body && s[body - 1] == '\n') body--;
    if (body) {
        for (; p->held_nl; p->held_nl--) strbuf_put(dst, "\n", 1);
        strbuf_put(dst, s, body);
        p->started = true;
    }
    if (p->started) p->held_nl += (int)(n - body);
}

/* Length of the longest suffix of s[0..n) that is a proper prefix of tag. */
static size_t partial_suffix(const char *s, size_t n, const char *tag) {
    size_t t = strlen(tag);
    for (size_t k = t - 1 < n ? t - 1 : n; k > 0; k--)
        if (!memcmp(s + n - k, tag, k)) return k;
    return 0;
}

static bool offered(const serve_req *r, const char *name) {
    for (int i = 0; i < r->n_tools; i++)
        if (!strcmp(r->tools[i], name)) return true;
    return false;
}

/* Adds a call from a parsed object: {"name", "arguments"} (Hermes) or {"name", "parameters"} (Llama).
 * strict: the name must be one of the offered tools (for bare JSON, which could be an ordinary answer). */
static bool add_call(serve_req *r, json_t *o, bool strict) {
    json_t *name = json_object_get(o, "name"), *args = json_object_get(o, "arguments");
    if (!args) args = json_object_get(o, "parameters");
    if (!json_is_object(o) || !json_is_string(name) || (strict && !offered(r, json_string_value(name)))) return false;
    if (r->n_calls == r->cap_calls) {
        int cap = r->cap_calls ? 2 * r->cap_calls : 4;
        serve_tool_call *c = realloc(r->calls, (size_t)cap * sizeof *c);
        if (!c) return false;
        r->calls = c;
        r->cap_calls = cap;
    }
    char *a = !args ? strdup("{}") : json_is_string(args) ? strdup(json_string_value(args))
                                                          : json_dumps(args, JSON_COMPACT | JSON_PRESERVE_ORDER);
    char *nm = strdup(json_string_value(name));
    if (!a || !nm) {
        free(a);
        free(nm);
        return false;
    }
    r->calls[r->n_calls++] = (serve_tool_call){.name = nm, .arguments = a};
    return true;
}

/* A whole answer that is a call: one object, or a list of them; all or nothing. */
static bool json_calls(serve_req *r, const char *s, size_t n) {
    json_t *v = json_loadb(s, n, 0, NULL);
    bool ok = v != NULL;
    int before = r->n_calls;
    if (json_is_array(v) && json_array_size(v)) {
        for (size_t i = 0; ok && i < json_array_size(v); i++) ok = add_call(r, json_array_get(v, i), true);
    } else {
        ok = ok && add_call(r, v, true);
    }
    json_decref(v);
    for (; !ok && r->n_calls > before; r->n_calls--) {
        free(r->calls[r->n_calls - 1].name);
        free(r->calls[r->n_calls - 1].arguments);
    }
    return ok;
}

static void to_content(req_output *o, serve_req *r, const char *s, size_t n) {
    for (size_t i = 0; i < n && !o->seen_text; i++) o->seen_text = !strchr(" \t\r\n", s[i]);
    part_put(&o->content, &r->content, s, n);
}

/* Runs the tool-call parser over o->pending; final: the answer is complete, release everything. */
static void route_tools(req_output *o, serve_req *r, bool final) {
    strbuf *b = &o->pending;
    for (;;) {
        char *p = b->p ? b->p : "";
        size_t len = b->len, used = 0;
        if (o->mode == TOOLS_TEXT) {
            if (!o->seen_text) { /* does the answer open with a bare JSON call? */
                size_t ws = 0;
                while (ws < len && strchr(" \t\r\n", p[ws])) ws++;
                if (ws == len && !final) return;
                if (ws < len && p[ws] == '{') {
                    o->mode = TOOLS_JSON;
                    continue;
                }
            }
            char *at = memmem(p, len, CALL_OPEN, strlen(CALL_OPEN));
            if (at) {
                to_content(o, r, p, (size_t)(at - p));
                used = (size_t)(at - p) + strlen(CALL_OPEN);
                o->mode = TOOLS_IN_CALL;
                o->seen_text = true; /* calls came first: a later '{' is text, not a bare call */
            } else {
                size_t keep = final ? 0 : partial_suffix(p, len, CALL_OPEN);
                to_content(o, r, p, len - keep);
                used = len - keep;
            }
        } else if (o->mode == TOOLS_IN_CALL) {
            char *end = memmem(p, len, CALL_CLOSE, strlen(CALL_CLOSE));
            if (!end && !final) return;
            size_t body = end ? (size_t)(end - p) : len;
            json_t *v = json_loadb(p, body, 0, NULL);
            if (!add_call(r, v, false)) { /* not a call after all: it was text */
                to_content(o, r, CALL_OPEN, strlen(CALL_OPEN));
                to_content(o, r, p, end ? body + strlen(CALL_CLOSE) : len);
            }
            json_decref(v);
            used = end ? body + strlen(CALL_CLOSE) : len;
            o->mode = TOOLS_TEXT;
        } else { /* TOOLS_JSON: wait for the whole answer */
            if (!final) return;
            if (!json_calls(r, p, len)) to_content(o, r, p, len);
            used = len;
            o->mode = TOOLS_TEXT;
            o->seen_text = true;
        }
        if (used == 0) return;
        memmove(b->p, p + used, len - used + 1);
        b->len -= used;
        if (b->len == 0 && o->mode == TOOLS_TEXT) return;
    }
}

static void route(req_output *o, serve_req *r, const kiln_gen_step *st) {
    if (st->thinking && r->split_thinking) {
        part_put(&o->reasoning, &r->reasoning, st->text, st->text_len);
    } else if (o->tools) {
        strbuf_put(&o->pending, st->text, st->text_len);
        route_tools(o, r, false);
    } else {
        to_content(o, r, st->text, st->text_len);
    }
}

serve_finish output_push(req_output *o, serve_req *r, const kiln_gen_step *st, const serve_logprob *lp) {
    r->n_gen++;
    if (r->return_token_ids) {
        int32_t *g = realloc(r->gen_ids, (size_t)r->n_gen * sizeof *g);
        if (g) r->gen_ids = g, g[r->n_gen - 1] = st->token;
    }
    bool eos = false; /* the EOS token is neither text nor logprob (a grammar's last token is both) */
    for (int i = 0; i < r->gen.n_eos; i++) eos |= st->token == r->gen.eos_ids[i];
    if (lp) r->cum_logprob += lp->logprob; /* EOS included: it is part of the answer's probability */
    if (lp && r->logprobs && !(eos && st->finish == KILN_FINISH_EOS)) {
        if (r->n_lp == r->cap_lp) {
            int cap = r->cap_lp ? 2 * r->cap_lp : 16;
            serve_logprob *p = realloc(r->lp, (size_t)cap * sizeof *p);
            if (p) r->lp = p, r->cap_lp = cap;
        }
        if (r->n_lp < r->cap_lp) r->lp[r->n_lp++] = *lp;
    }
    if (st->text_len) route(o, r, st);
    if (st->finish == KILN_FINISH_NONE) return FIN_NONE;
    output_flush(o, r);
    return st->finish == KILN_FINISH_LENGTH ? FIN_LENGTH : FIN_STOP;
}

void output_flush(req_output *o, serve_req *r) {
    if (o->tools) route_tools(o, r, true);
}
