/* bench.c — `kiln bench`: repeated, measured generation over a cartesian product of scenarios.
 *
 *   kiln bench --model DIR [--prompt TEXT | --prompt-tokens N] [--chat] --runs 5 --warmup 1
 *              --max-new-tokens 256,128,64 [--min-new-tokens 32 | --ignore-eos] --sample off,on --batch 1,2
 *              [--threads N] [--dtype D] [--quant Q] [--quant-cache] [--seed S] [--temperature T]
 *              [--max-range 0.10] [--target-tps LO:HI]
 *              [--json [FILE]] [--csv FILE] [--markdown] [--html FILE]
 *   kiln bench --model DIR --prompt-tokens 512 --gen-tokens 128 [--json]     (llama-bench style: pp512, tg128)
 *   kiln bench --model DIR --prompt-tokens 512 --gen-tokens 128 --depth 4096  (llama-bench -d: after 4096 cached)
 *   kiln bench compare A.json B.json
 *   kiln bench serve ...                                                     (cli/bench_serve.c)
 *
 * The model is loaded once; every run starts fresh sequences in one context. Warmup runs are not counted.
 * `--json` with no file (or `--json -`) writes JSON to stdout and moves the human table to stderr, so
 * scripts can pipe it. "sample on" uses seed S + run index (S = 1234 by default) with the model's
 * generation_config.json sampling settings: runs are reproducible.
 * Generation stops at EOS unless --min-new-tokens says otherwise; `--ignore-eos` (or min == max) makes
 * every run generate exactly max_new_tokens. With --batch B, B copies of the prompt decode together; a
 * run's gen_tokens is per sequence (the longest) and decode tok/s counts every sequence's tokens.
 * --depth N (llama-bench's -d): N synthetic tokens are prefilled once, untimed, into a context the runs
 * share; every run (and tg) then starts after them (kiln_generate_in reuses the N cached tokens), so pp
 * and tg are measured with N tokens already in the cache. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define MAXV 16

/* A comma-separated list flag's values (--max-new-tokens 256,128,64): integers in [lo, hi], or with
 * names, each value the index of its name (--sample off,on). */
typedef struct int_list {
    int v[MAXV], n;
    long lo, hi;
    const char *const *names; /* NULL-terminated, or NULL for integers */
} int_list;

static const char *const off_on[] = {"off", "on", NULL};

typedef struct opts {
    const char *model, *prompt, *json, *csv, *html;
    kiln_model_opts mo;
    cli_dist dist; /* --tp / --pp: rank 0 measures and prints, the others follow its steps */
    int prompt_tokens, gen_tokens, runs, warmup, min_new, threads, depth;
    bool chat, ignore_eos, markdown;
    int_list max_new, sample, batch; /* sample: 0 off, 1 on */
    uint64_t seed;
    double temperature;
    kiln_dtype kv_type;
    kiln_bench_limits lim;
} opts;

static int list_value(const int_list *l, const char *flag, const char *t, const char *all) {
    if (!l->names) return (int)cli_long(flag, t, l->lo, l->hi);
    for (int k = 0; l->names[k]; k++)
        if (!strcmp(t, l->names[k])) return k;
    cli_fail(2, "%s: expected a list of %s,%s, got '%s'", flag, l->names[0], l->names[1], all);
}

static void list_flag(void *list, const char *flag, const char *s) {
    int_list *l = list;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", s);
    l->n = 0;
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (l->n == (l->names ? 2 : MAXV)) cli_fail(2, "%s: at most %d values", flag, l->names ? 2 : MAXV);
        l->v[l->n++] = list_value(l, flag, t, s);
    }
    if (!l->n) cli_fail(2, "%s: empty list", flag);
}

