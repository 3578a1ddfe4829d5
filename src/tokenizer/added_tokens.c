/* added_tokens.c — splits input on added tokens before anything else (AddedVocabulary in tokenizers):
 * leftmost-longest match; lstrip/rstrip swallow whitespace next to the token; single_word requires
 * word boundaries on both sides. */
#include <string.h>

#include "tokenizer/tok_internal.h"

static bool is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
static bool is_word(unsigned char c) { return c >= 0x80 || c == '_' || (c >= '0' && c <= '9') || ((c | 32) >= 'a' && (c | 32) <= 'z'); }

const tk_added *tk_added_by_id(const kiln_tokenizer *t, int32_t id) {
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].id == id) return &t->added[i];
    return NULL;
}

/* Longest added token matching at s[i], or NULL. */
static const tk_added *match_at(const kiln_tokenizer *t, const char *s, size_t n, size_t i) {
    const tk_added *best = NULL;
    for (size_t k = 0; k < t->n_added; k++) {
        const tk_added *a = &t->added[k];
        if (a->len && a->len <= n - i && (!best || a->len > best->len) && !memcmp(s + i, a->content, a->len)) {
            if (a->single_word && ((i > 0 && is_word((unsigned char)s[i - 1])) ||
                                   (i + a->len < n && is_word((unsigned char)s[i + a->len]))))
                continue;
            best = a;
        }
    }
    return best;
}

int tk_split_added(const kiln_tokenizer *t, const char *s, size_t n, tk_seg_fn fn, void *ctx) {
    size_t seg = 0, i = 0;
    /* first-byte filter keeps the scan cheap: most bytes cannot start an added token */
    bool first[256] = {0};
    for (size_t k = 0; k < t->n_added; k++)
        if (t->added[k].len) first[(unsigned char)t->added[k].content[0]] = true;
    while (i < n) {
        const tk_added *a = first[(unsigned char)s[i]] ? match_at(t, s, n, i) : NULL;
        if (!a) { i++; continue; }
        size_t end = i, after = i + a->len;
        if (a->lstrip) while (end > seg && is_ws((unsigned char)s[end - 1])) end--;
        if (a->rstrip) while (after < n && is_ws((unsigned char)s[after])) after++;
        int rc;
        if ((end > seg && (rc = fn(ctx, s + seg, end - seg, -1))) || (rc = fn(ctx, s + i, a->len, a->id))) return rc;
        seg = i = after;
    }
    return n > seg ? fn(ctx, s + seg, n - seg, -1) : 0;
}
