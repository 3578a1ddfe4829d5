/* download.c — fetching files into the cache: resume, verify, move into place atomically, in parallel.
 *
 * One file's life: already in the snapshot → nothing to do. Its blob already cached (another revision
 * shares it) → just link it. Otherwise GET {endpoint}/{repo}/resolve/{sha}/{path} (following the hub's
 * redirect to its CDN) into blobs/<blob>.incomplete, appending with `Range: bytes=N-` when a previous
 * attempt left N bytes; hash while writing; check size and (LFS) sha256; rename to blobs/<blob>; then put
 * a relative symlink into snapshots/<sha>/ with rename(2) so readers never see a half-made file.
 * Transient failures (connection cut, 5xx) retry from where they stopped. */
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "hub/hub.h"

#define MAX_ATTEMPTS 6

typedef struct dl_ctx {
    const char *endpoint, *repo_id, *sha, *token;
    const char *repo_dir;  /* cache mode: ROOT/models--org--name */
    const char *local_dir; /* local mode */
    hub_file *const *files; /* each touched by one worker only */
    size_t n, next;
    pthread_mutex_t mu;
    kiln_hub_progress prog;
    double last_report;
    void (*progress)(void *, const kiln_hub_progress *);
    void *progress_ud;
    int failed;
    kiln_err err; /* the first failure */
    int n_downloaded;
    int64_t bytes_downloaded;
} dl_ctx;

/* One transfer attempt's state, shared with curl's callbacks. */
typedef struct xfer {
    dl_ctx *ctx;
    CURL *c;
    FILE *fp;
    EVP_MD_CTX *md;
    int64_t have;     /* bytes in the file before this attempt */
    int64_t written;  /* bytes written by this attempt */
    int64_t reported; /* bytes of this file already counted in ctx->prog */
    int restarted;    /* server ignored Range: file truncated */
    int io_error;
    char etag[256], linked_etag[256], xcode[128];
} xfer;

static void report(dl_ctx *ctx, bool force) {
    /* called with ctx->mu held */
    double now = kiln_now();
    if (ctx->progress && (force || now - ctx->last_report >= 0.1)) {
        ctx->last_report = now;
        ctx->progress(ctx->progress_ud, &ctx->prog);
    }
}

static void count_bytes(xfer *x) {
    int64_t cur = x->have + x->written;
    pthread_mutex_lock(&x->ctx->mu);
    x->ctx->prog.bytes_done += cur - x->reported;
    x->reported = cur;
    report(x->ctx, false);
    pthread_mutex_unlock(&x->ctx->mu);
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
    xfer *x = ud;
    size_t len = sz * n;
    long code = 0;
    curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 300) return len; /* an error page: discard, the status is reported after */
    if (code == 200 && x->have > 0 && !x->restarted) {
        /* The server ignored our Range: start the file over. */
        x->restarted = 1;
        if (ftruncate(fileno(x->fp), 0) != 0 || fseek(x->fp, 0, SEEK_SET) != 0) {
            x->io_error = errno;
            return 0;
        }
        EVP_DigestInit_ex(x->md, EVP_sha256(), NULL);
        x->have = 0;
    }
    if (fwrite(p, 1, len, x->fp) != len) {
        x->io_error = errno ? errno : EIO;
        return 0;
    }
    EVP_DigestUpdate(x->md, p, len);
    x->written += (int64_t)len;
    count_bytes(x);
    return len;
}

static void header_value(const char *p, size_t len, const char *name, char *out, size_t cap) {
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(p, name, nl) != 0) return;
    size_t i = nl;
    while (i < len && p[i] == ' ') i++;
    size_t j = len;
    while (j > i && (p[j - 1] == '\r' || p[j - 1] == '\n' || p[j - 1] == ' ')) j--;
    /* ETags come quoted and maybe weak: W/"abc" → abc */
    if (j - i > 2 && p[i] == 'W' && p[i + 1] == '/') i += 2;
    if (j - i >= 2 && p[i] == '"' && p[j - 1] == '"') i++, j--;
    snprintf(out, cap, "%.*s", (int)(j - i), p + i);
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
    xfer *x = ud;
    size_t len = sz * n;
    /* The first response (the hub's, before a redirect to the CDN) carries the etags we trust. */
    if (!x->linked_etag[0]) header_value(p, len, "X-Linked-Etag:", x->linked_etag, sizeof x->linked_etag);
    if (!x->etag[0]) header_value(p, len, "ETag:", x->etag, sizeof x->etag);
    header_value(p, len, "X-Error-Code:", x->xcode, sizeof x->xcode);
    return len;
}

