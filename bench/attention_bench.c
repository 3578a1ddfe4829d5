/* attention_bench.c — attention over a deep KV cache, per KV format (--kv-type): decode and a prefill chunk.
 *
 * What a KV format changes in decode is the attention's read of the cache: this times exactly that, in
 * the Llama-3.2-1B geometry (16 layers, 32 query heads over 8 KV heads of 64, the engine's head-major
 * paged layout, engine.h), one token attending over `depth` cached positions in every layer; and a
 * prefill chunk of `pp` tokens appended after the depth (token i attends over depth + i + 1 positions;
 * depth 0 = a causal prompt of pp tokens). Each is timed two ways in the same round: kern_attention_block
 * split as forward.c splits it (kv head x block of tokens, by keys visited: the engine's path), and
 * kern_attention one query and one head at a time, the heads split over the threads (the path before it,
 * under "per_query"). Formats alternate within each round (f32 f16 bf16 q8_0, then again), so they share
 * the machine's noise; the JSON line has each format's median ms per decoded token (with the cache bytes
 * it read and the rate that makes) and per prefill chunk, per depth.
 *
 *   make build/bench/attention_bench
 *   build/bench/attention_bench [threads=2] [depth=4096,16384] [rounds=5] [pp=64] [formats=f32,f16,bf16,q8_0] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kiln.h"
#include "runtime/threadpool.h"

enum { LAYERS = 16, HQ = 32, HKV = 8, HD = 64, BLOCK = KILN_KV_BLOCK, NT = 4, MAXR = 64 };
static const kiln_dtype ALL_TYPES[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_BF16, KILN_DT_Q8_0};
enum { MAXTYPES = sizeof ALL_TYPES / sizeof ALL_TYPES[0] };
static kiln_dtype TYPES[MAXTYPES]; /* the formats measured (the 5th argument, default all) */
static int NTYPES;

typedef struct job {
    kern_kv_view kv[LAYERS];
    const float *q;
    float *out, *scratch; /* scratch: per_thread floats per thread */
    int depth, n_q;       /* n_q: 1 (decode over depth positions) or the prefill chunk's tokens */
    int block;            /* 1: kern_attention_block (what forward.c calls), 0: kern_attention one query at a time */
    size_t per_thread;
} job;

/* One query at a time (kern_attention), the heads split over the threads: the engine's path before
 * kern_attention_block. */
static void part_per_query(job *j, int ith, int nth) {
    int lo, hi;
    kiln_split_range(HQ, ith, nth, &lo, &hi);
    for (int l = 0; l < LAYERS; l++)
        for (int h = lo; h < hi; h++)
            for (int t = 0; t < j->n_q; t++)
                kern_attention(j->out, j->q, HQ, HKV, HD, j->depth + (j->n_q > 1 ? t + 1 : 0), &j->kv[l],
                               j->scratch + (size_t)ith * j->per_thread, h, h + 1);
}

/* kern_attention_block as forward.c calls it: units of (kv head, block of KERN_ATTN_ROWS / group tokens),
 * threads taking the units whose cost midpoint falls in their share. */
static void part_block(job *j, int ith, int nth) {
    const int G = HQ / HKV, qb = KERN_ATTN_ROWS / G, nqb = (j->n_q + qb - 1) / qb, units = HKV * nqb;
    double total = 0, done = 0;
    for (int b = 0; b < nqb; b++) total += j->depth + b * qb + qb / 2.0;
    total *= HKV;
    float *scratch = j->scratch + (size_t)ith * j->per_thread;
    for (int u = 0; u < units; u++) {
        const int b = u % nqb, h = u / nqb * G, n = j->n_q - b * qb < qb ? j->n_q - b * qb : qb;
        const double cost = j->depth + b * qb + qb / 2.0;
        const double mid = done + cost / 2;
        done += cost;
        if ((int)(mid * nth / total) != ith) continue;
        for (int l = 0; l < LAYERS; l++) /* decode: the token's own key is position depth */
            kern_attention_block(j->out + (size_t)b * qb * HQ * HD, j->q + (size_t)b * qb * HQ * HD, (size_t)HQ * HD, n, j->depth + b * qb - (j->n_q == 1), 0, HQ, HKV, HD, h, h + G,
                                 &j->kv[l], scratch);
    }
}

static void part(void *arg, int ith, int nth) {
    job *j = arg;
    if (j->block) part_block(j, ith, nth);
    else part_per_query(j, ith, nth);
}

static double timed(kiln_pool *pool, job *j, int n_q, int reps) {
    j->n_q = n_q;
    double t0 = kiln_now();
    for (int n = 0; n < reps; n++) kiln_pool_run(pool, part, j);
    return (kiln_now() - t0) * 1e3 / reps;
}

