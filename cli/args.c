/* args.c — flag parsing shared by the subcommands: strict, with one-line errors. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

const char *cli_cmd_name = "";

void cli_fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "kiln %s: ", cli_cmd_name);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

int cli_parse_ids(const char *s, int32_t **ids, size_t *n, kiln_err *err) {
    size_t cap = 16, cnt = 0;
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return kiln_err_set(err, "out of memory");
    const char *p = s;
    while (*p) {
        while (*p == ' ') p++;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX) {
            free(v);
            return kiln_err_set(err, "bad token id list '%s' (want e.g. 1,2,3)", s);
        }
        if (cnt == cap) {
            int32_t *nv = realloc(v, (cap *= 2) * sizeof *v);
            if (!nv) {
                free(v);
                return kiln_err_set(err, "out of memory");
            }
            v = nv;
        }
        v[cnt++] = (int32_t)x;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p) {
            free(v);
            return kiln_err_set(err, "bad token id list '%s' (want e.g. 1,2,3)", s);
        }
    }
    if (cnt == 0) {
        free(v);
        return kiln_err_set(err, "empty token id list");
    }
    *ids = v;
    *n = cnt;
    return 0;
}

long cli_long(const char *flag, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end || errno || x < lo || x > hi)
        cli_fail(2, "%s: '%s' is not an integer in [%ld, %ld]", flag, s, lo, hi);
    return x;
}

double cli_double(const char *flag, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    if (end == s || *end || errno || isnan(x) || x < lo || x > hi)
        cli_fail(2, "%s: '%s' is not a number in [%g, %g]", flag, s, lo, hi);
    return x;
}

const char *cli_model_dir(const char *arg) {
    struct stat st;
    if (stat(arg, &st) == 0 && (S_ISDIR(st.st_mode) || S_ISREG(st.st_mode))) return arg; /* a directory or a GGUF file */
    const char *d = kiln_hub_resolve_model(arg);
    return d ? d : arg; /* the loader reports the missing directory with its path */
}

/* ---- weight formats: --dtype / --quant / --quant-cache, shared by every command that loads weights ---- */

void cli_dtype_flag(void *mo_, const char *flag, const char *v) {
    kiln_model_opts *mo = mo_;
    kiln_dtype dt;
    if (kiln_dtype_parse(v, &dt)) cli_fail(2, "%s: unknown format '%s' (want f32, f16 or bf16)", flag, v);
    if (dt == KILN_DT_Q8_0 || dt == KILN_DT_Q4_0) mo->quant = (int)dt; /* older spelling of --quant */
    else if (dt == KILN_DT_F32 || dt == KILN_DT_F16 || dt == KILN_DT_BF16) mo->dtype = (int)dt;
    else cli_fail(2, "%s %s: converting to %s at load is not supported (GGUF files in %s run as they are)", flag, v, v, v);
}

void cli_quant_flag(void *mo_, const char *flag, const char *v) {
    kiln_model_opts *mo = mo_;
    if (kiln_quant_parse(v, &mo->quant)) cli_fail(2, "%s: unknown format '%s' (want q8_0, q4_0, q4_k_m, q5_k_m or q6_k)", flag, v);
}

void cli_quant_cache_flag(void *mo, const char *flag, const char *v) {
    (void)flag, (void)v;
    ((kiln_model_opts *)mo)->weight_cache = true;
}

const char *cli_weight_format(const kiln_model_opts *mo) {
    static char s[32];
    if (mo->quant >= 0 && mo->dtype >= 0)
        snprintf(s, sizeof s, "%s+%s", kiln_quant_name(mo->quant), kiln_dtype_name((kiln_dtype)mo->dtype));
    else if (mo->quant >= 0) snprintf(s, sizeof s, "%s", kiln_quant_name(mo->quant));
    else if (mo->dtype >= 0) snprintf(s, sizeof s, "%s", kiln_dtype_name((kiln_dtype)mo->dtype));
    else return NULL;
    return s;
}

/* A one-line bar redrawn in place; only on a terminal (logs and pipes stay clean). */
static void weight_progress(void *ud, size_t done, size_t total) {
    (void)ud;
    static int last = -1;
    int pct = total ? (int)(100.0 * (double)done / (double)total) : 100, w = 30, fill = pct * w / 100;
    if (pct == last) return; /* redraw only when the figure moves */
    last = pct;
    fprintf(stderr, "\rkiln %s: converting weights [%.*s%*s] %3d%% %zu/%zu MiB", cli_cmd_name, fill,
            "##############################", w - fill, "", pct, done >> 20, total >> 20);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
}

static void weight_warn(void *ud, const char *msg) {
    (void)ud;
    fprintf(stderr, "kiln %s: warning: %s\n", cli_cmd_name, msg);
}

void cli_weight_callbacks(kiln_model_opts *mo) {
    mo->quiet = !isatty(STDERR_FILENO);
    mo->progress = weight_progress;
    mo->warn = weight_warn;
}

char *cli_read_stream(FILE *f, size_t *len) {
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    size_t r;
    while (s && (r = fread(s + n, 1, cap - n - 1, f)) > 0) {
        n += r;
        if (n + 1 == cap) {
            char *ns = realloc(s, cap *= 2);
            if (!ns) free(s);
            s = ns;
        }
    }
    if (!s) cli_fail(1, "out of memory");
    s[n] = 0;
    *len = n;
    return s;
}

char *cli_read_file(const char *flag, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb"); /* any readable file: a pipe (<(...)) or a FIFO too */
    if (!f) cli_fail(1, "%s %s: cannot open (%s)", flag, path, strerror(errno));
    char *s = cli_read_stream(f, len);
    fclose(f);
    return s;
}
