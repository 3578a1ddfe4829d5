/* api.c — the hub's HTTP API: which files a repo has at a revision, and the commit it resolves to.
 *
 * GET {endpoint}/api/models/{repo}/revision/{rev}?blobs=true answers {"sha": ..., "siblings": [{"rfilename",
 * "size", "blobId", "lfs": {"sha256", "size"}}]}. With blobs=true we learn each file's blob name (the
 * cache key) up front, so files already cached need no request at all. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "hub/hub.h"

CURL *hub_curl_new(const char *url, const char *token, struct curl_slist **hdrs) {
    CURL *c = curl_easy_init();
    if (!c) return NULL;
    *hdrs = NULL;
    if (token && *token) {
        size_t n = strlen(token) + 32;
        char *h = malloc(n);
        if (h) {
            snprintf(h, n, "Authorization: Bearer %s", token);
            *hdrs = curl_slist_append(NULL, h);
            free(h);
        }
    }
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "kiln/" KILN_VERSION);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L); /* threads */
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 30L);
    /* A transfer slower than 1 byte/s for 60 s is dead: give up (and resume on retry). */
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, 60L);
    /* The hub redirects LFS files to a CDN; curl drops the Authorization header on a change of host,
     * which is what the CDN's signed URL wants. */
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 10L);
    return c;
}

int hub_http_error(kiln_err *err, long code, const char *what, const char *url, const char *x_error_code) {
    const char *xc = x_error_code && *x_error_code ? x_error_code : NULL;
    if (code == 401 || code == 403)
        return kiln_err_set(err, "%s: HTTP %ld %s%s%s at %s (gated or private repo? set HF_TOKEN to a token with access)",
                            what, code, code == 401 ? "Unauthorized" : "Forbidden", xc ? " " : "", xc ? xc : "", url);
    if (code == 404)
        return kiln_err_set(err, "%s: HTTP 404 not found%s%s at %s (check the repo id and --revision)", what,
                            xc ? " " : "", xc ? xc : "", url);
    return kiln_err_set(err, "%s: HTTP %ld from %s", what, code, url);
}

struct membuf {
    char *data;
    size_t len;
};

static size_t mem_write(char *p, size_t sz, size_t n, void *ud) {
    struct membuf *b = ud;
    size_t add = sz * n;
    if (b->len + add > (64u << 20)) return 0; /* a repo listing is never this big */
    char *nd = realloc(b->data, b->len + add + 1);
    if (!nd) return 0;
    memcpy(nd + b->len, p, add);
    b->len += add;
    nd[b->len] = 0;
    b->data = nd;
    return add;
}

static size_t error_code_header(char *p, size_t sz, size_t n, void *ud) {
    char *out = ud;
    size_t len = sz * n;
    if (len > 13 && !strncasecmp(p, "X-Error-Code:", 13)) {
        size_t i = 13;
        while (i < len && p[i] == ' ') i++;
        size_t j = i;
        while (j < len && p[j] != '\r' && p[j] != '\n') j++;
        snprintf(out, 128, "%.*s", (int)(j - i), p + i);
    }
    return len;
}

bool hub_safe_component(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 255 || !strcmp(s, ".") || !strcmp(s, "..")) return false;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (*c == '/' || *c == '\\' || *c < 0x20 || *c == 0x7f) return false;
    return true;
}

bool hub_safe_path(const char *p) {
    if (!*p || strlen(p) > 1024) return false;
    char buf[1025];
    snprintf(buf, sizeof buf, "%s", p);
    for (char *c = buf;;) {
        char *slash = strchr(c, '/');
        if (slash) *slash = 0;
        if (!hub_safe_component(c)) return false;
        if (!slash) return true;
        c = slash + 1;
    }
}

static bool is_hex(const char *s, size_t n) { return strlen(s) == n && strspn(s, "0123456789abcdef") == n; }

