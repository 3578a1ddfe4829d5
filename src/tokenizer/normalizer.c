/* normalizer.c — HF tokenizers normalizers: Sequence, Prepend, Replace (string), NFC/NFD/NFKC/NFKD
 * (via ICU), Lowercase (ASCII + ICU for the rest is not needed by the models we target: ASCII only). */
#include <stdlib.h>
#include <string.h>
#include <unicode/unorm2.h>
#include <unicode/ustring.h>

#include "tokenizer/tok_internal.h"

typedef enum { N_SEQ, N_PREPEND, N_REPLACE, N_UNICODE, N_LOWER } n_kind;

struct tk_normalizer {
    n_kind kind;
    char *a, *b; /* Prepend: a; Replace: pattern a → content b */
    const UNormalizer2 *icu;
    tk_normalizer **kids;
    size_t n_kids;
};

void tk_normalizer_free(tk_normalizer *n) {
    if (!n) return;
    for (size_t i = 0; i < n->n_kids; i++) tk_normalizer_free(n->kids[i]);
    free(n->kids), free(n->a), free(n->b), free(n);
}

static char *jstr_dup(json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? strdup(s) : NULL;
}

tk_normalizer *tk_normalizer_load(json_t *j, kiln_err *err) {
    if (!j || json_is_null(j)) return NULL;
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return kiln_err_set(err, "tokenizer.json: normalizer without a type"), NULL;
    tk_normalizer *n = calloc(1, sizeof *n);
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "normalizers");
        n->kind = N_SEQ;
        n->kids = calloc(json_array_size(arr) + 1, sizeof *n->kids);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            kiln_err e = {0};
            tk_normalizer *k = tk_normalizer_load(json_array_get(arr, i), &e);
            if (!k && e.msg[0]) return tk_normalizer_free(n), kiln_err_set(err, "%s", e.msg), NULL;
            if (k) n->kids[n->n_kids++] = k;
        }
    } else if (!strcmp(type, "Prepend")) {
        n->kind = N_PREPEND, n->a = jstr_dup(j, "prepend");
    } else if (!strcmp(type, "Replace")) {
        n->kind = N_REPLACE;
        n->a = jstr_dup(json_object_get(j, "pattern"), "String");
        n->b = jstr_dup(j, "content");
        if (!n->a || !n->b || !n->a[0])
            return tk_normalizer_free(n), kiln_err_set(err, "tokenizer.json: Replace normalizer: only non-empty String patterns are supported"), NULL;
    } else if (!strcmp(type, "NFC") || !strcmp(type, "NFD") || !strcmp(type, "NFKC") || !strcmp(type, "NFKD")) {
        UErrorCode ue = U_ZERO_ERROR;
        n->kind = N_UNICODE;
        n->icu = !strcmp(type, "NFC") ? unorm2_getNFCInstance(&ue) : !strcmp(type, "NFD") ? unorm2_getNFDInstance(&ue)
               : !strcmp(type, "NFKC") ? unorm2_getNFKCInstance(&ue) : unorm2_getNFKDInstance(&ue);
        if (U_FAILURE(ue)) return tk_normalizer_free(n), kiln_err_set(err, "ICU: %s normalizer unavailable", type), NULL;
    } else if (!strcmp(type, "Lowercase")) {
        n->kind = N_LOWER;
    } else {
        tk_normalizer_free(n);
        kiln_err_set(err, "tokenizer.json: unsupported normalizer type \"%s\"", type);
        return NULL;
    }
    return n;
}

static void replace_all(const char *s, size_t len, const char *pat, const char *rep, tk_buf *out) {
    size_t pn = strlen(pat), rn = strlen(rep), i = 0;
    while (i < len) {
        const char *hit = pn <= len - i ? memmem(s + i, len - i, pat, pn) : NULL;
        if (!hit) break;
        tk_buf_add(out, s + i, (size_t)(hit - s) - i);
        tk_buf_add(out, rep, rn);
        i = (size_t)(hit - s) + pn;
    }
    tk_buf_add(out, s + i, len - i);
}

static void unicode_normalize(const UNormalizer2 *icu, const char *s, size_t len, tk_buf *out) {
    size_t i = 0;
    while (i < len && (unsigned char)s[i] < 0x80) i++;
    if (i == len) return tk_buf_add(out, s, len); /* ASCII is already in every normal form */
    UErrorCode ue = U_ZERO_ERROR;
    int32_t n16 = 0;
    u_strFromUTF8(NULL, 0, &n16, s, (int32_t)len, &ue);
    ue = U_ZERO_ERROR;
    UChar *src = malloc(((size_t)n16 + 1) * sizeof(UChar));
    u_strFromUTF8(src, n16 + 1, NULL, s, (int32_t)len, &ue);
    int32_t cap = n16 * 4 + 16;
    UChar *dst = malloc((size_t)cap * sizeof(UChar));
    ue = U_ZERO_ERROR;
    int32_t nd = unorm2_normalize(icu, src, n16, dst, cap, &ue);
    if (U_SUCCESS(ue)) {
        int32_t n8 = 0;
        ue = U_ZERO_ERROR;
        u_strToUTF8(NULL, 0, &n8, dst, nd, &ue);
        char *o = malloc((size_t)n8 + 1);
        ue = U_ZERO_ERROR;
        u_strToUTF8(o, n8 + 1, NULL, dst, nd, &ue);
        tk_buf_add(out, o, (size_t)n8);
        free(o);
    } else {
        tk_buf_add(out, s, len);
    }
    free(src), free(dst);
}

void tk_normalize(const tk_normalizer *n, const char *s, size_t len, tk_buf *out) {
    if (!n) return tk_buf_add(out, s, len);
    switch (n->kind) {
    case N_SEQ: {
        tk_buf cur = {0}, nxt = {0};
        tk_buf_add(&cur, s, len);
        for (size_t i = 0; i < n->n_kids; i++) {
            nxt.n = 0;
            tk_normalize(n->kids[i], cur.p, cur.n, &nxt);
            tk_buf t = cur;
            cur = nxt, nxt = t;
        }
        tk_buf_add(out, cur.p, cur.n);
        free(cur.p), free(nxt.p);
        return;
    }
    case N_PREPEND:
        if (len) tk_buf_add(out, n->a, strlen(n->a)); /* HF prepends only to non-empty text */
        return tk_buf_add(out, s, len);
    case N_REPLACE: return replace_all(s, len, n->a, n->b, out);
    case N_UNICODE: return unicode_normalize(n->icu, s, len, out);
    case N_LOWER:
        for (size_t i = 0; i < len; i++) tk_buf_addc(out, (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i]);
        return;
    }
}
