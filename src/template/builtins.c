/* builtins.c — jinja2's filters and tests, Python's str/dict/list methods, and the globals transformers
 * provides (range, namespace, raise_exception, strftime_now, dict). Each takes evaluated arguments. */
#include <ctype.h>
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
    jbuf b = JBUF(E->c);
    size_t i = 0;
    long long done = 0;
    if (!old->n) { /* Python inserts between every code point */
        for (;;) {
            if (count < 0 || done < count) jb_put(&b, new->s, new->n), done++;
            if (i >= s->n) break;
            size_t w = cp_len(s->s, s->n, i);
            jb_put(&b, s->s + i, w);
            i += w;
        }
    } else {
        while (i <= s->n) {
            const char *hit = (count >= 0 && done >= count) ? NULL : memmem(s->s + i, s->n - i, old->s, old->n);
            if (!hit) break;
            jb_put(&b, s->s + i, (size_t)(hit - (s->s + i)));
            jb_put(&b, new->s, new->n);
            i = (size_t)(hit - s->s) + old->n;
            done++;
        }
        jb_put(&b, s->s + i, s->n - i);
    }
    return jv_str(E->c, b.p ? b.p : "", b.n);
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
    jbuf b = JBUF(E->c);
    size_t auto_i = 0;
    for (size_t i = 0; i < fmt->n; i++) {
        char ch = fmt->s[i];
        if ((ch == '{' || ch == '}') && i + 1 < fmt->n && fmt->s[i + 1] == ch) {
            jb_putc(&b, ch);
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
            jv_print(E->c, &b, *v, false);
            i += fl + 1;
        } else jb_putc(&b, ch);
    }
    return jv_str(E->c, b.p ? b.p : "", b.n);
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

static bool affix_match(ev *E, jnode *at, jstr *s, jval arg, bool start) {
    if (arg.t == V_LIST) {
        for (size_t i = 0; i < arg.l->n; i++)
            if (affix_match(E, at, s, arg.l->v[i], start)) return true;
        return false;
    }
    jstr *p = need_str(E, at, arg, start ? "startswith" : "endswith");
    if (p->n > s->n) return false;
    return memcmp(start ? s->s : s->s + s->n - p->n, p->s, p->n) == 0;
}

