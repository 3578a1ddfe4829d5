/* eval.h — the evaluator's state, shared by eval.c (expressions, statements) and the built-ins (filters,
 * tests, methods and global functions). */
#ifndef KILN_TEMPLATE_EVAL_H
#define KILN_TEMPLATE_EVAL_H

#include "template/ast.h"

typedef struct jframe jframe;
struct jframe {
    jdict *vars;
    jframe *parent;
};

enum { CTL_BREAK = 1, CTL_CONTINUE = 2 };

typedef struct ev {
    jctx *c;
    jbuf *out; /* where text goes now (macros and block sets render into their own) */
    jframe *f; /* innermost scope */
    int ctl;   /* pending break / continue */
} ev;

#define JARGS_MAX 16
typedef struct jargs {
    size_t n;
    jval v[JARGS_MAX];
    const char *kw[JARGS_MAX]; /* NULL for positional */
} jargs;
/* The pos-th positional argument, or the keyword argument called name; NULL if neither was given. */
jval *jargs_get(jargs *A, size_t pos, const char *name);
void ev_args(ev *E, jnode *n, jargs *A);

jval ev_expr(ev *E, jnode *n);
void ev_stmt(ev *E, jnode *n);
jval ev_getattr(ev *E, jnode *at, jval obj, const char *name);
jval ev_getitem(ev *E, jnode *at, jval obj, jval key);
jlist *ev_iterable(ev *E, jnode *at, jval v);
bool ev_contains(ev *E, jnode *n, jval hay, jval needle);
_Noreturn void ev_undefined_error(ev *E, jnode *at, jval u);

/* The built-ins: each kind is one {name, fn} table (globals.c, methods.c per type, filters.c, predicates.c),
 * read both to find a name and to call it (no second list of names anywhere). */
typedef jval (*jglobal_fn)(ev *E, jnode *at, jargs *A);
typedef jval (*jmethod_fn)(ev *E, jnode *at, jval self, jargs *A);
struct jglobal {
    const char *name;
    jglobal_fn fn;
};
struct jbuiltin_method {
    const char *name;
    jmethod_fn fn;
};
const struct jglobal *ev_global_find(const char *name);                       /* NULL if none */
const struct jbuiltin_method *ev_method_find(jval self, const char *name);    /* NULL if self's type has none */
jval ev_filter(ev *E, jnode *at, const char *name, jval v, jargs *A);
bool ev_test(ev *E, jnode *at, const char *name, jval v, jargs *A);

#endif
