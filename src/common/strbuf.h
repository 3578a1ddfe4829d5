/* strbuf.h — the library's one growable byte buffer: always NUL-terminated, appends report
 * out-of-memory (-1) instead of aborting, and a failed append leaves the contents as they were. */
#ifndef KILN_STRBUF_H
#define KILN_STRBUF_H

#include <stddef.h>

typedef struct strbuf {
    char *p;    /* NULL until the first append; then p[len] == 0 */
    size_t len, cap;
} strbuf;

int strbuf_put(strbuf *b, const void *s, size_t n); /* 0, or -1 when out of memory */
int strbuf_puts(strbuf *b, const char *s);
int strbuf_put_ints(strbuf *b, const int *v, int n); /* n ints as raw bytes (MPI step messages) */
int strbuf_putc(strbuf *b, char c);
int strbuf_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int strbuf_reserve(strbuf *b, size_t extra); /* room for `extra` more bytes + the NUL */
/* Hands the bytes to the caller (an empty buffer gives a malloc'd ""; NULL only when out of memory) and
 * leaves b empty. */
char *strbuf_take(strbuf *b, size_t *len);
void strbuf_clear(strbuf *b); /* len = 0, memory kept */
void strbuf_free(strbuf *b);

#endif
