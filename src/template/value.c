/* value.c — the value model of the template interpreter: Python's None/bool/int/float/str/list/dict as
 * jinja2 sees them, plus Undefined, and their str()/repr()/json forms. All memory comes from the arena. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/jinja.h"

struct jarena_blk {
    jarena_blk *next;
    size_t used, cap;
    _Alignas(16) char data[];
};

void *ja_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    jarena_blk *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        b = malloc(sizeof *b + cap);
        if (!b) abort(); /* out of memory: nothing sensible left to do */
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

void ja_free(jarena *a) {
    while (a->head) {
        jarena_blk *n = a->head->next;
        free(a->head);
        a->head = n;
    }
}

_Noreturn void j_fail(jctx *c, int line, int col, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0)
        kiln_err_set(c->err, "template line %d column %d: %s", line, col, msg);
    else
        kiln_err_set(c->err, "template: %s", msg);
    longjmp(c->fail, 1);
}

/* ---- buffers: doubling inside the arena, so the waste is at most the final size ---- */
void jb_put(jbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = ja_alloc(b->a, cap);
        if (b->n) memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
void jb_putc(jbuf *b, char ch) { jb_put(b, &ch, 1); }

/* ---- constructors ---- */
jstr *js_new(jctx *c, const char *s, size_t n) {
    jstr *r = ja_alloc(&c->arena, sizeof *r + n + 1);
    r->n = n;
    if (n) memcpy(r->s, s, n);
    return r;
}
jstr *js_cat(jctx *c, const jstr *a, const jstr *b) {
    jstr *r = ja_alloc(&c->arena, sizeof *r + a->n + b->n + 1);
    r->n = a->n + b->n;
    memcpy(r->s, a->s, a->n);
    memcpy(r->s + a->n, b->s, b->n);
    return r;
}
jlist *jl_new(jctx *c, size_t cap) {
    jlist *l = ja_alloc(&c->arena, sizeof *l);
    l->cap = cap ? cap : 4;
    l->v = ja_alloc(&c->arena, l->cap * sizeof(jval));
    return l;
}
void jl_push(jctx *c, jlist *l, jval v) {
    if (l->n == l->cap) {
        jval *nv = ja_alloc(&c->arena, 2 * l->cap * sizeof(jval));
        memcpy(nv, l->v, l->n * sizeof(jval));
        l->v = nv;
        l->cap *= 2;
    }
    l->v[l->n++] = v;
}
jdict *jd_new(jctx *c) {
    jdict *d = ja_alloc(&c->arena, sizeof *d);
    return d;
}
jval *jd_get(const jdict *d, const char *key, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == V_STR && d->k[i].s->n == n && memcmp(d->k[i].s->s, key, n) == 0) return &d->v[i];
    return NULL;
}
jval *jd_find(const jdict *d, jval key) {
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(d->k[i], key)) return &d->v[i];
    return NULL;
}
void jd_set(jctx *c, jdict *d, jval key, jval v) {
    jval *old = jd_find(d, key);
    if (old) {
        *old = v;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 8;
        jval *nk = ja_alloc(&c->arena, cap * sizeof(jval)), *nv = ja_alloc(&c->arena, cap * sizeof(jval));
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof(jval));
            memcpy(nv, d->v, d->n * sizeof(jval));
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = key;
    d->v[d->n++] = v;
}
jval jv_str(jctx *c, const char *s, size_t n) { return (jval){.t = V_STR, .s = js_new(c, s, n)}; }
jval jv_cstr(jctx *c, const char *s) { return jv_str(c, s, strlen(s)); }
jval jv_int(long long i) { return (jval){.t = V_INT, .i = i}; }
jval jv_bool(bool b) { return (jval){.t = V_BOOL, .b = b}; }
jval jv_undef(const char *name) { return (jval){.t = V_UNDEF, .uname = name}; }
jval jv_none(void) { return (jval){.t = V_NONE}; }

