/* main.c — test_fuzz: the fuzz suite (issue 19 item 5). Mutants of every file a model directory holds
 * (targets.c) are loaded in-process by the library's own loaders, a batch of cases per child process, so
 * that a crash, a sanitizer report, a leak or a hang is caught by the parent, pinned to its case and
 * reported with the input kept for reproduction; the run goes on after it. Each child is memory-bound
 * (the parent stops a child past 3 GiB resident; plain builds also get RLIMIT_AS, which ASan's shadow
 * memory rules out, and under ASan one allocation over 2 GiB fails) and each case time-bound (the parent
 * kills a child whose current case overruns).
 *
 *   test_fuzz                          every target, its default number of cases (the suite)
 *   test_fuzz --target NAME [--cases N] [--seed S]
 *   test_fuzz --target NAME --case I   one case in this process, its input kept (--keep DIR) to debug
 * Environment: SHARED (fixtures, default ../shared), KILN_FUZZ_SEED, KILN_FUZZ_SCALE (multiplies the
 * number of cases: 10 for a long soak). Every mutant runs and every accepted one is checked. A plain
 * build runs twice the cases of an ASan build (a case runs 2-4x faster there): 10,400 + 5,200 per `make test`. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/fileio.h"
#include "fuzz/fuzz.h"
#include "kiln.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
/* Memory bound under ASan: an allocation over 2 GiB fails (returns NULL, which the library must handle);
 * the parent's RSS watch (run_batch) bounds the rest. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1:max_allocation_size_mb=2048"; }
#else
#define UNDER_ASAN 0
#endif

#define BATCH 200
#define CASE_SECONDS (UNDER_ASAN ? 20.0 : 10.0) /* a case slower than this is a hang */
#define MAX_INVALID 16
#define MAX_RSS_BYTES (3ull << 30) /* a child past this is stopped: the case wants too much memory */

/* What the children report to the parent (a shared mapping). */
typedef struct shared_state {
    volatile int cur, done; /* the case running now; cases finished */
    volatile double t0;     /* when `cur` started */
    int accepted, rejected;
    int n_invalid;
    struct {
        int id;
        char why[256], desc[160];
    } invalid[MAX_INVALID];
} shared_state;

static const char *g_shared = "../shared";
static const char *g_seeds = "tests/fuzz/seeds";
static uint64_t g_seed = 19;

/* ---- one case ------------------------------------------------------------------------------------ */

static char *seed_dir(const fuzz_seed *s) {
    return s->dir[0] == '@' ? kiln_path_join(g_seeds, s->dir + 1) : kiln_path_join(g_shared, s->dir);
}

/* A case is a function of (seed, target, case number) only. */
static const fuzz_seed *make_case(int ti, int i, strbuf *mut, char *desc, size_t cap) {
    const fuzz_target *t = &fuzz_targets[ti];
    fuzz_rng r = {g_seed * 0x100000001b3ull ^ (uint64_t)ti << 48 ^ (uint64_t)i};
    fuzz_next(&r);
    const fuzz_seed *s = &t->seeds[fuzz_below(&r, (uint64_t)t->n_seeds)];
    char *dir = seed_dir(s), *path = dir ? kiln_path_join(dir, s->file) : NULL;
    size_t n = 0;
    char *data = path ? kiln_read_file(path, &n, NULL) : NULL;
    free(dir);
    free(path);
    if (!data) return NULL;
    t->mutate(&r, data, n, mut, desc, cap);
    free(data);
    return s;
}

static void clear_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.') {
            char *p = kiln_path_join(dir, e->d_name);
            if (p) unlink(p);
            free(p);
        }
    if (d) closedir(d);
}

