/* filters.c — jinja2's filters (`v | name(args)`) as transformers' environment has them, one {name, fn}
 * table. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/builtins.h"

/* ---- filters ---- */
/* Dotted attribute path ("a.b" or "0") as jinja's make_attrgetter. */
static jval attr_path(ev *E, jnode *at, jval v, jstr *path) {
    size_t i = 0;
    while (i <= path->n) {
        const char *dot = memchr(path->s + i, '.', path->n - i);
        size_t e = dot ? (size_t)(dot - path->s) : path->n;
        jval key = jv_str(E->c, path->s + i, e - i);
        bool digits = e > i;
        for (size_t k = i; k < e; k++) digits &= isdigit((unsigned char)path->s[k]) != 0;
        if (digits) key = jv_int(atoll(key.s->s));
        if (v.t == V_UNDEF) return v;
        v = ev_getitem(E, at, v, key);
        i = e + 1;
        if (!dot) break;
    }
    return v;
}

static jval filter_select(ev *E, jnode *at, const char *name, jval v, jargs *A) {
    bool by_attr = strstr(name, "attr") != NULL, reject = name[0] == 'r';
    jlist *in = ev_iterable(E, at, v), *out = jl_new(E->c, in->n);
    jval *attr = by_attr ? jargs_get(A, 0, NULL) : NULL;
    if (by_attr && (!attr || attr->t != V_STR)) j_fail(E->c, at->line, at->col, "%s needs an attribute name", name);
    size_t ti = by_attr ? 1 : 0;
    jval *test = jargs_get(A, ti, NULL);
    jargs rest = {0};
    for (size_t i = 0, p = 0; i < A->n; i++) {
        if (A->kw[i]) continue;
        if (p++ > ti) {
            rest.v[rest.n] = A->v[i];
            rest.kw[rest.n++] = NULL;
        }
    }
    for (size_t i = 0; i < in->n; i++) {
        jval x = by_attr ? attr_path(E, at, in->v[i], attr->s) : in->v[i];
        bool ok = test ? ev_test(E, at, ev_need_str(E, at, *test, name)->s, x, &rest) : jv_truthy(x);
        if (ok != reject) jl_push(E->c, out, in->v[i]);
    }
    return (jval){.t = V_LIST, .l = out};
}

/* float → int as Python's int() truncates; outside 64 bits a template error, not undefined behaviour. */
static long long float_to_int(ev *E, jnode *at, double f) {
    if (!(f >= -0x1p63 && f < 0x1p63)) j_fail(E->c, at->line, at->col, "int: %g is outside the 64-bit range", f);
    return (long long)f;
}

static jval to_number(ev *E, jnode *at, jval v, bool want_float, jval dflt) {
    if (v.t == V_INT || v.t == V_BOOL) {
        long long i = v.t == V_INT ? v.i : v.b;
        return want_float ? (jval){.t = V_FLOAT, .f = (double)i} : jv_int(i);
    }
    if (v.t == V_FLOAT) return want_float ? v : jv_int(float_to_int(E, at, v.f));
    if (v.t == V_STR) {
        char *end;
        const char *s = v.s->s;
        if (!want_float) {
            errno = 0;
            long long i = strtoll(s, &end, 10);
            while (*end && isspace((unsigned char)*end)) end++;
            if (end != s && !*end) {
                if (errno == ERANGE) j_fail(E->c, at->line, at->col, "int: '%.40s' is outside the 64-bit range", s);
                return jv_int(i);
            }
        }
        double f = strtod(s, &end);
        while (*end && isspace((unsigned char)*end)) end++;
        if (end != s && !*end) return want_float ? (jval){.t = V_FLOAT, .f = f} : jv_int(float_to_int(E, at, f));
    }
    return dflt;
}

static size_t length_of(ev *E, jnode *at, jval v) {
    switch (v.t) {
    case V_STR: return ju_len(E->c, v.s->s, v.s->n);
    case V_LIST: return v.l->n;
    case V_DICT: return v.d->n;
    case V_UNDEF: return 0;
    default: j_fail(E->c, at->line, at->col, "object of type '%s' has no len()", jv_typename(v));
    }
}

typedef jval (*jfilter_fn)(ev *E, jnode *at, jval v, jargs *A);

