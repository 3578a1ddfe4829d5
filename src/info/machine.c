/* machine.c — what this machine is: CPU model, cores, the SIMD features CPUID reports *and* the OS
 * enables (XGETBV) next to the ones /proc/cpuinfo lists (both from runtime/cpu.c, in /proc/cpuinfo's
 * spelling so they compare word by word), memory and huge pages. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln.h"
#include "runtime/cpu.h"

static int64_t meminfo_kb(const char *key) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    int64_t v = -1;
    size_t kl = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = strtoll(line + kl + 1, NULL, 10);
            break;
        }
    if (f) fclose(f);
    return v;
}

void kiln_machine_probe(kiln_machine *m) {
    memset(m, 0, sizeof *m);
    kiln_cpu_feature_list(m->features, sizeof m->features);
    kiln_cpuinfo_feature_list(m->cpuinfo_features, sizeof m->cpuinfo_features);
    kiln_cpu_model(m->cpu_model, sizeof m->cpu_model);
    m->cores = kiln_physical_cores();
    long t = sysconf(_SC_NPROCESSORS_ONLN);
    m->threads = t > 0 ? (int)t : 1;
    int64_t kb;
    m->mem_total = (kb = meminfo_kb("MemTotal")) >= 0 ? kb * 1024 : -1;
    m->mem_available = (kb = meminfo_kb("MemAvailable")) >= 0 ? kb * 1024 : -1;
    m->hugepages_total = meminfo_kb("HugePages_Total");
    m->hugepage_size = (kb = meminfo_kb("Hugepagesize")) >= 0 ? kb * 1024 : -1;
    /* "always [madvise] never": the bracketed word is the setting */
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    char buf[128] = "";
    if (f) {
        if (fgets(buf, sizeof buf, f)) {
            char *l = strchr(buf, '['), *r = l ? strchr(l, ']') : NULL;
            if (l && r) snprintf(m->thp, sizeof m->thp, "%.*s", (int)(r - l - 1), l + 1);
        }
        fclose(f);
    }
}
