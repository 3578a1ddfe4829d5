/* globals.c — the global functions transformers provides to chat templates: range, namespace, dict,
 * raise_exception, strftime_now (one {name, fn} table). */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "template/builtins.h"

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
    jstr *fmt = ev_need_str(E, at, a0 ? *a0 : jv_undef("format"), "strftime_now");
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
