/* quantize.c — `kiln quantize --model SRC --quant FMT --out FILE.gguf`: writes the checkpoint as a GGUF
 * file (kiln_gguf_write) in format FMT: a float format (f32, f16, bf16) or one of --quant's block formats
 * and llama-quantize mixes (q8_0, q4_0, q4_k_m, q5_k_m, q6_k). Progress bar on a terminal. */
#include <stdio.h>

#include "cli.h"

/* Q: the float formats set dtype, the others quant. */
static void format_flag(void *mo_, const char *flag, const char *v) {
    kiln_model_opts *mo = mo_;
    kiln_dtype dt;
    if (!kiln_dtype_parse(v, &dt) && (dt == KILN_DT_F32 || dt == KILN_DT_F16 || dt == KILN_DT_BF16)) mo->dtype = (int)dt;
    else if (kiln_quant_parse(v, &mo->quant))
        cli_fail(2, "%s: unknown format '%s' (want f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m or q6_k)", flag, v);
}

int cmd_quantize(int argc, char **argv) {
    const char *model = NULL, *out = NULL;
    kiln_model_opts mo;
    kiln_model_opts_default(&mo);
    cli_weight_callbacks(&mo);
    const cli_flag flags[] = {
        CLI_MODEL_FLAG(&model),
        {"--quant", NULL, "FMT", "the file's format (required): f32|f16|bf16|q8_0|q4_0|q4_k_m|q5_k_m|q6_k",
         CLI_FN_TO(format_flag, &mo)},
        {"--out", "-o", "FILE.gguf", "the GGUF file to write (required; replaced atomically)", CLI_STR_TO(&out)},
        CLI_THREADS_FLAG(&mo.threads, 1),
        {0},
    };
    const cli_spec spec = {.name = "quantize", .usage = "--model DIR --quant FMT --out FILE.gguf [flags]",
                           .about = "Write a safetensors checkpoint as a GGUF file that llama.cpp's tools load, in a "
                                    "float format or llama-quantize's types and K-quant mixes.",
                           .flags = flags};
    cli_parse(argc, argv, &spec);
    if (!model || !out || (mo.quant < 0 && mo.dtype < 0)) cli_fail(2, "--model, --quant and --out are required");
    kiln_err err;
    if (kiln_gguf_write(cli_model_dir(model), out, &mo, &err)) cli_fail(1, "%s", err.msg);
    return 0;
}