/* dir := the seed's directory (links to its files, git text-symlinks resolved) with the mutant as s->file. */
static int write_case_dir(const char *dir, const fuzz_seed *s, const strbuf *mut) {
    mkdir(dir, 0755);
    clear_dir(dir);
    char *src = seed_dir(s);
    DIR *d = src ? opendir(src) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' || !strcmp(e->d_name, s->file)) continue;
        char *from = kiln_path_join(src, e->d_name), *real = from ? kiln_resolve_path(from) : NULL;
        char *abs = real ? realpath(real, NULL) : NULL, *to = kiln_path_join(dir, e->d_name);
        if (abs && to && symlink(abs, to) != 0) fprintf(stderr, "fuzz: cannot link %s: %s\n", to, strerror(errno));
        free(from);
        free(real);
        free(abs);
        free(to);
    }
    if (d) closedir(d);
    free(src);
    char *path = kiln_path_join(dir, s->file);
    FILE *f = path ? fopen(path, "wb") : NULL;
    int rc = f && fwrite(mut->p ? mut->p : "", 1, mut->len, f) == mut->len ? 0 : -1;
    if (f && fclose(f) != 0) rc = -1;
    free(path);
    return rc;
}

static void run_case(int ti, int i, const char *dir, shared_state *sh) {
    const fuzz_target *t = &fuzz_targets[ti];
    strbuf mut = {0};
    char desc[160] = "", why[256] = "";
    const fuzz_seed *s = make_case(ti, i, &mut, desc, sizeof desc);
    if (!s || write_case_dir(dir, s, &mut) != 0) {
        fprintf(stderr, "FAIL fuzz %s case %d: cannot set up the case in %s\n", t->name, i, dir);
        exit(3);
    }
    strbuf_free(&mut);
    fuzz_outcome o = t->run(dir, why, sizeof why);
    if (o == FUZZ_INVALID) {
        if (sh->n_invalid < MAX_INVALID) {
            sh->invalid[sh->n_invalid].id = i;
            snprintf(sh->invalid[sh->n_invalid].why, sizeof sh->invalid[0].why, "%s", why);
            snprintf(sh->invalid[sh->n_invalid].desc, sizeof sh->invalid[0].desc, "%s", desc);
        }
        sh->n_invalid++;
    } else if (o == FUZZ_ACCEPTED) sh->accepted++;
    else sh->rejected++;
}

/* ---- children and the parent ------------------------------------------------------------------------ */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void child(int ti, int from, int to, const char *dir, shared_state *sh) {
    if (!UNDER_ASAN) {
        struct rlimit rl = {(rlim_t)4 << 30, (rlim_t)4 << 30};
        setrlimit(RLIMIT_AS, &rl);
    }
    for (int i = from; i < to; i++) {
        sh->t0 = now();
        sh->cur = i;
        run_case(ti, i, dir, sh);
        sh->done = i + 1;
    }
    exit(0); /* not _exit: LeakSanitizer checks the batch at exit */
}

typedef struct batch_result {
    int status;    /* from waitpid */
    bool hung;     /* killed by the parent: the case overran its time */
    bool too_big;  /* killed by the parent: the child's memory passed MAX_RSS_BYTES */
} batch_result;

/* Resident bytes of process pid (0 if unknown). */
static unsigned long long rss_of(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    FILE *f = fopen(path, "r");
    unsigned long long size = 0, resident = 0;
    if (f && fscanf(f, "%llu %llu", &size, &resident) != 2) resident = 0;
    if (f) fclose(f);
    return resident * (unsigned long long)sysconf(_SC_PAGESIZE);
}

static batch_result run_batch(int ti, int from, int to, const char *dir, shared_state *sh) {
    sh->cur = from;
    sh->done = from;
    sh->t0 = now();
    fflush(NULL);
    batch_result br = {0, false, false};
    pid_t pid = fork();
    if (pid == 0) child(ti, from, to, dir, sh);
    if (pid < 0) {
        br.status = -1;
        return br;
    }
    for (int tick = 0;; tick++) {
        pid_t w = waitpid(pid, &br.status, WNOHANG);
        if (w == pid || (w < 0 && errno != EINTR)) break;
        bool killed = br.hung || br.too_big;
        if (!killed && now() - sh->t0 > CASE_SECONDS) br.hung = true;
        else if (!killed && tick % 16 == 0 && rss_of(pid) > MAX_RSS_BYTES) br.too_big = true;
        if (!killed && (br.hung || br.too_big)) kill(pid, SIGKILL);
        usleep(2000);
    }
    return br;
}

static bool batch_ok(const batch_result *br) {
    return !br->hung && !br->too_big && WIFEXITED(br->status) && WEXITSTATUS(br->status) == 0;
}

