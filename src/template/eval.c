/* eval.c — walks the AST with Python jinja2 semantics: scoping (for loops and macros get their own frame,
 * so `set` inside a loop does not leak out; namespace() objects carry state across), Undefined that prints
 * as "" and iterates as empty but fails on attribute access or arithmetic, Python operators. */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "template/ast.h"
#include "template/eval.h"

struct jmacro {
    jnode *def;      /* N_MACRO (or N_CALLBLOCK for `caller`) */
    jframe *closure; /* frame where it was defined */
};

static jval lookup(ev *E, const char *name) {
    for (jframe *f = E->f; f; f = f->parent) {
        jval *v = jd_get(E->c, f->vars, name, strlen(name));
        if (v) return *v;
    }
    const struct jglobal *g = ev_global_find(name);
    return g ? (jval){.t = V_FUNC, .fn = g} : jv_undef(name);
}

static void assign(ev *E, const char *name, jval v) {
    jval *old = jd_get(E->c, E->f->vars, name, strlen(name)); /* a loop variable: no new key per iteration */
    if (old) *old = v;
    else jd_set(E->c, E->f->vars, jv_cstr(E->c, name), v);
}

static jframe *frame_new(ev *E, jframe *parent) {
    jframe *f = j_alloc(E->c, sizeof *f);
    f->vars = jd_new(E->c);
    f->parent = parent;
    return f;
}

_Noreturn void ev_undefined_error(ev *E, jnode *at, jval u) {
    if (u.uname) j_fail(E->c, at->line, at->col, "'%s' is undefined", u.uname);
    j_fail(E->c, at->line, at->col, "undefined value");
}

/* ---- attribute and item access (jinja2's getattr / getitem) ---- */
static jval bound_method(ev *E, jval obj, const struct jbuiltin_method *def) {
    jmethod *m = j_alloc(E->c, sizeof *m);
    m->self = obj;
    m->def = def;
    return (jval){.t = V_METHOD, .bm = m};
}

jval ev_getattr(ev *E, jnode *at, jval obj, const char *name) {
    if (obj.t == V_UNDEF) ev_undefined_error(E, at, obj);
    const struct jbuiltin_method *method = ev_method_find(obj, name);
    if (method) return bound_method(E, obj, method);
    if (obj.t == V_DICT) {
        jval *v = jd_get(E->c, obj.d, name, strlen(name));
        return v ? *v : jv_undef(name);
    }
    if (obj.t == V_LOOP) {
        jloop *l = obj.lp;
        long long n = (long long)l->items->n, i = (long long)l->i;
        if (!strcmp(name, "index")) return jv_int(i + 1);
        if (!strcmp(name, "index0")) return jv_int(i);
        if (!strcmp(name, "revindex")) return jv_int(n - i);
        if (!strcmp(name, "revindex0")) return jv_int(n - i - 1);
        if (!strcmp(name, "first")) return jv_bool(i == 0);
        if (!strcmp(name, "last")) return jv_bool(i == n - 1);
        if (!strcmp(name, "length")) return jv_int(n);
        if (!strcmp(name, "depth")) return jv_int(1);
        if (!strcmp(name, "depth0")) return jv_int(0);
        if (!strcmp(name, "previtem")) return i > 0 ? l->items->v[i - 1] : jv_undef("previtem");
        if (!strcmp(name, "nextitem")) return i + 1 < n ? l->items->v[i + 1] : jv_undef("nextitem");
    }
    return jv_undef(name);
}

/* Python index semantics: negative counts from the end; out of range → -1. */
static long long py_index(long long i, size_t n) {
    if (i < 0) i += (long long)n;
    return i < 0 || i >= (long long)n ? -1 : i;
}

