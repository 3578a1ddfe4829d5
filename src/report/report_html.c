/* report_html.c — one self-contained HTML page (inline CSS + SVG, no script, no network) with four charts:
 * latency per run per scenario, decode tok/s per scenario (median bar, min..max whisker), peak memory per
 * run, TTFT per run. Every run is one <circle> carrying data-scenario / data-run / data-value, so the page
 * is both readable and checkable by a parser. */
#include <string.h>

#include "kiln.h"

#define W 760
#define H 260
#define PADL 70
#define PADB 60
#define PADT 30

typedef double (*run_metric)(const kiln_bench_run *);
static double m_total(const kiln_bench_run *r) { return r->total_s; }
static double m_ttft(const kiln_bench_run *r) { return r->ttft_s * 1e3; }
static double m_mem(const kiln_bench_run *r) { return (double)r->peak_rss_bytes / (1024.0 * 1024.0); }

static void esc(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static double y_of(double v, double ymax) { return PADT + (H - PADT - PADB) * (1 - (ymax > 0 ? v / ymax : 0)); }

/* Axes, title, y ticks and a label per scenario group; returns the group width. */
static double frame(FILE *f, const kiln_bench_report *r, const char *title, const char *unit, double ymax) {
    fprintf(f, "<h2>");
    esc(f, title);
    fprintf(f, "</h2>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n",
            W, H, W, H);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", PADL, PADT, PADL, H - PADB);
    fprintf(f, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", PADL, H - PADB, W - 10, H - PADB);
    for (int t = 0; t <= 4; t++) {
        double v = ymax * t / 4;
        fprintf(f, "<text x=\"%d\" y=\"%.1f\" class=\"tick\" text-anchor=\"end\">%.3g</text>\n", PADL - 6,
                y_of(v, ymax) + 4, v);
    }
    fprintf(f, "<text x=\"12\" y=\"%d\" class=\"tick\" transform=\"rotate(-90 12 %d)\">", H / 2, H / 2);
    esc(f, unit);
    fprintf(f, "</text>\n");
    double gw = (double)(W - PADL - 20) / (r->n_sc ? r->n_sc : 1);
    for (int s = 0; s < r->n_sc; s++) {
        fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"tick\" text-anchor=\"middle\">", PADL + gw * (s + 0.5),
                H - PADB + 18);
        esc(f, r->sc[s].name);
        fprintf(f, "</text>\n");
    }
    return gw;
}

static void per_run_chart(FILE *f, const kiln_bench_report *r, const char *title, const char *unit, const char *cls,
                          run_metric m) {
    double ymax = 0;
    for (int s = 0; s < r->n_sc; s++)
        for (int i = 0; i < r->sc[s].n_runs; i++)
            if (m(&r->sc[s].runs[i]) > ymax) ymax = m(&r->sc[s].runs[i]);
    ymax = ymax > 0 ? ymax * 1.15 : 1;
    double gw = frame(f, r, title, unit, ymax);
    for (int s = 0; s < r->n_sc; s++) {
        const kiln_bench_scenario *sc = &r->sc[s];
        for (int i = 0; i < sc->n_runs; i++) {
            double x = PADL + gw * s + gw * (i + 1) / (sc->n_runs + 1), v = m(&sc->runs[i]);
            fprintf(f, "<circle class=\"%s\" cx=\"%.1f\" cy=\"%.1f\" r=\"4\" data-scenario=\"", cls, x, y_of(v, ymax));
            esc(f, sc->name);
            fprintf(f, "\" data-run=\"%d\" data-value=\"%.6g\"><title>", i + 1, v);
            esc(f, sc->name);
            fprintf(f, " run %d: %.6g %s</title></circle>\n", i + 1, v, unit);
        }
    }
    fprintf(f, "</svg>\n");
}

static void tps_chart(FILE *f, const kiln_bench_report *r) {
    double ymax = 0;
    for (int s = 0; s < r->n_sc; s++)
        if (r->sc[s].decode.max > ymax) ymax = r->sc[s].decode.max;
    ymax = ymax > 0 ? ymax * 1.15 : 1;
    double gw = frame(f, r, "Decode tok/s per scenario (bar: median, whisker: min..max)", "tok/s", ymax);
    for (int s = 0; s < r->n_sc; s++) {
        const kiln_bench_stats *d = &r->sc[s].decode;
        double cx = PADL + gw * (s + 0.5), bw = gw * 0.4;
        fprintf(f, "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\"><title>median %.2f tok/s"
                   "</title></rect>\n", cx - bw / 2, y_of(d->median, ymax), bw, (H - PADB) - y_of(d->median, ymax),
                d->median);
        fprintf(f, "<line class=\"whisker\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", cx,
                y_of(d->min, ymax), cx, y_of(d->max, ymax));
    }
    fprintf(f, "</svg>\n");
}

void kiln_bench_write_html(const kiln_bench_report *r, FILE *f) {
    const kiln_bench_env *e = &r->env;
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>kiln bench</title>\n"
               "<style>body{font-family:sans-serif;margin:2em;color:#222}svg{background:#fafafa;border:1px solid #ddd}"
               ".axis{stroke:#555}.tick{font-size:11px;fill:#444}circle{fill:#1f77b4;opacity:.8}.mem{fill:#2ca02c}"
               ".ttft{fill:#d62728}.bar{fill:#9ecae1}.whisker{stroke:#08519c;stroke-width:3}"
               "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}"
               ".FAIL{color:#b00}.PASS{color:#070}</style>\n</head>\n<body>\n<h1>kiln bench</h1>\n<p>");
    esc(f, e->model);
    fprintf(f, " (");
    esc(f, e->dtype);
    fprintf(f, ") &middot; kiln %s (%s) &middot; ", e->version, e->commit);
    esc(f, e->cpu_model);
    fprintf(f, " &middot; %d threads &middot; %s &middot; %d runs after %d warmup</p>\n", e->threads, e->date, r->runs,
            r->warmup);
    fprintf(f, "<table>\n<tr><th>scenario</th><th>mean s</th><th>median s</th><th>range %%</th><th>cv %%</th>"
               "<th>decode tok/s</th><th>TTFT ms</th><th>verdict</th></tr>\n");
    for (int s = 0; s < r->n_sc; s++) {
        const kiln_bench_scenario *sc = &r->sc[s];
        fprintf(f, "<tr><td>");
        esc(f, sc->name);
        fprintf(f, "</td><td>%.4f</td><td>%.4f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td><td>%.2f</td>"
                   "<td class=\"%s\">%s ", sc->total.mean, sc->total.median,
                sc->total.mean > 0 ? sc->total.range / sc->total.mean * 100 : 0, sc->total.cv * 100,
                sc->decode.median, sc->ttft.median * 1e3, sc->pass ? "PASS" : "FAIL", sc->pass ? "PASS" : "FAIL");
        esc(f, sc->why);
        fprintf(f, "</td></tr>\n");
    }
    fprintf(f, "</table>\n");
    per_run_chart(f, r, "Latency per run", "seconds", "latency", m_total);
    tps_chart(f, r);
    per_run_chart(f, r, "Peak memory per run", "MiB", "mem", m_mem);
    per_run_chart(f, r, "Time to first token per run", "ms", "ttft", m_ttft);
    fprintf(f, "</body>\n</html>\n");
}
