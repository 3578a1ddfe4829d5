/* bpe.c — the BPE model: vocab, ranked merges, and the merge loop. Merging uses a doubly linked list
 * of symbols and a binary heap of candidate pairs (lowest rank, then leftmost, as tokenizers does), so a
 * word of n symbols costs O(n log n) — no quadratic blow-up on long words without spaces. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

struct tk_bpe {
    tk_map vocab;      /* token string → id */
    char **id_to_str;  /* id → token string (NULL for gaps) */
    size_t n_ids;
    tk_map merges;     /* 8-byte key (left id, right id) → rank */
    int32_t *merge_to; /* rank → merged id */
    int32_t unk_id;
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t byte_ids[256]; /* <0xXX> ids for byte fallback, -1 if absent */
};

void tk_bpe_free(tk_bpe *b) {
    if (!b) return;
    tk_map_free(&b->vocab), tk_map_free(&b->merges);
    for (size_t i = 0; i < b->n_ids; i++) free(b->id_to_str[i]);
    free(b->id_to_str), free(b->merge_to), free(b);
}

static int32_t lookup(const tk_bpe *b, const char *s, size_t n) { return tk_map_get(&b->vocab, s, n); }

tk_bpe *tk_bpe_load(json_t *model, kiln_err *err) {
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type && strcmp(type, "BPE"))
        return kiln_err_set(err, "tokenizer.json: unsupported model type \"%s\" (only BPE)", type), NULL;
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    if (!json_is_object(vocab)) return kiln_err_set(err, "tokenizer.json: model.vocab missing"), NULL;
    tk_bpe *b = calloc(1, sizeof *b);
    const char *key;
    json_t *val;
    int32_t max_id = -1;
    json_object_foreach(vocab, key, val) if (json_integer_value(val) > max_id) max_id = (int32_t)json_integer_value(val);
    b->n_ids = (size_t)(max_id + 1);
    b->id_to_str = calloc(b->n_ids + 1, sizeof *b->id_to_str);
    json_object_foreach(vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        size_t kn = strlen(key);
        if (id < 0) continue;
        tk_map_put(&b->vocab, key, kn, id);
        free(b->id_to_str[id]);
        b->id_to_str[id] = strdup(key);
    }
    b->byte_fallback = json_is_true(json_object_get(model, "byte_fallback"));
    b->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    b->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    b->unk_id = unk ? lookup(b, unk, strlen(unk)) : -1;
    for (int i = 0; i < 256; i++) {
        char t[8];
        snprintf(t, sizeof t, "<0x%02X>", i);
        b->byte_ids[i] = lookup(b, t, 6);
    }
    size_t nm = json_array_size(merges);
    b->merge_to = malloc((nm + 1) * sizeof *b->merge_to);
    for (size_t r = 0; r < nm; r++) {
        json_t *m = json_array_get(merges, r);
        const char *l, *rt;
        char *own = NULL;
        size_t ln, rn;
        if (json_is_string(m)) { /* "a b" */
            const char *s = json_string_value(m), *sp = strchr(s, ' ');
            if (!sp) return tk_bpe_free(b), kiln_err_set(err, "tokenizer.json: merge %zu \"%s\" has no space", r, s), NULL;
            l = s, ln = (size_t)(sp - s), rt = sp + 1, rn = strlen(rt);
        } else if (json_array_size(m) == 2) { /* ["a", "b"] */
            l = json_string_value(json_array_get(m, 0)), rt = json_string_value(json_array_get(m, 1));
            if (!l || !rt) return tk_bpe_free(b), kiln_err_set(err, "tokenizer.json: merge %zu is not two strings", r), NULL;
            ln = strlen(l), rn = strlen(rt);
        } else {
            return tk_bpe_free(b), kiln_err_set(err, "tokenizer.json: merge %zu is malformed", r), NULL;
        }
        int32_t a = lookup(b, l, ln), c = lookup(b, rt, rn);
        own = malloc(ln + rn + 1);
        memcpy(own, l, ln), memcpy(own + ln, rt, rn);
        int32_t to = lookup(b, own, ln + rn);
        free(own);
        if (a < 0 || c < 0 || to < 0) return tk_bpe_free(b), kiln_err_set(err, "tokenizer.json: merge %zu uses a token not in the vocab", r), NULL;
        int32_t k[2] = {a, c};
        if (tk_map_get(&b->merges, (const char *)k, 8) < 0) tk_map_put(&b->merges, (const char *)k, 8, (int32_t)r);
        b->merge_to[r] = to;
    }
    return b;
}

