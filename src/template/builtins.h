/* builtins.h — what the built-in families (strings.c, methods.c, filters.c, predicates.c, globals.c) share. */
#ifndef KILN_TEMPLATE_BUILTINS_H
#define KILN_TEMPLATE_BUILTINS_H

#include "template/eval.h"

/* strings.c */
jstr *ev_need_str(ev *E, jnode *at, jval v, const char *what); /* v as a string, or a template error */
jval ev_str_of(ev *E, jval v);                                  /* str(v) as a value */
jval py_strip(ev *E, jnode *at, jstr *s, jval *chars, bool left, bool right);
jval py_split(ev *E, jnode *at, jstr *s, jval *sep, jval *maxsplit);
jval py_replace(ev *E, jstr *s, jstr *old, jstr *new, long long count);
enum { CASE_UPPER, CASE_LOWER, CASE_TITLE_PY, CASE_TITLE_JINJA, CASE_CAPITALIZE };
jval py_change_case(ev *E, jstr *s, int mode); /* ASCII case mapping; other characters pass through */
jval py_format(ev *E, jnode *at, jstr *fmt, jargs *A);
long long py_count(ev *E, jstr *s, jstr *sub);
bool py_affix_match(ev *E, jnode *at, jstr *s, jval arg, bool start);
bool py_cased(const jstr *s, int (*is)(int), int (*other)(int)); /* str.isupper()/islower() */

/* methods.c */
jval ev_items(ev *E, jdict *d);                              /* [[key, value], ...] */
jval ev_copy_list(ev *E, const jlist *src, bool reversed);
long long ev_list_find(ev *E, jlist *l, jval x);             /* index of the first item == x, or -1 */

#endif
