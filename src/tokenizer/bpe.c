/* bpe.c — the BPE model: vocab, ranked merges, and the merge loop. Merging uses a doubly linked list
 * of symbols and a binary heap of candidate pairs (lowest rank, then leftmost, as tokenizers does), so a
 * word of n symbols costs O(n log n) — no quadratic blow-up on long words without spaces. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

struct tk_bpe {
    tk_map vocab;      /* token string → id */
    char **id_to_str;  /* id → token string (NULL for gaps) */
    size_t n_ids;
    uint64_t *mkeys;   /* merges: open-addressed table of (left id << 32 | right id) + 1 → rank */
    int32_t *mranks;
    size_t mcap;
    int32_t *merge_to; /* rank → merged id */
    int32_t unk_id;
    bool byte_fallback, fuse_unk, ignore_merges;
    int32_t byte_ids[256]; /* <0xXX> ids for byte fallback, -1 if absent */
};

void tk_bpe_free(tk_bpe *b) {
    if (!b) return;
    tk_map_free(&b->vocab);
    free(b->mkeys), free(b->mranks);
    for (size_t i = 0; i < b->n_ids; i++) free(b->id_to_str[i]);
    free(b->id_to_str), free(b->merge_to), free(b);
}

static int32_t lookup(const tk_bpe *b, const char *s, size_t n) { return tk_map_get(&b->vocab, s, n); }

/* The merge table is the hot path of encoding: integer keys, multiplicative hash, linear probing. */
static size_t merge_slot(const tk_bpe *b, uint64_t key) {
    size_t i = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (b->mcap - 1);
    while (b->mkeys[i] && b->mkeys[i] != key) i = (i + 1) & (b->mcap - 1);
    return i;
}

static uint64_t pair_key(int32_t a, int32_t c) { return (((uint64_t)(uint32_t)a << 32) | (uint32_t)c) + 1; }

static int32_t merge_rank(const tk_bpe *b, int32_t a, int32_t c) {
    size_t i = merge_slot(b, pair_key(a, c));
    return b->mkeys[i] ? b->mranks[i] : -1;
}

/* Vocab ids as the tokenizers crate reads them (u32), bounded as transformers' vocabularies are: a
 * vocab of n strings plus n_added added tokens uses ids in [0, n + n_added), each id at most once. The
 * table id → string is then at most that long, whatever the file claims. */
static int load_vocab(tk_bpe *b, json_t *vocab, size_t n_added, kiln_err *err) {
    size_t n = json_object_size(vocab);
    if (n_added > (size_t)INT32_MAX || n > (size_t)INT32_MAX - n_added) return kiln_err_set(err, "tokenizer.json: model.vocab has too many entries");
    long long bound = (long long)(n + n_added);
    const char *key;
    json_t *val;
    long long max_id = -1;
    json_object_foreach(vocab, key, val) {
        long long id = json_is_integer(val) ? json_integer_value(val) : -1;
        if (id < 0 || id >= bound)
            return kiln_err_set(err, "tokenizer.json: model.vocab id of \"%s\" must be an integer in [0, %lld) "
                                     "(%zu vocab + %zu added tokens)", key, bound, n, n_added);
        if (id > max_id) max_id = id;
    }
    b->id_to_str = calloc((size_t)max_id + 2, sizeof *b->id_to_str);
    if (!b->id_to_str) return kiln_err_set(err, TK_OOM);
    b->n_ids = (size_t)(max_id + 1);
    json_object_foreach(vocab, key, val) {
        int32_t id = (int32_t)json_integer_value(val);
        if (b->id_to_str[id])
            return kiln_err_set(err, "tokenizer.json: model.vocab id %d given twice (\"%s\", \"%s\")", id,
                                b->id_to_str[id], key);
        if (!(b->id_to_str[id] = strdup(key)) || tk_map_put(&b->vocab, key, strlen(key), id))
            return kiln_err_set(err, TK_OOM);
    }
    return 0;
}