jval ev_getitem(ev *E, jnode *at, jval obj, jval key) {
    if (obj.t == V_UNDEF) ev_undefined_error(E, at, obj);
    if (obj.t == V_DICT) {
        jval *v = jd_find_key(E->c, obj.d, key);
        if (v) return *v;
    } else if ((obj.t == V_LIST || obj.t == V_STR) && (key.t == V_INT || key.t == V_BOOL)) {
        long long k = key.t == V_INT ? key.i : key.b;
        if (obj.t == V_LIST) {
            long long i = py_index(k, obj.l->n);
            if (i >= 0) return obj.l->v[i];
        } else {
            const jstr *s = obj.s;
            long long i = py_index(k, ju_len(E->c, s->s, s->n));
            if (i >= 0) {
                size_t a = ju_offset(E->c, s->s, s->n, (size_t)i), b = ju_offset(E->c, s->s, s->n, (size_t)i + 1);
                return jv_str(E->c, s->s + a, b - a);
            }
        }
    } else if (obj.t == V_LOOP && key.t == V_STR) return ev_getattr(E, at, obj, key.s->s);
    if (key.t == V_STR && ev_method_find(obj, key.s->s)) return ev_getattr(E, at, obj, key.s->s);
    return key.t == V_STR ? jv_undef(key.s->s) : jv_undef(NULL);
}

static long long slice_int(ev *E, jnode *n, jval v, long long dflt) {
    if (!n || v.t == V_NONE) return dflt;
    if (v.t == V_INT) return v.i;
    if (v.t == V_BOOL) return v.b;
    j_fail(E->c, n->line, n->col, "slice indices must be integers or None");
}

static jval slice(ev *E, jnode *n, jval obj) {
    jval lo = n->b ? ev_expr(E, n->b) : jv_none(), hi = n->c ? ev_expr(E, n->c) : jv_none(),
         st = n->d ? ev_expr(E, n->d) : jv_none();
    if (obj.t == V_UNDEF) ev_undefined_error(E, n, obj);
    long long step = slice_int(E, n->d, st, 1);
    if (step == 0) j_fail(E->c, n->line, n->col, "slice step cannot be zero");
    size_t len;
    if (obj.t == V_LIST) len = obj.l->n;
    else if (obj.t == V_STR) len = ju_len(E->c, obj.s->s, obj.s->n);
    else j_fail(E->c, n->line, n->col, "'%s' object is not subscriptable", jv_typename(obj));
    long long L = (long long)len;
    if (step > L) step = L + 1; /* the same items as the step asked, and i += step cannot overflow */
    if (step < -L) step = -L - 1;
    long long a = slice_int(E, n->b, lo, step > 0 ? 0 : L - 1), b = slice_int(E, n->c, hi, step > 0 ? L : -L - 1);
    /* clamp as Python's PySlice_AdjustIndices */
    if (a < 0) a += L;
    if (b < 0) b += L;
    if (step > 0) {
        a = a < 0 ? 0 : a > L ? L : a;
        b = b < 0 ? 0 : b > L ? L : b;
    } else {
        a = a < 0 ? -1 : a >= L ? L - 1 : a;
        b = b < -1 ? -1 : b >= L ? L - 1 : b;
    }
    if (obj.t == V_STR && step == 1) {
        if (b < a) b = a;
        size_t x = ju_offset(E->c, obj.s->s, obj.s->n, (size_t)a), y = ju_offset(E->c, obj.s->s, obj.s->n, (size_t)b);
        return jv_str(E->c, obj.s->s + x, y - x);
    }
    jlist *out = jl_new(E->c, 4);
    jbuf *sb = obj.t == V_STR ? jb_open(E->c) : NULL;
    size_t *offs = NULL;
    if (obj.t == V_STR) { /* code point offsets, in one pass */
        offs = j_alloc(E->c, (len + 1) * sizeof *offs);
        size_t k = 0;
        for (size_t i = 0; i < obj.s->n; i++)
            if (((unsigned char)obj.s->s[i] & 0xC0) != 0x80) offs[k++] = i;
        offs[len] = obj.s->n;
    }
    for (long long i = a; step > 0 ? i < b : i > b; i += step) {
        if (obj.t == V_LIST) jl_push(E->c, out, obj.l->v[i]);
        else jb_put(sb, obj.s->s + offs[i], offs[i + 1] - offs[i]);
    }
    if (obj.t == V_LIST) return (jval){.t = V_LIST, .l = out};
    return jb_val(sb);
}

