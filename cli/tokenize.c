/* tokenize.c — `kiln tokenize`: encode text with a model's tokenizer.
 *
 *   kiln tokenize --model DIR [--special]      JSON strings on stdin, one per line →
 *                                               {"ids":[...],"decoded":"..."} per line on stdout
 *   kiln tokenize --model DIR --text "..." [--special]   ids and token pieces, for humans
 *
 * A malformed input line (not one JSON string) still gets exactly one output line,
 * {"error":"line N: ..."}, so outputs stay aligned with inputs; the exit status is then 1. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Writes s as a JSON string the way Python's json.dumps(ensure_ascii=False) does: only '"', '\\' and
 * control characters are escaped; UTF-8 passes through. */
static void put_json_string(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        default:
            if (c < 0x20) fprintf(f, "\\u%04x", c);
            else fputc(c, f);
        }
    }
    fputc('"', f);
}

static void put_ids(FILE *f, const int32_t *ids, size_t n) {
    fputc('[', f);
    for (size_t i = 0; i < n; i++) fprintf(f, i ? ",%d" : "%d", ids[i]);
    fputc(']', f);
}

static void human(const kiln_tokenizer *t, const char *text, bool special) {
    int32_t *ids;
    size_t n;
    kiln_err err = {0};
    if (kiln_encode(t, text, strlen(text), special, &ids, &n, &err)) cli_fail(1, "%s", err.msg);
    printf("%zu tokens: ", n);
    put_ids(stdout, ids, n);
    putchar('\n');
    for (size_t i = 0; i < n; i++) {
        size_t dn;
        char *piece = kiln_decode(t, &ids[i], 1, false, &dn);
        const char *raw = kiln_token_str(t, ids[i]);
        printf("%8d  ", ids[i]);
        put_json_string(stdout, piece, dn);
        printf("  (%s%s)\n", raw ? raw : "?", kiln_token_is_special(t, ids[i]) ? ", special" : "");
        free(piece);
    }
    free(ids);
}

/* One stdin line → one stdout line. Returns false for a malformed line. */
static bool one_line(const kiln_tokenizer *t, const char *line, size_t len, bool special, long lineno) {
    json_error_t je;
    json_t *j = json_loadb(line, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
    if (!json_is_string(j)) {
        char msg[300];
        snprintf(msg, sizeof msg, "line %ld: expected one JSON string%s%s", lineno, j ? "" : ": ", j ? "" : je.text);
        fputs("{\"error\":", stdout), put_json_string(stdout, msg, strlen(msg)), fputs("}\n", stdout);
        json_decref(j);
        return false;
    }
    int32_t *ids;
    size_t n, dn;
    kiln_err err = {0};
    if (kiln_encode(t, json_string_value(j), json_string_length(j), special, &ids, &n, &err)) cli_fail(1, "%s", err.msg);
    char *dec = kiln_decode(t, ids, n, false, &dn);
    fputs("{\"ids\":", stdout), put_ids(stdout, ids, n);
    fputs(",\"decoded\":", stdout), put_json_string(stdout, dec, dn), fputs("}\n", stdout);
    free(dec), free(ids), json_decref(j);
    return true;
}

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL, *text = NULL;
    bool special = false;
    const cli_flag flags[] = {
        CLI_MODEL_FLAG(&model),
        {"--special", NULL, NULL, "add special tokens as the tokenizer's post-processor says (BOS...)", CLI_SWITCH_TO(&special)},
        {"--text", NULL, "TEXT", "tokenize TEXT and show ids and token pieces, for humans", CLI_STR_TO(&text)},
        {0},
    };
    const cli_spec spec = {.name = "tokenize", .usage = "--model DIR [--special] [--text TEXT]",
                           .about = "Encodes text with the model's tokenizer. stdin: one JSON string per line →\n"
                           "{\"ids\":[...],\"decoded\":\"...\"} per line on stdout.",
                           .flags = flags};
    cli_parse(argc, argv, &spec);
    if (!model) cli_fail(2, "--model DIR is required");
    kiln_err err = {0};
    kiln_tokenizer *t = kiln_tokenizer_open(cli_model_dir(model), &err);
    if (!t) cli_fail(1, "%s", err.msg);
    int rc = 0;
    if (text) {
        human(t, text, special);
    } else {
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        long lineno = 0;
        while ((len = getline(&line, &cap, stdin)) >= 0) {
            lineno++;
            while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
            if (!one_line(t, line, (size_t)len, special, lineno)) rc = 1;
            fflush(stdout);
        }
        free(line);
    }
    kiln_tokenizer_free(t);
    return rc;
}
