/* compare.c — `kiln bench compare A.json B.json`: per-scenario speed ratios with a noise-aware verdict.
 *
 * The ratio is median(total_s of A) / median(total_s of B), so "2.00x faster" means B takes half the time.
 * A difference counts as outside the noise only when the two sets of runs do not overlap at all
 * (max of the faster < min of the slower) AND the ratio moves further from 1 than either side's own
 * spread (range/mean). With a handful of runs that is a conservative, assumption-free test: it never
 * calls two overlapping samples different. */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report/report.h"

void report_compare_one(const char *name, const double *a, int na, const double *b, int nb, kiln_bench_cmp *c) {
    kiln_bench_stats sa, sb;
    kiln_bench_stats_compute(a, na, &sa);
    kiln_bench_stats_compute(b, nb, &sb);
    memset(c, 0, sizeof *c);
    snprintf(c->name, sizeof c->name, "%s", name);
    c->ratio = sb.median > 0 ? sa.median / sb.median : 0;
    double spread = fmax(sa.mean > 0 ? sa.range / sa.mean : 0, sb.mean > 0 ? sb.range / sb.mean : 0);
    int disjoint = sb.max < sa.min || sa.max < sb.min;
    double change = c->ratio >= 1 ? c->ratio - 1 : (c->ratio > 0 ? 1 / c->ratio - 1 : 0);
    c->outside_noise = na > 0 && nb > 0 && disjoint && change > spread;
    if (!c->outside_noise)
        snprintf(c->text, sizeof c->text, "within noise (%.2f\xc3\x97, spread %.1f%%)", c->ratio, spread * 100);
    else if (c->ratio >= 1)
        snprintf(c->text, sizeof c->text, "%.2f\xc3\x97 faster, outside the noise", c->ratio);
    else
        snprintf(c->text, sizeof c->text, "%.2f\xc3\x97 slower, outside the noise", 1 / c->ratio);
}

/* Reads scenarios[].name and scenarios[].runs[].total_s. */
static json_t *load(const char *path, kiln_err *err) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) {
        kiln_err_set(err, "%s:%d: %s", path, je.line, je.text);
        return NULL;
    }
    if (!json_is_array(json_object_get(j, "scenarios"))) {
        kiln_err_set(err, "%s: no \"scenarios\" array (not a kiln bench JSON report)", path);
        json_decref(j);
        return NULL;
    }
    return j;
}

static int run_times(json_t *sc, const char *path, double **out, int *n, kiln_err *err) {
    json_t *runs = json_object_get(sc, "runs");
    if (!json_is_array(runs)) return kiln_err_set(err, "%s: scenario without a \"runs\" array", path);
    *n = (int)json_array_size(runs);
    *out = malloc(((size_t)*n + 1) * sizeof **out);
    if (!*out) return kiln_err_set(err, "out of memory");
    for (int i = 0; i < *n; i++) {
        json_t *t = json_object_get(json_array_get(runs, (size_t)i), "total_s");
        if (!json_is_number(t)) {
            free(*out);
            return kiln_err_set(err, "%s: run %d has no numeric \"total_s\"", path, i + 1);
        }
        (*out)[i] = json_number_value(t);
    }
    return 0;
}

int kiln_bench_compare_files(const char *pa, const char *pb, kiln_bench_cmp **out, int *n, kiln_err *err) {
    *out = NULL;
    *n = 0;
    json_t *ja = load(pa, err), *jb = ja ? load(pb, err) : NULL;
    int rc = -1;
    if (!jb) goto done;
    json_t *sa = json_object_get(ja, "scenarios"), *sb = json_object_get(jb, "scenarios");
    *out = calloc(json_array_size(sa) + 1, sizeof **out);
    if (!*out) { kiln_err_set(err, "out of memory"); goto done; }
    size_t i;
    json_t *a;
    json_array_foreach(sa, i, a) {
        const char *name = json_string_value(json_object_get(a, "name"));
        if (!name) { kiln_err_set(err, "%s: scenario %zu has no \"name\"", pa, i + 1); goto done; }
        size_t k;
        json_t *b, *match = NULL;
        json_array_foreach(sb, k, b) {
            const char *nb = json_string_value(json_object_get(b, "name"));
            if (nb && !strcmp(nb, name)) { match = b; break; }
        }
        if (!match) continue; /* scenarios only in A are not comparable */
        double *ta, *tb;
        int na, nb;
        if (run_times(a, pa, &ta, &na, err)) goto done;
        if (run_times(match, pb, &tb, &nb, err)) { free(ta); goto done; }
        report_compare_one(name, ta, na, tb, nb, &(*out)[(*n)++]);
        free(ta);
        free(tb);
    }
    if (*n == 0) { kiln_err_set(err, "%s and %s have no scenario in common", pa, pb); goto done; }
    rc = 0;
done:
    if (rc) { free(*out); *out = NULL; *n = 0; }
    json_decref(ja);
    json_decref(jb);
    return rc;
}