static bool transient(CURLcode cc, long code) {
    if (cc == CURLE_OK) return code >= 500 || code == 429;
    return cc == CURLE_PARTIAL_FILE || cc == CURLE_RECV_ERROR || cc == CURLE_SEND_ERROR ||
           cc == CURLE_OPERATION_TIMEDOUT || cc == CURLE_GOT_NOTHING || cc == CURLE_COULDNT_CONNECT ||
           cc == CURLE_HTTP2_STREAM || cc == CURLE_HTTP2;
}

static int64_t file_size(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* Hashes the bytes already in fp (a resumed download) so the digest covers the whole file. */
static int hash_prefix(FILE *fp, EVP_MD_CTX *md, int64_t n) {
    char buf[1 << 16];
    if (fseek(fp, 0, SEEK_SET) != 0) return -1;
    while (n > 0) {
        size_t want = n < (int64_t)sizeof buf ? (size_t)n : sizeof buf;
        size_t got = fread(buf, 1, want, fp);
        if (got == 0) return -1;
        EVP_DigestUpdate(md, buf, got);
        n -= (int64_t)got;
    }
    return fseek(fp, 0, SEEK_END);
}

/* GET url into `part` (resuming), then verify. On success `part` holds the complete file. */
static int fetch(dl_ctx *ctx, const hub_file *f, const char *url, const char *part, kiln_err *err) {
    char what[1024];
    snprintf(what, sizeof what, "%s: %s", ctx->repo_id, f->path);
    int64_t reported = 0; /* bytes of this file counted in the progress so far, across attempts */
    for (int attempt = 1;; attempt++) {
        xfer x = {.ctx = ctx};
        x.fp = fopen(part, "a+b");
        if (!x.fp) return kiln_err_set(err, "%s: cannot write %s: %s", what, part, strerror(errno));
        x.have = file_size(part);
        x.md = EVP_MD_CTX_new();
        EVP_DigestInit_ex(x.md, EVP_sha256(), NULL);
        if (x.have > 0 && hash_prefix(x.fp, x.md, x.have) != 0) x.have = 0, x.restarted = 1;
        if (x.restarted && ftruncate(fileno(x.fp), 0) != 0) x.io_error = errno;
        x.reported = reported;
        count_bytes(&x); /* what the partial file already holds counts as done */
        struct curl_slist *hdrs;
        x.c = hub_curl_new(url, ctx->token, &hdrs);
        CURLcode cc = CURLE_FAILED_INIT;
        long code = 0;
        bool complete_already = f->size >= 0 && x.have == f->size && x.have > 0;
        if (x.c && !complete_already && !x.io_error) {
            char range[64];
            if (x.have > 0) {
                snprintf(range, sizeof range, "%lld-", (long long)x.have);
                curl_easy_setopt(x.c, CURLOPT_RANGE, range);
            }
            curl_easy_setopt(x.c, CURLOPT_WRITEFUNCTION, on_body);
            curl_easy_setopt(x.c, CURLOPT_WRITEDATA, &x);
            curl_easy_setopt(x.c, CURLOPT_HEADERFUNCTION, on_header);
            curl_easy_setopt(x.c, CURLOPT_HEADERDATA, &x);
            cc = curl_easy_perform(x.c);
            curl_easy_getinfo(x.c, CURLINFO_RESPONSE_CODE, &code);
        }
        if (x.c) curl_easy_cleanup(x.c);
        curl_slist_free_all(hdrs);
        reported = x.reported;
        if (fflush(x.fp) != 0 && !x.io_error) x.io_error = errno;
        fclose(x.fp);
        unsigned char dig[32];
        unsigned dl = 0;
        EVP_DigestFinal_ex(x.md, dig, &dl);
        EVP_MD_CTX_free(x.md);
        pthread_mutex_lock(&ctx->mu);
        ctx->bytes_downloaded += x.written;
        pthread_mutex_unlock(&ctx->mu);
        if (x.io_error) return kiln_err_set(err, "%s: cannot write %s: %s", what, part, strerror(x.io_error));
        /* 416: we asked for bytes past the end, i.e. the partial file is already whole. */
        bool done = complete_already || (cc == CURLE_OK && (code == 200 || code == 206)) ||
                    (cc == CURLE_OK && code == 416 && x.have > 0);
        if (!done) {
            if (transient(cc, code) && attempt < MAX_ATTEMPTS) {
                usleep(200000u * (unsigned)attempt);
                continue;
            }
            if (cc != CURLE_OK)
                return kiln_err_set(err, "%s: download failed after %d attempts: %s (partial file kept for resume: %s)",
                                    what, attempt, curl_easy_strerror(cc), part);
            if (code >= 400) unlink(part);
            return hub_http_error(err, code, what, url, x.xcode);
        }
        int64_t got = file_size(part);
        if (f->size >= 0 && got != f->size) {
            unlink(part);
            return kiln_err_set(err, "%s: size mismatch: expected %lld bytes, got %lld", what, (long long)f->size,
                                (long long)got);
        }
        if (f->sha256[0]) {
            char hex[65];
            for (int i = 0; i < 32; i++) sprintf(hex + 2 * i, "%02x", dig[i]);
            if (strcmp(hex, f->sha256) != 0) {
                unlink(part); /* a corrupt download must not be resumed either */
                return kiln_err_set(err, "%s: sha256 mismatch: expected %s, got %s (file discarded)", what, f->sha256,
                                    hex);
            }
        }
        return 0;
    }
}

/* Asks the hub for a file's etag when the listing did not give a blob id (older mirrors). */
static char *head_etag(dl_ctx *ctx, const char *url, const char *what, kiln_err *err) {
    xfer x = {.ctx = ctx};
    struct curl_slist *hdrs;
    x.c = hub_curl_new(url, ctx->token, &hdrs);
    if (!x.c) {
        kiln_err_set(err, "cannot start libcurl");
        return NULL;
    }
    curl_easy_setopt(x.c, CURLOPT_NOBODY, 1L);
    curl_easy_setopt(x.c, CURLOPT_FOLLOWLOCATION, 0L); /* the hub's own answer holds X-Linked-Etag */
    curl_easy_setopt(x.c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(x.c, CURLOPT_HEADERDATA, &x);
    CURLcode cc = curl_easy_perform(x.c);
    long code = 0;
    curl_easy_getinfo(x.c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(x.c);
    curl_slist_free_all(hdrs);
    if (cc != CURLE_OK) {
        kiln_err_set(err, "%s: cannot reach %s: %s", what, url, curl_easy_strerror(cc));
        return NULL;
    }
    if (code >= 400) {
        hub_http_error(err, code, what, url, x.xcode);
        return NULL;
    }
    const char *e = x.linked_etag[0] ? x.linked_etag : x.etag;
    if (!*e || strchr(e, '/')) {
        kiln_err_set(err, "%s: the server sent no ETag for %s", what, url);
        return NULL;
    }
    return strdup(e);
}

/* "a/b/c.json" → "../../../blobs/<blob>" (snapshots/<sha>/a/b/c.json sits depth+2 below the repo). */
static char *relative_blob_link(const char *path, const char *blob) {
    int depth = 2;
    for (const char *p = path; *p; p++) depth += *p == '/';
    char *out = malloc((size_t)depth * 3 + strlen(blob) + 8);
    if (!out) return NULL;
    char *o = out;
    for (int i = 0; i < depth; i++) o += sprintf(o, "../");
    sprintf(o, "blobs/%s", blob);
    return out;
}

/* Atomically points `link` at `target` (a temporary symlink renamed over it). */
static int place_symlink(const char *target, const char *link, kiln_err *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.kiln-tmp.%d.%lx", link, (int)getpid(), (unsigned long)pthread_self());
    unlink(tmp);
    if (symlink(target, tmp) != 0 || rename(tmp, link) != 0) {
        int e = errno;
        unlink(tmp);
        return kiln_err_set(err, "cannot create %s: %s", link, strerror(e));
    }
    return 0;
}

int hub_write_text(const char *path, const char *text, kiln_err *err) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.kiln-tmp.%d", path, (int)getpid());
    FILE *fp = fopen(tmp, "w");
    if (!fp || fputs(text, fp) < 0 || fclose(fp) != 0 || rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return kiln_err_set(err, "cannot write %s: %s", path, strerror(e));
    }
    return 0;
}

/* Without a blob id from the listing (mirrors that ignore ?blobs=true) the file's etag comes from a HEAD
 * request; an LFS file's X-Linked-Etag is its sha256, which then is verified as well. */
static char *blob_name(dl_ctx *ctx, hub_file *f, const char *url, kiln_err *err) {
    if (f->blob) return strdup(f->blob);
    char what[1024];
    snprintf(what, sizeof what, "%s: %s", ctx->repo_id, f->path);
    char *e = head_etag(ctx, url, what, err);
    if (e && strlen(e) == 64 && strspn(e, "0123456789abcdef") == 64) snprintf(f->sha256, sizeof f->sha256, "%s", e);
    return e;
}

/* Another kiln, or a Python process, may be fetching the same blob: take the lock huggingface_hub takes
 * (ROOT/.locks/models--ORG--NAME/<blob>.lock, flock) so one downloads and the other then finds it. */
static int lock_blob(dl_ctx *ctx, const char *blob, kiln_err *err) {
    char path[4400];
    const char *slash = strrchr(ctx->repo_dir, '/');
    if (!slash) return kiln_err_set(err, "bad cache path %s", ctx->repo_dir);
    snprintf(path, sizeof path, "%.*s/.locks/%s/%s.lock", (int)(slash - ctx->repo_dir), ctx->repo_dir, slash + 1, blob);
    if (hub_mkdirs(path, false, err) != 0) return -1;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return kiln_err_set(err, "cannot create lock %s: %s", path, strerror(errno));
    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR) {
            close(fd);
            return kiln_err_set(err, "cannot lock %s: %s", path, strerror(errno));
        }
    return fd;
}

static int one_file_cache(dl_ctx *ctx, hub_file *f, const char *url, bool *transferred, kiln_err *err) {
    char snap[4096], blob_path[4096], part[4200];
    snprintf(snap, sizeof snap, "%s/snapshots/%s/%s", ctx->repo_dir, ctx->sha, f->path);
    struct stat st;
    if (stat(snap, &st) == 0 && S_ISREG(st.st_mode) && (f->size < 0 || st.st_size == f->size)) return 0;
    char *blob = blob_name(ctx, f, url, err);
    if (!blob) return -1;
    int rc = 0;
    snprintf(blob_path, sizeof blob_path, "%s/blobs/%s", ctx->repo_dir, blob);
    snprintf(part, sizeof part, "%s.incomplete", blob_path);
    int lock = -1;
    if (hub_mkdirs(blob_path, false, err) || hub_mkdirs(snap, false, err) || (lock = lock_blob(ctx, blob, err)) < 0)
        rc = -1;
    else if (stat(blob_path, &st) != 0 || (f->size >= 0 && st.st_size != f->size)) {
        *transferred = true;
        if (fetch(ctx, f, url, part, err) != 0) rc = -1;
        else if (rename(part, blob_path) != 0) rc = kiln_err_set(err, "cannot move %s into place: %s", part, strerror(errno));
    }
    if (lock >= 0) close(lock); /* releases the flock */
    char *rel = rc == 0 ? relative_blob_link(f->path, blob) : NULL;
    if (rc == 0) rc = rel ? place_symlink(rel, snap, err) : kiln_err_set(err, "out of memory");
    free(rel);
    free(blob);
    return rc;
}

/* --local-dir: plain files, with huggingface_hub's bookkeeping under D/.cache/huggingface/download/
 * (<path>.metadata = commit, etag, time) so a repeated pull skips files that are already there. */
static int one_file_local(dl_ctx *ctx, hub_file *f, const char *url, bool *transferred, kiln_err *err) {
    char dest[4096], meta[4200], part[4200];
    snprintf(dest, sizeof dest, "%s/%s", ctx->local_dir, f->path);
    snprintf(meta, sizeof meta, "%s/.cache/huggingface/download/%s.metadata", ctx->local_dir, f->path);
    snprintf(part, sizeof part, "%s/.cache/huggingface/download/%s.incomplete", ctx->local_dir, f->path);
    char *blob = blob_name(ctx, f, url, err);
    if (!blob) return -1;
    int rc = 0;
    struct stat st;
    char *m = kiln_read_file(meta, NULL, NULL);
    bool fresh = false;
    if (m && stat(dest, &st) == 0 && (f->size < 0 || st.st_size == f->size)) {
        char *line2 = strchr(m, '\n');
        fresh = line2 && !strncmp(line2 + 1, blob, strlen(blob)) && line2[1 + strlen(blob)] == '\n';
    }
    free(m);
    if (!fresh) {
        *transferred = true;
        if (hub_mkdirs(dest, false, err) || hub_mkdirs(part, false, err) || fetch(ctx, f, url, part, err)) rc = -1;
        else if (rename(part, dest) != 0) rc = kiln_err_set(err, "cannot move %s into place: %s", part, strerror(errno));
        else {
            char text[512];
            snprintf(text, sizeof text, "%s\n%s\n%.3f\n", ctx->sha, blob, (double)time(NULL));
            rc = hub_write_text(meta, text, err);
        }
    }
    free(blob);
    return rc;
}

static void *worker(void *arg) {
    dl_ctx *ctx = arg;
    for (;;) {
        pthread_mutex_lock(&ctx->mu);
        if (ctx->failed || ctx->next >= ctx->n) {
            pthread_mutex_unlock(&ctx->mu);
            return NULL;
        }
        hub_file *f = ctx->files[ctx->next++];
        pthread_mutex_unlock(&ctx->mu);
        kiln_err err;
        bool transferred = false;
        char *url = kiln_hub_file_url(ctx->endpoint, ctx->repo_id, ctx->sha, f->path);
        int rc = !url ? kiln_err_set(&err, "out of memory")
                 : ctx->local_dir ? one_file_local(ctx, f, url, &transferred, &err)
                                  : one_file_cache(ctx, f, url, &transferred, &err);
        free(url);
        pthread_mutex_lock(&ctx->mu);
        if (rc != 0 && !ctx->failed) {
            ctx->failed = 1;
            ctx->err = err;
        }
        if (rc == 0) {
            ctx->prog.files_done++;
            ctx->n_downloaded += transferred;
            if (!transferred && f->size > 0) ctx->prog.bytes_done += f->size;
            report(ctx, true);
        }
        pthread_mutex_unlock(&ctx->mu);
    }
}

int hub_download_all(const char *endpoint, const char *repo_id, const hub_repo *r, hub_file *const *files,
                     size_t n, const kiln_hub_opts *o, const char *repo_dir, kiln_hub_result *res, kiln_err *err) {
    dl_ctx ctx = {.endpoint = endpoint, .repo_id = repo_id, .sha = r->sha, .repo_dir = repo_dir,
                  .local_dir = o->local_dir, .files = files, .n = n, .progress = o->progress,
                  .progress_ud = o->progress_ud};
    ctx.token = o->token;
    pthread_mutex_init(&ctx.mu, NULL);
    ctx.prog.files_total = (int)n;
    for (size_t i = 0; i < n; i++) ctx.prog.bytes_total += files[i]->size > 0 ? files[i]->size : 0;
    int nt = o->parallel > 0 ? o->parallel : 4;
    if ((size_t)nt > n) nt = (int)n;
    pthread_t th[64];
    if (nt > 64) nt = 64;
    int started = 0;
    for (int i = 1; i < nt; i++)
        if (pthread_create(&th[started], NULL, worker, &ctx) == 0) started++;
    worker(&ctx); /* the calling thread works too */
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    pthread_mutex_destroy(&ctx.mu);
    res->n_downloaded = ctx.n_downloaded;
    res->bytes_downloaded = ctx.bytes_downloaded;
    if (ctx.failed) {
        if (err) *err = ctx.err;
        return -1;
    }
    return 0;
}
