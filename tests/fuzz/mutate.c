/* mutate.c — the fuzz suite's mutators: blind byte edits, and structure-aware edits of JSON documents
 * (the seed is parsed with jansson, one node is picked, and the document is written back by our own
 * emitter so that it can also write what jansson never would: duplicate keys, very deep nesting,
 * non-finite and overlong numbers). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/fuzz.h"

uint64_t fuzz_next(fuzz_rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

uint64_t fuzz_below(fuzz_rng *r, uint64_t n) { return fuzz_next(r) % n; }

/* Numbers that break parsers and size computations. */
static const char *const odd_numbers[] = {
    "0", "-1", "1", "2", "255", "256", "65535", "65536", "2147483647", "2147483648", "-2147483648",
    "-2147483649", "4294967295", "4294967296", "4294967301", "9223372036854775807", "-9223372036854775808",
    "18446744073709551616", "99999999999999999999999999", "1e308", "-1e308", "1e999", "-1e999", "1e-320",
    "-0", "0.5", "-0.5", "1.5", "3.4e38", "1e10", "NaN", "Infinity", "-Infinity", "0x10", "01", "1e",
    "--1", "+1", ".5"};
#define N_ODD_NUMBERS (sizeof odd_numbers / sizeof *odd_numbers)

static const char *const odd_bytes = "\x00\x01\x7f\x80\xff\"\\{}[],:0-9eE.+nNtf \n\t\xc3\xe2\xf0";

void fuzz_mutate_bytes(fuzz_rng *r, const char *in, size_t n, strbuf *out, char *desc, size_t desc_cap) {
    strbuf_clear(out);
    strbuf_put(out, in, n);
    int edits = 1 + (int)fuzz_below(r, fuzz_below(r, 4) == 0 ? 16 : 3);
    size_t used = (size_t)snprintf(desc, desc_cap, "bytes:");
    for (int e = 0; e < edits && out->len > 0; e++) {
        size_t at = fuzz_below(r, out->len), len = out->len;
        const char *what;
        switch (fuzz_below(r, 7)) {
        case 0:
            out->p[at] ^= (char)(1u << fuzz_below(r, 8));
            what = "flip";
            break;
        case 1:
            out->p[at] = odd_bytes[fuzz_below(r, strlen(odd_bytes) + 1)];
            what = "byte";
            break;
        case 2:
            out->len = at; /* truncate */
            out->p[at] = 0;
            what = "truncate";
            break;
        case 3: { /* delete a chunk */
            size_t k = 1 + fuzz_below(r, len - at < 64 ? len - at : 64);
            memmove(out->p + at, out->p + at + k, len - at - k + 1);
            out->len -= k;
            what = "delete";
            break;
        }
        case 4: { /* copy a chunk from elsewhere over this place */
            size_t from = fuzz_below(r, len), k = 1 + fuzz_below(r, 64);
            if (from + k > len) k = len - from;
            if (at + k > len) k = len - at;
            memmove(out->p + at, out->p + from, k);
            what = "copy";
            break;
        }
        case 5: { /* insert a number */
            const char *num = odd_numbers[fuzz_below(r, N_ODD_NUMBERS)];
            strbuf tail = {0};
            strbuf_put(&tail, out->p + at, len - at);
            out->len = at;
            strbuf_puts(out, num);
            strbuf_put(out, tail.p ? tail.p : "", tail.len);
            strbuf_free(&tail);
            what = "number";
            break;
        }
        default: { /* repeat a chunk many times (lengths, nesting) */
            size_t k = 1 + fuzz_below(r, len - at < 16 ? len - at : 16), times = 2 + fuzz_below(r, 2000);
            strbuf tail = {0};
            strbuf_put(&tail, out->p + at, len - at);
            out->len = at;
            for (size_t t = 0; t < times; t++) strbuf_put(out, tail.p, k);
            strbuf_put(out, tail.p, tail.len);
            strbuf_free(&tail);
            what = "repeat";
            break;
        }
        }
        if (used < desc_cap) used += (size_t)snprintf(desc + used, desc_cap - used, " %s@%zu", what, at);
    }
}

/* ---- JSON ------------------------------------------------------------------------------------------ */

typedef enum {
    OP_TYPE,      /* replace by a value of another type */
    OP_NUMBER,    /* replace by an odd number (or arithmetic on the one there) */
    OP_STRING,    /* replace by an odd string */
    OP_DELETE,    /* drop the member / element */
    OP_DUP_KEY,   /* the member twice: the second with another value */
    OP_NEST,      /* wrap in many levels of [ ] or {"k": } */
    OP_REPEAT,    /* the element many times */
    OP_EMPTY,     /* container → empty */
    OP_SWAP,      /* array ↔ object */
    OP_RENAME,    /* the member's key changed */
    OP_COUNT
} json_op;
static const char *const op_names[] = {"type", "number", "string", "delete", "dup-key", "nest", "repeat",
                                       "empty", "swap", "rename"};

