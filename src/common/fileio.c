/* fileio.c — reading whole files and joining paths.
 *
 * Hugging Face caches and our shared fixtures use symlinks for tokenizer files. A git checkout made with
 * core.symlinks=false turns each symlink into a short text file holding the relative target path; we
 * follow those transparently so such checkouts load like real ones. */
#include "common/fileio.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

char *kiln_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t o = a;
    if (a && dir[a - 1] != '/') p[o++] = '/';
    memcpy(p + o, name, b + 1);
    return p;
}

/* If path is a small regular file whose whole content is a relative path to an existing file,
 * returns that target (malloc'd); else NULL. */
static char *text_symlink_target(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0 || st.st_size >= PATH_MAX) return NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char buf[PATH_MAX];
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    fclose(f);
    buf[n] = 0;
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r')) buf[--n] = 0;
    if (n == 0 || buf[0] == '/' || buf[0] == '{' || memchr(buf, '\n', n) || strlen(buf) != n) return NULL;
    const char *slash = strrchr(path, '/');
    size_t dlen = slash ? (size_t)(slash - path) : 1;
    char *dir = slash ? strndup(path, dlen) : strdup(".");
    char *target = dir ? kiln_path_join(dir, buf) : NULL;
    free(dir);
    struct stat ts;
    if (!target || stat(target, &ts) != 0 || !S_ISREG(ts.st_mode)) {
        free(target);
        return NULL;
    }
    return target;
}

char *kiln_resolve_path(const char *path) {
    char *cur = strdup(path);
    /* Follow a bounded chain, as the kernel bounds symlink loops. */
    for (int hops = 0; cur && hops < 8; hops++) {
        char *next = text_symlink_target(cur);
        if (!next) return cur;
        free(cur);
        cur = next;
    }
    return cur;
}

char *kiln_read_file(const char *path, size_t *len, kiln_err *err) {
    char *real = kiln_resolve_path(path);
    if (!real) {
        kiln_err_set(err, "%s: out of memory", path);
        return NULL;
    }
    FILE *f = fopen(real, "rb");
    if (!f) {
        kiln_err_set(err, "%s: %s", path, strerror(errno));
        free(real);
        return NULL;
    }
    free(real);
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 1 << 20;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                kiln_err_set(err, "%s: out of memory", path);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        kiln_err_set(err, "%s: read error", path);
        return NULL;
    }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}
