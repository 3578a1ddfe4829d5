/* parser.c — tokens → AST by recursive descent, with jinja2's operator precedence:
 *   cond (x if c else y) < or < and < not < compare/in < + - < ~ < * / // % < ** < unary - +
 *   < primary with postfix (.attr [idx] (call)) and filters/tests (| f, is t), which bind tightest. */
#include <stdio.h>
#include <string.h>

#include "template/ast.h"

typedef struct parser {
    jctx *c;
    jtok *t;
    size_t i, n;
} parser;

static jtok *peek(parser *P) { return &P->t[P->i]; }
static jtok *next(parser *P) { return &P->t[P->i < P->n - 1 ? P->i++ : P->i]; }

static bool is_op(const jtok *t, const char *op) {
    return t->t == T_OP && t->n == strlen(op) && memcmp(t->s, op, t->n) == 0;
}
static bool is_name(const jtok *t, const char *nm) {
    return t->t == T_NAME && t->n == strlen(nm) && memcmp(t->s, nm, t->n) == 0;
}

static _Noreturn void fail_at(parser *P, const jtok *t, const char *what) {
    const char *desc = t->t == T_EOF ? "end of template" : t->t == T_BLOCK_END ? "end of tag" : NULL;
    if (desc) j_fail(P->c, t->line, t->col, "%s, got %s", what, desc);
    j_fail(P->c, t->line, t->col, "%s, got '%.*s'", what, (int)(t->n > 40 ? 40 : t->n), t->s);
}

static void expect_op(parser *P, const char *op) {
    if (!is_op(peek(P), op)) {
        char what[32];
        snprintf(what, sizeof what, "expected '%s'", op);
        fail_at(P, peek(P), what);
    }
    next(P);
}

static const char *tok_name(parser *P, const jtok *t) {
    char *s = j_alloc(P->c, t->n + 1);
    memcpy(s, t->s, t->n);
    return s;
}

static const char *expect_name(parser *P) {
    if (peek(P)->t != T_NAME) fail_at(P, peek(P), "expected a name");
    return tok_name(P, next(P));
}

static jnode *node(parser *P, nkind k, const jtok *at) {
    jnode *n = j_alloc(P->c, sizeof *n);
    n->k = k;
    n->line = at->line;
    n->col = at->col;
    return n;
}

static void add_kid(parser *P, jnode *n, jnode *kid, const char *kw) {
    /* grow by doubling in the arena */
    if ((n->n & (n->n - 1)) == 0) {
        size_t cap = n->n ? 2 * n->n : 1;
        jnode **nk = j_alloc(P->c, cap * sizeof *nk);
        const char **nw = j_alloc(P->c, cap * sizeof *nw);
        if (n->n) {
            memcpy(nk, n->kids, n->n * sizeof *nk);
            memcpy(nw, n->kw, n->n * sizeof *nw);
        }
        n->kids = nk;
        n->kw = nw;
    }
    n->kids[n->n] = kid;
    n->kw[n->n++] = kw;
}

/* The depth guard, with the error placed at the token where nesting went too deep. */
static void enter(parser *P, const jtok *t) {
    P->c->line = t->line, P->c->col = t->col;
    j_enter(P->c);
}

static jnode *parse_expr(parser *P);
static jnode *parse_or(parser *P);
static jnode *parse_unary(parser *P, bool with_filter);

/* (args) with positional and keyword arguments; P is at '('. */
static void parse_args(parser *P, jnode *n) {
    expect_op(P, "(");
    while (!is_op(peek(P), ")")) {
        if (n->n) expect_op(P, ",");
        if (is_op(peek(P), ")")) break; /* trailing comma */
        const char *kw = NULL;
        if (peek(P)->t == T_NAME && is_op(&P->t[P->i + 1], "=")) {
            kw = tok_name(P, next(P));
            next(P);
        }
        add_kid(P, n, parse_expr(P), kw);
    }
    next(P);
}

