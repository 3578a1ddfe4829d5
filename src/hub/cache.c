/* cache.c — huggingface_hub's cache layout, repo ids, URLs and include globs.
 *
 * The layout is copied exactly (constants.py / file_download.py in huggingface_hub) so a model fetched
 * by `huggingface-cli download` is found by kiln and the other way round:
 *   ROOT/models--ORG--NAME/{blobs/<etag>, snapshots/<sha>/<path> → ../../blobs/<etag>, refs/<rev>} */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hub/hub.h"

static char *env_nonempty(const char *name) {
    const char *v = getenv(name);
    return v && *v ? (char *)v : NULL;
}

char *kiln_hub_cache_root(void) {
    const char *v;
    if ((v = env_nonempty("HF_HUB_CACHE")) || (v = env_nonempty("HUGGINGFACE_HUB_CACHE"))) return strdup(v);
    if ((v = env_nonempty("HF_HOME"))) return kiln_path_join(v, "hub");
    char buf[4096];
    if ((v = env_nonempty("XDG_CACHE_HOME"))) snprintf(buf, sizeof buf, "%s/huggingface/hub", v);
    else snprintf(buf, sizeof buf, "%s/.cache/huggingface/hub", env_nonempty("HOME") ? getenv("HOME") : "/tmp");
    return strdup(buf);
}

char *hub_root(const char *dir) { return dir && *dir ? strdup(dir) : kiln_hub_cache_root(); }

char *hub_repo_plain(const char *repo_id) {
    size_t n = strlen(repo_id);
    char *out = malloc(n + 1), *o = out;
    if (!out) return NULL;
    for (const char *p = repo_id; *p; p++) {
        if (p[0] == '%' && p[1] == '2' && (p[2] == 'F' || p[2] == 'f')) {
            *o++ = '/';
            p += 2;
        } else *o++ = *p;
    }
    *o = 0;
    return out;
}

char *kiln_hub_repo_folder(const char *repo_id) {
    char *plain = hub_repo_plain(repo_id);
    if (!plain) return NULL;
    /* huggingface_hub: "models--" + repo_id.replace("/", "--") */
    size_t slashes = 0;
    for (char *p = plain; *p; p++) slashes += *p == '/';
    char *out = malloc(strlen("models--") + strlen(plain) + slashes + 1), *o = out;
    if (out) {
        o += sprintf(o, "models--");
        for (char *p = plain; *p; p++) {
            if (*p == '/') {
                *o++ = '-';
                *o++ = '-';
            } else *o++ = *p;
        }
        *o = 0;
    }
    free(plain);
    return out;
}

bool kiln_hub_glob_match(const char *const *globs, int n, const char *path) {
    if (n <= 0) return true;
    /* fnmatch without FNM_PATHNAME, as huggingface_hub's filter_repo_objects: "*.json" matches "a/b.json". */
    for (int i = 0; i < n; i++)
        if (fnmatch(globs[i], path, 0) == 0) return true;
    return false;
}

char *hub_quote(const char *s, bool keep_slash) {
    static const char hex[] = "0123456789ABCDEF";
    char *out = malloc(strlen(s) * 3 + 1), *o = out;
    if (!out) return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                     c == '_' || c == '.' || c == '~' || (keep_slash && c == '/');
        if (plain) *o++ = (char)c;
        else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    *o = 0;
    return out;
}

bool hub_is_sha(const char *s) {
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f'))) return false;
    return n == 40;
}

/* The repo id goes into URLs as given: "org/name" stays, "org%2Fname" stays encoded for mirrors that
 * route on a single path segment. A trailing '/' on the endpoint is dropped. */
static char *build_url(const char *endpoint, const char *fmt1, const char *repo_id, const char *fmt2, const char *rev,
                       const char *file) {
    size_t el = strlen(endpoint);
    while (el && endpoint[el - 1] == '/') el--;
    char *qrev = hub_quote(rev, false), *qfile = file ? hub_quote(file, true) : NULL;
    size_t n = el + strlen(fmt1) + strlen(repo_id) + strlen(fmt2) + strlen(qrev) + (qfile ? strlen(qfile) : 0) + 4;
    char *url = malloc(n);
    if (url)
        snprintf(url, n, "%.*s%s%s%s%s%s%s", (int)el, endpoint, fmt1, repo_id, fmt2, qrev, qfile ? "/" : "",
                 qfile ? qfile : "");
    free(qrev);
    free(qfile);
    return url;
}

char *kiln_hub_file_url(const char *endpoint, const char *repo_id, const char *rev, const char *file) {
    return build_url(endpoint, "/", repo_id, "/resolve/", rev, file);
}

char *kiln_hub_api_url(const char *endpoint, const char *repo_id, const char *rev) {
    return build_url(endpoint, "/api/models/", repo_id, "/revision/", rev, NULL);
}

int hub_mkdirs(const char *path, bool dir_only, kiln_err *err) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return kiln_err_set(err, "path too long: %s", path);
    if (!dir_only) {
        char *slash = strrchr(buf, '/');
        if (!slash) return 0;
        *slash = 0;
    }
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return kiln_err_set(err, "cannot create directory %s: %s", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    return 0;
}

/* ---- list and remove ------------------------------------------------------------------------------ */

static int64_t dir_bytes(const char *dir, int *n_files) {
    DIR *d = opendir(dir);
    int64_t total = 0;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char *p = kiln_path_join(dir, e->d_name);
        struct stat st;
        if (p && stat(p, &st) == 0) {
            if (S_ISDIR(st.st_mode)) total += dir_bytes(p, n_files);
            else {
                total += st.st_size;
                if (n_files) (*n_files)++;
            }
        }
        free(p);
    }
    closedir(d);
    return total;
}

