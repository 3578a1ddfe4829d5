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
    if (!p) return kiln_err_set(err, TK_OOM), NULL;
    if (!strcmp(type, "Sequence")) {
        json_t *arr = json_object_get(j, "pretokenizers");
        p->kind = P_SEQ;
        p->kids = calloc(json_array_size(arr) + 1, sizeof *p->kids);
        if (!p->kids) return tk_pretok_free(p), kiln_err_set(err, TK_OOM), NULL;
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
            if (!(p->literal = strdup(lit))) return tk_pretok_free(p), kiln_err_set(err, TK_OOM), NULL;
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
        if (!(p->replacement = strdup(rep ? rep : "\xE2\x96\x81")))
            return tk_pretok_free(p), kiln_err_set(err, TK_OOM), NULL;
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
    strbuf data;
    size_t *off, *len, n, cap;
} pieces;

static int pieces_add(pieces *ps, const char *s, size_t n) {
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 64;
        size_t *off = realloc(ps->off, cap * sizeof *off);
        if (!off) return -1;
        ps->off = off;
        size_t *len = realloc(ps->len, cap * sizeof *len);
        if (!len) return -1;
        ps->len = len, ps->cap = cap;
    }
    if (strbuf_put(&ps->data, s, n)) return -1;
    ps->off[ps->n] = ps->data.len - n, ps->len[ps->n] = n, ps->n++;
    return 0;
}

static void pieces_free(pieces *ps) { strbuf_free(&ps->data), free(ps->off), free(ps->len); }

/* Finds the next match in s[from..n): 1 and [*ms, *me), 0 if none, TK_REGEX_FAILED when PCRE2 gives up
 * (its match limit or its own memory): an error, never "no match". */
static int next_match(const tk_pretok *p, pcre2_match_data *md, const char *s, size_t n, size_t from, size_t *ms, size_t *me) {
    if (p->literal) {
        size_t ln = strlen(p->literal);
        const char *h = from + ln <= n ? memmem(s + from, n - from, p->literal, ln) : NULL;
        if (!h) return 0;
        *ms = (size_t)(h - s), *me = *ms + ln;
        return 1;
    }
    int rc = pcre2_match(p->re, (PCRE2_SPTR)s, n, from, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) return TK_REGEX_FAILED;
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0], *me = ov[1];
    return 1;
}

/* The state of one split: where the last match ended and what is held for the next delimiter. */
typedef struct {
    size_t pos;
    size_t pend_start;    /* start of text held to merge with the next delimiter (B_NEXT) */
    bool have_prev_delim; /* B_CONTIG */
    size_t contig_start, contig_end;
} split_state;

/* One match [ms, me) with the non-matching text before it, by p's behavior. */
static int split_one(const tk_pretok *p, split_state *st, const char *s, size_t ms, size_t me, pieces *out) {
    size_t gs = st->pos, ge = ms; /* [pos, ms) non-match, [ms, me) match */
    int rc = 0;
    switch (p->invert ? B_ISOLATED : p->behavior) {
    case B_ISOLATED:
        if (p->invert) { rc = pieces_add(out, s + ms, me - ms); break; } /* inverted: keep only the matches */
        if (ge > gs) rc = pieces_add(out, s + gs, ge - gs);
        if (!rc) rc = pieces_add(out, s + ms, me - ms);
        break;
    case B_REMOVED:
        if (ge > gs) rc = pieces_add(out, s + gs, ge - gs);
        break;
    case B_PREV: rc = pieces_add(out, s + gs, me - gs); break;
    case B_NEXT:
        if (ge > gs) rc = pieces_add(out, s + st->pend_start, ge - st->pend_start);
        st->pend_start = ms;
        break;
    case B_CONTIG:
        if (st->have_prev_delim && ms == st->contig_end) { st->contig_end = me; break; }
        if (st->have_prev_delim) rc = pieces_add(out, s + st->contig_start, st->contig_end - st->contig_start);
        if (!rc && ge > gs) rc = pieces_add(out, s + gs, ge - gs);
        st->have_prev_delim = true, st->contig_start = ms, st->contig_end = me;
        break;
    }
    st->pos = me;
    return rc;
}

