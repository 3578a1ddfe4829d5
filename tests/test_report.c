/* test_report.c — `kiln bench`'s statistics, verdict and compare (src/report/) on injected timings,
 * checked against values computed by hand (and numpy.percentile for the percentiles), never against the
 * code itself. */
#include <math.h>
#include <unistd.h>

#include "check.h"
#include "kiln.h"
#include "report/report.h"

#define NEAR(a, b) (fabs((a) - (b)) < 1e-9)

TEST(stats_hand_computed) {
    /* mean 40/8 = 5; squared deviations 9,1,1,1,0,0,4,16 = 32 -> population variance 4, stddev 2. */
    double x[] = {9, 4, 2, 4, 5, 7, 4, 5};
    kiln_bench_stats s;
    kiln_bench_stats_compute(x, 8, &s);
    CHECK(s.n == 8, "n=%d", s.n);
    CHECK(NEAR(s.mean, 5), "mean=%g", s.mean);
    CHECK(NEAR(s.var, 4), "var=%g", s.var);
    CHECK(NEAR(s.stddev, 2), "stddev=%g", s.stddev);
    CHECK(NEAR(s.min, 2) && NEAR(s.max, 9) && NEAR(s.range, 7), "min=%g max=%g range=%g", s.min, s.max, s.range);
    CHECK(NEAR(s.median, 4.5), "median=%g", s.median); /* sorted 2 4 4 4 5 5 7 9: (4+5)/2 */
    CHECK(NEAR(s.cv, 0.4), "cv=%g", s.cv);
    CHECK(!s.has_p90 && !s.has_p99, "p90/p99 need 10/100 samples");
}

TEST(percentiles_linear_interpolation) {
    /* numpy.percentile(range(1, 11), 90) == 9.1; median 5.5. */
    double x[10];
    for (int i = 0; i < 10; i++) x[i] = 10 - i;
    kiln_bench_stats s;
    kiln_bench_stats_compute(x, 10, &s);
    CHECK(s.has_p90 && !s.has_p99, "has_p90=%d has_p99=%d", s.has_p90, s.has_p99);
    CHECK(NEAR(s.p90, 9.1), "p90=%g", s.p90);
    CHECK(NEAR(s.median, 5.5), "median=%g", s.median);
    /* numpy.percentile(range(0, 100), 99) == 98.01 */
    double y[100];
    for (int i = 0; i < 100; i++) y[i] = i;
    kiln_bench_stats_compute(y, 100, &s);
    CHECK(s.has_p99 && NEAR(s.p99, 98.01), "p99=%g", s.p99);
    CHECK(NEAR(s.p90, 89.1), "p90=%g", s.p90);
    kiln_bench_stats_compute(y, 1, &s);
    CHECK(NEAR(s.median, 0) && NEAR(s.var, 0) && NEAR(s.range, 0), "single sample");
}

static kiln_bench_scenario make_sc(const double *t, const double *tps, int n) {
    kiln_bench_scenario sc;
    memset(&sc, 0, sizeof sc);
    snprintf(sc.name, sizeof sc.name, "max64-off-b1");
    sc.n_runs = n;
    sc.runs = calloc((size_t)n, sizeof *sc.runs);
    for (int i = 0; i < n; i++) {
        sc.runs[i].total_s = t[i];
        sc.runs[i].decode_tps = tps[i];
        sc.runs[i].itl_s = malloc(2 * sizeof(double));
        sc.runs[i].itl_s[0] = 0.01 * (i + 1);
        sc.runs[i].itl_s[1] = 0.03;
        sc.runs[i].n_itl = 2;
    }
    return sc;
}

