/* build.c — a grammar under construction: rules by name, byte sets, code-point classes lowered to
 * UTF-8 byte sequences, and the final checks (every rule defined, root present, no left recursion)
 * before flattening into the kiln_grammar the matcher walks. */
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

int gvec_push(gvec *v, gkind kind, int32_t arg) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        gel *p = realloc(v->p, cap * sizeof *p);
        if (!p) return -1;
        v->p = p, v->cap = cap;
    }
    v->p[v->n++] = (gel){(uint8_t)kind, arg};
    return 0;
}

static int add_rule(gbuild *b, char *name) {
    if (!name) return -1;
    if (b->n == b->cap) {
        int cap = b->cap ? b->cap * 2 : 32;
        gvec **r = realloc(b->rules, (size_t)cap * sizeof *r);
        if (r) b->rules = r;
        char **nm = realloc(b->names, (size_t)cap * sizeof *nm);
        if (nm) b->names = nm;
        bool *d = realloc(b->defined, (size_t)cap * sizeof *d);
        if (d) b->defined = d;
        if (!r || !nm || !d) {
            free(name);
            return -1;
        }
        b->cap = cap;
    }
    b->rules[b->n] = calloc(1, sizeof(gvec));
    if (!b->rules[b->n]) {
        free(name);
        return -1;
    }
    b->names[b->n] = name;
    b->defined[b->n] = false;
    return b->n++;
}

int gb_rule(gbuild *b, const char *name, size_t len) {
    for (int i = 0; i < b->n; i++)
        if (strlen(b->names[i]) == len && !memcmp(b->names[i], name, len)) return i;
    return add_rule(b, strndup(name, len));
}

int gb_new_rule(gbuild *b, const char *base) {
    strbuf s = {0};
    if (strbuf_printf(&s, "%s_%d", base, b->n)) return -1;
    int r = add_rule(b, strbuf_take(&s, NULL));
    if (r >= 0) b->defined[r] = true;
    return r;
}

/* Index of a byte set equal to s, added if new. */
static int gb_set(gbuild *b, const gset *s) {
    for (int i = 0; i < b->n_sets; i++)
        if (!memcmp(&b->sets[i], s, sizeof *s)) return i;
    if (b->n_sets == b->cap_sets) {
        int cap = b->cap_sets ? b->cap_sets * 2 : 64;
        gset *p = realloc(b->sets, (size_t)cap * sizeof *p);
        if (!p) return -1;
        b->sets = p, b->cap_sets = cap;
    }
    b->sets[b->n_sets] = *s;
    return b->n_sets++;
}

static int push_range(gbuild *b, gvec *seq, unsigned lo, unsigned hi) {
    gset s = {{0}};
    for (unsigned c = lo; c <= hi; c++) gset_add(&s, c);
    int i = gb_set(b, &s);
    return i < 0 ? -1 : gvec_push(seq, G_SET, i);
}

int utf8_encode(uint32_t cp, unsigned char o[4]) {
    if (cp < 0x80) return o[0] = (unsigned char)cp, 1;
    if (cp < 0x800) return o[0] = (unsigned char)(0xC0 | cp >> 6), o[1] = (unsigned char)(0x80 | (cp & 0x3F)), 2;
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | cp >> 12), o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | cp >> 18), o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F)), o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

int utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    if (n == 0) return 0;
    int len = u[0] < 0x80 ? 1 : u[0] >= 0xC2 && u[0] < 0xE0 ? 2 : u[0] >= 0xE0 && u[0] < 0xF0 ? 3
              : u[0] >= 0xF0 && u[0] < 0xF5 ? 4 : 0;
    if (len == 0 || (size_t)len > n) return 0;
    uint32_t c = len == 1 ? u[0] : u[0] & (0x7F >> len);
    for (int i = 1; i < len; i++) {
        if ((u[i] & 0xC0) != 0x80) return 0;
        c = c << 6 | (u[i] & 0x3F);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[len] || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return 0;
    *cp = c;
    return len;
}

int gb_codepoint(gbuild *b, gvec *seq, uint32_t cp) {
    unsigned char u[4];
    int n = utf8_encode(cp, u);
    for (int i = 0; i < n; i++)
        if (push_range(b, seq, u[i], u[i])) return -1;
    return 0;
}

/* The byte-range sequences of one UTF-8 length that match exactly [lo, hi] (Rust regex-syntax's
 * Utf8Sequences split: cut the range until every byte position varies independently). */