static jval f_tojson(ev *E, jnode *at, jval v, jargs *A) {
    jval *ind = jargs_get(A, 0, "indent"), *seps = jargs_get(A, (size_t)-1, "separators"),
         *sk = jargs_get(A, (size_t)-1, "sort_keys");
    long long indent = ind && ind->t == V_INT ? ind->i : -1;
    const char *isep = indent >= 0 ? "," : ", ", *ksep = ": ";
    if (seps && seps->t == V_LIST && seps->l->n == 2 && seps->l->v[0].t == V_STR && seps->l->v[1].t == V_STR) {
        isep = seps->l->v[0].s->s;
        ksep = seps->l->v[1].s->s;
    }
    jbuf *b = jb_open(E->c);
    jv_tojson(E->c, b, v, indent, isep, ksep, sk && jv_truthy(*sk), 0, at->line, at->col);
    return jb_val(b);
}
static jval f_trim(ev *E, jnode *at, jval v, jargs *A) {
    return py_strip(E, at, jv_to_str(E->c, v), jargs_get(A, 0, "chars"), true, true);
}
static jval f_length(ev *E, jnode *at, jval v, jargs *A) { (void)A; return jv_int((long long)length_of(E, at, v)); }
static jval f_default(ev *E, jnode *at, jval v, jargs *A) {
    (void)at;
    jval *dflt = jargs_get(A, 0, "default_value"), *b = jargs_get(A, 1, "boolean");
    bool use = v.t == V_UNDEF || (b && jv_truthy(*b) && !jv_truthy(v));
    return use ? (dflt ? *dflt : jv_str(E->c, "", 0)) : v;
}
static jval f_join(ev *E, jnode *at, jval v, jargs *A) {
    jval *sep = jargs_get(A, 0, "d"), *attr = jargs_get(A, 1, "attribute");
    jstr *s = sep ? jv_to_str(E->c, *sep) : js_new(E->c, "", 0);
    jlist *l = ev_iterable(E, at, v);
    jbuf *b = jb_open(E->c);
    for (size_t i = 0; i < l->n; i++) {
        if (i) jb_put(b, s->s, s->n);
        jval x = attr ? attr_path(E, at, l->v[i], jv_to_str(E->c, *attr)) : l->v[i];
        jv_print(E->c, b, x, false);
    }
    return jb_val(b);
}
static jval f_upper(ev *E, jnode *at, jval v, jargs *A) { (void)at, (void)A; return py_change_case(E, jv_to_str(E->c, v), CASE_UPPER); }
static jval f_lower(ev *E, jnode *at, jval v, jargs *A) { (void)at, (void)A; return py_change_case(E, jv_to_str(E->c, v), CASE_LOWER); }
static jval f_title(ev *E, jnode *at, jval v, jargs *A) {
    (void)at, (void)A;
    return py_change_case(E, jv_to_str(E->c, v), CASE_TITLE_JINJA);
}
static jval f_capitalize(ev *E, jnode *at, jval v, jargs *A) {
    (void)at, (void)A;
    return py_change_case(E, jv_to_str(E->c, v), CASE_CAPITALIZE);
}
static jval f_items(ev *E, jnode *at, jval v, jargs *A) {
    (void)A;
    if (v.t == V_UNDEF) return (jval){.t = V_LIST, .l = jl_new(E->c, 1)};
    if (v.t != V_DICT) j_fail(E->c, at->line, at->col, "items filter expects a mapping, got %s", jv_typename(v));
    return ev_items(E, v.d);
}
static jval f_list(ev *E, jnode *at, jval v, jargs *A) { (void)A; return ev_copy_list(E, ev_iterable(E, at, v), false); }
static jval f_first(ev *E, jnode *at, jval v, jargs *A) {
    (void)A;
    jlist *l = ev_iterable(E, at, v);
    return l->n ? l->v[0] : jv_undef("first");
}
static jval f_last(ev *E, jnode *at, jval v, jargs *A) {
    (void)A;
    jlist *l = ev_iterable(E, at, v);
    return l->n ? l->v[l->n - 1] : jv_undef("last");
}
static jval f_reverse(ev *E, jnode *at, jval v, jargs *A) {
    (void)A;
    jlist *items = ev_iterable(E, at, v); /* a string's code points */
    if (v.t != V_STR) return ev_copy_list(E, items, true);
    jbuf *b = jb_open(E->c);
    for (size_t i = items->n; i-- > 0;) jb_put(b, items->v[i].s->s, items->v[i].s->n);
    return jb_val(b);
}
static jval f_map(ev *E, jnode *at, jval v, jargs *A) {
    jlist *src = ev_iterable(E, at, v), *l = jl_new(E->c, src->n);
    jval *a0 = jargs_get(A, 0, NULL), *attr = jargs_get(A, (size_t)-1, "attribute"),
         *dflt = jargs_get(A, (size_t)-1, "default");
    if (!attr && (!a0 || a0->t != V_STR)) j_fail(E->c, at->line, at->col, "map needs a filter name or attribute=");
    jargs rest = {0};
    for (size_t i = 0, p = 0; i < A->n; i++)
        if (!A->kw[i] && p++ > 0) rest.v[rest.n++] = A->v[i];
    for (size_t i = 0; i < src->n; i++) {
        jval x;
        if (attr) {
            x = attr_path(E, at, src->v[i], jv_to_str(E->c, *attr));
            if (x.t == V_UNDEF && dflt) x = *dflt;
        } else x = ev_filter(E, at, a0->s->s, src->v[i], &rest);
        jl_push(E->c, l, x);
    }
    return (jval){.t = V_LIST, .l = l};
}
static jval f_select(ev *E, jnode *at, jval v, jargs *A) { return filter_select(E, at, "select", v, A); }
static jval f_reject(ev *E, jnode *at, jval v, jargs *A) { return filter_select(E, at, "reject", v, A); }
static jval f_selectattr(ev *E, jnode *at, jval v, jargs *A) { return filter_select(E, at, "selectattr", v, A); }
static jval f_rejectattr(ev *E, jnode *at, jval v, jargs *A) { return filter_select(E, at, "rejectattr", v, A); }
static jval f_replace(ev *E, jnode *at, jval v, jargs *A) {
    jval *old = jargs_get(A, 0, "old"), *new = jargs_get(A, 1, "new"), *cnt = jargs_get(A, 2, "count");
    if (!old || !new) j_fail(E->c, at->line, at->col, "replace needs old and new strings");
    return py_replace(E, jv_to_str(E->c, v), jv_to_str(E->c, *old), jv_to_str(E->c, *new),
                   cnt && cnt->t == V_INT ? cnt->i : -1);
}
static jval f_string(ev *E, jnode *at, jval v, jargs *A) { (void)at, (void)A; return ev_str_of(E, v); }
static jval f_safe(ev *E, jnode *at, jval v, jargs *A) { (void)E, (void)at, (void)A; return v; }
static jval f_escape(ev *E, jnode *at, jval v, jargs *A) {
    (void)at, (void)A;
    jstr *s = jv_to_str(E->c, v);
    jbuf *b = jb_open(E->c);
    for (size_t i = 0; i < s->n; i++) {
        switch (s->s[i]) {
        case '&': jb_put(b, "&amp;", 5); break;
        case '<': jb_put(b, "&lt;", 4); break;
        case '>': jb_put(b, "&gt;", 4); break;
        case '"': jb_put(b, "&#34;", 5); break;
        case '\'': jb_put(b, "&#39;", 5); break;
        default: jb_putc(b, s->s[i]);
        }
    }
    return jb_val(b);
}
static jval f_int(ev *E, jnode *at, jval v, jargs *A) {
    jval *dflt = jargs_get(A, 0, "default");
    return to_number(E, at, v, false, dflt ? *dflt : jv_int(0));
}
static jval f_float(ev *E, jnode *at, jval v, jargs *A) {
    jval *dflt = jargs_get(A, 0, "default");
    return to_number(E, at, v, true, dflt ? *dflt : (jval){.t = V_FLOAT, .f = 0});
}
static jval f_abs(ev *E, jnode *at, jval v, jargs *A) {
    (void)A;
    if (v.t == V_INT) {
        if (v.i == LLONG_MIN) j_fail(E->c, at->line, at->col, "integer overflow in 'abs' (template integers are 64-bit)");
        return jv_int(v.i < 0 ? -v.i : v.i);
    }
    if (v.t == V_FLOAT) return (jval){.t = V_FLOAT, .f = fabs(v.f)};
    j_fail(E->c, at->line, at->col, "bad operand type for abs(): '%s'", jv_typename(v));
}
static jval f_round(ev *E, jnode *at, jval v, jargs *A) {
    jval *prec = jargs_get(A, 0, "precision"), *method = jargs_get(A, 1, "method");
    if (v.t != V_INT && v.t != V_FLOAT) j_fail(E->c, at->line, at->col, "round expects a number");
    double x = v.t == V_INT ? (double)v.i : v.f, scale = pow(10, prec && prec->t == V_INT ? (double)prec->i : 0);
    const char *m = method && method->t == V_STR ? method->s->s : "common";
    double r = !strcmp(m, "floor") ? floor(x * scale) : !strcmp(m, "ceil") ? ceil(x * scale) : nearbyint(x * scale);
    return (jval){.t = V_FLOAT, .f = r / scale};
}
/* indent(width=4, first=False, blank=False); width may be a string. The padding is checked against the
 * output limit before it is written. */