typedef struct jmut {
    fuzz_rng *r;
    const json_t *target;
    json_op op;
    strbuf *out;
} jmut;

static void emit_string(strbuf *o, const char *s, size_t n) {
    strbuf_putc(o, '"');
    for (size_t i = 0; i < n;) {
        size_t run = 0; /* bytes that need no escape, written at once */
        while (i + run < n && (unsigned char)s[i + run] >= 0x20 && s[i + run] != '"' && s[i + run] != '\\') run++;
        strbuf_put(o, s + i, run);
        i += run;
        if (i == n) break;
        unsigned char c = (unsigned char)s[i++];
        if (c == '"' || c == '\\') {
            strbuf_putc(o, '\\');
            strbuf_putc(o, (char)c);
        } else strbuf_printf(o, "\\u%04x", c);
    }
    strbuf_putc(o, '"');
}

/* s written `times` times (long strings, deep nesting) without a call per byte. */
static void put_repeat(strbuf *o, const char *s, size_t times) {
    size_t k = strlen(s);
    if (strbuf_reserve(o, k * times) != 0) return;
    for (size_t i = 0; i < times; i++) memcpy(o->p + o->len + i * k, s, k);
    o->len += k * times;
    o->p[o->len] = 0;
}

static void emit_plain(jmut *m, const json_t *v);

/* A replacement value for the target under m->op. */
static void emit_replacement(jmut *m, const json_t *v) {
    fuzz_rng *r = m->r;
    strbuf *o = m->out;
    switch (m->op) {
    case OP_NUMBER:
        if (json_is_integer(v) && fuzz_below(r, 2)) {
            long long x = json_integer_value(v);
            const long long deltas[] = {1, -1, 1000003, -1000003};
            switch (fuzz_below(r, 4)) {
            case 0: strbuf_printf(o, "%lld", -x); break;
            case 1: strbuf_printf(o, "%lld", x + deltas[fuzz_below(r, 4)]); break;
            case 2: strbuf_printf(o, "%lld%03d", x, (int)fuzz_below(r, 1000)); break; /* x * 1000 + k */
            default: strbuf_printf(o, "%lld.5", x); break;
            }
        } else strbuf_puts(o, odd_numbers[fuzz_below(r, N_ODD_NUMBERS)]);
        return;
    case OP_STRING: {
        static const char *const odd_strings[] = {"", " ", "\\u0000", "\\ud800", "\\udc00x", "\\u00ff\\uffff",
                                                  "{{ x }}", "{% if %}", "%s%n", "../../etc/passwd", "null",
                                                  "\xff\xfe", "\xc3", "\xe2\x82", "a\\u0000b"};
        size_t k = fuzz_below(r, 16);
        if (k < 15) {
            strbuf_putc(o, '"');
            strbuf_puts(o, odd_strings[k]); /* written raw: some are JSON escapes on purpose */
            strbuf_putc(o, '"');
        } else { /* a long string */
            size_t len = 1 + fuzz_below(r, fuzz_below(r, 4) == 0 ? 300000 : 3000);
            strbuf_putc(o, '"');
            put_repeat(o, "abcdefghijklmnopqrstuvwxyz", len / 26 + 1);
            strbuf_putc(o, '"');
        }
        return;
    }
    case OP_NEST: {
        size_t depth = 1 + fuzz_below(r, fuzz_below(r, 3) == 0 ? 100000 : 300);
        bool obj = fuzz_below(r, 2);
        put_repeat(o, obj ? "{\"k\":" : "[", depth);
        emit_plain(m, v);
        put_repeat(o, obj ? "}" : "]", depth);
        return;
    }
    case OP_EMPTY:
        strbuf_puts(o, json_is_object(v) ? "{}" : json_is_array(v) ? "[]" : json_is_string(v) ? "\"\"" : "0");
        return;
    case OP_SWAP:
        if (json_is_array(v)) {
            strbuf_putc(o, '{');
            for (size_t i = 0; i < json_array_size(v); i++) {
                strbuf_printf(o, "%s\"%zu\":", i ? "," : "", i);
                emit_plain(m, json_array_get(v, i));
            }
            strbuf_putc(o, '}');
        } else if (json_is_object(v)) {
            strbuf_putc(o, '[');
            const char *k;
            json_t *x;
            bool first = true;
            json_object_foreach((json_t *)v, k, x) {
                if (!first) strbuf_putc(o, ',');
                first = false;
                emit_plain(m, x);
            }
            strbuf_putc(o, ']');
        } else strbuf_puts(o, "[]");
        return;
    default: { /* OP_TYPE and the member ops' second value */
        static const char *const values[] = {"null", "true", "false", "0", "-1", "1.5", "\"\"", "\"x\"", "[]",
                                             "{}", "[0]", "[\"a\",1]", "{\"a\":1}", "[[[]]]", "[null]"};
        strbuf_puts(o, values[fuzz_below(r, sizeof values / sizeof *values)]);
        return;
    }
    }
}