int32_t tk_bpe_token_id(const tk_bpe *b, const char *s, size_t n) { return lookup(b, s, n); }
const char *tk_bpe_token_str(const tk_bpe *b, int32_t id) {
    return id >= 0 && (size_t)id < b->n_ids ? b->id_to_str[id] : NULL;
}
size_t tk_bpe_vocab_size(const tk_bpe *b) { return b->n_ids; }

typedef struct {
    int32_t id, prev, next;
} sym;
typedef struct {
    int32_t rank, pos, left_id, right_id;
} cand;

static bool cand_less(const cand *a, const cand *b) { return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos; }

static void heap_push(cand **h, size_t *n, size_t *cap, cand c) {
    if (*n == *cap) *cap = *cap ? *cap * 2 : 64, *h = realloc(*h, *cap * sizeof **h);
    size_t i = (*n)++;
    while (i && cand_less(&c, &(*h)[(i - 1) / 2])) (*h)[i] = (*h)[(i - 1) / 2], i = (i - 1) / 2;
    (*h)[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n) break;
        if (c + 1 < *n && cand_less(&h[c + 1], &h[c])) c++;
        if (!cand_less(&h[c], &last)) break;
        h[i] = h[c], i = c;
    }
    if (*n) h[i] = last;
    return top;
}

static void push_pair(const tk_bpe *b, const sym *s, int32_t i, cand **h, size_t *n, size_t *cap) {
    int32_t j = s[i].next;
    if (j < 0) return;
    int32_t k[2] = {s[i].id, s[j].id};
    int32_t r = tk_map_get(&b->merges, (const char *)k, 8);
    if (r >= 0) heap_push(h, n, cap, (cand){r, i, s[i].id, s[j].id});
}

void tk_bpe_encode(const tk_bpe *b, const char *s, size_t n, tk_ids *out) {
    if (!n) return;
    if (b->ignore_merges) {
        int32_t id = lookup(b, s, n);
        if (id >= 0) return tk_ids_add(out, id);
    }
    sym *sy = malloc(n * 4 * sizeof *sy); /* byte fallback may give one symbol per byte */
    int32_t ns = 0;
    for (size_t i = 0; i < n;) {
        size_t cl = (size_t)tk_utf8_len((unsigned char)s[i]);
        if (i + cl > n) cl = n - i;
        int32_t id = lookup(b, s + i, cl);
        if (id >= 0) {
            sy[ns++].id = id;
        } else if (b->byte_fallback && b->byte_ids[(unsigned char)s[i]] >= 0) {
            for (size_t k = 0; k < cl; k++) sy[ns++].id = b->byte_ids[(unsigned char)s[i + k]];
        } else if (b->unk_id >= 0) {
            if (!(b->fuse_unk && ns && sy[ns - 1].id == b->unk_id)) sy[ns++].id = b->unk_id;
        } /* else: no unk token → the character is dropped, as tokenizers does */
        i += cl;
    }
    for (int32_t i = 0; i < ns; i++) sy[i].prev = i - 1, sy[i].next = i + 1 < ns ? i + 1 : -1;
    cand *h = NULL;
    size_t hn = 0, hcap = 0;
    for (int32_t i = 0; i + 1 < ns; i++) push_pair(b, sy, i, &h, &hn, &hcap);
    while (hn) {
        cand c = heap_pop(h, &hn);
        int32_t i = c.pos, j = sy[i].next;
        /* stale if either side changed since this candidate was pushed */
        if (sy[i].id != c.left_id || j < 0 || sy[j].id != c.right_id) continue;
        sy[i].id = b->merge_to[c.rank];
        sy[i].next = sy[j].next;
        if (sy[j].next >= 0) sy[sy[j].next].prev = i;
        sy[j].id = -1; /* dead */
        if (sy[i].prev >= 0) push_pair(b, sy, sy[i].prev, &h, &hn, &hcap);
        push_pair(b, sy, i, &h, &hn, &hcap);
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = sy[i].next) tk_ids_add(out, sy[i].id);
    free(h), free(sy);
}