static jnode *parse_primary(parser *P) {
    jtok *t = next(P);
    jnode *n;
    switch (t->t) {
    case T_NAME:
        if (is_name(t, "true") || is_name(t, "True") || is_name(t, "false") || is_name(t, "False")) {
            n = node(P, E_CONST, t);
            n->val = jv_bool(t->s[0] == 't' || t->s[0] == 'T');
        } else if (is_name(t, "none") || is_name(t, "None")) {
            n = node(P, E_CONST, t);
            n->val = jv_none();
        } else {
            n = node(P, E_NAME, t);
            n->name = tok_name(P, t);
        }
        return n;
    case T_STRING: {
        n = node(P, E_CONST, t);
        jstr *s = t->str;
        while (peek(P)->t == T_STRING) s = js_cat(P->c, s, next(P)->str); /* "a" "b" */
        n->val = (jval){.t = V_STR, .s = s};
        return n;
    }
    case T_INT:
        n = node(P, E_CONST, t);
        n->val = jv_int(t->iv);
        return n;
    case T_FLOAT:
        n = node(P, E_CONST, t);
        n->val = (jval){.t = V_FLOAT, .f = t->fv};
        return n;
    case T_OP:
        if (is_op(t, "(")) {
            if (is_op(peek(P), ")")) {
                next(P);
                return node(P, E_TUPLE, t);
            }
            jnode *e = parse_expr(P);
            if (is_op(peek(P), ",")) {
                n = node(P, E_TUPLE, t);
                add_kid(P, n, e, NULL);
                while (is_op(peek(P), ",")) {
                    next(P);
                    if (is_op(peek(P), ")")) break;
                    add_kid(P, n, parse_expr(P), NULL);
                }
                e = n;
            }
            expect_op(P, ")");
            return e;
        }
        if (is_op(t, "[")) {
            n = node(P, E_LIST, t);
            while (!is_op(peek(P), "]")) {
                if (n->n) expect_op(P, ",");
                if (is_op(peek(P), "]")) break;
                add_kid(P, n, parse_expr(P), NULL);
            }
            next(P);
            return n;
        }
        if (is_op(t, "{")) {
            n = node(P, E_DICT, t);
            while (!is_op(peek(P), "}")) {
                if (n->n) expect_op(P, ",");
                if (is_op(peek(P), "}")) break;
                add_kid(P, n, parse_expr(P), NULL);
                expect_op(P, ":");
                add_kid(P, n, parse_expr(P), NULL);
            }
            next(P);
            return n;
        }
        /* fallthrough */
    default: P->i--; fail_at(P, t, "expected an expression");
    }
}

static jnode *parse_postfix(parser *P, jnode *n) {
    for (;;) {
        jtok *t = peek(P);
        if (is_op(t, ".")) {
            next(P);
            jnode *a = node(P, E_ATTR, t);
            a->a = n;
            if (peek(P)->t == T_INT) { /* x.0 is x[0] */
                a->k = E_ITEM;
                a->b = node(P, E_CONST, peek(P));
                a->b->val = jv_int(next(P)->iv);
            } else a->name = expect_name(P);
            n = a;
        } else if (is_op(t, "[")) {
            next(P);
            jnode *lo = NULL, *hi = NULL, *st = NULL;
            bool slice = false;
            if (!is_op(peek(P), ":")) lo = parse_expr(P);
            if (is_op(peek(P), ":")) {
                slice = true;
                next(P);
                if (!is_op(peek(P), ":") && !is_op(peek(P), "]")) hi = parse_expr(P);
                if (is_op(peek(P), ":")) {
                    next(P);
                    if (!is_op(peek(P), "]")) st = parse_expr(P);
                }
            }
            expect_op(P, "]");
            jnode *s = node(P, slice ? E_SLICE : E_ITEM, t);
            s->a = n;
            s->b = lo;
            s->c = hi;
            s->d = st;
            n = s;
        } else if (is_op(t, "(")) {
            jnode *call = node(P, E_CALL, t);
            call->a = n;
            parse_args(P, call);
            n = call;
        } else return n;
    }
}

