/* bench_serve.c — `kiln bench serve`: load an OpenAI-compatible server the way vLLM's serving benchmark
 * does and report request throughput, output tokens/s, and TTFT / TPOT / ITL (mean, median, p99).
 *
 * Each request streams POST /v1/completions with a prompt of --prompt-tokens token ids and asks for
 * exactly --gen-tokens (ignore_eos), so every server does the same work. For each --concurrency level,
 * that many client threads share --requests requests; with --rate, request i may not start before its
 * Poisson arrival time (as vLLM's --request-rate). Works against kiln serve and llama.cpp's llama-server. */
#include <curl/curl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

typedef struct result {
    bool ok;
    int out_tokens;
    double ttft, e2e; /* seconds */
    double *itl;      /* gaps between content chunks */
    int n_itl, cap_itl;
    char err[160];
} result;

typedef struct run_cfg {
    const char *url, *model, *api_key;
    int prompt_tokens, gen_tokens, n_requests, concurrency;
    double rate;
    double *arrival; /* [n_requests] seconds after start */
    double t0;
    atomic_int next;
    result *res;
} run_cfg;

/* ---- one streamed request ---- */

typedef struct stream {
    result *res;
    double t_start, t_last;
    char line[65536];
    size_t n_line;
    bool first;
} stream;

static void on_event(stream *s, const char *data) {
    if (!strcmp(data, "[DONE]")) return;
    json_t *o = json_loads(data, 0, NULL);
    if (!o) return;
    json_t *usage = json_object_get(o, "usage");
    if (json_is_object(usage) && json_is_integer(json_object_get(usage, "completion_tokens")))
        s->res->out_tokens = (int)json_integer_value(json_object_get(usage, "completion_tokens"));
    json_t *ch = json_array_get(json_object_get(o, "choices"), 0);
    json_t *text = json_object_get(ch, "text");
    if (!text) text = json_object_get(json_object_get(ch, "delta"), "content");
    if (json_is_string(text) && json_string_length(text) > 0) {
        double now = kiln_now();
        if (s->first) {
            s->res->ttft = now - s->t_start;
            s->first = false;
        } else if (s->res->n_itl < s->res->cap_itl) {
            s->res->itl[s->res->n_itl++] = now - s->t_last;
        }
        s->t_last = now;
    }
    json_decref(o);
}

static size_t on_data(char *p, size_t size, size_t n, void *arg) {
    stream *s = arg;
    size_t len = size * n;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == '\n') {
            s->line[s->n_line] = 0;
            if (!strncmp(s->line, "data: ", 6)) on_event(s, s->line + 6);
            s->n_line = 0;
        } else if (s->n_line + 1 < sizeof s->line) {
            s->line[s->n_line++] = p[i];
        }
    }
    return len;
}

static void one_request(run_cfg *c, result *res, CURL *curl, unsigned seed) {
    size_t cap = (size_t)c->prompt_tokens * 6 + 512;
    char *body = malloc(cap);
    size_t n = (size_t)snprintf(body, cap, "{\"model\":\"%s\",\"prompt\":[", c->model);
    /* Token ids in [10, 250): valid in any vocabulary of 256 or more, different for every request so a
     * prefix cache cannot make the benchmark easier than real traffic. */
    for (int i = 0; i < c->prompt_tokens; i++)
        n += (size_t)snprintf(body + n, cap - n, "%s%u", i ? "," : "", 10 + (seed = seed * 1103515245u + 12345u) % 240);
    snprintf(body + n, cap - n,
             "],\"max_tokens\":%d,\"min_tokens\":%d,\"ignore_eos\":true,\"temperature\":0,\"stream\":true,"
             "\"stream_options\":{\"include_usage\":true}}",
             c->gen_tokens, c->gen_tokens);
    char url[1024];
    snprintf(url, sizeof url, "%s/v1/completions", c->url);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
    char auth[512];
    if (c->api_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->api_key);
        h = curl_slist_append(h, auth);
    }
    stream *s = calloc(1, sizeof *s);
    res->cap_itl = c->gen_tokens + 8;
    res->itl = calloc((size_t)res->cap_itl, sizeof *res->itl);
    s->res = res;
    s->first = true;
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, s);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 600L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    s->t_start = kiln_now();
    CURLcode rc = curl_easy_perform(curl);
    res->e2e = kiln_now() - s->t_start;
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK) snprintf(res->err, sizeof res->err, "%s", curl_easy_strerror(rc));
    else if (status != 200) snprintf(res->err, sizeof res->err, "HTTP %ld", status);
    else if (s->first && res->out_tokens == 0) snprintf(res->err, sizeof res->err, "no tokens received");
    else res->ok = true;
    if (res->ok && s->first) res->ttft = res->e2e; /* tokens arrived, but no text until the end */
    if (res->ok && res->out_tokens == 0) res->out_tokens = res->n_itl + 1; /* server sent no usage */
    curl_slist_free_all(h);
    free(body);
    free(s);
}