static void target_tps_flag(void *limits, const char *flag, const char *v) {
    kiln_bench_limits *lim = limits;
    char *colon = strchr(v, ':');
    if (!colon) cli_fail(2, "%s: expected LO:HI, got '%s'", flag, v);
    char lo[64];
    snprintf(lo, sizeof lo, "%.*s", (int)(colon - v), v);
    lim->tps_lo = cli_double(flag, lo, 0, 1e12);
    lim->tps_hi = cli_double(flag, colon + 1, lim->tps_lo, 1e12);
    lim->has_tps = 1;
}

static void parse(int argc, char **argv, opts *o) {
    memset(o, 0, sizeof *o);
    o->runs = 5, o->warmup = 1, o->min_new = -1, o->seed = 1234, o->temperature = 0;
    o->max_new = (int_list){{128}, 1, 1, 1 << 20, NULL};
    o->sample = (int_list){{0}, 1, 0, 1, off_on};
    o->batch = (int_list){{1}, 1, 1, 256, NULL};
    o->lim.max_range = 0.10;
    o->kv_type = KILN_KV_TYPE_DEFAULT;
    kiln_model_opts_default(&o->mo);
    cli_weight_callbacks(&o->mo);
    o->dist = (cli_dist)CLI_DIST_DEFAULT;
    const cli_flag flags[] = {
        CLI_MODEL_FLAG(&o->model),
        {"--prompt", "-p", "TEXT", "the prompt (default: --prompt-tokens of synthetic ids)", CLI_STR_TO(&o->prompt)},
        {"--prompt-tokens", NULL, "N", "a synthetic prompt of N ids (default 32; 512 with --gen-tokens)",
         CLI_INT_TO(&o->prompt_tokens, 1, 1 << 20)},
        {"--chat", NULL, NULL, "send --prompt through the chat template as one user turn", CLI_SWITCH_TO(&o->chat)},
        {"--runs", NULL, "N", "measured runs per scenario (default 5)", CLI_INT_TO(&o->runs, 1, 100000)},
        {"--warmup", NULL, "N", "unmeasured runs first (default 1)", CLI_INT_TO(&o->warmup, 0, 1000)},
        {"--max-new-tokens", "-n", "N,N,...", "scenarios: tokens to generate at most (default 128)",
         CLI_FN_TO(list_flag, &o->max_new)},
        {"--min-new-tokens", NULL, "N", "EOS is ignored before this many tokens", CLI_INT_TO(&o->min_new, 0, 1 << 20)},
        {"--ignore-eos", NULL, NULL, "every run generates exactly max-new-tokens", CLI_SWITCH_TO(&o->ignore_eos)},
        {"--sample", NULL, "off,on", "scenarios: greedy and/or sampled with the model's settings",
         CLI_FN_TO(list_flag, &o->sample)},
        {"--batch", NULL, "N,N,...", "scenarios: copies of the prompt decoded together (default 1)",
         CLI_FN_TO(list_flag, &o->batch)},
        {"--gen-tokens", NULL, "N", "llama-bench style pp/tg: exactly N generated tokens per run",
         CLI_INT_TO(&o->gen_tokens, 1, 1 << 20)},
        {"--depth", "-d", "N", "measure after N tokens already in the KV cache (llama-bench -d; batch 1)",
         CLI_INT_TO(&o->depth, 0, 1 << 24)},
        CLI_THREADS_FLAG(&o->threads, 1),
        CLI_WEIGHT_FLAGS(&o->mo),
        CLI_KV_TYPE_FLAG(&o->kv_type),
        CLI_DIST_FLAGS(&o->dist),
        CLI_DIST_MICRO_FLAG(&o->dist),
        {"--seed", "-s", "S", "sampled runs use seed S + run index (default 1234)", CLI_U64_TO(&o->seed, 0, 0x1p62)},
        {"--temperature", NULL, "T", "sampling temperature (default: the model's)", CLI_DOUBLE_TO(&o->temperature, 1e-6, 100)},
        {"--max-range", NULL, "X", "PASS needs (max - min) / mean of the run times <= X (default 0.10)",
         CLI_DOUBLE_TO(&o->lim.max_range, 0, 1e9)},
        {"--target-tps", NULL, "LO:HI", "PASS also needs decode tok/s within [LO, HI]", CLI_FN_TO(target_tps_flag, &o->lim)},
        {"--json", NULL, "FILE", "the report as JSON (no FILE or -: stdout, the table goes to stderr)",
         CLI_STR_TO(&o->json), .optional_value = true},
        {"--csv", NULL, "FILE", "one CSV row per run", CLI_STR_TO(&o->csv)},
        {"--markdown", NULL, NULL, "also a Markdown table of the scenarios", CLI_SWITCH_TO(&o->markdown)},
        {"--html", NULL, "FILE", "an HTML report with charts", CLI_STR_TO(&o->html)},
        {0},
    };
    const cli_spec spec = {
        .name = "bench", .usage = "--model DIR [flags]",
        .about = "Repeated, measured generation over every combination of --max-new-tokens x --sample x --batch;\n"
        "reports latency, throughput and memory per scenario with a stability verdict.",
        .flags = flags,
        .subcommands = "  serve     load-test a running OpenAI-compatible server (kiln bench serve --url URL)\n"
        "  compare   compare two --json reports (kiln bench compare A.json B.json)\n"};
    cli_parse(argc, argv, &spec);
    if (!o->model) cli_fail(2, "--model is required");
    if (o->prompt && o->prompt_tokens) cli_fail(2, "--prompt and --prompt-tokens are exclusive");
    if (o->chat && !o->prompt) cli_fail(2, "--chat needs --prompt");
    if (o->gen_tokens) { /* llama-bench: exactly N generated tokens per run */
        o->max_new.v[0] = o->gen_tokens, o->max_new.n = 1, o->ignore_eos = 1;
        if (!o->prompt && !o->prompt_tokens) o->prompt_tokens = 512;
    }
    if (!o->prompt && !o->prompt_tokens) o->prompt_tokens = 32;
    for (int i = 0; o->depth && i < o->batch.n; i++)
        if (o->batch.v[i] != 1) cli_fail(2, "--depth needs --batch 1 (the cached tokens belong to one sequence)");
}

