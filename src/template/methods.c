/* methods.c — Python's str, dict and list methods and the loop's cycle(), one {name, fn} table per type;
 * ev_method_find is both the attribute lookup (has the type this method?) and the call's entry. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/builtins.h"

/* ---- str methods: self is a string ---- */
/* str.isdigit() and friends (ASCII classes): true if s is non-empty and every byte is in the class. */
static bool all_of(const jstr *s, int (*is)(int)) {
    bool ok = s->n > 0;
    for (size_t i = 0; ok && i < s->n; i++) ok = is((unsigned char)s->s[i]) != 0;
    return ok;
}
static jval *need_arg(ev *E, jnode *at, jargs *A, size_t pos, const char *name, const char *what) {
    jval *v = jargs_get(A, pos, name);
    if (!v) j_fail(E->c, at->line, at->col, "%s() is missing an argument", what);
    return v;
}

static jval m_startswith(ev *E, jnode *at, jval self, jargs *A) {
    return jv_bool(py_affix_match(E, at, self.s, *need_arg(E, at, A, 0, NULL, "startswith"), true));
}
static jval m_endswith(ev *E, jnode *at, jval self, jargs *A) {
    return jv_bool(py_affix_match(E, at, self.s, *need_arg(E, at, A, 0, NULL, "endswith"), false));
}
static jval m_split(ev *E, jnode *at, jval self, jargs *A) {
    return py_split(E, at, self.s, jargs_get(A, 0, "sep"), jargs_get(A, 1, "maxsplit"));
}
static jval m_strip(ev *E, jnode *at, jval self, jargs *A) { return py_strip(E, at, self.s, jargs_get(A, 0, NULL), true, true); }
static jval m_lstrip(ev *E, jnode *at, jval self, jargs *A) { return py_strip(E, at, self.s, jargs_get(A, 0, NULL), true, false); }
static jval m_rstrip(ev *E, jnode *at, jval self, jargs *A) { return py_strip(E, at, self.s, jargs_get(A, 0, NULL), false, true); }
static jval m_replace(ev *E, jnode *at, jval self, jargs *A) {
    jval *old = need_arg(E, at, A, 0, NULL, "replace"), *new = need_arg(E, at, A, 1, NULL, "replace");
    jval *cnt = jargs_get(A, 2, "count");
    return py_replace(E, self.s, ev_need_str(E, at, *old, "replace"), ev_need_str(E, at, *new, "replace"),
                   cnt && cnt->t == V_INT ? cnt->i : -1);
}
static jval m_upper(ev *E, jnode *at, jval self, jargs *A) { (void)at, (void)A; return py_change_case(E, self.s, CASE_UPPER); }
static jval m_lower(ev *E, jnode *at, jval self, jargs *A) { (void)at, (void)A; return py_change_case(E, self.s, CASE_LOWER); }
static jval m_title(ev *E, jnode *at, jval self, jargs *A) { (void)at, (void)A; return py_change_case(E, self.s, CASE_TITLE_PY); }
static jval m_capitalize(ev *E, jnode *at, jval self, jargs *A) {
    (void)at, (void)A;
    return py_change_case(E, self.s, CASE_CAPITALIZE);
}
/* Backwards: each place that starts with sub's first byte is compared (charged as it goes). */
static const char *last_occurrence(ev *E, jstr *s, jstr *sub) {
    if (sub->n > s->n) return NULL;
    if (!sub->n) return s->s + s->n;
    size_t end = s->n - sub->n + 1; /* candidates start below end */
    for (const char *p; end && (p = memrchr(s->s, sub->s[0], end));) {
        j_work(E->c, sub->n);
        if (!memcmp(p, sub->s, sub->n)) return p;
        end = (size_t)(p - s->s);
    }
    return NULL;
}