static void describe(const batch_result *br, char *out, size_t cap) {
    if (br->hung) snprintf(out, cap, "hang (over %.0f s)", CASE_SECONDS);
    else if (br->too_big) snprintf(out, cap, "memory over %llu GiB", MAX_RSS_BYTES >> 30);
    else if (WIFSIGNALED(br->status)) snprintf(out, cap, "crash (signal %d)", WTERMSIG(br->status));
    else snprintf(out, cap, "exit %d (a sanitizer report above, or a leak)", WEXITSTATUS(br->status));
}

static const char *g_keep = NULL;
static const char *g_self = "test_fuzz";
static int g_failures = 0;

/* Keeps case i's input as a model directory and says how to rerun it. */
static void report_failure(int ti, int i, const char *what) {
    const fuzz_target *t = &fuzz_targets[ti];
    strbuf mut = {0};
    char desc[160] = "", dir[4096];
    const fuzz_seed *s = make_case(ti, i, &mut, desc, sizeof desc);
    snprintf(dir, sizeof dir, "%.3000s/%s-%llu-%d", g_keep, t->name, (unsigned long long)g_seed, i);
    mkdir(g_keep, 0755);
    bool kept = s && write_case_dir(dir, s, &mut) == 0;
    printf("FAIL fuzz %s case %d: %s; mutation: %s; seed %s/%s; input %s; rerun: %s --target %s --case %d --seed %llu\n",
           t->name, i, what, desc, s ? s->dir : "?", s ? s->file : "?", kept ? dir : "(not kept)", g_self, t->name,
           i, (unsigned long long)g_seed);
    strbuf_free(&mut);
    g_failures++;
}