/* Can the token start a test's single bare argument (`is divisibleby 3`, `is sameas none`)? */
static bool starts_test_arg(const jtok *t) {
    if (t->t == T_STRING || t->t == T_INT || t->t == T_FLOAT) return true;
    if (t->t == T_NAME)
        return !is_name(t, "else") && !is_name(t, "or") && !is_name(t, "and") && !is_name(t, "if") &&
               !is_name(t, "is") && !is_name(t, "in") && !is_name(t, "not");
    return is_op(t, "[") || is_op(t, "{");
}

static jnode *parse_filters(parser *P, jnode *n) {
    for (;;) {
        jtok *t = peek(P);
        if (is_op(t, "|")) {
            next(P);
            jnode *f = node(P, E_FILTER, peek(P));
            f->a = n;
            f->name = expect_name(P);
            if (is_op(peek(P), "(")) parse_args(P, f);
            n = f;
        } else if (is_name(t, "is")) {
            next(P);
            jnode *f = node(P, E_TEST, peek(P));
            f->a = n;
            if (is_name(peek(P), "not")) {
                next(P);
                f->negate = true;
            }
            jtok *nt = peek(P);
            if (is_name(nt, "none") || is_name(nt, "true") || is_name(nt, "false") || is_name(nt, "None") ||
                is_name(nt, "True") || is_name(nt, "False")) {
                next(P);
                char *lower = j_alloc(P->c, nt->n + 1);
                for (size_t i = 0; i < nt->n; i++) lower[i] = (char)(nt->s[i] | 0x20);
                f->name = lower;
            } else f->name = expect_name(P);
            if (is_op(peek(P), "(")) parse_args(P, f);
            else if (starts_test_arg(peek(P))) add_kid(P, f, parse_postfix(P, parse_primary(P)), NULL);
            n = f;
        } else return n;
    }
}

static jnode *parse_unary(parser *P, bool with_filter) {
    jtok *t = peek(P);
    jnode *n;
    enter(P, t);
    if (is_op(t, "-") || is_op(t, "+")) {
        next(P);
        n = node(P, is_op(t, "-") ? E_NEG : E_POS, t);
        n->a = parse_unary(P, false);
    } else n = parse_postfix(P, parse_primary(P));
    j_leave(P->c);
    return with_filter ? parse_filters(P, n) : n;
}

static jnode *binop(parser *P, const jtok *t, const char *op, jnode *a, jnode *b) {
    jnode *n = node(P, E_BIN, t);
    snprintf(n->op, sizeof n->op, "%s", op);
    n->a = a;
    n->b = b;
    return n;
}

static jnode *parse_pow(parser *P) {
    jnode *n = parse_unary(P, true);
    while (is_op(peek(P), "**")) {
        jtok *t = next(P);
        n = binop(P, t, "**", n, parse_unary(P, true));
    }
    return n;
}

static jnode *parse_math2(parser *P) {
    jnode *n = parse_pow(P);
    for (;;) {
        jtok *t = peek(P);
        if (is_op(t, "*") || is_op(t, "/") || is_op(t, "//") || is_op(t, "%")) {
            next(P);
            char op[3] = {0};
            memcpy(op, t->s, t->n);
            n = binop(P, t, op, n, parse_pow(P));
        } else return n;
    }
}

static jnode *parse_concat(parser *P) {
    jnode *n = parse_math2(P);
    while (is_op(peek(P), "~")) {
        jtok *t = next(P);
        n = binop(P, t, "~", n, parse_math2(P));
    }
    return n;
}

static jnode *parse_math1(parser *P) {
    jnode *n = parse_concat(P);
    for (;;) {
        jtok *t = peek(P);
        if (is_op(t, "+") || is_op(t, "-")) {
            next(P);
            n = binop(P, t, is_op(t, "+") ? "+" : "-", n, parse_concat(P));
        } else return n;
    }
}

