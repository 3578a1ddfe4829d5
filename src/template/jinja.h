/* jinja.h — internals of the chat-template interpreter (src/template/).
 *
 * Pipeline: lexer.c (source → tokens, applying trim_blocks / lstrip_blocks / `-` whitespace control as
 * Python jinja2 does) → parser.c (tokens → AST) → eval.c (AST → output, Python jinja2 semantics).
 * Every value and AST node lives in one arena per render, freed at once: no refcounts, no leaks. */
#ifndef KILN_TEMPLATE_JINJA_H
#define KILN_TEMPLATE_JINJA_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>

#include "kiln.h"

/* ---- arena ---- */
typedef struct jarena_blk jarena_blk;
typedef struct jarena {
    jarena_blk *head;
} jarena;
void *ja_alloc(jarena *a, size_t n); /* zeroed */
void ja_free(jarena *a);

/* ---- values ---- */
typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_LOOP, V_MACRO, V_FUNC, V_METHOD } vtype;

typedef struct jstr {
    size_t n;
    char s[]; /* NUL-terminated too */
} jstr;
typedef struct jlist jlist;
typedef struct jdict jdict;
typedef struct jloop jloop;
typedef struct jmacro jmacro;
typedef struct jmethod jmethod;

typedef struct jval {
    vtype t;
    union {
        bool b;
        long long i;
        double f;
        jstr *s;
        jlist *l;
        jdict *d;
        jloop *lp;
        jmacro *m;
        int fn;
        jmethod *bm;
    };
    const char *uname; /* V_UNDEF: the missing name, for error messages (may be NULL) */
} jval;

struct jlist {
    jval *v;
    size_t n, cap;
};
struct jdict {
    jval *k, *v;
    size_t n, cap;
    bool is_ns; /* namespace(): attributes assignable with set ns.x = ... */
};
struct jloop {
    jlist *items;
    size_t i;
};
struct jmethod {
    jval self;
    const char *name;
};

/* ---- tokens ---- */
typedef enum { T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING, T_INT, T_FLOAT, T_OP, T_EOF } ttype;
typedef struct jtok {
    ttype t;
    const char *s; /* T_TEXT/T_NAME/T_OP: points into the source (T_TEXT: after whitespace control) */
    size_t n;
    jstr *str; /* T_STRING: the decoded literal */
    long long iv;
    double fv;
    int line, col;
} jtok;

typedef struct jctx {
    jarena arena;
    kiln_err *err;
    jmp_buf fail; /* every error longjmps here after filling err */
} jctx;

_Noreturn void j_fail(jctx *c, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* lexer.c */
jtok *j_lex(jctx *c, const char *src, size_t *n_tok);

/* parser.c */
typedef struct jnode jnode;
jnode *j_parse(jctx *c, jtok *toks, size_t n);

/* eval.c */
void j_render(jctx *c, jnode *root, jdict *vars, char **out, size_t *out_len);

/* value.c */
jstr *js_new(jctx *c, const char *s, size_t n);
jstr *js_cat(jctx *c, const jstr *a, const jstr *b);
jlist *jl_new(jctx *c, size_t cap);
void jl_push(jctx *c, jlist *l, jval v);
jdict *jd_new(jctx *c);
jval *jd_get(const jdict *d, const char *key, size_t n);
jval *jd_find(const jdict *d, jval key);
void jd_set(jctx *c, jdict *d, jval key, jval v);
jval jv_str(jctx *c, const char *s, size_t n);
jval jv_cstr(jctx *c, const char *s);
jval jv_int(long long i);
jval jv_bool(bool b);
jval jv_undef(const char *name);
jval jv_none(void);
bool jv_truthy(jval v);
bool jv_equal(jval a, jval b);
const char *jv_typename(jval v);
/* Appends Python str(v) / repr(v) to a growing buffer. */
/* Growing output buffer in the arena (so an error longjmp leaks nothing). */
typedef struct jbuf {
    char *p;
    size_t n, cap;
    jarena *a;
} jbuf;
#define JBUF(c) ((jbuf){.a = &(c)->arena})
void jb_put(jbuf *b, const char *s, size_t n);
void jb_putc(jbuf *b, char ch);
void jv_print(jctx *c, jbuf *b, jval v, bool repr);
void jv_float_repr(char *out, size_t cap, double f); /* Python repr(float) */
jstr *jv_to_str(jctx *c, jval v);
/* transformers' tojson: json.dumps(ensure_ascii=False, indent, separators, sort_keys) */
void jv_tojson(jctx *c, jbuf *b, jval v, int indent, const char *item_sep, const char *key_sep, bool sort_keys,
               int depth, int line, int col);
/* JSON text (jansson) → value. */
jval jv_from_json(jctx *c, const void *json_t_ptr);
/* UTF-8 helpers: code points in s; byte offset of code point i. */
size_t ju_len(const char *s, size_t n);
size_t ju_offset(const char *s, size_t n, size_t cp);

#endif