static void *client(void *arg) {
    run_cfg *c = arg;
    CURL *curl = curl_easy_init();
    for (;;) {
        int i = atomic_fetch_add(&c->next, 1);
        if (i >= c->n_requests) break;
        double wait = c->t0 + c->arrival[i] - kiln_now();
        if (wait > 0) {
            struct timespec ts = {(time_t)wait, (long)((wait - floor(wait)) * 1e9)};
            nanosleep(&ts, NULL);
        }
        one_request(c, &c->res[i], curl, 0x9e3779b9u * (unsigned)(i + 1));
    }
    curl_easy_cleanup(curl);
    return NULL;
}

/* ---- statistics ---- */

typedef struct stats {
    double mean, median, p99;
} stats;

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static stats summarise(double *v, int n) {
    stats s = {0};
    if (n == 0) return s;
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    double sum = 0;
    for (int i = 0; i < n; i++) sum += v[i];
    s.mean = sum / n;
    s.median = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    double pos = 0.99 * (n - 1); /* linear interpolation, as numpy.percentile */
    int lo = (int)pos;
    s.p99 = lo + 1 < n ? v[lo] + (pos - lo) * (v[lo + 1] - v[lo]) : v[lo];
    return s;
}

static char *fetch_model(const char *url, const char *api_key) {
    CURL *curl = curl_easy_init();
    char u[1024], auth[512];
    snprintf(u, sizeof u, "%s/v1/models", url);
    FILE *mem;
    char *buf = NULL;
    size_t len = 0;
    mem = open_memstream(&buf, &len);
    struct curl_slist *h = NULL;
    if (api_key) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", api_key);
        h = curl_slist_append(h, auth);
    }
    curl_easy_setopt(curl, CURLOPT_URL, u);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, mem);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
    CURLcode rc = curl_easy_perform(curl);
    fclose(mem);
    curl_slist_free_all(h);
    curl_easy_cleanup(curl);
    char *name = NULL;
    json_t *o = rc == CURLE_OK ? json_loads(buf, 0, NULL) : NULL;
    json_t *id = json_object_get(json_array_get(json_object_get(o, "data"), 0), "id");
    if (json_is_string(id)) name = strdup(json_string_value(id));
    json_decref(o);
    free(buf);
    if (!name) cli_fail(1, "cannot list models at %s/v1/models (%s)", url, rc == CURLE_OK ? "bad answer" : curl_easy_strerror(rc));
    return name;
}

