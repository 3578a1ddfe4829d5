/* hugepage.h — asks the kernel to back a large buffer with transparent huge pages.
 *
 * Why: decode streams every weight once per token, and on 4 KiB pages the hardware prefetcher stops at
 * each page boundary (and every 4 KiB costs a TLB walk). With THP in "madvise" mode (Debian's default)
 * malloc'd memory gets 4 KiB pages unless asked: an f16 GEMV over 512 MiB then read 16.7 GB/s per
 * CPU-second against 30.2 on huge pages (one thread, Zen 4, interleaved runs; with the memory busy with
 * other work, `matmul_bench f16 1 0 4 1 3 4k|huge` gave 15.6 vs 17.4). The bandwidth probe
 * (kiln_measure_read_bw) asks too, so weights and probe are measured on the same footing. */
#ifndef KILN_HUGEPAGE_H
#define KILN_HUGEPAGE_H

#include <stddef.h>

/* Advises huge pages for the page-aligned interior of [p, p + n), best effort (a kernel without THP
 * or a small buffer changes nothing). Call before the memory is first written: pages already faulted
 * in stay small until khugepaged merges them. */
void kiln_advise_hugepages(void *p, size_t n);

#endif
