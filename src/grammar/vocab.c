/* vocab.c — the byte string every token adds to the output, for grammar masks, sorted by bytes.
 *
 * A token's bytes are what it adds after earlier text: decoded (raw, before any lossy UTF-8 pass) after
 * a context token and with the context's own bytes cut off, so SentencePiece's "▁a" counts as " a" and
 * the decoder's strip-the-first-space rule does not apply. Byte-fallback pieces (<0xE4>) count as
 * their single byte. Special tokens get no bytes: the grammar never allows them (EOS is handled apart). */
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"
#include "tokenizer/tok_internal.h"

static int byte_piece(const char *s) { /* "<0xAB>" → 0xAB, else -1 */
    unsigned v;
    char end;
    if (strlen(s) != 6 || strncmp(s, "<0x", 3) || s[5] != '>' || sscanf(s + 3, "%2x%c", &v, &end) != 2) return -1;
    return (int)v;
}

/* Decodes context + tok (context may be NULL) as a stream into out; -1 when out of memory. */
static int decode_pair(const kiln_tokenizer *t, const char *context, const char *tok, strbuf *out) {
    const char *toks[2] = {context, tok};
    strbuf_clear(out);
    return context ? tk_decode_tokens(t->dec, toks, 2, true, out) : tk_decode_tokens(t->dec, toks + 1, 1, true, out);
}

/* A plain one-letter token to decode after (NULL when the vocabulary has none). */
static const char *context_token(const kiln_tokenizer *t, strbuf *ctx_bytes) {
    static const char *cands[] = {"a", "\xE2\x96\x81" "a", "x"};
    for (size_t i = 0; i < sizeof cands / sizeof *cands; i++) {
        int32_t id = kiln_token_id(t, cands[i]);
        if (id < 0 || kiln_token_is_special(t, id)) continue;
        if (decode_pair(t, NULL, cands[i], ctx_bytes) == 0 && ctx_bytes->len) return cands[i];
    }
    strbuf_clear(ctx_bytes);
    return NULL;
}

static int cmp_bytes(const void *a, const void *b, void *vocab) {
    const kiln_grammar_vocab *v = vocab;
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    uint32_t lx = v->len[x], ly = v->len[y];
    int c = memcmp(v->bytes + v->off[x], v->bytes + v->off[y], lx < ly ? lx : ly);
    return c ? c : lx < ly ? -1 : lx > ly;
}

static int sort_and_link(kiln_grammar_vocab *v) {
    v->order = malloc(((size_t)v->n + 1) * sizeof *v->order);
    v->lcp = malloc(((size_t)v->n + 1) * sizeof *v->lcp);
    v->sorted_off = malloc(((size_t)v->n + 1) * sizeof *v->sorted_off);
    size_t total = v->n ? v->off[v->n - 1] + v->len[v->n - 1] : 0;
    v->sorted = malloc(total + 1);
    if (!v->order || !v->lcp || !v->sorted_off || !v->sorted) return -1;
    for (int i = 0; i < v->n; i++)
        if (v->len[i]) v->order[v->n_order++] = i;
    qsort_r(v->order, (size_t)v->n_order, sizeof *v->order, cmp_bytes, v);
    for (int i = 0; i < v->n_order; i++) {
        uint32_t l = 0;
        if (i > 0) {
            int32_t a = v->order[i - 1], b = v->order[i];
            uint32_t lim = v->len[a] < v->len[b] ? v->len[a] : v->len[b];
            while (l < lim && v->bytes[v->off[a] + l] == v->bytes[v->off[b] + l]) l++;
        }
        v->lcp[i] = l;
    }
    size_t at = 0;
    for (int i = 0; i < v->n_order; i++) {
        int32_t id = v->order[i];
        v->sorted_off[i] = at;
        memcpy(v->sorted + at, v->bytes + v->off[id], v->len[id]);
        at += v->len[id];
    }
    v->sorted_off[v->n_order] = at;
    return 0;
}

kiln_grammar_vocab *kiln_grammar_vocab_new(const kiln_tokenizer *t, kiln_err *err) {
    kiln_grammar_vocab *v = calloc(1, sizeof *v);
    if (!v) return kiln_err_set(err, "grammar: out of memory"), NULL;
    v->n = (int)kiln_tokenizer_vocab_size(t);
    v->off = calloc((size_t)v->n + 1, sizeof *v->off);
    v->len = calloc((size_t)v->n + 1, sizeof *v->len);
    strbuf all = {0};
    strbuf ctx = {0}, cur = {0};
    const char *context = context_token(t, &ctx);
    int rc = !v->off || !v->len ? -1 : 0;
    for (int32_t id = 0; !rc && id < v->n; id++) {
        const char *s = kiln_token_str(t, id);
        if (!s || kiln_token_is_special(t, id)) continue;
        if ((rc = decode_pair(t, context, s, &cur))) break;
        const char *b = cur.p ? cur.p : "";
        size_t n = cur.len;
        if (n >= ctx.len && (!ctx.len || !memcmp(cur.p, ctx.p, ctx.len))) b += ctx.len, n -= ctx.len;
        else {
            if ((rc = decode_pair(t, NULL, s, &cur))) break;
            b = cur.p ? cur.p : "", n = cur.len;
        }
        int byte = byte_piece(s);
        char one = (char)byte;
        if (byte >= 0 && !(n == 6 && !memcmp(b, s, 6))) b = &one, n = 1; /* the decoder maps it to a byte */
        v->off[id] = all.len;
        v->len[id] = (uint32_t)n;
        if (n > v->max_len) v->max_len = (uint32_t)n;
        rc = strbuf_put(&all, b, n);
    }
    strbuf_free(&ctx), strbuf_free(&cur);
    v->bytes = strbuf_take(&all, NULL);
    if (rc || !v->bytes || sort_and_link(v)) {
        kiln_grammar_vocab_free(v);
        return kiln_err_set(err, "grammar: out of memory"), NULL;
    }
    return v;
}

void kiln_grammar_vocab_free(kiln_grammar_vocab *v) {
    if (!v) return;
    free(v->bytes), free(v->off), free(v->len), free(v->order), free(v->lcp), free(v->sorted), free(v->sorted_off);
    free(v);
}

const char *kiln_grammar_vocab_bytes(const kiln_grammar_vocab *v, int32_t id, size_t *len) {
    if (id < 0 || id >= v->n) return *len = 0, NULL;
    *len = v->len[id];
    return v->bytes + v->off[id];
}