static jval str_method(ev *E, jnode *at, jstr *s, const char *m, jargs *A) {
    jval *a0 = jargs_get(A, 0, NULL), *a1 = jargs_get(A, 1, NULL);
    if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
        if (!a0) j_fail(E->c, at->line, at->col, "%s() takes at least 1 argument", m);
        return jv_bool(affix_match(E, at, s, *a0, m[0] == 's'));
    }
    if (!strcmp(m, "split")) return split(E, at, s, jargs_get(A, 0, "sep"), jargs_get(A, 1, "maxsplit"));
    if (!strcmp(m, "strip")) return strip(E, at, s, a0, true, true);
    if (!strcmp(m, "lstrip")) return strip(E, at, s, a0, true, false);
    if (!strcmp(m, "rstrip")) return strip(E, at, s, a0, false, true);
    if (!strcmp(m, "replace")) {
        if (!a0 || !a1) j_fail(E->c, at->line, at->col, "replace() takes at least 2 arguments");
        jval *cnt = jargs_get(A, 2, "count");
        return replace(E, s, need_str(E, at, *a0, "replace"), need_str(E, at, *a1, "replace"),
                       cnt && cnt->t == V_INT ? cnt->i : -1);
    }
    if (!strcmp(m, "upper")) return change_case(E, s, CASE_UPPER);
    if (!strcmp(m, "lower")) return change_case(E, s, CASE_LOWER);
    if (!strcmp(m, "title")) return change_case(E, s, CASE_TITLE_PY);
    if (!strcmp(m, "capitalize")) return change_case(E, s, CASE_CAPITALIZE);
    if (!strcmp(m, "find") || !strcmp(m, "rfind")) {
        if (!a0) j_fail(E->c, at->line, at->col, "%s() takes at least 1 argument", m);
        jstr *sub = need_str(E, at, *a0, m);
        const char *hit = NULL;
        if (m[0] == 'f') hit = memmem(s->s, s->n, sub->s, sub->n);
        else
            for (size_t i = s->n + 1; i-- > 0 && !hit;)
                if (i + sub->n <= s->n && memcmp(s->s + i, sub->s, sub->n) == 0) hit = s->s + i;
        return jv_int(hit ? (long long)ju_len(s->s, (size_t)(hit - s->s)) : -1);
    }
    if (!strcmp(m, "count")) {
        if (!a0) j_fail(E->c, at->line, at->col, "count() takes at least 1 argument");
        return jv_int(count_sub(s, need_str(E, at, *a0, "count")));
    }
    if (!strcmp(m, "format")) return str_format(E, at, s, A);
    if (!strcmp(m, "join")) {
        if (!a0) j_fail(E->c, at->line, at->col, "join() takes exactly one argument");
        jlist *l = ev_iterable(E, at, *a0);
        jbuf b = JBUF(E->c);
        for (size_t i = 0; i < l->n; i++) {
            if (i) jb_put(&b, s->s, s->n);
            jstr *x = need_str(E, at, l->v[i], "join");
            jb_put(&b, x->s, x->n);
        }
        return jv_str(E->c, b.p ? b.p : "", b.n);
    }
    if (!strcmp(m, "splitlines")) {
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
    if (!strncmp(m, "is", 2)) {
        bool ok = s->n > 0, any_cased = false;
        for (size_t i = 0; i < s->n; i++) {
            unsigned char ch = (unsigned char)s->s[i];
            if (!strcmp(m, "isdigit")) ok &= isdigit(ch) != 0;
            else if (!strcmp(m, "isalpha")) ok &= isalpha(ch) != 0;
            else if (!strcmp(m, "isalnum")) ok &= isalnum(ch) != 0;
            else if (!strcmp(m, "isspace")) ok &= isspace(ch) != 0;
            else if (!strcmp(m, "isupper")) ok &= !islower(ch), any_cased |= isupper(ch) != 0;
            else if (!strcmp(m, "islower")) ok &= !isupper(ch), any_cased |= islower(ch) != 0;
        }
        if (!strcmp(m, "isupper") || !strcmp(m, "islower")) ok &= any_cased;
        return jv_bool(ok);
    }
    j_fail(E->c, at->line, at->col, "str has no method '%s'", m);
}

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

