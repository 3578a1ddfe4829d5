/* ast.h — the syntax tree parser.c builds and eval.c walks. */
#ifndef KILN_TEMPLATE_AST_H
#define KILN_TEMPLATE_AST_H

#include "template/jinja.h"

typedef enum {
    /* statements */
    N_BODY,        /* kids: statements */
    N_TEXT,        /* val: the text */
    N_OUT,         /* a: expression to print */
    N_IF,          /* a: cond, b: then body, c: else body (an N_IF for elif) or NULL */
    N_FOR,         /* targets: names; a: iterable, b: body, c: else body, d: filter condition */
    N_SET,         /* targets (or a: attribute target ns.x), b: value */
    N_SETBLOCK,    /* targets[0], b: body */
    N_MACRO,       /* name, params (names + defaults in kids), b: body */
    N_FILTERBLOCK, /* a: filter chain applied to a placeholder, b: body */
    N_CALLBLOCK,   /* a: call expression, b: caller body */
    N_BREAK,
    N_CONTINUE,
    N_DO, /* a: expression evaluated for its effect */
    /* expressions */
    E_CONST,  /* val */
    E_NAME,   /* name */
    E_ATTR,   /* a.name */
    E_ITEM,   /* a[b] */
    E_SLICE,  /* a[b:c:d], any of b/c/d NULL */
    E_CALL,   /* a(args) */
    E_FILTER, /* a | name(args); a NULL inside {% filter %} */
    E_TEST,   /* a is [not] name(args) */
    E_BIN,    /* a op b */
    E_NOT,
    E_NEG,
    E_POS,
    E_AND,
    E_OR,
    E_COND, /* b if a else c */
    E_LIST,
    E_TUPLE,
    E_DICT, /* kids: key, value, key, value, ... */
} nkind;

struct jnode {
    nkind k;
    int line, col;
    const char *name; /* NUL-terminated (arena) */
    jval val;
    jnode *a, *b, *c, *d;
    jnode **kids; /* statements, list items, call/filter args */
    const char **kw; /* per kid: keyword name or NULL (call args, macro params) */
    size_t n;
    const char **targets; /* for / set target names */
    size_t n_targets;
    char op[3];
    bool negate; /* E_TEST: `is not`; E_BIN `in`: `not in` */
};

#endif