typedef struct {
    gbuild *b;
    gvec *alts; /* sequences, separated by G_ALT */
    int n_seqs;
} seqs_out;

static int utf8_seqs(seqs_out *o, uint32_t lo, uint32_t hi) {
    static const uint32_t lim[3] = {0x7F, 0x7FF, 0xFFFF};
    for (int i = 0; i < 3; i++)
        if (lo <= lim[i] && hi > lim[i]) return utf8_seqs(o, lo, lim[i]) || utf8_seqs(o, lim[i] + 1, hi);
    if (lo <= 0xD7FF && hi >= 0xD800) return utf8_seqs(o, lo, 0xD7FF) || (hi > 0xDFFF && utf8_seqs(o, 0xE000, hi));
    if (lo >= 0xD800 && lo <= 0xDFFF) return hi > 0xDFFF ? utf8_seqs(o, 0xE000, hi) : 0;
    unsigned char a[4], z[4];
    int n = utf8_encode(lo, a);
    for (int i = 1; i < n; i++) {
        uint32_t m = (1u << (6 * i)) - 1;
        if ((lo & ~m) != (hi & ~m)) {
            if (lo & m) return utf8_seqs(o, lo, lo | m) || utf8_seqs(o, (lo | m) + 1, hi);
            if ((hi & m) != m) return utf8_seqs(o, lo, (hi & ~m) - 1) || utf8_seqs(o, hi & ~m, hi);
        }
    }
    utf8_encode(hi, z);
    if (o->n_seqs++ && gvec_push(o->alts, G_ALT, 0)) return -1;
    for (int i = 0; i < n; i++)
        if (push_range(o->b, o->alts, a[i], z[i])) return -1;
    return 0;
}

int gb_codepoints(gbuild *b, gvec *seq, const uint32_t *r, int n_ranges, const char *rule_name) {
    gset ascii = {{0}};
    bool any_ascii = false;
    gvec multi = {0};
    seqs_out o = {b, &multi, 0};
    int rc = 0;
    for (int i = 0; i < n_ranges && !rc; i++) {
        for (uint32_t c = r[2 * i]; c <= r[2 * i + 1] && c < 0x80; c++) gset_add(&ascii, c), any_ascii = true;
        uint32_t lo = r[2 * i] < 0x80 ? 0x80 : r[2 * i];
        if (r[2 * i + 1] >= lo) rc = utf8_seqs(&o, lo, r[2 * i + 1]);
    }
    if (!rc && o.n_seqs == 0) { /* ASCII only: one element */
        int s = gb_set(b, &ascii);
        rc = s < 0 ? -1 : gvec_push(seq, G_SET, s);
    } else if (!rc && !any_ascii && o.n_seqs == 1) { /* one multi-byte sequence: inline */
        for (size_t i = 0; i < multi.n && !rc; i++) rc = gvec_push(seq, G_SET, multi.p[i].arg);
    } else if (!rc) {
        int rule = gb_new_rule(b, rule_name);
        int s = any_ascii ? gb_set(b, &ascii) : 0;
        gvec *alts = rule >= 0 ? b->rules[rule] : NULL;
        rc = rule < 0 || s < 0 ? -1 : 0;
        if (!rc && any_ascii) rc = gvec_push(alts, G_SET, s) || gvec_push(alts, G_ALT, 0);
        for (size_t i = 0; i < multi.n && !rc; i++) rc = gvec_push(alts, multi.p[i].kind, multi.p[i].arg);
        if (!rc) rc = gvec_push(seq, G_REF, rule);
    }
    free(multi.p);
    return rc;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int ranges_normalise(uint32_t *r, int n, bool negate) {
    qsort(r, (size_t)n, 2 * sizeof *r, cmp_u32);
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m && r[2 * i] <= r[2 * m - 1] + 1) {
            if (r[2 * i + 1] > r[2 * m - 1]) r[2 * m - 1] = r[2 * i + 1];
        } else {
            r[2 * m] = r[2 * i], r[2 * m + 1] = r[2 * i + 1], m++;
        }
    }
    if (!negate) return m;
    uint32_t next = 0;
    int k = 0;
    for (int i = 0; i < m; i++) { /* in place: the gaps never outnumber ranges + 1 (room reserved) */
        uint32_t lo = r[2 * i], hi = r[2 * i + 1];
        if (lo > next) r[2 * k] = next, r[2 * k + 1] = lo - 1, k++;
        next = hi + 1;
    }
    if (next <= 0x10FFFF) r[2 * k] = next, r[2 * k + 1] = 0x10FFFF, k++;
    return k;
}

