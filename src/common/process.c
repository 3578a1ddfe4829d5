/* process.c — what the process measures about itself: memory high-water mark and a monotonic clock. */
#include "kiln.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static size_t status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    size_t kb = 0, klen = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0) {
            sscanf(line + klen, " %zu", &kb);
            break;
        }
    fclose(f);
    return kb;
}

size_t kiln_peak_rss_bytes(void) { return status_kb("VmHWM:") * 1024; }
size_t kiln_rss_bytes(void) { return status_kb("VmRSS:") * 1024; }

double kiln_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
