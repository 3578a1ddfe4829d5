/* pull.c — `kiln pull` (not implemented yet). */
#include "cli.h"

int cmd_pull(int argc, char **argv) {
    (void)argc;
    (void)argv;
    cli_fail(2, "not implemented yet");
}