/* ---- one measured generation ------------------------------------------------------------------- */

typedef struct engine {
    kiln_model *m;
    kiln_tokenizer *t;
    kiln_gen_params base; /* generation_config.json of the model, EOS ids included */
    int32_t *prompt;
    int n_prompt;
    /* --depth: the context the runs share, its sequence holding `depth` tokens, and those ids followed by
     * the prompt (what a run at depth asks kiln_generate_in for) */
    int depth, seq;
    kiln_ctx *ctx;
    int32_t *full;
} engine;

/* One generation of B copies of prompt[0..len) (a prefix of e->prompt); at depth, after the cached tokens. */
static void generate(engine *e, const kiln_gen_params *p, int B, size_t len, kiln_gen_callback cb, void *user,
                     kiln_gen_output *out) {
    kiln_err err;
    int rc;
    if (e->ctx) {
        rc = kiln_generate_in(e->ctx, e->seq, (size_t)e->depth, e->t, p, e->full, (size_t)e->depth + len, cb, user, out, &err);
    } else {
        const int32_t *prompts[256];
        size_t lens[256];
        for (int b = 0; b < B; b++) prompts[b] = e->prompt, lens[b] = len;
        rc = kiln_generate(e->m, e->t, p, B, prompts, lens, cb, user, out, &err);
    }
    if (rc) cli_fail(1, "%s", err.msg);
}

/* Per-token callback: callbacks come in prompt order within a step, so a new step starts whenever the
 * index does not increase. The time between step starts is the inter-token latency. */
typedef struct timing {
    double t0, first, prev;
    int last_index;
    kiln_bench_run *r;
} timing;

