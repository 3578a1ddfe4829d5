/* model_watch.c — notices the model's memory-mapped files being changed in place while the server runs.
 *
 * The weights are mmapped: truncating or overwriting model.safetensors (or the quant cache) underneath
 * would make the next access of a vanished page a SIGBUS that kills the process. The engine thread
 * checks, before every forward step, that each mapped file still has the identity, size and mtime it
 * had at load; when one changed in place the engine stops (no access to the mapping any more), fails
 * what is queued or running with a 503 that names the file, and /health reports it — the server stays
 * up and says why. A file replaced by a rename (a new inode, as `kiln pull` and `cp` onto a new name do)
 * is harmless: the old inode stays mapped.
 *
 * Why not catch SIGBUS instead: the library installs no process-wide signal handlers (they belong to
 * the embedding program), and a fault inside a kernel on a worker thread cannot be unwound safely (locks
 * held, the thread pool mid-barrier). The check costs one stat() per mapped file per step (about a
 * microsecond each); what it cannot close is the window of the one step during which a file is
 * truncated — documented, not hidden. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "serve/serve.h"

typedef struct watched {
    char *path;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} watched;

struct model_watch {
    watched *f;
    int n, cap;
};

static int watch_add(model_watch *w, const char *path, kiln_err *err) {
    struct stat st;
    if (stat(path, &st) || !S_ISREG(st.st_mode)) return 0; /* not a mapped weight file */
    if (w->n == w->cap) {
        int cap = w->cap ? 2 * w->cap : 8;
        watched *f = realloc(w->f, (size_t)cap * sizeof *f);
        if (!f) return kiln_err_set(err, "out of memory");
        w->f = f, w->cap = cap;
    }
    char *p = strdup(path);
    if (!p) return kiln_err_set(err, "out of memory");
    w->f[w->n++] = (watched){.path = p, .dev = st.st_dev, .ino = st.st_ino, .size = st.st_size, .mtime = st.st_mtim};
    return 0;
}

model_watch *model_watch_new(const char *dir, const char *cache_path, kiln_err *err) {
    model_watch *w = calloc(1, sizeof *w);
    if (!w) return kiln_err_set(err, "out of memory"), NULL;
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors")) continue;
        char *p = kiln_path_join(dir, e->d_name);
        int rc = p ? watch_add(w, p, err) : kiln_err_set(err, "out of memory");
        free(p);
        if (rc) {
            closedir(d);
            model_watch_free(w);
            return NULL;
        }
    }
    if (d) closedir(d);
    if (cache_path && watch_add(w, cache_path, err)) {
        model_watch_free(w);
        return NULL;
    }
    return w;
}

int model_watch_check(const model_watch *w, kiln_err *err) {
    for (int i = 0; w && i < w->n; i++) {
        const watched *f = &w->f[i];
        struct stat st;
        if (stat(f->path, &st) || st.st_dev != f->dev || st.st_ino != f->ino) continue; /* replaced: harmless */
        if (st.st_size != f->size)
            return kiln_err_set(err, "the model file %s changed size on disk (%lld -> %lld bytes) while mapped: "
                                     "restart the server", f->path, (long long)f->size, (long long)st.st_size);
        if (st.st_mtim.tv_sec != f->mtime.tv_sec || st.st_mtim.tv_nsec != f->mtime.tv_nsec)
            return kiln_err_set(err, "the model file %s was overwritten in place while mapped: restart the server",
                                f->path);
    }
    return 0;
}

int model_watch_count(const model_watch *w) { return w ? w->n : 0; }

void model_watch_free(model_watch *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) free(w->f[i].path);
    free(w->f);
    free(w);
}
