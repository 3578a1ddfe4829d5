/* kernel_set.c — which kernel set kiln runs on this machine (picked once from CPUID), for `kiln info`. */
#include "kernels/kernels.h"
#include "kiln.h"

const char *kiln_kernel_set(void) {
    kern_init();
    return kern_isa_name();
}
