/* test_hub.c — the pure pieces of the hub client: cache layout names, cache root precedence, include
 * globs, URL building (with %2F repo ids), and offline resolution of ORG/NAME[@REV] from a cache built
 * by hand exactly as huggingface_hub lays it out. */
#include <unistd.h>

#include "check.h"
#include "hub/hub.h"
#include "kiln.h"

TEST(repo_folder_names) {
    char *f = kiln_hub_repo_folder("Qwen/Qwen3-0.6B");
    CHECK(f && !strcmp(f, "models--Qwen--Qwen3-0.6B"), "%s", f);
    free(f);
    f = kiln_hub_repo_folder("meta-llama%2FLlama-3.2-1B");
    CHECK(f && !strcmp(f, "models--meta-llama--Llama-3.2-1B"), "%%2F decodes to the same folder: %s", f);
    free(f);
}

TEST(cache_root_precedence) {
    setenv("HF_HOME", "/x/hfhome", 1);
    setenv("HF_HUB_CACHE", "/y/hubcache", 1);
    char *r = kiln_hub_cache_root();
    CHECK(!strcmp(r, "/y/hubcache"), "HF_HUB_CACHE wins: %s", r);
    free(r);
    unsetenv("HF_HUB_CACHE");
    r = kiln_hub_cache_root();
    CHECK(!strcmp(r, "/x/hfhome/hub"), "then HF_HOME/hub: %s", r);
    free(r);
    unsetenv("HF_HOME");
    setenv("XDG_CACHE_HOME", "/z/xdg", 1);
    r = kiln_hub_cache_root();
    CHECK(!strcmp(r, "/z/xdg/huggingface/hub"), "then XDG_CACHE_HOME: %s", r);
    free(r);
    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", "/home/u", 1);
    r = kiln_hub_cache_root();
    CHECK(!strcmp(r, "/home/u/.cache/huggingface/hub"), "then ~/.cache: %s", r);
    free(r);
}

TEST(include_globs) {
    const char *g[] = {"*.json", "model-0000?-of-*.safetensors"};
    CHECK(kiln_hub_glob_match(NULL, 0, "anything.bin"), "no globs: everything");
    CHECK(kiln_hub_glob_match(g, 2, "config.json"), "*.json");
    CHECK(kiln_hub_glob_match(g, 2, "sub/dir/x.json"), "* crosses '/' as in huggingface_hub (fnmatch)");
    CHECK(kiln_hub_glob_match(g, 2, "model-00001-of-00002.safetensors"), "second glob");
    CHECK(!kiln_hub_glob_match(g, 2, "model.safetensors"), "no match");
    CHECK(!kiln_hub_glob_match(g, 1, "config.jsonl"), "anchored at the end");
}

TEST(urls) {
    char *u = kiln_hub_file_url("https://huggingface.co/", "Qwen/Qwen3-0.6B", "main", "sub dir/model.safetensors");
    CHECK(u && !strcmp(u, "https://huggingface.co/Qwen/Qwen3-0.6B/resolve/main/sub%20dir/model.safetensors"), "%s", u);
    free(u);
    u = kiln_hub_file_url("http://m:8080", "org%2Fname", "refs/pr/1", "config.json");
    CHECK(u && !strcmp(u, "http://m:8080/org%2Fname/resolve/refs%2Fpr%2F1/config.json"), "%%2F passed through: %s", u);
    free(u);
    u = kiln_hub_api_url("http://m", "org%2Fname", "v1.0");
    CHECK(u && !strcmp(u, "http://m/api/models/org%2Fname/revision/v1.0"), "%s", u);
    free(u);
}

/* ETags, blob ids, revisions and listed names become paths: only safe components pass. */
TEST(safe_path_components) {
    const char *good[] = {"config.json", "abc123", "v1.0", "a..b", "...", "-x", "model-00001-of-00002.safetensors"};
    const char *bad[] = {"", ".", "..", "a/b", "a\\b", "\x01x", "x\x7f"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) CHECK(hub_safe_component(good[i]), "'%s' is safe", good[i]);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) CHECK(!hub_safe_component(bad[i]), "'%s' is refused", bad[i]);
    char longname[300];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    CHECK(!hub_safe_component(longname), "a 299-byte component is refused");
    const char *good_paths[] = {"config.json", "sub/dir/x.json", "refs/pr/1", "main"};
    const char *bad_paths[] = {"", "/etc/passwd", "../x", "a/../b", "a/./b", "a//b", "a/", "../../..", "a\\..\\b", "..\\x"};
    for (size_t i = 0; i < sizeof good_paths / sizeof *good_paths; i++)
        CHECK(hub_safe_path(good_paths[i]), "'%s' is safe", good_paths[i]);
    for (size_t i = 0; i < sizeof bad_paths / sizeof *bad_paths; i++)
        CHECK(!hub_safe_path(bad_paths[i]), "'%s' is refused", bad_paths[i]);
}