static jnode *parse_compare(parser *P) {
    jnode *n = parse_math1(P);
    for (;;) {
        jtok *t = peek(P);
        static const char *ops[] = {"==", "!=", "<", ">", "<=", ">="};
        bool matched = false;
        for (size_t i = 0; i < 6 && !matched; i++)
            if (is_op(t, ops[i])) {
                next(P);
                n = binop(P, t, ops[i], n, parse_math1(P));
                matched = true;
            }
        if (matched) continue;
        if (is_name(t, "in")) {
            next(P);
            n = binop(P, t, "in", n, parse_math1(P));
        } else if (is_name(t, "not") && is_name(&P->t[P->i + 1], "in")) {
            next(P);
            next(P);
            n = binop(P, t, "in", n, parse_math1(P));
            n->negate = true;
        } else return n;
    }
}

static jnode *parse_not(parser *P) {
    if (!is_name(peek(P), "not")) return parse_compare(P);
    enter(P, peek(P));
    jnode *n = node(P, E_NOT, next(P));
    n->a = parse_not(P);
    j_leave(P->c);
    return n;
}

static jnode *parse_and(parser *P) {
    jnode *n = parse_not(P);
    while (is_name(peek(P), "and")) {
        jnode *a = node(P, E_AND, next(P));
        a->a = n;
        a->b = parse_not(P);
        n = a;
    }
    return n;
}

static jnode *parse_or(parser *P) {
    jnode *n = parse_and(P);
    while (is_name(peek(P), "or")) {
        jnode *o = node(P, E_OR, next(P));
        o->a = n;
        o->b = parse_and(P);
        n = o;
    }
    return n;
}

/* Every nested expression passes here (parentheses, brackets, arguments, conditionals). */
static jnode *parse_expr(parser *P) {
    enter(P, peek(P));
    jnode *n = parse_or(P);
    while (is_name(peek(P), "if")) {
        jnode *c = node(P, E_COND, next(P));
        c->b = n;
        c->a = parse_or(P);
        if (is_name(peek(P), "else")) {
            next(P);
            c->c = parse_expr(P);
        }
        n = c;
    }
    j_leave(P->c);
    return n;
}

/* An expression, or a bare tuple `a, b` where a statement allows one. */
static jnode *parse_tuple_expr(parser *P) {
    jnode *e = parse_expr(P);
    if (!is_op(peek(P), ",")) return e;
    jnode *t = node(P, E_TUPLE, peek(P));
    add_kid(P, t, e, NULL);
    while (is_op(peek(P), ",")) {
        next(P);
        add_kid(P, t, parse_expr(P), NULL);
    }
    return t;
}

static void expect_block_end(parser *P) {
    if (peek(P)->t != T_BLOCK_END) fail_at(P, peek(P), "expected end of tag '%}'");
    next(P);
}

/* Target list of for/set: name or name, name, ... */
static void parse_targets(parser *P, jnode *n) {
    const char *names[16];
    size_t k = 0;
    bool paren = is_op(peek(P), "(");
    if (paren) next(P);
    do {
        if (k && is_op(peek(P), ",")) next(P);
        if (k == 16) fail_at(P, peek(P), "too many assignment targets");
        names[k++] = expect_name(P);
    } while (is_op(peek(P), ","));
    if (paren) expect_op(P, ")");
    n->targets = j_alloc(P->c, k * sizeof *n->targets);
    memcpy(n->targets, names, k * sizeof *names);
    n->n_targets = k;
}

static jnode *parse_body(parser *P, const char *const *ends, const char **which);
static jnode *parse_body_at(parser *P, const char *const *ends, const char **which);

/* if / elif... / else: an elif chain is built in a loop (each elif the c of the one before), so its length
 * costs no stack here or in the evaluator. */
