/* fuzz.h — the fuzz suite's pieces: a seeded generator, the mutators, and the targets (one per file the
 * library loads). main.c drives them: every case is generated from (seed, target, case number) alone, so
 * any case can be regenerated and rerun by its number. */
#ifndef KILN_FUZZ_H
#define KILN_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/strbuf.h"

/* splitmix64: small, fast, and the same sequence on every machine. */
typedef struct fuzz_rng {
    uint64_t s;
} fuzz_rng;
uint64_t fuzz_next(fuzz_rng *r);
uint64_t fuzz_below(fuzz_rng *r, uint64_t n); /* uniform in [0, n), n > 0 */

/* Byte-level mutations of in[0..n): bit flips, interesting bytes, truncations, deleted, copied and
 * inserted chunks, numbers spliced in. desc gets a short description ("bytes: truncate at 812"). */
void fuzz_mutate_bytes(fuzz_rng *r, const char *in, size_t n, strbuf *out, char *desc, size_t desc_cap);
/* Structure-aware mutation of a JSON document: one node is replaced by another type, a huge, negative or
 * non-finite number, a long or odd string, deleted, duplicated (duplicate keys), repeated, nested very
 * deep, emptied or turned from array into object. -1 if in is not JSON (nothing written). */
int fuzz_mutate_json(fuzz_rng *r, const char *in, size_t n, strbuf *out, char *desc, size_t desc_cap);

/* What one case did. */
typedef enum { FUZZ_ACCEPTED, FUZZ_REJECTED, FUZZ_INVALID } fuzz_outcome;

typedef struct fuzz_seed {
    const char *dir;  /* relative to $SHARED, or "@" + a path relative to tests/fuzz/seeds */
    const char *file; /* the file the mutant replaces */
} fuzz_seed;

typedef struct fuzz_target {
    const char *name;
    const fuzz_seed *seeds;
    int n_seeds;
    int cases; /* per run under ASan; a plain build runs twice as many */
    /* Builds the mutant of seed (the seed file's bytes) into out. */
    void (*mutate)(fuzz_rng *r, const char *seed, size_t n, strbuf *out, char *desc, size_t desc_cap);
    /* Loads the model directory dir holding the mutant; on an accepted-but-invalid result writes why. */
    fuzz_outcome (*run)(const char *dir, char *why, size_t why_cap);
} fuzz_target;

extern const fuzz_target fuzz_targets[];
extern const int fuzz_n_targets;

#endif
