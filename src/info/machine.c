/* machine.c — what this machine is: CPU model, cores, the SIMD features CPUID reports *and* the OS
 * enables (XGETBV), memory and huge pages. Feature names use /proc/cpuinfo's spelling so the two
 * sources can be compared line by line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kiln.h"
#include "runtime/threadpool.h"

/* The features kiln's kernels care about, in /proc/cpuinfo spelling. */
struct feat {
    const char *name;
    int leaf, sub;
    char reg; /* 'b','c','d','a' */
    int bit;
    int needs; /* 0 none, 1 AVX state, 2 AVX-512 state, 3 AMX state */
};
static const struct feat feats[] = {
    {"sse4_2", 1, 0, 'c', 20, 0},       {"avx", 1, 0, 'c', 28, 1},          {"f16c", 1, 0, 'c', 29, 1},
    {"fma", 1, 0, 'c', 12, 1},          {"avx2", 7, 0, 'b', 5, 1},          {"avx_vnni", 7, 1, 'a', 4, 1},
    {"avx512f", 7, 0, 'b', 16, 2},      {"avx512dq", 7, 0, 'b', 17, 2},     {"avx512bw", 7, 0, 'b', 30, 2},
    {"avx512vl", 7, 0, 'b', 31, 2},     {"avx512_vnni", 7, 0, 'c', 11, 2},  {"avx512_bf16", 7, 1, 'a', 5, 2},
    {"amx_tile", 7, 0, 'd', 24, 3},     {"amx_bf16", 7, 0, 'd', 22, 3},     {"amx_int8", 7, 0, 'd', 25, 3},
};

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void cpuid_features(char *out, size_t cap) {
    unsigned a, b, c, d, max = __get_cpuid_max(0, NULL);
    bool osxsave = __get_cpuid(1, &a, &b, &c, &d) && (c >> 27 & 1);
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    bool state[4] = {true, (xcr0 & 0x6) == 0x6, (xcr0 & 0xE6) == 0xE6, (xcr0 & 0x60000) == 0x60000};
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < sizeof feats / sizeof feats[0]; i++) {
        const struct feat *f = &feats[i];
        if ((unsigned)f->leaf > max || !__get_cpuid_count((unsigned)f->leaf, (unsigned)f->sub, &a, &b, &c, &d)) continue;
        unsigned r = f->reg == 'a' ? a : f->reg == 'b' ? b : f->reg == 'c' ? c : d;
        if (!(r >> f->bit & 1) || !state[f->needs]) continue;
        o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? " " : "", f->name);
        if (o >= cap) break;
    }
}

#else
static void cpuid_features(char *out, size_t cap) { /* not x86: no CPUID, no features from this list */
    if (cap) out[0] = 0;
}
#endif

/* Our feature list filtered by the kernel's "flags" line. */
static void cpuinfo_features(char *out, size_t cap, char *model, size_t model_cap) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char *line = NULL, *flags = NULL;
    size_t n = 0;
    out[0] = 0;
    while (f && getline(&line, &n, f) > 0) {
        if (!model[0] && !strncmp(line, "model name", 10) && strchr(line, ':')) {
            char *v = strchr(line, ':') + 1;
            while (*v == ' ') v++;
            snprintf(model, model_cap, "%.*s", (int)strcspn(v, "\n"), v);
        }
        if (!flags && !strncmp(line, "flags", 5) && strchr(line, ':')) flags = strdup(strchr(line, ':') + 1);
    }
    free(line);
    if (f) fclose(f);
    if (!flags) return;
    size_t o = 0;
    for (size_t i = 0; i < sizeof feats / sizeof feats[0]; i++) {
        char pat[64];
        snprintf(pat, sizeof pat, " %s", feats[i].name);
        for (char *p = flags; (p = strstr(p, pat)); p++) {
            char end = p[strlen(pat)];
            if (end == ' ' || end == '\n' || end == 0) {
                o += (size_t)snprintf(out + o, cap - o, "%s%s", o ? " " : "", feats[i].name);
                break;
            }
        }
        if (o >= cap) break;
    }
    free(flags);
}

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
    cpuid_features(m->features, sizeof m->features);
    cpuinfo_features(m->cpuinfo_features, sizeof m->cpuinfo_features, m->cpu_model, sizeof m->cpu_model);
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
