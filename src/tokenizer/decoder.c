/* decoder.c — HF decoders: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence.
 * Each works on a list of token strings (decode_chain), as the tokenizers crate does. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_get.h"
#include "tokenizer/tok_internal.h"

typedef enum { D_SEQ, D_BYTELEVEL, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_METASPACE } d_kind;

struct tk_decoder {
    d_kind kind;
    char *a, *b;
    int start, stop;
    int prepend;
    tk_decoder **kids;
    size_t n_kids;
};

void tk_decoder_free(tk_decoder *d) {
    if (!d) return;
    for (size_t i = 0; i < d->n_kids; i++) tk_decoder_free(d->kids[i]);
    free(d->kids), free(d->a), free(d->b), free(d);
}

tk_decoder *tk_decoder_load(json_t *j, kiln_err *err) {
    if (!j || json_is_null(j)) return NULL;
    tk_bytelevel_init();
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return kiln_err_set(err, "tokenizer.json: decoder without a type"), NULL;
    tk_decoder *d = calloc(1, sizeof *d);
    if (!d) return kiln_err_set(err, TK_OOM), NULL;
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "decoders");
        d->kind = D_SEQ;
        d->kids = calloc(json_array_size(arr) + 1, sizeof *d->kids);
        if (!d->kids) return tk_decoder_free(d), kiln_err_set(err, TK_OOM), NULL;
        for (size_t i = 0; i < json_array_size(arr); i++) {
            kiln_err e = {0};
            tk_decoder *k = tk_decoder_load(json_array_get(arr, i), &e);
            if (!k && e.msg[0]) return tk_decoder_free(d), kiln_err_set(err, "%s", e.msg), NULL;
            if (k) d->kids[d->n_kids++] = k;
        }
    } else if (!strcmp(type, "ByteLevel")) {
        d->kind = D_BYTELEVEL;
    } else if (!strcmp(type, "Replace")) {
        const char *p = json_string_value(json_object_get(json_object_get(j, "pattern"), "String"));
        const char *c = json_string_value(json_object_get(j, "content"));
        if (!p || !p[0] || !c) return tk_decoder_free(d), kiln_err_set(err, "tokenizer.json: Replace decoder: only String patterns are supported"), NULL;
        d->kind = D_REPLACE, d->a = strdup(p), d->b = strdup(c);
    } else if (!strcmp(type, "ByteFallback")) {
        d->kind = D_BYTEFALLBACK;
    } else if (!strcmp(type, "Fuse")) {
        d->kind = D_FUSE;
    } else if (!strcmp(type, "Strip")) {
        const char *c = json_string_value(json_object_get(j, "content"));
        d->kind = D_STRIP, d->a = strdup(c ? c : " ");
        long long start = 0, stop = 0; /* usize in tokenizers; more than a token's length strips it all */
        if (json_int_value(json_object_get(j, "start"), 0, INT_MAX, &start) && json_object_get(j, "start"))
            return tk_decoder_free(d), kiln_err_set(err, "tokenizer.json: Strip decoder: 'start' must be a non-negative integer"), NULL;
        if (json_int_value(json_object_get(j, "stop"), 0, INT_MAX, &stop) && json_object_get(j, "stop"))
            return tk_decoder_free(d), kiln_err_set(err, "tokenizer.json: Strip decoder: 'stop' must be a non-negative integer"), NULL;
        d->start = (int)start, d->stop = (int)stop;
    } else if (!strcmp(type, "Metaspace")) {
        const char *rep = json_string_value(json_object_get(j, "replacement"));
        const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
        json_t *aps = json_object_get(j, "add_prefix_space");
        d->kind = D_METASPACE, d->a = strdup(rep ? rep : "\xE2\x96\x81");
        d->prepend = scheme ? strcmp(scheme, "never") != 0 : (aps ? json_is_true(aps) : true);
    } else {
        tk_decoder_free(d);
        kiln_err_set(err, "tokenizer.json: unsupported decoder type \"%s\"", type);
        return NULL;
    }
    bool needs_a = d->kind == D_REPLACE || d->kind == D_STRIP || d->kind == D_METASPACE;
    if ((needs_a && !d->a) || (d->kind == D_REPLACE && !d->b)) return tk_decoder_free(d), kiln_err_set(err, TK_OOM), NULL;
    return d;
}

/* A token list: each token a strbuf. */
typedef struct {
    strbuf *t;
    size_t n;
} toklist;

static void tl_free(toklist *l) {
    for (size_t i = 0; i < l->n; i++) strbuf_free(&l->t[i]);
    free(l->t);
    l->t = NULL, l->n = 0;
}

/* Replaces the whole list by one token (ByteLevel, Fuse); on failure `all` is freed, l kept. */
static int tl_set_one(toklist *l, strbuf *all) {
    strbuf *t = calloc(1, sizeof *t);
    if (!t || (!all->p && strbuf_put(all, "", 0))) return free(t), strbuf_free(all), -1;
    tl_free(l);
    l->t = t, l->n = 1, l->t[0] = *all;
    return 0;
}

