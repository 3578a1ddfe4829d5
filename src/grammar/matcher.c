/* matcher.c — a byte-level pushdown matcher over the grammar IR, determinised lazily.
 *
 * A stack is a chain of interned nodes (pos, parent): pos the next element of an alternative, parent the
 * return address below it. Expanding a stack (following rule references and ended alternatives) gives
 * the stacks whose top is a byte set; a matcher state is the sorted set of those, plus whether the root
 * has been completed. States are interned too, so each gets a lazily filled 256-entry transition table
 * (a DFA built on demand) and, once generation sits in it, a cached token mask.
 *
 * The mask walks the vocabulary in byte order (vocab.c): a token shares the transitions of the prefix
 * it has in common with the previous one, and a dead prefix rejects every token that starts with it, so
 * the cost is about one table look-up per trie node, and nothing for a state seen before. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

#define DEAD (-1)
#define UNKNOWN (-2)
#define FAILED (-3)
#define MAX_STACKS 20000    /* stacks in one state: more means a hopelessly ambiguous grammar */
#define MAX_NODES 20000000 /* interned stack nodes in one matcher */
#define MAX_MASK_BYTES (32u << 20) /* cached masks per matcher; past it the cache starts over */

typedef struct {
    int32_t pos, parent;
    int32_t exp_off, exp_n; /* memoised expansion (exp_n -1: not yet) */
    bool exp_accept;
} gnode;

typedef struct {
    int32_t off, n; /* node ids in the pool */
    bool accept;
    uint64_t *mask; /* lazily: allowed token ids */
} gstate;

typedef struct {
    int32_t *p;
    size_t n, cap;
} ivec;

struct kiln_grammar_matcher {
    const kiln_grammar *g;
    const kiln_grammar_vocab *v;
    int32_t *alt_off, *alts; /* rule r's alternatives start at el[alts[alt_off[r] .. alt_off[r+1])] */
    gnode *nodes;
    size_t n_nodes, cap_nodes;
    int32_t *node_ht; /* open addressing over node ids, -1 empty */
    size_t node_ht_cap;
    ivec exp;  /* expansions' node ids */
    ivec pool; /* states' node ids */
    gstate *states;
    int32_t *next; /* [cap_states][256] the state after a byte: a state, DEAD or UNKNOWN (one array: one load) */
    size_t n_states, cap_states;
    int32_t *state_ht;
    size_t state_ht_cap;
    ivec tmp;
    int32_t *walk; /* [max_len + 1] states along the mask walk */
    int32_t cur;
    size_t mask_bytes; /* held by cached masks */
    bool ended;        /* an EOS was accepted */
    kiln_err err;
};

static int ivec_push(ivec *v, int32_t x) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        int32_t *p = realloc(v->p, cap * sizeof *p);
        if (!p) return -1;
        v->p = p, v->cap = cap;
    }
    v->p[v->n++] = x;
    return 0;
}

static int oom(kiln_grammar_matcher *m) { return kiln_err_set(&m->err, "grammar: out of memory"); }

