/* cpu.c — runtime CPU feature detection (see cpu.h): one table of the features kiln cares about, read from
 * CPUID (with the OS state XGETBV reports) and from /proc/cpuinfo. */
#include "runtime/cpu.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Register state a feature needs the OS to save. */
enum { STATE_NONE, STATE_AVX, STATE_AVX512, STATE_AMX };

/* The features, in /proc/cpuinfo spelling; field: where kiln_cpu keeps it (-1: listed only). */
struct feat {
    const char *name;
    unsigned leaf, sub;
    char reg; /* 'a','b','c','d' */
    int bit;
    int state;
    int field;
};
#define F(x) (int)(offsetof(kiln_cpu, x) / sizeof(int))
static const struct feat feats[] = {
    {"sse4_2", 1, 0, 'c', 20, STATE_NONE, -1},          {"avx", 1, 0, 'c', 28, STATE_AVX, -1},
    {"f16c", 1, 0, 'c', 29, STATE_AVX, F(f16c)},        {"fma", 1, 0, 'c', 12, STATE_AVX, F(fma)},
    {"avx2", 7, 0, 'b', 5, STATE_AVX, F(avx2)},         {"avx_vnni", 7, 1, 'a', 4, STATE_AVX, -1},
    {"avx512f", 7, 0, 'b', 16, STATE_AVX512, F(avx512f)}, {"avx512dq", 7, 0, 'b', 17, STATE_AVX512, -1},
    {"avx512bw", 7, 0, 'b', 30, STATE_AVX512, F(avx512bw)}, {"avx512vl", 7, 0, 'b', 31, STATE_AVX512, F(avx512vl)},
    {"avx512_vnni", 7, 0, 'c', 11, STATE_AVX512, F(avx512vnni)}, {"avx512_bf16", 7, 1, 'a', 5, STATE_AVX512, F(avx512bf16)},
    {"amx_tile", 7, 0, 'd', 24, STATE_AMX, -1},         {"amx_bf16", 7, 0, 'd', 22, STATE_AMX, F(amx_bf16)},
    {"amx_int8", 7, 0, 'd', 25, STATE_AMX, -1},
};
#undef F
enum { N_FEATS = sizeof feats / sizeof feats[0] };

static bool usable[N_FEATS];
static kiln_cpu cpu;
static pthread_once_t once = PTHREAD_ONCE_INIT;

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#ifdef __linux__
#include <sys/syscall.h>
#endif

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect_usable(void) {
    unsigned a, b, c, d, max = __get_cpuid_max(0, NULL);
    bool osxsave = __get_cpuid(1, &a, &b, &c, &d) && (c >> 27 & 1);
    uint64_t xcr0 = osxsave ? xgetbv0() : 0;
    /* SSE + AVX state; + opmask, ZMM_Hi256, Hi16_ZMM; AMX tile config + data */
    const bool state[] = {true, (xcr0 & 0x6) == 0x6, (xcr0 & 0xE6) == 0xE6, (xcr0 & 0x60000) == 0x60000};
    for (int i = 0; i < N_FEATS; i++) {
        const struct feat *f = &feats[i];
        if (f->leaf > max || !__get_cpuid_count(f->leaf, f->sub, &a, &b, &c, &d)) continue;
        unsigned r = f->reg == 'a' ? a : f->reg == 'b' ? b : f->reg == 'c' ? c : d;
        usable[i] = (r >> f->bit & 1) && state[f->state];
    }
}

/* Linux hands out AMX tile data per process on request (its XSAVE area is 8 KiB); permission once
 * granted covers every thread of the process, so the pool's threads need no call of their own. */
static bool amx_permitted(void) {
#if defined(__linux__) && defined(SYS_arch_prctl)
    enum { ARCH_REQ_XCOMP_PERM = 0x1023, XFEATURE_XTILEDATA = 18 };
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
#else
    return false;
#endif
}
#else
static void detect_usable(void) {} /* not x86: no CPUID, none of these features */
static bool amx_permitted(void) { return false; }
#endif

static bool usable_named(const char *name) {
    for (int i = 0; i < N_FEATS; i++)
        if (!strcmp(feats[i].name, name)) return usable[i];
    return false;
}

static void detect(void) {
    detect_usable();
    int *fields = (int *)&cpu;
    for (int i = 0; i < N_FEATS; i++)
        if (feats[i].field >= 0) fields[feats[i].field] = usable[i];
    cpu.amx_bf16 = cpu.amx_bf16 && usable_named("amx_tile") && amx_permitted();
}

const kiln_cpu *kiln_cpu_features(void) {
    pthread_once(&once, detect);
    return &cpu;
}

static void append(char *out, size_t cap, size_t *o, const char *word) {
    if (*o < cap) *o += (size_t)snprintf(out + *o, cap - *o, "%s%s", *o ? " " : "", word);
}

void kiln_cpu_feature_list(char *out, size_t cap) {
    kiln_cpu_features();
    size_t o = 0;
    if (cap) out[0] = 0;
    for (int i = 0; i < N_FEATS; i++)
        if (usable[i]) append(out, cap, &o, feats[i].name);
}

/* The value of /proc/cpuinfo's first line starting with key (malloc'd, newline removed), or NULL. */
static char *cpuinfo_value(const char *key) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    char *line = NULL, *val = NULL;
    size_t n = 0, kl = strlen(key);
    while (f && !val && getline(&line, &n, f) > 0) {
        char *colon = strchr(line, ':');
        if (colon && !strncmp(line, key, kl) && (line[kl] == ' ' || line[kl] == '\t' || line[kl] == ':')) {
            char *v = colon + 1;
            while (*v == ' ') v++;
            v[strcspn(v, "\n")] = 0;
            val = strdup(v);
        }
    }
    free(line);
    if (f) fclose(f);
    return val;
}

void kiln_cpuinfo_feature_list(char *out, size_t cap) {
    char *flags = cpuinfo_value("flags");
    size_t o = 0;
    if (cap) out[0] = 0;
    for (int i = 0; flags && i < N_FEATS; i++) {
        size_t len = strlen(feats[i].name);
        for (const char *p = flags; (p = strstr(p, feats[i].name)); p++)
            if ((p == flags || p[-1] == ' ') && (p[len] == ' ' || p[len] == 0)) {
                append(out, cap, &o, feats[i].name);
                break;
            }
    }
    free(flags);
}

void kiln_cpu_model(char *out, size_t cap) {
    char *model = cpuinfo_value("model name");
    if (cap) snprintf(out, cap, "%s", model ? model : "");
    free(model);
}

int kiln_physical_cores(void) {
    /* Count distinct (physical id, core id) pairs; fall back to online CPUs. */
    FILE *f = fopen("/proc/cpuinfo", "r");
    int seen[1024][2], ns = 0, phys = 0, core = -1;
    char line[512];
    if (f) {
        while (fgets(line, sizeof line, f)) {
            if (sscanf(line, "physical id : %d", &phys) == 1) continue;
            if (sscanf(line, "core id : %d", &core) == 1) {
                int dup = 0;
                for (int i = 0; i < ns; i++)
                    if (seen[i][0] == phys && seen[i][1] == core) dup = 1;
                if (!dup && ns < 1024) {
                    seen[ns][0] = phys;
                    seen[ns][1] = core;
                    ns++;
                }
            }
        }
        fclose(f);
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (ns <= 0 || ns > online) ns = online > 0 ? (int)online : 1;
    return ns;
}
