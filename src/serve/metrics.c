/* metrics.c — counters, gauges and histograms for GET /metrics in Prometheus text format.
 * One mutex guards everything: updates are a few additions per request or per engine step. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "serve/serve.h"

/* Latency buckets in seconds, shared by every histogram (TTFT spans ms to tens of seconds on a CPU). */
static const double BUCKETS[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
#define NB (int)(sizeof BUCKETS / sizeof BUCKETS[0])

typedef struct histo {
    long count[NB + 1]; /* per bucket, last = +Inf */
    long n;
    double sum;
} histo;

/* Requests by endpoint and status code. Endpoints are the route table's labels (http.c: never a URL a
 * client sent) and statuses the dozen the server answers, so the series cannot outgrow this table. */
#define MAX_SERIES 192
typedef struct series {
    char endpoint[32];
    int status;
    long n;
} series;

struct serve_metrics {
    pthread_mutex_t mu;
    series req[MAX_SERIES];
    int n_req;
    long prompt_tokens, generated_tokens, cached_tokens;
    int queued, running, kv_used, kv_total, cached_seqs, kv_window_used, kv_window_total;
    int64_t kv_bytes_used, kv_bytes_total;
    histo ttft, tpot, e2e;
};

serve_metrics *metrics_new(void) {
    serve_metrics *m = calloc(1, sizeof *m);
    if (m) pthread_mutex_init(&m->mu, NULL);
    return m;
}

void metrics_free(serve_metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void metrics_request(serve_metrics *m, const char *endpoint, int status) {
    pthread_mutex_lock(&m->mu);
    int i = 0;
    while (i < m->n_req && !(m->req[i].status == status && !strcmp(m->req[i].endpoint, endpoint))) i++;
    if (i == m->n_req && m->n_req < MAX_SERIES) {
        snprintf(m->req[i].endpoint, sizeof m->req[i].endpoint, "%s", endpoint);
        m->req[i].status = status;
        m->n_req++;
    }
    if (i < MAX_SERIES) m->req[i].n++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_tokens(serve_metrics *m, int prompt, int generated, int cached) {
    pthread_mutex_lock(&m->mu);
    m->prompt_tokens += prompt;
    m->generated_tokens += generated;
    m->cached_tokens += cached;
    pthread_mutex_unlock(&m->mu);
}

static void observe(serve_metrics *m, histo *h, double s) {
    pthread_mutex_lock(&m->mu);
    int b = 0;
    while (b < NB && s > BUCKETS[b]) b++;
    h->count[b]++;
    h->n++;
    h->sum += s;
    pthread_mutex_unlock(&m->mu);
}
void metrics_ttft(serve_metrics *m, double s) { observe(m, &m->ttft, s); }
void metrics_tpot(serve_metrics *m, double s) { observe(m, &m->tpot, s); }
void metrics_e2e(serve_metrics *m, double s) { observe(m, &m->e2e, s); }

void metrics_gauges(serve_metrics *m, int queued, int running, int kv_used, int kv_total, int cached_seqs) {
    pthread_mutex_lock(&m->mu);
    m->queued = queued;
    m->running = running;
    m->kv_used = kv_used;
    m->kv_total = kv_total;
    m->cached_seqs = cached_seqs;
    pthread_mutex_unlock(&m->mu);
}

void metrics_kv(serve_metrics *m, int window_used, int window_total, int64_t bytes_used, int64_t bytes_total) {
    pthread_mutex_lock(&m->mu);
    m->kv_window_used = window_used;
    m->kv_window_total = window_total;
    m->kv_bytes_used = bytes_used;
    m->kv_bytes_total = bytes_total;
    pthread_mutex_unlock(&m->mu);
}

static void put_histo(strbuf *b, const char *name, const char *help, const histo *h) {
    char line[256];
    snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    strbuf_puts(b, line);
    long cum = 0;
    for (int i = 0; i <= NB; i++) {
        cum += h->count[i];
        if (i < NB) snprintf(line, sizeof line, "%s_bucket{le=\"%g\"} %ld\n", name, BUCKETS[i], cum);
        else snprintf(line, sizeof line, "%s_bucket{le=\"+Inf\"} %ld\n", name, cum);
        strbuf_puts(b, line);
    }
    snprintf(line, sizeof line, "%s_sum %.6f\n%s_count %ld\n", name, h->sum, name, h->n);
    strbuf_puts(b, line);
}

static void put_value(strbuf *b, const char *name, const char *type, const char *help, long v) {
    char line[256];
    snprintf(line, sizeof line, "# HELP %s %s\n# TYPE %s %s\n%s %ld\n", name, help, name, type, name, v);
    strbuf_puts(b, line);
}

char *metrics_render(serve_metrics *m) {
    strbuf b = {0};
    char line[256];
    pthread_mutex_lock(&m->mu);
    strbuf_puts(&b, "# HELP kiln_requests_total HTTP requests answered, by endpoint and status code.\n"
                  "# TYPE kiln_requests_total counter\n");
    for (int i = 0; i < m->n_req; i++) {
        snprintf(line, sizeof line, "kiln_requests_total{endpoint=\"%s\",status=\"%d\"} %ld\n", m->req[i].endpoint,
                 m->req[i].status, m->req[i].n);
        strbuf_puts(&b, line);
    }
    put_value(&b, "kiln_prompt_tokens_total", "counter", "Prompt tokens of admitted requests.", m->prompt_tokens);
    put_value(&b, "kiln_generation_tokens_total", "counter", "Tokens generated.", m->generated_tokens);
    put_value(&b, "kiln_prefix_cache_hit_tokens_total", "counter", "Prompt tokens reused from the prefix cache.",
              m->cached_tokens);
    put_value(&b, "kiln_queue_depth", "gauge", "Requests waiting for admission.", m->queued);
    put_value(&b, "kiln_running_sequences", "gauge", "Sequences in the running batch.", m->running);
    put_value(&b, "kiln_kv_blocks_used", "gauge", "KV cache blocks of the global layers in use (running and prefix cache).", m->kv_used);
    put_value(&b, "kiln_kv_blocks_total", "gauge", "KV cache blocks of the global layers in all.", m->kv_total);
    put_value(&b, "kiln_kv_window_blocks_used", "gauge", "KV blocks of the sliding-window layers in use.",
              m->kv_window_used);
    put_value(&b, "kiln_kv_window_blocks_total", "gauge",
              "KV blocks of the sliding-window layers in all (a fixed number per sequence slot).", m->kv_window_total);
    put_value(&b, "kiln_kv_bytes_used", "gauge", "KV cache bytes in use, global and window layers.", (long)m->kv_bytes_used);
    put_value(&b, "kiln_kv_bytes_total", "gauge", "KV cache bytes allocated, global and window layers.",
              (long)m->kv_bytes_total);
    put_value(&b, "kiln_prefix_cache_sequences", "gauge", "Finished prompts kept for prefix reuse.", m->cached_seqs);
    put_histo(&b, "kiln_time_to_first_token_seconds", "Time from request arrival to its first token.", &m->ttft);
    put_histo(&b, "kiln_time_per_output_token_seconds", "Mean time between tokens after the first, per request.",
              &m->tpot);
    put_histo(&b, "kiln_e2e_request_latency_seconds", "Time from arrival to the last token.", &m->e2e);
    pthread_mutex_unlock(&m->mu);
    return b.p;
}