/* ---- iteration: lists as is, dicts by key, strings by character, Undefined as empty ---- */
jlist *ev_iterable(ev *E, jnode *at, jval v) {
    if (v.t == V_LIST) return v.l;
    jlist *l = jl_new(E->c, 4);
    if (v.t == V_UNDEF) return l;
    if (v.t == V_DICT) {
        for (size_t i = 0; i < v.d->n; i++) jl_push(E->c, l, v.d->k[i]);
        return l;
    }
    if (v.t == V_STR) {
        size_t n = v.s->n;
        for (size_t i = 0; i < n;) {
            size_t j = i + 1;
            while (j < n && ((unsigned char)v.s->s[j] & 0xC0) == 0x80) j++;
            jl_push(E->c, l, jv_str(E->c, v.s->s + i, j - i));
            i = j;
        }
        return l;
    }
    j_fail(E->c, at->line, at->col, "'%s' object is not iterable", jv_typename(v));
}

/* ---- operators ---- */
static bool is_num(jval v) { return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL; }
static double num(jval v) { return v.t == V_FLOAT ? v.f : v.t == V_INT ? (double)v.i : (double)v.b; }
static long long inum(jval v) { return v.t == V_INT ? v.i : v.t == V_BOOL ? v.b : 0; }

static _Noreturn void bad_operands(ev *E, jnode *n, jval a, jval b) {
    if (a.t == V_UNDEF) ev_undefined_error(E, n, a);
    if (b.t == V_UNDEF) ev_undefined_error(E, n, b);
    j_fail(E->c, n->line, n->col, "unsupported operand type(s) for %s: '%s' and '%s'", n->op, jv_typename(a),
           jv_typename(b));
}

static int compare(ev *E, jnode *n, jval a, jval b) {
    if (is_num(a) && is_num(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT) return (inum(a) > inum(b)) - (inum(a) < inum(b));
        return (num(a) > num(b)) - (num(a) < num(b));
    }
    if (a.t == V_STR && b.t == V_STR) {
        size_t m = a.s->n < b.s->n ? a.s->n : b.s->n;
        j_work(E->c, m);
        int r = memcmp(a.s->s, b.s->s, m);
        return r ? (r > 0) - (r < 0) : (a.s->n > b.s->n) - (a.s->n < b.s->n);
    }
    bad_operands(E, n, a, b);
}

bool ev_contains(ev *E, jnode *n, jval hay, jval needle) {
    switch (hay.t) {
    case V_UNDEF: return false;
    case V_STR:
        if (needle.t != V_STR)
            j_fail(E->c, n->line, n->col, "'in <string>' requires string as left operand, not %s",
                   jv_typename(needle));
        j_work(E->c, hay.s->n);
        return needle.s->n == 0 || memmem(hay.s->s, hay.s->n, needle.s->s, needle.s->n) != NULL;
    case V_LIST:
        for (size_t i = 0; i < hay.l->n; i++) {
            j_step(E->c);
            if (jv_equal(E->c, hay.l->v[i], needle)) return true;
        }
        return false;
    case V_DICT: return jd_find_key(E->c, hay.d, needle) != NULL;
    default: j_fail(E->c, n->line, n->col, "argument of type '%s' is not iterable", jv_typename(hay));
    }
}

static _Noreturn void overflow(ev *E, jnode *n, const char *op) {
    j_fail(E->c, n->line, n->col, "integer overflow in '%s' (template integers are 64-bit)", op);
}

/* x ** y for y >= 0 by squaring: log2(y) steps, each product checked. */
static long long int_pow(ev *E, jnode *n, long long x, long long y) {
    long long r = 1;
    while (y) {
        if ((y & 1) && __builtin_mul_overflow(r, x, &r)) overflow(E, n, "**");
        y >>= 1;
        if (y && __builtin_mul_overflow(x, x, &x)) {
            if (r == 0) return 0;
            overflow(E, n, "**");
        }
    }
    return r;
}

