/* test_common.c — error buffer, file reading, git text-symlinks, path joining. */
#include "check.h"
#include "common/fileio.h"
#include "kiln.h"

TEST(err_is_one_line) {
    kiln_err e;
    CHECK(kiln_err_set(&e, "a\nb %d", 3) == -1, "returns -1");
    CHECK(strcmp(e.msg, "a b 3") == 0, "got '%s'", e.msg);
    CHECK(kiln_err_set(NULL, "x") == -1, "NULL err tolerated");
}

TEST(path_join) {
    char *p = kiln_path_join("a/b", "c.json");
    CHECK(strcmp(p, "a/b/c.json") == 0, "%s", p);
    free(p);
    p = kiln_path_join("a/b/", "c.json");
    CHECK(strcmp(p, "a/b/c.json") == 0, "%s", p);
    free(p);
}

TEST(reads_through_text_symlink) {
    /* The shared fixtures keep tokenizer files as git text-symlinks (or real ones): both must read. */
    const char *p = shared_path("models/tiny-llama3/tokenizer_config.json");
    REQUIRE(path_exists(p), "fixture missing: %s", p);
    kiln_err e;
    size_t n = 0;
    char *s = kiln_read_file(p, &n, &e);
    REQUIRE(s != NULL, "%s", e.msg);
    CHECK(n > 1000 && s[0] == '{', "expected the real JSON, got %zu bytes starting '%.20s'", n, s);
    free(s);
}

TEST(missing_file_names_path) {
    kiln_err e;
    char *s = kiln_read_file("/nonexistent/x.json", NULL, &e);
    CHECK(s == NULL, "NULL for missing file");
    CHECK(strstr(e.msg, "/nonexistent/x.json") != NULL, "message names the path: %s", e.msg);
}

TEST(rss_and_clock) {
    CHECK(kiln_peak_rss_bytes() > 0, "peak rss");
    CHECK(kiln_rss_bytes() <= kiln_peak_rss_bytes(), "rss <= peak");
    double a = kiln_now(), b = kiln_now();
    CHECK(b >= a, "monotonic");
}

/* Allocation failures are told apart from bad input. */
TEST(err_nomem_flag) {
    kiln_err err = {{0}};
    kiln_err_set(&err, "tokenizer: out of memory");
    CHECK(kiln_err_is_nomem(&err), "'%s' is an allocation failure", err.msg);
    kiln_err_set(&err, "config.json: 'hidden_size' must be an integer");
    CHECK(!kiln_err_is_nomem(&err), "'%s' is bad input", err.msg);
    kiln_err_set(&err, "template: out of memory budget (64 MiB)");
    CHECK(!kiln_err_is_nomem(&err), "a limit is bad input, not an allocation failure");
}

int main(void) {
    RUN(err_is_one_line);
    RUN(err_nomem_flag);
    RUN(path_join);
    RUN(reads_through_text_symlink);
    RUN(missing_file_names_path);
    RUN(rss_and_clock);
    return check_done();
}
