/* weight_cache.c — the on-disk cache of converted weights (see weight_cache.h for the layout). */
#include "model/weight_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define WC_MAGIC "KILNWC\0\0"
#define WC_VERSION 5u /* bump when the layout or any conversion's rounding changes */
#define WC_ALIGN 64   /* each matrix starts on a cache line */
#define WC_PAGE 4096

typedef struct wc_header {
    char magic[8];
    uint32_t version, n_files, n_mats;
    int32_t quant, dtype;
    uint32_t pad;
    uint64_t data_off, data_bytes, checksum;
} wc_header;

typedef struct wc_mat {
    int32_t dt, rows, cols, il; /* layout, as the file spells it: 16 = KERN_LAYOUT_PANEL16, 1 = plain */
    uint64_t off; /* from data_off */
} wc_mat;

static size_t align_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* A fast 4-lane multiply-xor hash: catches corruption, not adversaries (the cache is the user's own). */
static uint64_t hash_bytes(const void *p, size_t n, uint64_t seed) {
    const unsigned char *b = p;
    const uint64_t P = 0x9E3779B97F4A7C15ull;
    uint64_t h[4] = {seed ^ P, seed + 1, seed ^ (P >> 7), seed - 1};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++) {
            uint64_t w;
            memcpy(&w, b + i + 8 * k, 8);
            h[k] = (h[k] ^ w) * P;
            h[k] ^= h[k] >> 29;
        }
    uint64_t r = n;
    for (; i < n; i++) r = (r ^ b[i]) * P;
    for (int k = 0; k < 4; k++) r = (r ^ h[k]) * P, r ^= r >> 31;
    return r;
}

static uint64_t mats_checksum(const wc_want *w, const char *base, const wc_mat *recs) {
    uint64_t h = 0;
    for (int i = 0; i < w->n_mats; i++) {
        const char *data = base ? base + recs[i].off : (const char *)w->mats[i].data;
        h = hash_bytes(data, kern_row_bytes(w->mats[i].dt, w->mats[i].cols) * (size_t)w->mats[i].rows, h);
    }
    return h;
}

/* The header and records want describes, with data offsets laid out; recs has want->n_mats entries. */
static void layout(const wc_want *w, wc_header *h, wc_mat *recs) {
    memset(h, 0, sizeof *h);
    memcpy(h->magic, WC_MAGIC, 8);
    h->version = WC_VERSION;
    h->n_files = (uint32_t)w->n_files;
    h->n_mats = (uint32_t)w->n_mats;
    h->quant = w->quant;
    h->dtype = w->dtype;
    size_t meta = sizeof *h + (size_t)w->n_files * sizeof(wc_file) + (size_t)w->n_mats * sizeof(wc_mat);
    h->data_off = align_up(meta, WC_PAGE);
    size_t off = 0;
    for (int i = 0; i < w->n_mats; i++) {
        const kiln_mat *m = &w->mats[i];
        recs[i] = (wc_mat){(int32_t)m->dt, m->rows, m->cols, m->layout == KERN_LAYOUT_PANEL16 ? KERN_PANEL : 1, off};
        off = align_up(off + kern_row_bytes(m->dt, m->cols) * (size_t)m->rows, WC_ALIGN);
    }
    h->data_bytes = off;
}

char *wcache_path(const char *src, const char *tag) {
    /* a model file (a GGUF): "<its name>.<tag>.kiln" in its directory; a model directory: "model.<tag>.kiln" in it */
    struct stat st;
    const char *slash = strrchr(src, '/');
    const bool file = stat(src, &st) == 0 && S_ISREG(st.st_mode);
    char name[512], *dir = file ? (slash ? strndup(src, (size_t)(slash - src + 1)) : strdup(".")) : strdup(src);
    snprintf(name, sizeof name, "%s.%s.kiln", file ? (slash ? slash + 1 : src) : "model", tag);
    if (!dir) return NULL;
    char *out = NULL;
    if (access(dir, W_OK) == 0) out = kiln_path_join(dir, name);
    else { /* read-only: ROOT/kiln-weights/<hash of the source's real path>-<name> */
        char *real = kiln_resolve_path(src), *root = kiln_hub_cache_root();
        char *sub = root ? kiln_path_join(root, "kiln-weights") : NULL;
        if (real && sub) {
            mkdir(root, 0755);
            mkdir(sub, 0755);
            char leaf[600];
            snprintf(leaf, sizeof leaf, "%016llx-%s", (unsigned long long)hash_bytes(real, strlen(real), 0), name);
            out = kiln_path_join(sub, leaf);
        }
        free(real), free(root), free(sub);
    }
    free(dir);
    return out;
}

