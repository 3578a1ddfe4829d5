/* report.h — the pure pieces of src/report/ that the report files share and tests/test_report.c checks
 * directly; everything callers need is in kiln.h's benchmark-report section. */
#ifndef KILN_REPORT_H
#define KILN_REPORT_H

#include "kiln.h"

/* Linear interpolation between closest ranks over sorted samples (numpy.percentile's default), p in 0..100. */
double report_percentile(const double *sorted, int n, double p);
/* One scenario of `bench compare`: median total_s ratio of A over B and whether it is outside the noise. */
void report_compare_one(const char *name, const double *a, int na, const double *b, int nb, kiln_bench_cmp *c);

#endif
