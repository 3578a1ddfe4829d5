/* strings.c — Python's str operations as the built-ins need them: strip, split, replace, case mapping,
 * format, count, affixes (UTF-8 aware where Python counts code points). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/builtins.h"

/* Python's str.isspace() set as UTF-8, for py_strip()/py_split() without arguments. */
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

jstr *ev_need_str(ev *E, jnode *at, jval v, const char *what) {
    if (v.t == V_STR) return v.s;
    if (v.t == V_UNDEF) ev_undefined_error(E, at, v);
    j_fail(E->c, at->line, at->col, "%s expects a string, got %s", what, jv_typename(v));
}

jval ev_str_of(ev *E, jval v) { return (jval){.t = V_STR, .s = jv_to_str(E->c, v)}; }

jval py_strip(ev *E, jnode *at, jstr *s, jval *chars, bool left, bool right) {
    const char *set = PY_WS;
    size_t setn = sizeof PY_WS - 1;
    if (chars && chars->t != V_NONE) {
        jstr *cs = ev_need_str(E, at, *chars, "strip");
        set = cs->s;
        setn = cs->n;
    }
    /* each code point is looked up in the set: n * |set| at worst */
    size_t per_char = J_WORK_PER_CHAR * (1 + setn / 8);
    j_work(E->c, s->n > SIZE_MAX / per_char ? SIZE_MAX : s->n * per_char);
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

jval py_split(ev *E, jnode *at, jstr *s, jval *sepv, jval *maxv) {
    long long maxsplit = maxv && maxv->t == V_INT ? maxv->i : -1;
    jlist *l = jl_new(E->c, 4);
    j_work(E->c, s->n * J_WORK_PER_CHAR);
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
    jstr *sep = ev_need_str(E, at, *sepv, "split");
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

jval py_replace(ev *E, jstr *s, jstr *old, jstr *new, long long count) {
    j_work(E->c, s->n);
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
jval py_change_case(ev *E, jstr *s, int mode) {
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

jval py_format(ev *E, jnode *at, jstr *fmt, jargs *A) {
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

long long py_count(ev *E, jstr *s, jstr *sub) {
    if (!sub->n) return (long long)ju_len(E->c, s->s, s->n) + 1;
    j_work(E->c, s->n);
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
bool py_affix_match(ev *E, jnode *at, jstr *s, jval arg, bool start) {
    const char *what = start ? "startswith" : "endswith";
    size_t n = arg.t == V_LIST ? arg.l->n : 1;
    for (size_t i = 0; i < n; i++) {
        jstr *p = ev_need_str(E, at, arg.t == V_LIST ? arg.l->v[i] : arg, what);
        j_work(E->c, p->n);
        if (p->n <= s->n && memcmp(start ? s->s : s->s + s->n - p->n, p->s, p->n) == 0) return true;
    }
    return false;
}

/* isupper / islower: no character of the other case, and at least one cased. */
bool py_cased(const jstr *s, int (*is)(int), int (*other)(int)) {
    bool any = false;
    for (size_t i = 0; i < s->n; i++) {
        if (other((unsigned char)s->s[i])) return false;
        any |= is((unsigned char)s->s[i]) != 0;
    }
    return any;
}
