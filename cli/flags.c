/* flags.c — the flag-table parser and the help printed from the same table (see cli_flag in cli.h). */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The row argv's word names: "--name", "--name=VALUE" or the alias. *inline_val gets VALUE. */
static const cli_flag *find_flag(const cli_flag *flags, const char *a, const char **inline_val) {
    *inline_val = NULL;
    for (const cli_flag *f = flags; f->name; f++) {
        size_t n = strlen(f->name);
        if (!strcmp(a, f->name) || (f->alias && !strcmp(a, f->alias))) return f;
        if (!strncmp(a, f->name, n) && a[n] == '=') {
            *inline_val = a + n + 1;
            return f;
        }
    }
    return NULL;
}

static long long_bound(double x) {
    if (x >= (double)LONG_MAX) return LONG_MAX;
    if (x <= (double)LONG_MIN) return LONG_MIN;
    return (long)x;
}

static void store(const cli_flag *f, const char *v) {
    switch (f->kind) {
    case CLI_SWITCH: *(bool *)f->dst = true; break;
    case CLI_STR: *(const char **)f->dst = v; break;
    case CLI_INT: *(int *)f->dst = (int)cli_long(f->name, v, long_bound(f->lo), long_bound(f->hi)); break;
    case CLI_U64: *(uint64_t *)f->dst = (uint64_t)cli_long(f->name, v, long_bound(f->lo), long_bound(f->hi)); break;
    case CLI_FLOAT: *(float *)f->dst = (float)cli_double(f->name, v, f->lo, f->hi); break;
    case CLI_DOUBLE: *(double *)f->dst = cli_double(f->name, v, f->lo, f->hi); break;
    case CLI_FN: f->fn(f->dst, f->name, v); break;
    }
    if (f->seen) *f->seen = true;
}

void cli_parse(int argc, char **argv, const cli_spec *spec) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            cli_help(stdout, spec);
            exit(fflush(stdout) ? 1 : 0);
        }
        if (a[0] != '-' || !a[1]) { /* a positional argument ("-" alone is one too: stdin) */
            if (!spec->pos || *spec->n_pos == spec->max_pos)
                cli_fail(2, "unexpected argument '%s' (kiln %s --help)", a, spec->name);
            spec->pos[(*spec->n_pos)++] = a;
            continue;
        }
        const char *v;
        const cli_flag *f = find_flag(spec->flags, a, &v);
        if (!f) cli_fail(2, "unknown flag '%s' (kiln %s --help)", a, spec->name);
        if (!f->arg) {
            if (v) cli_fail(2, "%s takes no value", f->name);
        } else if (!v) {
            if (f->optional_value) v = (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) ? argv[++i] : "-";
            else if (i + 1 < argc) v = argv[++i];
            else cli_fail(2, "%s needs a value", f->name);
        }
        store(f, v);
    }
}

/* "  -m, --model DIR" for the left column. */
static int flag_label(char *buf, size_t n, const cli_flag *f) {
    const char *arg = f->arg ? f->arg : "";
    if (f->optional_value) return snprintf(buf, n, "  %-2s%s %s [%s]", f->alias ? f->alias : "", f->alias ? "," : " ", f->name, arg);
    return snprintf(buf, n, "  %-2s%s %s%s%s", f->alias ? f->alias : "", f->alias ? "," : " ", f->name, *arg ? " " : "", arg);
}

void cli_help(FILE *out, const cli_spec *spec) {
    fprintf(out, "usage: kiln %s %s\n", spec->name, spec->usage);
    if (spec->about) fprintf(out, "\n%s\n", spec->about);
    if (spec->subcommands) fprintf(out, "\nsubcommands (kiln %s SUBCOMMAND --help):\n%s", spec->name, spec->subcommands);
    char buf[160];
    int w = 0;
    for (const cli_flag *f = spec->flags; f->name; f++) {
        int n = flag_label(buf, sizeof buf, f);
        if (n > w) w = n;
    }
    if (w > 34) w = 34;
    fputs("\nflags:\n", out);
    for (const cli_flag *f = spec->flags; f->name; f++) {
        int n = flag_label(buf, sizeof buf, f);
        if (n > w) fprintf(out, "%s\n%*s  %s\n", buf, w, "", f->help);
        else fprintf(out, "%-*s  %s\n", w, buf, f->help);
    }
    fprintf(out, "%-*s  %s\n", w, "  -h, --help", "this help");
    if (spec->notes) fprintf(out, "\n%s", spec->notes);
}

void cli_kv_type_flag(void *kv_type, const char *flag, const char *v) {
    static const kiln_dtype ok[] = {KILN_DT_F32, KILN_DT_F16, KILN_DT_BF16, KILN_DT_Q8_0};
    kiln_dtype dt;
    if (!kiln_dtype_parse(v, &dt))
        for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
            if (dt == ok[i]) {
                *(kiln_dtype *)kv_type = dt;
                return;
            }
    cli_fail(2, "%s: want f32, f16, bf16 or q8_0, not '%s'", flag, v);
}
