/* info.c — `kiln info [--json] [--model DIR|ORG/NAME]`: the machine before any measurement (CPU, SIMD
 * features and the kernels kiln picks, memory, huge pages, a quick bandwidth and matmul figure), and
 * with --model, what decoding that model costs and the roofline bound on tokens/s. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define BW_BYTES (256u << 20)
#define MM_ROWS 1024
#define MM_COLS 1024
#define MM_TOKENS 16

static json_t *word_list(const char *s) {
    json_t *a = json_array();
    char *dup = strdup(s), *save = NULL;
    for (char *w = strtok_r(dup, " ", &save); w; w = strtok_r(NULL, " ", &save)) json_array_append_new(a, json_string(w));
    free(dup);
    return a;
}

static json_t *model_json(const char *dir, const kiln_model_stats *st, kiln_dtype kv_type, double bw, int64_t mem_avail) {
    json_t *per = json_object(), *roof = json_object();
    for (int d = 0; d < KILN_QUANT_END; d++) {
        const char *name = d < KILN_DT_COUNT ? kiln_dtype_name((kiln_dtype)d) : kiln_quant_name(d);
        json_object_set_new(per, name, json_integer(st->bytes_per_token[d]));
        json_object_set_new(roof, name,
                            json_real(bw / (double)(st->bytes_per_token[d] + st->kv_bytes_per_token)));
    }
    /* Context that fits: memory left after the (memory-mapped, resident) weights and one sequence's window
     * layers, in KV per token of the global layers (none: any context the model takes). */
    int64_t left = mem_avail - st->checkpoint_bytes - st->kv_window_bytes_per_seq;
    int64_t fit = left <= 0 ? 0 : st->kv_bytes_per_token > 0 ? left / st->kv_bytes_per_token : st->max_position_embeddings;
    json_t *r = json_pack("{s:s, s:I, s:s, s:I, s:I, s:o, s:I, s:f, s:o, s:I, s:I, s:i, s:i, s:i}", "dir", dir, "params",
                     (json_int_t)st->params, "checkpoint_dtype", st->checkpoint_dtype, "checkpoint_bytes",
                     (json_int_t)st->checkpoint_bytes, "weight_bytes_per_token", (json_int_t)st->checkpoint_bytes_per_token,
                     "weight_bytes_per_token_by_dtype", per, "kv_bytes_per_token", (json_int_t)st->kv_bytes_per_token,
                     "roofline_tok_s", bw / (double)(st->checkpoint_bytes_per_token + st->kv_bytes_per_token),
                     "roofline_tok_s_by_dtype", roof, "max_context_in_memory", (json_int_t)fit,
                     "max_context", (json_int_t)(st->max_position_embeddings > 0 && fit > st->max_position_embeddings
                                                     ? st->max_position_embeddings
                                                     : fit),
                     "n_layers", st->n_layers, "n_kv_heads", st->n_kv_heads, "head_dim", st->head_dim);
    if (r) json_object_set_new(r, "max_position_embeddings", json_integer(st->max_position_embeddings));
    if (r) json_object_set_new(r, "kv_type", json_string(kiln_dtype_name(kv_type)));
    if (r) json_object_update_new(r, json_pack("{s:I, s:i, s:i, s:i, s:i}", "kv_window_bytes_per_seq",
                                               (json_int_t)st->kv_window_bytes_per_seq, "kv_window_layers",
                                               st->n_window_layers, "kv_window_blocks", st->kv_window_blocks,
                                               "sliding_window", st->sliding_window, "kv_window_step", KILN_KV_WINDOW_STEP));
    return r;
}

