/* pretokenizer.c — HF pre-tokenizers: Split (PCRE2 regex with UTF+UCP, or a literal), ByteLevel
 * (GPT-2 regex + byte→unicode map), Metaspace, Sequence. Each stage maps every current piece to new
 * pieces, as the tokenizers crate does. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/tok_internal.h"

static const char *GPT2_RE = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

typedef enum { P_SEQ, P_SPLIT, P_BYTELEVEL, P_METASPACE } p_kind;
typedef enum { B_ISOLATED, B_REMOVED, B_PREV, B_NEXT, B_CONTIG } p_behavior;

struct tk_pretok {
    p_kind kind;
    pcre2_code *re;
    char *literal; /* Split with a String pattern */
    p_behavior behavior;
    bool invert, add_prefix_space, use_regex, split;
    char *replacement;
    int prepend; /* Metaspace: 0 never, 1 always, 2 first */
    tk_pretok **kids;
    size_t n_kids;
};

/* ---- the GPT-2 byte ↔ unicode map ---- */
const char *tk_byte_to_unicode[256];
static char b2u_store[256][4];
static int u2b[512];
static pthread_once_t bl_once = PTHREAD_ONCE_INIT;

static void bytelevel_build(void) {
    int n = 0;
    for (int i = 0; i < 512; i++) u2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        int cp = keep ? b : 256 + n++;
        if (cp < 0x80) b2u_store[b][0] = (char)cp;
        else b2u_store[b][0] = (char)(0xC0 | (cp >> 6)), b2u_store[b][1] = (char)(0x80 | (cp & 0x3F));
        tk_byte_to_unicode[b] = b2u_store[b];
        u2b[cp] = b;
    }
}
void tk_bytelevel_init(void) { pthread_once(&bl_once, bytelevel_build); }
int tk_unicode_to_byte(uint32_t cp) { return cp < 512 ? u2b[cp] : -1; }

void tk_pretok_free(tk_pretok *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_kids; i++) tk_pretok_free(p->kids[i]);
    if (p->re) pcre2_code_free(p->re);
    free(p->kids), free(p->literal), free(p->replacement), free(p);
}

static pcre2_code *compile(const char *pat, kiln_err *err) {
    int ec;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(ec, msg, sizeof msg);
        kiln_err_set(err, "tokenizer.json: pre-tokenizer regex at offset %zu: %s", (size_t)off, (char *)msg);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
    return re;
}

static bool jbool(json_t *o, const char *k, bool dflt) {
    json_t *v = json_object_get(o, k);
    return v ? json_is_true(v) : dflt;
}

tk_pretok *tk_pretok_load(json_t *j, kiln_err *err) {
    if (!j || json_is_null(j)) return NULL;
    tk_bytelevel_init();
    const char *type = json_string_value(json_object_get(j, "type"));
    if (!type) return kiln_err_set(err, "tokenizer.json: pre_tokenizer without a type"), NULL;
    tk_pretok *p = calloc(1, sizeof *p);
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "pretokenizers");
        p->kind = P_SEQ;
        p->kids = calloc(json_array_size(arr) + 1, sizeof *p->kids);
        for (size_t i = 0; i < json_array_size(arr); i++) {
            kiln_err e = {0};
            tk_pretok *k = tk_pretok_load(json_array_get(arr, i), &e);
            if (!k && e.msg[0]) return tk_pretok_free(p), kiln_err_set(err, "%s", e.msg), NULL;
            if (k) p->kids[p->n_kids++] = k;
        }
    } else if (!strcmp(type, "Split")) {
        json_t *pat = json_object_get(j, "pattern");
        const char *rx = json_string_value(json_object_get(pat, "Regex"));
        const char *lit = json_string_value(json_object_get(pat, "String"));
        const char *beh = json_string_value(json_object_get(j, "behavior"));
        p->kind = P_SPLIT;
        p->invert = jbool(j, "invert", false);
        if (rx) {
            if (!(p->re = compile(rx, err))) return tk_pretok_free(p), NULL;
        } else if (lit && lit[0]) {
            p->literal = strdup(lit);
        } else {
            return tk_pretok_free(p), kiln_err_set(err, "tokenizer.json: Split pre-tokenizer without a pattern"), NULL;
        }
        p->behavior = !beh || !strcmp(beh, "Isolated") ? B_ISOLATED : !strcmp(beh, "Removed") ? B_REMOVED
                    : !strcmp(beh, "MergedWithPrevious") ? B_PREV : !strcmp(beh, "MergedWithNext") ? B_NEXT : B_CONTIG;
    } else if (!strcmp(type, "ByteLevel")) {
        p->kind = P_BYTELEVEL;
        p->add_prefix_space = jbool(j, "add_prefix_space", true);
        p->use_regex = jbool(j, "use_regex", true);
        if (p->use_regex && !(p->re = compile(GPT2_RE, err))) return tk_pretok_free(p), NULL;
    } else if (!strcmp(type, "Metaspace")) {
        const char *rep = json_string_value(json_object_get(j, "replacement"));
        const char *scheme = json_string_value(json_object_get(j, "prepend_scheme"));
        p->kind = P_METASPACE;
        p->replacement = strdup(rep ? rep : "\xE2\x96\x81");
        p->split = jbool(j, "split", true);
        p->prepend = scheme ? (!strcmp(scheme, "always") ? 1 : !strcmp(scheme, "first") ? 2 : 0)
                            : (jbool(j, "add_prefix_space", true) ? 1 : 0);
    } else {
        tk_pretok_free(p);
        kiln_err_set(err, "tokenizer.json: unsupported pre_tokenizer type \"%s\"", type);
        return NULL;
    }
    return p;
}