/* Python's floor division and modulo on 64-bit integers (y != 0). */
static long long int_floordiv(ev *E, jnode *n, long long x, long long y) {
    if (y == -1) {
        if (x == LLONG_MIN) overflow(E, n, "//");
        return -x;
    }
    return x / y - ((x % y != 0) && ((x < 0) != (y < 0)));
}
static long long int_mod(long long x, long long y) {
    if (y == -1) return 0; /* LLONG_MIN % -1 traps in C; the answer is 0 */
    long long r = x % y;
    return r && ((r < 0) != (y < 0)) ? r + y : r;
}

static jval int_arith(ev *E, jnode *n, long long x, long long y) {
    long long r = 0;
    bool over = false;
    switch (n->op[0]) {
    case '+': over = __builtin_add_overflow(x, y, &r); break;
    case '-': over = __builtin_sub_overflow(x, y, &r); break;
    case '*':
        if (n->op[1] == '*') return y >= 0 ? jv_int(int_pow(E, n, x, y)) : (jval){.t = V_FLOAT, .f = pow((double)x, (double)y)};
        over = __builtin_mul_overflow(x, y, &r);
        break;
    case '/':
        if (y == 0) j_fail(E->c, n->line, n->col, "division by zero");
        if (n->op[1] == '/') return jv_int(int_floordiv(E, n, x, y));
        return (jval){.t = V_FLOAT, .f = (double)x / (double)y};
    case '%':
        if (y == 0) j_fail(E->c, n->line, n->col, "modulo by zero");
        return jv_int(int_mod(x, y));
    }
    if (over) overflow(E, n, n->op);
    return jv_int(r);
}

static jval float_arith(ev *E, jnode *n, double x, double y) {
    double r;
    switch (n->op[0]) {
    case '+': r = x + y; break;
    case '-': r = x - y; break;
    case '*': r = n->op[1] == '*' ? pow(x, y) : x * y; break;
    case '/':
        if (y == 0) j_fail(E->c, n->line, n->col, "division by zero");
        r = n->op[1] == '/' ? floor(x / y) : x / y;
        break;
    default: /* % */
        if (y == 0) j_fail(E->c, n->line, n->col, "modulo by zero");
        r = fmod(x, y);
        if (r && ((r < 0) != (y < 0))) r += y;
    }
    return (jval){.t = V_FLOAT, .f = r};
}

/* str * int: the length is checked before anything is built, then built in place. */
static jval repeat_str(ev *E, const jstr *s, long long k) {
    size_t total;
    if (k <= 0 || !s->n) return jv_str(E->c, "", 0);
    if (__builtin_mul_overflow(s->n, (unsigned long long)k, &total)) total = (size_t)-1;
    j_check_len(E->c, total, "string repetition");
    jstr *r = j_alloc(E->c, sizeof *r + total + 1);
    r->n = total;
    for (size_t at = 0; at < total; at += s->n) memcpy(r->s + at, s->s, s->n);
    return (jval){.t = V_STR, .s = r};
}

static jval arith(ev *E, jnode *n, jval a, jval b) {
    const char *op = n->op;
    if (op[0] == '+' && a.t == V_STR && b.t == V_STR) return (jval){.t = V_STR, .s = js_cat(E->c, a.s, b.s)};
    if (op[0] == '+' && a.t == V_LIST && b.t == V_LIST) {
        jlist *l = jl_new(E->c, a.l->n + b.l->n);
        for (size_t i = 0; i < a.l->n; i++) jl_push(E->c, l, a.l->v[i]);
        for (size_t i = 0; i < b.l->n; i++) jl_push(E->c, l, b.l->v[i]);
        return (jval){.t = V_LIST, .l = l};
    }
    if (op[0] == '*' && !op[1] && ((a.t == V_STR && b.t == V_INT) || (a.t == V_INT && b.t == V_STR)))
        return repeat_str(E, a.t == V_STR ? a.s : b.s, a.t == V_INT ? a.i : b.i);
    if (!is_num(a) || !is_num(b)) bad_operands(E, n, a, b);
    if (a.t != V_FLOAT && b.t != V_FLOAT) return int_arith(E, n, inum(a), inum(b));
    return float_arith(E, n, num(a), num(b));
}

