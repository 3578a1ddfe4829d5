/* fileio.c — reading whole files and joining paths.
 *
 * Hugging Face caches and our shared fixtures use symlinks for tokenizer files. A git checkout made with
 * core.symlinks=false turns each symlink into a short text file holding the relative target path; we
 * follow those transparently so such checkouts load like real ones. */
#include "common/fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Opens path for reading only if it is a regular file: O_NONBLOCK so that a FIFO cannot block the
 * open, then fstat on what was opened (no race with a rename). -1 with err set otherwise. */
static int open_regular(const char *path, const char *shown, off_t *size, kiln_err *err) {
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return kiln_err_set(err, "%s: %s", shown, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        kiln_err_set(err, "%s: %s", shown, strerror(errno));
        close(fd);
        return -1;
    }
    if (!S_ISREG(st.st_mode)) {
        kiln_err_set(err, "%s: not a regular file (%s)", shown, S_ISDIR(st.st_mode) ? "a directory"
                     : S_ISFIFO(st.st_mode) ? "a FIFO" : S_ISCHR(st.st_mode) ? "a character device" : "special file");
        close(fd);
        return -1;
    }
    *size = st.st_size;
    return fd;
}

char *kiln_read_file(const char *path, size_t *len, kiln_err *err) {
    char *real = kiln_resolve_path(path);
    if (!real) {
        kiln_err_set(err, "%s: out of memory", path);
        return NULL;
    }
    off_t size = 0;
    int fd = open_regular(real, path, &size, err);
    free(real);
    if (fd < 0) return NULL;
    /* Bounded by the size fstat gave: a file that grows while it is read is cut there. */
    char *buf = (uint64_t)size < SIZE_MAX ? malloc((size_t)size + 1) : NULL;
    if (!buf) {
        close(fd);
        kiln_err_set(err, "%s: out of memory (%lld bytes)", path, (long long)size);
        return NULL;
    }
    size_t n = 0;
    while (n < (size_t)size) {
        ssize_t r = read(fd, buf + n, (size_t)size - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            kiln_err_set(err, "%s: read error: %s", path, strerror(errno));
            free(buf);
            close(fd);
            return NULL;
        }
        if (r == 0) break; /* it shrank: what is there */
        n += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int kiln_map_file(const char *path, void **map, size_t *size, kiln_err *err) {
    *map = NULL, *size = 0;
    /* O_NONBLOCK: a FIFO in a model's place fails the regular-file check below instead of hanging here */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return kiln_err_set(err, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return kiln_err_set(err, "%s: not a regular file", path);
    }
    size_t n = (size_t)st.st_size;
    void *p = n ? mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (n && p == MAP_FAILED) return kiln_err_set(err, "%s: mmap failed: %s", path, strerror(errno));
    *map = p, *size = n;
    return 0;
}

int kiln_map_parse(const char *path, kiln_parse_fn parse, void *obj, void **map, size_t *size, kiln_err *err) {
    void *m;
    size_t n;
    if (kiln_map_file(path, &m, &n, err)) return -1;
    if (parse(obj, m, n, path, err)) {
        if (m) munmap(m, n);
        return -1;
    }
    *map = m, *size = n;
    return 0;
}
