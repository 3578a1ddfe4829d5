/* report_json.c — the machine-readable report (`--json`). Shape:
 * {"kiln_version","env":{...},"config":{...},["pp_tokens","tg_tokens","depth","pp_tok_s","tg_tok_s"],
 *  "scenarios":[{"name","max_new_tokens","min_new_tokens","sample","batch","prompt_tokens",
 *                "runs":[{"total_s","ttft_s","prefill_tok_s","decode_tok_s","prompt_tokens","gen_tokens",[tg_tok_s],
 *                         "rss_bytes","peak_rss_bytes"}],
 *                "stats":{"total_s":{...},"ttft_s":{...},"prefill_tok_s":{...},"decode_tok_s":{...},
 *                         "itl_s":{...}}, "verdict":"PASS"|"FAIL", "why":"..."}]} */
#include <jansson.h>

#include "kiln.h"

static json_t *stats_json(const kiln_bench_stats *s) {
    json_t *o = json_pack("{s:i,s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:f}", "n", s->n, "mean", s->mean, "variance", s->var,
                          "stddev", s->stddev, "min", s->min, "max", s->max, "range", s->range, "median",
                          s->median, "cv", s->cv);
    if (s->has_p90) json_object_set_new(o, "p90", json_real(s->p90));
    if (s->has_p99) json_object_set_new(o, "p99", json_real(s->p99));
    return o;
}

static json_t *scenario_json(const kiln_bench_scenario *sc) {
    json_t *runs = json_array();
    for (int i = 0; i < sc->n_runs; i++) {
        const kiln_bench_run *r = &sc->runs[i];
        json_array_append_new(runs, json_pack("{s:f,s:f,s:f,s:f,s:i,s:i,s:I,s:I}", "total_s", r->total_s, "ttft_s",
                                              r->ttft_s, "prefill_tok_s", r->prefill_tps, "decode_tok_s",
                                              r->decode_tps, "prompt_tokens", r->prompt_tokens, "gen_tokens",
                                              r->gen_tokens, "rss_bytes", (json_int_t)r->rss_bytes,
                                              "peak_rss_bytes", (json_int_t)r->peak_rss_bytes));
        if (r->tg_tps > 0) json_object_set_new(json_array_get(runs, (size_t)i), "tg_tok_s", json_real(r->tg_tps));
    }
    json_t *st = json_pack("{s:o,s:o,s:o,s:o,s:o}", "total_s", stats_json(&sc->total), "ttft_s",
                           stats_json(&sc->ttft), "prefill_tok_s", stats_json(&sc->prefill), "decode_tok_s",
                           stats_json(&sc->decode), "itl_s", stats_json(&sc->itl));
    return json_pack("{s:s,s:i,s:i,s:s,s:i,s:i,s:o,s:o,s:s,s:s}", "name", sc->name, "max_new_tokens",
                     sc->max_new_tokens, "min_new_tokens", sc->min_new_tokens, "sample", sc->sample ? "on" : "off",
                     "batch", sc->batch, "prompt_tokens", sc->prompt_tokens, "runs", runs, "stats", st, "verdict",
                     sc->pass ? "PASS" : "FAIL", "why", sc->why);
}

int kiln_bench_write_json(const kiln_bench_report *r, FILE *f, kiln_err *err) {
    const kiln_bench_env *e = &r->env;
    json_t *env = json_pack("{s:s,s:s,s:i,s:i,s:I,s:s,s:s,s:s,s:s,s:s}", "cpu_model", e->cpu_model, "cpu_flags",
                            e->cpu_flags, "threads", e->threads, "n_cpus", e->n_cpus, "mem_total_bytes",
                            (json_int_t)e->mem_total_bytes, "kiln_version", e->version, "git_commit", e->commit,
                            "model", e->model, "dtype", e->dtype, "date", e->date);
    json_t *cfg = json_pack("{s:i,s:i,s:f}", "runs", r->runs, "warmup", r->warmup, "max_range", r->limits.max_range);
    if (r->limits.has_tps)
        json_object_set_new(cfg, "target_tps", json_pack("[f,f]", r->limits.tps_lo, r->limits.tps_hi));
    json_t *root = json_pack("{s:s,s:o,s:o}", "kiln_version", e->version, "env", env, "config", cfg);
    if (r->pp_tokens > 0) {
        json_object_set_new(root, "pp_tokens", json_integer(r->pp_tokens));
        json_object_set_new(root, "tg_tokens", json_integer(r->tg_tokens));
        json_object_set_new(root, "depth", json_integer(r->depth));
        json_object_set_new(root, "pp_tok_s", json_real(r->pp_tok_s));
        json_object_set_new(root, "tg_tok_s", json_real(r->tg_tok_s));
    }
    json_t *scs = json_array();
    for (int i = 0; i < r->n_sc; i++) json_array_append_new(scs, scenario_json(&r->sc[i]));
    json_object_set_new(root, "scenarios", scs);
    int rc = json_dumpf(root, f, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fputc('\n', f);
    json_decref(root);
    if (rc || ferror(f)) return kiln_err_set(err, "writing the JSON report failed");
    return 0;
}
