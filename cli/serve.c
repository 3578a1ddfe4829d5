/* serve.c — `kiln serve`: the OpenAI-compatible server. Parses flags, starts the server, prints a
 * start-up summary and one access-log line per request (text or JSON), waits for SIGTERM / SIGINT, then
 * drains (bounded) and exits 0. */
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static const char ABOUT[] =
    "OpenAI-compatible HTTP API: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,\n"
    "GET /v1/models/{id}, POST /tokenize, POST /detokenize (vLLM's shapes), GET /health, GET /metrics\n"
    "(Prometheus). With --api-key every route needs \"Authorization: Bearer KEY\" (/health not with\n"
    "--health-public). A request naming another model than --served-model-name's is a 404.\n"
    "--port 0 picks a free port. --timeout limits each request (seconds, default 600); on SIGTERM/SIGINT\n"
    "new requests are answered 503 and in-flight ones get --drain seconds (default 30).\n\n"
    "Capacity: --max-batch sequences decode together (default 8); further requests wait in a queue of\n"
    "--max-queue (default 64; 0 = no limit, bounded only by --max-connections, default 256) and are\n"
    "answered 429 with Retry-After when it is full. --kv-cache-mb sizes the paged KV cache (default:\n"
    "every batch slot can hold a full --ctx context).\n"
    "Slow clients: a request's headers and body must arrive within --read-timeout seconds (default 30);\n"
    "one client address holds at most --max-connections-per-ip connections (default 128).\n"
    "CORS: --allowed-origins lists the origins browsers may call from (default none; * allows any).\n"
    "Logs (stderr): a start-up summary and one line per request, as text or JSON (--log-format).";

static bool log_json;

/* One access-log line per request (called from the connection threads: one fprintf each). */
static void access_log(void *user, const kiln_server_request_log *e) {
    (void)user;
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    if (log_json) {
        json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:i, s:i, s:f, s:f}", "time", when, "client",
                              e->client, "method", e->method, "path", e->path, "id", e->id, "status", e->status,
                              "prompt_tokens", e->prompt_tokens, "completion_tokens", e->completion_tokens,
                              "cached_tokens", e->cached_tokens, "ttft_ms", e->ttft_ms, "total_ms", e->total_ms);
        if (o && e->error) json_object_set_new(o, "error", json_string(e->error));
        char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
        if (line) fprintf(stderr, "%s\n", line);
        free(line);
        json_decref(o);
        return;
    }
    char ttft[32] = "-";
    if (e->ttft_ms >= 0) snprintf(ttft, sizeof ttft, "%.1fms", e->ttft_ms);
    fprintf(stderr, "%s %s \"%s %s\" %d prompt=%d completion=%d cached=%d ttft=%s total=%.1fms%s%s%s%s\n", when,
            e->client, e->method, e->path, e->status, e->prompt_tokens, e->completion_tokens, e->cached_tokens, ttft,
            e->total_ms, *e->id ? " id=" : "", e->id, e->error ? " error: " : "", e->error ? e->error : "");
}

/* What the server runs with, once at start. */
static void summary(const kiln_server *s, const kiln_server_opts *o, const kiln_model_opts *mo, const cli_dist *d) {
    kiln_server_info i;
    kiln_server_get_info(s, &i);
    const char *fmt = cli_weight_format(mo);
    char formats[64];
    snprintf(formats, sizeof formats, "%s%s%s", i.stored_dtype, fmt ? " -> " : " (as stored)", fmt ? fmt : "");
    if (log_json) {
        json_t *j = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:i, s:i, s:i, s:i, s:i, s:b, s:b, s:s, s:b}", "event",
                              "start", "model", i.model_name, "model_dir", o->model_dir, "architecture",
                              i.architecture, "formats", formats, "weight_bytes", (json_int_t)i.weight_bytes, "context",
                              i.n_ctx, "max_batch", i.max_batch, "kv_blocks", i.kv_blocks, "kv_block_tokens",
                              i.kv_block_tokens, "threads", i.threads, "chat_template", i.chat_template, "thinking",
                              i.thinking, "address", "", "api_key", i.api_key);
        char addr[96];
        snprintf(addr, sizeof addr, "http://%s:%d", i.host, i.port);
        json_object_set_new(j, "address", json_string(addr));
        char *line = j ? json_dumps(j, JSON_COMPACT) : NULL;
        if (line) fprintf(stderr, "%s\n", line);
        free(line);
        json_decref(j);
    } else {
        fprintf(stderr,
                "kiln serve: model %s (%s), %s, weights %s, %.1f MiB\n"
                "kiln serve: context %d, batch %d, KV blocks %d x %d tokens, threads %d, chat template %s%s, "
                "API key %s\n",
                i.model_name, o->model_dir, i.architecture, formats, (double)i.weight_bytes / (1 << 20), i.n_ctx,
                i.max_batch, i.kv_blocks, i.kv_block_tokens, i.threads, i.chat_template ? "found" : "none",
                i.thinking ? " (thinking)" : "", i.api_key ? "required" : "none");
    }
    if (d->tp * d->pp > 1)
        fprintf(stderr, "kiln serve: split over %d MPI ranks (--tp %d --pp %d), %d micro-batches per step\n",
                d->tp * d->pp, d->tp, d->pp, cli_dist_micro(d));
    fprintf(stderr, "kiln serve: listening on http://%s:%d\n", i.host, i.port);
}