static jval binary(ev *E, jnode *n) {
    jval a = ev_expr(E, n->a), b = ev_expr(E, n->b);
    const char *op = n->op;
    if (!strcmp(op, "==")) return jv_bool(jv_equal(E->c, a, b));
    if (!strcmp(op, "!=")) return jv_bool(!jv_equal(E->c, a, b));
    if (!strcmp(op, "<")) return jv_bool(compare(E, n, a, b) < 0);
    if (!strcmp(op, ">")) return jv_bool(compare(E, n, a, b) > 0);
    if (!strcmp(op, "<=")) return jv_bool(compare(E, n, a, b) <= 0);
    if (!strcmp(op, ">=")) return jv_bool(compare(E, n, a, b) >= 0);
    if (!strcmp(op, "in")) return jv_bool(ev_contains(E, n, b, a) != n->negate);
    if (!strcmp(op, "~")) return (jval){.t = V_STR, .s = js_cat(E->c, jv_to_str(E->c, a), jv_to_str(E->c, b))};
    return arith(E, n, a, b);
}

/* ---- calls ---- */
void ev_args(ev *E, jnode *n, jargs *A) {
    if (n->n > JARGS_MAX) j_fail(E->c, n->line, n->col, "too many arguments");
    A->n = n->n;
    for (size_t i = 0; i < n->n; i++) {
        A->kw[i] = n->kw[i];
        A->v[i] = ev_expr(E, n->kids[i]);
    }
}

jval *jargs_get(jargs *A, size_t pos, const char *name) {
    size_t p = 0;
    for (size_t i = 0; i < A->n; i++) {
        if (A->kw[i]) {
            if (name && !strcmp(A->kw[i], name)) return &A->v[i];
        } else if (p++ == pos) return &A->v[i];
    }
    return NULL;
}

static jval render_body_to_str(ev *E, jnode *body) {
    jbuf *saved = E->out, *buf = jb_open(E->c);
    E->out = buf;
    ev_stmt(E, body);
    E->out = saved;
    return jb_val(buf);
}

static jval call_macro(ev *E, jnode *at, jmacro *m, jargs *A, jmacro *caller) {
    jnode *def = m->def;
    j_step(E->c);
    jframe *saved = E->f;
    jframe *f = frame_new(E, m->closure);
    E->f = f;
    size_t npos = 0;
    for (size_t i = 0; i < A->n; i++)
        if (!A->kw[i]) npos++;
    if (npos > def->n) j_fail(E->c, at->line, at->col, "macro '%s' takes not more than %zu argument(s)", def->name, def->n);
    for (size_t i = 0; i < def->n; i++) {
        jval *v = jargs_get(A, i, def->kw[i]);
        assign(E, def->kw[i], v ? *v : def->kids[i] ? ev_expr(E, def->kids[i]) : jv_undef(def->kw[i]));
    }
    for (size_t i = 0; i < A->n; i++) {
        bool known = !A->kw[i];
        for (size_t j = 0; j < def->n && !known; j++) known = !strcmp(A->kw[i], def->kw[j]);
        if (!known) j_fail(E->c, at->line, at->col, "macro '%s' has no argument '%s'", def->name, A->kw[i]);
    }
    if (caller) assign(E, "caller", (jval){.t = V_MACRO, .m = caller});
    int saved_ctl = E->ctl;
    jval r = render_body_to_str(E, def->b);
    E->ctl = saved_ctl;
    E->f = saved;
    return r;
}

static jval call(ev *E, jnode *n, jmacro *caller) {
    jval fn = ev_expr(E, n->a);
    jargs A;
    ev_args(E, n, &A);
    switch (fn.t) {
    case V_MACRO: return call_macro(E, n, fn.m, &A, caller);
    case V_FUNC: return fn.fn->fn(E, n, &A);
    case V_METHOD: return fn.bm->def->fn(E, n, fn.bm->self, &A);
    case V_UNDEF: ev_undefined_error(E, n, fn);
    default: j_fail(E->c, n->line, n->col, "'%s' object is not callable", jv_typename(fn));
    }
}

