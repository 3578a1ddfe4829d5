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

void j_ctx_init(jctx *c, const kiln_template_limits *lim, kiln_err *err) {
    memset(c, 0, sizeof *c);
    c->err = err;
    if (lim) c->lim = *lim;
    if (!c->lim.max_output_bytes) c->lim.max_output_bytes = KILN_TEMPLATE_MAX_OUTPUT_BYTES;
    if (!c->lim.max_memory_bytes) c->lim.max_memory_bytes = KILN_TEMPLATE_MAX_MEMORY_BYTES;
    if (!c->lim.max_steps) c->lim.max_steps = KILN_TEMPLATE_MAX_STEPS;
    if (!c->lim.max_depth) c->lim.max_depth = KILN_TEMPLATE_MAX_DEPTH;
}

void j_ctx_free(jctx *c) {
    for (jbuf *lists[2] = {c->open, c->spare}, **l = lists; l < lists + 2; l++)
        for (jbuf *b = *l; b; b = b->next) strbuf_free(&b->sb);
    c->open = c->spare = NULL;
    while (c->arena.head) {
        jarena_blk *n = c->arena.head->next;
        free(c->arena.head);
        c->arena.head = n;
    }
}

_Noreturn void j_fail(jctx *c, int line, int col, const char *fmt, ...) {
    char msg[900];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line <= 0) line = c->line, col = c->col; /* raised below the evaluator: where it was */
    if (line > 0)
        kiln_err_set(c->err, "template line %d column %d: %s", line, col, msg);
    else
        kiln_err_set(c->err, "template: %s", msg);
    longjmp(c->fail, 1);
}

/* Counts n more bytes against the memory budget. */
static void charge_memory(jctx *c, size_t n) {
    if (n > c->lim.max_memory_bytes - c->mem_used)
        j_fail(c, 0, 0, "memory limit exceeded (max_memory_bytes %zu)", c->lim.max_memory_bytes);
    c->mem_used += n;
}

