/* env.c — the environment a bench ran in, recorded with every report so numbers can be compared. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kiln.h"

/* Only the flags that decide which kernels run; the full list is hundreds of entries. */
static const char *const simd_flags[] = {"sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw",
                                         "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile", "neon", NULL};

static void cpu_info(kiln_bench_env *e) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[8192];
    int got_model = 0, got_flags = 0;
    while (fgets(line, sizeof line, f) && !(got_model && got_flags)) {
        char *v = strchr(line, ':');
        if (!v) continue;
        v += 1 + (v[1] == ' ');
        v[strcspn(v, "\n")] = 0;
        if (!got_model && !strncmp(line, "model name", 10)) {
            snprintf(e->cpu_model, sizeof e->cpu_model, "%s", v);
            got_model = 1;
        } else if (!got_flags && (!strncmp(line, "flags", 5) || !strncmp(line, "Features", 8))) {
            size_t w = 0;
            for (int i = 0; simd_flags[i]; i++) {
                char pat[32];
                snprintf(pat, sizeof pat, " %s ", simd_flags[i]);
                char padded[8200];
                snprintf(padded, sizeof padded, " %s ", v);
                if (strstr(padded, pat) && w < sizeof e->cpu_flags)
                    w += (size_t)snprintf(e->cpu_flags + w, sizeof e->cpu_flags - w, "%s%s", w ? " " : "", simd_flags[i]);
            }
            got_flags = 1;
        }
    }
    fclose(f);
}

void kiln_bench_env_collect(kiln_bench_env *e, const char *model, const char *dtype, int threads) {
    memset(e, 0, sizeof *e);
    snprintf(e->cpu_model, sizeof e->cpu_model, "unknown");
    cpu_info(e);
    e->n_cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
    e->threads = threads;
    e->mem_total_bytes = (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
    snprintf(e->version, sizeof e->version, "%s", KILN_VERSION);
    snprintf(e->commit, sizeof e->commit, "%s", kiln_build_commit());
    snprintf(e->model, sizeof e->model, "%s", model ? model : "");
    snprintf(e->dtype, sizeof e->dtype, "%s", dtype ? dtype : "auto");
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(e->date, sizeof e->date, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