/* One merge "a b" or ["a", "b"] → its pair key and merged id. */
static int parse_merge(const tk_bpe *b, json_t *m, size_t r, uint64_t *key, int32_t *to, kiln_err *err) {
    const char *l, *rt;
    size_t ln, rn;
    if (json_is_string(m)) { /* "a b" */
        const char *s = json_string_value(m), *sp = strchr(s, ' ');
        if (!sp) return kiln_err_set(err, "tokenizer.json: merge %zu \"%s\" has no space", r, s);
        l = s, ln = (size_t)(sp - s), rt = sp + 1, rn = strlen(rt);
    } else if (json_array_size(m) == 2) { /* ["a", "b"] */
        l = json_string_value(json_array_get(m, 0)), rt = json_string_value(json_array_get(m, 1));
        if (!l || !rt) return kiln_err_set(err, "tokenizer.json: merge %zu is not two strings", r);
        ln = strlen(l), rn = strlen(rt);
    } else {
        return kiln_err_set(err, "tokenizer.json: merge %zu is malformed", r);
    }
    int32_t a = lookup(b, l, ln), c = lookup(b, rt, rn);
    char *both = malloc(ln + rn + 1);
    if (!both) return kiln_err_set(err, TK_OOM);
    memcpy(both, l, ln), memcpy(both + ln, rt, rn);
    *to = lookup(b, both, ln + rn);
    free(both);
    if (a < 0 || c < 0 || *to < 0) return kiln_err_set(err, "tokenizer.json: merge %zu uses a token not in the vocab", r);
    *key = pair_key(a, c);
    return 0;
}

static int load_merges(tk_bpe *b, json_t *merges, kiln_err *err) {
    size_t nm = json_array_size(merges);
    if (nm > (size_t)INT32_MAX) return kiln_err_set(err, "tokenizer.json: too many merges");
    for (b->mcap = 16; b->mcap < nm * 2; b->mcap *= 2) {}
    b->merge_to = malloc((nm + 1) * sizeof *b->merge_to);
    b->mkeys = calloc(b->mcap, sizeof *b->mkeys), b->mranks = calloc(b->mcap, sizeof *b->mranks);
    if (!b->merge_to || !b->mkeys || !b->mranks) return kiln_err_set(err, TK_OOM);
    for (size_t r = 0; r < nm; r++) {
        uint64_t key = 0;
        if (parse_merge(b, json_array_get(merges, r), r, &key, &b->merge_to[r], err)) return -1;
        size_t slot = merge_slot(b, key);
        if (!b->mkeys[slot]) b->mkeys[slot] = key, b->mranks[slot] = (int32_t)r; /* first rank wins */
    }
    return 0;
}

tk_bpe *tk_bpe_load(json_t *model, size_t n_added, kiln_err *err) {
    const char *type = json_string_value(json_object_get(model, "type"));
    if (type && strcmp(type, "BPE"))
        return kiln_err_set(err, "tokenizer.json: unsupported model type \"%s\" (only BPE)", type), NULL;
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab)) return kiln_err_set(err, "tokenizer.json: model.vocab missing"), NULL;
    tk_bpe *b = calloc(1, sizeof *b);
    if (!b) return kiln_err_set(err, TK_OOM), NULL;
    if (load_vocab(b, vocab, n_added, err)) return tk_bpe_free(b), NULL;
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
    if (load_merges(b, json_object_get(model, "merges"), err)) return tk_bpe_free(b), NULL;
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

/* A candidate merge is one integer, rank << 32 | position: ordering by it is "lowest rank, then
 * leftmost", and 8-byte entries in a 4-ary heap keep the heap cache-friendly on huge words. */
typedef uint64_t cand;

static void sift_down(cand *h, size_t n, size_t i, cand x) {
    for (;;) {
        size_t c = 4 * i + 1, best = c;
        if (c >= n) break;
        for (size_t k = c + 1; k < c + 4 && k < n; k++)
            if (h[k] < h[best]) best = k;
        if (h[best] >= x) break;
        h[i] = h[best], i = best;
    }
    h[i] = x;
}

static int heap_push(cand **h, size_t *n, size_t *cap, cand c) {
    if (*n == *cap) {
        size_t nc = *cap ? *cap * 2 : 64;
        cand *p = realloc(*h, nc * sizeof *p);
        if (!p) return -1;
        *h = p, *cap = nc;
    }
    size_t i = (*n)++;
    while (i && c < (*h)[(i - 1) / 4]) (*h)[i] = (*h)[(i - 1) / 4], i = (i - 1) / 4;
    (*h)[i] = c;
    return 0;
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0];
    if (--*n) sift_down(h, *n, 0, h[*n]);
    return top;
}