/* Splits one piece by p's pattern with p's behavior (SplitDelimiterBehavior in tokenizers). */
static int split_piece(const tk_pretok *p, pcre2_match_data *md, const char *s, size_t n, pieces *out) {
    split_state st = {0};
    size_t from = 0, ms, me;
    int found;
    while (from <= n && (found = next_match(p, md, s, n, from, &ms, &me)) != 0) {
        if (found < 0) return found;
        if (me == ms) { /* empty match: advance one character */
            from = ms + (ms < n ? (size_t)tk_utf8_len((unsigned char)s[ms]) : 1);
            if (from > n) break;
            continue;
        }
        if (split_one(p, &st, s, ms, me, out)) return -1;
        from = me;
    }
    if (p->invert) return 0; /* inverted Isolated keeps only the matches (used by Split invert=true) */
    if (p->behavior == B_NEXT) return n > st.pend_start ? pieces_add(out, s + st.pend_start, n - st.pend_start) : 0;
    if (p->behavior == B_CONTIG && st.have_prev_delim &&
        pieces_add(out, s + st.contig_start, st.contig_end - st.contig_start))
        return -1;
    return n > st.pos ? pieces_add(out, s + st.pos, n - st.pos) : 0;
}

static int bytelevel_map(const char *s, size_t n, pieces *out) {
    strbuf b = {0};
    int rc = 0;
    for (size_t i = 0; !rc && i < n; i++) {
        const char *u = tk_byte_to_unicode[(unsigned char)s[i]];
        rc = strbuf_put(&b, u, u[1] ? 2 : 1);
    }
    if (!rc) rc = pieces_add(out, b.p ? b.p : "", b.len);
    strbuf_free(&b);
    return rc;
}

static int apply_bytelevel(const tk_pretok *p, const char *s, size_t n, pieces *out, pcre2_match_data *md) {
    strbuf tmp = {0};
    pieces sub = {0};
    int rc = (p->add_prefix_space && !(n && s[0] == ' ') && strbuf_putc(&tmp, ' ')) || strbuf_put(&tmp, s, n) ? -1 : 0;
    if (!rc) rc = p->use_regex ? split_piece(p, md, tmp.p, tmp.len, &sub) : pieces_add(&sub, tmp.p, tmp.len);
    for (size_t k = 0; !rc && k < sub.n; k++) rc = bytelevel_map(sub.data.p + sub.off[k], sub.len[k], out);
    pieces_free(&sub), strbuf_free(&tmp);
    return rc;
}

/* first: this piece starts the text (prepend_scheme "first"). */
static int apply_metaspace(const tk_pretok *p, const char *s, size_t n, bool first, pieces *out, pcre2_match_data *md) {
    strbuf tmp = {0};
    size_t rn = strlen(p->replacement);
    bool starts = n >= rn && !memcmp(s, p->replacement, rn);
    int rc = 0;
    if ((p->prepend == 1 || (p->prepend == 2 && first)) && !(n && s[0] == ' ') && !starts)
        rc = strbuf_put(&tmp, p->replacement, rn);
    for (size_t k = 0; !rc && k < n; k++) rc = s[k] == ' ' ? strbuf_put(&tmp, p->replacement, rn) : strbuf_putc(&tmp, s[k]);
    if (!rc && !p->split) {
        rc = pieces_add(out, tmp.p ? tmp.p : "", tmp.len);
    } else if (!rc) {
        tk_pretok sp = {.kind = P_SPLIT, .literal = p->replacement, .behavior = B_NEXT};
        rc = split_piece(&sp, md, tmp.p ? tmp.p : "", tmp.len, out);
    }
    strbuf_free(&tmp);
    return rc;
}

static int apply(const tk_pretok *p, pieces *in, pieces *out, pcre2_match_data *md) {
    for (size_t i = 0; i < in->n; i++) {
        const char *s = in->data.p + in->off[i];
        size_t n = in->len[i];
        int rc = 0;
        switch (p->kind) {
        case P_SEQ: break;
        case P_SPLIT: rc = split_piece(p, md, s, n, out); break;
        case P_BYTELEVEL: rc = apply_bytelevel(p, s, n, out, md); break;
        case P_METASPACE: rc = apply_metaspace(p, s, n, i == 0 && in->off[0] == 0, out, md); break;
        }
        if (rc) return rc;
    }
    return 0;
}

static int run(const tk_pretok *p, pieces *ps, pcre2_match_data *md) {
    if (p->kind == P_SEQ) {
        int rc = 0;
        for (size_t k = 0; !rc && k < p->n_kids; k++) rc = run(p->kids[k], ps, md);
        return rc;
    }
    pieces out = {0};
    int rc = apply(p, ps, &out, md);
    pieces_free(ps);
    *ps = out;
    return rc;
}

int tk_pretokenize(const tk_pretok *p, const char *s, size_t n, tk_piece_fn fn, void *ctx) {
    if (!p) return fn(ctx, s, n);
    pieces ps = {0};
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    int rc = !md || pieces_add(&ps, s, n) ? -1 : run(p, &ps, md);
    pcre2_match_data_free(md);
    for (size_t i = 0; !rc && i < ps.n; i++)
        if (ps.len[i]) rc = fn(ctx, ps.data.p + ps.off[i], ps.len[i]);
    pieces_free(&ps);
    return rc;
}