/* Finds which cases of a batch that finished but failed at exit (LeakSanitizer) leak: one child each. */
static void find_leaks(int ti, int from, int to, const char *dir) {
    shared_state *scratch = mmap(NULL, sizeof *scratch, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int found = 0;
    for (int i = from; scratch != MAP_FAILED && i < to && found < 3; i++) {
        batch_result br = run_batch(ti, i, i + 1, dir, scratch);
        if (!batch_ok(&br)) {
            char what[128];
            describe(&br, what, sizeof what);
            report_failure(ti, i, what);
            found++;
        }
    }
    if (!found) {
        printf("FAIL fuzz %s cases %d-%d: the batch failed at exit but no single case does\n", fuzz_targets[ti].name,
               from, to - 1);
        g_failures++;
    }
    if (scratch != MAP_FAILED) munmap(scratch, sizeof *scratch);
}

static int run_target(int ti, int cases, const char *dir, shared_state *sh, int *tried) {
    const fuzz_target *t = &fuzz_targets[ti];
    memset(sh, 0, sizeof *sh);
    int before = g_failures;
    double t0 = now();
    for (int from = 0; from < cases;) {
        int to = from + BATCH < cases ? from + BATCH : cases;
        batch_result br = run_batch(ti, from, to, dir, sh);
        if (batch_ok(&br)) {
            from = to;
            continue;
        }
        char what[128];
        describe(&br, what, sizeof what);
        if (sh->done >= to) find_leaks(ti, from, to, dir);
        else report_failure(ti, sh->cur, what);
        from = sh->done >= to ? to : sh->cur + 1; /* go on after the culprit */
    }
    for (int k = 0; k < sh->n_invalid && k < MAX_INVALID; k++) {
        printf("FAIL fuzz %s case %d: accepted but invalid: %s; mutation: %s; rerun: %s --target %s --case %d --seed %llu\n",
               t->name, sh->invalid[k].id, sh->invalid[k].why, sh->invalid[k].desc, g_self, t->name,
               sh->invalid[k].id, (unsigned long long)g_seed);
        g_failures++;
    }
    if (sh->n_invalid > MAX_INVALID) {
        printf("FAIL fuzz %s: %d more accepted-but-invalid cases\n", t->name, sh->n_invalid - MAX_INVALID);
        g_failures++;
    }
    *tried += cases;
    int crashes = g_failures - before;
    printf("%s fuzz %s: %d cases (accepted %d, rejected %d), %d failures, %.1f s\n", crashes ? "FAIL" : "PASS",
           t->name, cases, sh->accepted, sh->rejected, crashes, now() - t0);
    return crashes;
}

static int find_target(const char *name) {
    for (int i = 0; i < fuzz_n_targets; i++)
        if (!strcmp(fuzz_targets[i].name, name)) return i;
    return -1;
}

/* --case I: the case in this process (under a debugger or with a sanitizer's full report). */
static int run_single(int ti, int i, const char *dir) {
    shared_state sh = {0};
    char desc[160] = "";
    strbuf mut = {0};
    make_case(ti, i, &mut, desc, sizeof desc);
    strbuf_free(&mut);
    printf("case %d of %s: %s; input in %s\n", i, fuzz_targets[ti].name, desc, dir);
    fflush(stdout);
    run_case(ti, i, dir, &sh);
    printf("%s\n", sh.accepted ? "accepted" : sh.rejected ? "rejected" : sh.invalid[0].why);
    return 0;
}

int main(int argc, char **argv) {
    const char *only = NULL;
    int single = -1, cases_override = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--target") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--case") && i + 1 < argc) single = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cases") && i + 1 < argc) cases_override = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) g_seed = strtoull(argv[++i], NULL, 10);
        else if (!strcmp(argv[i], "--keep") && i + 1 < argc) g_keep = argv[++i];
        else {
            fprintf(stderr, "usage: test_fuzz [--target NAME [--case I]] [--cases N] [--seed S] [--keep DIR]\n");
            return 2;
        }
    }
    g_self = argv[0];
    if (getenv("SHARED") && *getenv("SHARED")) g_shared = getenv("SHARED");
    if (getenv("KILN_FUZZ_SEED")) g_seed = strtoull(getenv("KILN_FUZZ_SEED"), NULL, 10);
    double scale = (getenv("KILN_FUZZ_SCALE") ? atof(getenv("KILN_FUZZ_SCALE")) : 1.0) * (UNDER_ASAN ? 1 : 2);
    int only_ti = only ? find_target(only) : -1;
    if (only && only_ti < 0) {
        fprintf(stderr, "FAIL fuzz: no target %s\n", only);
        return 1;
    }
    /* Next to the binary, but not named test_*: tests/run.sh runs every build/tests/test_* it finds. */
    char keep_default[4096];
    const char *slash = strrchr(argv[0], '/');
    snprintf(keep_default, sizeof keep_default, "%.*sfuzz-failures", slash ? (int)(slash - argv[0] + 1) : 0, argv[0]);
    if (!g_keep) g_keep = keep_default;
    char work[] = "/tmp/kiln-fuzz-XXXXXX";
    if (!mkdtemp(work)) {
        printf("FAIL fuzz: cannot make a work directory: %s\n", strerror(errno));
        return 1;
    }
    char dir[64];
    snprintf(dir, sizeof dir, "%s/model", work);
    if (single >= 0) {
        if (only_ti < 0) return fprintf(stderr, "--case needs --target\n"), 2;
        char one[4096];
        mkdir(g_keep, 0755);
        snprintf(one, sizeof one, "%.3000s/%s-%llu-%d", g_keep, fuzz_targets[only_ti].name, (unsigned long long)g_seed,
                 single);
        rmdir(work);
        return run_single(only_ti, single, one);
    }
    shared_state *sh = mmap(NULL, sizeof *sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (sh == MAP_FAILED) {
        printf("FAIL fuzz: mmap: %s\n", strerror(errno));
        return 1;
    }
    int tried = 0;
    double t0 = now();
    for (int ti = 0; ti < fuzz_n_targets; ti++) {
        if (only_ti >= 0 && ti != only_ti) continue;
        int cases = cases_override >= 0 ? cases_override : (int)(fuzz_targets[ti].cases * scale);
        run_target(ti, cases, dir, sh, &tried);
    }
    clear_dir(dir);
    rmdir(dir);
    rmdir(work);
    printf("fuzz: %d inputs tried (seed %llu), %d failures, %.1f s\n", tried, (unsigned long long)g_seed, g_failures,
           now() - t0);
    return g_failures ? 1 : 0;
}