/* A cache of `depth` positions per layer in format t, made from the same f32 values for every format. */
static char *make_cache(kiln_dtype t, const float *vals, size_t rows, int depth, int *table, job *j) {
    const size_t rb = kern_row_bytes(t, HD), block_bytes = 2 * BLOCK * HKV * rb, nb = (size_t)depth / BLOCK;
    char *c = malloc(rows * rb);
    if (!c) return NULL;
    for (size_t r = 0; r < rows; r++) kern_row_from_f32(c + r * rb, t, vals + (r % 4096) * HD, HD);
    for (int l = 0; l < LAYERS; l++) { /* layer l's blocks after the previous layers' */
        const char *k = c + (size_t)l * nb * block_bytes;
        j->kv[l] = (kern_kv_view){k, k + block_bytes / 2, table, BLOCK, block_bytes, rb, BLOCK * rb, t, 0, 0, 0};
    }
    return c;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2, rounds = argc > 3 ? atoi(argv[3]) : 5, pp = argc > 4 ? atoi(argv[4]) : 64;
    char depths_s[256];
    snprintf(depths_s, sizeof depths_s, "%s", argc > 2 ? argv[2] : "4096,16384");
    if (threads < 1 || rounds < 1 || rounds > MAXR || pp < 1) return fprintf(stderr, "bad arguments\n"), 2;
    for (int t = 0; t < MAXTYPES; t++) { /* a format list matches whole names between commas */
        char item[16];
        snprintf(item, sizeof item, ",%s,", kiln_dtype_name(ALL_TYPES[t]));
        char list[256];
        snprintf(list, sizeof list, ",%s,", argc > 5 ? argv[5] : "f32,f16,bf16,q8_0");
        if (strstr(list, item)) TYPES[NTYPES++] = ALL_TYPES[t];
    }
    if (!NTYPES) return fprintf(stderr, "no known format in '%s' (f32, f16, bf16, q8_0)\n", argv[5]), 2;
    kern_init();
    kiln_pool *pool = kiln_pool_new(threads);
    float *vals = malloc(sizeof(float) * 4096 * HD), *q = malloc(sizeof(float) * pp * HQ * HD),
          *out = malloc(sizeof(float) * pp * HQ * HD);
    uint64_t s = 88172645463325252ull;
    for (int i = 0; i < 4096 * HD; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        vals[i] = (float)((s >> 40) * (1.0 / (1 << 23))) - 1.0f;
    }
    for (int i = 0; i < pp * HQ * HD; i++) q[i] = vals[i % (4096 * HD)] * 0.5f;
    printf("{\"kernels\":\"%s\",\"threads\":%d,\"shape\":\"16 layers, 32 q heads, 8 kv heads x 64\",\"depths\":[",
           kern_isa_name(), threads);
    int first = 1;
    for (char *save, *d = strtok_r(depths_s, ",", &save); d; d = strtok_r(NULL, ",", &save), first = 0) {
        const int depth = (atoi(d) + BLOCK - 1) / BLOCK * BLOCK, nb = (depth + pp + BLOCK - 1) / BLOCK;
        const size_t rows = (size_t)LAYERS * nb * 2 * BLOCK * HKV;
        const size_t per_thread = kern_attention_block_scratch(depth + pp, HD);
        int *table = malloc(sizeof(int) * (size_t)nb);
        float *scratch = malloc(sizeof(float) * (size_t)threads * per_thread);
        for (int b = 0; b < nb; b++) table[b] = b;
        job jobs[MAXTYPES];
        char *caches[MAXTYPES];
        for (int t = 0; t < NTYPES; t++) {
            jobs[t] = (job){.q = q, .out = out, .scratch = scratch, .depth = depth, .per_thread = per_thread};
            if (!(caches[t] = make_cache(TYPES[t], vals, rows, depth, table, &jobs[t])))
                return fprintf(stderr, "out of memory for depth %d\n", depth), 1;
        }
        double ms[2][MAXTYPES][MAXR], pms[2][MAXTYPES][MAXR]; /* [per query, block] */
        for (int r = 0; r < rounds; r++)
            for (int t = 0; t < NTYPES; t++)
                for (int blk = 0; blk < 2; blk++) {
                    jobs[t].block = blk;
                    if (depth > 0) {
                        timed(pool, &jobs[t], 1, 1); /* warm the pages and caches */
                        ms[blk][t][r] = timed(pool, &jobs[t], 1, NT);
                    } else ms[blk][t][r] = 0;
                    pms[blk][t][r] = timed(pool, &jobs[t], pp, 1);
                }
        printf("%s{\"depth\":%d", first ? "" : ",", depth);
        for (int t = 0; t < NTYPES; t++) {
            double med[2], pmed[2];
            for (int blk = 0; blk < 2; blk++) {
                qsort(ms[blk][t], (size_t)rounds, sizeof(double), cmp);
                qsort(pms[blk][t], (size_t)rounds, sizeof(double), cmp);
                med[blk] = ms[blk][t][rounds / 2], pmed[blk] = pms[blk][t][rounds / 2];
            }
            const double bytes = (double)LAYERS * depth * 2 * HKV * kern_row_bytes(TYPES[t], HD);
            printf(",\"%s\":{\"decode_ms_per_token\":%.3f,\"kv_mib\":%.1f,\"gb_s\":%.2f,\"pp%d_ms\":%.2f,"
                   "\"per_query\":{\"decode_ms_per_token\":%.3f,\"gb_s\":%.2f,\"pp%d_ms\":%.2f}}",
                   kiln_dtype_name(TYPES[t]), med[1], bytes / 1048576, med[1] > 0 ? bytes / med[1] / 1e6 : 0, pp, pmed[1],
                   med[0], med[0] > 0 ? bytes / med[0] / 1e6 : 0, pp, pmed[0]);
            free(caches[t]);
        }
        printf("}");
        fflush(stdout);
        free(table);
        free(scratch);
    }
    printf("]}\n");
    free(vals), free(q), free(out);
    kiln_pool_free(pool);
    return 0;
}