/* ---- pieces: strings in one arena, addressed by offset ---- */
typedef struct {
    tk_buf data;
    size_t *off, *len, n, cap;
} pieces;

static void pieces_add(pieces *ps, const char *s, size_t n) {
    if (ps->n == ps->cap) {
        ps->cap = ps->cap ? ps->cap * 2 : 64;
        ps->off = realloc(ps->off, ps->cap * sizeof *ps->off);
        ps->len = realloc(ps->len, ps->cap * sizeof *ps->len);
    }
    ps->off[ps->n] = ps->data.n, ps->len[ps->n] = n, ps->n++;
    tk_buf_add(&ps->data, s, n);
}

static void pieces_free(pieces *ps) { free(ps->data.p), free(ps->off), free(ps->len); }

/* Finds the next match in s[from..n): returns false if none. */
static bool next_match(const tk_pretok *p, pcre2_match_data *md, const char *s, size_t n, size_t from, size_t *ms, size_t *me) {
    if (p->literal) {
        size_t ln = strlen(p->literal);
        const char *h = from + ln <= n ? memmem(s + from, n - from, p->literal, ln) : NULL;
        if (!h) return false;
        *ms = (size_t)(h - s), *me = *ms + ln;
        return true;
    }
    int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc < 0) return false;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0], *me = ov[1];
    return true;
}

/* Splits one piece by p's pattern with p's behavior (SplitDelimiterBehavior in tokenizers). */
static void split_piece(const tk_pretok *p, pcre2_match_data *md, const char *s, size_t n, pieces *out) {
    size_t pos = 0, from = 0, ms, me;
    size_t pend_start = 0; /* start of text held to merge with the next delimiter (B_NEXT) */
    bool have_prev_delim = false; /* for B_CONTIG */
    size_t contig_start = 0, contig_end = 0;
    while (from <= n && next_match(p, md, s, n, from, &ms, &me)) {
        if (me == ms) { /* empty match: advance one character */
            from = ms + (ms < n ? (size_t)tk_utf8_len((unsigned char)s[ms]) : 1);
            if (from > n) break;
            continue;
        }
        bool inv = p->invert;
        /* segments: [pos, ms) non-match, [ms, me) match — swapped roles when inverted */
        size_t gs = pos, ge = ms;
        switch (inv ? B_ISOLATED : p->behavior) {
        case B_ISOLATED:
            if (inv) { if (ms > pos) {} pieces_add(out, s + ms, me - ms); break; }
            if (ge > gs) pieces_add(out, s + gs, ge - gs);
            pieces_add(out, s + ms, me - ms);
            break;
        case B_REMOVED:
            if (ge > gs) pieces_add(out, s + gs, ge - gs);
            break;
        case B_PREV:
            pieces_add(out, s + gs, me - gs);
            break;
        case B_NEXT:
            if (ge > gs) pieces_add(out, s + pend_start, ge - pend_start);
            pend_start = ms;
            break;
        case B_CONTIG:
            if (have_prev_delim && ms == contig_end) { contig_end = me; break; }
            if (have_prev_delim) pieces_add(out, s + contig_start, contig_end - contig_start);
            if (ge > gs) pieces_add(out, s + gs, ge - gs);
            have_prev_delim = true, contig_start = ms, contig_end = me;
            break;
        }
        pos = me, from = me;
    }
    if (p->invert) return; /* inverted Isolated keeps only the matches (used by Split invert=true) */
    if (p->behavior == B_NEXT) {
        if (n > pend_start) pieces_add(out, s + pend_start, n - pend_start);
        return;
    }
    if (p->behavior == B_CONTIG && have_prev_delim) pieces_add(out, s + contig_start, contig_end - contig_start);
    if (n > pos) pieces_add(out, s + pos, n - pos);
}