static int push_pair(const tk_bpe *b, const sym *s, int32_t i, cand **h, size_t *n, size_t *cap) {
    int32_t j = s[i].next;
    if (j < 0) return 0;
    int32_t r = merge_rank(b, s[i].id, s[j].id);
    return r >= 0 ? heap_push(h, n, cap, (uint64_t)r << 32 | (uint32_t)i) : 0;
}

/* Byte fallback applies only when every byte of the character has its <0xNN> piece (else unk, as
 * tokenizers' BPE does: a missing piece must not become id -1). */
static bool all_bytes_known(const tk_bpe *b, const char *s, size_t n) {
    for (size_t k = 0; k < n; k++)
        if (b->byte_ids[(unsigned char)s[k]] < 0) return false;
    return true;
}

/* The word's symbols: one per character of the vocab, else its bytes (byte fallback), else unk. */
static int32_t initial_symbols(const tk_bpe *b, const char *s, size_t n, sym *sy) {
    int32_t ns = 0;
    for (size_t i = 0; i < n;) {
        size_t cl = (size_t)tk_utf8_len((unsigned char)s[i]);
        if (i + cl > n) cl = n - i;
        int32_t id = lookup(b, s + i, cl);
        if (id >= 0) {
            sy[ns++].id = id;
        } else if (b->byte_fallback && all_bytes_known(b, s + i, cl)) {
            for (size_t k = 0; k < cl; k++) sy[ns++].id = b->byte_ids[(unsigned char)s[i + k]];
        } else if (b->unk_id >= 0) {
            if (!(b->fuse_unk && ns && sy[ns - 1].id == b->unk_id)) sy[ns++].id = b->unk_id;
        } /* else: no unk token → the character is dropped, as tokenizers does */
        i += cl;
    }
    for (int32_t i = 0; i < ns; i++) sy[i].prev = i - 1, sy[i].next = i + 1 < ns ? i + 1 : -1;
    return ns;
}

/* Applies merges, lowest rank first, until none is left. */
static int merge_all(const tk_bpe *b, sym *sy, int32_t ns) {
    size_t hn = 0, hcap = (size_t)ns + 16;
    cand *h = malloc(hcap * sizeof *h);
    if (!h) return -1;
    for (int32_t i = 0; i + 1 < ns; i++) { /* all initial pairs, then heapify in O(n) */
        int32_t r = merge_rank(b, sy[i].id, sy[i + 1].id);
        if (r >= 0) h[hn++] = (uint64_t)r << 32 | (uint32_t)i;
    }
    for (size_t i = hn / 2; i-- > 0;) sift_down(h, hn, i, h[i]);
    while (hn) {
        cand c = heap_pop(h, &hn);
        int32_t rank = (int32_t)(c >> 32), i = (int32_t)(uint32_t)c, j = sy[i].next;
        /* stale if the pair at i changed since it was pushed: a rank names exactly one pair */
        if (sy[i].id < 0 || j < 0 || merge_rank(b, sy[i].id, sy[j].id) != rank) continue;
        sy[i].id = b->merge_to[rank];
        sy[i].next = sy[j].next;
        if (sy[j].next >= 0) sy[sy[j].next].prev = i;
        sy[j].id = -1; /* dead */
        if ((sy[i].prev >= 0 && push_pair(b, sy, sy[i].prev, &h, &hn, &hcap)) || push_pair(b, sy, i, &h, &hn, &hcap))
            return free(h), -1;
    }
    free(h);
    return 0;
}

int tk_bpe_encode(const tk_bpe *b, const char *s, size_t n, tk_ids *out) {
    if (!n) return 0;
    if (b->ignore_merges) {
        int32_t id = lookup(b, s, n);
        if (id >= 0) return tk_ids_add(out, id);
    }
    if (n > (size_t)INT32_MAX) return -1; /* symbol positions are int32 */
    sym *sy = malloc(n * sizeof *sy); /* at most one symbol per byte (byte fallback) */
    if (!sy) return -1;
    int32_t ns = initial_symbols(b, s, n, sy);
    int rc = merge_all(b, sy, ns);
    for (int32_t i = ns ? 0 : -1; !rc && i >= 0; i = sy[i].next) rc = tk_ids_add(out, sy[i].id);
    free(sy);
    return rc;
}
