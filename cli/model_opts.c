/* model_opts.c — the flags every model-loading command shares: --model, --threads, --dtype/--quant. */
#include <string.h>

#include "cli.h"

int cli_model_flag(int argc, char **argv, int *i, cli_model_args *a) {
    const char *v;
    if (cli_opt(argc, argv, i, "--model", &v)) a->dir = cli_model_dir(v);
    else if (cli_opt(argc, argv, i, "--threads", &v)) a->opts.threads = (int)cli_long("--threads", v, 1, 1024);
    else if (cli_opt(argc, argv, i, "--dtype", &v) || cli_opt(argc, argv, i, "--quant", &v)) {
        kiln_dtype dt;
        if (kiln_dtype_parse(v, &dt)) cli_fail(2, "unknown format '%s' (f32, f16, bf16, q8_0, q4_0)", v);
        a->opts.dtype = (int)dt;
    } else return 0;
    return 1;
}

kiln_model *cli_open_model(cli_model_args *a) {
    if (!a->dir) cli_fail(2, "--model DIR is required");
    kiln_err err;
    kiln_model *m = kiln_model_open(a->dir, &a->opts, &err);
    if (!m) cli_fail(1, "%s", err.msg);
    return m;
}