static jval negate(ev *E, jnode *n, jval v) {
    if (v.t == V_INT || v.t == V_BOOL) {
        long long x = inum(v);
        if (n->k == E_POS) return jv_int(x);
        if (x == LLONG_MIN) overflow(E, n, "unary -");
        return jv_int(-x);
    }
    if (v.t == V_FLOAT) return (jval){.t = V_FLOAT, .f = n->k == E_NEG ? -v.f : v.f};
    if (v.t == V_UNDEF) ev_undefined_error(E, n, v);
    j_fail(E->c, n->line, n->col, "bad operand type for unary %c: '%s'", n->k == E_NEG ? '-' : '+', jv_typename(v));
}

static jval eval_node(ev *E, jnode *n) {
    switch (n->k) {
    case E_CONST: return n->val;
    case E_NAME: return lookup(E, n->name);
    case E_ATTR: return ev_getattr(E, n, ev_expr(E, n->a), n->name);
    case E_ITEM: {
        jval obj = ev_expr(E, n->a);
        return ev_getitem(E, n, obj, ev_expr(E, n->b));
    }
    case E_SLICE: return slice(E, n, ev_expr(E, n->a));
    case E_CALL: return call(E, n, NULL);
    case E_FILTER: {
        jval v = ev_expr(E, n->a);
        jargs A;
        ev_args(E, n, &A);
        return ev_filter(E, n, n->name, v, &A);
    }
    case E_TEST: {
        jval v = ev_expr(E, n->a);
        jargs A;
        ev_args(E, n, &A);
        return jv_bool(ev_test(E, n, n->name, v, &A) != n->negate);
    }
    case E_BIN: return binary(E, n);
    case E_NOT: return jv_bool(!jv_truthy(ev_expr(E, n->a)));
    case E_NEG:
    case E_POS: return negate(E, n, ev_expr(E, n->a));
    case E_AND: {
        jval a = ev_expr(E, n->a);
        return jv_truthy(a) ? ev_expr(E, n->b) : a;
    }
    case E_OR: {
        jval a = ev_expr(E, n->a);
        return jv_truthy(a) ? a : ev_expr(E, n->b);
    }
    case E_COND:
        if (jv_truthy(ev_expr(E, n->a))) return ev_expr(E, n->b);
        return n->c ? ev_expr(E, n->c) : jv_undef(NULL);
    case E_LIST:
    case E_TUPLE: {
        jlist *l = jl_new(E->c, n->n);
        for (size_t i = 0; i < n->n; i++) jl_push(E->c, l, ev_expr(E, n->kids[i]));
        return (jval){.t = V_LIST, .l = l};
    }
    case E_DICT: {
        jdict *d = jd_new(E->c);
        for (size_t i = 0; i + 1 < n->n; i += 2) {
            jval k = ev_expr(E, n->kids[i]);
            jd_set(E->c, d, k, ev_expr(E, n->kids[i + 1]));
        }
        return (jval){.t = V_DICT, .d = d};
    }
    default: j_fail(E->c, n->line, n->col, "internal: not an expression");
    }
}

/* Every expression passes here: the depth guard, and the position that errors from below report. */
jval ev_expr(ev *E, jnode *n) {
    j_enter(E->c);
    E->c->line = n->line, E->c->col = n->col;
    jval v = eval_node(E, n);
    j_leave(E->c);
    return v;
}

/* ---- statements ---- */
static void unpack(ev *E, jnode *at, const char **targets, size_t n, jval v) {
    if (n == 1) {
        assign(E, targets[0], v);
        return;
    }
    jlist *l = ev_iterable(E, at, v);
    if (l->n != n) j_fail(E->c, at->line, at->col, "cannot unpack %zu value(s) into %zu target(s)", l->n, n);
    for (size_t i = 0; i < n; i++) assign(E, targets[i], l->v[i]);
}