static void emit_value(jmut *m, const json_t *v);

static void emit_plain(jmut *m, const json_t *v) {
    strbuf *o = m->out;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        strbuf_putc(o, '{');
        const char *k;
        json_t *x;
        bool first = true;
        json_object_foreach((json_t *)v, k, x) {
            bool is_target = x == m->target;
            if (is_target && m->op == OP_DELETE) continue;
            if (!first) strbuf_putc(o, ',');
            first = false;
            if (is_target && m->op == OP_RENAME) {
                static const char *const keys[] = {"", "type", "id", "vocab", "content", "\\u0000", "__proto__"};
                strbuf_printf(o, "\"%s\":", keys[fuzz_below(m->r, 7)]);
            } else {
                emit_string(o, k, strlen(k));
                strbuf_putc(o, ':');
            }
            emit_value(m, x);
            if (is_target && m->op == OP_DUP_KEY) { /* the same key again, with another value */
                strbuf_putc(o, ',');
                emit_string(o, k, strlen(k));
                strbuf_putc(o, ':');
                emit_replacement(m, x);
            }
        }
        strbuf_putc(o, '}');
        return;
    }
    case JSON_ARRAY:
        strbuf_putc(o, '[');
        for (size_t i = 0, n = 0; i < json_array_size(v); i++) {
            json_t *x = json_array_get(v, i);
            bool is_target = x == m->target;
            if (is_target && m->op == OP_DELETE) continue;
            size_t times = is_target && m->op == OP_REPEAT ? 2 + fuzz_below(m->r, 5000) : 1;
            for (size_t t = 0; t < times; t++) {
                if (n++) strbuf_putc(o, ',');
                emit_value(m, x);
            }
        }
        strbuf_putc(o, ']');
        return;
    case JSON_STRING: emit_string(o, json_string_value(v), json_string_length(v)); return;
    case JSON_INTEGER: strbuf_printf(o, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); return;
    case JSON_REAL: strbuf_printf(o, "%.17g", json_real_value(v)); return;
    case JSON_TRUE: strbuf_puts(o, "true"); return;
    case JSON_FALSE: strbuf_puts(o, "false"); return;
    default: strbuf_puts(o, "null"); return;
    }
}

static void emit_value(jmut *m, const json_t *v) {
    bool member_op = m->op == OP_DELETE || m->op == OP_DUP_KEY || m->op == OP_RENAME || m->op == OP_REPEAT;
    if (v == m->target && !member_op) emit_replacement(m, v);
    else emit_plain(m, v);
}

/* Every node of the document (depth first) with its path; shallow nodes listed again so that the pick
 * is not all vocabulary entries. */
typedef struct node_list {
    const json_t **v;
    char (*path)[96];
    size_t n, cap;
} node_list;

static void collect(node_list *l, const json_t *v, const char *path, int depth) {
    for (int rep = 0; rep < (depth <= 3 ? 40 : 1); rep++) {
        if (l->n == l->cap) return;
        l->v[l->n] = v;
        snprintf(l->path[l->n], sizeof l->path[0], "%s", path);
        l->n++;
    }
    char sub[96];
    if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x) {
            snprintf(sub, sizeof sub, "%s.%.40s", path, k);
            collect(l, x, sub, depth + 1);
        }
    } else if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            collect(l, json_array_get(v, i), sub, depth + 1);
        }
    }
}

int fuzz_mutate_json(fuzz_rng *r, const char *in, size_t n, strbuf *out, char *desc, size_t desc_cap) {
    json_t *doc = json_loadb(in, n, JSON_DECODE_ANY, NULL);
    if (!doc) return -1;
    node_list l = {.cap = 8192};
    l.v = malloc(l.cap * sizeof *l.v);
    l.path = malloc(l.cap * sizeof *l.path);
    if (!l.v || !l.path) {
        free(l.v);
        free(l.path);
        json_decref(doc);
        return -1;
    }
    collect(&l, doc, "$", 0);
    size_t k = fuzz_below(r, l.n);
    jmut m = {.r = r, .target = l.v[k], .op = (json_op)fuzz_below(r, OP_COUNT), .out = out};
    if (m.target == doc && (m.op == OP_DELETE || m.op == OP_DUP_KEY || m.op == OP_RENAME || m.op == OP_REPEAT))
        m.op = OP_TYPE; /* the root has no parent to do these in */
    snprintf(desc, desc_cap, "json: %s at %s", op_names[m.op], l.path[k]);
    strbuf_clear(out);
    emit_value(&m, doc);
    free(l.v);
    free(l.path);
    json_decref(doc);
    return 0;
}