static jnode *parse_if(parser *P, const jtok *at) {
    static const char *const ends[] = {"elif", "else", "endif", NULL}, *const end[] = {"endif", NULL};
    jnode *first = NULL, **link = &first;
    const char *which;
    for (;;) {
        jnode *n = *link = node(P, N_IF, at);
        n->a = parse_tuple_expr(P);
        expect_block_end(P);
        n->b = parse_body(P, ends, &which);
        if (strcmp(which, "elif")) {
            if (!strcmp(which, "else")) {
                expect_block_end(P);
                n->c = parse_body(P, end, &which);
            }
            expect_block_end(P);
            return first;
        }
        at = &P->t[P->i - 1];
        link = &n->c;
    }
}

static jnode *parse_statement(parser *P) {
    jtok *open = next(P); /* {% */
    jtok *kw = peek(P);
    if (kw->t != T_NAME) fail_at(P, kw, "expected a statement name");
    next(P);
    const char *which;
    if (is_name(kw, "if")) return parse_if(P, kw);
    if (is_name(kw, "for")) {
        jnode *n = node(P, N_FOR, kw);
        parse_targets(P, n);
        if (!is_name(peek(P), "in")) fail_at(P, peek(P), "expected 'in'");
        next(P);
        n->a = parse_or(P); /* `if` here starts the loop filter, not a ternary */
        if (is_name(peek(P), "if")) {
            next(P);
            n->d = parse_expr(P);
        }
        if (is_name(peek(P), "recursive")) fail_at(P, peek(P), "recursive loops are not supported");
        expect_block_end(P);
        static const char *const ends[] = {"else", "endfor", NULL};
        n->b = parse_body(P, ends, &which);
        if (!strcmp(which, "else")) {
            expect_block_end(P);
            static const char *const end[] = {"endfor", NULL};
            n->c = parse_body(P, end, &which);
        }
        expect_block_end(P);
        return n;
    }
    if (is_name(kw, "set")) {
        jnode *n = node(P, N_SET, kw);
        if (peek(P)->t == T_NAME && is_op(&P->t[P->i + 1], ".")) { /* set ns.attr = ... */
            jnode *tgt = node(P, E_ATTR, peek(P));
            tgt->a = node(P, E_NAME, peek(P));
            tgt->a->name = expect_name(P);
            next(P);
            tgt->name = expect_name(P);
            n->a = tgt;
        } else parse_targets(P, n);
        if (peek(P)->t == T_BLOCK_END && !n->a && n->n_targets == 1) { /* block set */
            next(P);
            n->k = N_SETBLOCK;
            static const char *const end[] = {"endset", NULL};
            n->b = parse_body(P, end, &which);
            expect_block_end(P);
            return n;
        }
        expect_op(P, "=");
        n->b = parse_tuple_expr(P);
        expect_block_end(P);
        return n;
    }
    if (is_name(kw, "macro")) {
        jnode *n = node(P, N_MACRO, kw);
        n->name = expect_name(P);
        expect_op(P, "(");
        while (!is_op(peek(P), ")")) {
            if (n->n) expect_op(P, ",");
            const char *param = expect_name(P);
            jnode *def = NULL;
            if (is_op(peek(P), "=")) {
                next(P);
                def = parse_expr(P);
            }
            add_kid(P, n, def, param);
        }
        next(P);
        expect_block_end(P);
        static const char *const end[] = {"endmacro", NULL};
        n->b = parse_body(P, end, &which);
        expect_block_end(P);
        return n;
    }
    if (is_name(kw, "call")) {
        jnode *n = node(P, N_CALLBLOCK, kw);
        if (is_op(peek(P), "(")) fail_at(P, peek(P), "call blocks with caller arguments are not supported");
        n->a = parse_expr(P);
        if (n->a->k != E_CALL) fail_at(P, kw, "expected a macro call after 'call'");
        expect_block_end(P);
        static const char *const end[] = {"endcall", NULL};
        n->b = parse_body(P, end, &which);
        expect_block_end(P);
        return n;
    }
    if (is_name(kw, "filter")) {
        jnode *n = node(P, N_FILTERBLOCK, kw);
        jnode *f = node(P, E_FILTER, peek(P));
        f->name = expect_name(P);
        if (is_op(peek(P), "(")) parse_args(P, f);
        n->a = parse_filters(P, f);
        expect_block_end(P);
        static const char *const end[] = {"endfilter", NULL};
        n->b = parse_body(P, end, &which);
        expect_block_end(P);
        return n;
    }
    if (is_name(kw, "generation")) { /* transformers' AssistantTracker: renders its body as is */
        expect_block_end(P);
        static const char *const end[] = {"endgeneration", NULL};
        jnode *body = parse_body(P, end, &which);
        expect_block_end(P);
        return body;
    }
    if (is_name(kw, "break") || is_name(kw, "continue")) {
        jnode *n = node(P, is_name(kw, "break") ? N_BREAK : N_CONTINUE, kw);
        expect_block_end(P);
        return n;
    }
    if (is_name(kw, "do")) {
        jnode *n = node(P, N_DO, kw);
        n->a = parse_tuple_expr(P);
        expect_block_end(P);
        return n;
    }
    (void)open;
    j_fail(P->c, kw->line, kw->col, "unsupported statement '%.*s'", (int)kw->n, kw->s);
}