static void bytelevel_map(const char *s, size_t n, pieces *out) {
    tk_buf b = {0};
    for (size_t i = 0; i < n; i++) {
        const char *u = tk_byte_to_unicode[(unsigned char)s[i]];
        tk_buf_add(&b, u, u[1] ? 2 : 1);
    }
    pieces_add(out, b.p ? b.p : "", b.n);
    free(b.p);
}

static void apply(const tk_pretok *p, pieces *in, pieces *out, pcre2_match_data *md) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = in->data.p + in->off[i];
        size_t n = in->len[i];
        switch (p->kind) {
        case P_SEQ: break;
        case P_SPLIT: split_piece(p, md, s, n, out); break;
        case P_BYTELEVEL: {
            tk_buf tmp = {0};
            if (p->add_prefix_space && !(n && s[0] == ' ')) tk_buf_addc(&tmp, ' ');
            tk_buf_add(&tmp, s, n);
            pieces sub = {0};
            if (p->use_regex) split_piece(p, md, tmp.p, tmp.n, &sub);
            else pieces_add(&sub, tmp.p, tmp.n);
            for (size_t k = 0; k < sub.n; k++) bytelevel_map(sub.data.p + sub.off[k], sub.len[k], out);
            pieces_free(&sub), free(tmp.p);
            break;
        }
        case P_METASPACE: {
            tk_buf tmp = {0};
            size_t rn = strlen(p->replacement);
            bool starts = n >= rn && !memcmp(s, p->replacement, rn);
            if ((p->prepend == 1 || (p->prepend == 2 && i == 0 && in->off[0] == 0)) && !(n && s[0] == ' ') && !starts)
                tk_buf_add(&tmp, p->replacement, rn);
            for (size_t k = 0; k < n; k++)
                if (s[k] == ' ') tk_buf_add(&tmp, p->replacement, rn);
                else tk_buf_addc(&tmp, s[k]);
            if (!p->split) {
                pieces_add(out, tmp.p ? tmp.p : "", tmp.n);
            } else {
                tk_pretok sp = {.kind = P_SPLIT, .literal = p->replacement, .behavior = B_NEXT};
                split_piece(&sp, md, tmp.p ? tmp.p : "", tmp.n, out);
            }
            free(tmp.p);
            break;
        }
        }
    }
}

static void run(const tk_pretok *p, pieces *ps, pcre2_match_data *md) {
    if (p->kind == P_SEQ) {
        for (size_t k = 0; k < p->n_kids; k++) run(p->kids[k], ps, md);
        return;
    }
    pieces out = {0};
    apply(p, ps, &out, md);
    pieces_free(ps);
    *ps = out;
}

void tk_pretokenize(const tk_pretok *p, const char *s, size_t n, tk_piece_fn fn, void *ctx) {
    if (!p) return fn(ctx, s, n);
    pieces ps = {0};
    pieces_add(&ps, s, n);
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    run(p, &ps, md);
    pcre2_match_data_free(md);
    for (size_t i = 0; i < ps.n; i++)
        if (ps.len[i]) fn(ctx, ps.data.p + ps.off[i], ps.len[i]);
    pieces_free(&ps);
}
