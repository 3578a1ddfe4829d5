/* cpu.h — what this CPU can run: the ONE reader of CPUID + XGETBV and of /proc/cpuinfo (the kernels' ISA
 * choice, `kiln info` and the bench environment all ask here). A feature counts only when CPUID reports it
 * AND the OS saves the registers it uses (XGETBV); otherwise its instructions fault. */
#ifndef KILN_CPU_H
#define KILN_CPU_H

#include <stddef.h>

typedef struct kiln_cpu {
    int avx2, fma, f16c;                           /* the AVX2 kernel path needs all three */
    int avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16; /* the AVX-512 path needs F/BW/VL/VNNI */
    /* AMX tiles with BF16 (the "amx" kernels): both CPUID bits, the tile state in XCR0, and Linux's
     * permission for this process to use tile data (arch_prctl ARCH_REQ_XCOMP_PERM, asked for once here;
     * without it the first tile instruction faults) */
    int amx_bf16;
} kiln_cpu;

/* Detected once; cheap to call again. */
const kiln_cpu *kiln_cpu_features(void);

/* The SIMD features kiln cares about, space-separated in /proc/cpuinfo's spelling ("avx2 avx512f ..."):
 * usable ones by CPUID + XGETBV, and the same list as the kernel's /proc/cpuinfo "flags" line reports it
 * (the two can be compared word for word). */
void kiln_cpu_feature_list(char *out, size_t cap);
void kiln_cpuinfo_feature_list(char *out, size_t cap);
/* Physical cores of this machine (hyper-threads not counted, from /proc/cpuinfo); at least 1. */
int kiln_physical_cores(void);
/* The CPU's "model name" from /proc/cpuinfo ("" if unknown). */
void kiln_cpu_model(char *out, size_t cap);

#endif
