/* download.c — fetching files into the cache: resume, verify, move into place atomically, in parallel.
 *
 * One file's life: its blob already cached (this or another revision) and still verifying against the
 * listing → just link it. Otherwise GET {endpoint}/{repo}/resolve/{sha}/{path} (following the hub's
 * redirect to its CDN) into blobs/<blob>.incomplete, appending with `Range: bytes=N-` when a previous
 * attempt left N bytes (only if the 206's Content-Range starts at N); the listed size caps the body;
 * check size and hash (sha256 for LFS, the git blob sha1 for small files; a file the hub gave no hash for
 * is reported as unverified); rename to blobs/<blob>; then put a relative symlink into snapshots/<sha>/
 * with rename(2) so readers never see a half-made file. Transient failures (connection cut, 5xx) retry
 * from where they stopped. */
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
    int n_unverified;
    char unverified[1024];
} dl_ctx;

/* One transfer attempt's state, shared with curl's callbacks. */
typedef struct xfer {
    dl_ctx *ctx;
    const hub_file *f;
    CURL *c;
    FILE *fp;
    int64_t have;        /* bytes in the file before this attempt */
    int64_t written;     /* bytes written by this attempt */
    int64_t reported;    /* bytes of this file already counted in ctx->prog */
    int64_t range_start; /* the current response's Content-Range start; -1 without one */
    int64_t bad_length;  /* a Content-Length that contradicts the listed size; -1 if none */
    int checked;         /* the response's framing was checked at its first body byte */
    int restart;         /* a 206 for other bytes than asked: drop the partial file, start over */
    int too_long;        /* the body ran past the listed size: cut off */
    int io_error;
    char etag[256], linked_etag[256], linked_size[32], xcode[128];
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

/* At a response's first body byte: does it continue our partial file, and does its length agree with the
 * listed size? A 200 (Range ignored) starts the file over; a 206 for other bytes than we asked for is
 * never appended (restart); a Content-Length that cannot give the listed size is refused before a byte is
 * written. Returns -1 to stop the transfer. */
static int check_framing(xfer *x, long code) {
    x->checked = 1;
    if (code == 200 && x->have > 0) {
        if (ftruncate(fileno(x->fp), 0) != 0 || fseek(x->fp, 0, SEEK_SET) != 0) {
            x->io_error = errno;
            return -1;
        }
        x->have = 0;
    }
    if (code == 206 && x->range_start != x->have) {
        x->restart = 1;
        return -1;
    }
    curl_off_t cl = -1;
    curl_easy_getinfo(x->c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
    if (x->f->size >= 0 && cl >= 0 && x->have + (int64_t)cl != x->f->size) {
        x->bad_length = (int64_t)cl;
        return -1;
    }
    return 0;
}

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
    xfer *x = ud;
    size_t len = sz * n;
    long code = 0;
    curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 300) return len; /* an error page: discard, the status is reported after */
    if (!x->checked && check_framing(x, code) != 0) return 0;
    /* The listed size caps the body: an endless or overlong answer is cut off here. */
    if (x->f->size >= 0 && x->have + x->written + (int64_t)len > x->f->size) {
        x->too_long = 1;
        return 0;
    }
    if (fwrite(p, 1, len, x->fp) != len) {
        x->io_error = errno ? errno : EIO;
        return 0;
    }
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
    if (len > 5 && !strncmp(p, "HTTP/", 5)) x->range_start = -1; /* a new response (after a redirect) */
    /* The first response (the hub's, before a redirect to the CDN) carries the etags we trust. */
    if (!x->linked_etag[0]) header_value(p, len, "X-Linked-Etag:", x->linked_etag, sizeof x->linked_etag);
    if (!x->linked_size[0]) header_value(p, len, "X-Linked-Size:", x->linked_size, sizeof x->linked_size);
    if (!x->etag[0]) header_value(p, len, "ETag:", x->etag, sizeof x->etag);
    header_value(p, len, "X-Error-Code:", x->xcode, sizeof x->xcode);
    char range[96] = "";
    header_value(p, len, "Content-Range:", range, sizeof range);
    long long start;
    if (range[0]) x->range_start = sscanf(range, "bytes %lld-", &start) == 1 && start >= 0 ? start : -2;
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

/* The file's digest: sha256 of the content, or (git_blob) sha1 of "blob <size>\0" + content, in hex. */
static int digest_file(const char *path, bool git_blob, char *hex, size_t hex_cap) {
    FILE *fp = fopen(path, "rb");
    int64_t size = file_size(path);
    EVP_MD_CTX *md = fp && size >= 0 ? EVP_MD_CTX_new() : NULL;
    int rc = md && EVP_DigestInit_ex(md, git_blob ? EVP_sha1() : EVP_sha256(), NULL) == 1 ? 0 : -1;
    if (rc == 0 && git_blob) {
        char head[48];
        int hn = snprintf(head, sizeof head, "blob %lld", (long long)size);
        EVP_DigestUpdate(md, head, (size_t)hn + 1); /* the NUL is part of the header */
    }
    char buf[1 << 16];
    size_t got;
    while (rc == 0 && (got = fread(buf, 1, sizeof buf, fp)) > 0) EVP_DigestUpdate(md, buf, got);
    if (rc == 0 && ferror(fp)) rc = -1;
    unsigned char dig[EVP_MAX_MD_SIZE];
    unsigned dl = 0;
    if (rc == 0 && (EVP_DigestFinal_ex(md, dig, &dl) != 1 || 2 * (size_t)dl >= hex_cap)) rc = -1;
    for (unsigned i = 0; rc == 0 && i < dl; i++) sprintf(hex + 2 * i, "%02x", dig[i]);
    EVP_MD_CTX_free(md);
    if (fp) fclose(fp);
    return rc;
}

/* Notes a file the hub gave no hash for (checked by its size only): the pull says so in its result. */
static void note_unverified(dl_ctx *ctx, const hub_file *f) {
    pthread_mutex_lock(&ctx->mu);
    ctx->n_unverified++;
    size_t used = strlen(ctx->unverified);
    if (used + strlen(f->path) + 3 < sizeof ctx->unverified)
        snprintf(ctx->unverified + used, sizeof ctx->unverified - used, "%s%s", used ? ", " : "", f->path);
    pthread_mutex_unlock(&ctx->mu);
}

/* Is the file at path the one the listing describes: its size, then the hash the hub gave (sha256 for
 * LFS files, the git blob id for small ones)? 0 if so (a file without a hash is noted as unverified), -1
 * with err set if not. */
static int verify_file(dl_ctx *ctx, const hub_file *f, const char *path, kiln_err *err) {
    char what[1024], hex[2 * EVP_MAX_MD_SIZE + 1];
    snprintf(what, sizeof what, "%s: %s", ctx->repo_id, f->path);
    int64_t got = file_size(path);
    if (f->size >= 0 && got != f->size)
        return kiln_err_set(err, "%s: size mismatch: expected %lld bytes, got %lld", what, (long long)f->size,
                            (long long)got);
    const char *want = f->sha256[0] ? f->sha256 : f->sha1[0] ? f->sha1 : NULL;
    if (!want) {
        note_unverified(ctx, f);
        return 0;
    }
    if (digest_file(path, !f->sha256[0], hex, sizeof hex) != 0)
        return kiln_err_set(err, "%s: cannot read %s: %s", what, path, strerror(errno));
    if (strcmp(hex, want) != 0)
        return kiln_err_set(err, "%s: %s mismatch: expected %s, got %s (file discarded)", what,
                            f->sha256[0] ? "sha256" : "git blob sha1", want, hex);
    return 0;
}

/* Why an attempt's answer was refused, when it was (the callbacks stopped it): -1 with err set. */
static int refused_answer(const xfer *x, const char *what, kiln_err *err) {
    if (x->too_long)
        return kiln_err_set(err, "%s: the server sent more than the listed %lld bytes (cut off, file discarded)",
                            what, (long long)x->f->size);
    if (x->bad_length >= 0)
        return kiln_err_set(err, "%s: the server's Content-Length %lld does not fit the listed size %lld (file discarded)",
                            what, (long long)x->bad_length, (long long)x->f->size);
    return 0;
}

/* What one transfer attempt came to. */
typedef struct attempt {
    CURLcode cc;
    long code;
    bool complete_already; /* the partial file already had the listed size: nothing was asked */
    bool resumed;          /* it started from bytes of an earlier attempt or run: they may be the bad ones */
} attempt;

/* One attempt: GET url appended to `part` from where it stops (Range), through the callbacks into x
 * (which the caller set up). On return the file is closed; -1 only when it cannot be opened (errno). */
static int transfer(xfer *x, const char *url, const char *part, attempt *a) {
    const hub_file *f = x->f;
    x->fp = fopen(part, "a+b");
    if (!x->fp) return -1;
    x->have = file_size(part);
    /* A partial file longer than the listed size cannot be the start of it. */
    if (f->size >= 0 && x->have > f->size) {
        if (ftruncate(fileno(x->fp), 0) != 0) x->io_error = errno;
        x->have = 0;
    }
    *a = (attempt){.cc = CURLE_FAILED_INIT, .resumed = x->have > 0};
    a->complete_already = f->size >= 0 && x->have == f->size && x->have > 0;
    count_bytes(x); /* what the partial file already holds counts as done */
    struct curl_slist *hdrs;
    x->c = hub_curl_new(url, x->ctx->token, &hdrs);
    if (x->c && !a->complete_already && !x->io_error) {
        char range[64];
        if (x->have > 0) {
            snprintf(range, sizeof range, "%lld-", (long long)x->have);
            curl_easy_setopt(x->c, CURLOPT_RANGE, range);
        }
        curl_easy_setopt(x->c, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(x->c, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(x->c, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(x->c, CURLOPT_HEADERDATA, x);
        a->cc = curl_easy_perform(x->c);
        curl_easy_getinfo(x->c, CURLINFO_RESPONSE_CODE, &a->code);
    }
    if (x->c) curl_easy_cleanup(x->c);
    curl_slist_free_all(hdrs);
    if (fflush(x->fp) != 0 && !x->io_error) x->io_error = errno;
    fclose(x->fp);
    pthread_mutex_lock(&x->ctx->mu);
    x->ctx->bytes_downloaded += x->written;
    pthread_mutex_unlock(&x->ctx->mu);
    return 0;
}

/* GET url into `part` (resuming), then verify. On success `part` holds the complete, verified file. */
static int fetch(dl_ctx *ctx, const hub_file *f, const char *url, const char *part, kiln_err *err) {
    char what[1024];
    snprintf(what, sizeof what, "%s: %s", ctx->repo_id, f->path);
    int64_t reported = 0; /* bytes of this file counted in the progress so far, across attempts */
    for (int tries = 1;; tries++) {
        xfer x = {.ctx = ctx, .f = f, .range_start = -1, .bad_length = -1, .reported = reported};
        attempt a;
        if (transfer(&x, url, part, &a) != 0)
            return kiln_err_set(err, "%s: cannot write %s: %s", what, part, strerror(errno));
        reported = x.reported;
        if (x.io_error) return kiln_err_set(err, "%s: cannot write %s: %s", what, part, strerror(x.io_error));
        if (refused_answer(&x, what, err) != 0) {
            unlink(part); /* a lying answer must not be resumed either */
            return -1;
        }
        if (x.restart) {
            unlink(part); /* the next attempt asks for the whole file */
            if (tries < MAX_ATTEMPTS) continue;
            return kiln_err_set(err, "%s: the server's ranged answers never continued the file (Content-Range)", what);
        }
        /* 416: we asked for bytes past the end, i.e. the partial file is already whole. */
        bool done = a.complete_already || (a.cc == CURLE_OK && (a.code == 200 || a.code == 206)) ||
                    (a.cc == CURLE_OK && a.code == 416 && a.resumed);
        if (!done) {
            if (transient(a.cc, a.code) && tries < MAX_ATTEMPTS) {
                usleep(200000u * (unsigned)tries);
                continue;
            }
            if (a.cc != CURLE_OK)
                return kiln_err_set(err, "%s: download failed after %d attempts: %s (partial file kept for resume: %s)",
                                    what, tries, curl_easy_strerror(a.cc), part);
            if (a.code >= 400) unlink(part);
            return hub_http_error(err, a.code, what, url, x.xcode);
        }
        if (verify_file(ctx, f, part, err) != 0) {
            unlink(part); /* a corrupt download must not be resumed either */
            if (a.resumed && tries < MAX_ATTEMPTS) continue; /* once more, all of it from the server */
            return -1;
        }
        return 0;
    }
}

/* Asks the hub for a file's etag (and its size, when the listing did not say) when the listing gave no
 * blob id (older mirrors). The etag becomes a file name: it must be a safe path component. */
static char *head_etag(dl_ctx *ctx, hub_file *f, const char *url, const char *what, kiln_err *err) {
    xfer x = {.ctx = ctx, .f = f};
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
    curl_off_t cl = -1;
    curl_easy_getinfo(x.c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(x.c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
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
    if (!*e) {
        kiln_err_set(err, "%s: the server sent no ETag for %s", what, url);
        return NULL;
    }
    if (!hub_safe_component(e)) {
        kiln_err_set(err, "%s: the server sent an unsafe ETag '%s' for %s (refused as a file name)", what, e, url);
        return NULL;
    }
    /* The size caps the body later: X-Linked-Size on the hub's redirect, else the plain answer's length. */
    long long ls;
    if (f->size < 0 && x.linked_size[0] && sscanf(x.linked_size, "%lld", &ls) == 1 && ls >= 0) f->size = ls;
    else if (f->size < 0 && code == 200 && cl >= 0) f->size = (int64_t)cl;
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
 * request; an LFS file's X-Linked-Etag is its sha256 and a small file's ETag its git blob id, which then
 * are verified as well. */
static char *blob_name(dl_ctx *ctx, hub_file *f, const char *url, kiln_err *err) {
    if (f->blob) return strdup(f->blob);
    char what[1024];
    snprintf(what, sizeof what, "%s: %s", ctx->repo_id, f->path);
    char *e = head_etag(ctx, f, url, what, err);
    /* The hub's etags are content hashes: an LFS file's sha256, a small file's git blob id. */
    size_t n = e ? strlen(e) : 0;
    bool hex = e && strspn(e, "0123456789abcdef") == n;
    if (hex && n == 64) snprintf(f->sha256, sizeof f->sha256, "%s", e);
    else if (hex && n == 40) snprintf(f->sha1, sizeof f->sha1, "%s", e);
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

/* A blob already in the cache is used only if it still verifies against the listing; a bad one is
 * removed (to be fetched again), so a later pull repairs a cache that was corrupted underneath. */
static bool cached_file_ok(dl_ctx *ctx, const hub_file *f, const char *path) {
    struct stat st;
    if (lstat(path, &st) != 0) return false;
    kiln_err ignored;
    if (S_ISREG(st.st_mode) && verify_file(ctx, f, path, &ignored) == 0) return true;
    unlink(path);
    return false;
}

static int one_file_cache(dl_ctx *ctx, hub_file *f, const char *url, bool *transferred, kiln_err *err) {
    char snap[4096], blob_path[4096], part[4200];
    snprintf(snap, sizeof snap, "%s/snapshots/%s/%s", ctx->repo_dir, ctx->sha, f->path);
    char *blob = blob_name(ctx, f, url, err);
    if (!blob) return -1;
    int rc = 0;
    snprintf(blob_path, sizeof blob_path, "%s/blobs/%s", ctx->repo_dir, blob);
    snprintf(part, sizeof part, "%s.incomplete", blob_path);
    int lock = -1;
    if (hub_mkdirs(blob_path, false, err) || hub_mkdirs(snap, false, err) || (lock = lock_blob(ctx, blob, err)) < 0)
        rc = -1;
    else if (!cached_file_ok(ctx, f, blob_path)) {
        unlink(snap); /* until the blob is whole and verified, the snapshot does not list the file */
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
    if (fresh) fresh = cached_file_ok(ctx, f, dest); /* a file changed underneath is fetched again */
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
    res->n_unverified = ctx.n_unverified;
    snprintf(res->unverified, sizeof res->unverified, "%s", ctx.unverified);
    if (ctx.failed) {
        if (err) *err = ctx.err;
        return -1;
    }
    return 0;
}
