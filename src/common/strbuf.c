/* strbuf.c — see strbuf.h. */
#include "common/strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int strbuf_reserve(strbuf *b, size_t extra) {
    if (extra > SIZE_MAX / 2 - b->len - 1) return -1;
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) return -1;
    b->p = p, b->cap = cap;
    return 0;
}

int strbuf_put(strbuf *b, const void *s, size_t n) {
    if (strbuf_reserve(b, n)) return -1;
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
    return 0;
}

int strbuf_puts(strbuf *b, const char *s) { return strbuf_put(b, s, strlen(s)); }

int strbuf_putc(strbuf *b, char c) { return strbuf_put(b, &c, 1); }

int strbuf_printf(strbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || strbuf_reserve(b, (size_t)n)) return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

char *strbuf_take(strbuf *b, size_t *len) {
    if (!b->p && strbuf_reserve(b, 0)) return NULL;
    if (!b->len) b->p[0] = 0;
    char *p = b->p;
    if (len) *len = b->len;
    b->p = NULL, b->len = b->cap = 0;
    return p;
}

void strbuf_clear(strbuf *b) {
    b->len = 0;
    if (b->p) b->p[0] = 0;
}

void strbuf_free(strbuf *b) {
    free(b->p);
    b->p = NULL, b->len = b->cap = 0;
}

int strbuf_put_ints(strbuf *b, const int *v, int n) { return strbuf_put(b, v, (size_t)n * sizeof *v); }
