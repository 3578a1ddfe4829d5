/* info.c — `kiln info` (not implemented yet). */
#include "cli.h"

int cmd_info(int argc, char **argv) {
    (void)argc;
    (void)argv;
    cli_fail(2, "not implemented yet");
}