static int on_token(void *user, int index, const kiln_gen_step *step) {
    (void)step;
    timing *tm = user;
    if (index > tm->last_index) { tm->last_index = index; return 0; }
    double now = kiln_now();
    if (tm->first == 0) tm->first = now;
    else tm->r->itl_s[tm->r->n_itl++] = now - tm->prev;
    tm->prev = now;
    tm->last_index = index;
    return 0;
}

/* llama-bench's tg: N tokens generated from (almost) no context, timed apart from the prompt, so the
 * figure is the weights' streaming speed and compares with its tg128. The run's own decode rate
 * (after the full prompt) stays in decode_tok_s. */
static double tg_once(engine *e, const kiln_gen_params *p) {
    kiln_gen_output out;
    double t0 = kiln_now();
    generate(e, p, 1, 1, NULL, NULL, &out);
    double dt = kiln_now() - t0;
    int n = out.stats.gen_tokens;
    kiln_gen_output_free(&out);
    return n > 0 ? n / dt : 0;
}

static void run_once(engine *e, const opts *o, const kiln_bench_scenario *sc, int run_idx, kiln_bench_run *r) {
    int B = sc->batch, max_new = sc->max_new_tokens;
    kiln_gen_params p = e->base;
    p.max_new_tokens = max_new;
    p.min_new_tokens = o->ignore_eos ? max_new : (sc->min_new_tokens > max_new ? max_new : sc->min_new_tokens);
    p.do_sample = sc->sample;
    p.seed = o->seed + (uint64_t)run_idx;
    if (o->temperature > 0) p.temperature = (float)o->temperature;
    kiln_gen_output out[256];
    memset(r, 0, sizeof *r);
    r->itl_s = malloc((size_t)max_new * sizeof(double));
    if (!r->itl_s) cli_fail(1, "out of memory");
    timing tm = {.t0 = kiln_now(), .last_index = -1, .r = r};
    tm.last_index = 1 << 30; /* the first callback starts a step */
    generate(e, &p, B, (size_t)e->n_prompt, on_token, &tm, out);
    double t_end = kiln_now();
    r->total_s = t_end - tm.t0;
    r->ttft_s = tm.first - tm.t0;
    r->prefill_tps = (double)B * e->n_prompt / r->ttft_s;
    long decoded = 0;
    for (int b = 0; b < B; b++) {
        if (out[b].stats.gen_tokens > r->gen_tokens) r->gen_tokens = out[b].stats.gen_tokens;
        decoded += out[b].stats.gen_tokens > 0 ? out[b].stats.gen_tokens - 1 : 0;
        kiln_gen_output_free(&out[b]);
    }
    r->decode_tps = decoded && tm.prev > tm.first ? (double)decoded / (tm.prev - tm.first) : 0;
    r->prompt_tokens = e->n_prompt;
    if (o->gen_tokens) r->tg_tps = tg_once(e, &p);
    r->rss_bytes = kiln_rss_bytes();
    r->peak_rss_bytes = kiln_peak_rss_bytes();
}

/* ---- driver --------------------------------------------------------------------------------------- */

static void progress(int si, int ns, int ri, int nr, double t_start, long done, long total) {
    if (!isatty(STDERR_FILENO)) return;
    double el = kiln_now() - t_start, eta = done ? el / done * (total - done) : 0;
    int w = 30, fill = (int)(w * done / (total ? total : 1));
    fprintf(stderr, "\r[%.*s%*s] scenario %d/%d run %d/%d  ETA %.0fs ", fill, "##############################",
            w - fill, "", si, ns, ri, nr, eta);
    if (done == total) fprintf(stderr, "\r%*s\r", 80, "");
    fflush(stderr);
}

static FILE *open_out(const char *path, const char *what) {
    FILE *f = fopen(path, "w");
    if (!f) cli_fail(1, "%s: cannot write '%s'", what, path);
    return f;
}

static void close_out(FILE *f, const char *path) {
    if (fclose(f) != 0) cli_fail(1, "write error on '%s'", path);
}

