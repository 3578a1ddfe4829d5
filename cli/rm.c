/* rm.c — `kiln rm` (not implemented yet). */
#include "cli.h"

int cmd_rm(int argc, char **argv) {
    (void)argc;
    (void)argv;
    cli_fail(2, "not implemented yet");
}