static void run_for(ev *E, jnode *n) {
    jlist *items = ev_iterable(E, n->a, ev_expr(E, n->a));
    jframe *saved = E->f;
    E->f = frame_new(E, saved);
    if (n->d) { /* `for x in xs if cond`: filter first, so loop.length/last count only kept items */
        jlist *kept = jl_new(E->c, items->n);
        for (size_t i = 0; i < items->n; i++) {
            j_step(E->c);
            unpack(E, n, n->targets, n->n_targets, items->v[i]);
            if (jv_truthy(ev_expr(E, n->d))) jl_push(E->c, kept, items->v[i]);
        }
        items = kept;
    }
    jloop *lp = j_alloc(E->c, sizeof *lp);
    lp->items = items;
    for (size_t i = 0; i < items->n; i++) {
        j_step(E->c);
        lp->i = i;
        assign(E, "loop", (jval){.t = V_LOOP, .lp = lp});
        unpack(E, n, n->targets, n->n_targets, items->v[i]);
        ev_stmt(E, n->b);
        if (E->ctl == CTL_BREAK) {
            E->ctl = 0;
            break;
        }
        E->ctl = 0;
    }
    E->f = saved;
    if (!items->n && n->c) ev_stmt(E, n->c);
}

static void run_set(ev *E, jnode *n) {
    jval v = ev_expr(E, n->b);
    if (n->a) { /* ns.attr = v */
        jval ns = ev_expr(E, n->a->a);
        if (ns.t != V_DICT || !ns.d->is_ns)
            j_fail(E->c, n->line, n->col, "cannot assign attribute on non-namespace object");
        jd_set(E->c, ns.d, jv_cstr(E->c, n->a->name), v);
        return;
    }
    unpack(E, n, n->targets, n->n_targets, v);
}

static void exec_node(ev *E, jnode *n) {
    switch (n->k) {
    case N_BODY:
        for (size_t i = 0; i < n->n && !E->ctl; i++) ev_stmt(E, n->kids[i]);
        return;
    case N_TEXT: jb_put(E->out, n->val.s->s, n->val.s->n); return;
    case N_OUT: jv_print(E->c, E->out, ev_expr(E, n->a), false); return;
    case N_IF: /* an elif chain (c is an N_IF) is walked here, not nested; an else body is an N_BODY */
        for (;;) {
            if (jv_truthy(ev_expr(E, n->a))) {
                ev_stmt(E, n->b);
                return;
            }
            if (!(n = n->c)) return;
            if (n->k != N_IF) {
                ev_stmt(E, n);
                return;
            }
        }
    case N_FOR: run_for(E, n); return;
    case N_SET: run_set(E, n); return;
    case N_SETBLOCK: assign(E, n->targets[0], render_body_to_str(E, n->b)); return;
    case N_MACRO: {
        jmacro *m = j_alloc(E->c, sizeof *m);
        m->def = n;
        m->closure = E->f;
        assign(E, n->name, (jval){.t = V_MACRO, .m = m});
        return;
    }
    case N_CALLBLOCK: {
        jmacro *caller = j_alloc(E->c, sizeof *caller);
        jnode *def = j_alloc(E->c, sizeof *def);
        def->k = N_MACRO;
        def->name = "caller";
        def->b = n->b;
        caller->def = def;
        caller->closure = E->f;
        jv_print(E->c, E->out, call(E, n->a, caller), false);
        return;
    }
    case N_FILTERBLOCK: {
        jval body = render_body_to_str(E, n->b);
        /* the innermost filter of the chain has a NULL operand: give it the body */
        jnode *f = n->a;
        while (f->a) f = f->a;
        jnode ph = {.k = E_CONST, .val = body};
        f->a = &ph;
        jval r = ev_expr(E, n->a);
        f->a = NULL;
        jv_print(E->c, E->out, r, false);
        return;
    }
    case N_BREAK: E->ctl = CTL_BREAK; return;
    case N_CONTINUE: E->ctl = CTL_CONTINUE; return;
    case N_DO: ev_expr(E, n->a); return;
    default: j_fail(E->c, n->line, n->col, "internal: not a statement");
    }
}

void ev_stmt(ev *E, jnode *n) {
    j_enter(E->c);
    E->c->line = n->line, E->c->col = n->col;
    exec_node(E, n);
    j_leave(E->c);
}

char *j_render(jctx *c, jnode *root, jdict *vars, size_t *out_len) {
    jbuf *buf = jb_open(c);
    jframe globals = {.vars = vars};
    ev E = {.c = c, .out = buf};
    E.f = frame_new(&E, &globals);
    ev_stmt(&E, root);
    return jb_take(buf, out_len);
}
