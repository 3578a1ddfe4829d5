/* gbnf.c — llama.cpp's GBNF grammar text → the byte-level IR (grammar.h).
 *
 *   root ::= "{" ws pair ("," ws pair)* "}"     # comments to the end of the line
 *   pair ::= [a-z]+ ":" [0-9]{1,3} | "null"
 *
 * Literals ("..."), classes ([a-z], [^"\\], UTF-8 ranges), any character (.), groups, rule references,
 * postfix * + ? {m} {m,} {m,n}; escapes \x.. \u.... \U........ \t \n \r \\ \" \[ \] \-. A rule ends at
 * a newline unless inside parentheses, as in llama.cpp. Groups and repetitions become new rules. */
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

typedef struct {
    const char *src, *p;
    gbuild *b;
    kiln_err *err;
    int depth;
} parser;

static int fail(parser *ps, const char *what) {
    int line = 1, col = 1;
    for (const char *q = ps->src; q < ps->p; q++) line += *q == '\n', col = *q == '\n' ? 1 : col + 1;
    return kiln_err_set(ps->err, "grammar: line %d col %d: %s", line, col, what);
}
static int oom(parser *ps) { return kiln_err_set(ps->err, "grammar: out of memory"); }

static bool word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static void skip_space(parser *ps, bool newline_ok) {
    for (;;) {
        char c = *ps->p;
        if (c == '#') {
            while (*ps->p && *ps->p != '\n') ps->p++;
        } else if (c == ' ' || c == '\t' || c == '\r' || (newline_ok && c == '\n')) {
            ps->p++;
        } else {
            return;
        }
    }
}

static int hex_digits(parser *ps, int n, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < n; i++) {
        char c = *ps->p;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return fail(ps, "expected a hex digit in an escape");
        v = v * 16 + (uint32_t)d, ps->p++;
    }
    if (v > 0x10FFFF) return fail(ps, "escape beyond U+10FFFF");
    *out = v;
    return 0;
}

/* One (possibly escaped) code point of a literal or class. */
static int parse_char(parser *ps, uint32_t *cp) {
    if (*ps->p == '\\') {
        ps->p++;
        char c = *ps->p++;
        switch (c) {
        case 'x': return hex_digits(ps, 2, cp);
        case 'u': return hex_digits(ps, 4, cp);
        case 'U': return hex_digits(ps, 8, cp);
        case 't': return *cp = '\t', 0;
        case 'n': return *cp = '\n', 0;
        case 'r': return *cp = '\r', 0;
        case '\\': case '"': case '[': case ']': case '-': return *cp = (uint32_t)c, 0;
        default: ps->p--; return fail(ps, "unknown escape");
        }
    }
    int n = utf8_decode(ps->p, strlen(ps->p), cp);
    if (n == 0) return fail(ps, *ps->p ? "invalid UTF-8" : "unexpected end of grammar");
    ps->p += n;
    return 0;
}

static int parse_class(parser *ps, gvec *seq) {
    ps->p++; /* [ */
    bool negate = *ps->p == '^';
    if (negate) ps->p++;
    int n = 0, cap = 16;
    uint32_t *r = malloc((size_t)(2 * cap + 2) * sizeof *r);
    if (!r) return oom(ps);
    int rc = 0;
    while (!rc && *ps->p != ']') {
        uint32_t lo, hi;
        if (!*ps->p) {
            rc = fail(ps, "unterminated character class");
            break;
        }
        if ((rc = parse_char(ps, &lo))) break;
        hi = lo;
        if (ps->p[0] == '-' && ps->p[1] && ps->p[1] != ']') {
            ps->p++;
            if ((rc = parse_char(ps, &hi))) break;
            if (hi < lo) rc = fail(ps, "character range out of order");
        }
        if (!rc && n == cap) {
            uint32_t *nr = realloc(r, (size_t)(4 * cap + 2) * sizeof *r);
            if (!nr) rc = oom(ps);
            else r = nr, cap *= 2;
        }
        if (!rc) r[2 * n] = lo, r[2 * n + 1] = hi, n++;
    }
    if (!rc) {
        ps->p++; /* ] */
        n = ranges_normalise(r, n, negate);
        if (n == 0) rc = fail(ps, "character class matches nothing");
        else if (gb_codepoints(ps->b, seq, r, n, "class")) rc = oom(ps);
    }
    free(r);
    return rc;
}

static int parse_literal(parser *ps, gvec *seq) {
    ps->p++; /* " */
    while (*ps->p != '"') {
        uint32_t cp;
        if (!*ps->p || *ps->p == '\n') return fail(ps, "unterminated string literal");
        if (parse_char(ps, &cp)) return -1;
        if (gb_codepoint(ps->b, seq, cp)) return oom(ps);
    }
    ps->p++;
    return 0;
}

static int parse_alternates(parser *ps, int rule);

/* x{min,max} (max -1: unbounded) over seq[start..]: min copies, then nested optionals or a loop rule. */
static int repeat(parser *ps, gvec *seq, size_t start, long min, long max) {
    size_t xn = seq->n - start;
    gel *x = malloc(xn * sizeof *x);
    if (!x) return oom(ps);
    memcpy(x, seq->p + start, xn * sizeof *x);
    seq->n = start;
    int rc = 0;
    for (long i = 0; i < min && !rc; i++)
        for (size_t k = 0; k < xn && !rc; k++) rc = gvec_push(seq, x[k].kind, x[k].arg);
    int last = -1;
    long n_opt = max < 0 ? 1 : max - min;
    for (long i = 0; i < n_opt && !rc; i++) { /* R ::= x R | ε (loop) or R_i ::= x R_{i-1} | ε */
        int r = gb_new_rule(ps->b, "rep");
        gvec *v = r >= 0 ? ps->b->rules[r] : NULL;
        rc = r < 0 ? -1 : 0;
        for (size_t k = 0; k < xn && !rc; k++) rc = gvec_push(v, x[k].kind, x[k].arg);
        if (!rc && max < 0) rc = gvec_push(v, G_REF, r);
        if (!rc && last >= 0) rc = gvec_push(v, G_REF, last);
        if (!rc) rc = gvec_push(v, G_ALT, 0);
        last = r;
    }
    if (!rc && last >= 0) rc = gvec_push(seq, G_REF, last);
    free(x);
    return rc ? oom(ps) : 0;
}

