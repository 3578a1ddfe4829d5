/* report_csv.c — one row per measured run (warmups excluded), for spreadsheets and pandas. */
#include "kiln.h"

void kiln_bench_write_csv(const kiln_bench_report *r, FILE *f) {
    fprintf(f, "scenario,max_new_tokens,min_new_tokens,sample,batch,run,total_s,ttft_s,prefill_tok_s,decode_tok_s,"
               "prompt_tokens,gen_tokens,rss_bytes,peak_rss_bytes\n");
    for (int s = 0; s < r->n_sc; s++) {
        const kiln_bench_scenario *sc = &r->sc[s];
        for (int i = 0; i < sc->n_runs; i++) {
            const kiln_bench_run *u = &sc->runs[i];
            fprintf(f, "%s,%d,%d,%s,%d,%d,%.6f,%.6f,%.3f,%.3f,%d,%d,%zu,%zu\n", sc->name, sc->max_new_tokens,
                    sc->min_new_tokens, sc->sample ? "on" : "off", sc->batch, i + 1, u->total_s, u->ttft_s,
                    u->prefill_tps, u->decode_tps, u->prompt_tokens, u->gen_tokens, u->rss_bytes, u->peak_rss_bytes);
        }
    }
}
