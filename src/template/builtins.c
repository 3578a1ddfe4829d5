/* builtins.c — jinja2's filters and tests, Python's str/dict/list methods, and the globals transformers
 * provides (range, namespace, raise_exception, strftime_now, dict). Each takes evaluated arguments. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "template/eval.h"

/* Python's str.isspace() set as UTF-8, for strip()/split() without arguments. */
static const char PY_WS[] = " \t\n\r\v\f\x1c\x1d\x1e\x1f\xc2\x85\xc2\xa0\xe1\x9a\x80\xe2\x80\x80\xe2\x80\x81"
                            "\xe2\x80\x82\xe2\x80\x83\xe2\x80\x84\xe2\x80\x85\xe2\x80\x86\xe2\x80\x87\xe2\x80\x88"
                            "\xe2\x80\x89\xe2\x80\x8a\xe2\x80\xa8\xe2\x80\xa9\xe2\x80\xaf\xe2\x81\x9f\xe3\x80\x80";

static size_t cp_len(const char *s, size_t n, size_t i) { /* bytes of the code point at i */
    size_t j = i + 1;
    while (j < n && ((unsigned char)s[j] & 0xC0) == 0x80) j++;
    return j - i;
}
static size_t cp_start_before(const char *s, size_t i) { /* start of the code point ending at i */
    size_t j = i - 1;
    while (j > 0 && ((unsigned char)s[j] & 0xC0) == 0x80) j--;
    return j;
}
static bool in_set(const char *set, size_t setn, const char *ch, size_t n) {
    return memmem(set, setn, ch, n) != NULL;
}

static jstr *need_str(ev *E, jnode *at, jval v, const char *what) {
    if (v.t == V_STR) return v.s;
    if (v.t == V_UNDEF) ev_undefined_error(E, at, v);
    j_fail(E->c, at->line, at->col, "%s expects a string, got %s", what, jv_typename(v));
}

static jval as_str(ev *E, jval v) { return (jval){.t = V_STR, .s = jv_to_str(E->c, v)}; }

static jval strip(ev *E, jnode *at, jstr *s, jval *chars, bool left, bool right) {
    const char *set = PY_WS;
    size_t setn = sizeof PY_WS - 1;
    if (chars && chars->t != V_NONE) {
        jstr *cs = need_str(E, at, *chars, "strip");
        set = cs->s;
        setn = cs->n;
    }
    size_t a = 0, b = s->n;
    while (left && a < b && in_set(set, setn, s->s + a, cp_len(s->s, b, a))) a += cp_len(s->s, b, a);
    while (right && b > a) {
        size_t k = cp_start_before(s->s, b);
        if (k < a || !in_set(set, setn, s->s + k, b - k)) break;
        b = k;
    }
    return jv_str(E->c, s->s + a, b - a);
}

static bool is_py_space(const char *s, size_t n, size_t i, size_t *len) {
    *len = cp_len(s, n, i);
    return in_set(PY_WS, sizeof PY_WS - 1, s + i, *len);
}

static jval split(ev *E, jnode *at, jstr *s, jval *sepv, jval *maxv) {
    long long maxsplit = maxv && maxv->t == V_INT ? maxv->i : -1;
    jlist *l = jl_new(E->c, 4);
    if (!sepv || sepv->t == V_NONE) { /* runs of whitespace, no empty strings */
        size_t i = 0, n = s->n, w;
        for (;;) {
            while (i < n && is_py_space(s->s, n, i, &w)) i += w;
            if (i >= n) break;
            if (maxsplit >= 0 && (long long)l->n == maxsplit) {
                size_t e = n;
                while (e > i) {
                    size_t k = cp_start_before(s->s, e);
                    if (!in_set(PY_WS, sizeof PY_WS - 1, s->s + k, e - k)) break;
                    e = k;
                }
                jl_push(E->c, l, jv_str(E->c, s->s + i, e - i));
                break;
            }
            size_t j = i;
            while (j < n && !is_py_space(s->s, n, j, &w)) j += w;
            jl_push(E->c, l, jv_str(E->c, s->s + i, j - i));
            i = j;
        }
        return (jval){.t = V_LIST, .l = l};
    }
    jstr *sep = need_str(E, at, *sepv, "split");
    if (!sep->n) j_fail(E->c, at->line, at->col, "empty separator");
    size_t i = 0;
    for (;;) {
        const char *hit = maxsplit >= 0 && (long long)l->n >= maxsplit ? NULL
                                                                        : memmem(s->s + i, s->n - i, sep->s, sep->n);
        if (!hit) {
            jl_push(E->c, l, jv_str(E->c, s->s + i, s->n - i));
            break;
        }
        jl_push(E->c, l, jv_str(E->c, s->s + i, (size_t)(hit - (s->s + i))));
        i = (size_t)(hit - s->s) + sep->n;
    }
    return (jval){.t = V_LIST, .l = l};
}

