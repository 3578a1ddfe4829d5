/* logits.c — `kiln logits` (not implemented yet). */
#include "cli.h"

int cmd_logits(int argc, char **argv) {
    (void)argc;
    (void)argv;
    cli_fail(2, "not implemented yet");
}
