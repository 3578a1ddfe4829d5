/* run.c — `kiln run` (not implemented yet). */
#include "cli.h"

int cmd_run(int argc, char **argv) {
    (void)argc;
    (void)argv;
    cli_fail(2, "not implemented yet");
}