jval ev_call_method(ev *E, jnode *at, jval self, const char *m, jargs *A) {
    jval *a0 = jargs_get(A, 0, NULL);
    if (self.t == V_STR) return str_method(E, at, self.s, m, A);
    if (self.t == V_DICT) {
        jdict *d = self.d;
        if (!strcmp(m, "items")) return items_of(E, d);
        if (!strcmp(m, "keys") || !strcmp(m, "values")) {
            jlist *l = jl_new(E->c, d->n);
            for (size_t i = 0; i < d->n; i++) jl_push(E->c, l, m[0] == 'k' ? d->k[i] : d->v[i]);
            return (jval){.t = V_LIST, .l = l};
        }
        if (!strcmp(m, "get") || !strcmp(m, "setdefault") || !strcmp(m, "pop")) {
            if (!a0) j_fail(E->c, at->line, at->col, "%s() takes at least 1 argument", m);
            jval *v = jd_find(d, *a0), *dflt = jargs_get(A, 1, NULL);
            jval r = v ? *v : dflt ? *dflt : jv_none();
            if (!v && m[0] == 's') jd_set(E->c, d, *a0, r);
            if (m[0] == 'p') {
                if (!v && !dflt) j_fail(E->c, at->line, at->col, "KeyError in pop()");
                if (v) { /* remove, keeping order */
                    size_t k = (size_t)(v - d->v);
                    memmove(d->k + k, d->k + k + 1, (d->n - k - 1) * sizeof(jval));
                    memmove(d->v + k, d->v + k + 1, (d->n - k - 1) * sizeof(jval));
                    d->n--;
                }
            }
            return r;
        }
        if (!strcmp(m, "update")) {
            if (a0 && a0->t == V_DICT)
                for (size_t i = 0; i < a0->d->n; i++) jd_set(E->c, d, a0->d->k[i], a0->d->v[i]);
            for (size_t i = 0; i < A->n; i++)
                if (A->kw[i]) jd_set(E->c, d, jv_cstr(E->c, A->kw[i]), A->v[i]);
            return jv_none();
        }
        if (!strcmp(m, "copy")) {
            jdict *c = jd_new(E->c);
            for (size_t i = 0; i < d->n; i++) jd_set(E->c, c, d->k[i], d->v[i]);
            return (jval){.t = V_DICT, .d = c};
        }
    }
    if (self.t == V_LIST) {
        jlist *l = self.l;
        if (!strcmp(m, "append")) {
            if (!a0) j_fail(E->c, at->line, at->col, "append() takes exactly one argument");
            jl_push(E->c, l, *a0);
            return jv_none();
        }
        if (!strcmp(m, "extend")) {
            jlist *x = ev_iterable(E, at, a0 ? *a0 : jv_undef(NULL));
            size_t n = x->n;
            for (size_t i = 0; i < n; i++) jl_push(E->c, l, x->v[i]);
            return jv_none();
        }
        if (!strcmp(m, "pop")) {
            long long i = a0 && a0->t == V_INT ? a0->i : -1;
            if (i < 0) i += (long long)l->n;
            if (i < 0 || i >= (long long)l->n) j_fail(E->c, at->line, at->col, "pop index out of range");
            jval r = l->v[i];
            memmove(l->v + i, l->v + i + 1, (l->n - (size_t)i - 1) * sizeof(jval));
            l->n--;
            return r;
        }
        if (!strcmp(m, "insert")) {
            jval *a1 = jargs_get(A, 1, NULL);
            if (!a0 || !a1 || a0->t != V_INT) j_fail(E->c, at->line, at->col, "insert() takes an index and a value");
            long long i = a0->i < 0 ? a0->i + (long long)l->n : a0->i;
            i = i < 0 ? 0 : i > (long long)l->n ? (long long)l->n : i;
            jl_push(E->c, l, jv_none());
            memmove(l->v + i + 1, l->v + i, (l->n - (size_t)i - 1) * sizeof(jval));
            l->v[i] = *a1;
            return jv_none();
        }
        if (!strcmp(m, "index") || !strcmp(m, "count")) {
            long long k = 0;
            for (size_t i = 0; i < l->n; i++)
                if (a0 && jv_equal(l->v[i], *a0)) {
                    if (m[0] == 'i') return jv_int((long long)i);
                    k++;
                }
            if (m[0] == 'i') j_fail(E->c, at->line, at->col, "index(): value is not in list");
            return jv_int(k);
        }
        if (!strcmp(m, "remove")) {
            for (size_t i = 0; i < l->n; i++)
                if (a0 && jv_equal(l->v[i], *a0)) {
                    memmove(l->v + i, l->v + i + 1, (l->n - i - 1) * sizeof(jval));
                    l->n--;
                    return jv_none();
                }
            j_fail(E->c, at->line, at->col, "remove(): value is not in list");
        }
        if (!strcmp(m, "reverse")) {
            for (size_t i = 0; i < l->n / 2; i++) {
                jval t = l->v[i];
                l->v[i] = l->v[l->n - 1 - i];
                l->v[l->n - 1 - i] = t;
            }
            return jv_none();
        }
        if (!strcmp(m, "copy")) {
            jlist *c = jl_new(E->c, l->n);
            for (size_t i = 0; i < l->n; i++) jl_push(E->c, c, l->v[i]);
            return (jval){.t = V_LIST, .l = c};
        }
    }
    if (self.t == V_LOOP && !strcmp(m, "cycle")) {
        if (!A->n) j_fail(E->c, at->line, at->col, "no items for cycling given");
        return A->v[self.lp->i % A->n];
    }
    j_fail(E->c, at->line, at->col, "%s has no method '%s'", jv_typename(self), m);
}