static jval replace(ev *E, jstr *s, jstr *old, jstr *new, long long count) {
    jbuf *b = jb_open(E->c);
    size_t i = 0;
    long long done = 0;
    if (!old->n) { /* Python inserts between every code point */
        for (;;) {
            if (count < 0 || done < count) jb_put(b, new->s, new->n), done++;
            if (i >= s->n) break;
            size_t w = cp_len(s->s, s->n, i);
            jb_put(b, s->s + i, w);
            i += w;
        }
    } else {
        while (i <= s->n) {
            const char *hit = (count >= 0 && done >= count) ? NULL : memmem(s->s + i, s->n - i, old->s, old->n);
            if (!hit) break;
            jb_put(b, s->s + i, (size_t)(hit - (s->s + i)));
            jb_put(b, new->s, new->n);
            i = (size_t)(hit - s->s) + old->n;
            done++;
        }
        jb_put(b, s->s + i, s->n - i);
    }
    return jb_val(b);
}

/* Case mapping is ASCII-only; other characters pass through unchanged. */
enum { CASE_UPPER, CASE_LOWER, CASE_TITLE_PY, CASE_TITLE_JINJA, CASE_CAPITALIZE };
static jval change_case(ev *E, jstr *s, int mode) {
    jstr *r = js_new(E->c, s->s, s->n);
    bool prev_cased = false;
    for (size_t i = 0; i < r->n; i++) {
        unsigned char ch = (unsigned char)r->s[i];
        bool alpha = isalpha(ch) || ch >= 0x80;
        switch (mode) {
        case CASE_UPPER: r->s[i] = (char)toupper(ch); break;
        case CASE_LOWER: r->s[i] = (char)tolower(ch); break;
        case CASE_CAPITALIZE: r->s[i] = (char)(i == 0 ? toupper(ch) : tolower(ch)); break;
        case CASE_TITLE_PY:
            r->s[i] = (char)(prev_cased ? tolower(ch) : toupper(ch));
            prev_cased = alpha;
            break;
        case CASE_TITLE_JINJA: /* words start after whitespace or one of -([{< */
            r->s[i] = (char)(prev_cased ? tolower(ch) : toupper(ch));
            prev_cased = !(isspace(ch) || strchr("-([{<", ch));
            break;
        }
    }
    return (jval){.t = V_STR, .s = r};
}

static jval str_format(ev *E, jnode *at, jstr *fmt, jargs *A) {
    jbuf *b = jb_open(E->c);
    size_t auto_i = 0;
    for (size_t i = 0; i < fmt->n; i++) {
        char ch = fmt->s[i];
        if ((ch == '{' || ch == '}') && i + 1 < fmt->n && fmt->s[i + 1] == ch) {
            jb_putc(b, ch);
            i++;
        } else if (ch == '{') {
            const char *end = memchr(fmt->s + i, '}', fmt->n - i);
            if (!end) j_fail(E->c, at->line, at->col, "format: single '{' encountered");
            size_t fl = (size_t)(end - (fmt->s + i + 1));
            const char *field = fmt->s + i + 1;
            jval *v;
            if (fl == 0) v = jargs_get(A, auto_i++, NULL);
            else if (isdigit((unsigned char)field[0])) v = jargs_get(A, (size_t)atoi(field), NULL);
            else {
                char name[64];
                snprintf(name, sizeof name, "%.*s", (int)fl, field);
                v = jargs_get(A, (size_t)-1, name);
            }
            if (!v) j_fail(E->c, at->line, at->col, "format: missing argument for '{%.*s}'", (int)fl, field);
            jv_print(E->c, b, *v, false);
            i += fl + 1;
        } else jb_putc(b, ch);
    }
    return jb_val(b);
}

static long long count_sub(jstr *s, jstr *sub) {
    if (!sub->n) return (long long)ju_len(s->s, s->n) + 1;
    long long k = 0;
    for (size_t i = 0; i + sub->n <= s->n;) {
        const char *hit = memmem(s->s + i, s->n - i, sub->s, sub->n);
        if (!hit) break;
        k++;
        i = (size_t)(hit - s->s) + sub->n;
    }
    return k;
}

/* startswith/endswith: a string or a tuple of strings (a tuple's items are not searched further). */
static bool affix_match(ev *E, jnode *at, jstr *s, jval arg, bool start) {
    const char *what = start ? "startswith" : "endswith";
    size_t n = arg.t == V_LIST ? arg.l->n : 1;
    for (size_t i = 0; i < n; i++) {
        jstr *p = need_str(E, at, arg.t == V_LIST ? arg.l->v[i] : arg, what);
        if (p->n <= s->n && memcmp(start ? s->s : s->s + s->n - p->n, p->s, p->n) == 0) return true;
    }
    return false;
}

