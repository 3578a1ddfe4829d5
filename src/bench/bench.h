/* bench.h — internal pieces of `kiln bench`: statistics over repeated runs, the stability verdict,
 * report writers and `bench compare`. The CLI (cli/bench.c) fills bench_scenario/bench_run; everything
 * here is pure data in, text out, so it is unit-tested on injected timings (tests/test_bench_stats.c). */
#ifndef KILN_BENCH_H
#define KILN_BENCH_H

#include <stddef.h>
#include <stdio.h>

#include "kiln.h"

/* Summary of n samples. Variance is the POPULATION variance (divide by n): a bench reports the spread of
 * the runs it made, it does not estimate a wider population. Percentiles use linear interpolation between
 * closest ranks (numpy.percentile's default): rank = p/100 * (n-1) over the sorted samples. p90 is
 * reported only with n >= 10 samples and p99 with n >= 100 — below that they are just the max. */
typedef struct bench_stats {
    int n;
    double mean, var, stddev, min, max, range, median, cv; /* cv = stddev / mean (0 when mean is 0) */
    double p90, p99;
    int has_p90, has_p99;
} bench_stats;

void bench_stats_compute(const double *x, int n, bench_stats *s);
double bench_percentile(const double *sorted, int n, double p); /* linear interpolation, p in 0..100 */

typedef struct bench_run {
    double total_s;      /* wall time of the whole generation */
    double ttft_s;       /* time to first token: prefill + first sample */
    double prefill_tps;  /* prompt tokens / prefill time */
    double decode_tps;   /* (gen_tokens - 1) / decode time, or gen_tokens / total when only one */
    double tg_tps;       /* pp/tg mode: decode tok/s of a separate run from a 1-token prompt (llama-bench's
                          * tg: no long context to attend over); 0 otherwise */
    int prompt_tokens, gen_tokens;
    size_t rss_bytes, peak_rss_bytes;
    double *itl_s; /* inter-token latencies of the decode steps (malloc'd), n_itl of them */
    int n_itl;
} bench_run;

typedef struct bench_scenario {
    char name[128];
    int max_new_tokens, min_new_tokens, sample, batch, prompt_tokens;
    int n_runs;
    bench_run *runs; /* [n_runs] */
    /* filled by bench_scenario_finish */
    bench_stats total, ttft, prefill, decode, itl;
    int pass;
    char why[256]; /* failed conditions, "" on PASS */
} bench_scenario;

typedef struct bench_limits {
    double max_range;        /* max (max-min)/mean of total_s, e.g. 0.10 */
    double tps_lo, tps_hi;   /* decode tok/s band; has_tps = 0 when not given */
    int has_tps;
} bench_limits;

/* Computes the stats and the verdict for one scenario. */
void bench_scenario_finish(bench_scenario *sc, const bench_limits *lim);
void bench_scenario_free(bench_scenario *sc);

/* The environment recorded with every report. */
typedef struct bench_env {
    char cpu_model[256];
    char cpu_flags[512]; /* SIMD-relevant flags only */
    int threads, n_cpus;
    size_t mem_total_bytes;
    char version[32], commit[48];
    char model[1024], dtype[32], date[40];
} bench_env;
void bench_env_collect(bench_env *e, const char *model, const char *dtype, int threads);

typedef struct bench_report {
    bench_env env;
    bench_limits limits;
    int runs, warmup;
    bench_scenario *sc;
    int n_sc;
    /* llama-bench style mode (pp/tg), or pp_tokens == 0 */
    int pp_tokens, tg_tokens;
    double pp_tok_s, tg_tok_s; /* medians over the runs */
} bench_report;

int bench_write_json(const bench_report *r, FILE *f, kiln_err *err);
void bench_write_csv(const bench_report *r, FILE *f);
void bench_write_markdown(const bench_report *r, FILE *f);
void bench_write_html(const bench_report *r, FILE *f);
void bench_write_table(const bench_report *r, FILE *f); /* the human summary */

/* `bench compare`: writes one line per scenario present in both files. Returns 0, or -1 with err. */
typedef struct bench_cmp {
    char name[128];
    double ratio;    /* median total_s of A / median total_s of B: > 1 means B is faster */
    int outside_noise;
    char text[160];
} bench_cmp;
int bench_compare_files(const char *a, const char *b, bench_cmp **out, int *n, kiln_err *err);
void bench_compare_one(const char *name, const double *a, int na, const double *b, int nb, bench_cmp *c);

#endif
