/* pull.c — `kiln pull` as a library call: settings from options and the environment (the same
 * variables huggingface_hub reads), the repo listing, the include filter, then the downloads. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "hub/hub.h"

static const char *env_or(const char *a, const char *b) {
    const char *v = getenv(a);
    if (v && *v) return v;
    v = b ? getenv(b) : NULL;
    return v && *v ? v : NULL;
}

static bool env_true(const char *name) {
    const char *v = getenv(name);
    return v && (!strcmp(v, "1") || !strcasecmp(v, "true") || !strcasecmp(v, "yes") || !strcasecmp(v, "on"));
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

static int valid_repo_id(const char *id) {
    char *plain = hub_repo_plain(id);
    const char *slash = plain ? strchr(plain, '/') : NULL;
    int ok = slash && slash != plain && slash[1] && !strchr(slash + 1, '/') && !strstr(plain, "..") &&
             strspn(plain, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./") == strlen(plain);
    free(plain);
    return ok;
}

/* Offline: the snapshot the cache already holds for rev. */
static int pull_offline(const char *repo_id, const char *rev, const char *root, const kiln_hub_opts *o,
                        kiln_hub_result *res, kiln_err *err) {
    if (o->local_dir) return kiln_err_set(err, "%s: offline (HF_HUB_OFFLINE) and --local-dir needs the network", repo_id);
    char *dir = hub_cached_snapshot(root, repo_id, rev, res->sha);
    if (!dir) return kiln_err_set(err, "%s@%s is not in the cache %s and HF_HUB_OFFLINE is set", repo_id, rev, root);
    snprintf(res->dir, sizeof res->dir, "%s", dir);
    free(dir);
    return 0;
}

int kiln_hub_pull(const char *repo_id, const kiln_hub_opts *o, kiln_hub_result *res, kiln_err *err) {
    memset(res, 0, sizeof *res);
    if (!valid_repo_id(repo_id)) return kiln_err_set(err, "'%s' is not a repo id (want ORG/NAME)", repo_id);
    const char *endpoint = o->endpoint ? o->endpoint : env_or("HF_ENDPOINT", NULL);
    if (!endpoint) endpoint = "https://huggingface.co";
    const char *rev = o->revision && *o->revision ? o->revision : "main";
    /* The revision names refs/<rev> in the cache: "refs/pr/1" nests, "../x" must not climb out. */
    if (!hub_safe_path(rev)) return kiln_err_set(err, "'%s' is not a safe revision name (a branch, tag or commit)", rev);
    kiln_hub_opts opts = *o;
    if (!opts.token) opts.token = env_or("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN");
    char *root = hub_root(o->cache_dir);
    if (!root) return kiln_err_set(err, "out of memory");
    if (o->offline || env_true("HF_HUB_OFFLINE")) {
        int rc = pull_offline(repo_id, rev, root, o, res, err);
        free(root);
        return rc;
    }
    pthread_once(&curl_once, curl_init);
    hub_repo r;
    if (hub_fetch_repo(endpoint, repo_id, rev, opts.token, &r, err) != 0) {
        free(root);
        return -1;
    }
    hub_file **sel = calloc(r.n ? r.n : 1, sizeof *sel);
    size_t n = 0;
    for (size_t i = 0; sel && i < r.n; i++)
        if (kiln_hub_glob_match(o->include, o->n_include, r.files[i].path)) sel[n++] = &r.files[i];
    char *folder = kiln_hub_repo_folder(repo_id);
    char *repo_dir = folder ? kiln_path_join(root, folder) : NULL;
    int rc = 0;
    snprintf(res->sha, sizeof res->sha, "%s", r.sha);
    res->n_files = (int)n;
    if (!sel || !repo_dir) rc = kiln_err_set(err, "out of memory");
    else if (n == 0)
        rc = kiln_err_set(err, "%s@%s: no file matches %s (the repo has %zu files)", repo_id, rev,
                          o->n_include ? "--include" : "(the repo is empty)", r.n);
    else rc = hub_download_all(endpoint, repo_id, &r, sel, n, &opts, repo_dir, res, err);
    if (rc == 0 && o->local_dir) snprintf(res->dir, sizeof res->dir, "%s", o->local_dir);
    else if (rc == 0) {
        snprintf(res->dir, sizeof res->dir, "%s/snapshots/%s", repo_dir, r.sha);
        /* refs/<rev> last: offline lookups only find revisions whose pull completed. */
        if (strcmp(rev, r.sha) != 0) {
            char ref[4096];
            snprintf(ref, sizeof ref, "%s/refs/%s", repo_dir, rev);
            rc = hub_mkdirs(ref, false, err);
            if (rc == 0) rc = hub_write_text(ref, r.sha, err);
        }
    }
    free(folder);
    free(repo_dir);
    free(sel);
    free(root);
    hub_repo_free(&r);
    return rc;
}
