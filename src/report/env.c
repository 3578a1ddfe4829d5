/* env.c — the environment a bench ran in, recorded with every report so numbers can be compared. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kiln.h"
#include "runtime/cpu.h"

void kiln_bench_env_collect(kiln_bench_env *e, const char *model, const char *dtype, int threads) {
    memset(e, 0, sizeof *e);
    kiln_cpu_model(e->cpu_model, sizeof e->cpu_model);
    if (!e->cpu_model[0]) snprintf(e->cpu_model, sizeof e->cpu_model, "unknown");
    kiln_cpuinfo_feature_list(e->cpu_flags, sizeof e->cpu_flags); /* only the SIMD flags that pick kernels */
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