static int cmd_bench_compare(int argc, char **argv) {
    const char *files[2];
    int n_files = 0;
    const cli_flag flags[] = {{0}};
    const cli_spec spec = {.name = "bench compare", .usage = "A.json B.json",
                           .about = "Compares two `kiln bench --json` reports: one line per scenario in both, with the ratio of\n"
                           "median run times (> 1: B is faster) and whether it is outside the noise.",
                           .flags = flags, .pos = files, .max_pos = 2, .n_pos = &n_files};
    cli_parse(argc, argv, &spec);
    if (n_files != 2) cli_fail(2, "usage: kiln bench compare A.json B.json");
    kiln_bench_cmp *c;
    int n;
    kiln_err err;
    if (kiln_bench_compare_files(files[0], files[1], &c, &n, &err)) cli_fail(1, "%s", err.msg);
    for (int i = 0; i < n; i++) printf("%-28s %s\n", c[i].name, c[i].text);
    free(c);
    return fflush(stdout) ? 1 : 0;
}

/* --depth: the shared context, and its `depth` synthetic tokens (other ids than the prompt's) prefilled once
 * in chunks of 512 (a 16k-token batch would need gigabytes of activations), untimed. */
static void prefill_depth(engine *e, const opts *o, int max_new) {
    const int V = kiln_model_config(e->m)->vocab_size, chunk = 512;
    kiln_ctx_opts co;
    kiln_ctx_opts_default(&co);
    co.n_ctx = o->depth + e->n_prompt + max_new;
    co.kv_type = o->kv_type;
    kiln_err err;
    e->depth = o->depth;
    e->full = malloc((size_t)(o->depth + e->n_prompt) * sizeof *e->full);
    float *logits = malloc((size_t)V * sizeof *logits);
    if (!e->full || !logits) cli_fail(1, "out of memory");
    for (int i = 0; i < o->depth; i++) e->full[i] = (int32_t)((3 + (long)i * 104729) % V);
    memcpy(e->full + o->depth, e->prompt, (size_t)e->n_prompt * sizeof *e->full);
    if (!(e->ctx = kiln_ctx_new(e->m, &co, &err)) || (e->seq = kiln_seq_new(e->ctx, &err)) < 0) cli_fail(1, "%s", err.msg);
    for (int i = 0; i < o->depth; i += chunk) {
        int n = o->depth - i < chunk ? o->depth - i : chunk;
        kiln_batch b = {.n_seqs = 1, .seq = &e->seq, .n_tokens = &n, .tokens = e->full + i, .logits = logits};
        if (kiln_forward(e->ctx, &b, &err)) cli_fail(1, "--depth %d: %s", o->depth, err.msg);
    }
    free(logits);
}

