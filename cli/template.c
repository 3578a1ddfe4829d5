/* template.c — `kiln template` (not implemented yet). */
#include "cli.h"

int cmd_template(int argc, char **argv) {
    (void)argc;
    (void)argv;
    cli_fail(2, "not implemented yet");
}
