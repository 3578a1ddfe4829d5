/* tokenizer_speed.c — encode throughput in MB/s (median of N runs) for each text file given.
 * usage: tokenizer_speed TOKENIZER_DIR RUNS FILE... (bench/tokenizer_speed.sh builds and drives it) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "kiln.h"

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 4) return fprintf(stderr, "usage: %s TOKENIZER_DIR RUNS FILE...\n", argv[0]), 2;
    kiln_err err = {0};
    kiln_tokenizer *t = kiln_tokenizer_open(argv[1], &err);
    if (!t) return fprintf(stderr, "%s\n", err.msg), 1;
    int runs = atoi(argv[2]);
    if (runs < 1 || runs > 100) runs = 5;
    for (int f = 3; f < argc; f++) {
        size_t len;
        char *text = kiln_read_file(argv[f], &len, &err);
        if (!text) return fprintf(stderr, "%s\n", err.msg), 1;
        double s[100];
        size_t n_ids = 0;
        for (int r = 0; r < runs; r++) {
            int32_t *ids;
            double t0 = kiln_now();
            kiln_encode(t, text, len, false, &ids, &n_ids, &err);
            s[r] = kiln_now() - t0;
            free(ids);
        }
        qsort(s, (size_t)runs, sizeof s[0], cmp);
        printf("{\"tokenizer\":\"%s\",\"file\":\"%s\",\"bytes\":%zu,\"tokens\":%zu,\"median_s\":%.4f,\"mb_per_s\":%.2f}\n",
               argv[1], argv[f], len, n_ids, s[runs / 2], len / 1e6 / s[runs / 2]);
        free(text);
    }
    kiln_tokenizer_free(t);
    return 0;
}