static void load(engine *e, const opts *o, int max_new) {
    kiln_err err;
    kiln_model_opts mo = o->mo;
    if (o->threads) mo.threads = o->threads;
    const char *dir = cli_model_dir(o->model);
    cli_dist_start(&o->dist, &mo);
    cli_dist_lead(&o->dist);
    if (!(e->m = kiln_model_open(dir, &mo, &err))) cli_fail(1, "%s", err.msg);
    cli_dist_follow(e->m);
    const kiln_config *cfg = kiln_model_config(e->m);
    if (!(e->t = kiln_tokenizer_open(dir, &err))) cli_fail(1, "%s", err.msg);
    kiln_gen_params_default(&e->base);
    if (kiln_gen_params_load(&e->base, dir, &err)) cli_fail(1, "%s", err.msg);
    e->base.kv_type = o->kv_type;
    if (o->prompt) {
        size_t n, len = strlen(o->prompt);
        char *text = (char *)o->prompt;
        if (o->chat) { /* one user turn through the model's chat template, as apply_chat_template */
            json_t *v = json_pack("{s:[{s:s,s:s}],s:b}", "messages", "role", "user", "content", o->prompt,
                                  "add_generation_prompt", 1);
            char *vars = json_dumps(v, 0);
            json_decref(v);
            if (!vars) cli_fail(1, "out of memory");
            if (!(text = kiln_chat_render(e->t, vars, &len, &err))) cli_fail(1, "%s", err.msg);
            free(vars);
        }
        /* a rendered template already carries its special tokens */
        if (kiln_encode(e->t, text, len, !o->chat, &e->prompt, &n, &err)) cli_fail(1, "%s", err.msg);
        if (text != o->prompt) free(text);
        e->n_prompt = (int)n;
        if (!n) cli_fail(2, "--prompt encodes to no tokens");
    } else { /* synthetic prompt: deterministic ids spread over the vocabulary, no special meaning */
        e->n_prompt = o->prompt_tokens;
        e->prompt = malloc((size_t)e->n_prompt * sizeof *e->prompt);
        if (!e->prompt) cli_fail(1, "out of memory");
        for (int i = 0; i < e->n_prompt; i++) e->prompt[i] = (int32_t)((1 + (long)i * 7919) % cfg->vocab_size);
    }
    if ((long)o->depth + e->n_prompt + max_new > cfg->max_position_embeddings)
        cli_fail(1, "%d cached + %d prompt + %d new tokens exceed the model's %d positions", o->depth, e->n_prompt,
                 max_new, cfg->max_position_embeddings);
    if (o->depth) prefill_depth(e, o, max_new);
}
int cmd_bench(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "serve")) return cmd_bench_serve(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "compare")) return cmd_bench_compare(argc - 1, argv + 1);
    opts o;
    parse(argc, argv, &o);
    int max_new = 0;
    for (int i = 0; i < o.max_new.n; i++) max_new = o.max_new.v[i] > max_new ? o.max_new.v[i] : max_new;
    engine e = {0};
    load(&e, &o, max_new);

    kiln_bench_report rep;
    memset(&rep, 0, sizeof rep);
    const char *fmt = cli_weight_format(&o.mo);
    kiln_bench_env_collect(&rep.env, o.model, fmt ? fmt : kiln_dtype_name(kiln_model_config(e.m)->torch_dtype),
                      kiln_model_threads(e.m));
    rep.limits = o.lim, rep.runs = o.runs, rep.warmup = o.warmup;
    rep.n_sc = o.max_new.n * o.sample.n * o.batch.n;
    rep.sc = calloc((size_t)rep.n_sc, sizeof *rep.sc);
    if (!rep.sc) cli_fail(1, "out of memory");
    int k = 0;
    for (int a = 0; a < o.max_new.n; a++)
        for (int s = 0; s < o.sample.n; s++)
            for (int b = 0; b < o.batch.n; b++, k++) {
                kiln_bench_scenario *sc = &rep.sc[k];
                sc->max_new_tokens = o.max_new.v[a], sc->sample = o.sample.v[s], sc->batch = o.batch.v[b];
                sc->min_new_tokens = o.ignore_eos ? o.max_new.v[a] : (o.min_new < 0 ? 0 : o.min_new);
                sc->prompt_tokens = e.n_prompt;
                char at[32] = ""; /* llama-bench's "pp512 @ d4096" */
                if (o.depth) snprintf(at, sizeof at, "@d%d", o.depth);
                if (o.gen_tokens)
                    snprintf(sc->name, sizeof sc->name, "pp%d+tg%d%s-%s-b%d", e.n_prompt, o.gen_tokens, at,
                             sc->sample ? "on" : "off", sc->batch);
                else
                    snprintf(sc->name, sizeof sc->name, "max%d%s-sample_%s-b%d", sc->max_new_tokens, at,
                             sc->sample ? "on" : "off", sc->batch);
                sc->runs = calloc((size_t)o.runs, sizeof *sc->runs);
                if (!sc->runs) cli_fail(1, "out of memory");
            }

    FILE *human = (o.json && !strcmp(o.json, "-")) ? stderr : stdout;
    long total = (long)rep.n_sc * (o.runs + o.warmup), done = 0;
    double t_start = kiln_now();
    fprintf(human, "%-28s %4s %9s %6s %9s %9s %9s %9s\n", "scenario", "run", "seconds", "tokens", "tok/s",
            "ttft ms", "rss MiB", "peak MiB");
    for (int s = 0; s < rep.n_sc; s++) {
        kiln_bench_scenario *sc = &rep.sc[s];
        for (int j = 0; j < o.warmup + o.runs; j++) {
            progress(s + 1, rep.n_sc, j + 1, o.warmup + o.runs, t_start, done, total);
            kiln_bench_run r;
            int measured = j >= o.warmup;
            run_once(&e, &o, sc, measured ? j - o.warmup : j, &r);
            done++;
            if (!measured) { free(r.itl_s); continue; }
            sc->runs[sc->n_runs++] = r;
            progress(s + 1, rep.n_sc, j + 1, o.warmup + o.runs, t_start, done, total);
            fprintf(human, "%-28s %4d %9.4f %6d %9.2f %9.2f %9.1f %9.1f\n", sc->name, sc->n_runs, r.total_s,
                    r.gen_tokens, r.decode_tps, r.ttft_s * 1e3, r.rss_bytes / 1048576.0, r.peak_rss_bytes / 1048576.0);
            fflush(human);
        }
        kiln_bench_scenario_finish(sc, &o.lim);
    }
    if (o.gen_tokens) {
        /* pp/tg: medians over every measured run of every scenario (one scenario unless lists were given). */
        int n = 0;
        for (int s = 0; s < rep.n_sc; s++) n += rep.sc[s].n_runs;
        double *pp = malloc((size_t)n * sizeof *pp), *tg = malloc((size_t)n * sizeof *tg);
        if (!pp || !tg) cli_fail(1, "out of memory");
        n = 0;
        for (int s = 0; s < rep.n_sc; s++)
            for (int i = 0; i < rep.sc[s].n_runs; i++, n++) pp[n] = rep.sc[s].runs[i].prefill_tps, tg[n] = rep.sc[s].runs[i].tg_tps;
        kiln_bench_stats st;
        kiln_bench_stats_compute(pp, n, &st);
        rep.pp_tok_s = st.median;
        kiln_bench_stats_compute(tg, n, &st);
        rep.tg_tok_s = st.median;
        rep.pp_tokens = e.n_prompt, rep.tg_tokens = o.gen_tokens, rep.depth = o.depth;
        free(pp);
        free(tg);
    }
    kiln_bench_write_table(&rep, human);
    if (o.markdown) { fputc('\n', human); kiln_bench_write_markdown(&rep, human); }
    kiln_err err;
    if (o.json) {
        FILE *f = strcmp(o.json, "-") ? open_out(o.json, "--json") : stdout;
        if (kiln_bench_write_json(&rep, f, &err)) cli_fail(1, "%s", err.msg);
        if (f != stdout) close_out(f, o.json);
    }
    if (o.csv) { FILE *f = open_out(o.csv, "--csv"); kiln_bench_write_csv(&rep, f); close_out(f, o.csv); }
    if (o.html) { FILE *f = open_out(o.html, "--html"); kiln_bench_write_html(&rep, f); close_out(f, o.html); }
    int all_pass = 1;
    for (int s = 0; s < rep.n_sc; s++) {
        all_pass &= rep.sc[s].pass;
        kiln_bench_scenario_free(&rep.sc[s]);
    }
    free(rep.sc);
    free(e.prompt);
    free(e.full);
    kiln_ctx_free(e.ctx);
    kiln_tokenizer_free(e.t);
    kiln_model_free(e.m);
    if (fflush(stdout)) cli_fail(1, "write error on stdout");
    (void)all_pass; /* the verdict is a report, not an exit status: a noisy machine is not an error */
    return 0;
}
