/* textbuf.c — id lists, a string hash map and UTF-8 helpers for the tokenizer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

int tk_ids_add(tk_ids *v, int32_t id) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        if (cap > SIZE_MAX / sizeof *v->p) return -1;
        int32_t *p = realloc(v->p, cap * sizeof *p);
        if (!p) return -1;
        v->p = p, v->cap = cap;
    }
    v->p[v->n++] = id;
    return 0;
}

static uint64_t hash_bytes(const char *s, size_t n) { /* FNV-1a */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

static size_t map_slot(const tk_map *m, const char *k, size_t kn) {
    size_t i = hash_bytes(k, kn) & (m->cap - 1);
    while (m->keys[i] && !(m->klen[i] == kn && memcmp(m->keys[i], k, kn) == 0)) i = (i + 1) & (m->cap - 1);
    return i;
}

/* Doubles the table (load kept under 1/2); the old one stays intact when memory runs out. */
static int map_grow(tk_map *m) {
    tk_map old = *m;
    size_t cap = old.cap ? old.cap * 2 : 1024;
    char **keys = calloc(cap, sizeof *keys);
    uint32_t *klen = calloc(cap, sizeof *klen);
    int32_t *vals = calloc(cap, sizeof *vals);
    if (!keys || !klen || !vals) return free(keys), free(klen), free(vals), -1;
    m->keys = keys, m->klen = klen, m->vals = vals, m->cap = cap;
    for (size_t i = 0; i < old.cap; i++)
        if (old.keys[i]) {
            size_t j = map_slot(m, old.keys[i], old.klen[i]);
            m->keys[j] = old.keys[i], m->klen[j] = old.klen[i], m->vals[j] = old.vals[i];
        }
    free(old.keys), free(old.klen), free(old.vals);
    return 0;
}

int tk_map_put(tk_map *m, const char *k, size_t kn, int32_t v) {
    if (kn > UINT32_MAX) return -1;
    if ((m->n + 1) * 2 > m->cap && map_grow(m)) return -1;
    size_t i = map_slot(m, k, kn);
    if (!m->keys[i]) {
        char *key = malloc(kn + 1);
        if (!key) return -1;
        memcpy(key, k, kn);
        key[kn] = 0;
        m->keys[i] = key, m->klen[i] = (uint32_t)kn;
        m->n++;
    }
    m->vals[i] = v;
    return 0;
}

int32_t tk_map_get(const tk_map *m, const char *k, size_t kn) {
    if (!m->cap) return -1;
    size_t i = map_slot(m, k, kn);
    return m->keys[i] ? m->vals[i] : -1;
}

void tk_map_free(tk_map *m) {
    for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
    free(m->keys), free(m->klen), free(m->vals);
    memset(m, 0, sizeof *m);
}

int tk_utf8_len(unsigned char c) {
    if (c < 0x80) return 1;
    if ((c & 0xE0) == 0xC0) return 2;
    if ((c & 0xF0) == 0xE0) return 3;
    if ((c & 0xF8) == 0xF0) return 4;
    return 1;
}

/* Length of the valid UTF-8 sequence at s (n bytes left): >0 valid; 0 invalid; -k valid prefix of k
 * bytes that the end of input cut short. Follows the Unicode table of well-formed byte sequences. */
static int utf8_check(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    int len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    else return 0;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return -i;
        unsigned b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return i == 1 ? 0 : -100 - i;
    }
    return len;
}

int tk_utf8_lossy(strbuf *out, const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        int r = utf8_check(u + i, n - i);
        if (r > 0) {
            size_t run = (size_t)r; /* valid sequences go out in one append */
            while (i + run < n && (r = utf8_check(u + i + run, n - i - run)) > 0) run += (size_t)r;
            if (strbuf_put(out, s + i, run)) return -1;
            i += run;
        } else {
            /* maximal invalid subpart: the lead plus the continuation bytes that were still valid */
            size_t skip = r == 0 ? 1 : r <= -100 ? (size_t)(-r - 100) : (size_t)-r;
            if (strbuf_put(out, "\xEF\xBF\xBD", 3)) return -1;
            i += skip;
        }
    }
    return 0;
}

size_t tk_utf8_incomplete_tail(const char *s, size_t n) {
    for (size_t k = 1; k <= 3 && k <= n; k++) {
        int r = utf8_check((const unsigned char *)s + n - k, k);
        if (r < 0 && r > -100) return k;
        if ((((unsigned char)s[n - k]) & 0xC0) != 0x80) break; /* a lead byte that is not a cut prefix */
    }
    return 0;
}

bool tk_utf8_valid(const char *s, size_t n) {
    for (size_t i = 0; i < n;) {
        int r = utf8_check((const unsigned char *)s + i, n - i);
        if (r <= 0) return false;
        i += (size_t)r;
    }
    return true;
}