static void log_format_flag(void *dst, const char *flag, const char *value) {
    if (strcmp(value, "text") && strcmp(value, "json")) cli_fail(2, "%s: want text or json, got '%s'", flag, value);
    *(bool *)dst = !strcmp(value, "json");
}

int cmd_serve(int argc, char **argv) {
    kiln_server_opts o;
    kiln_server_opts_default(&o);
    const char *model = NULL;
    double drain = 30;
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    cli_weight_callbacks(&mo);
    o.model_opts = &mo;
    cli_dist dist = CLI_DIST_DEFAULT;
    const cli_flag flags[] = {
        CLI_MODEL_FLAG(&model),
        {"--host", NULL, "ADDR", "address to listen on (default 127.0.0.1)", CLI_STR_TO(&o.host)},
        {"--port", NULL, "PORT", "port to listen on (default 8080; 0: any free port)", CLI_INT_TO(&o.port, 0, 65535)},
        {"--api-key", NULL, "KEY", "require Authorization: Bearer KEY on every route", CLI_STR_TO(&o.api_key)},
        {"--health-public", NULL, NULL, "GET /health without the API key", CLI_SWITCH_TO(&o.health_public)},
        {"--max-batch", NULL, "N", "sequences decoded together (default 8)", CLI_INT_TO(&o.max_batch, 1, 1024)},
        {"--kv-cache-mb", NULL, "MB", "size of the paged KV cache", CLI_INT_TO(&o.kv_cache_mb, 1, 1 << 20)},
        {"--ctx", NULL, "N", "context length per sequence", CLI_INT_TO(&o.n_ctx, 16, 1 << 20)},
        {"--max-queue", NULL, "N", "requests waiting before 429 (default 64; 0: no limit)", CLI_INT_TO(&o.max_queue, 0, 1 << 20)},
        {"--max-body-kb", NULL, "KB", "request body limit (default 1024)", CLI_INT_TO(&o.max_body_kb, 1, 1 << 20)},
        {"--max-connections", NULL, "N", "concurrent HTTP connections (default 256)",
         CLI_INT_TO(&o.max_connections, 1, 65536)},
        {"--max-connections-per-ip", NULL, "N", "connections from one client address (default 128)",
         CLI_INT_TO(&o.max_connections_per_ip, 1, 65536)},
        {"--read-timeout", NULL, "SECONDS", "a request's headers and body must arrive within this (default 30)",
         CLI_DOUBLE_TO(&o.read_timeout_s, 0.1, 3600)},
        {"--timeout", NULL, "SECONDS", "wall-clock limit per request (default 600)",
         CLI_DOUBLE_TO(&o.request_timeout_s, 0.001, 1e7)},
        {"--drain", NULL, "SECONDS", "grace for in-flight requests on SIGTERM/SIGINT (default 30)",
         CLI_DOUBLE_TO(&drain, 0, 3600)},
        CLI_THREADS_FLAG(&o.threads, 0),
        {"--served-model-name", NULL, "NAMES",
         "model ids requests may name, comma-separated; the first is reported (default: the directory name)",
         CLI_STR_TO(&o.model_name)},
        {"--allowed-origins", NULL, "ORIGINS", "CORS: comma-separated origins browsers may call from, or * (default none)",
         CLI_STR_TO(&o.allowed_origins)},
        {"--pooling", NULL, "last|mean", "/v1/embeddings: the last token's hidden state (default) or the mean",
         CLI_STR_TO(&o.pooling)},
        {"--log-format", NULL, "text|json", "start-up summary and access log format (default text)",
         CLI_FN_TO(log_format_flag, &log_json)},
        CLI_WEIGHT_FLAGS(&mo),
        CLI_KV_TYPE_FLAG(&o.kv_type),
        CLI_DIST_FLAGS(&dist),
        CLI_DIST_MICRO_FLAG(&dist),
        {0},
    };
    const cli_spec spec = {.name = "serve", .usage = "--model DIR [flags]", .about = ABOUT, .flags = flags};
    cli_parse(argc, argv, &spec);
    if (!model) cli_fail(2, "--model DIR is required");
    o.model_dir = cli_model_dir(model);
    o.log = access_log;

    /* Block the signals before any thread starts so every thread inherits the mask and only sigwait
     * below receives them; writing to a closed socket must not kill the process either. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* --tp / --pp: rank 0 serves and leads; every other rank loads its shard and steps what rank 0 steps */
    cli_dist_start(&dist, &mo); /* after the mask: MPI's own threads must not take the signals either */
    cli_dist_lead(&dist);
    if (!cli_dist_rank0()) {
        kiln_err lerr;
        if (o.threads) mo.threads = o.threads;
        kiln_model *m = kiln_model_open(o.model_dir, &mo, &lerr);
        if (!m) cli_fail(1, "%s", lerr.msg);
        cli_dist_follow(m);
    }

    kiln_err err = {{0}};
    kiln_server *s = kiln_server_start(&o, &err);
    if (!s) cli_fail(1, "%s", err.msg);
    summary(s, &o, &mo, &dist);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "kiln serve: %s: draining (up to %gs)\n", sig == SIGINT ? "SIGINT" : "SIGTERM", drain);
    kiln_server_shutdown(s, drain);
    kiln_server_free(s);
    fprintf(stderr, "kiln serve: stopped\n");
    return 0;
}
