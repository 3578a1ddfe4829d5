/* hugepage.c — see hugepage.h. */
#include "runtime/hugepage.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

void kiln_advise_hugepages(void *p, size_t n) {
#ifdef MADV_HUGEPAGE
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = ((uintptr_t)p + page - 1) & ~(page - 1),
                    hi = ((uintptr_t)p + n) & ~(page - 1);
    if (p && hi > lo) madvise((void *)lo, hi - lo, MADV_HUGEPAGE); /* advice only: failure changes nothing */
#else
    (void)p, (void)n;
#endif
}
