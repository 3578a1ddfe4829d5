/* grammar.h — the grammar engine's internal pieces.
 *
 * Every front end (JSON Schema, regex, choice list) writes GBNF text; gbnf.c parses it into the one IR
 * below, a flat byte-level grammar in llama.cpp's layout: each rule is a list of alternatives, each
 * alternative a sequence of elements ended by G_ALT (another alternative follows) or G_END (the last).
 * Character classes are lowered to UTF-8 byte sequences at parse time, so the matcher (matcher.c) only
 * ever compares single bytes against 256-bit sets. */
#ifndef KILN_GRAMMAR_INTERNAL_H
#define KILN_GRAMMAR_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/strbuf.h"
#include "kiln.h"

typedef enum { G_END, G_ALT, G_REF, G_SET } gkind;

typedef struct {
    uint8_t kind;
    int32_t arg; /* G_REF: rule index; G_SET: byte-set index */
} gel;

typedef struct {
    uint8_t bits[32];
} gset;

static inline bool gset_has(const gset *s, unsigned b) { return (s->bits[b >> 3] >> (b & 7)) & 1; }
static inline void gset_add(gset *s, unsigned b) { s->bits[b >> 3] |= (uint8_t)(1u << (b & 7)); }

struct kiln_grammar {
    gel *el;             /* all rules' elements, one after the other */
    int32_t *rule_start; /* [n_rules] index in el of the rule's first alternative */
    int n_rules, root;
    gset *sets;
    int n_sets;
};

/* ---- build.c: grammar under construction ---- */
typedef struct {
    gel *p;
    size_t n, cap;
} gvec;

typedef struct {
    gvec **rules;  /* [n] (stable addresses) the elements of each rule (alternatives separated by G_ALT, no final G_END) */
    char **names;  /* [n] */
    bool *defined; /* [n] a `name ::=` was seen (references may come first) */
    int n, cap;
    gset *sets;
    int n_sets, cap_sets;
} gbuild;

int gvec_push(gvec *v, gkind kind, int32_t arg); /* 0 or -1 (out of memory) */
/* Index of the rule called name[0..len), added (undefined) if new; -1 when out of memory. */
int gb_rule(gbuild *b, const char *name, size_t len);
/* A fresh rule named base_N (for groups and repetitions), marked defined. */
int gb_new_rule(gbuild *b, const char *base);
/* Appends to seq the elements that match exactly one code point in the sorted, disjoint ranges
 * (pairs lo, hi); several UTF-8 lengths make a new alternatives rule. 0, or -1 out of memory. */
int gb_codepoints(gbuild *b, gvec *seq, const uint32_t *ranges, int n_ranges, const char *rule_name);
/* Sorts and merges code-point ranges (n pairs lo, hi) in place, optionally complementing them over
 * [0, 0x10FFFF] (the array needs room for n + 1 pairs); returns the number of pairs. */
int ranges_normalise(uint32_t *r, int n, bool negate);
/* Appends the UTF-8 bytes of one code point, one single-byte set each. */
int gb_codepoint(gbuild *b, gvec *seq, uint32_t cp);
/* Checks (all rules defined, root present, no left recursion) and flattens into a kiln_grammar. */
kiln_grammar *gb_finish(gbuild *b, kiln_err *err);
void gb_free(gbuild *b);

/* Writes the UTF-8 encoding of cp (<= 0x10FFFF) into out; returns its length. */
int utf8_encode(uint32_t cp, unsigned char out[4]);
/* Decodes one code point from s[0..n); returns its length (0: invalid or truncated). */
int utf8_decode(const char *s, size_t n, uint32_t *cp);

/* ---- vocab.c: every token's bytes, sorted so that shared prefixes are walked once ---- */
struct kiln_grammar_vocab {
    int n;            /* ids 0..n-1 (the tokenizer's vocabulary) */
    char *bytes;      /* all tokens' bytes */
    size_t *off;      /* [n] */
    uint32_t *len;    /* [n] 0: never allowed (special token or no bytes) */
    int32_t *order;   /* [n_order] allowed-able ids sorted by their bytes */
    uint32_t *lcp;    /* [n_order] bytes shared with the previous id in order */
    char *sorted;     /* the bytes again in that order (the mask walk reads them sequentially) */
    size_t *sorted_off; /* [n_order + 1] order[i]'s bytes are sorted[sorted_off[i] .. sorted_off[i+1]) */
    int n_order;
    uint32_t max_len;
};

/* ---- front ends that write GBNF (json_schema.c, regex.c) ---- */
/* Appends GBNF for a regex (the whole match; ^ and $ at the ends are implied anyway) as one
 * parenthesised expression. in_json_string: the matched text sits inside a JSON string, so `"`, `\`
 * and control characters are written escaped. */
int regex_to_gbnf(const char *re, bool in_json_string, strbuf *out, kiln_err *err);
/* Appends `name ::= ...` and the helper rules for a JSON Schema (helpers named j<N>, N counting on from
 * *counter, so several schemas can share one grammar); json_schema_primitives adds the rules they all
 * use (ws, jstring, jvalue, ...), once. */
int json_schema_rules(const char *schema_json, const char *name, int *counter, strbuf *out, kiln_err *err);
int json_schema_primitives(strbuf *out);
/* Compiles the GBNF text in s and frees s; errors are prefixed with what (the front end's name). */
kiln_grammar *gbnf_compile_buf(strbuf *s, const char *what, kiln_err *err);
/* Appends a GBNF string literal ("...") matching s exactly. */
int gbnf_literal(strbuf *out, const char *s, size_t n);

#endif