static void read_refs(const char *repo_dir, kiln_hub_entry *e) {
    /* Newest snapshot = the one refs/main names, else the most recently modified one. */
    char *refs = kiln_path_join(repo_dir, "refs");
    DIR *d = refs ? opendir(refs) : NULL;
    struct dirent *de;
    char main_sha[65] = "";
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char *p = kiln_path_join(refs, de->d_name);
        char *s = p ? kiln_read_file(p, NULL, NULL) : NULL;
        if (s) {
            s[strcspn(s, "\r\n")] = 0;
            if (!strcmp(de->d_name, "main") || !main_sha[0]) snprintf(main_sha, sizeof main_sha, "%s", s);
        }
        free(s);
        free(p);
    }
    if (d) closedir(d);
    if (main_sha[0]) snprintf(e->sha, sizeof e->sha, "%s", main_sha);
    else {
        char *snaps = kiln_path_join(repo_dir, "snapshots");
        DIR *sd = snaps ? opendir(snaps) : NULL;
        time_t best = 0;
        while (sd && (de = readdir(sd))) {
            if (de->d_name[0] == '.') continue;
            char *p = kiln_path_join(snaps, de->d_name);
            struct stat st;
            if (p && stat(p, &st) == 0 && st.st_mtime >= best) {
                best = st.st_mtime;
                snprintf(e->sha, sizeof e->sha, "%.64s", de->d_name);
            }
            free(p);
        }
        if (sd) closedir(sd);
        free(snaps);
    }
    /* Every ref that points at the chosen sha, comma-separated. */
    d = refs ? opendir(refs) : NULL;
    size_t used = 0;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char *p = kiln_path_join(refs, de->d_name);
        char *s = p ? kiln_read_file(p, NULL, NULL) : NULL;
        if (s) {
            s[strcspn(s, "\r\n")] = 0;
            if (!strcmp(s, e->sha) && used + strlen(de->d_name) + 2 < sizeof e->revisions)
                used += (size_t)snprintf(e->revisions + used, sizeof e->revisions - used, "%s%s", used ? "," : "",
                                         de->d_name);
        }
        free(s);
        free(p);
    }
    if (d) closedir(d);
    free(refs);
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const kiln_hub_entry *)a)->repo_id, ((const kiln_hub_entry *)b)->repo_id);
}

int kiln_hub_list(const char *cache_dir, kiln_hub_entry **out, size_t *n, kiln_err *err) {
    *out = NULL;
    *n = 0;
    char *root = hub_root(cache_dir);
    DIR *d = root ? opendir(root) : NULL;
    if (!d) {
        int missing = root && errno == ENOENT;
        free(root);
        return missing ? 0 : kiln_err_set(err, "cannot read the hub cache: %s", strerror(errno));
    }
    struct dirent *de;
    size_t cap = 0;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "models--", 8) != 0) continue;
        if (*n == cap) {
            kiln_hub_entry *nv = realloc(*out, (cap = cap ? cap * 2 : 8) * sizeof **out);
            if (!nv) break;
            *out = nv;
        }
        kiln_hub_entry *e = &(*out)[*n];
        memset(e, 0, sizeof *e);
        /* huggingface_hub: folder[len("models--"):].replace("--", "/") */
        const char *s = de->d_name + 8;
        size_t o = 0;
        for (; *s && o + 1 < sizeof e->repo_id; s++) {
            if (s[0] == '-' && s[1] == '-') {
                e->repo_id[o++] = '/';
                s++;
            } else e->repo_id[o++] = *s;
        }
        snprintf(e->path, sizeof e->path, "%s/%s", root, de->d_name);
        char sub[4200];
        snprintf(sub, sizeof sub, "%s/blobs", e->path);
        e->size = dir_bytes(sub, NULL);
        read_refs(e->path, e);
        if (e->sha[0]) {
            snprintf(sub, sizeof sub, "%s/snapshots/%s", e->path, e->sha);
            dir_bytes(sub, &e->n_files);
        }
        (*n)++;
    }
    closedir(d);
    free(root);
    qsort(*out, *n, sizeof **out, cmp_entry);
    return 0;
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(p);
}

int kiln_hub_remove(const char *cache_dir, const char *repo_id, kiln_err *err) {
    char *root = hub_root(cache_dir), *folder = kiln_hub_repo_folder(repo_id);
    char *dir = root && folder ? kiln_path_join(root, folder) : NULL;
    char *locks_root = root ? kiln_path_join(root, ".locks") : NULL;
    char *locks = locks_root && folder ? kiln_path_join(locks_root, folder) : NULL;
    free(locks_root);
    free(root);
    free(folder);
    if (!dir) {
        free(locks);
        return kiln_err_set(err, "out of memory");
    }
    struct stat st;
    int rc = 0;
    if (!strchr(repo_id, '/') && !strstr(repo_id, "%2F") && !strstr(repo_id, "%2f"))
        rc = kiln_err_set(err, "'%s' is not a repo id (want ORG/NAME)", repo_id);
    else if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        rc = kiln_err_set(err, "%s is not in the cache (%s not found)", repo_id, dir);
    else if (nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        rc = kiln_err_set(err, "cannot remove %s: %s", dir, strerror(errno));
    else if (locks) nftw(locks, rm_one, 16, FTW_DEPTH | FTW_PHYS); /* its lock files, if any */
    free(dir);
    free(locks);
    return rc;
}
