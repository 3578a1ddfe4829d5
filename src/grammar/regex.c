/* regex.c — regular expressions and choice lists as GBNF (then the one GBNF parser builds the IR).
 *
 * The subset: literals, . (any character but \n), [classes] with ranges and negation, \d \w \s and their
 * negations, \n \t \r \f \v \0 \xHH \uHHHH and escaped punctuation, groups ( ) (?: ) (?<name> ),
 * alternation, * + ? {m} {m,} {m,n} (a lazy ? suffix matches the same strings). ^ and $ are accepted at
 * the ends only (the match is always the whole output). Anything else — backreferences, lookaround,
 * word boundaries, possessive quantifiers — is an error naming it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/grammar.h"

typedef struct {
    const char *src, *p;
    bool json; /* inside a JSON string: escape " \ and control characters */
    strbuf *out;
    kiln_err *err;
    int depth;
} rx;

static int rx_fail(rx *r, const char *what) {
    return kiln_err_set(r->err, "regex: %s at offset %d", what, (int)(r->p - r->src));
}

int gbnf_literal(strbuf *out, const char *s, size_t n) {
    int rc = strbuf_putc(out, '"');
    for (size_t i = 0; i < n && !rc; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') rc = strbuf_putc(out, '\\') || strbuf_putc(out, (char)c);
        else if (c == '\n') rc = strbuf_puts(out, "\\n");
        else if (c < 0x20 || c == 0x7F) rc = strbuf_printf(out, "\\x%02X", c);
        else rc = strbuf_putc(out, (char)c);
    }
    return rc || strbuf_putc(out, '"');
}

/* Ranges of a class under construction. */
typedef struct {
    uint32_t *r;
    int n, cap;
} ranges;

static int add_range(ranges *c, uint32_t lo, uint32_t hi) {
    if (c->n + 2 >= c->cap) {
        int cap = c->cap ? c->cap * 2 : 16;
        uint32_t *p = realloc(c->r, (size_t)cap * 2 * sizeof *p);
        if (!p) return -1;
        c->r = p, c->cap = cap;
    }
    c->r[2 * c->n] = lo, c->r[2 * c->n + 1] = hi, c->n++;
    return 0;
}

/* The ranges of \d \w \s (upper case: the complement). */
static int add_shorthand(ranges *c, char k) {
    ranges t = {0};
    char lower = (char)(k | 0x20);
    int rc = 0;
    if (lower == 'd') rc = add_range(&t, '0', '9');
    if (lower == 'w') rc = add_range(&t, '0', '9') || add_range(&t, 'A', 'Z') || add_range(&t, '_', '_') || add_range(&t, 'a', 'z');
    if (lower == 's') rc = add_range(&t, '\t', '\r') || add_range(&t, ' ', ' ');
    int n = rc ? 0 : ranges_normalise(t.r, t.n, k != lower);
    for (int i = 0; i < n && !rc; i++) rc = add_range(c, t.r[2 * i], t.r[2 * i + 1]);
    free(t.r);
    return rc;
}

static int hex_escape(rx *r, int n, uint32_t *cp) {
    uint32_t v = 0;
    for (int i = 0; i < n; i++, r->p++) {
        char c = *r->p;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0) return rx_fail(r, "bad hex escape");
        v = v * 16 + (uint32_t)d;
    }
    *cp = v;
    return 0;
}

/* After a backslash: a single code point (returns 0), a shorthand class added to c (returns 1), or an
 * error (-1). c NULL: a shorthand is not expected. */
