/* serve.c — `kiln serve`: the OpenAI-compatible server. Parses flags, starts the server, waits for
 * SIGTERM / SIGINT, then drains (bounded) and exits 0. */
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"

static void usage(void) {
    printf("usage: kiln serve --model DIR [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--health-public]\n"
           "                  [--max-batch N] [--kv-cache-mb M] [--ctx N] [--max-queue Q] [--max-body-kb B]\n"
           "                  [--max-connections C] [--max-connections-per-ip P] [--read-timeout S]\n"
           "                  [--timeout S] [--drain S] [--threads T] [--served-model-name NAME[,ALIAS...]]\n"
           "                  [--allowed-origins ORIGIN[,ORIGIN...]|*] [--log-format text|json]\n"
           "                  " CLI_WEIGHT_USAGE "\n\n"
           "OpenAI-compatible HTTP API: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,\n"
           "GET /v1/models/{id}, POST /tokenize, POST /detokenize (vLLM's shapes), GET /health, GET /metrics\n"
           "(Prometheus). With --api-key every route needs \"Authorization: Bearer KEY\" (/health not with\n"
           "--health-public). A request naming another model than --served-model-name's is a 404.\n"
           "--port 0 picks a free port. --timeout limits each request (seconds, default 600); on SIGTERM/SIGINT\n"
           "new requests are answered 503 and in-flight ones get --drain seconds (default 30).\n"
           "Slow clients: a request's headers and body must arrive within --read-timeout seconds (default 30);\n"
           "one client address holds at most --max-connections-per-ip connections (default 128).\n"
           "CORS: --allowed-origins lists the origins browsers may call from (default none).\n"
           "Logs (stderr): a start-up summary and one line per request, as text or JSON (--log-format).\n\n"
           "Capacity: --max-batch sequences decode together (default 8); further requests wait in a queue of\n"
           "--max-queue (default 64; 0 = no limit, bounded only by --max-connections, default 256) and are\n"
           "answered 429 with Retry-After when it is full. --kv-cache-mb sizes the paged KV cache (default:\n"
           "every batch slot can hold a full --ctx context).\n");
}

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
static void summary(const kiln_server *s, const kiln_server_opts *o, const kiln_model_opts *mo) {
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
    fprintf(stderr, "kiln serve: listening on http://%s:%d\n", i.host, i.port);
}

int cmd_serve(int argc, char **argv) {
    kiln_server_opts o;
    kiln_server_opts_default(&o);
    const char *model = NULL, *v;
    double drain = 30;
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    cli_weight_callbacks(&mo);
    o.model_opts = &mo;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage();
            return 0;
        }
        if (cli_weight_flag(argc, argv, &i, &mo)) continue;
        if (cli_opt(argc, argv, &i, "--model", &v)) model = v;
        else if (cli_opt(argc, argv, &i, "--host", &v)) o.host = v;
        else if (cli_opt(argc, argv, &i, "--port", &v)) o.port = (int)cli_long("--port", v, 0, 65535);
        else if (cli_opt(argc, argv, &i, "--api-key", &v)) o.api_key = v;
        else if (cli_opt(argc, argv, &i, "--max-batch", &v)) o.max_batch = (int)cli_long("--max-batch", v, 1, 1024);
        else if (cli_opt(argc, argv, &i, "--kv-cache-mb", &v))
            o.kv_cache_mb = (int)cli_long("--kv-cache-mb", v, 1, 1 << 20);
        else if (cli_opt(argc, argv, &i, "--ctx", &v)) o.n_ctx = (int)cli_long("--ctx", v, 16, 1 << 20);
        else if (cli_opt(argc, argv, &i, "--max-queue", &v)) o.max_queue = (int)cli_long("--max-queue", v, 0, 1 << 20);
        else if (cli_opt(argc, argv, &i, "--max-body-kb", &v))
            o.max_body_kb = (int)cli_long("--max-body-kb", v, 1, 1 << 20);
        else if (cli_opt(argc, argv, &i, "--max-connections", &v))
            o.max_connections = (int)cli_long("--max-connections", v, 1, 65536);
        else if (cli_opt(argc, argv, &i, "--timeout", &v)) o.request_timeout_s = cli_double("--timeout", v, 0.001, 1e7);
        else if (cli_opt(argc, argv, &i, "--drain", &v)) drain = cli_double("--drain", v, 0, 3600);
        else if (cli_opt(argc, argv, &i, "--threads", &v)) o.threads = (int)cli_long("--threads", v, 0, 1024);
        else if (cli_opt(argc, argv, &i, "--served-model-name", &v)) o.model_name = v;
        else if (!strcmp(argv[i], "--health-public")) o.health_public = true;
        else if (cli_opt(argc, argv, &i, "--allowed-origins", &v)) o.allowed_origins = v;
        else if (cli_opt(argc, argv, &i, "--max-connections-per-ip", &v))
            o.max_connections_per_ip = (int)cli_long("--max-connections-per-ip", v, 1, 65536);
        else if (cli_opt(argc, argv, &i, "--read-timeout", &v)) o.read_timeout_s = cli_double("--read-timeout", v, 0.1, 3600);
        else if (cli_opt(argc, argv, &i, "--log-format", &v)) {
            if (strcmp(v, "text") && strcmp(v, "json")) cli_fail(2, "--log-format: want text or json, got '%s'", v);
            log_json = !strcmp(v, "json");
        }
        else cli_fail(2, "unknown flag '%s' (kiln serve --help)", argv[i]);
    }
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

    kiln_err err = {{0}};
    kiln_server *s = kiln_server_start(&o, &err);
    if (!s) cli_fail(1, "%s", err.msg);
    summary(s, &o, &mo);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "kiln serve: %s: draining (up to %gs)\n", sig == SIGINT ? "SIGINT" : "SIGTERM", drain);
    kiln_server_shutdown(s, drain);
    kiln_server_free(s);
    fprintf(stderr, "kiln serve: stopped\n");
    return 0;
}