bool jv_truthy(jval v) {
    switch (v.t) {
    case V_UNDEF:
    case V_NONE: return false;
    case V_BOOL: return v.b;
    case V_INT: return v.i != 0;
    case V_FLOAT: return v.f != 0;
    case V_STR: return v.s->n > 0;
    case V_LIST: return v.l->n > 0;
    case V_DICT: return v.d->n > 0;
    default: return true;
    }
}

static bool is_num(jval v) { return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL; }
static double num(jval v) { return v.t == V_FLOAT ? v.f : v.t == V_INT ? (double)v.i : (double)v.b; }

bool jv_equal(jval a, jval b) {
    if (is_num(a) && is_num(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT) return (a.t == V_INT ? a.i : a.b) == (b.t == V_INT ? b.i : b.b);
        return num(a) == num(b);
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case V_UNDEF:
    case V_NONE: return true;
    case V_STR: return a.s->n == b.s->n && memcmp(a.s->s, b.s->s, a.s->n) == 0;
    case V_LIST:
        if (a.l->n != b.l->n) return false;
        for (size_t i = 0; i < a.l->n; i++)
            if (!jv_equal(a.l->v[i], b.l->v[i])) return false;
        return true;
    case V_DICT:
        if (a.d->n != b.d->n) return false;
        for (size_t i = 0; i < a.d->n; i++) {
            jval *o = jd_find(b.d, a.d->k[i]);
            if (!o || !jv_equal(a.d->v[i], *o)) return false;
        }
        return true;
    case V_LOOP: return a.lp == b.lp;
    case V_MACRO: return a.m == b.m;
    case V_FUNC: return a.fn == b.fn;
    default: return false;
    }
}

const char *jv_typename(jval v) {
    static const char *names[] = {"Undefined", "NoneType", "bool",  "int",      "float",    "str",
                                  "list",      "dict",     "LoopContext", "Macro", "function", "method"};
    return names[v.t];
}

