/* normalizer.c — HF tokenizers normalizers: Sequence, Prepend, Replace (string), NFC/NFD/NFKC/NFKD
 * (via ICU), Lowercase (ASCII + ICU for the rest is not needed by the models we target: ASCII only). */
#include <stdint.h>
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
    if (!n) return kiln_err_set(err, TK_OOM), NULL;
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "normalizers");
        n->kind = N_SEQ;
        n->kids = calloc(json_array_size(arr) + 1, sizeof *n->kids);
        if (!n->kids) return tk_normalizer_free(n), kiln_err_set(err, TK_OOM), NULL;
        for (size_t i = 0; i < json_array_size(arr); i++) {
            kiln_err e = {0};
            tk_normalizer *k = tk_normalizer_load(json_array_get(arr, i), &e);
            if (!k && e.msg[0]) return tk_normalizer_free(n), kiln_err_set(err, "%s", e.msg), NULL;
            if (k) n->kids[n->n_kids++] = k;
        }
    } else if (!strcmp(type, "Prepend")) {
        n->kind = N_PREPEND, n->a = jstr_dup(j, "prepend");
        if (!n->a) /* HF requires the string; without it there is nothing to prepend */
            return tk_normalizer_free(n), kiln_err_set(err, json_is_string(json_object_get(j, "prepend")) ? TK_OOM
                                       : "tokenizer.json: Prepend normalizer without a 'prepend' string"), NULL;
    } else if (!strcmp(type, "Replace")) {
        n->kind = N_REPLACE;
        n->a = jstr_dup(json_object_get(j, "pattern"), "String");
        n->b = jstr_dup(j, "content");
        const char *pat = json_string_value(json_object_get(json_object_get(j, "pattern"), "String"));
        const char *content = json_string_value(json_object_get(j, "content"));
        if (pat && pat[0] && content && (!n->a || !n->b)) return tk_normalizer_free(n), kiln_err_set(err, TK_OOM), NULL;
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

/* Appends n bytes unless out would then pass limit. */
static int put_bounded(strbuf *out, const char *s, size_t n, size_t limit) {
    if (n > limit || out->len > limit - n) return TK_TOO_LONG;
    return strbuf_put(out, s, n);
}

static int replace_all(const char *s, size_t len, const char *pat, const char *rep, size_t limit, strbuf *out) {
    size_t pn = strlen(pat), rn = strlen(rep), i = 0;
    while (i < len) {
        const char *hit = pn <= len - i ? memmem(s + i, len - i, pat, pn) : NULL;
        if (!hit) break;
        int rc = put_bounded(out, s + i, (size_t)(hit - s) - i, limit);
        if (rc || (rc = put_bounded(out, rep, rn, limit))) return rc;
        i = (size_t)(hit - s) + pn;
    }
    return put_bounded(out, s + i, len - i, limit);
}

/* UTF-8 → UTF-16 → normal form → UTF-8 through ICU; ICU's own failures (text it cannot convert) leave
 * the text as it was, out of memory is an error. */
static int unicode_normalize(const UNormalizer2 *icu, const char *s, size_t len, strbuf *out) {
    size_t i = 0;
    while (i < len && (unsigned char)s[i] < 0x80) i++;
    if (i == len) return strbuf_put(out, s, len); /* ASCII is already in every normal form */
    if (len > INT32_MAX / 8) return -1;                 /* ICU lengths are int32 */
    UErrorCode ue = U_ZERO_ERROR;
    int32_t n16 = 0;
    u_strFromUTF8(NULL, 0, &n16, s, (int32_t)len, &ue);
    ue = U_ZERO_ERROR;
    int32_t cap = n16 * 4 + 16;
    UChar *src = malloc(((size_t)n16 + 1) * sizeof(UChar)), *dst = malloc((size_t)cap * sizeof(UChar));
    char *o = NULL;
    int rc = -1;
    if (!src || !dst) goto done;
    u_strFromUTF8(src, n16 + 1, NULL, s, (int32_t)len, &ue);
    ue = U_ZERO_ERROR;
    int32_t nd = unorm2_normalize(icu, src, n16, dst, cap, &ue);
    if (U_FAILURE(ue)) {
        rc = strbuf_put(out, s, len);
        goto done;
    }
    int32_t n8 = 0;
    ue = U_ZERO_ERROR;
    u_strToUTF8(NULL, 0, &n8, dst, nd, &ue);
    if (!(o = malloc((size_t)n8 + 1))) goto done;
    ue = U_ZERO_ERROR;
    u_strToUTF8(o, n8 + 1, NULL, dst, nd, &ue);
    rc = strbuf_put(out, o, (size_t)n8);
done:
    free(src), free(dst), free(o);
    return rc;
}

static int normalize_seq(const tk_normalizer *n, const char *s, size_t len, size_t limit, strbuf *out) {
    strbuf cur = {0}, nxt = {0};
    int rc = strbuf_put(&cur, s, len);
    for (size_t i = 0; !rc && i < n->n_kids; i++) {
        strbuf_clear(&nxt);
        rc = tk_normalize(n->kids[i], cur.p, cur.len, limit, &nxt);
        strbuf t = cur;
        cur = nxt, nxt = t;
    }
    if (!rc) rc = put_bounded(out, cur.p, cur.len, limit);
    strbuf_free(&cur), strbuf_free(&nxt);
    return rc;
}

static int normalize_one(const tk_normalizer *n, const char *s, size_t len, size_t limit, strbuf *out) {
    switch (n->kind) {
    case N_SEQ: return normalize_seq(n, s, len, limit, out);
    case N_PREPEND: /* HF prepends only to non-empty text */
        return (len && strbuf_puts(out, n->a)) || strbuf_put(out, s, len) ? -1 : 0;
    case N_REPLACE: return replace_all(s, len, n->a, n->b, limit, out);
    case N_UNICODE: return unicode_normalize(n->icu, s, len, out);
    case N_LOWER:
        if (strbuf_reserve(out, len)) return -1;
        for (size_t i = 0; i < len; i++) strbuf_putc(out, (s[i] >= 'A' && s[i] <= 'Z') ? (char)(s[i] + 32) : s[i]);
        return 0;
    }
    return 0;
}

int tk_normalize(const tk_normalizer *n, const char *s, size_t len, size_t limit, strbuf *out) {
    if (!n) return strbuf_put(out, s, len);
    int rc = normalize_one(n, s, len, limit, out);
    return rc ? rc : out->len > limit ? TK_TOO_LONG : 0;
}