static void print_text(json_t *j) {
    json_t *cpu = json_object_get(j, "cpu"), *mem = json_object_get(j, "memory"), *ms = json_object_get(j, "measured");
    printf("CPU        %s\n", json_string_value(json_object_get(cpu, "model")));
    printf("           %d cores, %d threads\n", (int)json_integer_value(json_object_get(cpu, "cores")),
           (int)json_integer_value(json_object_get(cpu, "threads")));
    printf("SIMD       ");
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(cpu, "features"), i, v) printf("%s ", json_string_value(v));
    printf("%s\n", json_is_true(json_object_get(cpu, "features_match_cpuinfo")) ? "(= /proc/cpuinfo)"
                                                                                 : "(differs from /proc/cpuinfo!)");
    printf("kernels    %s\n", json_string_value(json_object_get(cpu, "kernels")));
    printf("memory     %.1f GiB total, %.1f GiB available\n",
           (double)json_integer_value(json_object_get(mem, "total_bytes")) / (1 << 30),
           (double)json_integer_value(json_object_get(mem, "available_bytes")) / (1 << 30));
    printf("hugepages  transparent: %s, HugePages_Total: %lld\n",
           json_string_value(json_object_get(mem, "transparent_hugepages")),
           (long long)json_integer_value(json_object_get(mem, "hugepages_total")));
    printf("bandwidth  %.1f GB/s read (best pass, %d threads, 256 MiB)\n",
           json_real_value(json_object_get(ms, "read_bandwidth_gbs")), (int)json_integer_value(json_object_get(ms, "threads")));
    printf("matmul     %.2f GFLOP/s (f32 %dx%d x %d tokens, %s)\n", json_real_value(json_object_get(ms, "matmul_gflops")),
           MM_ROWS, MM_COLS, MM_TOKENS, json_string_value(json_object_get(cpu, "kernels")));
    json_t *m = json_object_get(j, "model");
    if (!m) return;
    printf("\nmodel      %s\n", json_string_value(json_object_get(m, "dir")));
    printf("params     %lld (%s, %.1f MB)\n", (long long)json_integer_value(json_object_get(m, "params")),
           json_string_value(json_object_get(m, "checkpoint_dtype")),
           (double)json_integer_value(json_object_get(m, "checkpoint_bytes")) / 1e6);
    const int n_window = (int)json_integer_value(json_object_get(m, "kv_window_layers"));
    printf("KV cache   %lld bytes/token (%s K+V, %d %slayers x %d kv heads x %d)\n",
           (long long)json_integer_value(json_object_get(m, "kv_bytes_per_token")),
           json_string_value(json_object_get(m, "kv_type")),
           (int)json_integer_value(json_object_get(m, "n_layers")) - n_window, n_window ? "global " : "",
           (int)json_integer_value(json_object_get(m, "n_kv_heads")), (int)json_integer_value(json_object_get(m, "head_dim")));
    if (n_window)
        printf("           + %lld bytes/sequence: %d sliding-window layers keep %d blocks of %d tokens (window %d + one "
               "block + a %d-token step)\n",
               (long long)json_integer_value(json_object_get(m, "kv_window_bytes_per_seq")), n_window,
               (int)json_integer_value(json_object_get(m, "kv_window_blocks")), KILN_KV_BLOCK,
               (int)json_integer_value(json_object_get(m, "sliding_window")),
               (int)json_integer_value(json_object_get(m, "kv_window_step")));
    printf("decode     %-6s %16s %18s\n", "format", "bytes/token", "roofline tok/s");
    const char *k;
    json_object_foreach(json_object_get(m, "weight_bytes_per_token_by_dtype"), k, v)
        printf("           %-6s %16lld %18.1f\n", k, (long long)json_integer_value(v),
               json_real_value(json_object_get(json_object_get(m, "roofline_tok_s_by_dtype"), k)));
    printf("context    %lld tokens of KV fit in available memory (max_position_embeddings %lld)\n",
           (long long)json_integer_value(json_object_get(m, "max_context_in_memory")),
           (long long)json_integer_value(json_object_get(m, "max_position_embeddings")));
}

int cmd_info(int argc, char **argv) {
    bool as_json = false;
    const char *model = NULL;
    kiln_dtype kv_type = KILN_KV_TYPE_DEFAULT;
    const cli_flag flags[] = {
        {"--json", NULL, NULL, "the report as one JSON object", CLI_SWITCH_TO(&as_json)},
        {"--model", "-m", "DIR", "also what decoding this model costs (DIR or ORG/NAME; no weights read)",
         CLI_STR_TO(&model)},
        CLI_KV_TYPE_FLAG(&kv_type),
        {0},
    };
    const cli_spec spec = {.name = "info", .usage = "[--json] [--model DIR|ORG/NAME [--kv-type T]]",
                           .about = "Describes this machine: CPU, SIMD features and the kernels kiln picks, memory, huge pages,\n"
                           "a quick bandwidth and matmul figure; with --model, the model's memory traffic and roofline.",
                           .flags = flags};
    cli_parse(argc, argv, &spec);
    kiln_model_stats st;
    kiln_err err;
    const char *dir = model ? cli_model_dir(model) : NULL;
    if (dir && kiln_model_stats_load(dir, &st, &err) != 0) cli_fail(1, "%s", err.msg);
    if (dir && kiln_model_stats_kv(&st, kv_type)) /* the KV figures in the format asked for */
        cli_fail(2, "--kv-type %s cannot hold this model's heads (head_dim %d)", kiln_dtype_name(kv_type), st.head_dim);

    kiln_machine m;
    kiln_machine_probe(&m);
    const char *kernels = kiln_kernel_set(); /* picked before the matmul figure, which uses it */
    double t0 = kiln_now();
    double bw = kiln_measure_read_bw(BW_BYTES, m.threads, 0.7);
    double gf = kiln_measure_matmul_gflops(MM_ROWS, MM_COLS, MM_TOKENS, 0, 0.4);
    double secs = kiln_now() - t0;

    json_t *j = json_pack(
        "{s:{s:s, s:i, s:i, s:o, s:o, s:b, s:s}, s:{s:I, s:I, s:s, s:I, s:I}, s:{s:f, s:f, s:s, s:i, s:f}}", "cpu",
        "model", m.cpu_model, "cores", m.cores, "threads", m.threads, "features", word_list(m.features),
        "cpuinfo_features", word_list(m.cpuinfo_features), "features_match_cpuinfo", !strcmp(m.features, m.cpuinfo_features),
        "kernels", kernels, "memory", "total_bytes", (json_int_t)m.mem_total, "available_bytes",
        (json_int_t)m.mem_available, "transparent_hugepages", m.thp[0] ? m.thp : "unavailable", "hugepages_total",
        (json_int_t)m.hugepages_total, "hugepage_size_bytes", (json_int_t)m.hugepage_size, "measured",
        "read_bandwidth_gbs", bw / 1e9, "matmul_gflops", gf, "matmul_shape", "f32 1024x1024 x 16 tokens", "threads",
        m.threads, "seconds", secs);
    if (!j) cli_fail(1, "cannot build the report");
    if (dir) json_object_set_new(j, "model", model_json(dir, &st, kv_type, bw, m.mem_available));
    if (as_json) {
        char *s = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(6));
        printf("%s\n", s);
        free(s);
    } else print_text(j);
    json_decref(j);
    return 0;
}