static int byte_token(const strbuf *t) { /* "<0xAB>" → 0xAB, else -1 */
    if (t->len != 6 || memcmp(t->p, "<0x", 3) || t->p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = t->p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* All tokens → bytes, fused (the lossy conversion happens at the very end). */
static int run_bytelevel(toklist *l) {
    strbuf all = {0};
    for (size_t i = 0; i < l->n; i++) {
        const unsigned char *s = (const unsigned char *)l->t[i].p;
        for (size_t k = 0; k < l->t[i].len;) {
            uint32_t cp;
            int cl = tk_utf8_len(s[k]);
            if ((size_t)cl > l->t[i].len - k) cl = (int)(l->t[i].len - k); /* a cut sequence: its bytes */
            if (cl == 2 && k + 1 < l->t[i].len) cp = ((s[k] & 0x1Fu) << 6) | (s[k + 1] & 0x3Fu);
            else cp = s[k];
            int b = cl <= 2 ? tk_unicode_to_byte(cp) : -1;
            /* not in the map: kept as is */
            if (b >= 0 ? strbuf_putc(&all, (char)b) : strbuf_put(&all, s + k, (size_t)cl)) return strbuf_free(&all), -1;
            k += (size_t)cl;
        }
    }
    return tl_set_one(l, &all);
}

/* Each token: every occurrence of `pat` → `rep`; Metaspace is this with ' ' (none at the very start
 * when it prepends). */
static int replace_tokens(toklist *l, const char *pat, const char *rep, bool skip_first) {
    size_t pn = strlen(pat), rn = strlen(rep);
    for (size_t i = 0; i < l->n; i++) {
        strbuf o = {0};
        int rc = strbuf_put(&o, "", 0);
        for (size_t j = 0; !rc && j < l->t[i].len;) {
            if (j + pn <= l->t[i].len && !memcmp(l->t[i].p + j, pat, pn)) {
                if (!(skip_first && i == 0 && j == 0)) rc = strbuf_put(&o, rep, rn);
                j += pn;
            } else {
                rc = strbuf_putc(&o, l->t[i].p[j++]);
            }
        }
        if (rc) return strbuf_free(&o), -1;
        strbuf_free(&l->t[i]), l->t[i] = o;
    }
    return 0;
}

/* A run of <0xXX> tokens [i, j) → one token of those bytes if they are valid UTF-8 (or, streaming, a
 * valid prefix cut at the end), else one U+FFFD per byte as tokenizers does. */
static int fallback_run(const toklist *l, size_t i, size_t j, bool stream, toklist *o) {
    strbuf bytes = {0};
    for (size_t k = i; k < j; k++)
        if (strbuf_putc(&bytes, (char)byte_token(&l->t[k]))) return strbuf_free(&bytes), -1;
    bool ok = tk_utf8_valid(bytes.p, bytes.len);
    if (!ok && stream && j == l->n)
        ok = tk_utf8_valid(bytes.p, bytes.len - tk_utf8_incomplete_tail(bytes.p, bytes.len));
    if (ok) {
        o->t[o->n++] = bytes;
        return 0;
    }
    strbuf_free(&bytes);
    for (size_t k = i; k < j; k++) {
        o->t[o->n] = (strbuf){0};
        if (strbuf_put(&o->t[o->n++], "\xEF\xBF\xBD", 3)) return -1;
    }
    return 0;
}

static int run_bytefallback(toklist *l, bool stream) {
    toklist o = {calloc(l->n + 1, sizeof(strbuf)), 0};
    if (!o.t) return -1;
    for (size_t i = 0; i < l->n;) {
        if (byte_token(&l->t[i]) < 0) {
            o.t[o.n++] = l->t[i], l->t[i] = (strbuf){0}, i++;
            continue;
        }
        size_t j = i;
        while (j < l->n && byte_token(&l->t[j]) >= 0) j++;
        if (fallback_run(l, i, j, stream, &o)) return tl_free(&o), -1;
        i = j;
    }
    tl_free(l);
    *l = o;
    return 0;
}

static int run_fuse(toklist *l) {
    strbuf all = {0};
    for (size_t i = 0; i < l->n; i++)
        if (strbuf_put(&all, l->t[i].p, l->t[i].len)) return strbuf_free(&all), -1;
    return tl_set_one(l, &all);
}

/* Per token: drop up to `start` leading and `stop` trailing copies of content (one char). */
static void run_strip(const tk_decoder *d, toklist *l) {
    size_t cn = strlen(d->a);
    for (size_t i = 0; i < l->n; i++) {
        strbuf *t = &l->t[i];
        size_t s = 0, e = t->len;
        for (int k = 0; k < d->start && s + cn <= e && !memcmp(t->p + s, d->a, cn); k++) s += cn;
        for (int k = 0; k < d->stop && e >= s + cn && !memcmp(t->p + e - cn, d->a, cn); k++) e -= cn;
        if (t->p) memmove(t->p, t->p + s, e - s), t->len = e - s, t->p[t->len] = 0;
    }
}

static int run(const tk_decoder *d, toklist *l, bool stream) {
    switch (d->kind) {
    case D_SEQ:
        for (size_t i = 0; i < d->n_kids; i++)
            if (run(d->kids[i], l, stream)) return -1;
        return 0;
    case D_BYTELEVEL: return run_bytelevel(l);
    case D_REPLACE: return replace_tokens(l, d->a, d->b, false);
    case D_BYTEFALLBACK: return run_bytefallback(l, stream);
    case D_FUSE: return run_fuse(l);
    case D_STRIP: run_strip(d, l); return 0;
    case D_METASPACE: return replace_tokens(l, d->a, " ", d->prepend);
    }
    return 0;
}

int tk_decode_tokens(const tk_decoder *d, const char **toks, size_t n, bool stream, strbuf *out) {
    toklist l = {calloc(n + 1, sizeof(strbuf)), n};
    int rc = l.t ? 0 : -1;
    for (size_t i = 0; !rc && i < n; i++) rc = strbuf_puts(&l.t[i], toks[i]);
    if (!rc && d) rc = run(d, &l, stream);
    for (size_t i = 0; !rc && i < l.n; i++) rc = strbuf_put(out, l.t[i].p, l.t[i].len);
    if (l.t) tl_free(&l);
    return rc ? -1 : 0;
}