static int parse_count(parser *ps, long *out) {
    if (*ps->p < '0' || *ps->p > '9') return fail(ps, "expected a number in {m,n}");
    long v = 0;
    while (*ps->p >= '0' && *ps->p <= '9') {
        v = v * 10 + (*ps->p++ - '0');
        if (v > 10000) return fail(ps, "repetition count above 10000");
    }
    *out = v;
    return 0;
}

static int parse_braces(parser *ps, long *min, long *max) {
    ps->p++; /* { */
    skip_space(ps, true);
    if (parse_count(ps, min)) return -1;
    skip_space(ps, true);
    *max = *min;
    if (*ps->p == ',') {
        ps->p++;
        skip_space(ps, true);
        *max = -1;
        if (*ps->p != '}' && parse_count(ps, max)) return -1;
        skip_space(ps, true);
    }
    if (*ps->p != '}') return fail(ps, "expected '}'");
    ps->p++;
    if (*max >= 0 && *max < *min) return fail(ps, "repetition {m,n} with n < m");
    return 0;
}

static int parse_item(parser *ps, gvec *seq, int rule, size_t *last_start) {
    char c = *ps->p;
    *last_start = seq->n;
    if (c == '"') return parse_literal(ps, seq);
    if (c == '[') return parse_class(ps, seq);
    if (c == '.') {
        ps->p++;
        static const uint32_t any[2] = {0, 0x10FFFF};
        return gb_codepoints(ps->b, seq, any, 1, "any") ? oom(ps) : 0;
    }
    if (c == '(') {
        ps->p++;
        if (++ps->depth > 200) return fail(ps, "groups nested too deep");
        int sub = gb_new_rule(ps->b, ps->b->names[rule]);
        if (sub < 0) return oom(ps);
        skip_space(ps, true);
        if (parse_alternates(ps, sub)) return -1;
        if (*ps->p != ')') return fail(ps, "expected ')'");
        ps->p++, ps->depth--;
        return gvec_push(seq, G_REF, sub) ? oom(ps) : 0;
    }
    if (word_char(c)) {
        const char *s = ps->p;
        while (word_char(*ps->p)) ps->p++;
        int ref = gb_rule(ps->b, s, (size_t)(ps->p - s));
        return ref < 0 || gvec_push(seq, G_REF, ref) ? oom(ps) : 0;
    }
    if (c == '<') return fail(ps, "token references (<...>) are not supported");
    return fail(ps, "unexpected character");
}

/* Appends one alternative (a sequence) to rule. */
static int parse_sequence(parser *ps, int rule) {
    size_t last_start = (size_t)-1;
    gvec *seq = ps->b->rules[rule];
    for (;;) {
        char c = *ps->p;
        if (!c || c == '|' || c == ')' || c == '\n') return 0;
        long min, max;
        if (c == '*' || c == '+' || c == '?' || c == '{') {
            if (last_start == (size_t)-1 || last_start >= seq->n)
                return fail(ps, "repetition operator without an item before it");
            if (c == '{') {
                if (parse_braces(ps, &min, &max)) return -1;
            } else {
                ps->p++;
                min = c == '+', max = c == '?' ? 1 : -1;
            }
            if (repeat(ps, seq, last_start, min, max)) return -1;
            last_start = (size_t)-1;
        } else if (parse_item(ps, seq, rule, &last_start)) {
            return -1;
        }
        skip_space(ps, ps->depth > 0);
    }
}

static int parse_alternates(parser *ps, int rule) {
    if (parse_sequence(ps, rule)) return -1;
    while (*ps->p == '|') {
        ps->p++;
        if (gvec_push(ps->b->rules[rule], G_ALT, 0)) return oom(ps);
        skip_space(ps, true);
        if (parse_sequence(ps, rule)) return -1;
    }
    return 0;
}

static int parse_rule(parser *ps) {
    const char *s = ps->p;
    while (word_char(*ps->p)) ps->p++;
    if (ps->p == s) return fail(ps, "expected a rule name");
    int rule = gb_rule(ps->b, s, (size_t)(ps->p - s));
    if (rule < 0) return oom(ps);
    if (ps->b->defined[rule]) return fail(ps, "rule defined twice");
    ps->b->defined[rule] = true;
    skip_space(ps, false);
    if (strncmp(ps->p, "::=", 3)) return fail(ps, "expected '::='");
    ps->p += 3;
    skip_space(ps, true);
    if (parse_alternates(ps, rule)) return -1;
    if (*ps->p == ')') return fail(ps, "unmatched ')'");
    return 0;
}

kiln_grammar *kiln_grammar_from_gbnf(const char *src, kiln_err *err) {
    gbuild b = {0};
    parser ps = {src, src, &b, err, 0};
    int rc = 0;
    skip_space(&ps, true);
    while (!rc && *ps.p) {
        rc = parse_rule(&ps);
        skip_space(&ps, true);
    }
    kiln_grammar *g = rc ? NULL : gb_finish(&b, err);
    gb_free(&b);
    return g;
}