/* find / rfind: the code point index of the first / last occurrence, or -1. */
static jval find_sub(ev *E, jnode *at, jstr *s, jargs *A, bool last) {
    jstr *sub = ev_need_str(E, at, *need_arg(E, at, A, 0, NULL, last ? "rfind" : "find"), last ? "rfind" : "find");
    j_work(E->c, s->n);
    const char *hit = last ? last_occurrence(E, s, sub) : memmem(s->s, s->n, sub->s, sub->n);
    return jv_int(hit ? (long long)ju_len(E->c, s->s, (size_t)(hit - s->s)) : -1);
}
static jval m_find(ev *E, jnode *at, jval self, jargs *A) { return find_sub(E, at, self.s, A, false); }
static jval m_rfind(ev *E, jnode *at, jval self, jargs *A) { return find_sub(E, at, self.s, A, true); }
static jval m_str_count(ev *E, jnode *at, jval self, jargs *A) {
    return jv_int(py_count(E, self.s, ev_need_str(E, at, *need_arg(E, at, A, 0, NULL, "count"), "count")));
}
static jval m_format(ev *E, jnode *at, jval self, jargs *A) { return py_format(E, at, self.s, A); }
static jval m_join(ev *E, jnode *at, jval self, jargs *A) {
    jlist *l = ev_iterable(E, at, *need_arg(E, at, A, 0, NULL, "join"));
    jbuf *b = jb_open(E->c);
    for (size_t i = 0; i < l->n; i++) {
        if (i) jb_put(b, self.s->s, self.s->n);
        jstr *x = ev_need_str(E, at, l->v[i], "join");
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
static jval m_isdigit(ev *E, jnode *at, jval self, jargs *A) { (void)E, (void)at, (void)A; return jv_bool(all_of(self.s, isdigit)); }
static jval m_isalpha(ev *E, jnode *at, jval self, jargs *A) { (void)E, (void)at, (void)A; return jv_bool(all_of(self.s, isalpha)); }
static jval m_isalnum(ev *E, jnode *at, jval self, jargs *A) { (void)E, (void)at, (void)A; return jv_bool(all_of(self.s, isalnum)); }
static jval m_isspace(ev *E, jnode *at, jval self, jargs *A) { (void)E, (void)at, (void)A; return jv_bool(all_of(self.s, isspace)); }
static jval m_isupper(ev *E, jnode *at, jval self, jargs *A) {
    (void)E, (void)at, (void)A;
    return jv_bool(py_cased(self.s, isupper, islower));
}
static jval m_islower(ev *E, jnode *at, jval self, jargs *A) {
    (void)E, (void)at, (void)A;
    return jv_bool(py_cased(self.s, islower, isupper));
}

static const struct jbuiltin_method str_methods[] = {
    {"startswith", m_startswith}, {"endswith", m_endswith}, {"split", m_split},     {"strip", m_strip},
    {"lstrip", m_lstrip},         {"rstrip", m_rstrip},     {"replace", m_replace}, {"upper", m_upper},
    {"lower", m_lower},           {"title", m_title},       {"capitalize", m_capitalize}, {"find", m_find},
    {"rfind", m_rfind},           {"count", m_str_count},   {"format", m_format},   {"join", m_join},
    {"isdigit", m_isdigit},       {"isalpha", m_isalpha},   {"isalnum", m_isalnum}, {"isspace", m_isspace},
    {"isupper", m_isupper},       {"islower", m_islower},   {"splitlines", m_splitlines}, {NULL, NULL}};

/* ---- dict methods ---- */
jval ev_items(ev *E, jdict *d) {
    jlist *l = jl_new(E->c, d->n);
    for (size_t i = 0; i < d->n; i++) {
        jlist *pair = jl_new(E->c, 2);
        jl_push(E->c, pair, d->k[i]);
        jl_push(E->c, pair, d->v[i]);
        jl_push(E->c, l, (jval){.t = V_LIST, .l = pair});
    }
    return (jval){.t = V_LIST, .l = l};
}
static jval m_items(ev *E, jnode *at, jval self, jargs *A) { (void)at, (void)A; return ev_items(E, self.d); }
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
long long ev_list_find(ev *E, jlist *l, jval x) {
    for (size_t i = 0; i < l->n; i++) {
        j_step(E->c);
        if (jv_equal(E->c, l->v[i], x)) return (long long)i;
    }
    return -1;
}
static jval m_index(ev *E, jnode *at, jval self, jargs *A) {
    long long i = ev_list_find(E, self.l, *need_arg(E, at, A, 0, NULL, "index"));
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
    long long i = ev_list_find(E, l, *need_arg(E, at, A, 0, NULL, "remove"));
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
jval ev_copy_list(ev *E, const jlist *src, bool reversed) {
    jlist *l = jl_new(E->c, src->n);
    for (size_t i = 0; i < src->n; i++) jl_push(E->c, l, src->v[reversed ? src->n - 1 - i : i]);
    return (jval){.t = V_LIST, .l = l};
}
static jval m_list_copy(ev *E, jnode *at, jval self, jargs *A) { (void)at, (void)A; return ev_copy_list(E, self.l, false); }

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
