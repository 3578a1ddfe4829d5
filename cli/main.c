/* main.c — `kiln <command> [flags]`: dispatch to cli/<command>.c; `kiln help CMD` is `kiln CMD --help`. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

struct command {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
};

#define CLI_ENTRY(name, help) {#name, cmd_##name, help},
static const struct command commands[] = {CLI_COMMANDS(CLI_ENTRY)};
#undef CLI_ENTRY

static void usage(FILE *f) {
    fprintf(f, "kiln %s — LLM inference engine\n\nusage: kiln <command> [flags]   (kiln <command> --help, kiln help <command>)\n\n",
            KILN_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-9s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n  kiln --version    the version and the commit it was built from\n");
}

static const struct command *find(const char *name) {
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(name, commands[i].name)) return &commands[i];
    fprintf(stderr, "kiln: unknown command '%s' (kiln --help lists them)\n", name);
    return NULL;
}

static int run(const struct command *c, int argc, char **argv) {
    cli_cmd_name = c->name;
    return c->fn(argc, argv);
}

/* `kiln help CMD [SUB]`: the command's own --help, so there is one help text per command. */
static int help(int argc, char **argv) {
    if (argc < 3) {
        usage(stdout);
        return 0;
    }
    const struct command *c = find(argv[2]);
    if (!c) return 2;
    char *args[4] = {argv[2], argc > 3 ? argv[3] : "--help", "--help", NULL};
    return run(c, argc > 3 ? 3 : 2, args);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "help")) return help(argc, argv);
    if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-v")) {
        printf("kiln %s (commit %s)\n", KILN_VERSION, kiln_build_commit());
        return 0;
    }
    const struct command *c = find(argv[1]);
    return c ? run(c, argc - 1, argv + 1) : 2;
}
