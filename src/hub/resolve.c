/* resolve.c — ORG/NAME[@REV] → its cached snapshot directory, without touching the network.
 *
 * The same lookup huggingface_hub does offline: a revision that is a commit sha names its snapshot
 * directly; any other revision (branch, tag) is read from refs/<rev>. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hub/hub.h"

char *hub_cached_snapshot(const char *root, const char *repo_id, const char *rev, char sha[65]) {
    if (!hub_safe_path(rev)) return NULL; /* refs/<rev> must stay inside the repo folder */
    char *folder = kiln_hub_repo_folder(repo_id);
    char *repo_dir = folder ? kiln_path_join(root, folder) : NULL;
    free(folder);
    if (!repo_dir) return NULL;
    char buf[8192];
    char commit[65] = "";
    if (hub_is_sha(rev)) snprintf(commit, sizeof commit, "%s", rev);
    else {
        snprintf(buf, sizeof buf, "%s/refs/%s", repo_dir, rev); /* refs/pr/1 nests, as in huggingface_hub */
        char *s = kiln_read_file(buf, NULL, NULL);
        if (s) {
            s[strcspn(s, "\r\n \t")] = 0;
            if (hub_is_sha(s)) snprintf(commit, sizeof commit, "%s", s);
            free(s);
        }
    }
    char *out = NULL;
    struct stat st;
    if (commit[0]) {
        snprintf(buf, sizeof buf, "%s/snapshots/%s", repo_dir, commit);
        if (stat(buf, &st) == 0 && S_ISDIR(st.st_mode)) {
            out = strdup(buf);
            if (sha) snprintf(sha, 65, "%s", commit);
        }
    }
    free(repo_dir);
    return out;
}

/* Resolved directories live for the process (callers keep the pointer), so they are kept in a list
 * reachable from a global: not a leak, and the same id returns the same string. */
static struct resolved {
    char *id, *dir;
    struct resolved *next;
} *resolved_list;
static pthread_mutex_t resolved_mu = PTHREAD_MUTEX_INITIALIZER;

const char *kiln_hub_resolve_model(const char *repo_id) {
    if (!repo_id || (!strchr(repo_id, '/') && !strstr(repo_id, "%2F")) || repo_id[0] == '/' || repo_id[0] == '.')
        return NULL;
    const char *at = strrchr(repo_id, '@');
    char *id = at ? strndup(repo_id, (size_t)(at - repo_id)) : strdup(repo_id);
    char *root = kiln_hub_cache_root();
    char *dir = id && root ? hub_cached_snapshot(root, id, at && at[1] ? at + 1 : "main", NULL) : NULL;
    free(id);
    free(root);
    if (!dir) return NULL;
    pthread_mutex_lock(&resolved_mu);
    struct resolved *r;
    for (r = resolved_list; r; r = r->next)
        if (!strcmp(r->id, repo_id) && !strcmp(r->dir, dir)) break;
    if (!r && (r = calloc(1, sizeof *r))) {
        r->id = strdup(repo_id);
        r->dir = dir;
        dir = NULL;
        r->next = resolved_list;
        resolved_list = r;
    }
    pthread_mutex_unlock(&resolved_mu);
    free(dir);
    return r ? r->dir : NULL;
}