/* An unsafe revision never reaches the file system, online or offline. */
TEST(unsafe_revision_refused) {
    kiln_hub_opts o = {.revision = "../../../escaped", .endpoint = "http://127.0.0.1:1", .cache_dir = "/tmp/kiln-none"};
    kiln_hub_result res;
    kiln_err e;
    CHECK(kiln_hub_pull("org/name", &o, &res, &e) == -1 && strstr(e.msg, "not a safe revision"), "%s", e.msg);
    o.offline = true;
    CHECK(kiln_hub_pull("org/name", &o, &res, &e) == -1 && strstr(e.msg, "not a safe revision"), "offline: %s", e.msg);
    CHECK(kiln_hub_resolve_model("org/name@../../x") == NULL, "resolve refuses it too");
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

TEST(resolve_offline_from_cache) {
    char root[] = "/tmp/kiln_test_hub_XXXXXX";
    REQUIRE(mkdtemp(root), "mkdtemp");
    const char *sha = "0123456789abcdef0123456789abcdef01234567";
    const char *sha2 = "89abcdef0123456789abcdef0123456789abcdef";
    char p[512], snap[512], snap2[512];
    snprintf(p, sizeof p, "%s/models--org--name/refs", root);
    kiln_err e;
    char tmp[2048];
    snprintf(tmp, sizeof tmp, "mkdir -p %s %s/models--org--name/snapshots/%s %s/models--org--name/snapshots/%s", p,
             root, sha, root, sha2);
    REQUIRE(system(tmp) == 0, "mkdir");
    snprintf(p, sizeof p, "%s/models--org--name/refs/main", root);
    write_file(p, sha);
    snprintf(snap, sizeof snap, "%s/models--org--name/snapshots/%s", root, sha);
    snprintf(snap2, sizeof snap2, "%s/models--org--name/snapshots/%s", root, sha2);
    setenv("HF_HUB_CACHE", root, 1);
    const char *d = kiln_hub_resolve_model("org/name");
    CHECK(d && !strcmp(d, snap), "main → refs/main's snapshot: %s", d ? d : "(null)");
    CHECK(kiln_hub_resolve_model("org/name") == d, "same pointer for the same id");
    snprintf(tmp, sizeof tmp, "org/name@%s", sha2);
    d = kiln_hub_resolve_model(tmp);
    CHECK(d && !strcmp(d, snap2), "@sha: %s", d ? d : "(null)");
    CHECK(kiln_hub_resolve_model("org/name@v9") == NULL, "unknown ref → NULL");
    CHECK(kiln_hub_resolve_model("org/other") == NULL, "uncached → NULL");
    CHECK(kiln_hub_resolve_model("./org/name") == NULL, "paths are not repo ids");

    kiln_hub_entry *ent;
    size_t n;
    REQUIRE(kiln_hub_list(root, &ent, &n, &e) == 0, "%s", e.msg);
    CHECK(n == 1 && !strcmp(ent[0].repo_id, "org/name") && !strcmp(ent[0].sha, sha) &&
              !strcmp(ent[0].revisions, "main"),
          "list: n=%zu", n);
    free(ent);
    CHECK(kiln_hub_remove(root, "org/name", &e) == 0, "%s", e.msg);
    snprintf(p, sizeof p, "%s/models--org--name", root);
    CHECK(!path_exists(p), "removed");
    CHECK(kiln_hub_remove(root, "org/name", &e) == -1 && strstr(e.msg, "org/name"), "second rm fails: %s", e.msg);
    unsetenv("HF_HUB_CACHE");
    rmdir(root);
}

int main(void) {
    RUN(repo_folder_names);
    RUN(cache_root_precedence);
    RUN(include_globs);
    RUN(urls);
    RUN(safe_path_components);
    RUN(unsafe_revision_refused);
    RUN(resolve_offline_from_cache);
    return check_done();
}
