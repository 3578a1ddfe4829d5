/* jinja.h — internals of the chat-template interpreter (src/template/).
 *
 * Pipeline: lexer.c (source → tokens, applying trim_blocks / lstrip_blocks / `-` whitespace control as
 * Python jinja2 does) → parser.c (tokens → AST) → eval.c (AST → output, Python jinja2 semantics).
 * Every value and AST node lives in one arena per render, freed at once: no refcounts, no leaks. Errors
 * (bad templates, broken limits, out of memory) longjmp to the render's entry point, which frees the
 * arena and any open buffers. */
#ifndef KILN_TEMPLATE_JINJA_H
#define KILN_TEMPLATE_JINJA_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>

#include <stdint.h>

#include "common/strbuf.h"
#include "kiln.h"

typedef struct jctx jctx;

/* ---- arena ---- */
typedef struct jarena_blk jarena_blk;
typedef struct jarena {
    jarena_blk *head;
} jarena;
/* Zeroed arena memory, counted against the render's memory budget; out of memory and a broken budget
 * are template errors (longjmp), so callers never see NULL. */
void *j_alloc(jctx *c, size_t n);

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
        const struct jglobal *fn;
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
    const struct jbuiltin_method *def; /* the entry of self's method table */
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

typedef struct jbuf jbuf;

struct jctx {
    jarena arena;
    kiln_err *err;
    jmp_buf fail;               /* every error longjmps here after filling err */
    kiln_template_limits lim;   /* every field set (defaults filled in) */
    size_t mem_used;            /* bytes allocated so far: arena blocks + buffer growth (never decreases) */
    uint64_t steps;             /* loop iterations, macro calls, container items compared/searched/printed */
    size_t work;                /* scanning not yet charged as a step (J_WORK_PER_STEP units make one) */
    unsigned depth;             /* current nesting: parse levels, expressions, statements, printed values */
    jbuf *open, *spare;         /* buffers in use (freed by j_ctx_free after a failure); closed ones for reuse */
    int line, col;              /* where evaluation is, for errors raised below it (allocation, limits) */
};

/* Sets up c for one render with lim (NULL or zero fields: the defaults); j_ctx_free releases everything
 * it allocated, whether the render finished or failed. */
void j_ctx_init(jctx *c, const kiln_template_limits *lim, kiln_err *err);
void j_ctx_free(jctx *c);

_Noreturn void j_fail(jctx *c, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Depth guard for every recursive walk (parser, evaluator, printing, comparison): a template error when
 * the nesting passes lim.max_depth, before the C stack can overflow. */
void j_enter(jctx *c);
static inline void j_leave(jctx *c) { c->depth--; }
/* One unit of work against lim.max_steps: a loop iteration, a macro call, or an item visited by a walk over
 * a container (comparison, search, printing, tojson), so no template does unbounded work without output. */
void j_step(jctx *c);
/* Scanning that allocates nothing (searching, comparing, counting code points): bytes scanned, or 64 per
 * dict key compared; every J_WORK_PER_STEP of them count as one step, so `'x' in s` on a long string in a
 * loop runs into max_steps instead of running for minutes. */
#define J_WORK_PER_STEP 4096
#define J_WORK_PER_KEY 64
#define J_WORK_PER_CHAR 4 /* a byte looked at one by one in C (memchr/memcmp-speed scans count 1) */
void j_work(jctx *c, size_t units);
/* Fails unless a string of n bytes is within lim.max_output_bytes (what names the operation). */
void j_check_len(jctx *c, size_t n, const char *what);

/* lexer.c */
jtok *j_lex(jctx *c, const char *src, size_t *n_tok);

/* parser.c */
typedef struct jnode jnode;
jnode *j_parse(jctx *c, jtok *toks, size_t n);

/* eval.c */
char *j_render(jctx *c, jnode *root, jdict *vars, size_t *out_len);

/* value.c */
jstr *js_new(jctx *c, const char *s, size_t n);
jstr *js_cat(jctx *c, const jstr *a, const jstr *b);
jlist *jl_new(jctx *c, size_t cap);
void jl_push(jctx *c, jlist *l, jval v);
jdict *jd_new(jctx *c);
/* Dict lookups scan the keys, charged as j_work, so a template that builds a huge dict and searches it in
 * a loop runs into max_steps instead of quadratic time. */
jval *jd_get(jctx *c, const jdict *d, const char *key, size_t n);
void jd_set(jctx *c, jdict *d, jval key, jval v);
jval *jd_find_key(jctx *c, const jdict *d, jval key); /* by value equality (counts steps) */
jval jv_str(jctx *c, const char *s, size_t n);
jval jv_cstr(jctx *c, const char *s);
jval jv_int(long long i);
jval jv_bool(bool b);
jval jv_undef(const char *name);
jval jv_none(void);
bool jv_truthy(jval v);
bool jv_equal(jctx *c, jval a, jval b); /* Python ==, identity first; container items count as steps */
const char *jv_typename(jval v);
/* A growing text buffer: the project's strbuf, registered with the render so that a failure (longjmp)
 * frees it; its growth counts against the memory budget and its length against max_output_bytes.
 * jb_open → jb_put... → jb_str / jb_val (an arena string) or jb_take (malloc'd, for the caller). */
struct jbuf {
    strbuf sb;
    jctx *c;
    jbuf *prev, *next; /* in c->open (or c->spare once closed) */
};
jbuf *jb_open(jctx *c);
void jb_put(jbuf *b, const char *s, size_t n);
void jb_putc(jbuf *b, char ch);
void jb_fill(jbuf *b, char ch, size_t n); /* n copies of ch */
jstr *jb_str(jbuf *b);                    /* closes b */
jval jb_val(jbuf *b);                     /* closes b: the string as a value */
char *jb_take(jbuf *b, size_t *n);        /* closes b: the bytes, malloc'd, for the caller */
/* Appends Python str(v) / repr(v). */
void jv_print(jctx *c, jbuf *b, jval v, bool repr);
void jv_float_repr(char *out, size_t cap, double f); /* Python repr(float) */
jstr *jv_to_str(jctx *c, jval v);
/* transformers' tojson: json.dumps(ensure_ascii=False, indent, separators, sort_keys) */
void jv_tojson(jctx *c, jbuf *b, jval v, long long indent, const char *item_sep, const char *key_sep, bool sort_keys,
               int depth, int line, int col);
/* JSON text (jansson) → value. */
jval jv_from_json(jctx *c, const void *json_t_ptr);
/* UTF-8 helpers: code points in s; byte offset of code point i. */
size_t ju_len(jctx *c, const char *s, size_t n);
size_t ju_offset(jctx *c, const char *s, size_t n, size_t cp);

#endif
