/* stats.c — summary statistics over repeated runs and the stability verdict. */
#include <math.h>
#include <stdlib.h>
#include <stddef.h>
#include <string.h>

#include "report/report.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* numpy.percentile default ("linear"): position p/100*(n-1) between the two closest sorted samples. */
double report_percentile(const double *sorted, int n, double p) {
    if (n <= 0) return 0;
    double pos = p / 100.0 * (n - 1);
    int lo = (int)floor(pos);
    if (lo >= n - 1) return sorted[n - 1];
    double frac = pos - lo;
    return sorted[lo] + frac * (sorted[lo + 1] - sorted[lo]);
}

void kiln_bench_stats_compute(const double *x, int n, kiln_bench_stats *s) {
    memset(s, 0, sizeof *s);
    s->n = n;
    if (n <= 0) return;
    double *v = malloc((size_t)n * sizeof *v);
    if (!v) return;
    memcpy(v, x, (size_t)n * sizeof *v);
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += v[i];
    s->mean = sum / n;
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (v[i] - s->mean) * (v[i] - s->mean);
    s->var = ss / n;
    s->stddev = sqrt(s->var);
    s->min = v[0];
    s->max = v[n - 1];
    s->range = s->max - s->min;
    s->median = report_percentile(v, n, 50);
    s->cv = s->mean != 0 ? s->stddev / s->mean : 0;
    s->has_p90 = n >= 10;
    s->has_p99 = n >= 100;
    if (s->has_p90) s->p90 = report_percentile(v, n, 90);
    if (s->has_p99) s->p99 = report_percentile(v, n, 99);
    free(v);
}

static void field_stats(const kiln_bench_scenario *sc, size_t off, kiln_bench_stats *out) {
    double *v = malloc((size_t)(sc->n_runs ? sc->n_runs : 1) * sizeof *v);
    if (!v) return;
    for (int i = 0; i < sc->n_runs; i++) v[i] = *(const double *)((const char *)&sc->runs[i] + off);
    kiln_bench_stats_compute(v, sc->n_runs, out);
    free(v);
}

void kiln_bench_scenario_finish(kiln_bench_scenario *sc, const kiln_bench_limits *lim) {
    field_stats(sc, offsetof(kiln_bench_run, total_s), &sc->total);
    field_stats(sc, offsetof(kiln_bench_run, ttft_s), &sc->ttft);
    field_stats(sc, offsetof(kiln_bench_run, prefill_tps), &sc->prefill);
    field_stats(sc, offsetof(kiln_bench_run, decode_tps), &sc->decode);
    /* Inter-token latencies of all runs pooled: the distribution a user of the scenario sees. */
    int n = 0;
    for (int i = 0; i < sc->n_runs; i++) n += sc->runs[i].n_itl;
    double *all = malloc((size_t)(n ? n : 1) * sizeof *all);
    if (all) {
        int k = 0;
        for (int i = 0; i < sc->n_runs; i++)
            for (int j = 0; j < sc->runs[i].n_itl; j++) all[k++] = sc->runs[i].itl_s[j];
        kiln_bench_stats_compute(all, n, &sc->itl);
        free(all);
    }

    sc->pass = 1;
    sc->why[0] = 0;
    size_t w = 0;
    double rel = sc->total.mean > 0 ? sc->total.range / sc->total.mean : 0;
    if (sc->n_runs == 0) {
        sc->pass = 0;
        w += (size_t)snprintf(sc->why + w, sizeof sc->why - w, "no runs");
    } else if (rel > lim->max_range) {
        sc->pass = 0;
        w += (size_t)snprintf(sc->why + w, sizeof sc->why - w, "latency range/mean %.1f%% > max-range %.1f%%",
                              rel * 100, lim->max_range * 100);
    }
    if (lim->has_tps) {
        for (int i = 0; i < sc->n_runs; i++) {
            double t = sc->runs[i].decode_tps;
            if (t < lim->tps_lo || t > lim->tps_hi) {
                sc->pass = 0;
                if (w >= sizeof sc->why) break;
                w += (size_t)snprintf(sc->why + w, sizeof sc->why - w, "%srun %d tok/s %.2f outside target %g:%g",
                                      w ? "; " : "", i + 1, t, lim->tps_lo, lim->tps_hi);
                break; /* the first offender names the condition; the table shows every run */
            }
        }
    }
}

void kiln_bench_scenario_free(kiln_bench_scenario *sc) {
    for (int i = 0; i < sc->n_runs; i++) free(sc->runs[i].itl_s);
    free(sc->runs);
    sc->runs = NULL;
    sc->n_runs = 0;
}
