/* report_text.c — the human summary on stdout and the `--markdown` table. */
#include "kiln.h"

#define MIB(x) ((double)(x) / (1024.0 * 1024.0))

void kiln_bench_write_table(const kiln_bench_report *r, FILE *f) {
    fprintf(f, "\n%-28s %4s %9s %9s %7s %7s %9s %9s %9s  %s\n", "scenario", "runs", "mean s", "median s", "range%",
            "cv%", "tok/s", "ttft ms", "peak MiB", "verdict");
    for (int s = 0; s < r->n_sc; s++) {
        const kiln_bench_scenario *sc = &r->sc[s];
        size_t peak = 0;
        for (int i = 0; i < sc->n_runs; i++)
            if (sc->runs[i].peak_rss_bytes > peak) peak = sc->runs[i].peak_rss_bytes;
        double rel = sc->total.mean > 0 ? sc->total.range / sc->total.mean * 100 : 0;
        fprintf(f, "%-28s %4d %9.4f %9.4f %7.2f %7.2f %9.2f %9.2f %9.1f  %s%s%s\n", sc->name, sc->n_runs,
                sc->total.mean, sc->total.median, rel, sc->total.cv * 100, sc->decode.median, sc->ttft.median * 1e3,
                MIB(peak), sc->pass ? "PASS" : "FAIL", sc->pass ? "" : ": ", sc->why);
        if (sc->itl.n > 0) {
            fprintf(f, "%-28s inter-token ms: mean %.3f median %.3f min %.3f max %.3f", "", sc->itl.mean * 1e3,
                    sc->itl.median * 1e3, sc->itl.min * 1e3, sc->itl.max * 1e3);
            if (sc->itl.has_p90) fprintf(f, " p90 %.3f", sc->itl.p90 * 1e3);
            if (sc->itl.has_p99) fprintf(f, " p99 %.3f", sc->itl.p99 * 1e3);
            fputc('\n', f);
        }
    }
    if (r->pp_tokens > 0)
        fprintf(f, "\npp%d: %.2f tok/s   tg%d: %.2f tok/s   (medians over %d runs; %d tokens already cached)\n",
                r->pp_tokens, r->pp_tok_s, r->tg_tokens, r->tg_tok_s, r->runs, r->depth);
}

void kiln_bench_write_markdown(const kiln_bench_report *r, FILE *f) {
    const kiln_bench_env *e = &r->env;
    fprintf(f, "## kiln bench\n\n`%s` (%s), kiln %s (%s), %s, %d threads, %s\n\n", e->model, e->dtype, e->version,
            e->commit, e->cpu_model, e->threads, e->date);
    fprintf(f, "| scenario | runs | mean s | variance | min s | max s | range %% | median s | decode tok/s | "
               "TTFT ms | verdict |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n");
    for (int s = 0; s < r->n_sc; s++) {
        const kiln_bench_scenario *sc = &r->sc[s];
        double rel = sc->total.mean > 0 ? sc->total.range / sc->total.mean * 100 : 0;
        fprintf(f, "| %s | %d | %.4f | %.3g | %.4f | %.4f | %.2f | %.4f | %.2f | %.2f | %s%s%s |\n", sc->name,
                sc->n_runs, sc->total.mean, sc->total.var, sc->total.min, sc->total.max, rel, sc->total.median,
                sc->decode.median, sc->ttft.median * 1e3, sc->pass ? "PASS" : "FAIL", sc->pass ? "" : ": ", sc->why);
    }
    if (r->pp_tokens > 0)
        fprintf(f, "\n| test | depth | tok/s |\n|---|---:|---:|\n| pp%d | %d | %.2f |\n| tg%d | %d | %.2f |\n", r->pp_tokens,
                r->depth, r->pp_tok_s, r->tg_tokens, r->depth, r->tg_tok_s);
}