static int parse_escape(rx *r, uint32_t *cp, ranges *c) {
    char e = *r->p++;
    switch (e) {
    case 'd': case 'D': case 'w': case 'W': case 's': case 'S':
        return add_shorthand(c, e) ? kiln_err_set(r->err, "regex: out of memory") : 1;
    case 'n': return *cp = '\n', 0;
    case 't': return *cp = '\t', 0;
    case 'r': return *cp = '\r', 0;
    case 'f': return *cp = '\f', 0;
    case 'v': return *cp = '\v', 0;
    case '0': return *cp = 0, 0;
    case 'x': return hex_escape(r, 2, cp);
    case 'u': return hex_escape(r, 4, cp);
    case 'b': case 'B': r->p--; return rx_fail(r, "word boundaries (\\b) are not supported");
    case 0: r->p--; return rx_fail(r, "trailing backslash");
    default:
        if ((e >= '1' && e <= '9') || e == 'k') return r->p--, rx_fail(r, "backreferences are not supported");
        if ((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z')) return r->p--, rx_fail(r, "unknown escape");
        r->p--;
        return utf8_decode(r->p, strlen(r->p), cp) ? (r->p += utf8_decode(r->p, strlen(r->p), cp), 0)
                                                   : rx_fail(r, "invalid UTF-8");
    }
}

static int next_char(rx *r, uint32_t *cp) {
    int n = utf8_decode(r->p, strlen(r->p), cp);
    if (!n) return rx_fail(r, "invalid UTF-8");
    r->p += n;
    return 0;
}

/* Writes ranges as one GBNF class; in a JSON string, " \ and control characters are left out. */
static int emit_class(rx *r, ranges *c, bool negate) {
    int n = ranges_normalise(c->r, c->n, negate);
    if (r->json) {
        ranges keep = {0};
        static const uint32_t cut[][2] = {{0, 0x1F}, {'"', '"'}, {'\\', '\\'}};
        for (int i = 0; i < n; i++) {
            uint32_t lo = c->r[2 * i], hi = c->r[2 * i + 1];
            for (int k = 0; k < 3 && lo <= hi; k++) {
                if (hi < cut[k][0] || lo > cut[k][1]) continue;
                if (lo < cut[k][0] && add_range(&keep, lo, cut[k][0] - 1)) return kiln_err_set(r->err, "regex: out of memory");
                lo = cut[k][1] + 1;
            }
            if (lo <= hi && add_range(&keep, lo, hi)) return kiln_err_set(r->err, "regex: out of memory");
        }
        free(c->r);
        *c = keep;
        n = c->n;
    }
    if (n == 0) return rx_fail(r, "character class matches nothing");
    int rc = strbuf_putc(r->out, '[');
    for (int i = 0; i < n && !rc; i++)
        rc = strbuf_printf(r->out, "\\U%08X-\\U%08X", c->r[2 * i], c->r[2 * i + 1]);
    return rc || strbuf_putc(r->out, ']') ? kiln_err_set(r->err, "regex: out of memory") : 0;
}

static int parse_class(rx *r) {
    r->p++; /* [ */
    bool negate = *r->p == '^';
    if (negate) r->p++;
    ranges c = {0};
    int rc = 0;
    for (bool first = true; !rc && (*r->p != ']' || first); first = false) {
        uint32_t lo, hi;
        if (!*r->p) {
            rc = rx_fail(r, "unterminated character class");
            break;
        }
        int k = 0;
        if (*r->p == '\\') r->p++, k = parse_escape(r, &lo, &c);
        else k = next_char(r, &lo);
        if (k < 0) rc = -1;
        if (k != 0) continue;
        hi = lo;
        if (r->p[0] == '-' && r->p[1] && r->p[1] != ']') {
            r->p++;
            if (*r->p == '\\') r->p++, k = parse_escape(r, &hi, NULL);
            else k = next_char(r, &hi);
            if (k) rc = k < 0 ? -1 : rx_fail(r, "class shorthand as a range end");
            else if (hi < lo) rc = rx_fail(r, "character range out of order");
        }
        if (!rc && add_range(&c, lo, hi)) rc = kiln_err_set(r->err, "regex: out of memory");
    }
    if (!rc) r->p++; /* ] */
    if (!rc) rc = emit_class(r, &c, negate);
    free(c.r);
    return rc;
}

static int emit_char(rx *r, uint32_t cp) {
    unsigned char u[4];
    int n = utf8_encode(cp, u);
    if (r->json && (cp == '"' || cp == '\\')) {
        char esc[2] = {'\\', (char)cp};
        return gbnf_literal(r->out, esc, 2);
    }
    if (r->json && cp < 0x20) {
        char esc[7];
        snprintf(esc, sizeof esc, "\\u%04X", cp);
        return gbnf_literal(r->out, esc, 6);
    }
    return gbnf_literal(r->out, (const char *)u, (size_t)n);
}

static int parse_alt(rx *r);

static int parse_atom(rx *r) {
    char c = *r->p;
    if (c == '(') {
        r->p++;
        if (r->p[0] == '?') {
            if (r->p[1] == ':') r->p += 2;
            else if (r->p[1] == 'P' && r->p[2] == '<') r->p = strchr(r->p, '>') ? strchr(r->p, '>') + 1 : r->p;
            else if (r->p[1] == '<' && r->p[2] != '=' && r->p[2] != '!') r->p = strchr(r->p, '>') ? strchr(r->p, '>') + 1 : r->p;
            else return rx_fail(r, "lookaround and inline flags ((?...)) are not supported");
        }
        if (++r->depth > 200) return rx_fail(r, "groups nested too deep");
        if (strbuf_puts(r->out, "(") || parse_alt(r)) return -1;
        if (*r->p != ')') return rx_fail(r, "missing ')'");
        r->p++, r->depth--;
        return strbuf_puts(r->out, ")");
    }
    if (c == '[') return parse_class(r);
    if (c == '.') {
        r->p++;
        ranges any = {0};
        int rc = add_range(&any, '\n', '\n') ? kiln_err_set(r->err, "regex: out of memory") : emit_class(r, &any, true);
        free(any.r);
        return rc;
    }
    uint32_t cp;
    if (c == '\\') {
        r->p++;
        ranges sh = {0};
        int k = parse_escape(r, &cp, &sh);
        int rc = k < 0 ? -1 : k == 1 ? emit_class(r, &sh, false) : emit_char(r, cp);
        free(sh.r);
        return rc;
    }
    if (c == '*' || c == '+' || c == '?' || c == '{') return rx_fail(r, "quantifier without an item before it");
    if (c == '^' || c == '$') return rx_fail(r, "anchors are only supported at the very start and end");
    return next_char(r, &cp) || emit_char(r, cp);
}

/* {m}, {m,}, {m,n} at r->p: 1 and written to the output, 0 when it is not a quantifier (a literal {). */
static int parse_braces(rx *r) {
    const char *q = r->p + 1;
    long m = 0, n = -1;
    if (*q < '0' || *q > '9') return 0;
    while (*q >= '0' && *q <= '9') m = m * 10 + (*q++ - '0');
    if (*q == ',') {
        q++;
        if (*q >= '0' && *q <= '9')
            for (n = 0; *q >= '0' && *q <= '9';) n = n * 10 + (*q++ - '0');
    } else {
        n = m;
    }
    if (*q != '}') return 0;
    if (m > 10000 || n > 10000) return rx_fail(r, "repetition count above 10000");
    if (n >= 0 && n < m) return rx_fail(r, "repetition {m,n} with n < m");
    r->p = q + 1;
    int rc = n < 0 ? strbuf_printf(r->out, "{%ld,}", m) : strbuf_printf(r->out, "{%ld,%ld}", m, n);
    return rc ? -1 : 1;
}

static int parse_concat(rx *r) {
    for (;;) {
        char c = *r->p;
        if (!c || c == '|' || c == ')') return 0;
        if (c == '$' && r->depth == 0 && r->p[1] == 0) return r->p++, 0;
        if (strbuf_putc(r->out, ' ') || parse_atom(r)) return -1;
        for (;;) { /* quantifiers (stacked ones like a*? are a lazy form) */
            c = *r->p;
            int k = 0;
            if (c == '*' || c == '+' || c == '?') k = strbuf_putc(r->out, c) ? -1 : 1, r->p++;
            else if (c == '{') k = parse_braces(r);
            if (k < 0) return -1;
            if (k == 0) break;
            if (*r->p == '?') r->p++; /* lazy: same language */
            else if (*r->p == '+') return rx_fail(r, "possessive quantifiers are not supported");
            if (*r->p == '*' || *r->p == '+' || *r->p == '?' || (*r->p == '{' && r->p[1] >= '0' && r->p[1] <= '9'))
                return rx_fail(r, "nested quantifier");
        }
    }
}

static int parse_alt(rx *r) {
    if (parse_concat(r)) return -1;
    while (*r->p == '|') {
        r->p++;
        if (strbuf_puts(r->out, " |") || parse_concat(r)) return -1;
    }
    return 0;
}

int regex_to_gbnf(const char *re, bool in_json_string, strbuf *out, kiln_err *err) {
    rx r = {re, re, in_json_string, out, err, 0};
    if (*r.p == '^') r.p++;
    if (strbuf_puts(out, "(")) return kiln_err_set(err, "regex: out of memory");
    if (parse_alt(&r)) return -1;
    if (*r.p == ')') return rx_fail(&r, "unmatched ')'");
    return strbuf_puts(out, " )") ? kiln_err_set(err, "regex: out of memory") : 0;
}

/* GBNF text → grammar, freeing the text; the parser's error is prefixed with what it came from. */
kiln_grammar *gbnf_compile_buf(strbuf *s, const char *what, kiln_err *err) {
    kiln_err e = {{0}};
    kiln_grammar *g = s->p ? kiln_grammar_from_gbnf(s->p, &e) : NULL;
    if (!g) kiln_err_set(err, "%s: %s", what, s->p ? e.msg : "out of memory");
    strbuf_free(s);
    return g;
}

kiln_grammar *kiln_grammar_from_regex(const char *re, kiln_err *err) {
    strbuf s = {0};
    kiln_err e = {{0}};
    if (strbuf_puts(&s, "root ::= ") || regex_to_gbnf(re, false, &s, &e) || strbuf_putc(&s, '\n')) {
        strbuf_free(&s);
        return kiln_err_set(err, "%s", e.msg[0] ? e.msg : "regex: out of memory"), NULL;
    }
    return gbnf_compile_buf(&s, "regex", err);
}

kiln_grammar *kiln_grammar_from_choice(const char *const *choices, int n, kiln_err *err) {
    if (n <= 0) return kiln_err_set(err, "choice: the list is empty"), NULL;
    strbuf s = {0};
    int rc = strbuf_puts(&s, "root ::=");
    for (int i = 0; i < n && !rc; i++)
        rc = strbuf_puts(&s, i ? " | " : " ") || gbnf_literal(&s, choices[i], strlen(choices[i]));
    if (rc || strbuf_putc(&s, '\n')) {
        strbuf_free(&s);
        return kiln_err_set(err, "choice: out of memory"), NULL;
    }
    return gbnf_compile_buf(&s, "choice", err);
}