/* Statements until a block tag whose name is in ends (NULL: until end of template). Leaves P just after
 * that tag's name and sets *which to it. */
static jnode *parse_body(parser *P, const char *const *ends, const char **which) {
    enter(P, peek(P)); /* statements nested in statements */
    jnode *body = parse_body_at(P, ends, which);
    j_leave(P->c);
    return body;
}
static jnode *parse_body_at(parser *P, const char *const *ends, const char **which) {
    jnode *body = node(P, N_BODY, peek(P));
    for (;;) {
        jtok *t = peek(P);
        if (t->t == T_EOF) {
            if (!ends) return body;
            size_t last = 0;
            while (ends[last + 1]) last++;
            j_fail(P->c, t->line, t->col, "unexpected end of template: missing {%% %s %%}", ends[last]);
        }
        if (t->t == T_TEXT) {
            next(P);
            if (!t->n) continue;
            jnode *n = node(P, N_TEXT, t);
            n->val = jv_str(P->c, t->s, t->n);
            add_kid(P, body, n, NULL);
        } else if (t->t == T_VAR_BEGIN) {
            next(P);
            jnode *n = node(P, N_OUT, peek(P));
            n->a = parse_tuple_expr(P);
            if (peek(P)->t != T_VAR_END) fail_at(P, peek(P), "expected end of print statement '}}'");
            next(P);
            add_kid(P, body, n, NULL);
        } else if (t->t == T_BLOCK_BEGIN) {
            jtok *kw = &P->t[P->i + 1];
            for (size_t e = 0; ends && ends[e]; e++)
                if (is_name(kw, ends[e])) {
                    P->i += 2;
                    *which = ends[e];
                    return body;
                }
            static const char *const closers[] = {"endif", "endfor", "endmacro", "endset", "endcall", "endfilter",
                                                  "endgeneration", "elif", "else", "endraw", NULL};
            for (size_t e = 0; closers[e]; e++)
                if (is_name(kw, closers[e]))
                    j_fail(P->c, kw->line, kw->col, "unexpected '%s'%s%s", closers[e], ends ? ", expected " : "",
                           ends ? ends[0] : "");
            add_kid(P, body, parse_statement(P), NULL);
        } else fail_at(P, t, "unexpected token");
    }
}

jnode *j_parse(jctx *c, jtok *toks, size_t n) {
    parser P = {.c = c, .t = toks, .n = n};
    return parse_body(&P, NULL, NULL);
}