void gb_free(gbuild *b) {
    for (int i = 0; i < b->n; i++) free(b->rules[i]->p), free(b->rules[i]), free(b->names[i]);
    free(b->rules), free(b->names), free(b->defined), free(b->sets);
    memset(b, 0, sizeof *b);
}

/* ---- checks ---- */

/* nullable[r]: rule r can match the empty string (fixed point over the rules). */
static void find_nullable(const gbuild *b, bool *nullable) {
    for (bool changed = true; changed;) {
        changed = false;
        for (int r = 0; r < b->n; r++) {
            if (nullable[r]) continue;
            const gvec *v = b->rules[r];
            bool alt_ok = true;
            for (size_t i = 0; i <= v->n; i++) {
                if (i == v->n || v->p[i].kind == G_ALT) {
                    if (alt_ok) {
                        nullable[r] = changed = true;
                        break;
                    }
                    alt_ok = true;
                } else if (v->p[i].kind == G_SET || !nullable[v->p[i].arg]) {
                    alt_ok = false;
                }
            }
        }
    }
}

/* Depth-first search over "r can start with s" edges; a back edge is left recursion, which would make
 * the matcher expand forever. state: 0 new, 1 on the path, 2 done. */
static int left_cycle(const gbuild *b, const bool *nullable, int r, uint8_t *state) {
    state[r] = 1;
    const gvec *v = b->rules[r];
    bool at_start = true;
    for (size_t i = 0; i < v->n; i++) {
        gel e = v->p[i];
        if (e.kind == G_ALT) {
            at_start = true;
        } else if (e.kind == G_SET) {
            at_start = false;
        } else if (at_start) {
            if (state[e.arg] == 1) return e.arg;
            int c = state[e.arg] == 0 ? left_cycle(b, nullable, e.arg, state) : -1;
            if (c >= 0) return c;
            at_start = nullable[e.arg];
        }
    }
    state[r] = 2;
    return -1;
}

static int check(const gbuild *b, kiln_err *err) {
    for (int r = 0; r < b->n; r++)
        if (!b->defined[r]) return kiln_err_set(err, "grammar: rule '%s' is used but never defined", b->names[r]);
    bool *nullable = calloc((size_t)b->n + 1, sizeof *nullable);
    uint8_t *state = calloc((size_t)b->n + 1, 1);
    int rc = !nullable || !state ? kiln_err_set(err, "grammar: out of memory") : 0;
    if (!rc) find_nullable(b, nullable);
    for (int r = 0; r < b->n && !rc; r++) {
        int c = state[r] == 0 ? left_cycle(b, nullable, r, state) : -1;
        if (c >= 0) rc = kiln_err_set(err, "grammar: rule '%s' is left-recursive (it can reach itself without "
                                           "consuming input)", b->names[c]);
    }
    free(nullable), free(state);
    return rc;
}

kiln_grammar *gb_finish(gbuild *b, kiln_err *err) {
    int root = -1;
    for (int r = 0; r < b->n; r++)
        if (!strcmp(b->names[r], "root")) root = r;
    if (root < 0) return kiln_err_set(err, "grammar: no 'root' rule"), NULL;
    if (check(b, err)) return NULL;
    size_t total = 0;
    for (int r = 0; r < b->n; r++) total += b->rules[r]->n + 1;
    kiln_grammar *g = calloc(1, sizeof *g);
    if (g) {
        g->el = malloc(total * sizeof *g->el);
        g->rule_start = malloc((size_t)b->n * sizeof *g->rule_start);
        g->sets = malloc(((size_t)b->n_sets + 1) * sizeof *g->sets);
    }
    if (!g || !g->el || !g->rule_start || !g->sets) {
        kiln_grammar_free(g);
        return kiln_err_set(err, "grammar: out of memory"), NULL;
    }
    size_t at = 0;
    for (int r = 0; r < b->n; r++) {
        g->rule_start[r] = (int32_t)at;
        if (b->rules[r]->n) memcpy(g->el + at, b->rules[r]->p, b->rules[r]->n * sizeof *g->el);
        at += b->rules[r]->n;
        g->el[at++] = (gel){G_END, 0};
    }
    if (b->n_sets) memcpy(g->sets, b->sets, (size_t)b->n_sets * sizeof *g->sets);
    g->n_rules = b->n, g->root = root, g->n_sets = b->n_sets;
    return g;
}

void kiln_grammar_free(kiln_grammar *g) {
    if (!g) return;
    free(g->el), free(g->rule_start), free(g->sets), free(g);
}
