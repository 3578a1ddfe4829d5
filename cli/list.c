/* list.c — `kiln list` (not implemented yet). */
#include "cli.h"

int cmd_list(int argc, char **argv) {
    (void)argc;
    (void)argv;
    cli_fail(2, "not implemented yet");
}