/* Python repr(float): the shortest digits that round-trip, fixed notation for 1e-4 <= |f| < 1e16. */
void jv_float_repr(char *out, size_t cap, double f) {
    if (isnan(f)) {
        snprintf(out, cap, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(out, cap, f < 0 ? "-inf" : "inf");
        return;
    }
    char e[40];
    int p;
    for (p = 1; p <= 17; p++) {
        snprintf(e, sizeof e, "%.*e", p - 1, f);
        if (strtod(e, NULL) == f) break;
    }
    /* e = [-]d.ddde[+-]XX → digits and exponent */
    char digits[24];
    int nd = 0, neg = e[0] == '-';
    const char *q = e + neg;
    for (; *q && *q != 'e'; q++)
        if (*q != '.') digits[nd++] = *q;
    digits[nd] = 0;
    int exp = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') digits[--nd] = 0;
    char *o = out;
    size_t left = cap;
#define PUT(...)                                          \
    do {                                                  \
        int w_ = snprintf(o, left, __VA_ARGS__);          \
        if (w_ > 0 && (size_t)w_ < left) o += w_, left -= w_; \
    } while (0)
    if (neg) PUT("-");
    if (exp >= -5 + 1 && exp < 16) {
        if (exp < 0) {
            PUT("0.");
            for (int i = 0; i < -exp - 1; i++) PUT("0");
            PUT("%s", digits);
        } else if (nd <= exp + 1) {
            PUT("%s", digits);
            for (int i = nd; i < exp + 1; i++) PUT("0");
            PUT(".0");
        } else {
            PUT("%.*s.%s", exp + 1, digits, digits + exp + 1);
        }
    } else {
        PUT("%c", digits[0]);
        if (nd > 1) PUT(".%s", digits + 1);
        PUT("e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    }
#undef PUT
}

static void print_repr_str(jbuf *b, const jstr *s) {
    char q = (memchr(s->s, '\'', s->n) && !memchr(s->s, '"', s->n)) ? '"' : '\'';
    jb_putc(b, q);
    for (size_t i = 0; i < s->n; i++) {
        unsigned char ch = (unsigned char)s->s[i];
        char tmp[8];
        if (ch == (unsigned char)q || ch == '\\') {
            jb_putc(b, '\\');
            jb_putc(b, (char)ch);
        } else if (ch == '\n') jb_put(b, "\\n", 2);
        else if (ch == '\r') jb_put(b, "\\r", 2);
        else if (ch == '\t') jb_put(b, "\\t", 2);
        else if (ch < 0x20 || ch == 0x7f) {
            snprintf(tmp, sizeof tmp, "\\x%02x", ch);
            jb_put(b, tmp, 4);
        } else jb_putc(b, (char)ch);
    }
    jb_putc(b, q);
}

void jv_print(jctx *c, jbuf *b, jval v, bool repr) {
    char tmp[64];
    switch (v.t) {
    case V_UNDEF: break;
    case V_NONE: jb_put(b, "None", 4); break;
    case V_BOOL: v.b ? jb_put(b, "True", 4) : jb_put(b, "False", 5); break;
    case V_INT: jb_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%lld", v.i)); break;
    case V_FLOAT: jv_float_repr(tmp, sizeof tmp, v.f); jb_put(b, tmp, strlen(tmp)); break;
    case V_STR: repr ? print_repr_str(b, v.s) : jb_put(b, v.s->s, v.s->n); break;
    case V_LIST:
        jb_putc(b, '[');
        for (size_t i = 0; i < v.l->n; i++) {
            if (i) jb_put(b, ", ", 2);
            jv_print(c, b, v.l->v[i], true);
        }
        jb_putc(b, ']');
        break;
    case V_DICT:
        if (v.d->is_ns) {
            jb_put(b, "<Namespace>", 11);
            break;
        }
        jb_putc(b, '{');
        for (size_t i = 0; i < v.d->n; i++) {
            if (i) jb_put(b, ", ", 2);
            jv_print(c, b, v.d->k[i], true);
            jb_put(b, ": ", 2);
            jv_print(c, b, v.d->v[i], true);
        }
        jb_putc(b, '}');
        break;
    case V_LOOP: jb_put(b, "<LoopContext>", 13); break;
    case V_MACRO: jb_put(b, "<Macro>", 7); break;
    case V_FUNC:
    case V_METHOD: jb_put(b, "<function>", 10); break;
    }
}

jstr *jv_to_str(jctx *c, jval v) {
    if (v.t == V_STR) return v.s;
    jbuf b = JBUF(c);
    jv_print(c, &b, v, false);
    return js_new(c, b.p ? b.p : "", b.n);
}

static void json_str(jbuf *b, const char *s, size_t n) {
    jb_putc(b, '"');
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        char tmp[8];
        switch (ch) {
        case '"': jb_put(b, "\\\"", 2); break;
        case '\\': jb_put(b, "\\\\", 2); break;
        case '\n': jb_put(b, "\\n", 2); break;
        case '\r': jb_put(b, "\\r", 2); break;
        case '\t': jb_put(b, "\\t", 2); break;
        case '\b': jb_put(b, "\\b", 2); break;
        case '\f': jb_put(b, "\\f", 2); break;
        default:
            if (ch < 0x20) {
                snprintf(tmp, sizeof tmp, "\\u%04x", ch);
                jb_put(b, tmp, 6);
            } else jb_putc(b, (char)ch);
        }
    }
    jb_putc(b, '"');
}

static void json_nl(jbuf *b, int indent, int depth) {
    jb_putc(b, '\n');
    for (int i = 0; i < indent * depth; i++) jb_putc(b, ' ');
}

static int key_cmp(const void *a, const void *b) {
    const jval *x = *(const jval *const *)a, *y = *(const jval *const *)b;
    size_t n = x->s->n < y->s->n ? x->s->n : y->s->n;
    int r = memcmp(x->s->s, y->s->s, n);
    return r ? r : (x->s->n > y->s->n) - (x->s->n < y->s->n);
}

void jv_tojson(jctx *c, jbuf *b, jval v, int indent, const char *isep, const char *ksep, bool sort_keys, int depth,
               int line, int col) {
    char tmp[64];
    if (depth > 200) j_fail(c, line, col, "tojson: nesting too deep");
    switch (v.t) {
    case V_NONE: jb_put(b, "null", 4); break;
    case V_BOOL: v.b ? jb_put(b, "true", 4) : jb_put(b, "false", 5); break;
    case V_INT: jb_put(b, tmp, (size_t)snprintf(tmp, sizeof tmp, "%lld", v.i)); break;
    case V_FLOAT:
        if (isnan(v.f)) jb_put(b, "NaN", 3);
        else if (isinf(v.f)) v.f < 0 ? jb_put(b, "-Infinity", 9) : jb_put(b, "Infinity", 8);
        else {
            jv_float_repr(tmp, sizeof tmp, v.f);
            jb_put(b, tmp, strlen(tmp));
        }
        break;
    case V_STR: json_str(b, v.s->s, v.s->n); break;
    case V_LIST:
        if (!v.l->n) {
            jb_put(b, "[]", 2);
            break;
        }
        jb_putc(b, '[');
        for (size_t i = 0; i < v.l->n; i++) {
            if (i) jb_put(b, isep, strlen(isep));
            if (indent >= 0) json_nl(b, indent, depth + 1);
            jv_tojson(c, b, v.l->v[i], indent, isep, ksep, sort_keys, depth + 1, line, col);
        }
        if (indent >= 0) json_nl(b, indent, depth);
        jb_putc(b, ']');
        break;
    case V_DICT: {
        if (!v.d->n) {
            jb_put(b, "{}", 2);
            break;
        }
        size_t n = v.d->n;
        const jval **order = ja_alloc(&c->arena, n * sizeof *order);
        for (size_t i = 0; i < n; i++) {
            if (v.d->k[i].t != V_STR) j_fail(c, line, col, "tojson: only string keys are supported");
            order[i] = &v.d->k[i];
        }
        if (sort_keys) qsort(order, n, sizeof *order, key_cmp);
        jb_putc(b, '{');
        for (size_t i = 0; i < n; i++) {
            size_t k = (size_t)(order[i] - v.d->k);
            if (i) jb_put(b, isep, strlen(isep));
            if (indent >= 0) json_nl(b, indent, depth + 1);
            json_str(b, v.d->k[k].s->s, v.d->k[k].s->n);
            jb_put(b, ksep, strlen(ksep));
            jv_tojson(c, b, v.d->v[k], indent, isep, ksep, sort_keys, depth + 1, line, col);
        }
        if (indent >= 0) json_nl(b, indent, depth);
        jb_putc(b, '}');
        break;
    }
    default: j_fail(c, line, col, "Object of type %s is not JSON serializable", jv_typename(v));
    }
}

jval jv_from_json(jctx *c, const void *p) {
    const json_t *j = p;
    switch (json_typeof(j)) {
    case JSON_NULL: return jv_none();
    case JSON_TRUE: return jv_bool(true);
    case JSON_FALSE: return jv_bool(false);
    case JSON_INTEGER: return jv_int(json_integer_value(j));
    case JSON_REAL: return (jval){.t = V_FLOAT, .f = json_real_value(j)};
    case JSON_STRING: return jv_str(c, json_string_value(j), json_string_length(j));
    case JSON_ARRAY: {
        jlist *l = jl_new(c, json_array_size(j));
        for (size_t i = 0; i < json_array_size(j); i++) jl_push(c, l, jv_from_json(c, json_array_get(j, i)));
        return (jval){.t = V_LIST, .l = l};
    }
    case JSON_OBJECT: {
        jdict *d = jd_new(c);
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) jd_set(c, d, jv_cstr(c, k), jv_from_json(c, v));
        return (jval){.t = V_DICT, .d = d};
    }
    }
    return jv_none();
}

size_t ju_len(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}
size_t ju_offset(const char *s, size_t n, size_t cp) {
    size_t i = 0, k = 0;
    for (; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (k == cp) return i;
            k++;
        }
    }
    return n;
}