/* ---- str methods: self is a string ---- */
static jval *need_arg(ev *E, jnode *at, jargs *A, size_t pos, const char *name, const char *what) {
    jval *v = jargs_get(A, pos, name);
    if (!v) j_fail(E->c, at->line, at->col, "%s() is missing an argument", what);
    return v;
}

static jval m_startswith(ev *E, jnode *at, jval self, jargs *A) {
    return jv_bool(affix_match(E, at, self.s, *need_arg(E, at, A, 0, NULL, "startswith"), true));
}
static jval m_endswith(ev *E, jnode *at, jval self, jargs *A) {
    return jv_bool(affix_match(E, at, self.s, *need_arg(E, at, A, 0, NULL, "endswith"), false));
}
static jval m_split(ev *E, jnode *at, jval self, jargs *A) {
    return split(E, at, self.s, jargs_get(A, 0, "sep"), jargs_get(A, 1, "maxsplit"));
}
static jval m_strip(ev *E, jnode *at, jval self, jargs *A) { return strip(E, at, self.s, jargs_get(A, 0, NULL), true, true); }
static jval m_lstrip(ev *E, jnode *at, jval self, jargs *A) { return strip(E, at, self.s, jargs_get(A, 0, NULL), true, false); }
static jval m_rstrip(ev *E, jnode *at, jval self, jargs *A) { return strip(E, at, self.s, jargs_get(A, 0, NULL), false, true); }
static jval m_replace(ev *E, jnode *at, jval self, jargs *A) {
    jval *old = need_arg(E, at, A, 0, NULL, "replace"), *new = need_arg(E, at, A, 1, NULL, "replace");
    jval *cnt = jargs_get(A, 2, "count");
    return replace(E, self.s, need_str(E, at, *old, "replace"), need_str(E, at, *new, "replace"),
                   cnt && cnt->t == V_INT ? cnt->i : -1);
}
static jval m_upper(ev *E, jnode *at, jval self, jargs *A) { (void)at, (void)A; return change_case(E, self.s, CASE_UPPER); }
static jval m_lower(ev *E, jnode *at, jval self, jargs *A) { (void)at, (void)A; return change_case(E, self.s, CASE_LOWER); }
static jval m_title(ev *E, jnode *at, jval self, jargs *A) { (void)at, (void)A; return change_case(E, self.s, CASE_TITLE_PY); }
static jval m_capitalize(ev *E, jnode *at, jval self, jargs *A) {
    (void)at, (void)A;
    return change_case(E, self.s, CASE_CAPITALIZE);
}
/* find / rfind: the code point index of the first / last occurrence, or -1. */
static jval find_sub(ev *E, jnode *at, jstr *s, jargs *A, bool last) {
    jstr *sub = need_str(E, at, *need_arg(E, at, A, 0, NULL, last ? "rfind" : "find"), last ? "rfind" : "find");
    const char *hit = NULL;
    if (!last) hit = memmem(s->s, s->n, sub->s, sub->n);
    else
        for (size_t i = s->n + 1; i-- > 0 && !hit;)
            if (i + sub->n <= s->n && memcmp(s->s + i, sub->s, sub->n) == 0) hit = s->s + i;
    return jv_int(hit ? (long long)ju_len(s->s, (size_t)(hit - s->s)) : -1);
}
static jval m_find(ev *E, jnode *at, jval self, jargs *A) { return find_sub(E, at, self.s, A, false); }
static jval m_rfind(ev *E, jnode *at, jval self, jargs *A) { return find_sub(E, at, self.s, A, true); }
static jval m_str_count(ev *E, jnode *at, jval self, jargs *A) {
    return jv_int(count_sub(self.s, need_str(E, at, *need_arg(E, at, A, 0, NULL, "count"), "count")));
}
static jval m_format(ev *E, jnode *at, jval self, jargs *A) { return str_format(E, at, self.s, A); }
static jval m_join(ev *E, jnode *at, jval self, jargs *A) {
    jlist *l = ev_iterable(E, at, *need_arg(E, at, A, 0, NULL, "join"));
    jbuf *b = jb_open(E->c);
    for (size_t i = 0; i < l->n; i++) {
        if (i) jb_put(b, self.s->s, self.s->n);
        jstr *x = need_str(E, at, l->v[i], "join");
        jb_put(b, x->s, x->n);
    }
    return jb_val(b);
}
static jval m_splitlines(ev *E, jnode *at, jval self, jargs *A) {
    (void)at, (void)A;
    jstr *s = self.s;
    jlist *l = jl_new(E->c, 4);
    size_t i = 0;
    while (i < s->n) {
        size_t j = i;
        while (j < s->n && s->s[j] != '\n' && s->s[j] != '\r') j++;
        jl_push(E->c, l, jv_str(E->c, s->s + i, j - i));
        if (j < s->n && s->s[j] == '\r' && j + 1 < s->n && s->s[j + 1] == '\n') j++;
        i = j + 1;
    }
    return (jval){.t = V_LIST, .l = l};
}
/* str.isdigit() and friends (ASCII classes): true if s is non-empty and every byte is in the class. */
static bool all_of(const jstr *s, int (*is)(int)) {
    bool ok = s->n > 0;
    for (size_t i = 0; ok && i < s->n; i++) ok = is((unsigned char)s->s[i]) != 0;
    return ok;
}
/* isupper / islower: no character of the other case, and at least one cased. */
static bool cased_as(const jstr *s, int (*is)(int), int (*other)(int)) {
    bool any = false;
    for (size_t i = 0; i < s->n; i++) {
        if (other((unsigned char)s->s[i])) return false;
        any |= is((unsigned char)s->s[i]) != 0;
    }
    return any;
}
static jval m_isdigit(ev *E, jnode *at, jval self, jargs *A) { (void)E, (void)at, (void)A; return jv_bool(all_of(self.s, isdigit)); }
static jval m_isalpha(ev *E, jnode *at, jval self, jargs *A) { (void)E, (void)at, (void)A; return jv_bool(all_of(self.s, isalpha)); }
static jval m_isalnum(ev *E, jnode *at, jval self, jargs *A) { (void)E, (void)at, (void)A; return jv_bool(all_of(self.s, isalnum)); }
static jval m_isspace(ev *E, jnode *at, jval self, jargs *A) { (void)E, (void)at, (void)A; return jv_bool(all_of(self.s, isspace)); }
static jval m_isupper(ev *E, jnode *at, jval self, jargs *A) {
    (void)E, (void)at, (void)A;
    return jv_bool(cased_as(self.s, isupper, islower));
}
static jval m_islower(ev *E, jnode *at, jval self, jargs *A) {
    (void)E, (void)at, (void)A;
    return jv_bool(cased_as(self.s, islower, isupper));
}