/* One sibling of the listing into f. The name and blob id become paths: refused unless safe. */
static int parse_sibling(json_t *s, const char *what, hub_file *f, kiln_err *err) {
    const char *name = json_string_value(json_object_get(s, "rfilename"));
    /* A hostile listing must not write outside the snapshot. */
    if (!name || !hub_safe_path(name))
        return kiln_err_set(err, "%s: the API lists an unsafe file name '%s'", what, name ? name : "(none)");
    f->path = strdup(name);
    json_t *sz = json_object_get(s, "size");
    f->size = json_is_integer(sz) && json_integer_value(sz) >= 0 ? json_integer_value(sz) : -1;
    const char *blob = json_string_value(json_object_get(s, "blobId"));
    json_t *lfs = json_object_get(s, "lfs");
    const char *sha256 = json_string_value(json_object_get(lfs, "sha256"));
    if (sha256 && is_hex(sha256, 64)) {
        snprintf(f->sha256, sizeof f->sha256, "%s", sha256);
        blob = sha256; /* LFS blobs are cached under their sha256 (the X-Linked-Etag) */
        json_t *lsz = json_object_get(lfs, "size");
        if (json_is_integer(lsz) && json_integer_value(lsz) >= 0) f->size = json_integer_value(lsz);
    } else if (blob && is_hex(blob, 40)) snprintf(f->sha1, sizeof f->sha1, "%s", blob);
    if (blob && *blob && !hub_safe_component(blob))
        return kiln_err_set(err, "%s: the API lists an unsafe blob id '%s' for %s", what, blob, name);
    f->blob = blob && *blob ? strdup(blob) : NULL;
    if (!f->path || (blob && *blob && !f->blob)) return kiln_err_set(err, "out of memory");
    return 0;
}

static int parse_repo(const char *body, const char *what, hub_repo *r, kiln_err *err) {
    json_error_t je;
    json_t *root = json_loads(body, 0, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        return kiln_err_set(err, "%s: the API answered something that is not a JSON object (line %d: %s)", what,
                            je.line, je.text);
    }
    const char *sha = json_string_value(json_object_get(root, "sha"));
    json_t *sib = json_object_get(root, "siblings");
    int rc = 0;
    if (!sha || !hub_is_sha(sha) || !json_is_array(sib))
        rc = kiln_err_set(err, "%s: the API answer lacks a commit \"sha\" or a \"siblings\" list", what);
    else {
        snprintf(r->sha, sizeof r->sha, "%s", sha);
        size_t n = json_array_size(sib);
        r->files = calloc(n ? n : 1, sizeof *r->files);
        if (!r->files) rc = kiln_err_set(err, "out of memory");
        /* The error messages quote the listing's strings: it is freed only after the loop. */
        for (size_t i = 0; rc == 0 && i < n; i++)
            rc = parse_sibling(json_array_get(sib, i), what, &r->files[r->n++], err);
    }
    json_decref(root);
    return rc;
}

int hub_fetch_repo(const char *endpoint, const char *repo_id, const char *rev, const char *token, hub_repo *r,
                   kiln_err *err) {
    memset(r, 0, sizeof *r);
    char *base = kiln_hub_api_url(endpoint, repo_id, rev);
    size_t n = base ? strlen(base) + 16 : 0;
    char *url = base ? malloc(n) : NULL;
    if (!url) {
        free(base);
        return kiln_err_set(err, "out of memory");
    }
    snprintf(url, n, "%s?blobs=true", base);
    struct curl_slist *hdrs;
    struct membuf body = {0};
    char xcode[128] = "";
    CURL *c = hub_curl_new(url, token, &hdrs);
    int rc = 0;
    char what[512];
    snprintf(what, sizeof what, "%s@%s", repo_id, rev);
    if (!c) rc = kiln_err_set(err, "cannot start libcurl");
    else {
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, error_code_header);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, xcode);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
        CURLcode cc = curl_easy_perform(c);
        long code = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
        if (cc != CURLE_OK) rc = kiln_err_set(err, "%s: cannot reach %s: %s", what, base, curl_easy_strerror(cc));
        else if (code != 200) rc = hub_http_error(err, code, what, base, xcode);
        else if (!body.data) rc = kiln_err_set(err, "%s: empty answer from %s", what, base);
        else rc = parse_repo(body.data, what, r, err);
        curl_easy_cleanup(c);
    }
    curl_slist_free_all(hdrs);
    free(body.data);
    free(base);
    free(url);
    if (rc) hub_repo_free(r);
    return rc;
}

void hub_repo_free(hub_repo *r) {
    for (size_t i = 0; i < r->n; i++) {
        free(r->files[i].path);
        free(r->files[i].blob);
    }
    free(r->files);
    memset(r, 0, sizeof *r);
}