static jval f_indent(ev *E, jnode *at, jval v, jargs *A) {
    (void)at;
    jval *w = jargs_get(A, 0, "width"), *first = jargs_get(A, 1, "first"), *blank = jargs_get(A, 2, "blank");
    jstr *pad = w && w->t == V_STR ? w->s : NULL;
    long long width = w && w->t == V_INT ? w->i : 4;
    jstr *s = jv_to_str(E->c, v);
    jbuf *b = jb_open(E->c);
    bool line_start = first && jv_truthy(*first);
    for (size_t i = 0; i <= s->n; i++) {
        if (line_start && i < s->n && (s->s[i] != '\n' || (blank && jv_truthy(*blank)))) {
            if (pad) jb_put(b, pad->s, pad->n);
            else if (width > 0) jb_fill(b, ' ', (size_t)width);
        }
        if (i == s->n) break;
        jb_putc(b, s->s[i]);
        line_start = s->s[i] == '\n';
    }
    return jb_val(b);
}
static jval f_unique(ev *E, jnode *at, jval v, jargs *A) {
    jlist *src = ev_iterable(E, at, v), *l = jl_new(E->c, src->n), *keys = jl_new(E->c, src->n);
    jval *cs = jargs_get(A, 0, "case_sensitive");
    for (size_t i = 0; i < src->n; i++) {
        jval k = src->v[i];
        if (k.t == V_STR && !(cs && jv_truthy(*cs))) k = py_change_case(E, k.s, CASE_LOWER);
        if (ev_list_find(E, keys, k) < 0) jl_push(E->c, keys, k), jl_push(E->c, l, src->v[i]);
    }
    return (jval){.t = V_LIST, .l = l};
}
/* sum: the `+` operator over the items, so it overflows (and fails) exactly as `+` does. */
static jval f_sum(ev *E, jnode *at, jval v, jargs *A) {
    jval *attr = jargs_get(A, (size_t)-1, "attribute"), *start = jargs_get(A, 1, "start");
    jlist *src = ev_iterable(E, at, v);
    jval acc = start ? *start : jv_int(0);
    jnode plus = *at;
    plus.k = E_BIN;
    snprintf(plus.op, sizeof plus.op, "+");
    for (size_t i = 0; i < src->n; i++) {
        jval x = attr ? attr_path(E, at, src->v[i], jv_to_str(E->c, *attr)) : src->v[i];
        plus.a = &(jnode){.k = E_CONST, .val = acc};
        plus.b = &(jnode){.k = E_CONST, .val = x};
        acc = ev_expr(E, &plus);
    }
    return acc;
}
static jval f_wordcount(ev *E, jnode *at, jval v, jargs *A) {
    (void)A;
    return jv_int((long long)py_split(E, at, jv_to_str(E->c, v), NULL, NULL).l->n);
}