static const struct jbuiltin_method str_methods[] = {
    {"startswith", m_startswith}, {"endswith", m_endswith}, {"split", m_split},     {"strip", m_strip},
    {"lstrip", m_lstrip},         {"rstrip", m_rstrip},     {"replace", m_replace}, {"upper", m_upper},
    {"lower", m_lower},           {"title", m_title},       {"capitalize", m_capitalize}, {"find", m_find},
    {"rfind", m_rfind},           {"count", m_str_count},   {"format", m_format},   {"join", m_join},
    {"isdigit", m_isdigit},       {"isalpha", m_isalpha},   {"isalnum", m_isalnum}, {"isspace", m_isspace},
    {"isupper", m_isupper},       {"islower", m_islower},   {"splitlines", m_splitlines}, {NULL, NULL}};

/* ---- dict methods ---- */
static jval items_of(ev *E, jdict *d) {
    jlist *l = jl_new(E->c, d->n);
    for (size_t i = 0; i < d->n; i++) {
        jlist *pair = jl_new(E->c, 2);
        jl_push(E->c, pair, d->k[i]);
        jl_push(E->c, pair, d->v[i]);
        jl_push(E->c, l, (jval){.t = V_LIST, .l = pair});
    }
    return (jval){.t = V_LIST, .l = l};
}
static jval m_items(ev *E, jnode *at, jval self, jargs *A) { (void)at, (void)A; return items_of(E, self.d); }
static jval keys_or_values(ev *E, jdict *d, bool keys) {
    jlist *l = jl_new(E->c, d->n);
    for (size_t i = 0; i < d->n; i++) jl_push(E->c, l, keys ? d->k[i] : d->v[i]);
    return (jval){.t = V_LIST, .l = l};
}
static jval m_keys(ev *E, jnode *at, jval self, jargs *A) { (void)at, (void)A; return keys_or_values(E, self.d, true); }
static jval m_values(ev *E, jnode *at, jval self, jargs *A) { (void)at, (void)A; return keys_or_values(E, self.d, false); }
static jval m_get(ev *E, jnode *at, jval self, jargs *A) {
    jval *v = jd_find_key(E->c, self.d, *need_arg(E, at, A, 0, NULL, "get")), *dflt = jargs_get(A, 1, NULL);
    return v ? *v : dflt ? *dflt : jv_none();
}
static jval m_setdefault(ev *E, jnode *at, jval self, jargs *A) {
    jval key = *need_arg(E, at, A, 0, NULL, "setdefault"), *dflt = jargs_get(A, 1, NULL);
    jval *v = jd_find_key(E->c, self.d, key);
    if (v) return *v;
    jd_set(E->c, self.d, key, dflt ? *dflt : jv_none());
    return dflt ? *dflt : jv_none();
}
static jval m_dict_pop(ev *E, jnode *at, jval self, jargs *A) {
    jdict *d = self.d;
    jval *v = jd_find_key(E->c, d, *need_arg(E, at, A, 0, NULL, "pop")), *dflt = jargs_get(A, 1, NULL);
    if (!v) {
        if (!dflt) j_fail(E->c, at->line, at->col, "KeyError in pop()");
        return *dflt;
    }
    jval r = *v;
    size_t k = (size_t)(v - d->v); /* remove, keeping order */
    memmove(d->k + k, d->k + k + 1, (d->n - k - 1) * sizeof(jval));
    memmove(d->v + k, d->v + k + 1, (d->n - k - 1) * sizeof(jval));
    d->n--;
    return r;
}
static jval m_update(ev *E, jnode *at, jval self, jargs *A) {
    (void)at;
    jval *a0 = jargs_get(A, 0, NULL);
    if (a0 && a0->t == V_DICT)
        for (size_t i = 0; i < a0->d->n; i++) jd_set(E->c, self.d, a0->d->k[i], a0->d->v[i]);
    for (size_t i = 0; i < A->n; i++)
        if (A->kw[i]) jd_set(E->c, self.d, jv_cstr(E->c, A->kw[i]), A->v[i]);
    return jv_none();
}
static jval m_dict_copy(ev *E, jnode *at, jval self, jargs *A) {
    (void)at, (void)A;
    jdict *c = jd_new(E->c);
    for (size_t i = 0; i < self.d->n; i++) jd_set(E->c, c, self.d->k[i], self.d->v[i]);
    return (jval){.t = V_DICT, .d = c};
}