/* ---- globals ---- */
jval ev_call_global(ev *E, jnode *at, int fn, jargs *A) {
    jval *a0 = jargs_get(A, 0, NULL);
    switch (fn) {
    case 0: { /* range */
        long long lo = 0, hi, step = 1;
        for (size_t i = 0; i < A->n; i++)
            if (A->v[i].t != V_INT) j_fail(E->c, at->line, at->col, "range() takes integer arguments");
        if (A->n == 1) hi = A->v[0].i;
        else if (A->n == 2 || A->n == 3) {
            lo = A->v[0].i;
            hi = A->v[1].i;
            if (A->n == 3) step = A->v[2].i;
        } else j_fail(E->c, at->line, at->col, "range() takes 1 to 3 arguments");
        if (step == 0) j_fail(E->c, at->line, at->col, "range() step must not be zero");
        long long count = step > 0 ? (hi - lo + step - 1) / step : (lo - hi - step - 1) / -step;
        if (count > 100000) j_fail(E->c, at->line, at->col, "range too big (%lld items; the limit is 100000)", count);
        jlist *l = jl_new(E->c, count > 0 ? (size_t)count : 1);
        for (long long i = lo; step > 0 ? i < hi : i > hi; i += step) jl_push(E->c, l, jv_int(i));
        return (jval){.t = V_LIST, .l = l};
    }
    case 1:   /* namespace(...) */
    case 4: { /* dict(...) */
        jdict *d = jd_new(E->c);
        d->is_ns = fn == 1;
        if (a0 && a0->t == V_DICT)
            for (size_t i = 0; i < a0->d->n; i++) jd_set(E->c, d, a0->d->k[i], a0->d->v[i]);
        for (size_t i = 0; i < A->n; i++)
            if (A->kw[i]) jd_set(E->c, d, jv_cstr(E->c, A->kw[i]), A->v[i]);
        return (jval){.t = V_DICT, .d = d};
    }
    case 2: { /* raise_exception(message) */
        jstr *msg = a0 ? jv_to_str(E->c, *a0) : js_new(E->c, "", 0);
        j_fail(E->c, at->line, at->col, "raise_exception: %s", msg->s);
    }
    case 3: { /* strftime_now(format) */
        jstr *fmt = need_str(E, at, a0 ? *a0 : jv_undef("format"), "strftime_now");
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        char buf[256];
        size_t n = strftime(buf, sizeof buf, fmt->s, &tm);
        return jv_str(E->c, buf, n);
    }
    }
    j_fail(E->c, at->line, at->col, "internal: unknown global function");
}

