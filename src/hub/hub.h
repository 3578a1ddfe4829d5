/* hub.h — internals shared by the hub files: the repo listing from the API, HTTP helpers, paths. */
#ifndef KILN_HUB_H
#define KILN_HUB_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/fileio.h"
#include "kiln.h"

/* Pure pieces (tests/test_hub.c checks them directly). */
char *kiln_hub_repo_folder(const char *repo_id); /* "org/name" or "org%2Fname" → "models--org--name" */
bool kiln_hub_glob_match(const char *const *globs, int n, const char *path); /* n == 0 → true */
/* {endpoint}/{repo}/resolve/{rev}/{file}, with rev and file percent-encoded (file keeps its '/'). */
char *kiln_hub_file_url(const char *endpoint, const char *repo_id, const char *rev, const char *file);
/* {endpoint}/api/models/{repo}/revision/{rev} */
char *kiln_hub_api_url(const char *endpoint, const char *repo_id, const char *rev);

/* One file of a repo at a commit, as the API lists it. */
typedef struct hub_file {
    char *path;       /* "model.safetensors", "sub/dir/x.json" */
    int64_t size;     /* -1 when the API did not say */
    char *blob;       /* the cache's blob name: LFS sha256, else the git blob id; NULL if unknown */
    char sha256[65];  /* LFS files: the content hash to verify; "" otherwise */
    char sha1[41];    /* small files: the git blob id, sha1("blob <size>\0" + content), to verify; "" if unknown */
} hub_file;

typedef struct hub_repo {
    char sha[65];
    hub_file *files;
    size_t n;
} hub_repo;

/* GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true → sha + files. */
int hub_fetch_repo(const char *endpoint, const char *repo_id, const char *rev, const char *token, hub_repo *r,
                   kiln_err *err);
void hub_repo_free(hub_repo *r);

/* A curl handle set up the way every hub request wants it (redirects, auth header, user agent,
 * timeouts that catch stalled transfers). *hdrs must be freed with curl_slist_free_all. */
CURL *hub_curl_new(const char *url, const char *token, struct curl_slist **hdrs);
/* One-line message for an HTTP failure status, naming the repo / file and what to do. */
int hub_http_error(kiln_err *err, long code, const char *what, const char *url, const char *x_error_code);

/* A name that is safe as one path component: non-empty, not "." or "..", at most 255 bytes, no '/', no
 * '\\' and no control byte. ETags and blob ids become file names: they must pass this first. */
bool hub_safe_component(const char *s);
/* A relative path of safe components separated by single '/' (file names from a listing, revisions). */
bool hub_safe_path(const char *p);

/* mkdir -p for the directory part of path (dir_only: path itself is a directory). */
int hub_mkdirs(const char *path, bool dir_only, kiln_err *err);
/* "org%2Fname" → "org/name" (malloc'd); other ids copied. */
char *hub_repo_plain(const char *repo_id);
/* Percent-encodes s (RFC 3986 unreserved kept; '/' kept when keep_slash). malloc'd. */
char *hub_quote(const char *s, bool keep_slash);
/* True when s is 40 lowercase hex digits (a commit sha). */
bool hub_is_sha(const char *s);
/* The cache root to use: dir if given, else kiln_hub_cache_root(). malloc'd. */
char *hub_root(const char *dir);
/* Writes text to path atomically (temporary file + rename). */
int hub_write_text(const char *path, const char *text, kiln_err *err);
/* The snapshot directory of repo_id at rev in the cache at root (refs/<rev> or a sha), malloc'd;
 * NULL if not cached. Fills sha when non-NULL. */
char *hub_cached_snapshot(const char *root, const char *repo_id, const char *rev, char sha[65]);
/* Fetches files (of r) into repo_dir (the cache folder) or o->local_dir, o->parallel at a time. */
int hub_download_all(const char *endpoint, const char *repo_id, const hub_repo *r, hub_file *const *files,
                     size_t n, const kiln_hub_opts *o, const char *repo_dir, kiln_hub_result *res, kiln_err *err);

#endif