static const struct jbuiltin_method dict_methods[] = {
    {"items", m_items}, {"keys", m_keys},     {"values", m_values},         {"get", m_get},
    {"pop", m_dict_pop}, {"update", m_update}, {"copy", m_dict_copy}, {"setdefault", m_setdefault}, {NULL, NULL}};

/* ---- list methods ---- */
static jval m_append(ev *E, jnode *at, jval self, jargs *A) {
    jl_push(E->c, self.l, *need_arg(E, at, A, 0, NULL, "append"));
    return jv_none();
}
static jval m_extend(ev *E, jnode *at, jval self, jargs *A) {
    jlist *x = ev_iterable(E, at, *need_arg(E, at, A, 0, NULL, "extend"));
    size_t n = x->n; /* l.extend(l) adds each item once */
    for (size_t i = 0; i < n; i++) jl_push(E->c, self.l, x->v[i]);
    return jv_none();
}
static jval m_list_pop(ev *E, jnode *at, jval self, jargs *A) {
    jlist *l = self.l;
    jval *a0 = jargs_get(A, 0, NULL);
    long long i = a0 && a0->t == V_INT ? a0->i : -1;
    if (i < 0) i += (long long)l->n;
    if (i < 0 || i >= (long long)l->n) j_fail(E->c, at->line, at->col, "pop index out of range");
    jval r = l->v[i];
    memmove(l->v + i, l->v + i + 1, (l->n - (size_t)i - 1) * sizeof(jval));
    l->n--;
    return r;
}
static jval m_insert(ev *E, jnode *at, jval self, jargs *A) {
    jlist *l = self.l;
    jval *a0 = jargs_get(A, 0, NULL), *a1 = jargs_get(A, 1, NULL);
    if (!a0 || !a1 || a0->t != V_INT) j_fail(E->c, at->line, at->col, "insert() takes an index and a value");
    long long i = a0->i < 0 ? a0->i + (long long)l->n : a0->i;
    i = i < 0 ? 0 : i > (long long)l->n ? (long long)l->n : i;
    jl_push(E->c, l, jv_none());
    memmove(l->v + i + 1, l->v + i, (l->n - (size_t)i - 1) * sizeof(jval));
    l->v[i] = *a1;
    return jv_none();
}
/* The position of the first item equal to x, or -1. */
static long long list_find(ev *E, jlist *l, jval x) {
    for (size_t i = 0; i < l->n; i++) {
        j_step(E->c);
        if (jv_equal(E->c, l->v[i], x)) return (long long)i;
    }
    return -1;
}
static jval m_index(ev *E, jnode *at, jval self, jargs *A) {
    long long i = list_find(E, self.l, *need_arg(E, at, A, 0, NULL, "index"));
    if (i < 0) j_fail(E->c, at->line, at->col, "index(): value is not in list");
    return jv_int(i);
}
static jval m_list_count(ev *E, jnode *at, jval self, jargs *A) {
    jval x = *need_arg(E, at, A, 0, NULL, "count");
    long long k = 0;
    for (size_t i = 0; i < self.l->n; i++) {
        j_step(E->c);
        k += jv_equal(E->c, self.l->v[i], x);
    }
    return jv_int(k);
}
static jval m_remove(ev *E, jnode *at, jval self, jargs *A) {
    jlist *l = self.l;
    long long i = list_find(E, l, *need_arg(E, at, A, 0, NULL, "remove"));
    if (i < 0) j_fail(E->c, at->line, at->col, "remove(): value is not in list");
    memmove(l->v + i, l->v + i + 1, (l->n - (size_t)i - 1) * sizeof(jval));
    l->n--;
    return jv_none();
}
static jval m_reverse(ev *E, jnode *at, jval self, jargs *A) {
    (void)E, (void)at, (void)A;
    jlist *l = self.l;
    for (size_t i = 0; i < l->n / 2; i++) {
        jval t = l->v[i];
        l->v[i] = l->v[l->n - 1 - i];
        l->v[l->n - 1 - i] = t;
    }
    return jv_none();
}
static jval copy_list(ev *E, const jlist *src, bool reversed) {
    jlist *l = jl_new(E->c, src->n);
    for (size_t i = 0; i < src->n; i++) jl_push(E->c, l, src->v[reversed ? src->n - 1 - i : i]);
    return (jval){.t = V_LIST, .l = l};
}
static jval m_list_copy(ev *E, jnode *at, jval self, jargs *A) { (void)at, (void)A; return copy_list(E, self.l, false); }

