/* bench_serve.c — `kiln bench serve` (not implemented yet). */
#include "cli.h"

int cmd_bench_serve(int argc, char **argv) {
    (void)argc;
    (void)argv;
    cli_fail(2, "not implemented yet");
}
