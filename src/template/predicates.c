/* predicates.c — jinja2's tests (`v is name(args)`), one {name, fn} table. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "template/builtins.h"

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

static bool t_lower(ev *E, jnode *at, jval v, jargs *A) {
    (void)at, (void)A;
    return py_cased(jv_to_str(E->c, v), islower, isupper);
}
static bool t_upper(ev *E, jnode *at, jval v, jargs *A) {
    (void)at, (void)A;
    return py_cased(jv_to_str(E->c, v), isupper, islower);
}

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