static const struct jbuiltin_method list_methods[] = {
    {"append", m_append}, {"pop", m_list_pop},   {"index", m_index},     {"count", m_list_count}, {"extend", m_extend},
    {"insert", m_insert}, {"remove", m_remove}, {"reverse", m_reverse}, {"copy", m_list_copy},  {NULL, NULL}};

/* ---- loop methods ---- */
static jval m_cycle(ev *E, jnode *at, jval self, jargs *A) {
    if (!A->n) j_fail(E->c, at->line, at->col, "no items for cycling given");
    return A->v[self.lp->i % A->n];
}
static const struct jbuiltin_method loop_methods[] = {{"cycle", m_cycle}, {NULL, NULL}};

const struct jbuiltin_method *ev_method_find(jval self, const char *name) {
    const struct jbuiltin_method *m = self.t == V_STR                     ? str_methods
                                      : self.t == V_DICT && !self.d->is_ns ? dict_methods
                                      : self.t == V_LIST                    ? list_methods
                                      : self.t == V_LOOP                    ? loop_methods
                                                                            : NULL;
    for (; m && m->name; m++)
        if (!strcmp(m->name, name)) return m;
    return NULL;
}

/* ---- globals ---- */
/* range(): the count is computed in unsigned 64-bit arithmetic, so no bounds overflow it past the cap. */
static jval g_range(ev *E, jnode *at, jargs *A) {
    long long lo = 0, hi, step = 1;
    for (size_t i = 0; i < A->n; i++)
        if (A->v[i].t != V_INT || A->kw[i]) j_fail(E->c, at->line, at->col, "range() takes integer arguments");
    if (A->n == 1) hi = A->v[0].i;
    else if (A->n == 2 || A->n == 3) {
        lo = A->v[0].i;
        hi = A->v[1].i;
        if (A->n == 3) step = A->v[2].i;
    } else j_fail(E->c, at->line, at->col, "range() takes 1 to 3 arguments");
    if (step == 0) j_fail(E->c, at->line, at->col, "range() step must not be zero");
    unsigned long long span = 0, ustep = step > 0 ? (unsigned long long)step : 0ull - (unsigned long long)step;
    if (step > 0 ? lo < hi : lo > hi)
        span = step > 0 ? (unsigned long long)hi - (unsigned long long)lo : (unsigned long long)lo - (unsigned long long)hi;
    unsigned long long count = span ? (span - 1) / ustep + 1 : 0;
    if (count > 100000) j_fail(E->c, at->line, at->col, "range too big (%llu items; the limit is 100000)", count);
    jlist *l = jl_new(E->c, count ? (size_t)count : 1);
    for (unsigned long long k = 0; k < count; k++) /* lo + k*step, in range by construction */
        jl_push(E->c, l, jv_int((long long)((unsigned long long)lo + k * (unsigned long long)step)));
    return (jval){.t = V_LIST, .l = l};
}
/* namespace(...) and dict(...): a mapping from a dict argument and keyword arguments. */
static jval make_mapping(ev *E, jargs *A, bool is_ns) {
    jval *a0 = jargs_get(A, 0, NULL);
    jdict *d = jd_new(E->c);
    d->is_ns = is_ns;
    if (a0 && a0->t == V_DICT)
        for (size_t i = 0; i < a0->d->n; i++) jd_set(E->c, d, a0->d->k[i], a0->d->v[i]);
    for (size_t i = 0; i < A->n; i++)
        if (A->kw[i]) jd_set(E->c, d, jv_cstr(E->c, A->kw[i]), A->v[i]);
    return (jval){.t = V_DICT, .d = d};
}
static jval g_namespace(ev *E, jnode *at, jargs *A) { (void)at; return make_mapping(E, A, true); }
static jval g_dict(ev *E, jnode *at, jargs *A) { (void)at; return make_mapping(E, A, false); }
static jval g_raise_exception(ev *E, jnode *at, jargs *A) {
    jval *a0 = jargs_get(A, 0, NULL);
    jstr *msg = a0 ? jv_to_str(E->c, *a0) : js_new(E->c, "", 0);
    j_fail(E->c, at->line, at->col, "raise_exception: %s", msg->s);
}
static jval g_strftime_now(ev *E, jnode *at, jargs *A) {
    jval *a0 = jargs_get(A, 0, NULL);
    jstr *fmt = need_str(E, at, a0 ? *a0 : jv_undef("format"), "strftime_now");
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char buf[256];
    size_t n = strftime(buf, sizeof buf, fmt->s, &tm);
    return jv_str(E->c, buf, n);
}