/* ---- tests ---- */
bool ev_test(ev *E, jnode *at, const char *t, jval v, jargs *A) {
    jval *a0 = jargs_get(A, 0, NULL);
    if (!strcmp(t, "defined")) return v.t != V_UNDEF;
    if (!strcmp(t, "undefined")) return v.t == V_UNDEF;
    if (!strcmp(t, "none")) return v.t == V_NONE;
    if (!strcmp(t, "string")) return v.t == V_STR;
    if (!strcmp(t, "mapping")) return v.t == V_DICT;
    if (!strcmp(t, "sequence")) return v.t == V_LIST || v.t == V_STR || v.t == V_DICT;
    if (!strcmp(t, "iterable")) return v.t == V_LIST || v.t == V_STR || v.t == V_DICT || v.t == V_UNDEF;
    if (!strcmp(t, "number")) return v.t == V_INT || v.t == V_FLOAT || v.t == V_BOOL;
    if (!strcmp(t, "integer")) return v.t == V_INT;
    if (!strcmp(t, "float")) return v.t == V_FLOAT;
    if (!strcmp(t, "boolean")) return v.t == V_BOOL;
    if (!strcmp(t, "true")) return v.t == V_BOOL && v.b;
    if (!strcmp(t, "false")) return v.t == V_BOOL && !v.b;
    if (!strcmp(t, "callable")) return v.t == V_MACRO || v.t == V_FUNC || v.t == V_METHOD;
    if (!strcmp(t, "lower") || !strcmp(t, "upper")) {
        jstr *s = jv_to_str(E->c, v);
        jargs none = {0};
        return jv_truthy(str_method(E, at, s, t[0] == 'l' ? "islower" : "isupper", &none));
    }
    if (!strcmp(t, "odd") || !strcmp(t, "even") || !strcmp(t, "divisibleby")) {
        if (v.t != V_INT) j_fail(E->c, at->line, at->col, "test '%s' needs an integer", t);
        if (t[0] == 'o') return (v.i & 1) != 0;
        if (t[0] == 'e') return (v.i & 1) == 0;
        if (!a0 || a0->t != V_INT || a0->i == 0) j_fail(E->c, at->line, at->col, "divisibleby needs a non-zero integer");
        return v.i % a0->i == 0;
    }
    static const char *const cmp[][2] = {{"eq", "=="}, {"equalto", "=="}, {"==", "=="}, {"ne", "!="}, {"!=", "!="},
                                         {"lt", "<"},  {"lessthan", "<"}, {"<", "<"},   {"le", "<="}, {"<=", "<="},
                                         {"gt", ">"},  {"greaterthan", ">"}, {">", ">"}, {"ge", ">="}, {">=", ">="}};
    for (size_t i = 0; i < sizeof cmp / sizeof *cmp; i++) {
        if (strcmp(t, cmp[i][0])) continue;
        if (!a0) j_fail(E->c, at->line, at->col, "test '%s' needs an argument", t);
        const char *op = cmp[i][1];
        if (op[0] == '=') return jv_equal(v, *a0);
        if (op[0] == '!') return !jv_equal(v, *a0);
        jnode fake = *at;
        fake.k = E_BIN;
        snprintf(fake.op, sizeof fake.op, "%s", op);
        fake.a = &(jnode){.k = E_CONST, .val = v};
        fake.b = &(jnode){.k = E_CONST, .val = *a0};
        return jv_truthy(ev_expr(E, &fake));
    }
    if (!strcmp(t, "in")) {
        if (!a0) j_fail(E->c, at->line, at->col, "test 'in' needs an argument");
        return ev_contains(E, at, *a0, v);
    }
    if (!strcmp(t, "sameas")) {
        if (!a0) j_fail(E->c, at->line, at->col, "test 'sameas' needs an argument");
        if (v.t != a0->t) return false;
        if (v.t == V_LIST) return v.l == a0->l;
        if (v.t == V_DICT) return v.d == a0->d;
        return jv_equal(v, *a0);
    }
    j_fail(E->c, at->line, at->col, "no test named '%s'", t);
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

static jval to_number(ev *E, jval v, bool want_float, jval dflt) {
    (void)E;
    if (v.t == V_INT || v.t == V_BOOL) return want_float ? (jval){.t = V_FLOAT, .f = (double)(v.t == V_INT ? v.i : v.b)} : jv_int(v.t == V_INT ? v.i : v.b);
    if (v.t == V_FLOAT) return want_float ? v : jv_int((long long)v.f);
    if (v.t == V_STR) {
        char *end;
        const char *s = v.s->s;
        if (!want_float) {
            long long i = strtoll(s, &end, 10);
            while (*end && isspace((unsigned char)*end)) end++;
            if (end != s && !*end) return jv_int(i);
        }
        double f = strtod(s, &end);
        while (*end && isspace((unsigned char)*end)) end++;
        if (end != s && !*end) return want_float ? (jval){.t = V_FLOAT, .f = f} : jv_int((long long)f);
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

jval ev_filter(ev *E, jnode *at, const char *f, jval v, jargs *A) {
    jval *a0 = jargs_get(A, 0, NULL);
    if (!strcmp(f, "tojson")) {
        jval *ind = jargs_get(A, 0, "indent"), *seps = jargs_get(A, (size_t)-1, "separators"),
             *sk = jargs_get(A, (size_t)-1, "sort_keys");
        int indent = ind && ind->t == V_INT ? (int)ind->i : -1;
        const char *isep = indent >= 0 ? "," : ", ", *ksep = ": ";
        if (seps && seps->t == V_LIST && seps->l->n == 2 && seps->l->v[0].t == V_STR && seps->l->v[1].t == V_STR) {
            isep = seps->l->v[0].s->s;
            ksep = seps->l->v[1].s->s;
        }
        jbuf b = JBUF(E->c);
        jv_tojson(E->c, &b, v, indent, isep, ksep, sk && jv_truthy(*sk), 0, at->line, at->col);
        return jv_str(E->c, b.p, b.n);
    }
    if (!strcmp(f, "trim")) return strip(E, at, jv_to_str(E->c, v), jargs_get(A, 0, "chars"), true, true);
    if (!strcmp(f, "length") || !strcmp(f, "count")) return jv_int((long long)length_of(E, at, v));
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        jval *b = jargs_get(A, 1, "boolean");
        bool use = v.t == V_UNDEF || (b && jv_truthy(*b) && !jv_truthy(v));
        return use ? (a0 ? *a0 : jv_str(E->c, "", 0)) : v;
    }
    if (!strcmp(f, "join")) {
        jval *sep = jargs_get(A, 0, "d"), *attr = jargs_get(A, 1, "attribute");
        jstr *s = sep ? jv_to_str(E->c, *sep) : js_new(E->c, "", 0);
        jlist *l = ev_iterable(E, at, v);
        jbuf b = JBUF(E->c);
        for (size_t i = 0; i < l->n; i++) {
            if (i) jb_put(&b, s->s, s->n);
            jval x = attr ? attr_path(E, at, l->v[i], jv_to_str(E->c, *attr)) : l->v[i];
            jv_print(E->c, &b, x, false);
        }
        return jv_str(E->c, b.p ? b.p : "", b.n);
    }
    if (!strcmp(f, "upper")) return change_case(E, jv_to_str(E->c, v), CASE_UPPER);
    if (!strcmp(f, "lower")) return change_case(E, jv_to_str(E->c, v), CASE_LOWER);
    if (!strcmp(f, "title")) return change_case(E, jv_to_str(E->c, v), CASE_TITLE_JINJA);
    if (!strcmp(f, "capitalize")) return change_case(E, jv_to_str(E->c, v), CASE_CAPITALIZE);
    if (!strcmp(f, "items")) {
        if (v.t == V_UNDEF) return (jval){.t = V_LIST, .l = jl_new(E->c, 1)};
        if (v.t != V_DICT) j_fail(E->c, at->line, at->col, "items filter expects a mapping, got %s", jv_typename(v));
        return items_of(E, v.d);
    }
    if (!strcmp(f, "list")) {
        jlist *src = ev_iterable(E, at, v), *l = jl_new(E->c, src->n);
        for (size_t i = 0; i < src->n; i++) jl_push(E->c, l, src->v[i]);
        return (jval){.t = V_LIST, .l = l};
    }
    if (!strcmp(f, "first") || !strcmp(f, "last")) {
        jlist *l = ev_iterable(E, at, v);
        if (!l->n) return jv_undef(f);
        return f[0] == 'f' ? l->v[0] : l->v[l->n - 1];
    }
    if (!strcmp(f, "reverse")) {
        if (v.t == V_STR) {
            jlist *cs = ev_iterable(E, at, v);
            jbuf b = JBUF(E->c);
            for (size_t i = cs->n; i-- > 0;) jb_put(&b, cs->v[i].s->s, cs->v[i].s->n);
            return jv_str(E->c, b.p ? b.p : "", b.n);
        }
        jlist *src = ev_iterable(E, at, v), *l = jl_new(E->c, src->n);
        for (size_t i = src->n; i-- > 0;) jl_push(E->c, l, src->v[i]);
        return (jval){.t = V_LIST, .l = l};
    }
    if (!strcmp(f, "map")) {
        jlist *src = ev_iterable(E, at, v), *l = jl_new(E->c, src->n);
        jval *attr = jargs_get(A, (size_t)-1, "attribute"), *dflt = jargs_get(A, (size_t)-1, "default");
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
    if (!strcmp(f, "select") || !strcmp(f, "reject") || !strcmp(f, "selectattr") || !strcmp(f, "rejectattr"))
        return filter_select(E, at, f, v, A);
    if (!strcmp(f, "replace")) {
        jval *a1 = jargs_get(A, 1, "new"), *cnt = jargs_get(A, 2, "count");
        jval *old = jargs_get(A, 0, "old");
        if (!old || !a1) j_fail(E->c, at->line, at->col, "replace needs old and new strings");
        return replace(E, jv_to_str(E->c, v), jv_to_str(E->c, *old), jv_to_str(E->c, *a1),
                       cnt && cnt->t == V_INT ? cnt->i : -1);
    }
    if (!strcmp(f, "string")) return (jval){.t = V_STR, .s = jv_to_str(E->c, v)};
    if (!strcmp(f, "safe") || !strcmp(f, "e") || !strcmp(f, "escape") || !strcmp(f, "forceescape")) {
        if (f[0] == 's') return v;
        jstr *s = jv_to_str(E->c, v);
        jbuf b = JBUF(E->c);
        for (size_t i = 0; i < s->n; i++) {
            switch (s->s[i]) {
            case '&': jb_put(&b, "&amp;", 5); break;
            case '<': jb_put(&b, "&lt;", 4); break;
            case '>': jb_put(&b, "&gt;", 4); break;
            case '"': jb_put(&b, "&#34;", 5); break;
            case '\'': jb_put(&b, "&#39;", 5); break;
            default: jb_putc(&b, s->s[i]);
            }
        }
        return jv_str(E->c, b.p ? b.p : "", b.n);
    }
    if (!strcmp(f, "int")) return to_number(E, v, false, a0 ? *a0 : jv_int(0));
    if (!strcmp(f, "float")) return to_number(E, v, true, a0 ? *a0 : (jval){.t = V_FLOAT, .f = 0});
    if (!strcmp(f, "abs")) {
        if (v.t == V_INT) return jv_int(v.i < 0 ? -v.i : v.i);
        if (v.t == V_FLOAT) return (jval){.t = V_FLOAT, .f = fabs(v.f)};
        j_fail(E->c, at->line, at->col, "bad operand type for abs(): '%s'", jv_typename(v));
    }
    if (!strcmp(f, "round")) {
        jval *prec = jargs_get(A, 0, "precision"), *method = jargs_get(A, 1, "method");
        if (v.t != V_INT && v.t != V_FLOAT) j_fail(E->c, at->line, at->col, "round expects a number");
        double x = v.t == V_INT ? (double)v.i : v.f, scale = pow(10, prec && prec->t == V_INT ? (double)prec->i : 0);
        const char *m = method && method->t == V_STR ? method->s->s : "common";
        double r = !strcmp(m, "floor") ? floor(x * scale) : !strcmp(m, "ceil") ? ceil(x * scale) : nearbyint(x * scale);
        return (jval){.t = V_FLOAT, .f = r / scale};
    }
    if (!strcmp(f, "indent")) {
        jval *w = jargs_get(A, 0, "width"), *first = jargs_get(A, 1, "first"), *blank = jargs_get(A, 2, "blank");
        jstr *pad = w && w->t == V_STR ? w->s : NULL;
        long long width = w && w->t == V_INT ? w->i : 4;
        jstr *s = jv_to_str(E->c, v);
        jbuf b = JBUF(E->c);
        bool line_start = first && jv_truthy(*first);
        for (size_t i = 0; i <= s->n; i++) {
            if (line_start && i < s->n && (s->s[i] != '\n' || (blank && jv_truthy(*blank)))) {
                if (pad) jb_put(&b, pad->s, pad->n);
                else
                    for (long long k = 0; k < width; k++) jb_putc(&b, ' ');
            }
            if (i == s->n) break;
            jb_putc(&b, s->s[i]);
            line_start = s->s[i] == '\n';
        }
        return jv_str(E->c, b.p ? b.p : "", b.n);
    }
    if (!strcmp(f, "unique")) {
        jlist *src = ev_iterable(E, at, v), *l = jl_new(E->c, src->n), *keys = jl_new(E->c, src->n);
        jval *cs = jargs_get(A, 0, "case_sensitive");
        for (size_t i = 0; i < src->n; i++) {
            jval k = src->v[i];
            if (k.t == V_STR && !(cs && jv_truthy(*cs))) k = change_case(E, k.s, CASE_LOWER);
            bool seen = false;
            for (size_t j = 0; j < keys->n && !seen; j++) seen = jv_equal(keys->v[j], k);
            if (!seen) jl_push(E->c, keys, k), jl_push(E->c, l, src->v[i]);
        }
        return (jval){.t = V_LIST, .l = l};
    }
    if (!strcmp(f, "sum")) {
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
    if (!strcmp(f, "wordcount")) return jv_int((long long)split(E, at, jv_to_str(E->c, v), NULL, NULL).l->n);
    j_fail(E->c, at->line, at->col, "no filter named '%s'", f);
}
