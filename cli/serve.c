/* serve.c — `kiln serve`: the OpenAI-compatible server. Parses flags, starts the server, waits for
 * SIGTERM / SIGINT, then drains (bounded) and exits 0. */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const char ABOUT[] =
    "OpenAI-compatible HTTP API: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,\n"
    "GET /health, GET /metrics (Prometheus). --port 0 picks a free port. --timeout limits each request\n"
    "(seconds, default 600); on SIGTERM/SIGINT in-flight requests get --drain seconds (default 30).\n\n"
    "Capacity: --max-batch sequences decode together (default 8); further requests wait in a queue of\n"
    "--max-queue (default 64; 0 = no limit, bounded only by --max-connections, default 256) and are\n"
    "answered 429 with Retry-After when it is full. --kv-cache-mb sizes the paged KV cache (default:\n"
    "every batch slot can hold a full --ctx context).";

int cmd_serve(int argc, char **argv) {
    kiln_server_opts o;
    kiln_server_opts_default(&o);
    const char *model = NULL;
    double drain = 30;
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    cli_weight_callbacks(&mo);
    o.model_opts = &mo;
    const cli_flag flags[] = {
        CLI_MODEL_FLAG(&model),
        {"--host", NULL, "ADDR", "address to listen on (default 127.0.0.1)", CLI_STR_TO(&o.host)},
        {"--port", NULL, "PORT", "port to listen on (default 8080; 0: any free port)", CLI_INT_TO(&o.port, 0, 65535)},
        {"--api-key", NULL, "KEY", "require Authorization: Bearer KEY", CLI_STR_TO(&o.api_key)},
        {"--max-batch", NULL, "N", "sequences decoded together (default 8)", CLI_INT_TO(&o.max_batch, 1, 1024)},
        {"--kv-cache-mb", NULL, "MB", "size of the paged KV cache", CLI_INT_TO(&o.kv_cache_mb, 1, 1 << 20)},
        {"--ctx", NULL, "N", "context length per sequence", CLI_INT_TO(&o.n_ctx, 16, 1 << 20)},
        {"--max-queue", NULL, "N", "requests waiting before 429 (default 64; 0: no limit)", CLI_INT_TO(&o.max_queue, 0, 1 << 20)},
        {"--max-body-kb", NULL, "KB", "request body limit (default 1024)", CLI_INT_TO(&o.max_body_kb, 1, 1 << 20)},
        {"--max-connections", NULL, "N", "concurrent HTTP connections (default 256)",
         CLI_INT_TO(&o.max_connections, 1, 65536)},
        {"--timeout", NULL, "SECONDS", "wall-clock limit per request (default 600)",
         CLI_DOUBLE_TO(&o.request_timeout_s, 0.001, 1e7)},
        {"--drain", NULL, "SECONDS", "grace for in-flight requests on SIGTERM/SIGINT (default 30)",
         CLI_DOUBLE_TO(&drain, 0, 3600)},
        CLI_THREADS_FLAG(&o.threads, 0),
        {"--served-model-name", NULL, "NAME", "model id in /v1/models and responses (default: the directory name)",
         CLI_STR_TO(&o.model_name)},
        CLI_WEIGHT_FLAGS(&mo),
        {0},
    };
    const cli_spec spec = {.name = "serve", .usage = "--model DIR [flags]", .about = ABOUT, .flags = flags};
    cli_parse(argc, argv, &spec);
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
