/* cpu.h — what this CPU can run, from CPUID + XGETBV (the OS must also save the wide registers). */
#ifndef KILN_CPU_H
#define KILN_CPU_H

typedef struct kiln_cpu {
    int avx2, fma, f16c;                           /* the AVX2 kernel path needs all three */
    int avx512f, avx512bw, avx512vl, avx512vnni, avx512bf16; /* the AVX-512 path needs F/BW/VL/VNNI */
} kiln_cpu;

/* Detected once; cheap to call again. */
const kiln_cpu *kiln_cpu_features(void);

#endif