static const struct jglobal globals[] = {{"range", g_range},
                                         {"namespace", g_namespace},
                                         {"raise_exception", g_raise_exception},
                                         {"strftime_now", g_strftime_now},
                                         {"dict", g_dict},
                                         {NULL, NULL}};

const struct jglobal *ev_global_find(const char *name) {
    for (const struct jglobal *g = globals; g->name; g++)
        if (!strcmp(g->name, name)) return g;
    return NULL;
}

/* ---- tests: `v is name(args)` ---- */
typedef bool (*jtest_fn)(ev *E, jnode *at, jval v, jargs *A);

#define TYPE_TEST(fname, cond)                             \
    static bool fname(ev *E, jnode *at, jval v, jargs *A) { \
        (void)E, (void)at, (void)A;                         \
        return cond;                                        \
    }
TYPE_TEST(t_defined, v.t != V_UNDEF)
TYPE_TEST(t_undefined, v.t == V_UNDEF)
TYPE_TEST(t_none, v.t == V_NONE)
TYPE_TEST(t_string, v.t == V_STR)
TYPE_TEST(t_mapping, v.t == V_DICT)
TYPE_TEST(t_sequence, v.t == V_LIST || v.t == V_STR || v.t == V_DICT)
TYPE_TEST(t_iterable, v.t == V_LIST || v.t == V_STR || v.t == V_DICT || v.t == V_UNDEF)
TYPE_TEST(t_number, v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL)
TYPE_TEST(t_integer, v.t == V_INT)
TYPE_TEST(t_float, v.t == V_FLOAT)
TYPE_TEST(t_boolean, v.t == V_BOOL)
TYPE_TEST(t_true, v.t == V_BOOL && v.b)
TYPE_TEST(t_false, v.t == V_BOOL && !v.b)
TYPE_TEST(t_callable, v.t == V_MACRO || v.t == V_FUNC || v.t == V_METHOD)
#undef TYPE_TEST

static bool t_lower(ev *E, jnode *at, jval v, jargs *A) { return jv_truthy(m_islower(E, at, as_str(E, v), A)); }
static bool t_upper(ev *E, jnode *at, jval v, jargs *A) { return jv_truthy(m_isupper(E, at, as_str(E, v), A)); }

static long long need_int(ev *E, jnode *at, jval v, const char *test) {
    if (v.t != V_INT) j_fail(E->c, at->line, at->col, "test '%s' needs an integer", test);
    return v.i;
}
static bool t_odd(ev *E, jnode *at, jval v, jargs *A) { (void)A; return (need_int(E, at, v, "odd") & 1) != 0; }
static bool t_even(ev *E, jnode *at, jval v, jargs *A) { (void)A; return (need_int(E, at, v, "even") & 1) == 0; }
static bool t_divisibleby(ev *E, jnode *at, jval v, jargs *A) {
    long long x = need_int(E, at, v, "divisibleby");
    jval *d = jargs_get(A, 0, NULL);
    if (!d || d->t != V_INT || d->i == 0) j_fail(E->c, at->line, at->col, "divisibleby needs a non-zero integer");
    return d->i == -1 || x % d->i == 0; /* LLONG_MIN % -1 traps in C */
}

static jval *test_arg(ev *E, jnode *at, jargs *A) {
    jval *a0 = jargs_get(A, 0, NULL);
    if (!a0) j_fail(E->c, at->line, at->col, "test '%s' needs an argument", at->name);
    return a0;
}
/* The ordering tests evaluate the operator itself, so they compare (and fail) exactly as `<` does. */
static bool compare_as(ev *E, jnode *at, jval v, jargs *A, const char *op) {
    jnode cmp = *at;
    cmp.k = E_BIN;
    snprintf(cmp.op, sizeof cmp.op, "%s", op);
    cmp.a = &(jnode){.k = E_CONST, .val = v};
    cmp.b = &(jnode){.k = E_CONST, .val = *test_arg(E, at, A)};
    return jv_truthy(ev_expr(E, &cmp));
}
static bool t_eq(ev *E, jnode *at, jval v, jargs *A) { return jv_equal(E->c, v, *test_arg(E, at, A)); }
static bool t_ne(ev *E, jnode *at, jval v, jargs *A) { return !jv_equal(E->c, v, *test_arg(E, at, A)); }
static bool t_lt(ev *E, jnode *at, jval v, jargs *A) { return compare_as(E, at, v, A, "<"); }
static bool t_le(ev *E, jnode *at, jval v, jargs *A) { return compare_as(E, at, v, A, "<="); }
static bool t_gt(ev *E, jnode *at, jval v, jargs *A) { return compare_as(E, at, v, A, ">"); }
static bool t_ge(ev *E, jnode *at, jval v, jargs *A) { return compare_as(E, at, v, A, ">="); }
static bool t_in(ev *E, jnode *at, jval v, jargs *A) { return ev_contains(E, at, *test_arg(E, at, A), v); }
static bool t_sameas(ev *E, jnode *at, jval v, jargs *A) {
    jval *o = test_arg(E, at, A);
    if (v.t != o->t) return false;
    if (v.t == V_LIST) return v.l == o->l;
    if (v.t == V_DICT) return v.d == o->d;
    return jv_equal(E->c, v, *o);
}