static int reject(kiln_err *err, void *map, size_t len, const char *why) {
    if (map) munmap(map, len);
    return kiln_err_set(err, "%s", why), -1;
}

int wcache_load(const char *path, const wc_want *w, void **map_out, size_t *len_out, size_t *offs, kiln_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* (a FIFO must not hang the load) */
    if (fd < 0) return errno == ENOENT ? 1 : kiln_err_set(err, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return reject(err, NULL, 0, "not a regular file");
    }
    if ((size_t)st.st_size < sizeof(wc_header)) {
        close(fd);
        return reject(err, NULL, 0, "truncated (shorter than its header)");
    }
    size_t len = (size_t)st.st_size;
    void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return kiln_err_set(err, "cannot map: %s", strerror(errno));
    const wc_header *h = map;
    if (memcmp(h->magic, WC_MAGIC, 8) || h->version != WC_VERSION)
        return reject(err, map, len, "not a kiln weight cache of this version");
    wc_header want_h;
    wc_mat *want_recs = malloc(sizeof(wc_mat) * (size_t)(w->n_mats ? w->n_mats : 1));
    if (!want_recs) return reject(err, map, len, "out of memory");
    layout(w, &want_h, want_recs);
    const wc_file *files = (const wc_file *)(h + 1);
    const wc_mat *recs = (const wc_mat *)(files + w->n_files);
    const char *why = NULL;
    if (h->n_files != want_h.n_files || h->n_mats != want_h.n_mats || h->quant != want_h.quant ||
        h->dtype != want_h.dtype)
        why = "made for another model or format";
    else if (h->data_off != want_h.data_off || h->data_bytes != want_h.data_bytes || len != h->data_off + h->data_bytes)
        why = "truncated or wrong size";
    else if (memcmp(files, w->files, sizeof(wc_file) * (size_t)w->n_files))
        why = "stale (the model's files changed)";
    else if (memcmp(recs, want_recs, sizeof(wc_mat) * (size_t)w->n_mats))
        why = "made for other tensor shapes or formats";
    else if (mats_checksum(w, (const char *)map + h->data_off, recs) != h->checksum)
        why = "corrupt (checksum mismatch)";
    if (!why)
        for (int i = 0; i < w->n_mats; i++) offs[i] = (size_t)h->data_off + (size_t)recs[i].off;
    free(want_recs);
    if (why) return reject(err, map, len, why);
    *map_out = map;
    *len_out = len;
    return 0;
}

static int write_all(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

static int write_zeros(FILE *f, size_t n) {
    static const char z[WC_PAGE];
    while (n) {
        size_t k = n < sizeof z ? n : sizeof z;
        if (write_all(f, z, k)) return -1;
        n -= k;
    }
    return 0;
}

int wcache_save(const char *path, const wc_want *w, kiln_err *err) {
    wc_header h;
    wc_mat *recs = malloc(sizeof(wc_mat) * (size_t)(w->n_mats ? w->n_mats : 1));
    size_t plen = strlen(path) + 32;
    char *tmp = malloc(plen);
    if (!recs || !tmp) {
        free(recs), free(tmp);
        return kiln_err_set(err, "out of memory");
    }
    layout(w, &h, recs);
    h.checksum = mats_checksum(w, NULL, NULL);
    snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int rc = f ? 0 : -1;
    size_t at = 0;
    if (!rc) rc = write_all(f, &h, sizeof h) || write_all(f, w->files, sizeof(wc_file) * (size_t)w->n_files) ||
                  write_all(f, recs, sizeof(wc_mat) * (size_t)w->n_mats);
    if (!rc) rc = write_zeros(f, h.data_off - (sizeof h + sizeof(wc_file) * (size_t)w->n_files +
                                               sizeof(wc_mat) * (size_t)w->n_mats));
    for (int i = 0; i < w->n_mats && !rc; i++) {
        size_t bytes = kern_row_bytes(w->mats[i].dt, w->mats[i].cols) * (size_t)w->mats[i].rows;
        rc = write_zeros(f, recs[i].off - at) || write_all(f, w->mats[i].data, bytes);
        at = recs[i].off + bytes;
    }
    if (!rc) rc = write_zeros(f, h.data_bytes - at);
    if (!rc) rc = fflush(f) || fsync(fileno(f));
    if (f && fclose(f)) rc = -1;
    if (!rc) rc = rename(tmp, path);
    if (rc) {
        kiln_err_set(err, "cannot write %s: %s", path, errno ? strerror(errno) : "I/O error");
        unlink(tmp);
    }
    free(recs), free(tmp);
    return rc ? -1 : 0;
}
