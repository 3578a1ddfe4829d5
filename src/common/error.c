/* error.c — the one-line error buffer every library call reports through. */
#include "kiln.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int kiln_err_set(kiln_err *err, const char *fmt, ...) {
    if (!err) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    /* One line: callers print it as is, scripts read it as one record. */
    for (char *p = err->msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
    return -1;
}

/* Every allocation failure in the library ends its message in these words: the one place that knows. */
bool kiln_err_is_nomem(const kiln_err *err) {
    static const char oom[] = "out of memory";
    size_t n = err ? strlen(err->msg) : 0;
    return n >= sizeof oom - 1 && strcmp(err->msg + n - (sizeof oom - 1), oom) == 0;
}
