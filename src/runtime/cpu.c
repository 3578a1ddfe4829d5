/* cpu.c — runtime CPU feature detection.
 *
 * A feature counts only when CPUID reports it AND XGETBV says the OS saves the registers it uses
 * (YMM state for AVX2, ZMM + opmask state for AVX-512); otherwise the instructions fault. */
#include "runtime/cpu.h"

#include <cpuid.h>
#include <pthread.h>
#include <stdint.h>

static kiln_cpu cpu;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static void detect(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    int fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return;
    uint64_t xcr0 = xgetbv0();
    int ymm_ok = (xcr0 & 0x6) == 0x6;     /* SSE + AVX state */
    int zmm_ok = (xcr0 & 0xe6) == 0xe6;   /* + opmask, ZMM_Hi256, Hi16_ZMM */
    if (!ymm_ok) return;
    cpu.fma = fma;
    cpu.f16c = f16c;
    if (__get_cpuid_max(0, NULL) < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    cpu.avx2 = (b >> 5) & 1;
    if (zmm_ok) {
        cpu.avx512f = (b >> 16) & 1;
        cpu.avx512bw = (b >> 30) & 1;
        cpu.avx512vl = (b >> 31) & 1;
        cpu.avx512vnni = (c >> 11) & 1;
        __cpuid_count(7, 1, a, b, c, d);
        cpu.avx512bf16 = (a >> 5) & 1;
    }
}

const kiln_cpu *kiln_cpu_features(void) {
    pthread_once(&once, detect);
    return &cpu;
}
