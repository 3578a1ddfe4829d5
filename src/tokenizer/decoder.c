/* decoder.c — HF decoders: ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace, Sequence.
 * Each works on a list of token strings (decode_chain), as the tokenizers crate does. */
#include <stdlib.h>
#include <string.h>

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
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "decoders");
        d->kind = D_SEQ;
        d->kids = calloc(json_array_size(arr) + 1, sizeof *d->kids);
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
        d->start = (int)json_integer_value(json_object_get(j, "start"));
        d->stop = (int)json_integer_value(json_object_get(j, "stop"));
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
    return d;
}

/* A token list: each token a tk_buf. */
typedef struct {
    tk_buf *t;
    size_t n;
} toklist;

static void tl_free(toklist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->t[i].p);
    free(l->t);
}

static int byte_token(const tk_buf *t) { /* "<0xAB>" → 0xAB, else -1 */
    if (t->n != 6 || memcmp(t->p, "<0x", 3) || t->p[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = t->p[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

static bool valid_utf8(const char *s, size_t n) {
    tk_buf b = {0};
    tk_utf8_lossy(&b, s, n);
    bool ok = b.n == n && (n == 0 || !memcmp(b.p, s, n));
    free(b.p);
    return ok;
}

static void run(const tk_decoder *d, toklist *l, bool stream) {
    switch (d->kind) {
    case D_SEQ:
        for (size_t i = 0; i < d->n_kids; i++) run(d->kids[i], l, stream);
        return;
    case D_BYTELEVEL: { /* all tokens → bytes, fused (lossy conversion happens at the very end) */
        tk_buf all = {0};
        for (size_t i = 0; i < l->n; i++) {
            const unsigned char *s = (const unsigned char *)l->t[i].p;
            for (size_t k = 0; k < l->t[i].n;) {
                uint32_t cp;
                int cl = tk_utf8_len(s[k]);
                if (cl == 2 && k + 1 < l->t[i].n) cp = ((s[k] & 0x1Fu) << 6) | (s[k + 1] & 0x3Fu);
                else cp = s[k], cl = cl == 1 ? 1 : cl;
                int b = cl <= 2 ? tk_unicode_to_byte(cp) : -1;
                if (b >= 0) tk_buf_addc(&all, (char)b);
                else tk_buf_add(&all, s + k, (size_t)cl); /* not in the map: keep as is */
                k += (size_t)cl;
            }
        }
        tl_free(l);
        l->t = calloc(1, sizeof *l->t), l->n = 1, l->t[0] = all;
        if (!all.p) tk_buf_add(&l->t[0], "", 0);
        return;
    }
    case D_REPLACE:
        for (size_t i = 0; i < l->n; i++) {
            tk_buf o = {0};
            size_t pn = strlen(d->a), j = 0;
            while (j < l->t[i].n) {
                if (j + pn <= l->t[i].n && !memcmp(l->t[i].p + j, d->a, pn)) tk_buf_add(&o, d->b, strlen(d->b)), j += pn;
                else tk_buf_addc(&o, l->t[i].p[j++]);
            }
            if (!o.p) tk_buf_add(&o, "", 0);
            free(l->t[i].p), l->t[i] = o;
        }
        return;
    case D_BYTEFALLBACK: {
        toklist o = {calloc(l->n + 1, sizeof(tk_buf)), 0};
        for (size_t i = 0; i < l->n;) {
            if (byte_token(&l->t[i]) < 0) {
                o.t[o.n++] = l->t[i], l->t[i].p = NULL, i++;
                continue;
            }
            tk_buf bytes = {0};
            size_t j = i;
            while (j < l->n && byte_token(&l->t[j]) >= 0) tk_buf_addc(&bytes, (char)byte_token(&l->t[j++]));
            bool at_end = j == l->n;
            if (valid_utf8(bytes.p, bytes.n) ||
                (stream && at_end && valid_utf8(bytes.p, bytes.n - tk_utf8_incomplete_tail(bytes.p, bytes.n)))) {
                o.t[o.n++] = bytes;
            } else { /* tokenizers: each byte of an invalid run becomes U+FFFD */
                for (size_t k = i; k < j; k++) {
                    o.t[o.n] = (tk_buf){0};
                    tk_buf_add(&o.t[o.n++], "\xEF\xBF\xBD", 3);
                }
                free(bytes.p);
            }
            i = j;
        }
        tl_free(l);
        *l = o;
        return;
    }
    case D_FUSE: {
        tk_buf all = {0};
        for (size_t i = 0; i < l->n; i++) tk_buf_add(&all, l->t[i].p, l->t[i].n);
        if (!all.p) tk_buf_add(&all, "", 0);
        tl_free(l);
        l->t = calloc(1, sizeof *l->t), l->n = 1, l->t[0] = all;
        return;
    }
    case D_STRIP: { /* per token: drop up to `start` leading and `stop` trailing copies of content (one char) */
        size_t cn = strlen(d->a);
        for (size_t i = 0; i < l->n; i++) {
            tk_buf *t = &l->t[i];
            size_t s = 0, e = t->n;
            for (int k = 0; k < d->start && s + cn <= e && !memcmp(t->p + s, d->a, cn); k++) s += cn;
            for (int k = 0; k < d->stop && e >= s + cn && !memcmp(t->p + e - cn, d->a, cn); k++) e -= cn;
            memmove(t->p, t->p + s, e - s), t->n = e - s, t->p[t->n] = 0;
        }
        return;
    }
    case D_METASPACE: {
        size_t rn = strlen(d->a);
        for (size_t i = 0; i < l->n; i++) {
            tk_buf o = {0};
            for (size_t j = 0; j < l->t[i].n;) {
                if (j + rn <= l->t[i].n && !memcmp(l->t[i].p + j, d->a, rn)) {
                    if (!(i == 0 && j == 0 && d->prepend)) tk_buf_addc(&o, ' ');
                    j += rn;
                } else tk_buf_addc(&o, l->t[i].p[j++]);
            }
            if (!o.p) tk_buf_add(&o, "", 0);
            free(l->t[i].p), l->t[i] = o;
        }
        return;
    }
    }
}

void tk_decode_tokens(const tk_decoder *d, const char **toks, size_t n, bool stream, tk_buf *out) {
    toklist l = {calloc(n + 1, sizeof(tk_buf)), n};
    for (size_t i = 0; i < n; i++) tk_buf_add(&l.t[i], toks[i], strlen(toks[i]));
    if (d) run(d, &l, stream);
    for (size_t i = 0; i < l.n; i++) tk_buf_add(out, l.t[i].p, l.t[i].n);
    tl_free(&l);
}
