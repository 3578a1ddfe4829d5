/* eval.h — the evaluator's state, shared by eval.c (expressions, statements) and builtins.c (filters,
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

/* builtins.c */
jval ev_filter(ev *E, jnode *at, const char *name, jval v, jargs *A);
bool ev_test(ev *E, jnode *at, const char *name, jval v, jargs *A);
jval ev_call_method(ev *E, jnode *at, jval self, const char *name, jargs *A);
jval ev_call_global(ev *E, jnode *at, int fn, jargs *A); /* fn: index into lookup()'s table */

#endif