static uint64_t mix(uint64_t h) {
    h ^= h >> 33, h *= 0xff51afd7ed558ccdULL, h ^= h >> 33, h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

/* Doubles an open-addressing table of ids and re-inserts them with hash(id). */
static int rehash(int32_t **ht, size_t *cap, size_t n, uint64_t (*hash)(const kiln_grammar_matcher *, int32_t),
                  const kiln_grammar_matcher *m) {
    size_t nc = *cap ? *cap * 2 : 1024;
    int32_t *t = malloc(nc * sizeof *t);
    if (!t) return -1;
    memset(t, 0xff, nc * sizeof *t);
    for (size_t i = 0; i < n; i++) {
        size_t h = hash(m, (int32_t)i) & (nc - 1);
        while (t[h] >= 0) h = (h + 1) & (nc - 1);
        t[h] = (int32_t)i;
    }
    free(*ht);
    *ht = t, *cap = nc;
    return 0;
}

static uint64_t node_key(int32_t pos, int32_t parent) { return mix((uint64_t)(uint32_t)pos << 32 | (uint32_t)parent); }
static uint64_t node_hash(const kiln_grammar_matcher *m, int32_t id) {
    return node_key(m->nodes[id].pos, m->nodes[id].parent);
}

static int32_t intern_node(kiln_grammar_matcher *m, int32_t pos, int32_t parent) {
    if (m->node_ht_cap) {
        size_t mask = m->node_ht_cap - 1;
        for (size_t h = node_key(pos, parent) & mask; m->node_ht[h] >= 0; h = (h + 1) & mask) {
            const gnode *n = &m->nodes[m->node_ht[h]];
            if (n->pos == pos && n->parent == parent) return m->node_ht[h];
        }
    }
    if (m->n_nodes >= MAX_NODES) return kiln_err_set(&m->err, "grammar: matcher state grew past its limit");
    if (m->n_nodes == m->cap_nodes) {
        size_t cap = m->cap_nodes ? m->cap_nodes * 2 : 256;
        gnode *p = realloc(m->nodes, cap * sizeof *p);
        if (!p) return oom(m);
        m->nodes = p, m->cap_nodes = cap;
    }
    int32_t id = (int32_t)m->n_nodes++;
    m->nodes[id] = (gnode){pos, parent, 0, -1, false};
    if (m->n_nodes * 2 > m->node_ht_cap) {
        if (rehash(&m->node_ht, &m->node_ht_cap, m->n_nodes, node_hash, m)) return oom(m);
    } else {
        size_t mask = m->node_ht_cap - 1, h = node_key(pos, parent) & mask;
        while (m->node_ht[h] >= 0) h = (h + 1) & mask;
        m->node_ht[h] = id;
    }
    return id;
}

static int expand_node(kiln_grammar_matcher *m, int32_t id, ivec *out, bool *accept);

/* Appends to out the byte-set-topped stacks that (pos, parent) stands for. */
static int expand_at(kiln_grammar_matcher *m, int32_t pos, int32_t parent, ivec *out, bool *accept) {
    gel e = m->g->el[pos];
    if (e.kind == G_SET) {
        int32_t id = intern_node(m, pos, parent);
        return id < 0 || ivec_push(out, id) ? (id < 0 ? -1 : oom(m)) : 0;
    }
    if (e.kind == G_END || e.kind == G_ALT) { /* alternative done: return to the parent */
        if (parent < 0) return *accept = true, 0;
        return expand_node(m, parent, out, accept);
    }
    /* A reference last in its alternative returns straight to the parent (a tail call), so right
     * recursion such as `r ::= x r | ""` keeps the stack flat and its states repeat. */
    gkind after = m->g->el[pos + 1].kind;
    int32_t ret = after == G_END || after == G_ALT ? parent : intern_node(m, pos + 1, parent);
    if (ret < 0 && !(after == G_END || after == G_ALT)) return -1;
    for (int32_t a = m->alt_off[e.arg]; a < m->alt_off[e.arg + 1]; a++)
        if (expand_at(m, m->alts[a], ret, out, accept)) return -1;
    return 0;
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

static size_t sort_unique(int32_t *p, size_t n) {
    if (n < 2) return n;
    qsort(p, n, sizeof *p, cmp_i32);
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (p[i] != p[k - 1]) p[k++] = p[i];
    return k;
}

/* Memoised expansion of node id (its (pos, parent) as a stack). */
static int expand_node(kiln_grammar_matcher *m, int32_t id, ivec *out, bool *accept) {
    if (m->nodes[id].exp_n == -2) return kiln_err_set(&m->err, "grammar: cyclic expansion");
    if (m->nodes[id].exp_n < 0) {
        ivec mine = {0};
        bool acc = false;
        m->nodes[id].exp_n = -2;
        int rc = expand_at(m, m->nodes[id].pos, m->nodes[id].parent, &mine, &acc);
        mine.n = sort_unique(mine.p, mine.n);
        size_t off = m->exp.n;
        for (size_t i = 0; !rc && i < mine.n; i++)
            if (ivec_push(&m->exp, mine.p[i])) rc = oom(m);
        free(mine.p);
        if (rc) return m->nodes[id].exp_n = -1, -1;
        m->nodes[id].exp_off = (int32_t)off, m->nodes[id].exp_n = (int32_t)mine.n;
        m->nodes[id].exp_accept = acc;
    }
    gnode n = m->nodes[id];
    *accept |= n.exp_accept;
    for (int32_t i = 0; i < n.exp_n; i++)
        if (ivec_push(out, m->exp.p[n.exp_off + i])) return oom(m);
    return 0;
}

static uint64_t set_hash(const int32_t *p, size_t n, bool accept) {
    uint64_t h = accept ? 0x9e3779b97f4a7c15ULL : 0;
    for (size_t i = 0; i < n; i++) h = mix(h ^ (uint32_t)p[i]);
    return h;
}
static uint64_t state_hash(const kiln_grammar_matcher *m, int32_t s) {
    const gstate *st = &m->states[s];
    return set_hash(m->pool.p + st->off, (size_t)st->n, st->accept);
}

/* The state for the sorted node set p[0..n) (copied), DEAD when empty and not accepting. */
static int32_t intern_state(kiln_grammar_matcher *m, const int32_t *p, size_t n, bool accept) {
    if (n == 0 && !accept) return DEAD;
    if (n > MAX_STACKS) return kiln_err_set(&m->err, "grammar: too ambiguous (over %d parses at once)", MAX_STACKS), FAILED;
    uint64_t h = set_hash(p, n, accept);
    if (m->state_ht_cap) {
        size_t mask = m->state_ht_cap - 1;
        for (size_t i = h & mask; m->state_ht[i] >= 0; i = (i + 1) & mask) {
            const gstate *s = &m->states[m->state_ht[i]];
            if (s->accept == accept && (size_t)s->n == n && !memcmp(m->pool.p + s->off, p, n * sizeof *p))
                return m->state_ht[i];
        }
    }
    if (m->n_states == m->cap_states) {
        size_t cap = m->cap_states ? m->cap_states * 2 : 64;
        gstate *s = realloc(m->states, cap * sizeof *s);
        if (s) m->states = s;
        int32_t *nx = s ? realloc(m->next, cap * 256 * sizeof *nx) : NULL;
        if (!nx) return oom(m), FAILED;
        m->next = nx, m->cap_states = cap;
    }
    size_t off = m->pool.n;
    for (size_t i = 0; i < n; i++)
        if (ivec_push(&m->pool, p[i])) return oom(m), FAILED;
    int32_t id = (int32_t)m->n_states++;
    m->states[id] = (gstate){(int32_t)off, (int32_t)n, accept, NULL};
    for (int c = 0; c < 256; c++) m->next[(size_t)id * 256 + c] = UNKNOWN;
    if (m->n_states * 2 > m->state_ht_cap) {
        if (rehash(&m->state_ht, &m->state_ht_cap, m->n_states, state_hash, m)) return oom(m), FAILED;
    } else {
        size_t mask = m->state_ht_cap - 1, i = h & mask;
        while (m->state_ht[i] >= 0) i = (i + 1) & mask;
        m->state_ht[i] = id;
    }
    return id;
}

/* Computes the state after byte c from state s. */
static int32_t advance(kiln_grammar_matcher *m, int32_t s, unsigned c) {
    m->tmp.n = 0;
    bool accept = false;
    for (int32_t i = 0; i < m->states[s].n; i++) {
        gnode n = m->nodes[m->pool.p[m->states[s].off + i]];
        if (!gset_has(&m->g->sets[m->g->el[n.pos].arg], c)) continue;
        int32_t child = intern_node(m, n.pos + 1, n.parent);
        if (child < 0 || expand_node(m, child, &m->tmp, &accept)) return FAILED;
    }
    m->tmp.n = sort_unique(m->tmp.p, m->tmp.n);
    return intern_state(m, m->tmp.p, m->tmp.n, accept);
}

/* The DFA transition: cached, computed on first use. */
static inline int32_t step(kiln_grammar_matcher *m, int32_t s, unsigned char c) {
    int32_t r = m->next[(size_t)s * 256 + c];
    if (r != UNKNOWN) return r;
    r = advance(m, s, c);
    if (r != FAILED) m->next[(size_t)s * 256 + c] = r; /* m->next may have moved: index again */
    return r;
}

kiln_grammar_matcher *kiln_grammar_matcher_new(const kiln_grammar *g, const kiln_grammar_vocab *v, kiln_err *err) {
    kiln_grammar_matcher *m = calloc(1, sizeof *m);
    if (!m) return kiln_err_set(err, "grammar: out of memory"), NULL;
    m->g = g, m->v = v;
    size_t n_el = (size_t)g->rule_start[g->n_rules - 1];
    while (g->el[n_el].kind != G_END) n_el++;
    m->alt_off = malloc(((size_t)g->n_rules + 1) * sizeof *m->alt_off);
    m->alts = malloc((n_el + 1) * sizeof *m->alts);
    m->walk = v ? malloc((v->max_len + 1) * sizeof *m->walk) : NULL;
    int32_t k = 0;
    for (int r = 0; m->alt_off && m->alts && r < g->n_rules; r++) {
        m->alt_off[r] = k;
        m->alts[k++] = g->rule_start[r];
        for (int32_t i = g->rule_start[r]; g->el[i].kind != G_END; i++)
            if (g->el[i].kind == G_ALT) m->alts[k++] = i + 1;
    }
    if (!m->alt_off || !m->alts || (v && !m->walk)) {
        kiln_grammar_matcher_free(m);
        return kiln_err_set(err, "grammar: out of memory"), NULL;
    }
    m->alt_off[g->n_rules] = k;
    bool accept = false; /* the start: every alternative of root, nothing below */
    int rc = 0;
    for (int32_t a = m->alt_off[g->root]; !rc && a < m->alt_off[g->root + 1]; a++)
        rc = expand_at(m, m->alts[a], -1, &m->tmp, &accept);
    if (!rc) {
        m->tmp.n = sort_unique(m->tmp.p, m->tmp.n);
        m->cur = intern_state(m, m->tmp.p, m->tmp.n, accept);
        if (m->cur == FAILED) rc = -1;
        else if (m->cur == DEAD) rc = kiln_err_set(&m->err, "grammar: matches nothing");
    }
    if (rc) {
        kiln_err_set(err, "%s", m->err.msg);
        kiln_grammar_matcher_free(m);
        return NULL;
    }
    return m;
}

void kiln_grammar_matcher_free(kiln_grammar_matcher *m) {
    if (!m) return;
    for (size_t i = 0; i < m->n_states; i++) free(m->states[i].mask);
    free(m->states), free(m->next), free(m->state_ht), free(m->nodes), free(m->node_ht);
    free(m->exp.p), free(m->pool.p), free(m->tmp.p), free(m->alt_off), free(m->alts), free(m->walk);
    free(m);
}

int kiln_grammar_matcher_accept_bytes(kiln_grammar_matcher *m, const char *s, size_t n, kiln_err *err) {
    if (m->ended && n) return kiln_err_set(err, "grammar: input after the end");
    int32_t cur = m->cur;
    for (size_t i = 0; i < n; i++) {
        cur = step(m, cur, (unsigned char)s[i]);
        if (cur == FAILED) return kiln_err_set(err, "%s", m->err.msg);
        if (cur == DEAD) return kiln_err_set(err, "grammar: byte %zu (0x%02x) cannot continue the output", i, (unsigned char)s[i]);
    }
    m->cur = cur;
    return 0;
}

bool kiln_grammar_matcher_complete(const kiln_grammar_matcher *m) { return m->states[m->cur].accept; }
bool kiln_grammar_matcher_can_continue(const kiln_grammar_matcher *m) { return !m->ended && m->states[m->cur].n > 0; }

/* Allowed tokens of state s as a bitset over the vocabulary (see the file comment). */
static int compute_mask(kiln_grammar_matcher *m, int32_t s, uint64_t *mask) {
    const kiln_grammar_vocab *v = m->v;
    int32_t *st = m->walk;
    uint32_t valid = 0, dead = UINT32_MAX;
    st[0] = s;
    for (int i = 0; i < v->n_order; i++) {
        uint32_t l = v->lcp[i];
        if (l >= dead) continue; /* starts with the dead prefix */
        dead = UINT32_MAX;
        if (valid > l) valid = l;
        const unsigned char *b = (const unsigned char *)v->sorted + v->sorted_off[i];
        uint32_t d = valid, len = (uint32_t)(v->sorted_off[i + 1] - v->sorted_off[i]);
        for (; d < len; d++) {
            int32_t ns = step(m, st[d], b[d]);
            if (ns == FAILED) return -1;
            if (ns == DEAD) {
                dead = d + 1;
                break;
            }
            st[d + 1] = ns;
        }
        valid = d;
        if (d == len) mask[v->order[i] >> 6] |= 1ull << (v->order[i] & 63);
    }
    return 0;
}

int kiln_grammar_matcher_mask(kiln_grammar_matcher *m, float *logits, int n, const int32_t *eos_ids, int n_eos,
                              kiln_err *err) {
    if (!m->v) return kiln_err_set(err, "grammar: the matcher has no vocabulary");
    if (m->ended) return kiln_err_set(err, "grammar: the output has already ended");
    gstate *s = &m->states[m->cur];
    if (!s->mask) {
        size_t bytes = ((size_t)m->v->n + 63) / 64 * sizeof(uint64_t);
        if (m->mask_bytes + bytes > MAX_MASK_BYTES) { /* a long output of ever new states: bound the memory */
            for (size_t i = 0; i < m->n_states; i++) free(m->states[i].mask), m->states[i].mask = NULL;
            m->mask_bytes = 0;
        }
        uint64_t *mask = calloc(bytes, 1);
        if (!mask) return kiln_err_set(err, "grammar: out of memory");
        m->mask_bytes += bytes;
        if (compute_mask(m, m->cur, mask)) {
            free(mask);
            return kiln_err_set(err, "%s", m->err.msg);
        }
        s = &m->states[m->cur];
        s->mask = mask;
    }
    float eos_logit[KILN_GEN_MAX_EOS];
    int n_keep = s->accept ? (n_eos < KILN_GEN_MAX_EOS ? n_eos : KILN_GEN_MAX_EOS) : 0;
    for (int k = 0; k < n_keep; k++) eos_logit[k] = eos_ids[k] >= 0 && eos_ids[k] < n ? logits[eos_ids[k]] : 0;
    int n_ok = 0;
    for (int base = 0; base < n; base += 64) { /* a word of the mask at a time: most are all 0 or all 1 */
        uint64_t bits = base < m->v->n ? s->mask[base >> 6] : 0; /* ids >= v->n: zero bits */
        int end = base + 64 < n ? base + 64 : n;
        if (end - base < 64) bits &= (1ull << (end - base)) - 1;
        n_ok += __builtin_popcountll(bits);
        if (bits == ~0ull) continue;
        for (int i = base; i < end; i++)
            if (!((bits >> (i - base)) & 1)) logits[i] = -INFINITY;
    }
    for (int k = 0; k < n_keep; k++) /* EOS: only once the output is complete */
        if (eos_ids[k] >= 0 && eos_ids[k] < n) logits[eos_ids[k]] = eos_logit[k], n_ok++;
    if (n_ok == 0) return kiln_err_set(err, "grammar: no token of the vocabulary can continue the output");
    return 0;
}

int kiln_grammar_matcher_accept_token(kiln_grammar_matcher *m, int32_t id, kiln_err *err) {
    if (!m->v) return kiln_err_set(err, "grammar: the matcher has no vocabulary");
    if (id < 0 || id >= m->v->n || m->v->len[id] == 0)
        return kiln_err_set(err, "grammar: token %d is not allowed (special or without text)", (int)id);
    return kiln_grammar_matcher_accept_bytes(m, m->v->bytes + m->v->off[id], m->v->len[id], err);
}

int kiln_grammar_matcher_accept_eos(kiln_grammar_matcher *m, kiln_err *err) {
    if (!kiln_grammar_matcher_complete(m)) return kiln_err_set(err, "grammar: end of output before the grammar is complete");
    m->ended = true;
    return 0;
}

bool kiln_grammar_accepts(const kiln_grammar *g, const char *s, size_t n) {
    kiln_grammar_matcher *m = kiln_grammar_matcher_new(g, NULL, NULL);
    bool ok = m && kiln_grammar_matcher_accept_bytes(m, s, n, NULL) == 0 && kiln_grammar_matcher_complete(m);
    kiln_grammar_matcher_free(m);
    return ok;
}
