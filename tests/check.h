/* check.h — the test harness: one binary per module, one line per test.
 *
 *   TEST(parses_header) { CHECK(x == 3, "x=%d", x); }
 *   int main(void) { RUN(parses_header); return check_done(); }
 *
 * Each test prints "PASS name" or "FAIL name" (with the failing checks on stderr before it); tests/run.sh
 * counts those lines across all binaries. Fixtures come from $SHARED (default ../shared); a missing
 * fixture is a failure with a message, never a silent skip. */
#ifndef KILN_CHECK_H
#define KILN_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int check_failures, tests_passed, tests_failed;

#define CHECK(cond, ...)                                                                \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            check_failures++;                                                           \
            fprintf(stderr, "  %s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                               \
            fputc('\n', stderr);                                                        \
        }                                                                               \
    } while (0)

/* Like CHECK but leaves the test at once (for preconditions the rest depends on). */
#define REQUIRE(cond, ...)          \
    do {                            \
        int before_ = check_failures; \
        CHECK(cond, __VA_ARGS__);   \
        if (check_failures != before_) return; \
    } while (0)

#define TEST(name) static void name(void)
#define RUN(name) check_run(#name, name)

static inline void check_run(const char *name, void (*fn)(void)) {
    int before = check_failures;
    fn();
    fflush(stderr);
    if (check_failures == before) {
        printf("PASS %s\n", name);
        tests_passed++;
    } else {
        printf("FAIL %s\n", name);
        tests_failed++;
    }
    fflush(stdout);
}

static inline int check_done(void) { return tests_failed ? 1 : 0; }

/* $SHARED/rel as a static buffer (copy it if you need two at once). */
static inline const char *shared_path(const char *rel) {
    static char buf[4096];
    const char *s = getenv("SHARED");
    snprintf(buf, sizeof buf, "%s/%s", s && *s ? s : "../shared", rel);
    return buf;
}

static inline int path_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Writes dir/name (replacing a file or an empty directory there). */
static inline void write_test_file(const char *dir, const char *name, const char *body) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path), rmdir(path);
    FILE *f = fopen(path, "w");
    if (f) fputs(body, f), fclose(f);
}

/* Runs fn(arg) in a forked child with a 10 s alarm: true if it returned true. A crash or a hang (the
 * alarm) is false with a line on stderr, so hostile-input cases fail one by one instead of ending the
 * test binary. */
static inline bool in_child(bool (*fn)(const void *), const void *arg) {
    fflush(stdout), fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(10);
        _exit(fn(arg) ? 0 : 1);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    if (WIFSIGNALED(st))
        fprintf(stderr, "  child died of signal %d%s\n", WTERMSIG(st), WTERMSIG(st) == SIGALRM ? " (hang)" : "");
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

#endif