int cmd_bench_serve(int argc, char **argv) {
    const char *url = NULL, *conc = "1,4,16", *model = NULL, *api_key = NULL;
    int n_req = 32, p_tok = 128, g_tok = 64;
    double rate = 0;
    bool json_out = false;
    const cli_flag flags[] = {
        {"--url", NULL, "URL", "the server (e.g. http://127.0.0.1:8080); required", CLI_STR_TO(&url)},
        {"--concurrency", NULL, "1,4,16", "levels of concurrent clients, one run each", CLI_STR_TO(&conc)},
        {"--requests", NULL, "N", "requests per level (default 32)", CLI_INT_TO(&n_req, 1, 1000000)},
        {"--rate", NULL, "R", "requests per second, Poisson arrivals (0: as fast as the clients go)",
         CLI_DOUBLE_TO(&rate, 0, 1e6)},
        {"--prompt-tokens", NULL, "N", "prompt length (default 128)", CLI_INT_TO(&p_tok, 1, 1 << 20)},
        {"--gen-tokens", NULL, "N", "tokens generated per request (default 64)", CLI_INT_TO(&g_tok, 1, 1 << 20)},
        {"--model", "-m", "NAME", "model name sent in requests (default: the first of /v1/models)", CLI_STR_TO(&model)},
        {"--api-key", NULL, "KEY", "bearer token for the server", CLI_STR_TO(&api_key)},
        {"--json", NULL, NULL, "the report as JSON on stdout", CLI_SWITCH_TO(&json_out)},
        {0},
    };
    const cli_spec spec = {.name = "bench serve", .usage = "--url URL [flags]",
                           .about = "Load-tests a running OpenAI-compatible server: request rate, output tokens/s, TTFT, TPOT and\n"
                           "inter-token latency per concurrency level.",
                           .flags = flags};
    cli_parse(argc, argv, &spec);
    if (!url) cli_fail(2, "--url URL is required (e.g. http://127.0.0.1:8080)");
    int32_t *levels;
    size_t n_levels;
    kiln_err err = {{0}};
    if (cli_parse_ids(conc, &levels, &n_levels, &err)) cli_fail(2, "--concurrency: %s", err.msg);
    for (size_t l = 0; l < n_levels; l++)
        if (levels[l] < 1 || levels[l] > 4096) cli_fail(2, "--concurrency: levels must be in [1, 4096]");
    curl_global_init(CURL_GLOBAL_DEFAULT);
    char *name = model ? strdup(model) : fetch_model(url, api_key);

    json_t *report = json_pack("{s:s, s:s, s:i, s:i, s:i, s:f, s:[]}", "url", url, "model", name, "requests", n_req,
                               "prompt_tokens", p_tok, "gen_tokens", g_tok, "rate", rate, "runs");
    if (!json_out)
        printf("%-5s %6s %6s %8s %9s | %-25s | %-25s | %-25s\n", "conc", "ok", "errors", "req/s", "out tok/s",
               "TTFT ms mean/med/p99", "TPOT ms mean/med/p99", "ITL ms mean/med/p99");
    for (size_t l = 0; l < n_levels; l++) {
        run_cfg c = {.url = url, .model = name, .api_key = api_key, .prompt_tokens = p_tok, .gen_tokens = g_tok,
                     .n_requests = n_req, .concurrency = levels[l], .rate = rate};
        c.arrival = calloc((size_t)n_req, sizeof *c.arrival);
        c.res = calloc((size_t)n_req, sizeof *c.res);
        unsigned rs = 12345;
        for (int i = 1; i < n_req && rate > 0; i++) { /* Poisson process: exponential gaps */
            rs = rs * 1103515245u + 12345u;
            double u = ((rs >> 8) + 1.0) / 16777217.0;
            c.arrival[i] = c.arrival[i - 1] - log(u) / rate;
        }
        pthread_t th[levels[l]];
        c.t0 = kiln_now();
        for (int t = 0; t < levels[l]; t++) pthread_create(&th[t], NULL, client, &c);
        for (int t = 0; t < levels[l]; t++) pthread_join(th[t], NULL);
        double dur = kiln_now() - c.t0;

        int ok = 0, n_itl = 0;
        long out = 0;
        for (int i = 0; i < n_req; i++) n_itl += c.res[i].n_itl;
        double *ttft = calloc((size_t)n_req + 1, sizeof(double)), *tpot = calloc((size_t)n_req + 1, sizeof(double));
        double *itl = calloc((size_t)n_itl + 1, sizeof(double));
        int n_tpot = 0, k = 0;
        const char *first_err = NULL;
        for (int i = 0; i < n_req; i++) {
            result *r = &c.res[i];
            if (!r->ok) {
                if (!first_err) first_err = r->err;
                continue;
            }
            ttft[ok++] = r->ttft;
            out += r->out_tokens;
            if (r->out_tokens > 1) tpot[n_tpot++] = (r->e2e - r->ttft) / (r->out_tokens - 1);
            for (int j = 0; j < r->n_itl; j++) itl[k++] = r->itl[j];
        }
        stats st = summarise(ttft, ok), sp = summarise(tpot, n_tpot), si = summarise(itl, k);
        double rps = ok / dur, tps = out / dur;
        if (json_out) {
            json_array_append_new(
                json_object_get(report, "runs"),
                json_pack("{s:i, s:i, s:i, s:f, s:f, s:f, s:i, s:{s:f,s:f,s:f}, s:{s:f,s:f,s:f}, s:{s:f,s:f,s:f}, "
                          "s:s?}",
                          "concurrency", levels[l], "completed", ok, "errors", n_req - ok, "duration_s", dur,
                          "request_throughput", rps, "output_throughput", tps, "output_tokens", (json_int_t)out,
                          "ttft_ms", "mean", st.mean * 1e3, "median", st.median * 1e3, "p99", st.p99 * 1e3,
                          "tpot_ms", "mean", sp.mean * 1e3, "median", sp.median * 1e3, "p99", sp.p99 * 1e3, "itl_ms",
                          "mean", si.mean * 1e3, "median", si.median * 1e3, "p99", si.p99 * 1e3, "first_error",
                          first_err));
        } else {
            printf("%-5d %6d %6d %8.2f %9.1f | %7.1f %7.1f %9.1f | %7.2f %7.2f %9.2f | %7.2f %7.2f %9.2f\n",
                   levels[l], ok, n_req - ok, rps, tps, st.mean * 1e3, st.median * 1e3, st.p99 * 1e3, sp.mean * 1e3,
                   sp.median * 1e3, sp.p99 * 1e3, si.mean * 1e3, si.median * 1e3, si.p99 * 1e3);
            if (first_err) printf("      first error: %s\n", first_err);
        }
        fflush(stdout);
        for (int i = 0; i < n_req; i++) free(c.res[i].itl);
        free(c.res);
        free(c.arrival);
        free(ttft);
        free(tpot);
        free(itl);
    }
    if (json_out) {
        char *s = json_dumps(report, JSON_INDENT(2));
        puts(s);
        free(s);
    }
    json_decref(report);
    free(name);
    free(levels);
    curl_global_cleanup();
    return 0;
}