static const struct {
    const char *name;
    jfilter_fn fn;
} filters[] = {{"tojson", f_tojson},         {"trim", f_trim},       {"length", f_length},   {"count", f_length},
               {"default", f_default},       {"d", f_default},       {"join", f_join},       {"upper", f_upper},
               {"lower", f_lower},           {"title", f_title},     {"capitalize", f_capitalize},
               {"items", f_items},           {"list", f_list},       {"first", f_first},     {"last", f_last},
               {"reverse", f_reverse},       {"map", f_map},         {"select", f_select},   {"reject", f_reject},
               {"selectattr", f_selectattr}, {"rejectattr", f_rejectattr},                   {"replace", f_replace},
               {"string", f_string},         {"safe", f_safe},       {"e", f_escape},       {"escape", f_escape},
               {"forceescape", f_escape},    {"int", f_int},         {"float", f_float},     {"abs", f_abs},
               {"round", f_round},           {"indent", f_indent},   {"unique", f_unique},   {"sum", f_sum},
               {"wordcount", f_wordcount}};

jval ev_filter(ev *E, jnode *at, const char *name, jval v, jargs *A) {
    for (size_t i = 0; i < sizeof filters / sizeof *filters; i++)
        if (!strcmp(filters[i].name, name)) return filters[i].fn(E, at, v, A);
    j_fail(E->c, at->line, at->col, "no filter named '%s'", name);
}
