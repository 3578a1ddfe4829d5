/* serve.c — `kiln serve`: the OpenAI-compatible server. Parses flags, starts the server, waits for
 * SIGTERM / SIGINT, then drains (bounded) and exits 0. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(void) {
    printf("usage: kiln serve --model DIR [--host 127.0.0.1] [--port 8080] [--api-key KEY] [--max-batch N]\n"
           "                  [--kv-cache-mb M] [--ctx N] [--max-queue Q] [--max-body-kb B] [--max-connections C]\n"
           "                  [--timeout S] [--drain S] [--threads T] [--served-model-name NAME]\n"
           "                  " CLI_WEIGHT_USAGE "\n\n"
           "OpenAI-compatible HTTP API: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,\n"
           "GET /health, GET /metrics (Prometheus). --port 0 picks a free port. --timeout limits each request\n"
           "(seconds, default 600); on SIGTERM/SIGINT in-flight requests get --drain seconds (default 30).\n\n"
           "Capacity: --max-batch sequences decode together (default 8); further requests wait in a queue of\n"
           "--max-queue (default 64; 0 = no limit, bounded only by --max-connections, default 256) and are\n"
           "answered 429 with Retry-After when it is full. --kv-cache-mb sizes the paged KV cache (default:\n"
           "every batch slot can hold a full --ctx context).\n");
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
        else cli_fail(2, "unknown flag '%s' (kiln serve --help)", argv[i]);
    }
    if (!model) cli_fail(2, "--model DIR is required");
    o.model_dir = cli_model_dir(model);

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
    fprintf(stderr, "kiln serve: listening on http://%s:%d (model %s)\n", o.host, kiln_server_port(s), o.model_dir);
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "kiln serve: %s: draining (up to %gs)\n", sig == SIGINT ? "SIGINT" : "SIGTERM", drain);
    kiln_server_shutdown(s, drain);
    kiln_server_free(s);
    fprintf(stderr, "kiln serve: stopped\n");
    return 0;
}