TEST(verdict_range_and_band) {
    kiln_bench_limits lim = {.max_range = 0.10};
    double t1[] = {1.0, 1.05, 1.1}, tps[] = {50, 60, 70};
    kiln_bench_scenario sc = make_sc(t1, tps, 3);
    kiln_bench_scenario_finish(&sc, &lim); /* range 0.1 / mean 1.05 = 9.52% */
    CHECK(sc.pass && !sc.why[0], "pass=%d why=%s", sc.pass, sc.why);
    /* pooled inter-token latencies 0.01 0.03 0.02 0.03 0.03 0.03: mean 0.025, median 0.03 */
    CHECK(sc.itl.n == 6 && NEAR(sc.itl.mean, 0.025) && NEAR(sc.itl.median, 0.03), "itl n=%d mean=%g med=%g",
          sc.itl.n, sc.itl.mean, sc.itl.median);
    lim.has_tps = 1, lim.tps_lo = 55, lim.tps_hi = 80;
    kiln_bench_scenario_finish(&sc, &lim);
    CHECK(!sc.pass && strstr(sc.why, "run 1 tok/s 50.00 outside target 55:80") && !strstr(sc.why, "range"),
          "why=%s", sc.why);
    kiln_bench_scenario_free(&sc);

    double t2[] = {1.0, 1.2, 1.1}; /* range 0.2 / mean 1.1 = 18.2% */
    sc = make_sc(t2, tps, 3);
    lim.tps_lo = 40;
    kiln_bench_scenario_finish(&sc, &lim);
    CHECK(!sc.pass && strstr(sc.why, "latency range/mean 18.2% > max-range 10.0%") && !strstr(sc.why, "tok/s"),
          "why=%s", sc.why);
    kiln_bench_scenario_free(&sc);
}

TEST(compare_self_and_halved) {
    double a[] = {1.0, 1.05, 1.1}, half[] = {0.5, 0.525, 0.55}, dbl[] = {2.0, 2.1, 2.2};
    kiln_bench_cmp c;
    report_compare_one("s", a, 3, a, 3, &c);
    CHECK(!c.outside_noise && NEAR(c.ratio, 1) && strstr(c.text, "within noise"), "%s", c.text);
    report_compare_one("s", a, 3, half, 3, &c);
    CHECK(c.outside_noise && NEAR(c.ratio, 2) && !strcmp(c.text, "2.00\xc3\x97 faster, outside the noise"), "%s",
          c.text);
    report_compare_one("s", a, 3, dbl, 3, &c);
    CHECK(c.outside_noise && strstr(c.text, "2.00\xc3\x97 slower"), "%s", c.text);
    /* 3% faster but the runs overlap: noise. */
    double close[] = {0.97, 1.02, 1.07};
    report_compare_one("s", a, 3, close, 3, &c);
    CHECK(!c.outside_noise && strstr(c.text, "within noise"), "%s", c.text);
}

TEST(compare_json_files) {
    double t[] = {1.0, 1.05, 1.1}, half[] = {0.5, 0.525, 0.55}, tps[] = {50, 60, 70};
    kiln_bench_limits lim = {.max_range = 0.10};
    kiln_bench_report r;
    memset(&r, 0, sizeof r);
    kiln_bench_env_collect(&r.env, "m", "f32", 1);
    kiln_bench_scenario sc = make_sc(t, tps, 3);
    kiln_bench_scenario_finish(&sc, &lim);
    r.sc = &sc, r.n_sc = 1, r.runs = 3;
    char pa[] = "/tmp/kiln_bench_aXXXXXX", pb[] = "/tmp/kiln_bench_bXXXXXX";
    int fa = mkstemp(pa), fb = mkstemp(pb);
    REQUIRE(fa >= 0 && fb >= 0, "mkstemp");
    FILE *f = fdopen(fa, "w");
    kiln_err err;
    CHECK(kiln_bench_write_json(&r, f, &err) == 0, "%s", err.msg);
    fclose(f);
    for (int i = 0; i < 3; i++) sc.runs[i].total_s = half[i];
    f = fdopen(fb, "w");
    CHECK(kiln_bench_write_json(&r, f, &err) == 0, "%s", err.msg);
    fclose(f);
    kiln_bench_scenario_free(&sc);
    kiln_bench_cmp *cmp;
    int n;
    CHECK(kiln_bench_compare_files(pa, pa, &cmp, &n, &err) == 0 && n == 1 && strstr(cmp[0].text, "within noise"), "self");
    free(cmp);
    CHECK(kiln_bench_compare_files(pa, pb, &cmp, &n, &err) == 0 && n == 1 && strstr(cmp[0].text, "2.00\xc3\x97 faster"),
          "halved");
    free(cmp);
    CHECK(kiln_bench_compare_files(pa, "/nonexistent.json", &cmp, &n, &err) == -1 && strstr(err.msg, "/nonexistent.json"),
          "missing file: %s", err.msg);
    unlink(pa);
    unlink(pb);
}

int main(void) {
    RUN(stats_hand_computed);
    RUN(percentiles_linear_interpolation);
    RUN(verdict_range_and_band);
    RUN(compare_self_and_halved);
    RUN(compare_json_files);
    return check_done();
}