static const struct {
    const char *name;
    jtest_fn fn;
} tests[] = {{"defined", t_defined},   {"undefined", t_undefined}, {"none", t_none},         {"string", t_string},
             {"mapping", t_mapping},   {"sequence", t_sequence},   {"iterable", t_iterable}, {"number", t_number},
             {"integer", t_integer},   {"float", t_float},         {"boolean", t_boolean},   {"true", t_true},
             {"false", t_false},       {"callable", t_callable},   {"lower", t_lower},       {"upper", t_upper},
             {"odd", t_odd},           {"even", t_even},           {"divisibleby", t_divisibleby},
             {"eq", t_eq},             {"equalto", t_eq},          {"==", t_eq},             {"ne", t_ne},
             {"!=", t_ne},             {"lt", t_lt},               {"lessthan", t_lt},       {"<", t_lt},
             {"le", t_le},             {"<=", t_le},               {"gt", t_gt},             {"greaterthan", t_gt},
             {">", t_gt},              {"ge", t_ge},               {">=", t_ge},             {"in", t_in},
             {"sameas", t_sameas}};

bool ev_test(ev *E, jnode *at, const char *name, jval v, jargs *A) {
    for (size_t i = 0; i < sizeof tests / sizeof *tests; i++)
        if (!strcmp(tests[i].name, name)) {
            jnode named = *at; /* test_arg's message names the test */
            named.name = tests[i].name;
            return tests[i].fn(E, &named, v, A);
        }
    j_fail(E->c, at->line, at->col, "no test named '%s'", name);
}

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
        bool ok = test ? ev_test(E, at, need_str(E, at, *test, name)->s, x, &rest) : jv_truthy(x);
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
    case V_STR: return ju_len(v.s->s, v.s->n);
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
    return strip(E, at, jv_to_str(E->c, v), jargs_get(A, 0, "chars"), true, true);
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
static jval f_upper(ev *E, jnode *at, jval v, jargs *A) { (void)at, (void)A; return change_case(E, jv_to_str(E->c, v), CASE_UPPER); }
static jval f_lower(ev *E, jnode *at, jval v, jargs *A) { (void)at, (void)A; return change_case(E, jv_to_str(E->c, v), CASE_LOWER); }
static jval f_title(ev *E, jnode *at, jval v, jargs *A) {
    (void)at, (void)A;
    return change_case(E, jv_to_str(E->c, v), CASE_TITLE_JINJA);
}
static jval f_capitalize(ev *E, jnode *at, jval v, jargs *A) {
    (void)at, (void)A;
    return change_case(E, jv_to_str(E->c, v), CASE_CAPITALIZE);
}
static jval f_items(ev *E, jnode *at, jval v, jargs *A) {
    (void)A;
    if (v.t == V_UNDEF) return (jval){.t = V_LIST, .l = jl_new(E->c, 1)};
    if (v.t != V_DICT) j_fail(E->c, at->line, at->col, "items filter expects a mapping, got %s", jv_typename(v));
    return items_of(E, v.d);
}
static jval f_list(ev *E, jnode *at, jval v, jargs *A) { (void)A; return copy_list(E, ev_iterable(E, at, v), false); }
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
    if (v.t != V_STR) return copy_list(E, items, true);
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
    return replace(E, jv_to_str(E->c, v), jv_to_str(E->c, *old), jv_to_str(E->c, *new),
                   cnt && cnt->t == V_INT ? cnt->i : -1);
}
static jval f_string(ev *E, jnode *at, jval v, jargs *A) { (void)at, (void)A; return as_str(E, v); }
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
        if (k.t == V_STR && !(cs && jv_truthy(*cs))) k = change_case(E, k.s, CASE_LOWER);
        if (list_find(E, keys, k) < 0) jl_push(E->c, keys, k), jl_push(E->c, l, src->v[i]);
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
    return jv_int((long long)split(E, at, jv_to_str(E->c, v), NULL, NULL).l->n);
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