void *j_alloc(jctx *c, size_t n) {
    if (n > c->lim.max_memory_bytes) charge_memory(c, n); /* fails; keeps the rounding below from wrapping */
    n = (n + 15) & ~(size_t)15;
    jarena_blk *b = c->arena.head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        charge_memory(c, sizeof *b + cap);
        b = malloc(sizeof *b + cap);
        if (!b) j_fail(c, 0, 0, "out of memory");
        b->next = c->arena.head;
        b->used = 0;
        b->cap = cap;
        c->arena.head = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

void j_enter(jctx *c) {
    if (++c->depth > c->lim.max_depth)
        j_fail(c, 0, 0, "nesting too deep (max_depth %u levels of calls, expressions and values)", c->lim.max_depth);
}

static void add_steps(jctx *c, uint64_t n) {
    c->steps += n;
    if (c->steps > c->lim.max_steps)
        j_fail(c, 0, 0, "step limit exceeded (max_steps %llu loop iterations, macro calls and items visited)",
               (unsigned long long)c->lim.max_steps);
}
void j_step(jctx *c) { add_steps(c, 1); }
void j_work(jctx *c, size_t units) {
    c->work += units;
    if (c->work < J_WORK_PER_STEP) return;
    uint64_t n = c->work / J_WORK_PER_STEP;
    c->work %= J_WORK_PER_STEP;
    add_steps(c, n);
}

void j_check_len(jctx *c, size_t n, const char *what) {
    if (n > c->lim.max_output_bytes)
        j_fail(c, 0, 0, "%s: result longer than the output limit (max_output_bytes %zu)", what,
               c->lim.max_output_bytes);
}

/* ---- buffers: strbufs that the render owns until closed ---- */
static void unlink_buf(jbuf **list, jbuf *b) {
    if (b->prev) b->prev->next = b->next;
    else *list = b->next;
    if (b->next) b->next->prev = b->prev;
    b->prev = b->next = NULL;
}
static void push_buf(jbuf **list, jbuf *b) {
    b->next = *list;
    if (*list) (*list)->prev = b;
    *list = b;
}

jbuf *jb_open(jctx *c) {
    jbuf *b = c->spare;
    if (b) unlink_buf(&c->spare, b);
    else {
        b = j_alloc(c, sizeof *b);
        b->c = c;
    }
    push_buf(&c->open, b);
    return b;
}

static void jb_close(jbuf *b) {
    unlink_buf(&b->c->open, b);
    strbuf_clear(&b->sb); /* keeps its memory for the next jb_open */
    push_buf(&b->c->spare, b);
}

void jb_put(jbuf *b, const char *s, size_t n) {
    jctx *c = b->c;
    if (n > c->lim.max_output_bytes - b->sb.len) j_check_len(c, b->sb.len + n, "text");
    size_t cap = b->sb.cap;
    if (strbuf_put(&b->sb, s, n)) j_fail(c, 0, 0, "out of memory");
    if (b->sb.cap > cap) charge_memory(c, b->sb.cap - cap);
}
void jb_putc(jbuf *b, char ch) { jb_put(b, &ch, 1); }
void jb_fill(jbuf *b, char ch, size_t n) {
    if (n > b->c->lim.max_output_bytes - b->sb.len) j_check_len(b->c, (size_t)-1, "padding");
    char chunk[256];
    memset(chunk, ch, sizeof chunk);
    for (size_t k; n; n -= k) jb_put(b, chunk, k = n < sizeof chunk ? n : sizeof chunk);
}

jstr *jb_str(jbuf *b) {
    jstr *s = js_new(b->c, b->sb.p ? b->sb.p : "", b->sb.len);
    jb_close(b);
    return s;
}
jval jb_val(jbuf *b) { return (jval){.t = V_STR, .s = jb_str(b)}; }

char *jb_take(jbuf *b, size_t *n) {
    char *p = strbuf_take(&b->sb, n);
    if (!p) j_fail(b->c, 0, 0, "out of memory");
    jb_close(b);
    return p;
}

/* ---- constructors ---- */
jstr *js_new(jctx *c, const char *s, size_t n) {
    jstr *r = j_alloc(c, sizeof *r + n + 1);
    r->n = n;
    if (n) memcpy(r->s, s, n);
    return r;
}
jstr *js_cat(jctx *c, const jstr *a, const jstr *b) {
    if (b->n > c->lim.max_output_bytes - (a->n < c->lim.max_output_bytes ? a->n : c->lim.max_output_bytes))
        j_check_len(c, (size_t)-1, "string concatenation");
    jstr *r = j_alloc(c, sizeof *r + a->n + b->n + 1);
    r->n = a->n + b->n;
    memcpy(r->s, a->s, a->n);
    memcpy(r->s + a->n, b->s, b->n);
    return r;
}
jlist *jl_new(jctx *c, size_t cap) {
    jlist *l = j_alloc(c, sizeof *l);
    l->cap = cap ? cap : 4;
    l->v = j_alloc(c, l->cap * sizeof(jval));
    return l;
}
void jl_push(jctx *c, jlist *l, jval v) {
    if (l->n == l->cap) {
        jval *nv = j_alloc(c, 2 * l->cap * sizeof(jval));
        memcpy(nv, l->v, l->n * sizeof(jval));
        l->v = nv;
        l->cap *= 2;
    }
    l->v[l->n++] = v;
}
jdict *jd_new(jctx *c) {
    jdict *d = j_alloc(c, sizeof *d);
    return d;
}
jval *jd_get(jctx *c, const jdict *d, const char *key, size_t n) {
    j_work(c, d->n * J_WORK_PER_KEY);
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == V_STR && d->k[i].s->n == n) {
            j_work(c, n);
            if (memcmp(d->k[i].s->s, key, n) == 0) return &d->v[i];
        }
    return NULL;
}
jval *jd_find_key(jctx *c, const jdict *d, jval key) {
    if (key.t == V_STR) return jd_get(c, d, key.s->s, key.s->n);
    j_work(c, d->n * J_WORK_PER_KEY);
    for (size_t i = 0; i < d->n; i++)
        if (jv_equal(c, d->k[i], key)) return &d->v[i];
    return NULL;
}
void jd_set(jctx *c, jdict *d, jval key, jval v) {
    jval *old = jd_find_key(c, d, key);
    if (old) {
        *old = v;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 2;
        jval *nk = j_alloc(c, cap * sizeof(jval)), *nv = j_alloc(c, cap * sizeof(jval));
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

static bool equal_containers(jctx *c, jval a, jval b);

bool jv_equal(jctx *c, jval a, jval b) {
    if (is_num(a) && is_num(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT) return (a.t == V_INT ? a.i : a.b) == (b.t == V_INT ? b.i : b.b);
        return num(a) == num(b);
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case V_UNDEF:
    case V_NONE: return true;
    case V_STR:
        if (a.s->n != b.s->n) return false;
        j_work(c, a.s->n);
        return memcmp(a.s->s, b.s->s, a.s->n) == 0;
    case V_LIST:
    case V_DICT: return equal_containers(c, a, b);
    case V_LOOP: return a.lp == b.lp;
    case V_MACRO: return a.m == b.m;
    case V_FUNC: return a.fn == b.fn;
    default: return false;
    }
}

/* Element by element; the same object is equal to itself without a look inside, as Python's list and dict
 * comparison (which also makes a list that contains itself comparable). */
static bool equal_containers(jctx *c, jval a, jval b) {
    if (a.t == V_LIST ? a.l == b.l : a.d == b.d) return true;
    bool same = true;
    j_enter(c);
    if (a.t == V_LIST) {
        same = a.l->n == b.l->n;
        for (size_t i = 0; same && i < a.l->n; i++) {
            j_step(c);
            same = jv_equal(c, a.l->v[i], b.l->v[i]);
        }
    } else {
        same = a.d->n == b.d->n;
        for (size_t i = 0; same && i < a.d->n; i++) {
            j_step(c);
            jval *o = jd_find_key(c, b.d, a.d->k[i]);
            same = o && jv_equal(c, a.d->v[i], *o);
        }
    }
    j_leave(c);
    return same;
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
    j_enter(c);
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
            j_step(c);
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
            j_step(c);
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
    j_leave(c);
}

jstr *jv_to_str(jctx *c, jval v) {
    if (v.t == V_STR) return v.s;
    jbuf *b = jb_open(c);
    jv_print(c, b, v, false);
    return jb_str(b);
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

static void json_nl(jbuf *b, long long indent, int depth) {
    jb_putc(b, '\n');
    for (int i = 0; i < depth; i++) jb_fill(b, ' ', (size_t)indent);
}

static int key_cmp(const void *a, const void *b) {
    const jval *x = *(const jval *const *)a, *y = *(const jval *const *)b;
    size_t n = x->s->n < y->s->n ? x->s->n : y->s->n;
    int r = memcmp(x->s->s, y->s->s, n);
    return r ? r : (x->s->n > y->s->n) - (x->s->n < y->s->n);
}

void jv_tojson(jctx *c, jbuf *b, jval v, long long indent, const char *isep, const char *ksep, bool sort_keys,
               int depth, int line, int col) {
    char tmp[64];
    if (depth > 200) j_fail(c, line, col, "tojson: nesting too deep");
    j_enter(c);
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
            j_step(c);
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
        const jval **order = j_alloc(c, n * sizeof *order);
        for (size_t i = 0; i < n; i++) {
            if (v.d->k[i].t != V_STR) j_fail(c, line, col, "tojson: only string keys are supported");
            order[i] = &v.d->k[i];
        }
        if (sort_keys) qsort(order, n, sizeof *order, key_cmp);
        jb_putc(b, '{');
        for (size_t i = 0; i < n; i++) {
            j_step(c);
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
    j_leave(c);
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

size_t ju_len(jctx *c, const char *s, size_t n) {
    j_work(c, n * J_WORK_PER_CHAR);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += ((unsigned char)s[i] & 0xC0) != 0x80;
    return k;
}
size_t ju_offset(jctx *c, const char *s, size_t n, size_t cp) {
    size_t i = 0, k = 0;
    for (; i < n; i++) {
        if (((unsigned char)s[i] & 0xC0) != 0x80) {
            if (k == cp) break;
            k++;
        }
    }
    j_work(c, i * J_WORK_PER_CHAR);
    return i;
}
